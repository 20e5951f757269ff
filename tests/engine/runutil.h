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

/* Before running MPI ranks in a sanitizer build (make test SAN=1): Open MPI
 * keeps its own allocations until exit, some made by its background threads
 * and plugins, so LeakSanitizer needs full stacks (fast_unwind_on_malloc=0)
 * and the plugins mapped (disable_dlclose) to match them with
 * tests/lsan-mpi.supp. Set for this test's processes only; nothing in a
 * normal build. */
void mpi_sanitizer_env(void);

/* A tiny pre-training graph in tmpdir/file (tokenizer and text copied there):
 * `base` (init) -> `pt` (dcpt, with the given extra params and resources).
 * For the data-parallel tests: the same graph with other resources has the
 * same stage keys. */
void write_dp_graph(const char *file, const char *name, const char *params, const char *resources);
/* The output digest of a stage in a run record, "" if none. */
const char *output_of(const mf_json *run, const char *stage);

#endif
