/*
 * Layer normalization for the fast backend: x (N, D) normalised per row,
 * per-feature gamma/beta. It is group normalization with one group of D
 * channels of one element each, so it runs groupnorm.c's core.
 */
#include "fast.h"

dsv_status dsv_fast_layernorm_forward(dsv_call *c)
{
    return dsv_fast_groupnorm_run(c, false, c->x->shape[0], 1, c->x->shape[1], 1);
}

dsv_status dsv_fast_layernorm_backward(dsv_call *c)
{
    return dsv_fast_groupnorm_run(c, true, c->x->shape[0], 1, c->x->shape[1], 1);
}
