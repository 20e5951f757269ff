/*
 * kernels/model_internal.h — the mf_model struct, shared by model.c, the
 * optimizer, generation and the backends (not a public header).
 *
 * Params live in one table; the per-layer index arrays say which table entry
 * plays which role (-1 = absent), so kernels never look names up.
 */
#ifndef MF_KERNELS_MODEL_INTERNAL_H
#define MF_KERNELS_MODEL_INTERNAL_H

#include "kernels/backend.h"
#include "kernels/model.h"

#include <math.h>

/* Linear modules of a layer. Slots 0..6 are in MF_MOD_* bit order; the fused
 * ones (MOD_QKV, MOD_GATE_UP) replace their parts in the archs that have them
 * (mf_mod_bit gives a slot's bit). */
enum { MOD_Q, MOD_K, MOD_V, MOD_O, MOD_GATE, MOD_UP, MOD_DOWN, MOD_QKV, MOD_GATE_UP, N_MODS };

static inline unsigned mf_mod_bit(int j)
{
    return j < MOD_QKV ? 1u << j : j == MOD_QKV ? (unsigned)MF_MOD_QKV : (unsigned)MF_MOD_GATE_UP;
}

/* Is slot j part of the attention half of a layer? */
static inline int mf_mod_is_attn(int j)
{
    return j <= MOD_O || j == MOD_QKV;
}

/* An architecture's HF names (kernels/arch.c): without ".weight"/".bias"; layer
 * l's names are layers + l + "." + name; NULL = not in this arch. */
typedef struct mf_arch_desc {
    mf_arch arch;
    const char *name;
    const char *embed, *emb_norm, *layers, *ln1, *ln2, *norm, *lm_head;
    const char *mods[N_MODS];
} mf_arch_desc;

const mf_arch_desc *mf_arch_desc_of(mf_arch arch);
/* Does an arch with (checked) config c have module slot j / does it have a bias? */
int mf_arch_has_module(const mf_model_config *c, int j);
int mf_arch_module_has_bias(const mf_model_config *c, int j);

typedef struct mf_layer_idx {
    int ln1, ln2;       /* norm weights */
    int ln1_b, ln2_b;   /* LayerNorm biases, or -1 */
    int w[N_MODS];      /* base weight of each linear module, -1 when the arch does not have it */
    int bias[N_MODS];   /* its bias, or -1 */
    int lora_a[N_MODS]; /* -1 when the module has no LoRA */
    int lora_b[N_MODS];
} mf_layer_idx;

struct mf_model {
    mf_model_config cfg;
    int q_dim, kv_dim;
    mf_k_param *params;
    size_t n_params, cap_params;
    mf_layer_idx *L;
    int embed, norm, lm_head, score;
    int norm_b;               /* final LayerNorm bias, or -1 */
    int emb_norm, emb_norm_b; /* embedding LayerNorm (BLOOM), or -1 */
    int rot;                  /* rotary dims per head (cfg.rotary_dim resolved) */
    int pfx_emb, pfx_w0, pfx_b0, pfx_w2, pfx_b2; /* prefix encoder, -1 when absent */
    int has_lora;
    mf_k_lora_config lora;
    float lora_scale;
    int has_prefix;
    mf_k_prefix_config prefix;
    int recompute;
    int dry;              /* a name/shape table only (mf_model_param_list): no data */
    float *dlogp_ws;      /* lm_step's dL/dlogp, grown to the largest B*T seen */
    size_t dlogp_cap;
    uint64_t fwd_counter; /* advances per training forward; keys the dropout hash */
    const mf_k_backend *be;
    void *be_state;
};

static inline mf_k_param *mf_p(mf_model *m, int idx)
{
    return idx >= 0 ? &m->params[idx] : 0;
}

/* In-module helpers (model.c). */
/* Lowest layer whose backward is needed: everything at or below it that is
 * trainable gets a gradient (0 when the embedding or a prefix trains; L when
 * only head / final-norm params train). Every backend's backward stops there. */
int mf_model_lowest_needed_layer(const mf_model *m);
/* Param idx exists and trains. */
int mf_model_trains(const mf_model *m, int idx);
/* Does anything of layer l's attention half (ln1, q/k/v/o, their biases and LoRA) train? */
int mf_model_attn_trains(const mf_model *m, int l);
/* LoRA dropout: on in training forwards of a model with LoRA dropout > 0. Element i
 * of (layer l, module j) in the current training forward is kept when
 * hash64(key + i) >> 40 >= p * 2^24 with key = mf_model_lora_drop_key(m, l, j): a
 * counter hash, so backward and recomputation regenerate the same mask, and every
 * backend drops the same elements. */
int mf_model_lora_dropout_on(const mf_model *m, int train);
uint64_t mf_model_lora_drop_key(const mf_model *m, int l, int j);
/* Prefix dropout (mf_k_prefix_config.dropout): on in training forwards when > 0.
 * Element ((b * P + p) * D + c) of the batch's prefix rows is kept when
 * hash64(key + i) >> 40 >= dropout * 2^24 with key = mf_model_prefix_drop_key(m). */
int mf_model_prefix_dropout_on(const mf_model *m, int train);
uint64_t mf_model_prefix_drop_key(const mf_model *m);
/* GLM prefix LM (cfg.prefix_lm): a row's context length (index of its first bos_token_id) and
 * mask position (first gmask_token_id, else first mask_token_id); MF_EINVAL naming the row
 * when either is missing. */
int mf_model_glm_row(const mf_model *m, const int32_t *ids, int T, int row, int *ctx, int *mpos, mf_err *err);
/* GLM's residual scale alpha = sqrt(2 * num_layers) (cfg.glm_residual), in fp32 as torch scales by it. */
static inline float mf_model_glm_alpha(const mf_model *m)
{
    return (float)sqrt(2.0 * m->cfg.num_hidden_layers);
}
/* The 2D position of token t of such a row. */
static inline void mf_glm_position(int t, int ctx, int mpos, int *pos, int *bpos)
{
    *pos = t < ctx ? t : mpos;
    *bpos = t < ctx ? 0 : t - ctx + 1;
}
/* Position of token t of a row: t, after the prefix unless cfg.prefix_fixed_positions. */
int mf_model_pos_offset(const mf_model *m);
/* ALiBi slopes [num_attention_heads] as transformers' BLOOM computes them (fp32). */
void mf_model_alibi_slopes(const mf_model *m, float *slopes);
/* Does the model use only what a LLaMA-family backend computes (RMSNorm,
 * SwiGLU with separate gate/up, full-width halves RoPE, separate q/k/v with
 * optional q/k/v bias, no other biases, no embedding norm, no prefix dropout)? */
int mf_model_is_llama_math(const mf_model *m);
/* decode's arguments: n tokens with rows / positions inside a cache of rows x cap
 * and ids inside the vocabulary (MF_EINVAL naming the first bad token). */
int mf_model_decode_check(const mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int rows,
                          int cap, mf_err *err);

#endif
