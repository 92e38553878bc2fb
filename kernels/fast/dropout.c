/*
 * Inverted dropout for the fast backend, p = probability of KEEPING a unit.
 *
 * The mask must be bit-identical to the naive kernel's, so the keep decision
 * is the naive backend's dsv_dropout_uniform(seed, row0 * row_size + i), a
 * pure function of the element's index in the whole batch: any split among
 * threads gives the same mask. Test mode is the identity.
 */
#include <string.h>

#include "../naive/naive.h"
#include "fast.h"

enum { PAR_MIN = 1 << 14 };

/* dst = src * mask (a copy in test mode); both directions use it. */
static void apply(const dsv_call *c, const float *src, float *dst)
{
    int64_t n = dsv_tensor_numel(c->x);
    if (!c->p.train) {
        if (dst != src)
            memmove(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    double p = c->p.p;
    float scale = (float)(1.0 / p);
    uint64_t base = (uint64_t)c->p.row0 * (uint64_t)dsv_tensor_row_size(c->x);
    uint64_t seed = c->p.seed;
    int nt = dsv_fast_nthreads(c);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = dsv_dropout_uniform(seed, base + (uint64_t)i) < p ? src[i] * scale
                                                                  : 0.0f;
}

dsv_status dsv_fast_dropout_forward(dsv_call *c)
{
    apply(c, c->x->data, c->out->data);
    return DSV_OK;
}

dsv_status dsv_fast_dropout_backward(dsv_call *c)
{
    if (c->dx)
        apply(c, c->dout->data, c->dx->data);
    return DSV_OK;
}
