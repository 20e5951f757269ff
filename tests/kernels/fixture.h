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

#endif
