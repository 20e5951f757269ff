/*
 * stages/model_input.h — a stage's model input: the first path bound to a slot,
 * opened by modelio (a full HF directory, or an adapter directory + its base),
 * with the slot's other paths and the paths of a "base" slot as base candidates.
 * The rule for finding an adapter's base is in modelio/model_open.h.
 */
#ifndef MF_STAGES_MODEL_INPUT_H
#define MF_STAGES_MODEL_INPUT_H

#include "common/error.h"
#include "modelio/model_open.h"
#include "stages/stage.h"

/* keep_adapter as in mf_modelio_open. Errors are prefixed "stage 'S': input 'SLOT'". */
int mf_stage_open_model(mf_modelio_input *out, const mf_stage_ctx *ctx, const char *slot, int keep_adapter,
                        mf_err *err);

#endif
