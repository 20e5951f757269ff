/*
 * tokenizer/tok_bpe.c — the BPE model: one pre-tokenized word -> ids.
 *
 * Same algorithm as HF tokenizers (models/bpe/word.rs): the word starts as one
 * symbol per byte (byte-level models, through the ByteLevel map) or per
 * character (SentencePiece-style: unknown chars become <0xNN> byte-fallback
 * tokens or unk, fused when fuse_unk); then a min-heap of candidate merges
 * ordered by (rank, position) is popped, stale entries skipped, and the two
 * neighbours of each merged symbol re-queued. Symbols form a doubly linked
 * list, so a word of n symbols costs O(n log n), never O(n^2).
 * A small word cache (words under 256 bytes) sits in front; it is guarded by a
 * trylock so concurrent encoders never wait on it.
 */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_CAP 16384 /* entries; cleared when half full */
#define CACHE_MAX_WORD 256
#define STACK_SYMS 128
#define SMALL_WORD 48 /* words with at most this many symbols use merge_small */

typedef struct {
    int32_t c, prev, next;
    uint32_t len;
} sym_t;

typedef struct {
    int32_t rank, pos, id;
} merge_t;

static inline int merge_less(const merge_t *a, const merge_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(merge_t *h, size_t *n, merge_t m)
{
    size_t i = (*n)++;
    h[i] = m;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&h[i], &h[p])) break;
        merge_t t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static merge_t heap_pop(merge_t *h, size_t *n)
{
    merge_t top = h[0];
    h[0] = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && merge_less(&h[l], &h[m])) m = l;
        if (r < *n && merge_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        merge_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

/* ---- word cache ---- */

static int cache_get(mf_tok *tok, const char *w, size_t n, mf_tok_ids *out, int *hit)
{
    *hit = 0;
    if (n >= CACHE_MAX_WORD) return 0;
    if (pthread_mutex_trylock(&tok->cache_lock)) return 0;
    if (!tok->cache) {
        pthread_mutex_unlock(&tok->cache_lock);
        return 0;
    }
    uint32_t h = mf_tok_hash(w, n);
    size_t j = h & (tok->cache_cap - 1);
    int rc = 0;
    while (tok->cache[j].key) {
        mf_tok_cent *e = &tok->cache[j];
        if (e->h == h && e->klen == n && !memcmp(e->key, w, n)) {
            *hit = 1;
            for (uint32_t q = 0; q < e->n; q++)
                if ((rc = mf_tok_ids_push(out, e->ids[q])) != 0) goto out;
            goto out;
        }
        j = (j + 1) & (tok->cache_cap - 1);
    }
out:
    pthread_mutex_unlock(&tok->cache_lock);
    return rc;
}

static void cache_clear(mf_tok *tok)
{
    for (size_t i = 0; i < tok->cache_cap; i++) {
        free(tok->cache[i].ids); /* key lives in the same block */
        tok->cache[i].key = NULL;
        tok->cache[i].ids = NULL;
    }
    tok->cache_n = 0;
}

static void cache_put(mf_tok *tok, const char *w, size_t n, const int32_t *ids, size_t nids)
{
    if (n >= CACHE_MAX_WORD) return;
    if (pthread_mutex_trylock(&tok->cache_lock)) return;
    if (!tok->cache) { /* allocated on first use: loading stays cheap */
        tok->cache = calloc(CACHE_CAP, sizeof *tok->cache);
        if (!tok->cache) {
            pthread_mutex_unlock(&tok->cache_lock);
            return;
        }
        tok->cache_cap = CACHE_CAP;
    }
    if (tok->cache_n * 2 >= tok->cache_cap) cache_clear(tok);
    /* one block: ids first (aligned), then the key bytes */
    int32_t *v = malloc(nids * sizeof *v + n + 1);
    if (!v) {
        pthread_mutex_unlock(&tok->cache_lock);
        return; /* the cache is an optimisation: skipping it is fine */
    }
    char *k = (char *)(v + nids);
    memcpy(k, w, n);
    memcpy(v, ids, nids * sizeof *v);
    uint32_t h = mf_tok_hash(w, n);
    size_t j = h & (tok->cache_cap - 1);
    while (tok->cache[j].key) {
        mf_tok_cent *e = &tok->cache[j];
        if (e->h == h && e->klen == n && !memcmp(e->key, w, n)) { /* raced: already there */
            free(v);
            pthread_mutex_unlock(&tok->cache_lock);
            return;
        }
        j = (j + 1) & (tok->cache_cap - 1);
    }
    tok->cache[j] = (mf_tok_cent){k, (uint32_t)n, h, v, (uint32_t)nids};
    tok->cache_n++;
    pthread_mutex_unlock(&tok->cache_lock);
}

/* ---- symbols ---- */

typedef struct {
    sym_t *s;
    size_t n, cap;
    int32_t unk_id;
    uint32_t unk_len; /* pending (possibly fused) unk */
    int have_unk;
} word_t;

static int word_add(word_t *w, int32_t c, uint32_t len)
{
    if (w->n == w->cap) return MF_EINTERNAL; /* capacity is sized up front */
    int32_t i = (int32_t)w->n;
    w->s[i] = (sym_t){c, i - 1, -1, len};
    if (i > 0) w->s[i - 1].next = i;
    w->n++;
    return 0;
}

static int flush_unk(word_t *w)
{
    if (!w->have_unk) return 0;
    w->have_unk = 0;
    return word_add(w, w->unk_id, w->unk_len);
}

/* One initial symbol of byte length blen whose vocab id is `id` (-1: not in vocab). */
static int add_symbol(mf_tok *tok, word_t *w, int32_t id, const unsigned char *bytes, size_t blen, mf_err *err)
{
    if (id >= 0) {
        if (flush_unk(w)) return MF_EINTERNAL;
        return word_add(w, id, (uint32_t)blen);
    }
    if (tok->byte_fallback) {
        int all = 1;
        for (size_t q = 0; q < blen; q++)
            if (tok->fallback_id[bytes[q]] < 0) all = 0;
        if (all) {
            /* HF adds byte tokens without flushing a pending unk first; keep its order */
            for (size_t q = 0; q < blen; q++)
                if (word_add(w, tok->fallback_id[bytes[q]], 1)) return MF_EINTERNAL;
            return 0;
        }
    }
    if (tok->unk < 0) return 0; /* HF drops the char when there is no unk token */
    if (w->have_unk && tok->fuse_unk) {
        w->unk_len += (uint32_t)blen;
        return 0;
    }
    if (flush_unk(w)) return MF_EINTERNAL;
    w->have_unk = 1;
    w->unk_id = tok->unk;
    w->unk_len = (uint32_t)blen;
    (void)err;
    return 0;
}

/* Heap merge for long words: O(n log n). */
static void merge_heap(mf_tok *tok, word_t *wp, merge_t *heap)
{
    word_t w = *wp;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < w.n; i++) {
        const mf_tok_ment *m = mf_tok_mmap_get(&tok->merges, w.s[i].c, w.s[i + 1].c);
        if (m) heap_push(heap, &hn, (merge_t){m->rank, (int32_t)i, m->id});
    }
    while (hn) {
        merge_t top = heap_pop(heap, &hn);
        sym_t *cur = &w.s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym_t right = w.s[cur->next];
        const mf_tok_ment *m = mf_tok_mmap_get(&tok->merges, cur->c, right.c);
        if (!m || m->id != top.id) continue; /* stale entry */
        int32_t rpos = cur->next;
        cur->c = top.id;
        cur->len += right.len;
        cur->next = right.next;
        w.s[rpos].len = 0;
        if (right.next >= 0) w.s[right.next].prev = top.pos;
        if (cur->prev >= 0) {
            const mf_tok_ment *pm = mf_tok_mmap_get(&tok->merges, w.s[cur->prev].c, cur->c);
            if (pm && hn < 2 * w.cap) heap_push(heap, &hn, (merge_t){pm->rank, cur->prev, pm->id});
        }
        if (cur->next >= 0) {
            const mf_tok_ment *nm = mf_tok_mmap_get(&tok->merges, cur->c, w.s[cur->next].c);
            if (nm && hn < 2 * w.cap) heap_push(heap, &hn, (merge_t){nm->rank, top.pos, nm->id});
        }
    }
}

/* Short words: symbols in a flat array with the rank of each adjacent pair;
 * each step merges the leftmost pair of lowest rank and looks up only the
 * two pairs it changed. The same result as the heap (HF merges the lowest
 * (rank, position) first), with fewer lookups and no heap traffic. */
static int merge_small(mf_tok *tok, word_t *w, mf_tok_ids *out)
{
    int32_t c[SMALL_WORD], rank[SMALL_WORD], nid[SMALL_WORD];
    size_t n = w->n;
    for (size_t i = 0; i < n; i++) c[i] = w->s[i].c;
    for (size_t i = 0; i + 1 < n; i++) {
        const mf_tok_ment *m = mf_tok_mmap_get(&tok->merges, c[i], c[i + 1]);
        rank[i] = m ? m->rank : INT32_MAX;
        nid[i] = m ? m->id : -1;
    }
    while (n > 1) {
        /* min, then its first position: two branch-free passes the compiler vectorises */
        int32_t mn = INT32_MAX;
        for (size_t i = 0; i + 1 < n; i++) mn = rank[i] < mn ? rank[i] : mn;
        if (mn == INT32_MAX) break;
        size_t best = 0;
        while (rank[best] != mn) best++;
        c[best] = nid[best];
        /* drop symbol best+1 and pair best+1 */
        for (size_t i = best + 1; i + 1 < n; i++) c[i] = c[i + 1];
        for (size_t i = best + 1; i + 2 < n; i++) {
            rank[i] = rank[i + 1];
            nid[i] = nid[i + 1];
        }
        n--;
        if (best > 0) {
            const mf_tok_ment *m = mf_tok_mmap_get(&tok->merges, c[best - 1], c[best]);
            rank[best - 1] = m ? m->rank : INT32_MAX;
            nid[best - 1] = m ? m->id : -1;
        }
        if (best + 1 < n) {
            const mf_tok_ment *m = mf_tok_mmap_get(&tok->merges, c[best], c[best + 1]);
            rank[best] = m ? m->rank : INT32_MAX;
            nid[best] = m ? m->id : -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (mf_tok_ids_push(out, c[i])) return MF_ENOMEM;
    return 0;
}

static int32_t lookup_piece(mf_tok *tok, const char *p, size_t n, int first, int last, char *tmp, size_t tmpcap)
{
    if ((first || !tok->cont_prefix) && (!last || !tok->eow_suffix)) return mf_tok_smap_get(&tok->vocab, p, n);
    size_t need = n + (first ? 0 : tok->cont_prefix_len) + (last ? tok->eow_suffix_len : 0);
    if (need > tmpcap) return -1;
    size_t o = 0;
    if (!first && tok->cont_prefix) {
        memcpy(tmp, tok->cont_prefix, tok->cont_prefix_len);
        o += tok->cont_prefix_len;
    }
    memcpy(tmp + o, p, n);
    o += n;
    if (last && tok->eow_suffix) {
        memcpy(tmp + o, tok->eow_suffix, tok->eow_suffix_len);
        o += tok->eow_suffix_len;
    }
    return mf_tok_smap_get(&tok->vocab, tmp, o);
}

static int ignore_merges_hit(mf_tok *tok, const char *wtxt, size_t n, int32_t *id)
{
    *id = -1;
    if (!tok->byte_level) {
        *id = mf_tok_smap_get(&tok->vocab, wtxt, n);
        return 0;
    }
    /* vocab keys of byte-level models are the mapped chars: map the word first */
    char stackbuf[512];
    char *m = n * 2 <= sizeof stackbuf ? stackbuf : malloc(n * 2);
    if (!m) return MF_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)mf_tok_utf8_enc(mf_tok_byte_to_cp((unsigned char)wtxt[i]), m + o);
    *id = mf_tok_smap_get(&tok->vocab, m, o);
    if (m != stackbuf) free(m);
    return 0;
}

/* The symbol buffer is sized for the worst case: running out is a bug. */
static int word_overflow(mf_err *err)
{
    return mf_err_set(err, MF_EINTERNAL, "tokenizer: BPE word buffer overflow (bug)");
}

int mf_tok_bpe_word(mf_tok *tok, const char *wtxt, size_t n, mf_tok_ids *out, mf_err *err)
{
    if (n == 0) return 0;
    int rc;
    if (tok->ignore_merges) {
        int32_t id;
        if ((rc = ignore_merges_hit(tok, wtxt, n, &id))) return mf_err_set(err, rc, "tokenizer: out of memory");
        if (id >= 0) return mf_tok_ids_push(out, id) ? mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory") : 0;
    }
    int hit;
    size_t start_n = out->n;
    if ((rc = cache_get(tok, wtxt, n, out, &hit))) return mf_err_set(err, rc, "tokenizer: out of memory");
    if (hit) return 0;

    /* at most one symbol per byte (byte fallback emits one per byte too) */
    /* Symbols: one per byte, two for a byte-level byte whose mapped char falls
     * back to bytes. Heap: n-1 initial entries + at most one net per merge. */
    sym_t stack_syms[STACK_SYMS];
    merge_t stack_heap[2 * STACK_SYMS];
    word_t w = {stack_syms, 0, STACK_SYMS, -1, 0, 0};
    merge_t *heap = stack_heap;
    if (2 * n > STACK_SYMS) {
        w.cap = 2 * n;
        w.s = malloc(w.cap * sizeof *w.s);
        heap = malloc(2 * w.cap * sizeof *heap);
        if (!w.s || !heap) {
            rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory for a %zu-byte word", n);
            goto out;
        }
    }
    const unsigned char *s = (const unsigned char *)wtxt;
    if (tok->byte_level) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = tok->byte_id[s[i]];
            if (id < 0) {
                /* the mapped char's bytes, for byte fallback (as HF sees it) */
                char mb[4];
                int ml = mf_tok_utf8_enc(mf_tok_byte_to_cp(s[i]), mb);
                rc = add_symbol(tok, &w, -1, (const unsigned char *)mb, (size_t)ml, err);
            } else {
                rc = add_symbol(tok, &w, id, s + i, 1, err);
            }
            if (rc) {
                rc = word_overflow(err);
                goto out;
            }
        }
    } else {
        char tmp[64];
        size_t i = 0;
        while (i < n) {
            uint32_t cp;
            int l = mf_tok_utf8_dec(s + i, n - i, &cp);
            if (!l) l = 1; /* input was validated; be safe anyway */
            int32_t id = lookup_piece(tok, wtxt + i, (size_t)l, i == 0, i + (size_t)l == n, tmp, sizeof tmp);
            if ((rc = add_symbol(tok, &w, id, s + i, (size_t)l, err))) {
                rc = word_overflow(err);
                goto out;
            }
            i += (size_t)l;
        }
    }
    if ((rc = flush_unk(&w))) {
        rc = word_overflow(err);
        goto out;
    }

    if (w.n <= SMALL_WORD) {
        if ((rc = merge_small(tok, &w, out))) {
            rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
    } else {
        merge_heap(tok, &w, heap);
        for (int32_t i = w.n ? 0 : -1; i >= 0; i = w.s[i].next)
            if (mf_tok_ids_push(out, w.s[i].c)) {
                rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
                goto out;
            }
    }
    cache_put(tok, wtxt, n, out->v + start_n, out->n - start_n);
    rc = 0;
out:
    if (w.s != stack_syms) free(w.s);
    if (heap != stack_heap) free(heap);
    return rc;
}
