/*
 * stages/kinds/kind_tokenizer.c — the `tokenizer` stage kind: train a byte-level
 * BPE tokenizer on a text corpus (tokenizer/bpe_train.h) and write
 *   out_dir/tokenizer.json         HF tokenizers format (loads unchanged)
 *   out_dir/tokenizer_config.json  eos/pad names for transformers
 *   out_dir/stats.json             texts, bytes, words, merges, bad records
 *
 * Input slot `data`: files or directories (their *.jsonl and *.txt files, in
 * name order). JSONL: one object per line, the text in param `field`; blank
 * lines are ignored. .txt: every line (with its newline) is a text. A bad line
 * (invalid JSON, not an object, missing or non-string field, invalid UTF-8)
 * fails the stage with file:line:col and the reason, or with
 * on_bad_record: skip is counted in stats.json and skipped.
 */
#include "tokenizer/bpe_train.h"
#include "stages/stage.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"

#define MAX_EXAMPLES 5

typedef struct {
    mf_stage_ctx *ctx;
    mf_bpe_trainer *tr;
    const char *field;
    int skip_bad;
    uint64_t max_chars, chars, bad, lines;
    int done; /* max_chars reached */
    char examples[MAX_EXAMPLES][600];
    int n_examples;
} run_t;

static size_t utf8_prefix_chars(const char *s, size_t n, uint64_t max, uint64_t *count)
{
    /* byte length of the first `max` code points of s (all of s if fewer) */
    size_t i = 0;
    uint64_t c = 0;
    while (i < n && c < max) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        c++;
    }
    *count = c;
    return i;
}

static int bad_record(run_t *r, const char *file, long line, int col, const char *reason)
{
    if (!r->skip_bad)
        return mf_err_at(r->ctx->err, MF_EINVAL, file, (int)line, col, "bad record: %s (on_bad_record: skip would skip it)", reason);
    r->bad++;
    if (r->n_examples < MAX_EXAMPLES)
        snprintf(r->examples[r->n_examples++], sizeof r->examples[0], "%s:%ld:%d: %s", file, line, col, reason);
    return 0;
}

static int feed_text(run_t *r, const char *s, size_t n)
{
    if (r->max_chars) {
        uint64_t c;
        n = utf8_prefix_chars(s, n, r->max_chars - r->chars, &c);
        r->chars += c;
        if (r->chars >= r->max_chars) r->done = 1;
    }
    return mf_bpe_trainer_feed(r->tr, s, n, r->ctx->err);
}

/* A .txt line: the text, newline included. */
static int feed_txt_line(run_t *r, const char *path, long lineno, const char *line, size_t n)
{
    size_t bad = mf_utf8_invalid_at(line, n);
    if (bad != (size_t)-1) return bad_record(r, path, lineno, (int)bad + 1, "not valid UTF-8");
    return feed_text(r, line, n);
}

/* A JSONL line: the string in its field (blank lines are skipped). */
static int feed_json_line(run_t *r, const char *path, long lineno, const char *line, size_t n)
{
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
    if (k == n) return 0; /* blank line */
    mf_json *j = NULL;
    mf_err perr = {0};
    if (mf_json_parse(&j, line, n, path, &perr)) {
        char reason[700];
        snprintf(reason, sizeof reason, "%s", perr.msg);
        return bad_record(r, path, lineno, perr.col, reason);
    }
    const mf_json *v = j->type == MF_JSON_OBJECT ? mf_json_get(j, r->field) : NULL;
    int rc;
    if (j->type != MF_JSON_OBJECT) {
        char reason[200];
        snprintf(reason, sizeof reason, "expected a JSON object, found %s", mf_json_type_name(j->type));
        rc = bad_record(r, path, lineno, j->col, reason);
    } else if (!v) {
        char reason[300];
        snprintf(reason, sizeof reason, "missing field '%.200s'", r->field);
        rc = bad_record(r, path, lineno, j->col, reason);
    } else if (v->type != MF_JSON_STRING) {
        char reason[300];
        snprintf(reason, sizeof reason, "field '%.200s' should be a string, found %s", r->field, mf_json_type_name(v->type));
        rc = bad_record(r, path, lineno, v->col, reason);
    } else {
        rc = feed_text(r, v->s, v->slen);
    }
    mf_json_free(j);
    return rc;
}

static int feed_file(run_t *r, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mf_err_errno(r->ctx->err, MF_EIO, "cannot open '%s'", path);
    size_t pl = strlen(path);
    int jsonl = !(pl >= 4 && !strcmp(path + pl - 4, ".txt"));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    while (!r->done && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        r->lines++;
        rc = jsonl ? feed_json_line(r, path, lineno, line, (size_t)got) : feed_txt_line(r, path, lineno, line, (size_t)got);
        if (rc) goto out;
    }
    if (ferror(f)) rc = mf_err_errno(r->ctx->err, MF_EIO, "reading '%s'", path);
out:
    free(line);
    fclose(f);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int feed_path(run_t *r, const char *path)
{
    if (!mf_is_dir(path)) return feed_file(r, path);
    DIR *d = opendir(path);
    if (!d) return mf_err_errno(r->ctx->err, MF_EIO, "cannot open directory '%s'", path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (!((l > 6 && !strcmp(e->d_name + l - 6, ".jsonl")) || (l > 4 && !strcmp(e->d_name + l - 4, ".txt")))) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) {
                rc = mf_err_set(r->ctx->err, MF_ENOMEM, "out of memory listing '%s'", path);
                goto out;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = mf_path_join(path, e->d_name))) {
            rc = mf_err_set(r->ctx->err, MF_ENOMEM, "out of memory listing '%s'", path);
            goto out;
        }
        n++;
    }
    if (n == 0) {
        rc = mf_err_set(r->ctx->err, MF_EINVAL, "directory '%s' holds no *.jsonl or *.txt files", path);
        goto out;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !r->done; i++)
        if (mf_is_file(names[i]) && (rc = feed_file(r, names[i]))) goto out;
out:
    closedir(d);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static void on_progress(void *vctx, size_t done, size_t total)
{
    mf_stage_progress(vctx, (long long)done, (long long)total, NAN, NAN, NAN, "learning merges");
}

static int write_out(mf_stage_ctx *ctx, const char *name, mf_buf *b)
{
    char *p = mf_path_join(ctx->out_dir, name);
    if (!p) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
    int rc = mf_write_file_atomic(p, b->data, b->len, 0644, ctx->err);
    free(p);
    return rc;
}

/* What we write must load. */
static int check_loads(mf_stage_ctx *ctx, const mf_buf *js)
{
    mf_tok *tok = NULL;
    int rc = mf_tok_load_mem(&tok, js->data, js->len, "tokenizer.json", ctx->err);
    if (rc) mf_err_wrap(ctx->err, "tokenizer: the trained tokenizer does not load (bug)");
    mf_tok_free(tok);
    return rc;
}

static int stats_json(mf_stage_ctx *ctx, const run_t *r, const mf_bpe_train_stats *st, mf_buf *out)
{
    mf_json *s = mf_json_new_object(), *ex = mf_json_new_array();
    int rc = 0;
    if (!s || !ex) {
        mf_json_free(ex);
        rc = mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_json_set(s, "texts", mf_json_new_int((int64_t)st->texts));
    mf_json_set(s, "lines", mf_json_new_int((int64_t)r->lines));
    mf_json_set(s, "bytes", mf_json_new_int((int64_t)st->bytes));
    mf_json_set(s, "words", mf_json_new_int((int64_t)st->words));
    mf_json_set(s, "unique_words", mf_json_new_int((int64_t)st->unique_words));
    mf_json_set(s, "merges", mf_json_new_int((int64_t)st->merges));
    mf_json_set(s, "vocab_size", mf_json_new_int((int64_t)st->vocab_size));
    mf_json_set(s, "bad_records", mf_json_new_int((int64_t)r->bad));
    for (int i = 0; i < r->n_examples; i++) mf_json_push(ex, mf_json_new_str(r->examples[i]));
    mf_json_set(s, "bad_record_examples", ex);
    mf_json_set(s, "truncated_at_max_chars", mf_json_new_bool(r->done));
    if (mf_json_write(out, s, MF_JSON_SORTED | MF_JSON_PRETTY)) rc = mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
out:
    mf_json_free(s);
    return rc;
}

int mf_stage_tokenizer_run(mf_stage_ctx *ctx)
{
    const mf_stage_input *in = mf_stage_input_get(ctx, "data");
    if (!in || !in->n) return mf_err_set(ctx->err, MF_EINVAL, "tokenizer: input 'data' is missing");
    const mf_json *sp = mf_stage_param(ctx, "special_tokens");
    size_t nsp = sp && sp->type == MF_JSON_ARRAY ? sp->n : 0;
    const char **specials = calloc(nsp ? nsp : 1, sizeof *specials);
    if (!specials) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < nsp; i++) {
        if (sp->items[i]->type != MF_JSON_STRING) {
            free(specials);
            return mf_err_set(ctx->err, MF_EINVAL, "tokenizer: special_tokens[%zu] should be a string", i);
        }
        specials[i] = sp->items[i]->s;
    }
    mf_bpe_train_opts o = {0};
    o.vocab_size = (size_t)mf_stage_param_int(ctx, "vocab_size", 8000);
    o.min_frequency = (uint64_t)mf_stage_param_int(ctx, "min_frequency", 2);
    o.max_token_chars = (size_t)mf_stage_param_int(ctx, "max_token_chars", 0);
    o.special_tokens = specials;
    o.n_special = nsp;
    o.progress = on_progress;
    o.progress_ctx = ctx;
    run_t r = {0};
    r.ctx = ctx;
    r.field = mf_stage_param_str(ctx, "field", "text");
    r.skip_bad = !strcmp(mf_stage_param_str(ctx, "on_bad_record", "fail"), "skip");
    r.max_chars = (uint64_t)mf_stage_param_int(ctx, "max_chars", 0);
    int rc = mf_bpe_trainer_new(&r.tr, &o, ctx->err);
    free(specials);
    if (rc) return rc;
    mf_buf js = MF_BUF_INIT, cfg = MF_BUF_INIT, stats = MF_BUF_INIT;
    mf_bpe_train_stats st;
    double t0 = mf_monotonic();
    mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, "counting words");
    for (size_t i = 0; i < in->n && !r.done; i++)
        if ((rc = feed_path(&r, in->paths[i]))) goto out;
    mf_bpe_trainer_stats(r.tr, &st);
    if (st.texts == 0) {
        rc = mf_err_set(ctx->err, MF_EINVAL, "tokenizer: the corpus holds no text");
        goto out;
    }
    if ((rc = mf_bpe_trainer_train(r.tr, ctx->err))) goto out;
    if ((rc = mf_bpe_trainer_write_json(r.tr, &js, ctx->err))) goto out;
    if ((rc = mf_bpe_trainer_write_config(r.tr, &cfg, ctx->err))) goto out;
    if ((rc = check_loads(ctx, &js))) goto out;
    mf_bpe_trainer_stats(r.tr, &st);
    if ((rc = stats_json(ctx, &r, &st, &stats))) goto out;
    if ((rc = write_out(ctx, "tokenizer.json", &js))) goto out;
    if ((rc = write_out(ctx, "tokenizer_config.json", &cfg))) goto out;
    if ((rc = write_out(ctx, "stats.json", &stats))) goto out;
    char msg[200];
    snprintf(msg, sizeof msg, "vocab %zu (%zu merges) from %llu texts in %.1fs", st.vocab_size, st.merges,
             (unsigned long long)st.texts, mf_monotonic() - t0);
    mf_stage_progress(ctx, (long long)st.merges, (long long)st.merges, NAN, NAN, 0, msg);
out:
    mf_buf_free(&js);
    mf_buf_free(&cfg);
    mf_buf_free(&stats);
    mf_bpe_trainer_free(r.tr);
    return rc;
}
