/* tests/stages/data/test_readers.c — streaming JSONL readers, bad-line reporting, shape normalisers. */
#include "tests/harness.h"
#include "tests/stages/dtest.h"
#include "stages/data/readers.h"

#include <stdlib.h>

static char g_path[2048];
static const char *write_tmp(const char *name, const char *text)
{
    snprintf(g_path, sizeof g_path, "%s/%s", mf_test_tmpdir(), name);
    mf_test_write(g_path, text);
    return g_path;
}

/* Read every line of path as `shape`, normalising to conversations; return the
 * first error code and the message in msg. */
static int read_all(const char *path, mf_shape shape, int skip, char *msg, size_t n, long long *bad, long long *ok)
{
    mf_rd *r = NULL;
    mf_err err;
    mf_err_clear(&err);
    int rc = mf_reader_open(&r, path, skip, &err);
    *ok = 0;
    while (!rc) {
        mf_json *rec = NULL;
        rc = mf_reader_next(r, &rec, &err);
        if (rc <= 0) break;
        rc = 0;
        mf_conv c;
        char why[512];
        if (shape == MF_SHAPE_TRIPLE || shape == MF_SHAPE_MCQ) {
            mf_triple t;
            mf_mcq q;
            int r2 = shape == MF_SHAPE_TRIPLE ? mf_reader_triple(rec, &t, why, sizeof why) : mf_reader_mcq(rec, &q, why, sizeof why);
            if (r2) rc = mf_reader_reject(r, &err, "%s", why);
            else (*ok)++;
        } else if (mf_reader_to_conv(rec, shape, NULL, &c, why, sizeof why)) {
            rc = mf_reader_reject(r, &err, "%s", why);
        } else {
            (*ok)++;
            mf_conv_free(&c);
        }
        mf_json_free(rec);
    }
    mf_err_str(&err, msg, n);
    *bad = r ? mf_reader_get_stats(r)->bad : -1;
    mf_reader_close(r);
    return rc;
}

/* For each shape: line 3 is bad; fail mode names file:3, skip mode counts 1. */
static void bad_line_case(const char *name, mf_shape shape, const char *good, const char *badl, const char *want)
{
    char text[8192], msg[4096], loc[2200];
    snprintf(text, sizeof text, "%s\n\n%s\n%s\n%s\n", good, badl, good, good); /* line 2 blank */
    const char *p = write_tmp(name, text);
    long long bad, ok;
    CHECK_INT(read_all(p, shape, 0, msg, sizeof msg, &bad, &ok), MF_EINVAL);
    snprintf(loc, sizeof loc, "%s:3:", p);
    CHECK_CONTAINS(msg, loc);
    CHECK_CONTAINS(msg, want);
    CHECK_INT(read_all(p, shape, 1, msg, sizeof msg, &bad, &ok), 0);
    CHECK_INT(bad, 1);
    CHECK_INT(ok, 3);
}

TEST(test_readers_bad_line_in_each_shape_names_file_and_line)
{
    bad_line_case("pre.jsonl", MF_SHAPE_PRETRAIN, "{\"text\":\"abc\"}", "{\"text\": 5}", "field 'text': expected a string, found int");
    bad_line_case("alp.jsonl", MF_SHAPE_ALPACA, "{\"instruction\":\"i\",\"input\":\"\",\"output\":\"o\"}", "{\"instruction\":\"i\"}", "missing field 'output'");
    bad_line_case("sg.jsonl", MF_SHAPE_SHAREGPT, "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}",
                  "{\"conversations\":[{\"from\":\"gpt\",\"value\":\"a\"}]}", "expected a 'human' turn, found 'gpt'");
    bad_line_case("dlg.jsonl", MF_SHAPE_DIALOGUE, "{\"question\":\"q\",\"answer\":\"a\",\"department\":\"d\"}", "{\"question\":\"q\"}", "missing field 'answer'");
    bad_line_case("pref.jsonl", MF_SHAPE_PREFERENCE, "{\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\"}", "{\"prompt\":\"p\",\"chosen\":\"c\"}",
                  "missing field 'rejected' (or 'response_rejected')");
    bad_line_case("mcq.jsonl", MF_SHAPE_MCQ, "{\"question\":\"q\",\"options\":{\"A\":\"x\",\"B\":\"y\"},\"answer\":\"B\"}",
                  "{\"question\":\"q\",\"options\":{\"A\":\"x\",\"B\":\"y\"},\"answer\":\"C\"}", "expected a letter A..B");
    bad_line_case("qa.jsonl", MF_SHAPE_DIALOGUE, "{\"question\":\"q\",\"answer\":\"a\"}", "{\"question\":\"q\",\"answer\":[1]}", "field 'answer': expected a string, found list");
    bad_line_case("kg.jsonl", MF_SHAPE_TRIPLE, "{\"subject\":\"s\",\"relation\":\"r\",\"object\":\"o\"}", "{\"subject\":\"s\",\"relation\":\"r\"}", "missing field 'object'");
    bad_line_case("rec.jsonl", MF_SHAPE_RECORDS, "{\"complaint\":\"c\",\"diagnosis\":\"d\"}", "{\"complaint\":\"c\",\"diagnosis\":3}", "field 'diagnosis': expected a string");
    /* syntax errors: invalid JSON with a column, invalid UTF-8, not an object */
    bad_line_case("json.jsonl", MF_SHAPE_PRETRAIN, "{\"text\":\"abc\"}", "{\"text\": tru}", "invalid JSON");
    bad_line_case("utf.jsonl", MF_SHAPE_PRETRAIN, "{\"text\":\"abc\"}", "{\"text\":\"a\xc3\x28\"}", "invalid UTF-8 at byte 11");
    bad_line_case("arr.jsonl", MF_SHAPE_PRETRAIN, "{\"text\":\"abc\"}", "[1,2]", "expected a JSON object per line, found list");
}

TEST(test_readers_invalid_json_reports_line_and_column)
{
    const char *p = write_tmp("col.jsonl", "{\"a\":1}\n{\"a\":1}\n{\"a\":1,\n");
    mf_rd *r;
    mf_err err;
    REQUIRE(mf_reader_open(&r, p, 0, &err) == 0);
    mf_json *rec;
    CHECK_INT(mf_reader_next(r, &rec, &err), 1);
    mf_json_free(rec);
    CHECK_INT(mf_reader_next(r, &rec, &err), 1);
    mf_json_free(rec);
    CHECK_INT(mf_reader_next(r, &rec, &err), MF_EINVAL);
    CHECK_INT(err.line, 3);
    CHECK(err.col >= 7);
    CHECK_STR(err.file, p);
    mf_reader_close(r);
}

TEST(test_readers_directory_reads_sorted_jsonl_and_ignores_others)
{
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/d", mf_test_tmpdir());
    char p[2100];
    snprintf(p, sizeof p, "%s/b.jsonl", dir);
    mf_test_write(p, "{\"text\":\"b1\"}\n");
    snprintf(p, sizeof p, "%s/a.jsonl", dir);
    mf_test_write(p, "{\"text\":\"a1\"}\n{\"text\":\"a2\"}\n");
    snprintf(p, sizeof p, "%s/stats.json", dir);
    mf_test_write(p, "{not jsonl}");
    mf_rd *r;
    mf_err err;
    REQUIRE(mf_reader_open(&r, dir, 0, &err) == 0);
    const char *want[] = {"a1", "a2", "b1"};
    mf_json *rec;
    int k = 0;
    while (mf_reader_next(r, &rec, &err) == 1) {
        if (k < 3) CHECK_STR(mf_json_get_str(rec, "text", ""), want[k]);
        k++;
        mf_json_free(rec);
    }
    CHECK_INT(k, 3);
    CHECK_INT(mf_reader_get_stats(r)->files, 2);
    mf_reader_close(r);
    snprintf(p, sizeof p, "%s/empty", mf_test_tmpdir());
    mf_mkdir_p(p, 0755, NULL);
    CHECK_INT(mf_reader_open(&r, p, 0, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "no *.jsonl");
}

static char *conv_line(const char *json, mf_shape shape)
{
    mf_json *rec;
    mf_err err;
    if (mf_json_parse(&rec, json, strlen(json), "t", &err)) return NULL;
    mf_conv c;
    char why[256];
    int rc = mf_reader_to_conv(rec, shape, NULL, &c, why, sizeof why);
    mf_json_free(rec);
    if (rc) return strdup(why);
    mf_buf b = MF_BUF_INIT;
    mf_conv_write_line(&b, &c);
    mf_conv_free(&c);
    return mf_buf_steal(&b);
}

TEST(test_readers_normalise_each_shape_to_canonical_conversations)
{
    char *s = conv_line("{\"instruction\":\"I\",\"input\":\"X\",\"output\":\"O\",\"history\":[[\"q1\",\"a1\"]],\"system\":\"S\"}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"q1\"},{\"from\":\"gpt\",\"value\":\"a1\"},"
                 "{\"from\":\"human\",\"value\":\"I\\nX\"},{\"from\":\"gpt\",\"value\":\"O\"}]}\n");
    free(s);
    s = conv_line("{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"user\",\"value\":\"q\"},{\"from\":\"assistant\",\"value\":\"a\"}]}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}\n");
    free(s);
    s = conv_line("{\"department\":\"心血管科\",\"question\":\"q\",\"answer\":\"a\"}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}],\"meta\":{\"department\":\"心血管科\"}}\n");
    free(s);
    s = conv_line("{\"question\":\"p\",\"response_chosen\":\"c\",\"response_rejected\":\"r\",\"history\":[[\"h\",\"g\"]]}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"chosen\":\"c\",\"conversations\":[{\"from\":\"human\",\"value\":\"h\"},{\"from\":\"gpt\",\"value\":\"g\"},{\"from\":\"human\",\"value\":\"p\"}],\"rejected\":\"r\"}\n");
    free(s);
    s = conv_line("{\"question\":\"Q\",\"options\":[\"x\",\"y\"],\"answer\":\"A\",\"category\":\"anatomy\"}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"human\",\"value\":\"Q\\nA. x\\nB. y\\n答案：\"},{\"from\":\"gpt\",\"value\":\"A\"}],"
                 "\"meta\":{\"answer\":\"A\",\"category\":\"anatomy\",\"options\":[\"x\",\"y\"]}}\n");
    free(s);
    s = conv_line("{\"complaint\":\"头痛、发热\",\"examinations\":[\"血常规\",\"CT\"],\"department\":\"神经内科\",\"diagnosis\":\"脑炎\"}", MF_SHAPE_AUTO);
    CHECK_CONTAINS(s, "\\n症状：头痛、发热\\n检查：血常规、CT\"}");
    CHECK_CONTAINS(s, "{\"from\":\"gpt\",\"value\":\"脑炎\"}],\"meta\":{\"department\":\"神经内科\",\"diagnosis\":\"脑炎\"}}");
    free(s);
    s = conv_line("{\"text\":\"T\"}", MF_SHAPE_AUTO);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"gpt\",\"value\":\"T\"}]}\n");
    free(s);
    s = conv_line("{\"foo\":1}", MF_SHAPE_AUTO);
    CHECK_CONTAINS(s, "cannot tell the record's shape");
    free(s);
}

TEST(test_readers_read_every_shared_data_file_without_error)
{
    static const struct { const char *file; mf_shape shape; } files[] = {
        {"dialogue/internal_medicine_qa.jsonl", MF_SHAPE_DIALOGUE}, {"pretrain/doctor_answers.jsonl", MF_SHAPE_PRETRAIN},
        {"sft/internal_medicine_sharegpt.jsonl", MF_SHAPE_SHAREGPT}, {"preference/mismatched_answer_pairs.jsonl", MF_SHAPE_PREFERENCE},
        {"mcq/cmmlu_medical.jsonl", MF_SHAPE_MCQ}, {"records/health39_diagnosis.jsonl", MF_SHAPE_RECORDS}};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char src[512], msg[4096];
        snprintf(src, sizeof src, "%s/%s", MF_SHARED_DATA, files[k].file);
        const char *p = dtest_head(src, 400, mf_test_tmpdir(), "head.jsonl");
        REQUIRE(p);
        long long bad, ok;
        CHECK_INT(read_all(p, files[k].shape, 0, msg, sizeof msg, &bad, &ok), 0);
        CHECK_INT(ok, 400);
    }
}

TEST(test_readers_plain_text_file_gives_one_text_record_per_line)
{
    const char *p = write_tmp("corpus.txt", "第一行 {not json}\n\n第二行\n");
    mf_rd *r;
    mf_err err;
    REQUIRE(mf_reader_open(&r, p, 0, &err) == 0);
    mf_json *rec;
    REQUIRE(mf_reader_next(r, &rec, &err) == 1);
    CHECK_STR(mf_json_get_str(rec, "text", ""), "第一行 {not json}");
    mf_json_free(rec);
    REQUIRE(mf_reader_next(r, &rec, &err) == 1);
    CHECK_STR(mf_json_get_str(rec, "text", ""), "第二行");
    CHECK_INT(mf_reader_lineno(r), 3);
    mf_json_free(rec);
    CHECK_INT(mf_reader_next(r, &rec, &err), 0);
    mf_reader_close(r);
}
