/*
 * Float64 convolution for the fast backend: im2col / col2im around the
 * blocked dgemm, as conv.c does in float32.
 *
 * Per image n, with K = C*HH*WW and P = H'*W':
 *   forward   out_n (F, P)  = [w | b] (F, K+1) * [col_n; 1] (K+1, P)
 *   backward  dw    (F, K) += dout_n (F, P) * col_n^T,  db += row sums
 *             dcol  (K, P)  = w^T * dout_n, then col2im adds it into dx_n
 * Forward builds the column matrix a block of output rows at a time (at most
 * 128 KiB, so it is still in L2 when the product reads it). A 1x1, stride 1,
 * unpadded convolution uses x_n itself as the column matrix.
 *
 * Results do not depend on the thread count. Forward and dx are per image.
 * dw and db are summed per group of images, the groups fixed by the shape
 * alone (GROUPS_MAX at most, fewer when their partial sums would take too
 * much memory), each group's images in order, then the groups in order.
 * Threads take whole groups when there are at least as many groups as
 * threads; otherwise groups run one after another with a threaded dgemm,
 * which is itself independent of the thread count.
 */
#include <string.h>

#include <omp.h>

#include "fast.h"

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
static void im2col_rows(const conv_geom *g, const double *x, int64_t oh0,
                        int64_t oh1, double *col)
{
    int64_t pc = (oh1 - oh0) * g->Wo;
    for (int64_t ch = 0; ch < g->C; ch++)
        for (int64_t kh = 0; kh < g->HH; kh++)
            for (int64_t kw = 0; kw < g->WW; kw++) {
                double *row = col + ((ch * g->HH + kh) * g->WW + kw) * pc;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    double *d = row + (oh - oh0) * g->Wo;
                    int64_t ih = oh * g->stride - g->pad + kh;
                    if (ih < 0 || ih >= g->H) {
                        memset(d, 0, sizeof(double) * (size_t)g->Wo);
                        continue;
                    }
                    /* pointers are formed only for valid columns */
                    const double *xr = x + (ch * g->H + ih) * g->W;
                    int64_t off = kw - g->pad;
                    for (int64_t ow = 0; ow < lo; ow++)
                        d[ow] = 0;
                    if (g->stride == 1) {
                        if (lo < hi)
                            memcpy(d + lo, xr + off + lo, sizeof(double) * (size_t)(hi - lo));
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            d[ow] = xr[off + ow * g->stride];
                    }
                    for (int64_t ow = hi; ow < g->Wo; ow++)
                        d[ow] = 0;
                }
            }
}

/* dx (C, H, W) = the sum of col (K, P) scattered back; dx is overwritten. */
static void col2im(const conv_geom *g, const double *col, double *dx)
{
    memset(dx, 0, sizeof(double) * (size_t)(g->C * g->H * g->W));
    for (int64_t ch = 0; ch < g->C; ch++)
        for (int64_t kh = 0; kh < g->HH; kh++)
            for (int64_t kw = 0; kw < g->WW; kw++) {
                const double *row = col + ((ch * g->HH + kh) * g->WW + kw) * g->P;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                if (lo >= hi)
                    continue;
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    int64_t ih = oh * g->stride - g->pad + kh;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    const double *s = row + oh * g->Wo;
                    double *dr = dx + (ch * g->H + ih) * g->W + kw - g->pad;
                    if (g->stride == 1)
                        for (int64_t ow = lo; ow < hi; ow++)
                            dr[ow] += s[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++)
                            dr[ow * g->stride] += s[ow];
                }
            }
}

/* Output rows per column block in forward: at most COL_BLOCK doubles
 * (128 KiB), at least one row. */
enum { COL_BLOCK = 16384 };
static int64_t fwd_chunk_rows(const conv_geom *g)
{
    int64_t r = COL_BLOCK / ((g->K + 1) * g->Wo);
    return r < 1 ? 1 : r > g->Ho ? g->Ho : r;
}

static size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Images [n0, n1) forward; gemm_nt threads inside each product. Through
 * im2col the bias rides in the product (a last row of ones in col, wb =
 * [w | b]); direct 1x1 convs fill out_n with the bias and accumulate. */
static void forward_images(const conv_geom *g, const dsv_call *c, const double *wb,
                           double *col, int64_t n0, int64_t n1, int gemm_nt, bool relu)
{
    const double *x = c->x->data, *w = c->w->data, *b = c->b->data;
    double *out = c->out->data;
    int64_t rows = fwd_chunk_rows(g);
    for (int64_t n = n0; n < n1; n++) {
        const double *xn = x + n * g->C * g->H * g->W;
        double *on = out + n * g->F * g->P;
        if (g->direct) {
            for (int64_t f = 0; f < g->F; f++)
                for (int64_t i = 0; i < g->P; i++)
                    on[f * g->P + i] = b[f];
            dsv_fast_dgemm(false, false, g->F, g->P, g->K, w, g->K, xn, g->P, 1.0,
                           on, g->P, gemm_nt);
            if (relu)
                dsv_fast_relu_tile_f64(on, g->F * g->P);
            continue;
        }
        for (int64_t oh = 0; oh < g->Ho; oh += rows) {
            int64_t oh1 = oh + rows < g->Ho ? oh + rows : g->Ho;
            int64_t pc = (oh1 - oh) * g->Wo;
            im2col_rows(g, xn, oh, oh1, col);
            for (int64_t i = 0; i < pc; i++)
                col[g->K * pc + i] = 1.0;
            dsv_fast_dgemm(false, false, g->F, pc, g->K + 1, wb, g->K + 1, col, pc,
                           0.0, on + oh * g->Wo, g->P, gemm_nt);
            for (int64_t f = 0; relu && f < g->F; f++)
                dsv_fast_relu_tile_f64(on + f * g->P + oh * g->Wo, pc);
        }
    }
}

static dsv_status forward(dsv_call *c, bool relu)
{
    conv_geom g = geom_of(c);
    int nt = dsv_fast_nthreads(c);
    bool by_image = nt > 1 && g.N >= nt;
    int nbuf = by_image ? nt : 1;
    /* per thread: a column block (K+1, rows*W'); shared: wb (F, K+1) */
    size_t per = g.direct ? 0 : round8((size_t)((g.K + 1) * fwd_chunk_rows(&g) * g.Wo));
    size_t nwb = g.direct ? 0 : (size_t)(g.F * (g.K + 1));
    double *scratch = NULL, *wb = NULL;
    if (!g.direct) {
        scratch = dsv_fast_scratch(c, sizeof(double) * (per * (size_t)nbuf + nwb));
        if (!scratch)
            return dsv_error(DSV_NOMEM, "conv: out of memory for %zu column values",
                             per * (size_t)nbuf + nwb);
        wb = scratch + per * (size_t)nbuf;
        const double *w = c->w->data, *b = c->b->data;
        for (int64_t f = 0; f < g.F; f++) {
            memcpy(wb + f * (g.K + 1), w + f * g.K, sizeof(double) * (size_t)g.K);
            wb[f * (g.K + 1) + g.K] = b[f];
        }
    }
    if (!by_image) {
        forward_images(&g, c, wb, scratch, 0, g.N, nt, relu);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            forward_images(&g, c, wb, scratch ? scratch + per * (size_t)t : NULL,
                           g.N * t / n, g.N * (t + 1) / n, 1, relu);
        }
    }
    if (scratch)
        dsv_fast_scratch_release(c, scratch);
    return DSV_OK;
}

dsv_status dsv_fast_conv_forward_f64(dsv_call *c) { return forward(c, false); }
dsv_status dsv_fast_conv_forward_relu_f64(dsv_call *c) { return forward(c, true); }

/* ---- backward ------------------------------------------------------------ */

/* Image groups of dw/db: at most GROUPS_MAX, and their partial sums at most
 * GROUP_DOUBLES in all. A function of the shape only. */
enum { GROUPS_MAX = 16, GROUP_DOUBLES = 1 << 22 };

static int64_t group_count(const conv_geom *g, bool want_wb)
{
    if (!want_wb)
        return g->N < GROUPS_MAX ? g->N : GROUPS_MAX;
    int64_t per = g->F * g->K + g->F;
    int64_t n = GROUP_DOUBLES / per;
    if (n > GROUPS_MAX)
        n = GROUPS_MAX;
    if (n > g->N)
        n = g->N;
    return n < 1 ? 1 : n;
}

/* Sum of n values in 4 interleaved partial sums (vectorised), fixed order. */
static double sum4(const double *p, int64_t n)
{
    double a[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            a[j] += p[i + j];
    double s = (a[0] + a[1]) + (a[2] + a[3]);
    for (; i < n; i++)
        s += p[i];
    return s;
}

/* Per-thread buffers of the backward pass, and group g's partial sums. */
typedef struct conv_bufs {
    double *col, *dcol;
    double *dw, *db; /* (F, K), (F) of this group, or NULL */
} conv_bufs;

/* Images [n0, n1) backward: dw/db of the group overwritten by the first
 * image, accumulated by the others; dx per image. */
static void backward_images(const conv_geom *g, const dsv_call *c,
                            const conv_bufs *bf, int64_t n0, int64_t n1, int gemm_nt)
{
    const double *x = c->x->data, *w = c->w->data, *dout = c->dout->data;
    for (int64_t n = n0; n < n1; n++) {
        const double *xn = x + n * g->C * g->H * g->W;
        const double *dn = dout + n * g->F * g->P;
        double beta = n > n0 ? 1.0 : 0.0;
        if (bf->dw) {
            const double *cn = xn;
            if (!g->direct) {
                im2col_rows(g, xn, 0, g->Ho, bf->col);
                cn = bf->col;
            }
            dsv_fast_dgemm(false, true, g->F, g->K, g->P, dn, g->P, cn, g->P, beta,
                           bf->dw, g->K, gemm_nt);
        }
        if (bf->db)
            for (int64_t f = 0; f < g->F; f++) {
                double s = sum4(dn + f * g->P, g->P);
                bf->db[f] = n > n0 ? bf->db[f] + s : s;
            }
        if (c->dx) {
            double *dxn = (double *)c->dx->data + n * g->C * g->H * g->W;
            if (g->direct) {
                dsv_fast_dgemm(true, false, g->K, g->P, g->F, w, g->K, dn, g->P, 0.0,
                               dxn, g->P, gemm_nt);
            } else {
                dsv_fast_dgemm(true, false, g->K, g->P, g->F, w, g->K, dn, g->P, 0.0,
                               bf->dcol, g->P, gemm_nt);
                col2im(g, bf->dcol, dxn);
            }
        }
    }
}

/* Groups [g0, g1) backward with one thread's column buffers. */
static void backward_groups(const conv_geom *g, const dsv_call *c, double *col,
                            double *dcol, double *partial, int64_t G, int64_t g0,
                            int64_t g1, int gemm_nt)
{
    size_t per = round8((size_t)(g->F * g->K)) + round8((size_t)g->F);
    for (int64_t gi = g0; gi < g1; gi++) {
        double *pw = partial + per * (size_t)gi;
        conv_bufs bf = {col, dcol, c->dw ? pw : NULL,
                        c->db ? pw + round8((size_t)(g->F * g->K)) : NULL};
        backward_images(g, c, &bf, g->N * gi / G, g->N * (gi + 1) / G, gemm_nt);
    }
}

dsv_status dsv_fast_conv_backward_f64(dsv_call *c)
{
    conv_geom g = geom_of(c);
    int nt = dsv_fast_nthreads(c);
    bool want_wb = c->dw || c->db;
    int64_t G = group_count(&g, want_wb);
    bool by_group = nt > 1 && G >= nt;
    int nbuf = by_group ? nt : 1;
    /* per thread: col and dcol; shared: every group's dw and db partials */
    size_t ncol = g.direct || !c->dw ? 0 : round8((size_t)(g.K * g.P));
    size_t ndcol = g.direct || !c->dx ? 0 : round8((size_t)(g.K * g.P));
    size_t per_t = ncol + ndcol;
    size_t per_g = want_wb ? round8((size_t)(g.F * g.K)) + round8((size_t)g.F) : 0;
    size_t total = per_t * (size_t)nbuf + per_g * (size_t)G;
    double *scratch = dsv_fast_scratch(c, sizeof(double) * total);
    if (!scratch)
        return dsv_error(DSV_NOMEM, "conv: out of memory for %zu scratch values", total);
    double *partial = scratch + per_t * (size_t)nbuf;
    if (!by_group) {
        backward_groups(&g, c, scratch, scratch + ncol, partial, G, 0, G, nt);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            double *base = scratch + per_t * (size_t)t;
            backward_groups(&g, c, base, base + ncol, partial, G, G * t / n,
                            G * (t + 1) / n, 1);
        }
    }
    /* the groups' partial sums, added in group order */
    for (int pass = 0; pass < 2; pass++) {
        dsv_tensor *dst = pass ? c->db : c->dw;
        if (!dst)
            continue;
        size_t cnt = (size_t)(pass ? g.F : g.F * g.K);
        size_t off = pass ? round8((size_t)(g.F * g.K)) : 0;
        double *d = dst->data;
        memcpy(d, partial + off, sizeof(double) * cnt);
        for (int64_t gi = 1; gi < G; gi++) {
            const double *s = partial + per_g * (size_t)gi + off;
            for (size_t i = 0; i < cnt; i++)
                d[i] += s[i];
        }
    }
    dsv_fast_scratch_release(c, scratch);
    return DSV_OK;
}
