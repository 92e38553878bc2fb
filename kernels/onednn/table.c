/* The onednn backend's kernel table (placeholder until its kernels land). */
#include "dasecv/ops.h"

const dsv_backend_table dsv_onednn_table = {
    .name = "onednn",
    .dtypes = (1u << DSV_F32),
};
