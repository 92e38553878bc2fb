/*
 * Elementwise add for the fast backend (residual joins): out = x + x2;
 * backward copies dout into dx and dx2 (either may be dout itself).
 */
#include <string.h>

#include <omp.h>

#include "fast.h"

enum { PAR_MIN = 1 << 16 };

static void add_range(const float *x, const float *x2, float *out, int64_t i0,
                      int64_t i1)
{
    for (int64_t i = i0; i < i1; i++)
        out[i] = x[i] + x2[i];
}

dsv_status dsv_fast_add_forward(dsv_call *c)
{
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data, *x2 = c->x2->data;
    float *out = c->out->data;
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && n >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t i0, i1;
            dsv_fast_share(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            add_range(x, x2, out, i0, i1);
        }
    } else {
        add_range(x, x2, out, 0, n);
    }
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
