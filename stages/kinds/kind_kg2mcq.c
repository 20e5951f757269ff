/*
 * stages/kinds/kind_kg2mcq.c — the `kg2mcq` kind: KG triples -> multiple-choice questions
 * (the mcq eval format, docs/eval.md) that test recall of the triples' facts — the
 * knowledge-injection exam that cMedQA-KG stands for.
 *
 * Triples are grouped by (subject, relation) in order of first appearance (exact
 * duplicate triples count once). From every group up to `per_group` of its objects
 * (0 = all of them) are drawn, and each gives one question:
 *   stem     a question of the relation's template table (the kg2qa tables; the
 *            `templates` input replaces them), drawn among those the `phrasing`
 *            param allows — `heldout` (default) uses only the last question of the
 *            table, the one kg2qa with `phrasing: train` never writes, so the exam
 *            asks injected facts in a wording the model did not train on;
 *   options  the true object + n_options-1 distractors drawn without replacement
 *            from the objects of triples with the SAME relation and the SAME
 *            object_type that are NOT objects of (subject, relation): answers of
 *            the right kind, wrong for this subject; then the options are shuffled.
 * A question with too few distractors is skipped (counted in stats.json). Every
 * draw of a question uses a splitmix64 stream seeded by mix(seed) ^
 * hash(subject, relation, object): it depends on the other triples only through
 * the distractor pool.
 *
 * Output data.jsonl, one question per line:
 *   {"question": stem, "options": [..], "answer": "C", "category": relation,
 *    "meta": {"source": "kg", "subject", "relation", "object", "object_type"}}
 */
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

typedef struct tri {
    char *s, *r, *o, *st, *ot;
    size_t order; /* input position */
} tri;

typedef struct triples {
    tri *v;
    size_t n, cap;
} triples;

static void triples_free(triples *T)
{
    for (size_t k = 0; k < T->n; k++) {
        free(T->v[k].s);
        free(T->v[k].r);
        free(T->v[k].o);
        free(T->v[k].st);
        free(T->v[k].ot);
    }
    free(T->v);
}

static int triples_push(triples *T, const mf_triple *t)
{
    if (T->n == T->cap) {
        size_t nc = T->cap ? T->cap * 2 : 1024;
        tri *nv = realloc(T->v, nc * sizeof *nv);
        if (!nv) return MF_ENOMEM;
        T->v = nv;
        T->cap = nc;
    }
    tri *x = &T->v[T->n];
    memset(x, 0, sizeof *x);
    x->order = T->n;
    T->n++;
    if (!(x->s = strdup(t->subject)) || !(x->r = strdup(t->relation)) || !(x->o = strdup(t->object)) ||
        !(x->st = strdup(t->subject_type)) || !(x->ot = strdup(t->object_type)))
        return MF_ENOMEM;
    return 0;
}

/* Orders over triple pointers: by (subject, relation, object) — groups and duplicates are
 * runs — and by (relation, object_type, object) — distractor pools are runs. */
static int cmp_group(const void *a, const void *b)
{
    const tri *x = *(tri *const *)a, *y = *(tri *const *)b;
    int c = strcmp(x->s, y->s);
    if (!c) c = strcmp(x->r, y->r);
    if (!c) c = strcmp(x->o, y->o);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static int cmp_pool(const void *a, const void *b)
{
    const tri *x = *(tri *const *)a, *y = *(tri *const *)b;
    int c = strcmp(x->r, y->r);
    if (!c) c = strcmp(x->ot, y->ot);
    if (!c) c = strcmp(x->o, y->o);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* A group: the run [lo, hi) of the group-sorted array (duplicates removed), and its first input position. */
typedef struct grp {
    size_t lo, hi, first;
} grp;

static int cmp_first(const void *a, const void *b)
{
    const grp *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

typedef struct kgm {
    triples T;
    tri **by_group, **by_pool; /* by_group without duplicates: n_unique */
    size_t n_unique;
    grp *groups;
    size_t n_groups;
    int n_options, split;
    long long per_group;
} kgm;

/* The distinct objects of the pool of (relation, object_type) that are not objects of the group:
 * indices into by_pool, first of each run of equal objects. */
static size_t distractors(const kgm *K, const tri *t, size_t g, size_t *out)
{
    size_t lo = 0, hi = K->n_unique, n = 0;
    while (lo < hi) { /* the pool's first element */
        size_t mid = (lo + hi) / 2;
        const tri *m = K->by_pool[mid];
        int c = strcmp(m->r, t->r);
        if (!c) c = strcmp(m->ot, t->ot);
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    for (size_t k = lo; k < K->n_unique && !strcmp(K->by_pool[k]->r, t->r) && !strcmp(K->by_pool[k]->ot, t->ot); k++) {
        const char *o = K->by_pool[k]->o;
        if (n && !strcmp(K->by_pool[out[n - 1]]->o, o)) continue; /* the same object again */
        int mine = 0;
        for (size_t j = K->groups[g].lo; j < K->groups[g].hi && !mine; j++) mine = !strcmp(K->by_group[j]->o, o);
        if (!mine) out[n++] = k;
    }
    return n;
}

static int read_triples(const mf_stage_ctx *ctx, const mf_json *rel, const mf_json *def, triples *T, mf_rd **rd,
                        long long *no_table)
{
    mf_err *err = ctx->err;
    int rc = mf_data_open(ctx, "data", rd);
    while (!rc) {
        mf_json *rec = NULL;
        rc = mf_reader_next(*rd, &rec, err);
        if (rc <= 0) break;
        rc = 0;
        mf_data_tick(ctx, *rd, "reading triples");
        mf_triple t;
        char why[512];
        if (mf_reader_triple(rec, &t, why, sizeof why)) {
            rc = mf_reader_reject(*rd, err, "%s", why);
        } else if (!mf_json_get(rel, t.relation) && !def) {
            rc = mf_reader_reject(*rd, err, "relation '%s' has no template table and the tables have no \"default\"", t.relation);
            if (!rc) (*no_table)++;
        } else if (triples_push(T, &t)) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        mf_json_free(rec);
    }
    return rc;
}

/* Sort, drop duplicate triples, find the groups in order of first appearance. */
static int index_triples(kgm *K, mf_err *err)
{
    size_t n = K->T.n;
    K->by_group = malloc((n ? n : 1) * sizeof *K->by_group);
    K->by_pool = malloc((n ? n : 1) * sizeof *K->by_pool);
    K->groups = malloc((n ? n : 1) * sizeof *K->groups);
    if (!K->by_group || !K->by_pool || !K->groups) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) K->by_group[k] = &K->T.v[k];
    qsort(K->by_group, n, sizeof *K->by_group, cmp_group);
    size_t u = 0;
    for (size_t k = 0; k < n; k++) {
        const tri *x = K->by_group[k], *p = u ? K->by_group[u - 1] : NULL;
        if (p && !strcmp(p->s, x->s) && !strcmp(p->r, x->r) && !strcmp(p->o, x->o)) continue;
        K->by_group[u++] = K->by_group[k];
    }
    K->n_unique = u;
    memcpy(K->by_pool, K->by_group, u * sizeof *K->by_pool);
    qsort(K->by_pool, u, sizeof *K->by_pool, cmp_pool);
    for (size_t k = 0; k < u;) {
        size_t j = k, first = K->by_group[k]->order;
        while (j < u && !strcmp(K->by_group[j]->s, K->by_group[k]->s) && !strcmp(K->by_group[j]->r, K->by_group[k]->r)) {
            if (K->by_group[j]->order < first) first = K->by_group[j]->order;
            j++;
        }
        K->groups[K->n_groups++] = (grp){k, j, first};
        k = j;
    }
    qsort(K->groups, K->n_groups, sizeof *K->groups, cmp_first);
    return 0;
}

/* One question about t (of group g) into out; *skipped when there are too few distractors. */
static int question(const mf_stage_ctx *ctx, kgm *K, size_t g, const tri *t, const mf_json *entry, size_t *cand,
                    mf_dout *out, int *skipped)
{
    mf_err *err = ctx->err;
    size_t nd = distractors(K, t, g, cand), want = (size_t)K->n_options - 1;
    *skipped = nd < want;
    if (*skipped) return 0;
    mf_rng rng;
    mf_triple mt = {t->s, t->r, t->o, t->st, t->ot};
    uint64_t h = mf_hash64(t->s, strlen(t->s), 0x6b676d);
    h = mf_hash64(t->r, strlen(t->r), h);
    mf_rng_seed(&rng, mf_mix64(ctx->seed) ^ mf_hash64(t->o, strlen(t->o), h));
    size_t q0, qn;
    int rc = mf_kg2qa_questions(entry, K->split, t->r, &q0, &qn, err);
    if (rc) return rc;
    const char *stem = mf_json_get(entry, "questions")->items[q0 + mf_rng_below(&rng, qn)]->s;
    if (strstr(stem, "{objects}"))
        return mf_err_set(err, MF_EINVAL, "kg2mcq: relation '%s': the question \"%s\" holds {objects}, the answer", t->r, stem);
    for (size_t k = 0; k < want; k++) { /* partial Fisher-Yates: the first `want` are the distractors */
        size_t j = k + (size_t)mf_rng_below(&rng, nd - k), x = cand[k];
        cand[k] = cand[j], cand[j] = x;
    }
    size_t order[26];
    for (size_t k = 0; k <= want; k++) order[k] = k; /* 0 = the true object, k = distractor k-1 */
    mf_rng_shuffle(&rng, order, want + 1);
    mf_buf q = MF_BUF_INIT;
    mf_kg2qa_expand(&q, stem, &mt, "");
    mf_json *rec = mf_json_new_object(), *opts = mf_json_new_array(), *meta = mf_json_new_object();
    char answer[2] = "A";
    int bad = !rec || !opts || !meta || !mf_buf_ok(&q);
    for (size_t k = 0; !bad && k <= want; k++) {
        if (order[k] == 0) answer[0] = (char)('A' + k);
        bad = mf_json_push(opts, mf_json_new_str(order[k] ? K->by_pool[cand[order[k] - 1]]->o : t->o));
    }
    bad = bad || mf_json_set(rec, "question", mf_json_new_str(mf_buf_cstr(&q))) || mf_json_set(rec, "options", opts);
    opts = NULL;
    bad = bad || mf_json_set(rec, "answer", mf_json_new_str(answer)) || mf_json_set(rec, "category", mf_json_new_str(t->r));
    bad = bad || mf_json_set(meta, "source", mf_json_new_str("kg")) || mf_json_set(meta, "subject", mf_json_new_str(t->s)) ||
          mf_json_set(meta, "relation", mf_json_new_str(t->r)) || mf_json_set(meta, "object", mf_json_new_str(t->o)) ||
          mf_json_set(meta, "object_type", mf_json_new_str(t->ot)) || mf_json_set(rec, "meta", meta);
    meta = NULL;
    if (bad) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else rc = mf_data_out_json(out, rec, err);
    mf_json_free(opts);
    mf_json_free(meta);
    mf_json_free(rec);
    mf_buf_free(&q);
    return rc;
}

/* The group's objects to ask about: per_group of them drawn (seeded by the group), in input order. */
static size_t pick_objects(const mf_stage_ctx *ctx, const kgm *K, size_t g, size_t *pick)
{
    const grp *G = &K->groups[g];
    size_t n = G->hi - G->lo, want = K->per_group > 0 && (size_t)K->per_group < n ? (size_t)K->per_group : n;
    for (size_t k = 0; k < n; k++) pick[k] = G->lo + k;
    mf_rng rng;
    const tri *t = K->by_group[G->lo];
    mf_rng_seed(&rng, mf_mix64(ctx->seed ^ 0x7069636bull) ^ mf_hash64(t->r, strlen(t->r), mf_hash64(t->s, strlen(t->s), 1)));
    for (size_t k = 0; k < want; k++) {
        size_t j = k + (size_t)mf_rng_below(&rng, n - k), x = pick[k];
        pick[k] = pick[j], pick[j] = x;
    }
    for (size_t k = 1; k < want; k++) /* back into input order */
        for (size_t j = k; j > 0 && K->by_group[pick[j]]->order < K->by_group[pick[j - 1]]->order; j--) {
            size_t x = pick[j];
            pick[j] = pick[j - 1], pick[j - 1] = x;
        }
    return want;
}

int mf_stage_kg2mcq_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    kgm K;
    memset(&K, 0, sizeof K);
    K.n_options = (int)mf_stage_param_int(ctx, "n_options", 4);
    K.per_group = mf_stage_param_int(ctx, "per_group", 1);
    K.split = mf_kg2qa_phrasing_parse(mf_stage_param_str(ctx, "phrasing", "heldout"));
    mf_json *tables = NULL, *per_rel = mf_json_new_object(), *stats = NULL;
    const mf_json *rel = NULL, *def = NULL;
    mf_rd *rd = NULL;
    mf_dout out = {0};
    size_t *cand = NULL, *pick = NULL;
    long long no_table = 0, asked = 0, skipped = 0;
    int rc = 0;
    if (K.n_options < 2 || K.n_options > 26) {
        rc = mf_err_set(err, MF_EINVAL, "kg2mcq: n_options must be 2..26, found %d", K.n_options);
        goto out;
    }
    if ((rc = mf_kg2qa_tables_load(ctx, &tables))) goto out;
    rel = mf_json_get(tables, "relations"), def = mf_json_get(tables, "default");
    if ((rc = read_triples(ctx, rel, def, &K.T, &rd, &no_table)) || (rc = index_triples(&K, err))) goto out;
    cand = malloc((K.n_unique ? K.n_unique : 1) * sizeof *cand);
    pick = malloc((K.n_unique ? K.n_unique : 1) * sizeof *pick);
    if (!cand || !pick || !per_rel) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err))) goto out;
    for (size_t g = 0; g < K.n_groups; g++) {
        const tri *first = K.by_group[K.groups[g].lo];
        const mf_json *entry = mf_json_get(rel, first->r) ? mf_json_get(rel, first->r) : def;
        size_t np = pick_objects(ctx, &K, g, pick);
        for (size_t k = 0; k < np; k++) {
            int skip = 0;
            if ((rc = question(ctx, &K, g, K.by_group[pick[k]], entry, cand, &out, &skip))) goto out;
            skipped += skip;
            asked += !skip;
            if (!skip) mf_json_set(per_rel, first->r, mf_json_new_int(mf_json_get_int(per_rel, first->r, 0) + 1));
        }
    }
    if ((rc = mf_data_out_close(&out, err))) goto out;
    stats = mf_json_new_object();
    mf_stats_str(stats, "kind", "kg2mcq");
    mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(stats, "triples", (long long)K.n_unique);
    mf_stats_int(stats, "groups", (long long)K.n_groups);
    mf_stats_int(stats, "rows_out", asked);
    mf_stats_int(stats, "skipped_few_distractors", skipped);
    mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
    mf_stats_int(stats, "dropped_no_template", no_table);
    mf_stats_str(stats, "phrasing", mf_stage_param_str(ctx, "phrasing", "heldout"));
    mf_stats_str(stats, "templates", mf_stage_input_path(ctx, "templates") ? "input" : "shipped");
    if (stats) mf_json_set(stats, "mcq_by_relation", per_rel), per_rel = NULL;
    if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
    if ((rc = mf_stats_write(ctx->out_dir, stats, err))) goto out;
    if (!asked)
        rc = mf_err_set(err, MF_EINVAL, "kg2mcq: no question could be written (%lld lacked %d distractors of their relation and type)",
                        skipped, K.n_options - 1);
out:
    mf_data_out_close(&out, NULL);
    mf_json_free(per_rel);
    mf_json_free(tables);
    mf_reader_close(rd);
    free(cand);
    free(pick);
    free(K.by_group);
    free(K.by_pool);
    free(K.groups);
    triples_free(&K.T);
    return rc;
}
