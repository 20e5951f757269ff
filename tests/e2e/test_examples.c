/*
 * tests/e2e/test_examples.c — the examples' data: train, validation and test are disjoint.
 *
 * Every text of a validation or test file (a string of at least 24 bytes, or a record's complaint
 * plus examinations) must not occur in a training file, and no test text in a validation file.
 * Department and category names are labels, shared by design; kg.jsonl is the knowledge the
 * examples inject (the records are derived from it), so it is not compared.
 */
#include "tests/harness.h"

#include "common/json.h"
#include "common/u64map.h"

#include <stdint.h>
#include <stdlib.h>

#define MIN_TEXT 24

static const char *train_files[] = {"pretrain", "sft", "prefs", "prompts", "records_train", "records_kg", NULL};
static const char *val_files[] = {"sft_val", "prefs_val", NULL};
static const char *test_files[] = {"qa_test", "text_test", "records_test", "mcq", NULL};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

typedef void (*text_fn)(void *ctx, const char *file, int line, const char *s, size_t n);

static void leaves(const mf_json *v, const char *key, const char *file, int line, text_fn fn, void *ctx)
{
    if (v->type == MF_JSON_STRING) {
        if (v->slen >= MIN_TEXT && (!key || (strcmp(key, "department") && strcmp(key, "category"))))
            fn(ctx, file, line, v->s, v->slen);
    } else if (v->type == MF_JSON_ARRAY) {
        for (size_t i = 0; i < v->n; i++) leaves(v->items[i], key, file, line, fn, ctx);
    } else if (v->type == MF_JSON_OBJECT) {
        for (size_t i = 0; i < v->n; i++) leaves(v->items[i], v->keys[i], file, line, fn, ctx);
    }
}

/* Call fn on every text of examples/data/<name>.jsonl; the number of lines, or -1. */
static int each_text(const char *name, text_fn fn, void *ctx)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/examples/data/%s.jsonl", mf_test_root(), name);
    char *text = mf_test_read(path);
    if (!text) return -1;
    int lines = 0;
    for (char *p = text, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) nl = p + strlen(p) - 1;
        lines++;
        mf_json *v = NULL;
        mf_err err = {0};
        if (mf_json_parse(&v, p, (size_t)(nl - p) + (*nl != '\n'), name, &err)) {
            mf_test_fail(__FILE__, __LINE__, "%s.jsonl:%d: not JSON", name, lines);
            continue;
        }
        const char *c = mf_json_get_str(v, "complaint", NULL), *e = mf_json_get_str(v, "examinations", "");
        if (c && mf_json_get(v, "diagnosis")) { /* a record: its findings together */
            char key[8192];
            int n = snprintf(key, sizeof key, "%s|%s", c, e);
            fn(ctx, name, lines, key, (size_t)n < sizeof key ? (size_t)n : sizeof key - 1);
        } else {
            leaves(v, NULL, name, lines, fn, ctx);
        }
        mf_json_free(v);
    }
    free(text);
    return lines;
}

static void add_text(void *ctx, const char *file, int line, const char *s, size_t n)
{
    (void)file, (void)line;
    REQUIRE(mf_u64map_add(ctx, fnv1a(s, n), 1) == 0);
}

struct probe {
    mf_u64map *seen;
    const char *against;
    int hits, quiet;
};

static void probe_text(void *ctx, const char *file, int line, const char *s, size_t n)
{
    struct probe *p = ctx;
    if (mf_u64map_find(p->seen, fnv1a(s, n)) == MF_U64MAP_NONE) return;
    if (p->hits++ < 5 && !p->quiet)
        mf_test_fail(__FILE__, __LINE__, "examples/data/%s.jsonl:%d: text also in the %s files: \"%.60s...\"",
                     file, line, p->against, s);
}

static void add_all(mf_u64map *m, const char **names)
{
    for (int i = 0; names[i]; i++) {
        int n = each_text(names[i], add_text, m);
        if (n <= 0) mf_test_fail(__FILE__, __LINE__, "examples/data/%s.jsonl: missing or empty", names[i]);
    }
}

static int probe_all(mf_u64map *m, const char *against, const char **names)
{
    struct probe p = {m, against, 0, 0};
    for (int i = 0; names[i]; i++) each_text(names[i], probe_text, &p);
    return p.hits;
}

TEST(test_examples_data_train_val_test_disjoint)
{
    mf_u64map train = {0}, val = {0};
    add_all(&train, train_files);
    add_all(&val, val_files);
    CHECK(train.n > 5000);
    CHECK_INT(probe_all(&train, "training", val_files), 0);
    CHECK_INT(probe_all(&train, "training", test_files), 0);
    CHECK_INT(probe_all(&val, "validation", test_files), 0);
    mf_u64map_free(&train);
    mf_u64map_free(&val);
}

/* The check itself finds a leak: a test answer planted as a rejected answer of a training pair. */
TEST(test_examples_data_check_finds_a_planted_leak)
{
    mf_u64map train = {0};
    add_all(&train, train_files);
    char *qa = NULL;
    REQUIRE(mf_test_sh(&qa, NULL, "head -1 '%s/examples/data/qa_test.jsonl'", mf_test_root()) == 0);
    mf_json *v = NULL;
    mf_err err = {0};
    REQUIRE(mf_json_parse(&v, qa, strlen(qa), "qa_test", &err) == 0);
    const char *answer = mf_json_get_str(v, "answer", "");
    add_text(&train, "prefs", 1, answer, strlen(answer));
    struct probe p = {&train, "training", 0, 1};
    each_text("qa_test", probe_text, &p);
    CHECK_INT(p.hits, 1);
    mf_json_free(v);
    free(qa);
    mf_u64map_free(&train);
}
