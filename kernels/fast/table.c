/*
 * The fast backend's kernel table: float32 for every op, float64 for conv,
 * max_pool, avg_pool, affine, relu and the batch norms. Entries with both
 * dtypes route each call by x's dtype; the other entries refuse float64
 * through .supports, so those calls fall back to naive in the dispatcher.
 */
#include "fast.h"

static bool f32_only(const dsv_call *c, bool backward)
{
    (void)backward;
    return c->x->dtype == DSV_F32;
}

/* forward and backward entries that pick the f32 or f64 kernel */
#define BY_DTYPE(name, f32_fn, f64_fn)                                         \
    static dsv_status name(dsv_call *c)                                        \
    {                                                                          \
        return c->x->dtype == DSV_F64 ? f64_fn(c) : f32_fn(c);                 \
    }
BY_DTYPE(affine_forward, dsv_fast_affine_forward, dsv_fast_affine_forward_f64)
BY_DTYPE(affine_backward, dsv_fast_affine_backward, dsv_fast_affine_backward_f64)
BY_DTYPE(relu_forward, dsv_fast_relu_forward, dsv_fast_relu_forward_f64)
BY_DTYPE(relu_backward, dsv_fast_relu_backward, dsv_fast_relu_backward_f64)
BY_DTYPE(conv_forward, dsv_fast_conv_forward, dsv_fast_conv_forward_f64)
BY_DTYPE(conv_backward, dsv_fast_conv_backward, dsv_fast_conv_backward_f64)
BY_DTYPE(max_pool_forward, dsv_fast_max_pool_forward, dsv_fast_max_pool_forward_f64)
BY_DTYPE(max_pool_backward, dsv_fast_max_pool_backward, dsv_fast_max_pool_backward_f64)
BY_DTYPE(batchnorm_forward, dsv_fast_batchnorm_forward, dsv_fast_batchnorm_forward_f64)
BY_DTYPE(batchnorm_backward, dsv_fast_batchnorm_backward,
         dsv_fast_batchnorm_backward_f64)
#undef BY_DTYPE

const dsv_backend_table dsv_fast_table = {
    .name = "fast",
    .dtypes = (1u << DSV_F32) | (1u << DSV_F64),
    .state_free = dsv_fast_state_free,
    .kernels = {
        [DSV_OP_AFFINE] = {.forward = affine_forward, .backward = affine_backward,
                           .forward_relu = dsv_fast_affine_forward_relu},
        [DSV_OP_RELU] = {.forward = relu_forward, .backward = relu_backward},
        [DSV_OP_CONV] = {.forward = conv_forward, .backward = conv_backward,
                         .forward_relu = dsv_fast_conv_forward_relu,
                         .forward_relu_pool = dsv_fast_conv_forward_relu_pool},
        [DSV_OP_MAX_POOL] = {.forward = max_pool_forward, .backward = max_pool_backward,
                             .backward_relu = dsv_fast_max_pool_backward_relu},
        /* avg_pool's kernels take both dtypes themselves */
        [DSV_OP_AVG_POOL] = {.forward = dsv_fast_avg_pool_forward,
                             .backward = dsv_fast_avg_pool_backward},
        [DSV_OP_BATCHNORM] = {.forward = batchnorm_forward, .backward = batchnorm_backward},
        [DSV_OP_SPATIAL_BATCHNORM] = {.forward = batchnorm_forward,
                                      .backward = batchnorm_backward},
        [DSV_OP_LAYERNORM] = {.supports = f32_only, .forward = dsv_fast_layernorm_forward,
                              .backward = dsv_fast_layernorm_backward},
        [DSV_OP_SPATIAL_GROUPNORM] = {.supports = f32_only,
                                      .forward = dsv_fast_groupnorm_forward,
                                      .backward = dsv_fast_groupnorm_backward},
        [DSV_OP_DROPOUT] = {.supports = f32_only, .forward = dsv_fast_dropout_forward,
                            .backward = dsv_fast_dropout_backward},
        [DSV_OP_ADD] = {.supports = f32_only, .forward = dsv_fast_add_forward,
                        .backward = dsv_fast_add_backward},
        [DSV_OP_SOFTMAX_LOSS] = {.supports = f32_only, .forward = dsv_fast_softmax_loss},
        [DSV_OP_SVM_LOSS] = {.supports = f32_only, .forward = dsv_fast_svm_loss},
    },
};
