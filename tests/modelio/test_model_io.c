/* tests/modelio/test_model_io.c — HF config/weights/PEFT I/O against directories
 * written by transformers and peft (tests/modelio/gen_model_io_fixtures.py), and
 * exports checked by loading them back in transformers (tests/modelio/check_export.py). */
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
    snprintf(p[k], sizeof p[k], "%s/tests/modelio/fixtures/model_io/%s", mf_test_root(), name);
    return p[k];
}

/* Expected params with data allocated; pointer array for the API. */
typedef struct { mf_k_param *p; mf_k_param **ptr; size_t n; } plist;

static void plist_alloc(plist *l)
{
    l->ptr = calloc(l->n ? l->n : 1, sizeof *l->ptr);
    for (size_t i = 0; i < l->n; i++) {
        l->p[i].data = calloc(l->p[i].numel, sizeof(float));
        l->ptr[i] = &l->p[i];
    }
}
static void plist_free(plist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->p[i].data);
    free(l->p);
    free(l->ptr);
}

/* Read config + weights of an HF dir into a fresh plist. */
static int load_dir(plist *l, mf_model_config *cfg, const char *dir, mf_err *err)
{
    memset(l, 0, sizeof *l);
    mf_modelio_meta meta;
    int rc = mf_modelio_read_config(cfg, &meta, dir, err);
    if (rc) return rc;
    mf_modelio_meta_free(&meta);
    if ((rc = mf_modelio_expected_params(&l->p, &l->n, cfg, err))) return rc;
    plist_alloc(l);
    mf_safetensors_set *s = NULL;
    if ((rc = mf_safetensors_set_open(&s, dir, "model", err))) return rc;
    rc = mf_modelio_read_params(l->ptr, l->n, s, cfg->arch, "", err);
    mf_safetensors_set_close(s);
    return rc;
}

static mf_k_param *find(plist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].name, name)) return &l->p[i];
    return NULL;
}

TEST(test_model_io_reads_llama_config_from_transformers)
{
    mf_model_config c;
    mf_modelio_meta meta;
    mf_err err;
    REQUIRE(mf_modelio_read_config(&c, &meta, fx("llama"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_LLAMA);
    CHECK_INT(c.vocab_size, 32);
    CHECK_INT(c.hidden_size, 16);
    CHECK_INT(c.intermediate_size, 24);
    CHECK_INT(c.num_hidden_layers, 2);
    CHECK_INT(c.num_attention_heads, 4);
    CHECK_INT(c.num_key_value_heads, 2);
    CHECK_INT(c.head_dim, 4);
    CHECK_NEAR(c.rope_theta, 10000.0, 0, 0);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0, 0);
    CHECK_INT(c.bos_token_id, 1);
    CHECK_INT(c.eos_token_id, 2);
    CHECK_INT(c.pad_token_id, -1);
    CHECK_INT(c.attention_bias, 0);
    CHECK_INT(c.tie_word_embeddings, 0);
    CHECK_STR(meta.architecture, "LlamaForCausalLM");
    CHECK_STR(meta.dtype, "float32");
    CHECK(meta.tokenizer_json == NULL);
    mf_modelio_meta_free(&meta);

    REQUIRE(mf_modelio_read_config(&c, &meta, fx("qwen2"), &err) == 0);
    CHECK_INT(c.arch, MF_ARCH_QWEN2);
    CHECK_INT(c.attention_bias, 1);
    CHECK_INT(c.tie_word_embeddings, 1);
    CHECK_NEAR(c.rope_theta, 1e6, 0, 0);
    mf_modelio_meta_free(&meta);
}

TEST(test_model_io_records_tokenizer_files)
{
    const char *d = mf_test_tmpdir();
    char p[1024];
    char *cfg = mf_test_read(fx("llama/config.json"));
    snprintf(p, sizeof p, "%s/config.json", d);
    mf_test_write(p, cfg);
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    mf_test_write(p, "{}");
    free(cfg);
    mf_model_config c;
    mf_modelio_meta meta;
    mf_err err;
    REQUIRE(mf_modelio_read_config(&c, &meta, d, &err) == 0);
    CHECK_STR(meta.tokenizer_json, p);
    CHECK(meta.tokenizer_config == NULL);
    mf_modelio_meta_free(&meta);
}

TEST(test_model_io_loads_every_tensor_and_rewrites_identical_bytes)
{
    plist l;
    mf_model_config c;
    mf_err err;
    int rc = load_dir(&l, &c, fx("llama"), &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(l.n, 1 + 2 * 9 + 1 + 1);
    mf_k_param *k = find(&l, "model.layers.1.self_attn.k_proj.weight");
    REQUIRE(k);
    CHECK_INT(k->shape[0], 8);
    CHECK_INT(k->shape[1], 16);
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_modelio_write_dir(out, &c, l.ptr, l.n, NULL, NULL, &err));
    /* python's safetensors wrote the same tensors with the same metadata: identical files */
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", fx("llama"));
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    CHECK_OK(mf_read_file(a, &x, &lx, &err));
    CHECK_OK(mf_read_file(b, &y, &ly, &err));
    CHECK(lx == ly && x && y && !memcmp(x, y, lx));
    free(x);
    free(y);
    /* our config reads back to the same model config */
    mf_model_config c2;
    CHECK_OK(mf_modelio_read_config(&c2, NULL, out, &err));
    CHECK(!memcmp(&c, &c2, sizeof c));
    plist_free(&l);
}

TEST(test_model_io_splits_baichuan_w_pack_and_fuses_it_back)
{
    plist bl, ll;
    mf_model_config bc, lc;
    mf_err err;
    int rc = load_dir(&bl, &bc, fx("baichuan"), &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(bc.arch, MF_ARCH_BAICHUAN);
    CHECK_INT(bc.num_key_value_heads, 4);
    REQUIRE(load_dir(&ll, &lc, fx("llama_mha"), &err) == 0);
    REQUIRE(bl.n == ll.n);
    /* every param equals the LLaMA it was built from, bit for bit */
    for (size_t i = 0; i < bl.n; i++) {
        mf_k_param *o = find(&ll, bl.p[i].name);
        REQUIRE(o);
        if (memcmp(o->data, bl.p[i].data, o->numel * sizeof(float))) mf_test_fail(__FILE__, __LINE__, "%s differs", o->name);
    }
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_modelio_write_dir(out, &bc, bl.ptr, bl.n, NULL, NULL, &err));
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", fx("baichuan"));
    char *x = mf_test_read(a), *y = mf_test_read(b);
    mf_safetensors_file *fa = NULL, *fb = NULL;
    REQUIRE(mf_safetensors_open(&fa, a, &err) == 0 && mf_safetensors_open(&fb, b, &err) == 0);
    CHECK(mf_safetensors_find(fa, "model.layers.0.self_attn.W_pack.weight") != NULL);
    CHECK(mf_safetensors_find(fa, "model.layers.0.self_attn.q_proj.weight") == NULL);
    CHECK_INT(mf_safetensors_count(fa), mf_safetensors_count(fb));
    for (size_t i = 0; i < mf_safetensors_count(fb); i++) {
        const mf_safetensors_tensor *t = mf_safetensors_at(fb, i), *u = mf_safetensors_find(fa, t->name);
        REQUIRE(u);
        CHECK(u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes));
    }
    char *cj = mf_path_join(out, "config.json");
    char *cfgtxt = mf_test_read(cj);
    CHECK_CONTAINS(cfgtxt, "\"BaichuanForCausalLM\"");
    free(cfgtxt);
    free(cj);
    mf_safetensors_close(fa);
    mf_safetensors_close(fb);
    free(x);
    free(y);
    plist_free(&bl);
    plist_free(&ll);
}

TEST(test_model_io_reads_sharded_qwen2_with_biases_and_tied_head)
{
    plist l;
    mf_model_config c;
    mf_err err;
    int rc = load_dir(&l, &c, fx("qwen2"), &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(l.n, 1 + 2 * 12 + 1);
    CHECK(find(&l, "lm_head.weight") == NULL);
    CHECK(find(&l, "model.layers.0.self_attn.v_proj.bias") != NULL);
    plist_free(&l);
}

TEST(test_model_io_missing_tensor_and_wrong_shape_are_named)
{
    plist l;
    mf_model_config c;
    mf_err err;
    REQUIRE(load_dir(&l, &c, fx("llama"), &err) == 0);
    const char *out = mf_test_tmpdir();
    /* write all but the last layer's down_proj */
    mf_k_param **some = calloc(l.n, sizeof *some);
    size_t k = 0;
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.p[i].name, "model.layers.1.mlp.down_proj.weight")) some[k++] = l.ptr[i];
    CHECK_OK(mf_modelio_write_dir(out, &c, some, k, NULL, NULL, &err));
    plist m;
    mf_model_config c2;
    CHECK_INT(load_dir(&m, &c2, out, &err), MF_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "no tensor 'model.layers.1.mlp.down_proj.weight' (expected shape [16, 24])");
    plist_free(&m);
    /* config says intermediate_size 20, weights have 24 */
    char *cj = mf_path_join(out, "config.json");
    char *txt = mf_test_read(cj);
    char *pos = strstr(txt, "\"intermediate_size\": 24");
    REQUIRE(pos);
    memcpy(pos, "\"intermediate_size\": 20", 23);
    mf_test_write(cj, txt);
    CHECK_OK(mf_modelio_write_params(out, "model", l.ptr, l.n, c.arch, "", NULL, &err));
    CHECK_INT(load_dir(&m, &c2, out, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "tensor 'model.layers.0.mlp.gate_proj.weight': expected shape [20, 16], checkpoint has [24, 16]");
    plist_free(&m);
    free(txt);
    free(cj);
    free(some);
    plist_free(&l);
}

static int parse_cfg(const char *text, mf_err *err)
{
    mf_json *j = NULL;
    int rc = mf_json_parse(&j, text, strlen(text), "config.json", err);
    if (rc) return rc;
    mf_model_config c;
    rc = mf_modelio_config_parse(&c, NULL, j, "config.json", err);
    mf_json_free(j);
    return rc;
}

#define BASE_CFG "\"hidden_size\":16,\"intermediate_size\":24,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":32"

TEST(test_model_io_config_errors_name_the_key)
{
    mf_err e;
    CHECK_OK(parse_cfg("{\"model_type\":\"llama\"," BASE_CFG "}", &e));
    CHECK_INT(parse_cfg("{\"architectures\":[\"MistralForCausalLM\"]," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "unsupported \"architectures\" 'MistralForCausalLM'");
    CHECK_INT(e.line, 1);
    CHECK_INT(parse_cfg("{\"model_type\":\"gpt2\"," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"model_type\" 'gpt2'");
    CHECK_INT(parse_cfg("{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"qwen2\"," BASE_CFG "}", &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "\"model_type\" is 'qwen2'");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"rope_scaling\" of type 'linear'");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"rope_parameters\":{\"rope_type\":\"yarn\"}," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "rope_parameters.rope_type");
    CHECK_INT(parse_cfg("{\"model_type\":\"qwen2\",\"use_sliding_window\":true," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "use_sliding_window");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"hidden_act\":\"gelu\"," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"hidden_act\" 'gelu'");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"attention_bias\":true," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "attention_bias");
    CHECK_INT(parse_cfg("{\"model_type\":\"baichuan\",\"z_loss_weight\":0," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "Baichuan2");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"hidden_size\":16}", &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "missing required key \"vocab_size\"");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"num_key_value_heads\":3," BASE_CFG "}", &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "must divide");
    CHECK_INT(parse_cfg("{\"model_type\":\"llama\",\"vocab_size\":\"32\",\"hidden_size\":16}", &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "\"vocab_size\": expected an integer");
    CHECK_INT(parse_cfg("[]", &e), MF_EINVAL);
    CHECK_INT(parse_cfg("{\"architectures\":[\"LlamaForSequenceClassification\"],\"id2label\":{\"0\":\"a\",\"1\":\"b\"}," BASE_CFG "}", &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "2 labels");
    /* LLaMA-3 style eos list: first id */
    mf_json *j = NULL;
    const char *t = "{\"model_type\":\"llama\",\"eos_token_id\":[7,8]," BASE_CFG "}";
    REQUIRE(mf_json_parse(&j, t, strlen(t), "c", &e) == 0);
    mf_model_config c;
    CHECK_OK(mf_modelio_config_parse(&c, NULL, j, "c", &e));
    CHECK_INT(c.eos_token_id, 7);
    mf_json_free(j);
}

TEST(test_model_io_reads_peft_adapter_and_writes_it_back)
{
    mf_modelio_peft p;
    mf_err err;
    int rc = mf_modelio_peft_read(&p, fx("lora"), MF_ARCH_LLAMA, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(p.lora.rank, 4);
    CHECK_NEAR(p.lora.alpha, 8.0, 0, 0);
    CHECK_INT(p.lora.target, MF_MOD_Q | MF_MOD_V | MF_MOD_DOWN);
    CHECK_STR(p.base_digest, "");
    mf_model_config c;
    REQUIRE(mf_modelio_read_config(&c, NULL, fx("llama"), &err) == 0);
    plist l = {0};
    REQUIRE(mf_modelio_lora_params(&l.p, &l.n, &c, &p.lora, &err) == 0);
    CHECK_INT(l.n, 2 * 3 * 2);
    plist_alloc(&l);
    mf_safetensors_set *s = NULL;
    REQUIRE(mf_safetensors_set_open(&s, fx("lora"), "adapter_model", &err) == 0);
    CHECK_OK(mf_modelio_read_params(l.ptr, l.n, s, c.arch, "base_model.model.", &err));
    mf_safetensors_set_close(s);
    mf_k_param *b = find(&l, "model.layers.1.mlp.down_proj.lora_B.weight");
    REQUIRE(b);
    CHECK_INT(b->shape[0], 16);
    CHECK_INT(b->shape[1], 4);
    CHECK(b->data[0] != 0.0f); /* init_lora_weights=False: B is random */
    const char *out = mf_test_tmpdir();
    snprintf(p.base_digest, sizeof p.base_digest, "sha256:%064d", 0);
    CHECK_OK(mf_modelio_peft_write_config(out, &p, c.arch, &err));
    CHECK_OK(mf_modelio_write_params(out, "adapter_model", l.ptr, l.n, c.arch, "base_model.model.", NULL, &err));
    mf_modelio_peft q;
    CHECK_OK(mf_modelio_peft_read(&q, out, MF_ARCH_LLAMA, &err));
    CHECK_INT(q.lora.rank, 4);
    CHECK_INT(q.lora.target, p.lora.target);
    CHECK_STR(q.base_digest, p.base_digest);
    /* same tensor bytes as peft wrote */
    char a[1024], bb[1024];
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
    snprintf(bb, sizeof bb, "%s/adapter_model.safetensors", fx("lora"));
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    CHECK_OK(mf_read_file(a, &x, &lx, &err));
    CHECK_OK(mf_read_file(bb, &y, &ly, &err));
    CHECK(lx == ly && !memcmp(x, y, lx));
    free(x);
    free(y);
    plist_free(&l);
}

TEST(test_model_io_peft_refuses_unsupported_options_and_bad_base_refs)
{
    const char *d = mf_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    mf_test_write(p, "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":8,\"lora_alpha\":16,"
                     "\"target_modules\":[\"q_proj\"],\"use_dora\":true}");
    mf_modelio_peft q;
    mf_err e;
    CHECK_INT(mf_modelio_peft_read(&q, d, MF_ARCH_LLAMA, &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "\"use_dora\"");
    mf_test_write(p, "{\"peft_type\":\"PREFIX_TUNING\",\"r\":8}");
    CHECK_INT(mf_modelio_peft_read(&q, d, MF_ARCH_LLAMA, &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "PREFIX_TUNING");
    mf_test_write(p, "{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"c_attn\"]}");
    CHECK_INT(mf_modelio_peft_read(&q, d, MF_ARCH_LLAMA, &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "unknown module 'c_attn'");
    mf_test_write(p, "{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"W_pack\",\"o_proj\"]}");
    CHECK_OK(mf_modelio_peft_read(&q, d, MF_ARCH_BAICHUAN, &e));
    CHECK_INT(q.lora.target, MF_MOD_Q | MF_MOD_K | MF_MOD_V | MF_MOD_O);
    CHECK_INT(mf_modelio_base_ref_write(d, "sha256:abc", &e), MF_EINVAL);
    snprintf(p, sizeof p, "%s/base.json", d);
    mf_test_write(p, "{\"base_digest\":\"md5:00\"}");
    char dig[80];
    CHECK_INT(mf_modelio_base_ref_read(dig, sizeof dig, d, &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "base_digest");
}

/* The exports load in transformers/peft and compute the reference logits.
 * Runs only when python3 can import transformers and peft. */
/* Part 1: directories medflow wrote from parameters read out of the fixtures,
 * compared in transformers with the fixture directories themselves. */
static void add_export_checks(const char *tmp, char *batch, size_t cap, size_t *k)
{
    mf_err err;
    char d[6][1024];
    const char *names[6] = {"llama_f32", "llama_bf16", "qwen2_sharded", "baichuan", "lora", "batch.json"};
    for (int i = 0; i < 6; i++) snprintf(d[i], sizeof d[i], "%s/%s", tmp, names[i]);
    plist l;
    mf_model_config c;
    REQUIRE(load_dir(&l, &c, fx("llama"), &err) == 0);
    CHECK_OK(mf_modelio_write_dir(d[0], &c, l.ptr, l.n, NULL, NULL, &err));
    mf_modelio_write_opts bf = {.dtype = MF_SAFETENSORS_BF16};
    CHECK_OK(mf_modelio_write_dir(d[1], &c, l.ptr, l.n, &bf, NULL, &err));
    plist_free(&l);
    REQUIRE(load_dir(&l, &c, fx("qwen2"), &err) == 0);
    mf_modelio_write_opts sh = {.dtype = MF_SAFETENSORS_F32, .max_shard_bytes = 2000};
    CHECK_OK(mf_modelio_write_dir(d[2], &c, l.ptr, l.n, &sh, NULL, &err));
    char *idx = mf_path_join(d[2], "model.safetensors.index.json");
    CHECK(mf_is_file(idx));
    free(idx);
    plist_free(&l);
    REQUIRE(load_dir(&l, &c, fx("baichuan"), &err) == 0);
    CHECK_OK(mf_modelio_write_dir(d[3], &c, l.ptr, l.n, NULL, NULL, &err));
    plist_free(&l);
    mf_modelio_peft p;
    REQUIRE(mf_modelio_peft_read(&p, fx("lora"), MF_ARCH_LLAMA, &err) == 0);
    REQUIRE(mf_modelio_read_config(&c, NULL, fx("llama"), &err) == 0);
    memset(&l, 0, sizeof l);
    REQUIRE(mf_modelio_lora_params(&l.p, &l.n, &c, &p.lora, &err) == 0);
    plist_alloc(&l);
    mf_safetensors_set *s = NULL;
    REQUIRE(mf_safetensors_set_open(&s, fx("lora"), "adapter_model", &err) == 0);
    CHECK_OK(mf_modelio_read_params(l.ptr, l.n, s, c.arch, "base_model.model.", &err));
    mf_safetensors_set_close(s);
    CHECK_OK(mf_modelio_peft_write_config(d[4], &p, c.arch, &err));
    CHECK_OK(mf_modelio_write_params(d[4], "adapter_model", l.ptr, l.n, c.arch, "base_model.model.", NULL, &err));
    plist_free(&l);

    /* bf16 weights: logits of magnitude ~4 move by a few 1e-2; 0.1 still catches any wrong tensor */
    *k += (size_t)snprintf(batch + *k, cap - *k,
             "{\"model\":\"%s\",\"ref\":\"%s\"},{\"model\":\"%s\",\"ref\":\"%s\",\"tol\":0.1},"
             "{\"model\":\"%s\",\"ref\":\"%s\"},{\"model\":\"%s\",\"ref\":\"%s\"},"
             "{\"model\":\"%s\",\"adapter\":\"%s\",\"ref\":\"%s\",\"ref_adapter\":\"%s\"}",
             d[0], fx("llama"), d[1], fx("llama"), d[2], fx("qwen2"), d[3], fx("llama_mha"), fx("llama"), d[4],
             fx("llama"), fx("lora"));
}

/* medflow loads HF dirs into its model, computes logits, saves the model back;
 * transformers (+peft) loads what medflow saved and must compute the logits
 * medflow printed. Tolerance 1e-4 absolute: both fp32, logits of magnitude ~4. */
static void add_medflow_checks(const char *tmp, char *batch, size_t cap, size_t *kp)
{
    const char *srcs[3] = {"llama", "qwen2", "baichuan"};
    size_t k = *kp;
    mf_err err;
    for (int i = 0; i < 4; i++) {
        char dir[1024], lj[1024], ad[1024];
        snprintf(dir, sizeof dir, "%s/m%d", tmp, i);
        snprintf(lj, sizeof lj, "%s/logits%d.json", tmp, i);
        snprintf(ad, sizeof ad, "%s/adapter%d", tmp, i);
        mf_model *m = NULL;
        int rc = mf_modelio_load(&m, NULL, fx(srcs[i == 3 ? 0 : i]), &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        REQUIRE(rc == 0);
        if (i < 3) {
            CHECK_OK(mio_dump_logits(m, lj, &err));
            CHECK_OK(mf_modelio_save(m, dir, NULL, NULL, &err));
            k += (size_t)snprintf(batch + k, cap - k, ",{\"model\":\"%s\",\"logits\":\"%s\"}", dir, lj);
        } else {
            mf_modelio_peft p;
            rc = mf_modelio_load_adapter(m, &p, fx("lora"), &err);
            if (rc) fprintf(stderr, "%s\n", err.msg);
            REQUIRE(rc == 0);
            CHECK_OK(mio_dump_logits(m, lj, &err));
            CHECK_OK(mf_modelio_save_adapter(m, ad, &p, NULL, &err));
            k += (size_t)snprintf(batch + k, cap - k, ",{\"model\":\"%s\",\"adapter\":\"%s\",\"logits\":\"%s\"}",
                                  fx("llama"), ad, lj);
        }
        mf_model_free(m);
    }
    /* reward model: medflow's reward against transformers', then its saved dir back in transformers */
    {
        mf_model *m = NULL;
        char dir[1024], lj[1024];
        snprintf(dir, sizeof dir, "%s/rm", tmp);
        snprintf(lj, sizeof lj, "%s/reward.json", tmp);
        mf_modelio_meta meta;
        int rc = mf_modelio_load(&m, &meta, fx("llama_rm"), &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        REQUIRE(rc == 0);
        CHECK_INT(meta.score_head, 1);
        mf_modelio_meta_free(&meta);
        int32_t ids[9];
        for (int i = 0; i < 9; i++) ids[i] = (7 * i + 3) % 32;
        mf_k_batch b = {.B = 1, .T = 9, .input_ids = ids};
        mf_k_outputs o;
        REQUIRE(mf_model_forward(m, &b, MF_FWD_VALUES, &o, &err) == 0);
        mf_json *ref = NULL;
        char rp[1024];
        snprintf(rp, sizeof rp, "%s_ref.json", fx("llama_rm"));
        REQUIRE(mf_json_parse_file(&ref, rp, &err) == 0);
        CHECK_NEAR(o.reward[0], mf_json_get_num(ref, "reward", 99), 0, 1e-5); /* fp32, |reward| ~ 0.24 */
        mf_json_free(ref);
        FILE *f = fopen(lj, "w");
        REQUIRE(f);
        fprintf(f, "{\"input_ids\": [3,10,17,24,31,6,13,20,27], \"logits\": [%.9g]}\n", o.reward[0]);
        fclose(f);
        CHECK_OK(mf_modelio_save(m, dir, NULL, NULL, &err));
        char *cj = mf_path_join(dir, "config.json"), *txt = mf_test_read(cj);
        CHECK_CONTAINS(txt, "LlamaForSequenceClassification");
        free(txt);
        free(cj);
        mf_model_free(m);
        k += (size_t)snprintf(batch + k, cap - k, ",{\"model\":\"%s\",\"logits\":\"%s\"}", dir, lj);
    }
    *kp = k;
}

/* The exports load in transformers/peft and compute the reference logits, and
 * medflow's own logits/reward match transformers on the directories it saved.
 * One python start for all ten checks. Runs only when python3 has
 * transformers and peft (found without importing them: that costs seconds). */
TEST(test_model_io_exports_and_medflow_logits_match_transformers)
{
    if (!mf_test_python_has("torch transformers peft")) return;
    const char *tmp = mf_test_tmpdir();
    static char batch[32768];
    size_t k = (size_t)snprintf(batch, sizeof batch, "[");
    add_export_checks(tmp, batch, sizeof batch, &k);
    add_medflow_checks(tmp, batch, sizeof batch, &k);
    snprintf(batch + k, sizeof batch - k, "]");
    mio_check_export_batch(tmp, batch, 10);
}
