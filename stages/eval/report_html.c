/*
 * stages/eval/report_html.c — report.html: one self-contained page (inline CSS, inline
 * SVG, no scripts, no external resources) with the results tables, one SVG loss
 * chart per training stage and an SVG drawing of the pipeline DAG.
 *
 * DAG layout: a node's column is the length of the longest path reaching it
 * from a node without inputs (sources in column 0); within a column, nodes keep
 * the order of the node list. Edges are cubic curves from the right side of
 * the producer to the left side of the consumer, with an arrow head.
 */
#include "stages/eval/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void esc(mf_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            mf_buf_puts(b, "&amp;");
            break;
        case '<':
            mf_buf_puts(b, "&lt;");
            break;
        case '>':
            mf_buf_puts(b, "&gt;");
            break;
        case '"':
            mf_buf_puts(b, "&quot;");
            break;
        case '\'':
            mf_buf_puts(b, "&#39;");
            break;
        default:
            mf_buf_putc(b, *s);
        }
    }
}

static const char *css =
    "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,'Noto Sans CJK SC','WenQuanYi Zen "
    "Hei','WenQuanYi Micro Hei',sans-serif;"
    "margin:24px auto;max-width:1100px;padding:0 16px;color:#1f2328;background:#fff}"
    "h1{font-size:26px;border-bottom:2px solid #d0d7de;padding-bottom:6px}"
    "h2{font-size:20px;margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}"
    "h3{font-size:16px;margin:22px 0 8px}"
    "p.note{color:#59636e;font-size:13px}"
    "table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}"
    "th,td{border:1px solid #d0d7de;padding:5px 10px}"
    "th{background:#f6f8fa;font-weight:600}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "td.best{font-weight:700;background:#dafbe1}"
    "td.label{font-weight:600;text-align:left}"
    "table.results th{max-width:9em;overflow-wrap:anywhere}"
    "table.run td{vertical-align:top}code.params{display:block;max-width:560px;white-space:normal;"
    "overflow-wrap:anywhere;font-size:12px}"
    "tbody tr:nth-child(even) td:not(.best){background:#fbfcfd}"
    "figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}"
    "figcaption{font-size:13px;color:#59636e;text-align:center}"
    "svg text{font-family:inherit}"
    ".scroll{overflow-x:auto}"
    "footer{margin-top:40px;color:#8c959f;font-size:12px}"
    ".warnings{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:4px 16px;margin:16px 0}"
    ".warnings h2{border:0;margin-top:8px}"
    "div.sample{margin:8px 0 20px}p.prompt{margin:4px 0;white-space:pre-wrap}"
    "table.samples td{vertical-align:top;max-width:760px}";

/* ---- tables ---- */

/* The per-category table with categories down the side and models across: an exam has many more
 * categories than a report has models, and a row per model would scroll sideways. */
static void html_table_categories(const mf_report *r, const mf_report_table *t, mf_buf *b, size_t idx)
{
    mf_buf_printf(b, "<div class=\"scroll\"><table class=\"results categories\" id=\"table-%zu-categories\" data-task=\"", idx);
    esc(b, t->task);
    mf_buf_puts(b, "\">\n<thead><tr><th>Category</th>");
    for (size_t k = 0; k < t->n_rows; k++) {
        char label[512];
        mf_buf_puts(b, "<th>");
        esc(b, mf_report_row_label(r->evals[t->rows[k]], label, sizeof label));
        mf_buf_puts(b, "</th>");
    }
    mf_buf_puts(b, "</tr></thead>\n<tbody>\n");
    for (size_t c = 0; c < t->n_cats; c++) {
        long best = mf_report_best_row(r, t, t->primary, t->cats[c]);
        mf_buf_puts(b, "<tr><td class=\"label\">");
        esc(b, t->cats[c]);
        mf_buf_puts(b, "</td>");
        for (size_t k = 0; k < t->n_rows; k++) {
            char cell[64];
            double v;
            mf_report_cell(mf_report_row_metrics(r, t, k, t->cats[c]), t->primary, cell, sizeof cell, &v);
            mf_buf_printf(b, "<td class=\"num%s\">%s</td>", best == (long)k ? " best" : "", *cell ? cell : "–");
        }
        mf_buf_puts(b, "</tr>\n");
    }
    mf_buf_puts(b, "</tbody></table></div>\n");
}

static void html_table(const mf_report *r, const mf_report_table *t, mf_buf *b, int by_cat, size_t idx)
{
    if (by_cat && t->n_cats > t->n_rows) {
        html_table_categories(r, t, b, idx);
        return;
    }
    size_t ncol = by_cat ? t->n_cats : t->n_metrics;
    mf_buf_printf(b, "<div class=\"scroll\"><table class=\"results\" id=\"table-%zu%s\" data-task=\"", idx,
                  by_cat ? "-categories" : "");
    esc(b, t->task);
    mf_buf_puts(b, "\">\n<thead><tr><th>Model</th>");
    if (!by_cat) mf_buf_puts(b, "<th>n</th>");
    for (size_t c = 0; c < ncol; c++) {
        mf_buf_puts(b, "<th>");
        esc(b, by_cat ? t->cats[c] : mf_report_metric_label(t->metrics[c]));
        mf_buf_puts(b, "</th>");
    }
    mf_buf_puts(b, "</tr></thead>\n<tbody>\n");
    for (size_t k = 0; k < t->n_rows; k++) {
        const mf_json *ev = r->evals[t->rows[k]];
        char label[512], cell[64];
        double v;
        mf_buf_puts(b, "<tr><td class=\"label\">");
        esc(b, mf_report_row_label(ev, label, sizeof label));
        mf_buf_puts(b, "</td>");
        if (!by_cat) mf_buf_printf(b, "<td class=\"num\">%lld</td>", (long long)mf_json_get_int(ev, "n", 0));
        for (size_t c = 0; c < ncol; c++) {
            const char *key = by_cat ? t->primary : t->metrics[c];
            const char *cat = by_cat ? t->cats[c] : NULL;
            mf_report_cell(mf_report_row_metrics(r, t, k, cat), key, cell, sizeof cell, &v);
            long best = mf_report_best_row(r, t, key, cat);
            mf_buf_printf(b, "<td class=\"num%s\">%s</td>", best == (long)k ? " best" : "",
                          *cell ? cell : "–");
        }
        mf_buf_puts(b, "</tr>\n");
    }
    mf_buf_puts(b, "</tbody></table></div>\n");
}

/* ---- loss charts ---- */

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about `want` intervals over range. */
static double nice_step(double range, int want)
{
    if (!(range > 0)) return 1;
    double raw = range / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < step * 1e-9) v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    if (fabs(v) >= 1e6)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f", dec, v);
}

/* One line of a chart: points (x[k], y[k]); non-finite points are skipped. */
typedef struct line {
    const double *x, *y;
    size_t n;
    const char *name; /* legend; NULL for a chart of one line */
    const char *stroke; /* NULL: the palette's colour for its index */
    int faint;          /* drawn thin and pale, without a legend entry (raw points under a smoothed line) */
} line;

static const char *const palette[] = {"#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#0550ae"};

/* A chart of up to 8 lines over the step axis. cls/idx name the SVG; ylabel labels the y axis. */
static void line_chart(mf_buf *b, const char *cls, size_t idx, const char *ylabel, const line *ls, int nl, const char *caption)
{
    const double W = 520, H = 260, L = 60, R = 16, T = 14, B = 40;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t np = 0;
    for (int s = 0; s < nl; s++)
        for (size_t k = 0; k < ls[s].n; k++) {
            if (!isfinite(ls[s].y[k]) || !isfinite(ls[s].x[k])) continue;
            np++;
            x0 = fmin(x0, ls[s].x[k]), x1 = fmax(x1, ls[s].x[k]);
            y0 = fmin(y0, ls[s].y[k]), y1 = fmax(y1, ls[s].y[k]);
        }
    mf_buf_printf(b,
                  "<figure><svg class=\"%s\" id=\"curve-%zu\" xmlns=\"http://www.w3.org/2000/svg\" "
                  "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
                  cls, idx, W, H, W, H);
    mf_buf_printf(
        b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#d0d7de\"/>\n",
        L, T, W - L - R, H - T - B);
    if (!np) {
        mf_buf_printf(b,
                      "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" font-size=\"13\" "
                      "fill=\"#59636e\">no %s values</text>\n",
                      W / 2, H / 2, ylabel);
    } else {
        if (x1 == x0) x0 -= 1, x1 += 1;
        if (y1 == y0) y0 -= 0.5, y1 += 0.5;
        double ys = nice_step(y1 - y0, 4), xs = nice_step(x1 - x0, 5);
        y0 = floor(y0 / ys) * ys, y1 = ceil(y1 / ys) * ys;
        double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v)-x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - ((v)-y0) / (y1 - y0) * ph)
        char buf[64];
        /* Ticks by index (never `v += step`: with a huge offset that could stop advancing). */
        for (int ti = 0; ti <= 50; ti++) {
            double v = y0 + ti * ys;
            if (v > y1 + ys * 1e-6) break;
            fmt_tick(buf, sizeof buf, v, ys);
            mf_buf_printf(b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eaeef2\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" "
                          "fill=\"#59636e\">%s</text>\n",
                          L, PY(v), W - R, PY(v), L - 6, PY(v) + 4, buf);
        }
        for (int ti = 0; ti <= 50; ti++) {
            double v = ceil(x0 / xs) * xs + ti * xs;
            if (v > x1 + xs * 1e-6) break;
            fmt_tick(buf, sizeof buf, v, xs);
            mf_buf_printf(b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#8c959f\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" "
                          "fill=\"#59636e\">%s</text>\n",
                          PX(v), T + ph, PX(v), T + ph + 4, PX(v), T + ph + 17, buf);
        }
        mf_buf_printf(b,
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
                      "fill=\"#1f2328\">step</text>\n",
                      L + pw / 2, H - 6);
        mf_buf_printf(b,
                      "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" fill=\"#1f2328\" "
                      "transform=\"rotate(-90 14 %.1f)\">",
                      T + ph / 2, T + ph / 2);
        esc(b, ylabel);
        mf_buf_puts(b, "</text>\n");
        for (int s = 0; s < nl; s++) {
            size_t ns = 0;
            for (size_t k = 0; k < ls[s].n; k++) ns += isfinite(ls[s].y[k]) && isfinite(ls[s].x[k]);
            if (!ns) continue;
            const char *colour = ls[s].stroke ? ls[s].stroke : palette[s % 8];
            mf_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-linejoin=\"round\"%s points=\"",
                          colour, ls[s].faint ? "1" : "1.8", ls[s].faint ? " stroke-opacity=\"0.3\" class=\"raw\"" : "");
            /* At most ~2000 vertices: every stride-th point, and always the last one. */
            size_t stride = ns > 2000 ? (ns + 1999) / 2000 : 1, seen = 0;
            int first = 1;
            for (size_t k = 0; k < ls[s].n; k++) {
                if (!isfinite(ls[s].y[k]) || !isfinite(ls[s].x[k])) continue;
                if (seen++ % stride && seen != ns) continue;
                mf_buf_printf(b, "%s%.1f,%.1f", first ? "" : " ", PX(ls[s].x[k]), PY(ls[s].y[k]));
                first = 0;
            }
            mf_buf_puts(b, "\"/>\n");
            if (ns == 1) /* a single point (a validation at the end) shows as a dot */
                for (size_t k = 0; k < ls[s].n; k++)
                    if (isfinite(ls[s].y[k]) && isfinite(ls[s].x[k]))
                        mf_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(ls[s].x[k]),
                                      PY(ls[s].y[k]), colour);
            if (ls[s].name && !ls[s].faint) {
                mf_buf_printf(b,
                              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
                              "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#1f2328\">",
                              W - R - 150, T + 12 + 14.0 * s, W - R - 132, T + 12 + 14.0 * s, colour, W - R - 126,
                              T + 16 + 14.0 * s);
                esc(b, ls[s].name);
                mf_buf_puts(b, "</text>\n");
            }
        }
#undef PX
#undef PY
    }
    mf_buf_puts(b, "</svg><figcaption>");
    esc(b, caption);
    mf_buf_puts(b, "</figcaption></figure>\n");
}

/* Exponential moving average of y's finite points into sm (NAN elsewhere), debiased as TensorBoard
 * does (divided by 1 - w^t, so the start is not pulled towards 0): span max(2, n/30) points,
 * w = 1 - 2/(span + 1). Returns the span, or 0 when there are too few points (< 20) to smooth. */
static double smooth_ema(const double *y, size_t n, size_t nfinite, double *sm)
{
    if (nfinite < 20) return 0;
    double span = fmax(2, (double)nfinite / 30), w = 1 - 2 / (span + 1), acc = 0, wt = 1;
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(y[k])) { sm[k] = NAN; continue; }
        acc = w * acc + (1 - w) * y[k];
        wt *= w;
        sm[k] = acc / (1 - wt);
    }
    return span;
}

/* The loss chart of a curve: the training loss (pale raw points under their moving average when
 * there are enough), and the validation loss when there is one. */
static int loss_chart(const mf_report_curve *c, mf_buf *b, size_t idx)
{
    size_t cap = c->n ? c->n : 1;
    double *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y), *sm = malloc(cap * sizeof *sm);
    if (!x || !y || !sm) {
        free(x), free(y), free(sm);
        return MF_ENOMEM;
    }
    size_t np = 0;
    for (size_t k = 0; k < c->n; k++) {
        x[k] = c->pts[k].step, y[k] = c->pts[k].loss;
        np += isfinite(y[k]) && isfinite(x[k]);
    }
    double span = smooth_ema(y, c->n, np, sm);
    const mf_report_series *v = mf_report_curve_val_loss(c);
    line ls[3];
    int nl = 0;
    if (span > 0) {
        ls[nl++] = (line){x, y, c->n, "training (raw)", palette[0], 1};
        ls[nl++] = (line){x, sm, c->n, "training (smoothed)", palette[0], 0};
    } else {
        ls[nl++] = (line){x, y, c->n, v ? "training" : NULL, palette[0], 0};
    }
    if (v) ls[nl++] = (line){v->step, v->value, v->n, "validation", palette[1], 0};
    char caption[600];
    if (span > 0)
        snprintf(caption, sizeof caption, "%s — %zu steps logged; smoothed: moving average over ~%.0f steps",
                 c->label, np, span);
    else
        snprintf(caption, sizeof caption, "%s — %zu steps logged", c->label, np);
    line_chart(b, "loss-curve", idx, "loss", ls, nl, caption);
    free(x);
    free(y);
    free(sm);
    return 0;
}

/* Every other metric of a curve, chart by chart (mf_report_curve_charts). */
static int metric_charts(const mf_report_curve *c, mf_buf *b, size_t *idx)
{
    mf_report_chart *ch = NULL;
    size_t n = 0;
    if (mf_report_curve_charts(c, &ch, &n)) return MF_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        line ls[MF_REPORT_CHART_SERIES];
        for (int s = 0; s < ch[k].n; s++) {
            const mf_report_series *se = &c->series[ch[k].idx[s]];
            ls[s] = (line){se->step, se->value, se->n, ch[k].names[s], NULL, 0};
        }
        if (ch[k].n == 1) ls[0].name = NULL;
        char caption[600];
        snprintf(caption, sizeof caption, "%s — %s", c->label, ch[k].title);
        line_chart(b, "metric-curve", (*idx)++, ch[k].title, ls, ch[k].n, caption);
    }
    free(ch);
    return 0;
}

/* ---- warnings and sample answers ---- */

static void html_warnings(const mf_report *r, mf_buf *b)
{
    size_t n = 0;
    for (size_t k = 0; k < r->n_curves; k++) n += r->curves[k].n_warnings;
    if (!n) return;
    mf_buf_puts(b, "<div class=\"warnings\" id=\"warnings\"><h2>Warnings</h2>\n<ul>\n");
    for (size_t k = 0; k < r->n_curves; k++)
        for (size_t w = 0; w < r->curves[k].n_warnings; w++) {
            mf_buf_puts(b, "<li><b>");
            esc(b, r->curves[k].label);
            mf_buf_puts(b, "</b> ");
            esc(b, r->curves[k].warnings[w]);
            mf_buf_puts(b, "</li>\n");
        }
    mf_buf_puts(b, "</ul></div>\n");
}

static void html_samples(const mf_report *r, const mf_report_table *t, size_t nt, mf_buf *b)
{
    int any = 0;
    for (size_t k = 0; k < nt; k++) any |= mf_report_has_samples(r, &t[k]);
    if (!any) return;
    mf_buf_puts(b, "<h2>Sample answers</h2>\n<p class=\"note\">The first items of each eval set, every model's answer "
                   "side by side.</p>\n");
    for (size_t k = 0; k < nt; k++) {
        if (!mf_report_has_samples(r, &t[k])) continue;
        char h[512], clip[2048];
        mf_buf_puts(b, "<section>\n<h3>");
        esc(b, mf_report_table_heading(&t[k], h, sizeof h));
        mf_buf_puts(b, "</h3>\n");
        for (size_t i = 0; i < MF_REPORT_SAMPLES; i++) {
            const mf_json *s0 = mf_report_sample_item(r, &t[k], i);
            if (!s0) break;
            mf_buf_printf(b, "<div class=\"sample\"><p class=\"prompt\"><b>%zu.</b> ", i + 1);
            esc(b, mf_report_clip(mf_json_get_str(s0, "input", ""), 300, clip, sizeof clip));
            mf_buf_puts(b, "</p><p class=\"note\">Reference: ");
            esc(b, mf_report_clip(mf_json_get_str(s0, "reference", ""), 300, clip, sizeof clip));
            mf_buf_puts(b, "</p>\n<table class=\"samples\"><thead><tr><th>Model</th><th>Answer</th></tr></thead><tbody>\n");
            for (size_t j = 0; j < t[k].n_rows; j++) {
                const mf_json *s = mf_report_sample(r, &t[k], i, j);
                char label[512];
                mf_buf_puts(b, "<tr><td class=\"label\">");
                esc(b, mf_report_row_label(r->evals[t[k].rows[j]], label, sizeof label));
                mf_buf_puts(b, "</td><td>");
                esc(b, s ? mf_report_clip(mf_json_get_str(s, "output", ""), 300, clip, sizeof clip) : "–");
                mf_buf_puts(b, "</td></tr>\n");
            }
            mf_buf_puts(b, "</tbody></table></div>\n");
        }
        mf_buf_puts(b, "</section>\n");
    }
}

/* ---- DAG ---- */

static size_t node_index(const mf_json *nodes, const char *id)
{
    for (size_t k = 0; k < nodes->n; k++)
        if (!strcmp(mf_json_get_str(nodes->items[k], "id", ""), id)) return k;
    return (size_t)-1;
}

/* Display width of a UTF-8 string in "average characters" (wide characters count 2). */
static double text_units(const char *s)
{
    double u = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80)
            u += 1;
        else if (*p >= 0xE0)
            u += 2; /* lead byte of a 3/4-byte sequence: CJK and wider */
        else if (*p >= 0xC0)
            u += 1;
    }
    return u;
}

static const char *kind_colour(const char *kind)
{
    static const struct {
        const char *k, *c;
    } colours[] = {{"dcpt", "#ddf4ff"},   {"sft", "#ddf4ff"},    {"rm", "#ddf4ff"},    {"dpo", "#ddf4ff"},
                   {"ppo", "#ddf4ff"},    {"init", "#ddf4ff"},   {"merge", "#ddf4ff"}, {"eval", "#dafbe1"},
                   {"report", "#fbefff"}, {"source", "#f6f8fa"}, {NULL, NULL}};
    for (int k = 0; colours[k].k; k++)
        if (!strcmp(kind, colours[k].k)) return colours[k].c;
    return "#fff8c5"; /* data stages */
}

static int dag_svg(const mf_json *dag, mf_buf *b)
{
    const mf_json *nodes = mf_json_get(dag, "nodes"), *edges = mf_json_get(dag, "edges");
    size_t n = nodes->n, ne = edges ? edges->n : 0;
    if (!n) {
        mf_buf_puts(b, "<p class=\"note\">The pipeline has no stages.</p>\n");
        return 0;
    }
    size_t *col = calloc(n, sizeof *col), *row = calloc(n, sizeof *row), *from = calloc(ne + 1, sizeof *from),
           *to = calloc(ne + 1, sizeof *to), *count = calloc(n + 1, sizeof *count);
    if (!col || !row || !from || !to || !count) {
        free(col), free(row), free(from), free(to), free(count);
        return MF_ENOMEM;
    }
    for (size_t e = 0; e < ne; e++) {
        from[e] = node_index(nodes, mf_json_get_str(edges->items[e], "from", ""));
        to[e] = node_index(nodes, mf_json_get_str(edges->items[e], "to", ""));
    }
    /* Longest path by relaxation; at most n rounds (a cycle stops growing there). */
    for (size_t round = 0; round < n; round++) {
        int changed = 0;
        for (size_t e = 0; e < ne; e++)
            if (col[to[e]] < col[from[e]] + 1 && col[from[e]] + 1 < n)
                col[to[e]] = col[from[e]] + 1, changed = 1;
        if (!changed) break;
    }
    size_t ncols = 0, nrows = 0;
    for (size_t k = 0; k < n; k++) {
        if (col[k] + 1 > ncols) ncols = col[k] + 1;
        if (++count[col[k]] > nrows) nrows = count[col[k]];
    }
    /* Rows: column 0 in list order; each later column sorted by the mean row of its
     * producers (barycenter heuristic, one left-to-right pass), ties by list order. */
    double *key = calloc(n, sizeof *key);
    size_t *order = calloc(n, sizeof *order);
    if (!key || !order) {
        free(key), free(order), free(col), free(row), free(from), free(to), free(count);
        return MF_ENOMEM;
    }
    for (size_t c = 0; c < ncols; c++) {
        size_t m_ = 0;
        for (size_t k = 0; k < n; k++) {
            if (col[k] != c) continue;
            double sum = 0;
            size_t np = 0;
            for (size_t e = 0; e < ne; e++)
                if (to[e] == k && col[from[e]] < c) sum += (double)row[from[e]], np++;
            key[k] = c && np ? sum / (double)np : (double)m_;
            size_t j = m_++;
            while (j > 0 && key[order[j - 1]] > key[k])
                order[j] = order[j - 1], j--;
            order[j] = k;
        }
        for (size_t j = 0; j < m_; j++)
            row[order[j]] = j;
    }
    free(key);
    free(order);
    double units = 8;
    for (size_t k = 0; k < n; k++) {
        units = fmax(units, text_units(mf_json_get_str(nodes->items[k], "id", "")) * 1.1);
        units = fmax(units, text_units(mf_json_get_str(nodes->items[k], "kind", "")));
    }
    const double bw = units * 7.2 + 24, bh = 42, hg = 56, vg = 18, m = 12;
    double W = m * 2 + ncols * bw + (ncols - 1) * hg, H = m * 2 + nrows * bh + (nrows - 1) * vg;
    mf_buf_printf(b,
                  "<div class=\"scroll\"><svg class=\"dag\" id=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" "
                  "width=\"%.0f\" "
                  "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
                  W, H, W, H);
    mf_buf_puts(
        b,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
        "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#57606a\"/>"
        "</marker></defs>\n");
#define NX(k) (m + (double)col[k] * (bw + hg))
#define NY(k) (m + (double)row[k] * (bh + vg))
    for (size_t e = 0; e < ne; e++) {
        double xa = NX(from[e]) + bw, ya = NY(from[e]) + bh / 2, xb = NX(to[e]), yb = NY(to[e]) + bh / 2;
        double mx = (xa + xb) / 2;
        if (xb <= xa) { /* same column or backwards (only with a cycle): loop around */
            mx = xa + hg / 2;
        }
        mf_buf_printf(b,
                      "<path class=\"edge\" d=\"M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"none\" "
                      "stroke=\"#57606a\" stroke-width=\"1.4\" marker-end=\"url(#arrow)\"/>\n",
                      xa, ya, mx, ya, xb > xa ? mx : xb - hg / 2, yb, xb, yb);
    }
    for (size_t k = 0; k < n; k++) {
        const char *id = mf_json_get_str(nodes->items[k], "id", ""),
                   *kind = mf_json_get_str(nodes->items[k], "kind", "");
        mf_buf_printf(b,
                      "<g class=\"node\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"6\" "
                      "fill=\"%s\" stroke=\"#57606a\"/>",
                      NX(k), NY(k), bw, bh, kind_colour(kind));
        mf_buf_printf(b,
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                      "font-weight=\"600\" fill=\"#1f2328\">",
                      NX(k) + bw / 2, NY(k) + 18);
        esc(b, id);
        mf_buf_printf(
            b, "</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" fill=\"#59636e\">",
            NX(k) + bw / 2, NY(k) + 33);
        esc(b, kind);
        mf_buf_puts(b, "</text></g>\n");
    }
#undef NX
#undef NY
    mf_buf_puts(b, "</svg></div>\n");
    free(col), free(row), free(from), free(to), free(count);
    return 0;
}

int mf_report_dag_html(const mf_json *dag, mf_buf *b, mf_err *err)
{
    mf_report *r = NULL;
    int rc = mf_report_new(&r, "", err); /* mf_report_set_dag checks the DAG's form */
    if (!rc && !(rc = mf_report_set_dag(r, dag, "dag.json", err))) {
        mf_buf_puts(b, "<h2>Pipeline</h2>\n");
        if (dag_svg(r->dag, b) || !mf_buf_ok(b)) rc = mf_err_set(err, MF_ENOMEM, "out of memory rendering the DAG");
    }
    mf_report_free(r);
    return rc;
}

int mf_report_html(const mf_report *r, mf_buf *b, mf_err *err)
{
    mf_report_table *t;
    size_t nt;
    int rc = mf_report_tables(r, &t, &nt, err);
    if (rc) return rc;
    mf_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    esc(b, r->title);
    mf_buf_printf(b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", css);
    esc(b, r->title);
    mf_buf_puts(b, "</h1>\n");
    html_warnings(r, b);
    mf_buf_puts(b, "<h2>Results</h2>\n");
    if (!nt)
        mf_buf_puts(b, "<p class=\"note\">No eval results.</p>\n");
    else
        mf_buf_puts(b, "<p class=\"note\">All scores in %; accuracy, win, tie and lose are shares of items. "
                       "Best of each column highlighted.</p>\n");
    for (size_t k = 0; k < nt; k++) {
        char h[512];
        mf_buf_puts(b, "<section>\n<h3>");
        esc(b, mf_report_table_heading(&t[k], h, sizeof h));
        mf_buf_puts(b, "</h3>\n");
        html_table(r, &t[k], b, 0, k);
        if (t[k].n_cats) {
            mf_buf_printf(b, "<p class=\"note\">%s by category:</p>\n", mf_report_metric_label(t[k].primary));
            html_table(r, &t[k], b, 1, k);
        }
        mf_buf_puts(b, "</section>\n");
    }
    html_samples(r, t, nt, b);
    if (r->n_curves) {
        mf_buf_puts(b, "<h2>Training</h2>\n<div class=\"curves\">\n");
        size_t idx = r->n_curves; /* metric charts are numbered after the loss charts */
        for (size_t k = 0; k < r->n_curves; k++)
            if (loss_chart(&r->curves[k], b, k) || metric_charts(&r->curves[k], b, &idx)) b->oom = 1;
        mf_buf_puts(b, "</div>\n");
    }
    if (r->dag) {
        mf_buf_puts(b, "<h2>Pipeline</h2>\n");
        if (dag_svg(r->dag, b)) b->oom = 1;
    }
    mf_buf_puts(b, "<footer>Generated by medflow.</footer>\n</body>\n</html>\n");
    mf_report_tables_free(t, nt);
    if (!mf_buf_ok(b)) return mf_err_set(err, MF_ENOMEM, "out of memory rendering the report");
    return 0;
}
