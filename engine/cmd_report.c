/*
 * engine/cmd_report.c — `medflow report GRAPH|RUN [-o DIR]`, and the results
 * table `medflow run` prints at its end.
 *
 * The report is the output of a graph's `report` stage (stages/eval/report.c):
 * the newest run of the graph whose report stage succeeded is found in the
 * ledger, its artifact is materialised (verified) from the store, and
 * report.md is printed; -o copies report.md and report.html to DIR.
 */
#include "engine/cli.h"
#include "engine/graph.h"
#include "engine/report_cli.h"
#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/fsutil.h"

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

/* -o DIR: report.md and report.html copied there. */
static int copy_report(const char *out_dir, const char *md, const char *html, mf_err *err)
{
    char *to_md = mf_path_join(out_dir, "report.md"), *to_html = mf_path_join(out_dir, "report.html");
    int rc;
    if (!to_md || !to_html) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(out_dir, 0755, err))) goto out;
    if ((rc = mf_copy_file(md, to_md, err))) goto out;
    rc = mf_copy_file(html, to_html, err);
out:
    free(to_md);
    free(to_html);
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
    if (out_dir && (rc = copy_report(out_dir, md, html, err))) goto out;
    rc = print_report(out, md, html, stage, run, out_dir, err);
out:
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
