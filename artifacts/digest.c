/*
 * artifacts/digest.c — SHA-256 of bytes, files and trees (see digest.h and the
 * "Tree digest v1" section of artifacts/README.md for the encoding).
 */
#include "artifacts/digest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"

#define TREE_MAGIC "medflow-tree-v1\n"
#define READ_CHUNK (1u << 20)

static const char HEX[] = "0123456789abcdef";

char *mf_digest_hex(const mf_digest *d, char out[65])
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[d->b[i] >> 4];
        out[2 * i + 1] = HEX[d->b[i] & 15];
    }
    out[64] = 0;
    return out;
}

char *mf_digest_str(const mf_digest *d, char out[72])
{
    memcpy(out, "sha256:", 7);
    mf_digest_hex(d, out + 7);
    return out;
}

char *mf_digest_short(const mf_digest *d, char out[13])
{
    char h[65];
    mf_digest_hex(d, h);
    memcpy(out, h, 12);
    out[12] = 0;
    return out;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int mf_digest_parse(mf_digest *out, const char *s, mf_err *err)
{
    const char *p = s;
    if (!strncmp(p, "sha256:", 7)) p += 7;
    if (strlen(p) != 64)
        return mf_err_set(err, MF_EINVAL, "expected a digest 'sha256:<64 hex digits>', found '%s'", s);
    for (int i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)p[2 * i]), lo = hexval((unsigned char)p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return mf_err_set(err, MF_EINVAL, "expected a digest 'sha256:<64 hex digits>', found '%s'", s);
        out->b[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int mf_digest_eq(const mf_digest *a, const mf_digest *b) { return !memcmp(a->b, b->b, 32); }

/* ---- incremental SHA-256 ---- */

struct mf_sha256 {
    EVP_MD_CTX *ctx;
};

int mf_sha256_new(mf_sha256 **out, mf_err *err)
{
    *out = NULL;
    mf_sha256 *h = calloc(1, sizeof *h);
    if (!h) return mf_err_set(err, MF_ENOMEM, "out of memory");
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return mf_err_set(err, MF_EINTERNAL, "OpenSSL could not initialise SHA-256");
    }
    *out = h;
    return 0;
}

void mf_sha256_update(mf_sha256 *h, const void *p, size_t n) { EVP_DigestUpdate(h->ctx, p, n); }

void mf_sha256_final(mf_sha256 *h, mf_digest *out)
{
    unsigned int len = 32;
    EVP_DigestFinal_ex(h->ctx, out->b, &len);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void mf_sha256_free(mf_sha256 *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void mf_digest_bytes(mf_digest *out, const void *p, size_t n)
{
    unsigned int len = 32;
    EVP_Digest(p, n, out->b, &len, EVP_sha256(), NULL);
}

static int hash_fd(mf_sha256 *h, int fd, const char *path, uint64_t *size, mf_err *err)
{
    char *buf = malloc(READ_CHUNK);
    if (!buf) return mf_err_set(err, MF_ENOMEM, "out of memory");
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    uint64_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf, READ_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            return mf_err_errno(err, MF_EIO, "cannot read %s", path);
        }
        if (r == 0) break;
        mf_sha256_update(h, buf, (size_t)r);
        n += (uint64_t)r;
    }
    free(buf);
    if (size) *size = n;
    return 0;
}

int mf_digest_file(mf_digest *out, const char *path, uint64_t *size, mf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "cannot open %s", path);
    mf_sha256 *h = NULL;
    int rc;
    if ((rc = mf_sha256_new(&h, err)) != 0) goto out;
    if ((rc = hash_fd(h, fd, path, size, err)) != 0) goto out;
    mf_sha256_final(h, out);
out:
    mf_sha256_free(h);
    close(fd);
    return rc;
}

/* ---- streaming tree hash ---- */

struct mf_treehash {
    mf_sha256 *h;
    char *last; /* previous path, for the order check */
    int any;
};

int mf_treehash_new(mf_treehash **out, mf_err *err)
{
    *out = NULL;
    mf_treehash *t = calloc(1, sizeof *t);
    if (!t) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = mf_sha256_new(&t->h, err);
    if (rc) { free(t); return rc; }
    mf_sha256_update(t->h, TREE_MAGIC, strlen(TREE_MAGIC));
    *out = t;
    return 0;
}

int mf_treehash_add(mf_treehash *t, const char *path, int exec, uint64_t size, const mf_digest *sha, mf_err *err)
{
    if (!mf_tree_path_valid(path))
        return mf_err_set(err, MF_ECORRUPT, "invalid path '%s' in tree (absolute, empty, '.' or '..' component)", path);
    if (t->any && strcmp(t->last, path) >= 0)
        return mf_err_set(err, MF_ECORRUPT, "tree entries out of order or duplicated: '%s' after '%s'", path, t->last);
    size_t len = strlen(path);
    if (len > UINT32_MAX) return mf_err_set(err, MF_EINVAL, "path too long");
    char *copy = strdup(path);
    if (!copy) return mf_err_set(err, MF_ENOMEM, "out of memory");
    free(t->last);
    t->last = copy;
    t->any = 1;
    unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                            (unsigned char)len};
    unsigned char tail[9];
    tail[0] = exec ? 1 : 0;
    for (int i = 0; i < 8; i++) tail[1 + i] = (unsigned char)(size >> (56 - 8 * i));
    mf_sha256_update(t->h, hdr, 4);
    mf_sha256_update(t->h, path, len);
    mf_sha256_update(t->h, tail, 9);
    mf_sha256_update(t->h, sha->b, 32);
    return 0;
}

void mf_treehash_final(mf_treehash *t, mf_digest *out) { mf_sha256_final(t->h, out); }

void mf_treehash_free(mf_treehash *t)
{
    if (!t) return;
    mf_sha256_free(t->h);
    free(t->last);
    free(t);
}

int mf_tree_path_valid(const char *path)
{
    if (!path || !*path || *path == '/') return 0;
    const char *p = path;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) return 0;
        if (n == 1 && p[0] == '.') return 0;
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        if (!e) return 1;
        p = e + 1;
    }
}

/* ---- directory trees ---- */

static int tree_push(mf_tree *t, const char *rel, const char *abs, const struct stat *st, mf_err *err)
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        mf_tree_entry *v = realloc(t->v, nc * sizeof *v);
        if (!v) return mf_err_set(err, MF_ENOMEM, "out of memory");
        t->v = v;
        t->cap = nc;
    }
    mf_tree_entry *e = &t->v[t->n];
    memset(e, 0, sizeof *e);
    e->path = strdup(rel);
    e->abs = strdup(abs);
    if (!e->path || !e->abs) {
        free(e->path);
        free(e->abs);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    e->exec = (st->st_mode & S_IXUSR) ? 1 : 0;
    e->size = (uint64_t)st->st_size;
    e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    e->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
    e->ino = (uint64_t)st->st_ino;
    e->dev = (uint64_t)st->st_dev;
    t->n++;
    return 0;
}

static int scan_rec(mf_tree *t, const char *dir, const char *prefix, int flags, int depth, mf_err *err)
{
    if (depth > 64) return mf_err_set(err, MF_EINVAL, "%s: directories nested more than 64 levels (a symlink loop?)", dir);
    DIR *d = opendir(dir);
    if (!d) return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "cannot open directory %s", dir);
    int rc = 0;
    mf_buf abs = MF_BUF_INIT, rel = MF_BUF_INIT;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        mf_buf_reset(&abs);
        mf_buf_reset(&rel);
        mf_buf_printf(&abs, "%s/%s", dir, nm);
        if (*prefix) mf_buf_printf(&rel, "%s/%s", prefix, nm);
        else mf_buf_puts(&rel, nm);
        if (!mf_buf_ok(&abs) || !mf_buf_ok(&rel)) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        struct stat st;
        if (lstat(abs.data, &st) < 0) {
            rc = mf_err_errno(err, MF_EIO, "cannot stat %s", abs.data);
            goto out;
        }
        if (S_ISLNK(st.st_mode)) {
            if (!(flags & MF_SCAN_FOLLOW)) {
                rc = mf_err_set(err, MF_EINVAL, "%s is a symbolic link; artifacts hold regular files only", abs.data);
                goto out;
            }
            if (stat(abs.data, &st) < 0) {
                rc = mf_err_errno(err, MF_EIO, "cannot follow symlink %s", abs.data);
                goto out;
            }
        }
        if (S_ISDIR(st.st_mode)) rc = scan_rec(t, abs.data, rel.data, flags, depth + 1, err);
        else if (S_ISREG(st.st_mode)) rc = tree_push(t, rel.data, abs.data, &st, err);
        else rc = mf_err_set(err, MF_EINVAL, "%s is not a regular file or directory (device, fifo or socket)", abs.data);
        if (rc) goto out;
    }
    if (errno) rc = mf_err_errno(err, MF_EIO, "cannot read directory %s", dir);
out:
    closedir(d);
    mf_buf_free(&abs);
    mf_buf_free(&rel);
    return rc;
}

int mf_tree_scan(mf_tree *t, const char *dir, const char *prefix, int flags, mf_err *err)
{
    return scan_rec(t, dir, prefix ? prefix : "", flags, 0, err);
}

int mf_tree_add_file(mf_tree *t, const char *file, const char *name, int flags, mf_err *err)
{
    struct stat st;
    int r = (flags & MF_SCAN_FOLLOW) ? stat(file, &st) : lstat(file, &st);
    if (r < 0) return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "cannot stat %s", file);
    if (!S_ISREG(st.st_mode)) return mf_err_set(err, MF_EINVAL, "%s is not a regular file", file);
    if (!mf_tree_path_valid(name)) return mf_err_set(err, MF_EINVAL, "invalid entry name '%s'", name);
    return tree_push(t, name, file, &st, err);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const mf_tree_entry *)a)->path, ((const mf_tree_entry *)b)->path);
}

int mf_tree_sort(mf_tree *t, mf_err *err)
{
    if (t->n > 1) qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    for (size_t i = 1; i < t->n; i++)
        if (!strcmp(t->v[i - 1].path, t->v[i].path))
            return mf_err_set(err, MF_EINVAL, "two files map to the same tree path '%s' (%s and %s)", t->v[i].path,
                              t->v[i - 1].abs, t->v[i].abs);
    return 0;
}

int mf_tree_hash_files(mf_tree *t, mf_err *err)
{
    mf_sha256 *h = NULL;
    int rc;
    if ((rc = mf_sha256_new(&h, err)) != 0) goto out;
    for (size_t i = 0; i < t->n; i++) {
        mf_tree_entry *e = &t->v[i];
        if (e->hashed) continue;
        int fd = open(e->abs, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = mf_err_errno(err, MF_EIO, "cannot open %s", e->abs);
            goto out;
        }
        uint64_t n = 0;
        rc = hash_fd(h, fd, e->abs, &n, err);
        close(fd);
        if (rc) goto out;
        if (n != e->size) {
            rc = mf_err_set(err, MF_EIO, "%s changed while it was read (size %llu, then %llu bytes)", e->abs,
                            (unsigned long long)e->size, (unsigned long long)n);
            goto out;
        }
        mf_sha256_final(h, &e->sha);
        e->hashed = 1;
    }
out:
    mf_sha256_free(h);
    return rc;
}

int mf_tree_digest(const mf_tree *t, mf_digest *out, mf_err *err)
{
    mf_treehash *th = NULL;
    int rc;
    if ((rc = mf_treehash_new(&th, err)) != 0) goto out;
    for (size_t i = 0; i < t->n; i++) {
        if (!t->v[i].hashed) {
            rc = mf_err_set(err, MF_EINTERNAL, "tree entry %s not hashed", t->v[i].path);
            goto out;
        }
        if ((rc = mf_treehash_add(th, t->v[i].path, t->v[i].exec, t->v[i].size, &t->v[i].sha, err)) != 0) goto out;
    }
    mf_treehash_final(th, out);
out:
    mf_treehash_free(th);
    return rc;
}

void mf_tree_free(mf_tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].path);
        free(t->v[i].abs);
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}

int mf_digest_dir(mf_digest *out, const char *dir, mf_err *err)
{
    mf_tree t = {0};
    int rc;
    if ((rc = mf_tree_scan(&t, dir, "", 0, err)) != 0) goto out;
    if ((rc = mf_tree_sort(&t, err)) != 0) goto out;
    if ((rc = mf_tree_hash_files(&t, err)) != 0) goto out;
    rc = mf_tree_digest(&t, out, err);
out:
    mf_tree_free(&t);
    return rc;
}
