/*
 * artifacts/keylock.c — per-stage-key build locks (see store.h).
 *
 * locks/<key hex> is flocked exclusive by the process building that key and
 * holds its pid (for "being built by pid N"). The holder unlinks the file
 * before it lets go, so a waiter that wins the lock on an unlinked file
 * notices (its inode is no longer at the path) and tries again: no two
 * processes ever hold "the" lock of one key.
 */
#include "artifacts/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"

static char *lock_path(mf_store *s, const mf_digest *key)
{
    char hex[65], name[80];
    snprintf(name, sizeof name, "locks/%s", mf_digest_hex(key, hex));
    return mf_path_join(mf_store_dir(s), name);
}

static long read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    return atol(buf);
}

/* 1 if fd is still the file at path (not unlinked by the last holder). */
static int still_linked(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int mf_store_key_lock(mf_store *s, const mf_digest *key, int flags, int *fd, long *holder, mf_err *err)
{
    *fd = -1;
    if (holder) *holder = 0;
    char *path = lock_path(s, key), *dir = mf_path_join(mf_store_dir(s), "locks");
    int rc = 0;
    if (!path || !dir) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    for (;;) {
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (f < 0) { rc = mf_err_errno(err, MF_EIO, "cannot open %s", path); goto out; }
        int r;
        while ((r = flock(f, LOCK_EX | (flags & MF_LOCK_NOWAIT ? LOCK_NB : 0))) < 0 && errno == EINTR) {}
        if (r < 0) {
            int busy = errno == EWOULDBLOCK;
            if (busy && holder) *holder = read_pid(f);
            close(f);
            rc = busy ? mf_err_set(err, MF_EBUSY, "stage key %s is being built by another process", path)
                      : mf_err_errno(err, MF_EIO, "cannot lock %s", path);
            goto out;
        }
        if (!still_linked(f, path)) { close(f); continue; } /* released and removed under us: again */
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(f, 0) == 0 && pwrite(f, pid, (size_t)n, 0) < 0) {
            /* the pid is only informative */
        }
        *fd = f;
        break;
    }
out:
    free(path);
    free(dir);
    return rc;
}

void mf_store_key_unlock(mf_store *s, const mf_digest *key, int fd)
{
    if (fd < 0) return;
    char *path = lock_path(s, key);
    if (path && still_linked(fd, path)) unlink(path); /* while still holding it (see the top) */
    free(path);
    close(fd);
}

void mf_store_key_locks_prune(mf_store *s)
{
    char *dir = mf_path_join(mf_store_dir(s), "locks");
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = mf_path_join(dir, de->d_name);
        int f = p ? open(p, O_RDWR | O_CLOEXEC) : -1;
        if (f >= 0 && flock(f, LOCK_EX | LOCK_NB) == 0 && still_linked(f, p)) unlink(p);
        if (f >= 0) close(f);
        free(p);
    }
    if (d) closedir(d);
    free(dir);
}
