/*
 * engine/cli.h — the command table and what commands share.
 *
 * Each command lives in engine/cmd_<area>.c as
 *     int mf_cmd_<name>(int argc, char **argv);   (argv[0] is the command name)
 * and is listed once in engine/commands.c. Exit codes (docs/cli.md):
 *     0 success, 1 a run/check failed, 2 usage or validation error, 130 interrupted.
 * Commands print; library code does not.
 */
#ifndef MF_CLI_H
#define MF_CLI_H

#include <stdio.h>
#include "common/error.h"

enum { MF_EXIT_OK = 0, MF_EXIT_FAILED = 1, MF_EXIT_USAGE = 2, MF_EXIT_INTERRUPTED = 130 };

typedef struct mf_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary; /* one line for `medflow --help` */
    const char *usage;   /* full text for `medflow CMD --help` */
    int hidden;          /* internal commands (stage-exec) */
} mf_cmd;

extern const mf_cmd mf_commands[];
const mf_cmd *mf_cmd_find(const char *name);

/* Print "medflow: <err>" to stderr and return the exit code for it
 * (2 for MF_EINVAL/MF_ENOTFOUND-as-usage, 1 otherwise). */
int mf_cli_report(const mf_err *err);
/* mf_cli_report for errors about a store: damage to the ledger also gets
 * the way out (verify, verify --repair, the reflog). */
int mf_cli_report_store(const mf_err *err, const char *store_dir);
/* Exit code for an error code: MF_EINVAL -> 2, MF_EINTERRUPTED -> 130, else 1. */
int mf_cli_exit_code(int rc);
/* True if argv has -h/--help; prints the command's usage. */
int mf_cli_wants_help(const char *cmd, int argc, char **argv);
/* Usage error: prints "medflow CMD: msg" + "try 'medflow CMD --help'"; returns 2. */
int mf_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Global options parsed by main before the command (e.g. --store DIR, -q, -v). */
typedef struct mf_cli_globals {
    const char *store;   /* --store DIR, or NULL */
    int quiet, verbose;
    int color;           /* stdout is a terminal and NO_COLOR unset */
} mf_cli_globals;
extern mf_cli_globals mf_cli;

#endif
