/*
 * tests/engine/runutil.h — running the engine from tests: the test binary
 * (build/<cfg>/tests/medflow-testkinds: the real engine plus the test-only
 * kinds), a graph in the test's tmpdir, and the newest run record.
 */
#ifndef MF_TEST_RUNUTIL_H
#define MF_TEST_RUNUTIL_H

#include "common/json.h"

/* Absolute path of medflow-testkinds ($MEDFLOW_TESTKINDS_BIN). */
const char *bin(void);
/* Run `medflow-testkinds ARGS` in the test's tmpdir; stdout+stderr into *out (may be NULL). */
int mf(char **out, const char *args);
/* Write tmpdir/name. */
void write_graph(const char *name, const char *text);
/* The newest run.json under tmpdir/.medflow/logs (NULL if none). */
mf_json *last_run(void);
/* Manifest status of a stage in a run record ("(absent)" when it has none). */
const char *outcome(const mf_json *run, const char *stage);

/* The output digest of a stage in a run record, "" if none. */
const char *output_of(const mf_json *run, const char *stage);

#endif
