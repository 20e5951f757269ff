/*
 * common/u64map.h — a small open-addressing multimap from 64-bit hashes to 64-bit values.
 *
 * Linear probing over a power-of-two table kept at most half full (it doubles, from 1024 slots,
 * re-inserting in slot order). Key 0 marks an empty slot, so a key 0 is stored as 1. A key may
 * be added more than once (a multimap): mf_u64map_find gives the slot of its first entry in
 * probe order, mf_u64map_next the following ones, and the caller tells true matches apart
 * (the keys are hashes of something it holds).
 */
#ifndef MF_COMMON_U64MAP_H
#define MF_COMMON_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mf_u64map {
    uint64_t *keys; /* 0: an empty slot */
    uint64_t *vals;
    size_t cap, n;
} mf_u64map;

#define MF_U64MAP_NONE ((size_t)-1)

/* Add (key, val); 0, or MF_ENOMEM (the map is unchanged). */
int mf_u64map_add(mf_u64map *m, uint64_t key, uint64_t val);
/* The slot of key's first entry, or MF_U64MAP_NONE. */
size_t mf_u64map_find(const mf_u64map *m, uint64_t key);
/* The slot of key's next entry after slot, or MF_U64MAP_NONE. */
size_t mf_u64map_next(const mf_u64map *m, uint64_t key, size_t slot);
void mf_u64map_free(mf_u64map *m);

#endif
