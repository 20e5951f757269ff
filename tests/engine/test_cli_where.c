/*
 * tests/engine/test_cli_where.c — where things live, for a new user: global options after the
 * command, the store a run uses said out loud when it is new or when the graph's own folder has
 * another, and a ledger whose plain `git log` works.
 */
#include "tests/harness.h"

#include <stdlib.h>

static char dir[4096];

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    REQUIRE(mf_test_sh(NULL, NULL,
                       "mkdir -p %s/proj/data %s/elsewhere && head -40 %s/examples/data/pretrain.jsonl > %s/proj/data/pretrain.jsonl",
                       dir, dir, mf_test_root(), dir) == 0);
    char p[4300];
    snprintf(p, sizeof p, "%s/proj/g.yaml", dir);
    mf_test_write(p, "name: where\n"
                     "sources:\n  corpus: {path: data/pretrain.jsonl, format: text}\n"
                     "stages:\n  tok: {kind: tokenizer, inputs: {data: corpus}, params: {vocab_size: 300}}\n");
}

TEST(test_cli_global_options_after_the_command)
{
    setup();
    char *out = NULL, *err = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "cd %s/proj && %s run g.yaml -q", dir, mf_test_bin()), 0);
    free(out);
    free(err);
    /* --store before or after the command, in both spellings */
    const char *forms[] = {"--store proj/.medflow verify", "verify --store proj/.medflow", "verify --store=proj/.medflow",
                           "log -q --store proj/.medflow"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        out = err = NULL;
        int st = mf_test_sh(&out, &err, "cd %s && %s %s", dir, mf_test_bin(), forms[i]);
        if (st) fprintf(stderr, "%s: %s\n", forms[i], err ? err : "");
        CHECK_INT(st, 0);
        free(out);
        free(err);
    }
    /* the ledger's HEAD is the latest run's graph: plain `git log` works */
    out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "git --git-dir %s/proj/.medflow/ledger.git log --oneline", dir), 0);
    CHECK_CONTAINS(out, "where@1: success");
    free(out);
}

TEST(test_cli_run_says_which_store_when_it_is_new_or_another_is_beside_the_graph)
{
    setup();
    char *out = NULL, *err = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "cd %s/proj && %s run g.yaml", dir, mf_test_bin()), 0);
    CHECK_CONTAINS(err, "/proj/.medflow is new (empty): every stage of 'where' runs from scratch");
    free(out);
    free(err);
    out = err = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "cd %s/proj && %s run g.yaml", dir, mf_test_bin()), 0);
    CHECK(err && !strstr(err, "is new")); /* the same store again: nothing to say */
    free(out);
    free(err);
    /* from another folder: a new store there, and the one beside the graph pointed at */
    out = err = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "cd %s/elsewhere && %s status ../proj/g.yaml", dir, mf_test_bin()), 0);
    CHECK_CONTAINS(err, "/elsewhere/.medflow is new (empty)");
    CHECK_CONTAINS(err, "../proj/.medflow beside the graph holds runs too");
    CHECK_CONTAINS(err, "pass --store ../proj/.medflow");
    free(out);
    free(err);
}
