/*
 * tests/harness.c — the test runner: registry, forked execution, helpers.
 *
 * Usage: runner [-v] [FILTER...]  (a FILTER is a substring of test names)
 * Env:   MF_TEST_TIMEOUT (seconds per test, default 600; a TEST_SLOW test gets
 *        its own limit when that is larger)
 */
#include "tests/harness.h"
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct { const char *name, *file; mf_test_fn fn; unsigned timeout; } test_entry;
static test_entry *g_tests;
static size_t g_ntests, g_cap;
static int g_failed_here;
static char g_tmpdir[PATH_MAX];
static char g_root[PATH_MAX];
static char g_bin[PATH_MAX];

void mf_test_register(const char *name, const char *file, mf_test_fn fn)
{
    if (g_ntests == g_cap) {
        g_cap = g_cap ? g_cap * 2 : 64;
        g_tests = realloc(g_tests, g_cap * sizeof *g_tests);
        if (!g_tests) abort();
    }
    g_tests[g_ntests++] = (test_entry){name, file, fn, 0};
}

void mf_test_register_slow(const char *name, const char *file, mf_test_fn fn, unsigned seconds)
{
    mf_test_register(name, file, fn);
    g_tests[g_ntests - 1].timeout = seconds;
}

void mf_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_failed_here++;
}

void mf_test_abort(void) { exit(1); }

const char *mf_test_tmpdir(void)
{
    if (!g_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/mftest.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(g_tmpdir)) { perror("mkdtemp"); exit(1); }
    }
    return g_tmpdir;
}

const char *mf_test_root(void) { return g_root; }
const char *mf_test_bin(void) { return g_bin; }

const char *mf_test_shared_data(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("MF_SHARED_DATA");
    if (env && *env) return env;
    snprintf(path, sizeof path, "%s/../shared/data", g_root);
    return path;
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; b = realloc(b, cap); }
        ssize_t r = read(fd, b + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    b[n] = 0;
    return b;
}

int mf_test_sh(char **out, char **err, const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char of[PATH_MAX], ef[PATH_MAX];
    snprintf(of, sizeof of, "%s/.sh.out", mf_test_tmpdir());
    snprintf(ef, sizeof ef, "%s/.sh.err", mf_test_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(of, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(ef, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (out) { int fd = open(of, O_RDONLY); *out = slurp_fd(fd); close(fd); }
    if (err) { int fd = open(ef, O_RDONLY); *err = slurp_fd(fd); close(fd); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int mf_test_python_has(const char *modules)
{
    char list[512] = "", word[128];
    size_t k = 0;
    for (const char *p = modules; *p;) { /* "a b" -> "'a','b'" */
        int n = 0;
        while (*p == ' ') p++;
        while (*p && *p != ' ' && n < (int)sizeof word - 1) word[n++] = *p++;
        word[n] = 0;
        if (n) k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'", k ? "," : "", word);
    }
    /* find_spec, not import: importing torch costs seconds */
    if (mf_test_sh(NULL, NULL, "python3 -c \"import importlib.util as u, sys; "
                               "sys.exit(0 if all(u.find_spec(m) for m in [%s]) else 1)\" >/dev/null 2>&1", list) == 0)
        return 1;
    const char *req = getenv("MEDFLOW_REQUIRE_REFS");
    if (req && !strcmp(req, "1"))
        mf_test_fail(__FILE__, __LINE__, "python3 lacks one of: %s (pip install -r tests/requirements.txt)", modules);
    else
        fprintf(stderr, "    skipped: python3 lacks one of: %s (pip install -r tests/requirements.txt)\n", modules);
    return 0;
}

void mf_test_write(const char *path, const char *text)
{
    char *dir = mf_path_dirname(path);
    mf_mkdir_p(dir, 0755, NULL);
    free(dir);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

char *mf_test_read(const char *path)
{
    char *p;
    size_t n;
    return mf_read_file(path, &p, &n, NULL) ? NULL : p;
}

static int matches(const char *name, int nfilt, char **filt)
{
    if (!nfilt) return 1;
    for (int k = 0; k < nfilt; k++)
        if (strstr(name, filt[k])) return 1;
    return 0;
}

static int cmp_tests(const void *a, const void *b)
{
    const test_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static volatile sig_atomic_t g_alarm;
static void on_alarm(int s) { (void)s; g_alarm = 1; }

int main(int argc, char **argv)
{
    int verbose = 0, nfilt = 0;
    char **filt = calloc((size_t)argc, sizeof *filt);
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "-v")) verbose = 1;
        else filt[nfilt++] = argv[k];
    }
    /* The runner lives in build/<cfg>/tests/; the root is where it was started (make). */
    if (!getcwd(g_root, sizeof g_root)) return 2;
    const char *bin = getenv("MEDFLOW_BIN");
    snprintf(g_bin, sizeof g_bin, "%s", bin && *bin ? bin : "./medflow");
    if (g_bin[0] != '/') {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s/%s", g_root, g_bin[0] == '.' && g_bin[1] == '/' ? g_bin + 2 : g_bin);
        snprintf(g_bin, sizeof g_bin, "%s", tmp);
    }
    const char *to = getenv("MF_TEST_TIMEOUT");
    int timeout = to ? atoi(to) : 600;
    qsort(g_tests, g_ntests, sizeof *g_tests, cmp_tests);
    signal(SIGALRM, on_alarm);

    int passed = 0, failed = 0;
    for (size_t k = 0; k < g_ntests; k++) {
        test_entry *t = &g_tests[k];
        if (!matches(t->name, nfilt, filt)) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0);
            g_failed_here = 0;
            g_tmpdir[0] = 0;
            t->fn();
            if (!g_failed_here && g_tmpdir[0]) mf_rm_rf(g_tmpdir, NULL);
            fflush(stdout);
            _exit(g_failed_here ? 1 : 0);
        }
        g_alarm = 0;
        unsigned limit = t->timeout > (unsigned)timeout ? t->timeout : (unsigned)timeout;
        alarm(limit);
        int st = 0;
        pid_t r;
        while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR && !g_alarm) {}
        alarm(0);
        int timed_out = 0;
        if (r < 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            timed_out = 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        int ok = !timed_out && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok) {
            passed++;
            if (verbose) printf("ok   %s (%.2fs)\n", t->name, secs);
        } else {
            failed++;
            if (timed_out) printf("FAIL %s: timed out after %us\n", t->name, limit);
            else if (WIFSIGNALED(st)) printf("FAIL %s: killed by signal %d\n", t->name, WTERMSIG(st));
            else printf("FAIL %s (%s)\n", t->name, t->file);
        }
        fflush(stdout);
    }
    free(filt);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
