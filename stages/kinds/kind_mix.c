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
    int rc;
    if ((rc = mf_reader_open(rdp, path, skip, ctx->err))) return rc;
    for (;;) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        if ((rc = mf_reader_next_line(*rdp, &line, &len, ctx->err)) <= 0) return rc;
        rc = mf_reader_parse_current(*rdp, &rec, ctx->err);
        mf_json_free(rec);
        if (rc < 0) return rc;
        if (rc == 0) continue; /* a bad line, skipped */
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
}

/* One run: what its steps share. */
typedef struct {
    mf_stage_ctx *ctx;
    const mf_stage_input *in;
    size_t ni;            /* inputs */
    rowset *sets;         /* their valid rows */
    mf_rd **rds;
    double *w, wsum;      /* their weights */
    long long *take, T;   /* rows drawn from each; in all */
    size_t sum_rows;
    size_t *sel, nsel;    /* the drawn rows: (input, row) pairs */
    mf_rng rng;
} mix;

static int weigh(mix *m, const mf_json *wj, size_t nw)
{
    m->wsum = 0;
    double wmax = 0;
    for (size_t i = 0; i < m->ni; i++) {
        m->w[i] = nw ? mf_json_num(wj->items[i], -1) : (double)m->sets[i].n;
        if (!(m->w[i] >= 0) || !isfinite(m->w[i]))
            return mf_err_set(m->ctx->err, MF_EINVAL, "mix: weights[%zu] must be a finite number >= 0", i);
        if (m->w[i] > wmax) wmax = m->w[i];
    }
    for (size_t i = 0; i < m->ni; i++) m->wsum += m->w[i];
    if (!isfinite(m->wsum)) { /* huge weights (1e308, 1e308): scaled by the largest, the sum cannot overflow */
        m->wsum = 0;
        for (size_t i = 0; i < m->ni; i++) m->wsum += (m->w[i] /= wmax);
    }
    if (!(m->wsum > 0)) return mf_err_set(m->ctx->err, MF_EINVAL, "mix: all weights are 0 (or all inputs are empty)");
    return 0;
}

/* take[i]: the largest-remainder rounding of T * w_i / sum(w) (ties to the lower index). */
static int apportion(mix *m)
{
    double *frac = calloc(m->ni, sizeof *frac);
    if (!frac) return mf_err_set(m->ctx->err, MF_ENOMEM, "out of memory");
    long long assigned = 0;
    for (size_t i = 0; i < m->ni; i++) {
        double q = (double)m->T * m->w[i] / m->wsum;
        if (!isfinite(q)) q = (double)m->T * (m->w[i] / m->wsum); /* T * w overflowed: the share first */
        if (!(q >= 0)) q = 0;
        if (q > (double)m->T) q = (double)m->T;
        m->take[i] = (long long)floor(q);
        frac[i] = q - floor(q);
        assigned += m->take[i];
    }
    while (assigned < m->T) {
        size_t best = 0;
        for (size_t i = 1; i < m->ni; i++)
            if (frac[i] > frac[best]) best = i;
        m->take[best]++;
        frac[best] = -1;
        assigned++;
    }
    free(frac);
    for (size_t i = 0; i < m->ni; i++)
        if (m->take[i] > 0 && m->sets[i].n == 0)
            return mf_err_set(m->ctx->err, MF_EINVAL, "mix: input %zu ('%s') has no rows but weight %g", i,
                              m->in->paths[i], m->w[i]);
    return 0;
}

/* The rows of each input: whole passes while take[i] >= its rows, then distinct rows drawn. */
static int draw(mix *m)
{
    if (m->T > 0 && !(m->sel = calloc((size_t)m->T, 2 * sizeof *m->sel)))
        return mf_err_set(m->ctx->err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->ni; i++) {
        size_t c = m->sets[i].n, *sel = m->sel;
        if (!m->take[i]) continue;
        size_t *perm = malloc(c * sizeof *perm);
        if (!perm) return mf_err_set(m->ctx->err, MF_ENOMEM, "out of memory");
        long long left = m->take[i];
        while (left >= (long long)c) { /* whole passes */
            for (size_t r = 0; r < c; r++) sel[2 * m->nsel] = i, sel[2 * m->nsel + 1] = r, m->nsel++;
            left -= (long long)c;
        }
        for (size_t r = 0; r < c; r++) perm[r] = r;
        for (long long k = 0; k < left; k++) { /* partial Fisher-Yates: draw `left` distinct rows */
            size_t j = (size_t)k + (size_t)mf_rng_below(&m->rng, c - (size_t)k);
            size_t t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
            sel[2 * m->nsel] = i, sel[2 * m->nsel + 1] = perm[k], m->nsel++;
        }
        free(perm);
    }
    return 0;
}

/* The drawn rows, shuffled together, to out_dir/data.jsonl. */
static int write_rows(mix *m, mf_dout *out)
{
    mf_err *err = m->ctx->err;
    size_t *order = malloc((m->nsel ? m->nsel : 1) * sizeof *order);
    int rc;
    if (!order) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < m->nsel; k++) order[k] = k;
    mf_rng_shuffle(&m->rng, order, m->nsel);
    if ((rc = mf_data_out_open(out, m->ctx->out_dir, "data.jsonl", err))) goto out;
    for (size_t k = 0; k < m->nsel; k++) {
        const char *row = m->sets[m->sel[2 * order[k]]].rows[m->sel[2 * order[k] + 1]];
        if ((rc = mf_data_out_line(out, row, strlen(row), err))) goto out;
    }
    rc = mf_data_out_close(out, err);
out:
    free(order);
    return rc;
}

static int write_stats(const mix *m)
{
    mf_json *stats = mf_json_new_object();
    mf_json *per = mf_json_new_array();
    long long bad = 0;
    for (size_t i = 0; i < m->ni; i++) {
        mf_json *o = mf_json_new_object();
        mf_stats_str(o, "path", m->in->paths[i]);
        mf_stats_int(o, "rows", (long long)m->sets[i].n);
        mf_stats_int(o, "taken", m->take[i]);
        mf_stats_int(o, "bad", mf_reader_get_stats(m->rds[i])->bad);
        if (o) mf_json_set(o, "weight", mf_json_new_float(m->w[i] / m->wsum));
        bad += mf_reader_get_stats(m->rds[i])->bad;
        if (per) mf_json_push(per, o);
        else mf_json_free(o);
    }
    mf_stats_str(stats, "kind", "mix");
    mf_stats_int(stats, "rows_in", (long long)m->sum_rows + bad);
    mf_stats_int(stats, "rows_out", (long long)m->nsel);
    mf_stats_int(stats, "dropped_bad", bad);
    mf_stats_int(stats, "seed", (long long)m->ctx->seed);
    if (stats) mf_json_set(stats, "inputs", per);
    else mf_json_free(per);
    return mf_stats_write(m->ctx->out_dir, stats, m->ctx->err);
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

    mix m;
    memset(&m, 0, sizeof m);
    m.ctx = ctx;
    m.in = in;
    m.ni = ni;
    m.sets = calloc(ni, sizeof *m.sets);
    m.rds = calloc(ni, sizeof *m.rds);
    m.w = calloc(ni, sizeof *m.w);
    m.take = calloc(ni, sizeof *m.take);
    mf_dout out = {0};
    int rc;
    if (!m.sets || !m.rds || !m.w || !m.take) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ni; i++) {
        rc = read_input(ctx, in->paths[i], &m.sets[i], &m.rds[i]);
        m.sum_rows += m.sets[i].n;
        if (rc) goto out;
    }
    if ((rc = weigh(&m, wj, nw))) goto out;
    m.T = total ? total : (long long)m.sum_rows;
    if ((rc = apportion(&m))) goto out;
    mf_rng_seed(&m.rng, ctx->seed);
    if ((rc = draw(&m))) goto out;
    if ((rc = write_rows(&m, &out))) goto out;
    rc = write_stats(&m);
out:
    mf_data_out_close(&out, NULL);
    free(m.sel);
    for (size_t i = 0; i < ni; i++) {
        if (m.sets) rowset_free(&m.sets[i]);
        if (m.rds) mf_reader_close(m.rds[i]);
    }
    free(m.sets);
    free(m.rds);
    free(m.w);
    free(m.take);
    return rc;
}
