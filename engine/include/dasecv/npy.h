/*
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * Reads little-endian, C-order arrays of float32, float64 and integers (int8
 * to int64, uint8 to uint64; integers become int32 labels, out-of-range values
 * are an error) with up to four dimensions. Writes float32, float64 and int32
 * (version 1.0). Anything else is a clear error: Fortran order, big endian,
 * object arrays, truncated data, trailing bytes.
 */
#ifndef DASECV_NPY_H
#define DASECV_NPY_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads path into t (allocated here; free with dsv_tensor_free). */
DSV_API dsv_status dsv_npy_load(const char *path, dsv_tensor *t);
/* The same, also naming the file's own dtype in numpy's words ("uint8",
 * "int64", "float32"; n bytes at file_dtype), since integers of every width
 * load as int32: for messages about the file. */
DSV_API dsv_status dsv_npy_load_typed(const char *path, dsv_tensor *t, char *file_dtype,
                                      size_t n);
/* Writes t to path atomically (temporary file, then rename). */
DSV_API dsv_status dsv_npy_save(const char *path, const dsv_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
