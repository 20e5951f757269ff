/*
 * tests/stages/eval/test_eval_model.c — the eval kind with a real (tiny) model behind its
 * mf_eval_model table (stages/kinds/kind_eval.c): held-out perplexity (task ppl) scored
 * window by window, checked against the model's own forward loss.
 */
#include "tests/harness.h"
#include "tests/stages/ttest.h"

#include "modelio/model_open.h"

/* The model's mean next-token loss over ids[0..n) (labels = ids: tokens 1..n-1 scored). */
static double forward_loss(mf_model *m, const int32_t *ids, int n)
{
    mf_k_batch b = {1, n, ids, NULL, ids};
    mf_k_outputs o;
    mf_err err;
    return mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err) ? NAN : o.loss;
}

/* ppl of one document = the forward loss of its tokens + EOS (the first token unscored); with
 * cutoff_len 5 the document is scored in windows of 5, each window's first token unscored.
 * Tolerance 1e-9 relative: the same float32 forward on both sides, summed in double. */
TEST(test_eval_ppl_scores_text_plus_eos_in_windows_like_the_forward_loss)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *text = "头痛发热三天，伴有咳嗽，夜间加重。";
    char rec[512];
    snprintf(rec, sizeof rec, "{\"text\": \"%s\"}\n", text);
    mf_test_write(tt_path(d, "held.jsonl"), rec);
    int rc = tt_run(msg, sizeof msg, "eval", "{\"task\": \"ppl\"}", tt_path(d, "whole"), NULL, "model",
                    tt_path(d, "base"), "data", tt_path(d, "held.jsonl"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "eval", "{\"task\": \"ppl\", \"cutoff_len\": 5}", tt_path(d, "win"), NULL, "model",
                tt_path(d, "base"), "data", tt_path(d, "held.jsonl"), NULL);
    REQUIRE(rc == 0);

    mf_modelio_input mi;
    mf_err err;
    REQUIRE(mf_modelio_open(&mi, tt_path(d, "base"), NULL, 0, NULL, 0, &err) == 0);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(mf_tok_encode(mi.tok, text, strlen(text), 0, &ids, &n, &err) == 0);
    int32_t *all = realloc(ids, (n + 1) * sizeof *all);
    REQUIRE(all && mf_tok_eos_id(mi.tok) >= 0);
    all[n++] = mf_tok_eos_id(mi.tok);
    double whole = forward_loss(mi.model, all, (int)n), sum = 0;
    long tok = 0;
    for (size_t off = 0; off + 1 < n; off += 5) {
        int len = (int)(n - off < 5 ? n - off : 5);
        if (len < 2) break;
        sum += forward_loss(mi.model, all + off, len) * (len - 1);
        tok += len - 1;
    }
    mf_json *a = NULL, *b = NULL;
    REQUIRE(mf_json_parse_file(&a, tt_path(d, "whole/metrics.json"), &err) == 0);
    REQUIRE(mf_json_parse_file(&b, tt_path(d, "win/metrics.json"), &err) == 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(a, "metrics.loss"), -1), whole, 1e-9, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(a, "metrics.ppl"), -1), exp(whole), 1e-9, 0);
    CHECK_INT(mf_json_get_int(a, "tokens", -1), (long long)n - 1);
    CHECK_NEAR(mf_json_num(mf_json_get_path(b, "metrics.loss"), -1), sum / (double)tok, 1e-9, 0);
    CHECK_INT(mf_json_get_int(b, "tokens", -1), tok);
    CHECK_STR(mf_json_get_str(a, "task", ""), "ppl");
    mf_json_free(a);
    mf_json_free(b);
    free(all);
    mf_modelio_input_free(&mi);
}
