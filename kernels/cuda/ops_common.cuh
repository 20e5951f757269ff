/*
 * kernels/cuda/ops_common.cuh — what the ops_*.cu files share (internal,
 * C++ only): activation-dtype load/store, warp/block reductions, launch
 * sizing and the dtype dispatch.
 *
 * Every kernel is a template on the activation element type T (float or
 * __nv_bfloat16). Values are loaded to fp32 with ld(), all arithmetic is
 * fp32, and st() rounds back to T (round to nearest even for bf16).
 */
#ifndef MF_KERNELS_CUDA_OPS_COMMON_CUH
#define MF_KERNELS_CUDA_OPS_COMMON_CUH

#include "kernels/cuda/ops.cuh"

#include <cuda_bf16.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(const float *p)
{
    return *p;
}
__device__ __forceinline__ float ld(const bf16 *p)
{
    return __bfloat162float(*p);
}
__device__ __forceinline__ void st(float *p, float v)
{
    *p = v;
}
__device__ __forceinline__ void st(bf16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}
/* v rounded to T and back (what storing then re-reading gives). */
template <typename T> __device__ __forceinline__ float round_to(float v);
template <> __device__ __forceinline__ float round_to<float>(float v)
{
    return v;
}
template <> __device__ __forceinline__ float round_to<bf16>(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), in a
 * fixed order: every thread gets the result. `red` is 32 floats of shared
 * memory; the call ends with a barrier, so `red` may be reused right after. */
__device__ __forceinline__ float block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
}

/* Threads per block of the elementwise kernels, and a grid for n elements
 * with a grid-stride loop (capped; every kernel loops). */
#define EW_THREADS 256
static inline unsigned ew_blocks(size_t n)
{
    size_t b = (n + EW_THREADS - 1) / EW_THREADS;
    const size_t cap = (size_t)1 << 16;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

/* Grid-stride loop over [0, n) in size_t. */
#define GRID_LOOP(i, n)                                                                                     \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* Calls `launch<T>(args...)` for the activation dtype; an unknown dtype is
 * cudaErrorInvalidValue. The launcher's own return (the launch status) is
 * returned. */
#define MF_CU_DISPATCH(dt, launch, ...)                                                                     \
    ((dt) == MF_CU_F32    ? launch<float>(__VA_ARGS__)                                                       \
     : (dt) == MF_CU_BF16 ? launch<bf16>(__VA_ARGS__)                                                        \
                          : cudaErrorInvalidValue)

/* Status of the launch just issued (configuration errors surface here; faults
 * inside a kernel surface at the next synchronising call). */
static inline cudaError_t launch_status(void)
{
    return cudaGetLastError();
}

#endif
