/*
 * tokenizer/bpe_train.h — train a byte-level BPE tokenizer and write it as an HF
 * tokenizer.json (Qwen2-style: Split(Qwen2 regex) + ByteLevel, ByteLevel
 * decoder) that HF `tokenizers` and medflow's own loader (tokenizer/tokenizer.h)
 * read unchanged.
 *
 * Usage: new -> feed(text) for every text -> train -> write_json / write_config -> free.
 *
 * Ids: the special tokens first (in the order given), then the 256 byte
 * tokens in byte order, then one token per merge in the order learned.
 * Determinism: each step merges the most frequent adjacent pair over the
 * counted words; ties go to the pair whose left token has the smaller id,
 * then whose right token has the smaller id. Pairs seen fewer than
 * min_frequency times are never merged, nor pairs whose token would span more
 * than max_token_chars characters (when > 0). Same corpus and options -> the same
 * bytes of tokenizer.json.
 */
#ifndef MF_BPE_TRAIN_H
#define MF_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"

typedef struct mf_bpe_train_opts {
    size_t vocab_size;        /* total: special tokens + 256 bytes + merges */
    uint64_t min_frequency;   /* >= 1 */
    /* > 0: no merge makes a token spanning more than this many characters
     * (UTF-8 lead bytes), e.g. 1 = character-level for CJK text with byte
     * fallback for characters too rare to get a token; 0 = no limit */
    size_t max_token_chars;
    const char *const *special_tokens;
    size_t n_special;
    /* called now and then during train(); may be NULL */
    void (*progress)(void *ctx, size_t merges_done, size_t merges_total);
    void *progress_ctx;
} mf_bpe_train_opts;

typedef struct mf_bpe_trainer mf_bpe_trainer;

int mf_bpe_trainer_new(mf_bpe_trainer **out, const mf_bpe_train_opts *opts, mf_err *err);
/* Pre-tokenize one text (valid UTF-8; invalid input is an MF_EINVAL error) and count its words. */
int mf_bpe_trainer_feed(mf_bpe_trainer *t, const char *text, size_t len, mf_err *err);
/* Learn merges until vocab_size or no pair reaches min_frequency. */
int mf_bpe_trainer_train(mf_bpe_trainer *t, mf_err *err);
/* Append tokenizer.json / tokenizer_config.json (pretty JSON) to out. */
int mf_bpe_trainer_write_json(const mf_bpe_trainer *t, mf_buf *out, mf_err *err);
int mf_bpe_trainer_write_config(const mf_bpe_trainer *t, mf_buf *out, mf_err *err);
void mf_bpe_trainer_free(mf_bpe_trainer *t);

typedef struct mf_bpe_train_stats {
    uint64_t texts, bytes, words, unique_words;
    size_t merges, vocab_size;
} mf_bpe_train_stats;
void mf_bpe_trainer_stats(const mf_bpe_trainer *t, mf_bpe_train_stats *st);

#endif
