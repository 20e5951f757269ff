/* tests/stages/eval/test_metrics.c — scoring tokens and BLEU/GLEU/ROUGE against nltk and rouge-score.
 *
 * Fixtures: tests/stages/fixtures/metrics.json from gen_metric_fixtures.py (nltk 3.10.4,
 * rouge-score 0.1.2). Tolerance: 1e-6 absolute on the x100 scale — the C code does the
 * same double operations as the Python, so differences are a few ulps (the fsum in
 * nltk's BLEU is matched by a compensated sum). */
#include "tests/harness.h"
#include "stages/eval/metrics.h"
#include "common/json.h"

#include <stdlib.h>

static mf_json *load_fixture(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/stages/fixtures/metrics.json", mf_test_root());
    mf_json *v = NULL;
    mf_err err;
    if (mf_json_parse_file(&v, path, &err)) return NULL;
    return v;
}

TEST(test_metric_tokens_match_python_statement_of_tokenizer)
{
    mf_json *fx = load_fixture();
    REQUIRE(fx);
    mf_json *items = mf_json_get(fx, "items");
    REQUIRE(items && items->n >= 50);
    for (size_t i = 0; i < items->n; i++) {
        const char *fields[2][2] = {{"hyp", "hyp_tokens"}, {"ref", "ref_tokens"}};
        for (int f = 0; f < 2; f++) {
            const char *text = mf_json_get_str(items->items[i], fields[f][0], NULL);
            mf_json *want = mf_json_get(items->items[i], fields[f][1]);
            REQUIRE(text && want);
            mf_metric_tokens t;
            mf_err err;
            CHECK_OK(mf_metric_tokenize(&t, text, strlen(text), &err));
            CHECK_INT(t.n, want->n);
            for (size_t k = 0; k < t.n && k < want->n; k++) {
                char tok[256];
                snprintf(tok, sizeof tok, "%.*s", (int)t.len[k], t.text + t.off[k]);
                CHECK_STR(tok, want->items[k]->s);
            }
            mf_metric_tokens_free(&t);
        }
    }
    mf_json_free(fx);
}

TEST(test_metric_scores_match_nltk_and_rouge_score_fixtures)
{
    mf_json *fx = load_fixture();
    REQUIRE(fx);
    mf_json *items = mf_json_get(fx, "items"), *mean = mf_json_get(fx, "mean");
    REQUIRE(items && mean);
    mf_metric_acc acc;
    mf_metric_acc_init(&acc);
    for (size_t i = 0; i < items->n; i++) {
        const char *hyp = mf_json_get_str(items->items[i], "hyp", NULL);
        const char *ref = mf_json_get_str(items->items[i], "ref", NULL);
        mf_json *want = mf_json_get(items->items[i], "scores");
        REQUIRE(hyp && ref && want);
        mf_metric_scores s;
        mf_err err;
        CHECK_OK(mf_metric_score(&s, hyp, ref, &err));
        for (int k = 0; k < MF_M_COUNT; k++) {
            double w = mf_json_get_num(want, mf_metric_names[k], NAN);
            if (!(fabs(s.v[k] - w) <= 1e-6))
                mf_test_fail(__FILE__, __LINE__, "item %zu %s: got %.12g want %.12g (hyp \"%.60s\")", i,
                             mf_metric_names[k], s.v[k], w, hyp);
        }
        mf_metric_acc_add(&acc, &s);
    }
    mf_metric_scores m;
    mf_metric_acc_mean(&acc, &m);
    CHECK_INT(acc.n, items->n);
    for (int k = 0; k < MF_M_COUNT; k++)
        CHECK_NEAR(m.v[k], mf_json_get_num(mean, mf_metric_names[k], NAN), 0, 1e-6);
    mf_json_free(fx);
}

TEST(test_metric_tokenizer_splits_cjk_keeps_alnum_runs_and_drops_invalid_utf8)
{
    const char text[] = "Ｂ超\xff显示3.5cm囊肿，ACE-抑制剂";
    mf_metric_tokens t;
    mf_err err;
    CHECK_OK(mf_metric_tokenize(&t, text, strlen(text), &err));
    const char *want[] = {"b", "超", "显", "示", "3", "5cm", "囊", "肿", "ace", "抑", "制", "剂"};
    CHECK_INT(t.n, sizeof want / sizeof *want);
    for (size_t k = 0; k < t.n && k < sizeof want / sizeof *want; k++) {
        char tok[64];
        snprintf(tok, sizeof tok, "%.*s", (int)t.len[k], t.text + t.off[k]);
        CHECK_STR(tok, want[k]);
    }
    mf_metric_tokens_free(&t);
    CHECK(mf_metric_is_cjk(0x4E2D) && !mf_metric_is_cjk('A') && !mf_metric_is_cjk(0x3002));
    CHECK(mf_metric_is_alnum(0x3B2) && !mf_metric_is_alnum(0xD7) && !mf_metric_is_alnum(0xFF0C));
}

TEST(test_metric_identical_texts_score_100_and_empty_hypothesis_scores_0)
{
    mf_metric_scores s;
    mf_err err;
    CHECK_OK(mf_metric_score(&s, "患者应低盐饮食并规律服药。", "患者应低盐饮食并规律服药", &err));
    for (int k = 0; k < MF_M_COUNT; k++)
        CHECK_NEAR(s.v[k], 100.0, 0, 1e-9);
    CHECK_OK(mf_metric_score(&s, "", "患者应低盐饮食", &err));
    for (int k = 0; k < MF_M_COUNT; k++)
        CHECK_NEAR(s.v[k], 0.0, 0, 0);
}
