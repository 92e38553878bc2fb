/*
 * Data-parallel training over MPI: the only place that calls MPI. It fills
 * the engine's hooks (engine/internal/dist.h) with MPI collectives:
 *  - rank 0's parameters and buffers are broadcast when a model is attached;
 *  - each rank trains on its shard of every global minibatch (the Solver's
 *    shard, a function of the global position only);
 *  - gradients are summed with MPI_Iallreduce in buckets of about bucket_mb,
 *    each started as soon as the nodes that produce it have run backward
 *    (as PyTorch DDP does), and waited for before the update;
 *  - batch-statistics nodes sum their per-channel statistics with
 *    MPI_Allreduce (sync_bn), or keep them per rank.
 * Collectives use their own communicators with MPI_ERRORS_RETURN, so an MPI
 * failure is a dsv_status; a watchdog thread ends the process (status 1,
 * which makes mpirun stop every rank) when one wait lasts longer than
 * timeout_s, e.g. when a peer hangs.
 */
#ifndef DASECV_DIST_H
#define DASECV_DIST_H

#include <stdbool.h>

#include "dasecv/dasecv.h"

typedef struct dsv_dist dsv_dist;

typedef struct dsv_dist_options {
    double bucket_mb; /* gradient bucket size in MiB */
    bool sync_bn;     /* batch statistics over all ranks */
    double timeout_s; /* longest wait in one collective; <= 0: none */
} dsv_dist_options;

dsv_dist_options dsv_dist_options_default(void);

/* Whether this process was started by an MPI launcher (mpirun, srun). */
bool dsv_dist_launched(void);
/* MPI_Init_thread (funneled: only the main thread calls MPI). */
dsv_status dsv_dist_create(dsv_dist **d, int *argc, char ***argv);
/* MPI_Finalize after a run that every rank finished. */
void dsv_dist_destroy(dsv_dist *d);
/* Ends every rank of the job now with status code (MPI_Abort). */
void dsv_dist_abort(dsv_dist *d, int code);
int dsv_dist_rank(const dsv_dist *d);
int dsv_dist_size(const dsv_dist *d);

/* *all: whether every rank passed ok (a collective: every rank must call
 * it). An error when the collective itself failed (*all is then false). */
dsv_status dsv_dist_all_ok(dsv_dist *d, bool ok, bool *all);

/* Makes s train its shard of the model m across the ranks: checks that the
 * ranks agree on the model's size, broadcasts rank 0's parameters and
 * buffers, installs the hooks. m and s must outlive the attachment. */
dsv_status dsv_dist_attach(dsv_dist *d, dsv_model *m, dsv_solver *s,
                           const dsv_dist_options *o);

/* Checks that every rank holds the same parameters, bit for bit (and the
 * same buffers, with synchronized batch norm): a hash of the blocks compared
 * across ranks. DSV_CORRUPT with a message when they differ. */
dsv_status dsv_dist_check_same(dsv_dist *d, dsv_model *m, bool buffers);

/* Seconds spent waiting for gradient reductions after backward (not hidden
 * behind compute) and training steps taken, since attach. */
void dsv_dist_wait_stats(const dsv_dist *d, double *wait_s, long long *steps);

#endif
