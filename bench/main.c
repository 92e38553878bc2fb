/*
 * dasecv-bench: the op and model benchmarks (Google Benchmark through shim.h).
 *
 *   dasecv-bench [--dsv_threads=N] [Google Benchmark flags]
 *
 * --dsv_threads sets dsv_set_num_threads (default 2, both cores of the
 * reference machine); every other flag is Google Benchmark's
 * (--benchmark_filter=conv, --benchmark_format=json,
 * --benchmark_repetitions=3, --benchmark_list_tests, ...).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "shim.h"

#ifndef DSV_BENCH_BUILDTYPE
#define DSV_BENCH_BUILDTYPE "unknown"
#endif

/* Removes --dsv_threads=N from argv; returns N, or -1 if malformed. */
static int take_threads(int *argc, char **argv)
{
    static const char flag[] = "--dsv_threads=";
    int n = 2, k = 1;
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], flag, sizeof(flag) - 1) != 0) {
            argv[k++] = argv[i];
            continue;
        }
        char *end;
        long v = strtol(argv[i] + sizeof(flag) - 1, &end, 10);
        if (*end || v < 1 || v > 4096)
            return -1;
        n = (int)v;
    }
    *argc = k;
    argv[k] = NULL;
    return n;
}

int main(int argc, char **argv)
{
    int threads = take_threads(&argc, argv);
    if (threads < 0) {
        fprintf(stderr, "dasecv-bench: --dsv_threads needs a count from 1 to 4096\n");
        return 2;
    }
    dsv_status s = dsv_set_num_threads(threads);
    if (s) {
        fprintf(stderr, "dasecv-bench: %s\n", dsv_errmsg());
        return 2;
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%d", dsv_get_num_threads());
    dsv_bench_context("dasecv_threads", buf);
    buf[0] = '\0';
    for (int b = 0; b < DSV_BACKEND_AUTO; b++)
        if (dsv_backend_available((dsv_backend)b)) {
            strcat(buf, buf[0] ? "," : "");
            strcat(buf, dsv_backend_name((dsv_backend)b));
        }
    dsv_bench_context("dasecv_backends", buf);
    dsv_bench_context("dasecv_buildtype", DSV_BENCH_BUILDTYPE);

    dsv_bench_register_ops();
    dsv_bench_register_models();
    dsv_bench_register_gemm();
    return dsv_bench_main(argc, argv);
}
