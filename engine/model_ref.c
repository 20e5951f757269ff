/*
 * engine/model_ref.c — MODEL / --adapter arguments of generate and score:
 * a directory, a digest or a stage name -> a directory on disk plus what the
 * ledger recorded about it (engine/model_ref.h).
 *
 * A digest or a stage is materialised from the store (mf_store_materialize
 * also materialises what its refs.json names, which is how an adapter's base
 * lands at ../<hex> beside it); a chain whose base tree is missing is
 * materialised level by level from base.json's base_digest.
 */
#include "engine/model_ref.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/ledger.h"
#include "artifacts/store.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "modelio/model_open.h"
#include "modelio/modelio.h"

enum { MAX_CHAIN = 8 };

void mf_model_ref_free(mf_model_ref *r)
{
    if (!r) return;
    free(r->dir);
    free(r->bottom);
    free(r->producer);
    free(r->template_name);
    free(r->system);
    memset(r, 0, sizeof *r);
}

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "out of memory"); }

static int is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]) || isupper((unsigned char)s[n])) return 0;
    return n == 64;
}

/* dir = <store>/trees/<hex>: its digest and store (malloc'd), else leaves both alone. */
static void tree_of_store(const char *dir, char *digest, size_t n, char **store)
{
    char *abs = mf_path_absolute(dir);
    size_t len = abs ? strlen(abs) : 0;
    while (len > 1 && abs[len - 1] == '/') abs[--len] = 0;
    char *slash = abs ? strrchr(abs, '/') : NULL;
    if (slash && is_hex64(slash + 1) && slash - abs >= 6 && !strncmp(slash - 6, "/trees", 6)) {
        snprintf(digest, n, "sha256:%s", slash + 1);
        slash[-6] = 0;
        if (!*store) *store = strdup(*abs ? abs : "/");
    }
    free(abs);
}

/* The ledger's record of the stage that produced digest: producer, template, system. Best effort:
 * a store without a ledger, or an artifact no stage produced, leaves them NULL. */
static void read_producer(mf_model_ref *r, const char *store)
{
    mf_digest d;
    mf_err e;
    mf_ledger *l = NULL;
    mf_ledger_run *run = NULL;
    char *stage = NULL;
    char *g = mf_path_join(store, "ledger.git");
    int there = g && mf_is_dir(g);
    free(g);
    if (!there || mf_digest_parse(&d, r->digest, &e) || mf_ledger_open(&l, store, &e)) goto out;
    if (mf_ledger_producer(l, &d, &run, &stage, &e) || !run) goto out;
    const mf_json *m = mf_json_get(run->stages, stage);
    const mf_json *p = mf_json_get(m, "params");
    char buf[600];
    snprintf(buf, sizeof buf, "%s@%d:%s (%s)", run->graph, run->number, stage, mf_json_get_str(m, "kind", "?"));
    r->producer = strdup(buf);
    const char *t = mf_json_get_str(p, "template", NULL), *s = mf_json_get_str(p, "system", NULL);
    if (t && *t) r->template_name = strdup(t);
    if (s && *s) r->system = strdup(s);
out:
    free(stage);
    mf_ledger_run_free(run);
    mf_ledger_free(l);
}

/* A stage name (GRAPH:STAGE, RUN:STAGE, NAME) -> its output digest, through the ledger. */
static int stage_digest(mf_digest *d, const char *arg, const char *store, mf_err *err)
{
    mf_ledger *l = NULL;
    mf_ledger_run *run = NULL;
    char *stage = NULL;
    int rc;
    char *g = mf_path_join(store, "ledger.git");
    int there = g && mf_is_dir(g);
    free(g);
    if (!there) {
        rc = mf_err_set(err, MF_EINVAL,
                        "model '%s': not a directory, and %s holds no ledger to look a stage up in (pass --store DIR, a "
                        "digest or a directory)",
                        arg, store);
        goto out;
    }
    if ((rc = mf_ledger_open(&l, store, err))) goto out;
    if ((rc = mf_ledger_find_stage(l, arg, &run, &stage, err))) {
        if (rc == MF_ENOTFOUND)
            rc = mf_err_set(err, MF_EINVAL,
                            "model '%s': not a directory, a digest, or a stage recorded in the ledger of %s", arg, store);
        goto out;
    }
    const char *ds = mf_ledger_digest_of(mf_json_get(mf_json_get(run->stages, stage), "output"));
    if (!ds) {
        rc = mf_err_set(err, MF_EINVAL, "model '%s': stage '%s' of %s@%d has no output (it %s)", arg, stage, run->graph,
                        run->number, mf_json_get_str(mf_json_get(run->stages, stage), "status", "did not finish"));
        goto out;
    }
    rc = mf_digest_parse(d, ds, err);
out:
    free(stage);
    mf_ledger_run_free(run);
    mf_ledger_free(l);
    return rc;
}

static int materialize(char **dir, const mf_digest *d, const char *arg, const char *store, mf_err *err)
{
    mf_store *s = NULL;
    char ds[72];
    int rc;
    if (!mf_is_dir(store))
        return mf_err_set(err, MF_EINVAL, "model '%s': no store at %s (pass --store DIR)", arg, store);
    if ((rc = mf_store_open(&s, store, err))) return rc;
    if (!mf_store_has(s, d))
        rc = mf_err_set(err, MF_EINVAL, "model '%s': %s is not in the store %s", arg, mf_digest_str(d, ds), store);
    else
        rc = mf_store_materialize(s, d, dir, err);
    mf_store_free(s);
    return rc;
}

/* Walk base.json links down to the full model; materialise a missing base from the store. */
static int find_bottom(mf_model_ref *r, const char *store, mf_err *err)
{
    char *cur = strdup(r->dir);
    if (!cur) return nomem(err);
    int rc = 0;
    for (int depth = 0; depth <= MAX_CHAIN; depth++) {
        if (mf_dir_has_file(cur, "config.json")) {
            r->bottom = cur;
            return 0;
        }
        if (!mf_dir_has_file(cur, "adapter_config.json")) break;
        char *base = mf_modelio_adapter_base(cur);
        char dg[96] = "";
        if (!base && store && mf_modelio_base_ref_read(dg, sizeof dg, cur, NULL) == 0 && dg[0]) {
            mf_digest d;
            mf_err e;
            if (mf_digest_parse(&d, dg, &e) == 0 && (rc = materialize(&base, &d, r->dir, store, err))) break;
        }
        free(cur);
        cur = base;
        if (!cur) break;
    }
    free(cur);
    return rc;
}

int mf_model_ref_resolve(mf_model_ref *out, const char *arg, const char *store_dir, mf_err *err)
{
    memset(out, 0, sizeof *out);
    char *store = NULL;
    mf_digest d;
    mf_err e;
    int rc = 0;
    if (mf_is_dir(arg)) {
        if (!(out->dir = strdup(arg))) return nomem(err);
        tree_of_store(arg, out->digest, sizeof out->digest, &store);
    } else {
        if (!(store = strdup(store_dir))) return nomem(err);
        if (mf_digest_parse(&d, arg, &e) != 0) {
            if (!strncmp(arg, "sha256:", 7) || strchr(arg, '/')) {
                rc = mf_err_set(err, MF_EINVAL, "model '%s': no such directory, and not a digest (sha256:<64 hex>)", arg);
                goto out;
            }
            if ((rc = stage_digest(&d, arg, store, err))) goto out;
        }
        if ((rc = materialize(&out->dir, &d, arg, store, err))) goto out;
        mf_digest_str(&d, out->digest);
    }
    out->is_adapter = mf_dir_has_file(out->dir, "adapter_config.json");
    if (!out->is_adapter && !mf_dir_has_file(out->dir, "config.json")) {
        rc = mf_err_set(err, MF_EINVAL, "model '%s': %s holds neither config.json (a model) nor adapter_config.json (an adapter)",
                        arg, out->dir);
        goto out;
    }
    if (out->is_adapter) mf_modelio_base_ref_read(out->base_digest, sizeof out->base_digest, out->dir, NULL);
    if ((rc = find_bottom(out, store, err))) goto out;
    if (out->digest[0] && store) read_producer(out, store);
out:
    free(store);
    if (rc) mf_model_ref_free(out);
    return rc;
}
