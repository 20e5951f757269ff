/* tests/artifacts/util.h — helpers shared by the artifacts tests: build trees on disk. */
#ifndef MF_TEST_ARTIFACTS_UTIL_H
#define MF_TEST_ARTIFACTS_UTIL_H

#include <stddef.h>

#include "common/json.h"

/* Write a file with mode (creating parent directories); aborts the test on failure. */
void tu_write(const char *path, const void *data, size_t len, int mode);
/* Build the files of one test vector (tests/artifacts/vectors/vectors.json) under dir. */
void tu_build_vector(const char *dir, const mf_json *vector);
/* Load the committed vectors (aborts the test if missing). */
mf_json *tu_load_vectors(void);
/* A small tree of nfiles files whose content depends on seed. */
void tu_make_tree(const char *dir, unsigned seed, int nfiles);
/* "base/name" in a static rotating buffer (64 slots: callers keep at most a few). */
const char *tu_path(const char *base, const char *name);

#endif
