/*
 * The C side of the benchmark harness: a benchmark is a plain struct of
 * function pointers, registered with dsv_bench_register() and run by
 * dsv_bench_main(), which hands the command line to Google Benchmark
 * (shim.cc). Benchmark bodies stay in C and call only the public dasecv API.
 *
 * What must stay true: setup() allocates everything a run needs so that the
 * timed step() does no allocation of its own beyond what the library does;
 * every pointer registered here outlives dsv_bench_main().
 */
#ifndef DSV_BENCH_SHIM_H
#define DSV_BENCH_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What setup() reports. SKIP means "not applicable in this build" (a backend
 * that does not support the call): reported, but not a failure. */
typedef enum dsv_bench_result {
    DSV_BENCH_OK = 0,
    DSV_BENCH_SKIP,
    DSV_BENCH_FAIL
} dsv_bench_result;

typedef struct dsv_bench {
    const char *name;       /* "conv_fwd/cell/fast", Google Benchmark's name */
    const void *arg;        /* handed to setup() */
    /* Makes the state for one run. On anything but OK, *msg (up to msg_n
       bytes) says why and *state is left NULL. label: a short note for the
       report (which kernel ran, how many threads). */
    dsv_bench_result (*setup)(const void *arg, void **state, char *label,
                              size_t label_n, char *msg, size_t msg_n);
    /* Untimed work before each timed step (may be NULL): the forward a
       backward step follows. Returns 0, or nonzero with *msg set. */
    int (*prepare)(void *state, char *msg, size_t msg_n);
    /* One timed step. Returns 0, or nonzero with *msg set. */
    int (*step)(void *state, char *msg, size_t msg_n);
    void (*teardown)(void *state);
    double flops;           /* per step, for a FLOP/s counter; 0: none */
} dsv_bench;

/* Adds b to the suite (b must stay valid until dsv_bench_main returns). */
void dsv_bench_register(const dsv_bench *b);

/* Adds key=value to the report's context (JSON "context" object). Call
 * before dsv_bench_main. */
void dsv_bench_context(const char *key, const char *value);

/* Parses Google Benchmark's flags from argv and runs the registered
 * benchmarks. Returns 0, 1 if a benchmark failed (setup FAIL or a step
 * error; skips do not count), 2 for a bad command line. */
int dsv_bench_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
