/*
 * tokenizer/tok_internal.h — the inside of an mf_tok, shared by the tokenizer's
 * files (tok_load.c builds it; tok_pretok.c, tok_bpe.c, tok_encode.c and
 * tok_decode.c use it). Not a public header.
 *
 * Pipeline of an encode, as in HF tokenizers:
 *   added tokens split out (non-normalized ones on the raw text)
 *   -> normalizer per piece (Prepend/Replace/NFC) -> normalized added tokens
 *   -> pre-tokenizer (Split regex / ByteLevel / Metaspace) -> words
 *   -> BPE per word (byte-level models start from bytes, others from chars)
 *   -> post-processor (TemplateProcessing) when add_special.
 */
#ifndef MF_TOK_INTERNAL_H
#define MF_TOK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "tokenizer/tokenizer.h"

#define MF_TOK_MAX_ID (1 << 24) /* ids above this are rejected as hostile */

/* string -> int32 map; keys point into storage owned elsewhere. */
typedef struct {
    const char *k;
    uint32_t len;
    uint32_t h;
    int32_t v;
} mf_tok_sent;
typedef struct {
    mf_tok_sent *e;
    size_t cap, n; /* cap is a power of two; e[i].k == NULL when empty */
} mf_tok_smap;

uint32_t mf_tok_hash(const char *s, size_t n);
int mf_tok_smap_put(mf_tok_smap *m, const char *k, size_t len, int32_t v); /* 0 or MF_ENOMEM; replaces */
int32_t mf_tok_smap_get(const mf_tok_smap *m, const char *k, size_t len);   /* -1 when absent */
void mf_tok_smap_free(mf_tok_smap *m);

/* (left id, right id) -> (rank, new id) */
typedef struct {
    uint64_t k; /* UINT64_MAX when empty */
    int32_t rank, id;
} mf_tok_ment;
typedef struct {
    mf_tok_ment *e;
    size_t cap, n;
} mf_tok_mmap;
int mf_tok_mmap_put(mf_tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
const mf_tok_ment *mf_tok_mmap_get(const mf_tok_mmap *m, int32_t a, int32_t b);
void mf_tok_mmap_free(mf_tok_mmap *m);

enum { TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_NFC };
typedef struct {
    int type;
    char *a, *b; /* PREPEND: a = prefix; REPLACE: a = pattern, b = content */
    size_t alen, blen;
} mf_tok_norm;

enum { TOK_RE_GPT2, TOK_RE_LLAMA3, TOK_RE_QWEN2, TOK_RE_BLOOM };
enum { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE };
enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
typedef struct {
    int type;
    int regex;            /* SPLIT: TOK_RE_*; BYTELEVEL with use_regex: TOK_RE_GPT2 or -1 */
    int add_prefix_space; /* BYTELEVEL */
    char repl[8];         /* METASPACE replacement (UTF-8) */
    size_t repl_len;
    int prepend;          /* METASPACE: TOK_PREPEND_* */
    int split;            /* METASPACE */
} mf_tok_pre;

enum { TOK_DEC_BYTELEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP, TOK_DEC_METASPACE };
typedef struct {
    int type;
    char *a, *b; /* REPLACE: pattern, content */
    size_t alen, blen;
    uint32_t ch;     /* STRIP content char; METASPACE replacement char */
    int start, stop; /* STRIP */
    int prepend;     /* METASPACE */
} mf_tok_dec;

typedef struct {
    int32_t id;
    char *content;
    size_t len;
    char *ncontent; /* normalized content (for normalized tokens) */
    size_t nlen;
    int special, normalized, lstrip, rstrip, single_word;
} mf_tok_added;

/* Leftmost-longest matcher over a set of added tokens: token indices sorted by
 * (first byte, length descending); start[b]..start[b+1] is byte b's bucket. */
typedef struct {
    size_t *idx;
    size_t start[257];
    int normalized; /* matches ncontent instead of content */
} mf_tok_amatch;

/* A word cache entry: the word's bytes and its ids, one allocation (ids, then key). */
typedef struct {
    char *key;
    uint32_t klen, h;
    int32_t *ids;
    uint32_t n;
} mf_tok_cent;

struct mf_tok {
    /* id -> token string (an added token's content wins over the vocab's
     * string, as in HF); NULL for holes. Points into vocab_strs or added[]. */
    const char **tokens;
    char **vocab_strs; /* owned: the model vocab's strings by id (keys of `vocab`) */
    uint32_t *token_len;
    size_t n_ids;
    mf_tok_smap vocab; /* model vocab only */
    mf_tok_smap added_map;
    mf_tok_mmap merges;
    unsigned char *is_special; /* per id */
    unsigned char *is_added;   /* per id */

    int byte_level;        /* BPE symbols start from bytes mapped by ByteLevel */
    int32_t byte_id[256];  /* byte-level: id of the mapped byte char; else -1 */
    int32_t fallback_id[256]; /* <0xNN> tokens; -1 when absent */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk;
    char *cont_prefix, *eow_suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t cont_prefix_len, eow_suffix_len;

    mf_tok_norm *norms;
    size_t n_norms;
    mf_tok_pre *pres;
    size_t n_pres;
    mf_tok_dec *decs;
    size_t n_decs;
    int has_decoder;

    mf_tok_added *added;
    size_t n_added;
    int has_norm_added; /* any added token with normalized: true */
    mf_tok_amatch am_raw, am_norm;

    /* post-processor for single sequences: ids before / after the sequence */
    int32_t *pp_pre, *pp_post;
    size_t n_pp_pre, n_pp_post;

    int32_t bos, eos, pad;

    /* ChatGLM-6B (ice_text.model, tok_chatglm.c): encode/decode go there; the id
     * tables above (tokens, token_len, is_special, vocab, bos/eos/pad/unk) are
     * filled from its SentencePiece model, everything else stays empty. */
    struct mf_tok_glm *glm;

    pthread_mutex_t cache_lock;
    mf_tok_cent *cache;
    size_t cache_cap, cache_n;
};

/* The GPT-2 ByteLevel map: byte -> code point, and back (-1 when not a mapped char). */
uint32_t mf_tok_byte_to_cp(unsigned char b);
int mf_tok_cp_to_byte(uint32_t cp);

/* Pre-tokenization: split text[0..n) into pieces with the given regex. Calls
 * emit(ctx, off, len) per piece in order; stops and returns its nonzero value. */
typedef int (*mf_tok_emit_fn)(void *ctx, size_t off, size_t len);
int mf_tok_regex_split(int regex, const char *text, size_t n, mf_tok_emit_fn emit, void *ctx);
int mf_tok_regex_kind(const char *pattern); /* TOK_RE_* or -1 */

/* BPE on one word (bytes of the pre-tokenized piece). Appends ids to out.
 * Returns 0 or MF_ENOMEM / MF_EINVAL (with err). */
typedef struct {
    int32_t *v;
    size_t n, cap;
} mf_tok_ids;
int mf_tok_ids_push(mf_tok_ids *a, int32_t id);
int mf_tok_bpe_word(mf_tok *tok, const char *w, size_t n, mf_tok_ids *out, mf_err *err);

int mf_tok_amatch_build(mf_tok *tok, mf_tok_amatch *m, int normalized);

/* An mf_tok with nothing loaded (ids -1, lock ready); mf_tok_free frees it. */
mf_tok *mf_tok_new_empty(void);

/* ChatGLM-6B (tok_chatglm.c): a directory with ice_text.model. */
typedef struct mf_tok_glm mf_tok_glm;
int mf_tok_glm_load(mf_tok **out, const char *dir, mf_err *err);
void mf_tok_glm_free(mf_tok_glm *g);
/* Appends to out; text is valid UTF-8 (checked by the caller). */
int mf_tok_glm_encode(const mf_tok *tok, const char *text, size_t len, int flags, mf_tok_ids *out, mf_err *err);
int mf_tok_glm_decode(const mf_tok *tok, const int32_t *ids, size_t n, int skip_special, mf_buf *out, mf_err *err);

/* Normalizer on a piece into out (reset first). first: piece starts the input. */
int mf_tok_normalize(const mf_tok *tok, const char *s, size_t n, mf_buf *out, mf_err *err);

#endif
