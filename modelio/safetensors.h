/*
 * modelio/safetensors.h — read and write the safetensors format (HF's tensor file).
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets":
 * [begin, end]}, "__metadata__": {str: str}}, then the data section; offsets are
 * relative to the data section.
 *
 * Reading maps the file (mmap) and validates the whole header before handing
 * anything out: header length bounded (<= 100 MB, like the reference) and
 * inside the file, JSON object, known dtype, shapes of non-negative ints,
 * byte size == numel * dtype size, offsets inside the data section, tensors
 * neither overlapping nor leaving holes and covering the data section exactly
 * (the reference implementation's rule). A hostile file gives MF_ECORRUPT with
 * a message naming the tensor and what was wrong; it never crashes.
 * mf_safetensors_parse() does the same on a caller-owned buffer (used by the fuzzer).
 *
 * Writing produces byte-for-byte what python's safetensors writes for the same
 * tensors: tensors ordered by dtype (I64, F32, I32, BF16, F16) then name,
 * entries as {"dtype","shape","data_offsets"}, header padded with spaces to
 * 8 bytes; "__metadata__" first with sorted keys. Files are written to a temp
 * file in the same directory, fsynced and renamed (atomic).
 *
 * Sharded checkpoints: BASE.safetensors.index.json {"metadata": {"total_size"},
 * "weight_map": {tensor: shard file}} next to BASE-0000i-of-0000n.safetensors.
 * mf_safetensors_set_* reads one file or a shard set behind one lookup; mf_safetensors_write_sharded
 * splits by size the way transformers does (fill a shard until the next tensor
 * would push it past the limit).
 *
 * Conversions: bf16/f16 -> f32 are exact; f32 -> bf16/f16 round to nearest
 * even (as torch does), NaN becomes the canonical quiet NaN.
 */
#ifndef MF_SAFETENSORS_H
#define MF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/json.h"

typedef enum { MF_SAFETENSORS_F32, MF_SAFETENSORS_F16, MF_SAFETENSORS_BF16, MF_SAFETENSORS_I64, MF_SAFETENSORS_I32 } mf_safetensors_dtype;

#define MF_SAFETENSORS_MAX_DIMS 8
#define MF_SAFETENSORS_MAX_HEADER 100000000ull

typedef struct mf_safetensors_tensor {
    const char *name;
    mf_safetensors_dtype dtype;
    int ndim;
    int64_t shape[MF_SAFETENSORS_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;  /* offsets in the data section */
    const void *data;     /* begin of the bytes (may be unaligned; little-endian) */
    size_t nbytes;
} mf_safetensors_tensor;

typedef struct mf_safetensors_file mf_safetensors_file;

/* "F32" etc. and back; element size in bytes. */
const char *mf_safetensors_dtype_name(mf_safetensors_dtype dt);
int mf_safetensors_dtype_parse(mf_safetensors_dtype *out, const char *name);
size_t mf_safetensors_dtype_size(mf_safetensors_dtype dt);

/* Map and validate a file. */
int mf_safetensors_open(mf_safetensors_file **out, const char *path, mf_err *err);
/* Validate a buffer in memory; buf must outlive the handle (it is not copied).
 * name is used in error messages. */
int mf_safetensors_parse(mf_safetensors_file **out, const void *buf, size_t len, const char *name, mf_err *err);
void mf_safetensors_close(mf_safetensors_file *f);

/* Tensors, sorted by name. */
size_t mf_safetensors_count(const mf_safetensors_file *f);
const mf_safetensors_tensor *mf_safetensors_at(const mf_safetensors_file *f, size_t i);
const mf_safetensors_tensor *mf_safetensors_find(const mf_safetensors_file *f, const char *name);
/* The "__metadata__" object, or NULL when the file has none. */
const mf_json *mf_safetensors_metadata(const mf_safetensors_file *f);

/* Convert a tensor to f32 into dst (n must equal t->numel). Integers convert by value. */
int mf_safetensors_tensor_to_f32(const mf_safetensors_tensor *t, float *dst, size_t n, mf_err *err);
/* Same, into a new malloc'd array. */
int mf_safetensors_tensor_f32_dup(float **out, const mf_safetensors_tensor *t, mf_err *err);

/* Scalar conversions (round to nearest even). */
uint16_t mf_safetensors_f32_to_bf16(float f);
uint16_t mf_safetensors_f32_to_f16(float f);
float mf_safetensors_bf16_to_f32(uint16_t h);
float mf_safetensors_f16_to_f32(uint16_t h);

/* ---- writing ---- */

/* One tensor to write. Give either f32 (converted to dtype when dtype is a
 * float type) or raw (bytes already in dtype, little-endian). */
typedef struct mf_safetensors_out {
    const char *name;
    mf_safetensors_dtype dtype;
    int ndim;
    int64_t shape[MF_SAFETENSORS_MAX_DIMS];
    const float *f32;
    const void *raw;
} mf_safetensors_out;

/* Write one file atomically. metadata: an object of strings, or NULL. */
int mf_safetensors_write(const char *path, const mf_safetensors_out *tensors, size_t n, const mf_json *metadata,
                mf_err *err);

/* Write dir/BASE.safetensors when everything fits in max_shard_bytes (0 = no
 * limit), else BASE-0000i-of-0000n.safetensors + BASE.safetensors.index.json.
 * A stale file of the other form in dir is removed. *n_shards gets the count
 * (1 for an unsharded file; may be NULL). */
int mf_safetensors_write_sharded(const char *dir, const char *base, const mf_safetensors_out *tensors, size_t n,
                        uint64_t max_shard_bytes, const mf_json *metadata, int *n_shards,
                        mf_err *err);

/* ---- a checkpoint of one or more files ---- */

typedef struct mf_safetensors_set mf_safetensors_set;

/* Open dir/BASE.safetensors.index.json (sharded) or else dir/BASE.safetensors.
 * `path` may also name a .safetensors file or an index file directly (base ignored). */
int mf_safetensors_set_open(mf_safetensors_set **out, const char *path, const char *base, mf_err *err);
void mf_safetensors_set_close(mf_safetensors_set *s);
size_t mf_safetensors_set_count(const mf_safetensors_set *s);
const mf_safetensors_tensor *mf_safetensors_set_at(const mf_safetensors_set *s, size_t i); /* sorted by name */
const mf_safetensors_tensor *mf_safetensors_set_find(const mf_safetensors_set *s, const char *name);
int mf_safetensors_set_nfiles(const mf_safetensors_set *s);

#endif
