/*
 * The L2 term of a training step (the model's reg), kept out of the graph
 * engine: the graph computes the data loss and its gradient, the model adds
 * the regularisation. Not installed.
 */
#ifndef DASECV_INTERNAL_L2_H
#define DASECV_INTERNAL_L2_H

#include "dasecv/graph.h"
#include "dasecv/model.h"

/* Over the graph's weight parameters (DSV_PARAM_WEIGHT): grad += reg * w and
 * *loss += 0.5 * reg * sum(w^2). The sum is the same for any thread count
 * (o->threads, 0 = dsv_get_num_threads()). reg must be finite and >= 0; 0
 * changes nothing. */
dsv_status dsv_l2_apply(dsv_graph *g, const dsv_exec_options *o, double reg,
                        double *loss);

/* Only the loss term of dsv_l2_apply, the same sum bit for bit: for a caller
 * that adds reg * w to the gradients itself (the Solver's optimizer does, in
 * its pass over them). */
dsv_status dsv_l2_loss(dsv_graph *g, const dsv_exec_options *o, double reg, double *loss);

/* dsv_model_loss without the L2 gradient term (the loss has it): the Solver's
 * step, whose optimizer adds reg * w to the weights' gradients as it reads
 * them (dsv_optimizer_set_l2). Defined in model.c. */
dsv_status dsv_model_loss_l2_deferred(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                                      double *loss);

#endif
