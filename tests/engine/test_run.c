/*
 * tests/engine/test_run.c — `medflow run` / `status` end to end, on the real
 * store, through build/<cfg>/tests/medflow-testkinds (the real engine plus
 * the test-only kinds of testkinds.c). Cache matrix, early cut-off,
 * parallelism (recorded start/end timestamps, never durations), GPU
 * assignment with a fake GPU list, N-rank stages, failures, --keep-going,
 * SIGINT, exact status reasons.
 */
#include "tests/harness.h"
#include "common/fsutil.h"
#include "common/json.h"

#include <limits.h>
#include <stdlib.h>

static char g_binbuf[PATH_MAX];

static const char *bin(void)
{
    if (!g_binbuf[0]) {
        const char *b = getenv("MEDFLOW_TESTKINDS_BIN");
        if (!b) b = "build/gcc/tests/medflow-testkinds";
        if (b[0] == '/') snprintf(g_binbuf, sizeof g_binbuf, "%s", b);
        else snprintf(g_binbuf, sizeof g_binbuf, "%s/%s", mf_test_root(), b);
    }
    return g_binbuf;
}

/* Run `medflow-testkinds ARGS` in the test's tmpdir; stdout+stderr into *out. */
static int mf(char **out, const char *args)
{
    char *o = NULL, *e = NULL;
    int rc = mf_test_sh(&o, &e, "cd '%s' && '%s' %s", mf_test_tmpdir(), bin(), args);
    size_t lo = o ? strlen(o) : 0, le = e ? strlen(e) : 0;
    char *all = malloc(lo + le + 1);
    if (all) {
        memcpy(all, o ? o : "", lo);
        memcpy(all + lo, e ? e : "", le);
        all[lo + le] = 0;
    }
    free(o);
    free(e);
    if (out) *out = all;
    else free(all);
    return rc;
}

static void write_graph(const char *name, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", mf_test_tmpdir(), name);
    mf_test_write(p, text);
}

/* The newest run.json under .medflow/logs. */
static mf_json *last_run(void)
{
    char *out = NULL;
    mf_test_sh(&out, NULL, "ls -1t '%s/.medflow/logs' | head -1", mf_test_tmpdir());
    if (!out) return NULL;
    out[strcspn(out, "\n")] = 0;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.medflow/logs/%s/run.json", mf_test_tmpdir(), out);
    free(out);
    mf_json *v = NULL;
    mf_err err;
    if (mf_json_parse_file(&v, p, &err)) return NULL;
    return v;
}

static const char *outcome(const mf_json *run, const char *stage)
{
    return mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), stage), "status", "(absent)");
}

static double t_of(const mf_json *run, const char *stage, const char *which)
{
    return mf_json_get_num(mf_json_get(mf_json_get(run, "manifests"), stage), which, -1);
}

#define CHAIN(text, note)                                                          \
    "name: chain\n"                                                                \
    "sources:\n"                                                                   \
    "  src: {path: src.txt}\n"                                                     \
    "stages:\n"                                                                    \
    "  a: {kind: write-file, params: {text: " text ", note: '" note "'}}\n"       \
    "  b: {kind: copy-input, inputs: {in: a}}\n"                                   \
    "  c: {kind: copy-input, inputs: {in: src}, params: {tag: x}}\n"

TEST(test_run_cache_matrix_unchanged_param_input_version_force)
{
    char p[PATH_MAX], *out = NULL;
    snprintf(p, sizeof p, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(p, "one\n");
    write_graph("g.yaml", CHAIN("A", ""));
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "3 ran");
    CHECK_CONTAINS(out, "recorded in the ledger as chain@1");
    free(out);
    /* unchanged rerun: nothing runs, nothing is written, the ledger is not touched */
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_STR(out, "3 stages cached; nothing to do\n");
    free(out);
    CHECK_INT(mf(&out, "log"), 0);
    CHECK_CONTAINS(out, "chain@1");
    CHECK(!strstr(out, "chain@2"));
    free(out);
    /* param change: a reruns with the exact reason, b waits on it, c stays cached */
    write_graph("g.yaml", CHAIN("B", ""));
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_STR(out, "a  stale: param `text` changed `A→B`\n"
                   "b  waiting: waiting on stale upstream `a`\n"
                   "c  cached\n"
                   "1 cached, 1 stale, 1 waiting on stale upstreams\n");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "2 ran, 1 cached, 0 cut off");
    free(out);
    /* input change: the source's new content makes c stale, naming the slot */
    mf_test_write(p, "two\n");
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "c  stale: input slot `in` changed `sha256:");
    CHECK_CONTAINS(out, "a  cached\nb  cached\n");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "1 ran, 2 cached");
    free(out);
    /* kind-version bump: only stages of that kind */
    mf_test_sh(&out, NULL, "cd '%s' && MEDFLOW_TEST_WRITE_FILE_VERSION=2 '%s' status g.yaml", mf_test_tmpdir(), bin());
    CHECK_CONTAINS(out, "a  stale: kind version bumped 1→2\n");
    CHECK_CONTAINS(out, "c  cached\n");
    free(out);
    /* forced stage reruns even though cached */
    CHECK_INT(mf(&out, "run g.yaml --force c"), 0);
    CHECK_CONTAINS(out, "1 ran, 2 cached");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(outcome(run, "c"), "success");
    CHECK_STR(outcome(run, "a"), "cached");
    CHECK_STR(mf_json_get_str(run, "outcome", ""), "success");
    mf_json_free(run);
}

TEST(test_run_early_cutoff_identical_upstream_output_leaves_dependents_cached)
{
    char p[PATH_MAX], *out = NULL;
    snprintf(p, sizeof p, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(p, "one\n");
    write_graph("g.yaml", CHAIN("A", ""));
    CHECK_INT(mf(NULL, "run g.yaml"), 0);
    /* `note` changes a's key but not its output */
    write_graph("g.yaml", CHAIN("A", "changed"));
    CHECK_INT(mf(&out, "run g.yaml -v"), 0);
    CHECK_CONTAINS(out, "1 ran, 1 cached, 1 cut off");
    CHECK_CONTAINS(out, "b: cached (its inputs came out unchanged)");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(outcome(run, "a"), "success");
    CHECK_STR(outcome(run, "b"), "cached");
    mf_json_free(run);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "3 cached, 0 stale");
    free(out);
}

TEST(test_run_independent_stages_overlap_in_time)
{
    write_graph("g.yaml", "name: par\nstages:\n"
                          "  s1: {kind: sleep, params: {seconds: 0.6, text: one}}\n"
                          "  s2: {kind: sleep, params: {seconds: 0.6, text: two}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml -j 2"), 0);
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    double s1 = t_of(run, "s1", "started_unix"), e1 = t_of(run, "s1", "ended_unix");
    double s2 = t_of(run, "s2", "started_unix"), e2 = t_of(run, "s2", "ended_unix");
    REQUIRE(s1 > 0 && s2 > 0);
    CHECK(s1 < e2 && s2 < e1); /* the intervals intersect */
    mf_json_free(run);
    /* -j 1: the same stages forced again never overlap */
    CHECK_INT(mf(&out, "run g.yaml -j 1 --force s1 s2"), 0);
    free(out);
    run = last_run();
    REQUIRE(run != NULL);
    s1 = t_of(run, "s1", "started_unix"), e1 = t_of(run, "s1", "ended_unix");
    s2 = t_of(run, "s2", "started_unix"), e2 = t_of(run, "s2", "ended_unix");
    CHECK(e1 <= s2 || e2 <= s1);
    mf_json_free(run);
}

TEST(test_run_gpu_stages_get_disjoint_devices_from_fake_gpu_list)
{
    write_graph("g.yaml", "name: gpu\nstages:\n"
                          "  g1: {kind: sleep, params: {seconds: 0.6, text: one}, resources: {gpus: 2}}\n"
                          "  g2: {kind: sleep, params: {seconds: 0.6, text: two}, resources: {gpus: 2}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml --gpus 0,1,2,3"), 0);
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    const char *d1 = mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "g1"), "devices", "");
    const char *d2 = mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "g2"), "devices", "");
    CHECK_STR(d1, "0,1");
    CHECK_STR(d2, "2,3");
    CHECK(t_of(run, "g1", "started_unix") < t_of(run, "g2", "ended_unix"));
    CHECK(t_of(run, "g2", "started_unix") < t_of(run, "g1", "ended_unix"));
    mf_json_free(run);
    /* two devices only: the stages cannot share them, so they run one after the other */
    CHECK_INT(mf(&out, "run g.yaml --gpus 5,7 --force g1 g2"), 0);
    free(out);
    run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "g1"), "devices", ""), "5,7");
    CHECK_STR(mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "g2"), "devices", ""), "5,7");
    CHECK(t_of(run, "g1", "ended_unix") <= t_of(run, "g2", "started_unix") ||
          t_of(run, "g2", "ended_unix") <= t_of(run, "g1", "started_unix"));
    mf_json_free(run);
    /* more GPUs than the machine has is an error before anything starts */
    CHECK_INT(mf(&out, "run g.yaml --gpus 0 --force g1"), 2);
    CHECK_CONTAINS(out, "needs 2 GPUs but this machine has 1");
    free(out);
}

TEST(test_run_n_rank_stage_gets_n_ranks_disjoint_devices_one_rendezvous)
{
    write_graph("g.yaml", "name: ranks\nstages:\n  r: {kind: ranks, resources: {gpus: 3}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml --gpus 0,1,2,3"), 0); /* the kind itself fails on a bad assignment */
    CHECK_CONTAINS(out, "r: started (3 ranks, gpus 0,1,2)");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_INT(mf_json_get_int(mf_json_get(mf_json_get(run, "manifests"), "r"), "ranks", 0), 3);
    const char *log = mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "r"), "log_path", "");
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", mf_test_tmpdir(), log);
    char *text = mf_test_read(p);
    CHECK_CONTAINS(text, "rank 0/3 devices '0'");
    CHECK_CONTAINS(text, "rank 1/3 devices '1'");
    CHECK_CONTAINS(text, "rank 2/3 devices '2'");
    free(text);
    mf_json_free(run);
    /* no GPUs: the CPU backend runs the stage as one rank */
    CHECK_INT(mf(&out, "run g.yaml --gpus '' --force r"), 0);
    free(out);
    run = last_run();
    REQUIRE(run != NULL);
    CHECK_INT(mf_json_get_int(mf_json_get(mf_json_get(run, "manifests"), "r"), "ranks", 0), 1);
    mf_json_free(run);
}

#define FAILING                                                             \
    "name: f\nstages:\n"                                                    \
    "  bad: {kind: fail, params: {message: boom}}\n"                       \
    "  after: {kind: copy-input, inputs: {in: bad}}\n"                     \
    "  other: {kind: sleep, params: {seconds: 0.1}}\n"

TEST(test_run_failed_stage_stops_new_starts_and_shows_log_tail)
{
    write_graph("g.yaml", FAILING);
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml -j 1"), 1);
    CHECK_CONTAINS(out, "bad: FAILED (exit status 1)");
    CHECK_CONTAINS(out, "    | fail: boom");
    CHECK_CONTAINS(out, "full log: .medflow/logs/");
    CHECK(!strstr(out, "other: started"));
    CHECK(!strstr(out, "fail: log line 1\n")); /* only the tail */
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(mf_json_get_str(run, "outcome", ""), "failed");
    CHECK_STR(outcome(run, "bad"), "failed");
    CHECK(mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "bad"), "log", NULL) != NULL);
    mf_json_free(run);
    CHECK_INT(mf(&out, "log"), 0); /* failed runs are in the ledger too */
    CHECK_CONTAINS(out, "f@1");
    CHECK_CONTAINS(out, "failed");
    free(out);
    /* nothing of the failed stage was published */
    CHECK_INT(mf_test_sh(NULL, NULL, "grep -rl 'never published' '%s/.medflow/trees' '%s/.medflow/tmp' 2>/dev/null",
                         mf_test_tmpdir(), mf_test_tmpdir()), 1);
}

TEST(test_run_keep_going_runs_independent_branches)
{
    write_graph("g.yaml", FAILING);
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml -j 1 --keep-going"), 1);
    CHECK_CONTAINS(out, "other: done");
    CHECK(!strstr(out, "after: started"));
    CHECK_CONTAINS(out, "1 stage failed, 1 ran, 1 blocked");
    free(out);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "other  cached");
    CHECK_CONTAINS(out, "bad    stale: the last attempt failed (run ");
    free(out);
}

TEST(test_run_sigint_publishes_nothing_and_next_run_resumes)
{
    write_graph("g.yaml", "name: i\nstages:\n"
                          "  slow: {kind: write-file, params: {text: S, seconds: 30}}\n"
                          "  next: {kind: copy-input, inputs: {in: slow}}\n");
    char *out = NULL;
    /* start, wait until the stage is running, Ctrl-C the engine */
    int rc = mf_test_sh(&out, NULL,
                        "cd '%s' && { MEDFLOW_KILL_GRACE=5 '%s' run g.yaml > run.out 2>&1 & P=$!; "
                        "for i in $(seq 100); do grep -q 'slow: started' run.out && break; sleep 0.05; done; "
                        "sleep 0.2; kill -INT $P; wait $P; echo rc=$?; cat run.out; }",
                        mf_test_tmpdir(), bin());
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "rc=130");
    CHECK_CONTAINS(out, "interrupted; nothing partial was published");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(mf_json_get_str(run, "outcome", ""), "interrupted");
    CHECK_STR(outcome(run, "slow"), "interrupted");
    mf_json_free(run);
    CHECK_INT(mf(&out, "log"), 0);
    CHECK_CONTAINS(out, "interrupted");
    free(out);
    /* tmp/ is empty, no tree holds the partial output, no action-cache entry */
    CHECK_INT(mf_test_sh(&out, NULL, "ls -A '%s/.medflow/tmp' | wc -l; ls -A '%s/.medflow/keys' | wc -l",
                         mf_test_tmpdir(), mf_test_tmpdir()), 0);
    CHECK_STR(out, "0\n0\n");
    free(out);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "slow  stale: the last attempt was interrupted (run ");
    free(out);
    /* the stage's work dir (checkpoints) survived for the next attempt */
    CHECK_INT(mf_test_sh(&out, NULL, "cat '%s'/.medflow/work/*/attempts", mf_test_tmpdir()), 0);
    CHECK_STR(out, "1\n");
    free(out);
}

TEST(test_run_after_interrupt_next_run_completes)
{
    write_graph("g.yaml", "name: i2\nstages:\n"
                          "  slow: {kind: write-file, params: {text: S, seconds: 0.5}}\n"
                          "  next: {kind: copy-input, inputs: {in: slow}}\n");
    char *out = NULL;
    mf_test_sh(&out, NULL,
               "cd '%s' && { '%s' run g.yaml > run.out 2>&1 & P=$!; "
               "for i in $(seq 100); do grep -q 'slow: started' run.out && break; sleep 0.05; done; "
               "kill -TERM $P; wait $P; echo rc=$?; }",
               mf_test_tmpdir(), bin());
    CHECK_CONTAINS(out, "rc=130");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "2 ran");
    free(out);
    CHECK_INT(mf(&out, "status g.yaml"), 0);
    CHECK_CONTAINS(out, "2 cached, 0 stale");
    free(out);
}

TEST(test_run_targets_run_only_what_they_need_and_dry_run_starts_nothing)
{
    char p[PATH_MAX], *out = NULL;
    snprintf(p, sizeof p, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(p, "one\n");
    write_graph("g.yaml", CHAIN("A", ""));
    CHECK_INT(mf(&out, "run g.yaml --dry-run"), 0);
    CHECK_CONTAINS(out, "would run: a (never ran)");
    CHECK_CONTAINS(out, "would run if its inputs change: b");
    free(out);
    CHECK_INT(mf_test_sh(NULL, NULL, "test -d '%s/.medflow/logs' && ls -A '%s/.medflow/logs' | grep -q .", mf_test_tmpdir(), mf_test_tmpdir()), 1);
    CHECK_INT(mf(&out, "run g.yaml b"), 0);
    CHECK_CONTAINS(out, "2 ran");
    CHECK(!strstr(out, "c: started"));
    free(out);
    CHECK_INT(mf(&out, "run g.yaml nosuch"), 2);
    CHECK_CONTAINS(out, "no stage named 'nosuch'");
    free(out);
}

TEST(test_stage_exec_kind_without_implementation_fails_clearly)
{
    char p[PATH_MAX], *out = NULL;
    snprintf(p, sizeof p, "%s/spec.json", mf_test_tmpdir());
    mf_test_write(p, "{\"stage\": \"x\", \"kind\": \"no-impl\", \"params\": {}, \"inputs\": {}, \"out_dir\": \"out\"}");
    CHECK_INT(mf(&out, "stage-exec spec.json"), 1);
    CHECK_CONTAINS(out, "stage kind 'no-impl' (version 3) has no implementation in this build");
    free(out);
    mf_test_write(p, "{\"stage\": \"x\", \"kind\": \"nosuch\", \"params\": {}, \"inputs\": {}, \"out_dir\": \"out\"}");
    CHECK_INT(mf(&out, "stage-exec spec.json"), 2);
    CHECK_CONTAINS(out, "unknown stage kind 'nosuch'");
    free(out);
}

/* --backend travels to the stage through its spec; the stage reports the backend it built its model on
 * and the manifest records both (the key does not change: a second run with another --backend is cached). */
TEST(test_run_backend_goes_through_the_spec_and_into_the_manifest_not_the_key)
{
    write_graph("g.yaml", "name: be\nstages:\n  m: {kind: tiny-model}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml --backend cpu"), 0);
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    const mf_json *man = mf_json_get(mf_json_get(run, "manifests"), "m");
    CHECK_STR(mf_json_get_str(man, "backend_requested", ""), "cpu");
    CHECK_STR(mf_json_get_str(man, "backend", ""), "cpu");
    CHECK(mf_json_get(man, "device") == NULL); /* no device name on the CPU */
    char key[128];
    snprintf(key, sizeof key, "%s", mf_json_get_str(man, "key", ""));
    const char *log = mf_json_get_str(man, "log_path", "");
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", mf_test_tmpdir(), log);
    char *text = mf_test_read(p);
    CHECK_CONTAINS(text, "medflow stage-exec: backend cpu");
    free(text);
    mf_json_free(run);
    /* another backend is not another key: nothing to do */
    CHECK_INT(mf(&out, "run g.yaml --backend auto"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    free(out);
    /* forced, no --backend and no MEDFLOW_BACKEND: auto, which is cpu without a usable GPU */
    CHECK_INT(mf(&out, "run g.yaml --force m --backend auto"), 0);
    free(out);
    run = last_run();
    REQUIRE(run != NULL);
    man = mf_json_get(mf_json_get(run, "manifests"), "m");
    CHECK_STR(mf_json_get_str(man, "backend_requested", ""), "auto");
    CHECK_STR(mf_json_get_str(man, "key", ""), key);
#ifndef MF_HAVE_CUDA
    CHECK_STR(mf_json_get_str(man, "backend", ""), "cpu");
#endif
    mf_json_free(run);
}

TEST(test_run_backend_errors_are_clear)
{
    write_graph("g.yaml", "name: be\nstages:\n  m: {kind: tiny-model}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml --backend gpu"), 2);
    CHECK_CONTAINS(out, "--backend: expected auto, cpu or cuda, found 'gpu'");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml --backend=cuda"), 2);
#ifndef MF_HAVE_CUDA
    CHECK_CONTAINS(out, "this medflow was built without CUDA; rebuild with make CUDA=1");
#else
    CHECK_CONTAINS(out, "backend cuda (from --backend)");
#endif
    free(out);
    CHECK_INT(mf(&out, "run g.yaml"), 0); /* the errors started nothing: now it runs */
    CHECK_CONTAINS(out, "1 to run");
    free(out);
}

TEST(test_run_medflow_backend_env_is_checked_and_recorded)
{
    write_graph("g.yaml", "name: be\nstages:\n  m: {kind: tiny-model}\n");
    char *o = NULL, *e = NULL;
    int st = mf_test_sh(&o, &e, "cd '%s' && MEDFLOW_BACKEND=tpu '%s' run g.yaml", mf_test_tmpdir(), bin());
    CHECK_INT(st, 2);
    CHECK_CONTAINS(e, "MEDFLOW_BACKEND: expected auto, cpu or cuda, found 'tpu'");
    free(o);
    free(e);
    st = mf_test_sh(&o, &e, "cd '%s' && MEDFLOW_BACKEND=cpu '%s' run g.yaml", mf_test_tmpdir(), bin());
    CHECK_INT(st, 0);
    free(o);
    free(e);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "m"), "backend_requested", ""), "cpu");
    mf_json_free(run);
}

/* A spec asking for cuda in a build (or on a machine) without it: the stage fails saying why. */
TEST(test_stage_exec_backend_cuda_without_cuda_fails_clearly)
{
    char spec[PATH_MAX], out[PATH_MAX];
    snprintf(out, sizeof out, "%s/out", mf_test_tmpdir());
    snprintf(spec, sizeof spec, "%s/spec.json", mf_test_tmpdir());
    char text[2 * PATH_MAX];
    snprintf(text, sizeof text,
             "{\"stage\": \"m\", \"kind\": \"tiny-model\", \"params\": {}, \"inputs\": {}, \"out_dir\": \"%s\", "
             "\"backend\": \"cuda\"}",
             out);
    mf_test_write(spec, text);
    mf_test_sh(NULL, NULL, "mkdir -p '%s'", out);
    char *o = NULL, *e = NULL;
    int st = mf_test_sh(&o, &e, "CUDA_VISIBLE_DEVICES= '%s' stage-exec '%s'", bin(), spec);
    CHECK_INT(st, 1);
#ifndef MF_HAVE_CUDA
    CHECK_CONTAINS(e, "backend cuda (from --backend of the run): this medflow was built without CUDA; rebuild with make CUDA=1");
#else
    CHECK_CONTAINS(e, "backend cuda (from --backend of the run): no usable CUDA device");
#endif
    free(o);
    free(e);
    /* a bad backend name in the spec is a bad spec */
    snprintf(text, sizeof text,
             "{\"stage\": \"m\", \"kind\": \"tiny-model\", \"params\": {}, \"inputs\": {}, \"out_dir\": \"%s\", "
             "\"backend\": \"gpu\"}",
             out);
    mf_test_write(spec, text);
    st = mf_test_sh(&o, &e, "'%s' stage-exec '%s'", bin(), spec);
    CHECK_INT(st, 2);
    CHECK_CONTAINS(e, "spec \"backend\": expected auto, cpu or cuda, found 'gpu'");
    free(o);
    free(e);
}

/* A `gpus: 2` training stage runs 2 data-parallel ranks. This build has no NCCL (or this machine no GPU):
 * both ranks fail with the reason, and a failed rank takes the other down instead of leaving it waiting. */
TEST(test_run_data_parallel_training_without_nccl_fails_clearly)
{
    const char *d = mf_test_tmpdir();
    REQUIRE(mf_test_sh(NULL, NULL, "cp '%s/tests/stages/fixtures/data/tokenizer.json' '%s/tokenizer.json' && "
                                   "head -20 '%s/examples/data/pretrain.jsonl' > '%s/text.jsonl'",
                       mf_test_root(), d, mf_test_root(), d) == 0);
    write_graph("g.yaml",
                "name: dp\n"
                "sources:\n"
                "  tok: {path: tokenizer.json}\n"
                "  text: {path: text.jsonl, format: text}\n"
                "stages:\n"
                "  base:\n"
                "    kind: init\n"
                "    inputs: {tokenizer: tok}\n"
                "    params: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2,\n"
                "             max_position_embeddings: 64}\n"
                "  pt:\n"
                "    kind: dcpt\n"
                "    inputs: {model: base, data: text}\n"
                "    params: {block_size: 16, max_steps: 2, batch_size: 2, grad_accum: 2}\n"
                "    resources: {gpus: 2}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml --gpus 0,1"), 1);
    CHECK_CONTAINS(out, "pt: started (2 ranks, gpus 0,1)");
#ifndef MF_HAVE_CUDA
    CHECK_CONTAINS(out, "data-parallel training (2 ranks) needs NCCL: this medflow was built without CUDA; rebuild with make CUDA=1");
#endif
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    const mf_json *man = mf_json_get(mf_json_get(run, "manifests"), "pt");
    CHECK_STR(mf_json_get_str(man, "status", ""), "failed");
    CHECK_INT(mf_json_get_int(man, "ranks", 0), 2);
    mf_json_free(run);
}

/* A stage's warning (mf_stage_warn) is an event line of the run's output, a line of the stage's log
 * and an entry of its manifest — not a progress message a redrawn table or the next line hides. */
TEST(test_run_shows_stage_warnings_and_records_them_in_the_manifest)
{
    write_graph("g.yaml", "name: warn\n"
                          "stages:\n"
                          "  w: {kind: write-file, params: {text: x, warn: \"policy collapsed: 2 distinct answers\"}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "w: warning: policy collapsed: 2 distinct answers");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run);
    const mf_json *w = mf_json_get(mf_json_get(mf_json_get(run, "manifests"), "w"), "warnings");
    REQUIRE(w && w->n == 1);
    CHECK_STR(w->items[0]->s, "policy collapsed: 2 distinct answers");
    const char *log = mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), "w"), "log_path", "");
    char *text = NULL, path[PATH_MAX];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", log[0] == '/' ? "" : mf_test_tmpdir(), log);
    REQUIRE(mf_read_file(path, &text, &len, NULL) == 0);
    CHECK_CONTAINS(text, "medflow: warning: policy collapsed");
    free(text);
    mf_json_free(run);
}
