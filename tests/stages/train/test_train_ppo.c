/*
 * tests/stages/train/test_train_ppo.c — ppo: GAE and the clipped loss against
 * hand-derived values; one update against TRL PPOTrainer's formulas (torch
 * fixture); resume == uninterrupted; and end to end: a policy SFT'd to answer
 * with a mix of 的 and 了, a reward model trained to prefer more 的, and PPO
 * (top_k 2 rollouts, so only the two tokens the policy favours compete)
 * raising 的's share of sampled answer tokens by > 0.1 (0.375 -> 0.56-0.66
 * measured with gcc, clang and ASan builds).
 */
#include "tests/harness.h"
#include "tests/stages/ttest.h"

#include "modelio/model_open.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"

/* GAE with γ = 0.9, λ = 0.8 on three steps, computed by hand:
 * δ2 = 1 - 0.3 = 0.7; δ1 = 0 + 0.9*0.3 - 0.2 = 0.07; δ0 = 0.5 + 0.9*0.2 - 0.1 = 0.58
 * A2 = 0.7; A1 = 0.07 + 0.72*0.7 = 0.574; A0 = 0.58 + 0.72*0.574 = 0.99328. */
TEST(test_train_ppo_gae_matches_hand_values)
{
    float r[3] = {0.5f, 0.0f, 1.0f}, v[3] = {0.1f, 0.2f, 0.3f}, a[3], ret[3];
    mf_ppo_gae(3, r, v, 0.9, 0.8, a, ret);
    CHECK_NEAR(a[2], 0.7, 1e-6, 1e-6);
    CHECK_NEAR(a[1], 0.574, 1e-6, 1e-6);
    CHECK_NEAR(a[0], 0.99328, 1e-6, 1e-6);
    CHECK_NEAR(ret[0], 0.99328 + 0.1, 1e-6, 1e-6);
}

/* Clipping: with A > 0 and ratio above 1+ε the policy gradient is zero; inside it is -A·ρ. */
TEST(test_train_ppo_clipped_loss_gradients)
{
    double dl, dv, pg, vf;
    double L = mf_ppo_token_loss(log(1.5), 0, 2.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.5, &dl, &dv, &pg, &vf);
    CHECK_NEAR(pg, -2.0 * 1.2, 1e-12, 1e-12); /* max(-3, -2.4) */
    CHECK_NEAR(dl, 0, 0, 1e-15);
    /* value: v = 0, old 0, R = 1: both terms 1 -> 0.5; gradient of the unclipped term (v - R) = -1, weighted 0.5 */
    CHECK_NEAR(vf, 0.5, 1e-12, 1e-12);
    CHECK_NEAR(dv, -0.5, 1e-12, 1e-12);
    CHECK_NEAR(L, pg + 0.5 * vf, 1e-12, 1e-12);
    mf_ppo_token_loss(log(1.1), 0, 2.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.5, &dl, &dv, &pg, &vf);
    CHECK_NEAR(dl, -2.0 * 1.1, 1e-12, 1e-12);
    /* A < 0 and ratio below 1-ε: clipped, zero gradient */
    mf_ppo_token_loss(log(0.5), 0, -1.0, 0.0, 0.0, 0.0, 0.2, 0.2, 0.5, &dl, &dv, &pg, &vf);
    CHECK_NEAR(dl, 0, 0, 1e-15);
    CHECK_NEAR(pg, 0.8, 1e-12, 1e-12);
}

/* The adaptive KL controller (Ziegler et al. 2019, TRL <= 0.11 AdaptiveKLController.update):
 *   coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon. */
TEST(test_train_ppo_adaptive_kl_controller_matches_hand_values)
{
    CHECK_NEAR(mf_ppo_kl_update(0.2, 9, 6, 10000, 256), 0.2 * (1 + 0.2 * 256 / 10000.0), 1e-15, 0); /* error 0.5 -> 0.2 */
    CHECK_NEAR(mf_ppo_kl_update(0.2, 3, 6, 10000, 256), 0.2 * (1 - 0.2 * 256 / 10000.0), 1e-15, 0);
    CHECK_NEAR(mf_ppo_kl_update(0.2, 6.6, 6, 100, 8), 0.2 * (1 + 0.1 * 8 / 100.0), 1e-12, 0);
    CHECK_NEAR(mf_ppo_kl_update(0.05, 30, 0, 10000, 8), 0.05, 0, 0); /* target 0: fixed */
}

/* Welford's running mean / M2, against the two-pass values of {1, 2, 4, 7}: mean 3.5, M2 = 21. */
TEST(test_train_ppo_running_reward_statistics)
{
    double st[3] = {0, 0, 0}, xs[4] = {1, 2, 4, 7};
    for (int k = 0; k < 4; k++) mf_ppo_running_add(st, xs[k]);
    CHECK_NEAR(st[0], 4, 0, 0);
    CHECK_NEAR(st[1], 3.5, 1e-15, 0);
    CHECK_NEAR(st[2], 21, 1e-14, 0);
}

static const char *write_lines(const char *dir, const char *name, const char *const *lines, int n)
{
    const char *p = tt_path(dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
    return p;
}

/* Share of token id `marker` among the answer tokens (EOS excluded) sampled of the model in dir to the prompts' questions. */
static double marker_share(const char *dir, int32_t marker)
{
    mf_modelio_input mi;
    mf_err err;
    mf_err_clear(&err);
    if (mf_modelio_open(&mi, dir, NULL, 0, NULL, 0, &err)) return -1;
    static const char *qs[] = {"Human: 头痛怎么办\nAssistant: ", "Human: 发烧了\nAssistant: ", "Human: 咳嗽\nAssistant: ",
                               "Human: 胃疼\nAssistant: "};
    int32_t *ids[4];
    int plen[4];
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        mf_tok_encode(mi.tok, qs[i], strlen(qs[i]), 0, &ids[i], &n, NULL);
        plen[i] = (int)n;
    }
    int32_t out[4 * 8];
    float lp[4 * 8];
    int olen[4];
    double hit = 0, tot = 0;
    for (int rep = 0; rep < 4; rep++) {
        int32_t eos = mf_tok_eos_id(mi.tok);
        mf_k_gen_config gc = {8, 1.0f, 2, 1.0f, &eos, 1, 0, (uint64_t)(100 + rep), 1}; /* top_k 2, as the rollouts */
        if (mf_model_generate(mi.model, 4, (const int32_t *const *)ids, plen, &gc, out, lp, olen, &err)) return -1;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < olen[i]; j++) {
                if (out[i * 8 + j] == eos) continue;
                hit += out[i * 8 + j] == marker;
                tot++;
            }
    }
    for (int i = 0; i < 4; i++) free(ids[i]);
    mf_modelio_input_free(&mi);
    return tot ? hit / tot : -1;
}

TEST(test_train_ppo_raises_marker_token_preferred_by_reward_model)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    static const char *sft[] = {
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"头痛怎么办\"},{\"from\":\"gpt\",\"value\":\"的了了的了的了了\"}]}",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"发烧了\"},{\"from\":\"gpt\",\"value\":\"了的了了的了的了\"}]}",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"咳嗽\"},{\"from\":\"gpt\",\"value\":\"了了的了了的的了\"}]}",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"胃疼\"},{\"from\":\"gpt\",\"value\":\"的了了了的了了的\"}]}"};
    /* the reward model prefers more 的 over more 了 (equal lengths, either token last, so neither length
     * nor the last token is the cue; the template has no EOS, so answers are never cut short) */
    static const char *pref[] = {
        "{\"prompt\":\"头痛怎么办\",\"chosen\":\"的的的的的的的了\",\"rejected\":\"了了了了了了了的\"}",
        "{\"prompt\":\"发烧了\",\"chosen\":\"的的了的的的了的\",\"rejected\":\"了了的了了了了了\"}",
        "{\"prompt\":\"咳嗽\",\"chosen\":\"的了的的的的的了\",\"rejected\":\"了的了了了了了的\"}",
        "{\"prompt\":\"胃疼\",\"chosen\":\"的的的的了的的的\",\"rejected\":\"了了了了的了了了\"}",
        "{\"prompt\":\"头痛怎么办\",\"chosen\":\"的的的了的的的的\",\"rejected\":\"了了了的了了了的\"}",
        "{\"prompt\":\"发烧了\",\"chosen\":\"的的的的的的了了\",\"rejected\":\"了了了了了了的的\"}",
        "{\"prompt\":\"咳嗽\",\"chosen\":\"的的了的的了的的\",\"rejected\":\"了的了了了了了了\"}",
        "{\"prompt\":\"胃疼\",\"chosen\":\"的了的的的的的了\",\"rejected\":\"了了了的了了了的\"}"};
    static const char *prompts[] = {"{\"prompt\":\"头痛怎么办\"}", "{\"prompt\":\"发烧了\"}", "{\"prompt\":\"咳嗽\"}",
                                    "{\"prompt\":\"胃疼\"}"};
    const char *sp = write_lines(d, "sft.jsonl", sft, 4), *pp = write_lines(d, "pref.jsonl", pref, 8),
               *qp = write_lines(d, "prompts.jsonl", prompts, 4);
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"template\": \"user=Human: {query}\\\\nAssistant: ||assistant={response}\", \"finetune\": \"full\", \"max_steps\": 25, \"batch_size\": 4, \"lr\": 0.01, \"lr_scheduler\": \"constant\"}",
                    tt_path(d, "sft"), NULL, "model", tt_path(d, "base"), "data", sp, NULL);
    if (rc) printf("    sft: %s\n", msg);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "rm",
                "{\"template\": \"user=Human: {query}\\\\nAssistant: ||assistant={response}\", \"finetune\": \"full\", \"max_steps\": 20, \"batch_size\": 8, \"lr\": 0.005, \"lr_scheduler\": \"constant\"}",
                tt_path(d, "rm"), NULL, "model", tt_path(d, "base"), "data", pp, NULL);
    if (rc) printf("    rm: %s\n", msg);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "ppo",
                "{\"template\": \"user=Human: {query}\\\\nAssistant: ||assistant={response}\", \"finetune\": \"lora\", \"lora\": {\"rank\": 8, \"alpha\": 16, \"target\": [\"all\"]}, \"max_steps\": 12, "
                "\"rollout_batch_size\": 8, \"mini_batch_size\": 4, \"ppo_epochs\": 4, \"max_new_tokens\": 8, \"top_k\": 2, "
                "\"lr\": 0.05, \"lr_scheduler\": \"constant\", \"kl_coef\": 0.05}",
                tt_path(d, "ppo"), NULL, "model", tt_path(d, "sft"), "reward", tt_path(d, "rm"), "data", qp, NULL);
    if (rc) printf("    ppo: %s\n", msg);
    REQUIRE(rc == 0);
    double rw[16], kl[16], ent[16];
    int n = tt_metric(tt_path(d, "ppo"), "objective/scores", 0, rw, 16);
    CHECK_INT(n, 12);
    CHECK_INT(tt_metric(tt_path(d, "ppo"), "objective/kl", 0, kl, 16), 12);
    CHECK_INT(tt_metric(tt_path(d, "ppo"), "objective/entropy", 0, ent, 16), 12);
    CHECK_NEAR(kl[0], 0, 0, 1e-4); /* first rollouts: policy == reference */
    double before = marker_share(tt_path(d, "sft"), 263), after = marker_share(tt_path(d, "ppo"), 263);
    printf("    reward %.3f -> %.3f, share of 的 %.3f -> %.3f\n", rw[0], rw[n - 1], before, after);
    CHECK(before >= 0 && after >= 0);
    CHECK(after > before + 0.1);
    CHECK(rw[n - 1] > rw[0]);
    CHECK(mf_is_file(tt_path(d, "ppo/adapter_model.safetensors")));
}

static double jat(const mf_json *a, int r, int t) { return mf_json_num(a->items[r]->items[t], NAN); }

/* One mini-batch update on fixed rollouts (two responses of 4 and 3 tokens) against TRL PPOTrainer's
 * compute_advantages + loss written out in torch (tests/stages/gen_train_fixtures.py). Tolerance 1e-5:
 * medflow keeps advantages and returns in float32. */
TEST(test_train_ppo_update_matches_trl_fixture)
{
    mf_json *j = NULL;
    REQUIRE(mf_json_parse_file(&j, tt_path(mf_test_root(), "tests/stages/fixtures/train/losses.json"), NULL) == 0);
    const mf_json *p = mf_json_get(j, "ppo");
    REQUIRE(p != NULL);
    const mf_json *lens = mf_json_get(p, "lens");
    double gamma = mf_json_get_num(p, "gamma", 0), lam = mf_json_get_num(p, "lam", 0);
    double clip = mf_json_get_num(p, "clip", 0), clip_v = mf_json_get_num(p, "clip_v", 0), vfc = mf_json_get_num(p, "vf_coef", 0);
    float rw[2][8], val[2][8], adv[2][8], ret[2][8];
    int n[2];
    float *rows[2] = {adv[0], adv[1]};
    for (int r = 0; r < 2; r++) {
        n[r] = (int)mf_json_int(lens->items[r], 0);
        for (int t = 0; t < n[r]; t++) {
            rw[r][t] = (float)jat(mf_json_get(p, "rewards"), r, t);
            val[r][t] = (float)jat(mf_json_get(p, "values"), r, t);
        }
        mf_ppo_gae(n[r], rw[r], val[r], gamma, lam, adv[r], ret[r]);
    }
    mf_ppo_whiten(rows, n, 2, 1);
    double ntok = n[0] + n[1], L = 0, PG = 0, VF = 0;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < n[r]; t++) {
            CHECK_NEAR(adv[r][t], jat(mf_json_get(p, "advantages"), r, t), 1e-5, 1e-5);
            CHECK_NEAR(ret[r][t], jat(mf_json_get(p, "returns"), r, t), 1e-5, 1e-5);
            double dl, dv, pg, vf;
            L += mf_ppo_token_loss(jat(mf_json_get(p, "new_logp"), r, t), jat(mf_json_get(p, "old_logp"), r, t), adv[r][t],
                                   jat(mf_json_get(p, "vpred"), r, t), val[r][t], ret[r][t], clip, clip_v, vfc, &dl, &dv,
                                   &pg, &vf) / ntok;
            PG += pg / ntok;
            VF += vf / ntok;
            CHECK_NEAR(dl / ntok, jat(mf_json_get(p, "dlogp"), r, t), 1e-5, 1e-6);
            CHECK_NEAR(dv / ntok, jat(mf_json_get(p, "dvpred"), r, t), 1e-5, 1e-6);
        }
    double CF = 0;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < n[r]; t++)
            CF += mf_ppo_clipped(jat(mf_json_get(p, "new_logp"), r, t), jat(mf_json_get(p, "old_logp"), r, t), adv[r][t], clip) / ntok;
    CHECK_NEAR(CF, mf_json_get_num(p, "pg_clipfrac", -1), 0, 1e-12);
    CHECK_NEAR(PG, mf_json_get_num(p, "pg_loss", 0), 1e-5, 1e-6);
    CHECK_NEAR(VF, mf_json_get_num(p, "vf_loss", 0), 1e-5, 1e-6);
    CHECK_NEAR(L, mf_json_get_num(p, "loss", 0), 1e-5, 1e-6);
    mf_json_free(j);
}

/* PPO stopped after its iteration-2 checkpoint and resumed ends with the weights of an uninterrupted run. */
TEST(test_train_ppo_resume_matches_uninterrupted_run)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    char src[1024];
    snprintf(src, sizeof src, "%s/preference/mismatched_answer_pairs.jsonl", MF_SHARED_DATA);
    const char *pref = dtest_head(src, 4, d, "pref.jsonl");
    int rc = tt_run(msg, sizeof msg, "rm", "{\"finetune\": \"full\", \"cutoff_len\": 32, \"max_steps\": 2, \"batch_size\": 4}",
                    tt_path(d, "rm"), NULL, "model", tt_path(d, "base"), "data", pref, NULL);
    REQUIRE(rc == 0);
    /* adaptive KL and running reward statistics: loop state the checkpoint must carry */
    const char *p = "{\"finetune\": \"lora\", \"max_steps\": 4, \"checkpoint_every\": 2, \"rollout_batch_size\": 2, "
                    "\"mini_batch_size\": 1, \"ppo_epochs\": 2, \"max_new_tokens\": 4, \"cutoff_len\": 24, \"lr\": 0.01, "
                    "\"kl_target\": 0.001, \"kl_horizon\": 4, \"reward_norm\": \"running\"}";
    rc = tt_run(msg, sizeof msg, "ppo", p, tt_path(d, "full"), tt_path(d, "w1"), "model", tt_path(d, "base"), "reward",
                tt_path(d, "rm"), "data", pref, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    tt_stop_after = 2;
    rc = tt_run(msg, sizeof msg, "ppo", p, tt_path(d, "part"), tt_path(d, "w2"), "model", tt_path(d, "base"), "reward",
                tt_path(d, "rm"), "data", pref, NULL);
    tt_stop_after = 0;
    CHECK_INT(rc, MF_EINTERRUPTED);
    rc = tt_run(msg, sizeof msg, "ppo", p, tt_path(d, "resumed"), tt_path(d, "w2"), "model", tt_path(d, "base"), "reward",
                tt_path(d, "rm"), "data", pref, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    CHECK(tt_same_file(tt_path(d, "full/adapter_model.safetensors"), tt_path(d, "resumed/adapter_model.safetensors")));
    double a[8];
    CHECK_INT(tt_metric(tt_path(d, "resumed"), "objective/scores", 0, a, 8), 4);
    CHECK(tt_same_file(tt_path(d, "full/metrics.jsonl"), tt_path(d, "resumed/metrics.jsonl")));
    double k[8];
    CHECK_INT(tt_metric(tt_path(d, "resumed"), "kl_coef", 0, k, 8), 4);
    CHECK(k[3] != k[0]); /* the controller moved the coefficient */
}

/* A tiny model, a reward model on 8 pairs (reward_stats.json from its 4 validation pairs) and the pairs'
 * prompts, in d: base/, rm/, pref.jsonl. */
static void small_rm(const char *d)
{
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    char src[1024];
    snprintf(src, sizeof src, "%s/preference/mismatched_answer_pairs.jsonl", MF_SHARED_DATA);
    const char *pref = dtest_head(src, 8, d, "pref.jsonl");
    int rc = tt_run(msg, sizeof msg, "rm",
                    "{\"finetune\": \"full\", \"cutoff_len\": 32, \"max_steps\": 2, \"batch_size\": 4, \"val_ratio\": 0.5, "
                    "\"min_accuracy\": 0}",
                    tt_path(d, "rm"), NULL, "model", tt_path(d, "base"), "data", pref, NULL);
    if (rc) printf("    rm: %s\n", msg);
    REQUIRE(rc == 0);
}

/* The reward model reads a response cut at max_new_tokens closed with EOS, as the answers it was trained
 * on: the logged score of an unclosed rollout is the RM's value of prompt + response + EOS, not of the
 * unclosed sequence (which is what PPO used to score, out of the RM's distribution). With reward_norm rm
 * the normalised score is (score - mean) / std of reward_stats.json. */
TEST(test_train_ppo_reward_model_reads_responses_closed_with_eos)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    small_rm(d);
    int rc = tt_run(msg, sizeof msg, "ppo",
                    "{\"finetune\": \"lora\", \"max_steps\": 1, \"rollout_batch_size\": 4, \"mini_batch_size\": 2, "
                    "\"ppo_epochs\": 1, \"max_new_tokens\": 3, \"cutoff_len\": 24, \"lr\": 0.01, \"reward_clip\": 0}",
                    tt_path(d, "ppo"), NULL, "model", tt_path(d, "base"), "reward", tt_path(d, "rm"), "data",
                    tt_path(d, "pref.jsonl"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    char *roll = dtest_out(tt_path(d, "ppo"), "rollouts.jsonl");
    REQUIRE(roll);
    mf_json *r = NULL;
    mf_err err;
    REQUIRE(mf_json_parse(&r, roll, strcspn(roll, "\n"), "rollouts", &err) == 0);
    free(roll);
    mf_modelio_input rm;
    REQUIRE(mf_modelio_open(&rm, tt_path(d, "rm"), NULL, 0, NULL, 0, &err) == 0);
    const mf_json *ids = mf_json_get(r, "ids");
    REQUIRE(ids && ids->n > 0 && ids->n < 60);
    int32_t seq[64];
    int n = (int)ids->n;
    for (int k = 0; k < n; k++) seq[k] = (int32_t)mf_json_int(ids->items[k], 0);
    CHECK(!mf_json_bool(mf_json_get(r, "eos"), 1)); /* 3 new tokens: cut */
    seq[n] = mf_tok_eos_id(rm.tok);
    mf_k_batch closed = {1, n + 1, seq, NULL, NULL}, open = {1, n, seq, NULL, NULL};
    mf_k_outputs o;
    REQUIRE(mf_model_forward(rm.model, &closed, MF_FWD_VALUES, &o, &err) == 0);
    double with_eos = o.reward[0];
    REQUIRE(mf_model_forward(rm.model, &open, MF_FWD_VALUES, &o, &err) == 0);
    CHECK_NEAR(mf_json_get_num(r, "score", NAN), with_eos, 1e-5, 1e-5);
    CHECK(fabs(o.reward[0] - with_eos) > 1e-4);
    mf_json *st = NULL;
    REQUIRE(mf_json_parse_file(&st, tt_path(d, "rm/reward_stats.json"), &err) == 0);
    double sc[2], sn[2];
    CHECK_INT(tt_metric(tt_path(d, "ppo"), "objective/scores", 0, sc, 2), 1);
    CHECK_INT(tt_metric(tt_path(d, "ppo"), "objective/scores_normalized", 0, sn, 2), 1);
    CHECK_NEAR(sn[0], (sc[0] - mf_json_get_num(st, "mean", 0)) / mf_json_get_num(st, "std", 1), 1e-6, 1e-6);
    mf_json_free(st);
    mf_json_free(r);
    mf_modelio_input_free(&rm);
}

/* A collapsed policy is a warning (once) in metrics.jsonl, with what the rollouts answered; here the
 * entropy threshold is set above any entropy the tiny model has, so it always fires. */
TEST(test_train_ppo_warns_once_of_a_collapsed_policy)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    small_rm(d);
    int rc = tt_run(msg, sizeof msg, "ppo",
                    "{\"finetune\": \"lora\", \"max_steps\": 2, \"rollout_batch_size\": 4, \"mini_batch_size\": 2, "
                    "\"ppo_epochs\": 1, \"max_new_tokens\": 3, \"cutoff_len\": 24, \"collapse_entropy\": 100}",
                    tt_path(d, "ppo"), NULL, "model", tt_path(d, "base"), "reward", tt_path(d, "rm"), "data",
                    tt_path(d, "pref.jsonl"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    char *m = dtest_out(tt_path(d, "ppo"), "metrics.jsonl");
    REQUIRE(m);
    const char *w = strstr(m, "\"warning\":\"policy collapse at iteration 1:");
    CHECK(w != NULL);
    CHECK(w && !strstr(w + 40, "policy collapse")); /* once */
    CHECK_CONTAINS(m, "rollouts answered");
    double ds[4];
    CHECK_INT(tt_metric(tt_path(d, "ppo"), "response/distinct_share", 0, ds, 4), 2);
    CHECK(ds[0] > 0 && ds[0] <= 1);
    free(m);
}
