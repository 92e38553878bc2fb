/*
 * Max pooling for the fast backend.
 *
 * The winner of each window is its first maximum in row-major order (as the
 * reference). Forward saves that winner's index inside the window (one byte
 * per output) in the node state, tagged with the input pointer, shape and
 * geometry; backward uses it when the tag matches and otherwise finds the
 * winners again from x, so it also works without a prior forward. A caller
 * that changes x in place between forward and backward must run forward
 * again (as with oneDNN's workspace).
 *
 * Windows that tile the input (pool_height == pool_width == stride) take a
 * fast path: each dx element belongs to exactly one window, so dx is written
 * in one pass without zeroing first. Otherwise dx is zeroed and each
 * window's gradient added in output order. Planes (n, c) are split among
 * threads.
 */
#include <string.h>

#include "fast.h"

typedef struct pool_geom {
    int64_t planes, H, W, Ho, Wo;
    int ph, pw, s;
    bool tiles;
} pool_geom;

static pool_geom geom_of(const dsv_call *c)
{
    pool_geom g;
    g.planes = c->x->shape[0] * c->x->shape[1];
    g.H = c->x->shape[2], g.W = c->x->shape[3];
    g.ph = c->p.pool_height, g.pw = c->p.pool_width, g.s = c->p.stride;
    g.Ho = 1 + (g.H - g.ph) / g.s, g.Wo = 1 + (g.W - g.pw) / g.s;
    g.tiles = g.ph == g.s && g.pw == g.s;
    return g;
}

/* Index (kh * pw + kw) of the first maximum of the window at (oh, ow). */
static inline int window_argmax(const pool_geom *g, const float *xp, int64_t oh,
                                int64_t ow, float *maxv)
{
    const float *w0 = xp + oh * g->s * g->W + ow * g->s;
    float best = w0[0];
    int arg = 0;
    for (int kh = 0; kh < g->ph; kh++)
        for (int kw = 0; kw < g->pw; kw++) {
            float v = w0[kh * g->W + kw];
            if (v > best)
                best = v, arg = kh * g->pw + kw;
        }
    *maxv = best;
    return arg;
}

static void forward_plane(const pool_geom *g, const float *xp, float *op,
                          uint8_t *ap)
{
    if (g->ph == 2 && g->pw == 2 && g->s == 2) {
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const float *r0 = xp + 2 * oh * g->W, *r1 = r0 + g->W;
            float *o = op + oh * g->Wo;
            uint8_t *a = ap ? ap + oh * g->Wo : NULL;
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                float v0 = r0[2 * ow], v1 = r0[2 * ow + 1];
                float v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
                float m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
                int i01 = v1 > v0, i23 = 2 + (v3 > v2);
                o[ow] = m23 > m01 ? m23 : m01;
                if (a)
                    a[ow] = (uint8_t)(m23 > m01 ? i23 : i01);
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            float m;
            int arg = window_argmax(g, xp, oh, ow, &m);
            op[oh * g->Wo + ow] = m;
            if (ap)
                ap[oh * g->Wo + ow] = (uint8_t)arg;
        }
}

/* The saved argmax if it belongs to this input and geometry, else NULL. */
static const uint8_t *saved_argmax(dsv_call *c, const pool_geom *g)
{
    if (!c->state || !*c->state || c->state_backend != DSV_BACKEND_FAST)
        return NULL;
    const dsv_fast_state *st = *c->state;
    if (!st->argmax || st->argmax_x != c->x->data ||
        st->argmax_n != (size_t)(g->planes * g->Ho * g->Wo) ||
        memcmp(st->argmax_shape, c->x->shape, sizeof(st->argmax_shape)) != 0 ||
        st->argmax_geom[0] != g->ph || st->argmax_geom[1] != g->pw ||
        st->argmax_geom[2] != g->s)
        return NULL;
    return st->argmax;
}

/* A buffer for the argmax of this forward, or NULL when none is kept. */
static uint8_t *argmax_slot(dsv_call *c, const pool_geom *g)
{
    if (g->ph * g->pw > 256)
        return NULL;
    dsv_status s;
    dsv_fast_state *st = dsv_fast_state_get(c, &s);
    if (!st)
        return NULL; /* no slot (or no memory): backward recomputes */
    size_t n = (size_t)(g->planes * g->Ho * g->Wo);
    if (st->argmax_n != n || !st->argmax) {
        dsv_free(st->argmax);
        st->argmax_n = 0;
        st->argmax_x = NULL;
        st->argmax = dsv_alloc(n);
        if (!st->argmax)
            return NULL;
        st->argmax_n = n;
    }
    /* tag it now: kernels assume the forward below completes */
    st->argmax_x = c->x->data;
    memcpy(st->argmax_shape, c->x->shape, sizeof(st->argmax_shape));
    st->argmax_geom[0] = g->ph, st->argmax_geom[1] = g->pw, st->argmax_geom[2] = g->s;
    return st->argmax;
}

dsv_status dsv_fast_max_pool_forward(dsv_call *c)
{
    pool_geom g = geom_of(c);
    uint8_t *am = argmax_slot(c, &g);
    const float *x = c->x->data;
    float *out = c->out->data;
    int nt = dsv_fast_nthreads(c);
    int64_t in_sz = g.H * g.W, out_sz = g.Ho * g.Wo;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && g.planes > 1)
    for (int64_t p = 0; p < g.planes; p++)
        forward_plane(&g, x + p * in_sz, out + p * out_sz, am ? am + p * out_sz : NULL);
    return DSV_OK;
}

/* Tiling windows: every dx element written once. am may be NULL (recompute). */
static void backward_plane_tiles(const pool_geom *g, const float *xp,
                                 const float *dp, const uint8_t *ap, float *dxp)
{
    int k = g->s;
    if (k == 2 && ap) {
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const uint8_t *a = ap + oh * g->Wo;
            const float *d = dp + oh * g->Wo;
            float *r0 = dxp + 2 * oh * g->W, *r1 = r0 + g->W;
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                float v = d[ow];
                int i = a[ow];
                r0[2 * ow] = i == 0 ? v : 0.0f;
                r0[2 * ow + 1] = i == 1 ? v : 0.0f;
                r1[2 * ow] = i == 2 ? v : 0.0f;
                r1[2 * ow + 1] = i == 3 ? v : 0.0f;
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            float m;
            int arg = ap ? ap[oh * g->Wo + ow] : window_argmax(g, xp, oh, ow, &m);
            float v = dp[oh * g->Wo + ow];
            float *w0 = dxp + oh * k * g->W + ow * k;
            for (int kh = 0; kh < k; kh++)
                for (int kw = 0; kw < k; kw++)
                    w0[kh * g->W + kw] = kh * k + kw == arg ? v : 0.0f;
        }
}

static void backward_plane_general(const pool_geom *g, const float *xp,
                                   const float *dp, const uint8_t *ap, float *dxp)
{
    memset(dxp, 0, sizeof(float) * (size_t)(g->H * g->W));
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            float m;
            int arg = ap ? ap[oh * g->Wo + ow] : window_argmax(g, xp, oh, ow, &m);
            dxp[(oh * g->s + arg / g->pw) * g->W + ow * g->s + arg % g->pw] +=
                dp[oh * g->Wo + ow];
        }
}

dsv_status dsv_fast_max_pool_backward(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    pool_geom g = geom_of(c);
    const uint8_t *am = saved_argmax(c, &g);
    const float *x = c->x->data, *dout = c->dout->data;
    float *dx = c->dx->data;
    int nt = dsv_fast_nthreads(c);
    int64_t in_sz = g.H * g.W, out_sz = g.Ho * g.Wo;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && g.planes > 1)
    for (int64_t p = 0; p < g.planes; p++) {
        const uint8_t *ap = am ? am + p * out_sz : NULL;
        if (g.tiles)
            backward_plane_tiles(&g, x + p * in_sz, dout + p * out_sz, ap, dx + p * in_sz);
        else
            backward_plane_general(&g, x + p * in_sz, dout + p * out_sz, ap,
                                   dx + p * in_sz);
    }
    return DSV_OK;
}
