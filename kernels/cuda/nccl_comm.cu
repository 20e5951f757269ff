/*
 * kernels/cuda/nccl_comm.cu — the collectives of kernels/comm.h over NCCL.
 *
 * One communicator per rank process, on the current device (each rank sees
 * one GPU), with a stream of its own. Bootstrap through the id file (comm.c):
 * rank 0 creates the ncclUniqueId and publishes it before joining, the others
 * wait for it; then ncclCommInitRank.
 *
 * Every call is synchronous: device collectives first wait for the whole
 * device (cudaDeviceSynchronize, so the producer's stream does not matter)
 * and return after their stream is done. Host buffers go through a device
 * staging buffer of MF_K_COMM_BUCKET floats: small buffers are packed
 * together into one collective, large ones are cut into bucket-sized pieces.
 * Device buffers are reduced in place, grouped (ncclGroupStart/End) so that
 * at most a bucket's worth of small buffers goes into one group.
 *
 * After any NCCL or CUDA failure the communicator is marked broken and
 * mf_k_comm_free aborts it (ncclCommAbort) instead of waiting for peers.
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/comm.h"
}

static_assert(MF_K_COMM_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "MF_K_COMM_ID_BYTES must be sizeof(ncclUniqueId)");
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId size");

struct mf_k_comm {
    ncclComm_t comm;
    cudaStream_t st;
    int rank, world;
    int broken;      /* a collective failed: abort, never wait, on free */
    float *stage;    /* MF_K_COMM_BUCKET floats, allocated on first host collective */
    double *d64;     /* d64_n doubles for mf_k_comm_allreduce_f64 */
    size_t d64_n;
};

/* ---- error helpers: every CUDA / NCCL status is checked ---- */

static int cuda_fail(mf_k_comm *c, mf_err *err, cudaError_t e, const char *what)
{
    if (c) c->broken = 1;
    return mf_err_set(err, MF_EFAILED, "data parallel (rank %d): %s: %s (%s)", c ? c->rank : -1, what,
                      cudaGetErrorString(e), cudaGetErrorName(e));
}

static int nccl_fail(mf_k_comm *c, mf_err *err, ncclResult_t r, const char *what)
{
    if (c) c->broken = 1;
    const char *last = c && c->comm ? ncclGetLastError(c->comm) : ncclGetLastError(NULL);
    return mf_err_set(err, MF_EFAILED, "data parallel (rank %d): %s: %s%s%s", c ? c->rank : -1, what,
                      ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
}

#define CU(call, what)                                                                                                 \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) return cuda_fail(c, err, e_, what);                                                     \
    } while (0)
#define NC(call, what)                                                                                                 \
    do {                                                                                                               \
        ncclResult_t r_ = (call);                                                                                      \
        if (r_ != ncclSuccess) return nccl_fail(c, err, r_, what);                                                     \
    } while (0)

static ncclRedOp_t red_op(int op)
{
    switch (op) {
    case MF_COMM_AVG: return ncclAvg;
    case MF_COMM_MIN: return ncclMin;
    case MF_COMM_MAX: return ncclMax;
    default: return ncclSum;
    }
}

static int check_args(mf_k_comm *c, int where, int op, mf_err *err)
{
    if (!c) return mf_err_set(err, MF_EINTERNAL, "data parallel: no communicator");
    if (c->broken)
        return mf_err_set(err, MF_EFAILED, "data parallel (rank %d): the communicator failed earlier", c->rank);
    if (where != MF_COMM_HOST && where != MF_COMM_DEVICE)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: buffer location %d is neither host nor device", where);
    if (op < MF_COMM_SUM || op > MF_COMM_MAX)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: unknown reduction %d", op);
    return 0;
}

/* ---- life cycle ---- */

extern "C" int mf_k_comm_new(mf_k_comm **out, int rank, int world, const char *id_path, double timeout_s, mf_err *err)
{
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world)
        return mf_err_set(err, MF_EINVAL, "data parallel: rank %d is not within world size %d", rank, world);
    if (!id_path || !*id_path) return mf_err_set(err, MF_EINVAL, "data parallel: no rendezvous file given");
    mf_k_comm *c = (mf_k_comm *)calloc(1, sizeof *c);
    if (!c) return mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
    c->rank = rank;
    c->world = world;
    int rc = 0;
    ncclUniqueId id;
    ncclResult_t r;
    cudaError_t e;
    memset(&id, 0, sizeof id);
    if (rank == 0) {
        if ((r = ncclGetUniqueId(&id)) != ncclSuccess) {
            rc = nccl_fail(c, err, r, "ncclGetUniqueId");
            goto out;
        }
        /* published before joining: ncclCommInitRank blocks until every rank is in */
        if ((rc = mf_k_rendezvous_publish(id_path, &id, sizeof id, err))) goto out;
    } else if ((rc = mf_k_rendezvous_wait(id_path, &id, sizeof id, timeout_s, err))) {
        goto out;
    }
    if ((e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking)) != cudaSuccess) {
        rc = cuda_fail(c, err, e, "cudaStreamCreate");
        goto out;
    }
    if ((r = ncclCommInitRank(&c->comm, world, id, rank)) != ncclSuccess) {
        c->comm = NULL;
        rc = nccl_fail(c, err, r, "ncclCommInitRank");
        goto out;
    }
    *out = c;
    c = NULL;
out:
    mf_k_comm_free(c);
    return rc;
}

extern "C" void mf_k_comm_free(mf_k_comm *c)
{
    if (!c) return;
    if (c->comm) {
        /* a healthy communicator is finalised (flushes pending work, then
         * destroyed); a broken one is aborted so we never wait on a dead peer */
        if (c->broken || ncclCommFinalize(c->comm) != ncclSuccess) ncclCommAbort(c->comm);
        else ncclCommDestroy(c->comm);
    }
    if (c->stage) cudaFree(c->stage);
    if (c->d64) cudaFree(c->d64);
    if (c->st) cudaStreamDestroy(c->st);
    free(c);
}

extern "C" void mf_k_comm_abort(mf_k_comm *c)
{
    if (!c) return;
    c->broken = 1;
    mf_k_comm_free(c);
}

extern "C" int mf_k_comm_rank(const mf_k_comm *c) { return c ? c->rank : 0; }
extern "C" int mf_k_comm_world(const mf_k_comm *c) { return c ? c->world : 1; }

/* ---- host buffers through the staging buffer ---- */

static int ensure_stage(mf_k_comm *c, mf_err *err)
{
    if (!c->stage) CU(cudaMalloc((void **)&c->stage, MF_K_COMM_BUCKET * sizeof(float)), "cudaMalloc (staging buffer)");
    return 0;
}

/* A piece of a host buffer packed into the staging buffer at `at`. */
typedef struct seg {
    float *host;
    size_t n, at;
} seg;

/* Run the collective over stage[0, used), then copy the pieces back. bcast_root
 * < 0: all-reduce with op; else broadcast from that root. */
static int flush_stage(mf_k_comm *c, const seg *segs, size_t nseg, size_t used, int op, int bcast_root, mf_err *err)
{
    if (!used) return 0;
    if (bcast_root < 0) NC(ncclAllReduce(c->stage, c->stage, used, ncclFloat32, red_op(op), c->comm, c->st), "ncclAllReduce");
    else NC(ncclBroadcast(c->stage, c->stage, used, ncclFloat32, bcast_root, c->comm, c->st), "ncclBroadcast");
    for (size_t k = 0; k < nseg; k++)
        CU(cudaMemcpyAsync(segs[k].host, c->stage + segs[k].at, segs[k].n * sizeof(float), cudaMemcpyDeviceToHost, c->st),
           "cudaMemcpy (staging -> host)");
    CU(cudaStreamSynchronize(c->st), "cudaStreamSynchronize (host collective)");
    return 0;
}

static int host_collective(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int op, int bcast_root,
                           mf_err *err)
{
    int rc = ensure_stage(c, err);
    if (rc) return rc;
    /* at most one segment per buffer plus the pieces of cut buffers in one bucket */
    size_t cap = 64, nseg = 0, used = 0;
    seg *segs = (seg *)malloc(cap * sizeof *segs);
    if (!segs) return mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
    int upload = bcast_root < 0 || bcast_root == c->rank; /* a broadcast receiver has nothing to send */
    for (size_t i = 0; i < nbufs; i++) {
        for (size_t off = 0; off < n[i];) {
            if (used == MF_K_COMM_BUCKET) {
                rc = flush_stage(c, segs, nseg, used, op, bcast_root, err);
                nseg = used = 0;
                if (rc) goto out;
            }
            size_t take = n[i] - off, room = MF_K_COMM_BUCKET - used;
            if (take > room) take = room;
            if (nseg == cap) {
                seg *t = (seg *)realloc(segs, 2 * cap * sizeof *segs);
                if (!t) {
                    rc = mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
                    goto out;
                }
                segs = t;
                cap *= 2;
            }
            segs[nseg].host = bufs[i] + off;
            segs[nseg].n = take;
            segs[nseg].at = used;
            if (upload) {
                cudaError_t e = cudaMemcpyAsync(c->stage + used, bufs[i] + off, take * sizeof(float),
                                                cudaMemcpyHostToDevice, c->st);
                if (e != cudaSuccess) {
                    rc = cuda_fail(c, err, e, "cudaMemcpy (host -> staging)");
                    goto out;
                }
            }
            nseg++;
            used += take;
            off += take;
        }
    }
    rc = flush_stage(c, segs, nseg, used, op, bcast_root, err);
out:
    free(segs);
    return rc;
}

/* ---- device buffers in place ---- */

static int device_collective(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int op, int bcast_root,
                             mf_err *err)
{
    CU(cudaDeviceSynchronize(), "cudaDeviceSynchronize (before a collective)");
    for (size_t i = 0; i < nbufs;) {
        /* one group: buffers up to a bucket in total (always at least one) */
        size_t j = i, total = 0;
        while (j < nbufs && (j == i || total + n[j] <= MF_K_COMM_BUCKET)) total += n[j++];
        NC(ncclGroupStart(), "ncclGroupStart");
        for (size_t k = i; k < j; k++) {
            ncclResult_t r = bcast_root < 0
                                 ? ncclAllReduce(bufs[k], bufs[k], n[k], ncclFloat32, red_op(op), c->comm, c->st)
                                 : ncclBroadcast(bufs[k], bufs[k], n[k], ncclFloat32, bcast_root, c->comm, c->st);
            if (r != ncclSuccess) {
                ncclGroupEnd();
                return nccl_fail(c, err, r, bcast_root < 0 ? "ncclAllReduce" : "ncclBroadcast");
            }
        }
        NC(ncclGroupEnd(), "ncclGroupEnd");
        i = j;
    }
    CU(cudaStreamSynchronize(c->st), "cudaStreamSynchronize (device collective)");
    return 0;
}

extern "C" int mf_k_comm_allreduce_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where,
                                       int op, mf_err *err)
{
    int rc = check_args(c, where, op, err);
    if (rc) return rc;
    return where == MF_COMM_DEVICE ? device_collective(c, bufs, n, nbufs, op, -1, err)
                                   : host_collective(c, bufs, n, nbufs, op, -1, err);
}

extern "C" int mf_k_comm_broadcast_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where,
                                       int root, mf_err *err)
{
    int rc = check_args(c, where, MF_COMM_SUM, err);
    if (rc) return rc;
    if (root < 0 || root >= c->world)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: broadcast root %d is not within world size %d", root,
                          c->world);
    return where == MF_COMM_DEVICE ? device_collective(c, bufs, n, nbufs, MF_COMM_SUM, root, err)
                                   : host_collective(c, bufs, n, nbufs, MF_COMM_SUM, root, err);
}

extern "C" int mf_k_comm_allreduce_f64(mf_k_comm *c, double *v, size_t n, int op, mf_err *err)
{
    int rc = check_args(c, MF_COMM_HOST, op, err);
    if (rc || !n) return rc;
    if (n > c->d64_n) {
        if (c->d64) CU(cudaFree(c->d64), "cudaFree");
        c->d64 = NULL;
        c->d64_n = 0;
        CU(cudaMalloc((void **)&c->d64, n * sizeof(double)), "cudaMalloc (f64 buffer)");
        c->d64_n = n;
    }
    CU(cudaMemcpyAsync(c->d64, v, n * sizeof(double), cudaMemcpyHostToDevice, c->st), "cudaMemcpy (host -> device)");
    NC(ncclAllReduce(c->d64, c->d64, n, ncclFloat64, red_op(op), c->comm, c->st), "ncclAllReduce (f64)");
    CU(cudaMemcpyAsync(v, c->d64, n * sizeof(double), cudaMemcpyDeviceToHost, c->st), "cudaMemcpy (device -> host)");
    CU(cudaStreamSynchronize(c->st), "cudaStreamSynchronize (f64 all-reduce)");
    return 0;
}
