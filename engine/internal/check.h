/*
 * Internal checks: an invariant assert that stays on in release builds, and
 * checked size arithmetic. Not installed.
 *
 * DSV_ASSERT is for invariants only; user input never reaches it (it is
 * validated and answered with a dsv_status). Sizes that come from user input
 * (shapes, batch sizes) are multiplied with dsv_mul_ok, so an overflow is an
 * error instead of a wrapped, too small allocation.
 */
#ifndef DASECV_INTERNAL_CHECK_H
#define DASECV_INTERNAL_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Internal invariant check, on in every build type; reports file:line. */
#define DSV_ASSERT(x)                                                          \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: DSV_ASSERT(%s) failed\n", __FILE__,        \
                    __LINE__, #x);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* *r = a * b for sizes (a, b >= 0); false when the product does not fit in
 * int64_t (or an operand is negative). */
static inline bool dsv_mul_ok(int64_t a, int64_t b, int64_t *r)
{
    if (a < 0 || b < 0)
        return false;
    return !__builtin_mul_overflow(a, b, r);
}

/* The same for size_t byte counts. */
static inline bool dsv_mul_size_ok(size_t a, size_t b, size_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

#endif
