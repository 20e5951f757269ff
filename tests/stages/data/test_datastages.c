/* tests/stages/data/test_datastages.c — the split, mix, dedup, format and kg2qa kinds on real data. */
#include "tests/harness.h"
#include "tests/stages/dtest.h"
#include "stages/kinds/kinds.h"

#include <stdlib.h>

static const char *tmp_path(const char *name)
{
    static char bufs[256][2048]; /* rotating: a test uses fewer than 256 paths at once */
    static int k;
    char *p = bufs[k++ % 256];
    snprintf(p, 2048, "%s/%s", mf_test_tmpdir(), name);
    return p;
}

static const char *head_of(const char *rel, size_t n, const char *name)
{
    char src[512];
    snprintf(src, sizeof src, "%s/%s", MF_SHARED_DATA, rel);
    const char *p = dtest_head(src, n, mf_test_tmpdir(), name);
    static char keep[8][2048];
    static int k;
    char *d = keep[k++ % 8];
    snprintf(d, 2048, "%s", p ? p : "");
    return d;
}

TEST(test_split_is_deterministic_by_content_and_seed_independent)
{
    const char *in = head_of("dialogue/internal_medicine_qa.jsonl", 500, "dlg.jsonl");
    const char *paths[] = {in};
    dtest t;
    const char *params = "{\"parts\": {\"train\": 0.8, \"val\": 0.1, \"test\": 0.1}}";
    REQUIRE(dtest_run(&t, "split", params, 1, "data", paths, 1, NULL, NULL, 0, tmp_path("s1")) == 0);
    REQUIRE(dtest_run(&t, "split", params, 99, "data", paths, 1, NULL, NULL, 0, tmp_path("s2")) == 0);
    const char *parts[] = {"train.jsonl", "val.jsonl", "test.jsonl"};
    size_t total = 0, n_train = 0;
    for (int k = 0; k < 3; k++) {
        char *a = dtest_out(tmp_path("s1"), parts[k]), *b = dtest_out(tmp_path("s2"), parts[k]);
        REQUIRE(a && b);
        CHECK_STR(a, b);
        total += dtest_count_lines(a);
        if (k == 0) n_train = dtest_count_lines(a);
        free(a);
        free(b);
    }
    CHECK_INT(total, 500);
    CHECK(n_train > 340 && n_train < 460); /* 400 expected; binomial sd ~9 */
    char *st = dtest_out(tmp_path("s1"), "stats.json");
    CHECK_CONTAINS(st, "\"rows_in\": 500");
    CHECK_CONTAINS(st, "\"rows_out\": 500");
    free(st);
    /* the same record with keys reordered lands in the same part */
    mf_test_write(tmp_path("ko.jsonl"), "{\"a\":1,\"b\":\"x\"}\n{\"b\":\"x\",\"a\":1}\n{\"b\": \"x\", \"a\": 1}\n");
    const char *p2[] = {tmp_path("ko.jsonl")};
    REQUIRE(dtest_run(&t, "split", "{\"parts\": {\"a\": 0.5, \"b\": 0.5}}", 1, "data", p2, 1, NULL, NULL, 0, tmp_path("s3")) == 0);
    char *a = dtest_out(tmp_path("s3"), "a.jsonl"), *b = dtest_out(tmp_path("s3"), "b.jsonl");
    CHECK((dtest_count_lines(a) == 3 && dtest_count_lines(b) == 0) || (dtest_count_lines(a) == 0 && dtest_count_lines(b) == 3));
    free(a);
    free(b);
}

TEST(test_split_bad_line_fails_with_position_or_is_counted_in_skip_mode)
{
    mf_test_write(tmp_path("bad.jsonl"), "{\"a\":1}\n{\"a\":2}\n{\"a\":\n{\"a\":3}\n");
    const char *p[] = {tmp_path("bad.jsonl")};
    dtest t;
    CHECK_INT(dtest_run(&t, "split", "{}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("o1")), MF_EINVAL);
    char want[2200];
    snprintf(want, sizeof want, "%s:3:", p[0]);
    CHECK_CONTAINS(t.msg, want);
    CHECK_INT(dtest_run(&t, "split", "{\"on_bad_record\": \"skip\"}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("o2")), 0);
    char *st = dtest_out(tmp_path("o2"), "stats.json");
    CHECK_CONTAINS(st, "\"dropped_bad\": 1");
    CHECK_CONTAINS(st, "\"rows_out\": 3");
    CHECK_CONTAINS(st, want);
    free(st);
}

TEST(test_mix_is_seeded_weighted_and_byte_identical_for_a_seed)
{
    const char *a = head_of("dialogue/internal_medicine_qa.jsonl", 100, "a.jsonl");
    const char *b = head_of("pretrain/doctor_answers.jsonl", 50, "b.jsonl");
    const char *paths[] = {a, b};
    dtest t;
    const char *params = "{\"weights\": [3, 1], \"total\": 200}";
    REQUIRE(dtest_run(&t, "mix", params, 7, "data", paths, 2, NULL, NULL, 0, tmp_path("m1")) == 0);
    REQUIRE(dtest_run(&t, "mix", params, 7, "data", paths, 2, NULL, NULL, 0, tmp_path("m2")) == 0);
    REQUIRE(dtest_run(&t, "mix", params, 8, "data", paths, 2, NULL, NULL, 0, tmp_path("m3")) == 0);
    char *x = dtest_out(tmp_path("m1"), "data.jsonl"), *y = dtest_out(tmp_path("m2"), "data.jsonl"), *z = dtest_out(tmp_path("m3"), "data.jsonl");
    REQUIRE(x && y && z);
    CHECK_STR(x, y);
    CHECK(strcmp(x, z) != 0);
    CHECK_INT(dtest_count_lines(x), 200);
    /* 150 from a (100 rows: one full pass + 50 drawn), 50 from b (all of it) */
    size_t from_b = 0;
    for (const char *p = x; (p = strstr(p, "{\"text\"")); p++) from_b++;
    CHECK_INT(from_b, 50);
    free(x);
    free(y);
    free(z);
    char *st = dtest_out(tmp_path("m1"), "stats.json");
    CHECK_CONTAINS(st, "\"taken\": 150");
    free(st);
    CHECK_INT(dtest_run(&t, "mix", "{\"weights\": [1]}", 7, "data", paths, 2, NULL, NULL, 0, tmp_path("m4")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "one weight per input");
}

/* issue 20: weights [1e308, 1e308] overflowed the sum (and T * w), and a release build wrote 0 rows
 * with "taken": -9223372036854775758. Huge weights are only proportions. */
TEST(test_mix_huge_weights_are_proportions_not_an_overflow)
{
    const char *a = head_of("dialogue/internal_medicine_qa.jsonl", 10, "ha.jsonl");
    const char *b = head_of("pretrain/doctor_answers.jsonl", 10, "hb.jsonl");
    const char *paths[] = {a, b};
    dtest t;
    REQUIRE(dtest_run(&t, "mix", "{\"weights\": [1e308, 1e308], \"total\": 10}", 7, "data", paths, 2, NULL, NULL, 0,
                      tmp_path("mh")) == 0);
    char *st = dtest_out(tmp_path("mh"), "stats.json");
    REQUIRE(st);
    CHECK_CONTAINS(st, "\"rows_out\": 10");
    CHECK_CONTAINS(st, "\"taken\": 5");
    CHECK(!strstr(st, "\"taken\": -"));
    free(st);
}

TEST(test_dedup_drops_exact_and_near_duplicates_and_is_seeded)
{
    /* real answers, plus an exact copy with different spacing and a near copy with 2 characters changed */
    const char *src = head_of("pretrain/doctor_answers.jsonl", 40, "p.jsonl");
    char *text = mf_test_read(src);
    REQUIRE(text);
    mf_json *first;
    mf_err err;
    char *nl = strchr(text, '\n');
    REQUIRE(mf_json_parse(&first, text, (size_t)(nl - text), "x", &err) == 0);
    const char *s = mf_json_get_str(first, "text", "");
    REQUIRE(strlen(s) > 60);
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, text);
    mf_buf_printf(&b, "{\"text\": \"  %s \"}\n", s); /* exact after normalisation */
    mf_buf_printf(&b, "{\"text\": \"%.*sXY%s\"}\n", 30, s, s + 36); /* near: 6 bytes (2 CJK chars) replaced */
    mf_test_write(tmp_path("d.jsonl"), mf_buf_cstr(&b));
    mf_buf_free(&b);
    mf_json_free(first);
    free(text);
    const char *p[] = {tmp_path("d.jsonl")};
    dtest t;
    REQUIRE(dtest_run(&t, "dedup", "{\"threshold\": 0.7}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("d1")) == 0);
    char *st = dtest_out(tmp_path("d1"), "stats.json");
    CHECK_CONTAINS(st, "\"dropped_exact\": 1");
    CHECK_CONTAINS(st, "\"dropped_near\": 1");
    CHECK_CONTAINS(st, "\"rows_out\": 40");
    free(st);
    REQUIRE(dtest_run(&t, "dedup", "{\"method\": \"exact\"}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("d2")) == 0);
    st = dtest_out(tmp_path("d2"), "stats.json");
    CHECK_CONTAINS(st, "\"rows_out\": 41");
    free(st);
    REQUIRE(dtest_run(&t, "dedup", "{\"threshold\": 0.7}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("d3")) == 0);
    char *o1 = dtest_out(tmp_path("d1"), "data.jsonl"), *o3 = dtest_out(tmp_path("d3"), "data.jsonl");
    CHECK_STR(o1, o3);
    free(o1);
    free(o3);
}

TEST(test_dedup_lsh_params_match_datasketch)
{
    /* datasketch's _optimal_param (fp/fn weights 0.5) recomputed with numpy trapezoids on
     * 20001 points (datasketch itself is not installed here): (0.8,128)->(9,13),
     * (0.5,128)->(25,5), (0.7,64)->(8,8). */
    int b, r;
    mf_dedup_lsh_params(0.8, 128, &b, &r);
    CHECK_INT(b, 9);
    CHECK_INT(r, 13);
    mf_dedup_lsh_params(0.5, 128, &b, &r);
    CHECK_INT(b, 25);
    CHECK_INT(r, 5);
    mf_dedup_lsh_params(0.7, 64, &b, &r);
    CHECK_INT(b, 8);
    CHECK_INT(r, 8);
}

TEST(test_format_train_and_eval_cut_at_seeded_turn)
{
    mf_test_write(tmp_path("mt.jsonl"),
                  "{\"conversations\":[{\"from\":\"human\",\"value\":\"q1\"},{\"from\":\"gpt\",\"value\":\"a1\"},{\"from\":\"human\",\"value\":\"q2\"},"
                  "{\"from\":\"gpt\",\"value\":\"a2\"},{\"from\":\"human\",\"value\":\"q3\"},{\"from\":\"gpt\",\"value\":\"a3\"}]}\n");
    const char *p[] = {tmp_path("mt.jsonl")};
    dtest t;
    int seen[3] = {0};
    for (unsigned seed = 0; seed < 24; seed++) {
        char od[64];
        snprintf(od, sizeof od, "e%u", seed);
        REQUIRE(dtest_run(&t, "format", "{\"purpose\": \"eval\"}", seed, "data", p, 1, NULL, NULL, 0, tmp_path(od)) == 0);
        char *o = dtest_out(tmp_path(od), "data.jsonl");
        REQUIRE(o);
        mf_json *row;
        mf_err err;
        REQUIRE(mf_json_parse(&row, o, strlen(o), "o", &err) == 0);
        int cut = (int)mf_json_get_int(row, "cut_turn", -1);
        REQUIRE(cut == 1 || cut == 3 || cut == 5);
        seen[cut / 2]++;
        char want_a[8], want_q[8];
        snprintf(want_a, sizeof want_a, "a%d", cut / 2 + 1);
        snprintf(want_q, sizeof want_q, "q%d", cut / 2 + 1);
        CHECK_STR(mf_json_get_str(row, "answer", ""), want_a);
        CHECK_STR(mf_json_get_str(row, "question", ""), want_q);
        CHECK_INT(mf_json_get(row, "conversations")->n, cut);
        CHECK_INT(mf_json_get(row, "history")->n, cut / 2);
        mf_json_free(row);
        /* same seed, same cut */
        REQUIRE(dtest_run(&t, "format", "{\"purpose\": \"eval\"}", seed, "data", p, 1, NULL, NULL, 0, tmp_path("again")) == 0);
        char *o2 = dtest_out(tmp_path("again"), "data.jsonl");
        CHECK_STR(o, o2);
        free(o);
        free(o2);
    }
    CHECK(seen[0] && seen[1] && seen[2]); /* every turn drawn at least once in 24 seeds (fails with p ~ 3e-4) */

    const char *rec = head_of("records/health39_diagnosis.jsonl", 20, "rec.jsonl");
    const char *p2[] = {rec};
    REQUIRE(dtest_run(&t, "format", "{\"purpose\": \"eval\"}", 1, "data", p2, 1, NULL, NULL, 0, tmp_path("r1")) == 0);
    char *o = dtest_out(tmp_path("r1"), "data.jsonl");
    CHECK_INT(dtest_count_lines(o), 20);
    CHECK_CONTAINS(o, "\"answer\":\"阳痿\"");
    CHECK_CONTAINS(o, "\"department\":\"男科 生殖健康\"");
    CHECK_CONTAINS(o, "\"question\":\"请根据以下病历信息");
    free(o);
    const char *dl = head_of("dialogue/internal_medicine_qa.jsonl", 30, "dl.jsonl");
    const char *p3[] = {dl};
    REQUIRE(dtest_run(&t, "format", "{}", 1, "data", p3, 1, NULL, NULL, 0, tmp_path("f1")) == 0);
    o = dtest_out(tmp_path("f1"), "data.jsonl");
    CHECK_INT(dtest_count_lines(o), 30);
    CHECK_CONTAINS(o, "{\"conversations\":[{\"from\":\"human\",\"value\":\"高血压患者能吃党参吗？");
    free(o);
    /* a bad line names its position; skip mode counts it */
    mf_test_write(tmp_path("fb.jsonl"), "{\"question\":\"q\",\"answer\":\"a\"}\n{\"question\":\"q\"}\n");
    const char *p4[] = {tmp_path("fb.jsonl")};
    CHECK_INT(dtest_run(&t, "format", "{\"from\": \"dialogue\"}", 1, "data", p4, 1, NULL, NULL, 0, tmp_path("f2")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "fb.jsonl:2:");
    CHECK_CONTAINS(t.msg, "missing field 'answer'");
    CHECK_INT(dtest_run(&t, "format", "{\"from\": \"dialogue\", \"on_bad_record\": \"skip\"}", 1, "data", p4, 1, NULL, NULL, 0, tmp_path("f3")), 0);
    char *st = dtest_out(tmp_path("f3"), "stats.json");
    CHECK_CONTAINS(st, "\"dropped_bad\": 1");
    free(st);
}

TEST(test_kg2qa_groups_objects_and_draws_templates_by_seed)
{
    const char *kg = head_of("kg/health39_triples.jsonl", 3000, "kg.jsonl");
    const char *p[] = {kg};
    dtest t;
    REQUIRE(dtest_run(&t, "kg2qa", "{}", 42, "data", p, 1, NULL, NULL, 0, tmp_path("k1")) == 0);
    REQUIRE(dtest_run(&t, "kg2qa", "{}", 42, "data", p, 1, NULL, NULL, 0, tmp_path("k2")) == 0);
    REQUIRE(dtest_run(&t, "kg2qa", "{}", 43, "data", p, 1, NULL, NULL, 0, tmp_path("k3")) == 0);
    char *a = dtest_out(tmp_path("k1"), "data.jsonl"), *b = dtest_out(tmp_path("k2"), "data.jsonl"), *c = dtest_out(tmp_path("k3"), "data.jsonl");
    REQUIRE(a && b && c);
    CHECK_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK_INT(dtest_count_lines(a), dtest_count_lines(c));
    /* the first group: 阳痿 / 症状 with its objects grouped into one answer */
    CHECK_CONTAINS(a, "心理性性功能障碍、男子性功能障碍");
    CHECK_CONTAINS(a, "\"meta\":{\"objects\":");
    char *st = dtest_out(tmp_path("k1"), "stats.json");
    CHECK_CONTAINS(st, "\"triples\": 3000");
    CHECK_CONTAINS(st, "\"templates\": \"shipped\"");
    free(st);
    free(a);
    free(b);
    free(c);
    /* user tables; a relation without a table fails, or is skipped and counted */
    mf_test_write(tmp_path("t.json"), "{\"relations\": {\"症状\": {\"questions\": [\"{subject}？\"], \"answers\": [\"{objects}\"]}}}");
    const char *tp[] = {tmp_path("t.json")};
    mf_test_write(tmp_path("kg2.jsonl"), "{\"subject\":\"感冒\",\"relation\":\"症状\",\"object\":\"发热\"}\n"
                                           "{\"subject\":\"感冒\",\"relation\":\"症状\",\"object\":\"咳嗽\"}\n"
                                           "{\"subject\":\"感冒\",\"relation\":\"检查\",\"object\":\"血常规\"}\n");
    const char *p2[] = {tmp_path("kg2.jsonl")};
    CHECK_INT(dtest_run(&t, "kg2qa", "{}", 1, "data", p2, 1, "templates", tp, 1, tmp_path("k4")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "kg2.jsonl:3:");
    CHECK_CONTAINS(t.msg, "relation '检查' has no template table");
    REQUIRE(dtest_run(&t, "kg2qa", "{\"on_bad_record\": \"skip\"}", 1, "data", p2, 1, "templates", tp, 1, tmp_path("k5")) == 0);
    a = dtest_out(tmp_path("k5"), "data.jsonl");
    CHECK_STR(a, "{\"conversations\":[{\"from\":\"human\",\"value\":\"感冒？\"},{\"from\":\"gpt\",\"value\":\"发热、咳嗽\"}],"
                 "\"meta\":{\"objects\":2,\"relation\":\"症状\",\"source\":\"kg\",\"subject\":\"感冒\"}}\n");
    free(a);
    /* max_objects splits a group; phrasings draws distinct questions */
    mf_test_write(tmp_path("t2.json"), "{\"relations\": {\"症状\": {\"questions\": [\"Q1 {subject}\", \"Q2 {subject}\"], \"answers\": [\"{objects}\"]}}}");
    const char *tp2[] = {tmp_path("t2.json")};
    REQUIRE(dtest_run(&t, "kg2qa", "{\"max_objects\": 1, \"phrasings\": 2, \"on_bad_record\": \"skip\"}", 1, "data", p2, 1, "templates", tp2, 1, tmp_path("k6")) == 0);
    a = dtest_out(tmp_path("k6"), "data.jsonl");
    CHECK_INT(dtest_count_lines(a), 4);
    CHECK_CONTAINS(a, "Q1 感冒");
    CHECK_CONTAINS(a, "Q2 感冒");
    free(a);
    mf_test_write(tmp_path("t3.json"), "{\"relations\": {\"症状\": {\"questions\": [\"{subjekt}\"], \"answers\": [\"{objects}\"]}}}");
    const char *tp3[] = {tmp_path("t3.json")};
    CHECK_INT(dtest_run(&t, "kg2qa", "{}", 1, "data", p2, 1, "templates", tp3, 1, tmp_path("k7")), MF_EINVAL);
    CHECK_CONTAINS(t.msg, "unknown placeholder '{subjekt}'");
}

TEST(test_kg2qa_shipped_tables_match_the_json_file_and_cover_the_kg_relations)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/stages/kinds/kg2qa_templates.json", mf_test_root());
    mf_json *file, *emb;
    mf_err err;
    REQUIRE(mf_json_parse_file(&file, path, &err) == 0);
    REQUIRE(mf_json_parse(&emb, mf_kg2qa_default_templates, strlen(mf_kg2qa_default_templates), "emb", &err) == 0);
    CHECK(mf_json_equal(file, emb));
    const char *rels[] = {"症状", "检查", "推荐药物", "治疗方法", "所属科室", "并发症", "发病部位"};
    for (int k = 0; k < 7; k++) CHECK(mf_json_get(mf_json_get(emb, "relations"), rels[k]) != NULL);
    mf_json_free(file);
    mf_json_free(emb);
}

TEST(test_data_stages_chain_through_output_directories)
{
    /* format -> dedup -> split -> mix, each reading the previous stage's out_dir */
    const char *dl = head_of("dialogue/internal_medicine_qa.jsonl", 300, "chain.jsonl");
    const char *p1[] = {dl};
    dtest t;
    REQUIRE(dtest_run(&t, "format", "{}", 3, "data", p1, 1, NULL, NULL, 0, tmp_path("c1")) == 0);
    const char *p2[] = {tmp_path("c1")};
    REQUIRE(dtest_run(&t, "dedup", "{}", 3, "data", p2, 1, NULL, NULL, 0, tmp_path("c2")) == 0);
    const char *p3[] = {tmp_path("c2")};
    REQUIRE(dtest_run(&t, "split", "{\"parts\": {\"train\": 0.5, \"test\": 0.5}}", 3, "data", p3, 1, NULL, NULL, 0, tmp_path("c3")) == 0);
    char *d = dtest_out(tmp_path("c2"), "data.jsonl");
    size_t kept = dtest_count_lines(d);
    free(d);
    CHECK(kept > 250 && kept <= 300);
    const char *p4[] = {tmp_path("c3"), tmp_path("c1")};
    REQUIRE(dtest_run(&t, "mix", "{}", 3, "data", p4, 2, NULL, NULL, 0, tmp_path("c4")) == 0);
    d = dtest_out(tmp_path("c4"), "data.jsonl");
    CHECK_INT(dtest_count_lines(d), kept + 300);
    free(d);
}

TEST(test_dedup_and_mix_report_bad_lines_and_count_them_in_skip_mode)
{
    mf_test_write(tmp_path("bm.jsonl"), "{\"text\":\"甲乙丙丁\"}\n{\"text\":\"x\xff\"}\n{\"text\":\"戊己庚辛\"}\n");
    const char *p[] = {tmp_path("bm.jsonl")};
    static const char *const kinds[] = {"dedup", "mix"};
    for (int k = 0; k < 2; k++) {
        dtest t;
        CHECK_INT(dtest_run(&t, kinds[k], "{}", 1, "data", p, 1, NULL, NULL, 0, tmp_path("bm1")), MF_EINVAL);
        CHECK_CONTAINS(t.msg, "bm.jsonl:2:11: invalid UTF-8");
        REQUIRE(dtest_run(&t, kinds[k], "{\"on_bad_record\": \"skip\"}", 1, "data", p, 1, NULL, NULL, 0, tmp_path(kinds[k])) == 0);
        char *st = dtest_out(tmp_path(kinds[k]), "stats.json");
        CHECK_CONTAINS(st, "\"dropped_bad\": 1");
        CHECK_CONTAINS(st, "\"rows_out\": 2");
        free(st);
    }
}
