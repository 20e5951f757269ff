/*
 * engine/cmd_repair.c — `medflow verify --repair` (docs/store.md).
 *
 * In order: runs whose engine died before recording them are recorded
 * (engine/journal.h); the store repairs what it can from good copies
 * (artifacts/store_repair.c); an object it could only move aside is
 * recomputed by running its producer again — the stage the ledger says
 * produced it, from the graph file that run used (`medflow run GRAPH STAGE`),
 * which gives the same digest only while that stage's inputs are unchanged;
 * a damaged ledger is rebuilt from the run records in logs/ (the damaged copy
 * kept aside). Then everything is verified again, and what is still wrong is
 * named: exit 1.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "engine/cli.h"
#include "engine/exec.h"
#include "engine/journal.h"

typedef struct repair_ctx {
    mf_digest *recompute; /* objects moved aside whose producer must run again */
    size_t n_recompute;
} repair_ctx;

static void on_repair(void *ctx, const char *what, const mf_digest *d, int outcome, const char *how)
{
    repair_ctx *c = ctx;
    char ds[72];
    const char *tag = outcome == MF_REPAIR_FIXED ? "repaired" : outcome == MF_REPAIR_RECOMPUTE ? "bad" : "NOT repaired";
    printf("%s %s %s: %s\n", tag, what, mf_digest_str(d, ds), how);
    if (outcome != MF_REPAIR_RECOMPUTE) return;
    mf_digest *v = realloc(c->recompute, (c->n_recompute + 1) * sizeof *v);
    if (!v) return; /* then it is only reported */
    c->recompute = v;
    v[c->n_recompute++] = *d;
}

/* `medflow run GRAPH STAGE --store DIR -q` as a child; its exit status. */
static int run_child(const char *store, const char *graph, const char *stage)
{
    char exe[4096];
    mf_err e;
    if (mf_exec_self(exe, sizeof exe, &e)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execl(exe, exe, "--store", store, "run", graph, stage, "-q", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run the producer of d again; 1 if d is back in the store. */
static int recompute_one(mf_ledger *l, mf_store *s, const char *store, const mf_digest *d)
{
    mf_ledger_run *run = NULL;
    char *stage = NULL, ds[72];
    mf_err e;
    mf_digest_str(d, ds);
    int back = 0;
    if (!l || mf_ledger_producer(l, d, &run, &stage, &e)) {
        printf("NOT repaired object %s: no run in the ledger produced it, so nothing can recompute it\n", ds);
        return 0;
    }
    const char *graph = mf_json_get_str(run->run, "graph_path", "");
    if (!*graph || !mf_is_file(graph)) {
        printf("NOT repaired object %s: stage '%s' of %s@%d produced it, but its graph file '%s' is gone\n", ds, stage,
               run->graph, run->number, graph);
        goto out;
    }
    printf("recomputing object %s: running stage '%s' of %s again\n", ds, stage, graph);
    int rc = run_child(store, graph, stage);
    back = mf_store_has(s, d);
    if (back) printf("repaired object %s: recomputed by stage '%s'\n", ds, stage);
    else
        printf("NOT repaired object %s: stage '%s' %s (its inputs changed since %s@%d, so it computes another output)\n",
               ds, stage, rc ? "failed" : "ran", run->graph, run->number);
out:
    mf_ledger_run_free(run);
    free(stage);
    return back;
}

static void ledger_bad(void *ctx, const char *id, const mf_err *e)
{
    (void)ctx;
    printf("damaged ledger object %s: %s\n", id, e->msg);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every logs/<run>/run.json, sorted (run ids sort by time). */
static int run_records(const char *store, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *logs = mf_path_join(store, "logs");
    DIR *d = logs ? opendir(logs) : NULL;
    int rc = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        mf_buf b = MF_BUF_INIT;
        mf_buf_printf(&b, "%s/%s/run.json", logs, de->d_name);
        if (!mf_buf_ok(&b)) { rc = MF_ENOMEM; break; }
        if (!mf_is_file(b.data)) { mf_buf_free(&b); continue; }
        char **v = realloc(*out, (*n + 1) * sizeof *v);
        if (!v) { mf_buf_free(&b); rc = MF_ENOMEM; break; }
        *out = v;
        v[(*n)++] = mf_buf_steal(&b);
    }
    if (d) closedir(d);
    free(logs);
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_str);
    return rc;
}

/* A damaged ledger: moved aside, and a new one made of the run records in logs/. */
static int rebuild_ledger(const char *store, mf_err *err)
{
    char *g = mf_path_join(store, "ledger.git"), *idx = mf_path_join(store, "ledger.idx");
    char aside[4096];
    char **recs = NULL;
    size_t n = 0, done = 0;
    mf_ledger *l = NULL;
    int rc = 0;
    if (!g || !idx) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    snprintf(aside, sizeof aside, "%s.damaged-%ld", g, (long)getpid());
    if (rename(g, aside) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot move %s aside", g); goto out; }
    unlink(idx);
    if ((rc = mf_ledger_open(&l, store, err))) goto out;
    if (run_records(store, &recs, &n)) { rc = mf_err_set(err, MF_EIO, "cannot list %s/logs", store); goto out; }
    for (size_t k = 0; k < n; k++) {
        mf_json *rec = NULL, *man = NULL;
        char *text = NULL;
        size_t len = 0;
        mf_err e;
        const mf_json *m = NULL;
        if (mf_json_parse_file(&rec, recs[k], &e) == 0 && (m = mf_json_get(rec, "manifests")) && (man = mf_json_clone(m)) &&
            mf_json_del(rec, "manifests") == 1) {
            const char *gp = mf_json_get_str(rec, "graph_path", "");
            if (!*gp || mf_read_file(gp, &text, &len, &e)) text = NULL; /* the graph file as it is now, if any */
            if (mf_ledger_commit_run(l, mf_json_get_str(rec, "graph", "graph"), text ? text : "", text ? len : 0, rec, man,
                                     NULL, NULL, &e) == 0)
                done++;
        }
        free(text);
        mf_json_free(man);
        mf_json_free(rec);
    }
    printf("repaired the ledger: rebuilt from %zu of %zu run records in %s/logs (the damaged copy is %s; its tags are "
           "not carried over; each run's graph.yaml is its graph file as it is now)\n",
           done, n, store, aside);
out:
    for (size_t k = 0; k < n; k++) free(recs[k]);
    free(recs);
    mf_ledger_free(l);
    free(g);
    free(idx);
    return rc;
}

int mf_cmd_verify_repair(const char *store)
{
    mf_err err;
    mf_err_clear(&err);
    mf_store *s = NULL;
    mf_ledger *l = NULL;
    repair_ctx c = {0};
    mf_buf rec = MF_BUF_INIT;
    int code = MF_EXIT_OK;
    if (mf_journal_recover(store, NULL, &rec, &err)) printf("NOT repaired: %s\n", err.msg);
    fputs(mf_buf_cstr(&rec), stdout);
    mf_buf_free(&rec);
    if (mf_store_open(&s, store, &err)) return mf_cli_report(&err);
    char *g = mf_path_join(store, "ledger.git");
    int have_ledger = g && mf_is_dir(g);
    free(g);
    size_t lbad = 0;
    if (have_ledger && (mf_ledger_open(&l, store, &err) || mf_ledger_verify(l, ledger_bad, NULL, &lbad, &err) || lbad)) {
        mf_ledger_free(l);
        l = NULL;
        if (rebuild_ledger(store, &err)) {
            printf("NOT repaired the ledger: %s\n", err.msg);
            code = MF_EXIT_FAILED;
        } else if (mf_ledger_open(&l, store, &err)) l = NULL;
    }
    mf_store_repair_stats st;
    if (mf_store_repair(s, on_repair, &c, &st, &err)) {
        code = mf_cli_report(&err);
        goto out;
    }
    size_t recomputed = 0;
    for (size_t k = 0; k < c.n_recompute; k++) recomputed += recompute_one(l, s, store, &c.recompute[k]);
    size_t left = st.unfixed + (c.n_recompute - recomputed);
    if (left) code = MF_EXIT_FAILED;
    printf("repair: %zu fixed from good copies, %zu recomputed, %zu not repaired\n", st.fixed, recomputed, left);
out:
    free(c.recompute);
    mf_ledger_free(l);
    mf_store_free(s);
    return code;
}
