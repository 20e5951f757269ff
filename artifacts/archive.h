/*
 * artifacts/archive.h — deterministic artifact archives (pax tar + zstd).
 *
 * The tar stream is written by libarchive (pax restricted format: plain ustar
 * headers, pax extended headers only where ustar cannot express a path or a
 * size), entries sorted by path bytes, regular files only, mtime/uid/gid 0,
 * no user/group names, modes 0644 or 0755 (by the owner execute bit). The
 * stream is compressed as ONE zstd frame with the content checksum on, by
 * libzstd directly, followed by a 48-byte zstd *skippable* frame holding the
 * SHA-256 of all bytes before it (artifacts/README.md, "Object format"), so
 * every flipped byte of an object is caught — even in bits zstd ignores —
 * and the file stays a valid .tar.zst for `tar --zstd -x`. The tree digest is
 * recomputed on extraction too. Packing the same tree twice gives identical
 * bytes.
 *
 * Extraction refuses hostile archives with a clear error: absolute paths,
 * "..", empty or "." components, symlinks, hardlinks, devices, fifos,
 * directory entries, sparse entries, duplicated or unsorted entries,
 * trailing data, a missing checksum or trailer, and any content that does not match the
 * expected digest. Files are created with O_EXCL|O_NOFOLLOW under a fresh
 * directory, so nothing can be written outside it.
 */
#ifndef MF_ARCHIVE_H
#define MF_ARCHIVE_H

#include <stdint.h>

#include "artifacts/digest.h"
#include "common/error.h"

enum { MF_ARCHIVE_LEVEL_DEFAULT = 1 }; /* zstd level: fast */

/* Pack the files of t (sorted with mf_tree_sort; hashed on the way, so each
 * file is read once) into fd. *digest gets the tree digest, *bytes (may be
 * NULL) the archive size. threads > 1 uses zstd worker threads. */
int mf_archive_pack(mf_tree *t, int fd, int level, int threads, mf_digest *digest, uint64_t *bytes, mf_err *err);

/* Read an archive from fd. With dest (an existing empty directory) the files
 * are written there; without it the archive is only checked. The tree digest
 * is computed while reading and returned in *got (may be NULL); if expect is
 * given and differs, MF_ECORRUPT. */
int mf_archive_unpack(int fd, const char *dest, const mf_digest *expect, mf_digest *got, mf_err *err);

#endif
