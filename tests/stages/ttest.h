/*
 * tests/stages/ttest.h — run a training stage kind in-process: params from a
 * JSON text, any number of (slot, path) inputs, an out_dir and an optional
 * work_dir; plus a tiny model (init) and small data subsets. Header-only.
 */
#ifndef MF_TESTS_TTEST_H
#define MF_TESTS_TTEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"
#include "stages/stage.h"
#include "tests/stages/dtest.h"

#define TT_MAX_IN 6

/* When > 0, the next tt_run stops its training loop at the first checkpoint at or after this step
 * (through mf_stage_ctx.stop_requested), as an interruption would. */
static long tt_stop_after;
static inline int tt_stop_cb(const mf_stage_ctx *ctx, long step)
{
    (void)ctx;
    return tt_stop_after > 0 && step >= tt_stop_after;
}

typedef struct {
    mf_stage_ctx ctx;
    mf_stage_input in[TT_MAX_IN];
    const char *paths[TT_MAX_IN][1];
    mf_json *params;
    mf_err err;
    char msg[4096];
} ttest;

/* Inputs as (slot, path) pairs ending with NULL. Returns the run function's code; msg has the error. */
static inline int tt_run(char *msg, size_t msgn, const char *kind, const char *params_json, const char *out_dir,
                         const char *work_dir, ...)
{
    static ttest t;
    memset(&t, 0, sizeof t);
    if (mf_json_parse(&t.params, params_json, strlen(params_json), "params", &t.err)) return -100;
    mf_mkdir_p(out_dir, 0755, NULL);
    va_list ap;
    va_start(ap, work_dir);
    size_t n = 0;
    for (const char *slot; n < TT_MAX_IN && (slot = va_arg(ap, const char *));) {
        t.paths[n][0] = va_arg(ap, const char *);
        t.in[n] = (mf_stage_input){slot, t.paths[n], NULL, 1};
        n++;
    }
    va_end(ap);
    t.ctx = (mf_stage_ctx){.stage = kind, .kind = mf_kind_find(kind), .params = t.params, .inputs = t.in,
                           .n_inputs = n, .out_dir = out_dir, .work_dir = work_dir, .seed = 42,
                           .precision = "fp32", .progress_fd = -1, .err = &t.err, .devices = "", .rendezvous = "",
                           .stop_requested = tt_stop_after > 0 ? tt_stop_cb : NULL};
    mf_stage_run_fn fn = mf_stage_impl(kind);
    if (!fn) return -101;
    int rc = fn(&t.ctx);
    mf_err_str(&t.err, t.msg, sizeof t.msg);
    if (msg) snprintf(msg, msgn, "%s", t.msg);
    mf_json_free(t.params);
    return rc;
}

/* dir/name as a path (static buffer rotation of 8). */
static inline const char *tt_path(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

/* The shared tokenizer fixture (BPE, 1000 ids incl. <|endoftext|> <|im_start|> <|im_end|>). */
static inline const char *tt_tokenizer(void) { return tt_path(mf_test_root(), "tests/stages/fixtures/data/tokenizer.json"); }

/* A tiny LLaMA (hidden 32, 2 layers) from `init` with the fixture tokenizer, in dir/base. */
static inline int tt_tiny_model(const char *dir, char *msg, size_t msgn)
{
    return tt_run(msg, msgn, "init",
                  "{\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, "
                  "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"max_position_embeddings\": 256, \"initializer_range\": 0.1}",
                  tt_path(dir, "base"), NULL, "tokenizer", tt_tokenizer(), NULL);
}

/* Values of `key` in out_dir/metrics.jsonl training lines (no "split"), into v (max n). */
static inline int tt_metric(const char *out_dir, const char *key, int val_lines, double *v, int n)
{
    char *s = dtest_out(out_dir, "metrics.jsonl");
    int k = 0;
    for (char *line = s; line && *line && k < n;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        mf_json *o = NULL;
        if (!mf_json_parse(&o, line, len, "metrics", NULL)) {
            int is_val = mf_json_get(o, "split") != NULL;
            const mf_json *x = mf_json_get(o, key);
            if (x && is_val == val_lines) v[k++] = mf_json_num(x, NAN);
        }
        mf_json_free(o);
        line = nl ? nl + 1 : NULL;
    }
    free(s);
    return k;
}

/* 1 when the two files are byte-identical. */
static inline int tt_same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = !mf_read_file(a, &x, &nx, NULL) && !mf_read_file(b, &y, &ny, NULL) && nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

#endif
