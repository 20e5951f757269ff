/*
 * stages/train/train_model.h — what the training kinds share beyond the trainer:
 * opening the input model under `finetune` + `adapter_chain`, and writing the
 * result (full HF directory or adapter directory).
 *
 * finetune: full (every base weight trains; an input LoRA is merged first),
 * freeze (last freeze.trainable_layers layers, freeze.modules), lora (a new
 * LoRA, or the input's with adapter_chain: continue), ptuning (a new P-Tuning
 * v2 prefix, or the input's with continue). adapter_chain: merge (default) and
 * stack both fold an input LoRA into the weights and train a new adapter whose
 * base is the whole input model (stack is merge's math: the old adapter
 * frozen beside the new one); continue keeps training the input adapter and
 * records the input adapter's own base.
 */
#ifndef MF_TRAIN_COMMON_H
#define MF_TRAIN_COMMON_H

#include "stages/model_input.h"
#include "stages/stage.h"

typedef enum { MF_FT_FULL = 0, MF_FT_LORA, MF_FT_FREEZE, MF_FT_PTUNING } mf_ft_mode;

typedef struct mf_train_model {
    mf_modelio_input in;
    mf_ft_mode ft;
    mf_adapter_kind out_kind; /* NONE: the output is a full model */
    mf_k_lora_config lora;
    mf_k_prefix_config prefix;
    int no_head; /* save without the score head (PPO's value head) */
} mf_train_model;

/* Open ctx's `model` input, keeping an input adapter when the chain is continue. */
int mf_train_model_open(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err);
/* Make the finetune mode's params trainable (adds LoRA / prefix / freezes). */
int mf_train_model_apply_finetune(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err);
/* Write the trained model into ctx->out_dir. */
int mf_train_model_save(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err);
void mf_train_model_free(mf_train_model *tm);
/* Longest sequence the model takes: max_position_embeddings minus the prefix
 * (the input's, or the one finetune: ptuning will add). */
int mf_train_model_max_len(const mf_train_model *tm, const mf_stage_ctx *ctx);

/* Comma list of a list param ("[q_proj, v_proj]" default when absent); malloc'd. */
char *mf_trainer_list(const mf_stage_ctx *ctx, const char *name);

#endif
