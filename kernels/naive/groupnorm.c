/*
 * Naive group normalization, the course's spatial_groupnorm_forward /
 * _backward: x (N, C, H, W) split into G groups of C/G consecutive channels;
 * statistics per (sample, group) over C/G * H * W elements, biased variance,
 * then a per-channel gamma/beta (C elements, any shape, e.g. (1, C, 1, 1)).
 * Train and test mode behave the same.
 *
 * The core works on x viewed as (N, G, Cg, S) and is shared with layernorm
 * (layernorm.c), which is the case G = 1, Cg = D, S = 1. A group is one
 * contiguous run of Cg * S elements. Statistics are computed in double.
 */
#ifndef T
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "naive.h"

#define T float
#define SFX f32
#include "groupnorm.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "groupnorm.c"
#undef T
#undef SFX

dsv_status dsv_naive_groupnorm_run(dsv_call *c, bool backward, int64_t N,
                                   int64_t G, int64_t Cg, int64_t S)
{
    if (c->x->dtype == DSV_F64)
        return backward ? gn_backward_f64(c, N, G, Cg, S) : gn_forward_f64(c, N, G, Cg, S);
    return backward ? gn_backward_f32(c, N, G, Cg, S) : gn_forward_f32(c, N, G, Cg, S);
}

static dsv_status spatial_groupnorm(dsv_call *c, bool backward)
{
    const int64_t *sh = c->x->shape;
    const int64_t G = c->p.groups;
    return dsv_naive_groupnorm_run(c, backward, sh[0], G, sh[1] / G, sh[2] * sh[3]);
}

dsv_status dsv_naive_spatial_groupnorm_forward(dsv_call *c)
{
    return spatial_groupnorm(c, false);
}

dsv_status dsv_naive_spatial_groupnorm_backward(dsv_call *c)
{
    return spatial_groupnorm(c, true);
}

#else

/* Mean and 1 / sqrt(var + eps) of the m values at xp (two-pass). */
static void TN(gn_stats)(const T *xp, int64_t m, double eps, double *mean,
                         double *inv)
{
    double s = 0, v = 0;
    for (int64_t i = 0; i < m; i++)
        s += xp[i];
    s /= (double)m;
    for (int64_t i = 0; i < m; i++) {
        const double d = xp[i] - s;
        v += d * d;
    }
    *mean = s;
    *inv = 1.0 / sqrt(v / (double)m + eps);
}

static dsv_status TN(gn_forward)(dsv_call *c, int64_t N, int64_t G, int64_t Cg,
                                 int64_t S)
{
    const T *x = c->x->data;     /* (N, G, Cg, S) */
    const T *gamma = c->w->data; /* (G * Cg) */
    const T *beta = c->b->data;  /* (G * Cg) */
    T *out = c->out->data;       /* (N, G, Cg, S) */
    for (int64_t ng = 0; ng < N * G; ng++) {
        const int64_t base = ng * Cg * S;
        double mean, inv;
        TN(gn_stats)(x + base, Cg * S, c->p.eps, &mean, &inv);
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = (ng % G) * Cg + k, o = base + k * S;
            const double g = gamma[ch] * inv, sh = beta[ch] - g * mean;
            for (int64_t i = 0; i < S; i++)
                out[o + i] = (T)(g * x[o + i] + sh);
        }
    }
    return DSV_OK;
}

static dsv_status TN(gn_backward)(dsv_call *c, int64_t N, int64_t G,
                                  int64_t Cg, int64_t S)
{
    const int64_t C = G * Cg, m = Cg * S;
    const T *x = c->x->data;       /* (N, G, Cg, S) */
    const T *gamma = c->w->data;   /* (C) */
    const T *dout = c->dout->data; /* (N, G, Cg, S) */
    T *dx = c->dx ? c->dx->data : NULL;
    double *acc = dsv_alloc(sizeof(double) * 2 * (size_t)C);
    if (!acc)
        return dsv_error(DSV_NOMEM, "%s: no memory for gradients", dsv_op_name(c->op));
    double *dgamma = acc, *dbeta = acc + C;
    memset(acc, 0, sizeof(double) * 2 * (size_t)C);

    for (int64_t ng = 0; ng < N * G; ng++) {
        const int64_t base = ng * m;
        double mean, inv;
        TN(gn_stats)(x + base, m, c->p.eps, &mean, &inv);
        /* s1 = sum(dxhat), s2 = sum(dxhat * xhat), dxhat = dout * gamma */
        double s1 = 0, s2 = 0;
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = (ng % G) * Cg + k, o = base + k * S;
            double sd = 0, sdx = 0;
            for (int64_t i = 0; i < S; i++) {
                const double xhat = (x[o + i] - mean) * inv;
                sd += dout[o + i];
                sdx += dout[o + i] * xhat;
            }
            dbeta[ch] += sd;
            dgamma[ch] += sdx;
            s1 += gamma[ch] * sd;
            s2 += gamma[ch] * sdx;
        }
        if (!dx)
            continue;
        /* dx = inv * (dxhat - s1/m - xhat * s2/m) */
        s1 /= (double)m;
        s2 /= (double)m;
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = (ng % G) * Cg + k, o = base + k * S;
            for (int64_t i = 0; i < S; i++) {
                const double xhat = (x[o + i] - mean) * inv;
                dx[o + i] = (T)(inv * (gamma[ch] * dout[o + i] - s1 - xhat * s2));
            }
        }
    }
    if (c->dw) {
        T *dw = c->dw->data;
        for (int64_t ch = 0; ch < C; ch++)
            dw[ch] = (T)dgamma[ch];
    }
    if (c->db) {
        T *db = c->db->data;
        for (int64_t ch = 0; ch < C; ch++)
            db[ch] = (T)dbeta[ch];
    }
    dsv_free(acc);
    return DSV_OK;
}

#endif
