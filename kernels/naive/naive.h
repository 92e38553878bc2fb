/*
 * Private interface of the naive backend: the kernels table.c lists, and the
 * machinery every op file uses to write its body once for float and double.
 *
 * Each op file includes itself: the first pass (T undefined) instantiates the
 * typed body twice, with T = float / SFX = f32 and T = double / SFX = f64, then
 * defines the exported kernels, which pick the instance by x's dtype. TN(name)
 * gives the typed name of a static function inside the body. Reductions
 * (means, variances, loss sums) accumulate in double for both types.
 */
#ifndef DSV_KERNELS_NAIVE_H
#define DSV_KERNELS_NAIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "dasecv/ops.h"
#include "internal/backend_table.h"
#include "internal/check.h"

#define DSV_NAIVE_CAT2(a, b) a##_##b
#define DSV_NAIVE_CAT(a, b) DSV_NAIVE_CAT2(a, b)
#define TN(name) DSV_NAIVE_CAT(name, SFX)

/* Exported kernel `name` calling fn_f32 or fn_f64 by x's dtype. */
#define DSV_NAIVE_DISPATCH_AS(name, fn)                                        \
    dsv_status name(dsv_call *c)                                               \
    {                                                                          \
        return c->x->dtype == DSV_F64 ? fn##_f64(c) : fn##_f32(c);             \
    }
/* The same, named dsv_naive_<fn>. */
#define DSV_NAIVE_DISPATCH(fn) DSV_NAIVE_DISPATCH_AS(dsv_naive_##fn, fn)

/*
 * sum(a[i] * b[i * sb]) for i < n with four partial sums: a single running
 * sum is one long dependency chain, four let the adds overlap (and b
 * contiguous lets the compiler vectorise). dsv_naive_dot_f32 / _f64.
 */
#define DSV_NAIVE_DEF_DOT(T, SFX)                                              \
    static inline T DSV_NAIVE_CAT(dsv_naive_dot, SFX)(const T *a, const T *b,  \
                                                      int64_t n, int64_t sb)   \
    {                                                                          \
        T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                      \
        int64_t i = 0;                                                         \
        for (; i + 4 <= n; i += 4) {                                           \
            s0 += a[i] * b[i * sb];                                            \
            s1 += a[i + 1] * b[(i + 1) * sb];                                  \
            s2 += a[i + 2] * b[(i + 2) * sb];                                  \
            s3 += a[i + 3] * b[(i + 3) * sb];                                  \
        }                                                                      \
        for (; i < n; i++)                                                     \
            s0 += a[i] * b[i * sb];                                            \
        return (s0 + s1) + (s2 + s3);                                          \
    }
DSV_NAIVE_DEF_DOT(float, f32)
DSV_NAIVE_DEF_DOT(double, f64)

dsv_status dsv_naive_affine_forward(dsv_call *c);
dsv_status dsv_naive_affine_backward(dsv_call *c);
dsv_status dsv_naive_relu_forward(dsv_call *c);
dsv_status dsv_naive_relu_backward(dsv_call *c);
dsv_status dsv_naive_conv_forward(dsv_call *c);
dsv_status dsv_naive_conv_backward(dsv_call *c);
dsv_status dsv_naive_max_pool_forward(dsv_call *c);
dsv_status dsv_naive_max_pool_backward(dsv_call *c);
dsv_status dsv_naive_avg_pool_forward(dsv_call *c);
dsv_status dsv_naive_avg_pool_backward(dsv_call *c);
dsv_status dsv_naive_batchnorm_forward(dsv_call *c);
dsv_status dsv_naive_batchnorm_backward(dsv_call *c);
dsv_status dsv_naive_spatial_batchnorm_forward(dsv_call *c);
dsv_status dsv_naive_spatial_batchnorm_backward(dsv_call *c);
dsv_status dsv_naive_layernorm_forward(dsv_call *c);
dsv_status dsv_naive_layernorm_backward(dsv_call *c);
dsv_status dsv_naive_spatial_groupnorm_forward(dsv_call *c);
dsv_status dsv_naive_spatial_groupnorm_backward(dsv_call *c);
/* Group normalization on x viewed as (N, G, Cg, S), gamma/beta G*Cg
 * elements; forward or backward. Shared by spatial_groupnorm and layernorm. */
dsv_status dsv_naive_groupnorm_run(dsv_call *c, bool backward, int64_t N,
                                   int64_t G, int64_t Cg, int64_t S);
dsv_status dsv_naive_dropout_forward(dsv_call *c);
dsv_status dsv_naive_dropout_backward(dsv_call *c);
dsv_status dsv_naive_add_forward(dsv_call *c);
dsv_status dsv_naive_add_backward(dsv_call *c);
dsv_status dsv_naive_softmax_loss_forward(dsv_call *c);
dsv_status dsv_naive_svm_loss_forward(dsv_call *c);

#endif
