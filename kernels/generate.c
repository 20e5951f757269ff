/*
 * kernels/generate.c — batched generation (KV cache, greedy / temperature /
 * top-k / top-p, stop tokens) and continuation scoring.
 *
 * Randomness: row b draws from its own xoshiro256** stream seeded with
 * splitmix64(seed + b) (kernels/rng.h), one uniform per sampled token, so a
 * row's output depends only on (model, prompt, config, seed, b) — not on the
 * other rows or on when they stop. Greedy picks the first maximal logit.
 * Sampling follows HF's warper order: temperature, then top-k (keep logits
 * >= the k-th largest), then top-p (drop the largest-sorted-ascending prefix
 * whose cumulative probability is <= 1 - top_p, always keeping one token).
 * Reported log-probs are log_softmax of the raw logits (before temperature).
 */
#include "kernels/model_internal.h"
#include "kernels/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct vi {
    float v;
    int i;
} vi;

static int cmp_vi_asc(const void *a, const void *b)
{
    const vi *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return x->i < y->i ? 1 : (x->i > y->i ? -1 : 0); /* larger index first among ties: HF sorts stably */
}

static float log_softmax_at(const float *z, int V, int tok)
{
    float mx = z[0];
    for (int j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    double s = 0;
    for (int j = 0; j < V; j++) s += exp((double)(z[j] - mx));
    return (float)((double)(z[tok] - mx) - log(fmax(s, 1.0))); /* s >= exp(0) = 1 */
}

/* Pick the next token from raw logits z[V] (z is not modified). */
static int pick(const float *z, int V, const mf_k_gen_config *c, mf_k_rng *r, float *w, vi *srt)
{
    if (c->temperature <= 0) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (z[j] > z[best]) best = j;
        return best;
    }
    for (int j = 0; j < V; j++) w[j] = z[j] / c->temperature;
    if (c->top_k > 0 && c->top_k < V) {
        for (int j = 0; j < V; j++) srt[j] = (vi){w[j], j};
        qsort(srt, (size_t)V, sizeof(vi), cmp_vi_asc);
        float kth = srt[V - c->top_k].v;
        for (int j = 0; j < V; j++)
            if (w[j] < kth) w[j] = -INFINITY;
    }
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = w[j] > mx ? w[j] : mx;
    double s = 0;
    for (int j = 0; j < V; j++) s += w[j] == -INFINITY ? 0.0 : exp((double)(w[j] - mx));
    for (int j = 0; j < V; j++) w[j] = w[j] == -INFINITY ? 0.0f : (float)(exp((double)(w[j] - mx)) / s);
    if (c->top_p > 0 && c->top_p < 1) {
        for (int j = 0; j < V; j++) srt[j] = (vi){w[j], j};
        qsort(srt, (size_t)V, sizeof(vi), cmp_vi_asc);
        double cum = 0, kept = 0;
        for (int k = 0; k < V - 1; k++) { /* the largest always survives */
            cum += srt[k].v;
            if (cum <= 1.0 - c->top_p) w[srt[k].i] = 0.0f;
        }
        for (int j = 0; j < V; j++) kept += w[j];
        for (int j = 0; j < V; j++) w[j] = (float)(w[j] / kept);
    }
    double u = mf_k_rng_uniform_d(r), acc = 0;
    int last = -1;
    for (int j = 0; j < V; j++) {
        if (w[j] <= 0) continue;
        last = j;
        acc += w[j];
        if (u < acc) return j;
    }
    return last; /* rounding: u beyond the summed mass */
}

static int is_stop(const mf_k_gen_config *c, int tok)
{
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop_ids[i] == tok) return 1;
    return 0;
}

/* Last-position logits of one row without any cache (reference path). */
static int logits_nocache(mf_model *m, const int32_t *seq, int len, float *out, mf_err *err)
{
    mf_k_batch b = {.B = 1, .T = len, .input_ids = seq};
    mf_k_outputs o;
    int rc = mf_model_forward(m, &b, MF_FWD_LOGITS, &o, err);
    if (rc) return rc;
    memcpy(out, o.logits + (size_t)(len - 1) * o.V, (size_t)o.V * sizeof(float));
    return 0;
}

int mf_model_generate(mf_model *m, int B, const int32_t *const *prompts, const int *plen,
                      const mf_k_gen_config *c, int32_t *out_ids, float *out_logp, int *out_len, mf_err *err)
{
    int V = m->cfg.vocab_size, maxp = 0, N = c->max_new_tokens;
    if (B <= 0 || N <= 0) return mf_err_set(err, MF_EINVAL, "generate: expected B > 0 and max_new_tokens > 0");
    for (int b = 0; b < B; b++) {
        if (plen[b] <= 0) return mf_err_set(err, MF_EINVAL, "generate: prompt %d is empty", b);
        if (plen[b] > maxp) maxp = plen[b];
        for (int t = 0; t < plen[b]; t++)
            if (prompts[b][t] < 0 || prompts[b][t] >= V)
                return mf_err_set(err, MF_EINVAL, "generate: prompt %d has token %d outside the vocabulary", b,
                                  prompts[b][t]);
    }
    int maxlen = maxp + N, rc = 0;
    /* prompts are prefilled one row at a time (only the last position's
     * logits are kept), decode steps run every live row together */
    size_t lrows = (size_t)(maxp > B ? maxp : B);
    float *logits = malloc(lrows * (size_t)V * sizeof(float)), *w = malloc((size_t)V * sizeof(float));
    float *first = malloc((size_t)B * V * sizeof(float)); /* each row's prompt logits */
    vi *srt = malloc((size_t)V * sizeof(vi));
    int32_t *tok = malloc(lrows * sizeof(int32_t)), *seq = malloc((size_t)maxlen * sizeof(int32_t));
    int *row = malloc(lrows * sizeof(int)), *pos = malloc(lrows * sizeof(int)), *alive = malloc((size_t)B * sizeof(int));
    int *lastrow = malloc((size_t)B * sizeof(int));
    mf_k_rng *rng = malloc((size_t)B * sizeof(mf_k_rng));
    if (!logits || !first || !w || !srt || !tok || !seq || !row || !pos || !alive || !lastrow || !rng) {
        rc = mf_err_set(err, MF_ENOMEM, "generate: out of memory");
        goto out;
    }
    for (int b = 0; b < B; b++) {
        mf_k_rng_seed(&rng[b], c->seed + (uint64_t)b);
        alive[b] = 1;
        out_len[b] = 0;
        for (int k = 0; k < N; k++) {
            out_ids[(size_t)b * N + k] = c->pad_id;
            if (out_logp) out_logp[(size_t)b * N + k] = 0;
        }
    }
    if (c->use_cache) {
        rc = m->be->cache_reset(m, B, maxlen, err);
        if (rc) goto out;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < plen[b]; t++) {
                tok[t] = prompts[b][t];
                row[t] = b;
                pos[t] = t;
            }
            if ((rc = m->be->decode(m, plen[b], tok, row, pos, 1, first + (size_t)b * V, err)) != 0) goto out;
        }
        for (int b = 0; b < B; b++) lastrow[b] = -1 - b; /* first step reads `first` */
    }
    for (int k = 0; k < N; k++) {
        int n = 0;
        for (int b = 0; b < B; b++) {
            if (!alive[b]) continue;
            const float *z = lastrow[b] < 0 ? first + (size_t)(-1 - lastrow[b]) * V : logits + (size_t)lastrow[b] * V;
            if (!c->use_cache) {
                memcpy(seq, prompts[b], (size_t)plen[b] * sizeof(int32_t));
                memcpy(seq + plen[b], out_ids + (size_t)b * N, (size_t)k * sizeof(int32_t));
                rc = logits_nocache(m, seq, plen[b] + k, logits, err);
                if (rc) goto out;
                z = logits;
            }
            int t = pick(z, V, c, &rng[b], w, srt);
            out_ids[(size_t)b * N + k] = t;
            if (out_logp) out_logp[(size_t)b * N + k] = log_softmax_at(z, V, t);
            out_len[b] = k + 1;
            if (is_stop(c, t) || k + 1 == N) {
                alive[b] = 0;
                continue;
            }
            tok[n] = t;
            row[n] = b;
            pos[n] = plen[b] + k;
            n++;
        }
        if (!n || !c->use_cache) continue;
        rc = m->be->decode(m, n, tok, row, pos, 0, logits, err);
        if (rc) goto out;
        for (int i = 0; i < n; i++) lastrow[row[i]] = i;
    }
out:
    free(logits), free(first), free(w), free(srt), free(tok), free(seq), free(row), free(pos), free(alive), free(lastrow), free(rng);
    return rc;
}

int mf_model_score(mf_model *m, const int32_t *prompt, int plen, const int32_t *cont, int clen, double *sum_logp,
                   double *mean_logp, mf_err *err)
{
    if (plen <= 0 || clen <= 0)
        return mf_err_set(err, MF_EINVAL, "score: expected a non-empty prompt and continuation, got %d and %d tokens",
                          plen, clen);
    int T = plen + clen;
    int32_t *ids = malloc((size_t)T * sizeof(int32_t)), *lab = malloc((size_t)T * sizeof(int32_t));
    if (!ids || !lab) {
        free(ids), free(lab);
        return mf_err_set(err, MF_ENOMEM, "score: out of memory");
    }
    memcpy(ids, prompt, (size_t)plen * sizeof(int32_t));
    memcpy(ids + plen, cont, (size_t)clen * sizeof(int32_t));
    for (int t = 0; t < T; t++) lab[t] = t < plen ? MF_K_IGNORE_INDEX : ids[t];
    mf_k_batch b = {.B = 1, .T = T, .input_ids = ids, .labels = lab};
    mf_k_outputs o;
    int rc;
    if ((rc = mf_model_forward(m, &b, MF_FWD_LOGITS, &o, err)) != 0) goto out;
    double s = 0;
    for (int t = 0; t < T; t++) s += o.logp[t];
    if (sum_logp) *sum_logp = s;
    if (mean_logp) *mean_logp = s / clen;
out:
    free(ids);
    free(lab);
    return rc;
}
