/*
 * artifacts/ledger_odb.c — the ledger's loose objects, read with checks first.
 *
 * libgit2 1.5's loose-object reader trusts the size in an object's header: a
 * damaged object whose header claims fewer bytes than its zlib stream holds
 * makes it write past the buffer it allocated (seen under valgrind and ASan
 * with one flipped bit). medflow promises that a damaged ledger is reported,
 * never a crash, so the ledger's repository gets this backend at the highest
 * priority: it inflates a loose object into a buffer it grows itself, checks
 * the header (type, declared size = bytes present) and the object id, and
 * only then hands the bytes to libgit2. Missing objects fall through to
 * libgit2's own backends (packs); writes stay with libgit2's loose backend.
 */
#include "artifacts/ledger_impl.h"

#include <git2/sys/odb_backend.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/fsutil.h"

/* The largest inflated object read: ledger objects are run records, graphs and
 * manifests, far below this; anything larger is treated as damage. */
#define MAX_OBJECT (512u << 20)

typedef struct {
    git_odb_backend parent;
    char *objects_dir;
} checked_loose;

/* Refuse the object: libgit2 passes the error (and this message) to its caller. */
static int damaged(const char *why)
{
    git_error_set_str(GIT_ERROR_ODB, why);
    return GIT_ERROR;
}

/* Inflate a whole zlib stream; 0 with the bytes in out and n on success, -1 if it is not one. */
static int inflate_all(const unsigned char *in, size_t in_n, unsigned char **out, size_t *n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) return -1;
    size_t cap = in_n * 4 + 256, len = 0;
    unsigned char *buf = malloc(cap);
    int zr = Z_OK, rc = -1;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)in_n;
    while (buf && zr == Z_OK) {
        if (len == cap) {
            if (cap >= MAX_OBJECT) break;
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        zr = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
    }
    if (zr == Z_STREAM_END && z.avail_in == 0) rc = 0;
    inflateEnd(&z);
    if (rc) {
        free(buf);
        return -1;
    }
    *out = buf;
    *n = len;
    return 0;
}

static int cl_read(void **data, size_t *len, git_object_t *type, git_odb_backend *be, const git_oid *id)
{
    checked_loose *b = (checked_loose *)be;
    char hex[GIT_OID_HEXSZ + 1], rel[GIT_OID_HEXSZ + 2];
    git_oid_tostr(hex, sizeof hex, id);
    snprintf(rel, sizeof rel, "%.2s/%s", hex, hex + 2);
    char *path = mf_path_join(b->objects_dir, rel);
    unsigned char *raw = NULL, *obj = NULL;
    size_t raw_n = 0, obj_n = 0;
    int rc;
    if (!path) {
        git_error_set_oom();
        return GIT_ERROR;
    }
    if (!mf_is_file(path)) {
        rc = GIT_ENOTFOUND; /* a packed object, or none: libgit2's other backends say */
        goto out;
    }
    mf_err err;
    if (mf_read_file(path, (char **)&raw, &raw_n, &err)) {
        rc = damaged("loose object could not be read");
        goto out;
    }
    if (inflate_all(raw, raw_n, &obj, &obj_n)) {
        rc = damaged("loose object is not a complete zlib stream (damaged)");
        goto out;
    }
    /* header: "<type> <size>\0" */
    unsigned char *nul = memchr(obj, 0, obj_n < 64 ? obj_n : 64);
    char *sp = nul ? memchr(obj, ' ', (size_t)(nul - obj)) : NULL;
    if (!nul || !sp) {
        rc = damaged("loose object header is damaged");
        goto out;
    }
    *sp = 0;
    git_object_t t = git_object_string2type((const char *)obj);
    char *end = NULL;
    unsigned long long declared = strtoull(sp + 1, &end, 10);
    size_t body = obj_n - (size_t)(nul + 1 - obj);
    if (t == GIT_OBJECT_INVALID || end != (char *)nul || declared != body) {
        rc = damaged("loose object header does not match its contents (damaged)");
        goto out;
    }
    git_oid got;
    if (git_odb_hash(&got, nul + 1, body, t) < 0 || git_oid_cmp(&got, id)) {
        rc = damaged("loose object does not hash to its name (damaged)");
        goto out;
    }
    void *d = git_odb_backend_data_alloc(be, body ? body : 1);
    if (!d) {
        git_error_set_oom();
        rc = GIT_ERROR;
        goto out;
    }
    memcpy(d, nul + 1, body);
    *data = d;
    *len = body;
    *type = t;
    rc = 0;
out:
    free(obj);
    free(raw);
    free(path);
    return rc;
}

/* Listing is left to libgit2's loose backend (git_odb_foreach calls every
 * backend's foreach without checking it is set). */
static int cl_foreach(git_odb_backend *be, git_odb_foreach_cb cb, void *payload)
{
    (void)be;
    (void)cb;
    (void)payload;
    return 0;
}

static void cl_free(git_odb_backend *be)
{
    checked_loose *b = (checked_loose *)be;
    free(b->objects_dir);
    free(b);
}

int mf_ledger_i_add_checked_odb(git_repository *repo, const char *gitdir, mf_err *err)
{
    git_odb *odb = NULL;
    checked_loose *b = calloc(1, sizeof *b);
    int rc = 0;
    if (!b || !(b->objects_dir = mf_path_join(gitdir, "objects"))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    git_odb_init_backend(&b->parent, GIT_ODB_BACKEND_VERSION);
    b->parent.read = cl_read;
    b->parent.foreach = cl_foreach;
    b->parent.free = cl_free;
    if (git_repository_odb(&odb, repo) < 0 || git_odb_add_backend(odb, &b->parent, 1000) < 0) {
        rc = mf_ledger_i_git_fail(err, gitdir);
        goto out;
    }
    b = NULL; /* the odb owns it */
out:
    if (b) cl_free(&b->parent);
    git_odb_free(odb);
    return rc;
}
