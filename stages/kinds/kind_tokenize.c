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
    if (rc) return rc;
    if (s->shards) {
        mf_json *o = mf_json_new_object();
        mf_stats_str(o, "file", name);
        mf_stats_int(o, "tokens", (long long)s->w.n);
        mf_stats_int(o, "docs", (long long)s->w.n_docs);
        if (s->block) mf_stats_int(o, "blocks", (long long)(s->w.n / s->block));
        mf_json_push(s->shards, o);
    }
    mf_tokshard_writer_free(&s->w);
    if (mf_tokshard_writer_init(&s->w, s->format, s->block, s->vocab)) return mf_err_set(s->ctx->err, MF_ENOMEM, "out of memory");
    return 0;
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

/* One run: what its steps share. */
typedef struct {
    sink s;
    mf_tok *tok;
    mf_tpl *tpl;
    mf_template_encoder enc;
    mf_template_limits lim;
    const char *field, *system, *tpl_name;
    int format;
    long long block;
    long long truncated, dropped_rounds, no_target;
} tokenize;

/* pretrain: the record's field text, as BOS? + ids + EOS? */
static int add_text(tokenize *t, mf_rd *rd, const mf_json *rec)
{
    mf_err *err = t->s.ctx->err;
    const mf_json *v = mf_json_get_path(rec, t->field);
    if (!v || v->type != MF_JSON_STRING)
        return mf_reader_reject(rd, err, v ? "field '%s': expected a string" : "missing field '%s'", t->field);
    int32_t *ids = NULL, *doc = NULL;
    size_t n = 0, m = 0;
    mf_err e2;
    mf_err_clear(&e2);
    int rc = mf_tok_encode(t->tok, v->s, v->slen, 0, &ids, &n, &e2);
    if (rc) {
        rc = rc == MF_ENOMEM ? mf_err_set(err, rc, "out of memory") : mf_reader_reject(rd, err, "%s", e2.msg);
        goto out;
    }
    if (!(doc = malloc((n + 2) * sizeof *doc))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (t->enc.bos >= 0) doc[m++] = t->enc.bos;
    if (n) memcpy(doc + m, ids, n * sizeof *ids);
    m += n;
    if (t->enc.eos >= 0) doc[m++] = t->enc.eos;
    rc = sink_add(&t->s, doc, NULL, m, 0);
out:
    free(doc);
    free(ids);
    return rc;
}

/* sft, preference (two documents: chosen, rejected) and prompts: the record as a conversation
 * through the template. */
static int add_conv(tokenize *t, mf_rd *rd, const mf_json *rec)
{
    mf_err *err = t->s.ctx->err;
    mf_conv c;
    char why[512];
    mf_template_ids x[2];
    memset(x, 0, sizeof x);
    int rc = mf_reader_to_conv(rec, MF_SHAPE_AUTO, NULL, &c, why, sizeof why);
    if (rc) return rc == MF_ENOMEM ? mf_err_set(err, rc, "out of memory") : mf_reader_reject(rd, err, "%s", why);
    if (t->format == MF_TOKSHARD_PROMPTS) /* up to the last human turn */
        while (c.n && c.turns[c.n - 1].role == MF_ROLE_GPT) free(c.turns[--c.n].value);
    const char *finals[2] = {NULL, NULL};
    int nfin = 1;
    if (t->format == MF_TOKSHARD_PREFERENCE) {
        if (!c.chosen || !c.rejected) {
            rc = mf_reader_reject(rd, err, "a preference record needs chosen and rejected answers");
            goto out;
        }
        finals[0] = c.chosen;
        finals[1] = c.rejected;
        nfin = 2;
    } else if (t->format == MF_TOKSHARD_SFT && (!c.n || c.turns[c.n - 1].role != MF_ROLE_GPT)) {
        rc = mf_reader_reject(rd, err, "an sft conversation must end with an assistant (gpt) turn");
        goto out;
    }
    mf_err e2;
    mf_err_clear(&e2);
    for (int k = 0; k < nfin; k++) {
        int r2 = mf_template_encode(t->tpl, &c, t->system, finals[k], &t->lim, &t->enc, &x[k], &e2);
        if (r2) {
            rc = r2 == MF_ENOMEM ? mf_err_set(err, r2, "out of memory") : mf_reader_reject(rd, err, "%s", e2.msg);
            goto out;
        }
    }
    for (int k = 0; k < nfin; k++) {
        t->truncated += x[k].truncated;
        t->dropped_rounds += x[k].dropped_rounds;
        if (t->format == MF_TOKSHARD_PROMPTS && x[k].n) memset(x[k].mask, 0, x[k].n); /* history answers are context here */
        size_t tgt = 0;
        for (size_t j = 0; j < x[k].n; j++) tgt += x[k].mask[j];
        if (t->format != MF_TOKSHARD_PROMPTS && !tgt) t->no_target++;
        if ((rc = sink_add(&t->s, x[k].ids, x[k].mask, x[k].n, x[k].prompt_len))) goto out;
    }
out:
    mf_conv_free(&c);
    for (int k = 0; k < 2; k++) mf_template_ids_free(&x[k]);
    return rc;
}

static int write_index(const tokenize *t)
{
    mf_json *idx = mf_json_new_object();
    mf_stats_str(idx, "format", mf_tokshard_format_name(t->format));
    mf_stats_int(idx, "version", MF_TOKSHARD_VERSION);
    mf_stats_int(idx, "block_size", t->block);
    mf_stats_int(idx, "vocab_size", t->s.vocab);
    mf_stats_int(idx, "bos_id", t->enc.bos);
    mf_stats_int(idx, "eos_id", t->enc.eos);
    mf_stats_str(idx, "template", t->format == MF_TOKSHARD_PRETRAIN ? "" : t->tpl_name);
    mf_stats_int(idx, "tokens", t->s.tokens);
    mf_stats_int(idx, "docs", t->s.docs);
    mf_stats_str(idx, "packed_attention", t->block ? "cross-document (blocks are plain windows; no per-document mask)" : "n/a");
    if (idx) mf_json_set(idx, "shards", mf_json_clone(t->s.shards));
    int rc = mf_json_save(t->s.ctx->out_dir, "index.json", idx, t->s.ctx->err);
    mf_json_free(idx);
    return rc;
}

static int write_stats(const tokenize *t, mf_rd *rd)
{
    mf_json *st = mf_json_new_object();
    mf_stats_str(st, "kind", "tokenize");
    mf_stats_str(st, "format", mf_tokshard_format_name(t->format));
    mf_stats_int(st, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(st, "rows_out", t->format == MF_TOKSHARD_PREFERENCE ? t->s.docs / 2 : t->s.docs);
    mf_stats_int(st, "dropped_bad", mf_reader_get_stats(rd)->bad);
    mf_stats_int(st, "tokens", t->s.tokens);
    mf_stats_int(st, "target_tokens", t->s.target_tokens);
    mf_stats_int(st, "truncated", t->truncated);
    mf_stats_int(st, "dropped_history_rounds", t->dropped_rounds);
    mf_stats_int(st, "no_target_tokens", t->no_target);
    if (t->block) {
        mf_stats_int(st, "blocks", t->s.tokens / t->block);
        mf_stats_int(st, "tail_tokens_unused", t->s.tokens % t->block);
    }
    if (st) mf_json_set(st, "input", mf_reader_stats_json(rd));
    return mf_stats_write(t->s.ctx->out_dir, st, t->s.ctx->err);
}

int mf_stage_tokenize_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const char *fmt_s = mf_stage_param_str(ctx, "format", "auto");
    tokenize t;
    memset(&t, 0, sizeof t);
    t.format = strcmp(fmt_s, "auto") ? mf_tokshard_format_parse(fmt_s) : 0;
    if (strcmp(fmt_s, "auto") && !t.format) return mf_err_set(err, MF_EINVAL, "tokenize: unknown format '%s'", fmt_s);
    t.block = mf_stage_param_int(ctx, "block_size", 0);
    t.field = mf_stage_param_str(ctx, "field", "text");
    t.system = mf_stage_param_str(ctx, "system", "");
    t.tpl_name = mf_stage_param_str(ctx, "template", "default");
    t.lim = (mf_template_limits){mf_stage_param_int(ctx, "max_source_length", 512),
                                 mf_stage_param_int(ctx, "max_target_length", 512), mf_stage_param_int(ctx, "cutoff_len", 0)};
    if (t.block < 0 || t.block > (1LL << 31)) return mf_err_set(err, MF_EINVAL, "tokenize: block_size out of range");
    const char *tok_path = mf_stage_input_path(ctx, "tokenizer");
    if (!tok_path) return mf_err_set(err, MF_EINVAL, "tokenize: input 'tokenizer' is missing");
    mf_rd *rd = NULL;
    t.s.ctx = ctx;
    t.s.shards = mf_json_new_array();
    int rc, started = 0;
    long long row = 0;
    if ((rc = mf_tok_load(&t.tok, tok_path, err))) goto out;
    if ((rc = mf_template_new(&t.tpl, t.tpl_name, err))) goto out;
    if ((rc = mf_data_open(ctx, "data", &rd))) goto out;
    t.enc = (mf_template_encoder){t.tok, tok_encode_cb, mf_tok_bos_id(t.tok), mf_tok_eos_id(t.tok)};
    t.s.vocab = (uint32_t)mf_tok_vocab_size(t.tok);
    for (;;) {
        mf_json *rec = NULL;
        if ((rc = mf_reader_next(rd, &rec, err)) <= 0) break;
        if (!started) {
            if (!t.format) t.format = fmt_of(rec, t.field);
            if (t.format != MF_TOKSHARD_PRETRAIN) t.block = 0;
            t.s.format = t.format;
            t.s.block = (uint32_t)t.block;
            started = 1;
            if (mf_tokshard_writer_init(&t.s.w, t.format, t.s.block, t.s.vocab)) {
                mf_json_free(rec);
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
        }
        if (++row % 1000 == 0) mf_stage_progress(ctx, row, 0, NAN, NAN, NAN, "tokenizing");
        rc = t.format == MF_TOKSHARD_PRETRAIN ? add_text(&t, rd, rec) : add_conv(&t, rd, rec);
        mf_json_free(rec);
        if (rc) goto out;
    }
    if (rc) goto out;
    if (!started) {
        rc = mf_err_set(err, MF_EINVAL, "tokenize: the input holds no records");
        goto out;
    }
    if ((rc = sink_flush(&t.s))) goto out;
    if ((rc = write_index(&t))) goto out;
    rc = write_stats(&t, rd);
out:
    mf_json_free(t.s.shards);
    mf_tokshard_writer_free(&t.s.w);
    mf_reader_close(rd);
    mf_template_free(t.tpl);
    mf_tok_free(t.tok);
    return rc;
}
