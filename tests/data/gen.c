/*
 * Generated datasets for the data tests (see gen.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "gen.h"

int gen_label(int f, int64_t i)
{
    return (int)((i * 3 + f) % 10);
}

uint8_t gen_pixel(int f, int64_t i, int64_t k)
{
    uint64_t h = (uint64_t)(f * 1000003 + i * 7919 + k * 31);
    h ^= h >> 7;
    return (uint8_t)(h % 56 + 20 * gen_label(f, i));
}

int gen_write(const char *path, const void *buf, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t w = fwrite(buf, 1, n, fp);
    return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

const char *gen_dir(const char *dir)
{
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        mkdir(parent, 0777);
    }
    mkdir(dir, 0777);
    return dir;
}

int gen_cifar(const char *dir, const int64_t counts[6])
{
    static const char *const names[6] = {
        "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
    };
    char path[4096];
    for (int f = 0; f < 6; f++) {
        size_t n = (size_t)counts[f] * 3073;
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
            return -1;
        for (int64_t i = 0; i < counts[f]; i++) {
            uint8_t *r = buf + i * 3073;
            r[0] = (uint8_t)gen_label(f, i);
            for (int64_t k = 0; k < 3072; k++)
                r[1 + k] = gen_pixel(f, i, k);
        }
        snprintf(path, sizeof(path), "%s/%s", dir, names[f]);
        int rc = gen_write(path, buf, n);
        free(buf);
        if (rc)
            return rc;
    }
    const char *meta = "c0\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\n\n";
    snprintf(path, sizeof(path), "%s/batches.meta.txt", dir);
    return gen_write(path, meta, strlen(meta));
}

static int write_maybe_gz(const char *path, const uint8_t *buf, size_t n, int gz)
{
    if (!gz)
        return gen_write(path, buf, n);
    char p[4200];
    snprintf(p, sizeof(p), "%s.gz", path);
    gzFile g = gzopen(p, "wb");
    if (!g)
        return -1;
    int w = gzwrite(g, buf, (unsigned)n);
    return (gzclose(g) == Z_OK && (size_t)w == n) ? 0 : -1;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

int gen_idx(const char *dir, const char *prefix, int f, int64_t n, int h, int w,
            int gz)
{
    /* (the path buffer leaves room for the ".gz" suffix added later) */
    size_t row = (size_t)h * w, in = 16 + (size_t)n * row, ln = 8 + (size_t)n;
    uint8_t *img = malloc(in), *lab = malloc(ln);
    if (!img || !lab) {
        free(img);
        free(lab);
        return -1;
    }
    put32(img, 0x803);
    put32(img + 4, (uint32_t)n);
    put32(img + 8, (uint32_t)h);
    put32(img + 12, (uint32_t)w);
    put32(lab, 0x801);
    put32(lab + 4, (uint32_t)n);
    for (int64_t i = 0; i < n; i++) {
        lab[8 + i] = (uint8_t)gen_label(f, i);
        for (size_t k = 0; k < row; k++)
            img[16 + i * row + k] = gen_pixel(f, i, (int64_t)k);
    }
    char path[4000];
    snprintf(path, sizeof(path), "%s/%s-images-idx3-ubyte", dir, prefix);
    int rc = write_maybe_gz(path, img, in, gz);
    snprintf(path, sizeof(path), "%s/%s-labels-idx1-ubyte", dir, prefix);
    if (!rc)
        rc = write_maybe_gz(path, lab, ln, gz);
    free(img);
    free(lab);
    return rc;
}
