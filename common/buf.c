/* common/buf.c — see buf.h. */
#include "common/buf.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mf_buf_reserve(mf_buf *b, size_t extra)
{
    if (b->oom) return MF_ENOMEM;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) { b->oom = 1; return MF_ENOMEM; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) { b->oom = 1; return MF_ENOMEM; }
    b->data = p;
    b->cap = cap;
    return 0;
}

int mf_buf_append(mf_buf *b, const void *p, size_t n)
{
    if (mf_buf_reserve(b, n)) return MF_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int mf_buf_puts(mf_buf *b, const char *s) { return mf_buf_append(b, s, strlen(s)); }
int mf_buf_putc(mf_buf *b, char c) { return mf_buf_append(b, &c, 1); }

int mf_buf_vprintf(mf_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) { b->oom = 1; return MF_ENOMEM; }
    if (mf_buf_reserve(b, (size_t)n)) return MF_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int mf_buf_printf(mf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = mf_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

const char *mf_buf_cstr(mf_buf *b)
{
    if (!b->data && mf_buf_reserve(b, 0)) return "";
    if (!b->data) return "";
    b->data[b->len] = 0;
    return b->data;
}

char *mf_buf_steal(mf_buf *b)
{
    if (!b->data) mf_buf_reserve(b, 0);
    char *p = b->data;
    if (p) p[b->len] = 0;
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
    return p;
}

void mf_buf_reset(mf_buf *b) { b->len = 0; if (b->data) b->data[0] = 0; }

void mf_buf_free(mf_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
