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

#include "common/u64map.h"
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

/* ---- the run ---- */

typedef struct {
    int do_exact, do_near, num_perm, shingle, bands, rows;
    double threshold;
    uint64_t *pa, *pb;    /* the permutations h_i(x) = (pa[i] x + pb[i]) mod 2^61 - 1 */
    uint64_t *sig;        /* the current record's signature */
    uint32_t *kept_sig;   /* low 32 bits of each kept record's signature */
    long long *kept_rec;  /* input record number (1-based) of each kept record */
    size_t n_kept, kept_cap;
    mf_u64map exact;      /* exact hash of each kept text */
    mf_u64map bandmap;    /* band hash -> kept record (a multimap) */
    long long n_exact, n_near;
    mf_json *examples;    /* the first near duplicates, for stats.json */
} dedup;

static uint64_t exact_hash(const uint32_t *cp, size_t ncp)
{
    unsigned char d[32];
    mf_sha256_bytes(cp, ncp * sizeof *cp, d);
    uint64_t h;
    memcpy(&h, d, 8);
    return h ? h : 1;
}

/* The MinHash signature of the text's shingles into d->sig. */
static void minhash(dedup *d, const uint32_t *cp, size_t ncp)
{
    for (int k = 0; k < d->num_perm; k++) d->sig[k] = UINT64_MAX;
    size_t sh = (size_t)d->shingle;
    size_t nsh = ncp >= sh ? ncp - sh + 1 : 1, wlen = ncp >= sh ? sh : ncp;
    for (size_t s = 0; s < nsh; s++) {
        uint64_t x = mf_hash64(cp + s, wlen * sizeof *cp, 0) & MERSENNE61;
        for (int k = 0; k < d->num_perm; k++) {
            unsigned __int128 t = (unsigned __int128)d->pa[k] * x + d->pb[k];
            uint64_t h = (uint64_t)(t % MERSENNE61);
            if (h < d->sig[k]) d->sig[k] = h;
        }
    }
}

static uint64_t band_hash(const dedup *d, int b)
{
    uint64_t bh = mf_hash64(d->sig + (size_t)b * d->rows, (size_t)d->rows * sizeof *d->sig, (uint64_t)b);
    return bh ? bh : 1;
}

/* Does a kept record share a band with d->sig and reach the threshold? (Record idx is the
 * current one, for the examples.) */
static int near_dup(dedup *d, long long idx)
{
    for (int b = 0; b < d->bands; b++) {
        uint64_t bh = band_hash(d, b);
        for (size_t j = mf_u64map_find(&d->bandmap, bh); j != MF_U64MAP_NONE; j = mf_u64map_next(&d->bandmap, bh, j)) {
            size_t kept = (size_t)d->bandmap.vals[j];
            const uint32_t *ks = d->kept_sig + kept * (size_t)d->num_perm;
            int eq = 0;
            for (int k = 0; k < d->num_perm; k++) eq += ks[k] == (uint32_t)d->sig[k];
            if ((double)eq / d->num_perm < d->threshold) continue;
            d->n_near++;
            if (d->examples && d->examples->n < 5) {
                char ex[128];
                snprintf(ex, sizeof ex, "record %lld ~ record %lld (estimated Jaccard %.2f)", idx, d->kept_rec[kept],
                         (double)eq / d->num_perm);
                mf_json_push(d->examples, mf_json_new_str(ex));
            }
            return 1;
        }
    }
    return 0;
}

/* Remember record idx as kept: its exact hash, its signature and its bands. */
static int keep(dedup *d, uint64_t ehash, long long idx)
{
    int rc;
    if (d->do_exact && (rc = mf_u64map_add(&d->exact, ehash, 0))) return rc;
    if (!d->do_near) return 0;
    if (d->n_kept == d->kept_cap) {
        size_t nc = d->kept_cap ? d->kept_cap * 2 : 1024;
        uint32_t *ns = realloc(d->kept_sig, nc * (size_t)d->num_perm * sizeof *ns);
        if (!ns) return MF_ENOMEM;
        d->kept_sig = ns;
        long long *nr = realloc(d->kept_rec, nc * sizeof *nr);
        if (!nr) return MF_ENOMEM;
        d->kept_rec = nr;
        d->kept_cap = nc;
    }
    for (int k = 0; k < d->num_perm; k++)
        d->kept_sig[d->n_kept * (size_t)d->num_perm + (size_t)k] = (uint32_t)d->sig[k];
    d->kept_rec[d->n_kept] = idx;
    for (int b = 0; b < d->bands; b++)
        if ((rc = mf_u64map_add(&d->bandmap, band_hash(d, b), d->n_kept))) return rc;
    d->n_kept++;
    return 0;
}

static int write_stats(const mf_stage_ctx *ctx, dedup *d, mf_rd *rd, const mf_dout *out, mf_err *err)
{
    mf_json *stats = mf_json_new_object();
    mf_stats_str(stats, "kind", "dedup");
    mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(stats, "rows_out", out->rows);
    mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
    mf_stats_int(stats, "dropped_exact", d->n_exact);
    mf_stats_int(stats, "dropped_near", d->n_near);
    mf_stats_int(stats, "lsh_bands", d->bands);
    mf_stats_int(stats, "lsh_rows", d->rows);
    if (stats) mf_json_set(stats, "near_examples", d->examples), d->examples = NULL;
    if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
    return mf_stats_write(ctx->out_dir, stats, err);
}

static void dedup_free(dedup *d)
{
    mf_json_free(d->examples);
    mf_u64map_free(&d->exact);
    mf_u64map_free(&d->bandmap);
    free(d->kept_sig);
    free(d->kept_rec);
    free(d->pa);
    free(d->pb);
    free(d->sig);
}

int mf_stage_dedup_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const char *method = mf_stage_param_str(ctx, "method", "both");
    const char *field = mf_stage_param_str(ctx, "field", "");
    dedup d;
    memset(&d, 0, sizeof d);
    d.do_exact = strcmp(method, "minhash") != 0;
    d.do_near = strcmp(method, "exact") != 0;
    d.threshold = mf_stage_param_num(ctx, "threshold", 0.8);
    d.shingle = (int)mf_stage_param_int(ctx, "shingle", 5);
    d.num_perm = (int)mf_stage_param_int(ctx, "num_perm", 128);
    if (d.shingle < 1 || d.num_perm < 1 || !(d.threshold >= 0 && d.threshold <= 1))
        return mf_err_set(err, MF_EINVAL, "dedup: need shingle >= 1, num_perm >= 1 and 0 <= threshold <= 1");
    d.bands = 1;
    d.rows = d.num_perm;
    if (d.do_near) mf_dedup_lsh_params(d.threshold, d.num_perm, &d.bands, &d.rows);

    mf_rd *rd = NULL;
    mf_dout out = {0};
    mf_buf text = MF_BUF_INIT;
    int rc = 0;
    d.examples = mf_json_new_array();
    d.pa = malloc((size_t)d.num_perm * sizeof *d.pa);
    d.pb = malloc((size_t)d.num_perm * sizeof *d.pb);
    d.sig = malloc((size_t)d.num_perm * sizeof *d.sig);
    if (!d.pa || !d.pb || !d.sig) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_rng rng;
    mf_rng_seed(&rng, ctx->seed);
    for (int k = 0; k < d.num_perm; k++) {
        d.pa[k] = 1 + mf_rng_below(&rng, MERSENNE61 - 1);
        d.pb[k] = mf_rng_below(&rng, MERSENNE61);
    }
    if ((rc = mf_data_open(ctx, "data", &rd))) goto out;
    if ((rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err))) goto out;
    long long idx = 0;
    for (;;) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        if ((rc = mf_data_next(ctx, rd, "dedup", &line, &len, &rec, err)) <= 0) break;
        idx++;
        const mf_json *v = *field ? mf_json_get_path(rec, field) : rec;
        if (!v) {
            mf_json_free(rec);
            if ((rc = mf_reader_reject(rd, err, "missing field '%s' (the dedup field)", field))) goto out;
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
            goto out;
        }
        uint64_t ehash = d.do_exact ? exact_hash(cp, ncp) : 0;
        int dup = d.do_exact && mf_u64map_find(&d.exact, ehash) != MF_U64MAP_NONE;
        if (dup) d.n_exact++;
        if (!dup && d.do_near) {
            minhash(&d, cp, ncp);
            dup = near_dup(&d, idx);
        }
        free(cp);
        if (dup) continue;
        if ((rc = keep(&d, ehash, idx))) goto out;
        if ((rc = mf_data_out_line(&out, line, len, err))) goto out;
    }
    if (rc) goto out;
    if ((rc = mf_data_out_close(&out, err))) goto out;
    rc = write_stats(ctx, &d, rd, &out, err);
out:
    if (rc == MF_ENOMEM && !err->code) mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_data_out_close(&out, NULL);
    mf_buf_free(&text);
    dedup_free(&d);
    mf_reader_close(rd);
    return rc;
}
