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
 * The file is read once per store handle (the first source digest), kept in
 * memory with a hash index on the path, and written back once, by
 * mf_source_cache_flush or mf_store_free, when it changed: a graph with many
 * sources costs one read and at most one write, not one per source.
 *
 * Racy entries (as in git): a file modified within the filesystem's
 * timestamp granularity of the moment we read it could change again without
 * its mtime moving. An entry is therefore trusted only if the file's mtime is
 * more than RACY_NS older than the time it was hashed; a racy entry is simply
 * hashed again next time (and then becomes trusted).
 */
#include "artifacts/store.h"
#include "artifacts/store_impl.h"

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
} centry;

/* The cache of one store handle: loaded once (on the first source digest),
 * indexed by an open-addressing hash of the path, written back once by
 * mf_source_cache_flush (or mf_store_free) when something changed. */
struct mf_statcache {
    char *file;
    centry *v;
    size_t n, cap;
    uint32_t *slot; /* index + 1 into v, 0 = empty; nslot is a power of two */
    size_t nslot;
    int loaded, dirty;
};

static uint64_t path_hash(const char *p)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static int index_insert(mf_statcache *c, size_t i)
{
    if ((c->n + 1) * 2 > c->nslot) { /* keep the load factor under 1/2 */
        size_t ns = c->nslot ? c->nslot * 2 : 1024;
        while (ns < (c->n + 1) * 2) ns *= 2;
        uint32_t *t = calloc(ns, sizeof *t);
        if (!t) return -1;
        free(c->slot);
        c->slot = t;
        c->nslot = ns;
        for (size_t k = 0; k < c->n; k++)
            if (k != i) {
                size_t h = (size_t)path_hash(c->v[k].path) & (ns - 1);
                while (c->slot[h]) h = (h + 1) & (ns - 1);
                c->slot[h] = (uint32_t)k + 1;
            }
    }
    size_t h = (size_t)path_hash(c->v[i].path) & (c->nslot - 1);
    while (c->slot[h]) h = (h + 1) & (c->nslot - 1);
    c->slot[h] = (uint32_t)i + 1;
    return 0;
}

static centry *cache_find(mf_statcache *c, const char *path)
{
    if (!c->nslot) return NULL;
    for (size_t h = (size_t)path_hash(path) & (c->nslot - 1); c->slot[h]; h = (h + 1) & (c->nslot - 1))
        if (!strcmp(c->v[c->slot[h] - 1].path, path)) return &c->v[c->slot[h] - 1];
    return NULL;
}

/* Add an entry (the path is taken over); a path already there is replaced. */
static int cache_put(mf_statcache *c, centry *e)
{
    centry *old = cache_find(c, e->path);
    if (old) {
        free(old->path);
        *old = *e;
        return 0;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        centry *v = realloc(c->v, nc * sizeof *v);
        if (!v) return -1;
        c->v = v;
        c->cap = nc;
    }
    c->v[c->n] = *e;
    if (index_insert(c, c->n) < 0) return -1;
    c->n++;
    return 0;
}

static void cache_clear(mf_statcache *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->v[i].path);
    free(c->v);
    free(c->slot);
    c->v = NULL;
    c->slot = NULL;
    c->n = c->cap = c->nslot = 0;
}

void mf_statcache_free(mf_statcache *c)
{
    if (!c) return;
    cache_clear(c);
    free(c->file);
    free(c);
}

/* "<decimal>" + one space; NULL when malformed. */
static const char *parse_u64(const char *p, uint64_t *v)
{
    uint64_t x = 0;
    const char *s = p;
    while (*p >= '0' && *p <= '9') x = x * 10 + (uint64_t)(*p++ - '0');
    if (p == s || p - s > 20 || *p != ' ') return NULL;
    *v = x;
    return p + 1;
}

static const char *parse_i64(const char *p, int64_t *v)
{
    int neg = *p == '-';
    uint64_t x;
    if (!(p = parse_u64(p + neg, &x))) return NULL;
    *v = neg ? -(int64_t)x : (int64_t)x;
    return p;
}

/* One line "<hex> <size> <mtime> <ctime> <ino> <dev> <hashed_at> <path>"; 0 ok. */
static int parse_line(const char *line, centry *ce)
{
    mf_err e;
    char hex[65];
    if (strlen(line) < 66 || line[64] != ' ') return -1;
    memcpy(hex, line, 64);
    hex[64] = 0;
    if (mf_digest_parse(&ce->sha, hex, &e)) return -1;
    const char *p = line + 65;
    if (!(p = parse_u64(p, &ce->size)) || !(p = parse_i64(p, &ce->mtime_ns)) || !(p = parse_i64(p, &ce->ctime_ns)) ||
        !(p = parse_u64(p, &ce->ino)) || !(p = parse_u64(p, &ce->dev)) || !(p = parse_i64(p, &ce->hashed_at)) || !*p)
        return -1;
    ce->path = strdup(p);
    return ce->path ? 0 : -1;
}

/* Load the cache file once; a missing or malformed file is an empty cache (it is only a cache). */
static void cache_load(mf_statcache *c)
{
    if (c->loaded) return;
    c->loaded = 1;
    char *text = NULL;
    size_t len = 0;
    mf_err e;
    if (mf_read_file(c->file, &text, &len, &e)) return;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line || strcmp(line, CACHE_MAGIC)) { free(text); return; }
    while ((line = strtok_r(NULL, "\n", &save))) {
        centry ce = {0};
        if (parse_line(line, &ce)) continue;
        if (cache_put(c, &ce) < 0) { free(ce.path); break; }
    }
    free(text);
}

static int cmp_centry(const void *a, const void *b)
{
    return strcmp(((const centry *)a)->path, ((const centry *)b)->path);
}

int mf_statcache_flush(mf_statcache *c, mf_err *err)
{
    if (!c || !c->dirty) return 0;
    /* entries whose files are gone are dropped; the rest is written sorted by path */
    centry *v = malloc((c->n ? c->n : 1) * sizeof *v);
    if (!v) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (mf_is_file(c->v[i].path)) v[k++] = c->v[i];
    if (k > 1) qsort(v, k, sizeof *v, cmp_centry);
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, CACHE_MAGIC "\n");
    for (size_t i = 0; i < k; i++) {
        char hex[65];
        const centry *e = &v[i];
        mf_buf_printf(&b, "%s %llu %lld %lld %llu %llu %lld %s\n", mf_digest_hex(&e->sha, hex),
                      (unsigned long long)e->size, (long long)e->mtime_ns, (long long)e->ctime_ns,
                      (unsigned long long)e->ino, (unsigned long long)e->dev, (long long)e->hashed_at, e->path);
    }
    free(v);
    int rc = mf_buf_ok(&b) ? mf_write_file_atomic(c->file, b.data, b.len, 0644, err)
                           : mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_buf_free(&b);
    if (rc) return rc;
    c->dirty = 0;
    return 0;
}

int mf_statcache_new(mf_statcache **out, const char *store_dir, mf_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->file = mf_path_join(store_dir, "statcache"))) {
        free(*out);
        *out = NULL;
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Absolute form of a path ("cwd/path" when relative; no symlink resolution). */
static char *absolute(const char *cwd, const char *p)
{
    if (p[0] == '/' || !cwd) return strdup(p);
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

int mf_source_digest(mf_store *s, const char *path, int flags, mf_digest *out, mf_source_stats *st, mf_err *err)
{
    mf_source_stats local = {0};
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    mf_tree t = {0};
    mf_statcache *c = s ? mf_store_i_statcache(s) : NULL;
    char cwd[PATH_MAX];
    const char *cwdp = getcwd(cwd, sizeof cwd) ? cwd : NULL;
    char *key = NULL;
    int rc;
    if ((rc = collect(&t, path, err)) != 0) goto out;
    if ((rc = mf_tree_sort(&t, err)) != 0) goto out;
    if (c) cache_load(c); /* once per store handle; MF_SOURCE_REHASH still refreshes the entries */
    for (size_t i = 0; i < t.n; i++) {
        mf_tree_entry *e = &t.v[i];
        st->files++;
        st->bytes += e->size;
        free(key);
        if (!(key = absolute(cwdp, e->abs))) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        centry *ce = c && !(flags & MF_SOURCE_REHASH) ? cache_find(c, key) : NULL;
        if (ce && ce->size == e->size && ce->mtime_ns == e->mtime_ns && ce->ctime_ns == e->ctime_ns &&
            ce->ino == e->ino && ce->dev == e->dev && e->mtime_ns + RACY_NS < ce->hashed_at) {
            e->sha = ce->sha;
            e->hashed = 1;
            continue;
        }
        int64_t hashed_at = now_ns();
        st->hashed++;
        st->bytes_hashed += e->size;
        mf_tree one = {&t.v[i], 1, 1};
        if ((rc = mf_tree_hash_files(&one, err))) goto out;
        if (!c || strchr(key, '\n')) continue;
        centry ne = {key, e->sha, e->size, e->ino, e->dev, e->mtime_ns, e->ctime_ns, hashed_at};
        if (cache_put(c, &ne) == 0) { /* the cache took the path */
            key = NULL;
            c->dirty = 1;
        }
    }
    rc = mf_tree_digest(&t, out, err);
out:
    free(key);
    mf_tree_free(&t);
    return rc;
}
