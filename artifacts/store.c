/*
 * artifacts/store.c — the content-addressed store: objects, action cache,
 * materialised trees, locking, verify and gc (see store.h for the layout and
 * the atomicity and locking rules).
 */
#include "artifacts/store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/archive.h"
#include "artifacts/store_impl.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"

#define MAX_REF_DEPTH 16

struct mf_store {
    char *dir, *objects, *keys, *trees, *tmp, *lockpath;
    int lock_fd;
    int exclusive;     /* this handle holds the writer lock */
    int shared_depth;  /* nesting of internal shared-lock sections */
    int held_shared;   /* mf_store_lock(MF_LOCK_SHARED) holds one level of it */
    int level, threads;
    mf_statcache *statcache; /* source.c's, created on first use */
    size_t trees_repaired;   /* materialised trees found modified and extracted again */
};

const char *mf_store_dir(const mf_store *s) { return s->dir; }
size_t mf_store_trees_repaired(const mf_store *s) { return s->trees_repaired; }

mf_statcache *mf_store_i_statcache(mf_store *s)
{
    mf_err e;
    if (!s->statcache && mf_statcache_new(&s->statcache, s->dir, &e)) return NULL;
    return s->statcache;
}

int mf_source_cache_flush(mf_store *s, mf_err *err) { return mf_statcache_flush(s->statcache, err); }

void mf_store_set_compression(mf_store *s, int level, int threads)
{
    s->level = level;
    s->threads = threads < 1 ? 1 : threads;
}

void mf_store_free(mf_store *s)
{
    if (!s) return;
    mf_err e;
    mf_statcache_flush(s->statcache, &e); /* best effort: it is only a cache */
    mf_statcache_free(s->statcache);
    if (s->lock_fd >= 0) close(s->lock_fd);
    free(s->dir);
    free(s->objects);
    free(s->keys);
    free(s->trees);
    free(s->tmp);
    free(s->lockpath);
    free(s);
}

int mf_store_open(mf_store **out, const char *dir, mf_err *err)
{
    *out = NULL;
    mf_store *s = calloc(1, sizeof *s);
    if (!s) return mf_err_set(err, MF_ENOMEM, "out of memory");
    s->lock_fd = -1;
    s->level = MF_ARCHIVE_LEVEL_DEFAULT;
    s->threads = 1;
    s->dir = strdup(dir);
    s->objects = mf_path_join(dir, "objects");
    s->keys = mf_path_join(dir, "keys");
    s->trees = mf_path_join(dir, "trees");
    s->tmp = mf_path_join(dir, "tmp");
    s->lockpath = mf_path_join(dir, "lock");
    if (!s->dir || !s->objects || !s->keys || !s->trees || !s->tmp || !s->lockpath) {
        mf_store_free(s);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    const char *dirs[] = {s->dir, s->objects, s->keys, s->trees, s->tmp};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        int rc = mf_mkdir_p(dirs[i], 0755, err);
        if (rc) {
            mf_err_wrap(err, "cannot open store %s", dir);
            mf_store_free(s);
            return rc;
        }
    }
    s->lock_fd = open(s->lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        int rc = mf_err_errno(err, MF_EIO, "cannot open store lock %s", s->lockpath);
        mf_store_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- locking ---- */

static int flock_retry(int fd, int op)
{
    int r;
    while ((r = flock(fd, op)) < 0 && errno == EINTR) {}
    return r;
}

/* Who holds the store lock: the pid an exclusive holder wrote, if that process is alive ("" otherwise). */
static void lock_holder(mf_store *s, char pid[32])
{
    ssize_t n = pread(s->lock_fd, pid, 31, 0);
    pid[n > 0 ? n : 0] = 0;
    pid[strcspn(pid, "\n")] = 0;
    long p = atol(pid);
    if (p <= 0 || kill((pid_t)p, 0) != 0) pid[0] = 0;
}

static int lock_busy(mf_store *s, mf_err *err)
{
    char pid[32];
    lock_holder(s, pid);
    return mf_err_set(err, MF_EBUSY, "store %s is in use by another medflow process%s%s%s", s->dir,
                      *pid ? " (pid " : "", pid, *pid ? ")" : "");
}

/* MF_LOCK_SHARED: what a run holds from its plan to its ledger commit, so
 * that gc (exclusive) never runs under it; any number of runs share it. */
static int lock_shared(mf_store *s, int flags, mf_err *err)
{
    if (s->exclusive || s->held_shared) return 0;
    if (s->shared_depth == 0 && flock_retry(s->lock_fd, LOCK_SH | (flags & MF_LOCK_NOWAIT ? LOCK_NB : 0)) < 0)
        return errno == EWOULDBLOCK ? lock_busy(s, err) : mf_err_errno(err, MF_EIO, "cannot lock %s", s->lockpath);
    s->shared_depth++;
    s->held_shared = 1;
    return 0;
}

int mf_store_lock(mf_store *s, int flags, mf_err *err)
{
    if (flags & MF_LOCK_SHARED) return lock_shared(s, flags, err);
    if (s->exclusive) return 0;
    if (s->held_shared) return mf_err_set(err, MF_EINVAL, "store %s: the shared lock is held by this handle", s->dir);
    if (flock_retry(s->lock_fd, LOCK_EX | (flags & MF_LOCK_NOWAIT ? LOCK_NB : 0)) < 0) {
        if (errno == EWOULDBLOCK) return lock_busy(s, err);
        return mf_err_errno(err, MF_EIO, "cannot lock %s", s->lockpath);
    }
    s->exclusive = 1;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) == 0 && pwrite(s->lock_fd, pid, (size_t)n, 0) < 0) {
        /* the pid is only informative */
    }
    return 0;
}

void mf_store_unlock(mf_store *s)
{
    if (s->held_shared) {
        s->held_shared = 0;
        if (s->shared_depth > 0 && --s->shared_depth == 0) flock_retry(s->lock_fd, LOCK_UN);
        return;
    }
    if (!s->exclusive) return;
    if (ftruncate(s->lock_fd, 0) < 0) {
        /* informative only */
    }
    flock_retry(s->lock_fd, LOCK_UN);
    s->exclusive = 0;
}

/* Readers/writers that are not the lock holder share the lock, so gc (exclusive) waits for them. */
static int shared_begin(mf_store *s, mf_err *err)
{
    if (s->exclusive) return 0;
    if (s->shared_depth++ == 0 && flock_retry(s->lock_fd, LOCK_SH) < 0) {
        s->shared_depth = 0;
        return mf_err_errno(err, MF_EIO, "cannot lock %s", s->lockpath);
    }
    return 0;
}

static void shared_end(mf_store *s)
{
    if (s->exclusive) return;
    if (s->shared_depth > 0 && --s->shared_depth == 0) flock_retry(s->lock_fd, LOCK_UN);
}

/* ---- paths ---- */

static char *obj_path(const mf_store *s, const mf_digest *d, const char *ext)
{
    char hex[65];
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/%s%s", s->objects, mf_digest_hex(d, hex), ext);
    if (!mf_buf_ok(&b)) { mf_buf_free(&b); return NULL; }
    return mf_buf_steal(&b);
}

char *mf_store_object_path(const mf_store *s, const mf_digest *d) { return obj_path(s, d, ".tar.zst"); }

static char *tree_path(const mf_store *s, const mf_digest *d)
{
    char hex[65];
    return mf_path_join(s->trees, mf_digest_hex(d, hex));
}

int mf_store_has(mf_store *s, const mf_digest *d)
{
    char *p = mf_store_object_path(s, d);
    int r = p && mf_is_file(p);
    free(p);
    return r;
}

int mf_store_tmpdir(mf_store *s, const char *label, char **out, mf_err *err)
{
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/%s-XXXXXX", s->tmp, label ? label : "out");
    if (!mf_buf_ok(&b)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!mkdtemp(b.data)) {
        int rc = mf_err_errno(err, MF_EIO, "cannot create a directory in %s", s->tmp);
        mf_buf_free(&b);
        return rc;
    }
    *out = mf_buf_steal(&b);
    return 0;
}

/* ---- refs.json ---- */

/* Parse dir/refs.json (if any) into digests; each must already be in the store. */
static int read_refs_json(mf_store *s, const char *file, mf_buf *lines, mf_err *err)
{
    mf_json *j = NULL;
    int rc;
    if ((rc = mf_json_parse_file(&j, file, err)) != 0) goto out;
    const mf_json *refs = mf_json_get(j, "refs");
    if (j->type != MF_JSON_OBJECT || !refs || refs->type != MF_JSON_OBJECT) {
        rc = mf_err_set(err, MF_EINVAL, "%s: expected {\"refs\": {\"name\": \"sha256:...\", ...}}", file);
        goto out;
    }
    for (size_t i = 0; i < refs->n; i++) {
        mf_digest d;
        const char *v = mf_json_str(refs->items[i], NULL);
        if (!v || mf_digest_parse(&d, v, err)) {
            rc = mf_err_at(err, MF_EINVAL, file, refs->items[i]->line, refs->items[i]->col,
                           "refs.json: '%s' must be a digest \"sha256:<64 hex>\"", refs->keys[i]);
            goto out;
        }
        if (!mf_store_has(s, &d)) {
            char ds[72];
            rc = mf_err_set(err, MF_ENOTFOUND, "%s: '%s' names %s, which is not in the store", file, refs->keys[i],
                            mf_digest_str(&d, ds));
            goto out;
        }
        char hex[65];
        mf_buf_printf(lines, "%s\n", mf_digest_hex(&d, hex));
    }
out:
    mf_json_free(j);
    return rc;
}

int mf_store_refs(mf_store *s, const mf_digest *d, mf_digest **refs, size_t *n, mf_err *err)
{
    *refs = NULL;
    *n = 0;
    char *p = obj_path(s, d, ".refs");
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    int rc = mf_read_file(p, &text, &len, err);
    free(p);
    if (rc == MF_ENOTFOUND) { mf_err_clear(err); return 0; }
    if (rc) return rc;
    size_t cap = len / 65 + 1, k = 0;
    mf_digest *v = calloc(cap, sizeof *v);
    if (!v) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (char *line = strtok(text, "\n"); line && k < cap; line = strtok(NULL, "\n")) {
        if ((rc = mf_digest_parse(&v[k], line, err)) != 0) goto out;
        k++;
    }
    *refs = v;
    *n = k;
    v = NULL;
out:
    free(text);
    free(v);
    return rc;
}

/* ---- put ---- */

static int put_tree(mf_store *s, mf_tree *t, const char *refs_json, mf_digest *digest, uint64_t *bytes, mf_err *err)
{
    int rc = mf_tree_sort(t, err);
    if (rc) return rc;
    if ((rc = shared_begin(s, err))) return rc;
    mf_buf refs = MF_BUF_INIT;
    char *tmp = NULL, *dst = NULL, *refpath = NULL;
    int fd = -1;
    if (refs_json && (rc = read_refs_json(s, refs_json, &refs, err))) goto out;
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/put-XXXXXX", s->tmp);
    if (!mf_buf_ok(&b)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    tmp = mf_buf_steal(&b);
    fd = mkstemp(tmp);
    if (fd < 0) { rc = mf_err_errno(err, MF_EIO, "cannot create a file in %s", s->tmp); goto out; }
    uint64_t n = 0;
    if ((rc = mf_archive_pack(t, fd, s->level, s->threads, digest, &n, err))) goto out;
    if (fsync(fd) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot fsync %s", tmp); goto out; }
    if (fchmod(fd, 0444) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot chmod %s", tmp); goto out; }
    close(fd);
    fd = -1;
    if (bytes) *bytes = n;
    dst = mf_store_object_path(s, digest);
    refpath = obj_path(s, digest, ".refs");
    if (!dst || !refpath) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    /* An object already there is replaced all the same: same tree by
     * construction, and if the stored copy was damaged, this heals it (a
     * recomputed output must not keep a bad object alive). The rename is
     * atomic, so a reader sees the old file or the new one. */
    /* The refs file goes first: an object is never visible without it. */
    if (refs.len && (rc = mf_write_file_atomic(refpath, refs.data, refs.len, 0444, err))) goto out;
    if (rename(tmp, dst) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot publish %s", dst); goto out; }
    free(tmp);
    tmp = NULL;
    rc = mf_fsync_dir(s->objects, err);
out:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(dst);
    free(refpath);
    mf_buf_free(&refs);
    shared_end(s);
    return rc;
}

int mf_store_put_dir(mf_store *s, const char *dir, mf_digest *digest, uint64_t *bytes, mf_err *err)
{
    mf_tree t = {0};
    char *refs = NULL;
    int rc;
    if ((rc = mf_tree_scan(&t, dir, "", 0, err)) != 0) goto out;
    for (size_t i = 0; i < t.n; i++)
        if (!strcmp(t.v[i].path, "refs.json")) refs = t.v[i].abs;
    rc = put_tree(s, &t, refs, digest, bytes, err);
out:
    if (rc) mf_err_wrap(err, "cannot store %s", dir);
    mf_tree_free(&t);
    return rc;
}

int mf_store_put_file(mf_store *s, const char *path, const char *name, mf_digest *digest, mf_err *err)
{
    mf_tree t = {0};
    int rc;
    if ((rc = mf_tree_add_file(&t, path, name, 0, err)) != 0) goto out;
    rc = put_tree(s, &t, NULL, digest, NULL, err);
out:
    mf_tree_free(&t);
    return rc;
}

/* ---- materialise ---- */

/* Make a tree read-only, bottom-up (files 0444/0555, directories 0555). */
static int make_readonly(const char *path, mf_err *err)
{
    DIR *d = opendir(path);
    if (!d) return mf_err_errno(err, MF_EIO, "cannot open %s", path);
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = mf_path_join(path, de->d_name);
        if (!p) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        struct stat st;
        if (lstat(p, &st) < 0) rc = mf_err_errno(err, MF_EIO, "cannot stat %s", p);
        else if (S_ISDIR(st.st_mode)) rc = make_readonly(p, err);
        else if (chmod(p, (st.st_mode & S_IXUSR) ? 0555 : 0444) < 0) rc = mf_err_errno(err, MF_EIO, "cannot chmod %s", p);
        free(p);
        if (rc) goto out;
    }
    if (chmod(path, 0555) < 0) rc = mf_err_errno(err, MF_EIO, "cannot chmod %s", path);
out:
    closedir(d);
    return rc;
}

static int materialize_rec(mf_store *s, const mf_digest *d, char **path, int depth, mf_err *err)
{
    char ds[72];
    mf_digest_str(d, ds);
    if (depth > MAX_REF_DEPTH) return mf_err_set(err, MF_ECORRUPT, "refs.json chain deeper than %d at %s", MAX_REF_DEPTH, ds);
    char *dst = tree_path(s, d), *obj = mf_store_object_path(s, d), *tmp = NULL;
    mf_digest *refs = NULL;
    size_t nrefs = 0;
    int rc = 0, fd = -1;
    if (!dst || !obj) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if (mf_is_dir(dst)) { /* a tree someone wrote into is extracted again, never used */
        mf_err e;
        rc = mf_store_i_tree_check(dst, d, &e);
        if (rc == MF_ECORRUPT) {
            s->trees_repaired++;
            rc = mf_store_i_tree_discard(dst, s->tmp, err);
        } else if (rc) *err = e;
        if (rc) goto out;
    }
    if (!mf_is_dir(dst)) {
        fd = open(obj, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = errno == ENOENT ? mf_err_set(err, MF_ENOTFOUND, "%s is not in the store %s", ds, s->dir)
                                 : mf_err_errno(err, MF_EIO, "cannot open %s", obj);
            goto out;
        }
        if ((rc = mf_store_tmpdir(s, "mat", &tmp, err))) goto out;
        if ((rc = mf_archive_unpack(fd, tmp, d, NULL, err)) != 0 || (rc = make_readonly(tmp, err)) != 0) {
            mf_err_wrap(err, "cannot materialise %s", ds);
            goto out;
        }
        if (rename(tmp, dst) < 0) {
            if (errno != EEXIST && errno != ENOTEMPTY) {
                rc = mf_err_errno(err, MF_EIO, "cannot publish %s", dst);
                goto out;
            }
            /* another process materialised it first: use theirs */
        } else {
            /* No fsync: trees/ is a cache of verified objects (which are
             * durable). The rename makes it atomic against a killed process;
             * after a power loss, the stamp check (or `medflow verify`) finds a torn tree. */
            free(tmp);
            tmp = NULL;
            mf_err e;
            mf_store_i_tree_stamp(dst, &e); /* without a stamp, the next use hashes the tree */
        }
    }
    if ((rc = mf_store_refs(s, d, &refs, &nrefs, err))) goto out;
    for (size_t i = 0; i < nrefs; i++)
        if ((rc = materialize_rec(s, &refs[i], NULL, depth + 1, err)) != 0) goto out;
out:
    free(refs);
    if (fd >= 0) close(fd);
    if (tmp) {
        mf_err e2;
        mf_rm_rf(tmp, &e2);
        free(tmp);
    }
    free(obj);
    if (!rc && path) *path = dst;
    else free(dst);
    return rc;
}

int mf_store_materialize(mf_store *s, const mf_digest *d, char **path, mf_err *err)
{
    if (path) *path = NULL;
    int rc = shared_begin(s, err);
    if (rc) return rc;
    rc = materialize_rec(s, d, path, 0, err);
    shared_end(s);
    return rc;
}

int mf_store_adopt(mf_store *s, const char *dir, const mf_digest *d, char **path, mf_err *err)
{
    if (path) *path = NULL;
    char ds[72];
    if (!mf_store_has(s, d))
        return mf_err_set(err, MF_ENOTFOUND, "cannot adopt %s as %s: the object is not in the store", dir, mf_digest_str(d, ds));
    char *dst = tree_path(s, d);
    if (!dst) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = shared_begin(s, err);
    if (rc) {
        free(dst);
        return rc;
    }
    if (!mf_is_dir(dst)) {
        if ((rc = make_readonly(dir, err)) != 0) goto out;
        if (rename(dir, dst) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
            rc = mf_err_errno(err, errno == EXDEV ? MF_EINVAL : MF_EIO, "cannot move %s to %s", dir, dst);
            goto out;
        }
        mf_err e;
        if (!mf_is_dir(dir)) mf_store_i_tree_stamp(dst, &e);
    }
    if (mf_is_dir(dir)) rc = mf_rm_rf(dir, err); /* the tree existed (or another process won) */
out:
    shared_end(s);
    if (!rc && path) *path = dst;
    else free(dst);
    return rc;
}

/* ---- action cache ---- */

static char *key_path(const mf_store *s, const mf_digest *key)
{
    char hex[65];
    return mf_path_join(s->keys, mf_digest_hex(key, hex));
}

char *mf_store_key_path(const mf_store *s, const mf_digest *key) { return key_path(s, key); }

int mf_store_key_put(mf_store *s, const mf_digest *key, const mf_digest *out, const char *run_id, mf_err *err)
{
    return mf_store_key_put_build(s, key, out, run_id, NULL, err);
}

int mf_store_key_get(mf_store *s, const mf_digest *key, mf_digest *out, char **run_id, mf_err *err)
{
    return mf_store_key_get_build(s, key, out, run_id, NULL, err);
}

int mf_store_key_put_build(mf_store *s, const mf_digest *key, const mf_digest *out, const char *run_id,
                           const char *build, mf_err *err)
{
    char ds[72];
    mf_json *j = mf_json_new_object();
    if (!j || mf_json_set(j, "digest", mf_json_new_str(mf_digest_str(out, ds))) ||
        mf_json_set(j, "run", mf_json_new_str(run_id ? run_id : "")) ||
        (build && *build && mf_json_set(j, "build", mf_json_new_str(build)))) {
        mf_json_free(j);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, j, MF_JSON_SORTED);
    mf_buf_putc(&b, '\n');
    mf_json_free(j);
    char *p = key_path(s, key);
    int rc = (!p || !mf_buf_ok(&b)) ? mf_err_set(err, MF_ENOMEM, "out of memory")
                                   : mf_write_file_atomic(p, b.data, b.len, 0644, err);
    free(p);
    mf_buf_free(&b);
    return rc;
}

int mf_store_key_get_build(mf_store *s, const mf_digest *key, mf_digest *out, char **run_id, char **build,
                           mf_err *err)
{
    if (run_id) *run_id = NULL;
    if (build) *build = NULL;
    char *p = key_path(s, key);
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json *j = NULL;
    int rc = mf_json_parse_file(&j, p, err);
    if (rc == MF_ENOTFOUND) {
        char ks[72];
        rc = mf_err_set(err, MF_ENOTFOUND, "no action-cache entry for key %s", mf_digest_str(key, ks));
        goto out;
    }
    if (rc && rc != MF_ENOMEM && rc != MF_EIO) { /* unreadable JSON: a damaged entry, not the caller's input */
        char why[1024];
        rc = mf_err_set(err, MF_ECORRUPT, "action-cache entry %s is damaged (%s)", p, mf_err_str(err, why, sizeof why));
    }
    if (rc) goto out;
    const char *d = mf_json_get_str(j, "digest", NULL);
    if (!d || mf_digest_parse(out, d, err)) {
        rc = mf_err_set(err, MF_ECORRUPT, "action-cache entry %s is damaged (no \"digest\": \"sha256:...\")", p);
        goto out;
    }
    if (run_id && !(*run_id = strdup(mf_json_get_str(j, "run", "")))) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!rc && build && !(*build = strdup(mf_json_get_str(j, "build", "")))) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
out:
    mf_json_free(j);
    free(p);
    return rc;
}

/* ---- list / remove ---- */

static int cmp_digest(const void *a, const void *b) { return memcmp(a, b, 32); }

/* Digests named "<64hex><suffix>" in dir. */
static int list_named(const char *dir, const char *suffix, mf_digest **out, size_t *n, mf_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return mf_err_errno(err, MF_EIO, "cannot open %s", dir);
    size_t cap = 0, k = 0, sl = strlen(suffix);
    mf_digest *v = NULL;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != 64 + sl || strcmp(de->d_name + 64, suffix)) continue;
        char hex[65];
        memcpy(hex, de->d_name, 64);
        hex[64] = 0;
        mf_digest dg;
        mf_err e2;
        if (mf_digest_parse(&dg, hex, &e2)) continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            mf_digest *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
            v = nv;
        }
        v[k++] = dg;
    }
    if (k > 1) qsort(v, k, sizeof *v, cmp_digest);
    *out = v;
    *n = k;
    v = NULL;
out:
    closedir(d);
    free(v);
    return rc;
}

int mf_store_list(mf_store *s, mf_store_obj **objs, size_t *n, mf_err *err)
{
    mf_digest *v;
    size_t k;
    int rc = list_named(s->objects, ".tar.zst", &v, &k, err);
    if (rc) return rc;
    mf_store_obj *o = calloc(k ? k : 1, sizeof *o);
    if (!o) { free(v); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    for (size_t i = 0; i < k; i++) {
        o[i].digest = v[i];
        char *p = mf_store_object_path(s, &v[i]), *t = tree_path(s, &v[i]);
        struct stat st;
        if (p && stat(p, &st) == 0) o[i].bytes = (uint64_t)st.st_size;
        o[i].materialized = t && mf_is_dir(t);
        free(p);
        free(t);
    }
    free(v);
    *objs = o;
    *n = k;
    return 0;
}

int mf_store_remove(mf_store *s, const mf_digest *d, uint64_t *freed, mf_err *err)
{
    char *p = mf_store_object_path(s, d), *r = obj_path(s, d, ".refs"), *t = tree_path(s, d);
    int rc = 0;
    if (!p || !r || !t) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    struct stat st;
    if (freed) *freed = stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
    if ((rc = mf_rm_rf(t, err))) goto out;
    char stamp[PATH_MAX];
    snprintf(stamp, sizeof stamp, "%s.stamp", t);
    unlink(stamp);
    if (unlink(p) < 0 && errno != ENOENT) { rc = mf_err_errno(err, MF_EIO, "cannot remove %s", p); goto out; }
    if (unlink(r) < 0 && errno != ENOENT) { rc = mf_err_errno(err, MF_EIO, "cannot remove %s", r); goto out; }
out:
    free(p);
    free(r);
    free(t);
    return rc;
}

/* ---- verify ---- */

static void report(mf_store_report_fn cb, void *ctx, const char *what, const mf_digest *d, const mf_err *e, size_t *bad)
{
    (*bad)++;
    if (cb) cb(ctx, what, d, e);
}

int mf_store_verify(mf_store *s, mf_store_report_fn cb, void *ctx, size_t *bad, mf_err *err)
{
    *bad = 0;
    mf_digest *v = NULL, *trees = NULL, *keys = NULL;
    size_t n = 0, nt = 0, nk = 0;
    int rc = list_named(s->objects, ".tar.zst", &v, &n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        mf_err e;
        mf_err_clear(&e);
        char *p = mf_store_object_path(s, &v[i]);
        int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0) mf_err_errno(&e, MF_EIO, "cannot open %s", p ? p : "object");
        else if (mf_archive_unpack(fd, NULL, &v[i], NULL, &e) == 0) mf_err_clear(&e);
        if (fd >= 0) close(fd);
        free(p);
        if (e.code) report(cb, ctx, "object", &v[i], &e, bad);
        mf_digest *refs = NULL;
        size_t nr = 0;
        if (mf_store_refs(s, &v[i], &refs, &nr, &e)) report(cb, ctx, "refs", &v[i], &e, bad);
        for (size_t k = 0; k < nr; k++)
            if (!mf_store_has(s, &refs[k])) {
                char ds[72];
                mf_err_set(&e, MF_ENOTFOUND, "refs.json names %s, which is not in the store", mf_digest_str(&refs[k], ds));
                report(cb, ctx, "refs", &v[i], &e, bad);
            }
        free(refs);
    }
    if ((rc = list_named(s->trees, "", &trees, &nt, err))) goto out;
    for (size_t i = 0; i < nt; i++) {
        mf_err e;
        mf_err_clear(&e);
        char *t = tree_path(s, &trees[i]);
        mf_digest got;
        if (!t) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        if (mf_digest_dir(&got, t, &e) == 0 && !mf_digest_eq(&got, &trees[i])) {
            char ds[72];
            mf_err_set(&e, MF_ECORRUPT, "materialised tree %s was modified: its content hashes to %s", t,
                       mf_digest_str(&got, ds));
        }
        free(t);
        if (e.code) report(cb, ctx, "tree", &trees[i], &e, bad);
    }
    if ((rc = list_named(s->keys, "", &keys, &nk, err))) goto out;
    for (size_t i = 0; i < nk; i++) {
        mf_err e;
        mf_err_clear(&e);
        mf_digest out;
        if (mf_store_key_get(s, &keys[i], &out, NULL, &e) == 0 && !mf_store_has(s, &out)) {
            char ds[72];
            mf_err_set(&e, MF_ENOTFOUND, "action-cache entry points to %s, which is not in the store",
                       mf_digest_str(&out, ds));
        }
        if (e.code) report(cb, ctx, "key", &keys[i], &e, bad);
    }
out:
    free(v);
    free(trees);
    free(keys);
    return rc;
}

/* ---- gc ---- */

static int in_set(const mf_digest *set, size_t n, const mf_digest *d)
{
    return n && bsearch(d, set, n, sizeof *set, cmp_digest) != NULL;
}

int mf_store_gc(mf_store *s, const mf_digest *roots, size_t n_roots, int dry_run, mf_store_gc_stats *st, mf_err *err)
{
    memset(st, 0, sizeof *st);
    int had_lock = s->exclusive;
    int rc = mf_store_lock(s, MF_LOCK_NOWAIT, err);
    if (rc) return rc;
    /* keep = closure of roots over refs (a worklist over a growing array) */
    size_t cap = n_roots + 16, nk = 0;
    mf_digest *keep = malloc(cap * sizeof *keep), *objs = NULL, *keys = NULL, *trees = NULL;
    size_t no = 0, nkeys = 0, nt = 0;
    if (!keep) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0; i < n_roots; i++) keep[nk++] = roots[i];
    for (size_t i = 0; i < nk; i++) {
        mf_digest *refs = NULL;
        size_t nr = 0;
        if (mf_store_refs(s, &keep[i], &refs, &nr, err)) { mf_err_clear(err); continue; }
        for (size_t k = 0; k < nr; k++) {
            int seen = 0;
            for (size_t j = 0; j < nk && !seen; j++) seen = mf_digest_eq(&keep[j], &refs[k]);
            if (seen) continue;
            if (nk == cap) {
                cap *= 2;
                mf_digest *nv = realloc(keep, cap * sizeof *keep);
                if (!nv) { free(refs); rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
                keep = nv;
            }
            keep[nk++] = refs[k];
        }
        free(refs);
    }
    if (nk > 1) qsort(keep, nk, sizeof *keep, cmp_digest);
    if ((rc = list_named(s->objects, ".tar.zst", &objs, &no, err))) goto out;
    for (size_t i = 0; i < no; i++) {
        char *p = mf_store_object_path(s, &objs[i]);
        struct stat sb;
        uint64_t sz = (p && stat(p, &sb) == 0) ? (uint64_t)sb.st_size : 0;
        free(p);
        if (in_set(keep, nk, &objs[i])) {
            st->kept++;
            st->bytes_kept += sz;
            continue;
        }
        st->removed++;
        st->bytes_removed += sz;
        if (!dry_run && (rc = mf_store_remove(s, &objs[i], NULL, err))) goto out;
    }
    if (dry_run) goto out;
    /* stale refs files, trees and action-cache entries of removed objects */
    if ((rc = list_named(s->trees, "", &trees, &nt, err))) goto out;
    for (size_t i = 0; i < nt; i++)
        if (!in_set(keep, nk, &trees[i]) && (rc = mf_store_remove(s, &trees[i], NULL, err))) goto out;
    if ((rc = list_named(s->keys, "", &keys, &nkeys, err))) goto out;
    for (size_t i = 0; i < nkeys; i++) {
        mf_digest out;
        mf_err e;
        if (mf_store_key_get(s, &keys[i], &out, NULL, &e) == 0 && mf_store_has(s, &out)) continue;
        char *p = key_path(s, &keys[i]);
        if (p) unlink(p);
        free(p);
    }
    free(objs);
    objs = NULL;
    if ((rc = list_named(s->objects, ".refs", &objs, &no, err))) goto out;
    for (size_t i = 0; i < no; i++)
        if (!mf_store_has(s, &objs[i])) {
            char *p = obj_path(s, &objs[i], ".refs");
            if (p) unlink(p);
            free(p);
        }
    /* our own litter in tmp/ (puts and extractions killed midway); other
     * entries (stage work directories) belong to the engine */
    DIR *d = opendir(s->tmp);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (!strncmp(de->d_name, "put-", 4) || !strncmp(de->d_name, "mat-", 4)) {
                char *p = mf_path_join(s->tmp, de->d_name);
                mf_err e;
                if (p) mf_rm_rf(p, &e);
                free(p);
            }
        closedir(d);
    }
    mf_store_key_locks_prune(s);
out:
    if (!had_lock) mf_store_unlock(s);
    free(keep);
    free(objs);
    free(keys);
    free(trees);
    return rc;
}
