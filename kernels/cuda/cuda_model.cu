/*
 * kernels/cuda/cuda_model.cu — the CUDA backend: LLaMA-family training
 * forward and backward (every parameter, LoRA, P-Tuning v2 prefixes, LM and
 * score heads) on one (batch, seq) workspace allocated in prepare(), and the
 * mf_k_backend table. The math is kernels/cpu/cpu_model.c step for step
 * (the same per-layer formulas, the same backward pruning); only the
 * primitives differ: cuBLASLt GEMMs (cuda_gemm.cu) and the fused kernels of
 * ops.cuh (RMSNorm with the residual add fused, flash-style attention that
 * saves a log-sum-exp instead of probabilities, log-softmax of the targets
 * without a probability tensor).
 *
 * Per layer (x = residual stream):
 *   h = RMSNorm(x) ; q,k,v = h Wq^T(+b), h Wk^T(+b), h Wv^T(+b)  (+ s * drop(h) A^T B^T with LoRA)
 *   q,k = RoPE(q,k) ; a = attention(q, [prefix_k; k], [prefix_v; v])
 *   x_mid = a Wo^T + x ; h = RMSNorm(x_mid) (one fused kernel) ; x' = (silu(h Wg^T) * h Wu^T) Wd^T + x_mid
 *
 * Activations are in the model's activation dtype (bf16 or fp32, cs->dt);
 * statistics (rstd, lse), log-probs, values and weight gradients are fp32.
 */
#include "kernels/cuda/cuda_state.h"

extern "C" {
#include "kernels/cpu/ops.h" /* mf_k_cpu_rope_table: the host RoPE tables, shared with the CPU backend */
#include "kernels/rng.h"
}

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CU_TRY(call)                                                                                       \
    do {                                                                                                   \
        int rc_ = (call);                                                                                  \
        if (rc_) return rc_;                                                                               \
    } while (0)

/* ---------------------------------------------------------------- workspace */

typedef struct carve {
    char *base; /* NULL: count only */
    size_t off;
} carve;

static void *take(carve *c, size_t bytes)
{
    size_t at = c->off;
    c->off += (bytes + 255) & ~(size_t)255; /* 256-byte aligned slices (cuBLASLt's preferred alignment) */
    return c->base ? c->base + at : NULL;
}

/* Lay out every buffer of the training workspace; with base == NULL only
 * counts. Returns bytes used. */
static size_t layout(mf_model *m, cu_state *cs, char *base)
{
    const mf_model_config *c = &m->cfg;
    const cu_layout *ly = &cs->lay;
    size_t es = cs->es, B = ly->B, T = ly->T, N = B * T, P = ly->P, S = P + T;
    size_t H = c->hidden_size, Im = c->intermediate_size, Dq = m->q_dim, Dkv = m->kv_dim, V = c->vocab_size;
    size_t nh = c->num_attention_heads, L = c->num_hidden_layers, r = ly->lora_r, Hp = ly->prefix_hidden;
    size_t D = 2 * L * Dkv, maxin = H > Im ? H : Im;
    if (Dq > maxin) maxin = Dq;
    carve cv = {base, 0};
#define A_(n) take(&cv, (size_t)(n) * es)
#define F_(n) ((float *)take(&cv, (size_t)(n) * sizeof(float)))
    for (size_t l = 0; l < L; l++) {
        cu_layer_act *a = &cs->la[l];
        void *x_in = A_(N * H);
        if (ly->recompute && l > 0) { /* one shared set; backward re-runs the layer first */
            *a = cs->la[0];
            a->x_in = x_in;
            continue;
        }
        a->x_in = x_in;
        a->ln1 = A_(N * H);
        a->rstd1 = F_(N);
        a->q = A_(N * Dq);
        a->kf = A_(B * S * Dkv);
        a->vf = A_(B * S * Dkv);
        a->lse = F_(B * nh * T);
        a->ao = A_(N * Dq);
        a->x_mid = A_(N * H);
        a->ln2 = A_(N * H);
        a->rstd2 = F_(N);
        a->gate = A_(N * Im);
        a->up = A_(N * Im);
        a->act = A_(N * Im);
        for (int j = 0; j < N_MODS; j++) a->u[j] = r ? A_(N * r) : NULL;
    }
    cs->x_out = A_(N * H);
    cs->lnf = A_(N * H);
    cs->rstdf = F_(N);
    cs->logits = A_(N * V);
    cs->logp = F_(N);
    cs->lse_lm = F_(N);
    cs->values = F_(N);
    cs->dlogp = F_(N);
    cs->dvalues = F_(N);
    cs->lg32_n = N * V < ((size_t)1 << 22) ? N * V : ((size_t)1 << 22);
    cs->lg32 = F_(cs->lg32_n);
    cs->kbuf = A_(N * Dkv);
    cs->vbuf = A_(N * Dkv);
    cs->xd = A_(N * maxin);
    cs->dres = A_(N * H);
    cs->dln = A_(N * H);
    cs->dlnf = A_(N * H);
    cs->dao = A_(N * Dq);
    cs->dq = A_(N * Dq);
    cs->dkf = A_(B * S * Dkv);
    cs->dvf = A_(B * S * Dkv);
    cs->dact = A_(N * Im);
    cs->dg = A_(N * Im);
    cs->du = A_(N * Im);
    cs->dlora = A_(N * (r ? r : 1));
    cs->dvals = A_(N);
    cs->att_ws = take(&cv, mf_cu_attention_bwd_scratch((int)B, (int)T, (int)P, (int)nh, c->num_key_value_heads,
                                                       c->head_dim, ly->deterministic));
    size_t nw = mf_cu_rmsnorm_bwd_scratch((int)N, (int)H);
    cs->norm_ws = F_(nw ? nw : 1);
    cs->pkv = P ? A_(P * D) : NULL;
    cs->pkl = P ? A_(P * D) : NULL;
    cs->dpkv_act = P ? A_(P * D) : NULL;
    cs->dpkl = P ? F_(P * D) : NULL;
    cs->dpkv = P ? F_(P * D) : NULL;
    cs->pfx_h = Hp ? A_(P * Hp) : NULL;
    cs->dpfx_h = Hp ? A_(P * Hp) : NULL;
#undef A_
#undef F_
    return cv.off;
}

static void free_workspace(cu_state *cs)
{
    if (cs->arena) (void)cudaFree(cs->arena);
    if (cs->i_arena) (void)cudaFree(cs->i_arena);
    if (cs->h_int) (void)cudaFreeHost(cs->h_int);
    if (cs->h_f) (void)cudaFreeHost(cs->h_f);
    free(cs->h_logits);
    cs->arena = NULL;
    cs->i_arena = NULL;
    cs->h_int = NULL;
    cs->h_f = NULL;
    cs->h_logits = NULL;
    cs->arena_cap = cs->i_cap = cs->h_int_cap = cs->h_f_cap = cs->h_logits_cap = 0;
    cs->lay_ok = cs->fwd_ok = 0;
}


/* *p holds at least n elements of elem bytes: device memory, or pinned host
 * memory (pinned = 1) for async copies; freed and reallocated only to grow. */
static int ensure_buf(void **p, size_t *cap, size_t n, size_t elem, int pinned, const char *what, mf_err *err)
{
    if (n <= *cap) return 0;
    if (*p) (void)(pinned ? cudaFreeHost(*p) : cudaFree(*p));
    *p = NULL;
    *cap = 0;
    if (pinned) MF_CU_TRY(err, cudaMallocHost(p, n * elem));
    else MF_CU_TRY_MALLOC(err, p, n * elem, what);
    *cap = n;
    return 0;
}

static int cu_prepare(mf_model *m, int B, int T, mf_err *err)
{
    cu_state *cs = cu_st(m);
    CU_TRY(cu_table_ensure(m, err));
    cu_layout want = {B, T, m->has_prefix ? m->prefix.pre_seq_len : 0, m->recompute, m->has_lora ? m->lora.rank : 0,
                      m->has_prefix && m->prefix.prefix_projection ? m->prefix.prefix_hidden_size : 0, (int)cs->dt,
                      cs->deterministic};
    if (cs->lay_ok && !memcmp(&want, &cs->lay, sizeof(want))) return 0;
    cs->fwd_ok = 0;
    cs->lay_ok = 0;
    cs->lay = want;
    /* Re-carve in place when the new shape fits (variable-length batches stop
     * allocating after the largest); grow otherwise. */
    size_t need = layout(m, cs, NULL), N = (size_t)B * T;
    if (need > cs->arena_cap) {
        if (cs->arena) (void)cudaFree(cs->arena);
        cs->arena = NULL;
        cs->arena_cap = 0;
        char what[160];
        snprintf(what, sizeof(what), "activations for batch %d x %d (%s%s)", B, T,
                 cs->dt == MF_CU_BF16 ? "bf16" : "fp32", m->recompute ? ", recomputation" : "");
        MF_CU_TRY_MALLOC(err, &cs->arena, need, what);
        cs->arena_cap = need;
    }
    CU_TRY(ensure_buf((void **)&cs->i_arena, &cs->i_cap, 5 * N, sizeof(int32_t), 0,
                      "token ids / mask / targets / positions", err));
    CU_TRY(ensure_buf((void **)&cs->h_int, &cs->h_int_cap, 4 * N + B, sizeof(int32_t), 1, "host ids", err));
    CU_TRY(ensure_buf((void **)&cs->h_f, &cs->h_f_cap, 3 * N + B, sizeof(float), 1, "host outputs", err));
    layout(m, cs, cs->arena);
    cs->d_ids = cs->i_arena;
    cs->d_mask = cs->d_ids + N;
    cs->d_target = cs->d_mask + N;
    cs->d_pos = cs->d_target + N;
    cs->d_order = cs->d_pos + N;
    cs->h_ids = cs->h_int; /* ids, mask, target, pos: one upload */
    cs->h_mask = cs->h_ids + N;
    cs->h_target = cs->h_mask + N;
    cs->h_pos = cs->h_target + N;
    cs->h_last = cs->h_pos + N;
    cs->h_logp = cs->h_f;
    cs->h_valid = cs->h_logp + N;
    cs->h_values = cs->h_valid + N;
    cs->h_reward = cs->h_values + N;
    cs->N = B * T;
    cs->S = want.P + T;
    cs->lay_ok = 1;
    return 0;
}

int cu_download_act(cu_state *cs, float *host, const void *dev, size_t n, float *chunk, size_t chunk_n, mf_err *err)
{
    if (cs->dt == MF_CU_F32) {
        MF_CU_TRY(err, cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, cs->st));
    } else {
        for (size_t off = 0; off < n; off += chunk_n) { /* stream order keeps chunk reuse safe */
            size_t c = n - off < chunk_n ? n - off : chunk_n;
            MF_CU_TRY(err, mf_cu_convert(chunk, MF_CU_F32, (const char *)dev + off * cs->es, cs->dt, c, cs->st));
            MF_CU_TRY(err, cudaMemcpyAsync(host + off, chunk, c * sizeof(float), cudaMemcpyDeviceToHost, cs->st));
        }
    }
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    return 0;
}

/* ---------------------------------------------------------------- LoRA linears */

/* LoRA dropout masks: mf_model_lora_drop_key, the same as the CPU's (mf_cu_dropout
 * uses the CPU's hash and threshold), so CPU and CUDA runs drop the same elements. */

int cu_lin_fwd(mf_model *m, cu_state *cs, void *const *u, int l, int j, const void *x, void *y, int N, int train,
               mf_err *err)
{
    mf_layer_idx *li = &m->L[l];
    const mf_k_param *W = &m->params[li->w[j]];
    int in = (int)W->shape[1], out = (int)W->shape[0];
    const void *b = (j < 3 && li->bias[j] >= 0) ? cu_p(cs, li->bias[j])->act : NULL;
    CU_TRY(cu_gemm(cs, 0, 1, N, out, in, 1.0f, x, in, cu_p(cs, li->w[j])->act, in, 0.0f, y, cs->dt, out, b, err));
    if (li->lora_a[j] < 0) return 0;
    int r = m->lora.rank;
    const void *xd = x;
    if (mf_model_lora_dropout_on(m, train)) {
        MF_CU_TRY(err, mf_cu_dropout(cs->xd, x, (size_t)N * in, mf_model_lora_drop_key(m, l, j), m->lora.dropout, cs->dt, cs->st));
        xd = cs->xd;
    }
    CU_TRY(cu_gemm(cs, 0, 1, N, r, in, 1.0f, xd, in, cu_p(cs, li->lora_a[j])->act, in, 0.0f, u[j], cs->dt, r, NULL,
                   err));
    return cu_gemm(cs, 0, 1, N, out, r, m->lora_scale, u[j], r, cu_p(cs, li->lora_b[j])->act, r, 1.0f, y, cs->dt, out,
                   NULL, err);
}

/* Backward of cu_lin_fwd: dx (= when !dx_acc, += otherwise; NULL = not
 * needed) gets dy W (+ the LoRA path), trainable weights get their grads. */
static int lin_bwd(mf_model *m, cu_state *cs, cu_layer_act *a, int l, int j, const void *x, const void *dy, void *dx,
                   int dx_acc, int N, mf_err *err)
{
    mf_layer_idx *li = &m->L[l];
    const mf_k_param *W = &m->params[li->w[j]];
    int in = (int)W->shape[1], out = (int)W->shape[0];
    mf_cu_dtype dt = cs->dt;
    float *dW = cu_grad(cs, li->w[j]), *db = j < 3 ? cu_grad(cs, li->bias[j]) : NULL;
    if (dx)
        CU_TRY(cu_gemm(cs, 0, 0, N, in, out, 1.0f, dy, out, cu_p(cs, li->w[j])->act, in, dx_acc ? 1.0f : 0.0f, dx, dt,
                       in, NULL, err));
    if (dW) CU_TRY(cu_gemm(cs, 1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, MF_CU_F32, in, NULL, err));
    if (db) MF_CU_TRY(err, mf_cu_bias_bwd(db, dy, N, out, 1.0f, dt, cs->st));
    if (li->lora_a[j] < 0) return 0;
    int r = m->lora.rank;
    float s = m->lora_scale;
    const void *A = cu_p(cs, li->lora_a[j])->act, *Bm = cu_p(cs, li->lora_b[j])->act;
    float *dA = cu_grad(cs, li->lora_a[j]), *dB = cu_grad(cs, li->lora_b[j]);
    /* du = s dy B ; dB += s dy^T u ; dA += du^T drop(x) ; dx += drop'(du A) */
    CU_TRY(cu_gemm(cs, 0, 0, N, r, out, s, dy, out, Bm, r, 0.0f, cs->dlora, dt, r, NULL, err));
    if (dB) CU_TRY(cu_gemm(cs, 1, 0, out, r, N, s, dy, out, a->u[j], r, 1.0f, dB, MF_CU_F32, r, NULL, err));
    const void *xd = x;
    int drop = mf_model_lora_dropout_on(m, 1);
    float p = m->lora.dropout;
    if (drop) {
        MF_CU_TRY(err, mf_cu_dropout(cs->xd, x, (size_t)N * in, mf_model_lora_drop_key(m, l, j), p, dt, cs->st));
        xd = cs->xd;
    }
    if (dA) CU_TRY(cu_gemm(cs, 1, 0, r, in, N, 1.0f, cs->dlora, r, xd, in, 1.0f, dA, MF_CU_F32, in, NULL, err));
    if (!dx) return 0;
    if (!drop) return cu_gemm(cs, 0, 0, N, in, r, 1.0f, cs->dlora, r, A, in, 1.0f, dx, dt, in, NULL, err);
    /* the dropout mask is a function of (key, index): apply it to du A */
    CU_TRY(cu_gemm(cs, 0, 0, N, in, r, 1.0f, cs->dlora, r, A, in, 0.0f, cs->xd, dt, in, NULL, err));
    MF_CU_TRY(err, mf_cu_dropout(cs->xd, cs->xd, (size_t)N * in, mf_model_lora_drop_key(m, l, j), p, dt, cs->st));
    MF_CU_TRY(err, mf_cu_add(dx, cs->xd, (size_t)N * in, dt, cs->st));
    return 0;
}

/* ---------------------------------------------------------------- prefix */

int cu_prefix_forward(mf_model *m, cu_state *cs, void *pkv, void *h, mf_err *err)
{
    int P = m->prefix.pre_seq_len;
    int D = 2 * m->cfg.num_hidden_layers * m->kv_dim;
    const void *E = cu_p(cs, m->pfx_emb)->act;
    if (!m->prefix.prefix_projection) {
        MF_CU_TRY(err, cudaMemcpyAsync(pkv, E, (size_t)P * D * cs->es, cudaMemcpyDeviceToDevice, cs->st));
        return 0;
    }
    int H = m->cfg.hidden_size, Hp = m->prefix.prefix_hidden_size;
    /* h = tanh(E W0^T + b0) ; pkv = h W2^T + b2 */
    CU_TRY(cu_gemm(cs, 0, 1, P, Hp, H, 1.0f, E, H, cu_p(cs, m->pfx_w0)->act, H, 0.0f, h, cs->dt, Hp,
                   cu_p(cs, m->pfx_b0)->act, err));
    MF_CU_TRY(err, mf_cu_tanh(h, (size_t)P * Hp, cs->dt, cs->st));
    return cu_gemm(cs, 0, 1, P, D, Hp, 1.0f, h, Hp, cu_p(cs, m->pfx_w2)->act, Hp, 0.0f, pkv, cs->dt, D,
                   cu_p(cs, m->pfx_b2)->act, err);
}

/* pkv [P, 2*L*Dkv] (PEFT column layout) <-> per-layer contiguous blocks
 * pkl [L][2][P][Dkv] (what mf_cu_kv_assemble / kv_split take). */
static int prefix_regroup(mf_model *m, void *dst, const void *src, size_t es, int to_layers, cudaStream_t st,
                          mf_err *err)
{
    int P = m->prefix.pre_seq_len, L = m->cfg.num_hidden_layers;
    size_t Dkv = (size_t)m->kv_dim, D = 2 * (size_t)L * Dkv, row = Dkv * es;
    for (int blk = 0; blk < 2 * L; blk++) { /* blk = 2*layer + {0: key, 1: value} */
        char *block = (char *)(to_layers ? dst : src) + (size_t)blk * P * row;
        char *cols = (char *)(to_layers ? src : dst) + (size_t)blk * row;
        if (to_layers)
            MF_CU_TRY(err, cudaMemcpy2DAsync(block, row, cols, D * es, row, P, cudaMemcpyDeviceToDevice, st));
        else
            MF_CU_TRY(err, cudaMemcpy2DAsync(cols, D * es, block, row, row, P, cudaMemcpyDeviceToDevice, st));
    }
    return 0;
}

static int prefix_backward(mf_model *m, cu_state *cs, mf_err *err)
{
    int P = m->prefix.pre_seq_len;
    int D = 2 * m->cfg.num_hidden_layers * m->kv_dim;
    CU_TRY(prefix_regroup(m, cs->dpkv, cs->dpkl, sizeof(float), 0, cs->st, err));
    if (!m->prefix.prefix_projection) {
        float *g = cu_grad(cs, m->pfx_emb);
        if (g) MF_CU_TRY(err, mf_cu_add(g, cs->dpkv, (size_t)P * D, MF_CU_F32, cs->st));
        return 0;
    }
    int H = m->cfg.hidden_size, Hp = m->prefix.prefix_hidden_size;
    mf_cu_dtype dt = cs->dt;
    float *gW2 = cu_grad(cs, m->pfx_w2), *gb2 = cu_grad(cs, m->pfx_b2);
    float *gW0 = cu_grad(cs, m->pfx_w0), *gb0 = cu_grad(cs, m->pfx_b0), *gE = cu_grad(cs, m->pfx_emb);
    void *dy = cs->dpkv_act;
    MF_CU_TRY(err, mf_cu_convert(dy, dt, cs->dpkv, MF_CU_F32, (size_t)P * D, cs->st));
    /* second Linear: dh = dy W2 ; dW2 += dy^T h ; db2 += sum dy */
    CU_TRY(cu_gemm(cs, 0, 0, P, Hp, D, 1.0f, dy, D, cu_p(cs, m->pfx_w2)->act, Hp, 0.0f, cs->dpfx_h, dt, Hp, NULL, err));
    if (gW2) CU_TRY(cu_gemm(cs, 1, 0, D, Hp, P, 1.0f, dy, D, cs->pfx_h, Hp, 1.0f, gW2, MF_CU_F32, Hp, NULL, err));
    if (gb2) MF_CU_TRY(err, mf_cu_bias_bwd(gb2, dy, P, D, 1.0f, dt, cs->st));
    /* tanh: dpre = dh (1 - h^2) */
    MF_CU_TRY(err, mf_cu_tanh_bwd(cs->dpfx_h, cs->pfx_h, (size_t)P * Hp, dt, cs->st));
    /* first Linear: dW0 += dpre^T E ; db0 += sum dpre ; dE += dpre W0 (fp32 straight into the grad) */
    const void *E = cu_p(cs, m->pfx_emb)->act;
    if (gW0) CU_TRY(cu_gemm(cs, 1, 0, Hp, H, P, 1.0f, cs->dpfx_h, Hp, E, H, 1.0f, gW0, MF_CU_F32, H, NULL, err));
    if (gb0) MF_CU_TRY(err, mf_cu_bias_bwd(gb0, cs->dpfx_h, P, Hp, 1.0f, dt, cs->st));
    if (gE)
        CU_TRY(cu_gemm(cs, 0, 0, P, H, Hp, 1.0f, cs->dpfx_h, Hp, cu_p(cs, m->pfx_w0)->act, H, 1.0f, gE, MF_CU_F32, H,
                       NULL, err));
    return 0;
}

/* ---------------------------------------------------------------- layer */

static int layer_forward(mf_model *m, cu_state *cs, int l, void *x_next, int train, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    cu_layer_act *a = &cs->la[l];
    mf_layer_idx *li = &m->L[l];
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, N = cs->N;
    int H = c->hidden_size, Im = c->intermediate_size, Dkv = m->kv_dim;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    float eps = (float)c->rms_norm_eps;
    mf_cu_dtype dt = cs->dt;
    cudaStream_t st = cs->st;

    MF_CU_TRY(err, mf_cu_rmsnorm(a->ln1, a->rstd1, a->x_in, NULL, cu_p(cs, li->ln1)->act, N, H, eps, dt, st));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_Q, a->ln1, a->q, N, train, err));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_K, a->ln1, cs->kbuf, N, train, err));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_V, a->ln1, cs->vbuf, N, train, err));
    MF_CU_TRY(err, mf_cu_rope(a->q, cs->d_pos, N, nh, hd, cs->cosv, cs->sinv, 0, dt, st));
    MF_CU_TRY(err, mf_cu_rope(cs->kbuf, cs->d_pos, N, nkv, hd, cs->cosv, cs->sinv, 0, dt, st));
    const void *pk = P ? cu_at(cs, cs->pkl, (size_t)(2 * l) * P * Dkv) : NULL;
    const void *pv = P ? cu_at(cs, cs->pkl, (size_t)(2 * l + 1) * P * Dkv) : NULL;
    MF_CU_TRY(err, mf_cu_kv_assemble(a->kf, a->vf, cs->kbuf, cs->vbuf, pk, pv, B, T, P, Dkv, dt, st));
    MF_CU_TRY(err, mf_cu_attention(a->ao, a->lse, a->q, a->kf, a->vf, cs->has_mask ? cs->d_mask : NULL, B, T, P, nh,
                                   nkv, hd, dt, st));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_O, a->ao, a->x_mid, N, train, err));
    /* x_mid += x_in, then ln2 = RMSNorm(x_mid): the residual add fused into the norm */
    MF_CU_TRY(err, mf_cu_rmsnorm(a->ln2, a->rstd2, a->x_mid, a->x_in, cu_p(cs, li->ln2)->act, N, H, eps, dt, st));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_GATE, a->ln2, a->gate, N, train, err));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_UP, a->ln2, a->up, N, train, err));
    MF_CU_TRY(err, mf_cu_swiglu(a->act, a->gate, a->up, (size_t)N * Im, dt, st));
    CU_TRY(cu_lin_fwd(m, cs, a->u, l, MOD_DOWN, a->act, x_next, N, train, err));
    MF_CU_TRY(err, mf_cu_add(x_next, a->x_mid, (size_t)N * H, dt, st));
    return 0;
}


/* cs->dres holds dL/d(layer output); on return dL/d(layer input) when
 * `below` (something under this layer trains). Unneeded parts are skipped
 * exactly as on the CPU. */
static int layer_backward(mf_model *m, cu_state *cs, int l, int below, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    cu_layer_act *a = &cs->la[l];
    mf_layer_idx *li = &m->L[l];
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, N = cs->N;
    int H = c->hidden_size, Im = c->intermediate_size, Dkv = m->kv_dim;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    mf_cu_dtype dt = cs->dt;
    cudaStream_t st = cs->st;

    /* MLP */
    CU_TRY(lin_bwd(m, cs, a, l, MOD_DOWN, a->act, cs->dres, cs->dact, 0, N, err));
    MF_CU_TRY(err, mf_cu_swiglu_bwd(cs->dg, cs->du, cs->dact, a->gate, a->up, (size_t)N * Im, dt, st));
    CU_TRY(lin_bwd(m, cs, a, l, MOD_GATE, a->ln2, cs->dg, cs->dln, 0, N, err));
    CU_TRY(lin_bwd(m, cs, a, l, MOD_UP, a->ln2, cs->du, cs->dln, 1, N, err));
    int attn = below || P || mf_model_attn_trains(m, l);
    MF_CU_TRY(err, mf_cu_rmsnorm_bwd(attn ? cs->dres : NULL, 1, cu_grad(cs, li->ln2), cs->norm_ws, cs->dln, a->x_mid,
                                     a->rstd2, cu_p(cs, li->ln2)->act, N, H, dt, st));
    if (!attn) return 0;

    /* attention */
    CU_TRY(lin_bwd(m, cs, a, l, MOD_O, a->ao, cs->dres, cs->dao, 0, N, err));
    MF_CU_TRY(err, mf_cu_attention_bwd(cs->dq, cs->dkf, cs->dvf, cs->dao, a->ao, a->lse, a->q, a->kf, a->vf,
                                       cs->has_mask ? cs->d_mask : NULL, B, T, P, nh, nkv, hd, dt, cs->deterministic,
                                       cs->att_ws, st));
    float *dpk = P ? cs->dpkl + (size_t)(2 * l) * P * Dkv : NULL;
    float *dpv = P ? cs->dpkl + (size_t)(2 * l + 1) * P * Dkv : NULL;
    MF_CU_TRY(err, mf_cu_kv_split(cs->kbuf, cs->vbuf, dpk, dpv, cs->dkf, cs->dvf, B, T, P, Dkv, dt, st));
    MF_CU_TRY(err, mf_cu_rope(cs->dq, cs->d_pos, N, nh, hd, cs->cosv, cs->sinv, 1, dt, st));
    MF_CU_TRY(err, mf_cu_rope(cs->kbuf, cs->d_pos, N, nkv, hd, cs->cosv, cs->sinv, 1, dt, st));
    /* dL/d(ln1 output) only matters for ln1's weight or for layers below */
    void *dln = below || mf_model_trains(m, li->ln1) ? cs->dln : NULL;
    CU_TRY(lin_bwd(m, cs, a, l, MOD_Q, a->ln1, cs->dq, dln, 0, N, err));
    CU_TRY(lin_bwd(m, cs, a, l, MOD_K, a->ln1, cs->kbuf, dln, 1, N, err));
    CU_TRY(lin_bwd(m, cs, a, l, MOD_V, a->ln1, cs->vbuf, dln, 1, N, err));
    if (dln)
        MF_CU_TRY(err, mf_cu_rmsnorm_bwd(below ? cs->dres : NULL, 1, cu_grad(cs, li->ln1), cs->norm_ws, dln, a->x_in,
                                         a->rstd1, cu_p(cs, li->ln1)->act, N, H, dt, st));
    return 0;
}

/* ---------------------------------------------------------------- forward */

static int cu_forward(mf_model *m, const mf_k_batch *b, int flags, mf_k_outputs *out, mf_err *err)
{
    cu_state *cs = cu_st(m);
    const mf_model_config *c = &m->cfg;
    int B = b->B, T = b->T, N = B * T, H = c->hidden_size, V = c->vocab_size, P = cs->lay.P;
    int L = c->num_hidden_layers, train = (flags & MF_FWD_TRAIN) != 0;
    if (!cs->lay_ok || cs->lay.B != B || cs->lay.T != T)
        return mf_err_set(err, MF_EINTERNAL, "cuda forward: no workspace for batch %d x %d (prepare first)", B, T);
    cs->fwd_ok = 0;
    cs->flags = flags;
    cs->has_mask = b->attention_mask != NULL;
    /* the batch's integer inputs, as cpu_model.c computes them */
    for (int bi = 0; bi < B; bi++) {
        cs->h_last[bi] = T - 1;
        if (b->attention_mask) {
            cs->h_last[bi] = 0;
            for (int t = 0; t < T; t++)
                if (b->attention_mask[(size_t)bi * T + t]) cs->h_last[bi] = t;
        }
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)bi * T + t;
            cs->h_ids[n] = b->input_ids[n];
            cs->h_mask[n] = b->attention_mask ? (b->attention_mask[n] != 0) : 1;
            cs->h_pos[n] = P + t; /* positions continue after the prefix */
            int32_t y = (b->labels && t + 1 < T) ? b->labels[n + 1] : MF_K_IGNORE_INDEX;
            cs->h_target[n] = y < 0 ? -1 : y;
            cs->h_valid[n] = y < 0 ? 0.0f : 1.0f;
        }
    }
    cudaStream_t st = cs->st;
    mf_cu_dtype dt = cs->dt;
    MF_CU_TRY(err, cudaMemcpyAsync(cs->d_ids, cs->h_ids, 4 * (size_t)N * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    if (P) {
        CU_TRY(cu_prefix_forward(m, cs, cs->pkv, cs->pfx_h, err));
        CU_TRY(prefix_regroup(m, cs->pkl, cs->pkv, cs->es, 1, st, err));
    }
    MF_CU_TRY(err, mf_cu_embed(cs->la[0].x_in, cu_p(cs, m->embed)->act, cs->d_ids, N, H, dt, st));
    for (int l = 0; l < L; l++) CU_TRY(layer_forward(m, cs, l, l + 1 < L ? cs->la[l + 1].x_in : cs->x_out, train, err));
    MF_CU_TRY(err, mf_cu_rmsnorm(cs->lnf, cs->rstdf, cs->x_out, NULL, cu_p(cs, m->norm)->act, N, H,
                                 (float)c->rms_norm_eps, dt, st));

    memset(out, 0, sizeof(*out));
    out->B = B;
    out->T = T;
    out->V = V;
    out->last = cs->h_last;
    if (flags & MF_FWD_LOGITS) {
        const void *Wlm = cu_p(cs, m->lm_head >= 0 ? m->lm_head : m->embed)->act;
        CU_TRY(cu_gemm(cs, 0, 1, N, V, H, 1.0f, cs->lnf, H, Wlm, H, 0.0f, cs->logits, dt, V, NULL, err));
        MF_CU_TRY(err, mf_cu_logp(cs->logp, cs->lse_lm, cs->logits, cs->d_target, N, V, dt, st));
        MF_CU_TRY(err, cudaMemcpyAsync(cs->h_logp, cs->logp, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, st));
    }
    if (flags & MF_FWD_VALUES) {
        /* values[N,1] = lnf score^T, fp32 out */
        CU_TRY(cu_gemm(cs, 0, 1, N, 1, H, 1.0f, cs->lnf, H, cu_p(cs, m->score)->act, H, 0.0f, cs->values, MF_CU_F32,
                       1, NULL, err));
        MF_CU_TRY(err, cudaMemcpyAsync(cs->h_values, cs->values, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost,
                                       st));
    }
    MF_CU_TRY(err, cudaStreamSynchronize(st));
    if (flags & MF_FWD_LOGITS) {
        double sum = 0;
        int nv = 0;
        for (int n = 0; n < N; n++)
            if (cs->h_target[n] >= 0) {
                sum += cs->h_logp[n];
                nv++;
            }
        if (!(flags & MF_FWD_NO_LOGITS)) {
            size_t nl = (size_t)N * V;
            if (nl > cs->h_logits_cap) { /* host copy, once per larger shape */
                free(cs->h_logits);
                cs->h_logits = (float *)malloc(nl * sizeof(float));
                cs->h_logits_cap = cs->h_logits ? nl : 0;
                if (!cs->h_logits)
                    return mf_err_set(err, MF_ENOMEM, "cuda forward: out of host memory for the logits (%zu MB)",
                                      nl * 4 >> 20);
            }
            CU_TRY(cu_download_act(cs, cs->h_logits, cs->logits, nl, cs->lg32, cs->lg32_n, err));
            out->logits = cs->h_logits;
        }
        out->logp = cs->h_logp;
        out->valid = cs->h_valid;
        out->n_valid = nv;
        out->loss = nv ? -sum / nv : 0.0;
    }
    if (flags & MF_FWD_VALUES) {
        for (int bi = 0; bi < B; bi++) cs->h_reward[bi] = cs->h_values[(size_t)bi * T + cs->h_last[bi]];
        out->values = cs->h_values;
        out->reward = cs->h_reward;
    }
    cs->fwd_ok = train;
    return 0;
}

/* ---------------------------------------------------------------- backward */

static int cu_backward(mf_model *m, const float *dlogp, const float *dvalues, mf_err *err)
{
    cu_state *cs = cu_st(m);
    if (!cs->fwd_ok)
        return mf_err_set(err, MF_EINVAL, "backward: no training forward to differentiate (call mf_model_forward "
                                          "with MF_FWD_TRAIN first; backward consumes it)");
    cs->fwd_ok = 0;
    /* trainability may have changed since the forward: grads for new trainables */
    CU_TRY(cu_table_ensure(m, err));
    const mf_model_config *c = &m->cfg;
    int N = cs->N, H = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers, P = cs->lay.P;
    mf_cu_dtype dt = cs->dt;
    cudaStream_t st = cs->st;
    int have = 0; /* something has been written to dlnf */
    if ((cs->flags & MF_FWD_LOGITS) && dlogp) {
        int wi = m->lm_head >= 0 ? m->lm_head : m->embed;
        float *dW = cu_grad(cs, wi);
        MF_CU_TRY(err, cudaMemcpyAsync(cs->dlogp, dlogp, (size_t)N * sizeof(float), cudaMemcpyHostToDevice, st));
        /* logits now hold dlogits */
        MF_CU_TRY(err, mf_cu_logp_bwd(cs->logits, cs->dlogp, cs->d_target, cs->lse_lm, N, V, dt, st));
        CU_TRY(cu_gemm(cs, 0, 0, N, H, V, 1.0f, cs->logits, V, cu_p(cs, wi)->act, H, 0.0f, cs->dlnf, dt, H, NULL, err));
        if (dW) CU_TRY(cu_gemm(cs, 1, 0, V, H, N, 1.0f, cs->logits, V, cs->lnf, H, 1.0f, dW, MF_CU_F32, H, NULL, err));
        have = 1;
    }
    if ((cs->flags & MF_FWD_VALUES) && dvalues) {
        /* values[n] = lnf[n] . w  =>  dw += sum_n dv[n] lnf[n], dlnf[n] += dv[n] w */
        float *dw = cu_grad(cs, m->score);
        MF_CU_TRY(err, cudaMemcpyAsync(cs->dvalues, dvalues, (size_t)N * sizeof(float), cudaMemcpyHostToDevice, st));
        MF_CU_TRY(err, mf_cu_convert(cs->dvals, dt, cs->dvalues, MF_CU_F32, (size_t)N, st));
        CU_TRY(cu_gemm(cs, 0, 0, N, H, 1, 1.0f, cs->dvals, 1, cu_p(cs, m->score)->act, H, have ? 1.0f : 0.0f, cs->dlnf,
                       dt, H, NULL, err));
        if (dw) CU_TRY(cu_gemm(cs, 1, 0, 1, H, N, 1.0f, cs->dvals, 1, cs->lnf, H, 1.0f, dw, MF_CU_F32, H, NULL, err));
        have = 1;
    }
    if (!have) MF_CU_TRY(err, cudaMemsetAsync(cs->dlnf, 0, (size_t)N * H * cs->es, st));
    MF_CU_TRY(err, mf_cu_rmsnorm_bwd(cs->dres, 0, cu_grad(cs, m->norm), cs->norm_ws, cs->dlnf, cs->x_out, cs->rstdf,
                                     cu_p(cs, m->norm)->act, N, H, dt, st));
    int lo = mf_model_lowest_needed_layer(m), embed_trains = mf_model_trains(m, m->embed);
    if (P) MF_CU_TRY(err, cudaMemsetAsync(cs->dpkl, 0, (size_t)P * 2 * L * m->kv_dim * sizeof(float), st));
    for (int l = L - 1; l >= lo; l--) {
        if (cs->lay.recompute) /* re-run the layer; its output equals what is already stored */
            CU_TRY(layer_forward(m, cs, l, l + 1 < L ? cs->la[l + 1].x_in : cs->x_out, 1, err));
        CU_TRY(layer_backward(m, cs, l, l > lo || embed_trains, err));
    }
    if (P) CU_TRY(prefix_backward(m, cs, err));
    float *dE = cu_grad(cs, m->embed);
    if (dE && lo == 0)
        MF_CU_TRY(err, mf_cu_embed_bwd(dE, cs->dres, cs->d_ids, N, H, V, dt, cs->deterministic, cs->d_order, st));
    MF_CU_TRY(err, cudaStreamSynchronize(st)); /* surface kernel faults here, not at some later call */
    return 0;
}

/* ---------------------------------------------------------------- attach / detach */

static void cu_detach(mf_model *m)
{
    cu_state *cs = cu_st(m);
    if (!cs) return;
    if (cs->st) (void)cudaStreamSynchronize(cs->st);
    cu_cache_free(cs);
    free_workspace(cs);
    cu_table_free(cs);
    cu_gemm_plans_free(cs);
    if (cs->stage) (void)cudaFree(cs->stage);
    if (cs->gemm_ws) (void)cudaFree(cs->gemm_ws);
    if (cs->cosv) (void)cudaFree(cs->cosv);
    if (cs->sinv) (void)cudaFree(cs->sinv);
    if (cs->blas) (void)cublasDestroy(cs->blas);
    if (cs->lt) (void)cublasLtDestroy(cs->lt);
    if (cs->st) (void)cudaStreamDestroy(cs->st);
    free(cs->la);
    free(cs);
    m->be_state = NULL;
}

static int attach_setup(mf_model *m, cu_state *cs, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    MF_CU_TRY(err, cudaGetDevice(&cs->device));
    MF_CU_TRY(err, cudaStreamCreateWithFlags(&cs->st, cudaStreamNonBlocking));
    MF_CUBLAS_TRY(err, cublasLtCreate(&cs->lt));
    MF_CUBLAS_TRY(err, cublasCreate(&cs->blas));
    MF_CUBLAS_TRY(err, cublasSetStream(cs->blas, cs->st));
    cs->gemm_ws_size = (size_t)32 << 20;
    MF_CU_TRY_MALLOC(err, &cs->gemm_ws, cs->gemm_ws_size, "cuBLASLt workspace");
    /* RoPE tables for every position the model allows, built once on the host */
    size_t half = (size_t)c->head_dim / 2, n = (size_t)c->max_position_embeddings * half;
    float *h = (float *)malloc(2 * n * sizeof(float));
    if (!h) return mf_err_set(err, MF_ENOMEM, "cuda backend: out of host memory for RoPE tables");
    mf_k_cpu_rope_table(h, h + n, c->max_position_embeddings, c->head_dim, c->rope_theta);
    int rc;
    if ((rc = mf_cu_malloc((void **)&cs->cosv, n * sizeof(float), "RoPE cos table", err, __FILE__, __LINE__)))
        goto out;
    if ((rc = mf_cu_malloc((void **)&cs->sinv, n * sizeof(float), "RoPE sin table", err, __FILE__, __LINE__)))
        goto out;
    /* On cs->st, not the legacy default stream: cs->st is non-blocking, so a
     * plain cudaMemcpy (whose pageable H2D DMA may still be in flight when it
     * returns) would not be ordered before the first RoPE kernel. The sync
     * also keeps h alive until the copies have read it (also on a failure). */
    if ((rc = MF_CU_CHECK(err, cudaMemcpyAsync(cs->cosv, h, n * sizeof(float), cudaMemcpyHostToDevice, cs->st))))
        goto out;
    if ((rc = MF_CU_CHECK(err, cudaMemcpyAsync(cs->sinv, h + n, n * sizeof(float), cudaMemcpyHostToDevice, cs->st))))
        goto out;
    rc = MF_CU_CHECK(err, cudaStreamSynchronize(cs->st));
out:
    if (rc) (void)cudaStreamSynchronize(cs->st);
    free(h);
    return rc;
}

const char *mf_cu_unsupported_why(const mf_model *m)
{
    const mf_model_config *c = &m->cfg;
    if (c->pos == MF_POS_ROPE_2D || c->prefix_lm || c->glm_residual)
        return "cuda backend: ChatGLM-6B (2D rotary, prefix-LM attention, alpha-scaled residuals) is not implemented; "
               "use --backend cpu";
    if (c->norm != MF_NORM_RMS) return "cuda backend: LayerNorm models (BLOOM) are not implemented; use --backend cpu";
    if (c->act != MF_ACT_SWIGLU) return "cuda backend: GELU MLPs (BLOOM) are not implemented; use --backend cpu";
    if (c->pos != MF_POS_ROPE) return "cuda backend: ALiBi (BLOOM) is not implemented; use --backend cpu";
    if (c->qkv != MF_QKV_SEPARATE || c->mlp_fused)
        return "cuda backend: fused query_key_value / gate_up projections (BLOOM, GLM, ChatGLM2) are not implemented; "
               "use --backend cpu";
    if (c->rope_interleaved || m->rot != c->head_dim)
        return "cuda backend: partial or interleaved RoPE (GLM, ChatGLM2) is not implemented; use --backend cpu";
    if (m->has_prefix && m->prefix.dropout > 0)
        return "cuda backend: prefix dropout (ChatGLM's P-Tuning v2) is not implemented; use --backend cpu";
    return "cuda backend: this model's architecture features are not implemented; use --backend cpu";
}

static int cu_attach(mf_model *m, mf_err *err)
{
    /* a model the kernels here do not compute is refused before anything else (never a wrong model) */
    if (!mf_model_is_llama_math(m)) return mf_err_set(err, MF_EUNSUPPORTED, "%s", mf_cu_unsupported_why(m));
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        (void)cudaGetLastError();
        return mf_err_set(err, MF_EUNSUPPORTED, "cuda backend: no usable CUDA device (%s)",
                          e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    cu_state *cs = (cu_state *)calloc(1, sizeof(*cs));
    if (!cs) return mf_err_set(err, MF_ENOMEM, "cuda backend: out of host memory");
    cs->la = (cu_layer_act *)calloc((size_t)m->cfg.num_hidden_layers, sizeof(cu_layer_act));
    if (!cs->la) {
        free(cs);
        return mf_err_set(err, MF_ENOMEM, "cuda backend: out of host memory");
    }
    cs->dt = MF_CU_BF16; /* training default; mf_k_cuda_set_precision(m, "fp32") for conformance */
    cs->es = mf_cu_dtype_size(cs->dt);
    m->be_state = cs;
    int rc = attach_setup(m, cs, err);
    if (rc) cu_detach(m);
    return rc;
}

/* ---------------------------------------------------------------- backend table */

static const mf_k_backend cuda_backend = {
    /* .name = */ "cuda",
    /* .attach = */ cu_attach,
    /* .detach = */ cu_detach,
    /* .sync = */ cu_sync,
    /* .fetch = */ cu_fetch,
    /* .prepare = */ cu_prepare,
    /* .forward = */ cu_forward,
    /* .backward = */ cu_backward,
    /* .cache_reset = */ cu_cache_reset,
    /* .decode = */ cu_decode,
    /* .zero_grad = */ cu_zero_grad,
    /* .opt_new = */ cu_opt_new,
    /* .opt_free = */ cu_opt_free,
    /* .opt_grad_sqnorm = */ cu_opt_grad_sqnorm,
    /* .opt_step = */ cu_opt_step,
    /* .opt_moments = */ cu_opt_moments,
    /* .device_grad = */ cu_device_grad,
};

extern "C" const mf_k_backend *mf_k_backend_cuda(void)
{
    return &cuda_backend;
}

extern "C" int mf_k_cuda_set_precision(mf_model *m, const char *precision, mf_err *err)
{
    if (!m || m->be != &cuda_backend || !m->be_state)
        return mf_err_set(err, MF_EINVAL, "cuda precision: the model is not on the CUDA backend");
    mf_cu_dtype want;
    if (!precision || !*precision || !strcmp(precision, "bf16")) want = MF_CU_BF16;
    else if (!strcmp(precision, "fp32")) want = MF_CU_F32;
    else if (!strcmp(precision, "fp16"))
        return mf_err_set(err, MF_EUNSUPPORTED, "cuda precision: fp16 is not supported by the CUDA backend (use bf16 "
                                                "for training or fp32 for conformance)");
    else
        return mf_err_set(err, MF_EINVAL, "cuda precision: expected bf16 or fp32, got '%s'", precision);
    cu_state *cs = cu_st(m);
    if (want == cs->dt) return 0;
    /* every device copy changes dtype: bring trained weights home, drop the
     * table, the workspace and the KV cache, rebuild from the host copies */
    if (cs->dev_newer) {
        CU_TRY(cu_download_trainable(m, 0, err));
        cs->dev_newer = 0;
    }
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    cu_cache_free(cs);
    cs->lay_ok = cs->fwd_ok = 0;
    cu_table_free(cs);
    cs->dt = want;
    cs->es = mf_cu_dtype_size(want);
    return cu_sync(m, err);
}

extern "C" void mf_k_cuda_set_deterministic(mf_model *m, int on)
{
    if (!m || m->be != &cuda_backend || !m->be_state) return;
    cu_state *cs = cu_st(m);
    cs->deterministic = on != 0; /* part of the workspace layout: the next prepare re-carves */
}
