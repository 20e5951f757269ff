/*
 * tokenizer/tok_unicode.c — code point classes and UTF-8 helpers for the tokenizer.
 *
 * The BMP answer comes from a 64 KiB table filled once (pthread_once) from the
 * generated ranges; code points above U+FFFF use binary search.
 */
#include "tokenizer/tok_unicode.h"

#include <pthread.h>
#include <stdlib.h>

static uint8_t bmp[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void bmp_fill(void)
{
    for (size_t i = 0; i < mf_tok_n_uranges; i++) {
        const mf_tok_urange *r = &mf_tok_uranges[i];
        if (r->lo > 0xFFFF) break;
        uint32_t hi = r->hi > 0xFFFF ? 0xFFFF : r->hi;
        for (uint32_t c = r->lo; c <= hi; c++) bmp[c] = r->cls;
    }
}

int mf_tok_uclass(uint32_t cp)
{
    if (cp < 0x10000) {
        pthread_once(&bmp_once, bmp_fill);
        return bmp[cp];
    }
    size_t lo = 0, hi = mf_tok_n_uranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (mf_tok_uranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < mf_tok_n_uranges && mf_tok_uranges[lo].lo <= cp) return mf_tok_uranges[lo].cls;
    return MF_UC_OTHER;
}

int mf_tok_nfc_safe(uint32_t cp)
{
    if (cp < 0x300) return 1;
    size_t lo = 0, hi = mf_tok_n_nfc_unsafe;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (mf_tok_nfc_unsafe[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return !(lo < mf_tok_n_nfc_unsafe && mf_tok_nfc_unsafe[lo].lo <= cp);
}

int mf_tok_utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        uint32_t v = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        *cp = v;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        uint32_t v = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        if (v < 0x10000 || v > 0x10FFFF) return 0;
        *cp = v;
        return 4;
    }
    return 0;
}

int mf_tok_utf8_enc(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- NFC (UAX #15): full canonical decomposition, canonical ordering,
 * canonical composition; Hangul syllables algorithmically. ---- */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28,
       NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(uint32_t cp)
{
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = mf_tok_n_ccc;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (mf_tok_ccc[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return (lo < mf_tok_n_ccc && mf_tok_ccc[lo].lo <= cp) ? mf_tok_ccc[lo].cls : 0;
}

static const mf_tok_decomp_t *decomp_of(uint32_t cp)
{
    size_t lo = 0, hi = mf_tok_n_decomp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (mf_tok_decomp[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return (lo < mf_tok_n_decomp && mf_tok_decomp[lo].cp == cp) ? &mf_tok_decomp[lo] : NULL;
}

static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = mf_tok_n_comp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const mf_tok_comp_t *c = &mf_tok_comp[mid];
        if (c->first < a || (c->first == a && c->second < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < mf_tok_n_comp && mf_tok_comp[lo].first == a && mf_tok_comp[lo].second == b) return mf_tok_comp[lo].composite;
    return 0;
}

int mf_tok_nfc(const uint32_t *in, size_t n, uint32_t **out, size_t *out_n)
{
    /* a decomposition is at most 4 code points (Hangul: 3) */
    uint32_t *d = malloc((4 * n + 1) * sizeof *d);
    if (!d) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t s = cp - SBASE;
            d[m++] = LBASE + s / NCOUNT;
            d[m++] = VBASE + (s % NCOUNT) / TCOUNT;
            if (s % TCOUNT) d[m++] = TBASE + s % TCOUNT;
            continue;
        }
        const mf_tok_decomp_t *e = decomp_of(cp);
        if (e) {
            for (uint8_t k = 0; k < e->len; k++) d[m++] = mf_tok_decomp_pool[e->off + k];
        } else {
            d[m++] = cp;
        }
    }
    /* canonical ordering: stable sort of each run of non-starters by ccc (runs are short) */
    for (size_t i = 1; i < m; i++) {
        int ci = ccc_of(d[i]);
        if (!ci) continue;
        size_t j = i;
        while (j > 0) {
            int cj = ccc_of(d[j - 1]);
            if (cj <= ci) break;
            uint32_t t = d[j - 1];
            d[j - 1] = d[j];
            d[j] = t;
            j--;
        }
    }
    /* canonical composition */
    if (m > 0) {
        size_t starter = 0, comp_pos = 1;
        uint32_t starter_ch = d[0];
        int last = ccc_of(starter_ch);
        if (last != 0) last = 256; /* no starter yet: block composition */
        for (size_t i = 1; i < m; i++) {
            uint32_t ch = d[i];
            int cls = ccc_of(ch);
            uint32_t c = compose(starter_ch, ch);
            if (c && (last < cls || last == 0)) {
                d[starter] = c;
                starter_ch = c;
            } else {
                if (cls == 0) {
                    starter = comp_pos;
                    starter_ch = ch;
                }
                last = cls;
                d[comp_pos++] = ch;
            }
        }
        m = comp_pos;
    }
    *out = d;
    *out_n = m;
    return 0;
}
