/*
 * kernels/comm.c — the communicator of kernels/comm.h: argument checks,
 * statistics and dispatch to the collective library (NCCL in
 * kernels/cuda/nccl_comm.cu, MPI in kernels/comm_mpi.c; both behind
 * kernels/comm_impl.h), the bucket walker both host paths use, the NCCL id
 * file exchange, and, in a build without CUDA, NCCL's clear refusal.
 */
#include "kernels/comm_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fsutil.h"

struct mf_k_comm {
    const mf_k_comm_ops *ops;
    void *impl;
    int lib, rank, world;
    mf_k_comm_stats stats;
};

static int comm_wrap(mf_k_comm **out, int lib, int rank, int world, void *impl, const mf_k_comm_ops *ops, mf_err *err)
{
    mf_k_comm *c = calloc(1, sizeof *c);
    if (!c) {
        ops->close(impl, 1);
        return mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
    }
    c->ops = ops;
    c->impl = impl;
    c->lib = lib;
    c->rank = rank;
    c->world = world;
    *out = c;
    return 0;
}

static int check_rank(int rank, int world, mf_err *err)
{
    if (world < 1 || rank < 0 || rank >= world)
        return mf_err_set(err, MF_EINVAL, "data parallel: rank %d is not within world size %d", rank, world);
    return 0;
}

int mf_k_comm_new(mf_k_comm **out, int rank, int world, const char *id_path, double timeout_s, mf_err *err)
{
    *out = NULL;
    void *impl = NULL;
    const mf_k_comm_ops *ops = NULL;
    int rc = mf_k_nccl_open(&impl, &ops, rank, world, id_path, timeout_s, err);
    if (rc) return rc;
    return comm_wrap(out, MF_COMM_NCCL, rank, world, impl, ops, err);
}

int mf_k_comm_new_mpi(mf_k_comm **out, int rank, int world, mf_err *err)
{
    *out = NULL;
    int rc = check_rank(rank, world, err);
    if (rc) return rc;
    void *impl = NULL;
    const mf_k_comm_ops *ops = NULL;
    if ((rc = mf_k_mpi_open(&impl, &ops, rank, world, err))) return rc;
    return comm_wrap(out, MF_COMM_MPI, rank, world, impl, ops, err);
}

void mf_k_comm_free(mf_k_comm *c)
{
    if (!c) return;
    c->ops->close(c->impl, 0);
    free(c);
}

void mf_k_comm_abort(mf_k_comm *c)
{
    if (!c) return;
    c->ops->close(c->impl, 1);
    free(c);
}

int mf_k_comm_rank(const mf_k_comm *c) { return c ? c->rank : 0; }
int mf_k_comm_world(const mf_k_comm *c) { return c ? c->world : 1; }
int mf_k_comm_library(const mf_k_comm *c) { return c ? c->lib : MF_COMM_NCCL; }

void mf_k_comm_get_stats(const mf_k_comm *c, mf_k_comm_stats *out)
{
    if (c) *out = c->stats;
    else memset(out, 0, sizeof *out);
}

static int check_args(mf_k_comm *c, int where, int op, mf_err *err)
{
    if (!c) return mf_err_set(err, MF_EINTERNAL, "data parallel: no communicator");
    if (where != MF_COMM_HOST && where != MF_COMM_DEVICE)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: buffer location %d is neither host nor device", where);
    if (where == MF_COMM_DEVICE && c->lib == MF_COMM_MPI)
        return mf_err_set(err, MF_EUNSUPPORTED,
                          "data parallel over MPI reduces host buffers only; a stage on GPUs uses NCCL (gpus: N)");
    if (op < MF_COMM_SUM || op > MF_COMM_MAX)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: unknown reduction %d", op);
    return 0;
}

static double total(const size_t *n, size_t nbufs)
{
    double t = 0;
    for (size_t i = 0; i < nbufs; i++) t += (double)n[i];
    return t;
}

static void account(mf_k_comm *c, double values, double t0)
{
    c->stats.calls++;
    c->stats.values += values;
    c->stats.seconds += mf_monotonic() - t0;
}

int mf_k_comm_allreduce_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int op,
                            mf_err *err)
{
    int rc = check_args(c, where, op, err);
    if (rc) return rc;
    double t0 = mf_monotonic();
    rc = c->ops->allreduce_f32(c->impl, bufs, n, nbufs, where, op, err);
    account(c, total(n, nbufs), t0);
    return rc;
}

int mf_k_comm_broadcast_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                            mf_err *err)
{
    int rc = check_args(c, where, MF_COMM_SUM, err);
    if (rc) return rc;
    if (root < 0 || root >= c->world)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: broadcast root %d is not within world size %d", root,
                          c->world);
    double t0 = mf_monotonic();
    rc = c->ops->broadcast_f32(c->impl, bufs, n, nbufs, where, root, err);
    account(c, total(n, nbufs), t0);
    return rc;
}

int mf_k_comm_allreduce_f64(mf_k_comm *c, double *v, size_t n, int op, mf_err *err)
{
    int rc = check_args(c, MF_COMM_HOST, op, err);
    if (rc || !n) return rc;
    return c->ops->allreduce_f64(c->impl, v, n, op, err);
}

int mf_k_comm_fold_f32(mf_k_comm *c, float *const *bufs, float *const *acc, const size_t *n, size_t nbufs,
                       int n_active, mf_err *err)
{
    int rc = check_args(c, MF_COMM_HOST, MF_COMM_SUM, err);
    if (rc) return rc;
    if (!c->ops->fold_f32)
        return mf_err_set(err, MF_EUNSUPPORTED, "data parallel: the fixed-order fold needs the MPI communicator");
    if (n_active < 1 || n_active > c->world)
        return mf_err_set(err, MF_EINTERNAL, "data parallel: %d active ranks of %d", n_active, c->world);
    double t0 = mf_monotonic();
    rc = c->ops->fold_f32(c->impl, bufs, acc, n, nbufs, n_active, err);
    account(c, total(n, nbufs), t0);
    return rc;
}

int mf_k_comm_each_bucket(const size_t *n, size_t nbufs, size_t cap, mf_k_comm_bucket_fn fn, void *ud, mf_err *err)
{
    size_t scap = 64, nseg = 0, used = 0;
    mf_k_comm_seg *segs = malloc(scap * sizeof *segs);
    if (!segs) return mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
    int rc = 0;
    for (size_t i = 0; i < nbufs; i++) {
        for (size_t off = 0; off < n[i];) {
            if (used == cap) { /* a full bucket */
                if ((rc = fn(ud, segs, nseg, used, err))) goto out;
                nseg = used = 0;
            }
            size_t take = n[i] - off, room = cap - used;
            if (take > room) take = room;
            if (nseg == scap) {
                mf_k_comm_seg *t = realloc(segs, 2 * scap * sizeof *segs);
                if (!t) {
                    rc = mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
                    goto out;
                }
                segs = t;
                scap *= 2;
            }
            segs[nseg++] = (mf_k_comm_seg){i, off, take, used};
            used += take;
            off += take;
        }
    }
    if (used) rc = fn(ud, segs, nseg, used, err);
out:
    free(segs);
    return rc;
}

/* ---- the NCCL id file ---- */

int mf_k_rendezvous_publish(const char *path, const void *id, size_t n, mf_err *err)
{
    return mf_write_file_atomic(path, id, n, 0600, err);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

int mf_k_rendezvous_wait(const char *path, void *id, size_t n, double timeout_s, mf_err *err)
{
    double deadline = mf_monotonic() + (timeout_s > 0 ? timeout_s : 0);
    for (;;) {
        struct stat sb;
        /* the file appears by rename, complete; a size mismatch is someone else's file */
        if (!stat(path, &sb)) {
            if ((size_t)sb.st_size != n)
                return mf_err_set(err, MF_ECORRUPT, "rendezvous file %s holds %lld bytes, expected %zu", path,
                                  (long long)sb.st_size, n);
            char *data = NULL;
            size_t len = 0;
            int rc = mf_read_file(path, &data, &len, err);
            if (rc) return rc;
            if (len != n) {
                free(data);
                return mf_err_set(err, MF_ECORRUPT, "rendezvous file %s holds %zu bytes, expected %zu", path, len, n);
            }
            memcpy(id, data, n);
            free(data);
            return 0;
        }
        if (errno != ENOENT) return mf_err_errno(err, MF_EIO, "stat %s", path);
        if (mf_monotonic() >= deadline)
            return mf_err_set(err, MF_EFAILED,
                              "rank 0 never published the NCCL id at %s within %.0f s (did rank 0 fail to start? "
                              "MEDFLOW_RENDEZVOUS_TIMEOUT sets the wait)",
                              path, timeout_s);
        nap_ms(20);
    }
}

#ifndef MF_HAVE_CUDA
/* The CPU build has no NCCL: say so. */
int mf_k_nccl_open(void **impl, const mf_k_comm_ops **ops, int rank, int world, const char *id_path, double timeout_s,
                   mf_err *err)
{
    (void)rank, (void)id_path, (void)timeout_s;
    *impl = NULL;
    *ops = NULL;
    return mf_err_set(err, MF_EUNSUPPORTED,
                      "data-parallel training on GPUs (%d ranks) needs NCCL: this medflow was built without CUDA; "
                      "rebuild with make CUDA=1 (or train on CPU ranks over MPI: resources {gpus: 0, ranks: %d})",
                      world, world);
}
#endif
