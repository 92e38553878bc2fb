/*
 * The graph itself: a DAG where values feed several nodes (gradients add),
 * build-time shape errors that name the node, activation memory planning
 * (no allocation in the steady state, sharing below the unshared sum),
 * per-node backends and their listing.
 */
#include "engine_util.h"

/* Gradient check of a whole graph (float64) through dsv_graph_train_step. */
static double graph_gradcheck(dsv_graph *g, const dsv_exec_options *o, const dsv_tensor *x,
                              const dsv_tensor *y)
{
    double loss;
    TU_OK(dsv_graph_train_step(g, o, x, y, &loss));
    int64_t np = dsv_graph_num_param_values(g);
    double *ga = malloc(sizeof(double) * (size_t)np);
    assert_non_null(ga);
    memcpy(ga, dsv_graph_grads(g), sizeof(double) * (size_t)np);
    double *p = dsv_graph_params(g), worst = 0, h = 1e-5;
    for (int64_t i = 0; i < np; i++) {
        double old = p[i], lp, lm;
        p[i] = old + h;
        TU_OK(dsv_graph_train_step(g, o, x, y, &lp));
        p[i] = old - h;
        TU_OK(dsv_graph_train_step(g, o, x, y, &lm));
        p[i] = old;
        double num = (lp - lm) / (2 * h), den = fabs(num) + fabs(ga[i]);
        worst = fmax(worst, fabs(num - ga[i]) / (den > 1e-8 ? den : 1e-8));
    }
    free(ga);
    return worst;
}

/* x -> affine a; r = relu(a); c = a + r; d = c + c; scores = affine(d):
 * a feeds two nodes, c feeds one node twice. */
static dsv_graph *make_dag(dsv_value *scores_out)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F64));
    dsv_value x, y, a, r, c, d, s;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){2, 2, 2}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    TU_OK(dsv_graph_affine(g, "1", x, 6, &a));
    TU_OK(dsv_graph_relu(g, "relu", a, &r));
    TU_OK(dsv_graph_add(g, "add_ar", a, r, &c));
    TU_OK(dsv_graph_add(g, "add_cc", c, c, &d));
    TU_OK(dsv_graph_affine(g, "2", d, 4, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, y));
    TU_OK(dsv_graph_finalize(g));
    dsv_graph_init_params(g, 42, 0.5);
    if (scores_out)
        *scores_out = s;
    return g;
}

static dsv_status keep_only_own_gradient(dsv_call *c, dsv_backend want, void *user)
{
    (void)user;
    return dsv_backward(c, want, NULL);
}

static void test_dag_gradients_add(void **st)
{
    (void)st;
    dsv_graph *g = make_dag(NULL);
    dsv_tensor x, y;
    eu_data(1, DSV_F64, 3, 2, 2, 2, 4, &x, &y);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_NAIVE;
    double e = graph_gradcheck(g, &o, &x, &y);
    printf("  DAG with shared values: worst relative error %.3e\n", e);
    assert_true(e <= 1e-6);
    o.schedule = DSV_SCHEDULE_BATCH;
    o.threads = 2;
    e = graph_gradcheck(g, &o, &x, &y);
    printf("  same, batch schedule: %.3e\n", e);
    assert_true(e <= 1e-6);
    /* a hook that passes through changes nothing */
    TU_OK(dsv_graph_set_backward_hook(g, dsv_graph_find_node(g, "relu"),
                                      keep_only_own_gradient, NULL));
    assert_true(graph_gradcheck(g, &o, &x, &y) <= 1e-6);
    assert_int_equal(dsv_graph_set_backward_hook(g, dsv_graph_find_node(g, "loss"),
                                                 keep_only_own_gradient, NULL),
                     DSV_INVALID);
    dsv_graph_destroy(g);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* Overwriting instead of adding (the bug the temporaries prevent) is caught:
 * add_ar's backward here leaves a's gradient from relu out. */
static dsv_status drop_dx(dsv_call *c, dsv_backend want, void *user)
{
    (void)user;
    dsv_status s = dsv_backward(c, want, NULL);
    if (!s && c->dx)
        memset(c->dx->data, 0, dsv_tensor_nbytes(c->dx));
    return s;
}

static void test_dag_check_catches_lost_gradient(void **st)
{
    (void)st;
    dsv_graph *g = make_dag(NULL);
    dsv_tensor x, y;
    eu_data(1, DSV_F64, 3, 2, 2, 2, 4, &x, &y);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_NAIVE;
    TU_OK(dsv_graph_set_backward_hook(g, dsv_graph_find_node(g, "add_ar"), drop_dx, NULL));
    assert_true(graph_gradcheck(g, &o, &x, &y) > 1e-2);
    dsv_graph_destroy(g);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void expect_msg(dsv_status s, const char *msg)
{
    assert_int_equal(s, DSV_INVALID);
    if (!strstr(dsv_errmsg(), msg))
        fail_msg("message '%s' lacks '%s'", dsv_errmsg(), msg);
}

static void test_build_errors(void **st)
{
    (void)st;
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_value x, y, a, b, p;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){3, 8, 8}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    expect_msg(dsv_graph_input(g, 1, (int64_t[]){3}, &a), "already");
    /* conv whose filter expects 4 channels */
    int w, bias;
    TU_OK(dsv_graph_add_param(g, "Wbad", 4, (int64_t[]){2, 4, 3, 3}, DSV_PARAM_WEIGHT, &w));
    TU_OK(dsv_graph_add_param(g, "bbad", 1, (int64_t[]){2}, DSV_PARAM_BIAS, &bias));
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_CONV, "convbad", x);
    d.w = w;
    d.b = bias;
    expect_msg(dsv_graph_add_node(g, &d, &a), "node 'convbad': conv: x has 3 channels");
    expect_msg(dsv_graph_add_param(g, "Wbad", 1, (int64_t[]){2}, DSV_PARAM_BIAS, &w), "taken");
    expect_msg(dsv_graph_conv(g, "1", x, 4, 9, 9, 1, 0, &a), "node 'conv1'");
    TU_OK(dsv_graph_conv(g, "2", x, 4, 3, 3, 1, 1, &a));
    TU_OK(dsv_graph_max_pool(g, "pool", a, 2, 2, 2, &p));
    expect_msg(dsv_graph_add(g, "join", a, p, &b), "node 'join': add: x (1, 4, 8, 8)");
    expect_msg(dsv_graph_max_pool(g, "pool", a, 2, 2, 2, &b), "taken");
    expect_msg(dsv_graph_max_pool(g, "pool3", a, 3, 3, 3, &b), "not divisible");
    /* unused outputs, unused parameters and a missing loss are refused */
    expect_msg(dsv_graph_finalize(g), "loss");
    TU_OK(dsv_graph_affine(g, "3", p, 10, &b));
    TU_OK(dsv_graph_softmax_loss(g, "loss", b, y));
    expect_msg(dsv_graph_relu(g, "late", b, &a), "must be the last");
    /* convbad was refused, so its parameters are left over */
    expect_msg(dsv_graph_finalize(g), "parameter Wbad is not used by any node");
    dsv_graph_destroy(g);

    /* running before finalize */
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_tensor xt = tu_zeros(DSV_F32, 2, (int64_t[]){2, 3});
    dsv_tensor yt = tu_zeros(DSV_I32, 1, (int64_t[]){2});
    dsv_exec_options o = dsv_exec_options_default();
    double loss;
    expect_msg(dsv_graph_train_step(g, &o, &xt, &yt, &loss), "not finalized");
    dsv_graph_destroy(g);
    dsv_tensor_free(&xt);
    dsv_tensor_free(&yt);
    assert_int_equal(dsv_graph_create(&g, DSV_I32), DSV_INVALID);
}

static void test_memory_plan(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[1] = c.input_dim[2] = 8;
    c.res_channels = 4;
    c.res_blocks = 2;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &c));
    dsv_graph *g = dsv_model_graph(m);
    dsv_tensor x, y, x5, y5;
    eu_data(1, DSV_F32, 8, 3, 8, 8, 10, &x, &y);
    eu_data(2, DSV_F32, 5, 3, 8, 8, 10, &x5, &y5);
    double loss;
    dsv_graph_stats s;
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    dsv_graph_get_stats(g, &s);
    assert_int_equal(s.plan_allocs, 1);
    printf("  train plan, batch 8: %zu bytes planned, %zu without sharing\n", s.planned_bytes,
           s.unshared_bytes);
    assert_true(s.planned_bytes < s.unshared_bytes);
    size_t first = s.planned_bytes;
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    dsv_graph_get_stats(g, &s);
    assert_int_equal(s.plan_allocs, 1); /* steady state: nothing allocated */
    assert_true(s.planned_bytes == first);
    TU_OK(dsv_model_loss(m, &x5, &y5, &loss)); /* the last, smaller batch */
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    TU_OK(dsv_model_loss(m, &x5, &y5, &loss));
    dsv_graph_get_stats(g, &s);
    assert_int_equal(s.plan_allocs, 2);
    assert_int_equal(s.num_plans, 2);
    dsv_tensor sc = tu_zeros(DSV_F32, 2, (int64_t[]){8, 10});
    TU_OK(dsv_model_scores(m, &x, &sc));
    TU_OK(dsv_model_scores(m, &x, &sc));
    dsv_graph_get_stats(g, &s);
    assert_int_equal(s.plan_allocs, 3);
    printf("  inference plan, batch 8: %zu bytes planned, %zu without sharing\n",
           s.planned_bytes, s.unshared_bytes);
    assert_true(s.planned_bytes * 2 < s.unshared_bytes);
    /* the batch schedule plans separately and still shares across barriers */
    dsv_exec_options o = *dsv_model_exec(m);
    o.schedule = DSV_SCHEDULE_BATCH;
    o.threads = 2;
    TU_OK(dsv_model_set_exec(m, &o));
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    dsv_graph_get_stats(g, &s);
    assert_int_equal(s.plan_allocs, 4);
    printf("  batch-schedule train plan: %zu bytes planned, %zu without sharing\n",
           s.planned_bytes, s.unshared_bytes);
    assert_true(s.planned_bytes < s.unshared_bytes);
    /* many batch sizes: the cache keeps a bounded number of plans */
    for (int64_t n = 1; n <= 12; n++) {
        dsv_tensor xs = dsv_tensor_slice(&x5, 0, n <= 5 ? n : 5);
        dsv_tensor ys = dsv_tensor_slice(&y5, 0, n <= 5 ? n : 5);
        dsv_tensor xn = n <= 5 ? xs : dsv_tensor_slice(&x, 0, n <= 8 ? n : 8);
        dsv_tensor yn = n <= 5 ? ys : dsv_tensor_slice(&y, 0, n <= 8 ? n : 8);
        TU_OK(dsv_model_loss(m, &xn, &yn, &loss));
    }
    dsv_graph_get_stats(g, &s);
    assert_true(s.num_plans <= 8);
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    dsv_tensor_free(&sc);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&x5);
    dsv_tensor_free(&y5);
    dsv_model_destroy(m);
}

/* Whether `ran` (a description after a run) keeps every line of `before`
 * (the one before it), where a pass described as "auto" may have run on fast
 * or oneDNN. */
static bool describe_kept(const char *before, const char *ran)
{
    const char *b = before, *r = ran;
    while (*b && *r) {
        char bn[64], bo[32], bf[16], bb[16], rn[64], ro[32], rf[16], rb[16];
        if (sscanf(b, "%63s %31s %15[^/]/%15s", bn, bo, bf, bb) != 4 ||
            sscanf(r, "%63s %31s %15[^/]/%15s", rn, ro, rf, rb) != 4 || strcmp(bn, rn) ||
            strcmp(bo, ro))
            return false;
        const char *was[2] = {bf, bb}, *now[2] = {rf, rb};
        for (int k = 0; k < 2; k++)
            if (strcmp(was[k], "auto") ? strcmp(was[k], now[k])
                                       : strcmp(now[k], "fast") && strcmp(now[k], "onednn"))
                return false;
        b = strchr(b, '\n') + 1;
        r = strchr(r, '\n') + 1;
    }
    return !*b && !*r;
}

static void test_describe_backends(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.input_dim[1] = c.input_dim[2] = 8;
    c.num_filters = 4;
    c.filter_size = 3;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &c));
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_NAIVE;
    TU_OK(dsv_model_set_exec(m, &o));
    char buf[2048];
    TU_OK(dsv_model_describe(m, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "conv1 conv naive/naive\n"));
    assert_non_null(strstr(buf, "loss softmax_loss naive/-\n"));
    o.backend = DSV_BACKEND_AUTO;
    TU_OK(dsv_model_set_exec(m, &o));
    char before[2048];
    TU_OK(dsv_model_describe(m, before, sizeof(before))); /* what would run */
    dsv_tensor x, y;
    eu_data(3, DSV_F32, 4, 3, 8, 8, 10, &x, &y);
    double loss;
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    TU_OK(dsv_model_describe(m, buf, sizeof(buf))); /* what ran */
    printf("before the run:\n%safter it:\n%s", before, buf);
    assert_true(describe_kept(before, buf));
    assert_null(strstr(buf, "auto")); /* what ran is known */
    if (dsv_backend_available(DSV_BACKEND_ONEDNN))
        assert_non_null(strstr(before, "relu2 relu auto/auto\n")); /* timed */
    assert_non_null(strstr(buf, "affine3 affine "));
    char small[8];
    assert_int_equal(dsv_model_describe(m, small, sizeof(small)), DSV_INVALID);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_model_destroy(m);
}

/* The L2 term of a training step, on weights that span several of the
 * blocks it is summed in (35119 values: two full blocks of 16384 and a tail
 * that is not a multiple of 8): loss = data loss + 0.5 * reg * sum(w^2)
 * against a plain loop, dw = data dw + reg * w exactly, biases untouched,
 * and the same loss bits on 1 and 2 threads. */
static void test_reg_term(void **st)
{
    (void)st;
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_value x, y, h, s;
    TU_OK(dsv_graph_input(g, 1, (int64_t[]){203}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    TU_OK(dsv_graph_affine(g, "1", x, 173, &h));
    TU_OK(dsv_graph_affine(g, "2", h, 10, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, y));
    TU_OK(dsv_graph_finalize(g));
    dsv_graph_init_params(g, 7, 0.1);
    tu_rng r = {5};
    dsv_tensor xt = tu_randn(&r, DSV_F32, 2, (int64_t[]){4, 203}, 1.0);
    dsv_tensor yt = tu_labels(&r, 4, 10);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_NAIVE;
    o.threads = 1;
    const int64_t np = dsv_graph_num_param_values(g);
    const double reg = 0.37;
    double l0, l1, l2;
    TU_OK(dsv_graph_train_step(g, &o, &xt, &yt, &l0));
    TU_OK(dsv_l2_apply(g, &o, 0.0, &l0));
    float *g0 = malloc(sizeof(float) * (size_t)np);
    assert_non_null(g0);
    memcpy(g0, dsv_graph_grads(g), sizeof(float) * (size_t)np);
    TU_OK(dsv_graph_train_step(g, &o, &xt, &yt, &l1));
    TU_OK(dsv_l2_apply(g, &o, reg, &l1));
    double sum = 0;
    int64_t nweights = 0;
    for (int i = 0; i < dsv_graph_num_params(g); i++) {
        dsv_tensor p = dsv_graph_param(g, i), gr = dsv_graph_grad(g, i);
        const float *w = p.data, *dw = gr.data;
        const float *d0 = g0 + (dw - (const float *)dsv_graph_grads(g));
        const bool weight = dsv_graph_param_kind(g, i) == DSV_PARAM_WEIGHT;
        for (int64_t j = 0; j < dsv_tensor_numel(&p); j++) {
            if (weight)
                sum += (double)w[j] * w[j];
            float want = weight ? d0[j] + (float)(reg * w[j]) : d0[j];
            if (dw[j] != want)
                fail_msg("%s[%lld]: dw %.9g, want %.9g", dsv_graph_param_name(g, i),
                         (long long)j, dw[j], want);
        }
        nweights += weight ? dsv_tensor_numel(&p) : 0;
    }
    assert_int_equal(nweights, 203 * 173 + 173 * 10);
    const double term = 0.5 * reg * sum;
    printf("  reg term %.12g, from the step %.12g\n", term, l1 - l0);
    assert_true(fabs((l1 - l0) - term) <= 1e-9 * term);
    o.threads = 2;
    TU_OK(dsv_graph_train_step(g, &o, &xt, &yt, &l2));
    TU_OK(dsv_l2_apply(g, &o, reg, &l2));
    double l3 = l2;
    expect_msg(dsv_l2_apply(g, &o, -1.0, &l3), "reg must be >= 0");
    assert_true(l3 == l2);
    assert_true(l2 == l1);
    free(g0);
    dsv_tensor_free(&xt);
    dsv_tensor_free(&yt);
    dsv_graph_destroy(g);
}

static int param_id(const dsv_graph *g, const char *name)
{
    for (int i = 0; i < dsv_graph_num_params(g); i++)
        if (strcmp(dsv_graph_param_name(g, i), name) == 0)
            return i;
    fail_msg("no parameter %s", name);
    return -1;
}

/* x (5) -> affine1 (7) -> affine2 (3) -> loss, float64; std of W1/W2 set
 * when not NaN. Not finalized. */
static dsv_graph *make_mlp(void)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F64));
    dsv_value x, y, h, s;
    TU_OK(dsv_graph_input(g, 1, (int64_t[]){5}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    TU_OK(dsv_graph_affine(g, "1", x, 7, &h));
    TU_OK(dsv_graph_affine(g, "2", h, 3, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, y));
    return g;
}

/* A weight's own std multiplies the same draws of the one stream: W1 at its
 * default, W2 at std 0.25 and W1 at std == weight_scale give exactly the
 * N(0, 1) draws times the scale, in the same order and pairing. */
static void test_param_std(void **st)
{
    (void)st;
    dsv_graph *ref = make_mlp(), *def = make_mlp(), *g = make_mlp();
    TU_OK(dsv_graph_finalize(ref));
    dsv_graph_init_params(ref, 11, 1.0);
    TU_OK(dsv_graph_finalize(def));
    dsv_graph_init_params(def, 11, 0.5);
    const int w1 = param_id(g, "W1"), w2 = param_id(g, "W2");
    TU_OK(dsv_graph_set_param_std(g, w2, 0.25));
    TU_OK(dsv_graph_set_param_std(g, w1, 3.0));
    TU_OK(dsv_graph_set_param_std(g, w1, NAN)); /* back to the default */
    expect_msg(dsv_graph_set_param_std(g, param_id(g, "b1"), 1.0), "not a weight");
    expect_msg(dsv_graph_set_param_std(g, w1, -1.0), "std -1");
    expect_msg(dsv_graph_set_param_std(g, w1, INFINITY), "not finite");
    expect_msg(dsv_graph_set_param_std(g, 99, 1.0), "no parameter 99");
    TU_OK(dsv_graph_finalize(g));
    expect_msg(dsv_graph_set_param_std(g, w1, 1.0), "after finalize");
    dsv_graph_init_params(g, 11, 0.5);
    for (int i = 0; i < dsv_graph_num_params(g); i++) {
        dsv_tensor r = dsv_graph_param(ref, i), d = dsv_graph_param(def, i);
        dsv_tensor t = dsv_graph_param(g, i);
        const double *rv = r.data, *dv = d.data, *tv = t.data;
        const bool weight = dsv_graph_param_kind(g, i) == DSV_PARAM_WEIGHT;
        const double scale = i == w2 ? 0.25 : 0.5;
        for (int64_t j = 0; j < dsv_tensor_numel(&t); j++) {
            double want = weight ? rv[j] * scale : rv[j];
            if (tv[j] != want)
                fail_msg("%s[%lld] = %.17g, want %.17g", dsv_graph_param_name(g, i),
                         (long long)j, tv[j], want);
            if (i != w2 && tv[j] != dv[j])
                fail_msg("%s[%lld] differs from the default init",
                         dsv_graph_param_name(g, i), (long long)j);
        }
    }
    dsv_graph_destroy(ref);
    dsv_graph_destroy(def);
    dsv_graph_destroy(g);
}

/* Nodes read back as they were added, with their output values. */
static void test_node_info(void **st)
{
    (void)st;
    dsv_value s;
    dsv_graph *g = make_dag(&s);
    dsv_node_desc d;
    dsv_value out;
    const int n = dsv_graph_num_nodes(g);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++) {
        TU_OK(dsv_graph_node_info(g, i, &d, &out));
        assert_string_equal(d.name, dsv_graph_node_name(g, i));
    }
    TU_OK(dsv_graph_node_info(g, dsv_graph_find_node(g, "add_cc"), &d, &out));
    assert_int_equal(d.op, DSV_OP_ADD);
    assert_true(d.x >= 0 && d.x == d.x2);
    assert_int_equal(d.w, -1);
    dsv_value c = d.x;
    TU_OK(dsv_graph_node_info(g, dsv_graph_find_node(g, "add_ar"), &d, &out));
    assert_int_equal(out, c);
    TU_OK(dsv_graph_node_info(g, dsv_graph_find_node(g, "affine2"), &d, NULL));
    assert_int_equal(d.op, DSV_OP_AFFINE);
    assert_int_equal(d.w, param_id(g, "W2"));
    assert_int_equal(d.b, param_id(g, "b2"));
    assert_int_equal(d.running_mean, -1);
    TU_OK(dsv_graph_node_info(g, dsv_graph_find_node(g, "affine2"), &d, &out));
    assert_int_equal(out, s);
    TU_OK(dsv_graph_node_info(g, n - 1, &d, &out));
    assert_int_equal(d.op, DSV_OP_SOFTMAX_LOSS);
    assert_int_equal(out, DSV_NO_VALUE);
    assert_int_equal(d.x, s);
    assert_true(d.y >= 0);
    expect_msg(dsv_graph_node_info(g, n, &d, &out), "no node 6");
    expect_msg(dsv_graph_node_info(g, -1, &d, &out), "no node -1");
    dsv_graph_destroy(g);
}

static void test_param_shape(void **st)
{
    (void)st;
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_value x, y, a, s;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){3, 8, 8}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    TU_OK(dsv_graph_conv(g, "1", x, 4, 3, 5, 1, 1, &a));
    TU_OK(dsv_graph_affine(g, "2", a, 10, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, y));
    int nd;
    int64_t sh[DSV_MAX_DIMS];
    TU_OK(dsv_graph_param_shape(g, param_id(g, "W1"), &nd, sh));
    assert_int_equal(nd, 4);
    assert_true(sh[0] == 4 && sh[1] == 3 && sh[2] == 3 && sh[3] == 5);
    TU_OK(dsv_graph_param_shape(g, param_id(g, "b1"), &nd, sh));
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 4);
    TU_OK(dsv_graph_finalize(g));
    TU_OK(dsv_graph_param_shape(g, param_id(g, "W2"), &nd, sh));
    assert_int_equal(nd, 2);
    assert_true(sh[0] == 4 * 8 * 6 && sh[1] == 10);
    expect_msg(dsv_graph_param_shape(g, 4, &nd, sh), "no parameter 4");
    dsv_graph_destroy(g);
}

/* Sizes whose products overflow are refused, not wrapped. */
static void test_size_overflow(void **st)
{
    (void)st;
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_value x;
    const int64_t big = INT64_C(1) << 24; /* each dimension is allowed */
    expect_msg(dsv_graph_input(g, 3, (int64_t[]){big, big, big}, &x), "too large");
    TU_OK(dsv_graph_input(g, 2, (int64_t[]){big, 4}, &x));
    dsv_graph_destroy(g);
    dsv_tensor t;
    const int64_t half = INT64_C(1) << 31;
    expect_msg(dsv_tensor_init(&t, DSV_F32, 3, (int64_t[]){half, half, 4}), "too large");
    assert_null(dsv_alloc(SIZE_MAX));
    assert_null(dsv_alloc(SIZE_MAX - 62));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dag_gradients_add),
        cmocka_unit_test(test_dag_check_catches_lost_gradient),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_memory_plan),
        cmocka_unit_test(test_describe_backends),
        cmocka_unit_test(test_reg_term),
        cmocka_unit_test(test_param_std),
        cmocka_unit_test(test_node_info),
        cmocka_unit_test(test_param_shape),
        cmocka_unit_test(test_size_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
