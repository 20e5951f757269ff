/*
 * kernels/comm.c — the NCCL id file exchange (see comm.h), and, in a build
 * without CUDA, the collectives' entry points that say data parallelism needs
 * the CUDA build. The NCCL implementation is kernels/cuda/nccl_comm.cu.
 */
#include "kernels/comm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fsutil.h"

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
/* The CPU build has no NCCL: every entry point says so. */
static int no_cuda(mf_err *err, int world)
{
    if (world > 1)
        return mf_err_set(err, MF_EUNSUPPORTED,
                          "data-parallel training (%d ranks) needs NCCL: this medflow was built without CUDA; "
                          "rebuild with make CUDA=1",
                          world);
    return mf_err_set(err, MF_EUNSUPPORTED,
                      "collectives between ranks need NCCL: this medflow was built without CUDA; rebuild with make CUDA=1");
}

int mf_k_comm_new(mf_k_comm **out, int rank, int world, const char *id_path, double timeout_s, mf_err *err)
{
    (void)rank, (void)id_path, (void)timeout_s;
    *out = NULL;
    return no_cuda(err, world);
}

void mf_k_comm_free(mf_k_comm *c) { (void)c; }
void mf_k_comm_abort(mf_k_comm *c) { (void)c; }
int mf_k_comm_rank(const mf_k_comm *c) { (void)c; return 0; }
int mf_k_comm_world(const mf_k_comm *c) { (void)c; return 1; }

int mf_k_comm_allreduce_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int op,
                            mf_err *err)
{
    (void)c, (void)bufs, (void)n, (void)nbufs, (void)where, (void)op;
    return no_cuda(err, 0);
}

int mf_k_comm_broadcast_f32(mf_k_comm *c, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                            mf_err *err)
{
    (void)c, (void)bufs, (void)n, (void)nbufs, (void)where, (void)root;
    return no_cuda(err, 0);
}

int mf_k_comm_allreduce_f64(mf_k_comm *c, double *v, size_t n, int op, mf_err *err)
{
    (void)c, (void)v, (void)n, (void)op;
    return no_cuda(err, 0);
}
#endif
