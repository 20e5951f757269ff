/*
 * kernels/build_id.c — the numerics-relevant identity of this build: compiler,
 * the code-generation flags that change floating-point results (-O level,
 * -march, -ffast-math, sanitizers, CUDA/MPI), and the BLAS library with the
 * kernel set it picked at run time. Two builds with different identities may
 * compute different bits for the same training stage (an ASan build and a
 * release build do). The engine records it in every manifest of a stage that
 * ran on a backend and in its action-cache entry, and `status`/`show` say when
 * a cached output came from another build (docs/store.md).
 */
#include "kernels/backend_select.h"

#include <cblas.h>
#include <stdio.h>

#ifndef MF_BUILD_FLAGS
#define MF_BUILD_FLAGS "unknown flags"
#endif

#if defined(__clang__)
#define MF_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define MF_COMPILER "gcc " __VERSION__
#else
#define MF_COMPILER "unknown compiler"
#endif

const char *mf_k_build_identity(void)
{
    static char id[512];
    if (!id[0]) { /* the same bytes every time: a benign race at worst */
        const char *blas = openblas_get_config();
        snprintf(id, sizeof id, "%s; %s; %s", MF_COMPILER, MF_BUILD_FLAGS, blas ? blas : "unknown BLAS");
    }
    return id;
}
