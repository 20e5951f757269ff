/*
 * tests/kernels/test_conformance.c — the CPU backend against HF transformers /
 * PEFT (fixtures from tests/kernels/gen_fixtures.py).
 *
 * Tolerances (both backends are fp32; the only differences are summation order
 * in GEMMs, softmax and reductions, and the fp32 RoPE tables):
 *   logits, loss, rewards: 1e-4 relative to the largest magnitude of the
 *     tensor. One fp32 rounding is ~6e-8; a 2-layer model accumulates ~1e3 such
 *     roundings in its longest dot-product chains, ~1e-5 at worst; 1e-4 leaves
 *     a factor 10 and still catches any wrong formula (those show up at >= 1e-2).
 *   gradients: 1e-3 relative to the tensor's largest magnitude. Backward
 *     chains are twice as long and softmax/RMSNorm backward subtract nearly
 *     equal terms (cancellation), so errors are ~1e-4 at worst here.
 * Logits at padding positions are not compared: HF computes them with a
 * uniform softmax over fully masked rows, we output 0 there; neither feeds any
 * real position or any loss.
 */
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <stdlib.h>
#include <string.h>

#define TOL_FWD 1e-4
#define TOL_GRAD 1e-3

typedef struct run {
    mf_k_batch b;
    int B, T, V;
} run;

static run batch_of(fx_file *f)
{
    run r;
    fx_tensor *ids = fx_get(f, "input_ids");
    REQUIRE(ids && ids->ndim == 2);
    r.B = (int)ids->shape[0];
    r.T = (int)ids->shape[1];
    r.b.B = r.B;
    r.b.T = r.T;
    r.b.input_ids = ids->data;
    r.b.attention_mask = fx_i32(f, "attention_mask");
    r.b.labels = fx_i32(f, "labels");
    return r;
}

/* Logits at real positions, loss, and one gradient check per listed tensor. */
static void check_logits_loss(fx_file *exp, const run *r, const mf_k_outputs *o)
{
    const float *el = fx_f32(exp, "expected.logits");
    double mx = 0, md = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            if (!r->b.attention_mask[b * r->T + t]) continue;
            for (int v = 0; v < o->V; v++) {
                size_t i = ((size_t)b * r->T + t) * o->V + v;
                double d = fabs((double)o->logits[i] - el[i]);
                md = d > md || d != d ? d : md;
                mx = fabs(el[i]) > mx ? fabs(el[i]) : mx;
            }
        }
    CHECK(md <= TOL_FWD * mx);
    if (!(md <= TOL_FWD * mx)) printf("    logits: max abs diff %.3g, max |logit| %.3g\n", md, mx);
    CHECK_NEAR(o->loss, fx_f32(exp, "expected.loss")[0], TOL_FWD, 0);
}

static int check_grads(fx_file *exp, mf_model *m)
{
    int n = 0;
    for (size_t i = 0; i < exp->n; i++) {
        if (strncmp(exp->t[i].name, "grad.", 5)) continue;
        const char *name = exp->t[i].name + 5;
        mf_k_param *p = mf_model_find_param(m, name);
        if (!p) mf_test_fail(__FILE__, __LINE__, "model has no parameter %s", name);
        REQUIRE(p && p->numel == exp->t[i].numel);
        if (!p->grad) mf_test_fail(__FILE__, __LINE__, "%s has no gradient", name);
        REQUIRE(p->grad);
        double rel = fx_max_rel(p->grad, exp->t[i].data, p->numel);
        if (!(rel <= TOL_GRAD)) mf_test_fail(__FILE__, __LINE__, "grad %s: max rel diff %.3g", name, rel);
        n++;
    }
    return n;
}

static void lm_forward_backward(mf_model *m, const run *r, mf_k_outputs *o)
{
    mf_err err;
    int rc = mf_model_forward(m, &r->b, MF_FWD_LOGITS | MF_FWD_TRAIN, o, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "forward: %s", err.msg);
    REQUIRE(rc == 0);
    size_t n = (size_t)r->B * r->T;
    /* keep a copy: backward reuses the logits buffer for dlogits */
    float *dlogp = malloc(n * sizeof(float));
    REQUIRE(dlogp);
    for (size_t i = 0; i < n; i++) dlogp[i] = -o->valid[i] / (float)o->n_valid;
    mf_model_zero_grad(m);
    rc = mf_model_backward(m, dlogp, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "backward: %s", err.msg);
    REQUIRE(rc == 0);
    free(dlogp);
}

static void full_model_case(const char *file, int recompute)
{
    fx_file *f = fx_load(file);
    mf_model *m = fx_model(f);
    mf_model_set_all_trainable(m, 1);
    mf_model_set_recompute(m, recompute);
    run r = batch_of(f);
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(f, &r, &o);
    lm_forward_backward(m, &r, &o);
    CHECK_INT(check_grads(f, m), (int)mf_model_num_params(m));
    mf_model_free(m);
    fx_free(f);
}

TEST(test_kernels_llama_gqa_matches_transformers_logits_loss_and_all_grads)
{
    full_model_case("llama_gqa.safetensors", 0);
}

TEST(test_kernels_qwen2_tied_bias_left_pad_matches_transformers)
{
    full_model_case("qwen2_tied.safetensors", 0);
}

TEST(test_kernels_recompute_gives_the_same_gradients)
{
    full_model_case("llama_gqa.safetensors", 1);
}

TEST(test_kernels_lora_matches_peft_and_merge_keeps_logits)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *lf = fx_load("llama_lora.safetensors");
    mf_model *m = fx_model(f);
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0, .seed = 1};
    mf_err err;
    REQUIRE(mf_k_modules_parse(&lc.target, "q_proj,v_proj,down_proj", &err) == 0);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    CHECK_INT(fx_copy_params(lf, m), 2 * 3 * 2);
    CHECK(mf_model_find_param(m, "model.layers.0.self_attn.q_proj.weight")->grad == NULL);
    run r = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(lf, &r, &o);
    size_t nl = (size_t)r.B * r.T * o.V;
    float *unmerged = malloc(nl * sizeof(float));
    REQUIRE(unmerged);
    memcpy(unmerged, o.logits, nl * sizeof(float));
    lm_forward_backward(m, &r, &o);
    CHECK_INT(check_grads(lf, m), 12);
    REQUIRE(mf_model_merge_lora(m, &err) == 0);
    CHECK(mf_model_find_param(m, "model.layers.0.self_attn.q_proj.lora_A.weight") == NULL);
    mf_k_param *q0 = mf_model_find_param(m, "model.layers.0.self_attn.q_proj.weight");
    CHECK(fx_max_rel(q0->data, fx_f32(lf, "expected.merged_q0"), q0->numel) <= 1e-6);
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    /* merged = unmerged up to fp32 re-association of W x + s B A x */
    CHECK(fx_max_rel(o.logits, unmerged, nl) <= 1e-5);
    free(unmerged);
    mf_model_free(m);
    fx_free(lf);
    fx_free(f);
}

static void prefix_case(const char *file, int proj)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *pf = fx_load(file);
    mf_model *m = fx_model(f);
    mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = proj, .prefix_hidden_size = 20, .seed = 2};
    mf_err err;
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    CHECK_INT(fx_copy_params(pf, m), proj ? 5 : 1);
    run r = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    check_logits_loss(pf, &r, &o);
    lm_forward_backward(m, &r, &o);
    CHECK_INT(check_grads(pf, m), proj ? 5 : 1);
    CHECK_INT((long long)mf_model_count(m, 1), (long long)(proj ? 3 * 48 + 20 * 48 + 20 + 64 * 20 + 64 : 3 * 64));
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

TEST(test_kernels_prefix_tuning_matches_hf_past_key_values)
{
    prefix_case("llama_prefix0.safetensors", 0);
}

TEST(test_kernels_prefix_tuning_with_reparameterisation_mlp_matches_reference)
{
    prefix_case("llama_prefix1.safetensors", 1);
}

TEST(test_kernels_reward_head_matches_sequence_classification)
{
    fx_file *f = fx_load("llama_gqa.safetensors"), *rf = fx_load("llama_reward.safetensors");
    mf_model *m = fx_model(f);
    mf_err err;
    REQUIRE(mf_model_add_score_head(m, 1, &err) == 0);
    CHECK_INT(fx_copy_params(rf, m), 1);
    mf_model_set_all_trainable(m, 1);
    run r = batch_of(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_VALUES | MF_FWD_TRAIN, &o, &err) == 0);
    const float *er = fx_f32(rf, "expected.reward"), *ev = fx_f32(rf, "expected.values");
    for (int b = 0; b < r.B; b++) CHECK_NEAR(o.reward[b], er[b], TOL_FWD, 1e-6);
    CHECK_INT(o.last[1], r.T - 4); /* row 1 has 3 right pads */
    for (int i = 0; i < r.B * r.T; i++)
        if (r.b.attention_mask[i]) CHECK_NEAR(o.values[i], ev[i], TOL_FWD, 1e-5);
    const float *coef = fx_f32(rf, "reward.coef");
    float *dv = calloc((size_t)r.B * r.T, sizeof(float));
    REQUIRE(dv);
    for (int b = 0; b < r.B; b++) dv[b * r.T + o.last[b]] = coef[b];
    mf_model_zero_grad(m);
    REQUIRE(mf_model_backward(m, NULL, dv, &err) == 0);
    CHECK(check_grads(rf, m) >= 10);
    free(dv);
    mf_model_free(m);
    fx_free(rf);
    fx_free(f);
}
