/*
 * Datasets: CIFAR-10 binary batches and MNIST-format IDX files (gzip or not).
 *
 * Every split's images live in one uint8 block (n, C, H, W) owned by the
 * dsv_dataset; splits are views into it. Conversion to float happens per batch
 * in dsv_split_batch. What must stay true: nothing is read before its size has
 * been checked against the file (a truncated, oversized or malformed file is
 * DSV_CORRUPT naming the file and the problem), and loading is deterministic
 * (shuffling is the Solver's job).
 *
 * Split rule, for both formats: the training files' records are concatenated;
 * validation is their LAST num_val records (default min(1000, total / 10));
 * training is the FIRST num_train records of the rest (default all of it,
 * i.e. 49000 for CIFAR-10 and 59000 for MNIST). The mean image is computed over
 * all of the rest (the course's X_train), whatever num_train is, so a run on a
 * few images (the course's overfitting check) subtracts the same mean as a full
 * run and as `dasecv predict`. Test is the first num_test records of the test
 * file (default 1000 for CIFAR-10, as the course; all for MNIST).
 *
 * "cifar10:DIR" requires the official files, exactly 10000 records each, so
 * that a batch cut at a record boundary (a partial copy or download) is not
 * taken for the data set; "cifar10-custom:DIR" accepts 1 to 10000 records per
 * file for data sets of one's own in the same format. IDX files carry their
 * counts in their headers and are checked against them.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "dasecv/data.h"

#define CIFAR_RECORD 3073
#define CIFAR_PIXELS 3072
#define CIFAR_MAX_RECORDS 10000 /* per file, as the official batches */
#define CIFAR_DEF_TEST 1000     /* test split by default: the course's first 1000 */
#define IDX_MAX_SIDE 4096
#define IDX_MAX_BYTES ((int64_t)1 << 32)

static const char *const cifar_names[10] = {
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
};
static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

dsv_data_options dsv_data_options_default(void)
{
    return (dsv_data_options){
        .num_train = 0, .num_val = 0, .num_test = 0, .subtract_mean = 1,
    };
}

/* ---- dsv_split_batch ------------------------------------------------------ */

static dsv_status prepare_out(dsv_tensor *t, dsv_dtype dtype, int ndim,
                              const int64_t *shape, const char *what)
{
    if (!t->data)
        return dsv_tensor_init(t, dtype, ndim, shape);
    dsv_tensor ref = dsv_tensor_wrap(t->data, dtype, ndim, shape);
    if (t->dtype != dtype || t->shape[0] != shape[0] ||
        dsv_tensor_numel(t) != dsv_tensor_numel(&ref)) {
        char a[64], b[64];
        return dsv_error(DSV_INVALID, "split_batch: %s is %s %s, expected %s %s",
                         what, dsv_dtype_name(t->dtype),
                         dsv_tensor_shape_str(t, a, sizeof(a)),
                         dsv_dtype_name(dtype), dsv_tensor_shape_str(&ref, b, sizeof(b)));
    }
    return DSV_OK;
}

/* Rows of a float split into dst (count, row) of dtype: copies when the
 * dtypes agree, else a per-value conversion. */
static void gather_float(const dsv_split *s, const int64_t *idx, int64_t count,
                         int64_t row, void *dst, dsv_dtype dtype)
{
    const size_t es = dsv_dtype_size(dtype);
    for (int64_t i = 0; i < count; i++) {
        int64_t r = idx ? idx[i] : i;
        if (s->fdtype == dtype) {
            memcpy((char *)dst + (size_t)(i * row) * es,
                   (const char *)s->fimages + (size_t)(r * row) * es, (size_t)row * es);
        } else if (dtype == DSV_F32) {
            const double *src = (const double *)s->fimages + r * row;
            float *d = (float *)dst + i * row;
            for (int64_t k = 0; k < row; k++)
                d[k] = (float)src[k];
        } else {
            const float *src = (const float *)s->fimages + r * row;
            double *d = (double *)dst + i * row;
            for (int64_t k = 0; k < row; k++)
                d[k] = src[k];
        }
    }
}

dsv_status dsv_split_batch(const dsv_split *s, const int64_t *idx,
                           int64_t count, dsv_tensor *x, dsv_tensor *y,
                           dsv_dtype dtype)
{
    if (!s || !x || !y)
        return dsv_error(DSV_INVALID, "split_batch: missing split or output");
    if (dtype != DSV_F32 && dtype != DSV_F64)
        return dsv_error(DSV_INVALID, "split_batch: dtype must be float32 or float64, got %s",
                         dsv_dtype_name(dtype));
    if (!s->images == !s->fimages)
        return dsv_error(DSV_INVALID, "split_batch: the split needs either uint8 images "
                         "or float images, not %s", s->images ? "both" : "neither");
    if (s->fimages && s->fdtype != DSV_F32 && s->fdtype != DSV_F64)
        return dsv_error(DSV_INVALID, "split_batch: float images must be float32 or "
                         "float64, got %s", dsv_dtype_name(s->fdtype));
    if (count < 1 || (!idx && count > s->n))
        return dsv_error(DSV_INVALID, "split_batch: %lld rows asked of a split of %lld",
                         (long long)count, (long long)s->n);
    for (int64_t i = 0; idx && i < count; i++)
        if (idx[i] < 0 || idx[i] >= s->n)
            return dsv_error(DSV_INVALID, "split_batch: index %lld is outside [0, %lld)",
                             (long long)idx[i], (long long)s->n);

    int64_t xs[4] = {count, s->c, s->h, s->w}, ys[1] = {count};
    bool own_x = !x->data;
    dsv_status st = prepare_out(x, dtype, 4, xs, "x");
    if (st)
        return st;
    if ((st = prepare_out(y, DSV_I32, 1, ys, "y"))) {
        if (own_x)
            dsv_tensor_free(x);
        return st;
    }

    const int64_t row = (int64_t)s->c * s->h * s->w;
    const float scale = s->scale;
    int32_t *yd = y->data;
    if (s->fimages) {
        gather_float(s, idx, count, row, x->data, dtype);
        for (int64_t i = 0; i < count; i++)
            yd[i] = s->labels ? s->labels[idx ? idx[i] : i] : 0;
        return DSV_OK;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t r = idx ? idx[i] : i;
        const uint8_t *src = s->images + r * row;
        yd[i] = s->labels ? s->labels[r] : 0;
        /* (pixel - mean) * scale in float, as the course does in float32;
           the float64 path widens the same float value. */
        if (dtype == DSV_F32) {
            float *dst = (float *)x->data + i * row;
            for (int64_t k = 0; k < row; k++)
                dst[k] = ((float)src[k] - (s->mean ? s->mean[k] : 0.0f)) * scale;
        } else {
            double *dst = (double *)x->data + i * row;
            for (int64_t k = 0; k < row; k++)
                dst[k] = (double)(((float)src[k] - (s->mean ? s->mean[k] : 0.0f)) * scale);
        }
    }
    return DSV_OK;
}

/* ---- file helpers --------------------------------------------------------- */

static void join(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- split assembly (shared by both formats) ------------------------------ */

/* Picks the split sizes from the options and the record counts (see the top
 * of the file) and points the splits into the dataset's block, which holds
 * n_trainfile training records followed by n_testfile test records. */
static dsv_status assign_splits(dsv_dataset *ds, const dsv_data_options *opt,
                                int64_t n_trainfile, int64_t n_testfile,
                                int64_t def_train, int64_t def_test, int c,
                                int h, int w)
{
    int64_t nval = opt->num_val;
    if (nval < 0 || opt->num_train < 0 || opt->num_test < 0)
        return dsv_error(DSV_INVALID, "%s: split sizes must not be negative", ds->name);
    if (nval == 0)
        nval = n_trainfile / 10 < 1000 ? n_trainfile / 10 : 1000;
    if (nval < 1)
        nval = 1;
    if (nval >= n_trainfile)
        return dsv_error(DSV_INVALID,
                         "%s: %lld validation images asked, the training files hold %lld",
                         ds->name, (long long)nval, (long long)n_trainfile);
    int64_t rest = n_trainfile - nval;
    int64_t ntrain = opt->num_train;
    if (ntrain == 0)
        ntrain = rest < def_train ? rest : def_train;
    if (ntrain > rest)
        return dsv_error(DSV_INVALID,
                         "%s: %lld training images asked, only %lld remain after %lld for validation",
                         ds->name, (long long)ntrain, (long long)rest, (long long)nval);
    int64_t ntest = opt->num_test;
    if (ntest == 0)
        ntest = n_testfile < def_test ? n_testfile : def_test;
    if (ntest > n_testfile)
        return dsv_error(DSV_INVALID, "%s: %lld test images asked, the test file holds %lld",
                         ds->name, (long long)ntest, (long long)n_testfile);

    const int64_t row = (int64_t)c * h * w;
    if (opt->subtract_mean) {
        ds->mean = malloc(sizeof(float) * (size_t)row);
        double *acc = calloc((size_t)row, sizeof(double));
        if (!ds->mean || !acc) {
            free(acc);
            return dsv_error(DSV_NOMEM, "%s: no memory for the mean image", ds->name);
        }
        for (int64_t i = 0; i < rest; i++) {
            const uint8_t *p = ds->images + i * row;
            for (int64_t k = 0; k < row; k++)
                acc[k] += p[k];
        }
        for (int64_t k = 0; k < row; k++)
            ds->mean[k] = (float)(acc[k] / (double)rest);
        free(acc);
    }
    dsv_split base = {.c = c, .h = h, .w = w, .mean = ds->mean, .scale = 1.0f};
    ds->train = base;
    ds->train.n = ntrain;
    ds->train.images = ds->images;
    ds->train.labels = ds->labels;
    ds->val = base;
    ds->val.n = nval;
    ds->val.images = ds->images + rest * row;
    ds->val.labels = ds->labels + rest;
    ds->test = base;
    ds->test.n = ntest;
    ds->test.images = ds->images + n_trainfile * row;
    ds->test.labels = ds->labels + n_trainfile;
    return DSV_OK;
}

static dsv_status alloc_block(dsv_dataset *ds, int64_t n, int64_t row)
{
    ds->images = malloc((size_t)(n * row));
    ds->labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!ds->images || !ds->labels)
        return dsv_error(DSV_NOMEM, "%s: no memory for %lld images", ds->name, (long long)n);
    return DSV_OK;
}

/* ---- CIFAR-10 ------------------------------------------------------------- */

static const char *const cifar_files[6] = {
    "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
    "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
};

/* Record count of one batch file from its size. */
static dsv_status cifar_count(const char *path, int64_t *n)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dsv_error(DSV_IO, "%s: cannot open: %s (expected the CIFAR-10 binary "
                         "batches data_batch_1..5.bin and test_batch.bin)",
                         path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return dsv_error(DSV_IO, "%s: not a regular file", path);
    if (st.st_size == 0)
        return dsv_error(DSV_CORRUPT, "%s: empty file", path);
    if (st.st_size % CIFAR_RECORD != 0)
        return dsv_error(DSV_CORRUPT,
                         "%s: %lld bytes is not a multiple of the 3073-byte record "
                         "(truncated or not a CIFAR-10 batch)",
                         path, (long long)st.st_size);
    if (st.st_size / CIFAR_RECORD > CIFAR_MAX_RECORDS)
        return dsv_error(DSV_CORRUPT, "%s: %lld records, more than the %d of a CIFAR-10 batch",
                         path, (long long)(st.st_size / CIFAR_RECORD), CIFAR_MAX_RECORDS);
    *n = st.st_size / CIFAR_RECORD;
    return DSV_OK;
}

/* Records per read: a small buffer, so that loading never holds a whole file
 * next to the image block (a 30 MB malloc would also stay in the heap after
 * its free, raising the peak resident size by as much). */
enum { CIFAR_CHUNK = 256 };

/* Reads the n records of a file, checking every label, and keeps the first
 * keep (<= n) in images/labels; the size was checked by cifar_count, but the
 * file is re-checked as read in case it changed meanwhile. */
static dsv_status cifar_read(const char *path, int64_t n, int64_t keep, uint8_t *images,
                             int32_t *labels)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    dsv_status s = DSV_OK;
    uint8_t *buf = malloc((size_t)CIFAR_CHUNK * CIFAR_RECORD);
    struct stat st;
    if (!buf) {
        s = dsv_error(DSV_NOMEM, "%s: no memory for a read buffer", path);
        goto out;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size != n * CIFAR_RECORD) {
        s = dsv_error(DSV_CORRUPT, "%s: size changed while reading (%lld bytes)", path,
                      (long long)st.st_size);
        goto out;
    }
    for (int64_t i0 = 0; i0 < n; i0 += CIFAR_CHUNK) {
        const int64_t m = n - i0 < CIFAR_CHUNK ? n - i0 : CIFAR_CHUNK;
        if (fread(buf, CIFAR_RECORD, (size_t)m, f) != (size_t)m) {
            s = dsv_error(DSV_IO, "%s: read failed", path);
            goto out;
        }
        for (int64_t j = 0; j < m; j++) {
            const uint8_t *r = buf + j * CIFAR_RECORD;
            const int64_t i = i0 + j;
            if (r[0] > 9) {
                s = dsv_error(DSV_CORRUPT, "%s: record %lld has label %d, outside 0..9",
                              path, (long long)i, r[0]);
                goto out;
            }
            if (i < keep) {
                labels[i] = r[0];
                memcpy(images + i * CIFAR_PIXELS, r + 1, CIFAR_PIXELS);
            }
        }
    }
out:
    free(buf);
    fclose(f);
    return s;
}

/* batches.meta.txt: one class name a line; used only when it names 10. */
static void cifar_meta(dsv_dataset *ds, const char *dir)
{
    for (int i = 0; i < 10; i++)
        snprintf(ds->class_names[i], sizeof(ds->class_names[i]), "%s", cifar_names[i]);
    char path[4096], line[256], names[10][32];
    join(path, sizeof(path), dir, "batches.meta.txt");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    int k = 0;
    while (k < 11 && fgets(line, sizeof(line), f)) {
        size_t l = strcspn(line, "\r\n");
        line[l] = '\0';
        if (l == 0)
            continue;
        if (k < 10) {
            /* names longer than 31 bytes are cut */
            size_t m = l < sizeof(names[k]) - 1 ? l : sizeof(names[k]) - 1;
            memcpy(names[k], line, m);
            names[k][m] = '\0';
        }
        k++;
    }
    fclose(f);
    if (k == 10)
        memcpy(ds->class_names, names, sizeof(names));
}

static dsv_status load_cifar(dsv_dataset *ds, const char *dir,
                             const dsv_data_options *opt, bool official)
{
    char paths[6][4096];
    int64_t counts[6], ntrain = 0;
    dsv_status s;
    for (int i = 0; i < 6; i++) {
        join(paths[i], sizeof(paths[i]), dir, cifar_files[i]);
        if ((s = cifar_count(paths[i], &counts[i])))
            return s;
        if (official && counts[i] != CIFAR_MAX_RECORDS)
            return dsv_error(DSV_CORRUPT,
                             "%s holds %lld records; an official CIFAR-10 batch holds exactly "
                             "%d (a partial copy?). For a data set of your own in this format "
                             "use cifar10-custom:DIR",
                             paths[i], (long long)counts[i], CIFAR_MAX_RECORDS);
        if (i < 5)
            ntrain += counts[i];
    }
    /* Of the test file only the test split's records are kept (the course's
       first 1000 of 10000); assign_splits checks the size asked for against
       the whole file. */
    int64_t ntest = opt->num_test > 0 ? opt->num_test : CIFAR_DEF_TEST;
    if (ntest > counts[5])
        ntest = counts[5];
    if ((s = alloc_block(ds, ntrain + ntest, CIFAR_PIXELS)))
        return s;
    int64_t at = 0;
    for (int i = 0; i < 6; i++) {
        if ((s = cifar_read(paths[i], counts[i], i < 5 ? counts[i] : ntest,
                            ds->images + at * CIFAR_PIXELS, ds->labels + at)))
            return s;
        at += counts[i];
    }
    ds->num_classes = 10;
    cifar_meta(ds, dir);
    return assign_splits(ds, opt, ntrain, counts[5], 49000, CIFAR_DEF_TEST, 3, 32, 32);
}

/* ---- MNIST-format IDX ----------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* gzread of exactly n bytes; zlib reads uncompressed files transparently. */
static dsv_status gz_exact(gzFile g, const char *path, void *buf, int64_t n,
                           const char *what)
{
    uint8_t *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1 << 30) ? 1u << 30 : (unsigned)n;
        int r = gzread(g, p, chunk);
        if (r < 0) {
            int err;
            const char *m = gzerror(g, &err);
            return dsv_error(DSV_CORRUPT, "%s: %s (%s)", path,
                             err == Z_ERRNO ? strerror(errno) : m, what);
        }
        if (r == 0)
            return dsv_error(DSV_CORRUPT, "%s: truncated: file ends inside %s", path, what);
        p += r;
        n -= r;
    }
    return DSV_OK;
}

/* Opens an IDX file: NAME.gz if present, else NAME (uncompressed). */
static dsv_status idx_open(const char *dir, const char *name, char *path,
                           size_t n, gzFile *g)
{
    char gzname[256];
    snprintf(gzname, sizeof(gzname), "%s.gz", name);
    join(path, n, dir, gzname);
    if (!file_exists(path)) {
        join(path, n, dir, name);
        if (!file_exists(path)) {
            join(path, n, dir, gzname);
            return dsv_error(DSV_IO, "%s: no such file (nor %s without .gz)", path, name);
        }
    }
    *g = gzopen(path, "rb");
    if (!*g)
        return dsv_error(DSV_IO, "%s: cannot open: %s", path, strerror(errno));
    return DSV_OK;
}

/* Reads an IDX file of unsigned bytes with ndim dimensions (3: images, 1:
 * labels); *data is malloc'ed (caller frees), dims[0] is the count. */
static dsv_status idx_read(const char *dir, const char *name, int ndim,
                           uint8_t **data, int64_t dims[3], char *path, size_t plen)
{
    gzFile g = NULL;
    dsv_status s = idx_open(dir, name, path, plen, &g);
    if (s)
        return s;
    uint8_t hdr[16];
    *data = NULL;
    if ((s = gz_exact(g, path, hdr, 4 + 4 * ndim, "the header")))
        goto close;
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08) {
        s = dsv_error(DSV_CORRUPT,
                      "%s: bad magic %02x %02x %02x %02x (expected an IDX file of "
                      "unsigned bytes: 00 00 08 %02x)",
                      path, hdr[0], hdr[1], hdr[2], hdr[3], ndim);
        goto close;
    }
    if (hdr[3] != ndim) {
        s = dsv_error(DSV_CORRUPT, "%s: %d dimensions, expected %d (%s)", path, hdr[3],
                      ndim, ndim == 3 ? "images" : "labels");
        goto close;
    }
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] < 1 || (i > 0 && dims[i] > IDX_MAX_SIDE)) {
            s = dsv_error(DSV_CORRUPT, "%s: dimension %d is %lld, out of range", path, i,
                          (long long)dims[i]);
            goto close;
        }
        total *= dims[i];
        if (total > IDX_MAX_BYTES) {
            s = dsv_error(DSV_CORRUPT, "%s: header announces more than %lld bytes", path,
                          (long long)IDX_MAX_BYTES);
            goto close;
        }
    }
    /* The buffer grows with the data actually read, so a header announcing
       gigabytes in a small file costs no more than the file. */
    int64_t cap = 0, have = 0;
    while (have < total) {
        if (have == cap) {
            int64_t ncap = cap ? cap * 2 : (int64_t)1 << 24;
            if (ncap > total)
                ncap = total;
            uint8_t *nd = realloc(*data, (size_t)ncap);
            if (!nd) {
                s = dsv_error(DSV_NOMEM, "%s: no memory for %lld bytes", path, (long long)ncap);
                goto close;
            }
            *data = nd;
            cap = ncap;
        }
        if ((s = gz_exact(g, path, *data + have, cap - have, "the data the header announces")))
            goto close;
        have = cap;
    }
    uint8_t extra;
    int r = gzread(g, &extra, 1);
    if (r != 0) {
        s = r > 0 ? dsv_error(DSV_CORRUPT, "%s: trailing bytes after the %lld the header announces",
                              path, (long long)total)
                  : dsv_error(DSV_CORRUPT, "%s: %s", path, gzerror(g, &(int){0}));
    }
close:
    if (s) {
        free(*data);
        *data = NULL;
    }
    gzclose(g);
    return s;
}

/* Images and labels of one IDX pair, appended at ds->images + at. */
static dsv_status idx_pair(const char *dir, const char *img, const char *lab,
                           uint8_t **images, int32_t **labels, int64_t *n,
                           int *h, int *w)
{
    char ipath[4096], lpath[4096];
    int64_t idims[3] = {0}, ldims[3] = {0};
    uint8_t *l = NULL;
    *images = NULL;
    *labels = NULL;
    dsv_status s = idx_read(dir, img, 3, images, idims, ipath, sizeof(ipath));
    if (s)
        return s;
    if ((s = idx_read(dir, lab, 1, &l, ldims, lpath, sizeof(lpath))))
        goto fail;
    if (idims[0] != ldims[0]) {
        s = dsv_error(DSV_CORRUPT, "%s holds %lld images but %s holds %lld labels", ipath,
                      (long long)idims[0], lpath, (long long)ldims[0]);
        goto fail;
    }
    *labels = malloc(sizeof(int32_t) * (size_t)ldims[0]);
    if (!*labels) {
        s = dsv_error(DSV_NOMEM, "%s: no memory for labels", lpath);
        goto fail;
    }
    for (int64_t i = 0; i < ldims[0]; i++) {
        if (l[i] > 9) {
            s = dsv_error(DSV_CORRUPT, "%s: label %lld is %d, outside 0..9", lpath,
                          (long long)i, l[i]);
            goto fail;
        }
        (*labels)[i] = l[i];
    }
    free(l);
    *n = idims[0];
    *h = (int)idims[1];
    *w = (int)idims[2];
    return DSV_OK;
fail:
    free(l);
    free(*images);
    free(*labels);
    *images = NULL;
    *labels = NULL;
    return s;
}

static dsv_status load_idx(dsv_dataset *ds, const char *dir,
                           const dsv_data_options *opt)
{
    uint8_t *ti = NULL, *vi = NULL;
    int32_t *tl = NULL, *vl = NULL;
    int64_t nt = 0, nv = 0;
    int h, w, h2, w2;
    dsv_status s = idx_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            &ti, &tl, &nt, &h, &w);
    if (s)
        return s;
    if ((s = idx_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &vi, &vl,
                      &nv, &h2, &w2)))
        goto out;
    if (h != h2 || w != w2) {
        s = dsv_error(DSV_CORRUPT, "%s: training images are %dx%d but test images %dx%d",
                      dir, h, w, h2, w2);
        goto out;
    }
    int64_t row = (int64_t)h * w;
    if ((s = alloc_block(ds, nt + nv, row)))
        goto out;
    memcpy(ds->images, ti, (size_t)(nt * row));
    memcpy(ds->images + nt * row, vi, (size_t)(nv * row));
    memcpy(ds->labels, tl, sizeof(int32_t) * (size_t)nt);
    memcpy(ds->labels + nt, vl, sizeof(int32_t) * (size_t)nv);
    ds->num_classes = 10;
    for (int i = 0; i < 10; i++) {
        if (strcmp(ds->name, "fashion-mnist") == 0)
            snprintf(ds->class_names[i], sizeof(ds->class_names[i]), "%s", fashion_names[i]);
        else
            snprintf(ds->class_names[i], sizeof(ds->class_names[i]), "%d", i);
    }
    s = assign_splits(ds, opt, nt, nv, 59000, 10000, 1, h, w);
out:
    free(ti);
    free(tl);
    free(vi);
    free(vl);
    return s;
}

/* ---- entry points --------------------------------------------------------- */

typedef enum spec_kind { SPEC_CIFAR, SPEC_CIFAR_CUSTOM, SPEC_FASHION, SPEC_MNIST } spec_kind;

/* The kind of a spec and its directory (NULL when none is given). */
static dsv_status parse_spec(const char *spec, spec_kind *kind, const char **dir)
{
    if (!spec || !*spec)
        return dsv_error(DSV_INVALID, "empty dataset spec");
    const char *colon = strchr(spec, ':');
    size_t kl = colon ? (size_t)(colon - spec) : strlen(spec);
    *dir = colon ? colon + 1 : NULL;
    if (*dir && !**dir)
        return dsv_error(DSV_INVALID, "dataset spec '%.200s': empty directory", spec);
    static const struct {
        const char *name;
        spec_kind kind;
        bool needs_dir;
    } kinds[] = {{"cifar10", SPEC_CIFAR, true},
                 {"cifar10-custom", SPEC_CIFAR_CUSTOM, true},
                 {"fashion-mnist", SPEC_FASHION, false},
                 {"mnist", SPEC_MNIST, true}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i].name) != kl || strncmp(spec, kinds[i].name, kl) != 0)
            continue;
        if (kinds[i].needs_dir && !*dir)
            return dsv_error(DSV_INVALID,
                             "dataset spec '%s' needs a directory: %s:DIR%s", kinds[i].name,
                             kinds[i].name,
                             kinds[i].kind == SPEC_CIFAR
                                 ? " (the unpacked cifar-10-batches-bin of "
                                   "cifar-10-binary.tar.gz)"
                                 : "");
        *kind = kinds[i].kind;
        return DSV_OK;
    }
    return dsv_error(DSV_INVALID,
                     "unknown dataset spec '%.200s' (cifar10:DIR, cifar10-custom:DIR, "
                     "fashion-mnist[:DIR], mnist:DIR)",
                     spec);
}

dsv_status dsv_dataset_spec_check(const char *spec)
{
    spec_kind kind;
    const char *dir;
    return parse_spec(spec, &kind, &dir);
}

dsv_status dsv_dataset_load(dsv_dataset *ds, const char *spec,
                            const dsv_data_options *opt)
{
    memset(ds, 0, sizeof(*ds));
    dsv_data_options def = dsv_data_options_default();
    if (!opt)
        opt = &def;
    spec_kind kind;
    const char *dir;
    dsv_status s = parse_spec(spec, &kind, &dir);
    if (s)
        return s;
    if (kind == SPEC_CIFAR || kind == SPEC_CIFAR_CUSTOM) {
        snprintf(ds->name, sizeof(ds->name), "cifar10");
        /* DIR may also be where the tarball was unpacked */
        char sub[4000], probe[4200]; /* sub + a file name fits a 4096 path */
        snprintf(sub, sizeof(sub), "%s/cifar-10-batches-bin", dir);
        snprintf(probe, sizeof(probe), "%s/data_batch_1.bin", dir);
        if (!file_exists(probe)) {
            snprintf(probe, sizeof(probe), "%s/data_batch_1.bin", sub);
            if (file_exists(probe))
                dir = sub;
        }
        s = load_cifar(ds, dir, opt, kind == SPEC_CIFAR);
    } else {
        snprintf(ds->name, sizeof(ds->name), kind == SPEC_FASHION ? "fashion-mnist" : "mnist");
        s = load_idx(ds, dir ? dir : dsv_fashion_mnist_dir(), opt);
    }
    if (s)
        dsv_dataset_free(ds);
    return s;
}

const char *dsv_fashion_mnist_dir(void)
{
    const char *d = getenv("DASECV_FASHION_MNIST_DIR");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

void dsv_dataset_free(dsv_dataset *ds)
{
    if (!ds)
        return;
    free(ds->images);
    free(ds->labels);
    free(ds->mean);
    memset(ds, 0, sizeof(*ds));
}
