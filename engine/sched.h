/*
 * engine/sched.h — machine resources and how stages are packed onto them.
 *
 * The machine: GPUs (discovered through the CUDA runtime when built with
 * CUDA, else none; or given with --gpus 0,1,...), CPU cores, memory, and a
 * bound on concurrent stages (-j). A stage asks for gpus/cpus/mem (graph
 * `resources:`, else its kind's defaults). Rules (docs/engine.md):
 *   - concurrent stages get disjoint GPUs; a `gpus: N` stage runs N ranks,
 *     one device each;
 *   - with no GPUs at all, a `gpus: N` stage runs on the CPU backend as one
 *     rank; asking for more GPUs than the machine has (when it has some) is
 *     an error before anything runs;
 *   - cpus and mem are clamped to the machine, so a big stage runs alone
 *     rather than never; CPU-only stages run side by side while cores allow;
 *   - `ranks: N` on the CPU (gpus: 0) runs N processes joined by MPI
 *     (started with mpirun), sharing the stage's cpus;
 *   - `nodes: N > 1` needs a cluster: an error here (--executor slurm).
 */
#ifndef MF_SCHED_H
#define MF_SCHED_H

#include "common/error.h"
#include "engine/graph.h"

#define MF_SCHED_MAX_GPUS 64

typedef struct mf_sched {
    int n_gpus;
    int gpu_ids[MF_SCHED_MAX_GPUS]; /* device ids as CUDA_VISIBLE_DEVICES names them */
    int gpu_busy[MF_SCHED_MAX_GPUS];
    int cpus_total, cpus_free;
    long long mem_total_mb, mem_free_mb;
    int jobs_max, jobs_running;    /* -j; 0 = no bound */
} mf_sched;

typedef struct mf_sched_req {
    int gpus;          /* devices to assign (0: CPU backend) */
    int ranks;         /* worker processes: gpus, or the CPU ranks, or 1 */
    const char *comm;  /* their collective library: "nccl" (GPU ranks), "mpi" (CPU ranks), "" (one rank) */
    int cpus;
    long long mem_mb;
} mf_sched_req;

/* "0,1,3" -> ids. Empty string means no GPUs. */
int mf_sched_parse_gpus(const char *list, int *ids, int *n, mf_err *err);
/* GPUs this process can use: CUDA runtime when MF_HAVE_CUDA (honouring
 * CUDA_VISIBLE_DEVICES), none otherwise. */
int mf_sched_discover_gpus(int *ids, int *n);

/* gpus_list NULL = discover; jobs 0 = unbounded. cpus/mem from the machine. */
int mf_sched_init(mf_sched *s, const char *gpus_list, int jobs, mf_err *err);

/* What stage st gets on this machine (see the rules above). */
int mf_sched_request(const mf_sched *s, const mf_stage *st, mf_sched_req *req, mf_err *err);
/* Take the resources if free now: 1 and the assigned device ids in devs
 * (req->gpus of them), 0 when they are not free. */
int mf_sched_try_acquire(mf_sched *s, const mf_sched_req *req, int *devs);
void mf_sched_release(mf_sched *s, const mf_sched_req *req, const int *devs);

/* "2,3" for CUDA_VISIBLE_DEVICES into buf. */
const char *mf_sched_devices_str(const int *devs, int n, char *buf, size_t len);

#endif
