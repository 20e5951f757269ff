/*
 * common/json.h — a small JSON value tree, a strict parser and a canonical writer.
 *
 * Used for everything medflow reads or writes as JSON: manifests and run
 * records (canonical: sorted keys, stable numbers, so git diffs mean
 * something), HF config.json / tokenizer.json, JSONL datasets, stage specs and
 * progress lines. The YAML graph loader produces the same tree, so params are
 * validated and keyed the same way whatever file they came from.
 *
 * Every node carries the line/column where it started (1-based; 0 if built in
 * memory). Objects keep insertion order; the canonical writer sorts keys by
 * bytes. Numbers are kept as int64 when written without fraction/exponent and
 * in range, double otherwise.
 */
#ifndef MF_JSON_H
#define MF_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"

typedef enum {
    MF_JSON_NULL,
    MF_JSON_BOOL,
    MF_JSON_INT,
    MF_JSON_FLOAT,
    MF_JSON_STRING,
    MF_JSON_ARRAY,
    MF_JSON_OBJECT
} mf_json_type;

typedef struct mf_json mf_json;
struct mf_json {
    mf_json_type type;
    int line, col;
    int b;          /* BOOL */
    int64_t i;      /* INT */
    double f;       /* FLOAT */
    char *s;        /* STRING (NUL-terminated; may contain NUL if slen says so) */
    size_t slen;
    size_t n, cap;  /* ARRAY/OBJECT: number of items */
    mf_json **items;/* ARRAY items / OBJECT values */
    char **keys;    /* OBJECT keys (parallel to items) */
    int *key_line, *key_col; /* OBJECT: where each key was written */
};

/* Parse one JSON text (the whole input must be one value plus whitespace).
 * `name` is used in error positions (file name, or "file:LINE" for JSONL).
 * Invalid UTF-8 in strings is an error; depth is bounded (256). */
int mf_json_parse(mf_json **out, const char *text, size_t len, const char *name, mf_err *err);
int mf_json_parse_file(mf_json **out, const char *path, mf_err *err);

void mf_json_free(mf_json *v);
mf_json *mf_json_clone(const mf_json *v);

mf_json *mf_json_new_null(void);
mf_json *mf_json_new_bool(int b);
mf_json *mf_json_new_int(int64_t i);
mf_json *mf_json_new_float(double f);
mf_json *mf_json_new_str(const char *s);
mf_json *mf_json_new_strn(const char *s, size_t n);
mf_json *mf_json_new_array(void);
mf_json *mf_json_new_object(void);

/* Take ownership of val. obj_set replaces an existing key. Return 0 or MF_ENOMEM
 * (val is freed on failure). */
int mf_json_push(mf_json *arr, mf_json *val);
int mf_json_set(mf_json *obj, const char *key, mf_json *val);
/* Append a key the caller knows is not in obj yet (no scan: O(1)), with the
 * position it was written at. Parsers use it after their own duplicate check. */
int mf_json_append(mf_json *obj, const char *key, mf_json *val, int line, int col);
/* Remove a key (freeing its value); 1 if it was there. */
int mf_json_del(mf_json *obj, const char *key);

/* Lookups; NULL when absent or not an object. get_path takes "a.b.c". */
mf_json *mf_json_get(const mf_json *obj, const char *key);
mf_json *mf_json_get_path(const mf_json *obj, const char *dotted);
int mf_json_key_index(const mf_json *obj, const char *key);

/* Typed reads with defaults. num accepts INT and FLOAT. */
const char *mf_json_str(const mf_json *v, const char *def);
double mf_json_num(const mf_json *v, double def);
int64_t mf_json_int(const mf_json *v, int64_t def);
int mf_json_bool(const mf_json *v, int def);
int mf_json_is_num(const mf_json *v);
const char *mf_json_type_name(mf_json_type t);

/* Convenience getters on an object member. */
const char *mf_json_get_str(const mf_json *obj, const char *key, const char *def);
double mf_json_get_num(const mf_json *obj, const char *key, double def);
int64_t mf_json_get_int(const mf_json *obj, const char *key, int64_t def);

enum {
    MF_JSON_COMPACT = 0,
    MF_JSON_SORTED = 1, /* keys sorted by bytes: canonical */
    MF_JSON_PRETTY = 2  /* two-space indent, newline at the end */
};

/* Append the serialisation of v to b. Floats use the shortest form that
 * reads back to the same double and always contain '.', 'e' or are null
 * (NaN/Inf), so a float never reads back as an int. */
int mf_json_write(mf_buf *b, const mf_json *v, int flags);
/* Write v, sorted and pretty, to dir/name (name NULL: dir is the path)
 * atomically (mf_write_file_atomic, mode 0644). */
int mf_json_save(const char *dir, const char *name, const mf_json *v, mf_err *err);
/* Escape s (n bytes) as a JSON string literal into b. */
int mf_json_write_str(mf_buf *b, const char *s, size_t n);
/* Format a double the canonical way into b. */
int mf_json_write_double(mf_buf *b, double f);

/* Deep equality (object key order ignored; 1 == 1.0 is false: types matter). */
int mf_json_equal(const mf_json *a, const mf_json *b);

/* UTF-8 validation: returns the byte offset of the first invalid sequence,
 * or (size_t)-1 if s is valid UTF-8 (overlongs and surrogates rejected). */
size_t mf_utf8_invalid_at(const char *s, size_t n);

#endif
