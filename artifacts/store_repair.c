/*
 * artifacts/store_repair.c — mf_store_repair: fix what mf_store_verify finds.
 *
 * From good copies only, never by trusting a bad one:
 *   object that fails its hash   re-packed from its materialised tree when that
 *                                tree still hashes to the digest (the archive is
 *                                replaced); else moved aside to damaged/ and the
 *                                action-cache entries naming it removed, so that
 *                                its producer runs again (the caller may run it)
 *   modified materialised tree   removed (extracted again from its object on use)
 *   damaged action-cache entry,  removed: a cache miss
 *   or one naming a lost object
 *   refs.json naming a missing   reported: only recomputing the referring
 *   object                       artifact's producer can fix it
 * Runs under the exclusive store lock (waits), like gc.
 */
#include "artifacts/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/archive.h"
#include "common/buf.h"
#include "common/fsutil.h"

typedef struct repairer {
    mf_store *s;
    mf_store_repair_fn cb;
    void *ctx;
    mf_store_repair_stats *st;
} repairer;

static void say(repairer *r, const char *what, const mf_digest *d, int outcome, const char *fmt, const char *arg)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    if (outcome == MF_REPAIR_FIXED) r->st->fixed++;
    else if (outcome == MF_REPAIR_RECOMPUTE) r->st->recompute++;
    else r->st->unfixed++;
    if (r->cb) r->cb(r->ctx, what, d, outcome, msg);
}

static char *path_in(const mf_store *s, const char *sub, const mf_digest *d, const char *ext)
{
    char hex[65];
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/%s/%s%s", mf_store_dir(s), sub, mf_digest_hex(d, hex), ext);
    return mf_buf_ok(&b) ? mf_buf_steal(&b) : (mf_buf_free(&b), NULL);
}

/* 0 if the object's archive verifies. */
static int object_ok(mf_store *s, const mf_digest *d)
{
    char *p = mf_store_object_path(s, d);
    int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
    mf_err e;
    int rc = fd < 0 ? MF_EIO : mf_archive_unpack(fd, NULL, d, NULL, &e);
    if (fd >= 0) close(fd);
    free(p);
    return rc;
}

/* Remove every action-cache entry that names d (or, d NULL, is damaged or names a missing object). */
static int drop_keys(repairer *r, const mf_digest *d, size_t *dropped, mf_err *err)
{
    char *dir = mf_path_join(mf_store_dir(r->s), "keys");
    if (!dir) return mf_err_set(err, MF_ENOMEM, "out of memory");
    DIR *dd = opendir(dir);
    if (!dd) {
        int rc = errno == ENOENT ? 0 : mf_err_errno(err, MF_EIO, "cannot open %s", dir);
        free(dir);
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(dd))) {
        mf_digest k, out;
        mf_err e;
        if (strlen(de->d_name) != 64 || mf_digest_parse(&k, de->d_name, &e)) continue;
        int rc = mf_store_key_get(r->s, &k, &out, NULL, &e);
        int drop = d ? (rc == 0 && mf_digest_eq(&out, d)) : (rc == MF_ECORRUPT || (rc == 0 && !mf_store_has(r->s, &out)));
        if (!drop) continue;
        char *p = mf_path_join(dir, de->d_name);
        if (p && unlink(p) == 0 && dropped) (*dropped)++;
        if (!d) say(r, "key", &k, MF_REPAIR_FIXED, "%s", rc ? "damaged entry removed (a cache miss now)" : "entry naming a missing object removed");
        free(p);
    }
    closedir(dd);
    free(dir);
    return 0;
}

/* A bad object: from its tree if that is still right, else aside and its keys dropped. */
static int repair_object(repairer *r, const mf_digest *d, mf_err *err)
{
    char *tree = path_in(r->s, "trees", d, ""), *obj = mf_store_object_path(r->s, d), *aside = path_in(r->s, "damaged", d, ".tar.zst");
    int rc = 0;
    if (!tree || !obj || !aside) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    mf_err e;
    if (mf_is_dir(tree) && mf_store_i_tree_check(tree, d, &e) == 0) {
        mf_digest got;
        if (mf_store_put_dir(r->s, tree, &got, NULL, &e) == 0 && mf_digest_eq(&got, d) && object_ok(r->s, d) == 0) {
            say(r, "object", d, MF_REPAIR_FIXED, "re-packed from its materialised tree%s", "");
            goto out;
        }
    }
    char *dir = mf_path_dirname(aside);
    if (!dir || (rc = mf_mkdir_p(dir, 0755, err))) {
        if (!dir) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        free(dir);
        goto out;
    }
    free(dir);
    if (rename(obj, aside) < 0 && errno != ENOENT) { rc = mf_err_errno(err, MF_EIO, "cannot move %s aside", obj); goto out; }
    if ((rc = mf_store_remove(r->s, d, NULL, err))) goto out; /* its tree and refs file */
    size_t dropped = 0;
    if ((rc = drop_keys(r, d, &dropped, err))) goto out;
    if (dropped) say(r, "object", d, MF_REPAIR_RECOMPUTE, "moved to %s; its producer runs again on the next run", aside);
    else say(r, "object", d, MF_REPAIR_NOT_FIXED, "moved to %s; no good copy and no action-cache entry produces it", aside);
out:
    free(tree);
    free(obj);
    free(aside);
    return rc;
}

int mf_store_repair(mf_store *s, mf_store_repair_fn cb, void *ctx, mf_store_repair_stats *st, mf_err *err)
{
    memset(st, 0, sizeof *st);
    repairer R = {s, cb, ctx, st};
    mf_store_obj *objs = NULL;
    size_t n = 0;
    int rc = mf_store_lock(s, MF_LOCK_WAIT, err);
    if (rc) return rc;
    if ((rc = mf_store_list(s, &objs, &n, err))) goto out;
    for (size_t i = 0; i < n; i++) {
        if (object_ok(s, &objs[i].digest) == 0) continue;
        if ((rc = repair_object(&R, &objs[i].digest, err))) goto out;
    }
    for (size_t i = 0; i < n; i++) { /* trees of good objects */
        char *tree = path_in(s, "trees", &objs[i].digest, "");
        mf_err e;
        if (!tree) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        if (mf_is_dir(tree) && mf_store_i_tree_check(tree, &objs[i].digest, &e) == MF_ECORRUPT) {
            char *tmp = mf_path_join(mf_store_dir(s), "tmp");
            if (tmp && mf_store_i_tree_discard(tree, tmp, &e) == 0)
                say(&R, "tree", &objs[i].digest, MF_REPAIR_FIXED, "modified copy removed (extracted again on use)%s", "");
            else say(&R, "tree", &objs[i].digest, MF_REPAIR_NOT_FIXED, "modified copy could not be removed: %s", e.msg);
            free(tmp);
        }
        free(tree);
    }
    if ((rc = drop_keys(&R, NULL, NULL, err))) goto out;
    for (size_t i = 0; i < n; i++) { /* refs.json naming what is not there */
        mf_digest *refs = NULL;
        size_t nr = 0;
        mf_err e;
        if (!mf_store_has(s, &objs[i].digest) || mf_store_refs(s, &objs[i].digest, &refs, &nr, &e)) continue;
        for (size_t k = 0; k < nr; k++)
            if (!mf_store_has(s, &refs[k])) {
                char ds[72];
                say(&R, "refs", &objs[i].digest, MF_REPAIR_NOT_FIXED, "refs.json names %s, which is not in the store",
                    mf_digest_str(&refs[k], ds));
            }
        free(refs);
    }
out:
    free(objs);
    mf_store_unlock(s);
    return rc;
}
