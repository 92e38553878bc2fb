/*
 * What is specific to the onednn backend: per-node state reuse across calls
 * and shape changes, thread-count changes, the batch-parallel pattern (each
 * OpenMP thread runs 1-thread kernels on its half of the batch with its own
 * state), backward without (or after a stale) forward, and the conversion of
 * oneDNN errors; relu (exact, zeros included) and batch
 * normalization in train and test mode on one state (running statistics,
 * statistics kept for the backward, unwanted gradients). Results are compared
 * against the naive backend.
 *
 * A deadlock must fail the test instead of hanging it: SIGALRM (default
 * action: terminate) guards the whole program.
 */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <omp.h>

#include "common.h"
#include "testutil.h"

#define TOL 2e-5

/* max |a - b| / max |b|: the scale-aware error used for f32 kernels. */
static double max_err(const dsv_tensor *a, const dsv_tensor *b)
{
    assert_int_equal(dsv_tensor_numel(a), dsv_tensor_numel(b));
    double d = 0, m = 0;
    for (int64_t i = 0; i < dsv_tensor_numel(a); i++) {
        double x = dsv_tensor_get(a, i), y = dsv_tensor_get(b, i);
        double e = fabs(x - y);
        if (!(e <= d))
            d = isnan(e) ? INFINITY : e;
        m = fmax(m, fabs(y));
    }
    return d / fmax(m, 1e-30);
}

typedef struct conv_case {
    int64_t n, c, h, w, f, k;
    int stride, pad;
} conv_case;

/* Tensors of one conv problem, with the naive results. */
typedef struct conv_data {
    dsv_tensor x, w, b, dout;
    dsv_tensor out, dx, dw, db;         /* naive */
    dsv_tensor out2, dx2, dw2, db2;     /* onednn */
    dsv_params p;
} conv_data;

static dsv_call conv_call(conv_data *d, bool ref)
{
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.p = d->p;
    c.x = &d->x, c.w = &d->w, c.b = &d->b, c.dout = &d->dout;
    c.out = ref ? &d->out : &d->out2;
    c.dx = ref ? &d->dx : &d->dx2;
    c.dw = ref ? &d->dw : &d->dw2;
    c.db = ref ? &d->db : &d->db2;
    return c;
}

static void conv_data_init(conv_data *d, tu_rng *r, conv_case k)
{
    memset(d, 0, sizeof(*d));
    d->p = dsv_params_default();
    d->p.stride = k.stride, d->p.pad = k.pad;
    int64_t oh = (k.h + 2 * k.pad - k.k) / k.stride + 1;
    int64_t ow = (k.w + 2 * k.pad - k.k) / k.stride + 1;
    int64_t xs[] = {k.n, k.c, k.h, k.w}, ws[] = {k.f, k.c, k.k, k.k};
    int64_t ys[] = {k.n, k.f, oh, ow};
    d->x = tu_randn(r, DSV_F32, 4, xs, 1);
    d->w = tu_randn(r, DSV_F32, 4, ws, 0.3);
    d->b = tu_randn(r, DSV_F32, 1, &k.f, 1);
    d->dout = tu_randn(r, DSV_F32, 4, ys, 1);
    d->out = tu_zeros(DSV_F32, 4, ys), d->out2 = tu_zeros(DSV_F32, 4, ys);
    d->dx = tu_zeros(DSV_F32, 4, xs), d->dx2 = tu_zeros(DSV_F32, 4, xs);
    d->dw = tu_zeros(DSV_F32, 4, ws), d->dw2 = tu_zeros(DSV_F32, 4, ws);
    d->db = tu_zeros(DSV_F32, 1, &k.f), d->db2 = tu_zeros(DSV_F32, 1, &k.f);
    dsv_call c = conv_call(d, true);
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
}

static void conv_data_free(conv_data *d)
{
    dsv_tensor *t[] = {&d->x, &d->w, &d->b, &d->dout, &d->out, &d->dx, &d->dw,
                       &d->db, &d->out2, &d->dx2, &d->dw2, &d->db2};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dsv_tensor_free(t[i]);
}

/* Forward and backward on onednn, the outputs filled with garbage first
 * (backward must overwrite). No cmocka asserts: it also runs inside parallel
 * regions. */
static dsv_status conv_try(conv_data *d, dsv_state *state, int nthreads)
{
    dsv_call c = conv_call(d, false);
    /* a node keeps its call, so the slot's owner is remembered */
    c.state = state, c.nthreads = nthreads;
    tu_rng r = {99};
    dsv_tensor *g[] = {&d->out2, &d->dx2, &d->dw2, &d->db2};
    for (int i = 0; i < 4; i++)
        for (int64_t j = 0; j < dsv_tensor_numel(g[i]); j++)
            dsv_tensor_set(g[i], j, 1e3 * tu_normal(&r));
    dsv_backend used;
    dsv_status s = dsv_forward(&c, DSV_BACKEND_ONEDNN, &used);
    if (!s && used != DSV_BACKEND_ONEDNN)
        s = dsv_error(DSV_UNSUPPORTED, "conv forward ran on %s", dsv_backend_name(used));
    if (!s)
        s = dsv_backward(&c, DSV_BACKEND_ONEDNN, &used);
    if (!s && used != DSV_BACKEND_ONEDNN)
        s = dsv_error(DSV_UNSUPPORTED, "conv backward ran on %s", dsv_backend_name(used));
    return s;
}

static void conv_run_onednn(conv_data *d, dsv_state *state, int nthreads)
{
    TU_OK(conv_try(d, state, nthreads));
}

static void conv_expect_equal(const conv_data *d)
{
    assert_true(max_err(&d->out2, &d->out) < TOL);
    assert_true(max_err(&d->dx2, &d->dx) < TOL);
    assert_true(max_err(&d->dw2, &d->dw) < TOL);
    assert_true(max_err(&d->db2, &d->db) < TOL);
}

static void test_conv_state_reuse(void **unused)
{
    (void)unused;
    tu_rng r = {1};
    /* the course cell shape in small; many channels; 1x1; 5x5 s1 p2 */
    conv_case cases[] = {{4, 3, 31, 31, 25, 3, 2, 1}, {2, 20, 9, 9, 17, 3, 1, 1},
                         {3, 8, 6, 6, 16, 1, 1, 0}, {2, 3, 7, 9, 4, 5, 1, 2}};
    dsv_state state = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conv_data d;
        conv_data_init(&d, &r, cases[i]);
        /* one-off (no state), then twice on one state, the second time with
           new input values */
        conv_run_onednn(&d, NULL, 0);
        conv_expect_equal(&d);
        conv_run_onednn(&d, &state, 0);
        conv_expect_equal(&d);
        void *kept = state.ptr;
        assert_non_null(kept);
        for (int64_t j = 0; j < dsv_tensor_numel(&d.x); j++)
            dsv_tensor_set(&d.x, j, -dsv_tensor_get(&d.x, j));
        for (int64_t j = 0; j < dsv_tensor_numel(&d.w); j++)
            dsv_tensor_set(&d.w, j, 0.5 * dsv_tensor_get(&d.w, j));
        dsv_call c = conv_call(&d, true);
        TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
        TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
        conv_run_onednn(&d, &state, 0);
        conv_expect_equal(&d);
        assert_ptr_equal(state.ptr, kept); /* rebuilt in place, not reallocated */

        /* the checker catches a wrong value */
        float *o = d.dw2.data;
        o[dsv_tensor_numel(&d.dw2) / 2] += 1e-2f;
        assert_false(max_err(&d.dw2, &d.dw) < TOL);
        conv_data_free(&d);
    }

    /* the last batch is smaller: same state, new shape */
    conv_data a, b;
    conv_data_init(&a, &r, cases[0]);
    conv_case small = cases[0];
    small.n = 1;
    conv_data_init(&b, &r, small);
    conv_run_onednn(&a, &state, 0);
    conv_expect_equal(&a);
    conv_run_onednn(&b, &state, 0);
    conv_expect_equal(&b);
    conv_run_onednn(&a, &state, 0);
    conv_expect_equal(&a);

    /* backward alone, with dx only, then dw only, then db only */
    dsv_call c = conv_call(&a, false);
    c.state = &state;
    memset(a.dx2.data, 0x7f, dsv_tensor_nbytes(&a.dx2));
    c.dw = c.db = NULL;
    TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL));
    assert_true(max_err(&a.dx2, &a.dx) < TOL);
    c = conv_call(&a, false);
    c.state = &state;
    memset(a.dw2.data, 0x7f, dsv_tensor_nbytes(&a.dw2));
    memset(a.db2.data, 0x7f, dsv_tensor_nbytes(&a.db2));
    c.dx = c.db = NULL;
    TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL));
    assert_true(max_err(&a.dw2, &a.dw) < TOL);
    c.dw = NULL, c.db = &a.db2;
    TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL));
    assert_true(max_err(&a.db2, &a.db) < TOL);

    dsv_state_free(&state);
    assert_null(state.ptr);
    conv_data_free(&a);
    conv_data_free(&b);
}

/* ---- max pooling ---------------------------------------------------------- */

typedef struct pool_data {
    dsv_tensor x, dout, out, dx, out2, dx2;
    dsv_params p;
} pool_data;

static dsv_call pool_call(pool_data *d, bool ref)
{
    dsv_call c = dsv_call_make(DSV_OP_MAX_POOL);
    c.p = d->p;
    c.x = &d->x, c.dout = &d->dout;
    c.out = ref ? &d->out : &d->out2;
    c.dx = ref ? &d->dx : &d->dx2;
    return c;
}

static void pool_ref(pool_data *d)
{
    dsv_call c = pool_call(d, true);
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
}

static void pool_data_init(pool_data *d, tu_rng *r, int64_t n, int64_t ch,
                           int64_t h, int64_t w, int k, int stride)
{
    memset(d, 0, sizeof(*d));
    d->p = dsv_params_default();
    d->p.pool_height = d->p.pool_width = k, d->p.stride = stride;
    int64_t xs[] = {n, ch, h, w};
    int64_t ys[] = {n, ch, (h - k) / stride + 1, (w - k) / stride + 1};
    d->x = tu_randn(r, DSV_F32, 4, xs, 1);
    d->dout = tu_randn(r, DSV_F32, 4, ys, 1);
    d->out = tu_zeros(DSV_F32, 4, ys), d->out2 = tu_zeros(DSV_F32, 4, ys);
    d->dx = tu_zeros(DSV_F32, 4, xs), d->dx2 = tu_zeros(DSV_F32, 4, xs);
    pool_ref(d);
}

static void pool_data_free(pool_data *d)
{
    dsv_tensor *t[] = {&d->x, &d->dout, &d->out, &d->dx, &d->out2, &d->dx2};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dsv_tensor_free(t[i]);
}

static dsv_status pool_try(pool_data *d, dsv_state *state, int nthreads, bool backward)
{
    dsv_call c = pool_call(d, false);
    c.state = state, c.nthreads = nthreads;
    if (backward)
        memset(d->dx2.data, 0x7f, dsv_tensor_nbytes(&d->dx2));
    dsv_backend used;
    dsv_status s = backward ? dsv_backward(&c, DSV_BACKEND_ONEDNN, &used)
                            : dsv_forward(&c, DSV_BACKEND_ONEDNN, &used);
    if (!s && used != DSV_BACKEND_ONEDNN)
        s = dsv_error(DSV_UNSUPPORTED, "max_pool ran on %s", dsv_backend_name(used));
    return s;
}

static void pool_fwd(pool_data *d, dsv_state *state, int nthreads)
{
    TU_OK(pool_try(d, state, nthreads, false));
}

static void pool_bwd(pool_data *d, dsv_state *state, int nthreads)
{
    TU_OK(pool_try(d, state, nthreads, true));
}

static void test_pool_state_and_workspace(void **unused)
{
    (void)unused;
    tu_rng r = {2};
    pool_data a, b;
    pool_data_init(&a, &r, 6, 3, 32, 32, 2, 2);
    pool_data_init(&b, &r, 6, 3, 32, 32, 2, 2);
    dsv_state state = {0};

    /* one-off calls, no state: backward has no forward to lean on */
    pool_fwd(&a, NULL, 0);
    assert_true(max_err(&a.out2, &a.out) == 0);
    pool_bwd(&a, NULL, 0);
    assert_true(max_err(&a.dx2, &a.dx) < TOL);

    /* backward first on a fresh state */
    pool_bwd(&a, &state, 0);
    assert_true(max_err(&a.dx2, &a.dx) < TOL);
    /* the usual forward then backward */
    pool_fwd(&a, &state, 0);
    pool_bwd(&a, &state, 0);
    assert_true(max_err(&a.out2, &a.out) == 0);
    assert_true(max_err(&a.dx2, &a.dx) < TOL);
    /* the forward saw a, the backward gets b (another buffer) */
    pool_fwd(&a, &state, 0);
    pool_bwd(&b, &state, 0);
    assert_true(max_err(&b.dx2, &b.dx) < TOL);
    /* same buffer, new values after the forward (as a gradient check does) */
    pool_fwd(&a, &state, 0);
    memcpy(a.x.data, b.x.data, dsv_tensor_nbytes(&a.x));
    memcpy(a.dout.data, b.dout.data, dsv_tensor_nbytes(&a.dout));
    pool_bwd(&a, &state, 0);
    assert_true(max_err(&a.dx2, &b.dx) < TOL);
    /* the checker catches a gradient routed to the wrong element */
    float *g = a.dx2.data;
    size_t i0 = 0;
    while (g[i0] == 0)
        i0++;
    g[i0 ^ 1] = g[i0], g[i0] = 0;
    assert_false(max_err(&a.dx2, &b.dx) < TOL);

    /* shape changes on the same state: smaller batch, 3x3 stride 2 windows,
       many channels */
    pool_data c, e, f;
    pool_data_init(&c, &r, 2, 3, 32, 32, 2, 2);
    pool_data_init(&e, &r, 3, 5, 9, 11, 3, 2);
    pool_data_init(&f, &r, 2, 40, 8, 8, 2, 2);
    pool_data *all[] = {&c, &e, &f, &b};
    for (int i = 0; i < 4; i++) {
        pool_fwd(all[i], &state, 0);
        pool_bwd(all[i], &state, 0);
        assert_true(max_err(&all[i]->out2, &all[i]->out) == 0);
        assert_true(max_err(&all[i]->dx2, &all[i]->dx) < TOL);
    }
    dsv_state_free(&state);
    assert_null(state.ptr);
    pool_data_free(&a), pool_data_free(&b), pool_data_free(&c);
    pool_data_free(&e), pool_data_free(&f);
}

/* ---- affine --------------------------------------------------------------- */

static void test_affine_state_reuse(void **unused)
{
    (void)unused;
    tu_rng r = {6};
    dsv_state state = {0};
    /* x (N, 3, 4, 5) read as (N, 60); then a smaller last batch; then 2-D */
    int64_t shapes[][4] = {{7, 3, 4, 5}, {2, 3, 4, 5}, {7, 3, 4, 5}, {9, 60, 1, 1}};
    int ndims[] = {4, 4, 4, 2};
    dsv_tensor w = tu_randn(&r, DSV_F32, 2, (int64_t[]){60, 11}, 0.3);
    dsv_tensor b = tu_randn(&r, DSV_F32, 1, (int64_t[]){11}, 1);
    for (int k = 0; k < 4; k++) {
        int64_t n = shapes[k][0];
        dsv_tensor x = tu_randn(&r, DSV_F32, ndims[k], shapes[k], 1);
        dsv_tensor dout = tu_randn(&r, DSV_F32, 2, (int64_t[]){n, 11}, 1);
        dsv_tensor t[8];
        for (int i = 0; i < 2; i++) {
            t[4 * i] = tu_zeros(DSV_F32, 2, (int64_t[]){n, 11});
            t[4 * i + 1] = tu_zeros(DSV_F32, ndims[k], shapes[k]);
            t[4 * i + 2] = tu_zeros(DSV_F32, 2, w.shape);
            t[4 * i + 3] = tu_zeros(DSV_F32, 1, b.shape);
        }
        for (int i = 0; i < 2; i++) {
            dsv_call c = dsv_call_make(DSV_OP_AFFINE);
            c.x = &x, c.w = &w, c.b = &b, c.dout = &dout;
            c.out = &t[4 * i], c.dx = &t[4 * i + 1], c.dw = &t[4 * i + 2], c.db = &t[4 * i + 3];
            dsv_backend want = i ? DSV_BACKEND_ONEDNN : DSV_BACKEND_NAIVE, used;
            if (i) {
                c.state = &state;
                for (int j = 4; j < 8; j++)
                    memset(t[j].data, 0x7f, dsv_tensor_nbytes(&t[j]));
            }
            TU_OK(dsv_forward(&c, want, &used));
            assert_int_equal(used, want);
            TU_OK(dsv_backward(&c, want, &used));
            assert_int_equal(used, want);
        }
        for (int j = 0; j < 4; j++)
            assert_true(max_err(&t[4 + j], &t[j]) < TOL);
        /* the checker catches a transposed weight gradient */
        float *g = t[6].data;
        float tmp = g[1];
        g[1] = g[11], g[11] = tmp;
        assert_false(max_err(&t[6], &t[2]) < TOL);
        for (int j = 0; j < 8; j++)
            dsv_tensor_free(&t[j]);
        dsv_tensor_free(&x), dsv_tensor_free(&dout);
        /* weights change between steps: the next round sees new values */
        for (int64_t j = 0; j < dsv_tensor_numel(&w); j++)
            dsv_tensor_set(&w, j, dsv_tensor_get(&w, j) * 0.9 + 0.01);
    }
    dsv_state_free(&state);
    assert_null(state.ptr);
    dsv_tensor_free(&w), dsv_tensor_free(&b);
}

/* ---- relu ----------------------------------------------------------------- */

/* Forward and backward against naive, exactly: ties at zero get no gradient
 * (the course's x > 0 mask), a NaN input gives 0 forward as in the naive
 * kernel, and one state follows size changes. */
static void test_relu(void **unused)
{
    (void)unused;
    tu_rng r = {6};
    int64_t shapes[][4] = {{3, 5, 7, 9}, {64, 2000, 1, 1}, {1, 1, 1, 1}, {50, 32, 32, 32}};
    dsv_state state = {0};
    for (int k = 0; k < 4; k++) {
        int nd = shapes[k][2] == 1 && k != 2 ? 2 : 4;
        dsv_tensor x = tu_randn(&r, DSV_F32, nd, shapes[k], 2);
        dsv_tensor dout = tu_randn(&r, DSV_F32, nd, shapes[k], 1);
        float *v = x.data;
        int64_t n = dsv_tensor_numel(&x);
        for (int64_t i = 0; i < n; i += 3)
            v[i] = roundf(v[i]); /* many exact zeros */
        if (n > 7)
            v[7] = NAN;
        dsv_tensor out[2], dx[2];
        for (int b = 0; b < 2; b++) {
            out[b] = tu_zeros(DSV_F32, nd, shapes[k]);
            dx[b] = tu_zeros(DSV_F32, nd, shapes[k]);
            memset(dx[b].data, 0x7f, dsv_tensor_nbytes(&dx[b]));
            dsv_call c = dsv_call_make(DSV_OP_RELU);
            c.x = &x, c.out = &out[b], c.dout = &dout, c.dx = &dx[b];
            c.state = b ? &state : NULL;
            dsv_backend want = b ? DSV_BACKEND_ONEDNN : DSV_BACKEND_NAIVE, used;
            /* on the state: backward before any forward, then both */
            if (b)
                TU_OK(dsv_backward(&c, want, &used));
            TU_OK(dsv_forward(&c, want, &used));
            assert_int_equal(used, want);
            TU_OK(dsv_backward(&c, want, &used));
            assert_int_equal(used, want);
        }
        /* equal values (oneDNN's masked gradient may be -0.0); at the NaN
           input naive's gradient is 0 and oneDNN passes dout */
        const float *o0 = out[0].data, *o1 = out[1].data;
        const float *g0 = dx[0].data, *g1 = dx[1].data;
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += o0[i] != o1[i] || (!isnan(v[i]) && g0[i] != g1[i]);
        assert_int_equal(bad, 0);
        for (int b = 0; b < 2; b++)
            dsv_tensor_free(&out[b]), dsv_tensor_free(&dx[b]);
        dsv_tensor_free(&x), dsv_tensor_free(&dout);
    }
    dsv_state_free(&state);
    assert_null(state.ptr);
}

/* ---- batch normalization -------------------------------------------------- */

typedef struct bn_data {
    dsv_op op;
    dsv_params p;
    dsv_tensor x, w, b, dout;
    dsv_tensor rm, rv, out, dx, dw, db;       /* naive */
    dsv_tensor rm2, rv2, out2, dx2, dw2, db2; /* onednn */
} bn_data;

static void bn_data_init(bn_data *d, tu_rng *r, int nd, const int64_t *xs)
{
    memset(d, 0, sizeof(*d));
    d->op = nd == 4 ? DSV_OP_SPATIAL_BATCHNORM : DSV_OP_BATCHNORM;
    d->p = dsv_params_default();
    d->p.momentum = 0.8;
    int64_t ch = xs[1];
    d->x = tu_randn(r, DSV_F32, nd, xs, 2);
    float *v = d->x.data;
    for (int64_t i = 0; i < dsv_tensor_numel(&d->x); i++)
        v[i] += 3; /* a mean away from zero */
    d->w = tu_randn(r, DSV_F32, 1, &ch, 1), d->b = tu_randn(r, DSV_F32, 1, &ch, 1);
    d->dout = tu_randn(r, DSV_F32, nd, xs, 1);
    d->rm = tu_randn(r, DSV_F32, 1, &ch, 0.5), d->rv = tu_randn(r, DSV_F32, 1, &ch, 0.5);
    v = d->rv.data;
    for (int64_t i = 0; i < ch; i++)
        v[i] = fabsf(v[i]) + 0.5f;
    d->rm2 = tu_zeros(DSV_F32, 1, &ch), d->rv2 = tu_zeros(DSV_F32, 1, &ch);
    TU_OK(dsv_tensor_copy(&d->rm2, &d->rm));
    TU_OK(dsv_tensor_copy(&d->rv2, &d->rv));
    d->out = tu_zeros(DSV_F32, nd, xs), d->out2 = tu_zeros(DSV_F32, nd, xs);
    d->dx = tu_zeros(DSV_F32, nd, xs), d->dx2 = tu_zeros(DSV_F32, nd, xs);
    d->dw = tu_zeros(DSV_F32, 1, &ch), d->dw2 = tu_zeros(DSV_F32, 1, &ch);
    d->db = tu_zeros(DSV_F32, 1, &ch), d->db2 = tu_zeros(DSV_F32, 1, &ch);
}

static void bn_data_free(bn_data *d)
{
    dsv_tensor *t[] = {&d->x,   &d->w,  &d->b,  &d->dout, &d->rm,  &d->rv,
                       &d->out, &d->dx, &d->dw, &d->db,   &d->rm2, &d->rv2,
                       &d->out2, &d->dx2, &d->dw2, &d->db2};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dsv_tensor_free(t[i]);
}

static dsv_call bn_call(bn_data *d, bool ref, bool train)
{
    dsv_call c = dsv_call_make(d->op);
    c.p = d->p;
    c.p.train = train;
    c.x = &d->x, c.w = &d->w, c.b = &d->b, c.dout = &d->dout;
    c.running_mean = ref ? &d->rm : &d->rm2;
    c.running_var = ref ? &d->rv : &d->rv2;
    c.out = ref ? &d->out : &d->out2;
    c.dx = ref ? &d->dx : &d->dx2;
    c.dw = ref ? &d->dw : &d->dw2;
    c.db = ref ? &d->db : &d->db2;
    return c;
}

/* Forward (if fwd) and backward (if bwd) of one mode on naive and on onednn
 * (with `state`, `nthreads`); the onednn outputs are poisoned first. */
static dsv_status bn_try(bn_data *d, dsv_state *state, int nthreads, bool train,
                         bool fwd, bool bwd)
{
    dsv_call ref = bn_call(d, true, train), c = bn_call(d, false, train);
    c.state = state, c.nthreads = nthreads;
    dsv_tensor *g[] = {&d->out2, &d->dx2, &d->dw2, &d->db2};
    for (int i = 0; i < 4; i++)
        memset(g[i]->data, 0x7f, dsv_tensor_nbytes(g[i]));
    dsv_backend used = DSV_BACKEND_ONEDNN;
    dsv_status s = DSV_OK;
    if (fwd && !(s = dsv_forward(&ref, DSV_BACKEND_NAIVE, NULL)))
        s = dsv_forward(&c, DSV_BACKEND_ONEDNN, &used);
    if (!s && used == DSV_BACKEND_ONEDNN && bwd &&
        !(s = dsv_backward(&ref, DSV_BACKEND_NAIVE, NULL)))
        s = dsv_backward(&c, DSV_BACKEND_ONEDNN, &used);
    if (!s && used != DSV_BACKEND_ONEDNN)
        s = dsv_error(DSV_UNSUPPORTED, "batchnorm ran on %s", dsv_backend_name(used));
    return s;
}

static void bn_expect_equal(const bn_data *d, bool fwd, bool bwd)
{
    if (fwd) {
        assert_true(max_err(&d->out2, &d->out) < TOL);
        assert_true(max_err(&d->rm2, &d->rm) < TOL);
        assert_true(max_err(&d->rv2, &d->rv) < TOL);
    }
    if (bwd) {
        assert_true(max_err(&d->dx2, &d->dx) < TOL);
        assert_true(max_err(&d->dw2, &d->dw) < TOL);
        assert_true(max_err(&d->db2, &d->db) < TOL);
    }
}

static void bn_run(bn_data *d, dsv_state *state, bool train, bool fwd, bool bwd)
{
    TU_OK(bn_try(d, state, 0, train, fwd, bwd));
    bn_expect_equal(d, fwd, bwd);
}

/* Train and test mode on one state, running statistics, backward without or
 * after a stale forward, unwanted gradients, shape and eps changes. */
static void test_batchnorm_state(void **unused)
{
    (void)unused;
    tu_rng r = {7};
    struct {
        int nd;
        int64_t xs[4];
    } cases[] = {{2, {64, 37}}, {4, {4, 6, 5, 7}}, {4, {8, 32, 8, 8}}, {2, {1, 5}}};
    dsv_state state = {0};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        bn_data d, e;
        bn_data_init(&d, &r, cases[k].nd, cases[k].xs);
        bn_data_init(&e, &r, cases[k].nd, cases[k].xs);
        /* one-off calls, no state */
        bn_run(&d, NULL, true, true, true);
        bn_run(&d, NULL, false, true, true);
        /* backward first on a fresh state (for a new shape), both modes */
        bn_run(&d, &state, true, false, true);
        bn_run(&d, &state, false, false, true);
        /* training steps with evaluations between them; the running
           statistics follow the naive ones step by step */
        for (int i = 0; i < 3; i++) {
            bn_run(&d, &state, true, true, true);
            bn_run(&d, &state, false, true, false);
        }
        /* the forward saw d, the backward gets e (another buffer) */
        bn_run(&d, &state, true, true, false);
        bn_run(&e, &state, true, false, true);
        /* same buffer, new values after the forward (a gradient check) */
        bn_run(&d, &state, true, true, false);
        memcpy(d.x.data, e.x.data, dsv_tensor_nbytes(&d.x));
        bn_run(&d, &state, true, false, true);
        /* the checker catches a wrong value */
        float *g = d.dx2.data;
        g[dsv_tensor_numel(&d.dx2) / 2] += 1e-2f;
        assert_false(max_err(&d.dx2, &d.dx) < TOL);

        /* only some gradients wanted: dx alone, dw and db alone */
        for (int train = 0; train < 2; train++) {
            bn_run(&d, &state, train, true, true);
            dsv_call c = bn_call(&d, false, train);
            c.state = &state, c.dw = c.db = NULL;
            memset(d.dx2.data, 0x7f, dsv_tensor_nbytes(&d.dx2));
            TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL));
            assert_true(max_err(&d.dx2, &d.dx) < TOL);
            c = bn_call(&d, false, train);
            c.state = &state, c.dx = NULL;
            memset(d.dw2.data, 0x7f, dsv_tensor_nbytes(&d.dw2));
            memset(d.db2.data, 0x7f, dsv_tensor_nbytes(&d.db2));
            TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL));
            assert_true(max_err(&d.dw2, &d.dw) < TOL);
            assert_true(max_err(&d.db2, &d.db) < TOL);
        }
        /* a train forward without running statistics to update */
        dsv_call c = bn_call(&d, false, true);
        c.state = &state, c.running_mean = c.running_var = NULL;
        memset(d.out2.data, 0x7f, dsv_tensor_nbytes(&d.out2));
        TU_OK(dsv_forward(&c, DSV_BACKEND_ONEDNN, NULL));
        dsv_call ref = bn_call(&d, true, true);
        ref.running_mean = ref.running_var = NULL;
        TU_OK(dsv_forward(&ref, DSV_BACKEND_NAIVE, NULL));
        assert_true(max_err(&d.out2, &d.out) < TOL);
        /* another eps: the state is rebuilt */
        d.p.eps = 1e-1;
        bn_run(&d, &state, true, true, true);
        bn_run(&d, &state, false, true, true);
        bn_data_free(&d), bn_data_free(&e);
    }
    dsv_state_free(&state);
    assert_null(state.ptr);
}

/* Inside a 2-thread region each thread runs relu and batchnorm on its own
 * problem with nthreads = 1 and its own states; then the same states on the
 * whole team (rebuilt for 2 threads). */
static void test_relu_batchnorm_threads(void **unused)
{
    (void)unused;
    TU_OK(dsv_set_num_threads(2));
    tu_rng r = {8};
    bn_data d[2];
    for (int t = 0; t < 2; t++)
        bn_data_init(&d[t], &r, 4, (int64_t[]){6, 16, 12, 12});
    dsv_state bs[2] = {{0}}, rs[2] = {{0}};
    dsv_status st[2] = {DSV_OK, DSV_OK};
    for (int round = 0; round < 2; round++) {
        #pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            dsv_status s = bn_try(&d[t], &bs[t], 1, true, true, true);
            if (!s)
                s = bn_try(&d[t], &bs[t], 1, false, true, true);
            dsv_call c = dsv_call_make(DSV_OP_RELU);
            c.x = &d[t].x, c.out = &d[t].out2, c.dout = &d[t].dout, c.dx = &d[t].dx2;
            c.nthreads = 1, c.state = &rs[t];
            if (!s)
                s = dsv_forward(&c, DSV_BACKEND_ONEDNN, NULL);
            if (!s)
                s = dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL);
            st[t] = s;
        }
        TU_OK(st[0]);
        TU_OK(st[1]);
        for (int t = 0; t < 2; t++) {
            dsv_call c = dsv_call_make(DSV_OP_RELU);
            c.x = &d[t].x, c.out = &d[t].out, c.dout = &d[t].dout, c.dx = &d[t].dx;
            TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
            TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
            assert_true(max_err(&d[t].out2, &d[t].out) == 0);
            assert_true(max_err(&d[t].dx2, &d[t].dx) == 0);
            TU_OK(bn_try(&d[t], &bs[t], 0, true, true, true));
            bn_expect_equal(&d[t], true, true);
        }
    }
    for (int t = 0; t < 2; t++) {
        dsv_state_free(&bs[t]);
        dsv_state_free(&rs[t]);
        bn_data_free(&d[t]);
    }
}

/* ---- threads -------------------------------------------------------------- */

static void test_thread_count_change(void **unused)
{
    (void)unused;
    tu_rng r = {3};
    conv_data d;
    conv_data_init(&d, &r, (conv_case){8, 3, 31, 31, 25, 3, 2, 1});
    pool_data pd;
    pool_data_init(&pd, &r, 8, 3, 32, 32, 2, 2);
    dsv_state cs = {0}, ps = {0};
    int counts[] = {1, 2, 1, 2};
    for (int i = 0; i < 4; i++) {
        TU_OK(dsv_set_num_threads(counts[i]));
        conv_run_onednn(&d, &cs, 0);
        conv_expect_equal(&d);
        pool_fwd(&pd, &ps, 0);
        pool_bwd(&pd, &ps, 0);
        assert_true(max_err(&pd.dx2, &pd.dx) < TOL);
        assert_int_equal(omp_get_max_threads(), counts[i]); /* restored */
    }
    /* The same states, now inside a 2-thread region with nthreads = 1 on one
       thread: primitives built for 2 threads would deadlock here (oneDNN's
       backward-weights barrier), so this only passes if they are rebuilt. */
    dsv_status s = DSV_OK;
    #pragma omp parallel num_threads(2)
    {
        if (omp_get_thread_num() == 0) {
            s = conv_try(&d, &cs, 1);
            if (!s)
                s = pool_try(&pd, &ps, 1, false);
            if (!s)
                s = pool_try(&pd, &ps, 1, true);
        }
    }
    TU_OK(s);
    conv_expect_equal(&d);
    assert_true(max_err(&pd.dx2, &pd.dx) < TOL);
    dsv_state_free(&cs);
    dsv_state_free(&ps);
    conv_data_free(&d);
    pool_data_free(&pd);
    TU_OK(dsv_set_num_threads(2));
}

/* Each of two OpenMP threads runs conv and pool forward/backward with
 * nthreads = 1 on its half of the batch, with its own states; the halves
 * together equal the whole-batch naive result (dw and db summed). */
static void test_batch_parallel(void **unused)
{
    (void)unused;
    TU_OK(dsv_set_num_threads(2));
    tu_rng r = {4};
    conv_data d;
    conv_data_init(&d, &r, (conv_case){10, 3, 31, 31, 25, 3, 2, 1});
    pool_data pd;
    pool_data_init(&pd, &r, 10, 3, 32, 32, 2, 2);
    dsv_tensor dw[2], db[2];
    for (int t = 0; t < 2; t++) {
        dw[t] = tu_zeros(DSV_F32, 4, d.w.shape);
        db[t] = tu_zeros(DSV_F32, 1, d.b.shape);
    }
    dsv_state cs[2] = {{0}}, ps[2] = {{0}};
    dsv_status st[2] = {DSV_OK, DSV_OK};

    for (int round = 0; round < 3; round++) {
        #pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            int64_t n0 = t * 5;
            dsv_tensor x = dsv_tensor_slice(&d.x, n0, 5);
            dsv_tensor out = dsv_tensor_slice(&d.out2, n0, 5);
            dsv_tensor dout = dsv_tensor_slice(&d.dout, n0, 5);
            dsv_tensor dx = dsv_tensor_slice(&d.dx2, n0, 5);
            dsv_call c = dsv_call_make(DSV_OP_CONV);
            c.p = d.p, c.x = &x, c.w = &d.w, c.b = &d.b, c.out = &out;
            c.dout = &dout, c.dx = &dx, c.dw = &dw[t], c.db = &db[t];
            c.nthreads = 1, c.state = &cs[t];
            dsv_status s = dsv_forward(&c, DSV_BACKEND_ONEDNN, NULL);
            if (!s)
                s = dsv_backward(&c, DSV_BACKEND_ONEDNN, NULL);

            dsv_tensor px = dsv_tensor_slice(&pd.x, n0, 5);
            dsv_tensor pout = dsv_tensor_slice(&pd.out2, n0, 5);
            dsv_tensor pdout = dsv_tensor_slice(&pd.dout, n0, 5);
            dsv_tensor pdx = dsv_tensor_slice(&pd.dx2, n0, 5);
            dsv_call p = dsv_call_make(DSV_OP_MAX_POOL);
            p.p = pd.p, p.x = &px, p.out = &pout, p.dout = &pdout, p.dx = &pdx;
            p.nthreads = 1, p.state = &ps[t];
            if (!s)
                s = dsv_forward(&p, DSV_BACKEND_ONEDNN, NULL);
            if (!s)
                s = dsv_backward(&p, DSV_BACKEND_ONEDNN, NULL);
            st[t] = s;
        }
        TU_OK(st[0]);
        TU_OK(st[1]);
        float *w0 = dw[0].data, *w1 = dw[1].data, *b0 = db[0].data, *b1 = db[1].data;
        float *w = d.dw2.data, *b = d.db2.data;
        for (int64_t i = 0; i < dsv_tensor_numel(&d.dw2); i++)
            w[i] = w0[i] + w1[i];
        for (int64_t i = 0; i < dsv_tensor_numel(&d.db2); i++)
            b[i] = b0[i] + b1[i];
        conv_expect_equal(&d);
        assert_true(max_err(&pd.out2, &pd.out) == 0);
        assert_true(max_err(&pd.dx2, &pd.dx) < TOL);
        memset(d.out2.data, 0, dsv_tensor_nbytes(&d.out2));
        memset(pd.dx2.data, 0, dsv_tensor_nbytes(&pd.dx2));
    }
    for (int t = 0; t < 2; t++) {
        dsv_state_free(&cs[t]);
        dsv_state_free(&ps[t]);
        dsv_tensor_free(&dw[t]), dsv_tensor_free(&db[t]);
    }
    conv_data_free(&d);
    pool_data_free(&pd);
}

/* ---- errors --------------------------------------------------------------- */

/* Calls the kernel directly with an output one row short (dsv_forward would
 * refuse it): oneDNN rejects the descriptor, and the status and message
 * come back converted; the state stays usable. */
static void test_error_conversion(void **unused)
{
    (void)unused;
    tu_rng r = {5};
    conv_data d;
    conv_data_init(&d, &r, (conv_case){2, 3, 31, 31, 4, 3, 2, 1});
    dsv_tensor bad = tu_zeros(DSV_F32, 4, (int64_t[]){2, 4, 15, 16});
    const dsv_backend_table *t = dsv_backend_get(DSV_BACKEND_ONEDNN);
    assert_non_null(t);
    dsv_state state = {0};
    dsv_call c = conv_call(&d, false);
    c.out = &bad, c.state = &state;
    dsv_error_clear();
    dsv_status s = t->kernels[DSV_OP_CONV].forward(&c);
    assert_true(s == DSV_BACKEND || s == DSV_UNSUPPORTED);
    assert_non_null(strstr(dsv_errmsg(), "onednn: conv"));
    assert_non_null(strstr(dsv_errmsg(), "invalid_arguments"));
    /* the same call without a state slot fails the same way and leaks nothing */
    c.state = NULL;
    assert_int_equal(t->kernels[DSV_OP_CONV].forward(&c), s);
    /* and the node's state recovers */
    conv_run_onednn(&d, &state, 0);
    conv_expect_equal(&d);
    /* an output with the right element count but other dims passes
       validation; onednn declines it and naive runs */
    dsv_tensor odd = tu_zeros(DSV_F32, 4, (int64_t[]){2, 4, 8, 32});
    c = conv_call(&d, false);
    c.out = &odd;
    dsv_backend used;
    TU_OK(dsv_forward(&c, DSV_BACKEND_ONEDNN, &used));
    assert_int_equal(used, DSV_BACKEND_NAIVE);
    dsv_tensor_free(&odd);
    dsv_state_free(&state);
    dsv_tensor_free(&bad);
    conv_data_free(&d);

    /* float64 is not ours: the dispatcher falls back to naive */
    dsv_tensor x = tu_randn(&r, DSV_F64, 4, (int64_t[]){1, 1, 4, 4}, 1);
    dsv_tensor y = tu_zeros(DSV_F64, 4, (int64_t[]){1, 1, 2, 2});
    dsv_call p = dsv_call_make(DSV_OP_MAX_POOL);
    p.x = &x, p.out = &y, p.p.stride = 2;
    TU_OK(dsv_forward(&p, DSV_BACKEND_ONEDNN, &used));
    assert_int_equal(used, DSV_BACKEND_NAIVE);
    dsv_tensor_free(&x), dsv_tensor_free(&y);
}

/* ---- weights reordered once per change ------------------------------------ */

/* Forward of c on onednn (with its state) and on naive into ref; the two must
 * agree. */
static void forward_both(dsv_call c, dsv_tensor *out, dsv_tensor *ref)
{
    dsv_backend used;
    c.out = out;
    TU_OK(dsv_forward(&c, DSV_BACKEND_ONEDNN, &used));
    assert_int_equal(used, DSV_BACKEND_ONEDNN);
    c.out = ref, c.state = NULL;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, &used));
    assert_true(max_err(out, ref) < TOL);
}

/* Inference reorders the weights once for any number of calls; a change of
 * one element in the same buffer (what an optimizer step or a gradient check
 * does) is seen by the next call; training reorders once per update. */
static void test_weights_reordered_once(void **unused)
{
    (void)unused;
    tu_rng r = {8};
    for (int op = 0; op < 2; op++) {
        bool conv = op == 1;
        int64_t xs[] = {3, 4, 8, 8}, ws4[] = {6, 4, 3, 3}, ws2[] = {256, 40};
        int64_t ys4[] = {3, 6, 8, 8}, ys2[] = {3, 40};
        dsv_tensor x = tu_randn(&r, DSV_F32, 4, xs, 1);
        dsv_tensor w = conv ? tu_randn(&r, DSV_F32, 4, ws4, 0.3)
                            : tu_randn(&r, DSV_F32, 2, ws2, 0.3);
        int64_t m = conv ? ws4[0] : ws2[1];
        dsv_tensor b = tu_randn(&r, DSV_F32, 1, &m, 1);
        dsv_tensor out = tu_zeros(DSV_F32, conv ? 4 : 2, conv ? ys4 : ys2);
        dsv_tensor ref = tu_zeros(DSV_F32, conv ? 4 : 2, conv ? ys4 : ys2);
        dsv_tensor dout = tu_randn(&r, DSV_F32, conv ? 4 : 2, conv ? ys4 : ys2, 1);
        dsv_tensor dx = tu_zeros(DSV_F32, 4, xs), dx_ref = tu_zeros(DSV_F32, 4, xs);
        dsv_state state = {0};
        dsv_call c = dsv_call_make(conv ? DSV_OP_CONV : DSV_OP_AFFINE);
        c.p.stride = 1, c.p.pad = 1, c.p.train = false;
        c.x = &x, c.w = &w, c.b = &b, c.state = &state;

        int64_t r00 = dsv_odn_counts_get().weight_reorders;
        forward_both(c, &out, &ref);
        int64_t r0 = dsv_odn_counts_get().weight_reorders;
        assert_true(r0 - r00 <= 1); /* 0 when oneDNN takes the plain layout */
        for (int i = 0; i < 5; i++)
            forward_both(c, &out, &ref);
        assert_int_equal(dsv_odn_counts_get().weight_reorders, r0);

        /* one element changed in place: new results, one reorder */
        float *wp = w.data;
        wp[dsv_tensor_numel(&w) / 2] += 0.5f;
        forward_both(c, &out, &ref);
        forward_both(c, &out, &ref);
        int64_t r1 = dsv_odn_counts_get().weight_reorders;
        assert_int_equal(r1 - r0, r0 - r00);

        /* training: forward, backward data, update; each pass sees the
           update */
        c.p.train = true, c.dout = &dout;
        for (int step = 0; step < 3; step++) {
            forward_both(c, &out, &ref);
            dsv_backend used;
            c.dx = &dx;
            TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, &used));
            assert_int_equal(used, DSV_BACKEND_ONEDNN);
            dsv_call n = c;
            n.dx = &dx_ref, n.state = NULL;
            TU_OK(dsv_backward(&n, DSV_BACKEND_NAIVE, &used));
            assert_true(max_err(&dx, &dx_ref) < TOL);
            c.dx = NULL;
            for (int64_t j = 0; j < dsv_tensor_numel(&w); j++)
                wp[j] *= 0.97f;
        }
        dsv_state_free(&state);
        dsv_tensor *t[] = {&x, &w, &b, &out, &ref, &dout, &dx, &dx_ref};
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
            dsv_tensor_free(t[i]);
    }
}

/* Test-mode forwards (forward_inference: max pooling keeps no workspace)
 * agree with naive, and a training pass on the same slot afterwards still
 * gets its workspace: max pooling's backward against naive. */
static void test_test_mode_forward(void **unused)
{
    (void)unused;
    tu_rng r = {12};
    int64_t xs[] = {4, 3, 8, 8}, ys[] = {4, 3, 4, 4};
    dsv_tensor x = tu_randn(&r, DSV_F32, 4, xs, 1), dout = tu_randn(&r, DSV_F32, 4, ys, 1);
    dsv_tensor out = tu_zeros(DSV_F32, 4, ys), ref = tu_zeros(DSV_F32, 4, ys);
    dsv_tensor dx = tu_zeros(DSV_F32, 4, xs), dx_ref = tu_zeros(DSV_F32, 4, xs);
    dsv_state state = {0};
    dsv_call c = dsv_call_make(DSV_OP_MAX_POOL);
    c.p.stride = 2, c.x = &x, c.dout = &dout, c.state = &state;
    for (int round = 0; round < 2; round++) {
        c.p.train = false;
        forward_both(c, &out, &ref);
        c.p.train = true;
        forward_both(c, &out, &ref);
        dsv_backend used;
        c.dx = &dx;
        TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, &used));
        assert_int_equal(used, DSV_BACKEND_ONEDNN);
        dsv_call n = c;
        n.dx = &dx_ref, n.state = NULL;
        TU_OK(dsv_backward(&n, DSV_BACKEND_NAIVE, &used));
        assert_true(max_err(&dx, &dx_ref) < TOL);
        c.dx = NULL;
        /* a test-mode forward between a forward and its backward: the
           backward still finds (or remakes) the workspace of its x */
        c.p.train = true;
        forward_both(c, &out, &ref);
        c.p.train = false;
        forward_both(c, &out, &ref);
        c.p.train = true, c.dx = &dx;
        memset(dx.data, 0x7f, dsv_tensor_nbytes(&dx));
        TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, &used));
        assert_true(max_err(&dx, &dx_ref) < TOL);
        c.dx = NULL;
    }
    dsv_state_free(&state);
    dsv_tensor *t[] = {&x, &dout, &out, &ref, &dx, &dx_ref};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dsv_tensor_free(t[i]);
}

/* ---- one state per configuration ------------------------------------------ */

/* Forward and backward of op on onednn for a batch of n on state; results
 * checked against naive. */
static void run_op_batch(dsv_op op, int64_t n, bool train, dsv_state *state, tu_rng *r)
{
    bool conv = op == DSV_OP_CONV, pool = op == DSV_OP_MAX_POOL;
    bool affine = op == DSV_OP_AFFINE, bn = op == DSV_OP_SPATIAL_BATCHNORM;
    int64_t xs[] = {n, 4, 8, 8}, ws4[] = {6, 4, 3, 3}, ws2[] = {256, 12}, ch = 4;
    int64_t ys[] = {n, conv ? 6 : 4, pool ? 4 : 8, pool ? 4 : 8}, ys2[] = {n, 12};
    int yd = affine ? 2 : 4;
    const int64_t *yshape = affine ? ys2 : ys;
    dsv_tensor x = tu_randn(r, DSV_F32, 4, xs, 1);
    dsv_tensor w = conv ? tu_randn(r, DSV_F32, 4, ws4, 0.3)
                 : affine ? tu_randn(r, DSV_F32, 2, ws2, 0.3)
                          : tu_randn(r, DSV_F32, 1, &ch, 1);
    int64_t m = conv ? 6 : affine ? 12 : 4;
    dsv_tensor b = tu_randn(r, DSV_F32, 1, &m, 1);
    dsv_tensor rm = tu_zeros(DSV_F32, 1, &ch), rv = tu_randn(r, DSV_F32, 1, &ch, 0.1);
    for (int i = 0; i < 4; i++)
        dsv_tensor_set(&rv, i, 1 + fabs(dsv_tensor_get(&rv, i)));
    dsv_tensor out = tu_zeros(DSV_F32, yd, yshape), ref = tu_zeros(DSV_F32, yd, yshape);
    dsv_tensor dout = tu_randn(r, DSV_F32, yd, yshape, 1);
    dsv_tensor dx = tu_zeros(DSV_F32, 4, xs), dx_ref = tu_zeros(DSV_F32, 4, xs);
    dsv_call c = dsv_call_make(op);
    c.p.stride = pool ? 2 : 1, c.p.pad = 1, c.p.train = train;
    c.x = &x, c.state = state;
    if (conv || affine || bn)
        c.w = &w, c.b = &b;
    if (bn) {
        /* train mode updates the running statistics: naive gets copies */
        c.running_mean = &rm, c.running_var = &rv;
    }
    if (bn && train) {
        dsv_backend used;
        c.out = &out;
        TU_OK(dsv_forward(&c, DSV_BACKEND_ONEDNN, &used));
        assert_int_equal(used, DSV_BACKEND_ONEDNN);
    } else {
        forward_both(c, &out, &ref);
    }
    if (train) {
        dsv_backend used;
        c.dout = &dout, c.dx = &dx;
        TU_OK(dsv_backward(&c, DSV_BACKEND_ONEDNN, &used));
        assert_int_equal(used, DSV_BACKEND_ONEDNN);
        if (!bn) {
            c.dx = &dx_ref, c.state = NULL;
            TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, &used));
            assert_true(max_err(&dx, &dx_ref) < TOL);
        }
    }
    dsv_tensor *t[] = {&x, &w, &b, &rm, &rv, &out, &ref, &dout, &dx, &dx_ref};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dsv_tensor_free(t[i]);
}

/* A training batch, a smaller last batch and test-mode passes, alternating:
 * after the first round nothing is built again. */
static void test_alternating_shapes(void **unused)
{
    (void)unused;
    tu_rng r = {13};
    dsv_op ops[] = {DSV_OP_CONV, DSV_OP_AFFINE, DSV_OP_MAX_POOL, DSV_OP_RELU,
                    DSV_OP_SPATIAL_BATCHNORM};
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        dsv_state state = {0};
        int64_t made = 0;
        for (int round = 0; round < 3; round++) {
            if (round == 1)
                made = dsv_odn_counts_get().prims_made;
            run_op_batch(ops[k], 5, true, &state, &r);
            run_op_batch(ops[k], 3, true, &state, &r);
            run_op_batch(ops[k], 5, false, &state, &r);
            run_op_batch(ops[k], 3, false, &state, &r);
        }
        assert_int_equal(dsv_odn_counts_get().prims_made, made);
        dsv_state_free(&state);
        assert_null(state.ptr);
    }
}

int main(void)
{
    alarm(120); /* a deadlocked primitive kills the program: the test fails */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_state_reuse),
        cmocka_unit_test(test_pool_state_and_workspace),
        cmocka_unit_test(test_affine_state_reuse),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_batchnorm_state),
        cmocka_unit_test(test_relu_batchnorm_threads),
        cmocka_unit_test(test_thread_count_change),
        cmocka_unit_test(test_batch_parallel),
        cmocka_unit_test(test_error_conversion),
        cmocka_unit_test(test_weights_reordered_once),
        cmocka_unit_test(test_test_mode_forward),
        cmocka_unit_test(test_alternating_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
