/*
 * kernels/arch.c — what each architecture is: its HF parameter names, its
 * features (norm, activation, positions, fused projections, biases), the
 * module words LoRA / freeze accept for it, and the config checks.
 *
 * An architecture is a name table plus a preset of mf_model_config features;
 * the backends only look at the features (model.h), never at the arch, so a
 * new arch whose math is a combination of existing features is a table entry.
 */
#include "kernels/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Names without ".weight" / ".bias"; layer l's names are layers + l + "." + name
 * (NULL: the arch has no such module). */
static const mf_arch_desc descs[] = {
    {MF_ARCH_LLAMA, "llama", "model.embed_tokens", NULL, "model.layers.", "input_layernorm",
     "post_attention_layernorm", "model.norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj", NULL, NULL}},
    {MF_ARCH_QWEN2, "qwen2", "model.embed_tokens", NULL, "model.layers.", "input_layernorm",
     "post_attention_layernorm", "model.norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj", NULL, NULL}},
    {MF_ARCH_BAICHUAN, "baichuan", "model.embed_tokens", NULL, "model.layers.", "input_layernorm",
     "post_attention_layernorm", "model.norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj", NULL, NULL}},
    {MF_ARCH_BLOOM, "bloom", "transformer.word_embeddings", "transformer.word_embeddings_layernorm",
     "transformer.h.", "input_layernorm", "post_attention_layernorm", "transformer.ln_f", "lm_head",
     {NULL, NULL, NULL, "self_attention.dense", NULL, "mlp.dense_h_to_4h", "mlp.dense_4h_to_h",
      "self_attention.query_key_value", NULL}},
    {MF_ARCH_GLM, "glm", "model.embed_tokens", NULL, "model.layers.", "input_layernorm",
     "post_attention_layernorm", "model.norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", NULL, NULL,
      "mlp.down_proj", NULL, "mlp.gate_up_proj"}},
    {MF_ARCH_CHATGLM2, "chatglm2", "transformer.embedding.word_embeddings", NULL, "transformer.encoder.layers.",
     "input_layernorm", "post_attention_layernorm", "transformer.encoder.final_layernorm", "transformer.output_layer",
     {NULL, NULL, NULL, "self_attention.dense", NULL, NULL, "mlp.dense_4h_to_h", "self_attention.query_key_value",
      "mlp.dense_h_to_4h"}},
    {MF_ARCH_CHATGLM, "chatglm", "transformer.word_embeddings", NULL, "transformer.layers.", "input_layernorm",
     "post_attention_layernorm", "transformer.final_layernorm", "lm_head",
     {NULL, NULL, NULL, "attention.dense", NULL, "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", "attention.query_key_value",
      NULL}},
};
enum { N_DESCS = sizeof descs / sizeof descs[0] };

const mf_arch_desc *mf_arch_desc_of(mf_arch arch)
{
    for (int i = 0; i < N_DESCS; i++)
        if (descs[i].arch == arch) return &descs[i];
    return NULL;
}

const char *mf_model_arch_name(mf_arch arch)
{
    const mf_arch_desc *d = mf_arch_desc_of(arch);
    return d ? d->name : "?";
}

/* The last component of a module path: "self_attention.query_key_value" -> "query_key_value". */
static const char *leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* Does an arch with config c compute module slot j? */
int mf_arch_has_module(const mf_model_config *c, int j)
{
    switch (j) {
    case MOD_Q: case MOD_K: case MOD_V: return c->qkv == MF_QKV_SEPARATE;
    case MOD_QKV: return c->qkv != MF_QKV_SEPARATE;
    case MOD_O: case MOD_DOWN: return 1;
    case MOD_GATE: return c->act == MF_ACT_SWIGLU && !c->mlp_fused;
    case MOD_UP: return !c->mlp_fused;
    case MOD_GATE_UP: return c->act == MF_ACT_SWIGLU && c->mlp_fused;
    }
    return 0;
}

int mf_arch_module_has_bias(const mf_model_config *c, int j)
{
    if (j == MOD_Q || j == MOD_K || j == MOD_V || j == MOD_QKV) return c->attention_bias;
    if (j == MOD_O) return c->o_bias;
    return c->mlp_bias;
}

/* The preset of a named arch (the LLaMA family keeps what it is given). */
static void apply_preset(mf_model_config *c)
{
    switch (c->arch) {
    case MF_ARCH_BLOOM:
        c->norm = MF_NORM_LAYER;
        c->act = MF_ACT_GELU_TANH;
        c->pos = MF_POS_ALIBI;
        c->qkv = MF_QKV_FUSED_HEADS;
        c->attention_bias = c->o_bias = c->mlp_bias = 1;
        c->embed_norm = 1;
        c->mlp_fused = 0;
        c->rope_interleaved = 0;
        c->rotary_dim = 0;
        break;
    case MF_ARCH_GLM:
    case MF_ARCH_CHATGLM2:
        c->norm = MF_NORM_RMS;
        c->act = MF_ACT_SWIGLU;
        c->pos = MF_POS_ROPE;
        c->rope_interleaved = 1;
        c->mlp_fused = 1;
        c->o_bias = c->mlp_bias = 0;
        c->embed_norm = 0;
        if (c->arch == MF_ARCH_GLM) {
            c->qkv = MF_QKV_SEPARATE;
        } else {
            /* ChatGLM2/3's multi_query_attention: [Q; K; V] blocks; without it, per-head [q; k; v] */
            if (c->qkv == MF_QKV_SEPARATE) c->qkv = MF_QKV_FUSED;
            c->prefix_fixed_positions = 1;
            c->prefix_embed_kv = 1;
        }
        break;
    case MF_ARCH_CHATGLM:
        c->norm = MF_NORM_LAYER;
        c->act = MF_ACT_GELU_TANH;
        c->pos = MF_POS_ROPE_2D;
        c->qkv = MF_QKV_FUSED_HEADS;
        c->attention_bias = c->o_bias = c->mlp_bias = 1;
        c->embed_norm = c->mlp_fused = c->rope_interleaved = 0;
        c->rotary_dim = 0; /* head_dim / 2 per half, set once head_dim is known */
        c->glm_residual = c->prefix_lm = 1;
        c->prefix_fixed_positions = 1; /* its P-Tuning v2 keeps positions at 0.. */
        c->prefix_embed_kv = 0;        /* ... and a hidden-wide prefix embedding */
        break;
    default:
        break;
    }
}

int mf_model_config_check(mf_model_config *c, mf_err *err)
{
    const mf_arch_desc *d = mf_arch_desc_of(c->arch);
    if (!d) return mf_err_set(err, MF_EINVAL, "model config: unknown arch %d", (int)c->arch);
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 ||
        c->num_hidden_layers <= 0 || c->num_attention_heads <= 0)
        return mf_err_set(err, MF_EINVAL,
                          "model config: vocab_size, hidden_size, intermediate_size, "
                          "num_hidden_layers, num_attention_heads must be > 0 (got %d, %d, %d, %d, %d)",
                          c->vocab_size, c->hidden_size, c->intermediate_size,
                          c->num_hidden_layers, c->num_attention_heads);
    apply_preset(c);
    if (c->num_key_value_heads <= 0) c->num_key_value_heads = c->num_attention_heads;
    if (c->num_attention_heads % c->num_key_value_heads)
        return mf_err_set(err, MF_EINVAL,
                          "model config: num_attention_heads (%d) must be a multiple of "
                          "num_key_value_heads (%d)", c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim <= 0) {
        if (c->hidden_size % c->num_attention_heads)
            return mf_err_set(err, MF_EINVAL,
                              "model config: hidden_size %d is not divisible by num_attention_heads %d "
                              "and head_dim is not given", c->hidden_size, c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->pos == MF_POS_ROPE) {
        if ((c->arch == MF_ARCH_GLM || c->arch == MF_ARCH_CHATGLM2) && c->rotary_dim <= 0)
            c->rotary_dim = c->head_dim / 2; /* partial_rotary_factor 0.5 / ChatGLM's rotary on half the head */
        int rot = c->rotary_dim > 0 ? c->rotary_dim : c->head_dim;
        if (rot % 2 || rot > c->head_dim)
            return mf_err_set(err, MF_EINVAL, "model config: the rotary dims (%d) must be even and at most head_dim %d",
                              rot, c->head_dim);
    } else if (c->pos == MF_POS_ROPE_2D) {
        if (c->head_dim % 4)
            return mf_err_set(err, MF_EINVAL, "model config: 2D rotary needs head_dim divisible by 4, got %d", c->head_dim);
        c->rotary_dim = c->head_dim / 2;
        c->rope_interleaved = 0;
        if (!c->prefix_lm)
            return mf_err_set(err, MF_EINVAL, "model config: 2D rotary positions come from the prefix-LM tokens (prefix_lm)");
    } else if (c->pos != MF_POS_ALIBI) {
        return mf_err_set(err, MF_EINVAL, "model config: unknown position encoding %d", (int)c->pos);
    }
    if (c->norm != MF_NORM_RMS && c->norm != MF_NORM_LAYER)
        return mf_err_set(err, MF_EINVAL, "model config: unknown norm %d", (int)c->norm);
    if (c->act != MF_ACT_SWIGLU && c->act != MF_ACT_GELU_TANH)
        return mf_err_set(err, MF_EINVAL, "model config: unknown activation %d", (int)c->act);
    if (c->qkv < MF_QKV_SEPARATE || c->qkv > MF_QKV_FUSED_HEADS)
        return mf_err_set(err, MF_EINVAL, "model config: unknown QKV layout %d", (int)c->qkv);
    if (c->qkv == MF_QKV_FUSED_HEADS && c->num_key_value_heads != c->num_attention_heads)
        return mf_err_set(err, MF_EINVAL,
                          "model config: a per-head fused query_key_value needs num_key_value_heads == "
                          "num_attention_heads (got %d and %d)", c->num_key_value_heads, c->num_attention_heads);
    if (c->mlp_fused && c->act != MF_ACT_SWIGLU)
        return mf_err_set(err, MF_EINVAL, "model config: a fused gate/up projection needs the SwiGLU activation");
    for (int j = 0; j < N_MODS; j++)
        if (mf_arch_has_module(c, j) && !d->mods[j])
            return mf_err_set(err, MF_EINVAL, "model config: arch %s has no %s projection", d->name,
                              j == MOD_QKV ? "fused query_key_value" : j == MOD_GATE_UP ? "fused gate/up" : "such");
    if (c->embed_norm && !d->emb_norm)
        return mf_err_set(err, MF_EINVAL, "model config: arch %s has no embedding norm", d->name);
    if (c->prefix_lm) {
        int V = c->vocab_size;
        if (c->bos_token_id < 0 || c->bos_token_id >= V || c->gmask_token_id >= V || c->mask_token_id >= V ||
            (c->gmask_token_id < 0 && c->mask_token_id < 0))
            return mf_err_set(err, MF_EINVAL,
                              "model config: the prefix LM needs bos_token_id (<sop>) and gmask_token_id or "
                              "mask_token_id inside the vocabulary (got %d, %d, %d for vocab %d)",
                              c->bos_token_id, c->gmask_token_id, c->mask_token_id, V);
    }
    if (c->rope_theta <= 0) c->rope_theta = 10000.0;
    if (c->rms_norm_eps <= 0) c->rms_norm_eps = c->norm == MF_NORM_LAYER ? 1e-5 : 1e-6;
    if (c->max_position_embeddings <= 0) c->max_position_embeddings = 2048;
    if (c->arch == MF_ARCH_QWEN2 && c->attention_bias == 0) c->attention_bias = 1;
    return 0;
}

int mf_model_is_llama_math(const mf_model *m)
{
    const mf_model_config *c = &m->cfg;
    return c->norm == MF_NORM_RMS && c->act == MF_ACT_SWIGLU && c->pos == MF_POS_ROPE && c->qkv == MF_QKV_SEPARATE &&
           !c->mlp_fused && !c->o_bias && !c->mlp_bias && !c->embed_norm && !c->rope_interleaved &&
           m->rot == c->head_dim && !c->prefix_fixed_positions && !c->prefix_embed_kv && !c->glm_residual &&
           !c->prefix_lm &&
           !(m->has_prefix && m->prefix.dropout > 0);
}

/* transformers' _get_alibi_slopes: closest power of two p <= nh; slopes base^1..base^p with
 * base = 2^(-2^-(log2 p - 3)); the remaining heads take odd powers of the 2p base. */
void mf_model_alibi_slopes(const mf_model *m, float *slopes)
{
    int nh = m->cfg.num_attention_heads, p = 1;
    while (2 * p <= nh) p *= 2;
    float base = (float)pow(2.0, -pow(2.0, -(log2((double)p) - 3.0)));
    for (int i = 0; i < p; i++) slopes[i] = powf(base, (float)(i + 1));
    if (p != nh) {
        float extra = (float)pow(2.0, -pow(2.0, -(log2((double)(2 * p)) - 3.0)));
        int rest = nh - p < p ? nh - p : p;
        for (int i = 0; i < rest; i++) slopes[p + i] = powf(extra, (float)(2 * i + 1));
    }
}

/* ---------------------------------------------------------------- module words */

int mf_model_module_names(mf_arch arch, unsigned *bits, const char **names, int cap)
{
    const mf_arch_desc *d = mf_arch_desc_of(arch);
    int n = 0;
    for (int j = 0; d && j < N_MODS && n < cap; j++)
        if (d->mods[j]) {
            bits[n] = mf_mod_bit(j);
            names[n++] = leaf(d->mods[j]);
        }
    return n;
}

unsigned mf_model_default_lora_target(mf_arch arch)
{
    const mf_arch_desc *d = mf_arch_desc_of(arch);
    if (d && d->mods[MOD_QKV]) return MF_MOD_QKV; /* PEFT: query_key_value for bloom / chatglm */
    return MF_MOD_Q | MF_MOD_V;
}

int mf_model_modules_parse(unsigned *out, mf_arch arch, const char *list, mf_err *err)
{
    static const struct { const char *name; unsigned bits; } groups[] = {
        {"self_attn", MF_MOD_ATTN}, {"self_attention", MF_MOD_ATTN}, {"attention", MF_MOD_ATTN},
        {"mlp", MF_MOD_MLP}, {"norm", MF_MOD_NORMS}, {"all", MF_MOD_ALL}, {"all-linear", MF_MOD_ATTN | MF_MOD_MLP},
    };
    unsigned mbits[N_MODS];
    const char *mnames[N_MODS];
    int nm = mf_model_module_names(arch, mbits, mnames, N_MODS);
    unsigned bits = 0;
    const char *s = list;
    while (s && *s) {
        while (*s == ',' || *s == ' ') s++;
        if (!*s) break;
        size_t n = strcspn(s, ", ");
        int found = 0;
        for (int i = 0; i < nm; i++)
            if (strlen(mnames[i]) == n && !strncmp(mnames[i], s, n)) {
                bits |= mbits[i];
                found = 1;
            }
        for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
            if (strlen(groups[i].name) == n && !strncmp(groups[i].name, s, n)) {
                bits |= groups[i].bits;
                found = 1;
            }
        if (!found) {
            char have[256];
            size_t k = 0;
            have[0] = 0;
            for (int i = 0; i < nm && k < sizeof have; i++)
                k += (size_t)snprintf(have + k, sizeof have - k, "%s, ", mnames[i]);
            return mf_err_set(err, MF_EINVAL, "unknown module '%.*s' for %s (expected %sself_attn, mlp, norm or all)",
                              (int)n, s, mf_model_arch_name(arch), have);
        }
        s += n;
    }
    if (!bits) return mf_err_set(err, MF_EINVAL, "empty module list '%s'", list ? list : "");
    *out = bits;
    return 0;
}

int mf_k_modules_parse(unsigned *out, const char *list, mf_err *err)
{
    return mf_model_modules_parse(out, MF_ARCH_LLAMA, list, err);
}
