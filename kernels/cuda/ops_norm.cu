/*
 * kernels/cuda/ops_norm.cu — RMSNorm forward (optionally fused with the
 * residual add) and backward (see ops.cuh; reference mf_k_cpu_rmsnorm[_bwd]).
 *
 * One block per row for the row-wise parts; the weight gradient is reduced
 * deterministically in two steps: per-group-of-rows partials, then a
 * fixed-order sum over the groups.
 */
#include "kernels/cuda/ops_common.cuh"

#define NORM_THREADS 256
/* Rows summed by one block of the dw partial kernel. */
#define NORM_DW_ROWS 64

/* y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps). With res: x += res
 * first, stored back into x in T; the statistics use the stored (rounded)
 * value, which is what the backward will re-read. */
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_kernel(T *y, float *rstd, T *x, const T *res, const T *w, int H, float eps)
{
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * H;
    T *xr = x + row;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float v = ld(xr + i);
        if (res) {
            v = round_to<T>(v + ld(res + row + i));
            st(xr + i, v);
        }
        ss += v * v;
    }
    ss = block_sum(ss, red);
    float r = 1.0f / sqrtf(ss / (float)H + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    /* each thread re-reads only the elements it wrote itself: no barrier needed */
    for (int i = threadIdx.x; i < H; i += blockDim.x) st(y + row + i, ld(w + i) * (ld(xr + i) * r));
}

/* dx (= or +=) r * (dy*w - xhat * mean(dy*w*xhat)), xhat = x*r. A row's
 * reads all happen before its first write (block_sum is a barrier), so dx may
 * alias dy. */
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_bwd_dx_kernel(T *dx, int accumulate, const T *dy, const T *x, const float *rstd, const T *w, int H)
{
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * H;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) dot += ld(dy + row + i) * ld(w + i) * ld(x + row + i) * r;
    dot = block_sum(dot, red) / (float)H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float xi = ld(x + row + i);
        float g = r * (ld(dy + row + i) * ld(w + i) - xi * r * dot);
        st(dx + row + i, accumulate ? ld(dx + row + i) + g : g);
    }
}

/* part[g, i] = sum over rows n of group g (NORM_DW_ROWS rows, in order) of dy[n,i] * x[n,i] * rstd[n]. */
template <typename T>
__global__ void rmsnorm_dw_partial_kernel(float *part, const T *dy, const T *x, const float *rstd, int N, int H)
{
    int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= H) return;
    int n0 = blockIdx.x * NORM_DW_ROWS, n1 = min(n0 + NORM_DW_ROWS, N);
    float acc = 0.0f;
    for (int n = n0; n < n1; n++) acc += ld(dy + (size_t)n * H + i) * ld(x + (size_t)n * H + i) * rstd[n];
    part[(size_t)blockIdx.x * H + i] = acc;
}

/* dw[i] += sum_g part[g, i], g = 0, 1, ... in order. */
__global__ void rmsnorm_dw_reduce_kernel(float *dw, const float *part, int groups, int H)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= H) return;
    float acc = 0.0f;
    for (int g = 0; g < groups; g++) acc += part[(size_t)g * H + i];
    dw[i] += acc;
}

template <typename T>
static cudaError_t rmsnorm_launch(void *y, float *rstd, void *x, const void *res, const void *w, int N, int H,
                                  float eps, cudaStream_t st)
{
    rmsnorm_kernel<T><<<(unsigned)N, NORM_THREADS, 0, st>>>((T *)y, rstd, (T *)x, (const T *)res, (const T *)w, H, eps);
    return launch_status();
}

template <typename T>
static cudaError_t rmsnorm_bwd_launch(void *dx, int accumulate, float *dw, float *part, const void *dy, const void *x,
                                      const float *rstd, const void *w, int N, int H, cudaStream_t st)
{
    /* dw first: it reads dy, which the dx kernel may overwrite (dx may alias dy) */
    if (dw) {
        int groups = (N + NORM_DW_ROWS - 1) / NORM_DW_ROWS;
        unsigned cols = (unsigned)((H + NORM_THREADS - 1) / NORM_THREADS);
        rmsnorm_dw_partial_kernel<T><<<dim3((unsigned)groups, cols), NORM_THREADS, 0, st>>>(part, (const T *)dy,
                                                                                           (const T *)x, rstd, N, H);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
        rmsnorm_dw_reduce_kernel<<<cols, NORM_THREADS, 0, st>>>(dw, part, groups, H);
        if ((e = launch_status()) != cudaSuccess) return e;
    }
    if (dx) {
        rmsnorm_bwd_dx_kernel<T><<<(unsigned)N, NORM_THREADS, 0, st>>>((T *)dx, accumulate, (const T *)dy,
                                                                       (const T *)x, rstd, (const T *)w, H);
        return launch_status();
    }
    return cudaSuccess;
}

extern "C" cudaError_t mf_cu_rmsnorm(void *y, float *rstd, void *x, const void *res, const void *w, int N, int H,
                                     float eps, mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || H <= 0 || !y || !rstd || !x || !w) return cudaErrorInvalidValue;
    if (N == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, rmsnorm_launch, y, rstd, x, res, w, N, H, eps, st);
}

extern "C" size_t mf_cu_rmsnorm_bwd_scratch(int N, int H)
{
    if (N <= 0 || H <= 0) return 0;
    return (size_t)((N + NORM_DW_ROWS - 1) / NORM_DW_ROWS) * (size_t)H;
}

extern "C" cudaError_t mf_cu_rmsnorm_bwd(void *dx, int accumulate, float *dw, float *dw_scratch, const void *dy,
                                         const void *x, const float *rstd, const void *w, int N, int H,
                                         mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || H <= 0 || !dy || !x || !rstd || !w || (dw && !dw_scratch)) return cudaErrorInvalidValue;
    if (N == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, rmsnorm_bwd_launch, dx, accumulate, dw, dw_scratch, dy, x, rstd, w, N, H, st);
}
