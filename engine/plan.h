/*
 * engine/plan.h — stage keys, cache decisions and the reasons behind them (DESIGN.md §5-6).
 *
 * The planner walks the graph in topological order. For a stage whose inputs
 * are all known (sources hashed, upstream stages cached or finished) it builds
 * the key components
 *     {kind, kind_version, params, inputs: {slot: [digest[/subpath], ...]}, seed, precision}
 * encodes them canonically (engine/README.md) and hashes them into the stage
 * key. A key found in the action cache means "cached" (unless forced); any
 * other stage is "stale", with every reason found by diffing its components
 * against the ones recorded for the same stage name the last time it was
 * decided (the plan state, a small JSON file per graph under the store). A
 * stage below a stale one is "waiting": its key is known only once the
 * upstream has run, and an identical upstream output leaves it cached (early
 * cut-off) — mf_plan_resolve is called again at that point.
 *
 * The planner touches the store only through mf_plan_io, so it can be tested
 * on graphs built in memory, and a no-op run costs: one stat per source (the
 * stat cache), one action-cache lookup per stage, one small state file read.
 */
#ifndef MF_PLAN_H
#define MF_PLAN_H

#include <stddef.h>
#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "engine/graph.h"

#define MF_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

/* The store as the planner sees it. */
typedef struct mf_plan_io {
    void *ctx;
    /* Digest of a source (a file, a directory or a glob) into out. */
    int (*source_digest)(void *ctx, const char *abs_path, char out[MF_DIGEST_MAX], mf_err *err);
    /* Action cache: 1 with the output digest in out on a hit, 0 on a miss, <0 on error. */
    int (*cache_get)(void *ctx, const char *key_hex, char out[MF_DIGEST_MAX], mf_err *err);
} mf_plan_io;

typedef enum {
    MF_PS_CACHED,   /* key in the action cache: output known, nothing to do */
    MF_PS_STALE,    /* must run (reasons say why) */
    MF_PS_WAITING,  /* an upstream stage must run first; decided later */
    MF_PS_DONE,     /* ran in this run and produced `output` */
    MF_PS_FAILED,   /* ran in this run and failed */
    MF_PS_SKIPPED   /* not needed for the requested targets, or blocked by a failure */
} mf_plan_state;

typedef struct mf_plan_stage {
    mf_plan_state state;
    int needed;                 /* in the closure of the targets (all stages when none) */
    int forced;                 /* --force */
    char key[65];               /* hex; "" until its inputs are known */
    char output[MF_DIGEST_MAX]; /* output digest when CACHED or DONE */
    mf_json *components;        /* key components; NULL until known */
    char **reasons;             /* why STALE / WAITING, human-readable */
    size_t n_reasons;
    long waiting_on;            /* first stale upstream when WAITING, else -1 */
    char failed_run[64];        /* FAILED: the run it failed in */
    int interrupted;            /* FAILED because the run was interrupted */
    int saved;                  /* its decision is in the state file already */
} mf_plan_stage;

typedef struct mf_plan {
    const mf_graph *g;
    mf_plan_io io;
    mf_plan_stage *st;          /* parallel to g->stages */
    char (*src_digest)[MF_DIGEST_MAX]; /* parallel to g->sources; "" until hashed */
    char *state_path;           /* plan state file, or NULL (no history) */
    mf_json *prev;              /* its "stages" object, read lazily: only a stale stage needs it */
    int prev_loaded;
} mf_plan;

typedef struct mf_plan_opts {
    char **targets;             /* stage names to bring up to date (with what they need); none = all */
    size_t n_targets;
    char **force;               /* stage names to rerun even when cached */
    size_t n_force;
    const char *state_path;     /* where previous decisions are kept (see mf_plan_state_load) */
} mf_plan_opts;

/* Hash the sources that needed stages read, decide every needed stage in
 * topological order. Unknown target/force names are MF_EINVAL. */
int mf_plan_new(mf_plan **out, const mf_graph *g, const mf_plan_io *io, const mf_plan_opts *opts,
                mf_err *err);
void mf_plan_free(mf_plan *p);

/* Decide stage i again now that its upstream stages are CACHED or DONE
 * (engine calls it when the stage becomes ready): computes the key and looks
 * it up; CACHED on a hit (early cut-off) unless forced, else STALE. */
int mf_plan_resolve(mf_plan *p, size_t i, mf_err *err);
/* Stage i ran and produced output_digest: state DONE, recorded in the state. */
int mf_plan_mark_done(mf_plan *p, size_t i, const char *output_digest);

/* Stage i failed (or was interrupted) in run run_id: state FAILED; the state
 * file remembers the key, so the next status says so. */
void mf_plan_mark_failed(mf_plan *p, size_t i, const char *run_id, int interrupted);

/* Counts over needed stages. */
size_t mf_plan_count(const mf_plan *p, mf_plan_state s);

/* The plan state: {"version":1, "stages": {name: {"key", "output", "components"}}}.
 * Load returns an empty object when the file does not exist. */
int mf_plan_state_load(mf_json **out, const char *path, mf_err *err);
/* Merge what this plan decided (CACHED/DONE stages) into the state file and write it atomically. */
int mf_plan_state_save(mf_plan *p, mf_err *err);

/* The canonical encoding of key components (engine/README.md) and its SHA-256 in hex. */
int mf_plan_key_encode(const mf_json *components, mf_buf *out);
int mf_plan_key_hash(const mf_json *components, char out[65]);

/* Name of a state: "cached", "stale", ... */
const char *mf_plan_state_name(mf_plan_state s);

/* One line per needed stage ("name  cached" / "name  stale: reason; reason"),
 * or a JSON array of {stage, state, key, output, reasons} when json. */
int mf_plan_write_status(const mf_plan *p, mf_buf *out, int json);

#endif
