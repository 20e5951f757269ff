/*
 * kernels/comm.h — collectives between the ranks of a data-parallel stage
 * (NCCL; kernels/cuda/nccl_comm.cu), and the model-level operations the
 * trainer builds on them.
 *
 * Bootstrap. An ncclUniqueId is not a shared secret anyone can invent: it
 * encodes rank 0's bootstrap socket, so rank 0 must create it
 * (ncclGetUniqueId) and hand it to the others. The engine gives the ranks of
 * one job a directory they share (the spec's job_dir, fresh for every
 * attempt) and a random token; the id travels through a file there:
 *
 *   rank 0:    ncclGetUniqueId -> write <job_dir>/nccl-<token>.id atomically
 *              (temp file + fsync + rename: a reader sees all 128 bytes or no file)
 *   rank r>0:  poll for the file (every 20 ms) until timeout_s, then a clear
 *              error ("rank 0 never published ..."; rank 0 failed to start?)
 *   all:       ncclCommInitRank(world, id, rank)
 *
 * Each rank sees exactly one GPU (CUDA_VISIBLE_DEVICES = its device), so the
 * communicator lives on the calling thread's current device (device 0).
 *
 * Buffers are fp32 lists, on the host (staged through a device buffer in
 * buckets of MF_K_COMM_BUCKET floats) or on the device (reduced in place,
 * grouped into buckets of that size with ncclGroupStart/End). Collectives
 * block until done (the device is synchronised before a device collective,
 * so producers on any stream are complete); there is no overlap of
 * communication with backward yet.
 *
 * Without CUDA (the CPU build) mf_k_comm_new fails with MF_EUNSUPPORTED and a
 * message saying to rebuild with make CUDA=1.
 */
#ifndef MF_KERNELS_COMM_H
#define MF_KERNELS_COMM_H

#include <stddef.h>

#include "kernels/model.h"

typedef struct mf_k_comm mf_k_comm;

enum { MF_COMM_SUM = 0, MF_COMM_AVG = 1, MF_COMM_MIN = 2, MF_COMM_MAX = 3 };
enum { MF_COMM_HOST = 0, MF_COMM_DEVICE = 1 };

/* Floats per bucket: 16 Mi (64 MiB). */
#define MF_K_COMM_BUCKET ((size_t)16 << 20)

/* Size of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES). */
#define MF_K_COMM_ID_BYTES 128

/* Join the communicator of `world` ranks as `rank`, bootstrapping through
 * id_path as above (rank 0 writes it, the others wait up to timeout_s). */
int mf_k_comm_new(mf_k_comm **out, int rank, int world, const char *id_path, double timeout_s, mf_err *err);
/* Leave the communicator: after a success, finalises (flushes) then destroys;
 * mf_k_comm_abort is for error paths: it never waits for the other ranks. */
void mf_k_comm_free(mf_k_comm *c);
void mf_k_comm_abort(mf_k_comm *c);
int mf_k_comm_rank(const mf_k_comm *c);
int mf_k_comm_world(const mf_k_comm *c);

/* In place over every rank: bufs[i] (n[i] floats) = op over the ranks' bufs[i].
 * where: MF_COMM_HOST or MF_COMM_DEVICE; op: MF_COMM_SUM / AVG / MIN / MAX. */
int mf_k_comm_allreduce_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int op,
                            mf_err *err);
/* bufs of `root` copied into every rank's bufs. */
int mf_k_comm_broadcast_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                            mf_err *err);
/* Host doubles, in place: v[i] = op over the ranks' v[i] (metrics, checksums). */
int mf_k_comm_allreduce_f64(mf_k_comm *c, double *v, size_t n, int op, mf_err *err);

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
/* Checksum of the trainable params' host copy (call mf_model_fetch first):
 * out[0] = sum of values, out[1] = sum of squares, in double, in param order. */
void mf_model_param_checksum(mf_model *m, double out[2]);

#endif
