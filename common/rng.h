/*
 * common/rng.h — the seeded random numbers and small non-cryptographic hashes
 * every module shares.
 *
 * splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, fully specified, so a
 * seed gives the same draws on every platform and build. The data kinds draw
 * from an mf_rng directly; kernels/rng.h seeds its xoshiro256** state with
 * mf_splitmix64_next. (kernels/cuda/ops.cu keeps a device-side copy of the
 * finaliser: dropout masks must be bit-identical on both backends.)
 */
#ifndef MF_COMMON_RNG_H
#define MF_COMMON_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The splitmix64 step: advance *state by the golden gamma, return its mix. */
uint64_t mf_splitmix64_next(uint64_t *state);
/* The splitmix64 finaliser alone (a bijective 64-bit mix). */
uint64_t mf_mix64(uint64_t x);
/* FNV-1a 64 over n bytes (offset basis xor mf_mix64(seed)), then mf_mix64. */
uint64_t mf_hash64(const void *p, size_t n, uint64_t seed);

/* A splitmix64 stream. */
typedef struct mf_rng { uint64_t s; } mf_rng;
void mf_rng_seed(mf_rng *r, uint64_t seed);
uint64_t mf_rng_next(mf_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t mf_rng_below(mf_rng *r, uint64_t n);
double mf_rng_unit(mf_rng *r); /* [0, 1) with 53 random bits */
/* Fisher-Yates shuffle of n indices. */
void mf_rng_shuffle(mf_rng *r, size_t *idx, size_t n);

#endif
