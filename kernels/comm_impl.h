/*
 * kernels/comm_impl.h — what a collective library plugs into kernels/comm.c
 * (internal to kernels/): NCCL in kernels/cuda/nccl_comm.cu, MPI in
 * kernels/comm_mpi.c. comm.c owns the communicator, checks arguments that do
 * not depend on the library, keeps the statistics and dispatches.
 */
#ifndef MF_KERNELS_COMM_IMPL_H
#define MF_KERNELS_COMM_IMPL_H

#include "kernels/comm.h"

typedef struct mf_k_comm_ops {
    /* abort_: an error path, never wait for the other ranks */
    void (*close)(void *impl, int abort_);
    int (*allreduce_f32)(void *impl, float *const *bufs, const size_t *n, size_t nbufs, int where, int op, mf_err *err);
    int (*broadcast_f32)(void *impl, float *const *bufs, const size_t *n, size_t nbufs, int where, int root,
                         mf_err *err);
    int (*allreduce_f64)(void *impl, double *v, size_t n, int op, mf_err *err);
    /* NULL when the library has no fixed-order fold (NCCL) */
    int (*fold_f32)(void *impl, float *const *bufs, float *const *acc, const size_t *n, size_t nbufs, int n_active,
                    mf_err *err);
} mf_k_comm_ops;

/* Open a library's side of a communicator; both exist in every build and
 * refuse with MF_EUNSUPPORTED when the library was not built in. */
int mf_k_nccl_open(void **impl, const mf_k_comm_ops **ops, int rank, int world, const char *id_path, double timeout_s,
                   mf_err *err);
int mf_k_mpi_open(void **impl, const mf_k_comm_ops **ops, int rank, int world, mf_err *err);

#endif
