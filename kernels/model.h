/*
 * kernels/model.h — the model: configuration, named parameters, adapters,
 * heads, training step, optimizer and generation.
 *
 * This is the contract between the numerical core and the rest of medflow.
 * The I/O layer (stages/: safetensors, config.json, PEFT) only needs the
 * first half of this file:
 *
 *   mf_model_config cfg = {.arch = MF_ARCH_LLAMA, .vocab_size = ..., ...};
 *   mf_model *m;
 *   mf_model_new(&m, &cfg, &err);          // allocates every base parameter (zeros)
 *   mf_model_add_lora(m, &lcfg, &err);     // optional: adds lora_A / lora_B params
 *   for (size_t i = 0; i < mf_model_num_params(m); i++) {
 *       mf_k_param *p = mf_model_param(m, i);   // p->name, p->shape, p->data
 *       memcpy(p->data, tensor_bytes, p->numel * sizeof(float));
 *   }
 *   mf_model_sync(m, &err);                // host -> backend after writing data
 *
 * Canonical parameter names are the Hugging Face ones of the architecture and
 * every weight has the HF layout ([out, in], row-major, fp32), so loading is a
 * memcpy. LLaMA family (LLaMA, Qwen2, Baichuan):
 *
 *   model.embed_tokens.weight                         [vocab, hidden]
 *   model.layers.{i}.input_layernorm.weight           [hidden]
 *   model.layers.{i}.self_attn.q_proj.weight          [heads*head_dim, hidden]   (+ .bias when attention_bias)
 *   model.layers.{i}.self_attn.k_proj.weight          [kv_heads*head_dim, hidden] (+ .bias)
 *   model.layers.{i}.self_attn.v_proj.weight          [kv_heads*head_dim, hidden] (+ .bias)
 *   model.layers.{i}.self_attn.o_proj.weight          [hidden, heads*head_dim]
 *   model.layers.{i}.post_attention_layernorm.weight  [hidden]
 *   model.layers.{i}.mlp.gate_proj.weight             [intermediate, hidden]
 *   model.layers.{i}.mlp.up_proj.weight               [intermediate, hidden]
 *   model.layers.{i}.mlp.down_proj.weight             [hidden, intermediate]
 *   model.norm.weight                                 [hidden]
 *   lm_head.weight                                    [vocab, hidden]  (absent when tie_word_embeddings)
 *   score.weight                                      [1, hidden]      (after mf_model_add_score_head;
 *                                                                       as LlamaForSequenceClassification)
 *   model.layers.{i}.{self_attn|mlp}.{module}.lora_A.weight  [r, in]   (PEFT layout; the PEFT file name
 *   model.layers.{i}.{self_attn|mlp}.{module}.lora_B.weight  [out, r]   adds "base_model.model." in front)
 *   prefix_encoder.embedding.weight                   [pre_seq_len, 2*layers*kv_dim]          (no projection)
 *   prefix_encoder.embedding.weight                   [pre_seq_len, E]                         (projection:
 *   prefix_encoder.trans.0.weight / .bias             [prefix_hidden, E] / [prefix_hidden]      ChatGLM /
 *   prefix_encoder.trans.2.weight / .bias             [2*layers*kv_dim, prefix_hidden] / [..]    P-Tuning v2;
 *                                                      E = hidden, or 2*layers*kv_dim with prefix_embed_kv)
 *
 * BLOOM (BloomForCausalLM; LayerNorms and every linear have a .bias):
 *   transformer.word_embeddings.weight, transformer.word_embeddings_layernorm.{weight,bias},
 *   transformer.h.{i}.input_layernorm, .self_attention.query_key_value [3*hidden, hidden] (per head
 *   [q; k; v] rows), .self_attention.dense, .post_attention_layernorm, .mlp.dense_h_to_4h [4h, h],
 *   .mlp.dense_4h_to_h, transformer.ln_f; the LM head is tied.
 * GLM (GlmForCausalLM, GLM-4 in transformers' layout): the LLaMA names, q/k/v biases, and
 *   model.layers.{i}.mlp.gate_up_proj [2*intermediate, hidden] (gate rows, then up rows) instead of
 *   gate_proj / up_proj.
 * ChatGLM2/3 and GLM-4 chat (ChatGLMModel, trust_remote_code checkpoints):
 *   transformer.embedding.word_embeddings.weight, transformer.encoder.layers.{i}.input_layernorm,
 *   .self_attention.query_key_value [(heads + 2*kv_heads)*head_dim, hidden] (+ .bias; rows q, then
 *   k, then v), .self_attention.dense, .post_attention_layernorm, .mlp.dense_h_to_4h [2*ffn, hidden]
 *   (gate, then up), .mlp.dense_4h_to_h, transformer.encoder.final_layernorm.weight,
 *   transformer.output_layer.weight.
 * LoRA params are the module's name + ".lora_A.weight" / ".lora_B.weight" in every architecture
 * (one adapter on a fused module, as PEFT does). mf_model_module_names lists an arch's modules.
 *
 * Baichuan's fused W_pack ([3*hidden, hidden] = q;k;v stacked) is an I/O
 * concern: the model keeps separate q/k/v; the I/O layer splits on load
 * and fuses on export. Baichuan(-7B) is LLaMA math otherwise.
 *
 * The host copy (p->data, p->grad) is the source of truth on the CPU backend;
 * a device backend mirrors it and copies on mf_model_sync / mf_model_fetch.
 *
 * All functions return 0 or a negative MF_E* code and fill *err (may be NULL).
 */
#ifndef MF_KERNELS_MODEL_H
#define MF_KERNELS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---------------------------------------------------------------- config */

typedef enum mf_arch {
    MF_ARCH_LLAMA = 0,    /* LlamaForCausalLM, Mistral-like */
    MF_ARCH_QWEN2 = 1,    /* Qwen2ForCausalLM: LLaMA + q/k/v biases (attention_bias = 1) */
    MF_ARCH_BAICHUAN = 2, /* Baichuan-7B: LLaMA math, fused W_pack split by the I/O layer */
    MF_ARCH_BLOOM = 3,    /* BloomForCausalLM: ALiBi, LayerNorms, GELU, fused per-head QKV, all biases */
    MF_ARCH_GLM = 4,      /* GlmForCausalLM (GLM-4): half interleaved rotary, q/k/v bias, fused gate_up */
    MF_ARCH_CHATGLM2 = 5, /* ChatGLMModel v2/v3 (+ GLM-4 chat remote code): the GLM math, fused QKV */
    MF_ARCH_CHATGLM = 6   /* ChatGLM-6B (v1, MedGLM.H's base): GLM blocks — LayerNorms, GELU, per-head fused
                             QKV, 2D rotary, alpha-scaled residuals, prefix-LM attention over the prompt */
} mf_arch;

/* The architecture features. mf_model_config_check sets them from the arch
 * for BLOOM / GLM / ChatGLM2 (a named arch's math is fixed); the LLaMA family
 * keeps every one at 0, which is the LLaMA choice. */
typedef enum mf_norm_kind {
    MF_NORM_RMS = 0,  /* RMSNorm: weight */
    MF_NORM_LAYER = 1 /* LayerNorm: weight + bias (torch.nn.LayerNorm) */
} mf_norm_kind;

typedef enum mf_act_kind {
    MF_ACT_SWIGLU = 0,   /* down(silu(gate(x)) * up(x)) */
    MF_ACT_GELU_TANH = 1 /* down(gelu_tanh(up(x))): BLOOM's dense_h_to_4h / dense_4h_to_h, no gate */
} mf_act_kind;

typedef enum mf_pos_kind {
    MF_POS_ROPE = 0,   /* rotary on q and k (rotary_dim, rope_interleaved) */
    MF_POS_ALIBI = 1,  /* ALiBi: score += slope[h] * key position; no rotary (BLOOM) */
    MF_POS_ROPE_2D = 2 /* GLM's 2D rotary (ChatGLM-6B): each head's first half rotates by the position
                          id, its second half by the block position id (halves layout, head_dim/2 dims
                          each, inv_freq rounded to fp16 as the release keeps it); positions come from
                          the tokens (prefix_lm) */
} mf_pos_kind;

typedef enum mf_qkv_layout {
    MF_QKV_SEPARATE = 0,   /* q_proj, k_proj, v_proj */
    MF_QKV_FUSED = 1,      /* one [Dq + 2 Dkv, hidden] weight: q rows, then k, then v (ChatGLM2 MQA) */
    MF_QKV_FUSED_HEADS = 2 /* one [3 Dq, hidden] weight, per head [q; k; v] (BLOOM; needs kv_heads == heads) */
} mf_qkv_layout;

typedef struct mf_model_config {
    mf_arch arch;
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads; /* == num_attention_heads when the model has no GQA / multi-query */
    int head_dim;            /* usually hidden_size / num_attention_heads; 0 = that */
    double rope_theta;       /* 10000 for LLaMA-1/2, 1e6 for Qwen2 */
    double rms_norm_eps;     /* the norms' epsilon (RMSNorm or LayerNorm): 1e-6 / 1e-5 */
    int max_position_embeddings;
    int tie_word_embeddings; /* 1: the LM head shares the token embedding */
    int attention_bias;      /* 1: q/k/v projections (or the fused QKV) have biases (Qwen2, GLM) */
    int pad_token_id;        /* -1 when none (informational; masks come from attention_mask) */
    int bos_token_id;        /* -1 when none */
    int eos_token_id;        /* -1 when none */
    /* ---- architecture features (see above; 0 = LLaMA) ---- */
    mf_norm_kind norm;
    mf_act_kind act;
    mf_pos_kind pos;
    mf_qkv_layout qkv;
    int rotary_dim;          /* RoPE on the first rotary_dim dims of each head (even); 0 = head_dim */
    int rope_interleaved;    /* 1: rotate pairs (x[2i], x[2i+1]) (GLM); 0: halves (x[i], x[i+rot/2]) */
    int mlp_fused;           /* gate and up in one [2I, hidden] weight, gate rows first (SwiGLU only) */
    int o_bias;              /* the attention output projection has a bias */
    int mlp_bias;            /* the MLP projections have biases */
    int embed_norm;          /* a norm right after the token embedding (BLOOM) */
    int prefix_fixed_positions; /* 1: with a P-Tuning prefix, token positions still start at 0
                                   (ChatGLM's own P-Tuning v2); 0: they continue after it (HF past_key_values) */
    int prefix_embed_kv;     /* 1: with prefix_projection the prefix embedding is 2*layers*kv_dim wide
                                (ChatGLM2/3's PrefixEncoder); 0: hidden_size wide */
    int glm_residual;        /* 1: x = Norm(x) * alpha + f(Norm(x)) around attention and MLP, alpha =
                                sqrt(2 * num_hidden_layers) (ChatGLM-6B); 0: x = x + f(Norm(x)) */
    int prefix_lm;           /* 1: GLM's prefix LM, read from each row's tokens: those before the first
                                bos_token_id (<sop>) see each other both ways, later ones causally; with
                                MF_POS_ROPE_2D, position t before it and the mask position after (the first
                                gmask_token_id, else mask_token_id), block position 0 before, t - ctx + 1
                                after. A row without <sop> or a mask token is refused (MF_EINVAL). */
    int mask_token_id;       /* [MASK] (prefix_lm); -1 when none */
    int gmask_token_id;      /* [gMASK] (prefix_lm); -1 when none */
} mf_model_config;

/* Fill defaults for zero fields (head_dim, rope_theta, rms_norm_eps, kv heads,
 * rotary_dim), set the arch's features, and check the shapes are consistent. */
int mf_model_config_check(mf_model_config *cfg, mf_err *err);
/* "llama", "qwen2", "baichuan", "bloom", "glm", "chatglm2", "chatglm" ("?" when unknown). */
const char *mf_model_arch_name(mf_arch arch);

/* ---------------------------------------------------------------- params */

typedef enum mf_k_param_kind {
    MF_PARAM_BASE = 0,   /* a weight of the base model */
    MF_PARAM_LORA = 1,   /* lora_A / lora_B */
    MF_PARAM_PREFIX = 2, /* P-Tuning v2 prefix encoder */
    MF_PARAM_HEAD = 3    /* score.weight (reward / value head) */
} mf_k_param_kind;

#define MF_K_MAX_NAME 128

typedef struct mf_k_param {
    char name[MF_K_MAX_NAME]; /* canonical HF name, see the table above */
    int ndim;                 /* 1 or 2 */
    int64_t shape[2];         /* HF shape, row-major */
    size_t numel;
    float *data;              /* host fp32, numel floats, owned by the model */
    float *grad;              /* host fp32 gradient (NULL while the param is frozen) */
    int trainable;            /* receives gradients and optimizer state */
    mf_k_param_kind kind;
    int layer;                /* layer index, or -1 */
} mf_k_param;

typedef struct mf_model mf_model;

/* A model with every base parameter allocated and zeroed (call
 * mf_model_init_random or copy weights in). The config is copied and checked. */
int mf_model_new(mf_model **out, const mf_model_config *cfg, mf_err *err);
/* The same on a given backend (kernels/backend.h: mf_k_backend_cpu(), mf_k_backend_cuda()). */
typedef struct mf_k_backend mf_k_backend;
int mf_model_new_on(mf_model **out, const mf_model_config *cfg, const mf_k_backend *be, mf_err *err);
void mf_model_free(mf_model *m);
const mf_model_config *mf_model_get_config(const mf_model *m);

size_t mf_model_num_params(const mf_model *m);
mf_k_param *mf_model_param(mf_model *m, size_t idx);                /* NULL when out of range */
mf_k_param *mf_model_find_param(mf_model *m, const char *name);     /* NULL when absent */
/* Sum of numel over all params / over trainable params. */
size_t mf_model_count(const mf_model *m, int trainable_only);

/* Copy host data to the backend (no-op on CPU), and back (grads + data). */
int mf_model_sync(mf_model *m, mf_err *err);
int mf_model_fetch(mf_model *m, mf_err *err);

/* HF-style random init: normal(0, std) for matrices (std = initializer_range,
 * 0.02 in HF), ones for norms, zeros for biases. Deterministic in seed. */
int mf_model_init_random(mf_model *m, uint64_t seed, float std, mf_err *err);

/* ---------------------------------------------------------------- adapters */

/* Target-module bits for LoRA and freeze. Fused modules (one weight for what
 * other archs split) have their own bits; an arch has either the fused module
 * or its parts. */
enum {
    MF_MOD_Q = 1 << 0, MF_MOD_K = 1 << 1, MF_MOD_V = 1 << 2, MF_MOD_O = 1 << 3,
    MF_MOD_GATE = 1 << 4, MF_MOD_UP = 1 << 5, MF_MOD_DOWN = 1 << 6,
    MF_MOD_NORMS = 1 << 7, /* the layer's two norms, weights and biases (freeze only) */
    MF_MOD_QKV = 1 << 8,     /* fused query_key_value (BLOOM, ChatGLM2) */
    MF_MOD_GATE_UP = 1 << 9, /* fused gate + up (GLM gate_up_proj, ChatGLM2 dense_h_to_4h) */
    MF_MOD_ATTN = MF_MOD_Q | MF_MOD_K | MF_MOD_V | MF_MOD_O | MF_MOD_QKV,
    MF_MOD_MLP = MF_MOD_GATE | MF_MOD_UP | MF_MOD_DOWN | MF_MOD_GATE_UP,
    MF_MOD_ALL = MF_MOD_ATTN | MF_MOD_MLP | MF_MOD_NORMS
};
/* LLaMA module words: "q_proj,v_proj" / "all" / "self_attn" / "mlp" -> bits;
 * MF_EINVAL naming the bad word. Same as mf_model_modules_parse(MF_ARCH_LLAMA). */
int mf_k_modules_parse(unsigned *out, const char *list, mf_err *err);
/* An arch's own module words — the last component of its HF module names, as
 * PEFT's target_modules spells them ("query_key_value,dense" for BLOOM) — plus
 * "self_attn" / "self_attention" / "attention", "mlp", "norm", "all", "all-linear".
 * A word the arch does not have is MF_EINVAL listing the ones it has. */
int mf_model_modules_parse(unsigned *out, mf_arch arch, const char *list, mf_err *err);
/* The arch's linear modules: up to 7 (bit, PEFT name) pairs; returns the count. */
int mf_model_module_names(mf_arch arch, unsigned *bits, const char **names, int cap);
/* PEFT's default LoRA target for the arch (q_proj|v_proj; query_key_value for BLOOM / ChatGLM2). */
unsigned mf_model_default_lora_target(mf_arch arch);

typedef struct mf_k_lora_config {
    int rank;
    float alpha;     /* scaling = alpha / rank (PEFT, use_rslora = false) */
    float dropout;   /* on the LoRA input path only, training only */
    unsigned target; /* MF_MOD_* bits; PEFT's LLaMA default is q_proj|v_proj */
    uint64_t seed;   /* A ~ kaiming_uniform(a = sqrt(5)) like PEFT; B = 0 */
} mf_k_lora_config;

/* Adds lora_A/lora_B for every targeted module of every layer, makes them the
 * only trainable params (base frozen). */
int mf_model_add_lora(mf_model *m, const mf_k_lora_config *cfg, mf_err *err);
/* The parameters a model of cfg has, without creating it: names, shapes, kind
 * and layer of the base params (lora NULL) or of the LoRA params lora adds
 * (rank and target; target 0 = the arch's default), in the model's order; data
 * and grad NULL. *out is malloc'd (free it). For checking a checkpoint before
 * allocating a model. */
int mf_model_param_list(mf_k_param **out, size_t *n, const mf_model_config *cfg, const mf_k_lora_config *lora,
                        mf_err *err);

/* W += scaling * B @ A for every adapter, then removes the LoRA params. */
int mf_model_merge_lora(mf_model *m, mf_err *err);

typedef struct mf_k_prefix_config {
    int pre_seq_len;
    int prefix_projection; /* 0: embedding holds the prefixes; 1: embedding -> Linear -> tanh -> Linear */
    int prefix_hidden_size;
    uint64_t seed;
    float dropout;         /* on the prefix key/value rows in training forwards (ChatGLM's recipe: 0.1);
                              masks from the same counter hash as LoRA dropout */
} mf_k_prefix_config;

/* P-Tuning v2: per-layer trainable key/value prefixes; base frozen. */
int mf_model_add_prefix(mf_model *m, const mf_k_prefix_config *cfg, mf_err *err);

/* Change the prefix dropout of a model that has a prefix (e.g. one opened to train on). */
int mf_model_set_prefix_dropout(mf_model *m, float dropout, mf_err *err);

/* score.weight [1, hidden] (normal(0, 0.02) with seed); trainable. */
int mf_model_add_score_head(mf_model *m, uint64_t seed, mf_err *err);

typedef struct mf_k_freeze_config {
    int trainable_layers; /* the last N layers train; N > 0 */
    unsigned modules;     /* MF_MOD_* bits within those layers; 0 = MF_MOD_ALL */
    int train_embeddings; /* also embed_tokens / lm_head / final norm (default 0) */
} mf_k_freeze_config;

/* Freeze-tuning: only the chosen params of the last N layers are trainable. */
int mf_model_freeze(mf_model *m, const mf_k_freeze_config *cfg, mf_err *err);
/* Mark one param (by name) trainable or frozen; full fine-tuning = all on. */
int mf_model_set_trainable(mf_model *m, const char *name, int trainable, mf_err *err);
void mf_model_set_all_trainable(mf_model *m, int trainable);

/* ---------------------------------------------------------------- training step */

typedef struct mf_k_batch {
    int B, T;
    const int32_t *input_ids;      /* [B, T] */
    const int32_t *attention_mask; /* [B, T] 1 real / 0 padding; NULL = all real */
    const int32_t *labels;         /* [B, T] or NULL; -100 = ignored. Shifted like HF:
                                      logits[b,t] predicts labels[b,t+1] */
} mf_k_batch;

enum { MF_K_IGNORE_INDEX = -100 };

/* What a forward pass computes. */
enum {
    MF_FWD_LOGITS = 1 << 0, /* LM head: logits [B,T,V] and, with labels, token log-probs */
    MF_FWD_VALUES = 1 << 1, /* score head on every position: values [B,T] */
    MF_FWD_TRAIN = 1 << 2,  /* keep activations for mf_model_backward; dropout on */
    MF_FWD_NO_LOGITS = 1 << 3 /* with MF_FWD_LOGITS: the caller reads logp/valid/loss only; a device
                                 backend then skips copying [B,T,V] logits to the host (out->logits
                                 may be NULL). The CPU backend ignores it. */
};

/* Results of the last forward, owned by the model: valid until the next
 * forward; backward reuses the logits buffer for dlogits (copy what you need). */
typedef struct mf_k_outputs {
    int B, T, V;
    const float *logits;  /* [B,T,V] (MF_FWD_LOGITS) */
    const float *logp;    /* [B,T]: log p(labels[b,t+1] | ..t) at index t; 0 where ignored */
    const float *valid;   /* [B,T]: 1 where logp counts (label not ignored, t < T-1), else 0 */
    const float *values;  /* [B,T] (MF_FWD_VALUES) */
    const float *reward;  /* [B]: values at the last non-pad token (HF sequence classification) */
    const int32_t *last;  /* [B]: that position (rightmost attention_mask == 1; T-1 without a mask) */
    int n_valid;          /* number of counted label tokens */
    double loss;          /* mean -logp over counted tokens (HF CrossEntropy mean), 0 if none */
} mf_k_outputs;

int mf_model_forward(mf_model *m, const mf_k_batch *b, int flags, mf_k_outputs *out, mf_err *err);

/* Backpropagate from the last MF_FWD_TRAIN forward. dlogp [B,T] is dL/dlogp
 * (NULL = none), dvalues [B,T] is dL/dvalues (NULL = none; a reward gradient
 * goes on the last non-pad position). Gradients ACCUMULATE into p->grad of
 * trainable params (gradient accumulation); call mf_model_zero_grad first. */
int mf_model_backward(mf_model *m, const float *dlogp, const float *dvalues, mf_err *err);

/* forward + backward of the HF causal-LM loss scaled by loss_scale
 * (1/grad_accum for accumulation); *loss = unscaled mean CE. */
int mf_model_lm_step(mf_model *m, const mf_k_batch *b, float loss_scale, double *loss, mf_err *err);

void mf_model_zero_grad(mf_model *m);
/* The dropout stream: LoRA dropout masks are a hash of (lora seed, this
 * counter, layer, module, index); the counter advances once per training
 * forward. Save it with a checkpoint and restore it for bit-identical resumes. */
uint64_t mf_model_rng_state(const mf_model *m);
void mf_model_set_rng_state(mf_model *m, uint64_t counter);
/* Activation recomputation: keep only layer inputs, recompute in backward. */
void mf_model_set_recompute(mf_model *m, int on);

/* ---------------------------------------------------------------- optimizer */

typedef enum mf_k_sched { MF_SCHED_CONSTANT = 0, MF_SCHED_LINEAR = 1, MF_SCHED_COSINE = 2 } mf_k_sched;

typedef struct mf_k_adamw_config {
    float lr, beta1, beta2, eps, weight_decay;
    float max_grad_norm;  /* <= 0: no clipping */
    mf_k_sched sched;
    long warmup_steps, total_steps;
    int decay_norms_biases; /* 0 (LLaMA-Factory / HF Trainer): no decay on 1-D params */
} mf_k_adamw_config;

/* HF get_{constant,linear,cosine}_schedule_with_warmup multiplier at step. */
double mf_k_lr_factor(const mf_k_adamw_config *c, long step);

typedef struct mf_k_adamw mf_k_adamw;
int mf_k_adamw_new(mf_k_adamw **out, mf_model *m, const mf_k_adamw_config *cfg, mf_err *err);
void mf_k_adamw_free(mf_k_adamw *o);
/* Clip (returns the pre-clip global norm in *grad_norm), step, advance the schedule. */
int mf_k_adamw_step(mf_k_adamw *o, double *grad_norm, mf_err *err);
long mf_k_adamw_steps(const mf_k_adamw *o);
/* Exact state (step, m, v per trainable param by name) to / from a file. */
int mf_k_adamw_save(const mf_k_adamw *o, const char *path, mf_err *err);
int mf_k_adamw_load(mf_k_adamw *o, const char *path, mf_err *err);

/* ---------------------------------------------------------------- generation */

typedef struct mf_k_gen_config {
    int max_new_tokens;
    float temperature;   /* <= 0: greedy */
    int top_k;           /* 0: off */
    float top_p;         /* >= 1: off */
    const int32_t *stop_ids; /* a generated stop token ends its row (and is kept) */
    int n_stop;
    int pad_id;          /* written after a row stopped */
    uint64_t seed;       /* see mf_k_rng: xoshiro256** seeded by splitmix64(seed) */
    int use_cache;       /* 1: KV cache (default); 0: recompute the full prefix (tests) */
} mf_k_gen_config;

/* prompts: B rows of lengths plen[b] (left-aligned, no padding needed).
 * out_ids [B, max_new_tokens] and out_logp [B, max_new_tokens] (log-prob of
 * each generated token under the sampling distribution before temperature,
 * i.e. the model's log-softmax); out_len[b] = tokens generated. */
int mf_model_generate(mf_model *m, int B, const int32_t *const *prompts, const int *plen,
                      const mf_k_gen_config *cfg, int32_t *out_ids, float *out_logp, int *out_len,
                      mf_err *err);

/* Sum and mean log-prob of cont[0..clen) given prompt[0..plen) (DPO, MCQ). */
int mf_model_score(mf_model *m, const int32_t *prompt, int plen, const int32_t *cont, int clen,
                   double *sum_logp, double *mean_logp, mf_err *err);

#endif
