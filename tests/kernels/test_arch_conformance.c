/*
 * tests/kernels/test_arch_conformance.c — BLOOM and GLM against transformers'
 * native BloomForCausalLM / GlmForCausalLM (+ PEFT), ChatGLM2/3 against the
 * independent reference tests/kernels/chatglm2_ref.py (itself checked against
 * GlmForCausalLM when the fixtures are generated). Fixtures:
 * tests/kernels/gen_arch_fixtures.py -> tests/kernels/fixtures/arch/.
 *
 * Per architecture: logits at real positions within 1e-4 absolute (and the
 * relative bound of test_conformance.c), the loss, every gradient (1e-3
 * relative), with and without recomputation; 32 greedy tokens with and
 * without the KV cache; PEFT LoRA on every projection module of the arch
 * (logits, LoRA gradients, merge); P-Tuning v2 (logits, prefix gradients).
 */
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ABS 1e-4 /* fp32 on both sides: differences are summation order, ~1e-6 here */

static void full_case(const char *file, int recompute)
{
    fx_file *f = fx_load(file);
    mf_model *m = fx_model(f);
    mf_model_set_all_trainable(m, 1);
    mf_model_set_recompute(m, recompute);
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(f, &r, &o, MAX_ABS);
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(f, m), (int)mf_model_num_params(m));
    if (!recompute) fx_check_greedy(f, m);
    mf_model_free(m);
    fx_free(f);
}

static void lora_case(const char *base, const char *file)
{
    fx_file *f = fx_load(base), *lf = fx_load(file);
    mf_model *m = fx_model(f);
    const char *meta = fx_meta(lf, "lora");
    REQUIRE(meta);
    mf_json *j;
    mf_err err;
    REQUIRE(mf_json_parse(&j, meta, strlen(meta), "lora", &err) == 0);
    mf_k_lora_config lc = {.rank = (int)mf_json_int(mf_json_get(j, "r"), 0),
                           .alpha = (float)mf_json_num(mf_json_get(j, "alpha"), 0), .seed = 1};
    /* the arch's own module words, as PEFT's target_modules */
    REQUIRE(mf_model_modules_parse(&lc.target, mf_model_get_config(m)->arch,
                                   mf_json_str(mf_json_get(j, "target"), ""), &err) == 0);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    int n_lora = 0;
    for (size_t i = 0; i < lf->n; i++) n_lora += !strncmp(lf->t[i].name, "grad.", 5);
    CHECK_INT(fx_copy_params(lf, m), n_lora);
    CHECK_INT((int)(mf_model_num_params(m) - (size_t)n_lora), (int)mf_model_num_params(m) - n_lora);
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(lf, &r, &o, MAX_ABS);
    size_t nl = (size_t)r.B * r.T * o.V;
    float *unmerged = malloc(nl * sizeof(float));
    REQUIRE(unmerged);
    memcpy(unmerged, o.logits, nl * sizeof(float));
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(lf, m), n_lora);
    CHECK(mf_model_count(m, 1) > 0);
    REQUIRE(mf_model_merge_lora(m, &err) == 0);
    mf_k_param *w = mf_model_find_param(m, mf_json_str(mf_json_get(j, "merged"), ""));
    REQUIRE(w);
    CHECK(fx_max_rel(w->data, fx_f32(lf, "expected.merged"), w->numel) <= 1e-6);
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    CHECK(fx_max_rel(o.logits, unmerged, nl) <= 1e-5); /* W x + s B A x re-associated */
    free(unmerged);
    mf_json_free(j);
    mf_model_free(m);
    fx_free(lf);
    fx_free(f);
}

static void prefix_case(const char *base, const char *file)
{
    fx_file *f = fx_load(base), *pf = fx_load(file);
    mf_model *m = fx_model(f);
    const char *meta = fx_meta(pf, "prefix");
    REQUIRE(meta);
    mf_json *j;
    mf_err err;
    REQUIRE(mf_json_parse(&j, meta, strlen(meta), "prefix", &err) == 0);
    mf_k_prefix_config pc = {.pre_seq_len = (int)mf_json_int(mf_json_get(j, "pre_seq_len"), 0),
                             .prefix_projection = (int)mf_json_int(mf_json_get(j, "prefix_projection"), 0),
                             .prefix_hidden_size = (int)mf_json_int(mf_json_get(j, "prefix_hidden_size"), 0),
                             .seed = 2};
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    int n = pc.prefix_projection ? 5 : 1;
    CHECK_INT(fx_copy_params(pf, m), n);
    fx_run r = fx_batch(f);
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &r.b, MF_FWD_LOGITS, &o, &err) == 0);
    fx_check_logits_loss(pf, &r, &o, MAX_ABS);
    fx_lm_forward_backward(m, &r, &o);
    CHECK_INT(fx_check_grads(pf, m), n);
    mf_json_free(j);
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

TEST(test_kernels_bloom_matches_transformers_logits_grads_and_greedy)
{
    full_case("arch/bloom.safetensors", 0);
    full_case("arch/bloom.safetensors", 1);
}

TEST(test_kernels_bloom_lora_on_every_module_matches_peft)
{
    lora_case("arch/bloom.safetensors", "arch/bloom_lora.safetensors");
}

TEST(test_kernels_bloom_prefix_matches_hf_past_key_values)
{
    prefix_case("arch/bloom.safetensors", "arch/bloom_prefix.safetensors");
}

TEST(test_kernels_glm_matches_transformers_logits_grads_and_greedy)
{
    full_case("arch/glm.safetensors", 0);
    full_case("arch/glm.safetensors", 1);
}

TEST(test_kernels_glm_lora_matches_peft)
{
    lora_case("arch/glm.safetensors", "arch/glm_lora.safetensors");
}

TEST(test_kernels_glm_prefix_matches_hf_past_key_values)
{
    prefix_case("arch/glm.safetensors", "arch/glm_prefix.safetensors");
}

TEST(test_kernels_chatglm2_matches_reference_logits_grads_and_greedy)
{
    full_case("arch/chatglm2.safetensors", 0);
    full_case("arch/chatglm2.safetensors", 1);
}

TEST(test_kernels_chatglm2_lora_matches_peft_on_the_reference)
{
    lora_case("arch/chatglm2.safetensors", "arch/chatglm2_lora.safetensors");
}

TEST(test_kernels_chatglm2_ptuning_matches_its_prefix_encoder_and_positions)
{
    prefix_case("arch/chatglm2.safetensors", "arch/chatglm2_prefix.safetensors");
}
