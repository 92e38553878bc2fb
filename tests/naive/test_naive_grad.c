/*
 * Naive backward kernels against numerical gradients (float64), as the
 * course's notebooks check every layer: worst relative error <= 1e-7 for
 * conv, both poolings, affine, relu, dropout, add and the losses, <= 1e-6 for the
 * norms. Inputs avoid kinks (relu inputs away from 0, distinct pool values,
 * svm margins away from 0). Each op's worst error is printed, one line each.
 *
 * The checker is checked too: dsv_numerical_gradient on functions with known
 * gradients, and a conv backward with an off-by-one in the padding (written
 * here) that the gradient check must reject.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define H_STEP 1e-5
#define TOL 1e-7
#define TOL_NORM 1e-6

/* ---- the generic check --------------------------------------------------- */

static dsv_status forward_into(void *ctx, dsv_tensor *out)
{
    dsv_call *c = ctx;
    c->out = out;
    return dsv_forward(c, DSV_BACKEND_NAIVE, NULL);
}

/* Compares each analytic gradient of c (dx, dx2, dw, db, for the inputs
 * that are set) with the numerical one for a random dout; returns the worst
 * relative error. */
static double check_call(dsv_call *c, tu_rng *r)
{
    int nd;
    int64_t os[DSV_MAX_DIMS];
    TU_OK(dsv_op_check(c, false, &nd, os));
    dsv_tensor out = tu_zeros(DSV_F64, nd, os);
    dsv_tensor dout = tu_randn(r, DSV_F64, nd, os, 1.0);

    dsv_tensor *in[4] = {(dsv_tensor *)c->x, (dsv_tensor *)c->x2, (dsv_tensor *)c->w,
                         (dsv_tensor *)c->b};
    dsv_tensor grad[4], num[4];
    dsv_tensor **slot[4] = {&c->dx, &c->dx2, &c->dw, &c->db};
    for (int k = 0; k < 4; k++)
        if (in[k]) {
            grad[k] = tu_zeros(DSV_F64, in[k]->ndim, in[k]->shape);
            *slot[k] = &grad[k];
        }
    c->dout = &dout;
    TU_OK(dsv_backward(c, DSV_BACKEND_NAIVE, NULL));

    double worst = 0;
    for (int k = 0; k < 4; k++) {
        if (!in[k])
            continue;
        num[k] = tu_zeros(DSV_F64, in[k]->ndim, in[k]->shape);
        TU_OK(dsv_numerical_gradient_array(forward_into, c, in[k], &dout, &out,
                                           &num[k], H_STEP));
        worst = fmax(worst, dsv_rel_error(&num[k], &grad[k]));
        dsv_tensor_free(&num[k]);
        dsv_tensor_free(&grad[k]);
        *slot[k] = NULL;
    }
    c->dout = NULL;
    c->out = NULL;
    dsv_tensor_free(&out);
    dsv_tensor_free(&dout);
    return worst;
}

static void report(const char *op, double worst, double tol)
{
    printf("naive gradcheck %-18s worst rel error %.3e (limit %.0e)\n", op, worst, tol);
    if (!(worst <= tol))
        fail_msg("%s: gradient check failed, rel error %.3e > %.0e", op, worst, tol);
}

/* ---- input helpers ------------------------------------------------------- */

#define SHAPE(...) (int64_t[]){__VA_ARGS__}
#define NDIM(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define RANDN(r, scale, ...) tu_randn(r, DSV_F64, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), scale)

/* Distinct values 0.01 apart in random order: no ties, and a step of H_STEP
 * never changes a window's argmax. */
static dsv_tensor distinct(tu_rng *r, int ndim, const int64_t *shape)
{
    dsv_tensor t = tu_zeros(DSV_F64, ndim, shape);
    int64_t n = dsv_tensor_numel(&t);
    double *v = t.data;
    for (int64_t i = 0; i < n; i++)
        v[i] = 0.01 * (double)i - 0.005 * (double)n;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tu_next(r) % (uint64_t)(i + 1));
        double s = v[i];
        v[i] = v[j];
        v[j] = s;
    }
    return t;
}

/* ---- per op -------------------------------------------------------------- */

static double conv_case(tu_rng *r, const int64_t *xs, const int64_t *ws, int stride,
                        int pad)
{
    dsv_tensor x = tu_randn(r, DSV_F64, 4, xs, 1.0);
    dsv_tensor w = tu_randn(r, DSV_F64, 4, ws, 0.5);
    dsv_tensor b = RANDN(r, 1.0, ws[0]);
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b;
    c.p.stride = stride, c.p.pad = pad;
    double e = check_call(&c, r);
    dsv_tensor_free(&x);
    dsv_tensor_free(&w);
    dsv_tensor_free(&b);
    return e;
}

static void test_grad_conv(void **st)
{
    (void)st;
    tu_rng r = {11};
    double e = conv_case(&r, SHAPE(2, 3, 5, 5), SHAPE(3, 3, 3, 3), 1, 1);
    e = fmax(e, conv_case(&r, SHAPE(2, 2, 7, 7), SHAPE(2, 2, 3, 3), 2, 1));
    e = fmax(e, conv_case(&r, SHAPE(1, 2, 6, 5), SHAPE(2, 2, 3, 2), 1, 2));
    e = fmax(e, conv_case(&r, SHAPE(1, 2, 8, 8), SHAPE(2, 2, 4, 4), 3, 1));
    report("conv", e, TOL);
}

static double pool_case(tu_rng *r, const int64_t *xs, int ph, int pw, int stride)
{
    dsv_tensor x = distinct(r, 4, xs);
    dsv_call c = dsv_call_make(DSV_OP_MAX_POOL);
    c.x = &x;
    c.p.pool_height = ph, c.p.pool_width = pw, c.p.stride = stride;
    double e = check_call(&c, r);
    dsv_tensor_free(&x);
    return e;
}

static void test_grad_max_pool(void **st)
{
    (void)st;
    tu_rng r = {12};
    double e = pool_case(&r, SHAPE(2, 3, 4, 4), 2, 2, 2);
    e = fmax(e, pool_case(&r, SHAPE(1, 2, 5, 5), 3, 3, 1));  /* overlapping */
    e = fmax(e, pool_case(&r, SHAPE(2, 2, 7, 6), 3, 2, 2));  /* overlapping in H */
    report("max_pool", e, TOL);
}

static double avg_pool_case(tu_rng *r, const int64_t *xs, int ph, int pw, int stride)
{
    dsv_tensor x = tu_randn(r, DSV_F64, 4, xs, 1.0);
    dsv_call c = dsv_call_make(DSV_OP_AVG_POOL);
    c.x = &x;
    c.p.pool_height = ph, c.p.pool_width = pw, c.p.stride = stride;
    double e = check_call(&c, r);
    dsv_tensor_free(&x);
    return e;
}

static void test_grad_avg_pool(void **st)
{
    (void)st;
    tu_rng r = {20};
    double e = avg_pool_case(&r, SHAPE(2, 3, 4, 4), 2, 2, 2);
    e = fmax(e, avg_pool_case(&r, SHAPE(1, 2, 5, 5), 3, 3, 1));  /* overlapping */
    e = fmax(e, avg_pool_case(&r, SHAPE(2, 2, 7, 6), 3, 2, 2));  /* overlapping in H */
    e = fmax(e, avg_pool_case(&r, SHAPE(2, 3, 4, 5), 4, 5, 1));  /* global */
    report("avg_pool", e, TOL);
}

static void test_grad_affine(void **st)
{
    (void)st;
    tu_rng r = {13};
    dsv_tensor x = RANDN(&r, 1.0, 3, 2, 2, 2);
    dsv_tensor w = RANDN(&r, 1.0, 8, 5);
    dsv_tensor b = RANDN(&r, 1.0, 5);
    dsv_call c = dsv_call_make(DSV_OP_AFFINE);
    c.x = &x, c.w = &w, c.b = &b;
    report("affine", check_call(&c, &r), TOL);
    dsv_tensor_free(&x);
    dsv_tensor_free(&w);
    dsv_tensor_free(&b);
}

static void test_grad_relu(void **st)
{
    (void)st;
    tu_rng r = {14};
    dsv_tensor x = RANDN(&r, 1.0, 6, 7);
    for (int64_t i = 0; i < dsv_tensor_numel(&x); i++) {
        double v = dsv_tensor_get(&x, i);
        dsv_tensor_set(&x, i, v + (v >= 0 ? 0.05 : -0.05)); /* away from the kink */
    }
    dsv_call c = dsv_call_make(DSV_OP_RELU);
    c.x = &x;
    report("relu", check_call(&c, &r), TOL);
    dsv_tensor_free(&x);
}

static void test_grad_dropout(void **st)
{
    (void)st;
    tu_rng r = {15};
    dsv_tensor x = RANDN(&r, 1.0, 4, 3, 2, 2);
    dsv_call c = dsv_call_make(DSV_OP_DROPOUT);
    c.x = &x;
    c.p.p = 0.6, c.p.seed = 123, c.p.row0 = 5;
    double e = check_call(&c, &r);
    c.p.train = false;
    e = fmax(e, check_call(&c, &r));
    report("dropout", e, TOL);
    dsv_tensor_free(&x);
}

static void test_grad_add(void **st)
{
    (void)st;
    tu_rng r = {16};
    dsv_tensor x = RANDN(&r, 1.0, 2, 3, 4);
    dsv_tensor x2 = RANDN(&r, 1.0, 2, 3, 4);
    dsv_call c = dsv_call_make(DSV_OP_ADD);
    c.x = &x, c.x2 = &x2;
    report("add", check_call(&c, &r), TOL);
    dsv_tensor_free(&x);
    dsv_tensor_free(&x2);
}

/* gamma, beta (n) and, for test mode, running statistics. */
static double norm_case(tu_rng *r, dsv_op op, dsv_tensor *x, int64_t n, bool train,
                        int groups, bool course_shape)
{
    dsv_tensor gamma = course_shape ? RANDN(r, 0.5, 1, n, 1, 1) : RANDN(r, 0.5, n);
    dsv_tensor beta = course_shape ? RANDN(r, 1.0, 1, n, 1, 1) : RANDN(r, 1.0, n);
    dsv_tensor rm = RANDN(r, 1.0, n);
    dsv_tensor rv = tu_zeros(DSV_F64, 1, &n);
    for (int64_t i = 0; i < n; i++) {
        dsv_tensor_set(&gamma, i, dsv_tensor_get(&gamma, i) + 1.0);
        dsv_tensor_set(&rv, i, 0.5 + tu_uniform(r));
    }
    dsv_call c = dsv_call_make(op);
    c.x = x, c.w = &gamma, c.b = &beta;
    c.p.train = train;
    c.p.groups = groups;
    if (!train) /* train mode: no running stats, so repeated forwards agree */
        c.running_mean = &rm, c.running_var = &rv;
    double e = check_call(&c, r);
    dsv_tensor_free(&gamma);
    dsv_tensor_free(&beta);
    dsv_tensor_free(&rm);
    dsv_tensor_free(&rv);
    return e;
}

static void test_grad_batchnorm(void **st)
{
    (void)st;
    tu_rng r = {17};
    dsv_tensor x = RANDN(&r, 3.0, 5, 4);
    double e = norm_case(&r, DSV_OP_BATCHNORM, &x, 4, true, 1, false);
    report("batchnorm(train)", e, TOL_NORM);
    report("batchnorm(test)", norm_case(&r, DSV_OP_BATCHNORM, &x, 4, false, 1, false),
           TOL_NORM);
    dsv_tensor_free(&x);
}

static void test_grad_spatial_batchnorm(void **st)
{
    (void)st;
    tu_rng r = {18};
    dsv_tensor x = RANDN(&r, 2.0, 2, 3, 3, 2);
    report("spatial_bn(train)",
           norm_case(&r, DSV_OP_SPATIAL_BATCHNORM, &x, 3, true, 1, false), TOL_NORM);
    report("spatial_bn(test)",
           norm_case(&r, DSV_OP_SPATIAL_BATCHNORM, &x, 3, false, 1, false), TOL_NORM);
    dsv_tensor_free(&x);
}

static void test_grad_layernorm(void **st)
{
    (void)st;
    tu_rng r = {19};
    dsv_tensor x = RANDN(&r, 2.0, 4, 6);
    report("layernorm", norm_case(&r, DSV_OP_LAYERNORM, &x, 6, true, 1, false), TOL_NORM);
    dsv_tensor_free(&x);
}

static void test_grad_groupnorm(void **st)
{
    (void)st;
    tu_rng r = {20};
    dsv_tensor x = RANDN(&r, 2.0, 2, 6, 2, 3);
    double e = norm_case(&r, DSV_OP_SPATIAL_GROUPNORM, &x, 6, true, 3, true);
    e = fmax(e, norm_case(&r, DSV_OP_SPATIAL_GROUPNORM, &x, 6, true, 2, false));
    report("spatial_groupnorm", e, TOL_NORM);
    dsv_tensor_free(&x);
}

/* ---- losses: scalar numerical gradient against the forward's dscores ------ */

static dsv_status loss_value(void *ctx, double *v)
{
    dsv_call *c = ctx;
    dsv_tensor *dx = c->dx;
    c->dx = NULL;
    c->loss = v;
    dsv_status s = dsv_forward(c, DSV_BACKEND_NAIVE, NULL);
    c->dx = dx;
    return s;
}

static double loss_case(dsv_op op, dsv_tensor *x, const dsv_tensor *y)
{
    double loss;
    dsv_tensor dx = tu_zeros(DSV_F64, 2, x->shape);
    dsv_tensor num = tu_zeros(DSV_F64, 2, x->shape);
    dsv_call c = dsv_call_make(op);
    c.x = x, c.y = y, c.loss = &loss, c.dx = &dx;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    TU_OK(dsv_numerical_gradient(loss_value, &c, x, &num, H_STEP));
    double e = dsv_rel_error(&num, &dx);
    dsv_tensor_free(&dx);
    dsv_tensor_free(&num);
    return e;
}

static void test_grad_softmax_loss(void **st)
{
    (void)st;
    tu_rng r = {21};
    dsv_tensor x = RANDN(&r, 1.0, 6, 5);
    dsv_tensor y = tu_labels(&r, 6, 5);
    report("softmax_loss", loss_case(DSV_OP_SOFTMAX_LOSS, &x, &y), TOL);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void test_grad_svm_loss(void **st)
{
    (void)st;
    tu_rng r = {22};
    dsv_tensor x = RANDN(&r, 1.0, 6, 5);
    dsv_tensor y = tu_labels(&r, 6, 5);
    double *s = x.data;
    const int32_t *yl = y.data;
    for (int n = 0; n < 6; n++) /* keep every margin away from its kink */
        for (int k = 0; k < 5; k++)
            if (k != yl[n] && fabs(s[n * 5 + k] - s[n * 5 + yl[n]] + 1) < 0.01)
                s[n * 5 + k] += 0.05;
    report("svm_loss", loss_case(DSV_OP_SVM_LOSS, &x, &y), TOL);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* ---- the checker itself ---------------------------------------------------- */

static dsv_status sum_cubes(void *ctx, double *v)
{
    const dsv_tensor *x = ctx;
    *v = 0;
    for (int64_t i = 0; i < dsv_tensor_numel(x); i++)
        *v += pow(dsv_tensor_get(x, i), 3);
    return DSV_OK;
}

static dsv_status squares(void *ctx, dsv_tensor *out)
{
    const dsv_tensor *x = ctx;
    for (int64_t i = 0; i < dsv_tensor_numel(x); i++)
        dsv_tensor_set(out, i, dsv_tensor_get(x, i) * dsv_tensor_get(x, i));
    return DSV_OK;
}

static dsv_status failing(void *ctx, double *v)
{
    (void)ctx, (void)v;
    return dsv_error(DSV_BACKEND, "deliberate failure");
}

/* Known gradients pass, wrong ones fail; x is restored; errors propagate. */
static void test_checker_known_gradients(void **st)
{
    (void)st;
    tu_rng r = {23};
    dsv_tensor x = RANDN(&r, 1.0, 3, 4);
    dsv_tensor keep = tu_zeros(DSV_F64, 2, x.shape);
    TU_OK(dsv_tensor_copy(&keep, &x));
    dsv_tensor num = tu_zeros(DSV_F64, 2, x.shape);
    dsv_tensor good = tu_zeros(DSV_F64, 2, x.shape);
    dsv_tensor bad = tu_zeros(DSV_F64, 2, x.shape);

    TU_OK(dsv_numerical_gradient(sum_cubes, &x, &x, &num, H_STEP));
    for (int64_t i = 0; i < 12; i++) {
        double v = dsv_tensor_get(&x, i);
        dsv_tensor_set(&good, i, 3 * v * v);
        dsv_tensor_set(&bad, i, 3 * v * v * (i == 7 ? 1.001 : 1.0));
    }
    assert_true(dsv_rel_error(&num, &good) < TOL);
    assert_true(dsv_rel_error(&num, &bad) > TOL);
    assert_true(dsv_rel_error(&x, &keep) == 0);
    assert_true(fabs(dsv_rel_error(&num, &bad) - tu_rel_error(&num, &bad)) < 1e-15);

    dsv_tensor df = RANDN(&r, 1.0, 3, 4);
    dsv_tensor out = tu_zeros(DSV_F64, 2, x.shape);
    TU_OK(dsv_numerical_gradient_array(squares, &x, &x, &df, &out, &num, H_STEP));
    for (int64_t i = 0; i < 12; i++)
        dsv_tensor_set(&good, i, 2 * dsv_tensor_get(&x, i) * dsv_tensor_get(&df, i));
    assert_true(dsv_rel_error(&num, &good) < TOL);
    assert_true(dsv_rel_error(&x, &keep) == 0);

    /* NaN is the worst error; mismatched sizes too */
    dsv_tensor_set(&good, 3, NAN);
    assert_true(isinf(dsv_rel_error(&num, &good)));
    dsv_tensor small = tu_zeros(DSV_F64, 1, SHAPE(5));
    assert_true(isinf(dsv_rel_error(&num, &small)));
    assert_int_equal(dsv_numerical_gradient(sum_cubes, &x, &x, &small, H_STEP), DSV_INVALID);
    assert_int_equal(dsv_numerical_gradient(sum_cubes, &x, &x, &num, 0), DSV_INVALID);
    assert_int_equal(dsv_numerical_gradient(failing, NULL, &x, &num, H_STEP), DSV_BACKEND);
    assert_true(dsv_rel_error(&x, &keep) == 0);

    dsv_tensor_free(&x);
    dsv_tensor_free(&keep);
    dsv_tensor_free(&num);
    dsv_tensor_free(&good);
    dsv_tensor_free(&bad);
    dsv_tensor_free(&df);
    dsv_tensor_free(&out);
    dsv_tensor_free(&small);
}

/* conv backward's dx written independently, with the padding offset off by
 * pad_error: 0 must pass the check, 1 must fail it. */
static void conv_dx_variant(const dsv_tensor *x, const dsv_tensor *w,
                            const dsv_tensor *dout, int stride, int pad,
                            int pad_error, dsv_tensor *dx)
{
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t F = w->shape[0], HH = w->shape[2], WW = w->shape[3];
    const int64_t Ho = dout->shape[2], Wo = dout->shape[3];
    const double *wp = w->data, *g = dout->data;
    double *d = dx->data;
    const int off = pad + pad_error;
    dsv_tensor_zero(dx);
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++)
                    for (int64_t ch = 0; ch < C; ch++)
                        for (int64_t a = 0; a < HH; a++)
                            for (int64_t b = 0; b < WW; b++) {
                                int64_t h = i * stride + a - off, v = j * stride + b - off;
                                if (h < 0 || h >= H || v < 0 || v >= W)
                                    continue;
                                d[((n * C + ch) * H + h) * W + v] +=
                                    g[((n * F + f) * Ho + i) * Wo + j] *
                                    wp[((f * C + ch) * HH + a) * WW + b];
                            }
}

static void test_checker_catches_broken_conv(void **st)
{
    (void)st;
    tu_rng r = {24};
    dsv_tensor x = RANDN(&r, 1.0, 2, 2, 5, 5);
    dsv_tensor w = RANDN(&r, 0.5, 3, 2, 3, 3);
    dsv_tensor b = RANDN(&r, 1.0, 3);
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b;
    c.p.stride = 2, c.p.pad = 1;
    int nd;
    int64_t os[DSV_MAX_DIMS];
    TU_OK(dsv_op_check(&c, false, &nd, os));
    dsv_tensor out = tu_zeros(DSV_F64, nd, os);
    dsv_tensor dout = tu_randn(&r, DSV_F64, nd, os, 1.0);
    dsv_tensor num = tu_zeros(DSV_F64, 4, x.shape);
    dsv_tensor dx = tu_zeros(DSV_F64, 4, x.shape);
    TU_OK(dsv_numerical_gradient_array(forward_into, &c, &x, &dout, &out, &num, H_STEP));

    conv_dx_variant(&x, &w, &dout, 2, 1, 0, &dx);
    double ok = dsv_rel_error(&num, &dx);
    conv_dx_variant(&x, &w, &dout, 2, 1, 1, &dx);
    double broken = dsv_rel_error(&num, &dx);
    printf("naive gradcheck conv dx: correct %.3e, padding off by one %.3e\n", ok, broken);
    assert_true(ok <= TOL);
    assert_false(broken <= TOL);

    dsv_tensor_free(&x);
    dsv_tensor_free(&w);
    dsv_tensor_free(&b);
    dsv_tensor_free(&out);
    dsv_tensor_free(&dout);
    dsv_tensor_free(&num);
    dsv_tensor_free(&dx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_known_gradients),
        cmocka_unit_test(test_checker_catches_broken_conv),
        cmocka_unit_test(test_grad_conv),
        cmocka_unit_test(test_grad_max_pool),
        cmocka_unit_test(test_grad_avg_pool),
        cmocka_unit_test(test_grad_affine),
        cmocka_unit_test(test_grad_relu),
        cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_grad_add),
        cmocka_unit_test(test_grad_batchnorm),
        cmocka_unit_test(test_grad_spatial_batchnorm),
        cmocka_unit_test(test_grad_layernorm),
        cmocka_unit_test(test_grad_groupnorm),
        cmocka_unit_test(test_grad_softmax_loss),
        cmocka_unit_test(test_grad_svm_loss),
    };
    return cmocka_run_group_tests_name("naive_grad", tests, NULL, NULL);
}
