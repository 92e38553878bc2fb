/*
 * Numerical gradients (central differences), as the course's gradient_check.py,
 * and its relative error.
 */
#ifndef DASECV_GRADCHECK_H
#define DASECV_GRADCHECK_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* f(x) -> scalar; x is perturbed in place and restored. */
typedef dsv_status (*dsv_scalar_fn)(void *ctx, double *value);
/* f(x) -> array written into out. */
typedef dsv_status (*dsv_array_fn)(void *ctx, dsv_tensor *out);

/* The course's eval_numerical_gradient: grad[i] = (f(x+h) - f(x-h)) / 2h,
 * perturbing x (float64 or float32) element by element. grad is like x. */
DSV_API dsv_status dsv_numerical_gradient(dsv_scalar_fn f, void *ctx, dsv_tensor *x,
                                  dsv_tensor *grad, double h);
/* eval_numerical_gradient_array: grad[i] = sum((f(x+h) - f(x-h)) * df) / 2h.
 * out is scratch space shaped like f's output; df the upstream gradient. */
DSV_API dsv_status dsv_numerical_gradient_array(dsv_array_fn f, void *ctx,
                                        dsv_tensor *x, const dsv_tensor *df,
                                        dsv_tensor *out, dsv_tensor *grad,
                                        double h);
/* max(|a - b| / max(1e-8, |a| + |b|)) over all elements (shapes must match in
 * element count). */
DSV_API double dsv_rel_error(const dsv_tensor *a, const dsv_tensor *b);

#ifdef __cplusplus
}
#endif
#endif
