/* tests/modelio/test_arch_io.c — BLOOM, GLM and ChatGLM2/3 directories: configs
 * and weights as transformers / peft / the published ChatGLM2 layout write them
 * (tests/modelio/gen_arch_io_fixtures.py), the config keys medflow refuses by
 * name, and exports loaded back by transformers / peft / the ChatGLM2 reference
 * with the logits medflow computed (tests/modelio/check_export.py). */
#include "tests/harness.h"
#include "modelio/modelio.h"
#include "common/fsutil.h"
#include "tests/modelio/export_check.h"

#include <stdlib.h>

static const char *fx(const char *name)
{
    static char p[16][1024];
    static int k;
    k = (k + 1) % 16;
    snprintf(p[k], sizeof p[k], "%s/tests/modelio/fixtures/arch_io/%s", mf_test_root(), name);
    return p[k];
}

static mf_model *load(const char *dir)
{
    mf_model *m = NULL;
    mf_err err;
    int rc = mf_modelio_load(&m, NULL, dir, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "%s: %s", dir, err.msg);
    REQUIRE(rc == 0);
    return m;
}

TEST(test_arch_io_reads_bloom_glm_and_chatglm2_configs)
{
    mf_model_config c;
    mf_modelio_meta meta;
    mf_err err;
    REQUIRE(mf_modelio_read_config(&c, &meta, fx("bloom"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_BLOOM);
    CHECK_INT(c.hidden_size, 16);
    CHECK_INT(c.intermediate_size, 64); /* 4 * hidden */
    CHECK_INT(c.num_attention_heads, 4);
    CHECK_INT(c.num_hidden_layers, 2);
    CHECK_INT(c.tie_word_embeddings, 1);
    CHECK_INT(c.pad_token_id, 3);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0, 1e-12);
    CHECK_STR(meta.architecture, "BloomForCausalLM");
    mf_modelio_meta_free(&meta);

    REQUIRE(mf_modelio_read_config(&c, NULL, fx("glm"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_GLM);
    CHECK_INT(c.num_key_value_heads, 2);
    CHECK_INT(c.head_dim, 8);
    CHECK_INT(c.rotary_dim, 4); /* partial_rotary_factor 0.5 of rope_parameters */
    CHECK_INT(c.attention_bias, 1);

    REQUIRE(mf_modelio_read_config(&c, NULL, fx("chatglm2"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_CHATGLM2);
    CHECK_INT(c.vocab_size, 32); /* padded_vocab_size */
    CHECK_INT(c.intermediate_size, 24);
    CHECK_INT(c.num_key_value_heads, 2); /* multi_query_group_num */
    CHECK_INT(c.head_dim, 8);            /* kv_channels */
    CHECK_INT(c.qkv, MF_QKV_FUSED);
    CHECK_INT(c.max_position_embeddings, 64);
    CHECK_NEAR(c.rope_theta, 20000.0, 0, 1e-9); /* 10000 * rope_ratio */
}

/* Every tensor read, then written back byte for byte as python's safetensors wrote it. */
static void rewrite_case(const char *src)
{
    mf_model *m = load(fx(src));
    mf_err err;
    const char *tmp = mf_test_tmpdir();
    CHECK_OK(mf_modelio_save(m, tmp, NULL, NULL, &err));
    char *a = mf_path_join(fx(src), "model.safetensors"), *b = mf_path_join(tmp, "model.safetensors");
    char *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    REQUIRE(mf_read_file(a, &da, &na, &err) == 0);
    REQUIRE(mf_read_file(b, &db, &nb, &err) == 0);
    CHECK(na == nb && !memcmp(da, db, na));
    free(da), free(db), free(a), free(b);
    mf_model_free(m);
}

TEST(test_arch_io_loads_every_tensor_and_rewrites_identical_bytes)
{
    rewrite_case("bloom");
    rewrite_case("glm");
    rewrite_case("chatglm2"); /* with its rotary_pos_emb.inv_freq buffer */
}

TEST(test_arch_io_reads_bloom_checkpoints_named_without_the_transformer_prefix)
{
    /* bigscience's checkpoints were saved from BloomModel: "h.0...", "word_embeddings.weight" */
    mf_model *a = load(fx("bloom")), *b = load(fx("bloom_bare"));
    CHECK_INT((int)mf_model_num_params(a), (int)mf_model_num_params(b));
    for (size_t i = 0; i < mf_model_num_params(a); i++) {
        mf_k_param *p = mf_model_param(a, i), *q = mf_model_param(b, i);
        CHECK_STR(p->name, q->name);
        CHECK(p->numel == q->numel && !memcmp(p->data, q->data, p->numel * sizeof(float)));
    }
    mf_model_free(a);
    mf_model_free(b);
}

TEST(test_arch_io_reads_peft_adapters_of_fused_modules)
{
    static const struct { const char *base, *adapter, *tensor; unsigned target; int n; } cases[] = {
        {"bloom", "bloom_lora", "transformer.h.1.self_attention.query_key_value.lora_B.weight",
         MF_MOD_QKV | MF_MOD_O | MF_MOD_UP | MF_MOD_DOWN, 16},
        {"glm", "glm_lora", "model.layers.0.mlp.gate_up_proj.lora_A.weight",
         MF_MOD_Q | MF_MOD_V | MF_MOD_GATE_UP | MF_MOD_DOWN, 16},
        {"chatglm2", "chatglm2_lora", "transformer.encoder.layers.1.mlp.dense_h_to_4h.lora_B.weight",
         MF_MOD_QKV | MF_MOD_O | MF_MOD_GATE_UP | MF_MOD_DOWN, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mf_model *m = load(fx(cases[i].base));
        mf_modelio_peft p;
        mf_err err;
        int rc = mf_modelio_load_adapter(m, &p, fx(cases[i].adapter), &err);
        if (rc) mf_test_fail(__FILE__, __LINE__, "%s: %s", cases[i].adapter, err.msg);
        REQUIRE(rc == 0);
        CHECK_INT(p.lora.rank, 4);
        CHECK_INT(p.lora.target, cases[i].target);
        int n = 0;
        for (size_t k = 0; k < mf_model_num_params(m); k++) n += mf_model_param(m, k)->kind == MF_PARAM_LORA;
        CHECK_INT(n, cases[i].n);
        mf_k_param *t = mf_model_find_param(m, cases[i].tensor);
        REQUIRE(t);
        double s = 0;
        for (size_t k = 0; k < t->numel; k++) s += fabs(t->data[k]);
        CHECK(s > 0); /* init_lora_weights=False: real values were read */
        mf_model_free(m);
    }
}

static int parse(const char *text, mf_err *e)
{
    mf_json *j = NULL;
    int rc = mf_json_parse(&j, text, strlen(text), "config.json", e);
    if (!rc) {
        mf_model_config c;
        rc = mf_modelio_config_parse(&c, NULL, j, "config.json", e);
    }
    mf_json_free(j);
    return rc;
}

#define BLOOM "\"architectures\":[\"BloomForCausalLM\"],\"vocab_size\":32,\"hidden_size\":16,\"n_layer\":2,\"n_head\":4"
#define GLM_KEYS                                                                                                       \
    "\"vocab_size\":32,\"hidden_size\":16,\"intermediate_size\":24,\"num_hidden_layers\":2,\"num_attention_heads\":4," \
    "\"head_dim\":8"
#define GLM "\"architectures\":[\"GlmForCausalLM\"]," GLM_KEYS
#define CHATGLM2                                                                                                       \
    "\"architectures\":[\"ChatGLMModel\"],\"model_type\":\"chatglm\",\"padded_vocab_size\":32,\"hidden_size\":16,"     \
    "\"ffn_hidden_size\":24,\"num_layers\":2,\"num_attention_heads\":4,\"kv_channels\":4,\"multi_query_attention\":true," \
    "\"multi_query_group_num\":2"

TEST(test_arch_io_refuses_unsupported_config_fields_by_name)
{
    mf_err e;
    CHECK_OK(parse("{" BLOOM "}", &e));
    CHECK_INT(parse("{" BLOOM ",\n\"apply_residual_connection_post_layernorm\": true}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"apply_residual_connection_post_layernorm\": true is not supported");
    CHECK_INT(e.line, 2); /* where the key is */
    CHECK_OK(parse("{" BLOOM ",\"slow_but_exact\":true}", &e)); /* with pretraining_tp 1 it changes nothing */
    CHECK_INT(parse("{" BLOOM ",\"slow_but_exact\":true,\"pretraining_tp\":4}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"slow_but_exact\": true with \"pretraining_tp\" 4");
    CHECK_INT(parse("{" BLOOM ",\"hidden_dropout\":0.1}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"hidden_dropout\": 0.1 is not supported");

    CHECK_OK(parse("{" GLM "}", &e));
    CHECK_INT(parse("{" GLM ",\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2}}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"rope_scaling\" of type 'dynamic'");
    CHECK_OK(parse("{" GLM ",\"partial_rotary_factor\":0.3}", &e)); /* int(8 * 0.3) = 2 rotary dims, as transformers */
    CHECK_INT(parse("{" GLM ",\"partial_rotary_factor\":0.4}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"partial_rotary_factor\" 0.4 gives 3 rotary dims");
    CHECK_INT(parse("{" GLM ",\"hidden_act\":\"gelu\"}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"hidden_act\" 'gelu'");

    CHECK_OK(parse("{" CHATGLM2 "}", &e));
    CHECK_INT(parse("{" CHATGLM2 ",\"quantization_bit\":4}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"quantization_bit\": 4 is not supported");
    CHECK_INT(parse("{" CHATGLM2 ",\"pre_seq_len\":128}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"pre_seq_len\" is set");
    CHECK_INT(parse("{" CHATGLM2 ",\"add_bias_linear\":true}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "add_bias_linear");
    CHECK_INT(parse("{" CHATGLM2 ",\"rmsnorm\":false}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"rmsnorm\": false");
    CHECK_INT(parse("{" CHATGLM2 ",\"apply_residual_connection_post_layernorm\":true}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "apply_residual_connection_post_layernorm");
    /* ChatGLM-6B v1 shares model_type chatglm and the class name: told apart by its keys, not misread */
    mf_json *j = NULL;
    const char *v1 = "{\"architectures\":[\"ChatGLMModel\"],\"model_type\":\"chatglm\",\"vocab_size\":130528,"
                     "\"hidden_size\":4096,\"num_layers\":28,\"num_attention_heads\":32,\"inner_hidden_size\":16384,"
                     "\"position_encoding_2d\":true}";
    REQUIRE(mf_json_parse(&j, v1, strlen(v1), "config.json", &e) == 0);
    mf_model_config c;
    CHECK_OK(mf_modelio_config_parse(&c, NULL, j, "config.json", &e));
    CHECK_INT(c.arch, MF_ARCH_CHATGLM);
    CHECK_INT(c.intermediate_size, 16384);
    mf_json_free(j);
    CHECK_INT(parse("{\"architectures\":[\"Glm4ForCausalLM\"]," GLM_KEYS "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "'Glm4ForCausalLM'");
}

/* Load, compute logits, save (the full model, or the adapter); transformers / peft / the
 * ChatGLM2 reference load the saved directory and must compute the same logits. */
static void add_check(char *batch, size_t cap, size_t *k, const char *tmp, const char *base, const char *adapter,
                      int i)
{
    char dir[1024], lj[1024];
    snprintf(dir, sizeof dir, "%s/out%d", tmp, i);
    snprintf(lj, sizeof lj, "%s/logits%d.json", tmp, i);
    mf_model *m = load(fx(base));
    mf_err err;
    if (adapter) {
        mf_modelio_peft p;
        REQUIRE(mf_modelio_load_adapter(m, &p, fx(adapter), &err) == 0);
        CHECK_OK(mio_dump_logits(m, lj, &err));
        CHECK_OK(mf_modelio_save_adapter(m, dir, &p, NULL, &err));
        *k += (size_t)snprintf(batch + *k, cap - *k, "%s{\"model\":\"%s\",\"adapter\":\"%s\",\"logits\":\"%s\"}",
                               i ? "," : "", fx(base), dir, lj);
    } else {
        CHECK_OK(mio_dump_logits(m, lj, &err));
        mf_modelio_write_opts o = {MF_SAFETENSORS_F32, i == 2 ? 20000 : 0, 0}; /* GLM: sharded */
        CHECK_OK(mf_modelio_save(m, dir, &o, NULL, &err));
        *k += (size_t)snprintf(batch + *k, cap - *k, "%s{\"model\":\"%s\",\"logits\":\"%s\"}", i ? "," : "", dir, lj);
    }
    mf_model_free(m);
}

TEST(test_arch_io_exports_load_in_transformers_peft_and_the_reference_with_medflow_logits)
{
    if (!mf_test_python_has("torch transformers peft")) return;
    const char *tmp = mf_test_tmpdir();
    static char batch[16384];
    size_t k = (size_t)snprintf(batch, sizeof batch, "[");
    add_check(batch, sizeof batch, &k, tmp, "bloom", NULL, 0);
    add_check(batch, sizeof batch, &k, tmp, "bloom", "bloom_lora", 1);
    add_check(batch, sizeof batch, &k, tmp, "glm", NULL, 2);
    add_check(batch, sizeof batch, &k, tmp, "glm", "glm_lora", 3);
    add_check(batch, sizeof batch, &k, tmp, "chatglm2", NULL, 4);
    add_check(batch, sizeof batch, &k, tmp, "chatglm2", "chatglm2_lora", 5);
    /* the reward model: medflow's reward against transformers', then its export back in transformers */
    mf_model *m = NULL;
    mf_modelio_meta meta;
    mf_err err;
    REQUIRE(mf_modelio_load(&m, &meta, fx("bloom_rm"), &err) == 0);
    CHECK_INT(meta.score_head, 1);
    mf_modelio_meta_free(&meta);
    mf_json *ref = NULL;
    REQUIRE(mf_json_parse_file(&ref, fx("bloom_rm_ref.json"), &err) == 0);
    int32_t ids[9];
    const mf_json *ri = mf_json_get(ref, "input_ids");
    for (int i = 0; i < 9; i++) ids[i] = (int32_t)mf_json_int(ri->items[i], 0);
    mf_k_batch b = {.B = 1, .T = 9, .input_ids = ids};
    mf_k_outputs o;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_VALUES, &o, &err) == 0);
    CHECK_NEAR(o.reward[0], mf_json_get_num(ref, "reward", 99), 0, 1e-5);
    char dir[1024], lj[1024];
    snprintf(dir, sizeof dir, "%s/rm", tmp);
    snprintf(lj, sizeof lj, "%s/reward.json", tmp);
    /* check_export feeds ids (7 i + 3) mod V: medflow's reward on those */
    for (int i = 0; i < 9; i++) ids[i] = (7 * i + 3) % 32;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_VALUES, &o, &err) == 0);
    FILE *f = fopen(lj, "w");
    REQUIRE(f);
    fprintf(f, "{\"input_ids\": [3,10,17,24,31,6,13,20,27], \"logits\": [%.9g]}\n", o.reward[0]);
    fclose(f);
    CHECK_OK(mf_modelio_save(m, dir, NULL, NULL, &err));
    char *cj = mf_path_join(dir, "config.json"), *txt = mf_test_read(cj);
    CHECK_CONTAINS(txt, "BloomForSequenceClassification");
    free(txt);
    free(cj);
    mf_json_free(ref);
    mf_model_free(m);
    k += (size_t)snprintf(batch + k, sizeof batch - k, ",{\"model\":\"%s\",\"logits\":\"%s\"}]", dir, lj);
    mio_check_export_batch(tmp, batch, 7);
}
