/*
 * engine/progress.h — what `medflow run` shows while it works.
 *
 * On a terminal: a live table redrawn in place (stage, state, progress bar,
 * loss, tokens/s, ETA, elapsed); finished stages collapse to one line above
 * it. Otherwise: plain timestamped lines, one per event (start, finish,
 * failure) plus a progress line per running stage at most every 10 s
 * (every 1 s with -v). -q shows only failures and the summary.
 */
#ifndef MF_PROGRESS_H
#define MF_PROGRESS_H

#include <stdio.h>

typedef struct mf_progress_row {
    const char *stage;
    const char *state;      /* "running", "done", "cached", "failed", ... */
    long long step, total;  /* total 0 = unknown */
    double loss, tokens_per_s, eta_s; /* NAN = unknown */
    double started, ended;  /* mf_monotonic(); ended 0 while running */
    char message[160];
    double last_line;       /* plain mode: when the last progress line was printed */
} mf_progress_row;

typedef struct mf_progress {
    FILE *out;
    int tty, quiet, verbose;
    int drawn;              /* lines of the live table currently on screen */
    double last_draw;
    size_t done, total;     /* stages of this run finished / to run (total 0: not shown) */
    double eta_s;           /* the run's estimated time left, NAN = unknown */
} mf_progress;

void mf_progress_init(mf_progress *p, FILE *out, int tty, int quiet, int verbose);
/* An event line ("sft: done in 12.3 s"). In tty mode it is printed above the table. */
void mf_progress_event(mf_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Redraw (tty) or print due progress lines (plain). rows: the running stages. */
void mf_progress_update(mf_progress *p, mf_progress_row *rows, size_t n, int force);
/* The whole run: stages finished out of those to run, and the time left (NAN = unknown). Shown
 * as the live table's first line, and after each event line in plain mode ("[3/16 done, ETA 4m10s]"). */
void mf_progress_overall(mf_progress *p, size_t done, size_t total, double eta_s);
/* "[3/16 done, ETA 4m10s]" (or "" when the total is not set) into buf. */
const char *mf_progress_overall_str(const mf_progress *p, char *buf, size_t n);
/* Remove the live table before the final summary. */
void mf_progress_finish(mf_progress *p);

#endif
