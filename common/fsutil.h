/*
 * common/fsutil.h — filesystem helpers shared by every module.
 *
 * Writes users rely on go through mf_write_file_atomic: temp file in the same
 * directory, fsync, rename, fsync of the directory — a crash leaves the old
 * file or the new one, never a torn one.
 */
#ifndef MF_FSUTIL_H
#define MF_FSUTIL_H

#include <stddef.h>
#include "common/error.h"

/* Read a whole file; *out is NUL-terminated (not counted in *len); caller frees. */
int mf_read_file(const char *path, char **out, size_t *len, mf_err *err);
/* Atomically replace path with data. mode e.g. 0644. Under the scratch
 * directory (below) the write is still atomic but not fsynced. */
int mf_write_file_atomic(const char *path, const void *data, size_t len, int mode, mf_err *err);
/* This process's scratch directory (NULL: none): files under it are never
 * durable state by themselves (a store's tmp/: stage outputs are fsynced when
 * they are archived into objects/), so atomic writes there skip the two
 * fsyncs. The path is compared as given (same spelling as the writes). */
void mf_fs_set_scratch(const char *dir);
int mf_fs_is_scratch(const char *path);
/* Copy a regular file to `to` (atomically replaced, mode 0644). */
int mf_copy_file(const char *from, const char *to, mf_err *err);
/* mkdir -p; existing directories are fine. */
int mf_mkdir_p(const char *path, int mode, mf_err *err);
/* rm -rf (does not follow symlinks; makes read-only dirs writable first). Missing is fine. */
int mf_rm_rf(const char *path, mf_err *err);
/* fsync a directory so a rename inside it is durable. */
int mf_fsync_dir(const char *dir, mf_err *err);
/* malloc'd "a/b" (NULL on OOM). */
char *mf_path_join(const char *a, const char *b);
/* malloc'd directory part of path ("." when none). */
char *mf_path_dirname(const char *path);
/* path made absolute against the working directory (not resolved: links stay); NULL when out of memory. */
char *mf_path_absolute(const char *path);
int mf_is_dir(const char *path);
int mf_is_file(const char *path);
/* Is dir/name a regular file? (0 also when out of memory) */
int mf_dir_has_file(const char *dir, const char *name);
/* Current time in seconds (CLOCK_REALTIME) and a monotonic clock. */
double mf_now(void);
double mf_monotonic(void);

#endif
