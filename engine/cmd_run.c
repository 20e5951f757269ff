/*
 * engine/cmd_run.c — `medflow run` and `medflow status` (stage-exec is in stage_exec.c).
 *
 * Both load the graph, open the store (no lock, no ledger) and plan. status
 * prints the decisions; run stops there when everything is cached (the no-op
 * path: one stat per source file, one action-cache read per stage), else
 * takes the store lock and hands the plan to the builder (engine/run.c).
 */
#include "engine/cli.h"
#include "engine/report_cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/estore.h"
#include "engine/plan.h"
#include "engine/run.h"
#include "kernels/backend_select.h"

typedef struct args {
    const char *graph, *store, *gpus, *backend;
    char **targets, **force;
    size_t n_targets, n_force;
    int json, dry_run, keep_going, jobs, quiet, verbose, rehash;
} args;

static int parse(const char *cmd, int argc, char **argv, args *a, int is_run)
{
    memset(a, 0, sizeof *a);
    a->targets = calloc((size_t)argc, sizeof *a->targets);
    a->force = calloc((size_t)argc, sizeof *a->force);
    if (!a->targets || !a->force) return mf_cli_usage_error(cmd, "out of memory");
    a->store = mf_cli.store;
    a->quiet = mf_cli.quiet;
    a->verbose = mf_cli.verbose;
    int in_force = 0;
    for (int k = 1; k < argc; k++) {
        const char *s = argv[k];
        if (s[0] != '-') {
            if (!a->graph) a->graph = s;
            else if (in_force) a->force[a->n_force++] = argv[k];
            else a->targets[a->n_targets++] = argv[k];
            continue;
        }
        in_force = 0;
        if (!strcmp(s, "--store") && k + 1 < argc) a->store = argv[++k];
        else if (!strncmp(s, "--store=", 8)) a->store = s + 8;
        else if (!strcmp(s, "-q") || !strcmp(s, "--quiet")) a->quiet = 1;
        else if (!strcmp(s, "-v") || !strcmp(s, "--verbose")) a->verbose = 1;
        else if (!strcmp(s, "--rehash")) a->rehash = 1;
        else if (!is_run && !strcmp(s, "--json")) a->json = 1;
        else if (is_run && !strcmp(s, "--force")) in_force = 1;
        else if (is_run && !strncmp(s, "--force=", 8)) a->force[a->n_force++] = argv[k] + 8;
        else if (is_run && !strcmp(s, "--dry-run")) a->dry_run = 1;
        else if (is_run && (!strcmp(s, "--keep-going") || !strcmp(s, "-k"))) a->keep_going = 1;
        else if (is_run && (!strcmp(s, "-j") || !strcmp(s, "--jobs")) && k + 1 < argc) {
            char *end;
            long v = strtol(argv[++k], &end, 10);
            if (*end || v < 1 || v > 4096) return mf_cli_usage_error(cmd, "-j expects a number of stages >= 1, not '%s'", argv[k]);
            a->jobs = (int)v;
        } else if (is_run && !strcmp(s, "--gpus") && k + 1 < argc) a->gpus = argv[++k];
        else if (is_run && !strncmp(s, "--gpus=", 7)) a->gpus = s + 7;
        else if (is_run && !strcmp(s, "--backend") && k + 1 < argc) a->backend = argv[++k];
        else if (is_run && !strncmp(s, "--backend=", 10)) a->backend = s + 10;
        else return mf_cli_usage_error(cmd, "unknown option '%s'", s);
    }
    if (!a->graph) return mf_cli_usage_error(cmd, "missing GRAPH");
    if (is_run && in_force && !a->n_force) return mf_cli_usage_error(cmd, "--force needs at least one STAGE");
    if (is_run) { /* --backend, else MEDFLOW_BACKEND, else auto: checked now, passed to every stage */
        mf_k_backend_choice c;
        const char *origin = "--backend";
        mf_err e;
        if (a->backend ? mf_k_backend_parse(&c, a->backend, "--backend", &e) : mf_k_backend_get_default(&c, &origin, &e))
            return mf_cli_usage_error(cmd, "%s", e.msg);
        if (!a->backend && strcmp(origin, "auto")) a->backend = mf_k_backend_choice_name(c);
        char why[512];
        if (c == MF_BACKEND_CUDA && !mf_k_cuda_usable(NULL, 0, why, sizeof why))
            return mf_cli_usage_error(cmd, "backend cuda (from %s): %s", origin, why);
    }
    return 0;
}

static void free_args(args *a)
{
    free(a->targets);
    free(a->force);
}

static void print_warnings(const mf_estore *st)
{
    for (const char *w = mf_estore_warnings(st); *w;) {
        size_t n = strcspn(w, "\n");
        fprintf(stderr, "medflow: warning: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
}

/* Load + open + plan: shared by run and status. */
static int prepare(const args *a, mf_graph **g, mf_estore **st, mf_run_io *io, mf_plan **p, mf_err *err)
{
    int rc = mf_graph_load(g, a->graph, err);
    if (rc) return rc;
    char *root = mf_estore_root(a->store, *g);
    if (!root) return mf_err_set(err, MF_ENOMEM, "out of memory");
    rc = mf_estore_open(st, root, a->rehash, err);
    free(root);
    if (rc) return rc;
    mf_estore_io(*st, io);
    char *state = mf_estore_state_path(*st, (*g)->name);
    if (!state) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_plan_opts po = {a->targets, a->n_targets, a->force, a->n_force, state};
    rc = mf_plan_new(p, *g, &io->plan, &po, err);
    free(state);
    print_warnings(*st);
    return rc;
}

int mf_cmd_status(int argc, char **argv)
{
    args a;
    int code = parse("status", argc, argv, &a, 0);
    if (code) { free_args(&a); return code; }
    mf_err err;
    mf_err_clear(&err);
    mf_graph *g = NULL;
    mf_estore *st = NULL;
    mf_plan *p = NULL;
    mf_run_io io;
    int rc = prepare(&a, &g, &st, &io, &p, &err);
    if (rc) code = mf_cli_report(&err);
    else {
        mf_buf out = MF_BUF_INIT;
        if (mf_plan_write_status(p, &out, a.json)) code = MF_EXIT_FAILED;
        else fputs(mf_buf_cstr(&out), stdout);
        if (!a.json && !a.quiet) {
            size_t cached = mf_plan_count(p, MF_PS_CACHED), stale = mf_plan_count(p, MF_PS_STALE),
                   waiting = mf_plan_count(p, MF_PS_WAITING);
            printf("%zu cached, %zu stale, %zu waiting on stale upstreams\n", cached, stale, waiting);
        }
        mf_buf_free(&out);
    }
    mf_plan_free(p);
    mf_estore_close(st);
    mf_graph_free(g);
    free_args(&a);
    return code;
}

/* After a successful run of a graph with a report stage that was part of the
 * run: its tables (medflow report prints the same on demand). */
static void print_results(const args *a, const mf_graph *g, const mf_plan *p)
{
    int has_report = 0;
    for (size_t k = 0; k < g->n_stages; k++)
        if (!strcmp(g->stages[k].kind->name, "report") && p->st[k].needed) has_report = 1;
    if (!has_report) return;
    char *root = mf_estore_root(a->store, g);
    mf_err err;
    mf_err_clear(&err);
    fflush(stdout);
    if (root && mf_cmd_report_show(root, g->name, NULL, stdout, &err))
        fprintf(stderr, "medflow: could not show the report: %s\n", err.msg);
    free(root);
}

int mf_cmd_run(int argc, char **argv)
{
    args a;
    int code = parse("run", argc, argv, &a, 1);
    if (code) { free_args(&a); return code; }
    mf_err err;
    mf_err_clear(&err);
    mf_graph *g = NULL;
    mf_estore *st = NULL;
    mf_plan *p = NULL;
    mf_run_io io;
    int rc = prepare(&a, &g, &st, &io, &p, &err);
    if (rc) { code = mf_cli_report(&err); goto out; }
    size_t stale = mf_plan_count(p, MF_PS_STALE), waiting = mf_plan_count(p, MF_PS_WAITING),
           cached = mf_plan_count(p, MF_PS_CACHED);
    if (!stale) { /* the no-op path: no lock, no ledger, no writes */
        if (!a.quiet) printf("%zu stage%s cached; nothing to do\n", cached, cached == 1 ? "" : "s");
        goto out;
    }
    if (a.dry_run) {
        for (size_t k = 0; k < g->n_stages; k++) {
            size_t i = g->topo[k];
            const mf_plan_stage *s = &p->st[i];
            if (!s->needed || (s->state != MF_PS_STALE && s->state != MF_PS_WAITING)) continue;
            printf("%s %s", s->state == MF_PS_STALE ? "would run:" : "would run if its inputs change:", g->stages[i].name);
            for (size_t r = 0; r < s->n_reasons; r++) printf("%s%s", r ? "; " : " (", s->reasons[r]);
            printf("%s\n", s->n_reasons ? ")" : "");
        }
        printf("%zu to run, %zu waiting on them, %zu cached (dry run: nothing was started)\n", stale, waiting, cached);
        goto out;
    }
    if ((rc = mf_estore_lock(st, &err))) { code = mf_cli_report(&err); goto out; }
    if (!a.quiet)
        printf("%zu to run, %zu waiting on them, %zu cached\n", stale, waiting, cached);
    mf_run_opts ro = {a.jobs, a.gpus, a.keep_going, getenv("MEDFLOW_STAGE_EXE"), 0, stdout,
                      isatty(1), a.quiet, a.verbose, a.backend ? a.backend : "auto"};
    const char *grace = getenv("MEDFLOW_KILL_GRACE");
    ro.grace_s = grace ? atof(grace) : 10.0;
    mf_run_result res;
    rc = mf_run_execute(p, &io, &ro, &res, &err);
    if (rc) { code = mf_cli_report(&err); goto out; }
    if (res.outcome == MF_EINTERRUPTED) {
        fprintf(stderr, "medflow: run %s interrupted; nothing partial was published (rerun to continue)\n", res.run_id);
        code = MF_EXIT_INTERRUPTED;
    } else if (res.outcome) {
        fprintf(stderr, "medflow: run %s failed: %zu stage%s failed, %zu ran, %zu blocked\n", res.run_id, res.n_failed,
                res.n_failed == 1 ? "" : "s", res.n_ran, res.n_blocked);
        code = MF_EXIT_FAILED;
    } else if (!a.quiet) {
        printf("run %s: %zu ran, %zu cached, %zu cut off (inputs unchanged)\n", res.run_id, res.n_ran, res.n_cached,
               res.n_cutoff);
    }
    if (res.ledger_ref[0] && !a.quiet) printf("recorded in the ledger as %s\n", res.ledger_ref);
    int show = !res.outcome && !a.quiet;
    mf_estore_close(st); /* releases the store lock: printing the report materialises from the store */
    st = NULL;
    if (show) print_results(&a, g, p);
out:
    mf_plan_free(p);
    mf_estore_close(st);
    mf_graph_free(g);
    free_args(&a);
    return code;
}
