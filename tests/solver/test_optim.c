/*
 * Update rules against the course's notebook checks (N, D = 4, 5), with the
 * expected arrays computed by numpy from optim.py's formulas, and a check that
 * the comparison catches a wrong update.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal/optim.h"
#include "testutil.h"

/* numpy, from the formulas in the course's optim.py */
static const double sgd_w[20] = {
    -0.394,
    -0.3418947368421053,
    -0.28978947368421054,
    -0.23768421052631583,
    -0.1855789473684211,
    -0.13347368421052636,
    -0.08136842105263162,
    -0.029263157894736883,
    0.022842105263157848,
    0.07494736842105258,
    0.1270526315789473,
    0.1791578947368421,
    0.23126315789473678,
    0.2833684210526315,
    0.33547368421052626,
    0.387578947368421,
    0.43968421052631573,
    0.4917894736842104,
    0.5438947368421052,
    0.596};
static const double mom_w[20] = {
    0.14060000000000006,
    0.2073894736842105,
    0.27417894736842097,
    0.34096842105263164,
    0.407757894736842,
    0.47454736842105266,
    0.5413368421052631,
    0.6081263157894736,
    0.6749157894736842,
    0.7417052631578946,
    0.8084947368421053,
    0.8752842105263158,
    0.9420736842105263,
    1.0088631578947367,
    1.0756526315789472,
    1.142442105263158,
    1.2092315789473682,
    1.276021052631579,
    1.3428105263157895,
    1.4096000000000002};
static const double mom_v[20] = {
    0.5406000000000001,
    0.5547578947368421,
    0.5689157894736842,
    0.5830736842105264,
    0.5972315789473683,
    0.6113894736842106,
    0.6255473684210526,
    0.6397052631578948,
    0.6538631578947369,
    0.6680210526315788,
    0.6821789473684211,
    0.6963368421052631,
    0.7104947368421053,
    0.7246526315789474,
    0.7388105263157895,
    0.7529684210526316,
    0.7671263157894737,
    0.7812842105263159,
    0.795442105263158,
    0.8096000000000001};
static const double rms_w[20] = {
    -0.3922384948433383,
    -0.34037513299070765,
    -0.28849238846687814,
    -0.23659120821081786,
    -0.18467247195258382,
    -0.13273699834703015,
    -0.08078555043091254,
    -0.02881884049026984,
    0.023162465587694647,
    0.07515774441461458,
    0.12716641159814304,
    0.17918791858913796,
    0.2312217498380417,
    0.28326742022505713,
    0.33532447273333105,
    0.3873924763382963,
    0.43947102408970146,
    0.4915597313657581,
    0.5436582342813369,
    0.5957661882343064};
static const double rms_cache[20] = {
    0.5976,
    0.6126277008310249,
    0.6277108033240998,
    0.6428493074792244,
    0.6580432132963988,
    0.6732925207756232,
    0.6885972299168975,
    0.7039573407202216,
    0.7193728531855956,
    0.7348437673130194,
    0.7503700831024931,
    0.7659518005540166,
    0.78158891966759,
    0.7972814404432133,
    0.8130293628808865,
    0.8288326869806094,
    0.8446914127423822,
    0.8606055401662049,
    0.8765750692520776,
    0.8926000000000001};
static const double adam_w[20] = {
    -0.40094747166840083,
    -0.3483618689667189,
    -0.2957770321333014,
    -0.24319298836973444,
    -0.19060976631902593,
    -0.13802739616704435,
    -0.08544590975289204,
    -0.032865340689163525,
    0.019714275506843335,
    0.07229290126975907,
    0.12487049682925762,
    0.17744702003811577,
    0.2300224261834716,
    0.2825966677792994,
    0.33516969433784094,
    0.3877414521174136,
    0.4403118838436444,
    0.49288092840074144,
    0.5454485204889067,
    0.5980145902433942};
static const double adam_m[20] = {
    0.48000000000000004,
    0.49947368421052635,
    0.5189473684210526,
    0.538421052631579,
    0.5578947368421052,
    0.5773684210526316,
    0.596842105263158,
    0.6163157894736842,
    0.6357894736842106,
    0.6552631578947368,
    0.6747368421052632,
    0.6942105263157895,
    0.7136842105263158,
    0.7331578947368421,
    0.7526315789473684,
    0.7721052631578947,
    0.791578947368421,
    0.8110526315789475,
    0.8305263157894738,
    0.8500000000000001};
static const double adam_v[20] = {
    0.69966,
    0.6890838227146813,
    0.678513185595568,
    0.6679480886426593,
    0.6573885318559557,
    0.6468345152354571,
    0.6362860387811634,
    0.6257431024930747,
    0.615205706371191,
    0.6046738504155125,
    0.5941475346260386,
    0.5836267590027702,
    0.5731115235457064,
    0.5626018282548476,
    0.5520976731301939,
    0.5415990581717451,
    0.5311059833795013,
    0.5206184487534625,
    0.5101364542936287,
    0.49966};

enum { N = 20 };

static void linspace(double *v, double a, double b)
{
    for (int i = 0; i < N; i++)
        v[i] = a + (b - a) * i / (N - 1);
}

/* The course's rel_error: max |x - y| / max(1e-8, |x| + |y|). */
static double rel_error(const double *x, const double *y)
{
    double e = 0;
    for (int i = 0; i < N; i++) {
        double d = fabs(x[i] - y[i]) / fmax(1e-8, fabs(x[i]) + fabs(y[i]));
        e = fmax(e, d);
    }
    return e;
}

typedef struct fixture {
    dsv_optimizer *o;
    double w[N], dw[N];
} fixture;

static void setup(fixture *f, dsv_update_rule rule, double lr)
{
    dsv_optim_config c = dsv_optim_config_default(rule);
    c.learning_rate = lr;
    TU_OK(dsv_optimizer_create(&f->o, &c, N, DSV_F64));
    linspace(f->w, -0.4, 0.6);
    linspace(f->dw, -0.6, 0.4);
}

static void test_defaults(void **st)
{
    (void)st;
    assert_true(dsv_optim_config_default(DSV_UPDATE_SGD).learning_rate == 1e-2);
    assert_true(dsv_optim_config_default(DSV_UPDATE_ADAM).learning_rate == 1e-3);
    dsv_optim_config a = dsv_optim_config_default(DSV_UPDATE_ADAM);
    assert_true(a.beta1 == 0.9 && a.beta2 == 0.999 && a.epsilon == 1e-8);
    assert_true(dsv_optim_config_default(DSV_UPDATE_RMSPROP).decay_rate == 0.99);
    assert_true(dsv_optim_config_default(DSV_UPDATE_SGD_MOMENTUM).momentum == 0.9);
    for (int r = 0; r < DSV_UPDATE_COUNT; r++) {
        dsv_update_rule back;
        TU_OK(dsv_update_rule_from_name(dsv_update_rule_name((dsv_update_rule)r), &back));
        assert_int_equal(back, r);
    }
    dsv_update_rule r;
    assert_int_equal(dsv_update_rule_from_name("adamw", &r), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "adamw"));
    dsv_optimizer *o;
    dsv_optim_config c = dsv_optim_config_default(DSV_UPDATE_SGD);
    assert_int_equal(dsv_optimizer_create(&o, &c, N, DSV_I32), DSV_INVALID);
    c.learning_rate = NAN;
    assert_int_equal(dsv_optimizer_create(&o, &c, N, DSV_F64), DSV_INVALID);
    assert_null(o);
}

static void test_sgd(void **st)
{
    (void)st;
    fixture f;
    setup(&f, DSV_UPDATE_SGD, 1e-2);
    assert_int_equal(dsv_optimizer_num_states(f.o), 0);
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_true(rel_error(f.w, sgd_w) < 1e-7);
    dsv_optimizer_destroy(f.o);
}

static void test_momentum(void **st)
{
    (void)st;
    fixture f;
    setup(&f, DSV_UPDATE_SGD_MOMENTUM, 1e-3);
    assert_int_equal(dsv_optimizer_num_states(f.o), 1);
    double *v = dsv_optimizer_state(f.o, 0);
    linspace(v, 0.6, 0.9);
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_true(rel_error(f.w, mom_w) < 1e-7);
    assert_true(rel_error(v, mom_v) < 1e-7);
    dsv_optimizer_destroy(f.o);
}

static void test_rmsprop(void **st)
{
    (void)st;
    fixture f;
    setup(&f, DSV_UPDATE_RMSPROP, 1e-2);
    double *cache = dsv_optimizer_state(f.o, 0);
    linspace(cache, 0.6, 0.9);
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_true(rel_error(f.w, rms_w) < 1e-7);
    assert_true(rel_error(cache, rms_cache) < 1e-7);
    dsv_optimizer_destroy(f.o);
}

static void test_adam(void **st)
{
    (void)st;
    fixture f;
    setup(&f, DSV_UPDATE_ADAM, 1e-2);
    assert_int_equal(dsv_optimizer_num_states(f.o), 2);
    double *m = dsv_optimizer_state(f.o, 0), *v = dsv_optimizer_state(f.o, 1);
    linspace(m, 0.6, 0.9);
    linspace(v, 0.7, 0.5);
    *dsv_optimizer_step_count(f.o) = 5;
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_int_equal(*dsv_optimizer_step_count(f.o), 6);
    assert_true(rel_error(f.w, adam_w) < 1e-7);
    assert_true(rel_error(m, adam_m) < 1e-7);
    assert_true(rel_error(v, adam_v) < 1e-7);
    dsv_optimizer_destroy(f.o);
}

/* The same check on a wrong update: adam without incrementing t first (t = 5
 * instead of 6 in the bias correction), and momentum with the sign of the
 * gradient flipped. Both must fail the 1e-7 bound by far. */
static void test_wrong_update_caught(void **st)
{
    (void)st;
    fixture f;
    setup(&f, DSV_UPDATE_ADAM, 1e-2);
    double *m = dsv_optimizer_state(f.o, 0), *v = dsv_optimizer_state(f.o, 1);
    linspace(m, 0.6, 0.9);
    linspace(v, 0.7, 0.5);
    *dsv_optimizer_step_count(f.o) = 4; /* as if t were used before the increment */
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_true(rel_error(f.w, adam_w) > 1e-5);
    assert_true(rel_error(m, adam_m) < 1e-7); /* moments do not depend on t */
    dsv_optimizer_destroy(f.o);

    setup(&f, DSV_UPDATE_SGD_MOMENTUM, 1e-3);
    linspace(dsv_optimizer_state(f.o, 0), 0.6, 0.9);
    for (int i = 0; i < N; i++)
        f.dw[i] = -f.dw[i];
    dsv_optimizer_step(f.o, f.w, f.dw);
    assert_true(rel_error(f.w, mom_w) > 1e-4);
    dsv_optimizer_destroy(f.o);

    /* A single wrong element is enough. */
    double w[N];
    memcpy(w, sgd_w, sizeof(w));
    w[7] += 1e-6;
    assert_true(rel_error(w, sgd_w) > 1e-7);
}

/* float32 follows the float64 result to float32 precision, and a large block
 * (parallel loop) gives the same values as the serial path element by
 * element. */
static void test_f32_and_parallel(void **st)
{
    (void)st;
    const int64_t n = 100003;
    for (int r = 0; r < DSV_UPDATE_COUNT; r++) {
        dsv_optim_config c = dsv_optim_config_default((dsv_update_rule)r);
        dsv_optimizer *big, *small;
        TU_OK(dsv_optimizer_create(&big, &c, n, DSV_F32));
        TU_OK(dsv_optimizer_create(&small, &c, 7, DSV_F32));
        dsv_optimizer_set_threads(big, 2); /* parallel even where 1 is the default */
        float *w = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
        tu_rng rng = {42};
        for (int64_t i = 0; i < n; i++)
            w[i] = (float)tu_normal(&rng), g[i] = (float)tu_normal(&rng);
        float ws[7], gs[7];
        int64_t at = n - 7;
        for (int step = 0; step < 3; step++) {
            memcpy(ws, w + at, sizeof(ws));
            memcpy(gs, g + at, sizeof(gs));
            dsv_optimizer_step(big, w, g);
            dsv_optimizer_step(small, ws, gs);
            assert_memory_equal(ws, w + at, sizeof(ws));
        }
        free(w), free(g);
        dsv_optimizer_destroy(big);
        dsv_optimizer_destroy(small);
    }

    fixture f;
    dsv_optim_config c = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.learning_rate = 1e-2;
    TU_OK(dsv_optimizer_create(&f.o, &c, N, DSV_F32));
    float w[N], dw[N], *m = dsv_optimizer_state(f.o, 0), *v = dsv_optimizer_state(f.o, 1);
    double md[N], vd[N], wd[N];
    linspace(wd, -0.4, 0.6), linspace(f.dw, -0.6, 0.4);
    linspace(md, 0.6, 0.9), linspace(vd, 0.7, 0.5);
    for (int i = 0; i < N; i++)
        w[i] = (float)wd[i], dw[i] = (float)f.dw[i], m[i] = (float)md[i], v[i] = (float)vd[i];
    *dsv_optimizer_step_count(f.o) = 5;
    dsv_optimizer_step(f.o, w, dw);
    for (int i = 0; i < N; i++)
        wd[i] = w[i];
    assert_true(rel_error(wd, adam_w) < 1e-6);
    dsv_optimizer_destroy(f.o);
}

static bool finite_block(const void *p, int64_t n, dsv_dtype dt)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dt == DSV_F32 ? ((const float *)p)[i] : ((const double *)p)[i]))
            return false;
    return true;
}

/* An optimizer of rule r's defaults over n values, run on two threads. */
static dsv_optimizer *two_thread_optimizer(dsv_dtype dt, dsv_update_rule r, int64_t n)
{
    dsv_optim_config c = dsv_optim_config_default(r);
    dsv_optimizer *o;
    TU_OK(dsv_optimizer_create(&o, &c, n, dt));
    dsv_optimizer_set_threads(o, 2);
    return o;
}

/* dsv_optimizer_step_finite, every rule and dtype, on two threads: true on
 * ordinary values; false, writing nothing, when one element near the end
 * (in the second thread's share) would overflow, in the parameter (sgd,
 * momentum) or in the state (rmsprop's cache, adam's v); and the step it
 * judged does make that value non-finite. */
static void test_step_finite(void **st)
{
    (void)st;
    const int64_t n = 100003, bad = n - 5;
    for (int dt = DSV_F32; dt <= DSV_F64; dt++)
        for (int r = 0; r < DSV_UPDATE_COUNT; r++) {
            dsv_optimizer *o = two_thread_optimizer((dsv_dtype)dt, (dsv_update_rule)r, n);
            const size_t es = dt == DSV_F32 ? 4 : 8, bytes = (size_t)n * es;
            void *w = malloc(bytes), *g = malloc(bytes), *w0 = malloc(bytes);
            void *s0[2] = {malloc(bytes), malloc(bytes)};
            tu_rng rng = {7};
            for (int64_t i = 0; i < n; i++) {
                double a = tu_normal(&rng), b = tu_normal(&rng);
                if (dt == DSV_F32)
                    ((float *)w)[i] = (float)a, ((float *)g)[i] = (float)b;
                else
                    ((double *)w)[i] = a, ((double *)g)[i] = b;
            }
            for (int step = 0; step < 2; step++) {
                assert_true(dsv_optimizer_step_finite(o, w, g));
                dsv_optimizer_step(o, w, g);
            }
            if (dt == DSV_F32)
                ((float *)w)[bad] = -FLT_MAX, ((float *)g)[bad] = FLT_MAX;
            else
                ((double *)w)[bad] = -DBL_MAX, ((double *)g)[bad] = DBL_MAX;
            const int ns = dsv_optimizer_num_states(o);
            memcpy(w0, w, bytes);
            for (int k = 0; k < ns; k++)
                memcpy(s0[k], dsv_optimizer_state(o, k), bytes);
            const int64_t t0 = *dsv_optimizer_step_count(o);
            assert_false(dsv_optimizer_step_finite(o, w, g));
            assert_memory_equal(w, w0, bytes);
            for (int k = 0; k < ns; k++)
                assert_memory_equal(dsv_optimizer_state(o, k), s0[k], bytes);
            assert_int_equal(*dsv_optimizer_step_count(o), t0);
            dsv_optimizer_step(o, w, g);
            bool all = finite_block(w, n, (dsv_dtype)dt);
            for (int k = 0; k < ns; k++)
                all = all && finite_block(dsv_optimizer_state(o, k), n, (dsv_dtype)dt);
            assert_false(all);
            free(w), free(g), free(w0), free(s0[0]), free(s0[1]);
            dsv_optimizer_destroy(o);
        }
}

/* dsv_optimizer_check, every rule and dtype, on two threads: 0 on ordinary
 * values; DSV_OPTIM_BAD_GRAD for a NaN or an infinite gradient near the end
 * (the second thread's share), with the update bit too; only
 * DSV_OPTIM_BAD_UPDATE for a finite gradient whose update overflows. */
static void test_check_gradients(void **st)
{
    (void)st;
    const int64_t n = 100003, bad = n - 3;
    for (int dt = DSV_F32; dt <= DSV_F64; dt++)
        for (int r = 0; r < DSV_UPDATE_COUNT; r++) {
            dsv_optimizer *o = two_thread_optimizer((dsv_dtype)dt, (dsv_update_rule)r, n);
            const size_t es = dt == DSV_F32 ? 4 : 8;
            void *w = calloc((size_t)n, es), *g = calloc((size_t)n, es);
            assert_non_null(w), assert_non_null(g);
            assert_int_equal(dsv_optimizer_check(o, w, g), 0);
            const double vals[3] = {NAN, INFINITY, dt == DSV_F32 ? FLT_MAX : DBL_MAX};
            for (int k = 0; k < 3; k++) {
                if (dt == DSV_F32)
                    ((float *)g)[bad] = (float)vals[k], ((float *)w)[bad] = -FLT_MAX;
                else
                    ((double *)g)[bad] = vals[k], ((double *)w)[bad] = -DBL_MAX;
                const unsigned got = dsv_optimizer_check(o, w, g);
                if (k < 2)
                    assert_int_equal(got, DSV_OPTIM_BAD_GRAD | DSV_OPTIM_BAD_UPDATE);
                else
                    assert_int_equal(got, DSV_OPTIM_BAD_UPDATE);
                assert_false(dsv_optimizer_step_finite(o, w, g));
            }
            free(w), free(g);
            dsv_optimizer_destroy(o);
        }
}

/* x into element i of a float32 or float64 block. */
static void put(void *a, dsv_dtype dt, int64_t i, double x)
{
    if (dt == DSV_F32)
        ((float *)a)[i] = (float)x;
    else
        ((double *)a)[i] = x;
}

/* Adam's light check (bounds on its state prove a step finite from one pass
 * over the gradients and weights) answers as the full check, on two threads,
 * float32 and float64, in three kinds of trials of zero to three steps:
 * ordinary ones; wide ones, with weights up to the largest power of ten of
 * the type, gradients past its square root, learning rates past it
 * (infinite in float32) and epsilons from 1e-30 to 1e3; and ones whose
 * gradients square to near the type's largest. Many of them overflow. It
 * settles ordinary steps, and leaves to the full check the first check
 * after the state was handed out (and may have changed: here, to a first
 * moment whose bias-corrected value overflows) and the checks after a step
 * that stored a NaN (taken though its check found the NaN gradient). */
static void test_adam_light_check(void **st)
{
    (void)st;
    const int64_t n = 40009; /* past PARALLEL_MIN: both threads scan */
    for (int dt = DSV_F32; dt <= DSV_F64; dt++) {
        const size_t bytes = (size_t)n * (dt == DSV_F32 ? 4 : 8);
        void *w = malloc(bytes), *g = malloc(bytes);
        assert_non_null(w), assert_non_null(g);
        tu_rng rng = {29};
        int light = 0, bad = 0;
        const double top = dt == DSV_F32 ? 38 : 307; /* decimal exponent of the largest */
        for (int trial = 0; trial < 150; trial++) {
            const int kind = trial % 3; /* ordinary, wide, large gradients */
            dsv_optim_config c = dsv_optim_config_default(DSV_UPDATE_ADAM);
            if (kind == 1) {
                c.learning_rate = pow(10, -4 + (top + 5) * tu_uniform(&rng));
                c.epsilon = pow(10, -30 + 33 * tu_uniform(&rng));
            } else if (kind == 2) {
                c.epsilon = pow(10, -8 + 11 * tu_uniform(&rng));
            }
            dsv_optimizer *o;
            TU_OK(dsv_optimizer_create(&o, &c, n, (dsv_dtype)dt));
            dsv_optimizer_set_threads(o, 2);
            const double ws = kind == 1 ? pow(10, top * tu_uniform(&rng)) : 1;
            const int steps = trial % 4;
            for (int s = 0; s <= steps; s++) {
                const double gs = kind == 0   ? 1
                                  : kind == 1 ? pow(10, -3 + (top / 2 + 6) * tu_uniform(&rng))
                                              : pow(10, top / 2 - 2 + 3 * tu_uniform(&rng));
                for (int64_t i = 0; i < n; i++) {
                    put(w, (dsv_dtype)dt, i, ws * tu_normal(&rng));
                    put(g, (dsv_dtype)dt, i, gs * tu_normal(&rng));
                }
                const int64_t before = dsv_optimizer_light_checks(o);
                const unsigned got = dsv_optimizer_check(o, w, g);
                assert_int_equal(got, dsv_optimizer_check_full(o, w, g));
                light += dsv_optimizer_light_checks(o) > before;
                bad += got != 0;
                if (got)
                    break;
                dsv_optimizer_step(o, w, g);
            }
            if (kind == 0) {
                assert_true(dsv_optimizer_light_checks(o) > 0);
                const int64_t before = dsv_optimizer_light_checks(o);
                if (trial % 2) { /* the state handed out and changed */
                    /* m' / (1 - beta1^t) overflows for t <= 5 */
                    put(dsv_optimizer_state(o, 0), (dsv_dtype)dt, n - 1,
                        dt == DSV_F32 ? 3e38 : 1e308);
                } else { /* a step with a NaN gradient, taken though judged bad */
                    put(g, (dsv_dtype)dt, n - 1, NAN);
                    assert_int_equal(dsv_optimizer_check(o, w, g),
                                     DSV_OPTIM_BAD_GRAD | DSV_OPTIM_BAD_UPDATE);
                    dsv_optimizer_step(o, w, g);
                    put(g, (dsv_dtype)dt, n - 1, 0); /* m and v stay NaN */
                    put(w, (dsv_dtype)dt, n - 1, 0.5);
                }
                assert_int_equal(dsv_optimizer_check(o, w, g), DSV_OPTIM_BAD_UPDATE);
                assert_int_equal(dsv_optimizer_light_checks(o), before);
            }
            dsv_optimizer_destroy(o);
        }
        print_message("%s: %d of the checks settled by the light check, %d found a step "
                      "not finite\n", dt == DSV_F32 ? "float32" : "float64", light, bad);
        /* both outcomes occurred, and the light check settled many */
        assert_true(light >= 40);
        assert_true(bad >= 20);
        free(w), free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_momentum),
        cmocka_unit_test(test_rmsprop),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_wrong_update_caught),
        cmocka_unit_test(test_f32_and_parallel),
        cmocka_unit_test(test_step_finite),
        cmocka_unit_test(test_check_gradients),
        cmocka_unit_test(test_adam_light_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
