/* stages/model_input.c — a stage's model input (see model_input.h). */
#include "stages/model_input.h"

#include <stdlib.h>
#include <string.h>

int mf_stage_open_model(mf_modelio_input *out, const mf_stage_ctx *ctx, const char *slot, int keep_adapter,
                        mf_err *err)
{
    const mf_stage_input *in = mf_stage_input_get(ctx, slot);
    if (!in || !in->n) {
        memset(out, 0, sizeof *out);
        return mf_err_set(err, MF_EINVAL, "stage '%s': no input bound to slot '%s'", ctx->stage, slot);
    }
    const mf_stage_input *bs = mf_stage_input_get(ctx, "base");
    size_t n_alt = (in->n - 1) + (bs ? bs->n : 0);
    const char **alt = calloc(n_alt + 1, sizeof *alt);
    if (!alt) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 1; i < in->n; i++) alt[k++] = in->paths[i];
    for (size_t i = 0; bs && i < bs->n; i++) alt[k++] = bs->paths[i];
    int rc = mf_modelio_open(out, in->paths[0], in->digests ? in->digests[0] : NULL, keep_adapter, alt, k, err);
    free(alt);
    if (rc) mf_err_wrap(err, "stage '%s': input '%s'", ctx->stage, slot);
    return rc;
}

