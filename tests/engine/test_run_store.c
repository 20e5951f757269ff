/*
 * tests/engine/test_run_store.c — the engine and the store when things go
 * wrong: damaged store files, a run killed between publishing and
 * recording, corruption repaired by recomputing, several engines sharing a
 * store. Through build/<cfg>/tests/medflow-testkinds (the real engine plus
 * the test-only kinds).
 */
#include "tests/engine/runutil.h"
#include "tests/harness.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

#define CHAIN(text)                                                                \
    "name: chain\n"                                                                \
    "sources:\n"                                                                   \
    "  src: {path: src.txt}\n"                                                     \
    "stages:\n"                                                                    \
    "  a: {kind: write-file, params: {text: " text "}}\n"                         \
    "  b: {kind: copy-input, inputs: {in: a}}\n"                                   \
    "  c: {kind: copy-input, inputs: {in: src}, params: {tag: x}}\n"

static void write_src(const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(p, text);
}

/* The store path of a stage's action-cache entry (from `status --json`). */
static void key_file(const char *stage, char *out, size_t n)
{
    char *js = NULL;
    out[0] = 0;
    REQUIRE(mf(&js, "status g.yaml --json") == 0);
    mf_json *v = NULL;
    mf_err err;
    REQUIRE(js && mf_json_parse(&v, js, strlen(js), "status", &err) == 0);
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(mf_json_get_str(v->items[i], "stage", ""), stage)) {
            const char *k = mf_json_get_str(v->items[i], "key", "sha256:");
            snprintf(out, n, "%s/.medflow/keys/%s", mf_test_tmpdir(), k + 7);
        }
    mf_json_free(v);
    free(js);
    REQUIRE(out[0]);
}

TEST(test_run_garbage_action_cache_entry_is_a_miss_with_a_warning)
{
    char *out = NULL, kf[PATH_MAX];
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    key_file("b", kf, sizeof kf);
    REQUIRE(mf_test_sh(NULL, NULL, "chmod u+w '%s' && printf 'garbage{' > '%s'", kf, kf) == 0);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "warning: ");
    CHECK_CONTAINS(out, "treated as a cache miss");
    CHECK_CONTAINS(out, "b  stale");
    CHECK_CONTAINS(out, "a  cached");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "1 ran, 2 cached");
    free(out);
    /* the rerun rewrote the entry: nothing to do, no warning */
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_STR(out, "3 stages cached; nothing to do\n");
    free(out);
}

/* Flip one bit in the middle of a file (made writable first). */
static void flip_bit(const char *path)
{
    REQUIRE(mf_test_sh(NULL, NULL,
                       "chmod u+w '%s' && python3 -c \"import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); "
                       "b[len(b)//2]^=0x10; open(p,'wb').write(b)\" '%s'",
                       path, path) == 0);
}

/* The archive of a digest "sha256:<hex>" in the test's store. */
static void object_file(const char *digest, char *out, size_t n)
{
    REQUIRE(digest && !strncmp(digest, "sha256:", 7));
    snprintf(out, n, "%s/.medflow/objects/%s.tar.zst", mf_test_tmpdir(), digest + 7);
}

TEST(test_run_force_of_the_producer_heals_a_corrupt_object)
{
    char *out = NULL, obj[PATH_MAX];
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    mf_json *run = last_run();
    REQUIRE(run);
    object_file(output_of(run, "b"), obj, sizeof obj);
    mf_json_free(run);
    flip_bit(obj);
    CHECK_INT(mf(&out, "verify"), 1);
    CHECK_CONTAINS(out, "corrupt object");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml --force b"), 0);
    CHECK_CONTAINS(out, "1 ran");
    free(out);
    CHECK_INT(mf(&out, "verify"), 0);
    CHECK_CONTAINS(out, "all good");
    free(out);
}

/* One flipped bit in any git object of the ledger: every command that reads
 * the runs says the ledger is damaged and how to recover, and exits non-zero
 * (before: a damaged stage tree read as "no runs recorded", exit 0). */
TEST(test_ledger_bit_flip_in_any_object_is_detected_by_the_commands)
{
    char *out = NULL, *objs = NULL;
    const char *d = mf_test_tmpdir();
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && cp -a .medflow good", d) == 0);
    REQUIRE(mf_test_sh(&objs, NULL, "cd '%s/good/ledger.git/objects' && find . -type f -name '[0-9a-f]*[0-9a-f]' -path './[0-9a-f][0-9a-f]/*' | sort", d) == 0);
    int n = 0;
    for (char *save = NULL, *o = strtok_r(objs, "\n", &save); o; o = strtok_r(NULL, "\n", &save), n++) {
        char p[PATH_MAX];
        REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && rm -rf .medflow && cp -a good .medflow", d) == 0);
        snprintf(p, sizeof p, "%s/.medflow/ledger.git/objects/%s", d, o + 2);
        flip_bit(p);
        const char *cmds[] = {"log", "show chain", "lineage b", "show chain:b", "diff chain chain", "gc --dry-run"};
        for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
            int rc = mf(&out, cmds[k]);
            if (rc == 0 || !strstr(out, "ledger") || !strstr(out, "damaged") || !strstr(out, "verify --repair"))
                mf_test_fail(__FILE__, __LINE__, "object %s, `%s`: exit %d:\n%s", o, cmds[k], rc, out);
            free(out);
        }
    }
    CHECK(n >= 8);
    free(objs);
}

/* Count the files in the test store's journal/. */
static int journals(void)
{
    char *out = NULL;
    REQUIRE(mf_test_sh(&out, NULL, "ls '%s/.medflow/journal' 2>/dev/null | wc -l", mf_test_tmpdir()) == 0);
    int n = out ? atoi(out) : -1;
    free(out);
    return n;
}

/* The output digest of a stage as `status --json` sees it (cached stages only). */
static void current_output(const char *stage, char *out, size_t n)
{
    char *js = NULL;
    out[0] = 0;
    REQUIRE(mf(&js, "status g.yaml --json") == 0);
    mf_json *v = NULL;
    mf_err err;
    REQUIRE(js && mf_json_parse(&v, js, strlen(js), "status", &err) == 0);
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(mf_json_get_str(v->items[i], "stage", ""), stage))
            snprintf(out, n, "%s", mf_json_get_str(v->items[i], "output", ""));
    mf_json_free(v);
    free(js);
    REQUIRE(!strncmp(out, "sha256:", 7));
}

/* A first run of CHAIN("A"), then a run of CHAIN("B") killed (-9) inside its
 * ledger commit: run.json is written just before the commit, which spins on a
 * held ref lock (the way a concurrent commit holds it) until the kill. */
static void run_then_kill_in_the_ledger_commit(void)
{
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    write_graph("g.yaml", CHAIN("B"));
    REQUIRE(mf_test_sh(NULL, NULL,
                       "cd '%s' && touch .medflow/ledger.git/refs/heads/chain.lock && "
                       "('%s' run g.yaml >killed.out 2>&1 & pid=$!; "
                       " for i in $(seq 1 3000); do [ $(ls .medflow/logs/*/run.json | wc -l) -ge 2 ] && break; sleep 0.01; done; "
                       " kill -9 $pid; wait $pid; true) && rm -f .medflow/ledger.git/refs/heads/chain.lock",
                       mf_test_tmpdir(), bin()) == 0);
}

/* issue 20: a kill -9 after the last stage is published but before the ledger commit left the run
 * unrecorded for good: the next run said "nothing to do" and recorded nothing, lineage pointed at
 * the previous run's output, and gc deleted the current outputs. The engine is held in its ledger
 * commit by a ref lock (the way a concurrent commit holds it) and killed there. */
TEST(test_run_killed_before_its_ledger_commit_is_recovered_by_the_next_start)
{
    char *out = NULL, b2[128], obj[PATH_MAX];
    run_then_kill_in_the_ledger_commit();
    CHECK_INT(journals(), 1);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "not recorded in the ledger yet");
    free(out);
    current_output("b", b2, sizeof b2);
    object_file(b2, obj, sizeof obj);
    /* gc first: the unrecorded outputs survive it (it records the run, or keeps what a journal names) */
    CHECK_INT(mf(&out, "gc"), 0);
    free(out);
    CHECK(mf_is_file(obj));
    CHECK_INT(journals(), 0);
    CHECK_INT(mf(&out, "log"), 0);
    CHECK_CONTAINS(out, "chain@2");
    CHECK_CONTAINS(out, "interrupted");
    free(out);
    CHECK_INT(mf(&out, "show chain:b"), 0);
    CHECK_CONTAINS(out, b2 + 7);
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    CHECK(!strstr(out, "recorded in the ledger")); /* chain@2 describes these outputs already */
    free(out);
}

/* The same window, recovered by `run` (no gc in between). */
TEST(test_run_after_a_killed_run_records_it_before_planning)
{
    char *out = NULL, b2[128];
    run_then_kill_in_the_ledger_commit();
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "recovered: chain@2");
    CHECK_CONTAINS(out, "nothing to do");
    free(out);
    current_output("b", b2, sizeof b2);
    CHECK_INT(mf(&out, "lineage b"), 0);
    CHECK_CONTAINS(out, "chain@2");
    free(out);
    CHECK_INT(journals(), 0);
}

/* issue 20: failing to record a run was a warning with exit 0 (and gc then deleted the outputs).
 * It is an error now; the journal keeps the run for the next start. */
TEST(test_run_that_cannot_be_recorded_exits_1_and_is_recorded_later)
{
    char *out = NULL, c1[128];
    const char *d = mf_test_tmpdir();
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && mkdir -p .medflow && : > .medflow/ledger.git", d) == 0);
    CHECK_INT(mf(&out, "run g.yaml"), 1);
    CHECK_CONTAINS(out, "could not be recorded in the ledger");
    free(out);
    CHECK_INT(journals(), 1);
    current_output("c", c1, sizeof c1);
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && rm .medflow/ledger.git", d) == 0);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "recovered: chain@1");
    free(out);
    CHECK_INT(mf(&out, "show chain:c"), 0);
    CHECK_CONTAINS(out, c1 + 7);
    free(out);
}

/* issue 20: after a data change was reverted, `run` said "nothing to do" and report/show/lineage
 * kept describing the edited run. The run now records that the current outputs are current again. */
TEST(test_run_records_the_current_outputs_after_a_reverted_change)
{
    char *out = NULL, c1[128], c2[128];
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    current_output("c", c1, sizeof c1);
    write_src("two\n");
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    current_output("c", c2, sizeof c2);
    CHECK(strcmp(c1, c2) != 0);
    write_src("one\n");
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "the ledger last recorded other outputs");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    CHECK_CONTAINS(out, "recorded in the ledger as chain@3");
    free(out);
    CHECK_INT(mf(&out, "show chain:c"), 0);
    CHECK_CONTAINS(out, c1 + 7);
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0); /* recorded once: a no-op again */
    CHECK_STR(out, "3 stages cached; nothing to do\n");
    free(out);
}

/* An adapter names its base by digest, not by the store path it was read
 * from: the same graph run on two stores at different places gives the same
 * adapter digest (it once carried "s1/trees/<hex>" in adapter_config.json). */
TEST(test_run_adapter_digest_does_not_depend_on_where_the_store_lives)
{
    write_dp_graph("g.yaml", "where", "finetune: lora, max_steps: 2, batch_size: 2", "cpus: 1");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    free(out);
    mf_json *one = last_run();
    REQUIRE(one != NULL);
    CHECK_INT(mf(&out, "run g.yaml --store elsewhere/deeper/s2"), 0);
    free(out);
    char *run2 = mf_path_join(mf_test_tmpdir(), "elsewhere/deeper/s2");
    REQUIRE(run2 != NULL);
    CHECK_INT(mf_test_sh(&out, NULL, "grep -h '\"output\"' '%s'/logs/*/run.json | grep -c '%s'", run2, output_of(one, "pt")), 0);
    CHECK_STR(out, "1\n");
    free(out);
    free(run2);
    mf_json_free(one);
}

/* issue 20: a flipped bit in a materialised tree that a stage reads was used silently (the output
 * differed, the manifest named the clean input). The tree's stamp no longer matches, its content
 * is hashed, and the damaged tree is extracted again from its object before the stage reads it. */
TEST(test_run_modified_materialised_tree_is_extracted_again_before_a_stage_reads_it)
{
    char *out = NULL, a1[128], b1[128], b2[128], tree[PATH_MAX];
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    current_output("a", a1, sizeof a1);
    current_output("b", b1, sizeof b1);
    snprintf(tree, sizeof tree, "%s/.medflow/trees/%s", mf_test_tmpdir(), a1 + 7);
    REQUIRE(mf_test_sh(NULL, NULL, "chmod u+w '%s' '%s/file.txt' && printf 'Z' > '%s/file.txt'", tree, tree, tree) == 0);
    CHECK_INT(mf(&out, "run g.yaml --force b"), 0);
    free(out);
    current_output("b", b2, sizeof b2);
    CHECK_STR(b2, b1); /* computed from the clean input */
    CHECK_INT(mf(&out, "verify"), 0);
    CHECK_CONTAINS(out, "all good");
    free(out);
}

/* issue 20: `verify --repair`: a bad object comes back from its materialised tree when that is still
 * right, else by running its producer again; a garbage action-cache entry is removed; a damaged
 * ledger is rebuilt from the run records; then verify is clean. */
TEST(test_verify_repair_fixes_objects_keys_and_the_ledger)
{
    char *out = NULL, a1[128], b1[128], obj[PATH_MAX], kf[PATH_MAX];
    const char *d = mf_test_tmpdir();
    write_src("one\n");
    write_graph("g.yaml", CHAIN("A"));
    REQUIRE(mf(NULL, "run g.yaml") == 0);
    current_output("a", a1, sizeof a1); /* materialised: b read it */
    current_output("b", b1, sizeof b1); /* not materialised: nothing reads it */
    object_file(a1, obj, sizeof obj);
    flip_bit(obj);
    object_file(b1, obj, sizeof obj);
    flip_bit(obj);
    key_file("c", kf, sizeof kf);
    REQUIRE(mf_test_sh(NULL, NULL, "chmod u+w '%s' && printf 'garbage{' > '%s'", kf, kf) == 0);
    CHECK_INT(mf(&out, "verify"), 1);
    free(out);
    CHECK_INT(mf(&out, "verify --repair"), 0);
    CHECK_CONTAINS(out, "re-packed from its materialised tree");
    CHECK_CONTAINS(out, "recomputed by stage 'b'");
    CHECK_CONTAINS(out, "damaged entry removed");
    free(out);
    CHECK_INT(mf(&out, "verify"), 0);
    CHECK_CONTAINS(out, "all good");
    free(out);
    current_output("b", b1 + 0, sizeof b1); /* still the same output */
    /* the ledger: one flipped bit in a git object, then repair */
    REQUIRE(mf_test_sh(&out, NULL, "cd '%s/.medflow/ledger.git/objects' && find . -type f -path './[0-9a-f][0-9a-f]/*' | head -1", d) == 0);
    out[strcspn(out, "\n")] = 0;
    char lo[PATH_MAX];
    snprintf(lo, sizeof lo, "%s/.medflow/ledger.git/objects/%s", d, out + 2);
    free(out);
    flip_bit(lo);
    CHECK_INT(mf(&out, "verify --repair"), 0);
    CHECK_CONTAINS(out, "repaired the ledger: rebuilt from");
    free(out);
    CHECK_INT(mf(&out, "log"), 0);
    CHECK_CONTAINS(out, "chain@");
    free(out);
    CHECK_INT(mf(&out, "verify"), 0);
    free(out);
}

/* issue 20: an ASan build and a release build compute different training digests for one stage
 * key, and a store shared by both keeps whichever ran first. The build identity (compiler,
 * numerics flags, BLAS) is recorded in the manifest and the action-cache entry, and status says
 * when a cached output came from another build (the key stays build-independent: docs/store.md). */
TEST(test_run_records_the_build_and_status_flags_another_builds_output)
{
    char *out = NULL, kf[PATH_MAX];
    write_graph("g.yaml", "name: bid\nstages:\n  m: {kind: tiny-model}\n");
    REQUIRE(mf(&out, "run g.yaml") == 0);
    free(out);
    mf_json *run = last_run();
    REQUIRE(run);
    const mf_json *m = mf_json_get(mf_json_get(run, "manifests"), "m");
    const char *b = mf_json_get_str(m, "build", "");
    CHECK(strstr(b, "gcc") || strstr(b, "clang"));
    CHECK_CONTAINS(b, "OpenBLAS");
    mf_json_free(run);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK(!strstr(out, "another build"));
    free(out);
    key_file("m", kf, sizeof kf);
    REQUIRE(mf_test_sh(NULL, NULL, "chmod u+w '%s' && sed -i 's/\"build\":\"[^\"]*\"/\"build\":\"gcc 0.1; -O0; OpenBLAS 0.0\"/' '%s' && grep -q 'OpenBLAS 0.0' '%s'", kf, kf, kf) == 0);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "computed by another build");
    CHECK_CONTAINS(out, "m  built by: gcc 0.1; -O0; OpenBLAS 0.0");
    CHECK_CONTAINS(out, "m  cached");
    free(out);
}
