/* common/error.c — see error.h. */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mf_err_clear(mf_err *e)
{
    if (!e) return;
    e->code = 0;
    e->file[0] = 0;
    e->line = e->col = 0;
    e->msg[0] = 0;
}

static void vset(mf_err *e, int code, const char *fmt, va_list ap)
{
    e->code = code;
    e->file[0] = 0;
    e->line = e->col = 0;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int mf_err_set(mf_err *e, int code, const char *fmt, ...)
{
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    return code;
}

int mf_err_at(mf_err *e, int code, const char *file, int line, int col, const char *fmt, ...)
{
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    e->col = col;
    return code;
}

int mf_err_errno(mf_err *e, int code, const char *fmt, ...)
{
    int saved = errno;
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(saved));
    return code;
}

int mf_err_wrap(mf_err *e, const char *fmt, ...)
{
    if (!e) return MF_EINTERNAL;
    char prefix[1024], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
    return e->code;
}

const char *mf_err_str(const mf_err *e, char *buf, size_t n)
{
    if (!e || !e->code) {
        snprintf(buf, n, "no error");
    } else if (e->file[0] && e->line > 0 && e->col > 0) {
        snprintf(buf, n, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
    } else if (e->file[0] && e->line > 0) {
        snprintf(buf, n, "%s:%d: %s", e->file, e->line, e->msg);
    } else if (e->file[0]) {
        snprintf(buf, n, "%s: %s", e->file, e->msg);
    } else {
        snprintf(buf, n, "%s", e->msg);
    }
    return buf;
}

const char *mf_err_name(int code)
{
    switch (code) {
    case MF_OK: return "ok";
    case MF_EINVAL: return "invalid input";
    case MF_EIO: return "I/O error";
    case MF_ENOMEM: return "out of memory";
    case MF_ECORRUPT: return "corrupt data";
    case MF_ENOTFOUND: return "not found";
    case MF_EBUSY: return "busy";
    case MF_EUNSUPPORTED: return "unsupported";
    case MF_EINTERRUPTED: return "interrupted";
    case MF_EFAILED: return "failed";
    default: return "internal error";
    }
}
