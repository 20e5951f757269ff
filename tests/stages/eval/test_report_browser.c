/* tests/stages/eval/test_report_browser.c — report.html opened in headless Chromium.
 *
 * Renders the fixture report (tests/stages/fixtures/report), takes a screenshot and dumps
 * the DOM Chromium built: the page must render (a PNG of the requested size with real
 * content) and the tables, loss curves and DAG must be in the DOM. Chromium is a test
 * dependency (`make deps` installs the Debian package `chromium`): when it is missing this
 * test FAILS, it does not skip. */
#include "tests/harness.h"
#include "stages/eval/report.h"
#include "common/fsutil.h"

#include <stdint.h>
#include <stdlib.h>

static int count_substr(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

TEST(test_report_browser_renders_tables_curves_and_dag_in_headless_chromium)
{
    char *chrome = NULL;
    int rc = mf_test_sh(&chrome, NULL,
                        "command -v chromium || command -v chromium-browser || command -v google-chrome");
    if (rc || !chrome || !*chrome) {
        mf_test_fail(__FILE__, __LINE__,
                     "headless Chromium is required for this test but was not found on PATH "
                     "(install the Debian package 'chromium', e.g. with `make deps`)");
        free(chrome);
        return;
    }
    chrome[strcspn(chrome, "\n")] = 0;

    /* Build the fixture report. */
    const char *dir = mf_test_tmpdir();
    const char *names[] = {"exam_base", "exam_sft", "exam_dpo",    "qa_sft",
                           "qa_dpo",    "diag_sft", "pair_dpo_sft"};
    mf_report *r = NULL;
    mf_err err;
    REQUIRE(mf_report_new(&r, "browser test", &err) == 0);
    for (int k = 0; k < 7; k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tests/stages/fixtures/report/%s", mf_test_root(), names[k]);
        CHECK_OK(mf_report_add_eval_dir(r, p, &err));
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/stages/fixtures/report/train_sft/metrics.jsonl", mf_test_root());
    CHECK_OK(mf_report_add_curve_jsonl(r, p, NULL, "sft", &err));
    mf_json *dag = NULL;
    snprintf(p, sizeof p, "%s/tests/stages/fixtures/report/exam_base/dag.json", mf_test_root());
    REQUIRE(mf_json_parse_file(&dag, p, &err) == 0);
    CHECK_OK(mf_report_set_dag(r, dag, p, &err));
    mf_json_free(dag);
    CHECK_OK(mf_report_write(r, dir, &err));
    mf_report_free(r);

    /* Screenshot. */
    char *out = NULL, *errs = NULL;
    rc = mf_test_sh(
        &out, &errs,
        "cd '%s' && timeout 90 '%s' --headless --no-sandbox --disable-gpu --user-data-dir='%s/profile' "
        "--hide-scrollbars --screenshot='%s/shot.png' --window-size=1200,1800 'file://%s/report.html'",
        dir, chrome, dir, dir, dir);
    if (rc) mf_test_fail(__FILE__, __LINE__, "chromium --screenshot exited %d: %s", rc, errs ? errs : "");
    snprintf(p, sizeof p, "%s/shot.png", dir);
    char *png = NULL;
    size_t len = 0;
    if (mf_read_file(p, &png, &len, &err)) {
        mf_test_fail(__FILE__, __LINE__, "no screenshot written: %s", err.msg);
    } else {
        const unsigned char *u = (const unsigned char *)png;
        CHECK(len > 24 && !memcmp(u, "\x89PNG\r\n\x1a\n", 8) && !memcmp(u + 12, "IHDR", 4));
        if (len > 24) {
            CHECK_INT(be32(u + 16), 1200);
            CHECK_INT(be32(u + 20), 1800);
        }
        /* A blank 1200x1800 page compresses to a few KB; tables, text and curves do not. */
        if (len < 40000)
            mf_test_fail(__FILE__, __LINE__, "screenshot is only %zu bytes: page looks blank", len);
    }
    free(png);
    free(out);
    free(errs);

    /* DOM as Chromium parsed it. */
    out = errs = NULL;
    rc = mf_test_sh(
        &out, &errs,
        "cd '%s' && timeout 90 '%s' --headless --no-sandbox --disable-gpu --user-data-dir='%s/profile' "
        "--dump-dom 'file://%s/report.html'",
        dir, chrome, dir, dir);
    if (rc) mf_test_fail(__FILE__, __LINE__, "chromium --dump-dom exited %d: %s", rc, errs ? errs : "");
    REQUIRE(out);
    /* 4 results tables + 3 category tables; where there are more categories than models (2 of the
     * 3 here), categories run down the side, so the page does not scroll sideways */
    CHECK_INT(count_substr(out, "<table class=\"results"), 7);
    CHECK_INT(count_substr(out, "<table class=\"results categories\""), 2);
    CHECK_CONTAINS(out, "<th>BLEU-1</th>");
    CHECK_CONTAINS(out, "<td class=\"label\">traditional_chinese_medicine</td>");
    CHECK_CONTAINS(out, "<td class=\"label\">dpo vs sft</td>");
    CHECK_CONTAINS(out, "<td class=\"num best\">40.74</td>");
    CHECK_INT(count_substr(out, "class=\"loss-curve\""), 1);
    CHECK_CONTAINS(out, "<polyline");
    CHECK_INT(count_substr(out, "<g class=\"node\">"), 10);
    CHECK_INT(count_substr(out, "<path class=\"edge\""), 13);
    free(out);
    free(errs);
    free(chrome);
}
