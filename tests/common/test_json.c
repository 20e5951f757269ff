/* tests/common/test_json.c — the JSON parser and canonical writer. */
#include "tests/harness.h"
#include "common/json.h"

#include <stdlib.h>

static char *roundtrip(const char *text, int flags)
{
    mf_json *v = NULL;
    mf_err err;
    if (mf_json_parse(&v, text, strlen(text), "t.json", &err)) return NULL;
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, v, flags);
    mf_json_free(v);
    return mf_buf_steal(&b);
}

TEST(test_json_canonical_sorts_keys_and_keeps_float_types)
{
    char *s = roundtrip("{\"b\": 1, \"a\": [2.0, 1e-5, 0.1, -3], \"c\": {\"y\": null, \"x\": true}}", MF_JSON_SORTED);
    CHECK_STR(s, "{\"a\":[2.0,1e-05,0.1,-3],\"b\":1,\"c\":{\"x\":true,\"y\":null}}");
    free(s);
}

TEST(test_json_string_escapes_and_unicode_roundtrip)
{
    char *s = roundtrip("\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\\u4e2d\"", 0);
    CHECK_STR(s, "\"a\\\"b\\\\c\\né😀中\"");
    free(s);
}

TEST(test_json_errors_name_line_and_column)
{
    mf_json *v = NULL;
    mf_err err;
    const char *text = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    CHECK_INT(mf_json_parse(&v, text, strlen(text), "x.json", &err), MF_EINVAL);
    CHECK_INT(err.line, 3);
    CHECK_INT(err.col, 8);
    CHECK_STR(err.file, "x.json");
}

TEST(test_json_rejects_invalid_utf8_and_duplicate_keys)
{
    mf_json *v = NULL;
    mf_err err;
    const char bad[] = "{\"a\": \"x\xff\"}";
    CHECK_INT(mf_json_parse(&v, bad, strlen(bad), "u.json", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "UTF-8");
    const char dup[] = "{\"a\": 1, \"a\": 2}";
    CHECK_INT(mf_json_parse(&v, dup, strlen(dup), "d.json", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "duplicate key");
}

TEST(test_json_depth_is_bounded)
{
    size_t n = 100000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    mf_json *v = NULL;
    mf_err err;
    CHECK_INT(mf_json_parse(&v, deep, n, "deep.json", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "nesting");
    free(deep);
}
