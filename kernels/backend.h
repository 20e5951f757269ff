/*
 * kernels/backend.h — the interface every compute backend implements.
 *
 * The model (kernels/model.c) owns the parameter table (names, shapes, host
 * fp32 data and grads), the adapter bookkeeping and the optimizer; a backend
 * owns everything that lives on the compute device: device copies of the
 * weights, activations and workspaces sized per (batch, seq) shape, the KV
 * cache, and the kernels. model.c dispatches through this table, so a CUDA
 * backend (kernels/cuda/, bf16 activations, fp32 master weights) plugs in
 * beside kernels/cpu/ without touching callers.
 *
 * Contract: forward/backward/decode never allocate once the workspace for a
 * shape exists (prepare is where allocation happens); every function returns
 * 0 or a negative MF_E* code and fills err.
 */
#ifndef MF_KERNELS_BACKEND_H
#define MF_KERNELS_BACKEND_H

#include "kernels/model.h"

typedef struct mf_k_backend {
    const char *name;
    /* Create / destroy the backend's per-model state (m->be_state). */
    int (*attach)(mf_model *m, mf_err *err);
    void (*detach)(mf_model *m);
    /* Host params -> device (after loading / adapter changes) and back. */
    int (*sync)(mf_model *m, mf_err *err);
    int (*fetch)(mf_model *m, mf_err *err);
    /* Allocate activations/workspaces for B x T (no-op when already sized). */
    int (*prepare)(mf_model *m, int B, int T, mf_err *err);
    int (*forward)(mf_model *m, const mf_k_batch *b, int flags, mf_k_outputs *out, mf_err *err);
    int (*backward)(mf_model *m, const float *dlogp, const float *dvalues, mf_err *err);
    /* KV cache for B rows of at most max_len tokens (prefix excluded). */
    int (*cache_reset)(mf_model *m, int B, int max_len, mf_err *err);
    /* Run n tokens (token i of row row[i] at position pos[i]) through the
     * cached model; rows' earlier positions must already be in the cache.
     * logits receives the LM logits of every token ([n, V]), or with
     * last_only of the last token only ([1, V]: prefilling a prompt). */
    int (*decode)(mf_model *m, int n, const int32_t *tok, const int *row, const int *pos,
                  int last_only, float *logits, mf_err *err);
    /* Optional, NULL = the host p->grad is what the optimizer reads. The
     * device fp32 gradient of param idx (numel floats, NULL when it has none)
     * that the next optimizer step reads: data parallelism all-reduces these
     * in place between the last backward of a step and the optimizer step
     * (kernels/comm.h; the device is synchronised first). */
    float *(*device_grad)(mf_model *m, size_t idx);
} mf_k_backend;

/* The CPU backend (C + OpenMP + OpenBLAS, fp32). Always built. */
const mf_k_backend *mf_k_backend_cpu(void);

#endif
