/*
 * tests/kernels/test_ops_fd.c — finite-difference checks of every CPU op's
 * backward, and of the whole model (with LoRA dropout and prefixes, which
 * the HF fixtures cannot cover). Method and tolerance: tests/kernels/fd.h;
 * h = 1e-2 for one op (smooth; truncation error O(h^2) ~ 1e-4, fp32
 * cancellation ~1e-7 |L| / h ~ 1e-5), 2e-3 for the whole model.
 */
#include "tests/harness.h"
#include "tests/kernels/fd.h"
#include "kernels/cpu/ops.h"
#include "kernels/model.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-2f

/* ---- RMSNorm ---- */
typedef struct { int N, H; float *x, *w, *y, *rstd, *c; } rms_ctx;
static double rms_loss(void *p)
{
    rms_ctx *k = p;
    mf_k_cpu_rmsnorm(k->y, k->rstd, k->x, k->w, k->N, k->H, 1e-5f);
    return fd_dotc(k->c, k->y, (size_t)k->N * k->H);
}

TEST(test_kernels_fd_rmsnorm)
{
    rms_ctx k = {.N = 5, .H = 12};
    size_t n = 60;
    k.x = fd_randv(n, 1, 1); k.w = fd_randv(12, 2, 1); k.c = fd_randv(n, 3, 1);
    k.y = calloc(n, 4); k.rstd = calloc(5, 4);
    float *dx = calloc(n, 4), *dw = calloc(12, 4);
    rms_loss(&k);
    mf_k_cpu_rmsnorm_bwd(dx, dw, k.c, k.x, k.rstd, k.w, 5, 12);
    fd_check("rmsnorm dx", k.x, dx, n, rms_loss, &k, FD_H);
    fd_check("rmsnorm dw", k.w, dw, 12, rms_loss, &k, FD_H);
    free(k.x), free(k.w), free(k.c), free(k.y), free(k.rstd), free(dx), free(dw);
}

/* ---- RoPE ---- */
typedef struct { int N, nh, hd; float *x, *y, *c, *cosv, *sinv; int *pos; } rope_ctx;
static double rope_loss(void *p)
{
    rope_ctx *k = p;
    size_t n = (size_t)k->N * k->nh * k->hd;
    memcpy(k->y, k->x, n * 4);
    mf_k_cpu_rope(k->y, k->pos, k->N, k->nh, k->hd, k->hd, 0, k->cosv, k->sinv, 0);
    return fd_dotc(k->c, k->y, n);
}

TEST(test_kernels_fd_rope_and_inverse)
{
    rope_ctx k = {.N = 4, .nh = 3, .hd = 8};
    size_t n = 96;
    int pos[4] = {0, 3, 7, 20};
    k.pos = pos;
    k.cosv = calloc(32 * 4, 4); k.sinv = calloc(32 * 4, 4);
    mf_k_cpu_rope_table(k.cosv, k.sinv, 32, 8, 10000.0);
    k.x = fd_randv(n, 4, 1); k.c = fd_randv(n, 5, 1); k.y = calloc(n, 4);
    float *g = malloc(n * 4);
    memcpy(g, k.c, n * 4);
    mf_k_cpu_rope(g, pos, 4, 3, 8, 8, 0, k.cosv, k.sinv, 1); /* backward = inverse rotation of dy */
    fd_check("rope dx", k.x, g, n, rope_loss, &k, FD_H);
    rope_loss(&k);
    mf_k_cpu_rope(k.y, pos, 4, 3, 8, 8, 0, k.cosv, k.sinv, 1);
    for (size_t i = 0; i < n; i++) CHECK_NEAR(k.y[i], k.x[i], 1e-5, 1e-6);
    /* position 0 is the identity */
    for (int i = 0; i < 24; i++) {
        rope_loss(&k);
        CHECK_NEAR(k.y[i], k.x[i], 0, 1e-7);
    }
    free(k.cosv), free(k.sinv), free(k.x), free(k.c), free(k.y), free(g);
}

/* ---- SwiGLU ---- */
typedef struct { size_t n; float *g, *u, *y, *c; } sw_ctx;
static double sw_loss(void *p)
{
    sw_ctx *k = p;
    mf_k_cpu_swiglu(k->y, k->g, k->u, k->n);
    return fd_dotc(k->c, k->y, k->n);
}

TEST(test_kernels_fd_swiglu)
{
    sw_ctx k = {.n = 50};
    k.g = fd_randv(50, 6, 2); k.u = fd_randv(50, 7, 1); k.c = fd_randv(50, 8, 1); k.y = calloc(50, 4);
    float *dg = calloc(50, 4), *du = calloc(50, 4);
    mf_k_cpu_swiglu_bwd(dg, du, k.c, k.g, k.u, 50);
    fd_check("swiglu dg", k.g, dg, 50, sw_loss, &k, FD_H);
    fd_check("swiglu du", k.u, du, 50, sw_loss, &k, FD_H);
    free(k.g), free(k.u), free(k.c), free(k.y), free(dg), free(du);
}

/* ---- linear with bias ---- */
typedef struct { int N, in, out; float *x, *W, *b, *y, *c; } lin_ctx;
static double lin_loss(void *p)
{
    lin_ctx *k = p;
    mf_k_cpu_linear(k->y, k->x, k->W, k->b, k->N, k->in, k->out, 1.0f, 0.0f);
    return fd_dotc(k->c, k->y, (size_t)k->N * k->out);
}

TEST(test_kernels_fd_linear_with_bias)
{
    lin_ctx k = {.N = 6, .in = 7, .out = 5};
    k.x = fd_randv(42, 9, 1); k.W = fd_randv(35, 10, 1); k.b = fd_randv(5, 11, 1); k.c = fd_randv(30, 12, 1);
    k.y = calloc(30, 4);
    float *dx = calloc(42, 4), *dW = calloc(35, 4), *db = calloc(5, 4);
    mf_k_cpu_linear_bwd(dx, dW, db, k.c, k.x, k.W, 6, 7, 5, 1.0f);
    fd_check("linear dx", k.x, dx, 42, lin_loss, &k, FD_H);
    fd_check("linear dW", k.W, dW, 35, lin_loss, &k, FD_H);
    fd_check("linear db", k.b, db, 5, lin_loss, &k, FD_H);
    free(k.x), free(k.W), free(k.b), free(k.c), free(k.y), free(dx), free(dW), free(db);
}

/* ---- attention: GQA 4 heads / 2 kv heads, 2 prefix rows, padding ---- */
typedef struct { int B, T, P, nh, nkv, hd; float *q, *kf, *vf, *out, *att, *c; int32_t *mask; } att_ctx;
static double att_loss(void *p)
{
    att_ctx *k = p;
    mf_k_cpu_attention(k->out, k->att, k->q, k->kf, k->vf, k->mask, NULL, k->B, k->T, k->P, k->nh, k->nkv, k->hd);
    return fd_dotc(k->c, k->out, (size_t)k->B * k->T * k->nh * k->hd);
}

/* Plain reference: one query at a time, every key, explicit mask. */
static void att_reference(const att_ctx *k, float *out)
{
    int S = k->P + k->T, qd = k->nh * k->hd, kd = k->nkv * k->hd;
    float *sc = malloc((size_t)S * sizeof(float));
    for (int b = 0; b < k->B; b++)
        for (int h = 0; h < k->nh; h++)
            for (int t = 0; t < k->T; t++) {
                int g = h / (k->nh / k->nkv);
                double mx = -1e300, sum = 0;
                for (int s = 0; s < S; s++) {
                    int ok = s < k->P || (s - k->P <= t && k->mask[b * k->T + s - k->P]);
                    double d = 0;
                    for (int i = 0; i < k->hd; i++)
                        d += (double)k->q[((size_t)b * k->T + t) * qd + h * k->hd + i] *
                             k->kf[((size_t)b * S + s) * kd + g * k->hd + i];
                    sc[s] = ok ? (float)(d / sqrt((double)k->hd)) : -INFINITY;
                    if (ok && sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s < S; s++) sum += sc[s] == -INFINITY ? 0 : exp(sc[s] - mx);
                for (int i = 0; i < k->hd; i++) {
                    double o = 0;
                    for (int s = 0; s < S; s++)
                        if (sc[s] != -INFINITY)
                            o += exp(sc[s] - mx) / sum * k->vf[((size_t)b * S + s) * kd + g * k->hd + i];
                    out[((size_t)b * k->T + t) * qd + h * k->hd + i] = (float)o;
                }
            }
    free(sc);
}

static void attention_case(int T, int pad_last)
{
    att_ctx k = {.B = 2, .T = T, .P = 2, .nh = 4, .nkv = 2, .hd = 4};
    int S = k.P + T;
    size_t nq = (size_t)k.B * T * k.nh * k.hd, nk = (size_t)k.B * S * k.nkv * k.hd;
    k.mask = malloc((size_t)k.B * T * sizeof(int32_t));
    for (int i = 0; i < k.B * T; i++) k.mask[i] = !(i >= 2 * T - pad_last); /* row 1: right padding */
    k.q = fd_randv(nq, 13, 1); k.kf = fd_randv(nk, 14, 1); k.vf = fd_randv(nk, 15, 1); k.c = fd_randv(nq, 16, 1);
    /* the padded query rows' outputs are unused downstream: give them no weight */
    for (int t = T - pad_last; t < T; t++)
        for (int i = 0; i < k.nh * k.hd; i++) k.c[((size_t)T + t) * k.nh * k.hd + i] = 0;
    k.out = calloc(nq, 4); k.att = calloc((size_t)k.B * k.nh * T * S, 4);
    float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4), *ref = calloc(nq, 4);
    float *ws = calloc((size_t)omp_get_max_threads() * T * S, 4);
    att_loss(&k);
    att_reference(&k, ref);
    CHECK(fd_max_rel(k.out, ref, nq) <= 1e-5);
    mf_k_cpu_attention_bwd(dq, dk, dv, ws, omp_get_max_threads(), k.c, k.att, k.q, k.kf, k.vf, k.B, T, k.P, k.nh, k.nkv, k.hd);
    fd_check("attention dq", k.q, dq, nq, att_loss, &k, FD_H);
    fd_check("attention dk", k.kf, dk, nk, att_loss, &k, FD_H);
    fd_check("attention dv", k.vf, dv, nk, att_loss, &k, FD_H);
    /* padded keys get no gradient; probabilities of a row sum to 1 */
    for (int i = 0; i < k.nkv * k.hd; i++) CHECK(dk[((size_t)S + S - 1) * k.nkv * k.hd + i] == 0.0f);
    double s = 0;
    for (int j = 0; j < S; j++) s += k.att[(size_t)(T - 1) * S + j];
    CHECK_NEAR(s, 1.0, 1e-6, 0);
    free(k.q), free(k.kf), free(k.vf), free(k.c), free(k.out), free(k.att), free(dq), free(dk), free(dv), free(ws);
    free(ref), free(k.mask);
}

TEST(test_kernels_fd_attention_gqa_prefix_and_padding)
{
    attention_case(5, 2);
}

TEST(test_kernels_attention_causal_blocks_match_plain_reference_and_fd)
{
    attention_case(150, 17); /* three 64-row causal blocks, the last one partial */
}

/* ---- log-prob of targets ---- */
typedef struct { int N, V; float *z, *lp, *c; int32_t *tg; } lp_ctx;
static double lp_loss(void *p)
{
    lp_ctx *k = p;
    mf_k_cpu_logp(k->lp, NULL, k->z, k->tg, k->N, k->V);
    return fd_dotc(k->c, k->lp, (size_t)k->N);
}

TEST(test_kernels_fd_logprob_with_ignored_rows)
{
    int32_t tg[4] = {3, -1, 0, 6};
    lp_ctx k = {.N = 4, .V = 7, .tg = tg};
    k.z = fd_randv(28, 17, 2); k.c = fd_randv(4, 18, 1); k.lp = calloc(4, 4);
    float *g = malloc(28 * 4), *g2 = malloc(28 * 4), lse[4];
    memcpy(g, k.z, 28 * 4);
    memcpy(g2, k.z, 28 * 4);
    mf_k_cpu_logp_bwd(g, NULL, k.c, tg, 4, 7); /* log-sum-exp recomputed */
    fd_check("logp dz", k.z, g, 28, lp_loss, &k, FD_H);
    for (int j = 0; j < 7; j++) CHECK(g[7 + j] == 0.0f);
    mf_k_cpu_logp(k.lp, lse, k.z, tg, 4, 7); /* the forward's log-sum-exp: the same gradient */
    mf_k_cpu_logp_bwd(g2, lse, k.c, tg, 4, 7);
    for (int j = 0; j < 28; j++) CHECK_NEAR(g2[j], g[j], 1e-6, 1e-6);
    free(k.z), free(k.c), free(k.lp), free(g), free(g2);
}

/* The kernels' vectorised exp against libm's double exp: relative error below
 * 3e-7 (libm's expf: 6e-8) across the unclamped range [-87.3, 88], clamped
 * beyond it (to the smallest normal float below, a finite value above). */
TEST(test_kernels_exp_matches_libm_within_3e7_relative)
{
    double worst = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.3f + (88.0f + 87.3f) * (float)i / 400000.0f;
        double want = exp((double)x), got = mf_k_cpu_exp(x), rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 3e-7);
    CHECK(mf_k_cpu_exp(0.0f) == 1.0f);
    CHECK(mf_k_cpu_exp(-1000.0f) > 0.0f && mf_k_cpu_exp(-1000.0f) < 1.3e-38f);
    CHECK(isfinite(mf_k_cpu_exp(1000.0f)));
}

/* ---- the whole model: LoRA with dropout on every module + prefix MLP + score head ---- */
TEST(test_kernels_fd_whole_model_lora_dropout_prefix_and_values)
{
    mf_model_config c = {.arch = MF_ARCH_QWEN2, .vocab_size = 11, .hidden_size = 12, .intermediate_size = 10,
                         .num_hidden_layers = 2, .num_attention_heads = 3, .num_key_value_heads = 1,
                         .max_position_embeddings = 32};
    mf_k_prefix_config pc = {.pre_seq_len = 2, .prefix_projection = 1, .prefix_hidden_size = 6, .seed = 4};
    CHECK(fd_check_model(&c, &pc, 0.3f) > 40);
}
