/*
 * artifacts/store.h — the content-addressed artifact store.
 *
 * Layout of a store directory (DESIGN.md §5):
 *     objects/<hex>.tar.zst   deterministic archives, named by tree digest
 *     objects/<hex>.refs      digests the artifact's refs.json names (one per line)
 *     keys/<hex>              action cache: stage key -> {"digest", "run"} (JSON)
 *     trees/<hex>/            read-only materialised copies, one per digest, shared
 *     trees/<hex>.stamp       the stat stamp of that copy (store_trees.c)
 *     tmp/                    outputs and extractions in progress (same filesystem)
 *     damaged/                objects verify --repair moved aside (kept for inspection)
 *     ledger.git/             the git ledger (artifacts/ledger.h)
 *     statcache               source stat cache (artifacts/source.c)
 *     lock                    flock(2) lock file (gc exclusive, runs shared)
 *     locks/<key hex>         per-stage-key build locks (flock; removed when released)
 *
 * Atomicity: an object is written to tmp/, fsynced, and renamed into objects/
 * (then the directory is fsynced); a kill at any point leaves the old state or
 * the new one, plus at most some tmp/ litter that gc removes. Materialised
 * trees are extracted to tmp/, verified against their digest while
 * extracting, made read-only and renamed into trees/ — concurrent
 * materialisations of one digest are safe (the loser discards its copy).
 *
 * Locking: `lock` is flocked exclusive by gc only; runs hold it shared (any
 * number of engines share a store), and put and materialise take it shared
 * when this handle does not hold it, so gc never runs under them. Two
 * engines that need the same stage key serialise on that key's build lock
 * (locks/<key hex>): one builds, the other waits and then uses the output.
 * flock is released by the kernel when a process dies, so a crashed medflow
 * never wedges the store.
 *
 * An mf_store handle belongs to one thread at a time; processes share a store
 * freely (that is what the locks are for).
 *
 * Big artifacts: an artifact may contain `refs.json` at its root,
 *     {"refs": {"base_model": "sha256:<64 hex>", ...}}
 * naming other artifacts it depends on without copying them. Put checks they
 * are in the store; materialise materialises them too (a referenced digest D
 * lies at `../<hex of D>` next to the referring tree); gc keeps them; verify
 * checks them.
 */
#ifndef MF_STORE_H
#define MF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/digest.h"
#include "common/error.h"

typedef struct mf_store mf_store;

/* Open (creating the layout if needed) the store in dir. */
int mf_store_open(mf_store **out, const char *dir, mf_err *err);
void mf_store_free(mf_store *s);
const char *mf_store_dir(const mf_store *s);
/* zstd level (default MF_ARCHIVE_LEVEL_DEFAULT) and compression threads (default 1). */
void mf_store_set_compression(mf_store *s, int level, int threads);

enum { MF_LOCK_WAIT = 0, MF_LOCK_NOWAIT = 1, MF_LOCK_SHARED = 2 };
/* Take the exclusive store lock (gc), or with MF_LOCK_SHARED the shared one
 * (a run, from its plan to its ledger commit: any number of runs share it,
 * gc cannot start under them). With MF_LOCK_NOWAIT, MF_EBUSY if another
 * process holds it in a conflicting mode (the message names an exclusive
 * holder's pid). mf_store_unlock releases either. */
int mf_store_lock(mf_store *s, int flags, mf_err *err);
void mf_store_unlock(mf_store *s);

/* The build lock of one stage key (locks/<key hex>, an exclusive flock):
 * whoever holds it is building that key; others wait, then find the key in
 * the action cache. 0 with *fd holding the lock, or with MF_LOCK_NOWAIT
 * MF_EBUSY and *holder = the holder's pid (0 if not known yet). The kernel
 * drops a dead holder's lock. mf_store_key_unlock removes the file and
 * releases the lock (call it after mf_store_key_put). */
int mf_store_key_lock(mf_store *s, const mf_digest *key, int flags, int *fd, long *holder, mf_err *err);
void mf_store_key_unlock(mf_store *s, const mf_digest *key, int fd);
/* gc's part: remove lock files nobody holds (litter of killed holders). */
void mf_store_key_locks_prune(mf_store *s);

/* A fresh empty directory under tmp/ for an output in progress (caller frees). */
int mf_store_tmpdir(mf_store *s, const char *label, char **out, mf_err *err);

/* Archive a finished output directory into the store. The directory must hold
 * only regular files and directories. *digest gets its tree digest; *bytes
 * (may be NULL) the archive size. Putting an existing digest writes the
 * archive again and atomically replaces the stored one, which heals a damaged
 * object (its materialised tree is left alone: materialise checks it). */
int mf_store_put_dir(mf_store *s, const char *dir, mf_digest *digest, uint64_t *bytes, mf_err *err);
/* After mf_store_put_dir(s, dir, &d, ...) of a finished output directory in
 * tmp/: make dir the materialised tree of d (read-only, renamed to
 * trees/<hex>), so dependents need no extraction; if that tree already
 * exists, dir is removed. The caller must not touch dir afterwards. *path
 * (may be NULL) gets the tree path. dir must be on the store's filesystem. */
int mf_store_adopt(mf_store *s, const char *dir, const mf_digest *d, char **path, mf_err *err);
/* Store a single file as a one-entry artifact named `name` (e.g. a stage log). */
int mf_store_put_file(mf_store *s, const char *path, const char *name, mf_digest *digest, mf_err *err);

/* 1 if the object is in the store, 0 if not. */
int mf_store_has(mf_store *s, const mf_digest *d);
/* Path of the object's archive (caller frees). */
char *mf_store_object_path(const mf_store *s, const mf_digest *d);
/* Path of a stage key's action-cache entry (caller frees). */
char *mf_store_key_path(const mf_store *s, const mf_digest *key);

/* Materialise an object as trees/<hex> (read-only), verified while
 * extracting; reuse it if already there and unmodified (trees/<hex>.stamp
 * holds its files' stat lines when made: one lstat per file while they match,
 * a full hash when not; a modified tree is moved aside and extracted again
 * from its object, see store_trees.c). Objects named in its refs.json are
 * materialised too. *path (may be NULL) gets the tree path (caller frees). */
int mf_store_materialize(mf_store *s, const mf_digest *d, char **path, mf_err *err);
/* How many materialised trees this handle found modified and extracted again. */
size_t mf_store_trees_repaired(const mf_store *s);

/* Digests an object's refs.json names (from objects/<hex>.refs). */
int mf_store_refs(mf_store *s, const mf_digest *d, mf_digest **refs, size_t *n, mf_err *err);

/* Action cache. key_get: MF_ENOTFOUND on a miss, MF_ECORRUPT for a damaged
 * entry (callers may treat it as a miss: key_put replaces it); *run_id (may be
 * NULL) gets a malloc'd copy of the recorded run id ("" if none). */
int mf_store_key_put(mf_store *s, const mf_digest *key, const mf_digest *out, const char *run_id, mf_err *err);
int mf_store_key_get(mf_store *s, const mf_digest *key, mf_digest *out, char **run_id, mf_err *err);
/* The same with the build identity the output was computed with (kernels/build_id.c; "" or NULL: none
 * recorded); *build (may be NULL) gets a malloc'd copy. */
int mf_store_key_put_build(mf_store *s, const mf_digest *key, const mf_digest *out, const char *run_id,
                           const char *build, mf_err *err);
int mf_store_key_get_build(mf_store *s, const mf_digest *key, mf_digest *out, char **run_id, char **build,
                           mf_err *err);

typedef struct mf_store_obj {
    mf_digest digest;
    uint64_t bytes;     /* archive size */
    int materialized;   /* trees/<hex> exists */
} mf_store_obj;
/* Every object, sorted by digest (caller frees *objs). */
int mf_store_list(mf_store *s, mf_store_obj **objs, size_t *n, mf_err *err);
/* Remove an object, its refs file and its materialised tree. *freed (may be NULL) gets bytes freed. */
int mf_store_remove(mf_store *s, const mf_digest *d, uint64_t *freed, mf_err *err);

/* Re-hash every object and every materialised tree; report each problem
 * through cb (what: "object", "tree", "refs" or "key"). *bad counts problems. */
typedef void (*mf_store_report_fn)(void *ctx, const char *what, const mf_digest *d, const mf_err *problem);
int mf_store_verify(mf_store *s, mf_store_report_fn cb, void *ctx, size_t *bad, mf_err *err);

/* Repair what verify finds, from good copies only (artifacts/store_repair.c): a bad object is
 * re-packed from its materialised tree when that still hashes right, else moved to damaged/ and
 * the action-cache entries naming it removed (its producer runs again: MF_REPAIR_RECOMPUTE);
 * modified trees and damaged or dangling action-cache entries are removed; refs.json naming a
 * missing object is reported. Takes the writer lock (waits). cb gets each problem and its outcome. */
enum { MF_REPAIR_FIXED = 0, MF_REPAIR_RECOMPUTE = 1, MF_REPAIR_NOT_FIXED = 2 };
typedef struct mf_store_repair_stats {
    size_t fixed, recompute, unfixed;
} mf_store_repair_stats;
typedef void (*mf_store_repair_fn)(void *ctx, const char *what, const mf_digest *d, int outcome, const char *how);
int mf_store_repair(mf_store *s, mf_store_repair_fn cb, void *ctx, mf_store_repair_stats *st, mf_err *err);

/* Remove every object not reachable from roots (following refs), the action
 * cache entries that point to removed objects, and medflow's own tmp/ litter.
 * Takes the writer lock (waits). dry_run only counts. */
typedef struct mf_store_gc_stats {
    size_t kept, removed;
    uint64_t bytes_kept, bytes_removed;
} mf_store_gc_stats;
int mf_store_gc(mf_store *s, const mf_digest *roots, size_t n_roots, int dry_run, mf_store_gc_stats *st,
                mf_err *err);

/* ---- sources (artifacts/source.c) ----
 * The digest of a source path: a directory is the tree of its files (symlinks
 * followed); a single file is a one-entry tree named by its basename; a glob
 * (containing * ? or [) is the tree of its matches, paths relative to the
 * glob's last wildcard-free directory, directories among the matches
 * contributing their files. Unchanged files (same size, mtime_ns, ctime_ns,
 * inode, device) take their SHA-256 from the store's stat cache instead of
 * being read; MF_SOURCE_REHASH reads everything. s may be NULL (no cache).
 * The cache is read once per store handle and written back by
 * mf_source_cache_flush (or, best effort, by mf_store_free). */
enum { MF_SOURCE_REHASH = 1 };
typedef struct mf_source_stats {
    size_t files, hashed; /* files in the source; files actually read */
    uint64_t bytes, bytes_hashed;
} mf_source_stats;
int mf_source_digest(mf_store *s, const char *path, int flags, mf_digest *out, mf_source_stats *st, mf_err *err);
/* Write the stat cache back if digests changed it (a no-op otherwise). */
int mf_source_cache_flush(mf_store *s, mf_err *err);

#endif
