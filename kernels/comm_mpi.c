/*
 * kernels/comm_mpi.c — the collectives of kernels/comm.h over MPI (Open MPI),
 * for data parallelism across CPU processes.
 *
 * MPI is initialised here, the first time a stage opens an MPI communicator
 * (MPI_Init_thread, MPI_THREAD_FUNNELED: OpenMP threads compute, only the
 * calling thread talks to MPI), and finalised at process exit; a process
 * that never opens one never initialises MPI. The ranks come from the
 * launcher: `mpirun -np N` under the local executor, `srun --mpi=pmix` in a
 * Slurm job. The communicator is a duplicate of MPI_COMM_WORLD whose errors
 * return (MPI_ERRORS_RETURN) instead of aborting, so a failed collective
 * becomes an error message.
 *
 * Every reduction runs in a fixed order (comm.h, "Reduction order"): per
 * bucket of MF_K_COMM_BUCKET floats, chunk c of every rank goes to rank c
 * (MPI_Alltoallv), rank c combines the pieces in rank order 0, 1, ..., and
 * the chunks come back to every rank (MPI_Allgatherv). Host buffers are
 * packed into a bucket first (mf_k_comm_each_bucket), like the NCCL path.
 *
 * After an error (or mf_k_comm_abort) the process does not finalise MPI:
 * MPI_Finalize waits for the peers, which may be stuck in a collective. The
 * rank exits with a failure and its launcher stops the others (mpirun does
 * so by default; the engine's srun line passes --kill-on-bad-exit=1).
 */
#include "kernels/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MF_HAVE_MPI
#include <mpi.h>

typedef struct mpi_comm {
    MPI_Comm comm;
    int rank, world;
    int broken;
    size_t cap;          /* floats per bucket */
    float *stage;        /* the bucket, packed from the buffers (and the result, unpacked to them) */
    float *accs;         /* the accumulator's bucket (fold with acc) */
    float *recv;         /* world pieces of this rank's chunk */
    float *out;          /* this rank's combined chunk */
    int *cnt, *dsp, *rcnt, *rdsp;
} mpi_comm;

static int g_aborted; /* a rank that failed never waits in MPI_Finalize */

static void finalize_at_exit(void)
{
    int done = 0, init = 0;
    MPI_Initialized(&init);
    if (!init || g_aborted) return;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

static int mpi_fail(mpi_comm *c, mf_err *err, int code, const char *what)
{
    if (c) c->broken = 1;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(code, msg, &len);
    return mf_err_set(err, MF_EFAILED, "data parallel over MPI (rank %d): %s: %s", c ? c->rank : -1, what, msg);
}

#define MPI_OK(call, what)                                                                                             \
    do {                                                                                                               \
        int r_ = (call);                                                                                               \
        if (r_ != MPI_SUCCESS) return mpi_fail(c, err, r_, what);                                                      \
    } while (0)

static void mpi_close(void *impl, int abort_)
{
    mpi_comm *c = impl;
    if (abort_ || (c && c->broken)) g_aborted = 1;
    if (!c) return;
    if (c->comm != MPI_COMM_NULL && !g_aborted) MPI_Comm_free(&c->comm);
    free(c->stage);
    free(c->accs);
    free(c->recv);
    free(c->out);
    free(c->cnt);
    free(c->dsp);
    free(c->rcnt);
    free(c->rdsp);
    free(c);
}

/* ---- fixed-order reduction of one bucket ---- */

static float combine(float a, float b, int op)
{
    switch (op) {
    case MF_COMM_MIN: return b < a ? b : a;
    case MF_COMM_MAX: return b > a ? b : a;
    default: return a + b;
    }
}

typedef struct bucket_job {
    mpi_comm *c;
    float *const *bufs;
    float *const *acc; /* NULL: no accumulator; the result goes to bufs */
    int op, n_active, root; /* root >= 0: a broadcast */
} bucket_job;

static void pack(float *dst, float *const *src, const mf_k_comm_seg *segs, size_t nseg)
{
    for (size_t k = 0; k < nseg; k++) memcpy(dst + segs[k].at, src[segs[k].buf] + segs[k].off, segs[k].n * sizeof(float));
}

static void unpack(float *const *dst, const float *src, const mf_k_comm_seg *segs, size_t nseg)
{
    for (size_t k = 0; k < nseg; k++) memcpy(dst[segs[k].buf] + segs[k].off, src + segs[k].at, segs[k].n * sizeof(float));
}

static int reduce_bucket(void *ud, const mf_k_comm_seg *segs, size_t nseg, size_t used, mf_err *err)
{
    bucket_job *b = ud;
    mpi_comm *c = b->c;
    int W = c->world;
    if (b->root >= 0) { /* broadcast */
        if (c->rank == b->root) pack(c->stage, b->bufs, segs, nseg);
        MPI_OK(MPI_Bcast(c->stage, (int)used, MPI_FLOAT, b->root, c->comm), "MPI_Bcast");
        if (c->rank != b->root) unpack(b->bufs, c->stage, segs, nseg);
        return 0;
    }
    pack(c->stage, b->bufs, segs, nseg);
    for (int r = 0; r < W; r++) { /* chunk r = [dsp[r], dsp[r] + cnt[r]) of the bucket */
        size_t lo = used * (size_t)r / (size_t)W, hi = used * (size_t)(r + 1) / (size_t)W;
        c->dsp[r] = (int)lo;
        c->cnt[r] = (int)(hi - lo);
    }
    int mine = c->cnt[c->rank];
    for (int r = 0; r < W; r++) {
        c->rcnt[r] = mine;
        c->rdsp[r] = r * mine;
    }
    MPI_OK(MPI_Alltoallv(c->stage, c->cnt, c->dsp, MPI_FLOAT, c->recv, c->rcnt, c->rdsp, MPI_FLOAT, c->comm),
           "MPI_Alltoallv");
    /* rank order, the accumulator first: out = ((acc + g_0) + g_1) + ... */
    const float *first = c->recv;
    int from = 1;
    if (b->acc) {
        pack(c->accs, b->acc, segs, nseg);
        first = c->accs + c->dsp[c->rank];
        from = 0;
    }
    memcpy(c->out, first, (size_t)mine * sizeof(float));
    for (int r = from; r < b->n_active; r++) {
        const float *p = c->recv + (size_t)r * (size_t)mine;
        for (int k = 0; k < mine; k++) c->out[k] = combine(c->out[k], p[k], b->op);
    }
    if (b->op == MF_COMM_AVG)
        for (int k = 0; k < mine; k++) c->out[k] /= (float)W;
    MPI_OK(MPI_Allgatherv(c->out, mine, MPI_FLOAT, c->stage, c->cnt, c->dsp, MPI_FLOAT, c->comm), "MPI_Allgatherv");
    unpack(b->acc ? b->acc : b->bufs, c->stage, segs, nseg);
    return 0;
}

static int ensure_buffers(mpi_comm *c, int with_acc, mf_err *err)
{
    if (!c->stage) {
        c->stage = malloc(c->cap * sizeof(float));
        c->recv = malloc(c->cap * sizeof(float) + (size_t)c->world * sizeof(float));
        c->out = malloc((c->cap / (size_t)c->world + 1) * sizeof(float));
    }
    if (with_acc && !c->accs) c->accs = malloc(c->cap * sizeof(float));
    if (!c->stage || !c->recv || !c->out || (with_acc && !c->accs))
        return mf_err_set(err, MF_ENOMEM, "data parallel over MPI: out of memory for the %zu MiB buckets",
                          c->cap * sizeof(float) >> 20);
    return 0;
}

static int run_buckets(mpi_comm *c, bucket_job *b, const size_t *n, size_t nbufs, mf_err *err)
{
    if (c->broken)
        return mf_err_set(err, MF_EFAILED, "data parallel over MPI (rank %d): the communicator failed earlier", c->rank);
    int rc = ensure_buffers(c, b->acc != NULL, err);
    if (rc) return rc;
    return mf_k_comm_each_bucket(n, nbufs, c->cap, reduce_bucket, b, err);
}

static int mpi_allreduce_f32(void *impl, float *const *bufs, const size_t *n, size_t nbufs, int where, int op,
                             mf_err *err)
{
    (void)where; /* host only: comm.c refuses device buffers for MPI */
    mpi_comm *c = impl;
    bucket_job b = {c, bufs, NULL, op, c->world, -1};
    return run_buckets(c, &b, n, nbufs, err);
}

static int mpi_fold_f32(void *impl, float *const *bufs, float *const *acc, const size_t *n, size_t nbufs, int n_active,
                        mf_err *err)
{
    mpi_comm *c = impl;
    bucket_job b = {c, bufs, acc, MF_COMM_SUM, n_active, -1};
    return run_buckets(c, &b, n, nbufs, err);
}

static int mpi_broadcast_f32(void *impl, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                             mf_err *err)
{
    (void)where;
    mpi_comm *c = impl;
    bucket_job b = {c, bufs, NULL, MF_COMM_SUM, c->world, root};
    return run_buckets(c, &b, n, nbufs, err);
}

/* Few values (metrics, checksums): everyone gathers everything and combines in rank order. */
static int mpi_allreduce_f64(void *impl, double *v, size_t n, int op, mf_err *err)
{
    mpi_comm *c = impl;
    if (n > (size_t)1 << 20) return mf_err_set(err, MF_EINTERNAL, "data parallel: %zu doubles is not a few", n);
    double *all = malloc(n * (size_t)c->world * sizeof *all);
    if (!all) return mf_err_set(err, MF_ENOMEM, "data parallel over MPI: out of memory");
    int r_ = MPI_Allgather(v, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, c->comm);
    if (r_ != MPI_SUCCESS) {
        free(all);
        return mpi_fail(c, err, r_, "MPI_Allgather");
    }
    for (size_t i = 0; i < n; i++) {
        double a = all[i];
        for (int r = 1; r < c->world; r++) {
            double b = all[(size_t)r * n + i];
            a = op == MF_COMM_MIN ? (b < a ? b : a) : op == MF_COMM_MAX ? (b > a ? b : a) : a + b;
        }
        v[i] = op == MF_COMM_AVG ? a / c->world : a;
    }
    free(all);
    return 0;
}

static const mf_k_comm_ops mpi_ops = {mpi_close, mpi_allreduce_f32, mpi_broadcast_f32, mpi_allreduce_f64, mpi_fold_f32};

int mf_k_mpi_open(void **impl, const mf_k_comm_ops **ops, int rank, int world, mf_err *err)
{
    *impl = NULL;
    *ops = &mpi_ops;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (fin) return mf_err_set(err, MF_EFAILED, "data parallel over MPI: MPI was already finalised in this process");
    if (!init) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return mf_err_set(err, MF_EFAILED, "data parallel over MPI: MPI_Init_thread failed");
        atexit(finalize_at_exit);
    }
    mpi_comm *c = calloc(1, sizeof *c);
    if (!c) return mf_err_set(err, MF_ENOMEM, "data parallel over MPI: out of memory");
    c->comm = MPI_COMM_NULL;
    int wr = -1, ws = 0, rc = 0, r_;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    if (ws != world || wr != rank) {
        rc = mf_err_set(err, MF_EINVAL,
                        "data parallel over MPI: the launcher made this process rank %d of %d, the stage expects rank "
                        "%d of %d (was the stage started without mpirun / srun --mpi=pmix, or with another -np?)",
                        wr, ws, rank, world);
        goto out;
    }
    c->rank = rank;
    c->world = world;
    c->cap = MF_K_COMM_BUCKET;
    const char *cap = getenv("MEDFLOW_COMM_BUCKET"); /* tests: small buckets exercise the cutting */
    if (cap && atol(cap) > 0) c->cap = (size_t)atol(cap);
    if (c->cap < (size_t)world) c->cap = (size_t)world;
    c->cnt = calloc((size_t)world, sizeof(int));
    c->dsp = calloc((size_t)world, sizeof(int));
    c->rcnt = calloc((size_t)world, sizeof(int));
    c->rdsp = calloc((size_t)world, sizeof(int));
    if (!c->cnt || !c->dsp || !c->rcnt || !c->rdsp) {
        rc = mf_err_set(err, MF_ENOMEM, "data parallel over MPI: out of memory");
        goto out;
    }
    if ((r_ = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm)) != MPI_SUCCESS) {
        rc = mpi_fail(c, err, r_, "MPI_Comm_dup");
        c->comm = MPI_COMM_NULL;
        goto out;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    *impl = c;
    c = NULL;
out:
    if (c) mpi_close(c, 1);
    return rc;
}

#else /* !MF_HAVE_MPI */

int mf_k_mpi_open(void **impl, const mf_k_comm_ops **ops, int rank, int world, mf_err *err)
{
    (void)rank;
    *impl = NULL;
    *ops = NULL;
    return mf_err_set(err, MF_EUNSUPPORTED,
                      "data-parallel training on CPU ranks (%d ranks) needs MPI: this medflow was built without Open "
                      "MPI; install it (make deps: libopenmpi-dev, openmpi-bin) and rebuild",
                      world);
}

#endif
