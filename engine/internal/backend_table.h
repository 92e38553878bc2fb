/*
 * The backend table: one kernel set per backend (naive, fast, oneDNN) that
 * the dispatch in ops.c/backend.c picks from. For kernels/, the engine, the
 * command line's op runner, tests and benchmarks; not installed, so library
 * users only see dsv_forward/dsv_backward.
 */
#ifndef DASECV_INTERNAL_BACKEND_TABLE_H
#define DASECV_INTERNAL_BACKEND_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dasecv/ops.h"

/* ---- the backend table (for kernels/ and the engine) ---------------------- */

typedef struct dsv_kernel {
    /* NULL supports means: every valid call of this op and the table's dtype
       set. A NULL forward/backward means unsupported. */
    bool (*supports)(const dsv_call *c, bool backward);
    dsv_status (*forward)(dsv_call *c);
    dsv_status (*backward)(dsv_call *c);
    /* The forward followed by relu, applied tile by tile as the output is
       written (the graph's fused nodes); NULL where not offered. */
    dsv_status (*forward_relu)(dsv_call *c);
} dsv_kernel;

typedef struct dsv_backend_table {
    const char *name;
    dsv_kernel kernels[DSV_OP_COUNT];
    unsigned dtypes;                 /* bit (1u << dtype) per float dtype handled */
    void (*state_free)(void *state); /* may be NULL if it keeps no state */
    /* Implementation choices the backend made by timing, process-wide (NULL
       when it makes none): a key of up to DSV_CHOICE_KEY_MAX int64s and an
       implementation name. choice_at returns false past the last one;
       choice_set records one, so that the next state for that key takes the
       named implementation without timing. */
    bool (*choice_at)(int i, int64_t *key, int *nkey, char *name, size_t size);
    dsv_status (*choice_set)(const int64_t *key, int nkey, const char *name);
} dsv_backend_table;

#define DSV_CHOICE_KEY_MAX 16
#define DSV_CHOICE_NAME_MAX 64

/* NULL if the backend is not built in. */
const dsv_backend_table *dsv_backend_get(dsv_backend b);

/* Whether the backend dsv_forward would pick for c offers forward_relu. */
bool dsv_forward_relu_ok(const dsv_call *c, dsv_backend want);
/* dsv_forward with relu applied to the output in the kernel's epilogue:
 * out = relu(op(x)), the same values as the op and then relu. The picked
 * backend must offer it (dsv_forward_relu_ok); DSV_UNSUPPORTED otherwise. */
dsv_status dsv_forward_relu(dsv_call *c, dsv_backend want, dsv_backend *used);

#endif
