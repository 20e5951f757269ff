/*
 * tests/engine/test_run_report.c — what a run shows and leaves: the live progress counts the run
 * (done/total, ETA), a failure names its stage once, and `medflow report` carries the run: its id,
 * every stage's digest and params, and the stage DAG (dag.json, drawn in report.html).
 */
#include "tests/harness.h"
#include "tests/engine/runutil.h"

#include <stdlib.h>

TEST(test_run_progress_counts_the_run_and_failures_name_their_stage_once)
{
    write_graph("g.yaml", "name: prog\n"
                          "stages:\n"
                          "  a: {kind: sleep, params: {seconds: 0}}\n"
                          "  b: {kind: sleep, inputs: {in: a}, params: {seconds: 0}}\n"
                          "  f: {kind: fail, inputs: {in: b}, params: {message: \"stage 'f': boom\"}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml"), 1);
    CHECK_CONTAINS(out, "a: done in");
    CHECK_CONTAINS(out, "[1/3 done");
    CHECK_CONTAINS(out, "[2/3 done");
    CHECK_CONTAINS(out, "stage 'f': boom");
    CHECK(out && !strstr(out, "stage 'f': stage 'f'"));
    free(out);
}

TEST(test_report_carries_the_run_digests_params_and_dag)
{
    const char *dir = mf_test_tmpdir(), *root = mf_test_root();
    REQUIRE(mf_test_sh(NULL, NULL,
                       "mkdir -p %s/data && cp %s/tests/e2e/tiny.yaml %s/g.yaml && "
                       "head -300 %s/examples/data/pretrain.jsonl > %s/data/pretrain.jsonl && "
                       "head -16 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && "
                       "head -20 %s/examples/data/mcq.jsonl > %s/data/mcq.jsonl",
                       dir, root, dir, root, dir, root, dir, root, dir) == 0);
    char *out = NULL;
    int st = mf_test_sh(&out, NULL, "cd %s && %s run g.yaml 2>&1 && %s report g.yaml -o out 2>&1", dir, mf_test_bin(),
                        mf_test_bin());
    if (st) fprintf(stderr, "%s\n", out ? out : "");
    REQUIRE(st == 0);
    free(out);
    char p[4300];
    snprintf(p, sizeof p, "%s/out/report.html", dir);
    char *html = mf_test_read(p);
    snprintf(p, sizeof p, "%s/out/report.md", dir);
    char *md = mf_test_read(p);
    snprintf(p, sizeof p, "%s/out/dag.json", dir);
    char *dag = mf_test_read(p);
    REQUIRE(html && md && dag);
    /* the run: its id, each stage's output digest and params */
    CHECK_CONTAINS(html, "<h2>Run</h2>");
    CHECK_CONTAINS(html, "e2e-tiny@1");
    CHECK_CONTAINS(md, "## Run");
    CHECK_CONTAINS(md, "| sft | sft | success | `sha256:");
    CHECK_CONTAINS(html, "params</summary><code class=\"params\">{&quot;adam_beta1&quot;");
    /* the DAG: sources and stages, a source sharing a stage's name kept apart */
    CHECK_CONTAINS(html, "<h2>Pipeline</h2>");
    CHECK_CONTAINS(dag, "\"id\": \"sft (source)\"");
    CHECK_CONTAINS(dag, "\"from\": \"dcpt\"");
    free(html);
    free(md);
    free(dag);
}
