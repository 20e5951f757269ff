/*
 * stages/kinds/kind_lm.c — the causal-LM training kinds and `init`:
 *   init  a randomly initialised model from the params (or a config input),
 *         vocabulary from the tokenizer input, tokenizer copied in;
 *   dcpt  next-token loss on packed blocks (every token counts);
 *   sft   next-token loss on response tokens only (chat template masks).
 * Both train through stages/train/trainer.c; metrics: loss, and ppl on validation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/dataio.h"
#include "modelio/modelio.h"
#include "stages/train/train_model.h"
#include "stages/train/train_data.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"

/* ---------------------------------------------------------------- init */

/* The config input (an HF config.json, or its directory), else the architecture params. */
static int init_config(mf_stage_ctx *ctx, mf_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    const char *cpath = mf_stage_input_path(ctx, "config");
    if (cpath) {
        char *dir = mf_is_dir(cpath) ? strdup(cpath) : mf_path_dirname(cpath);
        mf_modelio_meta meta;
        memset(&meta, 0, sizeof meta);
        int rc = dir ? mf_modelio_read_config(cfg, &meta, dir, ctx->err) : mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
        mf_modelio_meta_free(&meta);
        free(dir);
        return rc;
    }
    const char *a = mf_trainer_str(ctx, "architecture");
    cfg->arch = MF_ARCH_LLAMA;
    for (int k = MF_ARCH_LLAMA; k <= MF_ARCH_CHATGLM; k++)
        if (!strcmp(a, mf_model_arch_name((mf_arch)k))) cfg->arch = (mf_arch)k;
    /* Qwen2, GLM, ChatGLM2/3: q/k/v biases (what their checkpoints have) */
    cfg->attention_bias = cfg->arch == MF_ARCH_QWEN2 || cfg->arch == MF_ARCH_GLM || cfg->arch == MF_ARCH_CHATGLM2;
    cfg->hidden_size = (int)mf_trainer_int(ctx, "hidden_size");
    cfg->intermediate_size = (int)mf_trainer_int(ctx, "intermediate_size");
    cfg->num_hidden_layers = (int)mf_trainer_int(ctx, "num_hidden_layers");
    cfg->num_attention_heads = (int)mf_trainer_int(ctx, "num_attention_heads");
    cfg->num_key_value_heads = (int)mf_trainer_int(ctx, "num_key_value_heads");
    cfg->vocab_size = (int)mf_trainer_int(ctx, "vocab_size");
    cfg->max_position_embeddings = (int)mf_trainer_int(ctx, "max_position_embeddings");
    cfg->rope_theta = mf_trainer_num(ctx, "rope_theta");
    cfg->rms_norm_eps = mf_trainer_num(ctx, "rms_norm_eps");
    cfg->tie_word_embeddings = mf_trainer_bool(ctx, "tie_word_embeddings");
    cfg->pad_token_id = cfg->bos_token_id = cfg->eos_token_id = cfg->mask_token_id = cfg->gmask_token_id = -1;
    if (cfg->arch == MF_ARCH_BLOOM) cfg->intermediate_size = 4 * cfg->hidden_size; /* BLOOM: a 4h MLP */
    if (cfg->arch == MF_ARCH_BLOOM || cfg->arch == MF_ARCH_CHATGLM) {
        /* BLOOM, ChatGLM-6B: one kv head per head, the LM head tied (as their releases) */
        cfg->num_key_value_heads = cfg->num_attention_heads;
        cfg->tie_word_embeddings = 1;
    }
    return 0;
}

/* The tokenizer input (a tokenizer.json file or a directory holding one): the vocabulary size (at
 * least) and the special ids. */
static int init_vocab(mf_stage_ctx *ctx, const char *tpath, mf_model_config *cfg)
{
    mf_tok *tok = NULL;
    int rc = mf_tok_load(&tok, tpath, ctx->err);
    if (rc) return rc;
    int tv = (int)mf_tok_vocab_size(tok);
    if (cfg->vocab_size <= 0 || cfg->vocab_size < tv) cfg->vocab_size = tv;
    cfg->bos_token_id = mf_tok_bos_id(tok);
    cfg->eos_token_id = mf_tok_eos_id(tok);
    cfg->pad_token_id = mf_tok_pad_id(tok);
    if (cfg->arch == MF_ARCH_CHATGLM) { /* the prefix LM's tokens: <sop> is the BOS, [gMASK] / [MASK] */
        cfg->gmask_token_id = mf_tok_token_to_id(tok, "[gMASK]");
        cfg->mask_token_id = mf_tok_token_to_id(tok, "[MASK]");
        if (cfg->bos_token_id < 0 || cfg->gmask_token_id < 0) {
            mf_tok_free(tok);
            return mf_err_set(ctx->err, MF_EINVAL,
                              "stage '%s': a chatglm model needs a tokenizer with a BOS (<sop>) and a [gMASK] token "
                              "(ChatGLM-6B's ice_text.model has both; found ids %d and %d)",
                              ctx->stage, cfg->bos_token_id, cfg->gmask_token_id);
        }
    }
    mf_tok_free(tok);
    return 0;
}

static int copy_tokenizer_input(mf_stage_ctx *ctx, const char *tpath)
{
    if (mf_is_dir(tpath)) return mf_modelio_copy_tokenizer(ctx->out_dir, tpath, ctx->err);
    /* a bare tokenizer.json file: copied under its canonical name */
    char *to = mf_path_join(ctx->out_dir, "tokenizer.json");
    int rc = to ? mf_copy_file(tpath, to, ctx->err) : mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
    free(to);
    return rc;
}

int mf_stage_init_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    mf_model_config cfg;
    mf_model *m = NULL;
    const char *tpath = mf_stage_input_path(ctx, "tokenizer");
    int rc;
    if ((rc = init_config(ctx, &cfg))) return rc;
    if (tpath && (rc = init_vocab(ctx, tpath, &cfg))) return rc;
    if (cfg.vocab_size <= 0)
        return mf_err_set(err, MF_EINVAL, "stage '%s': vocab_size is 0 and no tokenizer input gives one", ctx->stage);
    if ((rc = mf_model_new(&m, &cfg, err))) goto out;
    if ((rc = mf_model_init_random(m, ctx->seed, (float)mf_trainer_num(ctx, "initializer_range"), err))) goto out;
    mf_modelio_output_opts o = {NULL, 0, NULL, 0, NULL};
    if ((rc = mf_modelio_output_full(ctx->out_dir, m, &o, err))) goto out;
    if (tpath && (rc = copy_tokenizer_input(ctx, tpath))) goto out;
    char msg[160];
    snprintf(msg, sizeof msg, "initialised %zu parameters (vocab %d, hidden %d, layers %d)", mf_model_count(m, 0),
             cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers);
    mf_stage_progress(ctx, 1, 1, NAN, NAN, 0, msg);
out:
    mf_model_free(m);
    return rc;
}

/* ---------------------------------------------------------------- LM task */

typedef struct lm_task {
    mf_train_data_set train, val;
    mf_train_data_batch tb;
    const mf_train_data_seq **seqs; /* batch_size slots */
    int32_t pad;
    int batch_size;
} lm_task;

static int lm_step(void *ud, mf_model *m, const size_t *idx, int n, float scale, mf_trainer_metrics *out, mf_err *err)
{
    lm_task *t = ud;
    const mf_train_data_seq **seqs = t->seqs;
    for (int i = 0; i < n; i++) seqs[i] = &t->train.v[idx[i]];
    int rc = mf_train_data_batch_make(&t->tb, seqs, n, t->pad, err);
    if (rc) return rc;
    double loss = 0;
    rc = mf_model_lm_step(m, &t->tb.b, scale, &loss, err);
    out->loss = loss;
    out->v[0] = NAN; /* ppl is a validation metric: absent (not 0) on training lines */
    for (int i = 0; i < n; i++) out->tokens += seqs[i]->len;
    return rc;
}

/* Token-weighted mean loss over a set, and its perplexity. */
int mf_lm_eval_set(mf_model *m, const mf_train_data_set *set, int bs, int32_t pad, double *loss, double *tokens, mf_err *err)
{
    mf_train_data_batch tb;
    memset(&tb, 0, sizeof tb);
    double sum = 0, cnt = 0;
    int rc = 0;
    const mf_train_data_seq **seqs = malloc((size_t)bs * sizeof *seqs);
    if (!seqs) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < set->n; i += (size_t)bs) {
        int n = 0;
        for (size_t k = i; k < set->n && n < bs; k++) seqs[n++] = &set->v[k];
        mf_k_outputs o;
        if ((rc = mf_train_data_batch_make(&tb, seqs, n, pad, err))) goto out;
        if ((rc = mf_model_forward(m, &tb.b, MF_FWD_LOGITS, &o, err))) goto out;
        sum += o.loss * o.n_valid;
        cnt += o.n_valid;
    }
out:
    free(seqs);
    mf_train_data_batch_free(&tb);
    *loss = cnt > 0 ? sum / cnt : NAN;
    if (tokens) *tokens = cnt;
    return rc;
}

static int lm_eval(void *ud, mf_model *m, mf_trainer_metrics *out, mf_err *err)
{
    lm_task *t = ud;
    int rc = mf_lm_eval_set(m, &t->val, t->batch_size, t->pad, &out->loss, &out->tokens, err);
    out->v[0] = exp(out->loss);
    return rc;
}

static int run_lm(mf_stage_ctx *ctx, mf_train_data_mode mode)
{
    mf_err *err = ctx->err;
    mf_trainer_config tc;
    mf_train_model tm;
    lm_task t;
    memset(&t, 0, sizeof t);
    int rc;
    if ((rc = mf_trainer_config_from_ctx(&tc, ctx, err))) return rc;
    if ((rc = mf_train_model_open(&tm, ctx, err))) goto out;
    mf_train_data_opts o;
    mf_train_data_opts_from_ctx(&o, ctx, mode);
    if ((rc = mf_train_data_load(&t.train, &t.val, ctx, tm.in.tok, &o, err))) goto out;
    int ml = mf_train_model_max_len(&tm, ctx);
    size_t cut = mf_train_data_clip(&t.train, ml, 0) + mf_train_data_clip(&t.val, ml, 0);
    if (cut) {
        char msg[160];
        snprintf(msg, sizeof msg, "%zu sequences cut to the model's %d positions", cut, ml);
        mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, msg);
    }
    if ((rc = mf_train_model_apply_finetune(&tm, ctx, err))) goto out;
    t.pad = mf_tok_pad_id(tm.in.tok);
    if (t.pad < 0) t.pad = mf_tok_eos_id(tm.in.tok);
    t.batch_size = tc.batch_size;
    if (!(t.seqs = malloc((size_t)tc.batch_size * sizeof *t.seqs))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "%zu training / %zu validation examples (%lld dropped), %zu trainable parameters",
             t.train.n, t.val.n, t.train.dropped + t.val.dropped, mf_model_count(tm.in.model, 1));
    mf_stage_progress(ctx, 0, mf_trainer_total_steps(&tc, t.train.n), NAN, NAN, NAN, msg);
    mf_trainer_task task = {&t, t.train.n, lm_step, t.val.n ? lm_eval : NULL, {"ppl", NULL}};
    if ((rc = mf_trainer_run(ctx, &tc, tm.in.model, &task, NULL, err))) goto out;
    if (ctx->rank == 0) rc = mf_train_model_save(&tm, ctx, err); /* data parallel: the ranks hold the same model */
out:
    mf_train_data_batch_free(&t.tb);
    free(t.seqs);
    mf_train_data_set_free(&t.train);
    mf_train_data_set_free(&t.val);
    mf_train_model_free(&tm);
    return rc;
}

int mf_stage_dcpt_run(mf_stage_ctx *ctx) { return run_lm(ctx, MF_TRAIN_DATA_TEXT); }
int mf_stage_sft_run(mf_stage_ctx *ctx) { return run_lm(ctx, MF_TRAIN_DATA_SFT); }
