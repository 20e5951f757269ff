/*
 * tokenizer/tokenizer.h — HF tokenizer.json BPE tokenizers: load, encode, decode.
 *
 * Two families of HF `tokenizers` BPE models are supported, matching the Rust
 * library's ids and decoded strings exactly (conformance fixtures in
 * tests/tokenizer/fixtures/):
 *   - byte-level (GPT-2, LLaMA-3, Qwen2, BLOOM): ByteLevel pre-tokenizer, or
 *     Split(Regex) + ByteLevel; the GPT-2 / LLaMA-3 / Qwen2 / BLOOM regexes are
 *     implemented by hand (tokenizer/tok_pretok.c); ByteLevel decoder.
 *   - SentencePiece-style (LLaMA-2): Prepend/Replace normalizers or the
 *     Metaspace pre-tokenizer, byte fallback tokens <0xNN>, unk;
 *     Replace/ByteFallback/Fuse/Strip/Metaspace decoders.
 * Added tokens (special or not) are split out before normalisation. The
 * post-processor may be none, ByteLevel, TemplateProcessing (BOS/EOS) or a
 * Sequence of those; add_special=0 disables it.
 *
 * Input text must be valid UTF-8: invalid bytes are an MF_EINVAL error naming
 * the byte offset (no silent replacement). Decoding replaces invalid byte
 * sequences produced by byte-level / byte-fallback tokens with U+FFFD exactly as
 * HF does (String::from_utf8_lossy).
 *
 * An mf_tok is immutable after loading except for an internal word cache that
 * is guarded by a lock: encode/decode may be called from several threads.
 */
#ifndef MF_TOKENIZER_H
#define MF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct mf_tok mf_tok;

/* Load `path`: a tokenizer.json file, or a directory holding tokenizer.json
 * (and optionally tokenizer_config.json, which names bos/eos/pad tokens). */
int mf_tok_load(mf_tok **out, const char *path, mf_err *err);
/* Load from the bytes of a tokenizer.json; `name` is used in error messages. */
int mf_tok_load_mem(mf_tok **out, const char *json, size_t len, const char *name, mf_err *err);
void mf_tok_free(mf_tok *tok);

/* Encode len bytes of UTF-8 text. add_special: apply the post-processor
 * (e.g. prepend BOS as LLaMA-2 does). *ids is malloc'd (caller frees; may be
 * non-NULL even when *n == 0). */
int mf_tok_encode(mf_tok *tok, const char *text, size_t len, int add_special, int32_t **ids,
                  size_t *n, mf_err *err);

/* Flags for mf_tok_encode_ex. */
enum {
    MF_TOK_ADD_SPECIAL = 1, /* apply the post-processor (what add_special=1 does) */
    MF_TOK_LITERAL = 2      /* do not match added/special tokens in the text: "<|im_end|>"
                             * typed by a user is encoded as plain text (HF's
                             * split_special_tokens=True); use for untrusted content */
};
int mf_tok_encode_ex(mf_tok *tok, const char *text, size_t len, int flags, int32_t **ids, size_t *n,
                     mf_err *err);

/* Decode ids to UTF-8 text (*out malloc'd, NUL-terminated, *len without the NUL).
 * skip_special drops tokens marked `special: true`. Unknown ids are an error. */
int mf_tok_decode(mf_tok *tok, const int32_t *ids, size_t n, int skip_special, char **out,
                  size_t *len, mf_err *err);
/* mf_tok_decode of what a model generated: ids the tokenizer does not have (a model whose
 * vocab_size is padded past the tokenizer, as Qwen2 ships) decode as nothing, as in HF tokenizers. */
int mf_tok_decode_generated(mf_tok *tok, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                            mf_err *err);

/* Number of ids (1 + the largest id, added tokens included). */
size_t mf_tok_vocab_size(const mf_tok *tok);
/* Id of a token string (vocab or added token), or -1. */
int32_t mf_tok_token_to_id(const mf_tok *tok, const char *token);
/* Token string of an id (as written in tokenizer.json), or NULL. */
const char *mf_tok_id_to_token(const mf_tok *tok, int32_t id);
/* 1 if id is an added token marked special. */
int mf_tok_is_special(const mf_tok *tok, int32_t id);

/* Special token ids, -1 when the tokenizer has none. Taken from
 * tokenizer_config.json when present, else from the post-processor template
 * (bos) and well-known names (<s>, </s>, <|endoftext|>, <|im_end|>, <pad>, ...). */
int32_t mf_tok_bos_id(const mf_tok *tok);
int32_t mf_tok_eos_id(const mf_tok *tok);
int32_t mf_tok_pad_id(const mf_tok *tok);
int32_t mf_tok_unk_id(const mf_tok *tok);

#endif
