/*
 * Tensors, op validation and backend selection.
 */
#include <string.h>

#include "testutil.h"

static void test_tensor_basics(void **st)
{
    (void)st;
    int64_t shape[] = {2, 3, 4, 5};
    dsv_tensor t;
    TU_OK(dsv_tensor_init(&t, DSV_F32, 4, shape));
    assert_int_equal(dsv_tensor_numel(&t), 120);
    assert_int_equal(dsv_tensor_row_size(&t), 60);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    for (int64_t i = 0; i < 120; i++)
        dsv_tensor_set(&t, i, (double)i);
    dsv_tensor s = dsv_tensor_slice(&t, 1, 1);
    assert_int_equal(s.shape[0], 1);
    assert_true(dsv_tensor_get(&s, 0) == 60.0);
    char buf[64];
    assert_string_equal(dsv_tensor_shape_str(&t, buf, sizeof(buf)), "(2, 3, 4, 5)");

    dsv_tensor d;
    TU_OK(dsv_tensor_init(&d, DSV_F64, 2, (int64_t[]){12, 10}));
    TU_OK(dsv_tensor_copy(&d, &t));
    assert_true(dsv_tensor_get(&d, 119) == 119.0);
    dsv_tensor_free(&d);
    dsv_tensor_free(&t);
    assert_null(t.data);
}

static void test_tensor_rejects(void **st)
{
    (void)st;
    dsv_tensor t;
    assert_int_equal(dsv_tensor_init(&t, DSV_F32, 5, (int64_t[]){1, 1, 1, 1, 1}), DSV_INVALID);
    assert_int_equal(dsv_tensor_init(&t, DSV_F32, 2, (int64_t[]){3, 0}), DSV_INVALID);
    assert_int_equal(dsv_tensor_init(&t, DSV_F32, 2, (int64_t[]){INT64_MAX / 2, 4}), DSV_INVALID);
}

static void test_conv_check_messages(void **st)
{
    (void)st;
    tu_rng r = {1};
    dsv_tensor x = tu_randn(&r, DSV_F32, 4, (int64_t[]){2, 3, 31, 31}, 1);
    dsv_tensor w = tu_randn(&r, DSV_F32, 4, (int64_t[]){4, 3, 3, 3}, 1);
    dsv_tensor b = tu_zeros(DSV_F32, 1, (int64_t[]){4});
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b;
    c.p.stride = 2, c.p.pad = 1;
    int nd;
    int64_t os[4];
    TU_OK(dsv_op_check(&c, false, &nd, os));
    assert_int_equal(nd, 4);
    assert_int_equal(os[1], 4);
    assert_int_equal(os[2], 16);

    c.p.stride = 4; /* 31 + 2 - 3 = 30, not divisible by 4 */
    assert_int_equal(dsv_op_check(&c, false, &nd, os), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "not divisible by stride 4"));

    dsv_tensor wbad = tu_randn(&r, DSV_F32, 4, (int64_t[]){4, 2, 3, 3}, 1);
    c.p.stride = 1, c.w = &wbad;
    assert_int_equal(dsv_op_check(&c, false, &nd, os), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "channels"));

    dsv_tensor w64 = tu_randn(&r, DSV_F64, 4, (int64_t[]){4, 3, 3, 3}, 1);
    c.w = &w64;
    assert_int_equal(dsv_op_check(&c, false, &nd, os), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "float64"));
    dsv_tensor_free(&x), dsv_tensor_free(&w), dsv_tensor_free(&b);
    dsv_tensor_free(&wbad), dsv_tensor_free(&w64);
}

static void test_loss_label_range(void **st)
{
    (void)st;
    tu_rng r = {2};
    dsv_tensor x = tu_randn(&r, DSV_F64, 2, (int64_t[]){3, 5}, 1);
    dsv_tensor y = tu_zeros(DSV_I32, 1, (int64_t[]){3});
    ((int32_t *)y.data)[2] = 5;
    double loss;
    dsv_call c = dsv_call_make(DSV_OP_SOFTMAX_LOSS);
    c.x = &x, c.y = &y, c.loss = &loss;
    assert_int_equal(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "y[2] = 5"));
    dsv_tensor_free(&x), dsv_tensor_free(&y);
}

static void test_names_round_trip(void **st)
{
    (void)st;
    for (int i = 0; i < DSV_OP_COUNT; i++) {
        dsv_op op;
        TU_OK(dsv_op_from_name(dsv_op_name((dsv_op)i), &op));
        assert_int_equal(op, i);
    }
    dsv_op op;
    assert_int_equal(dsv_op_from_name("conv2d", &op), DSV_INVALID);
    for (int i = 0; i < DSV_BACKEND_COUNT; i++) {
        dsv_backend b;
        TU_OK(dsv_backend_from_name(dsv_backend_name((dsv_backend)i), &b));
        assert_int_equal(b, i);
    }
    assert_int_equal(dsv_set_num_threads(0), DSV_INVALID);
    TU_OK(dsv_set_num_threads(2));
    assert_int_equal(dsv_get_num_threads(), 2);
}

/* One state slot used by calls on different backends: each backend's state is
 * released by its owner when another takes the slot (ASan's leak check sees
 * anything left behind). */
static void test_state_slot_changes_hands(void **st)
{
    (void)st;
    tu_rng r = {3};
    dsv_tensor x = tu_randn(&r, DSV_F32, 4, (int64_t[]){2, 3, 8, 8}, 1);
    dsv_tensor out = tu_zeros(DSV_F32, 4, (int64_t[]){2, 3, 4, 4});
    dsv_state slot = {0};
    dsv_call c = dsv_call_make(DSV_OP_MAX_POOL);
    c.x = &x, c.out = &out, c.p.stride = 2, c.state = &slot;
    const dsv_backend order[] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN,
                                 DSV_BACKEND_NAIVE, DSV_BACKEND_FAST};
    for (int i = 0; i < 4; i++) {
        if (!dsv_backend_available(order[i]))
            continue;
        dsv_backend used;
        TU_OK(dsv_forward(&c, order[i], &used));
        assert_int_equal(used, order[i]);
        assert_int_equal(slot.owner, order[i]);
    }
    dsv_state_free(&slot);
    assert_null(slot.ptr);
    dsv_state_free(&slot); /* idempotent */
    dsv_tensor_free(&x), dsv_tensor_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_basics),
        cmocka_unit_test(test_tensor_rejects),
        cmocka_unit_test(test_conv_check_messages),
        cmocka_unit_test(test_loss_label_range),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_state_slot_changes_hands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
