/*
 * Generated image sets for the solver tests: k classes, each a fixed random
 * pattern plus per-image noise, as uint8 (n, c, h, w). No files needed.
 */
#ifndef DSV_SOLVER_DATA_H
#define DSV_SOLVER_DATA_H

#include "testutil.h"

typedef struct gen_data {
    dsv_split s;
    uint8_t *images;
    int32_t *labels;
} gen_data;

/* noise: standard deviation in pixel units around the class pattern. */
static inline gen_data gen_make(int64_t n, int c, int h, int w, int k, uint64_t seed,
                                double noise)
{
    gen_data g = {0};
    int64_t row = (int64_t)c * h * w;
    g.images = malloc((size_t)(n * row));
    g.labels = malloc((size_t)n * sizeof(int32_t));
    uint8_t *pattern = malloc((size_t)(k * row));
    assert_non_null(g.images);
    assert_non_null(g.labels);
    assert_non_null(pattern);
    tu_rng r = {seed};
    for (int64_t i = 0; i < k * row; i++)
        pattern[i] = (uint8_t)(tu_uniform(&r) * 256);
    for (int64_t i = 0; i < n; i++) {
        int32_t y = (int32_t)(tu_next(&r) % (uint64_t)k);
        g.labels[i] = y;
        for (int64_t j = 0; j < row; j++) {
            double v = pattern[y * row + j] + noise * tu_normal(&r);
            g.images[i * row + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(pattern);
    g.s = (dsv_split){.n = n, .c = c, .h = h, .w = w, .images = g.images,
                      .labels = g.labels, .mean = NULL, .scale = 1.0f / 255.0f};
    return g;
}

static inline void gen_free(gen_data *g)
{
    free(g->images);
    free(g->labels);
    g->images = NULL;
    g->labels = NULL;
}

#endif
