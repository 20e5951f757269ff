/*
 * engine/journal.h — what a run has published but the ledger has not recorded yet,
 * and what the ledger last recorded for each stage of a graph.
 *
 * The journal closes the window between "a stage's output is in the store
 * and its key in the action cache" and "the run is committed to the ledger":
 * a kill -9 there used to leave outputs that the next run found cached
 * ("nothing to do"), that lineage did not know, and that gc deleted.
 *
 *     journal/<run>.jsonl   line 1: {"journal": 1, "run", "graph", "graph_path", "graph_text", "started", ...}
 *                           then:   {"stage": NAME, "manifest": {...}} per manifest, appended
 *                                   before the stage's action-cache entry is written
 *
 * The running engine holds an exclusive flock on its journal (the fd is
 * close-on-exec, so stage processes do not keep it). A journal nobody holds
 * belongs to an engine that died before recording its run: mf_journal_recover
 * commits it to the ledger (outcome "interrupted", "recovered_from": the
 * journal) and removes it. Until then, gc keeps every output a journal names
 * (mf_journal_outputs). After a ledger commit the engine removes its journal.
 *
 *     state/<graph>.recorded   "STAGE<TAB>sha256:...\n": the output the ledger last recorded per
 *                              stage, so that a no-op run can tell that the current outputs are
 *                              not the recorded ones (a data change reverted) and record them.
 */
#ifndef MF_JOURNAL_H
#define MF_JOURNAL_H

#include <stddef.h>

#include "artifacts/digest.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"

typedef struct mf_journal mf_journal;

/* Create journal/<head.run>.jsonl under store_root, locked, with head as its first line. */
int mf_journal_open(mf_journal **out, const char *store_root, const mf_json *head, mf_err *err);
/* Append manifests (an object: stage -> manifest) in one write. No fsync per stage: a killed engine
 * loses nothing written (the page cache outlives it); after a power loss, a journal line lost
 * with the key entry kept is caught by the next run's recorded-outputs check, which records them. */
int mf_journal_append(mf_journal *j, const mf_json *manifests, mf_err *err);
/* Close; with recorded != 0 the journal is removed first (its run is in the ledger). */
void mf_journal_close(mf_journal *j, int recorded);

/* Record every abandoned journal in the ledger and remove it. *n_recovered (may be NULL) counts
 * them; a line per recovered run ("GRAPH@N (commit) from journal RUN") goes to report (may be
 * NULL). A journal that cannot be recorded stays (its outputs stay gc roots): the first error is
 * returned after the others were tried. Cheap when there is no journal (one opendir). */
int mf_journal_recover(const char *store_root, size_t *n_recovered, mf_buf *report, mf_err *err);
/* Every output and log digest named by any journal still there (live or not), for gc. */
int mf_journal_outputs(const char *store_root, mf_digest **out, size_t *n, mf_err *err);

/* state/<graph>.recorded: merge the outputs of manifests in (stages without one keep theirs). */
int mf_journal_recorded_update(const char *store_root, const char *graph, const mf_json *manifests, mf_err *err);
/* 1 if, for every (stage, output) pair given, the recorded output is the same; 0 if any differs
 * or nothing was recorded. */
int mf_journal_recorded_matches(const char *store_root, const char *graph, const char *const *stages,
                                const char *const *outputs, size_t n);

#endif
