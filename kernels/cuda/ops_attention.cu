/*
 * kernels/cuda/ops_attention.cu — fused causal attention with a key/value
 * prefix, grouped-query heads and key padding, forward and backward
 * (flash-attention style: no [T, S] matrix ever reaches global memory).
 * Reference: mf_k_cpu_attention[_bwd] in kernels/cpu/ops.c.
 *
 * Visibility: query t of row b sees key s when s < P (a prefix row) or
 * s - P <= t with mask[b, s - P] = 1. A query that sees nothing outputs 0,
 * has lse = -inf and passes no gradient.
 *
 * Forward (attn_fwd_kernel): one block per (64 queries, head, batch row).
 *   The Q tile stays in shared memory; K/V tiles of 64 keys stream through.
 *   Scores, an online softmax (running max m and sum l per query row) and the
 *   output accumulate in registers; out = acc / l, lse = m + log l (fp32).
 *
 * Backward, in three kernels, none with atomics (so always deterministic):
 *   1. attn_bwd_rowdot_kernel: D[b,h,t] = sum_d dO * O (the rowsum(P * dP)
 *      of the softmax backward).
 *   2. attn_bwd_dkv_kernel: one block per (64 keys, kv head, batch row) owns
 *      dK/dV of its keys (one writer), loops over the grouped query heads and
 *      the query tiles that can see its keys, recomputes
 *         P = exp(scale QK^T - lse), dP = dO V^T, dS = P (dP - D) scale,
 *      and accumulates dV += P^T dO, dK += dS^T Q in registers.
 *   3. attn_bwd_dq_kernel: one block per (64 queries, head, batch row) owns
 *      dQ of its queries, recomputes P and dS over the visible key tiles and
 *      accumulates dQ += dS K.
 *   Recomputing P/dP in kernel 3 costs two extra tile products against an
 *   atomic dQ, and buys a single writer for every gradient element.
 *
 * Work split inside a block (8 warps of 32 lanes; every product in fp32 on
 * CUDA cores, from fp32 copies of the tiles in shared memory):
 *   - a warp owns 8 "row" vectors (queries in 1 and 3, keys in 2), read by
 *     all its lanes (broadcast);
 *   - in a score product each lane owns columns lane and lane + 32 of the
 *     other operand (keys in 1 and 3, queries in 2);
 *   - in an accumulation each lane owns head dims lane, lane + 32, ...
 *     The warp's probability rows go through a per-warp shared buffer.
 * Rows of shared tiles are padded to HD + 4 floats so the 16-byte loads of a
 * lane-indexed operand hit distinct banks. hd in {8, 16, 32, 64, 80, 96, 128}
 * (8 and 16: the tiny conformance models; lanes >= hd idle in accumulations).
 */
#include "kernels/cuda/ops_common.cuh"

#define ATT_WARPS 8
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_ROWS 8                        /* row vectors per warp */
#define ATT_BQ (ATT_WARPS * ATT_ROWS)     /* queries per block, forward and dQ */
#define ATT_BK 64                         /* keys per streamed tile, forward and dQ (2 per lane) */
#define DKV_BK (ATT_WARPS * ATT_ROWS)     /* keys per block, dK/dV */
#define DKV_BQ 32                         /* queries per streamed tile, dK/dV (1 per lane) */

/* ---------------------------------------------------------------- building blocks */

/* acc[r][c] = sum_d A[r, d] * B[lane + 32 c, d]   (r < R, c < C, d < HD)
 * A: R rows of the warp (stride lda), B: lane-indexed rows (stride ldb);
 * both 16-byte aligned with strides a multiple of 4. */
template <int HD, int R, int C>
__device__ __forceinline__ void warp_dot_rows(float (&acc)[R][C], const float *A, int lda, const float *B, int ldb,
                                              int lane)
{
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < C; c++) acc[r][c] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < HD; d += 4) {
        float4 bv[C];
#pragma unroll
        for (int c = 0; c < C; c++) bv[c] = *(const float4 *)(B + (lane + 32 * c) * ldb + d);
#pragma unroll
        for (int r = 0; r < R; r++) {
            float4 av = *(const float4 *)(A + r * lda + d);
#pragma unroll
            for (int c = 0; c < C; c++)
                acc[r][c] += av.x * bv[c].x + av.y * bv[c].y + av.z * bv[c].z + av.w * bv[c].w;
        }
    }
}

/* acc[r][i] += sum_j W[r, j] * M[j, lane + 32 i]   (r < R, j < NJ, lane + 32 i < HD)
 * W: the warp's R x NJ weights (stride ldw, 16-byte aligned), M: NJ rows of HD (stride ldm). */
template <int HD, int R, int NJ>
__device__ __forceinline__ void warp_acc_rows(float (&acc)[R][(HD + 31) / 32], const float *W, int ldw, const float *M,
                                              int ldm, int lane)
{
    constexpr int DPL = (HD + 31) / 32;
#pragma unroll 2
    for (int j = 0; j < NJ; j += 4) {
        float mv[4][DPL];
#pragma unroll
        for (int jj = 0; jj < 4; jj++)
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int col = lane + 32 * i;
                mv[jj][i] = col < HD ? M[(j + jj) * ldm + col] : 0.0f;
            }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float4 w = *(const float4 *)(W + r * ldw + j);
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[r][i] += w.x * mv[0][i] + w.y * mv[1][i] + w.z * mv[2][i] + w.w * mv[3][i];
        }
    }
}

/* dst[r, c] = src[(row0 + r) * stride + c] as fp32 for r < nrows, c < HD;
 * rows at or past `valid` are zero. The whole block takes part. */
template <typename T, int HD>
__device__ __forceinline__ void load_tile(float *dst, int ldd, const T *src, size_t stride, int row0, int nrows,
                                          int valid)
{
    for (int idx = threadIdx.x; idx < nrows * HD; idx += blockDim.x) {
        int r = idx / HD, c = idx % HD;
        dst[r * ldd + c] = row0 + r < valid ? ld(src + (size_t)(row0 + r) * stride + c) : 0.0f;
    }
}

/* ok[j] = key k0 + j exists and is not padding (causality is checked per query). */
__device__ __forceinline__ void load_key_flags(int *ok, const int32_t *mrow, int k0, int nkeys, int P, int S)
{
    for (int j = threadIdx.x; j < nkeys; j += blockDim.x) {
        int s = k0 + j;
        ok[j] = s < S && (s < P || !mrow || mrow[s - P] != 0);
    }
}

/* Causal part of the visibility rule (padding is in the key flags). */
__device__ __forceinline__ bool causal_ok(int P, int t, int s)
{
    return s < P || s - P <= t;
}

/* Shared memory of each kernel, in floats (the int flags count as floats). */
template <int HD> static size_t fwd_smem_floats(void)
{
    return (size_t)(ATT_BQ + 2 * ATT_BK) * (HD + 4) + ATT_WARPS * ATT_ROWS * ATT_BK + ATT_BK;
}
template <int HD> static size_t dq_smem_floats(void)
{
    return (size_t)(2 * ATT_BQ + 2 * ATT_BK) * (HD + 4) + ATT_WARPS * ATT_ROWS * ATT_BK + ATT_BK;
}
template <int HD> static size_t dkv_smem_floats(void)
{
    return (size_t)(2 * DKV_BK + 2 * DKV_BQ) * (HD + 4) + 2 * ATT_WARPS * ATT_ROWS * DKV_BQ + 2 * DKV_BQ + DKV_BK;
}

/* ---------------------------------------------------------------- forward */

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_fwd_kernel(T *out, float *lse, const T *q, const T *kf, const T *vf, const int32_t *mask, int Tn, int P,
                    int nh, int nkv, float scale)
{
    constexpr int LD = HD + 4, DPL = (HD + 31) / 32;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;                         /* [ATT_BQ][LD] */
    float *Ks = Qs + ATT_BQ * LD;                       /* [ATT_BK][LD] */
    float *Vs = Ks + ATT_BK * LD;                       /* [ATT_BK][LD] */
    float *Ps = Vs + ATT_BK * LD;                       /* [ATT_WARPS][ATT_ROWS][ATT_BK] */
    int *kok = (int *)(Ps + ATT_WARPS * ATT_ROWS * ATT_BK); /* [ATT_BK] */

    const int b = blockIdx.z, h = blockIdx.y, g = h / (nh / nkv);
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ATT_BQ; /* longest causal rows first */
    const int S = P + Tn, qd = nh * HD, kd = nkv * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t *mrow = mask ? mask + (size_t)b * Tn : NULL;
    const T *qb = q + (size_t)b * Tn * qd + (size_t)h * HD;
    const T *kb = kf + (size_t)b * S * kd + (size_t)g * HD;
    const T *vb = vf + (size_t)b * S * kd + (size_t)g * HD;
    float *Pw = Ps + warp * ATT_ROWS * ATT_BK;

    load_tile<T, HD>(Qs, LD, qb, qd, q0, ATT_BQ, Tn);

    float m[ATT_ROWS], l[ATT_ROWS], o[ATT_ROWS][DPL]; /* l: this lane's share of the row sum */
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[r][i] = 0.0f;
    }

    /* the block's last query sees keys [0, P + min(q0 + ATT_BQ, T)) at most */
    const int kend = P + min(q0 + ATT_BQ, Tn);
    for (int k0 = 0; k0 < kend; k0 += ATT_BK) {
        __syncthreads(); /* the previous tile is consumed (first time: Qs is written) */
        load_tile<T, HD>(Ks, LD, kb, kd, k0, ATT_BK, S);
        load_tile<T, HD>(Vs, LD, vb, kd, k0, ATT_BK, S);
        load_key_flags(kok, mrow, k0, ATT_BK, P, S);
        __syncthreads();

        float sc[ATT_ROWS][2];
        warp_dot_rows<HD, ATT_ROWS, 2>(sc, Qs + warp * ATT_ROWS * LD, LD, Ks, LD, lane);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int t = q0 + warp * ATT_ROWS + r;
            float x[2];
#pragma unroll
            for (int c = 0; c < 2; c++) {
                int j = lane + 32 * c, s = k0 + j;
                x[c] = t < Tn && kok[j] && causal_ok(P, t, s) ? sc[r][c] * scale : -INFINITY;
            }
            float mnew = fmaxf(m[r], warp_max(fmaxf(x[0], x[1])));
            float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f;
            if (mnew != -INFINITY) { /* else nothing visible yet: o and l stay 0 */
                p0 = expf(x[0] - mnew);
                p1 = expf(x[1] - mnew);
                alpha = expf(m[r] - mnew); /* 0 when m was -inf */
            }
            l[r] = l[r] * alpha + p0 + p1;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[r][i] *= alpha;
            m[r] = mnew;
            Pw[r * ATT_BK + lane] = p0;
            Pw[r * ATT_BK + lane + 32] = p1;
        }
        __syncwarp();
        warp_acc_rows<HD, ATT_ROWS, ATT_BK>(o, Pw, ATT_BK, Vs, LD, lane);
    }

#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int t = q0 + warp * ATT_ROWS + r;
        if (t >= Tn) continue; /* warp-uniform */
        float sum = warp_sum(l[r]);
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f; /* sum = 0: sees no key, output 0 */
        T *orow = out + ((size_t)b * Tn + t) * qd + (size_t)h * HD;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int col = lane + 32 * i;
            if (col < HD) st(orow + col, o[r][i] * inv);
        }
        if (lane == 0) lse[((size_t)b * nh + h) * Tn + t] = sum > 0.0f ? m[r] + logf(sum) : -INFINITY;
    }
}

/* ---------------------------------------------------------------- backward */

/* D[b, h, t] = sum_d dout * out, one warp per (b, t, h). */
template <typename T>
__global__ void attn_bwd_rowdot_kernel(float *Dsum, const T *dout, const T *out, int B, int Tn, int nh, int hd)
{
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (size_t)B * Tn * nh) return; /* warp-uniform */
    size_t bt = w / nh;
    int h = (int)(w % nh);
    const T *dr = dout + bt * nh * hd + (size_t)h * hd, *orow = out + bt * nh * hd + (size_t)h * hd;
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += ld(dr + d) * ld(orow + d);
    s = warp_sum(s);
    size_t b = bt / Tn, t = bt % Tn;
    if (lane == 0) Dsum[(b * nh + h) * Tn + t] = s;
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_bwd_dkv_kernel(T *dkf, T *dvf, const T *dout, const float *lse, const float *Dsum, const T *q, const T *kf,
                        const T *vf, const int32_t *mask, int Tn, int P, int nh, int nkv, float scale)
{
    constexpr int LD = HD + 4, DPL = (HD + 31) / 32;
    extern __shared__ float4 smem4[];
    float *Ks = (float *)smem4;                              /* [DKV_BK][LD] */
    float *Vs = Ks + DKV_BK * LD;                            /* [DKV_BK][LD] */
    float *Qs = Vs + DKV_BK * LD;                            /* [DKV_BQ][LD] */
    float *dOs = Qs + DKV_BQ * LD;                           /* [DKV_BQ][LD] */
    float *Ps = dOs + DKV_BQ * LD;                           /* [ATT_WARPS][ATT_ROWS][DKV_BQ] */
    float *dSs = Ps + ATT_WARPS * ATT_ROWS * DKV_BQ;         /* [ATT_WARPS][ATT_ROWS][DKV_BQ] */
    float *lse_s = dSs + ATT_WARPS * ATT_ROWS * DKV_BQ;      /* [DKV_BQ] */
    float *D_s = lse_s + DKV_BQ;                             /* [DKV_BQ] */
    int *kok = (int *)(D_s + DKV_BQ);                        /* [DKV_BK] */

    const int b = blockIdx.z, g = blockIdx.y, grp = nh / nkv, k0 = blockIdx.x * DKV_BK;
    const int S = P + Tn, qd = nh * HD, kd = nkv * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t *mrow = mask ? mask + (size_t)b * Tn : NULL;
    float *Pw = Ps + warp * ATT_ROWS * DKV_BQ, *dSw = dSs + warp * ATT_ROWS * DKV_BQ;

    load_tile<T, HD>(Ks, LD, kf + (size_t)b * S * kd + (size_t)g * HD, kd, k0, DKV_BK, S);
    load_tile<T, HD>(Vs, LD, vf + (size_t)b * S * kd + (size_t)g * HD, kd, k0, DKV_BK, S);
    load_key_flags(kok, mrow, k0, DKV_BK, P, S);

    float dk[ATT_ROWS][DPL], dv[ATT_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++)
#pragma unroll
        for (int i = 0; i < DPL; i++) dk[r][i] = dv[r][i] = 0.0f;

    /* queries before t_first see none of these keys (a prefix key is seen by all) */
    const int t_first = k0 < P ? 0 : k0 - P;
    for (int hh = 0; hh < grp; hh++) {
        const int h = g * grp + hh;
        const T *qb = q + (size_t)b * Tn * qd + (size_t)h * HD;
        const T *dob = dout + (size_t)b * Tn * qd + (size_t)h * HD;
        const float *lrow = lse + ((size_t)b * nh + h) * Tn, *drow = Dsum + ((size_t)b * nh + h) * Tn;
        for (int t0 = t_first / DKV_BQ * DKV_BQ; t0 < Tn; t0 += DKV_BQ) {
            __syncthreads(); /* the previous query tile is consumed (first time: K/V are written) */
            load_tile<T, HD>(Qs, LD, qb, qd, t0, DKV_BQ, Tn);
            load_tile<T, HD>(dOs, LD, dob, qd, t0, DKV_BQ, Tn);
            if (threadIdx.x < DKV_BQ) {
                int t = t0 + threadIdx.x;
                lse_s[threadIdx.x] = t < Tn ? lrow[t] : -INFINITY;
                D_s[threadIdx.x] = t < Tn ? drow[t] : 0.0f;
            }
            __syncthreads();

            float sT[ATT_ROWS][1], dpT[ATT_ROWS][1]; /* S^T and dP^T: this warp's keys x query `lane` */
            warp_dot_rows<HD, ATT_ROWS, 1>(sT, Ks + warp * ATT_ROWS * LD, LD, Qs, LD, lane);
            warp_dot_rows<HD, ATT_ROWS, 1>(dpT, Vs + warp * ATT_ROWS * LD, LD, dOs, LD, lane);
            const int t = t0 + lane;
            const float L = lse_s[lane], Dt = D_s[lane];
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int j = warp * ATT_ROWS + r, s = k0 + j;
                bool vis = t < Tn && L != -INFINITY && kok[j] && causal_ok(P, t, s);
                float p = vis ? expf(sT[r][0] * scale - L) : 0.0f;
                Pw[r * DKV_BQ + lane] = p;
                dSw[r * DKV_BQ + lane] = p * (dpT[r][0] - Dt) * scale;
            }
            __syncwarp();
            warp_acc_rows<HD, ATT_ROWS, DKV_BQ>(dv, Pw, DKV_BQ, dOs, LD, lane);  /* dV += P^T dO */
            warp_acc_rows<HD, ATT_ROWS, DKV_BQ>(dk, dSw, DKV_BQ, Qs, LD, lane);  /* dK += dS^T Q */
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int s = k0 + warp * ATT_ROWS + r;
        if (s >= S) continue;
        size_t row = ((size_t)b * S + s) * kd + (size_t)g * HD;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int col = lane + 32 * i;
            if (col < HD) {
                st(dkf + row + col, dk[r][i]);
                st(dvf + row + col, dv[r][i]);
            }
        }
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_bwd_dq_kernel(T *dq, const T *dout, const float *lse, const float *Dsum, const T *q, const T *kf, const T *vf,
                       const int32_t *mask, int Tn, int P, int nh, int nkv, float scale)
{
    constexpr int LD = HD + 4, DPL = (HD + 31) / 32;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;                              /* [ATT_BQ][LD] */
    float *dOs = Qs + ATT_BQ * LD;                           /* [ATT_BQ][LD] */
    float *Ks = dOs + ATT_BQ * LD;                           /* [ATT_BK][LD] */
    float *Vs = Ks + ATT_BK * LD;                            /* [ATT_BK][LD] */
    float *dSs = Vs + ATT_BK * LD;                           /* [ATT_WARPS][ATT_ROWS][ATT_BK] */
    int *kok = (int *)(dSs + ATT_WARPS * ATT_ROWS * ATT_BK); /* [ATT_BK] */

    const int b = blockIdx.z, h = blockIdx.y, g = h / (nh / nkv);
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ATT_BQ;
    const int S = P + Tn, qd = nh * HD, kd = nkv * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t *mrow = mask ? mask + (size_t)b * Tn : NULL;
    const T *kb = kf + (size_t)b * S * kd + (size_t)g * HD;
    const T *vb = vf + (size_t)b * S * kd + (size_t)g * HD;
    float *dSw = dSs + warp * ATT_ROWS * ATT_BK;

    load_tile<T, HD>(Qs, LD, q + (size_t)b * Tn * qd + (size_t)h * HD, qd, q0, ATT_BQ, Tn);
    load_tile<T, HD>(dOs, LD, dout + (size_t)b * Tn * qd + (size_t)h * HD, qd, q0, ATT_BQ, Tn);

    float L[ATT_ROWS], Dt[ATT_ROWS], acc[ATT_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int t = q0 + warp * ATT_ROWS + r;
        size_t at = ((size_t)b * nh + h) * Tn + t;
        L[r] = t < Tn ? lse[at] : -INFINITY;
        Dt[r] = t < Tn ? Dsum[at] : 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[r][i] = 0.0f;
    }

    const int kend = P + min(q0 + ATT_BQ, Tn);
    for (int k0 = 0; k0 < kend; k0 += ATT_BK) {
        __syncthreads();
        load_tile<T, HD>(Ks, LD, kb, kd, k0, ATT_BK, S);
        load_tile<T, HD>(Vs, LD, vb, kd, k0, ATT_BK, S);
        load_key_flags(kok, mrow, k0, ATT_BK, P, S);
        __syncthreads();

        float sc[ATT_ROWS][2], dp[ATT_ROWS][2];
        warp_dot_rows<HD, ATT_ROWS, 2>(sc, Qs + warp * ATT_ROWS * LD, LD, Ks, LD, lane);
        warp_dot_rows<HD, ATT_ROWS, 2>(dp, dOs + warp * ATT_ROWS * LD, LD, Vs, LD, lane);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int t = q0 + warp * ATT_ROWS + r;
#pragma unroll
            for (int c = 0; c < 2; c++) {
                int j = lane + 32 * c, s = k0 + j;
                bool vis = t < Tn && L[r] != -INFINITY && kok[j] && causal_ok(P, t, s);
                float p = vis ? expf(sc[r][c] * scale - L[r]) : 0.0f;
                dSw[r * ATT_BK + j] = p * (dp[r][c] - Dt[r]) * scale;
            }
        }
        __syncwarp();
        warp_acc_rows<HD, ATT_ROWS, ATT_BK>(acc, dSw, ATT_BK, Ks, LD, lane); /* dQ += dS K */
    }

#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int t = q0 + warp * ATT_ROWS + r;
        if (t >= Tn) continue;
        T *row = dq + ((size_t)b * Tn + t) * qd + (size_t)h * HD;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int col = lane + 32 * i;
            if (col < HD) st(row + col, acc[r][i]);
        }
    }
}

/* ---------------------------------------------------------------- launchers */

/* Opt in to more than 48 KiB of dynamic shared memory (up to 227 KiB on
 * sm_90, 163 KiB on sm_80; the largest kernel, dQ at hd 128, needs 148 KiB). */
template <typename K> static cudaError_t set_smem(K kernel, size_t bytes)
{
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

template <typename T, int HD>
static cudaError_t attn_fwd_launch(void *out, float *lse, const void *q, const void *kf, const void *vf,
                                   const int32_t *mask, int B, int Tn, int P, int nh, int nkv, cudaStream_t st)
{
    size_t smem = fwd_smem_floats<HD>() * sizeof(float);
    cudaError_t e = set_smem(attn_fwd_kernel<T, HD>, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((Tn + ATT_BQ - 1) / ATT_BQ), (unsigned)nh, (unsigned)B);
    attn_fwd_kernel<T, HD><<<grid, ATT_THREADS, smem, st>>>((T *)out, lse, (const T *)q, (const T *)kf,
                                                            (const T *)vf, mask, Tn, P, nh, nkv,
                                                            1.0f / sqrtf((float)HD));
    return launch_status();
}

template <typename T, int HD>
static cudaError_t attn_bwd_launch(void *dq, void *dkf, void *dvf, const void *dout, const void *out,
                                   const float *lse, const void *q, const void *kf, const void *vf,
                                   const int32_t *mask, int B, int Tn, int P, int nh, int nkv, float *Dsum,
                                   cudaStream_t st)
{
    const float scale = 1.0f / sqrtf((float)HD);
    size_t rows = (size_t)B * Tn * nh, threads = rows * 32;
    attn_bwd_rowdot_kernel<T><<<(unsigned)((threads + 255) / 256), 256, 0, st>>>(Dsum, (const T *)dout,
                                                                                 (const T *)out, B, Tn, nh, HD);
    cudaError_t e = launch_status();
    if (e != cudaSuccess) return e;

    size_t smem = dkv_smem_floats<HD>() * sizeof(float);
    if ((e = set_smem(attn_bwd_dkv_kernel<T, HD>, smem)) != cudaSuccess) return e;
    dim3 gkv((unsigned)((P + Tn + DKV_BK - 1) / DKV_BK), (unsigned)nkv, (unsigned)B);
    attn_bwd_dkv_kernel<T, HD><<<gkv, ATT_THREADS, smem, st>>>((T *)dkf, (T *)dvf, (const T *)dout, lse, Dsum,
                                                               (const T *)q, (const T *)kf, (const T *)vf, mask, Tn,
                                                               P, nh, nkv, scale);
    if ((e = launch_status()) != cudaSuccess) return e;

    smem = dq_smem_floats<HD>() * sizeof(float);
    if ((e = set_smem(attn_bwd_dq_kernel<T, HD>, smem)) != cudaSuccess) return e;
    dim3 gq((unsigned)((Tn + ATT_BQ - 1) / ATT_BQ), (unsigned)nh, (unsigned)B);
    attn_bwd_dq_kernel<T, HD><<<gq, ATT_THREADS, smem, st>>>((T *)dq, (const T *)dout, lse, Dsum, (const T *)q,
                                                             (const T *)kf, (const T *)vf, mask, Tn, P, nh, nkv,
                                                             scale);
    return launch_status();
}

/* hd -> the kernel instantiated for it. */
template <typename T>
static cudaError_t attn_fwd_dispatch(void *out, float *lse, const void *q, const void *kf, const void *vf,
                                     const int32_t *mask, int B, int Tn, int P, int nh, int nkv, int hd,
                                     cudaStream_t st)
{
    switch (hd) {
    case 8: return attn_fwd_launch<T, 8>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 16: return attn_fwd_launch<T, 16>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 32: return attn_fwd_launch<T, 32>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 64: return attn_fwd_launch<T, 64>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 80: return attn_fwd_launch<T, 80>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 96: return attn_fwd_launch<T, 96>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    case 128: return attn_fwd_launch<T, 128>(out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, st);
    default: return cudaErrorInvalidValue;
    }
}

template <typename T>
static cudaError_t attn_bwd_dispatch(void *dq, void *dkf, void *dvf, const void *dout, const void *out,
                                     const float *lse, const void *q, const void *kf, const void *vf,
                                     const int32_t *mask, int B, int Tn, int P, int nh, int nkv, int hd, float *Dsum,
                                     cudaStream_t st)
{
#define BWD_CASE(HD)                                                                                        \
    case HD:                                                                                                \
        return attn_bwd_launch<T, HD>(dq, dkf, dvf, dout, out, lse, q, kf, vf, mask, B, Tn, P, nh, nkv, Dsum, st)
    switch (hd) {
        BWD_CASE(8);
        BWD_CASE(16);
        BWD_CASE(32);
        BWD_CASE(64);
        BWD_CASE(80);
        BWD_CASE(96);
        BWD_CASE(128);
    default: return cudaErrorInvalidValue;
    }
#undef BWD_CASE
}

static int attn_shape_ok(int B, int T, int P, int nh, int nkv)
{
    return B > 0 && T > 0 && P >= 0 && nh > 0 && nkv > 0 && nh % nkv == 0 && B <= 65535 && nh <= 65535 &&
           (long long)P + T <= 0x7fffffff / 2;
}

extern "C" cudaError_t mf_cu_attention(void *out, float *lse, const void *q, const void *kf, const void *vf,
                                       const int32_t *mask, int B, int T, int P, int nh, int nkv, int hd,
                                       mf_cu_dtype dt, cudaStream_t st)
{
    if (!attn_shape_ok(B, T, P, nh, nkv) || !out || !lse || !q || !kf || !vf) return cudaErrorInvalidValue;
    if (dt == MF_CU_F32) return attn_fwd_dispatch<float>(out, lse, q, kf, vf, mask, B, T, P, nh, nkv, hd, st);
    if (dt == MF_CU_BF16) return attn_fwd_dispatch<bf16>(out, lse, q, kf, vf, mask, B, T, P, nh, nkv, hd, st);
    return cudaErrorInvalidValue;
}

/* Scratch: D = rowsum(dout * out), [B, nh, T] floats. Both modes need only
 * that: the backward has no atomics, so it is deterministic either way. */
extern "C" size_t mf_cu_attention_bwd_scratch(int B, int T, int P, int nh, int nkv, int hd, int deterministic)
{
    (void)P, (void)nkv, (void)hd, (void)deterministic;
    if (B <= 0 || T <= 0 || nh <= 0) return 0;
    return (size_t)B * nh * T * sizeof(float);
}

extern "C" cudaError_t mf_cu_attention_bwd(void *dq, void *dkf, void *dvf, const void *dout, const void *out,
                                           const float *lse, const void *q, const void *kf, const void *vf,
                                           const int32_t *mask, int B, int T, int P, int nh, int nkv, int hd,
                                           mf_cu_dtype dt, int deterministic, void *scratch, cudaStream_t st)
{
    (void)deterministic; /* always deterministic (see the file comment) */
    if (!attn_shape_ok(B, T, P, nh, nkv) || !dq || !dkf || !dvf || !dout || !out || !lse || !q || !kf || !vf ||
        !scratch)
        return cudaErrorInvalidValue;
    float *Dsum = (float *)scratch;
    if (dt == MF_CU_F32)
        return attn_bwd_dispatch<float>(dq, dkf, dvf, dout, out, lse, q, kf, vf, mask, B, T, P, nh, nkv, hd, Dsum, st);
    if (dt == MF_CU_BF16)
        return attn_bwd_dispatch<bf16>(dq, dkf, dvf, dout, out, lse, q, kf, vf, mask, B, T, P, nh, nkv, hd, Dsum, st);
    return cudaErrorInvalidValue;
}
