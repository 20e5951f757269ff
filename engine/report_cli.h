/*
 * engine/report_cli.h — print (and optionally copy) the newest report of a graph.
 * Used by `medflow report` and at the end of `medflow run`.
 */
#ifndef MF_REPORT_CLI_H
#define MF_REPORT_CLI_H

#include <stdio.h>
#include "common/error.h"

/* MF_ENOTFOUND when the graph has no successful report stage in the ledger. */
int mf_cmd_report_show(const char *store_dir, const char *graph, const char *out_dir, FILE *out, mf_err *err);

#endif
