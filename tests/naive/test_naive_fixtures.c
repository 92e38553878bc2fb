/*
 * Naive kernels against reference tensors computed with PyTorch
 * (tools/make_fixtures.py -> tests/fixtures/naive/). Every case in cases.txt
 * runs forward and, where the fixture has gradients, backward, in float64
 * (course rel error <= 1e-9) and float32 (error scaled by the tensor's largest
 * value <= 1e-5).
 *
 * Fixtures are float64 (labels int64, read as int32) and loaded with
 * dsv_npy_load.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define F64_TOL 1e-9
#define F32_TOL 1e-5

/* Loads an optional fixture; false if the file does not exist. */
static bool npy_read(const char *path, dsv_tensor *t)
{
    if (access(path, R_OK) != 0)
        return false;
    TU_OK(dsv_npy_load(path, t));
    return true;
}

/* ---- comparison ------------------------------------------------------------ */

/* float64: the course's relative error; float32: max |a - b| / max |want|. */
static double fx_error(const dsv_tensor *got, const dsv_tensor *want)
{
    if (got->dtype == DSV_F64)
        return dsv_rel_error(got, want);
    if (dsv_tensor_numel(got) != dsv_tensor_numel(want))
        return INFINITY;
    double diff = 0, scale = 1e-12;
    for (int64_t i = 0; i < dsv_tensor_numel(want); i++) {
        double a = dsv_tensor_get(got, i), b = dsv_tensor_get(want, i);
        double d = fabs(a - b);
        diff = !(d <= diff) ? (isnan(d) ? INFINITY : d) : diff;
        scale = fmax(scale, fabs(b));
    }
    return diff / scale;
}

static bool fx_close(const dsv_tensor *got, const dsv_tensor *want, double *err)
{
    *err = fx_error(got, want);
    return *err <= (got->dtype == DSV_F64 ? F64_TOL : F32_TOL);
}

/* Worst error per dtype over all cases, for the summary line. */
static double worst_err[2];

static void expect_close(const char *cs, const char *what, const dsv_tensor *got,
                         const dsv_tensor *want)
{
    double err;
    bool ok = fx_close(got, want, &err);
    int k = got->dtype == DSV_F64;
    worst_err[k] = fmax(worst_err[k], err);
    if (!ok)
        fail_msg("%s (%s): %s error %.3e", cs, dsv_dtype_name(got->dtype), what, err);
}

/* ---- cases ----------------------------------------------------------------- */

typedef struct fx_case {
    char name[64];
    dsv_op op;
    dsv_params p;
} fx_case;

enum { MAX_CASES = 64 };
static fx_case cases[MAX_CASES];
static int ncases;

static int load_cases(void **st)
{
    (void)st;
    FILE *f = fopen(tu_fixture("naive/cases.txt"), "r");
    if (!f) {
        fprintf(stderr, "missing %s\n", tu_fixture("naive/cases.txt"));
        return -1;
    }
    char op[64];
    int train;
    fx_case c;
    c.p = dsv_params_default();
    while (ncases < MAX_CASES &&
           fscanf(f, "%63s %63s %d %d %d %d %d %lf %lf %d", c.name, op, &c.p.stride,
                  &c.p.pad, &c.p.pool_height, &c.p.pool_width, &c.p.groups, &c.p.eps,
                  &c.p.momentum, &train) == 10) {
        if (dsv_op_from_name(op, &c.op) != DSV_OK) {
            fclose(f);
            fprintf(stderr, "cases.txt: %s\n", dsv_errmsg());
            return -1;
        }
        c.p.train = train != 0;
        cases[ncases++] = c;
    }
    fclose(f);
    return ncases > 0 ? 0 : -1;
}

static bool fx_load(const fx_case *cs, const char *what, dsv_tensor *t)
{
    char name[160];
    snprintf(name, sizeof(name), "naive/%s.%s.npy", cs->name, what);
    memset(t, 0, sizeof(*t));
    return npy_read(tu_fixture(name), t);
}

/* A float fixture converted to dt (labels stay int32); false if absent. */
static bool fx_input(const fx_case *cs, const char *what, dsv_dtype dt, dsv_tensor *t)
{
    dsv_tensor raw;
    if (!fx_load(cs, what, &raw))
        return false;
    if (raw.dtype == DSV_I32) {
        *t = raw;
        return true;
    }
    TU_OK(dsv_tensor_init(t, dt, raw.ndim, raw.shape));
    TU_OK(dsv_tensor_copy(t, &raw));
    dsv_tensor_free(&raw);
    return true;
}

enum { X, X2, W, B, Y, RM, RV, DOUT, NIN };
static const char *const in_names[NIN] = {"x", "x2", "w", "b", "y",
                                          "running_mean", "running_var", "dout"};

/* Runs one case in dtype dt and compares every expected tensor it has. */
static void run_case(const fx_case *cs, dsv_dtype dt)
{
    dsv_tensor in[NIN];
    bool has[NIN];
    for (int i = 0; i < NIN; i++)
        has[i] = fx_input(cs, in_names[i], dt, &in[i]);
    assert_true(has[X]);

    dsv_call c = dsv_call_make(cs->op);
    c.p = cs->p;
    c.x = &in[X];
    c.x2 = has[X2] ? &in[X2] : NULL;
    c.w = has[W] ? &in[W] : NULL;
    c.b = has[B] ? &in[B] : NULL;
    c.y = has[Y] ? &in[Y] : NULL;
    c.running_mean = has[RM] ? &in[RM] : NULL;
    c.running_var = has[RV] ? &in[RV] : NULL;
    c.nthreads = 1;

    dsv_tensor want, got;
    if (dsv_op_is_loss(cs->op)) {
        double loss = NAN;
        assert_true(fx_load(cs, "loss", &want));
        TU_OK(dsv_tensor_init_like(&got, &in[X]));
        c.loss = &loss;
        c.dx = &got;
        TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
        dsv_tensor lt = dsv_tensor_wrap(&loss, DSV_F64, 1, (int64_t[]){1});
        if (dt == DSV_F32) { /* the loss is a double either way */
            double err = fabs(loss - dsv_tensor_get(&want, 0)) / fabs(dsv_tensor_get(&want, 0));
            if (err > F32_TOL)
                fail_msg("%s (float32): loss error %.3e", cs->name, err);
        } else {
            expect_close(cs->name, "loss", &lt, &want);
        }
        dsv_tensor_free(&want);
        assert_true(fx_load(cs, "dx", &want));
        expect_close(cs->name, "dx", &got, &want);
        dsv_tensor_free(&want);
        dsv_tensor_free(&got);
        goto free_inputs;
    }

    assert_true(fx_load(cs, "out", &want));
    TU_OK(dsv_tensor_init(&got, dt, want.ndim, want.shape));
    c.out = &got;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));
    expect_close(cs->name, "out", &got, &want);
    dsv_tensor_free(&want);
    dsv_tensor_free(&got);
    if (fx_load(cs, "running_mean_out", &want)) {
        expect_close(cs->name, "running_mean", &in[RM], &want);
        dsv_tensor_free(&want);
    }
    if (fx_load(cs, "running_var_out", &want)) {
        expect_close(cs->name, "running_var", &in[RV], &want);
        dsv_tensor_free(&want);
    }
    if (!has[DOUT])
        goto free_inputs;

    /* backward with the forward inputs as they were (running stats are
       not used in train mode and unchanged in test mode) */
    static const char *const gnames[4] = {"dx", "dx2", "dw", "db"};
    const int gsrc[4] = {X, X2, W, B};
    dsv_tensor want_g[4], grad[4];
    dsv_tensor **slot[4] = {&c.dx, &c.dx2, &c.dw, &c.db};
    bool hg[4];
    c.dout = &in[DOUT];
    c.out = NULL;
    for (int k = 0; k < 4; k++) {
        hg[k] = fx_load(cs, gnames[k], &want_g[k]);
        if (hg[k]) {
            assert_true(has[gsrc[k]]);
            TU_OK(dsv_tensor_init_like(&grad[k], &in[gsrc[k]]));
            /* poison: backward must overwrite, not accumulate */
            for (int64_t i = 0; i < dsv_tensor_numel(&grad[k]); i++)
                dsv_tensor_set(&grad[k], i, 1e3);
            *slot[k] = &grad[k];
        }
    }
    TU_OK(dsv_backward(&c, DSV_BACKEND_NAIVE, NULL));
    for (int k = 0; k < 4; k++)
        if (hg[k]) {
            expect_close(cs->name, gnames[k], &grad[k], &want_g[k]);
            dsv_tensor_free(&grad[k]);
            dsv_tensor_free(&want_g[k]);
        }

free_inputs:
    for (int i = 0; i < NIN; i++)
        if (has[i])
            dsv_tensor_free(&in[i]);
}

static void test_fixtures_f64(void **st)
{
    (void)st;
    for (int i = 0; i < ncases; i++)
        run_case(&cases[i], DSV_F64);
    printf("naive fixtures: %d cases, float64 worst rel error %.3e\n", ncases, worst_err[1]);
}

static void test_fixtures_f32(void **st)
{
    (void)st;
    for (int i = 0; i < ncases; i++)
        run_case(&cases[i], DSV_F32);
    printf("naive fixtures: %d cases, float32 worst scaled error %.3e\n", ncases,
           worst_err[0]);
}

/* Every op except dropout (its mask is ours, not torch's) has a fixture. */
static void test_fixtures_cover_ops(void **st)
{
    (void)st;
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        if (op == DSV_OP_DROPOUT)
            continue;
        bool found = false;
        for (int i = 0; i < ncases; i++)
            found |= cases[i].op == (dsv_op)op;
        if (!found)
            fail_msg("no fixture for %s", dsv_op_name((dsv_op)op));
    }
}

/* The comparison rejects a result that is off in one element. */
static void test_compare_catches_errors(void **st)
{
    (void)st;
    fx_case cs = cases[0];
    for (int i = 0; i < ncases; i++)
        if (cases[i].op == DSV_OP_CONV)
            cs = cases[i];
    dsv_tensor want, f64, f32;
    double err;
    assert_true(fx_load(&cs, "out", &want));
    TU_OK(dsv_tensor_init_like(&f64, &want));
    TU_OK(dsv_tensor_init(&f32, DSV_F32, want.ndim, want.shape));
    TU_OK(dsv_tensor_copy(&f64, &want));
    TU_OK(dsv_tensor_copy(&f32, &want));
    assert_true(fx_close(&f64, &want, &err));
    assert_true(fx_close(&f32, &want, &err));
    int64_t k = dsv_tensor_numel(&want) / 2;
    dsv_tensor_set(&f64, k, dsv_tensor_get(&want, k) * (1 + 1e-7));
    dsv_tensor_set(&f32, k, dsv_tensor_get(&want, k) + 1e-3);
    assert_false(fx_close(&f64, &want, &err));
    assert_false(fx_close(&f32, &want, &err));
    dsv_tensor_set(&f64, k, NAN);
    assert_false(fx_close(&f64, &want, &err));
    dsv_tensor_free(&want);
    dsv_tensor_free(&f64);
    dsv_tensor_free(&f32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_cover_ops),
        cmocka_unit_test(test_compare_catches_errors),
        cmocka_unit_test(test_fixtures_f64),
        cmocka_unit_test(test_fixtures_f32),
    };
    return cmocka_run_group_tests_name("naive_fixtures", tests, load_cases, NULL);
}
