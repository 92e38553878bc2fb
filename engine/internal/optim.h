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
 * bits that hold. Writes nothing. For adam, a lighter pass settles it first
 * where bounds on the state prove the step finite (optim.c); a step on the
 * same arrays, unchanged, right after a check that found nothing keeps
 * those bounds for the next check (any other step forgets them). */
unsigned dsv_optimizer_check(dsv_optimizer *o, const void *params, const void *grads);
/* The same answer without the lighter pass (tests), and how many checks the
 * lighter pass settled. */
unsigned dsv_optimizer_check_full(dsv_optimizer *o, const void *params, const void *grads);
int64_t dsv_optimizer_light_checks(const dsv_optimizer *o);

/* From now on the step (and the check) reads the gradients of the nranges
 * ranges [ranges[2k], ranges[2k+1]) of the block (ascending, not overlapping)
 * as grad + reg * w, the L2 term dsv_l2_apply would have added, with the
 * same bits. reg 0 or no ranges: as stored. The ranges are copied. */
dsv_status dsv_optimizer_set_l2(dsv_optimizer *o, double reg, const int64_t *ranges,
                                int nranges);

#endif
