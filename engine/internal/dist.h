/*
 * Hooks for data-parallel training: what a layer outside the engine (dist/,
 * over MPI) plugs into the graph, the Solver and the batch-norm kernel so
 * that K processes, each on its shard of a minibatch, train one model. The
 * engine itself knows nothing of MPI and builds without it. Not installed.
 *
 * What must stay true:
 *  - Every process calls the hooks in the same order with the same sizes
 *    (the graph runs its nodes in a fixed order), so a layer that maps them
 *    onto collectives never mismatches.
 *  - With a global batch set, the loss of each process is its share of the
 *    mean over the global batch (sum over its rows / global rows), and so is
 *    every gradient: summing them over the processes gives the gradient of
 *    the whole minibatch, with no further scaling.
 *  - The auto schedule's timing passes run without the hooks.
 */
#ifndef DASECV_INTERNAL_DIST_H
#define DASECV_INTERNAL_DIST_H

#include <stdint.h>

#include "dasecv/graph.h"
#include "dasecv/solver.h"

/* Sums buf[0..n) in place over all processes (every process gets the same
 * bits). */
typedef dsv_status (*dsv_sum_fn)(void *user, double *buf, int64_t n);

typedef struct dsv_dist_hooks {
    void *user;
    /* Batch statistics (nodes whose op has batch_stats) over all processes'
     * rows: training forward and backward of those nodes run a _summed
     * kernel below (fast for float32, naive for float64 or when naive was
     * asked for) with its sums passed through this. NULL: statistics stay
     * local. */
    dsv_sum_fn sum_stats;
    /* The gradients of node `node`'s parameters are final (its backward has
     * run, or, under the batch schedule, the per-thread blocks are summed).
     * Called in backward order, only for nodes with parameters. May be NULL. */
    dsv_status (*grads_ready)(void *user, int node);
    /* Backward is over: the gradient block must hold the sum over processes
     * when this returns, and *loss (this process's share) the total. */
    dsv_status (*grads_done)(void *user, double *loss);
} dsv_dist_hooks;

/* Installs a copy of h (NULL removes the hooks). */
void dsv_graph_set_dist_hooks(dsv_graph *g, const dsv_dist_hooks *h);
/* Rows of one training step over all processes; losses and gradients are
 * scaled by this process's rows over it. 0 (the default): this call's rows. */
void dsv_graph_set_global_batch(dsv_graph *g, int64_t rows);

/* Process `rank` of `size` trains on rows [B*rank/size, B*(rank+1)/size) of
 * every global minibatch of B rows, a function of the global position only,
 * so a checkpoint resumes on any number of processes. Before dsv_solver_train;
 * needs B >= size. rank 0 of 1 is the default. */
dsv_status dsv_solver_set_shard(dsv_solver *s, int rank, int size);

/* The naive batchnorm and spatial_batchnorm kernels in train mode with
 * their per-channel sums (count, mean, variance; the backward's dbeta and
 * dgamma for dx) passed through sum. dw and db stay this process's part.
 * The call must be valid (dsv_op_check). */
dsv_status dsv_naive_bn_forward_summed(dsv_call *c, dsv_sum_fn sum, void *user);
dsv_status dsv_naive_bn_backward_summed(dsv_call *c, dsv_sum_fn sum, void *user);
/* The same on the fast kernels' passes for float32 (two passes over x where
 * the unsynchronized kernel makes one, c->nthreads threads); float64 goes to
 * the naive ones. */
dsv_status dsv_fast_bn_forward_summed(dsv_call *c, dsv_sum_fn sum, void *user);
dsv_status dsv_fast_bn_backward_summed(dsv_call *c, dsv_sum_fn sum, void *user);

#endif
