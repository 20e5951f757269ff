/*
 * kernels/cuda/cuda_state.h — the CUDA backend's per-model state and the
 * helpers its files share (not a public header):
 *
 *   cuda_params.cu  device parameter table, sync / fetch, device AdamW
 *   cuda_gemm.cu    row-major GEMMs on cuBLASLt (plan cache, bias epilogue)
 *   cuda_model.cu   workspace (prepare), training forward / backward, vtable
 *   cuda_decode.cu  KV cache and cached decoding
 *
 * Memory (see kernels/README.md, "CUDA backend"):
 *  - every param has an activation-dtype copy `act` that the kernels read;
 *    trainable params also have fp32 `master` weights and fp32 `grad` on the
 *    device (in fp32 mode `act` IS `master`); frozen params have `act` only;
 *  - activations for one (B, T) shape live in one device arena carved by
 *    prepare() — the only place that allocates for training; cache_reset()
 *    allocates the KV cache and the decode workspace.
 *
 * Everything runs on one stream per model (cs->st); the host waits only where
 * it needs results (outputs of forward, fetch, optimizer norms).
 */
#ifndef MF_KERNELS_CUDA_STATE_H
#define MF_KERNELS_CUDA_STATE_H

#ifndef MF_HAVE_CUDA
#define MF_HAVE_CUDA 1 /* nvcc builds do not get CFLAGS_BASE; the backend declarations need it */
#endif

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels/model_internal.h"
}
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.cuh"

/* One parameter on the device. */
typedef struct cu_param {
    char name[MF_K_MAX_NAME]; /* the host param it mirrors (rebuilds match by name + size) */
    size_t numel;
    int trainable;
    float *master; /* fp32 master weights (trainable only) */
    float *grad;   /* fp32 gradient, accumulated by backward (trainable only) */
    void *act;     /* activation-dtype weights read by the kernels */
    int own_act;   /* act is its own allocation (else it aliases master: fp32 mode) */
} cu_param;

/* Saved activations of one layer ("act" = activation dtype, f32 = float).
 * With recomputation every layer shares layer 0's set except x_in. */
typedef struct cu_layer_act {
    void *x_in;             /* [N,H] residual stream entering the layer */
    void *ln1;              /* [N,H] */
    float *rstd1;           /* [N] */
    void *q;                /* [N,Dq] after RoPE */
    void *kf, *vf;          /* [B,S,Dkv]: prefix rows, then RoPE'd keys / values */
    float *lse;             /* [B,nh,T] attention log-sum-exp */
    void *ao;               /* [N,Dq] attention output */
    void *x_mid;            /* [N,H] residual after attention */
    void *ln2;
    float *rstd2;
    void *gate, *up, *act;  /* [N,I] */
    void *u[N_MODS];        /* [N,r] LoRA A-projection outputs */
} cu_layer_act;

typedef struct cu_layout {
    int B, T, P, recompute, lora_r, prefix_hidden, dt, deterministic;
} cu_layout;

/* A cached cuBLASLt plan for one GEMM shape (see cuda_gemm.cu). */
typedef struct cu_gemm_plan cu_gemm_plan;

/* Decode workspace (cuda_decode.cu). */
typedef struct cu_dec_ws {
    void *x, *x2, *ln, *q, *k, *v, *ao, *g, *u, *act, *logits, *lora[N_MODS];
    float *rstd, *lse, *lg32;
    size_t lg32_n;
    int32_t *tok, *rpos; /* device [n] each */
    int32_t *h_tok;      /* pinned host [2n]: tokens, then positions (one upload) */
} cu_dec_ws;

typedef struct cu_state {
    int device;
    mf_cu_dtype dt;
    size_t es; /* bytes per activation element */
    int deterministic;
    cudaStream_t st;
    cublasLtHandle_t lt;
    cublasHandle_t blas; /* fallback when cuBLASLt's heuristic has no algorithm */
    void *gemm_ws;
    size_t gemm_ws_size;
    cu_gemm_plan *plans;
    size_t n_plans;

    /* parameter table, index-parallel to m->params after cu_table_ensure */
    cu_param *dp;
    size_t n_dp;
    int dev_newer; /* device optimizer steps not yet fetched to the host */
    float *stage;  /* fp32 staging for uploads into non-fp32 copies */
    size_t stage_n;

    /* RoPE tables [max_position_embeddings, hd/2] */
    float *cosv, *sinv;

    /* training workspace for one shape (prepare) */
    cu_layout lay;
    int lay_ok;
    int N, S;
    char *arena;
    size_t arena_cap;
    cu_layer_act *la;
    int32_t *d_ids, *d_mask, *d_target, *d_pos, *d_order; /* [N] each */
    int32_t *i_arena;
    size_t i_cap;
    void *x_out, *lnf, *logits, *kbuf, *vbuf, *xd;
    float *rstdf, *logp, *lse_lm, *values, *dlogp, *dvalues, *lg32;
    size_t lg32_n; /* floats in lg32 (logits download chunk) */
    void *dres, *dln, *dlnf, *dao, *dq, *dkf, *dvf, *dact, *dg, *du, *dlora, *dvals;
    void *att_ws;
    float *norm_ws;
    void *pkv, *pfx_h, *pkl, *dpkv_act, *dpfx_h; /* prefix: [P,D], [P,Hp], [L][2][P][Dkv], [P,D], [P,Hp] */
    float *dpkl, *dpkv;                          /* [L][2][P][Dkv], [P,D] */
    /* host side of the last forward (pinned): inputs, outputs */
    int32_t *h_int;
    size_t h_int_cap;
    int32_t *h_ids, *h_mask, *h_target, *h_pos, *h_last;
    float *h_f;
    size_t h_f_cap;
    float *h_logp, *h_valid, *h_values, *h_reward;
    float *h_logits; /* [N,V], malloc'd at the first forward that returns logits */
    size_t h_logits_cap;
    int has_mask, flags, fwd_ok;

    /* KV cache [L][rows][P + cap][Dkv] (act) and decode workspace */
    char *kc, *vc;
    int c_rows, c_cap;
    int c_P; /* prefix rows the cache was sized for (adapters can change it) */
    char *dec_arena;
    size_t dec_cap;
    int dec_n; /* tokens the decode workspace holds */
    int dec_r; /* LoRA rank it was laid out for (0: no LoRA buffers) */
    cu_dec_ws dw;
} cu_state;

static inline cu_state *cu_st(mf_model *m)
{
    return (cu_state *)m->be_state;
}

/* Device entry of param idx (idx >= 0). */
static inline cu_param *cu_p(cu_state *cs, int idx)
{
    return &cs->dp[idx];
}

/* fp32 gradient of param idx, or NULL when absent / frozen. */
static inline float *cu_grad(cu_state *cs, int idx)
{
    return idx >= 0 ? cs->dp[idx].grad : NULL;
}

/* Byte offset of element i in an activation buffer. */
static inline void *cu_at(cu_state *cs, void *base, size_t i)
{
    return (char *)base + i * cs->es;
}

/* ---- cuda_params.cu ---- */
/* Make the device table mirror the host table (names, sizes, trainability),
 * uploading host data for entries created now; no-op when it already does. */
int cu_table_ensure(mf_model *m, mf_err *err);
/* Free the whole device table. */
void cu_table_free(cu_state *cs);
/* Download the master weights of every trainable device param into p->data
 * (and grads into p->grad when `grads`). */
int cu_download_trainable(mf_model *m, int grads, mf_err *err);
int cu_sync(mf_model *m, mf_err *err);
/* Why the model is not one this backend computes (mf_model_is_llama_math is false). */
const char *mf_cu_unsupported_why(const mf_model *m);
int cu_fetch(mf_model *m, mf_err *err);
void cu_zero_grad(mf_model *m);
float *cu_device_grad(mf_model *m, size_t idx);
int cu_opt_new(mf_model *m, void **state, size_t n, const int *idx, mf_err *err);
void cu_opt_free(void *state);
int cu_opt_grad_sqnorm(mf_model *m, void *state, double *out, mf_err *err);
int cu_opt_step(mf_model *m, void *state, const mf_k_adamw_config *c, double lr, long t, float clip, mf_err *err);
int cu_opt_moments(mf_model *m, void *state, size_t k, void *mom, void *vel, int put, mf_err *err);

/* ---- cuda_gemm.cu ---- */
/* Row-major C[M,N] = alpha op(A) op(B) + beta C, op(A) [M,K], op(B) [K,N];
 * lda/ldb/ldc are row-major leading dimensions. A and B are in the
 * activation dtype, C in `cdt` (the activation dtype, or fp32 for weight
 * gradients and values); fp32 accumulation (no TF32). bias (activation dtype,
 * [N]) is added when non-NULL; it needs beta == 0. */
int cu_gemm(cu_state *cs, int tA, int tB, int M, int N, int K, float alpha, const void *A, int lda, const void *B,
            int ldb, float beta, void *C, mf_cu_dtype cdt, int ldc, const void *bias, mf_err *err);
void cu_gemm_plans_free(cu_state *cs);

/* ---- cuda_model.cu ---- */
/* y = x W^T (+b) (+ s * drop(x) A^T B^T) for module j of layer l; u[j]
 * receives the LoRA A-projection; `train` turns LoRA dropout on. */
int cu_lin_fwd(mf_model *m, cu_state *cs, void *const *u, int l, int j, const void *x, void *y, int N, int train,
               mf_err *err);
/* Prefix key/value rows pkv [P, 2*L*Dkv] (act); h [P, Hp] holds the MLP's
 * tanh output with the reparameterisation. */
int cu_prefix_forward(mf_model *m, cu_state *cs, void *pkv, void *h, mf_err *err);
/* host[0..n) = (float) dev[0..n) for an activation buffer, through the
 * fp32 chunk buffer chunk[chunk_n] when the activations are not fp32. Waits. */
int cu_download_act(cu_state *cs, float *host, const void *dev, size_t n, float *chunk, size_t chunk_n,
                    mf_err *err);

/* ---- cuda_decode.cu ---- */
int cu_cache_reset(mf_model *m, int B, int max_len, mf_err *err);
int cu_decode(mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int last_only, float *logits,
              mf_err *err);
void cu_cache_free(cu_state *cs);

#endif
