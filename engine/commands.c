/*
 * engine/commands.c — the table of medflow commands, in the order `--help` lists them.
 * Add a command: write engine/cmd_<area>.c with mf_cmd_<name>() and add a line here
 * and an entry in docs/cli.md.
 */
#include "engine/cli.h"

#include <stddef.h>

int mf_cmd_validate(int argc, char **argv);
int mf_cmd_dag(int argc, char **argv);
int mf_cmd_kinds(int argc, char **argv);

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("medflow %s (%s)\n", MF_VERSION, MF_GIT_REV);
    return 0;
}

const mf_cmd mf_commands[] = {
    {"validate", mf_cmd_validate, "check graph files (YAML, kinds, params, inputs, types, cycles)",
     "Usage: medflow validate GRAPH...\n\n"
     "Load each graph file and check it completely: YAML syntax, known kinds, params (names, types,\n"
     "ranges, enums; ecosystem names like learning_rate are recognised and our name suggested),\n"
     "input slots and references, input types, cycles and duplicate names (including names made by\n"
     "foreach). Errors are printed as FILE:LINE:COL: message. Exit 0 when all are valid, 2 otherwise.\n", 0},
    {"dag", mf_cmd_dag, "draw a graph's stages and dependencies",
     "Usage: medflow dag GRAPH [--format text|dot]\n\n"
     "text (default): sources, then stages layer by layer with the inputs of each slot.\n"
     "dot: Graphviz, e.g. medflow dag g.yaml --format dot | dot -Tsvg > g.svg\n", 0},
    {"kinds", mf_cmd_kinds, "list stage kinds, or describe one (slots, params, defaults)",
     "Usage: medflow kinds [KIND]\n\n"
     "Without KIND: every stage kind with its version and a summary. With KIND: its input slots and\n"
     "what they accept, its output, and every param with type, range or choices, default and doc.\n", 0},
    {"version", cmd_version, "print the version",
     "Usage: medflow version\n\nPrint medflow's version and the git revision it was built from.\n", 0},
    {NULL, NULL, NULL, NULL, 0}};
