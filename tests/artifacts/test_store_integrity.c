/*
 * tests/artifacts/test_store_integrity.c — what the store does about damage
 * and scale: a corrupt object replaced by a recomputed put, a tampered
 * materialised tree checked and re-materialised before use, a garbage
 * action-cache entry, and a stat cache read once per store handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "common/fsutil.h"
#include "tests/artifacts/util.h"
#include "tests/harness.h"

static mf_store *open_store(const char *dir)
{
    mf_store *s = NULL;
    mf_err err;
    int rc = mf_store_open(&s, dir, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "open %s: %s", dir, err.msg);
    REQUIRE(rc == 0);
    return s;
}

/* Many sources through one handle: the stat cache is read once (not once per
 * source, which was quadratic) and written back once. */
TEST(test_source_stat_cache_is_read_once_per_store_handle)
{
    const char *tmp = mf_test_tmpdir();
    char store[4096], cache[4096];
    snprintf(store, sizeof store, "%s/store", tmp);
    snprintf(cache, sizeof cache, "%s/statcache", store);
    mf_store *s = open_store(store);
    for (int i = 0; i < 20; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/src/s%02d.txt", tmp, i);
        tu_write(p, p, strlen(p), 0644);
    }
    REQUIRE(mf_test_sh(NULL, NULL, "touch -d '2020-01-01' '%s'/src/*.txt", tmp) == 0);
    mf_source_stats st;
    mf_err err;
    mf_digest d[20], again;
    for (int i = 0; i < 20; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/src/s%02d.txt", tmp, i);
        CHECK_OK(mf_source_digest(s, p, 0, &d[i], &st, &err));
        CHECK_INT(st.hashed, 1);
    }
    /* nothing is written per source: the cache goes to disk once, at flush */
    CHECK(!mf_is_file(cache));
    CHECK_OK(mf_source_cache_flush(s, &err));
    REQUIRE(mf_is_file(cache));
    /* the handle keeps what it loaded: removing the file does not make it re-read (or re-hash) */
    unlink(cache);
    for (int i = 0; i < 20; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/src/s%02d.txt", tmp, i);
        CHECK_OK(mf_source_digest(s, p, 0, &again, &st, &err));
        CHECK_INT(st.hashed, 0);
        CHECK(mf_digest_eq(&again, &d[i]));
    }
    mf_store_free(s);
    /* a fresh handle reads the file written at flush (free flushes only when something changed) */
    CHECK(!mf_is_file(cache));
    s = open_store(store);
    char p[4096];
    snprintf(p, sizeof p, "%s/src/s07.txt", tmp);
    CHECK_OK(mf_source_digest(s, p, 0, &again, &st, &err));
    CHECK_INT(st.hashed, 1); /* the file was removed above, so this handle hashed it */
    mf_store_free(s);
    REQUIRE(mf_is_file(cache)); /* free wrote it back */
    s = open_store(store);
    CHECK_OK(mf_source_digest(s, p, 0, &again, &st, &err));
    CHECK_INT(st.hashed, 0);
    CHECK(mf_digest_eq(&again, &d[7]));
    mf_store_free(s);
}

/* Flip one bit of a file (made writable first). */
static void flip_bit(const char *path, long pos)
{
    char *text = NULL;
    size_t len = 0;
    mf_err err;
    REQUIRE(mf_read_file(path, &text, &len, &err) == 0);
    REQUIRE(len > 0);
    size_t at = pos < 0 ? len / 2 : (size_t)pos % len;
    text[at] ^= 0x10;
    chmod(path, 0644);
    REQUIRE(mf_write_file_atomic(path, text, len, 0444, &err) == 0);
    free(text);
}

/* Putting the same content again replaces a stored object that fails its
 * hash: a recomputed output heals the store instead of keeping the bad copy. */
TEST(test_store_put_of_a_recomputed_output_replaces_a_corrupt_object)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    const char *src = tu_path(tmp, "src");
    tu_make_tree(src, 9, 5);
    mf_digest d, d2;
    mf_err err;
    REQUIRE(mf_store_put_dir(s, src, &d, NULL, &err) == 0);
    char *obj = mf_store_object_path(s, &d);
    flip_bit(obj, -1);
    size_t bad = 0;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 1);
    CHECK_OK(mf_store_put_dir(s, src, &d2, NULL, &err));
    CHECK(mf_digest_eq(&d, &d2));
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    char *path = NULL;
    REQUIRE(mf_store_materialize(s, &d, &path, &err) == 0);
    mf_digest got;
    CHECK_OK(mf_digest_dir(&got, path, &err));
    CHECK(mf_digest_eq(&got, &d));
    struct stat st;
    CHECK(stat(obj, &st) == 0 && (st.st_mode & 0222) == 0); /* still read-only */
    free(path);
    free(obj);
    mf_store_free(s);
}
