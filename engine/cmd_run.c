/*
 * engine/cmd_run.c — `medflow run` and `medflow status` (stage-exec is in stage_exec.c).
 *
 * Both load the graph, open the store (no ledger) and plan. status prints
 * the decisions (no lock); run takes the store lock shared first (engines
 * share a store; only gc is kept out), stops when everything is cached (the
 * no-op path: one stat per source file, one action-cache read per stage),
 * else hands the plan to the builder (engine/run.c), which takes a build
 * lock per stage key.
 */
#include "engine/cli.h"
#include "engine/report_cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "engine/estore.h"
#include "engine/noop.h"
#include "engine/plan.h"
#include "engine/run.h"
#include "kernels/backend_select.h"

typedef struct args {
    const char *graph, *store, *gpus, *backend, *executor, *partition, *account;
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
        else if (is_run && !strcmp(s, "--executor") && k + 1 < argc) a->executor = argv[++k];
        else if (is_run && !strncmp(s, "--executor=", 11)) a->executor = s + 11;
        else if (is_run && !strcmp(s, "--partition") && k + 1 < argc) a->partition = argv[++k];
        else if (is_run && !strncmp(s, "--partition=", 12)) a->partition = s + 12;
        else if (is_run && !strcmp(s, "--account") && k + 1 < argc) a->account = argv[++k];
        else if (is_run && !strncmp(s, "--account=", 10)) a->account = s + 10;
        else if (is_run && !strcmp(s, "--backend") && k + 1 < argc) a->backend = argv[++k];
        else if (is_run && !strncmp(s, "--backend=", 10)) a->backend = s + 10;
        else return mf_cli_usage_error(cmd, "unknown option '%s'", s);
    }
    if (!a->graph) return mf_cli_usage_error(cmd, "missing GRAPH");
    if (is_run && !a->executor) { /* --executor, else MEDFLOW_EXECUTOR, else the graph's executor: (in mf_cmd_run) */
        const char *env = getenv("MEDFLOW_EXECUTOR");
        if (env && *env) a->executor = env;
    }
    if (a->executor && strcmp(a->executor, "local") && strcmp(a->executor, "slurm"))
        return mf_cli_usage_error(cmd, "--executor expects local or slurm, not '%s'%s", a->executor,
                                  getenv("MEDFLOW_EXECUTOR") && a->executor == getenv("MEDFLOW_EXECUTOR")
                                      ? " (from MEDFLOW_EXECUTOR)"
                                      : "");
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

/* Jobs on a cluster run elsewhere, in their own directory: every path they
 * are given (store, sources) must be absolute. */
static int absolute_paths(mf_graph *g, char **root, mf_err *err)
{
    char *abs = mf_path_absolute(*root);
    if (!abs) return mf_err_set(err, MF_ENOMEM, "out of memory");
    free(*root);
    *root = abs;
    for (size_t k = 0; k < g->n_sources; k++) {
        if (g->sources[k].abs_path[0] == '/') continue;
        char *p = mf_path_absolute(g->sources[k].abs_path);
        if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
        free(g->sources[k].abs_path);
        g->sources[k].abs_path = p;
    }
    return 0;
}

static void print_warnings(const mf_estore *st)
{
    for (const char *w = mf_estore_warnings(st); *w;) {
        size_t n = strcspn(w, "\n");
        fprintf(stderr, "medflow: warning: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
}

/* The default store is the working directory's .medflow, while sources resolve against the graph's
 * folder: a graph run from elsewhere would silently start over in a new store. Say which store is
 * used when it is new, or when the graph lives in another folder that has a store of its own. */
static void say_store(const char *cmd, const char *root, const mf_graph *g, int explicit_store)
{
    char *ledger = mf_path_join(root, "ledger.git");
    int fresh = ledger && !mf_is_dir(ledger);
    char *beside = explicit_store || !g->dir ? NULL : mf_path_join(g->dir, ".medflow/ledger.git");
    char *abs_root = mf_path_absolute(root), *abs_beside = beside ? mf_path_absolute(beside) : NULL;
    int other = abs_beside && mf_is_dir(abs_beside) && abs_root && strncmp(abs_beside, abs_root, strlen(abs_root));
    if (fresh)
        fprintf(stderr, "medflow: store %s is new (empty): every stage of '%s' runs from scratch%s\n", abs_root ? abs_root : root,
                g->name, explicit_store ? "" : " (the default store is ./.medflow of the working directory; --store DIR picks another)");
    if (other)
        fprintf(stderr, "medflow: note: %s/.medflow beside the graph holds runs too; this %s uses %s (pass --store %s/.medflow to use that one)\n",
                g->dir, cmd, abs_root, g->dir);
    free(ledger);
    free(beside);
    free(abs_root);
    free(abs_beside);
}

/* What run and status share: the arguments, and the graph, store and plan prepared from them. */
typedef struct session {
    args a;
    mf_err err;
    mf_graph *g;
    mf_estore *st; /* run: holding the shared store lock */
    mf_plan *p;
    mf_run_io io;
} session;

/* Load + open (+ the run's shared store lock, so gc cannot collect what the plan finds) + plan. */
static int prepare(session *s, int is_run)
{
    int rc = mf_graph_load(&s->g, s->a.graph, &s->err);
    if (rc || (rc = mf_graph_check_sources(s->g, &s->err))) return rc;
    char *root = mf_estore_root(s->a.store, s->g), *state = NULL;
    if (!root) return mf_err_set(&s->err, MF_ENOMEM, "out of memory");
    const char *executor = s->a.executor ? s->a.executor : s->g->executor;
    if (executor && !strcmp(executor, "slurm") && (rc = absolute_paths(s->g, &root, &s->err))) goto out;
    if (!s->a.quiet && !s->a.json) say_store(is_run ? "run" : "status", root, s->g, (s->a.store && *s->a.store) || s->g->store);
    if ((rc = mf_estore_open(&s->st, root, s->a.rehash, &s->err))) goto out;
    if (is_run && (rc = mf_estore_lock(s->st, &s->err))) goto out;
    mf_estore_io(s->st, &s->io);
    if (!(state = mf_estore_state_path(s->st, s->g->name))) {
        rc = mf_err_set(&s->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_plan_opts po = {s->a.targets, s->a.n_targets, s->a.force, s->a.n_force, state};
    rc = mf_plan_new(&s->p, s->g, &s->io.plan, &po, &s->err);
    print_warnings(s->st);
out:
    free(root);
    free(state);
    return rc;
}

/* Runs whose engine was killed before recording them are recorded now (engine/journal.h). A
 * failure is a warning: the journal stays, and gc keeps the outputs it names. */
static void recover(session *s)
{
    mf_buf rep = MF_BUF_INIT;
    mf_err e;
    mf_err_clear(&e);
    if (mf_estore_recover(s->st, &rep, &e)) {
        char buf[2048];
        fprintf(stderr, "medflow: warning: %s (its outputs stay protected from gc; the next run tries again)\n",
                mf_err_str(&e, buf, sizeof buf));
    }
    for (const char *w = mf_buf_cstr(&rep); *w && !s->a.quiet;) {
        size_t n = strcspn(w, "\n");
        printf("recovered: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
    mf_buf_free(&rep);
}

/* `run GRAPH` with no option that changes what is planned: the no-op record may answer it. */
static int plain_run(const args *a)
{
    return !a->n_targets && !a->n_force && !a->rehash && !a->dry_run;
}

/* 0 with the session ready, the exit code (a usage error, or the error reported), or -1 when the
 * no-op record showed that a run has nothing to do (and said so). */
static int session_open(session *s, const char *cmd, int argc, char **argv, int is_run)
{
    memset(s, 0, sizeof *s);
    mf_err_clear(&s->err);
    int code = parse(cmd, argc, argv, &s->a, is_run);
    if (code) return code;
    size_t n = 0;
    if (is_run && plain_run(&s->a) && mf_noop_check(s->a.graph, s->a.store, &n)) { /* engine/noop.h */
        if (!s->a.quiet) printf("%zu stage%s cached; nothing to do\n", n, n == 1 ? "" : "s");
        return -1;
    }
    if (prepare(s, is_run)) return (code = mf_cli_report(&s->err)) ? code : MF_EXIT_FAILED;
    if (is_run) recover(s);
    return 0;
}

static void session_close(session *s)
{
    mf_plan_free(s->p);
    mf_estore_close(s->st);
    mf_graph_free(s->g);
    free_args(&s->a);
}

/* Cached outputs computed by another build (numerics may differ: docs/store.md, "Builds"). */
static void print_other_builds(const session *s)
{
    int first = 1;
    for (size_t i = 0; i < s->g->n_stages; i++) {
        const mf_plan_stage *st = &s->p->st[i];
        size_t len = 0;
        const char *b = st->needed && st->state == MF_PS_CACHED ? mf_estore_other_build(s->st, st->key, &len) : NULL;
        if (!b) continue;
        if (first) printf("note: these cached outputs were computed by another build of medflow (this one: %s);\n"
                          "      a run with --force STAGE recomputes one with this build:\n", mf_k_build_identity());
        first = 0;
        printf("  %s  built by: %.*s\n", s->g->stages[i].name, (int)len, b);
    }
}

int mf_cmd_status(int argc, char **argv)
{
    session s;
    int code = session_open(&s, "status", argc, argv, 0);
    if (code) goto out;
    mf_buf buf = MF_BUF_INIT;
    if (mf_plan_write_status(s.p, &buf, s.a.json)) code = MF_EXIT_FAILED;
    else fputs(mf_buf_cstr(&buf), stdout);
    mf_buf_free(&buf);
    if (!s.a.json && !s.a.quiet) print_other_builds(&s);
    if (!s.a.json && !s.a.quiet && !mf_plan_count(s.p, MF_PS_STALE) && !mf_estore_recorded_current(s.st, s.p))
        printf("note: the ledger last recorded other outputs for some of these stages (an input changed back?);\n"
               "      `medflow run` records these as the current ones\n");
    if (!s.a.json && !s.a.quiet && mf_estore_pending_runs(s.st))
        printf("note: some outputs are not recorded in the ledger yet: a run is in progress, or was killed\n"
               "      (then the next `medflow run` records it)\n");
    if (!s.a.json && !s.a.quiet) {
        size_t cached = mf_plan_count(s.p, MF_PS_CACHED), stale = mf_plan_count(s.p, MF_PS_STALE),
               waiting = mf_plan_count(s.p, MF_PS_WAITING);
        printf("%zu cached, %zu stale, %zu waiting on stale upstreams\n", cached, stale, waiting);
    }
out:
    session_close(&s);
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

/* --dry-run: what would run, and why. */
static void print_dry_run(const mf_graph *g, const mf_plan *p, size_t stale, size_t waiting, size_t cached)
{
    for (size_t k = 0; k < g->n_stages; k++) {
        size_t i = g->topo[k];
        const mf_plan_stage *s = &p->st[i];
        if (!s->needed || (s->state != MF_PS_STALE && s->state != MF_PS_WAITING)) continue;
        printf("%s %s", s->state == MF_PS_STALE ? "would run:" : "would run if its inputs change:", g->stages[i].name);
        for (size_t r = 0; r < s->n_reasons; r++) printf("%s%s", r ? "; " : " (", s->reasons[r]);
        printf("%s\n", s->n_reasons ? ")" : "");
    }
    printf("%zu to run, %zu waiting on them, %zu cached (dry run: nothing was started)\n", stale, waiting, cached);
}

/* The run's outcome, as a line and an exit code. */
static int report_outcome(const args *a, const mf_run_result *res)
{
    int code = MF_EXIT_OK;
    if (res->outcome == MF_EINTERRUPTED) {
        fprintf(stderr, "medflow: run %s interrupted; nothing partial was published (rerun to continue)\n", res->run_id);
        code = MF_EXIT_INTERRUPTED;
    } else if (res->outcome) {
        fprintf(stderr, "medflow: run %s failed: %zu stage%s failed, %zu ran, %zu blocked\n", res->run_id, res->n_failed,
                res->n_failed == 1 ? "" : "s", res->n_ran, res->n_blocked);
        code = MF_EXIT_FAILED;
    } else if (!a->quiet) {
        printf("run %s: %zu ran, %zu cached, %zu cut off (inputs unchanged)\n", res->run_id, res->n_ran, res->n_cached,
               res->n_cutoff);
    }
    if (res->ledger_ref[0] && !a->quiet) printf("recorded in the ledger as %s\n", res->ledger_ref);
    if (res->record_error[0]) { /* the outputs are safe (the journal roots them), the provenance is not yet */
        fprintf(stderr,
                "medflow: error: run %s could not be recorded in the ledger: %s\n"
                "medflow: its journal keeps its outputs from gc; the next run records it\n",
                res->run_id, res->record_error);
        if (code == MF_EXIT_OK) code = MF_EXIT_FAILED;
    }
    return code;
}

int mf_cmd_run(int argc, char **argv)
{
    session s;
    int code = session_open(&s, "run", argc, argv, 1);
    if (code < 0) { /* the no-op record answered */
        code = MF_EXIT_OK;
        goto out;
    }
    if (code) goto out;
    size_t stale = mf_plan_count(s.p, MF_PS_STALE), waiting = mf_plan_count(s.p, MF_PS_WAITING),
           cached = mf_plan_count(s.p, MF_PS_CACHED);
    int record_only = 0;
    if (!stale) { /* the no-op path: no ledger, no writes, unless the ledger describes other outputs */
        if (!s.a.quiet) printf("%zu stage%s cached; nothing to do\n", cached, cached == 1 ? "" : "s");
        if (s.a.dry_run) goto out;
        if (mf_estore_recorded_current(s.st, s.p)) {
            char *root = plain_run(&s.a) ? mf_estore_root(s.a.store, s.g) : NULL;
            if (root) mf_noop_record(s.a.graph, s.a.store, root, s.p); /* the next one skips all of this */
            free(root);
            goto out;
        }
        record_only = 1; /* an input changed back: record that these outputs are the current ones again */
    }
    if (s.a.dry_run) {
        print_dry_run(s.g, s.p, stale, waiting, cached);
        goto out;
    }
    const char *executor = s.a.executor ? s.a.executor : s.g->executor ? s.g->executor : "local";
    if ((s.a.partition || s.a.account) && strcmp(executor, "slurm")) {
        fprintf(stderr, "medflow: --partition and --account are for the Slurm executor (--executor slurm)\n");
        code = MF_EXIT_USAGE;
        goto out;
    }
    if (!s.a.quiet && !record_only) printf("%zu to run, %zu waiting on them, %zu cached\n", stale, waiting, cached);
    mf_run_opts ro = {s.a.jobs, s.a.gpus, s.a.keep_going, getenv("MEDFLOW_STAGE_EXE"), 0, stdout,
                      isatty(1), s.a.quiet, s.a.verbose, s.a.backend ? s.a.backend : "auto", executor, s.a.partition,
                      s.a.account};
    const char *grace = getenv("MEDFLOW_KILL_GRACE");
    ro.grace_s = grace ? atof(grace) : 10.0;
    mf_run_result res;
    if (mf_run_execute(s.p, &s.io, &ro, &res, &s.err)) {
        code = mf_cli_report(&s.err);
        goto out;
    }
    if (record_only) {
        if (!s.a.quiet && res.ledger_ref[0])
            printf("recorded in the ledger as %s: these outputs differ from the ones last recorded\n", res.ledger_ref);
        res.ledger_ref[0] = 0;
        s.a.quiet = 1; /* the error, if any, is still printed */
    }
    code = report_outcome(&s.a, &res);
    mf_estore_close(s.st); /* releases the store lock (printing the report opens the store again) */
    s.st = NULL;
    if (!res.outcome && !s.a.quiet) print_results(&s.a, s.g, s.p);
out:
    session_close(&s);
    return code;
}
