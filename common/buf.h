/*
 * common/buf.h — a growable byte/string buffer.
 *
 * Errors are sticky: after a failed allocation every later append is a no-op
 * and mf_buf_ok() is false, so a caller builds a whole string and checks once.
 * data is always NUL-terminated when len > 0 or after mf_buf_cstr().
 */
#ifndef MF_BUF_H
#define MF_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mf_buf {
    char *data;
    size_t len, cap;
    int oom;
} mf_buf;

#define MF_BUF_INIT {0, 0, 0, 0}

int mf_buf_reserve(mf_buf *b, size_t extra);
int mf_buf_append(mf_buf *b, const void *p, size_t n);
int mf_buf_puts(mf_buf *b, const char *s);
int mf_buf_putc(mf_buf *b, char c);
int mf_buf_printf(mf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mf_buf_vprintf(mf_buf *b, const char *fmt, va_list ap);
/* Always returns a valid C string ("" for an empty buffer). */
const char *mf_buf_cstr(mf_buf *b);
/* Hand the heap string to the caller (who frees it); the buffer is reset. */
char *mf_buf_steal(mf_buf *b);
void mf_buf_reset(mf_buf *b);
void mf_buf_free(mf_buf *b);
static inline int mf_buf_ok(const mf_buf *b) { return !b->oom; }

#endif
