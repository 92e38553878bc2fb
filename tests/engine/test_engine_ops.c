/*
 * The op table (dsv_op_get_info) and what must follow from it:
 *  - the table is consistent with the lookups derived from it (names,
 *    dsv_op_from_name, dsv_op_has_weights, dsv_op_is_loss);
 *  - backend completeness: the naive backend, the reference every other one
 *    falls back to, has a forward kernel for every op and a backward kernel
 *    for every op but the losses, in both float dtypes;
 *  - an avg_pool node (global average pooling, a new op added through the
 *    table alone) runs in a graph under both schedules with the same results
 *    and gradients that match central differences.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine_util.h"

static void test_table_matches_lookups(void **st)
{
    (void)st;
    for (int i = 0; i < DSV_OP_COUNT; i++) {
        dsv_op op = (dsv_op)i;
        const dsv_op_info *in = dsv_op_get_info(op);
        assert_non_null(in);
        assert_non_null(in->name);
        assert_string_equal(dsv_op_name(op), in->name);
        dsv_op back;
        assert_int_equal(dsv_op_from_name(in->name, &back), DSV_OK);
        assert_int_equal(back, op);
        assert_int_equal(dsv_op_has_weights(op), in->has_weights);
        assert_int_equal(dsv_op_is_loss(op), in->is_loss);
        assert_true(in->num_inputs == 1 || in->num_inputs == 2);
        /* running statistics come with batch statistics */
        assert_true(!in->running_stats || in->batch_stats);
    }
    assert_null(dsv_op_get_info(DSV_OP_COUNT));
    assert_null(dsv_op_get_info((dsv_op)-1));
    assert_string_equal(dsv_op_name(DSV_OP_COUNT), "unknown");
    assert_false(dsv_op_has_weights(DSV_OP_COUNT));
    assert_false(dsv_op_is_loss(DSV_OP_COUNT));
    dsv_op op;
    assert_int_equal(dsv_op_from_name("avg_pool", &op), DSV_OK);
    assert_int_equal(op, DSV_OP_AVG_POOL);
    assert_int_equal(dsv_op_get_info(op)->params, DSV_PF_POOL | DSV_PF_STRIDE);
    assert_int_equal(dsv_op_from_name("mean_pool", &op), DSV_INVALID);
}

/* Ops of the table the naive backend cannot run: one message each. */
static int naive_gaps(void)
{
    const dsv_backend_table *t = dsv_backend_get(DSV_BACKEND_NAIVE);
    if (!t) {
        print_message("no naive backend\n");
        return 1;
    }
    int gaps = 0;
    const dsv_dtype dts[] = {DSV_F32, DSV_F64};
    for (size_t d = 0; d < 2; d++)
        if (!(t->dtypes & (1u << dts[d]))) {
            print_message("naive: no %s kernels\n", dsv_dtype_name(dts[d]));
            gaps++;
        }
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        const dsv_kernel *k = &t->kernels[op];
        const char *name = dsv_op_name((dsv_op)op);
        if (!k->forward) {
            print_message("naive: %s has no forward kernel\n", name);
            gaps++;
        }
        if (!dsv_op_is_loss((dsv_op)op) && !k->backward) {
            print_message("naive: %s has no backward kernel\n", name);
            gaps++;
        }
        /* naive runs every valid call: a restriction would leave others
           without their fallback */
        if (k->supports) {
            print_message("naive: %s restricts its calls\n", name);
            gaps++;
        }
    }
    return gaps;
}

static void test_naive_backend_complete(void **st)
{
    (void)st;
    assert_int_equal(naive_gaps(), 0);
}

/* ---- avg_pool in a graph -------------------------------------------------- */

/* x (3, 4, 4) -> conv 3x3 p1 (5) -> relu -> global avg_pool (5, 1, 1)
 * -> affine (3) -> softmax loss. */
static dsv_graph *make_gap_graph(dsv_dtype dt)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, dt));
    dsv_value x, y, c, r, p, s;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){3, 4, 4}, &x));
    TU_OK(dsv_graph_labels(g, &y));
    TU_OK(dsv_graph_conv(g, "1", x, 5, 3, 3, 1, 1, &c));
    TU_OK(dsv_graph_relu(g, "relu", c, &r));
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_AVG_POOL, "gap", r);
    d.p.pool_height = 4, d.p.pool_width = 4, d.p.stride = 1;
    TU_OK(dsv_graph_add_node(g, &d, &p));
    int nd;
    int64_t shape[DSV_MAX_DIMS];
    TU_OK(dsv_graph_value_shape(g, p, 2, &nd, shape));
    assert_int_equal(nd, 4);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 5);
    assert_int_equal(shape[2], 1);
    assert_int_equal(shape[3], 1);
    TU_OK(dsv_graph_affine(g, "2", p, 3, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, y));
    TU_OK(dsv_graph_finalize(g));
    dsv_graph_init_params(g, 7, 0.5);
    return g;
}

/* A copy of the gradient block after one training step under o. */
static double *step_grads(dsv_graph *g, const dsv_exec_options *o, const dsv_tensor *x,
                          const dsv_tensor *y, double *loss)
{
    TU_OK(dsv_graph_train_step(g, o, x, y, loss));
    int64_t n = dsv_graph_num_param_values(g);
    double *v = malloc(sizeof(double) * (size_t)n);
    assert_non_null(v);
    memcpy(v, dsv_graph_grads(g), sizeof(double) * (size_t)n);
    return v;
}

static void test_avg_pool_graph_schedules(void **st)
{
    (void)st;
    dsv_graph *g = make_gap_graph(DSV_F64);
    dsv_tensor x, y;
    eu_data(3, DSV_F64, 6, 3, 4, 4, 3, &x, &y);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_NAIVE;
    o.threads = 2;
    o.schedule = DSV_SCHEDULE_LAYER;
    double loss_layer, loss_batch;
    double *gl = step_grads(g, &o, &x, &y, &loss_layer);
    o.schedule = DSV_SCHEDULE_BATCH;
    double *gb = step_grads(g, &o, &x, &y, &loss_batch);
    int64_t n = dsv_graph_num_param_values(g);
    printf("  avg_pool graph: loss %.10f (layer) %.10f (batch)\n", loss_layer, loss_batch);
    assert_true(isfinite(loss_layer));
    assert_true(fabs(loss_layer - loss_batch) <= 1e-12 * fabs(loss_layer));
    double gmax = 0, diff = 0;
    for (int64_t i = 0; i < n; i++) {
        gmax = fmax(gmax, fabs(gl[i]));
        diff = fmax(diff, fabs(gl[i] - gb[i]));
    }
    assert_true(gmax > 0);
    assert_true(diff <= 1e-12 * gmax);

    /* the layer schedule's gradient against central differences */
    double *pv = dsv_graph_params(g), worst = 0;
    o.schedule = DSV_SCHEDULE_LAYER;
    for (int64_t i = 0; i < n; i++) {
        double old = pv[i], lp, lm;
        pv[i] = old + 1e-5;
        free(step_grads(g, &o, &x, &y, &lp));
        pv[i] = old - 1e-5;
        free(step_grads(g, &o, &x, &y, &lm));
        pv[i] = old;
        double num = (lp - lm) / 2e-5;
        worst = fmax(worst, fabs(num - gl[i]) / fmax(1e-8, fabs(num) + fabs(gl[i])));
    }
    printf("  avg_pool graph: worst relative gradient error %.3e over %lld values\n", worst,
           (long long)n);
    assert_true(worst <= 1e-6);
    free(gl);
    free(gb);
    dsv_graph_destroy(g);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* float32 on the fast backend: both schedules agree to rounding. */
static void test_avg_pool_graph_fast(void **st)
{
    (void)st;
    dsv_graph *g = make_gap_graph(DSV_F32);
    dsv_tensor x, y;
    eu_data(4, DSV_F32, 8, 3, 4, 4, 3, &x, &y);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_FAST;
    o.threads = 2;
    double loss[2];
    int64_t n = dsv_graph_num_param_values(g);
    float *grads[2];
    for (int k = 0; k < 2; k++) {
        o.schedule = k ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER;
        TU_OK(dsv_graph_train_step(g, &o, &x, &y, &loss[k]));
        grads[k] = malloc(sizeof(float) * (size_t)n);
        assert_non_null(grads[k]);
        memcpy(grads[k], dsv_graph_grads(g), sizeof(float) * (size_t)n);
    }
    char buf[1024];
    TU_OK(dsv_graph_describe(g, DSV_BACKEND_FAST, buf, sizeof(buf)));
    printf("%s", buf);
    assert_non_null(strstr(buf, "gap avg_pool fast/fast"));
    assert_true(fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[0]));
    double gmax = 0, diff = 0;
    for (int64_t i = 0; i < n; i++) {
        gmax = fmax(gmax, fabs(grads[0][i]));
        diff = fmax(diff, fabs(grads[0][i] - grads[1][i]));
    }
    assert_true(diff <= 1e-4 * gmax);
    free(grads[0]);
    free(grads[1]);
    dsv_graph_destroy(g);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_lookups),
        cmocka_unit_test(test_naive_backend_complete),
        cmocka_unit_test(test_avg_pool_graph_schedules),
        cmocka_unit_test(test_avg_pool_graph_fast),
    };
    return cmocka_run_group_tests_name("engine_ops", tests, NULL, NULL);
}
