/*
 * In-memory .npy images, for containers that hold .npy members (engine/npz.c).
 *
 * Unlike dsv_npy_load, which feeds the ops and keeps its historic rules, an
 * image decodes to the dtype it declares: float32, float64, int32 and uint8
 * stay as they are, other integer widths become int32 (range checked), and
 * 0-d (ndim 0) and empty (a dimension of 0) arrays are allowed. Such tensors
 * have shape entries past ndim of 1 as usual, so dsv_tensor_numel is 1 for a
 * 0-d tensor and 0 for an empty one; their buffer is always allocated.
 * Internal to the library.
 */
#ifndef DASECV_NPY_PRIV_H
#define DASECV_NPY_PRIV_H

#include <stddef.h>

#include "dasecv/tensor.h"

#define DSV_NPY_INTERNAL __attribute__((visibility("hidden")))

/* Decodes the whole image buf[0..n) into t (allocated here; free with
 * dsv_tensor_free). name appears in every message ("ARCHIVE: MEMBER"). The
 * data must fill the rest of the image exactly. */
DSV_NPY_INTERNAL dsv_status dsv_npy_decode(const char *name, const void *buf, size_t n,
                                           dsv_tensor *t);

/* Encodes t (float32/float64/int32/uint8, ndim 0..4, dimensions >= 0) as a
 * version 1.0 image, exactly as numpy.save would write it, into a new malloc'd
 * buffer *out of *n bytes that the caller frees. */
DSV_NPY_INTERNAL dsv_status dsv_npy_encode(const char *name, const dsv_tensor *t,
                                           void **out, size_t *n);

#endif
