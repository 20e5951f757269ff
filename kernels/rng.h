/*
 * kernels/rng.h — the seeded random numbers of the numerical core.
 *
 * xoshiro256** (Blackman & Vigna), seeded by running splitmix64 on the seed.
 * Deterministic across platforms: the same seed gives the same stream.
 * mf_k_hash64 is a stateless counter-based hash (splitmix64 finaliser) used
 * where a random value must be recomputable from its coordinates (dropout
 * masks under activation recomputation).
 */
#ifndef MF_KERNELS_RNG_H
#define MF_KERNELS_RNG_H

#include <stdint.h>

typedef struct mf_k_rng {
    uint64_t s[4];
} mf_k_rng;

void mf_k_rng_seed(mf_k_rng *r, uint64_t seed);
uint64_t mf_k_rng_next(mf_k_rng *r);
/* Uniform in [0, 1) with 24 random bits (float) / 53 bits (double). */
float mf_k_rng_uniform(mf_k_rng *r);
double mf_k_rng_uniform_d(mf_k_rng *r);
/* Standard normal (Box-Muller, both values used in turn is not needed: one per call). */
float mf_k_rng_normal(mf_k_rng *r);
uint64_t mf_k_hash64(uint64_t x);

#endif
