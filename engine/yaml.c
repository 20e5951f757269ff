/*
 * engine/yaml.c — YAML -> mf_json tree with positions, via libyaml's composer.
 *
 * Scalars are typed the way YAML 1.2's core schema does for plain scalars
 * (null/~/empty, true/false, integers, floats incl. 1e-5 and .inf/.nan);
 * quoted scalars and explicit !!str are strings. Mapping keys must be
 * scalars and unique. `<<` merge keys are honoured. Aliases are expanded by
 * copying, under a budget of MAX_NODES nodes in the resulting tree and a
 * depth bound, so an alias bomb ("billion laughs") fails fast with a clear
 * message instead of exhausting memory.
 */
#include "engine/graph.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_NODES 1000000
#define MAX_DEPTH 200

typedef struct {
    yaml_document_t *doc;
    const char *name;
    mf_err *err;
    long budget;
} conv;

static int is_int_text(const char *s)
{
    if (*s == '+' || *s == '-') s++;
    if (!*s) return 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) return 0; /* keep it simple: decimal only */
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int is_float_text(const char *s)
{
    /* YAML 1.2 core: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') { p++; digits++; }
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == 0;
}

static mf_json *scalar_value(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    /* The composer tags every untagged scalar !!str, so only the style tells
     * a plain scalar (typed by the core schema) from a quoted one (a string). */
    int plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!plain || strlen(s) != len) return mf_json_new_strn(s, len);
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return mf_json_new_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return mf_json_new_bool(1);
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return mf_json_new_bool(0);
    if (is_int_text(s)) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno != ERANGE) return mf_json_new_int(v);
        return mf_json_new_float(strtod(s, NULL));
    }
    if (is_float_text(s)) return mf_json_new_float(strtod(s, NULL));
    const char *t = s + (*s == '+' || *s == '-');
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF"))
        return mf_json_new_float(*s == '-' ? -INFINITY : INFINITY);
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) return mf_json_new_float(NAN);
    return mf_json_new_strn(s, len);
}

static int convert(conv *c, yaml_node_t *n, mf_json **out, int depth);

/* Size of the tree a node expands to, memoised per document node, saturating
 * past MAX_NODES; -1 when nesting (or a recursive alias) is too deep. */
static long expanded_size(yaml_document_t *doc, int id, long *memo, int depth)
{
    if (depth > MAX_DEPTH) return -1;
    if (memo[id] > 0) return memo[id];
    yaml_node_t *n = yaml_document_get_node(doc, id);
    long total = 1;
    if (n && n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            long s = expanded_size(doc, *it, memo, depth + 1);
            if (s < 0) return -1;
            total += s;
            if (total > MAX_NODES) break;
        }
    } else if (n && n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            long s = expanded_size(doc, p->value, memo, depth + 1);
            if (s < 0) return -1;
            total += s + 1;
            if (total > MAX_NODES) break;
        }
    }
    if (total > MAX_NODES) total = MAX_NODES + 1;
    memo[id] = total;
    return total;
}

static const mf_json *g_sort_obj;
static int cmp_key_idx(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int r = strcmp(g_sort_obj->keys[x], g_sort_obj->keys[y]);
    return r ? r : (x > y) - (x < y);
}

/* The earliest second occurrence of any key, reported with the first one's line. */
static int check_duplicate_keys(conv *c, const mf_json *v)
{
    size_t *idx = malloc(v->n * sizeof *idx);
    if (!idx) return mf_err_set(c->err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < v->n; k++) idx[k] = k;
    g_sort_obj = v;
    qsort(idx, v->n, sizeof *idx, cmp_key_idx);
    /* sorted by (key, index): in each run of equal keys, the first two entries
     * are the first and second occurrence; report the earliest second one */
    size_t dup = (size_t)-1, first = 0;
    for (size_t k = 1; k < v->n; k++) {
        int run_start = k == 1 || strcmp(v->keys[idx[k - 2]], v->keys[idx[k - 1]]);
        if (run_start && !strcmp(v->keys[idx[k - 1]], v->keys[idx[k]]) && idx[k] < dup) {
            dup = idx[k];
            first = idx[k - 1];
        }
    }
    free(idx);
    if (dup == (size_t)-1) return 0;
    return mf_err_at(c->err, MF_EINVAL, c->name, v->key_line[dup], v->key_col[dup],
                     "duplicate key '%s' (first given at line %d)", v->keys[dup], v->key_line[first]);
}

static int merge_into(conv *c, mf_json *obj, yaml_node_t *src, const yaml_node_t *at)
{
    /* `<<: *anchor` or `<<: [*a, *b]`: copy keys not already present. */
    yaml_node_t *list[64];
    size_t nlist = 0;
    if (src->type == YAML_MAPPING_NODE) {
        list[nlist++] = src;
    } else if (src->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = src->data.sequence.items.start; it < src->data.sequence.items.top; it++) {
            if (nlist == 64) break;
            list[nlist++] = yaml_document_get_node(c->doc, *it);
        }
    }
    for (size_t k = 0; k < nlist; k++) {
        if (!list[k] || list[k]->type != YAML_MAPPING_NODE)
            return mf_err_at(c->err, MF_EINVAL, c->name, (int)at->start_mark.line + 1, (int)at->start_mark.column + 1,
                             "'<<' merge key needs a mapping or a list of mappings");
        mf_json *m = NULL;
        int rc = convert(c, list[k], &m, 1);
        if (rc) return rc;
        for (size_t i = 0; i < m->n; i++) {
            if (mf_json_key_index(obj, m->keys[i]) >= 0) continue;
            mf_json *v = m->items[i];
            m->items[i] = mf_json_new_null();
            if (mf_json_set(obj, m->keys[i], v)) { mf_json_free(m); return mf_err_set(c->err, MF_ENOMEM, "out of memory"); }
            obj->key_line[obj->n - 1] = m->key_line[i];
            obj->key_col[obj->n - 1] = m->key_col[i];
        }
        mf_json_free(m);
    }
    return 0;
}

static int convert(conv *c, yaml_node_t *n, mf_json **out, int depth)
{
    int line = (int)n->start_mark.line + 1, col = (int)n->start_mark.column + 1;
    if (depth > MAX_DEPTH)
        return mf_err_at(c->err, MF_EINVAL, c->name, line, col, "YAML nested deeper than %d levels", MAX_DEPTH);
    if (--c->budget < 0)
        return mf_err_at(c->err, MF_EINVAL, c->name, line, col,
                         "YAML expands to more than %d nodes (aliases referring to aliases? an alias bomb?)", MAX_NODES);
    mf_json *v = NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        v = scalar_value(n);
        break;
    case YAML_SEQUENCE_NODE:
        v = mf_json_new_array();
        if (!v) break;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            mf_json *item = NULL;
            int rc = convert(c, yaml_document_get_node(c->doc, *it), &item, depth + 1);
            if (rc) { mf_json_free(v); return rc; }
            if (mf_json_push(v, item)) { mf_json_free(v); return mf_err_set(c->err, MF_ENOMEM, "out of memory"); }
        }
        break;
    case YAML_MAPPING_NODE:
        v = mf_json_new_object();
        if (!v) break;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
            int kl = (int)kn->start_mark.line + 1, kc = (int)kn->start_mark.column + 1;
            if (kn->type != YAML_SCALAR_NODE) {
                mf_json_free(v);
                return mf_err_at(c->err, MF_EINVAL, c->name, kl, kc, "mapping keys must be plain strings");
            }
            const char *key = (const char *)kn->data.scalar.value;
            if (!strcmp(key, "<<") && kn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) continue; /* below */
            mf_json *item = NULL;
            int rc = convert(c, vn, &item, depth + 1);
            if (rc) { mf_json_free(v); return rc; }
            if (mf_json_append(v, key, item, kl, kc)) { mf_json_free(v); return mf_err_set(c->err, MF_ENOMEM, "out of memory"); }
        }
        /* duplicate keys, found by sorting (a 10,000-stage graph must not be quadratic) */
        if (v->n > 1) {
            int rc = check_duplicate_keys(c, v);
            if (rc) { mf_json_free(v); return rc; }
        }
        /* `<<` merges last: explicit keys win whatever their order (YAML merge-key semantics) */
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
            if (kn->type != YAML_SCALAR_NODE || strcmp((const char *)kn->data.scalar.value, "<<") ||
                kn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                continue;
            int rc = merge_into(c, v, yaml_document_get_node(c->doc, p->value), kn);
            if (rc) { mf_json_free(v); return rc; }
        }
        break;
    default:
        v = mf_json_new_null();
    }
    if (!v) return mf_err_set(c->err, MF_ENOMEM, "out of memory");
    v->line = line;
    v->col = col;
    *out = v;
    return 0;
}

/* Nesting deeper than MAX_DEPTH, found while streaming events, before
 * anything is composed: libyaml's scanner does work proportional to the
 * open flow levels for every token, so a 100,000-deep `{a: {a: ...` would
 * take minutes to load; stopping at level MAX_DEPTH + 1 keeps rejection
 * linear in the input. Syntax errors are left to the loader, which reports
 * them with their position. */
static int check_depth(const char *text, size_t len, const char *name, mf_err *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return mf_err_set(err, MF_ENOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int depth = 0, rc = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) depth++;
        else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) depth--;
        if (depth > MAX_DEPTH)
            rc = mf_err_at(err, MF_EINVAL, name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                           "YAML nested deeper than %d levels", MAX_DEPTH);
        yaml_event_delete(&ev);
        if (rc || t == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

int mf_yaml_parse(mf_json **out, const char *text, size_t len, const char *name, mf_err *err)
{
    *out = NULL;
    size_t bad = mf_utf8_invalid_at(text, len);
    if (bad != (size_t)-1) {
        int line = 1, col = 1;
        for (size_t k = 0; k < bad; k++) {
            if (text[k] == '\n') { line++; col = 1; }
            else if (((unsigned char)text[k] & 0xC0) != 0x80) col++;
        }
        return mf_err_at(err, MF_EINVAL, name, line, col, "invalid UTF-8 (YAML files must be UTF-8)");
    }
    int rc = check_depth(text, len, name, err);
    if (rc) return rc;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return mf_err_set(err, MF_ENOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *m = parser.problem ? &parser.problem_mark : &parser.context_mark;
        rc = mf_err_at(err, MF_EINVAL, name, (int)m->line + 1, (int)m->column + 1, "YAML syntax error: %s%s%s",
                           parser.problem ? parser.problem : "malformed document",
                           parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        *out = mf_json_new_null();
        if (!*out) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    } else {
        size_t nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
        long *memo = calloc(nnodes + 1, sizeof *memo);
        long size = memo ? expanded_size(&doc, 1, memo, 0) : 0;
        free(memo);
        if (!memo) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        } else if (size < 0) {
            rc = mf_err_at(err, MF_EINVAL, name, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1,
                           "YAML nested deeper than %d levels (or an alias refers to itself)", MAX_DEPTH);
        } else if (size > MAX_NODES) {
            rc = mf_err_at(err, MF_EINVAL, name, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1,
                           "YAML aliases expand to more than %d nodes (an alias bomb?); refusing to expand", MAX_NODES);
        } else {
            conv c = {&doc, name, err, MAX_NODES};
            rc = convert(&c, root, out, 0);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
