/*
 * engine/main.c — the medflow binary's entry point.
 *
 * Parses global options, finds the command in the table (engine/commands.c)
 * and runs it. Everything else lives in the commands and the libraries.
 */
#include "engine/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_help(FILE *f)
{
    fprintf(f,
            "medflow %s — train and evaluate medical LLMs from YAML stage graphs\n\n"
            "Usage: medflow [--store DIR] [-q|-v] COMMAND [ARGS...]\n"
            "       (the global options may also follow the command)\n\n"
            "Commands:\n",
            MF_VERSION);
    for (const mf_cmd *c = mf_commands; c->name; c++)
        if (!c->hidden) fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f,
            "\nGlobal options:\n"
            "  --store DIR   artifact store (default: the graph's `store:`, else ./.medflow)\n"
            "  -q, --quiet   less output;  -v, --verbose  more output\n"
            "  -h, --help    this help;    --version      print the version\n\n"
            "'medflow COMMAND --help' describes a command. Exit status: 0 ok, 1 a run or\n"
            "check failed, 2 usage or validation error, 130 interrupted (docs/cli.md).\n");
}

/* Global options after the command (`medflow verify --store DIR`) mean what they mean before it:
 * taken out of argv[from..] (compacted, *argc updated) into mf_cli. */
static int take_globals(int argc, char **argv, int from, int *out_argc)
{
    int w = from;
    for (int k = from; k < argc; k++) {
        const char *a = argv[k];
        if (!strcmp(a, "--store")) {
            if (k + 1 >= argc) { fprintf(stderr, "medflow: --store needs a directory\n"); return 1; }
            mf_cli.store = argv[++k];
        } else if (!strncmp(a, "--store=", 8)) {
            mf_cli.store = a + 8;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            mf_cli.quiet = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            mf_cli.verbose = 1;
        } else {
            argv[w++] = argv[k];
        }
    }
    argv[w] = NULL;
    *out_argc = w;
    return 0;
}

int main(int argc, char **argv)
{
    int k = 1;
    const char *nc = getenv("NO_COLOR");
    mf_cli.color = isatty(1) && !(nc && *nc);
    for (; k < argc && argv[k][0] == '-'; k++) {
        const char *a = argv[k];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { print_help(stdout); return 0; }
        if (!strcmp(a, "--version")) { printf("medflow %s (%s)\n", MF_VERSION, MF_GIT_REV); return 0; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { mf_cli.quiet = 1; continue; }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { mf_cli.verbose = 1; continue; }
        if (!strcmp(a, "--store")) {
            if (k + 1 >= argc) { fprintf(stderr, "medflow: --store needs a directory\n"); return MF_EXIT_USAGE; }
            mf_cli.store = argv[++k];
            continue;
        }
        if (!strncmp(a, "--store=", 8)) { mf_cli.store = a + 8; continue; }
        fprintf(stderr, "medflow: unknown option '%s'\nTry 'medflow --help'.\n", a);
        return MF_EXIT_USAGE;
    }
    if (k >= argc) { print_help(stderr); return MF_EXIT_USAGE; }
    const char *name = argv[k];
    if (!strcmp(name, "help")) {
        if (k + 1 < argc) {
            const mf_cmd *c = mf_cmd_find(argv[k + 1]);
            if (c) { fputs(c->usage, stdout); return 0; }
        }
        print_help(stdout);
        return 0;
    }
    const mf_cmd *c = mf_cmd_find(name);
    if (!c) {
        fprintf(stderr, "medflow: unknown command '%s'\nTry 'medflow --help'.\n", name);
        return MF_EXIT_USAGE;
    }
    if (mf_cli_wants_help(name, argc - k, argv + k)) return 0;
    if (!c->hidden && take_globals(argc, argv, k + 1, &argc)) return MF_EXIT_USAGE;
    return c->run(argc - k, argv + k);
}
