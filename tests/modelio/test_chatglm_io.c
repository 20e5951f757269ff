/* tests/modelio/test_chatglm_io.c — ChatGLM-6B (v1) directories in the release's layout
 * (tests/modelio/gen_chatglm_io_fixtures.py: THUDM/chatglm-6b's config keys, sharded safetensors
 * with its f16/f32 dtypes and inv_freq buffers, a PEFT LoRA adapter): the config read, the logits
 * against the independent reference tests/kernels/chatglm_ref.py, the keys refused by name, and
 * exports (full, LoRA, P-Tuning prefix) loaded back by that reference with medflow's logits. */
#include "tests/harness.h"
#include "modelio/modelio.h"
#include "modelio/model_open.h"
#include "common/fsutil.h"
#include "tests/modelio/export_check.h"

#include <math.h>
#include <stdlib.h>

static const char *fx(const char *name)
{
    static char p[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/tests/modelio/fixtures/chatglm_io/%s", mf_test_root(), name);
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

/* The fixture's ids (prompt, [gMASK], <sop>, answer) and the reference's logits under key. */
typedef struct expected {
    int32_t ids[16];
    int T, V;
    double logits[16 * 48];
} expected;

static void read_expected(expected *e, const char *key)
{
    mf_json *j = NULL;
    mf_err err;
    REQUIRE(mf_json_parse_file(&j, fx("expected.json"), &err) == 0);
    const mf_json *ids = mf_json_get(j, "input_ids"), *lg = mf_json_get(j, key);
    REQUIRE(ids && lg && ids->n <= 16 && lg->n == ids->n);
    e->T = (int)ids->n;
    e->V = (int)lg->items[0]->n;
    REQUIRE(e->V <= 48);
    for (int t = 0; t < e->T; t++) {
        e->ids[t] = (int32_t)mf_json_int(ids->items[t], 0);
        for (int v = 0; v < e->V; v++) e->logits[t * e->V + v] = mf_json_num(lg->items[t]->items[v], 0);
    }
    mf_json_free(j);
}

static double max_diff(mf_model *m, const expected *e)
{
    mf_k_batch b = {.B = 1, .T = e->T, .input_ids = e->ids};
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    REQUIRE(o.V == e->V);
    double d = 0;
    for (int i = 0; i < e->T * e->V; i++) d = fmax(d, fabs(o.logits[i] - e->logits[i]));
    return d;
}

TEST(test_chatglm_io_reads_the_chatglm6b_config)
{
    mf_model_config c;
    mf_modelio_meta meta;
    mf_err err;
    REQUIRE(mf_modelio_read_config(&c, &meta, fx("chatglm"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_CHATGLM);
    CHECK_STR(meta.architecture, "ChatGLMModel");
    CHECK_INT(c.vocab_size, 48);
    CHECK_INT(c.hidden_size, 32);
    CHECK_INT(c.intermediate_size, 48); /* inner_hidden_size */
    CHECK_INT(c.num_hidden_layers, 2);  /* num_layers */
    CHECK_INT(c.num_attention_heads, 4);
    CHECK_INT(c.max_position_embeddings, 64); /* max_sequence_length */
    CHECK_INT(c.tie_word_embeddings, 1);      /* absent: PretrainedConfig's default, as the release */
    CHECK_INT(c.bos_token_id, 44);            /* <sop> */
    CHECK_INT(c.eos_token_id, 45);            /* <eop> */
    CHECK_INT(c.mask_token_id, 40);
    CHECK_INT(c.gmask_token_id, 41);
    CHECK_INT(c.pad_token_id, 3);
    mf_modelio_meta_free(&meta);
}

TEST(test_chatglm_io_sharded_release_layout_computes_the_reference_logits)
{
    /* f16 weights and f32 LayerNorms read exactly; 1e-4: fp32 on both sides, summation order only */
    expected e;
    read_expected(&e, "logits");
    mf_model *m = load(fx("chatglm"));
    CHECK(max_diff(m, &e) <= 1e-4);
    mf_modelio_peft p;
    mf_err err;
    int rc = mf_modelio_load_adapter(m, &p, fx("chatglm_lora"), &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "%s", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(p.lora.target, MF_MOD_QKV | MF_MOD_O | MF_MOD_UP | MF_MOD_DOWN);
    read_expected(&e, "lora_logits");
    CHECK(max_diff(m, &e) <= 1e-4);
    mf_model_free(m);
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

#define V1                                                                                                             \
    "\"architectures\":[\"ChatGLMModel\"],\"model_type\":\"chatglm\",\"vocab_size\":48,\"hidden_size\":32,"            \
    "\"num_layers\":2,\"num_attention_heads\":4,\"inner_hidden_size\":48,\"bos_token_id\":44,\"mask_token_id\":40,"     \
    "\"gmask_token_id\":41"

TEST(test_chatglm_io_refuses_unsupported_v1_fields_by_name)
{
    mf_err e;
    CHECK_OK(parse("{" V1 ",\"position_encoding_2d\":true,\"quantization_bit\":0,\"pre_seq_len\":null}", &e));
    CHECK_INT(parse("{" V1 ",\n\"quantization_bit\":4}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"quantization_bit\": 4 is not supported");
    CHECK_INT(e.line, 2);
    CHECK_INT(parse("{" V1 ",\"pre_seq_len\":128,\"prefix_projection\":false}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"pre_seq_len\" is set");
    CHECK_INT(parse("{" V1 ",\"position_encoding_2d\":false}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"position_encoding_2d\": false");
    CHECK_INT(parse("{\"architectures\":[\"ChatGLMModel\"],\"model_type\":\"chatglm\",\"hidden_size\":32,"
                    "\"num_layers\":2,\"num_attention_heads\":4,\"position_encoding_2d\":true}", &e),
              MF_EINVAL);
    CHECK_CONTAINS(e.msg, "missing required key \"vocab_size\"");
}

TEST(test_chatglm_io_refuses_pickled_checkpoints_with_the_conversion_pointer)
{
    const char *tmp = mf_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", tmp);
    mf_test_write(p, "{" V1 ",\"position_encoding_2d\":true}");
    snprintf(p, sizeof p, "%s/pytorch_model.bin.index.json", tmp);
    mf_test_write(p, "{}");
    mf_model *m = NULL;
    mf_err e;
    CHECK_INT(mf_modelio_load(&m, NULL, tmp, &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "pytorch_model*.bin");
    CHECK_CONTAINS(e.msg, "docs/model.md");
}

/* The export's config and weights: the release's names and keys. */
static void check_export_layout(const char *dir)
{
    char *cj = mf_path_join(dir, "config.json"), *txt = mf_test_read(cj);
    CHECK_CONTAINS(txt, "\"ChatGLMModel\"");
    CHECK_CONTAINS(txt, "\"position_encoding_2d\": true");
    CHECK_CONTAINS(txt, "\"inner_hidden_size\": 48");
    CHECK_CONTAINS(txt, "\"gmask_token_id\": 41");
    free(txt);
    free(cj);
    mf_safetensors_set *s = NULL;
    mf_err err;
    REQUIRE(mf_safetensors_set_open(&s, dir, "model", &err) == 0);
    CHECK(mf_safetensors_set_find(s, "transformer.layers.1.attention.rotary_emb.inv_freq") != NULL);
    CHECK(mf_safetensors_set_find(s, "transformer.layers.0.attention.query_key_value.bias") != NULL);
    CHECK(mf_safetensors_set_find(s, "transformer.final_layernorm.bias") != NULL);
    mf_safetensors_set_close(s);
}

static void dump_logits(mf_model *m, const expected *e, const char *path)
{
    mf_k_batch b = {.B = 1, .T = e->T, .input_ids = e->ids};
    mf_k_outputs o;
    mf_err err;
    REQUIRE(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) == 0);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fprintf(f, "{\"input_ids\": [");
    for (int t = 0; t < e->T; t++) fprintf(f, "%s%d", t ? "," : "", e->ids[t]);
    fprintf(f, "], \"logits\": [");
    for (int t = 0; t < e->T; t++) {
        fprintf(f, "%s[", t ? "," : "");
        for (int v = 0; v < o.V; v++) fprintf(f, "%s%.9g", v ? "," : "", o.logits[(size_t)t * o.V + v]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    fclose(f);
}

TEST(test_chatglm_io_exports_load_in_the_reference_with_medflow_logits)
{
    const char *tmp = mf_test_tmpdir();
    expected e;
    read_expected(&e, "logits");
    char full[1024], lora[1024], pre[1024], l0[1024], l1[1024], l2[1024];
    snprintf(full, sizeof full, "%s/full", tmp);
    snprintf(lora, sizeof lora, "%s/lora", tmp);
    snprintf(pre, sizeof pre, "%s/prefix", tmp);
    snprintf(l0, sizeof l0, "%s/l0.json", tmp);
    snprintf(l1, sizeof l1, "%s/l1.json", tmp);
    snprintf(l2, sizeof l2, "%s/l2.json", tmp);
    mf_err err;

    /* full: written back in the release's layout, and read again identically */
    mf_model *m = load(fx("chatglm"));
    dump_logits(m, &e, l0);
    mf_modelio_write_opts wo = {MF_SAFETENSORS_F32, 20000, 0}; /* sharded, as the release */
    CHECK_OK(mf_modelio_save(m, full, &wo, NULL, &err));
    check_export_layout(full);
    mf_model *r = load(full);
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i), *q = mf_model_param(r, i);
        CHECK(!strcmp(p->name, q->name) && !memcmp(p->data, q->data, p->numel * sizeof(float)));
    }
    mf_model_free(r);

    /* LoRA as PEFT names it */
    mf_modelio_peft p;
    REQUIRE(mf_modelio_load_adapter(m, &p, fx("chatglm_lora"), &err) == 0);
    dump_logits(m, &e, l1);
    CHECK_OK(mf_modelio_save_adapter(m, lora, &p, NULL, &err));
    mf_model_free(m);

    /* P-Tuning v2 with the release's PrefixEncoder (prefix_projection: Linear(hidden, hidden)) */
    m = load(fx("chatglm"));
    mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = 1, .prefix_hidden_size = 32, .seed = 4};
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    for (size_t i = 0; i < mf_model_num_params(m); i++) { /* visible values (B-like zeros would hide a misread) */
        mf_k_param *q = mf_model_param(m, i);
        if (q->kind == MF_PARAM_PREFIX)
            for (size_t k = 0; k < q->numel; k++) q->data[k] = 0.3f * sinf((float)(k * 7 + i));
    }
    REQUIRE(mf_model_sync(m, &err) == 0);
    dump_logits(m, &e, l2);
    CHECK_OK(mf_modelio_output_adapter(pre, m, MF_ADAPTER_PREFIX, NULL, &pc, fx("chatglm"), NULL, NULL, &err));
    mf_model_free(m);

    if (!mf_test_python_has("torch safetensors")) return;
    char batch[8192];
    snprintf(batch, sizeof batch,
             "[{\"model\":\"%s\",\"logits\":\"%s\"},{\"model\":\"%s\",\"adapter\":\"%s\",\"logits\":\"%s\"},"
             "{\"model\":\"%s\",\"adapter\":\"%s\",\"logits\":\"%s\"}]",
             full, l0, fx("chatglm"), lora, l1, fx("chatglm"), pre, l2);
    mio_check_export_batch(tmp, batch, 3);
}
