/*
 * The one random number generator of the engine, its tools and tests:
 * splitmix64 (Steele, Lea and Flood). Weight initialisation, the Solver's
 * permutations, dropout masks and test data all draw from it, so a change
 * here changes every trained result; it must stay bit for bit as it is.
 * Not installed.
 */
#ifndef DASECV_INTERNAL_RNG_H
#define DASECV_INTERNAL_RNG_H

#include <stdint.h>

/* Advances *state and returns the next 64-bit output. */
static inline uint64_t dsv_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from the top 53 bits of the next output. */
static inline double dsv_splitmix64_uniform(uint64_t *state)
{
    return (double)(dsv_splitmix64(state) >> 11) * 0x1.0p-53;
}

/*
 * Dropout's keep decision for element `index` of the whole batch: the
 * index-th output of a splitmix64 stream seeded with `seed`, as a uniform
 * double in [0, 1). A pure function of (seed, index), so backward and any
 * batch split regenerate the same mask; every backend uses it.
 */
static inline double dsv_dropout_uniform(uint64_t seed, uint64_t index)
{
    uint64_t s = seed + index * 0x9E3779B97F4A7C15ull;
    return dsv_splitmix64_uniform(&s);
}

#endif
