/*
 * tests/engine/test_run_shared.c — several engines on one store: a run
 * waits for a stage key another process is building and says by whom, and
 * four engines running two graphs that share stages, one of them killed
 * with SIGKILL, all finish and leave a store that verifies. Through
 * build/<cfg>/tests/medflow-testkinds (the real engine plus the test kinds).
 */
#include "tests/engine/runutil.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "common/fsutil.h"

/* Stage `stage`'s key in graph file `graph` (from `status --json`). */
static void stage_key(const char *graph, const char *stage, char out[80])
{
    char cmd[256], *js = NULL;
    out[0] = 0;
    snprintf(cmd, sizeof cmd, "status %s --json", graph);
    REQUIRE(mf(&js, cmd) == 0);
    mf_json *v = NULL;
    mf_err err;
    REQUIRE(js && mf_json_parse(&v, js, strlen(js), "status", &err) == 0);
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(mf_json_get_str(v->items[i], "stage", ""), stage))
            snprintf(out, 80, "%s", mf_json_get_str(v->items[i], "key", ""));
    mf_json_free(v);
    free(js);
    REQUIRE(out[0]);
}

/* Wait (up to a minute: a failure guard, not a timing assertion) until file tmpdir/name holds needle. */
static char *wait_for(const char *name, const char *needle)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", mf_test_tmpdir(), name);
    for (int k = 0; k < 1200; k++) {
        char *text = NULL;
        size_t len;
        mf_err e;
        if (mf_read_file(p, &text, &len, &e) == 0 && strstr(text, needle)) return text;
        free(text);
        usleep(50 * 1000);
    }
    mf_test_fail(__FILE__, __LINE__, "%s never showed '%s'", name, needle);
    return NULL;
}

TEST(test_run_waits_for_a_key_another_process_builds_and_names_it)
{
    write_graph("g.yaml", "name: w\nstages:\n"
                          "  a: {kind: write-file, params: {text: A}}\n"
                          "  b: {kind: copy-input, inputs: {in: a}}\n");
    char key[80], dir[PATH_MAX];
    stage_key("g.yaml", "a", key);
    snprintf(dir, sizeof dir, "%s/.medflow", mf_test_tmpdir());
    mf_store *s = NULL;
    mf_digest k;
    mf_err err;
    CHECK_OK(mf_store_open(&s, dir, &err));
    CHECK_OK(mf_digest_parse(&k, key, &err));
    int fd = -1;
    long holder = 0;
    CHECK_OK(mf_store_key_lock(s, &k, MF_LOCK_NOWAIT, &fd, &holder, &err)); /* this process "builds" a */
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && ( '%s' run g.yaml > w.out 2>&1; echo $? > w.rc ) </dev/null >/dev/null 2>&1 &",
                       mf_test_tmpdir(), bin()) == 0);
    char needle[128];
    snprintf(needle, sizeof needle, "waiting for stage a, being built by pid %ld", (long)getpid());
    free(wait_for("w.out", needle));
    mf_store_key_unlock(s, &k, fd); /* gone without a result: the waiting engine builds it itself */
    free(wait_for("w.rc", "\n"));
    char *rc = NULL, *out = NULL, p[PATH_MAX];
    snprintf(p, sizeof p, "%s/w.rc", mf_test_tmpdir());
    rc = mf_test_read(p);
    snprintf(p, sizeof p, "%s/w.out", mf_test_tmpdir());
    out = mf_test_read(p);
    CHECK_STR(rc, "0\n");
    CHECK_CONTAINS(out, "a: started");
    CHECK_CONTAINS(out, "2 ran");
    free(rc);
    free(out);
    /* the lock file went with the lock */
    CHECK(mf_test_sh(NULL, NULL, "[ -z \"$(ls -A '%s/locks')\" ]", dir) == 0);
    mf_store_free(s);
}

/* Two graphs sharing `base` and `mid` (same kind, params and inputs: same keys). */
#define SHARED_STAGES                                                         \
    "  base: {kind: write-file, params: {text: shared, seconds: 0.3}}\n"      \
    "  mid: {kind: copy-input, inputs: {in: base}, params: {tag: m}}\n"       \
    "  other: {kind: write-file, params: {text: other, seconds: 0.2}}\n"

TEST(test_run_four_engines_two_graphs_share_a_store_through_a_kill)
{
    write_graph("a.yaml", "name: ga\nstages:\n" SHARED_STAGES "  own_a: {kind: copy-input, inputs: {in: mid}, params: {tag: a}}\n");
    write_graph("b.yaml", "name: gb\nstages:\n" SHARED_STAGES "  own_b: {kind: copy-input, inputs: {in: other}, params: {tag: b}}\n");
    /* engines 1, 2, 4 run to the end; engine 3 is killed (SIGKILL) while it works */
    const char *d = mf_test_tmpdir(), *b = bin();
    int rc = mf_test_sh(NULL, NULL,
                        "cd '%s' || exit 1; "
                        "( '%s' run a.yaml > e1.out 2>&1; echo $? > e1.rc ) & "
                        "( '%s' run b.yaml > e2.out 2>&1; echo $? > e2.rc ) & "
                        "'%s' run a.yaml > e3.out 2>&1 & k=$!; "
                        "( '%s' run b.yaml > e4.out 2>&1; echo $? > e4.rc ) & "
                        "sleep 0.2; kill -9 $k; wait",
                        d, b, b, b, b);
    CHECK_INT(rc, 0);
    size_t base_builds = 0;
    for (int e = 1; e <= 4; e++) {
        if (e == 3) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/e%d.rc", d, e);
        char *code = mf_test_read(p);
        snprintf(p, sizeof p, "%s/e%d.out", d, e);
        char *out = mf_test_read(p);
        if (!code || strcmp(code, "0\n")) mf_test_fail(__FILE__, __LINE__, "engine %d exited %s:\n%s", e, code ? code : "?", out ? out : "");
        CHECK(!out || !strstr(out, "in use"));
        for (const char *q = out; q && (q = strstr(q, "base: started")); q++) base_builds++;
        free(code);
        free(out);
    }
    CHECK(base_builds <= 1); /* each key is built once among the engines that lived (engine 3 may have built it) */
    /* everything is recorded and cached; the store and the ledger are intact */
    char *out = NULL;
    CHECK_INT(mf(&out, "run a.yaml"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    free(out);
    CHECK_INT(mf(&out, "run b.yaml"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    free(out);
    CHECK_INT(mf(&out, "verify"), 0);
    CHECK_CONTAINS(out, "all good");
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "git --git-dir '%s/.medflow/ledger.git' fsck --strict 2>&1", d), 0);
    free(out);
    CHECK_INT(mf(&out, "gc"), 0); /* no run holds the store any more */
    free(out);
    CHECK_INT(mf(&out, "verify"), 0);
    free(out);
}

TEST(test_run_stage_waits_for_an_earlier_attempt_still_in_its_work_dir)
{
    write_graph("g.yaml", "name: wd\nstages:\n  a: {kind: write-file, params: {text: A}}\n");
    char key[80], dir[PATH_MAX], lock[PATH_MAX + 32];
    stage_key("g.yaml", "a", key);
    snprintf(dir, sizeof dir, "%s/.medflow/work/%s", mf_test_tmpdir(), key + 7);
    snprintf(lock, sizeof lock, "%s/.rank0.lock", dir);
    mf_err err;
    CHECK_OK(mf_mkdir_p(dir, 0755, &err));
    /* this process plays an attempt whose engine died and which is still stopping */
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX) == 0);
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && ( '%s' run g.yaml > w.out 2>&1; echo $? > w.rc ) </dev/null >/dev/null 2>&1 &",
                       mf_test_tmpdir(), bin()) == 0);
    char *log = NULL;
    for (int k = 0; k < 1200 && !log; k++) { /* the stage's log names the wait */
        char *hit = NULL;
        mf_test_sh(&hit, NULL, "grep -l 'earlier attempt of this stage is still stopping' '%s'/.medflow/logs/*/a.log 2>/dev/null",
                   mf_test_tmpdir());
        if (hit && *hit) log = hit;
        else { free(hit); usleep(50 * 1000); }
    }
    REQUIRE(log);
    free(log);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/w.rc", mf_test_tmpdir());
    CHECK(access(p, F_OK) != 0); /* still waiting */
    close(fd); /* it has stopped */
    free(wait_for("w.rc", "\n"));
    char *rc = mf_test_read(p);
    CHECK_STR(rc, "0\n");
    free(rc);
}
