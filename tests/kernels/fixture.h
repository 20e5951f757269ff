/*
 * tests/kernels/fixture.h — test-only reader for the kernels' safetensors
 * fixtures (F32 and I32 tensors, JSON metadata) and helpers that build an
 * mf_model from them and compare tensors.
 *
 * Deliberately tiny and independent of stages/ (kernels must not depend on
 * stages, and this keeps the conformance tests self-contained).
 */
#ifndef MF_TESTS_KERNELS_FIXTURE_H
#define MF_TESTS_KERNELS_FIXTURE_H

#include "common/json.h"
#include "kernels/model.h"

typedef struct fx_tensor {
    char *name;
    int is_int;
    int ndim;
    int64_t shape[4];
    size_t numel;
    void *data; /* float* or int32_t* (points into the file buffer) */
} fx_tensor;

typedef struct fx_file {
    char *buf;
    size_t len;
    mf_json *header;
    fx_tensor *t;
    size_t n;
} fx_file;

/* Load tests/kernels/fixtures/NAME; aborts the test on failure. */
fx_file *fx_load(const char *name);
void fx_free(fx_file *f);
fx_tensor *fx_get(fx_file *f, const char *name); /* NULL when absent */
const float *fx_f32(fx_file *f, const char *name);   /* REQUIREs presence */
const int32_t *fx_i32(fx_file *f, const char *name);
const char *fx_meta(fx_file *f, const char *key);    /* metadata string or NULL */

/* Model config from the "config" metadata. */
void fx_config(fx_file *f, mf_model_config *cfg);
/* New model with every weight of f copied in (names must match the model's). */
mf_model *fx_model(fx_file *f);
/* Copy tensors of f whose names are model params into the model; returns count. */
int fx_copy_params(fx_file *f, mf_model *m);

/* max |a-b| / max|b| and ||a-b|| / ||b||. */
double fx_max_rel(const float *a, const float *b, size_t n);
double fx_norm_rel(const float *a, const float *b, size_t n);

/* Conformance tolerances (tests/kernels/test_conformance.c says why): logits, loss,
 * rewards 1e-4 relative to the tensor's largest magnitude; gradients 1e-3. */
#define FX_TOL_FWD 1e-4
#define FX_TOL_GRAD 1e-3

/* The batch of a fixture (input_ids, attention_mask, labels). */
typedef struct fx_run {
    mf_k_batch b;
    int B, T, V;
} fx_run;
fx_run fx_batch(fx_file *f);
/* "expected.logits" at real positions (FX_TOL_FWD relative, and max_abs absolute
 * when > 0) and "expected.loss". */
void fx_check_logits_loss(fx_file *exp, const fx_run *r, const mf_k_outputs *o, double max_abs);
/* Every "grad.<name>" of exp against the model's gradient (FX_TOL_GRAD); returns how many. */
int fx_check_grads(fx_file *exp, mf_model *m);
/* Greedy generation from "greedy.prompt" equals "greedy.expected", with and without the KV cache. */
void fx_check_greedy(fx_file *f, mf_model *m);
/* A training forward and the backward of the mean token loss (grads zeroed first). */
void fx_lm_forward_backward(mf_model *m, const fx_run *r, mf_k_outputs *o);

#endif
