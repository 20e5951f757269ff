/*
 * artifacts/archive.c — deterministic pax tar + zstd archives (see archive.h).
 *
 * libarchive writes and reads the tar stream through callbacks; this file
 * owns the zstd framing on both sides (one frame, content checksum on, no
 * trailing data), so corruption anywhere in the file is detected.
 */
#ifdef __linux__
#define _GNU_SOURCE /* sync_file_range */
#endif
#include "artifacts/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/buf.h"
#include "common/fsutil.h"

#define CHUNK (1u << 20)

/* The trailer: a zstd skippable frame (RFC 8878 §3.1.2: magic 0x184D2A5E,
 * little-endian; u32le payload length 40) whose payload is "mfsha256" and the
 * SHA-256 of every byte before the trailer. zstd and `tar --zstd` skip it;
 * medflow requires it, so a flip in a bit zstd itself ignores (e.g. the
 * frame header's unused bit) is still caught. */
#define TRAILER_LEN 48

static void trailer_make(unsigned char *tr, const mf_digest *d)
{
    static const unsigned char head[16] = {0x5E, 0x2A, 0x4D, 0x18, 40, 0, 0, 0, 'm', 'f', 's', 'h', 'a', '2', '5', '6'};
    memcpy(tr, head, 16);
    memcpy(tr + 16, d->b, 32);
}

/* ---------------- writing ---------------- */

#define WRITEBACK_EVERY (8u << 20)

typedef struct wctx {
    int fd;
    uint64_t flushed; /* bytes handed to writeback so far */
    mf_sha256 *fh; /* SHA-256 of every byte written, for the trailer */
    ZSTD_CCtx *z;
    char *out;
    size_t out_cap;
    uint64_t bytes;
    mf_err *err;
    int failed;
} wctx;

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int zpump(wctx *c, const void *p, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {c->out, c->out_cap, 0};
        size_t r = ZSTD_compressStream2(c->z, &out, &in, mode);
        if (ZSTD_isError(r)) {
            mf_err_set(c->err, MF_EINTERNAL, "zstd compression failed: %s", ZSTD_getErrorName(r));
            return -1;
        }
        if (out.pos) mf_sha256_update(c->fh, c->out, out.pos);
        if (out.pos && write_all(c->fd, c->out, out.pos) < 0) {
            mf_err_errno(c->err, MF_EIO, "cannot write archive");
            return -1;
        }
        c->bytes += out.pos;
#ifdef __linux__
        /* Start writeback early so the final fsync has little left to wait
         * for: the disk works while we hash and compress. */
        if (c->bytes - c->flushed >= WRITEBACK_EVERY) {
            sync_file_range(c->fd, (off64_t)c->flushed, (off64_t)(c->bytes - c->flushed), SYNC_FILE_RANGE_WRITE);
            c->flushed = c->bytes;
        }
#endif
        if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size) return 0;
    }
}

static la_ssize_t w_write(struct archive *a, void *ud, const void *buf, size_t n)
{
    (void)a;
    wctx *c = ud;
    if (c->failed || zpump(c, buf, n, ZSTD_e_continue) < 0) {
        c->failed = 1;
        return -1;
    }
    return (la_ssize_t)n;
}

static int w_close(struct archive *a, void *ud)
{
    (void)a;
    wctx *c = ud;
    if (c->failed) return ARCHIVE_FATAL;
    if (zpump(c, NULL, 0, ZSTD_e_end) < 0) {
        c->failed = 1;
        return ARCHIVE_FATAL;
    }
    return ARCHIVE_OK;
}

static int la_fail(struct archive *a, wctx *c, mf_err *err, const char *what)
{
    if (c && c->failed) return c->err->code ? c->err->code : MF_EIO;
    return mf_err_set(err, MF_EIO, "%s: %s", what, archive_error_string(a) ? archive_error_string(a) : "libarchive error");
}

static int pack_file(struct archive *a, wctx *c, mf_tree_entry *e, struct archive_entry *ae, char *buf,
                     mf_sha256 *h, mf_err *err)
{
    int fd = open(e->abs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return mf_err_errno(err, MF_EIO, "cannot open %s", e->abs);
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    archive_entry_clear(ae);
    archive_entry_set_pathname(ae, e->path);
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, e->exec ? 0755 : 0644);
    archive_entry_set_size(ae, (la_int64_t)e->size);
    archive_entry_set_mtime(ae, 0, 0);
    archive_entry_set_uid(ae, 0);
    archive_entry_set_gid(ae, 0);
    uint64_t n = 0;
    int rc = 0;
    if (archive_write_header(a, ae) != ARCHIVE_OK) {
        rc = la_fail(a, c, err, "cannot write archive header");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = mf_err_errno(err, MF_EIO, "cannot read %s", e->abs);
            goto out;
        }
        if (r == 0) break;
        if (n + (uint64_t)r > e->size) {
            rc = mf_err_set(err, MF_EIO, "%s grew while it was archived", e->abs);
            goto out;
        }
        mf_sha256_update(h, buf, (size_t)r);
        n += (uint64_t)r;
        if (archive_write_data(a, buf, (size_t)r) != r) {
            rc = la_fail(a, c, err, "cannot write archive data");
            goto out;
        }
    }
    if (n != e->size) {
        rc = mf_err_set(err, MF_EIO, "%s shrank while it was archived (%llu of %llu bytes)", e->abs,
                        (unsigned long long)n, (unsigned long long)e->size);
        goto out;
    }
    mf_sha256_final(h, &e->sha);
    e->hashed = 1;
out:
    close(fd);
    return rc;
}

int mf_archive_pack(mf_tree *t, int fd, int level, int threads, mf_digest *digest, uint64_t *bytes, mf_err *err)
{
    wctx c = {0};
    c.fd = fd;
    c.err = err;
    c.out_cap = ZSTD_CStreamOutSize() * 4;
    c.out = malloc(c.out_cap);
    c.z = ZSTD_createCCtx();
    char *buf = malloc(CHUNK);
    struct archive *a = archive_write_new();
    struct archive_entry *ae = archive_entry_new();
    mf_sha256 *h = NULL;
    int rc = 0;
    if (!c.out || !c.z || !buf || !a || !ae) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_sha256_new(&h, err)) || (rc = mf_sha256_new(&c.fh, err))) goto out;
    ZSTD_CCtx_setParameter(c.z, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c.z, ZSTD_c_checksumFlag, 1);
    /* Always at least one zstd worker: compression then overlaps with reading
     * and hashing, and the output is the same for any nbWorkers >= 1 (zstd's
     * multi-threaded format is independent of the worker count), so the
     * bytes do not depend on the core count (they may with the zstd version;
     * identity is the tree digest, not the archive's hash). */
    ZSTD_CCtx_setParameter(c.z, ZSTD_c_nbWorkers, threads > 1 ? threads : 1);
    /* hdrcharset=BINARY: paths are stored as their raw bytes (no locale
     * conversion, so any name round-trips whatever LANG is). */
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
        rc = la_fail(a, NULL, err, "cannot configure archive");
        goto out;
    }
    if (archive_write_open(a, &c, NULL, w_write, w_close) != ARCHIVE_OK) {
        rc = la_fail(a, &c, err, "cannot open archive");
        goto out;
    }
    /* On a failure, archive_write_free at out closes the archive. */
    for (size_t i = 0; i < t->n; i++)
        if ((rc = pack_file(a, &c, &t->v[i], ae, buf, h, err)) != 0) goto out;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = la_fail(a, &c, err, "cannot finish archive");
        goto out;
    }
    if ((rc = mf_tree_digest(t, digest, err)) != 0) goto out;
    unsigned char tr[TRAILER_LEN];
    mf_digest fd_sha;
    mf_sha256_final(c.fh, &fd_sha);
    trailer_make(tr, &fd_sha);
    if (write_all(fd, (const char *)tr, sizeof tr) < 0) {
        rc = mf_err_errno(err, MF_EIO, "cannot write archive");
        goto out;
    }
    c.bytes += sizeof tr;
    if (bytes) *bytes = c.bytes;
out:
    if (a) archive_write_free(a);
    if (ae) archive_entry_free(ae);
    mf_sha256_free(h);
    mf_sha256_free(c.fh);
    ZSTD_freeCCtx(c.z);
    free(c.out);
    free(buf);
    return rc;
}

/* ---------------- reading ---------------- */

typedef struct rctx {
    int fd;
    ZSTD_DCtx *z;
    char *in, *out;
    size_t in_cap, out_cap;
    ZSTD_inBuffer zin;
    int in_eof;      /* the file is exhausted */
    int frame_done;  /* the frame is complete (checksum verified) */
    int started;
    mf_sha256 *fh;   /* SHA-256 of the frame's bytes, checked against the trailer */
    unsigned char tr[TRAILER_LEN];
    size_t trn;      /* trailer bytes collected */
    mf_err *err;
    int failed;
} rctx;

/* Fill c->zin from the file. Returns -1 on error, 0 ok. */
static int r_fill(rctx *c)
{
    if (c->zin.pos < c->zin.size || c->in_eof) return 0;
    for (;;) {
        ssize_t r = read(c->fd, c->in, c->in_cap);
        if (r < 0) {
            if (errno == EINTR) continue;
            mf_err_errno(c->err, MF_EIO, "cannot read archive");
            return -1;
        }
        c->zin.src = c->in;
        c->zin.size = (size_t)r;
        c->zin.pos = 0;
        if (r == 0) c->in_eof = 1;
        return 0;
    }
}

/* Next piece of decompressed tar stream; 0 bytes at the end. */
static ssize_t r_next(rctx *c, const void **buf)
{
    for (;;) {
        if (r_fill(c) < 0) return -1;
        if (!c->started) {
            /* Frame header: magic 0xFD2FB528 (little endian), then the
             * descriptor byte whose bit 2 is Content_Checksum_flag (RFC 8878). */
            const unsigned char *b = c->zin.src;
            if (c->zin.size < 5 || b[0] != 0x28 || b[1] != 0xB5 || b[2] != 0x2F || b[3] != 0xFD) {
                mf_err_set(c->err, MF_ECORRUPT, "not a zstd-compressed medflow archive (bad frame header)");
                return -1;
            }
            if (!(b[4] & 4)) {
                mf_err_set(c->err, MF_ECORRUPT, "archive has no zstd content checksum (not written by medflow)");
                return -1;
            }
            c->started = 1;
        }
        if (c->frame_done) {
            size_t avail = c->zin.size - c->zin.pos;
            if (avail) {
                if (c->trn + avail > TRAILER_LEN) {
                    mf_err_set(c->err, MF_ECORRUPT, "trailing data after the end of the archive");
                    return -1;
                }
                memcpy(c->tr + c->trn, (const char *)c->zin.src + c->zin.pos, avail);
                c->trn += avail;
                c->zin.pos = c->zin.size;
                continue;
            }
            if (!c->in_eof) continue;
            unsigned char want[TRAILER_LEN];
            mf_digest d;
            mf_sha256_final(c->fh, &d);
            trailer_make(want, &d);
            if (c->trn != TRAILER_LEN || memcmp(want, c->tr, 16)) {
                mf_err_set(c->err, MF_ECORRUPT, "archive has no medflow checksum trailer (truncated or not written by medflow)");
                return -1;
            }
            if (memcmp(want + 16, c->tr + 16, 32)) {
                mf_err_set(c->err, MF_ECORRUPT, "archive bytes do not match their checksum trailer");
                return -1;
            }
            return 0;
        }
        if (c->zin.pos == c->zin.size && c->in_eof) {
            mf_err_set(c->err, MF_ECORRUPT, "archive is truncated (zstd frame incomplete)");
            return -1;
        }
        ZSTD_outBuffer out = {c->out, c->out_cap, 0};
        size_t pos0 = c->zin.pos;
        size_t r = ZSTD_decompressStream(c->z, &out, &c->zin);
        mf_sha256_update(c->fh, (const char *)c->zin.src + pos0, c->zin.pos - pos0);
        if (ZSTD_isError(r)) {
            mf_err_set(c->err, MF_ECORRUPT, "archive is corrupt: zstd: %s", ZSTD_getErrorName(r));
            return -1;
        }
        if (r == 0) c->frame_done = 1;
        if (out.pos) {
            *buf = c->out;
            return (ssize_t)out.pos;
        }
    }
}

static la_ssize_t r_read(struct archive *a, void *ud, const void **buf)
{
    rctx *c = ud;
    ssize_t n = r_next(c, buf);
    if (n < 0) {
        c->failed = 1;
        archive_set_error(a, EIO, "%s", c->err->msg);
        return -1;
    }
    return n;
}

/* Read the rest of the decompressed stream after the tar end marker: it must
 * decode cleanly to the end of the frame (which verifies the checksum) and
 * contain only zero padding. */
static int r_drain(rctx *c)
{
    const void *p;
    ssize_t n;
    while ((n = r_next(c, &p)) > 0) {
        const unsigned char *b = p;
        for (ssize_t i = 0; i < n; i++)
            if (b[i]) return mf_err_set(c->err, MF_ECORRUPT, "non-zero data after the end of the tar stream");
    }
    return n < 0 ? c->err->code : 0;
}

static int mkparents(const char *dest, const char *rel, mf_err *err)
{
    mf_buf p = MF_BUF_INIT;
    mf_buf_printf(&p, "%s/%s", dest, rel);
    if (!mf_buf_ok(&p)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t base = strlen(dest) + 1;
    int rc = 0;
    for (size_t i = base; i < p.len; i++) {
        if (p.data[i] != '/') continue;
        p.data[i] = 0;
        if (mkdir(p.data, 0755) < 0) {
            if (errno == ENOTDIR || (errno == EEXIST && !mf_is_dir(p.data)))
                rc = mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': a file is in the way of its directory", rel);
            else if (errno != EEXIST)
                rc = mf_err_errno(err, MF_EIO, "cannot create %s", p.data);
        }
        p.data[i] = '/';
        if (rc) break;
    }
    mf_buf_free(&p);
    return rc;
}

static const char *type_name(mode_t t)
{
    switch (t) {
    case AE_IFLNK: return "a symbolic link";
    case AE_IFDIR: return "a directory entry";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a fifo";
    case AE_IFSOCK: return "a socket";
    default: return "not a regular file";
    }
}

/* ---- a hashing thread for extraction ----
 * Extraction decompresses, writes and hashes every byte; SHA-256 is the
 * slowest of the three, so it runs on its own thread: the reader copies each
 * data block into a ring of NSLOT buffers and the hasher consumes them,
 * finishing each entry's SHA-256 and feeding the tree hash in order. */

#define NSLOT 8

typedef struct hjob {
    int kind;        /* 0 data, 1 end of entry, 2 stop */
    size_t len;
    char *path;      /* kind 1 */
    int exec;
    uint64_t size;
} hjob;

typedef struct hqueue {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hjob q[NSLOT];
    char *buf[NSLOT];
    size_t head, count;
    mf_sha256 *h;
    mf_treehash *th;
    int failed;
    mf_err err;
} hqueue;

static void *hq_main(void *arg)
{
    hqueue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->count == 0) pthread_cond_wait(&q->cv, &q->mu);
        size_t slot = q->head;
        hjob j = q->q[slot];
        pthread_mutex_unlock(&q->mu);
        if (j.kind == 0) {
            mf_sha256_update(q->h, q->buf[slot], j.len);
        } else if (j.kind == 1) {
            mf_digest sha;
            mf_sha256_final(q->h, &sha);
            if (!q->failed && mf_treehash_add(q->th, j.path, j.exec, j.size, &sha, &q->err)) q->failed = 1;
            free(j.path);
        }
        pthread_mutex_lock(&q->mu);
        q->head = (q->head + 1) % NSLOT;
        q->count--;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        if (j.kind == 2) return NULL;
    }
}

static int hq_start(hqueue *q, mf_sha256 *h, mf_treehash *th, mf_err *err)
{
    memset(q, 0, sizeof *q);
    q->h = h;
    q->th = th;
    for (int i = 0; i < NSLOT; i++)
        if (!(q->buf[i] = malloc(CHUNK))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->thread, NULL, hq_main, q) != 0) return mf_err_set(err, MF_EIO, "cannot start a thread");
    q->started = 1;
    return 0;
}

/* Reserve the next free slot (blocks while the ring is full). */
static size_t hq_slot(hqueue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == NSLOT) pthread_cond_wait(&q->cv, &q->mu);
    size_t slot = (q->head + q->count) % NSLOT;
    pthread_mutex_unlock(&q->mu);
    return slot;
}

static void hq_push(hqueue *q, size_t slot, const hjob *j)
{
    pthread_mutex_lock(&q->mu);
    q->q[slot] = *j;
    q->count++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void hq_data(hqueue *q, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        size_t k = n < CHUNK ? n : CHUNK;
        size_t slot = hq_slot(q);
        memcpy(q->buf[slot], c, k);
        hjob j = {0, k, NULL, 0, 0};
        hq_push(q, slot, &j);
        c += k;
        n -= k;
    }
}

static int hq_end(hqueue *q, const char *path, int exec, uint64_t size, mf_err *err)
{
    hjob j = {1, 0, strdup(path), exec, size};
    if (!j.path) return mf_err_set(err, MF_ENOMEM, "out of memory");
    hq_push(q, hq_slot(q), &j);
    return 0;
}

/* Stop the thread; returns the hasher's error, if any. */
static int hq_stop(hqueue *q, mf_err *err)
{
    if (q->started) {
        hjob j = {2, 0, NULL, 0, 0};
        hq_push(q, hq_slot(q), &j);
        pthread_join(q->thread, NULL);
        /* free paths of jobs never processed (none after a clean stop) */
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
    }
    for (int i = 0; i < NSLOT; i++) free(q->buf[i]);
    if (q->failed && err) {
        *err = q->err;
        return q->err.code;
    }
    return 0;
}

/* The paths seen so far, in (strictly increasing) archive order. */
typedef struct plist {
    char **v;
    size_t n, cap;
} plist;

static int cmp_pstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Is some directory prefix of path an earlier *file* ("a" then "a/b")? Such a
 * tree cannot exist on disk; refuse it in verify mode too. */
static const char *file_prefix(const plist *pl, const char *path)
{
    char buf[4096];
    for (const char *sl = strchr(path, '/'); sl; sl = strchr(sl + 1, '/')) {
        size_t n = (size_t)(sl - path);
        if (n >= sizeof buf) break;
        memcpy(buf, path, n);
        buf[n] = 0;
        char *key = buf;
        char **hit = pl->n ? bsearch(&key, pl->v, pl->n, sizeof *pl->v, cmp_pstr) : NULL;
        if (hit) return *hit;
    }
    return NULL;
}

static int plist_push(plist *pl, const char *path)
{
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 64;
        char **nv = realloc(pl->v, nc * sizeof *nv);
        if (!nv) return -1;
        pl->v = nv;
        pl->cap = nc;
    }
    if (!(pl->v[pl->n] = strdup(path))) return -1;
    pl->n++;
    return 0;
}

static void plist_free(plist *pl)
{
    for (size_t i = 0; i < pl->n; i++) free(pl->v[i]);
    free(pl->v);
}

static int unpack_entry(struct archive *a, rctx *c, struct archive_entry *ae, const char *dest, hqueue *hq,
                        const plist *seen, mf_err *err)
{
    const char *path = archive_entry_pathname(ae);
    if (!path) return mf_err_set(err, MF_ECORRUPT, "archive entry without a path");
    if (archive_entry_hardlink(ae))
        return mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': a hard link (to '%s')", path,
                          archive_entry_hardlink(ae));
    if (archive_entry_filetype(ae) != AE_IFREG)
        return mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': %s; artifacts hold regular files only",
                          path, type_name(archive_entry_filetype(ae)));
    if (archive_entry_symlink(ae))
        return mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': carries a link target", path);
    if (!mf_tree_path_valid(path))
        return mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': absolute path, '..' or empty component", path);
    const char *last = seen->n ? seen->v[seen->n - 1] : NULL;
    if (last && strcmp(last, path) >= 0)
        return mf_err_set(err, MF_ECORRUPT, "refusing archive: entries out of order or duplicated ('%s' after '%s')",
                          path, last);
    const char *fp = file_prefix(seen, path);
    if (fp) return mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': a file is in the way of its directory ('%s')", path, fp);
    if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) < 0)
        return mf_err_set(err, MF_ECORRUPT, "archive entry '%s' has no size", path);
    uint64_t size = (uint64_t)archive_entry_size(ae);
    int exec = (archive_entry_perm(ae) & 0100) ? 1 : 0;
    int fd = -1, rc = 0;
    char *full = NULL;
    if (dest) {
        if ((rc = mkparents(dest, path, err)) != 0) goto out;
        if (!(full = mf_path_join(dest, path))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, exec ? 0755 : 0644);
        if (fd < 0) {
            rc = mf_err_errno(err, errno == EEXIST ? MF_ECORRUPT : MF_EIO, "cannot create %s", full);
            goto out;
        }
    }
    uint64_t n = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = c->failed ? c->err->code
                           : mf_err_set(err, MF_ECORRUPT, "archive entry '%s' is corrupt: %s", path,
                                        archive_error_string(a));
            goto out;
        }
        if ((uint64_t)off != n) {
            rc = mf_err_set(err, MF_ECORRUPT, "refusing archive entry '%s': sparse file", path);
            goto out;
        }
        hq_data(hq, buf, len);
        n += len;
        if (fd >= 0 && write_all(fd, buf, len) < 0) {
            rc = mf_err_errno(err, MF_EIO, "cannot write %s", full);
            goto out;
        }
    }
    if (n != size) {
        rc = mf_err_set(err, MF_ECORRUPT, "archive entry '%s' holds %llu bytes, its header says %llu", path,
                        (unsigned long long)n, (unsigned long long)size);
        goto out;
    }
    if (fd >= 0) {
        int closed = close(fd);
        fd = -1;
        if (closed < 0) {
            rc = mf_err_errno(err, MF_EIO, "cannot write %s", full);
            goto out;
        }
    }
    rc = hq_end(hq, path, exec, size, err);
out:
    if (fd >= 0) close(fd);
    free(full);
    return rc;
}

int mf_archive_unpack(int fd, const char *dest, const mf_digest *expect, mf_digest *got, mf_err *err)
{
    rctx c = {0};
    c.fd = fd;
    c.err = err;
    c.in_cap = ZSTD_DStreamInSize() * 4;
    c.out_cap = CHUNK;
    c.in = malloc(c.in_cap);
    c.out = malloc(c.out_cap);
    c.z = ZSTD_createDCtx();
    struct archive *a = archive_read_new();
    mf_sha256 *h = NULL;
    mf_treehash *th = NULL;
    plist seen = {0};
    hqueue hq;
    int hq_stopped = 0;
    memset(&hq, 0, sizeof hq);
    int rc = 0;
    if (!c.in || !c.out || !c.z || !a) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_sha256_new(&h, err)) || (rc = mf_treehash_new(&th, err)) || (rc = mf_sha256_new(&c.fh, err))) goto out;
    archive_read_support_format_tar(a);
    if ((rc = hq_start(&hq, h, th, err))) goto out;
    if (archive_read_open(a, &c, NULL, r_read, NULL) != ARCHIVE_OK) {
        rc = c.failed ? c.err->code : mf_err_set(err, MF_ECORRUPT, "not a tar archive: %s", archive_error_string(a));
        goto out;
    }
    for (;;) {
        struct archive_entry *ae;
        int r = archive_read_next_header(a, &ae);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = c.failed ? c.err->code
                          : mf_err_set(err, MF_ECORRUPT, "archive is corrupt: %s", archive_error_string(a));
            goto out;
        }
        if ((rc = unpack_entry(a, &c, ae, dest, &hq, &seen, err)) != 0) goto out;
        if (plist_push(&seen, archive_entry_pathname(ae))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
    }
    if ((rc = r_drain(&c)) != 0) goto out;
    mf_err herr;
    hq_stopped = 1;
    if ((rc = hq_stop(&hq, &herr)) != 0) {
        *err = herr;
        goto out;
    }
    mf_digest d;
    mf_treehash_final(th, &d);
    if (got) *got = d;
    if (expect && !mf_digest_eq(expect, &d)) {
        char e1[72], e2[72];
        rc = mf_err_set(err, MF_ECORRUPT, "archive content does not match its digest: expected %s, found %s",
                        mf_digest_str(expect, e1), mf_digest_str(&d, e2));
    }
out:
    if (!hq_stopped) hq_stop(&hq, NULL);
    if (a) archive_read_free(a);
    plist_free(&seen);
    mf_sha256_free(c.fh);
    mf_sha256_free(h);
    mf_treehash_free(th);
    ZSTD_freeDCtx(c.z);
    free(c.in);
    free(c.out);
    return rc;
}
