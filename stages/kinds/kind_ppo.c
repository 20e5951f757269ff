/*
 * stages/kinds/kind_ppo.c — PPO (TRL PPOTrainer's algorithm; one process — no data
 * parallelism yet — on the stage's backend).
 *
 * One iteration = rollout_batch_size prompts, in a seeded per-epoch order:
 *   1. rollout     sampled continuations from the policy with the KV cache
 *                  (mf_model_generate; temperature/top_k/top_p/max_new_tokens; a row
 *                  ends at EOS or after max_new_tokens);
 *   2. score       a forward of prompt+response under the policy (old log-probs,
 *                  values from the value head = a score head on the policy trunk, the
 *                  entropy), the frozen reference (the whole input model: base + its
 *                  adapters, loaded separately) and the reward model. The reward model
 *                  reads a response cut at max_new_tokens closed with EOS, as every
 *                  answer it was trained on (OpenRLHF does the same): an unclosed
 *                  response is out of its distribution and scored arbitrarily (the shipped
 *                  ClinicalGPT RM put such responses ~1.0 lower, and PPO learned to stop at
 *                  once). The policy's own tokens and log-probs are untouched.
 *   3. advantages  the score is normalised (reward_norm: the reward model's validation
 *                  mean/std from reward_stats.json, or running statistics), clipped to
 *                  ±reward_clip, lowered by missing_eos_penalty for an unclosed response;
 *                  per-token rewards r_j = -kl_coef (logp_j - ref_j), plus the score on the
 *                  last response token; GAE: δ_j = r_j + γ V_{j+1} - V_j,
 *                  A_j = δ_j + γλ A_{j+1}, returns R = A + V; advantages whitened over
 *                  the batch (whiten_advantages; whiten_rewards whitens rewards first);
 *   4. update      ppo_epochs passes over shuffled mini-batches of mini_batch_size
 *                  rollouts, one AdamW step each, minimising
 *                    pg = mean max(-A ρ, -A clip(ρ, 1-ε, 1+ε)),  ρ = exp(logp - old)
 *                    vf = 0.5 mean max((V - R)², (clip(V, V_old-ε_v, V_old+ε_v) - R)²)
 *                    loss = pg + vf_coef * vf        (means over response tokens);
 *   5. log         metrics.jsonl (TRL's names, below), two sample rollouts into
 *                  rollouts.jsonl, a collapse warning, and the adaptive KL controller
 *                  (kl_target > 0: Ziegler et al. 2019, TRL's AdaptiveKLController).
 * Metrics per iteration: objective/scores (raw), objective/scores_normalized,
 * objective/kl (mean over rollouts of Σ_j logp_j - ref_j), objective/entropy (per
 * token), objective/non_score_reward, objective/rlhf_reward, policy/clipfrac_avg,
 * policy/approxkl_avg, loss/policy_avg, loss/value_avg, response/length,
 * response/eos_share, response/distinct_share, kl_coef, loss, lr, grad_norm.
 * Collapse: an iteration whose entropy is below collapse_entropy or whose share of
 * distinct responses is below collapse_distinct raises a warning (once; the run output,
 * the log, the manifest, metrics.jsonl). The value head is not saved with the policy.
 * Checkpoints (work_dir/ckpt, the trainer's format) every checkpoint_every iterations:
 * policy trainable params + value head, AdamW state, iteration, the KL coefficient and
 * the running reward statistics; prompt order and every draw are functions of
 * (seed, iteration), so a resumed run ends with the weights of an uninterrupted one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/dataio.h"
#include "stages/train/train_model.h"
#include "stages/train/train_data.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"

/* ---------------------------------------------------------------- the math (tested alone) */

void mf_ppo_gae(int n, const float *rewards, const float *values, double gamma, double lam, float *adv, float *ret)
{
    double last = 0;
    for (int j = n - 1; j >= 0; j--) {
        double next_v = j + 1 < n ? values[j + 1] : 0;
        double delta = rewards[j] + gamma * next_v - values[j];
        last = delta + gamma * lam * last;
        adv[j] = (float)last;
        ret[j] = (float)(last + values[j]);
    }
}

double mf_ppo_token_loss(double logp, double old_logp, double adv, double v, double old_v, double ret, double clip,
                         double clip_v, double vf_coef, double *dlogp, double *dv, double *pg, double *vf)
{
    double ratio = exp(logp - old_logp);
    double lo = 1 - clip, hi = 1 + clip;
    double rc = ratio < lo ? lo : ratio > hi ? hi : ratio;
    double pg1 = -adv * ratio, pg2 = -adv * rc;
    double pgl = pg1 >= pg2 ? pg1 : pg2;
    *dlogp = pg1 >= pg2 ? -adv * ratio : ((ratio > lo && ratio < hi) ? -adv * ratio : 0);
    double vc = v < old_v - clip_v ? old_v - clip_v : v > old_v + clip_v ? old_v + clip_v : v;
    double vf1 = (v - ret) * (v - ret), vf2 = (vc - ret) * (vc - ret);
    double vfl = 0.5 * (vf1 >= vf2 ? vf1 : vf2);
    double dvv = vf1 >= vf2 ? (v - ret) : ((v > old_v - clip_v && v < old_v + clip_v) ? (vc - ret) : 0);
    *dv = vf_coef * dvv;
    if (pg) *pg = pgl;
    if (vf) *vf = vfl;
    return pgl + vf_coef * vfl;
}

int mf_ppo_clipped(double logp, double old_logp, double adv, double clip)
{
    double ratio = exp(logp - old_logp), rc = ratio < 1 - clip ? 1 - clip : ratio > 1 + clip ? 1 + clip : ratio;
    return -adv * rc > -adv * ratio; /* TRL: pg_clipfrac = mean(pg_losses2 > pg_losses) */
}

void mf_ppo_whiten(float **v, const int *n, int rows, int shift_mean)
{
    double s = 0, s2 = 0, c = 0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n[r]; j++) {
            s += v[r][j];
            c++;
        }
    if (c < 2) return;
    double mean = s / c;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n[r]; j++) s2 += (v[r][j] - mean) * (v[r][j] - mean);
    double var = s2 / (c - 1); /* unbiased, like TRL's masked_var */
    double inv = 1.0 / sqrt(var + 1e-8);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n[r]; j++) v[r][j] = (float)((v[r][j] - mean) * inv + (shift_mean ? 0 : mean));
}

double mf_ppo_kl_update(double coef, double kl, double target, double horizon, int n_steps)
{
    if (!(target > 0) || !(horizon > 0)) return coef;
    double err = kl / target - 1;
    err = err < -0.2 ? -0.2 : err > 0.2 ? 0.2 : err;
    return coef * (1 + err * n_steps / horizon);
}

void mf_ppo_running_add(double *st, double x)
{
    double d = x - st[1];
    st[0] += 1;
    st[1] += d / st[0];
    st[2] += d * (x - st[1]);
}

/* ---------------------------------------------------------------- state */

typedef struct rollout {
    int plen, rlen;   /* prompt tokens, response tokens (>= 1) */
    int32_t *ids;     /* plen + rlen (+ 1: room for the reward model's closing EOS) */
    float *old_logp, *ref_logp, *old_v, *adv, *ret; /* rlen each */
    double score, score_n; /* raw reward-model score; normalised, clipped, penalised */
    int has_eos;
} rollout;

static void rollout_free(rollout *r)
{
    free(r->ids);
    free(r->old_logp);
    free(r->ref_logp);
    free(r->old_v);
    free(r->adv);
    free(r->ret);
    memset(r, 0, sizeof *r);
}

typedef enum { NORM_RM = 0, NORM_RUNNING, NORM_NONE } reward_norm;

typedef struct ppo_cfg {
    double kl_coef, kl_target, kl_horizon, gamma, lam, clip, clip_v, vf_coef;
    double reward_clip, eos_penalty, collapse_entropy, collapse_distinct;
    int ppo_epochs, mbs, rbs, whiten_r, whiten_a, max_new;
    reward_norm norm;
} ppo_cfg;

/* What one iteration measured. */
typedef struct ppo_stats {
    double score, score_n, kl, entropy, rlen, eos_share, distinct;
    double loss, pg, vf, clipfrac, approxkl, grad_norm;
    double tokens;
} ppo_stats;

typedef struct ppo {
    ppo_cfg c;
    mf_trainer_config tc, cc; /* cc: what a checkpoint must agree with */
    mf_train_model tm;        /* policy (+ value head) */
    mf_modelio_input ref, rwd;
    mf_train_data_set prompts;
    mf_train_data_batch tb;
    mf_k_adamw *opt;
    const mf_train_data_seq **seqs;
    mf_train_data_seq *tmp; /* views of rollouts as sequences */
    float *g_logp, *g_val;
    size_t g_cap;
    int32_t pad, eos;
    int32_t stops[16]; /* the tokenizer's EOS and every eos_token_id of the model's configs */
    int n_stop;
    rollout *R, **rows;
    size_t *perm, *pidx;
    int *order, *lens;
    float **vv;
    long iters;
    unsigned long long cursor, cur_epoch;
    double kl_coef;
    double rm_mean, rm_std; /* NORM_RM */
    double run[3];          /* NORM_RUNNING: count, mean, M2 (Welford) of the raw scores so far */
    int collapsed;          /* iteration the collapse warning was raised at, 0 = none */
    char *mpath, *spath;    /* metrics.jsonl, rollouts.jsonl (work_dir copies) */
    FILE *mfp, *sfp;
} ppo;

static void ppo_free(ppo *P)
{
    for (int i = 0; P->R && i < P->c.rbs; i++) rollout_free(&P->R[i]);
    for (int i = 0; P->tmp && i < P->c.rbs; i++) free(P->tmp[i].labels);
    if (P->mfp) fclose(P->mfp);
    if (P->sfp) fclose(P->sfp);
    free(P->R);
    free(P->rows);
    free(P->perm);
    free(P->pidx);
    free(P->order);
    free(P->lens);
    free(P->vv);
    free(P->seqs);
    free(P->tmp);
    free(P->g_logp);
    free(P->g_val);
    free(P->mpath);
    free(P->spath);
    mf_train_data_batch_free(&P->tb);
    mf_train_data_set_free(&P->prompts);
    mf_k_adamw_free(P->opt);
    mf_modelio_input_free(&P->ref);
    mf_modelio_input_free(&P->rwd);
    mf_train_model_free(&P->tm);
}

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "out of memory"); }

/* ---------------------------------------------------------------- set-up */

static void read_cfg(ppo_cfg *c, const mf_stage_ctx *ctx)
{
    c->kl_coef = mf_trainer_num(ctx, "kl_coef");
    c->kl_target = mf_trainer_num(ctx, "kl_target");
    c->kl_horizon = mf_trainer_num(ctx, "kl_horizon");
    c->gamma = mf_trainer_num(ctx, "gamma");
    c->lam = mf_trainer_num(ctx, "gae_lambda");
    c->clip = mf_trainer_num(ctx, "clip_range");
    c->clip_v = mf_trainer_num(ctx, "clip_range_value");
    c->vf_coef = mf_trainer_num(ctx, "vf_coef");
    c->reward_clip = mf_trainer_num(ctx, "reward_clip");
    c->eos_penalty = mf_trainer_num(ctx, "missing_eos_penalty");
    c->collapse_entropy = mf_trainer_num(ctx, "collapse_entropy");
    c->collapse_distinct = mf_trainer_num(ctx, "collapse_distinct");
    c->ppo_epochs = (int)mf_trainer_int(ctx, "ppo_epochs");
    c->mbs = (int)mf_trainer_int(ctx, "mini_batch_size");
    c->rbs = (int)mf_trainer_int(ctx, "rollout_batch_size");
    c->whiten_r = mf_trainer_bool(ctx, "whiten_rewards");
    c->whiten_a = mf_trainer_bool(ctx, "whiten_advantages");
    c->max_new = (int)mf_trainer_int(ctx, "max_new_tokens");
    const char *n = mf_trainer_str(ctx, "reward_norm");
    c->norm = !strcmp(n, "running") ? NORM_RUNNING : !strcmp(n, "none") ? NORM_NONE : NORM_RM;
    if (c->mbs < 1) c->mbs = 1;
    if (c->rbs < 1) c->rbs = 1;
    if (c->max_new < 1) c->max_new = 1;
}

/* reward_norm: rm reads the reward model's reward_stats.json; without it, running statistics. */
static int open_reward_stats(ppo *P, const mf_stage_ctx *ctx)
{
    if (P->c.norm != NORM_RM) return 0;
    char *path = mf_path_join(P->rwd.path, "reward_stats.json");
    mf_json *st = NULL;
    int rc = 0;
    if (!path) return nomem(ctx->err);
    P->rm_mean = P->rm_std = NAN;
    if (mf_is_file(path)) {
        if ((rc = mf_json_parse_file(&st, path, ctx->err))) goto out;
        P->rm_mean = mf_json_get_num(st, "mean", NAN);
        P->rm_std = mf_json_get_num(st, "std", NAN);
    }
    if (!(isfinite(P->rm_mean) && P->rm_std > 1e-8)) {
        mf_stage_progress(ctx, 0, 0, NAN, NAN, NAN,
                          "the reward model has no reward_stats.json (not an rm stage of this version): "
                          "normalising rewards with running statistics");
        P->c.norm = NORM_RUNNING;
    }
out:
    mf_json_free(st);
    free(path);
    return rc;
}

static int open_models(ppo *P, mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    int rc;
    if ((rc = mf_train_model_open(&P->tm, ctx, err))) return rc;
    /* the frozen reference: the whole input model, opened on its own */
    if ((rc = mf_stage_open_model(&P->ref, ctx, "model", 0, err)) || (rc = mf_stage_open_model(&P->rwd, ctx, "reward", 0, err)))
        return rc;
    if (!mf_model_find_param(P->rwd.model, "score.weight"))
        return mf_err_set(err, MF_EINVAL, "stage '%s': input 'reward' has no score head (expected the output of an rm stage)",
                          ctx->stage);
    int vr = mf_model_get_config(P->rwd.model)->vocab_size, vp = mf_model_get_config(P->tm.in.model)->vocab_size;
    if (vr != vp)
        return mf_err_set(err, MF_EINVAL, "stage '%s': the reward model's vocabulary (%d) differs from the policy's (%d)",
                          ctx->stage, vr, vp);
    return open_reward_stats(P, ctx);
}

static int open_prompts(ppo *P, mf_stage_ctx *ctx)
{
    mf_train_data_opts o;
    mf_train_data_opts_from_ctx(&o, ctx, MF_TRAIN_DATA_PROMPT);
    o.val_ratio = 0;
    int rc = mf_train_data_load(&P->prompts, NULL, ctx, P->tm.in.tok, &o, ctx->err);
    if (rc) return rc;
    /* room for the response and the reward model's closing EOS */
    int room = mf_train_model_max_len(&P->tm, ctx) - P->c.max_new - 1;
    if (room < 1)
        return mf_err_set(ctx->err, MF_EINVAL, "stage '%s': max_new_tokens leaves no room for a prompt in the model's positions",
                          ctx->stage);
    mf_train_data_clip(&P->prompts, room, 1);
    if (P->prompts.n == 0) return mf_err_set(ctx->err, MF_EINVAL, "stage '%s': no prompts in 'data'", ctx->stage);
    return 0;
}

static int alloc_buffers(ppo *P, mf_err *err)
{
    size_t rbs = (size_t)P->c.rbs;
    P->R = calloc(rbs, sizeof *P->R);
    P->rows = calloc(rbs, sizeof *P->rows);
    P->perm = malloc(P->prompts.n * sizeof *P->perm);
    P->pidx = malloc(rbs * sizeof *P->pidx);
    P->order = malloc(rbs * sizeof *P->order);
    P->lens = malloc(rbs * sizeof *P->lens);
    P->vv = malloc(rbs * sizeof *P->vv);
    P->seqs = calloc(rbs, sizeof *P->seqs);
    P->tmp = calloc(rbs, sizeof *P->tmp);
    if (!P->R || !P->rows || !P->perm || !P->pidx || !P->order || !P->lens || !P->vv || !P->seqs || !P->tmp) return nomem(err);
    return 0;
}

/* Resume from work_dir/ckpt, and open the metrics and rollout files (truncated to the resumed iteration). */
static int open_run(ppo *P, mf_stage_ctx *ctx, mf_trainer_state *st)
{
    mf_err *err = ctx->err;
    mf_model *pol = P->tm.in.model;
    int rc = 0;
    if (ctx->work_dir) {
        if ((rc = mf_mkdir_p(ctx->work_dir, 0755, err))) return rc;
        int got = mf_trainer_ckpt_load(ctx->work_dir, pol, P->opt, st, &P->cc, err);
        if (got < 0) return got;
        if (got) {
            char msg[128];
            snprintf(msg, sizeof msg, "resumed from the checkpoint of iteration %ld", st->step);
            mf_stage_progress(ctx, st->step, P->iters, NAN, NAN, NAN, msg);
            if (st->n_aux >= 5) {
                P->kl_coef = st->aux[0];
                memcpy(P->run, st->aux + 1, sizeof P->run);
                P->collapsed = (int)st->aux[4];
            }
        }
    }
    const char *dir = ctx->work_dir ? ctx->work_dir : ctx->out_dir;
    P->mpath = mf_path_join(dir, "metrics.jsonl");
    P->spath = mf_path_join(dir, "rollouts.jsonl");
    if (!P->mpath || !P->spath) return nomem(err);
    if (st->step && ((rc = mf_trainer_metrics_truncate(P->mpath, st->step, err)) ||
                     (rc = mf_trainer_metrics_truncate(P->spath, st->step, err))))
        return rc;
    if (!(P->mfp = fopen(P->mpath, st->step ? "ab" : "wb"))) return mf_err_errno(err, MF_EIO, "open %s", P->mpath);
    if (!(P->sfp = fopen(P->spath, st->step ? "ab" : "wb"))) return mf_err_errno(err, MF_EIO, "open %s", P->spath);
    return 0;
}

static int ppo_open(ppo *P, mf_stage_ctx *ctx, mf_trainer_state *st)
{
    mf_err *err = ctx->err;
    int rc = mf_trainer_config_from_ctx(&P->tc, ctx, err);
    if (rc) return rc;
    read_cfg(&P->c, ctx);
    P->kl_coef = P->c.kl_coef;
    if ((rc = open_models(P, ctx)) || (rc = open_prompts(P, ctx))) return rc;
    if ((rc = mf_train_model_apply_finetune(&P->tm, ctx, err))) return rc;
    mf_model *pol = P->tm.in.model;
    if (!mf_model_find_param(pol, "score.weight") && (rc = mf_model_add_score_head(pol, ctx->seed ^ 0x5eed, err))) return rc;
    if ((rc = mf_model_set_trainable(pol, "score.weight", 1, err))) return rc;
    P->pad = P->tm.in.tok ? mf_tok_pad_id(P->tm.in.tok) : -1;
    P->eos = P->tm.in.tok ? mf_tok_eos_id(P->tm.in.tok) : -1;
    if (P->pad < 0) P->pad = P->eos >= 0 ? P->eos : 0;
    if (P->eos >= 0) P->stops[P->n_stop++] = P->eos;
    P->n_stop = mf_modelio_stop_ids(P->tm.in.path, P->stops, P->n_stop, (int)(sizeof P->stops / sizeof P->stops[0]));

    size_t n = P->prompts.n, rbs = (size_t)P->c.rbs;
    P->iters = P->tc.max_steps > 0 ? P->tc.max_steps : (long)ceil(P->tc.epochs * (double)((n + rbs - 1) / rbs) - 1e-9);
    if (P->iters < 1) P->iters = 1;
    long mb_per_iter = (long)P->c.ppo_epochs * ((P->c.rbs + P->c.mbs - 1) / P->c.mbs);
    P->tc.opt.total_steps = P->iters * mb_per_iter;
    P->tc.opt.warmup_steps = (long)ceil(P->tc.warmup_ratio * (double)P->tc.opt.total_steps);
    if ((rc = mf_k_adamw_new(&P->opt, pol, &P->tc.opt, err)) || (rc = alloc_buffers(P, err))) return rc;
    P->cc = P->tc;
    P->cc.batch_size = P->c.rbs;
    P->cc.grad_accum = P->c.mbs;
    if ((rc = open_run(P, ctx, st))) return rc;
    P->cursor = (unsigned long long)st->step * (unsigned long long)P->c.rbs;
    P->cur_epoch = (unsigned long long)-1;
    char msg[200];
    snprintf(msg, sizeof msg, "%zu prompts, %ld iterations of %d rollouts, %zu trainable parameters", n, P->iters, P->c.rbs,
             mf_model_count(pol, 1));
    mf_stage_progress(ctx, 0, P->iters, NAN, NAN, NAN, msg);
    return 0;
}

/* ---------------------------------------------------------------- 1. rollout */

static void pick_prompts(ppo *P, const mf_stage_ctx *ctx)
{
    size_t n = P->prompts.n;
    for (int i = 0; i < P->c.rbs; i++, P->cursor++) {
        unsigned long long e = P->cursor / n;
        if (e != P->cur_epoch) {
            for (size_t k = 0; k < n; k++) P->perm[k] = k;
            mf_rng r;
            mf_rng_seed(&r, ctx->seed ^ mf_mix64(e + 0x1234));
            mf_rng_shuffle(&r, P->perm, n);
            P->cur_epoch = e;
        }
        P->pidx[i] = P->perm[P->cursor % n];
    }
}

/* Does a response's last token end it (any of the model's stop ids)? */
static int is_stop(const ppo *P, int32_t id)
{
    for (int i = 0; i < P->n_stop; i++)
        if (P->stops[i] == id) return 1;
    return 0;
}

static int rollout_alloc(rollout *r, int plen, int rlen)
{
    r->plen = plen;
    r->rlen = rlen;
    r->ids = malloc((size_t)(plen + rlen + 1) * sizeof *r->ids);
    r->old_logp = calloc((size_t)rlen, sizeof(float));
    r->ref_logp = calloc((size_t)rlen, sizeof(float));
    r->old_v = calloc((size_t)rlen, sizeof(float));
    r->adv = calloc((size_t)rlen, sizeof(float));
    r->ret = calloc((size_t)rlen, sizeof(float));
    return r->ids && r->old_logp && r->ref_logp && r->old_v && r->adv && r->ret ? 0 : MF_ENOMEM;
}

static int ppo_rollout(ppo *P, const mf_stage_ctx *ctx, long it)
{
    int n = P->c.rbs, max_new = P->c.max_new;
    const int32_t **pr = calloc((size_t)n, sizeof *pr);
    int *plen = calloc((size_t)n, sizeof *plen), *olen = calloc((size_t)n, sizeof *olen);
    int32_t *oids = calloc((size_t)n * (size_t)max_new, sizeof *oids);
    float *olp = calloc((size_t)n * (size_t)max_new, sizeof *olp);
    int rc = 0;
    if (!pr || !plen || !olen || !oids || !olp) {
        rc = nomem(ctx->err);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        rollout_free(&P->R[i]);
        pr[i] = P->prompts.v[P->pidx[i]].ids;
        plen[i] = P->prompts.v[P->pidx[i]].len;
    }
    double temp = mf_trainer_num(ctx, "temperature");
    mf_k_gen_config gc = {max_new, temp > 0 ? (float)temp : 1.0f, (int)mf_trainer_int(ctx, "top_k"),
                          (float)mf_trainer_num(ctx, "top_p"), P->n_stop ? P->stops : NULL, P->n_stop, P->pad,
                          ctx->seed ^ mf_mix64((uint64_t)it + 77), 1};
    if (gc.top_p <= 0) gc.top_p = 1;
    if ((rc = mf_model_generate(P->tm.in.model, n, pr, plen, &gc, oids, olp, olen, ctx->err))) goto out;
    for (int i = 0; i < n; i++) {
        rollout *r = &P->R[i];
        if (rollout_alloc(r, plen[i], olen[i] > 0 ? olen[i] : 1)) {
            rc = nomem(ctx->err);
            goto out;
        }
        memcpy(r->ids, pr[i], (size_t)r->plen * sizeof *r->ids);
        for (int j = 0; j < r->rlen; j++)
            r->ids[r->plen + j] = olen[i] > 0 ? oids[(size_t)i * max_new + j] : P->eos >= 0 ? P->eos : 0;
        r->has_eos = is_stop(P, r->ids[r->plen + r->rlen - 1]);
    }
out:
    free(pr);
    free(plen);
    free(olen);
    free(oids);
    free(olp);
    return rc;
}

/* ---------------------------------------------------------------- 2. score */

/* Batch of rollouts rows[0..n): prompt + response (+ EOS for an unclosed response when close), labels on the response. */
static int roll_batch(ppo *P, rollout *const *rows, int n, int close, mf_err *err)
{
    for (int i = 0; i < n; i++) {
        rollout *r = rows[i];
        mf_train_data_seq *s = &P->tmp[i];
        int extra = close && !r->has_eos && P->eos >= 0;
        if (extra) r->ids[r->plen + r->rlen] = P->eos; /* the slot rollout_alloc keeps for it */
        s->ids = r->ids;
        s->len = r->plen + r->rlen + extra;
        s->prompt_len = r->plen;
        int32_t *lab = realloc(s->labels, (size_t)s->len * sizeof *lab);
        if (!lab) return nomem(err);
        s->labels = lab;
        for (int t = 0; t < s->len; t++) s->labels[t] = t >= r->plen ? r->ids[t] : MF_K_IGNORE_INDEX;
        P->seqs[i] = s;
    }
    int rc = mf_train_data_batch_make(&P->tb, P->seqs, n, P->pad, err);
    if (rc) return rc;
    size_t need = (size_t)P->tb.b.B * (size_t)P->tb.b.T;
    if (need > P->g_cap) {
        float *a = realloc(P->g_logp, need * sizeof *a);
        if (a) P->g_logp = a;
        float *b = realloc(P->g_val, need * sizeof *b);
        if (b) P->g_val = b;
        if (!a || !b) return nomem(err);
        P->g_cap = need;
    }
    return 0;
}

static double token_entropy(const float *logits, int V)
{
    double mx = logits[0];
    for (int k = 1; k < V; k++)
        if (logits[k] > mx) mx = logits[k];
    double z = 0, e = 0;
    for (int k = 0; k < V; k++) z += exp(logits[k] - mx);
    double lz = log(z);
    for (int k = 0; k < V; k++) {
        double lp = logits[k] - mx - lz;
        e -= exp(lp) * lp;
    }
    return e;
}

/* Share of distinct responses (token sequences) among the rollouts. */
static double distinct_share(const ppo *P)
{
    int n = P->c.rbs, distinct = 0;
    for (int i = 0; i < n; i++) {
        const rollout *a = &P->R[i];
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) {
            const rollout *b = &P->R[k];
            seen = a->rlen == b->rlen && !memcmp(a->ids + a->plen, b->ids + b->plen, (size_t)a->rlen * sizeof *a->ids);
        }
        distinct += !seen;
    }
    return (double)distinct / n;
}

/* Old log-probs, values and entropy (policy), reference log-probs, reward-model scores. */
static int ppo_score(ppo *P, mf_err *err, ppo_stats *s)
{
    int n = P->c.rbs;
    mf_k_outputs out;
    int rc;
    for (int i = 0; i < n; i++) P->rows[i] = &P->R[i];
    if ((rc = roll_batch(P, P->rows, n, 0, err)) ||
        (rc = mf_model_forward(P->tm.in.model, &P->tb.b, MF_FWD_LOGITS | MF_FWD_VALUES, &out, err)))
        return rc;
    int T = P->tb.b.T;
    double ent = 0, ent_n = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < P->R[i].rlen; j++) {
            size_t pos = (size_t)i * T + (size_t)(P->R[i].plen + j - 1);
            P->R[i].old_logp[j] = out.logp[pos];
            P->R[i].old_v[j] = out.values[pos];
            ent += token_entropy(out.logits + pos * (size_t)out.V, out.V);
            ent_n++;
        }
    if ((rc = mf_model_forward(P->ref.model, &P->tb.b, MF_FWD_LOGITS | MF_FWD_NO_LOGITS, &out, err))) return rc;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < P->R[i].rlen; j++) P->R[i].ref_logp[j] = out.logp[(size_t)i * T + (size_t)(P->R[i].plen + j - 1)];
    /* the reward model reads every response closed with EOS, as it was trained */
    if ((rc = roll_batch(P, P->rows, n, 1, err)) || (rc = mf_model_forward(P->rwd.model, &P->tb.b, MF_FWD_VALUES, &out, err)))
        return rc;
    for (int i = 0; i < n; i++) {
        rollout *r = &P->R[i];
        r->score = out.reward[i];
        s->score += r->score / n;
        s->rlen += (double)r->rlen / n;
        s->eos_share += (double)r->has_eos / n;
        s->tokens += r->plen + r->rlen;
        for (int j = 0; j < r->rlen; j++) s->kl += (r->old_logp[j] - r->ref_logp[j]) / n;
    }
    s->entropy = ent_n ? ent / ent_n : 0;
    s->distinct = distinct_share(P);
    return 0;
}

/* ---------------------------------------------------------------- 3. advantages */

static double normalise_score(ppo *P, const rollout *r)
{
    double x = r->score;
    if (P->c.norm == NORM_RM) x = (x - P->rm_mean) / P->rm_std;
    else if (P->c.norm == NORM_RUNNING && P->run[0] > 1) x = (x - P->run[1]) / sqrt(P->run[2] / P->run[0] + 1e-8);
    if (P->c.reward_clip > 0) x = x < -P->c.reward_clip ? -P->c.reward_clip : x > P->c.reward_clip ? P->c.reward_clip : x;
    if (!r->has_eos) x -= P->c.eos_penalty;
    return x;
}

static int ppo_advantages(ppo *P, mf_err *err, ppo_stats *s)
{
    int n = P->c.rbs;
    if (P->c.norm == NORM_RUNNING)
        for (int i = 0; i < n; i++) mf_ppo_running_add(P->run, P->R[i].score); /* the batch counts in its own statistics */
    for (int i = 0; i < n; i++) {
        rollout *r = &P->R[i];
        r->score_n = normalise_score(P, r);
        s->score_n += r->score_n / n;
        for (int j = 0; j < r->rlen; j++) r->adv[j] = (float)(-P->kl_coef * (r->old_logp[j] - r->ref_logp[j])); /* rewards, for now in adv */
        r->adv[r->rlen - 1] += (float)r->score_n;
        P->vv[i] = r->adv;
        P->lens[i] = r->rlen;
    }
    if (P->c.whiten_r) mf_ppo_whiten(P->vv, P->lens, n, 0);
    for (int i = 0; i < n; i++) {
        rollout *r = &P->R[i];
        float *rw = malloc((size_t)r->rlen * sizeof *rw);
        if (!rw) return nomem(err);
        memcpy(rw, r->adv, (size_t)r->rlen * sizeof *rw);
        mf_ppo_gae(r->rlen, rw, r->old_v, P->c.gamma, P->c.lam, r->adv, r->ret);
        free(rw);
    }
    if (P->c.whiten_a) mf_ppo_whiten(P->vv, P->lens, n, 1);
    return 0;
}

/* ---------------------------------------------------------------- 4. update */

/* One mini-batch: forward, per-token losses and their gradients, backward, one AdamW step. */
static int minibatch(ppo *P, int m, mf_err *err, ppo_stats *s)
{
    mf_model *pol = P->tm.in.model;
    mf_k_outputs out;
    int rc;
    mf_model_zero_grad(pol);
    if ((rc = roll_batch(P, P->rows, m, 0, err)) ||
        (rc = mf_model_forward(pol, &P->tb.b, MF_FWD_LOGITS | MF_FWD_VALUES | MF_FWD_TRAIN, &out, err)))
        return rc;
    int T = P->tb.b.T;
    size_t cells = (size_t)m * (size_t)T;
    memset(P->g_logp, 0, cells * sizeof(float));
    memset(P->g_val, 0, cells * sizeof(float));
    double ntok = 0, L = 0, PG = 0, VF = 0, CF = 0, AK = 0;
    for (int i = 0; i < m; i++) ntok += P->rows[i]->rlen;
    for (int i = 0; i < m; i++) {
        rollout *r = P->rows[i];
        for (int j = 0; j < r->rlen; j++) {
            size_t pos = (size_t)i * T + (size_t)(r->plen + j - 1);
            double dl, dv, pg, vf, d = out.logp[pos] - r->old_logp[j];
            L += mf_ppo_token_loss(out.logp[pos], r->old_logp[j], r->adv[j], out.values[pos], r->old_v[j], r->ret[j],
                                   P->c.clip, P->c.clip_v, P->c.vf_coef, &dl, &dv, &pg, &vf) / ntok;
            PG += pg / ntok;
            VF += vf / ntok;
            CF += mf_ppo_clipped(out.logp[pos], r->old_logp[j], r->adv[j], P->c.clip) / ntok;
            AK += 0.5 * d * d / ntok;
            P->g_logp[pos] = (float)(dl / ntok);
            P->g_val[pos] = (float)(dv / ntok);
        }
    }
    if ((rc = mf_model_backward(pol, P->g_logp, P->g_val, err)) || (rc = mf_k_adamw_step(P->opt, &s->grad_norm, err))) return rc;
    s->loss += L, s->pg += PG, s->vf += VF, s->clipfrac += CF, s->approxkl += AK;
    return 0;
}

static int ppo_update(ppo *P, const mf_stage_ctx *ctx, long it, ppo_stats *s)
{
    int rbs = P->c.rbs, mbs = P->c.mbs, nmb = 0, rc = 0;
    for (int pe = 0; pe < P->c.ppo_epochs; pe++) {
        mf_rng orng; /* a function of (seed, iteration, epoch): resumable */
        mf_rng_seed(&orng, ctx->seed ^ mf_mix64((uint64_t)it * 1024u + (uint64_t)pe + 0x9090));
        for (int i = 0; i < rbs; i++) P->order[i] = i;
        for (int i = rbs - 1; i > 0; i--) {
            int k = (int)mf_rng_below(&orng, (uint64_t)i + 1), tmp = P->order[i];
            P->order[i] = P->order[k];
            P->order[k] = tmp;
        }
        for (int b = 0; b < rbs; b += mbs, nmb++) {
            int m = rbs - b < mbs ? rbs - b : mbs;
            for (int i = 0; i < m; i++) P->rows[i] = &P->R[P->order[b + i]];
            if ((rc = minibatch(P, m, ctx->err, s))) return rc;
        }
    }
    s->loss /= nmb, s->pg /= nmb, s->vf /= nmb, s->clipfrac /= nmb, s->approxkl /= nmb;
    if (!isfinite(s->loss))
        return mf_err_set(ctx->err, MF_EFAILED, "stage '%s': PPO loss is not finite at iteration %ld", ctx->stage, it + 1);
    return 0;
}

/* ---------------------------------------------------------------- 5. log */

static void put(mf_buf *b, const char *key, double v)
{
    mf_json_write_str(b, key, strlen(key));
    mf_buf_putc(b, ':');
    mf_json_write_double(b, v);
    mf_buf_putc(b, ',');
}

static int write_line(FILE *fp, const mf_buf *b, const char *path, mf_err *err)
{
    if (!mf_buf_ok(b)) return nomem(err);
    if (fwrite(b->data, 1, b->len, fp) != b->len || fflush(fp)) return mf_err_errno(err, MF_EIO, "write %s", path);
    return 0;
}

/* metrics.jsonl: one line per iteration, keys sorted (as the trainer's lines). */
static int log_metrics(ppo *P, const mf_stage_ctx *ctx, long it, const ppo_stats *s, double kl_coef, mf_err *err)
{
    mf_buf b = MF_BUF_INIT;
    mf_buf_putc(&b, '{');
    put(&b, "grad_norm", s->grad_norm);
    put(&b, "kl_coef", kl_coef);
    put(&b, "loss", s->loss);
    put(&b, "loss/policy_avg", s->pg);
    put(&b, "loss/value_avg", s->vf);
    put(&b, "lr", P->tc.opt.lr * mf_k_lr_factor(&P->tc.opt, mf_k_adamw_steps(P->opt)));
    put(&b, "objective/entropy", s->entropy);
    put(&b, "objective/kl", s->kl);
    put(&b, "objective/non_score_reward", -kl_coef * s->kl);
    put(&b, "objective/rlhf_reward", s->score_n - kl_coef * s->kl);
    put(&b, "objective/scores", s->score);
    put(&b, "objective/scores_normalized", s->score_n);
    put(&b, "policy/approxkl_avg", s->approxkl);
    put(&b, "policy/clipfrac_avg", s->clipfrac);
    put(&b, "response/distinct_share", s->distinct);
    put(&b, "response/eos_share", s->eos_share);
    put(&b, "response/length", s->rlen);
    mf_buf_puts(&b, "\"stage\":");
    mf_json_write_str(&b, ctx->stage, strlen(ctx->stage));
    mf_buf_printf(&b, ",\"step\":%ld}\n", it + 1);
    int rc = write_line(P->mfp, &b, P->mpath, err);
    mf_buf_free(&b);
    return rc;
}

static char *decode(const ppo *P, const int32_t *ids, int n)
{
    char *s = NULL;
    size_t len;
    mf_err e;
    if (!P->tm.in.tok || mf_tok_decode_generated(P->tm.in.tok, ids, (size_t)n, 1, &s, &len, &e)) return strdup("");
    return s;
}

/* rollouts.jsonl: the first two rollouts of the iteration, decoded, with their token ids. */
static int log_rollouts(ppo *P, long it, mf_err *err)
{
    int rc = 0;
    for (int i = 0; i < P->c.rbs && i < 2 && !rc; i++) {
        const rollout *r = &P->R[i];
        char *prompt = decode(P, r->ids, r->plen), *resp = decode(P, r->ids + r->plen, r->rlen);
        mf_json *o = mf_json_new_object(), *ids = mf_json_new_array();
        mf_buf b = MF_BUF_INIT;
        int bad = !prompt || !resp || !o || !ids;
        for (int k = 0; !bad && k < r->plen + r->rlen; k++) bad = mf_json_push(ids, mf_json_new_int(r->ids[k]));
        bad = bad || mf_json_set(o, "ids", ids);
        ids = NULL;
        if (bad || mf_json_set(o, "step", mf_json_new_int(it + 1)) || mf_json_set(o, "prompt", mf_json_new_str(prompt)) ||
            mf_json_set(o, "prompt_len", mf_json_new_int(r->plen)) || mf_json_set(o, "response", mf_json_new_str(resp)) ||
            mf_json_set(o, "score", mf_json_new_float(r->score)) || mf_json_set(o, "eos", mf_json_new_bool(r->has_eos)) ||
            mf_json_write(&b, o, MF_JSON_SORTED) || mf_buf_putc(&b, '\n'))
            rc = nomem(err);
        else rc = write_line(P->sfp, &b, P->spath, err);
        mf_buf_free(&b);
        mf_json_free(ids);
        mf_json_free(o);
        free(prompt);
        free(resp);
    }
    return rc;
}

/* The most frequent response of the batch, decoded (for the collapse warning). */
static char *commonest_response(const ppo *P, int *count)
{
    int best = 0;
    *count = 0;
    for (int i = 0; i < P->c.rbs; i++) {
        int c = 0;
        for (int k = 0; k < P->c.rbs; k++)
            c += P->R[i].rlen == P->R[k].rlen &&
                 !memcmp(P->R[i].ids + P->R[i].plen, P->R[k].ids + P->R[k].plen, (size_t)P->R[i].rlen * sizeof(int32_t));
        if (c > *count) *count = c, best = i;
    }
    return decode(P, P->R[best].ids + P->R[best].plen, P->R[best].rlen);
}

/* Collapse: entropy or the share of distinct responses below its threshold. Warned once. */
static int check_collapse(ppo *P, const mf_stage_ctx *ctx, long it, const ppo_stats *s)
{
    if (P->collapsed || !(s->entropy < P->c.collapse_entropy || s->distinct < P->c.collapse_distinct)) return 0;
    P->collapsed = (int)it + 1;
    int count;
    char *common = commonest_response(P, &count);
    char msg[600];
    snprintf(msg, sizeof msg,
             "policy collapse at iteration %ld: entropy %.3f nats/token (collapse_entropy %.2f), %.0f%% distinct responses "
             "(collapse_distinct %.0f%%); %d of %d rollouts answered \"%.120s\"",
             it + 1, s->entropy, P->c.collapse_entropy, 100 * s->distinct, 100 * P->c.collapse_distinct, count, P->c.rbs,
             common ? common : "");
    free(common);
    mf_stage_warn(ctx, "%s", msg);
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "{\"stage\":");
    mf_json_write_str(&b, ctx->stage, strlen(ctx->stage));
    mf_buf_printf(&b, ",\"step\":%ld,\"warning\":", it + 1);
    mf_json_write_str(&b, msg, strlen(msg));
    mf_buf_puts(&b, "}\n");
    int rc = write_line(P->mfp, &b, P->mpath, ctx->err);
    mf_buf_free(&b);
    return rc;
}

static int ppo_log(ppo *P, const mf_stage_ctx *ctx, long it, long it0, const ppo_stats *s, double t0, double *tokens)
{
    int rc;
    if ((rc = log_metrics(P, ctx, it, s, P->kl_coef, ctx->err)) || (rc = log_rollouts(P, it, ctx->err)) ||
        (rc = check_collapse(P, ctx, it, s)))
        return rc;
    P->kl_coef = mf_ppo_kl_update(P->kl_coef, s->kl, P->c.kl_target, P->c.kl_horizon, P->c.rbs);
    *tokens += s->tokens;
    double el = mf_monotonic() - t0, tps = el > 0 ? *tokens / el : 0;
    char msg[200];
    snprintf(msg, sizeof msg, "score %.4f kl %.4f entropy %.3f distinct %.2f length %.1f", s->score, s->kl, s->entropy,
             s->distinct, s->rlen);
    mf_stage_progress(ctx, it + 1, P->iters, s->loss, tps, el / (double)(it + 1 - it0) * (double)(P->iters - it - 1), msg);
    return 0;
}

static int ppo_checkpoint(ppo *P, const mf_stage_ctx *ctx, long it)
{
    long every = P->tc.checkpoint_every > 0 ? P->tc.checkpoint_every : (P->iters >= 10 ? P->iters / 10 : P->iters);
    if (!ctx->work_dir || (it + 1) % every != 0 || it + 1 >= P->iters) return 0;
    mf_trainer_state ns;
    memset(&ns, 0, sizeof ns);
    ns.step = it + 1;
    ns.cursor = P->cursor;
    ns.aux[0] = P->kl_coef;
    memcpy(ns.aux + 1, P->run, sizeof P->run);
    ns.aux[4] = P->collapsed;
    ns.n_aux = 5;
    int rc = mf_trainer_ckpt_save(ctx->work_dir, P->tm.in.model, P->opt, &ns, &P->cc, ctx->err);
    if (rc) return rc;
    if (mf_stage_stop_requested(ctx, it + 1))
        return mf_err_set(ctx->err, MF_EINTERRUPTED, "stopped after iteration %ld, as asked (the checkpoint is saved)",
                          it + 1);
    return 0;
}

/* ---------------------------------------------------------------- the end */

static int copy_file(const char *from, const char *dir, const char *name, mf_err *err)
{
    char *data = NULL, *dst = mf_path_join(dir, name);
    size_t len = 0;
    int rc = 0;
    if (!dst) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = mf_read_file(from, &data, &len, err))) goto out;
    rc = mf_write_file_atomic(dst, data ? data : "", len, 0644, err);
out:
    free(data);
    free(dst);
    return rc;
}

static int ppo_finish(ppo *P, mf_stage_ctx *ctx)
{
    int rc = 0;
    fclose(P->mfp);
    fclose(P->sfp);
    P->mfp = P->sfp = NULL;
    if (ctx->work_dir && ((rc = copy_file(P->mpath, ctx->out_dir, "metrics.jsonl", ctx->err)) ||
                          (rc = copy_file(P->spath, ctx->out_dir, "rollouts.jsonl", ctx->err))))
        return rc;
    /* the value head stays out of the saved policy */
    if ((rc = mf_model_set_trainable(P->tm.in.model, "score.weight", 0, ctx->err))) return rc;
    P->tm.no_head = 1;
    return mf_train_model_save(&P->tm, ctx, ctx->err);
}

int mf_stage_ppo_run(mf_stage_ctx *ctx)
{
    if (ctx->world_size > 1) /* its own loop (rollouts) has no data-parallel path yet */
        return mf_err_set(ctx->err, MF_EUNSUPPORTED,
                          "stage '%s': ppo does not run data-parallel yet (%d ranks); give it resources: {gpus: 1}",
                          ctx->stage, ctx->world_size);
    ppo P;
    mf_trainer_state st;
    memset(&P, 0, sizeof P);
    memset(&st, 0, sizeof st);
    double t0 = mf_monotonic(), tokens = 0;
    int rc = ppo_open(&P, ctx, &st);
    if (rc) goto out;
    for (long it = st.step; it < P.iters; it++) {
        ppo_stats s;
        memset(&s, 0, sizeof s);
        pick_prompts(&P, ctx);
        if ((rc = ppo_rollout(&P, ctx, it)) || (rc = ppo_score(&P, ctx->err, &s)) || (rc = ppo_advantages(&P, ctx->err, &s)) ||
            (rc = ppo_update(&P, ctx, it, &s)) || (rc = ppo_log(&P, ctx, it, st.step, &s, t0, &tokens)) ||
            (rc = ppo_checkpoint(&P, ctx, it)))
            goto out;
    }
    rc = ppo_finish(&P, ctx);
out:
    ppo_free(&P);
    return rc;
}
