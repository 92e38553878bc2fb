/*
 * Group normalization for the fast backend (spatial_groupnorm), the core
 * shared with layernorm: x viewed as (N, G, Cg, S), statistics per (sample,
 * group) over the contiguous run of Cg*S elements (two-pass, double), biased
 * variance, per-channel gamma/beta. Train and test mode behave the same.
 *
 * Groups are independent and split among threads. Backward keeps each
 * (sample, channel)'s sums of dout and dout*xhat, then dgamma/dbeta add them
 * over samples in order, so the results do not depend on the split.
 */
#include <math.h>

#include <omp.h>

#include "fast.h"

/* Mean and 1 / sqrt(var + eps) of m floats. */
static void group_stats(const float *xp, int64_t m, double eps, double *mean,
                        double *inv)
{
    double s = 0, v = 0;
    for (int64_t i = 0; i < m; i++)
        s += xp[i];
    s /= (double)m;
    for (int64_t i = 0; i < m; i++) {
        double d = xp[i] - s;
        v += d * d;
    }
    *mean = s;
    *inv = 1.0 / sqrt(v / (double)m + eps);
}

static void forward_group(const dsv_call *c, int64_t ng, int64_t G, int64_t Cg,
                          int64_t S)
{
    const float *gamma = c->w->data, *beta = c->b->data;
    int64_t base = ng * Cg * S;
    const float *x = (const float *)c->x->data + base;
    float *out = (float *)c->out->data + base;
    double mean, inv;
    group_stats(x, Cg * S, c->p.eps, &mean, &inv);
    float mu = (float)mean;
    for (int64_t k = 0; k < Cg; k++) {
        int64_t ch = (ng % G) * Cg + k;
        float g = (float)(gamma[ch] * inv), b = beta[ch];
        for (int64_t i = 0; i < S; i++)
            out[k * S + i] = g * (x[k * S + i] - mu) + b;
    }
}

/* dx of one group; sd/sdx receive the group's per-channel sums. */
static void backward_group(const dsv_call *c, int64_t ng, int64_t G, int64_t Cg,
                           int64_t S, double *sd, double *sdx)
{
    const float *gamma = c->w->data;
    int64_t base = ng * Cg * S, m = Cg * S;
    const float *x = (const float *)c->x->data + base;
    const float *d = (const float *)c->dout->data + base;
    double mean, inv;
    group_stats(x, m, c->p.eps, &mean, &inv);
    /* s1 = sum(dxhat), s2 = sum(dxhat * xhat), dxhat = dout * gamma */
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < Cg; k++) {
        int64_t ch = (ng % G) * Cg + k;
        double a = 0, b = 0;
        for (int64_t i = 0; i < S; i++) {
            a += d[k * S + i];
            b += d[k * S + i] * ((x[k * S + i] - mean) * inv);
        }
        sd[k] = a, sdx[k] = b;
        s1 += gamma[ch] * a;
        s2 += gamma[ch] * b;
    }
    if (!c->dx)
        return;
    /* dx = inv * (gamma * dout - s1/m - xhat * s2/m) */
    float *dx = (float *)c->dx->data + base;
    float mu = (float)mean, fi = (float)inv;
    float c1 = (float)(inv * s1 / (double)m), c2 = (float)(inv * inv * s2 / (double)m);
    for (int64_t k = 0; k < Cg; k++) {
        int64_t ch = (ng % G) * Cg + k;
        float gi = gamma[ch] * fi;
        for (int64_t i = 0; i < S; i++)
            dx[k * S + i] = gi * d[k * S + i] - c1 - c2 * (x[k * S + i] - mu);
    }
}

/* Groups [g0, g1): forward, or backward into the per-channel sums. */
static void groups_range(const dsv_call *c, bool backward, int64_t G, int64_t Cg,
                         int64_t S, double *sd, double *sdx, int64_t g0, int64_t g1)
{
    for (int64_t ng = g0; ng < g1; ng++)
        if (backward)
            backward_group(c, ng, G, Cg, S, sd + ng * Cg, sdx + ng * Cg);
        else
            forward_group(c, ng, G, Cg, S);
}

dsv_status dsv_fast_groupnorm_run(dsv_call *c, bool backward, int64_t N,
                                  int64_t G, int64_t Cg, int64_t S)
{
    int nt = dsv_fast_nthreads(c);
    int64_t groups = N * G, C = G * Cg;
    bool par = nt > 1 && groups > 1 && N * C * S >= (1 << 14);
    double *sums = NULL, *sd = NULL, *sdx = NULL;
    size_t nsum = (size_t)(N * C);
    if (backward) {
        sums = dsv_fast_scratch(c, sizeof(double) * 2 * nsum);
        if (!sums)
            return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
        sd = sums, sdx = sums + nsum; /* (N, C) each */
    }
    if (par) {
#pragma omp parallel num_threads(nt)
        {
            int64_t g0, g1;
            dsv_fast_share(groups, omp_get_thread_num(), omp_get_num_threads(), &g0, &g1);
            groups_range(c, backward, G, Cg, S, sd, sdx, g0, g1);
        }
    } else {
        groups_range(c, backward, G, Cg, S, sd, sdx, 0, groups);
    }
    if (!backward)
        return DSV_OK;
    float *dw = c->dw ? c->dw->data : NULL, *db = c->db ? c->db->data : NULL;
    if (dw || db)
        for (int64_t ch = 0; ch < C; ch++) {
            double a = 0, b = 0;
            for (int64_t n = 0; n < N; n++)
                a += sd[n * C + ch], b += sdx[n * C + ch];
            if (db)
                db[ch] = (float)a;
            if (dw)
                dw[ch] = (float)b;
        }
    dsv_fast_scratch_release(c, sums);
    return DSV_OK;
}

static dsv_status run(dsv_call *c, bool backward)
{
    int64_t N = c->x->shape[0], C = c->x->shape[1];
    int64_t G = c->p.groups, S = c->x->shape[2] * c->x->shape[3];
    return dsv_fast_groupnorm_run(c, backward, N, G, C / G, S);
}

dsv_status dsv_fast_groupnorm_forward(dsv_call *c) { return run(c, false); }
dsv_status dsv_fast_groupnorm_backward(dsv_call *c) { return run(c, true); }
