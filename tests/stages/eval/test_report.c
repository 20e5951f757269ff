/* tests/stages/eval/test_report.c — the report kind: golden report.md/report.html, validation, escaping.
 *
 * Golden files: tests/stages/fixtures/report/golden/. After an intended change to the
 * output, regenerate them with  MF_UPDATE_GOLDEN=1 make test TESTS=report_golden  and
 * review the diff (and the page in a browser). */
#include "tests/harness.h"
#include "stages/eval/report.h"
#include "stages/kinds/kinds.h"
#include "common/fsutil.h"

#include <stdlib.h>

static const char *evals_dirs[] = {"exam_base", "exam_sft", "exam_dpo",    "qa_sft",
                                   "qa_dpo",    "diag_sft", "pair_dpo_sft"};
static const char *train_dirs[] = {"train_sft", "train_dpo"};

/* Run the registered `report` kind on the fixture inputs into out_dir. */
static int run_report_stage(const char *out_dir, mf_err *err)
{
    static char paths[9][4096];
    static const char *ev[7], *tr[2];
    for (int k = 0; k < 7; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/tests/stages/fixtures/report/%s", mf_test_root(),
                 evals_dirs[k]);
        ev[k] = paths[k];
    }
    for (int k = 0; k < 2; k++) {
        snprintf(paths[7 + k], sizeof paths[7 + k], "%s/tests/stages/fixtures/report/%s", mf_test_root(),
                 train_dirs[k]);
        tr[k] = paths[7 + k];
    }
    mf_stage_input inputs[2] = {{"evals", ev, NULL, 7}, {"training", tr, NULL, 2}};
    mf_json *params = NULL;
    const char *p = "{\"title\": \"Qilin-Med tiny <results>\"}";
    if (mf_json_parse(&params, p, strlen(p), "params", err)) return -1;
    mf_stage_ctx ctx = {0};
    ctx.stage = "report";
    ctx.kind = mf_kind_find("report");
    ctx.params = params;
    ctx.inputs = inputs;
    ctx.n_inputs = 2;
    ctx.out_dir = out_dir;
    ctx.progress_fd = -1;
    ctx.err = err;
    mf_stage_run_fn run = mf_stage_impl("report");
    int rc = run ? run(&ctx) : -100;
    mf_json_free(params);
    return rc;
}

static void check_golden(const char *out_dir, const char *name)
{
    char got_path[4096], want_path[4096];
    snprintf(got_path, sizeof got_path, "%s/%s", out_dir, name);
    snprintf(want_path, sizeof want_path, "%s/tests/stages/fixtures/report/golden/%s", mf_test_root(), name);
    char *got = mf_test_read(got_path);
    REQUIRE(got);
    if (getenv("MF_UPDATE_GOLDEN")) mf_test_write(want_path, got);
    char *want = mf_test_read(want_path);
    REQUIRE(want);
    if (strcmp(got, want)) {
        size_t k = 0;
        while (got[k] && got[k] == want[k])
            k++;
        mf_test_fail(__FILE__, __LINE__,
                     "%s differs from the golden file at byte %zu:\n  got:  \"%.80s\"\n  want: \"%.80s\"",
                     name, k, got + k, want + k);
    }
    free(got);
    free(want);
}

TEST(test_report_golden_markdown_and_html_from_fixture_artifacts)
{
    mf_err err;
    const char *out = mf_test_tmpdir();
    int rc = run_report_stage(out, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "report stage failed: %s", err.msg);
    REQUIRE(rc == 0);
    check_golden(out, "report.md");
    check_golden(out, "report.html");
}

TEST(test_report_tables_have_models_as_rows_and_bold_the_best)
{
    mf_err err;
    const char *out = mf_test_tmpdir();
    REQUIRE(run_report_stage(out, &err) == 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/report.md", out);
    char *md = mf_test_read(path);
    REQUIRE(md);
    CHECK_CONTAINS(md, "# Qilin-Med tiny <results>");
    CHECK_CONTAINS(md, "### Multiple-choice exam (mcq) — cmmlu\\_medical");
    CHECK_CONTAINS(md, "| Model | n | Accuracy | Extracted |");
    CHECK_CONTAINS(md,
                   "| Model | anatomy | clinical\\_medicine | traditional\\_chinese\\_medicine | virology |");
    CHECK_CONTAINS(md, "| dpo | **38.00** | 40.00 | **47.00** | **37.00** |");
    CHECK_CONTAINS(md, "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | GLEU | ROUGE-1 | ROUGE-2 | ROUGE-L |");
    CHECK_CONTAINS(md, "| dpo vs sft | 150 | 46.00 | 20.00 | 34.00 |");
    CHECK_CONTAINS(md, "| sft | 40 | 2.8160 | 1.5879 | 1.5879 |");
    CHECK_CONTAINS(md, "- `dpo` (dpo) ← `sft`, `prefs`");
    free(md);
    snprintf(path, sizeof path, "%s/report.html", out);
    char *html = mf_test_read(path);
    REQUIRE(html);
    CHECK_CONTAINS(html, "<title>Qilin-Med tiny &lt;results&gt;</title>");
    CHECK_CONTAINS(html, "<svg class=\"loss-curve\" id=\"curve-0\"");
    CHECK_CONTAINS(html, "<svg class=\"dag\" id=\"dag\"");
    /* self-contained: no scripts, no external resources */
    CHECK(!strstr(html, "<script"));
    CHECK(!strstr(html, "<link"));
    CHECK(!strstr(html, "src="));
    CHECK(!strstr(html, "url(http"));
    free(html);
}

TEST(test_report_rejects_eval_results_that_break_the_contract)
{
    mf_report *r = NULL;
    mf_err err;
    CHECK_OK(mf_report_new(&r, NULL, &err));
    const char *bad[] = {
        "{\"task\": \"exam\", \"model\": \"m\", \"n\": 1, \"metrics\": {}}",
        "{\"task\": \"mcq\", \"n\": 1, \"metrics\": {}}",
        "{\"task\": \"mcq\", \"model\": \"m\", \"n\": 1.5, \"metrics\": {}}",
        "{\"task\": \"mcq\", \"model\": \"m\", \"n\": 1, \"metrics\": {\"accuracy\": \"high\"}}",
        "{\"task\": \"mcq\", \"model\": \"m\", \"n\": 1, \"metrics\": {}, \"by_category\": []}"};
    const char *msg[] = {"\"task\" should be one of", "\"model\" should be", "\"n\" should be",
                         "metric 'accuracy' should be a number", "\"by_category\" should be"};
    for (int k = 0; k < 5; k++) {
        mf_json *v = NULL;
        REQUIRE(mf_json_parse(&v, bad[k], strlen(bad[k]), "m.json", &err) == 0);
        CHECK_INT(mf_report_add_eval(r, v, "m.json", &err), MF_EINVAL);
        CHECK_CONTAINS(err.msg, msg[k]);
        CHECK_STR(err.file, "m.json");
        mf_json_free(v);
    }
    CHECK_INT(r->n_evals, 0);
    const char *dag =
        "{\"nodes\": [{\"id\": \"a\", \"kind\": \"sft\"}], \"edges\": [{\"from\": \"a\", \"to\": \"b\"}]}";
    mf_json *d = NULL;
    REQUIRE(mf_json_parse(&d, dag, strlen(dag), "dag.json", &err) == 0);
    CHECK_INT(mf_report_set_dag(r, d, "dag.json", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "\"to\" should name a node, found b");
    mf_json_free(d);
    mf_report_free(r);
}

TEST(test_report_escapes_labels_and_handles_empty_inputs)
{
    mf_report *r = NULL;
    mf_err err;
    CHECK_OK(mf_report_new(&r, "", &err));
    const char *ev = "{\"task\": \"qa\", \"model\": \"<b>x|y</b>\", \"n\": 0, \"metrics\": {\"bleu1\": 1.5}}";
    mf_json *v = NULL;
    REQUIRE(mf_json_parse(&v, ev, strlen(ev), "e", &err) == 0);
    CHECK_OK(mf_report_add_eval(r, v, "e", &err));
    mf_json_free(v);
    CHECK_OK(mf_report_add_curve(r, "empty & odd", NULL, 0, &err));
    mf_buf md = MF_BUF_INIT, html = MF_BUF_INIT;
    CHECK_OK(mf_report_markdown(r, &md, &err));
    CHECK_OK(mf_report_html(r, &html, &err));
    CHECK_CONTAINS(mf_buf_cstr(&md), "# medflow report");
    CHECK_CONTAINS(mf_buf_cstr(&md), "| <b>x\\|y</b> | 0 | 1.50 |");
    CHECK_CONTAINS(mf_buf_cstr(&html), "&lt;b&gt;x|y&lt;/b&gt;");
    CHECK_CONTAINS(mf_buf_cstr(&html), "no loss values");
    CHECK_CONTAINS(mf_buf_cstr(&html), "empty &amp; odd");
    mf_buf_free(&md);
    mf_buf_free(&html);
    mf_report_free(r);
}

TEST(test_report_stage_fails_clearly_on_missing_metrics_json)
{
    const char *dir = mf_test_tmpdir();
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mf_err err;
    CHECK_OK(mf_mkdir_p(in, 0755, &err));
    CHECK_OK(mf_mkdir_p(out, 0755, &err));
    const char *ev[] = {in};
    mf_stage_input inputs[1] = {{"evals", ev, NULL, 1}};
    mf_json *params = mf_json_new_object();
    mf_stage_ctx ctx = {0};
    ctx.stage = "report";
    ctx.params = params;
    ctx.inputs = inputs;
    ctx.n_inputs = 1;
    ctx.out_dir = out;
    ctx.progress_fd = -1;
    ctx.err = &err;
    CHECK(mf_stage_report_run(&ctx) != 0);
    CHECK_CONTAINS(err.msg, "metrics.json");
    mf_json_free(params);
}

TEST(test_report_loss_chart_thins_long_curves_and_survives_huge_offsets)
{
    mf_report *r = NULL;
    mf_err err;
    CHECK_OK(mf_report_new(&r, "curves", &err));
    size_t n = 5000;
    mf_report_point *pts = calloc(n, sizeof *pts);
    REQUIRE(pts);
    for (size_t k = 0; k < n; k++)
        pts[k] = (mf_report_point){1e20 + (double)k * 1e6, 1e15 + (double)(k % 7), NAN, NAN, NAN};
    pts[10].loss = INFINITY; /* skipped */
    CHECK_OK(mf_report_add_curve(r, "long", pts, n, &err));
    free(pts);
    mf_buf html = MF_BUF_INIT;
    CHECK_OK(mf_report_html(r, &html, &err));
    const char *poly = strstr(mf_buf_cstr(&html), "points=\"");
    REQUIRE(poly);
    size_t vertices = 1;
    for (const char *q = poly + 8; *q && *q != '"'; q++)
        vertices += *q == ' ';
    CHECK(vertices <= 2001 && vertices >= 1500);
    CHECK_CONTAINS(mf_buf_cstr(&html), "long — 4999 steps logged");
    mf_buf_free(&html);
    mf_report_free(r);
}

/* metrics.jsonl: training lines give the loss points and a series per other metric, validation lines their
 * own series (loss included), warning lines warnings; rewards/chosen and rewards/rejected share a chart, a
 * constant kl_coef and lr get none. The markdown shows the last validation values and the warnings. */
TEST(test_report_curves_keep_validation_series_apart_and_collect_warnings)
{
    const char *d = mf_test_tmpdir();
    char p[4096];
    snprintf(p, sizeof p, "%s/metrics.jsonl", d);
    mf_test_write(p, "{\"step\": 1, \"loss\": 0.7, \"lr\": 1e-4, \"kl_coef\": 0.05, \"rewards/chosen\": 0.1, \"rewards/rejected\": -0.1, \"stage\": \"dpo\"}\n"
                     "{\"step\": 2, \"loss\": 0.6, \"lr\": 1e-4, \"kl_coef\": 0.05, \"rewards/chosen\": 0.2, \"rewards/rejected\": -0.2, \"stage\": \"dpo\"}\n"
                     "{\"step\": 2, \"loss\": 0.65, \"split\": \"val\", \"rewards/chosen\": 0.15, \"rewards/rejected\": -0.05, \"stage\": \"dpo\"}\n"
                     "{\"step\": 2, \"warning\": \"something to look at\", \"stage\": \"dpo\"}\n");
    mf_report *r = NULL;
    mf_err err;
    CHECK_OK(mf_report_new(&r, "t", &err));
    CHECK_OK(mf_report_add_curve_jsonl(r, p, NULL, "x", &err));
    REQUIRE(r->n_curves == 1);
    const mf_report_curve *c = &r->curves[0];
    CHECK_STR(c->label, "dpo");
    CHECK_INT(c->n, 2); /* the validation line is not a training point */
    CHECK_NEAR(c->pts[1].loss, 0.6, 0, 0);
    const mf_report_series *vl = mf_report_curve_val_loss(c);
    REQUIRE(vl && vl->n == 1);
    CHECK_NEAR(vl->value[0], 0.65, 0, 0);
    REQUIRE(c->n_warnings == 1);
    CHECK_STR(c->warnings[0], "step 2: something to look at");
    mf_report_chart *ch = NULL;
    size_t n = 0;
    CHECK_OK(mf_report_curve_charts(c, &ch, &n));
    REQUIRE(n == 1); /* rewards: chosen, rejected, chosen (val), rejected (val) */
    CHECK_STR(ch[0].title, "rewards");
    CHECK_INT(ch[0].n, 4);
    CHECK_STR(ch[0].names[2], "chosen (val)");
    free(ch);
    mf_buf md = MF_BUF_INIT;
    CHECK_OK(mf_report_markdown(r, &md, &err));
    CHECK_CONTAINS(mf_buf_cstr(&md), "| dpo | 2 | 0.7000 | 0.6000 | 0.6000 | val: loss 0.65, rewards/chosen 0.15, rewards/rejected -0.05 |");
    CHECK_CONTAINS(mf_buf_cstr(&md), "- **dpo** step 2: something to look at");
    mf_buf html = MF_BUF_INIT;
    CHECK_OK(mf_report_html(r, &html, &err));
    CHECK_CONTAINS(mf_buf_cstr(&html), "<div class=\"warnings\" id=\"warnings\">");
    CHECK_CONTAINS(mf_buf_cstr(&html), "dpo — rewards</figcaption>");
    CHECK_CONTAINS(mf_buf_cstr(&html), ">validation</text>");
    mf_buf_free(&md);
    mf_buf_free(&html);
    mf_report_free(r);
}

/* Sample answers are matched by input: an eval whose predictions come in another order still shows its own
 * answer to each item, and a missing one is a dash. */
TEST(test_report_sample_answers_are_matched_by_input)
{
    const char *d = mf_test_tmpdir();
    const char *metrics = "{\"task\": \"qa\", \"model\": \"%s\", \"n\": 2, \"metrics\": {\"rouge1\": 10}}";
    char p[4096], m[512];
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/e%d", d, k);
        mf_mkdir_p(p, 0755, NULL);
        snprintf(p, sizeof p, "%s/e%d/metrics.json", d, k);
        snprintf(m, sizeof m, metrics, k ? "b" : "a");
        mf_test_write(p, m);
        snprintf(p, sizeof p, "%s/e%d/predictions.jsonl", d, k);
        mf_test_write(p, k ? "{\"input\": \"q2\", \"output\": \"b2\", \"reference\": \"r2\"}\n"
                           : "{\"input\": \"q1\", \"output\": \"a1\", \"reference\": \"r1\"}\n"
                             "{\"input\": \"q2\", \"output\": \"a2\", \"reference\": \"r2\"}\n");
    }
    mf_report *r = NULL;
    mf_err err;
    CHECK_OK(mf_report_new(&r, "t", &err));
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/e%d", d, k);
        CHECK_OK(mf_report_add_eval_dir(r, p, &err));
    }
    mf_buf md = MF_BUF_INIT;
    CHECK_OK(mf_report_markdown(r, &md, &err));
    CHECK_CONTAINS(mf_buf_cstr(&md), "**1.** q1  \nReference: r1\n\n| Model | Answer |\n|:---|:---|\n| a | a1 |\n| b | – |");
    CHECK_CONTAINS(mf_buf_cstr(&md), "**2.** q2  \nReference: r2\n\n| Model | Answer |\n|:---|:---|\n| a | a2 |\n| b | b2 |");
    mf_buf_free(&md);
    mf_report_free(r);
}
