/*
 * tests/tokenizer/test_tokenizer.c — conformance of tokenizer/tokenizer.h against HF
 * tokenizers (fixtures from tests/tokenizer/gen_tokenizer_fixtures.py), plus
 * error handling for invalid UTF-8 and hostile tokenizer.json files.
 */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"
#include "tokenizer/tok_internal.h" /* mf_tok_normalize, mf_tok_regex_split: checked directly */
#include "tokenizer/tokenizer.h"

#define FIX "tests/tokenizer/fixtures/"

static char *fix_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/" FIX "%s", mf_test_root(), name);
    return buf;
}

static mf_json *load_cases(void)
{
    mf_json *j = NULL;
    mf_err err = {0};
    int rc = mf_json_parse_file(&j, fix_path("cases.json"), &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "cases.json: %s", err.msg);
    return j;
}

static int ids_equal(const int32_t *got, size_t n, const mf_json *want, size_t skip_front, size_t skip_back)
{
    if (!want || want->type != MF_JSON_ARRAY || want->n < skip_front + skip_back) return 0;
    size_t wn = want->n - skip_front - skip_back;
    if (wn != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != (int32_t)want->items[skip_front + i]->i) return 0;
    return 1;
}

static void show_ids(char *buf, size_t cap, const int32_t *ids, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && o + 16 < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%d ", ids[i]);
}

/* Run every encode/decode case of one tokenizer; returns the number of mismatches. */
static int check_tokenizer(const char *name)
{
    mf_json *cases = load_cases();
    REQUIRE(cases);
    char file[256];
    snprintf(file, sizeof file, "%s.json", name);
    mf_tok *tok = NULL;
    mf_err err = {0};
    int rc = mf_tok_load(&tok, fix_path(file), &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "load %s: %s", name, err.msg);
    REQUIRE(rc == 0);
    const mf_json *texts = mf_json_get(cases, "texts");
    const mf_json *tmpl = mf_json_get_path(cases, "meta.template");
    const mf_json *t = mf_json_get(tmpl, name);
    REQUIRE(texts && t && t->n == 2);
    size_t npre = t->items[0]->n, npost = t->items[1]->n;
    int bad = 0, checked = 0;
    const mf_json *list = mf_json_get(cases, "cases");
    for (size_t i = 0; i < list->n; i++) {
        const mf_json *c = list->items[i];
        if (strcmp(mf_json_get_str(c, "tok", ""), name)) continue;
        const mf_json *text = texts->items[mf_json_get_int(c, "t", 0)];
        int32_t *ids = NULL;
        size_t n = 0;
        checked++;
        rc = mf_tok_encode(tok, text->s, text->slen, 1, &ids, &n, &err);
        if (rc || !ids_equal(ids, n, mf_json_get(c, "ids"), 0, 0)) {
            char got[600];
            show_ids(got, sizeof got, ids, n);
            if (bad++ < 8)
                mf_test_fail(__FILE__, __LINE__, "%s: encode(\"%.80s\") rc=%d: got %s", name, text->s, rc, got);
            free(ids);
            continue;
        }
        /* decode with and without special tokens */
        char *dec = NULL;
        size_t dl = 0;
        for (int skip = 0; skip < 2; skip++) {
            const mf_json *want = mf_json_get(c, skip ? "decoded_skip" : "decoded");
            const char *ws = want ? want->s : text->s;
            size_t wl = want ? want->slen : text->slen;
            rc = mf_tok_decode(tok, ids, n, skip, &dec, &dl, &err);
            if (rc || dl != wl || memcmp(dec, ws, wl)) {
                if (bad++ < 8)
                    mf_test_fail(__FILE__, __LINE__, "%s: decode(skip=%d) of \"%.60s\": got \"%.80s\" want \"%.80s\"", name,
                                 skip, text->s, dec ? dec : "(error)", ws);
            }
            free(dec);
            dec = NULL;
        }
        free(ids);
        /* without special tokens */
        rc = mf_tok_encode(tok, text->s, text->slen, 0, &ids, &n, &err);
        const mf_json *ns = mf_json_get(c, "ids_nospecial");
        if (rc || !(ns ? ids_equal(ids, n, ns, 0, 0) : ids_equal(ids, n, mf_json_get(c, "ids"), npre, npost))) {
            if (bad++ < 8) mf_test_fail(__FILE__, __LINE__, "%s: encode(\"%.80s\", no special) differs", name, text->s);
        }
        free(ids);
        /* special tokens as plain text (HF encode_special_tokens) */
        const mf_json *lit = mf_json_get(c, "ids_literal");
        rc = mf_tok_encode_ex(tok, text->s, text->slen, MF_TOK_LITERAL, &ids, &n, &err);
        if (rc || !(lit ? ids_equal(ids, n, lit, 0, 0)
                        : ns ? ids_equal(ids, n, ns, 0, 0) : ids_equal(ids, n, mf_json_get(c, "ids"), npre, npost))) {
            if (bad++ < 8) mf_test_fail(__FILE__, __LINE__, "%s: encode(\"%.80s\", literal) differs", name, text->s);
        }
        free(ids);
    }
    const mf_json *dl = mf_json_get(cases, "decode");
    for (size_t i = 0; i < dl->n; i++) {
        const mf_json *c = dl->items[i];
        if (strcmp(mf_json_get_str(c, "tok", ""), name)) continue;
        const mf_json *idl = mf_json_get(c, "ids");
        int32_t ids[64];
        size_t n = idl->n < 64 ? idl->n : 64;
        for (size_t k = 0; k < n; k++) ids[k] = (int32_t)idl->items[k]->i;
        checked++;
        for (int skip = 0; skip < 2; skip++) {
            const mf_json *want = mf_json_get(c, skip ? "text_skip" : "text");
            char *dec = NULL;
            size_t len = 0;
            rc = mf_tok_decode(tok, ids, n, skip, &dec, &len, &err);
            if (rc || len != want->slen || memcmp(dec, want->s, len)) {
                if (bad++ < 8)
                    mf_test_fail(__FILE__, __LINE__, "%s: decode of random ids #%zu (skip=%d): got \"%.80s\" want \"%.80s\"",
                                 name, i, skip, dec ? dec : "(error)", want->s);
            }
            free(dec);
        }
    }
    CHECK(checked > 150); /* 155 texts + 40 random id sequences per tokenizer */
    if (bad) mf_test_fail(__FILE__, __LINE__, "%s: %d of %d cases differ from HF tokenizers", name, bad, checked);
    mf_tok_free(tok);
    mf_json_free(cases);
    return bad;
}

TEST(test_tokenizer_matches_hf_byte_level_qwen2) { check_tokenizer("bl_qwen2"); }
TEST(test_tokenizer_matches_hf_byte_level_llama3_ignore_merges) { check_tokenizer("bl_llama3"); }
TEST(test_tokenizer_matches_hf_byte_level_gpt2_prefix_space) { check_tokenizer("bl_gpt2"); }
TEST(test_tokenizer_matches_hf_byte_level_bloom) { check_tokenizer("bl_bloom"); }
TEST(test_tokenizer_matches_hf_sentencepiece_llama2_byte_fallback) { check_tokenizer("sp_llama2"); }
TEST(test_tokenizer_matches_hf_metaspace_unk) { check_tokenizer("sp_meta"); }
TEST(test_tokenizer_matches_hf_metaspace_always_unsplit) { check_tokenizer("sp_always"); }

TEST(test_tokenizer_special_ids_and_lookup)
{
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load(&tok, fix_path("sp_llama2.json"), &err));
    REQUIRE(tok);
    CHECK_INT(mf_tok_bos_id(tok), 1);
    CHECK_INT(mf_tok_eos_id(tok), 2);
    CHECK_INT(mf_tok_unk_id(tok), 0);
    CHECK_INT(mf_tok_token_to_id(tok, "<0x41>"), 3 + 0x41);
    CHECK_STR(mf_tok_id_to_token(tok, 1), "<s>");
    CHECK(mf_tok_is_special(tok, 1));
    CHECK(!mf_tok_is_special(tok, 100));
    CHECK(mf_tok_vocab_size(tok) >= 259);
    CHECK(mf_tok_id_to_token(tok, -1) == NULL);
    mf_tok_free(tok);
    CHECK_OK(mf_tok_load(&tok, fix_path("bl_qwen2.json"), &err));
    REQUIRE(tok);
    CHECK_INT(mf_tok_token_to_id(tok, "<|endoftext|>"), 0);
    CHECK_INT(mf_tok_eos_id(tok), 0);
    CHECK_INT(mf_tok_bos_id(tok), -1);
    mf_tok_free(tok);
}

TEST(test_tokenizer_rejects_invalid_utf8_with_offset)
{
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load(&tok, fix_path("bl_qwen2.json"), &err));
    REQUIRE(tok);
    int32_t *ids = NULL;
    size_t n = 0;
    const char bad[] = "ok \xE9\xAB\x98 then \xC3\x28 bad";
    int rc = mf_tok_encode(tok, bad, sizeof bad - 1, 0, &ids, &n, &err);
    CHECK_INT(rc, MF_EINVAL);
    CHECK_CONTAINS(err.msg, "not valid UTF-8 at byte 12");
    CHECK(ids == NULL);
    const char lone[] = "\xFF";
    CHECK_INT(mf_tok_encode(tok, lone, 1, 0, &ids, &n, &err), MF_EINVAL);
    /* decode of an id outside the vocabulary */
    int32_t badid[] = {5, 1 << 30};
    char *out = NULL;
    size_t len = 0;
    CHECK_INT(mf_tok_decode(tok, badid, 2, 0, &out, &len, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "cannot decode id 1073741824 at position 1");
    mf_tok_free(tok);
}

static void expect_load_error(const char *json, const char *needle)
{
    mf_tok *tok = NULL;
    mf_err err = {0};
    int rc = mf_tok_load_mem(&tok, json, strlen(json), "t.json", &err);
    CHECK(rc != 0);
    CHECK(tok == NULL);
    char full[4096];
    CHECK_CONTAINS(mf_err_str(&err, full, sizeof full), needle);
    mf_tok_free(tok);
}

TEST(test_tokenizer_rejects_hostile_json_with_clear_errors)
{
    expect_load_error("[]", "expected a JSON object");
    expect_load_error("{}", "expected a 'model' object");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab: expected an object");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}}", "model.merges: expected an array");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}", "model type 'WordPiece'");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 99999999999}, \"merges\": []}}", "expected an id in [0, 16777216)");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}", "expected an id");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 16000000}, \"merges\": []}}", "token ids are too sparse");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "found string");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "id already used");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                      "model.merges[0]: token 'c' is not in the vocabulary");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "token 'ab' is not in the vocabulary");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "expected \"left right\"");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", "expected \"left right\"");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}", "unk_token '<unk>'");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}, \"added_tokens\": [{\"id\": 1e30, \"content\": \"x\"}]}",
                      "added_tokens: expected");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                      "{\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}}",
                      "is not one medflow implements");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}, \"normalizer\": {\"type\": \"NFKC\"}}",
                      "normalizer type 'NFKC' is not supported");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}, \"decoder\": {\"type\": \"WordPiece\"}}",
                      "decoder type 'WordPiece'");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": {\"type\": "
                      "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {}}}",
                      "special token '<s>' is not in special_tokens");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
                      "\"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Metaspace\", \"replacement\": \"_\"}]}}",
                      "pre_tokenizer");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}", "t.json");
    /* BPE dropout makes encoding random: refused, never run without it (null and 0 are no dropout) */
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}", "model.dropout");
    /* a suffix or prefix the byte-level encoder would not apply (HF: "heart" -> h, ear, t</w>) */
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"end_of_word_suffix\": \"</w>\"}, "
                      "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
                      "model.end_of_word_suffix with a ByteLevel pre-tokenizer is not supported");
}

TEST(test_tokenizer_nfc_normalizer_matches_hf)
{
    const char *json = "{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}";
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load_mem(&tok, json, strlen(json), "nfc.json", &err));
    REQUIRE(tok);
    mf_json *cases = load_cases();
    REQUIRE(cases);
    const mf_json *nfc = mf_json_get(cases, "nfc");
    REQUIRE(nfc && nfc->n > 100);
    int bad = 0;
    mf_buf b = MF_BUF_INIT;
    for (size_t i = 0; i < nfc->n; i++) {
        const mf_json *in = nfc->items[i]->items[0], *want = nfc->items[i]->items[1];
        CHECK_OK(mf_tok_normalize(tok, in->s, in->slen, &b, &err));
        if (b.len != want->slen || memcmp(b.data, want->s, b.len)) {
            if (bad++ < 5) mf_test_fail(__FILE__, __LINE__, "NFC of case %zu differs from HF", i);
        }
    }
    CHECK_INT(bad, 0);
    mf_buf_free(&b);
    mf_json_free(cases);
    mf_tok_free(tok);
}

TEST(test_tokenizer_long_word_is_not_quadratic_and_matches_merges)
{
    /* 200k bytes without a split point: the heap merge handles it in one pass */
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load(&tok, fix_path("bl_qwen2.json"), &err));
    REQUIRE(tok);
    size_t len = 201000;
    char *s = malloc(len);
    REQUIRE(s);
    for (size_t i = 0; i + 3 <= len; i += 3) memcpy(s + i, "\xE9\xAB\x98", 3); /* 高 repeated */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mf_tok_encode(tok, s, len, 0, &ids, &n, &err));
    CHECK(n > 0 && n < len);
    char *dec = NULL;
    size_t dl = 0;
    CHECK_OK(mf_tok_decode(tok, ids, n, 0, &dec, &dl, &err));
    CHECK(dl == len && !memcmp(dec, s, len));
    free(dec);
    free(ids);
    free(s);
    mf_tok_free(tok);
}

/* ---- the hand-written regexes, piece by piece, against HF's Split ---- */

typedef struct {
    size_t lens[4096];
    size_t n;
} pieces;

static int collect(void *ctx, size_t off, size_t len)
{
    pieces *p = ctx;
    (void)off;
    if (p->n < 4096) p->lens[p->n++] = len;
    return 0;
}

static void check_regex(const char *name, int kind)
{
    mf_json *cases = load_cases();
    REQUIRE(cases);
    const mf_json *texts = mf_json_get(cases, "texts");
    const mf_json *utexts = mf_json_get_path(cases, "pretok.texts");
    const mf_json *want = mf_json_get(mf_json_get(cases, "pretok"), name);
    REQUIRE(texts && utexts && want && want->n == texts->n + utexts->n);
    int bad = 0;
    static pieces p;
    for (size_t i = 0; i < want->n; i++) {
        const mf_json *t = i < texts->n ? texts->items[i] : utexts->items[i - texts->n];
        p.n = 0;
        mf_tok_regex_split(kind, t->s, t->slen, collect, &p);
        const mf_json *w = want->items[i];
        int same = w->n == p.n;
        for (size_t k = 0; same && k < p.n; k++) same = (size_t)w->items[k]->i == p.lens[k];
        if (!same && bad++ < 5) mf_test_fail(__FILE__, __LINE__, "%s regex: pieces of text %zu \"%.80s\" differ from HF", name, i, t->s);
    }
    CHECK_INT(bad, 0);
    mf_json_free(cases);
}

TEST(test_tokenizer_regex_gpt2_splits_like_hf) { check_regex("gpt2", TOK_RE_GPT2); }
TEST(test_tokenizer_regex_llama3_splits_like_hf) { check_regex("llama3", TOK_RE_LLAMA3); }
TEST(test_tokenizer_regex_qwen2_splits_like_hf) { check_regex("qwen2", TOK_RE_QWEN2); }
TEST(test_tokenizer_regex_bloom_splits_like_hf) { check_regex("bloom", TOK_RE_BLOOM); }

TEST(test_tokenizer_added_token_reusing_a_vocab_id_keeps_both_strings)
{
    /* found by fuzz_tokenizer: an added token whose id belongs to a different vocab
     * string must not free that string (HF: the added content wins in decode,
     * the vocab string still encodes to the id) */
    const char *json = "{\"added_tokens\": [{\"id\": 1, \"content\": \"<x>\", \"special\": true}, "
                       "{\"id\": 1, \"content\": \"<y>\", \"special\": true}], "
                       "\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load_mem(&tok, json, strlen(json), "t.json", &err));
    REQUIRE(tok);
    CHECK_INT(mf_tok_token_to_id(tok, "b"), 1);
    CHECK_INT(mf_tok_token_to_id(tok, "<x>"), 1);
    CHECK_STR(mf_tok_id_to_token(tok, 1), "<y>");
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mf_tok_encode(tok, "abb<x>", 6, 0, &ids, &n, &err));
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_INT(ids[0], 2);
        CHECK_INT(ids[1], 1);
        CHECK_INT(ids[2], 1);
    }
    free(ids);
    mf_tok_free(tok);
}

/* ---- concurrent encoders share one mf_tok (the word cache is locked) ---- */
#include <pthread.h>

typedef struct {
    mf_tok *tok;
    const mf_json *texts;
    uint64_t hash;
    int errors;
} enc_job;

static void *enc_thread(void *arg)
{
    enc_job *j = arg;
    uint64_t h = 1469598103934665603ULL;
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < j->texts->n; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            mf_err err = {0};
            if (mf_tok_encode(j->tok, j->texts->items[i]->s, j->texts->items[i]->slen, 1, &ids, &n, &err)) j->errors++;
            for (size_t k = 0; round == 0 && k < n; k++) h = (h ^ (uint32_t)ids[k]) * 1099511628211ULL;
            free(ids);
        }
    j->hash = h;
    return NULL;
}

TEST(test_tokenizer_concurrent_encodes_agree)
{
    mf_json *cases = load_cases();
    REQUIRE(cases);
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load(&tok, fix_path("bl_qwen2.json"), &err));
    REQUIRE(tok);
    enc_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (enc_job){tok, mf_json_get(cases, "texts"), 0, 0};
        REQUIRE(pthread_create(&th[i], NULL, enc_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    enc_job solo = {tok, mf_json_get(cases, "texts"), 0, 0};
    enc_thread(&solo);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(jobs[i].errors, 0);
        CHECK(jobs[i].hash == solo.hash);
    }
    mf_tok_free(tok);
    mf_json_free(cases);
}

TEST(test_tokenizer_continuing_subword_prefix_and_suffix)
{
    /* the case of HF's own model test (test_bpe_with_continuing_subword_prefix), plus a suffix */
    const char *json = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\", "
                       "\"vocab\": {\"[UNK]\": 5, \"a\": 0, \"##b\": 1, \"##c\": 2, \"ab\": 3, \"abc\": 4}, "
                       "\"merges\": [\"a ##b\", \"ab ##c\"]}}";
    mf_tok *tok = NULL;
    mf_err err = {0};
    CHECK_OK(mf_tok_load_mem(&tok, json, strlen(json), "t.json", &err));
    REQUIRE(tok);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mf_tok_encode(tok, "abc", 3, 0, &ids, &n, &err));
    REQUIRE(n == 1);
    CHECK_INT(ids[0], 4);
    free(ids);
    CHECK_OK(mf_tok_encode(tok, "ab", 2, 0, &ids, &n, &err));
    REQUIRE(n == 1);
    CHECK_INT(ids[0], 3);
    free(ids);
    CHECK_OK(mf_tok_encode(tok, "axc", 3, 0, &ids, &n, &err)); /* x unknown -> [UNK] */
    REQUIRE(n == 3);
    CHECK_INT(ids[0], 0);
    CHECK_INT(ids[1], 5);
    CHECK_INT(ids[2], 2);
    free(ids);
    mf_tok_free(tok);
    const char *json2 = "{\"model\": {\"type\": \"BPE\", \"end_of_word_suffix\": \"</w>\", "
                        "\"vocab\": {\"a\": 0, \"b</w>\": 1, \"ab</w>\": 2, \"b\": 3}, \"merges\": [\"a b</w>\"]}}";
    CHECK_OK(mf_tok_load_mem(&tok, json2, strlen(json2), "t2.json", &err));
    REQUIRE(tok);
    CHECK_OK(mf_tok_encode(tok, "ab", 2, 0, &ids, &n, &err));
    REQUIRE(n == 1);
    CHECK_INT(ids[0], 2);
    free(ids);
    mf_tok_free(tok);
}
