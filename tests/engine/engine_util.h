/*
 * Helpers for the engine tests: a whole-model numerical gradient check (the
 * course's eval_numerical_gradient over every parameter) and small data.
 */
#ifndef DSV_ENGINE_UTIL_H
#define DSV_ENGINE_UTIL_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dasecv/graph.h"
#include "internal/graph_hooks.h"
#include "internal/l2.h"
#include "testutil.h"

/* Largest relative error of any parameter tensor of m (float64) between the
 * analytic gradient of dsv_model_loss and central differences with step h
 * (small enough not to cross relu/max-pool kinks); prints each
 * tensor's error with `tag`. */
static inline double eu_model_gradcheck(dsv_model *m, const dsv_tensor *x,
                                        const dsv_tensor *y, double h, const char *tag)
{
    double loss;
    /* every evaluation at the same step: the same dropout masks */
    uint64_t step = dsv_model_train_steps(m);
    TU_OK(dsv_model_loss(m, x, y, &loss));
    int64_t np = dsv_model_num_params(m);
    double *grad = malloc(sizeof(double) * (size_t)np);
    assert_non_null(grad);
    memcpy(grad, dsv_model_grads(m), sizeof(double) * (size_t)np);
    double worst = 0;
    for (int t = 0; t < dsv_model_num_tensors(m); t++) {
        dsv_tensor p = dsv_model_param(m, t);
        dsv_tensor gt = dsv_model_grad(m, t);
        double *pv = p.data;
        const double *ga = grad + ((double *)gt.data - (double *)dsv_model_grads(m));
        double err = 0;
        for (int64_t i = 0; i < dsv_tensor_numel(&p); i++) {
            double old = pv[i], lp, lm;
            pv[i] = old + h;
            dsv_model_set_train_steps(m, step);
            TU_OK(dsv_model_loss(m, x, y, &lp));
            pv[i] = old - h;
            dsv_model_set_train_steps(m, step);
            TU_OK(dsv_model_loss(m, x, y, &lm));
            pv[i] = old;
            double num = (lp - lm) / (2 * h);
            double den = fabs(num) + fabs(ga[i]);
            double e = fabs(num - ga[i]) / (den > 1e-8 ? den : 1e-8);
            if (e > err)
                err = e;
        }
        printf("  %s %s relative error: %.3e\n", tag, dsv_model_tensor_name(m, t), err);
        if (err > worst)
            worst = err;
    }
    free(grad);
    return worst;
}

/* Images (n, c, h, w) N(0, 1) and labels in [0, classes). */
static inline void eu_data(uint64_t seed, dsv_dtype dt, int64_t n, int c, int h, int w,
                           int classes, dsv_tensor *x, dsv_tensor *y)
{
    tu_rng r = {seed};
    *x = tu_randn(&r, dt, 4, (int64_t[]){n, c, h, w}, 1.0);
    *y = tu_labels(&r, n, classes);
}

/* Plain SGD on the flat blocks. */
static inline void eu_sgd(dsv_model *m, double lr)
{
    int64_t n = dsv_model_num_params(m);
    if (dsv_model_dtype(m) == DSV_F32) {
        float *p = dsv_model_params(m);
        const float *g = dsv_model_grads(m);
        for (int64_t i = 0; i < n; i++)
            p[i] -= (float)lr * g[i];
    } else {
        double *p = dsv_model_params(m);
        const double *g = dsv_model_grads(m);
        for (int64_t i = 0; i < n; i++)
            p[i] -= lr * g[i];
    }
}

#endif
