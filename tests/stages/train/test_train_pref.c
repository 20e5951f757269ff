/*
 * tests/stages/train/test_train_pref.c — rm and dpo: the loss functions against
 * TRL-derived fixtures (tests/stages/gen_train_fixtures.py), and both kinds
 * end to end on a tiny model with preference pairs from /work/shared/data.
 */
#include "tests/harness.h"
#include "tests/stages/ttest.h"

#include "modelio/model_open.h"
#include "stages/kinds/training.h"

static const char *pref_data(const char *dir, int n)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/preference/mismatched_answer_pairs.jsonl", MF_SHARED_DATA);
    return dtest_head(src, (size_t)n, dir, "pref.jsonl");
}

static mf_json *fixture(void)
{
    mf_json *j = NULL;
    mf_json_parse_file(&j, tt_path(mf_test_root(), "tests/stages/fixtures/train/losses.json"), NULL);
    return j;
}

/* Tolerance 1e-12 relative: both sides are float64 evaluations of the same closed form. */
TEST(test_train_dpo_loss_and_grads_match_trl)
{
    mf_json *j = fixture();
    REQUIRE(j != NULL);
    const mf_json *a = mf_json_get(j, "dpo");
    REQUIRE(a && a->n >= 12);
    for (size_t i = 0; i < a->n; i++) {
        const mf_json *c = a->items[i];
        double dpc, dpr;
        double L = mf_dpo_loss(mf_json_get_num(c, "beta", 0), mf_json_get_num(c, "label_smoothing", 0),
                               mf_json_get_num(c, "pc", 0), mf_json_get_num(c, "pr", 0), mf_json_get_num(c, "rc", 0),
                               mf_json_get_num(c, "rr", 0), &dpc, &dpr);
        CHECK_NEAR(L, mf_json_get_num(c, "loss", 0), 1e-12, 1e-14);
        CHECK_NEAR(dpc, mf_json_get_num(c, "dpc", 0), 1e-12, 1e-14);
        CHECK_NEAR(dpr, mf_json_get_num(c, "dpr", 0), 1e-12, 1e-14);
    }
    mf_json_free(j);
}

/* The batch form with the RPO term (TRL loss_type [sigmoid, sft]): the NLL of the chosen tokens is a
 * mean over the batch's chosen tokens, so its gradient per token is -alpha / (all chosen tokens). */
TEST(test_train_dpo_batch_loss_with_rpo_term_matches_trl)
{
    mf_json *j = fixture();
    REQUIRE(j != NULL);
    const mf_json *a = mf_json_get(j, "dpo_batch");
    REQUIRE(a && a->n == 3);
    for (size_t i = 0; i < a->n; i++) {
        const mf_json *c = a->items[i];
        double v[5][3], gc[3], gr[3];
        const char *keys[5] = {"pc", "pr", "rc", "rr", "nc"};
        for (int k = 0; k < 5; k++)
            for (int p = 0; p < 3; p++) v[k][p] = mf_json_num(mf_json_get(c, keys[k])->items[p], 0);
        double L = mf_dpo_batch_loss(3, mf_json_get_num(c, "beta", 0), mf_json_get_num(c, "label_smoothing", 0),
                                     mf_json_get_num(c, "rpo_alpha", 0), v[0], v[1], v[2], v[3], v[4], gc, gr);
        CHECK_NEAR(L, mf_json_get_num(c, "loss", 0), 1e-12, 1e-14);
        for (int p = 0; p < 3; p++) {
            CHECK_NEAR(gc[p], mf_json_num(mf_json_get(c, "g_c")->items[p], 0), 1e-12, 1e-14);
            CHECK_NEAR(gr[p], mf_json_num(mf_json_get(c, "g_r")->items[p], 0), 1e-12, 1e-14);
        }
    }
    mf_json_free(j);
}

TEST(test_train_rm_loss_and_grads_match_trl)
{
    mf_json *j = fixture();
    REQUIRE(j != NULL);
    const mf_json *a = mf_json_get(j, "rm");
    REQUIRE(a && a->n >= 6);
    for (size_t i = 0; i < a->n; i++) {
        const mf_json *c = a->items[i];
        double dc, dr, L = mf_rm_loss(mf_json_get_num(c, "rc", 0), mf_json_get_num(c, "rr", 0), &dc, &dr);
        CHECK_NEAR(L, mf_json_get_num(c, "loss", 0), 1e-12, 1e-14);
        CHECK_NEAR(dc, mf_json_get_num(c, "dc", 0), 1e-12, 1e-14);
        CHECK_NEAR(dr, mf_json_get_num(c, "dr", 0), 1e-12, 1e-14);
    }
    mf_json_free(j);
}

/* rm (full): the pairwise loss falls by >= 30% over 10 steps on one fixed batch of 6 pairs; the output has a score head. */
TEST(test_train_rm_loss_falls_and_head_saved)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = pref_data(d, 6);
    int rc = tt_run(msg, sizeof msg, "rm",
                    "{\"finetune\": \"full\", \"cutoff_len\": 48, \"template\": \"chatml\", \"max_steps\": 10, "
                    "\"batch_size\": 8, \"lr\": 0.005, \"lr_scheduler\": \"constant\"}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[16], acc[16];
    int n = tt_metric(tt_path(d, "out"), "loss", 0, loss, 16);
    CHECK_INT(n, 10);
    CHECK(loss[n - 1] < 0.7 * loss[0]);
    CHECK_INT(tt_metric(tt_path(d, "out"), "accuracy", 0, acc, 16), 10);
    CHECK_NEAR(acc[n - 1], 1.0, 0, 1e-9);
    mf_modelio_input mi;
    mf_err err;
    mf_err_clear(&err);
    REQUIRE(mf_modelio_open(&mi, tt_path(d, "out"), NULL, 0, NULL, 0, &err) == 0);
    CHECK(mf_model_find_param(mi.model, "score.weight") != NULL);
    mf_modelio_input_free(&mi);
    char *cfg = dtest_out(tt_path(d, "out"), "config.json"); /* saved as HF sequence classification */
    CHECK_CONTAINS(cfg ? cfg : "", "ForSequenceClassification");
    free(cfg);
}

/* dpo on an sft-LoRA model (adapter input): at step 1 the policy equals the reference, so the loss is
 * exactly ln 2 — which holds only when the reference is base + adapter, not the bare base. The margin
 * then rises above 0 and the loss falls below ln 2; the reference cache is written to work_dir. */
static void dpo_on_adapter(const char *chain)
{
    const char *d = mf_test_tmpdir();
    char msg[4096], params[1024];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    char src[1024];
    snprintf(src, sizeof src, "%s/sft/internal_medicine_sharegpt.jsonl", MF_SHARED_DATA);
    const char *sft = dtest_head(src, 6, d, "sft.jsonl");
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"finetune\": \"lora\", \"cutoff_len\": 48, \"max_steps\": 4, \"batch_size\": 6, \"lr\": 0.05, "
                    "\"lora\": {\"rank\": 4, \"alpha\": 8}}",
                    tt_path(d, "sft"), NULL, "model", tt_path(d, "base"), "data", sft, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    const char *data = pref_data(d, 4);
    snprintf(params, sizeof params,
             "{\"finetune\": \"lora\", \"adapter_chain\": \"%s\", \"cutoff_len\": 48, \"max_steps\": 8, "
             "\"batch_size\": 4, \"lr\": 0.02, \"lr_scheduler\": \"constant\", \"beta\": 0.5, "
             "\"lora\": {\"rank\": 4, \"alpha\": 16, \"target\": [\"all\"]}}",
             chain);
    rc = tt_run(msg, sizeof msg, "dpo", params, tt_path(d, "dpo"), tt_path(d, "work"), "model", tt_path(d, "sft"),
                "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[16], margin[16], acc[16];
    int n = tt_metric(tt_path(d, "dpo"), "loss", 0, loss, 16);
    CHECK_INT(n, 8);
    CHECK_NEAR(loss[0], 0.6931471805599453, 1e-6, 1e-6);
    CHECK(loss[n - 1] < loss[0]);
    CHECK_INT(tt_metric(tt_path(d, "dpo"), "rewards/margins", 0, margin, 16), 8);
    CHECK_NEAR(margin[0], 0, 0, 1e-5);
    CHECK(margin[n - 1] > 0.05);
    CHECK_INT(tt_metric(tt_path(d, "dpo"), "rewards/accuracies", 0, acc, 16), 8);
    CHECK(acc[n - 1] >= 0.75);
    CHECK(mf_is_file(tt_path(d, "work/ref_logps.bin")));
    /* the output is an adapter usable as a model input */
    mf_modelio_input mi;
    mf_err err;
    mf_err_clear(&err);
    rc = mf_modelio_open(&mi, tt_path(d, "dpo"), NULL, 0, NULL, 0, &err);
    if (rc) {
        mf_err_str(&err, msg, sizeof msg);
        printf("    %s\n", msg);
    }
    CHECK_INT(rc, 0);
    mf_modelio_input_free(&mi);
}

TEST(test_train_dpo_merge_chain_reference_is_whole_input_model) { dpo_on_adapter("merge"); }
TEST(test_train_dpo_continue_chain_reference_is_whole_input_model) { dpo_on_adapter("continue"); }

/* An answer cut to the length limits loses its EOS in the template (template.h); the rm kind ends it with
 * EOS again, so the reward is always read at an EOS. Before this, the reward model learned "ends without
 * EOS" as a feature (cut answers are the long ones: 27% of the shipped chosen vs 38% of the rejected
 * answers at cutoff_len 160) and scored PPO's cut rollouts ~1.0 lower than closed ones, which taught the
 * policy to answer "。" and stop. */
TEST(test_train_rm_closes_cut_answers_with_eos)
{
    /* a: closed by the template; b: cut, it lost its EOS; c: cut, one token; d: a template without EOS */
    int32_t a[] = {5, 6, 7, 1}, la[] = {-100, -100, 7, 1}, b[] = {5, 6, 7, 8}, lb[] = {-100, 6, 7, 8}, c[] = {9}, d[] = {5, 6};
    mf_train_data_seq v[4] = {{a, la, 4, 2, 0}, {b, lb, 4, 1, 1}, {c, c, 1, 0, 1}, {d, d, 2, 1, 0}};
    mf_train_data_set s = {v, 4, 4, 0, 1};
    CHECK_INT(mf_rm_close_with_eos(&s), 2);
    CHECK_INT(b[3], 1);
    CHECK_INT(lb[3], 1);
    CHECK_INT(a[2], 7);
    CHECK_INT(c[0], 1);
    CHECK_INT(d[1], 6);
    CHECK_INT(mf_rm_close_with_eos(&s), 0);
    /* through the loader: with cutoff_len 24 the long answers are cut and flagged */
    const char *dir = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(dir, msg, sizeof msg) == 0);
    mf_modelio_input mi;
    mf_err err;
    REQUIRE(mf_modelio_open(&mi, tt_path(dir, "base"), NULL, 0, NULL, 0, &err) == 0);
    mf_json *params = NULL;
    REQUIRE(mf_json_parse(&params, "{\"cutoff_len\": 24}", strlen("{\"cutoff_len\": 24}"), "p", &err) == 0);
    const char *paths[1] = {pref_data(dir, 6)};
    mf_stage_input in = {"data", paths, NULL, 1};
    mf_stage_ctx ctx = {.stage = "rm", .kind = mf_kind_find("rm"), .params = params, .inputs = &in, .n_inputs = 1,
                        .out_dir = dir, .progress_fd = -1, .err = &err, .devices = "", .rendezvous = ""};
    mf_train_data_opts o;
    mf_train_data_opts_from_ctx(&o, &ctx, MF_TRAIN_DATA_PREF);
    mf_train_data_set tr, va;
    REQUIRE(mf_train_data_load(&tr, &va, &ctx, mi.tok, &o, &err) == 0);
    size_t lost = 0;
    for (size_t i = 0; i < tr.n; i++) lost += tr.v[i].lost_eos && tr.v[i].ids[tr.v[i].len - 1] != tr.eos;
    CHECK(lost > 0);
    CHECK_INT(mf_rm_close_with_eos(&tr), lost);
    for (size_t i = 0; i < tr.n; i++) CHECK_INT(tr.v[i].ids[tr.v[i].len - 1], tr.eos);
    mf_train_data_set_free(&tr);
    mf_train_data_set_free(&va);
    mf_json_free(params);
    mf_modelio_input_free(&mi);
}

/* The reward model must reach min_accuracy on its validation pairs, or the stage fails saying so; with
 * min_accuracy 0 it is kept with a warning line in metrics.jsonl. reward_stats.json holds the mean and std
 * of the validation rewards (PPO's normalisation). One step of lr 0 cannot learn: accuracy stays ~chance. */
TEST(test_train_rm_fails_below_min_accuracy_and_writes_reward_stats)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = pref_data(d, 40);
    const char *p = "{\"finetune\": \"full\", \"cutoff_len\": 48, \"template\": \"chatml\", \"max_steps\": 1, "
                    "\"batch_size\": 4, \"lr\": 0, \"val_ratio\": 0.5, \"min_accuracy\": 0.99}";
    int rc = tt_run(msg, sizeof msg, "rm", p, tt_path(d, "a"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    CHECK_INT(rc, MF_EFAILED);
    CHECK_CONTAINS(msg, "validation pairwise accuracy of");
    CHECK_CONTAINS(msg, "below min_accuracy 0.99");
    CHECK_CONTAINS(msg, "set min_accuracy: 0 to keep it anyway");
    CHECK(!mf_is_file(tt_path(d, "a/model.safetensors")));
    rc = tt_run(msg, sizeof msg, "rm",
                "{\"finetune\": \"full\", \"cutoff_len\": 48, \"template\": \"chatml\", \"max_steps\": 1, "
                "\"batch_size\": 4, \"lr\": 0, \"val_ratio\": 0.5, \"min_accuracy\": 0}",
                tt_path(d, "b"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    char *m = dtest_out(tt_path(d, "b"), "metrics.jsonl");
    CHECK_CONTAINS(m, "near chance (min_accuracy: 0 kept it)");
    free(m);
    mf_json *st = NULL;
    mf_err err;
    REQUIRE(mf_json_parse_file(&st, tt_path(d, "b/reward_stats.json"), &err) == 0);
    CHECK_STR(mf_json_get_str(st, "split", ""), "val");
    CHECK(mf_json_get_int(st, "n", 0) >= 10 && mf_json_get_int(st, "n", 0) % 2 == 0); /* every answer of the val pairs */
    CHECK(mf_json_get_num(st, "std", 0) > 0);
    mf_json_free(st);
}

/* rpo_alpha keeps the chosen answers likely: after the same 8 steps, the chosen answers' log-probs are higher
 * with the NLL term than without it (plain DPO may push both answers down). */
TEST(test_train_dpo_rpo_alpha_keeps_the_chosen_answers_likely)
{
    const char *d = mf_test_tmpdir();
    char msg[4096], params[1024];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = pref_data(d, 4);
    double lc[2][16];
    for (int k = 0; k < 2; k++) {
        snprintf(params, sizeof params,
                 "{\"finetune\": \"full\", \"cutoff_len\": 48, \"max_steps\": 8, \"batch_size\": 4, \"lr\": 0.01, "
                 "\"lr_scheduler\": \"constant\", \"beta\": 0.5, \"rpo_alpha\": %s}", k ? "1.0" : "0");
        int rc = tt_run(msg, sizeof msg, "dpo", params, tt_path(d, k ? "rpo" : "plain"), NULL, "model", tt_path(d, "base"),
                        "data", data, NULL);
        if (rc) printf("    %s\n", msg);
        REQUIRE(rc == 0);
        CHECK_INT(tt_metric(tt_path(d, k ? "rpo" : "plain"), "logps/chosen", 0, lc[k], 16), 8);
    }
    CHECK_NEAR(lc[0][0], lc[1][0], 1e-9, 1e-9); /* the same start */
    printf("    logps/chosen after 8 steps: %.2f plain, %.2f with rpo_alpha 1\n", lc[0][7], lc[1][7]);
    CHECK(lc[1][7] > lc[0][7] + 1.0);
}
