/*
 * tests/fuzz/fuzz_spm.c — libFuzzer target for the SentencePiece reader
 * (tokenizer/tok_spm*.c) and the ChatGLM-6B tokenizer built on it.
 *
 * Input layout: byte 0 picks the mode.
 *   even: the rest is a `*.model` file (a protobuf ModelProto): hostile files must
 *         give clear errors, never crash; when it loads, a few fixed strings are
 *         encoded and decoded back, and the input bytes are decoded as ids.
 *   odd:  the rest is TEXT for the conformance ChatGLM-6B tokenizer in
 *         tests/tokenizer/fixtures/chatglm6b (loaded once): encode with and without
 *         special tokens, decode, and decode the raw bytes read as ids.
 * Run: make fuzz && ./build/fuzz/fuzz_spm tests/fuzz/seeds/fuzz_spm
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_spm.h"
#include "tokenizer/tokenizer.h"

static mf_tok *glm;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mf_err err = {0};
    if (mf_tok_load(&glm, "tests/tokenizer/fixtures/chatglm6b", &err)) glm = NULL;
    return 0;
}

static void model_mode(const uint8_t *d, size_t n)
{
    mf_spm *s = NULL;
    mf_err err = {0};
    if (mf_spm_load_mem(&s, d, n, "fuzz.model", &err)) return;
    static const char *texts[] = {"", " a  b ", "头痛\n怎么办？", "ＡＢ１２\u3000x", "😀 <n>", NULL};
    for (int k = 0; texts[k]; k++) {
        mf_tok_ids ids = {0};
        if (mf_spm_encode(s, texts[k], strlen(texts[k]), &ids, &err) == 0) {
            mf_buf b = MF_BUF_INIT;
            (void)mf_spm_decode(s, ids.v, ids.n, &b, &err);
            mf_buf_free(&b);
        }
        free(ids.v);
    }
    int32_t ids[64];
    size_t m = 0;
    for (size_t i = 0; i + 1 < n && m < 64; i += 2) ids[m++] = (int32_t)((d[i] | d[i + 1] << 8) % mf_spm_size(s));
    mf_buf b = MF_BUF_INIT;
    (void)mf_spm_decode(s, ids, m, &b, &err);
    mf_buf_free(&b);
    mf_spm_free(s);
}

static void text_mode(const char *t, size_t n)
{
    if (!glm) return;
    mf_err err = {0};
    for (int flags = 0; flags < 4; flags++) {
        int32_t *ids = NULL;
        size_t k = 0;
        if (mf_tok_encode_ex(glm, t, n, flags, &ids, &k, &err) == 0) {
            char *out = NULL;
            size_t ol = 0;
            if (mf_tok_decode(glm, ids, k, flags & 1, &out, &ol, &err) == 0) free(out);
        }
        free(ids);
    }
    int32_t ids[64];
    size_t m = 0;
    for (size_t i = 0; i + 1 < n && m < 64; i += 2) ids[m++] = (int32_t)((unsigned char)t[i] | (unsigned char)t[i + 1] << 8);
    char *out = NULL;
    size_t ol = 0;
    if (mf_tok_decode(glm, ids, m, 0, &out, &ol, &err) == 0) free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) text_mode((const char *)data + 1, size - 1);
    else model_mode(data + 1, size - 1);
    return 0;
}
