/*
 * Datasets: CIFAR-10 (official binary layout) and MNIST-format IDX files.
 *
 * Images stay uint8 in memory, (n, C, H, W); a batch is gathered and converted
 * to float on demand, with the training split's mean image subtracted and the
 * result scaled. Loaders check every size against the file before reading it:
 * a truncated, oversized or malformed file is DSV_CORRUPT naming the file.
 */
#ifndef DASECV_DATA_H
#define DASECV_DATA_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One split (train, val or test). Owns nothing: the dsv_dataset does (or
 * the caller, for a split it fills in itself). */
typedef struct dsv_split {
    int64_t n;
    int c, h, w;
    const uint8_t *images; /* (n, c, h, w) */
    const int32_t *labels; /* (n) */
    const float *mean;     /* (c, h, w) subtracted on conversion; NULL: none */
    float scale;           /* applied after the subtraction (1 = raw 0..255) */
    /* Instead of images (which must then be NULL): pixels already in float,
       (n, c, h, w) of dtype fdtype (DSV_F32 or DSV_F64), preprocessed by the
       caller: mean and scale are not applied. A batch converts them to the
       dtype asked for (float64 to float32 rounds). The Python binding feeds
       its numpy arrays to the Solver this way. */
    const void *fimages;
    dsv_dtype fdtype;
} dsv_split;

/* Gathers rows idx[0..count) (NULL idx: rows 0..count) into x (count, c, h, w)
 * of dtype float32/float64 and y int32 (count); x and y are allocated here
 * when their data is NULL, else must already have the right shape. A split
 * needs images or fimages (not both). */
DSV_API dsv_status dsv_split_batch(const dsv_split *s, const int64_t *idx,
                           int64_t count, dsv_tensor *x, dsv_tensor *y,
                           dsv_dtype dtype);

typedef struct dsv_dataset {
    char name[32];        /* "cifar10", "fashion-mnist", "mnist" */
    int num_classes;
    char class_names[10][32];
    dsv_split train, val, test;
    /* storage */
    uint8_t *images;      /* every split's images, one block */
    int32_t *labels;
    float *mean;
} dsv_dataset;

typedef struct dsv_data_options {
    int64_t num_train;    /* CIFAR: 49000; MNIST: 59000 (0 = default) */
    int64_t num_val;      /* 1000 */
    int64_t num_test;     /* 1000 for CIFAR, as the course; 10000 MNIST */
    int subtract_mean;    /* 1 (default) */
} dsv_data_options;

DSV_API dsv_data_options dsv_data_options_default(void);

/* spec: "cifar10:DIR" (the official batches, exactly 10000 records each),
 * "cifar10-custom:DIR" (the same format, 1 to 10000 records per file),
 * "fashion-mnist" (Debian's /usr/share/datasets/fashion-mnist),
 * "fashion-mnist:DIR", "mnist:DIR". Split sizes of 0 take the defaults; see
 * data.c for the split rule. */
DSV_API dsv_status dsv_dataset_load(dsv_dataset *ds, const char *spec,
                            const dsv_data_options *opt);
/* DSV_INVALID (with the message dsv_dataset_load would give) when spec is not
 * of one of those forms; nothing is read. For checking options up front. */
DSV_API dsv_status dsv_dataset_spec_check(const char *spec);
DSV_API void dsv_dataset_free(dsv_dataset *ds);

/* Directory of the default "fashion-mnist" spec: $DASECV_FASHION_MNIST_DIR if
 * set, else Debian's /usr/share/datasets/fashion-mnist. Static string. */
DSV_API const char *dsv_fashion_mnist_dir(void);

#ifdef __cplusplus
}
#endif
#endif
