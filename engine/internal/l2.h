/*
 * The L2 term of a training step (the model's reg), kept out of the graph
 * engine: the graph computes the data loss and its gradient, the model adds
 * the regularisation. Not installed.
 */
#ifndef DASECV_INTERNAL_L2_H
#define DASECV_INTERNAL_L2_H

#include "dasecv/graph.h"

/* Over the graph's weight parameters (DSV_PARAM_WEIGHT): grad += reg * w and
 * *loss += 0.5 * reg * sum(w^2). The sum is the same for any thread count
 * (o->threads, 0 = dsv_get_num_threads()). reg must be finite and >= 0; 0
 * changes nothing. */
dsv_status dsv_l2_apply(dsv_graph *g, const dsv_exec_options *o, double reg,
                        double *loss);

#endif
