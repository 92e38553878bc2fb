/*
 * Image loading (stb_image, from Debian's libstb-dev) and conversion to a
 * model's input: channel selection, bilinear resize, planar uint8.
 *
 * stb_image is compiled here, static (STB_IMAGE_STATIC), so that its symbols
 * never leave libdasecv and cannot clash with another copy in a program.
 * Image sizes are capped before any allocation the decoder makes.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dasecv/image.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_MAX_DIMENSIONS (1 << 14)
/* stb asserts on some corrupt JPEGs (inconsistent Huffman codes): input must
 * never abort us, so its asserts are off in every build type, as NDEBUG
 * already has them in release builds. */
#define STBI_ASSERT(x) ((void)0)
/* The static build declares decoder entry points this file never uses; gcc
 * reports them at the end of the file, so the warning is off for all of it. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image.h>

#define MAX_SIDE 4096

/* Value of channel ch (0..2 = R, G, B; -1 = luminance) at input pixel p. */
static float sample(const uint8_t *p, int in_c, int ch)
{
    float r, g, b;
    if (in_c <= 2) {
        r = g = b = p[0];
    } else {
        r = p[0];
        g = p[1];
        b = p[2];
    }
    if (ch < 0)
        return 0.299f * r + 0.587f * g + 0.114f * b;
    return ch == 0 ? r : ch == 1 ? g : b;
}

/* Source coordinate of output index i for half-pixel centres over the crop
 * window [off, off + in), clamped to it; the lower neighbour and the weight
 * of the upper one. */
static void src_coord(int i, int off, int in, int out, int *i0, int *i1, float *t)
{
    float x = ((float)i + 0.5f) * (float)in / (float)out - 0.5f;
    if (x < 0)
        x = 0;
    if (x > (float)(in - 1))
        x = (float)(in - 1);
    int k = (int)x;
    *t = x - (float)k;
    *i0 = off + k;
    *i1 = off + (k + 1 < in ? k + 1 : k);
}

/* The centred window of the input with the output's aspect ratio: the longer
 * side is cut, so nothing is stretched (as the course crops its photos). */
static void crop(int in_h, int in_w, int h, int w, int *y0, int *ch, int *x0, int *cw)
{
    *y0 = *x0 = 0;
    *ch = in_h;
    *cw = in_w;
    if ((int64_t)in_w * h > (int64_t)in_h * w) { /* wider than the output */
        *cw = (int)(((int64_t)in_h * w + h / 2) / h);
        *cw = *cw < 1 ? 1 : *cw;
        *x0 = (in_w - *cw) / 2;
    } else if ((int64_t)in_w * h < (int64_t)in_h * w) { /* taller */
        *ch = (int)(((int64_t)in_w * h + w / 2) / w);
        *ch = *ch < 1 ? 1 : *ch;
        *y0 = (in_h - *ch) / 2;
    }
}

dsv_status dsv_image_convert(const uint8_t *pix, int in_h, int in_w, int in_c,
                             int c, int h, int w, uint8_t *out)
{
    if (!pix || !out)
        return dsv_error(DSV_INVALID, "image: missing buffer");
    if (in_c < 1 || in_c > 4 || in_h < 1 || in_w < 1)
        return dsv_error(DSV_INVALID, "image: bad input %dx%d with %d channels", in_h, in_w,
                         in_c);
    if (c != 1 && c != 3)
        return dsv_error(DSV_INVALID, "image: %d channels asked, only 1 or 3", c);
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return dsv_error(DSV_INVALID, "image: size %dx%d outside 1..%d", h, w, MAX_SIDE);

    int oy, cy, ox, cx;
    crop(in_h, in_w, h, w, &oy, &cy, &ox, &cx);
    for (int k = 0; k < c; k++) {
        int ch = c == 1 ? -1 : k;
        for (int i = 0; i < h; i++) {
            int y0, y1;
            float ty;
            src_coord(i, oy, cy, h, &y0, &y1, &ty);
            for (int j = 0; j < w; j++) {
                int x0, x1;
                float tx;
                src_coord(j, ox, cx, w, &x0, &x1, &tx);
                const uint8_t *r0 = pix + (size_t)y0 * in_w * in_c;
                const uint8_t *r1 = pix + (size_t)y1 * in_w * in_c;
                float a = sample(r0 + x0 * in_c, in_c, ch);
                float b = sample(r0 + x1 * in_c, in_c, ch);
                float d = sample(r1 + x0 * in_c, in_c, ch);
                float e = sample(r1 + x1 * in_c, in_c, ch);
                float top = a + (b - a) * tx, bot = d + (e - d) * tx;
                float v = top + (bot - top) * ty;
                v = v < 0 ? 0 : v > 255 ? 255 : v;
                out[((size_t)k * h + i) * w + j] = (uint8_t)lrintf(v);
            }
        }
    }
    return DSV_OK;
}

/* Two big-endian bytes, -1 at the end of the file. */
static long get16be(FILE *f)
{
    int a = fgetc(f), b = fgetc(f);
    return a == EOF || b == EOF ? -1 : (long)a << 8 | b;
}

/* stb_image 2.27 (Debian 12's libstb) writes past its Huffman tables when a
 * JPEG DHT segment declares more than 256 codes in one table (2.28 refuses
 * such a table). Walks the marker segments as stb does and reports such a
 * table; leaves f at an arbitrary position. Non-JPEG files pass. */
static bool jpeg_huffman_overflows(FILE *f)
{
    int soi;
    if (fgetc(f) != 0xFF)
        return false;
    while ((soi = fgetc(f)) == 0xFF) /* stb skips fill bytes before any marker */
        ;
    if (soi != 0xD8)
        return false;
    for (;;) {
        int m = fgetc(f);
        if (m == EOF)
            return false;
        if (m != 0xFF) /* entropy-coded data between markers */
            continue;
        while ((m = fgetc(f)) == 0xFF)
            ;
        if (m == EOF || m == 0xD9)
            return false;
        /* stuffed zero, restart markers, TEM and SOI carry no length */
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
            continue;
        long len = get16be(f);
        if (len < 2)
            return false;
        len -= 2;
        if (m != 0xC4) {
            if (fseek(f, len, SEEK_CUR) != 0)
                return false;
            continue;
        }
        while (len > 0) { /* one table: class/id, 16 counts, the codes */
            (void)fgetc(f);
            long n = 0;
            for (int i = 0; i < 16; i++) { /* stb reads zeros past the end */
                int k = fgetc(f);
                n += k == EOF ? 0 : k;
            }
            if (n > 256)
                return true;
            if (fseek(f, n, SEEK_CUR) != 0)
                return false;
            len -= 17 + n;
        }
    }
}

dsv_status dsv_image_load(const char *path, int c, int h, int w, dsv_tensor *out)
{
    if (c != 1 && c != 3)
        return dsv_error(DSV_INVALID, "%s: %d channels asked, only 1 or 3", path, c);
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return dsv_error(DSV_INVALID, "%s: size %dx%d outside 1..%d", path, h, w, MAX_SIDE);
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    if (jpeg_huffman_overflows(f)) {
        fclose(f);
        return dsv_error(DSV_CORRUPT, "%s: not a readable PNG, JPEG or BMP image (JPEG "
                         "Huffman table with more than 256 codes)", path);
    }
    rewind(f);
    int iw, ih, ic;
    uint8_t *pix = stbi_load_from_file(f, &iw, &ih, &ic, 0);
    fclose(f);
    if (!pix)
        return dsv_error(DSV_CORRUPT, "%s: not a readable PNG, JPEG or BMP image (%s)", path,
                         stbi_failure_reason());
    int64_t shape[3] = {c, h, w};
    dsv_status s = dsv_tensor_init(out, DSV_U8, 3, shape);
    if (!s)
        s = dsv_image_convert(pix, ih, iw, ic, c, h, w, out->data);
    if (s)
        dsv_tensor_free(out);
    stbi_image_free(pix);
    return s;
}

dsv_status dsv_image_channels(const char *path, int *channels)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    int iw, ih, ic;
    int ok = stbi_info_from_file(f, &iw, &ih, &ic);
    fclose(f);
    if (!ok)
        return dsv_error(DSV_CORRUPT, "%s: not a readable PNG, JPEG or BMP image (%s)", path,
                         stbi_failure_reason());
    *channels = ic;
    return DSV_OK;
}
