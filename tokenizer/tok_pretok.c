/*
 * tokenizer/tok_pretok.c — pre-tokenizer regexes implemented by hand, and the
 * GPT-2 ByteLevel byte <-> char map.
 *
 * HF tokenizer.json files name their split regex as a string; medflow
 * recognises the three in common use and implements each one's semantics
 * (leftmost-first alternation, greedy runs, the (?!\S) look-ahead) directly
 * on UTF-8, with \p{L}, \p{N} and \s from the generated Unicode tables:
 *
 *  GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *  LLaMA-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *  Qwen2:   the same with \p{N} (one digit at a time).
 *  BLOOM:    ?[^(\s|[.,!?…。，、।۔،])]+   (text between the matches is kept as pieces too)
 *
 * Behaviour "Isolated": matches and the (never occurring) gaps both become
 * pieces. Every code point is covered by some alternative, so the pieces tile
 * the text.
 */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include <string.h>

static const char *RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *RE_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *RE_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *RE_BLOOM = " ?[^(\\s|[.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C])]+";

int mf_tok_regex_kind(const char *pattern)
{
    if (!strcmp(pattern, RE_BLOOM)) return TOK_RE_BLOOM;
    if (!strcmp(pattern, RE_GPT2)) return TOK_RE_GPT2;
    if (!strcmp(pattern, RE_LLAMA3)) return TOK_RE_LLAMA3;
    if (!strcmp(pattern, RE_QWEN2)) return TOK_RE_QWEN2;
    return -1;
}

/* ---- ByteLevel map (GPT-2 bytes_to_unicode) ---- */

static int printable_byte(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
}

uint32_t mf_tok_byte_to_cp(unsigned char b)
{
    if (printable_byte(b)) return b;
    /* the non-printable bytes, in order, map to 256, 257, ... */
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!printable_byte(x)) k++;
    return 256 + k;
}

int mf_tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 non-printable bytes */
    uint32_t k = cp - 256;
    for (unsigned x = 0; x < 256; x++)
        if (!printable_byte(x) && k-- == 0) return (int)x;
    return -1;
}

/* ---- the regexes ---- */

typedef struct {
    const unsigned char *s;
    size_t n;
} text_t;

/* Code point at i (invalid bytes read as one byte of class OTHER). */
static inline size_t cp_at(const text_t *t, size_t i, uint32_t *cp)
{
    unsigned char c = t->s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int l = mf_tok_utf8_dec(t->s + i, t->n - i, cp);
    if (!l) {
        *cp = 0xFFFD0000u; /* not a code point: class OTHER */
        return 1;
    }
    return (size_t)l;
}

static inline int cls_of(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return MF_UC_L;
        if (cp >= '0' && cp <= '9') return MF_UC_N;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return MF_UC_S;
        return MF_UC_OTHER;
    }
    if (cp > 0x10FFFF) return MF_UC_OTHER;
    return mf_tok_uclass(cp);
}

/* End of the run of class `cls` starting at i. */
static size_t run_end(const text_t *t, size_t i, int cls)
{
    while (i < t->n) {
        uint32_t cp;
        size_t l = cp_at(t, i, &cp);
        if (cls_of(cp) != cls) break;
        i += l;
    }
    return i;
}

static size_t nl_run_end(const text_t *t, size_t i)
{
    while (i < t->n && (t->s[i] == '\r' || t->s[i] == '\n')) i++;
    return i;
}

/* 's 't 're 've 'm 'll 'd at i (s[i] == '\''); returns match length or 0. */
static size_t contraction(const text_t *t, size_t i, int icase)
{
    if (i + 1 >= t->n) return 0;
    unsigned char a = t->s[i + 1];
    if (icase && a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (icase && i + 2 < t->n && t->s[i + 1] == 0xC5 && t->s[i + 2] == 0xBF) return 3; /* U+017F folds to s */
    if (i + 2 >= t->n) return 0;
    unsigned char b = t->s[i + 2];
    if (icase && b >= 'A' && b <= 'Z') b = (unsigned char)(b + 32);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Whitespace handling shared by the patterns: given a whitespace run [i, j),
 * \s+(?!\S) then \s+. */
static size_t ws_tail(const text_t *t, size_t i, size_t j)
{
    if (j == t->n) return j;
    /* followed by non-space: give back the last char if the run has >= 2 */
    size_t last = j - 1;
    while (last > i && (t->s[last] & 0xC0) == 0x80) last--;
    return last > i ? last : j;
}

static size_t match_gpt2(const text_t *t, size_t i)
{
    uint32_t c, c2 = 0;
    cp_at(t, i, &c);
    int k = cls_of(c);
    if (c == '\'') {
        size_t m = contraction(t, i, 0);
        if (m) return i + m;
    }
    if (c == ' ' && i + 1 < t->n) {
        cp_at(t, i + 1, &c2);
        int k2 = cls_of(c2);
        if (k2 != MF_UC_S) return run_end(t, i + 1, k2);
    }
    if (k != MF_UC_S) return run_end(t, i, k);
    size_t j = run_end(t, i, MF_UC_S);
    return ws_tail(t, i, j);
}

static size_t match_llama(const text_t *t, size_t i, int max_digits)
{
    uint32_t c, c2 = 0;
    size_t l = cp_at(t, i, &c);
    int k = cls_of(c);
    if (c == '\'') {
        size_t m = contraction(t, i, 1);
        if (m) return i + m;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k != MF_UC_L && k != MF_UC_N && c != '\r' && c != '\n' && i + l < t->n) {
        cp_at(t, i + l, &c2);
        if (cls_of(c2) == MF_UC_L) return run_end(t, i + l, MF_UC_L);
    }
    if (k == MF_UC_L) return run_end(t, i, MF_UC_L);
    /* \p{N}{1,k} */
    if (k == MF_UC_N) {
        size_t j = i;
        for (int d = 0; d < max_digits && j < t->n; d++) {
            uint32_t cp;
            size_t ll = cp_at(t, j, &cp);
            if (cls_of(cp) != MF_UC_N) break;
            j += ll;
        }
        return j;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    if (c == ' ' && i + 1 < t->n) {
        cp_at(t, i + 1, &c2);
        if (cls_of(c2) == MF_UC_OTHER) return nl_run_end(t, run_end(t, i + 1, MF_UC_OTHER));
    }
    if (k == MF_UC_OTHER) return nl_run_end(t, run_end(t, i, MF_UC_OTHER));
    /* whitespace: \s*[\r\n]+ then \s+(?!\S) then \s+ */
    size_t j = run_end(t, i, MF_UC_S);
    for (size_t q = j; q > i; q--)
        if (t->s[q - 1] == '\r' || t->s[q - 1] == '\n') return q;
    return ws_tail(t, i, j);
}

/* BLOOM: a char of [^(\s|[.,!?…。，、।۔،])] — the class also excludes '(', '|' and ')' */
static int bloom_x(uint32_t cp)
{
    switch (cp) {
    case '(': case '|': case ')': case '.': case ',': case '!': case '?':
    case 0x2026: case 0x3002: case 0xFF0C: case 0x3001: case 0x0964: case 0x06D4: case 0x060C:
        return 0;
    default:
        return cls_of(cp) != MF_UC_S;
    }
}

static size_t bloom_run(const text_t *t, size_t i)
{
    while (i < t->n) {
        uint32_t cp;
        size_t l = cp_at(t, i, &cp);
        if (!bloom_x(cp)) break;
        i += l;
    }
    return i;
}

static int split_bloom(const text_t *t, mf_tok_emit_fn emit, void *ctx)
{
    size_t i = 0, gap = 0;
    while (i < t->n) {
        uint32_t c, c2;
        size_t l = cp_at(t, i, &c), end = 0;
        if (c == ' ' && i + 1 < t->n) {
            cp_at(t, i + 1, &c2);
            if (bloom_x(c2)) end = bloom_run(t, i + 1);
        }
        if (!end && bloom_x(c)) end = bloom_run(t, i);
        if (!end) {
            i += l;
            continue;
        }
        int rc;
        if (gap < i && (rc = emit(ctx, gap, i - gap))) return rc;
        if ((rc = emit(ctx, i, end - i))) return rc;
        i = gap = end;
    }
    return gap < t->n ? emit(ctx, gap, t->n - gap) : 0;
}

int mf_tok_regex_split(int regex, const char *text, size_t n, mf_tok_emit_fn emit, void *ctx)
{
    text_t t = {(const unsigned char *)text, n};
    if (regex == TOK_RE_BLOOM) return split_bloom(&t, emit, ctx);
    size_t i = 0;
    while (i < n) {
        size_t j;
        switch (regex) {
        case TOK_RE_GPT2: j = match_gpt2(&t, i); break;
        case TOK_RE_LLAMA3: j = match_llama(&t, i, 3); break;
        default: j = match_llama(&t, i, 1); break;
        }
        if (j <= i) j = i + 1; /* cannot happen; guarantees progress */
        int rc = emit(ctx, i, j - i);
        if (rc) return rc;
        i = j;
    }
    return 0;
}
