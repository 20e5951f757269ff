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

int mf_cmd_tokenize_text(int argc, char **argv)
{
    if (mf_cli_wants_help("tokenize-text", argc, argv)) return 0;
    int special = 1, count = 0, decode = 0, repeat = 1;
    const char *field = "text";
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (!strcmp(argv[i], "--count")) count = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--field") && i + 1 < argc) field = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else return mf_cli_usage_error("tokenize-text", "unknown option '%s'", argv[i]);
    }
    if (argc - i != 2) return mf_cli_usage_error("tokenize-text", "expected TOKENIZER and FILE");
    if (repeat < 1) repeat = 1;
    const char *tpath = argv[i], *fpath = argv[i + 1];
    mf_err err = {0};
    mf_tok *tok = NULL;
    if (mf_tok_load(&tok, tpath, &err)) return mf_cli_report(&err);
    char *data = NULL;
    size_t len = 0;
    if (mf_read_file(fpath, &data, &len, &err)) {
        mf_tok_free(tok);
        return mf_cli_report(&err);
    }
    size_t fl = strlen(fpath);
    int jsonl = fl > 6 && !strcmp(fpath + fl - 6, ".jsonl");
    texts_t t = {0};
    int rc = 0;
    size_t lineno = 0;
    for (char *p = data, *end = data + len; p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (jsonl) {
            mf_json *j = NULL;
            if (n && mf_json_parse(&j, p, n, fpath, &err) == 0) {
                const mf_json *v = mf_json_get(j, field);
                if (v && v->type == MF_JSON_STRING) rc = push_text(&t, v->s, v->slen);
                mf_json_free(j);
            } else if (n) {
                err.line = (int)lineno;
                rc = 1;
            }
        } else {
            rc = push_text(&t, p, nl ? n + 1 : n);
        }
        p += n + 1;
    }
    free(data);
    if (rc) {
        if (!err.code) mf_err_set(&err, MF_ENOMEM, "out of memory");
        mf_tok_free(tok);
        return mf_cli_report(&err);
    }
    uint64_t ntok = 0, hash = 1469598103934665603ULL;
    double t0 = mf_monotonic();
    mf_buf out = MF_BUF_INIT;
    for (int r = 0; r < repeat && !rc; r++) {
        for (size_t k = 0; k < t.count && !rc; k++) {
            int32_t *ids = NULL;
            size_t n = 0;
            rc = mf_tok_encode(tok, t.s[k], t.n[k], special, &ids, &n, &err);
            if (rc) break;
            if (r == 0) {
                ntok += n;
                for (size_t q = 0; q < n; q++) hash = (hash ^ (uint64_t)(uint32_t)ids[q]) * 1099511628211ULL;
                hash = (hash ^ 0xFFFFFFFFu) * 1099511628211ULL; /* text boundary */
                if (!count && !decode) {
                    out.len = 0;
                    for (size_t q = 0; q < n; q++) mf_buf_printf(&out, q ? " %d" : "%d", ids[q]);
                    puts(mf_buf_cstr(&out));
                } else if (decode) {
                    char *s = NULL;
                    size_t sl = 0;
                    rc = mf_tok_decode(tok, ids, n, 0, &s, &sl, &err);
                    if (!rc) {
                        fwrite(s, 1, sl, stdout);
                        if (jsonl) putchar('\n');
                    }
                    free(s);
                }
            }
            free(ids);
        }
    }
    double dt = mf_monotonic() - t0;
    mf_buf_free(&out);
    if (!rc && count)
        printf("texts %zu bytes %zu tokens %llu hash %016llx seconds %.4f MB/s %.2f\n", t.count, t.bytes,
               (unsigned long long)ntok, (unsigned long long)hash, dt, dt > 0 ? (double)t.bytes * repeat / dt / 1e6 : 0.0);
    for (size_t k = 0; k < t.count; k++) free(t.s[k]);
    free(t.s);
    free(t.n);
    mf_tok_free(tok);
    if (rc) return mf_cli_report(&err);
    return 0;
}
