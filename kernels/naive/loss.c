/*
 * Naive losses, the course's softmax_loss and svm_loss: scores x (N, C),
 * int32 labels y (N) in [0, C) (checked by dsv_op_check).
 *
 * *c->loss is the loss averaged over N; when c->dx is set it receives
 * dscores (N, C), averaged the same way. softmax subtracts each row's
 * maximum before exponentiating, so large scores cannot overflow. svm is the
 * multiclass hinge with margin 1. Sums run in double.
 */
#ifndef T
#include <math.h>

#include "naive.h"

#define T float
#define SFX f32
#include "loss.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "loss.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(softmax_loss_forward)
DSV_NAIVE_DISPATCH(svm_loss_forward)

#else

static dsv_status TN(softmax_loss_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1];
    const T *x = c->x->data;       /* (N, C) */
    const int32_t *y = c->y->data; /* (N) */
    T *dx = c->dx ? c->dx->data : NULL;
    double loss = 0;
    for (int64_t n = 0; n < N; n++) {
        const T *s = x + n * C;
        double mx = s[0];
        for (int64_t k = 1; k < C; k++)
            mx = s[k] > mx ? s[k] : mx;
        double z = 0;
        for (int64_t k = 0; k < C; k++)
            z += exp(s[k] - mx);
        const double logz = log(z);
        loss += logz - (s[y[n]] - mx);
        if (!dx)
            continue;
        for (int64_t k = 0; k < C; k++) {
            const double prob = exp(s[k] - mx - logz);
            dx[n * C + k] = (T)((prob - (k == y[n])) / (double)N);
        }
    }
    *c->loss = loss / (double)N;
    return DSV_OK;
}

static dsv_status TN(svm_loss_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1];
    const T *x = c->x->data;       /* (N, C) */
    const int32_t *y = c->y->data; /* (N) */
    T *dx = c->dx ? c->dx->data : NULL;
    double loss = 0;
    for (int64_t n = 0; n < N; n++) {
        const T *s = x + n * C;
        const double sy = s[y[n]];
        int64_t npos = 0;
        for (int64_t k = 0; k < C; k++) {
            const double margin = k == y[n] ? 0 : s[k] - sy + 1.0;
            if (margin > 0) {
                loss += margin;
                npos++;
            }
            if (dx)
                dx[n * C + k] = (T)(margin > 0 ? 1.0 / (double)N : 0.0);
        }
        if (dx)
            dx[n * C + y[n]] = (T)(-(double)npos / (double)N);
    }
    *c->loss = loss / (double)N;
    return DSV_OK;
}

#endif
