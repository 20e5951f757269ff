/*
 * engine/cmd_report.c — `medflow report GRAPH|RUN [-o DIR]`, and the results
 * table `medflow run` prints at its end.
 *
 * The report is the output of a graph's `report` stage (stages/eval/report.c):
 * the newest run of the graph whose report stage succeeded is found in the
 * ledger, its artifact is materialised (verified) from the store, and
 * report.md is printed. The artifact is the same for every run that reuses it
 * (it is cached), so what belongs to one run is added here, from the ledger:
 * the run id, every stage's status, output digest and params, and the stage
 * DAG (dag.json, drawn into report.html when the artifact has none). The
 * result goes to -o DIR, else to <store>/reports/<graph>/.
 */
#include "engine/cli.h"
#include "engine/graph.h"
#include "engine/report_cli.h"
#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/fsutil.h"
#include "stages/eval/report.h"

#include <stdlib.h>
#include <string.h>

/* Newest run of `graph` (branch name) with a successful report stage: its output digest. */
static int find_report(mf_ledger *l, const char *graph, char *digest, size_t n, char *stage_out, size_t sn,
                       char *run_out, size_t rn, mf_err *err)
{
    mf_ledger_run **runs = NULL;
    size_t nruns = 0;
    char branch[256];
    mf_ledger_branch_name(graph, branch, sizeof branch);
    int rc = mf_ledger_list(l, branch, &runs, &nruns, err);
    if (rc) return rc;
    for (size_t r = 0; r < nruns; r++) {
        const mf_json *st = runs[r]->stages;
        for (size_t k = 0; st && k < st->n; k++) {
            const mf_json *m = st->items[k];
            if (strcmp(mf_json_get_str(m, "kind", ""), "report")) continue;
            const char *status = mf_json_get_str(m, "status", "");
            const char *d = mf_ledger_digest_of(mf_json_get(m, "output"));
            if (!d || (strcmp(status, "success") && strcmp(status, "cached"))) continue;
            snprintf(digest, n, "%s", d);
            snprintf(stage_out, sn, "%s", st->keys[k]);
            snprintf(run_out, rn, "%s@%d", runs[r]->graph, runs[r]->number);
            goto out;
        }
    }
    rc = mf_err_set(err, MF_ENOTFOUND, "no successful report stage recorded for graph '%s'", graph);
out:
    mf_ledger_list_free(runs, nruns);
    return rc;
}

static void html_esc(mf_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') mf_buf_puts(b, "&lt;");
        else if (*s == '>') mf_buf_puts(b, "&gt;");
        else if (*s == '&') mf_buf_puts(b, "&amp;");
        else if (*s == '"') mf_buf_puts(b, "&quot;");
        else mf_buf_putc(b, *s);
    }
}

/* The run's stages, for the markdown (md 1) or the HTML (md 0): status, output digest, params. */
static void run_section(mf_buf *b, const mf_ledger_run *run, int md)
{
    const char *id = mf_json_get_str(run->run, "run", "?");
    if (md) {
        mf_buf_printf(b, "\n## Run\n\nrun `%s` (%s@%d, ledger commit %.12s)\n\n", id, run->graph, run->number, run->id);
        mf_buf_puts(b, "| stage | kind | status | output |\n|:---|:---|:---|:---|\n");
    } else {
        mf_buf_puts(b, "<h2>Run</h2>\n<p class=\"note\">run <code>");
        html_esc(b, id);
        mf_buf_printf(b, "</code> (%s@%d, ledger commit <code>%.12s</code>); params as the stage key hashed them.</p>\n",
                      run->graph, run->number, run->id);
        mf_buf_puts(b, "<table class=\"run\"><thead><tr><th>stage</th><th>kind</th><th>status</th><th>output</th>"
                       "<th>params</th></tr></thead><tbody>\n");
    }
    for (size_t k = 0; run->stages && k < run->stages->n; k++) {
        const mf_json *m = run->stages->items[k];
        const char *d = mf_ledger_digest_of(mf_json_get(m, "output"));
        const char *kind = mf_json_get_str(m, "kind", "?"), *status = mf_json_get_str(m, "status", "?");
        if (md) {
            mf_buf_printf(b, "| %s | %s | %s | `%s` |\n", run->stages->keys[k], kind, status, d ? d : "-");
            continue;
        }
        mf_buf_puts(b, "<tr><td class=\"label\">");
        html_esc(b, run->stages->keys[k]);
        mf_buf_printf(b, "</td><td>%s</td><td>%s</td><td><code title=\"%s\">%.19s</code></td><td>", kind, status,
                      d ? d : "", d ? d : "-");
        const mf_json *p = mf_json_get(m, "params");
        mf_buf pj = MF_BUF_INIT;
        if (p) mf_json_write(&pj, p, MF_JSON_SORTED);
        mf_buf_printf(b, "<details><summary>%zu params</summary><code class=\"params\">", p ? p->n : 0);
        html_esc(b, mf_buf_cstr(&pj));
        mf_buf_puts(b, "</code></details></td></tr>\n");
        mf_buf_free(&pj);
    }
    if (!md) mf_buf_puts(b, "</tbody></table>\n");
}

/* The run's DAG (from the graph the ledger recorded), or NULL. */
static mf_json *run_dag(const mf_ledger_run *run)
{
    mf_graph *g = NULL;
    mf_err e;
    if (!run->graph_text || mf_graph_load_mem(&g, run->graph_text, strlen(run->graph_text), "graph.yaml", ".", &e)) return NULL;
    mf_json *dag = mf_graph_dag_json(g);
    mf_graph_free(g);
    return dag;
}

/* dir/report.md, dir/report.html and dir/dag.json: the artifact's report with the run's section
 * (and the DAG, when the artifact drew none) added before the HTML footer. */
static int write_report(const char *dir, const char *md, const char *html, const mf_ledger_run *run, mf_err *err)
{
    char *mdt = NULL, *ht = NULL;
    size_t mdn = 0, hn = 0;
    mf_json *dag = run_dag(run);
    mf_buf om = MF_BUF_INIT, oh = MF_BUF_INIT;
    char *to_md = mf_path_join(dir, "report.md"), *to_html = mf_path_join(dir, "report.html");
    int rc;
    if (!to_md || !to_html) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(dir, 0755, err)) || (rc = mf_read_file(md, &mdt, &mdn, err)) ||
        (rc = mf_read_file(html, &ht, &hn, err)))
        goto out;
    mf_buf_append(&om, mdt, mdn);
    run_section(&om, run, 1);
    const char *foot = strstr(ht, "<footer>");
    size_t cut = foot ? (size_t)(foot - ht) : hn;
    mf_buf_append(&oh, ht, cut);
    run_section(&oh, run, 0);
    if (dag && !strstr(ht, "<h2>Pipeline</h2>") && (rc = mf_report_dag_html(dag, &oh, err))) goto out;
    mf_buf_append(&oh, ht + cut, hn - cut);
    if (!mf_buf_ok(&om) || !mf_buf_ok(&oh)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_write_file_atomic(to_md, om.data, om.len, 0644, err)) ||
        (rc = mf_write_file_atomic(to_html, oh.data, oh.len, 0644, err)))
        goto out;
    if (dag) rc = mf_json_save(dir, "dag.json", dag, err);
out:
    free(to_md);
    free(to_html);
    free(mdt);
    free(ht);
    mf_buf_free(&om);
    mf_buf_free(&oh);
    mf_json_free(dag);
    return rc;
}

static int print_report(FILE *out, const char *md, const char *html, const char *stage, const char *run,
                        const char *out_dir, mf_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = mf_read_file(md, &text, &len, err);
    if (rc) return rc;
    fprintf(out, "\nresults (stage '%s' of %s):\n\n%s", stage, run, text);
    if (len && text[len - 1] != '\n') fputc('\n', out);
    fprintf(out, "\nfull report: %s\n", out_dir ? out_dir : html);
    free(text);
    return 0;
}

int mf_cmd_report_show(const char *store_dir, const char *graph, const char *out_dir, FILE *out, mf_err *err)
{
    mf_ledger *l = NULL;
    mf_store *s = NULL;
    char digest[128], stage[256], run[300];
    char *ledger_dir = mf_path_join(store_dir, "ledger.git"), *path = NULL, *md = NULL, *html = NULL;
    mf_digest d;
    mf_ledger_run *lr = NULL;
    int rc;
    if (!ledger_dir || !mf_is_dir(ledger_dir)) {
        rc = mf_err_set(err, MF_ENOTFOUND, "no ledger in %s", store_dir);
        goto out;
    }
    if ((rc = mf_ledger_open(&l, store_dir, err))) goto out;
    if ((rc = find_report(l, graph, digest, sizeof digest, stage, sizeof stage, run, sizeof run, err))) goto out;
    if ((rc = mf_store_open(&s, store_dir, err))) goto out;
    if ((rc = mf_digest_parse(&d, digest, err))) goto out;
    if ((rc = mf_store_materialize(s, &d, &path, err))) goto out;
    md = mf_path_join(path, "report.md");
    html = mf_path_join(path, "report.html");
    if (!md || !html) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    char *dir = out_dir ? strdup(out_dir) : NULL;
    if (!dir) { /* <store>/reports/<graph>: the run's report, beside the store that holds it */
        char sub[300];
        snprintf(sub, sizeof sub, "reports/%s", graph);
        dir = mf_path_join(store_dir, sub);
    }
    if (!dir) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (!(rc = mf_ledger_load(l, run, &lr, err)) && !(rc = write_report(dir, md, html, lr, err))) {
        free(md);
        free(html);
        md = mf_path_join(dir, "report.md");
        html = mf_path_join(dir, "report.html");
        rc = md && html ? print_report(out, md, html, stage, run, out_dir, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    free(dir);
out:
    mf_ledger_run_free(lr);
    free(ledger_dir);
    free(md);
    free(html);
    free(path);
    mf_store_free(s);
    mf_ledger_free(l);
    return rc;
}

int mf_cmd_report(int argc, char **argv)
{
    const char *what = NULL, *out_dir = NULL, *store = mf_cli.store;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "-o") && k + 1 < argc) out_dir = argv[++k];
        else if (!strcmp(argv[k], "--store") && k + 1 < argc) store = argv[++k];
        else if (argv[k][0] == '-') return mf_cli_usage_error("report", "unknown option '%s'", argv[k]);
        else if (!what) what = argv[k];
        else return mf_cli_usage_error("report", "one GRAPH or RUN at a time");
    }
    if (!what) return mf_cli_usage_error("report", "missing GRAPH or RUN");
    mf_err err;
    mf_err_clear(&err);
    char graph[256];
    char *store_owned = NULL;
    if (mf_is_file(what)) { /* a graph file: its name, and its store: */
        mf_graph *g = NULL;
        if (mf_graph_load(&g, what, &err)) return mf_cli_report(&err);
        snprintf(graph, sizeof graph, "%s", g->name);
        if (!store && g->store) store = store_owned = strdup(g->store);
        mf_graph_free(g);
    } else { /* a run spec: GRAPH, GRAPH@N or a commit prefix names the graph */
        snprintf(graph, sizeof graph, "%s", what);
        char *at = strchr(graph, '@');
        if (at) *at = 0;
    }
    const char *dir = store && *store ? store : "./.medflow";
    int rc = mf_cmd_report_show(dir, graph, out_dir, stdout, &err);
    if (rc) rc = mf_cli_report_store(&err, dir);
    free(store_owned);
    return rc;
}
