/*
 * stages/kinds/kind_dedup.c — the `dedup` kind: exact and near-duplicate removal.
 *
 * Text compared: the `field` value (a string, or the strings inside it), or
 * all string values of the record in order joined by '\n' when field is
 * empty. Normalisation: whitespace removed, ASCII lower-cased, full-width
 * ASCII (U+FF01..FF5E) folded to ASCII, U+3000 dropped.
 *   exact:   SHA-256 of the normalised text; the first occurrence is kept.
 *   minhash: shingles of `shingle` code points, each hashed to 64 bits
 *            (FNV-1a + splitmix finaliser); num_perm permutations
 *            h_i(x) = (a_i x + b_i) mod (2^61 - 1), a_i, b_i drawn from the
 *            stage seed; LSH with b bands of r rows (datasketch's
 *            optimal_param: minimise false positives + false negatives at
 *            the threshold). A record whose band matches a kept record's
 *            and whose estimated Jaccard (equal signature slots / num_perm)
 *            is >= threshold is dropped. Texts shorter than one shingle are
 *            one shingle.
 * Records are processed in input order, so the earliest copy survives. Kept
 * lines are written through unchanged to out_dir/data.jsonl.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

#define MERSENNE61 ((1ULL << 61) - 1)

/* ---- text ---- */

static void collect_strings(const mf_json *v, mf_buf *b)
{
    if (!v) return;
    if (v->type == MF_JSON_STRING) {
        if (b->len) mf_buf_putc(b, '\n');
        mf_buf_append(b, v->s, v->slen);
    } else if (v->type == MF_JSON_ARRAY || v->type == MF_JSON_OBJECT) {
        for (size_t k = 0; k < v->n; k++) collect_strings(v->items[k], b);
    }
}

/* Decode one UTF-8 code point (input is validated). */
static uint32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n == 2) c = ((c & 0x1F) << 6) | (s[1] & 0x3F);
    else if (n == 3) c = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    else if (n == 4) c = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    *p = s + n;
    return c;
}

/* Normalised code points of text. */
static uint32_t *normalise(const char *text, size_t len, size_t *n_out)
{
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    if (!cp) return NULL;
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    size_t n = 0;
    while (p < end) {
        uint32_t c = utf8_next(&p);
        if (c >= 0xFF01 && c <= 0xFF5E) c -= 0xFEE0;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x3000 || c == 0x0B || c == 0x0C) continue;
        if (c >= 'A' && c <= 'Z') c += 32;
        cp[n++] = c;
    }
    *n_out = n;
    return cp;
}

/* ---- LSH parameters (datasketch.lsh._optimal_param) ---- */

static double integrate(double (*f)(double, double, double), double a, double b, double bands, double rows)
{
    const int steps = 200; /* midpoint rule; the curves are smooth */
    double h = (b - a) / steps, s = 0;
    for (int k = 0; k < steps; k++) s += f(a + (k + 0.5) * h, bands, rows);
    return s * h;
}
static double fp_area(double s, double b, double r) { return 1 - pow(1 - pow(s, r), b); }
static double fn_area(double s, double b, double r) { return 1 - (1 - pow(1 - pow(s, r), b)); }

void mf_dedup_lsh_params(double threshold, int num_perm, int *bands, int *rows)
{
    double best = 1e300;
    *bands = 1;
    *rows = num_perm;
    for (int b = 1; b <= num_perm; b++) {
        int max_r = num_perm / b;
        for (int r = 1; r <= max_r; r++) {
            double e = 0.5 * integrate(fp_area, 0, threshold, b, r) + 0.5 * integrate(fn_area, threshold, 1, b, r);
            if (e < best) {
                best = e;
                *bands = b;
                *rows = r;
            }
        }
    }
}

/* ---- hash sets ---- */

typedef struct {
    uint64_t *keys; /* 0 = empty (keys are forced non-zero) */
    uint32_t *vals;
    size_t cap, n;
} hmap; /* open addressing, multimap: same key may repeat */

static int hmap_grow(hmap *m)
{
    size_t nc = m->cap ? m->cap * 2 : 1024;
    uint64_t *nk = calloc(nc, sizeof *nk);
    uint32_t *nv = calloc(nc, sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return MF_ENOMEM;
    }
    for (size_t k = 0; k < m->cap; k++) {
        if (!m->keys[k]) continue;
        size_t j = m->keys[k] & (nc - 1);
        while (nk[j]) j = (j + 1) & (nc - 1);
        nk[j] = m->keys[k];
        nv[j] = m->vals[k];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = nc;
    return 0;
}

static int hmap_add(hmap *m, uint64_t key, uint32_t val)
{
    if (!key) key = 1;
    if ((m->n + 1) * 2 > m->cap && hmap_grow(m)) return MF_ENOMEM;
    size_t j = key & (m->cap - 1);
    while (m->keys[j]) j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
    return 0;
}

static void hmap_free(hmap *m)
{
    free(m->keys);
    free(m->vals);
}

int mf_stage_dedup_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const char *method = mf_stage_param_str(ctx, "method", "both");
    int do_exact = strcmp(method, "minhash") != 0, do_near = strcmp(method, "exact") != 0;
    double threshold = mf_stage_param_num(ctx, "threshold", 0.8);
    int shingle = (int)mf_stage_param_int(ctx, "shingle", 5);
    int num_perm = (int)mf_stage_param_int(ctx, "num_perm", 128);
    const char *field = mf_stage_param_str(ctx, "field", "");
    if (shingle < 1 || num_perm < 1 || !(threshold >= 0 && threshold <= 1))
        return mf_err_set(err, MF_EINVAL, "dedup: need shingle >= 1, num_perm >= 1 and 0 <= threshold <= 1");
    int bands = 1, rows = num_perm;
    if (do_near) mf_dedup_lsh_params(threshold, num_perm, &bands, &rows);

    uint64_t *pa = malloc((size_t)num_perm * sizeof *pa), *pb = malloc((size_t)num_perm * sizeof *pb);
    uint64_t *sig = malloc((size_t)num_perm * sizeof *sig);
    uint32_t *kept_sig = NULL; /* low 32 bits of each kept record's signature */
    long long *kept_rec = NULL; /* input record number (1-based) of each kept record */
    size_t n_kept = 0, kept_cap = 0;
    hmap exact = {0}, bandmap = {0};
    mf_rd *rd = NULL;
    mf_dout out = {0};
    mf_buf text = MF_BUF_INIT;
    long long n_exact = 0, n_near = 0;
    mf_json *examples = mf_json_new_array();
    int rc = (!pa || !pb || !sig) ? mf_err_set(err, MF_ENOMEM, "out of memory") : 0;
    mf_rng rng;
    mf_rng_seed(&rng, ctx->seed);
    for (int k = 0; k < num_perm && !rc; k++) {
        pa[k] = 1 + mf_rng_below(&rng, MERSENNE61 - 1);
        pb[k] = mf_rng_below(&rng, MERSENNE61);
    }
    if (!rc) rc = mf_data_open(ctx, "data", &rd);
    if (!rc) rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err);
    long long idx = 0;
    while (!rc) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        rc = mf_data_next(ctx, rd, "dedup", &line, &len, &rec, err);
        if (rc <= 0) break;
        rc = 0;
        idx++;
        const mf_json *v = *field ? mf_json_get_path(rec, field) : rec;
        if (!v) {
            mf_json_free(rec);
            rc = mf_reader_reject(rd, err, "missing field '%s' (the dedup field)", field);
            continue;
        }
        mf_buf_reset(&text);
        collect_strings(v, &text);
        mf_json_free(rec);
        size_t ncp = 0;
        uint32_t *cp = normalise(mf_buf_cstr(&text), text.len, &ncp);
        if (!cp || !mf_buf_ok(&text)) {
            free(cp);
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            break;
        }
        int dup = 0;
        uint64_t ehash = 0;
        if (do_exact) {
            unsigned char d[32];
            mf_sha256_bytes(cp, ncp * sizeof *cp, d);
            memcpy(&ehash, d, 8);
            if (!ehash) ehash = 1;
            size_t j = exact.cap ? ehash & (exact.cap - 1) : 0;
            for (; exact.cap && exact.keys[j]; j = (j + 1) & (exact.cap - 1))
                if (exact.keys[j] == ehash) { dup = 1; break; }
            if (dup) n_exact++;
        }
        if (!dup && do_near) {
            for (int k = 0; k < num_perm; k++) sig[k] = UINT64_MAX;
            size_t nsh = ncp >= (size_t)shingle ? ncp - (size_t)shingle + 1 : 1;
            size_t wlen = ncp >= (size_t)shingle ? (size_t)shingle : ncp;
            for (size_t s = 0; s < nsh; s++) {
                uint64_t x = mf_hash64(cp + s, wlen * sizeof *cp, 0) & MERSENNE61;
                for (int k = 0; k < num_perm; k++) {
                    unsigned __int128 t = (unsigned __int128)pa[k] * x + pb[k];
                    uint64_t h = (uint64_t)(t % MERSENNE61);
                    if (h < sig[k]) sig[k] = h;
                }
            }
            /* candidates: kept records sharing a band */
            for (int b = 0; b < bands && !dup; b++) {
                uint64_t bh = mf_hash64(sig + (size_t)b * rows, (size_t)rows * sizeof *sig, (uint64_t)b);
                if (!bh) bh = 1;
                if (!bandmap.cap) continue;
                for (size_t j = bh & (bandmap.cap - 1); bandmap.keys[j]; j = (j + 1) & (bandmap.cap - 1)) {
                    if (bandmap.keys[j] != bh) continue;
                    const uint32_t *ks = kept_sig + (size_t)bandmap.vals[j] * num_perm;
                    int eq = 0;
                    for (int k = 0; k < num_perm; k++) eq += ks[k] == (uint32_t)sig[k];
                    if ((double)eq / num_perm >= threshold) {
                        dup = 1;
                        n_near++;
                        if (examples && examples->n < 5) {
                            char ex[128];
                            snprintf(ex, sizeof ex, "record %lld ~ record %lld (estimated Jaccard %.2f)", idx,
                                     kept_rec[bandmap.vals[j]], (double)eq / num_perm);
                            mf_json_push(examples, mf_json_new_str(ex));
                        }
                        break;
                    }
                }
            }
        }
        free(cp);
        if (dup) continue;
        if (do_exact && (rc = hmap_add(&exact, ehash, 0))) break;
        if (do_near) {
            if (n_kept == kept_cap) {
                size_t nc = kept_cap ? kept_cap * 2 : 1024;
                uint32_t *ns = realloc(kept_sig, nc * (size_t)num_perm * sizeof *ns);
                if (!ns) { rc = MF_ENOMEM; break; }
                kept_sig = ns;
                long long *nr = realloc(kept_rec, nc * sizeof *nr);
                if (!nr) { rc = MF_ENOMEM; break; }
                kept_rec = nr;
                kept_cap = nc;
            }
            for (int k = 0; k < num_perm; k++) kept_sig[n_kept * (size_t)num_perm + (size_t)k] = (uint32_t)sig[k];
            kept_rec[n_kept] = idx;
            for (int b = 0; b < bands && !rc; b++) {
                uint64_t bh = mf_hash64(sig + (size_t)b * rows, (size_t)rows * sizeof *sig, (uint64_t)b);
                rc = hmap_add(&bandmap, bh ? bh : 1, (uint32_t)n_kept);
            }
            n_kept++;
            if (rc) break;
        }
        rc = mf_data_out_line(&out, line, len, err);
    }
    if (rc == MF_ENOMEM && !err->code) mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc2 = mf_data_out_close(&out, rc ? NULL : err);
    if (!rc) rc = rc2;
    if (!rc) {
        mf_json *stats = mf_json_new_object();
        mf_stats_str(stats, "kind", "dedup");
        mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
        mf_stats_int(stats, "rows_out", out.rows);
        mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
        mf_stats_int(stats, "dropped_exact", n_exact);
        mf_stats_int(stats, "dropped_near", n_near);
        mf_stats_int(stats, "lsh_bands", bands);
        mf_stats_int(stats, "lsh_rows", rows);
        if (stats) mf_json_set(stats, "near_examples", examples), examples = NULL;
        if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
        rc = mf_stats_write(ctx->out_dir, stats, err);
    }
    mf_json_free(examples);
    mf_buf_free(&text);
    hmap_free(&exact);
    hmap_free(&bandmap);
    free(kept_sig);
    free(kept_rec);
    free(pa);
    free(pb);
    free(sig);
    mf_reader_close(rd);
    return rc;
}
