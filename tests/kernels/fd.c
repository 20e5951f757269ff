/* tests/kernels/fd.c — finite-difference helpers (see fd.h). */
#include "tests/kernels/fd.h"
#include "tests/harness.h"
#include "kernels/model.h"
#include "kernels/rng.h"

#include <stdlib.h>
#include <string.h>

float *fd_randv(size_t n, uint64_t seed, float scale)
{
    float *v = malloc(n * sizeof(float));
    REQUIRE(v);
    mf_k_rng r;
    mf_k_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = scale * mf_k_rng_normal(&r);
    return v;
}

double fd_dotc(const float *c, const float *y, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)c[i] * y[i];
    return s;
}

double fd_max_rel(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
    }
    return mb > 0 ? md / mb : md;
}

void fd_check(const char *what, float *x, const float *g, size_t n, fd_loss_fn f, void *ctx, float h)
{
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fabs(g[i]) > gmax ? fabs(g[i]) : gmax;
    size_t stride = n > 64 ? n / 61 : 1; /* ~60 probes per variable keep the tests fast */
    int bad = 0;
    for (size_t j = 0; j < n; j += stride) {
        float x0 = x[j];
        x[j] = x0 + h;
        double lp = f(ctx);
        x[j] = x0 - h;
        double lm = f(ctx);
        x[j] = x0;
        double num = (lp - lm) / (2.0 * h);
        if (!(fabs(num - g[j]) <= 2e-2 * gmax + 1e-3)) {
            if (bad++ < 3)
                mf_test_fail(__FILE__, __LINE__, "%s[%zu]: analytic %.6g vs numeric %.6g (max |g| %.3g)", what, j, g[j],
                             num, gmax);
        }
    }
    CHECK(gmax > 0);
}

typedef struct { mf_model *m; mf_k_batch b; float *c; } model_ctx;

static double model_loss(void *p)
{
    model_ctx *k = p;
    mf_k_outputs o;
    mf_err err;
    mf_model_set_rng_state(k->m, 41); /* the same dropout masks on every evaluation */
    REQUIRE(mf_model_forward(k->m, &k->b, MF_FWD_LOGITS | MF_FWD_VALUES | MF_FWD_TRAIN, &o, &err) == 0);
    double s = 0;
    for (int i = 0; i < k->b.B * k->b.T; i++) s += k->c[i] * o.logp[i] + 0.3 * k->c[i] * o.values[i];
    return s;
}

int fd_check_model(const mf_model_config *c, const mf_k_prefix_config *pc, float lora_dropout)
{
    mf_model *m;
    mf_err err;
    int rc = mf_model_new(&m, c, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "mf_model_new: %s", err.msg);
    REQUIRE(rc == 0);
    REQUIRE(mf_model_init_random(m, 3, 0.4f, &err) == 0);
    if (pc) REQUIRE(mf_model_add_prefix(m, pc, &err) == 0);
    mf_k_lora_config lc = {.rank = 2, .alpha = 3, .dropout = lora_dropout, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 5};
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    REQUIRE(mf_model_add_score_head(m, 6, &err) == 0);
    mf_model_set_all_trainable(m, 1);
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (strstr(p->name, "lora_B"))
            for (size_t k = 0; k < p->numel; k++) p->data[k] = 0.3f * (float)((int)(k * 7 % 5) - 2);
    }
    static int32_t ids[2 * 6] = {1, 5, 7, 2, 9, 3, 4, 4, 8, 10, 0, 0};
    static int32_t mask[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    static int32_t lab[12] = {1, 5, 7, 2, 9, 3, -100, 4, 8, 10, -100, -100};
    model_ctx k = {.m = m, .b = {.B = 2, .T = 6, .input_ids = ids, .attention_mask = mask, .labels = lab}};
    k.c = fd_randv(12, 19, 1);
    mf_k_outputs o;
    mf_model_set_rng_state(m, 41);
    REQUIRE(mf_model_forward(m, &k.b, MF_FWD_LOGITS | MF_FWD_VALUES | MF_FWD_TRAIN, &o, &err) == 0);
    float dv[12];
    for (int i = 0; i < 12; i++) dv[i] = 0.3f * k.c[i];
    mf_model_zero_grad(m);
    REQUIRE(mf_model_backward(m, k.c, dv, &err) == 0);
    int checked = 0;
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        float *g = malloc(p->numel * 4);
        REQUIRE(g);
        memcpy(g, p->grad, p->numel * 4);
        fd_check(p->name, p->data, g, p->numel, model_loss, &k, 2e-3f);
        free(g);
        checked++;
    }
    free(k.c);
    mf_model_free(m);
    return checked;
}
