/*
 * Batch normalization for the fast backend: batchnorm on x (N, D) and
 * spatial_batchnorm on x (N, C, H, W), both on x viewed as (N, C, S).
 *
 * Same semantics as the naive kernels: train mode normalises with the batch
 * mean and biased variance (two-pass, accumulated in double) and updates the
 * running statistics; test mode uses the running ones; backward recomputes
 * the statistics from x. Channel ranges are split among threads, and every
 * channel's sum runs over n in order, so results do not depend on the split.
 * The elementwise passes work in float and vectorise; the sums run over
 * eight interleaved double partial sums so that they vectorise too.
 */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "fast.h"

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

/* Sum of a[0, n) in double over 8 interleaved partial sums: they
 * vectorise, where one running sum would wait on every add. The order is
 * fixed, so the result is too. */
static double sum_d(const float *a, int64_t n)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j];
    double s = 0;
    for (; i < n; i++)
        s += a[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
           ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Sum of b * (x - m) over [0, n), the same way. */
static double dot_centred(const float *b, const float *x, double m, int64_t n)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += (double)b[i + j] * ((double)x[i + j] - m);
    double s = 0;
    for (; i < n; i++)
        s += (double)b[i] * ((double)x[i] - m);
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
           ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Channels [c0, c1) of channel_sums. */
static void channel_sums_range(const bn_view *v, const float *a, const float *b,
                               const float *x, const double *mean, double *sa,
                               double *sb, int64_t c0, int64_t c1)
{
    for (int64_t ch = c0; ch < c1; ch++) {
        if (sa)
            sa[ch] = 0;
        if (sb)
            sb[ch] = 0;
    }
    if (v->S == 1) { /* (N, D): rows of channels, summed row by row */
        for (int64_t n = 0; n < v->N; n++) {
            const int64_t o = n * v->C;
            if (sa)
                for (int64_t ch = c0; ch < c1; ch++)
                    sa[ch] += a[o + ch];
            if (sb)
                for (int64_t ch = c0; ch < c1; ch++)
                    sb[ch] += (double)b[o + ch] * ((double)x[o + ch] - mean[ch]);
        }
        return;
    }
    for (int64_t n = 0; n < v->N; n++)
        for (int64_t ch = c0; ch < c1; ch++) {
            int64_t o = (n * v->C + ch) * v->S;
            if (v->S < 16) { /* small maps: plain loops */
                for (int64_t i = 0; sa && i < v->S; i++)
                    sa[ch] += a[o + i];
                for (int64_t i = 0; sb && i < v->S; i++)
                    sb[ch] += (double)b[o + i] * ((double)x[o + i] - mean[ch]);
                continue;
            }
            if (sa)
                sa[ch] += sum_d(a + o, v->S);
            if (sb)
                sb[ch] += dot_centred(b + o, x + o, mean[ch], v->S);
        }
}

/* sa[ch] = sum of a over (n, s); with mean, sb[ch] = sum of b * (x - mean)
 * (b = x: the squared deviations). */
static void channel_sums(const bn_view *v, const float *a, const float *b,
                         const float *x, const double *mean, double *sa,
                         double *sb)
{
    if (v->nt > 1) {
#pragma omp parallel num_threads(v->nt)
        {
            int64_t c0, c1;
            dsv_fast_share(v->C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            channel_sums_range(v, a, b, x, mean, sa, sb, c0, c1);
        }
    } else {
        channel_sums_range(v, a, b, x, mean, sa, sb, 0, v->C);
    }
}

/* mean, var and inv = 1 / sqrt(var + eps) per channel. */
static void stats(const dsv_call *c, const bn_view *v, double *mean, double *var,
                  double *inv)
{
    if (!c->p.train) {
        const float *rm = c->running_mean->data, *rv = c->running_var->data;
        for (int64_t ch = 0; ch < v->C; ch++)
            mean[ch] = rm[ch], var[ch] = rv[ch];
    } else {
        const float *x = c->x->data;
        double m = (double)(v->N * v->S);
        channel_sums(v, x, NULL, NULL, NULL, mean, NULL);
        for (int64_t ch = 0; ch < v->C; ch++)
            mean[ch] /= m;
        channel_sums(v, NULL, x, x, mean, NULL, var);
        for (int64_t ch = 0; ch < v->C; ch++)
            var[ch] /= m;
    }
    for (int64_t ch = 0; ch < v->C; ch++)
        inv[ch] = 1.0 / sqrt(var[ch] + c->p.eps);
}

/* y = k[ch] * a + z[ch] * (u - mu[ch]) + sh[ch] over (n, ch) blocks
 * [b0, b1); a may be NULL. Centring u before scaling avoids float
 * cancellation when a channel's mean is large against its spread. */
static void affine_range(const bn_view *v, const float *a, const float *u,
                         const float *k, const float *z, const float *mu,
                         const float *sh, float *y, int64_t b0, int64_t b1)
{
    for (int64_t nb = b0; nb < b1; nb++) {
        int64_t ch = nb % v->C, o = nb * v->S;
        float kk = k[ch], zz = z[ch], mm = mu[ch], ss = sh[ch];
        if (a)
            for (int64_t i = 0; i < v->S; i++)
                y[o + i] = kk * a[o + i] + zz * (u[o + i] - mm) + ss;
        else
            for (int64_t i = 0; i < v->S; i++)
                y[o + i] = zz * (u[o + i] - mm) + ss;
    }
}

static void affine_pass(const bn_view *v, const float *a, const float *u,
                        const float *k, const float *z, const float *mu,
                        const float *sh, float *y)
{
    int64_t blocks = v->N * v->C;
    if (v->nt > 1) {
#pragma omp parallel num_threads(v->nt)
        {
            int64_t b0, b1;
            dsv_fast_share(blocks, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1);
            affine_range(v, a, u, k, z, mu, sh, y, b0, b1);
        }
    } else {
        affine_range(v, a, u, k, z, mu, sh, y, 0, blocks);
    }
}

dsv_status dsv_fast_batchnorm_forward(dsv_call *c)
{
    bn_view v = view_of(c);
    size_t C = (size_t)v.C;
    double *st = dsv_alloc(sizeof(double) * 3 * C + sizeof(float) * 3 * C);
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
    double *mean = st, *var = st + C, *inv = st + 2 * C;
    float *z = (float *)(st + 3 * C), *mu = z + C, *sh = mu + C;
    stats(c, &v, mean, var, inv);
    const float *gamma = c->w->data, *beta = c->b->data;
    for (size_t ch = 0; ch < C; ch++) {
        z[ch] = (float)(gamma[ch] * inv[ch]);
        mu[ch] = (float)mean[ch];
        sh[ch] = beta[ch];
    }
    /* out = gamma * inv * (x - mean) + beta */
    affine_pass(&v, NULL, c->x->data, z, z, mu, sh, c->out->data);
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

dsv_status dsv_fast_batchnorm_backward(dsv_call *c)
{
    bn_view v = view_of(c);
    size_t C = (size_t)v.C;
    double *st = dsv_alloc(sizeof(double) * 5 * C + sizeof(float) * 4 * C);
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
    double *mean = st, *var = st + C, *inv = st + 2 * C;
    double *dbeta = st + 3 * C, *dgamma = st + 4 * C;
    stats(c, &v, mean, var, inv);
    const float *x = c->x->data, *dout = c->dout->data, *gamma = c->w->data;
    channel_sums(&v, dout, dout, x, mean, dbeta, dgamma);
    for (size_t ch = 0; ch < C; ch++)
        dgamma[ch] *= inv[ch];
    if (c->dx) {
        /* train: dx = gamma*inv * (dout - dbeta/m - xhat * dgamma/m), i.e.
           k * dout + z * (x - mean) + sh with the per-channel constants
           below; test: dx = gamma*inv * dout */
        float *k = (float *)(st + 5 * C), *z = k + C, *mu = z + C, *sh = mu + C;
        double m = (double)(v.N * v.S);
        for (size_t ch = 0; ch < C; ch++) {
            double kk = gamma[ch] * inv[ch];
            mu[ch] = (float)mean[ch];
            if (!c->p.train) {
                k[ch] = (float)kk, z[ch] = 0, sh[ch] = 0;
                continue;
            }
            double mb = dbeta[ch] / m, mg = dgamma[ch] / m;
            k[ch] = (float)kk;
            z[ch] = (float)(-kk * mg * inv[ch]);
            sh[ch] = (float)(-kk * mb);
        }
        affine_pass(&v, dout, x, k, z, mu, sh, c->dx->data);
    }
    if (c->dw) {
        float *dw = c->dw->data;
        for (size_t ch = 0; ch < C; ch++)
            dw[ch] = (float)dgamma[ch];
    }
    if (c->db) {
        float *db = c->db->data;
        for (size_t ch = 0; ch < C; ch++)
            db[ch] = (float)dbeta[ch];
    }
    dsv_free(st);
    return DSV_OK;
}
