/*
 * engine/exec_local.c — the local executor (see executor.h): a stage's
 * ranks are children of the engine on this machine.
 *
 * Direct ranks: one fork+exec of `medflow stage-exec spec.<k>.json` per
 * rank, all in the process group of rank 0 (so a signal reaches the whole
 * stage and nothing else), stdout and stderr into the stage's log, progress
 * on a pipe that becomes the rank's fd 3; each rank gets its own device
 * (CUDA_VISIBLE_DEVICES) and its share of the stage's cores
 * (OMP_NUM_THREADS). A rank that fails takes its peers down at once: they
 * would otherwise wait for it forever inside a collective.
 *
 * MPI ranks (req.comm "mpi": CPU data parallelism): one process,
 * `mpirun -np N --oversubscribe --bind-to none medflow stage-exec spec.json`
 * (MEDFLOW_MPIRUN names another launcher binary), with one spec for every
 * rank (they take their rank from mpirun's environment) and progress in the
 * file job_dir/progress.jsonl, which mpirun's children write and this
 * executor follows. mpirun stops the other ranks when one fails.
 */
#include "engine/executor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "engine/exec.h"

typedef struct lrank {
    pid_t pid;
    int pfd;             /* progress pipe read end, -1 when closed */
    mf_linebuf lb;
    int status, exited;
} lrank;

typedef struct ljob {
    lrank *ranks;
    int n_procs;         /* processes: the ranks, or 1 (mpirun) */
    pid_t pgid;
    int killed;
    char *progress_path; /* mpirun: the file rank 0 reports to */
    long long progress_off;
    mf_linebuf plb;
} ljob;

static void deliver(mf_xjob *j, mf_linebuf *lb)
{
    char *line;
    while ((line = mf_linebuf_next(lb))) j->on_progress(j->ud, line);
}

static void read_pipe(mf_xjob *j, lrank *rk, int rank_no)
{
    int open_ = mf_linebuf_fill(&rk->lb, rk->pfd);
    if (rank_no == 0) deliver(j, &rk->lb);
    else rk->lb.b.len = rk->lb.start = 0; /* only rank 0 reports */
    if (open_ <= 0) {
        close(rk->pfd);
        rk->pfd = -1;
    }
}

/* mpirun's command line: the launcher, its options, then the stage runner. */
static int mpirun_argv(char **argv, size_t cap, char *np, const mf_xjob *j, const char *spec)
{
    size_t n = 0;
    const char *launcher = getenv("MEDFLOW_MPIRUN");
    argv[n++] = (char *)(launcher && *launcher ? launcher : "mpirun");
    argv[n++] = (char *)"-np";
    argv[n++] = np;
    argv[n++] = (char *)"--oversubscribe"; /* more ranks than cores is slow, never a deadlock */
    argv[n++] = (char *)"--bind-to";
    argv[n++] = (char *)"none";            /* the stage's threads share its cores (OMP_NUM_THREADS) */
    if (geteuid() == 0) argv[n++] = (char *)"--allow-run-as-root"; /* the engine itself runs as root here */
    argv[n++] = (char *)j->exe;
    argv[n++] = (char *)"stage-exec";
    argv[n++] = (char *)spec;
    argv[n] = NULL;
    return n < cap ? 0 : -1;
}

/* Process k of the job: rank k, or mpirun for all of them (k = 0). */
static int start_proc(mf_xjob *j, ljob *l, int k, int use_mpirun, mf_err *err)
{
    char *spec = NULL, *own_out = NULL;
    int pp[2] = {-1, -1}, rc = 0;
    /* one device per rank when there are several: rank k gets devs[k] */
    char devone[32];
    const char *devices = j->devices;
    if (j->req.gpus > 0 && j->req.ranks > 1) {
        snprintf(devone, sizeof devone, "%d", j->devs[k]);
        devices = devone;
    }
    /* Only rank 0's out_dir is published; the other ranks of a data-parallel
     * stage run the same kind code and write into a private out_dir of
     * their own under the job dir, removed with it. */
    if (k > 0) {
        char sub[64];
        snprintf(sub, sizeof sub, "rank%d.out", k);
        if (!(own_out = mf_path_join(j->dir, sub))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = mf_mkdir_p(own_out, 0755, err))) goto out;
    }
    mf_xspec xs = {use_mpirun ? -1 : k, devices, k ? own_out : j->out_dir, use_mpirun ? l->progress_path : NULL};
    if ((rc = j->write_spec(j->ud, &xs, &spec, err))) goto out;
    if (!use_mpirun) {
        if (pipe(pp)) {
            rc = mf_err_errno(err, MF_EIO, "pipe");
            goto out;
        }
        fcntl(pp[0], F_SETFD, FD_CLOEXEC);
        fcntl(pp[0], F_SETFL, O_NONBLOCK);
        fcntl(pp[1], F_SETFD, FD_CLOEXEC);
    }
    char np[16], *argv[16];
    snprintf(np, sizeof np, "%d", j->req.ranks);
    mf_exec_spawn_opts so = {j->exe, spec, NULL, j->log_fd, pp[1], l->pgid, devices, 0, "", 0};
    if (use_mpirun && mpirun_argv(argv, sizeof argv / sizeof *argv, np, j, spec) == 0) so.argv = argv;
    so.cpus = j->req.cpus / (j->req.ranks > 0 ? j->req.ranks : 1); /* per rank */
    so.fork_only = !so.argv && j->req.ranks <= 1 && j->req.gpus == 0; /* a one-rank CPU stage: no exec */
    if (so.cpus < 1) so.cpus = 1;
    snprintf(so.threads_str, sizeof so.threads_str, "%d", so.cpus);
    if ((rc = mf_exec_spawn(&l->ranks[k].pid, &so, err))) goto out;
    l->ranks[k].pfd = pp[0];
    pp[0] = -1;
    if (!l->pgid) l->pgid = l->ranks[k].pid;
out:
    if (pp[0] >= 0) close(pp[0]);
    if (pp[1] >= 0) close(pp[1]);
    free(own_out);
    free(spec);
    return rc;
}

static int local_start(mf_executor *x, mf_xjob *j, mf_err *err)
{
    (void)x;
    ljob *l = calloc(1, sizeof *l);
    if (!l) return mf_err_set(err, MF_ENOMEM, "out of memory");
    j->priv = l;
    int use_mpirun = !strcmp(j->req.comm ? j->req.comm : "", "mpi");
    l->n_procs = use_mpirun ? 1 : j->req.ranks;
    l->ranks = calloc((size_t)l->n_procs, sizeof *l->ranks);
    if (use_mpirun) l->progress_path = mf_path_join(j->dir, "progress.jsonl");
    if (!l->ranks || (use_mpirun && !l->progress_path)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (int k = 0; k < l->n_procs; k++) l->ranks[k].pfd = -1;
    int rc = 0;
    for (int k = 0; k < l->n_procs && !rc; k++) rc = start_proc(j, l, k, use_mpirun, err);
    if (rc) {
        /* ranks already started are stopped; the job fails like a crash */
        if (l->pgid) kill(-l->pgid, SIGKILL);
        for (int k = 0; k < l->n_procs; k++)
            if (!l->ranks[k].pid) { l->ranks[k].exited = 1; l->ranks[k].status = 127 << 8; }
    }
    return rc;
}

static size_t local_fds(mf_executor *x, mf_xjob *j, struct pollfd *pf, size_t cap)
{
    (void)x;
    ljob *l = j->priv;
    size_t n = 0;
    for (int k = 0; l && k < l->n_procs && n < cap; k++)
        if (l->ranks[k].pfd >= 0) pf[n++] = (struct pollfd){l->ranks[k].pfd, POLLIN, 0};
    return n;
}

/* A rank that failed takes its job down: its peers would otherwise wait for it
 * forever inside a collective (NCCL has no timeout). Nothing of the job is
 * published, so SIGKILL loses nothing (checkpoints are written atomically). */
static void stop_failed(mf_xjob *j, ljob *l)
{
    if (l->killed || l->n_procs < 2 || !l->pgid) return;
    int failed = -1, running = 0;
    for (int q = 0; q < l->n_procs; q++) {
        if (!l->ranks[q].exited) running = 1;
        else if (failed < 0 && (!WIFEXITED(l->ranks[q].status) || WEXITSTATUS(l->ranks[q].status) != 0)) failed = q;
    }
    if (failed < 0 || !running) return;
    l->killed = 1;
    if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: rank %d failed; stopping the other ranks of the stage\n", failed);
    kill(-l->pgid, SIGKILL);
}

static void local_update(mf_executor *x, mf_xjob *const *jobs, size_t n)
{
    (void)x;
    for (;;) { /* every child of the engine is a rank of some job */
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) break;
        for (size_t k = 0; k < n; k++) {
            ljob *l = jobs[k]->priv;
            for (int q = 0; l && q < l->n_procs; q++)
                if (l->ranks[q].pid == pid) {
                    l->ranks[q].exited = 1;
                    l->ranks[q].status = status;
                }
        }
    }
    for (size_t k = 0; k < n; k++) {
        mf_xjob *j = jobs[k];
        ljob *l = j->priv;
        if (!l || j->done) continue;
        for (int q = 0; q < l->n_procs; q++)
            if (l->ranks[q].pfd >= 0) read_pipe(j, &l->ranks[q], q);
        if (l->progress_path && !mf_linebuf_fill_file(&l->plb, l->progress_path, &l->progress_off)) deliver(j, &l->plb);
        stop_failed(j, l);
        int all = 1, ok = 1, bad = 0;
        for (int q = 0; q < l->n_procs; q++) {
            all &= l->ranks[q].exited;
            if (l->ranks[q].exited && (!WIFEXITED(l->ranks[q].status) || WEXITSTATUS(l->ranks[q].status) != 0)) {
                if (ok) bad = l->ranks[q].status;
                ok = 0;
            }
        }
        if (!all) continue;
        for (int q = 0; q < l->n_procs; q++) /* what is left in the pipes; a leftover grandchild may hold one */
            if (l->ranks[q].pfd >= 0) {
                read_pipe(j, &l->ranks[q], q);
                if (l->ranks[q].pfd >= 0) { close(l->ranks[q].pfd); l->ranks[q].pfd = -1; }
            }
        j->done = 1;
        j->ok = ok;
        if (!ok) mf_exec_describe_status(bad, j->why, sizeof j->why);
    }
}

static void local_signal(mf_executor *x, mf_xjob *j, int sig)
{
    (void)x;
    ljob *l = j->priv;
    if (l && l->pgid) kill(-l->pgid, sig);
}

static int local_describe(mf_executor *x, const mf_xjob *j, mf_json *m)
{
    (void)x;
    ljob *l = j->priv;
    if (l && l->progress_path) return mf_json_set(m, "launcher", mf_json_new_str("mpirun"));
    return 0;
}

static void local_release(mf_executor *x, mf_xjob *j, int wait)
{
    (void)x;
    ljob *l = j->priv;
    if (!l) return;
    for (int q = 0; q < l->n_procs; q++) {
        if (wait && !l->ranks[q].exited && l->ranks[q].pid > 0) waitpid(l->ranks[q].pid, NULL, 0);
        if (l->ranks[q].pfd >= 0) close(l->ranks[q].pfd);
        mf_linebuf_free(&l->ranks[q].lb);
    }
    mf_linebuf_free(&l->plb);
    free(l->progress_path);
    free(l->ranks);
    free(l);
    j->priv = NULL;
}

static void local_free(mf_executor *x) { free(x); }

int mf_executor_local_new(mf_executor **out, mf_err *err)
{
    mf_executor *x = calloc(1, sizeof *x);
    if (!x) return mf_err_set(err, MF_ENOMEM, "out of memory");
    *x = (mf_executor){"local", 0.5, 1, local_start, local_fds, local_update, local_signal,
                       local_describe, local_release, local_free};
    *out = x;
    return 0;
}
