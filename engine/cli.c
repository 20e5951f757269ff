/* engine/cli.c — shared CLI helpers (error reporting, help, usage errors). */
#include "engine/cli.h"

#include <stdarg.h>
#include <string.h>

mf_cli_globals mf_cli;

const mf_cmd *mf_cmd_find(const char *name)
{
    for (const mf_cmd *c = mf_commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

int mf_cli_exit_code(int rc)
{
    if (rc == 0) return MF_EXIT_OK;
    if (rc == MF_EINVAL) return MF_EXIT_USAGE;
    if (rc == MF_EINTERRUPTED) return MF_EXIT_INTERRUPTED;
    return MF_EXIT_FAILED;
}

int mf_cli_report(const mf_err *err)
{
    char buf[4096];
    mf_err_str(err, buf, sizeof buf);
    /* several errors (a graph's, one per line) each get the prefix */
    for (char *line = buf, *nl; line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        fprintf(stderr, "medflow: %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
    }
    return mf_cli_exit_code(err->code);
}

int mf_cli_report_store(const mf_err *err, const char *store_dir)
{
    int code = mf_cli_report(err);
    if (err->code == MF_ECORRUPT && strstr(err->msg, "the ledger is damaged"))
        fprintf(stderr,
                "medflow: the ledger %s/ledger.git is damaged. `medflow verify` names the damaged objects;\n"
                "  `medflow verify --repair` rebuilds it from the run records in %s/logs/ (the\n"
                "  damaged copy is kept aside), and `git --git-dir %s/ledger.git reflog`\n"
                "  lists earlier tips of each graph's branch.\n",
                store_dir, store_dir, store_dir);
    return code;
}

int mf_cli_wants_help(const char *cmd, int argc, char **argv)
{
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--")) break;
        if (!strcmp(argv[k], "-h") || !strcmp(argv[k], "--help")) {
            const mf_cmd *c = mf_cmd_find(cmd);
            if (c) fputs(c->usage, stdout);
            return 1;
        }
    }
    return 0;
}

int mf_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "medflow %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'medflow %s --help'.\n", cmd);
    va_end(ap);
    return MF_EXIT_USAGE;
}
