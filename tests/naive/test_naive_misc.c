/*
 * The course's statistics checks for the norms, dropout's mask properties,
 * and bad parameters through dsv_forward, all on the naive backend.
 *
 * - spatial batchnorm, train mode: per-channel means = beta, stds = gamma;
 *   test mode after 50 training batches of one distribution: means ~ 0 and
 *   stds ~ 1 within 0.1; groupnorm: per-(sample, group) means 0, stds 1.
 * - dropout: keeps a fraction ~p scaled by 1/p, the identity at test time,
 *   the same mask in backward and for a batch split by row0.
 * - max_pool ties: the gradient goes to the first maximum, as numpy's argmax.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define SHAPE(...) (int64_t[]){__VA_ARGS__}

/* Mean and std (biased) of x (N, C, H, W) over channels [c0, c1) of sample
 * n, or over all samples when n < 0. */
static void moments(const dsv_tensor *x, int64_t n, int64_t c0, int64_t c1,
                    double *mean, double *std)
{
    const int64_t N = x->shape[0], C = x->shape[1], S = x->shape[2] * x->shape[3];
    double s = 0, q = 0, m = 0;
    for (int64_t i = n < 0 ? 0 : n; i < (n < 0 ? N : n + 1); i++)
        for (int64_t ch = c0; ch < c1; ch++)
            for (int64_t k = 0; k < S; k++) {
                double v = dsv_tensor_get(x, (i * C + ch) * S + k);
                s += v, q += v * v, m += 1;
            }
    *mean = s / m;
    *std = sqrt(fmax(q / m - *mean * *mean, 0));
}

static dsv_tensor normal_batch(tu_rng *r, const int64_t *shape, double scale, double shift)
{
    dsv_tensor x = tu_randn(r, DSV_F64, 4, shape, scale);
    for (int64_t i = 0; i < dsv_tensor_numel(&x); i++)
        dsv_tensor_set(&x, i, dsv_tensor_get(&x, i) + shift);
    return x;
}

static void test_spatial_batchnorm_train_stats(void **st)
{
    (void)st;
    tu_rng r = {31};
    const double g[3] = {3, 4, 5}, be[3] = {6, 7, 8};
    dsv_tensor x = normal_batch(&r, SHAPE(2, 3, 4, 5), 4, 10);
    dsv_tensor out = tu_zeros(DSV_F64, 4, x.shape);
    dsv_tensor gamma = dsv_tensor_wrap((double *)g, DSV_F64, 1, SHAPE(3));
    dsv_tensor beta = dsv_tensor_wrap((double *)be, DSV_F64, 1, SHAPE(3));
    dsv_call c = dsv_call_make(DSV_OP_SPATIAL_BATCHNORM);
    c.x = &x, c.w = &gamma, c.b = &beta, c.out = &out;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    for (int ch = 0; ch < 3; ch++) {
        double m, s;
        moments(&out, -1, ch, ch + 1, &m, &s);
        printf("spatial batchnorm train: channel %d mean %.6f std %.6f\n", ch, m, s);
        assert_true(fabs(m - be[ch]) < 1e-9);
        assert_true(fabs(s - g[ch]) < 1e-3 * g[ch]); /* eps shrinks it a little */
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&out);
}

/* Returns the worst |mean| and |std - 1| over channels in test mode after
 * `batches` training batches. */
static void bn_test_after_training(int batches, double *dmean, double *dstd)
{
    tu_rng r = {32};
    const int64_t C = 4;
    dsv_tensor gamma = tu_zeros(DSV_F64, 1, &C), beta = tu_zeros(DSV_F64, 1, &C);
    dsv_tensor rm = tu_zeros(DSV_F64, 1, &C), rv = tu_zeros(DSV_F64, 1, &C);
    for (int64_t i = 0; i < C; i++)
        dsv_tensor_set(&gamma, i, 1);
    dsv_tensor out = tu_zeros(DSV_F64, 4, SHAPE(10, 4, 11, 12));
    dsv_call c = dsv_call_make(DSV_OP_SPATIAL_BATCHNORM);
    c.w = &gamma, c.b = &beta, c.running_mean = &rm, c.running_var = &rv, c.out = &out;
    for (int t = 0; t < batches; t++) {
        dsv_tensor x = normal_batch(&r, SHAPE(10, 4, 11, 12), 2.3, 13);
        c.x = &x;
        TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
        dsv_tensor_free(&x);
    }
    /* a larger test batch, so that its own sampling noise (about 0.03 per
       channel at the course's N = 10) stays well inside the 0.1 margin */
    dsv_tensor x = normal_batch(&r, SHAPE(40, 4, 11, 12), 2.3, 13);
    dsv_tensor_free(&out);
    out = tu_zeros(DSV_F64, 4, x.shape);
    c.x = &x, c.out = &out;
    c.p.train = false;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    *dmean = *dstd = 0;
    for (int64_t ch = 0; ch < C; ch++) {
        double m, s;
        moments(&out, -1, ch, ch + 1, &m, &s);
        *dmean = fmax(*dmean, fabs(m));
        *dstd = fmax(*dstd, fabs(s - 1));
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&out);
    dsv_tensor_free(&gamma);
    dsv_tensor_free(&beta);
    dsv_tensor_free(&rm);
    dsv_tensor_free(&rv);
}

static void test_spatial_batchnorm_test_stats(void **st)
{
    (void)st;
    double dm, ds;
    bn_test_after_training(50, &dm, &ds);
    printf("spatial batchnorm test after 50 batches: |mean| <= %.4f, |std - 1| <= %.4f\n",
           dm, ds);
    assert_true(dm < 0.1 && ds < 0.1);
    /* the check can fail: untrained running stats leave the data unnormalised */
    bn_test_after_training(0, &dm, &ds);
    assert_false(dm < 0.1 && ds < 0.1);
}

static void test_groupnorm_stats(void **st)
{
    (void)st;
    tu_rng r = {33};
    const int64_t N = 2, C = 6, G = 2;
    dsv_tensor x = normal_batch(&r, SHAPE(2, 6, 4, 5), 4, 10);
    dsv_tensor out = tu_zeros(DSV_F64, 4, x.shape);
    dsv_tensor gamma = tu_zeros(DSV_F64, 4, SHAPE(1, 6, 1, 1));
    dsv_tensor beta = tu_zeros(DSV_F64, 4, SHAPE(1, 6, 1, 1));
    for (int64_t i = 0; i < C; i++)
        dsv_tensor_set(&gamma, i, 1);
    dsv_call c = dsv_call_make(DSV_OP_SPATIAL_GROUPNORM);
    c.x = &x, c.w = &gamma, c.b = &beta, c.out = &out;
    c.p.groups = (int)G;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < G; g++) {
            double m, s;
            moments(&out, n, g * C / G, (g + 1) * C / G, &m, &s);
            assert_true(fabs(m) < 1e-9);
            assert_true(fabs(s - 1) < 1e-3);
            /* a whole sample is normalised too, but not a channel on its own */
            moments(&out, n, g * C / G, g * C / G + 1, &m, &s);
            assert_false(fabs(m) < 1e-9 && fabs(s - 1) < 1e-3);
        }
    dsv_tensor_free(&x);
    dsv_tensor_free(&out);
    dsv_tensor_free(&gamma);
    dsv_tensor_free(&beta);
}

/* ---- dropout ------------------------------------------------------------- */

static dsv_status dropout(dsv_tensor *x, dsv_tensor *out, double p, uint64_t seed,
                          int64_t row0, bool train)
{
    dsv_call c = dsv_call_make(DSV_OP_DROPOUT);
    c.x = x, c.out = out;
    c.p.p = p, c.p.seed = seed, c.p.row0 = row0, c.p.train = train;
    return dsv_forward(&c, DSV_BACKEND_NAIVE, NULL);
}

static void test_dropout_statistics(void **st)
{
    (void)st;
    tu_rng r = {34};
    dsv_tensor x = normal_batch(&r, SHAPE(500, 500, 1, 1), 1, 10);
    dsv_tensor out = tu_zeros(DSV_F64, 4, x.shape);
    const int64_t n = dsv_tensor_numel(&x);
    double xm = 0;
    for (int64_t i = 0; i < n; i++)
        xm += dsv_tensor_get(&x, i) / (double)n;
    const double ps[] = {0.25, 0.4, 0.7, 1.0};
    for (int k = 0; k < 4; k++) {
        TU_OK(dropout(&x, &out, ps[k], 42, 0, true));
        double kept = 0, om = 0;
        for (int64_t i = 0; i < n; i++) {
            double o = dsv_tensor_get(&out, i), v = dsv_tensor_get(&x, i);
            if (o != 0) {
                kept += 1;
                assert_true(fabs(o - v / ps[k]) <= 1e-12 * fabs(o));
            }
            om += o / (double)n;
        }
        printf("dropout p=%.2f: kept %.4f, mean %.4f (input %.4f)\n", ps[k],
               kept / (double)n, om, xm);
        assert_true(fabs(kept / (double)n - ps[k]) < 0.005);
        assert_true(fabs(om - xm) < 0.02 * xm);
        TU_OK(dropout(&x, &out, ps[k], 42, 0, false)); /* test: identity */
        assert_memory_equal(out.data, x.data, dsv_tensor_nbytes(&x));
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&out);
}

static void test_dropout_mask_is_a_function_of_index(void **st)
{
    (void)st;
    tu_rng r = {35};
    const int64_t N = 6, D = 40;
    dsv_tensor x = tu_randn(&r, DSV_F32, 2, SHAPE(N, D), 1);
    dsv_tensor whole = tu_zeros(DSV_F32, 2, x.shape), part = tu_zeros(DSV_F32, 2, x.shape);
    TU_OK(dropout(&x, &whole, 0.5, 7, 0, true));

    /* rows [0, 2) and [2, 6) with row0 give the whole batch's mask */
    dsv_tensor xa = dsv_tensor_slice(&x, 0, 2), xb = dsv_tensor_slice(&x, 2, 4);
    dsv_tensor oa = dsv_tensor_slice(&part, 0, 2), ob = dsv_tensor_slice(&part, 2, 4);
    TU_OK(dropout(&xa, &oa, 0.5, 7, 0, true));
    TU_OK(dropout(&xb, &ob, 0.5, 7, 2, true));
    assert_memory_equal(whole.data, part.data, dsv_tensor_nbytes(&x));
    /* the check can fail: ignoring row0 gives a different mask */
    TU_OK(dropout(&xb, &ob, 0.5, 7, 0, true));
    assert_memory_not_equal(whole.data, part.data, dsv_tensor_nbytes(&x));
    /* another seed, another mask; the same seed, the same mask */
    TU_OK(dropout(&x, &part, 0.5, 8, 0, true));
    assert_memory_not_equal(whole.data, part.data, dsv_tensor_nbytes(&x));
    TU_OK(dropout(&x, &part, 0.5, 7, 0, true));
    assert_memory_equal(whole.data, part.data, dsv_tensor_nbytes(&x));

    /* backward regenerates the mask: with dout = x, dx equals out */
    dsv_tensor dx = tu_zeros(DSV_F32, 2, x.shape);
    dsv_call c = dsv_call_make(DSV_OP_DROPOUT);
    c.x = &x, c.dout = &x, c.dx = &dx;
    c.p.p = 0.5, c.p.seed = 7;
    TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
    assert_memory_equal(whole.data, dx.data, dsv_tensor_nbytes(&x));
    c.p.train = false;
    TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
    assert_memory_equal(x.data, dx.data, dsv_tensor_nbytes(&x));

    dsv_tensor_free(&x);
    dsv_tensor_free(&whole);
    dsv_tensor_free(&part);
    dsv_tensor_free(&dx);
}

/* ---- max_pool ties ------------------------------------------------------- */

/* On ties the gradient goes to the first maximum in row-major window order
 * (numpy's argmax), never split. x (1, 1, 3, 4), 2x2 windows, stride 1. */
static void test_max_pool_ties(void **st)
{
    (void)st;
    const dsv_dtype dts[2] = {DSV_F32, DSV_F64};
    const double xv[12] = {1, 3, 5, 5,
                           3, 2, 5, 5,
                           0, 3, 3, 1};
    /* windows (row-major): [1 3; 3 2] -> (0,1); [3 5; 2 5] -> (0,2);
       [5 5; 5 5] -> (0,2); [3 2; 0 3] -> (1,0); [2 5; 3 3] -> (1,2);
       [5 5; 3 1] -> (1,2) */
    const double dout_v[6] = {1, 10, 100, 1000, 10000, 100000};
    const double want[12] = {0, 1, 110, 0,
                             1000, 0, 110000, 0,
                             0, 0, 0, 0};
    for (int k = 0; k < 2; k++) {
        dsv_tensor x = tu_zeros(dts[k], 4, SHAPE(1, 1, 3, 4));
        dsv_tensor dout = tu_zeros(dts[k], 4, SHAPE(1, 1, 2, 3));
        dsv_tensor out = tu_zeros(dts[k], 4, SHAPE(1, 1, 2, 3));
        dsv_tensor dx = tu_zeros(dts[k], 4, x.shape);
        for (int i = 0; i < 12; i++)
            dsv_tensor_set(&x, i, xv[i]);
        for (int i = 0; i < 6; i++)
            dsv_tensor_set(&dout, i, dout_v[i]);
        dsv_call c = dsv_call_make(DSV_OP_MAX_POOL);
        c.x = &x, c.out = &out, c.dout = &dout, c.dx = &dx;
        c.p.stride = 1;
        TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
        const double want_out[6] = {3, 5, 5, 3, 5, 5};
        for (int i = 0; i < 6; i++)
            assert_true(dsv_tensor_get(&out, i) == want_out[i]);
        TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
        for (int i = 0; i < 12; i++)
            if (dsv_tensor_get(&dx, i) != want[i])
                fail_msg("%s: dx[%d] = %g, want %g", dsv_dtype_name(dts[k]), i,
                         dsv_tensor_get(&dx, i), want[i]);
        dsv_tensor_free(&x);
        dsv_tensor_free(&dout);
        dsv_tensor_free(&out);
        dsv_tensor_free(&dx);
    }
}

/* ---- bad parameters ---------------------------------------------------- */

static void expect_invalid(dsv_call *c, const char *what)
{
    dsv_error_clear();
    dsv_status s = dsv_forward(c, DSV_BACKEND_NAIVE, NULL);
    if (s != DSV_INVALID)
        fail_msg("%s: got %s, want invalid", what, dsv_status_name(s));
    assert_true(strlen(dsv_errmsg()) > 0);
}

static void test_bad_parameters(void **st)
{
    (void)st;
    tu_rng r = {36};
    dsv_tensor x = tu_randn(&r, DSV_F64, 4, SHAPE(2, 4, 6, 6), 1);
    dsv_tensor w = tu_randn(&r, DSV_F64, 4, SHAPE(3, 4, 3, 3), 1);
    dsv_tensor w32 = tu_randn(&r, DSV_F32, 4, SHAPE(3, 4, 3, 3), 1);
    dsv_tensor b = tu_zeros(DSV_F64, 1, SHAPE(3));
    dsv_tensor g4 = tu_zeros(DSV_F64, 1, SHAPE(4));
    dsv_tensor out = tu_zeros(DSV_F64, 4, SHAPE(2, 3, 6, 6));
    dsv_tensor big = tu_zeros(DSV_F64, 4, SHAPE(2, 4, 6, 6));

    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b, c.out = &out;
    c.p.pad = 1;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL)); /* the valid call runs */
    c.p.stride = 2; /* 6 + 2 - 3 = 5 is odd */
    expect_invalid(&c, "conv stride 2");
    c.p.stride = 1, c.p.pad = -1;
    expect_invalid(&c, "conv negative pad");
    c.p.pad = 1, c.w = &w32;
    expect_invalid(&c, "conv float32 w with float64 x");
    c.w = &w, c.b = &g4;
    expect_invalid(&c, "conv 4 biases for 3 filters");

    c = dsv_call_make(DSV_OP_MAX_POOL);
    c.x = &x, c.out = &big;
    c.p.pool_height = 7;
    expect_invalid(&c, "max_pool window taller than the input");
    c.p.pool_height = 2, c.p.stride = 0;
    expect_invalid(&c, "max_pool stride 0");

    /* avg_pool: max_pool's rules and messages, under its own name */
    dsv_tensor gap = tu_zeros(DSV_F64, 4, SHAPE(2, 4, 1, 1));
    c = dsv_call_make(DSV_OP_AVG_POOL);
    c.x = &x, c.out = &gap;
    c.p.pool_height = c.p.pool_width = 6;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL)); /* global pooling */
    c.p.pool_height = 7;
    expect_invalid(&c, "avg_pool window taller than the input");
    assert_non_null(strstr(dsv_errmsg(), "avg_pool: pool_height pool_height = 7 is larger"));
    c.p.pool_height = 6, c.p.stride = 0;
    expect_invalid(&c, "avg_pool stride 0");
    assert_non_null(strstr(dsv_errmsg(), "avg_pool: pool_height, pool_width and stride"));
    c.p.pool_height = c.p.pool_width = 3, c.p.stride = 2, c.out = &big;
    expect_invalid(&c, "avg_pool 6 - 3 not divisible by 2");
    assert_non_null(strstr(dsv_errmsg(), "avg_pool: (H + 2*pad - pool_height) = 3"));
    dsv_tensor x3 = tu_zeros(DSV_F64, 3, SHAPE(4, 6, 6));
    c = dsv_call_make(DSV_OP_AVG_POOL);
    c.x = &x3, c.out = &big;
    expect_invalid(&c, "avg_pool on a 3-d x");
    assert_non_null(strstr(dsv_errmsg(), "avg_pool: x must be (N, C, H, W)"));
    dsv_tensor_free(&gap);
    dsv_tensor_free(&x3);

    c = dsv_call_make(DSV_OP_DROPOUT);
    c.x = &x, c.out = &big;
    c.p.p = 0;
    expect_invalid(&c, "dropout p = 0");
    c.p.p = 1.5;
    expect_invalid(&c, "dropout p = 1.5");

    c = dsv_call_make(DSV_OP_SPATIAL_GROUPNORM);
    c.x = &x, c.w = &g4, c.b = &g4, c.out = &big;
    c.p.groups = 3;
    expect_invalid(&c, "groupnorm C = 4, G = 3");
    c.p.groups = 2, c.p.eps = 0;
    expect_invalid(&c, "groupnorm eps = 0");

    c = dsv_call_make(DSV_OP_SPATIAL_BATCHNORM);
    c.x = &x, c.w = &g4, c.b = &g4, c.out = &big;
    c.p.train = false;
    expect_invalid(&c, "batchnorm test mode without running stats");
    c.p.train = true, c.p.momentum = 1.5;
    expect_invalid(&c, "batchnorm momentum 1.5");

    dsv_tensor s = tu_randn(&r, DSV_F64, 2, SHAPE(3, 5), 1);
    dsv_tensor y = tu_labels(&r, 3, 5);
    double loss;
    c = dsv_call_make(DSV_OP_SOFTMAX_LOSS);
    c.x = &s, c.y = &y, c.loss = &loss;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    ((int32_t *)y.data)[1] = 5;
    expect_invalid(&c, "softmax label out of range");
    ((int32_t *)y.data)[1] = 0;
    c.dout = &s;
    assert_int_equal(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL), DSV_INVALID);

    c = dsv_call_make(DSV_OP_AFFINE);
    c.x = &x, c.w = &s, c.b = &b, c.out = &out;
    expect_invalid(&c, "affine w rows != features");

    dsv_tensor_free(&x);
    dsv_tensor_free(&w);
    dsv_tensor_free(&w32);
    dsv_tensor_free(&b);
    dsv_tensor_free(&g4);
    dsv_tensor_free(&out);
    dsv_tensor_free(&big);
    dsv_tensor_free(&s);
    dsv_tensor_free(&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spatial_batchnorm_train_stats),
        cmocka_unit_test(test_spatial_batchnorm_test_stats),
        cmocka_unit_test(test_groupnorm_stats),
        cmocka_unit_test(test_dropout_statistics),
        cmocka_unit_test(test_dropout_mask_is_a_function_of_index),
        cmocka_unit_test(test_max_pool_ties),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests_name("naive_misc", tests, NULL, NULL);
}
