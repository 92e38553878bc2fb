/*
 * Convolution for the fast backend: im2col / col2im around the blocked sgemm.
 *
 * Per image n, with K = C*HH*WW and P = H'*W':
 *   forward   out_n (F, P)  = [w | b] (F, K+1) * [col_n; 1] (K+1, P)
 *   backward  dw    (F, K) += dout_n (F, P) * col_n^T,  db += row sums
 *             dcol  (K, P)  = w^T * dout_n, then col2im adds it into dx_n
 * Forward builds the column matrix a block of output rows at a time (at most
 * 128 KiB, so it is still in L2 when the product reads it); backward one
 * image at a time. Per-thread buffers live in the node state. With at least
 * as many images as threads the images are split statically among threads
 * (each running a one-thread sgemm); otherwise images run one after another
 * with a threaded sgemm. dw/db partial sums are per thread and added in
 * thread order, so results are deterministic for a given thread count. A
 * 1x1, stride 1, unpadded convolution uses x_n itself as the column matrix.
 * The relu forward applies relu to each block of output rows right after its
 * product, while the block is in cache.
 * Most layers go to the direct kernels of conv_direct.c instead; this path
 * remains for the rest (see dsv_fast_conv_direct_ok) and for CPUs without AVX2.
 */
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>

#include "fast.h"

/* d[i] = s[2 * i] for i < n: the stride-2 row copy of im2col. */
static void copy_stride2_c(const float *s, float *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = s[2 * i];
}

#if defined(__x86_64__)
/* The same, 8 at a time; loads stop at s[2 * (n - 1)], the last element
 * the row may read. */
__attribute__((target("avx2"))) static void copy_stride2_avx2(const float *s,
                                                              float *d, int64_t n)
{
    int64_t i = 0;
    for (; i + 9 <= n; i += 8) {
        __m256 p0 = _mm256_loadu_ps(s + 2 * i), p1 = _mm256_loadu_ps(s + 2 * i + 8);
        __m256 e = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
        _mm256_storeu_ps(d + i, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                    _mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
    }
    for (; i < n; i++)
        d[i] = s[2 * i];
}
#endif

/* d[2 * i] += s[i] for i < n: the stride-2 row of col2im. */
static void add_stride2_c(const float *s, float *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[2 * i] += s[i];
}

#if defined(__x86_64__)
/* The same, 8 at a time: s is spread over the even lanes of two vectors
 * (zeros in the odd ones) and added to 16 floats of d. Accesses stop at
 * d[2 * (n - 1)]. */
__attribute__((target("avx2"))) static void add_stride2_avx2(const float *s,
                                                             float *d, int64_t n)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 9 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(s + i);
        __m256 lo = _mm256_unpacklo_ps(v, zero), hi = _mm256_unpackhi_ps(v, zero);
        __m256 a = _mm256_permute2f128_ps(lo, hi, 0x20);
        __m256 b = _mm256_permute2f128_ps(lo, hi, 0x31);
        _mm256_storeu_ps(d + 2 * i, _mm256_add_ps(_mm256_loadu_ps(d + 2 * i), a));
        _mm256_storeu_ps(d + 2 * i + 8, _mm256_add_ps(_mm256_loadu_ps(d + 2 * i + 8), b));
    }
    for (; i < n; i++)
        d[2 * i] += s[i];
}
#endif

static void (*add_stride2(void))(const float *, float *, int64_t)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2"))
        return add_stride2_avx2;
#endif
    return add_stride2_c;
}

typedef void (*copy2_fn)(const float *s, float *d, int64_t n);

static copy2_fn copy_stride2(void)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2"))
        return copy_stride2_avx2;
#endif
    return copy_stride2_c;
}

typedef struct conv_geom {
    int64_t N, C, H, W, F, HH, WW, Ho, Wo, K, P;
    int stride, pad;
    bool direct; /* col_n is x_n */
} conv_geom;

static conv_geom geom_of(const dsv_call *c)
{
    conv_geom g;
    g.N = c->x->shape[0], g.C = c->x->shape[1];
    g.H = c->x->shape[2], g.W = c->x->shape[3];
    g.F = c->w->shape[0], g.HH = c->w->shape[2], g.WW = c->w->shape[3];
    g.stride = c->p.stride, g.pad = c->p.pad;
    g.Ho = 1 + (g.H + 2 * g.pad - g.HH) / g.stride;
    g.Wo = 1 + (g.W + 2 * g.pad - g.WW) / g.stride;
    g.K = g.C * g.HH * g.WW, g.P = g.Ho * g.Wo;
    g.direct = g.HH == 1 && g.WW == 1 && g.stride == 1 && g.pad == 0;
    return g;
}

/* Output columns ow whose input column ow*stride - pad + kw lies in [0, W). */
static void valid_cols(const conv_geom *g, int64_t kw, int64_t *lo, int64_t *hi)
{
    int64_t a = g->pad - kw; /* need ow*stride >= a */
    *lo = a <= 0 ? 0 : (a + g->stride - 1) / g->stride;
    int64_t b = g->W - 1 + g->pad - kw; /* need ow*stride <= b */
    *hi = b < 0 ? 0 : b / g->stride + 1;
    if (*hi > g->Wo)
        *hi = g->Wo;
    if (*lo > *hi)
        *lo = *hi;
}

/* col (K, (oh1 - oh0) * W') from one image x (C, H, W): the columns of
 * output rows [oh0, oh1). */
static void im2col_rows(const conv_geom *g, const float *x, int64_t oh0,
                        int64_t oh1, float *col)
{
    int64_t pc = (oh1 - oh0) * g->Wo;
    copy2_fn copy2 = copy_stride2();
    for (int64_t ch = 0; ch < g->C; ch++)
        for (int64_t kh = 0; kh < g->HH; kh++)
            for (int64_t kw = 0; kw < g->WW; kw++) {
                float *row = col + ((ch * g->HH + kh) * g->WW + kw) * pc;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    float *d = row + (oh - oh0) * g->Wo;
                    int64_t ih = oh * g->stride - g->pad + kh;
                    if (ih < 0 || ih >= g->H) {
                        memset(d, 0, sizeof(float) * (size_t)g->Wo);
                        continue;
                    }
                    /* input column of output column ow: ow * stride + off;
                       pointers are formed only for valid columns */
                    const float *xr = x + (ch * g->H + ih) * g->W;
                    int64_t off = kw - g->pad;
                    for (int64_t ow = 0; ow < lo; ow++)
                        d[ow] = 0;
                    if (lo < hi)
                        switch (g->stride) {
                        case 1:
                            memcpy(d + lo, xr + off + lo, sizeof(float) * (size_t)(hi - lo));
                            break;
                        case 2:
                            copy2(xr + off + 2 * lo, d + lo, hi - lo);
                            break;
                        default:
                            for (int64_t ow = lo; ow < hi; ow++)
                                d[ow] = xr[off + ow * g->stride];
                        }
                    for (int64_t ow = hi; ow < g->Wo; ow++)
                        d[ow] = 0;
                }
            }
}

/* col (K, P) from one image x (C, H, W). */
static void im2col(const conv_geom *g, const float *x, float *col)
{
    im2col_rows(g, x, 0, g->Ho, col);
}

/* dx (C, H, W) = the sum of col (K, P) scattered back; dx is overwritten. */
static void col2im(const conv_geom *g, const float *col, float *dx)
{
    void (*add2)(const float *, float *, int64_t) = add_stride2();
    memset(dx, 0, sizeof(float) * (size_t)(g->C * g->H * g->W));
    for (int64_t ch = 0; ch < g->C; ch++)
        for (int64_t kh = 0; kh < g->HH; kh++)
            for (int64_t kw = 0; kw < g->WW; kw++) {
                const float *row = col + ((ch * g->HH + kh) * g->WW + kw) * g->P;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    int64_t ih = oh * g->stride - g->pad + kh;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    const float *s = row + oh * g->Wo;
                    float *dr = dx + (ch * g->H + ih) * g->W;
                    int64_t off = kw - g->pad;
                    if (lo >= hi)
                        continue;
                    if (g->stride == 1)
                        for (int64_t ow = lo; ow < hi; ow++)
                            dr[off + ow] += s[ow];
                    else if (g->stride == 2)
                        add2(s + lo, dr + off + 2 * lo, hi - lo);
                    else
                        for (int64_t ow = lo; ow < hi; ow++)
                            dr[off + ow * g->stride] += s[ow];
                }
            }
}

/* Output rows per column block in forward: at most COL_BLOCK floats
 * (128 KiB), at least one row. */
enum { COL_BLOCK = 32768 };
static int64_t fwd_chunk_rows(const conv_geom *g)
{
    int64_t r = COL_BLOCK / ((g->K + 1) * g->Wo);
    return r < 1 ? 1 : r > g->Ho ? g->Ho : r;
}

/* Images [n0, n1) forward; gemm_nt threads inside each product.
 * Through im2col, the bias rides in the product: col has a last row of
 * ones and wb = [w | b] is (F, K+1), so out_n is written in one pass.
 * Direct 1x1 convs fill out_n with the bias and accumulate onto it. */
static void forward_images(const conv_geom *g, const float *x, const float *w,
                           const float *wb, const float *b, float *out,
                           float *col, int64_t n0, int64_t n1, int gemm_nt, bool relu)
{
    int64_t rows = fwd_chunk_rows(g);
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = x + n * g->C * g->H * g->W;
        float *on = out + n * g->F * g->P;
        if (!g->direct) {
            /* a block of output rows at a time, so that the column block
               stays in L2 between im2col and the product */
            for (int64_t oh = 0; oh < g->Ho; oh += rows) {
                int64_t oh1 = oh + rows < g->Ho ? oh + rows : g->Ho;
                int64_t pc = (oh1 - oh) * g->Wo;
                im2col_rows(g, xn, oh, oh1, col);
                for (int64_t i = 0; i < pc; i++)
                    col[g->K * pc + i] = 1.0f;
                dsv_fast_sgemm(false, false, g->F, pc, g->K + 1, wb, g->K + 1, col,
                               pc, 0.0f, on + oh * g->Wo, g->P, gemm_nt);
                for (int64_t f = 0; relu && f < g->F; f++)
                    dsv_fast_relu_tile(on + f * g->P + oh * g->Wo, pc);
            }
            continue;
        }
        for (int64_t f = 0; f < g->F; f++)
            for (int64_t i = 0; i < g->P; i++)
                on[f * g->P + i] = b[f];
        dsv_fast_sgemm(false, false, g->F, g->P, g->K, w, g->K, xn, g->P, 1.0f,
                       on, g->P, gemm_nt);
        if (relu)
            dsv_fast_relu_tile(on, g->F * g->P);
    }
}

static dsv_status forward(dsv_call *c, bool relu)
{
    if (dsv_fast_conv_direct_ok(c, false))
        return relu ? dsv_fast_conv_direct_forward_relu(c) : dsv_fast_conv_direct_forward(c);
    conv_geom g = geom_of(c);
    int nt = dsv_fast_nthreads(c);
    bool by_image = nt > 1 && g.N >= nt;
    int nbuf = by_image ? nt : 1;
    /* per thread: a column block (K+1, rows*W'); shared: wb (F, K+1) */
    size_t per = g.direct ? 0
                          : ((size_t)((g.K + 1) * fwd_chunk_rows(&g) * g.Wo) + 15) &
                                ~(size_t)15;
    size_t nwb = g.direct ? 0 : (size_t)(g.F * (g.K + 1));
    float *scratch = NULL, *wb = NULL;
    if (per) {
        scratch = dsv_fast_scratch(c, sizeof(float) * (per * (size_t)nbuf + nwb));
        if (!scratch)
            return dsv_error(DSV_NOMEM, "conv: out of memory for %zu column floats",
                             per * (size_t)nbuf + nwb);
        wb = scratch + per * (size_t)nbuf;
        const float *w = c->w->data, *b = c->b->data;
        for (int64_t f = 0; f < g.F; f++) {
            memcpy(wb + f * (g.K + 1), w + f * g.K, sizeof(float) * (size_t)g.K);
            wb[f * (g.K + 1) + g.K] = b[f];
        }
    }
    const float *x = c->x->data, *w = c->w->data, *b = c->b->data;
    float *out = c->out->data;
    if (!by_image) {
        forward_images(&g, x, w, wb, b, out, scratch, 0, g.N, nt, relu);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            forward_images(&g, x, w, wb, b, out, scratch ? scratch + per * (size_t)t : NULL,
                           g.N * t / n, g.N * (t + 1) / n, 1, relu);
        }
    }
    if (scratch)
        dsv_fast_scratch_release(c, scratch);
    return DSV_OK;
}

dsv_status dsv_fast_conv_forward(dsv_call *c) { return forward(c, false); }

dsv_status dsv_fast_conv_forward_relu(dsv_call *c)
{
    return c->x->dtype == DSV_F64 ? dsv_fast_conv_forward_relu_f64(c) : forward(c, true);
}

dsv_status dsv_fast_conv_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep)
{
    if (c->x->dtype == DSV_F32 && dsv_fast_conv_direct_ok(c, false))
        return dsv_fast_conv_direct_forward_relu_pool(c, pool, keep);
    /* elsewhere one after the other, into relu's output */
    dsv_status s = dsv_fast_conv_forward_relu(c);
    if (s)
        return s;
    return c->x->dtype == DSV_F64 ? dsv_fast_max_pool_forward_f64(pool)
                                  : dsv_fast_max_pool_forward(pool);
}

/* Per-thread buffers of the backward pass. */
typedef struct conv_bufs {
    float *col, *dcol, *dw, *db;
} conv_bufs;

/* Sum of n floats in 8 interleaved partial sums: the compiler vectorises
 * it (a single running sum cannot be reordered), and the order is fixed. */
static float sum8(const float *p, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += p[i + j];
    float s = 0;
    for (; i < n; i++)
        s += p[i];
    for (int j = 0; j < 8; j++)
        s += acc[j];
    return s;
}

/* Images [n0, n1) backward. With first, dw/db are overwritten by the first
 * image; otherwise accumulated. */
static void backward_images(const conv_geom *g, const dsv_call *c,
                            const conv_bufs *bf, int64_t n0, int64_t n1,
                            int gemm_nt)
{
    const float *x = c->x->data, *w = c->w->data, *dout = c->dout->data;
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = x + n * g->C * g->H * g->W;
        const float *dn = dout + n * g->F * g->P;
        float beta = n > n0 ? 1.0f : 0.0f;
        if (bf->dw) {
            const float *cn = xn;
            if (!g->direct) {
                im2col(g, xn, bf->col);
                cn = bf->col;
            }
            dsv_fast_sgemm(false, true, g->F, g->K, g->P, dn, g->P, cn, g->P,
                           beta, bf->dw, g->K, gemm_nt);
        }
        if (bf->db)
            for (int64_t f = 0; f < g->F; f++) {
                float s = sum8(dn + f * g->P, g->P);
                bf->db[f] = beta != 0 ? bf->db[f] + s : s;
            }
        if (c->dx) {
            float *dxn = (float *)c->dx->data + n * g->C * g->H * g->W;
            if (g->direct) {
                dsv_fast_sgemm(true, false, g->K, g->P, g->F, w, g->K, dn, g->P,
                               0.0f, dxn, g->P, gemm_nt);
            } else {
                dsv_fast_sgemm(true, false, g->K, g->P, g->F, w, g->K, dn, g->P,
                               0.0f, bf->dcol, g->P, gemm_nt);
                col2im(g, bf->dcol, dxn);
            }
        }
    }
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

dsv_status dsv_fast_conv_backward(dsv_call *c)
{
    if (dsv_fast_conv_direct_ok(c, true))
        return dsv_fast_conv_direct_backward(c);
    conv_geom g = geom_of(c);
    int nt = dsv_fast_nthreads(c);
    bool by_image = nt > 1 && g.N >= nt;
    int nbuf = by_image ? nt : 1;
    bool want_w = c->dw != NULL, want_b = c->db != NULL;
    /* Per-thread layout: col, dcol, partial dw, partial db; each piece
       rounded to 16 floats so every buffer stays 64-byte aligned. Partials
       exist only when threads split the images. */
    size_t ncol = g.direct || !want_w ? 0 : (size_t)(g.K * g.P);
    size_t ndcol = g.direct || !c->dx ? 0 : (size_t)(g.K * g.P);
    size_t ndw = by_image && want_w ? (size_t)(g.F * g.K) : 0;
    size_t ndb = by_image && want_b ? (size_t)g.F : 0;
    size_t o_dcol = round16(ncol), o_dw = o_dcol + round16(ndcol);
    size_t o_db = o_dw + round16(ndw), per = o_db + round16(ndb);
    float *scratch = NULL;
    if (per) {
        scratch = dsv_fast_scratch(c, sizeof(float) * per * (size_t)nbuf);
        if (!scratch)
            return dsv_error(DSV_NOMEM, "conv: out of memory for %zu scratch floats",
                             per * (size_t)nbuf);
    }
    if (!by_image) {
        conv_bufs bf = {scratch, scratch ? scratch + o_dcol : NULL,
                        want_w ? c->dw->data : NULL, want_b ? c->db->data : NULL};
        backward_images(&g, c, &bf, 0, g.N, nt);
    } else {
        int used = nt;
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            if (t == 0)
                used = n;
            float *base = scratch + per * (size_t)t;
            conv_bufs bf = {base, base + o_dcol, want_w ? base + o_dw : NULL,
                            want_b ? base + o_db : NULL};
            backward_images(&g, c, &bf, g.N * t / n, g.N * (t + 1) / n, 1);
        }
        /* partial sums added in thread order: deterministic */
        for (int pass = 0; pass < 2; pass++) {
            size_t cnt = pass ? ndb : ndw, off = pass ? o_db : o_dw;
            if (!cnt)
                continue;
            float *dst = pass ? c->db->data : c->dw->data;
            memcpy(dst, scratch + off, sizeof(float) * cnt);
            for (int t = 1; t < used; t++) {
                const float *src = scratch + per * (size_t)t + off;
                for (size_t i = 0; i < cnt; i++)
                    dst[i] += src[i];
            }
        }
    }
    if (scratch)
        dsv_fast_scratch_release(c, scratch);
    return DSV_OK;
}
