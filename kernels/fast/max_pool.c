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
 * threads. The common 2x2 stride-2 case has AVX2 versions (8 windows per
 * step, chosen at run time), with the same first-maximum rule.
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


#if defined(__x86_64__)
/* Even and odd elements of the 16 floats p0:p1, in order. */
__attribute__((target("avx2"))) static inline void
deinterleave(__m256 p0, __m256 p1, __m256 *even, __m256 *odd)
{
    __m256 e = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
    __m256 o = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The 8 windows of rows r0, r1 at output columns [ow, ow+8): the compare
 * masks that decide each window's winner (index c ? 2 + c23 : c01). */
__attribute__((target("avx2"))) static inline __m256
window8(const float *r0, const float *r1, int64_t ow, __m256 *c01, __m256 *c23,
        __m256 *c)
{
    __m256 v0, v1, v2, v3;
    deinterleave(_mm256_loadu_ps(r0 + 2 * ow), _mm256_loadu_ps(r0 + 2 * ow + 8), &v0, &v1);
    deinterleave(_mm256_loadu_ps(r1 + 2 * ow), _mm256_loadu_ps(r1 + 2 * ow + 8), &v2, &v3);
    *c01 = _mm256_cmp_ps(v1, v0, _CMP_GT_OQ);
    *c23 = _mm256_cmp_ps(v3, v2, _CMP_GT_OQ);
    __m256 m01 = _mm256_blendv_ps(v0, v1, *c01), m23 = _mm256_blendv_ps(v2, v3, *c23);
    *c = _mm256_cmp_ps(m23, m01, _CMP_GT_OQ);
    return _mm256_blendv_ps(m01, m23, *c);
}

/* 2x2/2 forward of one output row; returns the columns done (a multiple
 * of 8), the caller finishes the rest. */
__attribute__((target("avx2"))) static int64_t
pool2_forward_avx2(const float *r0, const float *r1, float *o, uint8_t *a,
                   int64_t Wo)
{
    const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
                                          -1, -1, -1, -1, -1, -1, -1, -1);
    int64_t ow = 0;
    for (; ow + 8 <= Wo; ow += 8) {
        __m256 c01, c23, c;
        _mm256_storeu_ps(o + ow, window8(r0, r1, ow, &c01, &c23, &c));
        if (!a)
            continue;
        __m256i i01 = _mm256_and_si256(_mm256_castps_si256(c01), one);
        __m256i i23 = _mm256_add_epi32(two, _mm256_and_si256(_mm256_castps_si256(c23), one));
        __m256i idx = _mm256_blendv_epi8(i01, i23, _mm256_castps_si256(c));
        __m256i b = _mm256_shuffle_epi8(idx, pick);
        __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
        _mm_storel_epi64((__m128i *)(a + ow), _mm_unpacklo_epi32(lo, hi));
    }
    return ow;
}

/* Stores the winners' gradients of 8 windows into rows d0, d1. */
__attribute__((target("avx2"))) static inline void
scatter8(float *d0, float *d1, int64_t ow, __m256 g, __m256 k0, __m256 k1,
         __m256 k2, __m256 k3)
{
    __m256 v0 = _mm256_and_ps(g, k0), v1 = _mm256_and_ps(g, k1);
    __m256 v2 = _mm256_and_ps(g, k2), v3 = _mm256_and_ps(g, k3);
    __m256 lo = _mm256_unpacklo_ps(v0, v1), hi = _mm256_unpackhi_ps(v0, v1);
    _mm256_storeu_ps(d0 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(d0 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    lo = _mm256_unpacklo_ps(v2, v3), hi = _mm256_unpackhi_ps(v2, v3);
    _mm256_storeu_ps(d1 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(d1 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* 2x2/2 backward of one output row, from the saved argmax a or (a NULL)
 * from x's rows r0, r1; returns the columns done. */
__attribute__((target("avx2"))) static int64_t
pool2_backward_avx2(const float *r0, const float *r1, const uint8_t *a,
                    const float *g, float *d0, float *d1, int64_t Wo)
{
    int64_t ow = 0;
    for (; ow + 8 <= Wo; ow += 8) {
        __m256 gv = _mm256_loadu_ps(g + ow), k0, k1, k2, k3;
        if (a) {
            __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + ow)));
            k0 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_setzero_si256()));
            k1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_set1_epi32(1)));
            k2 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_set1_epi32(2)));
            k3 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(idx, _mm256_set1_epi32(3)));
        } else {
            __m256 c01, c23, c;
            window8(r0, r1, ow, &c01, &c23, &c);
            k0 = _mm256_andnot_ps(c, _mm256_andnot_ps(c01, _mm256_castsi256_ps(
                                                              _mm256_set1_epi32(-1))));
            k1 = _mm256_andnot_ps(c, c01);
            k2 = _mm256_andnot_ps(c23, c);
            k3 = _mm256_and_ps(c, c23);
        }
        scatter8(d0, d1, ow, gv, k0, k1, k2, k3);
    }
    return ow;
}
#endif

static void forward_plane(const pool_geom *g, const float *xp, float *op,
                          uint8_t *ap)
{
    if (g->ph == 2 && g->pw == 2 && g->s == 2) {
        bool avx2 = dsv_fast_isa_supported(DSV_FAST_ISA_AVX2);
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const float *r0 = xp + 2 * oh * g->W, *r1 = r0 + g->W;
            float *o = op + oh * g->Wo;
            uint8_t *a = ap ? ap + oh * g->Wo : NULL;
            int64_t ow = 0;
#if defined(__x86_64__)
            if (avx2)
                ow = pool2_forward_avx2(r0, r1, o, a, g->Wo);
#else
            (void)avx2;
#endif
            for (; ow < g->Wo; ow++) {
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
    if (!c->state || !c->state->ptr || c->state->owner != DSV_BACKEND_FAST)
        return NULL;
    const dsv_fast_state *st = c->state->ptr;
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

uint8_t *dsv_fast_max_pool_argmax(dsv_call *c, bool keep)
{
    pool_geom g = geom_of(c);
    if (keep)
        return argmax_slot(c, &g);
    if (c->state && c->state->ptr && c->state->owner == DSV_BACKEND_FAST) {
        dsv_fast_state *st = c->state->ptr;
        st->argmax_x = NULL; /* whatever it held no longer matches x */
    }
    return NULL;
}

void dsv_fast_max_pool_planes(const dsv_call *c, const float *x, int64_t p0, int64_t p1,
                              uint8_t *am)
{
    pool_geom g = geom_of(c);
    float *out = c->out->data;
    int64_t in_sz = g.H * g.W, out_sz = g.Ho * g.Wo;
    for (int64_t p = p0; p < p1; p++)
        forward_plane(&g, x + (p - p0) * in_sz, out + p * out_sz,
                      am ? am + p * out_sz : NULL);
}

dsv_status dsv_fast_max_pool_forward(dsv_call *c)
{
    pool_geom g = geom_of(c);
    uint8_t *am = argmax_slot(c, &g);
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && g.planes > 1) {
#pragma omp parallel num_threads(nt)
        {
            int64_t p0, p1;
            dsv_fast_share(g.planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);
            dsv_fast_max_pool_planes(c, (const float *)c->x->data + p0 * g.H * g.W, p0, p1,
                                     am);
        }
    } else {
        dsv_fast_max_pool_planes(c, c->x->data, 0, g.planes, am);
    }
    return DSV_OK;
}

/* Tiling windows: every dx element written once. am may be NULL (recompute). */
static void backward_plane_tiles(const pool_geom *g, const float *xp,
                                 const float *dp, const uint8_t *ap, float *dxp)
{
    int k = g->s;
    bool avx2 = dsv_fast_isa_supported(DSV_FAST_ISA_AVX2);
    if (k == 2 && (ap || avx2)) {
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const uint8_t *a = ap ? ap + oh * g->Wo : NULL;
            const float *d = dp + oh * g->Wo;
            float *r0 = dxp + 2 * oh * g->W, *r1 = r0 + g->W;
            const float *x0 = xp + 2 * oh * g->W, *x1 = x0 + g->W;
            int64_t ow = 0;
#if defined(__x86_64__)
            if (avx2)
                ow = pool2_backward_avx2(x0, x1, a, d, r0, r1, g->Wo);
#else
            (void)avx2, (void)x1;
#endif
            for (; ow < g->Wo; ow++) {
                float v = d[ow], m;
                int i = a ? a[ow] : window_argmax(g, xp, oh, ow, &m);
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

/* Planes [p0, p1) backward; am is the saved argmax or NULL; relu: each
 * plane's dx then masked by x > 0. */
static void backward_planes(const dsv_call *c, const pool_geom *g,
                            const uint8_t *am, int64_t p0, int64_t p1, bool relu)
{
    const float *x = c->x->data, *dout = c->dout->data;
    float *dx = c->dx->data;
    int64_t in_sz = g->H * g->W, out_sz = g->Ho * g->Wo;
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *ap = am ? am + p * out_sz : NULL;
        if (g->tiles)
            backward_plane_tiles(g, x + p * in_sz, dout + p * out_sz, ap, dx + p * in_sz);
        else
            backward_plane_general(g, x + p * in_sz, dout + p * out_sz, ap,
                                   dx + p * in_sz);
        if (relu)
            dsv_fast_relu_backward_tile(x + p * in_sz, dx + p * in_sz, dx + p * in_sz, in_sz);
    }
}

static dsv_status backward(dsv_call *c, bool relu)
{
    if (!c->dx)
        return DSV_OK;
    pool_geom g = geom_of(c);
    const uint8_t *am = saved_argmax(c, &g);
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && g.planes > 1) {
#pragma omp parallel num_threads(nt)
        {
            int64_t p0, p1;
            dsv_fast_share(g.planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);
            backward_planes(c, &g, am, p0, p1, relu);
        }
    } else {
        backward_planes(c, &g, am, 0, g.planes, relu);
    }
    return DSV_OK;
}

dsv_status dsv_fast_max_pool_backward(dsv_call *c) { return backward(c, false); }

dsv_status dsv_fast_max_pool_backward_relu(dsv_call *c)
{
    if (c->x->dtype == DSV_F32)
        return backward(c, true);
    dsv_status s = dsv_fast_max_pool_backward_f64(c);
    if (!s && c->dx)
        dsv_fast_relu_backward_tile_f64(c->x->data, c->dx->data, c->dx->data,
                                        dsv_tensor_numel(c->dx));
    return s;
}
