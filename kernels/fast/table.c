/* The fast backend's kernel table (placeholder until its kernels land). */
#include "dasecv/ops.h"

const dsv_backend_table dsv_fast_table = {
    .name = "fast",
    .dtypes = (1u << DSV_F32),
};
