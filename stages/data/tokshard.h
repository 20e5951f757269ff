/*
 * stages/data/tokshard.h — tokenized dataset shards: the on-disk format written by
 * the `tokenize` kind and read (mmap) by the trainers.
 *
 * A shard file (shard-NNNNN.bin) is, all integers little-endian:
 *
 *   offset  size  field
 *   0       8     magic "MFTOKSHD"
 *   8       4     u32 version (1)
 *   12      4     u32 format: 1 pretrain, 2 sft, 3 preference, 4 prompts
 *   16      8     u64 n_tokens
 *   24      8     u64 n_docs
 *   32      4     u32 block_size (0 = not packed)
 *   36      4     u32 vocab_size of the tokenizer
 *   40      8     u64 n_blocks = n_tokens / block_size (0 when not packed)
 *   48      16    reserved, zero
 *   64            i32 ids[n_tokens]
 *                 u8  mask[n_tokens]          1 = the token is a training target
 *                 (zero padding to a multiple of 8)
 *                 u64 doc_offsets[n_docs + 1] doc k = ids[doc_offsets[k] .. doc_offsets[k+1])
 *                 u64 prompt_len[n_docs]      tokens of doc k before its answer
 *
 * Formats: pretrain — docs are BOS? + text + EOS? with mask 1, concatenated;
 * when packed, block k is ids[k*B, (k+1)*B): a plain window over the stream
 * that may span documents, and documents in a block CAN attend to each other
 * (no per-document attention mask is stored or applied; doc_offsets record
 * the boundaries for anyone who wants them). Tokens past n_blocks*B are the
 * unused tail. sft — one doc per conversation, mask 1 on assistant tokens.
 * preference — two docs per pair: 2i = prompt + chosen, 2i+1 = prompt +
 * rejected, prompt_len marks where the answer starts. prompts — one doc per
 * prompt (ending with the assistant cue), mask 0.
 */
#ifndef MF_TOKSHARD_H
#define MF_TOKSHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

enum { MF_TOKSHARD_PRETRAIN = 1, MF_TOKSHARD_SFT = 2, MF_TOKSHARD_PREFERENCE = 3, MF_TOKSHARD_PROMPTS = 4 };
#define MF_TOKSHARD_MAGIC "MFTOKSHD"
#define MF_TOKSHARD_VERSION 1
#define MF_TOKSHARD_HEADER 64

const char *mf_tokshard_format_name(int format);
int mf_tokshard_format_parse(const char *name); /* 0 if unknown */

/* ---- writer: accumulate documents, then write the shard file ---- */
typedef struct mf_tokshard_writer {
    int format;
    uint32_t block_size, vocab_size;
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
    uint64_t *offsets, *plen; /* offsets[0] = 0 */
    size_t n_docs, doc_cap;
} mf_tokshard_writer;

int mf_tokshard_writer_init(mf_tokshard_writer *w, int format, uint32_t block_size, uint32_t vocab_size);
/* Append a document (mask may be NULL: all ones when fill_mask, else zeros). */
int mf_tokshard_writer_add(mf_tokshard_writer *w, const int32_t *ids, const uint8_t *mask, size_t n, size_t prompt_len);
/* Write the shard atomically to path. */
int mf_tokshard_writer_write(const mf_tokshard_writer *w, const char *path, mf_err *err);
void mf_tokshard_writer_free(mf_tokshard_writer *w);

/* ---- reader: mmap a shard, validated ---- */
typedef struct mf_ts {
    void *map;
    size_t map_len;
    int format;
    uint32_t block_size, vocab_size;
    uint64_t n_tokens, n_docs, n_blocks;
    const int32_t *ids;
    const uint8_t *mask;
    const uint64_t *doc_offsets; /* n_docs + 1 */
    const uint64_t *prompt_len;  /* n_docs */
} mf_ts;

/* Map and check a shard: magic, version, sizes against the file length,
 * offsets monotone and within n_tokens, ids within [0, vocab_size). */
int mf_tokshard_open(mf_ts *ts, const char *path, mf_err *err);
void mf_tokshard_close(mf_ts *ts);

/* ---- a tokenize output directory: every shard-*.bin in name order ---- */
typedef struct mf_tsdir {
    mf_ts *shards;
    size_t n;
    int format;
    uint32_t block_size, vocab_size;
    uint64_t n_tokens, n_docs, n_blocks; /* totals */
} mf_tsdir;

/* Open all shards of dir (a file path opens that one shard); they must agree on
 * format, block size and vocabulary size. */
int mf_tokshard_dir_open(mf_tsdir *d, const char *dir, mf_err *err);
void mf_tokshard_dir_close(mf_tsdir *d);

#endif
