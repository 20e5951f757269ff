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

    /* ---- optional hooks: NULL when the backend keeps everything on the host
     * copies (the CPU backend leaves all of them NULL). ---- */
    /* Clear the device gradients (mf_model_zero_grad calls it after clearing
     * the host ones). */
    void (*zero_grad)(mf_model *m);
    /* Device AdamW (kernels/optim.c uses it when opt_new is set; otherwise
     * AdamW runs on the host copies and syncs). The state covers the n
     * trainable params idx[0..n) in that order and is owned by the optimizer
     * (opt_free needs no model). opt_grad_sqnorm: sum of squared gradients;
     * opt_step: one torch AdamW step at learning rate lr (schedule applied),
     * bias corrections for step t >= 1, gradients multiplied by clip first;
     * opt_moments: copy tensor k's moments (numel fp32 each) to host buffers
     * (put = 0) or from them (put = 1). After opt_step the device holds the
     * newest weights: mf_model_fetch brings them to p->data. */
    int (*opt_new)(mf_model *m, void **state, size_t n, const int *idx, mf_err *err);
    void (*opt_free)(void *state);
    int (*opt_grad_sqnorm)(mf_model *m, void *state, double *out, mf_err *err);
    int (*opt_step)(mf_model *m, void *state, const mf_k_adamw_config *c, double lr, long t, float clip,
                    mf_err *err);
    int (*opt_moments)(mf_model *m, void *state, size_t k, void *mom, void *vel, int put, mf_err *err);
    /* The device fp32 gradient of param idx (numel floats; NULL when it is not
     * trainable) that the next optimizer step reads — for data-parallel
     * all-reduce of device gradients. */
    float *(*device_grad)(mf_model *m, size_t param_idx);
} mf_k_backend;

/* The CPU backend (C + OpenMP + OpenBLAS, fp32). Always built. */
const mf_k_backend *mf_k_backend_cpu(void);

#ifdef MF_HAVE_CUDA
/* The CUDA backend (kernels/cuda/, make CUDA=1): cuBLASLt GEMMs, fused
 * kernels, fp32 master weights + grads for trainable params, activation-dtype
 * copies of everything the kernels read, device AdamW. Attaching fails with
 * MF_EUNSUPPORTED when no CUDA device is usable. See kernels/README.md. */
const mf_k_backend *mf_k_backend_cuda(void);
/* Activation dtype of a model on the CUDA backend: "bf16" (the default:
 * training) or "fp32" (conformance: fp32 GEMMs without TF32, within 1e-4 of
 * the CPU backend); NULL or "" = "bf16"; "fp16" is refused (MF_EUNSUPPORTED).
 * Same values as a stage's "precision". Re-uploads the device weights from the
 * host copies (after fetching device-trained ones). MF_EINVAL when m is not on
 * the CUDA backend. */
int mf_k_cuda_set_precision(mf_model *m, const char *precision, mf_err *err);
/* Deterministic mode: bit-identical reruns on one GPU (no float atomics in
 * embedding / attention backward, GEMMs without split-K reductions). Off by
 * default. No-op (0) for models on other backends. */
void mf_k_cuda_set_deterministic(mf_model *m, int on);
#endif

#endif
