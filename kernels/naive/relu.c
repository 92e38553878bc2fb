/*
 * Naive ReLU: out = max(x, 0); backward passes dout where x > 0 (the course's
 * mask, so x == 0 gets no gradient). Works on any shape, flat.
 */
#ifndef T
#include "naive.h"

#define T float
#define SFX f32
#include "relu.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "relu.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(relu_forward)
DSV_NAIVE_DISPATCH(relu_backward)

#else

static dsv_status TN(relu_forward)(dsv_call *c)
{
    const int64_t n = dsv_tensor_numel(c->x);
    const T *x = c->x->data;
    T *out = c->out->data;
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] > 0 ? x[i] : 0;
    return DSV_OK;
}

static dsv_status TN(relu_backward)(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    const int64_t n = dsv_tensor_numel(c->x);
    const T *x = c->x->data, *dout = c->dout->data;
    T *dx = c->dx->data;
    for (int64_t i = 0; i < n; i++) {
        const T g = dout[i]; /* read unconditionally: a select, not a branch */
        dx[i] = x[i] > 0 ? g : 0;
    }
    return DSV_OK;
}

#endif
