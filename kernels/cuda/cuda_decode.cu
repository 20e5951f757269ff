/*
 * kernels/cuda/cuda_decode.cu — KV-cached inference on the CUDA backend
 * (generation, PPO rollouts), the counterpart of cpu/cpu_decode.c.
 *
 * The cache holds, per layer and row, the P prefix key/value rows followed by
 * the RoPE'd keys and values of every token the row has seen:
 *     kc[l][row][P + cap][Dkv]  (activation dtype; vc the same)
 * decode() runs n tokens (any mix of rows: a whole prompt of one row, or one
 * new token of every row) through the model, writes their keys/values into
 * the cache, and returns their logits (fp32, host).
 *
 * Attention: the tokens are cut into segments — runs of consecutive
 * positions of one row (a prompt is one segment, a decode step is one per
 * row). A row's cache is contiguous, so a segment of `len` tokens starting at
 * position p0 is exactly mf_cu_attention with B = 1, T = len and the row's
 * first P + p0 cache entries as the "prefix": query t sees every earlier
 * entry and positions p0..p0+t, which is the causal mask. All segments write
 * their keys/values before any attends (as on the CPU).
 */
#include "kernels/cuda/cuda_state.h"

#include <stdlib.h>
#include <string.h>

#define CU_TRY(call)                                                                                       \
    do {                                                                                                   \
        int rc_ = (call);                                                                                  \
        if (rc_) return rc_;                                                                               \
    } while (0)

static void *take(char *base, size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += (bytes + 255) & ~(size_t)255;
    return base ? base + at : NULL;
}

/* Lay out the decode workspace for n tokens; base == NULL only counts. */
static size_t dec_layout(mf_model *m, cu_state *cs, size_t n, char *base, cu_dec_ws *w)
{
    const mf_model_config *c = &m->cfg;
    size_t es = cs->es, H = c->hidden_size, Im = c->intermediate_size, V = c->vocab_size;
    size_t Dq = m->q_dim, Dkv = m->kv_dim, nh = c->num_attention_heads, r = m->has_lora ? m->lora.rank : 0;
    size_t off = 0;
#define A_(cnt) take(base, &off, (size_t)(cnt) * es)
#define F_(cnt) ((float *)take(base, &off, (size_t)(cnt) * sizeof(float)))
    w->x = A_(n * H);
    w->x2 = A_(n * H);
    w->ln = A_(n * H);
    w->q = A_(n * Dq);
    w->k = A_(n * Dkv);
    w->v = A_(n * Dkv);
    w->ao = A_(n * Dq);
    w->g = A_(n * Im);
    w->u = A_(n * Im);
    w->act = A_(n * Im);
    w->logits = A_(n * V);
    for (int j = 0; j < N_MODS; j++) w->lora[j] = r ? A_(n * r) : NULL;
    w->rstd = F_(n);
    w->lse = F_(n * nh);
    w->lg32_n = n * V < ((size_t)1 << 22) ? n * V : ((size_t)1 << 22);
    w->lg32 = F_(w->lg32_n);
    w->tok = (int32_t *)take(base, &off, n * sizeof(int32_t));
    w->rpos = (int32_t *)take(base, &off, n * sizeof(int32_t));
#undef A_
#undef F_
    return off;
}

static void dec_free(cu_state *cs)
{
    if (cs->dec_arena) (void)cudaFree(cs->dec_arena);
    if (cs->dw.h_tok) (void)cudaFreeHost(cs->dw.h_tok);
    cs->dec_arena = NULL;
    cs->dec_cap = 0;
    cs->dec_n = 0;
    cs->dec_r = 0;
    memset(&cs->dw, 0, sizeof(cs->dw));
}

void cu_cache_free(cu_state *cs)
{
    if (cs->kc) (void)cudaFree(cs->kc);
    if (cs->vc) (void)cudaFree(cs->vc);
    cs->kc = cs->vc = NULL;
    cs->c_rows = cs->c_cap = cs->c_P = 0;
    dec_free(cs);
}

/* Workspace for n tokens per decode call, laid out for the current LoRA rank
 * (a LoRA added after the last layout needs its u buffers: re-lay out). */
static int dec_ensure(mf_model *m, cu_state *cs, int n, mf_err *err)
{
    int r = m->has_lora ? m->lora.rank : 0;
    if (n <= cs->dec_n && r == cs->dec_r) return 0;
    if (n < cs->dec_n) n = cs->dec_n;
    dec_free(cs);
    cu_dec_ws w;
    size_t need = dec_layout(m, cs, (size_t)n, NULL, &w);
    MF_CU_TRY_MALLOC(err, &cs->dec_arena, need, "decode workspace");
    cs->dec_cap = need;
    dec_layout(m, cs, (size_t)n, cs->dec_arena, &cs->dw);
    MF_CU_TRY(err, cudaMallocHost((void **)&cs->dw.h_tok, 2 * (size_t)n * sizeof(int32_t)));
    cs->dec_n = n;
    cs->dec_r = r;
    return 0;
}

/* Device address of cache entry (layer l, row r, slot s) in kc or vc. */
static char *cache_at(cu_state *cs, char *base, int P, int l, int r, size_t s, size_t Dkv)
{
    size_t Sr = (size_t)P + cs->c_cap;
    return base + ((((size_t)l * cs->c_rows + r) * Sr + s) * Dkv) * cs->es;
}

int cu_cache_reset(mf_model *m, int rows, int max_len, mf_err *err)
{
    cu_state *cs = cu_st(m);
    const mf_model_config *c = &m->cfg;
    int P = m->has_prefix ? m->prefix.pre_seq_len : 0, L = c->num_hidden_layers;
    if (rows <= 0 || max_len <= 0)
        return mf_err_set(err, MF_EINVAL, "kv cache: expected rows > 0 and max_len > 0, got %d, %d", rows, max_len);
    if (P + max_len > c->max_position_embeddings)
        return mf_err_set(err, MF_EINVAL, "kv cache: %d positions (+%d prefix) exceed max_position_embeddings %d",
                          max_len, P, c->max_position_embeddings);
    CU_TRY(cu_table_ensure(m, err));
    size_t Dkv = (size_t)m->kv_dim;
    /* P is part of the size: a prefix added since the last reset needs P more rows per (layer, row) */
    if (!cs->kc || cs->c_rows != rows || cs->c_cap != max_len || cs->c_P != P) {
        cu_cache_free(cs);
        size_t bytes = (size_t)L * rows * ((size_t)P + max_len) * Dkv * cs->es;
        MF_CU_TRY_MALLOC(err, &cs->kc, bytes, "KV cache (keys)");
        MF_CU_TRY_MALLOC(err, &cs->vc, bytes, "KV cache (values)");
        cs->c_rows = rows;
        cs->c_cap = max_len;
        cs->c_P = P;
    }
    /* sized for generate(): prompts of up to max_len tokens, steps of `rows` tokens */
    CU_TRY(dec_ensure(m, cs, rows > max_len ? rows : max_len, err));
    if (!P) return 0;
    /* prefix rows: run the prefix encoder once, copy its columns into every row */
    size_t D = 2 * (size_t)L * Dkv, Hp = m->prefix.prefix_projection ? (size_t)m->prefix.prefix_hidden_size : 0;
    char *tmp;
    size_t h_at = ((size_t)P * D * cs->es + 255) & ~(size_t)255; /* the MLP's hidden rows after the output */
    MF_CU_TRY_MALLOC(err, &tmp, h_at + (size_t)P * Hp * cs->es, "prefix key/value rows");
    void *pkv = tmp, *h = Hp ? tmp + h_at : NULL;
    size_t row = Dkv * cs->es;
    int rc, rc2;
    if ((rc = cu_prefix_forward(m, cs, pkv, h, err)) != 0) goto out;
    for (int l = 0; l < L; l++)
        for (int r = 0; r < rows; r++) {
            if ((rc = MF_CU_CHECK(err, cudaMemcpy2DAsync(cache_at(cs, cs->kc, P, l, r, 0, Dkv), row,
                                                         (char *)pkv + (size_t)(2 * l) * row, D * cs->es, row, P,
                                                         cudaMemcpyDeviceToDevice, cs->st))))
                goto out;
            if ((rc = MF_CU_CHECK(err, cudaMemcpy2DAsync(cache_at(cs, cs->vc, P, l, r, 0, Dkv), row,
                                                         (char *)pkv + (size_t)(2 * l + 1) * row, D * cs->es, row,
                                                         P, cudaMemcpyDeviceToDevice, cs->st))))
                goto out;
        }
out:
    rc2 = MF_CU_CHECK(err, cudaStreamSynchronize(cs->st));
    (void)cudaFree(tmp);
    return rc ? rc : rc2;
}

/* End (exclusive) of the segment starting at token i: consecutive positions of one row. */
static int seg_end(int n, const int *row, const int *pos, int i)
{
    int j = i + 1;
    while (j < n && row[j] == row[i] && pos[j] == pos[j - 1] + 1) j++;
    return j;
}

int cu_decode(mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int last_only, float *logits,
              mf_err *err)
{
    cu_state *cs = cu_st(m);
    const mf_model_config *c = &m->cfg;
    if (!cs->kc) return mf_err_set(err, MF_EINVAL, "decode: no KV cache (call cache_reset first)");
    if (n <= 0) return mf_err_set(err, MF_EINVAL, "decode: expected n > 0 tokens, got %d", n);
    int P = m->has_prefix ? m->prefix.pre_seq_len : 0;
    if (P != cs->c_P) /* cache_at would index past the rows the cache was sized for */
        return mf_err_set(err, MF_EINVAL, "decode: the KV cache was reset for %d prefix rows, the model now has %d "
                                          "(call cache_reset after adding a prefix)", cs->c_P, P);
    int rc = mf_model_decode_check(m, n, tok, row, pos, cs->c_rows, cs->c_cap, err);
    if (rc) return rc;
    CU_TRY(cu_table_ensure(m, err));
    CU_TRY(dec_ensure(m, cs, n, err)); /* allocates only when n exceeds what cache_reset sized */
    cu_dec_ws *w = &cs->dw;
    int H = c->hidden_size, Im = c->intermediate_size, L = c->num_hidden_layers, V = c->vocab_size;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    size_t Dkv = (size_t)m->kv_dim, Dq = (size_t)m->q_dim, es = cs->es;
    float eps = (float)c->rms_norm_eps;
    mf_cu_dtype dt = cs->dt;
    cudaStream_t st = cs->st;
    for (int i = 0; i < n; i++) {
        w->h_tok[i] = tok[i];
        w->h_tok[n + i] = P + pos[i];
    }
    /* tok and rpos are adjacent slices only by layout; upload them separately */
    MF_CU_TRY(err, cudaMemcpyAsync(w->tok, w->h_tok, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    MF_CU_TRY(err, cudaMemcpyAsync(w->rpos, w->h_tok + n, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    MF_CU_TRY(err, mf_cu_embed(w->x, cu_p(cs, m->embed)->act, w->tok, n, H, dt, st));
    for (int l = 0; l < L; l++) {
        mf_layer_idx *li = &m->L[l];
        MF_CU_TRY(err, mf_cu_rmsnorm(w->ln, w->rstd, w->x, NULL, cu_p(cs, li->ln1)->act, n, H, eps, dt, st));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_Q, w->ln, w->q, n, 0, err));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_K, w->ln, w->k, n, 0, err));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_V, w->ln, w->v, n, 0, err));
        MF_CU_TRY(err, mf_cu_rope(w->q, w->rpos, n, nh, hd, cs->cosv, cs->sinv, 0, dt, st));
        MF_CU_TRY(err, mf_cu_rope(w->k, w->rpos, n, nkv, hd, cs->cosv, cs->sinv, 0, dt, st));
        for (int i = 0; i < n;) { /* every segment's keys/values into the cache first */
            int j = seg_end(n, row, pos, i);
            size_t bytes = (size_t)(j - i) * Dkv * es, s0 = (size_t)P + pos[i];
            MF_CU_TRY(err, cudaMemcpyAsync(cache_at(cs, cs->kc, P, l, row[i], s0, Dkv), (char *)w->k + i * Dkv * es,
                                           bytes, cudaMemcpyDeviceToDevice, st));
            MF_CU_TRY(err, cudaMemcpyAsync(cache_at(cs, cs->vc, P, l, row[i], s0, Dkv), (char *)w->v + i * Dkv * es,
                                           bytes, cudaMemcpyDeviceToDevice, st));
            i = j;
        }
        for (int i = 0; i < n;) {
            int j = seg_end(n, row, pos, i);
            MF_CU_TRY(err, mf_cu_attention((char *)w->ao + i * Dq * es, w->lse, (char *)w->q + i * Dq * es,
                                           cache_at(cs, cs->kc, P, l, row[i], 0, Dkv),
                                           cache_at(cs, cs->vc, P, l, row[i], 0, Dkv), NULL, 1, j - i, P + pos[i],
                                           nh, nkv, hd, dt, st));
            i = j;
        }
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_O, w->ao, w->x2, n, 0, err));
        /* x2 += x, ln = RMSNorm(x2) */
        MF_CU_TRY(err, mf_cu_rmsnorm(w->ln, w->rstd, w->x2, w->x, cu_p(cs, li->ln2)->act, n, H, eps, dt, st));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_GATE, w->ln, w->g, n, 0, err));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_UP, w->ln, w->u, n, 0, err));
        MF_CU_TRY(err, mf_cu_swiglu(w->act, w->g, w->u, (size_t)n * Im, dt, st));
        CU_TRY(cu_lin_fwd(m, cs, w->lora, l, MOD_DOWN, w->act, w->x, n, 0, err));
        MF_CU_TRY(err, mf_cu_add(w->x, w->x2, (size_t)n * H, dt, st));
    }
    int first = last_only ? n - 1 : 0, nout = n - first;
    MF_CU_TRY(err, mf_cu_rmsnorm(w->ln, w->rstd, (char *)w->x + (size_t)first * H * es, NULL, cu_p(cs, m->norm)->act,
                                 nout, H, eps, dt, st));
    const void *Wlm = cu_p(cs, m->lm_head >= 0 ? m->lm_head : m->embed)->act;
    CU_TRY(cu_gemm(cs, 0, 1, nout, V, H, 1.0f, w->ln, H, Wlm, H, 0.0f, w->logits, dt, V, NULL, err));
    return cu_download_act(cs, logits, w->logits, (size_t)nout * V, w->lg32, w->lg32_n, err);
}
