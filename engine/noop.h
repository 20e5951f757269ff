/*
 * engine/noop.h — the no-op record: a `run` with nothing to do, without loading the graph.
 *
 * A plain `medflow run GRAPH` (no targets, --force, --rehash or --dry-run) that found every
 * stage cached and recorded writes <store>/state/noop-<hash of the graph path>: what that
 * verdict rested on — the graph file's bytes (SHA-256), this engine (version, revision, size
 * and mtime of its binary), the MEDFLOW_* environment, the stat identity (size, mtime, ctime,
 * inode, device) of every source file, of the store's record of the ledger's outputs
 * (state/<graph>.recorded), and of every stage's action-cache entry, and that each entry's
 * object exists. The next such run checks all of it with one read of the graph, one hash and
 * stats (two per stage) and, when nothing changed, prints the same "nothing to do" without
 * parsing YAML or planning; any difference, a pending journal, a source that is not a single
 * file or a graph that names its own `store:` falls back to the full path, which rewrites the
 * record. Like git's index and the stat cache, it trusts stat identity: a file changed
 * within 50 ms of the record being written makes the record unwritable (racy), never trusted.
 */
#ifndef MF_NOOP_H
#define MF_NOOP_H

#include <stddef.h>

#include "engine/plan.h"

/* 1 with *n_cached set when the record proves the run has nothing to do; 0 otherwise. */
int mf_noop_check(const char *graph_path, const char *cli_store, size_t *n_cached);
/* Write the record after a full no-op (best effort: a record that cannot be written is only a
 * slower next no-op). root is the store the run used. */
void mf_noop_record(const char *graph_path, const char *cli_store, const char *root, const mf_plan *p);

#endif
