/*
 * engine/exec.h — running stage processes: spawn, process groups, logs,
 * the progress channel, signals.
 *
 * A stage rank is `EXE stage-exec SPEC` (EXE = /proc/self/exe: the very
 * binary that runs the engine) started with fork+exec in a process group of
 * its own (all ranks of one stage share the group of rank 0), so a Ctrl-C on
 * the terminal reaches only the engine, which forwards it. stdout and stderr
 * go to the stage's log file; progress comes back as JSON lines on fd 3
 * (a pipe; stages/stage.h mf_stage_progress). The environment is the
 * engine's plus CUDA_VISIBLE_DEVICES set to the stage's devices.
 *
 * Signals: mf_exec_signals_install() makes SIGINT/SIGTERM set a flag and
 * wake the engine's poll loop through a self-pipe (SIGCHLD too).
 */
#ifndef MF_EXEC_H
#define MF_EXEC_H

#include <stddef.h>
#include <sys/types.h>
#include "common/buf.h"
#include "common/error.h"

typedef struct mf_exec_spawn_opts {
    const char *exe;       /* binary to run */
    const char *spec_path; /* argument of stage-exec */
    char *const *argv;     /* instead: this command line (argv[0] looked up in PATH), or NULL */
    int log_fd;            /* becomes stdout and stderr */
    int progress_fd;       /* write end of the progress pipe; becomes fd 3, or -1 */
    pid_t pgid;            /* 0: new process group led by the child */
    const char *devices;   /* CUDA_VISIBLE_DEVICES ("" hides every GPU) */
    int cpus;              /* cores this process may use: OMP_NUM_THREADS (0: leave unset) */
    char threads_str[16];  /* cpus as text (formatted before fork) */
    int fork_only;         /* may run stage-exec in the forked child itself (see mf_exec_spawn) */
} mf_exec_spawn_opts;

/* fork + exec; *pid gets the child. With fork_only, when exe is this very
 * program and MEDFLOW_STAGE_FORK is not 0, the child does not exec: it runs
 * `stage-exec SPEC` itself (the same code, already loaded), which saves the
 * exec and the dynamic linking of every library (most of a cheap stage's
 * cost). The engine passes it for one-rank CPU stages only: the child is a
 * copy of the engine, which never initialises CUDA for them, and it closes
 * every descriptor the engine holds beyond 0-3. */
int mf_exec_spawn(pid_t *pid, const mf_exec_spawn_opts *o, mf_err *err);

/* Install SIGINT/SIGTERM/SIGCHLD handlers; returns the read end of the
 * self-pipe to poll (readable when a signal arrived). */
int mf_exec_signals_install(int *wake_fd, mf_err *err);
void mf_exec_signals_restore(void);
/* Signal number of the first SIGINT/SIGTERM received, 0 if none. */
int mf_exec_interrupted(void);
/* Drain the self-pipe. */
void mf_exec_signals_drain(void);

/* The last n lines of a file into out (at most 64 KiB read). */
int mf_exec_log_tail(const char *path, int n, mf_buf *out);

/* A fresh random rendezvous token: 128 bytes (sizeof ncclUniqueId) in hex. */
int mf_exec_rendezvous(char out[257], mf_err *err);

/* Path of the running binary (/proc/self/exe resolved) into buf. */
int mf_exec_self(char *buf, size_t n, mf_err *err);

/* Run argv (argv[0] looked up in PATH) to completion, stdin from /dev/null;
 * its stdout and stderr into out and errout (either may be NULL), its wait
 * status into *status. Waits for that child only. An error only when it
 * could not be started. */
int mf_exec_capture(char *const *argv, mf_buf *out, mf_buf *errout, int *status, mf_err *err);
/* "exit status 1" / "killed by signal 9 (Killed)" */
const char *mf_exec_describe_status(int status, char *buf, size_t n);

/* Line splitter for a non-blocking pipe: appends what read() returns and
 * hands back complete lines. */
typedef struct mf_linebuf {
    mf_buf b;
    size_t start;
} mf_linebuf;
/* Read what is available from fd into lb; 1 while open, 0 at EOF, <0 error. */
int mf_linebuf_fill(mf_linebuf *lb, int fd);
/* Read what a file gained since *off (a file another process appends to);
 * 0 also when it does not exist yet. */
int mf_linebuf_fill_file(mf_linebuf *lb, const char *path, long long *off);
/* Next complete line (NUL-terminated, newline removed) or NULL. */
char *mf_linebuf_next(mf_linebuf *lb);
void mf_linebuf_free(mf_linebuf *lb);

#endif
