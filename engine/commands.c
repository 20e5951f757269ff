/*
 * engine/commands.c — the table of medflow commands, in the order `--help` lists them.
 * Add a command: write engine/cmd_<area>.c with mf_cmd_<name>() and add a line here
 * and an entry in docs/cli.md.
 */
#include "engine/cli.h"

#include <stddef.h>

int mf_cmd_score(int argc, char **argv); /* engine/cmd_model.c */
extern const char mf_usage_score[];

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("medflow %s (%s)\n", MF_VERSION, MF_GIT_REV);
    return 0;
}

const mf_cmd mf_commands[] = {
    {"version", cmd_version, "print the version",
     "Usage: medflow version\n\nPrint medflow's version and the git revision it was built from.\n", 0},
    {"score", mf_cmd_score, "per-token log-probs of a text under a model", mf_usage_score, 0},
    {NULL, NULL, NULL, NULL, 0}};
