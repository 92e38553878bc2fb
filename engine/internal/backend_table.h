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
    /* forward_relu followed by the max pool of call pool (its x: c's out),
       each image pooled while it is in cache; keep: c's out must be written
       (training), else it may be skipped. NULL where not offered. */
    dsv_status (*forward_relu_pool)(dsv_call *c, dsv_call *pool, bool keep);
    /* The backward, then the backward of a relu whose output is this op's
       x: dx = x > 0 ? dx : 0, applied to each piece of dx while it is in
       cache (a max pool after a fused conv+relu); NULL where not offered. */
    dsv_status (*backward_relu)(dsv_call *c);
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
    /* Turns the backend's implementation timing on or off for the calling
       thread (NULL when it has none): "auto"'s trials run with it off. */
    void (*set_tuning)(bool on);
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
/* Whether dsv_forward_relu_pool can run c and pool: the backend picked for
 * c offers it, and pool's passes (forward, and backward when train) pick
 * that same backend, whose backward then finds the forward's argmax. */
bool dsv_forward_relu_pool_ok(const dsv_call *c, const dsv_call *pool, bool train,
                              dsv_backend want);
/* dsv_forward_relu of c, then the max pool call pool on its output, in one
 * kernel (keep as in dsv_kernel). Both calls are checked first;
 * DSV_UNSUPPORTED unless dsv_forward_relu_pool_ok. */
dsv_status dsv_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep, bool train,
                                 dsv_backend want, dsv_backend *used);
/* Whether dsv_backward_relu can run c: its backward's backend offers
 * backward_relu, and relu (the call of the relu whose output is c's x)
 * would run its backward on that backend too. May time backends under
 * auto, as those backwards would. */
bool dsv_backward_relu_ok(const dsv_call *c, const dsv_call *relu, dsv_backend want);
/* dsv_backward of c with dx then masked as that relu's backward would:
 * dx = x > 0 ? dx : 0 (x: c's input). DSV_UNSUPPORTED where not offered. */
dsv_status dsv_backward_relu(dsv_call *c, dsv_backend want, dsv_backend *used);

/* ---- "auto" between fast and oneDNN by timing (backend_auto.c) ------------
 * For relu, max_pool, avg_pool, batchnorm and spatial_batchnorm, when both
 * backends can run a call, "auto" times them once per configuration (the
 * key: dtype, train, threads, ndim, the input's dims, and for pooling the
 * window and stride) and keeps the faster for both passes. Decisions are
 * process-wide, listed in the order made; the execution plan records them. */
#define DSV_AUTO_KEY_MAX 12

bool dsv_auto_timed_op(dsv_op op);
/* The recorded decision for c's configuration, if any; times nothing. */
bool dsv_auto_lookup(const dsv_call *c, dsv_backend *b);
/* The recorded decision, else (timing on) times fast against oneDNN on
 * scratch tensors and records the faster, else fallback (not recorded). */
dsv_backend dsv_auto_decide(const dsv_call *c, dsv_backend fallback);
/* Decision i (false past the last). */
bool dsv_auto_decision_at(int i, dsv_op *op, int64_t *key, int *nkey, dsv_backend *b);
/* Whether a decision could be recorded: a timed op, 5 to DSV_AUTO_KEY_MAX
 * key values, fast or onednn and built in; DSV_INVALID with a message if not. */
dsv_status dsv_auto_decision_check(dsv_op op, int nkey, dsv_backend b);
/* Records one (replacing the configuration's decision), as a plan does. */
dsv_status dsv_auto_decision_set(dsv_op op, const int64_t *key, int nkey, dsv_backend b);
/* Configurations timed so far in this process (tests). */
int64_t dsv_auto_trials(void);
/* False when DASECV_AUTO_TIMING is "0". */
bool dsv_auto_timing_on(void);
/* Whether "auto" leaves c's backend to timing (made at the first call of
 * each configuration, or taken from a plan): dsv_pick_backend's answer is
 * then the decision recorded for c's exact key, else the fallback. */
bool dsv_auto_timed(const dsv_call *c, bool backward, dsv_backend want);

#endif
