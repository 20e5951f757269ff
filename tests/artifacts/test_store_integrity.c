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
