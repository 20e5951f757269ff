/* kernels/cpu/ops.c — CPU primitives, forward and backward (see ops.h). */
#include "kernels/cpu/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/*
 * C[M,N] = alpha op(A) op(B) + beta C, row-major, split across the OpenMP
 * team: each thread runs a single-threaded OpenBLAS sgemm on its block of
 * rows of C (or of columns, when C has fewer rows than threads). One thread
 * pool for the whole backend: no OpenBLAS threads spinning against OpenMP
 * threads (which cost half the CPU time on 2 shared cores), and a fixed
 * partition, so results are reproducible for a given thread count.
 */
void mf_k_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc)
{
    CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
    int nt = omp_get_max_threads();
    if (nt <= 1 || (double)M * N * K < 1e5 || omp_in_parallel()) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_rows = M >= N || M >= 4 * nt;
#pragma omp parallel num_threads(nt)
    {
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        int D = by_rows ? M : N, lo = (int)((long)D * id / n), hi = (int)((long)D * (id + 1) / n);
        if (hi > lo) {
            if (by_rows) {
                const float *a = transA ? A + lo : A + (size_t)lo * lda;
                cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)lo * ldc,
                            ldc);
            } else {
                const float *b = transB ? B + (size_t)lo * ldb : B + lo;
                cblas_sgemm(CblasRowMajor, ta, tb, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
            }
        }
    }
}

void mf_k_cpu_linear(float *y, const float *x, const float *W, const float *b, int N, int in, int out,
                     float alpha, float beta)
{
    mf_k_cpu_sgemm(0, 1, N, out, in, alpha, x, in, W, in, beta, y, out);
    if (b) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y[(size_t)n * out + o] += alpha * b[o];
    }
}

void mf_k_cpu_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                         const float *W, int N, int in, int out, float alpha)
{
    if (dx) mf_k_cpu_sgemm(0, 0, N, in, out, alpha, dy, out, W, in, 1.0f, dx, in);
    if (dW) mf_k_cpu_sgemm(1, 0, out, in, N, alpha, dy, out, x, in, 1.0f, dW, in);
    if (db) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < out; o++) {
            float s = 0;
            for (int n = 0; n < N; n++) s += dy[(size_t)n * out + o];
            db[o] += alpha * s;
        }
    }
}

void mf_k_cpu_rmsnorm(float *y, float *rstd, const float *x, const float *w, int N, int H, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * H;
        float *yr = y + (size_t)n * H;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < H; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)H + eps);
        rstd[n] = r;
        for (int i = 0; i < H; i++) yr[i] = w[i] * (xr[i] * r);
    }
}

void mf_k_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                          const float *w, int N, int H)
{
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * H, *dyr = dy + (size_t)n * H;
            float *dxr = dx + (size_t)n * H;
            float r = rstd[n], dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < H; i++) dot += dyr[i] * w[i] * xr[i] * r;
            dot /= (float)H;
            for (int i = 0; i < H; i++) dxr[i] += r * (dyr[i] * w[i] - xr[i] * r * dot);
        }
    }
    if (dw) {
        /* Parallel over 16-feature chunks (one 64-byte line per row): each dw[i]
         * has one writer and a fixed summation order (deterministic). */
#pragma omp parallel for schedule(static)
        for (int i0 = 0; i0 < H; i0 += 16) {
            int cw = H - i0 < 16 ? H - i0 : 16;
            float acc[16] = {0};
            for (int n = 0; n < N; n++) {
                const float *dyr = dy + (size_t)n * H + i0, *xr = x + (size_t)n * H + i0;
                float r = rstd[n];
                for (int i = 0; i < cw; i++) acc[i] += dyr[i] * xr[i] * r;
            }
            for (int i = 0; i < cw; i++) dw[i0 + i] += acc[i];
        }
    }
}

void mf_k_cpu_layernorm(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                        int H, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * H;
        float *yr = y + (size_t)n * H;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < H; i++) s += xr[i];
        float mu = s / (float)H, ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < H; i++) ss += (xr[i] - mu) * (xr[i] - mu);
        float r = 1.0f / sqrtf(ss / (float)H + eps);
        mean[n] = mu;
        rstd[n] = r;
        for (int i = 0; i < H; i++) yr[i] = w[i] * ((xr[i] - mu) * r) + b[i];
    }
}

void mf_k_cpu_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *w, int N, int H)
{
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * H, *dyr = dy + (size_t)n * H;
            float *dxr = dx + (size_t)n * H;
            float mu = mean[n], r = rstd[n], sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
            for (int i = 0; i < H; i++) {
                float g = dyr[i] * w[i];
                sg += g;
                sgx += g * (xr[i] - mu) * r;
            }
            sg /= (float)H;
            sgx /= (float)H;
            for (int i = 0; i < H; i++) dxr[i] += r * (dyr[i] * w[i] - sg - (xr[i] - mu) * r * sgx);
        }
    }
    if (dw || db) {
        /* 16-feature chunks: one writer per dw[i] / db[i], fixed summation order */
#pragma omp parallel for schedule(static)
        for (int i0 = 0; i0 < H; i0 += 16) {
            int cw = H - i0 < 16 ? H - i0 : 16;
            float aw[16] = {0}, ab[16] = {0};
            for (int n = 0; n < N; n++) {
                const float *dyr = dy + (size_t)n * H + i0, *xr = x + (size_t)n * H + i0;
                float mu = mean[n], r = rstd[n];
                for (int i = 0; i < cw; i++) {
                    aw[i] += dyr[i] * ((xr[i] - mu) * r);
                    ab[i] += dyr[i];
                }
            }
            for (int i = 0; i < cw; i++) {
                if (dw) dw[i0 + i] += aw[i];
                if (db) db[i0 + i] += ab[i];
            }
        }
    }
}

/* x rounded to the nearest IEEE half (ties to even), returned as a float. */
static float round_half(float x)
{
    if (x == 0 || !isfinite(x)) return x;
    int e;
    double f = frexp((double)x, &e); /* x = f 2^e, 0.5 <= |f| < 1 */
    if (e < -13)                     /* fp16 subnormals: a fixed quantum of 2^-24 */
        return (float)ldexp(nearbyint(ldexp((double)x, 24)), -24);
    return (float)ldexp(nearbyint(ldexp(f, 11)), e - 11); /* 11 significant bits */
}

void mf_k_cpu_rope_table(float *cosv, float *sinv, int len, int rot, double theta)
{
    mf_k_cpu_rope_table_ex(cosv, sinv, len, rot, theta, 0);
}

void mf_k_cpu_rope_table_ex(float *cosv, float *sinv, int len, int rot, double theta, int half_freq)
{
    int half = rot / 2;
    for (int i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow(theta, (double)(2 * i) / (double)rot));
        if (half_freq) inv = round_half(inv);
        for (int p = 0; p < len; p++) {
            float ang = (float)p * inv;
            cosv[(size_t)p * half + i] = (float)cos((double)ang);
            sinv[(size_t)p * half + i] = (float)sin((double)ang);
        }
    }
}

void mf_k_cpu_rope(float *x, const int *pos, int N, int nh, int hd, int rot, int interleaved, const float *cosv,
                   const float *sinv, int inverse)
{
    int half = rot / 2;
    /* element pairs (i, i + half) or (2i, 2i + 1) */
    int step = interleaved ? 2 : 1, other = interleaved ? 1 : half;
    float sg = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *c = cosv + (size_t)pos[n] * half, *s = sinv + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)n * nh * hd + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float *pa = v + (size_t)i * step, *pb = pa + other;
                float a = *pa, b = *pb, si = sg * s[i];
                *pa = a * c[i] - b * si;
                *pb = b * c[i] + a * si;
            }
        }
    }
}

/*
 * exp(x) in fp32 that the compiler vectorises (libm's expf is a call per
 * element, and the softmax over a 3,000-token vocabulary was a third of a tiny
 * model's training time). Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (ln2
 * split in two for an exact reduction), exp(r) by a degree-6 polynomial,
 * times 2^n built in the exponent bits. Within 2 ulp of expf on
 * [-87.3, 88]; arguments are clamped to that range (exp(-87.3) is the
 * smallest normal float, so softmax tails underflow to ~1e-38 instead of 0).
 * Round-to-nearest by the 1.5 * 2^23 trick: SSE2 has no vector floor.
 */
static inline float fexp(float x)
{
    x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n = {.i = ((int32_t)n + 127) * (1 << 23)};
    return p * two_n.f;
}

float mf_k_cpu_exp(float x) { return fexp(x); }

/* tanh(u) = 1 - 2 / (1 + e^{2u}) through fexp, which the loops below vectorise (glibc's tanhf
 * was ~15% of a BLOOM training step). Absolute error ~2e-7; fexp's clamp gives exactly +-1 far
 * out. */
static inline float ftanh(float u)
{
    return 1.0f - 2.0f / (1.0f + fexp(2.0f * u));
}

/* sqrt(2/pi) and 3 * 0.044715 * sqrt(2/pi), as BLOOM's fused GELU writes them */
#define GELU_K 0.79788456f
#define GELU_K3 0.1070322243f

void mf_k_cpu_gelu(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v * 0.5f * (1.0f + ftanh(GELU_K * v * (1.0f + 0.044715f * v * v)));
    }
}

void mf_k_cpu_gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], t = ftanh(GELU_K * v * (1.0f + 0.044715f * v * v));
        dx[i] = dy[i] * (0.5f * v * ((1.0f - t * t) * (GELU_K + GELU_K3 * v * v)) + 0.5f * (1.0f + t));
    }
}

static inline float silu(float g)
{
    return g / (1.0f + fexp(-g));
}

void mf_k_cpu_swiglu(float *act, const float *g, const float *u, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) act[i] = silu(g[i]) * u[i];
}

void mf_k_cpu_swiglu_bwd(float *dg, float *du, const float *dact, const float *g, const float *u, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + fexp(-g[i]));
        float d = dact[i];
        du[i] = d * g[i] * sig;
        dg[i] = d * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

/* Query rows per causal block: keys beyond the block's last row are never
 * computed (saves ~half of the attention FLOPs at T = 256). */
#define ATT_BLK 64

/* Row t of a (b, h) score block may see key s when s is a prefix row or a
 * real (mask 1) position <= t, or < ctx (the row's bidirectional prompt). */
static inline int key_visible(const int32_t *mrow, int P, int t, int s, int ctx)
{
    return s < P || ((s - P <= t || s - P < ctx) && (!mrow || mrow[s - P]));
}

/* Keys a block of query rows ending at t1 can see: [0, P + max(t1, ctx)). */
static inline int keys_seen(int P, int t1, int ctx, int T)
{
    int e = t1 > ctx ? t1 : ctx;
    return P + (e < T ? e : T);
}

void mf_k_cpu_attention(float *out, float *att, const float *q, const float *kf, const float *vf,
                        const int32_t *mask, const mf_k_alibi *alibi, int B, int T, int P, int nh, int nkv, int hd)
{
    mf_k_cpu_attention_ex(out, att, q, kf, vf, mask, alibi, NULL, B, T, P, nh, nkv, hd);
}

void mf_k_cpu_attention_ex(float *out, float *att, const float *q, const float *kf, const float *vf,
                           const int32_t *mask, const mf_k_alibi *alibi, const int32_t *ctx, int B, int T, int P,
                           int nh, int nkv, int hd)
{
    int S = P + T, grp = nh / nkv, qd = nh * hd, kd = nkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    /* per (batch, head): scores = scale Q K^T (GEMM), masked softmax, out = P V (GEMM);
     * each task is a single-threaded BLAS call inside the OpenMP team */
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / grp;
            const int32_t *mrow = mask ? mask + (size_t)b * T : NULL;
            const float *qb = q + (size_t)b * T * qd + (size_t)h * hd;
            const float *kb = kf + (size_t)b * S * kd + (size_t)g * hd;
            const float *vb = vf + (size_t)b * S * kd + (size_t)g * hd;
            float *pb = att + ((size_t)b * nh + h) * T * S;
            int cx = ctx ? ctx[b] : 0;
            /* causal: rows [t0, t1) see at most keys [0, P + max(t1, ctx)): skip the rest */
            for (int t0 = 0; t0 < T; t0 += ATT_BLK) {
                int t1 = t0 + ATT_BLK < T ? t0 + ATT_BLK : T, sv = keys_seen(P, t1, cx, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, sv, hd, scale, qb + (size_t)t0 * qd, qd,
                            kb, kd, 0.0f, pb + (size_t)t0 * S, S);
            }
            float slope = alibi ? alibi->slope[h] : 0.0f;
            const int32_t *kpos = alibi ? alibi->pos + (size_t)b * S : NULL;
            for (int t = 0; t < T; t++) {
                float *p = pb + (size_t)t * S, mx = -INFINITY;
                for (int s = 0; s < S; s++) {
                    if (!key_visible(mrow, P, t, s, cx)) p[s] = -INFINITY;
                    else {
                        if (kpos) p[s] += slope * (float)kpos[s];
                        if (p[s] > mx) mx = p[s];
                    }
                }
                if (mx == -INFINITY) { /* sees nothing: output 0 */
                    memset(p, 0, (size_t)S * sizeof(float));
                    continue;
                }
                float sum = 0;
                for (int s = 0; s < S; s++) {
                    float e = p[s] == -INFINITY ? 0.0f : expf(p[s] - mx);
                    p[s] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
                for (int s = 0; s < S; s++) p[s] *= inv;
            }
            for (int t0 = 0; t0 < T; t0 += ATT_BLK) {
                int t1 = t0 + ATT_BLK < T ? t0 + ATT_BLK : T, sv = keys_seen(P, t1, cx, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, hd, sv, 1.0f, pb + (size_t)t0 * S, S,
                            vb, kd, 0.0f, out + ((size_t)b * T + t0) * qd + (size_t)h * hd, qd);
            }
        }
}

void mf_k_cpu_attention_bwd(float *dq, float *dkf, float *dvf, float *scratch, int ws_threads, const float *dout,
                            const float *att, const float *q, const float *kf, const float *vf, int B, int T,
                            int P, int nh, int nkv, int hd)
{
    mf_k_cpu_attention_bwd_ex(dq, dkf, dvf, scratch, ws_threads, dout, att, q, kf, vf, NULL, B, T, P, nh, nkv, hd);
}

void mf_k_cpu_attention_bwd_ex(float *dq, float *dkf, float *dvf, float *scratch, int ws_threads, const float *dout,
                               const float *att, const float *q, const float *kf, const float *vf, const int32_t *ctx,
                               int B, int T, int P, int nh, int nkv, int hd)
{
    int S = P + T, grp = nh / nkv, qd = nh * hd, kd = nkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    memset(dkf, 0, (size_t)B * S * kd * sizeof(float));
    memset(dvf, 0, (size_t)B * S * kd * sizeof(float));
    /* One task per (batch, kv head): dK/dV of a kv head have one writer. Per head:
     *   dP = dO V^T ; dS = P * (dP - rowsum(P * dP)) * scale
     *   dQ = dS K ; dK += dS^T Q ; dV += P^T dO            (all GEMMs)
     * The team is capped at ws_threads: one scratch block per thread. */
#pragma omp parallel for collapse(2) schedule(static) num_threads(ws_threads)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < nkv; g++) {
            float *ds = scratch + (size_t)omp_get_thread_num() * T * S;
            const float *kb = kf + (size_t)b * S * kd + (size_t)g * hd;
            const float *vb = vf + (size_t)b * S * kd + (size_t)g * hd;
            float *dkb = dkf + (size_t)b * S * kd + (size_t)g * hd, *dvb = dvf + (size_t)b * S * kd + (size_t)g * hd;
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                const float *pb = att + ((size_t)b * nh + h) * T * S;
                const float *qb = q + (size_t)b * T * qd + (size_t)h * hd;
                const float *dob = dout + (size_t)b * T * qd + (size_t)h * hd;
                for (int t0 = 0; t0 < T; t0 += ATT_BLK) { /* causal blocks, as in the forward */
                    int t1 = t0 + ATT_BLK < T ? t0 + ATT_BLK : T, sv = keys_seen(P, t1, ctx ? ctx[b] : 0, T),
                        nt = t1 - t0;
                    const float *pbk = pb + (size_t)t0 * S, *qbk = qb + (size_t)t0 * qd, *dobk = dob + (size_t)t0 * qd;
                    float *dsk = ds + (size_t)t0 * S;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, sv, hd, 1.0f, dobk, qd, vb, kd, 0.0f, dsk, S);
                    for (int t = 0; t < nt; t++) {
                        const float *p = pbk + (size_t)t * S;
                        float *d = dsk + (size_t)t * S, sum = 0;
                        for (int s = 0; s < sv; s++) sum += p[s] * d[s];
                        for (int s = 0; s < sv; s++) d[s] = p[s] * (d[s] - sum) * scale;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hd, sv, 1.0f, dsk, S, kb, kd, 0.0f,
                                dq + ((size_t)b * T + t0) * qd + (size_t)h * hd, qd);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, sv, hd, nt, 1.0f, dsk, S, qbk, qd, 1.0f, dkb, kd);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, sv, hd, nt, 1.0f, pbk, S, dobk, qd, 1.0f, dvb, kd);
                }
            }
        }
}

/* Row maximum and log-sum-exp: lse = mx + log(sum_j exp(z_j - mx)). The sum
 * runs in 8 fp32 lanes (a fixed order, so bit-reproducible), each lane's
 * terms <= 1 and at most V / 8 of them. */
static float row_lse(const float *r, int V)
{
    float mx = r[0];
    for (int j = 1; j < V; j++) mx = r[j] > mx ? r[j] : mx;
    float lane[8] = {0};
    int j = 0;
    for (; j + 8 <= V; j += 8)
#pragma omp simd
        for (int k = 0; k < 8; k++) lane[k] += fexp(r[j + k] - mx);
    double s = 0;
    for (; j < V; j++) s += fexp(r[j] - mx);
    for (int k = 0; k < 8; k++) s += lane[k];
    return mx + (float)log(s); /* s >= exp(0) = 1 */
}

double mf_k_cpu_logp(float *logp, float *lse, const float *logits, const int32_t *target, int N, int V)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (target[n] < 0) {
            logp[n] = 0;
            if (lse) lse[n] = 0;
            continue;
        }
        const float *r = logits + (size_t)n * V;
        float l = row_lse(r, V);
        logp[n] = r[target[n]] - l;
        if (lse) lse[n] = l;
    }
    double total = 0; /* serial: the same sum in the same order every run */
    for (int n = 0; n < N; n++) total += logp[n];
    return total;
}

void mf_k_cpu_logp_bwd(float *logits, const float *lse, const float *dlogp, const int32_t *target, int N, int V)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *r = logits + (size_t)n * V;
        float g = dlogp ? dlogp[n] : 0.0f;
        if (target[n] < 0 || g == 0.0f) {
            memset(r, 0, (size_t)V * sizeof(float));
            continue;
        }
        float l = lse ? lse[n] : row_lse(r, V);
#pragma omp simd
        for (int j = 0; j < V; j++) r[j] = -g * fexp(r[j] - l);
        r[target[n]] += g;
    }
}
