/*
 * Elementwise add for the fast backend (residual joins): out = x + x2;
 * backward copies dout into dx and dx2 (either may be dout itself).
 */
#include <string.h>

#include "fast.h"

enum { PAR_MIN = 1 << 16 };

dsv_status dsv_fast_add_forward(dsv_call *c)
{
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data, *x2 = c->x2->data;
    float *out = c->out->data;
    int nt = dsv_fast_nthreads(c);
#pragma omp parallel for simd schedule(static) num_threads(nt) if (nt > 1 && n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] + x2[i];
    return DSV_OK;
}

dsv_status dsv_fast_add_backward(dsv_call *c)
{
    size_t bytes = sizeof(float) * (size_t)dsv_tensor_numel(c->x);
    /* memmove: a caller may pass dout itself as one of the gradients */
    if (c->dx && c->dx->data != c->dout->data)
        memmove(c->dx->data, c->dout->data, bytes);
    if (c->dx2 && c->dx2->data != c->dout->data)
        memmove(c->dx2->data, c->dout->data, bytes);
    return DSV_OK;
}
