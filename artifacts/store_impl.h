/*
 * artifacts/store_impl.h — internals shared by store.c and source.c: the
 * source stat cache a store handle owns (loaded once, written back once).
 * Not a public header: only artifacts/store.c and artifacts/source.c include it.
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

#endif
