/*
 * dasecv check --model: the whole-network checks for any model file, built-in
 * or checkpoint's network, on a small random batch:
 *  - the gradient of the whole loss (data loss and L2 term) on the naive
 *    backend in float64 against central differences, on up to
 *    CHECK_ENTRIES entries of every parameter tensor (all of a small one),
 *    as the course's grad_check_sparse does;
 *  - every other available backend's loss and gradients against naive's, in
 *    float32, from the same weights and inputs.
 * Weights are the model's initial ones rescaled to He's standard deviation
 * (well_scaled; a checkpoint's network is rebuilt from its text: trained
 * weights do not change what is checked). Batch norms
 * see the whole batch; dropout masks are the same for every evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_model.h"
#include "dasecv/dasecv.h"
#include "internal/rng.h"

#define CHECK_ENTRIES 12
#define H_STEP 1e-6 /* and 10 h, to see kinks */
#define TOL_GRAD 1e-5
#define TOL_BACKEND 2e-4
#define BATCH 4

static bool is_checkpoint(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[8];
    bool yes = fread(magic, 1, 8, f) == 8 && memcmp(magic, "DSVCKPT\x1a", 8) == 0;
    fclose(f);
    return yes;
}

/* The network of what (file, built-in or checkpoint) in dtype; files that
 * leave the shape to the data get CIFAR-10's. */
static dsv_status build_raw(const char *what, dsv_dtype dt, dsv_model **m)
{
    dsv_model_options o = dsv_model_options_default();
    o.dtype = (int)dt;
    o.seed = 1;
    if (is_checkpoint(what)) {
        dsv_model *saved;
        dsv_status s = dsv_checkpoint_load_model(what, &saved);
        if (s)
            return s;
        const dsv_model_options *so = dsv_model_options_of(saved);
        memcpy(o.input_dim, so->input_dim, sizeof(o.input_dim));
        o.num_classes = so->num_classes;
        o.reg = so->reg;
        s = dsv_model_create_from_text(m, dsv_model_text(saved), what, &o);
        dsv_model_destroy(saved);
        return s;
    }
    dsv_status s = dsv_model_create_from_file(m, what, &o);
    if (s == DSV_INVALID && strstr(dsv_errmsg(), "no dataset gives")) {
        o.input_dim[0] = 3, o.input_dim[1] = o.input_dim[2] = 32, o.num_classes = 10;
        s = dsv_model_create_from_file(m, what, &o);
    }
    return s;
}

/* Rescales every weight tensor to He's standard deviation, sqrt(2 / fan_in),
 * so that activations and gradients are of order 1 whatever init the file
 * chose: central differences then resolve every gradient. */
static void well_scaled(dsv_model *m)
{
    dsv_graph *g = dsv_model_graph(m);
    for (int t = 0; t < dsv_model_num_tensors(m); t++) {
        if (!dsv_model_tensor_is_weight(m, t))
            continue;
        int nd;
        int64_t sh[DSV_MAX_DIMS];
        if (dsv_graph_param_shape(g, t, &nd, sh))
            continue;
        int64_t fan_in = nd == 4 ? sh[1] * sh[2] * sh[3] : sh[0];
        dsv_tensor p = dsv_model_param(m, t);
        double ss = 0;
        int64_t n = dsv_tensor_numel(&p);
        for (int64_t i = 0; i < n; i++)
            ss += dsv_tensor_get(&p, i) * dsv_tensor_get(&p, i);
        double rms = sqrt(ss / (double)n);
        if (rms == 0)
            continue;
        double k = sqrt(2.0 / (double)fan_in) / rms;
        for (int64_t i = 0; i < n; i++)
            dsv_tensor_set(&p, i, dsv_tensor_get(&p, i) * k);
    }
}

static dsv_status build(const char *what, dsv_dtype dt, dsv_model **m)
{
    dsv_status s = build_raw(what, dt, m);
    if (!s)
        well_scaled(*m);
    return s;
}

static void random_batch(const dsv_model *m, dsv_dtype dt, dsv_tensor *x, dsv_tensor *y)
{
    const dsv_model_options *o = dsv_model_options_of(m);
    int64_t shape[4] = {BATCH, o->input_dim[0], o->input_dim[1], o->input_dim[2]};
    dsv_tensor_init(x, dt, 4, shape);
    dsv_tensor_init(y, DSV_I32, 1, shape);
    uint64_t st = 12345;
    for (int64_t i = 0; i < dsv_tensor_numel(x); i++)
        dsv_tensor_set(x, i, (double)(dsv_splitmix64(&st) >> 11) * 0x1.0p-53 * 2 - 1);
    for (int64_t i = 0; i < BATCH; i++)
        ((int32_t *)y->data)[i] = (int32_t)(dsv_splitmix64(&st) % (uint64_t)o->num_classes);
}

/* The loss with parameter entry pv[i] moved by +-h: the central difference. */
static dsv_status central(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                          uint64_t step, double *pv, int64_t i, double h, double *num)
{
    double old = pv[i], lp = 0, lm = 0;
    pv[i] = old + h;
    dsv_model_set_train_steps(m, step);
    dsv_status s = dsv_model_loss(m, x, y, &lp);
    pv[i] = old - h;
    dsv_model_set_train_steps(m, step);
    if (!s)
        s = dsv_model_loss(m, x, y, &lm);
    pv[i] = old;
    *num = (lp - lm) / (2 * h);
    return s;
}

/* Worst relative error of the naive float64 gradient over the sampled
 * entries. An entry whose differences with h and 10 h disagree sits on a
 * kink (relu, max pool) and is skipped; one whose true gradient is 0 (both
 * below 1e-7: a conv bias under batch norm) is counted apart. */
static dsv_status gradcheck(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                            bool quiet, double *worst)
{
    *worst = 0;
    double loss;
    uint64_t step = dsv_model_train_steps(m);
    dsv_status s = dsv_model_loss(m, x, y, &loss);
    if (s)
        return s;
    int64_t np = dsv_model_num_params(m);
    double *grad = malloc(sizeof(double) * (size_t)(np ? np : 1));
    if (!grad)
        return dsv_error(DSV_NOMEM, "check: out of memory");
    memcpy(grad, dsv_model_grads(m), sizeof(double) * (size_t)np);
    uint64_t pick = 99;
    for (int t = 0; t < dsv_model_num_tensors(m) && !s; t++) {
        dsv_tensor p = dsv_model_param(m, t);
        double *pv = p.data;
        const double *ga = grad + (pv - (double *)dsv_model_params(m));
        int64_t n = dsv_tensor_numel(&p), k = n < CHECK_ENTRIES ? n : CHECK_ENTRIES;
        double err = 0;
        int zeros = 0, kinks = 0;
        for (int64_t e = 0; e < k && !s; e++) {
            int64_t i = n <= CHECK_ENTRIES ? e : (int64_t)(dsv_splitmix64(&pick) % (uint64_t)n);
            double n1 = 0, n10 = 0;
            s = central(m, x, y, step, pv, i, H_STEP, &n1);
            if (!s)
                s = central(m, x, y, step, pv, i, 10 * H_STEP, &n10);
            if (fabs(n1 - n10) > 1e-4 * (fabs(n1) + fabs(n10)) + 1e-8) {
                kinks++;
                continue;
            }
            if (fabs(n1) + fabs(ga[i]) < 1e-7) {
                zeros++;
                continue;
            }
            double r = fabs(n1 - ga[i]) / (fabs(n1) + fabs(ga[i]));
            if (r > err)
                err = r;
        }
        if (!quiet || err > TOL_GRAD)
            printf("  gradient  %-24s naive float64 %9.2e  %s (%lld entries; %d on a kink, "
                   "%d with gradient 0)\n",
                   dsv_model_tensor_name(m, t), err, err <= TOL_GRAD ? "ok" : "FAIL",
                   (long long)k, kinks, zeros);
        if (err > *worst)
            *worst = err;
    }
    free(grad);
    return s;
}

/* max |a - b| over a float32 block, and max |b|. */
static void block_diff(const float *a, const float *b, int64_t n, double *diff, double *ref)
{
    for (int64_t i = 0; i < n; i++) {
        *diff = fmax(*diff, fabs((double)a[i] - (double)b[i]));
        *ref = fmax(*ref, fabs((double)b[i]));
    }
}

static dsv_status backends(const char *what, bool quiet, int *failures)
{
    dsv_model *ref = NULL, *m = NULL;
    dsv_tensor x = {0}, y = {0};
    dsv_status s;
    if ((s = build(what, DSV_F32, &ref)))
        return s;
    random_batch(ref, DSV_F32, &x, &y);
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = DSV_BACKEND_NAIVE;
    double lref, l;
    if ((s = dsv_model_set_exec(ref, &eo)) || (s = dsv_model_loss(ref, &x, &y, &lref)))
        goto out;
    const dsv_backend list[] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN, DSV_BACKEND_AUTO};
    for (size_t b = 0; b < sizeof(list) / sizeof(list[0]); b++) {
        if (!dsv_backend_available(list[b]))
            continue;
        if ((s = build(what, DSV_F32, &m)))
            goto out;
        eo.backend = list[b];
        if ((s = dsv_model_set_exec(m, &eo)) || (s = dsv_model_loss(m, &x, &y, &l)))
            goto out;
        /* each tensor against its own largest gradient, or 1% of the model's
           largest where that is more (gradients that are 0 in exact
           arithmetic, such as a conv bias under batch norm, are float32
           rounding in both) */
        double worst = fabs(l - lref) / fmax(fabs(lref), 1e-30), all = 0;
        for (int t = 0; t < dsv_model_num_tensors(m); t++) {
            dsv_tensor g = dsv_model_grad(m, t), gr = dsv_model_grad(ref, t);
            double d = 0;
            block_diff(g.data, gr.data, dsv_tensor_numel(&g), &d, &all);
        }
        for (int t = 0; t < dsv_model_num_tensors(m); t++) {
            dsv_tensor g = dsv_model_grad(m, t), gr = dsv_model_grad(ref, t);
            double d = 0, r = 0;
            block_diff(g.data, gr.data, dsv_tensor_numel(&g), &d, &r);
            r = fmax(r, 1e-2 * all);
            worst = fmax(worst, r > 0 ? d / r : d);
        }
        bool ok = worst <= TOL_BACKEND;
        if (!quiet || !ok)
            printf("  backend   %-24s vs naive float32 %9.2e  %s\n",
                   dsv_backend_name(list[b]), worst, ok ? "ok" : "FAIL");
        *failures += !ok;
        dsv_model_destroy(m);
        m = NULL;
    }
out:
    dsv_model_destroy(m);
    dsv_model_destroy(ref);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    return s;
}

int cli_check_model(const char *what, bool quiet)
{
    dsv_model *m;
    dsv_status s = build(what, DSV_F64, &m);
    if (s) {
        fprintf(stderr, "dasecv check: %s\n", dsv_errmsg());
        return s == DSV_INVALID ? 2 : 1;
    }
    const dsv_model_options *o = dsv_model_options_of(m);
    printf("model %s: input %dx%dx%d, %d classes, %lld parameters, batch %d\n", what,
           o->input_dim[0], o->input_dim[1], o->input_dim[2], o->num_classes,
           (long long)dsv_model_num_params(m), BATCH);
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = DSV_BACKEND_NAIVE;
    dsv_tensor x = {0}, y = {0};
    random_batch(m, DSV_F64, &x, &y);
    double worst = 0;
    int failures = 0;
    if (!(s = dsv_model_set_exec(m, &eo)))
        s = gradcheck(m, &x, &y, quiet, &worst);
    failures += worst > TOL_GRAD;
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_model_destroy(m);
    if (!s)
        s = backends(what, quiet, &failures);
    if (s) {
        fprintf(stderr, "dasecv check: %s\n", dsv_errmsg());
        return 1;
    }
    printf("%s: worst gradient error %.2e (pass < %.0e), %d failure%s\n", what, worst,
           TOL_GRAD, failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
