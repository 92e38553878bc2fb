/*
 * Float64 batch normalization for the fast backend: batchnorm on x (N, D)
 * and spatial_batchnorm on x (N, C, H, W), both on x viewed as (N, C, S).
 *
 * The naive kernel's arithmetic, operation for operation (two-pass
 * statistics, sums in the same order, the same formulas), so the results
 * equal the reference's bit for bit; the gain is threads. The work is split
 * by channel: everything a channel needs, its statistics, outputs, running
 * update and gradients, depends on that channel alone, so each thread does
 * its channels from start to end in one parallel region, and the results do
 * not depend on the split. On (N, D), where S is 1, the loops run along
 * rows, across channels.
 */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "fast.h"

typedef struct bn_view {
    int64_t N, C, S;
} bn_view;

/* Per-channel work arrays, C values each. */
typedef struct bn_stats {
    double *mean, *var, *inv, *sb, *sg;
} bn_stats;

/* below this many elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 15 };

/* sum of p[i] (d NULL) or of p[i] * (d[i] - k), in order, as the reference
 * sums: the results then match it bit for bit, and finite differences
 * through this kernel see the reference's rounding, not a different one. */
static double sum_seq(const double *p, const double *d, double k, int64_t n)
{
    double s = 0;
    if (d)
        for (int64_t i = 0; i < n; i++)
            s += p[i] * (d[i] - k);
    else
        for (int64_t i = 0; i < n; i++)
            s += p[i];
    return s;
}

/* acc[ch] += sum over n of f(x[n, ch, :]) (scaled by mul[ch] when given)
 * for channels [c0, c1): plain sums (d NULL, k NULL) or sums of
 * p * (d - k[ch]). */
static void channel_sums(const bn_view *v, const double *p, const double *d,
                         const double *k, const double *mul, int64_t c0, int64_t c1,
                         double *acc)
{
    for (int64_t ch = c0; ch < c1; ch++)
        acc[ch] = 0;
    for (int64_t n = 0; n < v->N; n++) {
        const double *pr = p + n * v->C * v->S, *dr = d ? d + n * v->C * v->S : NULL;
        for (int64_t ch = c0; ch < c1; ch++) {
            double s = sum_seq(pr + ch * v->S, dr ? dr + ch * v->S : NULL,
                               k ? k[ch] : 0, v->S);
            acc[ch] += mul ? s * mul[ch] : s;
        }
    }
}

/* mean, var, inv of channels [c0, c1): the batch's in train mode, the
 * running ones in test mode. */
static void stats(const dsv_call *c, const bn_view *v, const bn_stats *st,
                  int64_t c0, int64_t c1)
{
    const double *x = c->x->data;
    if (!c->p.train) {
        const double *rm = c->running_mean->data, *rv = c->running_var->data;
        for (int64_t ch = c0; ch < c1; ch++)
            st->mean[ch] = rm[ch], st->var[ch] = rv[ch];
    } else {
        const double m = (double)(v->N * v->S);
        channel_sums(v, x, NULL, NULL, NULL, c0, c1, st->mean);
        for (int64_t ch = c0; ch < c1; ch++)
            st->mean[ch] /= m;
        /* two passes, as the reference: squares of deviations from the mean */
        for (int64_t ch = c0; ch < c1; ch++)
            st->var[ch] = 0;
        for (int64_t n = 0; n < v->N; n++) {
            const double *xr = x + n * v->C * v->S;
            for (int64_t ch = c0; ch < c1; ch++) {
                const double *xp = xr + ch * v->S, mu = st->mean[ch];
                double s = 0;
                for (int64_t i = 0; i < v->S; i++) {
                    const double t = xp[i] - mu;
                    s += t * t;
                }
                st->var[ch] += s;
            }
        }
        for (int64_t ch = c0; ch < c1; ch++)
            st->var[ch] /= m;
    }
    for (int64_t ch = c0; ch < c1; ch++)
        st->inv[ch] = 1.0 / sqrt(st->var[ch] + c->p.eps);
}

static void forward_range(const dsv_call *c, const bn_view *v, const bn_stats *st,
                          int64_t c0, int64_t c1)
{
    stats(c, v, st, c0, c1);
    const double *x = c->x->data, *gamma = c->w->data, *beta = c->b->data;
    double *out = c->out->data;
    /* sb, sg hold each channel's scale and shift */
    for (int64_t ch = c0; ch < c1; ch++) {
        st->sb[ch] = gamma[ch] * st->inv[ch];
        st->sg[ch] = beta[ch] - st->sb[ch] * st->mean[ch];
    }
    for (int64_t n = 0; n < v->N; n++)
        for (int64_t ch = c0; ch < c1; ch++) {
            const int64_t o = (n * v->C + ch) * v->S;
            const double g = st->sb[ch], sh = st->sg[ch];
            for (int64_t i = 0; i < v->S; i++)
                out[o + i] = g * x[o + i] + sh;
        }
    if (c->p.train) {
        const double mo = c->p.momentum;
        double *rm = c->running_mean ? c->running_mean->data : NULL;
        double *rv = c->running_var ? c->running_var->data : NULL;
        for (int64_t ch = c0; ch < c1; ch++) {
            if (rm)
                rm[ch] = mo * rm[ch] + (1 - mo) * st->mean[ch];
            if (rv)
                rv[ch] = mo * rv[ch] + (1 - mo) * st->var[ch];
        }
    }
}

static void backward_range(const dsv_call *c, const bn_view *v, const bn_stats *st,
                           int64_t c0, int64_t c1)
{
    stats(c, v, st, c0, c1);
    const double *x = c->x->data, *gamma = c->w->data, *dout = c->dout->data;
    channel_sums(v, dout, NULL, NULL, NULL, c0, c1, st->sb);       /* dbeta */
    channel_sums(v, dout, x, st->mean, st->inv, c0, c1, st->sg);   /* dgamma */
    if (c->dx) {
        double *dx = c->dx->data;
        const double m = (double)(v->N * v->S);
        for (int64_t n = 0; n < v->N; n++)
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t o = (n * v->C + ch) * v->S;
                const double k = gamma[ch] * st->inv[ch];
                if (!c->p.train) {
                    for (int64_t i = 0; i < v->S; i++)
                        dx[o + i] = k * dout[o + i];
                    continue;
                }
                /* dx = gamma*inv/m * (m*dout - dbeta - xhat*dgamma) */
                const double mb = st->sb[ch] / m, mg = st->sg[ch] / m;
                const double mu = st->mean[ch], iv = st->inv[ch];
                for (int64_t i = 0; i < v->S; i++) {
                    const double xhat = (x[o + i] - mu) * iv;
                    dx[o + i] = k * (dout[o + i] - mb - xhat * mg);
                }
            }
    }
    if (c->dw)
        memcpy((double *)c->dw->data + c0, st->sg + c0, sizeof(double) * (size_t)(c1 - c0));
    if (c->db)
        memcpy((double *)c->db->data + c0, st->sb + c0, sizeof(double) * (size_t)(c1 - c0));
}

static dsv_status run(dsv_call *c, bool backward)
{
    bn_view v = {c->x->shape[0], c->x->shape[1],
                 c->x->ndim == 4 ? c->x->shape[2] * c->x->shape[3] : 1};
    double *buf = dsv_alloc(sizeof(double) * 5 * (size_t)(v.C ? v.C : 1));
    if (!buf)
        return dsv_error(DSV_NOMEM, "%s: no memory for statistics", dsv_op_name(c->op));
    bn_stats st = {buf, buf + v.C, buf + 2 * v.C, buf + 3 * v.C, buf + 4 * v.C};
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && v.C > 1 && v.N * v.C * v.S >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t c0, c1;
            dsv_fast_share(v.C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            if (backward)
                backward_range(c, &v, &st, c0, c1);
            else
                forward_range(c, &v, &st, c0, c1);
        }
    } else if (backward) {
        backward_range(c, &v, &st, 0, v.C);
    } else {
        forward_range(c, &v, &st, 0, v.C);
    }
    dsv_free(buf);
    return DSV_OK;
}

dsv_status dsv_fast_batchnorm_forward_f64(dsv_call *c) { return run(c, false); }

dsv_status dsv_fast_batchnorm_backward_f64(dsv_call *c) { return run(c, true); }
