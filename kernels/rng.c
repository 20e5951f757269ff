/* kernels/rng.c — xoshiro256** + splitmix64 (see rng.h). */
#include "kernels/rng.h"

#include "common/rng.h"

#include <math.h>


uint64_t mf_k_hash64(uint64_t x)
{
    return mf_splitmix64_next(&x);
}

void mf_k_rng_seed(mf_k_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = mf_splitmix64_next(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t mf_k_rng_next(mf_k_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float mf_k_rng_uniform(mf_k_rng *r)
{
    return (float)(mf_k_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

double mf_k_rng_uniform_d(mf_k_rng *r)
{
    return (double)(mf_k_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

float mf_k_rng_normal(mf_k_rng *r)
{
    double u1 = mf_k_rng_uniform_d(r), u2 = mf_k_rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
