/*
 * engine/graph.c — load, expand and validate a stage graph (see graph.h).
 *
 * Pipeline: YAML -> mf_json (yaml.c) -> top-level check -> sources ->
 * foreach expansion -> per-stage kind/params/inputs/resources -> reference
 * resolution -> cycle check + topological order -> output types and slot
 * type checks. Every error names file:line:col of the node at fault.
 * Suggestions ("did you mean") come from edit distance and the ecosystem
 * alias table of the registry.
 */
#include "engine/graph.h"
#include "common/fsutil.h"
#include "stages/data/template.h"

#include <limits.h>
#include <stdarg.h>
#include <strings.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GRAPH_BYTES (16u << 20)
#define MAX_FOREACH 100000

/* Name -> expanded-stage index, sorted by (key, idx), so references resolve by
 * binary search instead of a scan (graphs of 10,000 stages load in linear-log time). */
typedef struct { const char *key; size_t idx; } name_ent;

/* A registry default, parsed (once per graph load) from its spec's text. */
typedef struct { const mf_param_spec *spec; mf_json *value; } def_entry;

typedef struct {
    mf_graph *g;
    const char *file;
    mf_err *err;
    mf_json *defaults; /* borrowed from the document */
    name_ent *by_name, *by_group; /* over the expanded stages */
    size_t n_by_name, n_by_group;
    def_entry *defs; /* the registry defaults parsed so far */
    size_t n_defs, cap_defs;
    /* errors kept while loading goes on (keep()): the first, the count, the others as text */
    mf_err first;
    size_t n_errs;
    mf_buf more;
} loader;

static int cmp_name_ent(const void *a, const void *b)
{
    const name_ent *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* First entry with key == name (and how many follow), or n == 0. */
static const name_ent *name_lookup(const name_ent *v, size_t n, const char *name, size_t *count)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].key, name) < 0) lo = mid + 1;
        else hi = mid;
    }
    size_t k = lo;
    while (k < n && !strcmp(v[k].key, name)) k++;
    *count = k - lo;
    return *count ? &v[lo] : NULL;
}

static int at(loader *L, const mf_json *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int at(loader *L, const mf_json *node, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mf_err_at(L->err, MF_EINVAL, L->file, node ? node->line : 0, node ? node->col : 0, "%s", msg);
}

/* A graph error (MF_EINVAL) that need not stop the load: remember it and return 0, so one pass
 * reports every mistake of a graph, not only the first. Anything else (out of memory) stops. */
#define MAX_REPORTED_ERRORS 20
static int keep(loader *L, int rc)
{
    if (rc != MF_EINVAL) return rc;
    if (L->n_errs++ == 0) {
        L->first = *L->err;
    } else if (L->n_errs <= MAX_REPORTED_ERRORS) {
        char b[2700];
        mf_buf_printf(&L->more, "\n%s", mf_err_str(L->err, b, sizeof b));
    }
    mf_err_clear(L->err);
    return 0;
}

/* The kept errors as the load's result: the first with its position, the others appended to its
 * message one per line ("FILE:LINE:COL: msg"). */
static int kept_errors(loader *L)
{
    *L->err = L->first;
    size_t used = strlen(L->err->msg), room = sizeof L->err->msg - used;
    const char *more = L->more.len ? mf_buf_cstr(&L->more) : "";
    if (strlen(more) < room) {
        memcpy(L->err->msg + used, more, strlen(more) + 1);
        used += strlen(more);
    }
    if (L->n_errs > 1)
        snprintf(L->err->msg + used, sizeof L->err->msg - used, "\n%zu errors in %s", L->n_errs, L->file);
    return MF_EINVAL;
}

/* Position of a key inside an object (for errors about the key itself). */
static mf_json key_pos(const mf_json *obj, size_t idx)
{
    mf_json p;
    memset(&p, 0, sizeof p);
    p.line = obj->key_line ? obj->key_line[idx] : obj->line;
    p.col = obj->key_col ? obj->key_col[idx] : obj->col;
    return p;
}

/* ---------- suggestions ---------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 64 || nb > 64) return 99;
    size_t row[65];
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[nb];
}

typedef struct { const char *best; size_t dist; const char *word; } suggester;

static void suggest_consider(suggester *s, const char *cand)
{
    size_t d = edit_distance(s->word, cand);
    /* a candidate that contains the word or vice versa is a good guess too */
    if (d > 2 && (strstr(cand, s->word) || strstr(s->word, cand)) && strlen(s->word) >= 3) d = 2;
    size_t limit = strlen(s->word) / 3 + 1;
    if (limit < 2) limit = 2;
    if (d <= limit && (!s->best || d < s->dist)) { s->best = cand; s->dist = d; }
}

static void hint(char *buf, size_t n, const char *best)
{
    if (best) snprintf(buf, n, " (did you mean '%s'?)", best);
    else buf[0] = 0;
}

/* ---------- helpers ---------- */

static int valid_name(const char *s)
{
    if (!*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* A name that becomes a path component (stages/<name>/ in the ledger, logs/<run>/<name>.log):
 * valid characters, and no leading '.' (".", ".." and ".git" are not entries a git tree can hold). */
static int valid_entry_name(const char *s) { return valid_name(s) && s[0] != '.'; }

static const char *top_keys[] = {"name", "description", "defaults", "store", "executor", "sources", "stages", NULL};
static const char *stage_keys[] = {"kind", "inputs", "params", "resources", "foreach", "description", NULL};
static const char *resource_keys[] = {"gpus", "cpus", "mem", "nodes", "ranks", "time", "partition", "account", NULL};
static const char *source_keys[] = {"path", "format", "description", NULL};

static int check_keys(loader *L, const mf_json *obj, const char **allowed, const char *what)
{
    for (size_t k = 0; k < obj->n; k++) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (!strcmp(obj->keys[k], allowed[i])) ok = 1;
        if (ok) continue;
        suggester s = {NULL, 0, obj->keys[k]};
        for (size_t i = 0; allowed[i]; i++) suggest_consider(&s, allowed[i]);
        char h[128];
        hint(h, sizeof h, s.best);
        mf_json p = key_pos(obj, k);
        return at(L, &p, "%s: unknown key '%s'%s", what, obj->keys[k], h);
    }
    return 0;
}

static int need_type(loader *L, const mf_json *v, mf_json_type t, const char *what)
{
    if (v && v->type == t) return 0;
    return at(L, v, "%s: expected a %s, found %s", what, mf_json_type_name(t), v ? mf_json_type_name(v->type) : "nothing");
}

/* ---------- defaults of registry params (parsed once per spec and graph load) ---------- */

static const mf_json *spec_default(loader *L, const mf_param_spec *p)
{
    for (size_t k = 0; k < L->n_defs; k++)
        if (L->defs[k].spec == p) return L->defs[k].value;
    mf_json *v = NULL;
    if (p->type == MF_P_STRING) { /* string defaults are literal text, not YAML */
        if (!(v = mf_json_new_str(p->def))) return NULL;
    } else if (mf_yaml_parse(&v, p->def, strlen(p->def), "<registry default>", L->err)) {
        return NULL;
    }
    if (L->n_defs == L->cap_defs) {
        size_t cap = L->cap_defs ? L->cap_defs * 2 : 128;
        def_entry *c = realloc(L->defs, cap * sizeof *c);
        if (!c) {
            mf_json_free(v);
            return NULL;
        }
        L->defs = c;
        L->cap_defs = cap;
    }
    L->defs[L->n_defs++] = (def_entry){p, v};
    return v;
}

static void loader_free(loader *L)
{
    free(L->by_name);
    free(L->by_group);
    for (size_t k = 0; k < L->n_defs; k++) mf_json_free(L->defs[k].value);
    free(L->defs);
    mf_buf_free(&L->more);
}

/* ---------- param typing ---------- */

static int enum_has(const char *vals, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = vals; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n)) return 1;
        p += len + (bar ? 1 : 0);
        if (!bar) break;
    }
    return 0;
}

static const char *enum_suggest(const char *vals, const char *s, char *buf, size_t bufn)
{
    suggester sg = {NULL, 0, s};
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", vals);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        suggest_consider(&sg, tok);
        if (sg.best == tok) { snprintf(buf, bufn, "%s", tok); sg.best = buf; }
    }
    return sg.best;
}

/* The first NaN or infinity in a param value (at any depth), or NULL. No kind takes one: a
 * kind that ever needs it must say so in its param spec, and this check must learn to ask. */
static const mf_json *nonfinite_in(const mf_json *v)
{
    if (v->type == MF_JSON_FLOAT) return isfinite(v->f) ? NULL : v;
    for (size_t k = 0; k < v->n; k++) {
        const mf_json *r = nonfinite_in(v->items[k]);
        if (r) return r;
    }
    return NULL;
}

/* A NUMLIST or MAP param with a range: every item (every value of the mapping) is a number in it. */
static int check_each(loader *L, const char *stage, const mf_param_spec *p, const mf_json *v)
{
    char lo[40], hi[40];
    snprintf(lo, sizeof lo, "%.15g", p->min);
    snprintf(hi, sizeof hi, "%.15g", p->max);
    for (size_t k = 0; k < v->n; k++) {
        const mf_json *it = v->items[k];
        char what[300];
        if (v->type == MF_JSON_OBJECT) snprintf(what, sizeof what, "'%s'", v->keys[k]);
        else snprintf(what, sizeof what, "item %zu", k + 1);
        if (!mf_json_is_num(it))
            return at(L, it, "stage '%s': param '%s': %s expects a number in [%s, %s], found %s", stage, p->name, what, lo,
                      hi, mf_json_type_name(it->type));
        double x = mf_json_num(it, 0);
        if (!(x >= p->min && x <= p->max))
            return at(L, it, "stage '%s': param '%s': %s = %g is out of range [%s, %s]", stage, p->name, what, x, lo, hi);
    }
    return 0;
}

/* Check v against spec; returns a typed copy in *out (ints promoted to float for FLOAT). */
static int coerce_param(loader *L, const char *stage, const mf_param_spec *p, const mf_json *v, mf_json **out)
{
    *out = NULL;
    char want[64];
    switch (p->type) {
    case MF_P_INT:
        if (v->type == MF_JSON_FLOAT && v->f == floor(v->f) && fabs(v->f) < 9e15) {
            *out = mf_json_new_int((int64_t)v->f);
        } else if (v->type != MF_JSON_INT) {
            return at(L, v, "stage '%s': param '%s' expects an integer, found %s%s%s%s", stage, p->name,
                      mf_json_type_name(v->type), v->type == MF_JSON_STRING ? " \"" : "",
                      v->type == MF_JSON_STRING ? v->s : "", v->type == MF_JSON_STRING ? "\"" : "");
        } else {
            *out = mf_json_clone(v);
        }
        break;
    case MF_P_FLOAT:
        if (!mf_json_is_num(v))
            return at(L, v, "stage '%s': param '%s' expects a number, found %s%s%s%s", stage, p->name,
                      mf_json_type_name(v->type), v->type == MF_JSON_STRING ? " \"" : "",
                      v->type == MF_JSON_STRING ? v->s : "", v->type == MF_JSON_STRING ? "\"" : "");
        *out = mf_json_new_float(mf_json_num(v, 0));
        break;
    case MF_P_BOOL:
        if (v->type != MF_JSON_BOOL)
            return at(L, v, "stage '%s': param '%s' expects true or false, found %s", stage, p->name, mf_json_type_name(v->type));
        *out = mf_json_clone(v);
        break;
    case MF_P_STRING:
        if (v->type != MF_JSON_STRING)
            return at(L, v, "stage '%s': param '%s' expects a string, found %s", stage, p->name, mf_json_type_name(v->type));
        *out = mf_json_clone(v);
        break;
    case MF_P_ENUM:
        if (v->type != MF_JSON_STRING)
            return at(L, v, "stage '%s': param '%s' expects one of %s, found %s", stage, p->name, p->enum_values,
                      mf_json_type_name(v->type));
        if (!enum_has(p->enum_values, v->s)) {
            char buf[128], h[160];
            hint(h, sizeof h, enum_suggest(p->enum_values, v->s, buf, sizeof buf));
            return at(L, v, "stage '%s': param '%s' must be one of %s, found '%s'%s", stage, p->name, p->enum_values, v->s, h);
        }
        *out = mf_json_clone(v);
        break;
    case MF_P_LIST:
    case MF_P_NUMLIST: {
        int nums = p->type == MF_P_NUMLIST;
        snprintf(want, sizeof want, "%s", nums ? "a list of numbers" : "a list of strings");
        if (!nums && v->type == MF_JSON_STRING) { /* a single string is a list of one */
            mf_json *a = mf_json_new_array();
            if (a && mf_json_push(a, mf_json_clone(v))) a = NULL;
            *out = a;
            break;
        }
        if (v->type != MF_JSON_ARRAY)
            return at(L, v, "stage '%s': param '%s' expects %s, found %s", stage, p->name, want, mf_json_type_name(v->type));
        for (size_t k = 0; k < v->n; k++) {
            const mf_json *it = v->items[k];
            if (nums ? !mf_json_is_num(it) : it->type != MF_JSON_STRING)
                return at(L, it, "stage '%s': param '%s' expects %s, found %s in it", stage, p->name, want,
                          mf_json_type_name(it->type));
        }
        *out = mf_json_clone(v);
        break;
    }
    case MF_P_MAP:
        if (v->type != MF_JSON_OBJECT)
            return at(L, v, "stage '%s': param '%s' expects a mapping, found %s", stage, p->name, mf_json_type_name(v->type));
        *out = mf_json_clone(v);
        break;
    }
    if (!*out) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    const mf_json *nf = nonfinite_in(v);
    if (nf) { /* .nan / .inf slip through any range check (every comparison with NaN is false) */
        mf_json_free(*out);
        *out = NULL;
        return at(L, nf, "stage '%s': param '%s' must be a finite number, found %s", stage, p->name,
                  isnan(nf->f) ? "NaN" : nf->f > 0 ? "infinity" : "-infinity");
    }
    if (p->has_range && (p->type == MF_P_NUMLIST || p->type == MF_P_MAP)) {
        int rc = check_each(L, stage, p, v);
        if (rc) {
            mf_json_free(*out);
            *out = NULL;
        }
        return rc;
    }
    if (p->has_range && mf_json_is_num(*out)) {
        double x = mf_json_num(*out, 0);
        if (!(x >= p->min && x <= p->max)) {
            char lo[40], hi[40];
            snprintf(lo, sizeof lo, "%.15g", p->min);
            snprintf(hi, sizeof hi, "%.15g", p->max);
            mf_json_free(*out);
            *out = NULL;
            return at(L, v, "stage '%s': param '%s' = %g is out of range [%s, %s]", stage, p->name, x, lo, hi);
        }
    }
    return 0;
}

/* Flatten user params: nested mappings become dotted keys unless the dotted
 * prefix is itself a MAP param (then the mapping is the value). */
static int flatten(loader *L, const mf_kind *kind, const mf_json *obj, const char *prefix, mf_json *flat)
{
    for (size_t k = 0; k < obj->n; k++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", obj->keys[k]);
        const mf_json *v = obj->items[k];
        const mf_param_spec *p = mf_kind_param(kind, name);
        if (v->type == MF_JSON_OBJECT && !(p && p->type == MF_P_MAP)) {
            /* only recurse if some param lives under this prefix */
            size_t plen = strlen(name);
            int has_children = 0;
            const mf_param_spec *q;
            for (size_t i = 0; (q = mf_kind_param_at(kind, i)); i++)
                if (!strncmp(q->name, name, plen) && q->name[plen] == '.') has_children = 1;
            if (has_children) {
                int rc = flatten(L, kind, v, name, flat);
                if (rc) return rc;
                continue;
            }
        }
        if (mf_json_key_index(flat, name) >= 0) {
            mf_json p2 = key_pos(obj, k);
            return at(L, &p2, "param '%s' given twice", name);
        }
        mf_json *c = mf_json_clone(v);
        if (!c || mf_json_set(flat, name, c)) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
        flat->key_line[flat->n - 1] = obj->key_line[k];
        flat->key_col[flat->n - 1] = obj->key_col[k];
    }
    return 0;
}

static int unknown_param(loader *L, const char *stage, const mf_kind *kind, const char *name, const mf_json *pos)
{
    const char *alias = mf_param_alias(name);
    suggester s = {NULL, 0, name};
    if (alias && mf_kind_param(kind, alias)) {
        s.best = alias;
    } else {
        const mf_param_spec *q;
        for (size_t i = 0; (q = mf_kind_param_at(kind, i)); i++) suggest_consider(&s, q->name);
        suggest_consider(&s, "seed");
        suggest_consider(&s, "precision");
    }
    char h[600];
    const char *note = s.best && alias ? NULL : mf_param_alias_note(name);
    if (note) snprintf(h, sizeof h, " (%s)", note);
    else hint(h, sizeof h, s.best);
    return at(L, pos, "stage '%s': unknown param '%s' for kind '%s'%s", stage, name, kind->name, h);
}

/* ---------- foreach ---------- */

typedef struct { const char *var; const mf_json *value; } binding_var;

/* Substitute ${var} in s; *out malloc'd. */
static int subst_string(loader *L, const mf_json *pos, const char *s, const binding_var *vars, size_t nvars, char **out)
{
    mf_buf b = MF_BUF_INIT;
    for (const char *p = s; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p, '}');
            if (!end) { mf_buf_free(&b); return at(L, pos, "unterminated '${' in \"%s\"", s); }
            char var[128];
            size_t n = (size_t)(end - p - 2);
            if (n >= sizeof var) n = sizeof var - 1;
            memcpy(var, p + 2, n);
            var[n] = 0;
            size_t i;
            for (i = 0; i < nvars; i++)
                if (!strcmp(vars[i].var, var)) break;
            if (i == nvars) {
                mf_buf_free(&b);
                return at(L, pos, "'${%s}' is not a foreach variable of this stage%s", var,
                          nvars ? "" : " (the stage has no foreach)");
            }
            const mf_json *v = vars[i].value;
            if (v->type == MF_JSON_STRING) mf_buf_puts(&b, v->s);
            else if (v->type == MF_JSON_FLOAT) { char t[40]; snprintf(t, sizeof t, "%g", v->f); mf_buf_puts(&b, t); }
            else mf_json_write(&b, v, 0);
            p = end + 1;
        } else {
            mf_buf_putc(&b, *p++);
        }
    }
    if (!mf_buf_ok(&b)) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    *out = mf_buf_steal(&b);
    return 0;
}

/* Substitute in a whole tree (in place). A string that is exactly "${v}" takes v's typed value. */
static int subst_tree(loader *L, mf_json *node, const binding_var *vars, size_t nvars)
{
    if (node->type == MF_JSON_STRING && strstr(node->s, "${")) {
        for (size_t i = 0; i < nvars; i++) {
            char whole[160];
            snprintf(whole, sizeof whole, "${%s}", vars[i].var);
            if (!strcmp(node->s, whole)) {
                const mf_json *v = vars[i].value;
                free(node->s);
                node->s = NULL;
                node->type = v->type;
                node->b = v->b;
                node->i = v->i;
                node->f = v->f;
                if (v->type == MF_JSON_STRING) {
                    node->s = strdup(v->s);
                    node->slen = v->slen;
                    if (!node->s) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
                }
                return 0;
            }
        }
        char *out = NULL;
        int rc = subst_string(L, node, node->s, vars, nvars, &out);
        if (rc) return rc;
        free(node->s);
        node->s = out;
        node->slen = strlen(out);
        return 0;
    }
    for (size_t k = 0; k < node->n; k++) {
        int rc = subst_tree(L, node->items[k], vars, nvars);
        if (rc) return rc;
    }
    return 0;
}

/* ---------- stage building ---------- */

typedef struct {
    char *name;
    char *group;
    const mf_json *decl;   /* the stage's YAML mapping (borrowed) */
    mf_json *body;         /* substituted copy of decl (owned) */
    int line, col;         /* of the stage's key */
} raw_stage;

static void free_stage(mf_stage *s)
{
    free(s->name);
    free(s->group);
    mf_json_free(s->params);
    for (size_t k = 0; k < s->n_inputs; k++) {
        for (size_t r = 0; r < s->inputs[k].n_refs; r++) free(s->inputs[k].refs[r].subpath);
        free(s->inputs[k].refs);
        free(s->inputs[k].slot);
    }
    free(s->inputs);
    free(s->res.time);
    free(s->res.partition);
    free(s->res.account);
    free(s->precision);
    free(s->deps);
}

void mf_graph_free(mf_graph *g)
{
    if (!g) return;
    free(g->name);
    free(g->path);
    free(g->dir);
    free(g->text);
    free(g->store);
    free(g->executor);
    for (size_t k = 0; k < g->n_sources; k++) {
        free(g->sources[k].name);
        free(g->sources[k].path);
        free(g->sources[k].abs_path);
    }
    free(g->sources);
    for (size_t k = 0; k < g->n_stages; k++) free_stage(&g->stages[k]);
    free(g->stages);
    free(g->topo);
    free(g);
}

long mf_graph_stage_index(const mf_graph *g, const char *name)
{
    for (size_t k = 0; k < g->n_stages; k++)
        if (!strcmp(g->stages[k].name, name)) return (long)k;
    return -1;
}

long mf_graph_source_index(const mf_graph *g, const char *name)
{
    for (size_t k = 0; k < g->n_sources; k++)
        if (!strcmp(g->sources[k].name, name)) return (long)k;
    return -1;
}

const char *mf_graph_ref_name(const mf_graph *g, const mf_ref *r)
{
    return r->is_source ? g->sources[r->index].name : g->stages[r->index].name;
}

static long long parse_mem_mb(const mf_json *v, int *ok)
{
    *ok = 1;
    if (v->type == MF_JSON_INT && v->i >= 0) return v->i;
    if (v->type == MF_JSON_STRING) {
        char *end;
        double x = strtod(v->s, &end);
        if (end != v->s && x >= 0) {
            while (*end == ' ') end++;
            if (!strcasecmp(end, "M") || !strcasecmp(end, "MB") || !strcasecmp(end, "MiB") || !*end) return (long long)x;
            if (!strcasecmp(end, "G") || !strcasecmp(end, "GB") || !strcasecmp(end, "GiB")) return (long long)(x * 1024);
            if (!strcasecmp(end, "T") || !strcasecmp(end, "TB") || !strcasecmp(end, "TiB")) return (long long)(x * 1024 * 1024);
        }
    }
    *ok = 0;
    return 0;
}

static int build_resources(loader *L, mf_stage *st, const mf_json *res)
{
    st->res.gpus = st->kind->resources.gpus;
    st->res.cpus = st->kind->resources.cpus ? st->kind->resources.cpus : 1;
    st->res.mem_mb = st->kind->resources.mem_mb;
    st->res.nodes = 1;
    if (!res) return 0;
    char what[300];
    snprintf(what, sizeof what, "stage '%s' resources", st->name);
    int rc = need_type(L, res, MF_JSON_OBJECT, what);
    if (rc || (rc = check_keys(L, res, resource_keys, what))) return rc;
    for (size_t k = 0; k < res->n; k++) {
        const char *key = res->keys[k];
        const mf_json *v = res->items[k];
        if (!strcmp(key, "gpus") || !strcmp(key, "cpus") || !strcmp(key, "nodes") || !strcmp(key, "ranks")) {
            int lo = strcmp(key, "gpus") ? 1 : 0;
            if (v->type != MF_JSON_INT || v->i < lo || v->i > 4096)
                return at(L, v, "stage '%s': resources.%s expects an integer >= %d", st->name, key, lo);
            if (!strcmp(key, "gpus")) st->res.gpus = (int)v->i;
            else if (!strcmp(key, "cpus")) st->res.cpus = (int)v->i;
            else if (!strcmp(key, "ranks")) st->res.ranks = (int)v->i;
            else st->res.nodes = (int)v->i;
        } else if (!strcmp(key, "mem")) {
            int ok;
            long long mb = parse_mem_mb(v, &ok);
            if (!ok) return at(L, v, "stage '%s': resources.mem expects megabytes or a size like \"16G\"", st->name);
            st->res.mem_mb = mb;
        } else {
            if (v->type != MF_JSON_STRING) return at(L, v, "stage '%s': resources.%s expects a string", st->name, key);
            char **dst = !strcmp(key, "time") ? &st->res.time : !strcmp(key, "partition") ? &st->res.partition : &st->res.account;
            *dst = strdup(v->s);
            if (!*dst) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
        }
    }
    /* ranks: CPU processes over MPI; a stage on GPUs has one rank per GPU (gpus is per node) */
    const mf_json *rv = mf_json_get(res, "ranks");
    if (rv && st->res.gpus > 0 && st->res.ranks != st->res.gpus * st->res.nodes)
        return at(L, rv, "stage '%s': resources.ranks is %d, but a stage on GPUs runs one rank per GPU (gpus %d x nodes %d "
                         "= %d); leave ranks out",
                  st->name, st->res.ranks, st->res.gpus, st->res.nodes, st->res.gpus * st->res.nodes);
    return 0;
}

/* Param p of stage st: the stage's value, else the graph's defaults', else the kind's default, typed. */
/* A chat template the stage could not build would fail the run after its upstreams trained: a
 * built-in name or a custom string holding {query} (stages/data/template.h decides). */
static int check_template(loader *L, const char *stage, const mf_json *value, const mf_json *pos)
{
    mf_tpl *t = NULL;
    mf_err e;
    if (value->type != MF_JSON_STRING) return 0;
    int rc = mf_template_new(&t, value->s, &e);
    mf_template_free(t);
    if (rc == MF_EINVAL) return at(L, pos ? pos : value, "stage '%s': %s", stage, e.msg);
    return rc ? mf_err_set(L->err, rc, "%s", e.msg) : 0;
}

static int typed_param(loader *L, mf_stage *st, const mf_param_spec *p, const mf_json *flat, const mf_json *params)
{
    const mf_json *v = mf_json_get(flat, p->name);
    if (!v && L->defaults) v = mf_json_get_path(L->defaults, p->name);
    mf_json *typed = NULL;
    int rc;
    if (v) {
        rc = coerce_param(L, st->name, p, v, &typed);
    } else if (p->def) {
        const mf_json *d = spec_default(L, p);
        if (!d) return MF_EINTERNAL;
        rc = coerce_param(L, st->name, p, d, &typed);
    } else {
        char extra[300] = "";
        if (p->type == MF_P_ENUM) snprintf(extra, sizeof extra, " (one of %s)", p->enum_values);
        mf_json pos;
        memset(&pos, 0, sizeof pos);
        pos.line = st->line;
        pos.col = st->col;
        return at(L, params ? params : &pos, "stage '%s': missing required param '%s'%s", st->name, p->name, extra);
    }
    if (rc) return rc;
    if (mf_json_set(st->params, p->name, typed)) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    if (!strcmp(p->name, "template")) return check_template(L, st->name, typed, v);
    return 0;
}

/* The kind's own rules across its params and inputs (registry.h: mf_kind_check), at the param's position. */
static int kind_check(loader *L, mf_stage *st, const mf_json *params)
{
    const char *bad = NULL;
    char why[512] = "";
    size_t counts[64] = {0}, ns = 0;
    for (const mf_slot_spec *sl = st->kind->slots; sl && sl->name && ns < 64; sl++, ns++)
        for (size_t b = 0; b < st->n_inputs; b++)
            if (!strcmp(st->inputs[b].slot, sl->name)) counts[ns] = st->inputs[b].n_refs;
    if (!mf_kind_check(st->kind, st->params, counts, &bad, why, sizeof why)) return 0;
    const mf_json *v = bad && params ? mf_json_get_path(params, bad) : NULL;
    if (!v && bad && params) v = mf_json_get(params, bad);
    if (!v && bad && L->defaults) v = mf_json_get_path(L->defaults, bad);
    mf_json pos;
    memset(&pos, 0, sizeof pos);
    pos.line = st->line;
    pos.col = st->col;
    return at(L, v ? v : params ? params : &pos, "stage '%s': param '%s': %s", st->name, bad ? bad : "?", why);
}

static int build_params(loader *L, mf_stage *st, const mf_json *params)
{
    mf_json *flat = mf_json_new_object();
    if (!flat) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    int rc = 0;
    if (params) {
        char what[300];
        snprintf(what, sizeof what, "stage '%s' params", st->name);
        if ((rc = need_type(L, params, MF_JSON_OBJECT, what)) || (rc = flatten(L, st->kind, params, "", flat))) goto out;
    }
    if (!(st->params = mf_json_new_object())) {
        rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    /* seed / precision: universal, taken out of params into the stage */
    const mf_json *dseed = L->defaults ? mf_json_get(L->defaults, "seed") : NULL;
    const mf_json *dprec = L->defaults ? mf_json_get(L->defaults, "precision") : NULL;
    const mf_json *seed = mf_json_get(flat, "seed");
    const mf_json *prec = mf_json_get(flat, "precision");
    if (!seed) seed = dseed;
    if (!prec) prec = dprec;
    if (seed && (seed->type != MF_JSON_INT || seed->i < 0)) {
        if ((rc = keep(L, at(L, seed, "stage '%s': seed expects a non-negative integer", st->name)))) goto out;
        seed = NULL;
    }
    if (prec && (prec->type != MF_JSON_STRING || !enum_has("fp32|bf16|fp16", prec->s))) {
        if ((rc = keep(L, at(L, prec, "stage '%s': precision must be one of fp32|bf16|fp16", st->name)))) goto out;
        prec = NULL;
    }
    st->seed = seed ? (unsigned long long)seed->i : 42;
    st->precision = strdup(prec ? prec->s : "fp32");
    mf_json_del(flat, "seed");
    mf_json_del(flat, "precision");
    for (size_t k = 0; k < flat->n; k++) {
        if (mf_kind_param(st->kind, flat->keys[k])) continue;
        mf_json pos = key_pos(flat, k);
        if ((rc = keep(L, unknown_param(L, st->name, st->kind, flat->keys[k], &pos)))) goto out;
    }
    const mf_param_spec *p;
    for (size_t i = 0; (p = mf_kind_param_at(st->kind, i)); i++)
        if ((rc = keep(L, typed_param(L, st, p, flat, params)))) goto out;
out:
    mf_json_free(flat);
    return rc;
}

/* Names visible to references: sources, stages, foreach groups. */
static int resolve_ref(loader *L, mf_stage *st, const mf_slot_spec *slot, const mf_json *v, mf_binding *b,
                       const raw_stage *raws, size_t nraw)
{
    mf_graph *g = L->g;
    if (v->type != MF_JSON_STRING)
        return at(L, v, "stage '%s': input '%s' expects a source or stage name, found %s", st->name, slot->name,
                  mf_json_type_name(v->type));
    const char *ref = v->s;
    const char *slash = strchr(ref, '/');
    size_t nlen = slash ? (size_t)(slash - ref) : strlen(ref);
    char name[512];
    if (nlen >= sizeof name) return at(L, v, "reference too long");
    memcpy(name, ref, nlen);
    name[nlen] = 0;
    const char *sub = slash ? slash + 1 : NULL;
    if (sub && (!*sub || sub[0] == '/' || strstr(sub, "..")))
        return at(L, v, "stage '%s': '%s': the path after '/' must be relative and inside the artifact", st->name, ref);

    long si = mf_graph_source_index(g, name);
    long ti = -1;
    size_t cnt = 0, group_n = 0;
    const name_ent *hit = name_lookup(L->by_name, L->n_by_name, name, &cnt);
    if (hit) ti = (long)hit->idx;
    const name_ent *grp = NULL;
    if (si < 0 && ti < 0) grp = name_lookup(L->by_group, L->n_by_group, name, &group_n);
    /* A name that is both a source and a stage (DESIGN.md's own example has a
     * source `sft` feeding the stage `sft`) means the stage, except inside that
     * stage itself, where it can only mean the source. */
    if (si >= 0 && ti >= 0) {
        if (!strcmp(raws[ti].name, st->name)) ti = -1;
        else si = -1;
    }
    if (si >= 0 && sub)
        return at(L, v, "stage '%s': '%s' is a source; a '/path' selects inside a stage's output only", st->name, ref);
    if (si < 0 && ti < 0 && !group_n) {
        suggester s = {NULL, 0, name};
        for (size_t k = 0; k < g->n_sources; k++) suggest_consider(&s, g->sources[k].name);
        for (size_t k = 0; k < nraw; k++) suggest_consider(&s, raws[k].name);
        char h[600];
        hint(h, sizeof h, s.best);
        return at(L, v, "stage '%s': input '%s' refers to '%s', which is neither a source nor a stage%s", st->name,
                  slot->name, name, h);
    }
    size_t add = group_n ? group_n : 1;
    mf_ref *refs = realloc(b->refs, (b->n_refs + add) * sizeof *refs);
    if (!refs) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    b->refs = refs;
    for (size_t k = 0; k < (group_n ? group_n : 1); k++) {
        mf_ref r;
        memset(&r, 0, sizeof r);
        r.line = v->line;
        r.col = v->col;
        if (group_n) {
            r.index = grp[k].idx; /* sorted by index: file order */
        } else if (si >= 0) {
            r.is_source = 1;
            r.index = (size_t)si;
        } else {
            r.index = (size_t)ti;
        }
        if (!r.is_source && !strcmp(raws[r.index].name, st->name))
            return at(L, v, "stage '%s': input '%s' refers to the stage itself", st->name, slot->name);
        if (sub && !(r.subpath = strdup(sub))) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
        b->refs[b->n_refs++] = r;
    }
    return 0;
}

static int build_inputs(loader *L, mf_stage *st, const mf_json *inputs, const raw_stage *raws, size_t nraw)
{
    char what[300];
    snprintf(what, sizeof what, "stage '%s' inputs", st->name);
    if (inputs) {
        int rc = need_type(L, inputs, MF_JSON_OBJECT, what);
        if (rc) return rc;
        st->inputs = calloc(inputs->n ? inputs->n : 1, sizeof *st->inputs);
        if (!st->inputs) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
        for (size_t k = 0; k < inputs->n; k++) {
            const mf_slot_spec *slot = mf_kind_slot(st->kind, inputs->keys[k]);
            mf_json pos = key_pos(inputs, k);
            if (!slot) {
                suggester s = {NULL, 0, inputs->keys[k]};
                char names[512] = "";
                for (const mf_slot_spec *q = st->kind->slots; q && q->name; q++) {
                    suggest_consider(&s, q->name);
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", q->name);
                }
                char h[300];
                hint(h, sizeof h, s.best);
                if ((rc = keep(L, at(L, &pos, "stage '%s': kind '%s' has no input slot '%s'%s (slots: %s)", st->name,
                                     st->kind->name, inputs->keys[k], h, names))))
                    return rc;
                continue;
            }
            mf_binding *b = &st->inputs[st->n_inputs++];
            b->slot = strdup(slot->name);
            b->line = pos.line;
            b->col = pos.col;
            if (!b->slot) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
            const mf_json *v = inputs->items[k];
            if (v->type == MF_JSON_ARRAY) {
                if (!v->n && (rc = keep(L, at(L, v, "stage '%s': input '%s' is an empty list", st->name, slot->name))))
                    return rc;
                for (size_t i = 0; i < v->n; i++)
                    if ((rc = keep(L, resolve_ref(L, st, slot, v->items[i], b, raws, nraw)))) return rc;
            } else if ((rc = keep(L, resolve_ref(L, st, slot, v, b, raws, nraw)))) {
                return rc;
            }
            if (b->n_refs > 1 && !slot->multi)
                return at(L, v, "stage '%s': input '%s' takes one input, found %zu", st->name, slot->name, b->n_refs);
        }
    }
    for (const mf_slot_spec *q = st->kind->slots; q && q->name; q++) {
        if (q->optional) continue;
        int bound = 0;
        for (size_t k = 0; k < st->n_inputs; k++)
            if (!strcmp(st->inputs[k].slot, q->name)) bound = 1;
        if (!bound) {
            mf_json pos;
            memset(&pos, 0, sizeof pos);
            pos.line = inputs ? inputs->line : st->line;
            pos.col = inputs ? inputs->col : st->col;
            char acc[256];
            int rc = keep(L, at(L, &pos, "stage '%s': missing input '%s' (%s: %s)", st->name, q->name,
                                mf_atype_names(q->accepts, acc, sizeof acc), q->doc));
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---------- order, cycles, types ---------- */

static int dfs_order(loader *L, size_t v, int *color, size_t *stack, size_t depth, size_t *order, size_t *norder)
{
    mf_graph *g = L->g;
    color[v] = 1;
    stack[depth] = v;
    const mf_stage *st = &g->stages[v];
    for (size_t d = 0; d < st->n_deps; d++) {
        size_t w = st->deps[d];
        if (color[w] == 1) {
            /* the cycle is stack[i..depth] + w */
            size_t i = depth;
            while (stack[i] != w) i--;
            mf_buf b = MF_BUF_INIT;
            for (size_t k = i; k <= depth; k++) mf_buf_printf(&b, "%s -> ", g->stages[stack[k]].name);
            mf_buf_puts(&b, g->stages[w].name);
            mf_json pos;
            memset(&pos, 0, sizeof pos);
            pos.line = g->stages[w].line;
            pos.col = g->stages[w].col;
            int rc = at(L, &pos, "cycle: %s (each stage reads the next)", mf_buf_cstr(&b));
            mf_buf_free(&b);
            return rc;
        }
        if (color[w] == 0) {
            int rc = dfs_order(L, w, color, stack, depth + 1, order, norder);
            if (rc) return rc;
        }
    }
    color[v] = 2;
    order[(*norder)++] = v;
    return 0;
}

static unsigned output_type(const mf_graph *g, const mf_stage *st)
{
    if (st->kind->passthrough) {
        unsigned t = 0;
        for (size_t k = 0; k < st->n_inputs; k++) {
            if (strcmp(st->inputs[k].slot, st->kind->passthrough)) continue;
            for (size_t r = 0; r < st->inputs[k].n_refs; r++) {
                const mf_ref *ref = &st->inputs[k].refs[r];
                unsigned u = ref->is_source ? g->sources[ref->index].atype : g->stages[ref->index].produces;
                if (!u) return 0; /* unknown stays unknown */
                t |= u;
            }
        }
        return t;
    }
    unsigned t = st->kind->produces;
    if ((t & MF_A_MODEL) && (t & MF_A_ADAPTER)) {
        const char *ft = mf_json_get_str(st->params, "finetune", NULL);
        if (ft) t = (!strcmp(ft, "lora") || !strcmp(ft, "ptuning")) ? MF_A_ADAPTER : MF_A_MODEL;
    }
    return t;
}

static int check_types(loader *L)
{
    mf_graph *g = L->g;
    for (size_t o = 0; o < g->n_stages; o++) {
        mf_stage *st = &g->stages[g->topo[o]];
        for (size_t k = 0; k < st->n_inputs; k++) {
            const mf_slot_spec *slot = mf_kind_slot(st->kind, st->inputs[k].slot);
            for (size_t r = 0; r < st->inputs[k].n_refs; r++) {
                const mf_ref *ref = &st->inputs[k].refs[r];
                unsigned t = ref->is_source ? g->sources[ref->index].atype : g->stages[ref->index].produces;
                if (!t || slot->accepts == (unsigned)MF_A_ANY || (t & slot->accepts)) continue;
                char want[256], got[256];
                mf_atype_names(slot->accepts, want, sizeof want);
                mf_atype_names(t, got, sizeof got);
                mf_json pos;
                memset(&pos, 0, sizeof pos);
                pos.line = ref->line;
                pos.col = ref->col;
                return at(L, &pos, "stage '%s': input '%s' accepts %s, but '%s' %s %s", st->name, slot->name, want,
                          mf_graph_ref_name(g, ref), ref->is_source ? "is declared as" : "produces", got);
            }
        }
        st->produces = output_type(g, st);
    }
    return 0;
}

/* ---------- top level ---------- */

static int load_sources(loader *L, const mf_json *sources)
{
    mf_graph *g = L->g;
    if (!sources) return 0;
    int rc = need_type(L, sources, MF_JSON_OBJECT, "sources");
    if (rc) return rc;
    g->sources = calloc(sources->n ? sources->n : 1, sizeof *g->sources);
    if (!g->sources) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < sources->n; k++) {
        const char *name = sources->keys[k];
        const mf_json *v = sources->items[k];
        mf_json pos = key_pos(sources, k);
        if (!valid_entry_name(name))
            return at(L, &pos, "source name '%s': use letters, digits, '_', '-' and '.' only, not starting with '.'", name);
        const mf_json *path = v;
        unsigned atype = 0;
        if (v->type == MF_JSON_OBJECT) {
            char what[300];
            snprintf(what, sizeof what, "source '%s'", name);
            if ((rc = check_keys(L, v, source_keys, what))) return rc;
            path = mf_json_get(v, "path");
            if (!path) return at(L, v, "source '%s': missing 'path' (a file, a directory or a glob)", name);
            const mf_json *fmt = mf_json_get(v, "format");
            if (fmt) {
                if (fmt->type != MF_JSON_STRING || !(atype = mf_atype_parse(fmt->s)))
                    return at(L, fmt, "source '%s': unknown format%s%s%s (model, text, conversations, alpaca, dialogues, "
                              "preferences, mcq, qa, triples, records, tokenizer, config, templates, prompts)",
                              name, fmt->type == MF_JSON_STRING ? " '" : "", fmt->type == MF_JSON_STRING ? fmt->s : "",
                              fmt->type == MF_JSON_STRING ? "'" : "");
            }
        }
        if (path->type != MF_JSON_STRING || !path->s[0])
            return at(L, path, "source '%s': path expects a non-empty string", name);
        mf_source *s = &g->sources[g->n_sources++];
        s->name = strdup(name);
        s->path = strdup(path->s);
        s->abs_path = path->s[0] == '/' ? strdup(path->s) : mf_path_join(g->dir, path->s);
        s->atype = atype;
        s->line = pos.line;
        s->col = pos.col;
        if (!s->name || !s->path || !s->abs_path) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    }
    return 0;
}

static void free_raws(raw_stage *raws, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free(raws[k].name);
        free(raws[k].group);
        mf_json_free(raws[k].body);
    }
    free(raws);
}

/* foreach: an object of non-empty lists of scalars; *combos: the number of combinations. */
static int check_foreach(loader *L, const char *tname, const mf_json *fe, size_t *combos)
{
    int rc;
    *combos = 1;
    if ((rc = need_type(L, fe, MF_JSON_OBJECT, "foreach"))) return rc;
    if (!fe->n) return at(L, fe, "stage '%s': foreach is empty", tname);
    for (size_t i = 0; i < fe->n; i++) {
        const mf_json *vals = fe->items[i];
        if (vals->type != MF_JSON_ARRAY || !vals->n)
            return at(L, vals, "stage '%s': foreach '%s' expects a non-empty list", tname, fe->keys[i]);
        for (size_t j = 0; j < vals->n; j++)
            if (vals->items[j]->type == MF_JSON_ARRAY || vals->items[j]->type == MF_JSON_OBJECT)
                return at(L, vals->items[j], "stage '%s': foreach values must be scalars", tname);
        *combos *= vals->n;
        if (*combos > MAX_FOREACH) return at(L, fe, "stage '%s': foreach expands to more than %d stages", tname, MAX_FOREACH);
    }
    return 0;
}

/* The name of one foreach combination: tname with its ${var}s substituted, else tname.<value>...
 * (tname itself without foreach). */
static int combo_name(loader *L, const mf_json *pos, const char *tname, const binding_var *vars, size_t nvars,
                      char **out)
{
    int rc = 0;
    *out = NULL;
    if (strstr(tname, "${")) {
        if ((rc = subst_string(L, pos, tname, vars, nvars, out))) return rc;
    } else if (nvars) {
        mf_buf b = MF_BUF_INIT;
        mf_buf_puts(&b, tname);
        for (size_t i = 0; i < nvars; i++) {
            char *piece = NULL;
            char tmpl[160];
            snprintf(tmpl, sizeof tmpl, "${%s}", vars[i].var);
            if ((rc = subst_string(L, pos, tmpl, vars, nvars, &piece))) {
                mf_buf_free(&b);
                return rc;
            }
            mf_buf_printf(&b, ".%s", piece);
            free(piece);
        }
        *out = mf_buf_steal(&b);
    } else {
        *out = strdup(tname);
    }
    if (!*out) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    if (!valid_entry_name(*out)) {
        rc = at(L, pos, "stage name '%s': use letters, digits, '_', '-' and '.' only, not starting with '.'", *out);
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Expand foreach into raw stages (name + substituted body). */
static int expand_stages(loader *L, const mf_json *stages, raw_stage **out, size_t *nout)
{
    size_t cap = stages->n + 8, n = 0;
    raw_stage *raws = calloc(cap, sizeof *raws);
    if (!raws) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t k = 0; k < stages->n; k++) {
        const char *tname = stages->keys[k];
        const mf_json *decl = stages->items[k];
        mf_json pos = key_pos(stages, k);
        char what[300];
        snprintf(what, sizeof what, "stage '%s'", tname);
        if ((rc = need_type(L, decl, MF_JSON_OBJECT, what)) || (rc = check_keys(L, decl, stage_keys, what))) goto out;
        const mf_json *fe = mf_json_get(decl, "foreach");
        size_t combos = 1;
        if (fe && (rc = check_foreach(L, tname, fe, &combos))) goto out;
        binding_var vars[32];
        size_t nvars = fe ? fe->n : 0;
        if (nvars > 32) {
            rc = at(L, fe, "stage '%s': at most 32 foreach variables", tname);
            goto out;
        }
        for (size_t c = 0; c < combos; c++) {
            size_t rem = c;
            for (size_t i = nvars; i-- > 0;) { /* last variable varies fastest */
                const mf_json *vals = fe->items[i];
                vars[i].var = fe->keys[i];
                vars[i].value = vals->items[rem % vals->n];
                rem /= vals->n;
            }
            char *name = NULL;
            if ((rc = combo_name(L, &pos, tname, vars, nvars, &name))) goto out;
            if (n == cap) {
                cap *= 2;
                raw_stage *r2 = realloc(raws, cap * sizeof *r2);
                if (!r2) {
                    free(name);
                    rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
                    goto out;
                }
                raws = r2;
            }
            raw_stage *r = &raws[n++];
            memset(r, 0, sizeof *r);
            r->name = name;
            r->group = nvars ? strdup(tname) : NULL;
            r->decl = decl;
            r->line = pos.line;
            r->col = pos.col;
            r->body = mf_json_clone(decl);
            if (!r->body || (nvars && !r->group)) {
                rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
                goto out;
            }
            mf_json_del(r->body, "foreach");
            if ((rc = subst_tree(L, r->body, vars, nvars))) goto out;
        }
    }
    *out = raws;
    *nout = n;
out:
    if (rc) free_raws(raws, n);
    return rc;
}

static int strcmp_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int check_duplicates(loader *L, raw_stage *raws, size_t n)
{
    mf_graph *g = L->g;
    (void)g;
    char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) names[k] = raws[k].name;
    qsort(names, n, sizeof *names, strcmp_ptr);
    const char *dup = NULL;
    for (size_t k = 1; k < n && !dup; k++)
        if (!strcmp(names[k - 1], names[k])) dup = names[k];
    int rc = 0;
    if (dup) {
        /* report the second occurrence in file order, naming the first */
        int first_line = 0;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(raws[j].name, dup)) continue;
            if (!first_line) { first_line = raws[j].line; continue; }
            mf_json pos;
            memset(&pos, 0, sizeof pos);
            pos.line = raws[j].line;
            pos.col = raws[j].col;
            rc = at(L, &pos, "duplicate stage name '%s'%s (first defined at line %d)", dup,
                    raws[j].group ? " (produced by foreach)" : "", first_line);
            break;
        }
    }
    free(names);
    return rc;
}

/* One stage from its expanded declaration r. */
static int build_stage(loader *L, mf_stage *st, const raw_stage *r, const raw_stage *raws, size_t nraw)
{
    st->name = strdup(r->name);
    st->group = r->group ? strdup(r->group) : NULL;
    st->line = r->line;
    st->col = r->col;
    if (!st->name) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    const mf_json *kind = mf_json_get(r->body, "kind");
    if (!kind) {
        mf_json pos;
        memset(&pos, 0, sizeof pos);
        pos.line = r->line;
        pos.col = r->col;
        return at(L, &pos, "stage '%s': missing 'kind'", st->name);
    }
    if (kind->type != MF_JSON_STRING) return at(L, kind, "stage '%s': kind expects a string", st->name);
    st->kind = mf_kind_find(kind->s);
    if (!st->kind) {
        suggester s = {NULL, 0, kind->s};
        for (size_t i = 0; mf_kinds[i]; i++) suggest_consider(&s, mf_kinds[i]->name);
        char h[200];
        hint(h, sizeof h, s.best);
        return at(L, kind, "stage '%s': unknown kind '%s'%s (see 'medflow kinds')", st->name, kind->s, h);
    }
    int rc;
    size_t errs_before = L->n_errs;
    if ((rc = keep(L, build_params(L, st, mf_json_get(r->body, "params"))))) return rc;
    if ((rc = keep(L, build_inputs(L, st, mf_json_get(r->body, "inputs"), raws, nraw)))) return rc;
    /* across params and inputs: only when each of them is fine */
    if (L->n_errs == errs_before && (rc = keep(L, kind_check(L, st, mf_json_get(r->body, "params"))))) return rc;
    return build_resources(L, st, mf_json_get(r->body, "resources"));
}

/* The stages: foreach expanded, names checked unique and indexed, each stage built. */
static int build_stages(loader *L, const mf_json *stages)
{
    mf_graph *g = L->g;
    raw_stage *raws = NULL;
    size_t nraw = 0;
    int rc;
    if ((rc = expand_stages(L, stages, &raws, &nraw))) return rc;
    if ((rc = check_duplicates(L, raws, nraw))) goto out;
    L->by_name = malloc((nraw ? nraw : 1) * sizeof *L->by_name);
    L->by_group = malloc((nraw ? nraw : 1) * sizeof *L->by_group);
    if (!L->by_name || !L->by_group) {
        rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < nraw; k++) {
        L->by_name[L->n_by_name++] = (name_ent){raws[k].name, k};
        if (raws[k].group) L->by_group[L->n_by_group++] = (name_ent){raws[k].group, k};
    }
    qsort(L->by_name, L->n_by_name, sizeof *L->by_name, cmp_name_ent);
    qsort(L->by_group, L->n_by_group, sizeof *L->by_group, cmp_name_ent);
    if (!(g->stages = calloc(nraw ? nraw : 1, sizeof *g->stages))) {
        rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < nraw; k++)
        if ((rc = keep(L, build_stage(L, &g->stages[g->n_stages++], &raws[k], raws, nraw)))) goto out;
out:
    free_raws(raws, nraw);
    return rc;
}

/* Each stage's upstream stages (deduplicated). */
static int link_deps(loader *L)
{
    mf_graph *g = L->g;
    for (size_t k = 0; k < g->n_stages; k++) {
        mf_stage *st = &g->stages[k];
        size_t total = 0;
        for (size_t i = 0; i < st->n_inputs; i++) total += st->inputs[i].n_refs;
        st->deps = malloc((total ? total : 1) * sizeof *st->deps);
        if (!st->deps) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
        for (size_t i = 0; i < st->n_inputs; i++)
            for (size_t r = 0; r < st->inputs[i].n_refs; r++) {
                const mf_ref *ref = &st->inputs[i].refs[r];
                if (ref->is_source) continue;
                int dup = 0;
                for (size_t d = 0; d < st->n_deps; d++)
                    if (st->deps[d] == ref->index) dup = 1;
                if (!dup) st->deps[st->n_deps++] = ref->index;
            }
    }
    return 0;
}

/* Topological order by DFS in file order; a back edge is a cycle. */
static int topo_order(loader *L)
{
    mf_graph *g = L->g;
    size_t n = g->n_stages ? g->n_stages : 1, norder = 0;
    int *color = calloc(n, sizeof *color);
    size_t *stack = malloc(n * sizeof *stack);
    int rc = 0;
    g->topo = malloc(n * sizeof *g->topo);
    if (!color || !stack || !g->topo) {
        rc = mf_err_set(L->err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < g->n_stages; k++)
        if (!color[k] && (rc = dfs_order(L, k, color, stack, 0, g->topo, &norder))) goto out;
out:
    free(color);
    free(stack);
    return rc;
}

static int load_doc(loader *L, const mf_json *doc, const char *default_name)
{
    mf_graph *g = L->g;
    int rc;
    if (doc->type != MF_JSON_OBJECT)
        return at(L, doc, "a graph file is a mapping with name, sources and stages; found %s", mf_json_type_name(doc->type));
    if ((rc = check_keys(L, doc, top_keys, "graph"))) return rc;
    const mf_json *name = mf_json_get(doc, "name");
    if (name && (name->type != MF_JSON_STRING || !valid_entry_name(name->s)))
        return at(L, name, "graph name expects a string of letters, digits, '_', '-' and '.', not starting with '.'");
    g->name = strdup(name ? name->s : default_name);
    const mf_json *store = mf_json_get(doc, "store");
    if (store) {
        if (store->type != MF_JSON_STRING) return at(L, store, "store expects a directory path");
        g->store = store->s[0] == '/' ? strdup(store->s) : mf_path_join(g->dir, store->s);
        if (!g->store) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    }
    const mf_json *ex = mf_json_get(doc, "executor");
    if (ex) {
        if (ex->type != MF_JSON_STRING || (strcmp(ex->s, "local") && strcmp(ex->s, "slurm"))) {
            char h[300], best[64];
            hint(h, sizeof h, ex->type == MF_JSON_STRING ? enum_suggest("local|slurm", ex->s, best, sizeof best) : NULL);
            return at(L, ex, "executor expects local or slurm%s", h);
        }
        g->executor = strdup(ex->s);
        if (!g->executor) return mf_err_set(L->err, MF_ENOMEM, "out of memory");
    }
    const mf_json *defaults = mf_json_get(doc, "defaults");
    if (defaults) {
        if ((rc = need_type(L, defaults, MF_JSON_OBJECT, "defaults"))) return rc;
        /* every key must be seed, precision, or a param of some kind */
        for (size_t k = 0; k < defaults->n; k++) {
            const char *key = defaults->keys[k];
            if (!strcmp(key, "seed") || !strcmp(key, "precision")) continue;
            int known = 0;
            suggester s = {NULL, 0, key};
            for (size_t i = 0; mf_kinds[i] && !known; i++) {
                const mf_param_spec *p;
                size_t kl = strlen(key);
                for (size_t j = 0; (p = mf_kind_param_at(mf_kinds[i], j)); j++) {
                    if (!strcmp(p->name, key) || (!strncmp(p->name, key, kl) && p->name[kl] == '.')) { known = 1; break; }
                    suggest_consider(&s, p->name);
                }
            }
            if (!known) {
                const char *alias = mf_param_alias(key), *note = alias ? NULL : mf_param_alias_note(key);
                char h[600];
                if (note) snprintf(h, sizeof h, " (%s)", note);
                else hint(h, sizeof h, alias ? alias : s.best);
                mf_json pos = key_pos(defaults, k);
                if ((rc = keep(L, at(L, &pos, "defaults: unknown param '%s'%s", key, h)))) return rc;
            }
        }
        L->defaults = (mf_json *)defaults;
    }
    if ((rc = load_sources(L, mf_json_get(doc, "sources")))) return rc;
    const mf_json *stages = mf_json_get(doc, "stages");
    if (!stages) return at(L, doc, "graph has no 'stages'");
    if ((rc = need_type(L, stages, MF_JSON_OBJECT, "stages"))) return rc;

    if ((rc = build_stages(L, stages))) return rc;
    if (L->n_errs) return 0; /* kept; the order and types of a graph with broken stages mean little */
    if ((rc = link_deps(L))) return rc;
    if ((rc = topo_order(L))) return rc;
    return check_types(L);
}

int mf_graph_load_mem(mf_graph **out, const char *text, size_t len, const char *name, const char *base_dir, mf_err *err)
{
    *out = NULL;
    if (len > MAX_GRAPH_BYTES) return mf_err_set(err, MF_EINVAL, "%s: graph file larger than 16 MiB", name);
    mf_graph *g = calloc(1, sizeof *g);
    if (!g) return mf_err_set(err, MF_ENOMEM, "out of memory");
    g->path = strdup(name);
    g->dir = strdup(base_dir ? base_dir : ".");
    g->text = malloc(len + 1);
    if (!g->path || !g->dir || !g->text) { mf_graph_free(g); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    memcpy(g->text, text, len);
    g->text[len] = 0;
    g->text_len = len;
    mf_json *doc = NULL;
    int rc;
    if ((rc = mf_yaml_parse(&doc, text, len, name, err))) goto out;
    /* default graph name: the file name without directories and extension */
    char base[256];
    const char *slash = strrchr(name, '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : name);
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    for (char *p = base; *p; p++)
        if (!valid_name((char[]){*p, 0})) *p = '_';
    mf_err local;
    mf_err_clear(&local);
    loader L = {.g = g, .file = name, .err = &local, .more = MF_BUF_INIT};
    rc = keep(&L, load_doc(&L, doc, base[0] ? base : "graph"));
    if (!rc && L.n_errs) rc = kept_errors(&L);
    if (rc && err) *err = *L.err;
    loader_free(&L);
    if (rc) goto out;
    *out = g;
    g = NULL;
out:
    mf_json_free(doc);
    mf_graph_free(g);
    return rc;
}

int mf_graph_load(mf_graph **out, const char *path, mf_err *err)
{
    char *text;
    size_t len;
    *out = NULL;
    int rc = mf_read_file(path, &text, &len, err);
    if (rc) return rc == MF_ENOTFOUND ? mf_err_set(err, MF_EINVAL, "graph file %s not found", path) : rc;
    char *dir = mf_path_dirname(path);
    if (!dir) { free(text); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    rc = mf_graph_load_mem(out, text, len, path, dir, err);
    free(dir);
    free(text);
    return rc;
}
