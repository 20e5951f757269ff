/*
 * engine/estore.h — the store as the engine uses it.
 *
 * Implements the planner's and the builder's store seams (mf_plan_io,
 * mf_run_io) over artifacts/store.h and artifacts/ledger.h, and adds the
 * engine's own files inside the store directory:
 *     state/<graph>.json   the plan state (last decided key components per stage)
 *     logs/<run>/          stage logs and run.json of each run
 *     work/<key>/          per-key work dirs (resumable checkpoints)
 *     journal/<run>.jsonl  a running engine's manifests until its ledger commit (engine/journal.h)
 *     state/<graph>.recorded  the output the ledger last recorded per stage
 * Opening is cheap (no lock, no ledger): `status` and a no-op `run` only
 * stat sources and read action-cache entries. mf_estore_lock (shared) is
 * taken by a run before it plans.
 */
#ifndef MF_ESTORE_H
#define MF_ESTORE_H

#include "common/error.h"
#include "engine/run.h"

typedef struct mf_estore mf_estore;

/* root: --store, else the graph's `store:` (relative to the graph file), else ./.medflow */
char *mf_estore_root(const char *cli_store, const mf_graph *g);
int mf_estore_open(mf_estore **out, const char *root, int rehash, mf_err *err);
void mf_estore_close(mf_estore *s);
/* Fill the seams (ctx = s). */
void mf_estore_io(mf_estore *s, mf_run_io *io);
/* state/<graph>.json (malloc'd). */
char *mf_estore_state_path(const mf_estore *s, const char *graph_name);
/* Warnings collected while planning (one per line, "" if none): a damaged
 * action-cache entry is a cache miss, never an error. */
const char *mf_estore_warnings(const mf_estore *s);
/* The build identity a cached output of this key was computed with, when it is not this
 * binary's (kernels/build_id.c: status says so); NULL otherwise. Not NUL-terminated: *len. */
const char *mf_estore_other_build(const mf_estore *s, const char *key_hex, size_t *len);
/* 1 if some journal names outputs not yet recorded (a killed run, or one running now). */
int mf_estore_pending_runs(mf_estore *s);
/* Record in the ledger the runs whose engine died before recording them (engine/journal.h);
 * one line per recovered run into report. */
int mf_estore_recover(mf_estore *s, mf_buf *report, mf_err *err);
/* 1 if the ledger last recorded, for every needed CACHED stage of the plan, the output the plan
 * found; 0 when some output differs (an input changed back, a run killed before its record), so
 * that a run with nothing to do still records which outputs are current. */
int mf_estore_recorded_current(mf_estore *s, const mf_plan *p);
/* A run's store lock: shared with other runs (each stage key has its own
 * build lock, see mf_run_io.key_lock), exclusive of gc; waits while gc runs. */
int mf_estore_lock(mf_estore *s, mf_err *err);

#endif
