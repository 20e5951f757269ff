/*
 * tokenizer/tok_maps.c — the tokenizer's hash maps: token string -> id, and
 * merge pair -> (rank, new id). Open addressing with linear probing; tables
 * double at 50% load, so lookups stay O(1) on vocabularies of any size.
 */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

uint32_t mf_tok_hash(const char *s, size_t n)
{
    /* FNV-1a, 32 bit */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static int smap_grow(mf_tok_smap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    mf_tok_sent *ne = calloc(ncap, sizeof *ne);
    if (!ne) return MF_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].k) continue;
        size_t j = m->e[i].h & (ncap - 1);
        while (ne[j].k) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->cap = ncap;
    return 0;
}

int mf_tok_smap_put(mf_tok_smap *m, const char *k, size_t len, int32_t v)
{
    if ((m->n + 1) * 2 > m->cap && smap_grow(m)) return MF_ENOMEM;
    uint32_t h = mf_tok_hash(k, len);
    size_t j = h & (m->cap - 1);
    while (m->e[j].k) {
        if (m->e[j].h == h && m->e[j].len == len && !memcmp(m->e[j].k, k, len)) {
            m->e[j].v = v;
            m->e[j].k = k;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->e[j].k = k;
    m->e[j].len = (uint32_t)len;
    m->e[j].h = h;
    m->e[j].v = v;
    m->n++;
    return 0;
}

int32_t mf_tok_smap_get(const mf_tok_smap *m, const char *k, size_t len)
{
    if (!m->cap) return -1;
    uint32_t h = mf_tok_hash(k, len);
    size_t j = h & (m->cap - 1);
    while (m->e[j].k) {
        if (m->e[j].h == h && m->e[j].len == len && !memcmp(m->e[j].k, k, len)) return m->e[j].v;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void mf_tok_smap_free(mf_tok_smap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int mmap_grow(mf_tok_mmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    mf_tok_ment *ne = malloc(ncap * sizeof *ne);
    if (!ne) return MF_ENOMEM;
    for (size_t i = 0; i < ncap; i++) ne[i].k = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].k == UINT64_MAX) continue;
        size_t j = mix64(m->e[i].k) & (ncap - 1);
        while (ne[j].k != UINT64_MAX) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->cap = ncap;
    return 0;
}

int mf_tok_mmap_put(mf_tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    if ((m->n + 1) * 2 > m->cap && mmap_grow(m)) return MF_ENOMEM;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j = mix64(k) & (m->cap - 1);
    while (m->e[j].k != UINT64_MAX) {
        if (m->e[j].k == k) {
            m->e[j].rank = rank;
            m->e[j].id = id;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->e[j].k = k;
    m->e[j].rank = rank;
    m->e[j].id = id;
    m->n++;
    return 0;
}

const mf_tok_ment *mf_tok_mmap_get(const mf_tok_mmap *m, int32_t a, int32_t b)
{
    if (!m->cap) return NULL;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j = mix64(k) & (m->cap - 1);
    while (m->e[j].k != UINT64_MAX) {
        if (m->e[j].k == k) return &m->e[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void mf_tok_mmap_free(mf_tok_mmap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

int mf_tok_ids_push(mf_tok_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return MF_ENOMEM;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return 0;
}
