/*
 * tests/kernels/test_arch_fd.c — the CPU ops and model features of the
 * non-LLaMA architectures (BLOOM, GLM, ChatGLM2/3): LayerNorm, GELU (tanh),
 * partial / interleaved RoPE, ALiBi attention, fused projections, biases,
 * embedding norm, multi-query attention, ChatGLM's P-Tuning v2 prefix (kv-wide
 * embedding, positions from 0, prefix dropout), each by finite differences
 * (method and tolerance: tests/kernels/fd.h) and against plain formulas.
 */
#include "tests/harness.h"
#include "tests/kernels/fd.h"
#include "kernels/cpu/ops.h"
#include "kernels/model.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-2f

/* ---- LayerNorm ---- */
typedef struct { int N, H; float *x, *w, *b, *y, *mean, *rstd, *c; } ln_ctx;
static double ln_loss(void *p)
{
    ln_ctx *k = p;
    mf_k_cpu_layernorm(k->y, k->mean, k->rstd, k->x, k->w, k->b, k->N, k->H, 1e-5f);
    return fd_dotc(k->c, k->y, (size_t)k->N * k->H);
}

TEST(test_kernels_fd_layernorm_with_bias)
{
    ln_ctx k = {.N = 5, .H = 20};
    size_t n = 100;
    k.x = fd_randv(n, 1, 2); k.w = fd_randv(20, 2, 1); k.b = fd_randv(20, 3, 1); k.c = fd_randv(n, 4, 1);
    for (size_t i = 0; i < n; i++) k.x[i] += 0.5f; /* a non-zero mean to subtract */
    k.y = calloc(n, 4); k.mean = calloc(5, 4); k.rstd = calloc(5, 4);
    float *dx = calloc(n, 4), *dw = calloc(20, 4), *db = calloc(20, 4);
    ln_loss(&k);
    /* the formula, in double */
    for (int r = 0; r < 5; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < 20; i++) mu += k.x[r * 20 + i] / 20.0;
        for (int i = 0; i < 20; i++) var += (k.x[r * 20 + i] - mu) * (k.x[r * 20 + i] - mu) / 20.0;
        for (int i = 0; i < 20; i++)
            CHECK_NEAR(k.y[r * 20 + i], k.w[i] * (k.x[r * 20 + i] - mu) / sqrt(var + 1e-5) + k.b[i], 1e-5, 1e-5);
    }
    mf_k_cpu_layernorm_bwd(dx, dw, db, k.c, k.x, k.mean, k.rstd, k.w, 5, 20);
    fd_check("layernorm dx", k.x, dx, n, ln_loss, &k, FD_H);
    fd_check("layernorm dw", k.w, dw, 20, ln_loss, &k, FD_H);
    fd_check("layernorm db", k.b, db, 20, ln_loss, &k, FD_H);
    free(k.x), free(k.w), free(k.b), free(k.c), free(k.y), free(k.mean), free(k.rstd), free(dx), free(dw), free(db);
}

/* ---- GELU (tanh) ---- */
typedef struct { size_t n; float *x, *y, *c; } gelu_ctx;
static double gelu_loss(void *p)
{
    gelu_ctx *k = p;
    mf_k_cpu_gelu(k->y, k->x, k->n);
    return fd_dotc(k->c, k->y, k->n);
}

TEST(test_kernels_fd_gelu_tanh)
{
    gelu_ctx k = {.n = 60};
    k.x = fd_randv(60, 5, 2.5f); k.c = fd_randv(60, 6, 1); k.y = calloc(60, 4);
    float *dx = calloc(60, 4);
    gelu_loss(&k);
    for (size_t i = 0; i < 60; i++) {
        double v = k.x[i];
        CHECK_NEAR(k.y[i], 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-5, 1e-6);
    }
    mf_k_cpu_gelu_bwd(dx, k.c, k.x, 60);
    fd_check("gelu dx", k.x, dx, 60, gelu_loss, &k, FD_H);
    free(k.x), free(k.c), free(k.y), free(dx);
}

/* ---- RoPE on half the head, interleaved pairs (GLM / ChatGLM2) ---- */
typedef struct { int N, nh, hd, rot; float *x, *y, *c, *cosv, *sinv; int *pos; } rope_ctx;
static double rope_loss(void *p)
{
    rope_ctx *k = p;
    size_t n = (size_t)k->N * k->nh * k->hd;
    memcpy(k->y, k->x, n * 4);
    mf_k_cpu_rope(k->y, k->pos, k->N, k->nh, k->hd, k->rot, 1, k->cosv, k->sinv, 0);
    return fd_dotc(k->c, k->y, n);
}

TEST(test_kernels_fd_partial_interleaved_rope_matches_formula)
{
    rope_ctx k = {.N = 4, .nh = 2, .hd = 12, .rot = 6};
    size_t n = 96;
    int pos[4] = {0, 3, 7, 20};
    k.pos = pos;
    k.cosv = calloc(32 * 3, 4); k.sinv = calloc(32 * 3, 4);
    mf_k_cpu_rope_table(k.cosv, k.sinv, 32, 6, 10000.0);
    k.x = fd_randv(n, 7, 1); k.c = fd_randv(n, 8, 1); k.y = calloc(n, 4);
    rope_loss(&k);
    /* pair i = (x[2i], x[2i+1]) turns by pos / 10000^(2i/rot); dims >= rot pass */
    for (int r = 0; r < 4; r++)
        for (int h = 0; h < 2; h++) {
            const float *x = k.x + (r * 2 + h) * 12, *y = k.y + (r * 2 + h) * 12;
            for (int i = 0; i < 3; i++) {
                double ang = pos[r] / pow(10000.0, 2.0 * i / 6.0), cs = cos(ang), sn = sin(ang);
                CHECK_NEAR(y[2 * i], x[2 * i] * cs - x[2 * i + 1] * sn, 1e-5, 1e-5);
                CHECK_NEAR(y[2 * i + 1], x[2 * i + 1] * cs + x[2 * i] * sn, 1e-5, 1e-5);
            }
            for (int d = 6; d < 12; d++) CHECK(y[d] == x[d]);
        }
    float *g = malloc(n * 4);
    memcpy(g, k.c, n * 4);
    mf_k_cpu_rope(g, pos, 4, 2, 12, 6, 1, k.cosv, k.sinv, 1); /* backward = inverse rotation of dy */
    fd_check("rope (partial, interleaved) dx", k.x, g, n, rope_loss, &k, FD_H);
    free(k.cosv), free(k.sinv), free(k.x), free(k.c), free(k.y), free(g);
}

/* ---- attention with ALiBi, prefix rows and padding ---- */
typedef struct { int B, T, P, nh, hd; float *q, *kf, *vf, *out, *att, *c; mf_k_alibi alibi; int32_t *mask; } att_ctx;
static double att_loss(void *p)
{
    att_ctx *k = p;
    mf_k_cpu_attention(k->out, k->att, k->q, k->kf, k->vf, k->mask, &k->alibi, k->B, k->T, k->P, k->nh, k->nh, k->hd);
    return fd_dotc(k->c, k->out, (size_t)k->B * k->T * k->nh * k->hd);
}

TEST(test_kernels_fd_alibi_attention_matches_plain_reference)
{
    att_ctx k = {.B = 2, .T = 6, .P = 2, .nh = 3, .hd = 4};
    int S = k.P + k.T, d = k.nh * k.hd;
    size_t nq = (size_t)k.B * k.T * d, nk = (size_t)k.B * S * d;
    float slopes[3] = {0.5f, 0.25f, 0.125f};
    int32_t kpos[2 * 8];
    k.mask = malloc((size_t)k.B * k.T * sizeof(int32_t));
    for (int i = 0; i < k.B * k.T; i++) k.mask[i] = i < 2 * k.T - 2; /* row 1: two right pads */
    for (int i = 0; i < 2 * S; i++) kpos[i] = (i % S) * 2 - (i / S); /* any positions: the bias follows them */
    k.alibi = (mf_k_alibi){slopes, kpos};
    k.q = fd_randv(nq, 9, 1); k.kf = fd_randv(nk, 10, 1); k.vf = fd_randv(nk, 11, 1); k.c = fd_randv(nq, 12, 1);
    for (int t = k.T - 2; t < k.T; t++)
        for (int i = 0; i < d; i++) k.c[((size_t)k.T + t) * d + i] = 0; /* padded queries feed nothing */
    k.out = calloc(nq, 4); k.att = calloc((size_t)k.B * k.nh * k.T * S, 4);
    att_loss(&k);
    /* reference: softmax_s(q.k_s / sqrt(d) + slope_h * pos_s) over visible keys, in double */
    for (int b = 0; b < k.B; b++)
        for (int h = 0; h < k.nh; h++)
            for (int t = 0; t < k.T; t++) {
                if (!k.mask[b * k.T + t]) continue;
                double sc[8], mx = -1e300, sum = 0;
                for (int s = 0; s < S; s++) {
                    int ok = s < k.P || (s - k.P <= t && k.mask[b * k.T + s - k.P]);
                    double dd = 0;
                    for (int i = 0; i < k.hd; i++)
                        dd += (double)k.q[((size_t)b * k.T + t) * d + h * k.hd + i] * k.kf[((size_t)b * S + s) * d + h * k.hd + i];
                    sc[s] = ok ? dd / 2.0 + slopes[h] * kpos[b * S + s] : -INFINITY;
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s < S; s++) sum += exp(sc[s] - mx);
                for (int i = 0; i < k.hd; i++) {
                    double o = 0;
                    for (int s = 0; s < S; s++) o += exp(sc[s] - mx) / sum * k.vf[((size_t)b * S + s) * d + h * k.hd + i];
                    CHECK_NEAR(k.out[((size_t)b * k.T + t) * d + h * k.hd + i], o, 1e-5, 1e-6);
                }
            }
    float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
    float *ws = calloc((size_t)omp_get_max_threads() * k.T * S, 4);
    mf_k_cpu_attention_bwd(dq, dk, dv, ws, omp_get_max_threads(), k.c, k.att, k.q, k.kf, k.vf, k.B, k.T, k.P, k.nh,
                           k.nh, k.hd);
    fd_check("alibi attention dq", k.q, dq, nq, att_loss, &k, FD_H);
    fd_check("alibi attention dk", k.kf, dk, nk, att_loss, &k, FD_H);
    fd_check("alibi attention dv", k.vf, dv, nk, att_loss, &k, FD_H);
    free(k.q), free(k.kf), free(k.vf), free(k.c), free(k.out), free(k.att), free(dq), free(dk), free(dv), free(ws);
    free(k.mask);
}

/* ---- whole models: every parameter, LoRA (dropout) on every projection, a prefix, a score head ---- */

TEST(test_kernels_fd_whole_bloom_model)
{
    /* LayerNorms + biases everywhere, embedding norm, GELU, ALiBi (3 heads: not a power of two),
     * per-head fused query_key_value, tied head; P-Tuning v2 prefix as HF past_key_values */
    mf_model_config c = {.arch = MF_ARCH_BLOOM, .vocab_size = 11, .hidden_size = 12, .intermediate_size = 48,
                         .num_hidden_layers = 2, .num_attention_heads = 3, .tie_word_embeddings = 1,
                         .max_position_embeddings = 32};
    mf_k_prefix_config pc = {.pre_seq_len = 2, .prefix_projection = 1, .prefix_hidden_size = 6, .seed = 4};
    /* 29 base (12 per layer), 16 LoRA (4 modules x 2 layers), 5 prefix, 1 score head */
    CHECK_INT(fd_check_model(&c, &pc, 0.3f), 29 + 16 + 5 + 1);
}

TEST(test_kernels_fd_whole_glm_model)
{
    /* RMSNorm, q/k/v biases, GQA 4:2, RoPE on half the head in interleaved pairs, fused gate_up */
    mf_model_config c = {.arch = MF_ARCH_GLM, .vocab_size = 11, .hidden_size = 16, .intermediate_size = 10,
                         .num_hidden_layers = 2, .num_attention_heads = 4, .num_key_value_heads = 2,
                         .attention_bias = 1, .max_position_embeddings = 32};
    mf_k_prefix_config pc = {.pre_seq_len = 2, .prefix_projection = 0, .seed = 4};
    /* 25 base (11 per layer), 24 LoRA (q, k, v, o, gate_up, down), 1 prefix, 1 score head */
    CHECK_INT(fd_check_model(&c, &pc, 0.3f), 25 + 24 + 1 + 1);
}

TEST(test_kernels_fd_whole_chatglm2_model_with_prefix_dropout)
{
    /* multi-query (4 heads, 1 kv group) fused [Q; K; V] with bias, fused dense_h_to_4h, ChatGLM2's
     * prefix encoder (kv-wide embedding), token positions from 0, and prefix dropout */
    mf_model_config c = {.arch = MF_ARCH_CHATGLM2, .vocab_size = 11, .hidden_size = 16, .intermediate_size = 10,
                         .num_hidden_layers = 2, .num_attention_heads = 4, .num_key_value_heads = 1,
                         .attention_bias = 1, .max_position_embeddings = 32};
    mf_k_prefix_config pc = {.pre_seq_len = 2, .prefix_projection = 1, .prefix_hidden_size = 16, .seed = 4,
                             .dropout = 0.3f};
    /* 17 base (7 per layer), 16 LoRA (query_key_value, dense, dense_h_to_4h, dense_4h_to_h), 5 prefix, 1 head */
    CHECK_INT(fd_check_model(&c, &pc, 0.2f), 17 + 16 + 5 + 1);
}

TEST(test_kernels_prefix_dropout_only_in_training_forwards_and_keyed_by_the_counter)
{
    mf_model_config c = {.arch = MF_ARCH_CHATGLM2, .vocab_size = 11, .hidden_size = 16, .intermediate_size = 10,
                         .num_hidden_layers = 2, .num_attention_heads = 4, .num_key_value_heads = 2,
                         .attention_bias = 1, .max_position_embeddings = 32};
    mf_model *m[2];
    mf_err err;
    for (int i = 0; i < 2; i++) {
        REQUIRE(mf_model_new(&m[i], &c, &err) == 0);
        REQUIRE(mf_model_init_random(m[i], 3, 0.4f, &err) == 0);
        mf_k_prefix_config pc = {.pre_seq_len = 3, .seed = 4, .dropout = i ? 0.5f : 0.0f};
        REQUIRE(mf_model_add_prefix(m[i], &pc, &err) == 0);
    }
    int32_t ids[6] = {1, 5, 7, 2, 9, 3};
    mf_k_batch b = {.B = 1, .T = 6, .input_ids = ids};
    float base[66], eval[66], t1[66], t2[66];
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m[0], &b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err) == 0);
    memcpy(base, o.logits, sizeof base);
    REQUIRE(mf_model_forward(m[1], &b, MF_FWD_LOGITS, &o, &err) == 0);
    memcpy(eval, o.logits, sizeof eval);
    CHECK(memcmp(base, eval, sizeof base) == 0); /* no dropout outside training */
    mf_model_set_rng_state(m[1], 7);
    REQUIRE(mf_model_forward(m[1], &b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err) == 0);
    memcpy(t1, o.logits, sizeof t1);
    CHECK(fd_max_rel(t1, eval, 66) > 1e-3); /* half the prefix elements dropped: different logits */
    mf_model_set_rng_state(m[1], 7);
    REQUIRE(mf_model_forward(m[1], &b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err) == 0);
    memcpy(t2, o.logits, sizeof t2);
    CHECK(memcmp(t1, t2, sizeof t1) == 0); /* the same counter, the same mask */
    REQUIRE(mf_model_forward(m[1], &b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err) == 0);
    CHECK(fd_max_rel(o.logits, t1, 66) > 1e-4); /* the next step draws a new mask */
    mf_model_free(m[0]);
    mf_model_free(m[1]);
}
