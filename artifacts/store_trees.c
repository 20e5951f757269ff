/*
 * artifacts/store_trees.c — materialised trees are checked before they are used.
 *
 * A tree under trees/<hex> is extracted from a verified object and made
 * read-only, but anyone can chmod a file and change it; a stage that read it
 * would compute on bad bytes while its manifest names the clean digest. So
 * each tree has a stamp, trees/<hex>.stamp: the SHA-256 of its files' stat
 * lines (path, size, mtime_ns, ctime_ns, inode, exec bit), taken when it was
 * made. Reusing a tree costs one lstat per file: a stamp that still matches
 * means nothing was written since; one that does not (or none at all) costs
 * a full hash, which either re-stamps a tree that is still right or moves a
 * damaged one aside so that it is extracted again from its object.
 */
#include "artifacts/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"

/* The stamp of a tree (scanned and sorted into t); t is kept for a hash on mismatch. */
static int stamp_of(const char *tree, mf_tree *t, char hex[65], mf_err *err)
{
    int rc = mf_tree_scan(t, tree, "", 0, err);
    if (!rc) rc = mf_tree_sort(t, err);
    if (rc) return rc;
    mf_buf b = MF_BUF_INIT;
    for (size_t i = 0; i < t->n; i++) {
        const mf_tree_entry *e = &t->v[i];
        mf_buf_printf(&b, "%s\t%llu\t%lld\t%lld\t%llu\t%d\n", e->path, (unsigned long long)e->size, (long long)e->mtime_ns,
                      (long long)e->ctime_ns, (unsigned long long)e->ino, e->exec);
    }
    if (!mf_buf_ok(&b)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_digest d;
    mf_digest_bytes(&d, b.data ? b.data : "", b.len);
    mf_digest_hex(&d, hex);
    mf_buf_free(&b);
    return 0;
}

static char *stamp_path(const char *tree)
{
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s.stamp", tree);
    return mf_buf_ok(&b) ? mf_buf_steal(&b) : (mf_buf_free(&b), NULL);
}

int mf_store_i_tree_stamp(const char *tree, mf_err *err)
{
    mf_tree t = {0};
    char hex[65], *p = stamp_path(tree);
    int rc = p ? stamp_of(tree, &t, hex, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!rc) rc = mf_write_file_atomic(p, hex, 64, 0644, err);
    mf_tree_free(&t);
    free(p);
    return rc;
}

int mf_store_i_tree_check(const char *tree, const mf_digest *d, mf_err *err)
{
    mf_tree t = {0};
    char hex[65], *p = stamp_path(tree), *old = NULL;
    size_t len = 0;
    mf_err e;
    int rc = p ? stamp_of(tree, &t, hex, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    if (rc) {
        if (rc != MF_ENOMEM) rc = mf_err_set(err, MF_ECORRUPT, "materialised tree %s cannot be read back", tree);
        goto out;
    }
    if (mf_read_file(p, &old, &len, &e) == 0 && len == 64 && !memcmp(old, hex, 64)) goto out; /* untouched */
    /* written since it was stamped (or never stamped): the content decides */
    mf_digest got;
    if ((rc = mf_tree_hash_files(&t, err)) || (rc = mf_tree_digest(&t, &got, err))) {
        if (rc != MF_ENOMEM) rc = mf_err_set(err, MF_ECORRUPT, "materialised tree %s cannot be read back", tree);
        goto out;
    }
    if (mf_digest_eq(&got, d)) {
        mf_write_file_atomic(p, hex, 64, 0644, &e); /* best effort: the next use hashes again */
        goto out;
    }
    char ds[72];
    rc = mf_err_set(err, MF_ECORRUPT, "materialised tree %s was modified: its content hashes to %s", tree,
                    mf_digest_str(&got, ds));
out:
    mf_tree_free(&t);
    free(old);
    free(p);
    return rc;
}

int mf_store_i_tree_discard(const char *tree, const char *tmp_dir, mf_err *err)
{
    /* moved aside first (atomic: no reader sees half a tree), then removed; gc sweeps a leftover */
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/mat-damaged-XXXXXX", tmp_dir);
    if (!mf_buf_ok(&b)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char *aside = mf_buf_steal(&b), *stamp = stamp_path(tree);
    int rc = 0;
    if (!mkdtemp(aside)) rc = mf_err_errno(err, MF_EIO, "cannot create a directory in %s", tmp_dir);
    else if (rename(tree, aside) < 0 && errno != ENOENT) rc = mf_err_errno(err, MF_EIO, "cannot move %s aside", tree);
    if (!rc) rc = mf_rm_rf(aside, err);
    if (stamp) unlink(stamp);
    free(stamp);
    free(aside);
    return rc;
}
