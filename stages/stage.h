/*
 * stages/stage.h — the interface between the engine and a stage kind's code.
 *
 * The engine writes a stage spec (JSON), then runs `medflow stage-exec SPEC`
 * as a child process. stage-exec parses the spec into an mf_stage_ctx and
 * calls the kind's run function (stages/impls.c). The run function reads its
 * inputs from the given paths, writes its whole output under out_dir, and
 * returns 0 — the engine then publishes out_dir into the store. A run
 * function never writes outside out_dir and work_dir.
 *
 * Spec (JSON object), written by the engine:
 *   {"stage": "sft", "kind": "sft", "kind_version": 1,
 *    "params": {... resolved, defaults applied ...},
 *    "inputs": {"model": ["/store/trees/<digest>"], "data": ["/path/to/src.jsonl"]},
 *    "input_digests": {"model": ["sha256:..."], ...},
 *    "out_dir": "/store/tmp/<run>-sft/out", "work_dir": "/store/work/<key>",
 *    "job_dir": "/store/tmp/<run>-sft",
 *    "rank": 0, "world_size": 1, "devices": "0,1", "seed": 42, "precision": "fp32",
 *    "progress_fd": 3, "rendezvous": "...", "backend": "auto", "comm": "nccl"}
 *
 * Ranks: a `gpus: N` stage runs N ranks. Only rank 0's out_dir is published;
 * ranks > 0 get a private out_dir (job_dir/rank<k>.out) so kind code needs no
 * rank checks to stay out of the artifact. job_dir is shared by the ranks of
 * one job (fresh per attempt): the NCCL bootstrap exchanges its id there
 * (kernels/comm.h), in a file named by the rendezvous token. "backend" is the
 * run's --backend (kernels/backend_select.h); stage-exec reports the backend
 * it actually used on progress_fd ({"backend":"cuda","device":"..."}) and the
 * engine records it in the stage's manifest (not in its key).
 *
 * Launched ranks. When the ranks are started by a launcher (`mpirun`, or
 * `srun` in a Slurm job) rather than by the engine, there is one spec for
 * all of them with "rank_from": "launcher": each process takes its rank
 * from the launcher's environment (OMPI_COMM_WORLD_RANK, PMIX_RANK or
 * SLURM_PROCID; the size must equal world_size), ranks > 0 make their
 * private out_dir job_dir/rank<k>.out themselves, "devices" is "" to mean
 * the CUDA_VISIBLE_DEVICES the launcher set, and progress goes to the file
 * "progress_path" (rank 0 only; the engine follows it) instead of a pipe.
 * "comm" names the collective library of a world_size > 1 stage: "nccl"
 * (one GPU per rank) or "mpi" (CPU ranks).
 */
#ifndef MF_STAGE_H
#define MF_STAGE_H

#include <stddef.h>
#include "common/error.h"
#include "common/json.h"
#include "stages/registry.h"

typedef struct mf_stage_input {
    const char *slot;
    const char **paths;   /* one per input bound to the slot */
    const char **digests; /* "sha256:..." per path, or NULL when unknown */
    size_t n;
} mf_stage_input;

typedef struct mf_stage_ctx {
    const char *stage;       /* stage name in the graph */
    const mf_kind *kind;
    const mf_json *params;   /* resolved params (defaults applied), an object */
    mf_stage_input *inputs;
    size_t n_inputs;
    const char *out_dir;     /* exists and is empty when run starts */
    const char *work_dir;    /* persists across attempts with the same key (checkpoints); may be NULL */
    int rank, world_size;
    const char *devices;     /* CUDA_VISIBLE_DEVICES value, "" for CPU */
    const char *rendezvous;  /* random token shared by the ranks of a job (hex), or "" */
    const char *job_dir;     /* directory shared by the ranks of this job, or NULL (see above) */
    const char *comm;        /* "nccl" or "mpi" when world_size > 1 (see above), else "" */
    unsigned long long seed;
    const char *precision;
    int progress_fd;         /* -1 when nobody listens */
    mf_err *err;
    /* Asked by a training loop right after each checkpoint is on disk: nonzero stops the stage
     * there with MF_EINTERRUPTED, exactly as an interruption at that point would (the next attempt
     * with the same work_dir resumes from the checkpoint). NULL: never. This is how a caller asks
     * for a clean stop at a step boundary; the resume tests use it to interrupt at a known step. */
    int (*stop_requested)(const struct mf_stage_ctx *ctx, long step);
    void *stop_ud;           /* for stop_requested */
} mf_stage_ctx;

typedef int (*mf_stage_run_fn)(mf_stage_ctx *ctx);

/* The kind's implementation, or NULL if this build has none yet. */
mf_stage_run_fn mf_stage_impl(const char *kind);
/* Add a stage kind to this process, beside the built-in ones: a program built on libmedflow (its
 * own main, or engine/main.c, linked with libmedflow.a) describes the kind (registry.h) and gives
 * its run function (NULL: described, not implemented in this build). An added kind is found by
 * name (mf_kind_find, mf_stage_impl) and runs like a built-in one, but is not listed in mf_kinds.
 * Call it before loading a graph (a constructor will do); not thread-safe. 0; MF_EINVAL when the
 * name is taken; MF_ENOMEM when the table is full (MF_REGISTRY_MAX_ADDED). The engine tests'
 * kinds are added this way (tests/engine/testkinds.c). */
int mf_stage_add_kind(const mf_kind *k, mf_stage_run_fn run);

/* Helpers for run functions. */
/* ctx->stop_requested(ctx, step), or 0 when none is set. */
int mf_stage_stop_requested(const mf_stage_ctx *ctx, long step);
const mf_stage_input *mf_stage_input_get(const mf_stage_ctx *ctx, const char *slot);
/* First path of a slot, or NULL. */
const char *mf_stage_input_path(const mf_stage_ctx *ctx, const char *slot);
/* Param accessors (params are validated and have defaults applied). */
const mf_json *mf_stage_param(const mf_stage_ctx *ctx, const char *dotted);
double mf_stage_param_num(const mf_stage_ctx *ctx, const char *dotted, double def);
long long mf_stage_param_int(const mf_stage_ctx *ctx, const char *dotted, long long def);
const char *mf_stage_param_str(const mf_stage_ctx *ctx, const char *dotted, const char *def);
int mf_stage_param_bool(const mf_stage_ctx *ctx, const char *dotted, int def);

/* A line for the stage's log (stage-exec's stderr, which the engine stores
 * with the run): what a reader of the log needs that is not progress. */
void mf_stage_log(const mf_stage_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Progress line on progress_fd: {"step":..,"total":..,"loss":..,"tokens_per_s":..,"eta":..,"message":".."}.
 * Pass NAN for unknown numbers and NULL for no message. */
void mf_stage_progress(const mf_stage_ctx *ctx, long long step, long long total, double loss,
                       double tokens_per_s, double eta_s, const char *message);

/* A warning the user must see ({"warning": ".."} on progress_fd): the engine prints it as an event
 * line at once, writes it into the stage's log and keeps it in the manifest ("warnings"). A stage
 * that warns about its result (a collapsed policy) also records it in its artifact. */
void mf_stage_warn(const mf_stage_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
