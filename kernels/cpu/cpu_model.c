/*
 * kernels/cpu/cpu_model.c — the CPU backend: training forward and backward
 * (every parameter, LoRA, P-Tuning v2 prefixes, LM and score heads) on one
 * (batch, seq) workspace allocated in prepare().
 *
 * Per layer (x = residual stream; HF LlamaDecoderLayer, and BLOOM / GLM blocks
 * through the config's features):
 *   h = Norm(x) ; q,k,v = h Wq^T(+b), h Wk^T(+b), h Wv^T(+b), or split(h Wqkv^T + b)
 *                 (+ s * drop(h) A^T B^T on each projection with LoRA)
 *   q,k = RoPE(q,k) (full / partial, halves / interleaved; none with ALiBi)
 *   a = softmax(q [prefix_k; k]^T / sqrt(d) (+ alibi) + mask) [prefix_v; v]
 *   x = x + a Wo^T (+b) ; h = Norm(x)
 *   x = x + (silu(h Wg^T) * h Wu^T) Wd^T   (SwiGLU; gate/up possibly one fused weight)
 *     or x + gelu(h Wu^T + bu) Wd^T + bd   (GELU, BLOOM)
 * Norm = RMSNorm or LayerNorm; BLOOM normalises the embeddings too. Then the
 * final norm and the LM head (logits, log-probs of the shifted labels) and/or
 * the score head (one value per position). Backward walks the same steps in
 * reverse down to the lowest layer that has something trainable at or below it.
 */
#include "kernels/cpu/cpu_state.h"
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int);

#define P_(m, i) (&(m)->params[(i)])

/* ---------------------------------------------------------------- workspace */

static float *take(float **cur, size_t n, size_t *total)
{
    float *p = *cur;
    n = (n + 15) & ~(size_t)15; /* 64-byte aligned slices */
    *total += n;
    if (p) *cur = p + n;
    return p;
}

/* Lay out every buffer; with base == NULL only counts. Returns floats used. */
static size_t layout(mf_model *m, cpu_state *cs, float *base)
{
    const mf_model_config *c = &m->cfg;
    cpu_layout *ly = &cs->lay;
    size_t B = ly->B, T = ly->T, N = B * T, P = ly->P, S = P + T;
    size_t H = c->hidden_size, Im = c->intermediate_size, Dq = m->q_dim, Dkv = m->kv_dim;
    size_t nh = c->num_attention_heads, L = c->num_hidden_layers, r = ly->lora_r;
    size_t maxin = H > Im ? H : Im;
    if (Dq > maxin) maxin = Dq;
    int ln = c->norm == MF_NORM_LAYER, gelu = c->act == MF_ACT_GELU_TANH;
    size_t wide = Dq + 2 * Dkv > 2 * Im ? Dq + 2 * Dkv : 2 * Im;
    size_t total = 0;
    float *cur = base;
#define T_(n) take(&cur, (n), &total)
    for (size_t l = 0; l < L; l++) {
        cpu_layer_act *a = &cs->la[l];
        a->x_in = T_(N * H);
        if (ly->recompute && l > 0) {
            cpu_layer_act keep = cs->la[0];
            float *x_in = a->x_in;
            *a = keep;
            a->x_in = x_in;
            continue;
        }
        a->ln1 = T_(N * H); a->rstd1 = T_(N);
        a->q = T_(N * Dq); a->kf = T_(B * S * Dkv); a->vf = T_(B * S * Dkv);
        a->att = T_(B * nh * T * S); a->ao = T_(N * Dq);
        a->x_mid = T_(N * H); a->ln2 = T_(N * H); a->rstd2 = T_(N);
        a->gate = gelu ? NULL : T_(N * Im); a->up = T_(N * Im); a->act = T_(N * Im);
        for (int j = 0; j < N_MODS; j++) a->u[j] = r && mf_arch_has_module(c, j) ? T_(N * r) : NULL;
        a->mean1 = ln ? T_(N) : NULL; a->mean2 = ln ? T_(N) : NULL;
    }
    cs->x_out = T_(N * H); cs->lnf = T_(N * H); cs->rstdf = T_(N);
    cs->logits = T_(N * (size_t)c->vocab_size);
    cs->logp = T_(N); cs->lse = T_(N); cs->valid = T_(N); cs->values = T_(N); cs->reward = T_(B);
    cs->kbuf = T_(N * Dkv); cs->vbuf = T_(N * Dkv); cs->xd = T_(N * maxin);
    cs->dres = T_(N * H); cs->dln = T_(N * H); cs->dlnf = T_(N * H);
    cs->dao = T_(N * Dq); cs->dq = T_(N * Dq); cs->dkf = T_(B * S * Dkv); cs->dvf = T_(B * S * Dkv);
    cs->dact = T_(N * Im); cs->dg = T_(N * Im); cs->du = T_(N * Im);
    cs->dlora = T_(N * (r ? r : 1));
    cs->att_ws = T_((size_t)cs->threads * T * S);
    size_t D = 2 * L * Dkv, Hp = ly->prefix_hidden;
    cs->pkv = P ? T_(P * D) : NULL; cs->dpkv = P ? T_(P * D) : NULL;
    cs->pfx_pre = Hp ? T_(P * Hp) : NULL; cs->pfx_h = Hp ? T_(P * Hp) : NULL;
    cs->dpfx_h = Hp ? T_(P * Hp) : NULL;
    /* the other archs' buffers (after the LLaMA ones, whose layout stays as it was) */
    cs->wide = c->qkv != MF_QKV_SEPARATE || c->mlp_fused ? T_(N * wide) : NULL;
    cs->meanf = ln ? T_(N) : NULL;
    cs->emb = c->embed_norm ? T_(N * H) : NULL;
    cs->mean_e = c->embed_norm ? T_(N) : NULL; cs->rstd_e = c->embed_norm ? T_(N) : NULL;
#undef T_
    return total;
}

static int cpu_prepare(mf_model *m, int B, int T, mf_err *err)
{
    cpu_state *cs = m->be_state;
    cpu_layout want = {B, T, m->has_prefix ? m->prefix.pre_seq_len : 0, m->recompute,
                       m->has_lora ? m->lora.rank : 0,
                       m->has_prefix && m->prefix.prefix_projection ? m->prefix.prefix_hidden_size : 0};
    if (cs->arena && !memcmp(&want, &cs->lay, sizeof(want))) return 0;
    cs->fwd_ok = 0;
    cs->lay = want;
    /* Re-carve in place when the new shape fits (variable-length batches stop
     * allocating once the largest shape has been seen); grow otherwise. Every
     * buffer is written before it is read, so no clearing is needed. */
    size_t n = layout(m, cs, NULL), nt = (size_t)B * T, ni = 5 * nt + 2 * (size_t)B;
    if (m->cfg.pos == MF_POS_ALIBI) ni += (size_t)B * (want.P + T);
    if (n > cs->arena_cap) {
        free(cs->arena);
        cs->arena = calloc(n, sizeof(float));
        cs->arena_cap = cs->arena ? n : 0;
    }
    if (ni > cs->iarena_cap) {
        free(cs->iarena);
        cs->iarena = calloc(ni, sizeof(int32_t));
        cs->iarena_cap = cs->iarena ? ni : 0;
    }
    if (!cs->arena || !cs->iarena) {
        memset(&cs->lay, 0, sizeof(cs->lay));
        return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory for activations of batch %d x %d (%zu MB)",
                          B, T, n * 4 >> 20);
    }
    layout(m, cs, cs->arena);
    /* the batch's integer inputs: ids, mask, target, pos [N] and last [B] */
    cs->ids = cs->iarena;
    cs->mask = cs->ids + nt;
    cs->target = cs->mask + nt;
    cs->pos = cs->target + nt;
    cs->last = cs->pos + nt;
    cs->bpos = cs->last + B;
    cs->ctx = cs->bpos + nt;
    cs->kpos = m->cfg.pos == MF_POS_ALIBI ? cs->ctx + B : NULL;
    cs->N = B * T;
    cs->S = want.P + T;
    return mf_k_cpu_rope_ensure(m, want.P + T, err);
}

int mf_k_cpu_rope_ensure(mf_model *m, int len, mf_err *err)
{
    cpu_state *cs = m->be_state;
    int glm = m->cfg.pos == MF_POS_ROPE_2D;
    if (glm) len++; /* block positions run to T */
    if (len <= cs->rope_len || (m->cfg.pos != MF_POS_ROPE && !glm)) return 0;
    int half = m->rot / 2;
    float *c = realloc(cs->cosv, (size_t)len * half * sizeof(float));
    if (!c) return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory for RoPE tables");
    cs->cosv = c;
    float *s = realloc(cs->sinv, (size_t)len * half * sizeof(float));
    if (!s) return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory for RoPE tables");
    cs->sinv = s;
    mf_k_cpu_rope_table_ex(cs->cosv, cs->sinv, len, m->rot, m->cfg.rope_theta, glm);
    cs->rope_len = len;
    return 0;
}

void mf_k_cpu_rope_qk(mf_model *m, cpu_state *cs, float *q, float *k, const int *pos, const int *bpos, int N,
                      int inverse)
{
    const mf_model_config *c = &m->cfg;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    if (c->pos == MF_POS_ROPE) {
        mf_k_cpu_rope(q, pos, N, nh, hd, m->rot, c->rope_interleaved, cs->cosv, cs->sinv, inverse);
        mf_k_cpu_rope(k, pos, N, nkv, hd, m->rot, c->rope_interleaved, cs->cosv, cs->sinv, inverse);
    } else if (c->pos == MF_POS_ROPE_2D) { /* rot = hd / 2: one rotation per half of each head */
        mf_k_cpu_rope(q, pos, N, nh, hd, m->rot, 0, cs->cosv, cs->sinv, inverse);
        mf_k_cpu_rope(q + m->rot, bpos, N, nh, hd, m->rot, 0, cs->cosv, cs->sinv, inverse);
        mf_k_cpu_rope(k, pos, N, nkv, hd, m->rot, 0, cs->cosv, cs->sinv, inverse);
        mf_k_cpu_rope(k + m->rot, bpos, N, nkv, hd, m->rot, 0, cs->cosv, cs->sinv, inverse);
    }
}

/* ---------------------------------------------------------------- LoRA linears */

/* Dropout on the LoRA input (the mask: mf_model_lora_drop_key). */
static void dropout_apply(float *y, const float *x, size_t n, uint64_t key, float p)
{
    uint32_t thr = (uint32_t)(p * 16777216.0f);
    float sc = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = (uint32_t)(mf_k_hash64(key + i) >> 40) >= thr ? x[i] * sc : 0.0f;
}

/* y = x W^T (+ b) (+ s * drop(x) A^T B^T) for module j of layer l. */
void mf_k_cpu_lin_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, int j, const float *x, float *y,
                    int N, int train)
{
    mf_layer_idx *li = &m->L[l];
    mf_k_param *W = P_(m, li->w[j]);
    int in = (int)W->shape[1], out = (int)W->shape[0];
    const float *b = li->bias[j] >= 0 ? P_(m, li->bias[j])->data : NULL;
    mf_k_cpu_linear(y, x, W->data, b, N, in, out, 1.0f, 0.0f);
    if (li->lora_a[j] < 0) return;
    int r = m->lora.rank;
    const float *xd = x;
    if (mf_model_lora_dropout_on(m, train)) {
        dropout_apply(cs->xd, x, (size_t)N * in, mf_model_lora_drop_key(m, l, j), m->lora.dropout);
        xd = cs->xd;
    }
    mf_k_cpu_linear(a->u[j], xd, P_(m, li->lora_a[j])->data, NULL, N, in, r, 1.0f, 0.0f);
    mf_k_cpu_linear(y, a->u[j], P_(m, li->lora_b[j])->data, NULL, N, r, out, m->lora_scale, 1.0f);
}

static float *grad_of(mf_model *m, int idx)
{
    if (idx < 0) return NULL;
    mf_k_param *p = P_(m, idx);
    return p->trainable ? p->grad : NULL;
}

/* Backward of lin_fwd: dx += dy W (+ LoRA path), weight grads if trainable. */
static void lin_bwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, int j, const float *x,
                    const float *dy, float *dx, int N)
{
    mf_layer_idx *li = &m->L[l];
    mf_k_param *W = P_(m, li->w[j]);
    int in = (int)W->shape[1], out = (int)W->shape[0];
    mf_k_cpu_linear_bwd(dx, grad_of(m, li->w[j]), grad_of(m, li->bias[j]), dy, x, W->data, N, in, out, 1.0f);
    if (li->lora_a[j] < 0) return;
    int r = m->lora.rank;
    float s = m->lora_scale;
    mf_k_param *A = P_(m, li->lora_a[j]), *Bm = P_(m, li->lora_b[j]);
    /* du = s dy B ; dB += s dy^T u ; dA += du^T drop(x) ; dx += drop'(du A) */
    mf_k_cpu_sgemm(0, 0, N, r, out, s, dy, out, Bm->data, r, 0.0f, cs->dlora, r);
    mf_k_cpu_linear_bwd(NULL, grad_of(m, li->lora_b[j]), NULL, dy, a->u[j], Bm->data, N, r, out, s);
    const float *xd = x;
    int drop = mf_model_lora_dropout_on(m, 1);
    if (drop) {
        dropout_apply(cs->xd, x, (size_t)N * in, mf_model_lora_drop_key(m, l, j), m->lora.dropout);
        xd = cs->xd;
    }
    mf_k_cpu_linear_bwd(NULL, grad_of(m, li->lora_a[j]), NULL, cs->dlora, xd, A->data, N, in, r, 1.0f);
    if (!dx) return;
    if (!drop) {
        mf_k_cpu_linear_bwd(dx, NULL, NULL, cs->dlora, NULL, A->data, N, in, r, 1.0f);
        return;
    }
    /* the dropout mask is a function of (key, index): apply it to du A */
    mf_k_cpu_sgemm(0, 0, N, in, r, 1.0f, cs->dlora, r, A->data, in, 0.0f, cs->xd, in);
    dropout_apply(cs->xd, cs->xd, (size_t)N * in, mf_model_lora_drop_key(m, l, j), m->lora.dropout);
    size_t n = (size_t)N * in;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] += cs->xd[i];
}

/* ---------------------------------------------------------------- prefix */

void mf_k_cpu_prefix_forward(mf_model *m, float *pkv, float *pre, float *h)
{
    int P = m->prefix.pre_seq_len;
    int64_t D = 2LL * m->cfg.num_hidden_layers * m->kv_dim;
    mf_k_param *E = P_(m, m->pfx_emb);
    if (!m->prefix.prefix_projection) {
        memcpy(pkv, E->data, (size_t)P * D * sizeof(float));
        return;
    }
    int H = (int)E->shape[1], Hp = m->prefix.prefix_hidden_size; /* H: the embedding width */
    mf_k_cpu_linear(pre, E->data, P_(m, m->pfx_w0)->data, P_(m, m->pfx_b0)->data, P, H, Hp, 1.0f, 0.0f);
    for (size_t i = 0; i < (size_t)P * Hp; i++) h[i] = tanhf(pre[i]);
    mf_k_cpu_linear(pkv, h, P_(m, m->pfx_w2)->data, P_(m, m->pfx_b2)->data, P, Hp, (int)D, 1.0f, 0.0f);
}

static void prefix_backward(mf_model *m, cpu_state *cs)
{
    int P = m->prefix.pre_seq_len;
    int64_t D = 2LL * m->cfg.num_hidden_layers * m->kv_dim;
    if (!m->prefix.prefix_projection) {
        float *g = grad_of(m, m->pfx_emb);
        if (g)
            for (size_t i = 0; i < (size_t)P * D; i++) g[i] += cs->dpkv[i];
        return;
    }
    int H = (int)P_(m, m->pfx_emb)->shape[1], Hp = m->prefix.prefix_hidden_size;
    memset(cs->dpfx_h, 0, (size_t)P * Hp * sizeof(float));
    mf_k_cpu_linear_bwd(cs->dpfx_h, grad_of(m, m->pfx_w2), grad_of(m, m->pfx_b2), cs->dpkv, cs->pfx_h,
                        P_(m, m->pfx_w2)->data, P, Hp, (int)D, 1.0f);
    for (size_t i = 0; i < (size_t)P * Hp; i++) cs->dpfx_h[i] *= 1.0f - cs->pfx_h[i] * cs->pfx_h[i];
    mf_k_cpu_linear_bwd(grad_of(m, m->pfx_emb), grad_of(m, m->pfx_w0), grad_of(m, m->pfx_b0), cs->dpfx_h,
                        P_(m, m->pfx_emb)->data, P_(m, m->pfx_w0)->data, P, H, Hp, 1.0f);
}

/* ---------------------------------------------------------------- layer pieces */

void mf_k_cpu_norm_fwd(mf_model *m, float *y, float *mean, float *rstd, const float *x, int wi, int bi, int N)
{
    const mf_model_config *c = &m->cfg;
    if (c->norm == MF_NORM_RMS)
        mf_k_cpu_rmsnorm(y, rstd, x, P_(m, wi)->data, N, c->hidden_size, (float)c->rms_norm_eps);
    else
        mf_k_cpu_layernorm(y, mean, rstd, x, P_(m, wi)->data, P_(m, bi)->data, N, c->hidden_size,
                           (float)c->rms_norm_eps);
}

/* dx += d(norm)/dx . dy (dx may be NULL), weight / bias grads when they train. */
static void norm_bwd(mf_model *m, float *dx, int wi, int bi, const float *dy, const float *x, const float *mean,
                     const float *rstd, int N)
{
    int H = m->cfg.hidden_size;
    if (m->cfg.norm == MF_NORM_RMS)
        mf_k_cpu_rmsnorm_bwd(dx, grad_of(m, wi), dy, x, rstd, P_(m, wi)->data, N, H);
    else
        mf_k_cpu_layernorm_bwd(dx, grad_of(m, wi), grad_of(m, bi), dy, x, mean, rstd, P_(m, wi)->data, N, H);
}

/* A fused projection's rows <-> its parts (join = 1: parts -> fused). QKV: [Q | K | V]
 * blocks, or per head [q_h | k_h | v_h] (BLOOM); gate/up: [gate | up]. */
static void shuffle(float *wide, float *a, float *b, float *c, int N, int da, int dbc, int heads, int hd, int join)
{
    int W = da + (c ? 2 : 1) * dbc;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *w = wide + (size_t)n * W, *ra = a + (size_t)n * da, *rb = b + (size_t)n * dbc;
        float *rc = c ? c + (size_t)n * dbc : NULL;
        for (int h = 0; h < heads; h++) { /* heads == 1: three (two) blocks */
            int len = heads > 1 ? hd : da, lb = heads > 1 ? hd : dbc;
            float *wa = heads > 1 ? w + (size_t)3 * h * hd : w, *wb = heads > 1 ? wa + hd : w + da;
            float *pa = ra + (size_t)h * len, *pb = rb + (size_t)h * lb;
            if (join) {
                memcpy(wa, pa, (size_t)len * sizeof(float));
                memcpy(wb, pb, (size_t)lb * sizeof(float));
                if (rc) memcpy(wb + lb, rc + (size_t)h * lb, (size_t)lb * sizeof(float));
            } else {
                memcpy(pa, wa, (size_t)len * sizeof(float));
                memcpy(pb, wb, (size_t)lb * sizeof(float));
                if (rc) memcpy(rc + (size_t)h * lb, wb + lb, (size_t)lb * sizeof(float));
            }
        }
    }
}

static void qkv_shuffle(const mf_model *m, float *wide, float *q, float *k, float *v, int N, int join)
{
    const mf_model_config *c = &m->cfg;
    int heads = c->qkv == MF_QKV_FUSED_HEADS ? c->num_attention_heads : 1;
    shuffle(wide, q, k, v, N, m->q_dim, m->kv_dim, heads, c->head_dim, join);
}

void mf_k_cpu_qkv_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, const float *h, float *q, float *k,
                      float *v, float *wide, int N, int train)
{
    if (m->cfg.qkv == MF_QKV_SEPARATE) {
        mf_k_cpu_lin_fwd(m, cs, a, l, MOD_Q, h, q, N, train);
        mf_k_cpu_lin_fwd(m, cs, a, l, MOD_K, h, k, N, train);
        mf_k_cpu_lin_fwd(m, cs, a, l, MOD_V, h, v, N, train);
        return;
    }
    mf_k_cpu_lin_fwd(m, cs, a, l, MOD_QKV, h, wide, N, train);
    qkv_shuffle(m, wide, q, k, v, N, 0);
}

void mf_k_cpu_mlp_fwd(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, const float *h, float *gate, float *up,
                      float *act, float *y, float *wide, int N, int train)
{
    const mf_model_config *c = &m->cfg;
    int Im = c->intermediate_size;
    size_t nI = (size_t)N * Im;
    if (c->act == MF_ACT_GELU_TANH) {
        mf_k_cpu_lin_fwd(m, cs, a, l, MOD_UP, h, up, N, train);
        mf_k_cpu_gelu(act, up, nI);
    } else {
        if (c->mlp_fused) {
            mf_k_cpu_lin_fwd(m, cs, a, l, MOD_GATE_UP, h, wide, N, train);
            shuffle(wide, gate, up, NULL, N, Im, Im, 1, 0, 0);
        } else {
            mf_k_cpu_lin_fwd(m, cs, a, l, MOD_GATE, h, gate, N, train);
            mf_k_cpu_lin_fwd(m, cs, a, l, MOD_UP, h, up, N, train);
        }
        mf_k_cpu_swiglu(act, gate, up, nI);
    }
    mf_k_cpu_lin_fwd(m, cs, a, l, MOD_DOWN, act, y, N, train);
}

/* The prefix dropout mask of element i of the batch's prefix rows: scale or 0. */
static inline float prefix_keep(uint64_t key, size_t i, uint32_t thr, float sc)
{
    return (uint32_t)(mf_k_hash64(key + i) >> 40) >= thr ? sc : 0.0f;
}

/* Layer l's keys/values [B, S, Dkv]: the P prefix rows (dropped out in training
 * forwards with prefix dropout), then the T token rows of kbuf / vbuf. */
static void gather_kv(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l, int train)
{
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, S = cs->S, Dkv = m->kv_dim;
    size_t D = 2 * (size_t)m->cfg.num_hidden_layers * Dkv, row = (size_t)Dkv * sizeof(float);
    int drop = mf_model_prefix_dropout_on(m, train);
    uint64_t key = drop ? mf_model_prefix_drop_key(m) : 0;
    uint32_t thr = (uint32_t)(m->prefix.dropout * 16777216.0f);
    float sc = drop ? 1.0f / (1.0f - m->prefix.dropout) : 1.0f;
    for (int b = 0; b < B; b++) {
        for (int p = 0; p < P; p++) {
            const float *sk = cs->pkv + p * D + (size_t)(2 * l) * Dkv, *sv = sk + Dkv;
            float *dk = a->kf + ((size_t)b * S + p) * Dkv, *dv = a->vf + ((size_t)b * S + p) * Dkv;
            if (!drop) {
                memcpy(dk, sk, row);
                memcpy(dv, sv, row);
                continue;
            }
            size_t i0 = ((size_t)b * P + p) * D + (size_t)(2 * l) * Dkv;
            for (int i = 0; i < Dkv; i++) {
                dk[i] = sk[i] * prefix_keep(key, i0 + i, thr, sc);
                dv[i] = sv[i] * prefix_keep(key, i0 + Dkv + i, thr, sc);
            }
        }
        memcpy(a->kf + ((size_t)b * S + P) * Dkv, cs->kbuf + (size_t)b * T * Dkv, T * row);
        memcpy(a->vf + ((size_t)b * S + P) * Dkv, cs->vbuf + (size_t)b * T * Dkv, T * row);
    }
}

/* Backward of gather_kv: prefix rows' grads into dpkv, token rows' into kbuf / vbuf. */
static void scatter_dkv(mf_model *m, cpu_state *cs, int l)
{
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, S = cs->S, Dkv = m->kv_dim;
    size_t D = 2 * (size_t)m->cfg.num_hidden_layers * Dkv, row = (size_t)Dkv * sizeof(float);
    int drop = mf_model_prefix_dropout_on(m, 1);
    uint64_t key = drop ? mf_model_prefix_drop_key(m) : 0;
    uint32_t thr = (uint32_t)(m->prefix.dropout * 16777216.0f);
    float sc = drop ? 1.0f / (1.0f - m->prefix.dropout) : 1.0f;
    for (int b = 0; b < B; b++) {
        for (int p = 0; p < P; p++) {
            float *dk = cs->dpkv + p * D + (size_t)(2 * l) * Dkv, *dv = dk + Dkv;
            const float *sk = cs->dkf + ((size_t)b * S + p) * Dkv, *sv = cs->dvf + ((size_t)b * S + p) * Dkv;
            size_t i0 = ((size_t)b * P + p) * D + (size_t)(2 * l) * Dkv;
            for (int i = 0; i < Dkv; i++) {
                dk[i] += drop ? sk[i] * prefix_keep(key, i0 + i, thr, sc) : sk[i];
                dv[i] += drop ? sv[i] * prefix_keep(key, i0 + Dkv + i, thr, sc) : sv[i];
            }
        }
        memcpy(cs->kbuf + (size_t)b * T * Dkv, cs->dkf + ((size_t)b * S + P) * Dkv, T * row);
        memcpy(cs->vbuf + (size_t)b * T * Dkv, cs->dvf + ((size_t)b * S + P) * Dkv, T * row);
    }
}

/* ---------------------------------------------------------------- layer */

static void layer_forward(mf_model *m, cpu_state *cs, int l, float *x_next, int train)
{
    const mf_model_config *c = &m->cfg;
    cpu_layer_act *a = &cs->la[l];
    mf_layer_idx *li = &m->L[l];
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, N = cs->N;
    int H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;

    mf_k_cpu_norm_fwd(m, a->ln1, a->mean1, a->rstd1, a->x_in, li->ln1, li->ln1_b, N);
    mf_k_cpu_qkv_fwd(m, cs, a, l, a->ln1, a->q, cs->kbuf, cs->vbuf, cs->wide, N, train);
    mf_k_cpu_rope_qk(m, cs, a->q, cs->kbuf, cs->pos, cs->bpos, N, 0);
    gather_kv(m, cs, a, l, train);
    mf_k_alibi alibi = {cs->alibi, cs->kpos};
    mf_k_cpu_attention_ex(a->ao, a->att, a->q, a->kf, a->vf, cs->has_mask ? cs->mask : NULL, cs->alibi ? &alibi : NULL,
                          c->prefix_lm ? cs->ctx : NULL, B, T, P, nh, nkv, hd);
    mf_k_cpu_lin_fwd(m, cs, a, l, MOD_O, a->ao, a->x_mid, N, train);
    /* the residual: x (pre-norm) or GLM's alpha * Norm(x) */
    const float *r1 = c->glm_residual ? a->ln1 : a->x_in;
    float alpha = c->glm_residual ? mf_model_glm_alpha(m) : 1.0f;
    size_t nH = (size_t)N * H;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nH; i++) a->x_mid[i] += alpha * r1[i];
    mf_k_cpu_norm_fwd(m, a->ln2, a->mean2, a->rstd2, a->x_mid, li->ln2, li->ln2_b, N);
    mf_k_cpu_mlp_fwd(m, cs, a, l, a->ln2, a->gate, a->up, a->act, x_next, cs->wide, N, train);
    const float *r2 = c->glm_residual ? a->ln2 : a->x_mid;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nH; i++) x_next[i] += alpha * r2[i];
}

/* cs->dres = dL/d(MLP output); on return cs->dln = dL/d(ln2 output). */
static void mlp_backward(mf_model *m, cpu_state *cs, cpu_layer_act *a, int l)
{
    const mf_model_config *c = &m->cfg;
    int N = cs->N, Im = c->intermediate_size;
    size_t nI = (size_t)N * Im;
    memset(cs->dact, 0, nI * sizeof(float));
    lin_bwd(m, cs, a, l, MOD_DOWN, a->act, cs->dres, cs->dact, N);
    memset(cs->dln, 0, (size_t)N * c->hidden_size * sizeof(float));
    if (c->act == MF_ACT_GELU_TANH) {
        mf_k_cpu_gelu_bwd(cs->du, cs->dact, a->up, nI);
        lin_bwd(m, cs, a, l, MOD_UP, a->ln2, cs->du, cs->dln, N);
        return;
    }
    mf_k_cpu_swiglu_bwd(cs->dg, cs->du, cs->dact, a->gate, a->up, nI);
    if (c->mlp_fused) {
        shuffle(cs->wide, cs->dg, cs->du, NULL, N, Im, Im, 1, 0, 1);
        lin_bwd(m, cs, a, l, MOD_GATE_UP, a->ln2, cs->wide, cs->dln, N);
        return;
    }
    lin_bwd(m, cs, a, l, MOD_GATE, a->ln2, cs->dg, cs->dln, N);
    lin_bwd(m, cs, a, l, MOD_UP, a->ln2, cs->du, cs->dln, N);
}

/* cs->dres holds dL/d(layer output); on return dL/d(layer input) when
 * `below` (something under this layer trains), else whatever is cheapest:
 * the parts of the backward nobody needs are skipped. */
static void layer_backward(mf_model *m, cpu_state *cs, int l, int below)
{
    const mf_model_config *c = &m->cfg;
    cpu_layer_act *a = &cs->la[l];
    mf_layer_idx *li = &m->L[l];
    int B = cs->lay.B, T = cs->lay.T, P = cs->lay.P, N = cs->N;
    int H = c->hidden_size, Dq = m->q_dim;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;

    mlp_backward(m, cs, a, l);
    int attn = below || P || mf_model_attn_trains(m, l), glm = c->glm_residual;
    float alpha = glm ? mf_model_glm_alpha(m) : 1.0f;
    size_t nH = (size_t)N * H;
    if (glm) { /* x_next = alpha * ln2 + mlp(ln2): the residual's gradient goes to ln2's output */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nH; i++) cs->dln[i] += alpha * cs->dres[i];
        if (attn) memset(cs->dres, 0, nH * sizeof(float));
    }
    norm_bwd(m, attn ? cs->dres : NULL, li->ln2, li->ln2_b, cs->dln, a->x_mid, a->mean2, a->rstd2, N);
    if (!attn) return;

    /* attention */
    memset(cs->dao, 0, (size_t)N * Dq * sizeof(float));
    lin_bwd(m, cs, a, l, MOD_O, a->ao, cs->dres, cs->dao, N);
    mf_k_cpu_attention_bwd_ex(cs->dq, cs->dkf, cs->dvf, cs->att_ws, cs->threads, cs->dao, a->att, a->q, a->kf, a->vf,
                              c->prefix_lm ? cs->ctx : NULL, B, T, P, nh, nkv, hd);
    scatter_dkv(m, cs, l);
    mf_k_cpu_rope_qk(m, cs, cs->dq, cs->kbuf, cs->pos, cs->bpos, N, 1);
    /* dL/d(ln1 output) only matters for ln1's params or for layers below */
    float *dln = below || mf_model_trains(m, li->ln1) || mf_model_trains(m, li->ln1_b) ? cs->dln : NULL;
    if (dln) memset(dln, 0, (size_t)N * H * sizeof(float));
    if (c->qkv == MF_QKV_SEPARATE) {
        lin_bwd(m, cs, a, l, MOD_Q, a->ln1, cs->dq, dln, N);
        lin_bwd(m, cs, a, l, MOD_K, a->ln1, cs->kbuf, dln, N);
        lin_bwd(m, cs, a, l, MOD_V, a->ln1, cs->vbuf, dln, N);
    } else {
        qkv_shuffle(m, cs->wide, cs->dq, cs->kbuf, cs->vbuf, N, 1);
        lin_bwd(m, cs, a, l, MOD_QKV, a->ln1, cs->wide, dln, N);
    }
    if (dln && glm) { /* x_mid = alpha * ln1 + attention(ln1) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nH; i++) dln[i] += alpha * cs->dres[i];
        if (below) memset(cs->dres, 0, nH * sizeof(float));
    }
    if (dln) norm_bwd(m, below ? cs->dres : NULL, li->ln1, li->ln1_b, dln, a->x_in, a->mean1, a->rstd1, N);
}

/* ---------------------------------------------------------------- forward */

static int cpu_forward(mf_model *m, const mf_k_batch *b, int flags, mf_k_outputs *out, mf_err *err)
{
    cpu_state *cs = m->be_state;
    const mf_model_config *c = &m->cfg;
    int B = b->B, T = b->T, N = B * T, H = c->hidden_size, V = c->vocab_size, P = cs->lay.P;
    int train = (flags & MF_FWD_TRAIN) != 0, p0 = mf_model_pos_offset(m);
    cs->flags = flags;
    cs->has_mask = b->attention_mask != NULL;
    for (int bi = 0; bi < B; bi++) {
        cs->last[bi] = T - 1;
        if (b->attention_mask) {
            cs->last[bi] = 0;
            for (int t = 0; t < T; t++)
                if (b->attention_mask[(size_t)bi * T + t]) cs->last[bi] = t;
        }
        int mpos = 0;
        cs->ctx[bi] = 0;
        if (c->prefix_lm) {
            int rc = mf_model_glm_row(m, b->input_ids + (size_t)bi * T, T, bi, &cs->ctx[bi], &mpos, err);
            if (rc) return rc;
        }
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)bi * T + t;
            cs->ids[n] = b->input_ids[n];
            cs->mask[n] = b->attention_mask ? (b->attention_mask[n] != 0) : 1;
            cs->pos[n] = p0 + t; /* after the prefix, as with HF past_key_values (ChatGLM: from 0) */
            cs->bpos[n] = 0;
            if (c->prefix_lm) mf_glm_position(t, cs->ctx[bi], mpos, &cs->pos[n], &cs->bpos[n]);
            int32_t y = (b->labels && t + 1 < T) ? b->labels[n + 1] : MF_K_IGNORE_INDEX;
            cs->target[n] = y < 0 ? -1 : y;
            cs->valid[n] = y < 0 ? 0.0f : 1.0f;
        }
    }
    for (int bi = 0; cs->kpos && bi < B; bi++) { /* ALiBi: keys counted over the real ones, prefix first */
        int32_t k = 0, *kp = cs->kpos + (size_t)bi * (P + T);
        for (int s = 0; s < P + T; s++) kp[s] = s < P || cs->mask[(size_t)bi * T + s - P] ? k++ : 0;
    }
    if (P) mf_k_cpu_prefix_forward(m, cs->pkv, cs->pfx_pre, cs->pfx_h);
    /* embeddings (+ their norm) */
    const float *E = P_(m, m->embed)->data;
    float *x0 = cs->la[0].x_in, *e = c->embed_norm ? cs->emb : x0;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(e + (size_t)n * H, E + (size_t)cs->ids[n] * H, (size_t)H * sizeof(float));
    if (c->embed_norm) mf_k_cpu_norm_fwd(m, x0, cs->mean_e, cs->rstd_e, e, m->emb_norm, m->emb_norm_b, N);
    int L = c->num_hidden_layers;
    for (int l = 0; l < L; l++) layer_forward(m, cs, l, l + 1 < L ? cs->la[l + 1].x_in : cs->x_out, train);
    mf_k_cpu_norm_fwd(m, cs->lnf, cs->meanf, cs->rstdf, cs->x_out, m->norm, m->norm_b, N);

    memset(out, 0, sizeof(*out));
    out->B = B;
    out->T = T;
    out->V = V;
    out->last = cs->last;
    if (flags & MF_FWD_LOGITS) {
        const float *Wlm = P_(m, m->lm_head >= 0 ? m->lm_head : m->embed)->data;
        mf_k_cpu_linear(cs->logits, cs->lnf, Wlm, NULL, N, H, V, 1.0f, 0.0f);
        double sum = mf_k_cpu_logp(cs->logp, cs->lse, cs->logits, cs->target, N, V);
        int nv = 0;
        for (int n = 0; n < N; n++) nv += cs->target[n] >= 0;
        out->logits = cs->logits;
        out->logp = cs->logp;
        out->valid = cs->valid;
        out->n_valid = nv;
        out->loss = nv ? -sum / nv : 0.0;
    }
    if (flags & MF_FWD_VALUES) {
        mf_k_cpu_linear(cs->values, cs->lnf, P_(m, m->score)->data, NULL, N, H, 1, 1.0f, 0.0f);
        for (int bi = 0; bi < B; bi++) cs->reward[bi] = cs->values[(size_t)bi * T + cs->last[bi]];
        out->values = cs->values;
        out->reward = cs->reward;
    }
    cs->fwd_ok = train;
    (void)err;
    return 0;
}

static int cpu_backward(mf_model *m, const float *dlogp, const float *dvalues, mf_err *err)
{
    cpu_state *cs = m->be_state;
    if (!cs->fwd_ok)
        return mf_err_set(err, MF_EINVAL, "backward: no training forward to differentiate (call mf_model_forward "
                                          "with MF_FWD_TRAIN first; backward consumes it)");
    cs->fwd_ok = 0;
    const mf_model_config *c = &m->cfg;
    int N = cs->N, H = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    size_t nH = (size_t)N * H;
    memset(cs->dlnf, 0, nH * sizeof(float));
    if ((cs->flags & MF_FWD_LOGITS) && dlogp) {
        int wi = m->lm_head >= 0 ? m->lm_head : m->embed;
        mf_k_cpu_logp_bwd(cs->logits, cs->lse, dlogp, cs->target, N, V); /* logits now hold dlogits */
        mf_k_cpu_linear_bwd(cs->dlnf, grad_of(m, wi), NULL, cs->logits, cs->lnf, P_(m, wi)->data, N, H, V, 1.0f);
    }
    if ((cs->flags & MF_FWD_VALUES) && dvalues) {
        /* values[n] = lnf[n] . w  =>  dw += sum_n dv[n] lnf[n], dlnf[n] += dv[n] w */
        mf_k_cpu_linear_bwd(cs->dlnf, grad_of(m, m->score), NULL, dvalues, cs->lnf, P_(m, m->score)->data, N, H, 1,
                            1.0f);
    }
    memset(cs->dres, 0, nH * sizeof(float));
    norm_bwd(m, cs->dres, m->norm, m->norm_b, cs->dlnf, cs->x_out, cs->meanf, cs->rstdf, N);
    int lo = mf_model_lowest_needed_layer(m);
    int embed_trains = mf_model_trains(m, m->embed) || mf_model_trains(m, m->emb_norm) ||
                       mf_model_trains(m, m->emb_norm_b);
    if (cs->lay.P) {
        size_t D = 2 * (size_t)L * m->kv_dim;
        memset(cs->dpkv, 0, (size_t)cs->lay.P * D * sizeof(float));
    }
    for (int l = L - 1; l >= lo; l--) {
        if (cs->lay.recompute) /* re-run the layer; its output equals what is already stored */
            layer_forward(m, cs, l, l + 1 < L ? cs->la[l + 1].x_in : cs->x_out, 1);
        layer_backward(m, cs, l, l > lo || embed_trains);
    }
    if (cs->lay.P) prefix_backward(m, cs);
    float *dE = grad_of(m, m->embed);
    const float *dx0 = cs->dres; /* dL/d(first layer input) */
    if (c->embed_norm && lo == 0 && embed_trains) {
        if (dE) memset(cs->dln, 0, nH * sizeof(float));
        norm_bwd(m, dE ? cs->dln : NULL, m->emb_norm, m->emb_norm_b, cs->dres, cs->emb, cs->mean_e, cs->rstd_e, N);
        dx0 = cs->dln;
    }
    if (dE && lo == 0) {
        /* parallel over 16-feature chunks: each dE element has one writer, fixed order */
#pragma omp parallel for schedule(static)
        for (int i0 = 0; i0 < H; i0 += 16) {
            int w = H - i0 < 16 ? H - i0 : 16;
            for (int n = 0; n < N; n++) {
                float *d = dE + (size_t)cs->ids[n] * H + i0;
                const float *g = dx0 + (size_t)n * H + i0;
                for (int i = 0; i < w; i++) d[i] += g[i];
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- backend */

int mf_k_cpu_cache_reset(mf_model *m, int B, int max_len, mf_err *err);
int mf_k_cpu_decode(mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int last_only,
                    float *logits, mf_err *err);

static int cpu_attach(mf_model *m, mf_err *err)
{
    cpu_state *cs = calloc(1, sizeof(*cs));
    if (!cs) return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory");
    cs->la = calloc((size_t)m->cfg.num_hidden_layers, sizeof(*cs->la));
    if (!cs->la) {
        free(cs);
        return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory");
    }
    /* One thread pool: OpenMP splits GEMMs into single-threaded OpenBLAS calls
     * (mf_k_cpu_sgemm). A pthreads OpenBLAS pool beside the OpenMP team made
     * each spin-wait while the other worked. */
    cs->threads = omp_get_max_threads();
    openblas_set_num_threads(1);
    if (m->cfg.pos == MF_POS_ALIBI) {
        cs->alibi = malloc((size_t)m->cfg.num_attention_heads * sizeof(float));
        if (!cs->alibi) {
            free(cs->la);
            free(cs);
            return mf_err_set(err, MF_ENOMEM, "cpu backend: out of memory");
        }
        mf_model_alibi_slopes(m, cs->alibi);
    }
    m->be_state = cs;
    return 0;
}

static void cpu_detach(mf_model *m)
{
    cpu_state *cs = m->be_state;
    if (!cs) return;
    free(cs->arena);
    free(cs->iarena);
    free(cs->la);
    free(cs->cosv);
    free(cs->sinv);
    free(cs->alibi);
    free(cs->kc);
    free(cs->vc);
    free(cs->c_ctx);
    free(cs->c_mpos);
    free(cs->dec_arena);
    free(cs);
    m->be_state = NULL;
}

static int cpu_sync(mf_model *m, mf_err *err)
{
    /* Host data is the CPU backend's data; adapters may have changed the layout. */
    cpu_state *cs = m->be_state;
    cs->fwd_ok = 0;
    (void)err;
    return 0;
}

static int cpu_fetch(mf_model *m, mf_err *err)
{
    (void)m;
    (void)err;
    return 0;
}

static const mf_k_backend cpu_backend = {
    .name = "cpu",
    .attach = cpu_attach,
    .detach = cpu_detach,
    .sync = cpu_sync,
    .fetch = cpu_fetch,
    .prepare = cpu_prepare,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .cache_reset = mf_k_cpu_cache_reset,
    .decode = mf_k_cpu_decode,
};

const mf_k_backend *mf_k_backend_cpu(void)
{
    return &cpu_backend;
}
