/*
 * stages/eval/report.c — the report model (eval results, training curves, DAG), its
 * loading and validation, table grouping, the markdown renderer and the
 * `report` stage kind. The HTML/SVG renderer is in report_html.c.
 */
#include "stages/eval/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/readers.h"

static const char *const tasks[] = {"mcq", "qa", "dialog", "diagnosis", "pairwise", "ppl", NULL};

/* ---- construction ---- */

int mf_report_new(mf_report **out, const char *title, mf_err *err)
{
    *out = NULL;
    mf_report *r = calloc(1, sizeof *r);
    if (!r) return mf_err_set(err, MF_ENOMEM, "out of memory creating a report");
    r->title = strdup(title && *title ? title : "medflow report");
    if (!r->title) {
        free(r);
        return mf_err_set(err, MF_ENOMEM, "out of memory creating a report");
    }
    *out = r;
    return 0;
}

void mf_report_free(mf_report *r)
{
    if (!r) return;
    for (size_t k = 0; k < r->n_evals; k++)
        mf_json_free(r->evals[k]);
    free(r->evals);
    for (size_t k = 0; k < r->n_curves; k++)
        mf_report_curve_free(&r->curves[k]);
    free(r->curves);
    mf_json_free(r->dag);
    free(r->title);
    free(r);
}

static int check_metric_object(const mf_json *m, const char *what, const char *where, mf_err *err)
{
    if (!m || m->type != MF_JSON_OBJECT)
        return mf_err_at(err, MF_EINVAL, where, m ? m->line : 0, m ? m->col : 0,
                         "%s: expected an object of metric -> number", what);
    for (size_t k = 0; k < m->n; k++)
        if (!mf_json_is_num(m->items[k]) && m->items[k]->type != MF_JSON_NULL)
            return mf_err_at(err, MF_EINVAL, where, m->items[k]->line, m->items[k]->col,
                             "%s: metric '%s' should be a number, found %s", what, m->keys[k],
                             mf_json_type_name(m->items[k]->type));
    return 0;
}

int mf_report_add_eval(mf_report *r, const mf_json *ev, const char *where, mf_err *err)
{
    if (!ev || ev->type != MF_JSON_OBJECT)
        return mf_err_at(err, MF_EINVAL, where, 1, 1, "eval result: expected a JSON object");
    const char *task = mf_json_get_str(ev, "task", NULL);
    int known = 0;
    for (int k = 0; task && tasks[k]; k++)
        known |= !strcmp(task, tasks[k]);
    if (!known)
        return mf_err_at(err, MF_EINVAL, where, ev->line, ev->col,
                         "eval result: \"task\" should be one of mcq|qa|dialog|diagnosis|pairwise|ppl, found %s",
                         task ? task : "nothing");
    const char *model = mf_json_get_str(ev, "model", NULL);
    if (!model || !*model)
        return mf_err_at(err, MF_EINVAL, where, ev->line, ev->col,
                         "eval result: \"model\" should be a non-empty string (the row label)");
    const mf_json *n = mf_json_get(ev, "n");
    if (!n || n->type != MF_JSON_INT || n->i < 0)
        return mf_err_at(err, MF_EINVAL, where, n ? n->line : ev->line, n ? n->col : ev->col,
                         "eval result: \"n\" should be the number of items evaluated (an integer >= 0)");
    int rc = check_metric_object(mf_json_get(ev, "metrics"), "eval result \"metrics\"", where, err);
    if (rc) return rc;
    const mf_json *bc = mf_json_get(ev, "by_category");
    if (bc) {
        if (bc->type != MF_JSON_OBJECT)
            return mf_err_at(err, MF_EINVAL, where, bc->line, bc->col,
                             "eval result: \"by_category\" should be an object category -> metrics");
        for (size_t k = 0; k < bc->n; k++)
            if ((rc = check_metric_object(bc->items[k], "eval result \"by_category\" entry", where, err)))
                return rc;
    }
    mf_json **ne = realloc(r->evals, (r->n_evals + 1) * sizeof *ne);
    if (!ne) return mf_err_set(err, MF_ENOMEM, "out of memory adding an eval result");
    r->evals = ne;
    if (!(r->evals[r->n_evals] = mf_json_clone(ev)))
        return mf_err_set(err, MF_ENOMEM, "out of memory adding an eval result");
    r->n_evals++;
    return 0;
}

/* The first MF_REPORT_SAMPLES predictions of an eval artifact as [{input, output, reference}]. */
static int read_samples(const char *path, mf_json **out, mf_err *err)
{
    static const char *const keys[] = {"input", "output", "reference"};
    mf_rd *rd = NULL;
    mf_json *arr = mf_json_new_array(), *v = NULL, *s = NULL;
    int rc;
    *out = NULL;
    if (!arr) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_reader_open(&rd, path, 0, err))) goto out;
    while (arr->n < MF_REPORT_SAMPLES && (rc = mf_reader_next(rd, &v, err)) > 0) {
        if (!(s = mf_json_new_object())) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        for (int k = 0; k < 3; k++)
            if (mf_json_set(s, keys[k], mf_json_new_str(mf_json_get_str(v, keys[k], "")))) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
        mf_json *item = s;
        s = NULL; /* the array owns it from here, also when the push fails */
        if (mf_json_push(arr, item)) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        mf_json_free(v);
        v = NULL;
    }
    if (rc < 0) goto out;
    rc = 0;
    *out = arr;
    arr = NULL;
out:
    mf_json_free(s);
    mf_json_free(v);
    mf_json_free(arr);
    mf_reader_close(rd);
    return rc;
}

int mf_report_add_eval_dir(mf_report *r, const char *dir, mf_err *err)
{
    char *path = mf_path_join(dir, "metrics.json"), *preds = mf_path_join(dir, "predictions.jsonl");
    mf_json *v = NULL, *samples = NULL;
    int rc = 0;
    if (!path || !preds) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_json_parse_file(&v, path, err)) || (rc = mf_report_add_eval(r, v, path, err))) goto out;
    if (mf_is_file(preds) && (rc = read_samples(preds, &samples, err))) goto out;
    if (samples && mf_json_set(r->evals[r->n_evals - 1], "samples", samples)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    samples = NULL;
out:
    mf_json_free(samples);
    mf_json_free(v);
    free(path);
    free(preds);
    return rc;
}

int mf_report_set_dag(mf_report *r, const mf_json *dag, const char *where, mf_err *err)
{
    const mf_json *nodes = mf_json_get(dag, "nodes"), *edges = mf_json_get(dag, "edges");
    if (!nodes || nodes->type != MF_JSON_ARRAY || (edges && edges->type != MF_JSON_ARRAY))
        return mf_err_at(
            err, MF_EINVAL, where, dag ? dag->line : 0, dag ? dag->col : 0,
            "dag: expected {\"nodes\": [{\"id\", \"kind\"}...], \"edges\": [{\"from\", \"to\"}...]}");
    for (size_t k = 0; k < nodes->n; k++) {
        const char *id = mf_json_get_str(nodes->items[k], "id", NULL);
        if (!id || !*id)
            return mf_err_at(err, MF_EINVAL, where, nodes->items[k]->line, nodes->items[k]->col,
                             "dag: node %zu has no \"id\" string", k);
        for (size_t j = 0; j < k; j++)
            if (!strcmp(id, mf_json_get_str(nodes->items[j], "id", "")))
                return mf_err_at(err, MF_EINVAL, where, nodes->items[k]->line, nodes->items[k]->col,
                                 "dag: node id '%s' appears twice", id);
    }
    for (size_t k = 0; edges && k < edges->n; k++) {
        const char *ends[2] = {mf_json_get_str(edges->items[k], "from", NULL),
                               mf_json_get_str(edges->items[k], "to", NULL)};
        for (int e = 0; e < 2; e++) {
            int found = 0;
            for (size_t j = 0; ends[e] && j < nodes->n; j++)
                found |= !strcmp(ends[e], mf_json_get_str(nodes->items[j], "id", ""));
            if (!found)
                return mf_err_at(err, MF_EINVAL, where, edges->items[k]->line, edges->items[k]->col,
                                 "dag: edge %zu: \"%s\" should name a node, found %s", k, e ? "to" : "from",
                                 ends[e] ? ends[e] : "nothing");
        }
    }
    mf_json *c = mf_json_clone(dag);
    if (!c) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json_free(r->dag);
    r->dag = c;
    return 0;
}

/* ---- tables ---- */

static const char *const metric_order[] = {"accuracy",
                                           "accuracy_contains",
                                           "chance",
                                           "extract_rate",
                                           "ppl",
                                           "loss",
                                           "bpc",
                                           "bleu1",
                                           "bleu2",
                                           "bleu3",
                                           "bleu4",
                                           "gleu",
                                           "rouge1",
                                           "rouge2",
                                           "rougeL",
                                           "win",
                                           "tie",
                                           "lose",
                                           NULL};

static int metric_rank(const char *key)
{
    for (int k = 0; metric_order[k]; k++)
        if (!strcmp(key, metric_order[k])) return k;
    return 1000;
}

static int cmp_metric(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = metric_rank(x), ry = metric_rank(y);
    return rx != ry ? (rx > ry) - (rx < ry) : strcmp(x, y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_fraction(const char *key)
{
    size_t l = strlen(key);
    return !strncmp(key, "accuracy", 8) || !strcmp(key, "win") || !strcmp(key, "tie") ||
           !strcmp(key, "lose") || !strcmp(key, "chance") || (l > 5 && !strcmp(key + l - 5, "_rate"));
}

const char *mf_report_metric_label(const char *key)
{
    static const struct {
        const char *k, *label;
    } labels[] = {{"accuracy", "Accuracy"},
                  {"accuracy_contains", "Acc. (contains)"},
                  {"chance", "Chance"},
                  {"extract_rate", "Extracted"},
                  {"ppl", "Perplexity"},
                  {"loss", "Loss (nats/token)"},
                  {"bpc", "Bits/char"},
                  {"bleu1", "BLEU-1"},
                  {"bleu2", "BLEU-2"},
                  {"bleu3", "BLEU-3"},
                  {"bleu4", "BLEU-4"},
                  {"gleu", "GLEU"},
                  {"rouge1", "ROUGE-1"},
                  {"rouge2", "ROUGE-2"},
                  {"rougeL", "ROUGE-L"},
                  {"win", "Win"},
                  {"tie", "Tie"},
                  {"lose", "Lose"},
                  {NULL, NULL}};
    for (int k = 0; labels[k].k; k++)
        if (!strcmp(key, labels[k].k)) return labels[k].label;
    return key;
}

/* Lower is better: losses and perplexities. */
static int lower_is_better(const char *key)
{
    return !strcmp(key, "ppl") || !strcmp(key, "loss") || !strcmp(key, "bpc");
}

int mf_report_higher_is_better(const char *key)
{
    return strcmp(key, "lose") && strcmp(key, "n") && strcmp(key, "chance") && !lower_is_better(key);
}

const char *mf_report_cell(const mf_json *metrics, const char *key, char *buf, size_t n, double *val)
{
    *val = NAN;
    const mf_json *v = mf_json_get(metrics, key);
    if (!mf_json_is_num(v)) {
        snprintf(buf, n, "%s", "");
        return buf;
    }
    double x = mf_json_num(v, NAN);
    if (is_fraction(key)) x *= 100.0;
    *val = x;
    if (!strcmp(key, "n") || (v->type == MF_JSON_INT && !is_fraction(key) && metric_rank(key) == 1000))
        snprintf(buf, n, "%lld", (long long)mf_json_int(v, 0));
    else if (is_fraction(key) || metric_rank(key) < 1000)
        snprintf(buf, n, "%.2f", x);
    else
        snprintf(buf, n, "%.4g", x);
    return buf;
}

const char *mf_report_row_label(const mf_json *ev, char *buf, size_t n)
{
    const char *b = mf_json_get_str(ev, "model_b", NULL);
    if (b && *b)
        snprintf(buf, n, "%s vs %s", mf_json_get_str(ev, "model", ""), b);
    else
        snprintf(buf, n, "%s", mf_json_get_str(ev, "model", ""));
    return buf;
}

const char *mf_report_table_heading(const mf_report_table *t, char *buf, size_t n)
{
    static const struct {
        const char *task, *title;
    } titles[] = {
        {"mcq", "Multiple-choice exam"}, {"qa", "Question answering"},        {"dialog", "Dialogue"},
        {"diagnosis", "Diagnosis"},      {"pairwise", "Pairwise comparison"}, {"ppl", "Held-out perplexity"},
        {NULL, NULL}};
    const char *title = t->task;
    for (int k = 0; titles[k].task; k++)
        if (!strcmp(t->task, titles[k].task)) title = titles[k].title;
    if (*t->dataset)
        snprintf(buf, n, "%s (%s) — %s", title, t->task, t->dataset);
    else
        snprintf(buf, n, "%s (%s)", title, t->task);
    return buf;
}

static const char *primary_metric(const char *task)
{
    if (!strcmp(task, "qa") || !strcmp(task, "dialog")) return "rougeL";
    if (!strcmp(task, "pairwise")) return "win";
    if (!strcmp(task, "ppl")) return "ppl";
    return "accuracy";
}

/* Add s to a set of strings (no duplicates). */
static int set_add(char ***set, size_t *n, const char *s)
{
    for (size_t k = 0; k < *n; k++)
        if (!strcmp((*set)[k], s)) return 0;
    char **ns = realloc(*set, (*n + 1) * sizeof *ns);
    if (!ns) return MF_ENOMEM;
    *set = ns;
    if (!(ns[*n] = strdup(s))) return MF_ENOMEM;
    (*n)++;
    return 0;
}

void mf_report_tables_free(mf_report_table *t, size_t n)
{
    for (size_t k = 0; t && k < n; k++) {
        free(t[k].task);
        free(t[k].dataset);
        free(t[k].rows);
        for (size_t j = 0; j < t[k].n_metrics; j++)
            free(t[k].metrics[j]);
        free(t[k].metrics);
        for (size_t j = 0; j < t[k].n_cats; j++)
            free(t[k].cats[j]);
        free(t[k].cats);
    }
    free(t);
}

int mf_report_tables(const mf_report *r, mf_report_table **out, size_t *nout, mf_err *err)
{
    *out = NULL;
    *nout = 0;
    mf_report_table *t = NULL;
    size_t nt = 0;
    int rc = MF_ENOMEM; /* the only failure below */
    /* Tables in task order (mcq, qa, dialog, diagnosis, pairwise), then dataset by first appearance. */
    for (int tk = 0; tasks[tk]; tk++) {
        for (size_t e = 0; e < r->n_evals; e++) {
            const mf_json *ev = r->evals[e];
            if (strcmp(mf_json_get_str(ev, "task", ""), tasks[tk])) continue;
            const char *ds = mf_json_get_str(ev, "dataset", "");
            size_t k = 0;
            while (k < nt && !(!strcmp(t[k].task, tasks[tk]) && !strcmp(t[k].dataset, ds)))
                k++;
            if (k == nt) {
                mf_report_table *ntb = realloc(t, (nt + 1) * sizeof *ntb);
                if (!ntb) goto out;
                t = ntb;
                memset(&t[nt], 0, sizeof t[nt]);
                nt++;
                if (!(t[k].task = strdup(tasks[tk])) || !(t[k].dataset = strdup(ds))) goto out;
                t[k].primary = primary_metric(tasks[tk]);
            }
            size_t *nr = realloc(t[k].rows, (t[k].n_rows + 1) * sizeof *nr);
            if (!nr) goto out;
            t[k].rows = nr;
            t[k].rows[t[k].n_rows++] = e;
            const mf_json *m = mf_json_get(ev, "metrics");
            for (size_t j = 0; j < m->n; j++)
                if (set_add(&t[k].metrics, &t[k].n_metrics, m->keys[j])) goto out;
            const mf_json *bc = mf_json_get(ev, "by_category");
            for (size_t j = 0; bc && j < bc->n; j++)
                if (set_add(&t[k].cats, &t[k].n_cats, bc->keys[j])) goto out;
        }
    }
    for (size_t k = 0; k < nt; k++) {
        if (t[k].n_metrics) qsort(t[k].metrics, t[k].n_metrics, sizeof *t[k].metrics, cmp_metric);
        if (t[k].n_cats) qsort(t[k].cats, t[k].n_cats, sizeof *t[k].cats, cmp_str);
    }
    *out = t;
    *nout = nt;
    t = NULL;
    rc = 0;
out:
    if (rc) {
        mf_report_tables_free(t, nt);
        rc = mf_err_set(err, rc, "out of memory building report tables");
    }
    return rc;
}

const mf_json *mf_report_row_metrics(const mf_report *r, const mf_report_table *t, size_t k, const char *cat)
{
    const mf_json *ev = r->evals[t->rows[k]];
    if (!cat) return mf_json_get(ev, "metrics");
    return mf_json_get(mf_json_get(ev, "by_category"), cat);
}

long mf_report_best_row(const mf_report *r, const mf_report_table *t, const char *key, const char *cat)
{
    int sign = mf_report_higher_is_better(key) ? 1 : lower_is_better(key) ? -1 : 0;
    if (!sign || t->n_rows < 2) return -1;
    long best = -1;
    double bv = -INFINITY;
    int ties = 0;
    for (size_t k = 0; k < t->n_rows; k++) {
        char buf[64];
        double v;
        mf_report_cell(mf_report_row_metrics(r, t, k, cat), key, buf, sizeof buf, &v);
        if (isnan(v)) continue;
        v *= sign;
        if (v > bv)
            bv = v, best = (long)k, ties = 0;
        else if (v == bv)
            ties = 1;
    }
    return ties ? -1 : best;
}

/* ---- markdown ---- */

void mf_report_md_text(mf_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '|' || *s == '\\' || *s == '*' || *s == '_' || *s == '`') mf_buf_putc(b, '\\');
        if (*s == '\n' || *s == '\r')
            mf_buf_putc(b, ' ');
        else
            mf_buf_putc(b, *s);
    }
}

static void md_table(const mf_report *r, const mf_report_table *t, mf_buf *b, int by_cat)
{
    size_t ncol = by_cat ? t->n_cats : t->n_metrics;
    mf_buf_puts(b, by_cat ? "| Model |" : "| Model | n |");
    for (size_t c = 0; c < ncol; c++) {
        mf_buf_putc(b, ' ');
        mf_report_md_text(b, by_cat ? t->cats[c] : mf_report_metric_label(t->metrics[c]));
        mf_buf_puts(b, " |");
    }
    mf_buf_puts(b, by_cat ? "\n|:---|" : "\n|:---|---:|");
    for (size_t c = 0; c < ncol; c++)
        mf_buf_puts(b, "---:|");
    mf_buf_putc(b, '\n');
    long *best = calloc(ncol ? ncol : 1, sizeof *best);
    for (size_t c = 0; best && c < ncol; c++)
        best[c] = by_cat ? mf_report_best_row(r, t, t->primary, t->cats[c])
                         : mf_report_best_row(r, t, t->metrics[c], NULL);
    for (size_t k = 0; k < t->n_rows; k++) {
        const mf_json *ev = r->evals[t->rows[k]];
        char label[512], cell[64];
        double v;
        mf_buf_puts(b, "| ");
        mf_report_md_text(b, mf_report_row_label(ev, label, sizeof label));
        if (!by_cat) mf_buf_printf(b, " | %lld", (long long)mf_json_get_int(ev, "n", 0));
        for (size_t c = 0; c < ncol; c++) {
            const char *key = by_cat ? t->primary : t->metrics[c];
            mf_report_cell(mf_report_row_metrics(r, t, k, by_cat ? t->cats[c] : NULL), key, cell, sizeof cell,
                           &v);
            if (!*cell)
                mf_buf_puts(b, " | –");
            else if (best && best[c] == (long)k)
                mf_buf_printf(b, " | **%s**", cell);
            else
                mf_buf_printf(b, " | %s", cell);
        }
        mf_buf_puts(b, " |\n");
    }
    if (!best) b->oom = 1;
    free(best);
}

/* ---- sample answers ---- */

int mf_report_has_samples(const mf_report *r, const mf_report_table *t)
{
    if (strcmp(t->task, "qa") && strcmp(t->task, "dialog") && strcmp(t->task, "diagnosis")) return 0;
    for (size_t j = 0; j < t->n_rows; j++)
        if (mf_json_get(r->evals[t->rows[j]], "samples")) return 1;
    return 0;
}

/* Item k: the k-th sample of the first row that has samples; row j's prediction with the same input. */
const mf_json *mf_report_sample(const mf_report *r, const mf_report_table *t, size_t k, size_t j)
{
    const mf_json *first = NULL;
    for (size_t i = 0; i < t->n_rows && !first; i++) first = mf_json_get(r->evals[t->rows[i]], "samples");
    if (!first || k >= first->n) return NULL;
    const char *input = mf_json_get_str(first->items[k], "input", "");
    const mf_json *mine = mf_json_get(r->evals[t->rows[j]], "samples");
    for (size_t i = 0; mine && i < mine->n; i++)
        if (!strcmp(mf_json_get_str(mine->items[i], "input", ""), input)) return mine->items[i];
    return NULL;
}

const mf_json *mf_report_sample_item(const mf_report *r, const mf_report_table *t, size_t k)
{
    const mf_json *s = NULL;
    for (size_t j = 0; j < t->n_rows && !s; j++) s = mf_report_sample(r, t, k, j);
    return s;
}

const char *mf_report_clip(const char *s, size_t max_chars, char *buf, size_t n)
{
    size_t chars = 0, i = 0;
    for (; s[i] && chars < max_chars; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    while (s[i] && ((unsigned char)s[i] & 0xC0) == 0x80) i++; /* finish the last character */
    snprintf(buf, n, "%.*s%s", (int)(i < n - 4 ? i : n - 4), s, s[i] ? "…" : "");
    return buf;
}

static void md_samples(const mf_report *r, const mf_report_table *t, size_t nt, mf_buf *b)
{
    int any = 0;
    for (size_t k = 0; k < nt; k++) any |= mf_report_has_samples(r, &t[k]);
    if (!any) return;
    mf_buf_puts(b, "## Sample answers\n\nThe first items of each eval set, every model's answer side by side.\n\n");
    for (size_t k = 0; k < nt; k++) {
        if (!mf_report_has_samples(r, &t[k])) continue;
        char h[512], clip[1024];
        mf_buf_puts(b, "### ");
        mf_report_md_text(b, mf_report_table_heading(&t[k], h, sizeof h));
        mf_buf_puts(b, "\n\n");
        for (size_t i = 0; i < MF_REPORT_SAMPLES; i++) {
            const mf_json *s0 = mf_report_sample_item(r, &t[k], i);
            if (!s0) break;
            mf_buf_printf(b, "**%zu.** ", i + 1);
            mf_report_md_text(b, mf_report_clip(mf_json_get_str(s0, "input", ""), 200, clip, sizeof clip));
            mf_buf_puts(b, "  \nReference: ");
            mf_report_md_text(b, mf_report_clip(mf_json_get_str(s0, "reference", ""), 200, clip, sizeof clip));
            mf_buf_puts(b, "\n\n| Model | Answer |\n|:---|:---|\n");
            for (size_t j = 0; j < t[k].n_rows; j++) {
                const mf_json *s = mf_report_sample(r, &t[k], i, j);
                char label[512];
                mf_buf_puts(b, "| ");
                mf_report_md_text(b, mf_report_row_label(r->evals[t[k].rows[j]], label, sizeof label));
                mf_buf_puts(b, " | ");
                mf_report_md_text(b, s ? mf_report_clip(mf_json_get_str(s, "output", ""), 200, clip, sizeof clip) : "–");
                mf_buf_puts(b, " |\n");
            }
            mf_buf_putc(b, '\n');
        }
    }
}

int mf_report_markdown(const mf_report *r, mf_buf *b, mf_err *err)
{
    mf_report_table *t;
    size_t nt;
    int rc = mf_report_tables(r, &t, &nt, err);
    if (rc) return rc;
    mf_buf_puts(b, "# ");
    mf_report_md_text(b, r->title);
    mf_buf_puts(b, "\n\n## Results\n\n");
    if (!nt) mf_buf_puts(b, "No eval results.\n\n");
    mf_buf_puts(b, nt ? "All scores in %; accuracy, win, tie and lose are shares of items. Best of each "
                        "column in bold.\n\n"
                      : "");
    for (size_t k = 0; k < nt; k++) {
        char h[512];
        mf_buf_puts(b, "### ");
        mf_report_md_text(b, mf_report_table_heading(&t[k], h, sizeof h));
        mf_buf_puts(b, "\n\n");
        md_table(r, &t[k], b, 0);
        mf_buf_putc(b, '\n');
        if (t[k].n_cats) {
            mf_buf_printf(b, "%s by category:\n\n", mf_report_metric_label(t[k].primary));
            md_table(r, &t[k], b, 1);
            mf_buf_putc(b, '\n');
        }
    }
    md_samples(r, t, nt, b);
    mf_report_md_training(r, b);
    if (r->dag) {
        const mf_json *nodes = mf_json_get(r->dag, "nodes"), *edges = mf_json_get(r->dag, "edges");
        mf_buf_puts(b, "## Pipeline\n\n");
        for (size_t k = 0; k < nodes->n; k++) {
            mf_buf_puts(b, "- `");
            mf_buf_puts(b, mf_json_get_str(nodes->items[k], "id", ""));
            mf_buf_puts(b, "` (");
            mf_report_md_text(b, mf_json_get_str(nodes->items[k], "kind", "?"));
            mf_buf_puts(b, ")");
            int first = 1;
            for (size_t e = 0; edges && e < edges->n; e++) {
                if (strcmp(mf_json_get_str(edges->items[e], "to", ""),
                           mf_json_get_str(nodes->items[k], "id", "")))
                    continue;
                mf_buf_printf(b, "%s`%s`", first ? " ← " : ", ",
                              mf_json_get_str(edges->items[e], "from", ""));
                first = 0;
            }
            mf_buf_putc(b, '\n');
        }
        mf_buf_putc(b, '\n');
    }
    mf_report_tables_free(t, nt);
    if (!mf_buf_ok(b)) return mf_err_set(err, MF_ENOMEM, "out of memory rendering the report");
    return 0;
}

int mf_report_write(const mf_report *r, const char *dir, mf_err *err)
{
    mf_buf md = MF_BUF_INIT, html = MF_BUF_INIT;
    char *pm = mf_path_join(dir, "report.md"), *ph = mf_path_join(dir, "report.html");
    int rc;
    if (!pm || !ph) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_report_markdown(r, &md, err))) goto out;
    if ((rc = mf_report_html(r, &html, err))) goto out;
    if ((rc = mf_write_file_atomic(pm, md.data ? md.data : "", md.len, 0644, err))) goto out;
    rc = mf_write_file_atomic(ph, html.data ? html.data : "", html.len, 0644, err);
out:
    mf_buf_free(&md);
    mf_buf_free(&html);
    free(pm);
    free(ph);
    return rc;
}
