/*
 * Float64 max pooling for the fast backend.
 *
 * The winner of each window is its first maximum in row-major order (as the
 * reference). Backward finds the winners again from x (a 2x2 window is four
 * compares), so it keeps no state and never depends on a prior forward.
 * Windows that tile the input (pool_height == pool_width == stride) write
 * each dx element once without zeroing first (2x2 ones, 4 windows per step
 * with AVX2 where the CPU has it); otherwise dx is zeroed and
 * each window's gradient added in output order. Planes (n, c) are split
 * among threads, each owning whole planes of out and dx.
 */
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>

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
static inline int window_argmax(const pool_geom *g, const double *xp, int64_t oh,
                                int64_t ow, double *maxv)
{
    const double *w0 = xp + oh * g->s * g->W + ow * g->s;
    double best = w0[0];
    int arg = 0;
    for (int kh = 0; kh < g->ph; kh++)
        for (int kw = 0; kw < g->pw; kw++) {
            double v = w0[kh * g->W + kw];
            if (v > best)
                best = v, arg = kh * g->pw + kw;
        }
    *maxv = best;
    return arg;
}

/* The 2x2 window at column ow of rows r0, r1: its first maximum (returned)
 * and index. Branch-free, so the compiler can vectorise the row loop. */
static inline double window2(const double *r0, const double *r1, int64_t ow, int *arg)
{
    double v0 = r0[2 * ow], v1 = r0[2 * ow + 1];
    double v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
    double m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
    int i01 = v1 > v0, i23 = 2 + (v3 > v2);
    *arg = m23 > m01 ? i23 : i01;
    return m23 > m01 ? m23 : m01;
}

static void forward_plane(const pool_geom *g, const double *xp, double *op)
{
    if (g->ph == 2 && g->pw == 2 && g->s == 2) {
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const double *r0 = xp + 2 * oh * g->W, *r1 = r0 + g->W;
            double *o = op + oh * g->Wo;
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                int a;
                o[ow] = window2(r0, r1, ow, &a);
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++)
            window_argmax(g, xp, oh, ow, &op[oh * g->Wo + ow]);
}

/* v if keep, else +0, through a bit mask: `keep ? v : 0.0` compiled to a
 * branch per element, which mispredicts on random winners. */
static inline double keep_if(double v, bool keep)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    u &= -(uint64_t)keep;
    memcpy(&v, &u, sizeof(v));
    return v;
}

#if defined(__x86_64__)
/* 2x2/2 backward of output columns [0, Wo) of one row, 4 windows per step
 * (the compares and blends of window2, lane by lane); returns the columns
 * done, the caller finishes the rest. */
__attribute__((target("avx2"))) static int64_t
pool2_backward_avx2(const double *x0, const double *x1, const double *d, double *r0,
                    double *r1, int64_t Wo)
{
    int64_t ow = 0;
    for (; ow + 4 <= Wo; ow += 4) {
        __m256d a = _mm256_loadu_pd(x0 + 2 * ow), b = _mm256_loadu_pd(x0 + 2 * ow + 4);
        __m256d v0 = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
        __m256d v1 = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
        a = _mm256_loadu_pd(x1 + 2 * ow), b = _mm256_loadu_pd(x1 + 2 * ow + 4);
        __m256d v2 = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
        __m256d v3 = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
        __m256d c01 = _mm256_cmp_pd(v1, v0, _CMP_GT_OQ);
        __m256d c23 = _mm256_cmp_pd(v3, v2, _CMP_GT_OQ);
        __m256d m01 = _mm256_blendv_pd(v0, v1, c01), m23 = _mm256_blendv_pd(v2, v3, c23);
        __m256d c = _mm256_cmp_pd(m23, m01, _CMP_GT_OQ);
        __m256d g = _mm256_loadu_pd(d + ow);
        __m256d nc = _mm256_andnot_pd(c, g), yc = _mm256_and_pd(c, g);
        __m256d g0 = _mm256_andnot_pd(c01, nc), g1 = _mm256_and_pd(c01, nc);
        __m256d g2 = _mm256_andnot_pd(c23, yc), g3 = _mm256_and_pd(c23, yc);
        __m256d lo = _mm256_unpacklo_pd(g0, g1), hi = _mm256_unpackhi_pd(g0, g1);
        _mm256_storeu_pd(r0 + 2 * ow, _mm256_permute2f128_pd(lo, hi, 0x20));
        _mm256_storeu_pd(r0 + 2 * ow + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
        lo = _mm256_unpacklo_pd(g2, g3), hi = _mm256_unpackhi_pd(g2, g3);
        _mm256_storeu_pd(r1 + 2 * ow, _mm256_permute2f128_pd(lo, hi, 0x20));
        _mm256_storeu_pd(r1 + 2 * ow + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
    }
    return ow;
}
#endif

/* Tiling windows: every dx element written once. */
static void backward_plane_tiles(const pool_geom *g, const double *xp,
                                 const double *dp, double *dxp)
{
    int k = g->s;
    if (k == 2) {
        bool avx2 = dsv_fast_isa_supported(DSV_FAST_ISA_AVX2);
        (void)avx2;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const double *x0 = xp + 2 * oh * g->W, *x1 = x0 + g->W;
            const double *d = dp + oh * g->Wo;
            double *r0 = dxp + 2 * oh * g->W, *r1 = r0 + g->W;
            int64_t ow = 0;
#if defined(__x86_64__)
            if (avx2)
                ow = pool2_backward_avx2(x0, x1, d, r0, r1, g->Wo);
#endif
            for (; ow < g->Wo; ow++) {
                int i;
                window2(x0, x1, ow, &i);
                double v = d[ow];
                r0[2 * ow] = keep_if(v, i == 0);
                r0[2 * ow + 1] = keep_if(v, i == 1);
                r1[2 * ow] = keep_if(v, i == 2);
                r1[2 * ow + 1] = keep_if(v, i == 3);
            }
        }
    } else {
        for (int64_t oh = 0; oh < g->Ho; oh++)
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                double m;
                int arg = window_argmax(g, xp, oh, ow, &m);
                double v = dp[oh * g->Wo + ow];
                double *w0 = dxp + oh * k * g->W + ow * k;
                for (int kh = 0; kh < k; kh++)
                    for (int kw = 0; kw < k; kw++)
                        w0[kh * g->W + kw] = kh * k + kw == arg ? v : 0.0;
            }
    }
    /* rows and columns past the last window get no gradient */
    for (int64_t h = 0; h < g->H; h++) {
        int64_t w0 = h < g->Ho * k ? g->Wo * k : 0;
        if (w0 < g->W)
            memset(dxp + h * g->W + w0, 0, sizeof(double) * (size_t)(g->W - w0));
    }
}

static void backward_plane_general(const pool_geom *g, const double *xp,
                                   const double *dp, double *dxp)
{
    memset(dxp, 0, sizeof(double) * (size_t)(g->H * g->W));
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            double m;
            int arg = window_argmax(g, xp, oh, ow, &m);
            dxp[(oh * g->s + arg / g->pw) * g->W + ow * g->s + arg % g->pw] +=
                dp[oh * g->Wo + ow];
        }
}

/* Planes [p0, p1), forward or backward. */
static void run_planes(const dsv_call *c, const pool_geom *g, bool backward,
                       int64_t p0, int64_t p1)
{
    const double *x = c->x->data;
    int64_t in_sz = g->H * g->W, out_sz = g->Ho * g->Wo;
    for (int64_t p = p0; p < p1; p++) {
        const double *xp = x + p * in_sz;
        if (!backward) {
            forward_plane(g, xp, (double *)c->out->data + p * out_sz);
            continue;
        }
        const double *dp = (const double *)c->dout->data + p * out_sz;
        double *dxp = (double *)c->dx->data + p * in_sz;
        if (g->tiles)
            backward_plane_tiles(g, xp, dp, dxp);
        else
            backward_plane_general(g, xp, dp, dxp);
    }
}

/* below this many input elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 14 };

static void run_all(const dsv_call *c, bool backward)
{
    pool_geom g = geom_of(c);
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && g.planes > 1 && g.planes * g.H * g.W >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t p0, p1;
            dsv_fast_share(g.planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);
            run_planes(c, &g, backward, p0, p1);
        }
    } else {
        run_planes(c, &g, backward, 0, g.planes);
    }
}

dsv_status dsv_fast_max_pool_forward_f64(dsv_call *c)
{
    run_all(c, false);
    return DSV_OK;
}

dsv_status dsv_fast_max_pool_backward_f64(dsv_call *c)
{
    if (c->dx)
        run_all(c, true);
    return DSV_OK;
}
