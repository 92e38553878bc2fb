/*
 * NumPy .npz archives: a zip file with one NAME.npy member per array, as
 * numpy.savez and numpy.savez_compressed write them and numpy.load reads them.
 *
 * Arrays are float32, float64, int32 or uint8 with 0 to 4 dimensions; 0-d
 * (ndim 0) and empty (a dimension of 0) arrays are allowed here, unlike in the
 * ops. Reading also accepts the other integer widths numpy writes (int64
 * labels, say) as int32 when every value fits. Members may be stored or
 * deflated.
 */
#ifndef DASECV_NPZ_H
#define DASECV_NPZ_H

#include "export.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes count named tensors as an .npz: a zip archive with one NAME.npy
 * member per tensor, stored uncompressed (as numpy.savez does). Names are
 * non-empty, distinct, at most 255 bytes, without NUL. Tensor entries past
 * ndim are ignored. Atomic: a temporary file in the same directory, fsync,
 * rename. The caller keeps ownership of names and tensors. */
DSV_API dsv_status dsv_npz_write(const char *path, int count, const char *const *names,
                                 const dsv_tensor *tensors);

/* A read archive: its names and tensors, owned by it. */
typedef struct dsv_npz dsv_npz;

/* Reads every member of path into a new archive *out (free with
 * dsv_npz_free). Strict: anything that is not a zip, a member that is not a
 * .npy or not a valid one, duplicate names and sizes past what the file can
 * hold are DSV_CORRUPT or DSV_UNSUPPORTED naming the file and the member. */
DSV_API dsv_status dsv_npz_read(const char *path, dsv_npz **out);
DSV_API int dsv_npz_count(const dsv_npz *z);
/* Member name without ".npy", in archive order; NULL if i is out of range. */
DSV_API const char *dsv_npz_name(const dsv_npz *z, int i);
/* The member's tensor (owned by z); NULL if i is out of range. */
DSV_API const dsv_tensor *dsv_npz_tensor(const dsv_npz *z, int i);
/* Index of the member called name, or -1. */
DSV_API int dsv_npz_find(const dsv_npz *z, const char *name);
/* Frees z and its tensors; NULL is fine. */
DSV_API void dsv_npz_free(dsv_npz *z);

#ifdef __cplusplus
}
#endif
#endif
