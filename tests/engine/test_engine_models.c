/*
 * The models: ThreeLayerConvNet's initial loss, whole-model gradient checks
 * (threelayer, fc with batchnorm and layernorm, resnet) in float64 on the
 * naive backend, a broken backward caught by the check, inference, and
 * configuration errors.
 */
#include "engine_util.h"

static dsv_model *make(const dsv_model_config *c, dsv_backend b)
{
    dsv_model *m;
    TU_OK(dsv_model_create(&m, c));
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = b;
    TU_OK(dsv_model_set_exec(m, &o));
    return m;
}

static void test_threelayer_initial_loss(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    dsv_model *m = make(&c, DSV_BACKEND_AUTO);
    const char *names[] = {"conv1.w", "conv1.b", "affine2.w", "affine2.b", "affine3.w",
                           "affine3.b"};
    assert_int_equal(dsv_model_num_tensors(m), 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(dsv_model_tensor_name(m, i), names[i]);
    dsv_tensor w2 = dsv_model_param(m, 2);
    assert_int_equal(w2.shape[0], 32 * 16 * 16);
    assert_int_equal(w2.shape[1], 100);
    assert_int_equal(dsv_model_num_params(m), 3 * 32 * 49 + 32 + 8192 * 100 + 100 + 1000 + 10);

    dsv_tensor x, y;
    eu_data(1, DSV_F32, 50, 3, 32, 32, 10, &x, &y);
    double loss, loss_reg;
    TU_OK(dsv_model_loss(m, &x, &y, &loss));
    printf("  initial loss %.5f (ln 10 = %.5f)\n", loss, log(10.0));
    assert_true(fabs(loss - log(10.0)) < 0.05);
    dsv_model_destroy(m);

    c.reg = 0.5;
    c.weight_scale = 1e-2; /* large enough for the reg term to show */
    m = make(&c, DSV_BACKEND_AUTO);
    TU_OK(dsv_model_loss(m, &x, &y, &loss_reg));
    printf("  initial loss with reg 0.5: %.5f\n", loss_reg);
    assert_true(loss_reg > loss + 0.1);

    /* set_reg changes the next loss by exactly the L2 term's change:
       0.5 * reg * sum(w^2) over the weights (not the biases) */
    double sq = 0, loss2;
    for (int i = 0; i < dsv_model_num_tensors(m); i++) {
        if (!dsv_model_tensor_is_weight(m, i))
            continue;
        dsv_tensor w = dsv_model_param(m, i);
        for (int64_t k = 0; k < dsv_tensor_numel(&w); k++)
            sq += dsv_tensor_get(&w, k) * dsv_tensor_get(&w, k);
    }
    TU_OK(dsv_model_set_reg(m, 2.0));
    assert_true(dsv_model_options_of(m)->reg == 2.0);
    TU_OK(dsv_model_loss(m, &x, &y, &loss2));
    assert_true(fabs(loss2 - loss_reg - 0.75 * sq) < 1e-4 * (1 + loss2));
    assert_int_equal(dsv_model_set_reg(m, -1), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "reg must be >= 0"));
    assert_int_equal(dsv_model_set_reg(m, NAN), DSV_INVALID);
    assert_true(dsv_model_options_of(m)->reg == 2.0);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static dsv_model_config small_threelayer(void)
{
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.dtype = DSV_F64;
    c.num_filters = 3;
    c.filter_size = 3;
    c.input_dim[1] = c.input_dim[2] = 16;
    c.hidden_dim = 7;
    c.seed = 7;
    return c;
}

static void test_threelayer_gradcheck(void **st)
{
    (void)st;
    dsv_model_config c = small_threelayer();
    c.reg = 0.1;
    dsv_model *m = make(&c, DSV_BACKEND_NAIVE);
    dsv_tensor x, y;
    eu_data(2, DSV_F64, 2, 3, 16, 16, 10, &x, &y);
    double e = eu_model_gradcheck(m, &x, &y, 1e-6, "threelayer");
    assert_true(e <= 1e-2);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void fc_gradcheck(dsv_norm norm, double keep, const char *tag)
{
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_FC);
    c.dtype = DSV_F64;
    c.input_dim[0] = 15; /* the course's N=2, D=15, H1=20, H2=30, C=10 */
    c.input_dim[1] = c.input_dim[2] = 1;
    c.num_hidden = 2;
    c.hidden_dims[0] = 20;
    c.hidden_dims[1] = 30;
    c.normalization = norm;
    c.dropout_keep = keep;
    c.weight_scale = 5e-2;
    c.reg = 3.14;
    c.seed = 3;
    dsv_model *m = make(&c, DSV_BACKEND_NAIVE);
    dsv_tensor x, y;
    eu_data(4, DSV_F64, 2, 15, 1, 1, 10, &x, &y);
    double e = eu_model_gradcheck(m, &x, &y, 1e-5, tag);
    assert_true(e <= 1e-2);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void test_fc_gradcheck(void **st)
{
    (void)st;
    fc_gradcheck(DSV_NORM_NONE, 1.0, "fc");
    fc_gradcheck(DSV_NORM_BATCHNORM, 1.0, "fc+batchnorm");
    fc_gradcheck(DSV_NORM_LAYERNORM, 1.0, "fc+layernorm");
    fc_gradcheck(DSV_NORM_NONE, 0.75, "fc+dropout0.75");
    fc_gradcheck(DSV_NORM_BATCHNORM, 0.5, "fc+batchnorm+dropout0.5");
}

static void test_resnet_gradcheck(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.dtype = DSV_F64;
    c.input_dim[0] = 2;
    c.input_dim[1] = c.input_dim[2] = 4;
    c.res_channels = 3;
    c.res_blocks = 1;
    c.num_classes = 5;
    c.weight_scale = 0.5;
    c.seed = 11;
    dsv_model *m = make(&c, DSV_BACKEND_NAIVE);
    dsv_tensor x, y;
    eu_data(5, DSV_F64, 3, 2, 4, 4, 5, &x, &y);
    double e = eu_model_gradcheck(m, &x, &y, 1e-5, "resnet");
    assert_true(e <= 1e-2);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* A backward that runs the real kernel, then spoils part of dx. */
static dsv_status broken_backward(dsv_call *c, dsv_backend want, void *user)
{
    (void)user;
    dsv_status s = dsv_backward(c, want, NULL);
    if (!s && c->dx)
        ((double *)c->dx->data)[0] += 0.5;
    return s;
}

static void test_broken_backward_caught(void **st)
{
    (void)st;
    dsv_model_config c = small_threelayer();
    c.reg = 0.1;
    dsv_model *m = make(&c, DSV_BACKEND_NAIVE);
    dsv_graph *g = dsv_model_graph(m);
    int relu2 = dsv_graph_find_node(g, "relu2");
    assert_true(relu2 >= 0);
    TU_OK(dsv_graph_set_backward_hook(g, relu2, broken_backward, NULL));
    dsv_tensor x, y;
    eu_data(2, DSV_F64, 2, 3, 16, 16, 10, &x, &y);
    double e = eu_model_gradcheck(m, &x, &y, 1e-6, "threelayer (broken relu2)");
    assert_true(e > 1e-2);
    TU_OK(dsv_graph_set_backward_hook(g, relu2, NULL, NULL));
    assert_true(eu_model_gradcheck(m, &x, &y, 1e-6, "threelayer (repaired)") <= 1e-2);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

/* Test-mode scores: split batches agree with the whole batch; argmax of a
 * trained-free net still gives (N, classes). */
static void test_scores(void **st)
{
    (void)st;
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_FC);
    c.normalization = DSV_NORM_BATCHNORM;
    c.dropout_keep = 0.5;
    c.input_dim[1] = c.input_dim[2] = 8;
    dsv_model *m = make(&c, DSV_BACKEND_AUTO);
    dsv_tensor x, y;
    eu_data(6, DSV_F32, 10, 3, 8, 8, 10, &x, &y);
    double loss;
    TU_OK(dsv_model_loss(m, &x, &y, &loss)); /* running statistics move */
    dsv_tensor s = tu_zeros(DSV_F32, 2, (int64_t[]){10, 10});
    dsv_tensor s2 = tu_zeros(DSV_F32, 2, (int64_t[]){4, 10});
    TU_OK(dsv_model_scores(m, &x, &s));
    dsv_tensor x4 = dsv_tensor_slice(&x, 6, 4);
    TU_OK(dsv_model_scores(m, &x4, &s2));
    dsv_tensor s4 = dsv_tensor_slice(&s, 6, 4);
    assert_true(tu_rel_error(&s2, &s4) < 1e-5);
    /* flattened rows are accepted too */
    dsv_tensor xf = dsv_tensor_wrap(x.data, DSV_F32, 2, (int64_t[]){10, 3 * 8 * 8});
    dsv_tensor sf = tu_zeros(DSV_F32, 2, (int64_t[]){10, 10});
    TU_OK(dsv_model_scores(m, &xf, &sf));
    assert_memory_equal(sf.data, s.data, 100 * sizeof(float));
    dsv_tensor_free(&sf);
    /* wrong shapes are refused with a message */
    assert_int_equal(dsv_model_scores(m, &x4, &s), DSV_INVALID);
    dsv_tensor bad = tu_zeros(DSV_F32, 4, (int64_t[]){2, 3, 8, 7});
    assert_int_equal(dsv_model_loss(m, &bad, &y, &loss), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "(N, 3, 8, 8)"));
    dsv_tensor_free(&bad);
    dsv_tensor_free(&s);
    dsv_tensor_free(&s2);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_model_destroy(m);
}

static void expect_bad(const dsv_model_config *c, const char *msg)
{
    dsv_model *m = (dsv_model *)1;
    assert_int_equal(dsv_model_config_check(c), DSV_INVALID);
    if (!strstr(dsv_errmsg(), msg))
        fail_msg("message '%s' lacks '%s'", dsv_errmsg(), msg);
    assert_int_equal(dsv_model_create(&m, c), DSV_INVALID);
    assert_null(m);
}

static void test_config_errors(void **st)
{
    (void)st;
    dsv_model_config z;
    memset(&z, 0, sizeof(z)); /* zero sizes */
    expect_bad(&z, "input_dim[0]");
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    TU_OK(dsv_model_config_check(&c));
    c.filter_size = 40;
    expect_bad(&c, "larger than");
    c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.num_filters = 0;
    expect_bad(&c, "num_filters");
    c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.input_dim[1] = 31;
    expect_bad(&c, "pooling");
    c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.dtype = DSV_I32;
    expect_bad(&c, "dtype");
    c = dsv_model_config_default(DSV_MODEL_FC);
    c.hidden_dims[1] = 0;
    expect_bad(&c, "hidden_dims[1]");
    c = dsv_model_config_default(DSV_MODEL_FC);
    c.dropout_keep = 0;
    expect_bad(&c, "dropout_keep");
    c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.input_dim[2] = 5;
    expect_bad(&c, "even");
    c = dsv_model_config_default(DSV_MODEL_RESNET);
    c.reg = -1;
    expect_bad(&c, "reg");
    dsv_model_kind k;
    assert_int_equal(dsv_model_kind_from_name("vgg", &k), DSV_INVALID);
    TU_OK(dsv_model_kind_from_name("resnet", &k));
    assert_int_equal(k, DSV_MODEL_RESNET);
    dsv_schedule s;
    TU_OK(dsv_schedule_from_name("batch", &s));
    assert_int_equal(s, DSV_SCHEDULE_BATCH);
    dsv_norm n;
    TU_OK(dsv_norm_from_name("layernorm", &n));
    assert_string_equal(dsv_norm_name(n), "layernorm");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threelayer_initial_loss),
        cmocka_unit_test(test_threelayer_gradcheck),
        cmocka_unit_test(test_fc_gradcheck),
        cmocka_unit_test(test_resnet_gradcheck),
        cmocka_unit_test(test_broken_backward_caught),
        cmocka_unit_test(test_scores),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
