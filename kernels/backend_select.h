/*
 * kernels/backend_select.h — which compute backend mf_model_new uses.
 *
 * One process-wide choice: auto | cpu | cuda. It comes from (first that is
 * set) mf_k_backend_set_default() — the CLI's --backend, or a stage spec's
 * "backend" — else the environment variable MEDFLOW_BACKEND, else auto.
 *
 *   auto  cuda when this binary was built with CUDA (MF_HAVE_CUDA) and a device
 *         is usable (cudaGetDeviceCount > 0 under CUDA_VISIBLE_DEVICES), else cpu
 *   cpu   the CPU backend (always there)
 *   cuda  the CUDA backend; an error when the build has no CUDA or no device is
 *         usable (the message says which, with the CUDA runtime's reason)
 *
 * The choice is resolved lazily, the first time a model is created, so
 * commands that never build a model never touch the CUDA runtime. The backend
 * is not part of any stage key: both backends compute the same function (up
 * to floating-point tolerance); provenance records which one ran
 * (mf_k_backend_used).
 */
#ifndef MF_KERNELS_BACKEND_SELECT_H
#define MF_KERNELS_BACKEND_SELECT_H

#include <stddef.h>

#include "kernels/backend.h"

typedef enum mf_k_backend_choice {
    MF_BACKEND_AUTO = 0,
    MF_BACKEND_CPU = 1,
    MF_BACKEND_CUDA = 2
} mf_k_backend_choice;

/* "auto" | "cpu" | "cuda" -> choice; MF_EINVAL naming `what` (e.g. "--backend")
 * and the bad word otherwise. */
int mf_k_backend_parse(mf_k_backend_choice *out, const char *s, const char *what, mf_err *err);
const char *mf_k_backend_choice_name(mf_k_backend_choice c);

/* Set the process default; `origin` names where it came from for error
 * messages ("--backend", "the stage spec"); a static string. Forgets an
 * earlier resolution. */
void mf_k_backend_set_default(mf_k_backend_choice c, const char *origin);

/* The effective choice: the one set, else MEDFLOW_BACKEND (MF_EINVAL when it
 * is not a valid name), else auto. *origin (may be NULL) names its source. */
int mf_k_backend_get_default(mf_k_backend_choice *out, const char **origin, mf_err *err);

/* The backend for the next model (resolving the default as described above). */
int mf_k_backend_resolve(const mf_k_backend **out, mf_err *err);

/* The activation precision of models on the CUDA backend: a stage's
 * "precision" ("fp32" | "bf16"; "fp16" is refused by the CUDA backend), set
 * by stage-exec; NULL = the backend's default (bf16). The CPU backend always
 * computes in fp32 and ignores it. */
void mf_k_backend_set_precision(const char *precision);
/* Apply the process defaults to a freshly created model (mf_model_new calls it). */
int mf_k_backend_configure(mf_model *m, mf_err *err);

/* The backend the last successful mf_k_backend_resolve chose ("cpu" / "cuda")
 * and its device ("" for cpu, e.g. "NVIDIA H100 80GB HBM3" for cuda); NULL
 * when no model was created yet. */
const char *mf_k_backend_used(const char **device);

/* Is a CUDA device usable by this process? 1 yes (device name of device 0
 * into name), 0 no (the reason into why: "this medflow was built without
 * CUDA..." or the CUDA runtime's error). The answer is computed once. */
int mf_k_cuda_usable(char *name, size_t name_len, char *why, size_t why_len);

/* The numerics-relevant identity of this build (compiler; flags that change floating-point results;
 * BLAS and the kernel set it chose), as one line: recorded in manifests (kernels/build_id.c). */
const char *mf_k_build_identity(void);

#endif
