/*
 * common/error.h — the error record every medflow library function fills.
 *
 * Library code never prints and never exits: a function returns 0 on success
 * or a negative MF_E* code, and leaves the details in an mf_err the caller
 * passed in. When the error is about the user's input, the record carries the
 * position (file, line, column) so the CLI can print
 *     graph.yaml:14:7: stage 'sft': unknown param 'learning_rate' (did you mean 'lr'?)
 */
#ifndef MF_ERROR_H
#define MF_ERROR_H

#include <stddef.h>

enum {
    MF_OK = 0,
    MF_EINVAL = -1,     /* the user's input is wrong (graph, data, arguments) */
    MF_EIO = -2,        /* a system call failed; errno text is in the message */
    MF_ENOMEM = -3,     /* an allocation failed */
    MF_ECORRUPT = -4,   /* stored data does not match its digest / is malformed */
    MF_ENOTFOUND = -5,  /* a named thing does not exist */
    MF_EBUSY = -6,      /* a lock is held by another live process */
    MF_EUNSUPPORTED = -7, /* valid but not supported by this build (e.g. CUDA) */
    MF_EINTERRUPTED = -8, /* stopped by a signal */
    MF_EFAILED = -9,    /* a stage or child process failed */
    MF_EINTERNAL = -10  /* a bug in medflow */
};

typedef struct mf_err {
    int code;
    char file[512]; /* user input the error is about, or "" */
    int line, col;  /* 1-based; 0 when unknown */
    char msg[2048];
} mf_err;

/* Reset to "no error". */
void mf_err_clear(mf_err *e);

/* Record an error and return its code (so `return mf_err_set(e, ...)` reads well).
 * e may be NULL, in which case only the code is returned. */
int mf_err_set(mf_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same, with a position in the user's input. */
int mf_err_at(mf_err *e, int code, const char *file, int line, int col,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Like mf_err_set, appending ": strerror(errno)". */
int mf_err_errno(mf_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with context ("while reading X: ..."). */
int mf_err_wrap(mf_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "file:line:col: msg" (or just msg when there is no position) into buf. */
const char *mf_err_str(const mf_err *e, char *buf, size_t n);

/* A short name for a code ("invalid input", "I/O error", ...). */
const char *mf_err_name(int code);

#endif
