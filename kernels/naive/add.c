/*
 * Naive elementwise add (residual joins): out = x + x2; backward hands dout to
 * both inputs. x and x2 have the same shape (checked by dsv_op_check).
 */
#ifndef T
#include <string.h>

#include "naive.h"

#define T float
#define SFX f32
#include "add.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "add.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(add_forward)
DSV_NAIVE_DISPATCH(add_backward)

#else

static dsv_status TN(add_forward)(dsv_call *c)
{
    const int64_t n = dsv_tensor_numel(c->x);
    const T *x = c->x->data, *x2 = c->x2->data;
    T *out = c->out->data;
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] + x2[i];
    return DSV_OK;
}

static dsv_status TN(add_backward)(dsv_call *c)
{
    const size_t bytes = sizeof(T) * (size_t)dsv_tensor_numel(c->x);
    /* memmove: a caller may pass dout itself as one of the gradients */
    if (c->dx && c->dx->data != c->dout->data)
        memmove(c->dx->data, c->dout->data, bytes);
    if (c->dx2 && c->dx2->data != c->dout->data)
        memmove(c->dx2->data, c->dout->data, bytes);
    return DSV_OK;
}

#endif
