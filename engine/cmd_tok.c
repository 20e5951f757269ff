/*
 * engine/cmd_tok.c — `medflow tokenize-text`: encode a text file with an HF
 * tokenizer.json (tokenizer/tokenizer.h). For checking a tokenizer by hand and
 * for the tokenizer benchmark (tests/bench/bench_tokenizer.sh).
 */
#include "engine/cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char **s;
    size_t *n;
    size_t count, cap, bytes;
} texts_t;

static int push_text(texts_t *t, const char *s, size_t n)
{
    if (t->count == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 1024;
        char **ns = realloc(t->s, nc * sizeof *ns);
        if (!ns) return -1;
        t->s = ns;
        size_t *nn = realloc(t->n, nc * sizeof *nn);
        if (!nn) return -1;
        t->n = nn;
        t->cap = nc;
    }
    if (!(t->s[t->count] = malloc(n + 1))) return -1;
    memcpy(t->s[t->count], s, n);
    t->s[t->count][n] = 0;
    t->n[t->count++] = n;
    t->bytes += n;
    return 0;
}

typedef struct {
    int special, count, decode, jsonl, repeat;
} tok_opts;

/* The texts of a file: each JSONL line's field string, or each line of plain text (newline included). */
static int read_texts(const char *fpath, const char *field, int jsonl, texts_t *t, mf_err *err)
{
    char *data = NULL;
    size_t len = 0, lineno = 0;
    int rc = mf_read_file(fpath, &data, &len, err);
    if (rc) return rc;
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (!jsonl) {
            if (push_text(t, p, nl ? n + 1 : n)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        } else if (n) {
            mf_json *j = NULL;
            if ((rc = mf_json_parse(&j, p, n, fpath, err))) {
                err->line = (int)lineno;
            } else {
                const mf_json *v = mf_json_get(j, field);
                if (v && v->type == MF_JSON_STRING && push_text(t, v->s, v->slen))
                    rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                mf_json_free(j);
            }
        }
        if (rc) goto out;
        p += n + 1;
    }
out:
    free(data);
    return rc;
}

/* Encode every text o->repeat times. The first pass prints the ids (--decode: the decoded text;
 * --count: nothing) and sums the tokens and an FNV-1a hash of the ids. */
static int encode_all(mf_tok *tok, const texts_t *t, const tok_opts *o, uint64_t *ntok, uint64_t *hash, mf_err *err)
{
    mf_buf out = MF_BUF_INIT;
    int32_t *ids = NULL;
    char *s = NULL;
    int rc = 0;
    for (int r = 0; r < o->repeat; r++) {
        for (size_t k = 0; k < t->count; k++) {
            size_t n = 0;
            if ((rc = mf_tok_encode(tok, t->s[k], t->n[k], o->special, &ids, &n, err))) goto out;
            if (r == 0) {
                *ntok += n;
                for (size_t q = 0; q < n; q++) *hash = (*hash ^ (uint64_t)(uint32_t)ids[q]) * 1099511628211ULL;
                *hash = (*hash ^ 0xFFFFFFFFu) * 1099511628211ULL; /* text boundary */
                if (!o->count && !o->decode) {
                    out.len = 0;
                    for (size_t q = 0; q < n; q++) mf_buf_printf(&out, q ? " %d" : "%d", ids[q]);
                    puts(mf_buf_cstr(&out));
                } else if (o->decode) {
                    size_t sl = 0;
                    if ((rc = mf_tok_decode(tok, ids, n, 0, &s, &sl, err))) goto out;
                    fwrite(s, 1, sl, stdout);
                    if (o->jsonl) putchar('\n');
                    free(s);
                    s = NULL;
                }
            }
            free(ids);
            ids = NULL;
        }
    }
out:
    free(s);
    free(ids);
    mf_buf_free(&out);
    return rc;
}

int mf_cmd_tokenize_text(int argc, char **argv)
{
    if (mf_cli_wants_help("tokenize-text", argc, argv)) return 0;
    tok_opts o = {1, 0, 0, 0, 1};
    const char *field = "text";
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--no-special")) o.special = 0;
        else if (!strcmp(argv[i], "--count")) o.count = 1;
        else if (!strcmp(argv[i], "--decode")) o.decode = 1;
        else if (!strcmp(argv[i], "--field") && i + 1 < argc) field = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) o.repeat = atoi(argv[++i]);
        else return mf_cli_usage_error("tokenize-text", "unknown option '%s'", argv[i]);
    }
    if (argc - i != 2) return mf_cli_usage_error("tokenize-text", "expected TOKENIZER and FILE");
    if (o.repeat < 1) o.repeat = 1;
    const char *tpath = argv[i], *fpath = argv[i + 1];
    size_t fl = strlen(fpath);
    o.jsonl = fl > 6 && !strcmp(fpath + fl - 6, ".jsonl");
    mf_err err = {0};
    mf_tok *tok = NULL;
    texts_t t = {0};
    uint64_t ntok = 0, hash = 1469598103934665603ULL;
    int rc;
    if ((rc = mf_tok_load(&tok, tpath, &err))) goto out;
    if ((rc = read_texts(fpath, field, o.jsonl, &t, &err))) goto out;
    double t0 = mf_monotonic();
    if ((rc = encode_all(tok, &t, &o, &ntok, &hash, &err))) goto out;
    double dt = mf_monotonic() - t0;
    if (o.count)
        printf("texts %zu bytes %zu tokens %llu hash %016llx seconds %.4f MB/s %.2f\n", t.count, t.bytes,
               (unsigned long long)ntok, (unsigned long long)hash, dt,
               dt > 0 ? (double)t.bytes * o.repeat / dt / 1e6 : 0.0);
out:
    for (size_t k = 0; k < t.count; k++) free(t.s[k]);
    free(t.s);
    free(t.n);
    mf_tok_free(tok);
    return rc ? mf_cli_report(&err) : 0;
}
