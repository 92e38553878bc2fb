/*
 * Dataset loaders (CIFAR-10 batches, IDX gz and raw), their error paths,
 * batch conversion with mean subtraction, and image loading/resizing.
 * Every file is generated under $DSV_SCRATCH.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

#include "gen.h"
#include "testutil.h"

static char dirbuf[4096];

/* A fresh directory under scratch for one case. */
static const char *case_dir(const char *name)
{
    snprintf(dirbuf, sizeof(dirbuf), "%s", tu_scratch("data"));
    gen_dir(dirbuf);
    snprintf(dirbuf, sizeof(dirbuf), "%s/%s", tu_scratch("data"), name);
    gen_dir(dirbuf);
    return dirbuf;
}

static void expect_error(dsv_status got, dsv_status want, const char *needle1,
                         const char *needle2)
{
    if (got != want)
        fail_msg("expected %s, got %s (%s)", dsv_status_name(want), dsv_status_name(got),
                 dsv_errmsg());
    if (needle1 && !strstr(dsv_errmsg(), needle1))
        fail_msg("message '%s' lacks '%s'", dsv_errmsg(), needle1);
    if (needle2 && !strstr(dsv_errmsg(), needle2))
        fail_msg("message '%s' lacks '%s'", dsv_errmsg(), needle2);
}

static const int64_t small_counts[6] = {7, 5, 6, 4, 8, 10};

static void make_cifar(const char *dir)
{
    assert_int_equal(gen_cifar(dir, small_counts), 0);
}

/* Record r of the concatenated training files: (file, index in file). */
static void cifar_locate(int64_t r, int *f, int64_t *i)
{
    *f = 0;
    while (r >= small_counts[*f])
        r -= small_counts[(*f)++];
    *i = r;
}

/* Peak resident size of this process in KiB (VmHWM), or -1. */
static long peak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/* Loading holds the image block and little else: no copy of a whole batch
 * file next to it, and of the test file only the test split's records. The
 * files here are 2000 records (6 MB) each and 100 test records are asked
 * for, so the peak may grow by the block and 2 MiB, not by a file more.
 * Skipped where the peak cannot be reset (/proc/self/clear_refs) and under
 * AddressSanitizer (its shadow and quarantine add to the resident size). */
static void test_cifar_load_peak(void **st)
{
    (void)st;
#ifdef TEST_ASAN
    skip();
#endif
    static const int64_t counts[6] = {2000, 2000, 2000, 2000, 2000, 2000};
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", case_dir("cifar_peak"));
    assert_int_equal(gen_cifar(dir, counts), 0);
    char spec[4200];
    snprintf(spec, sizeof(spec), "cifar10-custom:%s", dir);
    dsv_data_options o = dsv_data_options_default();
    o.num_test = 100;
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (!cr || fputs("5", cr) == EOF || fclose(cr) != 0 || peak_kib() < 0)
        skip(); /* no way to reset the peak here */
    const long before = peak_kib();
    dsv_dataset ds;
    TU_OK(dsv_dataset_load(&ds, spec, &o));
    const long grown = peak_kib() - before;
    assert_int_equal(ds.test.n, 100);
    assert_int_equal(ds.train.n + ds.val.n, 10000);
    const long block_kib = (10000 + 100) * 3072 / 1024;
    if (grown > block_kib + 2048)
        fail_msg("loading grew the peak by %ld KiB for a %ld KiB block", grown, block_kib);
    dsv_dataset_free(&ds);
}

/* cifar10:DIR wants the official files: a batch cut at a record boundary
 * (a partial copy) names the file and the count found. */
static void test_cifar_official_counts(void **st)
{
    (void)st;
    char dir[4096], spec[4200], file[4300];
    snprintf(dir, sizeof(dir), "%s", case_dir("cifar_partial"));
    make_cifar(dir);
    snprintf(spec, sizeof(spec), "cifar10:%s", dir);
    snprintf(file, sizeof(file), "%s/data_batch_1.bin", dir);
    dsv_dataset ds;
    expect_error(dsv_dataset_load(&ds, spec, NULL), DSV_CORRUPT, file, "holds 7 records");
    expect_error(dsv_dataset_load(&ds, spec, NULL), DSV_CORRUPT, "exactly 10000",
                 "cifar10-custom:DIR");
    assert_null(ds.images);
    assert_int_equal(dsv_dataset_spec_check("cifar10-custom:x"), DSV_OK);
    assert_int_equal(dsv_dataset_spec_check("cifar100:x"), DSV_INVALID);
    assert_int_equal(dsv_dataset_spec_check("cifar10-custom"), DSV_INVALID);
}

static void test_cifar_small(void **st)
{
    (void)st;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", case_dir("cifar_ok"));
    make_cifar(dir);
    char spec[4200];
    snprintf(spec, sizeof(spec), "cifar10-custom:%s", dir);
    dsv_dataset ds;
    TU_OK(dsv_dataset_load(&ds, spec, NULL));
    /* 30 training records: 3 validation (the last), 27 train; 10 test */
    assert_int_equal(ds.train.n, 27);
    assert_int_equal(ds.val.n, 3);
    assert_int_equal(ds.test.n, 10);
    assert_int_equal(ds.train.c, 3);
    assert_int_equal(ds.train.h, 32);
    assert_string_equal(ds.class_names[3], "c3");
    assert_int_equal(ds.num_classes, 10);
    for (int64_t r = 0; r < 30; r++) {
        int f;
        int64_t i;
        cifar_locate(r, &f, &i);
        const uint8_t *img = r < 27 ? ds.train.images + r * 3072
                                    : ds.val.images + (r - 27) * 3072;
        int32_t lab = r < 27 ? ds.train.labels[r] : ds.val.labels[r - 27];
        assert_int_equal(lab, gen_label(f, i));
        /* R plane first, then G, then B: byte k of the record is plane k/1024 */
        for (int64_t k = 0; k < 3072; k += 97)
            assert_int_equal(img[k], gen_pixel(f, i, k));
    }
    for (int64_t i = 0; i < 10; i++) {
        assert_int_equal(ds.test.labels[i], gen_label(5, i));
        assert_int_equal(ds.test.images[i * 3072 + 5], gen_pixel(5, i, 5));
    }
    /* mean over the 27 training records, as float */
    for (int64_t k = 0; k < 3072; k += 101) {
        double m = 0;
        for (int64_t r = 0; r < 27; r++) {
            int f;
            int64_t i;
            cifar_locate(r, &f, &i);
            m += gen_pixel(f, i, k);
        }
        assert_float_equal(ds.train.mean[k], m / 27, 1e-4);
    }
    assert_ptr_equal(ds.val.mean, ds.train.mean);
    dsv_dataset_free(&ds);

    /* a smaller training split keeps the validation split and the mean */
    dsv_data_options o = dsv_data_options_default();
    o.num_train = 5;
    dsv_dataset a, b;
    TU_OK(dsv_dataset_load(&a, spec, NULL));
    TU_OK(dsv_dataset_load(&b, spec, &o));
    assert_int_equal(b.train.n, 5);
    assert_int_equal(b.val.n, 3);
    assert_memory_equal(a.val.images, b.val.images, 3 * 3072);
    assert_memory_equal(a.train.mean, b.train.mean, 3072 * sizeof(float));
    dsv_dataset_free(&b);
    o.num_train = 28; /* only 27 remain */
    expect_error(dsv_dataset_load(&b, spec, &o), DSV_INVALID, "27", NULL);
    o.num_train = 0;
    o.num_val = 30;
    expect_error(dsv_dataset_load(&b, spec, &o), DSV_INVALID, "validation", NULL);
    o = dsv_data_options_default();
    o.subtract_mean = 0;
    TU_OK(dsv_dataset_load(&b, spec, &o));
    assert_null(b.train.mean);
    dsv_dataset_free(&b);
    dsv_dataset_free(&a);

    /* cifar10:DIR also takes the directory the tarball was unpacked in */
    char sub[4200];
    snprintf(sub, sizeof(sub), "%s/cifar-10-batches-bin", case_dir("cifar_parent"));
    gen_dir(sub);
    make_cifar(sub);
    snprintf(spec, sizeof(spec), "cifar10-custom:%s", case_dir("cifar_parent"));
    TU_OK(dsv_dataset_load(&b, spec, NULL));
    assert_int_equal(b.train.n, 27);
    dsv_dataset_free(&b);
}

static void cifar_bad(const char *name, int file, const void *bytes, size_t n,
                      dsv_status want, const char *needle)
{
    char dir[4096], path[4200], spec[4200];
    snprintf(dir, sizeof(dir), "%s", case_dir(name));
    make_cifar(dir);
    snprintf(path, sizeof(path), "%s/%s", dir,
             file == 5 ? "test_batch.bin" : file == 2 ? "data_batch_3.bin" : "data_batch_1.bin");
    if (bytes)
        assert_int_equal(gen_write(path, bytes, n), 0);
    else
        assert_int_equal(unlink(path), 0);
    snprintf(spec, sizeof(spec), "cifar10-custom:%s", dir);
    dsv_dataset ds;
    expect_error(dsv_dataset_load(&ds, spec, NULL), want, path, needle);
    assert_null(ds.images);
}

static void test_cifar_truncated(void **st)
{
    (void)st;
    uint8_t *buf = calloc(3 * 3073, 1);
    cifar_bad("cifar_trunc", 2, buf, 3 * 3073 - 100, DSV_CORRUPT, "multiple of the 3073");
    cifar_bad("cifar_empty", 0, buf, 0, DSV_CORRUPT, "empty");
    free(buf);
}

static void test_cifar_oversized(void **st)
{
    (void)st;
    size_t n = (size_t)10001 * 3073;
    uint8_t *buf = calloc(n, 1);
    cifar_bad("cifar_big", 0, buf, n, DSV_CORRUPT, "10001 records");
    cifar_bad("cifar_extra", 5, buf, 3 * 3073 + 1, DSV_CORRUPT, "multiple");
    free(buf);
}

static void test_cifar_bad_label_and_missing(void **st)
{
    (void)st;
    uint8_t *buf = calloc(4 * 3073, 1);
    buf[2 * 3073] = 10; /* record 2 */
    cifar_bad("cifar_label", 5, buf, 4 * 3073, DSV_CORRUPT, "record 2 has label 10");
    free(buf);
    cifar_bad("cifar_missing", 2, NULL, 0, DSV_IO, "cannot open");
    dsv_dataset ds;
    expect_error(dsv_dataset_load(&ds, "cifar10", NULL), DSV_INVALID, "cifar10:DIR", NULL);
    expect_error(dsv_dataset_load(&ds, "imagenet:/x", NULL), DSV_INVALID, "unknown", NULL);
}

static void check_idx(const char *spec, int64_t ntrain, int64_t nval, int64_t ntest,
                      int h, int w)
{
    dsv_dataset ds;
    TU_OK(dsv_dataset_load(&ds, spec, NULL));
    assert_int_equal(ds.train.n, ntrain);
    assert_int_equal(ds.val.n, nval);
    assert_int_equal(ds.test.n, ntest);
    assert_int_equal(ds.train.c, 1);
    assert_int_equal(ds.train.h, h);
    assert_int_equal(ds.train.w, w);
    int64_t row = h * w;
    for (int64_t i = 0; i < ntrain; i++) {
        assert_int_equal(ds.train.labels[i], gen_label(0, i));
        for (int64_t k = 0; k < row; k++)
            assert_int_equal(ds.train.images[i * row + k], gen_pixel(0, i, k));
    }
    for (int64_t i = 0; i < nval; i++)
        assert_int_equal(ds.val.labels[i], gen_label(0, ntrain + i));
    for (int64_t i = 0; i < ntest; i++) {
        assert_int_equal(ds.test.labels[i], gen_label(1, i));
        assert_int_equal(ds.test.images[i * row + 3], gen_pixel(1, i, 3));
    }
    double m = 0;
    for (int64_t i = 0; i < ntrain; i++)
        m += gen_pixel(0, i, 7);
    assert_float_equal(ds.train.mean[7], m / (double)ntrain, 1e-4);
    dsv_dataset_free(&ds);
}

static void make_idx(const char *dir, int gz)
{
    assert_int_equal(gen_idx(dir, "train", 0, 20, 5, 4, gz), 0);
    assert_int_equal(gen_idx(dir, "t10k", 1, 6, 5, 4, gz), 0);
}

static void test_idx_gz_and_raw(void **st)
{
    (void)st;
    char spec[4200];
    make_idx(case_dir("idx_gz"), 1);
    snprintf(spec, sizeof(spec), "mnist:%s", dirbuf);
    check_idx(spec, 18, 2, 6, 5, 4);
    snprintf(spec, sizeof(spec), "fashion-mnist:%s", dirbuf);
    dsv_dataset ds;
    TU_OK(dsv_dataset_load(&ds, spec, NULL));
    assert_string_equal(ds.class_names[9], "Ankle boot");
    dsv_dataset_free(&ds);
    make_idx(case_dir("idx_raw"), 0);
    snprintf(spec, sizeof(spec), "mnist:%s", dirbuf);
    check_idx(spec, 18, 2, 6, 5, 4);
}

/* Rewrites one raw IDX file of a fresh case (raw so bytes are easy to edit). */
static void idx_bad(const char *name, const char *file, size_t cut, int byte, int value,
                    size_t append, dsv_status want, const char *needle)
{
    char dir[4096], path[4200], spec[4200];
    snprintf(dir, sizeof(dir), "%s", case_dir(name));
    make_idx(dir, 0);
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 64, f);
    fclose(f);
    if (cut)
        n = cut;
    if (byte >= 0)
        buf[byte] = (uint8_t)value;
    memset(buf + n, 0, append);
    assert_int_equal(gen_write(path, buf, n + append), 0);
    snprintf(spec, sizeof(spec), "mnist:%s", dir);
    dsv_dataset ds;
    expect_error(dsv_dataset_load(&ds, spec, NULL), want, file, needle);
}

static void test_idx_malformed(void **st)
{
    (void)st;
    idx_bad("idx_magic", "train-images-idx3-ubyte", 0, 2, 0x09, 0, DSV_CORRUPT, "bad magic");
    idx_bad("idx_dims", "train-images-idx3-ubyte", 0, 3, 2, 0, DSV_CORRUPT, "2 dimensions");
    idx_bad("idx_zero", "t10k-images-idx3-ubyte", 0, 11, 0, 0, DSV_CORRUPT, "dimension 1");
    /* a header announcing 335 MB in a small file: truncated, without
       allocating what it announces */
    idx_bad("idx_huge", "train-images-idx3-ubyte", 0, 4, 0x01, 0, DSV_CORRUPT, "truncated");
    idx_bad("idx_toobig", "train-images-idx3-ubyte", 0, 4, 0x7f, 0, DSV_CORRUPT,
            "more than");
    idx_bad("idx_trunc", "train-images-idx3-ubyte", 100, -1, 0, 0, DSV_CORRUPT, "truncated");
    idx_bad("idx_hdr", "train-labels-idx1-ubyte", 6, -1, 0, 0, DSV_CORRUPT, "header");
    idx_bad("idx_extra", "t10k-labels-idx1-ubyte", 0, -1, 0, 5, DSV_CORRUPT, "trailing");
    idx_bad("idx_label", "train-labels-idx1-ubyte", 0, 8 + 4, 12, 0, DSV_CORRUPT,
            "label 4 is 12");
    /* labels announce 19 entries: count mismatch (file also shortened) */
    idx_bad("idx_count", "train-labels-idx1-ubyte", 8 + 19, 7, 19, 0, DSV_CORRUPT,
            "20 images");
}

static void test_idx_gz_corrupt_and_missing(void **st)
{
    (void)st;
    char dir[4096], path[4200], spec[4200];
    snprintf(dir, sizeof(dir), "%s", case_dir("idx_gzcut"));
    make_idx(dir, 1);
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte.gz", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    snprintf(spec, sizeof(spec), "mnist:%s", dir);
    dsv_dataset ds;
    expect_error(dsv_dataset_load(&ds, spec, NULL), DSV_CORRUPT, path, NULL);

    snprintf(dir, sizeof(dir), "%s", case_dir("idx_missing"));
    make_idx(dir, 1);
    snprintf(path, sizeof(path), "%s/t10k-labels-idx1-ubyte.gz", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(spec, sizeof(spec), "mnist:%s", dir);
    expect_error(dsv_dataset_load(&ds, spec, NULL), DSV_IO, path, "no such file");
}

static void test_split_batch(void **st)
{
    (void)st;
    /* 4 images of (2, 1, 3) with a known mean */
    uint8_t img[4 * 6];
    int32_t lab[4] = {3, 1, 4, 1};
    float mean[6];
    for (int i = 0; i < 24; i++)
        img[i] = (uint8_t)(i * 10 + 1);
    for (int k = 0; k < 6; k++)
        mean[k] = 0.5f * (float)k;
    dsv_split s = {.n = 4, .c = 2, .h = 1, .w = 3, .images = img, .labels = lab,
                   .mean = mean, .scale = 0.25f};
    int64_t idx[3] = {2, 0, 2};
    for (int d = 0; d < 2; d++) {
        dsv_dtype dt = d ? DSV_F64 : DSV_F32;
        dsv_tensor x = {0}, y = {0};
        TU_OK(dsv_split_batch(&s, idx, 3, &x, &y, dt));
        assert_int_equal(x.ndim, 4);
        assert_int_equal(x.shape[0], 3);
        assert_int_equal(x.shape[1], 2);
        assert_int_equal(x.shape[3], 3);
        assert_int_equal(x.dtype, dt);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(((int32_t *)y.data)[i], lab[idx[i]]);
            for (int k = 0; k < 6; k++)
                assert_float_equal(dsv_tensor_get(&x, i * 6 + k),
                                   (img[idx[i] * 6 + k] - 0.5 * k) * 0.25, 1e-5);
        }
        /* into existing tensors, rows 0..count */
        TU_OK(dsv_split_batch(&s, NULL, 3, &x, &y, dt));
        assert_float_equal(dsv_tensor_get(&x, 6 + 2), (img[8] - 1.0) * 0.25, 1e-5);
        expect_error(dsv_split_batch(&s, NULL, 2, &x, &y, dt), DSV_INVALID, "expected", NULL);
        dsv_tensor_free(&x);
        dsv_tensor_free(&y);
    }
    dsv_tensor x = {0}, y = {0};
    idx[1] = 4;
    expect_error(dsv_split_batch(&s, idx, 3, &x, &y, DSV_F32), DSV_INVALID, "index 4", NULL);
    idx[1] = -1;
    expect_error(dsv_split_batch(&s, idx, 3, &x, &y, DSV_F32), DSV_INVALID, "index -1", NULL);
    expect_error(dsv_split_batch(&s, NULL, 5, &x, &y, DSV_F32), DSV_INVALID, NULL, NULL);
    expect_error(dsv_split_batch(&s, NULL, 2, &x, &y, DSV_I32), DSV_INVALID, NULL, NULL);
    assert_null(x.data);
    assert_null(y.data);
}

/* A split of float pixels: rows gathered as they are (no mean, no scale),
 * converted to the dtype asked for; exactly one of images/fimages. */
static void test_split_batch_float(void **st)
{
    (void)st;
    float f32[3 * 4];
    double f64[3 * 4];
    int32_t lab[3] = {2, 0, 1};
    for (int i = 0; i < 12; i++) {
        f32[i] = 0.1f * (float)i - 0.5f;
        f64[i] = 1.0 / 3.0 + i;
    }
    float mean[4] = {100, 100, 100, 100};
    dsv_split s = {.n = 3, .c = 1, .h = 2, .w = 2, .labels = lab, .mean = mean,
                   .scale = 7.0f, .fimages = f32, .fdtype = DSV_F32};
    int64_t idx[2] = {2, 0};
    for (int src = 0; src < 2; src++) {
        s.fimages = src ? (const void *)f64 : (const void *)f32;
        s.fdtype = src ? DSV_F64 : DSV_F32;
        for (int d = 0; d < 2; d++) {
            dsv_dtype dt = d ? DSV_F64 : DSV_F32;
            dsv_tensor x = {0}, y = {0};
            TU_OK(dsv_split_batch(&s, idx, 2, &x, &y, dt));
            assert_int_equal(x.dtype, dt);
            assert_int_equal(x.shape[0], 2);
            for (int i = 0; i < 2; i++) {
                assert_int_equal(((int32_t *)y.data)[i], lab[idx[i]]);
                for (int k = 0; k < 4; k++) {
                    double v = src ? f64[idx[i] * 4 + k] : (double)f32[idx[i] * 4 + k];
                    /* float64 into float32 rounds once; the rest is exact */
                    double want = dt == DSV_F32 ? (double)(float)v : v;
                    assert_true(dsv_tensor_get(&x, i * 4 + k) == want);
                }
            }
            dsv_tensor_free(&x);
            dsv_tensor_free(&y);
        }
    }
    dsv_tensor x = {0}, y = {0};
    uint8_t img[12] = {0};
    s.images = img;
    expect_error(dsv_split_batch(&s, NULL, 2, &x, &y, DSV_F32), DSV_INVALID, "both", NULL);
    s.images = NULL;
    s.fimages = NULL;
    expect_error(dsv_split_batch(&s, NULL, 2, &x, &y, DSV_F32), DSV_INVALID, "neither", NULL);
    s.fimages = f32;
    s.fdtype = DSV_I32;
    expect_error(dsv_split_batch(&s, NULL, 2, &x, &y, DSV_F32), DSV_INVALID, "int32", NULL);
    assert_null(x.data);
    assert_null(y.data);
}

/* Reference bilinear with half-pixel centres, in double. */
/* Bilinear sampling of the centred crop of the output's aspect ratio. */
static double ref_bilinear(const uint8_t *p, int ih, int iw, int ic, int ch, int oh,
                           int ow, int i, int j)
{
    int cy = ih, cx = iw, oy = 0, ox = 0;
    if ((double)iw / ih > (double)ow / oh) {
        cx = (int)floor((double)ih * ow / oh + 0.5);
        ox = (iw - cx) / 2;
    } else if ((double)iw / ih < (double)ow / oh) {
        cy = (int)floor((double)iw * oh / ow + 0.5);
        oy = (ih - cy) / 2;
    }
    double sy = (i + 0.5) * cy / oh - 0.5, sx = (j + 0.5) * cx / ow - 0.5;
    sy = sy < 0 ? 0 : sy > cy - 1 ? cy - 1 : sy;
    sx = sx < 0 ? 0 : sx > cx - 1 ? cx - 1 : sx;
    int y0 = (int)sy, x0 = (int)sx;
    int y1 = y0 + 1 < cy ? y0 + 1 : y0, x1 = x0 + 1 < cx ? x0 + 1 : x0;
    double ty = sy - y0, tx = sx - x0;
    y0 += oy, y1 += oy, x0 += ox, x1 += ox;
#define PX(y, x) ((double)p[((y) * iw + (x)) * ic + ch])
    double top = PX(y0, x0) * (1 - tx) + PX(y0, x1) * tx;
    double bot = PX(y1, x0) * (1 - tx) + PX(y1, x1) * tx;
#undef PX
    return top * (1 - ty) + bot * ty;
}

static void test_image_png(void **st)
{
    (void)st;
    enum { IH = 5, IW = 7 };
    uint8_t rgb[IH * IW * 3];
    for (int i = 0; i < IH * IW * 3; i++)
        rgb[i] = (uint8_t)((i * 37) % 256);
    char path[4200];
    snprintf(path, sizeof(path), "%s/img.png", case_dir("image"));
    assert_int_not_equal(stbi_write_png(path, IW, IH, 3, rgb, IW * 3), 0);

    dsv_tensor t = {0};
    TU_OK(dsv_image_load(path, 3, IH, IW, &t)); /* same size: exact, planar */
    assert_int_equal(t.dtype, DSV_U8);
    assert_int_equal(t.shape[0], 3);
    const uint8_t *o = t.data;
    for (int ch = 0; ch < 3; ch++)
        for (int k = 0; k < IH * IW; k++)
            assert_int_equal(o[ch * IH * IW + k], rgb[k * 3 + ch]);
    dsv_tensor_free(&t);

    TU_OK(dsv_image_load(path, 1, IH, IW, &t)); /* luminance */
    o = t.data;
    for (int k = 0; k < IH * IW; k++) {
        double l = 0.299 * rgb[3 * k] + 0.587 * rgb[3 * k + 1] + 0.114 * rgb[3 * k + 2];
        assert_true(abs((int)o[k] - (int)(l + 0.5)) <= 1);
    }
    dsv_tensor_free(&t);

    const int sizes[2][2] = {{11, 16}, {3, 2}}; /* up and down */
    for (int s = 0; s < 2; s++) {
        int oh = sizes[s][0], ow = sizes[s][1];
        TU_OK(dsv_image_load(path, 3, oh, ow, &t));
        o = t.data;
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double r = ref_bilinear(rgb, IH, IW, 3, ch, oh, ow, i, j);
                    int got = o[(ch * oh + i) * ow + j];
                    if (fabs(got - r) > 0.51)
                        fail_msg("ch %d (%d, %d): %d vs %.3f", ch, i, j, got, r);
                }
        dsv_tensor_free(&t);
    }
    /* another aspect ratio is cropped, not squashed: the middle 4x4 of a 4x8
       image comes out unchanged */
    uint8_t wide[4 * 8], sq[16];
    for (int k = 0; k < 32; k++)
        wide[k] = (uint8_t)(k * 7);
    TU_OK(dsv_image_convert(wide, 4, 8, 1, 1, 4, 4, sq));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            assert_int_equal(sq[i * 4 + j], wide[i * 8 + 2 + j]);
    /* a 1x2 image doubled: the middle pixels interpolate 1/4 and 3/4 */
    uint8_t two[2] = {0, 200}, out[4];
    TU_OK(dsv_image_convert(two, 1, 2, 1, 1, 1, 4, out));
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 50);
    assert_int_equal(out[2], 150);
    assert_int_equal(out[3], 200);
    expect_error(dsv_image_convert(two, 1, 2, 1, 2, 1, 4, out), DSV_INVALID, "channels", NULL);
}

static void test_image_corrupt(void **st)
{
    (void)st;
    char path[4200];
    snprintf(path, sizeof(path), "%s/bad.png", case_dir("image_bad"));
    const char junk[] = "\x89PNG\r\n\x1a\n this is not a png at all";
    assert_int_equal(gen_write(path, junk, sizeof(junk)), 0);
    dsv_tensor t = {0};
    expect_error(dsv_image_load(path, 3, 8, 8, &t), DSV_CORRUPT, path, NULL);
    assert_null(t.data);
    /* a real PNG cut in half */
    uint8_t rgb[16 * 16 * 3];
    for (int i = 0; i < (int)sizeof(rgb); i++)
        rgb[i] = (uint8_t)(i * 7919 % 251);
    snprintf(path, sizeof(path), "%s/cut.png", dirbuf);
    assert_int_not_equal(stbi_write_png(path, 16, 16, 3, rgb, 48), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    expect_error(dsv_image_load(path, 3, 8, 8, &t), DSV_CORRUPT, path, NULL);
    snprintf(path, sizeof(path), "%s/none.png", dirbuf);
    expect_error(dsv_image_load(path, 3, 8, 8, &t), DSV_IO, path, NULL);
    expect_error(dsv_image_load(path, 2, 8, 8, &t), DSV_INVALID, NULL, NULL);
}

static void test_fashion_mnist_real(void **st)
{
    (void)st;
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &sb) != 0)
        skip();
    dsv_dataset ds;
    TU_OK(dsv_dataset_load(&ds, "fashion-mnist:/usr/share/datasets/fashion-mnist", NULL));
    assert_int_equal(ds.train.n, 59000);
    assert_int_equal(ds.val.n, 1000);
    assert_int_equal(ds.test.n, 10000);
    assert_int_equal(ds.train.h, 28);
    assert_int_equal(ds.train.w, 28);
    dsv_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cifar_small),
        cmocka_unit_test(test_cifar_official_counts),
        cmocka_unit_test(test_cifar_truncated),
        cmocka_unit_test(test_cifar_oversized),
        cmocka_unit_test(test_cifar_bad_label_and_missing),
        cmocka_unit_test(test_cifar_load_peak),
        cmocka_unit_test(test_idx_gz_and_raw),
        cmocka_unit_test(test_idx_malformed),
        cmocka_unit_test(test_idx_gz_corrupt_and_missing),
        cmocka_unit_test(test_split_batch),
        cmocka_unit_test(test_split_batch_float),
        cmocka_unit_test(test_image_png),
        cmocka_unit_test(test_image_corrupt),
        cmocka_unit_test(test_fashion_mnist_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
