/* engine/exec.c — spawning stage processes, signals, logs (see exec.h). */
#include "engine/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

int mf_cmd_stage_exec(int argc, char **argv); /* engine/stage_exec.c */

/* 1 if the stage may run in the forked child without exec (see exec.h). */
static int can_fork_only(const mf_exec_spawn_opts *o)
{
    static char self[PATH_MAX];
    if (!o->fork_only || o->argv || !o->exe) return 0;
    const char *env = getenv("MEDFLOW_STAGE_FORK");
    if (env && !strcmp(env, "0")) return 0;
    mf_err e;
    if (!self[0] && mf_exec_self(self, sizeof self, &e)) return 0;
    return !strcmp(self, o->exe);
}

/* The forked child as the stage runner: what exec would have given it, without exec. */
static void run_in_child(const mf_exec_spawn_opts *o)
{
    /* the engine's other descriptors: other stages' pipes, locks, the store, the journal */
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
#endif
    {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 4; fd < (max > 0 && max < 65536 ? max : 65536); fd++) close(fd);
    }
    if (o->cpus > 0) omp_set_num_threads(o->cpus); /* OMP_NUM_THREADS was read when the engine started */
    char *argv[] = {(char *)"stage-exec", (char *)o->spec_path, NULL};
    int code = mf_cmd_stage_exec(2, argv);
    fflush(NULL);
    _exit(code);
}

int mf_exec_spawn(pid_t *pid, const mf_exec_spawn_opts *o, mf_err *err)
{
    int fork_only = can_fork_only(o);
    fflush(stdout); /* nothing of the engine's buffered output may reach the stage's log */
    fflush(stderr);
    pid_t p = fork();
    if (p < 0) return mf_err_errno(err, MF_EIO, "fork");
    if (p == 0) {
        /* child: only async-signal-safe calls until exec */
        setpgid(0, o->pgid);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* an engine killed by SIGKILL takes its stages along */
#endif
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) { dup2(null, 0); if (null > 2) close(null); }
        if (o->progress_fd >= 0) {
            if (o->progress_fd == 3) fcntl(3, F_SETFD, 0);
            else if (dup2(o->progress_fd, 3) < 0) _exit(127);
        }
        if (dup2(o->log_fd, 1) < 0 || dup2(o->log_fd, 2) < 0) _exit(127);
        setenv("CUDA_VISIBLE_DEVICES", o->devices ? o->devices : "", 1);
        /* A stage uses the cores the scheduler gave it, no more: stages running
         * side by side must not oversubscribe the machine, where spinning
         * OpenMP threads slow everything down by orders of magnitude. Idle
         * threads sleep (passive) unless the user chose otherwise. */
        if (o->cpus > 0) setenv("OMP_NUM_THREADS", o->threads_str, 1);
        setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
        if (fork_only) run_in_child(o);
        char *argv[] = {(char *)o->exe, (char *)"stage-exec", (char *)o->spec_path, NULL};
        if (o->argv) execvp(o->argv[0], o->argv);
        else execv(o->exe, argv);
        const char msg[] = "medflow: could not execute the stage runner\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    /* also from the parent, so a signal sent right away finds the group */
    setpgid(p, o->pgid ? o->pgid : p);
    *pid = p;
    return 0;
}

/* ---- signals ---- */

static int g_pipe[2] = {-1, -1};
static volatile sig_atomic_t g_sig;
static struct sigaction g_old_int, g_old_term, g_old_chld;

static void on_signal(int sig)
{
    int saved = errno;
    if ((sig == SIGINT || sig == SIGTERM) && !g_sig) g_sig = sig;
    if (g_pipe[1] >= 0) {
        char c = 0;
        ssize_t w = write(g_pipe[1], &c, 1);
        (void)w;
    }
    errno = saved;
}

int mf_exec_signals_install(int *wake_fd, mf_err *err)
{
    if (g_pipe[0] < 0) {
        if (pipe(g_pipe)) return mf_err_errno(err, MF_EIO, "pipe");
        for (int k = 0; k < 2; k++) {
            fcntl(g_pipe[k], F_SETFL, O_NONBLOCK);
            fcntl(g_pipe[k], F_SETFD, FD_CLOEXEC);
        }
    }
    g_sig = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, &g_old_chld);
    *wake_fd = g_pipe[0];
    return 0;
}

void mf_exec_signals_restore(void)
{
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    sigaction(SIGCHLD, &g_old_chld, NULL);
}

int mf_exec_interrupted(void) { return g_sig; }

void mf_exec_signals_drain(void)
{
    char buf[64];
    while (g_pipe[0] >= 0 && read(g_pipe[0], buf, sizeof buf) > 0) {}
}

/* ---- logs, tokens, self ---- */

int mf_exec_log_tail(const char *path, int n, mf_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MF_EIO;
    struct stat sb;
    if (fstat(fd, &sb)) { close(fd); return MF_EIO; }
    off_t want = 64 * 1024, off = sb.st_size > want ? sb.st_size - want : 0;
    size_t len = (size_t)(sb.st_size - off);
    char *buf = malloc(len + 1);
    if (!buf) { close(fd); return MF_ENOMEM; }
    ssize_t got = pread(fd, buf, len, off);
    close(fd);
    if (got < 0) { free(buf); return MF_EIO; }
    size_t end = (size_t)got;
    while (end && buf[end - 1] == '\n') end--;
    size_t start = end;
    for (int lines = 0; start > 0; start--)
        if (buf[start - 1] == '\n' && ++lines == n) break;
    mf_buf_append(out, buf + start, end - start);
    if (end > start) mf_buf_putc(out, '\n');
    free(buf);
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

int mf_exec_rendezvous(char out[257], mf_err *err)
{
    unsigned char raw[128];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mf_err_errno(err, MF_EIO, "open /dev/urandom");
    ssize_t got = read(fd, raw, sizeof raw);
    close(fd);
    if (got != (ssize_t)sizeof raw) return mf_err_set(err, MF_EIO, "short read from /dev/urandom");
    for (size_t k = 0; k < sizeof raw; k++) snprintf(out + 2 * k, 3, "%02x", raw[k]);
    return 0;
}

int mf_exec_self(char *buf, size_t n, mf_err *err)
{
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0 || (size_t)len >= n - 1) return mf_err_errno(err, MF_EIO, "readlink /proc/self/exe");
    buf[len] = 0;
    return 0;
}

int mf_exec_capture(char *const *argv, mf_buf *out, mf_buf *errout, int *status, mf_err *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe(po) || pipe(pe)) {
        int rc = mf_err_errno(err, MF_EIO, "pipe");
        for (int k = 0; k < 2; k++) {
            if (po[k] >= 0) close(po[k]);
            if (pe[k] >= 0) close(pe[k]);
        }
        return rc;
    }
    pid_t p = fork();
    if (p < 0) {
        int rc = mf_err_errno(err, MF_EIO, "fork");
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return rc;
    }
    if (p == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_IGN); /* a Ctrl-C is the engine's to handle (it may run scancel next) */
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) { dup2(null, 0); if (null > 2) close(null); }
        if (dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(127);
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        execvp(argv[0], argv);
        dprintf(2, "could not execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_ = 2;
    while (open_) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t got = read(pf[k].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                close(pf[k].fd);
                pf[k].fd = -1;
                open_--;
                continue;
            }
            mf_buf *dst = k == 0 ? out : errout;
            if (dst && dst->len < (16u << 20)) mf_buf_append(dst, buf, (size_t)got);
        }
    }
    for (int k = 0; k < 2; k++)
        if (pf[k].fd >= 0) close(pf[k].fd);
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    *status = st;
    return 0;
}

const char *mf_exec_describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "status %d", status);
    return buf;
}

/* ---- line buffer ---- */

int mf_linebuf_fill(mf_linebuf *lb, int fd)
{
    char tmp[4096];
    for (;;) {
        ssize_t got = read(fd, tmp, sizeof tmp);
        if (got > 0) {
            if (lb->start > 0 && lb->start == lb->b.len) { lb->b.len = 0; lb->start = 0; }
            if (mf_buf_append(&lb->b, tmp, (size_t)got)) return MF_ENOMEM;
            if (lb->b.len > (1u << 20)) { lb->b.len = 0; lb->start = 0; } /* a runaway line: drop */
            continue;
        }
        if (got == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
        return MF_EIO;
    }
}

int mf_linebuf_fill_file(mf_linebuf *lb, const char *path, long long *off)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : MF_EIO;
    char tmp[4096];
    for (;;) {
        ssize_t got = pread(fd, tmp, sizeof tmp, (off_t)*off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        *off += got;
        if (lb->start > 0 && lb->start == lb->b.len) { lb->b.len = 0; lb->start = 0; }
        if (mf_buf_append(&lb->b, tmp, (size_t)got)) { close(fd); return MF_ENOMEM; }
        if (lb->b.len > (1u << 20)) { lb->b.len = 0; lb->start = 0; } /* a runaway line: drop */
    }
    close(fd);
    return 0;
}

char *mf_linebuf_next(mf_linebuf *lb)
{
    if (lb->start >= lb->b.len) return NULL;
    char *s = lb->b.data + lb->start;
    char *nl = memchr(s, '\n', lb->b.len - lb->start);
    if (!nl) {
        if (lb->start > 0) { /* compact */
            memmove(lb->b.data, s, lb->b.len - lb->start);
            lb->b.len -= lb->start;
            lb->start = 0;
        }
        return NULL;
    }
    *nl = 0;
    lb->start = (size_t)(nl - lb->b.data) + 1;
    return s;
}

void mf_linebuf_free(mf_linebuf *lb)
{
    mf_buf_free(&lb->b);
    lb->start = 0;
}
