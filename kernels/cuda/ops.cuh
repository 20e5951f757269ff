/*
 * kernels/cuda/ops.cuh — the CUDA primitives of the transformer, forward and
 * backward: the GPU counterparts of kernels/cpu/ops.h, which is the reference
 * each one is tested against (tests/cuda/).
 *
 * Conventions
 *  - Row-major, HF layouts, the same shapes and index conventions as cpu/ops.h.
 *  - Activations are "act" buffers whose element type is the run's activation
 *    dtype (mf_cu_dtype: fp32 for conformance runs, bf16 for training); the
 *    dtype is a parameter, kernels are templated inside ops.cu. Statistics that
 *    a backward re-reads (rstd, logsumexp) are always fp32, and every reduction
 *    accumulates in fp32.
 *  - Weights read by a kernel (norm weights) are in the activation dtype;
 *    gradients of weights are fp32 and ACCUMULATE (+=), like cpu/ops.h.
 *    A NULL gradient output is skipped.
 *  - Every launcher is asynchronous on `st` and returns the launch status
 *    (cudaGetLastError()); none allocates. Scratch comes from the caller.
 *  - Determinism: with `deterministic` set (where a launcher takes it) results
 *    are bit-identical across reruns on one GPU (no float atomics).
 *
 * May include: CUDA runtime headers. Nothing of stages/, engine/, artifacts/.
 */
#ifndef MF_KERNELS_CUDA_OPS_CUH
#define MF_KERNELS_CUDA_OPS_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mf_cu_dtype { MF_CU_F32 = 0, MF_CU_BF16 = 1 } mf_cu_dtype;

/* Bytes of one element. */
size_t mf_cu_dtype_size(mf_cu_dtype dt);

/* ---------------------------------------------------------------- elementwise */

/* dst[i] = (dst dtype) src[i]; fp32 <-> bf16 (round to nearest even) or copy. */
cudaError_t mf_cu_convert(void *dst, mf_cu_dtype ddt, const void *src, mf_cu_dtype sdt, size_t n, cudaStream_t st);
/* y[i] += x[i] (same dtype; the residual add). */
cudaError_t mf_cu_add(void *y, const void *x, size_t n, mf_cu_dtype dt, cudaStream_t st);
/* y[i] = a * y[i] (fp32; gradient scaling, averaging after all-reduce). */
cudaError_t mf_cu_scale_f32(float *y, float a, size_t n, cudaStream_t st);
/* y[n, o] += b[o] for a [N, out] act matrix (bias in the act dtype). */
cudaError_t mf_cu_bias_add(void *y, const void *b, int N, int out, mf_cu_dtype dt, cudaStream_t st);
/* db[o] += alpha * sum_n dy[n, o] (fp32 out, deterministic column reduction). */
cudaError_t mf_cu_bias_bwd(float *db, const void *dy, int N, int out, float alpha, mf_cu_dtype dt, cudaStream_t st);
/* tanh forward in place / backward: dx = dy * (1 - y^2) written over dy. (prefix MLP) */
cudaError_t mf_cu_tanh(void *x, size_t n, mf_cu_dtype dt, cudaStream_t st);
cudaError_t mf_cu_tanh_bwd(void *dy, const void *y, size_t n, mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- embedding */

/* x[n, :] = table[ids[n], :]  (table and x in dt). */
cudaError_t mf_cu_embed(void *x, const void *table, const int32_t *ids, int N, int H, mf_cu_dtype dt,
                        cudaStream_t st);
/* dtable[ids[n], :] += dx[n, :]  (fp32 dtable). Deterministic mode sums each
 * vocabulary row's contributions in token order (needs `order`: N int32
 * scratch + sort done by the launcher); otherwise fp32 atomics. */
cudaError_t mf_cu_embed_bwd(float *dtable, const void *dx, const int32_t *ids, int N, int H, int V, mf_cu_dtype dt,
                            int deterministic, int32_t *order_scratch, cudaStream_t st);

/* ---------------------------------------------------------------- RMSNorm */

/* HF LlamaRMSNorm: y = w * x / sqrt(mean(x^2) + eps), fp32 statistics; rstd[N]
 * saved. With `res` non-NULL the residual is fused first: x += res (x is
 * updated in place and normalised) — the "add + norm" of a pre-norm block. */
cudaError_t mf_cu_rmsnorm(void *y, float *rstd, void *x, const void *res, const void *w, int N, int H, float eps,
                          mf_cu_dtype dt, cudaStream_t st);
/* dx (+= when accumulate, else =) rstd * (dy*w - xhat * mean(dy*w*xhat));
 * dw[H] += sum_n dy*xhat (fp32, deterministic: per-block partials in
 * `dw_scratch` [ceil(N/rows_per_block) * H] floats, then a fixed-order sum;
 * mf_cu_rmsnorm_bwd_scratch gives the size). */
size_t mf_cu_rmsnorm_bwd_scratch(int N, int H);
cudaError_t mf_cu_rmsnorm_bwd(void *dx, int accumulate, float *dw, float *dw_scratch, const void *dy, const void *x,
                              const float *rstd, const void *w, int N, int H, mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- RoPE */

/* In place on x[N, nh*hd]; row n at position pos[n]; tables cos/sin [len, hd/2]
 * fp32 (built on the host by mf_k_cpu_rope_table and uploaded once). HF
 * rotate_half layout; inverse = 1 applies the transpose (the backward). */
cudaError_t mf_cu_rope(void *x, const int32_t *pos, int N, int nh, int hd, const float *cosv, const float *sinv,
                       int inverse, mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- SwiGLU */

/* act = silu(g) * u. */
cudaError_t mf_cu_swiglu(void *act, const void *g, const void *u, size_t n, mf_cu_dtype dt, cudaStream_t st);
/* dg = dact * u * silu'(g), du = dact * silu(g) (overwrite; dg/du may alias g/u). */
cudaError_t mf_cu_swiglu_bwd(void *dg, void *du, const void *dact, const void *g, const void *u, size_t n,
                             mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- attention */

/* Assemble keys/values with the prefix: kf[b, s, :] = pkv_rows[s, :] for s < P,
 * kf[b, P + t, :] = k[b*T + t, :] (same for v). pk/pv: [P, Dkv] (NULL when P = 0).
 * k/v/kf/vf in dt. kv_split is its backward: dk[b*T+t] = dkf[b, P+t] and
 * dpk[s] += sum_b dkf[b, s] (fp32 dpk/dpv, NULL to skip). */
cudaError_t mf_cu_kv_assemble(void *kf, void *vf, const void *k, const void *v, const void *pk, const void *pv, int B,
                              int T, int P, int Dkv, mf_cu_dtype dt, cudaStream_t st);
cudaError_t mf_cu_kv_split(void *dk, void *dv, float *dpk, float *dpv, const void *dkf, const void *dvf, int B, int T,
                           int P, int Dkv, mf_cu_dtype dt, cudaStream_t st);

/* Fused causal attention with prefix, GQA and key padding (flash-style tiling:
 * no [T, S] matrix in global memory). Shapes as mf_k_cpu_attention:
 *   q [B*T, nh*hd], kf/vf [B, S, nkv*hd] with S = P + T, mask [B, T] or NULL,
 *   out [B*T, nh*hd], lse [B, nh, T] fp32 log-sum-exp of the scaled scores
 *   (-inf for a query that sees no key; its output is 0).
 * Query t sees every prefix row and positions s <= t whose mask is 1.
 * hd in {8, 16, 32, 64, 80, 96, 128}; others return cudaErrorInvalidValue. */
cudaError_t mf_cu_attention(void *out, float *lse, const void *q, const void *kf, const void *vf,
                            const int32_t *mask, int B, int T, int P, int nh, int nkv, int hd, mf_cu_dtype dt,
                            cudaStream_t st);
/* Backward: dq [B*T, nh*hd] (overwrite), dkf/dvf [B, S, nkv*hd] (overwrite),
 * from dout, the forward's out and lse. scratch: mf_cu_attention_bwd_scratch
 * bytes (the row sums D = rowsum(dout * out), [B, nh, T] fp32). The
 * implementation has no atomics (dK/dV: one block per key block; dQ: a second
 * pass), so it is deterministic whatever `deterministic` says. */
size_t mf_cu_attention_bwd_scratch(int B, int T, int P, int nh, int nkv, int hd, int deterministic);
cudaError_t mf_cu_attention_bwd(void *dq, void *dkf, void *dvf, const void *dout, const void *out, const float *lse,
                                const void *q, const void *kf, const void *vf, const int32_t *mask, int B, int T,
                                int P, int nh, int nkv, int hd, mf_cu_dtype dt, int deterministic, void *scratch,
                                cudaStream_t st);

/* ---------------------------------------------------------------- LM loss */

/* Fused log-softmax of the targets: per row n of logits [N, V] (dt),
 * lse[n] = logsumexp(logits[n]) and logp[n] = logits[n, target[n]] - lse[n]
 * (target < 0: logp 0). fp32 out. No probability tensor is materialised. */
cudaError_t mf_cu_logp(float *logp, float *lse, const void *logits, const int32_t *target, int N, int V,
                       mf_cu_dtype dt, cudaStream_t st);
/* In place: logits[n] <- dlogp[n] * (onehot(target[n]) - exp(logits[n] - lse[n])). */
cudaError_t mf_cu_logp_bwd(void *logits, const float *dlogp, const int32_t *target, const float *lse, int N, int V,
                           mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- LoRA dropout */

/* y[i] = keep(key + i) ? x[i] / (1 - p) : 0 with keep(c) = (hash64(c) >> 40) >= p * 2^24
 * — bit-for-bit the CPU mask (mf_k_hash64, kernels/rng.c), so CPU and CUDA
 * runs drop the same elements. y may alias x. */
cudaError_t mf_cu_dropout(void *y, const void *x, size_t n, uint64_t key, float p, mf_cu_dtype dt, cudaStream_t st);

/* ---------------------------------------------------------------- optimizer */

/* One trainable tensor for the multi-tensor kernels. */
typedef struct mf_cu_tensor {
    float *param;     /* fp32 master weights [n] */
    const float *grad;/* fp32 gradient [n] */
    float *m, *v;     /* AdamW moments [n] */
    void *shadow;     /* activation-dtype copy refreshed after the step (NULL: none) */
    size_t n;
    int decay;        /* apply weight decay */
} mf_cu_tensor;

/* sum over tensors of sum(grad^2), fp32 partials summed in a fixed order into
 * *out (device float, overwritten). scratch: mf_cu_sqnorm_scratch(n_tensors) floats. */
size_t mf_cu_sqnorm_scratch(int n_tensors);
cudaError_t mf_cu_grad_sqnorm(float *out, const mf_cu_tensor *host_list, int n_tensors, float *scratch,
                              cudaStream_t st);
/* torch.optim.AdamW step (decoupled decay, bias corrections for `step` >= 1)
 * on every tensor, with grads multiplied by `grad_scale` (clipping) first;
 * `shadow_dt` is the dtype of the shadows. One launch per chunk of tensors. */
cudaError_t mf_cu_adamw(const mf_cu_tensor *host_list, int n_tensors, float lr, float beta1, float beta2, float eps,
                        float weight_decay, long step, float grad_scale, mf_cu_dtype shadow_dt, cudaStream_t st);

/* ---------------------------------------------------------------- sampling helpers */

/* For decode: dst[i, :] = src[rows[i], :] of an act matrix with `cols` columns. */
cudaError_t mf_cu_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int cols, mf_cu_dtype dt,
                              cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
