/*
 * stages/kinds/kind_report.c — the `report` kind: every eval output of the
 * `evals` slot and the metrics.jsonl of every `training` input into one
 * mf_report (stages/eval/report.h), written as report.md + report.html.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/eval/report.h"
#include "stages/kinds/kinds.h"

static int try_dag_file(mf_report *r, const char *dir, mf_err *err)
{
    char *p = mf_path_join(dir, "dag.json");
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json *v = NULL;
    int rc = 0;
    if (!mf_is_file(p)) goto out;
    if ((rc = mf_json_parse_file(&v, p, err))) goto out;
    rc = mf_report_set_dag(r, v, p, err);
out:
    mf_json_free(v);
    free(p);
    return rc;
}

/* The training curve of training input k (its metrics.jsonl), named by its stage, else by its digest. */
static int add_training(mf_report *r, const mf_stage_input *tr, size_t k, mf_err *err)
{
    char *p = mf_path_join(tr->paths[k], "metrics.jsonl");
    int rc;
    if (!p) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (!mf_is_file(p)) {
        rc = mf_err_set(err, MF_EINVAL, "report: training input %s has no metrics.jsonl", tr->paths[k]);
        goto out;
    }
    char fallback[128];
    const char *d = tr->digests && tr->digests[k] ? tr->digests[k] : NULL;
    if (d && !strncmp(d, "sha256:", 7) && strlen(d) >= 19)
        snprintf(fallback, sizeof fallback, "training %zu (%.12s)", k + 1, d + 7);
    else
        snprintf(fallback, sizeof fallback, "training %zu", k + 1);
    rc = mf_report_add_curve_jsonl(r, p, NULL, fallback, err);
out:
    free(p);
    return rc;
}

int mf_stage_report_run(mf_stage_ctx *ctx)
{
    mf_report *r = NULL;
    int rc = mf_report_new(&r, mf_stage_param_str(ctx, "title", ""), ctx->err);
    if (rc) return rc;
    const mf_stage_input *ev = mf_stage_input_get(ctx, "evals"), *tr = mf_stage_input_get(ctx, "training");
    if (!ev || !ev->n) {
        mf_report_free(r);
        return mf_err_set(ctx->err, MF_EINVAL, "report: input 'evals' needs at least one eval stage");
    }
    for (size_t k = 0; k < ev->n; k++) {
        if ((rc = mf_report_add_eval_dir(r, ev->paths[k], ctx->err))) goto out;
        if (!r->dag && (rc = try_dag_file(r, ev->paths[k], ctx->err))) goto out;
    }
    for (size_t k = 0; tr && k < tr->n; k++) {
        if ((rc = add_training(r, tr, k, ctx->err))) goto out;
        if (!r->dag && (rc = try_dag_file(r, tr->paths[k], ctx->err))) goto out;
    }
    /* No dag.json: an eval result may carry the DAG it belongs to. */
    for (size_t k = 0; !r->dag && k < r->n_evals; k++) {
        const mf_json *d = mf_json_get(r->evals[k], "dag");
        if (d && (rc = mf_report_set_dag(r, d, ev->paths[k < ev->n ? k : 0], ctx->err))) goto out;
    }
    rc = mf_report_write(r, ctx->out_dir, ctx->err);
out:
    mf_report_free(r);
    return rc;
}
