/*
 * tests/cuda/test_cuda_ops.cu — every primitive of kernels/cuda/ops.cuh
 * against its CPU reference (kernels/cpu/ops.h, kernels/rng.c, the AdamW
 * formula of kernels/optim.c), on seeded random inputs over several shapes,
 * in fp32 and bf16, plus bitwise determinism where an op promises it.
 *
 * Error metric: max |gpu - ref| / max |ref| over the tensor (the error
 * relative to the tensor's scale), so tiny reference values do not make
 * meaningless relative errors. Tolerances:
 *   fp32 elementwise           1e-5   (same formula, fp32; expf/FMA ulps)
 *   fp32 attention, CE, norms  1e-4   (different summation orders over up to 1e4 terms)
 *   bf16 (inputs rounded to bf16 on both sides, GPU outputs stored in bf16)
 *                              2e-2   (a few bf16 roundings, 2^-9 each, compounding in backward)
 * Exact (bitwise) checks: dtype conversion, dropout masks (they must drop the
 * same elements as the CPU), and reruns of every deterministic op.
 *
 * Runs on the first CUDA device; prints "no CUDA device: <reason>" and exits
 * 77 without one. Last line: "N passed, N failed". Exit 0 iff nothing failed.
 */
#include "kernels/cuda/ops.cuh"

extern "C" {
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"
}

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

/* ---------------------------------------------------------------- harness */

static int g_pass, g_fail;

static void summary_and_exit(int code)
{
    printf("%d passed, %d failed\n", g_pass, g_fail);
    exit(code);
}

/* A CUDA error leaves the context unusable: report it, then stop. */
#define CU(call)                                                                                            \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ == cudaSuccess) e_ = cudaDeviceSynchronize();                                                \
        if (e_ != cudaSuccess) {                                                                            \
            printf("FAIL %s:%d: %s -> %s (%s)\n", __FILE__, __LINE__, #call, cudaGetErrorName(e_),           \
                   cudaGetErrorString(e_));                                                                 \
            g_fail++;                                                                                       \
            summary_and_exit(1);                                                                            \
        }                                                                                                   \
    } while (0)

static void result(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) g_pass++;
    else g_fail++;
}

/* max |got - ref| / max |ref|; NaN/inf where ref is finite is an error of +inf. */
static double rel_err(const float *got, const float *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i], g = got[i];
        if (!isfinite(g) && isfinite(r)) return INFINITY;
        md = fmax(md, fabs(g - r));
        mr = fmax(mr, fabs(r));
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

static void expect_close(const char *what, const char *ctx, const float *got, const float *ref, size_t n, double tol)
{
    double e = rel_err(got, ref, n);
    result(e <= tol, "%-28s %-48s err %.2e (tol %.0e)", what, ctx, e, tol);
}

static void expect_same_bits(const char *what, const char *ctx, const void *a, const void *b, size_t bytes)
{
    result(memcmp(a, b, bytes) == 0, "%-28s %-48s bitwise rerun", what, ctx);
}

/* ---------------------------------------------------------------- host data */

static mf_k_rng g_rng;

static std::vector<float> randu(size_t n, float a)
{
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (2.0f * mf_k_rng_uniform(&g_rng) - 1.0f) * a;
    return v;
}

static int randint(int n)
{
    return (int)(mf_k_rng_next(&g_rng) % (uint64_t)n);
}

/* fp32 <-> bf16 on the host, round to nearest even (as __float2bfloat16_rn). */
static uint16_t f2bf(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Values representable in dt (bf16: rounded), so CPU and GPU see the same inputs. */
static void round_to(std::vector<float> &v, mf_cu_dtype dt)
{
    if (dt == MF_CU_BF16)
        for (float &x : v) x = bf2f(f2bf(x));
}

static const char *dname(mf_cu_dtype dt)
{
    return dt == MF_CU_BF16 ? "bf16" : "f32";
}

/* Device buffers of one test, freed together. */
static std::vector<void *> g_dev;

static void *dalloc(size_t bytes)
{
    void *p = NULL;
    CU(cudaMalloc(&p, bytes ? bytes : 1));
    g_dev.push_back(p);
    return p;
}

static void dfree_all(void)
{
    for (void *p : g_dev) cudaFree(p);
    g_dev.clear();
}

/* An activation buffer in dt holding v. */
static void *up_act(const std::vector<float> &v, mf_cu_dtype dt)
{
    size_t n = v.size();
    void *d = dalloc(n * mf_cu_dtype_size(dt));
    if (dt == MF_CU_F32) {
        CU(cudaMemcpy(d, v.data(), n * 4, cudaMemcpyHostToDevice));
    } else {
        std::vector<uint16_t> h(n);
        for (size_t i = 0; i < n; i++) h[i] = f2bf(v[i]);
        CU(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
    }
    return d;
}

static std::vector<float> down_act(const void *d, size_t n, mf_cu_dtype dt)
{
    std::vector<float> v(n);
    if (dt == MF_CU_F32) {
        CU(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost));
    } else {
        std::vector<uint16_t> h(n);
        CU(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n; i++) v[i] = bf2f(h[i]);
    }
    return v;
}

static float *up_f32(const std::vector<float> &v)
{
    return (float *)up_act(v, MF_CU_F32);
}
static std::vector<float> down_f32(const float *d, size_t n)
{
    return down_act(d, n, MF_CU_F32);
}
static int32_t *up_i32(const std::vector<int32_t> &v)
{
    int32_t *d = (int32_t *)dalloc(v.size() * 4);
    CU(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
/* Raw bytes of a device buffer (for bitwise comparisons). */
static std::vector<unsigned char> down_bytes(const void *d, size_t bytes)
{
    std::vector<unsigned char> v(bytes);
    CU(cudaMemcpy(v.data(), d, bytes, cudaMemcpyDeviceToHost));
    return v;
}

static double tol_for(mf_cu_dtype dt, double f32_tol)
{
    return dt == MF_CU_BF16 ? 2e-2 : f32_tol;
}

/* ---------------------------------------------------------------- elementwise */

static void test_convert(void)
{
    std::vector<float> x = randu(1001, 100.0f);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-40f, x[3] = 3.0e38f, x[4] = INFINITY, x[5] = -INFINITY;
    x[6] = 1.0f;
    x[7] = 1.0f + 1.0f / 256.0f;          /* ties: to even (down to 1.0) */
    x[8] = 1.0078125f + 1.0f / 256.0f;    /* ties: to even (up to 1.015625) */
    size_t n = x.size();
    void *d32 = up_act(x, MF_CU_F32), *d16 = dalloc(n * 2), *back = dalloc(n * 4), *copy = dalloc(n * 4);
    CU(mf_cu_convert(d16, MF_CU_BF16, d32, MF_CU_F32, n, 0));
    std::vector<uint16_t> got(n), want(n);
    CU(cudaMemcpy(got.data(), d16, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) want[i] = f2bf(x[i]);
    result(got == want, "%-28s %-48s", "convert f32->bf16", "RNE bits equal host rounding");
    CU(mf_cu_convert(back, MF_CU_F32, d16, MF_CU_BF16, n, 0));
    std::vector<float> b = down_f32((float *)back, n);
    std::vector<float> wf(n);
    for (size_t i = 0; i < n; i++) wf[i] = bf2f(want[i]);
    result(memcmp(b.data(), wf.data(), n * 4) == 0, "%-28s %-48s", "convert bf16->f32", "exact widening");
    CU(mf_cu_convert(copy, MF_CU_F32, d32, MF_CU_F32, n, 0));
    std::vector<float> c = down_f32((float *)copy, n);
    result(memcmp(c.data(), x.data(), n * 4) == 0, "%-28s %-48s", "convert f32->f32", "copy");
    dfree_all();
}

static void test_elementwise(mf_cu_dtype dt)
{
    char ctx[96];
    const int N = 37, O = 131;
    size_t n = (size_t)N * O;
    snprintf(ctx, sizeof ctx, "%s N=%d out=%d", dname(dt), N, O);
    double tol = tol_for(dt, 1e-5);

    /* add */
    std::vector<float> y = randu(n, 2), x = randu(n, 2);
    round_to(y, dt), round_to(x, dt);
    void *dy = up_act(y, dt), *dx = up_act(x, dt);
    CU(mf_cu_add(dy, dx, n, dt, 0));
    std::vector<float> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = y[i] + x[i];
    expect_close("add", ctx, down_act(dy, n, dt).data(), ref.data(), n, tol);

    /* bias add / bwd */
    std::vector<float> b = randu(O, 1);
    round_to(b, dt);
    void *db_in = up_act(b, dt), *dy2 = up_act(y, dt);
    CU(mf_cu_bias_add(dy2, db_in, N, O, dt, 0));
    for (size_t i = 0; i < n; i++) ref[i] = y[i] + b[i % O];
    expect_close("bias_add", ctx, down_act(dy2, n, dt).data(), ref.data(), n, tol);

    std::vector<float> g0 = randu(O, 1);
    float *dg = up_f32(g0), *dg2 = up_f32(g0);
    CU(mf_cu_bias_bwd(dg, dx, N, O, 0.5f, dt, 0));
    CU(mf_cu_bias_bwd(dg2, dx, N, O, 0.5f, dt, 0));
    std::vector<float> rb(O);
    for (int o = 0; o < O; o++) {
        double s = 0;
        for (int k = 0; k < N; k++) s += x[(size_t)k * O + o];
        rb[o] = (float)(g0[o] + 0.5 * s);
    }
    std::vector<float> gb = down_f32(dg, O);
    expect_close("bias_bwd", ctx, gb.data(), rb.data(), O, 1e-5); /* fp32 out either way */
    std::vector<float> gb2 = down_f32(dg2, O);
    expect_same_bits("bias_bwd", ctx, gb.data(), gb2.data(), O * 4);

    /* tanh / bwd */
    void *dt1 = up_act(x, dt);
    CU(mf_cu_tanh(dt1, n, dt, 0));
    std::vector<float> th(n);
    for (size_t i = 0; i < n; i++) th[i] = tanhf(x[i]);
    std::vector<float> tg = down_act(dt1, n, dt);
    expect_close("tanh", ctx, tg.data(), th.data(), n, tol);
    void *dgy = up_act(y, dt);
    CU(mf_cu_tanh_bwd(dgy, dt1, n, dt, 0));
    for (size_t i = 0; i < n; i++) ref[i] = y[i] * (1.0f - tg[i] * tg[i]); /* from the stored y */
    expect_close("tanh_bwd", ctx, down_act(dgy, n, dt).data(), ref.data(), n, tol);

    /* swiglu / bwd against cpu/ops.c */
    std::vector<float> g = randu(n, 4), u = randu(n, 2), da = randu(n, 1);
    round_to(g, dt), round_to(u, dt), round_to(da, dt);
    void *dgg = up_act(g, dt), *duu = up_act(u, dt), *dact = dalloc(n * mf_cu_dtype_size(dt)), *dda = up_act(da, dt);
    CU(mf_cu_swiglu(dact, dgg, duu, n, dt, 0));
    mf_k_cpu_swiglu(ref.data(), g.data(), u.data(), n);
    expect_close("swiglu", ctx, down_act(dact, n, dt).data(), ref.data(), n, tol);
    std::vector<float> rdg(n), rdu(n);
    mf_k_cpu_swiglu_bwd(rdg.data(), rdu.data(), da.data(), g.data(), u.data(), n);
    void *ddg = dalloc(n * mf_cu_dtype_size(dt)), *ddu = dalloc(n * mf_cu_dtype_size(dt));
    CU(mf_cu_swiglu_bwd(ddg, ddu, dda, dgg, duu, n, dt, 0));
    expect_close("swiglu_bwd dg", ctx, down_act(ddg, n, dt).data(), rdg.data(), n, tol);
    expect_close("swiglu_bwd du", ctx, down_act(ddu, n, dt).data(), rdu.data(), n, tol);
    CU(mf_cu_swiglu_bwd(dgg, duu, dda, dgg, duu, n, dt, 0)); /* in place over g, u */
    int same = down_act(dgg, n, dt) == down_act(ddg, n, dt) && down_act(duu, n, dt) == down_act(ddu, n, dt);
    result(same, "%-28s %-48s", "swiglu_bwd in place", ctx);

    /* embed and gather_rows */
    const int V = 23, H = 45, NT = 60;
    std::vector<float> table = randu((size_t)V * H, 1);
    round_to(table, dt);
    std::vector<int32_t> ids(NT);
    for (int &i : ids) i = randint(V);
    void *dtab = up_act(table, dt), *demb = dalloc((size_t)NT * H * mf_cu_dtype_size(dt));
    int32_t *dids = up_i32(ids);
    CU(mf_cu_embed(demb, dtab, dids, NT, H, dt, 0));
    std::vector<float> re((size_t)NT * H);
    for (int t = 0; t < NT; t++) memcpy(&re[(size_t)t * H], &table[(size_t)ids[t] * H], H * 4);
    expect_close("embed", ctx, down_act(demb, re.size(), dt).data(), re.data(), re.size(), 0.0);
    CU(mf_cu_gather_rows(demb, dtab, dids, NT, H, dt, 0));
    expect_close("gather_rows", ctx, down_act(demb, re.size(), dt).data(), re.data(), re.size(), 0.0);
    dfree_all();
}

static void test_scale(void)
{
    std::vector<float> y = randu(1000, 3);
    float *d = up_f32(y);
    CU(mf_cu_scale_f32(d, 0.25f, y.size(), 0));
    for (float &v : y) v *= 0.25f;
    expect_close("scale_f32", "n=1000", down_f32(d, y.size()).data(), y.data(), y.size(), 0.0);
    dfree_all();
}

static void test_embed_bwd(mf_cu_dtype dt)
{
    const int N = 1000, H = 70, V = 50; /* many repeated ids */
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s N=%d H=%d V=%d", dname(dt), N, H, V);
    std::vector<float> dx = randu((size_t)N * H, 1), t0 = randu((size_t)V * H, 1);
    round_to(dx, dt);
    std::vector<int32_t> ids(N);
    for (int &i : ids) i = randint(V) * (randint(4) ? 1 : 0); /* id 0 very frequent */
    std::vector<double> acc(t0.begin(), t0.end());
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) acc[(size_t)ids[n] * H + c] += dx[(size_t)n * H + c];
    std::vector<float> ref(acc.begin(), acc.end());
    void *ddx = up_act(dx, dt);
    int32_t *dids = up_i32(ids), *order = (int32_t *)dalloc(N * 4);
    float *a = up_f32(t0), *b = up_f32(t0), *c = up_f32(t0);
    CU(mf_cu_embed_bwd(a, ddx, dids, N, H, V, dt, 1, order, 0));
    CU(mf_cu_embed_bwd(b, ddx, dids, N, H, V, dt, 1, order, 0));
    CU(mf_cu_embed_bwd(c, ddx, dids, N, H, V, dt, 0, NULL, 0));
    std::vector<float> ga = down_f32(a, ref.size()), gb = down_f32(b, ref.size());
    expect_close("embed_bwd deterministic", ctx, ga.data(), ref.data(), ref.size(), 1e-5);
    expect_same_bits("embed_bwd deterministic", ctx, ga.data(), gb.data(), ref.size() * 4);
    expect_close("embed_bwd atomic", ctx, down_f32(c, ref.size()).data(), ref.data(), ref.size(), 1e-5);
    dfree_all();
}

/* ---------------------------------------------------------------- RMSNorm, RoPE, kv */

static void test_rmsnorm(mf_cu_dtype dt, int N, int H)
{
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s N=%d H=%d", dname(dt), N, H);
    double tol = tol_for(dt, 1e-4);
    size_t n = (size_t)N * H;
    std::vector<float> x = randu(n, 2), res = randu(n, 1), w = randu(H, 1.5f);
    round_to(x, dt), round_to(res, dt), round_to(w, dt);
    std::vector<float> ry(n), rr(N);

    /* plain */
    void *dx = up_act(x, dt), *dw = up_act(w, dt), *dy = dalloc(n * mf_cu_dtype_size(dt));
    float *drs = (float *)dalloc(N * 4);
    CU(mf_cu_rmsnorm(dy, drs, dx, NULL, dw, N, H, 1e-6f, dt, 0));
    mf_k_cpu_rmsnorm(ry.data(), rr.data(), x.data(), w.data(), N, H, 1e-6f);
    expect_close("rmsnorm y", ctx, down_act(dy, n, dt).data(), ry.data(), n, tol);
    expect_close("rmsnorm rstd", ctx, down_f32(drs, N).data(), rr.data(), N, 1e-4);

    /* fused residual: x <- round(x + res), then the norm of that */
    std::vector<float> xs(n);
    for (size_t i = 0; i < n; i++) xs[i] = x[i] + res[i];
    round_to(xs, dt);
    void *dx2 = up_act(x, dt), *dres = up_act(res, dt);
    CU(mf_cu_rmsnorm(dy, drs, dx2, dres, dw, N, H, 1e-6f, dt, 0));
    mf_k_cpu_rmsnorm(ry.data(), rr.data(), xs.data(), w.data(), N, H, 1e-6f);
    expect_close("rmsnorm+res x", ctx, down_act(dx2, n, dt).data(), xs.data(), n, tol_for(dt, 1e-6));
    expect_close("rmsnorm+res y", ctx, down_act(dy, n, dt).data(), ry.data(), n, tol);

    /* backward, accumulating into dx and dw */
    std::vector<float> gy = randu(n, 1), dx0 = randu(n, 1), dw0 = randu(H, 1);
    round_to(gy, dt), round_to(dx0, dt);
    std::vector<float> rdx = dx0, rdw = dw0;
    mf_k_cpu_rmsnorm_bwd(rdx.data(), rdw.data(), gy.data(), xs.data(), rr.data(), w.data(), N, H);
    void *dgy = up_act(gy, dt), *ddx = up_act(dx0, dt);
    float *ddw = up_f32(dw0), *ddw2 = up_f32(dw0), *drr = up_f32(rr);
    float *scr = (float *)dalloc(mf_cu_rmsnorm_bwd_scratch(N, H) * 4);
    void *dxs = up_act(xs, dt);
    CU(mf_cu_rmsnorm_bwd(ddx, 1, ddw, scr, dgy, dxs, drr, dw, N, H, dt, 0));
    expect_close("rmsnorm_bwd dx (+=)", ctx, down_act(ddx, n, dt).data(), rdx.data(), n, tol);
    std::vector<float> g1 = down_f32(ddw, H);
    expect_close("rmsnorm_bwd dw (+=)", ctx, g1.data(), rdw.data(), H, 1e-4);
    CU(mf_cu_rmsnorm_bwd(NULL, 0, ddw2, scr, dgy, dxs, drr, dw, N, H, dt, 0));
    expect_same_bits("rmsnorm_bwd dw", ctx, g1.data(), down_f32(ddw2, H).data(), H * 4);
    /* overwrite mode, dx aliasing dy, with dw: dw must still see the original dy */
    std::vector<float> rdx2(n, 0.0f);
    mf_k_cpu_rmsnorm_bwd(rdx2.data(), NULL, gy.data(), xs.data(), rr.data(), w.data(), N, H);
    float *ddw3 = up_f32(dw0);
    CU(mf_cu_rmsnorm_bwd(dgy, 0, ddw3, scr, dgy, dxs, drr, dw, N, H, dt, 0));
    expect_close("rmsnorm_bwd dx (=, in place)", ctx, down_act(dgy, n, dt).data(), rdx2.data(), n, tol);
    expect_same_bits("rmsnorm_bwd dw (dx in place)", ctx, g1.data(), down_f32(ddw3, H).data(), H * 4);
    dfree_all();
}

static void test_rope(mf_cu_dtype dt, int hd)
{
    const int N = 21, nh = 3, len = 50;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s N=%d nh=%d hd=%d", dname(dt), N, nh, hd);
    size_t n = (size_t)N * nh * hd;
    std::vector<float> cs((size_t)len * hd / 2), sn((size_t)len * hd / 2);
    mf_k_cpu_rope_table(cs.data(), sn.data(), len, hd, 10000.0);
    std::vector<float> x = randu(n, 2);
    round_to(x, dt);
    std::vector<int32_t> pos(N);
    for (int &p : pos) p = randint(len);
    float *dc = up_f32(cs), *ds = up_f32(sn);
    int32_t *dp = up_i32(pos);
    for (int inv = 0; inv < 2; inv++) {
        std::vector<float> r = x;
        mf_k_cpu_rope(r.data(), pos.data(), N, nh, hd, hd, 0, cs.data(), sn.data(), inv);
        void *dx = up_act(x, dt);
        CU(mf_cu_rope(dx, dp, N, nh, hd, dc, ds, inv, dt, 0));
        expect_close(inv ? "rope inverse" : "rope", ctx, down_act(dx, n, dt).data(), r.data(), n, tol_for(dt, 1e-5));
    }
    dfree_all();
}

static void test_kv(mf_cu_dtype dt, int P)
{
    const int B = 3, T = 7, D = 12, S = P + T;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s B=%d T=%d P=%d Dkv=%d", dname(dt), B, T, P, D);
    std::vector<float> k = randu((size_t)B * T * D, 1), v = randu((size_t)B * T * D, 1);
    std::vector<float> pk = randu((size_t)(P ? P : 1) * D, 1), pv = randu((size_t)(P ? P : 1) * D, 1);
    round_to(k, dt), round_to(v, dt), round_to(pk, dt), round_to(pv, dt);
    std::vector<float> rk((size_t)B * S * D), rv(rk.size());
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int c = 0; c < D; c++) {
                size_t at = ((size_t)b * S + s) * D + c;
                rk[at] = s < P ? pk[(size_t)s * D + c] : k[((size_t)b * T + s - P) * D + c];
                rv[at] = s < P ? pv[(size_t)s * D + c] : v[((size_t)b * T + s - P) * D + c];
            }
    size_t es = mf_cu_dtype_size(dt);
    void *dk = up_act(k, dt), *dv = up_act(v, dt), *dpk = P ? up_act(pk, dt) : NULL, *dpv = P ? up_act(pv, dt) : NULL;
    void *kf = dalloc(rk.size() * es), *vf = dalloc(rk.size() * es);
    CU(mf_cu_kv_assemble(kf, vf, dk, dv, dpk, dpv, B, T, P, D, dt, 0));
    expect_close("kv_assemble k", ctx, down_act(kf, rk.size(), dt).data(), rk.data(), rk.size(), 0.0);
    expect_close("kv_assemble v", ctx, down_act(vf, rv.size(), dt).data(), rv.data(), rv.size(), 0.0);

    /* split: the gradient of assemble */
    std::vector<float> gk = randu(rk.size(), 1), gv = randu(rk.size(), 1), p0 = randu((size_t)(P ? P : 1) * D, 1);
    round_to(gk, dt), round_to(gv, dt);
    void *dgk = up_act(gk, dt), *dgv = up_act(gv, dt);
    void *ok = dalloc(k.size() * es), *ov = dalloc(k.size() * es);
    float *dpk0 = up_f32(p0), *dpv0 = up_f32(p0);
    CU(mf_cu_kv_split(ok, ov, dpk0, dpv0, dgk, dgv, B, T, P, D, dt, 0));
    std::vector<float> sk(k.size()), sv(k.size()), rpk = p0, rpv = p0;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int c = 0; c < D; c++) {
                size_t at = ((size_t)b * S + s) * D + c;
                if (s < P) {
                    rpk[(size_t)s * D + c] += gk[at];
                    rpv[(size_t)s * D + c] += gv[at];
                } else {
                    sk[((size_t)b * T + s - P) * D + c] = gk[at];
                    sv[((size_t)b * T + s - P) * D + c] = gv[at];
                }
            }
    expect_close("kv_split dk", ctx, down_act(ok, sk.size(), dt).data(), sk.data(), sk.size(), 0.0);
    expect_close("kv_split dv", ctx, down_act(ov, sv.size(), dt).data(), sv.data(), sv.size(), 0.0);
    if (P) {
        expect_close("kv_split dpk (+=)", ctx, down_f32(dpk0, rpk.size()).data(), rpk.data(), rpk.size(), 1e-6);
        expect_close("kv_split dpv (+=)", ctx, down_f32(dpv0, rpv.size()).data(), rpv.data(), rpv.size(), 1e-6);
    }
    dfree_all();
}

/* ---------------------------------------------------------------- dropout */

static void test_dropout(mf_cu_dtype dt, float p)
{
    const size_t n = 10007;
    const uint64_t key = 0x123456789abcull;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s n=%zu p=%g", dname(dt), n, (double)p);
    std::vector<float> x = randu(n, 3);
    round_to(x, dt);
    /* cpu_model.c dropout_apply, then stored in dt */
    uint32_t thr = (uint32_t)(p * 16777216.0f);
    float sc = 1.0f / (1.0f - p);
    std::vector<float> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = (uint32_t)(mf_k_hash64(key + i) >> 40) >= thr ? x[i] * sc : 0.0f;
    round_to(ref, dt);
    void *dx = up_act(x, dt), *dy = dalloc(n * mf_cu_dtype_size(dt));
    CU(mf_cu_dropout(dy, dx, n, key, p, dt, 0));
    std::vector<float> got = down_act(dy, n, dt);
    result(memcmp(got.data(), ref.data(), n * 4) == 0, "%-28s %-48s bit-identical to the CPU", "dropout", ctx);
    CU(mf_cu_dropout(dx, dx, n, key, p, dt, 0)); /* in place */
    result(down_act(dx, n, dt) == got, "%-28s %-48s", "dropout in place", ctx);
    dfree_all();
}

/* ---------------------------------------------------------------- LM loss */

static void test_logp(mf_cu_dtype dt, int N, int V)
{
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s N=%d V=%d", dname(dt), N, V);
    size_t n = (size_t)N * V;
    std::vector<float> lg = randu(n, 4);
    round_to(lg, dt);
    std::vector<int32_t> tg(N);
    for (int i = 0; i < N; i++) tg[i] = i % 4 == 3 ? -100 : randint(V);
    std::vector<float> rl(N), rlse(N);
    mf_k_cpu_logp(rl.data(), NULL, lg.data(), tg.data(), N, V);
    for (int i = 0; i < N; i++) { /* logsumexp in double */
        const float *r = &lg[(size_t)i * V];
        double mx = r[0], s = 0;
        for (int j = 1; j < V; j++) mx = fmax(mx, r[j]);
        for (int j = 0; j < V; j++) s += exp(r[j] - mx);
        rlse[i] = (float)(mx + log(s));
    }
    void *dl = up_act(lg, dt);
    int32_t *dtg = up_i32(tg);
    float *dlp = (float *)dalloc(N * 4), *dlse = (float *)dalloc(N * 4), *dlp2 = (float *)dalloc(N * 4);
    CU(mf_cu_logp(dlp, dlse, dl, dtg, N, V, dt, 0));
    CU(mf_cu_logp(dlp2, dlse, dl, dtg, N, V, dt, 0));
    std::vector<float> glp = down_f32(dlp, N);
    expect_close("logp", ctx, glp.data(), rl.data(), N, 1e-4); /* fp32 math on dt inputs */
    expect_close("logp lse", ctx, down_f32(dlse, N).data(), rlse.data(), N, 1e-5);
    expect_same_bits("logp", ctx, glp.data(), down_f32(dlp2, N).data(), N * 4);

    std::vector<float> g = randu(N, 1);
    g[1] = 0.0f;
    std::vector<float> rg = lg;
    mf_k_cpu_logp_bwd(rg.data(), NULL, g.data(), tg.data(), N, V);
    float *dg = up_f32(g);
    CU(mf_cu_logp_bwd(dl, dg, dtg, dlse, N, V, dt, 0));
    expect_close("logp_bwd", ctx, down_act(dl, n, dt).data(), rg.data(), n, tol_for(dt, 1e-4));
    dfree_all();
}

/* ---------------------------------------------------------------- attention */

enum mask_kind { MASK_NONE, MASK_RIGHT, MASK_LEFT, MASK_HOLES };
static const char *mask_name[] = {"none", "right-pad", "left-pad", "left+holes"};

struct att_shape {
    int B, T, P, nh, nkv, hd;
    mask_kind mk;
};

/* lse in double: log sum exp(scale q.k) over visible keys, -inf if none. */
static void ref_lse(float *lse, const float *q, const float *kf, const int32_t *mask, const att_shape &s)
{
    int S = s.P + s.T, qd = s.nh * s.hd, kd = s.nkv * s.hd, grp = s.nh / s.nkv;
    double scale = 1.0 / sqrt((double)s.hd);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.nh; h++)
            for (int t = 0; t < s.T; t++) {
                std::vector<double> sc;
                for (int k = 0; k < S; k++) {
                    bool vis = k < s.P || (k - s.P <= t && (!mask || mask[(size_t)b * s.T + k - s.P]));
                    if (!vis) continue;
                    double d = 0;
                    for (int i = 0; i < s.hd; i++)
                        d += (double)q[((size_t)b * s.T + t) * qd + (size_t)h * s.hd + i] *
                             kf[((size_t)b * S + k) * kd + (size_t)(h / grp) * s.hd + i];
                    sc.push_back(d * scale);
                }
                double mx = -INFINITY, sum = 0;
                for (double v : sc) mx = fmax(mx, v);
                for (double v : sc) sum += exp(v - mx);
                lse[((size_t)b * s.nh + h) * s.T + t] = sc.empty() ? -INFINITY : (float)(mx + log(sum));
            }
}

static void test_attention(mf_cu_dtype dt, att_shape s)
{
    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s B%d T%d P%d nh%d nkv%d hd%d %s", dname(dt), s.B, s.T, s.P, s.nh, s.nkv, s.hd,
             mask_name[s.mk]);
    int S = s.P + s.T;
    size_t nq = (size_t)s.B * s.T * s.nh * s.hd, nk = (size_t)s.B * S * s.nkv * s.hd, nl = (size_t)s.B * s.nh * s.T;
    std::vector<float> q = randu(nq, 1.5f), kf = randu(nk, 1.5f), vf = randu(nk, 1), dout = randu(nq, 1);
    round_to(q, dt), round_to(kf, dt), round_to(vf, dt), round_to(dout, dt);
    std::vector<int32_t> mask((size_t)s.B * s.T, 1);
    for (int b = 0; b < s.B; b++) {
        int pad = b == 0 ? 0 : 1 + randint(s.T / 2 + 1); /* row 0 unpadded */
        if (pad > s.T) pad = s.T;
        for (int t = 0; t < s.T; t++) {
            int32_t &m = mask[(size_t)b * s.T + t];
            if (s.mk == MASK_RIGHT) m = t < s.T - pad;
            if (s.mk == MASK_LEFT || s.mk == MASK_HOLES) m = t >= pad;
            if (s.mk == MASK_HOLES && t >= pad && randint(5) == 0) m = 0;
        }
    }
    const int32_t *hmask = s.mk == MASK_NONE ? NULL : mask.data();

    /* CPU reference */
    std::vector<float> rout(nq), att((size_t)s.B * s.nh * s.T * S), rlse(nl);
    mf_k_cpu_attention(rout.data(), att.data(), q.data(), kf.data(), vf.data(), hmask, NULL, s.B, s.T, s.P, s.nh, s.nkv,
                       s.hd);
    ref_lse(rlse.data(), q.data(), kf.data(), hmask, s);
    std::vector<float> rdq(nq), rdk(nk), rdv(nk), ws((size_t)s.T * S);
    mf_k_cpu_attention_bwd(rdq.data(), rdk.data(), rdv.data(), ws.data(), 1, dout.data(), att.data(), q.data(),
                           kf.data(), vf.data(), s.B, s.T, s.P, s.nh, s.nkv, s.hd);

    /* GPU */
    size_t es = mf_cu_dtype_size(dt);
    void *dq = up_act(q, dt), *dk = up_act(kf, dt), *dv = up_act(vf, dt), *ddo = up_act(dout, dt);
    int32_t *dm = hmask ? up_i32(mask) : NULL;
    void *out = dalloc(nq * es), *out2 = dalloc(nq * es);
    float *lse = (float *)dalloc(nl * 4), *lse2 = (float *)dalloc(nl * 4);
    CU(mf_cu_attention(out, lse, dq, dk, dv, dm, s.B, s.T, s.P, s.nh, s.nkv, s.hd, dt, 0));
    CU(mf_cu_attention(out2, lse2, dq, dk, dv, dm, s.B, s.T, s.P, s.nh, s.nkv, s.hd, dt, 0));
    std::vector<float> gout = down_act(out, nq, dt), glse = down_f32(lse, nl);
    expect_close("attention out", ctx, gout.data(), rout.data(), nq, tol_for(dt, 1e-4));
    /* lse: -inf exactly where the reference is, close elsewhere */
    int inf_ok = 1;
    std::vector<float> a, r;
    for (size_t i = 0; i < nl; i++) {
        if (isinf(rlse[i]) || isinf(glse[i])) inf_ok &= rlse[i] == glse[i];
        else a.push_back(glse[i]), r.push_back(rlse[i]);
    }
    result(inf_ok, "%-28s %-48s -inf where no key is visible", "attention lse", ctx);
    expect_close("attention lse", ctx, a.data(), r.data(), a.size(), tol_for(dt, 1e-5));
    expect_same_bits("attention out", ctx, down_bytes(out, nq * es).data(), down_bytes(out2, nq * es).data(), nq * es);

    size_t scr_bytes = mf_cu_attention_bwd_scratch(s.B, s.T, s.P, s.nh, s.nkv, s.hd, 1);
    void *scr = dalloc(scr_bytes);
    void *gq = dalloc(nq * es), *gk = dalloc(nk * es), *gv = dalloc(nk * es);
    void *gq2 = dalloc(nq * es), *gk2 = dalloc(nk * es), *gv2 = dalloc(nk * es);
    CU(cudaMemset(gk, 0xff, nk * es)); /* NaN garbage: the backward must overwrite everything */
    CU(mf_cu_attention_bwd(gq, gk, gv, ddo, out, lse, dq, dk, dv, dm, s.B, s.T, s.P, s.nh, s.nkv, s.hd, dt, 1, scr, 0));
    CU(mf_cu_attention_bwd(gq2, gk2, gv2, ddo, out, lse, dq, dk, dv, dm, s.B, s.T, s.P, s.nh, s.nkv, s.hd, dt, 0, scr,
                           0));
    double tb = tol_for(dt, 1e-4);
    expect_close("attention_bwd dq", ctx, down_act(gq, nq, dt).data(), rdq.data(), nq, tb);
    expect_close("attention_bwd dk", ctx, down_act(gk, nk, dt).data(), rdk.data(), nk, tb);
    expect_close("attention_bwd dv", ctx, down_act(gv, nk, dt).data(), rdv.data(), nk, tb);
    int same = down_bytes(gq, nq * es) == down_bytes(gq2, nq * es) && down_bytes(gk, nk * es) == down_bytes(gk2, nk * es) &&
               down_bytes(gv, nk * es) == down_bytes(gv2, nk * es);
    result(same, "%-28s %-48s bitwise rerun", "attention_bwd", ctx);
    dfree_all();
}

/* ---------------------------------------------------------------- optimizer */

static void test_adamw(mf_cu_dtype shadow_dt, int with_shadow)
{
    char ctx[96];
    snprintf(ctx, sizeof ctx, "shadow %s", with_shadow ? dname(shadow_dt) : "none");
    const int NT = 20; /* more than one launch batch */
    const float lr = 3e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, clip = 0.7f;
    const long step = 3;
    std::vector<mf_cu_tensor> list(NT);
    std::vector<std::vector<float>> rp(NT), rm(NT), rv(NT);
    std::vector<void *> shadows(NT);
    double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int k = 0; k < NT; k++) {
        size_t n = k % 3 == 0 ? 4099 : k % 3 == 1 ? 37 : 1000;
        if (k == 5) n = 0; /* an empty tensor */
        std::vector<float> p = randu(n, 1), g = randu(n, 0.1f), m = randu(n, 0.01f), v = randu(n, 1e-3f);
        for (float &x : v) x = fabsf(x);
        mf_cu_tensor &t = list[k];
        t.param = up_f32(p), t.grad = up_f32(g), t.m = up_f32(m), t.v = up_f32(v), t.n = n, t.decay = k % 2;
        t.shadow = with_shadow ? dalloc(n * mf_cu_dtype_size(shadow_dt)) : NULL;
        shadows[k] = t.shadow;
        /* kernels/optim.c, the per-element loop */
        float keep = (float)(1.0 - (double)lr * (t.decay ? wd : 0.0));
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] * clip;
            p[i] *= keep;
            m[i] += (1.0f - b1) * (gi - m[i]);
            v[i] = v[i] * b2 + (1.0f - b2) * gi * gi;
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            p[i] -= step_size * (m[i] / denom);
        }
        rp[k] = p, rm[k] = m, rv[k] = v;
    }
    CU(mf_cu_adamw(list.data(), NT, lr, b1, b2, eps, wd, step, clip, shadow_dt, 0));
    double ep = 0, em = 0, ev = 0, es = 0;
    for (int k = 0; k < NT; k++) {
        size_t n = list[k].n;
        if (!n) continue;
        std::vector<float> gp = down_f32(list[k].param, n);
        ep = fmax(ep, rel_err(gp.data(), rp[k].data(), n));
        em = fmax(em, rel_err(down_f32(list[k].m, n).data(), rm[k].data(), n));
        ev = fmax(ev, rel_err(down_f32(list[k].v, n).data(), rv[k].data(), n));
        if (with_shadow) {
            std::vector<float> want = gp;
            round_to(want, shadow_dt);
            es = fmax(es, rel_err(down_act(shadows[k], n, shadow_dt).data(), want.data(), n));
        }
    }
    /* same fp32 formula; only FMA contraction differs */
    result(ep <= 1e-6, "%-28s %-48s param err %.2e (tol 1e-6)", "adamw", ctx, ep);
    result(em <= 1e-6 && ev <= 1e-6, "%-28s %-48s m err %.2e v err %.2e (tol 1e-6)", "adamw", ctx, em, ev);
    if (with_shadow) result(es == 0, "%-28s %-48s shadow = param in %s", "adamw", ctx, dname(shadow_dt));

    /* gradient squared norm over the same tensors (the grads are untouched) */
    double ss = 0;
    for (int k = 0; k < NT; k++) {
        std::vector<float> g = down_f32(list[k].grad, list[k].n);
        for (float x : g) ss += (double)x * x;
    }
    float *out = (float *)dalloc(4), *scr = (float *)dalloc(mf_cu_sqnorm_scratch(NT) * 4);
    CU(mf_cu_grad_sqnorm(out, list.data(), NT, scr, 0));
    float g1 = down_f32(out, 1)[0];
    CU(mf_cu_grad_sqnorm(out, list.data(), NT, scr, 0));
    float g2 = down_f32(out, 1)[0], want = (float)ss;
    expect_close("grad_sqnorm", ctx, &g1, &want, 1, 1e-5);
    expect_same_bits("grad_sqnorm", ctx, &g1, &g2, 4);
    dfree_all();
}

/* ---------------------------------------------------------------- argument checks */

static void test_rejects_bad_arguments(void)
{
    float *d = (float *)dalloc(1024);
    cudaError_t e1 = mf_cu_attention(d, d, d, d, d, NULL, 1, 4, 0, 4, 3, 64, MF_CU_F32, 0); /* nh % nkv */
    cudaError_t e2 = mf_cu_attention(d, d, d, d, d, NULL, 1, 4, 0, 4, 4, 48, MF_CU_F32, 0); /* hd 48 */
    cudaError_t e3 = mf_cu_add(d, d, 4, (mf_cu_dtype)7, 0);
    result(e1 == cudaErrorInvalidValue && e2 == cudaErrorInvalidValue && e3 == cudaErrorInvalidValue,
           "%-28s %-48s", "argument checks", "bad nkv, unsupported hd, unknown dtype");
    (void)cudaGetLastError();
    dfree_all();
}

int main(void)
{
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("no CUDA device: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 77;
    }
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    mf_k_rng_seed(&g_rng, 20250101);

    test_convert();
    test_scale();
    test_rejects_bad_arguments();
    const mf_cu_dtype dts[2] = {MF_CU_F32, MF_CU_BF16};
    for (mf_cu_dtype dt : dts) {
        test_elementwise(dt);
        test_embed_bwd(dt);
        test_rmsnorm(dt, 37, 64);
        test_rmsnorm(dt, 5, 1000);
        test_rmsnorm(dt, 130, 4096);
        test_rope(dt, 64);
        test_rope(dt, 128);
        test_kv(dt, 0);
        test_kv(dt, 4);
        test_dropout(dt, 0.0f);
        test_dropout(dt, 0.1f);
        test_dropout(dt, 0.5f);
        test_logp(dt, 9, 1000);
        test_logp(dt, 6, 32003); /* odd V: the scalar path */
        test_logp(dt, 4, 4096);
        const att_shape shapes[] = {
            {2, 37, 0, 4, 4, 64, MASK_NONE},  {2, 70, 5, 4, 2, 32, MASK_RIGHT}, {3, 65, 0, 6, 2, 128, MASK_LEFT},
            {2, 130, 17, 2, 1, 80, MASK_HOLES}, {2, 33, 3, 3, 3, 96, MASK_LEFT},  {1, 1, 0, 2, 1, 64, MASK_NONE},
            {1, 64, 64, 2, 2, 128, MASK_NONE}, {2, 9, 2, 4, 2, 16, MASK_LEFT},   {2, 5, 0, 2, 1, 8, MASK_LEFT},
            {2, 200, 0, 4, 1, 64, MASK_HOLES},
        };
        for (const att_shape &s : shapes) test_attention(dt, s);
    }
    test_adamw(MF_CU_F32, 0);
    test_adamw(MF_CU_F32, 1);
    test_adamw(MF_CU_BF16, 1);

    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
