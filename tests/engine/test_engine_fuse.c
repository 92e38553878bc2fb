/*
 * Fused sandwiches (graph_fuse.c): conv+relu, conv+relu+max pool (tiling
 * 2x2 windows and overlapping 3x3 stride-1 ones) and affine+relu give the unfused
 * chain's loss, scores and gradients bit for bit (float32 and float64,
 * layer and batch schedules, training, whole-batch and batch-1 inference),
 * the pool's backward then doing the relu's too;
 * the plan says which nodes fused, so a pass that never fuses fails here; a
 * conv whose output has another reader does not fuse; the plan text
 * carries the switches.
 */
#include "engine_util.h"

enum { SHAPE_CONV_RELU, SHAPE_CONV_RELU_POOL, SHAPE_CONV_RELU_POOL3, SHAPE_DEEP_POOL,
       SHAPE_AFFINE_RELU, SHAPE_SHARED, SHAPE_RELU_SHARED };

/* A small network around one sandwich; *head is the conv or affine node. */
static dsv_graph *build(int shape, dsv_dtype dt, int *head)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, dt));
    dsv_value x, lab, a, r, p, s;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){3, 8, 8}, &x));
    TU_OK(dsv_graph_labels(g, &lab));
    if (shape == SHAPE_AFFINE_RELU) {
        TU_OK(dsv_graph_affine(g, "1", x, 20, &a));
    } else if (shape == SHAPE_DEEP_POOL) {
        /* the fusing conv's input is a planned activation (the others
           read the graph's input) */
        dsv_value c0, r0;
        TU_OK(dsv_graph_conv(g, "0", x, 3, 3, 3, 1, 1, &c0));
        TU_OK(dsv_graph_relu(g, "relu0", c0, &r0));
        TU_OK(dsv_graph_conv(g, "1", r0, 4, 3, 3, 1, 1, &a));
    } else {
        TU_OK(dsv_graph_conv(g, "1", x, 4, 3, 3, 1, 1, &a));
    }
    TU_OK(dsv_graph_relu(g, "relu1", a, &r));
    p = r;
    if (shape == SHAPE_CONV_RELU_POOL || shape == SHAPE_DEEP_POOL)
        TU_OK(dsv_graph_max_pool(g, "pool1", r, 2, 2, 2, &p));
    if (shape == SHAPE_CONV_RELU_POOL3)
        TU_OK(dsv_graph_max_pool(g, "pool1", r, 3, 3, 1, &p));
    if (shape == SHAPE_SHARED) /* the conv's output has a second reader */
        TU_OK(dsv_graph_add(g, "add1", a, r, &p));
    if (shape == SHAPE_RELU_SHARED) /* the relu's output has a second reader */
        TU_OK(dsv_graph_add(g, "add1", r, r, &p));
    TU_OK(dsv_graph_affine(g, "2", p, 10, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, lab));
    TU_OK(dsv_graph_finalize(g));
    dsv_graph_init_params(g, 7, 0.2);
    *head = dsv_graph_find_node(g, shape == SHAPE_AFFINE_RELU ? "affine1" : "conv1");
    assert_true(*head >= 0);
    return g;
}

static size_t esz(dsv_dtype dt) { return dt == DSV_F64 ? 8 : 4; }

/* Two training steps, a whole-batch and a batch-1 inference on a fused and
 * an unfused copy: the same bits. Returns whether the first copy fused; a
 * max pool after the relu fuses with it. */
static bool fused_matches_unfused(int shape, dsv_dtype dt, dsv_backend be,
                                  dsv_schedule sched)
{
    int head;
    dsv_graph *gf = build(shape, dt, &head), *gu = build(shape, dt, &head);
    dsv_graph_set_fusion(gf, -1, true);
    dsv_graph_set_fusion(gu, -1, false);
    tu_rng rng = {11};
    dsv_tensor x = tu_randn(&rng, dt, 4, (int64_t[]){6, 3, 8, 8}, 1.0);
    dsv_tensor y = tu_labels(&rng, 6, 10);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = be;
    o.schedule = sched;
    o.threads = 2;
    double lf, lu;
    for (int step = 0; step < 2; step++) {
        TU_OK(dsv_graph_train_step(gf, &o, &x, &y, &lf));
        TU_OK(dsv_graph_train_step(gu, &o, &x, &y, &lu));
        assert_true(lf == lu);
        assert_memory_equal(dsv_graph_grads(gf), dsv_graph_grads(gu),
                            (size_t)dsv_graph_num_param_values(gf) * esz(dt));
    }
    bool fused = dsv_graph_node_fused(gf, head);
    int pool = dsv_graph_find_node(gf, "pool1");
    assert_int_equal(dsv_graph_node_fused(gf, head + 1), fused);
    if (pool >= 0) {
        assert_int_equal(dsv_graph_node_fused(gf, pool), fused);
        /* training: the pool's backward did the relu's */
        assert_int_equal(dsv_graph_node_bwd_fused(gf, pool), fused);
        assert_int_equal(dsv_graph_node_bwd_fused(gf, head + 1), fused);
    }
    assert_false(dsv_graph_node_bwd_fused(gu, head + 1));
    assert_false(dsv_graph_node_fused(gu, head));
    assert_false(pool >= 0 && dsv_graph_node_fused(gu, pool));
    dsv_tensor sf, su;
    /* whole-batch inference */
    TU_OK(dsv_tensor_init(&sf, dt, 2, (int64_t[]){6, 10}));
    TU_OK(dsv_tensor_init(&su, dt, 2, (int64_t[]){6, 10}));
    TU_OK(dsv_graph_infer(gf, &o, &x, &sf));
    TU_OK(dsv_graph_infer(gu, &o, &x, &su));
    assert_memory_equal(sf.data, su.data, 60 * esz(dt));
    assert_int_equal(dsv_graph_node_fused(gf, head), fused);
    assert_false(pool >= 0 && dsv_graph_node_fused(gf, pool) != fused);
    dsv_tensor_free(&sf);
    dsv_tensor_free(&su);
    /* batch-1 inference */
    dsv_tensor x1 = dsv_tensor_wrap(x.data, dt, 4, (int64_t[]){1, 3, 8, 8});
    TU_OK(dsv_tensor_init(&sf, dt, 2, (int64_t[]){1, 10}));
    TU_OK(dsv_tensor_init(&su, dt, 2, (int64_t[]){1, 10}));
    o.schedule = DSV_SCHEDULE_LAYER;
    TU_OK(dsv_graph_infer(gf, &o, &x1, &sf));
    TU_OK(dsv_graph_infer(gu, &o, &x1, &su));
    assert_memory_equal(sf.data, su.data, 10 * esz(dt));
    assert_int_equal(dsv_graph_node_fused(gf, head), fused);
    dsv_tensor_free(&sf);
    dsv_tensor_free(&su);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_graph_destroy(gf);
    dsv_graph_destroy(gu);
    return fused;
}

static void test_fused_equals_unfused(void **st)
{
    (void)st;
    const int shapes[] = {SHAPE_CONV_RELU, SHAPE_CONV_RELU_POOL, SHAPE_CONV_RELU_POOL3,
                          SHAPE_DEEP_POOL, SHAPE_AFFINE_RELU, SHAPE_RELU_SHARED};
    for (int k = 0; k < 6; k++)
        for (int f64 = 0; f64 < 2; f64++)
            for (int sc = 0; sc < 2; sc++) {
                dsv_dtype dt = f64 ? DSV_F64 : DSV_F32;
                dsv_schedule s = sc ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER;
                /* the fast backend fuses ... */
                assert_true(fused_matches_unfused(shapes[k], dt, DSV_BACKEND_FAST, s));
                /* ... naive has no fused kernels, so nothing fuses */
                assert_false(fused_matches_unfused(shapes[k], dt, DSV_BACKEND_NAIVE, s));
            }
}

/* auto: f64 convs and 3-channel f32 convs run on fast and fuse; oneDNN
 * nodes stay unfused and still match. */
static void test_auto_backend(void **st)
{
    (void)st;
    assert_true(fused_matches_unfused(SHAPE_CONV_RELU, DSV_F32, DSV_BACKEND_AUTO,
                                      DSV_SCHEDULE_LAYER));
    assert_true(fused_matches_unfused(SHAPE_AFFINE_RELU, DSV_F64, DSV_BACKEND_AUTO,
                                      DSV_SCHEDULE_LAYER));
    if (dsv_backend_available(DSV_BACKEND_ONEDNN))
        assert_false(fused_matches_unfused(SHAPE_CONV_RELU, DSV_F32, DSV_BACKEND_ONEDNN,
                                           DSV_SCHEDULE_LAYER));
}

/* A conv whose output is read by another node besides the relu must not
 * fuse (its output is needed as it is); results match all the same. */
static void test_shared_output_not_fused(void **st)
{
    (void)st;
    for (int f64 = 0; f64 < 2; f64++)
        assert_false(fused_matches_unfused(SHAPE_SHARED, f64 ? DSV_F64 : DSV_F32,
                                           DSV_BACKEND_FAST, DSV_SCHEDULE_LAYER));
}

/* The plan text records the switches and applying it sets them. */
static void test_plan_records_fusion(void **st)
{
    (void)st;
    int head;
    dsv_graph *g = build(SHAPE_CONV_RELU, DSV_F32, &head);
    char *text;
    TU_OK(dsv_graph_plan_text(g, &text));
    /* the measured defaults: on (unless DASECV_FUSE says otherwise) */
    const char *env = getenv("DASECV_FUSE");
    if (!env) {
        assert_non_null(strstr(text, "fuse conv_relu on\n"));
        assert_non_null(strstr(text, "fuse affine_relu on\n"));
    }
    dsv_graph_set_fusion(g, -1, false);
    free(text);
    TU_OK(dsv_graph_plan_text(g, &text));
    assert_non_null(strstr(text, "fuse conv_relu off\n"));
    size_t n = strlen(text);
    char *on = malloc(n + 64);
    assert_non_null(on);
    snprintf(on, n + 64, "%sfuse conv_relu on\n", text);
    TU_OK(dsv_graph_plan_apply(g, on, "test"));
    free(text);
    TU_OK(dsv_graph_plan_text(g, &text));
    assert_non_null(strstr(text, "fuse conv_relu on\n"));
    tu_rng rng = {3};
    dsv_tensor x = tu_randn(&rng, DSV_F32, 4, (int64_t[]){2, 3, 8, 8}, 1.0);
    dsv_tensor y = tu_labels(&rng, 2, 10);
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_FAST;
    double l;
    TU_OK(dsv_graph_train_step(g, &o, &x, &y, &l));
    assert_true(dsv_graph_node_fused(g, head));
    /* a bad fuse line changes nothing */
    snprintf(on, n + 64, "%sfuse conv_relu maybe\n", text);
    assert_int_equal(dsv_graph_plan_apply(g, on, "test"), DSV_INVALID);
    snprintf(on, n + 64, "%sfuse conv_tanh on\n", text);
    assert_int_equal(dsv_graph_plan_apply(g, on, "test"), DSV_INVALID);
    assert_true(dsv_graph_node_fused(g, head));
    free(on);
    free(text);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_equals_unfused),
        cmocka_unit_test(test_auto_backend),
        cmocka_unit_test(test_shared_output_not_fused),
        cmocka_unit_test(test_plan_records_fusion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
