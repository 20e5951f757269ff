/*
 * tests/stages/dtest.h — run a data stage kind in-process for tests: params
 * from a JSON text, one slot with paths, a fresh out_dir. Header-only.
 */
#ifndef MF_TESTS_DTEST_H
#define MF_TESTS_DTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"
#include "stages/stage.h"

typedef struct {
    mf_stage_ctx ctx;
    mf_stage_input in[2];
    mf_json *params;
    mf_err err;
    char out[1024];
    char msg[4096];
} dtest;

/* slot2/paths2 may be NULL. Returns the run function's code; t->msg holds the error text. */
static inline int dtest_run(dtest *t, const char *kind, const char *params_json, unsigned long long seed,
                            const char *slot, const char **paths, size_t n, const char *slot2,
                            const char **paths2, size_t n2, const char *out_dir)
{
    memset(t, 0, sizeof *t);
    mf_err_clear(&t->err);
    if (mf_json_parse(&t->params, params_json, strlen(params_json), "params", &t->err)) return -100;
    snprintf(t->out, sizeof t->out, "%s", out_dir);
    mf_mkdir_p(t->out, 0755, NULL);
    t->in[0] = (mf_stage_input){slot, paths, NULL, n};
    t->in[1] = (mf_stage_input){slot2, paths2, NULL, n2};
    t->ctx = (mf_stage_ctx){.stage = kind, .kind = mf_kind_find(kind), .params = t->params, .inputs = t->in,
                            .n_inputs = slot2 ? 2 : 1, .out_dir = t->out, .seed = seed, .precision = "fp32",
                            .progress_fd = -1, .err = &t->err, .devices = "", .rendezvous = ""};
    mf_stage_run_fn fn = mf_stage_impl(kind);
    if (!fn) return -101;
    int rc = fn(&t->ctx);
    mf_err_str(&t->err, t->msg, sizeof t->msg);
    mf_json_free(t->params);
    t->params = NULL;
    return rc;
}

/* Read out_dir/name. */
static inline char *dtest_out(const char *out_dir, const char *name)
{
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", out_dir, name);
    char *s = NULL;
    size_t n;
    if (mf_read_file(p, &s, &n, NULL)) return NULL;
    return s;
}

static inline size_t dtest_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* The first n lines of a shared data file copied into dir/name (tests stay small). */
static inline char *dtest_head(const char *src, size_t n, const char *dir, const char *name)
{
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = fopen(path, "wb");
    if (!in || !out) {
        if (in) fclose(in);
        if (out) fclose(out);
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    for (size_t k = 0; k < n && getline(&line, &cap, in) > 0; k++) fputs(line, out);
    free(line);
    fclose(in);
    fclose(out);
    return path;
}

/* The shared real-data subsets (read-only); MF_SHARED_DATA overrides the location. */
#define MF_SHARED_DATA (mf_test_shared_data())

#endif
