/*
 * engine/run.h — the builder: runs a plan's stale stages (Ninja's "builder").
 *
 * mf_run_execute takes a plan (engine/plan.h) and loops: stages whose
 * upstreams are all CACHED or DONE are resolved again (early cut-off: an
 * identical upstream output makes them cached), packed onto the machine
 * (engine/sched.h) and started as `stage-exec` processes by the executor
 * (engine/executor.h: local processes, or Slurm jobs submitted when ready);
 * their progress is shown (engine/progress.h); a finished stage's output is
 * published into the store, its action-cache entry and manifest written, and
 * its dependents become ready. Failures stop new starts (unless keep_going);
 * SIGINT/SIGTERM are forwarded, then SIGKILL after a grace period; temporary
 * outputs are removed; nothing partial is published. Every run that started
 * anything is recorded (logs/<run>/run.json and the ledger) with its outcome.
 *
 * The store is reached only through mf_run_io, implemented over artifacts/
 * in engine/estore.c.
 */
#ifndef MF_RUN_H
#define MF_RUN_H

#include <stdio.h>
#include "common/json.h"
#include "engine/plan.h"

typedef struct mf_run_io {
    mf_plan_io plan;        /* plan.ctx is passed to every function below */
    const char *tmp_dir;    /* outputs in progress (same filesystem as the store) */
    const char *work_dir;   /* work/<key> persists across attempts */
    const char *log_dir;    /* logs/<run>/<stage>.log and logs/<run>/run.json */
    /* Read-only directory holding artifact `digest` (malloc'd path). */
    int (*materialise)(void *ctx, const char *digest, char **path, mf_err *err);
    /* Put directory dir into the store; its tree digest into out. dir may be consumed. */
    int (*publish)(void *ctx, const char *dir, char out[MF_DIGEST_MAX], mf_err *err);
    /* Action cache: key -> output (and the run that made it, and the build identity it ran with: "" if none). */
    int (*cache_put)(void *ctx, const char *key_hex, const char *output, const char *run_id, const char *build,
                     mf_err *err);
    /* Store one file (a log) and give its digest. May be NULL. */
    int (*put_file)(void *ctx, const char *path, char out[MF_DIGEST_MAX], mf_err *err);
    /* The build lock of a stage key, so that engines sharing a store build a key once: 0 with
     * *handle held; MF_EBUSY with the holder's pid in *holder (0: not known) when another process
     * builds it. Never blocks. key_unlock releases it (after cache_put). Both may be NULL. */
    int (*key_lock)(void *ctx, const char *key_hex, int *handle, long *holder, mf_err *err);
    void (*key_unlock)(void *ctx, const char *key_hex, int handle);
    /* The run's journal (engine/journal.h): opened with its header once the run starts, then every
     * manifest appended before the stage's action-cache entry is written, so that a run killed before
     * its ledger commit is recovered by the next one. Both may be NULL (no journal). */
    int (*journal_open)(void *ctx, const mf_json *head, mf_err *err);
    int (*journal_append)(void *ctx, const mf_json *manifests, mf_err *err);
    /* Commit the run to the ledger (and close the journal); a name for it ("GRAPH@N (commit)") into ref.
     * May be NULL. */
    int (*ledger_commit)(void *ctx, const mf_graph *g, const mf_json *run_record, const mf_json *manifests,
                         char *ref, size_t ref_len, mf_err *err);
} mf_run_io;

typedef struct mf_run_opts {
    int jobs;               /* -j: concurrent stages, 0 = as resources allow */
    const char *gpus;       /* --gpus list, NULL = discover */
    int keep_going;
    const char *exe;        /* binary for stage-exec; NULL = /proc/self/exe */
    double grace_s;         /* SIGTERM -> SIGKILL grace (default 10) */
    FILE *out;              /* progress and summary (stdout) */
    int tty, quiet, verbose;
    const char *backend;    /* --backend auto|cpu|cuda for every stage (spec "backend"); NULL = auto */
    const char *executor;   /* "local" (NULL) or "slurm" (engine/executor.h) */
    const char *partition;  /* Slurm: for stages whose resources name none */
    const char *account;
} mf_run_opts;

typedef struct mf_run_result {
    char run_id[64];
    char ledger_ref[128];   /* "GRAPH@N (commit)" once recorded, else "" */
    char record_error[1024]; /* why the run could not be recorded ("" when it was): an error, exit 1 */
    int outcome;            /* 0 success, MF_EFAILED, MF_EINTERRUPTED */
    size_t n_ran, n_failed, n_cached, n_cutoff, n_blocked;
} mf_run_result;

/* Returns 0, or an error code for a problem of the engine itself; a stage
 * failure or an interruption is reported in res->outcome. */
int mf_run_execute(mf_plan *p, const mf_run_io *io, const mf_run_opts *o, mf_run_result *res, mf_err *err);

#endif
