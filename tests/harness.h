/*
 * tests/harness.h — medflow's test harness.
 *
 * Every tests/<area>/test_*.c file is linked into one runner. A test is
 *     TEST(test_store_rejects_tar_path_traversal) { CHECK(...); REQUIRE(...); }
 * Tests register themselves at load time; the runner forks one child per
 * test (a crash or abort is a failure, not the end of the run), applies a
 * time limit, and ends with "N passed, N failed".
 *
 * CHECK records a failure and goes on; REQUIRE records and ends the test.
 * Numeric checks state their tolerance at the call site.
 */
#ifndef MF_TEST_HARNESS_H
#define MF_TEST_HARNESS_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef void (*mf_test_fn)(void);
void mf_test_register(const char *name, const char *file, mf_test_fn fn);
void mf_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mf_test_abort(void) __attribute__((noreturn));

#define TEST(name)                                                              \
    static void name(void);                                                     \
    __attribute__((constructor)) static void mf_reg_##name(void)                \
    {                                                                           \
        mf_test_register(#name, __FILE__, name);                                \
    }                                                                           \
    static void name(void)

/* A test that needs more than the runner's default time limit (e.g. one that
 * trains models end to end): its own limit in seconds, or MF_TEST_TIMEOUT when
 * that is larger. */
void mf_test_register_slow(const char *name, const char *file, mf_test_fn fn, unsigned seconds);
#define TEST_SLOW(name, seconds)                                                \
    static void name(void);                                                     \
    __attribute__((constructor)) static void mf_reg_##name(void)                \
    {                                                                           \
        mf_test_register_slow(#name, __FILE__, name, (seconds));                \
    }                                                                           \
    static void name(void)

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) mf_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);      \
    } while (0)
#define REQUIRE(cond)                                                           \
    do {                                                                        \
        if (!(cond)) {                                                          \
            mf_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);             \
            mf_test_abort();                                                    \
        }                                                                       \
    } while (0)
#define CHECK_INT(a, b)                                                         \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        if (a_ != b_) mf_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_STR(a, b)                                                         \
    do {                                                                        \
        const char *a_ = (a), *b_ = (b);                                        \
        if (!a_ || !b_ || strcmp(a_, b_))                                       \
            mf_test_fail(__FILE__, __LINE__, "%s == %s:\n  got:  \"%s\"\n  want: \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                             \
    do {                                                                        \
        const char *h_ = (hay), *n_ = (needle);                                 \
        if (!h_ || !strstr(h_, n_))                                             \
            mf_test_fail(__FILE__, __LINE__, "%s contains \"%s\":\n  got: \"%s\"", #hay, n_, h_ ? h_ : "(null)"); \
    } while (0)
/* |a-b| <= atol + rtol*|b| */
#define CHECK_NEAR(a, b, rtol, atol)                                            \
    do {                                                                        \
        double a_ = (a), b_ = (b);                                              \
        if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_)))                      \
            mf_test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g", #a, #b, a_, b_); \
    } while (0)
#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        if (rc_) mf_test_fail(__FILE__, __LINE__, "%s returned %d", #expr, rc_); \
    } while (0)

/* ---- helpers for tests ---- */

/* A fresh empty directory for this test (removed when the test passes). */
const char *mf_test_tmpdir(void);
/* Repository root (where the Makefile is) and the medflow binary under test. */
const char *mf_test_root(void);
const char *mf_test_bin(void);
/* The project's shared real-data subsets: $MF_SHARED_DATA, else <root>/../shared/data
 * (CI clones the repository with shared/ beside it). */
const char *mf_test_shared_data(void);
/* Run a shell command line (tests only: medflow itself never runs a shell);
 * capture stdout and stderr (malloc'd, NUL-terminated; may pass NULL to
 * discard) and return the exit status (128+sig when killed). */
int mf_test_sh(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 1 when python3 finds every module of the space-separated list (the live
 * reference checks against transformers/peft/tokenizers; tests/requirements.txt).
 * Otherwise prints "skipped: ..." and returns 0 — unless MEDFLOW_REQUIRE_REFS=1
 * (CI sets it), where a missing reference is a test failure. */
int mf_test_python_has(const char *modules);
/* Write a file (creating directories). */
void mf_test_write(const char *path, const char *text);
/* Read a whole file (malloc'd) or NULL. */
char *mf_test_read(const char *path);

#endif
