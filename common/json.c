/*
 * common/json.c — see json.h.
 *
 * The parser is a recursive-descent reader over a byte range with an explicit
 * depth bound; it tracks line and column for every node and for errors.
 */
#include "common/json.h"
#include "common/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 256

/* ---------- construction ---------- */

static mf_json *new_node(mf_json_type t)
{
    mf_json *v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

mf_json *mf_json_new_null(void) { return new_node(MF_JSON_NULL); }
mf_json *mf_json_new_bool(int b) { mf_json *v = new_node(MF_JSON_BOOL); if (v) v->b = !!b; return v; }
mf_json *mf_json_new_int(int64_t i) { mf_json *v = new_node(MF_JSON_INT); if (v) v->i = i; return v; }
mf_json *mf_json_new_float(double f) { mf_json *v = new_node(MF_JSON_FLOAT); if (v) v->f = f; return v; }
mf_json *mf_json_new_array(void) { return new_node(MF_JSON_ARRAY); }
mf_json *mf_json_new_object(void) { return new_node(MF_JSON_OBJECT); }

mf_json *mf_json_new_strn(const char *s, size_t n)
{
    mf_json *v = new_node(MF_JSON_STRING);
    if (!v) return NULL;
    v->s = malloc(n + 1);
    if (!v->s) { free(v); return NULL; }
    if (n) memcpy(v->s, s, n);
    v->s[n] = 0;
    v->slen = n;
    return v;
}

mf_json *mf_json_new_str(const char *s) { return mf_json_new_strn(s, strlen(s)); }

void mf_json_free(mf_json *v)
{
    if (!v) return;
    for (size_t k = 0; k < v->n; k++) {
        mf_json_free(v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_line);
    free(v->key_col);
    free(v->s);
    free(v);
}

static int grow(mf_json *c)
{
    if (c->n < c->cap) return 0;
    size_t cap = c->cap ? c->cap * 2 : 4;
    mf_json **items = realloc(c->items, cap * sizeof *items);
    if (!items) return MF_ENOMEM;
    c->items = items;
    if (c->type == MF_JSON_OBJECT) {
        char **keys = realloc(c->keys, cap * sizeof *keys);
        if (!keys) return MF_ENOMEM;
        c->keys = keys;
        int *kl = realloc(c->key_line, cap * sizeof *kl);
        if (!kl) return MF_ENOMEM;
        c->key_line = kl;
        int *kc = realloc(c->key_col, cap * sizeof *kc);
        if (!kc) return MF_ENOMEM;
        c->key_col = kc;
    }
    c->cap = cap;
    return 0;
}

int mf_json_push(mf_json *arr, mf_json *val)
{
    if (!arr || !val || arr->type != MF_JSON_ARRAY || grow(arr)) { mf_json_free(val); return MF_ENOMEM; }
    arr->items[arr->n++] = val;
    return 0;
}

int mf_json_key_index(const mf_json *obj, const char *key)
{
    if (!obj || obj->type != MF_JSON_OBJECT) return -1;
    for (size_t k = 0; k < obj->n; k++)
        if (strcmp(obj->keys[k], key) == 0) return (int)k;
    return -1;
}

/* key: val as the object's last member; val is the object's, also on failure. */
static int append_member(mf_json *obj, const char *key, mf_json *val, int line, int col)
{
    char *k = strdup(key);
    if (!k || grow(obj)) {
        free(k);
        mf_json_free(val);
        return MF_ENOMEM;
    }
    obj->keys[obj->n] = k;
    obj->key_line[obj->n] = line;
    obj->key_col[obj->n] = col;
    obj->items[obj->n++] = val;
    return 0;
}

int mf_json_append(mf_json *obj, const char *key, mf_json *val, int line, int col)
{
    if (!obj || !val || obj->type != MF_JSON_OBJECT) { mf_json_free(val); return MF_ENOMEM; }
    return append_member(obj, key, val, line, col);
}

static int set_at(mf_json *obj, const char *key, mf_json *val, int line, int col)
{
    if (!obj || !val || obj->type != MF_JSON_OBJECT) { mf_json_free(val); return MF_ENOMEM; }
    int idx = line ? -1 : mf_json_key_index(obj, key); /* line != 0: from the parser, known new */
    if (idx >= 0) {
        mf_json_free(obj->items[idx]);
        obj->items[idx] = val;
        return 0;
    }
    return append_member(obj, key, val, line, col);
}

int mf_json_set(mf_json *obj, const char *key, mf_json *val) { return set_at(obj, key, val, 0, 0); }

int mf_json_del(mf_json *obj, const char *key)
{
    int idx = mf_json_key_index(obj, key);
    if (idx < 0) return 0;
    mf_json_free(obj->items[idx]);
    free(obj->keys[idx]);
    for (size_t k = (size_t)idx + 1; k < obj->n; k++) {
        obj->items[k - 1] = obj->items[k];
        obj->keys[k - 1] = obj->keys[k];
        obj->key_line[k - 1] = obj->key_line[k];
        obj->key_col[k - 1] = obj->key_col[k];
    }
    obj->n--;
    return 1;
}

mf_json *mf_json_clone(const mf_json *v)
{
    if (!v) return NULL;
    mf_json *c;
    switch (v->type) {
    case MF_JSON_STRING: c = mf_json_new_strn(v->s, v->slen); break;
    default: c = new_node(v->type); break;
    }
    if (!c) return NULL;
    c->line = v->line;
    c->col = v->col;
    c->b = v->b;
    c->i = v->i;
    c->f = v->f;
    for (size_t k = 0; k < v->n; k++) {
        mf_json *item = mf_json_clone(v->items[k]);
        int rc = v->type == MF_JSON_OBJECT
                     ? set_at(c, v->keys[k], item, v->key_line[k], v->key_col[k])
                     : mf_json_push(c, item);
        if (!item || rc) { mf_json_free(c); return NULL; }
    }
    return c;
}

/* ---------- lookups ---------- */

mf_json *mf_json_get(const mf_json *obj, const char *key)
{
    int idx = mf_json_key_index(obj, key);
    return idx < 0 ? NULL : obj->items[idx];
}

mf_json *mf_json_get_path(const mf_json *obj, const char *dotted)
{
    char part[256];
    const char *p = dotted;
    const mf_json *cur = obj;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        cur = mf_json_get(cur, part);
        p += n + (dot ? 1 : 0);
        if (!dot) break;
    }
    return (mf_json *)cur;
}

const char *mf_json_str(const mf_json *v, const char *def)
{
    return v && v->type == MF_JSON_STRING ? v->s : def;
}

int mf_json_is_num(const mf_json *v) { return v && (v->type == MF_JSON_INT || v->type == MF_JSON_FLOAT); }

double mf_json_num(const mf_json *v, double def)
{
    if (!v) return def;
    if (v->type == MF_JSON_INT) return (double)v->i;
    if (v->type == MF_JSON_FLOAT) return v->f;
    return def;
}

int64_t mf_json_int(const mf_json *v, int64_t def)
{
    if (!v) return def;
    if (v->type == MF_JSON_INT) return v->i;
    if (v->type == MF_JSON_FLOAT && v->f == floor(v->f) && fabs(v->f) < 9.0e18) return (int64_t)v->f;
    return def;
}

int mf_json_bool(const mf_json *v, int def) { return v && v->type == MF_JSON_BOOL ? v->b : def; }

const char *mf_json_get_str(const mf_json *o, const char *k, const char *def) { return mf_json_str(mf_json_get(o, k), def); }
double mf_json_get_num(const mf_json *o, const char *k, double def) { return mf_json_num(mf_json_get(o, k), def); }
int64_t mf_json_get_int(const mf_json *o, const char *k, int64_t def) { return mf_json_int(mf_json_get(o, k), def); }

const char *mf_json_type_name(mf_json_type t)
{
    switch (t) {
    case MF_JSON_NULL: return "null";
    case MF_JSON_BOOL: return "boolean";
    case MF_JSON_INT: return "integer";
    case MF_JSON_FLOAT: return "number";
    case MF_JSON_STRING: return "string";
    case MF_JSON_ARRAY: return "list";
    case MF_JSON_OBJECT: return "mapping";
    }
    return "?";
}

int mf_json_equal(const mf_json *a, const mf_json *b)
{
    if (!a || !b) return a == b;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MF_JSON_NULL: return 1;
    case MF_JSON_BOOL: return a->b == b->b;
    case MF_JSON_INT: return a->i == b->i;
    case MF_JSON_FLOAT: return a->f == b->f || (isnan(a->f) && isnan(b->f));
    case MF_JSON_STRING: return a->slen == b->slen && memcmp(a->s, b->s, a->slen) == 0;
    case MF_JSON_ARRAY:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++)
            if (!mf_json_equal(a->items[k], b->items[k])) return 0;
        return 1;
    case MF_JSON_OBJECT:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++)
            if (!mf_json_equal(a->items[k], mf_json_get(b, a->keys[k]))) return 0;
        return 1;
    }
    return 0;
}

/* ---------- UTF-8 ---------- */

size_t mf_utf8_invalid_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return i;
        if (i + len > n) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return (size_t)-1;
}

/* ---------- parser ---------- */

typedef struct {
    const char *p, *end, *line_start;
    int line;
    const char *name;
    mf_err *err;
} parser;

static int col_of(const parser *ps, const char *at) { return (int)(at - ps->line_start) + 1; }

static int perr(parser *ps, const char *at, const char *msg)
{
    return mf_err_at(ps->err, MF_EINVAL, ps->name, ps->line, col_of(ps, at), "invalid JSON: %s", msg);
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '\n') { ps->line++; ps->p++; ps->line_start = ps->p; }
        else if (c == ' ' || c == '\t' || c == '\r') ps->p++;
        else break;
    }
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(mf_buf *b, unsigned cp)
{
    char u[4];
    if (cp < 0x80) { u[0] = (char)cp; mf_buf_append(b, u, 1); }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); mf_buf_append(b, u, 2); }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)); mf_buf_append(b, u, 3);
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F));
        mf_buf_append(b, u, 4);
    }
}

/* Parses a string starting at the opening quote into b. */
static int parse_string(parser *ps, mf_buf *b)
{
    const char *start = ps->p;
    ps->p++; /* opening quote */
    for (;;) {
        const char *run = ps->p;
        while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && (unsigned char)*ps->p >= 0x20) ps->p++;
        size_t bad = mf_utf8_invalid_at(run, (size_t)(ps->p - run));
        if (bad != (size_t)-1) return perr(ps, run + bad, "invalid UTF-8 byte in string");
        mf_buf_append(b, run, (size_t)(ps->p - run));
        if (ps->p >= ps->end) return perr(ps, start, "unterminated string");
        char c = *ps->p;
        if (c == '"') { ps->p++; break; }
        if ((unsigned char)c < 0x20) return perr(ps, ps->p, "control character in string (escape it)");
        /* escape */
        if (ps->p + 1 >= ps->end) return perr(ps, ps->p, "unterminated escape");
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': mf_buf_putc(b, '"'); break;
        case '\\': mf_buf_putc(b, '\\'); break;
        case '/': mf_buf_putc(b, '/'); break;
        case 'b': mf_buf_putc(b, '\b'); break;
        case 'f': mf_buf_putc(b, '\f'); break;
        case 'n': mf_buf_putc(b, '\n'); break;
        case 'r': mf_buf_putc(b, '\r'); break;
        case 't': mf_buf_putc(b, '\t'); break;
        case 'u': {
            unsigned cp;
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp)) return perr(ps, ps->p - 2, "bad \\u escape");
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || hex4(ps->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return perr(ps, ps->p - 6, "unpaired UTF-16 surrogate in \\u escape");
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return perr(ps, ps->p - 6, "unpaired UTF-16 surrogate in \\u escape");
            }
            put_utf8(b, cp);
            break;
        }
        default: return perr(ps, ps->p - 2, "unknown escape");
        }
    }
    return mf_buf_ok(b) ? 0 : mf_err_set(ps->err, MF_ENOMEM, "out of memory parsing JSON");
}

static int parse_value(parser *ps, mf_json **out, int depth);

static int parse_number(parser *ps, mf_json **out)
{
    const char *s = ps->p;
    const char *q = s;
    int is_float = 0;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !(*q >= '0' && *q <= '9')) return perr(ps, s, "unexpected character");
    if (*q == '0') q++;
    else while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        is_float = 1;
        q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) return perr(ps, q, "digit expected after '.'");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_float = 1;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) return perr(ps, q, "digit expected in exponent");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[64];
    size_t n = (size_t)(q - s);
    char *heap = NULL;
    char *num = tmp;
    if (n >= sizeof tmp) {
        heap = malloc(n + 1);
        if (!heap) return mf_err_set(ps->err, MF_ENOMEM, "out of memory");
        num = heap;
    }
    memcpy(num, s, n);
    num[n] = 0;
    mf_json *v = NULL;
    if (!is_float) {
        errno = 0;
        long long i = strtoll(num, NULL, 10);
        if (errno == ERANGE) is_float = 1;
        else v = mf_json_new_int(i);
    }
    if (is_float) v = mf_json_new_float(strtod(num, NULL));
    free(heap);
    if (!v) return mf_err_set(ps->err, MF_ENOMEM, "out of memory");
    v->line = ps->line;
    v->col = col_of(ps, s);
    ps->p = q;
    *out = v;
    return 0;
}

/* Keys of an object being parsed, hashed, so duplicate detection stays O(1)
 * per key on large objects (a tokenizer.json vocab has 100k+ keys). */
typedef struct { uint32_t *slot; size_t cap, n; } keyset; /* slot: key index + 1, 0 = empty */

static uint32_t key_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* 1 if key is already in obj, 0 if not (and it will be obj->keys[obj->n]), -1 on OOM. */
static int keyset_add(keyset *ks, const mf_json *obj, const char *key)
{
    if ((ks->n + 1) * 2 > ks->cap) {
        size_t nc = ks->cap ? ks->cap * 2 : 16;
        uint32_t *ns = calloc(nc, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < ks->cap; i++) {
            if (!ks->slot[i]) continue;
            size_t j = key_hash(obj->keys[ks->slot[i] - 1]) & (nc - 1);
            while (ns[j]) j = (j + 1) & (nc - 1);
            ns[j] = ks->slot[i];
        }
        free(ks->slot);
        ks->slot = ns;
        ks->cap = nc;
    }
    size_t j = key_hash(key) & (ks->cap - 1);
    while (ks->slot[j]) {
        if (!strcmp(obj->keys[ks->slot[j] - 1], key)) return 1;
        j = (j + 1) & (ks->cap - 1);
    }
    ks->slot[j] = (uint32_t)obj->n + 1;
    ks->n++;
    return 0;
}

/* The members of an object or the items of an array, after its opening '{' or '['. */
static int parse_members(parser *ps, mf_json *v, int obj, int depth)
{
    mf_buf key = MF_BUF_INIT;
    keyset ks = {0};
    mf_json *item = NULL;
    int rc = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
        ps->p++;
        goto out;
    }
    for (;;) {
        skip_ws(ps);
        int kl = ps->line, kc = col_of(ps, ps->p);
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"') {
                rc = perr(ps, ps->p, "expected a string key");
                goto out;
            }
            mf_buf_reset(&key);
            if ((rc = parse_string(ps, &key)) != 0) goto out;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                rc = perr(ps, ps->p, "expected ':'");
                goto out;
            }
            ps->p++;
        }
        if ((rc = parse_value(ps, &item, depth + 1)) != 0) goto out;
        if (obj) {
            int dup = keyset_add(&ks, v, mf_buf_cstr(&key));
            if (dup > 0) {
                rc = mf_err_at(ps->err, MF_EINVAL, ps->name, kl, kc, "invalid JSON: duplicate key \"%s\"",
                               mf_buf_cstr(&key));
                goto out;
            }
            if (dup < 0) {
                rc = mf_err_set(ps->err, MF_ENOMEM, "out of memory");
                goto out;
            }
        }
        mf_json *taken = item;
        item = NULL; /* append and push own it from here, also when they fail */
        if (obj ? mf_json_append(v, mf_buf_cstr(&key), taken, kl, kc) : mf_json_push(v, taken)) {
            rc = mf_err_set(ps->err, MF_ENOMEM, "out of memory");
            goto out;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
            ps->p++;
            goto out;
        }
        rc = perr(ps, ps->p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        goto out;
    }
out:
    mf_json_free(item);
    free(ks.slot);
    mf_buf_free(&key);
    return rc;
}

static int parse_string_value(parser *ps, mf_json **out)
{
    mf_buf s = MF_BUF_INIT;
    int rc = parse_string(ps, &s);
    if (rc) goto out;
    if (!(*out = mf_json_new_strn(s.data ? s.data : "", s.len))) rc = mf_err_set(ps->err, MF_ENOMEM, "out of memory");
out:
    mf_buf_free(&s);
    return rc;
}

static int parse_literal(parser *ps, mf_json **out)
{
    static const struct { const char *w; mf_json_type t; int b; } lit[] = {
        {"true", MF_JSON_BOOL, 1}, {"false", MF_JSON_BOOL, 0}, {"null", MF_JSON_NULL, 0}};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(lit[k].w);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lit[k].w, n) == 0) {
            *out = lit[k].t == MF_JSON_BOOL ? mf_json_new_bool(lit[k].b) : mf_json_new_null();
            if (!*out) return mf_err_set(ps->err, MF_ENOMEM, "out of memory");
            ps->p += n;
            return 0;
        }
    }
    return perr(ps, ps->p, "unexpected character");
}

static int parse_value(parser *ps, mf_json **out, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, ps->p, "unexpected end of input");
    if (depth > MAX_DEPTH) return perr(ps, ps->p, "nesting deeper than 256 levels");
    const char *at = ps->p;
    int line = ps->line, col = col_of(ps, at);
    mf_json *v = NULL;
    char c = *ps->p;
    int rc = 0;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        if (!(v = obj ? mf_json_new_object() : mf_json_new_array()))
            return mf_err_set(ps->err, MF_ENOMEM, "out of memory");
        ps->p++;
        rc = parse_members(ps, v, obj, depth);
    } else if (c == '"') {
        rc = parse_string_value(ps, &v);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        return parse_number(ps, out);
    } else {
        rc = parse_literal(ps, &v);
    }
    if (rc) goto out;
    v->line = line;
    v->col = col;
    *out = v;
    v = NULL;
out:
    mf_json_free(v);
    return rc;
}

int mf_json_parse(mf_json **out, const char *text, size_t len, const char *name, mf_err *err)
{
    parser ps = {text, text + len, text, 1, name ? name : "<json>", err};
    *out = NULL;
    /* tolerate a UTF-8 byte-order mark at the start */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) { ps.p += 3; ps.line_start = ps.p; }
    mf_json *v = NULL;
    int rc = parse_value(&ps, &v, 0);
    if (rc) return rc;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        mf_json_free(v);
        return perr(&ps, ps.p, "trailing characters after the value");
    }
    *out = v;
    return 0;
}

int mf_json_parse_file(mf_json **out, const char *path, mf_err *err)
{
    char *text;
    size_t len;
    *out = NULL;
    int rc = mf_read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = mf_json_parse(out, text, len, path, err);
    free(text);
    return rc;
}

/* ---------- writer ---------- */

int mf_json_write_str(mf_buf *b, const char *s, size_t n)
{
    mf_buf_putc(b, '"');
    size_t run = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) { snprintf(u, sizeof u, "\\u%04x", c); esc = u; }
        }
        if (esc) {
            mf_buf_append(b, s + run, k - run);
            mf_buf_puts(b, esc);
            run = k + 1;
        }
    }
    mf_buf_append(b, s + run, n - run);
    return mf_buf_putc(b, '"');
}

int mf_json_write_double(mf_buf *b, double f)
{
    if (isnan(f) || isinf(f)) return mf_buf_puts(b, "null");
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    if (!strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
    return mf_buf_puts(b, tmp);
}


typedef struct { const mf_json *obj; size_t idx; } key_ref;

static int cmp_key_ref(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    return strcmp(x->obj->keys[x->idx], y->obj->keys[y->idx]);
}

static void indent(mf_buf *b, int level)
{
    for (int k = 0; k < level; k++) mf_buf_puts(b, "  ");
}

static int write_rec(mf_buf *b, const mf_json *v, int flags, int level)
{
    int pretty = flags & MF_JSON_PRETTY;
    switch (v->type) {
    case MF_JSON_NULL: return mf_buf_puts(b, "null");
    case MF_JSON_BOOL: return mf_buf_puts(b, v->b ? "true" : "false");
    case MF_JSON_INT: return mf_buf_printf(b, "%lld", (long long)v->i);
    case MF_JSON_FLOAT: return mf_json_write_double(b, v->f);
    case MF_JSON_STRING: return mf_json_write_str(b, v->s, v->slen);
    case MF_JSON_ARRAY:
        if (!v->n) return mf_buf_puts(b, "[]");
        mf_buf_putc(b, '[');
        for (size_t k = 0; k < v->n; k++) {
            if (k) mf_buf_putc(b, ',');
            if (pretty) { mf_buf_putc(b, '\n'); indent(b, level + 1); }
            write_rec(b, v->items[k], flags, level + 1);
        }
        if (pretty) { mf_buf_putc(b, '\n'); indent(b, level); }
        return mf_buf_putc(b, ']');
    case MF_JSON_OBJECT: {
        if (!v->n) return mf_buf_puts(b, "{}");
        key_ref *order = malloc(v->n * sizeof *order);
        if (!order) { b->oom = 1; return MF_ENOMEM; }
        for (size_t k = 0; k < v->n; k++) order[k] = (key_ref){v, k};
        if (flags & MF_JSON_SORTED) qsort(order, v->n, sizeof *order, cmp_key_ref);
        mf_buf_putc(b, '{');
        for (size_t k = 0; k < v->n; k++) {
            size_t i = order[k].idx;
            if (k) mf_buf_putc(b, ',');
            if (pretty) { mf_buf_putc(b, '\n'); indent(b, level + 1); }
            mf_json_write_str(b, v->keys[i], strlen(v->keys[i]));
            mf_buf_puts(b, pretty ? ": " : ":");
            write_rec(b, v->items[i], flags, level + 1);
        }
        free(order);
        if (pretty) { mf_buf_putc(b, '\n'); indent(b, level); }
        return mf_buf_putc(b, '}');
    }
    }
    return 0;
}

int mf_json_write(mf_buf *b, const mf_json *v, int flags)
{
    write_rec(b, v, flags, 0);
    if (flags & MF_JSON_PRETTY) mf_buf_putc(b, '\n');
    return mf_buf_ok(b) ? 0 : MF_ENOMEM;
}

int mf_json_save(const char *dir, const char *name, const mf_json *v, mf_err *err)
{
    char *p = name ? mf_path_join(dir, name) : NULL;
    mf_buf b = MF_BUF_INIT;
    int rc = (!v || (name && !p) || mf_json_write(&b, v, MF_JSON_SORTED | MF_JSON_PRETTY))
                 ? mf_err_set(err, MF_ENOMEM, "out of memory")
                 : mf_write_file_atomic(p ? p : dir, b.data, b.len, 0644, err);
    mf_buf_free(&b);
    free(p);
    return rc;
}
