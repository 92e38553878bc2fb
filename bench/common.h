/*
 * Helpers shared by the benchmark bodies: deterministic input data and the
 * registration entry points of each body file.
 */
#ifndef DSV_BENCH_COMMON_H
#define DSV_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "dasecv/dasecv.h"

/* Fills a float tensor with uniform values in [-scale, scale) from seed
 * (splitmix64), so every backend sees the same data. */
void dsv_bench_fill(dsv_tensor *t, uint64_t seed, double scale);

/* Formats "<what>: <status> (<message>)" for a failed library call. */
void dsv_bench_errmsg(char *msg, size_t n, const char *what, dsv_status s);

/* Register the benchmarks of ops.c (ops, then the sgemm peak) / model.c. */
void dsv_bench_register_ops(void);
void dsv_bench_register_gemm(void);
void dsv_bench_register_models(void);

#endif
