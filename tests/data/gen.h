/*
 * Small generated datasets for the data tests: CIFAR-10 batches and IDX files
 * with deterministic contents, written under the scratch directory.
 */
#ifndef DSV_TEST_GEN_H
#define DSV_TEST_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Pixel k of record i of file f (the generator's formula; tests recompute it).
 * Images of class l are brighter by 20 * l so a model can learn them. */
uint8_t gen_pixel(int f, int64_t i, int64_t k);
int gen_label(int f, int64_t i);

/* Writes bytes to path; returns 0 on success. */
int gen_write(const char *path, const void *buf, size_t n);
/* Makes dir (and its parent) if missing; returns dir. */
const char *gen_dir(const char *dir);

/* CIFAR batches data_batch_1..5.bin, test_batch.bin in dir with counts[f]
 * records each (f = 5 is the test file), and batches.meta.txt. */
int gen_cifar(const char *dir, const int64_t counts[6]);

/* IDX pair PREFIX-images-idx3-ubyte / PREFIX-labels-idx1-ubyte (f selects the
 * formula's file index), n images of h x w; gz = 1 writes NAME.gz. */
int gen_idx(const char *dir, const char *prefix, int f, int64_t n, int h, int w,
            int gz);

#endif
