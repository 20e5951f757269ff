/*
 * stages/kinds/kind_kg2qa.c — the `kg2qa` kind: KG triples -> QA conversations through
 * template tables, in the style of ClinicalGPT's appendix.
 *
 * Triples are grouped by (subject, relation) in order of first appearance;
 * repeated objects are dropped. A group's objects, in order, are cut into
 * chunks of at most `max_objects`; each chunk gives one answer (objects
 * joined by the table's "joiner") and 1 (phrasings = 0) or `phrasings`
 * distinct questions (capped at the table's count), each a QA conversation.
 * Question and answer templates are drawn with a splitmix64 stream seeded by
 * mix(seed) ^ hash(subject, relation, chunk) — the draw of a group does not
 * depend on the other triples. Tables (docs/data.md):
 *   {"joiner": "、",
 *    "relations": {"症状": {"questions": ["{subject}有哪些症状？", ...], "answers": [...]}, ...},
 *    "default": {"questions": [...], "answers": [...]}}      (relations not listed; optional)
 * Placeholders: {subject} {relation} {objects} {subject_type} {object_type}.
 * A relation with no table and no default is an error (or skipped with
 * on_bad_record: skip and counted).
 *
 * Phrasing split (param `phrasing`, shared with kg2mcq): the LAST question of a
 * relation's table is its held-out phrasing. `train` draws questions from the
 * others only, `heldout` from it only, `all` (default) from every one — so QA
 * written with `train` and an exam written with `heldout` never share a
 * question wording (a table needs two questions for the split).
 * The table loading, checking, expansion and the split are shared with
 * kind_kg2mcq.c (mf_kg2qa_* in kinds.h).
 */
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

typedef struct {
    char *subject, *relation, *stype, *otype;
    char **objs;
    size_t n, cap;
} group;

typedef struct {
    group *g;
    size_t n, cap;
    uint64_t *keys; /* hash -> group index + 1, open addressing */
    size_t *vals;
    size_t hcap;
} groups;

static uint64_t key_hash(const char *s, const char *r)
{
    uint64_t h = mf_hash64(s, strlen(s), 0x6b67);
    return mf_hash64(r, strlen(r), h) | 1;
}

static int groups_rehash(groups *G)
{
    size_t nc = G->hcap ? G->hcap * 2 : 4096;
    uint64_t *nk = calloc(nc, sizeof *nk);
    size_t *nv = calloc(nc, sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return MF_ENOMEM;
    }
    for (size_t k = 0; k < G->hcap; k++) {
        if (!G->keys[k]) continue;
        size_t j = G->keys[k] & (nc - 1);
        while (nk[j]) j = (j + 1) & (nc - 1);
        nk[j] = G->keys[k];
        nv[j] = G->vals[k];
    }
    free(G->keys);
    free(G->vals);
    G->keys = nk;
    G->vals = nv;
    G->hcap = nc;
    return 0;
}

static int push_str(char ***arr, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        char **na = realloc(*arr, nc * sizeof *na);
        if (!na) return MF_ENOMEM;
        *arr = na;
        *cap = nc;
    }
    if (!((*arr)[*n] = strdup(s))) return MF_ENOMEM;
    (*n)++;
    return 0;
}

static int groups_add(groups *G, const mf_triple *t)
{
    if ((G->n + 1) * 2 > G->hcap && groups_rehash(G)) return MF_ENOMEM;
    uint64_t h = key_hash(t->subject, t->relation);
    size_t j = h & (G->hcap - 1);
    group *g = NULL;
    for (; G->keys[j]; j = (j + 1) & (G->hcap - 1)) {
        group *c = &G->g[G->vals[j]];
        if (G->keys[j] == h && !strcmp(c->subject, t->subject) && !strcmp(c->relation, t->relation)) {
            g = c;
            break;
        }
    }
    if (!g) {
        if (G->n == G->cap) {
            size_t nc = G->cap ? G->cap * 2 : 1024;
            group *ng = realloc(G->g, nc * sizeof *ng);
            if (!ng) return MF_ENOMEM;
            G->g = ng;
            G->cap = nc;
        }
        g = &G->g[G->n];
        memset(g, 0, sizeof *g);
        if (!(g->subject = strdup(t->subject)) || !(g->relation = strdup(t->relation)) ||
            !(g->stype = strdup(t->subject_type)) || !(g->otype = strdup(t->object_type)))
            return MF_ENOMEM;
        G->keys[j] = h;
        G->vals[j] = G->n++;
    }
    for (size_t k = 0; k < g->n; k++)
        if (!strcmp(g->objs[k], t->object)) return 0; /* repeated object */
    return push_str(&g->objs, &g->n, &g->cap, t->object);
}

static void groups_free(groups *G)
{
    for (size_t k = 0; k < G->n; k++) {
        group *g = &G->g[k];
        free(g->subject);
        free(g->relation);
        free(g->stype);
        free(g->otype);
        for (size_t j = 0; j < g->n; j++) free(g->objs[j]);
        free(g->objs);
    }
    free(G->g);
    free(G->keys);
    free(G->vals);
}

/* ---- template tables ---- */

static const char *const placeholders[] = {"subject", "relation", "objects", "subject_type", "object_type", NULL};

static int check_template(const char *s, const char *where, mf_err *err)
{
    for (const char *p = s; (p = strchr(p, '{')); p++) {
        const char *e = strchr(p, '}');
        if (!e) return mf_err_set(err, MF_EINVAL, "kg2qa templates: %s: unclosed '{' in \"%s\"", where, s);
        int ok = 0;
        for (size_t k = 0; placeholders[k]; k++)
            if (strlen(placeholders[k]) == (size_t)(e - p - 1) && !strncmp(p + 1, placeholders[k], (size_t)(e - p - 1))) ok = 1;
        if (!ok)
            return mf_err_set(err, MF_EINVAL, "kg2qa templates: %s: unknown placeholder '%.*s' (expected {subject} {relation} {objects} {subject_type} {object_type})",
                              where, (int)(e - p + 1), p);
    }
    return 0;
}

static int check_entry(const mf_json *e, const char *name, mf_err *err)
{
    if (!e || e->type != MF_JSON_OBJECT) return mf_err_set(err, MF_EINVAL, "kg2qa templates: '%s': expected an object {questions, answers}", name);
    static const char *const lists[] = {"questions", "answers"};
    for (int l = 0; l < 2; l++) {
        const mf_json *a = mf_json_get(e, lists[l]);
        if (!a || a->type != MF_JSON_ARRAY || !a->n)
            return mf_err_set(err, MF_EINVAL, "kg2qa templates: '%s'.%s: expected a non-empty list of strings", name, lists[l]);
        for (size_t k = 0; k < a->n; k++) {
            char where[512];
            snprintf(where, sizeof where, "'%s'.%s[%zu]", name, lists[l], k);
            if (a->items[k]->type != MF_JSON_STRING) return mf_err_set(err, MF_EINVAL, "kg2qa templates: %s: expected a string", where);
            int rc = check_template(a->items[k]->s, where, err);
            if (rc) return rc;
        }
    }
    return 0;
}

int mf_kg2qa_tables_load(const mf_stage_ctx *ctx, mf_json **out)
{
    const char *path = mf_stage_input_path(ctx, "templates");
    int rc;
    mf_json *t = NULL;
    if (path) {
        char *file = NULL;
        if (mf_is_dir(path)) {
            file = mf_path_join(path, "templates.json");
            if (file && !mf_is_file(file)) {
                free(file);
                file = mf_path_join(path, "kg2qa_templates.json");
            }
            if (!file) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
        }
        rc = mf_json_parse_file(&t, file ? file : path, ctx->err);
        free(file);
    } else {
        rc = mf_json_parse(&t, mf_kg2qa_default_templates, strlen(mf_kg2qa_default_templates), "kg2qa_templates.json", ctx->err);
    }
    if (rc) return rc;
    const mf_json *rel = mf_json_get(t, "relations");
    if (t->type != MF_JSON_OBJECT || !rel || rel->type != MF_JSON_OBJECT)
        rc = mf_err_set(ctx->err, MF_EINVAL, "kg2qa templates: expected an object with \"relations\": {relation: {questions, answers}}");
    for (size_t k = 0; !rc && k < rel->n; k++) rc = check_entry(rel->items[k], rel->keys[k], ctx->err);
    if (!rc && mf_json_get(t, "default")) rc = check_entry(mf_json_get(t, "default"), "default", ctx->err);
    const mf_json *j = mf_json_get(t, "joiner");
    if (!rc && j && j->type != MF_JSON_STRING) rc = mf_err_set(ctx->err, MF_EINVAL, "kg2qa templates: 'joiner' must be a string");
    if (rc) {
        if (path && !ctx->err->file[0]) mf_err_wrap(ctx->err, "%s", path);
        mf_json_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void mf_kg2qa_expand(mf_buf *b, const char *tpl, const mf_triple *g, const char *objects)
{
    mf_buf_reset(b);
    for (const char *p = tpl; *p;) {
        const char *e = *p == '{' ? strchr(p, '}') : NULL;
        if (e) {
            size_t n = (size_t)(e - p - 1);
            const char *v = NULL;
            if (n == 7 && !strncmp(p + 1, "subject", n)) v = g->subject;
            else if (n == 8 && !strncmp(p + 1, "relation", n)) v = g->relation;
            else if (n == 7 && !strncmp(p + 1, "objects", n)) v = objects;
            else if (n == 12 && !strncmp(p + 1, "subject_type", n)) v = g->subject_type;
            else if (n == 11 && !strncmp(p + 1, "object_type", n)) v = g->object_type;
            if (v) {
                mf_buf_puts(b, v);
                p = e + 1;
                continue;
            }
        }
        mf_buf_putc(b, *p++);
    }
}

int mf_kg2qa_phrasing_parse(const char *name)
{
    return !strcmp(name, "train") ? MF_KG_PHRASING_TRAIN : !strcmp(name, "heldout") ? MF_KG_PHRASING_HELDOUT : MF_KG_PHRASING_ALL;
}

int mf_kg2qa_questions(const mf_json *entry, int phrasing, const char *relation, size_t *first, size_t *n, mf_err *err)
{
    const mf_json *qs = mf_json_get(entry, "questions");
    *first = 0;
    *n = qs->n;
    if (phrasing == MF_KG_PHRASING_ALL) return 0;
    if (qs->n < 2)
        return mf_err_set(err, MF_EINVAL,
                          "kg templates: relation '%s' has %zu question phrasing; phrasing: %s needs at least 2 "
                          "(the last one is held out)",
                          relation, qs->n, phrasing == MF_KG_PHRASING_TRAIN ? "train" : "heldout");
    if (phrasing == MF_KG_PHRASING_TRAIN) *n = qs->n - 1;
    else *first = qs->n - 1, *n = 1;
    return 0;
}

int mf_stage_kg2qa_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    long long max_objects = mf_stage_param_int(ctx, "max_objects", 8);
    long long phrasings = mf_stage_param_int(ctx, "phrasings", 0);
    int split = mf_kg2qa_phrasing_parse(mf_stage_param_str(ctx, "phrasing", "all"));
    if (max_objects < 1) return mf_err_set(err, MF_EINVAL, "kg2qa: max_objects must be >= 1");
    mf_json *tables = NULL;
    int rc = mf_kg2qa_tables_load(ctx, &tables);
    if (rc) return rc;
    const mf_json *rel = mf_json_get(tables, "relations"), *def = mf_json_get(tables, "default");
    const char *joiner = mf_json_get_str(tables, "joiner", "、");

    groups G = {0};
    mf_rd *rd = NULL;
    long long triples = 0, no_table = 0;
    rc = mf_data_open(ctx, "data", &rd);
    while (!rc) {
        mf_json *rec = NULL;
        rc = mf_reader_next(rd, &rec, err);
        if (rc <= 0) break;
        rc = 0;
        mf_data_tick(ctx, rd, "reading triples");
        mf_triple t;
        char why[512];
        if (mf_reader_triple(rec, &t, why, sizeof why)) {
            rc = mf_reader_reject(rd, err, "%s", why);
        } else if (!mf_json_get(rel, t.relation) && !def) {
            rc = mf_reader_reject(rd, err, "relation '%s' has no template table and the tables have no \"default\"", t.relation);
            if (!rc) no_table++;
        } else {
            triples++;
            if (groups_add(&G, &t)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        mf_json_free(rec);
    }
    mf_dout out = {0};
    mf_buf objs = MF_BUF_INIT, q = MF_BUF_INIT, a = MF_BUF_INIT;
    mf_json *per_rel = mf_json_new_object();
    if (!rc) rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err);
    for (size_t gi = 0; gi < G.n && !rc; gi++) {
        const group *g = &G.g[gi];
        const mf_json *e = mf_json_get(rel, g->relation);
        if (!e) e = def;
        const mf_json *qs = mf_json_get(e, "questions"), *as = mf_json_get(e, "answers");
        size_t q0, qn;
        mf_triple gt = {g->subject, g->relation, "", g->stype, g->otype};
        if ((rc = mf_kg2qa_questions(e, split, g->relation, &q0, &qn, err))) break;
        for (size_t c0 = 0, chunk = 0; c0 < g->n && !rc; c0 += (size_t)max_objects, chunk++) {
            size_t c1 = c0 + (size_t)max_objects < g->n ? c0 + (size_t)max_objects : g->n;
            mf_buf_reset(&objs);
            for (size_t k = c0; k < c1; k++) {
                if (k > c0) mf_buf_puts(&objs, joiner);
                mf_buf_puts(&objs, g->objs[k]);
            }
            mf_rng rng;
            uint64_t cs = (uint64_t)chunk;
            mf_rng_seed(&rng, mf_mix64(ctx->seed) ^ mf_hash64(&cs, sizeof cs, key_hash(g->subject, g->relation)));
            size_t nq = phrasings > 0 ? (size_t)phrasings : 1;
            if (nq > qn) nq = qn;
            size_t avail = qn;
            size_t *order = malloc(avail * sizeof *order);
            if (!order) {
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                break;
            }
            for (size_t k = 0; k < avail; k++) order[k] = q0 + k;
            for (size_t k = 0; k < nq; k++) { /* partial Fisher-Yates */
                size_t j = k + (size_t)mf_rng_below(&rng, avail - k), tmp = order[k];
                order[k] = order[j];
                order[j] = tmp;
            }
            const char *atpl = as->items[mf_rng_below(&rng, as->n)]->s;
            mf_kg2qa_expand(&a, atpl, &gt, mf_buf_cstr(&objs));
            for (size_t k = 0; k < nq && !rc; k++) {
                mf_kg2qa_expand(&q, qs->items[order[k]]->s, &gt, mf_buf_cstr(&objs));
                mf_conv c;
                mf_conv_init(&c);
                if (!mf_buf_ok(&q) || !mf_buf_ok(&a) || !mf_buf_ok(&objs) || mf_conv_add(&c, MF_ROLE_HUMAN, mf_buf_cstr(&q), q.len) ||
                    mf_conv_add(&c, MF_ROLE_GPT, mf_buf_cstr(&a), a.len) || !(c.meta = mf_json_new_object())) {
                    mf_conv_free(&c);
                    rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                    break;
                }
                mf_json_set(c.meta, "source", mf_json_new_str("kg"));
                mf_json_set(c.meta, "subject", mf_json_new_str(g->subject));
                mf_json_set(c.meta, "relation", mf_json_new_str(g->relation));
                mf_json_set(c.meta, "objects", mf_json_new_int((int64_t)(c1 - c0)));
                mf_buf line = MF_BUF_INIT;
                rc = mf_conv_write_line(&line, &c);
                if (!rc) rc = mf_data_out_line(&out, line.data, line.len - 1, err);
                else mf_err_set(err, rc, "out of memory");
                mf_buf_free(&line);
                mf_conv_free(&c);
                if (per_rel) mf_json_set(per_rel, g->relation, mf_json_new_int(mf_json_get_int(per_rel, g->relation, 0) + 1));
            }
            free(order);
        }
    }
    int rc2 = mf_data_out_close(&out, rc ? NULL : err);
    if (!rc) rc = rc2;
    if (!rc) {
        mf_json *stats = mf_json_new_object();
        mf_stats_str(stats, "kind", "kg2qa");
        mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
        mf_stats_int(stats, "triples", triples);
        mf_stats_int(stats, "groups", (long long)G.n);
        mf_stats_int(stats, "rows_out", out.rows);
        mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
        mf_stats_int(stats, "dropped_no_template", no_table);
        mf_stats_str(stats, "templates", mf_stage_input_path(ctx, "templates") ? "input" : "shipped");
        mf_stats_str(stats, "phrasing", mf_stage_param_str(ctx, "phrasing", "all"));
        if (stats) mf_json_set(stats, "qa_by_relation", per_rel), per_rel = NULL;
        if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
        rc = mf_stats_write(ctx->out_dir, stats, err);
    }
    mf_json_free(per_rel);
    mf_buf_free(&objs);
    mf_buf_free(&q);
    mf_buf_free(&a);
    groups_free(&G);
    mf_reader_close(rd);
    mf_json_free(tables);
    return rc;
}
