/*
 * tests/artifacts/test_store_locks.c — the store lock shared by runs and
 * exclusive for gc, and the per-stage-key build locks.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "tests/artifacts/util.h"
#include "tests/harness.h"

static mf_store *open_at(const char *dir)
{
    mf_store *s = NULL;
    mf_err err;
    if (mf_store_open(&s, dir, &err)) mf_test_fail(__FILE__, __LINE__, "open %s: %s", dir, err.msg);
    REQUIRE(s);
    return s;
}

TEST(test_store_runs_share_the_lock_and_gc_is_kept_out)
{
    const char *dir = tu_path(mf_test_tmpdir(), "store");
    mf_store *a = open_at(dir), *b = open_at(dir), *gc = open_at(dir);
    mf_err err;
    CHECK_OK(mf_store_lock(a, MF_LOCK_SHARED | MF_LOCK_NOWAIT, &err));
    CHECK_OK(mf_store_lock(b, MF_LOCK_SHARED | MF_LOCK_NOWAIT, &err)); /* two runs at once */
    mf_store_gc_stats st;
    CHECK_INT(mf_store_gc(gc, NULL, 0, 1, &st, &err), MF_EBUSY);
    CHECK_CONTAINS(err.msg, "in use");
    mf_store_unlock(a);
    CHECK_INT(mf_store_gc(gc, NULL, 0, 1, &st, &err), MF_EBUSY);
    mf_store_unlock(b);
    CHECK_OK(mf_store_gc(gc, NULL, 0, 1, &st, &err));
    CHECK_OK(mf_store_lock(gc, MF_LOCK_NOWAIT, &err)); /* and a run waits for gc */
    CHECK_INT(mf_store_lock(a, MF_LOCK_SHARED | MF_LOCK_NOWAIT, &err), MF_EBUSY);
    mf_store_unlock(gc);
    CHECK_OK(mf_store_lock(a, MF_LOCK_SHARED | MF_LOCK_NOWAIT, &err));
    mf_store_free(a);
    mf_store_free(b);
    mf_store_free(gc);
}

TEST(test_store_key_lock_names_its_holder_and_dies_with_it)
{
    const char *dir = tu_path(mf_test_tmpdir(), "store");
    mf_store *s = open_at(dir);
    mf_digest k1, k2;
    memset(&k1, 0x11, sizeof k1);
    memset(&k2, 0x22, sizeof k2);
    mf_err err;
    int fd = -1, fd2 = -1;
    long holder = -1;
    CHECK_OK(mf_store_key_lock(s, &k1, MF_LOCK_NOWAIT, &fd, &holder, &err));
    CHECK_INT(mf_store_key_lock(s, &k1, MF_LOCK_NOWAIT, &fd2, &holder, &err), MF_EBUSY); /* another open file: held */
    CHECK_INT(holder, (long)getpid());
    CHECK_INT(fd2, -1);
    CHECK_OK(mf_store_key_lock(s, &k2, MF_LOCK_NOWAIT, &fd2, &holder, &err)); /* other keys are free */
    mf_store_key_unlock(s, &k2, fd2);
    mf_store_key_unlock(s, &k1, fd);
    CHECK_INT(access(tu_path(dir, "locks/1111111111111111111111111111111111111111111111111111111111111111"), F_OK), -1);
    /* a holder killed with SIGKILL leaves its file but not its lock; gc prunes the file */
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mf_store *c = NULL;
        mf_err e;
        int f;
        if (mf_store_open(&c, dir, &e) || mf_store_key_lock(c, &k1, MF_LOCK_NOWAIT, &f, NULL, &e)) _exit(1);
        if (write(pfd[1], "x", 1) != 1) _exit(2);
        pause();
        _exit(0);
    }
    char c;
    REQUIRE(read(pfd[0], &c, 1) == 1);
    CHECK_INT(mf_store_key_lock(s, &k1, MF_LOCK_NOWAIT, &fd, &holder, &err), MF_EBUSY);
    CHECK_INT(holder, (long)pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    close(pfd[1]);
    CHECK_INT(access(tu_path(dir, "locks/1111111111111111111111111111111111111111111111111111111111111111"), F_OK), 0);
    mf_store_gc_stats st;
    CHECK_OK(mf_store_gc(s, NULL, 0, 0, &st, &err));
    CHECK_INT(access(tu_path(dir, "locks/1111111111111111111111111111111111111111111111111111111111111111"), F_OK), -1);
    CHECK_OK(mf_store_key_lock(s, &k1, MF_LOCK_NOWAIT, &fd, &holder, &err));
    mf_store_key_unlock(s, &k1, fd);
    mf_store_free(s);
}
