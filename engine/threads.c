/*
 * The thread-count knob. OpenMP's own setting is the single source of truth,
 * because oneDNN reads omp_get_max_threads() when it creates a primitive: set
 * the count here before creating primitives (the oneDNN backend keys its cached
 * primitives by the count it was created with).
 */
#include <errno.h>
#include <stdlib.h>

#include <omp.h>

#include "dasecv/ops.h"

static int configured; /* 0 until first use */

dsv_status dsv_num_threads_from_env(int *n)
{
    *n = 0;
    const char *env = getenv("DASECV_NUM_THREADS");
    if (!env)
        return DSV_OK;
    char *end;
    errno = 0;
    long v = strtol(env, &end, 10);
    if (!*env || *end || errno || v < 1 || v > 4096)
        return dsv_error(DSV_INVALID,
                         "DASECV_NUM_THREADS='%.40s' is not a thread count from 1 to 4096",
                         env);
    *n = (int)v;
    return DSV_OK;
}

static void init_from_env(void)
{
    if (configured)
        return;
    int n;
    if (dsv_num_threads_from_env(&n) != DSV_OK)
        n = 0;
    configured = n ? n : omp_get_max_threads();
    omp_set_num_threads(configured);
}

dsv_status dsv_set_num_threads(int n)
{
    if (n < 1 || n > 4096)
        return dsv_error(DSV_INVALID, "thread count must be 1 to 4096, got %d", n);
    configured = n;
    omp_set_num_threads(n);
    return DSV_OK;
}

int dsv_get_num_threads(void)
{
    init_from_env();
    return configured;
}
