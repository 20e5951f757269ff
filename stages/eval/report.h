/*
 * stages/eval/report.h — the `report` kind and the library behind it: results tables
 * like the papers' (markdown + one self-contained HTML page with SVG loss
 * curves and an SVG drawing of the pipeline's DAG).
 *
 * Inputs are data, not paths, so a CLI can build a report from anything:
 *   - eval results: the parsed metrics.json of eval artifacts (contract in
 *     docs/eval.md: {"task","model","n","metrics":{..},"by_category":{..}},
 *     optional "dataset" and "model_b");
 *   - training curves: points {step, loss, lr, grad_norm, tokens_per_s} per
 *     training stage, plus every other metric of its metrics.jsonl (training and
 *     validation lines apart) and its warnings;
 *   - a few predictions of each eval (predictions.jsonl), shown side by side;
 *   - the DAG: {"nodes":[{"id","kind"}...], "edges":[{"from","to"}...]}.
 *
 * Tables: one per (task, dataset), models as rows in the order added, metrics
 * as columns (accuracy; BLEU-1..4, GLEU, ROUGE-1/2/L; win/tie/lose), plus a
 * model x category table (the task's primary metric) when categories exist.
 * Fractions (accuracy, win, tie, lose, ...) are shown x100; text metrics are
 * already x100 in metrics.json. The best value of each column is in bold.
 * Output is deterministic: the same inputs give byte-identical files.
 */
#ifndef MF_REPORT_H
#define MF_REPORT_H

#include <stddef.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "stages/stage.h"

typedef struct mf_report_point {
    double step, loss, lr, grad_norm, tokens_per_s; /* NAN when absent */
} mf_report_point;

typedef struct mf_report mf_report;

/* title may be NULL or "" (then "medflow report"). */
int mf_report_new(mf_report **out, const char *title, mf_err *err);
void mf_report_free(mf_report *r);

/* Add one eval result (a metrics.json tree; copied). `where` names it in errors. */
int mf_report_add_eval(mf_report *r, const mf_json *metrics, const char *where, mf_err *err);
/* Read DIR/metrics.json and add it, with the first MF_REPORT_SAMPLES lines of DIR/predictions.jsonl
 * when there is one (input, output, reference: the report's sample answers). */
#define MF_REPORT_SAMPLES 3
int mf_report_add_eval_dir(mf_report *r, const char *dir, mf_err *err);

/* Add a training curve (points copied). */
int mf_report_add_curve(mf_report *r, const char *label, const mf_report_point *pts, size_t n, mf_err *err);
/* Read a metrics.jsonl (JSON lines with step and loss; lr, grad_norm,
 * tokens_per_s optional) and add it: training lines give the loss points,
 * every other numeric key a series; lines with "split": "val" give validation
 * series (loss included); lines with a "warning" string give warnings.
 * label NULL: the lines' "stage" field, else fallback_label. */
int mf_report_add_curve_jsonl(mf_report *r, const char *path, const char *label, const char *fallback_label,
                              mf_err *err);

/* Set the pipeline DAG ({"nodes":[{"id","kind"}], "edges":[{"from","to"}]}); validated, copied. */
int mf_report_set_dag(mf_report *r, const mf_json *dag, const char *where, mf_err *err);

/* Render. */
int mf_report_markdown(const mf_report *r, mf_buf *out, mf_err *err);
int mf_report_html(const mf_report *r, mf_buf *out, mf_err *err);
/* The "Pipeline" section alone (a heading and the DAG as inline SVG) for a DAG in
 * mf_report_set_dag's form; `medflow report` adds it to a report drawn without one. */
int mf_report_dag_html(const mf_json *dag, mf_buf *out, mf_err *err);
/* Write DIR/report.md and DIR/report.html (atomically). */
int mf_report_write(const mf_report *r, const char *dir, mf_err *err);

/* ---- shared by report.c and report_html.c (not for other modules) ---- */

/* One metric of a training curve other than the training loss (and the validation loss). */
typedef struct mf_report_series {
    char *metric;
    int val; /* from validation lines */
    double *step, *value;
    size_t n, cap;
} mf_report_series;

typedef struct mf_report_curve {
    char *label;
    mf_report_point *pts; /* training lines */
    size_t n;
    mf_report_series *series;
    size_t n_series;
    char **warnings; /* "step N: text" */
    size_t n_warnings;
} mf_report_curve;

/* A chart of a curve beyond its loss chart: series drawn together ("rewards": chosen and rejected,
 * training and validation), in order of first appearance. Skipped: lr, grad_norm, tokens_per_s,
 * a constant kl_coef. */
#define MF_REPORT_CHART_SERIES 8
typedef struct mf_report_chart {
    char title[128];
    size_t idx[MF_REPORT_CHART_SERIES];
    char names[MF_REPORT_CHART_SERIES][64]; /* legend: "chosen (val)", "accuracy" ... */
    int n;
} mf_report_chart;
int mf_report_curve_charts(const mf_report_curve *c, mf_report_chart **out, size_t *n);
/* The validation loss series of c, or NULL. */
const mf_report_series *mf_report_curve_val_loss(const mf_report_curve *c);
void mf_report_curve_free(mf_report_curve *c);
/* Markdown: the training table (steps, loss, last validation values) and the warnings. */
void mf_report_md_training(const mf_report *r, mf_buf *b);
void mf_report_md_text(mf_buf *b, const char *s);

/* One table: rows are eval results (indices into evals), grouped by (task, dataset). */
typedef struct mf_report_table {
    char *task, *dataset; /* dataset may be "" */
    size_t *rows, n_rows;
    char **metrics; /* metric columns, display order */
    size_t n_metrics;
    char **cats; /* category columns (sorted), may be 0 */
    size_t n_cats;
    const char *primary; /* metric shown per category */
} mf_report_table;

struct mf_report {
    char *title;
    mf_json **evals;
    size_t n_evals;
    mf_report_curve *curves;
    size_t n_curves;
    mf_json *dag; /* or NULL */
};

/* Group r->evals into tables (caller frees with mf_report_tables_free). */
int mf_report_tables(const mf_report *r, mf_report_table **out, size_t *n, mf_err *err);
void mf_report_tables_free(mf_report_table *t, size_t n);
/* Row label: "model" (+ " vs model_b" for pairwise). Into buf. */
const char *mf_report_row_label(const mf_json *ev, char *buf, size_t n);
/* Cell text for a metric of a metrics object ("" when absent); *val the shown number (NAN if none). */
const char *mf_report_cell(const mf_json *metrics, const char *key, char *buf, size_t n, double *val);
/* Best row (index into t->rows) of a column, or -1: metric column when cat is NULL, else the
 * primary metric of category cat. */
/* Column header for a metric key ("BLEU-1", "accuracy", ...). */
const char *mf_report_metric_label(const char *key);
/* Is a higher value better (bold the max)? 0 for "lose", "chance", counts and the
 * lower-is-better ppl, loss and bpc (whose minimum is bold). */
int mf_report_higher_is_better(const char *key);
/* Section heading of a table: "mcq — cmmlu" etc. */
const char *mf_report_table_heading(const mf_report_table *t, char *buf, size_t n);
long mf_report_best_row(const mf_report *r, const mf_report_table *t, const char *key, const char *cat);
/* The metrics object of row k of t for a category (cat NULL: the whole-set metrics). */
const mf_json *mf_report_row_metrics(const mf_report *r, const mf_report_table *t, size_t k, const char *cat);
/* The sample answers: the tables (task, dataset) that have some, and for item k of table t the
 * prediction of row j (NULL when that eval has no prediction with item k's input). */
int mf_report_has_samples(const mf_report *r, const mf_report_table *t);
/* s cut to max_chars characters (UTF-8) with "…" when cut, into buf. */
const char *mf_report_clip(const char *s, size_t max_chars, char *buf, size_t n);
const mf_json *mf_report_sample(const mf_report *r, const mf_report_table *t, size_t k, size_t j);
/* Item k itself: the first row's prediction of it (input, reference), or NULL past the last item. */
const mf_json *mf_report_sample_item(const mf_report *r, const mf_report_table *t, size_t k);

#endif
