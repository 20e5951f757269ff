/* tests/engine/slurm_cluster.c — a one-node Slurm cluster for tests (see slurm_cluster.h). */
#include "tests/engine/slurm_cluster.h"

#include "tests/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"

static mf_test_slurm *g_cluster; /* stopped at exit if the test did not (a REQUIRE that ended it) */

static int skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int skip(const char *fmt, ...)
{
    char why[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const char *req = getenv("MEDFLOW_REQUIRE_SLURM");
    if (req && !strcmp(req, "1")) mf_test_fail(__FILE__, __LINE__, "the Slurm daemons could not start: %s", why);
    else fprintf(stderr, "    skipped: the Slurm daemons could not start: %s\n", why);
    return 0;
}

/* A port nobody listens on now (the kernel's choice for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A daemon in the foreground, dying with this process; output to log. */
static pid_t daemon_start(char *const *argv, const char *log)
{
    pid_t parent = getpid();
    pid_t p = fork();
    if (p != 0) return p;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) { dup2(null, 0); close(null); }
    execvp(argv[0], argv);
    _exit(127);
}

static void path(char *out, size_t n, const mf_test_slurm *c, const char *name)
{
    snprintf(out, n, "%s/%s", c->dir, name);
}

static long long mem_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb / 1024 > 2048 ? kb / 1024 - 1024 : kb / 1024; /* leave the OS some */
}

static int write_conf(mf_test_slurm *c, const char *host)
{
    int ctld_port = free_port(), d_port = free_port();
    if (ctld_port < 0 || d_port < 0 || ctld_port == d_port) return -1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char conf[PATH_MAX], text[8192];
    path(conf, sizeof conf, c, "slurm.conf");
    snprintf(text, sizeof text,
             "ClusterName=medflowtest\n"
             "SlurmctldHost=%s(127.0.0.1)\n"
             "SlurmctldPort=%d\nSlurmdPort=%d\n"
             "SlurmUser=%s\nSlurmdUser=root\n"
             "AuthType=auth/munge\nAuthInfo=socket=%s/munge/sock\nCredType=cred/munge\n"
             "StateSaveLocation=%s/state\nSlurmdSpoolDir=%s/spool\n"
             "SlurmctldPidFile=%s/slurmctld.pid\nSlurmdPidFile=%s/slurmd.pid\n"
             "SlurmctldLogFile=%s/log/slurmctld.log\nSlurmdLogFile=%s/log/slurmd.log\n"
             "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
             "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
             "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
             "MpiDefault=none\nReturnToService=2\nSchedulerType=sched/backfill\n"
             "MinJobAge=600\nKillWait=5\nInactiveLimit=0\nSlurmdTimeout=60\n"
             "PlugStackConfig=/dev/null\n"
             "NodeName=%s NodeAddr=127.0.0.1 CPUs=%ld RealMemory=%lld State=UNKNOWN\n"
             "PartitionName=debug Nodes=%s Default=YES MaxTime=INFINITE State=UP\n",
             host, ctld_port, d_port, getuid() == 0 ? "root" : getenv("USER") ? getenv("USER") : "root", c->dir,
             c->dir, c->dir, c->dir, c->dir, c->dir, c->dir, host, cpus > 0 ? cpus : 1, mem_mb(), host);
    mf_test_write(conf, text);
    setenv("SLURM_CONF", conf, 1);
    return 0;
}

static void log_tail(const mf_test_slurm *c, char *out, size_t n)
{
    char *text = NULL;
    mf_test_sh(&text, NULL, "tail -n 3 '%s'/log/*.log 2>&1 | tr '\\n' ' ' | cut -c1-1500", c->dir);
    snprintf(out, n, "%s", text ? text : "");
    free(text);
}

static void stop_at_exit(void)
{
    if (g_cluster) mf_test_slurm_stop(g_cluster);
}

int mf_test_slurm_start(mf_test_slurm *c)
{
    memset(c, 0, sizeof *c);
    if (mf_test_sh(NULL, NULL, "for b in munged slurmctld slurmd sbatch srun squeue scontrol sinfo scancel; do "
                               "command -v $b >/dev/null || { echo $b; exit 1; }; done") != 0)
        return skip("munged or the Slurm commands are not installed (make deps installs slurm-wlm and munge)");
    snprintf(c->dir, sizeof c->dir, "%s/slurm", mf_test_tmpdir());
    char p[PATH_MAX], host[256] = "";
    gethostname(host, sizeof host - 1);
    path(p, sizeof p, c, "munge");
    mf_mkdir_p(p, 0700, NULL);
    chmod(p, 0700);
    const char *sub[] = {"state", "spool", "log"};
    for (int k = 0; k < 3; k++) {
        path(p, sizeof p, c, sub[k]);
        mf_mkdir_p(p, 0755, NULL);
    }
    if (mf_test_sh(NULL, NULL, "cd '%s/munge' && head -c 1024 /dev/urandom > munge.key && chmod 600 munge.key", c->dir))
        return skip("could not write a munge key");
    if (write_conf(c, host)) return skip("no free ports");
    g_cluster = c;
    atexit(stop_at_exit);
    char key[PATH_MAX], sock[PATH_MAX], mlog[PATH_MAX], pid[PATH_MAX], seed[PATH_MAX], conf[PATH_MAX], log[PATH_MAX];
    path(key, sizeof key, c, "munge/munge.key");
    path(sock, sizeof sock, c, "munge/sock");
    path(mlog, sizeof mlog, c, "log/munged.log");
    path(pid, sizeof pid, c, "munge/munged.pid");
    path(seed, sizeof seed, c, "munge/seed");
    path(conf, sizeof conf, c, "slurm.conf");
    char a_key[PATH_MAX + 16], a_sock[PATH_MAX + 16], a_log[PATH_MAX + 16], a_pid[PATH_MAX + 16], a_seed[PATH_MAX + 16];
    snprintf(a_key, sizeof a_key, "--key-file=%s", key);
    snprintf(a_sock, sizeof a_sock, "--socket=%s", sock);
    snprintf(a_log, sizeof a_log, "--log-file=%s", mlog);
    snprintf(a_pid, sizeof a_pid, "--pid-file=%s", pid);
    snprintf(a_seed, sizeof a_seed, "--seed-file=%s", seed);
    /* -f: the test's tmpdir lives under /tmp (sticky, world-writable), which munged's path checks dislike */
    char *munged[] = {"munged", "-F", "-f", a_key, a_sock, a_log, a_pid, a_seed, NULL};
    path(log, sizeof log, c, "log/munged.out");
    c->munged = daemon_start(munged, log);
    for (int k = 0; k < 100 && access(sock, F_OK); k++) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    if (access(sock, F_OK)) {
        char t[1600];
        log_tail(c, t, sizeof t);
        return skip("munged did not start: %s", t);
    }
    char *ctld[] = {"slurmctld", "-D", "-i", "-f", conf, NULL};
    char *slurmd[] = {"slurmd", "-D", "-f", conf, NULL};
    path(log, sizeof log, c, "log/daemons.out");
    c->ctld = daemon_start(ctld, log);
    c->slurmd = daemon_start(slurmd, log);
    for (int k = 0; k < 200; k++) { /* up to 20 s */
        char *out = NULL;
        mf_test_sh(&out, NULL, "sinfo -h -o %%T 2>/dev/null");
        int idle = out && !strncmp(out, "idle", 4);
        free(out);
        if (idle) {
            c->up = 1;
            return 1;
        }
        int st;
        if (waitpid(c->ctld, &st, WNOHANG) == c->ctld || waitpid(c->slurmd, &st, WNOHANG) == c->slurmd) break;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    char t[1600];
    log_tail(c, t, sizeof t);
    return skip("the node never became idle: %s", t);
}

static void stop_one(pid_t *p)
{
    if (*p <= 0) return;
    kill(*p, SIGTERM);
    for (int k = 0; k < 100; k++) { /* 10 s, then SIGKILL */
        if (waitpid(*p, NULL, WNOHANG) == *p) { *p = 0; return; }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    kill(*p, SIGKILL);
    waitpid(*p, NULL, 0);
    *p = 0;
}

void mf_test_slurm_stop(mf_test_slurm *c)
{
    if (c->up) { /* what the test left in the queue: cancelled and gone before the daemons stop */
        mf_test_sh(NULL, NULL, "scancel --quiet --user=$(id -un) 2>/dev/null; for i in $(seq 50); do "
                               "[ -z \"$(squeue -h 2>/dev/null)\" ] && break; sleep 0.2; done");
        c->up = 0;
    }
    stop_one(&c->slurmd);
    stop_one(&c->ctld);
    stop_one(&c->munged);
    if (g_cluster == c) g_cluster = NULL;
}
