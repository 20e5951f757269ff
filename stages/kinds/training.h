/*
 * stages/kinds/training.h — run functions of the training stage kinds (registered
 * in stages/impls.c) and the few helpers their tests reach directly.
 */
#ifndef MF_TRAINING_H
#define MF_TRAINING_H

#include <stdint.h>

#include "kernels/model.h"
#include "stages/stage.h"
#include "stages/train/train_data.h"

/* Token-weighted mean next-token loss of a set (labels as in the set). */
int mf_lm_eval_set(mf_model *m, const mf_train_data_set *set, int bs, int32_t pad, double *loss, double *tokens, mf_err *err);

/* PPO: GAE over one response (rewards, values: n each) -> advantages, returns. */
void mf_ppo_gae(int n, const float *rewards, const float *values, double gamma, double lam, float *adv, float *ret);
/* PPO: TRL's masked_whiten over rows v[r][0..n[r]) (unbiased variance, eps 1e-8);
 * shift_mean 0 adds the mean back (rewards), 1 leaves it at 0 (advantages). */
void mf_ppo_whiten(float **v, const int *n, int rows, int shift_mean);
/* PPO: is the clipped branch of the policy loss active for this token (TRL's pg_clipfrac counts these)? */
int mf_ppo_clipped(double logp, double old_logp, double adv, double clip);
/* PPO: the adaptive KL controller (Ziegler et al. 2019; TRL AdaptiveKLController): the coefficient after
 * an iteration of n_steps rollouts whose KL was kl: coef * (1 + clip(kl/target - 1, ±0.2) * n_steps / horizon).
 * target <= 0: the coefficient stays fixed. */
double mf_ppo_kl_update(double coef, double kl, double target, double horizon, int n_steps);
/* PPO: Welford's running statistics st = {count, mean, M2} of the raw scores, with x added. */
void mf_ppo_running_add(double *st, double x);
/* PPO: one response token's clipped policy + value loss (TRL PPOTrainer) and
 * its gradients dL/dlogp, dL/dvalue; *pg, *vf the two parts (unweighted). */
double mf_ppo_token_loss(double logp, double old_logp, double adv, double v, double old_v, double ret, double clip,
                         double clip_v, double vf_coef, double *dlogp, double *dv, double *pg, double *vf);

/* ---- loss functions (TRL's definitions; checked against TRL fixtures) ---- */

/* DPO sigmoid loss of one pair from summed log-probs:
 *   d = beta * ((pc - rc) - (pr - rr))
 *   L = -(1 - ls) * log σ(d) - ls * log σ(-d)
 * *dpc = dL/dpc, *dpr = dL/dpr. Returns L. */
double mf_dpo_loss(double beta, double ls, double pc, double pr, double rc, double rr, double *dpc, double *dpr);
/* DPO over a micro-batch of n pairs, TRL DPOTrainer's loss_type [sigmoid, sft] with weights [1, alpha]
 * (alpha = rpo_alpha; RPO, Pang et al. 2024):
 *   L = mean_i dpo(pc_i, pr_i, rc_i, rr_i) + alpha * (-Σ_i pc_i) / Σ_i nc_i
 * with nc_i the number of pair i's chosen answer tokens (the sft term is the mean NLL of the batch's
 * chosen tokens). g_c[i] / g_r[i] = dL/d(log-prob of any one chosen / rejected token of pair i). */
double mf_dpo_batch_loss(int n, double beta, double ls, double alpha, const double *pc, const double *pr,
                         const double *rc, const double *rr, const double *nc, double *g_c, double *g_r);
/* RM pairwise loss -log σ(r_c - r_r); *dc = dL/dr_c, *dr = dL/dr_r. */
double mf_rm_loss(double rc, double rr, double *dc, double *dr);
/* rm: an answer cut to the length limits that lost its closing EOS (lost_eos) gets EOS as its last
 * token again (OpenRLHF's reward dataset), so the reward is read at an EOS as for every uncut answer.
 * Returns how many were changed. */
size_t mf_rm_close_with_eos(mf_train_data_set *s);

#endif
