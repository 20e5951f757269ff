/*
 * modelio/modelio.h — Hugging Face model directories <-> medflow's model.
 *
 * An HF directory is config.json + model.safetensors (or shards + index) +
 * tokenizer.json (+ tokenizer_config.json, generation_config.json). A PEFT
 * adapter directory is adapter_config.json + adapter_model.safetensors, plus
 * medflow's base.json {"base_digest": "sha256:..."} naming the base model.
 *
 * Three layers, each usable alone:
 *   1. config:  config.json <-> mf_model_config (kernels/model.h). Supported:
 *      LlamaForCausalLM/llama, Qwen2ForCausalLM/qwen2, BaichuanForCausalLM/
 *      baichuan (Baichuan-7B), BloomForCausalLM/bloom, GlmForCausalLM/glm,
 *      ChatGLMModel/chatglm (ChatGLM2/3, GLM-4 chat; ChatGLM-6B v1 when the
 *      config has position_encoding_2d / inner_hidden_size). Anything the kernels do
 *      not compute (rope scaling, sliding window, other activations, MLP/o_proj
 *      biases, ALiBi / NormHead Baichuans, BLOOM's post-LayerNorm residual,
 *      ChatGLM2 quantization...) is MF_EUNSUPPORTED naming the key.
 *   2. weights: named fp32 params (mf_k_param, HF names and shapes) <->
 *      safetensors, single or sharded. Baichuan's fused W_pack [3h, h] is split
 *      into q/k/v_proj on read and fused on write; BLOOM's and ChatGLM2's fused
 *      projections are kept fused (the kernels compute them). Every param must be present
 *      with the right shape ("tensor 'X': expected [a, b], checkpoint has [c, d]").
 *   3. model:   whole directories into / out of an mf_model (needs the kernels
 *      implementation; modelio/model_load.c).
 *
 * PEFT names: a LoRA param "model.layers.0.self_attn.q_proj.lora_A.weight" is
 * stored as "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
 */
#ifndef MF_MODELIO_H
#define MF_MODELIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/json.h"
#include "kernels/model.h"
#include "modelio/safetensors.h"

/* What config.json said beyond mf_model_config, and where the files are. */
typedef struct mf_modelio_meta {
    char architecture[64]; /* "LlamaForCausalLM" */
    char model_type[32];   /* "llama" */
    char dtype[16];        /* "float32" / "bfloat16" / "float16" ("" when absent) */
    char *dir;             /* the directory read (malloc'd) */
    char *tokenizer_json;  /* the tokenizer file: tokenizer.json, else ChatGLM-6B's SentencePiece
                              ice_text.model (mf_tok_load reads either directory); NULL when none */
    char *tokenizer_config;/* path or NULL */
    char *generation_config;/* path or NULL */
    double initializer_range;
    int score_head;        /* *ForSequenceClassification (one label): score.weight, no lm_head */
} mf_modelio_meta;

void mf_modelio_meta_free(mf_modelio_meta *m);

/* ---- 1. config.json ---- */

/* Parse a config.json tree (path for error positions). meta may be NULL. */
int mf_modelio_config_parse(mf_model_config *cfg, mf_modelio_meta *meta, const mf_json *config,
                             const char *path, mf_err *err);
/* Read dir/config.json and record tokenizer/generation files present in dir. */
int mf_modelio_read_config(mf_model_config *cfg, mf_modelio_meta *meta, const char *dir, mf_err *err);
/* config.json as transformers writes it for cfg. dtype: "float32"/"bfloat16"/"float16".
 * score_head: write *ForSequenceClassification with one label (reward models). */
int mf_modelio_config_json(mf_json **out, const mf_model_config *cfg, const char *dtype, int score_head, mf_err *err);

/* The base params a model with cfg has, in kernels' order (names + shapes;
 * data/grad NULL). Used to check a checkpoint before allocating a model. */
int mf_modelio_expected_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, mf_err *err);

/* The LoRA params (lora_A [r, in], lora_B [out, r]) for lc->target in every
 * layer, in layer-then-module order (data NULL). */
int mf_modelio_lora_params(mf_k_param **out, size_t *n, const mf_model_config *cfg, const mf_k_lora_config *lc,
                            mf_err *err);

/* ---- 2. weights ---- */

/* Fill params[i]->data (numel floats each) from an open checkpoint. prefix is
 * prepended to every name ("" for models, "base_model.model." for PEFT).
 * Baichuan q/k/v_proj weights come from W_pack. */
int mf_modelio_read_params(mf_k_param *const *params, size_t n, const mf_safetensors_set *ckpt, mf_arch arch,
                            const char *prefix, mf_err *err);

typedef struct mf_modelio_write_opts {
    mf_safetensors_dtype dtype;         /* storage dtype: MF_SAFETENSORS_F32 (default), MF_SAFETENSORS_BF16, MF_SAFETENSORS_F16 */
    uint64_t max_shard_bytes;  /* 0: one file; else shard like transformers (default 5 GB in save) */
    int score_head;            /* write_dir: a *ForSequenceClassification config (set by mf_modelio_save) */
} mf_modelio_write_opts;

/* Write params to dir/BASE.safetensors (or shards). Baichuan q/k/v fused into W_pack. */
int mf_modelio_write_params(const char *dir, const char *base, mf_k_param *const *params, size_t n,
                             mf_arch arch, const char *prefix, const mf_modelio_write_opts *opts,
                             mf_err *err);

/* Copy tokenizer.json, tokenizer_config.json and special_tokens_map.json, those that exist, from
 * from_dir (NULL: nothing) into dir. */
int mf_modelio_copy_tokenizer(const char *dir, const char *from_dir, mf_err *err);

/* Write an HF directory: config.json, weights, generation_config.json, and
 * the tokenizer files copied from tokenizer_dir (may be NULL; mf_modelio_copy_tokenizer). */
int mf_modelio_write_dir(const char *dir, const mf_model_config *cfg, mf_k_param *const *params, size_t n,
                          const mf_modelio_write_opts *opts, const char *tokenizer_dir, mf_err *err);

/* ---- PEFT adapters ---- */

typedef struct mf_modelio_peft {
    mf_k_lora_config lora;          /* rank, alpha, dropout, target */
    char base_model[512];           /* base_model_name_or_path ("" when null) */
    char base_digest[80];           /* from base.json ("" when absent) */
} mf_modelio_peft;

/* adapter_config.json (+ base.json when present). Unsupported PEFT options
 * (use_rslora, use_dora, bias, fan_in_fan_out, rank/alpha patterns,
 * modules_to_save, layers_to_transform, non-LORA types) are MF_EUNSUPPORTED. */
int mf_modelio_peft_read(mf_modelio_peft *out, const char *dir, mf_arch arch, mf_err *err);
/* Writes adapter_config.json, and base.json when base_digest is set. */
int mf_modelio_peft_write_config(const char *dir, const mf_modelio_peft *p, mf_arch arch, mf_err *err);
/* base.json alone. digest "sha256:<64 hex>". */
int mf_modelio_base_ref_write(const char *dir, const char *digest, mf_err *err);
int mf_modelio_base_ref_read(char *digest, size_t n, const char *dir, mf_err *err);

/* ---- 3. whole models (modelio/model_load.c) ---- */

/* A new model with the weights of an HF directory (synced to the backend).
 * A *ForSequenceClassification directory gives a model with a score head
 * (mf_model_add_score_head) whose lm_head stays zero (HF stores none).
 * meta (may be NULL) gets the tokenizer paths etc.; free with mf_modelio_meta_free. */
int mf_modelio_load(mf_model **out, mf_modelio_meta *meta, const char *dir, mf_err *err);
/* Save the base weights as an HF directory (LoRA params are not included:
 * merge them first or save them with mf_modelio_save_adapter). A model with
 * a score head is saved as *ForSequenceClassification (score.weight, no lm_head). */
int mf_modelio_save(mf_model *m, const char *dir, const mf_modelio_write_opts *opts, const char *tokenizer_dir,
                     mf_err *err);
/* Add the adapter in dir (PEFT) to m: mf_model_add_lora with its config, then its weights. */
int mf_modelio_load_adapter(mf_model *m, mf_modelio_peft *peft, const char *dir, mf_err *err);
/* Write m's LoRA params as a PEFT directory (+ base.json when p->base_digest is set). */
int mf_modelio_save_adapter(mf_model *m, const char *dir, const mf_modelio_peft *p, const mf_modelio_write_opts *opts,
                             mf_err *err);

/* "q_proj" -> MF_MOD_Q ... ("W_pack" -> Q|K|V for Baichuan); 0 when unknown. */
unsigned mf_modelio_module_bit(const char *name, mf_arch arch);

#endif
