/*
 * modelio/model_open.h — "a model input" for every stage: open a full HF
 * model directory or a PEFT adapter directory (base + adapter), and write
 * trained models back as HF directories or adapter directories.
 *
 * The rule (also in modelio/README.md, "Model inputs — the rule"):
 *   - a directory with config.json is a full model (model.safetensors or
 *     shards; an optional score.weight tensor is a reward / value head);
 *   - a directory with adapter_config.json is an adapter. Its base is found
 *     by, in order: base.json "base_path" (absolute, or relative to the
 *     adapter directory, else to the working directory) when that directory
 *     holds a model; the store tree <adapter>/../<hex of base.json
 *     "base_digest">; then the other paths bound to the same slot, then the
 *     paths of a slot named "base"; the
 *     first full model or adapter directory found is the base. A base may
 *     itself be an adapter directory (chains; depth <= 8), opened whole
 *     (its adapter merged).
 *   - adapters: LoRA in PEFT's layout (adapter_config.json +
 *     adapter_model.safetensors with "base_model.model." names), or medflow's
 *     P-Tuning v2 prefix (peft_type "PREFIX_TUNING", tensors
 *     "base_model.model.prefix_encoder.*"). A score head trained with an
 *     adapter is stored beside it as "base_model.model.score.weight".
 *   - the tokenizer is tokenizer.json of the input directory, else of its base.
 */
#ifndef MF_MODELIO_MODEL_OPEN_H
#define MF_MODELIO_MODEL_OPEN_H

#include "common/error.h"
#include "kernels/model.h"
#include "tokenizer/tokenizer.h"

typedef enum { MF_ADAPTER_NONE = 0, MF_ADAPTER_LORA = 1, MF_ADAPTER_PREFIX = 2 } mf_adapter_kind;

typedef struct mf_modelio_input {
    mf_model *model;
    mf_tok *tok;              /* NULL when no tokenizer.json was found */
    char *path;               /* the directory opened */
    char *tokenizer_dir;      /* directory holding tokenizer.json, or NULL */
    char digest[96];          /* this input's digest ("" when unknown) */
    int is_adapter;           /* the input was an adapter directory */
    mf_adapter_kind kept;     /* adapter left unmerged (trainable) in model: NONE when merged */
    mf_k_lora_config lora;    /* the kept LoRA's config */
    mf_k_prefix_config prefix;/* the kept/frozen prefix's config */
    int has_prefix;           /* model carries prefix params (prefixes cannot be merged) */
    /* What an adapter trained on top of this model must record as its base:
     * continue -> the input adapter's own base; otherwise this input itself. */
    char *base_path;          /* directory of the full model at the bottom when kept, else path */
    char base_digest[96];
} mf_modelio_input;

/* keep_adapter: 1 = an input LoRA / prefix stays as separate trainable params
 * (adapter_chain: continue); 0 = LoRA merged into the weights (merge, stack).
 * digest may be NULL; alt/n_alt: candidate base directories (siblings). */
int mf_modelio_open(mf_modelio_input *out, const char *path, const char *digest, int keep_adapter,
                      const char *const *alt, size_t n_alt, mf_err *err);
void mf_modelio_input_free(mf_modelio_input *mi);
/* The base directory an adapter directory names (the rule above: base.json
 * "base_path", else the store tree of "base_digest" beside it), or NULL when
 * neither is reachable. malloc'd. */
char *mf_modelio_adapter_base(const char *dir);
/* The ids that end generation for the model in dir: eos_token_id of its config.json and
 * generation_config.json (one id, or a list: LLaMA-3, GLM-4 stop at any of them), read from the
 * full model at the bottom of an adapter's chain too. Appends those not in out[0..*n) yet, up to
 * cap; returns the new *n. */
int mf_modelio_stop_ids(const char *dir, int32_t *out, int n, int cap);

/* Writing. dtype: "float32" | "bfloat16" | "float16" (NULL = float32);
 * max_shard_bytes 0 = one file. */
typedef struct mf_modelio_output_opts {
    const char *dtype;
    unsigned long long max_shard_bytes;
    const char *tokenizer_dir; /* tokenizer.json (+ tokenizer_config.json) copied from here; may be NULL */
    int no_head;               /* leave a score head out (PPO's value head) */
    const mf_k_prefix_config *prefix; /* the model's frozen P-Tuning prefix, kept in a full save */
} mf_modelio_output_opts;

/* HF directory: config.json, model.safetensors (base params + score head), tokenizer.
 * A model carrying a P-Tuning prefix (o->prefix) also stores the prefix tensors
 * (prefix_encoder.*) and prefix.json {pre_seq_len, prefix_projection,
 * prefix_hidden_size}; medflow reopens it whole, transformers ignores the prefix. */
int mf_modelio_output_full(const char *dir, mf_model *m, const mf_modelio_output_opts *o, mf_err *err);
/* Adapter directory: adapter_config.json, adapter_model.safetensors (LoRA or
 * prefix params, plus a score head when present), base.json {"base_digest",
 * "base_path"}, tokenizer. */
int mf_modelio_output_adapter(const char *dir, mf_model *m, mf_adapter_kind kind, const mf_k_lora_config *lora,
                          const mf_k_prefix_config *prefix, const char *base_path, const char *base_digest,
                          const mf_modelio_output_opts *o, mf_err *err);

#endif
