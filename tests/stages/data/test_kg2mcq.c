/* tests/stages/data/test_kg2mcq.c — the kg2mcq kind: knowledge-graph triples -> multiple-choice
 * questions whose distractors share the relation and object type and are never true, seeded, in a
 * held-out phrasing that kg2qa (phrasing: train) never writes. */
#include "tests/harness.h"
#include "tests/stages/dtest.h"
#include "stages/kinds/kinds.h"

#include <stdlib.h>

static const char *tmp_path(const char *name)
{
    static char bufs[64][2048];
    static int k;
    char *p = bufs[k++ % 64];
    snprintf(p, 2048, "%s/%s", mf_test_tmpdir(), name);
    return p;
}

static const char *kg_head(size_t n)
{
    char src[512];
    snprintf(src, sizeof src, "%s/kg/health39_triples.jsonl", MF_SHARED_DATA);
    return dtest_head(src, n, mf_test_tmpdir(), "kg.jsonl");
}

/* Parsed JSON lines of out_dir/data.jsonl (count in *n). */
static mf_json **lines_of(const char *out_dir, size_t *n)
{
    char *s = dtest_out(out_dir, "data.jsonl");
    mf_json **v = calloc(20000, sizeof *v);
    *n = 0;
    for (char *p = s; p && *p && *n < 20000;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (mf_json_parse(&v[*n], p, l, "line", NULL) == 0) (*n)++;
        p = e ? e + 1 : NULL;
    }
    free(s);
    return v;
}

static void free_lines(mf_json **v, size_t n)
{
    for (size_t k = 0; k < n; k++) mf_json_free(v[k]);
    free(v);
}

/* Is (s, r, o) / (r, ot, o) among the input triples? */
static int has_triple(mf_json **in, size_t n, const char *s, const char *r, const char *o, const char *ot)
{
    for (size_t k = 0; k < n; k++) {
        const mf_json *t = in[k];
        if (s && strcmp(mf_json_get_str(t, "subject", ""), s)) continue;
        if (ot && strcmp(mf_json_get_str(t, "object_type", ""), ot)) continue;
        if (!strcmp(mf_json_get_str(t, "relation", ""), r) && !strcmp(mf_json_get_str(t, "object", ""), o)) return 1;
    }
    return 0;
}

/* Every question: 4 distinct options; the answer letter names the true object; every other option is an
 * object of the same relation and object type in the input, and never an object of (subject, relation). */
TEST(test_kg2mcq_distractors_share_relation_and_type_and_are_never_true)
{
    const char *kg = kg_head(1500);
    const char *p[] = {kg};
    dtest t;
    REQUIRE(dtest_run(&t, "kg2mcq", "{}", 42, "data", p, 1, NULL, NULL, 0, tmp_path("m")) == 0);
    size_t nq = 0, nin = 0;
    mf_json **q = lines_of(tmp_path("m"), &nq);
    char *raw = NULL;
    size_t len = 0;
    REQUIRE(mf_read_file(kg, &raw, &len, NULL) == 0);
    mf_json **in = calloc(2000, sizeof *in);
    for (char *s = raw; s && *s && nin < 2000;) {
        char *e = strchr(s, '\n');
        if (mf_json_parse(&in[nin], s, e ? (size_t)(e - s) : strlen(s), "kg", NULL) == 0) nin++;
        s = e ? e + 1 : NULL;
    }
    free(raw);
    REQUIRE(nq > 100);
    int answers[4] = {0};
    for (size_t k = 0; k < nq; k++) {
        const mf_json *opts = mf_json_get(q[k], "options"), *meta = mf_json_get(q[k], "meta");
        const char *ans = mf_json_get_str(q[k], "answer", "?"), *s = mf_json_get_str(meta, "subject", ""),
                   *r = mf_json_get_str(meta, "relation", ""), *o = mf_json_get_str(meta, "object", ""),
                   *ot = mf_json_get_str(meta, "object_type", "");
        REQUIRE(opts && opts->n == 4 && ans[0] >= 'A' && ans[0] <= 'D');
        answers[ans[0] - 'A']++;
        CHECK_STR(mf_json_get_str(q[k], "category", ""), r);
        CHECK_STR(opts->items[ans[0] - 'A']->s, o);
        CHECK(has_triple(in, nin, s, r, o, NULL));
        for (size_t j = 0; j < 4; j++) {
            for (size_t i = 0; i < j; i++) CHECK(strcmp(opts->items[i]->s, opts->items[j]->s) != 0);
            if ((int)j == ans[0] - 'A') continue;
            CHECK(has_triple(in, nin, NULL, r, opts->items[j]->s, ot));  /* same relation and type */
            CHECK(!has_triple(in, nin, s, r, opts->items[j]->s, NULL));  /* never a true object */
        }
    }
    for (int k = 0; k < 4; k++) CHECK(answers[k] > (int)nq / 8); /* the answer's position is drawn */
    free_lines(q, nq);
    free_lines(in, nin);
}

/* Same seed, same file; another seed, other draws. The exam's stems are the held-out (last) question of
 * each relation's table; kg2qa with phrasing: train never writes one of them. */
TEST(test_kg2mcq_is_seeded_and_its_held_out_phrasing_never_meets_kg2qa_train)
{
    const char *kg = kg_head(1500);
    const char *p[] = {kg};
    dtest t;
    REQUIRE(dtest_run(&t, "kg2mcq", "{}", 42, "data", p, 1, NULL, NULL, 0, tmp_path("a")) == 0);
    REQUIRE(dtest_run(&t, "kg2mcq", "{}", 42, "data", p, 1, NULL, NULL, 0, tmp_path("b")) == 0);
    REQUIRE(dtest_run(&t, "kg2mcq", "{}", 43, "data", p, 1, NULL, NULL, 0, tmp_path("c")) == 0);
    REQUIRE(dtest_run(&t, "kg2qa", "{\"phrasing\": \"train\", \"phrasings\": 10}", 42, "data", p, 1, NULL, NULL, 0,
                      tmp_path("qa")) == 0);
    char *a = dtest_out(tmp_path("a"), "data.jsonl"), *b = dtest_out(tmp_path("b"), "data.jsonl"),
         *c = dtest_out(tmp_path("c"), "data.jsonl");
    REQUIRE(a && b && c);
    CHECK_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    free(a), free(b), free(c);
    mf_json *tables = NULL;
    mf_err err;
    REQUIRE(mf_json_parse(&tables, mf_kg2qa_default_templates, strlen(mf_kg2qa_default_templates), "t", &err) == 0);
    size_t nq = 0, nqa = 0;
    mf_json **q = lines_of(tmp_path("a"), &nq), **qa = lines_of(tmp_path("qa"), &nqa);
    REQUIRE(nq > 100 && nqa > 100);
    for (size_t k = 0; k < nq; k++) {
        const mf_json *meta = mf_json_get(q[k], "meta");
        const char *r = mf_json_get_str(meta, "relation", ""), *stem = mf_json_get_str(q[k], "question", "");
        const mf_json *qs = mf_json_get(mf_json_get(mf_json_get(tables, "relations"), r), "questions");
        REQUIRE(qs && qs->n >= 2);
        mf_buf want = MF_BUF_INIT;
        mf_triple tr = {mf_json_get_str(meta, "subject", ""), r, "", "", ""};
        mf_kg2qa_expand(&want, qs->items[qs->n - 1]->s, &tr, "");
        CHECK_STR(stem, mf_buf_cstr(&want));
        mf_buf_free(&want);
    }
    for (size_t k = 0; k < nqa; k++) {
        const mf_json *conv = mf_json_get(qa[k], "conversations");
        const char *question = mf_json_get_str(conv->items[0], "value", "");
        for (size_t j = 0; j < nq; j++) CHECK(strcmp(question, mf_json_get_str(q[j], "question", "")) != 0);
    }
    free_lines(q, nq);
    free_lines(qa, nqa);
    mf_json_free(tables);
}

/* Too few same-type objects: the question is skipped (counted); when none is left the stage fails saying
 * why. per_group 0 asks about every object. A table with one question cannot hold a phrasing out. */
TEST(test_kg2mcq_skips_questions_without_distractors_and_needs_two_phrasings_to_split)
{
    mf_test_write(tmp_path("kg.jsonl"), "{\"subject\":\"感冒\",\"relation\":\"症状\",\"object\":\"发热\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"感冒\",\"relation\":\"症状\",\"object\":\"咳嗽\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"流感\",\"relation\":\"症状\",\"object\":\"发热\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"流感\",\"relation\":\"症状\",\"object\":\"头痛\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"流感\",\"relation\":\"症状\",\"object\":\"头痛\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"鼻炎\",\"relation\":\"症状\",\"object\":\"发热\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"鼻炎\",\"relation\":\"症状\",\"object\":\"咳嗽\",\"object_type\":\"表现\"}\n"
                                          "{\"subject\":\"鼻炎\",\"relation\":\"症状\",\"object\":\"头痛\",\"object_type\":\"表现\"}\n");
    const char *p[] = {tmp_path("kg.jsonl")};
    dtest t;
    CHECK_INT(dtest_run(&t, "kg2mcq", "{}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("x")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "no question could be written (3 lacked 3 distractors");
    REQUIRE(dtest_run(&t, "kg2mcq", "{\"n_options\": 2, \"per_group\": 0}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("y")) == 0);
    size_t n = 0;
    mf_json **q = lines_of(tmp_path("y"), &n);
    CHECK_INT(n, 4); /* 感冒 and 流感 two each (the third object is the distractor); 鼻炎 has every object */
    free_lines(q, n);
    char *st = dtest_out(tmp_path("y"), "stats.json");
    CHECK_CONTAINS(st, "\"triples\": 7"); /* the repeated triple counts once */
    CHECK_CONTAINS(st, "\"skipped_few_distractors\": 3");
    free(st);
    mf_test_write(tmp_path("t.json"), "{\"relations\": {\"症状\": {\"questions\": [\"{subject}？\"], \"answers\": [\"{objects}\"]}}}");
    const char *tp[] = {tmp_path("t.json")};
    CHECK_INT(dtest_run(&t, "kg2mcq", "{\"n_options\": 2}", 1, "data", p, 1, "templates", tp, 1, tmp_path("z")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "relation '症状' has 1 question phrasing; phrasing: heldout needs at least 2");
    REQUIRE(dtest_run(&t, "kg2mcq", "{\"n_options\": 2, \"phrasing\": \"all\"}", 1, "data", p, 1, "templates", tp, 1,
                      tmp_path("w")) == 0);
    CHECK_INT(dtest_run(&t, "kg2qa", "{\"phrasing\": \"train\"}", 1, "data", p, 1, "templates", tp, 1, tmp_path("v")),
              MF_EINVAL);
}
