/*
 * Float64 ReLU for the fast backend: out = x > 0 ? x : 0 and dx = x > 0 ?
 * dout : 0, the same comparison as the reference (a NaN input gives 0).
 * Branch-free loops the compiler vectorises; large tensors are split among
 * threads.
 */
#include <omp.h>

#include "fast.h"

/* below this many elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 15 };

/* y = x > 0 ? g : 0 over [i0, i1); g = x for the forward. */
static void range(const double *x, const double *g, double *y, int64_t i0, int64_t i1)
{
    dsv_fast_relu_backward_tile_f64(x + i0, g + i0, y + i0, i1 - i0);
}

static void relu_run(const dsv_call *c, const double *g, double *y)
{
    int64_t n = dsv_tensor_numel(c->x);
    const double *x = c->x->data;
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && n >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t i0, i1;
            dsv_fast_share(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            range(x, g, y, i0, i1);
        }
    } else {
        range(x, g, y, 0, n);
    }
}

dsv_status dsv_fast_relu_forward_f64(dsv_call *c)
{
    relu_run(c, c->x->data, c->out->data);
    return DSV_OK;
}

dsv_status dsv_fast_relu_backward_f64(dsv_call *c)
{
    if (c->dx)
        relu_run(c, c->dout->data, c->dx->data);
    return DSV_OK;
}
