/*
 * stages/train/train_data.h — training examples of the training kinds, tokenized in
 * memory from a stage's `data` (and optional `val`) inputs.
 *
 *   text   (dcpt)  documents (JSON `field`; a record without it that is a
 *                  conversation or QA pair: its turns joined by newlines) + EOS,
 *                  concatenated and cut into blocks of block_size tokens; the
 *                  last partial block is kept when it has >= 2 tokens.
 *                  Labels = ids (every token counts).
 *   sft            conversations through the chat template (stages/data/template.h):
 *                  labels = ids on response tokens, -100 elsewhere (multi-turn:
 *                  every kept assistant turn counts). Examples with no response
 *                  token left after truncation are dropped (counted).
 *   pref (rm, dpo) two sequences per record: prompt + chosen and prompt +
 *                  rejected (seq 2i and 2i+1); labels on the answer only.
 *   prompt (ppo)   the prompt up to the assistant cue (labels unused).
 * Validation: the `val` slot when bound, else records whose content hash
 * (stages/kinds/kind_split.c's unit) falls below val_ratio.
 */
#ifndef MF_TRAIN_DATA_H
#define MF_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "kernels/model.h"
#include "stages/stage.h"
#include "tokenizer/tokenizer.h"

typedef enum { MF_TRAIN_DATA_TEXT = 0, MF_TRAIN_DATA_SFT, MF_TRAIN_DATA_PREF, MF_TRAIN_DATA_PROMPT } mf_train_data_mode;

typedef struct mf_train_data_seq {
    int32_t *ids;
    int32_t *labels; /* -100 = no loss */
    int len;
    int prompt_len;  /* tokens before the (final) answer */
    int lost_eos;    /* the answer was cut (length limits, model positions) and lost its closing EOS */
} mf_train_data_seq;

typedef struct mf_train_data_set {
    mf_train_data_seq *v;
    size_t n, cap;
    long long dropped; /* records that produced no example */
    int32_t eos;       /* the tokenizer's EOS (-1: none) */
} mf_train_data_set;

void mf_train_data_set_free(mf_train_data_set *s);
/* Cut sequences longer than max_len (the model's positions): on the right, or
 * keeping the last tokens when from_left (prompts keep their assistant cue).
 * A right cut that drops a final EOS sets lost_eos. Returns how many were cut. */
size_t mf_train_data_clip(mf_train_data_set *s, int max_len, int from_left);

typedef struct mf_train_data_opts {
    mf_train_data_mode mode;
    int block_size;          /* text */
    const char *field;       /* text: JSON field */
    const char *template_name, *system;
    long long max_source, max_target, cutoff;
    double val_ratio;
} mf_train_data_opts;

/* Options from the stage's params (block_size, field, template, system, lengths, val_ratio). */
void mf_train_data_opts_from_ctx(mf_train_data_opts *o, const mf_stage_ctx *ctx, mf_train_data_mode mode);

int mf_train_data_load(mf_train_data_set *train, mf_train_data_set *val, const mf_stage_ctx *ctx, mf_tok *tok, const mf_train_data_opts *o,
               mf_err *err);

/* A padded batch (right padding with pad, attention 0, labels -100). Buffers
 * grow as needed; free with mf_train_data_batch_free. */
typedef struct mf_train_data_batch {
    mf_k_batch b;
    int32_t *ids, *mask, *labels;
    size_t cap;
} mf_train_data_batch;

int mf_train_data_batch_make(mf_train_data_batch *tb, const mf_train_data_seq *const *seqs, int n, int32_t pad, mf_err *err);
void mf_train_data_batch_free(mf_train_data_batch *tb);

#endif
