/*
 * engine/plan.c — stage keys, cache decisions and reasons (see plan.h).
 *
 * Pieces, in order: the canonical key encoding and hash; building a stage's
 * key components from the graph and the digests known so far; the reasons
 * (a diff of components against the previous decision); mf_plan_new /
 * mf_plan_resolve, which decide; the plan state file; the status writer.
 */
#include "engine/plan.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

#define KEY_PREFIX "medflow-stage-key/1\n"

/* ---- key encoding ---- */

int mf_plan_key_encode(const mf_json *components, mf_buf *out)
{
    mf_buf_puts(out, KEY_PREFIX);
    mf_json_write(out, components, MF_JSON_SORTED);
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

int mf_plan_key_hash(const mf_json *components, char out[65])
{
    mf_buf b = MF_BUF_INIT;
    unsigned char md[32];
    unsigned int mdlen = 0;
    int rc;
    if ((rc = mf_plan_key_encode(components, &b))) goto out;
    if (!EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL)) {
        rc = MF_EINTERNAL;
        goto out;
    }
    static const char hex[] = "0123456789abcdef"; /* not snprintf: 32 calls a key were 17% of a no-op run */
    for (int k = 0; k < 32; k++) {
        out[2 * k] = hex[md[k] >> 4];
        out[2 * k + 1] = hex[md[k] & 15];
    }
    out[64] = 0;
out:
    mf_buf_free(&b);
    return rc;
}

const char *mf_plan_state_name(mf_plan_state s)
{
    static const char *names[] = {"cached", "stale", "waiting", "done", "failed", "skipped"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "?";
}

/* ---- components ---- */

static int source_digest(mf_plan *p, size_t si, mf_err *err)
{
    if (p->src_digest[si][0]) return 0;
    const mf_source *s = &p->g->sources[si];
    int rc = p->io.source_digest(p->io.ctx, s->abs_path, p->src_digest[si], err);
    if (rc) return mf_err_wrap(err, "source '%s'", s->name);
    return 0;
}

/* The inputs object of stage s: slot -> [digest, or null where the upstream output is not known
 * yet]. MF_ENOMEM is returned unreported. */
static int inputs_json(mf_plan *p, const mf_stage *s, mf_json *in, long *unknown, mf_err *err)
{
    for (size_t b = 0; b < s->n_inputs; b++) {
        const mf_binding *bd = &s->inputs[b];
        mf_json *arr = mf_json_new_array();
        if (!arr || mf_json_set(in, bd->slot, arr)) return MF_ENOMEM;
        for (size_t r = 0; r < bd->n_refs; r++) {
            const mf_ref *ref = &bd->refs[r];
            const char *d = NULL;
            if (ref->is_source) {
                int rc = source_digest(p, ref->index, err);
                if (rc) return rc;
                d = p->src_digest[ref->index];
            } else {
                const mf_plan_stage *u = &p->st[ref->index];
                if (u->state == MF_PS_CACHED || u->state == MF_PS_DONE) d = u->output;
                else if (*unknown < 0) *unknown = (long)ref->index;
            }
            mf_json *v;
            if (!d) v = mf_json_new_null();
            else if (ref->subpath) {
                mf_buf t = MF_BUF_INIT;
                mf_buf_printf(&t, "%s/%s", d, ref->subpath);
                v = mf_buf_ok(&t) ? mf_json_new_str(mf_buf_cstr(&t)) : NULL;
                mf_buf_free(&t);
            } else v = mf_json_new_str(d);
            if (!v || mf_json_push(arr, v)) return MF_ENOMEM;
        }
    }
    return 0;
}

/* Components of stage i. An input from a stage whose output is not known yet
 * is null and *unknown is set to that stage's index (else -1). */
static int build_components(mf_plan *p, size_t i, mf_json **out, long *unknown, mf_err *err)
{
    const mf_stage *s = &p->g->stages[i];
    *unknown = -1;
    *out = NULL;
    mf_json *c = mf_json_new_object(), *in = mf_json_new_object();
    mf_json *params = s->params ? mf_json_clone(s->params) : mf_json_new_object();
    int rc = MF_ENOMEM;
    if (!c || !in || !params) goto out;
    if ((rc = inputs_json(p, s, in, unknown, err))) goto out;
    rc = MF_ENOMEM;
    if (mf_json_set(c, "kind", mf_json_new_str(s->kind->name)) ||
        mf_json_set(c, "kind_version", mf_json_new_int(s->kind->version)))
        goto out;
    mf_json *taken = params;
    params = NULL; /* c owns it from here, also when the set fails */
    if (mf_json_set(c, "params", taken)) goto out;
    taken = in;
    in = NULL;
    if (mf_json_set(c, "inputs", taken)) goto out;
    if (mf_json_set(c, "seed", mf_json_new_int((int64_t)s->seed)) ||
        mf_json_set(c, "precision", mf_json_new_str(s->precision ? s->precision : "fp32")))
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (rc == MF_ENOMEM) rc = mf_err_set(err, MF_ENOMEM, "out of memory building the key of stage '%s'", s->name);
    mf_json_free(c);
    mf_json_free(in);
    mf_json_free(params);
    return rc;
}

/* ---- reasons ---- */

static int add_reason(mf_plan_stage *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_reason(mf_plan_stage *st, const char *fmt, ...)
{
    mf_buf b = MF_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    mf_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char **r = realloc(st->reasons, (st->n_reasons + 1) * sizeof *r);
    if (!r || !mf_buf_ok(&b)) { mf_buf_free(&b); free(r == st->reasons ? NULL : r); return MF_ENOMEM; }
    st->reasons = r;
    r[st->n_reasons++] = mf_buf_steal(&b);
    return 0;
}

static void clear_reasons(mf_plan_stage *st)
{
    for (size_t k = 0; k < st->n_reasons; k++) free(st->reasons[k]);
    free(st->reasons);
    st->reasons = NULL;
    st->n_reasons = 0;
}

/* A value as the user reads it: strings bare, numbers canonical, lists as JSON. */
static char *show(const mf_json *v)
{
    mf_buf b = MF_BUF_INIT;
    if (!v) mf_buf_puts(&b, "(unset)");
    else if (v->type == MF_JSON_STRING) mf_buf_append(&b, v->s, v->slen);
    else mf_json_write(&b, v, MF_JSON_SORTED);
    return mf_buf_ok(&b) ? mf_buf_steal(&b) : (mf_buf_free(&b), NULL);
}

static void short_digest(const mf_json *v, char *buf, size_t n)
{
    const char *d = mf_json_str(v, NULL);
    if (!d) { snprintf(buf, n, "(none)"); return; }
    const char *hex = strncmp(d, "sha256:", 7) ? d : d + 7;
    const char *sub = strchr(hex, '/');
    snprintf(buf, n, "sha256:%.12s…%s", hex, sub ? sub : "");
}

static int diff_inputs(mf_plan_stage *st, const mf_json *old, const mf_json *cur)
{
    for (size_t k = 0; cur && k < cur->n; k++) {
        const char *slot = cur->keys[k];
        const mf_json *a = mf_json_get(old, slot), *b = cur->items[k];
        int unknown = 0;
        for (size_t r = 0; r < b->n; r++) unknown |= b->items[r]->type == MF_JSON_NULL;
        if (unknown) continue; /* decided once the upstream has run */
        if (!a) { add_reason(st, "input slot `%s` added", slot); continue; }
        if (mf_json_equal(a, b)) continue;
        if (a->type == MF_JSON_ARRAY && a->n == 1 && b->n == 1) {
            char x[64], y[64];
            short_digest(a->items[0], x, sizeof x);
            short_digest(b->items[0], y, sizeof y);
            add_reason(st, "input slot `%s` changed `%s→%s`", slot, x, y);
        } else if (a->type == MF_JSON_ARRAY && a->n != b->n) {
            add_reason(st, "input slot `%s` changed (%zu inputs → %zu)", slot, a->n, b->n);
        } else {
            for (size_t r = 0; r < b->n && a->type == MF_JSON_ARRAY; r++) {
                if (mf_json_equal(a->items[r], b->items[r])) continue;
                char x[64], y[64];
                short_digest(a->items[r], x, sizeof x);
                short_digest(b->items[r], y, sizeof y);
                add_reason(st, "input slot `%s`[%zu] changed `%s→%s`", slot, r, x, y);
            }
        }
    }
    for (size_t k = 0; old && k < old->n; k++)
        if (!mf_json_get(cur, old->keys[k])) add_reason(st, "input slot `%s` removed", old->keys[k]);
    return 0;
}

static void diff_value(mf_plan_stage *st, const char *what, const mf_json *a, const mf_json *b)
{
    if (mf_json_equal(a, b)) return;
    char *x = show(a), *y = show(b);
    add_reason(st, "%s changed `%s→%s`", what, x ? x : "?", y ? y : "?");
    free(x);
    free(y);
}

static void diff_components(mf_plan_stage *st, const mf_json *old, const mf_json *cur)
{
    diff_value(st, "kind", mf_json_get(old, "kind"), mf_json_get(cur, "kind"));
    const mf_json *va = mf_json_get(old, "kind_version"), *vb = mf_json_get(cur, "kind_version");
    if (!mf_json_equal(va, vb) && mf_json_equal(mf_json_get(old, "kind"), mf_json_get(cur, "kind")))
        add_reason(st, "kind version %s %lld→%lld",
                   mf_json_int(va, 0) < mf_json_int(vb, 0) ? "bumped" : "changed",
                   (long long)mf_json_int(va, 0), (long long)mf_json_int(vb, 0));
    diff_inputs(st, mf_json_get(old, "inputs"), mf_json_get(cur, "inputs"));
    const mf_json *pa = mf_json_get(old, "params"), *pb = mf_json_get(cur, "params");
    for (size_t k = 0; pb && k < pb->n; k++) {
        char what[300];
        snprintf(what, sizeof what, "param `%s`", pb->keys[k]);
        const mf_json *a = mf_json_get(pa, pb->keys[k]);
        if (!a) {
            char *y = show(pb->items[k]);
            add_reason(st, "param `%s` added `%s`", pb->keys[k], y ? y : "?");
            free(y);
        } else diff_value(st, what, a, pb->items[k]);
    }
    for (size_t k = 0; pa && k < pa->n; k++)
        if (!mf_json_get(pb, pa->keys[k])) add_reason(st, "param `%s` removed", pa->keys[k]);
    diff_value(st, "seed", mf_json_get(old, "seed"), mf_json_get(cur, "seed"));
    diff_value(st, "precision", mf_json_get(old, "precision"), mf_json_get(cur, "precision"));
}

/* ---- plan state ---- */

int mf_plan_state_load(mf_json **out, const char *path, mf_err *err)
{
    *out = NULL;
    if (!path || !mf_is_file(path)) {
        *out = mf_json_new_object();
        return *out ? 0 : mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    mf_json *v = NULL;
    int rc = mf_json_parse_file(&v, path, err);
    if (rc) return rc;
    mf_json *stages = mf_json_get(v, "stages");
    if (!stages || stages->type != MF_JSON_OBJECT) {
        mf_json_free(v);
        return mf_err_set(err, MF_ECORRUPT, "%s: expected an object with \"stages\"", path);
    }
    /* detach "stages" from the root */
    int idx = mf_json_key_index(v, "stages");
    v->items[idx] = mf_json_new_null();
    mf_json_free(v);
    *out = stages;
    return 0;
}

static const mf_json *prev_of(mf_plan *p, size_t i)
{
    if (!p->prev_loaded) {
        p->prev_loaded = 1;
        mf_err e;
        if (mf_plan_state_load(&p->prev, p->state_path, &e)) p->prev = NULL; /* no history: "never ran" */
    }
    return p->prev ? mf_json_get(p->prev, p->g->stages[i].name) : NULL;
}

/* The saved state's keys, sorted, for lookups by stage name: mf_json_get scans, and one scan per
 * stage was quadratic (most of a one-source change's CPU at 10,000 stages). */
typedef struct { const mf_json *obj; size_t *idx; size_t n; } key_index;

static const mf_json *g_sort_obj; /* qsort has no context argument; one sort at a time */

static int cmp_idx(const void *a, const void *b)
{
    return strcmp(g_sort_obj->keys[*(const size_t *)a], g_sort_obj->keys[*(const size_t *)b]);
}

static int index_build(key_index *x, const mf_json *obj)
{
    x->obj = obj;
    x->n = obj->n;
    if (!(x->idx = malloc((x->n ? x->n : 1) * sizeof *x->idx))) return MF_ENOMEM;
    for (size_t k = 0; k < x->n; k++) x->idx[k] = k;
    g_sort_obj = obj;
    if (x->n > 1) qsort(x->idx, x->n, sizeof *x->idx, cmp_idx);
    return 0;
}

/* Position of key in the object as indexed (keys appended later are not in the index), or -1. */
static long index_find(const key_index *x, const char *key)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(x->obj->keys[x->idx[mid]], key);
        if (!c) return (long)x->idx[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* key's value set to val (replacing the indexed one, else appended: stage names are unique). */
static int index_set(const key_index *x, mf_json *obj, const char *key, mf_json *val)
{
    long at = index_find(x, key);
    if (at < 0) return mf_json_append(obj, key, val, 0, 0);
    if (!val) return MF_ENOMEM;
    mf_json_free(obj->items[at]);
    obj->items[at] = val;
    return 0;
}

static int save_stages(mf_plan *p, const key_index *x, mf_err *err);

int mf_plan_state_save(mf_plan *p, mf_err *err)
{
    if (!p->state_path) return 0;
    prev_of(p, 0);
    if (!p->prev && !(p->prev = mf_json_new_object())) return mf_err_set(err, MF_ENOMEM, "out of memory");
    key_index x = {0};
    if (index_build(&x, p->prev)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = save_stages(p, &x, err);
    free(x.idx);
    return rc;
}

/* Merge what this plan decided into p->prev and write it. */
static int save_stages(mf_plan *p, const key_index *x, mf_err *err)
{
    int changed = 0;
    for (size_t i = 0; i < p->g->n_stages; i++) {
        mf_plan_stage *st = &p->st[i];
        if (st->saved) continue;
        if (st->state == MF_PS_FAILED && st->key[0] && st->failed_run[0]) {
            st->saved = 1;
            /* keep the last good components; remember which key failed, and where */
            long at = index_find(x, p->g->stages[i].name);
            mf_json *old = at >= 0 ? p->prev->items[at] : NULL;
            if (!old) {
                if (!(old = mf_json_new_object()) || mf_json_append(p->prev, p->g->stages[i].name, old, 0, 0))
                    return mf_err_set(err, MF_ENOMEM, "out of memory");
            }
            if (mf_json_set(old, "failed_key", mf_json_new_str(st->key)) ||
                mf_json_set(old, "failed_run", mf_json_new_str(st->failed_run)) ||
                mf_json_set(old, "failed_how", mf_json_new_str(st->interrupted ? "was interrupted" : "failed")))
                return mf_err_set(err, MF_ENOMEM, "out of memory");
            changed = 1;
            continue;
        }
        if ((st->state != MF_PS_CACHED && st->state != MF_PS_DONE) || !st->components) continue;
        st->saved = 1;
        long at = index_find(x, p->g->stages[i].name);
        const mf_json *old = at >= 0 ? p->prev->items[at] : NULL;
        if (old && !strcmp(mf_json_get_str(old, "key", ""), st->key) && !mf_json_get(old, "failed_key")) continue;
        mf_json *rec = mf_json_new_object();
        if (!rec || mf_json_set(rec, "key", mf_json_new_str(st->key)) ||
            mf_json_set(rec, "output", mf_json_new_str(st->output)) ||
            mf_json_set(rec, "components", mf_json_clone(st->components)) ||
            index_set(x, p->prev, p->g->stages[i].name, rec))
            return mf_err_set(err, MF_ENOMEM, "out of memory");
        changed = 1;
    }
    if (!changed) return 0;
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "{\"version\":1,\"graph\":");
    mf_json_write_str(&b, p->g->name ? p->g->name : "", p->g->name ? strlen(p->g->name) : 0);
    mf_buf_puts(&b, ",\"stages\":");
    mf_json_write(&b, p->prev, MF_JSON_SORTED);
    mf_buf_puts(&b, "}\n");
    char *dir = NULL;
    int rc;
    if (!mf_buf_ok(&b) || !(dir = mf_path_dirname(p->state_path))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    rc = mf_write_file_atomic(p->state_path, b.data, b.len, 0644, err);
out:
    free(dir);
    mf_buf_free(&b);
    return rc;
}

/* ---- deciding ---- */

int mf_plan_resolve(mf_plan *p, size_t i, mf_err *err)
{
    mf_plan_stage *st = &p->st[i];
    st->saved = 0;
    mf_json *c = NULL;
    long unknown;
    int rc = build_components(p, i, &c, &unknown, err);
    if (rc) return rc;
    mf_json_free(st->components);
    st->components = c;
    clear_reasons(st);
    st->key[0] = 0;
    st->waiting_on = unknown;
    if (unknown >= 0) {
        /* Early cut-off needs the upstream's output: decide later, but say what we know. */
        st->state = MF_PS_WAITING;
        add_reason(st, "waiting on stale upstream `%s`", p->g->stages[unknown].name);
        const mf_json *prev = prev_of(p, i);
        if (prev) diff_components(st, mf_json_get(prev, "components"), c);
        return 0;
    }
    if ((rc = mf_plan_key_hash(c, st->key))) return mf_err_set(err, rc, "hashing the key of '%s'", p->g->stages[i].name);
    int hit = p->io.cache_get(p->io.ctx, st->key, st->output, err);
    if (hit < 0) return mf_err_wrap(err, "action cache lookup for stage '%s'", p->g->stages[i].name);
    if (hit && !st->forced) { st->state = MF_PS_CACHED; return 0; }
    st->state = MF_PS_STALE;
    if (!hit) st->output[0] = 0;
    if (st->forced) add_reason(st, "forced (--force)");
    const mf_json *prev = prev_of(p, i);
    size_t before = st->n_reasons;
    int had_fail = prev && !strcmp(mf_json_get_str(prev, "failed_key", ""), st->key);
    if (had_fail) {
        add_reason(st, "the last attempt %s (run %s)", mf_json_get_str(prev, "failed_how", "failed"),
                   mf_json_get_str(prev, "failed_run", "?"));
        before = st->n_reasons;
    }
    const mf_json *pc = prev ? mf_json_get(prev, "components") : NULL;
    if (!pc) {
        if (!had_fail) add_reason(st, "never ran");
    } else diff_components(st, pc, c);
    if (st->n_reasons == before && !hit)
        add_reason(st, "no cached output for this key (the last attempt failed or was interrupted, or the store was cleaned)");
    return 0;
}

void mf_plan_mark_failed(mf_plan *p, size_t i, const char *run_id, int interrupted)
{
    mf_plan_stage *st = &p->st[i];
    st->state = MF_PS_FAILED;
    st->saved = 0;
    st->interrupted = interrupted;
    snprintf(st->failed_run, sizeof st->failed_run, "%s", run_id ? run_id : "");
}

int mf_plan_mark_done(mf_plan *p, size_t i, const char *output_digest)
{
    mf_plan_stage *st = &p->st[i];
    st->state = MF_PS_DONE;
    st->saved = 0;
    snprintf(st->output, sizeof st->output, "%s", output_digest);
    return 0;
}

size_t mf_plan_count(const mf_plan *p, mf_plan_state s)
{
    size_t n = 0;
    for (size_t i = 0; i < p->g->n_stages; i++) n += p->st[i].needed && p->st[i].state == s;
    return n;
}

static int mark_needed(mf_plan *p, size_t i)
{
    /* iterative DFS over deps */
    size_t cap = 64, n = 0;
    size_t *stack = malloc(cap * sizeof *stack);
    if (!stack) return MF_ENOMEM;
    stack[n++] = i;
    while (n) {
        size_t s = stack[--n];
        if (p->st[s].needed) continue;
        p->st[s].needed = 1;
        const mf_stage *sg = &p->g->stages[s];
        for (size_t d = 0; d < sg->n_deps; d++) {
            if (p->st[sg->deps[d]].needed) continue;
            if (n == cap) {
                size_t *t = realloc(stack, (cap *= 2) * sizeof *t);
                if (!t) { free(stack); return MF_ENOMEM; }
                stack = t;
            }
            stack[n++] = sg->deps[d];
        }
    }
    free(stack);
    return 0;
}

int mf_plan_new(mf_plan **out, const mf_graph *g, const mf_plan_io *io, const mf_plan_opts *opts,
                mf_err *err)
{
    *out = NULL;
    mf_plan *p = calloc(1, sizeof *p);
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    p->g = g;
    p->io = *io;
    p->st = calloc(g->n_stages ? g->n_stages : 1, sizeof *p->st);
    p->src_digest = calloc(g->n_sources ? g->n_sources : 1, sizeof *p->src_digest);
    if (opts && opts->state_path) p->state_path = strdup(opts->state_path);
    int rc = 0;
    if (!p->st || !p->src_digest || (opts && opts->state_path && !p->state_path)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < g->n_stages; i++) p->st[i].waiting_on = -1;
    if (opts && opts->n_targets) {
        for (size_t t = 0; t < opts->n_targets; t++) {
            long i = mf_graph_stage_index(g, opts->targets[t]);
            if (i < 0) {
                rc = mf_err_set(err, MF_EINVAL, "no stage named '%s' in graph '%s'", opts->targets[t], g->name);
                goto out;
            }
            if (mark_needed(p, (size_t)i)) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
        }
    } else {
        for (size_t i = 0; i < g->n_stages; i++) p->st[i].needed = 1;
    }
    for (size_t f = 0; opts && f < opts->n_force; f++) {
        long i = mf_graph_stage_index(g, opts->force[f]);
        if (i < 0) {
            rc = mf_err_set(err, MF_EINVAL, "--force: no stage named '%s' in graph '%s'", opts->force[f], g->name);
            goto out;
        }
        p->st[i].forced = 1;
    }
    for (size_t k = 0; k < g->n_stages; k++) {
        size_t i = g->topo[k];
        if (!p->st[i].needed) {
            p->st[i].state = MF_PS_SKIPPED;
            continue;
        }
        if ((rc = mf_plan_resolve(p, i, err))) goto out;
    }
    *out = p;
    p = NULL;
out:
    mf_plan_free(p);
    return rc;
}

void mf_plan_free(mf_plan *p)
{
    if (!p) return;
    for (size_t i = 0; p->st && i < p->g->n_stages; i++) {
        clear_reasons(&p->st[i]);
        mf_json_free(p->st[i].components);
    }
    free(p->st);
    free(p->src_digest);
    free(p->state_path);
    mf_json_free(p->prev);
    free(p);
}

/* ---- status ---- */

int mf_plan_write_status(const mf_plan *p, mf_buf *out, int json)
{
    const mf_graph *g = p->g;
    if (json) {
        mf_buf_puts(out, "[");
        int first = 1;
        for (size_t k = 0; k < g->n_stages; k++) {
            size_t i = g->topo[k];
            const mf_plan_stage *st = &p->st[i];
            if (!st->needed) continue;
            mf_buf_puts(out, first ? "\n  {\"stage\": " : ",\n  {\"stage\": ");
            first = 0;
            mf_json_write_str(out, g->stages[i].name, strlen(g->stages[i].name));
            mf_buf_printf(out, ", \"state\": \"%s\", \"key\": ", mf_plan_state_name(st->state));
            if (st->key[0]) mf_buf_printf(out, "\"sha256:%s\"", st->key);
            else mf_buf_puts(out, "null");
            mf_buf_puts(out, ", \"output\": ");
            if (st->state == MF_PS_CACHED || st->state == MF_PS_DONE) mf_buf_printf(out, "\"%s\"", st->output);
            else mf_buf_puts(out, "null");
            mf_buf_puts(out, ", \"reasons\": [");
            for (size_t r = 0; r < st->n_reasons; r++) {
                if (r) mf_buf_puts(out, ", ");
                mf_json_write_str(out, st->reasons[r], strlen(st->reasons[r]));
            }
            mf_buf_puts(out, "]}");
        }
        mf_buf_puts(out, first ? "]\n" : "\n]\n");
        return mf_buf_ok(out) ? 0 : MF_ENOMEM;
    }
    size_t w = 1;
    for (size_t i = 0; i < g->n_stages; i++)
        if (p->st[i].needed && strlen(g->stages[i].name) > w) w = strlen(g->stages[i].name);
    if (w > 40) w = 40;
    for (size_t k = 0; k < g->n_stages; k++) {
        size_t i = g->topo[k];
        const mf_plan_stage *st = &p->st[i];
        if (!st->needed) continue;
        mf_buf_printf(out, "%-*s  %s", (int)w, g->stages[i].name, mf_plan_state_name(st->state));
        for (size_t r = 0; r < st->n_reasons; r++) mf_buf_printf(out, "%s%s", r ? "; " : ": ", st->reasons[r]);
        mf_buf_putc(out, '\n');
    }
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}
