/*
 * tests/cuda/test_cuda_model.c — the CUDA backend (kernels/cuda/cuda_*.cu)
 * against the committed conformance fixtures (tests/kernels/fixtures, the
 * HF transformers / PEFT references the CPU backend is tested with) and
 * against the CPU backend itself: forward, gradients, training steps with
 * AdamW (full, LoRA with dropout, P-Tuning v2, freeze, score head), KV-cache
 * generation, deterministic reruns, device optimizer state save/load.
 *
 * A GPU program (make CUDA=1 cuda-test): exits 77 when no CUDA device is
 * usable, otherwise prints one line per test and "N passed, N failed".
 * `test_cuda_model SUBSTRING` runs the tests whose name contains it.
 *
 * Tolerances
 *  fp32 mode (fp32 GEMMs, no TF32): the same as the CPU's conformance test —
 *    logits / loss / rewards 1e-4 relative to the tensor's largest magnitude,
 *    gradients 1e-3 (see tests/kernels/test_conformance.c for the derivation:
 *    only summation order differs from the reference). CPU vs CUDA logits:
 *    1e-4 of the largest logit.
 *  bf16 mode: weights and activations are rounded to 8 significant bits
 *    (relative 2^-9 = 2e-3 per rounding). A 2-layer model chains ~10
 *    roundings per value with partial cancellation, so logits land within
 *    ~1e-2 of max|logit|: we allow 3e-2. The loss (~log V = 4.2) is an
 *    average, 1e-2 relative. Gradients: backward chains are twice as long and
 *    subtract nearly equal terms, so whole tensors are compared by norm,
 *    ||g - ref|| <= 0.1 ||ref||. A wrong formula is off by O(1) in all three.
 *  Training parity (CPU fp32 vs CUDA): 4 AdamW steps at lr 5e-3. AdamW
 *    normalises each gradient, so a gradient that differs by rounding moves
 *    its weight by lr * (relative difference): losses stay within 1e-3
 *    relative in fp32 and 3e-2 in bf16; in fp32 the total weight update
 *    (w - w0) agrees to 2e-2 of its norm.
 *  Deterministic mode: bit-identical (memcmp) across reruns.
 */
#include "kernels/backend.h"
#include "tests/harness.h"
#include "tests/kernels/fixture.c" /* the fixture reader, compiled into this program */

#include <cuda_runtime_api.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- mini runner */

enum { MAX_TESTS = 64 };
static struct {
    const char *name;
    mf_test_fn fn;
} g_tests[MAX_TESTS];
static int g_n_tests, g_failed_now;
static jmp_buf g_abort;

void mf_test_register(const char *name, const char *file, mf_test_fn fn)
{
    (void)file;
    if (g_n_tests < MAX_TESTS) {
        g_tests[g_n_tests].name = name;
        g_tests[g_n_tests].fn = fn;
        g_n_tests++;
    }
}

void mf_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("    %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_failed_now = 1;
}

void mf_test_abort(void)
{
    longjmp(g_abort, 1);
}

const char *mf_test_root(void)
{
    static char root[1024];
    const char *env = getenv("MEDFLOW_ROOT");
    if (env) return env;
    if (!getcwd(root, sizeof(root) - 64)) return ".";
    for (;;) { /* walk up to the directory that has the fixtures */
        char probe[1100];
        snprintf(probe, sizeof(probe), "%s/tests/kernels/fixtures", root);
        if (access(probe, F_OK) == 0) return root;
        char *slash = strrchr(root, '/');
        if (!slash || slash == root) return ".";
        *slash = 0;
    }
}

const char *mf_test_tmpdir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/mf-cuda-test-XXXXXX");
        if (!mkdtemp(dir)) snprintf(dir, sizeof(dir), "/tmp");
    }
    return dir;
}

int main(int argc, char **argv)
{
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("no CUDA device: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 77;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < g_n_tests; i++) {
        if (argc > 1 && !strstr(g_tests[i].name, argv[1])) continue;
        g_failed_now = 0;
        if (!setjmp(g_abort)) g_tests[i].fn();
        else g_failed_now = 1;
        printf("%s %s\n", g_failed_now ? "FAIL" : "ok  ", g_tests[i].name);
        fflush(stdout);
        if (g_failed_now) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* ---------------------------------------------------------------- helpers */

static const mf_k_backend *cuda(void)
{
    return mf_k_backend_cuda();
}

/* A model of fixture f on backend be (precision for CUDA), weights copied in. */
static mf_model *model_on(fx_file *f, const mf_k_backend *be, const char *precision)
{
    mf_model_config c;
    fx_config(f, &c);
    mf_model *m;
    mf_err err;
    int rc = mf_model_new_on(&m, &c, be, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "mf_model_new_on(%s): %s", be->name, err.msg);
    REQUIRE(rc == 0);
    if (be == cuda()) {
        rc = mf_k_cuda_set_precision(m, precision, &err);
        if (rc) mf_test_fail(__FILE__, __LINE__, "set_precision: %s", err.msg);
        REQUIRE(rc == 0);
    }
    CHECK_INT(fx_copy_params(f, m), (int)mf_model_num_params(m));
    return m;
}

typedef struct tol {
    double fwd;   /* logits: max abs diff / max |ref| */
    double loss;  /* relative */
    double grad;  /* per tensor */
    int grad_norm; /* 1: ||g-ref||/||ref||, 0: max abs / max |ref| */
} tol;

static const tol TOL_FP32 = {1e-4, 1e-4, 1e-3, 0};
static const tol TOL_BF16 = {3e-2, 1e-2, 1e-1, 1};

static mf_k_batch batch_of(fx_file *f)
{
    fx_tensor *ids = fx_get(f, "input_ids");
    REQUIRE(ids && ids->ndim == 2);
    mf_k_batch b = {.B = (int)ids->shape[0], .T = (int)ids->shape[1], .input_ids = ids->data,
                    .attention_mask = fx_i32(f, "attention_mask"), .labels = fx_i32(f, "labels")};
    return b;
}

/* max |a-b| over real positions / max |ref| */
static double logits_diff(const mf_k_batch *b, const float *got, const float *ref, int V)
{
    double md = 0, mx = 0;
    for (int n = 0; n < b->B * b->T; n++) {
        if (b->attention_mask && !b->attention_mask[n]) continue;
        for (int v = 0; v < V; v++) {
            size_t i = (size_t)n * V + v;
            double d = fabs((double)got[i] - ref[i]);
            md = d > md || d != d ? d : md;
            mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
        }
    }
    return mx > 0 ? md / mx : md;
}

static void check_logits_loss(fx_file *exp, const mf_k_batch *b, const mf_k_outputs *o, const tol *t)
{
    REQUIRE(o->logits);
    double d = logits_diff(b, o->logits, fx_f32(exp, "expected.logits"), o->V);
    if (!(d <= t->fwd)) mf_test_fail(__FILE__, __LINE__, "logits: max diff %.3g of max |logit| (tol %.1g)", d, t->fwd);
    CHECK_NEAR(o->loss, fx_f32(exp, "expected.loss")[0], t->loss, 0);
}

/* Every "grad.NAME" tensor of exp against the model's (fetched) gradient. */
static int check_grads(fx_file *exp, mf_model *m, const tol *t)
{
    mf_err err;
    REQUIRE(mf_model_fetch(m, &err) == 0);
    int n = 0;
    for (size_t i = 0; i < exp->n; i++) {
        if (strncmp(exp->t[i].name, "grad.", 5)) continue;
        const char *name = exp->t[i].name + 5;
        mf_k_param *p = mf_model_find_param(m, name);
        if (!p || !p->grad) mf_test_fail(__FILE__, __LINE__, "%s: no such param or no gradient", name);
        REQUIRE(p && p->grad && p->numel == exp->t[i].numel);
        double rel = t->grad_norm ? fx_norm_rel(p->grad, exp->t[i].data, p->numel)
                                  : fx_max_rel(p->grad, exp->t[i].data, p->numel);
        if (!(rel <= t->grad)) mf_test_fail(__FILE__, __LINE__, "grad %s: rel diff %.3g (tol %.1g)", name, rel, t->grad);
        n++;
    }
    return n;
}

static void lm_forward_backward(mf_model *m, const mf_k_batch *b, mf_k_outputs *o)
{
    mf_err err;
    int rc = mf_model_forward(m, b, MF_FWD_LOGITS | MF_FWD_TRAIN, o, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "forward: %s", err.msg);
    REQUIRE(rc == 0);
    size_t n = (size_t)b->B * b->T;
    float *dlogp = malloc(n * sizeof(float));
    REQUIRE(dlogp);
    for (size_t i = 0; i < n; i++) dlogp[i] = -o->valid[i] / (float)o->n_valid;
    mf_model_zero_grad(m);
    rc = mf_model_backward(m, dlogp, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "backward: %s", err.msg);
    REQUIRE(rc == 0);
    free(dlogp);
}

/* ---------------------------------------------------------------- conformance */

static void full_model_case(const char *file, const char *prec, const tol *t, int recompute)
{
    fx_file *f = fx_load(file);
    mf_model *m = model_on(f, cuda(), prec);
    mf_model_set_all_trainable(m, 1);
    mf_model_set_recompute(m, recompute);
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(f, &b, &o, t);
    lm_forward_backward(m, &b, &o);
    CHECK_INT(check_grads(f, m, t), (int)mf_model_num_params(m));
    mf_model_free(m);
    fx_free(f);
}

TEST(test_cuda_fp32_llama_gqa_matches_transformers_logits_loss_and_all_grads)
{
    full_model_case("llama_gqa.safetensors", "fp32", &TOL_FP32, 0);
}

TEST(test_cuda_fp32_qwen2_tied_bias_left_pad_matches_transformers)
{
    full_model_case("qwen2_tied.safetensors", "fp32", &TOL_FP32, 0);
}

TEST(test_cuda_fp32_recompute_gives_the_same_gradients)
{
    full_model_case("llama_gqa.safetensors", "fp32", &TOL_FP32, 1);
}

TEST(test_cuda_bf16_llama_gqa_within_bf16_tolerances)
{
    full_model_case("llama_gqa.safetensors", "bf16", &TOL_BF16, 0);
}

TEST(test_cuda_bf16_qwen2_tied_within_bf16_tolerances)
{
    full_model_case("qwen2_tied.safetensors", "bf16", &TOL_BF16, 1);
}

static void lora_case(const char *prec, const tol *t)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *lf = fx_load("llama_lora.safetensors");
    mf_model *m = model_on(f, cuda(), prec);
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0, .seed = 1};
    mf_err err;
    REQUIRE(mf_k_modules_parse(&lc.target, "q_proj,v_proj,down_proj", &err) == 0);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    CHECK_INT(fx_copy_params(lf, m), 2 * 3 * 2);
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(lf, &b, &o, t);
    lm_forward_backward(m, &b, &o);
    CHECK_INT(check_grads(lf, m, t), 12);
    /* merge on the host (after the fetch model.c does first), re-synced */
    REQUIRE(mf_model_merge_lora(m, &err) == 0);
    mf_k_param *q0 = mf_model_find_param(m, "model.layers.0.self_attn.q_proj.weight");
    CHECK(fx_max_rel(q0->data, fx_f32(lf, "expected.merged_q0"), q0->numel) <= 1e-6);
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(lf, &b, &o, t);
    mf_model_free(m);
    fx_free(lf);
    fx_free(f);
}

TEST(test_cuda_fp32_lora_matches_peft_and_merge_keeps_logits)
{
    lora_case("fp32", &TOL_FP32);
}

TEST(test_cuda_bf16_lora_within_bf16_tolerances)
{
    lora_case("bf16", &TOL_BF16);
}

static void prefix_case(const char *file, int proj, const char *prec, const tol *t)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *pf = fx_load(file);
    mf_model *m = model_on(f, cuda(), prec);
    mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = proj, .prefix_hidden_size = 20, .seed = 2};
    mf_err err;
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    CHECK_INT(fx_copy_params(pf, m), proj ? 5 : 1);
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(pf, &b, &o, t);
    lm_forward_backward(m, &b, &o);
    CHECK_INT(check_grads(pf, m, t), proj ? 5 : 1);
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

TEST(test_cuda_fp32_prefix_tuning_matches_hf_past_key_values)
{
    prefix_case("llama_prefix0.safetensors", 0, "fp32", &TOL_FP32);
}

TEST(test_cuda_fp32_prefix_tuning_with_reparameterisation_mlp_matches_reference)
{
    prefix_case("llama_prefix1.safetensors", 1, "fp32", &TOL_FP32);
}

TEST(test_cuda_bf16_prefix_tuning_with_mlp_within_bf16_tolerances)
{
    prefix_case("llama_prefix1.safetensors", 1, "bf16", &TOL_BF16);
}

static void reward_case(const char *prec, const tol *t)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *rf = fx_load("llama_reward.safetensors");
    mf_model *m = model_on(f, cuda(), prec);
    mf_err err;
    REQUIRE(mf_model_add_score_head(m, 1, &err) == 0);
    CHECK_INT(fx_copy_params(rf, m), 1);
    mf_model_set_all_trainable(m, 1);
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_VALUES | MF_FWD_TRAIN, &o, &err) == 0);
    const float *er = fx_f32(rf, "expected.reward"), *ev = fx_f32(rf, "expected.values");
    double mx = 0;
    for (int i = 0; i < b.B * b.T; i++) mx = fabs(ev[i]) > mx ? fabs(ev[i]) : mx;
    for (int bi = 0; bi < b.B; bi++) CHECK_NEAR(o.reward[bi], er[bi], 0, t->fwd * mx);
    CHECK_INT(o.last[1], b.T - 4); /* row 1 has 3 right pads */
    for (int i = 0; i < b.B * b.T; i++)
        if (b.attention_mask[i]) CHECK_NEAR(o.values[i], ev[i], 0, t->fwd * mx);
    const float *coef = fx_f32(rf, "reward.coef");
    float *dv = calloc((size_t)b.B * b.T, sizeof(float));
    REQUIRE(dv);
    for (int bi = 0; bi < b.B; bi++) dv[bi * b.T + o.last[bi]] = coef[bi];
    mf_model_zero_grad(m);
    REQUIRE(mf_model_backward(m, NULL, dv, &err) == 0);
    CHECK(check_grads(rf, m, t) >= 10);
    free(dv);
    mf_model_free(m);
    fx_free(rf);
    fx_free(f);
}

TEST(test_cuda_fp32_reward_head_matches_sequence_classification)
{
    reward_case("fp32", &TOL_FP32);
}

TEST(test_cuda_bf16_reward_head_within_bf16_tolerances)
{
    reward_case("bf16", &TOL_BF16);
}

TEST(test_cuda_fp32_logits_match_the_cpu_backend)
{
    const char *files[2] = {"llama_gqa.safetensors", "qwen2_tied.safetensors"};
    for (int k = 0; k < 2; k++) {
        fx_file *f = fx_load(files[k]);
        mf_model *mc = model_on(f, mf_k_backend_cpu(), NULL), *mg = model_on(f, cuda(), "fp32");
        mf_k_batch b = batch_of(f);
        mf_k_outputs oc, og;
        mf_err err;
        REQUIRE(mf_model_forward(mc, &b, MF_FWD_LOGITS, &oc, &err) == 0);
        REQUIRE(mf_model_forward(mg, &b, MF_FWD_LOGITS, &og, &err) == 0);
        double d = logits_diff(&b, og.logits, oc.logits, oc.V);
        if (!(d <= 1e-4)) mf_test_fail(__FILE__, __LINE__, "%s: CPU vs CUDA logits differ by %.3g", files[k], d);
        CHECK_INT(og.n_valid, oc.n_valid);
        for (int i = 0; i < b.B * b.T; i++) CHECK_NEAR(og.logp[i], oc.logp[i], 1e-4, 1e-5);
        mf_model_free(mc);
        mf_model_free(mg);
        fx_free(f);
    }
}

/* Gradients accumulate (+=) over backward calls until zero_grad, on the
 * device as on the CPU; frozen params have no device gradient at all. */
TEST(test_cuda_fp32_grads_accumulate_over_backwards_and_frozen_params_have_none)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_model *m = model_on(f, cuda(), "fp32");
    mf_k_freeze_config fc = {.trainable_layers = 1, .modules = MF_MOD_MLP | MF_MOD_NORMS};
    mf_err err;
    REQUIRE(mf_model_freeze(m, &fc, &err) == 0);
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    lm_forward_backward(m, &b, &o); /* zero_grad, one backward */
    REQUIRE(mf_model_fetch(m, &err) == 0);
    size_t np = mf_model_num_params(m);
    float **g1 = calloc(np, sizeof(float *));
    REQUIRE(g1);
    int n_tr = 0;
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        float *dg = cuda()->device_grad(m, i);
        if (!p->trainable) {
            CHECK(dg == NULL);
            continue;
        }
        CHECK(dg != NULL);
        n_tr++;
        g1[i] = malloc(p->numel * 4);
        REQUIRE(g1[i]);
        memcpy(g1[i], p->grad, p->numel * 4);
    }
    CHECK(n_tr > 0);
    /* a second forward/backward without zero_grad: every gradient doubles */
    size_t n = (size_t)b.B * b.T;
    float *dlogp = malloc(n * sizeof(float));
    REQUIRE(dlogp);
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err) == 0);
    for (size_t i = 0; i < n; i++) dlogp[i] = -o.valid[i] / (float)o.n_valid;
    REQUIRE(mf_model_backward(m, dlogp, NULL, &err) == 0);
    REQUIRE(mf_model_fetch(m, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!g1[i]) continue;
        double md = 0, mx = 0;
        for (size_t k = 0; k < p->numel; k++) {
            double d = fabs((double)p->grad[k] - 2.0 * g1[i][k]);
            md = d > md || d != d ? d : md;
            mx = fabs(2.0 * g1[i][k]) > mx ? fabs(2.0 * g1[i][k]) : mx;
        }
        if (!(md <= 1e-5 * mx + 1e-12))
            mf_test_fail(__FILE__, __LINE__, "%s: second backward did not accumulate (max diff %.3g of %.3g)", p->name,
                         md, mx);
        free(g1[i]);
    }
    /* zero_grad clears the device side too */
    mf_model_zero_grad(m);
    REQUIRE(mf_model_fetch(m, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!p->trainable) continue;
        for (size_t k = 0; k < p->numel; k++)
            if (p->grad[k] != 0.0f) {
                mf_test_fail(__FILE__, __LINE__, "%s: gradient not cleared by zero_grad", p->name);
                break;
            }
    }
    free(dlogp);
    free(g1);
    mf_model_free(m);
    fx_free(f);
}

/* ---------------------------------------------------------------- training parity */

typedef enum { MODE_FULL, MODE_LORA, MODE_PREFIX, MODE_FREEZE, MODE_SCORE } train_mode;

static void setup_mode(mf_model *m, train_mode mode)
{
    mf_err err;
    switch (mode) {
    case MODE_FULL:
        mf_model_set_all_trainable(m, 1);
        break;
    case MODE_LORA: {
        mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 5};
        REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
        break;
    }
    case MODE_PREFIX: {
        mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = 1, .prefix_hidden_size = 20, .seed = 2};
        REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
        break;
    }
    case MODE_FREEZE: {
        mf_k_freeze_config fc = {.trainable_layers = 1, .modules = MF_MOD_MLP | MF_MOD_NORMS};
        REQUIRE(mf_model_freeze(m, &fc, &err) == 0);
        break;
    }
    case MODE_SCORE:
        REQUIRE(mf_model_add_score_head(m, 3, &err) == 0);
        mf_model_set_all_trainable(m, 1);
        break;
    }
}

/* One optimizer step; returns the objective (LM loss, or sum of coef * reward). */
static double train_step(mf_model *m, mf_k_adamw *o, const mf_k_batch *b, train_mode mode)
{
    mf_err err;
    double loss = 0;
    mf_model_zero_grad(m);
    if (mode != MODE_SCORE) {
        int rc = mf_model_lm_step(m, b, 1.0f, &loss, &err);
        if (rc) mf_test_fail(__FILE__, __LINE__, "lm_step: %s", err.msg);
        REQUIRE(rc == 0);
    } else {
        mf_k_outputs out;
        REQUIRE(mf_model_forward(m, b, MF_FWD_VALUES | MF_FWD_TRAIN, &out, &err) == 0);
        float dv[64] = {0};
        REQUIRE(b->B * b->T <= 64);
        for (int bi = 0; bi < b->B; bi++) { /* objective: reward of row 0 up, the others down */
            float coef = bi == 0 ? 1.0f : -0.5f;
            loss += coef * out.reward[bi];
            dv[bi * b->T + out.last[bi]] = coef;
        }
        REQUIRE(mf_model_backward(m, NULL, dv, &err) == 0);
    }
    int rc = mf_k_adamw_step(o, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "adamw step: %s", err.msg);
    REQUIRE(rc == 0);
    return loss;
}

enum { STEPS = 4 };

static void parity_case(train_mode mode, const char *prec, double loss_tol, double update_tol)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_k_batch b = batch_of(f);
    mf_k_adamw_config ac = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                            .max_grad_norm = 1.0f, .sched = MF_SCHED_LINEAR, .warmup_steps = 1, .total_steps = 10};
    mf_model *mc = model_on(f, mf_k_backend_cpu(), NULL), *mg = model_on(f, cuda(), prec);
    setup_mode(mc, mode);
    setup_mode(mg, mode);
    size_t np = mf_model_num_params(mc);
    REQUIRE(np == mf_model_num_params(mg));
    float **w0 = calloc(np, sizeof(float *));
    REQUIRE(w0);
    for (size_t i = 0; i < np; i++) { /* same adapter init on both sides (seeded) */
        mf_k_param *p = mf_model_param(mc, i);
        CHECK(!memcmp(p->data, mf_model_param(mg, i)->data, p->numel * 4));
        w0[i] = malloc(p->numel * 4);
        REQUIRE(w0[i]);
        memcpy(w0[i], p->data, p->numel * 4);
    }
    mf_k_adamw *oc, *og;
    mf_err err;
    REQUIRE(mf_k_adamw_new(&oc, mc, &ac, &err) == 0);
    REQUIRE(mf_k_adamw_new(&og, mg, &ac, &err) == 0);
    for (int s = 0; s < STEPS; s++) {
        double lc = train_step(mc, oc, &b, mode), lg = train_step(mg, og, &b, mode);
        if (!(fabs(lg - lc) <= loss_tol * fabs(lc) + 1e-6))
            mf_test_fail(__FILE__, __LINE__, "step %d: CPU loss %.7g, CUDA %.7g (tol %.1g)", s, lc, lg, loss_tol);
    }
    REQUIRE(mf_model_fetch(mg, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *pc = mf_model_param(mc, i), *pg = mf_model_param(mg, i);
        if (!pc->trainable) { /* frozen: never written, on either side */
            CHECK(!memcmp(pg->data, w0[i], pc->numel * 4));
        } else if (update_tol > 0) {
            double dd = 0, uu = 0;
            for (size_t k = 0; k < pc->numel; k++) {
                double u = (double)pc->data[k] - w0[i][k], d = (double)pg->data[k] - pc->data[k];
                dd += d * d;
                uu += u * u;
            }
            if (!(sqrt(dd) <= update_tol * sqrt(uu) + 1e-7))
                mf_test_fail(__FILE__, __LINE__, "%s: CUDA update differs by %.3g of the CPU update's norm", pc->name,
                             uu > 0 ? sqrt(dd / uu) : sqrt(dd));
        }
        free(w0[i]);
    }
    free(w0);
    mf_k_adamw_free(oc);
    mf_k_adamw_free(og);
    mf_model_free(mc);
    mf_model_free(mg);
    fx_free(f);
}

TEST(test_cuda_fp32_adamw_training_matches_cpu_full)
{
    parity_case(MODE_FULL, "fp32", 1e-3, 2e-2);
}

TEST(test_cuda_fp32_adamw_training_matches_cpu_lora_with_dropout)
{
    parity_case(MODE_LORA, "fp32", 1e-3, 2e-2);
}

TEST(test_cuda_fp32_adamw_training_matches_cpu_prefix)
{
    parity_case(MODE_PREFIX, "fp32", 1e-3, 2e-2);
}

TEST(test_cuda_fp32_adamw_training_matches_cpu_freeze_and_frozen_weights_stay_bit_identical)
{
    parity_case(MODE_FREEZE, "fp32", 1e-3, 2e-2);
}

TEST(test_cuda_fp32_adamw_training_matches_cpu_score_head)
{
    parity_case(MODE_SCORE, "fp32", 1e-3, 2e-2);
}

TEST(test_cuda_bf16_adamw_training_follows_cpu_loss_curve)
{
    parity_case(MODE_FULL, "bf16", 3e-2, 0);
    parity_case(MODE_LORA, "bf16", 3e-2, 0);
    parity_case(MODE_PREFIX, "bf16", 3e-2, 0);
}

/* ---------------------------------------------------------------- generation */

static void greedy_case(const char *file)
{
    fx_file *f = fx_load(file);
    mf_model *m = model_on(f, cuda(), "fp32");
    fx_tensor *p = fx_get(f, "greedy.prompt"), *e = fx_get(f, "greedy.expected");
    REQUIRE(p && e && e->numel <= 16);
    const int32_t *prompt = p->data;
    int plen = (int)p->numel;
    for (int cache = 0; cache <= 1; cache++) {
        mf_k_gen_config c = {.max_new_tokens = (int)e->numel, .temperature = 0, .use_cache = cache};
        int32_t out[16];
        float lp[16];
        int len;
        mf_err err;
        int rc = mf_model_generate(m, 1, &prompt, &plen, &c, out, lp, &len, &err);
        if (rc) mf_test_fail(__FILE__, __LINE__, "generate: %s", err.msg);
        REQUIRE(rc == 0);
        CHECK_INT(len, (int)e->numel);
        for (int k = 0; k < len; k++) CHECK_INT(out[k], ((int32_t *)e->data)[k]);
    }
    mf_model_free(m);
    fx_free(f);
}

TEST(test_cuda_fp32_greedy_generation_matches_hf_generate)
{
    greedy_case("llama_gqa.safetensors");
    greedy_case("qwen2_tied.safetensors");
}

/* Add a prefix (MLP) and LoRA on every linear (non-zero B) to m. */
static void adapt(mf_model *m, fx_file *pf)
{
    mf_err err;
    mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = 1, .prefix_hidden_size = 20};
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    fx_copy_params(pf, m);
    mf_k_lora_config lc = {.rank = 2, .alpha = 4, .dropout = 0.2f, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 3};
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (strstr(p->name, "lora_B"))
            for (size_t k = 0; k < p->numel; k++) p->data[k] = 0.05f * (float)((int)(k * 37 % 11) - 5);
    }
    REQUIRE(mf_model_sync(m, &err) == 0);
}

/* A model with a prefix (MLP) and LoRA on every linear (non-zero B). */
static mf_model *adapted_model(fx_file *f, fx_file *pf, const mf_k_backend *be, const char *prec)
{
    mf_model *m = model_on(f, be, prec);
    adapt(m, pf);
    return m;
}

enum { NEW = 10 };
static const int32_t P0[] = {5, 9, 33, 2}, P1[] = {7}, P2[] = {1, 2, 3, 4, 5, 6, 7};

static void generate3(mf_model *m, float temperature, int cache, int32_t *ids, float *lp, int *len)
{
    const int32_t *prompts[3] = {P0, P1, P2};
    int plen[3] = {4, 1, 7};
    mf_k_gen_config c = {.max_new_tokens = NEW, .temperature = temperature, .top_k = 20, .top_p = 0.9f,
                         .seed = 42, .use_cache = cache, .pad_id = -1};
    mf_err err;
    int rc = mf_model_generate(m, 3, prompts, plen, &c, ids, lp, len, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "generate: %s", err.msg);
    REQUIRE(rc == 0);
}

TEST(test_cuda_fp32_kv_cache_generation_equals_recomputation_with_lora_and_prefix)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *pf = fx_load("llama_prefix1.safetensors");
    mf_model *m = adapted_model(f, pf, cuda(), "fp32");
    for (int k = 0; k < 2; k++) {
        float temp = k ? 1.0f : 0.0f;
        int32_t ids[2][3 * NEW];
        float lp[2][3 * NEW];
        int len[2][3];
        for (int cache = 0; cache <= 1; cache++) generate3(m, temp, cache, ids[cache], lp[cache], len[cache]);
        for (int b = 0; b < 3; b++) {
            CHECK_INT(len[0][b], len[1][b]);
            for (int i = 0; i < NEW; i++) {
                CHECK_INT(ids[0][b * NEW + i], ids[1][b * NEW + i]);
                CHECK_NEAR(lp[0][b * NEW + i], lp[1][b * NEW + i], 1e-4, 1e-5);
            }
        }
    }
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

/* A model that generated before its adapters were added: the KV cache (P more
 * rows per sequence) and the decode workspace (LoRA buffers) must follow. */
TEST(test_cuda_fp32_kv_cache_follows_adapters_added_after_a_first_generation)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *pf = fx_load("llama_prefix1.safetensors");
    mf_model *m = model_on(f, cuda(), "fp32");
    int32_t ids[2][3 * NEW];
    float lp[2][3 * NEW];
    int len[2][3];
    generate3(m, 0.0f, 1, ids[0], lp[0], len[0]); /* cache and workspace sized without prefix / LoRA */
    adapt(m, pf);
    for (int cache = 0; cache <= 1; cache++) generate3(m, 0.0f, cache, ids[cache], lp[cache], len[cache]);
    for (int b = 0; b < 3; b++) {
        CHECK_INT(len[0][b], len[1][b]);
        for (int i = 0; i < NEW; i++) {
            CHECK_INT(ids[0][b * NEW + i], ids[1][b * NEW + i]);
            CHECK_NEAR(lp[0][b * NEW + i], lp[1][b * NEW + i], 1e-4, 1e-5);
        }
    }
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

TEST(test_cuda_fp32_greedy_tokens_equal_the_cpu_backend)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *pf = fx_load("llama_prefix1.safetensors");
    mf_model *mc = adapted_model(f, pf, mf_k_backend_cpu(), NULL), *mg = adapted_model(f, pf, cuda(), "fp32");
    int32_t ic[3 * NEW], ig[3 * NEW];
    float lc[3 * NEW], lg[3 * NEW];
    int nc[3], ng[3];
    generate3(mc, 0.0f, 1, ic, lc, nc);
    generate3(mg, 0.0f, 1, ig, lg, ng);
    for (int i = 0; i < 3 * NEW; i++) {
        CHECK_INT(ig[i], ic[i]);
        CHECK_NEAR(lg[i], lc[i], 1e-4, 1e-5);
    }
    mf_model_free(mc);
    mf_model_free(mg);
    fx_free(pf);
    fx_free(f);
}

TEST(test_cuda_bf16_generation_runs_and_cache_logprobs_follow_recomputation)
{
    fx_file *f = fx_load("qwen2_tied.safetensors");
    mf_model *m = model_on(f, cuda(), "bf16");
    int32_t ids[2][3 * NEW];
    float lp[2][3 * NEW];
    int len[2][3];
    for (int cache = 0; cache <= 1; cache++) generate3(m, 0.0f, cache, ids[cache], lp[cache], len[cache]);
    /* the first token of each row comes from the same prompt: same argmax up to
     * bf16 ties, log-prob within bf16 error of a logit (3e-2 of ~4) */
    for (int b = 0; b < 3; b++) {
        CHECK(ids[1][b * NEW] >= 0 && ids[1][b * NEW] < 61);
        CHECK_NEAR(lp[1][b * NEW], lp[0][b * NEW], 0, 0.15);
    }
    mf_model_free(m);
    fx_free(f);
}

/* ---------------------------------------------------------------- determinism, state */

/* LoRA (dropout) + full fine-tuning of the rest in bf16, deterministic mode:
 * two independent runs agree to the bit. */
static void det_run(fx_file *f, int32_t *loss_bits, float **weights, size_t *numel, size_t *np)
{
    mf_model *m = model_on(f, cuda(), "bf16");
    mf_k_cuda_set_deterministic(m, 1);
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 5};
    mf_err err;
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    REQUIRE(mf_model_set_trainable(m, "model.embed_tokens.weight", 1, &err) == 0);
    mf_k_adamw_config ac = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    mf_k_adamw *o;
    REQUIRE(mf_k_adamw_new(&o, m, &ac, &err) == 0);
    mf_k_batch b = batch_of(f);
    for (int s = 0; s < 3; s++) {
        float l = (float)train_step(m, o, &b, MODE_LORA);
        memcpy(&loss_bits[s], &l, 4);
    }
    REQUIRE(mf_model_fetch(m, &err) == 0);
    *np = mf_model_num_params(m);
    REQUIRE(*np <= 256);
    for (size_t i = 0; i < *np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        numel[i] = p->numel;
        weights[i] = malloc(p->numel * 4);
        REQUIRE(weights[i]);
        memcpy(weights[i], p->data, p->numel * 4);
    }
    mf_k_adamw_free(o);
    mf_model_free(m);
}

TEST(test_cuda_deterministic_mode_reruns_are_bit_identical)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    int32_t l1[3], l2[3];
    float *w1[256], *w2[256];
    size_t s1[256], s2[256], n1, n2;
    det_run(f, l1, w1, s1, &n1);
    det_run(f, l2, w2, s2, &n2);
    CHECK(!memcmp(l1, l2, sizeof l1));
    REQUIRE(n1 == n2);
    for (size_t i = 0; i < n1; i++) {
        REQUIRE(s1[i] == s2[i]);
        if (memcmp(w1[i], w2[i], s1[i] * 4)) mf_test_fail(__FILE__, __LINE__, "param %zu differs between reruns", i);
        free(w1[i]);
        free(w2[i]);
    }
    fx_free(f);
}

/* Device optimizer state: save after 2 steps, continue 2; a fresh model
 * restored from the save (weights, moments, dropout counter) continues to the
 * same bits (deterministic mode). */
TEST(test_cuda_device_optimizer_state_reload_continues_bit_identically)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_k_batch b = batch_of(f);
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 5};
    mf_k_adamw_config ac = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                            .max_grad_norm = 1.0f, .sched = MF_SCHED_LINEAR, .warmup_steps = 1, .total_steps = 10};
    mf_err err;
    mf_model *m = model_on(f, cuda(), "bf16");
    mf_k_cuda_set_deterministic(m, 1);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    mf_k_adamw *o;
    REQUIRE(mf_k_adamw_new(&o, m, &ac, &err) == 0);
    for (int s = 0; s < 2; s++) train_step(m, o, &b, MODE_LORA);
    char path[1024];
    snprintf(path, sizeof path, "%s/adamw.state", mf_test_tmpdir());
    REQUIRE(mf_k_adamw_save(o, path, &err) == 0);
    REQUIRE(mf_model_fetch(m, &err) == 0);
    uint64_t rng = mf_model_rng_state(m);
    size_t np = mf_model_num_params(m);
    float **saved = calloc(np, sizeof(float *));
    REQUIRE(saved);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        saved[i] = malloc(p->numel * 4);
        REQUIRE(saved[i]);
        memcpy(saved[i], p->data, p->numel * 4);
    }
    double loss = 0, loss2 = 0;
    for (int s = 0; s < 2; s++) loss = train_step(m, o, &b, MODE_LORA);

    mf_model *m2 = model_on(f, cuda(), "bf16");
    mf_k_cuda_set_deterministic(m2, 1);
    REQUIRE(mf_model_add_lora(m2, &lc, &err) == 0);
    REQUIRE(mf_model_num_params(m2) == np);
    for (size_t i = 0; i < np; i++) memcpy(mf_model_param(m2, i)->data, saved[i], mf_model_param(m2, i)->numel * 4);
    REQUIRE(mf_model_sync(m2, &err) == 0);
    mf_model_set_rng_state(m2, rng);
    mf_k_adamw *o2;
    REQUIRE(mf_k_adamw_new(&o2, m2, &ac, &err) == 0);
    REQUIRE(mf_k_adamw_load(o2, path, &err) == 0);
    CHECK_INT(mf_k_adamw_steps(o2), 2);
    for (int s = 0; s < 2; s++) loss2 = train_step(m2, o2, &b, MODE_LORA);
    CHECK(loss2 == loss);
    REQUIRE(mf_model_fetch(m, &err) == 0);
    REQUIRE(mf_model_fetch(m2, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i), *q = mf_model_param(m2, i);
        if (memcmp(p->data, q->data, p->numel * 4)) mf_test_fail(__FILE__, __LINE__, "%s differs after resume", p->name);
        free(saved[i]);
    }
    free(saved);
    mf_k_adamw_free(o2);
    mf_k_adamw_free(o);
    mf_model_free(m2);
    mf_model_free(m);
    fx_free(f);
}

/* After device steps, an adapter change (which syncs host -> device) must not
 * roll training back: sync fetches device-trained weights first. */
TEST(test_cuda_sync_after_device_training_keeps_the_trained_weights)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_k_batch b = batch_of(f);
    mf_model *m = model_on(f, cuda(), "fp32");
    mf_model_set_all_trainable(m, 1);
    mf_k_adamw_config ac = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    mf_k_adamw *o;
    mf_err err;
    REQUIRE(mf_k_adamw_new(&o, m, &ac, &err) == 0);
    train_step(m, o, &b, MODE_FULL);
    mf_k_adamw_free(o);
    mf_k_outputs out;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &out, &err) == 0);
    double before = out.loss;
    REQUIRE(mf_model_add_score_head(m, 1, &err) == 0); /* syncs */
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &out, &err) == 0);
    CHECK(out.loss == before);
    CHECK(before != fx_f32(f, "expected.loss")[0]); /* it did train */
    mf_model_free(m);
    fx_free(f);
}

TEST(test_cuda_precision_api_refuses_fp16_and_cpu_models)
{
    fx_file *f = fx_load("qwen2_tied.safetensors");
    mf_model *mg = model_on(f, cuda(), "bf16"), *mc = model_on(f, mf_k_backend_cpu(), NULL);
    mf_err err;
    CHECK_INT(mf_k_cuda_set_precision(mg, "fp16", &err), MF_EUNSUPPORTED);
    CHECK_CONTAINS(err.msg, "bf16");
    CHECK_INT(mf_k_cuda_set_precision(mg, "fp8", &err), MF_EINVAL);
    CHECK_INT(mf_k_cuda_set_precision(mc, "fp32", &err), MF_EINVAL);
    /* switching back and forth keeps the weights (re-uploaded from the host) */
    mf_k_batch b = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_k_cuda_set_precision(mg, "fp32", &err) == 0);
    REQUIRE(mf_model_forward(mg, &b, MF_FWD_LOGITS, &o, &err) == 0);
    CHECK_NEAR(o.loss, fx_f32(f, "expected.loss")[0], 1e-4, 0);
    mf_model_free(mg);
    mf_model_free(mc);
    fx_free(f);
}
