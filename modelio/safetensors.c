/*
 * modelio/safetensors.c — safetensors reader (mmap + full header validation),
 * dtype conversions and the single-file writer. Sharded checkpoints are in
 * modelio/safetensors_shard.c. Format and rules: modelio/safetensors.h.
 */
#include "modelio/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"

struct mf_safetensors_file {
    const uint8_t *base; /* whole file / buffer */
    size_t len;
    int mapped;
    char *name;
    mf_json *header;
    const mf_json *meta;
    mf_safetensors_tensor *t; /* sorted by name */
    size_t n;
};

/* ---- dtypes ---- */

static const struct { const char *name; size_t size; } dtypes[] = {
    [MF_SAFETENSORS_F32] = {"F32", 4}, [MF_SAFETENSORS_F16] = {"F16", 2}, [MF_SAFETENSORS_BF16] = {"BF16", 2},
    [MF_SAFETENSORS_I64] = {"I64", 8}, [MF_SAFETENSORS_I32] = {"I32", 4},
};

const char *mf_safetensors_dtype_name(mf_safetensors_dtype dt) { return dtypes[dt].name; }
size_t mf_safetensors_dtype_size(mf_safetensors_dtype dt) { return dtypes[dt].size; }

int mf_safetensors_dtype_parse(mf_safetensors_dtype *out, const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, name)) { *out = (mf_safetensors_dtype)i; return 0; }
    return MF_EINVAL;
}

/* python safetensors orders tensors by dtype (larger alignment first), then name. */
static int dtype_rank(mf_safetensors_dtype dt)
{
    switch (dt) {
    case MF_SAFETENSORS_I64: return 0;
    case MF_SAFETENSORS_F32: return 1;
    case MF_SAFETENSORS_I32: return 2;
    case MF_SAFETENSORS_BF16: return 3;
    case MF_SAFETENSORS_F16: return 4;
    }
    return 5;
}

/* ---- scalar conversions ---- */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t mf_safetensors_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN, as torch */
    u += 0x7fffu + ((u >> 16) & 1u);                     /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float mf_safetensors_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* IEEE half conversions after Maratyszcza's FP16 library (what torch uses). */
uint16_t mf_safetensors_f32_to_f16(float f)
{
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    float base = (__builtin_fabsf(f) * scale_to_inf) * scale_to_zero;
    uint32_t w = f2u(f), shl1_w = w + w, sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xff000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    uint32_t bits = f2u(base);
    uint32_t exp_bits = (bits >> 13) & 0x00007c00u, mant_bits = bits & 0x00000fffu;
    uint32_t nonsign = exp_bits + mant_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign));
}

float mf_safetensors_f16_to_f32(uint16_t h)
{
    uint32_t w = (uint32_t)h << 16, sign = w & 0x80000000u, two_w = w + w;
    float normalized = u2f((two_w >> 4) + (0xe0u << 23)) * 0x1.0p-112f;
    float denormalized = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
    uint32_t r = sign | (two_w < (1u << 27) ? f2u(denormalized) : f2u(normalized));
    return u2f(r);
}

int mf_safetensors_tensor_to_f32(const mf_safetensors_tensor *t, float *dst, size_t n, mf_err *err)
{
    if (n != t->numel)
        return mf_err_set(err, MF_EINVAL, "tensor '%s': asked for %zu values, it has %llu", t->name, n,
                          (unsigned long long)t->numel);
    const uint8_t *p = t->data;
    long long nn = (long long)n;
    /* big checkpoints: convert in parallel (pages of the mapping fault in on several cores) */
    switch (t->dtype) {
    case MF_SAFETENSORS_F32: memcpy(dst, p, n * 4); break;
    case MF_SAFETENSORS_BF16:
#pragma omp parallel for schedule(static) if (nn > 65536)
        for (long long i = 0; i < nn; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = mf_safetensors_bf16_to_f32(h); }
        break;
    case MF_SAFETENSORS_F16:
#pragma omp parallel for schedule(static) if (nn > 65536)
        for (long long i = 0; i < nn; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = mf_safetensors_f16_to_f32(h); }
        break;
    case MF_SAFETENSORS_I64:
        for (size_t i = 0; i < n; i++) { int64_t v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; }
        break;
    case MF_SAFETENSORS_I32:
        for (size_t i = 0; i < n; i++) { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = (float)v; }
        break;
    }
    return 0;
}

int mf_safetensors_tensor_f32_dup(float **out, const mf_safetensors_tensor *t, mf_err *err)
{
    *out = NULL;
    float *d = malloc(t->numel ? t->numel * sizeof *d : 1);
    if (!d) return mf_err_set(err, MF_ENOMEM, "out of memory for tensor '%s' (%llu values)", t->name,
                              (unsigned long long)t->numel);
    int rc = mf_safetensors_tensor_to_f32(t, d, t->numel, err);
    if (rc) { free(d); return rc; }
    *out = d;
    return 0;
}

/* ---- parsing ---- */

static int bad(mf_err *err, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(mf_err *err, const char *name, const char *fmt, ...)
{
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mf_err_at(err, MF_ECORRUPT, name, 0, 0, "not a valid safetensors file: %s", msg);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const mf_safetensors_tensor *)a)->name, ((const mf_safetensors_tensor *)b)->name);
}

typedef struct { uint64_t begin, end; size_t i; } span;
static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_entry(mf_safetensors_tensor *t, const char *key, const mf_json *v, uint64_t data_len,
                       const char *name, mf_err *err)
{
    t->name = key;
    if (!v || v->type != MF_JSON_OBJECT)
        return bad(err, name, "tensor '%s': expected an object, found %s", key, v ? mf_json_type_name(v->type) : "nothing");
    const mf_json *dt = mf_json_get(v, "dtype"), *shape = mf_json_get(v, "shape"),
                  *off = mf_json_get(v, "data_offsets");
    if (!dt || dt->type != MF_JSON_STRING) return bad(err, name, "tensor '%s': missing string \"dtype\"", key);
    if (mf_safetensors_dtype_parse(&t->dtype, dt->s))
        return bad(err, name, "tensor '%s': unsupported dtype '%s' (expected F32, BF16, F16, I64 or I32)", key, dt->s);
    if (!shape || shape->type != MF_JSON_ARRAY) return bad(err, name, "tensor '%s': missing array \"shape\"", key);
    if (shape->n > MF_SAFETENSORS_MAX_DIMS)
        return bad(err, name, "tensor '%s': %zu dimensions, at most %d supported", key, shape->n, MF_SAFETENSORS_MAX_DIMS);
    t->ndim = (int)shape->n;
    uint64_t numel = 1;
    for (size_t i = 0; i < shape->n; i++) {
        const mf_json *d = shape->items[i];
        if (d->type != MF_JSON_INT || d->i < 0)
            return bad(err, name, "tensor '%s': shape[%zu] is not a non-negative integer", key, i);
        t->shape[i] = d->i;
        if (__builtin_mul_overflow(numel, (uint64_t)d->i, &numel))
            return bad(err, name, "tensor '%s': shape overflows", key);
    }
    t->numel = numel;
    if (!off || off->type != MF_JSON_ARRAY || off->n != 2 || off->items[0]->type != MF_JSON_INT ||
        off->items[1]->type != MF_JSON_INT || off->items[0]->i < 0 || off->items[1]->i < 0)
        return bad(err, name, "tensor '%s': \"data_offsets\" must be [begin, end] with non-negative integers", key);
    t->begin = (uint64_t)off->items[0]->i;
    t->end = (uint64_t)off->items[1]->i;
    if (t->end < t->begin)
        return bad(err, name, "tensor '%s': data_offsets [%llu, %llu] end before begin", key,
                   (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return bad(err, name, "tensor '%s': data_offsets [%llu, %llu] beyond the data section (%llu bytes)", key,
                   (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_len);
    uint64_t want;
    if (__builtin_mul_overflow(numel, (uint64_t)mf_safetensors_dtype_size(t->dtype), &want) || want != t->end - t->begin)
        return bad(err, name, "tensor '%s': shape and dtype %s need %llu bytes, data_offsets give %llu", key,
                   dt->s, (unsigned long long)(numel * mf_safetensors_dtype_size(t->dtype)),
                   (unsigned long long)(t->end - t->begin));
    t->nbytes = (size_t)want;
    return 0;
}

/* Tensors must tile the data section: no overlap, no hole, nothing left over. */
static int check_tiling(const mf_safetensors_file *f, uint64_t data_len, const char *name, mf_err *err)
{
    span *ord = malloc((f->n ? f->n : 1) * sizeof *ord);
    if (!ord) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n; i++) ord[i] = (span){f->t[i].begin, f->t[i].end, i};
    qsort(ord, f->n, sizeof *ord, cmp_span);
    uint64_t at = 0;
    const char *prev = NULL;
    int rc = 0;
    for (size_t k = 0; k < f->n; k++) {
        const mf_safetensors_tensor *t = &f->t[ord[k].i];
        if (t->begin < at) {
            rc = bad(err, name, "tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)", t->name,
                     (unsigned long long)t->begin, (unsigned long long)t->end, prev, (unsigned long long)at);
            goto out;
        }
        if (t->begin > at) {
            rc = bad(err, name, "hole in the data section: bytes %llu..%llu before tensor '%s' belong to no tensor",
                     (unsigned long long)at, (unsigned long long)t->begin, t->name);
            goto out;
        }
        at = t->end;
        prev = t->name;
    }
    if (at != data_len)
        rc = bad(err, name, "data section is %llu bytes but the tensors cover %llu", (unsigned long long)data_len,
                 (unsigned long long)at);
out:
    free(ord);
    return rc;
}

static int parse_into(mf_safetensors_file *f, mf_err *err)
{
    const char *name = f->name;
    if (f->len < 8) return bad(err, name, "file is %zu bytes, shorter than the 8-byte header length", f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > MF_SAFETENSORS_MAX_HEADER)
        return bad(err, name, "header length %llu exceeds the limit of %llu bytes", (unsigned long long)hlen,
                   MF_SAFETENSORS_MAX_HEADER);
    if (hlen > f->len - 8)
        return bad(err, name, "header length %llu is beyond the end of the file (%zu bytes after the length)",
                   (unsigned long long)hlen, f->len - 8);
    if (hlen < 2) return bad(err, name, "header length %llu is too small for a JSON object", (unsigned long long)hlen);
    mf_err jerr;
    mf_err_clear(&jerr);
    if (mf_json_parse(&f->header, (const char *)f->base + 8, (size_t)hlen, name, &jerr))
        return bad(err, name, "header is not valid JSON: %s (line %d, column %d)", jerr.msg, jerr.line, jerr.col);
    if (f->header->type != MF_JSON_OBJECT)
        return bad(err, name, "header must be a JSON object, found %s", mf_json_type_name(f->header->type));
    uint64_t data_len = f->len - 8 - hlen;
    const mf_json *h = f->header;
    f->t = calloc(h->n ? h->n : 1, sizeof *f->t);
    if (!f->t) return mf_err_set(err, MF_ENOMEM, "out of memory");
    const uint8_t *data = f->base + 8 + hlen;
    for (size_t i = 0; i < h->n; i++) {
        if (!strcmp(h->keys[i], "__metadata__")) {
            const mf_json *m = h->items[i];
            if (m->type != MF_JSON_OBJECT)
                return bad(err, name, "\"__metadata__\" must be an object of strings, found %s", mf_json_type_name(m->type));
            for (size_t k = 0; k < m->n; k++)
                if (m->items[k]->type != MF_JSON_STRING)
                    return bad(err, name, "\"__metadata__\".%s must be a string, found %s", m->keys[k],
                               mf_json_type_name(m->items[k]->type));
            f->meta = m;
            continue;
        }
        mf_safetensors_tensor *t = &f->t[f->n];
        int rc = parse_entry(t, h->keys[i], h->items[i], data_len, name, err);
        if (rc) return rc;
        t->data = data + t->begin;
        f->n++;
    }
    int rc;
    if ((rc = check_tiling(f, data_len, name, err))) return rc;
    qsort(f->t, f->n, sizeof *f->t, cmp_tensor_name);
    /* JSON rejects duplicate keys, but names with an embedded NUL could still compare equal here */
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->t[i].name, f->t[i - 1].name))
            return bad(err, name, "two tensors are named '%s' (names may not contain NUL)", f->t[i].name);
    return 0;
}

static mf_safetensors_file *file_new(const char *name, mf_err *err)
{
    mf_safetensors_file *f = calloc(1, sizeof *f);
    if (f) f->name = strdup(name ? name : "(buffer)");
    if (!f || !f->name) { free(f); mf_err_set(err, MF_ENOMEM, "out of memory"); return NULL; }
    return f;
}

int mf_safetensors_parse(mf_safetensors_file **out, const void *buf, size_t len, const char *name, mf_err *err)
{
    *out = NULL;
    mf_safetensors_file *f = file_new(name, err);
    if (!f) return MF_ENOMEM;
    f->base = buf;
    f->len = len;
    int rc = parse_into(f, err);
    if (rc) { mf_safetensors_close(f); return rc; }
    *out = f;
    return 0;
}

int mf_safetensors_open(mf_safetensors_file **out, const char *path, mf_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mf_err_errno(err, errno == ENOENT ? MF_ENOTFOUND : MF_EIO, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { int rc = mf_err_errno(err, MF_EIO, "cannot stat %s", path); close(fd); return rc; }
    if (!S_ISREG(st.st_mode)) { close(fd); return mf_err_set(err, MF_EINVAL, "%s: not a regular file", path); }
    mf_safetensors_file *f = file_new(path, err);
    if (!f) { close(fd); return MF_ENOMEM; }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int rc = mf_err_errno(err, MF_EIO, "cannot map %s", path);
            close(fd); mf_safetensors_close(f);
            return rc;
        }
        f->base = m;
        f->mapped = 1;
    }
    close(fd);
    int rc = parse_into(f, err);
    if (rc) { mf_safetensors_close(f); return rc; }
    *out = f;
    return 0;
}

void mf_safetensors_close(mf_safetensors_file *f)
{
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->len);
    mf_json_free(f->header);
    free(f->t);
    free(f->name);
    free(f);
}

size_t mf_safetensors_count(const mf_safetensors_file *f) { return f->n; }
const mf_safetensors_tensor *mf_safetensors_at(const mf_safetensors_file *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }
const mf_json *mf_safetensors_metadata(const mf_safetensors_file *f) { return f->meta; }

const mf_safetensors_tensor *mf_safetensors_find(const mf_safetensors_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[mid].name, name);
        if (!c) return &f->t[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* ---- writing ---- */

typedef struct { int rank; const char *name; size_t i; } worder;
static int cmp_worder(const void *a, const void *b)
{
    const worder *x = a, *y = b;
    if (x->rank != y->rank) return x->rank - y->rank;
    return strcmp(x->name, y->name);
}
static int cmp_worder_name(const void *a, const void *b)
{
    return strcmp(((const worder *)a)->name, ((const worder *)b)->name);
}

static int out_nbytes(const mf_safetensors_out *t, uint64_t *nb, mf_err *err)
{
    if (t->ndim < 0 || t->ndim > MF_SAFETENSORS_MAX_DIMS)
        return mf_err_set(err, MF_EINVAL, "tensor '%s': %d dimensions, at most %d supported", t->name, t->ndim, MF_SAFETENSORS_MAX_DIMS);
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return mf_err_set(err, MF_EINVAL, "tensor '%s': invalid shape", t->name);
    }
    if (__builtin_mul_overflow(n, (uint64_t)mf_safetensors_dtype_size(t->dtype), nb))
        return mf_err_set(err, MF_EINVAL, "tensor '%s': too large", t->name);
    return 0;
}

static int write_all(int fd, const void *p, size_t n, const char *path, mf_err *err)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mf_err_errno(err, MF_EIO, "cannot write %s", path);
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_tensor_data(int fd, const mf_safetensors_out *t, uint64_t nbytes, const char *path, mf_err *err)
{
    if (t->raw || (t->dtype == MF_SAFETENSORS_F32 && t->f32))
        return write_all(fd, t->raw ? t->raw : (const void *)t->f32, (size_t)nbytes, path, err);
    /* f32 -> bf16/f16 in chunks */
    enum { CH = 16384 };
    uint16_t *tmp = malloc(CH * sizeof *tmp);
    if (!tmp) return mf_err_set(err, MF_ENOMEM, "out of memory");
    size_t n = (size_t)(nbytes / 2);
    int rc = 0;
    for (size_t at = 0; at < n; at += CH) {
        size_t m = n - at < CH ? n - at : CH;
        for (size_t i = 0; i < m; i++)
            tmp[i] = t->dtype == MF_SAFETENSORS_BF16 ? mf_safetensors_f32_to_bf16(t->f32[at + i]) : mf_safetensors_f32_to_f16(t->f32[at + i]);
        if ((rc = write_all(fd, tmp, m * 2, path, err))) goto out;
    }
out:
    free(tmp);
    return rc;
}

int mf_safetensors_write(const char *path, const mf_safetensors_out *tensors, size_t n, const mf_json *metadata, mf_err *err)
{
    if (metadata && metadata->type != MF_JSON_OBJECT)
        return mf_err_set(err, MF_EINVAL, "%s: safetensors metadata must be an object of strings", path);
    for (size_t k = 0; metadata && k < metadata->n; k++)
        if (metadata->items[k]->type != MF_JSON_STRING)
            return mf_err_set(err, MF_EINVAL, "%s: safetensors metadata '%s' must be a string", path, metadata->keys[k]);
    worder *ord = malloc((n ? n : 1) * sizeof *ord);
    uint64_t *nb = malloc((n ? n : 1) * sizeof *nb);
    mf_buf h = MF_BUF_INIT;
    char *tmp = NULL;
    int fd = -1, rc = 0;
    if (!ord || !nb) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0; i < n; i++) {
        const mf_safetensors_out *t = &tensors[i];
        if (!t->name || !strcmp(t->name, "__metadata__")) {
            rc = mf_err_set(err, MF_EINVAL, "%s: invalid tensor name", path);
            goto out;
        }
        if (!t->raw && !(t->f32 && (t->dtype == MF_SAFETENSORS_F32 || t->dtype == MF_SAFETENSORS_BF16 || t->dtype == MF_SAFETENSORS_F16))) {
            rc = mf_err_set(err, MF_EINVAL, "tensor '%s': no data for dtype %s (give f32 for float dtypes, raw otherwise)",
                            t->name, mf_safetensors_dtype_name(t->dtype));
            goto out;
        }
        if ((rc = out_nbytes(t, &nb[i], err))) goto out;
        ord[i] = (worder){0, t->name, i};
    }
    qsort(ord, n, sizeof *ord, cmp_worder_name);
    for (size_t k = 1; k < n; k++)
        if (!strcmp(ord[k].name, ord[k - 1].name)) {
            rc = mf_err_set(err, MF_EINVAL, "%s: tensor '%s' given twice", path, ord[k].name);
            goto out;
        }
    for (size_t k = 0; k < n; k++) ord[k].rank = dtype_rank(tensors[ord[k].i].dtype);
    qsort(ord, n, sizeof *ord, cmp_worder);
    /* header, laid out exactly as python safetensors does */
    mf_buf_putc(&h, '{');
    int first = 1;
    if (metadata && metadata->n) {
        mf_buf_puts(&h, "\"__metadata__\":");
        mf_json_write(&h, metadata, MF_JSON_SORTED);
        first = 0;
    }
    uint64_t at = 0;
    for (size_t k = 0; k < n; k++) {
        const mf_safetensors_out *t = &tensors[ord[k].i];
        if (!first) mf_buf_putc(&h, ',');
        first = 0;
        mf_json_write_str(&h, t->name, strlen(t->name));
        mf_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", mf_safetensors_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) mf_buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        mf_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                      (unsigned long long)(at + nb[ord[k].i]));
        at += nb[ord[k].i];
    }
    mf_buf_putc(&h, '}');
    while (h.len % 8) mf_buf_putc(&h, ' ');
    if (!mf_buf_ok(&h)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    size_t pn = strlen(path);
    tmp = malloc(pn + 16);
    if (!tmp) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    snprintf(tmp, pn + 16, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) { rc = mf_err_errno(err, MF_EIO, "cannot create a temporary file next to %s", path); free(tmp); tmp = NULL; goto out; }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    if ((rc = write_all(fd, len8, 8, tmp, err)) || (rc = write_all(fd, h.data, h.len, tmp, err))) goto out;
    for (size_t k = 0; k < n; k++)
        if ((rc = write_tensor_data(fd, &tensors[ord[k].i], nb[ord[k].i], tmp, err))) goto out;
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot sync %s", tmp); goto out; }
    if (close(fd) < 0) { fd = -1; rc = mf_err_errno(err, MF_EIO, "cannot close %s", tmp); goto out; }
    fd = -1;
    if (rename(tmp, path) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot rename %s to %s", tmp, path); goto out; }
    free(tmp);
    tmp = NULL;
    {
        char *dir = mf_path_dirname(path);
        rc = dir ? mf_fsync_dir(dir, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
        free(dir);
    }
out:
    if (fd >= 0) close(fd);
    if (tmp) { unlink(tmp); free(tmp); }
    mf_buf_free(&h);
    free(ord);
    free(nb);
    return rc;
}
