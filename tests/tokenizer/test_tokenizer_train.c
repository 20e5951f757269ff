/*
 * tests/tokenizer/test_tokenizer_train.c — the `tokenizer` stage kind and the BPE
 * trainer: output loads in medflow and in HF tokenizers (python3, checked id
 * for id), training is deterministic, bad JSONL lines are reported with
 * file:line or skipped and counted.
 */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"
#include "tokenizer/bpe_train.h"
#include "stages/stage.h"
#include "tokenizer/tokenizer.h"

int mf_stage_tokenizer_run(mf_stage_ctx *ctx);

/* Training corpus: the conformance texts (real medical text + varied scripts). */
static mf_json *corpus_texts(mf_json **root)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/tokenizer/fixtures/cases.json", mf_test_root());
    mf_err err = {0};
    *root = NULL;
    if (mf_json_parse_file(root, p, &err)) {
        mf_test_fail(__FILE__, __LINE__, "%s", err.msg);
        return NULL;
    }
    return mf_json_get(*root, "texts");
}

static void write_corpus_jsonl(const char *path, const mf_json *texts, const char *extra_lines)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t i = 0; i < texts->n; i++) {
        mf_buf_puts(&b, "{\"text\": ");
        mf_json_write_str(&b, texts->items[i]->s, texts->items[i]->slen);
        mf_buf_puts(&b, "}\n");
        if (i == 2 && extra_lines) mf_buf_puts(&b, extra_lines);
    }
    mf_test_write(path, mf_buf_cstr(&b));
    mf_buf_free(&b);
}

static int run_stage(const char *data, const char *out_dir, const char *params_json, mf_err *err)
{
    mf_json *params = NULL;
    REQUIRE(mf_json_parse(&params, params_json, strlen(params_json), "params", err) == 0);
    const char *paths[] = {data};
    mf_stage_input in = {"data", paths, NULL, 1};
    mf_stage_ctx ctx = {0};
    ctx.stage = "tok";
    ctx.params = params;
    ctx.inputs = &in;
    ctx.n_inputs = 1;
    ctx.out_dir = out_dir;
    ctx.progress_fd = -1;
    ctx.err = err;
    mf_mkdir_p(out_dir, 0755, err);
    int rc = mf_stage_tokenizer_run(&ctx);
    mf_json_free(params);
    return rc;
}

static const char *PARAMS =
    "{\"vocab_size\": 700, \"min_frequency\": 2, \"special_tokens\": [\"<|endoftext|>\", \"<|im_start|>\", "
    "\"<|im_end|>\", \"<pad>\"], \"field\": \"text\", \"max_chars\": 0, \"on_bad_record\": \"fail\"}";

TEST(test_tokenizer_stage_trains_loadable_deterministic_tokenizer)
{
    mf_json *root;
    const mf_json *texts = corpus_texts(&root);
    REQUIRE(texts);
    char data[4096], out1[4096], out2[4096], p[4200];
    snprintf(data, sizeof data, "%s/corpus.jsonl", mf_test_tmpdir());
    snprintf(out1, sizeof out1, "%s/out1", mf_test_tmpdir());
    snprintf(out2, sizeof out2, "%s/out2", mf_test_tmpdir());
    write_corpus_jsonl(data, texts, NULL);
    mf_err err = {0};
    CHECK_OK(run_stage(data, out1, PARAMS, &err));
    CHECK_OK(run_stage(data, out2, PARAMS, &err));
    snprintf(p, sizeof p, "%s/tokenizer.json", out1);
    char *a = mf_test_read(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", out2);
    char *b = mf_test_read(p);
    REQUIRE(a && b);
    CHECK(!strcmp(a, b)); /* deterministic */
    free(b);

    mf_tok *tok = NULL;
    CHECK_OK(mf_tok_load(&tok, out1, &err));
    REQUIRE(tok);
    CHECK_INT(mf_tok_vocab_size(tok), 700);
    CHECK_INT(mf_tok_token_to_id(tok, "<|endoftext|>"), 0);
    CHECK_INT(mf_tok_token_to_id(tok, "<pad>"), 3);
    CHECK_INT(mf_tok_eos_id(tok), 0);
    CHECK_INT(mf_tok_pad_id(tok), 3);
    CHECK(mf_tok_is_special(tok, 2));
    /* round trip every corpus text */
    int bad = 0;
    for (size_t i = 0; i < texts->n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        char *dec = NULL;
        size_t dl = 0;
        CHECK_OK(mf_tok_encode(tok, texts->items[i]->s, texts->items[i]->slen, 1, &ids, &n, &err));
        CHECK_OK(mf_tok_decode(tok, ids, n, 0, &dec, &dl, &err));
        if (!dec || dl != texts->items[i]->slen || memcmp(dec, texts->items[i]->s, dl)) bad++;
        free(ids);
        free(dec);
    }
    CHECK_INT(bad, 0);

    snprintf(p, sizeof p, "%s/stats.json", out1);
    mf_json *st = NULL;
    CHECK_OK(mf_json_parse_file(&st, p, &err));
    REQUIRE(st);
    CHECK_INT(mf_json_get_int(st, "texts", -1), (long long)texts->n);
    CHECK_INT(mf_json_get_int(st, "vocab_size", -1), 700);
    CHECK_INT(mf_json_get_int(st, "merges", -1), 700 - 4 - 256);
    CHECK_INT(mf_json_get_int(st, "bad_records", -1), 0);
    mf_json_free(st);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", out1);
    char *cfg = mf_test_read(p);
    CHECK_CONTAINS(cfg, "\"eos_token\": \"<|endoftext|>\"");
    free(cfg);

    /* HF tokenizers loads the file unchanged and encodes identically */
    if (mf_test_python_has("tokenizers")) {
        char tj[4200], oj[4200];
        snprintf(tj, sizeof tj, "%s/texts.json", mf_test_tmpdir());
        mf_buf tb = MF_BUF_INIT;
        mf_json_write(&tb, texts, 0);
        mf_test_write(tj, mf_buf_cstr(&tb));
        mf_buf_free(&tb);
        snprintf(oj, sizeof oj, "%s/hf_ids.json", mf_test_tmpdir());
        char *serr = NULL;
        int st2 = mf_test_sh(NULL, &serr, "python3 '%s/tests/tokenizer/gen_tokenizer_fixtures.py' --encode '%s/tokenizer.json' '%s' > '%s'",
                             mf_test_root(), out1, tj, oj);
        if (st2) mf_test_fail(__FILE__, __LINE__, "HF check failed: %s", serr ? serr : "");
        free(serr);
        REQUIRE(st2 == 0);
        mf_json *hf = NULL;
        CHECK_OK(mf_json_parse_file(&hf, oj, &err));
        REQUIRE(hf && hf->n == texts->n);
        int diff = 0;
        for (size_t i = 0; i < texts->n; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(mf_tok_encode(tok, texts->items[i]->s, texts->items[i]->slen, 0, &ids, &n, &err));
            const mf_json *w = hf->items[i];
            int same = w->n == n;
            for (size_t k = 0; same && k < n; k++) same = w->items[k]->i == ids[k];
            if (!same && diff++ < 3) mf_test_fail(__FILE__, __LINE__, "HF encodes text %zu differently", i);
            free(ids);
        }
        CHECK_INT(diff, 0);
        mf_json_free(hf);
    }
    mf_tok_free(tok);
    free(a);
    mf_json_free(root);
}

TEST(test_tokenizer_stage_reports_bad_jsonl_line_or_skips_and_counts)
{
    mf_json *root;
    const mf_json *texts = corpus_texts(&root);
    REQUIRE(texts);
    char dir[4096], data[4200], out[4200], p[4300];
    snprintf(dir, sizeof dir, "%s/corpus", mf_test_tmpdir());
    snprintf(data, sizeof data, "%s/a.jsonl", dir);
    /* line 4: not JSON; line 5: no text field; line 6: text is a number */
    write_corpus_jsonl(data, texts, "{\"text\": oops}\n{\"other\": \"x\"}\n{\"text\": 5}\n");
    mf_err err = {0};
    snprintf(out, sizeof out, "%s/out_fail", mf_test_tmpdir());
    int rc = run_stage(dir, out, PARAMS, &err); /* a directory of *.jsonl */
    CHECK_INT(rc, MF_EINVAL);
    char full[4096];
    mf_err_str(&err, full, sizeof full);
    CHECK_CONTAINS(full, "a.jsonl:4:");
    CHECK_CONTAINS(full, "bad record");

    snprintf(out, sizeof out, "%s/out_skip", mf_test_tmpdir());
    const char *skip = "{\"vocab_size\": 300, \"min_frequency\": 2, \"special_tokens\": [], \"field\": \"text\", "
                       "\"max_chars\": 0, \"on_bad_record\": \"skip\"}";
    CHECK_OK(run_stage(dir, out, skip, &err));
    snprintf(p, sizeof p, "%s/stats.json", out);
    mf_json *st = NULL;
    CHECK_OK(mf_json_parse_file(&st, p, &err));
    REQUIRE(st);
    CHECK_INT(mf_json_get_int(st, "bad_records", -1), 3);
    CHECK_INT(mf_json_get_int(st, "texts", -1), (long long)texts->n);
    const mf_json *ex = mf_json_get(st, "bad_record_examples");
    REQUIRE(ex && ex->n == 3);
    CHECK_CONTAINS(ex->items[1]->s, "a.jsonl:5:");
    CHECK_CONTAINS(ex->items[1]->s, "missing field 'text'");
    CHECK_CONTAINS(ex->items[2]->s, "should be a string");
    mf_json_free(st);
    mf_json_free(root);
}

TEST(test_tokenizer_stage_max_chars_limits_corpus)
{
    char data[4096], out[4200], p[4300];
    snprintf(data, sizeof data, "%s/c.txt", mf_test_tmpdir());
    mf_test_write(data, "高血压患者要注意饮食\nlow salt diet helps\n");
    snprintf(out, sizeof out, "%s/out", mf_test_tmpdir());
    mf_err err = {0};
    const char *params = "{\"vocab_size\": 270, \"min_frequency\": 1, \"special_tokens\": [\"<s>\"], \"field\": \"text\", "
                         "\"max_chars\": 4, \"on_bad_record\": \"fail\"}";
    CHECK_OK(run_stage(data, out, params, &err));
    snprintf(p, sizeof p, "%s/stats.json", out);
    mf_json *st = NULL;
    CHECK_OK(mf_json_parse_file(&st, p, &err));
    REQUIRE(st);
    CHECK_INT(mf_json_get_int(st, "bytes", -1), 12); /* 4 CJK chars */
    CHECK_INT(mf_json_get_int(st, "texts", -1), 1);
    CHECK(mf_json_bool(mf_json_get(st, "truncated_at_max_chars"), 0));
    CHECK_INT(mf_json_get_int(st, "merges", -1), 11); /* one 12-byte word merged into one token */
    mf_json_free(st);
}

/* Tokens of `text` under the tokenizer trained on `corpus` with max_token_chars = mtc. */
static size_t tokens_with_max_chars(const char *corpus, const char *text, int mtc)
{
    char data[4096], out[4200], params[512];
    snprintf(data, sizeof data, "%s/c%d.txt", mf_test_tmpdir(), mtc);
    snprintf(out, sizeof out, "%s/out%d", mf_test_tmpdir(), mtc);
    mf_test_write(data, corpus);
    snprintf(params, sizeof params,
             "{\"vocab_size\": 1000, \"min_frequency\": 1, \"special_tokens\": [\"<s>\"], \"field\": \"text\", "
             "\"max_token_chars\": %d, \"on_bad_record\": \"fail\"}", mtc);
    mf_err err = {0};
    CHECK_OK(run_stage(data, out, params, &err));
    mf_tok *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mf_tok_load(&tok, out, &err));
    if (tok) CHECK_OK(mf_tok_encode(tok, text, strlen(text), 0, &ids, &n, &err));
    free(ids);
    mf_tok_free(tok);
    return n;
}

/* max_token_chars: 1 gives one token per character (every pair inside a character merges, none
 * across two); 2 at most two characters per token; 0 (no limit) merges the repeated phrase whole. */
TEST(test_tokenizer_stage_max_token_chars_limits_token_span)
{
    const char *corpus = "高血压患者要注意饮食\n高血压患者要低盐饮食\n高血压患者要注意饮食\n";
    const char *text = "高血压患者要注意饮食"; /* 10 characters, 30 bytes */
    CHECK_INT(tokens_with_max_chars(corpus, text, 1), 10);
    size_t two = tokens_with_max_chars(corpus, text, 2);
    CHECK(two >= 5 && two < 10);
    CHECK_INT(tokens_with_max_chars(corpus, text, 0), 1);
}

TEST(test_tokenizer_bpe_trainer_rejects_bad_options_and_ties_break_by_id)
{
    mf_bpe_trainer *t = NULL;
    mf_err err = {0};
    const char *sp[] = {"a"};
    mf_bpe_train_opts o = {0};
    o.vocab_size = 300;
    o.min_frequency = 1;
    o.special_tokens = sp;
    o.n_special = 1;
    CHECK_INT(mf_bpe_trainer_new(&t, &o, &err), MF_EINVAL); /* "a" is also byte token 'a' */
    CHECK_CONTAINS(err.msg, "same string as byte token");
    o.n_special = 0;
    o.vocab_size = 100;
    CHECK_INT(mf_bpe_trainer_new(&t, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "smaller than");
    /* "cd" and "ab" each twice: equal counts, the pair of smaller ids (a,b) merges first */
    o.vocab_size = 257;
    CHECK_OK(mf_bpe_trainer_new(&t, &o, &err));
    REQUIRE(t);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(mf_bpe_trainer_feed(t, "cd", 2, &err));
        CHECK_OK(mf_bpe_trainer_feed(t, "ab", 2, &err));
    }
    CHECK_INT(mf_bpe_trainer_feed(t, "\xC3", 1, &err), MF_EINVAL);
    CHECK_OK(mf_bpe_trainer_train(t, &err));
    mf_buf b = MF_BUF_INIT;
    CHECK_OK(mf_bpe_trainer_write_json(t, &b, &err));
    CHECK_CONTAINS(mf_buf_cstr(&b), "\"merges\": [\n      [\"a\", \"b\"]\n    ]");
    mf_buf_free(&b);
    mf_bpe_trainer_free(t);
}
