/*
 * artifacts/source.c — source digests with a stat cache, like git's index.
 *
 * A source (file, directory or glob; see store.h) is hashed exactly like an
 * artifact tree. To avoid re-reading an unchanged multi-GB corpus, the
 * SHA-256 of each file is kept in <store>/statcache, keyed by absolute path
 * and trusted only while (size, mtime_ns, ctime_ns, inode, device) are
 * unchanged. File format (text, one entry per line, path last):
 *     medflow-statcache-v1
 *     <sha256 hex> <size> <mtime_ns> <ctime_ns> <ino> <dev> <hashed_at_ns> <absolute path>
 *
 * Racy entries (as in git): a file modified within the filesystem's
 * timestamp granularity of the moment we read it could change again without
 * its mtime moving. An entry is therefore trusted only if the file's mtime is
 * more than RACY_NS older than the time it was hashed; a racy entry is simply
 * hashed again next time (and then becomes trusted).
 */
#include "artifacts/store.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"

#define CACHE_MAGIC "medflow-statcache-v1"
#define RACY_NS 50000000LL /* 50 ms: well above ext4/xfs timestamp granularity */

typedef struct centry {
    char *path;
    mf_digest sha;
    uint64_t size, ino, dev;
    int64_t mtime_ns, ctime_ns, hashed_at;
    int seen;
} centry;

typedef struct cache {
    centry *v;
    size_t n, cap;
} cache;

static int cmp_centry(const void *a, const void *b)
{
    return strcmp(((const centry *)a)->path, ((const centry *)b)->path);
}

static void cache_free(cache *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->v[i].path);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int cache_push(cache *c, const centry *e)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        centry *v = realloc(c->v, nc * sizeof *v);
        if (!v) return -1;
        c->v = v;
        c->cap = nc;
    }
    c->v[c->n++] = *e;
    return 0;
}

/* Load the cache; a missing or malformed file is an empty cache (it is only a cache). */
static void cache_load(const char *file, cache *c)
{
    char *text = NULL;
    size_t len = 0;
    mf_err e;
    if (mf_read_file(file, &text, &len, &e)) return;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line || strcmp(line, CACHE_MAGIC)) { free(text); return; }
    while ((line = strtok_r(NULL, "\n", &save))) {
        char hex[65];
        unsigned long long size, ino, dev;
        long long mt, ct, ha;
        int off = 0;
        if (sscanf(line, "%64s %llu %lld %lld %llu %llu %lld %n", hex, &size, &mt, &ct, &ino, &dev, &ha, &off) != 7 ||
            !off)
            continue;
        centry ce = {0};
        if (mf_digest_parse(&ce.sha, hex, &e)) continue;
        ce.size = size;
        ce.ino = ino;
        ce.dev = dev;
        ce.mtime_ns = mt;
        ce.ctime_ns = ct;
        ce.hashed_at = ha;
        ce.path = strdup(line + off);
        if (!ce.path || cache_push(c, &ce) < 0) { free(ce.path); break; }
    }
    free(text);
    if (c->n > 1) qsort(c->v, c->n, sizeof *c->v, cmp_centry);
}

static centry *cache_find(cache *c, const char *path)
{
    centry key = {0};
    key.path = (char *)path;
    return c->n ? bsearch(&key, c->v, c->n, sizeof *c->v, cmp_centry) : NULL;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Absolute form of a path ("/cwd/path" when relative; no symlink resolution). */
static char *absolute(const char *p)
{
    if (p[0] == '/') return strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    return mf_path_join(cwd, p);
}

static int has_glob(const char *p) { return strpbrk(p, "*?[") != NULL; }

static int collect(mf_tree *t, const char *path, mf_err *err)
{
    if (!has_glob(path)) {
        struct stat st;
        if (stat(path, &st) < 0)
            return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "source %s", path);
        if (S_ISDIR(st.st_mode)) return mf_tree_scan(t, path, "", MF_SCAN_FOLLOW, err);
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        return mf_tree_add_file(t, path, base, MF_SCAN_FOLLOW, err);
    }
    /* base directory: everything before the last '/' that precedes the first wildcard */
    size_t first = strcspn(path, "*?[");
    size_t cut = first;
    while (cut > 0 && path[cut - 1] != '/') cut--;
    glob_t g;
    int gr = glob(path, 0, NULL, &g);
    if (gr == GLOB_NOMATCH) return mf_err_set(err, MF_ENOTFOUND, "source %s matches no file", path);
    if (gr) return mf_err_set(err, MF_EIO, "cannot expand source pattern %s", path);
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *m = g.gl_pathv[i];
        const char *rel = strlen(m) >= cut ? m + cut : m;
        struct stat st;
        if (stat(m, &st) < 0) rc = mf_err_errno(err, MF_EIO, "source %s", m);
        else if (S_ISDIR(st.st_mode)) rc = mf_tree_scan(t, m, rel, MF_SCAN_FOLLOW, err);
        else rc = mf_tree_add_file(t, m, rel, MF_SCAN_FOLLOW, err);
        if (rc) goto out;
    }
out:
    globfree(&g);
    return rc;
}

static int cache_write(const char *file, cache *old, const mf_tree *t, char **keys, const int64_t *hashed_at,
                       mf_err *err)
{
    cache nc = {0};
    int rc = 0;
    /* fresh entries for this source */
    for (size_t i = 0; i < t->n; i++) {
        if (!keys[i] || strchr(keys[i], '\n')) continue;
        centry e = {0};
        e.path = strdup(keys[i]);
        e.sha = t->v[i].sha;
        e.size = t->v[i].size;
        e.ino = t->v[i].ino;
        e.dev = t->v[i].dev;
        e.mtime_ns = t->v[i].mtime_ns;
        e.ctime_ns = t->v[i].ctime_ns;
        e.hashed_at = hashed_at[i];
        if (!e.path || cache_push(&nc, &e) < 0) { free(e.path); rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        centry *o = cache_find(old, keys[i]);
        if (o) o->seen = 1;
    }
    /* other sources' entries, while their files still exist */
    for (size_t i = 0; i < old->n; i++) {
        if (old->v[i].seen || !mf_is_file(old->v[i].path)) continue;
        centry e = old->v[i];
        e.path = strdup(e.path);
        if (!e.path || cache_push(&nc, &e) < 0) { free(e.path); rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    }
    if (nc.n > 1) qsort(nc.v, nc.n, sizeof *nc.v, cmp_centry);
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, CACHE_MAGIC "\n");
    for (size_t i = 0; i < nc.n; i++) {
        char hex[65];
        centry *e = &nc.v[i];
        mf_buf_printf(&b, "%s %llu %lld %lld %llu %llu %lld %s\n", mf_digest_hex(&e->sha, hex),
                      (unsigned long long)e->size, (long long)e->mtime_ns, (long long)e->ctime_ns,
                      (unsigned long long)e->ino, (unsigned long long)e->dev, (long long)e->hashed_at, e->path);
    }
    rc = mf_buf_ok(&b) ? mf_write_file_atomic(file, b.data, b.len, 0644, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_buf_free(&b);
out:
    cache_free(&nc);
    return rc;
}

int mf_source_digest(mf_store *s, const char *path, int flags, mf_digest *out, mf_source_stats *st, mf_err *err)
{
    mf_source_stats local = {0};
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    mf_tree t = {0};
    cache c = {0};
    char **keys = NULL;
    int64_t *hashed_at = NULL;
    char *cfile = s ? mf_path_join(mf_store_dir(s), "statcache") : NULL;
    int rc;
    if ((rc = collect(&t, path, err)) != 0) goto out;
    if ((rc = mf_tree_sort(&t, err)) != 0) goto out;
    keys = calloc(t.n + 1, sizeof *keys);
    hashed_at = calloc(t.n + 1, sizeof *hashed_at);
    if (!keys || !hashed_at) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if (cfile && !(flags & MF_SOURCE_REHASH)) cache_load(cfile, &c);
    int dirty = 0;
    for (size_t i = 0; i < t.n; i++) {
        mf_tree_entry *e = &t.v[i];
        st->files++;
        st->bytes += e->size;
        if (!(keys[i] = absolute(e->abs))) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        centry *ce = cache_find(&c, keys[i]);
        if (ce && ce->size == e->size && ce->mtime_ns == e->mtime_ns && ce->ctime_ns == e->ctime_ns &&
            ce->ino == e->ino && ce->dev == e->dev && e->mtime_ns + RACY_NS < ce->hashed_at) {
            e->sha = ce->sha;
            e->hashed = 1;
            hashed_at[i] = ce->hashed_at;
            continue;
        }
        hashed_at[i] = now_ns();
        dirty = 1;
        st->hashed++;
        st->bytes_hashed += e->size;
        mf_tree tmp = {&t.v[i], 1, 1};
        if ((rc = mf_tree_hash_files(&tmp, err))) goto out;
    }
    if ((rc = mf_tree_digest(&t, out, err))) goto out;
    if (cfile && dirty) {
        if (flags & MF_SOURCE_REHASH) cache_load(cfile, &c);
        /* The cache is an optimisation: failing to write it is not an error. */
        mf_err e2;
        cache_write(cfile, &c, &t, keys, hashed_at, &e2);
    }
out:
    if (keys)
        for (size_t i = 0; i < t.n; i++) free(keys[i]);
    free(keys);
    free(hashed_at);
    free(cfile);
    cache_free(&c);
    mf_tree_free(&t);
    return rc;
}
