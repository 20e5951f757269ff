/*
 * artifacts/ledger.h — the run ledger: a bare git repository <store>/ledger.git.
 *
 * Each run is one commit on refs/heads/<graph name, sanitised>. Its tree:
 *     graph.yaml                    the graph file as given
 *     run.json                      the run record (from the engine; host, user
 *                                   and engine version filled in if absent)
 *     stages/<name>/manifest.json   one manifest per stage
 * All JSON is canonical (sorted keys, pretty), so `git diff` between runs is
 * meaningful. The commit message is "<graph>@<N>: <outcome>" plus trailers
 * "medflow-graph: <graph>" and "medflow-run: <N>"; N counts runs on the branch
 * from 1, and "GRAPH@N" names that run.
 *
 * Manifest fields the ledger reads (the engine writes more; see README.md):
 *     kind, kind_version, key, params, status,
 *     inputs: {slot: "sha256:..." | {"digest": "sha256:...", "source": name, ...}},
 *     output: "sha256:..." | {"digest": "sha256:...", "size": N}, log: "sha256:..."
 *
 * An index <store>/ledger.idx maps output digests to the run and stage that
 * produced them (first producer wins), appended on every commit. Its first
 * line records the branch tips it was built from; it is rebuilt from the
 * ledger when missing, or when a digest is not found and the branches have
 * moved since, so lineage is a walk, not a search.
 *
 * Names: RUN is a commit id prefix (>= 4 hex), "GRAPH@N", or "GRAPH" (its
 * latest run). STAGE is "NAME" (latest run on any branch that has it),
 * "RUN:NAME", or an output digest "sha256:<hex>".
 */
#ifndef MF_LEDGER_H
#define MF_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/digest.h"
#include "common/error.h"
#include "common/json.h"

typedef struct mf_ledger mf_ledger;

/* Open <store_dir>/ledger.git, creating the bare repository if missing. */
int mf_ledger_open(mf_ledger **out, const char *store_dir, mf_err *err);
void mf_ledger_free(mf_ledger *l);

/* The branch a graph's runs go to: [A-Za-z0-9._-] and non-ASCII (UTF-8) bytes kept, anything else '-',
 * no leading '.' or '-', no ".lock" suffix; "graph" if nothing is left. */
int mf_ledger_branch_name(const char *graph, char *out, size_t n);

/* Record one run: graph_text (graph_len bytes) is stored as graph.yaml, run as
 * run.json, stages (an object: stage name -> manifest) as
 * stages/<name>/manifest.json. out_id (41 bytes, may be NULL) gets the commit
 * id, out_number (may be NULL) the N of GRAPH@N. Committer from
 * GIT_COMMITTER_NAME/EMAIL, author from GIT_AUTHOR_NAME/EMAIL, else the git
 * config's user.name/user.email, else "medflow". */
int mf_ledger_commit_run(mf_ledger *l, const char *graph_name, const char *graph_text, size_t graph_len,
                         const mf_json *run, const mf_json *stages, char out_id[41], int *out_number, mf_err *err);

/* The N that the next run of graph_name will most likely get (GRAPH@N), e.g.
 * to label action-cache entries before the run is committed. Informative:
 * a concurrent engine may take it first; the commit reports the real one. */
int mf_ledger_next_number(mf_ledger *l, const char *graph_name, int *n, mf_err *err);

typedef struct mf_ledger_run {
    char id[41];       /* commit id */
    char *graph;       /* branch / graph name */
    int number;        /* N in GRAPH@N */
    int64_t time;      /* commit time, seconds since the epoch */
    mf_json *run;      /* run.json */
    mf_json *stages;   /* object: stage name -> manifest */
    char *graph_text;  /* graph.yaml (NUL-terminated) */
} mf_ledger_run;

/* Load the run a RUN spec names. */
int mf_ledger_load(mf_ledger *l, const char *spec, mf_ledger_run **out, mf_err *err);
void mf_ledger_run_free(mf_ledger_run *r);
/* Runs newest first, on one graph's branch or (graph NULL) on all. */
int mf_ledger_list(mf_ledger *l, const char *graph, mf_ledger_run ***runs, size_t *n, mf_err *err);
void mf_ledger_list_free(mf_ledger_run **runs, size_t n);

/* Resolve a STAGE spec: *run gets the run, *stage (malloc'd) the stage name. */
int mf_ledger_find_stage(mf_ledger *l, const char *spec, mf_ledger_run **run, char **stage, mf_err *err);
/* The run and stage whose output is d; MF_ENOTFOUND when no stage produced it (a source). */
int mf_ledger_producer(mf_ledger *l, const mf_digest *d, mf_ledger_run **run, char **stage, mf_err *err);

/* The digest a manifest field holds ("sha256:..." or {"digest": ...}); NULL if none. */
const char *mf_ledger_digest_of(const mf_json *field);

/* refs/tags/NAME -> a blob holding `what` (canonical JSON; e.g. the digest,
 * stage and run tagged). MF_EINVAL if NAME is not a valid tag name or exists. */
int mf_ledger_tag(mf_ledger *l, const char *name, const mf_json *what, mf_err *err);

/* Every digest ("sha256:<hex>" anywhere in run.json, manifests or tag blobs)
 * reachable from any ref: the roots gc keeps. Sorted, unique. */
int mf_ledger_reachable(mf_ledger *l, mf_digest **out, size_t *n, mf_err *err);

/* Read back every git object of the ledger (libgit2 re-hashes each one while
 * reading); report each unreadable or corrupt one through cb with its id.
 * *bad counts them. */
typedef void (*mf_ledger_report_fn)(void *ctx, const char *object_id, const mf_err *problem);
int mf_ledger_verify(mf_ledger *l, mf_ledger_report_fn cb, void *ctx, size_t *bad, mf_err *err);

/* Rebuild ledger.idx from the ledger. */
int mf_ledger_reindex(mf_ledger *l, mf_err *err);

#endif
