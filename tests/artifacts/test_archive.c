/*
 * tests/artifacts/test_archive.c — deterministic archives and hostile-archive refusal.
 * Hostile archives are built here with libarchive (tar) + libzstd (the frame
 * medflow expects), then handed to mf_archive_unpack and to the store.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "artifacts/archive.h"
#include "artifacts/store.h"
#include "common/fsutil.h"
#include "tests/artifacts/util.h"
#include "tests/harness.h"

static char *pack_to_file(const char *dir, const char *file, mf_digest *d, uint64_t *bytes)
{
    mf_tree t = {0};
    mf_err err;
    REQUIRE(mf_tree_scan(&t, dir, "", 0, &err) == 0);
    REQUIRE(mf_tree_sort(&t, &err) == 0);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    int rc = mf_archive_pack(&t, fd, 3, 1, d, bytes, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "pack %s: %s", dir, err.msg);
    REQUIRE(rc == 0);
    close(fd);
    mf_tree_free(&t);
    char *data = NULL;
    size_t n;
    REQUIRE(mf_read_file(file, &data, &n, &err) == 0);
    return data;
}

TEST(test_archive_same_tree_twice_gives_identical_bytes)
{
    const char *tmp = mf_test_tmpdir();
    mf_json *vs = tu_load_vectors();
    const char *a = tu_path(tmp, "a");
    for (size_t i = 0; i < vs->n; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "%s/v%zu", a, i);
        tu_build_vector(sub, vs->items[i]);
    }
    mf_json_free(vs);
    mf_digest d1, d2, d3;
    uint64_t n1, n2, n3;
    char *x = pack_to_file(a, tu_path(tmp, "1.tar.zst"), &d1, &n1);
    char *y = pack_to_file(a, tu_path(tmp, "2.tar.zst"), &d2, &n2);
    CHECK(mf_digest_eq(&d1, &d2));
    CHECK(n1 == n2 && !memcmp(x, y, n1));
    /* a copy with other mtimes, owners and permissions (except the exec bit), packed by another process */
    const char *b = tu_path(tmp, "b");
    REQUIRE(mf_test_sh(NULL, NULL, "cp -r '%s' '%s' && find '%s' -type f -exec touch -d '2001-02-03 04:05:06' {} + && "
                       "find '%s' -type f ! -perm -u+x -exec chmod 0600 {} +", a, b, b, b) == 0);
    if (getuid() == 0) REQUIRE(mf_test_sh(NULL, NULL, "chown -R 65534:65534 '%s'", b) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mf_digest dd;
        uint64_t nn;
        char *z = pack_to_file(b, tu_path(tmp, "3.tar.zst"), &dd, &nn);
        free(z);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *z = NULL;
    size_t nz;
    mf_err err;
    REQUIRE(mf_read_file(tu_path(tmp, "3.tar.zst"), &z, &nz, &err) == 0);
    CHECK(nz == n1 && !memcmp(x, z, n1));
    REQUIRE(mf_digest_dir(&d3, b, &err) == 0);
    CHECK(mf_digest_eq(&d1, &d3));
    (void)n3;
    free(x);
    free(y);
    free(z);
}

TEST(test_archive_roundtrip_restores_files_modes_and_digest)
{
    const char *tmp = mf_test_tmpdir();
    const char *a = tu_path(tmp, "a"), *out = tu_path(tmp, "out");
    tu_make_tree(a, 3, 12);
    mf_digest d, got;
    uint64_t n;
    free(pack_to_file(a, tu_path(tmp, "x.tar.zst"), &d, &n));
    mf_err err;
    REQUIRE(mkdir(out, 0755) == 0);
    int fd = open(tu_path(tmp, "x.tar.zst"), O_RDONLY);
    CHECK_OK(mf_archive_unpack(fd, out, &d, &got, &err));
    close(fd);
    CHECK(mf_digest_eq(&d, &got));
    struct stat st;
    CHECK(stat(tu_path(out, "top/f000.txt"), &st) == 0 && (st.st_mode & 0777) == 0755);
    CHECK(stat(tu_path(out, "sub/f001.txt"), &st) == 0 && (st.st_mode & 0777) == 0644);
    char *c = mf_test_read(tu_path(out, "sub/f001.txt"));
    CHECK_STR(c, "seed 3 file 1 odd\n");
    free(c);
}

/* ---- hostile archives ---- */

typedef struct hentry {
    const char *path;
    int type;            /* AE_IFREG, AE_IFLNK, AE_IFCHR, AE_IFIFO, AE_IFDIR */
    const char *data;    /* regular files */
    const char *link;    /* symlink target or hardlink source */
    int hardlink;
} hentry;

/* Build a tar with libarchive and compress it as one zstd frame (checksum on unless no_checksum). */
static void write_hostile_ex(const char *file, const hentry *es, int n, int no_checksum, int no_trailer)
{
    struct archive *a = archive_write_new();
    REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
    size_t cap = 1 << 20, used = 0;
    char *tar = calloc(1, cap);
    REQUIRE(archive_write_open_memory(a, tar, cap, &used) == ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, es[i].path);
        archive_entry_set_filetype(e, (unsigned)es[i].type);
        archive_entry_set_perm(e, 0644);
        if (es[i].type == AE_IFLNK) archive_entry_set_symlink(e, es[i].link);
        if (es[i].hardlink) archive_entry_set_hardlink(e, es[i].link);
        if (es[i].type == AE_IFCHR) archive_entry_set_rdev(e, makedev(1, 3));
        size_t len = es[i].data ? strlen(es[i].data) : 0;
        archive_entry_set_size(e, (la_int64_t)len);
        REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
        if (len) REQUIRE(archive_write_data(a, es[i].data, len) == (la_ssize_t)len);
        archive_entry_free(e);
    }
    REQUIRE(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, no_checksum ? 0 : 1);
    size_t zcap = ZSTD_compressBound(used) + 48;
    char *zb = malloc(zcap);
    size_t zn = ZSTD_compress2(z, zb, zcap, tar, used);
    REQUIRE(!ZSTD_isError(zn));
    if (!no_trailer) {
        /* medflow's trailer (artifacts/README.md): skippable frame 0x184D2A5E, length 40, "mfsha256", SHA-256 */
        mf_digest d;
        mf_digest_bytes(&d, zb, zn);
        memcpy(zb + zn, "\x5E\x2A\x4D\x18\x28\x00\x00\x00mfsha256", 16);
        memcpy(zb + zn + 16, d.b, 32);
        zn += 48;
    }
    tu_write(file, zb, zn, 0644);
    ZSTD_freeCCtx(z);
    free(zb);
    free(tar);
}

static void write_hostile(const char *file, const hentry *es, int n, int no_checksum)
{
    write_hostile_ex(file, es, n, no_checksum, 0);
}

static int unpack_file(const char *file, const char *dest, mf_err *err)
{
    int fd = open(file, O_RDONLY);
    REQUIRE(fd >= 0);
    int rc = mf_archive_unpack(fd, dest, NULL, NULL, err);
    close(fd);
    return rc;
}

static void expect_refused(const char *label, const hentry *es, int n, const char *msg_part)
{
    const char *tmp = mf_test_tmpdir();
    char file[4096], dest[4096];
    snprintf(file, sizeof file, "%s/%s.tar.zst", tmp, label);
    snprintf(dest, sizeof dest, "%s/jail-%s/inner", tmp, label);
    write_hostile(file, es, n, 0);
    mf_err err;
    REQUIRE(mf_mkdir_p(dest, 0755, &err) == 0);
    mf_err_clear(&err);
    int rc = unpack_file(file, dest, &err);
    if (rc != MF_ECORRUPT) mf_test_fail(__FILE__, __LINE__, "%s: expected MF_ECORRUPT, got %d (%s)", label, rc, err.msg);
    if (!strstr(err.msg, msg_part))
        mf_test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", label, err.msg, msg_part);
}

TEST(test_archive_refuses_absolute_paths_and_dotdot)
{
    hentry abs[] = {{"/tmp/evil-medflow-abs", AE_IFREG, "x", NULL, 0}};
    expect_refused("abs", abs, 1, "absolute path");
    hentry dd[] = {{"../escaped", AE_IFREG, "x", NULL, 0}};
    expect_refused("dotdot", dd, 1, "'..'");
    hentry mid[] = {{"a/../../escaped2", AE_IFREG, "x", NULL, 0}};
    expect_refused("middotdot", mid, 1, "'..'");
    CHECK(access(tu_path(mf_test_tmpdir(), "jail-dotdot/escaped"), F_OK) != 0);
    CHECK(access(tu_path(mf_test_tmpdir(), "jail-middotdot/escaped2"), F_OK) != 0);
    CHECK(access("/tmp/evil-medflow-abs", F_OK) != 0);
}

TEST(test_archive_refuses_symlinks_hardlinks_devices_fifos_dirs)
{
    hentry sl[] = {{"link", AE_IFLNK, NULL, "/etc/passwd", 0}};
    expect_refused("symlink", sl, 1, "symbolic link");
    hentry hl[] = {{"a", AE_IFREG, "x", NULL, 0}, {"b", AE_IFREG, NULL, "a", 1}};
    expect_refused("hardlink", hl, 2, "hard link");
    hentry dev[] = {{"null", AE_IFCHR, NULL, NULL, 0}};
    expect_refused("device", dev, 1, "character device");
    hentry fifo[] = {{"pipe", AE_IFIFO, NULL, NULL, 0}};
    expect_refused("fifo", fifo, 1, "fifo");
    hentry dir[] = {{"d", AE_IFDIR, NULL, NULL, 0}};
    expect_refused("dir", dir, 1, "directory");
    /* a symlink followed by a file written "through" it: refused at the symlink */
    hentry esc[] = {{"s", AE_IFLNK, NULL, "/tmp", 0}, {"s/evil-medflow-through", AE_IFREG, "x", NULL, 0}};
    expect_refused("through-symlink", esc, 2, "symbolic link");
    CHECK(access("/tmp/evil-medflow-through", F_OK) != 0);
}

TEST(test_archive_refuses_duplicates_disorder_and_foreign_framing)
{
    hentry dup[] = {{"a", AE_IFREG, "1", NULL, 0}, {"a", AE_IFREG, "2", NULL, 0}};
    expect_refused("dup", dup, 2, "out of order or duplicated");
    hentry order[] = {{"b", AE_IFREG, "1", NULL, 0}, {"a", AE_IFREG, "2", NULL, 0}};
    expect_refused("order", order, 2, "out of order");
    hentry inside[] = {{"a", AE_IFREG, "1", NULL, 0}, {"a-x", AE_IFREG, "2", NULL, 0}, {"a/b", AE_IFREG, "3", NULL, 0}};
    expect_refused("inside-a-file", inside, 3, "a file is in the way");
    /* also when only verifying (no destination) */
    const char *tmp0 = mf_test_tmpdir();
    write_hostile(tu_path(tmp0, "inside2.tar.zst"), inside, 3, 0);
    mf_err e0;
    CHECK_INT(unpack_file(tu_path(tmp0, "inside2.tar.zst"), NULL, &e0), MF_ECORRUPT);
    CHECK_CONTAINS(e0.msg, "a file is in the way");
    const char *tmp = mf_test_tmpdir();
    hentry ok[] = {{"a", AE_IFREG, "1", NULL, 0}};
    write_hostile(tu_path(tmp, "nock.tar.zst"), ok, 1, 1);
    mf_err err;
    CHECK_INT(unpack_file(tu_path(tmp, "nock.tar.zst"), NULL, &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum");
    tu_write(tu_path(tmp, "plain.tar"), "not an archive at all", 21, 0644);
    CHECK_INT(unpack_file(tu_path(tmp, "plain.tar"), NULL, &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "zstd");
    /* no medflow trailer: a plain .tar.zst is not accepted as an object */
    write_hostile_ex(tu_path(tmp, "notrailer.tar.zst"), ok, 1, 0, 1);
    CHECK_INT(unpack_file(tu_path(tmp, "notrailer.tar.zst"), NULL, &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "trailer");
    /* a valid one is accepted (the builder above is right) */
    write_hostile(tu_path(tmp, "good.tar.zst"), ok, 1, 0);
    CHECK_OK(unpack_file(tu_path(tmp, "good.tar.zst"), NULL, &err));
    /* trailing garbage after a valid archive */
    write_hostile(tu_path(tmp, "trail.tar.zst"), ok, 1, 0);
    REQUIRE(mf_test_sh(NULL, NULL, "printf 'junk' >> %s", tu_path(tmp, "trail.tar.zst")) == 0);
    CHECK_INT(unpack_file(tu_path(tmp, "trail.tar.zst"), NULL, &err), MF_ECORRUPT);
}

TEST(test_store_materialize_refuses_archive_not_matching_its_digest)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s;
    mf_err err;
    REQUIRE(mf_store_open(&s, tu_path(tmp, "store"), &err) == 0);
    /* a well-formed archive of tree A stored under the name of tree B */
    hentry a[] = {{"a.txt", AE_IFREG, "the real content", NULL, 0}};
    mf_digest fake;
    mf_digest_bytes(&fake, "something else", 14);
    char *obj = mf_store_object_path(s, &fake);
    write_hostile(obj, a, 1, 0);
    char *path = NULL;
    CHECK_INT(mf_store_materialize(s, &fake, &path, &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "does not match its digest");
    CHECK(path == NULL);
    char hex[65];
    CHECK(!mf_is_dir(tu_path(tu_path(tmp, "store/trees"), mf_digest_hex(&fake, hex))));
    /* and a hostile one under a store name */
    hentry sl[] = {{"link", AE_IFLNK, NULL, "/etc/passwd", 0}};
    write_hostile(obj, sl, 1, 0);
    CHECK_INT(mf_store_materialize(s, &fake, &path, &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "symbolic link");
    size_t bad = 0;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 1);
    free(obj);
    mf_store_free(s);
}

TEST(test_archive_bytes_do_not_depend_on_compression_threads)
{
    const char *tmp = mf_test_tmpdir();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/text", tmp);
    /* ~6 MB of compressible text: several zstd jobs */
    size_t n = 6u << 20;
    char *data = malloc(n);
    REQUIRE(data);
    unsigned x = 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = "abcdefgh \n"[(x >> 16) % 10];
    }
    tu_write(tu_path(dir, "corpus.txt"), data, n, 0644);
    free(data);
    char *out[3];
    size_t len[3];
    int threads[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        mf_tree t = {0};
        mf_err err;
        REQUIRE(mf_tree_scan(&t, dir, "", 0, &err) == 0 && mf_tree_sort(&t, &err) == 0);
        char file[4096];
        snprintf(file, sizeof file, "%s/t%d.tar.zst", tmp, k);
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        mf_digest d;
        uint64_t b;
        REQUIRE(fd >= 0 && mf_archive_pack(&t, fd, 1, threads[k], &d, &b, &err) == 0);
        close(fd);
        mf_tree_free(&t);
        REQUIRE(mf_read_file(file, &out[k], &len[k], &err) == 0);
    }
    CHECK(len[0] < (6u << 20) / 2); /* it did compress */
    CHECK(len[0] == len[1] && !memcmp(out[0], out[1], len[0]));
    CHECK(len[0] == len[2] && !memcmp(out[0], out[2], len[0]));
    for (int k = 0; k < 3; k++) free(out[k]);
}
