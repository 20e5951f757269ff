/*
 * modelio/model_load.c — whole HF model / PEFT adapter directories into
 * and out of an mf_model (kernels/model.h). Thin: config and tensor work is in
 * modelio/hf_config.c, modelio/params.c and modelio/peft.c.
 */
#include "modelio/modelio.h"

#include <stdlib.h>
#include <string.h>

/* Pointers to the params of one kind. score: with a score head, the base
 * params minus lm_head plus score.weight (HF *ForSequenceClassification). */
static int params_of(mf_model *m, mf_k_param_kind kind, mf_k_param ***out, size_t *n, mf_err *err)
{
    size_t np = mf_model_num_params(m), k = 0;
    mf_k_param **ps = calloc(np ? np : 1, sizeof *ps);
    if (!ps) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int score = kind == MF_PARAM_BASE && mf_model_find_param(m, "score.weight") != NULL;
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (score && !strcmp(p->name, "lm_head.weight")) continue;
        if (p->kind == kind || (score && p->kind == MF_PARAM_HEAD)) ps[k++] = p;
    }
    *out = ps;
    *n = k;
    return 0;
}

int mf_modelio_load(mf_model **out, mf_modelio_meta *meta, const char *dir, mf_err *err)
{
    *out = NULL;
    mf_model_config cfg;
    mf_modelio_meta tmp;
    memset(&tmp, 0, sizeof tmp);
    mf_modelio_meta *mt = meta ? meta : &tmp;
    int rc = mf_modelio_read_config(&cfg, mt, dir, err);
    if (rc) return rc;
    mf_model *m = NULL;
    mf_safetensors_set *s = NULL;
    mf_k_param **ps = NULL;
    size_t n = 0;
    if ((rc = mf_model_new(&m, &cfg, err)) != 0) goto out;
    if (mt->score_head && (rc = mf_model_add_score_head(m, 0, err)) != 0) goto out;
    if ((rc = params_of(m, MF_PARAM_BASE, &ps, &n, err)) != 0) goto out;
    if ((rc = mf_safetensors_set_open(&s, dir, "model", err)) != 0) goto out;
    if ((rc = mf_modelio_read_params(ps, n, s, cfg.arch, "", err)) != 0) goto out;
    if ((rc = mf_model_sync(m, err)) != 0) goto out;
    *out = m;
    m = NULL;
out:
    if (rc) mf_err_wrap(err, "loading model %s", dir);
    mf_safetensors_set_close(s);
    free(ps);
    if (rc || !meta) mf_modelio_meta_free(mt);
    mf_model_free(m);
    return rc;
}

int mf_modelio_save(mf_model *m, const char *dir, const mf_modelio_write_opts *opts, const char *tokenizer_dir,
                     mf_err *err)
{
    mf_k_param **ps = NULL;
    size_t n = 0;
    mf_modelio_write_opts o = {MF_SAFETENSORS_F32, 5000000000ull, 0};
    if (opts) o = *opts;
    o.score_head = mf_model_find_param(m, "score.weight") != NULL;
    int rc;
    if ((rc = mf_model_fetch(m, err)) != 0) goto out;
    if ((rc = params_of(m, MF_PARAM_BASE, &ps, &n, err)) != 0) goto out;
    rc = mf_modelio_write_dir(dir, mf_model_get_config(m), ps, n, &o, tokenizer_dir, err);
out:
    free(ps);
    return rc;
}

int mf_modelio_load_adapter(mf_model *m, mf_modelio_peft *peft, const char *dir, mf_err *err)
{
    mf_modelio_peft tmp;
    memset(&tmp, 0, sizeof tmp);
    mf_modelio_peft *p = peft ? peft : &tmp;
    const mf_model_config *cfg = mf_model_get_config(m);
    int rc = mf_modelio_peft_read(p, dir, cfg->arch, err);
    if (rc) return rc;
    mf_safetensors_set *s = NULL;
    mf_k_param **ps = NULL;
    size_t n = 0;
    if ((rc = mf_model_add_lora(m, &p->lora, err)) != 0) goto out;
    if ((rc = params_of(m, MF_PARAM_LORA, &ps, &n, err)) != 0) goto out;
    if ((rc = mf_safetensors_set_open(&s, dir, "adapter_model", err)) != 0) goto out;
    if ((rc = mf_modelio_read_params(ps, n, s, cfg->arch, "base_model.model.", err)) != 0) goto out;
    rc = mf_model_sync(m, err);
out:
    if (rc) mf_err_wrap(err, "loading adapter %s", dir);
    mf_safetensors_set_close(s);
    free(ps);
    return rc;
}

int mf_modelio_save_adapter(mf_model *m, const char *dir, const mf_modelio_peft *p, const mf_modelio_write_opts *opts,
                             mf_err *err)
{
    mf_k_param **ps = NULL;
    size_t n = 0;
    int rc;
    if ((rc = mf_model_fetch(m, err)) != 0) goto out;
    if ((rc = params_of(m, MF_PARAM_LORA, &ps, &n, err)) != 0) goto out;
    if (!n) {
        rc = mf_err_set(err, MF_EINVAL, "model has no LoRA adapter to save");
        goto out;
    }
    if ((rc = mf_modelio_peft_write_config(dir, p, mf_model_get_config(m)->arch, err)) != 0) goto out;
    rc = mf_modelio_write_params(dir, "adapter_model", ps, n, mf_model_get_config(m)->arch, "base_model.model.", opts,
                                 err);
out:
    free(ps);
    return rc;
}
