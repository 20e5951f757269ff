/*
 * modelio/hf_config.c — HF config.json <-> mf_model_config, and the list of
 * base parameters a config implies.
 *
 * Reads both transformers 4.x spellings (rope_theta, rope_scaling, torch_dtype)
 * and 5.x ones (rope_parameters, dtype). Anything the kernels do not compute
 * is refused with MF_EUNSUPPORTED naming the key and its position, rather than
 * silently producing a different model. See modelio/modelio.h.
 */
#include "modelio/modelio.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

void mf_modelio_meta_free(mf_modelio_meta *m)
{
    if (!m) return;
    free(m->dir);
    free(m->tokenizer_json);
    free(m->tokenizer_config);
    free(m->generation_config);
    memset(m, 0, sizeof *m);
}

static const struct {
    const char *arch_name, *model_type;
    mf_arch arch;
    int score_head; /* *ForSequenceClassification: score.weight, no lm_head */
} archs[] = {
    {"LlamaForCausalLM", "llama", MF_ARCH_LLAMA, 0},
    {"Qwen2ForCausalLM", "qwen2", MF_ARCH_QWEN2, 0},
    {"BaichuanForCausalLM", "baichuan", MF_ARCH_BAICHUAN, 0},
    {"LlamaForSequenceClassification", "llama", MF_ARCH_LLAMA, 1},
    {"Qwen2ForSequenceClassification", "qwen2", MF_ARCH_QWEN2, 1},
};
enum { N_ARCHS = sizeof archs / sizeof archs[0] };

static int at(mf_err *err, int code, const char *path, const mf_json *node, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int at(mf_err *err, int code, const char *path, const mf_json *node, const char *fmt, ...)
{
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mf_err_at(err, code, path, node ? node->line : 0, node ? node->col : 0, "%s", msg);
}

/* An integer member: required (def ignored) or optional (def when absent/null). */
static int get_int(int *out, const mf_json *c, const char *key, int required, int def, int min,
                   const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) {
        if (required) return at(err, MF_EINVAL, path, c, "missing required key \"%s\"", key);
        *out = def;
        return 0;
    }
    if (v->type != MF_JSON_INT || v->i < min || v->i > INT32_MAX)
        return at(err, MF_EINVAL, path, v, "\"%s\": expected an integer >= %d, found %s", key, min,
                  v->type == MF_JSON_INT ? "an out-of-range integer" : mf_json_type_name(v->type));
    *out = (int)v->i;
    return 0;
}

static int get_num(double *out, const mf_json *c, const char *key, double def, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) { *out = def; return 0; }
    if (!mf_json_is_num(v) || !(mf_json_num(v, 0) > 0))
        return at(err, MF_EINVAL, path, v, "\"%s\": expected a positive number, found %s", key, mf_json_type_name(v->type));
    *out = mf_json_num(v, def);
    return 0;
}

static int get_bool(int *out, const mf_json *c, const char *key, int def, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) { *out = def; return 0; }
    if (v->type != MF_JSON_BOOL) return at(err, MF_EINVAL, path, v, "\"%s\": expected true or false, found %s", key, mf_json_type_name(v->type));
    *out = v->b;
    return 0;
}

/* A token id: int, null (-1), or a list (first entry; LLaMA-3 style eos lists). */
static int get_token(int *out, const mf_json *c, const char *key, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    *out = -1;
    if (!v || v->type == MF_JSON_NULL) return 0;
    if (v->type == MF_JSON_ARRAY) v = v->n ? v->items[0] : NULL;
    if (!v) return 0;
    if (v->type != MF_JSON_INT || v->i < 0 || v->i > INT32_MAX)
        return at(err, MF_EINVAL, path, v, "\"%s\": expected a token id, found %s", key, mf_json_type_name(v->type));
    *out = (int)v->i;
    return 0;
}

int mf_modelio_config_parse(mf_model_config *cfg, mf_modelio_meta *meta, const mf_json *c, const char *path,
                             mf_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!path) path = "config.json";
    if (!c || c->type != MF_JSON_OBJECT) return at(err, MF_EINVAL, path, c, "expected a JSON object");
    const mf_json *archv = mf_json_get(c, "architectures"), *mt = mf_json_get(c, "model_type");
    const char *arch_name = NULL, *model_type = NULL;
    if (archv && archv->type != MF_JSON_NULL) {
        if (archv->type != MF_JSON_ARRAY || archv->n != 1 || archv->items[0]->type != MF_JSON_STRING)
            return at(err, MF_EINVAL, path, archv, "\"architectures\": expected a list of one class name");
        arch_name = archv->items[0]->s;
    }
    if (mt && mt->type != MF_JSON_NULL) {
        if (mt->type != MF_JSON_STRING) return at(err, MF_EINVAL, path, mt, "\"model_type\": expected a string");
        model_type = mt->s;
    }
    if (!arch_name && !model_type)
        return at(err, MF_EINVAL, path, c, "neither \"architectures\" nor \"model_type\" says what model this is");
    int k = -1;
    for (int i = 0; i < N_ARCHS && k < 0; i++)
        if ((arch_name && !strcmp(arch_name, archs[i].arch_name)) || (!arch_name && !strcmp(model_type, archs[i].model_type))) k = i;
    if (k < 0)
        return at(err, MF_EUNSUPPORTED, path, arch_name ? archv : mt,
                  "unsupported %s '%s' (supported: LlamaForCausalLM/llama, Qwen2ForCausalLM/qwen2, "
                  "BaichuanForCausalLM/baichuan, Llama/Qwen2ForSequenceClassification with one label)",
                  arch_name ? "\"architectures\"" : "\"model_type\"", arch_name ? arch_name : model_type);
    if (model_type && strcmp(model_type, archs[k].model_type))
        return at(err, MF_EINVAL, path, mt, "\"model_type\" is '%s' but \"architectures\" says %s (model_type '%s')",
                  model_type, archs[k].arch_name, archs[k].model_type);
    cfg->arch = archs[k].arch;
    int rc;
    if ((rc = get_int(&cfg->vocab_size, c, "vocab_size", 1, 0, 1, path, err)) ||
        (rc = get_int(&cfg->hidden_size, c, "hidden_size", 1, 0, 1, path, err)) ||
        (rc = get_int(&cfg->intermediate_size, c, "intermediate_size", 1, 0, 1, path, err)) ||
        (rc = get_int(&cfg->num_hidden_layers, c, "num_hidden_layers", 1, 0, 1, path, err)) ||
        (rc = get_int(&cfg->num_attention_heads, c, "num_attention_heads", 1, 0, 1, path, err)) ||
        (rc = get_int(&cfg->num_key_value_heads, c, "num_key_value_heads", 0, cfg->num_attention_heads, 1, path, err)) ||
        (rc = get_int(&cfg->head_dim, c, "head_dim", 0, 0, 1, path, err)) ||
        (rc = get_int(&cfg->max_position_embeddings, c, "max_position_embeddings", 0,
                      cfg->arch == MF_ARCH_QWEN2 ? 32768 : cfg->arch == MF_ARCH_BAICHUAN ? 4096 : 2048, 1, path, err)) ||
        (rc = get_num(&cfg->rms_norm_eps, c, "rms_norm_eps", 1e-6, path, err)) ||
        (rc = get_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 0, path, err)) ||
        (rc = get_token(&cfg->pad_token_id, c, "pad_token_id", path, err)) ||
        (rc = get_token(&cfg->bos_token_id, c, "bos_token_id", path, err)) ||
        (rc = get_token(&cfg->eos_token_id, c, "eos_token_id", path, err)))
        return rc;
    if (cfg->num_attention_heads % cfg->num_key_value_heads)
        return at(err, MF_EINVAL, path, mf_json_get(c, "num_key_value_heads"),
                  "\"num_key_value_heads\" (%d) must divide \"num_attention_heads\" (%d)", cfg->num_key_value_heads,
                  cfg->num_attention_heads);
    if (!cfg->head_dim && cfg->hidden_size % cfg->num_attention_heads)
        return at(err, MF_EINVAL, path, mf_json_get(c, "num_attention_heads"),
                  "\"hidden_size\" (%d) is not a multiple of \"num_attention_heads\" (%d) and there is no \"head_dim\"",
                  cfg->hidden_size, cfg->num_attention_heads);
    if (!cfg->head_dim) cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;

    /* activation */
    const mf_json *act = mf_json_get(c, "hidden_act");
    if (act && act->type != MF_JSON_NULL && (act->type != MF_JSON_STRING || strcmp(act->s, "silu")))
        return at(err, MF_EUNSUPPORTED, path, act, "unsupported \"hidden_act\" '%s' (only silu)",
                  act->type == MF_JSON_STRING ? act->s : mf_json_type_name(act->type));

    /* RoPE: 5.x rope_parameters, or 4.x rope_theta + rope_scaling */
    cfg->rope_theta = 10000.0;
    const mf_json *rp = mf_json_get(c, "rope_parameters"), *rs = mf_json_get(c, "rope_scaling");
    if ((rc = get_num(&cfg->rope_theta, c, "rope_theta", 10000.0, path, err))) return rc;
    if (rp && rp->type != MF_JSON_NULL) {
        if (rp->type != MF_JSON_OBJECT) return at(err, MF_EINVAL, path, rp, "\"rope_parameters\": expected an object");
        const char *rt = mf_json_get_str(rp, "rope_type", "default");
        if (strcmp(rt, "default"))
            return at(err, MF_EUNSUPPORTED, path, mf_json_get(rp, "rope_type"),
                      "unsupported \"rope_parameters.rope_type\" '%s' (only default RoPE)", rt);
        if ((rc = get_num(&cfg->rope_theta, rp, "rope_theta", cfg->rope_theta, path, err))) return rc;
    }
    if (rs && rs->type != MF_JSON_NULL) {
        const char *rt = rs->type == MF_JSON_OBJECT ? mf_json_get_str(rs, "rope_type", mf_json_get_str(rs, "type", "?")) : "?";
        if (strcmp(rt, "default"))
            return at(err, MF_EUNSUPPORTED, path, rs, "unsupported \"rope_scaling\" of type '%s' (only plain RoPE)", rt);
    }

    /* biases */
    int b = 0;
    if (cfg->arch == MF_ARCH_LLAMA) {
        if ((rc = get_bool(&b, c, "attention_bias", 0, path, err))) return rc;
        if (b) return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "attention_bias"),
                         "\"attention_bias\": true (LLaMA q/k/v/o biases) is not supported");
    }
    if ((rc = get_bool(&b, c, "mlp_bias", 0, path, err))) return rc;
    if (b) return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "mlp_bias"), "\"mlp_bias\": true is not supported");
    cfg->attention_bias = cfg->arch == MF_ARCH_QWEN2;

    /* sliding window (Qwen2) */
    if ((rc = get_bool(&b, c, "use_sliding_window", 0, path, err))) return rc;
    if (b) return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "use_sliding_window"),
                     "\"use_sliding_window\": true is not supported (full attention only)");
    const mf_json *lt = mf_json_get(c, "layer_types");
    if (lt && lt->type == MF_JSON_ARRAY)
        for (size_t i = 0; i < lt->n; i++)
            if (lt->items[i]->type != MF_JSON_STRING || strcmp(lt->items[i]->s, "full_attention"))
                return at(err, MF_EUNSUPPORTED, path, lt->items[i], "\"layer_types\"[%zu]: only full_attention is supported", i);

    /* Baichuan variants that are not Baichuan-7B math */
    if (cfg->arch == MF_ARCH_BAICHUAN) {
        if (cfg->num_key_value_heads != cfg->num_attention_heads)
            return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "num_key_value_heads"),
                      "Baichuan's W_pack holds q, k and v of equal size: \"num_key_value_heads\" must equal \"num_attention_heads\"");
        if (mf_json_get(c, "z_loss_weight"))
            return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "z_loss_weight"),
                      "Baichuan2 (\"z_loss_weight\" present: NormHead lm_head) is not supported; only Baichuan-7B");
        if (!mf_json_get(c, "max_position_embeddings") && mf_json_get(c, "model_max_length"))
            return at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "model_max_length"),
                      "Baichuan with \"model_max_length\" and no \"max_position_embeddings\" uses ALiBi (13B); only Baichuan-7B (RoPE) is supported");
    }

    if (archs[k].score_head) {
        const mf_json *nl = mf_json_get(c, "num_labels"), *id2 = mf_json_get(c, "id2label");
        long labels = nl && nl->type == MF_JSON_INT ? (long)nl->i : id2 && id2->type == MF_JSON_OBJECT ? (long)id2->n : 2;
        if (labels != 1)
            return at(err, MF_EUNSUPPORTED, path, id2 ? id2 : nl ? nl : archv,
                      "%s with %ld labels: only one (a reward/value head) is supported", archs[k].arch_name, labels);
    }

    if (meta) {
        memset(meta, 0, sizeof *meta);
        meta->score_head = archs[k].score_head;
        snprintf(meta->architecture, sizeof meta->architecture, "%s", archs[k].arch_name);
        snprintf(meta->model_type, sizeof meta->model_type, "%s", archs[k].model_type);
        const char *dt = mf_json_get_str(c, "dtype", mf_json_get_str(c, "torch_dtype", ""));
        snprintf(meta->dtype, sizeof meta->dtype, "%s", dt);
        meta->initializer_range = mf_json_get_num(c, "initializer_range", 0.02);
    }
    return 0;
}

static char *file_if_present(const char *dir, const char *name)
{
    char *p = mf_path_join(dir, name);
    if (p && !mf_is_file(p)) { free(p); return NULL; }
    return p;
}

int mf_modelio_read_config(mf_model_config *cfg, mf_modelio_meta *meta, const char *dir, mf_err *err)
{
    char *path = mf_path_join(dir, "config.json");
    if (!path) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json *c = NULL;
    int rc;
    if (!mf_is_dir(dir)) {
        rc = mf_err_set(err, MF_ENOTFOUND, "%s: not a model directory", dir);
        goto out;
    }
    if (!mf_is_file(path)) {
        rc = mf_err_set(err, MF_ENOTFOUND, "%s: no config.json (not an HF model directory)", dir);
        goto out;
    }
    if ((rc = mf_json_parse_file(&c, path, err)) != 0) goto out;
    rc = mf_modelio_config_parse(cfg, meta, c, path, err);
out:
    mf_json_free(c);
    free(path);
    if (rc || !meta) return rc;
    meta->dir = strdup(dir);
    meta->tokenizer_json = file_if_present(dir, "tokenizer.json");
    meta->tokenizer_config = file_if_present(dir, "tokenizer_config.json");
    meta->generation_config = file_if_present(dir, "generation_config.json");
    if (!meta->dir) { mf_modelio_meta_free(meta); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    return 0;
}

/* ---- writing ---- */

static int set(mf_json *o, const char *k, mf_json *v, int *bad)
{
    if (!v || mf_json_set(o, k, v)) *bad = 1;
    return 0;
}

static mf_json *token(int id) { return id >= 0 ? mf_json_new_int(id) : mf_json_new_null(); }

int mf_modelio_config_json(mf_json **out, const mf_model_config *cfg, const char *dtype, int score_head, mf_err *err)
{
    *out = NULL;
    int k = -1;
    for (int i = 0; i < N_ARCHS && k < 0; i++)
        if (archs[i].arch == cfg->arch && archs[i].score_head == !!score_head) k = i;
    if (k < 0)
        return mf_err_set(err, MF_EUNSUPPORTED, "no HF export for architecture %d%s", (int)cfg->arch,
                          score_head ? " with a score head" : "");
    int bad = 0;
    mf_json *c = mf_json_new_object(), *a = mf_json_new_array(), *rp = mf_json_new_object();
    if (!c || !a || !rp) { mf_json_free(c); mf_json_free(a); mf_json_free(rp); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    if (mf_json_push(a, mf_json_new_str(archs[k].arch_name))) bad = 1;
    set(c, "architectures", a, &bad);
    set(c, "model_type", mf_json_new_str(archs[k].model_type), &bad);
    int head_dim = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / (cfg->num_attention_heads ? cfg->num_attention_heads : 1);
    int kv = cfg->num_key_value_heads ? cfg->num_key_value_heads : cfg->num_attention_heads;
    double theta = cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0;
    double eps = cfg->rms_norm_eps > 0 ? cfg->rms_norm_eps : 1e-6;
    set(c, "vocab_size", mf_json_new_int(cfg->vocab_size), &bad);
    set(c, "hidden_size", mf_json_new_int(cfg->hidden_size), &bad);
    set(c, "intermediate_size", mf_json_new_int(cfg->intermediate_size), &bad);
    set(c, "num_hidden_layers", mf_json_new_int(cfg->num_hidden_layers), &bad);
    set(c, "num_attention_heads", mf_json_new_int(cfg->num_attention_heads), &bad);
    set(c, "hidden_act", mf_json_new_str("silu"), &bad);
    set(c, "max_position_embeddings", mf_json_new_int(cfg->max_position_embeddings ? cfg->max_position_embeddings : 2048), &bad);
    set(c, "initializer_range", mf_json_new_float(0.02), &bad);
    set(c, "rms_norm_eps", mf_json_new_float(eps), &bad);
    set(c, "tie_word_embeddings", mf_json_new_bool(cfg->tie_word_embeddings), &bad);
    set(c, "use_cache", mf_json_new_bool(1), &bad);
    set(c, "pad_token_id", token(cfg->pad_token_id), &bad);
    set(c, "bos_token_id", token(cfg->bos_token_id), &bad);
    set(c, "eos_token_id", token(cfg->eos_token_id), &bad);
    /* both spellings: transformers >= 5 reads dtype/rope_parameters, 4.x torch_dtype/rope_theta */
    set(c, "dtype", mf_json_new_str(dtype ? dtype : "float32"), &bad);
    set(c, "torch_dtype", mf_json_new_str(dtype ? dtype : "float32"), &bad);
    set(c, "rope_theta", mf_json_new_float(theta), &bad);
    set(rp, "rope_theta", mf_json_new_float(theta), &bad);
    set(rp, "rope_type", mf_json_new_str("default"), &bad);
    set(c, "rope_parameters", rp, &bad);
    if (cfg->arch != MF_ARCH_BAICHUAN) {
        set(c, "num_key_value_heads", mf_json_new_int(kv), &bad);
        set(c, "head_dim", mf_json_new_int(head_dim), &bad);
        set(c, "attention_dropout", mf_json_new_float(0.0), &bad);
    }
    if (cfg->arch == MF_ARCH_LLAMA) {
        set(c, "attention_bias", mf_json_new_bool(0), &bad);
        set(c, "mlp_bias", mf_json_new_bool(0), &bad);
        set(c, "pretraining_tp", mf_json_new_int(1), &bad);
    }
    if (cfg->arch == MF_ARCH_QWEN2) {
        set(c, "use_sliding_window", mf_json_new_bool(0), &bad);
        set(c, "sliding_window", mf_json_new_null(), &bad);
        set(c, "max_window_layers", mf_json_new_int(cfg->num_hidden_layers), &bad);
    }
    if (score_head) { /* one label, as transformers writes num_labels=1 */
        mf_json *i2l = mf_json_new_object(), *l2i = mf_json_new_object();
        if (!i2l || !l2i || mf_json_set(i2l, "0", mf_json_new_str("LABEL_0")) || mf_json_set(l2i, "LABEL_0", mf_json_new_int(0))) bad = 1;
        set(c, "id2label", i2l, &bad);
        set(c, "label2id", l2i, &bad);
    }
    if (bad) { mf_json_free(c); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    *out = c;
    return 0;
}

/* ---- expected params ---- */

static int add(mf_k_param *ps, size_t *n, int layer, const char *name, int64_t d0, int64_t d1)
{
    mf_k_param *p = &ps[(*n)++];
    memset(p, 0, sizeof *p);
    if (layer >= 0) snprintf(p->name, sizeof p->name, "model.layers.%d.%s", layer, name);
    else snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = (size_t)(d0 * (d1 ? d1 : 1));
    p->layer = layer;
    p->kind = MF_PARAM_BASE;
    return 0;
}

int mf_modelio_expected_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, mf_err *err)
{
    *out = NULL;
    *n = 0;
    int L = cfg->num_hidden_layers, h = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    int hd = cfg->head_dim ? cfg->head_dim : h / (cfg->num_attention_heads ? cfg->num_attention_heads : 1);
    int kv = cfg->num_key_value_heads ? cfg->num_key_value_heads : cfg->num_attention_heads;
    int64_t qd = (int64_t)cfg->num_attention_heads * hd, kd = (int64_t)kv * hd;
    if (L <= 0 || h <= 0 || I <= 0 || V <= 0 || hd <= 0 || kv <= 0 || L > 100000)
        return mf_err_set(err, MF_EINVAL, "model config has non-positive sizes");
    size_t cap = 3 + (size_t)L * 12;
    mf_k_param *ps = calloc(cap, sizeof *ps);
    if (!ps) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t k = 0;
    add(ps, &k, -1, "model.embed_tokens.weight", V, h);
    for (int l = 0; l < L; l++) {
        add(ps, &k, l, "input_layernorm.weight", h, 0);
        add(ps, &k, l, "self_attn.q_proj.weight", qd, h);
        if (cfg->attention_bias) add(ps, &k, l, "self_attn.q_proj.bias", qd, 0);
        add(ps, &k, l, "self_attn.k_proj.weight", kd, h);
        if (cfg->attention_bias) add(ps, &k, l, "self_attn.k_proj.bias", kd, 0);
        add(ps, &k, l, "self_attn.v_proj.weight", kd, h);
        if (cfg->attention_bias) add(ps, &k, l, "self_attn.v_proj.bias", kd, 0);
        add(ps, &k, l, "self_attn.o_proj.weight", h, qd);
        add(ps, &k, l, "post_attention_layernorm.weight", h, 0);
        add(ps, &k, l, "mlp.gate_proj.weight", I, h);
        add(ps, &k, l, "mlp.up_proj.weight", I, h);
        add(ps, &k, l, "mlp.down_proj.weight", h, I);
    }
    add(ps, &k, -1, "model.norm.weight", h, 0);
    if (!cfg->tie_word_embeddings) add(ps, &k, -1, "lm_head.weight", V, h);
    *out = ps;
    *n = k;
    return 0;
}

int mf_modelio_lora_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, const mf_k_lora_config *lc,
                            mf_err *err)
{
    *out = NULL;
    *n = 0;
    int L = cfg->num_hidden_layers, h = cfg->hidden_size, I = cfg->intermediate_size, r = lc->rank;
    int hd = cfg->head_dim ? cfg->head_dim : h / (cfg->num_attention_heads ? cfg->num_attention_heads : 1);
    int kv = cfg->num_key_value_heads ? cfg->num_key_value_heads : cfg->num_attention_heads;
    int64_t qd = (int64_t)cfg->num_attention_heads * hd, kd = (int64_t)kv * hd;
    if (L <= 0 || L > 100000 || r <= 0 || !lc->target) return mf_err_set(err, MF_EINVAL, "LoRA needs layers, a rank and target modules");
    const struct { unsigned bit; const char *name; int64_t out, in; } mods[] = {
        {MF_MOD_Q, "self_attn.q_proj", qd, h}, {MF_MOD_K, "self_attn.k_proj", kd, h},
        {MF_MOD_V, "self_attn.v_proj", kd, h}, {MF_MOD_O, "self_attn.o_proj", h, qd},
        {MF_MOD_GATE, "mlp.gate_proj", I, h}, {MF_MOD_UP, "mlp.up_proj", I, h}, {MF_MOD_DOWN, "mlp.down_proj", h, I},
    };
    mf_k_param *ps = calloc((size_t)L * 14, sizeof *ps);
    if (!ps) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t k = 0;
    for (int l = 0; l < L; l++)
        for (int m = 0; m < 7; m++) {
            if (!(lc->target & mods[m].bit)) continue;
            char nm[96];
            snprintf(nm, sizeof nm, "%s.lora_A.weight", mods[m].name);
            add(ps, &k, l, nm, r, mods[m].in);
            ps[k - 1].kind = MF_PARAM_LORA;
            snprintf(nm, sizeof nm, "%s.lora_B.weight", mods[m].name);
            add(ps, &k, l, nm, mods[m].out, r);
            ps[k - 1].kind = MF_PARAM_LORA;
        }
    *out = ps;
    *n = k;
    return 0;
}
