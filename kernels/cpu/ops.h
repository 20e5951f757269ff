/*
 * kernels/cpu/ops.h — the CPU primitives of the transformer, forward and
 * backward, fp32 row-major. Each reads like its formula; the model code in
 * cpu_model.c strings them together. Backward functions ACCUMULATE into
 * their gradient outputs (+=) unless said otherwise; a NULL gradient output
 * is skipped (frozen weight, or nothing below needs it).
 *
 * Threading: one OpenMP team does everything; GEMMs are split into per-thread
 * blocks, each a single-threaded OpenBLAS call (openblas_set_num_threads(1) at
 * attach). Loops use static schedules, so results are bit-reproducible for a
 * fixed thread count. No function here allocates.
 */
#ifndef MF_KERNELS_CPU_OPS_H
#define MF_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* C[M,N] = alpha op(A) op(B) + beta C (row-major), partitioned over the OpenMP team. */
void mf_k_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* y[N,out] = x[N,in] W[out,in]^T (+ b[out]); beta = 0 overwrites y, 1 adds. */
void mf_k_cpu_linear(float *y, const float *x, const float *W, const float *b, int N, int in, int out,
                     float alpha, float beta);
/* dx[N,in] += alpha dy W; dW[out,in] += alpha dy^T x; db[out] += alpha sum_n dy. */
void mf_k_cpu_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                         const float *W, int N, int in, int out, float alpha);

/* RMSNorm (HF LlamaRMSNorm): y = w * x / sqrt(mean(x^2) + eps); rstd[N] saved. */
void mf_k_cpu_rmsnorm(float *y, float *rstd, const float *x, const float *w, int N, int H, float eps);
/* dx += rstd * (dy*w - xhat * mean(dy*w*xhat)), xhat = x*rstd; dw += sum_n dy*xhat. */
void mf_k_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                          const float *w, int N, int H);

/* LayerNorm (torch.nn.LayerNorm): y = w * (x - mean) * rstd + b, rstd = 1/sqrt(var + eps)
 * (biased variance); mean[N], rstd[N] saved. */
void mf_k_cpu_layernorm(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                        int H, float eps);
/* xhat = (x - mean) rstd, g = dy w: dx += rstd (g - mean(g) - xhat mean(g xhat));
 * dw += sum_n dy xhat; db += sum_n dy. */
void mf_k_cpu_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *w, int N, int H);

/* cos/sin tables [len, rot/2] as HF computes them in fp32:
 * inv_freq[i] = 1 / theta^(2i/rot), angle = pos * inv_freq[i] (rot = the rotary dims). */
void mf_k_cpu_rope_table(float *cosv, float *sinv, int len, int rot, double theta);
/* half_freq = 1: inv_freq rounded to fp16 first, as ChatGLM-6B's RotaryEmbedding keeps it. */
void mf_k_cpu_rope_table_ex(float *cosv, float *sinv, int len, int rot, double theta, int half_freq);
/* In place on x[N, nh*hd]; row n is at position pos[n]; the first rot dims of each
 * head rotate, the rest pass. Halves (HF rotate_half, LLaMA):
 * (a, b) = (x[i], x[i+rot/2]); interleaved (GLM, ChatGLM2): (a, b) = (x[2i], x[2i+1]);
 * (a, b) -> (a c - b s, b c + a s) with the table's i-th angle. inverse = 1 applies
 * the transpose rotation (the backward of the forward). */
void mf_k_cpu_rope(float *x, const int *pos, int N, int nh, int hd, int rot, int interleaved, const float *cosv,
                   const float *sinv, int inverse);

/* GELU, tanh approximation (BLOOM's bloom_gelu_forward):
 * y = 0.5 x (1 + tanh(0.79788456 x (1 + 0.044715 x^2))). */
void mf_k_cpu_gelu(float *y, const float *x, size_t n);
/* dx = dy * gelu'(x)  (overwrite). */
void mf_k_cpu_gelu_bwd(float *dx, const float *dy, const float *x, size_t n);

/* SwiGLU: act = silu(g) * u. */
void mf_k_cpu_swiglu(float *act, const float *g, const float *u, size_t n);
/* dg = dact * u * silu'(g), du = dact * silu(g)  (overwrite). */
void mf_k_cpu_swiglu_bwd(float *dg, float *du, const float *dact, const float *g, const float *u, size_t n);

/* Attention over keys with a prefix. Shapes:
 *   q [B*T, nh*hd] (token-major), kf/vf [B, S, nkv*hd] with S = P + T (P prefix rows first),
 *   mask [B, T] (1 real, 0 pad; NULL = all real), att [B, nh, T, S] (probabilities, saved),
 *   out [B*T, nh*hd].
 * Query t may see every prefix row and key positions s <= t whose mask is 1.
 * A row that sees nothing (a pad query in front of all real tokens) outputs 0.
 * alibi: NULL, or ALiBi (see mf_k_alibi). The backward does not need it (att holds
 * the probabilities). */
typedef struct mf_k_alibi {
    const float *slope; /* [nh] */
    const int32_t *pos; /* [B, S] key positions: score(b, h, t, s) += slope[h] * pos[b*S + s]; transformers'
                           BLOOM counts real keys only, (cumsum(mask) - 1) * mask over [prefix; tokens] */
} mf_k_alibi;
void mf_k_cpu_attention(float *out, float *att, const float *q, const float *kf, const float *vf,
                        const int32_t *mask, const mf_k_alibi *alibi, int B, int T, int P, int nh, int nkv, int hd);
/* The same with GLM's prefix LM: ctx [B] or NULL; in row b, token keys at positions < ctx[b]
 * (the prompt) are visible to every query, not only to later ones. */
void mf_k_cpu_attention_ex(float *out, float *att, const float *q, const float *kf, const float *vf,
                           const int32_t *mask, const mf_k_alibi *alibi, const int32_t *ctx, int B, int T, int P,
                           int nh, int nkv, int hd);
/* dq (overwrite) [B*T, nh*hd]; dkf, dvf (overwrite) [B, S, nkv*hd];
 * scratch: ws_threads * T * S floats (at most ws_threads threads run). */
void mf_k_cpu_attention_bwd(float *dq, float *dkf, float *dvf, float *scratch, int ws_threads, const float *dout,
                            const float *att, const float *q, const float *kf, const float *vf, int B, int T,
                            int P, int nh, int nkv, int hd);
void mf_k_cpu_attention_bwd_ex(float *dq, float *dkf, float *dvf, float *scratch, int ws_threads, const float *dout,
                               const float *att, const float *q, const float *kf, const float *vf, const int32_t *ctx,
                               int B, int T, int P, int nh, int nkv, int hd);

/* Per row n: logp[n] = log_softmax(logits[n])[target[n]] (target < 0: logp 0),
 * lse[n] = log(sum_j exp(logits[n][j])) when lse is not NULL (saved for the
 * backward). Returns sum of logp over rows with target >= 0. */
double mf_k_cpu_logp(float *logp, float *lse, const float *logits, const int32_t *target, int N, int V);
/* In place: logits[n] <- dlogp[n] * (onehot(target[n]) - softmax(logits[n])),
 * softmax = exp(logits - lse) with the forward's lse (NULL: recomputed). */
void mf_k_cpu_logp_bwd(float *logits, const float *lse, const float *dlogp, const int32_t *target, int N, int V);

/* The vectorisable exp of the kernels (within 2 ulp of expf on [-87.3, 88],
 * clamped outside); exposed for tests. */
float mf_k_cpu_exp(float x);

#endif
