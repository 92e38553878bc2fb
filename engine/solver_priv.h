/*
 * The Solver's state, shared by solver.c (training) and checkpoint.c (saving
 * and restoring it). Not installed.
 *
 * Everything that influences the training trajectory lives here and is written
 * to checkpoints: the model's parameters and buffers, the optimizer's state,
 * the counters, both RNG states and the histories. The permutation of the
 * current epoch is not stored; it is regenerated from rng_epoch.
 */
#ifndef DASECV_SOLVER_PRIV_H
#define DASECV_SOLVER_PRIV_H

#include <signal.h>

#include "dasecv/solver.h"

struct dsv_solver {
    dsv_model *m;
    const dsv_split *train, *val;
    dsv_solver_config cfg; /* cfg.optim is the initial optimizer config */
    dsv_optimizer *opt;    /* its config holds the current (decayed) lr */
    dsv_dtype dtype;
    int64_t nparams, nbuffers;

    int64_t batch;           /* images per minibatch: min(batch_size, n) */
    int64_t iters_per_epoch; /* max(n / batch_size, 1); a partial batch is dropped */
    int64_t num_iterations;  /* num_epochs * iters_per_epoch */
    int64_t iteration;       /* steps done */
    int epoch;               /* epochs completed */

    /* splitmix64 states: rng after this epoch's permutation was drawn, and
     * rng_epoch before it (to redraw the same permutation after a load). */
    uint64_t rng, rng_epoch;
    int64_t *perm; /* (train n), valid for the epoch being trained */
    int perm_valid;

    double *loss_hist;
    int64_t loss_n, loss_cap;
    double *train_acc, *val_acc;
    int acc_n, acc_cap;

    double best_val_acc;
    int has_best;
    void *best_params, *best_buffers;
    /* After training ends the best parameters are swapped into the model and
     * the trajectory's own ones kept here (checkpoints store both). */
    int swapped;
    void *last_params, *last_buffers;

    /* What the current step changes before its update, restored when it
     * produces NaN or Inf (solver.c: backup). */
    void *bak_buffers;
    uint64_t bak_model_steps, bak_rng, bak_rng_epoch;

    /* data parallel (internal/dist.h): this process's rows of each minibatch
     * are a function of rank, size and the global position; not stored */
    int shard_rank, shard_size;

    /* The L2 term's gradient is added by the optimizer as it reads the
     * gradients (one pass fewer over them): the weights' ranges of the
     * parameter block, and the reg last handed to it (-1: none yet). When
     * the ranges cannot be set, l2_n is -1 and the model adds the term. Not
     * stored: derived from the model. */
    int64_t *l2_ranges;
    int l2_n;
    double l2_reg;

    volatile sig_atomic_t stop_request;
    int stopped;
    dsv_tensor xb, yb; /* minibatch, reused */
};

/* Shared helpers (solver.c). */
/* Recomputes batch, iters_per_epoch and num_iterations from cfg and train. */
void dsv_solver_layout_(dsv_solver *s);
dsv_status dsv_solver_hist_reserve_(dsv_solver *s, int64_t nloss, int nacc);

#endif
