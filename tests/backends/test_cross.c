/*
 * Every backend against the naive reference: each op, forward and backward,
 * float32, over a grid of configurations (odd and non-square sizes, strides
 * 1-3, pads 0-3, filters 1x1 to 7x7, batch 1 to 64, 1 to 64 channels), the
 * course's two timing cells, the same grid in float64 for the fast kernels
 * that have it, the fast sgemm's and dgemm's micro-kernels against a plain
 * loop, per-node state reuse, and dispatch fallback. The comparison itself is
 * shown to fail on deliberately broken kernels.
 *
 * Prints the worst error per op and backend as a table on stdout.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <omp.h>

#include "fast.h"
#include "testutil.h"

#define TOL 1e-4
#define TOL_COURSE 1e-5
/* oneDNN's batch norm works in float: on inputs whose mean is 1000 times
 * their spread (the grid's cases with offset +-1000) its outputs were off
 * by up to 4e-3 against naive's double arithmetic, fast's by 2e-6. */
#define TOL_ONEDNN_OFFSET 1e-2

/*
 * Worst element error of a (the backend) against ref (naive). The course's
 * rel_error, |a - b| / max(1e-8, |a| + |b|), blows up where float32 sums
 * cancel to nearly zero (a conv output of 1e-6 from terms of size 1): both
 * kernels are right to ~1e-7 of the terms, yet differ by 100% of the tiny
 * result. So the denominator is floored at `floor_frac` of the largest
 * |ref|: values near the tensor's scale are held to the relative bound,
 * values far below it to an absolute bound of tol * floor_frac * max|ref|.
 */
static double cmp_err_floor(const dsv_tensor *a, const dsv_tensor *ref,
                            double floor_frac)
{
    int64_t n = dsv_tensor_numel(ref);
    if (dsv_tensor_numel(a) != n)
        return INFINITY;
    double big = 0;
    for (int64_t i = 0; i < n; i++)
        big = fmax(big, fabs(dsv_tensor_get(ref, i)));
    double floor_ = fmax(floor_frac * big, 1e-30), worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = dsv_tensor_get(a, i), y = dsv_tensor_get(ref, i);
        double d = fabs(x - y) / fmax(floor_, fabs(x) + fabs(y));
        if (!(d <= worst)) /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* The grid's check: floor at 1% of the tensor's scale, bound 1e-4. */
static double cmp_floor = 1e-2;
static double cmp_err(const dsv_tensor *a, const dsv_tensor *ref)
{
    return cmp_err_floor(a, ref, cmp_floor);
}

/* ---- one configuration of one op ----------------------------------------- */

typedef struct tcase {
    dsv_op op;
    int xnd;
    int64_t xs[4];
    int wnd;        /* 0: no weights */
    int64_t ws[4];
    int64_t bn;     /* elements of b (and of gamma for the norms) */
    int stride, pad, ph, pw, groups;
    double p;       /* dropout keep probability */
    bool test_mode; /* norms / dropout in test mode */
    int64_t row0;
    bool ties;      /* x rounded to integers: many equal values */
    float offset;   /* added to x: a mean large against the spread */
} tcase;

/* Tensors of one run (naive or backend). */
typedef struct trun {
    dsv_tensor out, dx, dx2, dw, db, rm, rv;
    double loss;
    dsv_backend used; /* naive if either pass fell back to it */
} trun;

typedef struct tinputs {
    dsv_tensor x, x2, w, b, y, rm, rv, dout;
} tinputs;

static void inputs_init(const tcase *tc, uint64_t seed, tinputs *in, int *ond,
                        int64_t *os)
{
    tu_rng r = {seed};
    memset(in, 0, sizeof(*in));
    in->x = tu_randn(&r, DSV_F32, tc->xnd, tc->xs, 1.0);
    if (tc->ties) {
        float *v = in->x.data;
        for (int64_t i = 0; i < dsv_tensor_numel(&in->x); i++)
            v[i] = roundf(v[i]);
    }
    if (tc->offset != 0) {
        float *v = in->x.data;
        for (int64_t i = 0; i < dsv_tensor_numel(&in->x); i++)
            v[i] += tc->offset;
    }
    if (tc->op == DSV_OP_ADD)
        in->x2 = tu_randn(&r, DSV_F32, tc->xnd, tc->xs, 1.0);
    if (tc->wnd) {
        in->w = tu_randn(&r, DSV_F32, tc->wnd, tc->ws, 1.0);
        in->b = tu_randn(&r, DSV_F32, 1, (int64_t[]){tc->bn}, 1.0);
    }
    bool bn = tc->op == DSV_OP_BATCHNORM || tc->op == DSV_OP_SPATIAL_BATCHNORM;
    if (bn) {
        in->rm = tu_randn(&r, DSV_F32, 1, (int64_t[]){tc->bn}, 0.5);
        in->rv = tu_randn(&r, DSV_F32, 1, (int64_t[]){tc->bn}, 0.5);
        float *v = in->rv.data;
        for (int64_t i = 0; i < tc->bn; i++)
            v[i] = fabsf(v[i]) + 0.5f;
    }
    if (dsv_op_is_loss(tc->op))
        in->y = tu_labels(&r, tc->xs[0], (int)tc->xs[1]);
    dsv_call c = dsv_call_make(tc->op);
    c.x = &in->x;
    c.x2 = tc->op == DSV_OP_ADD ? &in->x2 : NULL;
    c.w = tc->wnd ? &in->w : NULL;
    c.b = tc->wnd ? &in->b : NULL;
    c.y = dsv_op_is_loss(tc->op) ? &in->y : NULL;
    c.p.stride = tc->stride ? tc->stride : 1;
    c.p.pad = tc->pad;
    c.p.pool_height = tc->ph ? tc->ph : 2;
    c.p.pool_width = tc->pw ? tc->pw : 2;
    c.p.groups = tc->groups ? tc->groups : 1;
    if (tc->p > 0)
        c.p.p = tc->p;
    double loss;
    c.loss = &loss;
    c.running_mean = bn ? &in->rm : NULL;
    c.running_var = bn ? &in->rv : NULL;
    TU_OK(dsv_op_check(&c, false, ond, os));
    in->dout = tu_randn(&r, DSV_F32, *ond, os, 1.0);
}

static void inputs_free(tinputs *in)
{
    dsv_tensor *ts[] = {&in->x, &in->x2, &in->w, &in->b, &in->y, &in->rm, &in->rv,
                        &in->dout};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        dsv_tensor_free(ts[i]);
}

static void run_free(trun *r)
{
    dsv_tensor *ts[] = {&r->out, &r->dx, &r->dx2, &r->dw, &r->db, &r->rm, &r->rv};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        dsv_tensor_free(ts[i]);
}

static dsv_call make_call(const tcase *tc, const tinputs *in, trun *r)
{
    dsv_call c = dsv_call_make(tc->op);
    c.x = &in->x;
    if (tc->op == DSV_OP_ADD)
        c.x2 = &in->x2;
    if (tc->wnd)
        c.w = &in->w, c.b = &in->b;
    if (dsv_op_is_loss(tc->op))
        c.y = &in->y;
    c.p.stride = tc->stride ? tc->stride : 1;
    c.p.pad = tc->pad;
    c.p.pool_height = tc->ph ? tc->ph : 2;
    c.p.pool_width = tc->pw ? tc->pw : 2;
    c.p.groups = tc->groups ? tc->groups : 1;
    if (tc->p > 0)
        c.p.p = tc->p;
    c.p.seed = 1234;
    c.p.row0 = tc->row0;
    c.p.train = !tc->test_mode;
    c.loss = &r->loss;
    if (r->rm.data)
        c.running_mean = &r->rm, c.running_var = &r->rv;
    c.out = &r->out;
    return c;
}

/* Runs forward and backward of tc on backend b, or through the kernel k when
 * it is set (the broken-kernel tests). */
static void run_one(const tcase *tc, const tinputs *in, int ond, const int64_t *os,
                    dsv_backend b, const dsv_kernel *k, trun *r)
{
    memset(r, 0, sizeof(*r));
    bool bn = tc->op == DSV_OP_BATCHNORM || tc->op == DSV_OP_SPATIAL_BATCHNORM;
    if (bn) {
        TU_OK(dsv_tensor_init_like(&r->rm, &in->rm));
        TU_OK(dsv_tensor_init_like(&r->rv, &in->rv));
        TU_OK(dsv_tensor_copy(&r->rm, &in->rm));
        TU_OK(dsv_tensor_copy(&r->rv, &in->rv));
    }
    TU_OK(dsv_tensor_init(&r->out, in->x.dtype, ond, os));
    if (dsv_op_is_loss(tc->op))
        TU_OK(dsv_tensor_init_like(&r->dx, &in->x));
    dsv_call c = make_call(tc, in, r);
    if (dsv_op_is_loss(tc->op))
        c.dx = &r->dx;
    r->used = b;
    dsv_backend used = b;
    if (k)
        TU_OK(k->forward(&c));
    else
        TU_OK(dsv_forward(&c, b, &used));
    if (used != b)
        r->used = used;
    if (dsv_op_is_loss(tc->op))
        return;

    /* backward on fresh running stats is not needed: it never reads them in
       train mode and only reads them in test mode */
    TU_OK(dsv_tensor_init_like(&r->dx, &in->x));
    if (tc->op == DSV_OP_ADD)
        TU_OK(dsv_tensor_init_like(&r->dx2, &in->x2));
    if (tc->wnd) {
        TU_OK(dsv_tensor_init_like(&r->dw, &in->w));
        TU_OK(dsv_tensor_init_like(&r->db, &in->b));
    }
    /* poison the gradients: backward must overwrite, not accumulate */
    dsv_tensor *gs[] = {&r->dx, &r->dx2, &r->dw, &r->db};
    for (int i = 0; i < 4; i++)
        for (int64_t j = 0; gs[i]->data && j < dsv_tensor_numel(gs[i]); j++)
            dsv_tensor_set(gs[i], j, 7.0);
    c.dout = &in->dout;
    c.dx = &r->dx;
    c.dx2 = r->dx2.data ? &r->dx2 : NULL;
    c.dw = r->dw.data ? &r->dw : NULL;
    c.db = r->db.data ? &r->db : NULL;
    if (bn && !tc->test_mode) {
        /* backward must not depend on the forward's running update */
        TU_OK(dsv_tensor_copy(&r->rm, &in->rm));
        TU_OK(dsv_tensor_copy(&r->rv, &in->rv));
    }
    if (k)
        TU_OK(k->backward(&c));
    else
        TU_OK(dsv_backward(&c, b, &used));
    if (used != b)
        r->used = used;
}

/* Worst error of r against the naive run ref, over every produced tensor. */
static double compare_runs(const trun *r, const trun *ref, bool loss,
                           double *fwd, double *bwd)
{
    double f = cmp_err(&r->out, &ref->out), g = 0;
    if (loss) {
        f = fabs(r->loss - ref->loss) / fmax(1e-8, fabs(r->loss) + fabs(ref->loss));
        f = fmax(f, cmp_err(&r->dx, &ref->dx));
    } else {
        g = cmp_err(&r->dx, &ref->dx);
        if (ref->dx2.data)
            g = fmax(g, cmp_err(&r->dx2, &ref->dx2));
        if (ref->dw.data)
            g = fmax(g, fmax(cmp_err(&r->dw, &ref->dw), cmp_err(&r->db, &ref->db)));
    }
    if (ref->rm.data)
        f = fmax(f, fmax(cmp_err(&r->rm, &ref->rm), cmp_err(&r->rv, &ref->rv)));
    *fwd = f, *bwd = g;
    return fmax(f, g);
}

/* A float64 copy of a float32 tensor (a zeroed tensor stays zeroed). */
static dsv_tensor to_f64(const dsv_tensor *t)
{
    dsv_tensor d;
    memset(&d, 0, sizeof(d));
    if (!t->data)
        return d;
    if (t->dtype != DSV_F32) { /* labels: copied as they are */
        TU_OK(dsv_tensor_init_like(&d, t));
        TU_OK(dsv_tensor_copy(&d, t));
        return d;
    }
    TU_OK(dsv_tensor_init(&d, DSV_F64, t->ndim, t->shape));
    TU_OK(dsv_tensor_copy(&d, t));
    return d;
}

/* Error of backend b (or kernel k) against naive on tc. With ref64 the
 * reference is the naive kernel in float64 on the same values. */
static dsv_backend last_used; /* kernel that ran in the last case_error */

static double case_error_ref(const tcase *tc, dsv_backend b, const dsv_kernel *k,
                             bool ref64, double *fwd, double *bwd)
{
    tinputs in, in64;
    int ond;
    int64_t os[4];
    inputs_init(tc, 99 + (uint64_t)tc->op, &in, &ond, os);
    trun ref, got;
    if (ref64) {
        in64 = (tinputs){to_f64(&in.x), to_f64(&in.x2), to_f64(&in.w), to_f64(&in.b),
                         to_f64(&in.y), to_f64(&in.rm), to_f64(&in.rv), to_f64(&in.dout)};
        run_one(tc, &in64, ond, os, DSV_BACKEND_NAIVE, NULL, &ref);
        inputs_free(&in64);
    } else {
        run_one(tc, &in, ond, os, DSV_BACKEND_NAIVE, NULL, &ref);
    }
    run_one(tc, &in, ond, os, b, k, &got);
    double e = compare_runs(&got, &ref, dsv_op_is_loss(tc->op), fwd, bwd);
    last_used = got.used;
    run_free(&ref);
    run_free(&got);
    inputs_free(&in);
    return e;
}

static double case_error(const tcase *tc, dsv_backend b, const dsv_kernel *k,
                         double *fwd, double *bwd)
{
    return case_error_ref(tc, b, k, false, fwd, bwd);
}

/* ---- the grid ------------------------------------------------------------ */

#define CONV(n, c, h, w, f, hh, ww, s, pd)                                      \
    {.op = DSV_OP_CONV, .xnd = 4, .xs = {n, c, h, w}, .wnd = 4,                 \
     .ws = {f, c, hh, ww}, .bn = f, .stride = s, .pad = pd}
#define POOL(n, c, h, w, ph_, pw_, s)                                           \
    {.op = DSV_OP_MAX_POOL, .xnd = 4, .xs = {n, c, h, w}, .ph = ph_, .pw = pw_, \
     .stride = s}
#define APOOL(n, c, h, w, ph_, pw_, s)                                          \
    {.op = DSV_OP_AVG_POOL, .xnd = 4, .xs = {n, c, h, w}, .ph = ph_, .pw = pw_, \
     .stride = s}
#define AFFINE(n, d, m)                                                         \
    {.op = DSV_OP_AFFINE, .xnd = 2, .xs = {n, d}, .wnd = 2, .ws = {d, m}, .bn = m}

static const tcase grid[] = {
    CONV(1, 1, 5, 5, 1, 1, 1, 1, 0),       /* 1x1 direct, single everything */
    CONV(2, 8, 9, 9, 4, 1, 1, 2, 0),       /* 1x1 strided: goes through im2col */
    CONV(2, 64, 6, 7, 8, 1, 1, 1, 0),      /* 1x1 direct, 64 channels */
    CONV(2, 3, 7, 9, 4, 3, 3, 1, 1),
    CONV(3, 5, 11, 9, 6, 5, 5, 2, 2),
    CONV(1, 2, 10, 12, 3, 2, 2, 2, 0),     /* even filter */
    CONV(2, 4, 8, 8, 5, 4, 4, 2, 1),
    CONV(3, 7, 9, 9, 5, 3, 3, 3, 3),       /* stride 3, pad 3 */
    CONV(4, 16, 13, 13, 32, 7, 7, 3, 3),   /* 7x7 */
    CONV(2, 3, 16, 11, 6, 7, 7, 1, 3),     /* 7x7, pad 3, non-square */
    CONV(1, 64, 5, 5, 64, 3, 3, 1, 1),     /* 64 channels, batch 1 */
    CONV(64, 3, 8, 8, 16, 3, 3, 1, 1),     /* batch 64 */
    CONV(64, 16, 12, 12, 8, 5, 5, 1, 2),
    CONV(2, 3, 31, 31, 25, 3, 3, 2, 1),
    CONV(2, 2, 4, 3, 3, 3, 3, 1, 0),       /* output 2x1 */
    CONV(2, 16, 40, 40, 4, 5, 5, 1, 2),    /* forward in blocks of output rows */
    CONV(1, 64, 3, 60, 2, 3, 3, 1, 1),     /* one output row per block */
    CONV(2, 3, 1, 1, 4, 1, 1, 1, 0),       /* 1x1 images */
    CONV(1, 2, 1, 1, 3, 3, 3, 1, 1),       /* padding wider than the image */
    CONV(2, 2, 2, 3, 2, 7, 7, 1, 3),       /* 7x7 filter over a 2x3 image */
    CONV(2, 3, 32, 32, 8, 7, 7, 1, 3),     /* CIFAR first layer: two whole tiles */
    CONV(3, 3, 9, 69, 5, 3, 3, 2, 1),      /* 35 columns: a 3-column last tile */
    CONV(3, 2, 8, 8, 3, 3, 3, 1, 0),       /* 6 columns: backward on im2col */
    /* direct backward on rows too short for whole vectors back into dx */
    CONV(2, 2, 4, 7, 3, 3, 3, 1, 3),       /* stride 1, 7 columns */
    CONV(2, 2, 5, 13, 3, 3, 3, 2, 3),      /* stride 2, 13 columns */
    CONV(2, 3, 7, 31, 4, 3, 3, 3, 1),      /* stride 3 */
    CONV(2, 3, 12, 32, 4, 4, 4, 2, 1),     /* stride 2, rows of whole 16-pixel runs */
    CONV(1, 64, 6, 6, 4, 5, 5, 1, 2),      /* K = 1600: forward on im2col */
    POOL(2, 3, 8, 8, 2, 2, 2),
    POOL(64, 3, 12, 12, 3, 3, 3),
    POOL(1, 4, 9, 7, 3, 3, 2),             /* overlapping */
    POOL(3, 2, 10, 6, 2, 3, 1),
    POOL(2, 5, 7, 9, 1, 1, 1),
    POOL(4, 64, 6, 6, 2, 2, 2),
    POOL(1, 2, 20, 20, 17, 17, 3),         /* windows over 256 elements */
    POOL(2, 3, 9, 8, 3, 2, 3),             /* non-square windows */
    POOL(3, 4, 18, 36, 2, 2, 2),           /* 2x2 rows of 18: SIMD steps and a tail */
    POOL(1, 1, 1, 1, 1, 1, 1),
    POOL(2, 2, 4, 5, 4, 5, 1),             /* one window covers the image */
    {.op = DSV_OP_MAX_POOL, .xnd = 4, .xs = {2, 3, 6, 36}, .ph = 2, .pw = 2,
     .stride = 2, .ties = true},          /* first maximum wins ties */
    {.op = DSV_OP_MAX_POOL, .xnd = 4, .xs = {2, 3, 7, 7}, .ph = 3, .pw = 3,
     .stride = 2, .ties = true},
    APOOL(2, 3, 8, 8, 2, 2, 2),            /* tiling windows */
    APOOL(64, 3, 12, 12, 3, 3, 3),
    APOOL(1, 4, 9, 7, 3, 3, 2),            /* overlapping */
    APOOL(3, 2, 10, 6, 2, 3, 1),           /* overlapping, non-square */
    APOOL(2, 3, 9, 8, 3, 2, 3),            /* disjoint, columns no window covers */
    APOOL(2, 5, 7, 9, 1, 1, 1),
    APOOL(4, 64, 6, 6, 2, 2, 2),           /* planes split among threads */
    APOOL(4, 16, 7, 7, 7, 7, 1),           /* global average pooling */
    APOOL(2, 2, 4, 5, 4, 5, 1),            /* global, non-square */
    APOOL(1, 1, 1, 1, 1, 1, 1),
    AFFINE(1, 3, 5),
    AFFINE(64, 24, 10),
    AFFINE(3, 65, 33),
    AFFINE(50, 1000, 100),
    AFFINE(7, 300, 1),
    {.op = DSV_OP_AFFINE, .xnd = 4, .xs = {5, 3, 4, 2}, .wnd = 2, .ws = {24, 7}, .bn = 7},
    {.op = DSV_OP_RELU, .xnd = 4, .xs = {3, 5, 7, 9}, .ties = true}, /* zeros */
    {.op = DSV_OP_RELU, .xnd = 2, .xs = {64, 2000}},
    {.op = DSV_OP_ADD, .xnd = 4, .xs = {2, 3, 5, 7}},
    {.op = DSV_OP_ADD, .xnd = 2, .xs = {64, 3000}},
    {.op = DSV_OP_DROPOUT, .xnd = 2, .xs = {64, 301}, .p = 0.3},
    {.op = DSV_OP_DROPOUT, .xnd = 4, .xs = {3, 4, 5, 6}, .p = 0.8, .row0 = 17},
    {.op = DSV_OP_DROPOUT, .xnd = 2, .xs = {5, 7}, .p = 0.5, .test_mode = true},
    {.op = DSV_OP_BATCHNORM, .xnd = 2, .xs = {64, 37}, .wnd = 1, .ws = {37}, .bn = 37},
    {.op = DSV_OP_BATCHNORM, .xnd = 2, .xs = {1, 5}, .wnd = 1, .ws = {5}, .bn = 5,
     .test_mode = true},
    {.op = DSV_OP_BATCHNORM, .xnd = 2, .xs = {7, 3}, .wnd = 1, .ws = {3}, .bn = 3},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {4, 6, 5, 7}, .wnd = 1,
     .ws = {6}, .bn = 6},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {64, 3, 4, 4}, .wnd = 1,
     .ws = {3}, .bn = 3},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {2, 64, 3, 3}, .wnd = 1,
     .ws = {64}, .bn = 64, .test_mode = true},
    {.op = DSV_OP_LAYERNORM, .xnd = 2, .xs = {64, 37}, .wnd = 1, .ws = {37}, .bn = 37},
    {.op = DSV_OP_LAYERNORM, .xnd = 2, .xs = {3, 1000}, .wnd = 1, .ws = {1000},
     .bn = 1000},
    {.op = DSV_OP_SPATIAL_GROUPNORM, .xnd = 4, .xs = {2, 6, 5, 7}, .wnd = 4,
     .ws = {1, 6, 1, 1}, .bn = 6, .groups = 2},
    {.op = DSV_OP_SPATIAL_GROUPNORM, .xnd = 4, .xs = {3, 64, 4, 3}, .wnd = 1,
     .ws = {64}, .bn = 64, .groups = 64},
    {.op = DSV_OP_SPATIAL_GROUPNORM, .xnd = 4, .xs = {64, 4, 3, 3}, .wnd = 1,
     .ws = {4}, .bn = 4, .groups = 1},
    /* large enough for the fast kernels to split among threads (the
       batchnorm's halves: 75 channels each, more than one block of 64;
       its elementwise pass split in the middle of a row) */
    {.op = DSV_OP_BATCHNORM, .xnd = 2, .xs = {301, 150}, .wnd = 1, .ws = {150},
     .bn = 150},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {16, 8, 16, 16}, .wnd = 1,
     .ws = {8}, .bn = 8},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {4, 3, 6, 6}, .wnd = 1,
     .ws = {3}, .bn = 3, .offset = 1000},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .xnd = 4, .xs = {2, 2, 40, 41}, .wnd = 1,
     .ws = {2}, .bn = 2, .offset = 3}, /* maps of 1640: two float runs */
    {.op = DSV_OP_BATCHNORM, .xnd = 2, .xs = {40, 9}, .wnd = 1, .ws = {9}, .bn = 9,
     .offset = -1000},
    {.op = DSV_OP_LAYERNORM, .xnd = 2, .xs = {32, 600}, .wnd = 1, .ws = {600},
     .bn = 600},
    {.op = DSV_OP_SPATIAL_GROUPNORM, .xnd = 4, .xs = {8, 8, 16, 16}, .wnd = 1,
     .ws = {8}, .bn = 8, .groups = 4},
    {.op = DSV_OP_SOFTMAX_LOSS, .xnd = 2, .xs = {300, 10}},
    {.op = DSV_OP_SVM_LOSS, .xnd = 2, .xs = {300, 10}},
    {.op = DSV_OP_SOFTMAX_LOSS, .xnd = 2, .xs = {64, 10}},
    {.op = DSV_OP_SOFTMAX_LOSS, .xnd = 2, .xs = {1, 3}},
    {.op = DSV_OP_SVM_LOSS, .xnd = 2, .xs = {64, 10}},
    {.op = DSV_OP_SVM_LOSS, .xnd = 2, .xs = {3, 7}},
};
#define NGRID (sizeof(grid) / sizeof(grid[0]))

/* Fixes the "b" of a norm case: its gamma is w. */
static const dsv_backend others[] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN};

static void test_grid(void **st)
{
    (void)st;
    double worst[2][DSV_OP_COUNT][2];
    bool seen[2][DSV_OP_COUNT], fell_back[2][DSV_OP_COUNT], ran[2][DSV_OP_COUNT];
    memset(worst, 0, sizeof(worst));
    memset(seen, 0, sizeof(seen));
    memset(fell_back, 0, sizeof(fell_back));
    memset(ran, 0, sizeof(ran));
    int failures = 0;
    for (int bi = 0; bi < 2; bi++) {
        if (!dsv_backend_available(others[bi]))
            continue;
        for (size_t i = 0; i < NGRID; i++) {
            double f, g;
            double e = case_error(&grid[i], others[bi], NULL, &f, &g);
            dsv_op op = grid[i].op;
            seen[bi][op] = true;
            if (last_used != others[bi])
                fell_back[bi][op] = true;
            else
                ran[bi][op] = true;
            /* oneDNN's offset cases are printed apart, with their bound */
            bool loose = fabsf(grid[i].offset) >= 100 && others[bi] == DSV_BACKEND_ONEDNN;
            if (!loose) {
                worst[bi][op][0] = fmax(worst[bi][op][0], f);
                worst[bi][op][1] = fmax(worst[bi][op][1], g);
            }
            /* fast's copies and selections must equal naive's exactly
               (dropout: the same mask, bit for bit) */
            bool exact = others[bi] == DSV_BACKEND_FAST &&
                         (op == DSV_OP_RELU || op == DSV_OP_MAX_POOL ||
                          op == DSV_OP_DROPOUT || op == DSV_OP_ADD);
            if (loose)
                printf("onednn: %s case %zu (offset %g): forward %.3g backward %.3g, "
                       "bound %g\n",
                       dsv_op_name(op), i, grid[i].offset, f, g, TOL_ONEDNN_OFFSET);
            if (!(e <= (loose ? TOL_ONEDNN_OFFSET : TOL)) || (exact && e != 0)) {
                print_message("%s: %s case %zu: forward %.3g backward %.3g\n",
                              dsv_backend_name(others[bi]), dsv_op_name(op), i, f, g);
                failures++;
            }
        }
    }
    printf("\nworst error against naive (float32, %zu configurations)\n", NGRID);
    printf("%-18s %-8s %-10s %-10s %s\n", "op", "backend", "fwd err", "bwd err",
           "note");
    for (int op = 0; op < DSV_OP_COUNT; op++)
        for (int bi = 0; bi < 2; bi++)
            if (seen[bi][op])
                printf("%-18s %-8s %-10.3g %-10.3g %s\n", dsv_op_name((dsv_op)op),
                       dsv_backend_name(others[bi]), worst[bi][op][0],
                       worst[bi][op][1],
                       !fell_back[bi][op] ? ""
                       : ran[bi][op] ? "(some cases fell back to naive)"
                                     : "(not implemented: ran on naive)");
    fflush(stdout);
    assert_int_equal(failures, 0);
}

/* ---- the course's timing cells, as equality checks ----------------------- */

/* The reference here is the naive kernel run in float64 on the same float32
 * values: the float32 naive kernel sums db and dw over 25600 terms one by
 * one, and its own rounding error (~1e-5 relative) is the size of the bound
 * being checked. Float32 products alone differ by ~1e-7 of the tensor's
 * scale, so a 1e-5 bound holds element by element only for elements near
 * that scale: errors are measured against max(|a| + |b|, max|ref|). */

static void test_course_cells(void **st)
{
    (void)st;
    const tcase conv = CONV(100, 3, 31, 31, 25, 3, 3, 2, 1);
    const tcase pool = POOL(100, 3, 32, 32, 2, 2, 2);
    cmp_floor = 1.0;
    for (int bi = 0; bi < 2; bi++) {
        if (!dsv_backend_available(others[bi]))
            continue;
        double f, g;
        double e = case_error_ref(&conv, others[bi], NULL, true, &f, &g);
        printf("course conv cell, %s: forward %.3g backward %.3g\n",
               dsv_backend_name(others[bi]), f, g);
        assert_true(e <= TOL_COURSE);
        e = case_error_ref(&pool, others[bi], NULL, true, &f, &g);
        printf("course pool cell, %s: forward %.3g backward %.3g\n",
               dsv_backend_name(others[bi]), f, g);
        assert_true(e <= TOL_COURSE);
    }
    cmp_floor = 1e-2;
}

/* ---- the fast backend in float64 ---------------------------------------- */

/* float64 results of fast against naive: both sum in double, so they agree
 * to rounding, ~1e-15 of the tensor's scale. */
#define TOL64 1e-12

static bool fast_has_f64(dsv_op op)
{
    return op == DSV_OP_CONV || op == DSV_OP_MAX_POOL || op == DSV_OP_AVG_POOL ||
           op == DSV_OP_AFFINE || op == DSV_OP_RELU || op == DSV_OP_BATCHNORM ||
           op == DSV_OP_SPATIAL_BATCHNORM;
}

/* float64 copies of a case's inputs, scaled by a factor near 1 so that the
 * values use all 53 bits (products of float32 values would be exact);
 * equal values stay equal, so the ties cases keep their ties. */
static void inputs_f64(const tinputs *in, tinputs *o)
{
    *o = (tinputs){to_f64(&in->x), to_f64(&in->x2), to_f64(&in->w), to_f64(&in->b),
                   to_f64(&in->y), to_f64(&in->rm), to_f64(&in->rv), to_f64(&in->dout)};
    dsv_tensor *ts[] = {&o->x, &o->x2, &o->w, &o->b, &o->dout};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        for (int64_t j = 0; ts[i]->data && j < dsv_tensor_numel(ts[i]); j++)
            dsv_tensor_set(ts[i], j, dsv_tensor_get(ts[i], j) * 1.000000123456789);
}

/* Error of fast (or kernel k) against naive on tc in float64, with the
 * global thread count set to nt; got is kept for the caller (run_free). */
static double case_error_f64(const tcase *tc, const dsv_kernel *k, int nt, trun *got,
                             double *fwd, double *bwd)
{
    tinputs in, in64;
    int ond;
    int64_t os[4];
    inputs_init(tc, 99 + (uint64_t)tc->op, &in, &ond, os);
    inputs_f64(&in, &in64);
    int saved = dsv_get_num_threads();
    trun ref;
    run_one(tc, &in64, ond, os, DSV_BACKEND_NAIVE, NULL, &ref);
    TU_OK(dsv_set_num_threads(nt));
    run_one(tc, &in64, ond, os, DSV_BACKEND_FAST, k, got);
    TU_OK(dsv_set_num_threads(saved));
    double e = compare_runs(got, &ref, dsv_op_is_loss(tc->op), fwd, bwd);
    run_free(&ref);
    inputs_free(&in);
    inputs_free(&in64);
    return e;
}

/* True if every tensor of a and b is bit for bit the same. */
static bool runs_identical(const trun *a, const trun *b)
{
    const dsv_tensor *ta[] = {&a->out, &a->dx, &a->dx2, &a->dw, &a->db, &a->rm, &a->rv};
    const dsv_tensor *tb[] = {&b->out, &b->dx, &b->dx2, &b->dw, &b->db, &b->rm, &b->rv};
    for (size_t i = 0; i < sizeof(ta) / sizeof(ta[0]); i++) {
        if (!ta[i]->data != !tb[i]->data)
            return false;
        if (ta[i]->data &&
            memcmp(ta[i]->data, tb[i]->data, dsv_tensor_nbytes(ta[i])) != 0)
            return false;
    }
    return true;
}

/* The grid and the course's two cells in float64: fast's float64 kernels
 * against naive within TOL64 with 1 and 2 threads, results bit for bit the
 * same with 1, 2 and 3 threads, and the ops without float64 kernels falling
 * back to naive. */
static void test_fast_f64(void **st)
{
    (void)st;
    static const tcase course[] = {CONV(100, 3, 31, 31, 25, 3, 3, 2, 1),
                                   POOL(100, 3, 32, 32, 2, 2, 2)};
    double worst[DSV_OP_COUNT][2];
    bool seen[DSV_OP_COUNT];
    memset(worst, 0, sizeof(worst));
    memset(seen, 0, sizeof(seen));
    int failures = 0, ncases = 0;
    for (size_t i = 0; i < NGRID + 2; i++) {
        const tcase *tc = i < NGRID ? &grid[i] : &course[i - NGRID];
        dsv_op op = tc->op;
        trun r[3];
        double f, g;
        if (!fast_has_f64(op)) {
            case_error_f64(tc, NULL, 2, &r[0], &f, &g);
            if (r[0].used != DSV_BACKEND_NAIVE) {
                print_message("%s case %zu: float64 did not fall back to naive\n",
                              dsv_op_name(op), i);
                failures++;
            }
            run_free(&r[0]);
            continue;
        }
        ncases++;
        seen[op] = true;
        for (int t = 0; t < 3; t++) {
            double e = case_error_f64(tc, NULL, t + 1, &r[t], &f, &g);
            worst[op][0] = fmax(worst[op][0], f);
            worst[op][1] = fmax(worst[op][1], g);
            /* copies and selections, and the batch norms, which repeat the
               reference's arithmetic: equal bit for bit */
            bool exact = op == DSV_OP_RELU || op == DSV_OP_MAX_POOL ||
                         op == DSV_OP_BATCHNORM || op == DSV_OP_SPATIAL_BATCHNORM;
            if (r[t].used != DSV_BACKEND_FAST || !(e <= TOL64) || (exact && e != 0)) {
                print_message("fast f64: %s case %zu, %d threads (%s): forward %.3g "
                              "backward %.3g\n",
                              dsv_op_name(op), i, t + 1, dsv_backend_name(r[t].used), f, g);
                failures++;
            }
            if (t > 0 && !runs_identical(&r[t], &r[0])) {
                print_message("fast f64: %s case %zu: %d threads differ from 1\n",
                              dsv_op_name(op), i, t + 1);
                failures++;
            }
        }
        for (int t = 0; t < 3; t++)
            run_free(&r[t]);
    }
    printf("\nworst error of fast against naive (float64, %d configurations, "
           "1-3 threads)\n", ncases);
    printf("%-18s %-10s %-10s\n", "op", "fwd err", "bwd err");
    for (int op = 0; op < DSV_OP_COUNT; op++)
        if (seen[op])
            printf("%-18s %-10.3g %-10.3g\n", dsv_op_name((dsv_op)op), worst[op][0],
                   worst[op][1]);
    fflush(stdout);
    assert_int_equal(failures, 0);
    for (int op = 0; op < DSV_OP_COUNT; op++)
        assert_true(seen[op] == fast_has_f64((dsv_op)op));
}

/* The float64 check fails on kernels that are off at the 1e-10 level. */
static dsv_status conv_f64_one_wrong(dsv_call *c)
{
    dsv_status s = dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].forward(c);
    ((double *)c->out->data)[dsv_tensor_numel(c->out) - 1] *= 1 + 1e-10;
    return s;
}

static dsv_status conv_f64_bad_db(dsv_call *c)
{
    dsv_status s = dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].backward(c);
    if (c->db)
        ((double *)c->db->data)[0] *= 1 + 1e-10;
    return s;
}

static void test_f64_checker_catches_broken(void **st)
{
    (void)st;
    const dsv_kernel *fast = &dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV];
    const tcase conv = CONV(3, 5, 11, 9, 6, 5, 5, 2, 2);
    double f, g;
    trun r;
    /* the intact kernels pass through the same path */
    assert_true(case_error_f64(&conv, fast, 1, &r, &f, &g) <= TOL64);
    run_free(&r);
    dsv_kernel k1 = {.forward = conv_f64_one_wrong, .backward = fast->backward};
    case_error_f64(&conv, &k1, 1, &r, &f, &g);
    run_free(&r);
    assert_true(f > TOL64 && g <= TOL64);
    dsv_kernel k2 = {.forward = fast->forward, .backward = conv_f64_bad_db};
    case_error_f64(&conv, &k2, 1, &r, &f, &g);
    run_free(&r);
    assert_true(f <= TOL64 && g > TOL64);
}

/* ---- the checker catches broken kernels ---------------------------------- */

/* The fast conv, then one output element (the largest) off by 0.1%. */
static dsv_status conv_one_wrong(dsv_call *c)
{
    dsv_status s = dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].forward(c);
    float *o = c->out->data;
    int64_t n = dsv_tensor_numel(c->out), at = 0;
    for (int64_t i = 1; i < n; i++)
        if (fabsf(o[i]) > fabsf(o[at]))
            at = i;
    o[at] *= 1.001f;
    return s;
}

/* The fast conv run with the input shifted by one column, as an
 * off-by-one in the padding would do. */
static dsv_status conv_shifted(dsv_call *c)
{
    dsv_tensor xs;
    TU_OK(dsv_tensor_init_like(&xs, c->x));
    const float *x = c->x->data;
    float *d = xs.data;
    int64_t W = c->x->shape[3], rows = dsv_tensor_numel(c->x) / W;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < W; j++)
            d[r * W + j] = j + 1 < W ? x[r * W + j + 1] : 0.0f;
    const dsv_tensor *orig = c->x;
    c->x = &xs;
    dsv_status s = dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].forward(c);
    c->x = orig;
    dsv_tensor_free(&xs);
    return s;
}

/* dw of the fast conv with one element off by 0.1%. */
static dsv_status conv_bad_dw(dsv_call *c)
{
    dsv_status s = dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].backward(c);
    if (c->dw)
        ((float *)c->dw->data)[0] *= 1.001f;
    return s;
}

/* Max pool backward that sends a window's gradient to its last element. */
static dsv_status pool_bad_backward(dsv_call *c)
{
    dsv_status s =
        dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_MAX_POOL].backward(c);
    float *dx = c->dx->data;
    int64_t n = dsv_tensor_numel(c->dx);
    float t = dx[n - 1];
    dx[n - 1] = dx[n - 2], dx[n - 2] = t;
    return s;
}

static dsv_status fast_forward(dsv_call *c, dsv_op op)
{
    return dsv_backend_get(DSV_BACKEND_FAST)->kernels[op].forward(c);
}
static dsv_status conv_fwd(dsv_call *c) { return fast_forward(c, DSV_OP_CONV); }
static dsv_status pool_fwd(dsv_call *c) { return fast_forward(c, DSV_OP_MAX_POOL); }
static dsv_status conv_bwd(dsv_call *c)
{
    return dsv_backend_get(DSV_BACKEND_FAST)->kernels[DSV_OP_CONV].backward(c);
}

static void test_checker_catches_broken(void **st)
{
    (void)st;
    const tcase conv = CONV(2, 3, 7, 9, 4, 3, 3, 1, 1);
    const tcase pool = POOL(2, 3, 8, 8, 2, 2, 2);
    double f, g;
    /* the honest kernels, called the same way, pass */
    dsv_kernel ok = {.forward = conv_fwd, .backward = conv_bwd};
    assert_true(case_error(&conv, DSV_BACKEND_FAST, &ok, &f, &g) <= TOL);

    dsv_kernel k1 = {.forward = conv_one_wrong, .backward = conv_bwd};
    case_error(&conv, DSV_BACKEND_FAST, &k1, &f, &g);
    assert_true(f > TOL);
    dsv_kernel k2 = {.forward = conv_shifted, .backward = conv_bwd};
    case_error(&conv, DSV_BACKEND_FAST, &k2, &f, &g);
    assert_true(f > TOL);
    dsv_kernel k3 = {.forward = conv_fwd, .backward = conv_bad_dw};
    case_error(&conv, DSV_BACKEND_FAST, &k3, &f, &g);
    assert_true(f <= TOL && g > TOL);
    dsv_kernel k4 = {.forward = pool_fwd, .backward = pool_bad_backward};
    case_error(&pool, DSV_BACKEND_FAST, &k4, &f, &g);
    assert_true(g > TOL);

    /* and the comparison itself: NaN, a tiny absolute error near zero */
    dsv_tensor a = tu_zeros(DSV_F32, 1, (int64_t[]){3});
    dsv_tensor b = tu_zeros(DSV_F32, 1, (int64_t[]){3});
    dsv_tensor_set(&a, 0, 1.0), dsv_tensor_set(&b, 0, 1.0);
    dsv_tensor_set(&a, 1, 1e-9), dsv_tensor_set(&b, 1, -1e-9);
    assert_true(cmp_err(&a, &b) <= TOL);  /* far below the scale: absolute */
    dsv_tensor_set(&a, 2, 0.5), dsv_tensor_set(&b, 2, 0.5001);
    assert_true(cmp_err(&a, &b) > TOL);
    dsv_tensor_set(&a, 2, NAN);
    assert_true(cmp_err(&a, &b) > TOL);
    dsv_tensor_free(&a);
    dsv_tensor_free(&b);
}

/* ---- the fast sgemm's micro-kernels against a plain loop ----------------- */

static void test_sgemm_variants(void **st)
{
    (void)st;
    static const int64_t shapes[][3] = {
        {1, 1, 1},   {5, 7, 3},    {25, 256, 27}, {33, 65, 300},
        {50, 100, 513}, {97, 31, 17}, {8, 32, 1},   {130, 1030, 40},
        {1, 500, 600},  {1, 13, 300}, {1, 64, 257},  {7, 500, 300},
    };
    dsv_fast_isa saved = dsv_fast_get_isa();
    tu_rng r = {7};
    int tested = 0;
    for (int isa = 0; isa < DSV_FAST_ISA_COUNT; isa++) {
        if (!dsv_fast_set_isa((dsv_fast_isa)isa)) {
            printf("sgemm %s: not supported here, skipped\n",
                   dsv_fast_isa_name((dsv_fast_isa)isa));
            continue;
        }
        tested++;
        double worst = 0;
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            for (int tr = 0; tr < 4; tr++)
                for (int nt = 1; nt <= 2; nt++)
                    for (int beta = 0; beta <= 1; beta++) {
                        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                        bool ta = tr & 1, tb = tr & 2;
                        dsv_tensor A = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * K}, 1);
                        dsv_tensor B = tu_randn(&r, DSV_F32, 1, (int64_t[]){K * N}, 1);
                        /* 8 floats past C must stay as they were */
                        dsv_tensor C = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * N + 8}, 1);
                        dsv_tensor R = tu_zeros(DSV_F32, 1, (int64_t[]){M * N + 8});
                        const float *a = A.data, *b = B.data;
                        float *cc = C.data, *rr = R.data;
                        memcpy(rr + M * N, cc + M * N, 8 * sizeof(float));
                        int64_t lda = ta ? M : K, ldb = tb ? K : N;
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = 0; j < N; j++) {
                                double acc = beta ? cc[i * N + j] : 0;
                                for (int64_t k = 0; k < K; k++)
                                    acc += (double)(ta ? a[k * lda + i] : a[i * lda + k]) *
                                           (tb ? b[j * ldb + k] : b[k * ldb + j]);
                                rr[i * N + j] = (float)acc;
                            }
                        dsv_fast_sgemm(ta, tb, M, N, K, a, lda, b, ldb, (float)beta,
                                       cc, N, nt);
                        worst = fmax(worst, cmp_err(&C, &R));
                        dsv_tensor_free(&A), dsv_tensor_free(&B);
                        dsv_tensor_free(&C), dsv_tensor_free(&R);
                    }
        printf("sgemm %s: worst error %.3g\n", dsv_fast_isa_name((dsv_fast_isa)isa),
               worst);
        assert_true(worst <= TOL);
    }
    assert_true(tested >= 1);
    assert_true(dsv_fast_set_isa(saved));
}

/* A one-row product (a batch-1 affine has its own kernel) gives the bits of
 * the same row in a larger product, on every ISA, thread count and beta. */
static void test_sgemm_row_bits(void **st)
{
    (void)st;
    enum { M = 7, N = 500, K = 600 };
    dsv_fast_isa saved = dsv_fast_get_isa();
    tu_rng r = {11};
    dsv_tensor A = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * K}, 1);
    dsv_tensor B = tu_randn(&r, DSV_F32, 1, (int64_t[]){K * N}, 1);
    dsv_tensor C0 = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * N}, 1);
    static float full[M * N], row[N];
    const float *a = A.data, *b = B.data, *c0 = C0.data;
    for (int isa = 0; isa < DSV_FAST_ISA_COUNT; isa++) {
        if (!dsv_fast_set_isa((dsv_fast_isa)isa))
            continue;
        for (int ta = 0; ta <= 1; ta++)
            for (int beta = 0; beta <= 1; beta++)
                for (int nt = 1; nt <= 2; nt++) {
                    int64_t lda = ta ? M : K;
                    memcpy(full, c0, sizeof(full));
                    dsv_fast_sgemm(ta, false, M, N, K, a, lda, b, N, (float)beta, full, N, 2);
                    for (int64_t i = 0; i < M; i++) {
                        memcpy(row, c0 + i * N, sizeof(row));
                        dsv_fast_sgemm(ta, false, 1, N, K, ta ? a + i : a + i * K, lda, b,
                                       N, (float)beta, row, N, nt);
                        assert_memory_equal(row, full + i * N, sizeof(row));
                    }
                }
    }
    assert_true(dsv_fast_set_isa(saved));
    dsv_tensor_free(&A), dsv_tensor_free(&B), dsv_tensor_free(&C0);
}

/* The same bits with 1 to 4 threads, on every ISA, transpose and beta, for
 * products split statically (few column blocks, a large B) and dynamically
 * (many column blocks; many rows with a small B). */
static void test_sgemm_thread_bits(void **st)
{
    (void)st;
    static const int64_t shapes[][3] = {
        {50, 500, 700}, {20, 3000, 70}, {1200, 90, 40}, {97, 1030, 300}, {800, 70, 600},
    };
    dsv_fast_isa saved = dsv_fast_get_isa();
    tu_rng r = {12};
    for (int isa = 0; isa < DSV_FAST_ISA_COUNT; isa++) {
        if (!dsv_fast_set_isa((dsv_fast_isa)isa))
            continue;
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            dsv_tensor A = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * K}, 1);
            dsv_tensor B = tu_randn(&r, DSV_F32, 1, (int64_t[]){K * N}, 1);
            dsv_tensor C0 = tu_randn(&r, DSV_F32, 1, (int64_t[]){M * N}, 1);
            float *one = malloc(sizeof(float) * (size_t)(M * N));
            float *many = malloc(sizeof(float) * (size_t)(M * N));
            assert_non_null(one);
            assert_non_null(many);
            for (int tr = 0; tr < 4; tr++)
                for (int beta = 0; beta <= 1; beta++) {
                    bool ta = tr & 1, tb = tr & 2;
                    int64_t lda = ta ? M : K, ldb = tb ? K : N;
                    memcpy(one, C0.data, sizeof(float) * (size_t)(M * N));
                    dsv_fast_sgemm(ta, tb, M, N, K, A.data, lda, B.data, ldb, (float)beta,
                                   one, N, 1);
                    for (int nt = 2; nt <= 4; nt++) {
                        memcpy(many, C0.data, sizeof(float) * (size_t)(M * N));
                        dsv_fast_sgemm(ta, tb, M, N, K, A.data, lda, B.data, ldb,
                                       (float)beta, many, N, nt);
                        assert_memory_equal(one, many, sizeof(float) * (size_t)(M * N));
                    }
                }
            free(one), free(many);
            dsv_tensor_free(&A), dsv_tensor_free(&B), dsv_tensor_free(&C0);
        }
    }
    assert_true(dsv_fast_set_isa(saved));
}

/* ---- the fast dgemm's micro-kernels against a plain loop ----------------- */

/* Every dgemm variant this CPU runs, every transpose and beta, on shapes
 * with edge tiles in both directions and K, N past one cache block: within
 * TOL64 of a plain loop, and bit for bit the same with 1, 2 and 3 threads. */
static void test_dgemm_variants(void **st)
{
    (void)st;
    static const int64_t shapes[][3] = {
        {1, 1, 1},   {5, 7, 3},     {25, 256, 28}, {33, 65, 300},
        {97, 31, 17}, {8, 16, 1},   {13, 1030, 257}, {150, 9, 600},
    };
    dsv_fast_isa saved = dsv_fast_get_isa();
    tu_rng r = {8};
    int tested = 0;
    for (int isa = 0; isa < DSV_FAST_ISA_COUNT; isa++) {
        if (!dsv_fast_set_isa((dsv_fast_isa)isa)) {
            printf("dgemm %s: not supported here, skipped\n",
                   dsv_fast_isa_name((dsv_fast_isa)isa));
            continue;
        }
        tested++;
        double worst = 0;
        bool same = true;
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            for (int tr = 0; tr < 4; tr++)
                for (int beta = 0; beta <= 1; beta++) {
                    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    bool ta = tr & 1, tb = tr & 2;
                    dsv_tensor A = tu_randn(&r, DSV_F64, 1, (int64_t[]){M * K}, 1);
                    dsv_tensor B = tu_randn(&r, DSV_F64, 1, (int64_t[]){K * N}, 1);
                    dsv_tensor C0 = tu_randn(&r, DSV_F64, 1, (int64_t[]){M * N}, 1);
                    dsv_tensor R = tu_zeros(DSV_F64, 1, (int64_t[]){M * N});
                    const double *a = A.data, *b = B.data, *c0 = C0.data;
                    double *rr = R.data;
                    int64_t lda = ta ? M : K, ldb = tb ? K : N;
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) {
                            long double acc = beta ? c0[i * N + j] : 0;
                            for (int64_t k = 0; k < K; k++)
                                acc += (long double)(ta ? a[k * lda + i] : a[i * lda + k]) *
                                       (tb ? b[j * ldb + k] : b[k * ldb + j]);
                            rr[i * N + j] = (double)acc;
                        }
                    dsv_tensor C[3];
                    for (int nt = 1; nt <= 3; nt++) {
                        dsv_tensor *cc = &C[nt - 1];
                        TU_OK(dsv_tensor_init_like(cc, &C0));
                        TU_OK(dsv_tensor_copy(cc, &C0));
                        dsv_fast_dgemm(ta, tb, M, N, K, a, lda, b, ldb, beta, cc->data,
                                       N, nt);
                        worst = fmax(worst, cmp_err(cc, &R));
                        if (nt > 1 && memcmp(cc->data, C[0].data, dsv_tensor_nbytes(cc)))
                            same = false;
                    }
                    for (int nt = 0; nt < 3; nt++)
                        dsv_tensor_free(&C[nt]);
                    dsv_tensor_free(&A), dsv_tensor_free(&B);
                    dsv_tensor_free(&C0), dsv_tensor_free(&R);
                }
        printf("dgemm %s: worst error %.3g, threads 1-3 %s\n",
               dsv_fast_isa_name((dsv_fast_isa)isa), worst,
               same ? "identical" : "DIFFER");
        assert_true(worst <= TOL64);
        assert_true(same);
    }
    assert_true(tested >= 1);
    assert_true(dsv_fast_set_isa(saved));
}

/* ---- per-node state: reuse, shape changes, stale argmax ------------------ */

static void test_fast_state(void **st)
{
    (void)st;
    const tcase cases[] = {CONV(3, 4, 9, 9, 5, 3, 3, 1, 1), CONV(2, 4, 12, 10, 5, 5, 5, 1, 2),
                           POOL(2, 3, 8, 20, 2, 2, 2), POOL(2, 3, 9, 9, 3, 3, 2)};
    dsv_state state = {0};
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            const tcase *tc = &cases[i];
            tinputs in;
            int ond;
            int64_t os[4];
            inputs_init(tc, 5 + i, &in, &ond, os);
            trun ref, got;
            run_one(tc, &in, ond, os, DSV_BACKEND_NAIVE, NULL, &ref);
            memset(&got, 0, sizeof(got));
            TU_OK(dsv_tensor_init(&got.out, DSV_F32, ond, os));
            TU_OK(dsv_tensor_init_like(&got.dx, &in.x));
            if (tc->wnd) {
                TU_OK(dsv_tensor_init_like(&got.dw, &in.w));
                TU_OK(dsv_tensor_init_like(&got.db, &in.b));
            }
            dsv_call c = make_call(tc, &in, &got);
            c.state = &state;
            dsv_backend used;
            TU_OK(dsv_forward(&c, DSV_BACKEND_FAST, &used));
            assert_int_equal(used, DSV_BACKEND_FAST);
            assert_non_null(state.ptr);
            c.dout = &in.dout, c.dx = &got.dx;
            c.dw = tc->wnd ? &got.dw : NULL, c.db = tc->wnd ? &got.db : NULL;
            TU_OK(dsv_backward(&c, DSV_BACKEND_FAST, NULL));
            double f, g;
            assert_true(compare_runs(&got, &ref, false, &f, &g) <= TOL);
            if (tc->op == DSV_OP_MAX_POOL) {
                /* same pointer and shape, new values: the saved argmax is
                   stale; a fresh forward must refresh it */
                float *xv = in.x.data;
                for (int64_t j = 0; j < dsv_tensor_numel(&in.x); j++)
                    xv[j] = -xv[j];
                run_free(&ref);
                run_one(tc, &in, ond, os, DSV_BACKEND_NAIVE, NULL, &ref);
                TU_OK(dsv_forward(&c, DSV_BACKEND_FAST, NULL));
                TU_OK(dsv_backward(&c, DSV_BACKEND_FAST, NULL));
                assert_true(compare_runs(&got, &ref, false, &f, &g) <= TOL);
                /* backward on a different input than the forward's */
                dsv_tensor x2;
                TU_OK(dsv_tensor_init_like(&x2, &in.x));
                TU_OK(dsv_tensor_copy(&x2, &in.x));
                c.x = &x2;
                TU_OK(dsv_backward(&c, DSV_BACKEND_FAST, NULL));
                assert_true(compare_runs(&got, &ref, false, &f, &g) <= TOL);
                dsv_tensor_free(&x2);
            }
            run_free(&ref);
            run_free(&got);
            inputs_free(&in);
        }
    dsv_state_free(&state);
    assert_null(state.ptr);
}

/* ---- threads: deterministic, and slices inside a parallel region --------- */

/* Forward of tc on the fast backend over rows [n0, n0+n) of x into the same
 * rows of out, with nthreads threads. */
static void fast_forward_rows(const tcase *tc, const tinputs *in, dsv_tensor *out,
                              int64_t n0, int64_t n, int nthreads)
{
    dsv_tensor xs = dsv_tensor_slice(&in->x, n0, n), os = dsv_tensor_slice(out, n0, n);
    trun r;
    memset(&r, 0, sizeof(r));
    dsv_call c = make_call(tc, in, &r);
    c.x = &xs, c.out = &os, c.nthreads = nthreads;
    TU_OK(dsv_forward(&c, DSV_BACKEND_FAST, NULL));
}

static void test_fast_threads(void **st)
{
    (void)st;
    const tcase cases[] = {CONV(8, 3, 13, 13, 6, 3, 3, 2, 1), CONV(6, 4, 9, 9, 5, 1, 1, 1, 0),
                           POOL(6, 3, 16, 16, 2, 2, 2), APOOL(6, 3, 16, 16, 3, 3, 1),
                           AFFINE(8, 300, 40)};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tcase *tc = &cases[i];
        tinputs in;
        int ond;
        int64_t os[4];
        inputs_init(tc, 11 + i, &in, &ond, os);
        /* two runs with two threads, forward and backward: bit-identical */
        trun a, b;
        run_one(tc, &in, ond, os, DSV_BACKEND_FAST, NULL, &a);
        run_one(tc, &in, ond, os, DSV_BACKEND_FAST, NULL, &b);
        assert_memory_equal(a.out.data, b.out.data, dsv_tensor_nbytes(&a.out));
        assert_memory_equal(a.dx.data, b.dx.data, dsv_tensor_nbytes(&a.dx));
        if (tc->wnd)
            assert_memory_equal(a.dw.data, b.dw.data, dsv_tensor_nbytes(&a.dw));
        /* the batch split between two threads, each kernel told nthreads 1
           (so it must not open a parallel region of its own) */
        dsv_tensor split;
        TU_OK(dsv_tensor_init(&split, DSV_F32, ond, os));
        int64_t N = tc->xs[0];
#pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            fast_forward_rows(tc, &in, &split, N * t / nt, N * (t + 1) / nt - N * t / nt, 1);
        }
        assert_true(cmp_err(&split, &a.out) <= TOL);
        if (tc->op == DSV_OP_CONV || tc->op == DSV_OP_MAX_POOL ||
            tc->op == DSV_OP_AVG_POOL) /* per image */
            assert_memory_equal(split.data, a.out.data, dsv_tensor_nbytes(&a.out));
        dsv_tensor_free(&split);
        run_free(&a);
        run_free(&b);
        inputs_free(&in);
    }
}

/* ---- the fast conv's two paths ------------------------------------------ */

/* Every conv of the grid on the fast backend through both of its paths: the
 * direct kernels where they apply, and im2col + sgemm with them forbidden.
 * The grid must reach each path in each pass. */
static void test_fast_conv_paths(void **st)
{
    (void)st;
    if (!dsv_fast_conv_direct_ok(&(dsv_call){.op = DSV_OP_CONV,
                                              .x = &(dsv_tensor){.shape = {1, 3, 8, 8}},
                                              .w = &(dsv_tensor){.shape = {4, 3, 3, 3}},
                                              .p = {.stride = 1, .pad = 1}},
                                 false)) {
        printf("direct conv: not supported here (no AVX2), skipped\n");
        skip();
    }
    int direct[2] = {0, 0}, other[2] = {0, 0};
    double worst[2] = {0, 0};
    for (size_t i = 0; i < NGRID; i++) {
        if (grid[i].op != DSV_OP_CONV)
            continue;
        tinputs in;
        int ond;
        int64_t os[4];
        inputs_init(&grid[i], 5, &in, &ond, os);
        trun r;
        memset(&r, 0, sizeof(r));
        dsv_call c = make_call(&grid[i], &in, &r);
        for (int bwd = 0; bwd < 2; bwd++)
            (dsv_fast_conv_direct_ok(&c, bwd) ? direct : other)[bwd]++;
        inputs_free(&in);
        for (int allow = 0; allow < 2; allow++) {
            dsv_fast_conv_set_direct(allow);
            double f, g;
            double e = case_error(&grid[i], DSV_BACKEND_FAST, NULL, &f, &g);
            worst[allow] = fmax(worst[allow], e);
            if (!(e <= TOL))
                print_message("conv case %zu, direct %s: forward %.3g backward %.3g\n",
                              i, allow ? "allowed" : "forbidden", f, g);
        }
    }
    dsv_fast_conv_set_direct(true);
    printf("fast conv: direct kernel on %d forward and %d backward grid cases "
           "(im2col on %d and %d); worst error %.3g direct allowed, %.3g im2col only\n",
           direct[0], direct[1], other[0], other[1], worst[1], worst[0]);
    assert_true(worst[0] <= TOL && worst[1] <= TOL);
    assert_true(direct[0] > 0 && direct[1] > 0 && other[0] > 0 && other[1] > 0);
}

/* The direct conv's dw/db partial sums are kept per chunk of images, not per
 * thread: 1, 2 and 3 threads give bit-identical results. */
static void test_fast_conv_thread_counts(void **st)
{
    (void)st;
    const tcase tc = CONV(21, 3, 19, 19, 7, 3, 3, 2, 1);
    tinputs in;
    int ond;
    int64_t os[4];
    inputs_init(&tc, 17, &in, &ond, os);
    trun r[3];
    memset(&r[0], 0, sizeof(r[0]));
    dsv_call c = make_call(&tc, &in, &r[0]);
    if (!dsv_fast_conv_direct_ok(&c, true)) {
        inputs_free(&in);
        skip(); /* no AVX2 */
    }
    int saved = dsv_get_num_threads();
    for (int t = 0; t < 3; t++) {
        TU_OK(dsv_set_num_threads(t + 1));
        run_one(&tc, &in, ond, os, DSV_BACKEND_FAST, NULL, &r[t]);
    }
    TU_OK(dsv_set_num_threads(saved));
    for (int t = 1; t < 3; t++) {
        assert_memory_equal(r[t].out.data, r[0].out.data, dsv_tensor_nbytes(&r[0].out));
        assert_memory_equal(r[t].dx.data, r[0].dx.data, dsv_tensor_nbytes(&r[0].dx));
        assert_memory_equal(r[t].dw.data, r[0].dw.data, dsv_tensor_nbytes(&r[0].dw));
        assert_memory_equal(r[t].db.data, r[0].db.data, dsv_tensor_nbytes(&r[0].db));
    }
    for (int t = 0; t < 3; t++)
        run_free(&r[t]);
    inputs_free(&in);
}

/* ---- dispatch: what a backend cannot run falls back to naive ------------- */

static void test_dispatch_fallback(void **st)
{
    (void)st;
    tu_rng r = {3};
    /* float64: fast runs conv itself, oneDNN falls back to naive */
    dsv_tensor x = tu_randn(&r, DSV_F64, 4, (int64_t[]){2, 3, 6, 6}, 1);
    dsv_tensor w = tu_randn(&r, DSV_F64, 4, (int64_t[]){4, 3, 3, 3}, 1);
    dsv_tensor b = tu_randn(&r, DSV_F64, 1, (int64_t[]){4}, 1);
    dsv_tensor out = tu_zeros(DSV_F64, 4, (int64_t[]){2, 4, 4, 4});
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b, c.out = &out;
    for (int bi = 0; bi < 2; bi++) {
        if (!dsv_backend_available(others[bi]))
            continue;
        dsv_backend want = others[bi] == DSV_BACKEND_FAST ? DSV_BACKEND_FAST
                                                          : DSV_BACKEND_NAIVE;
        assert_int_equal(dsv_pick_backend(&c, false, others[bi]), want);
        dsv_backend used = DSV_BACKEND_AUTO;
        TU_OK(dsv_forward(&c, others[bi], &used));
        assert_int_equal(used, want);
    }
    /* an op without fast float64 kernels falls back to naive */
    dsv_tensor xl = tu_randn(&r, DSV_F64, 2, (int64_t[]){4, 5}, 1);
    dsv_tensor gl = tu_randn(&r, DSV_F64, 1, (int64_t[]){5}, 1);
    dsv_tensor ol = tu_zeros(DSV_F64, 2, (int64_t[]){4, 5});
    dsv_call cl = dsv_call_make(DSV_OP_LAYERNORM);
    cl.x = &xl, cl.w = &gl, cl.b = &gl, cl.out = &ol;
    assert_int_equal(dsv_pick_backend(&cl, false, DSV_BACKEND_FAST), DSV_BACKEND_NAIVE);
    assert_int_equal(dsv_pick_backend(&cl, true, DSV_BACKEND_FAST), DSV_BACKEND_NAIVE);
    dsv_tensor_free(&xl), dsv_tensor_free(&gl), dsv_tensor_free(&ol);
    /* float32: the fast backend takes every op itself */
    dsv_tensor xf = tu_randn(&r, DSV_F32, 4, (int64_t[]){2, 3, 6, 6}, 1);
    c.x = &xf;
    assert_int_equal(dsv_pick_backend(&c, false, DSV_BACKEND_FAST), DSV_BACKEND_FAST);
    assert_int_equal(dsv_pick_backend(&c, true, DSV_BACKEND_FAST), DSV_BACKEND_FAST);
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        const dsv_kernel *k = &dsv_backend_get(DSV_BACKEND_FAST)->kernels[op];
        assert_non_null(k->forward);
        if (!dsv_op_is_loss((dsv_op)op))
            assert_non_null(k->backward);
    }
    /* a backend not built in is an error, not a silent fallback */
    if (!dsv_backend_available(DSV_BACKEND_ONEDNN))
        assert_int_equal(dsv_forward(&c, DSV_BACKEND_ONEDNN, NULL), DSV_UNSUPPORTED);
    dsv_tensor_free(&x), dsv_tensor_free(&w), dsv_tensor_free(&b);
    dsv_tensor_free(&out), dsv_tensor_free(&xf);
}

/* ---- batch-1 inference ---------------------------------------------------- */

/* A batch smaller than the thread count: under the layer schedule every
 * kernel gets all threads and splits output columns, channels or rows, so
 * the fast backend's scores are the same bits on 1, 2 and 3 threads, and
 * every backend agrees with naive. */
static void test_small_batch_inference(void **st)
{
    (void)st;
    dsv_model_config cfg = dsv_model_config_default(DSV_MODEL_THREELAYER);
    cfg.hidden_dim = 70, cfg.num_filters = 8, cfg.weight_scale = 0.05;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &cfg));
    tu_rng r = {21};
    for (int64_t n = 1; n <= 2; n++) {
        int64_t xs[] = {n, 3, 32, 32}, ss[] = {n, 10};
        dsv_tensor x = tu_randn(&r, DSV_F32, 4, xs, 1);
        dsv_tensor ref = tu_zeros(DSV_F32, 2, ss), s1 = tu_zeros(DSV_F32, 2, ss);
        dsv_tensor s = tu_zeros(DSV_F32, 2, ss);
        dsv_exec_options o = dsv_exec_options_default();
        o.backend = DSV_BACKEND_NAIVE, o.threads = 1;
        TU_OK(dsv_model_set_exec(m, &o));
        TU_OK(dsv_model_scores(m, &x, &ref));
        for (int b = 0; b < 3; b++) {
            o.backend = b == 0 ? DSV_BACKEND_FAST : b == 1 ? DSV_BACKEND_ONEDNN
                                                          : DSV_BACKEND_AUTO;
            if (!dsv_backend_available(o.backend))
                continue;
            for (int threads = 1; threads <= 3; threads++) {
                o.threads = threads;
                TU_OK(dsv_model_set_exec(m, &o));
                TU_OK(dsv_model_scores(m, &x, &s));
                assert_true(cmp_err(&s, &ref) <= TOL);
                if (b != 0)
                    continue;
                if (threads == 1)
                    memcpy(s1.data, s.data, dsv_tensor_nbytes(&s));
                else
                    assert_memory_equal(s.data, s1.data, dsv_tensor_nbytes(&s));
            }
        }
        dsv_tensor_free(&x), dsv_tensor_free(&ref), dsv_tensor_free(&s1);
        dsv_tensor_free(&s);
    }
    dsv_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_catches_broken),
        cmocka_unit_test(test_sgemm_variants),
        cmocka_unit_test(test_sgemm_row_bits),
        cmocka_unit_test(test_sgemm_thread_bits),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_fast_f64),
        cmocka_unit_test(test_f64_checker_catches_broken),
        cmocka_unit_test(test_dgemm_variants),
        cmocka_unit_test(test_course_cells),
        cmocka_unit_test(test_fast_state),
        cmocka_unit_test(test_fast_threads),
        cmocka_unit_test(test_fast_conv_paths),
        cmocka_unit_test(test_fast_conv_thread_counts),
        cmocka_unit_test(test_dispatch_fallback),
        cmocka_unit_test(test_small_batch_inference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
