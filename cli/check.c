/*
 * dasecv check: on this machine, every op of every available backend against
 * the naive reference (float32, forward and backward, a few configurations;
 * the fast backend also in float64), and the naive kernels' gradients
 * against central differences (float64).
 *
 * Error measures:
 *  - backend vs naive (float32): max |got - ref| / max |ref| over each output
 *    and gradient; pass below 1e-4 (float32 sums taken in another order);
 *    in float64 the same measure, pass below 1e-12;
 *  - numerical gradient (float64, h = 1e-5): the course's rel_error,
 *    max |a - b| / max(1e-8, |a| + |b|); pass below 1e-6 (rounding in the
 *    differences of sums of ~100 terms reaches 1e-7 on small gradients).
 * Inputs avoid kinks (relu inputs away from 0, distinct pooling values).
 * DASECV_CHECK_BREAK=OP perturbs that op's compared results, to show that
 * the check fails on a wrong kernel. Every op of the engine's table must have
 * at least one case: one without counts as a failure (and --list says so).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_model.h"
#include "cli.h"
#include "cmdline.h"
#include "dasecv/dasecv.h"
#include "internal/rng.h"

#define TOL_BACKEND 1e-4
#define TOL_BACKEND_F64 1e-12
#define TOL_GRAD 1e-6
#define TOL_GRAD_NORM 1e-6
#define H_STEP 1e-5

static const char usage[] =
    "usage: dasecv check [--op NAME] [--backend fast|onednn] [--threads N]\n"
    "                    [--quiet] [--list]\n"
    "       dasecv check --model MODEL|CHECKPOINT [--threads N] [--quiet]\n"
    "\n"
    "Runs, on this machine:\n"
    "  - every op of each available backend (fast, onednn) against the naive\n"
    "    reference on a few configurations, forward and backward, float32;\n"
    "    error = max |got - naive| / max |naive|, pass < 1e-4 (a configuration\n"
    "    a backend does not support is listed as 'n/a'); the fast backend\n"
    "    also in float64, pass < 1e-12;\n"
    "  - numerical gradient checks of the naive kernels, float64, central\n"
    "    differences with h = 1e-5; error = the course's rel_error, pass < 1e-6.\n"
    "Prints a table: op, configuration, backend, check, worst error, result.\n"
    "  --op NAME      only this op\n"
    "  --backend B    only this backend (and the gradient checks of naive)\n"
    "  --threads N    threads for the backends\n"
    "  --quiet        print only failures and the summary\n"
    "  --model M      instead, check a whole network (a built-in, a model file or\n"
    "                 a checkpoint's): its naive float64 gradient against central\n"
    "                 differences (h = 1e-6, up to 12 entries of each parameter,\n"
    "                 pass < 1e-5) and each backend's loss and gradients against\n"
    "                 naive (float32, pass < 2e-4), on a random batch of 4\n"
    "  --list         list the configurations (op, configuration) and exit\n"
    "Exit status: 0 all pass, 1 any failure, 2 bad usage.\n";

typedef struct op_case {
    dsv_op op;
    const char *desc;
    int xnd;
    int64_t xs[4];
    int wnd;           /* 0: no w */
    int64_t ws[4];
    int bnd;           /* 0: no b */
    int64_t bs[4];
    bool x2, labels, running, positive_w, fwd_only, no_gradcheck;
    int stride, pad, pool, groups;
    double keep;
    bool test_mode;
} op_case;

#define X(nd, ...) .xnd = nd, .xs = {__VA_ARGS__}
#define W(nd, ...) .wnd = nd, .ws = {__VA_ARGS__}
#define B(nd, ...) .bnd = nd, .bs = {__VA_ARGS__}
static const op_case cases[] = {
    {.op = DSV_OP_AFFINE, .desc = "x(4,3,2,2) w(12,5)", X(4, 4, 3, 2, 2), W(2, 12, 5), B(1, 5)},
    {.op = DSV_OP_AFFINE, .desc = "x(16,200) w(200,64)", X(2, 16, 200), W(2, 200, 64),
     B(1, 64), .no_gradcheck = true},
    {.op = DSV_OP_RELU, .desc = "x(4,7)", X(2, 4, 7)},
    {.op = DSV_OP_RELU, .desc = "x(2,3,8,8)", X(4, 2, 3, 8, 8)},
    {.op = DSV_OP_CONV, .desc = "x(2,3,7,7) w(4,3,3,3) s1 p1", X(4, 2, 3, 7, 7),
     W(4, 4, 3, 3, 3), B(1, 4), .stride = 1, .pad = 1},
    {.op = DSV_OP_CONV, .desc = "x(2,3,9,9) w(5,3,3,3) s2 p1", X(4, 2, 3, 9, 9),
     W(4, 5, 3, 3, 3), B(1, 5), .stride = 2, .pad = 1},
    {.op = DSV_OP_CONV, .desc = "x(2,3,16,16) w(8,3,7,7) s1 p3", X(4, 2, 3, 16, 16),
     W(4, 8, 3, 7, 7), B(1, 8), .stride = 1, .pad = 3, .no_gradcheck = true},
    {.op = DSV_OP_CONV, .desc = "x(4,3,32,32) w(32,3,7,7) s1 p3", X(4, 4, 3, 32, 32),
     W(4, 32, 3, 7, 7), B(1, 32), .stride = 1, .pad = 3, .no_gradcheck = true},
    {.op = DSV_OP_MAX_POOL, .desc = "x(4,32,32,32) 2x2 s2", X(4, 4, 32, 32, 32), .stride = 2,
     .pool = 2, .no_gradcheck = true},
    {.op = DSV_OP_AFFINE, .desc = "x(50,32,16,16) w(8192,100)", X(4, 50, 32, 16, 16),
     W(2, 8192, 100), B(1, 100), .no_gradcheck = true},
    {.op = DSV_OP_MAX_POOL, .desc = "x(2,3,8,8) 2x2 s2", X(4, 2, 3, 8, 8), .stride = 2,
     .pool = 2},
    {.op = DSV_OP_MAX_POOL, .desc = "x(2,2,7,7) 3x3 s2", X(4, 2, 2, 7, 7), .stride = 2,
     .pool = 3},
    {.op = DSV_OP_AVG_POOL, .desc = "x(4,32,32,32) 2x2 s2", X(4, 4, 32, 32, 32), .stride = 2,
     .pool = 2, .no_gradcheck = true},
    {.op = DSV_OP_AVG_POOL, .desc = "x(2,3,8,8) 2x2 s2", X(4, 2, 3, 8, 8), .stride = 2,
     .pool = 2},
    {.op = DSV_OP_AVG_POOL, .desc = "x(2,2,7,7) 3x3 s2", X(4, 2, 2, 7, 7), .stride = 2,
     .pool = 3},
    {.op = DSV_OP_AVG_POOL, .desc = "x(3,4,6,6) global 6x6", X(4, 3, 4, 6, 6), .pool = 6},
    {.op = DSV_OP_BATCHNORM, .desc = "x(8,5) train", X(2, 8, 5), W(1, 5), B(1, 5),
     .running = true, .positive_w = true},
    {.op = DSV_OP_BATCHNORM, .desc = "x(8,5) test", X(2, 8, 5), W(1, 5), B(1, 5),
     .running = true, .positive_w = true, .test_mode = true, .fwd_only = true},
    {.op = DSV_OP_SPATIAL_BATCHNORM, .desc = "x(4,3,5,5) train", X(4, 4, 3, 5, 5), W(1, 3),
     B(1, 3), .running = true, .positive_w = true},
    {.op = DSV_OP_LAYERNORM, .desc = "x(4,6)", X(2, 4, 6), W(1, 6), B(1, 6),
     .positive_w = true},
    {.op = DSV_OP_SPATIAL_GROUPNORM, .desc = "x(2,6,4,4) G=2", X(4, 2, 6, 4, 4),
     W(4, 1, 6, 1, 1), B(4, 1, 6, 1, 1), .positive_w = true, .groups = 2},
    {.op = DSV_OP_DROPOUT, .desc = "x(4,20) p=0.7", X(2, 4, 20), .keep = 0.7},
    {.op = DSV_OP_ADD, .desc = "x(2,3,4,4)", X(4, 2, 3, 4, 4), .x2 = true},
    {.op = DSV_OP_SOFTMAX_LOSS, .desc = "x(6,5)", X(2, 6, 5), .labels = true},
    {.op = DSV_OP_SVM_LOSS, .desc = "x(6,5)", X(2, 6, 5), .labels = true},
};
#undef X
#undef W
#undef B

/* ---- deterministic inputs ------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    return dsv_splitmix64(&r->s);
}

static double rng_normal(rng *r)
{
    double u = ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* One instance of a case: inputs, outputs, gradients in one dtype. */
typedef struct inst {
    dsv_tensor x, x2, w, b, y, rm, rv, out, dout, dx, dx2, dw, db;
    double loss;
    dsv_call c;
} inst;

static void inst_free(inst *t)
{
    dsv_tensor *all[] = {&t->x, &t->x2, &t->w, &t->b, &t->y, &t->rm, &t->rv,
                         &t->out, &t->dout, &t->dx, &t->dx2, &t->dw, &t->db};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

static dsv_status fill(dsv_tensor *t, dsv_dtype dt, int nd, const int64_t *shape, rng *r,
                       int kind)
{
    dsv_status s = dsv_tensor_init(t, dt, nd, shape);
    if (s)
        return s;
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = rng_normal(r);
        if (kind == 1) /* positive (gamma, running variance) */
            v = 0.5 + fabs(v);
        else if (kind == 2) /* away from relu's kink */
            v = v < 0 ? v - 0.05 : v + 0.05;
        else if (kind == 3) /* distinct values for pooling: a shuffled ramp */
            v = (double)((i * 7919 + 13) % n) / (double)n - 0.5;
        dsv_tensor_set(t, i, v);
    }
    return DSV_OK;
}

/* Builds an instance of case k in dtype dt from seed (same values for both
 * dtypes of one seed, up to rounding). */
static dsv_status inst_make(inst *t, const op_case *k, dsv_dtype dt, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    rng r = {seed};
    dsv_status s;
    int xkind = k->op == DSV_OP_RELU ? 2 : k->op == DSV_OP_MAX_POOL ? 3 : 0;
    if ((s = fill(&t->x, dt, k->xnd, k->xs, &r, xkind)))
        return s;
    if (k->x2 && (s = fill(&t->x2, dt, k->xnd, k->xs, &r, 0)))
        return s;
    if (k->wnd && (s = fill(&t->w, dt, k->wnd, k->ws, &r, k->positive_w ? 1 : 0)))
        return s;
    if (k->bnd && (s = fill(&t->b, dt, k->bnd, k->bs, &r, 0)))
        return s;
    if (k->running) {
        if ((s = fill(&t->rm, dt, k->wnd, k->ws, &r, 0)) ||
            (s = fill(&t->rv, dt, k->wnd, k->ws, &r, 1)))
            return s;
    }
    if (k->labels) {
        int64_t n = k->xs[0];
        if ((s = dsv_tensor_init(&t->y, DSV_I32, 1, &n)))
            return s;
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)t->y.data)[i] = (int32_t)(rng_next(&r) % (uint64_t)k->xs[1]);
    }
    dsv_call *c = &t->c;
    *c = dsv_call_make(k->op);
    c->x = &t->x;
    c->x2 = k->x2 ? &t->x2 : NULL;
    c->w = k->wnd ? &t->w : NULL;
    c->b = k->bnd ? &t->b : NULL;
    c->y = k->labels ? &t->y : NULL;
    c->running_mean = k->running ? &t->rm : NULL;
    c->running_var = k->running ? &t->rv : NULL;
    if (k->stride)
        c->p.stride = k->stride;
    c->p.pad = k->pad;
    if (k->pool)
        c->p.pool_height = c->p.pool_width = k->pool;
    if (k->groups)
        c->p.groups = k->groups;
    if (k->keep > 0)
        c->p.p = k->keep;
    c->p.seed = 1234;
    c->p.train = !k->test_mode;
    c->nthreads = 0;
    if (dsv_op_is_loss(k->op))
        c->loss = &t->loss;
    int nd;
    int64_t os[4];
    if ((s = dsv_op_check(c, false, &nd, os)))
        return s;
    if (dsv_op_is_loss(k->op)) {
        if ((s = dsv_tensor_init_like(&t->dx, &t->x)))
            return s;
        c->dx = &t->dx;
        return DSV_OK;
    }
    if ((s = dsv_tensor_init(&t->out, dt, nd, os)) || (s = fill(&t->dout, dt, nd, os, &r, 0)) ||
        (s = dsv_tensor_init_like(&t->dx, &t->x)))
        return s;
    if (k->x2 && (s = dsv_tensor_init_like(&t->dx2, &t->x2)))
        return s;
    if (k->wnd && (s = dsv_tensor_init_like(&t->dw, &t->w)))
        return s;
    if (k->bnd && (s = dsv_tensor_init_like(&t->db, &t->b)))
        return s;
    c->out = &t->out;
    c->dout = &t->dout;
    return DSV_OK;
}

/* Wires the gradient outputs for backward. */
static void inst_grads(inst *t, const op_case *k)
{
    t->c.dx = &t->dx;
    t->c.dx2 = k->x2 ? &t->dx2 : NULL;
    t->c.dw = k->wnd ? &t->dw : NULL;
    t->c.db = k->bnd ? &t->db : NULL;
}

/* ---- comparison ----------------------------------------------------------- */

static const char *g_break; /* DASECV_CHECK_BREAK */

static void maybe_break(const op_case *k, dsv_tensor *t)
{
    if (g_break && t->data && strcmp(g_break, dsv_op_name(k->op)) == 0)
        dsv_tensor_set(t, 0, dsv_tensor_get(t, 0) + 0.05 + 0.5 * fabs(dsv_tensor_get(t, 0)));
}

/* max |a - b| / max |b| */
static double scaled_err(const dsv_tensor *a, const dsv_tensor *b)
{
    double diff = 0, mag = 0;
    int64_t n = dsv_tensor_numel(b);
    for (int64_t i = 0; i < n; i++) {
        double x = dsv_tensor_get(a, i), y = dsv_tensor_get(b, i);
        double d = fabs(x - y);
        if (!(d <= diff))
            diff = isnan(d) ? INFINITY : d;
        mag = fmax(mag, fabs(y));
    }
    return diff / fmax(mag, 1e-12);
}

typedef struct tally {
    int pass, fail, na;
    bool quiet;
} tally;

static void row(tally *t, const op_case *k, const char *backend, const char *check,
                double err, double tol, const char *note)
{
    bool ok = note || err < tol;
    if (note)
        t->na++;
    else if (ok)
        t->pass++;
    else
        t->fail++;
    if (t->quiet && ok)
        return;
    char e[32];
    if (note)
        snprintf(e, sizeof(e), "-");
    else
        snprintf(e, sizeof(e), "%.2e", err);
    printf("%-18s %-32s %-7s %-12s %10s  %s\n", dsv_op_name(k->op), k->desc, backend, check, e,
           note ? note : ok ? "pass" : "FAIL");
}

static void error_row(tally *t, const op_case *k, const char *backend, const char *check)
{
    t->fail++;
    printf("%-18s %-32s %-7s %-12s %10s  FAIL (%s)\n", dsv_op_name(k->op), k->desc, backend,
           check, "-", dsv_errmsg());
}

/* Backend be against naive on case k, in dtype dt. */
static void cross_backend(tally *t, const op_case *k, dsv_backend be, dsv_dtype dt)
{
    const char *bn = dsv_backend_name(be);
    bool f64 = dt == DSV_F64;
    const char *fwd = f64 ? "forward f64" : "forward";
    const char *bwd = f64 ? "backward f64" : "backward";
    double tol = f64 ? TOL_BACKEND_F64 : TOL_BACKEND;
    inst ref, got;
    if (inst_make(&ref, k, dt, 7) || inst_make(&got, k, dt, 7)) {
        error_row(t, k, bn, "setup");
        goto out;
    }
    /* forward */
    if (dsv_pick_backend(&got.c, false, be) != be) {
        row(t, k, bn, fwd, 0, 0, "n/a");
    } else if (dsv_forward(&ref.c, DSV_BACKEND_NAIVE, NULL) ||
               dsv_forward(&got.c, be, NULL)) {
        error_row(t, k, bn, fwd);
    } else if (dsv_op_is_loss(k->op)) {
        maybe_break(k, &got.dx);
        double el = fabs(got.loss - ref.loss) / fmax(fabs(ref.loss), 1e-12);
        row(t, k, bn, fwd, fmax(el, scaled_err(&got.dx, &ref.dx)), tol, NULL);
    } else {
        maybe_break(k, &got.out);
        row(t, k, bn, fwd, scaled_err(&got.out, &ref.out), tol, NULL);
    }
    if (dsv_op_is_loss(k->op) || k->fwd_only)
        goto out;
    /* backward, from fresh forward inputs (running statistics restored) */
    inst_free(&ref);
    inst_free(&got);
    if (inst_make(&ref, k, dt, 7) || inst_make(&got, k, dt, 7)) {
        error_row(t, k, bn, "setup");
        goto out;
    }
    inst_grads(&ref, k);
    inst_grads(&got, k);
    if (dsv_pick_backend(&got.c, true, be) != be) {
        row(t, k, bn, bwd, 0, 0, "n/a");
    } else if (dsv_backward(&ref.c, DSV_BACKEND_NAIVE, NULL) ||
               dsv_backward(&got.c, be, NULL)) {
        error_row(t, k, bn, bwd);
    } else {
        maybe_break(k, &got.dx);
        double e = scaled_err(&got.dx, &ref.dx);
        if (k->x2)
            e = fmax(e, scaled_err(&got.dx2, &ref.dx2));
        if (k->wnd)
            e = fmax(e, scaled_err(&got.dw, &ref.dw));
        if (k->bnd)
            e = fmax(e, scaled_err(&got.db, &ref.db));
        row(t, k, bn, bwd, e, tol, NULL);
    }
out:
    inst_free(&ref);
    inst_free(&got);
}

/* ---- numerical gradients (naive, float64) ---------------------------------- */

static dsv_status fwd_array(void *ctx, dsv_tensor *out)
{
    inst *t = ctx;
    dsv_tensor *keep = t->c.out;
    t->c.out = out;
    dsv_status s = dsv_forward(&t->c, DSV_BACKEND_NAIVE, NULL);
    t->c.out = keep;
    return s;
}

static dsv_status fwd_loss(void *ctx, double *v)
{
    inst *t = ctx;
    dsv_tensor *keep = t->c.dx;
    t->c.dx = NULL;
    dsv_status s = dsv_forward(&t->c, DSV_BACKEND_NAIVE, NULL);
    t->c.dx = keep;
    *v = t->loss;
    return s;
}

static void gradcheck(tally *t, const op_case *k)
{
    bool norm = k->op == DSV_OP_BATCHNORM || k->op == DSV_OP_SPATIAL_BATCHNORM ||
                k->op == DSV_OP_LAYERNORM || k->op == DSV_OP_SPATIAL_GROUPNORM;
    double tol = norm ? TOL_GRAD_NORM : TOL_GRAD;
    inst a;
    dsv_tensor num = {0};
    double worst = 0;
    if (inst_make(&a, k, DSV_F64, 11)) {
        error_row(t, k, "naive", "numgrad");
        goto out;
    }
    if (dsv_op_is_loss(k->op)) {
        if (dsv_forward(&a.c, DSV_BACKEND_NAIVE, NULL) || dsv_tensor_init_like(&num, &a.x) ||
            dsv_numerical_gradient(fwd_loss, &a, &a.x, &num, H_STEP)) {
            error_row(t, k, "naive", "numgrad");
            goto out;
        }
        maybe_break(k, &a.dx);
        row(t, k, "naive", "numgrad f64", dsv_rel_error(&num, &a.dx), tol, NULL);
        goto out;
    }
    inst_grads(&a, k);
    if (dsv_backward(&a.c, DSV_BACKEND_NAIVE, NULL)) {
        error_row(t, k, "naive", "numgrad");
        goto out;
    }
    maybe_break(k, &a.dx);
    dsv_tensor *vars[4] = {&a.x, k->x2 ? &a.x2 : NULL, k->wnd ? &a.w : NULL,
                           k->bnd ? &a.b : NULL};
    dsv_tensor *grads[4] = {&a.dx, &a.dx2, &a.dw, &a.db};
    for (int v = 0; v < 4; v++) {
        if (!vars[v])
            continue;
        dsv_tensor_free(&num);
        if (dsv_tensor_init_like(&num, vars[v]) ||
            dsv_numerical_gradient_array(fwd_array, &a, vars[v], &a.dout, &a.out, &num,
                                         H_STEP)) {
            error_row(t, k, "naive", "numgrad");
            goto out;
        }
        worst = fmax(worst, dsv_rel_error(&num, grads[v]));
    }
    row(t, k, "naive", "numgrad f64", worst, tol, NULL);
out:
    dsv_tensor_free(&num);
    inst_free(&a);
}

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* Ops of the engine's table without a case: one line each on stderr. */
static int uncovered_ops(void)
{
    int missing = 0;
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        size_t i = 0;
        while (i < N_CASES && cases[i].op != (dsv_op)op)
            i++;
        if (i == N_CASES) {
            fprintf(stderr, "dasecv check: no check case for op '%s'\n",
                    dsv_op_name((dsv_op)op));
            missing++;
        }
    }
    return missing;
}

/* Exit status 1 when an op has no case. */
static int list_cases(void)
{
    for (size_t i = 0; i < N_CASES; i++)
        printf("%s %s\n", dsv_op_name(cases[i].op), cases[i].desc);
    return uncovered_ops() ? 1 : 0;
}

int dsv_cmd_check(int argc, char **argv)
{
    const char *only_op = NULL, *model = NULL;
    int only_be = -1, threads = 0;
    bool quiet = false, ok = true;
    cli_parser p = cli_parser_make("check", argc, argv);
    int k;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            fprintf(stderr, "dasecv check: unexpected argument '%s'\n", argv[p.i]);
            return 2;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--op")) {
            dsv_op op;
            ok = cli_string(&p, &only_op);
            if (ok && dsv_op_from_name(only_op, &op) != DSV_OK) {
                fprintf(stderr, "dasecv check: --op: %s\n", dsv_errmsg());
                return 2;
            }
        } else if (cli_is(&p, "--backend")) {
            const char *v = cli_value(&p);
            dsv_backend b;
            if (!v)
                return 2;
            if (dsv_backend_from_name(v, &b) || (b != DSV_BACKEND_FAST && b != DSV_BACKEND_ONEDNN)) {
                fprintf(stderr, "dasecv check: --backend must be fast or onednn\n");
                return 2;
            }
            if (!dsv_backend_available(b)) {
                fprintf(stderr, "dasecv check: backend '%s' is not built in\n", v);
                return 2;
            }
            only_be = (int)b;
        } else if (cli_is(&p, "--threads")) {
            ok = cli_int(&p, 1, 4096, &threads);
        } else if (cli_is(&p, "--quiet")) {
            ok = cli_flag(&p), quiet = true;
        } else if (cli_is(&p, "--model")) {
            ok = cli_string(&p, &model);
        } else if (cli_is(&p, "--list")) {
            if (!cli_flag(&p))
                return 2;
            return list_cases();
        } else {
            return cli_unknown(&p);
        }
        if (!ok)
            return 2;
    }
    if (threads && dsv_set_num_threads(threads) != DSV_OK) {
        fprintf(stderr, "dasecv check: %s\n", dsv_errmsg());
        return 2;
    }
    if (model)
        return cli_check_model(model, quiet);
    g_break = getenv("DASECV_CHECK_BREAK");

    tally t = {.quiet = quiet};
    t.fail += uncovered_ops();
    printf("%-18s %-32s %-7s %-12s %10s  %s\n", "op", "configuration", "backend", "check",
           "worst err", "result");
    const dsv_backend backends[] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN};
    for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
        if (!dsv_backend_available(backends[b]) || (only_be >= 0 && (int)backends[b] != only_be))
            continue;
        for (size_t i = 0; i < N_CASES; i++)
            if (!only_op || !strcmp(only_op, dsv_op_name(cases[i].op)))
                cross_backend(&t, &cases[i], backends[b], DSV_F32);
        /* oneDNN runs float32 only */
        for (size_t i = 0; i < N_CASES && backends[b] == DSV_BACKEND_FAST; i++)
            if (!only_op || !strcmp(only_op, dsv_op_name(cases[i].op)))
                cross_backend(&t, &cases[i], backends[b], DSV_F64);
    }
    for (size_t i = 0; i < N_CASES; i++)
        if ((!only_op || !strcmp(only_op, dsv_op_name(cases[i].op))) && !cases[i].no_gradcheck &&
            !cases[i].fwd_only)
            gradcheck(&t, &cases[i]);
    printf("%d passed, %d failed, %d not applicable (threads %d)\n", t.pass, t.fail, t.na,
           dsv_get_num_threads());
    return t.fail ? 1 : 0;
}
