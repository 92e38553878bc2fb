/*
 * The train command's side of data-parallel training (dist/): starting and
 * ending MPI, attaching a model and solver, the rank-0 summary. Without MPI
 * in the build these are stubs for a single process.
 */
#ifndef DASECV_CLI_DIST_H
#define DASECV_CLI_DIST_H

#include <stdbool.h>

#include "dasecv/dasecv.h"

typedef struct cli_dist_opts {
    double bucket_mb; /* --bucket-mb */
    bool local_bn;    /* --bn-stats local */
    double timeout_s; /* --dist-timeout */
} cli_dist_opts;

cli_dist_opts cli_dist_opts_default(void);
/* Under an MPI launcher, starts MPI and sets *rank, *size (else 0 and 1).
 * False (message printed) if MPI cannot start. */
bool cli_dist_begin(int *argc, char ***argv, int *rank, int *size);
/* Shards s's training across the ranks (a no-op in one process). False with
 * a message printed on failure. */
bool cli_dist_attach(dsv_model *m, dsv_solver *s, const cli_dist_opts *o);
/* After training: every rank must hold the same parameters (and, with
 * global batch norm statistics, buffers). False with a message when not. */
bool cli_dist_check(dsv_model *m, const cli_dist_opts *o);
/* After the run: with rc 0 (or 130) MPI ends normally; any other rc ends
 * every rank of the job at once with that status. Returns rc. */
int cli_dist_end(int rc);
/* Rank 0, not quiet: ranks and the time per step spent waiting for the
 * gradient sums after backward, on stderr. */
void cli_dist_report(void);

#endif
