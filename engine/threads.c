/*
 * The thread-count knob. OpenMP's own setting is the single source of truth,
 * because oneDNN reads omp_get_max_threads() when it creates a primitive: set
 * the count here before creating primitives (the oneDNN backend keys its cached
 * primitives by the count it was created with).
 */
#include <stdlib.h>

#include <omp.h>

#include "dasecv/ops.h"

static int configured; /* 0 until first use */

static void init_from_env(void)
{
    if (configured)
        return;
    const char *env = getenv("DASECV_NUM_THREADS");
    int n = 0;
    if (env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*env && !*end && v >= 1 && v <= 4096)
            n = (int)v;
    }
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
