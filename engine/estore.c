/* engine/estore.c — mf_plan_io / mf_run_io over artifacts/ (see estore.h). */
#include "engine/estore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/fsutil.h"
#include "engine/journal.h"
#include "kernels/backend_select.h"

struct mf_estore {
    mf_store *s;
    char *root, *tmp, *work, *logs, *state;
    int rehash;
    mf_buf warnings; /* lines the CLI prints (a damaged action-cache entry, ...) */
    mf_journal *journal; /* the running engine's, until its ledger commit */
    mf_buf other_builds; /* "KEYHEX\tBUILD\n" for cache hits computed by another build */
};

char *mf_estore_root(const char *cli_store, const mf_graph *g)
{
    if (cli_store && *cli_store) return strdup(cli_store);
    if (g && g->store && *g->store) {
        if (g->store[0] == '/' || !g->dir) return strdup(g->store);
        return mf_path_join(g->dir, g->store);
    }
    return strdup(".medflow");
}

int mf_estore_open(mf_estore **out, const char *root, int rehash, mf_err *err)
{
    *out = NULL;
    mf_estore *s = calloc(1, sizeof *s);
    if (!s) return mf_err_set(err, MF_ENOMEM, "out of memory");
    s->rehash = rehash;
    s->root = strdup(root);
    s->tmp = mf_path_join(root, "tmp");
    s->work = mf_path_join(root, "work");
    s->logs = mf_path_join(root, "logs");
    s->state = mf_path_join(root, "state");
    if (!s->root || !s->tmp || !s->work || !s->logs || !s->state) {
        mf_estore_close(s);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    int rc = mf_store_open(&s->s, root, err);
    if (rc) {
        mf_estore_close(s);
        return mf_err_wrap(err, "opening the store %s", root);
    }
    *out = s;
    return 0;
}

void mf_estore_close(mf_estore *s)
{
    if (!s) return;
    mf_journal_close(s->journal, 0); /* not recorded: left for the next run to recover */
    if (s->s) mf_store_free(s->s);
    free(s->root);
    free(s->tmp);
    free(s->work);
    free(s->logs);
    free(s->state);
    mf_buf_free(&s->warnings);
    mf_buf_free(&s->other_builds);
    free(s);
}

const char *mf_estore_warnings(const mf_estore *s) { return s->warnings.data ? s->warnings.data : ""; }

char *mf_estore_state_path(const mf_estore *s, const char *graph_name)
{
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/", s->state);
    for (const char *p = graph_name && *graph_name ? graph_name : "graph"; *p; p++)
        mf_buf_putc(&b, (*p == '/' || *p == '\\' || (unsigned char)*p < 32) ? '_' : *p);
    mf_buf_puts(&b, ".json");
    return mf_buf_ok(&b) ? mf_buf_steal(&b) : (mf_buf_free(&b), NULL);
}

int mf_estore_lock(mf_estore *s, mf_err *err)
{
    int rc = mf_store_lock(s->s, MF_LOCK_SHARED | MF_LOCK_NOWAIT, err);
    if (rc != MF_EBUSY) return rc;
    fprintf(stderr, "medflow: %s; waiting for it (gc) to finish\n", err->msg);
    mf_err_clear(err);
    return mf_store_lock(s->s, MF_LOCK_SHARED, err);
}

/* ---- seams ---- */

static int e_source_digest(void *ctx, const char *path, char out[MF_DIGEST_MAX], mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest d;
    int rc = mf_source_digest(s->s, path, s->rehash ? MF_SOURCE_REHASH : 0, &d, NULL, err);
    if (rc) return rc;
    mf_digest_str(&d, out);
    return 0;
}

static int e_cache_get(void *ctx, const char *key_hex, char out[MF_DIGEST_MAX], mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest k, d;
    int rc = mf_digest_parse(&k, key_hex, err);
    if (rc) return rc;
    char *build = NULL;
    rc = mf_store_key_get_build(s->s, &k, &d, NULL, &build, err);
    if (!rc && build && *build && strcmp(build, mf_k_build_identity()))
        mf_buf_printf(&s->other_builds, "%s\t%s\n", key_hex, build);
    free(build);
    if (rc == MF_ECORRUPT) { /* a damaged entry is only a lost cache hit: the stage runs and key_put replaces it */
        mf_buf_printf(&s->warnings, "%s; treated as a cache miss (the stage runs again and rewrites it)\n", err->msg);
        rc = MF_ENOTFOUND;
    }
    if (rc == MF_ENOTFOUND) { mf_err_clear(err); return 0; }
    if (rc) return rc;
    if (!mf_store_has(s->s, &d)) return 0; /* collected: the entry is worthless */
    mf_digest_str(&d, out);
    return 1;
}

static int e_materialise(void *ctx, const char *digest, char **path, mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest d;
    int rc = mf_digest_parse(&d, digest, err);
    return rc ? rc : mf_store_materialize(s->s, &d, path, err);
}

static int e_publish(void *ctx, const char *dir, char out[MF_DIGEST_MAX], mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest d;
    int rc = mf_store_put_dir(s->s, dir, &d, NULL, err);
    if (rc) return rc;
    mf_digest_str(&d, out);
    return 0;
}

static int e_cache_put(void *ctx, const char *key_hex, const char *output, const char *run_id, const char *build,
                       mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest k, d;
    int rc;
    if ((rc = mf_digest_parse(&k, key_hex, err))) return rc;
    if ((rc = mf_digest_parse(&d, output, err))) return rc;
    return mf_store_key_put_build(s->s, &k, &d, run_id, build, err);
}

static int e_key_lock(void *ctx, const char *key_hex, int *handle, long *holder, mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest k;
    int rc = mf_digest_parse(&k, key_hex, err);
    return rc ? rc : mf_store_key_lock(s->s, &k, MF_LOCK_NOWAIT, handle, holder, err);
}

static void e_key_unlock(void *ctx, const char *key_hex, int handle)
{
    mf_estore *s = ctx;
    mf_digest k;
    mf_err e;
    if (mf_digest_parse(&k, key_hex, &e) == 0) mf_store_key_unlock(s->s, &k, handle);
}

/* The ledger is opened here, only when a run has something to record. */
static int e_ledger_commit(void *ctx, const mf_graph *g, const mf_json *run, const mf_json *manifests, char *ref,
                           size_t ref_len, mf_err *err)
{
    mf_estore *s = ctx;
    mf_ledger *l = NULL;
    int rc = mf_ledger_open(&l, s->root, err);
    if (rc) return rc;
    char id[41];
    int num = 0;
    if ((rc = mf_ledger_commit_run(l, g->name ? g->name : "graph", g->text ? g->text : "", g->text ? g->text_len : 0,
                                   run, manifests, id, &num, err)))
        goto out;
    if (ref) snprintf(ref, ref_len, "%s@%d (%.12s)", g->name ? g->name : "graph", num, id);
    mf_journal_close(s->journal, 1);
    s->journal = NULL;
    mf_err e;
    if (mf_journal_recorded_update(s->root, g->name, manifests, &e)) /* costs at most one extra record later */
        mf_buf_printf(&s->warnings, "%s\n", e.msg);
out:
    mf_ledger_free(l);
    return rc;
}

static int e_put_file(void *ctx, const char *path, char out[MF_DIGEST_MAX], mf_err *err)
{
    mf_estore *s = ctx;
    mf_digest d;
    int rc = mf_store_put_file(s->s, path, "log.txt", &d, err);
    if (rc) return rc;
    mf_digest_str(&d, out);
    return 0;
}

static int e_journal_open(void *ctx, const mf_json *head, mf_err *err)
{
    mf_estore *s = ctx;
    mf_journal_close(s->journal, 0);
    s->journal = NULL;
    return mf_journal_open(&s->journal, s->root, head, err);
}

static int e_journal_append(void *ctx, const mf_json *manifests, mf_err *err)
{
    mf_estore *s = ctx;
    return s->journal ? mf_journal_append(s->journal, manifests, err) : 0;
}

const char *mf_estore_other_build(const mf_estore *s, const char *key_hex, size_t *len)
{
    size_t kl = strlen(key_hex);
    for (const char *p = s->other_builds.data; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (!strncmp(p, key_hex, kl) && p[kl] == '\t') {
            *len = nl ? (size_t)(nl - (p + kl + 1)) : strlen(p + kl + 1);
            return p + kl + 1;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

int mf_estore_pending_runs(mf_estore *s)
{
    mf_digest *d = NULL;
    size_t n = 0;
    mf_err e;
    char *dir = mf_path_join(s->root, "journal");
    int any = dir && mf_is_dir(dir) && mf_journal_outputs(s->root, &d, &n, &e) == 0 && n > 0;
    free(d);
    free(dir);
    return any;
}

int mf_estore_recover(mf_estore *s, mf_buf *report, mf_err *err)
{
    return mf_journal_recover(s->root, NULL, report, err);
}

int mf_estore_recorded_current(mf_estore *s, const mf_plan *p)
{
    const mf_graph *g = p->g;
    const char **names = calloc(g->n_stages + 1, sizeof *names), **outs = calloc(g->n_stages + 1, sizeof *outs);
    size_t n = 0;
    int same = 1;
    if (names && outs) {
        for (size_t i = 0; i < g->n_stages; i++)
            if (p->st[i].needed && p->st[i].state == MF_PS_CACHED) {
                names[n] = g->stages[i].name;
                outs[n++] = p->st[i].output;
            }
        same = !n || mf_journal_recorded_matches(s->root, g->name, names, outs, n);
    }
    free(names);
    free(outs);
    return same;
}

void mf_estore_io(mf_estore *s, mf_run_io *io)
{
    memset(io, 0, sizeof *io);
    io->plan.ctx = s;
    io->plan.source_digest = e_source_digest;
    io->plan.cache_get = e_cache_get;
    io->tmp_dir = s->tmp;
    io->work_dir = s->work;
    io->log_dir = s->logs;
    io->materialise = e_materialise;
    io->publish = e_publish;
    io->cache_put = e_cache_put;
    io->put_file = e_put_file;
    io->key_lock = e_key_lock;
    io->key_unlock = e_key_unlock;
    io->ledger_commit = e_ledger_commit;
    io->journal_open = e_journal_open;
    io->journal_append = e_journal_append;
}
