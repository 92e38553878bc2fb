/*
 * Input data and error text for the benchmark bodies. Data depends only on
 * the seed so runs on different backends time the same numbers.
 */
#include <stdio.h>

#include "common.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void dsv_bench_fill(dsv_tensor *t, uint64_t seed, double scale)
{
    uint64_t s = seed;
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53; /* [0, 1) */
        dsv_tensor_set(t, i, (2.0 * u - 1.0) * scale);
    }
}

void dsv_bench_errmsg(char *msg, size_t n, const char *what, dsv_status s)
{
    snprintf(msg, n, "%s: %s (%s)", what, dsv_status_name(s), dsv_errmsg());
}
