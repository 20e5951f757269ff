/*
 * kernels/comm.h — collectives between the ranks of a data-parallel stage,
 * and the model-level operations the trainer builds on them.
 *
 * Two libraries sit behind one communicator type:
 *   - NCCL (kernels/cuda/nccl_comm.cu, the CUDA build): one GPU per rank,
 *     host or device buffers;
 *   - MPI (kernels/comm_mpi.c, Open MPI, built when `pkg-config ompi-c`
 *     finds it): CPU ranks, host buffers. The ranks are started by a launcher
 *     (`mpirun`, or `srun --mpi=pmix` under Slurm) and find each other
 *     through it; MPI is initialised by mf_k_comm_new_mpi only, so an
 *     ordinary single-process run never touches it.
 *
 * NCCL bootstrap. An ncclUniqueId is not a shared secret anyone can invent:
 * it encodes rank 0's bootstrap socket, so rank 0 must create it
 * (ncclGetUniqueId) and hand it to the others. The engine gives the ranks of
 * one job a directory they share (the spec's job_dir, fresh for every
 * attempt, in the store: on a shared filesystem under Slurm, so ranks on
 * other nodes see it too) and a random token; the id travels through a file
 * there:
 *
 *   rank 0:    ncclGetUniqueId -> write <job_dir>/nccl-<token>.id atomically
 *              (temp file + fsync + rename: a reader sees all 128 bytes or no file)
 *   rank r>0:  poll for the file (every 20 ms) until timeout_s, then a clear
 *              error ("rank 0 never published ..."; rank 0 failed to start?)
 *   all:       ncclCommInitRank(world, id, rank)
 *
 * Each NCCL rank sees exactly one GPU (CUDA_VISIBLE_DEVICES = its device), so
 * the communicator lives on the calling thread's current device (device 0).
 *
 * Buffers are fp32 lists, on the host (packed into buckets of
 * MF_K_COMM_BUCKET floats: small buffers together, large ones cut) or, with
 * NCCL, on the device (reduced in place, grouped into buckets of that size).
 * Collectives block until done; there is no overlap of communication with
 * backward yet.
 *
 * Reduction order. NCCL sums in the order its ring or tree gives. MPI sums
 * in a FIXED order, rank 0 first: each bucket is cut into one chunk per
 * rank, chunk c of every rank goes to rank c (MPI_Alltoallv), rank c adds
 * the pieces in rank order, and the sums come back to everyone
 * (MPI_Allgatherv) — the traffic of a ring all-reduce, 2(N-1)/N of the data
 * per rank, with a result that does not depend on the network or the MPI
 * library's algorithm. mf_k_comm_fold_f32 adds a running accumulator in
 * front: acc = ((acc + g_0) + g_1) + ... — exactly the order in which one
 * process accumulating the same micro-batches one after the other adds
 * them, which is what makes an N-rank CPU run bit-identical to a
 * single-process run (stages/train/trainer.c, docs/cluster.md).
 *
 * Without CUDA (or without MPI) the constructors fail with MF_EUNSUPPORTED
 * and a message saying how to rebuild.
 */
#ifndef MF_KERNELS_COMM_H
#define MF_KERNELS_COMM_H

#include <stddef.h>

#include "kernels/model.h"

typedef struct mf_k_comm mf_k_comm;

enum { MF_COMM_SUM = 0, MF_COMM_AVG = 1, MF_COMM_MIN = 2, MF_COMM_MAX = 3 };
enum { MF_COMM_HOST = 0, MF_COMM_DEVICE = 1 };
enum { MF_COMM_NCCL = 0, MF_COMM_MPI = 1 };

/* Floats per bucket: 16 Mi (64 MiB). */
#define MF_K_COMM_BUCKET ((size_t)16 << 20)

/* Size of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES). */
#define MF_K_COMM_ID_BYTES 128

/* NCCL: join the communicator of `world` ranks as `rank`, bootstrapping
 * through id_path as above (rank 0 writes it, the others wait up to timeout_s). */
int mf_k_comm_new(mf_k_comm **out, int rank, int world, const char *id_path, double timeout_s, mf_err *err);
/* MPI: initialise MPI (once per process) and join MPI_COMM_WORLD, which must
 * have `world` ranks with this process as `rank` (what the engine's spec
 * says; a mismatch means the launcher started something else: an error). */
int mf_k_comm_new_mpi(mf_k_comm **out, int rank, int world, mf_err *err);
/* Leave the communicator: after a success, finalises (flushes) then destroys;
 * mf_k_comm_abort is for error paths: it never waits for the other ranks
 * (an MPI rank then exits without MPI_Finalize and its launcher stops the
 * others). */
void mf_k_comm_free(mf_k_comm *c);
void mf_k_comm_abort(mf_k_comm *c);
int mf_k_comm_rank(const mf_k_comm *c);
int mf_k_comm_world(const mf_k_comm *c);
/* MF_COMM_NCCL or MF_COMM_MPI. */
int mf_k_comm_library(const mf_k_comm *c);

/* What the collectives cost so far (for logs and benchmarks): calls, fp32
 * values sent into reductions and broadcasts, wall seconds inside them. */
typedef struct mf_k_comm_stats {
    long calls;
    double values, seconds;
} mf_k_comm_stats;
void mf_k_comm_get_stats(const mf_k_comm *c, mf_k_comm_stats *out);

/* In place over every rank: bufs[i] (n[i] floats) = op over the ranks' bufs[i].
 * where: MF_COMM_HOST or MF_COMM_DEVICE; op: MF_COMM_SUM / AVG / MIN / MAX. */
int mf_k_comm_allreduce_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int op,
                            mf_err *err);
/* bufs of `root` copied into every rank's bufs. */
int mf_k_comm_broadcast_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                            mf_err *err);
/* Host doubles, in place: v[i] = op over the ranks' v[i] (metrics, checksums). */
int mf_k_comm_allreduce_f64(mf_k_comm *c, double *v, size_t n, int op, mf_err *err);
/* MPI only, host buffers, fixed order (see above): out[i] = ((acc[i] + g_0[i])
 * + g_1[i]) + ... + g_{n_active-1}[i], where g_r is rank r's bufs and acc is
 * left out when acc is NULL (then the result goes to bufs, else to acc).
 * Ranks >= n_active take part but add nothing (a last, partial round of
 * micro-batches). */
int mf_k_comm_fold_f32(mf_k_comm *c, float *const *bufs, float *const *acc, const size_t *n, size_t nbufs,
                       int n_active, mf_err *err);

/* Host buffers in buckets: fn gets the pieces (buffer, length, offset in the
 * bucket) of each bucket of at most cap floats, small buffers packed
 * together, large ones cut. Shared by the NCCL and MPI host paths. */
typedef struct mf_k_comm_seg {
    size_t buf, off, n, at; /* bufs[buf][off, off + n) <-> bucket[at, at + n) */
} mf_k_comm_seg;
typedef int (*mf_k_comm_bucket_fn)(void *ud, const mf_k_comm_seg *segs, size_t nseg, size_t used, mf_err *err);
int mf_k_comm_each_bucket(const size_t *n, size_t nbufs, size_t cap, mf_k_comm_bucket_fn fn, void *ud, mf_err *err);

/* ---- the id file (testable without a GPU) ---- */

/* Write n bytes to path atomically. */
int mf_k_rendezvous_publish(const char *path, const void *id, size_t n, mf_err *err);
/* Wait until path holds exactly n bytes (or timeout_s passes: MF_EFAILED
 * saying so), then read them into id. */
int mf_k_rendezvous_wait(const char *path, void *id, size_t n, double timeout_s, mf_err *err);

/* ---- model-level data parallelism (kernels/dp.c) ---- */

/* Sum the trainable params' gradients over the ranks. Reduces the backend's
 * device gradients when it exposes them (mf_k_backend.device_grad), else the
 * host p->grad. Call after the last backward of a step, before the optimizer. */
int mf_model_dp_allreduce_grads(mf_model *m, mf_k_comm *c, mf_err *err);
/* Every rank takes rank 0's trainable params (host copy), then syncs them to
 * its backend. Call once before training (a guard: ranks that loaded the same
 * files with the same seeds already agree). */
int mf_model_dp_broadcast_params(mf_model *m, mf_k_comm *c, mf_err *err);
/* Gradient accumulation in a fixed order, on the host (the CPU backend's
 * path; a device backend accumulates in place and all-reduces once per step).
 * A training step's micro-batches are taken in rounds of up to `world`
 * (micro-batch a of the step: round a / world, rank a % world); in each
 * round every active rank computes one micro-batch's gradient into freshly
 * zeroed p->grad, then mf_k_gradacc_add folds the round in:
 *     sum = ((sum + g_{round,rank 0}) + g_{round,rank 1}) + ...
 * over the ranks of c (or this process alone when c is NULL). With one rank
 * this is the plain left fold g_0 + g_1 + ... of the micro-batches in step
 * order, so N ranks and one process add the same numbers in the same order:
 * bit-identical weights. After the last round (last = 1) p->grad holds the
 * step's gradient; between rounds it is free for the next backward (the
 * running sum lives in the accumulator, one float per trainable value). */
typedef struct mf_k_gradacc mf_k_gradacc;
/* *out = NULL when the model's gradients live on a device (device_grad). */
int mf_k_gradacc_new(mf_k_gradacc **out, mf_model *m, mf_err *err);
int mf_k_gradacc_add(mf_k_gradacc *a, mf_k_comm *c, int round, int n_active, int last, mf_err *err);
void mf_k_gradacc_free(mf_k_gradacc *a);

/* Checksum of the trainable params' host copy (call mf_model_fetch first):
 * out[0] = sum of values, out[1] = sum of squares, in double, in param order. */
void mf_model_param_checksum(mf_model *m, double out[2]);

#endif
