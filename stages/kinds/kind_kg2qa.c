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
#include "common/u64map.h"
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
    mf_u64map index; /* key_hash(subject, relation) -> group index */
} groups;

static uint64_t key_hash(const char *s, const char *r)
{
    uint64_t h = mf_hash64(s, strlen(s), 0x6b67);
    return mf_hash64(r, strlen(r), h) | 1;
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
    uint64_t h = key_hash(t->subject, t->relation);
    group *g = NULL;
    for (size_t j = mf_u64map_find(&G->index, h); !g && j != MF_U64MAP_NONE; j = mf_u64map_next(&G->index, h, j)) {
        group *c = &G->g[G->index.vals[j]];
        if (!strcmp(c->subject, t->subject) && !strcmp(c->relation, t->relation)) g = c;
    }
    if (!g) {
        if (G->n == G->cap) {
            size_t nc = G->cap ? G->cap * 2 : 1024;
            group *ng = realloc(G->g, nc * sizeof *ng);
            if (!ng) return MF_ENOMEM;
            G->g = ng;
            G->cap = nc;
        }
        if (mf_u64map_add(&G->index, h, G->n)) return MF_ENOMEM;
        g = &G->g[G->n++];
        memset(g, 0, sizeof *g);
        if (!(g->subject = strdup(t->subject)) || !(g->relation = strdup(t->relation)) ||
            !(g->stype = strdup(t->subject_type)) || !(g->otype = strdup(t->object_type)))
            return MF_ENOMEM;
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
    mf_u64map_free(&G->index);
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

static int check_tables(const mf_json *t, mf_err *err)
{
    const mf_json *rel = mf_json_get(t, "relations");
    if (t->type != MF_JSON_OBJECT || !rel || rel->type != MF_JSON_OBJECT)
        return mf_err_set(err, MF_EINVAL, "kg2qa templates: expected an object with \"relations\": {relation: {questions, answers}}");
    int rc;
    for (size_t k = 0; k < rel->n; k++)
        if ((rc = check_entry(rel->items[k], rel->keys[k], err))) return rc;
    if (mf_json_get(t, "default") && (rc = check_entry(mf_json_get(t, "default"), "default", err))) return rc;
    const mf_json *j = mf_json_get(t, "joiner");
    if (j && j->type != MF_JSON_STRING) return mf_err_set(err, MF_EINVAL, "kg2qa templates: 'joiner' must be a string");
    return 0;
}

/* The `templates` input (a file, or a directory with templates.json or kg2qa_templates.json), else
 * the shipped tables. */
int mf_kg2qa_tables_load(const mf_stage_ctx *ctx, mf_json **out)
{
    const char *path = mf_stage_input_path(ctx, "templates");
    mf_json *t = NULL;
    char *file = NULL;
    int rc;
    if (path && mf_is_dir(path)) {
        file = mf_path_join(path, "templates.json");
        if (file && !mf_is_file(file)) {
            free(file);
            file = mf_path_join(path, "kg2qa_templates.json");
        }
        if (!file) return mf_err_set(ctx->err, MF_ENOMEM, "out of memory");
    }
    if (path) rc = mf_json_parse_file(&t, file ? file : path, ctx->err);
    else rc = mf_json_parse(&t, mf_kg2qa_default_templates, strlen(mf_kg2qa_default_templates), "kg2qa_templates.json", ctx->err);
    free(file);
    if (rc) return rc;
    if ((rc = check_tables(t, ctx->err))) {
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

/* The triples, grouped by (subject, relation) into G. */
static int read_triples(mf_stage_ctx *ctx, mf_rd *rd, const mf_json *rel, const mf_json *def, groups *G,
                        long long *triples, long long *no_table)
{
    mf_err *err = ctx->err;
    for (;;) {
        mf_json *rec = NULL;
        int rc = mf_reader_next(rd, &rec, err);
        if (rc <= 0) return rc;
        mf_data_tick(ctx, rd, "reading triples");
        mf_triple t;
        char why[512];
        rc = 0;
        if (mf_reader_triple(rec, &t, why, sizeof why)) {
            rc = mf_reader_reject(rd, err, "%s", why);
        } else if (!mf_json_get(rel, t.relation) && !def) {
            rc = mf_reader_reject(rd, err, "relation '%s' has no template table and the tables have no \"default\"", t.relation);
            if (!rc) (*no_table)++;
        } else {
            (*triples)++;
            if (groups_add(G, &t)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        mf_json_free(rec);
        if (rc) return rc;
    }
}

/* What writing the QA pairs needs. */
typedef struct {
    mf_stage_ctx *ctx;
    const char *joiner;
    long long phrasings;
    int split;         /* MF_KG_PHRASING_*: which of a table's questions may be drawn */
    mf_dout out;
    mf_buf objs, q, a; /* the chunk's objects joined; a question; the answer */
    mf_json *per_rel;  /* QA pairs by relation, for stats.json */
} writer;

/* One QA conversation of group g (as the triple gt): the question from template qtpl, the answer in w->a. */
static int write_qa(writer *w, const group *g, const mf_triple *gt, const char *qtpl, size_t n_objects)
{
    mf_err *err = w->ctx->err;
    mf_conv c;
    mf_buf line = MF_BUF_INIT;
    int rc;
    mf_conv_init(&c);
    mf_kg2qa_expand(&w->q, qtpl, gt, mf_buf_cstr(&w->objs));
    if (!mf_buf_ok(&w->q) || !mf_buf_ok(&w->a) || !mf_buf_ok(&w->objs) ||
        mf_conv_add(&c, MF_ROLE_HUMAN, mf_buf_cstr(&w->q), w->q.len) ||
        mf_conv_add(&c, MF_ROLE_GPT, mf_buf_cstr(&w->a), w->a.len) || !(c.meta = mf_json_new_object())) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_json_set(c.meta, "source", mf_json_new_str("kg"));
    mf_json_set(c.meta, "subject", mf_json_new_str(g->subject));
    mf_json_set(c.meta, "relation", mf_json_new_str(g->relation));
    mf_json_set(c.meta, "objects", mf_json_new_int((int64_t)n_objects));
    if ((rc = mf_conv_write_line(&line, &c))) {
        rc = mf_err_set(err, rc, "out of memory");
        goto out;
    }
    if ((rc = mf_data_out_line(&w->out, line.data, line.len - 1, err))) goto out;
    if (w->per_rel)
        mf_json_set(w->per_rel, g->relation, mf_json_new_int(mf_json_get_int(w->per_rel, g->relation, 0) + 1));
out:
    mf_buf_free(&line);
    mf_conv_free(&c);
    return rc;
}

/* Objects c0..c1 of group g (its chunk-th chunk): one answer and up to `phrasings` distinct
 * questions from the table e (its questions q0..q0+qn), drawn from a stream that depends on the group
 * and chunk only. */
static int write_chunk(writer *w, const group *g, const mf_json *e, size_t q0, size_t qn, size_t c0, size_t c1,
                       size_t chunk)
{
    mf_triple gt = {g->subject, g->relation, "", g->stype, g->otype};
    const mf_json *qs = mf_json_get(e, "questions"), *as = mf_json_get(e, "answers");
    mf_buf_reset(&w->objs);
    for (size_t k = c0; k < c1; k++) {
        if (k > c0) mf_buf_puts(&w->objs, w->joiner);
        mf_buf_puts(&w->objs, g->objs[k]);
    }
    mf_rng rng;
    uint64_t cs = (uint64_t)chunk;
    mf_rng_seed(&rng, mf_mix64(w->ctx->seed) ^ mf_hash64(&cs, sizeof cs, key_hash(g->subject, g->relation)));
    size_t nq = w->phrasings > 0 ? (size_t)w->phrasings : 1;
    if (nq > qn) nq = qn;
    size_t avail = qn;
    size_t *order = malloc(avail * sizeof *order);
    if (!order) return mf_err_set(w->ctx->err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < avail; k++) order[k] = q0 + k;
    for (size_t k = 0; k < nq; k++) { /* partial Fisher-Yates */
        size_t j = k + (size_t)mf_rng_below(&rng, avail - k), tmp = order[k];
        order[k] = order[j];
        order[j] = tmp;
    }
    const char *atpl = as->items[mf_rng_below(&rng, as->n)]->s;
    mf_kg2qa_expand(&w->a, atpl, &gt, mf_buf_cstr(&w->objs));
    int rc = 0;
    for (size_t k = 0; k < nq; k++)
        if ((rc = write_qa(w, g, &gt, qs->items[order[k]]->s, c1 - c0))) goto out;
out:
    free(order);
    return rc;
}

static int write_stats(mf_stage_ctx *ctx, writer *w, mf_rd *rd, const groups *G, long long triples,
                       long long no_table)
{
    mf_json *stats = mf_json_new_object();
    mf_stats_str(stats, "kind", "kg2qa");
    mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(stats, "triples", triples);
    mf_stats_int(stats, "groups", (long long)G->n);
    mf_stats_int(stats, "rows_out", w->out.rows);
    mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
    mf_stats_int(stats, "dropped_no_template", no_table);
    mf_stats_str(stats, "templates", mf_stage_input_path(ctx, "templates") ? "input" : "shipped");
    mf_stats_str(stats, "phrasing", mf_stage_param_str(ctx, "phrasing", "all"));
    if (stats) mf_json_set(stats, "qa_by_relation", w->per_rel), w->per_rel = NULL;
    if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
    return mf_stats_write(ctx->out_dir, stats, ctx->err);
}

int mf_stage_kg2qa_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    long long max_objects = mf_stage_param_int(ctx, "max_objects", 8);
    if (max_objects < 1) return mf_err_set(err, MF_EINVAL, "kg2qa: max_objects must be >= 1");
    mf_json *tables = NULL;
    int rc = mf_kg2qa_tables_load(ctx, &tables);
    if (rc) return rc;
    const mf_json *rel = mf_json_get(tables, "relations"), *def = mf_json_get(tables, "default");
    groups G;
    memset(&G, 0, sizeof G);
    writer w;
    memset(&w, 0, sizeof w);
    w.ctx = ctx;
    w.joiner = mf_json_get_str(tables, "joiner", "、");
    w.phrasings = mf_stage_param_int(ctx, "phrasings", 0);
    w.split = mf_kg2qa_phrasing_parse(mf_stage_param_str(ctx, "phrasing", "all"));
    w.objs = w.q = w.a = (mf_buf)MF_BUF_INIT;
    w.per_rel = mf_json_new_object();
    mf_rd *rd = NULL;
    long long triples = 0, no_table = 0;
    if ((rc = mf_data_open(ctx, "data", &rd))) goto out;
    if ((rc = read_triples(ctx, rd, rel, def, &G, &triples, &no_table))) goto out;
    if ((rc = mf_data_out_open(&w.out, ctx->out_dir, "data.jsonl", err))) goto out;
    for (size_t gi = 0; gi < G.n; gi++) {
        const group *g = &G.g[gi];
        const mf_json *e = mf_json_get(rel, g->relation);
        if (!e) e = def;
        size_t q0, qn;
        if ((rc = mf_kg2qa_questions(e, w.split, g->relation, &q0, &qn, err))) goto out;
        for (size_t c0 = 0, chunk = 0; c0 < g->n; c0 += (size_t)max_objects, chunk++) {
            size_t c1 = c0 + (size_t)max_objects < g->n ? c0 + (size_t)max_objects : g->n;
            if ((rc = write_chunk(&w, g, e, q0, qn, c0, c1, chunk))) goto out;
        }
    }
    if ((rc = mf_data_out_close(&w.out, err))) goto out;
    rc = write_stats(ctx, &w, rd, &G, triples, no_table);
out:
    mf_data_out_close(&w.out, NULL);
    mf_json_free(w.per_rel);
    mf_buf_free(&w.objs);
    mf_buf_free(&w.q);
    mf_buf_free(&w.a);
    groups_free(&G);
    mf_reader_close(rd);
    mf_json_free(tables);
    return rc;
}
