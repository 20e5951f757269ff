/* tests/stages/data/test_tokenize.c — the tokenize kind and the shard format, against HF tokenizers fixtures. */
#include "tests/harness.h"
#include "tests/stages/dtest.h"
#include "stages/data/tokshard.h"
#include "common/fsutil.h"

#include <stdlib.h>

static const char *tpath(const char *name)
{
    static char bufs[64][2048];
    static int k;
    char *p = bufs[k++ % 64];
    snprintf(p, 2048, "%s/%s", mf_test_tmpdir(), name);
    return p;
}

static const char *fixture(const char *name)
{
    static char bufs[4][2048];
    static int k;
    char *p = bufs[k++ % 4];
    snprintf(p, 2048, "%s/tests/stages/fixtures/data/%s", mf_test_root(), name);
    return p;
}

static mf_json *expected(void)
{
    mf_json *e = NULL;
    mf_err err;
    if (mf_json_parse_file(&e, fixture("expected.json"), &err)) return NULL;
    return e;
}

/* Write the strings of a JSON array as lines of a file. */
static const char *lines_file(const mf_json *arr, const char *name)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t k = 0; k < arr->n; k++) {
        mf_buf_puts(&b, arr->items[k]->s);
        mf_buf_putc(&b, '\n');
    }
    const char *p = tpath(name);
    mf_test_write(p, mf_buf_cstr(&b));
    mf_buf_free(&b);
    return p;
}

static int run_tok(const char *params, const char *data, const char *out)
{
    const char *d[] = {data}, *t[] = {fixture("tokenizer.json")};
    dtest dt;
    int rc = dtest_run(&dt, "tokenize", params, 1, "data", d, 1, "tokenizer", t, 1, out);
    if (rc) fprintf(stderr, "    tokenize: %s\n", dt.msg);
    return rc;
}

static int open_shard(mf_ts *ts, const char *out)
{
    char p[2200];
    snprintf(p, sizeof p, "%s/shard-00000.bin", out);
    mf_err err;
    int rc = mf_tokshard_open(ts, p, &err);
    if (rc) fprintf(stderr, "    open: %s\n", err.msg);
    return rc;
}

/* doc k of the shard equals the JSON int array want */
static int doc_equals(const mf_ts *ts, size_t k, const mf_json *want)
{
    uint64_t a = ts->doc_offsets[k], b = ts->doc_offsets[k + 1];
    if (b - a != want->n) return 0;
    for (size_t j = 0; j < want->n; j++)
        if (ts->ids[a + j] != want->items[j]->i) return 0;
    return 1;
}

TEST(test_tokenize_pretrain_matches_hf_tokenizers)
{
    mf_json *e = expected();
    REQUIRE(e);
    const char *in = lines_file(mf_json_get(e, "pretrain_lines"), "pre.jsonl");
    REQUIRE(run_tok("{}", in, tpath("o")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("o")) == 0);
    CHECK_INT(ts.format, MF_TOKSHARD_PRETRAIN);
    CHECK_INT(ts.block_size, 0);
    const mf_json *want = mf_json_get(e, "pretrain_ids");
    REQUIRE(ts.n_docs == want->n);
    for (size_t k = 0; k < want->n; k++) CHECK(doc_equals(&ts, k, want->items[k]));
    for (uint64_t k = 0; k < ts.n_tokens; k++) CHECK_INT(ts.mask[k], 1);
    mf_tokshard_close(&ts);
    char *idx = dtest_out(tpath("o"), "index.json");
    CHECK_CONTAINS(idx, "\"format\": \"pretrain\"");
    free(idx);
    mf_json_free(e);
}

TEST(test_tokenize_packing_is_a_plain_window_over_the_document_stream)
{
    mf_json *e = expected();
    REQUIRE(e);
    const char *in = lines_file(mf_json_get(e, "pretrain_lines"), "pre.jsonl");
    REQUIRE(run_tok("{\"block_size\": 16}", in, tpath("p")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("p")) == 0);
    const mf_json *want = mf_json_get(e, "pretrain_ids");
    /* the stream is the documents (each ending in EOS) back to back */
    size_t total = 0;
    for (size_t k = 0; k < want->n; k++) {
        CHECK_INT(ts.doc_offsets[k], total);
        total += want->items[k]->n;
    }
    CHECK_INT(ts.n_tokens, total);
    CHECK_INT(ts.block_size, 16);
    CHECK_INT(ts.n_blocks, total / 16);
    /* the block holding the first document boundary holds the end of doc 0, its EOS and
     * the start of doc 1: documents in a packed block see each other (nothing masks them) */
    uint64_t boundary = ts.doc_offsets[1];
    uint64_t blk = boundary / 16;
    REQUIRE(blk < ts.n_blocks && boundary % 16 != 0);
    const int32_t *block = ts.ids + blk * 16;
    int64_t eos = mf_json_get_int(e, "eos_id", -1);
    CHECK_INT(block[boundary % 16 - 1], eos);
    CHECK_INT(block[boundary % 16], want->items[1]->items[0]->i);
    char *st = dtest_out(tpath("p"), "stats.json");
    char want_tail[64];
    snprintf(want_tail, sizeof want_tail, "\"tail_tokens_unused\": %zu", total % 16);
    CHECK_CONTAINS(st, want_tail);
    free(st);
    char *idx = dtest_out(tpath("p"), "index.json");
    CHECK_CONTAINS(idx, "cross-document");
    free(idx);
    mf_tokshard_close(&ts);
    mf_json_free(e);
}

TEST(test_tokenize_sft_chatml_ids_and_masks_match_hf_tokenizers)
{
    mf_json *e = expected();
    REQUIRE(e);
    const char *in = lines_file(mf_json_get(e, "sft_lines"), "sft.jsonl");
    REQUIRE(run_tok("{\"template\": \"chatml\", \"max_source_length\": 4096, \"max_target_length\": 4096}", in, tpath("s")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("s")) == 0);
    CHECK_INT(ts.format, MF_TOKSHARD_SFT);
    const mf_json *ids = mf_json_get(e, "sft_ids"), *mask = mf_json_get(e, "sft_mask");
    REQUIRE(ts.n_docs == ids->n);
    for (size_t k = 0; k < ids->n; k++) {
        CHECK(doc_equals(&ts, k, ids->items[k]));
        uint64_t a = ts.doc_offsets[k];
        int mask_ok = 1;
        for (size_t j = 0; j < mask->items[k]->n; j++) mask_ok &= ts.mask[a + j] == mask->items[k]->items[j]->i;
        CHECK(mask_ok);
    }
    mf_tokshard_close(&ts);
    /* truncation applies: with cutoff 32 every doc fits in 32 tokens */
    REQUIRE(run_tok("{\"template\": \"chatml\", \"cutoff_len\": 32}", in, tpath("s2")) == 0);
    REQUIRE(open_shard(&ts, tpath("s2")) == 0);
    for (uint64_t k = 0; k < ts.n_docs; k++) CHECK(ts.doc_offsets[k + 1] - ts.doc_offsets[k] <= 32);
    mf_tokshard_close(&ts);
    char *st = dtest_out(tpath("s2"), "stats.json");
    CHECK_CONTAINS(st, "\"truncated\": 3");
    free(st);
    mf_json_free(e);
}

TEST(test_tokenize_preference_pairs_share_the_prompt)
{
    char src[512];
    snprintf(src, sizeof src, "%s/preference/mismatched_answer_pairs.jsonl", MF_SHARED_DATA);
    const char *in = dtest_head(src, 5, mf_test_tmpdir(), "pref.jsonl");
    REQUIRE(in);
    char inp[2048];
    snprintf(inp, sizeof inp, "%s", in);
    REQUIRE(run_tok("{\"template\": \"chatml\", \"max_source_length\": 64, \"max_target_length\": 64}", inp, tpath("f")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("f")) == 0);
    CHECK_INT(ts.format, MF_TOKSHARD_PREFERENCE);
    REQUIRE(ts.n_docs == 10);
    for (uint64_t k = 0; k < 10; k += 2) {
        uint64_t pc = ts.prompt_len[k], pr = ts.prompt_len[k + 1];
        CHECK_INT(pc, pr);
        CHECK(pc <= 64 && pc > 0);
        CHECK(!memcmp(ts.ids + ts.doc_offsets[k], ts.ids + ts.doc_offsets[k + 1], pc * sizeof(int32_t)));
        for (uint64_t j = ts.doc_offsets[k]; j < ts.doc_offsets[k + 1]; j++) CHECK_INT(ts.mask[j], j >= ts.doc_offsets[k] + pc);
    }
    mf_tokshard_close(&ts);
}

TEST(test_tokenize_prompts_end_with_the_assistant_cue_and_carry_no_loss)
{
    mf_json *e = expected();
    REQUIRE(e);
    const char *in = lines_file(mf_json_get(e, "sft_lines"), "sft.jsonl");
    REQUIRE(run_tok("{\"format\": \"prompts\", \"template\": \"chatml\"}", in, tpath("q")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("q")) == 0);
    CHECK_INT(ts.format, MF_TOKSHARD_PROMPTS);
    CHECK_INT(ts.n_docs, 3);
    for (uint64_t k = 0; k < ts.n_tokens; k++) CHECK_INT(ts.mask[k], 0);
    /* the prompt of the single-turn sft doc is exactly its masked-out head in the sft encoding */
    const mf_json *sid = mf_json_get(e, "sft_ids")->items[0], *smask = mf_json_get(e, "sft_mask")->items[0];
    size_t plen = 0;
    while (plen < smask->n && smask->items[plen]->i == 0) plen++;
    CHECK_INT(ts.doc_offsets[1], plen);
    int same = 1;
    for (size_t j = 0; j < plen; j++) same &= ts.ids[j] == sid->items[j]->i;
    CHECK(same);
    mf_tokshard_close(&ts);
    mf_json_free(e);
}

TEST(test_tokenize_bad_record_names_the_line_and_skip_counts_it)
{
    const char *p = tpath("bad.jsonl");
    mf_test_write(p, "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}\n"
                     "{\"conversations\":[{\"from\":\"human\",\"value\":\"only a question\"}]}\n");
    const char *d[] = {p}, *t[] = {fixture("tokenizer.json")};
    dtest dt;
    CHECK_INT(dtest_run(&dt, "tokenize", "{\"format\": \"sft\"}", 1, "data", d, 1, "tokenizer", t, 1, tpath("b1")), MF_EINVAL);
    CHECK_CONTAINS(dt.msg, "bad.jsonl:2:");
    CHECK_CONTAINS(dt.msg, "must end with an assistant");
    CHECK_INT(dtest_run(&dt, "tokenize", "{\"format\": \"sft\", \"on_bad_record\": \"skip\"}", 1, "data", d, 1, "tokenizer", t, 1, tpath("b2")), 0);
    char *st = dtest_out(tpath("b2"), "stats.json");
    CHECK_CONTAINS(st, "\"dropped_bad\": 1");
    CHECK_CONTAINS(st, "\"rows_out\": 1");
    free(st);
}

TEST(test_token_shard_reader_rejects_corrupt_files)
{
    mf_tokshard_writer w;
    REQUIRE(mf_tokshard_writer_init(&w, MF_TOKSHARD_SFT, 0, 100) == 0);
    int32_t ids[] = {5, 6, 7, 8};
    uint8_t m[] = {0, 0, 1, 1};
    REQUIRE(mf_tokshard_writer_add(&w, ids, m, 4, 2) == 0);
    REQUIRE(mf_tokshard_writer_add(&w, ids, m, 3, 2) == 0);
    mf_err err;
    const char *p = tpath("w.bin");
    REQUIRE(mf_tokshard_writer_write(&w, p, &err) == 0);
    mf_tokshard_writer_free(&w);
    mf_ts ts;
    REQUIRE(mf_tokshard_open(&ts, p, &err) == 0);
    CHECK_INT(ts.n_tokens, 7);
    CHECK_INT(ts.n_docs, 2);
    CHECK_INT(ts.doc_offsets[1], 4);
    CHECK_INT(ts.prompt_len[1], 2);
    mf_tokshard_close(&ts);
    char *raw = NULL;
    size_t len = 0;
    REQUIRE(mf_read_file(p, &raw, &len, &err) == 0);
    CHECK_INT(len, 64 + 7 * 5 + 5 + 3 * 8 + 2 * 8); /* header, ids+mask, padding to 8, offsets, prompt lengths */
    /* a token count that does not match the file size */
    raw[16] = 9;
    FILE *f = fopen(tpath("c1.bin"), "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    CHECK_INT(mf_tokshard_open(&ts, tpath("c1.bin"), &err), MF_ECORRUPT);
    raw[16] = 7;
    /* an id outside the vocabulary */
    raw[64] = 100;
    f = fopen(tpath("c2.bin"), "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    CHECK_INT(mf_tokshard_open(&ts, tpath("c2.bin"), &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "outside the vocabulary");
    raw[0] = 'X';
    f = fopen(tpath("c3.bin"), "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    CHECK_INT(mf_tokshard_open(&ts, tpath("c3.bin"), &err), MF_ECORRUPT);
    CHECK_CONTAINS(err.msg, "bad magic");
    free(raw);
}

TEST(test_tokenize_sft_llama2_with_sentencepiece_bos_eos_matches_hf_tokenizers)
{
    mf_json *e = expected();
    REQUIRE(e);
    const char *in = lines_file(mf_json_get(e, "sft_lines"), "sft.jsonl");
    char tokp[2048];
    snprintf(tokp, sizeof tokp, "%s/tests/tokenizer/fixtures/sp_llama2.json", mf_test_root());
    const char *d[] = {in}, *t[] = {tokp};
    dtest dt;
    REQUIRE(dtest_run(&dt, "tokenize", "{\"template\": \"llama2\", \"max_source_length\": 4096, \"max_target_length\": 4096}", 1,
                      "data", d, 1, "tokenizer", t, 1, tpath("l2")) == 0);
    mf_ts ts;
    REQUIRE(open_shard(&ts, tpath("l2")) == 0);
    const mf_json *ids = mf_json_get(e, "llama2_sp_ids"), *mask = mf_json_get(e, "llama2_sp_mask");
    REQUIRE(ts.n_docs == ids->n);
    for (size_t k = 0; k < ids->n; k++) {
        CHECK(doc_equals(&ts, k, ids->items[k]));
        int mask_ok = 1;
        for (size_t j = 0; j < mask->items[k]->n; j++) mask_ok &= ts.mask[ts.doc_offsets[k] + j] == mask->items[k]->items[j]->i;
        CHECK(mask_ok);
    }
    mf_tokshard_close(&ts);
    mf_json_free(e);
}

TEST(test_token_shard_directory_opens_all_shards_in_order)
{
    mf_err err;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/shards", mf_test_tmpdir());
    REQUIRE(mf_mkdir_p(dir, 0755, &err) == 0);
    int32_t ids[] = {1, 2, 3, 4, 5, 6};
    for (int s = 0; s < 2; s++) {
        mf_tokshard_writer w;
        REQUIRE(mf_tokshard_writer_init(&w, MF_TOKSHARD_PRETRAIN, 2, 10) == 0);
        REQUIRE(mf_tokshard_writer_add(&w, ids, NULL, (size_t)(3 + s), 0) == 0);
        char p[2200];
        snprintf(p, sizeof p, "%s/shard-%05d.bin", dir, s);
        REQUIRE(mf_tokshard_writer_write(&w, p, &err) == 0);
        mf_tokshard_writer_free(&w);
    }
    mf_tsdir d;
    REQUIRE(mf_tokshard_dir_open(&d, dir, &err) == 0);
    CHECK_INT(d.n, 2);
    CHECK_INT(d.n_tokens, 7);
    CHECK_INT(d.n_blocks, 1 + 2);
    CHECK_INT(d.shards[1].n_tokens, 4);
    CHECK_INT(d.shards[0].mask[2], 1);
    mf_tokshard_dir_close(&d);
    /* a shard with another block size does not belong */
    mf_tokshard_writer w;
    REQUIRE(mf_tokshard_writer_init(&w, MF_TOKSHARD_PRETRAIN, 4, 10) == 0);
    REQUIRE(mf_tokshard_writer_add(&w, ids, NULL, 4, 0) == 0);
    char p[2200];
    snprintf(p, sizeof p, "%s/shard-00002.bin", dir);
    REQUIRE(mf_tokshard_writer_write(&w, p, &err) == 0);
    mf_tokshard_writer_free(&w);
    CHECK_INT(mf_tokshard_dir_open(&d, dir, &err), MF_ECORRUPT);
    CHECK_INT(mf_tokshard_dir_open(&d, mf_test_tmpdir(), &err), MF_ENOTFOUND);
}
