/*
 * Average pooling for the fast backend, float32 and float64 (one source,
 * instantiated for each; the table routes both dtypes here).
 *
 * Planes (n, c) are split among threads; each thread owns whole planes of
 * out and dx, so no two threads write one element. Both passes work one
 * output row at a time through a row buffer of W values: forward adds the
 * window's ph input rows into it (contiguous loops the compiler
 * vectorises) and then sums pw neighbours per output; backward spreads
 * dout / (ph * pw) along the buffer and adds it to the window's ph rows of
 * dx. Windows that do not overlap (stride >= both window sides) store
 * instead of adding, and when they also cover the input exactly dx is not
 * zeroed first.
 */
#ifndef T
#include <string.h>

#include <omp.h>

#include "fast.h"

typedef struct avg_geom {
    int64_t planes, H, W, Ho, Wo, ph, pw, s;
    bool disjoint; /* no two windows share an element */
} avg_geom;

static avg_geom geom_of(const dsv_call *c)
{
    avg_geom g;
    g.planes = c->x->shape[0] * c->x->shape[1];
    g.H = c->x->shape[2], g.W = c->x->shape[3];
    g.ph = c->p.pool_height, g.pw = c->p.pool_width, g.s = c->p.stride;
    g.Ho = 1 + (g.H - g.ph) / g.s, g.Wo = 1 + (g.W - g.pw) / g.s;
    g.disjoint = g.s >= g.ph && g.s >= g.pw;
    return g;
}

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define TN(name) CAT(name, SFX)

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

/* Runs planes_fn over all planes, split among the call's threads. */
#define RUN_PLANES(c, g, planes_fn)                                            \
    do {                                                                       \
        int nt_ = dsv_fast_nthreads(c);                                        \
        if (nt_ > 1 && (g).planes > 1) {                                       \
            _Pragma("omp parallel num_threads(nt_)")                           \
            {                                                                  \
                int64_t p0_, p1_;                                              \
                dsv_fast_share((g).planes, omp_get_thread_num(),               \
                               omp_get_num_threads(), &p0_, &p1_);             \
                planes_fn(c, &(g), p0_, p1_);                                  \
            }                                                                  \
        } else {                                                               \
            planes_fn(c, &(g), 0, (g).planes);                                 \
        }                                                                      \
    } while (0)

dsv_status dsv_fast_avg_pool_forward(dsv_call *c)
{
    avg_geom g = geom_of(c);
    if (c->x->dtype == DSV_F64)
        RUN_PLANES(c, g, forward_planes_f64);
    else
        RUN_PLANES(c, g, forward_planes_f32);
    return DSV_OK;
}

dsv_status dsv_fast_avg_pool_backward(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    avg_geom g = geom_of(c);
    if (c->x->dtype == DSV_F64)
        RUN_PLANES(c, g, backward_planes_f64);
    else
        RUN_PLANES(c, g, backward_planes_f32);
    return DSV_OK;
}

#else

/* Window sums through a row of column sums: for each output row, col[w] =
 * the sum over the window's rows of x[., w] (contiguous, vectorised), then
 * each output adds pw neighbours of col. col holds W values (NULL: direct
 * sums, when no buffer could be had). */
static void TN(forward_planes)(const dsv_call *c, const avg_geom *g, int64_t p0,
                               int64_t p1)
{
    const int64_t H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, ph = g->ph, pw = g->pw,
                  s = g->s;
    const T inv = (T)(1.0 / (double)(ph * pw));
    const T *x = c->x->data; /* (N, C, H, W) */
    T *out = c->out->data;   /* (N, C, Ho, Wo) */
    T *col = dsv_alloc(sizeof(T) * (size_t)W);
    for (int64_t p = p0; p < p1; p++) {
        const T *xp = x + p * H * W;
        T *op = out + p * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++) {
            const T *r0 = xp + oh * s * W;
            if (!col) {
                for (int64_t ow = 0; ow < Wo; ow++) {
                    T sum = 0;
                    for (int64_t kh = 0; kh < ph; kh++)
                        for (int64_t kw = 0; kw < pw; kw++)
                            sum += r0[kh * W + ow * s + kw];
                    op[oh * Wo + ow] = sum * inv;
                }
                continue;
            }
            memcpy(col, r0, sizeof(T) * (size_t)W);
            for (int64_t kh = 1; kh < ph; kh++)
                for (int64_t w = 0; w < W; w++)
                    col[w] += r0[kh * W + w];
            for (int64_t ow = 0; ow < Wo; ow++) {
                T sum = 0;
                for (int64_t kw = 0; kw < pw; kw++)
                    sum += col[ow * s + kw];
                op[oh * Wo + ow] = sum * inv;
            }
        }
    }
    dsv_free(col);
}

/* The reverse: for each output row, row[w] = the scaled dout of every
 * window covering column w (summed where windows overlap), then row is
 * added to (or, with disjoint windows, stored into) the window's ph rows of
 * dx. row holds W values (NULL: window by window). */
static void TN(backward_planes)(const dsv_call *c, const avg_geom *g, int64_t p0,
                                int64_t p1)
{
    const int64_t H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, ph = g->ph, pw = g->pw,
                  s = g->s;
    const T inv = (T)(1.0 / (double)(ph * pw));
    const T *dout = c->dout->data; /* (N, C, Ho, Wo) */
    T *dx = c->dx->data;           /* (N, C, H, W) */
    /* every element in exactly one window: dx needs no zeroing */
    const bool covers = s == ph && s == pw && Ho * ph == H && Wo * pw == W;
    T *row = dsv_alloc(sizeof(T) * (size_t)W);
    for (int64_t p = p0; p < p1; p++) {
        const T *gp = dout + p * Ho * Wo;
        T *dxp = dx + p * H * W;
        if (!covers)
            memset(dxp, 0, sizeof(T) * (size_t)(H * W));
        for (int64_t oh = 0; oh < Ho; oh++) {
            T *d0 = dxp + oh * s * W;
            if (!row) {
                for (int64_t ow = 0; ow < Wo; ow++) {
                    const T v = gp[oh * Wo + ow] * inv;
                    for (int64_t kh = 0; kh < ph; kh++)
                        for (int64_t kw = 0; kw < pw; kw++)
                            d0[kh * W + ow * s + kw] += v;
                }
                continue;
            }
            memset(row, 0, sizeof(T) * (size_t)W);
            for (int64_t ow = 0; ow < Wo; ow++) {
                const T v = gp[oh * Wo + ow] * inv;
                for (int64_t kw = 0; kw < pw; kw++)
                    row[ow * s + kw] += v;
            }
            for (int64_t kh = 0; kh < ph; kh++) {
                T *d = d0 + kh * W;
                if (g->disjoint)
                    memcpy(d, row, sizeof(T) * (size_t)W);
                else
                    for (int64_t w = 0; w < W; w++)
                        d[w] += row[w];
            }
        }
    }
    dsv_free(row);
}

#endif
