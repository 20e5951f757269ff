/*
 * tests/e2e/test_e2e.c — the acceptance scenario of DESIGN.md section 2 on a small graph:
 * run; rerun (all cached); change one line of the SFT data (exactly the dependents rerun, status
 * says why, DCPT stays cached); lineage of the last stage reaches every source; verify is clean;
 * the ledger is read with the git command-line tool.
 */
#include "tests/harness.h"

#include <stdlib.h>

static char dir[4096];

static int sh(char **out, const char *fmt, const char *arg)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, fmt, arg);
    char *err = NULL;
    int rc = mf_test_sh(out, &err, "cd %s && %s 2>&1", dir, cmd);
    if (rc && out && *out) fprintf(stderr, "    command: %s\n    output:\n%s\n", cmd, *out);
    free(err);
    return rc;
}

TEST(test_e2e_acceptance_scenario)
{
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    const char *root = mf_test_root();
    /* a slice of the shipped data, and the graph */
    REQUIRE(mf_test_sh(NULL, NULL,
                       "mkdir -p %s/data && cp %s/tests/e2e/tiny.yaml %s/g.yaml && "
                       "head -300 %s/examples/data/pretrain.jsonl > %s/data/pretrain.jsonl && "
                       "head -16 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && " /* one epoch of sft: every line counts */
                       "head -20 %s/examples/data/mcq.jsonl > %s/data/mcq.jsonl",
                       dir, root, dir, root, dir, root, dir, root, dir) == 0);
    char bin[4200];
    snprintf(bin, sizeof bin, "%s", mf_test_bin());
    char *out = NULL;

    /* 1. run: everything runs and succeeds */
    CHECK_INT(sh(&out, "%s run g.yaml", bin), 0);
    CHECK_CONTAINS(out, "report: done");
    free(out);

    /* 2. rerun: every stage cached, nothing started */
    CHECK_INT(sh(&out, "%s run g.yaml", bin), 0);
    CHECK(strstr(out, "started") == NULL);
    CHECK_CONTAINS(out, "7 stages cached; nothing to do");
    free(out);
    CHECK_INT(sh(&out, "%s status g.yaml", bin), 0);
    CHECK_CONTAINS(out, "7 cached");
    free(out);

    /* 3. change one line of the SFT data: the start of an answer (a prompt's start may be cut
     * by max_source_length, and then the trained adapter - and everything after it - is unchanged) */
    REQUIRE(mf_test_sh(NULL, NULL, "cd %s && sed -i '1s/\"from\": \"gpt\", \"value\": \"/&changed /' data/sft.jsonl",
                       dir) == 0);
    CHECK_INT(sh(&out, "%s status g.yaml", bin), 0);
    CHECK_CONTAINS(out, "sft        stale: input slot `data` changed `sha256:");
    CHECK_CONTAINS(out, "dcpt       cached");
    CHECK_CONTAINS(out, "exam.sft   waiting: waiting on stale upstream `sft`");
    CHECK_CONTAINS(out, "exam.dcpt  cached");
    free(out);
    CHECK_INT(sh(&out, "%s run g.yaml", bin), 0);
    CHECK_CONTAINS(out, "sft: started");
    CHECK_CONTAINS(out, "exam.sft: started");
    CHECK(strstr(out, "dcpt: started") == NULL); /* DCPT stays cached */
    CHECK(strstr(out, "tok: started") == NULL);
    CHECK(strstr(out, "exam.dcpt: started") == NULL);
    free(out);

    /* 4. lineage of the last stage reaches every source */
    CHECK_INT(sh(&out, "%s lineage report", bin), 0);
    CHECK_CONTAINS(out, "source corpus");
    CHECK_CONTAINS(out, "source sft");
    CHECK_CONTAINS(out, "source mcq");
    free(out);

    /* 5. verify is clean */
    CHECK_INT(sh(&out, "%s verify", bin), 0);
    free(out);

    /* 6. the ledger is plain git */
    CHECK_INT(sh(&out, "git --git-dir .medflow/ledger.git log --oneline %s", "e2e-tiny"), 0);
    int commits = 0;
    for (char *p = out; p && (p = strchr(p, '\n')); p++) commits++;
    CHECK_INT(commits, 2); /* runs that started something: the first and the one after the change */
    free(out);
    CHECK_INT(sh(&out, "git --git-dir .medflow/ledger.git show %s:stages/sft/manifest.json", "e2e-tiny"), 0);
    CHECK_CONTAINS(out, "\"kind\": \"sft\"");
    CHECK_CONTAINS(out, "\"tokens_per_s\": "); /* throughput is the run's record, not the artifact's */
    free(out);

    /* 7. early cut-off: DCPT rerun by force gives byte-identical output (the CPU backend is
     * deterministic and nothing time-dependent goes into an artifact), so its dependents stay cached */
    char before[200] = "", after[200] = "";
    CHECK_INT(sh(&out, "git --git-dir .medflow/ledger.git show %s:stages/dcpt/manifest.json", "e2e-tiny"), 0);
    const char *o = out ? strstr(out, "\"output\": \"") : NULL;
    if (o) snprintf(before, sizeof before, "%.80s", o);
    free(out);
    CHECK_INT(sh(&out, "%s run g.yaml --force dcpt", bin), 0);
    CHECK_CONTAINS(out, "dcpt: started");
    CHECK(strstr(out, "sft: started") == NULL);
    CHECK(strstr(out, "exam.dcpt: started") == NULL);
    CHECK(strstr(out, "report: started") == NULL);
    free(out);
    CHECK_INT(sh(&out, "git --git-dir .medflow/ledger.git show %s:stages/dcpt/manifest.json", "e2e-tiny"), 0);
    o = out ? strstr(out, "\"output\": \"") : NULL;
    if (o) snprintf(after, sizeof after, "%.80s", o);
    free(out);
    CHECK(before[0] != 0);
    CHECK_STR(after, before);
}
