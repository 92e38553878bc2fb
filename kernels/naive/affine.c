/*
 * Naive affine layer: out = x.reshape(N, D) @ w + b, w (D, M), b (M).
 *
 * Inner loops run over M, the contiguous dimension of w, out and dout, so
 * every pass walks memory in order. Backward overwrites dx, dw, db (each
 * optional).
 */
#ifndef T
#include <string.h>

#include "naive.h"

#define T float
#define SFX f32
#include "affine.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "affine.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(affine_forward)
DSV_NAIVE_DISPATCH(affine_backward)

#else

static dsv_status TN(affine_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    const T *x = c->x->data;  /* (N, D) */
    const T *w = c->w->data;  /* (D, M) */
    const T *b = c->b->data;  /* (M) */
    T *out = c->out->data;    /* (N, M) */

    for (int64_t n = 0; n < N; n++) {
        T *o = out + n * M;
        memcpy(o, b, sizeof(T) * (size_t)M);
        for (int64_t d = 0; d < D; d++) {
            const T xv = x[n * D + d];
            const T *wr = w + d * M;
            for (int64_t m = 0; m < M; m++)
                o[m] += xv * wr[m];
        }
    }
    return DSV_OK;
}

static dsv_status TN(affine_backward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    const T *x = c->x->data;       /* (N, D) */
    const T *w = c->w->data;       /* (D, M) */
    const T *dout = c->dout->data; /* (N, M) */

    if (c->dx) {
        T *dx = c->dx->data; /* (N, D) */
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                dx[n * D + d] = TN(dsv_naive_dot)(dout + n * M, w + d * M, M, 1);
    }
    if (c->dw) {
        T *dw = c->dw->data; /* (D, M) */
        memset(dw, 0, sizeof(T) * (size_t)(D * M));
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++) {
                const T xv = x[n * D + d];
                const T *g = dout + n * M;
                T *dr = dw + d * M;
                for (int64_t m = 0; m < M; m++)
                    dr[m] += xv * g[m];
            }
    }
    if (c->db) {
        T *db = c->db->data; /* (M) */
        memset(db, 0, sizeof(T) * (size_t)M);
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                db[m] += dout[n * M + m];
    }
    return DSV_OK;
}

#endif
