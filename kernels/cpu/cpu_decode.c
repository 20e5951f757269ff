/*
 * kernels/cpu/cpu_decode.c — KV-cached inference on the CPU backend.
 *
 * The cache holds, per layer and row, the P prefix key/value rows followed by
 * the (RoPE'd) keys and values of every token the row has seen. decode() runs n
 * tokens (any mix of rows: a whole prompt of one row, or one new token of
 * every row) through the model, appends their keys/values, and returns their
 * logits. A token at position p of its row attends to the prefix and to
 * positions 0..p of the same row, which is exactly the causal mask.
 *
 * GLM's prefix LM (ChatGLM-6B): each cache row remembers its context length
 * (where its first <sop> is) and mask position; a prompt token attends to the
 * whole prompt, so a row's prompt — through its <sop> — must arrive in one
 * decode call (a prefill), which is how mf_model_generate feeds it.
 */
#include "kernels/cpu/cpu_state.h"
#include "kernels/cpu/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define P_(m, i) (&(m)->params[(i)])

typedef struct dec_ws {
    float *x, *ln, *q, *k, *v, *ao, *g, *u, *act, *sc, *lora[N_MODS], *x2;
    int *rpos, *rbpos, *nsee; /* positions, block positions, keys each token sees (past the prefix) */
    float *wide, *mean, *rstd; /* fused projections' outputs; norm statistics */
} dec_ws;

static size_t dec_layout(mf_model *m, cpu_state *cs, int n, float *base, dec_ws *w)
{
    const mf_model_config *c = &m->cfg;
    size_t H = c->hidden_size, Im = c->intermediate_size, S = (size_t)cs->c_cap;
    size_t P = m->has_prefix ? m->prefix.pre_seq_len : 0, r = m->has_lora ? m->lora.rank : 1;
    size_t off = 0;
#define TK(field, cnt)                                   \
    do {                                                 \
        if (base) w->field = (void *)(base + off);                \
        off += ((size_t)(cnt) + 15) & ~(size_t)15;       \
    } while (0)
    TK(x, n * H); TK(x2, n * H); TK(ln, n * H); TK(q, n * (size_t)m->q_dim);
    TK(k, n * (size_t)m->kv_dim); TK(v, n * (size_t)m->kv_dim); TK(ao, n * (size_t)m->q_dim);
    TK(g, n * Im); TK(u, n * Im); TK(act, n * Im);
    TK(sc, n * (size_t)c->num_attention_heads * (P + S));
    for (int j = 0; j < N_MODS; j++) TK(lora[j], n * r);
    TK(rpos, n); TK(rbpos, n); TK(nsee, n);
    size_t wide = (size_t)m->q_dim + 2 * (size_t)m->kv_dim;
    if (2 * Im > wide) wide = 2 * Im;
    TK(wide, n * wide); TK(mean, n); TK(rstd, n);
#undef TK
    return off;
}

int mf_k_cpu_cache_reset(mf_model *m, int rows, int max_len, mf_err *err)
{
    cpu_state *cs = m->be_state;
    const mf_model_config *c = &m->cfg;
    int P = m->has_prefix ? m->prefix.pre_seq_len : 0;
    if (rows <= 0 || max_len <= 0)
        return mf_err_set(err, MF_EINVAL, "kv cache: expected rows > 0 and max_len > 0, got %d, %d", rows, max_len);
    if (P + max_len > c->max_position_embeddings)
        return mf_err_set(err, MF_EINVAL, "kv cache: %d positions (+%d prefix) exceed max_position_embeddings %d",
                          max_len, P, c->max_position_embeddings);
    size_t need = (size_t)c->num_hidden_layers * rows * (size_t)(P + max_len) * m->kv_dim;
    if ((size_t)cs->c_rows * (size_t)(P + cs->c_cap) * c->num_hidden_layers * m->kv_dim != need || !cs->kc) {
        free(cs->kc);
        free(cs->vc);
        cs->kc = malloc(need * sizeof(float));
        cs->vc = malloc(need * sizeof(float));
        if (!cs->kc || !cs->vc) {
            free(cs->kc), free(cs->vc);
            cs->kc = cs->vc = NULL;
            return mf_err_set(err, MF_ENOMEM, "kv cache: out of memory (%zu MB)", need * 8 >> 20);
        }
    }
    cs->c_rows = rows;
    cs->c_cap = max_len;
    if (c->prefix_lm) {
        free(cs->c_ctx);
        free(cs->c_mpos);
        cs->c_ctx = malloc((size_t)rows * sizeof(int));
        cs->c_mpos = malloc((size_t)rows * sizeof(int));
        if (!cs->c_ctx || !cs->c_mpos) return mf_err_set(err, MF_ENOMEM, "kv cache: out of memory");
        for (int r = 0; r < rows; r++) cs->c_ctx[r] = cs->c_mpos[r] = -1;
    }
    free(cs->dec_arena);
    cs->dec_arena = NULL;
    cs->dec_n = 0;
    int rc = mf_k_cpu_rope_ensure(m, P + max_len, err);
    if (rc) return rc;
    if (P) {
        int64_t D = 2LL * c->num_hidden_layers * m->kv_dim;
        int Hp = m->prefix.prefix_projection ? m->prefix.prefix_hidden_size : 0;
        float *tmp = malloc(((size_t)P * D + 2 * (size_t)P * Hp) * sizeof(float));
        if (!tmp) return mf_err_set(err, MF_ENOMEM, "kv cache: out of memory");
        mf_k_cpu_prefix_forward(m, tmp, tmp + (size_t)P * D, tmp + (size_t)P * D + (size_t)P * Hp);
        size_t Sr = (size_t)P + max_len, kd = m->kv_dim;
        for (int l = 0; l < c->num_hidden_layers; l++)
            for (int r = 0; r < rows; r++)
                for (int p = 0; p < P; p++) {
                    size_t at = (((size_t)l * rows + r) * Sr + p) * kd;
                    memcpy(cs->kc + at, tmp + p * D + (size_t)(2 * l) * kd, kd * sizeof(float));
                    memcpy(cs->vc + at, tmp + p * D + (size_t)(2 * l + 1) * kd, kd * sizeof(float));
                }
        free(tmp);
    }
    return 0;
}

/* Prefix LM positions of a decode call: rows whose prompt is in this call get their context
 * length (the first <sop>) and mask position (first [gMASK], else first [MASK]); every token
 * gets its 2D position and the number of keys it sees. */
static int glm_positions(mf_model *m, cpu_state *cs, int n, const int32_t *tok, const int *row, const int *pos,
                         dec_ws *w, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    for (int i = 0; i < n; i++)
        if (cs->c_ctx[row[i]] >= 0 && pos[i] < cs->c_ctx[row[i]])
            return mf_err_set(err, MF_EINVAL, "decode: row %d position %d is inside its prompt, which an earlier "
                                              "call closed at <sop> (position %d)", row[i], pos[i], cs->c_ctx[row[i]]);
    for (int i = 0; i < n; i++) {
        int r = row[i];
        if (cs->c_ctx[r] >= 0) continue;
        /* the row's prompt: find its <sop> and mask token among this call's tokens */
        int gm = -1, mk = -1, ctx = -1;
        for (int j = i; j < n; j++) {
            if (row[j] != r) continue;
            if (tok[j] == c->bos_token_id && ctx < 0) ctx = pos[j];
            if (ctx < 0 && tok[j] == c->gmask_token_id && gm < 0) gm = pos[j];
            if (ctx < 0 && tok[j] == c->mask_token_id && mk < 0) mk = pos[j];
        }
        if (ctx < 0 || (gm < 0 && mk < 0))
            return mf_err_set(err, MF_EINVAL, "decode: row %d: a %s prompt holds [gMASK] or [MASK] and ends its "
                                              "context with <sop>, all in its first decode call (found no %s)", r,
                              mf_model_arch_name(c->arch), ctx < 0 ? "<sop>" : "[gMASK]/[MASK]");
        cs->c_ctx[r] = ctx;
        cs->c_mpos[r] = gm >= 0 ? gm : mk;
    }
    for (int i = 0; i < n; i++) {
        int r = row[i], ctx = cs->c_ctx[r];
        mf_glm_position(pos[i], ctx, cs->c_mpos[r], &w->rpos[i], &w->rbpos[i]);
        w->nsee[i] = pos[i] + 1 > ctx ? pos[i] + 1 : ctx; /* a prompt token sees the whole prompt */
    }
    return 0;
}

int mf_k_cpu_decode(mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int last_only,
                    float *logits, mf_err *err)
{
    cpu_state *cs = m->be_state;
    const mf_model_config *c = &m->cfg;
    if (!cs->kc) return mf_err_set(err, MF_EINVAL, "decode: no KV cache (call cache_reset first)");
    int P = m->has_prefix ? m->prefix.pre_seq_len : 0;
    int rc = mf_model_decode_check(m, n, tok, row, pos, cs->c_rows, cs->c_cap, err);
    if (rc) return rc;
    dec_ws w;
    memset(&w, 0, sizeof(w));
    size_t need = dec_layout(m, cs, n, NULL, &w);
    if (need > cs->dec_n) {
        free(cs->dec_arena);
        cs->dec_arena = calloc(need, sizeof(float));
        if (!cs->dec_arena) {
            cs->dec_n = 0;
            return mf_err_set(err, MF_ENOMEM, "decode: out of memory");
        }
        cs->dec_n = need;
    }
    dec_layout(m, cs, n, cs->dec_arena, &w);
    int H = c->hidden_size, L = c->num_hidden_layers;
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim, grp = nh / nkv;
    int kd = m->kv_dim, qd = m->q_dim;
    size_t Sr = (size_t)P + cs->c_cap; /* cache rows per (layer, row), also the score row length */
    float scale = 1.0f / sqrtf((float)hd), alpha = c->glm_residual ? mf_model_glm_alpha(m) : 1.0f;
    int p0 = c->prefix_fixed_positions ? 0 : P; /* RoPE position of token 0 */
    for (int i = 0; i < n; i++) {
        w.rpos[i] = p0 + pos[i];
        w.rbpos[i] = 0;
        w.nsee[i] = pos[i] + 1;
    }
    if (c->prefix_lm && (rc = glm_positions(m, cs, n, tok, row, pos, &w, err)) != 0) return rc;
    const float *E = P_(m, m->embed)->data;
    float *e = c->embed_norm ? w.x2 : w.x;
    for (int i = 0; i < n; i++) memcpy(e + (size_t)i * H, E + (size_t)tok[i] * H, (size_t)H * sizeof(float));
    if (c->embed_norm) mf_k_cpu_norm_fwd(m, w.x, w.mean, w.rstd, e, m->emb_norm, m->emb_norm_b, n);
    cpu_layer_act a;
    memset(&a, 0, sizeof(a));
    for (int j = 0; j < N_MODS; j++) a.u[j] = w.lora[j];
    for (int l = 0; l < L; l++) {
        mf_layer_idx *li = &m->L[l];
        mf_k_cpu_norm_fwd(m, w.ln, w.mean, w.rstd, w.x, li->ln1, li->ln1_b, n);
        mf_k_cpu_qkv_fwd(m, cs, &a, l, w.ln, w.q, w.k, w.v, w.wide, n, 0);
        mf_k_cpu_rope_qk(m, cs, w.q, w.k, w.rpos, w.rbpos, n, 0);
        float *kc = cs->kc + (size_t)l * cs->c_rows * Sr * kd, *vc = cs->vc + (size_t)l * cs->c_rows * Sr * kd;
        for (int i = 0; i < n; i++) {
            size_t at = ((size_t)row[i] * Sr + P + pos[i]) * kd;
            memcpy(kc + at, w.k + (size_t)i * kd, (size_t)kd * sizeof(float));
            memcpy(vc + at, w.v + (size_t)i * kd, (size_t)kd * sizeof(float));
        }
#pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < nh; h++) {
                int g = h / grp, S = P + w.nsee[i];
                float slope = cs->alibi ? cs->alibi[h] : 0.0f; /* ALiBi: + slope * key index (as in training) */
                const float *qr = w.q + (size_t)i * qd + (size_t)h * hd;
                const float *kr0 = kc + (size_t)row[i] * Sr * kd + (size_t)g * hd;
                const float *vr0 = vc + (size_t)row[i] * Sr * kd + (size_t)g * hd;
                float *p = w.sc + ((size_t)i * nh + h) * Sr, mx = -INFINITY, sum = 0;
                for (int s = 0; s < S; s++) {
                    const float *kr = kr0 + (size_t)s * kd;
                    float d = 0;
#pragma omp simd reduction(+ : d)
                    for (int e2 = 0; e2 < hd; e2++) d += qr[e2] * kr[e2];
                    p[s] = d * scale;
                    if (cs->alibi) p[s] += slope * (float)s;
                    mx = p[s] > mx ? p[s] : mx;
                }
                for (int s = 0; s < S; s++) {
                    p[s] = expf(p[s] - mx);
                    sum += p[s];
                }
                float *o = w.ao + (size_t)i * qd + (size_t)h * hd, inv = 1.0f / sum;
                memset(o, 0, (size_t)hd * sizeof(float));
                for (int s = 0; s < S; s++) {
                    const float *vr = vr0 + (size_t)s * kd;
                    float ps = p[s] * inv;
#pragma omp simd
                    for (int e2 = 0; e2 < hd; e2++) o[e2] += ps * vr[e2];
                }
            }
        mf_k_cpu_lin_fwd(m, cs, &a, l, MOD_O, w.ao, w.x2, n, 0);
        /* residuals: x, or GLM's alpha * Norm(x) (w.ln holds the norm's output) */
        const float *r1 = c->glm_residual ? w.ln : w.x;
        for (size_t i = 0; i < (size_t)n * H; i++) w.x2[i] += alpha * r1[i];
        mf_k_cpu_norm_fwd(m, w.ln, w.mean, w.rstd, w.x2, li->ln2, li->ln2_b, n);
        mf_k_cpu_mlp_fwd(m, cs, &a, l, w.ln, w.g, w.u, w.act, w.x, w.wide, n, 0);
        const float *r2 = c->glm_residual ? w.ln : w.x2;
        for (size_t i = 0; i < (size_t)n * H; i++) w.x[i] += alpha * r2[i];
    }
    int first = last_only ? n - 1 : 0, nout = n - first;
    mf_k_cpu_norm_fwd(m, w.ln, w.mean, w.rstd, w.x + (size_t)first * H, m->norm, m->norm_b, nout);
    const float *Wlm = P_(m, m->lm_head >= 0 ? m->lm_head : m->embed)->data;
    mf_k_cpu_linear(logits, w.ln, Wlm, NULL, nout, H, c->vocab_size, 1.0f, 0.0f);
    return 0;
}
