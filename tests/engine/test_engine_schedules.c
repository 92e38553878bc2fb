/*
 * Scheduling: the layer and batch schedules follow the same loss trajectory
 * (threelayer, resnet with batch norm, fc with dropout), runs are
 * bit-reproducible, and auto calibrates without disturbing the model.
 */
#include "engine_util.h"

static dsv_model *make(const dsv_model_config *c, dsv_schedule s, int threads)
{
    dsv_model *m;
    TU_OK(dsv_model_create(&m, c));
    dsv_exec_options o = dsv_exec_options_default();
    o.schedule = s;
    o.threads = threads;
    TU_OK(dsv_model_set_exec(m, &o));
    return m;
}

/* Trains iters steps of SGD, recording the losses. */
static void train(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y, int iters,
                  double lr, double *losses)
{
    for (int it = 0; it < iters; it++) {
        TU_OK(dsv_model_loss(m, x, y, &losses[it]));
        eu_sgd(m, lr);
    }
}

static double compare_schedules(const dsv_model_config *c, int64_t n, double lr)
{
    dsv_tensor x, y;
    eu_data(c->seed + 100, c->dtype, n, c->input_dim[0], c->input_dim[1], c->input_dim[2],
            c->num_classes, &x, &y);
    double la[20], lb[20];
    dsv_model *a = make(c, DSV_SCHEDULE_LAYER, 2);
    dsv_model *b = make(c, DSV_SCHEDULE_BATCH, 2);
    train(a, &x, &y, 20, lr, la);
    train(b, &x, &y, 20, lr, lb);
    assert_int_equal(dsv_model_schedule_used(b), DSV_SCHEDULE_BATCH);
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        double e = fabs(la[i] - lb[i]) / fabs(la[i]);
        if (e > worst)
            worst = e;
    }
    printf("  %s: loss %.5f -> %.5f (layer) vs %.5f -> %.5f (batch), worst relative "
           "difference %.2e\n",
           dsv_model_kind_name(c->kind), la[0], la[19], lb[0], lb[19], worst);
    assert_true(la[19] < la[0]); /* it learns */
    dsv_model_destroy(a);
    dsv_model_destroy(b);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    return worst;
}

static void test_threelayer_layer_vs_batch(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.input_dim[1] = c.input_dim[2] = 16;
    c.num_filters = 8;
    c.filter_size = 5;
    c.hidden_dim = 32;
    c.weight_scale = 1e-2;
    c.reg = 1e-3;
    c.seed = 1;
    assert_true(compare_schedules(&c, 21, 0.05) <= 1e-4);
}

static void test_resnet_layer_vs_batch(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[1] = c.input_dim[2] = 8;
    c.res_channels = 8;
    c.res_blocks = 2;
    c.seed = 2;
    assert_true(compare_schedules(&c, 16, 0.05) <= 1e-4);
}

static void test_fc_dropout_layer_vs_batch(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_FC);
    c.input_dim[1] = c.input_dim[2] = 6;
    c.hidden_dims[0] = 40;
    c.hidden_dims[1] = 30;
    c.normalization = DSV_NORM_BATCHNORM;
    c.dropout_keep = 0.7;
    c.seed = 3;
    assert_true(compare_schedules(&c, 15, 0.05) <= 1e-4);
}

/* The comparison itself must notice a different trajectory. */
static void test_compare_catches_difference(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_FC);
    c.input_dim[1] = c.input_dim[2] = 4;
    c.seed = 4;
    dsv_tensor x, y;
    eu_data(9, DSV_F32, 8, 3, 4, 4, 10, &x, &y);
    double la[20], lb[20];
    dsv_model *a = make(&c, DSV_SCHEDULE_LAYER, 2);
    dsv_model *b = make(&c, DSV_SCHEDULE_BATCH, 2);
    train(a, &x, &y, 20, 0.05, la);
    train(b, &x, &y, 20, 0.051, lb); /* a slightly different step */
    double worst = 0;
    for (int i = 0; i < 20; i++)
        worst = fmax(worst, fabs(la[i] - lb[i]) / fabs(la[i]));
    assert_true(worst > 1e-4);
    dsv_model_destroy(a);
    dsv_model_destroy(b);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void test_bit_identical_runs(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[1] = c.input_dim[2] = 8;
    c.res_channels = 4;
    c.res_blocks = 1;
    c.seed = 5;
    dsv_tensor x, y;
    eu_data(10, DSV_F32, 12, 3, 8, 8, 10, &x, &y);
    for (int s = 0; s < 2; s++) {
        dsv_model *a = make(&c, s ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER, 2);
        dsv_model *b = make(&c, s ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER, 2);
        double la[5], lb[5];
        train(a, &x, &y, 5, 0.1, la);
        train(b, &x, &y, 5, 0.1, lb);
        size_t bytes = (size_t)dsv_model_num_params(a) * sizeof(float);
        assert_memory_equal(dsv_model_params(a), dsv_model_params(b), bytes);
        assert_memory_equal(dsv_model_buffers(a), dsv_model_buffers(b),
                            (size_t)dsv_model_num_buffers(a) * sizeof(float));
        /* and the check notices a single changed bit */
        ((uint32_t *)dsv_model_params(b))[3] ^= 1;
        assert_true(memcmp(dsv_model_params(a), dsv_model_params(b), bytes) != 0);
        dsv_model_destroy(a);
        dsv_model_destroy(b);
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void test_auto_schedule(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[1] = c.input_dim[2] = 8;
    c.res_channels = 4;
    c.res_blocks = 1;
    c.seed = 6;
    dsv_tensor x, y;
    eu_data(11, DSV_F32, 10, 3, 8, 8, 10, &x, &y);
    dsv_model *a = make(&c, DSV_SCHEDULE_AUTO, 2);
    dsv_model *b = make(&c, DSV_SCHEDULE_LAYER, 2);
    assert_int_equal(dsv_model_schedule_used(a), DSV_SCHEDULE_AUTO);
    double la, lb;
    TU_OK(dsv_model_loss(a, &x, &y, &la));
    TU_OK(dsv_model_loss(b, &x, &y, &lb));
    dsv_schedule used = dsv_model_schedule_used(a);
    printf("  auto chose the %s schedule\n", dsv_schedule_name(used));
    assert_true(used == DSV_SCHEDULE_LAYER || used == DSV_SCHEDULE_BATCH);
    assert_true(fabs(la - lb) <= 1e-5 * fabs(lb));
    /* calibration left the running statistics as one step leaves them */
    dsv_tensor ba = dsv_tensor_wrap(dsv_model_buffers(a), DSV_F32, 1,
                                    (int64_t[]){dsv_model_num_buffers(a)});
    dsv_tensor bb = dsv_tensor_wrap(dsv_model_buffers(b), DSV_F32, 1,
                                    (int64_t[]){dsv_model_num_buffers(b)});
    assert_true(tu_rel_error(&ba, &bb) < 1e-4);
    dsv_model_destroy(a);
    dsv_model_destroy(b);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static dsv_status failing_backward(dsv_call *c, dsv_backend want, void *user)
{
    (void)c;
    (void)want;
    return dsv_error(DSV_BACKEND, "injected failure in %s", (const char *)user);
}

/* A bad label fails cleanly under both schedules, with the batch's index; a
 * kernel failing inside the threads (at a plain node or at a batch-norm
 * barrier) comes back as an error naming the node, without a hang. */
static void test_errors_in_threads(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[1] = c.input_dim[2] = 4;
    c.res_channels = 2;
    c.res_blocks = 1;
    dsv_tensor x, y;
    eu_data(12, DSV_F32, 6, 3, 4, 4, 10, &x, &y);
    ((int32_t *)y.data)[5] = 10;
    for (int s = 0; s < 2; s++) {
        dsv_model *m = make(&c, s ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER, 2);
        double loss;
        assert_int_equal(dsv_model_loss(m, &x, &y, &loss), DSV_INVALID);
        if (!strstr(dsv_errmsg(), "label y[5] = 10 is outside [0, 10)"))
            fail_msg("unexpected message '%s'", dsv_errmsg());
        ((int32_t *)y.data)[5] = 1;
        const char *nodes[] = {"conv2", "bn3"};
        dsv_graph *g = dsv_model_graph(m);
        for (int k = 0; k < 2; k++) {
            int i = dsv_graph_find_node(g, nodes[k]);
            TU_OK(dsv_graph_set_backward_hook(g, i, failing_backward, (void *)nodes[k]));
            assert_int_equal(dsv_model_loss(m, &x, &y, &loss), DSV_BACKEND);
            char want[64];
            snprintf(want, sizeof(want), "node '%s': injected failure in %s", nodes[k],
                     nodes[k]);
            if (!strstr(dsv_errmsg(), want))
                fail_msg("message '%s' lacks '%s'", dsv_errmsg(), want);
            TU_OK(dsv_graph_set_backward_hook(g, i, NULL, NULL));
        }
        TU_OK(dsv_model_loss(m, &x, &y, &loss));
        ((int32_t *)y.data)[5] = 10;
        dsv_model_destroy(m);
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* Dropout masks change from step to step and repeat when the step count is
 * restored (what checkpoints rely on). */
static void test_dropout_steps(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_FC);
    c.input_dim[1] = c.input_dim[2] = 4;
    c.dropout_keep = 0.5;
    dsv_tensor x, y;
    eu_data(13, DSV_F32, 8, 3, 4, 4, 10, &x, &y);
    dsv_model *m = make(&c, DSV_SCHEDULE_BATCH, 2);
    double l0, l1, l0b;
    TU_OK(dsv_model_loss(m, &x, &y, &l0));
    TU_OK(dsv_model_loss(m, &x, &y, &l1));
    assert_int_equal(dsv_model_train_steps(m), 2);
    assert_true(l0 != l1);
    dsv_model_set_train_steps(m, 0);
    TU_OK(dsv_model_loss(m, &x, &y, &l0b));
    assert_true(l0 == l0b);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* What the batch-norm nodes' backward calls saw. */
typedef struct bn_seen {
    int calls, min_threads;
    int64_t min_rows;
} bn_seen;

static dsv_status bn_probe(dsv_call *c, dsv_backend want, void *user)
{
    bn_seen *sn = user;
    sn->calls++;
    if (c->nthreads < sn->min_threads)
        sn->min_threads = c->nthreads;
    if (c->x->shape[0] < sn->min_rows)
        sn->min_rows = c->x->shape[0];
    dsv_backend used;
    return dsv_backward(c, want, &used);
}

/* Largest |a - b| over the parameter gradients, against the largest |a|. */
static double grad_difference(dsv_model *a, dsv_model *b)
{
    int64_t n = dsv_model_num_params(a);
    bool f32 = dsv_model_dtype(a) == DSV_F32;
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double ga = f32 ? ((float *)dsv_model_grads(a))[i] : ((double *)dsv_model_grads(a))[i];
        double gb = f32 ? ((float *)dsv_model_grads(b))[i] : ((double *)dsv_model_grads(b))[i];
        worst = fmax(worst, fabs(ga - gb));
        scale = fmax(scale, fabs(ga));
    }
    return worst / scale;
}

/* Batch norm under the batch schedule runs on the whole batch with every
 * thread (spatial and 1-D, float32 and float64): its calls get the whole
 * team and the whole batch, the gradients match the layer schedule's to
 * rounding, and two runs give the same bits. */
static void test_batchnorm_all_threads(void **st)
{
    (void)st;
    for (int kind = 0; kind < 2; kind++)
        for (int f64 = 0; f64 < 2; f64++) {
            dsv_model_config c = dsv_model_config_default(kind ? DSV_MODEL_FC
                                                               : DSV_MODEL_RESNET);
            c.dtype = f64 ? DSV_F64 : DSV_F32;
            c.input_dim[1] = c.input_dim[2] = 8;
            c.res_channels = 8;
            c.res_blocks = 1;
            c.hidden_dims[0] = 40;
            c.hidden_dims[1] = 30;
            c.normalization = DSV_NORM_BATCHNORM;
            c.seed = 20 + kind;
            dsv_tensor x, y;
            eu_data(30 + kind, c.dtype, 16, 3, 8, 8, 10, &x, &y);
            dsv_model *ml = make(&c, DSV_SCHEDULE_LAYER, 2);
            dsv_model *mb[2] = {make(&c, DSV_SCHEDULE_BATCH, 2),
                                make(&c, DSV_SCHEDULE_BATCH, 2)};
            bn_seen sn = {0, 1 << 30, INT64_MAX};
            dsv_graph *g = dsv_model_graph(mb[0]);
            for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
                dsv_node_desc d;
                TU_OK(dsv_graph_node_info(g, i, &d, NULL));
                if (d.op == DSV_OP_BATCHNORM || d.op == DSV_OP_SPATIAL_BATCHNORM)
                    TU_OK(dsv_graph_set_backward_hook(g, i, bn_probe, &sn));
            }
            double ll, lb[2];
            for (int it = 0; it < 3; it++) {
                TU_OK(dsv_model_loss(ml, &x, &y, &ll));
                for (int k = 0; k < 2; k++)
                    TU_OK(dsv_model_loss(mb[k], &x, &y, &lb[k]));
                double e = grad_difference(ml, mb[0]);
                printf("  %s %s step %d: loss %.6f (layer) %.6f (batch), gradients "
                       "differ by %.2e of the largest\n",
                       dsv_model_kind_name(c.kind), f64 ? "f64" : "f32", it, ll, lb[0], e);
                assert_true(e <= (f64 ? 1e-12 : 1e-4));
                assert_true(fabs(ll - lb[0]) <= (f64 ? 1e-12 : 1e-5) * fabs(ll));
                assert_true(lb[0] == lb[1]);
                size_t esz = f64 ? 8 : 4;
                assert_memory_equal(dsv_model_grads(mb[0]), dsv_model_grads(mb[1]),
                                    (size_t)dsv_model_num_params(ml) * esz);
                assert_memory_equal(dsv_model_buffers(mb[0]), dsv_model_buffers(mb[1]),
                                    (size_t)dsv_model_num_buffers(ml) * esz);
                eu_sgd(ml, 0.05);
                eu_sgd(mb[0], 0.05);
                eu_sgd(mb[1], 0.05);
            }
            assert_int_equal(dsv_model_schedule_used(mb[0]), DSV_SCHEDULE_BATCH);
            assert_true(sn.calls >= 3);
            assert_int_equal(sn.min_threads, 2);
            assert_int_equal(sn.min_rows, 16);
            dsv_model_destroy(ml);
            dsv_model_destroy(mb[0]);
            dsv_model_destroy(mb[1]);
            dsv_tensor_free(&x);
            dsv_tensor_free(&y);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threelayer_layer_vs_batch),
        cmocka_unit_test(test_resnet_layer_vs_batch),
        cmocka_unit_test(test_fc_dropout_layer_vs_batch),
        cmocka_unit_test(test_compare_catches_difference),
        cmocka_unit_test(test_bit_identical_runs),
        cmocka_unit_test(test_auto_schedule),
        cmocka_unit_test(test_errors_in_threads),
        cmocka_unit_test(test_dropout_steps),
        cmocka_unit_test(test_batchnorm_all_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
