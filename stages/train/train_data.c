/*
 * stages/train/train_data.c — tokenize a training stage's inputs into examples
 * (see train_data.h). Records come through the data branch's readers and
 * chat templates; this file only turns their token ids into sequences.
 */
#include "stages/train/train_data.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "stages/data/dataio.h"
#include "stages/data/readers.h"
#include "stages/data/template.h"
#include "stages/data/tokshard.h"
#include "common/fsutil.h"
#include "stages/train/trainer.h"

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "out of memory"); }

void mf_train_data_set_free(mf_train_data_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].ids);
        free(s->v[i].labels);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

size_t mf_train_data_clip(mf_train_data_set *s, int max_len, int from_left)
{
    size_t cut = 0;
    if (max_len < 2) max_len = 2;
    for (size_t i = 0; s && i < s->n; i++) {
        mf_train_data_seq *q = &s->v[i];
        if (q->len <= max_len) continue;
        if (!from_left && s->eos >= 0 && q->ids[q->len - 1] == s->eos) q->lost_eos = 1;
        if (from_left) {
            int drop = q->len - max_len;
            memmove(q->ids, q->ids + drop, (size_t)max_len * sizeof *q->ids);
            memmove(q->labels, q->labels + drop, (size_t)max_len * sizeof *q->labels);
            q->prompt_len = q->prompt_len > drop ? q->prompt_len - drop : 0;
        }
        q->len = max_len;
        if (q->prompt_len > max_len) q->prompt_len = max_len;
        cut++;
    }
    return cut;
}

static int push_seq(mf_train_data_set *s, const int32_t *ids, const int32_t *labels, int len, int prompt_len, mf_err *err)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        mf_train_data_seq *v = realloc(s->v, nc * sizeof *v);
        if (!v) return nomem(err);
        s->v = v;
        s->cap = nc;
    }
    mf_train_data_seq *q = &s->v[s->n];
    q->ids = malloc((size_t)(len ? len : 1) * sizeof *q->ids);
    q->labels = malloc((size_t)(len ? len : 1) * sizeof *q->labels);
    if (!q->ids || !q->labels) {
        free(q->ids);
        free(q->labels);
        return nomem(err);
    }
    memcpy(q->ids, ids, (size_t)len * sizeof *ids);
    memcpy(q->labels, labels ? labels : ids, (size_t)len * sizeof *ids);
    q->len = len;
    q->prompt_len = prompt_len;
    q->lost_eos = 0;
    s->n++;
    return 0;
}

void mf_train_data_opts_from_ctx(mf_train_data_opts *o, const mf_stage_ctx *ctx, mf_train_data_mode mode)
{
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->block_size = (int)mf_trainer_int(ctx, "block_size");
    o->field = mf_trainer_str(ctx, "field");
    o->template_name = mf_trainer_str(ctx, "template");
    o->system = mf_trainer_str(ctx, "system");
    o->max_source = mf_trainer_int(ctx, "max_source_length");
    o->max_target = mf_trainer_int(ctx, "max_target_length");
    o->cutoff = mf_trainer_int(ctx, "cutoff_len");
    o->val_ratio = mf_trainer_num(ctx, "val_ratio");
    if (!o->field || !*o->field) o->field = "text";
    if (!o->template_name || !*o->template_name) o->template_name = "default";
    if (o->block_size <= 0) o->block_size = 1024;
    if (o->max_source <= 0) o->max_source = 512;
    if (o->max_target <= 0) o->max_target = 512;
}

static int tok_cb(void *ud, const char *text, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    return mf_tok_encode((mf_tok *)ud, text, n, 0, ids, n_ids, err);
}

/* Is this record held out for validation (by content hash)? The hash is salted:
 * the `split` kind hashes the same canonical JSON to choose parts, and an
 * unsalted unit would hold out all or none of a split part's records. */
static int is_val(const mf_json *rec, double ratio)
{
    if (ratio <= 0) return 0;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "val_ratio\n");
    mf_json_write(&b, rec, MF_JSON_SORTED);
    double u = mf_split_unit(b.data ? b.data : "", b.len);
    mf_buf_free(&b);
    return u < ratio;
}

/* Token stream of packed text, per split. */
typedef struct stream {
    int32_t *v;
    size_t n, cap;
} stream;

static int stream_add(stream *s, const int32_t *ids, size_t n, mf_err *err)
{
    if (s->n + n > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->n + n) nc *= 2;
        int32_t *v = realloc(s->v, nc * sizeof *v);
        if (!v) return nomem(err);
        s->v = v;
        s->cap = nc;
    }
    memcpy(s->v + s->n, ids, n * sizeof *ids);
    s->n += n;
    return 0;
}

static int pack(mf_train_data_set *out, const stream *s, int block, mf_err *err)
{
    for (size_t off = 0; off < s->n; off += (size_t)block) {
        size_t len = s->n - off < (size_t)block ? s->n - off : (size_t)block;
        if (len < 2) break;
        int rc = push_seq(out, s->v + off, NULL, (int)len, 0, err);
        if (rc) return rc;
    }
    return 0;
}

typedef struct loader {
    const mf_train_data_opts *o;
    mf_tok *tok;
    mf_tpl *tpl;
    mf_template_encoder enc;
    stream st[2];
} loader;

/* A conversation-shaped record (sharegpt, alpaca, qa, ...) as plain text for
 * continued pre-training: its turns' texts joined by newlines, no template
 * (Qilin-Med's ChiMed-CPT mixes QA pairs and dialogues into the text corpus).
 * MF_EINVAL when the record is no conversation. */
static int conv_text(const mf_json *rec, mf_buf *out, mf_err *err)
{
    mf_conv c;
    char why[256] = "";
    int rc = mf_reader_to_conv(rec, MF_SHAPE_AUTO, NULL, &c, why, sizeof why);
    if (rc == MF_EINVAL) return MF_EINVAL;
    if (rc) return nomem(err);
    for (size_t k = 0; k < c.n; k++) {
        if (k) mf_buf_putc(out, '\n');
        mf_buf_puts(out, c.turns[k].value);
    }
    if (c.chosen) { /* a preference record: the preferred answer is the text's */
        mf_buf_putc(out, '\n');
        mf_buf_puts(out, c.chosen);
    }
    mf_conv_free(&c);
    mf_buf_cstr(out); /* "" for an empty conversation */
    return mf_buf_ok(out) ? 0 : nomem(err);
}

/* A document: the string field, or a conversation's turns joined (conv_text). */
static int add_text(loader *L, mf_rd *rd, const mf_json *rec, int which, mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    const mf_json *t = rec->type == MF_JSON_STRING ? rec : mf_json_get(rec, o->field);
    mf_buf joined = MF_BUF_INIT;
    const char *text = t && t->type == MF_JSON_STRING ? t->s : NULL;
    size_t len = text ? t->slen : 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int32_t eos = mf_tok_eos_id(L->tok);
    int rc = 0;
    if (!text && rec->type == MF_JSON_OBJECT) {
        if ((rc = conv_text(rec, &joined, err)) == MF_EINVAL)
            rc = mf_reader_reject(rd, err, "expected a string field '%s' or a conversation", o->field);
        if (rc || !joined.data) goto out; /* an error, or a rejected record skipped */
        text = joined.data;
        len = joined.len;
    } else if (!text) {
        rc = mf_reader_reject(rd, err, "expected a string field '%s'", o->field);
        goto out;
    }
    if ((rc = mf_tok_encode(L->tok, text, len, 0, &ids, &n, err))) goto out;
    if ((rc = stream_add(&L->st[which], ids, n, err))) goto out;
    if (eos >= 0) rc = stream_add(&L->st[which], &eos, 1, err);
out:
    free(ids);
    mf_buf_free(&joined);
    return rc;
}

/* A preference pair: the chosen then the rejected sequence; pairwise losses score the final answer only. */
static int add_pair(loader *L, const mf_conv *c, const mf_template_limits *lim, mf_train_data_set *set, mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    mf_template_ids a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int32_t *la = NULL, *lb = NULL;
    int rc;
    if ((rc = mf_template_encode(L->tpl, c, o->system, c->chosen, lim, &L->enc, &a, err))) goto out;
    if ((rc = mf_template_encode(L->tpl, c, o->system, c->rejected, lim, &L->enc, &b, err))) goto out;
    if (a.prompt_len >= a.n || b.prompt_len >= b.n) {
        set->dropped++;
        goto out;
    }
    la = malloc(a.n * sizeof *la);
    lb = malloc(b.n * sizeof *lb);
    if (!la || !lb) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < a.n; i++) la[i] = i >= a.prompt_len ? a.ids[i] : MF_K_IGNORE_INDEX;
    for (size_t i = 0; i < b.n; i++) lb[i] = i >= b.prompt_len ? b.ids[i] : MF_K_IGNORE_INDEX;
    if ((rc = push_seq(set, a.ids, la, (int)a.n, (int)a.prompt_len, err))) goto out;
    set->v[set->n - 1].lost_eos = a.lost_eos; /* the rm kind gives these their EOS back */
    if ((rc = push_seq(set, b.ids, lb, (int)b.n, (int)b.prompt_len, err))) goto out;
    set->v[set->n - 1].lost_eos = b.lost_eos;
out:
    free(la);
    free(lb);
    mf_template_ids_free(&a);
    mf_template_ids_free(&b);
    return rc;
}

/* An SFT example (labels where the template puts the loss; dropped when that is nowhere), or a
 * prompt (no labels). */
static int add_example(loader *L, const mf_conv *c, const mf_template_limits *lim, mf_train_data_set *set, mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    mf_template_ids a;
    memset(&a, 0, sizeof a);
    int32_t *lab = NULL;
    size_t nl = 0;
    int rc;
    if ((rc = mf_template_encode(L->tpl, c, o->system, NULL, lim, &L->enc, &a, err))) goto out;
    if (o->mode == MF_TRAIN_DATA_PROMPT) {
        if (a.n == 0) set->dropped++;
        else rc = push_seq(set, a.ids, NULL, (int)a.n, (int)a.n, err);
        goto out;
    }
    if (!(lab = malloc((a.n ? a.n : 1) * sizeof *lab))) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < a.n; i++) {
        lab[i] = a.mask[i] ? a.ids[i] : MF_K_IGNORE_INDEX;
        nl += a.mask[i] != 0;
    }
    if (nl == 0) set->dropped++;
    else rc = push_seq(set, a.ids, lab, (int)a.n, (int)a.prompt_len, err);
out:
    free(lab);
    mf_template_ids_free(&a);
    return rc;
}

/* One record into train (which=0) or val (which=1). 0 ok (or skipped), <0 error. */
static int add_record(loader *L, mf_rd *rd, const mf_json *rec, mf_train_data_set *set, int which, mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    if (o->mode == MF_TRAIN_DATA_TEXT) return add_text(L, rd, rec, which, err);
    mf_conv c;
    char why[256] = "";
    int rc = mf_reader_to_conv(rec, MF_SHAPE_AUTO, NULL, &c, why, sizeof why);
    if (rc == MF_EINVAL) return mf_reader_reject(rd, err, "%s", why);
    if (rc) return nomem(err);
    mf_template_limits lim = {o->max_source, o->max_target, o->cutoff};
    if (o->mode == MF_TRAIN_DATA_PREF) {
        if (!c.chosen || !c.rejected)
            rc = mf_reader_reject(rd, err, "expected a preference record (prompt, chosen, rejected)");
        else
            rc = add_pair(L, &c, &lim, set, err);
    } else {
        /* prompts: a conversation whose last turn is the model's is cut before it */
        if (o->mode == MF_TRAIN_DATA_PROMPT && c.n && c.turns[c.n - 1].role == MF_ROLE_GPT) {
            free(c.turns[c.n - 1].value);
            c.n--;
        }
        rc = add_example(L, &c, &lim, set, err);
    }
    mf_conv_free(&c);
    return rc;
}

static int is_shards(const char *path)
{
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".bin") && mf_is_file(path)) return 1;
    char *p = mf_path_join(path, "shard-00000.bin");
    int r = p && mf_is_file(p);
    free(p);
    return r;
}

/* A pretraining shard: packed blocks stay blocks; an unpacked stream is packed to block_size later. */
static int shard_text(loader *L, const mf_ts *ts, mf_train_data_set *train, mf_train_data_set *val, int force_val,
                      mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    size_t B = ts->block_size ? ts->block_size : (size_t)o->block_size;
    size_t nb = ts->block_size ? ts->n_blocks : 0;
    if (!nb) return stream_add(&L->st[force_val], ts->ids, ts->n_tokens, err);
    for (size_t k = 0; k < nb; k++) {
        int v = force_val ||
                (val && o->val_ratio > 0 && mf_split_unit(ts->ids + k * B, B * sizeof(int32_t)) < o->val_ratio);
        int rc = push_seq(v ? val : train, ts->ids + k * B, NULL, (int)B, 0, err);
        if (rc) return rc;
    }
    return 0;
}

/* The documents of an SFT, prompt or preference shard (a preference is two documents, chosen
 * then rejected, kept together); *lab is scratch for the labels. */
static int shard_docs(loader *L, const mf_ts *ts, int want, mf_train_data_set *train, mf_train_data_set *val,
                      int force_val, int32_t **lab, size_t *lab_cap, mf_err *err)
{
    const mf_train_data_opts *o = L->o;
    size_t step = want == MF_TOKSHARD_PREFERENCE ? 2 : 1;
    for (size_t k = 0; k + step <= ts->n_docs; k += step) {
        uint64_t a = ts->doc_offsets[k], b = ts->doc_offsets[k + step];
        int v = force_val || (val && o->val_ratio > 0 &&
                              mf_split_unit(ts->ids + a, (size_t)(b - a) * sizeof(int32_t)) < o->val_ratio);
        mf_train_data_set *dst = v ? val : train;
        for (size_t j = k; j < k + step; j++) {
            uint64_t x = ts->doc_offsets[j], y = ts->doc_offsets[j + 1];
            size_t len = (size_t)(y - x), pl = (size_t)ts->prompt_len[j];
            if (len > *lab_cap) {
                int32_t *nl = realloc(*lab, len * sizeof *nl);
                if (!nl) return mf_err_set(err, MF_ENOMEM, "out of memory");
                *lab = nl;
                *lab_cap = len;
            }
            size_t nl_ = 0;
            for (size_t t = 0; t < len; t++) {
                int on = want == MF_TOKSHARD_SFT ? ts->mask[x + t] != 0 : t >= pl;
                (*lab)[t] = on ? ts->ids[x + t] : MF_K_IGNORE_INDEX;
                nl_ += on;
            }
            int rc = 0;
            if (want == MF_TOKSHARD_PROMPTS) rc = len ? push_seq(dst, ts->ids + x, NULL, (int)len, (int)len, err) : 0;
            else if (!nl_ && want == MF_TOKSHARD_SFT) dst->dropped++;
            else rc = push_seq(dst, ts->ids + x, *lab, (int)len, (int)pl, err);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Token shards written by the `tokenize` kind (stages/data/tokshard.h). */
static int read_shards(loader *L, const char *path, mf_train_data_set *train, mf_train_data_set *val, int force_val, mf_err *err)
{
    mf_tsdir d;
    int rc = mf_tokshard_dir_open(&d, path, err);
    if (rc) return rc;
    const mf_train_data_opts *o = L->o;
    int want = o->mode == MF_TRAIN_DATA_TEXT ? MF_TOKSHARD_PRETRAIN : o->mode == MF_TRAIN_DATA_SFT ? MF_TOKSHARD_SFT
               : o->mode == MF_TRAIN_DATA_PREF ? MF_TOKSHARD_PREFERENCE : MF_TOKSHARD_PROMPTS;
    int32_t *lab = NULL;
    size_t lab_cap = 0;
    if (d.format != want) {
        rc = mf_err_set(err, MF_EINVAL, "%s: token shards of format '%s', this stage needs '%s'", path,
                        mf_tokshard_format_name(d.format), mf_tokshard_format_name(want));
        goto out;
    }
    for (size_t s = 0; s < d.n; s++) {
        const mf_ts *ts = &d.shards[s];
        rc = want == MF_TOKSHARD_PRETRAIN ? shard_text(L, ts, train, val, force_val, err)
                                          : shard_docs(L, ts, want, train, val, force_val, &lab, &lab_cap, err);
        if (rc) goto out;
    }
out:
    free(lab);
    mf_tokshard_dir_close(&d);
    return rc;
}

static int read_jsonl(loader *L, const char *path, int skip, mf_train_data_set *train, mf_train_data_set *val,
                      int force_val, mf_err *err)
{
    mf_rd *rd = NULL;
    int rc;
    if ((rc = mf_reader_open(&rd, path, skip, err))) return rc;
    for (;;) {
        mf_json *rec = NULL;
        int r = mf_reader_next(rd, &rec, err);
        if (r <= 0) {
            rc = r;
            goto out;
        }
        int v = force_val || (val && is_val(rec, L->o->val_ratio));
        rc = add_record(L, rd, rec, v ? val : train, v, err);
        mf_json_free(rec);
        if (rc) goto out;
    }
out:
    mf_reader_close(rd);
    return rc;
}

static int read_slot(loader *L, const mf_stage_ctx *ctx, const char *slot, mf_train_data_set *train, mf_train_data_set *val,
                     int force_val, mf_err *err)
{
    const mf_stage_input *in = mf_stage_input_get(ctx, slot);
    if (!in || !in->n) return mf_err_set(err, MF_EINVAL, "stage '%s': no input bound to slot '%s'", ctx->stage, slot);
    int skip = mf_reader_policy_skip(mf_trainer_str(ctx, "on_bad_record"));
    for (size_t i = 0; i < in->n; i++) {
        int rc = is_shards(in->paths[i]) ? read_shards(L, in->paths[i], train, val, force_val, err)
                                         : read_jsonl(L, in->paths[i], skip, train, val, force_val, err);
        if (rc) return rc;
    }
    return 0;
}

int mf_train_data_load(mf_train_data_set *train, mf_train_data_set *val, const mf_stage_ctx *ctx, mf_tok *tok, const mf_train_data_opts *o,
               mf_err *err)
{
    memset(train, 0, sizeof *train);
    if (val) memset(val, 0, sizeof *val);
    if (!tok) return mf_err_set(err, MF_EINVAL, "stage '%s': the model has no tokenizer.json", ctx->stage);
    train->eos = mf_tok_eos_id(tok);
    if (val) val->eos = train->eos;
    loader L;
    memset(&L, 0, sizeof L);
    L.o = o;
    L.tok = tok;
    const mf_stage_input *vin = mf_stage_input_get(ctx, "val");
    int has_val_slot = vin && vin->n;
    mf_train_data_opts oo = *o;
    if (has_val_slot) oo.val_ratio = 0;
    int rc;
    if (o->mode != MF_TRAIN_DATA_TEXT) {
        if ((rc = mf_template_new(&L.tpl, o->template_name, err))) goto out;
        L.enc = (mf_template_encoder){tok, tok_cb, mf_tok_bos_id(tok), mf_tok_eos_id(tok)};
    }
    L.o = &oo;
    if ((rc = read_slot(&L, ctx, "data", train, has_val_slot ? NULL : val, 0, err))) goto out;
    if (has_val_slot && val && (rc = read_slot(&L, ctx, "val", train, val, 1, err))) goto out;
    if (o->mode == MF_TRAIN_DATA_TEXT) {
        if ((rc = pack(train, &L.st[0], o->block_size, err))) goto out;
        if (val && (rc = pack(val, &L.st[1], o->block_size, err))) goto out;
    }
out:
    free(L.st[0].v);
    free(L.st[1].v);
    if (L.tpl) mf_template_free(L.tpl);
    if (rc) {
        mf_train_data_set_free(train);
        if (val) mf_train_data_set_free(val);
    }
    return rc;
}

int mf_train_data_batch_make(mf_train_data_batch *tb, const mf_train_data_seq *const *seqs, int n, int32_t pad, mf_err *err)
{
    int T = 1;
    for (int i = 0; i < n; i++)
        if (seqs[i]->len > T) T = seqs[i]->len;
    size_t need = (size_t)n * (size_t)T;
    if (need > tb->cap) {
        int32_t *a = realloc(tb->ids, need * sizeof *a);
        if (a) tb->ids = a;
        int32_t *b = realloc(tb->mask, need * sizeof *b);
        if (b) tb->mask = b;
        int32_t *c = realloc(tb->labels, need * sizeof *c);
        if (c) tb->labels = c;
        if (!a || !b || !c) return nomem(err);
        tb->cap = need;
    }
    if (pad < 0) pad = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            size_t k = (size_t)i * (size_t)T + (size_t)t;
            int in = t < seqs[i]->len;
            tb->ids[k] = in ? seqs[i]->ids[t] : pad;
            tb->mask[k] = in;
            tb->labels[k] = in ? seqs[i]->labels[t] : MF_K_IGNORE_INDEX;
        }
    tb->b = (mf_k_batch){n, T, tb->ids, tb->mask, tb->labels};
    return 0;
}

void mf_train_data_batch_free(mf_train_data_batch *tb)
{
    free(tb->ids);
    free(tb->mask);
    free(tb->labels);
    memset(tb, 0, sizeof *tb);
}
