/*
 * stages/eval/report_train.c — the training side of a report: curves read from a
 * training artifact's metrics.jsonl (the loss points, every other metric as a series,
 * training and validation lines apart, and the warnings), how they are grouped into
 * charts, and the markdown training table. report_html.c draws the charts.
 */
#include "stages/eval/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/readers.h"

void mf_report_curve_free(mf_report_curve *c)
{
    free(c->label);
    free(c->pts);
    for (size_t k = 0; k < c->n_series; k++) {
        free(c->series[k].metric);
        free(c->series[k].step);
        free(c->series[k].value);
    }
    free(c->series);
    for (size_t k = 0; k < c->n_warnings; k++) free(c->warnings[k]);
    free(c->warnings);
    memset(c, 0, sizeof *c);
}

int mf_report_add_curve(mf_report *r, const char *label, const mf_report_point *pts, size_t n, mf_err *err)
{
    mf_report_curve *nc = realloc(r->curves, (r->n_curves + 1) * sizeof *nc);
    if (!nc) return mf_err_set(err, MF_ENOMEM, "out of memory adding a curve");
    r->curves = nc;
    mf_report_curve c;
    memset(&c, 0, sizeof c);
    c.label = strdup(label ? label : "training");
    c.pts = n ? malloc(n * sizeof *pts) : NULL;
    c.n = n;
    if (!c.label || (n && !c.pts)) {
        mf_report_curve_free(&c);
        return mf_err_set(err, MF_ENOMEM, "out of memory adding a curve");
    }
    if (n) memcpy(c.pts, pts, n * sizeof *pts);
    r->curves[r->n_curves++] = c;
    return 0;
}

static double num_or_nan(const mf_json *line, const char *key)
{
    const mf_json *v = mf_json_get(line, key);
    return mf_json_is_num(v) ? mf_json_num(v, NAN) : NAN;
}

/* Keys that are not curves of their own. */
static int not_a_series(const char *key)
{
    return !strcmp(key, "step") || !strcmp(key, "lr") || !strcmp(key, "grad_norm") || !strcmp(key, "tokens_per_s");
}

static int series_add(mf_report_curve *c, const char *metric, int val, double step, double v)
{
    size_t k = 0;
    while (k < c->n_series && !(c->series[k].val == val && !strcmp(c->series[k].metric, metric))) k++;
    if (k == c->n_series) {
        mf_report_series *ns = realloc(c->series, (c->n_series + 1) * sizeof *ns);
        if (!ns) return MF_ENOMEM;
        c->series = ns;
        memset(&ns[k], 0, sizeof ns[k]);
        if (!(ns[k].metric = strdup(metric))) return MF_ENOMEM;
        ns[k].val = val;
        c->n_series++;
    }
    mf_report_series *s = &c->series[k];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *a = realloc(s->step, cap * sizeof *a);
        if (a) s->step = a;
        double *b = realloc(s->value, cap * sizeof *b);
        if (b) s->value = b;
        if (!a || !b) return MF_ENOMEM;
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->value[s->n++] = v;
    return 0;
}

/* One line of metrics.jsonl into the curve under construction (c->pts grows by *cap). */
static int curve_line(mf_report_curve *c, size_t *cap, const mf_json *v)
{
    double step = num_or_nan(v, "step");
    const char *warning = mf_json_get_str(v, "warning", NULL);
    if (warning) {
        char **nw = realloc(c->warnings, (c->n_warnings + 1) * sizeof *nw);
        if (!nw) return MF_ENOMEM;
        c->warnings = nw;
        size_t len = strlen(warning) + 32;
        if (!(nw[c->n_warnings] = malloc(len))) return MF_ENOMEM;
        snprintf(nw[c->n_warnings++], len, "step %.0f: %s", step, warning);
        return 0;
    }
    int val = mf_json_get(v, "split") != NULL;
    for (size_t k = 0; k < v->n; k++)
        if (mf_json_is_num(v->items[k]) && !not_a_series(v->keys[k]) && (val || strcmp(v->keys[k], "loss")) &&
            series_add(c, v->keys[k], val, step, mf_json_num(v->items[k], NAN)))
            return MF_ENOMEM;
    if (val) return 0;
    if (c->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        mf_report_point *np = realloc(c->pts, *cap * sizeof *np);
        if (!np) return MF_ENOMEM;
        c->pts = np;
    }
    c->pts[c->n++] = (mf_report_point){step, num_or_nan(v, "loss"), num_or_nan(v, "lr"), num_or_nan(v, "grad_norm"),
                                       num_or_nan(v, "tokens_per_s")};
    return 0;
}

int mf_report_add_curve_jsonl(mf_report *r, const char *path, const char *label, const char *fallback_label,
                              mf_err *err)
{
    mf_rd *rd = NULL;
    mf_json *v = NULL;
    mf_report_curve c;
    memset(&c, 0, sizeof c);
    char *stage = NULL;
    size_t cap = 0;
    int rc;
    if ((rc = mf_reader_open(&rd, path, 0, err))) goto out;
    while ((rc = mf_reader_next(rd, &v, err)) > 0) {
        if (isnan(num_or_nan(v, "step"))) {
            rc = mf_err_at(err, MF_EINVAL, path, (int)mf_reader_lineno(rd), 1,
                           "training metrics: expected an object with a numeric \"step\"");
            goto out;
        }
        const char *st = mf_json_get_str(v, "stage", NULL);
        if ((!stage && st && !(stage = strdup(st))) || curve_line(&c, &cap, v)) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory reading %s", path);
            goto out;
        }
        mf_json_free(v);
        v = NULL;
    }
    if (rc) goto out;
    c.label = strdup(label ? label : stage ? stage : fallback_label);
    mf_report_curve *nc = c.label ? realloc(r->curves, (r->n_curves + 1) * sizeof *nc) : NULL;
    if (!nc) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory adding a curve");
        goto out;
    }
    r->curves = nc;
    r->curves[r->n_curves++] = c;
    memset(&c, 0, sizeof c);
out:
    mf_json_free(v);
    mf_reader_close(rd);
    mf_report_curve_free(&c);
    free(stage);
    return rc;
}

/* ---- charts ---- */

const mf_report_series *mf_report_curve_val_loss(const mf_report_curve *c)
{
    for (size_t k = 0; k < c->n_series; k++)
        if (c->series[k].val && !strcmp(c->series[k].metric, "loss")) return &c->series[k];
    return NULL;
}

static int constant(const mf_report_series *s)
{
    for (size_t k = 1; k < s->n; k++)
        if (s->value[k] != s->value[0]) return 0;
    return 1;
}

/* "rewards/chosen" -> group "rewards", name "chosen"; "reward_rejected" -> "reward", "rejected"; else itself. */
static void group_of(const char *metric, char *group, size_t gn, char *name, size_t nn)
{
    static const char *const sides[] = {"chosen", "rejected"};
    size_t l = strlen(metric);
    for (int s = 0; s < 2; s++) {
        size_t sl = strlen(sides[s]);
        if (l > sl + 1 && !strcmp(metric + l - sl, sides[s]) && (metric[l - sl - 1] == '/' || metric[l - sl - 1] == '_')) {
            snprintf(group, gn, "%.*s", (int)(l - sl - 1), metric);
            snprintf(name, nn, "%s", sides[s]);
            return;
        }
    }
    snprintf(group, gn, "%s", metric);
    snprintf(name, nn, "%s", metric);
}

int mf_report_curve_charts(const mf_report_curve *c, mf_report_chart **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    mf_report_chart *ch = calloc(c->n_series ? c->n_series : 1, sizeof *ch);
    if (!ch) return MF_ENOMEM;
    for (size_t k = 0; k < c->n_series; k++) {
        const mf_report_series *s = &c->series[k];
        if (!strcmp(s->metric, "loss") || (!strcmp(s->metric, "kl_coef") && constant(s))) continue;
        char group[128], name[64];
        group_of(s->metric, group, sizeof group, name, sizeof name);
        size_t j = 0;
        while (j < *n && strcmp(ch[j].title, group)) j++;
        if (j == *n) snprintf(ch[(*n)++].title, sizeof ch[j].title, "%s", group);
        if (ch[j].n == MF_REPORT_CHART_SERIES) continue;
        ch[j].idx[ch[j].n] = k;
        if (strcmp(name, group)) /* grouped: "chosen", "chosen (val)" */
            snprintf(ch[j].names[ch[j].n++], sizeof ch[j].names[0], "%s%s", name, s->val ? " (val)" : "");
        else
            snprintf(ch[j].names[ch[j].n++], sizeof ch[j].names[0], "%s", s->val ? "validation" : "training");
    }
    *out = ch;
    return 0;
}

/* ---- markdown ---- */

static void put_num(mf_buf *b, double v, const char *fmt)
{
    if (isnan(v)) mf_buf_puts(b, "–");
    else mf_buf_printf(b, fmt, v);
}

static void loss_summary(const mf_report_curve *c, double *first, double *last, double *minl, double *steps)
{
    *first = *last = *minl = *steps = NAN;
    for (size_t k = 0; k < c->n; k++) {
        double l = c->pts[k].loss;
        if (isnan(l)) continue;
        if (isnan(*first)) *first = l;
        *last = l;
        if (isnan(*minl) || l < *minl) *minl = l;
        *steps = c->pts[k].step;
    }
}

/* The last values of the validation series, else of the most telling training ones (ppo). */
static void last_values(mf_buf *b, const mf_report_curve *c)
{
    static const char *const prefer[] = {"objective/scores", "objective/kl", "objective/entropy", "response/distinct_share",
                                         "response/length", "policy/clipfrac_avg", NULL};
    int any = 0, val = 0;
    for (size_t k = 0; k < c->n_series; k++) val |= c->series[k].val;
    for (size_t k = 0; k < c->n_series; k++) {
        const mf_report_series *s = &c->series[k];
        if (val != s->val || !s->n) continue;
        int shown = val;
        for (int p = 0; !shown && prefer[p]; p++) shown = !strcmp(s->metric, prefer[p]);
        if (!shown) continue;
        mf_buf_puts(b, any ? ", " : val ? "val: " : "");
        mf_report_md_text(b, s->metric);
        mf_buf_printf(b, " %.4g", s->value[s->n - 1]);
        any = 1;
    }
    if (!any) mf_buf_puts(b, "–");
}

void mf_report_md_training(const mf_report *r, mf_buf *b)
{
    if (!r->n_curves) return;
    mf_buf_puts(b, "## Training\n\n| Stage | Steps | First loss | Last loss | Min loss | Last values "
                   "|\n|:---|---:|---:|---:|---:|:---|\n");
    size_t warnings = 0;
    for (size_t k = 0; k < r->n_curves; k++) {
        const mf_report_curve *c = &r->curves[k];
        double first, last, minl, steps;
        loss_summary(c, &first, &last, &minl, &steps);
        mf_buf_puts(b, "| ");
        mf_report_md_text(b, c->label);
        mf_buf_puts(b, " | ");
        put_num(b, steps, "%.0f");
        mf_buf_puts(b, " | ");
        put_num(b, first, "%.4f");
        mf_buf_puts(b, " | ");
        put_num(b, last, "%.4f");
        mf_buf_puts(b, " | ");
        put_num(b, minl, "%.4f");
        mf_buf_puts(b, " | ");
        last_values(b, c);
        mf_buf_puts(b, " |\n");
        warnings += c->n_warnings;
    }
    mf_buf_puts(b, "\nThe loss and every logged metric (training and validation) are drawn in report.html.\n\n");
    if (!warnings) return;
    mf_buf_puts(b, "### Warnings\n\n");
    for (size_t k = 0; k < r->n_curves; k++)
        for (size_t w = 0; w < r->curves[k].n_warnings; w++) {
            mf_buf_puts(b, "- **");
            mf_report_md_text(b, r->curves[k].label);
            mf_buf_puts(b, "** ");
            mf_report_md_text(b, r->curves[k].warnings[w]);
            mf_buf_putc(b, '\n');
        }
    mf_buf_putc(b, '\n');
}
