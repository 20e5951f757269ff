/*
 * tokenizer/tok_spm.h — a SentencePiece model (`*.model`, a protobuf ModelProto)
 * read directly and encoded/decoded exactly as the `sentencepiece` library does
 * (conformance fixtures: tests/tokenizer/fixtures/spm_*). Internal to tokenizer/:
 * the ChatGLM-6B tokenizer (tok_chatglm.c) is built on it.
 *
 * What is implemented, after sentencepiece's SentencePieceProcessor:
 *   normalizer   user-defined symbols pass through untouched; the precompiled
 *                charsmap (nmt_nfkc and friends: a Darts double-array trie of
 *                UTF-8 rules, longest match) or none ("identity");
 *                add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces (U+2581)
 *   model        BPE (merge the adjacent pair whose concatenation is the
 *                highest-scoring piece, leftmost first; UNUSED pieces resegmented)
 *                and UNIGRAM (Viterbi over the pieces; user-defined symbols always
 *                win; unknown characters cost min_score - 10)
 *   unknowns     byte fallback (<0xNN> pieces) when trainer_spec.byte_fallback,
 *                else consecutive unknown pieces merge into one <unk>
 *   decode       control pieces vanish, <unk> -> unk_surface, U+2581 -> space,
 *                the leading space of the dummy prefix dropped, byte pieces
 *                regrouped into UTF-8 (invalid bytes -> U+FFFD each)
 * Refused with MF_EUNSUPPORTED naming the field: model_type WORD/CHAR,
 * treat_whitespace_as_suffix, pretokenization_delimiter, a denormalizer charsmap.
 * A malformed file is MF_ECORRUPT (protobuf that does not parse, bad trie, duplicate
 * or empty pieces, no <unk>, byte pieces without byte_fallback or missing ones).
 */
#ifndef MF_TOK_SPM_H
#define MF_TOK_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "tokenizer/tok_internal.h"

/* Piece types (ModelProto.SentencePiece.Type). */
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };
enum { SPM_UNIGRAM = 1, SPM_BPE = 2 };

typedef struct mf_spm {
    int model_type; /* SPM_UNIGRAM or SPM_BPE */
    size_t n;       /* pieces; ids are 0..n-1 */
    char **piece;   /* owned, NUL-terminated */
    uint32_t *plen;
    float *score;
    unsigned char *type;  /* SPM_* */
    mf_tok_smap pieces;   /* NORMAL, USER_DEFINED, UNUSED: what the model may produce */
    mf_tok_smap reserved; /* UNKNOWN, CONTROL, BYTE */
    mf_tok_smap user;     /* USER_DEFINED: matched whole, before normalization and the model */
    unsigned char user_first[256]; /* first bytes of user-defined symbols */
    uint32_t user_maxlen, piece_maxlen; /* longest user-defined / model piece, bytes */
    int32_t unk;
    int byte_fallback;
    int32_t byte_id[256]; /* <0xNN> piece ids (byte_fallback) */
    char *unk_surface;
    float min_score, max_score; /* over NORMAL pieces (unigram's unknown penalty and user bonus) */
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    uint32_t *units; /* precompiled charsmap: the double-array trie, NULL for none */
    size_t n_units;
    char *norm;      /* its NUL-separated replacement strings */
    size_t norm_len;
} mf_spm;

/* Darts-clone double-array units (the precompiled charsmap's trie). */
static inline int spm_unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t spm_unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
static inline uint32_t spm_unit_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
static inline uint32_t spm_unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Parse a ModelProto from memory (name is used in messages). */
int mf_spm_load_mem(mf_spm **out, const void *data, size_t len, const char *name, mf_err *err);
int mf_spm_load(mf_spm **out, const char *path, mf_err *err);
void mf_spm_free(mf_spm *s);

int mf_spm_model_type(const mf_spm *s);
size_t mf_spm_size(const mf_spm *s);
/* Piece string of id (NUL-terminated, *len its length), NULL when out of range. */
const char *mf_spm_piece(const mf_spm *s, int32_t id, size_t *len);
int mf_spm_type(const mf_spm *s, int32_t id); /* SPM_*, 0 when out of range */
/* Id of a piece string of any type, or -1 (sentencepiece's PieceToId gives <unk> instead). */
int32_t mf_spm_piece_id(const mf_spm *s, const char *piece, size_t n);
int32_t mf_spm_unk_id(const mf_spm *s);

/* Encode n bytes of valid UTF-8 (the caller checks) and append the ids to out,
 * as SentencePieceProcessor::EncodeAsIds. */
int mf_spm_encode(const mf_spm *s, const char *text, size_t n, mf_tok_ids *out, mf_err *err);
/* Decode ids (each in range: the caller checks) into out (appended), as DecodeIds. */
int mf_spm_decode(const mf_spm *s, const int32_t *ids, size_t n, mf_buf *out, mf_err *err);

#endif
