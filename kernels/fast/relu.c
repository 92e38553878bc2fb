/*
 * ReLU for the fast backend: out = x > 0 ? x : 0 and dx = x > 0 ? dout : 0,
 * the same comparison as the reference (a NaN input gives 0). Branch-free
 * loops the compiler vectorises; large tensors are split among threads.
 */
#include "fast.h"

/* below this many elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 16 };

dsv_status dsv_fast_relu_forward(dsv_call *c)
{
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data;
    float *out = c->out->data;
    int nt = dsv_fast_nthreads(c);
#pragma omp parallel for simd schedule(static) num_threads(nt) if (nt > 1 && n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] > 0 ? x[i] : 0.0f;
    return DSV_OK;
}

dsv_status dsv_fast_relu_backward(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data, *dout = c->dout->data;
    float *dx = c->dx->data;
    int nt = dsv_fast_nthreads(c);
#pragma omp parallel for simd schedule(static) num_threads(nt) if (nt > 1 && n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dx[i] = x[i] > 0 ? dout[i] : 0.0f;
    return DSV_OK;
}
