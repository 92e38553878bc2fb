/*
 * Numerical gradients by central differences and the course's relative error
 * (gradient_check.py: eval_numerical_gradient, eval_numerical_gradient_array,
 * rel_error).
 *
 * x is perturbed in place, one element at a time, and always restored, also
 * when f fails. For float32 x the perturbed value is rounded to float32, as in
 * the course with float32 arrays. The array version keeps f(x + h) in a copy
 * so that, as in the course, the difference is taken element by element
 * before it is weighted with df.
 */
#include <math.h>

#include "dasecv/gradcheck.h"

static dsv_status check_like(const dsv_tensor *a, const char *an,
                             const dsv_tensor *b, const char *bn)
{
    if (!a || !a->data || !b || !b->data)
        return dsv_error(DSV_INVALID, "gradcheck: missing %s or %s", an, bn);
    if (!dsv_dtype_is_float(a->dtype) || !dsv_dtype_is_float(b->dtype))
        return dsv_error(DSV_INVALID, "gradcheck: %s and %s must be float tensors", an, bn);
    if (dsv_tensor_numel(a) != dsv_tensor_numel(b))
        return dsv_error(DSV_INVALID, "gradcheck: %s has %lld elements but %s has %lld",
                         an, (long long)dsv_tensor_numel(a), bn,
                         (long long)dsv_tensor_numel(b));
    return DSV_OK;
}

static dsv_status check_h(double h)
{
    if (!(h > 0) || !isfinite(h))
        return dsv_error(DSV_INVALID, "gradcheck: step h must be positive, got %g", h);
    return DSV_OK;
}

dsv_status dsv_numerical_gradient(dsv_scalar_fn f, void *ctx, dsv_tensor *x,
                                  dsv_tensor *grad, double h)
{
    dsv_status s;
    if ((s = check_like(x, "x", grad, "grad")) || (s = check_h(h)))
        return s;
    for (int64_t i = 0; i < dsv_tensor_numel(x); i++) {
        const double old = dsv_tensor_get(x, i);
        double fp, fm;
        dsv_tensor_set(x, i, old + h);
        s = f(ctx, &fp);
        if (!s) {
            dsv_tensor_set(x, i, old - h);
            s = f(ctx, &fm);
        }
        dsv_tensor_set(x, i, old);
        if (s)
            return s;
        dsv_tensor_set(grad, i, (fp - fm) / (2 * h));
    }
    return DSV_OK;
}

dsv_status dsv_numerical_gradient_array(dsv_array_fn f, void *ctx,
                                        dsv_tensor *x, const dsv_tensor *df,
                                        dsv_tensor *out, dsv_tensor *grad,
                                        double h)
{
    dsv_status s;
    if ((s = check_like(x, "x", grad, "grad")) || (s = check_like(out, "out", df, "df")) ||
        (s = check_h(h)))
        return s;
    dsv_tensor pos;
    if ((s = dsv_tensor_init_like(&pos, out)))
        return s;
    const int64_t m = dsv_tensor_numel(out);
    for (int64_t i = 0; i < dsv_tensor_numel(x); i++) {
        const double old = dsv_tensor_get(x, i);
        dsv_tensor_set(x, i, old + h);
        s = f(ctx, out);
        if (!s && !(s = dsv_tensor_copy(&pos, out))) {
            dsv_tensor_set(x, i, old - h);
            s = f(ctx, out);
        }
        dsv_tensor_set(x, i, old);
        if (s)
            goto free_pos;
        double acc = 0;
        for (int64_t k = 0; k < m; k++)
            acc += (dsv_tensor_get(&pos, k) - dsv_tensor_get(out, k)) *
                   dsv_tensor_get(df, k);
        dsv_tensor_set(grad, i, acc / (2 * h));
    }
free_pos:
    dsv_tensor_free(&pos);
    return s;
}

double dsv_rel_error(const dsv_tensor *a, const dsv_tensor *b)
{
    int64_t n = dsv_tensor_numel(a);
    if (n != dsv_tensor_numel(b))
        return INFINITY; /* nothing sensible to compare: the worst error */
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = dsv_tensor_get(a, i), y = dsv_tensor_get(b, i);
        const double d = fabs(x - y) / fmax(1e-8, fabs(x) + fabs(y));
        if (!(d <= worst)) /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}
