/*
 * tokenizer/tok_unicode.h — Unicode classes the tokenizer's pre-tokenizer needs.
 *
 * The HF pre-tokenizer regexes (GPT-2, LLaMA-3, Qwen2) use \p{L}, \p{N} and
 * \s. Their class per code point comes from a generated range table
 * (tokenizer/tok_unicode_tables.c, made by tokenizer/gen_tok_unicode.py from
 * Python's unicodedata); mf_tok_uclass answers from a 64 KiB BMP cache built
 * once, and by binary search above the BMP.
 */
#ifndef MF_TOK_UNICODE_H
#define MF_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum { MF_UC_OTHER = 0, MF_UC_L = 1, MF_UC_N = 2, MF_UC_S = 3 };

typedef struct mf_tok_urange {
    uint32_t lo, hi;
    uint8_t cls;
} mf_tok_urange;

extern const mf_tok_urange mf_tok_uranges[];
extern const size_t mf_tok_n_uranges;

/* NFC data (generated): combining classes, full canonical decompositions,
 * primary composites. */
typedef struct {
    uint32_t cp;
    uint16_t off;
    uint8_t len;
} mf_tok_decomp_t;
typedef struct {
    uint32_t first, second, composite;
} mf_tok_comp_t;
extern const mf_tok_urange mf_tok_ccc[];
extern const size_t mf_tok_n_ccc;
extern const mf_tok_decomp_t mf_tok_decomp[];
extern const size_t mf_tok_n_decomp;
extern const uint32_t mf_tok_decomp_pool[];
extern const mf_tok_comp_t mf_tok_comp[];
extern const size_t mf_tok_n_comp;

/* NFC of a code point sequence: in[0..n) -> *out (malloc'd), *out_n.
 * Returns 0 or -1 on allocation failure. */
int mf_tok_nfc(const uint32_t *in, size_t n, uint32_t **out, size_t *out_n);

/* Code points that NFC normalisation may change (sorted ranges). */
extern const mf_tok_urange mf_tok_nfc_unsafe[];
extern const size_t mf_tok_n_nfc_unsafe;
/* 1 if NFC leaves every string made of cp and NFC-safe neighbours alone. */
int mf_tok_nfc_safe(uint32_t cp);

/* Class of a code point (MF_UC_*). Thread-safe. */
int mf_tok_uclass(uint32_t cp);

/* Decode one UTF-8 sequence at s[0..n) (n >= 1). Returns its length (1..4)
 * and the code point, or 0 when the bytes are not valid UTF-8 (overlongs,
 * surrogates and values above U+10FFFF are invalid). */
int mf_tok_utf8_dec(const unsigned char *s, size_t n, uint32_t *cp);
/* Encode cp as UTF-8 into out (4 bytes room); returns the length. */
int mf_tok_utf8_enc(uint32_t cp, char *out);

#endif
