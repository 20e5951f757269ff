/*
 * engine/cmd_store.c — store and ledger commands: log, show, lineage, diff,
 * verify, gc, tag, hash (docs/store.md). They print; artifacts/ does the work.
 *
 * The store is --store DIR (mf_cli.store), else ./.medflow. (The engine's run
 * command passes the graph's `store:`; these commands take no graph.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "engine/cli.h"
#include "engine/journal.h"
#include "kernels/backend_select.h"

static const char *store_dir(void) { return mf_cli.store && *mf_cli.store ? mf_cli.store : "./.medflow"; }

static int report(const mf_err *err) { return mf_cli_report_store(err, store_dir()); }

static int open_ledger(mf_ledger **l, mf_err *err)
{
    char *g = mf_path_join(store_dir(), "ledger.git");
    int there = g && mf_is_dir(g);
    free(g);
    if (!there)
        return mf_err_set(err, MF_ENOTFOUND, "no ledger in %s (run a graph first, or pass --store DIR)", store_dir());
    return mf_ledger_open(l, store_dir(), err);
}

static int open_store_existing(mf_store **s, mf_err *err)
{
    if (!mf_is_dir(store_dir())) return mf_err_set(err, MF_ENOTFOUND, "no store at %s (pass --store DIR)", store_dir());
    return mf_store_open(s, store_dir(), err);
}

static const char *human(uint64_t b, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int k = 0;
    while (v >= 1024 && k < 4) { v /= 1024; k++; }
    if (k == 0) snprintf(buf, n, "%llu B", (unsigned long long)b);
    else snprintf(buf, n, "%.1f %s", v, u[k]);
    return buf;
}

static const char *when(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

/* "sha256:" + 12 hex of a digest string, or "-" */
static const char *shortd(const char *d, char *buf)
{
    if (!d) return "-";
    snprintf(buf, 20, "%.19s", d);
    return buf;
}

static void print_json(const mf_json *v)
{
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, v, MF_JSON_SORTED | MF_JSON_PRETTY);
    fputs(mf_buf_cstr(&b), stdout);
    mf_buf_free(&b);
}

static void compact(const mf_json *v, char *buf, size_t n)
{
    mf_buf b = MF_BUF_INIT;
    if (v) mf_json_write(&b, v, MF_JSON_SORTED);
    const char *s = v ? mf_buf_cstr(&b) : "";
    if (strlen(s) >= n && n > 4) snprintf(buf, n, "%.*s...", (int)n - 4, s);
    else snprintf(buf, n, "%s", s);
    mf_buf_free(&b);
}

/* ---------------- log ---------------- */

int mf_cmd_log(int argc, char **argv)
{
    const char *graph = NULL;
    long limit = -1;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "-n") && k + 1 < argc) limit = strtol(argv[++k], NULL, 10);
        else if (argv[k][0] == '-') return mf_cli_usage_error("log", "unknown option '%s'", argv[k]);
        else if (!graph) graph = argv[k];
        else return mf_cli_usage_error("log", "expected at most one GRAPH");
    }
    mf_err err;
    mf_ledger *l = NULL;
    mf_ledger_run **runs = NULL;
    size_t n = 0;
    if (open_ledger(&l, &err) || mf_ledger_list(l, graph, &runs, &n, &err)) {
        mf_ledger_free(l);
        return report(&err);
    }
    for (size_t i = 0; i < n && (limit < 0 || (long)i < limit); i++) {
        mf_ledger_run *r = runs[i];
        size_t ran = 0, cached = 0, failed = 0;
        for (size_t k = 0; k < r->stages->n; k++) {
            const char *st = mf_json_get_str(r->stages->items[k], "status", "");
            if (!strcmp(st, "cached")) cached++;
            else if (!strcmp(st, "failed")) failed++;
            else ran++;
        }
        char t[32], label[300];
        snprintf(label, sizeof label, "%s@%d", r->graph, r->number);
        printf("%.12s  %-24s %s  %-8s %zu stages (%zu ran, %zu cached%s)\n", r->id, label, when(r->time, t, sizeof t),
               mf_json_get_str(r->run, "outcome", "?"), r->stages->n, ran, cached, failed ? ", some failed" : "");
    }
    if (!n) printf("no runs recorded in %s\n", store_dir());
    mf_ledger_list_free(runs, n);
    mf_ledger_free(l);
    return 0;
}

/* ---------------- show ---------------- */

static void show_stage(const mf_ledger_run *r, const char *stage)
{
    char t[32];
    printf("stage %s of %s@%d (run %.12s, %s)\n", stage, r->graph, r->number, r->id, when(r->time, t, sizeof t));
    const mf_json *m = mf_json_get(r->stages, stage);
    const char *b = mf_json_get_str(m, "build", NULL);
    if (b && strcmp(b, mf_k_build_identity()))
        printf("note: computed by another build of medflow than this one (numerics may differ):\n"
               "  that build: %s\n  this build: %s\n", b, mf_k_build_identity());
    print_json(m);
}

/* A digest no recorded stage produced: held by the store (a source or a log), else MF_ENOTFOUND
 * (err keeps the reason). */
static int show_unrecorded(const mf_digest *d, mf_err *err)
{
    mf_store *s = NULL;
    char ds[72], hb[32];
    int rc = MF_ENOTFOUND;
    if (mf_store_open(&s, store_dir(), err) || !mf_store_has(s, d)) goto out;
    mf_store_obj *objs;
    size_t n;
    uint64_t bytes = 0;
    if (mf_store_list(s, &objs, &n, err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (mf_digest_eq(&objs[i].digest, d)) bytes = objs[i].bytes;
        free(objs);
    }
    printf("%s: in the store (%s archive), produced by no recorded stage (a source or a log)\n", mf_digest_str(d, ds),
           human(bytes, hb, sizeof hb));
    rc = 0;
out:
    mf_store_free(s);
    return rc;
}

static int show_digest(mf_ledger *l, const mf_digest *d, mf_err *err)
{
    mf_ledger_run *r = NULL;
    char *stage = NULL;
    int rc = mf_ledger_producer(l, d, &r, &stage, err);
    if (rc == MF_ENOTFOUND) rc = show_unrecorded(d, err);
    else if (rc == 0 && r) show_stage(r, stage);
    free(stage);
    mf_ledger_run_free(r);
    return rc;
}

/* A stage named GRAPH:STAGE or RUN:STAGE. */
static int show_named_stage(mf_ledger *l, const char *spec, mf_err *err)
{
    mf_ledger_run *r = NULL;
    char *stage = NULL;
    int rc;
    if ((rc = mf_ledger_find_stage(l, spec, &r, &stage, err))) goto out;
    show_stage(r, stage);
out:
    free(stage);
    mf_ledger_run_free(r);
    return rc;
}

static void show_run(const mf_ledger_run *r)
{
    char t[32];
    printf("run %s@%d  commit %s  %s\n", r->graph, r->number, r->id, when(r->time, t, sizeof t));
    print_json(r->run);
    printf("stages:\n");
    for (size_t i = 0; i < r->stages->n; i++) {
        const mf_json *m = r->stages->items[i];
        char sb[24];
        printf("  %-20s %-10s %-8s %s\n", r->stages->keys[i], mf_json_get_str(m, "kind", "?"),
               mf_json_get_str(m, "status", ""), shortd(mf_ledger_digest_of(mf_json_get(m, "output")), sb));
    }
}

int mf_cmd_show(int argc, char **argv)
{
    if (argc != 2) return mf_cli_usage_error("show", "expected one RUN, STAGE or DIGEST");
    const char *spec = argv[1];
    mf_err err;
    mf_ledger *l = NULL;
    if (open_ledger(&l, &err)) return report(&err);
    mf_ledger_run *r = NULL;
    mf_digest d;
    int rc = 0;
    if (mf_digest_parse(&d, spec, &err) == 0)
        rc = show_digest(l, &d, &err);
    else if (strchr(spec, ':'))
        rc = show_named_stage(l, spec, &err);
    else if ((rc = mf_ledger_load(l, spec, &r, &err)) == 0)
        show_run(r);
    else if (rc == MF_ENOTFOUND && (rc = show_named_stage(l, spec, &err)) == MF_ENOTFOUND) /* a damaged ledger is not "no such run" */
        rc = mf_err_set(&err, MF_EINVAL, "'%s' names no run, stage or digest in the ledger", spec);
    mf_ledger_run_free(r);
    mf_ledger_free(l);
    return rc ? report(&err) : 0;
}

/* ---------------- lineage ---------------- */

/* The run and stage that produced the digest ds: 0; MF_EINVAL or MF_ENOTFOUND for a source (no digest,
 * or no stage produced it); another code when the ledger cannot be read. */
static int producer_of(mf_ledger *l, const char *ds, mf_ledger_run **pr, char **ps, mf_err *err)
{
    mf_digest d;
    if (!ds) return MF_ENOTFOUND;
    int rc = mf_digest_parse(&d, ds, err);
    if (rc) return rc;
    return mf_ledger_producer(l, &d, pr, ps, err);
}

/* Prints the tree; the first error that is not "no stage produced it" (a
 * damaged ledger) goes to *bad, so lineage never calls a lost producer a source. */
static void lineage_rec(mf_ledger *l, const mf_ledger_run *r, const char *stage, const char *slot, mf_buf *prefix,
                        int last, int depth, mf_err *bad)
{
    const mf_json *m = mf_json_get(r->stages, stage);
    char sb[24], params[96];
    compact(mf_json_get(m, "params"), params, sizeof params);
    printf("%s%s%s%s%s (%s)  %s  %s@%d", mf_buf_cstr(prefix), depth ? (last ? "└── " : "├── ") : "", slot ? slot : "",
           slot ? ": " : "", stage, mf_json_get_str(m, "kind", "?"),
           shortd(mf_ledger_digest_of(mf_json_get(m, "output")), sb), r->graph, r->number);
    printf("  run %.12s", r->id);
    if (*params && strcmp(params, "{}")) printf("  %s", params);
    printf("\n");
    if (depth > 64) return;
    const mf_json *in = mf_json_get(m, "inputs");
    size_t plen = prefix->len;
    if (depth) mf_buf_puts(prefix, last ? "    " : "│   ");
    /* A slot holds one input, or a list of them (report's evals, mix's data). */
    size_t total = 0, seen = 0;
    for (size_t i = 0; in && i < in->n; i++) total += in->items[i]->type == MF_JSON_ARRAY ? in->items[i]->n : 1;
    for (size_t i = 0; in && i < in->n; i++) {
        int list = in->items[i]->type == MF_JSON_ARRAY;
        size_t n_here = list ? in->items[i]->n : 1;
        for (size_t j = 0; j < n_here; j++) {
            const mf_json *item = list ? in->items[i]->items[j] : in->items[i];
            int is_last = ++seen == total;
            const char *ds = mf_ledger_digest_of(item);
            mf_err err;
            mf_ledger_run *pr = NULL;
            char *ps = NULL;
            int rc = producer_of(l, ds, &pr, &ps, &err);
            if (rc == 0) {
                lineage_rec(l, pr, ps, in->keys[i], prefix, is_last, depth + 1, bad);
            } else if (rc != MF_ENOTFOUND && rc != MF_EINVAL) {
                printf("%s%s%s: %s  (its producer cannot be read)\n", mf_buf_cstr(prefix), is_last ? "└── " : "├── ",
                       in->keys[i], ds);
                if (!bad->code) *bad = err;
            } else {
                const char *src = item->type == MF_JSON_OBJECT ? mf_json_get_str(item, "source", NULL) : NULL;
                printf("%s%s%s: source%s%s  %s\n", mf_buf_cstr(prefix), is_last ? "└── " : "├── ", in->keys[i],
                       src ? " " : "", src ? src : "", ds ? ds : "(no digest)");
            }
            free(ps);
            mf_ledger_run_free(pr);
        }
    }
    prefix->len = plen;
    if (prefix->data) prefix->data[plen] = 0;
}

int mf_cmd_lineage(int argc, char **argv)
{
    if (argc != 2) return mf_cli_usage_error("lineage", "expected one STAGE or DIGEST");
    mf_err err;
    mf_ledger *l = NULL;
    mf_ledger_run *r = NULL;
    char *stage = NULL;
    if (open_ledger(&l, &err)) return report(&err);
    if (mf_ledger_find_stage(l, argv[1], &r, &stage, &err)) {
        mf_digest d;
        mf_err e2;
        int is_digest = err.code == MF_ENOTFOUND && mf_digest_parse(&d, argv[1], &e2) == 0;
        mf_ledger_free(l);
        if (!is_digest) return report(&err);
        char ds[72];
        printf("%s: a source (no recorded stage produced it)\n", mf_digest_str(&d, ds));
        return 0;
    }
    mf_buf prefix = MF_BUF_INIT;
    mf_err bad;
    mf_err_clear(&bad);
    lineage_rec(l, r, stage, NULL, &prefix, 1, 0, &bad);
    mf_buf_free(&prefix);
    free(stage);
    mf_ledger_run_free(r);
    mf_ledger_free(l);
    return bad.code ? report(&bad) : 0;
}

/* ---------------- diff ---------------- */

/* An input's identity for diffs: its digest, or the digests of a list slot
 * ("a,b,c"); a source's path may move without the input changing. */
static void input_sig(const mf_json *v, char *out, size_t n)
{
    char sd[24];
    out[0] = 0;
    if (!v) { snprintf(out, n, "(none)"); return; }
    if (v->type != MF_JSON_ARRAY) { snprintf(out, n, "%s", shortd(mf_ledger_digest_of(v), sd)); return; }
    size_t used = 0;
    for (size_t k = 0; k < v->n && used + 1 < n; k++) {
        int w = snprintf(out + used, n - used, "%s%s", k ? "," : "", shortd(mf_ledger_digest_of(v->items[k]), sd));
        if (w < 0) break;
        used += (size_t)w;
    }
}

static void diff_field_map(mf_buf *why, const char *what, const mf_json *a, const mf_json *b, int digests)
{
    /* keys of a and b, each once */
    for (int pass = 0; pass < 2; pass++) {
        const mf_json *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; x && i < x->n; i++) {
            const mf_json *other = mf_json_get(y, x->keys[i]);
            if (pass && other) continue; /* already compared */
            if (other && mf_json_equal(x->items[i], other)) continue;
            const mf_json *va = pass ? other : x->items[i], *vb = pass ? x->items[i] : other;
            char sa[1024], sb[1024];
            if (digests) {
                input_sig(va, sa, sizeof sa);
                input_sig(vb, sb, sizeof sb);
                if (!strcmp(sa, sb)) continue; /* same content (a source may have moved) */
            } else {
                if (va) compact(va, sa, sizeof sa); else snprintf(sa, sizeof sa, "(unset)");
                if (vb) compact(vb, sb, sizeof sb); else snprintf(sb, sizeof sb, "(unset)");
            }
            mf_buf_printf(why, "%s%s '%s' %s -> %s", why->len ? "; " : "", what, x->keys[i], sa, sb);
        }
    }
}

int mf_cmd_diff(int argc, char **argv)
{
    if (argc != 3) return mf_cli_usage_error("diff", "expected two RUNs");
    mf_err err;
    mf_ledger *l = NULL;
    mf_ledger_run *a = NULL, *b = NULL;
    if (open_ledger(&l, &err) || mf_ledger_load(l, argv[1], &a, &err) || mf_ledger_load(l, argv[2], &b, &err)) {
        mf_ledger_run_free(a);
        mf_ledger_free(l);
        return report(&err);
    }
    printf("%s@%d (%.12s) -> %s@%d (%.12s)\n", a->graph, a->number, a->id, b->graph, b->number, b->id);
    size_t changed = 0;
    for (int pass = 0; pass < 2; pass++) {
        const mf_ledger_run *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; i < x->stages->n; i++) {
            const char *name = x->stages->keys[i];
            const mf_json *other = mf_json_get(y->stages, name);
            if (pass && other) continue;
            if (!other) {
                printf("  %-20s %s\n", name, pass ? "added" : "removed");
                changed++;
                continue;
            }
            const mf_json *ma = x->stages->items[i], *mb = other;
            const char *ka = mf_json_get_str(ma, "key", ""), *kb = mf_json_get_str(mb, "key", "");
            const char *oa = mf_ledger_digest_of(mf_json_get(ma, "output")), *ob = mf_ledger_digest_of(mf_json_get(mb, "output"));
            char s1[24], s2[24];
            if (!strcmp(ka, kb) && ((!oa && !ob) || (oa && ob && !strcmp(oa, ob)))) {
                printf("  %-20s unchanged  %s\n", name, shortd(oa, s1));
                continue;
            }
            changed++;
            mf_buf why = MF_BUF_INIT;
            const char *fields[] = {"kind", "kind_version", "seed", "precision"};
            for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
                const mf_json *fa = mf_json_get(ma, fields[f]), *fb = mf_json_get(mb, fields[f]);
                if ((fa || fb) && !(fa && fb && mf_json_equal(fa, fb))) {
                    char sa[64] = "(unset)", sb[64] = "(unset)";
                    if (fa) compact(fa, sa, sizeof sa);
                    if (fb) compact(fb, sb, sizeof sb);
                    mf_buf_printf(&why, "%s%s %s -> %s", why.len ? "; " : "", fields[f], sa, sb);
                }
            }
            diff_field_map(&why, "param", mf_json_get(ma, "params"), mf_json_get(mb, "params"), 0);
            diff_field_map(&why, "input", mf_json_get(ma, "inputs"), mf_json_get(mb, "inputs"), 1);
            if (!strcmp(ka, kb)) mf_buf_printf(&why, "%ssame key, output %s -> %s (not reproducible?)", why.len ? "; " : "",
                                               shortd(oa, s1), shortd(ob, s2));
            else mf_buf_printf(&why, "%soutput %s -> %s", why.len ? "; " : "", shortd(oa, s1), shortd(ob, s2));
            printf("  %-20s changed: %s\n", name, mf_buf_cstr(&why));
            mf_buf_free(&why);
        }
    }
    printf("%zu stage%s changed\n", changed, changed == 1 ? "" : "s");
    mf_ledger_run_free(a);
    mf_ledger_run_free(b);
    mf_ledger_free(l);
    return 0;
}

/* ---------------- verify ---------------- */

static void verify_report(void *ctx, const char *what, const mf_digest *d, const mf_err *e)
{
    (void)ctx;
    char ds[72];
    printf("corrupt %s %s: %s\n", what, mf_digest_str(d, ds), e->msg);
}

static void ledger_report(void *ctx, const char *id, const mf_err *e)
{
    (void)ctx;
    printf("corrupt ledger object %s: %s\n", id, e->msg);
}

int mf_cmd_verify_repair(const char *store); /* engine/cmd_repair.c */

int mf_cmd_verify(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--repair")) {
        if (!mf_is_dir(store_dir())) {
            mf_err e;
            mf_err_set(&e, MF_ENOTFOUND, "no store at %s (pass --store DIR)", store_dir());
            return report(&e);
        }
        return mf_cmd_verify_repair(store_dir());
    }
    if (argc != 1) return mf_cli_usage_error("verify", "takes no arguments but --repair");
    mf_err err;
    mf_store *s = NULL;
    if (open_store_existing(&s, &err)) return report(&err);
    mf_store_obj *objs = NULL;
    size_t n = 0, bad = 0, trees = 0;
    uint64_t bytes = 0;
    if (mf_store_list(s, &objs, &n, &err) || mf_store_verify(s, verify_report, NULL, &bad, &err)) {
        free(objs);
        mf_store_free(s);
        return report(&err);
    }
    for (size_t i = 0; i < n; i++) {
        bytes += objs[i].bytes;
        trees += objs[i].materialized;
    }
    /* the ledger too, when there is one */
    char *g = mf_path_join(store_dir(), "ledger.git");
    int have_ledger = g && mf_is_dir(g);
    free(g);
    size_t lbad = 0;
    if (have_ledger) {
        mf_ledger *l = NULL;
        if (mf_ledger_open(&l, store_dir(), &err) || mf_ledger_verify(l, ledger_report, NULL, &lbad, &err)) {
            mf_ledger_free(l);
            free(objs);
            mf_store_free(s);
            return report(&err);
        }
        mf_ledger_free(l);
        bad += lbad;
    }
    char hb[32];
    printf("verified %zu objects (%s), %zu materialised trees%s: %s\n", n, human(bytes, hb, sizeof hb), trees,
           have_ledger ? " and the ledger" : "", bad ? "PROBLEMS FOUND" : "all good");
    if (bad) printf("%zu problem%s\n", bad, bad == 1 ? "" : "s");
    free(objs);
    mf_store_free(s);
    return bad ? MF_EXIT_FAILED : 0;
}

/* ---------------- gc ---------------- */

int mf_cmd_gc(int argc, char **argv)
{
    int dry = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--dry-run") || !strcmp(argv[k], "-n")) dry = 1;
        else return mf_cli_usage_error("gc", "unknown argument '%s'", argv[k]);
    }
    mf_err err;
    mf_store *s = NULL;
    mf_ledger *l = NULL;
    mf_digest *roots = NULL;
    size_t nr = 0;
    if (open_store_existing(&s, &err)) return report(&err);
    char *g = mf_path_join(store_dir(), "ledger.git");
    int have_ledger = g && mf_is_dir(g);
    free(g);
    if (!have_ledger) {
        mf_store_free(s);
        mf_err_set(&err, MF_ENOTFOUND,
                   "no ledger in %s: no run is recorded, so gc would delete every object; refusing", store_dir());
        return report(&err);
    }
    /* runs whose engine died before recording them are recorded first; what a journal still
     * names (a live run, or one that cannot be recorded yet) is kept as a root */
    mf_buf rec = MF_BUF_INIT;
    mf_digest *jroots = NULL;
    size_t nj = 0;
    if (mf_journal_recover(store_dir(), NULL, &rec, &err)) {
        char buf[2048];
        fprintf(stderr, "medflow: warning: %s (its outputs are kept)\n", mf_err_str(&err, buf, sizeof buf));
    }
    fputs(mf_buf_cstr(&rec), stdout);
    mf_buf_free(&rec);
    if (mf_journal_outputs(store_dir(), &jroots, &nj, &err) ||
        (have_ledger && (mf_ledger_open(&l, store_dir(), &err) || mf_ledger_reachable(l, &roots, &nr, &err)))) {
        free(jroots);
        mf_ledger_free(l);
        mf_store_free(s);
        return report(&err);
    }
    if (nj) {
        mf_digest *all = realloc(roots, (nr + nj) * sizeof *all);
        if (!all) {
            free(jroots);
            free(roots);
            mf_ledger_free(l);
            mf_store_free(s);
            mf_err_set(&err, MF_ENOMEM, "out of memory");
            return report(&err);
        }
        memcpy(all + nr, jroots, nj * sizeof *all);
        roots = all;
        nr += nj;
    }
    free(jroots);
    mf_store_gc_stats st;
    int rc = mf_store_gc(s, roots, nr, dry, &st, &err);
    free(roots);
    mf_ledger_free(l);
    mf_store_free(s);
    if (rc) return report(&err);
    char h1[32], h2[32];
    printf("%s %zu object%s (%s); kept %zu (%s) reachable from the ledger\n", dry ? "would remove" : "removed",
           st.removed, st.removed == 1 ? "" : "s", human(st.bytes_removed, h1, sizeof h1), st.kept,
           human(st.bytes_kept, h2, sizeof h2));
    return 0;
}

/* ---------------- tag ---------------- */

int mf_cmd_tag(int argc, char **argv)
{
    if (argc != 3) return mf_cli_usage_error("tag", "expected NAME and a STAGE or DIGEST");
    mf_err err;
    mf_ledger *l = NULL;
    mf_ledger_run *r = NULL;
    char *stage = NULL;
    if (open_ledger(&l, &err)) return report(&err);
    mf_json *what = mf_json_new_object();
    mf_digest d;
    int rc = 0;
    if (mf_digest_parse(&d, argv[2], &err) == 0) {
        char buf[72];
        mf_json_set(what, "digest", mf_json_new_str(mf_digest_str(&d, buf)));
        (void)mf_ledger_producer(l, &d, &r, &stage, &err); /* a digest no stage produced is tagged too */
    } else {
        if ((rc = mf_ledger_find_stage(l, argv[2], &r, &stage, &err))) goto out;
        const char *ds = mf_ledger_digest_of(mf_json_get(mf_json_get(r->stages, stage), "output"));
        if (!ds) {
            rc = mf_err_set(&err, MF_EINVAL, "stage '%s' has no output digest to tag", stage);
            goto out;
        }
        mf_json_set(what, "digest", mf_json_new_str(ds));
    }
    if (r) {
        char label[300];
        snprintf(label, sizeof label, "%s@%d", r->graph, r->number);
        mf_json_set(what, "stage", mf_json_new_str(stage));
        mf_json_set(what, "run", mf_json_new_str(label));
        mf_json_set(what, "commit", mf_json_new_str(r->id));
    }
    if ((rc = mf_ledger_tag(l, argv[1], what, &err))) goto out;
    printf("tagged %s -> %s\n", argv[1], mf_json_get_str(what, "digest", "?"));
out:
    mf_json_free(what);
    free(stage);
    mf_ledger_run_free(r);
    mf_ledger_free(l);
    return rc ? report(&err) : 0;
}

/* ---------------- hash ---------------- */

int mf_cmd_hash(int argc, char **argv)
{
    int flags = 0, nocache = 0, npaths = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--rehash")) flags |= MF_SOURCE_REHASH;
        else if (!strcmp(argv[k], "--no-cache")) nocache = 1;
        else if (argv[k][0] == '-' && argv[k][1]) return mf_cli_usage_error("hash", "unknown option '%s'", argv[k]);
        else npaths++;
    }
    if (!npaths) return mf_cli_usage_error("hash", "expected at least one PATH");
    mf_err err;
    mf_store *s = NULL;
    if (!nocache && mf_is_dir(store_dir()) && mf_store_open(&s, store_dir(), &err)) return report(&err);
    int rc = 0;
    for (int k = 1; k < argc; k++) {
        if (argv[k][0] == '-' && argv[k][1]) continue;
        mf_digest d;
        mf_source_stats st;
        if ((rc = mf_source_digest(s, argv[k], flags, &d, &st, &err))) goto out;
        char ds[72];
        printf("%s  %s\n", mf_digest_str(&d, ds), argv[k]);
        if (mf_cli.verbose)
            fprintf(stderr, "  %zu files, %llu bytes; %zu read (%llu bytes), %zu from the stat cache\n", st.files,
                    (unsigned long long)st.bytes, st.hashed, (unsigned long long)st.bytes_hashed, st.files - st.hashed);
    }
out:
    mf_store_free(s);
    return rc ? report(&err) : 0;
}

/* ---------------- hidden helpers (benchmarks, debugging) ---------------- */

/* medflow store-put [--level N] [--threads N] DIR: archive DIR into the store, print its digest. */
int mf_cmd_store_put(int argc, char **argv)
{
    int level = 0, threads = 1;
    const char *dir = NULL;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--level") && k + 1 < argc) level = atoi(argv[++k]);
        else if (!strcmp(argv[k], "--threads") && k + 1 < argc) threads = atoi(argv[++k]);
        else if (!dir) dir = argv[k];
        else return mf_cli_usage_error("store-put", "expected one DIR");
    }
    if (!dir) return mf_cli_usage_error("store-put", "expected one DIR");
    mf_err err;
    mf_store *s = NULL;
    mf_digest d;
    uint64_t bytes = 0;
    if (mf_store_open(&s, store_dir(), &err)) return report(&err);
    if (level) mf_store_set_compression(s, level, threads);
    else mf_store_set_compression(s, 1, threads);
    int rc = mf_store_put_dir(s, dir, &d, &bytes, &err);
    mf_store_free(s);
    if (rc) return report(&err);
    char ds[72], hb[32];
    printf("%s\n", mf_digest_str(&d, ds));
    if (mf_cli.verbose) fprintf(stderr, "archive: %s\n", human(bytes, hb, sizeof hb));
    return 0;
}

/* medflow store-materialize DIGEST: materialise (verified) and print the tree's path. */
int mf_cmd_store_materialize(int argc, char **argv)
{
    if (argc != 2) return mf_cli_usage_error("store-materialize", "expected one DIGEST");
    mf_err err;
    mf_store *s = NULL;
    mf_digest d;
    char *path = NULL;
    if (mf_digest_parse(&d, argv[1], &err) || open_store_existing(&s, &err)) return report(&err);
    int rc = mf_store_materialize(s, &d, &path, &err);
    mf_store_free(s);
    if (rc) return report(&err);
    printf("%s\n", path);
    free(path);
    return 0;
}
