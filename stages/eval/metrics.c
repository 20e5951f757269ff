/*
 * stages/eval/metrics.c — scoring tokens and BLEU/GLEU/ROUGE (see metrics.h for the definitions).
 *
 * How it works: both texts are tokenized, their tokens interned to small
 * integer ids (sorting the distinct token strings), and every n-gram of order
 * 1..4 becomes a fixed-size key of 4 ids (zero padded). Sorting the keys of
 * hypothesis and reference and merging the two sorted lists gives, per order,
 * the clipped match count sum_g min(c_hyp(g), c_ref(g)) — the one number that
 * BLEU's modified precision, GLEU's overlap and ROUGE-n's intersection all
 * need. ROUGE-L is the LCS of the id sequences (two DP rows).
 */
#include "stages/eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const mf_metric_names[MF_M_COUNT] = {"bleu1", "bleu2",  "bleu3",  "bleu4",
                                                 "gleu",  "rouge1", "rouge2", "rougeL"};
const char *const mf_metric_labels[MF_M_COUNT] = {"BLEU-1", "BLEU-2",  "BLEU-3",  "BLEU-4",
                                                  "GLEU",   "ROUGE-1", "ROUGE-2", "ROUGE-L"};

/* ---- code point classes ---- */

int mf_metric_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF)      /* CJK Unified Ideographs */
           || (cp >= 0x3400 && cp <= 0x4DBF)   /* Extension A */
           || (cp >= 0xF900 && cp <= 0xFAFF)   /* Compatibility Ideographs */
           || (cp >= 0x20000 && cp <= 0x2FA1F) /* Extensions B-F, Compatibility Supplement */
           || (cp >= 0x30000 && cp <= 0x323AF) /* Extensions G-H */
           || (cp >= 0x3040 && cp <= 0x309F)   /* Hiragana */
           || (cp >= 0x30A0 && cp <= 0x30FF)   /* Katakana */
           || (cp >= 0xAC00 && cp <= 0xD7A3);  /* Hangul syllables */
}

int mf_metric_is_alnum(uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
           (cp >= 0xC0 && cp <= 0x24F && cp != 0xD7 && cp != 0xF7) /* Latin-1 letters, Latin Ext-A/B */
           || (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)          /* Greek capitals */
           || (cp >= 0x3B1 && cp <= 0x3C9)                         /* Greek small */
           || (cp >= 0x400 && cp <= 0x45F)                         /* Cyrillic */
           || (cp >= 0xFF10 && cp <= 0xFF19)                       /* fullwidth digits */
           || (cp >= 0xFF21 && cp <= 0xFF3A) || (cp >= 0xFF41 && cp <= 0xFF5A); /* fullwidth Latin */
}

/* Decode one UTF-8 sequence at s (n bytes left). Returns its length, or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* ---- tokenizer ---- */

static int push_token(mf_metric_tokens *t, size_t *cap, uint32_t off, uint32_t len)
{
    if (t->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint32_t *o = realloc(t->off, nc * sizeof *o);
        if (!o) return MF_ENOMEM;
        t->off = o;
        uint32_t *l = realloc(t->len, nc * sizeof *l);
        if (!l) return MF_ENOMEM;
        t->len = l;
        *cap = nc;
    }
    t->off[t->n] = off;
    t->len[t->n] = len;
    t->n++;
    return 0;
}

int mf_metric_tokenize(mf_metric_tokens *out, const char *s, size_t n, mf_err *err)
{
    memset(out, 0, sizeof *out);
    if (n >= UINT32_MAX) return mf_err_set(err, MF_EINVAL, "text of %zu bytes is too long to score", n);
    /* Normalisation never makes text longer (case folding is 1:1, fullwidth 3 -> 1 byte). */
    out->text = malloc(n + 1);
    if (!out->text) return mf_err_set(err, MF_ENOMEM, "out of memory tokenizing %zu bytes", n);
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0, cap = 0, i = 0;
    long run = -1; /* start (in text) of the letter/digit run being built */
    int rc = MF_ENOMEM; /* the only failure below */
    while (i < n) {
        uint32_t cp = 0;
        size_t l = utf8_decode(u + i, n - i, &cp);
        if (!l) {
            cp = 0xFFFD;
            l = 1;
        } /* invalid byte: dropped like punctuation */
        if (mf_metric_is_alnum(cp)) {
            if (run < 0) run = (long)w;
            if (cp < 0x80)
                out->text[w++] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
            else if (cp >= 0xFF10 && cp <= 0xFF19)
                out->text[w++] = (char)('0' + (cp - 0xFF10));
            else if (cp >= 0xFF21 && cp <= 0xFF3A)
                out->text[w++] = (char)('a' + (cp - 0xFF21));
            else if (cp >= 0xFF41 && cp <= 0xFF5A)
                out->text[w++] = (char)('a' + (cp - 0xFF41));
            else {
                memcpy(out->text + w, u + i, l);
                w += l;
            }
        } else {
            if (run >= 0) {
                if (push_token(out, &cap, (uint32_t)run, (uint32_t)(w - (size_t)run))) goto out;
                run = -1;
            }
            if (mf_metric_is_cjk(cp)) {
                memcpy(out->text + w, u + i, l);
                if (push_token(out, &cap, (uint32_t)w, (uint32_t)l)) goto out;
                w += l;
            }
        }
        i += l;
    }
    if (run >= 0 && push_token(out, &cap, (uint32_t)run, (uint32_t)(w - (size_t)run))) goto out;
    out->text[w] = 0;
    rc = 0;
out:
    if (rc) {
        mf_metric_tokens_free(out);
        rc = mf_err_set(err, rc, "out of memory tokenizing %zu bytes", n);
    }
    return rc;
}

void mf_metric_tokens_free(mf_metric_tokens *t)
{
    if (!t) return;
    free(t->off);
    free(t->len);
    free(t->text);
    memset(t, 0, sizeof *t);
}

/* ---- interning ---- */

typedef struct tokref {
    const char *p;
    uint32_t len;
    uint32_t slot; /* index into the combined id array */
} tokref;

static int cmp_tokref(const void *a, const void *b)
{
    const tokref *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, m);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* ids[0..nh) for hyp then ids[nh..nh+nr) for ref; equal tokens get equal ids >= 1. */
static int intern(uint32_t *ids, const mf_metric_tokens *h, const mf_metric_tokens *r)
{
    size_t n = h->n + r->n;
    if (!n) return 0;
    tokref *refs = malloc(n * sizeof *refs);
    if (!refs) return MF_ENOMEM;
    for (size_t k = 0; k < h->n; k++)
        refs[k] = (tokref){h->text + h->off[k], h->len[k], (uint32_t)k};
    for (size_t k = 0; k < r->n; k++)
        refs[h->n + k] = (tokref){r->text + r->off[k], r->len[k], (uint32_t)(h->n + k)};
    qsort(refs, n, sizeof *refs, cmp_tokref);
    uint32_t id = 0;
    for (size_t k = 0; k < n; k++) {
        if (!k || cmp_tokref(&refs[k - 1], &refs[k])) id++;
        ids[refs[k].slot] = id;
    }
    free(refs);
    return 0;
}

/* ---- n-gram matching ---- */

typedef struct gram {
    uint32_t id[4];
} gram;

static int cmp_gram(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(gram));
}

/* Fill g with the sorted n-grams of ids[0..len); returns how many (len-n+1 or 0). */
static size_t grams(gram *g, const uint32_t *ids, size_t len, int n)
{
    if (len < (size_t)n) return 0;
    size_t m = len - (size_t)n + 1;
    for (size_t k = 0; k < m; k++) {
        memset(&g[k], 0, sizeof g[k]);
        for (int j = 0; j < n; j++)
            g[k].id[j] = ids[k + (size_t)j];
    }
    qsort(g, m, sizeof *g, cmp_gram);
    return m;
}

/* sum over distinct n-grams of min(count in a, count in b); a and b sorted. */
static size_t clipped_matches(const gram *a, size_t na, const gram *b, size_t nb)
{
    size_t i = 0, j = 0, matches = 0;
    while (i < na && j < nb) {
        int c = cmp_gram(&a[i], &b[j]);
        if (c < 0)
            i++;
        else if (c > 0)
            j++;
        else {
            size_t ca = 0, cb = 0;
            gram g = a[i];
            while (i < na && !cmp_gram(&a[i], &g)) {
                i++;
                ca++;
            }
            while (j < nb && !cmp_gram(&b[j], &g)) {
                j++;
                cb++;
            }
            matches += ca < cb ? ca : cb;
        }
    }
    return matches;
}

static size_t lcs_length(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t *row)
{
    /* row has 2*(nb+1) entries: previous and current DP rows. */
    size_t *prev = row, *cur = row + nb + 1;
    memset(prev, 0, (nb + 1) * sizeof *prev);
    for (size_t i = 1; i <= na; i++) {
        cur[0] = 0;
        for (size_t j = 1; j <= nb; j++) {
            if (a[i - 1] == b[j - 1])
                cur[j] = prev[j - 1] + 1;
            else
                cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    return prev[nb];
}

/* rouge_score.scoring.fmeasure, same operation order. */
static double fmeasure(double p, double r)
{
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

int mf_metric_score_tokens(mf_metric_scores *out, const mf_metric_tokens *hyp, const mf_metric_tokens *ref,
                           mf_err *err)
{
    memset(out, 0, sizeof *out);
    size_t H = hyp->n, R = ref->n, big = H > R ? H : R;
    uint32_t *ids = malloc((H + R + 1) * sizeof *ids);
    gram *gh = malloc((big + 1) * sizeof *gh), *gr = malloc((big + 1) * sizeof *gr);
    size_t *row = malloc(2 * (R + 1) * sizeof *row);
    if (!ids || !gh || !gr || !row || intern(ids, hyp, ref)) {
        free(ids), free(gh), free(gr), free(row);
        return mf_err_set(err, MF_ENOMEM, "out of memory scoring %zu against %zu tokens", H, R);
    }
    const uint32_t *ih = ids, *ir = ids + H;

    size_t match[5] = {0}, nh[5] = {0}, nr[5] = {0};
    for (int n = 1; n <= 4; n++) {
        nh[n] = grams(gh, ih, H, n);
        nr[n] = grams(gr, ir, R, n);
        match[n] = clipped_matches(gh, nh[n], gr, nr[n]);
    }

    /* BLEU (nltk corpus_bleu on one sentence, method1 smoothing, epsilon 0.1). */
    if (match[1] > 0) {
        double logp[5];
        for (int n = 1; n <= 4; n++) {
            double den = (double)(nh[n] > 1 ? nh[n] : 1); /* max(1, number of hyp n-grams) */
            double p = match[n] ? (double)match[n] / den : 0.1 / den;
            logp[n] = log(p);
        }
        /* brevity penalty; closest ref length = R (one reference); H > 0 here */
        double bp = H > R ? 1.0 : exp(1.0 - (double)R / (double)H);
        for (int k = 1; k <= 4; k++) {
            double w = 1.0 / k, s = 0, c = 0; /* Neumaier sum, as math.fsum */
            for (int n = 1; n <= k; n++) {
                double x = w * logp[n], t = s + x;
                c += fabs(s) >= fabs(x) ? (s - t) + x : (x - t) + s;
                s = t;
            }
            out->v[MF_M_BLEU1 + k - 1] = 100.0 * (bp * exp(s + c));
        }
    }

    /* GLEU: n-grams of orders 1..4 together; min(precision, recall). */
    size_t tp = 0, tpfp = 0, tpfn = 0;
    for (int n = 1; n <= 4; n++)
        tp += match[n], tpfp += nh[n], tpfn += nr[n];
    size_t nall = tpfp > tpfn ? tpfp : tpfn;
    out->v[MF_M_GLEU] = nall ? 100.0 * ((double)tp / (double)nall) : 0.0;

    /* ROUGE-1/2 F1 (target = reference, prediction = hypothesis). */
    for (int n = 1; n <= 2; n++) {
        double p = (double)match[n] / (double)(nh[n] > 1 ? nh[n] : 1);
        double r = (double)match[n] / (double)(nr[n] > 1 ? nr[n] : 1);
        out->v[n == 1 ? MF_M_ROUGE1 : MF_M_ROUGE2] = 100.0 * fmeasure(p, r);
    }
    /* ROUGE-L F1 */
    if (H && R) {
        size_t lcs = lcs_length(ih, H, ir, R, row); /* row is sized for R */
        double p = (double)lcs / (double)H, r = (double)lcs / (double)R;
        out->v[MF_M_ROUGEL] = 100.0 * fmeasure(p, r);
    }
    free(ids), free(gh), free(gr), free(row);
    return 0;
}

int mf_metric_score(mf_metric_scores *out, const char *hyp, const char *ref, mf_err *err)
{
    mf_metric_tokens th, tr;
    int rc = mf_metric_tokenize(&th, hyp, strlen(hyp), err);
    if (rc) return rc;
    if ((rc = mf_metric_tokenize(&tr, ref, strlen(ref), err))) goto out;
    rc = mf_metric_score_tokens(out, &th, &tr, err);
    mf_metric_tokens_free(&tr);
out:
    mf_metric_tokens_free(&th);
    return rc;
}

/* ---- averaging ---- */

void mf_metric_acc_init(mf_metric_acc *a)
{
    memset(a, 0, sizeof *a);
}

void mf_metric_acc_add(mf_metric_acc *a, const mf_metric_scores *s)
{
    for (int k = 0; k < MF_M_COUNT; k++)
        a->sum[k] += s->v[k];
    a->n++;
}

void mf_metric_acc_mean(const mf_metric_acc *a, mf_metric_scores *out)
{
    for (int k = 0; k < MF_M_COUNT; k++)
        out->v[k] = a->n ? a->sum[k] / (double)a->n : 0.0;
}
