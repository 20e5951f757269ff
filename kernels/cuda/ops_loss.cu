/*
 * kernels/cuda/ops_loss.cu — the fused log-softmax of the targets (the LM
 * loss) and its backward, see ops.cuh; reference mf_k_cpu_logp[_bwd].
 *
 * One block per row of logits [N, V], streaming the row in chunks: each
 * thread keeps an online (max, sum of exp) pair over the elements it reads,
 * the pairs are merged in a fixed tree order (deterministic), and only the
 * fp32 logsumexp is saved. No probability tensor exists at any point; the
 * backward rebuilds exp(logit - lse) on the fly and overwrites the logits
 * with their gradient.
 *
 * Rows whose start is 16-byte aligned and whose length is a multiple of the
 * vector width are read with 16-byte loads (4 fp32 or 8 bf16 values).
 */
#include "kernels/cuda/ops_common.cuh"

#include <stdint.h>

#define LOSS_THREADS 512

/* VW consecutive values of a row as fp32 (VW = 1, or one 16-byte load). */
template <int VW> __device__ __forceinline__ void load_vec(const float *p, float (&v)[VW]);
template <> __device__ __forceinline__ void load_vec<1>(const float *p, float (&v)[1])
{
    v[0] = *p;
}
template <> __device__ __forceinline__ void load_vec<4>(const float *p, float (&v)[4])
{
    float4 q = *(const float4 *)p;
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
template <int VW> __device__ __forceinline__ void load_vec(const bf16 *p, float (&v)[VW]);
template <> __device__ __forceinline__ void load_vec<1>(const bf16 *p, float (&v)[1])
{
    v[0] = __bfloat162float(*p);
}
template <> __device__ __forceinline__ void load_vec<8>(const bf16 *p, float (&v)[8])
{
    uint4 q = *(const uint4 *)p;
    const bf16 *h = (const bf16 *)&q;
    for (int k = 0; k < 8; k++) v[k] = __bfloat162float(h[k]);
}
template <int VW> __device__ __forceinline__ void store_vec(float *p, const float (&v)[VW]);
template <> __device__ __forceinline__ void store_vec<1>(float *p, const float (&v)[1])
{
    *p = v[0];
}
template <> __device__ __forceinline__ void store_vec<4>(float *p, const float (&v)[4])
{
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
}
template <int VW> __device__ __forceinline__ void store_vec(bf16 *p, const float (&v)[VW]);
template <> __device__ __forceinline__ void store_vec<1>(bf16 *p, const float (&v)[1])
{
    *p = __float2bfloat16_rn(v[0]);
}
template <> __device__ __forceinline__ void store_vec<8>(bf16 *p, const float (&v)[8])
{
    uint4 q;
    bf16 *h = (bf16 *)&q;
    for (int k = 0; k < 8; k++) h[k] = __float2bfloat16_rn(v[k]);
    *(uint4 *)p = q;
}

/* Online logsumexp state: sum of exp(x - m) over the values seen, m their max. */
struct lse_acc {
    float m, s;
};

__device__ __forceinline__ void lse_add(lse_acc &a, float x)
{
    if (x > a.m) {
        a.s = a.s * expf(a.m - x) + 1.0f; /* a.m = -inf at first: 0 * 0 + 1 */
        a.m = x;
    } else if (x != -INFINITY) {
        a.s += expf(x - a.m);
    }
}

__device__ __forceinline__ lse_acc lse_merge(lse_acc a, lse_acc b)
{
    float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return a; /* both empty */
    lse_acc r = {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
    return r;
}

/* Merge over the block in a fixed order (butterfly in each warp, then warp 0
 * over the warps); every thread gets the result. */
__device__ lse_acc block_lse(lse_acc a)
{
    __shared__ float sm[32], ss[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        lse_acc b = {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
        a = lse_merge(a, b);
    }
    if (lane == 0) sm[w] = a.m, ss[w] = a.s;
    __syncthreads();
    lse_acc t = {-INFINITY, 0.0f};
    if (lane < nw) t.m = sm[lane], t.s = ss[lane];
    for (int o = 16; o > 0; o >>= 1) {
        lse_acc b = {__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)};
        t = lse_merge(t, b);
    }
    return t;
}

/* lse[n] = logsumexp(logits[n, :]); logp[n] = logits[n, target] - lse[n]
 * (target < 0: 0; target >= V: NaN, so a bad label cannot pass unnoticed). */
template <typename T, int VW>
__global__ void __launch_bounds__(LOSS_THREADS) logp_kernel(float *logp, float *lse, const T *logits, const int32_t *target, int V)
{
    const T *row = logits + (size_t)blockIdx.x * V;
    lse_acc a = {-INFINITY, 0.0f};
    for (int j = threadIdx.x * VW; j < V; j += blockDim.x * VW) {
        float v[VW];
        load_vec<VW>(row + j, v);
        for (int k = 0; k < VW; k++) lse_add(a, v[k]);
    }
    a = block_lse(a);
    if (threadIdx.x == 0) {
        float l = a.m + logf(a.s); /* s >= 1 unless every logit is -inf */
        int t = target[blockIdx.x];
        lse[blockIdx.x] = l;
        logp[blockIdx.x] = t < 0 ? 0.0f : t < V ? ld(row + t) - l : __int_as_float(0x7fc00000);
    }
}

/* logits[n, j] <- g * ([j == target] - exp(logits[n, j] - lse[n])), g = dlogp[n];
 * a row with target < 0 or g == 0 (or no dlogp) becomes 0. */
template <typename T, int VW>
__global__ void __launch_bounds__(LOSS_THREADS)
    logp_bwd_kernel(T *logits, const float *dlogp, const int32_t *target, const float *lse, int V)
{
    T *row = logits + (size_t)blockIdx.x * V;
    int t = target[blockIdx.x];
    float g = dlogp ? dlogp[blockIdx.x] : 0.0f, l = lse[blockIdx.x];
    int zero = t < 0 || g == 0.0f;
    for (int j = threadIdx.x * VW; j < V; j += blockDim.x * VW) {
        float v[VW];
        if (zero) {
            for (int k = 0; k < VW; k++) v[k] = 0.0f;
        } else {
            load_vec<VW>(row + j, v);
            for (int k = 0; k < VW; k++) v[k] = (j + k == t ? g : 0.0f) - g * expf(v[k] - l);
        }
        store_vec<VW>(row + j, v);
    }
}

/* 16-byte vectors when the rows allow them. */
template <typename T> static int loss_vec_ok(const void *logits, int V)
{
    const int vw = 16 / (int)sizeof(T);
    return ((uintptr_t)logits % 16) == 0 && V % vw == 0;
}

template <typename T>
static cudaError_t logp_launch(float *logp, float *lse, const void *logits, const int32_t *target, int N, int V,
                               cudaStream_t st)
{
    if (loss_vec_ok<T>(logits, V))
        logp_kernel<T, 16 / sizeof(T)><<<(unsigned)N, LOSS_THREADS, 0, st>>>(logp, lse, (const T *)logits, target, V);
    else
        logp_kernel<T, 1><<<(unsigned)N, LOSS_THREADS, 0, st>>>(logp, lse, (const T *)logits, target, V);
    return launch_status();
}

template <typename T>
static cudaError_t logp_bwd_launch(void *logits, const float *dlogp, const int32_t *target, const float *lse, int N,
                                   int V, cudaStream_t st)
{
    if (loss_vec_ok<T>(logits, V))
        logp_bwd_kernel<T, 16 / sizeof(T)><<<(unsigned)N, LOSS_THREADS, 0, st>>>((T *)logits, dlogp, target, lse, V);
    else
        logp_bwd_kernel<T, 1><<<(unsigned)N, LOSS_THREADS, 0, st>>>((T *)logits, dlogp, target, lse, V);
    return launch_status();
}

extern "C" cudaError_t mf_cu_logp(float *logp, float *lse, const void *logits, const int32_t *target, int N, int V,
                                  mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || V <= 0 || !logp || !lse || !logits || !target) return cudaErrorInvalidValue;
    if (N == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, logp_launch, logp, lse, logits, target, N, V, st);
}

extern "C" cudaError_t mf_cu_logp_bwd(void *logits, const float *dlogp, const int32_t *target, const float *lse, int N,
                                      int V, mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || V <= 0 || !logits || !target || !lse) return cudaErrorInvalidValue;
    if (N == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, logp_bwd_launch, logits, dlogp, target, lse, N, V, st);
}
