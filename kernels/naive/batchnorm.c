/*
 * Naive batch normalization: batchnorm on x (N, D) and spatial_batchnorm on
 * x (N, C, H, W), the course's batchnorm_forward / spatial_batchnorm_forward.
 *
 * Both run one core on x viewed as (N, C, S): statistics per channel c over
 * N and S (S = 1 for batchnorm, H*W for spatial). Train mode normalises with
 * the batch mean and biased variance, out = gamma * (x - mean) /
 * sqrt(var + eps) + beta, and, when the tensors are given, updates
 * running = momentum * running + (1 - momentum) * batch stat. Test mode uses
 * the running statistics. Statistics are computed in double, two-pass.
 *
 * Backward in train mode is the full gradient through the batch statistics,
 * recomputed from x; in test mode it is the gradient of the fixed affine map.
 * It never touches the running statistics.
 *
 * The _summed entries (engine/internal/dist.h) are the same kernels for data
 * parallel training: each per-channel sum (rows, mean, variance; the
 * backward's dbeta and dgamma that dx uses) goes through a caller's function
 * that adds it up over all processes, so the statistics are the global
 * minibatch's. The two passes stay two passes; the parameter gradients are
 * the local part (the caller sums gradients itself).
 */
#ifndef T
#include <math.h>
#include <string.h>

#include "internal/dist.h"
#include "naive.h"

/* A sum over processes; fn NULL: the local sums are the whole. */
typedef struct bn_sum {
    dsv_sum_fn fn;
    void *user;
} bn_sum;

#define T float
#define SFX f32
#include "batchnorm.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "batchnorm.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH_AS(dsv_naive_batchnorm_forward, bn_forward)
DSV_NAIVE_DISPATCH_AS(dsv_naive_batchnorm_backward, bn_backward)
DSV_NAIVE_DISPATCH_AS(dsv_naive_spatial_batchnorm_forward, bn_forward)
DSV_NAIVE_DISPATCH_AS(dsv_naive_spatial_batchnorm_backward, bn_backward)

dsv_status dsv_naive_bn_forward_summed(dsv_call *c, dsv_sum_fn sum, void *user)
{
    bn_sum r = {sum, user};
    return c->x->dtype == DSV_F64 ? bn_run_f64(c, &r) : bn_run_f32(c, &r);
}

dsv_status dsv_naive_bn_backward_summed(dsv_call *c, dsv_sum_fn sum, void *user)
{
    bn_sum r = {sum, user};
    return c->x->dtype == DSV_F64 ? bn_grad_f64(c, &r) : bn_grad_f32(c, &r);
}

#else

/* x's (N, C, S) view: (N, D, 1) or (N, C, H*W). */
static void TN(bn_dims)(const dsv_call *c, int64_t *N, int64_t *C, int64_t *S)
{
    *N = c->x->shape[0];
    *C = c->x->shape[1];
    *S = c->x->ndim == 4 ? c->x->shape[2] * c->x->shape[3] : 1;
}

/* mean[C] and inv[C] = 1 / sqrt(var + eps): batch statistics in train mode
 * (var[C] also kept for the running update), running ones in test mode.
 * *m: the rows the statistics cover (N * S, or the sum over processes;
 * mean and var have room for C + 1 values, the count travels in the last). */
static dsv_status TN(bn_stats)(const dsv_call *c, const bn_sum *r, int64_t N, int64_t C,
                               int64_t S, double *mean, double *var, double *inv,
                               double *m_out)
{
    dsv_status st = DSV_OK;
    double m = (double)(N * S);
    const T *x = c->x->data; /* (N, C, S) */
    if (!c->p.train) {
        const T *rm = c->running_mean->data, *rv = c->running_var->data;
        for (int64_t ch = 0; ch < C; ch++) {
            mean[ch] = rm[ch];
            var[ch] = rv[ch];
        }
    } else {
        memset(mean, 0, sizeof(double) * (size_t)C);
        memset(var, 0, sizeof(double) * (size_t)C);
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                const T *xp = x + (n * C + ch) * S;
                double acc = 0;
                for (int64_t i = 0; i < S; i++)
                    acc += xp[i];
                mean[ch] += acc;
            }
        if (r->fn) {
            mean[C] = m;
            if ((st = r->fn(r->user, mean, C + 1)))
                return st;
            m = mean[C];
        }
        for (int64_t ch = 0; ch < C; ch++)
            mean[ch] /= m;
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                const T *xp = x + (n * C + ch) * S;
                double acc = 0;
                for (int64_t i = 0; i < S; i++) {
                    const double d = xp[i] - mean[ch];
                    acc += d * d;
                }
                var[ch] += acc;
            }
        if (r->fn && (st = r->fn(r->user, var, C)))
            return st;
        for (int64_t ch = 0; ch < C; ch++)
            var[ch] /= m;
    }
    for (int64_t ch = 0; ch < C; ch++)
        inv[ch] = 1.0 / sqrt(var[ch] + c->p.eps);
    *m_out = m;
    return DSV_OK;
}

static dsv_status TN(bn_run)(dsv_call *c, const bn_sum *r)
{
    int64_t N, C, S;
    TN(bn_dims)(c, &N, &C, &S);
    double *st = dsv_alloc(sizeof(double) * (3 * (size_t)C + 2));
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: no memory for statistics", dsv_op_name(c->op));
    double *mean = st, *var = st + C + 1, *inv = st + 2 * C + 2, m;
    dsv_status err = TN(bn_stats)(c, r, N, C, S, mean, var, inv, &m);
    if (err) {
        dsv_free(st);
        return err;
    }

    const T *x = c->x->data;     /* (N, C, S) */
    const T *gamma = c->w->data; /* (C) */
    const T *beta = c->b->data;  /* (C) */
    T *out = c->out->data;       /* (N, C, S) */
    for (int64_t n = 0; n < N; n++)
        for (int64_t ch = 0; ch < C; ch++) {
            const int64_t o = (n * C + ch) * S;
            const double g = gamma[ch] * inv[ch], sh = beta[ch] - g * mean[ch];
            for (int64_t i = 0; i < S; i++)
                out[o + i] = (T)(g * x[o + i] + sh);
        }

    if (c->p.train) {
        const double mo = c->p.momentum;
        if (c->running_mean) {
            T *rm = c->running_mean->data;
            for (int64_t ch = 0; ch < C; ch++)
                rm[ch] = (T)(mo * rm[ch] + (1 - mo) * mean[ch]);
        }
        if (c->running_var) {
            T *rv = c->running_var->data;
            for (int64_t ch = 0; ch < C; ch++)
                rv[ch] = (T)(mo * rv[ch] + (1 - mo) * var[ch]);
        }
    }
    dsv_free(st);
    return DSV_OK;
}

static dsv_status TN(bn_forward)(dsv_call *c)
{
    bn_sum r = {0};
    return TN(bn_run)(c, &r);
}

static dsv_status TN(bn_grad)(dsv_call *c, const bn_sum *r)
{
    int64_t N, C, S;
    TN(bn_dims)(c, &N, &C, &S);
    double *st = dsv_alloc(sizeof(double) * (7 * (size_t)C + 2));
    if (!st)
        return dsv_error(DSV_NOMEM, "%s: no memory for statistics", dsv_op_name(c->op));
    double *mean = st, *var = st + C + 1, *inv = st + 2 * C + 2, m;
    /* dbeta, dgamma: this process's; tot: their sums over processes */
    double *dbeta = st + 3 * C + 2, *dgamma = st + 4 * C + 2, *tot = st + 5 * C + 2;
    dsv_status err = TN(bn_stats)(c, r, N, C, S, mean, var, inv, &m);
    if (err) {
        dsv_free(st);
        return err;
    }

    const T *x = c->x->data;       /* (N, C, S) */
    const T *gamma = c->w->data;   /* (C) */
    const T *dout = c->dout->data; /* (N, C, S) */
    memset(dbeta, 0, sizeof(double) * 2 * (size_t)C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t ch = 0; ch < C; ch++) {
            const int64_t o = (n * C + ch) * S;
            double sb = 0, sg = 0;
            for (int64_t i = 0; i < S; i++) {
                sb += dout[o + i];
                sg += dout[o + i] * (x[o + i] - mean[ch]);
            }
            dbeta[ch] += sb;
            dgamma[ch] += sg * inv[ch];
        }

    memcpy(tot, dbeta, sizeof(double) * 2 * (size_t)C);
    if (r->fn && c->p.train && c->dx && (err = r->fn(r->user, tot, 2 * C))) {
        dsv_free(st);
        return err;
    }
    if (c->dx) {
        T *dx = c->dx->data; /* (N, C, S) */
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                const int64_t o = (n * C + ch) * S;
                const double k = gamma[ch] * inv[ch];
                if (!c->p.train) {
                    for (int64_t i = 0; i < S; i++)
                        dx[o + i] = (T)(k * dout[o + i]);
                    continue;
                }
                /* dx = gamma*inv/m * (m*dout - dbeta - xhat*dgamma) */
                const double mb = tot[ch] / m, mg = tot[C + ch] / m;
                for (int64_t i = 0; i < S; i++) {
                    const double xhat = (x[o + i] - mean[ch]) * inv[ch];
                    dx[o + i] = (T)(k * (dout[o + i] - mb - xhat * mg));
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
    dsv_free(st);
    return DSV_OK;
}

static dsv_status TN(bn_backward)(dsv_call *c)
{
    bn_sum r = {0};
    return TN(bn_grad)(c, &r);
}

#endif
