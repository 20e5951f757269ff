/*
 * tests/kernels/test_model.c — the model object: config validation and its
 * messages, the parameter table (HF names, shapes), adapter initialisation
 * (PEFT's LoRA init), module lists, input validation, and determinism.
 */
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <stdlib.h>
#include <string.h>

static mf_model_config small_cfg(void)
{
    mf_model_config c = {.arch = MF_ARCH_QWEN2, .vocab_size = 50, .hidden_size = 24, .intermediate_size = 40,
                         .num_hidden_layers = 3, .num_attention_heads = 6, .num_key_value_heads = 2,
                         .max_position_embeddings = 64};
    return c;
}

TEST(test_kernels_config_rejects_inconsistent_heads_with_clear_messages)
{
    mf_model_config c = small_cfg();
    mf_model *m = NULL;
    mf_err err;
    c.num_key_value_heads = 4;
    CHECK_INT(mf_model_new(&m, &c, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "multiple of num_key_value_heads (4)");
    c = small_cfg();
    c.num_attention_heads = 5;
    c.num_key_value_heads = 5;
    CHECK_INT(mf_model_new(&m, &c, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "not divisible");
    c = small_cfg();
    c.hidden_size = 0;
    CHECK_INT(mf_model_new(&m, &c, &err), MF_EINVAL);
    CHECK(m == NULL);
}

TEST(test_kernels_param_table_uses_hf_names_and_shapes)
{
    mf_model_config c = small_cfg();
    mf_model *m;
    mf_err err;
    REQUIRE(mf_model_new(&m, &c, &err) == 0);
    /* defaults filled: head_dim 4, theta 1e4, eps 1e-6; Qwen2 implies biases */
    CHECK_INT(mf_model_get_config(m)->head_dim, 4);
    CHECK(mf_model_get_config(m)->attention_bias == 1);
    /* embed + 3 x (2 norms + 7 linears + 3 biases) + norm + lm_head */
    CHECK_INT((int)mf_model_num_params(m), 1 + 3 * 12 + 2);
    mf_k_param *k = mf_model_find_param(m, "model.layers.2.self_attn.k_proj.weight");
    REQUIRE(k);
    CHECK_INT(k->shape[0], 8);
    CHECK_INT(k->shape[1], 24);
    CHECK_INT(k->layer, 2);
    mf_k_param *kb = mf_model_find_param(m, "model.layers.0.self_attn.k_proj.bias");
    REQUIRE(kb);
    CHECK_INT(kb->ndim, 1);
    CHECK(mf_model_find_param(m, "model.layers.0.self_attn.o_proj.bias") == NULL);
    CHECK(mf_model_find_param(m, "lm_head.weight") != NULL);
    CHECK(mf_model_find_param(m, "model.norm.weight")->data[5] == 1.0f);
    CHECK(mf_model_param(m, 1000) == NULL);
    REQUIRE(mf_model_add_score_head(m, 1, &err) == 0);
    CHECK_INT(mf_model_find_param(m, "score.weight")->shape[1], 24);
    mf_model_free(m);
    c.tie_word_embeddings = 1;
    REQUIRE(mf_model_new(&m, &c, &err) == 0);
    CHECK(mf_model_find_param(m, "lm_head.weight") == NULL);
    mf_model_free(m);
}

TEST(test_kernels_lora_init_follows_peft_and_freezes_the_base)
{
    mf_model_config c = small_cfg();
    mf_model *m;
    mf_err err;
    REQUIRE(mf_model_new(&m, &c, &err) == 0);
    mf_model_set_all_trainable(m, 1);
    mf_k_lora_config lc = {.rank = 8, .alpha = 16, .seed = 9};
    REQUIRE(mf_k_modules_parse(&lc.target, "all-linear", &err) == 0);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    CHECK_INT((int)mf_model_num_params(m), 1 + 3 * 12 + 2 + 3 * 7 * 2);
    mf_k_param *A = mf_model_find_param(m, "model.layers.1.mlp.down_proj.lora_A.weight");
    mf_k_param *Bm = mf_model_find_param(m, "model.layers.1.mlp.down_proj.lora_B.weight");
    REQUIRE(A && Bm);
    CHECK_INT(A->shape[0], 8);
    CHECK_INT(A->shape[1], 40);
    CHECK_INT(Bm->shape[0], 24);
    CHECK_INT(Bm->shape[1], 8);
    /* kaiming_uniform(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)), variance 1/(3 in) */
    double bound = 1.0 / sqrt(40.0), var = 0;
    for (size_t i = 0; i < A->numel; i++) {
        CHECK(fabs(A->data[i]) <= bound);
        var += (double)A->data[i] * A->data[i];
    }
    var /= (double)A->numel;
    CHECK_NEAR(var, 1.0 / 120.0, 0.25, 0); /* 320 samples: the sample variance is within 25% */
    for (size_t i = 0; i < Bm->numel; i++) CHECK(Bm->data[i] == 0.0f);
    CHECK(A->trainable && A->grad && Bm->trainable);
    CHECK(!mf_model_find_param(m, "model.layers.1.mlp.down_proj.weight")->trainable);
    CHECK(mf_model_find_param(m, "model.embed_tokens.weight")->grad == NULL);
    /* r (in + out) per module: q 24+24, k 24+8, v 24+8, o 24+24, gate/up/down 24+40; 3 layers */
    CHECK_INT((long long)mf_model_count(m, 1), 3LL * 8 * ((24 + 24) + (24 + 8) + (24 + 8) + (24 + 24) + 3 * (24 + 40)));
    CHECK_INT(mf_model_add_lora(m, &lc, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "already");
    mf_model_free(m);
}

TEST(test_kernels_module_lists_parse_and_name_the_bad_word)
{
    unsigned bits;
    mf_err err;
    CHECK_OK(mf_k_modules_parse(&bits, "q_proj, v_proj", &err));
    CHECK_INT(bits, MF_MOD_Q | MF_MOD_V);
    CHECK_OK(mf_k_modules_parse(&bits, "mlp", &err));
    CHECK_INT(bits, MF_MOD_MLP);
    CHECK_INT(mf_k_modules_parse(&bits, "q_proj,qkv_proj", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "unknown module 'qkv_proj'");
    CHECK_INT(mf_k_modules_parse(&bits, "", &err), MF_EINVAL);
}

TEST(test_kernels_forward_rejects_bad_tokens_labels_and_lengths)
{
    mf_model_config c = small_cfg();
    mf_model *m;
    mf_err err;
    REQUIRE(mf_model_new(&m, &c, &err) == 0);
    int32_t ids[4] = {1, 2, 50, 3}, lab[4] = {1, 2, 3, -7};
    mf_k_batch b = {.B = 2, .T = 2, .input_ids = ids};
    mf_k_outputs o;
    CHECK_INT(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "token id 50 at row 1, position 0");
    ids[2] = 4;
    b.labels = lab;
    CHECK_INT(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "label -7");
    b.labels = NULL;
    b.T = 1;
    b.B = 4;
    CHECK_OK(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err));
    CHECK_INT(mf_model_forward(m, &b, MF_FWD_VALUES, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "no score head");
    CHECK_INT(mf_model_backward(m, NULL, NULL, &err), MF_EINVAL); /* no training forward */
    int32_t *longer = calloc(65, sizeof(int32_t));
    mf_k_batch lb = {.B = 1, .T = 65, .input_ids = longer};
    CHECK_INT(mf_model_forward(m, &lb, MF_FWD_LOGITS, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "max_position_embeddings 64");
    free(longer);
    mf_model_free(m);
}

/* Two identical runs, recompute on/off, LoRA dropout on: the same bits. */
TEST(test_kernels_training_is_bit_reproducible_and_recompute_regenerates_dropout)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    float *g[3] = {0};
    size_t n = 0;
    for (int run = 0; run < 3; run++) {
        mf_model *m = fx_model(f);
        mf_err err;
        mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.3f, .target = MF_MOD_ATTN | MF_MOD_MLP, .seed = 2};
        REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
        mf_k_param *p = mf_model_find_param(m, "model.layers.0.self_attn.q_proj.lora_A.weight");
        mf_model_set_recompute(m, run == 2);
        fx_tensor *ids = fx_get(f, "input_ids");
        mf_k_batch b = {.B = 3, .T = 9, .input_ids = ids->data, .attention_mask = fx_i32(f, "attention_mask"),
                        .labels = fx_i32(f, "labels")};
        /* B = 0 gives A no gradient: step once so B moves, then measure */
        mf_k_adamw_config ac = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
        mf_k_adamw *o;
        REQUIRE(mf_k_adamw_new(&o, m, &ac, &err) == 0);
        double loss;
        REQUIRE(mf_model_lm_step(m, &b, 1.0f, &loss, &err) == 0);
        REQUIRE(mf_k_adamw_step(o, NULL, &err) == 0);
        mf_model_zero_grad(m);
        REQUIRE(mf_model_lm_step(m, &b, 1.0f, &loss, &err) == 0);
        n = p->numel;
        g[run] = malloc(n * 4);
        memcpy(g[run], p->grad, n * 4);
        mf_k_adamw_free(o);
        mf_model_free(m);
    }
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs(g[0][i]);
    CHECK(s > 0);
    CHECK(!memcmp(g[0], g[1], n * 4));
    CHECK(!memcmp(g[0], g[2], n * 4));
    for (int i = 0; i < 3; i++) free(g[i]);
    fx_free(f);
}

/* A smaller batch after a larger one re-carves the same workspace: results
 * must equal a fresh model's to the bit (nothing stale is read). */
TEST(test_kernels_workspace_reuse_across_shapes_reads_nothing_stale)
{
    fx_file *f = fx_load("llama_gqa.safetensors");
    mf_model *a = fx_model(f), *b = fx_model(f);
    mf_model_set_all_trainable(a, 1);
    mf_model_set_all_trainable(b, 1);
    const int32_t *ids = fx_i32(f, "input_ids");
    mf_k_batch big = {.B = 3, .T = 9, .input_ids = ids, .attention_mask = fx_i32(f, "attention_mask"),
                      .labels = fx_i32(f, "labels")};
    mf_k_batch small = {.B = 1, .T = 7, .input_ids = ids, .labels = ids};
    mf_err err;
    double la, lb;
    REQUIRE(mf_model_lm_step(a, &big, 1.0f, &la, &err) == 0);
    mf_model_zero_grad(a);
    REQUIRE(mf_model_lm_step(a, &small, 1.0f, &la, &err) == 0);
    REQUIRE(mf_model_lm_step(b, &small, 1.0f, &lb, &err) == 0);
    CHECK(la == lb);
    for (size_t i = 0; i < mf_model_num_params(a); i++) {
        mf_k_param *p = mf_model_param(a, i), *q = mf_model_param(b, i);
        if (memcmp(p->grad, q->grad, p->numel * 4)) mf_test_fail(__FILE__, __LINE__, "%s differs", p->name);
    }
    mf_model_free(a);
    mf_model_free(b);
    fx_free(f);
}
