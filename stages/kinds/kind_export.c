/*
 * stages/kinds/kind_export.c — `merge` and `export`.
 *   merge   a model input (base + LoRA adapters, chained) -> one HF directory
 *           with every adapter folded into the weights (W += scale·B·A).
 *   export  format hf: the same as merge, with dtype and sharding
 *           (max_shard_mb); format peft: the input's own adapter re-written
 *           as a PEFT directory (adapter_config.json, adapter_model.safetensors,
 *           base.json with the base's digest and path), in dtype.
 * A P-Tuning prefix cannot be folded into weights: merge / export hf of such
 * an input is refused (export peft writes it as a PREFIX_TUNING adapter).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stages/model_input.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"

static int write_full(mf_stage_ctx *ctx, const char *dtype, unsigned long long shard)
{
    mf_modelio_input mi;
    int rc = mf_stage_open_model(&mi, ctx, "model", 0, ctx->err);
    if (rc) return rc;
    if (mi.has_prefix) {
        rc = mf_err_set(ctx->err, MF_EUNSUPPORTED,
                        "stage '%s': the input carries a P-Tuning prefix, which cannot be merged into the weights "
                        "(export it with format: peft)",
                        ctx->stage);
        goto out;
    }
    mf_modelio_output_opts o = {dtype, shard, mi.tokenizer_dir, 0, NULL};
    if ((rc = mf_modelio_output_full(ctx->out_dir, mi.model, &o, ctx->err))) goto out;
    mf_stage_progress(ctx, 1, 1, NAN, NAN, 0, mi.is_adapter ? "adapter merged into its base" : "model written");
out:
    mf_modelio_input_free(&mi);
    return rc;
}

int mf_stage_merge_run(mf_stage_ctx *ctx) { return write_full(ctx, mf_trainer_str(ctx, "dtype"), 0); }

int mf_stage_export_run(mf_stage_ctx *ctx)
{
    const char *fmt = mf_trainer_str(ctx, "format"), *dtype = mf_trainer_str(ctx, "dtype");
    unsigned long long shard = (unsigned long long)mf_trainer_int(ctx, "max_shard_mb") * 1024ull * 1024ull;
    if (strcmp(fmt, "peft")) return write_full(ctx, dtype, shard);
    mf_modelio_input mi;
    int rc = mf_stage_open_model(&mi, ctx, "model", 1, ctx->err);
    if (rc) return rc;
    if (mi.kept == MF_ADAPTER_NONE) {
        rc = mf_err_set(ctx->err, MF_EINVAL, "stage '%s': format peft needs an adapter as input; '%s' is a full model",
                        ctx->stage, mi.path);
        goto out;
    }
    mf_modelio_output_opts o = {dtype, 0, mi.tokenizer_dir, 0, NULL};
    if ((rc = mf_modelio_output_adapter(ctx->out_dir, mi.model, mi.kept, &mi.lora, &mi.prefix, mi.base_path,
                                        mi.base_digest, &o, ctx->err)))
        goto out;
    mf_stage_progress(ctx, 1, 1, NAN, NAN, 0, "adapter written");
out:
    mf_modelio_input_free(&mi);
    return rc;
}
