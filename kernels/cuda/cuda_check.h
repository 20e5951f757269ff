/*
 * kernels/cuda/cuda_check.h — turning CUDA / cuBLAS status codes into
 * medflow errors (a negative MF_E* code plus an mf_err message that says
 * which call failed, where, and why).
 *
 *   int rc = MF_CU_CHECK(err, cudaMemcpyAsync(...));   // 0 or MF_E*, err filled
 *   MF_CU_TRY(err, cudaStreamSynchronize(st));         // returns the code on failure
 *   MF_CUBLAS_TRY(err, cublasLtMatmul(...));           // same for cublasStatus_t
 *   MF_CU_TRY_MALLOC(err, &p, bytes, "layer 3 activations");
 *       // cudaMalloc; on failure: "out of GPU memory allocating layer 3
 *       // activations: 1.50 GiB requested, 0.80 GiB free of 79.10 GiB (ops.cu:120)"
 *
 * Code mapping: cudaErrorMemoryAllocation -> MF_ENOMEM; no device / driver
 * too old / no kernel image for this GPU -> MF_EUNSUPPORTED; an invalid
 * argument or launch configuration -> MF_EINTERNAL (a medflow bug: shapes
 * are validated before anything is launched); anything else (a kernel fault,
 * ECC, a lost device) -> MF_EIO.
 *
 * Header-only (static inline), usable from .c files built with CUDA=1 and
 * from .cu files. Includes common/error.h; C++ callers get C linkage for it.
 */
#ifndef MF_KERNELS_CUDA_CUDA_CHECK_H
#define MF_KERNELS_CUDA_CUDA_CHECK_H

#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "common/error.h"
#ifdef __cplusplus
}
#endif

/* The MF_E* code for a CUDA runtime status (0 for cudaSuccess). */
static inline int mf_cu_code(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return MF_OK;
    case cudaErrorMemoryAllocation:
        return MF_ENOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidDevice:
        return MF_EUNSUPPORTED;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidMemcpyDirection:
        return MF_EINTERNAL;
    default:
        return MF_EIO;
    }
}

/* 0 when e is cudaSuccess; otherwise fills err with
 * "<what>: <cuda error name> (<description>) at <file>:<line>" and returns the code. */
static inline int mf_cu_status(cudaError_t e, mf_err *err, const char *what, const char *file, int line)
{
    if (e == cudaSuccess) return 0;
    return mf_err_set(err, mf_cu_code(e), "CUDA: %s failed: %s (%s) at %s:%d", what, cudaGetErrorName(e),
                      cudaGetErrorString(e), file, line);
}

/* The same for cuBLAS / cuBLASLt (cublasStatus_t). */
static inline int mf_cublas_status(cublasStatus_t s, mf_err *err, const char *what, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    int code = s == CUBLAS_STATUS_ALLOC_FAILED      ? MF_ENOMEM
               : s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH ? MF_EUNSUPPORTED
               : s == CUBLAS_STATUS_INVALID_VALUE   ? MF_EINTERNAL
                                                    : MF_EIO;
    return mf_err_set(err, code, "cuBLAS: %s failed: %s (status %d) at %s:%d", what, cublasGetStatusString(s), (int)s,
                      file, line);
}

/* Out-of-memory report: what was being allocated, how much, and what the
 * device has (cudaMemGetInfo). Returns MF_ENOMEM. */
static inline int mf_cu_oom(mf_err *err, const char *what, size_t bytes, const char *file, int line)
{
    size_t free_b = 0, total_b = 0;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError(); /* do not leave the query's failure sticky */
        return mf_err_set(err, MF_ENOMEM, "out of GPU memory allocating %s: %zu bytes (%.2f GiB) requested "
                          "(cudaMemGetInfo failed too) at %s:%d", what, bytes, (double)bytes / gib, file, line);
    }
    return mf_err_set(err, MF_ENOMEM, "out of GPU memory allocating %s: %zu bytes (%.2f GiB) requested, "
                      "%.2f GiB free of %.2f GiB at %s:%d", what, bytes, (double)bytes / gib, (double)free_b / gib,
                      (double)total_b / gib, file, line);
}

/* cudaMalloc with the report above on failure (other failures via mf_cu_status). */
static inline int mf_cu_malloc(void **p, size_t bytes, const char *what, mf_err *err, const char *file, int line)
{
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaSuccess) return 0;
    *p = NULL;
    (void)cudaGetLastError(); /* an allocation failure is not sticky; clear it */
    if (e == cudaErrorMemoryAllocation) return mf_cu_oom(err, what, bytes, file, line);
    return mf_cu_status(e, err, what, file, line);
}

#define MF_CU_CHECK(err, call) mf_cu_status((call), (err), #call, __FILE__, __LINE__)
#define MF_CUBLAS_CHECK(err, call) mf_cublas_status((call), (err), #call, __FILE__, __LINE__)

#define MF_CU_TRY(err, call)                                                                                \
    do {                                                                                                    \
        int mf_cu_rc_ = MF_CU_CHECK(err, call);                                                             \
        if (mf_cu_rc_) return mf_cu_rc_;                                                                    \
    } while (0)
#define MF_CUBLAS_TRY(err, call)                                                                            \
    do {                                                                                                    \
        int mf_cu_rc_ = MF_CUBLAS_CHECK(err, call);                                                         \
        if (mf_cu_rc_) return mf_cu_rc_;                                                                    \
    } while (0)
/* ptr: void ** (cast at the call: (void **)&p). */
#define MF_CU_TRY_MALLOC(err, ptr, bytes, what)                                                             \
    do {                                                                                                    \
        int mf_cu_rc_ = mf_cu_malloc((void **)(ptr), (bytes), (what), (err), __FILE__, __LINE__);          \
        if (mf_cu_rc_) return mf_cu_rc_;                                                                    \
    } while (0)

#endif
