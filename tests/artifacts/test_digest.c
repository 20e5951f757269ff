/* tests/artifacts/test_digest.c — tree digests: committed vectors, independence from mtime/owner, formats. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/digest.h"
#include "common/fsutil.h"
#include "tests/artifacts/util.h"
#include "tests/harness.h"

TEST(test_digest_matches_committed_vectors)
{
    mf_json *vs = tu_load_vectors();
    for (size_t i = 0; i < vs->n; i++) {
        char dir[64];
        snprintf(dir, sizeof dir, "v%zu", i);
        const char *d = tu_path(mf_test_tmpdir(), dir);
        tu_build_vector(d, vs->items[i]);
        mf_digest got;
        mf_err err;
        CHECK_OK(mf_digest_dir(&got, d, &err));
        char s[72];
        const char *want = mf_json_get_str(vs->items[i], "digest", "");
        if (strcmp(mf_digest_str(&got, s), want))
            mf_test_fail(__FILE__, __LINE__, "vector '%s': got %s want %s", mf_json_get_str(vs->items[i], "name", ""), s, want);
    }
    mf_json_free(vs);
}

TEST(test_digest_vectors_agree_with_the_python_reimplementation)
{
    char *out = NULL;
    int rc = mf_test_sh(&out, NULL, "python3 %s/tests/artifacts/vectors/treehash.py --check %s/tests/artifacts/vectors/vectors.json",
                        mf_test_root(), mf_test_root());
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "8 of 8 vectors match");
    free(out);
    /* and on a directory built by the C side */
    const char *d = tu_path(mf_test_tmpdir(), "t");
    tu_make_tree(d, 7, 20);
    mf_digest got;
    mf_err err;
    CHECK_OK(mf_digest_dir(&got, d, &err));
    char s[72];
    rc = mf_test_sh(&out, NULL, "python3 %s/tests/artifacts/vectors/treehash.py %s", mf_test_root(), d);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, mf_digest_str(&got, s));
    free(out);
}

TEST(test_digest_ignores_mtime_and_owner_but_not_exec_bit)
{
    const char *a = tu_path(mf_test_tmpdir(), "a"), *b = tu_path(mf_test_tmpdir(), "b");
    tu_make_tree(a, 1, 10);
    tu_make_tree(b, 1, 10);
    struct timespec ts[2] = {{12345, 0}, {12345, 678}};
    const char *f = tu_path(b, "sub/f001.txt");
    REQUIRE(utimensat(AT_FDCWD, f, ts, 0) == 0);
    if (getuid() == 0) CHECK(chown(f, 65534, 65534) == 0);
    mf_digest da, db;
    mf_err err;
    CHECK_OK(mf_digest_dir(&da, a, &err));
    CHECK_OK(mf_digest_dir(&db, b, &err));
    CHECK(mf_digest_eq(&da, &db));
    REQUIRE(chmod(f, 0755) == 0);
    CHECK_OK(mf_digest_dir(&db, b, &err));
    CHECK(!mf_digest_eq(&da, &db));
}

TEST(test_digest_text_forms_and_parse_errors)
{
    mf_digest d;
    mf_err err;
    mf_digest_bytes(&d, "abc", 3);
    char s[72], h[65], sh[13];
    CHECK_STR(mf_digest_str(&d, s), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_STR(mf_digest_hex(&d, h), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_STR(mf_digest_short(&d, sh), "ba7816bf8f01");
    mf_digest e;
    CHECK_OK(mf_digest_parse(&e, s, &err));
    CHECK(mf_digest_eq(&d, &e));
    CHECK_OK(mf_digest_parse(&e, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &err));
    CHECK(mf_digest_eq(&d, &e));
    CHECK_INT(mf_digest_parse(&e, "sha256:xyz", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "64 hex");
}

TEST(test_digest_refuses_symlinks_in_outputs)
{
    const char *a = tu_path(mf_test_tmpdir(), "a");
    tu_make_tree(a, 1, 3);
    REQUIRE(symlink("/etc/passwd", tu_path(a, "link")) == 0);
    mf_digest d;
    mf_err err;
    CHECK_INT(mf_digest_dir(&d, a, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "symbolic link");
}

TEST(test_tree_paths_are_validated)
{
    CHECK(mf_tree_path_valid("a/b.txt"));
    CHECK(!mf_tree_path_valid("/etc/passwd"));
    CHECK(!mf_tree_path_valid("../x"));
    CHECK(!mf_tree_path_valid("a/../../x"));
    CHECK(!mf_tree_path_valid("a//b"));
    CHECK(!mf_tree_path_valid("./a"));
    CHECK(!mf_tree_path_valid(""));
    CHECK(!mf_tree_path_valid("a/"));
}
