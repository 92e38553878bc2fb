/*
 * The fast backend's kernel table: float32 only, every op. Each kernel runs
 * every valid float32 call of its op, so no entry needs .supports; float64
 * calls fall back to naive through the dispatcher's dtype check.
 */
#include "fast.h"

const dsv_backend_table dsv_fast_table = {
    .name = "fast",
    .dtypes = (1u << DSV_F32),
    .state_free = dsv_fast_state_free,
    .kernels = {
        [DSV_OP_AFFINE] = {NULL, dsv_fast_affine_forward, dsv_fast_affine_backward},
        [DSV_OP_RELU] = {NULL, dsv_fast_relu_forward, dsv_fast_relu_backward},
        [DSV_OP_CONV] = {NULL, dsv_fast_conv_forward, dsv_fast_conv_backward},
        [DSV_OP_MAX_POOL] = {NULL, dsv_fast_max_pool_forward,
                             dsv_fast_max_pool_backward},
        [DSV_OP_AVG_POOL] = {NULL, dsv_fast_avg_pool_forward,
                             dsv_fast_avg_pool_backward},
        [DSV_OP_BATCHNORM] = {NULL, dsv_fast_batchnorm_forward,
                              dsv_fast_batchnorm_backward},
        [DSV_OP_SPATIAL_BATCHNORM] = {NULL, dsv_fast_batchnorm_forward,
                                      dsv_fast_batchnorm_backward},
        [DSV_OP_LAYERNORM] = {NULL, dsv_fast_layernorm_forward,
                              dsv_fast_layernorm_backward},
        [DSV_OP_SPATIAL_GROUPNORM] = {NULL, dsv_fast_groupnorm_forward,
                                      dsv_fast_groupnorm_backward},
        [DSV_OP_DROPOUT] = {NULL, dsv_fast_dropout_forward, dsv_fast_dropout_backward},
        [DSV_OP_ADD] = {NULL, dsv_fast_add_forward, dsv_fast_add_backward},
        [DSV_OP_SOFTMAX_LOSS] = {NULL, dsv_fast_softmax_loss, NULL},
        [DSV_OP_SVM_LOSS] = {NULL, dsv_fast_svm_loss, NULL},
    },
};
