/* common/rng.c — splitmix64 streams and small hashes (see rng.h). */
#include "common/rng.h"

uint64_t mf_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t mf_splitmix64_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mf_mix64(*state);
}

uint64_t mf_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ mf_mix64(seed);
    for (size_t k = 0; k < n; k++) {
        h ^= s[k];
        h *= 0x100000001b3ULL;
    }
    return mf_mix64(h);
}

void mf_rng_seed(mf_rng *r, uint64_t seed) { r->s = seed; }

uint64_t mf_rng_next(mf_rng *r) { return mf_splitmix64_next(&r->s); }

uint64_t mf_rng_below(mf_rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = mf_rng_next(r);
    while (x >= lim);
    return x % n;
}

double mf_rng_unit(mf_rng *r) { return (double)(mf_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

void mf_rng_shuffle(mf_rng *r, size_t *idx, size_t n)
{
    for (size_t k = n; k > 1; k--) {
        size_t j = (size_t)mf_rng_below(r, k);
        size_t t = idx[k - 1];
        idx[k - 1] = idx[j];
        idx[j] = t;
    }
}
