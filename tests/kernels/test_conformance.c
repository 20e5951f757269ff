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

static void full_model_case(const char *file, int recompute)
{
    fx_file *f = fx_load(file);
    mf_model *m = fx_model(f);
    mf_model_set_all_trainable(m, 1);
    mf_model_set_recompute(m, recompute);
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(f, &r, &o, 0);
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(f, m), (int)mf_model_num_params(m));
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
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(lf, &r, &o, 0);
    size_t nl = (size_t)r.B * r.T * o.V;
    float *unmerged = malloc(nl * sizeof(float));
    REQUIRE(unmerged);
    memcpy(unmerged, o.logits, nl * sizeof(float));
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(lf, m), 12);
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
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(pf, &r, &o, 0);
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(pf, m), proj ? 5 : 1);
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
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_VALUES | MF_FWD_TRAIN, &o, &err) == 0);
    const float *er = fx_f32(rf, "expected.reward"), *ev = fx_f32(rf, "expected.values");
    for (int b = 0; b < r.B; b++) CHECK_NEAR(o.reward[b], er[b], FX_TOL_FWD, 1e-6);
    CHECK_INT(o.last[1], r.T - 4); /* row 1 has 3 right pads */
    for (int i = 0; i < r.B * r.T; i++)
        if (r.b.attention_mask[i]) CHECK_NEAR(o.values[i], ev[i], FX_TOL_FWD, 1e-5);
    const float *coef = fx_f32(rf, "reward.coef");
    float *dv = calloc((size_t)r.B * r.T, sizeof(float));
    REQUIRE(dv);
    for (int b = 0; b < r.B; b++) dv[b * r.T + o.last[b]] = coef[b];
    mf_model_zero_grad(m);
    REQUIRE(mf_model_backward(m, NULL, dv, &err) == 0);
    CHECK(fx_check_grads(rf, m) >= 10);
    free(dv);
    mf_model_free(m);
    fx_free(rf);
    fx_free(f);
}
