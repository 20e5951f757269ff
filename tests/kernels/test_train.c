/*
 * tests/kernels/test_train.c — fine-tuning modes and the optimizer: freeze
 * semantics, AdamW + clipping + schedules against torch/transformers
 * (fixtures), gradient accumulation, and bit-identical resume from a saved
 * optimizer state.
 */
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <stdlib.h>
#include <string.h>

TEST(test_kernels_lr_schedules_match_hf_warmup_schedules)
{
    fx_file *f = fx_load("adamw.safetensors");
    const char *names[3] = {"sched.linear", "sched.cosine", "sched.constant"};
    mf_k_sched kinds[3] = {MF_SCHED_LINEAR, MF_SCHED_COSINE, MF_SCHED_CONSTANT};
    for (int k = 0; k < 3; k++) {
        const float *want = fx_f32(f, names[k]);
        mf_k_adamw_config c = {.sched = kinds[k], .warmup_steps = 3, .total_steps = 10};
        /* fp32 in the fixture: 1e-6 */
        for (long s = 0; s < 12; s++) CHECK_NEAR(mf_k_lr_factor(&c, s), want[s], 1e-6, 1e-7);
    }
    fx_free(f);
}

static mf_model *tiny_model(void)
{
    mf_model_config c = {.arch = MF_ARCH_LLAMA, .vocab_size = 6, .hidden_size = 8, .intermediate_size = 4,
                         .num_hidden_layers = 1, .num_attention_heads = 2};
    mf_model *m;
    mf_err err;
    REQUIRE(mf_model_new(&m, &c, &err) == 0);
    return m;
}

TEST(test_kernels_adamw_matches_torch_with_clipping_decay_groups_and_cosine_warmup)
{
    fx_file *f = fx_load("adamw.safetensors");
    mf_model *m = tiny_model();
    mf_k_param *w2 = mf_model_find_param(m, "model.embed_tokens.weight"), *w1 = mf_model_find_param(m, "model.norm.weight");
    REQUIRE(w2 && w1 && w2->numel == 48 && w1->numel == 8);
    memcpy(w2->data, fx_f32(f, "w2.init"), 48 * 4);
    memcpy(w1->data, fx_f32(f, "w1.init"), 8 * 4);
    mf_err err;
    REQUIRE(mf_model_set_trainable(m, w2->name, 1, &err) == 0);
    REQUIRE(mf_model_set_trainable(m, w1->name, 1, &err) == 0);
    mf_k_adamw_config c = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                           .max_grad_norm = 1.0f, .sched = MF_SCHED_COSINE, .warmup_steps = 2, .total_steps = 6};
    mf_k_adamw *o;
    REQUIRE(mf_k_adamw_new(&o, m, &c, &err) == 0);
    for (int s = 0; s < 5; s++) {
        char k[64];
        snprintf(k, sizeof k, "step%d.g2", s);
        memcpy(w2->grad, fx_f32(f, k), 48 * 4);
        snprintf(k, sizeof k, "step%d.g1", s);
        memcpy(w1->grad, fx_f32(f, k), 8 * 4);
        double norm;
        REQUIRE(mf_k_adamw_step(o, &norm, &err) == 0);
        snprintf(k, sizeof k, "step%d.norm", s);
        CHECK_NEAR(norm, fx_f32(f, k)[0], 1e-6, 0);
        /* same fp32 operations as torch's single-tensor AdamW, different
         * association in a few places: 1e-6 relative to the tensor's scale */
        snprintf(k, sizeof k, "step%d.w2", s);
        CHECK(fx_max_rel(w2->data, fx_f32(f, k), 48) <= 1e-6);
        snprintf(k, sizeof k, "step%d.w1", s);
        CHECK(fx_max_rel(w1->data, fx_f32(f, k), 8) <= 1e-6);
    }
    CHECK_INT(mf_k_adamw_steps(o), 5);
    mf_k_adamw_free(o);
    mf_model_free(m);
    fx_free(f);
}

TEST(test_kernels_freeze_trains_only_last_layer_mlp_and_frozen_weights_stay_bit_identical)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_model *m = fx_model(f);
    mf_err err;
    mf_k_freeze_config fc = {.trainable_layers = 1};
    REQUIRE(mf_k_modules_parse(&fc.modules, "mlp", &err) == 0);
    REQUIRE(mf_model_freeze(m, &fc, &err) == 0);
    size_t np = mf_model_num_params(m);
    float **before = calloc(np, sizeof(float *));
    REQUIRE(before);
    int n_train = 0;
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        int want = strstr(p->name, "layers.1.mlp.") != NULL;
        CHECK_INT(p->trainable, want);
        CHECK(want ? p->grad != NULL : p->grad == NULL);
        n_train += want;
        before[i] = malloc(p->numel * 4);
        REQUIRE(before[i]);
        memcpy(before[i], p->data, p->numel * 4);
    }
    CHECK_INT(n_train, 3);
    mf_k_batch b = fx_batch(f).b;
    mf_model_zero_grad(m);
    double loss;
    REQUIRE(mf_model_lm_step(m, &b, 1.0f, &loss, &err) == 0);
    CHECK_NEAR(loss, fx_f32(f, "expected.loss")[0], 1e-4, 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!p->trainable) continue;
        char k[160];
        snprintf(k, sizeof k, "grad.%s", p->name);
        CHECK(fx_max_rel(p->grad, fx_f32(f, k), p->numel) <= 1e-3);
    }
    mf_k_adamw_config c = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    mf_k_adamw *o;
    REQUIRE(mf_k_adamw_new(&o, m, &c, &err) == 0);
    REQUIRE(mf_k_adamw_step(o, NULL, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        int same = !memcmp(before[i], p->data, p->numel * 4);
        CHECK_INT(same, !p->trainable);
        free(before[i]);
    }
    free(before);
    mf_k_adamw_free(o);
    mf_model_free(m);
    fx_free(f);
}

TEST(test_kernels_gradient_accumulation_equals_the_whole_batch)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_model *m = fx_model(f);
    mf_model_set_all_trainable(m, 1);
    /* two unpadded rows with the same number of labels: mean of the two
     * micro-batch means == mean over the whole batch */
    const int32_t *ids = fx_i32(f, "input_ids");
    int T = 9;
    mf_k_batch whole = {.B = 2, .T = T, .input_ids = ids, .labels = ids};
    mf_k_batch r0 = {.B = 1, .T = T, .input_ids = ids, .labels = ids};
    int32_t row1[9];
    for (int t = 0; t < T; t++) row1[t] = (ids[t] * 7 + 3) % 67;
    int32_t both[18];
    memcpy(both, ids, 9 * 4);
    memcpy(both + 9, row1, 9 * 4);
    whole.input_ids = whole.labels = both;
    mf_k_batch r1 = {.B = 1, .T = T, .input_ids = row1, .labels = row1};
    mf_err err;
    double l;
    mf_model_zero_grad(m);
    REQUIRE(mf_model_lm_step(m, &whole, 1.0f, &l, &err) == 0);
    size_t np = mf_model_num_params(m);
    float **g = calloc(np, sizeof(float *));
    REQUIRE(g);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        g[i] = malloc(p->numel * 4);
        REQUIRE(g[i]);
        memcpy(g[i], p->grad, p->numel * 4);
    }
    mf_model_zero_grad(m);
    REQUIRE(mf_model_lm_step(m, &r0, 0.5f, &l, &err) == 0);
    REQUIRE(mf_model_lm_step(m, &r1, 0.5f, &l, &err) == 0);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        /* same math, different GEMM blocking: fp32 re-association only */
        if (!(fx_max_rel(p->grad, g[i], p->numel) <= 1e-5))
            mf_test_fail(__FILE__, __LINE__, "%s differs: %g", p->name, fx_max_rel(p->grad, g[i], p->numel));
        free(g[i]);
    }
    free(g);
    mf_model_free(m);
    fx_free(f);
}

/* LoRA with dropout, 2 steps, save (adapter weights + optimizer state + rng
 * counter), step 3; a fresh model restored from the save must produce the
 * same step 3 to the bit. */
TEST(test_kernels_optimizer_state_reload_continues_bit_identically)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_k_batch b = fx_batch(f).b;
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .target = MF_MOD_ALL & ~MF_MOD_NORMS, .seed = 5};
    mf_k_adamw_config ac = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                            .max_grad_norm = 1.0f, .sched = MF_SCHED_LINEAR, .warmup_steps = 1, .total_steps = 10};
    mf_err err;
    mf_model *m = fx_model(f);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    mf_k_adamw *o;
    REQUIRE(mf_k_adamw_new(&o, m, &ac, &err) == 0);
    double loss0 = 0, loss;
    for (int s = 0; s < 2; s++) {
        mf_model_zero_grad(m);
        REQUIRE(mf_model_lm_step(m, &b, 1.0f, &loss, &err) == 0);
        if (s == 0) loss0 = loss;
        REQUIRE(mf_k_adamw_step(o, NULL, &err) == 0);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/adamw.state", mf_test_tmpdir());
    REQUIRE(mf_k_adamw_save(o, path, &err) == 0);
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
    for (int s = 0; s < 3; s++) {
        mf_model_zero_grad(m);
        REQUIRE(mf_model_lm_step(m, &b, 1.0f, &loss, &err) == 0);
        REQUIRE(mf_k_adamw_step(o, NULL, &err) == 0);
    }
    CHECK(loss < loss0); /* it learns */

    mf_model *m2 = fx_model(f);
    REQUIRE(mf_model_add_lora(m2, &lc, &err) == 0);
    REQUIRE(mf_model_num_params(m2) == np);
    for (size_t i = 0; i < np; i++) memcpy(mf_model_param(m2, i)->data, saved[i], mf_model_param(m2, i)->numel * 4);
    mf_model_set_rng_state(m2, rng);
    mf_k_adamw *o2;
    REQUIRE(mf_k_adamw_new(&o2, m2, &ac, &err) == 0);
    REQUIRE(mf_k_adamw_load(o2, path, &err) == 0);
    CHECK_INT(mf_k_adamw_steps(o2), 2);
    double loss2 = 0;
    for (int s = 0; s < 3; s++) {
        mf_model_zero_grad(m2);
        REQUIRE(mf_model_lm_step(m2, &b, 1.0f, &loss2, &err) == 0);
        REQUIRE(mf_k_adamw_step(o2, NULL, &err) == 0);
    }
    CHECK(loss2 == loss);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i), *q = mf_model_param(m2, i);
        if (memcmp(p->data, q->data, p->numel * 4)) mf_test_fail(__FILE__, __LINE__, "%s differs after resume", p->name);
        free(saved[i]);
    }
    free(saved);
    /* a state for other parameters is refused with a clear message */
    mf_model *m3 = fx_model(f);
    mf_model_set_all_trainable(m3, 1);
    mf_k_adamw *o3;
    REQUIRE(mf_k_adamw_new(&o3, m3, &ac, &err) == 0);
    CHECK(mf_k_adamw_load(o3, path, &err) == MF_EINVAL);
    CHECK_CONTAINS(err.msg, "parameters");
    mf_k_adamw_free(o3);
    mf_model_free(m3);
    mf_k_adamw_free(o2);
    mf_k_adamw_free(o);
    mf_model_free(m2);
    mf_model_free(m);
    fx_free(f);
}
