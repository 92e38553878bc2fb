/*
 * Batch normalization for the fast backend: batchnorm on x (N, D) and
 * spatial_batchnorm on x (N, C, H, W), both on x viewed as (N, C, S).
 *
 * Same semantics as the naive kernels: train mode normalises with the batch
 * mean and biased variance and updates the running statistics; test mode
 * uses the running ones; backward recomputes the statistics from x. The
 * statistics come from one pass over x around a per-channel pivot
 * (bn_sums): with AVX2, runs of up to 1024 floats are summed in float and
 * the runs in double; otherwise everything is summed in double over eight
 * interleaved partial sums. The backward's pass reads dout alongside, so it
 * reads x and dout twice in all, as a backward that kept its forward's
 * statistics would. Channel ranges are split among threads, and every
 * channel's sum runs over n in order, so results do not depend on the
 * split. The elementwise passes work in float and vectorise. One pass
 * for the statistics (and one more in backward) replaced three (four), which
 * made both directions about 2.5 times faster (bench/RESULTS.md, "Kernel
 * notes").
 *
 * On (N, D) each channel is one float per row, so both passes run along
 * the rows, across channels, not one short pass per (row, channel) pair.
 *
 * Data-parallel training sums the statistics over processes
 * (dsv_fast_bn_forward_summed, pass_stats): the same passes, two of them
 * where the pivot would differ between processes.
 */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "fast.h"
#include "internal/dist.h"

typedef struct bn_view {
    int64_t N, C, S;
    int nt;
} bn_view;

static bn_view view_of(const dsv_call *c)
{
    bn_view v = {c->x->shape[0], c->x->shape[1],
                 c->x->ndim == 4 ? c->x->shape[2] * c->x->shape[3] : 1,
                 dsv_fast_nthreads(c)};
    /* small tensors: a parallel region costs more than the work */
    if (v.N * v.C * v.S < (1 << 15) || v.C < 2)
        v.nt = 1;
    return v;
}

/* Per-channel sums of one pass over x and, when given, dout d, in double,
 * with t = x - K[ch] (K, the pivot: the channel's first element in train
 * mode, its running mean in test mode; it keeps the squares from
 * cancelling when a channel's mean is large against its spread):
 * A = sum t, B = sum t*t, D = sum d, E = sum d*t. */
typedef struct bn_sums {
    double A, B, D, E;
} bn_sums;

/* Adds the sums over x[0, n) (and d[0, n)) with pivot k to *q: eight
 * interleaved partial sums each, so that they vectorise, where one running
 * sum would wait on every add. The order is fixed, so the result is too. */
static void segment_sums(const float *x, const float *d, double k, int64_t n,
                         bn_sums *q)
{
    double a[8] = {0}, b[8] = {0}, dd[8] = {0}, e[8] = {0};
    int64_t i = 0;
    if (d) {
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) {
                double t = (double)x[i + j] - k, g = d[i + j];
                a[j] += t;
                b[j] += t * t;
                dd[j] += g;
                e[j] += g * t;
            }
    } else {
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) {
                double t = (double)x[i + j] - k;
                a[j] += t;
                b[j] += t * t;
            }
    }
    for (; i < n; i++) {
        double t = (double)x[i] - k;
        a[0] += t;
        b[0] += t * t;
        if (d) {
            dd[0] += d[i];
            e[0] += d[i] * t;
        }
    }
#define LANES8(v) (((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])))
    q->A += LANES8(a);
    q->B += LANES8(b);
    q->D += LANES8(dd);
    q->E += LANES8(e);
#undef LANES8
}

#if defined(__x86_64__)
#include <immintrin.h>

/* segment_sums with AVX2: runs of up to 1024 floats summed in float, over
 * two interleaved 8-lane vectors per sum (t is centred on the pivot, so its
 * squares do not cancel; 64 adds per lane at most), each run's sums then
 * added in double. About a third of the double loop's work per element.
 * The pivot is a float value (an element of x or a running mean). */
__attribute__((target("avx2,fma"))) static void
segment_sums_avx2(const float *x, const float *d, double k, int64_t n, bn_sums *q)
{
    __m256 kv = _mm256_set1_ps((float)k);
    int64_t i = 0;
    while (i + 16 <= n) {
        int64_t end = i + 1024 < n ? i + 1024 : n;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, d0 = a0, d1 = a0;
        __m256 e0 = a0, e1 = a0;
        for (; i + 16 <= end; i += 16) {
            __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), kv);
            __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), kv);
            a0 = _mm256_add_ps(a0, t0), a1 = _mm256_add_ps(a1, t1);
            b0 = _mm256_fmadd_ps(t0, t0, b0), b1 = _mm256_fmadd_ps(t1, t1, b1);
            if (d) {
                __m256 g0 = _mm256_loadu_ps(d + i), g1 = _mm256_loadu_ps(d + i + 8);
                d0 = _mm256_add_ps(d0, g0), d1 = _mm256_add_ps(d1, g1);
                e0 = _mm256_fmadd_ps(g0, t0, e0), e1 = _mm256_fmadd_ps(g1, t1, e1);
            }
        }
        float va[8], vb[8], vd[8], ve[8];
        _mm256_storeu_ps(va, _mm256_add_ps(a0, a1));
        _mm256_storeu_ps(vb, _mm256_add_ps(b0, b1));
        _mm256_storeu_ps(vd, _mm256_add_ps(d0, d1));
        _mm256_storeu_ps(ve, _mm256_add_ps(e0, e1));
        for (int j = 0; j < 8; j++)
            q->A += va[j], q->B += vb[j], q->D += vd[j], q->E += ve[j];
    }
    for (; i < n; i++) {
        double t = (double)x[i] - k;
        q->A += t;
        q->B += t * t;
        if (d) {
            q->D += d[i];
            q->E += d[i] * t;
        }
    }
}
#else
static void segment_sums_avx2(const float *x, const float *d, double k, int64_t n,
                              bn_sums *q)
{
    segment_sums(x, d, k, n, q);
}
#endif

/* Channels [c0, c1) of channel_sums. */
static void channel_sums_range(const bn_view *v, const float *x, const float *d,
                               const double *K, bn_sums *q, int64_t c0, int64_t c1)
{
    if (v->S == 1) {
        /* (N, D): rows of channels, summed row by row into contiguous
           arrays for a block of channels at a time (they vectorise across
           channels; each channel's sums still run over n in order) */
        enum { CB = 64 };
        double a[CB], b[CB], dd[CB], e[CB], k[CB];
        for (int64_t cb = c0; cb < c1; cb += CB) {
            int64_t nc = c1 - cb < CB ? c1 - cb : CB;
            for (int64_t j = 0; j < nc; j++)
                a[j] = b[j] = dd[j] = e[j] = 0, k[j] = K[cb + j];
            for (int64_t n = 0; n < v->N; n++) {
                const float *xr = x + n * v->C + cb;
                if (d) {
                    const float *dr = d + n * v->C + cb;
                    for (int64_t j = 0; j < nc; j++) {
                        double t = (double)xr[j] - k[j], g = dr[j];
                        a[j] += t, b[j] += t * t, dd[j] += g, e[j] += g * t;
                    }
                } else {
                    for (int64_t j = 0; j < nc; j++) {
                        double t = (double)xr[j] - k[j];
                        a[j] += t, b[j] += t * t;
                    }
                }
            }
            for (int64_t j = 0; j < nc; j++)
                q[cb + j].A = a[j], q[cb + j].B = b[j], q[cb + j].D = dd[j], q[cb + j].E = e[j];
        }
        return;
    }
    memset(q + c0, 0, sizeof(*q) * (size_t)(c1 - c0));
    bool simd = v->S >= 16 && dsv_fast_isa_supported(DSV_FAST_ISA_AVX2);
    for (int64_t n = 0; n < v->N; n++)
        for (int64_t ch = c0; ch < c1; ch++) {
            int64_t o = (n * v->C + ch) * v->S;
            if (simd)
                segment_sums_avx2(x + o, d ? d + o : NULL, K[ch], v->S, &q[ch]);
            else
                segment_sums(x + o, d ? d + o : NULL, K[ch], v->S, &q[ch]);
        }
}

/* q[ch]: the sums of one pass over x (and d) for every channel, with the
 * pivots K. */
static void channel_sums(const bn_view *v, const float *x, const float *d,
                         const double *K, bn_sums *q)
{
    if (v->nt > 1) {
#pragma omp parallel num_threads(v->nt)
        {
            int64_t c0, c1;
            dsv_fast_share(v->C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            channel_sums_range(v, x, d, K, q, c0, c1);
        }
    } else {
        channel_sums_range(v, x, d, K, q, 0, v->C);
    }
}

/* mean, var and inv = 1 / sqrt(var + eps) per channel, and with dout d the
 * sums q of one pass over x and d with pivots K (both filled here; the
 * backward's sum of d * (x - mean) is then E - (mean - K) * D). Train mode:
 * from the batch, pivots the channels' first elements; test mode: the
 * running statistics, pivots the running means (only read with d). */
static void stats(const dsv_call *c, const bn_view *v, const float *d, double *K,
                  bn_sums *q, double *mean, double *var, double *inv)
{
    const float *x = c->x->data;
    if (c->p.train) {
        double m = (double)(v->N * v->S);
        for (int64_t ch = 0; ch < v->C; ch++)
            K[ch] = x[ch * v->S];
        channel_sums(v, x, d, K, q);
        for (int64_t ch = 0; ch < v->C; ch++) {
            double a = q[ch].A / m, vv = q[ch].B / m - a * a;
            mean[ch] = K[ch] + a;
            var[ch] = vv > 0 ? vv : 0;
        }
    } else {
        const float *rm = c->running_mean->data, *rv = c->running_var->data;
        for (int64_t ch = 0; ch < v->C; ch++)
            K[ch] = mean[ch] = rm[ch], var[ch] = rv[ch];
        if (d)
            channel_sums(v, x, d, K, q);
    }
    for (int64_t ch = 0; ch < v->C; ch++)
        inv[ch] = 1.0 / sqrt(var[ch] + c->p.eps);
}

/* stats() of a pass, with *m the rows the statistics cover and, with dout
 * d, Dl and El this process's D and E (its parameter gradients). Without
 * sum, or in test mode, that is stats() on this process's rows. With sum
 * (data-parallel training, engine/internal/dist.h) every per-channel sum is
 * added over processes through it, and q gets the global sums. The
 * processes' first elements differ, so the one-pass pivot cannot be shared:
 * a first pass sums x (pivot 0) for the global mean, and a second runs
 * around that mean, rounded to a float that every process holds alike, for
 * the variance and the sums of d and d * (x - pivot). Two sums over
 * processes: C + 1 values, then 2C (4C with d), buf having room for
 * 2C + 1 (4C + 1 with d). */
static dsv_status pass_stats(const dsv_call *c, const bn_view *v, const float *d,
                             dsv_sum_fn sum, void *user, double *K, bn_sums *q,
                             double *buf, double *mean, double *var, double *inv,
                             double *m_out, double *Dl, double *El)
{
    const float *x = c->x->data;
    int64_t C = v->C;
    dsv_status st;
    if (!sum || !c->p.train) {
        stats(c, v, d, K, q, mean, var, inv);
        *m_out = (double)(v->N * v->S);
        for (int64_t ch = 0; d && ch < C; ch++)
            Dl[ch] = q[ch].D, El[ch] = q[ch].E;
        return DSV_OK;
    }
    for (int64_t ch = 0; ch < C; ch++)
        K[ch] = 0;
    channel_sums(v, x, NULL, K, q);
    for (int64_t ch = 0; ch < C; ch++)
        buf[ch] = q[ch].A;
    buf[C] = (double)(v->N * v->S);
    if ((st = sum(user, buf, C + 1)))
        return st;
    double m = buf[C];
    for (int64_t ch = 0; ch < C; ch++)
        K[ch] = (float)(buf[ch] / m);
    channel_sums(v, x, d, K, q);
    for (int64_t ch = 0; ch < C; ch++) {
        buf[ch] = q[ch].A, buf[C + ch] = q[ch].B;
        if (d)
            buf[2 * C + ch] = Dl[ch] = q[ch].D, buf[3 * C + ch] = El[ch] = q[ch].E;
    }
    if ((st = sum(user, buf, (d ? 4 : 2) * C)))
        return st;
    for (int64_t ch = 0; ch < C; ch++) {
        double a = buf[ch] / m, vv = buf[C + ch] / m - a * a;
        mean[ch] = K[ch] + a;
        var[ch] = vv > 0 ? vv : 0;
        inv[ch] = 1.0 / sqrt(var[ch] + c->p.eps);
        if (d)
            q[ch].D = buf[2 * C + ch], q[ch].E = buf[3 * C + ch];
    }
    *m_out = m;
    return DSV_OK;
}

/* y = k[ch] * a + z[ch] * (u - mean[ch]) + sh[ch] over (n, ch) blocks
 * [b0, b1); a may be NULL. The mean comes as two floats, mu + ml (the
 * double mean's float and what that float misses); u - mu is exact for u
 * near the mean, so centring before scaling keeps the outputs close to the
 * naive kernel's double arithmetic even when a channel's mean is large
 * against its spread. */
static void affine_range(const bn_view *v, const float *a, const float *u,
                         const float *k, const float *z, const float *mu,
                         const float *ml, const float *sh, float *y, int64_t b0,
                         int64_t b1)
{
    if (v->S == 1) {
        /* (N, D): the same, along each row's channels from block b0 on */
        for (int64_t nb = b0; nb < b1;) {
            int64_t ch0 = nb % v->C, n = (b1 - nb) < (v->C - ch0) ? b1 - nb : v->C - ch0;
            const float *ar = a ? a + nb - ch0 : NULL, *ur = u + nb - ch0;
            float *yr = y + nb - ch0;
            if (ar)
                for (int64_t ch = ch0; ch < ch0 + n; ch++)
                    yr[ch] = k[ch] * ar[ch] + z[ch] * ((ur[ch] - mu[ch]) - ml[ch]) + sh[ch];
            else
                for (int64_t ch = ch0; ch < ch0 + n; ch++)
                    yr[ch] = z[ch] * ((ur[ch] - mu[ch]) - ml[ch]) + sh[ch];
            nb += n;
        }
        return;
    }
    for (int64_t nb = b0; nb < b1; nb++) {
        int64_t ch = nb % v->C, o = nb * v->S;
        float kk = k[ch], zz = z[ch], mm = mu[ch], ll = ml[ch], ss = sh[ch];
        if (a)
            for (int64_t i = 0; i < v->S; i++)
                y[o + i] = kk * a[o + i] + zz * ((u[o + i] - mm) - ll) + ss;
        else
            for (int64_t i = 0; i < v->S; i++)
                y[o + i] = zz * ((u[o + i] - mm) - ll) + ss;
    }
}

static void affine_pass(const bn_view *v, const float *a, const float *u,
                        const float *k, const float *z, const float *mu,
                        const float *ml, const float *sh, float *y)
{
    int64_t blocks = v->N * v->C;
    if (v->nt > 1) {
#pragma omp parallel num_threads(v->nt)
        {
            int64_t b0, b1;
            dsv_fast_share(blocks, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1);
            affine_range(v, a, u, k, z, mu, ml, sh, y, b0, b1);
        }
    } else {
        affine_range(v, a, u, k, z, mu, ml, sh, y, 0, blocks);
    }
}

/* sum: NULL, or the sum over processes of a synchronized training pass */
static dsv_status forward(dsv_call *c, dsv_sum_fn sum, void *user)
{
    bn_view v = view_of(c);
    size_t C = (size_t)v.C;
    double *st = dsv_alloc(sizeof(double) * (6 * C + 1) + sizeof(bn_sums) * C +
                           sizeof(float) * 4 * C);
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
    double *mean = st, *var = st + C, *inv = st + 2 * C, *K = st + 3 * C;
    double *buf = st + 4 * C; /* 2C + 1 */
    bn_sums *q = (bn_sums *)(st + 6 * C + 1);
    float *z = (float *)(q + C), *mu = z + C, *ml = mu + C, *sh = ml + C;
    double m;
    dsv_status e = pass_stats(c, &v, NULL, sum, user, K, q, buf, mean, var, inv, &m, NULL,
                              NULL);
    if (e) {
        dsv_free(st);
        return e;
    }
    const float *gamma = c->w->data, *beta = c->b->data;
    for (size_t ch = 0; ch < C; ch++) {
        z[ch] = (float)(gamma[ch] * inv[ch]);
        mu[ch] = (float)mean[ch];
        ml[ch] = (float)(mean[ch] - mu[ch]);
        sh[ch] = beta[ch];
    }
    /* out = gamma * inv * (x - mean) + beta */
    affine_pass(&v, NULL, c->x->data, z, z, mu, ml, sh, c->out->data);
    if (c->p.train) {
        double mo = c->p.momentum;
        if (c->running_mean) {
            float *rm = c->running_mean->data;
            for (size_t ch = 0; ch < C; ch++)
                rm[ch] = (float)(mo * rm[ch] + (1 - mo) * mean[ch]);
        }
        if (c->running_var) {
            float *rv = c->running_var->data;
            for (size_t ch = 0; ch < C; ch++)
                rv[ch] = (float)(mo * rv[ch] + (1 - mo) * var[ch]);
        }
    }
    dsv_free(st);
    return DSV_OK;
}

static dsv_status backward(dsv_call *c, dsv_sum_fn sum, void *user)
{
    bn_view v = view_of(c);
    size_t C = (size_t)v.C;
    double *st = dsv_alloc(sizeof(double) * (12 * C + 1) + sizeof(bn_sums) * C +
                           sizeof(float) * 5 * C);
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
    double *mean = st, *var = st + C, *inv = st + 2 * C, *K = st + 3 * C;
    double *dbeta = st + 4 * C, *dgamma = st + 5 * C;
    double *Dl = st + 6 * C, *El = st + 7 * C, *buf = st + 8 * C; /* 4C + 1 */
    bn_sums *q = (bn_sums *)(st + 12 * C + 1);
    const float *x = c->x->data, *dout = c->dout->data, *gamma = c->w->data;
    /* one pass over x and dout for the statistics and the two sums (two
       passes when synchronized) */
    double m;
    dsv_status e = pass_stats(c, &v, dout, sum, user, K, q, buf, mean, var, inv, &m, Dl, El);
    if (e) {
        dsv_free(st);
        return e;
    }
    /* dbeta, dgamma: over all processes, for dx */
    for (size_t ch = 0; ch < C; ch++) {
        dbeta[ch] = q[ch].D;
        dgamma[ch] = (q[ch].E - (mean[ch] - K[ch]) * q[ch].D) * inv[ch];
    }
    if (c->dx) {
        /* train: dx = gamma*inv * (dout - dbeta/m - xhat * dgamma/m), i.e.
           k * dout + z * (x - mean) + sh with the per-channel constants
           below; test: dx = gamma*inv * dout */
        float *k = (float *)(q + C), *z = k + C, *mu = z + C, *ml = mu + C;
        float *sh = ml + C;
        for (size_t ch = 0; ch < C; ch++) {
            double kk = gamma[ch] * inv[ch];
            mu[ch] = (float)mean[ch];
            ml[ch] = (float)(mean[ch] - mu[ch]);
            if (!c->p.train) {
                k[ch] = (float)kk, z[ch] = 0, sh[ch] = 0;
                continue;
            }
            double mb = dbeta[ch] / m, mg = dgamma[ch] / m;
            k[ch] = (float)kk;
            z[ch] = (float)(-kk * mg * inv[ch]);
            sh[ch] = (float)(-kk * mb);
        }
        affine_pass(&v, dout, x, k, z, mu, ml, sh, c->dx->data);
    }
    /* this process's part (the gradient sum over processes adds them) */
    if (c->dw) {
        float *dw = c->dw->data;
        for (size_t ch = 0; ch < C; ch++)
            dw[ch] = (float)((El[ch] - (mean[ch] - K[ch]) * Dl[ch]) * inv[ch]);
    }
    if (c->db) {
        float *db = c->db->data;
        for (size_t ch = 0; ch < C; ch++)
            db[ch] = (float)Dl[ch];
    }
    dsv_free(st);
    return DSV_OK;
}

dsv_status dsv_fast_batchnorm_forward(dsv_call *c) { return forward(c, NULL, NULL); }
dsv_status dsv_fast_batchnorm_backward(dsv_call *c) { return backward(c, NULL, NULL); }

dsv_status dsv_fast_bn_forward_summed(dsv_call *c, dsv_sum_fn sum, void *user)
{
    return c->x->dtype == DSV_F32 ? forward(c, sum, user)
                                  : dsv_naive_bn_forward_summed(c, sum, user);
}

dsv_status dsv_fast_bn_backward_summed(dsv_call *c, dsv_sum_fn sum, void *user)
{
    return c->x->dtype == DSV_F32 ? backward(c, sum, user)
                                  : dsv_naive_bn_backward_summed(c, sum, user);
}
