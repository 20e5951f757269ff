/*
 * tests/fuzz/fuzz_tokenizer.c — libFuzzer target for tokenizer/tokenizer.h.
 *
 * Input layout: byte 0 picks the mode.
 *   even: the rest is "JSON \0 TEXT": load JSON as a tokenizer.json (hostile
 *         files must give clear errors, never crash); if it loads, encode TEXT
 *         (and a few fixed strings) and decode the ids back, with and without
 *         special tokens.
 *   odd:  the rest is TEXT for the conformance tokenizers in
 *         tests/tokenizer/fixtures/ (loaded once): encode, decode, and
 *         decode the raw bytes read as ids (out-of-range ids must be errors).
 * Run: make fuzz && ./build/fuzz/fuzz_tokenizer tests/fuzz/seeds/fuzz_tokenizer
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static mf_tok *fixed[5];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *names[] = {"bl_qwen2", "bl_llama3", "bl_gpt2", "sp_llama2", "sp_meta"};
    for (int i = 0; i < 5; i++) {
        char p[256];
        mf_err err = {0};
        snprintf(p, sizeof p, "tests/tokenizer/fixtures/%s.json", names[i]);
        if (mf_tok_load(&fixed[i], p, &err)) fixed[i] = NULL;
    }
    return 0;
}

static void roundtrip(mf_tok *tok, const char *text, size_t len)
{
    mf_err err = {0};
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mf_tok_encode(tok, text, len, special, &ids, &n, &err) == 0) {
            char *out = NULL;
            size_t ol = 0;
            if (mf_tok_decode(tok, ids, n, special, &out, &ol, &err) == 0) free(out);
        }
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t rl = size - 1;
    mf_err err = {0};
    if ((data[0] & 1) == 0) {
        const char *nul = memchr(rest, 0, rl);
        size_t jl = nul ? (size_t)(nul - rest) : rl;
        mf_tok *tok = NULL;
        if (mf_tok_load_mem(&tok, rest, jl, "fuzz.json", &err) == 0) {
            const char *text = nul ? nul + 1 : "";
            size_t tl = nul ? rl - jl - 1 : 0;
            roundtrip(tok, text, tl);
            roundtrip(tok, "Hello world! 高血压 123 <s> <|im_end|>\n\n  x", 47);
            (void)mf_tok_vocab_size(tok);
            (void)mf_tok_token_to_id(tok, "<s>");
            (void)mf_tok_bos_id(tok);
            mf_tok_free(tok);
        } else if (!err.msg[0]) {
            __builtin_trap(); /* an error must say what is wrong */
        }
        return 0;
    }
    mf_tok *tok = fixed[(data[0] >> 1) % 5];
    if (!tok) return 0;
    roundtrip(tok, rest, rl);
    size_t nid = rl / 2;
    int32_t *ids = malloc((nid ? nid : 1) * sizeof *ids);
    if (!ids) return 0;
    for (size_t i = 0; i < nid; i++) ids[i] = (int32_t)((uint16_t)(rest[2 * i] | (rest[2 * i + 1] << 8)));
    char *out = NULL;
    size_t ol = 0;
    if (mf_tok_decode(tok, ids, nid, data[0] & 2, &out, &ol, &err) == 0) free(out);
    free(ids);
    return 0;
}
