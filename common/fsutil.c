/* common/fsutil.c — see fsutil.h. */
#include "common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mf_read_file(const char *path, char **out, size_t *len, mf_err *err)
{
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); return mf_err_errno(err, MF_EIO, "cannot stat %s", path); }
    if (S_ISDIR(st.st_mode)) { close(fd); return mf_err_set(err, MF_EINVAL, "%s is a directory, not a file", path); }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) { close(fd); return mf_err_set(err, MF_ENOMEM, "out of memory reading %s", path); }
    for (;;) {
        if (n + 1 >= cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) { free(buf); close(fd); return mf_err_set(err, MF_ENOMEM, "out of memory reading %s", path); }
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            close(fd);
            return mf_err_errno(err, MF_EIO, "cannot read %s", path);
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

int mf_fsync_dir(const char *dir, mf_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return mf_err_errno(err, MF_EIO, "cannot open directory %s", dir);
    int rc = fsync(fd);
    close(fd);
    if (rc < 0 && errno != EINVAL) return mf_err_errno(err, MF_EIO, "cannot fsync %s", dir);
    return 0;
}

static char g_scratch[4096]; /* mf_fs_set_scratch: "" = none */

void mf_fs_set_scratch(const char *dir)
{
    size_t n = dir ? strlen(dir) : 0;
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= sizeof g_scratch) n = 0; /* too long to be worth it: everything stays durable */
    memcpy(g_scratch, dir ? dir : "", n);
    g_scratch[n] = 0;
}

int mf_fs_is_scratch(const char *path)
{
    size_t n = strlen(g_scratch);
    return n && !strncmp(path, g_scratch, n) && path[n] == '/';
}

int mf_write_file_atomic(const char *path, const void *data, size_t len, int mode, mf_err *err)
{
    int durable = !mf_fs_is_scratch(path);
    size_t pn = strlen(path);
    char *tmp = malloc(pn + 32);
    if (!tmp) return mf_err_set(err, MF_ENOMEM, "out of memory");
    snprintf(tmp, pn + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) { int rc = mf_err_errno(err, MF_EIO, "cannot create %s", tmp); free(tmp); return rc; }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int rc = mf_err_errno(err, MF_EIO, "cannot write %s", tmp);
            close(fd); unlink(tmp); free(tmp);
            return rc;
        }
        p += w;
        left -= (size_t)w;
    }
    if ((durable && fsync(fd) < 0) || close(fd) < 0) {
        int rc = mf_err_errno(err, MF_EIO, "cannot sync %s", tmp);
        unlink(tmp); free(tmp);
        return rc;
    }
    if (rename(tmp, path) < 0) {
        int rc = mf_err_errno(err, MF_EIO, "cannot rename %s to %s", tmp, path);
        unlink(tmp); free(tmp);
        return rc;
    }
    free(tmp);
    if (!durable) return 0;
    char *dir = mf_path_dirname(path);
    int rc = dir ? mf_fsync_dir(dir, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    free(dir);
    return rc;
}

int mf_mkdir_p(const char *path, int mode, mf_err *err)
{
    char *p = strdup(path);
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST) {
                int rc = mf_err_errno(err, MF_EIO, "cannot create directory %s", p);
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    if (!mf_is_dir(path)) return mf_err_set(err, MF_EIO, "%s exists and is not a directory", path);
    return 0;
}

int mf_rm_rf(const char *path, mf_err *err)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) return 0;
        return mf_err_errno(err, MF_EIO, "cannot stat %s", path);
    }
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        if (!d) return mf_err_errno(err, MF_EIO, "cannot open directory %s", path);
        struct dirent *de;
        int rc = 0;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *child = mf_path_join(path, de->d_name);
            if (!child) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
            rc = mf_rm_rf(child, err);
            free(child);
            if (rc) goto out;
        }
        if (rmdir(path) < 0 && errno != ENOENT) rc = mf_err_errno(err, MF_EIO, "cannot remove %s", path);
    out:
        closedir(d);
        return rc;
    }
    if (unlink(path) < 0 && errno != ENOENT) return mf_err_errno(err, MF_EIO, "cannot remove %s", path);
    return 0;
}

char *mf_path_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    size_t n = na;
    if (na && a[na - 1] != '/') p[n++] = '/';
    memcpy(p + n, b, nb + 1);
    return p;
}

char *mf_path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

char *mf_path_absolute(const char *path)
{
    if (path[0] == '/') return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    while (path[0] == '.' && path[1] == '/') path += 2;
    if (!strcmp(path, ".")) return strdup(cwd);
    return mf_path_join(cwd, path);
}

int mf_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mf_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int mf_dir_has_file(const char *dir, const char *name)
{
    char *p = mf_path_join(dir, name);
    int r = p && mf_is_file(p);
    free(p);
    return r;
}

double mf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double mf_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int mf_copy_file(const char *from, const char *to, mf_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = mf_read_file(from, &data, &len, err);
    if (rc) goto out;
    rc = mf_write_file_atomic(to, data, len, 0644, err);
out:
    free(data);
    return rc;
}
