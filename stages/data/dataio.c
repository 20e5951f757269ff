/* stages/data/dataio.c — output files, stats, input opening, RNG and hashes (see dataio.h). */
#include "stages/data/dataio.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"

int mf_data_out_open(mf_dout *o, const char *dir, const char *name, mf_err *err)
{
    memset(o, 0, sizeof *o);
    int rc = mf_mkdir_p(dir, 0755, err);
    if (rc) return rc;
    if (!(o->path = mf_path_join(dir, name))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    if (!(o->fp = fopen(o->path, "wb"))) {
        rc = mf_err_errno(err, MF_EIO, "cannot create '%s'", o->path);
        free(o->path);
        o->path = NULL;
        return rc;
    }
    return 0;
}

int mf_data_out_line(mf_dout *o, const char *line, size_t n, mf_err *err)
{
    if (fwrite(line, 1, n, o->fp) != n || fputc('\n', o->fp) == EOF)
        return mf_err_errno(err, MF_EIO, "cannot write '%s'", o->path);
    o->rows++;
    return 0;
}

int mf_data_out_json(mf_dout *o, const mf_json *v, mf_err *err)
{
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, v, MF_JSON_SORTED);
    int rc = mf_buf_ok(&b) ? mf_data_out_line(o, mf_buf_cstr(&b), b.len, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_buf_free(&b);
    return rc;
}

int mf_data_out_close(mf_dout *o, mf_err *err)
{
    int rc = 0;
    if (o->fp) {
        if (fflush(o->fp) || fsync(fileno(o->fp))) rc = mf_err_errno(err, MF_EIO, "cannot write '%s'", o->path);
        if (fclose(o->fp) && !rc) rc = mf_err_errno(err, MF_EIO, "cannot close '%s'", o->path);
        o->fp = NULL;
    }
    free(o->path);
    o->path = NULL;
    return rc;
}

int mf_stats_write(const char *out_dir, mf_json *stats, mf_err *err)
{
    if (!stats) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = mf_json_save(out_dir, "stats.json", stats, err);
    mf_json_free(stats);
    return rc;
}

void mf_stats_int(mf_json *o, const char *key, long long v)
{
    if (o) mf_json_set(o, key, mf_json_new_int(v));
}
void mf_stats_str(mf_json *o, const char *key, const char *v)
{
    if (o) mf_json_set(o, key, mf_json_new_str(v ? v : ""));
}

int mf_data_open(const mf_stage_ctx *ctx, const char *slot, mf_rd **out)
{
    const mf_stage_input *in = mf_stage_input_get(ctx, slot);
    if (!in || !in->n) return mf_err_set(ctx->err, MF_EINVAL, "stage '%s': input '%s' is missing", ctx->stage ? ctx->stage : "?", slot);
    int skip = mf_reader_policy_skip(mf_stage_param_str(ctx, "on_bad_record", "fail"));
    return mf_reader_open_many(out, in->paths, in->n, skip, ctx->err);
}

void mf_data_tick(const mf_stage_ctx *ctx, const mf_rd *rd, const char *what)
{
    long long n = mf_reader_get_stats(rd)->lines;
    if (n % 10000 == 0) mf_stage_progress(ctx, n, 0, NAN, NAN, NAN, what);
}

int mf_data_next(const mf_stage_ctx *ctx, mf_rd *rd, const char *what, const char **line, size_t *len, mf_json **rec,
                 mf_err *err)
{
    for (;;) {
        *rec = NULL;
        int rc = mf_reader_next_line(rd, line, len, err);
        if (rc <= 0) return rc;
        mf_data_tick(ctx, rd, what);
        rc = mf_reader_parse_current(rd, rec, err);
        if (rc) return rc; /* 1: a record; < 0: an error (0: a bad line skipped) */
    }
}

void mf_sha256_bytes(const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL)) memset(out, 0, 32);
}

double mf_split_unit(const void *content, size_t n)
{
    unsigned char d[32];
    mf_sha256_bytes(content, n, d);
    uint64_t x = 0;
    for (int k = 0; k < 8; k++) x = (x << 8) | d[k];
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}
