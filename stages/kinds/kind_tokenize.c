/*
 * stages/kinds/kind_tokenize.c — the `tokenize` kind: records -> token shards
 * (stages/data/tokshard.h) + index.json + stats.json.
 *
 * format (auto: from the first record's shape):
 *   pretrain    each record's `field` text -> BOS? + ids + EOS? (mask 1); packed
 *               to block_size when > 0 (block k = tokens [kB, (k+1)B) of the stream).
 *   sft         canonical conversation -> template -> ids with loss mask on
 *               assistant tokens, truncated by max_source_length /
 *               max_target_length or cutoff_len (stages/data/template.h).
 *   preference  prompt + chosen and prompt + rejected, two docs per pair.
 *   prompts     the conversation up to its last human turn, ending with the
 *               assistant cue (mask 0) — for PPO rollouts and generation evals.
 * Text segments are encoded one by one without the tokenizer's
 * post-processor; BOS/EOS come only from the template's {bos}/{eos}.
 * Shards hold at most 2^26 tokens each (shard-00000.bin, shard-00001.bin, ...);
 * a document never spans two shards.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"
#include "stages/data/template.h"
#include "tokenizer/tokenizer.h"
#include "stages/data/tokshard.h"

#define SHARD_TOKENS (1u << 26)

static int tok_encode_cb(void *ud, const char *text, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    return mf_tok_encode((mf_tok *)ud, text, n, 0, ids, n_ids, err);
}

typedef struct {
    mf_stage_ctx *ctx;
    mf_tokshard_writer w;
    int format;
    uint32_t block, vocab;
    int shard;
    long long tokens, target_tokens, docs;
    mf_json *shards;
} sink;

static int sink_flush(sink *s)
{
    if (!s->w.n_docs && s->shard > 0) return 0;
    char name[64], *path;
    snprintf(name, sizeof name, "shard-%05d.bin", s->shard++);
    if (!(path = mf_path_join(s->ctx->out_dir, name))) return mf_err_set(s->ctx->err, MF_ENOMEM, "out of memory");
    int rc = mf_tokshard_writer_write(&s->w, path, s->ctx->err);
    free(path);
    if (!rc && s->shards) {
        mf_json *o = mf_json_new_object();
        mf_stats_str(o, "file", name);
        mf_stats_int(o, "tokens", (long long)s->w.n);
        mf_stats_int(o, "docs", (long long)s->w.n_docs);
        if (s->block) mf_stats_int(o, "blocks", (long long)(s->w.n / s->block));
        mf_json_push(s->shards, o);
    }
    mf_tokshard_writer_free(&s->w);
    if (!rc && mf_tokshard_writer_init(&s->w, s->format, s->block, s->vocab)) rc = mf_err_set(s->ctx->err, MF_ENOMEM, "out of memory");
    return rc;
}

static int sink_add(sink *s, const int32_t *ids, const uint8_t *mask, size_t n, size_t plen)
{
    if (s->w.n && s->w.n + n > SHARD_TOKENS) {
        int rc = sink_flush(s);
        if (rc) return rc;
    }
    if (mf_tokshard_writer_add(&s->w, ids, mask, n, plen)) return mf_err_set(s->ctx->err, MF_ENOMEM, "out of memory");
    s->tokens += (long long)n;
    s->docs++;
    for (size_t k = 0; mask && k < n; k++) s->target_tokens += mask[k];
    if (!mask && s->format == MF_TOKSHARD_PRETRAIN) s->target_tokens += (long long)n;
    return 0;
}

static int fmt_of(const mf_json *rec, const char *field)
{
    mf_shape sh = mf_shape_detect(rec);
    if (sh == MF_SHAPE_PREFERENCE) return MF_TOKSHARD_PREFERENCE;
    if (sh == MF_SHAPE_SHAREGPT && mf_json_get(rec, "chosen")) return MF_TOKSHARD_PREFERENCE;
    if (sh == MF_SHAPE_PROMPT) return MF_TOKSHARD_PROMPTS;
    if (sh == MF_SHAPE_PRETRAIN || (mf_json_get(rec, field) && sh == MF_SHAPE_AUTO)) return MF_TOKSHARD_PRETRAIN;
    return MF_TOKSHARD_SFT;
}

int mf_stage_tokenize_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const char *fmt_s = mf_stage_param_str(ctx, "format", "auto");
    int format = strcmp(fmt_s, "auto") ? mf_tokshard_format_parse(fmt_s) : 0;
    if (strcmp(fmt_s, "auto") && !format) return mf_err_set(err, MF_EINVAL, "tokenize: unknown format '%s'", fmt_s);
    long long block = mf_stage_param_int(ctx, "block_size", 0);
    const char *field = mf_stage_param_str(ctx, "field", "text");
    const char *system = mf_stage_param_str(ctx, "system", "");
    const char *tpl_s = mf_stage_param_str(ctx, "template", "default");
    mf_template_limits lim = {mf_stage_param_int(ctx, "max_source_length", 512), mf_stage_param_int(ctx, "max_target_length", 512),
                         mf_stage_param_int(ctx, "cutoff_len", 0)};
    if (block < 0 || block > (1LL << 31)) return mf_err_set(err, MF_EINVAL, "tokenize: block_size out of range");
    const char *tok_path = mf_stage_input_path(ctx, "tokenizer");
    if (!tok_path) return mf_err_set(err, MF_EINVAL, "tokenize: input 'tokenizer' is missing");
    mf_tok *tok = NULL;
    mf_tpl *tpl = NULL;
    mf_rd *rd = NULL;
    sink s = {ctx, {0}, 0, 0, 0, 0, 0, 0, 0, mf_json_new_array()};
    long long truncated = 0, dropped_rounds = 0, no_target = 0;
    int rc = mf_tok_load(&tok, tok_path, err);
    if (!rc) rc = mf_template_new(&tpl, tpl_s, err);
    if (!rc) rc = mf_data_open(ctx, "data", &rd);
    mf_template_encoder enc = {tok, tok_encode_cb, tok ? mf_tok_bos_id(tok) : -1, tok ? mf_tok_eos_id(tok) : -1};
    s.vocab = tok ? (uint32_t)mf_tok_vocab_size(tok) : 0;
    int started = 0;
    long long row = 0;
    while (!rc) {
        mf_json *rec = NULL;
        rc = mf_reader_next(rd, &rec, err);
        if (rc <= 0) break;
        rc = 0;
        if (!started) {
            if (!format) format = fmt_of(rec, field);
            if (format != MF_TOKSHARD_PRETRAIN) block = 0;
            s.format = format;
            s.block = (uint32_t)block;
            if (mf_tokshard_writer_init(&s.w, format, s.block, s.vocab)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            started = 1;
            if (rc) {
                mf_json_free(rec);
                break;
            }
        }
        if (++row % 1000 == 0) mf_stage_progress(ctx, row, 0, NAN, NAN, NAN, "tokenizing");
        if (format == MF_TOKSHARD_PRETRAIN) {
            const mf_json *v = mf_json_get_path(rec, field);
            if (!v || v->type != MF_JSON_STRING) {
                rc = mf_reader_reject(rd, err, v ? "field '%s': expected a string" : "missing field '%s'", field);
            } else {
                int32_t *ids = NULL;
                size_t n = 0;
                mf_err e2;
                mf_err_clear(&e2);
                int r2 = mf_tok_encode(tok, v->s, v->slen, 0, &ids, &n, &e2);
                if (r2) {
                    rc = r2 == MF_ENOMEM ? mf_err_set(err, r2, "out of memory") : mf_reader_reject(rd, err, "%s", e2.msg);
                } else {
                    int32_t *doc = malloc((n + 2) * sizeof *doc);
                    size_t m = 0;
                    if (!doc) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                    else {
                        if (enc.bos >= 0) doc[m++] = enc.bos;
                        if (n) memcpy(doc + m, ids, n * sizeof *ids);
                        m += n;
                        if (enc.eos >= 0) doc[m++] = enc.eos;
                        rc = sink_add(&s, doc, NULL, m, 0);
                    }
                    free(doc);
                }
                free(ids);
            }
            mf_json_free(rec);
            continue;
        }
        mf_conv c;
        char why[512];
        int r2 = mf_reader_to_conv(rec, MF_SHAPE_AUTO, NULL, &c, why, sizeof why);
        mf_json_free(rec);
        if (r2) {
            rc = r2 == MF_ENOMEM ? mf_err_set(err, r2, "out of memory") : mf_reader_reject(rd, err, "%s", why);
            continue;
        }
        if (format == MF_TOKSHARD_PROMPTS) /* up to the last human turn */
            while (c.n && c.turns[c.n - 1].role == MF_ROLE_GPT) free(c.turns[--c.n].value);
        const char *finals[2] = {NULL, NULL};
        int nfin = 1;
        if (format == MF_TOKSHARD_PREFERENCE) {
            if (!c.chosen || !c.rejected) {
                mf_conv_free(&c);
                rc = mf_reader_reject(rd, err, "a preference record needs chosen and rejected answers");
                continue;
            }
            finals[0] = c.chosen;
            finals[1] = c.rejected;
            nfin = 2;
        } else if (format == MF_TOKSHARD_SFT && (!c.n || c.turns[c.n - 1].role != MF_ROLE_GPT)) {
            mf_conv_free(&c);
            rc = mf_reader_reject(rd, err, "an sft conversation must end with an assistant (gpt) turn");
            continue;
        }
        mf_template_ids x[2];
        memset(x, 0, sizeof x);
        mf_err e2;
        mf_err_clear(&e2);
        for (int k = 0; k < nfin && !r2; k++) r2 = mf_template_encode(tpl, &c, system, finals[k], &lim, &enc, &x[k], &e2);
        mf_conv_free(&c);
        if (r2) rc = r2 == MF_ENOMEM ? mf_err_set(err, r2, "out of memory") : mf_reader_reject(rd, err, "%s", e2.msg);
        for (int k = 0; k < nfin && !rc && !r2; k++) {
            truncated += x[k].truncated;
            dropped_rounds += x[k].dropped_rounds;
            if (format == MF_TOKSHARD_PROMPTS && x[k].n) memset(x[k].mask, 0, x[k].n); /* history answers are context here */
            size_t tgt = 0;
            for (size_t j = 0; j < x[k].n; j++) tgt += x[k].mask[j];
            if (format != MF_TOKSHARD_PROMPTS && !tgt) no_target++;
            rc = sink_add(&s, x[k].ids, x[k].mask, x[k].n, x[k].prompt_len);
        }
        for (int k = 0; k < 2; k++) mf_template_ids_free(&x[k]);
    }
    if (!rc && !started) rc = mf_err_set(err, MF_EINVAL, "tokenize: the input holds no records");
    if (!rc) rc = sink_flush(&s);
    if (!rc) {
        mf_json *idx = mf_json_new_object();
        mf_stats_str(idx, "format", mf_tokshard_format_name(format));
        mf_stats_int(idx, "version", MF_TOKSHARD_VERSION);
        mf_stats_int(idx, "block_size", block);
        mf_stats_int(idx, "vocab_size", s.vocab);
        mf_stats_int(idx, "bos_id", enc.bos);
        mf_stats_int(idx, "eos_id", enc.eos);
        mf_stats_str(idx, "template", format == MF_TOKSHARD_PRETRAIN ? "" : tpl_s);
        mf_stats_int(idx, "tokens", s.tokens);
        mf_stats_int(idx, "docs", s.docs);
        mf_stats_str(idx, "packed_attention", block ? "cross-document (blocks are plain windows; no per-document mask)" : "n/a");
        if (idx) mf_json_set(idx, "shards", mf_json_clone(s.shards));
        rc = mf_json_save(ctx->out_dir, "index.json", idx, err);
        mf_json_free(idx);
    }
    if (!rc) {
        mf_json *st = mf_json_new_object();
        mf_stats_str(st, "kind", "tokenize");
        mf_stats_str(st, "format", mf_tokshard_format_name(format));
        mf_stats_int(st, "rows_in", mf_reader_get_stats(rd)->lines);
        mf_stats_int(st, "rows_out", format == MF_TOKSHARD_PREFERENCE ? s.docs / 2 : s.docs);
        mf_stats_int(st, "dropped_bad", mf_reader_get_stats(rd)->bad);
        mf_stats_int(st, "tokens", s.tokens);
        mf_stats_int(st, "target_tokens", s.target_tokens);
        mf_stats_int(st, "truncated", truncated);
        mf_stats_int(st, "dropped_history_rounds", dropped_rounds);
        mf_stats_int(st, "no_target_tokens", no_target);
        if (block) {
            mf_stats_int(st, "blocks", s.tokens / block);
            mf_stats_int(st, "tail_tokens_unused", s.tokens % block);
        }
        if (st) mf_json_set(st, "input", mf_reader_stats_json(rd));
        rc = mf_stats_write(ctx->out_dir, st, err);
    }
    mf_json_free(s.shards);
    mf_tokshard_writer_free(&s.w);
    mf_reader_close(rd);
    mf_template_free(tpl);
    mf_tok_free(tok);
    return rc;
}
