/*
 * Inverted dropout for the fast backend, p = probability of KEEPING a unit.
 *
 * The mask must be bit-identical to the naive kernel's, so the keep decision
 * is dsv_dropout_uniform(seed, row0 * row_size + i) from ops.h, a
 * pure function of the element's index in the whole batch: any split among
 * threads gives the same mask. Test mode is the identity.
 */
#include <string.h>

#include <omp.h>

#include "fast.h"
#include "internal/rng.h"

enum { PAR_MIN = 1 << 14 };

typedef struct mask_args {
    const float *src;
    float *dst;
    double p;
    float scale;
    uint64_t seed, base;
} mask_args;

static void mask_range(const mask_args *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++)
        a->dst[i] = dsv_dropout_uniform(a->seed, a->base + (uint64_t)i) < a->p
                        ? a->src[i] * a->scale
                        : 0.0f;
}

/* dst = src * mask (a copy in test mode); both directions use it. */
static void apply(const dsv_call *c, const float *src, float *dst)
{
    int64_t n = dsv_tensor_numel(c->x);
    if (!c->p.train) {
        if (dst != src)
            memmove(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    mask_args a = {src, dst, c->p.p, (float)(1.0 / c->p.p), c->p.seed,
                   (uint64_t)c->p.row0 * (uint64_t)dsv_tensor_row_size(c->x)};
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && n >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t i0, i1;
            dsv_fast_share(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            mask_range(&a, i0, i1);
        }
    } else {
        mask_range(&a, 0, n);
    }
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
