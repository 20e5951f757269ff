/*
 * tokenizer/tok_spm.c — SentencePiece encoding and decoding (see tok_spm.h),
 * step for step as sentencepiece's SentencePieceProcessor:
 *
 *   normalize   user-defined symbols first (copied), else the longest charsmap
 *               rule, else one character; spaces -> U+2581; dummy prefix;
 *               extra whitespace removed (leading, repeated, trailing)
 *   model       BPE: symbols are characters (user-defined symbols frozen
 *               whole); repeatedly merge the adjacent pair whose concatenation
 *               is a piece with the highest score (ties: leftmost), then split
 *               UNUSED pieces back into the pair they were merged from.
 *               UNIGRAM: Viterbi over every piece starting at each character;
 *               a user-defined symbol scores len * max_score - 0.1; a character
 *               no piece covers is <unk> at min_score - 10.
 *   unknowns    <unk> pieces become their UTF-8 bytes (<0xNN>) with byte
 *               fallback, else a run of them is one <unk>.
 * Scores mix float and double exactly where the library does, so ties fall
 * the same way.
 */
#include "tokenizer/tok_spm.h"
#include "tokenizer/tok_unicode.h"

#include <stdlib.h>
#include <string.h>

static const char kSpace[] = "\xE2\x96\x81"; /* U+2581, sentencepiece's whitespace marker */

/* sentencepiece's OneCharLen: the length its lead byte announces. */
static size_t one_char_len(const char *p, size_t n)
{
    static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t l = len[(unsigned char)p[0] >> 4];
    return l < n ? l : n;
}

/* Longest user-defined symbol at p[0..n), 0 when none (the PrefixMatcher). */
static size_t user_match(const mf_spm *s, const char *p, size_t n)
{
    if (!s->user.n || !s->user_first[(unsigned char)p[0]]) return 0;
    for (size_t l = n < s->user_maxlen ? n : s->user_maxlen; l > 0; l--)
        if (mf_tok_smap_get(&s->user, p, l) >= 0) return l;
    return 0;
}

/* Longest charsmap rule at p[0..n) (Darts commonPrefixSearch, at most 32
 * results as the normalizer asks for): bytes consumed, 0 when none. */
static size_t cmap_match(const mf_spm *s, const unsigned char *p, size_t n, const char **repl)
{
    if (!s->units) return 0;
    size_t pos = spm_unit_offset(s->units[0]), best = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        pos ^= p[i];
        if (pos >= s->n_units) break;
        uint32_t u = s->units[pos];
        if (spm_unit_label(u) != p[i]) break;
        pos ^= spm_unit_offset(u);
        if (spm_unit_has_leaf(u)) { /* the leaf unit is checked at load */
            if (found < 32) {
                best = i + 1;
                *repl = s->norm + spm_unit_value(s->units[pos]);
            }
            found++;
        }
    }
    return best;
}

/* Normalizer::NormalizePrefix: the normalized text of the next unit of input
 * (*out, *olen) and the input bytes it consumes (returned). */
static size_t norm_prefix(const mf_spm *s, const char *p, size_t n, const char **out, size_t *olen)
{
    size_t l = user_match(s, p, n);
    if (l) {
        *out = p;
        *olen = l;
        return l;
    }
    const char *repl = NULL;
    l = cmap_match(s, (const unsigned char *)p, n, &repl);
    if (l) {
        *out = repl;
        *olen = strlen(repl);
        return l;
    }
    uint32_t cp;
    int cl = mf_tok_utf8_dec((const unsigned char *)p, n, &cp);
    if (cl <= 0) { /* malformed: U+FFFD for one byte */
        *out = "\xEF\xBF\xBD";
        *olen = 3;
        return 1;
    }
    *out = p;
    *olen = (size_t)cl;
    return (size_t)cl;
}

static void put_ws(const mf_spm *s, mf_buf *b)
{
    if (s->escape_ws) mf_buf_append(b, kSpace, 3);
    else mf_buf_putc(b, ' ');
}

static int normalize(const mf_spm *s, const char *in, size_t n, mf_buf *b)
{
    const char *sp;
    size_t spl, i = 0;
    if (s->remove_extra_ws) /* heading spaces */
        while (i < n) {
            size_t c = norm_prefix(s, in + i, n - i, &sp, &spl);
            if (spl != 1 || sp[0] != ' ') break;
            i += c;
        }
    if (i == n) return 0;
    if (s->add_dummy_prefix) put_ws(s, b);
    int prev_space = s->remove_extra_ws;
    while (i < n) {
        size_t c = norm_prefix(s, in + i, n - i, &sp, &spl);
        if (prev_space)
            while (spl && sp[0] == ' ') sp++, spl--;
        if (spl) {
            for (size_t k = 0; k < spl; k++) {
                if (sp[k] == ' ' && s->escape_ws) mf_buf_append(b, kSpace, 3);
                else mf_buf_putc(b, sp[k]);
            }
            prev_space = sp[spl - 1] == ' ';
        }
        i += c;
        if (!s->remove_extra_ws) prev_space = 0;
    }
    if (s->remove_extra_ws) { /* trailing spaces */
        size_t wl = s->escape_ws ? 3 : 1;
        const char *w = s->escape_ws ? kSpace : " ";
        while (b->len >= wl && !memcmp(b->data + b->len - wl, w, wl)) b->len -= wl;
    }
    return mf_buf_ok(b) ? 0 : MF_ENOMEM;
}

/* ---------------------------------------------------------------- output */

/* The SentencePieceText step: unknown pieces become bytes (byte fallback) or
 * merge with a preceding unknown piece. */
typedef struct {
    const mf_spm *s;
    mf_tok_ids *out;
    int prev_unk;
} emitter;

static int emit(emitter *e, const char *w, size_t len, int32_t id)
{
    int unk = id == e->s->unk, prev_unk = e->prev_unk;
    e->prev_unk = unk;
    if (unk && e->s->byte_fallback) {
        for (size_t k = 0; k < len; k++) {
            int rc = mf_tok_ids_push(e->out, e->s->byte_id[(unsigned char)w[k]]);
            if (rc) return rc;
        }
        return 0;
    }
    if (unk && prev_unk) return 0; /* merged with the preceding unknown piece */
    return mf_tok_ids_push(e->out, id);
}

/* ModelInterface::PieceToId: reserved pieces first, then the model's, else <unk>. */
static int32_t piece_to_id(const mf_spm *s, const char *p, size_t n)
{
    int32_t id = mf_spm_piece_id(s, p, n);
    return id >= 0 ? id : s->unk;
}

/* ---------------------------------------------------------------- BPE */

typedef struct {
    int prev, next;
    uint32_t off, len;
    int freeze;
} bsym;

typedef struct {
    float score;
    int left, right;
    uint32_t size;
} bpair;

typedef struct { /* rev_merge: an UNUSED piece -> the two symbols merged into it */
    uint32_t off, len, loff, llen, roff, rlen;
} bmerge;

typedef struct {
    const mf_spm *s;
    const char *t;
    bsym *sym;
    bpair *heap;
    size_t nheap, capheap;
    bmerge *rev;
    size_t nrev, caprev;
} bpe_ctx;

static int pair_before(const bpair *a, const bpair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(bpe_ctx *c, bpair p)
{
    if (c->nheap == c->capheap) {
        size_t nc = c->capheap ? 2 * c->capheap : 64;
        bpair *nh = realloc(c->heap, nc * sizeof *nh);
        if (!nh) return MF_ENOMEM;
        c->heap = nh;
        c->capheap = nc;
    }
    size_t i = c->nheap++;
    while (i > 0 && pair_before(&p, &c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = p;
    return 0;
}

static bpair heap_pop(bpe_ctx *c)
{
    bpair top = c->heap[0], last = c->heap[--c->nheap];
    size_t i = 0, n = c->nheap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpair *best = &last;
        if (l < n && pair_before(&c->heap[l], best)) m = l, best = &c->heap[l];
        if (r < n && pair_before(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

/* MaybeAddNewSymbolPair */
static int add_pair(bpe_ctx *c, int l, int r)
{
    if (l < 0 || r < 0 || c->sym[l].freeze || c->sym[r].freeze) return 0;
    uint32_t off = c->sym[l].off, len = c->sym[l].len + c->sym[r].len;
    int32_t id = mf_tok_smap_get(&c->s->pieces, c->t + off, len);
    if (id < 0) return 0;
    if (c->s->type[id] == SPM_UNUSED) {
        if (c->nrev == c->caprev) {
            size_t nc = c->caprev ? 2 * c->caprev : 16;
            bmerge *nr = realloc(c->rev, nc * sizeof *nr);
            if (!nr) return MF_ENOMEM;
            c->rev = nr;
            c->caprev = nc;
        }
        c->rev[c->nrev++] = (bmerge){off, len, c->sym[l].off, c->sym[l].len, c->sym[r].off, c->sym[r].len};
    }
    return heap_push(c, (bpair){c->s->score[id], l, r, len});
}

/* Split an UNUSED piece back into what it was merged from (the last merge
 * recorded for its text), recursively; anything else is emitted. */
static int resegment(bpe_ctx *c, emitter *e, uint32_t off, uint32_t len, int depth)
{
    int32_t id = piece_to_id(c->s, c->t + off, len);
    if (c->s->type[id] == SPM_UNUSED && depth < 64)
        for (size_t k = c->nrev; k-- > 0;) {
            const bmerge *m = &c->rev[k];
            if (m->len != len || memcmp(c->t + m->off, c->t + off, len)) continue;
            int rc = resegment(c, e, m->loff, m->llen, depth + 1);
            return rc ? rc : resegment(c, e, m->roff, m->rlen, depth + 1);
        }
    return emit(e, c->t + off, len, id);
}

static int encode_bpe(const mf_spm *s, const char *t, size_t n, emitter *e)
{
    bpe_ctx c = {.s = s, .t = t};
    int rc = 0, ns = 0;
    if (!(c.sym = malloc(n * sizeof *c.sym))) return MF_ENOMEM;
    for (size_t i = 0; i < n; ns++) {
        size_t l = user_match(s, t + i, n - i);
        c.sym[ns] = (bsym){ns - 1, -1, (uint32_t)i, 0, l > 0};
        c.sym[ns].len = (uint32_t)(l ? l : one_char_len(t + i, n - i));
        i += c.sym[ns].len;
        if (i < n) c.sym[ns].next = ns + 1;
    }
    for (int i = 1; i < ns; i++)
        if ((rc = add_pair(&c, i - 1, i))) goto out;
    while (c.nheap) {
        bpair top = heap_pop(&c);
        bsym *L = &c.sym[top.left], *R = &c.sym[top.right];
        if (!L->len || !R->len || L->len + R->len != top.size) continue; /* stale */
        L->len += R->len;
        L->next = R->next;
        if (R->next >= 0) c.sym[R->next].prev = top.left;
        R->len = 0;
        if ((rc = add_pair(&c, L->prev, top.left))) goto out;
        if ((rc = add_pair(&c, top.left, L->next))) goto out;
    }
    for (int i = 0; ns && i != -1; i = c.sym[i].next)
        if ((rc = resegment(&c, e, c.sym[i].off, c.sym[i].len, 0))) goto out;
out:
    free(c.sym);
    free(c.heap);
    free(c.rev);
    return rc;
}

/* ---------------------------------------------------------------- unigram */

typedef struct {
    int32_t id;
    float score; /* best path score ending here */
    int start;   /* where the last piece of that path starts; -1: none yet */
} unode;

static int encode_unigram(const mf_spm *s, const char *t, size_t n, emitter *e)
{
    unode *best = malloc((n + 1) * sizeof *best);
    int *path = malloc((n + 1) * sizeof *path);
    int rc = 0;
    if (!best || !path) {
        rc = MF_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i <= n; i++) best[i] = (unode){-1, 0.0f, -1};
    const float unk_score = s->min_score - 10.0f; /* kUnkPenalty */
    for (size_t at = 0; at < n;) {
        float till = best[at].score;
        size_t mblen = one_char_len(t + at, n - at), maxl = n - at;
        int has_single = 0;
        if (maxl > s->piece_maxlen) maxl = s->piece_maxlen;
        for (size_t l = 1; l <= maxl; l++) {
            int32_t id = mf_tok_smap_get(&s->pieces, t + at, l);
            if (id < 0 || s->type[id] == SPM_UNUSED) continue;
            /* the ternary in EncodeOptimized makes every score a double */
            double sc = s->type[id] == SPM_USER ? (double)((float)l * s->max_score) - 0.1 : (double)s->score[id];
            double cand = sc + (double)till;
            unode *nd = &best[at + l];
            if (nd->start == -1 || cand > (double)nd->score) *nd = (unode){id, (float)cand, (int)at};
            if (l == mblen) has_single = 1;
        }
        if (!has_single) {
            unode *nd = &best[at + mblen];
            float cand = unk_score + till;
            if (nd->start == -1 || cand > nd->score) *nd = (unode){s->unk, cand, (int)at};
        }
        at += mblen;
    }
    int np = 0;
    for (int end = (int)n; end > 0; end = best[end].start) path[np++] = end;
    for (int k = np - 1; k >= 0; k--) {
        int end = path[k], start = best[end].start;
        if ((rc = emit(e, t + start, (size_t)(end - start), best[end].id))) goto out;
    }
out:
    free(best);
    free(path);
    return rc;
}

int mf_spm_encode(const mf_spm *s, const char *text, size_t n, mf_tok_ids *out, mf_err *err)
{
    mf_buf nb = MF_BUF_INIT;
    emitter e = {s, out, 0};
    int rc;
    if ((rc = normalize(s, text, n, &nb)) || !nb.len) goto out;
    rc = s->model_type == SPM_BPE ? encode_bpe(s, nb.data, nb.len, &e) : encode_unigram(s, nb.data, nb.len, &e);
out:
    mf_buf_free(&nb);
    return rc ? mf_err_set(err, rc, "tokenizer: out of memory") : 0;
}

/* ---------------------------------------------------------------- decode */

/* Byte pieces regrouped into UTF-8 characters; an invalid byte -> U+FFFD. */
static void flush_bytes(mf_buf *out, const unsigned char *b, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int l = mf_tok_utf8_dec(b + i, n - i, &cp);
        if (l <= 0) {
            mf_buf_append(out, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            mf_buf_append(out, b + i, (size_t)l);
            i += (size_t)l;
        }
    }
}

int mf_spm_decode(const mf_spm *s, const int32_t *ids, size_t n, mf_buf *out, mf_err *err)
{
    size_t start = out->len, nb = 0;
    unsigned char *bytes = malloc(n ? n : 1);
    if (!bytes) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        int t = s->type[id];
        if (t == SPM_BYTE) {
            size_t len;
            const char *p = mf_spm_piece(s, id, &len);
            bytes[nb++] = (unsigned char)(strtol(p + 3, NULL, 16) & 0xFF);
            continue;
        }
        flush_bytes(out, bytes, nb);
        nb = 0;
        if (bos_ws_seen || out->len > start) is_bos_ws = 0;
        bos_ws_seen = 0;
        if (t == SPM_CONTROL) continue;
        if (t == SPM_UNKNOWN) {
            mf_buf_puts(out, s->unk_surface);
            continue;
        }
        const char *p = s->piece[id];
        size_t len = s->plen[id];
        if (is_bos_ws && (s->add_dummy_prefix || s->remove_extra_ws) && len >= 3 && !memcmp(p, kSpace, 3)) {
            p += 3, len -= 3;
            bos_ws_seen = !s->remove_extra_ws; /* removing extra whitespace strips every leading space */
        }
        for (size_t k = 0; k < len;) {
            if (len - k >= 3 && !memcmp(p + k, kSpace, 3)) {
                mf_buf_putc(out, ' ');
                k += 3;
            } else {
                mf_buf_putc(out, p[k++]);
            }
        }
    }
    flush_bytes(out, bytes, nb);
    free(bytes);
    return mf_buf_ok(out) ? 0 : mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
}
