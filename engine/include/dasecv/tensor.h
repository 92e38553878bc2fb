/*
 * Dense tensors of up to four dimensions, C order (NCHW for images).
 *
 * A dsv_tensor is a small value: a data pointer, a dtype and a shape. It either
 * owns its buffer (made by dsv_tensor_init, released by dsv_tensor_free) or is a
 * view of someone else's (dsv_tensor_wrap, dsv_tensor_slice), in which case
 * dsv_tensor_free only forgets it. Tensors are always contiguous; a slice along
 * dimension 0 is contiguous too, which is what batch splitting needs.
 */
#ifndef DASECV_TENSOR_H
#define DASECV_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSV_MAX_DIMS 4

typedef enum dsv_dtype {
    DSV_F32 = 0,
    DSV_F64,
    DSV_I32, /* class labels */
    DSV_U8,  /* raw images */
    DSV_DTYPE_COUNT
} dsv_dtype;

typedef struct dsv_tensor {
    void *data;
    int64_t shape[DSV_MAX_DIMS]; /* unused trailing entries are 1 */
    int ndim;
    dsv_dtype dtype;
    bool owner; /* data is freed by dsv_tensor_free */
} dsv_tensor;

DSV_API size_t dsv_dtype_size(dsv_dtype t);
DSV_API const char *dsv_dtype_name(dsv_dtype t); /* "float32", "float64", "int32", "uint8" */
DSV_API bool dsv_dtype_is_float(dsv_dtype t);

/* Allocates a zeroed, 64-byte aligned buffer. ndim 1..4, every dim >= 1. */
DSV_API dsv_status dsv_tensor_init(dsv_tensor *t, dsv_dtype dtype, int ndim,
                           const int64_t *shape);
/* Same shape and dtype as src, zeroed. */
DSV_API dsv_status dsv_tensor_init_like(dsv_tensor *t, const dsv_tensor *src);
/* A non-owning view of data (the caller keeps it alive). */
DSV_API dsv_tensor dsv_tensor_wrap(void *data, dsv_dtype dtype, int ndim,
                           const int64_t *shape);
/* A non-owning view of rows [n0, n0 + n) along dimension 0. */
DSV_API dsv_tensor dsv_tensor_slice(const dsv_tensor *t, int64_t n0, int64_t n);
/* Frees the buffer if owned and zeroes *t. Safe on a zeroed tensor. */
DSV_API void dsv_tensor_free(dsv_tensor *t);

DSV_API int64_t dsv_tensor_numel(const dsv_tensor *t);
DSV_API size_t dsv_tensor_nbytes(const dsv_tensor *t);
/* Product of the dims after the first (the course's D for affine layers). */
DSV_API int64_t dsv_tensor_row_size(const dsv_tensor *t);
DSV_API bool dsv_tensor_same_shape(const dsv_tensor *a, const dsv_tensor *b);
/* "(2, 3, 4, 4)" into buf; returns buf. */
DSV_API const char *dsv_tensor_shape_str(const dsv_tensor *t, char *buf, size_t n);

/* Copies values, converting dtype; the element counts must match. */
DSV_API dsv_status dsv_tensor_copy(dsv_tensor *dst, const dsv_tensor *src);
/* Element i (flat index) as double, and the converse; for tests and tools. */
DSV_API double dsv_tensor_get(const dsv_tensor *t, int64_t i);
DSV_API void dsv_tensor_set(dsv_tensor *t, int64_t i, double v);
DSV_API void dsv_tensor_zero(dsv_tensor *t);

/* 64-byte aligned allocation for kernels and the engine; dsv_free releases. */
DSV_API void *dsv_alloc(size_t bytes);
DSV_API void dsv_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
