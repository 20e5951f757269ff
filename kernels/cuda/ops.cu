/*
 * kernels/cuda/ops.cu — the elementwise and gather/scatter primitives of
 * ops.cuh: dtype conversion, residual add, scaling, bias, tanh, embedding,
 * RoPE, SwiGLU, prefix key/value assembly, LoRA dropout, row gather.
 * (RMSNorm: ops_norm.cu; attention: ops_attention.cu; LM loss: ops_loss.cu;
 * AdamW and the gradient norm: ops_optim.cu.)
 *
 * Each op is a kernel templated on the activation type T plus an extern "C"
 * launcher that checks its arguments, dispatches on the dtype and returns
 * the launch status. Formulas are those of kernels/cpu/ops.c, computed in fp32.
 */
#include "kernels/cuda/ops_common.cuh"

extern "C" size_t mf_cu_dtype_size(mf_cu_dtype dt)
{
    return dt == MF_CU_BF16 ? sizeof(bf16) : sizeof(float);
}

/* ---------------------------------------------------------------- convert, add, scale */

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n)
{
    GRID_LOOP(i, n) st(dst + i, ld(src + i));
}

template <typename D, typename S> static cudaError_t convert_launch(void *dst, const void *src, size_t n, cudaStream_t st)
{
    convert_kernel<D, S><<<ew_blocks(n), EW_THREADS, 0, st>>>((D *)dst, (const S *)src, n);
    return launch_status();
}

extern "C" cudaError_t mf_cu_convert(void *dst, mf_cu_dtype ddt, const void *src, mf_cu_dtype sdt, size_t n,
                                     cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!dst || !src) return cudaErrorInvalidValue;
    if (ddt == MF_CU_F32 && sdt == MF_CU_F32) return convert_launch<float, float>(dst, src, n, st);
    if (ddt == MF_CU_F32 && sdt == MF_CU_BF16) return convert_launch<float, bf16>(dst, src, n, st);
    if (ddt == MF_CU_BF16 && sdt == MF_CU_F32) return convert_launch<bf16, float>(dst, src, n, st);
    if (ddt == MF_CU_BF16 && sdt == MF_CU_BF16) return convert_launch<bf16, bf16>(dst, src, n, st);
    return cudaErrorInvalidValue;
}

template <typename T> __global__ void add_kernel(T *y, const T *x, size_t n)
{
    GRID_LOOP(i, n) st(y + i, ld(y + i) + ld(x + i));
}

template <typename T> static cudaError_t add_launch(void *y, const void *x, size_t n, cudaStream_t st)
{
    add_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)y, (const T *)x, n);
    return launch_status();
}

extern "C" cudaError_t mf_cu_add(void *y, const void *x, size_t n, mf_cu_dtype dt, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!y || !x) return cudaErrorInvalidValue;
    return MF_CU_DISPATCH(dt, add_launch, y, x, n, st);
}

__global__ void scale_kernel(float *y, float a, size_t n)
{
    GRID_LOOP(i, n) y[i] *= a;
}

extern "C" cudaError_t mf_cu_scale_f32(float *y, float a, size_t n, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!y) return cudaErrorInvalidValue;
    scale_kernel<<<ew_blocks(n), EW_THREADS, 0, st>>>(y, a, n);
    return launch_status();
}

/* ---------------------------------------------------------------- bias */

template <typename T> __global__ void bias_add_kernel(T *y, const T *b, size_t N, int out)
{
    GRID_LOOP(i, N * (size_t)out) st(y + i, ld(y + i) + ld(b + i % (size_t)out));
}

template <typename T> static cudaError_t bias_add_launch(void *y, const void *b, int N, int out, cudaStream_t st)
{
    size_t n = (size_t)N * out;
    bias_add_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)y, (const T *)b, (size_t)N, out);
    return launch_status();
}

extern "C" cudaError_t mf_cu_bias_add(void *y, const void *b, int N, int out, mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || out < 0 || !y || !b) return cudaErrorInvalidValue;
    if (N == 0 || out == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, bias_add_launch, y, b, N, out, st);
}

/* Column sums of dy [N, out]: a block owns 32 columns (x) and BIAS_ROWS row
 * phases (y); thread (c, r) sums rows r, r + BIAS_ROWS, ... of its column,
 * then the BIAS_ROWS partials of a column are added in order r = 0, 1, ...
 * Fixed order: deterministic, no atomics. */
#define BIAS_ROWS 16
template <typename T> __global__ void bias_bwd_kernel(float *db, const T *dy, int N, int out, float alpha)
{
    __shared__ float part[BIAS_ROWS][33];
    int c = blockIdx.x * 32 + threadIdx.x, r = threadIdx.y;
    float s = 0.0f;
    if (c < out)
        for (int n = r; n < N; n += BIAS_ROWS) s += ld(dy + (size_t)n * out + c);
    part[r][threadIdx.x] = s;
    __syncthreads();
    if (r == 0 && c < out) {
        float t = 0.0f;
        for (int k = 0; k < BIAS_ROWS; k++) t += part[k][threadIdx.x];
        db[c] += alpha * t;
    }
}

template <typename T>
static cudaError_t bias_bwd_launch(float *db, const void *dy, int N, int out, float alpha, cudaStream_t st)
{
    dim3 block(32, BIAS_ROWS), grid((unsigned)((out + 31) / 32));
    bias_bwd_kernel<T><<<grid, block, 0, st>>>(db, (const T *)dy, N, out, alpha);
    return launch_status();
}

extern "C" cudaError_t mf_cu_bias_bwd(float *db, const void *dy, int N, int out, float alpha, mf_cu_dtype dt,
                                     cudaStream_t st)
{
    if (N < 0 || out < 0 || !dy) return cudaErrorInvalidValue;
    if (!db || N == 0 || out == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, bias_bwd_launch, db, dy, N, out, alpha, st);
}

/* ---------------------------------------------------------------- tanh */

template <typename T> __global__ void tanh_kernel(T *x, size_t n)
{
    GRID_LOOP(i, n) st(x + i, tanhf(ld(x + i)));
}

template <typename T> __global__ void tanh_bwd_kernel(T *dy, const T *y, size_t n)
{
    GRID_LOOP(i, n)
    {
        float v = ld(y + i);
        st(dy + i, ld(dy + i) * (1.0f - v * v));
    }
}

template <typename T> static cudaError_t tanh_launch(void *x, size_t n, cudaStream_t st)
{
    tanh_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)x, n);
    return launch_status();
}

template <typename T> static cudaError_t tanh_bwd_launch(void *dy, const void *y, size_t n, cudaStream_t st)
{
    tanh_bwd_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)dy, (const T *)y, n);
    return launch_status();
}

extern "C" cudaError_t mf_cu_tanh(void *x, size_t n, mf_cu_dtype dt, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!x) return cudaErrorInvalidValue;
    return MF_CU_DISPATCH(dt, tanh_launch, x, n, st);
}

extern "C" cudaError_t mf_cu_tanh_bwd(void *dy, const void *y, size_t n, mf_cu_dtype dt, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!dy || !y) return cudaErrorInvalidValue;
    return MF_CU_DISPATCH(dt, tanh_bwd_launch, dy, y, n, st);
}

/* ---------------------------------------------------------------- embedding */

/* Also the row gather of decoding: dst[i, :] = src[rows[i], :]. */
template <typename T> __global__ void gather_kernel(T *dst, const T *src, const int32_t *rows, size_t n, int cols)
{
    GRID_LOOP(i, n * (size_t)cols)
    {
        size_t r = i / (size_t)cols, c = i % (size_t)cols;
        dst[i] = src[(size_t)rows[r] * cols + c];
    }
}

template <typename T>
static cudaError_t gather_launch(void *dst, const void *src, const int32_t *rows, int n, int cols, cudaStream_t st)
{
    size_t total = (size_t)n * cols;
    gather_kernel<T><<<ew_blocks(total), EW_THREADS, 0, st>>>((T *)dst, (const T *)src, rows, (size_t)n, cols);
    return launch_status();
}

extern "C" cudaError_t mf_cu_embed(void *x, const void *table, const int32_t *ids, int N, int H, mf_cu_dtype dt,
                                   cudaStream_t st)
{
    if (N < 0 || H < 0 || !x || !table || !ids) return cudaErrorInvalidValue;
    if (N == 0 || H == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, gather_launch, x, table, ids, N, H, st);
}

extern "C" cudaError_t mf_cu_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int cols,
                                         mf_cu_dtype dt, cudaStream_t st)
{
    if (n < 0 || cols < 0 || !dst || !src || !rows) return cudaErrorInvalidValue;
    if (n == 0 || cols == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, gather_launch, dst, src, rows, n, cols, st);
}

/* Non-deterministic scatter-add: one fp32 atomic per element. Ids outside
 * [0, V) are skipped (the host validates token ids before they get here). */
template <typename T> __global__ void embed_bwd_atomic_kernel(float *dtable, const T *dx, const int32_t *ids, int N, int H, int V)
{
    GRID_LOOP(i, (size_t)N * H)
    {
        size_t n = i / (size_t)H, c = i % (size_t)H;
        int id = ids[n];
        if (id >= 0 && id < V) atomicAdd(dtable + (size_t)id * H + c, ld(dx + i));
    }
}

/* Deterministic scatter-add, step 1: a stable sort of the tokens by id,
 * computed as ranks: rank(n) = #{m : ids[m] < ids[n]} + #{m < n : ids[m] == ids[n]}
 * (distinct for distinct n, so order[rank(n)] = n is a permutation). O(N^2)
 * comparisons, spread over N threads, with ids staged through shared memory
 * (N = 16k tokens: 2.7e8 compares, well under a millisecond). */
#define RANK_TILE 256
__global__ void embed_rank_kernel(int32_t *order, const int32_t *ids, int N)
{
    __shared__ int32_t tile[RANK_TILE];
    int n = blockIdx.x * RANK_TILE + threadIdx.x;
    int my = n < N ? ids[n] : 0, rank = 0;
    for (int m0 = 0; m0 < N; m0 += RANK_TILE) {
        __syncthreads();
        if (m0 + (int)threadIdx.x < N) tile[threadIdx.x] = ids[m0 + threadIdx.x];
        __syncthreads();
        int cnt = N - m0 < RANK_TILE ? N - m0 : RANK_TILE;
        for (int k = 0; k < cnt; k++) {
            int o = tile[k];
            rank += o < my || (o == my && m0 + k < n);
        }
    }
    if (n < N) order[rank] = n;
}

/* Step 2: block (p, column chunk) starts at sorted position p; unless p is the
 * first token of its id's run it exits. Otherwise its threads add the run's
 * rows in token order into fp32 registers and then into the table. One
 * writer per table element, fixed order: deterministic. */
template <typename T>
__global__ void embed_bwd_sorted_kernel(float *dtable, const T *dx, const int32_t *ids, const int32_t *order, int N, int H, int V)
{
    int p = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    int id = ids[order[p]];
    if (p > 0 && ids[order[p - 1]] == id) return; /* not the start of a run */
    if (id < 0 || id >= V || c >= H) return;
    float acc = 0.0f;
    for (int q = p; q < N && ids[order[q]] == id; q++) acc += ld(dx + (size_t)order[q] * H + c);
    dtable[(size_t)id * H + c] += acc;
}

template <typename T>
static cudaError_t embed_bwd_launch(float *dtable, const void *dx, const int32_t *ids, int N, int H, int V,
                                    int deterministic, int32_t *order, cudaStream_t st)
{
    if (!deterministic) {
        size_t n = (size_t)N * H;
        embed_bwd_atomic_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>(dtable, (const T *)dx, ids, N, H, V);
        return launch_status();
    }
    embed_rank_kernel<<<(unsigned)((N + RANK_TILE - 1) / RANK_TILE), RANK_TILE, 0, st>>>(order, ids, N);
    cudaError_t e = launch_status();
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)N, (unsigned)((H + EW_THREADS - 1) / EW_THREADS));
    embed_bwd_sorted_kernel<T><<<grid, EW_THREADS, 0, st>>>(dtable, (const T *)dx, ids, order, N, H, V);
    return launch_status();
}

extern "C" cudaError_t mf_cu_embed_bwd(float *dtable, const void *dx, const int32_t *ids, int N, int H, int V,
                                       mf_cu_dtype dt, int deterministic, int32_t *order_scratch, cudaStream_t st)
{
    if (N < 0 || H < 0 || V < 0 || !dx || !ids || (deterministic && !order_scratch)) return cudaErrorInvalidValue;
    if (!dtable || N == 0 || H == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, embed_bwd_launch, dtable, dx, ids, N, H, V, deterministic, order_scratch, st);
}

/* ---------------------------------------------------------------- RoPE */

/* One thread per rotated pair (row n, head h, i < hd/2):
 * (a, b) = (x[i], x[i + hd/2]) -> (a c - b s, b c + a s), s negated for the inverse. */
template <typename T>
__global__ void rope_kernel(T *x, const int32_t *pos, int N, int nh, int hd, const float *cosv, const float *sinv, float sg)
{
    int half = hd / 2;
    GRID_LOOP(k, (size_t)N * nh * half)
    {
        size_t n = k / ((size_t)nh * half);
        int rem = (int)(k % ((size_t)nh * half)), h = rem / half, i = rem % half;
        size_t tab = (size_t)pos[n] * half + i;
        float c = cosv[tab], s = sg * sinv[tab];
        T *v = x + n * (size_t)nh * hd + (size_t)h * hd;
        float a = ld(v + i), b = ld(v + i + half);
        st(v + i, a * c - b * s);
        st(v + i + half, b * c + a * s);
    }
}

template <typename T>
static cudaError_t rope_launch(void *x, const int32_t *pos, int N, int nh, int hd, const float *cosv,
                               const float *sinv, int inverse, cudaStream_t st)
{
    size_t n = (size_t)N * nh * (hd / 2);
    rope_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)x, pos, N, nh, hd, cosv, sinv, inverse ? -1.0f : 1.0f);
    return launch_status();
}

extern "C" cudaError_t mf_cu_rope(void *x, const int32_t *pos, int N, int nh, int hd, const float *cosv,
                                  const float *sinv, int inverse, mf_cu_dtype dt, cudaStream_t st)
{
    if (N < 0 || nh < 0 || hd < 0 || hd % 2 || !x || !pos || !cosv || !sinv) return cudaErrorInvalidValue;
    if (N == 0 || nh == 0 || hd == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, rope_launch, x, pos, N, nh, hd, cosv, sinv, inverse, st);
}

/* ---------------------------------------------------------------- SwiGLU */

template <typename T> __global__ void swiglu_kernel(T *act, const T *g, const T *u, size_t n)
{
    GRID_LOOP(i, n)
    {
        float gi = ld(g + i);
        st(act + i, gi / (1.0f + expf(-gi)) * ld(u + i)); /* silu(g) * u */
    }
}

/* sig = sigmoid(g): du = d * g * sig ; dg = d * u * sig * (1 + g (1 - sig)).
 * Each element is read before it is written by the same thread, so dg/du
 * may alias g/u. */
template <typename T> __global__ void swiglu_bwd_kernel(T *dg, T *du, const T *dact, const T *g, const T *u, size_t n)
{
    GRID_LOOP(i, n)
    {
        float gi = ld(g + i), ui = ld(u + i), d = ld(dact + i);
        float sig = 1.0f / (1.0f + expf(-gi));
        st(du + i, d * gi * sig);
        st(dg + i, d * ui * sig * (1.0f + gi * (1.0f - sig)));
    }
}

template <typename T>
static cudaError_t swiglu_launch(void *act, const void *g, const void *u, size_t n, cudaStream_t st)
{
    swiglu_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)act, (const T *)g, (const T *)u, n);
    return launch_status();
}

template <typename T>
static cudaError_t swiglu_bwd_launch(void *dg, void *du, const void *dact, const void *g, const void *u, size_t n,
                                     cudaStream_t st)
{
    swiglu_bwd_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)dg, (T *)du, (const T *)dact, (const T *)g,
                                                             (const T *)u, n);
    return launch_status();
}

extern "C" cudaError_t mf_cu_swiglu(void *act, const void *g, const void *u, size_t n, mf_cu_dtype dt, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!act || !g || !u) return cudaErrorInvalidValue;
    return MF_CU_DISPATCH(dt, swiglu_launch, act, g, u, n, st);
}

extern "C" cudaError_t mf_cu_swiglu_bwd(void *dg, void *du, const void *dact, const void *g, const void *u, size_t n,
                                        mf_cu_dtype dt, cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    if (!dg || !du || !dact || !g || !u) return cudaErrorInvalidValue;
    return MF_CU_DISPATCH(dt, swiglu_bwd_launch, dg, du, dact, g, u, n, st);
}

/* ---------------------------------------------------------------- prefix keys/values */

/* kf[b, s, c] = s < P ? pk[s, c] : k[b*T + s - P, c]  (and v). */
template <typename T>
__global__ void kv_assemble_kernel(T *kf, T *vf, const T *k, const T *v, const T *pk, const T *pv, int B, int Tn, int P,
                                   int Dkv)
{
    size_t S = (size_t)P + Tn;
    GRID_LOOP(i, (size_t)B * S * Dkv)
    {
        size_t b = i / (S * Dkv), s = (i / Dkv) % S, c = i % Dkv;
        if (s < (size_t)P) {
            kf[i] = pk[s * Dkv + c];
            vf[i] = pv[s * Dkv + c];
        } else {
            size_t src = (b * Tn + (s - P)) * Dkv + c;
            kf[i] = k[src];
            vf[i] = v[src];
        }
    }
}

/* dk[b*T + t, c] = dkf[b, P + t, c]  (and v). */
template <typename T>
__global__ void kv_split_tokens_kernel(T *dk, T *dv, const T *dkf, const T *dvf, int B, int Tn, int P, int Dkv)
{
    size_t S = (size_t)P + Tn;
    GRID_LOOP(i, (size_t)B * Tn * Dkv)
    {
        size_t b = i / ((size_t)Tn * Dkv), t = (i / Dkv) % Tn, c = i % Dkv;
        size_t src = (b * S + P + t) * Dkv + c;
        if (dk) dk[i] = dkf[src];
        if (dv) dv[i] = dvf[src];
    }
}

/* dpk[s, c] += sum_b dkf[b, s, c] for s < P, summed in batch order (deterministic). */
template <typename T>
__global__ void kv_split_prefix_kernel(float *dpk, float *dpv, const T *dkf, const T *dvf, int B, int Tn, int P, int Dkv)
{
    size_t S = (size_t)P + Tn;
    GRID_LOOP(i, (size_t)P * Dkv)
    {
        float sk = 0.0f, sv = 0.0f;
        for (int b = 0; b < B; b++) {
            sk += ld(dkf + (size_t)b * S * Dkv + i);
            sv += ld(dvf + (size_t)b * S * Dkv + i);
        }
        if (dpk) dpk[i] += sk;
        if (dpv) dpv[i] += sv;
    }
}

template <typename T>
static cudaError_t kv_assemble_launch(void *kf, void *vf, const void *k, const void *v, const void *pk, const void *pv,
                                      int B, int Tn, int P, int Dkv, cudaStream_t st)
{
    size_t n = (size_t)B * (P + Tn) * Dkv;
    kv_assemble_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)kf, (T *)vf, (const T *)k, (const T *)v,
                                                              (const T *)pk, (const T *)pv, B, Tn, P, Dkv);
    return launch_status();
}

template <typename T>
static cudaError_t kv_split_launch(void *dk, void *dv, float *dpk, float *dpv, const void *dkf, const void *dvf, int B,
                                   int Tn, int P, int Dkv, cudaStream_t st)
{
    if (dk || dv) {
        size_t n = (size_t)B * Tn * Dkv;
        kv_split_tokens_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)dk, (T *)dv, (const T *)dkf,
                                                                      (const T *)dvf, B, Tn, P, Dkv);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
    }
    if (P > 0 && (dpk || dpv)) {
        size_t n = (size_t)P * Dkv;
        kv_split_prefix_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>(dpk, dpv, (const T *)dkf, (const T *)dvf, B,
                                                                      Tn, P, Dkv);
        return launch_status();
    }
    return cudaSuccess;
}

extern "C" cudaError_t mf_cu_kv_assemble(void *kf, void *vf, const void *k, const void *v, const void *pk,
                                         const void *pv, int B, int T, int P, int Dkv, mf_cu_dtype dt, cudaStream_t st)
{
    if (B < 0 || T < 0 || P < 0 || Dkv < 0 || !kf || !vf || (T > 0 && (!k || !v)) || (P > 0 && (!pk || !pv)))
        return cudaErrorInvalidValue;
    if (B == 0 || P + T == 0 || Dkv == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, kv_assemble_launch, kf, vf, k, v, pk, pv, B, T, P, Dkv, st);
}

extern "C" cudaError_t mf_cu_kv_split(void *dk, void *dv, float *dpk, float *dpv, const void *dkf, const void *dvf,
                                      int B, int T, int P, int Dkv, mf_cu_dtype dt, cudaStream_t st)
{
    if (B < 0 || T < 0 || P < 0 || Dkv < 0 || !dkf || !dvf) return cudaErrorInvalidValue;
    if (B == 0 || P + T == 0 || Dkv == 0) return cudaSuccess;
    return MF_CU_DISPATCH(dt, kv_split_launch, dk, dv, dpk, dpv, dkf, dvf, B, T, P, Dkv, st);
}

/* ---------------------------------------------------------------- LoRA dropout */

/* mf_k_hash64 (kernels/rng.c): the splitmix64 finaliser of x + golden gamma. */
__device__ __forceinline__ uint64_t hash64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* cpu_model.c dropout_apply: keep element i when (hash64(key + i) >> 40) >= thr,
 * thr = (uint32_t)(p * 2^24), and scale kept values by sc = 1 / (1 - p). */
template <typename T> __global__ void dropout_kernel(T *y, const T *x, size_t n, uint64_t key, uint32_t thr, float sc)
{
    GRID_LOOP(i, n)
    {
        float xi = ld(x + i);
        st(y + i, (uint32_t)(hash64(key + i) >> 40) >= thr ? xi * sc : 0.0f);
    }
}

template <typename T>
static cudaError_t dropout_launch(void *y, const void *x, size_t n, uint64_t key, uint32_t thr, float sc, cudaStream_t st)
{
    dropout_kernel<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)y, (const T *)x, n, key, thr, sc);
    return launch_status();
}

extern "C" cudaError_t mf_cu_dropout(void *y, const void *x, size_t n, uint64_t key, float p, mf_cu_dtype dt,
                                     cudaStream_t st)
{
    if (!(p >= 0.0f && p < 1.0f)) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    if (!y || !x) return cudaErrorInvalidValue;
    /* the same float expressions as the CPU, evaluated on the host */
    uint32_t thr = (uint32_t)(p * 16777216.0f);
    float sc = 1.0f / (1.0f - p);
    return MF_CU_DISPATCH(dt, dropout_launch, y, x, n, key, thr, sc, st);
}
