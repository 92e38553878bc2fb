/*
 * The naive backend's kernel table: a reference kernel for every op, both
 * float dtypes, no configuration restrictions (supports = NULL). Other
 * backends fall back to this table, so it must stay complete.
 */
#include "naive.h"

const dsv_backend_table dsv_naive_table = {
    .name = "naive",
    .kernels = {
        [DSV_OP_AFFINE] = {.forward = dsv_naive_affine_forward,
                           .backward = dsv_naive_affine_backward},
        [DSV_OP_RELU] = {.forward = dsv_naive_relu_forward,
                         .backward = dsv_naive_relu_backward},
        [DSV_OP_CONV] = {.forward = dsv_naive_conv_forward,
                         .backward = dsv_naive_conv_backward},
        [DSV_OP_MAX_POOL] = {.forward = dsv_naive_max_pool_forward,
                             .backward = dsv_naive_max_pool_backward},
        [DSV_OP_AVG_POOL] = {.forward = dsv_naive_avg_pool_forward,
                             .backward = dsv_naive_avg_pool_backward},
        [DSV_OP_BATCHNORM] = {.forward = dsv_naive_batchnorm_forward,
                              .backward = dsv_naive_batchnorm_backward},
        [DSV_OP_SPATIAL_BATCHNORM] = {.forward = dsv_naive_spatial_batchnorm_forward,
                                      .backward = dsv_naive_spatial_batchnorm_backward},
        [DSV_OP_LAYERNORM] = {.forward = dsv_naive_layernorm_forward,
                              .backward = dsv_naive_layernorm_backward},
        [DSV_OP_SPATIAL_GROUPNORM] = {.forward = dsv_naive_spatial_groupnorm_forward,
                                      .backward = dsv_naive_spatial_groupnorm_backward},
        [DSV_OP_DROPOUT] = {.forward = dsv_naive_dropout_forward,
                            .backward = dsv_naive_dropout_backward},
        [DSV_OP_ADD] = {.forward = dsv_naive_add_forward,
                        .backward = dsv_naive_add_backward},
        /* losses compute dscores in their forward and have no backward */
        [DSV_OP_SOFTMAX_LOSS] = {.forward = dsv_naive_softmax_loss_forward},
        [DSV_OP_SVM_LOSS] = {.forward = dsv_naive_svm_loss_forward},
    },
    .dtypes = (1u << DSV_F32) | (1u << DSV_F64),
    .state_free = NULL,
};
