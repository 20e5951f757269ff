/*
 * modelio/hf_config_archs.c — config.json keys of BLOOM (BloomForCausalLM),
 * GLM-4 in transformers' layout (GlmForCausalLM), ChatGLM2/3 / GLM-4 chat and
 * ChatGLM-6B (v1) in their remote-code layouts (ChatGLMModel /
 * ChatGLMForConditionalGeneration): read into mf_model_config, and
 * written back as those models' own configs. hf_config.c identifies the arch
 * and reads the token ids; the kernels' arch presets (kernels/arch.c) supply
 * the math (norms, activation, positions, fused projections).
 *
 * Every key that would change the math beyond what the kernels compute is
 * refused by name (MF_EUNSUPPORTED at its file:line:col).
 */
#include "modelio/hf_config_internal.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- BLOOM */

int mf_modelio_cfg_parse_bloom(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    int rc, tp = 1, slow = 0;
    /* hidden_size, or n_embed in the first BLOOM configs */
    const char *hkey = mf_json_get(c, "hidden_size") ? "hidden_size" : "n_embed";
    if ((rc = mf_modelio_cfg_int(&cfg->vocab_size, c, "vocab_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->hidden_size, c, hkey, 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_hidden_layers, c, "n_layer", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_attention_heads, c, "n_head", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_num(&cfg->rms_norm_eps, c, "layer_norm_epsilon", 1e-5, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 1, path, err)) != 0) goto out;
    /* ALiBi has no position table: the length bound is the training length (seq_length), 2048 by default */
    if ((rc = mf_modelio_cfg_int(&cfg->max_position_embeddings, c, "seq_length", 0, 2048, 1, path, err)) != 0)
        goto out;
    cfg->intermediate_size = 4 * cfg->hidden_size; /* BloomMLP: dense_h_to_4h */
    cfg->num_key_value_heads = cfg->num_attention_heads;
    if ((rc = mf_modelio_cfg_refuse_true(c, "apply_residual_connection_post_layernorm",
                                         "the residual taken after the LayerNorm", path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_int(&tp, c, "pretraining_tp", 0, 1, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_bool(&slow, c, "slow_but_exact", 0, path, err)) != 0) goto out;
    if (slow && tp > 1) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "slow_but_exact"),
                               "\"slow_but_exact\": true with \"pretraining_tp\" %d is not supported (transformers then "
                               "sums the dense projections in %d slices, which medflow does not reproduce)", tp, tp);
        goto out;
    }
    if ((rc = mf_modelio_cfg_refuse_nonzero(c, "hidden_dropout", "dropout inside the blocks", path, err)) != 0) goto out;
    rc = mf_modelio_cfg_refuse_nonzero(c, "attention_dropout", "dropout on the attention probabilities", path, err);
out:
    return rc;
}

void mf_modelio_cfg_write_bloom(mf_json *c, const mf_model_config *cfg, int *bad)
{
    mf_modelio_cfg_set(c, "vocab_size", mf_json_new_int(cfg->vocab_size), bad);
    mf_modelio_cfg_set(c, "hidden_size", mf_json_new_int(cfg->hidden_size), bad);
    mf_modelio_cfg_set(c, "n_layer", mf_json_new_int(cfg->num_hidden_layers), bad);
    mf_modelio_cfg_set(c, "n_head", mf_json_new_int(cfg->num_attention_heads), bad);
    mf_modelio_cfg_set(c, "layer_norm_epsilon", mf_json_new_float(cfg->rms_norm_eps > 0 ? cfg->rms_norm_eps : 1e-5), bad);
    mf_modelio_cfg_set(c, "initializer_range", mf_json_new_float(0.02), bad);
    mf_modelio_cfg_set(c, "use_cache", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "pad_token_id", mf_modelio_cfg_token_json(cfg->pad_token_id), bad);
    mf_modelio_cfg_set(c, "bos_token_id", mf_modelio_cfg_token_json(cfg->bos_token_id), bad);
    mf_modelio_cfg_set(c, "eos_token_id", mf_modelio_cfg_token_json(cfg->eos_token_id), bad);
    mf_modelio_cfg_set(c, "apply_residual_connection_post_layernorm", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "hidden_dropout", mf_json_new_float(0.0), bad);
    mf_modelio_cfg_set(c, "attention_dropout", mf_json_new_float(0.0), bad);
    mf_modelio_cfg_set(c, "pretraining_tp", mf_json_new_int(1), bad);
    mf_modelio_cfg_set(c, "slow_but_exact", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "tie_word_embeddings", mf_json_new_bool(cfg->tie_word_embeddings), bad);
    mf_modelio_cfg_set(c, "seq_length", mf_json_new_int(cfg->max_position_embeddings ? cfg->max_position_embeddings : 2048),
                       bad);
}

/* ---------------------------------------------------------------- GLM (GlmForCausalLM) */

int mf_modelio_cfg_parse_glm(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    int rc;
    double prf = 0.5;
    if ((rc = mf_modelio_cfg_int(&cfg->vocab_size, c, "vocab_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->hidden_size, c, "hidden_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->intermediate_size, c, "intermediate_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_hidden_layers, c, "num_hidden_layers", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_attention_heads, c, "num_attention_heads", 1, 0, 1, path, err)) != 0)
        goto out;
    /* GlmConfig's defaults: 2 kv heads, head_dim 128, attention_bias true */
    if ((rc = mf_modelio_cfg_int(&cfg->num_key_value_heads, c, "num_key_value_heads", 0, 2, 1, path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->head_dim, c, "head_dim", 0, 128, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->max_position_embeddings, c, "max_position_embeddings", 0, 131072, 1, path,
                                 err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_num(&cfg->rms_norm_eps, c, "rms_norm_eps", 1.5625e-7, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 0, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_bool(&cfg->attention_bias, c, "attention_bias", 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_silu(c, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_rope(cfg, c, path, err)) != 0) goto out;
    /* the rotary share of each head: 4.x top-level partial_rotary_factor, 5.x in rope_parameters */
    const mf_json *rp = mf_json_get(c, "rope_parameters"), *pk = mf_json_get(c, "partial_rotary_factor");
    if (rp && rp->type == MF_JSON_OBJECT && mf_json_get(rp, "partial_rotary_factor")) {
        pk = mf_json_get(rp, "partial_rotary_factor");
        rc = mf_modelio_cfg_num(&prf, rp, "partial_rotary_factor", 0.5, path, err);
    } else {
        rc = mf_modelio_cfg_num(&prf, c, "partial_rotary_factor", 0.5, path, err);
    }
    if (rc) goto out;
    cfg->rotary_dim = (int)(cfg->head_dim * prf); /* transformers: int(head_dim * partial_rotary_factor) */
    if (prf > 1 || cfg->rotary_dim < 2 || cfg->rotary_dim % 2) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, pk,
                               "\"partial_rotary_factor\" %g gives %d rotary dims of head_dim %d (need an even number "
                               "from 2 to head_dim)", prf, cfg->rotary_dim, cfg->head_dim);
        goto out;
    }
    rc = mf_modelio_cfg_refuse_nonzero(c, "attention_dropout", "dropout on the attention probabilities", path, err);
out:
    return rc;
}

void mf_modelio_cfg_write_glm(mf_json *c, const mf_model_config *cfg, int *bad)
{
    int hd = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / cfg->num_attention_heads;
    double prf = (double)(cfg->rotary_dim ? cfg->rotary_dim : hd / 2) / hd;
    mf_modelio_cfg_set(c, "attention_bias", mf_json_new_bool(cfg->attention_bias), bad);
    mf_modelio_cfg_set(c, "partial_rotary_factor", mf_json_new_float(prf), bad); /* 4.x spelling */
}

/* ---------------------------------------------------------------- ChatGLM2/3, GLM-4 chat (ChatGLMModel) */

/* ChatGLM-6B v1 shares model_type "chatglm" and the class names: its config has position_encoding_2d /
 * inner_hidden_size (ChatGLM2/3 have ffn_hidden_size, multi_query_attention). */
int mf_modelio_cfg_is_chatglm_v1(const mf_json *c)
{
    return mf_json_get(c, "position_encoding_2d") || mf_json_get(c, "inner_hidden_size");
}

int mf_modelio_cfg_parse_chatglm2(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    int rc, mqa = 0, groups = 1, b = 1;
    double ratio = 1.0;
    if ((rc = mf_modelio_cfg_int(&cfg->vocab_size, c, "padded_vocab_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->hidden_size, c, "hidden_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->intermediate_size, c, "ffn_hidden_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_hidden_layers, c, "num_layers", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_attention_heads, c, "num_attention_heads", 1, 0, 1, path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->head_dim, c, "kv_channels", 0, 0, 1, path, err)) != 0) goto out;
    /* ChatGLMConfig's defaults where a key is absent */
    if ((rc = mf_modelio_cfg_bool(&mqa, c, "multi_query_attention", 0, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&groups, c, "multi_query_group_num", 0, 1, 1, path, err)) != 0) goto out;
    cfg->num_key_value_heads = mqa ? groups : cfg->num_attention_heads;
    cfg->qkv = mqa ? MF_QKV_FUSED : MF_QKV_FUSED_HEADS; /* without multi-query: per head [q; k; v] rows */
    if ((rc = mf_modelio_cfg_num(&cfg->rms_norm_eps, c, "layernorm_epsilon", 1e-5, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_bool(&cfg->attention_bias, c, "add_qkv_bias", 0, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->max_position_embeddings, c, "seq_length", 0, 2048, 1, path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 0, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_num(&ratio, c, "rope_ratio", 1.0, path, err)) != 0) goto out;
    cfg->rope_theta = 10000.0 * ratio; /* ChatGLM3-32k / GLM-4: base 10000 * rope_ratio */
    if ((rc = mf_modelio_cfg_bool(&b, c, "rmsnorm", 1, path, err)) != 0) goto out;
    if (!b) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "rmsnorm"),
                               "\"rmsnorm\": false (a LayerNorm ChatGLM2) is not supported");
        goto out;
    }
    if ((rc = mf_modelio_cfg_bool(&b, c, "post_layer_norm", 1, path, err)) != 0) goto out;
    if (!b) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "post_layer_norm"),
                               "\"post_layer_norm\": false (no final norm) is not supported");
        goto out;
    }
    if ((rc = mf_modelio_cfg_refuse_true(c, "add_bias_linear", "biases on dense and the MLP", path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_refuse_true(c, "apply_residual_connection_post_layernorm",
                                         "the residual taken after the LayerNorm", path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_refuse_nonzero(c, "quantization_bit", "quantised weights: load the full-precision "
                                            "checkpoint", path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_refuse_nonzero(c, "hidden_dropout", "dropout inside the blocks", path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_refuse_nonzero(c, "attention_dropout", "dropout on the attention probabilities", path,
                                            err)) != 0)
        goto out;
    const mf_json *psl = mf_json_get(c, "pre_seq_len");
    if (psl && psl->type != MF_JSON_NULL) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, psl,
                               "\"pre_seq_len\" is set (a ChatGLM P-Tuning checkpoint): open the base model and train or "
                               "apply the prefix as a medflow P-Tuning adapter (finetune: ptuning)");
        goto out;
    }
    /* apply_query_key_layer_scaling, attention_softmax_in_fp32, fp32_residual_connection, original_rope,
     * bias_dropout_fusion: the same function in fp32 */
out:
    return rc;
}

void mf_modelio_cfg_write_chatglm2(mf_json *c, const mf_model_config *cfg, int *bad)
{
    int hd = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / cfg->num_attention_heads;
    int mqa = cfg->qkv != MF_QKV_FUSED_HEADS;
    double theta = cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0;
    /* where the published checkpoints keep their code (copied beside the weights when the input had it) */
    mf_json *am = mf_json_new_object();
    if (am) {
        mf_modelio_cfg_set(am, "AutoConfig", mf_json_new_str("configuration_chatglm.ChatGLMConfig"), bad);
        mf_modelio_cfg_set(am, "AutoModel", mf_json_new_str("modeling_chatglm.ChatGLMForConditionalGeneration"), bad);
        mf_modelio_cfg_set(am, "AutoModelForCausalLM", mf_json_new_str("modeling_chatglm.ChatGLMForConditionalGeneration"),
                           bad);
    }
    mf_modelio_cfg_set(c, "auto_map", am, bad);
    mf_modelio_cfg_set(c, "add_bias_linear", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "add_qkv_bias", mf_json_new_bool(cfg->attention_bias), bad);
    mf_modelio_cfg_set(c, "apply_query_key_layer_scaling", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "apply_residual_connection_post_layernorm", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "attention_dropout", mf_json_new_float(0.0), bad);
    mf_modelio_cfg_set(c, "attention_softmax_in_fp32", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "bias_dropout_fusion", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "ffn_hidden_size", mf_json_new_int(cfg->intermediate_size), bad);
    mf_modelio_cfg_set(c, "fp32_residual_connection", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "hidden_dropout", mf_json_new_float(0.0), bad);
    mf_modelio_cfg_set(c, "hidden_size", mf_json_new_int(cfg->hidden_size), bad);
    mf_modelio_cfg_set(c, "kv_channels", mf_json_new_int(hd), bad);
    mf_modelio_cfg_set(c, "layernorm_epsilon", mf_json_new_float(cfg->rms_norm_eps > 0 ? cfg->rms_norm_eps : 1e-5), bad);
    mf_modelio_cfg_set(c, "multi_query_attention", mf_json_new_bool(mqa), bad);
    mf_modelio_cfg_set(c, "multi_query_group_num", mf_json_new_int(mqa ? cfg->num_key_value_heads : 1), bad);
    mf_modelio_cfg_set(c, "num_attention_heads", mf_json_new_int(cfg->num_attention_heads), bad);
    mf_modelio_cfg_set(c, "num_layers", mf_json_new_int(cfg->num_hidden_layers), bad);
    mf_modelio_cfg_set(c, "original_rope", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "padded_vocab_size", mf_json_new_int(cfg->vocab_size), bad);
    mf_modelio_cfg_set(c, "post_layer_norm", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "rmsnorm", mf_json_new_bool(1), bad);
    if (fabs(theta - 10000.0) > 1e-9) mf_modelio_cfg_set(c, "rope_ratio", mf_json_new_float(theta / 10000.0), bad);
    mf_modelio_cfg_set(c, "seq_length", mf_json_new_int(cfg->max_position_embeddings ? cfg->max_position_embeddings : 2048),
                       bad);
    mf_modelio_cfg_set(c, "use_cache", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "tie_word_embeddings", mf_json_new_bool(cfg->tie_word_embeddings), bad);
    mf_modelio_cfg_set(c, "quantization_bit", mf_json_new_int(0), bad);
    mf_modelio_cfg_set(c, "pre_seq_len", mf_json_new_null(), bad);
    mf_modelio_cfg_set(c, "prefix_projection", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "pad_token_id", mf_modelio_cfg_token_json(cfg->pad_token_id), bad);
    mf_modelio_cfg_set(c, "bos_token_id", mf_modelio_cfg_token_json(cfg->bos_token_id), bad);
    mf_modelio_cfg_set(c, "eos_token_id", mf_modelio_cfg_token_json(cfg->eos_token_id), bad);
}

/* ---------------------------------------------------------------- ChatGLM-6B (v1) */

/* THUDM/chatglm-6b's configuration_chatglm.py keys; its class defaults where a key is absent
 * (vocab 150528, 28 layers...) are not assumed: the shape keys are required. */
int mf_modelio_cfg_parse_chatglm(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err)
{
    int rc, two_d = 1;
    if ((rc = mf_modelio_cfg_int(&cfg->vocab_size, c, "vocab_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->hidden_size, c, "hidden_size", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_hidden_layers, c, "num_layers", 1, 0, 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->num_attention_heads, c, "num_attention_heads", 1, 0, 1, path, err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->intermediate_size, c, "inner_hidden_size", 0, 4 * cfg->hidden_size, 1, path,
                                 err)) != 0)
        goto out;
    if ((rc = mf_modelio_cfg_num(&cfg->rms_norm_eps, c, "layernorm_epsilon", 1e-5, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_int(&cfg->max_position_embeddings, c, "max_sequence_length", 0, 2048, 1, path, err)) != 0)
        goto out;
    /* transformers' PretrainedConfig default: the release's lm_head is the word embedding */
    if ((rc = mf_modelio_cfg_bool(&cfg->tie_word_embeddings, c, "tie_word_embeddings", 1, path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_token(&cfg->mask_token_id, c, "mask_token_id", path, err)) != 0) goto out;
    if ((rc = mf_modelio_cfg_token(&cfg->gmask_token_id, c, "gmask_token_id", path, err)) != 0) goto out;
    cfg->num_key_value_heads = cfg->num_attention_heads;
    if ((rc = mf_modelio_cfg_bool(&two_d, c, "position_encoding_2d", 1, path, err)) != 0) goto out;
    if (!two_d) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "position_encoding_2d"),
                               "\"position_encoding_2d\": false (1D rotary over the whole head) is not supported; "
                               "only the 2D positions of the ChatGLM-6B release");
        goto out;
    }
    if ((rc = mf_modelio_cfg_refuse_nonzero(c, "quantization_bit", "quantised weights: load the full-precision "
                                            "checkpoint", path, err)) != 0)
        goto out;
    const mf_json *psl = mf_json_get(c, "pre_seq_len");
    if (psl && psl->type != MF_JSON_NULL) {
        rc = mf_modelio_cfg_at(err, MF_EUNSUPPORTED, path, psl,
                               "\"pre_seq_len\" is set (a ChatGLM P-Tuning checkpoint): open the base model and train or "
                               "apply the prefix as a medflow P-Tuning adapter (finetune: ptuning; docs/model.md)");
        goto out;
    }
    /* prefix_projection (with pre_seq_len null, unused) and use_cache change nothing */
out:
    return rc;
}

void mf_modelio_cfg_write_chatglm(mf_json *c, const mf_model_config *cfg, int *bad)
{
    mf_json *am = mf_json_new_object(); /* where the release keeps its code (not written by medflow) */
    if (am) {
        mf_modelio_cfg_set(am, "AutoConfig", mf_json_new_str("configuration_chatglm.ChatGLMConfig"), bad);
        mf_modelio_cfg_set(am, "AutoModel", mf_json_new_str("modeling_chatglm.ChatGLMForConditionalGeneration"), bad);
        mf_modelio_cfg_set(am, "AutoModelForSeq2SeqLM", mf_json_new_str("modeling_chatglm.ChatGLMForConditionalGeneration"),
                           bad);
    }
    mf_modelio_cfg_set(c, "auto_map", am, bad);
    mf_modelio_cfg_set(c, "vocab_size", mf_json_new_int(cfg->vocab_size), bad);
    mf_modelio_cfg_set(c, "hidden_size", mf_json_new_int(cfg->hidden_size), bad);
    mf_modelio_cfg_set(c, "inner_hidden_size", mf_json_new_int(cfg->intermediate_size), bad);
    mf_modelio_cfg_set(c, "num_layers", mf_json_new_int(cfg->num_hidden_layers), bad);
    mf_modelio_cfg_set(c, "num_attention_heads", mf_json_new_int(cfg->num_attention_heads), bad);
    mf_modelio_cfg_set(c, "layernorm_epsilon", mf_json_new_float(cfg->rms_norm_eps > 0 ? cfg->rms_norm_eps : 1e-5), bad);
    mf_modelio_cfg_set(c, "max_sequence_length",
                       mf_json_new_int(cfg->max_position_embeddings ? cfg->max_position_embeddings : 2048), bad);
    mf_modelio_cfg_set(c, "position_encoding_2d", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "quantization_bit", mf_json_new_int(0), bad);
    mf_modelio_cfg_set(c, "pre_seq_len", mf_json_new_null(), bad);
    mf_modelio_cfg_set(c, "prefix_projection", mf_json_new_bool(0), bad);
    mf_modelio_cfg_set(c, "use_cache", mf_json_new_bool(1), bad);
    mf_modelio_cfg_set(c, "tie_word_embeddings", mf_json_new_bool(cfg->tie_word_embeddings), bad);
    mf_modelio_cfg_set(c, "pad_token_id", mf_modelio_cfg_token_json(cfg->pad_token_id), bad);
    mf_modelio_cfg_set(c, "bos_token_id", mf_modelio_cfg_token_json(cfg->bos_token_id), bad);
    mf_modelio_cfg_set(c, "eos_token_id", mf_modelio_cfg_token_json(cfg->eos_token_id), bad);
    mf_modelio_cfg_set(c, "mask_token_id", mf_modelio_cfg_token_json(cfg->mask_token_id), bad);
    mf_modelio_cfg_set(c, "gmask_token_id", mf_modelio_cfg_token_json(cfg->gmask_token_id), bad);
}
