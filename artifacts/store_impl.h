/*
 * artifacts/store_impl.h — internals shared by store.c, source.c and
 * store_trees.c: the source stat cache a store handle owns (loaded once,
 * written back once), and the stamps of materialised trees.
 * Not a public header: only artifacts/ includes it.
 */
#ifndef MF_STORE_IMPL_H
#define MF_STORE_IMPL_H

#include "artifacts/store.h"

typedef struct mf_statcache mf_statcache;

int mf_statcache_new(mf_statcache **out, const char *store_dir, mf_err *err);
/* Write the cache back if this handle changed it. */
int mf_statcache_flush(mf_statcache *c, mf_err *err);
void mf_statcache_free(mf_statcache *c);
/* The handle's cache (created on first use; NULL when out of memory: no cache). */
mf_statcache *mf_store_i_statcache(mf_store *s);

/* Materialised trees (store_trees.c). stamp: record the stat stamp of a tree just made.
 * check: 0 if the tree still holds digest d (one lstat per file while its stamp matches, a full
 * hash otherwise), MF_ECORRUPT if it was modified. discard: move a damaged tree aside and remove it. */
int mf_store_i_tree_stamp(const char *tree, mf_err *err);
int mf_store_i_tree_check(const char *tree, const mf_digest *d, mf_err *err);
int mf_store_i_tree_discard(const char *tree, const char *tmp_dir, mf_err *err);

#endif
