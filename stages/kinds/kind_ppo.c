/*
 * stages/kinds/kind_ppo.c — PPO (TRL PPOTrainer's algorithm, one process, CPU).
 *
 * Per iteration (rollout_batch_size prompts, in a seeded per-epoch order):
 *   1. rollouts: sampled continuations from the policy with the KV cache
 *      (mf_model_generate; temperature/top_k/top_p/max_new_tokens params,
 *      always sampling; a row ends at EOS);
 *   2. a full forward of prompt+response under the policy (old log-probs,
 *      values from the value head = a score head on the policy trunk), the
 *      frozen reference (the whole input model: base + its adapters, loaded
 *      separately) and the reward model (score at the last token);
 *   3. per-token rewards r_j = -kl_coef * (logp_j - ref_j), plus the score on
 *      the last response token; GAE: δ_j = r_j + γ V_{j+1} - V_j,
 *      A_j = δ_j + γλ A_{j+1}, returns R = A + V; advantages whitened over the
 *      batch (optionally rewards too: whiten_rewards);
 *   4. ppo_epochs passes over shuffled mini-batches of mini_batch_size
 *      rollouts, one AdamW step each, minimising
 *        pg = mean max(-A ρ, -A clip(ρ, 1-ε, 1+ε)),  ρ = exp(logp - old)
 *        vf = 0.5 mean max((V - R)², (clip(V, V_old-ε_v, V_old+ε_v) - R)²)
 *        loss = pg + vf_coef * vf        (means over response tokens).
 * Metrics per iteration: loss, pg_loss, vf_loss, reward (mean score), kl
 * (mean over rollouts of Σ_j logp_j - ref_j), entropy (mean per response
 * token), response length. The value head is not saved with the policy.
 * Checkpoints (work_dir/ckpt, the trainer's format) every checkpoint_every
 * iterations: policy trainable params + value head, AdamW state, iteration;
 * prompt order and every draw are functions of (seed, iteration), so a
 * resumed run ends with the weights of an uninterrupted one.
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

typedef struct rollout {
    int plen, rlen;   /* prompt tokens, response tokens (>= 1) */
    int32_t *ids;     /* plen + rlen */
    float *old_logp, *ref_logp, *old_v, *adv, *ret; /* rlen each */
    double score;
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

typedef struct ppo {
    mf_train_model tm;    /* policy (+ value head) */
    mf_modelio_input ref, rwd;
    mf_train_data_set prompts;
    mf_train_data_batch tb;
    const mf_train_data_seq **seqs;
    mf_train_data_seq *tmp;       /* views of rollouts as sequences */
    float *g_logp, *g_val;
    size_t g_cap;
    int32_t pad, eos;
} ppo;

/* Batch of rollouts rows[0..n): prompt + response, labels on the response. */
static int roll_batch(ppo *P, rollout *const *rows, int n, mf_err *err)
{
    for (int i = 0; i < n; i++) {
        rollout *r = rows[i];
        mf_train_data_seq *s = &P->tmp[i];
        s->ids = r->ids;
        s->len = r->plen + r->rlen;
        s->prompt_len = r->plen;
        s->labels = realloc(s->labels, (size_t)s->len * sizeof *s->labels);
        if (!s->labels) return mf_err_set(err, MF_ENOMEM, "out of memory");
        for (int t = 0; t < s->len; t++) s->labels[t] = t >= r->plen ? r->ids[t] : MF_K_IGNORE_INDEX;
        P->seqs[i] = s;
    }
    int rc = mf_train_data_batch_make(&P->tb, P->seqs, n, P->pad, err);
    size_t need = (size_t)P->tb.b.B * (size_t)P->tb.b.T;
    if (!rc && need > P->g_cap) {
        float *a = realloc(P->g_logp, need * sizeof *a);
        if (a) P->g_logp = a;
        float *b = realloc(P->g_val, need * sizeof *b);
        if (b) P->g_val = b;
        if (!a || !b) return mf_err_set(err, MF_ENOMEM, "out of memory");
        P->g_cap = need;
    }
    return rc;
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

static int gen_rollouts(ppo *P, const mf_stage_ctx *ctx, const size_t *pidx, int n, rollout *R, uint64_t seed,
                        mf_err *err)
{
    mf_model *pol = P->tm.in.model;
    int max_new = (int)mf_trainer_int(ctx, "max_new_tokens");
    if (max_new < 1) max_new = 1;
    const int32_t **pr = calloc((size_t)n, sizeof *pr);
    int *plen = calloc((size_t)n, sizeof *plen), *olen = calloc((size_t)n, sizeof *olen);
    int32_t *oids = calloc((size_t)n * (size_t)max_new, sizeof *oids);
    float *olp = calloc((size_t)n * (size_t)max_new, sizeof *olp);
    int rc = (!pr || !plen || !olen || !oids || !olp) ? mf_err_set(err, MF_ENOMEM, "out of memory") : 0;
    for (int i = 0; !rc && i < n; i++) {
        pr[i] = P->prompts.v[pidx[i]].ids;
        plen[i] = P->prompts.v[pidx[i]].len;
    }
    double temp = mf_trainer_num(ctx, "temperature");
    mf_k_gen_config gc = {max_new, temp > 0 ? (float)temp : 1.0f, (int)mf_trainer_int(ctx, "top_k"),
                          (float)mf_trainer_num(ctx, "top_p"), &P->eos, P->eos >= 0, P->pad, seed, 1};
    if (gc.top_p <= 0) gc.top_p = 1;
    if (!rc) rc = mf_model_generate(pol, n, pr, plen, &gc, oids, olp, olen, err);
    for (int i = 0; !rc && i < n; i++) {
        rollout *r = &R[i];
        r->plen = plen[i];
        r->rlen = olen[i] > 0 ? olen[i] : 1;
        r->ids = malloc((size_t)(r->plen + r->rlen) * sizeof *r->ids);
        r->old_logp = calloc((size_t)r->rlen, sizeof(float));
        r->ref_logp = calloc((size_t)r->rlen, sizeof(float));
        r->old_v = calloc((size_t)r->rlen, sizeof(float));
        r->adv = calloc((size_t)r->rlen, sizeof(float));
        r->ret = calloc((size_t)r->rlen, sizeof(float));
        if (!r->ids || !r->old_logp || !r->ref_logp || !r->old_v || !r->adv || !r->ret) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            break;
        }
        memcpy(r->ids, pr[i], (size_t)r->plen * sizeof *r->ids);
        for (int j = 0; j < r->rlen; j++) r->ids[r->plen + j] = olen[i] > 0 ? oids[(size_t)i * max_new + j] : P->eos >= 0 ? P->eos : 0;
    }
    free(pr);
    free(plen);
    free(olen);
    free(oids);
    free(olp);
    return rc;
}

int mf_stage_ppo_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    if (ctx->world_size > 1) /* its own loop (rollouts) has no data-parallel path yet */
        return mf_err_set(err, MF_EUNSUPPORTED,
                          "stage '%s': ppo does not run data-parallel yet (%d ranks); give it resources: {gpus: 1}",
                          ctx->stage, ctx->world_size);
    ppo P;
    memset(&P, 0, sizeof P);
    mf_trainer_config tc;
    int rc = mf_trainer_config_from_ctx(&tc, ctx, err);
    if (rc) return rc;
    const double kl_coef = mf_trainer_num(ctx, "kl_coef"), gamma = mf_trainer_num(ctx, "gamma"), lam = mf_trainer_num(ctx, "gae_lambda");
    const double clip = mf_trainer_num(ctx, "clip_range"), clip_v = mf_trainer_num(ctx, "clip_range_value"), vf_coef = mf_trainer_num(ctx, "vf_coef");
    const int ppo_epochs = (int)mf_trainer_int(ctx, "ppo_epochs"), whiten_r = mf_trainer_bool(ctx, "whiten_rewards");
    int mbs = (int)mf_trainer_int(ctx, "mini_batch_size"), rbs = (int)mf_trainer_int(ctx, "rollout_batch_size");
    if (mbs < 1) mbs = 1;
    if (rbs < 1) rbs = 1;

    rc = mf_train_model_open(&P.tm, ctx, err);
    /* the frozen reference: the whole input model, opened on its own */
    if (!rc) rc = mf_stage_open_model(&P.ref, ctx, "model", 0, err);
    if (!rc) rc = mf_stage_open_model(&P.rwd, ctx, "reward", 0, err);
    if (!rc && !mf_model_find_param(P.rwd.model, "score.weight"))
        rc = mf_err_set(err, MF_EINVAL, "stage '%s': input 'reward' has no score head (expected the output of an rm stage)", ctx->stage);
    if (!rc && mf_model_get_config(P.rwd.model)->vocab_size != mf_model_get_config(P.tm.in.model)->vocab_size)
        rc = mf_err_set(err, MF_EINVAL, "stage '%s': the reward model's vocabulary (%d) differs from the policy's (%d)",
                        ctx->stage, mf_model_get_config(P.rwd.model)->vocab_size, mf_model_get_config(P.tm.in.model)->vocab_size);
    mf_train_data_opts o;
    mf_train_data_opts_from_ctx(&o, ctx, MF_TRAIN_DATA_PROMPT);
    o.val_ratio = 0;
    if (!rc) rc = mf_train_data_load(&P.prompts, NULL, ctx, P.tm.in.tok, &o, err);
    if (!rc) {
        int room = mf_train_model_max_len(&P.tm, ctx) - (int)mf_trainer_int(ctx, "max_new_tokens");
        if (room < 1)
            rc = mf_err_set(err, MF_EINVAL, "stage '%s': max_new_tokens leaves no room for a prompt in the model's positions", ctx->stage);
        else mf_train_data_clip(&P.prompts, room, 1);
    }
    if (!rc && P.prompts.n == 0) rc = mf_err_set(err, MF_EINVAL, "stage '%s': no prompts in 'data'", ctx->stage);
    if (!rc) rc = mf_train_model_apply_finetune(&P.tm, ctx, err);
    mf_model *pol = P.tm.in.model;
    if (!rc && !mf_model_find_param(pol, "score.weight")) rc = mf_model_add_score_head(pol, ctx->seed ^ 0x5eed, err);
    if (!rc) rc = mf_model_set_trainable(pol, "score.weight", 1, err);
    P.pad = P.tm.in.tok ? mf_tok_pad_id(P.tm.in.tok) : -1;
    P.eos = P.tm.in.tok ? mf_tok_eos_id(P.tm.in.tok) : -1;
    if (P.pad < 0) P.pad = P.eos >= 0 ? P.eos : 0;

    size_t n = P.prompts.n;
    long iters = tc.max_steps > 0 ? tc.max_steps : (long)ceil(tc.epochs * (double)((n + (size_t)rbs - 1) / (size_t)rbs) - 1e-9);
    if (iters < 1) iters = 1;
    long mb_per_iter = (long)ppo_epochs * ((rbs + mbs - 1) / mbs);
    tc.opt.total_steps = iters * mb_per_iter;
    tc.opt.warmup_steps = (long)ceil(tc.warmup_ratio * (double)tc.opt.total_steps);
    mf_k_adamw *opt = NULL;
    if (!rc) rc = mf_k_adamw_new(&opt, pol, &tc.opt, err);

    rollout *R = calloc((size_t)rbs, sizeof *R);
    rollout **rows = calloc((size_t)rbs, sizeof *rows);
    size_t *perm = malloc(n * sizeof *perm), *pidx = malloc((size_t)rbs * sizeof *pidx);
    int *order = malloc((size_t)rbs * sizeof *order), *lens = malloc((size_t)rbs * sizeof *lens);
    float **vv = malloc((size_t)rbs * sizeof *vv);
    P.seqs = calloc((size_t)rbs, sizeof *P.seqs);
    P.tmp = calloc((size_t)rbs, sizeof *P.tmp);
    if (!rc && (!R || !rows || !perm || !pidx || !order || !lens || !vv || !P.seqs || !P.tmp))
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    /* resume */
    mf_trainer_config cc = tc; /* what a checkpoint must agree with */
    cc.batch_size = rbs;
    cc.grad_accum = mbs;
    mf_trainer_state st = {0, 0};
    if (!rc && ctx->work_dir) {
        rc = mf_mkdir_p(ctx->work_dir, 0755, err);
        int got = rc ? 0 : mf_trainer_ckpt_load(ctx->work_dir, pol, opt, &st, &cc, err);
        if (got < 0) rc = got;
        else if (got) {
            char msg[128];
            snprintf(msg, sizeof msg, "resumed from the checkpoint of iteration %ld", st.step);
            mf_stage_progress(ctx, st.step, iters, NAN, NAN, NAN, msg);
        }
    }
    long ckpt_every = tc.checkpoint_every > 0 ? tc.checkpoint_every : (iters >= 10 ? iters / 10 : iters);
    char *mpath = rc ? NULL : mf_path_join(ctx->work_dir ? ctx->work_dir : ctx->out_dir, "metrics.jsonl");
    if (mpath && st.step && (rc = mf_trainer_metrics_truncate(mpath, st.step, err))) {
        free(mpath);
        mpath = NULL;
    }
    FILE *mfp = mpath ? fopen(mpath, st.step ? "ab" : "wb") : NULL;
    if (!rc && !mfp) rc = mf_err_errno(err, MF_EIO, "open %s", mpath ? mpath : "metrics.jsonl");
    if (!rc) {
        char msg[200];
        snprintf(msg, sizeof msg, "%zu prompts, %ld iterations of %d rollouts, %zu trainable parameters", n, iters, rbs,
                 mf_model_count(pol, 1));
        mf_stage_progress(ctx, 0, iters, NAN, NAN, NAN, msg);
    }
    unsigned long long cursor = (unsigned long long)st.step * (unsigned long long)rbs, cur_epoch = (unsigned long long)-1;
    double t0 = mf_monotonic(), tokens = 0;
    long it0 = st.step;
    for (long it = it0; !rc && it < iters; it++) {
        /* 1. prompts of this iteration */
        for (int i = 0; i < rbs; i++, cursor++) {
            unsigned long long e = cursor / n;
            if (e != cur_epoch) {
                for (size_t k = 0; k < n; k++) perm[k] = k;
                mf_rng r;
                mf_rng_seed(&r, ctx->seed ^ mf_mix64(e + 0x1234));
                mf_rng_shuffle(&r, perm, n);
                cur_epoch = e;
            }
            pidx[i] = perm[cursor % n];
        }
        for (int i = 0; i < rbs; i++) rollout_free(&R[i]);
        rc = gen_rollouts(&P, ctx, pidx, rbs, R, ctx->seed ^ mf_mix64((uint64_t)it + 77), err);
        /* 2. old log-probs / values, reference log-probs, scores, entropy */
        double ent = 0, ent_n = 0, kl = 0, score = 0, rlen = 0;
        for (int i = 0; i < rbs; i++) rows[i] = &R[i];
        mf_k_outputs out;
        if (!rc) rc = roll_batch(&P, rows, rbs, err);
        if (!rc) rc = mf_model_forward(pol, &P.tb.b, MF_FWD_LOGITS | MF_FWD_VALUES, &out, err);
        int T = P.tb.b.T;
        for (int i = 0; !rc && i < rbs; i++)
            for (int j = 0; j < R[i].rlen; j++) {
                size_t pos = (size_t)i * T + (size_t)(R[i].plen + j - 1);
                R[i].old_logp[j] = out.logp[pos];
                R[i].old_v[j] = out.values[pos];
                ent += token_entropy(out.logits + pos * (size_t)out.V, out.V);
                ent_n++;
            }
        if (!rc) rc = mf_model_forward(P.ref.model, &P.tb.b, MF_FWD_LOGITS, &out, err);
        for (int i = 0; !rc && i < rbs; i++)
            for (int j = 0; j < R[i].rlen; j++) R[i].ref_logp[j] = out.logp[(size_t)i * T + (size_t)(R[i].plen + j - 1)];
        if (!rc) rc = mf_model_forward(P.rwd.model, &P.tb.b, MF_FWD_VALUES, &out, err);
        /* 3. rewards, GAE */
        for (int i = 0; !rc && i < rbs; i++) {
            R[i].score = out.reward[i];
            score += R[i].score / rbs;
            rlen += (double)R[i].rlen / rbs;
            tokens += R[i].plen + R[i].rlen;
            for (int j = 0; j < R[i].rlen; j++) {
                double d = R[i].old_logp[j] - R[i].ref_logp[j];
                kl += d / rbs;
                R[i].adv[j] = (float)(-kl_coef * d); /* rewards, temporarily in adv */
            }
            R[i].adv[R[i].rlen - 1] += (float)R[i].score;
            vv[i] = R[i].adv;
            lens[i] = R[i].rlen;
        }
        if (!rc && whiten_r) mf_ppo_whiten(vv, lens, rbs, 0);
        for (int i = 0; !rc && i < rbs; i++) {
            float *rw = malloc((size_t)R[i].rlen * sizeof *rw);
            if (!rw) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                break;
            }
            memcpy(rw, R[i].adv, (size_t)R[i].rlen * sizeof *rw);
            mf_ppo_gae(R[i].rlen, rw, R[i].old_v, gamma, lam, R[i].adv, R[i].ret);
            free(rw);
        }
        if (!rc) mf_ppo_whiten(vv, lens, rbs, 1);
        /* 4. PPO epochs over mini-batches */
        double sum_loss = 0, sum_pg = 0, sum_vf = 0, nmb = 0, gn_last = 0;
        for (int pe = 0; !rc && pe < ppo_epochs; pe++) {
            mf_rng orng; /* a function of (seed, iteration, epoch): resumable */
            mf_rng_seed(&orng, ctx->seed ^ mf_mix64((uint64_t)it * 1024u + (uint64_t)pe + 0x9090));
            for (int i = 0; i < rbs; i++) order[i] = i;
            for (int i = rbs - 1; i > 0; i--) {
                int k = (int)mf_rng_below(&orng, (uint64_t)i + 1), tmp = order[i];
                order[i] = order[k];
                order[k] = tmp;
            }
            for (int s = 0; !rc && s < rbs; s += mbs) {
                int m = rbs - s < mbs ? rbs - s : mbs;
                for (int i = 0; i < m; i++) rows[i] = &R[order[s + i]];
                rc = roll_batch(&P, rows, m, err);
                mf_model_zero_grad(pol);
                if (!rc) rc = mf_model_forward(pol, &P.tb.b, MF_FWD_LOGITS | MF_FWD_VALUES | MF_FWD_TRAIN, &out, err);
                if (rc) break;
                int Tm = P.tb.b.T;
                size_t cells = (size_t)m * (size_t)Tm;
                memset(P.g_logp, 0, cells * sizeof(float));
                memset(P.g_val, 0, cells * sizeof(float));
                double ntok = 0, L = 0, PG = 0, VF = 0;
                for (int i = 0; i < m; i++) ntok += rows[i]->rlen;
                for (int i = 0; i < m; i++) {
                    rollout *r = rows[i];
                    for (int j = 0; j < r->rlen; j++) {
                        size_t pos = (size_t)i * Tm + (size_t)(r->plen + j - 1);
                        double dl, dv, pg, vf;
                        L += mf_ppo_token_loss(out.logp[pos], r->old_logp[j], r->adv[j], out.values[pos], r->old_v[j],
                                               r->ret[j], clip, clip_v, vf_coef, &dl, &dv, &pg, &vf) / ntok;
                        PG += pg / ntok;
                        VF += vf / ntok;
                        P.g_logp[pos] = (float)(dl / ntok);
                        P.g_val[pos] = (float)(dv / ntok);
                    }
                }
                rc = mf_model_backward(pol, P.g_logp, P.g_val, err);
                if (!rc) rc = mf_k_adamw_step(opt, &gn_last, err);
                sum_loss += L;
                sum_pg += PG;
                sum_vf += VF;
                nmb++;
            }
        }
        if (rc) break;
        if (!isfinite(sum_loss)) {
            rc = mf_err_set(err, MF_EFAILED, "stage '%s': PPO loss is not finite at iteration %ld", ctx->stage, it + 1);
            break;
        }
        double el = mf_monotonic() - t0, tps = el > 0 ? tokens / el : 0;
        fprintf(mfp,
                "{\"entropy\":%.9g,\"grad_norm\":%.9g,\"kl\":%.9g,\"loss\":%.9g,\"lr\":%.9g,\"pg_loss\":%.9g,"
                "\"response_length\":%.9g,\"reward\":%.9g,\"stage\":\"%s\",\"step\":%ld,\"vf_loss\":%.9g}\n",
                ent_n ? ent / ent_n : 0, gn_last, kl, sum_loss / nmb,
                tc.opt.lr * mf_k_lr_factor(&tc.opt, mf_k_adamw_steps(opt)), sum_pg / nmb, rlen, score, ctx->stage, it + 1,
                sum_vf / nmb);
        fflush(mfp);
        char msg[160];
        snprintf(msg, sizeof msg, "reward %.4f kl %.4f entropy %.3f", score, kl, ent_n ? ent / ent_n : 0);
        mf_stage_progress(ctx, it + 1, iters, sum_loss / nmb, tps,
                          el / (double)(it + 1 - it0) * (double)(iters - it - 1), msg);
        if (ctx->work_dir && (it + 1) % ckpt_every == 0 && it + 1 < iters) {
            mf_trainer_state ns = {it + 1, cursor};
            if ((rc = mf_trainer_ckpt_save(ctx->work_dir, pol, opt, &ns, &cc, err))) break;
            if (mf_trainer_test_stop_after && it + 1 >= mf_trainer_test_stop_after) {
                rc = mf_err_set(err, MF_EINTERRUPTED, "stopped after iteration %ld (test hook)", it + 1);
                break;
            }
        }
    }
    if (mfp) fclose(mfp);
    if (!rc && ctx->work_dir) { /* the metrics into the artifact */
        char *data = NULL, *dst = mf_path_join(ctx->out_dir, "metrics.jsonl");
        size_t len = 0;
        rc = dst ? mf_read_file(mpath, &data, &len, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
        if (!rc) rc = mf_write_file_atomic(dst, data ? data : "", len, 0644, err);
        free(data);
        free(dst);
    }
    /* the value head stays out of the saved policy */
    if (!rc) rc = mf_model_set_trainable(pol, "score.weight", 0, err);
    if (!rc) P.tm.no_head = 1;
    if (!rc) rc = mf_train_model_save(&P.tm, ctx, err);
    for (int i = 0; R && i < rbs; i++) rollout_free(&R[i]);
    for (int i = 0; P.tmp && i < rbs; i++) free(P.tmp[i].labels);
    free(R);
    free(rows);
    free(perm);
    free(pidx);
    free(order);
    free(lens);
    free(vv);
    free(P.seqs);
    free(P.tmp);
    free(P.g_logp);
    free(P.g_val);
    free(mpath);
    mf_train_data_batch_free(&P.tb);
    mf_train_data_set_free(&P.prompts);
    mf_k_adamw_free(opt);
    mf_modelio_input_free(&P.ref);
    mf_modelio_input_free(&P.rwd);
    mf_train_model_free(&P.tm);
    return rc;
}
