/*
 * Naive inverted dropout, p = probability of KEEPING a unit.
 *
 * Train: out = x * mask, mask = (u < p) / p, with u = dsv_dropout_uniform(seed,
 * row0 * row_size + i): the mask depends only on the seed and the element's
 * index in the whole batch, so backward regenerates it and a batch split
 * across threads (row0 > 0) gives the same mask as the whole batch.
 * Test: identity in both directions.
 */
#ifndef T
#include <string.h>

#include "naive.h"
#include "internal/rng.h"

#define T float
#define SFX f32
#include "dropout.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "dropout.c"
#undef T
#undef SFX

DSV_NAIVE_DISPATCH(dropout_forward)
DSV_NAIVE_DISPATCH(dropout_backward)

#else

/* dst = src * mask (or a copy in test mode); used for both directions. */
static void TN(dropout_apply)(const dsv_call *c, const T *src, T *dst)
{
    const int64_t n = dsv_tensor_numel(c->x);
    if (!c->p.train) {
        if (dst != src)
            memmove(dst, src, sizeof(T) * (size_t)n);
        return;
    }
    const double p = c->p.p;
    const T scale = (T)(1.0 / p);
    const uint64_t base = (uint64_t)c->p.row0 * (uint64_t)dsv_tensor_row_size(c->x);
    for (int64_t i = 0; i < n; i++)
        dst[i] = dsv_dropout_uniform(c->p.seed, base + (uint64_t)i) < p
                     ? src[i] * scale
                     : 0;
}

static dsv_status TN(dropout_forward)(dsv_call *c)
{
    TN(dropout_apply)(c, c->x->data, c->out->data);
    return DSV_OK;
}

static dsv_status TN(dropout_backward)(dsv_call *c)
{
    if (c->dx)
        TN(dropout_apply)(c, c->dout->data, c->dx->data);
    return DSV_OK;
}

#endif
