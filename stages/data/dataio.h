/*
 * stages/data/dataio.h — what the data stage kinds share: JSONL output files,
 * stats.json, opening a slot's inputs under the on_bad_record policy, a
 * seeded RNG and small hashes.
 *
 * The RNG is splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, fully
 * specified, so a seed gives the same draws on every platform and build.
 */
#ifndef MF_DATAIO_H
#define MF_DATAIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "stages/data/readers.h"
#include "stages/stage.h"

/* ---- output JSONL ---- */
typedef struct mf_dout {
    FILE *fp;
    char *path;
    long long rows;
} mf_dout;

/* Create dir/name for writing (dir is created if missing). */
int mf_data_out_open(mf_dout *o, const char *dir, const char *name, mf_err *err);
/* Write one line (a '\n' is added). */
int mf_data_out_line(mf_dout *o, const char *line, size_t n, mf_err *err);
/* Write v as a compact, key-sorted JSON line. */
int mf_data_out_json(mf_dout *o, const mf_json *v, mf_err *err);
/* Flush, fsync and close; safe on a never-opened or already-closed mf_dout. */
int mf_data_out_close(mf_dout *o, mf_err *err);

/* Write out_dir/stats.json (canonical, pretty). Takes ownership of stats. */
int mf_stats_write(const char *out_dir, mf_json *stats, mf_err *err);
/* stats helpers (ignore allocation failure: stats are best-effort until written) */
void mf_stats_int(mf_json *o, const char *key, long long v);
void mf_stats_str(mf_json *o, const char *key, const char *v);

/* Report progress every 10,000 lines read (a no-op otherwise). */
void mf_data_tick(const mf_stage_ctx *ctx, const mf_rd *rd, const char *what);
/* The next good record of rd: its raw line and parsed object (the caller frees
 * *rec), with a progress tick named `what`; bad lines are rejected or skipped by
 * rd's policy. 1 = a record, 0 = end of input, < 0 = error. */
int mf_data_next(const mf_stage_ctx *ctx, mf_rd *rd, const char *what, const char **line, size_t *len, mf_json **rec,
                 mf_err *err);

/* Open every path bound to `slot`, with the stage's on_bad_record policy. */
int mf_data_open(const mf_stage_ctx *ctx, const char *slot, mf_rd **out);

/* ---- RNG and hashes ---- */
typedef struct mf_rng { uint64_t s; } mf_rng;
void mf_rng_seed(mf_rng *r, uint64_t seed);
uint64_t mf_rng_next(mf_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t mf_rng_below(mf_rng *r, uint64_t n);
double mf_rng_unit(mf_rng *r); /* [0, 1) with 53 random bits */
/* Fisher-Yates shuffle of n indices. */
void mf_rng_shuffle(mf_rng *r, size_t *idx, size_t n);

uint64_t mf_hash64(const void *p, size_t n, uint64_t seed); /* FNV-1a 64 then splitmix finaliser */
uint64_t mf_mix64(uint64_t x);                              /* splitmix64 finaliser */
/* SHA-256 (OpenSSL) of p into out[32]. */
void mf_sha256(const void *p, size_t n, unsigned char out[32]);

#endif
