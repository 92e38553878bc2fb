/*
 * The naive backend's kernel table: a reference kernel for every op, both
 * float dtypes, no configuration restrictions (supports = NULL). Other
 * backends fall back to this table, so it must stay complete.
 */
#include "naive.h"

const dsv_backend_table dsv_naive_table = {
    .name = "naive",
    .kernels = {
        [DSV_OP_AFFINE] = {NULL, dsv_naive_affine_forward, dsv_naive_affine_backward, NULL},
        [DSV_OP_RELU] = {NULL, dsv_naive_relu_forward, dsv_naive_relu_backward, NULL},
        [DSV_OP_CONV] = {NULL, dsv_naive_conv_forward, dsv_naive_conv_backward, NULL},
        [DSV_OP_MAX_POOL] = {NULL, dsv_naive_max_pool_forward, dsv_naive_max_pool_backward, NULL},
        [DSV_OP_AVG_POOL] = {NULL, dsv_naive_avg_pool_forward, dsv_naive_avg_pool_backward, NULL},
        [DSV_OP_BATCHNORM] = {NULL, dsv_naive_batchnorm_forward,
                              dsv_naive_batchnorm_backward, NULL},
        [DSV_OP_SPATIAL_BATCHNORM] = {NULL, dsv_naive_spatial_batchnorm_forward,
                                      dsv_naive_spatial_batchnorm_backward, NULL},
        [DSV_OP_LAYERNORM] = {NULL, dsv_naive_layernorm_forward,
                              dsv_naive_layernorm_backward, NULL},
        [DSV_OP_SPATIAL_GROUPNORM] = {NULL, dsv_naive_spatial_groupnorm_forward,
                                      dsv_naive_spatial_groupnorm_backward, NULL},
        [DSV_OP_DROPOUT] = {NULL, dsv_naive_dropout_forward, dsv_naive_dropout_backward, NULL},
        [DSV_OP_ADD] = {NULL, dsv_naive_add_forward, dsv_naive_add_backward, NULL},
        /* losses compute dscores in their forward and have no backward */
        [DSV_OP_SOFTMAX_LOSS] = {NULL, dsv_naive_softmax_loss_forward, NULL, NULL},
        [DSV_OP_SVM_LOSS] = {NULL, dsv_naive_svm_loss_forward, NULL, NULL},
    },
    .dtypes = (1u << DSV_F32) | (1u << DSV_F64),
    .state_free = NULL,
};
