/*
 * stages/train/train_model.c — finetune modes and adapter chaining for the
 * training kinds (see train_model.h).
 */
#include "stages/train/train_model.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "stages/registry.h"
#include "stages/train/trainer.h"

char *mf_trainer_list(const mf_stage_ctx *ctx, const char *name)
{
    mf_buf b = MF_BUF_INIT;
    const mf_json *v = mf_stage_param(ctx, name);
    if (v && v->type == MF_JSON_ARRAY) {
        for (size_t i = 0; i < v->n; i++) {
            if (i) mf_buf_putc(&b, ',');
            mf_buf_puts(&b, mf_json_str(v->items[i], ""));
        }
    } else if (v && v->type == MF_JSON_STRING) {
        mf_buf_puts(&b, v->s);
    } else {
        const mf_param_spec *ps = ctx->kind ? mf_kind_param(ctx->kind, name) : NULL;
        for (const char *p = ps && ps->def ? ps->def : ""; *p; p++)
            if (*p != '[' && *p != ']' && *p != ' ' && *p != '"') mf_buf_putc(&b, *p);
    }
    mf_buf_putc(&b, '\0');
    if (!mf_buf_ok(&b)) {
        mf_buf_free(&b);
        return NULL;
    }
    return mf_buf_steal(&b);
}

static mf_ft_mode ft_of(const char *s)
{
    if (!strcmp(s, "lora")) return MF_FT_LORA;
    if (!strcmp(s, "freeze")) return MF_FT_FREEZE;
    if (!strcmp(s, "ptuning")) return MF_FT_PTUNING;
    return MF_FT_FULL;
}

int mf_train_model_open(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err)
{
    memset(tm, 0, sizeof *tm);
    tm->ft = ft_of(mf_trainer_str(ctx, "finetune"));
    const char *chain = mf_trainer_str(ctx, "adapter_chain");
    int keep = !strcmp(chain, "continue") && (tm->ft == MF_FT_LORA || tm->ft == MF_FT_PTUNING);
    return mf_stage_open_model(&tm->in, ctx, "model", keep, err);
}

/* full: every parameter trains, but a prefix inside the input model stays frozen. */
static int apply_full(mf_train_model *tm, mf_model *m, mf_err *err)
{
    mf_model_set_all_trainable(m, 1);
    for (size_t i = 0; tm->in.has_prefix && i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        int rc;
        if (p->kind == MF_PARAM_PREFIX && (rc = mf_model_set_trainable(m, p->name, 0, err))) return rc;
    }
    tm->out_kind = MF_ADAPTER_NONE;
    return 0;
}

/* freeze: the last freeze.trainable_layers layers (of freeze.modules) train. */
static int apply_freeze(mf_train_model *tm, const mf_stage_ctx *ctx, mf_model *m, mf_err *err)
{
    const mf_model_config *cfg = mf_model_get_config(m);
    mf_model_set_all_trainable(m, 0);
    tm->out_kind = MF_ADAPTER_NONE;
    mf_k_freeze_config fc = {(int)mf_trainer_int(ctx, "freeze.trainable_layers"), 0, 0};
    if (fc.trainable_layers > cfg->num_hidden_layers) fc.trainable_layers = cfg->num_hidden_layers;
    char *mods = mf_trainer_list(ctx, "freeze.modules");
    if (!mods) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = *mods ? mf_model_modules_parse(&fc.modules, cfg->arch, mods, err) : 0;
    free(mods);
    if (rc) return rc;
    return mf_model_freeze(m, &fc, err);
}

/* lora: new adapters on lora.target, or the input's kept adapters trained on (continue). */
static int apply_lora(mf_train_model *tm, const mf_stage_ctx *ctx, mf_model *m, mf_err *err)
{
    tm->out_kind = MF_ADAPTER_LORA;
    if (tm->in.kept == MF_ADAPTER_LORA) {
        tm->lora = tm->in.lora;
        return 0;
    }
    tm->lora.rank = (int)mf_trainer_int(ctx, "lora.rank");
    tm->lora.alpha = (float)mf_trainer_num(ctx, "lora.alpha");
    tm->lora.dropout = (float)mf_trainer_num(ctx, "lora.dropout");
    tm->lora.seed = ctx->seed;
    /* [] = PEFT's default for the architecture (q_proj, v_proj; query_key_value for BLOOM / ChatGLM2) */
    mf_arch arch = mf_model_get_config(m)->arch;
    tm->lora.target = mf_model_default_lora_target(arch);
    char *t = mf_trainer_list(ctx, "lora.target");
    if (!t) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = *t ? mf_model_modules_parse(&tm->lora.target, arch, t, err) : 0;
    tm->lora.target &= MF_MOD_ATTN | MF_MOD_MLP; /* "all" = every projection (norms take no LoRA) */
    free(t);
    if (rc) return rc;
    return mf_model_add_lora(m, &tm->lora, err);
}

/* ptuning: a new prefix encoder, or the input's kept prefix trained on (continue). */
static int apply_ptuning(mf_train_model *tm, const mf_stage_ctx *ctx, mf_model *m, mf_err *err)
{
    tm->out_kind = MF_ADAPTER_PREFIX;
    float dropout = (float)mf_trainer_num(ctx, "ptuning.dropout");
    if (tm->in.kept == MF_ADAPTER_PREFIX) {
        tm->prefix = tm->in.prefix;
        mf_model_set_all_trainable(m, 0);
        for (size_t i = 0; i < mf_model_num_params(m); i++) {
            mf_k_param *p = mf_model_param(m, i);
            int rc;
            if (p->kind == MF_PARAM_PREFIX && (rc = mf_model_set_trainable(m, p->name, 1, err))) return rc;
        }
        tm->prefix.dropout = dropout;
        return mf_model_set_prefix_dropout(m, dropout, err);
    }
    tm->prefix.pre_seq_len = (int)mf_trainer_int(ctx, "ptuning.pre_seq_len");
    tm->prefix.prefix_projection = mf_trainer_bool(ctx, "ptuning.prefix_projection");
    tm->prefix.prefix_hidden_size = (int)mf_trainer_int(ctx, "ptuning.prefix_hidden_size");
    tm->prefix.seed = ctx->seed;
    tm->prefix.dropout = dropout;
    const mf_model_config *c = mf_model_get_config(m);
    if ((c->arch == MF_ARCH_CHATGLM || c->arch == MF_ARCH_CHATGLM2) && tm->prefix.prefix_projection &&
        tm->prefix.prefix_hidden_size != c->hidden_size)
        mf_stage_warn(ctx, "ptuning.prefix_hidden_size %d: ChatGLM's own PrefixEncoder projects through hidden_size "
                      "(%d); set ptuning.prefix_hidden_size: %d to train exactly its P-Tuning v2",
                      tm->prefix.prefix_hidden_size, c->hidden_size, c->hidden_size);
    return mf_model_add_prefix(m, &tm->prefix, err);
}

int mf_train_model_apply_finetune(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err)
{
    mf_model *m = tm->in.model;
    int rc = 0;
    if (tm->in.has_prefix && tm->in.kept != MF_ADAPTER_PREFIX && tm->ft == MF_FT_PTUNING)
        return mf_err_set(err, MF_EUNSUPPORTED,
                          "stage '%s': the input model already carries a frozen P-Tuning prefix inside its weights; "
                          "a second prefix is not supported (use finetune: lora, freeze or full)",
                          ctx->stage);
    if (tm->ft != MF_FT_LORA && tm->in.kept == MF_ADAPTER_LORA) { /* cannot happen with keep rules; be safe */
        if ((rc = mf_model_merge_lora(m, err))) return rc;
        tm->in.kept = MF_ADAPTER_NONE;
    }
    switch (tm->ft) {
    case MF_FT_FULL: rc = apply_full(tm, m, err); break;
    case MF_FT_FREEZE: rc = apply_freeze(tm, ctx, m, err); break;
    case MF_FT_LORA: rc = apply_lora(tm, ctx, m, err); break;
    case MF_FT_PTUNING: rc = apply_ptuning(tm, ctx, m, err); break;
    }
    if (rc) mf_err_wrap(err, "stage '%s': finetune", ctx->stage);
    return rc;
}

int mf_train_model_save(mf_train_model *tm, const mf_stage_ctx *ctx, mf_err *err)
{
    mf_modelio_output_opts o = {NULL, 0, tm->in.tokenizer_dir, tm->no_head, tm->in.has_prefix ? &tm->in.prefix : NULL};
    int rc;
    if (tm->out_kind == MF_ADAPTER_NONE) {
        rc = mf_modelio_output_full(ctx->out_dir, tm->in.model, &o, err);
    } else {
        /* continue: the input adapter's base; merge/stack: the whole input model */
        int cont = tm->in.kept == tm->out_kind;
        const char *bp = cont ? tm->in.base_path : tm->in.path;
        const char *bd = cont ? tm->in.base_digest : tm->in.digest;
        rc = mf_modelio_output_adapter(ctx->out_dir, tm->in.model, tm->out_kind, &tm->lora, &tm->prefix, bp, bd, &o, err);
    }
    if (rc) mf_err_wrap(err, "stage '%s': writing the model", ctx->stage);
    return rc;
}

int mf_train_model_max_len(const mf_train_model *tm, const mf_stage_ctx *ctx)
{
    int pre = tm->in.has_prefix ? tm->in.prefix.pre_seq_len
              : tm->ft == MF_FT_PTUNING ? (int)mf_trainer_int(ctx, "ptuning.pre_seq_len") : 0;
    return mf_model_get_config(tm->in.model)->max_position_embeddings - pre;
}

void mf_train_model_free(mf_train_model *tm)
{
    mf_modelio_input_free(&tm->in);
    memset(tm, 0, sizeof *tm);
}
