/*
 * kernels/cpu/cpu_state.h — the CPU backend's per-model state: activations
 * and workspaces for one (batch, seq) shape carved from one arena, the RoPE
 * tables, and the KV cache. Shared by cpu_model.c (training forward/backward)
 * and cpu_decode.c (KV-cached inference).
 */
#ifndef MF_KERNELS_CPU_STATE_H
#define MF_KERNELS_CPU_STATE_H

#include "kernels/model_internal.h"

/* Saved activations of one layer. With recomputation every layer shares one
 * set except x_in, and backward re-runs the layer forward first. */
typedef struct cpu_layer_act {
    float *x_in;          /* [N,H] residual stream entering the layer */
    float *ln1, *rstd1;   /* [N,H], [N] */
    float *mean1, *mean2; /* [N] LayerNorm means (NULL with RMSNorm) */
    float *q;             /* [N,Dq] after RoPE */
    float *kf, *vf;       /* [B,S,Dkv]: prefix rows then RoPE'd keys / values */
    float *att;           /* [B,nh,T,S] softmax probabilities */
    float *ao;            /* [N,Dq] attention output (o_proj input) */
    float *x_mid;         /* [N,H] residual after attention */
    float *ln2, *rstd2;
    float *gate, *up, *act; /* [N,I]; GELU: up = pre-activation, no gate */
    float *u[N_MODS];     /* [N,r] LoRA A-projection outputs */
} cpu_layer_act;

typedef struct cpu_layout {
    int B, T, P, recompute, lora_r, prefix_hidden;
} cpu_layout;

typedef struct cpu_state {
    cpu_layout lay;
    int N, S;
    float *arena;
    size_t arena_cap, iarena_cap; /* floats / ints allocated */
    cpu_layer_act *la;
    /* inputs of the last forward */
    int32_t *iarena;
    int32_t *ids, *mask, *target, *last, *pos;
    int32_t *bpos, *ctx;                     /* prefix LM: block positions [N], context lengths [B] */
    int32_t *kpos;                            /* [B, S] ALiBi key positions (NULL without ALiBi) */
    int has_mask, flags, fwd_ok;
    /* head */
    float *x_out, *lnf, *rstdf, *meanf, *logits, *logp, *lse, *valid, *values, *reward;
    float *emb, *mean_e, *rstd_e;            /* embedding norm: its input [N,H], stats [N] */
    /* workspaces */
    float *kbuf, *vbuf, *xd;                 /* [N,Dkv] x2, [N,maxin] */
    float *wide;                             /* [N, max(Dq + 2 Dkv, 2 I)]: fused QKV / gate-up outputs and grads */
    float *dres, *dln, *dao, *dq, *dkf, *dvf; /* backward */
    float *dact, *dg, *du, *dlora, *dlnf;
    float *att_ws;                           /* attention backward: threads * T * S */
    float *pkv, *pfx_pre, *pfx_h, *dpkv, *dpfx_h; /* prefix: [P,D], [P,Hp] x2, [P,D], [P,Hp] */
    float *cosv, *sinv;
    int rope_len;
    float *alibi;                            /* ALiBi slopes [nh], NULL without ALiBi */
    /* KV cache: [L][rows][P + cap][Dkv] */
    float *kc, *vc;
    int c_rows, c_cap;
    int *c_ctx, *c_mpos;                     /* prefix LM: each cache row's context length / mask position (-1: unknown) */
    float *dec_arena;
    size_t dec_n;
    int threads;
} cpu_state;

/* y = x W^T (+b) (+ LoRA) for module j of layer l; a->u[j] receives the LoRA
 * A-projection; train turns LoRA dropout on. */
void mf_k_cpu_lin_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, int j, const float *x, float *y,
                      int N, int train);
/* The norm of the config (RMSNorm or LayerNorm) with weight param wi, bias param bi. */
void mf_k_cpu_norm_fwd(mf_model *m, float *y, float *mean, float *rstd, const float *x, int wi, int bi, int N);
/* q [N,Dq], k, v [N,Dkv] of layer l from its input norm h (separate or fused projections);
 * wide: [N, Dq + 2 Dkv] scratch for a fused one. */
void mf_k_cpu_qkv_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, const float *h, float *q, float *k,
                      float *v, float *wide, int N, int train);
/* The MLP of layer l on h: gate/up/act [N,I] (gate unused with GELU) and y = down(act);
 * wide: [N, 2I] scratch for a fused gate/up. */
void mf_k_cpu_mlp_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, const float *h, float *gate, float *up,
                      float *act, float *y, float *wide, int N, int train);
int mf_k_cpu_rope_ensure(mf_model *m, int len, mf_err *err);
/* Rotary positions on q [N, nh*hd] and k [N, nkv*hd] (inverse = 1: the backward's transpose
 * rotation): LLaMA / GLM RoPE at pos, or GLM's 2D rotary (pos on each head's first half, bpos
 * on its second). No-op with ALiBi. */
void mf_k_cpu_rope_qk(mf_model *m, cpu_state *cs, float *q, float *k, const int *pos, const int *bpos, int N,
                      int inverse);
/* Prefix key/value rows [P, 2*L*Dkv] (runs the reparameterisation MLP). */
void mf_k_cpu_prefix_forward(mf_model *m, float *pkv, float *pre, float *h);

#endif
