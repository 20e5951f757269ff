/*
 * artifacts/digest.h — SHA-256 digests of bytes, files and trees.
 *
 * An artifact's identity is its *tree digest* (DESIGN.md §5): SHA-256 over
 * every regular file of the tree in path order, each entry giving its
 * relative path, executable bit, size and the SHA-256 of its bytes. The exact
 * byte encoding is specified in artifacts/README.md ("Tree digest v1") and
 * reproduced independently by tests/artifacts/vectors/treehash.py:
 *
 *     D = SHA256( "medflow-tree-v1\n"
 *                 || for each file, sorted by path bytes (memcmp order):
 *                      u32be(len(path)) || path || u8(exec) || u64be(size) || SHA256(bytes) )
 *
 * Digest values are 32 raw bytes; text form "sha256:<64 hex>", short form the
 * first 12 hex digits. SHA-256 comes from OpenSSL (EVP).
 */
#ifndef MF_DIGEST_H
#define MF_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct mf_digest {
    unsigned char b[32];
} mf_digest;

#define MF_DIGEST_STRLEN 71 /* "sha256:" + 64 hex, without the NUL */

/* "sha256:<64 hex>" into out (72 bytes); returns out. */
char *mf_digest_str(const mf_digest *d, char out[72]);
/* "<64 hex>" into out (65 bytes). */
char *mf_digest_hex(const mf_digest *d, char out[65]);
/* First 12 hex digits into out (13 bytes). */
char *mf_digest_short(const mf_digest *d, char out[13]);
/* Parse "sha256:<64 hex>" or "<64 hex>" (lower or upper case). MF_EINVAL otherwise. */
int mf_digest_parse(mf_digest *out, const char *s, mf_err *err);
int mf_digest_eq(const mf_digest *a, const mf_digest *b);

/* Plain SHA-256 of a buffer. */
void mf_digest_bytes(mf_digest *out, const void *p, size_t n);
/* Plain SHA-256 of a file's bytes; *size gets the number of bytes read (may be NULL). */
int mf_digest_file(mf_digest *out, const char *path, uint64_t *size, mf_err *err);

/* ---- tree digests ---- */

/* Incremental SHA-256 (wraps EVP_MD_CTX). */
typedef struct mf_sha256 mf_sha256;
int mf_sha256_new(mf_sha256 **out, mf_err *err);
void mf_sha256_update(mf_sha256 *h, const void *p, size_t n);
void mf_sha256_final(mf_sha256 *h, mf_digest *out); /* also resets h for reuse */
void mf_sha256_free(mf_sha256 *h);

/* Streaming tree hasher: feed entries in strictly increasing path order
 * (the check is part of the contract: duplicates or disorder are MF_ECORRUPT,
 * which is how extraction refuses reordered or duplicated archive entries). */
typedef struct mf_treehash mf_treehash;
int mf_treehash_new(mf_treehash **out, mf_err *err);
int mf_treehash_add(mf_treehash *t, const char *path, int exec, uint64_t size, const mf_digest *sha, mf_err *err);
void mf_treehash_final(mf_treehash *t, mf_digest *out);
void mf_treehash_free(mf_treehash *t);

/* A relative path is valid in a tree when it is non-empty, '/'-separated,
 * has no leading '/', no empty, "." or ".." component, and no NUL. */
int mf_tree_path_valid(const char *path);

/* The file list of a directory: regular files only, sorted by path bytes. */
typedef struct mf_tree_entry {
    char *path;      /* relative, '/'-separated */
    char *abs;       /* the file on disk */
    int exec;        /* owner execute bit */
    uint64_t size;
    int64_t mtime_ns, ctime_ns;
    uint64_t ino, dev;
    mf_digest sha;   /* filled by mf_tree_hash_files (or a stat cache) */
    int hashed;
} mf_tree_entry;

typedef struct mf_tree {
    mf_tree_entry *v;
    size_t n, cap;
} mf_tree;

enum {
    MF_SCAN_FOLLOW = 1 /* follow symlinks (sources); without it a symlink is an error (outputs) */
};

/* Add dir's files under prefix ("" for none). Symlinks, devices, fifos and
 * sockets are errors unless MF_SCAN_FOLLOW (then symlinks are followed; loops
 * are cut at 64 levels). Does not sort. */
int mf_tree_scan(mf_tree *t, const char *dir, const char *prefix, int flags, mf_err *err);
/* Add one file as entry `name`. */
int mf_tree_add_file(mf_tree *t, const char *file, const char *name, int flags, mf_err *err);
/* Sort by path bytes; MF_EINVAL when two entries have the same path. */
int mf_tree_sort(mf_tree *t, mf_err *err);
/* SHA-256 of every entry not yet hashed; size must still match the stat. */
int mf_tree_hash_files(mf_tree *t, mf_err *err);
/* The tree digest of a sorted, hashed tree. */
int mf_tree_digest(const mf_tree *t, mf_digest *out, mf_err *err);
void mf_tree_free(mf_tree *t);

/* Tree digest of a directory (symlinks refused): scan + sort + hash. */
int mf_digest_dir(mf_digest *out, const char *dir, mf_err *err);

#endif
