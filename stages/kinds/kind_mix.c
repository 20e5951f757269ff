/*
 * stages/kinds/kind_mix.c — the `mix` kind: a seeded weighted mixture of inputs.
 *
 * Inputs i = 0..n-1 (the data slot's list, in order) with c_i valid rows and
 * weights w_i (`weights`, or c_i when empty). The mixture has T rows
 * (`total`, or sum c_i when 0); input i contributes n_i rows, the
 * largest-remainder rounding of T * w_i / sum(w) (ties to the lower index).
 * Rows are drawn without replacement; when n_i > c_i the whole input is
 * repeated floor(n_i / c_i) times and the rest drawn (upsampling). The
 * selected rows are then shuffled together. All draws come from one
 * splitmix64 stream seeded with the stage's seed, in this fixed order, so a
 * seed gives byte-identical output. Rows are held in memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

typedef struct {
    char **rows;
    size_t n, cap;
} rowset;

static void rowset_free(rowset *s)
{
    for (size_t k = 0; k < s->n; k++) free(s->rows[k]);
    free(s->rows);
}

static int read_input(const mf_stage_ctx *ctx, const char *path, rowset *s, mf_rd **rdp)
{
    int skip = mf_reader_policy_skip(mf_stage_param_str(ctx, "on_bad_record", "fail"));
    int rc = mf_reader_open(rdp, path, skip, ctx->err);
    while (!rc) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        rc = mf_reader_next_line(*rdp, &line, &len, ctx->err);
        if (rc <= 0) break;
        rc = mf_reader_parse_current(*rdp, &rec, ctx->err);
        mf_json_free(rec);
        if (rc < 0) break;
        if (rc == 0) continue;
        rc = 0;
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 256;
            char **nr = realloc(s->rows, nc * sizeof *nr);
            if (!nr) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
            s->rows = nr;
            s->cap = nc;
        }
        if (!(s->rows[s->n] = strndup(line, len))) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
        s->n++;
    }
    return rc;
}

int mf_stage_mix_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const mf_stage_input *in = mf_stage_input_get(ctx, "data");
    if (!in || !in->n) return mf_err_set(err, MF_EINVAL, "mix: input 'data' is missing");
    size_t ni = in->n;
    const mf_json *wj = mf_stage_param(ctx, "weights");
    size_t nw = wj && wj->type == MF_JSON_ARRAY ? wj->n : 0;
    if (nw && nw != ni)
        return mf_err_set(err, MF_EINVAL, "mix: 'weights' has %zu entries but 'data' has %zu inputs (one weight per input, in order)", nw, ni);
    long long total = mf_stage_param_int(ctx, "total", 0);
    if (total < 0) return mf_err_set(err, MF_EINVAL, "mix: 'total' must be >= 0");

    rowset *sets = calloc(ni, sizeof *sets);
    mf_rd **rds = calloc(ni, sizeof *rds);
    double *w = calloc(ni, sizeof *w);
    long long *take = calloc(ni, sizeof *take);
    size_t *sel = NULL, *perm = NULL;
    mf_json *stats = NULL;
    int rc = (!sets || !rds || !w || !take) ? mf_err_set(err, MF_ENOMEM, "out of memory") : 0;
    size_t sum_rows = 0;
    for (size_t i = 0; i < ni && !rc; i++) {
        rc = read_input(ctx, in->paths[i], &sets[i], &rds[i]);
        sum_rows += sets[i].n;
    }
    double wsum = 0;
    for (size_t i = 0; i < ni && !rc; i++) {
        w[i] = nw ? mf_json_num(wj->items[i], -1) : (double)sets[i].n;
        if (!(w[i] >= 0) || !isfinite(w[i])) rc = mf_err_set(err, MF_EINVAL, "mix: weights[%zu] must be a number >= 0", i);
        wsum += w[i];
    }
    if (!rc && !(wsum > 0)) rc = mf_err_set(err, MF_EINVAL, "mix: all weights are 0 (or all inputs are empty)");
    long long T = total ? total : (long long)sum_rows;
    if (!rc) {
        /* largest remainder */
        long long assigned = 0;
        double *frac = calloc(ni, sizeof *frac);
        if (!frac) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        for (size_t i = 0; i < ni && !rc; i++) {
            double q = (double)T * w[i] / wsum;
            take[i] = (long long)floor(q);
            frac[i] = q - floor(q);
            assigned += take[i];
        }
        while (!rc && assigned < T) {
            size_t best = 0;
            for (size_t i = 1; i < ni; i++)
                if (frac[i] > frac[best]) best = i;
            take[best]++;
            frac[best] = -1;
            assigned++;
        }
        free(frac);
        for (size_t i = 0; i < ni && !rc; i++)
            if (take[i] > 0 && sets[i].n == 0)
                rc = mf_err_set(err, MF_EINVAL, "mix: input %zu ('%s') has no rows but weight %g", i, in->paths[i], w[i]);
    }
    mf_rng rng;
    mf_rng_seed(&rng, ctx->seed);
    /* selected rows as (input << 40 | row) packed in size_t pairs */
    size_t nsel = 0;
    if (!rc && T > 0) {
        sel = calloc((size_t)T, 2 * sizeof *sel);
        if (!sel) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < ni && !rc; i++) {
        size_t c = sets[i].n;
        if (!take[i]) continue;
        if (!(perm = malloc(c * sizeof *perm))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            break;
        }
        long long left = take[i];
        while (left >= (long long)c) { /* whole passes */
            for (size_t r = 0; r < c; r++) sel[2 * nsel] = i, sel[2 * nsel + 1] = r, nsel++;
            left -= (long long)c;
        }
        for (size_t r = 0; r < c; r++) perm[r] = r;
        for (long long k = 0; k < left; k++) { /* partial Fisher-Yates: draw `left` distinct rows */
            size_t j = (size_t)k + (size_t)mf_rng_below(&rng, c - (size_t)k);
            size_t t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
            sel[2 * nsel] = i, sel[2 * nsel + 1] = perm[k], nsel++;
        }
        free(perm);
        perm = NULL;
    }
    size_t *order = NULL;
    mf_dout out = {0};
    if (!rc && !(order = malloc((nsel ? nsel : 1) * sizeof *order))) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!rc) {
        for (size_t k = 0; k < nsel; k++) order[k] = k;
        mf_rng_shuffle(&rng, order, nsel);
        rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err);
    }
    for (size_t k = 0; k < nsel && !rc; k++) {
        const char *row = sets[sel[2 * order[k]]].rows[sel[2 * order[k] + 1]];
        rc = mf_data_out_line(&out, row, strlen(row), err);
    }
    int rc2 = mf_data_out_close(&out, rc ? NULL : err);
    if (!rc) rc = rc2;
    if (!rc) {
        stats = mf_json_new_object();
        mf_json *per = mf_json_new_array();
        long long bad = 0;
        for (size_t i = 0; i < ni; i++) {
            mf_json *o = mf_json_new_object();
            mf_stats_str(o, "path", in->paths[i]);
            mf_stats_int(o, "rows", (long long)sets[i].n);
            mf_stats_int(o, "taken", take[i]);
            mf_stats_int(o, "bad", mf_reader_get_stats(rds[i])->bad);
            if (o) mf_json_set(o, "weight", mf_json_new_float(w[i] / wsum));
            bad += mf_reader_get_stats(rds[i])->bad;
            if (per) mf_json_push(per, o);
            else mf_json_free(o);
        }
        mf_stats_str(stats, "kind", "mix");
        mf_stats_int(stats, "rows_in", (long long)sum_rows + bad);
        mf_stats_int(stats, "rows_out", (long long)nsel);
        mf_stats_int(stats, "dropped_bad", bad);
        mf_stats_int(stats, "seed", (long long)ctx->seed);
        if (stats) mf_json_set(stats, "inputs", per);
        else mf_json_free(per);
        rc = mf_stats_write(ctx->out_dir, stats, err);
    }
    free(order);
    free(sel);
    for (size_t i = 0; i < ni; i++) {
        if (sets) rowset_free(&sets[i]);
        if (rds) mf_reader_close(rds[i]);
    }
    free(sets);
    free(rds);
    free(w);
    free(take);
    return rc;
}
