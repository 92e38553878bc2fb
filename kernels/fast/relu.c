/*
 * ReLU for the fast backend: out = x > 0 ? x : 0 and dx = x > 0 ? dout : 0,
 * the same comparison as the reference (a NaN input gives 0). Branch-free
 * loops the compiler vectorises; large tensors are split among threads.
 */
#include <omp.h>

#include "fast.h"

/* below this many elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 16 };

/* y[i] = x[i] > 0 ? v[i] : 0 for i in [i0, i1): forward with v = x,
 * backward with v = dout. */
static void relu_range(const float *x, const float *v, float *y, int64_t i0,
                       int64_t i1)
{
    /* v[i] is loaded unconditionally so the loop is a compare and a blend
       (vectorised); loading it only when x[i] > 0 compiles to a branch per
       element, which mispredicts on every other sign change. */
    for (int64_t i = i0; i < i1; i++) {
        float vi = v[i];
        y[i] = x[i] > 0 ? vi : 0.0f;
    }
}

static void relu_run(const dsv_call *c, const float *v, float *y)
{
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data;
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && n >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t i0, i1;
            dsv_fast_share(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            relu_range(x, v, y, i0, i1);
        }
    } else {
        relu_range(x, v, y, 0, n);
    }
}

dsv_status dsv_fast_relu_forward(dsv_call *c)
{
    relu_run(c, c->x->data, c->out->data);
    return DSV_OK;
}

dsv_status dsv_fast_relu_backward(dsv_call *c)
{
    if (c->dx)
        relu_run(c, c->dout->data, c->dx->data);
    return DSV_OK;
}
