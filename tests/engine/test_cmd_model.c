/* tests/engine/test_cmd_model.c — `medflow score` / `medflow generate` against
 * transformers' numbers for the same tiny model and tokenizer
 * (tests/modelio/fixtures/model_io/tiny_lm_ref.json, gen_model_io_fixtures.py). */
#include "tests/harness.h"
#include "common/json.h"

#include <stdlib.h>

static mf_json *ref_json(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/modelio/fixtures/model_io/tiny_lm_ref.json", mf_test_root());
    mf_json *j = NULL;
    mf_err e;
    return mf_json_parse_file(&j, p, &e) ? NULL : j;
}

/* fp32 forward vs torch fp64 log-softmax of the same fp32 weights: 1e-4 per token. */
TEST(test_cmd_score_matches_transformers_logprobs)
{
    mf_json *ref = ref_json();
    REQUIRE(ref);
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/text.txt", mf_test_tmpdir());
    mf_test_write(tp, mf_json_get_str(ref, "text", ""));
    char *out = NULL, *err = NULL;
    int st = mf_test_sh(&out, &err, "%s score %s/tests/modelio/fixtures/model_io/tiny_lm --text %s --json", mf_test_bin(),
                        mf_test_root(), tp);
    if (st) fprintf(stderr, "%s\n", err ? err : "");
    REQUIRE(st == 0);
    mf_json *got = NULL;
    mf_err e;
    REQUIRE(mf_json_parse(&got, out, strlen(out), "score output", &e) == 0);
    const mf_json *toks = mf_json_get(got, "tokens"), *ids = mf_json_get(ref, "ids"), *lps = mf_json_get(ref, "token_logprobs");
    REQUIRE(toks && ids && lps);
    CHECK_INT(toks->n, ids->n);
    for (size_t t = 0; t < toks->n && t < ids->n; t++) {
        CHECK_INT(mf_json_get_int(toks->items[t], "id", -1), ids->items[t]->i);
        if (t) CHECK_NEAR(mf_json_get_num(toks->items[t], "logprob", 0), mf_json_num(lps->items[t - 1], 1), 0, 1e-4);
    }
    CHECK(mf_json_get(toks->items[0], "logprob")->type == MF_JSON_NULL);
    CHECK_NEAR(mf_json_get_num(got, "total_logprob", 0), mf_json_get_num(ref, "total_logprob", 1), 0, 2e-3);
    CHECK_INT(mf_json_get_int(got, "n_scored", 0), (long long)ids->n - 1);
    mf_json_free(got);
    mf_json_free(ref);
    free(out);
    free(err);
}

TEST(test_cmd_score_usage_errors_exit_2)
{
    char *err = NULL;
    CHECK_INT(mf_test_sh(NULL, &err, "%s score %s/tests/modelio/fixtures/model_io/tiny_lm", mf_test_bin(), mf_test_root()), 2);
    CHECK_CONTAINS(err, "missing --text");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "%s score no-such-model --text /dev/null", mf_test_bin()), 2);
    CHECK_CONTAINS(err, "not a directory");
    free(err);
    /* a model directory without a tokenizer */
    CHECK_INT(mf_test_sh(NULL, &err, "%s score %s/tests/modelio/fixtures/model_io/llama --text /dev/null", mf_test_bin(), mf_test_root()), 2);
    CHECK_CONTAINS(err, "has no tokenizer.json");
    free(err);
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "%s score --help", mf_test_bin()), 0);
    CHECK_CONTAINS(out, "Usage: medflow score MODEL --text FILE");
    free(out);
}

TEST(test_cmd_generate_greedy_matches_transformers_and_sampling_is_seeded)
{
    mf_json *ref = ref_json();
    REQUIRE(ref);
    char *out = NULL, *err = NULL;
    const char *dir = "tests/modelio/fixtures/model_io/tiny_lm";
    int st = mf_test_sh(&out, &err, "cd %s && %s generate %s --prompt 'Diagnosis:' --max-new 8 --json", mf_test_root(),
                        mf_test_bin(), dir);
    if (st) fprintf(stderr, "%s\n", err ? err : "");
    REQUIRE(st == 0);
    mf_json *got = NULL;
    mf_err e;
    REQUIRE(mf_json_parse(&got, out, strlen(out), "generate output", &e) == 0);
    CHECK(mf_json_equal(mf_json_get(got, "prompt_ids"), mf_json_get(ref, "prompt_ids")));
    CHECK(mf_json_equal(mf_json_get(got, "ids"), mf_json_get(ref, "greedy_ids")));
    CHECK_STR(mf_json_get_str(got, "text", NULL), mf_json_get_str(ref, "greedy_text", ""));
    mf_json_free(got);
    free(out);
    free(err);
    char *a = NULL, *b = NULL, *c = NULL;
    const char *fmt = "cd %s && %s generate %s --prompt 'The patient' --max-new 12 --temperature 0.9 --top-p 0.95 --seed %d --json";
    CHECK_INT(mf_test_sh(&a, NULL, fmt, mf_test_root(), mf_test_bin(), dir, 7), 0);
    CHECK_INT(mf_test_sh(&b, NULL, fmt, mf_test_root(), mf_test_bin(), dir, 7), 0);
    CHECK_INT(mf_test_sh(&c, NULL, fmt, mf_test_root(), mf_test_bin(), dir, 8), 0);
    CHECK_STR(a, b);
    CHECK(a && c && strcmp(a, c) != 0); /* 12 sampled tokens from a 300-token vocab */
    free(a);
    free(b);
    free(c);
    mf_json_free(ref);
}

TEST(test_cmd_generate_rejects_bad_options)
{
    char *err = NULL;
    CHECK_INT(mf_test_sh(NULL, &err, "%s generate %s/tests/modelio/fixtures/model_io/tiny_lm --prompt x --top-p 2", mf_test_bin(), mf_test_root()), 2);
    CHECK_CONTAINS(err, "--top-p: expected a number in");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "%s generate %s/tests/modelio/fixtures/model_io/tiny_lm --prompt x --max-new 1000", mf_test_bin(), mf_test_root()), 2);
    CHECK_CONTAINS(err, "exceeds the model's max_position_embeddings (128)");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "%s generate %s/tests/modelio/fixtures/model_io/tiny_lm", mf_test_bin(), mf_test_root()), 2);
    CHECK_CONTAINS(err, "missing --prompt");
    free(err);
}
