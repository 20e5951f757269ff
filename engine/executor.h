/*
 * engine/executor.h — where a stage's ranks run: the seam between the
 * builder (engine/run.c) and processes.
 *
 *   local (engine/exec_local.c): the ranks are children of the engine on
 *     this machine: one fork+exec per rank with progress on a pipe, or, for
 *     CPU ranks joined by MPI, one `mpirun -np N` with progress in a file.
 *   slurm (engine/exec_slurm.c): each stage attempt is one sbatch job whose
 *     step is `srun medflow stage-exec SPEC` (docs/cluster.md).
 *
 * The builder owns a job's directory, log path, the contents of its specs
 * and everything after it ends (publish, manifests, ledger). An executor
 * owns how many specs there are and what differs between them, how the
 * ranks start, how their progress and exit come back, and how they are
 * stopped. Which executor: --executor, else MEDFLOW_EXECUTOR, else the
 * graph's `executor:`, else local.
 */
#ifndef MF_EXECUTOR_H
#define MF_EXECUTOR_H

#include <poll.h>
#include <stddef.h>

#include "common/error.h"
#include "common/json.h"
#include "engine/graph.h"
#include "engine/sched.h"

/* What differs between the specs of one job. */
typedef struct mf_xspec {
    int rank;                  /* -1: one spec for every rank; each takes its rank from its launcher */
    const char *devices;       /* CUDA_VISIBLE_DEVICES of the rank ("" with rank -1: as the launcher sets it) */
    const char *out_dir;
    const char *progress_path; /* NULL: progress on fd 3 */
} mf_xspec;

typedef struct mf_xjob {
    /* set by the builder before start */
    const mf_stage *stage;
    mf_sched_req req;          /* ranks, comm; locally also the granted gpus/cpus/mem */
    const int *devs;           /* locally: req.gpus device ids */
    const char *devices;       /* ... as a list ("" when none) */
    const char *exe;           /* the medflow binary the ranks run */
    const char *dir;           /* the job directory (specs, out/, progress), in the store */
    const char *out_dir;       /* rank 0's output: dir/out */
    const char *log_path;      /* the stage's log: stdout and stderr of every rank */
    int log_fd;                /* the log, open for appending; -1 when the executor writes it itself */
    /* write a spec (engine/run.c); the path is malloc'd */
    int (*write_spec)(void *ud, const mf_xspec *s, char **path, mf_err *err);
    /* one line of rank 0's progress (JSON, stages/stage.h) */
    void (*on_progress)(void *ud, char *line);
    void *ud;
    /* set by the executor */
    int done;                  /* every rank has ended (or the job was given up) */
    int ok;                    /* ... every one successfully */
    char why[512];             /* !ok: what happened ("exit status 1", "Slurm job 12: FAILED, ...") */
    char state[96];            /* shown in the progress row while there is no progress yet ("PENDING (Resources)") */
    char id[64];               /* the executor's job id (Slurm), "" locally */
    void *priv;
} mf_xjob;

typedef struct mf_executor mf_executor;
struct mf_executor {
    const char *name;          /* "local" | "slurm" */
    double poll_s;             /* the longest the builder waits between updates */
    int packs_locally;         /* 1: the builder packs stages onto this machine (engine/sched.h) */
    /* Start the ranks. On an error the job did not start: the builder reports it as a failed stage. */
    int (*start)(mf_executor *x, mf_xjob *j, mf_err *err);
    /* The descriptors to wait on for this job (progress pipes); returns how many it put in pf. */
    size_t (*fds)(mf_executor *x, mf_xjob *j, struct pollfd *pf, size_t cap);
    /* After a wait: read progress, collect exits, refresh states (done, ok, why, state). */
    void (*update)(mf_executor *x, mf_xjob *const *jobs, size_t n);
    /* SIGINT/SIGTERM: stop gracefully; SIGKILL: now. */
    void (*signal)(mf_executor *x, mf_xjob *j, int sig);
    /* What the stage's manifest records of the job (Slurm: job id, state, nodes, ...). */
    int (*describe)(mf_executor *x, const mf_xjob *j, mf_json *manifest);
    /* The job is over or given up: free what it holds; wait = 1 blocks until its processes are gone. */
    void (*release)(mf_executor *x, mf_xjob *j, int wait);
    void (*free)(mf_executor *x);
};

int mf_executor_local_new(mf_executor **out, mf_err *err);

typedef struct mf_slurm_opts {
    const char *tmp_dir;      /* store/tmp: the probe file (its parent, the store, must be shared with the nodes) */
    const char *run_id;
    const char *graph;        /* for job names */
    const char *partition;    /* defaults for stages that name none (--partition, --account) */
    const char *account;
    double poll_s;            /* squeue interval (MEDFLOW_SLURM_POLL; default 2 s) */
} mf_slurm_opts;

int mf_executor_slurm_new(mf_executor **out, const mf_slurm_opts *o, mf_err *err);

/* What a stage asks of a Slurm cluster (graph resources + defaults). */
typedef struct mf_slurm_req {
    int nodes, gpus_per_node, ranks, ranks_per_node, cpus_per_task;
    long long mem_mb;         /* per node; 0: the cluster's default */
    const char *time, *partition, *account, *comm;
} mf_slurm_req;

int mf_slurm_request(const mf_stage *st, const char *partition, const char *account, mf_slurm_req *r, mf_err *err);
/* The sbatch arguments (after "sbatch") for a stage's job, into a NULL-terminated argv of malloc'd strings. */
int mf_slurm_sbatch_argv(char ***argv, const mf_slurm_req *r, const char *job_name, const char *log_path,
                         const char *dir, const char *script, mf_err *err);
/* The srun line of a job's script (what the batch script runs). */
int mf_slurm_srun_line(mf_buf *out, const mf_slurm_req *r, const char *exe, const char *spec);
void mf_slurm_argv_free(char **argv);

#endif
