/*
 * The onednn backend's kernel table: float32 affine (inner product), relu
 * (eltwise), convolution, max pooling and batch normalization (batchnorm and
 * spatial_batchnorm share one kernel).
 *
 * Ops left out fall back to naive through the dispatcher. Every per-node state
 * of this backend starts with dsv_odn_state, so one state_free serves all.
 */
#include "common.h"

const dsv_backend_table dsv_onednn_table = {
    .name = "onednn",
    .kernels = {
        [DSV_OP_AFFINE] = {.supports = dsv_odn_affine_supports,
                           .forward = dsv_odn_affine_forward,
                           .backward = dsv_odn_affine_backward},
        [DSV_OP_RELU] = {.supports = dsv_odn_relu_supports, .forward = dsv_odn_relu_forward,
                         .backward = dsv_odn_relu_backward},
        [DSV_OP_CONV] = {.supports = dsv_odn_conv_supports, .forward = dsv_odn_conv_forward,
                         .backward = dsv_odn_conv_backward},
        [DSV_OP_MAX_POOL] = {.supports = dsv_odn_max_pool_supports,
                             .forward = dsv_odn_max_pool_forward,
                             .backward = dsv_odn_max_pool_backward},
        [DSV_OP_BATCHNORM] = {.supports = dsv_odn_batchnorm_supports,
                              .forward = dsv_odn_batchnorm_forward,
                              .backward = dsv_odn_batchnorm_backward},
        [DSV_OP_SPATIAL_BATCHNORM] = {.supports = dsv_odn_batchnorm_supports,
                                      .forward = dsv_odn_batchnorm_forward,
                                      .backward = dsv_odn_batchnorm_backward},
    },
    .dtypes = (1u << DSV_F32),
    .state_free = dsv_odn_state_free,
    .choice_at = dsv_odn_choice_at,
    .choice_set = dsv_odn_choice_set,
    .set_tuning = dsv_odn_set_tuning,
};
