/*
 * tests/artifacts/test_store.c — the store: put/materialise, corruption, crash
 * safety (SIGKILL during put), concurrent writers, refs.json, gc, locking,
 * action cache and source stat cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

TEST(test_store_put_then_materialize_every_vector)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    mf_json *vs = tu_load_vectors();
    for (size_t i = 0; i < vs->n; i++) {
        char src[4096];
        snprintf(src, sizeof src, "%s/src%zu", tmp, i);
        tu_build_vector(src, vs->items[i]);
        mf_digest d, want, got;
        mf_err err;
        REQUIRE(mf_digest_parse(&want, mf_json_get_str(vs->items[i], "digest", ""), &err) == 0);
        CHECK_OK(mf_store_put_dir(s, src, &d, NULL, &err));
        CHECK(mf_digest_eq(&d, &want));
        char *path = NULL;
        CHECK_OK(mf_store_materialize(s, &d, &path, &err));
        REQUIRE(path);
        CHECK_OK(mf_digest_dir(&got, path, &err));
        CHECK(mf_digest_eq(&got, &want));
        struct stat st;
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0222) == 0);
        /* materialising again reuses the tree */
        char *again = NULL;
        CHECK_OK(mf_store_materialize(s, &d, &again, &err));
        CHECK_STR(again, path);
        free(path);
        free(again);
    }
    mf_json_free(vs);
    mf_store_obj *objs;
    size_t n;
    mf_err err;
    CHECK_OK(mf_store_list(s, &objs, &n, &err));
    CHECK_INT(n, 8);
    CHECK(objs[0].materialized && objs[0].bytes > 0);
    free(objs);
    mf_store_free(s);
}

TEST(test_store_roundtrips_non_utf8_names)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    char src[4096];
    snprintf(src, sizeof src, "%s/src", tmp);
    tu_write(tu_path(src, "latin1-\xe9t\xe9.txt"), "x", 1, 0644);
    tu_write(tu_path(src, "\xe6\x95\xb0\xe6\x8d\xae/\xff\xfe"), "y", 1, 0755);
    mf_digest d, got;
    mf_err err;
    CHECK_OK(mf_store_put_dir(s, src, &d, NULL, &err));
    char *path = NULL;
    CHECK_OK(mf_store_materialize(s, &d, &path, &err));
    REQUIRE(path);
    CHECK_OK(mf_digest_dir(&got, path, &err));
    CHECK(mf_digest_eq(&got, &d));
    CHECK(mf_is_file(tu_path(path, "\xe6\x95\xb0\xe6\x8d\xae/\xff\xfe")));
    free(path);
    mf_store_free(s);
}

TEST(test_store_verify_names_every_single_flipped_byte)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    const char *src = tu_path(tmp, "src");
    tu_make_tree(src, 5, 4);
    mf_digest d, other;
    mf_err err;
    REQUIRE(mf_store_put_dir(s, src, &d, NULL, &err) == 0);
    tu_make_tree(src, 6, 4);
    REQUIRE(mf_store_put_dir(s, src, &other, NULL, &err) == 0);
    char *obj = mf_store_object_path(s, &d);
    char *orig = NULL;
    size_t len = 0;
    REQUIRE(mf_read_file(obj, &orig, &len, &err) == 0);
    REQUIRE(len > 32);
    int missed = 0;
    char hex[65], tree[4096];
    snprintf(tree, sizeof tree, "%s/store/trees/%s", tmp, mf_digest_hex(&d, hex));
    for (size_t pos = 0; pos < len; pos++) {
        char *bad = malloc(len);
        memcpy(bad, orig, len);
        bad[pos] ^= (char)(1 << (pos % 8));
        REQUIRE(mf_write_file_atomic(obj, bad, len, 0644, &err) == 0);
        free(bad);
        size_t nbad = 0;
        REQUIRE(mf_store_verify(s, NULL, NULL, &nbad, &err) == 0);
        char *p = NULL;
        int rc = mf_store_materialize(s, &d, &p, &err);
        if (nbad != 1 || rc != MF_ECORRUPT) {
            if (missed++ < 5)
                mf_test_fail(__FILE__, __LINE__, "flip at byte %zu of %zu: verify found %zu, materialise rc %d", pos, len,
                             nbad, rc);
        }
        free(p);
        CHECK(!mf_is_dir(tree));
    }
    CHECK_INT(missed, 0);
    REQUIRE(mf_write_file_atomic(obj, orig, len, 0444, &err) == 0);
    size_t nbad = 9;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &nbad, &err));
    CHECK_INT(nbad, 0);
    free(orig);
    free(obj);
    mf_store_free(s);
}

typedef struct vctx {
    char names[16][80];
    int n;
} vctx;

static void collect_report(void *ctx, const char *what, const mf_digest *d, const mf_err *e)
{
    vctx *v = ctx;
    char ds[72];
    if (v->n < 16) snprintf(v->names[v->n++], 80, "%s %s", what, mf_digest_str(d, ds));
    (void)e;
}

TEST(test_store_verify_names_a_modified_materialised_tree)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    const char *src = tu_path(tmp, "src");
    tu_make_tree(src, 5, 4);
    mf_digest d;
    mf_err err;
    char *path = NULL;
    REQUIRE(mf_store_put_dir(s, src, &d, NULL, &err) == 0);
    REQUIRE(mf_store_materialize(s, &d, &path, &err) == 0);
    REQUIRE(chmod(tu_path(path, "sub"), 0755) == 0);
    REQUIRE(chmod(tu_path(path, "sub/f001.txt"), 0644) == 0);
    tu_write(tu_path(path, "sub/f001.txt"), "tampered", 8, 0644);
    vctx v = {0};
    size_t bad = 0;
    CHECK_OK(mf_store_verify(s, collect_report, &v, &bad, &err));
    CHECK_INT(bad, 1);
    char ds[72], want[100];
    snprintf(want, sizeof want, "tree %s", mf_digest_str(&d, ds));
    CHECK_STR(v.names[0], want);
    free(path);
    mf_store_free(s);
}

/* Child: put distinct trees (forever when count < 0), appending each finished digest to log. */
static void putter(const char *storedir, const char *srcbase, const char *log, unsigned seed, int count)
{
    mf_store *s = NULL;
    mf_err err;
    if (mf_store_open(&s, storedir, &err)) _exit(3);
    size_t big = 256 * 1024;
    char *data = malloc(big);
    if (!data) _exit(6);
    for (int i = 0; count < 0 || i < count; i++) {
        char src[4096];
        snprintf(src, sizeof src, "%s/%u-%d", srcbase, seed, i);
        tu_make_tree(src, seed * 100000u + (unsigned)i, 6);
        if (count < 0) {
            /* one bigger file so a put takes long enough to be killed in the middle */
            for (size_t k = 0; k < big; k++) data[k] = (char)(k * 31 + (size_t)i + seed);
            tu_write(tu_path(src, "big.bin"), data, big, 0644);
        }
        mf_digest d;
        if (mf_store_put_dir(s, src, &d, NULL, &err)) _exit(4);
        char line[80];
        mf_digest_hex(&d, line);
        line[64] = '\n';
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd < 0 || write(fd, line, 65) != 65) _exit(5);
        close(fd);
    }
    free(data);
    mf_store_free(s);
    _exit(0);
}

static void check_logged_present(mf_store *s, const char *log, size_t *count)
{
    char *text = mf_test_read(log);
    *count = 0;
    if (!text) return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        mf_digest d;
        mf_err err;
        if (strlen(line) != 64) continue; /* a line torn by the kill */
        REQUIRE(mf_digest_parse(&d, line, &err) == 0);
        if (!mf_store_has(s, &d)) mf_test_fail(__FILE__, __LINE__, "completed put %s is missing", line);
        (*count)++;
    }
    free(text);
}

TEST(test_store_survives_sigkill_at_random_points_during_put)
{
    const char *tmp = mf_test_tmpdir();
    char storedir[4096], log[4096], srcs[4096];
    snprintf(storedir, sizeof storedir, "%s/store", tmp);
    snprintf(log, sizeof log, "%s/done.log", tmp);
    snprintf(srcs, sizeof srcs, "%s/srcs", tmp);
    mf_store *s = open_store(storedir);
    srand(12345);
    for (int it = 0; it < 30; it++) {
        pid_t pid = fork();
        if (pid == 0) putter(storedir, srcs, log, (unsigned)it + 1, -1);
        struct timespec ts = {0, (long)(rand() % 40000) * 1000L}; /* 0..40 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
    }
    size_t count = 0;
    check_logged_present(s, log, &count); /* how many completed depends on the machine's load */
    /* the store still takes puts after all that */
    char after[4096];
    snprintf(after, sizeof after, "%s/after", tmp);
    tu_make_tree(after, 4242, 5);
    mf_digest da;
    mf_err e0;
    CHECK_OK(mf_store_put_dir(s, after, &da, NULL, &e0));
    CHECK(mf_store_has(s, &da));
    size_t bad = 99;
    mf_err err;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    /* killed writers held the lock shared: the kernel released it */
    CHECK_OK(mf_store_lock(s, MF_LOCK_NOWAIT, &err));
    mf_store_unlock(s);
    /* and gc clears their tmp/ litter */
    mf_store_gc_stats st;
    CHECK_OK(mf_store_gc(s, NULL, 0, 0, &st, &err));
    char *out = NULL;
    mf_test_sh(&out, NULL, "ls %s/tmp | wc -l", storedir);
    CHECK_STR(out, "0\n");
    free(out);
    mf_store_free(s);
}

TEST(test_store_two_processes_put_100_artifacts_each)
{
    const char *tmp = mf_test_tmpdir();
    char storedir[4096], log[2][4096], srcs[4096];
    snprintf(storedir, sizeof storedir, "%s/store", tmp);
    snprintf(srcs, sizeof srcs, "%s/srcs", tmp);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        snprintf(log[k], sizeof log[k], "%s/done%d.log", tmp, k);
        pids[k] = fork();
        if (pids[k] == 0) putter(storedir, srcs, log[k], (unsigned)k + 1, 100);
    }
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(pids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    mf_store *s = open_store(storedir);
    size_t c0, c1;
    check_logged_present(s, log[0], &c0);
    check_logged_present(s, log[1], &c1);
    CHECK_INT(c0, 100);
    CHECK_INT(c1, 100);
    mf_store_obj *objs;
    size_t n;
    mf_err err;
    CHECK_OK(mf_store_list(s, &objs, &n, &err));
    CHECK_INT(n, 200);
    free(objs);
    size_t bad = 99;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    mf_store_free(s);
}

TEST(test_store_concurrent_materialisations_of_one_digest_are_safe)
{
    const char *tmp = mf_test_tmpdir();
    char storedir[4096];
    snprintf(storedir, sizeof storedir, "%s/store", tmp);
    mf_store *s = open_store(storedir);
    const char *src = tu_path(tmp, "src");
    tu_make_tree(src, 9, 50);
    mf_digest d;
    mf_err err;
    REQUIRE(mf_store_put_dir(s, src, &d, NULL, &err) == 0);
    pid_t pids[4];
    for (int k = 0; k < 4; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            mf_store *c = NULL;
            mf_err e;
            char *p = NULL;
            if (mf_store_open(&c, storedir, &e) || mf_store_materialize(c, &d, &p, &e)) _exit(1);
            mf_digest got;
            if (mf_digest_dir(&got, p, &e) || !mf_digest_eq(&got, &d)) _exit(2);
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++) {
        int st;
        waitpid(pids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    size_t bad = 9;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    mf_store_free(s);
}

TEST(test_store_refs_json_shares_a_base_model_by_digest)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    char base[4096], adapter[4096], junk[4096];
    snprintf(base, sizeof base, "%s/base", tmp);
    snprintf(adapter, sizeof adapter, "%s/adapter", tmp);
    snprintf(junk, sizeof junk, "%s/junk", tmp);
    tu_make_tree(base, 1, 5);
    mf_digest db, da, dx;
    mf_err err;
    REQUIRE(mf_store_put_dir(s, base, &db, NULL, &err) == 0);
    char ds[72], json[200];
    snprintf(json, sizeof json, "{\"refs\": {\"base_model\": \"%s\"}}\n", mf_digest_str(&db, ds));
    tu_write(tu_path(adapter, "refs.json"), json, strlen(json), 0644);
    tu_write(tu_path(adapter, "adapter_model.safetensors"), "lora", 4, 0644);
    CHECK_OK(mf_store_put_dir(s, adapter, &da, NULL, &err));
    mf_digest *refs;
    size_t nr;
    CHECK_OK(mf_store_refs(s, &da, &refs, &nr, &err));
    CHECK_INT(nr, 1);
    CHECK(nr == 1 && mf_digest_eq(&refs[0], &db));
    free(refs);
    /* materialising the adapter materialises the base beside it */
    char *path = NULL;
    CHECK_OK(mf_store_materialize(s, &da, &path, &err));
    char hex[65], sib[4096];
    snprintf(sib, sizeof sib, "%s/../%s", path, mf_digest_hex(&db, hex));
    CHECK(mf_is_dir(sib));
    free(path);
    /* gc from the adapter alone keeps the base; an unrelated object goes */
    tu_make_tree(junk, 2, 3);
    REQUIRE(mf_store_put_dir(s, junk, &dx, NULL, &err) == 0);
    mf_store_gc_stats st;
    CHECK_OK(mf_store_gc(s, &da, 1, 1, &st, &err));
    CHECK_INT(st.kept, 2);
    CHECK_INT(st.removed, 1);
    CHECK(mf_store_has(s, &dx)); /* dry run */
    CHECK_OK(mf_store_gc(s, &da, 1, 0, &st, &err));
    CHECK(st.bytes_removed > 0);
    CHECK(mf_store_has(s, &da) && mf_store_has(s, &db) && !mf_store_has(s, &dx));
    size_t bad = 9;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    /* refs to an object that is not in the store are refused */
    snprintf(json, sizeof json, "{\"refs\": {\"base_model\": \"%s\"}}\n", mf_digest_str(&dx, ds));
    tu_write(tu_path(adapter, "refs.json"), json, strlen(json), 0644);
    CHECK_INT(mf_store_put_dir(s, adapter, &da, NULL, &err), MF_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "not in the store");
    mf_store_free(s);
}

TEST(test_store_gc_keeps_reachable_and_drops_stale_keys)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    mf_digest d[4], key;
    mf_err err;
    for (int i = 0; i < 4; i++) {
        char src[4096];
        snprintf(src, sizeof src, "%s/src%d", tmp, i);
        tu_make_tree(src, (unsigned)i + 40, 3);
        REQUIRE(mf_store_put_dir(s, src, &d[i], NULL, &err) == 0);
    }
    mf_digest_bytes(&key, "key-of-3", 8);
    CHECK_OK(mf_store_key_put(s, &key, &d[3], "run-1", &err));
    char *p = NULL;
    CHECK_OK(mf_store_materialize(s, &d[3], &p, &err));
    mf_digest keep[2] = {d[0], d[2]};
    mf_store_gc_stats st;
    CHECK_OK(mf_store_gc(s, keep, 2, 0, &st, &err));
    CHECK_INT(st.kept, 2);
    CHECK_INT(st.removed, 2);
    CHECK(mf_store_has(s, &d[0]) && !mf_store_has(s, &d[1]) && mf_store_has(s, &d[2]) && !mf_store_has(s, &d[3]));
    CHECK(!mf_is_dir(p));
    mf_digest out;
    CHECK_INT(mf_store_key_get(s, &key, &out, NULL, &err), MF_ENOTFOUND);
    free(p);
    mf_store_free(s);
}

TEST(test_store_action_cache_roundtrip_and_miss)
{
    mf_store *s = open_store(tu_path(mf_test_tmpdir(), "store"));
    mf_digest key, out, got;
    mf_err err;
    mf_digest_bytes(&key, "k", 1);
    mf_digest_bytes(&out, "o", 1);
    CHECK_INT(mf_store_key_get(s, &key, &got, NULL, &err), MF_ENOTFOUND);
    CHECK_OK(mf_store_key_put(s, &key, &out, "a1b2c3", &err));
    char *run = NULL;
    CHECK_OK(mf_store_key_get(s, &key, &got, &run, &err));
    CHECK(mf_digest_eq(&got, &out));
    CHECK_STR(run, "a1b2c3");
    free(run);
    mf_store_free(s);
}

TEST(test_store_lock_excludes_a_second_writer_and_dies_with_its_holder)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/store", mf_test_tmpdir());
    mf_store *s = open_store(dir);
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mf_store *c = NULL;
        mf_err e;
        if (mf_store_open(&c, dir, &e) || mf_store_lock(c, MF_LOCK_NOWAIT, &e)) _exit(1);
        if (write(pfd[1], "x", 1) != 1) _exit(2);
        pause();
        _exit(0);
    }
    char c;
    REQUIRE(read(pfd[0], &c, 1) == 1);
    mf_err err;
    CHECK_INT(mf_store_lock(s, MF_LOCK_NOWAIT, &err), MF_EBUSY);
    char pidtxt[32];
    snprintf(pidtxt, sizeof pidtxt, "pid %ld", (long)pid);
    CHECK_CONTAINS(err.msg, pidtxt);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK_OK(mf_store_lock(s, MF_LOCK_NOWAIT, &err));
    mf_store_free(s);
}

TEST(test_source_digest_uses_stat_cache_and_rehash)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    char src[4096];
    snprintf(src, sizeof src, "%s/corpus", tmp);
    tu_make_tree(src, 11, 30);
    /* make the files old so they are not "racy" */
    REQUIRE(mf_test_sh(NULL, NULL, "find '%s' -type f -exec touch -d '2020-01-01' {} +", src) == 0);
    mf_digest d1, d2, d3, dd;
    mf_source_stats st;
    mf_err err;
    CHECK_OK(mf_source_digest(s, src, 0, &d1, &st, &err));
    CHECK_INT(st.files, 30);
    CHECK_INT(st.hashed, 30);
    CHECK_OK(mf_source_digest(s, src, 0, &d2, &st, &err));
    CHECK_INT(st.hashed, 0);
    CHECK(mf_digest_eq(&d1, &d2));
    CHECK_OK(mf_digest_dir(&dd, src, &err));
    CHECK(mf_digest_eq(&d1, &dd));
    CHECK_OK(mf_source_digest(s, src, MF_SOURCE_REHASH, &d2, &st, &err));
    CHECK_INT(st.hashed, 30);
    /* same size, same mtime, different content: ctime gives it away */
    char f[4096];
    snprintf(f, sizeof f, "%s/sub/f001.txt", src);
    char *old = mf_test_read(f);
    REQUIRE(old);
    old[0] = old[0] == 'X' ? 'Y' : 'X';
    tu_write(f, old, strlen(old), 0644);
    free(old);
    REQUIRE(mf_test_sh(NULL, NULL, "touch -d '2020-01-01' '%s'", f) == 0);
    CHECK_OK(mf_source_digest(s, src, 0, &d3, &st, &err));
    CHECK_INT(st.hashed, 1);
    CHECK(!mf_digest_eq(&d1, &d3));
    mf_store_free(s);
}

TEST(test_source_single_file_and_glob_digests)
{
    const char *tmp = mf_test_tmpdir();
    tu_write(tu_path(tmp, "data/train.jsonl"), "{\"a\":1}\n", 8, 0644);
    tu_write(tu_path(tmp, "data/test.jsonl"), "{\"a\":2}\n", 8, 0644);
    tu_write(tu_path(tmp, "data/notes.txt"), "x", 1, 0644);
    tu_write(tu_path(tmp, "one/train.jsonl"), "{\"a\":1}\n", 8, 0644);
    tu_write(tu_path(tmp, "two/train.jsonl"), "{\"a\":1}\n", 8, 0644);
    tu_write(tu_path(tmp, "two/test.jsonl"), "{\"a\":2}\n", 8, 0644);
    mf_digest a, b;
    mf_err err;
    /* a single file is the one-entry tree named by its basename */
    CHECK_OK(mf_source_digest(NULL, tu_path(tmp, "data/train.jsonl"), 0, &a, NULL, &err));
    CHECK_OK(mf_digest_dir(&b, tu_path(tmp, "one"), &err));
    CHECK(mf_digest_eq(&a, &b));
    /* a glob is the tree of its matches relative to the wildcard-free directory */
    CHECK_OK(mf_source_digest(NULL, tu_path(tmp, "data/*.jsonl"), 0, &a, NULL, &err));
    CHECK_OK(mf_digest_dir(&b, tu_path(tmp, "two"), &err));
    CHECK(mf_digest_eq(&a, &b));
    CHECK_INT(mf_source_digest(NULL, tu_path(tmp, "data/*.csv"), 0, &a, NULL, &err), MF_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "matches no file");
    CHECK_INT(mf_source_digest(NULL, tu_path(tmp, "nope"), 0, &a, NULL, &err), MF_ENOTFOUND);
}

TEST(test_store_materialise_killed_midway_leaves_no_partial_tree)
{
    const char *tmp = mf_test_tmpdir();
    char storedir[4096], src[4096], tree[4096];
    snprintf(storedir, sizeof storedir, "%s/store", tmp);
    snprintf(src, sizeof src, "%s/src", tmp);
    mf_store *s = open_store(storedir);
    size_t big = 1u << 20;
    char *data = malloc(big);
    REQUIRE(data);
    for (int f = 0; f < 8; f++) {
        for (size_t k = 0; k < big; k++) data[k] = (char)(k * 7 + (size_t)f);
        char name[32];
        snprintf(name, sizeof name, "w%d.bin", f);
        tu_write(tu_path(src, name), data, big, 0644);
    }
    free(data);
    mf_digest d;
    mf_err err;
    REQUIRE(mf_store_put_dir(s, src, &d, NULL, &err) == 0);
    char hex[65];
    snprintf(tree, sizeof tree, "%s/trees/%s", storedir, mf_digest_hex(&d, hex));
    srand(777);
    int complete = 0;
    for (int it = 0; it < 20; it++) {
        pid_t pid = fork();
        if (pid == 0) {
            mf_store *c = NULL;
            mf_err e;
            char *p = NULL;
            _exit(mf_store_open(&c, storedir, &e) || mf_store_materialize(c, &d, &p, &e) ? 1 : 0);
        }
        struct timespec ts = {0, (long)(rand() % 30000) * 1000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (mf_is_dir(tree)) {
            mf_digest got;
            CHECK_OK(mf_digest_dir(&got, tree, &err));
            CHECK(mf_digest_eq(&got, &d));
            complete++;
            CHECK_OK(mf_rm_rf(tree, &err));
        }
    }
    /* whatever was left in tmp/ is gone after gc; the object is intact */
    mf_store_gc_stats st;
    CHECK_OK(mf_store_gc(s, &d, 1, 0, &st, &err));
    size_t bad = 9;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    char *out = NULL;
    mf_test_sh(&out, NULL, "ls '%s/tmp' | wc -l", storedir);
    CHECK_STR(out, "0\n");
    free(out);
    (void)complete;
    mf_store_free(s);
}

TEST(test_store_adopt_turns_a_finished_output_into_its_tree)
{
    const char *tmp = mf_test_tmpdir();
    mf_store *s = open_store(tu_path(tmp, "store"));
    mf_err err;
    char *out1 = NULL, *out2 = NULL, *tree = NULL, *tree2 = NULL;
    REQUIRE(mf_store_tmpdir(s, "sft", &out1, &err) == 0);
    REQUIRE(mf_store_tmpdir(s, "sft", &out2, &err) == 0);
    tu_make_tree(out1, 21, 6);
    tu_make_tree(out2, 21, 6);
    mf_digest d, d2, got;
    REQUIRE(mf_store_put_dir(s, out1, &d, NULL, &err) == 0);
    CHECK_OK(mf_store_adopt(s, out1, &d, &tree, &err));
    CHECK(!mf_is_dir(out1));
    CHECK_OK(mf_digest_dir(&got, tree, &err));
    CHECK(mf_digest_eq(&got, &d));
    struct stat st;
    CHECK(stat(tu_path(tree, "sub/f001.txt"), &st) == 0 && (st.st_mode & 0222) == 0);
    /* the same output again: the existing tree stays, the duplicate goes */
    REQUIRE(mf_store_put_dir(s, out2, &d2, NULL, &err) == 0);
    CHECK(mf_digest_eq(&d, &d2));
    CHECK_OK(mf_store_adopt(s, out2, &d2, &tree2, &err));
    CHECK_STR(tree2, tree);
    CHECK(!mf_is_dir(out2));
    /* materialise finds it without extracting */
    char *m = NULL;
    CHECK_OK(mf_store_materialize(s, &d, &m, &err));
    CHECK_STR(m, tree);
    size_t bad = 9;
    CHECK_OK(mf_store_verify(s, NULL, NULL, &bad, &err));
    CHECK_INT(bad, 0);
    free(m);
    free(out1);
    free(out2);
    free(tree);
    free(tree2);
    mf_store_free(s);
}
