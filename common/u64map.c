/* common/u64map.c — see u64map.h. */
#include "common/u64map.h"

#include <stdlib.h>

#include "common/error.h"

static int grow(mf_u64map *m)
{
    size_t nc = m->cap ? m->cap * 2 : 1024;
    uint64_t *nk = calloc(nc, sizeof *nk), *nv = calloc(nc, sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return MF_ENOMEM;
    }
    for (size_t k = 0; k < m->cap; k++) {
        if (!m->keys[k]) continue;
        size_t j = m->keys[k] & (nc - 1);
        while (nk[j]) j = (j + 1) & (nc - 1);
        nk[j] = m->keys[k];
        nv[j] = m->vals[k];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = nc;
    return 0;
}

int mf_u64map_add(mf_u64map *m, uint64_t key, uint64_t val)
{
    if (!key) key = 1;
    if ((m->n + 1) * 2 > m->cap && grow(m)) return MF_ENOMEM;
    size_t j = key & (m->cap - 1);
    while (m->keys[j]) j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
    return 0;
}

/* From slot j on (in probe order), the first slot holding key. */
static size_t scan(const mf_u64map *m, uint64_t key, size_t j)
{
    for (; m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) return j;
    return MF_U64MAP_NONE;
}

size_t mf_u64map_find(const mf_u64map *m, uint64_t key)
{
    if (!m->cap) return MF_U64MAP_NONE;
    if (!key) key = 1;
    return scan(m, key, key & (m->cap - 1));
}

size_t mf_u64map_next(const mf_u64map *m, uint64_t key, size_t slot)
{
    if (!key) key = 1;
    return scan(m, key, (slot + 1) & (m->cap - 1));
}

void mf_u64map_free(mf_u64map *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = m->vals = NULL;
    m->cap = m->n = 0;
}
