/*
 * modelio/hf_config.c — HF config.json <-> mf_model_config, and the list of
 * base parameters a config implies.
 *
 * Reads both transformers 4.x spellings (rope_theta, rope_scaling, torch_dtype)
 * and 5.x ones (rope_parameters, dtype). Anything the kernels do not compute
 * is refused with MF_EUNSUPPORTED naming the key and its position, rather than
 * silently producing a different model. See modelio/modelio.h. This file
 * identifies the architecture and reads / writes the LLaMA family; BLOOM, GLM,
 * ChatGLM2/3 and ChatGLM-6B keys are in modelio/hf_config_archs.c.
 */
#include "modelio/hf_config_internal.h"

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
    {"BloomForCausalLM", "bloom", MF_ARCH_BLOOM, 0},
    {"GlmForCausalLM", "glm", MF_ARCH_GLM, 0},
    {"ChatGLMModel", "chatglm", MF_ARCH_CHATGLM2, 0}, /* what ChatGLM2/3 and GLM-4 chat checkpoints say */
    {"ChatGLMForConditionalGeneration", "chatglm", MF_ARCH_CHATGLM2, 0},
    /* ChatGLM-6B v1: the same names, told apart by its keys (mf_modelio_cfg_is_chatglm_v1) */
    {"ChatGLMModel", "chatglm", MF_ARCH_CHATGLM, 0},
    {"LlamaForSequenceClassification", "llama", MF_ARCH_LLAMA, 1},
    {"Qwen2ForSequenceClassification", "qwen2", MF_ARCH_QWEN2, 1},
    {"BloomForSequenceClassification", "bloom", MF_ARCH_BLOOM, 1},
    {"GlmForSequenceClassification", "glm", MF_ARCH_GLM, 1},
};
enum { N_ARCHS = sizeof archs / sizeof archs[0] };

int mf_modelio_cfg_at(mf_err *err, int code, const char *path, const mf_json *node, const char *fmt, ...)
{
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mf_err_at(err, code, path, node ? node->line : 0, node ? node->col : 0, "%s", msg);
}

int mf_modelio_cfg_int(int *out, const mf_json *c, const char *key, int required, int def, int min, const char *path,
                       mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) {
        if (required) return mf_modelio_cfg_at(err, MF_EINVAL, path, c, "missing required key \"%s\"", key);
        *out = def;
        return 0;
    }
    if (v->type != MF_JSON_INT || v->i < min || v->i > INT32_MAX)
        return mf_modelio_cfg_at(err, MF_EINVAL, path, v, "\"%s\": expected an integer >= %d, found %s", key, min,
                  v->type == MF_JSON_INT ? "an out-of-range integer" : mf_json_type_name(v->type));
    *out = (int)v->i;
    return 0;
}

int mf_modelio_cfg_num(double *out, const mf_json *c, const char *key, double def, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) { *out = def; return 0; }
    if (!mf_json_is_num(v) || !(mf_json_num(v, 0) > 0))
        return mf_modelio_cfg_at(err, MF_EINVAL, path, v, "\"%s\": expected a positive number, found %s", key, mf_json_type_name(v->type));
    *out = mf_json_num(v, def);
    return 0;
}

int mf_modelio_cfg_bool(int *out, const mf_json *c, const char *key, int def, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL) { *out = def; return 0; }
    if (v->type != MF_JSON_BOOL) return mf_modelio_cfg_at(err, MF_EINVAL, path, v, "\"%s\": expected true or false, found %s", key, mf_json_type_name(v->type));
    *out = v->b;
    return 0;
}

int mf_modelio_cfg_token(int *out, const mf_json *c, const char *key, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    *out = -1;
    if (!v || v->type == MF_JSON_NULL) return 0;
    if (v->type == MF_JSON_ARRAY) v = v->n ? v->items[0] : NULL; /* LLaMA-3 / GLM style eos lists */
    if (!v) return 0;
    if (v->type != MF_JSON_INT || v->i < 0 || v->i > INT32_MAX)
        return mf_modelio_cfg_at(err, MF_EINVAL, path, v, "\"%s\": expected a token id, found %s", key, mf_json_type_name(v->type));
    *out = (int)v->i;
    return 0;
}

int mf_modelio_cfg_refuse_true(const mf_json *c, const char *key, const char *what, const char *path, mf_err *err)
{
    int b = 0, rc = mf_modelio_cfg_bool(&b, c, key, 0, path, err);
    if (rc) return rc;
    return b ? mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, key), "\"%s\": true is not supported (%s)", key, what) : 0;
}

int mf_modelio_cfg_refuse_nonzero(const mf_json *c, const char *key, const char *what, const char *path, mf_err *err)
{
    const mf_json *v = mf_json_get(c, key);
    if (!v || v->type == MF_JSON_NULL || (mf_json_is_num(v) && mf_json_num(v, 0) == 0)) return 0;
    if (!mf_json_is_num(v)) return mf_modelio_cfg_at(err, MF_EINVAL, path, v, "\"%s\": expected a number, found %s", key, mf_json_type_name(v->type));
    return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, v, "\"%s\": %g is not supported (%s)", key, mf_json_num(v, 0), what);
}

int mf_modelio_cfg_silu(const mf_json *c, const char *path, mf_err *err)
{
    const mf_json *act = mf_json_get(c, "hidden_act");
    if (act && act->type != MF_JSON_NULL && (act->type != MF_JSON_STRING || strcmp(act->s, "silu")))
        return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, act, "unsupported \"hidden_act\" '%s' (only silu)",
                  act->type == MF_JSON_STRING ? act->s : mf_json_type_name(act->type));
    return 0;
}

int mf_modelio_cfg_rope(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    /* 5.x rope_parameters, or 4.x rope_theta + rope_scaling */
    const mf_json *rp = mf_json_get(c, "rope_parameters"), *rs = mf_json_get(c, "rope_scaling");
    int rc;
    if ((rc = mf_modelio_cfg_num(&cfg->rope_theta, c, "rope_theta", 10000.0, path, err))) return rc;
    if (rp && rp->type != MF_JSON_NULL) {
        if (rp->type != MF_JSON_OBJECT) return mf_modelio_cfg_at(err, MF_EINVAL, path, rp, "\"rope_parameters\": expected an object");
        const char *rt = mf_json_get_str(rp, "rope_type", "default");
        if (strcmp(rt, "default"))
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(rp, "rope_type"),
                      "unsupported \"rope_parameters.rope_type\" '%s' (only default RoPE)", rt);
        if ((rc = mf_modelio_cfg_num(&cfg->rope_theta, rp, "rope_theta", cfg->rope_theta, path, err))) return rc;
    }
    if (rs && rs->type != MF_JSON_NULL) {
        const char *rt = rs->type == MF_JSON_OBJECT ? mf_json_get_str(rs, "rope_type", mf_json_get_str(rs, "type", "?")) : "?";
        if (strcmp(rt, "default"))
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, rs, "unsupported \"rope_scaling\" of type '%s' (only plain RoPE)", rt);
    }
    return 0;
}

/* LLaMA, Qwen2, Baichuan-7B: the LLaMA key names. */
static int parse_llama_family(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    int rc;
    if ((rc = mf_modelio_cfg_int(&cfg->vocab_size, c, "vocab_size", 1, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->hidden_size, c, "hidden_size", 1, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->intermediate_size, c, "intermediate_size", 1, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->num_hidden_layers, c, "num_hidden_layers", 1, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->num_attention_heads, c, "num_attention_heads", 1, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->num_key_value_heads, c, "num_key_value_heads", 0, cfg->num_attention_heads, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->head_dim, c, "head_dim", 0, 0, 1, path, err)) ||
        (rc = mf_modelio_cfg_int(&cfg->max_position_embeddings, c, "max_position_embeddings", 0,
                      cfg->arch == MF_ARCH_QWEN2 ? 32768 : cfg->arch == MF_ARCH_BAICHUAN ? 4096 : 2048, 1, path, err)) ||
        (rc = mf_modelio_cfg_num(&cfg->rms_norm_eps, c, "rms_norm_eps", 1e-6, path, err)) ||
        (rc = mf_modelio_cfg_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 0, path, err)))
        return rc;
    if ((rc = mf_modelio_cfg_silu(c, path, err))) return rc;
    if ((rc = mf_modelio_cfg_rope(cfg, c, path, err))) return rc;

    /* biases */
    if (cfg->arch == MF_ARCH_LLAMA &&
        (rc = mf_modelio_cfg_refuse_true(c, "attention_bias", "LLaMA q/k/v/o biases", path, err)))
        return rc;
    if ((rc = mf_modelio_cfg_refuse_true(c, "mlp_bias", "MLP biases", path, err))) return rc;
    cfg->attention_bias = cfg->arch == MF_ARCH_QWEN2;

    /* sliding window (Qwen2) */
    if ((rc = mf_modelio_cfg_refuse_true(c, "use_sliding_window", "full attention only", path, err))) return rc;
    const mf_json *lt = mf_json_get(c, "layer_types");
    if (lt && lt->type == MF_JSON_ARRAY)
        for (size_t i = 0; i < lt->n; i++)
            if (lt->items[i]->type != MF_JSON_STRING || strcmp(lt->items[i]->s, "full_attention"))
                return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, lt->items[i], "\"layer_types\"[%zu]: only full_attention is supported", i);

    /* Baichuan variants that are not Baichuan-7B math */
    if (cfg->arch == MF_ARCH_BAICHUAN) {
        if (cfg->num_key_value_heads != cfg->num_attention_heads)
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "num_key_value_heads"),
                      "Baichuan's W_pack holds q, k and v of equal size: \"num_key_value_heads\" must equal \"num_attention_heads\"");
        if (mf_json_get(c, "z_loss_weight"))
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "z_loss_weight"),
                      "Baichuan2 (\"z_loss_weight\" present: NormHead lm_head) is not supported; only Baichuan-7B");
        if (!mf_json_get(c, "max_position_embeddings") && mf_json_get(c, "model_max_length"))
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "model_max_length"),
                      "Baichuan with \"model_max_length\" and no \"max_position_embeddings\" uses ALiBi (13B); only Baichuan-7B (RoPE) is supported");
    }
    return 0;
}

int mf_modelio_config_parse(mf_model_config *cfg, mf_modelio_meta *meta, const mf_json *c, const char *path,
                             mf_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!path) path = "config.json";
    if (!c || c->type != MF_JSON_OBJECT) return mf_modelio_cfg_at(err, MF_EINVAL, path, c, "expected a JSON object");
    const mf_json *archv = mf_json_get(c, "architectures"), *mt = mf_json_get(c, "model_type");
    const char *arch_name = NULL, *model_type = NULL;
    if (archv && archv->type != MF_JSON_NULL) {
        if (archv->type != MF_JSON_ARRAY || archv->n != 1 || archv->items[0]->type != MF_JSON_STRING)
            return mf_modelio_cfg_at(err, MF_EINVAL, path, archv, "\"architectures\": expected a list of one class name");
        arch_name = archv->items[0]->s;
    }
    if (mt && mt->type != MF_JSON_NULL) {
        if (mt->type != MF_JSON_STRING) return mf_modelio_cfg_at(err, MF_EINVAL, path, mt, "\"model_type\": expected a string");
        model_type = mt->s;
    }
    if (!arch_name && !model_type)
        return mf_modelio_cfg_at(err, MF_EINVAL, path, c, "neither \"architectures\" nor \"model_type\" says what model this is");
    int k = -1;
    for (int i = 0; i < N_ARCHS && k < 0; i++)
        if ((arch_name && !strcmp(arch_name, archs[i].arch_name)) || (!arch_name && !strcmp(model_type, archs[i].model_type))) k = i;
    if (k < 0)
        return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, arch_name ? archv : mt,
                  "unsupported %s '%s' (supported: LlamaForCausalLM/llama, Qwen2ForCausalLM/qwen2, "
                  "BaichuanForCausalLM/baichuan, BloomForCausalLM/bloom, GlmForCausalLM/glm, ChatGLMModel/chatglm "
                  "(ChatGLM-6B, ChatGLM2/3, GLM-4 chat), Llama/Qwen2/Bloom/GlmForSequenceClassification with one label)",
                  arch_name ? "\"architectures\"" : "\"model_type\"", arch_name ? arch_name : model_type);
    if (model_type && strcmp(model_type, archs[k].model_type))
        return mf_modelio_cfg_at(err, MF_EINVAL, path, mt, "\"model_type\" is '%s' but \"architectures\" says %s (model_type '%s')",
                  model_type, archs[k].arch_name, archs[k].model_type);
    cfg->arch = archs[k].arch;
    if (cfg->arch == MF_ARCH_CHATGLM2 && mf_modelio_cfg_is_chatglm_v1(c)) cfg->arch = MF_ARCH_CHATGLM;
    int rc;
    switch (cfg->arch) {
    case MF_ARCH_BLOOM: rc = mf_modelio_cfg_parse_bloom(cfg, c, path, err); break;
    case MF_ARCH_GLM: rc = mf_modelio_cfg_parse_glm(cfg, c, path, err); break;
    case MF_ARCH_CHATGLM2: rc = mf_modelio_cfg_parse_chatglm2(cfg, c, path, err); break;
    case MF_ARCH_CHATGLM: rc = mf_modelio_cfg_parse_chatglm(cfg, c, path, err); break;
    default: rc = parse_llama_family(cfg, c, path, err); break;
    }
    if (rc) return rc;
    if ((rc = mf_modelio_cfg_token(&cfg->pad_token_id, c, "pad_token_id", path, err)) ||
        (rc = mf_modelio_cfg_token(&cfg->bos_token_id, c, "bos_token_id", path, err)) ||
        (rc = mf_modelio_cfg_token(&cfg->eos_token_id, c, "eos_token_id", path, err)))
        return rc;
    if (cfg->num_attention_heads % cfg->num_key_value_heads)
        return mf_modelio_cfg_at(err, MF_EINVAL, path, mf_json_get(c, "num_key_value_heads"),
                  "\"num_key_value_heads\" (%d) must divide \"num_attention_heads\" (%d)", cfg->num_key_value_heads,
                  cfg->num_attention_heads);
    if (!cfg->head_dim && cfg->hidden_size % cfg->num_attention_heads)
        return mf_modelio_cfg_at(err, MF_EINVAL, path, mf_json_get(c, "num_attention_heads"),
                  "\"hidden_size\" (%d) is not a multiple of \"num_attention_heads\" (%d) and there is no \"head_dim\"",
                  cfg->hidden_size, cfg->num_attention_heads);
    if (!cfg->head_dim) cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;

    if (archs[k].score_head) {
        const mf_json *nl = mf_json_get(c, "num_labels"), *id2 = mf_json_get(c, "id2label");
        long labels = nl && nl->type == MF_JSON_INT ? (long)nl->i : id2 && id2->type == MF_JSON_OBJECT ? (long)id2->n : 2;
        if (labels != 1)
            return mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, id2 ? id2 : nl ? nl : archv,
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
    if (!meta->tokenizer_json) meta->tokenizer_json = file_if_present(dir, "ice_text.model");
    meta->tokenizer_config = file_if_present(dir, "tokenizer_config.json");
    meta->generation_config = file_if_present(dir, "generation_config.json");
    if (!meta->dir) { mf_modelio_meta_free(meta); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    return 0;
}

/* ---- writing ---- */

void mf_modelio_cfg_set(mf_json *o, const char *k, mf_json *v, int *bad)
{
    if (!v || mf_json_set(o, k, v)) *bad = 1;
}

mf_json *mf_modelio_cfg_token_json(int id)
{
    return id >= 0 ? mf_json_new_int(id) : mf_json_new_null();
}

/* The LLaMA family's keys, as transformers writes them. */
static void write_llama_family(mf_json *c, const mf_model_config *cfg, int *bad)
{
    int head_dim = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / (cfg->num_attention_heads ? cfg->num_attention_heads : 1);
    int kv = cfg->num_key_value_heads ? cfg->num_key_value_heads : cfg->num_attention_heads;
    double theta = cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0;
    double eps = cfg->rms_norm_eps > 0 ? cfg->rms_norm_eps : 1e-6;
    mf_json *rp = mf_json_new_object();
    mf_modelio_cfg_set(c, "vocab_size", mf_json_new_int(cfg->vocab_size), bad);
    mf_modelio_cfg_set(c, "hidden_size", mf_json_new_int(cfg->hidden_size), bad);
    mf_modelio_cfg_set(c, "intermediate_size", mf_json_new_int(cfg->intermediate_size), bad);
    mf_modelio_cfg_set(c, "num_hidden_layers", mf_json_new_int(cfg->num_hidden_layers), bad);
    mf_modelio_cfg_set(c, "num_attention_heads", mf_json_new_int(cfg->num_attention_heads), bad);
    mf_modelio_cfg_set(c, "hidden_act", mf_json_new_str("silu"), bad);
    mf_modelio_cfg_set(c, "max_position_embeddings",
                       mf_json_new_int(cfg->max_position_embeddings ? cfg->max_position_embeddings : 2048), bad);
    mf_modelio_cfg_set(c, "initializer_range", mf_json_new_float(0.02), bad);
    mf_modelio_cfg_set(c, "rms_norm_eps", mf_json_new_float(eps), bad);
    mf_modelio_cfg_set(c, "tie_word_embeddings", mf_json_new_bool(cfg->tie_word_embeddings), bad);
    mf_modelio_cfg_set(c, "use_cache", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "pad_token_id", mf_modelio_cfg_token_json(cfg->pad_token_id), bad);
    mf_modelio_cfg_set(c, "bos_token_id", mf_modelio_cfg_token_json(cfg->bos_token_id), bad);
    mf_modelio_cfg_set(c, "eos_token_id", mf_modelio_cfg_token_json(cfg->eos_token_id), bad);
    mf_modelio_cfg_set(c, "rope_theta", mf_json_new_float(theta), bad);
    if (rp) {
        mf_modelio_cfg_set(rp, "rope_theta", mf_json_new_float(theta), bad);
        mf_modelio_cfg_set(rp, "rope_type", mf_json_new_str("default"), bad);
        if (cfg->arch == MF_ARCH_GLM) /* GLM-4 rotates the first half of each head */
            mf_modelio_cfg_set(rp, "partial_rotary_factor",
                               mf_json_new_float((double)(cfg->rotary_dim ? cfg->rotary_dim : head_dim / 2) / head_dim), bad);
    }
    mf_modelio_cfg_set(c, "rope_parameters", rp, bad);
    if (cfg->arch != MF_ARCH_BAICHUAN) {
        mf_modelio_cfg_set(c, "num_key_value_heads", mf_json_new_int(kv), bad);
        mf_modelio_cfg_set(c, "head_dim", mf_json_new_int(head_dim), bad);
        mf_modelio_cfg_set(c, "attention_dropout", mf_json_new_float(0.0), bad);
    }
    if (cfg->arch == MF_ARCH_LLAMA) {
        mf_modelio_cfg_set(c, "attention_bias", mf_json_new_bool(0), bad);
        mf_modelio_cfg_set(c, "mlp_bias", mf_json_new_bool(0), bad);
        mf_modelio_cfg_set(c, "pretraining_tp", mf_json_new_int(1), bad);
    }
    if (cfg->arch == MF_ARCH_QWEN2) {
        mf_modelio_cfg_set(c, "use_sliding_window", mf_json_new_bool(0), bad);
        mf_modelio_cfg_set(c, "sliding_window", mf_json_new_null(), bad);
        mf_modelio_cfg_set(c, "max_window_layers", mf_json_new_int(cfg->num_hidden_layers), bad);
    }
}

int mf_modelio_config_json(mf_json **out, const mf_model_config *cfg, const char *dtype, int score_head, mf_err *err)
{
    *out = NULL;
    int k = -1;
    for (int i = 0; i < N_ARCHS && k < 0; i++)
        if (archs[i].arch == cfg->arch && archs[i].score_head == !!score_head) k = i;
    if (k < 0)
        return mf_err_set(err, MF_EUNSUPPORTED, "no HF export for architecture %s%s", mf_model_arch_name(cfg->arch),
                          score_head ? " with a score head" : "");
    int bad = 0;
    mf_json *c = mf_json_new_object(), *a = mf_json_new_array();
    if (!c || !a) { mf_json_free(c); mf_json_free(a); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    if (mf_json_push(a, mf_json_new_str(archs[k].arch_name))) bad = 1;
    mf_modelio_cfg_set(c, "architectures", a, &bad);
    mf_modelio_cfg_set(c, "model_type", mf_json_new_str(archs[k].model_type), &bad);
    /* both spellings: transformers >= 5 reads dtype/rope_parameters, 4.x torch_dtype/rope_theta */
    switch (cfg->arch) {
    case MF_ARCH_BLOOM: mf_modelio_cfg_write_bloom(c, cfg, &bad); break;
    case MF_ARCH_CHATGLM2: mf_modelio_cfg_write_chatglm2(c, cfg, &bad); break;
    case MF_ARCH_CHATGLM: mf_modelio_cfg_write_chatglm(c, cfg, &bad); break;
    case MF_ARCH_GLM: write_llama_family(c, cfg, &bad); mf_modelio_cfg_write_glm(c, cfg, &bad); break;
    default: write_llama_family(c, cfg, &bad); break;
    }
    mf_modelio_cfg_set(c, "dtype", mf_json_new_str(dtype ? dtype : "float32"), &bad);
    mf_modelio_cfg_set(c, "torch_dtype", mf_json_new_str(dtype ? dtype : "float32"), &bad);
    if (score_head) { /* one label, as transformers writes num_labels=1 */
        mf_json *i2l = mf_json_new_object(), *l2i = mf_json_new_object();
        if (!i2l || !l2i || mf_json_set(i2l, "0", mf_json_new_str("LABEL_0")) || mf_json_set(l2i, "LABEL_0", mf_json_new_int(0))) bad = 1;
        mf_modelio_cfg_set(c, "id2label", i2l, &bad);
        mf_modelio_cfg_set(c, "label2id", l2i, &bad);
    }
    if (bad) { mf_json_free(c); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    *out = c;
    return 0;
}

/* ---- expected params (the kernels' own table: kernels/arch.c) ---- */

int mf_modelio_expected_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, mf_err *err)
{
    return mf_model_param_list(out, n, cfg, NULL, err);
}

int mf_modelio_lora_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, const mf_k_lora_config *lc,
                            mf_err *err)
{
    *out = NULL;
    *n = 0;
    if (lc->rank <= 0 || !lc->target) return mf_err_set(err, MF_EINVAL, "LoRA needs a rank and target modules");
    return mf_model_param_list(out, n, cfg, lc, err);
}
