/*
 * stages/kinds/kind_pref.c — preference-pair kinds:
 *   rm   reward model: score head on the last non-pad token (HF sequence
 *        classification), loss -log σ(r_chosen - r_rejected) (TRL RewardTrainer);
 *        metrics accuracy (r_c > r_r), mean rewards.
 *   dpo  sigmoid DPO (TRL DPOTrainer, loss_type "sigmoid"):
 *        L = -(1-ls) log σ(β[(π_c - ref_c) - (π_r - ref_r)]) - ls log σ(-β[...])
 *        with π, ref the summed log-probs of the answer tokens. The reference is
 *        the whole input model (base + its adapters) before the new adapter is
 *        added; its log-probs are computed once and cached in work_dir.
 *        Metrics as TRL: rewards_chosen = β(π_c - ref_c), rewards_rejected,
 *        rewards_margins, rewards_accuracy.
 * Sequences 2i / 2i+1 of the data set are pair i's chosen / rejected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/train/train_model.h"
#include "stages/train/train_data.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"

static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

double mf_dpo_loss(double beta, double ls, double pc, double pr, double rc, double rr, double *dpc, double *dpr)
{
    double d = beta * ((pc - rc) - (pr - rr));
    double L = -(1 - ls) * log_sigmoid(d) - ls * log_sigmoid(-d);
    double dd = -(1 - ls) * sigmoid(-d) + ls * sigmoid(d); /* dL/dd */
    if (dpc) *dpc = beta * dd;
    if (dpr) *dpr = -beta * dd;
    return L;
}

double mf_rm_loss(double rc, double rr, double *dc, double *dr)
{
    double d = rc - rr;
    if (dc) *dc = -sigmoid(-d);
    if (dr) *dr = sigmoid(-d);
    return -log_sigmoid(d);
}

typedef struct pref_task {
    mf_train_data_set train, val;
    mf_train_data_batch tb;
    const mf_train_data_seq **seqs; /* 2 * batch_size */
    float *grad;            /* dlogp / dvalues [2B*T] */
    size_t grad_cap;
    double *ref_train, *ref_val; /* dpo: reference summed log-probs per sequence */
    double beta, ls;
    int32_t pad;
    int batch_size;
} pref_task;

/* Batch of pairs idx (from set): rows 0..n-1 chosen, n..2n-1 rejected. */
static int pair_batch(pref_task *t, const mf_train_data_set *set, const size_t *idx, size_t first, int n, mf_err *err)
{
    for (int i = 0; i < n; i++) {
        size_t p = idx ? idx[i] : first + (size_t)i;
        t->seqs[i] = &set->v[2 * p];
        t->seqs[n + i] = &set->v[2 * p + 1];
    }
    int rc = mf_train_data_batch_make(&t->tb, t->seqs, 2 * n, t->pad, err);
    size_t need = (size_t)t->tb.b.B * (size_t)t->tb.b.T;
    if (!rc && need > t->grad_cap) {
        float *g = realloc(t->grad, need * sizeof *g);
        if (!g) return mf_err_set(err, MF_ENOMEM, "out of memory");
        t->grad = g;
        t->grad_cap = need;
    }
    if (!rc) memset(t->grad, 0, need * sizeof *t->grad);
    return rc;
}

static double seq_logp(const mf_k_outputs *o, int b)
{
    double s = 0;
    for (int k = 0; k < o->T; k++) s += (double)o->logp[(size_t)b * o->T + k] * o->valid[(size_t)b * o->T + k];
    return s;
}

/* ---------------------------------------------------------------- rm */

static int rm_pairs(pref_task *t, mf_model *m, const mf_train_data_set *set, const size_t *idx, size_t first, int n,
                    float scale, int train, mf_trainer_metrics *out, mf_err *err)
{
    int rc = pair_batch(t, set, idx, first, n, err);
    mf_k_outputs o;
    if (!rc) rc = mf_model_forward(m, &t->tb.b, MF_FWD_VALUES | (train ? MF_FWD_TRAIN : 0), &o, err);
    if (rc) return rc;
    int T = t->tb.b.T;
    for (int i = 0; i < n; i++) {
        double rc_ = o.reward[i], rr = o.reward[n + i], dc, dr;
        out->loss += mf_rm_loss(rc_, rr, &dc, &dr) / n;
        out->v[0] += (rc_ > rr) / (double)n;
        out->v[1] += rc_ / n;
        out->v[2] += rr / n;
        /* the reward is the value at the last real token (right padding) */
        t->grad[(size_t)i * T + (size_t)(t->seqs[i]->len - 1)] = (float)(dc * scale / n);
        t->grad[(size_t)(n + i) * T + (size_t)(t->seqs[n + i]->len - 1)] = (float)(dr * scale / n);
        out->tokens += t->seqs[i]->len + t->seqs[n + i]->len;
    }
    return train ? mf_model_backward(m, NULL, t->grad, err) : 0;
}

static int rm_step(void *ud, mf_model *m, const size_t *idx, int n, float scale, mf_trainer_metrics *out, mf_err *err)
{
    pref_task *t = ud;
    return rm_pairs(t, m, &t->train, idx, 0, n, scale, 1, out, err);
}

/* Mean over the validation pairs, batch by batch (weights = pairs per batch). */
static int eval_pairs(pref_task *t, mf_model *m, mf_trainer_metrics *out, mf_err *err,
                      int (*fn)(pref_task *, mf_model *, const mf_train_data_set *, const size_t *, size_t, int, float, int,
                                mf_trainer_metrics *, mf_err *))
{
    size_t np = t->val.n / 2;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < np; i += (size_t)t->batch_size) {
        int n = (int)(np - i < (size_t)t->batch_size ? np - i : (size_t)t->batch_size);
        mf_trainer_metrics mt;
        memset(&mt, 0, sizeof mt);
        int rc = fn(t, m, &t->val, NULL, i, n, 0, 0, &mt, err);
        if (rc) return rc;
        double w = (double)n / (double)np;
        out->loss += mt.loss * w;
        out->tokens += mt.tokens;
        for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) out->v[k] += mt.v[k] * w;
    }
    return 0;
}

static int rm_eval(void *ud, mf_model *m, mf_trainer_metrics *out, mf_err *err) { return eval_pairs(ud, m, out, err, rm_pairs); }

/* ---------------------------------------------------------------- dpo */

static int dpo_pairs(pref_task *t, mf_model *m, const mf_train_data_set *set, const size_t *idx, size_t first, int n,
                     float scale, int train, mf_trainer_metrics *out, mf_err *err)
{
    int rc = pair_batch(t, set, idx, first, n, err);
    mf_k_outputs o;
    if (!rc) rc = mf_model_forward(m, &t->tb.b, MF_FWD_LOGITS | (train ? MF_FWD_TRAIN : 0), &o, err);
    if (rc) return rc;
    const double *ref = set == &t->train ? t->ref_train : t->ref_val;
    int T = t->tb.b.T;
    for (int i = 0; i < n; i++) {
        size_t p = idx ? idx[i] : first + (size_t)i;
        double pc = seq_logp(&o, i), pr = seq_logp(&o, n + i), rc_ = ref[2 * p], rr = ref[2 * p + 1], dpc, dpr;
        out->loss += mf_dpo_loss(t->beta, t->ls, pc, pr, rc_, rr, &dpc, &dpr) / n;
        double wc = t->beta * (pc - rc_), wr = t->beta * (pr - rr);
        out->v[0] += wc / n;
        out->v[1] += wr / n;
        out->v[2] += (wc - wr) / n;
        out->v[3] += (wc > wr) / (double)n;
        for (int k = 0; k < T; k++) {
            t->grad[(size_t)i * T + k] = (float)(dpc * scale / n) * o.valid[(size_t)i * T + k];
            t->grad[(size_t)(n + i) * T + k] = (float)(dpr * scale / n) * o.valid[(size_t)(n + i) * T + k];
        }
        out->tokens += t->seqs[i]->len + t->seqs[n + i]->len;
    }
    return train ? mf_model_backward(m, t->grad, NULL, err) : 0;
}

static int dpo_step(void *ud, mf_model *m, const size_t *idx, int n, float scale, mf_trainer_metrics *out, mf_err *err)
{
    pref_task *t = ud;
    return dpo_pairs(t, m, &t->train, idx, 0, n, scale, 1, out, err);
}

static int dpo_eval(void *ud, mf_model *m, mf_trainer_metrics *out, mf_err *err) { return eval_pairs(ud, m, out, err, dpo_pairs); }

/* Summed answer log-probs of every sequence of set under m (no dropout). */
static int ref_logps(pref_task *t, mf_model *m, const mf_train_data_set *set, double *dst, mf_err *err)
{
    for (size_t i = 0; i < set->n;) {
        int n = 0;
        for (size_t k = i; k < set->n && n < 2 * t->batch_size; k++) t->seqs[n++] = &set->v[k];
        mf_k_outputs o;
        int rc = mf_train_data_batch_make(&t->tb, t->seqs, n, t->pad, err);
        if (!rc) rc = mf_model_forward(m, &t->tb.b, MF_FWD_LOGITS, &o, err);
        if (rc) return rc;
        for (int b = 0; b < n; b++) dst[i + (size_t)b] = seq_logp(&o, b);
        i += (size_t)n;
    }
    return 0;
}

#define REF_MAGIC "medflow-dpo-ref-1"

/* The reference log-probs, from work_dir/ref_logps.bin when it matches, else computed and cached. */
static int dpo_reference(pref_task *t, const mf_stage_ctx *ctx, mf_model *m, mf_err *err)
{
    size_t n = t->train.n + t->val.n;
    double *all = malloc((n ? n : 1) * sizeof *all);
    if (!all) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char *path = ctx->work_dir ? mf_path_join(ctx->work_dir, "ref_logps.bin") : NULL;
    char *data = NULL;
    size_t len = 0, hl = sizeof(REF_MAGIC) + sizeof(uint64_t);
    int rc = 0, cached = 0;
    if (path && mf_is_file(path) && !mf_read_file(path, &data, &len, NULL) && len == hl + n * sizeof(double) &&
        !memcmp(data, REF_MAGIC, sizeof(REF_MAGIC))) {
        uint64_t cnt;
        memcpy(&cnt, data + sizeof(REF_MAGIC), sizeof cnt);
        if (cnt == n) {
            memcpy(all, data + hl, n * sizeof(double));
            cached = 1;
        }
    }
    free(data);
    if (!cached) {
        mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, "computing reference log-probs");
        rc = ref_logps(t, m, &t->train, all, err);
        if (!rc) rc = ref_logps(t, m, &t->val, all + t->train.n, err);
        if (!rc && path && !(rc = mf_mkdir_p(ctx->work_dir, 0755, err))) {
            char *buf = malloc(hl + n * sizeof(double));
            uint64_t cnt = n;
            if (!buf) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            else {
                memcpy(buf, REF_MAGIC, sizeof(REF_MAGIC));
                memcpy(buf + sizeof(REF_MAGIC), &cnt, sizeof cnt);
                memcpy(buf + hl, all, n * sizeof(double));
                rc = mf_write_file_atomic(path, buf, hl + n * sizeof(double), 0644, err);
                free(buf);
            }
        }
    }
    free(path);
    if (rc) {
        free(all);
        return rc;
    }
    t->ref_train = all;
    t->ref_val = all + t->train.n;
    return 0;
}

/* ---------------------------------------------------------------- run */

static int run_pref(mf_stage_ctx *ctx, int dpo)
{
    mf_err *err = ctx->err;
    mf_trainer_config tc;
    int rc = mf_trainer_config_from_ctx(&tc, ctx, err);
    if (rc) return rc;
    mf_train_model tm;
    pref_task t;
    memset(&t, 0, sizeof t);
    t.beta = mf_trainer_num(ctx, "beta");
    t.ls = mf_trainer_num(ctx, "label_smoothing");
    t.batch_size = tc.batch_size;
    rc = mf_train_model_open(&tm, ctx, err);
    mf_train_data_opts o;
    mf_train_data_opts_from_ctx(&o, ctx, MF_TRAIN_DATA_PREF);
    if (!rc) rc = mf_train_data_load(&t.train, &t.val, ctx, tm.in.tok, &o, err);
    if (!rc) {
        int ml = mf_train_model_max_len(&tm, ctx);
        if (mf_train_data_clip(&t.train, ml, 0) + mf_train_data_clip(&t.val, ml, 0))
            mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, "some pairs were cut to the model's positions");
    }
    if (!rc && !(t.seqs = malloc(2 * (size_t)tc.batch_size * sizeof *t.seqs))) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!rc) {
        t.pad = mf_tok_pad_id(tm.in.tok);
        if (t.pad < 0) t.pad = mf_tok_eos_id(tm.in.tok);
    }
    /* DPO's reference: the whole input model, before the new adapter exists */
    if (!rc && dpo) rc = dpo_reference(&t, ctx, tm.in.model, err);
    if (!rc) rc = mf_train_model_apply_finetune(&tm, ctx, err);
    if (!rc && !dpo) { /* the reward head always trains */
        if (!mf_model_find_param(tm.in.model, "score.weight")) rc = mf_model_add_score_head(tm.in.model, ctx->seed, err);
        if (!rc) rc = mf_model_set_trainable(tm.in.model, "score.weight", 1, err);
    }
    if (!rc) {
        char msg[200];
        snprintf(msg, sizeof msg, "%zu training / %zu validation pairs (%lld dropped), %zu trainable parameters",
                 t.train.n / 2, t.val.n / 2, t.train.dropped + t.val.dropped, mf_model_count(tm.in.model, 1));
        mf_stage_progress(ctx, 0, mf_trainer_total_steps(&tc, t.train.n / 2), NAN, NAN, NAN, msg);
        mf_trainer_task task = {&t, t.train.n / 2, dpo ? dpo_step : rm_step, NULL, {NULL}};
        if (dpo) {
            task.names[0] = "rewards_chosen";
            task.names[1] = "rewards_rejected";
            task.names[2] = "rewards_margins";
            task.names[3] = "rewards_accuracy";
            task.eval = t.val.n ? dpo_eval : NULL;
        } else {
            task.names[0] = "accuracy";
            task.names[1] = "reward_chosen";
            task.names[2] = "reward_rejected";
            task.eval = t.val.n ? rm_eval : NULL;
        }
        rc = mf_trainer_run(ctx, &tc, tm.in.model, &task, NULL, err);
    }
    if (!rc && ctx->rank == 0) rc = mf_train_model_save(&tm, ctx, err); /* data parallel: the ranks hold the same model */
    mf_train_data_batch_free(&t.tb);
    free(t.seqs);
    free(t.grad);
    free(t.ref_train);
    mf_train_data_set_free(&t.train);
    mf_train_data_set_free(&t.val);
    mf_train_model_free(&tm);
    return rc;
}

int mf_stage_rm_run(mf_stage_ctx *ctx) { return run_pref(ctx, 0); }
int mf_stage_dpo_run(mf_stage_ctx *ctx) { return run_pref(ctx, 1); }
