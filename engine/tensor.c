/*
 * Tensor storage: aligned allocation, views, dtype conversion.
 *
 * Invariant: shape entries past ndim are 1, so numel is always the product of
 * all four entries and kernels may index shape[3] on a 2-D tensor.
 */
#include <stdlib.h>
#include <string.h>

#include "dasecv/tensor.h"
#include "internal/check.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [DSV_F32] = {"float32", 4},
    [DSV_F64] = {"float64", 8},
    [DSV_I32] = {"int32", 4},
    [DSV_U8] = {"uint8", 1},
};
_Static_assert(sizeof(dtypes) / sizeof(dtypes[0]) == DSV_DTYPE_COUNT,
               "dtypes must describe every dsv_dtype");

size_t dsv_dtype_size(dsv_dtype t)
{
    return (unsigned)t < DSV_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *dsv_dtype_name(dsv_dtype t)
{
    return (unsigned)t < DSV_DTYPE_COUNT ? dtypes[t].name : "unknown";
}

bool dsv_dtype_is_float(dsv_dtype t) { return t == DSV_F32 || t == DSV_F64; }

void *dsv_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes > SIZE_MAX - 63) /* the rounding below would wrap */
        return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0)
        return NULL;
    return p;
}

void dsv_free(void *p) { free(p); }

static void set_shape(dsv_tensor *t, int ndim, const int64_t *shape)
{
    t->ndim = ndim;
    for (int i = 0; i < DSV_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
}

dsv_status dsv_tensor_init(dsv_tensor *t, dsv_dtype dtype, int ndim,
                           const int64_t *shape)
{
    memset(t, 0, sizeof(*t));
    if ((unsigned)dtype >= DSV_DTYPE_COUNT)
        return dsv_error(DSV_INVALID, "tensor: unknown dtype %d", (int)dtype);
    if (ndim < 1 || ndim > DSV_MAX_DIMS)
        return dsv_error(DSV_INVALID, "tensor: %d dimensions (1 to %d allowed)",
                         ndim, DSV_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return dsv_error(DSV_INVALID, "tensor: dimension %d is %lld", i,
                             (long long)shape[i]);
        /* 8 bytes per element must still fit */
        if (!dsv_mul_ok(n, shape[i], &n) || n > INT64_MAX / 8)
            return dsv_error(DSV_INVALID, "tensor: shape too large");
    }
    size_t bytes = (size_t)n * dsv_dtype_size(dtype);
    void *data = dsv_alloc(bytes);
    if (!data)
        return dsv_error(DSV_NOMEM, "tensor: cannot allocate %zu bytes", bytes);
    memset(data, 0, bytes);
    t->data = data;
    t->dtype = dtype;
    t->owner = true;
    set_shape(t, ndim, shape);
    return DSV_OK;
}

dsv_status dsv_tensor_init_like(dsv_tensor *t, const dsv_tensor *src)
{
    return dsv_tensor_init(t, src->dtype, src->ndim, src->shape);
}

dsv_tensor dsv_tensor_wrap(void *data, dsv_dtype dtype, int ndim,
                           const int64_t *shape)
{
    dsv_tensor t = {.data = data, .dtype = dtype, .owner = false};
    DSV_ASSERT(ndim >= 1 && ndim <= DSV_MAX_DIMS);
    set_shape(&t, ndim, shape);
    return t;
}

dsv_tensor dsv_tensor_slice(const dsv_tensor *t, int64_t n0, int64_t n)
{
    DSV_ASSERT(n0 >= 0 && n >= 1 && n0 + n <= t->shape[0]);
    dsv_tensor v = *t;
    size_t row = (size_t)dsv_tensor_row_size(t) * dsv_dtype_size(t->dtype);
    v.data = (char *)t->data + (size_t)n0 * row;
    v.shape[0] = n;
    v.owner = false;
    return v;
}

void dsv_tensor_free(dsv_tensor *t)
{
    if (t->owner)
        dsv_free(t->data);
    memset(t, 0, sizeof(*t));
}

int64_t dsv_tensor_numel(const dsv_tensor *t)
{
    return t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
}

size_t dsv_tensor_nbytes(const dsv_tensor *t)
{
    return (size_t)dsv_tensor_numel(t) * dsv_dtype_size(t->dtype);
}

int64_t dsv_tensor_row_size(const dsv_tensor *t)
{
    return t->shape[1] * t->shape[2] * t->shape[3];
}

bool dsv_tensor_same_shape(const dsv_tensor *a, const dsv_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < DSV_MAX_DIMS; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

const char *dsv_tensor_shape_str(const dsv_tensor *t, char *buf, size_t n)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld",
                                 i ? ", " : "", (long long)t->shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, t->ndim == 1 ? ",)" : ")");
    return buf;
}

double dsv_tensor_get(const dsv_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case DSV_F32: return ((const float *)t->data)[i];
    case DSV_F64: return ((const double *)t->data)[i];
    case DSV_I32: return ((const int32_t *)t->data)[i];
    case DSV_U8: return ((const uint8_t *)t->data)[i];
    default: DSV_ASSERT(!"bad dtype"); return 0;
    }
}

void dsv_tensor_set(dsv_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case DSV_F32: ((float *)t->data)[i] = (float)v; break;
    case DSV_F64: ((double *)t->data)[i] = v; break;
    case DSV_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case DSV_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    default: DSV_ASSERT(!"bad dtype");
    }
}

void dsv_tensor_zero(dsv_tensor *t) { memset(t->data, 0, dsv_tensor_nbytes(t)); }

dsv_status dsv_tensor_copy(dsv_tensor *dst, const dsv_tensor *src)
{
    int64_t n = dsv_tensor_numel(src);
    if (dsv_tensor_numel(dst) != n)
        return dsv_error(DSV_INVALID, "copy: %lld elements into %lld",
                         (long long)n, (long long)dsv_tensor_numel(dst));
    if (dst->dtype == src->dtype) {
        memmove(dst->data, src->data, dsv_tensor_nbytes(src));
        return DSV_OK;
    }
    for (int64_t i = 0; i < n; i++)
        dsv_tensor_set(dst, i, dsv_tensor_get(src, i));
    return DSV_OK;
}
