/*
 * Input data and error text for the benchmark bodies. Data depends only on
 * the seed so runs on different backends time the same numbers.
 */
#include <stdio.h>

#include "common.h"
#include "internal/rng.h"

void dsv_bench_fill(dsv_tensor *t, uint64_t seed, double scale)
{
    uint64_t s = seed;
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(dsv_splitmix64(&s) >> 11) * 0x1.0p-53; /* [0, 1) */
        dsv_tensor_set(t, i, (2.0 * u - 1.0) * scale);
    }
}

void dsv_bench_errmsg(char *msg, size_t n, const char *what, dsv_status s)
{
    snprintf(msg, n, "%s: %s (%s)", what, dsv_status_name(s), dsv_errmsg());
}
