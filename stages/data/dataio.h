/*
 * stages/data/dataio.h — what the data stage kinds share: JSONL output files,
 * stats.json, opening a slot's inputs under the on_bad_record policy, and
 * SHA-256 of bytes. The seeded RNG (splitmix64) is common/rng.h.
 */
#ifndef MF_DATAIO_H
#define MF_DATAIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "common/rng.h"
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

/* ---- hashes (the RNG and FNV/mix hashes are in common/rng.h) ---- */
/* SHA-256 (OpenSSL) of p into out[32]. */
void mf_sha256_bytes(const void *p, size_t n, unsigned char out[32]);
/* A record's position in [0, 1) from SHA-256 of its canonical content: what the
 * split kind and the trainers' validation hold-out cut on (seed-independent). */
double mf_split_unit(const void *content, size_t n);

#endif
