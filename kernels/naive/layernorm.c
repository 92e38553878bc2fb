/*
 * Naive layer normalization, the course's layernorm_forward / _backward:
 * x (N, D), statistics per row (biased variance), gamma/beta (D). Train and
 * test mode behave the same.
 *
 * Layernorm is group normalization with one group of D channels of one
 * element each, so both directions run the groupnorm core (groupnorm.c) on
 * x viewed as (N, 1, D, 1); keeping one implementation keeps them in step.
 */
#include <stdbool.h>

#include "naive.h"

dsv_status dsv_naive_layernorm_forward(dsv_call *c)
{
    return dsv_naive_groupnorm_run(c, false, c->x->shape[0], 1, c->x->shape[1], 1);
}

dsv_status dsv_naive_layernorm_backward(dsv_call *c)
{
    return dsv_naive_groupnorm_run(c, true, c->x->shape[0], 1, c->x->shape[1], 1);
}
