/*
 * tests/tokenizer/test_tokenizer_spm.c — the SentencePiece reader (tokenizer/tok_spm*.c)
 * against the `sentencepiece` library, and the ChatGLM-6B tokenizer (tok_chatglm.c)
 * against a re-implementation of the published tokenization_chatglm.py logic.
 * Fixtures: tests/tokenizer/gen_spm_fixtures.py (spm_cases.json, *.model).
 */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/json.h"
#include "tokenizer/tok_spm.h"
#include "tokenizer/tokenizer.h"

#define FIX "tests/tokenizer/fixtures/"

static const char *fix_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/" FIX "%s", mf_test_root(), name);
    return buf;
}

static mf_json *cases(void)
{
    mf_json *j = NULL;
    mf_err err = {0};
    if (mf_json_parse_file(&j, fix_path("spm_cases.json"), &err)) mf_test_fail(__FILE__, __LINE__, "spm_cases.json: %s", err.msg);
    return j;
}

static int same_ids(const int32_t *got, size_t n, const mf_json *want)
{
    if (!want || want->type != MF_JSON_ARRAY || want->n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != (int32_t)want->items[i]->i) return 0;
    return 1;
}

static void ids_of(const mf_json *a, int32_t **ids, size_t *n)
{
    *n = a->n;
    *ids = malloc((a->n ? a->n : 1) * sizeof **ids);
    for (size_t i = 0; i < a->n; i++) (*ids)[i] = (int32_t)a->items[i]->i;
}

static void show(const char *what, const char *text, const int32_t *ids, size_t n, const mf_json *want)
{
    char b[2048];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < sizeof b; i++) o += (size_t)snprintf(b + o, sizeof b - o, "%d ", ids[i]);
    char w[2048];
    o = 0;
    for (size_t i = 0; want && i < want->n && o + 16 < sizeof w; i++)
        o += (size_t)snprintf(w + o, sizeof w - o, "%lld ", (long long)want->items[i]->i);
    mf_test_fail(__FILE__, __LINE__, "%s of \"%.80s\":\n  got:  %s\n  want: %s", what, text, b, w);
}

/* Every encode and decode of one plain SentencePiece model matches the library. */
static void check_spm(const char *name)
{
    mf_json *c = cases();
    REQUIRE(c);
    const mf_json *m = mf_json_get(mf_json_get(c, "models"), name);
    REQUIRE(m);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", mf_test_root(), mf_json_get_str(m, "file", ""));
    mf_spm *s = NULL;
    mf_err err = {0};
    int rc = mf_spm_load(&s, path, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "load %s: %s", path, err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(mf_spm_size(s), mf_json_get_int(m, "size", -1));
    CHECK_INT(mf_spm_model_type(s), mf_json_get_int(m, "model_type", -1));
    const mf_json *enc = mf_json_get(m, "encode");
    int bad = 0;
    for (size_t i = 0; i < enc->n && bad < 5; i++) {
        const mf_json *r = enc->items[i];
        const mf_json *t = mf_json_get(r, "text");
        mf_tok_ids out = {0};
        CHECK_OK(mf_spm_encode(s, t->s, t->slen, &out, &err));
        if (!same_ids(out.v, out.n, mf_json_get(r, "ids"))) {
            show("encode", t->s, out.v, out.n, mf_json_get(r, "ids"));
            bad++;
        }
        mf_buf b = MF_BUF_INIT;
        CHECK_OK(mf_spm_decode(s, out.v, out.n, &b, &err));
        if (strcmp(mf_buf_cstr(&b), mf_json_get_str(r, "decoded", ""))) {
            mf_test_fail(__FILE__, __LINE__, "decode of \"%.80s\": \"%s\" vs \"%s\"", t->s, mf_buf_cstr(&b), mf_json_get_str(r, "decoded", ""));
            bad++;
        }
        mf_buf_free(&b);
        free(out.v);
    }
    const mf_json *dr = mf_json_get(m, "decode_random");
    for (size_t i = 0; i < dr->n && bad < 8; i++) {
        int32_t *ids;
        size_t n;
        ids_of(mf_json_get(dr->items[i], "ids"), &ids, &n);
        mf_buf b = MF_BUF_INIT;
        CHECK_OK(mf_spm_decode(s, ids, n, &b, &err));
        const char *want = mf_json_get_str(dr->items[i], "text", "");
        if (strcmp(mf_buf_cstr(&b), want)) {
            mf_test_fail(__FILE__, __LINE__, "random decode %zu: \"%s\" vs \"%s\"", i, mf_buf_cstr(&b), want);
            bad++;
        }
        mf_buf_free(&b);
        free(ids);
    }
    CHECK_INT(bad, 0);
    mf_spm_free(s);
    mf_json_free(c);
}

TEST(test_spm_bpe_nfkc_byte_fallback_matches_sentencepiece) { check_spm("chatglm6b"); }
TEST(test_spm_unigram_rules_unused_pieces_matches_sentencepiece) { check_spm("spm_unigram"); }
TEST(test_spm_bpe_identity_no_dummy_prefix_unk_runs_matches_sentencepiece) { check_spm("spm_bpe_plain"); }

/* The ChatGLM-6B tokenizer through the public mf_tok API. */
static void check_glm(const char *key, const char *dir_in)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", dir_in); /* fix_path's buffer is reused below */
    mf_json *c = cases();
    REQUIRE(c);
    const mf_json *g = mf_json_get(mf_json_get(mf_json_get(c, "models"), "chatglm6b"), key);
    REQUIRE(g);
    mf_tok *tok = NULL;
    mf_err err = {0};
    int rc = mf_tok_load(&tok, dir, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "load %s: %s", dir, err.msg);
    REQUIRE(rc == 0);
    const mf_json *rows = mf_json_get(g, "cases");
    int bad = 0;
    static const struct { const char *key; int flags; } modes[] = {
        {"ids", 0}, {"ids_special", MF_TOK_ADD_SPECIAL}, {"ids_literal", MF_TOK_LITERAL}};
    for (size_t i = 0; i < rows->n && bad < 6; i++) {
        const mf_json *r = rows->items[i], *t = mf_json_get(r, "text");
        for (size_t k = 0; k < 3; k++) {
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(mf_tok_encode_ex(tok, t->s, t->slen, modes[k].flags, &ids, &n, &err));
            if (!same_ids(ids, n, mf_json_get(r, modes[k].key))) {
                show(modes[k].key, t->s, ids, n, mf_json_get(r, modes[k].key));
                bad++;
            }
            if (k == 0)
                for (int skip = 0; skip < 2; skip++) {
                    char *s = NULL;
                    size_t sl = 0;
                    CHECK_OK(mf_tok_decode(tok, ids, n, skip, &s, &sl, &err));
                    const char *want = mf_json_get_str(r, skip ? "decoded_skip" : "decoded", "");
                    if (!s || strcmp(s, want)) {
                        mf_test_fail(__FILE__, __LINE__, "decode(skip=%d) of \"%.60s\": \"%s\" vs \"%s\"", skip, t->s, s ? s : "", want);
                        bad++;
                    }
                    free(s);
                }
            free(ids);
        }
    }
    const mf_json *dr = mf_json_get(g, "decode_random");
    for (size_t i = 0; i < dr->n && bad < 10; i++) {
        int32_t *ids;
        size_t n;
        ids_of(mf_json_get(dr->items[i], "ids"), &ids, &n);
        for (int skip = 0; skip < 2; skip++) {
            char *s = NULL;
            size_t sl = 0;
            CHECK_OK(mf_tok_decode(tok, ids, n, skip, &s, &sl, &err));
            const char *want = mf_json_get_str(dr->items[i], skip ? "text_skip" : "text", "");
            if (!s || strcmp(s, want)) {
                mf_test_fail(__FILE__, __LINE__, "random decode %zu (skip=%d): \"%s\" vs \"%s\"", i, skip, s ? s : "", want);
                bad++;
            }
            free(s);
        }
        free(ids);
    }
    CHECK_INT(bad, 0);
    mf_tok_free(tok);
    mf_json_free(c);
}

TEST(test_chatglm6b_tokenizer_matches_published_logic)
{
    check_glm("glm", fix_path("chatglm6b"));
}

TEST(test_chatglm6b_tokenizer_image_token_offset)
{
    /* the same model with num_image_tokens 20000 (the class default): every id shifts */
    char dir[4096], from[4096], to[4096];
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    snprintf(from, sizeof from, "%s", fix_path("chatglm6b/ice_text.model"));
    snprintf(to, sizeof to, "%s/ice_text.model", dir);
    mf_err err = {0};
    REQUIRE(mf_copy_file(from, to, &err) == 0);
    snprintf(from, sizeof from, "%s", fix_path("chatglm6b_img/tokenizer_config.json"));
    snprintf(to, sizeof to, "%s/tokenizer_config.json", dir);
    REQUIRE(mf_copy_file(from, to, &err) == 0);
    check_glm("glm_img", dir);
}

/* ---------------------------------------------------------------- hostile files */

#include "tokenizer/sentencepiece_model.pb-c.h"

typedef Sentencepiece__ModelProto MP;

static MP *fixture_proto(const char *name)
{
    char *data = NULL;
    size_t len = 0;
    mf_err err = {0};
    if (mf_read_file(fix_path(name), &data, &len, &err)) return NULL;
    MP *mp = sentencepiece__model_proto__unpack(NULL, len, (const uint8_t *)data);
    free(data);
    return mp;
}

/* Pack mp, load it, expect code and a message holding `want`. */
static void expect_refused(MP *mp, int code, const char *want)
{
    size_t n = sentencepiece__model_proto__get_packed_size(mp);
    uint8_t *buf = malloc(n ? n : 1);
    sentencepiece__model_proto__pack(mp, buf);
    mf_spm *s = NULL;
    mf_err err = {0};
    int rc = mf_spm_load_mem(&s, buf, n, "hostile.model", &err);
    CHECK_INT(rc, code);
    CHECK(s == NULL);
    CHECK_CONTAINS(err.msg, want);
    mf_spm_free(s);
    free(buf);
}

TEST(test_spm_rejects_hostile_models_naming_the_problem)
{
    MP *mp = fixture_proto("spm_unigram.model");
    REQUIRE(mp);
    /* not a protobuf at all */
    mf_spm *s = NULL;
    mf_err err = {0};
    CHECK_INT(mf_spm_load_mem(&s, "\xff\xff\xff\xff\xff", 5, "junk.model", &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "not a valid ModelProto");
    /* the model types medflow does not encode are named */
    Sentencepiece__TrainerSpec__ModelType mt = mp->trainer_spec->model_type;
    mp->trainer_spec->model_type = SENTENCEPIECE__TRAINER_SPEC__MODEL_TYPE__WORD;
    expect_refused(mp, MF_EUNSUPPORTED, "trainer_spec.model_type WORD");
    mp->trainer_spec->model_type = mt;
    mp->trainer_spec->has_treat_whitespace_as_suffix = 1;
    mp->trainer_spec->treat_whitespace_as_suffix = 1;
    expect_refused(mp, MF_EUNSUPPORTED, "treat_whitespace_as_suffix");
    mp->trainer_spec->treat_whitespace_as_suffix = 0;
    /* a duplicate piece */
    ProtobufCBinaryData keep = mp->pieces[10]->piece;
    mp->pieces[10]->piece = mp->pieces[9]->piece;
    expect_refused(mp, MF_ECORRUPT, "is defined twice");
    /* an empty piece, a piece with a NUL, invalid UTF-8 */
    mp->pieces[10]->piece.len = 0;
    expect_refused(mp, MF_ECORRUPT, "pieces[10] is empty");
    uint8_t bad[3] = {'a', 0, 'b'}, bad2[2] = {0xC3, 0x28};
    mp->pieces[10]->piece = (ProtobufCBinaryData){3, bad};
    expect_refused(mp, MF_ECORRUPT, "not a valid UTF-8");
    mp->pieces[10]->piece = (ProtobufCBinaryData){2, bad2};
    expect_refused(mp, MF_ECORRUPT, "not a valid UTF-8");
    mp->pieces[10]->piece = keep;
    /* no <unk>; a second one */
    Sentencepiece__ModelProto__SentencePiece__Type t0 = mp->pieces[0]->type;
    mp->pieces[0]->type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__NORMAL;
    expect_refused(mp, MF_ECORRUPT, "no UNKNOWN piece");
    mp->pieces[0]->type = t0;
    mp->pieces[7]->type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__UNKNOWN;
    expect_refused(mp, MF_ECORRUPT, "a second UNKNOWN piece");
    mp->pieces[7]->type = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__TYPE__NORMAL;
    /* byte pieces need byte_fallback, and all 256 of them */
    mp->trainer_spec->byte_fallback = 0;
    expect_refused(mp, MF_ECORRUPT, "byte_fallback is off");
    mp->trainer_spec->byte_fallback = 1;
    size_t np = mp->n_pieces;
    mp->n_pieces = np - 1; /* the last piece is a byte piece */
    expect_refused(mp, MF_ECORRUPT, "only 255 of the 256");
    mp->n_pieces = np;
    /* a charsmap whose trie does not fit its blob, or points outside its strings */
    ProtobufCBinaryData cm = mp->normalizer_spec->precompiled_charsmap;
    uint8_t *copy = malloc(cm.len);
    memcpy(copy, cm.data, cm.len);
    mp->normalizer_spec->precompiled_charsmap = (ProtobufCBinaryData){cm.len, copy};
    copy[3] = 0x7f;
    expect_refused(mp, MF_ECORRUPT, "does not fit the blob");
    memcpy(copy, cm.data, cm.len);
    uint32_t tsize = (uint32_t)copy[0] | (uint32_t)copy[1] << 8 | (uint32_t)copy[2] << 16 | (uint32_t)copy[3] << 24;
    mp->normalizer_spec->precompiled_charsmap.len = 4 + tsize + 1; /* strings cut to one byte */
    expect_refused(mp, MF_ECORRUPT, "outside its strings");
    mp->normalizer_spec->precompiled_charsmap = cm;
    free(copy);
    sentencepiece__model_proto__free_unpacked(mp, NULL);
}

TEST(test_chatglm6b_tokenizer_refuses_unsupported_config_and_prefers_tokenizer_json)
{
    const char *dir = mf_test_tmpdir();
    char p[4096], from[4096];
    mf_err err = {0};
    snprintf(from, sizeof from, "%s", fix_path("chatglm6b/ice_text.model"));
    snprintf(p, sizeof p, "%s/ice_text.model", dir);
    REQUIRE(mf_copy_file(from, p, &err) == 0);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    const char *cfgs[][2] = {{"{\"remove_space\": true}", "\"remove_space\": true is not supported"},
                             {"{\"do_lower_case\": true}", "\"do_lower_case\": true is not supported"},
                             {"{\"tokenizer_class\": \"LlamaTokenizer\"}", "tokenizer_class 'LlamaTokenizer'"},
                             {"{\"num_image_tokens\": -3}", "num_image_tokens"}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        REQUIRE(mf_write_file_atomic(p, cfgs[k][0], strlen(cfgs[k][0]), 0644, &err) == 0);
        mf_tok *tok = NULL;
        CHECK(mf_tok_load(&tok, dir, &err) != 0);
        CHECK_CONTAINS(err.msg, cfgs[k][1]);
        mf_tok_free(tok);
    }
    /* the defaults without a config: num_image_tokens 20000, <sop>/<eop>/<pad> */
    unlink(p);
    mf_tok *tok = NULL;
    REQUIRE(mf_tok_load(&tok, dir, &err) == 0);
    CHECK_INT(mf_tok_vocab_size(tok), 20000 + 3000 + 344);
    CHECK_INT(mf_tok_bos_id(tok), mf_tok_token_to_id(tok, "<sop>"));
    CHECK_INT(mf_tok_eos_id(tok), mf_tok_token_to_id(tok, "<eop>"));
    CHECK_INT(mf_tok_pad_id(tok), 20003);
    CHECK_INT(mf_tok_unk_id(tok), 20000);
    CHECK(mf_tok_is_special(tok, mf_tok_token_to_id(tok, "[gMASK]")));
    CHECK(!mf_tok_is_special(tok, mf_tok_token_to_id(tok, "<n>")));
    CHECK_STR(mf_tok_id_to_token(tok, 20004), "<n>");
    CHECK(mf_tok_id_to_token(tok, 5) == NULL); /* an image token */
    int32_t img = 5, *ids = NULL;
    char *s = NULL;
    size_t n = 0;
    CHECK_OK(mf_tok_decode(tok, &img, 1, 0, &s, &n, &err)); /* image tokens decode to nothing */
    CHECK_STR(s, "");
    free(s);
    int32_t far = 99999;
    CHECK_INT(mf_tok_decode(tok, &far, 1, 0, &s, &n, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "outside the vocabulary");
    CHECK_INT(mf_tok_encode(tok, "a\xff", 2, 0, &ids, &n, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "not valid UTF-8 at byte 1");
    free(ids);
    mf_tok_free(tok);
    /* a tokenizer.json beside ice_text.model wins (an HF-converted directory) */
    snprintf(from, sizeof from, "%s", fix_path("sp_llama2.json"));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    REQUIRE(mf_copy_file(from, p, &err) == 0);
    REQUIRE(mf_tok_load(&tok, dir, &err) == 0);
    CHECK(mf_tok_token_to_id(tok, "[gMASK]") < 0);
    mf_tok_free(tok);
}
