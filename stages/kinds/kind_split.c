/*
 * stages/kinds/kind_split.c — the `split` kind: deterministic split by content hash.
 *
 * Each record goes to a part chosen by u = first 8 bytes of SHA-256(content)
 * read big-endian / 2^64, against the cumulative normalised ratios of the
 * parts taken in sorted name order. content = the canonical JSON (compact,
 * keys sorted) of the `field` value, or of the whole record when field is
 * empty — so the same record always lands in the same part, whatever its key
 * order or spacing, and identical records never straddle two parts. The
 * seed is not used: a split must stay put when the seed changes. Lines are
 * written through unchanged to out_dir/<part>.jsonl.
 */
#include <stdlib.h>
#include <string.h>

#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

typedef struct {
    const char *name;
    double ratio;
    mf_dout out;
} part_t;

static int cmp_part(const void *a, const void *b) { return strcmp(((const part_t *)a)->name, ((const part_t *)b)->name); }

/* The `parts` param ({name: ratio}; default {test: 0.1, train: 0.9}), sorted by name. */
static int read_parts(mf_stage_ctx *ctx, part_t **out, size_t *n_out, double *total)
{
    mf_err *err = ctx->err;
    const mf_json *pm = mf_stage_param(ctx, "parts");
    static const char *def_names[] = {"test", "train"};
    static const double def_ratio[] = {0.1, 0.9};
    size_t np = pm && pm->type == MF_JSON_OBJECT ? pm->n : 2;
    if (np == 0) return mf_err_set(err, MF_EINVAL, "split: 'parts' is empty (expected e.g. {train: 0.9, test: 0.1})");
    part_t *parts = calloc(np, sizeof *parts);
    if (!parts) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = 0;
    *total = 0;
    for (size_t k = 0; k < np; k++) {
        if (pm && pm->type == MF_JSON_OBJECT) {
            parts[k].name = pm->keys[k];
            if (!mf_json_is_num(pm->items[k]) || mf_json_num(pm->items[k], -1) < 0) {
                rc = mf_err_set(err, MF_EINVAL, "split: part '%s': expected a ratio >= 0", pm->keys[k]);
                goto out;
            }
            parts[k].ratio = mf_json_num(pm->items[k], 0);
        } else {
            parts[k].name = def_names[k];
            parts[k].ratio = def_ratio[k];
        }
        const char *nm = parts[k].name;
        if (!*nm || strchr(nm, '/') || nm[0] == '.' || !strcmp(nm, "stats")) {
            rc = mf_err_set(err, MF_EINVAL, "split: part name '%s' is not a valid file name", nm);
            goto out;
        }
        *total += parts[k].ratio;
    }
    if (!(*total > 0)) {
        rc = mf_err_set(err, MF_EINVAL, "split: the ratios of 'parts' sum to 0");
        goto out;
    }
    qsort(parts, np, sizeof *parts, cmp_part);
    *out = parts;
    *n_out = np;
    parts = NULL;
out:
    free(parts);
    return rc;
}

static int write_stats(mf_stage_ctx *ctx, mf_rd *rd, const part_t *parts, size_t np)
{
    mf_json *stats = mf_json_new_object(), *pj = mf_json_new_object();
    long long out_rows = 0;
    for (size_t k = 0; k < np; k++) {
        mf_stats_int(pj, parts[k].name, parts[k].out.rows);
        out_rows += parts[k].out.rows;
    }
    mf_stats_str(stats, "kind", "split");
    mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(stats, "rows_out", out_rows);
    mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
    if (stats) mf_json_set(stats, "parts", pj), pj = NULL;
    if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
    mf_json_free(pj);
    return mf_stats_write(ctx->out_dir, stats, ctx->err);
}

int mf_stage_split_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    part_t *parts = NULL;
    size_t np = 0;
    double total = 0;
    int rc;
    if ((rc = read_parts(ctx, &parts, &np, &total))) return rc;
    const char *field = mf_stage_param_str(ctx, "field", "");
    mf_rd *rd = NULL;
    mf_buf canon = MF_BUF_INIT;
    char fname[512];
    for (size_t k = 0; k < np; k++) {
        snprintf(fname, sizeof fname, "%s.jsonl", parts[k].name);
        if ((rc = mf_data_out_open(&parts[k].out, ctx->out_dir, fname, err))) goto out;
    }
    if ((rc = mf_data_open(ctx, "data", &rd))) goto out;
    for (;;) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        if ((rc = mf_data_next(ctx, rd, "split", &line, &len, &rec, err)) <= 0) break;
        const mf_json *v = rec;
        if (*field && !(v = mf_json_get_path(rec, field))) {
            mf_json_free(rec);
            if ((rc = mf_reader_reject(rd, err, "missing field '%s' (the split's hash field)", field))) goto out;
            continue;
        }
        mf_buf_reset(&canon);
        mf_json_write(&canon, v, MF_JSON_SORTED);
        mf_json_free(rec);
        if (!mf_buf_ok(&canon)) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        double u = mf_split_unit(canon.data, canon.len) * total, acc = 0;
        size_t pick = np - 1;
        for (size_t k = 0; k < np; k++) {
            acc += parts[k].ratio;
            if (u < acc && parts[k].ratio > 0) {
                pick = k;
                break;
            }
        }
        if ((rc = mf_data_out_line(&parts[pick].out, line, len, err))) goto out;
    }
    if (rc) goto out;
    for (size_t k = 0; k < np; k++)
        if ((rc = mf_data_out_close(&parts[k].out, err))) goto out;
    rc = write_stats(ctx, rd, parts, np);
out:
    for (size_t k = 0; k < np; k++) mf_data_out_close(&parts[k].out, NULL);
    mf_buf_free(&canon);
    mf_reader_close(rd);
    free(parts);
    return rc;
}
