/*
 * Naive average pooling, the reference: x (N, C, H, W), pool_height x
 * pool_width windows every `stride` (windows may overlap), no padding ->
 * (N, C, H', W'), H' = 1 + (H - pool_height) / stride. Each output is the
 * mean of its window; pool_height = H and pool_width = W is global average
 * pooling (N, C, 1, 1).
 *
 * Backward spreads each dout element evenly, dout / (pool_height *
 * pool_width), over its window; an input inside several windows gets the
 * sum. Window sums accumulate in double for both types.
 */
#ifndef T
#include <string.h>

#include "naive.h"

#define T float
#define SFX f32
#include "avg_pool.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "avg_pool.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(avg_pool_forward)
DSV_NAIVE_DISPATCH(avg_pool_backward)

#else

static dsv_status TN(avg_pool_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t ph = c->p.pool_height, pw = c->p.pool_width, s = c->p.stride;
    const int64_t Ho = 1 + (H - ph) / s, Wo = 1 + (W - pw) / s;
    const double inv = 1.0 / (double)(ph * pw);
    const T *x = c->x->data; /* (N, C, H, W) */
    T *out = c->out->data;   /* (N, C, Ho, Wo) */

    for (int64_t nc = 0; nc < N * C; nc++) {
        const T *xp = x + nc * H * W;
        T *o = out + nc * Ho * Wo;
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++) {
                double sum = 0;
                for (int64_t a = 0; a < ph; a++)
                    for (int64_t b = 0; b < pw; b++)
                        sum += xp[(i * s + a) * W + j * s + b];
                o[i * Wo + j] = (T)(sum * inv);
            }
    }
    return DSV_OK;
}

static dsv_status TN(avg_pool_backward)(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t ph = c->p.pool_height, pw = c->p.pool_width, s = c->p.stride;
    const int64_t Ho = 1 + (H - ph) / s, Wo = 1 + (W - pw) / s;
    const double inv = 1.0 / (double)(ph * pw);
    const T *dout = c->dout->data; /* (N, C, Ho, Wo) */
    T *dx = c->dx->data;           /* (N, C, H, W) */

    memset(dx, 0, sizeof(T) * (size_t)(N * C * H * W));
    for (int64_t nc = 0; nc < N * C; nc++) {
        const T *g = dout + nc * Ho * Wo;
        T *dxp = dx + nc * H * W;
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++) {
                const T v = (T)(g[i * Wo + j] * inv);
                for (int64_t a = 0; a < ph; a++)
                    for (int64_t b = 0; b < pw; b++)
                        dxp[(i * s + a) * W + j * s + b] += v;
            }
    }
    return DSV_OK;
}

#endif
