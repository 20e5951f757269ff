/*
 * stages/kinds/kind_pref.c — preference-pair kinds:
 *   rm   reward model: a score head on the last non-pad token (HF sequence
 *        classification), loss -log σ(r_chosen - r_rejected) (TRL RewardTrainer).
 *        Every answer ends with EOS, also one cut to the length limits (its last
 *        token becomes EOS, as OpenRLHF's reward dataset does): the score is then
 *        always read at an EOS, so "was it cut?" cannot become a feature, and PPO
 *        (which scores its rollouts closed with EOS) asks what the RM learned.
 *        Metrics: accuracy (r_c > r_r), margin, reward_chosen, reward_rejected.
 *        The validation accuracy must reach min_accuracy (else the stage fails);
 *        the mean and std of the rewards on the validation answers (train when
 *        there is no validation) are written to reward_stats.json for PPO's
 *        reward normalisation (OpenRLHF's normalize_reward).
 *   dpo  sigmoid DPO (TRL DPOTrainer, loss_type "sigmoid"):
 *          L = -(1-ls) log σ(β[(π_c - ref_c) - (π_r - ref_r)]) - ls log σ(-β[...])
 *        with π, ref the summed log-probs of the answer tokens, plus
 *        rpo_alpha x the mean NLL of the batch's chosen tokens (TRL's "sft"
 *        loss term; RPO, Pang et al. 2024) which keeps the chosen answers likely.
 *        The reference is the whole input model (base + its adapters) before
 *        the new adapter is added; its log-probs are computed once and cached in
 *        work_dir. Metrics as TRL: rewards/chosen = β(π_c - ref_c),
 *        rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen,
 *        logps/rejected (mean summed log-probs: both falling is the known DPO
 *        failure that makes generations worse).
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

double mf_dpo_batch_loss(int n, double beta, double ls, double alpha, const double *pc, const double *pr,
                         const double *rc, const double *rr, const double *nc, double *g_c, double *g_r)
{
    double L = 0, tokens = 0, nll = 0;
    for (int i = 0; i < n; i++) tokens += nc[i];
    for (int i = 0; i < n; i++) {
        double dpc, dpr;
        L += mf_dpo_loss(beta, ls, pc[i], pr[i], rc[i], rr[i], &dpc, &dpr) / n;
        nll -= pc[i];
        g_c[i] = dpc / n + (alpha > 0 && tokens > 0 ? -alpha / tokens : 0);
        g_r[i] = dpr / n;
    }
    return alpha > 0 && tokens > 0 ? L + alpha * nll / tokens : L;
}

double mf_rm_loss(double rc, double rr, double *dc, double *dr)
{
    double d = rc - rr;
    if (dc) *dc = -sigmoid(-d);
    if (dr) *dr = sigmoid(-d);
    return -log_sigmoid(d);
}

size_t mf_rm_close_with_eos(mf_train_data_set *s)
{
    size_t closed = 0;
    for (size_t i = 0; s->eos >= 0 && i < s->n; i++) {
        mf_train_data_seq *q = &s->v[i];
        if (!q->lost_eos || q->len < 1) continue;
        q->ids[q->len - 1] = s->eos;
        if (q->labels[q->len - 1] != MF_K_IGNORE_INDEX) q->labels[q->len - 1] = s->eos;
        q->lost_eos = 0;
        closed++;
    }
    return closed;
}

typedef struct pref_task {
    mf_train_data_set train, val;
    mf_train_data_batch tb;
    const mf_train_data_seq **seqs; /* 2 * batch_size */
    float *grad;                    /* dlogp / dvalues [2B*T] */
    size_t grad_cap;
    double *ref_train, *ref_val; /* dpo: reference summed log-probs per sequence */
    double *pairbuf;             /* dpo: 7 values per pair of a batch */
    double beta, ls, rpo_alpha;
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
    if (rc) return rc;
    size_t need = (size_t)t->tb.b.B * (size_t)t->tb.b.T;
    if (need > t->grad_cap) {
        float *g = realloc(t->grad, need * sizeof *g);
        if (!g) return mf_err_set(err, MF_ENOMEM, "out of memory");
        t->grad = g;
        t->grad_cap = need;
    }
    memset(t->grad, 0, need * sizeof *t->grad);
    return 0;
}

static double seq_logp(const mf_k_outputs *o, int b)
{
    double s = 0;
    for (int k = 0; k < o->T; k++) s += (double)o->logp[(size_t)b * o->T + k] * o->valid[(size_t)b * o->T + k];
    return s;
}

static double seq_tokens(const mf_k_outputs *o, int b)
{
    double s = 0;
    for (int k = 0; k < o->T; k++) s += o->valid[(size_t)b * o->T + k];
    return s;
}

/* ---------------------------------------------------------------- rm */

enum { RM_ACC, RM_MARGIN, RM_CHOSEN, RM_REJECTED };

static int rm_pairs(pref_task *t, mf_model *m, const mf_train_data_set *set, const size_t *idx, size_t first, int n,
                    float scale, int train, mf_trainer_metrics *out, mf_err *err)
{
    mf_k_outputs o;
    int rc;
    if ((rc = pair_batch(t, set, idx, first, n, err)) ||
        (rc = mf_model_forward(m, &t->tb.b, MF_FWD_VALUES | (train ? MF_FWD_TRAIN : 0), &o, err)))
        return rc;
    int T = t->tb.b.T;
    for (int i = 0; i < n; i++) {
        double rc_ = o.reward[i], rr = o.reward[n + i], dc, dr;
        out->loss += mf_rm_loss(rc_, rr, &dc, &dr) / n;
        out->v[RM_ACC] += (rc_ > rr) / (double)n;
        out->v[RM_MARGIN] += (rc_ - rr) / n;
        out->v[RM_CHOSEN] += rc_ / n;
        out->v[RM_REJECTED] += rr / n;
        /* the reward is the value at the last real token (right padding): an EOS (mf_rm_close_with_eos) */
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

typedef int (*pairs_fn)(pref_task *, mf_model *, const mf_train_data_set *, const size_t *, size_t, int, float, int,
                        mf_trainer_metrics *, mf_err *);

/* Mean over the validation pairs, batch by batch (weights = pairs per batch). */
static int eval_pairs(pref_task *t, mf_model *m, mf_trainer_metrics *out, mf_err *err, pairs_fn fn)
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

/* Mean and (population) std of the rewards of every answer of set, into out_dir/reward_stats.json. */
static int rm_write_stats(pref_task *t, const mf_stage_ctx *ctx, mf_model *m, const mf_train_data_set *set,
                          const char *split, mf_err *err)
{
    double mean = 0, m2 = 0;
    size_t n = 0;
    mf_json *o = NULL;
    mf_buf b = MF_BUF_INIT;
    char *path = NULL;
    int rc = 0;
    for (size_t i = 0; i < set->n;) {
        int k = 0;
        for (; i + (size_t)k < set->n && k < 2 * t->batch_size; k++) t->seqs[k] = &set->v[i + (size_t)k];
        mf_k_outputs out;
        if ((rc = mf_train_data_batch_make(&t->tb, t->seqs, k, t->pad, err)) ||
            (rc = mf_model_forward(m, &t->tb.b, MF_FWD_VALUES, &out, err)))
            goto out;
        for (int j = 0; j < k; j++) { /* Welford */
            double d = out.reward[j] - mean;
            mean += d / (double)++n;
            m2 += d * (out.reward[j] - mean);
        }
        i += (size_t)k;
    }
    o = mf_json_new_object();
    path = mf_path_join(ctx->out_dir, "reward_stats.json");
    if (!o || !path || mf_json_set(o, "mean", mf_json_new_float(mean)) ||
        mf_json_set(o, "std", mf_json_new_float(n ? sqrt(m2 / (double)n) : 0)) ||
        mf_json_set(o, "n", mf_json_new_int((int64_t)n)) || mf_json_set(o, "split", mf_json_new_str(split)) ||
        mf_json_write(&b, o, MF_JSON_SORTED | MF_JSON_PRETTY) || !mf_buf_ok(&b)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    rc = mf_write_file_atomic(path, b.data, b.len, 0644, err);
out:
    mf_json_free(o);
    mf_buf_free(&b);
    free(path);
    return rc;
}

/* The validation accuracy must reach min_accuracy (0 = no check): a reward model near chance steers PPO
 * with noise, so it fails here, saying what to do, unless the param allows it. */
static int rm_check(const mf_stage_ctx *ctx, const pref_task *t, const mf_trainer_metrics *ev, long steps)
{
    double min_acc = mf_trainer_num(ctx, "min_accuracy");
    if (!t->val.n)
        return mf_trainer_warn(ctx, steps,
                               "no validation pairs (val input or val_ratio): the reward model's accuracy is unchecked");
    double acc = ev->v[RM_ACC];
    if (min_acc > 0 && !(acc >= min_acc))
        return mf_err_set(ctx->err, MF_EFAILED,
                          "stage '%s': the reward model reached a validation pairwise accuracy of %.3f on %zu pairs, "
                          "below min_accuracy %.2f: it did not learn to prefer the chosen answers (train longer or with a "
                          "higher lr, check that chosen and rejected answers differ within cutoff_len); set "
                          "min_accuracy: 0 to keep it anyway",
                          ctx->stage, acc, t->val.n / 2, min_acc);
    if (min_acc <= 0 && acc < 0.6)
        return mf_trainer_warn(ctx, steps, "validation pairwise accuracy %.3f on %zu pairs is near chance (min_accuracy: 0 kept it)",
                               acc, t->val.n / 2);
    return 0;
}

/* ---------------------------------------------------------------- dpo */

enum { DPO_CHOSEN, DPO_REJECTED, DPO_MARGINS, DPO_ACC, DPO_LOGP_C, DPO_LOGP_R };

static int dpo_pairs(pref_task *t, mf_model *m, const mf_train_data_set *set, const size_t *idx, size_t first, int n,
                     float scale, int train, mf_trainer_metrics *out, mf_err *err)
{
    mf_k_outputs o;
    int rc;
    if ((rc = pair_batch(t, set, idx, first, n, err)) ||
        (rc = mf_model_forward(m, &t->tb.b, MF_FWD_LOGITS | (train ? MF_FWD_TRAIN : 0), &o, err)))
        return rc;
    const double *ref = set == &t->train ? t->ref_train : t->ref_val;
    /* per pair: summed log-probs (policy, reference), chosen tokens, gradients */
    double *pc = t->pairbuf, *pr = pc + n, *rc_ = pr + n, *rr = rc_ + n, *nc = rr + n, *gc = nc + n, *gr = gc + n;
    int T = t->tb.b.T;
    for (int i = 0; i < n; i++) {
        size_t p = idx ? idx[i] : first + (size_t)i;
        pc[i] = seq_logp(&o, i), pr[i] = seq_logp(&o, n + i), nc[i] = seq_tokens(&o, i);
        rc_[i] = ref[2 * p], rr[i] = ref[2 * p + 1];
    }
    out->loss += mf_dpo_batch_loss(n, t->beta, t->ls, t->rpo_alpha, pc, pr, rc_, rr, nc, gc, gr);
    for (int i = 0; i < n; i++) {
        double wc = t->beta * (pc[i] - rc_[i]), wr = t->beta * (pr[i] - rr[i]);
        out->v[DPO_CHOSEN] += wc / n;
        out->v[DPO_REJECTED] += wr / n;
        out->v[DPO_MARGINS] += (wc - wr) / n;
        out->v[DPO_ACC] += (wc > wr) / (double)n;
        out->v[DPO_LOGP_C] += pc[i] / n;
        out->v[DPO_LOGP_R] += pr[i] / n;
        for (int s = 0; s < T; s++) {
            t->grad[(size_t)i * T + s] = (float)(gc[i] * scale) * o.valid[(size_t)i * T + s];
            t->grad[(size_t)(n + i) * T + s] = (float)(gr[i] * scale) * o.valid[(size_t)(n + i) * T + s];
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
        int rc;
        if ((rc = mf_train_data_batch_make(&t->tb, t->seqs, n, t->pad, err)) ||
            (rc = mf_model_forward(m, &t->tb.b, MF_FWD_LOGITS, &o, err)))
            return rc;
        for (int b = 0; b < n; b++) dst[i + (size_t)b] = seq_logp(&o, b);
        i += (size_t)n;
    }
    return 0;
}

#define REF_MAGIC "medflow-dpo-ref-1"

/* The cached reference log-probs when work_dir/ref_logps.bin holds n of them; 1 when read. */
static int ref_cache_read(const char *path, double *all, size_t n)
{
    char *data = NULL;
    size_t len = 0, hl = sizeof(REF_MAGIC) + sizeof(uint64_t);
    int got = 0;
    if (path && mf_is_file(path) && !mf_read_file(path, &data, &len, NULL) && len == hl + n * sizeof(double) &&
        !memcmp(data, REF_MAGIC, sizeof(REF_MAGIC))) {
        uint64_t cnt;
        memcpy(&cnt, data + sizeof(REF_MAGIC), sizeof cnt);
        if (cnt == n) {
            memcpy(all, data + hl, n * sizeof(double));
            got = 1;
        }
    }
    free(data);
    return got;
}

static int ref_cache_write(const char *path, const double *all, size_t n, mf_err *err)
{
    size_t hl = sizeof(REF_MAGIC) + sizeof(uint64_t);
    uint64_t cnt = n;
    char *buf = malloc(hl + n * sizeof(double));
    if (!buf) return mf_err_set(err, MF_ENOMEM, "out of memory");
    memcpy(buf, REF_MAGIC, sizeof(REF_MAGIC));
    memcpy(buf + sizeof(REF_MAGIC), &cnt, sizeof cnt);
    memcpy(buf + hl, all, n * sizeof(double));
    int rc = mf_write_file_atomic(path, buf, hl + n * sizeof(double), 0644, err);
    free(buf);
    return rc;
}

/* The reference log-probs, from work_dir/ref_logps.bin when it matches, else computed and cached. */
static int dpo_reference(pref_task *t, const mf_stage_ctx *ctx, mf_model *m, mf_err *err)
{
    size_t n = t->train.n + t->val.n;
    double *all = malloc((n ? n : 1) * sizeof *all);
    char *path = ctx->work_dir ? mf_path_join(ctx->work_dir, "ref_logps.bin") : NULL;
    int rc = 0;
    if (!all || (ctx->work_dir && !path)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (!ref_cache_read(path, all, n)) {
        mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, "computing reference log-probs");
        if ((rc = ref_logps(t, m, &t->train, all, err)) || (rc = ref_logps(t, m, &t->val, all + t->train.n, err))) goto out;
        if (path && ((rc = mf_mkdir_p(ctx->work_dir, 0755, err)) || (rc = ref_cache_write(path, all, n, err)))) goto out;
    }
    t->ref_train = all;
    t->ref_val = all + t->train.n;
    all = NULL;
out:
    free(all);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- run */

/* Model, pairs (cut to the model's positions; rm: closed with EOS), batch buffers. */
static int pref_open(mf_stage_ctx *ctx, int dpo, mf_train_model *tm, pref_task *t, const mf_trainer_config *tc)
{
    mf_err *err = ctx->err;
    mf_train_data_opts o;
    int rc = mf_train_model_open(tm, ctx, err);
    if (rc) return rc;
    mf_train_data_opts_from_ctx(&o, ctx, MF_TRAIN_DATA_PREF);
    if ((rc = mf_train_data_load(&t->train, &t->val, ctx, tm->in.tok, &o, err))) return rc;
    int ml = mf_train_model_max_len(tm, ctx);
    if (mf_train_data_clip(&t->train, ml, 0) + mf_train_data_clip(&t->val, ml, 0))
        mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, "some pairs were cut to the model's positions");
    int32_t eos = mf_tok_eos_id(tm->in.tok);
    if (!dpo) {
        size_t closed = mf_rm_close_with_eos(&t->train) + mf_rm_close_with_eos(&t->val);
        if (closed) {
            char msg[160];
            snprintf(msg, sizeof msg, "%zu answers were cut to the length limits; each now ends with EOS", closed);
            mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN, msg);
        }
    }
    t->seqs = malloc(2 * (size_t)tc->batch_size * sizeof *t->seqs);
    t->pairbuf = malloc(7 * (size_t)tc->batch_size * sizeof *t->pairbuf);
    if (!t->seqs || !t->pairbuf) return mf_err_set(err, MF_ENOMEM, "out of memory");
    t->pad = mf_tok_pad_id(tm->in.tok);
    if (t->pad < 0) t->pad = eos;
    return 0;
}

static void pref_names(mf_trainer_task *task, int dpo)
{
    static const char *const dpo_names[] = {"rewards/chosen", "rewards/rejected", "rewards/margins",
                                            "rewards/accuracies", "logps/chosen", "logps/rejected", NULL};
    static const char *const rm_names[] = {"accuracy", "margin", "reward_chosen", "reward_rejected", NULL};
    const char *const *names = dpo ? dpo_names : rm_names;
    for (int k = 0; names[k]; k++) task->names[k] = names[k];
}

static int run_pref(mf_stage_ctx *ctx, int dpo)
{
    mf_err *err = ctx->err;
    mf_trainer_config tc;
    mf_train_model tm;
    pref_task t;
    mf_trainer_metrics ev;
    memset(&tm, 0, sizeof tm);
    memset(&t, 0, sizeof t);
    int rc = mf_trainer_config_from_ctx(&tc, ctx, err);
    if (rc) return rc;
    t.beta = mf_trainer_num(ctx, "beta");
    t.ls = mf_trainer_num(ctx, "label_smoothing");
    t.rpo_alpha = dpo ? mf_trainer_num(ctx, "rpo_alpha") : 0;
    t.batch_size = tc.batch_size;
    if ((rc = pref_open(ctx, dpo, &tm, &t, &tc))) goto out;
    /* DPO's reference: the whole input model, before the new adapter exists */
    if (dpo && (rc = dpo_reference(&t, ctx, tm.in.model, err))) goto out;
    if ((rc = mf_train_model_apply_finetune(&tm, ctx, err))) goto out;
    if (!dpo) { /* the reward head always trains */
        if (!mf_model_find_param(tm.in.model, "score.weight") && (rc = mf_model_add_score_head(tm.in.model, ctx->seed, err)))
            goto out;
        if ((rc = mf_model_set_trainable(tm.in.model, "score.weight", 1, err))) goto out;
    }
    char msg[200];
    long steps = mf_trainer_total_steps(&tc, t.train.n / 2);
    snprintf(msg, sizeof msg, "%zu training / %zu validation pairs (%lld dropped), %zu trainable parameters",
             t.train.n / 2, t.val.n / 2, t.train.dropped + t.val.dropped, mf_model_count(tm.in.model, 1));
    mf_stage_progress(ctx, 0, steps, NAN, NAN, NAN, msg);
    mf_trainer_task task = {&t, t.train.n / 2, dpo ? dpo_step : rm_step, NULL, {NULL}};
    pref_names(&task, dpo);
    if (t.val.n) task.eval = dpo ? dpo_eval : rm_eval;
    if ((rc = mf_trainer_run(ctx, &tc, tm.in.model, &task, &ev, err))) goto out;
    if (ctx->rank != 0) goto out; /* data parallel: the ranks hold the same model; rank 0 writes it */
    if (!dpo && ((rc = rm_check(ctx, &t, &ev, steps)) ||
                 (rc = rm_write_stats(&t, ctx, tm.in.model, t.val.n ? &t.val : &t.train, t.val.n ? "val" : "train", err))))
        goto out;
    if (dpo && t.val.n && ev.v[DPO_ACC] <= 0.5 &&
        (rc = mf_trainer_warn(ctx, steps, "validation rewards/accuracies %.3f: the policy does not prefer the chosen answers",
                              ev.v[DPO_ACC])))
        goto out;
    rc = mf_train_model_save(&tm, ctx, err);
out:
    mf_train_data_batch_free(&t.tb);
    free(t.seqs);
    free(t.pairbuf);
    free(t.grad);
    free(t.ref_train);
    mf_train_data_set_free(&t.train);
    mf_train_data_set_free(&t.val);
    mf_train_model_free(&tm);
    return rc;
}

int mf_stage_rm_run(mf_stage_ctx *ctx) { return run_pref(ctx, 0); }
int mf_stage_dpo_run(mf_stage_ctx *ctx) { return run_pref(ctx, 1); }
