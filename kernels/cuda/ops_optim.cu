/*
 * kernels/cuda/ops_optim.cu — multi-tensor AdamW and the global gradient
 * squared norm (see ops.cuh).
 *
 * AdamW is torch.optim.AdamW exactly as kernels/optim.c runs it on the CPU:
 *   g  = grad * grad_scale                         (clipping coefficient)
 *   p *= keep,  keep = 1 - lr * wd  (wd = 0 for tensors without decay)
 *   m += (1 - b1) (g - m)                          (torch's lerp)
 *   v  = b2 v + (1 - b2) g^2
 *   p -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps),  step_size = lr / (1 - b1^t)
 * The scalars (keep, step_size, sqrt(1 - b2^t)) are computed on the host in
 * double and rounded to float, like optim.c. Tensors travel in batches of
 * up to ADAM_BATCH pointers in a by-value kernel argument: one launch per
 * batch, blockIdx.y picks the tensor.
 *
 * The squared norm is deterministic: every tensor is cut into SQ_BLOCKS fixed
 * slices whose fp32 partial sums land in scratch, then one block adds all the
 * partials in a fixed order. The result does not depend on the batching.
 */
#include "kernels/cuda/ops_common.cuh"

#include <math.h>
#include <string.h>

#define ADAM_BATCH 16
#define ADAM_THREADS 256
#define SQ_BATCH 32
#define SQ_BLOCKS 128
#define SQ_THREADS 256

struct adamw_batch {
    float *param[ADAM_BATCH];
    const float *grad[ADAM_BATCH];
    float *m[ADAM_BATCH], *v[ADAM_BATCH];
    void *shadow[ADAM_BATCH];
    size_t n[ADAM_BATCH];
    float keep[ADAM_BATCH];
};

struct adamw_scalars {
    float b1, b2, eps, step_size, bc2_sqrt, grad_scale;
};

template <typename S> __global__ void __launch_bounds__(ADAM_THREADS) adamw_kernel(adamw_batch bt, adamw_scalars c)
{
    int k = blockIdx.y;
    size_t n = bt.n[k];
    float *w = bt.param[k], *mm = bt.m[k], *vv = bt.v[k];
    const float *g = bt.grad[k];
    S *shadow = (S *)bt.shadow[k];
    float keep = bt.keep[k];
    GRID_LOOP(i, n)
    {
        float gi = g[i] * c.grad_scale;
        float wi = w[i] * keep;
        float mi = mm[i] + (1.0f - c.b1) * (gi - mm[i]);
        float vi = vv[i] * c.b2 + (1.0f - c.b2) * gi * gi;
        float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
        wi -= c.step_size * (mi / denom);
        w[i] = wi;
        mm[i] = mi;
        vv[i] = vi;
        if (shadow) st(shadow + i, wi);
    }
}

static unsigned adam_blocks(size_t max_n)
{
    size_t b = (max_n + ADAM_THREADS - 1) / ADAM_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 2048 ? 2048 : b);
}

template <typename S>
static cudaError_t adamw_launch(const mf_cu_tensor *list, int n_tensors, double lr, double wd, adamw_scalars c,
                                cudaStream_t st)
{
    for (int k0 = 0; k0 < n_tensors; k0 += ADAM_BATCH) {
        adamw_batch bt;
        memset(&bt, 0, sizeof(bt));
        int nb = n_tensors - k0 < ADAM_BATCH ? n_tensors - k0 : ADAM_BATCH;
        size_t max_n = 0;
        for (int j = 0; j < nb; j++) {
            const mf_cu_tensor *t = &list[k0 + j];
            bt.param[j] = t->param, bt.grad[j] = t->grad, bt.m[j] = t->m, bt.v[j] = t->v;
            bt.shadow[j] = t->shadow, bt.n[j] = t->n;
            bt.keep[j] = (float)(1.0 - lr * (t->decay ? wd : 0.0));
            max_n = t->n > max_n ? t->n : max_n;
        }
        if (max_n == 0) continue;
        adamw_kernel<S><<<dim3(adam_blocks(max_n), (unsigned)nb), ADAM_THREADS, 0, st>>>(bt, c);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

extern "C" cudaError_t mf_cu_adamw(const mf_cu_tensor *host_list, int n_tensors, float lr, float beta1, float beta2,
                                   float eps, float weight_decay, long step, float grad_scale, mf_cu_dtype shadow_dt,
                                   cudaStream_t st)
{
    if (n_tensors < 0 || (n_tensors > 0 && !host_list) || step < 1) return cudaErrorInvalidValue;
    for (int k = 0; k < n_tensors; k++) {
        const mf_cu_tensor *t = &host_list[k];
        if (t->n > 0 && (!t->param || !t->grad || !t->m || !t->v)) return cudaErrorInvalidValue;
    }
    /* as optim.c: bias corrections in double, rounded once */
    double bc1 = 1.0 - pow((double)beta1, (double)step), bc2 = 1.0 - pow((double)beta2, (double)step);
    adamw_scalars c;
    c.b1 = beta1, c.b2 = beta2, c.eps = eps, c.grad_scale = grad_scale;
    c.step_size = (float)((double)lr / bc1);
    c.bc2_sqrt = (float)sqrt(bc2);
    return MF_CU_DISPATCH(shadow_dt, adamw_launch, host_list, n_tensors, (double)lr, (double)weight_decay, c, st);
}

/* ---------------------------------------------------------------- gradient norm */

struct sq_batch {
    const float *g[SQ_BATCH];
    size_t n[SQ_BATCH];
};

/* part[k * SQ_BLOCKS + b] = sum of g_k[i]^2 over slice b of tensor k: the
 * elements i = b*SQ_THREADS + tid + j*SQ_BLOCKS*SQ_THREADS, then a fixed tree. */
__global__ void __launch_bounds__(SQ_THREADS) sqnorm_partial_kernel(float *part, sq_batch bt)
{
    __shared__ float red[32];
    int k = blockIdx.y;
    const float *g = bt.g[k];
    size_t n = bt.n[k];
    float s = 0.0f;
    for (size_t i = (size_t)blockIdx.x * SQ_THREADS + threadIdx.x; i < n; i += (size_t)SQ_BLOCKS * SQ_THREADS)
        s += g[i] * g[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0) part[(size_t)k * SQ_BLOCKS + blockIdx.x] = s;
}

/* *out = sum of part[0 .. count), thread t adding t, t + 1024, ... then a fixed tree. */
__global__ void __launch_bounds__(1024) sqnorm_final_kernel(float *out, const float *part, size_t count)
{
    __shared__ float red[32];
    float s = 0.0f;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) s += part[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0) *out = s;
}

extern "C" size_t mf_cu_sqnorm_scratch(int n_tensors)
{
    return n_tensors > 0 ? (size_t)n_tensors * SQ_BLOCKS : 1;
}

extern "C" cudaError_t mf_cu_grad_sqnorm(float *out, const mf_cu_tensor *host_list, int n_tensors, float *scratch,
                                         cudaStream_t st)
{
    if (!out || !scratch || n_tensors < 0 || (n_tensors > 0 && !host_list)) return cudaErrorInvalidValue;
    for (int k = 0; k < n_tensors; k++)
        if (host_list[k].n > 0 && !host_list[k].grad) return cudaErrorInvalidValue;
    for (int k0 = 0; k0 < n_tensors; k0 += SQ_BATCH) {
        sq_batch bt;
        memset(&bt, 0, sizeof(bt));
        int nb = n_tensors - k0 < SQ_BATCH ? n_tensors - k0 : SQ_BATCH;
        for (int j = 0; j < nb; j++) bt.g[j] = host_list[k0 + j].grad, bt.n[j] = host_list[k0 + j].n;
        /* an empty tensor's block writes 0 for every slice (the loop body never runs) */
        sqnorm_partial_kernel<<<dim3(SQ_BLOCKS, (unsigned)nb), SQ_THREADS, 0, st>>>(scratch + (size_t)k0 * SQ_BLOCKS,
                                                                                   bt);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
    }
    sqnorm_final_kernel<<<1, 1024, 0, st>>>(out, scratch, (size_t)n_tensors * SQ_BLOCKS);
    return launch_status();
}
