/*
 * Image loading and conversion to a model's input: channel selection,
 * bilinear resize, planar uint8.
 *
 * Decoders: Debian's libpng (simplified API) and libjpeg-turbo, because both
 * report a truncated or corrupt file as an error; libjpeg's warnings (such as
 * "premature end of data", after which it fills the rest with grey) are
 * errors here too. BMP is refused: no decoder at hand reports a truncated BMP.
 * What must stay true: an image is refused by its header's size
 * (MAX_IMAGE_SIDE on a side, MAX_IMAGE_PIXELS in all) before any pixel buffer
 * is allocated, and messages never carry bytes of the file unescaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "dasecv/image.h"

/* Documented in docs and README: 16384 on a side, 64 Mpixels in all. */
#define MAX_IMAGE_SIDE 16384
#define MAX_IMAGE_PIXELS ((int64_t)1 << 26)

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

/* ---- decoders ------------------------------------------------------------- */

typedef enum img_format { IMG_PNG, IMG_JPEG } img_format;

/* A decoded image: rows of w * c bytes, owned by the caller (free). */
typedef struct img {
    int w, h, c;
    uint8_t *pix;
} img;

/* Copies a decoder's message with anything unprintable as '?'. */
static void clean_copy(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < n; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
}

static dsv_status check_size(const char *path, int64_t w, int64_t h)
{
    if (w < 1 || h < 1 || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE ||
        w * h > MAX_IMAGE_PIXELS)
        return dsv_error(DSV_UNSUPPORTED,
                         "%s: image of %lldx%lld pixels refused (at most %d on a side and "
                         "%lld in all)",
                         path, (long long)w, (long long)h, MAX_IMAGE_SIDE,
                         (long long)MAX_IMAGE_PIXELS);
    return DSV_OK;
}

/* The format from the first bytes; BMP and anything else refused. */
static dsv_status sniff(FILE *f, const char *path, img_format *fmt)
{
    unsigned char b[8] = {0};
    size_t n = fread(b, 1, sizeof(b), f);
    rewind(f);
    if (n == 8 && png_sig_cmp(b, 0, 8) == 0) {
        *fmt = IMG_PNG;
        return DSV_OK;
    }
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        *fmt = IMG_JPEG;
        return DSV_OK;
    }
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return dsv_error(DSV_UNSUPPORTED,
                         "%s: BMP images are not supported (convert it to PNG)", path);
    return dsv_error(DSV_CORRUPT, "%s: not a PNG or JPEG image", path);
}

static dsv_status png_decode(FILE *f, const char *path, bool pixels, img *out)
{
    png_image pi;
    memset(&pi, 0, sizeof(pi));
    pi.version = PNG_IMAGE_VERSION;
    char msg[sizeof(pi.message)];
    if (!png_image_begin_read_from_stdio(&pi, f)) {
        clean_copy(msg, sizeof(msg), pi.message);
        png_image_free(&pi);
        return dsv_error(DSV_CORRUPT, "%s: not a readable PNG image (%s)", path, msg);
    }
    dsv_status s = check_size(path, pi.width, pi.height);
    if (s) {
        png_image_free(&pi);
        return s;
    }
    pi.format &= PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA; /* 8-bit, as stored */
    out->w = (int)pi.width;
    out->h = (int)pi.height;
    out->c = (int)PNG_IMAGE_SAMPLE_CHANNELS(pi.format);
    if (!pixels) {
        png_image_free(&pi);
        return DSV_OK;
    }
    out->pix = malloc(PNG_IMAGE_SIZE(pi));
    if (!out->pix) {
        png_image_free(&pi);
        return dsv_error(DSV_NOMEM, "%s: no memory for %dx%d pixels", path, out->w, out->h);
    }
    if (!png_image_finish_read(&pi, NULL, out->pix, 0, NULL)) {
        clean_copy(msg, sizeof(msg), pi.message);
        png_image_free(&pi);
        free(out->pix);
        out->pix = NULL;
        return dsv_error(DSV_CORRUPT, "%s: truncated or corrupt PNG image (%s)", path, msg);
    }
    return DSV_OK;
}

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    clean_copy(e->msg, sizeof(e->msg), buf);
    longjmp(e->jump, 1);
}

/* Warnings (level -1) mean damaged data that libjpeg would paper over. */
static void jpeg_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_fail(cinfo);
}

static dsv_status jpeg_decode(FILE *f, const char *path, bool pixels, img *out)
{
    struct jpeg_decompress_struct ci;
    jpeg_err e;
    ci.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    e.mgr.emit_message = jpeg_message;
    e.msg[0] = '\0';
    uint8_t *volatile pix = NULL;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&ci);
        free(pix);
        return dsv_error(DSV_CORRUPT, "%s: truncated or corrupt JPEG image (%s)", path, e.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    dsv_status s = check_size(path, ci.image_width, ci.image_height);
    if (!s && ci.num_components != 1 && ci.num_components != 3)
        s = dsv_error(DSV_UNSUPPORTED, "%s: JPEG with %d components (CMYK?) is not supported",
                      path, ci.num_components);
    if (s) {
        jpeg_destroy_decompress(&ci);
        return s;
    }
    out->w = (int)ci.image_width;
    out->h = (int)ci.image_height;
    out->c = ci.num_components;
    if (!pixels) {
        jpeg_destroy_decompress(&ci);
        return DSV_OK;
    }
    ci.out_color_space = out->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    size_t row = (size_t)out->w * (size_t)out->c;
    pix = malloc(row * (size_t)out->h);
    if (!pix) {
        jpeg_destroy_decompress(&ci);
        return dsv_error(DSV_NOMEM, "%s: no memory for %dx%d pixels", path, out->w, out->h);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW r = pix + row * ci.output_scanline;
        jpeg_read_scanlines(&ci, &r, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    out->pix = pix;
    return DSV_OK;
}

/* Reads path's header (pixels false) or the whole image. */
static dsv_status decode(const char *path, bool pixels, img *out)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is refused, not waited on */
    if (fd < 0)
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsv_error(DSV_IO, "%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    img_format fmt = IMG_PNG;
    dsv_status s = sniff(f, path, &fmt);
    if (!s)
        s = fmt == IMG_PNG ? png_decode(f, path, pixels, out) : jpeg_decode(f, path, pixels, out);
    fclose(f);
    return s;
}

dsv_status dsv_image_load(const char *path, int c, int h, int w, dsv_tensor *out)
{
    if (c != 1 && c != 3)
        return dsv_error(DSV_INVALID, "%s: %d channels asked, only 1 or 3", path, c);
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return dsv_error(DSV_INVALID, "%s: size %dx%d outside 1..%d", path, h, w, MAX_SIDE);
    img im;
    dsv_status s = decode(path, true, &im);
    if (s)
        return s;
    int64_t shape[3] = {c, h, w};
    s = dsv_tensor_init(out, DSV_U8, 3, shape);
    if (!s)
        s = dsv_image_convert(im.pix, im.h, im.w, im.c, c, h, w, out->data);
    if (s)
        dsv_tensor_free(out);
    free(im.pix);
    return s;
}

dsv_status dsv_image_channels(const char *path, int *channels)
{
    img im;
    dsv_status s = decode(path, false, &im);
    if (!s)
        *channels = im.c;
    return s;
}
