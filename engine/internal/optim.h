/*
 * The optimizer's check before a step, as the Solver uses it: one pass over
 * the gradients, parameters and state that says what would go wrong, so that
 * the gradients need no separate scan for NaN and Inf. Not installed.
 */
#ifndef DSV_INTERNAL_OPTIM_H
#define DSV_INTERNAL_OPTIM_H

#include "dasecv/solver.h"

enum {
    DSV_OPTIM_BAD_GRAD = 1u,   /* a gradient is NaN or Inf */
    DSV_OPTIM_BAD_UPDATE = 2u, /* a new parameter or state value would be */
};

/* What dsv_optimizer_step would meet with these gradients: 0 when every
 * gradient and every value it would write is finite, else the DSV_OPTIM_BAD_*
 * bits that hold. Writes nothing. */
unsigned dsv_optimizer_check(dsv_optimizer *o, const void *params, const void *grads);

/* From now on the step (and the check) reads the gradients of the nranges
 * ranges [ranges[2k], ranges[2k+1]) of the block (ascending, not overlapping)
 * as grad + reg * w, the L2 term dsv_l2_apply would have added, with the
 * same bits. reg 0 or no ranges: as stored. The ranges are copied. */
dsv_status dsv_optimizer_set_l2(dsv_optimizer *o, double reg, const int64_t *ranges,
                                int nranges);

#endif
