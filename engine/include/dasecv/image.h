/*
 * Image files (PNG, JPEG, BMP) turned into a model's input, the way the
 * datasets store theirs: uint8 (C, H, W), so that a split's mean image and
 * scale are applied exactly as in training (dsv_split_batch).
 */
#ifndef DASECV_IMAGE_H
#define DASECV_IMAGE_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Converts an interleaved 8-bit image (in_h, in_w, in_c), in_c 1 (gray),
 * 2 (gray, alpha), 3 (RGB) or 4 (RGBA), to planar (c, h, w) uint8 in out:
 *  - channels: c = 3 gives R, G, B (gray is replicated); c = 1 gives the
 *    luminance 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601). Alpha is ignored.
 *  - aspect: an input of another aspect ratio than h x w is first cropped to
 *    the centred window of that ratio (the longer side cut, rounded to whole
 *    pixels), so nothing is stretched;
 *  - size: bilinear interpolation with half-pixel centres (as PIL and OpenCV
 *    without antialiasing): output pixel (i, j) samples the window at
 *    ((i + 0.5) * win_h / h - 0.5, (j + 0.5) * win_w / w - 0.5), clamped to it;
 *    equal sizes copy the pixels unchanged. Values are rounded to the
 *    nearest integer.
 * out holds c * h * w bytes, owned by the caller. */
DSV_API dsv_status dsv_image_convert(const uint8_t *pix, int in_h, int in_w, int in_c,
                             int c, int h, int w, uint8_t *out);

/* Loads an image file and converts it as dsv_image_convert to a new tensor
 * *out, uint8 (c, h, w), which the caller frees with dsv_tensor_free.
 * DSV_IO if the file cannot be opened; DSV_CORRUPT if it is not a readable
 * PNG/JPEG/BMP (the decoder's reason is in the message); DSV_INVALID for
 * c other than 1 or 3 or a size outside 1..4096. */
DSV_API dsv_status dsv_image_load(const char *path, int c, int h, int w, dsv_tensor *out);

/* The number of channels stored in an image file (1 gray, 2 gray and alpha,
 * 3 RGB, 4 RGBA), from its header. */
DSV_API dsv_status dsv_image_channels(const char *path, int *channels);

#ifdef __cplusplus
}
#endif
#endif
