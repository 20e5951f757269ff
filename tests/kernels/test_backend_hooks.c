/*
 * tests/kernels/test_backend_hooks.c — the optional device hooks of
 * mf_k_backend (zero_grad, opt_*) as kernels/optim.c and model.c use them,
 * without a GPU: a test backend is the CPU backend plus host implementations
 * of the hooks that replay optim.c's AdamW arithmetic. The device path of
 * mf_k_adamw_step must then give the host path's bits, and its state file
 * must save / load through opt_moments.
 */
#include "kernels/backend.h"
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fake_opt {
    size_t n;
    int *idx;
    float **mom, **vel;
} fake_opt;

static int g_zero_grad_calls, g_steps;

static void fake_zero_grad(mf_model *m)
{
    (void)m;
    g_zero_grad_calls++;
}

static void fake_opt_free(void *state)
{
    fake_opt *o = state;
    for (size_t k = 0; k < o->n; k++) free(o->mom[k]), free(o->vel[k]);
    free(o->mom), free(o->vel), free(o->idx), free(o);
}

static int fake_opt_new(mf_model *m, void **state, size_t n, const int *idx, mf_err *err)
{
    fake_opt *o = calloc(1, sizeof(*o));
    REQUIRE(o);
    o->n = n;
    o->idx = calloc(n + 1, sizeof(int));
    o->mom = calloc(n + 1, sizeof(float *));
    o->vel = calloc(n + 1, sizeof(float *));
    REQUIRE(o->idx && o->mom && o->vel);
    for (size_t k = 0; k < n; k++) {
        o->idx[k] = idx[k];
        size_t ne = mf_model_param(m, (size_t)idx[k])->numel;
        o->mom[k] = calloc(ne, sizeof(float));
        o->vel[k] = calloc(ne, sizeof(float));
        REQUIRE(o->mom[k] && o->vel[k]);
    }
    *state = o;
    (void)err;
    return 0;
}

static int fake_sqnorm(mf_model *m, void *state, double *out, mf_err *err)
{
    fake_opt *o = state;
    double ss = 0;
    for (size_t k = 0; k < o->n; k++) {
        mf_k_param *p = mf_model_param(m, (size_t)o->idx[k]);
        for (size_t i = 0; i < p->numel; i++) ss += (double)p->grad[i] * p->grad[i];
    }
    *out = ss;
    (void)err;
    return 0;
}

/* optim.c's host loop, with lr already scheduled and t = step + 1 */
static int fake_step(mf_model *m, void *state, const mf_k_adamw_config *c, double lr, long t, float clip, mf_err *err)
{
    fake_opt *o = state;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    for (size_t k = 0; k < o->n; k++) {
        mf_k_param *p = mf_model_param(m, (size_t)o->idx[k]);
        int decay = p->ndim >= 2 || c->decay_norms_biases;
        float keep = (float)(1.0 - lr * (decay ? c->weight_decay : 0.0));
        float *w = p->data, *g = p->grad, *mm = o->mom[k], *vv = o->vel[k];
        for (size_t i = 0; i < p->numel; i++) {
            float gi = g[i] * clip;
            w[i] *= keep;
            mm[i] += (1.0f - b1) * (gi - mm[i]);
            vv[i] = vv[i] * b2 + (1.0f - b2) * gi * gi;
            float denom = sqrtf(vv[i]) / bc2_sqrt + eps;
            w[i] -= step_size * (mm[i] / denom);
        }
    }
    g_steps++;
    (void)err;
    return 0;
}

static int fake_moments(mf_model *m, void *state, size_t k, void *mom, void *vel, int put, mf_err *err)
{
    fake_opt *o = state;
    size_t bytes = mf_model_param(m, (size_t)o->idx[k])->numel * sizeof(float);
    if (put) {
        memcpy(o->mom[k], mom, bytes);
        memcpy(o->vel[k], vel, bytes);
    } else {
        memcpy(mom, o->mom[k], bytes);
        memcpy(vel, o->vel[k], bytes);
    }
    (void)err;
    return 0;
}

static mf_k_backend hooked_backend(void)
{
    mf_k_backend be = *mf_k_backend_cpu();
    be.name = "cpu+hooks";
    be.zero_grad = fake_zero_grad;
    be.opt_new = fake_opt_new;
    be.opt_free = fake_opt_free;
    be.opt_grad_sqnorm = fake_sqnorm;
    be.opt_step = fake_step;
    be.opt_moments = fake_moments;
    return be;
}

static mf_model *model_with(fx_file *f, const mf_k_backend *be)
{
    mf_model_config c;
    fx_config(f, &c);
    mf_model *m;
    mf_err err;
    REQUIRE(mf_model_new_on(&m, &c, be, &err) == 0);
    CHECK_INT(fx_copy_params(f, m), (int)mf_model_num_params(m));
    return m;
}

static void steps(mf_model *m, mf_k_adamw *o, const mf_k_batch *b, int n)
{
    mf_err err;
    for (int s = 0; s < n; s++) {
        double loss, norm;
        mf_model_zero_grad(m);
        REQUIRE(mf_model_lm_step(m, b, 1.0f, &loss, &err) == 0);
        REQUIRE(mf_k_adamw_step(o, &norm, &err) == 0);
    }
}

TEST(test_kernels_device_optimizer_hooks_give_the_host_path_bits_and_resume)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    fx_tensor *ids = fx_get(f, "input_ids");
    mf_k_batch b = {.B = (int)ids->shape[0], .T = (int)ids->shape[1], .input_ids = ids->data,
                    .attention_mask = fx_i32(f, "attention_mask"), .labels = fx_i32(f, "labels")};
    mf_k_backend hb = hooked_backend();
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .target = MF_MOD_ATTN, .seed = 5};
    mf_k_adamw_config ac = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                            .max_grad_norm = 0.5f, .sched = MF_SCHED_COSINE, .warmup_steps = 1, .total_steps = 8};
    mf_err err;
    mf_model *mh = model_with(f, mf_k_backend_cpu()), *md = model_with(f, &hb);
    REQUIRE(mf_model_add_lora(mh, &lc, &err) == 0);
    REQUIRE(mf_model_add_lora(md, &lc, &err) == 0);
    mf_k_adamw *oh, *od;
    REQUIRE(mf_k_adamw_new(&oh, mh, &ac, &err) == 0);
    REQUIRE(mf_k_adamw_new(&od, md, &ac, &err) == 0);
    g_zero_grad_calls = g_steps = 0;
    steps(mh, oh, &b, 2);
    steps(md, od, &b, 2);
    CHECK_INT(g_steps, 2);
    CHECK_INT(g_zero_grad_calls, 2);
    char path[1024];
    snprintf(path, sizeof path, "%s/adamw.state", mf_test_tmpdir());
    REQUIRE(mf_k_adamw_save(od, path, &err) == 0);
    size_t np = mf_model_num_params(md);
    /* a third model resumes from the device-path save */
    mf_model *mr = model_with(f, &hb);
    REQUIRE(mf_model_add_lora(mr, &lc, &err) == 0);
    for (size_t i = 0; i < np; i++)
        memcpy(mf_model_param(mr, i)->data, mf_model_param(md, i)->data, mf_model_param(md, i)->numel * 4);
    mf_model_set_rng_state(mr, mf_model_rng_state(md));
    mf_k_adamw *orr;
    REQUIRE(mf_k_adamw_new(&orr, mr, &ac, &err) == 0);
    REQUIRE(mf_k_adamw_load(orr, path, &err) == 0);
    CHECK_INT(mf_k_adamw_steps(orr), 2);
    steps(mh, oh, &b, 2);
    steps(md, od, &b, 2);
    steps(mr, orr, &b, 2);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *ph = mf_model_param(mh, i), *pd = mf_model_param(md, i), *pr = mf_model_param(mr, i);
        if (memcmp(ph->data, pd->data, ph->numel * 4))
            mf_test_fail(__FILE__, __LINE__, "%s: device-hook path differs from the host path", ph->name);
        if (memcmp(pd->data, pr->data, pd->numel * 4))
            mf_test_fail(__FILE__, __LINE__, "%s: resumed run differs", pd->name);
    }
    /* the host-path state file loads into the hook path and vice versa (same format) */
    snprintf(path, sizeof path, "%s/adamw-host.state", mf_test_tmpdir());
    REQUIRE(mf_k_adamw_save(oh, path, &err) == 0);
    REQUIRE(mf_k_adamw_load(od, path, &err) == 0);
    mf_k_adamw_free(orr);
    mf_k_adamw_free(od);
    mf_k_adamw_free(oh);
    mf_model_free(mr);
    mf_model_free(md);
    mf_model_free(mh);
    fx_free(f);
}
