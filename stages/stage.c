/* stages/stage.c — helpers shared by stage run functions (see stage.h). */
#include "stages/stage.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const mf_stage_input *mf_stage_input_get(const mf_stage_ctx *ctx, const char *slot)
{
    for (size_t k = 0; k < ctx->n_inputs; k++)
        if (!strcmp(ctx->inputs[k].slot, slot)) return &ctx->inputs[k];
    return NULL;
}

const char *mf_stage_input_path(const mf_stage_ctx *ctx, const char *slot)
{
    const mf_stage_input *in = mf_stage_input_get(ctx, slot);
    return in && in->n ? in->paths[0] : NULL;
}

const mf_json *mf_stage_param(const mf_stage_ctx *ctx, const char *dotted)
{
    const mf_json *v = mf_json_get(ctx->params, dotted); /* flat "lora.rank" key */
    return v ? v : mf_json_get_path(ctx->params, dotted); /* or nested {lora: {rank}} */
}

double mf_stage_param_num(const mf_stage_ctx *ctx, const char *d, double def) { return mf_json_num(mf_stage_param(ctx, d), def); }
long long mf_stage_param_int(const mf_stage_ctx *ctx, const char *d, long long def) { return (long long)mf_json_int(mf_stage_param(ctx, d), def); }
const char *mf_stage_param_str(const mf_stage_ctx *ctx, const char *d, const char *def) { return mf_json_str(mf_stage_param(ctx, d), def); }
int mf_stage_param_bool(const mf_stage_ctx *ctx, const char *d, int def) { return mf_json_bool(mf_stage_param(ctx, d), def); }

static void put_num(mf_buf *b, const char *key, double v)
{
    mf_buf_printf(b, ",\"%s\":", key);
    if (isnan(v)) mf_buf_puts(b, "null");
    else mf_json_write_double(b, v);
}

void mf_stage_log(const mf_stage_ctx *ctx, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char self[600];
    snprintf(self, sizeof self, "stage '%s'", ctx && ctx->stage ? ctx->stage : "?");
    if (strstr(line, self)) fprintf(stderr, "medflow: %s\n", line); /* never "stage 'X': stage 'X': ..." */
    else fprintf(stderr, "medflow: %s: %s\n", self, line);
    fflush(stderr);
}

static void write_all(int fd, const mf_buf *b)
{
    const char *p = b->data;
    size_t left = b->len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
}

void mf_stage_warn(const mf_stage_ctx *ctx, const char *fmt, ...)
{
    if (!ctx || ctx->progress_fd < 0) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "{\"warning\":");
    mf_json_write_str(&b, msg, strlen(msg));
    mf_buf_puts(&b, "}\n");
    if (mf_buf_ok(&b)) write_all(ctx->progress_fd, &b);
    mf_buf_free(&b);
}

void mf_stage_progress(const mf_stage_ctx *ctx, long long step, long long total, double loss,
                       double tokens_per_s, double eta_s, const char *message)
{
    if (!ctx || ctx->progress_fd < 0) return;
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "{\"step\":%lld,\"total\":%lld", step, total);
    put_num(&b, "loss", loss);
    put_num(&b, "tokens_per_s", tokens_per_s);
    put_num(&b, "eta", eta_s);
    if (message) {
        mf_buf_puts(&b, ",\"message\":");
        mf_json_write_str(&b, message, strlen(message));
    }
    mf_buf_puts(&b, "}\n");
    if (mf_buf_ok(&b)) write_all(ctx->progress_fd, &b);
    mf_buf_free(&b);
}

int mf_stage_stop_requested(const mf_stage_ctx *ctx, long step)
{
    return ctx->stop_requested ? ctx->stop_requested(ctx, step) : 0;
}
