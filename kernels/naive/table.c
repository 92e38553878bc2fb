/* The naive backend's kernel table (placeholder until its kernels land). */
#include "dasecv/ops.h"

const dsv_backend_table dsv_naive_table = {
    .name = "naive",
    .dtypes = (1u << DSV_F32) | (1u << DSV_F64),
};
