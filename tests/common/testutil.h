/*
 * Helpers shared by the tests: seeded random tensors, relative error, paths.
 */
#ifndef DSV_TESTUTIL_H
#define DSV_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "dasecv/dasecv.h"
#include "internal/backend_table.h"

/* Deterministic generator for test data (splitmix64). */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);  /* [0, 1) */
double tu_normal(tu_rng *r);   /* N(0, 1) */

/* A new tensor with N(0,1) * scale values; asserts on failure. */
dsv_tensor tu_randn(tu_rng *r, dsv_dtype dt, int ndim, const int64_t *shape,
                    double scale);
dsv_tensor tu_zeros(dsv_dtype dt, int ndim, const int64_t *shape);
/* Labels in [0, classes), int32 (n). */
dsv_tensor tu_labels(tu_rng *r, int64_t n, int classes);

/* Same as dsv_rel_error, computed here so the checker itself is checked. */
double tu_rel_error(const dsv_tensor *a, const dsv_tensor *b);

/* Path of a fixture file (tests/fixtures/NAME) and of a scratch file under the
 * build directory (created); static buffers, valid until the next call. */
const char *tu_fixture(const char *name);
const char *tu_scratch(const char *name);

/* Asserts that status is DSV_OK, printing dsv_errmsg() otherwise. */
#define TU_OK(expr)                                                            \
    do {                                                                       \
        dsv_status tu_s_ = (expr);                                             \
        if (tu_s_ != DSV_OK)                                                   \
            fail_msg("%s: %s (%s)", #expr, dsv_status_name(tu_s_),             \
                     dsv_errmsg());                                            \
    } while (0)

#endif
