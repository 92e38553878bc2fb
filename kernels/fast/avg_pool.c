/*
 * Average pooling for the fast backend, float32 and float64 (the table
 * offers float32; the float64 instance is reached through the kernel
 * entries directly and keeps the same code path honest in tests).
 *
 * Planes (n, c) are split among threads; each thread owns whole planes of
 * out and dx, so no two threads write one element. Forward sums each window
 * a row at a time (the inner loop runs along W, which the compiler
 * vectorises for wide windows such as global pooling) and scales by
 * 1 / (pool_height * pool_width). Backward spreads dout / (ph * pw) over
 * each window: windows that do not overlap (stride >= both window sides)
 * write every covered element once, which skips zeroing them; overlapping
 * windows zero the plane and sum.
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

/* Planes [p0, p1) forward. */
static void TN(forward_planes)(const dsv_call *c, const avg_geom *g, int64_t p0,
                               int64_t p1)
{
    const T inv = (T)(1.0 / (double)(g->ph * g->pw));
    const T *x = c->x->data; /* (N, C, H, W) */
    T *out = c->out->data;   /* (N, C, Ho, Wo) */
    for (int64_t p = p0; p < p1; p++) {
        const T *xp = x + p * g->H * g->W;
        T *op = out + p * g->Ho * g->Wo;
        for (int64_t oh = 0; oh < g->Ho; oh++)
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                const T *w0 = xp + oh * g->s * g->W + ow * g->s;
                T sum = 0;
                for (int64_t kh = 0; kh < g->ph; kh++) {
                    const T *row = w0 + kh * g->W;
                    T rs = 0;
                    for (int64_t kw = 0; kw < g->pw; kw++)
                        rs += row[kw];
                    sum += rs;
                }
                op[oh * g->Wo + ow] = sum * inv;
            }
    }
}

/* Planes [p0, p1) backward. */
static void TN(backward_planes)(const dsv_call *c, const avg_geom *g, int64_t p0,
                                int64_t p1)
{
    const T inv = (T)(1.0 / (double)(g->ph * g->pw));
    const T *dout = c->dout->data; /* (N, C, Ho, Wo) */
    T *dx = c->dx->data;           /* (N, C, H, W) */
    /* with disjoint windows, only the elements no window covers need zeros */
    const bool covers = g->disjoint && g->s == g->ph && g->s == g->pw &&
                        g->Ho * g->ph == g->H && g->Wo * g->pw == g->W;
    for (int64_t p = p0; p < p1; p++) {
        const T *gp = dout + p * g->Ho * g->Wo;
        T *dxp = dx + p * g->H * g->W;
        if (!covers)
            memset(dxp, 0, sizeof(T) * (size_t)(g->H * g->W));
        for (int64_t oh = 0; oh < g->Ho; oh++)
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                const T v = gp[oh * g->Wo + ow] * inv;
                T *w0 = dxp + oh * g->s * g->W + ow * g->s;
                for (int64_t kh = 0; kh < g->ph; kh++) {
                    T *row = w0 + kh * g->W;
                    if (g->disjoint)
                        for (int64_t kw = 0; kw < g->pw; kw++)
                            row[kw] = v;
                    else
                        for (int64_t kw = 0; kw < g->pw; kw++)
                            row[kw] += v;
                }
            }
    }
}

#endif
