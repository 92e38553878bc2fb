/*
 * Naive max pooling, the course's max_pool_forward_naive / _backward_naive:
 * x (N, C, H, W), pool_height x pool_width windows every `stride` (windows may
 * overlap), no padding -> (N, C, H', W'), H' = 1 + (H - pool_height) / stride.
 *
 * Backward routes each dout element to its window's argmax: the first maximum
 * in row-major window order, as numpy's argmax, so ties never split the
 * gradient. With overlapping windows an input may win several windows; its
 * gradient is the sum. Backward recomputes the argmax from x.
 */
#ifndef T
#include <string.h>

#include "naive.h"

#define T float
#define SFX f32
#include "max_pool.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "max_pool.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(max_pool_forward)
DSV_NAIVE_DISPATCH(max_pool_backward)

#else

/* Offset in the (H, W) plane of the first maximum of window (i, j). */
static int64_t TN(pool_argmax)(const T *xp, int64_t W, int64_t i, int64_t j,
                               int64_t ph, int64_t pw, int64_t s)
{
    int64_t best = i * s * W + j * s;
    T m = xp[best];
    for (int64_t a = 0; a < ph; a++) {
        const int64_t row = (i * s + a) * W + j * s;
        for (int64_t b = 0; b < pw; b++)
            if (xp[row + b] > m) {
                m = xp[row + b];
                best = row + b;
            }
    }
    return best;
}

static dsv_status TN(max_pool_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t ph = c->p.pool_height, pw = c->p.pool_width, s = c->p.stride;
    const int64_t Ho = 1 + (H - ph) / s, Wo = 1 + (W - pw) / s;
    const T *x = c->x->data; /* (N, C, H, W) */
    T *out = c->out->data;   /* (N, C, Ho, Wo) */

    for (int64_t nc = 0; nc < N * C; nc++) {
        const T *xp = x + nc * H * W;
        T *o = out + nc * Ho * Wo;
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++)
                o[i * Wo + j] = xp[TN(pool_argmax)(xp, W, i, j, ph, pw, s)];
    }
    return DSV_OK;
}

static dsv_status TN(max_pool_backward)(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t ph = c->p.pool_height, pw = c->p.pool_width, s = c->p.stride;
    const int64_t Ho = 1 + (H - ph) / s, Wo = 1 + (W - pw) / s;
    const T *x = c->x->data;       /* (N, C, H, W) */
    const T *dout = c->dout->data; /* (N, C, Ho, Wo) */
    T *dx = c->dx->data;           /* (N, C, H, W) */

    memset(dx, 0, sizeof(T) * (size_t)(N * C * H * W));
    for (int64_t nc = 0; nc < N * C; nc++) {
        const T *xp = x + nc * H * W;
        const T *g = dout + nc * Ho * Wo;
        T *dxp = dx + nc * H * W;
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++)
                dxp[TN(pool_argmax)(xp, W, i, j, ph, pw, s)] += g[i * Wo + j];
    }
    return DSV_OK;
}

#endif
