/*
 * Naive convolution, the course's conv_forward_naive / conv_backward_naive:
 * x (N, C, H, W), w (F, C, HH, WW), b (F), stride, zero padding `pad` on
 * every side -> out (N, F, H', W'), H' = 1 + (H + 2*pad - HH) / stride.
 *
 * No padded copy is made: for each filter tap (c, kh, kw) the range of output
 * columns whose input column falls inside the image is computed once, so the
 * innermost loop runs over contiguous output (and, for stride 1, input)
 * elements with no bounds test. Backward overwrites dx, dw, db.
 */
#ifndef T
#include <string.h>

#include "naive.h"

/* Output positions o in [0, out_n) whose input o*stride + k - pad lies in
 * [0, in_n): returns the half-open range [*lo, *hi) (empty when lo >= hi). */
static void conv_valid_range(int64_t in_n, int64_t out_n, int64_t k,
                             int64_t stride, int64_t pad, int64_t *lo,
                             int64_t *hi)
{
    int64_t off = k - pad; /* input index of output 0 */
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = in_n - 1 - off < 0 ? 0 : (in_n - 1 - off) / stride + 1;
    *lo = a;
    *hi = b < out_n ? b : out_n;
}

#define T float
#define SFX f32
#include "conv.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "conv.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(conv_forward)
DSV_NAIVE_DISPATCH(conv_backward)

#else

static dsv_status TN(conv_forward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t F = c->w->shape[0], HH = c->w->shape[2], WW = c->w->shape[3];
    const int64_t s = c->p.stride, pad = c->p.pad;
    /* from the parameters: out may be any shape with the right element count */
    const int64_t Ho = 1 + (H + 2 * pad - HH) / s, Wo = 1 + (W + 2 * pad - WW) / s;
    const T *x = c->x->data; /* (N, C, H, W) */
    const T *w = c->w->data; /* (F, C, HH, WW) */
    const T *b = c->b->data; /* (F) */
    T *out = c->out->data;   /* (N, F, Ho, Wo) */

    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) {
            T *o = out + (n * F + f) * Ho * Wo;
            for (int64_t i = 0; i < Ho * Wo; i++)
                o[i] = b[f];
            for (int64_t ch = 0; ch < C; ch++) {
                const T *xp = x + (n * C + ch) * H * W;
                const T *wp = w + (f * C + ch) * HH * WW;
                for (int64_t kh = 0; kh < HH; kh++) {
                    int64_t i0, i1;
                    conv_valid_range(H, Ho, kh, s, pad, &i0, &i1);
                    for (int64_t kw = 0; kw < WW; kw++) {
                        int64_t j0, j1;
                        conv_valid_range(W, Wo, kw, s, pad, &j0, &j1);
                        const T wv = wp[kh * WW + kw];
                        for (int64_t i = i0; i < i1; i++) {
                            /* index arithmetic, not a pointer: off + j*s
                               is in range only for j in [j0, j1) */
                            const int64_t off = (i * s + kh - pad) * W + kw - pad;
                            T *orow = o + i * Wo;
                            for (int64_t j = j0; j < j1; j++)
                                orow[j] += wv * xp[off + j * s];
                        }
                    }
                }
            }
        }
    return DSV_OK;
}

static dsv_status TN(conv_backward)(dsv_call *c)
{
    const int64_t N = c->x->shape[0], C = c->x->shape[1], H = c->x->shape[2],
                  W = c->x->shape[3];
    const int64_t F = c->w->shape[0], HH = c->w->shape[2], WW = c->w->shape[3];
    const int64_t s = c->p.stride, pad = c->p.pad;
    const int64_t Ho = 1 + (H + 2 * pad - HH) / s, Wo = 1 + (W + 2 * pad - WW) / s;
    const T *x = c->x->data;       /* (N, C, H, W) */
    const T *w = c->w->data;       /* (F, C, HH, WW) */
    const T *dout = c->dout->data; /* (N, F, Ho, Wo) */
    T *dx = c->dx ? c->dx->data : NULL; /* (N, C, H, W) */
    T *dw = c->dw ? c->dw->data : NULL; /* (F, C, HH, WW) */

    if (dx)
        memset(dx, 0, sizeof(T) * (size_t)(N * C * H * W));
    if (dw)
        memset(dw, 0, sizeof(T) * (size_t)(F * C * HH * WW));
    if (c->db) {
        T *db = c->db->data; /* (F) */
        for (int64_t f = 0; f < F; f++) {
            T acc = 0;
            for (int64_t n = 0; n < N; n++) {
                const T *g = dout + (n * F + f) * Ho * Wo;
                for (int64_t i = 0; i < Ho * Wo; i++)
                    acc += g[i];
            }
            db[f] = acc;
        }
    }
    if (!dx && !dw)
        return DSV_OK;

    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) {
            const T *g = dout + (n * F + f) * Ho * Wo;
            for (int64_t ch = 0; ch < C; ch++) {
                const T *xp = x + (n * C + ch) * H * W;
                T *dxp = dx ? dx + (n * C + ch) * H * W : NULL;
                const T *wp = w + (f * C + ch) * HH * WW;
                T *dwp = dw ? dw + (f * C + ch) * HH * WW : NULL;
                for (int64_t kh = 0; kh < HH; kh++) {
                    int64_t i0, i1;
                    conv_valid_range(H, Ho, kh, s, pad, &i0, &i1);
                    for (int64_t kw = 0; kw < WW; kw++) {
                        int64_t j0, j1;
                        conv_valid_range(W, Wo, kw, s, pad, &j0, &j1);
                        const T wv = wp[kh * WW + kw];
                        T acc = 0;
                        for (int64_t i = i0; i < i1 && j0 < j1; i++) {
                            /* off + j*s is in range for j in [j0, j1) */
                            const int64_t off = (i * s + kh - pad) * W + kw - pad;
                            const T *grow = g + i * Wo;
                            if (dxp)
                                for (int64_t j = j0; j < j1; j++)
                                    dxp[off + j * s] += wv * grow[j];
                            if (dwp)
                                acc += TN(dsv_naive_dot)(grow + j0, xp + (off + j0 * s),
                                                         j1 - j0, s);
                        }
                        if (dwp)
                            dwp[kh * WW + kw] += acc;
                    }
                }
            }
        }
    return DSV_OK;
}

#endif
