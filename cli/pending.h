/*
 * Solver and checkpoint entry points referenced weakly, so that the dasecv
 * binary links while engine/solver.c and engine/checkpoint.c are placeholders.
 * cli_solver_missing() tells a command to stop with a message. Remove this
 * header once both files are in the tree.
 */
#ifndef DASECV_CLI_PENDING_H
#define DASECV_CLI_PENDING_H

#include <stdbool.h>
#include <stdio.h>

#include "dasecv/dasecv.h"

#pragma weak dsv_checkpoint_load
#pragma weak dsv_checkpoint_load_model
#pragma weak dsv_checkpoint_save
#pragma weak dsv_solver_acc_history
#pragma weak dsv_solver_best_val_acc
#pragma weak dsv_solver_config_default
#pragma weak dsv_solver_create
#pragma weak dsv_solver_destroy
#pragma weak dsv_solver_epoch
#pragma weak dsv_solver_iteration
#pragma weak dsv_solver_loss_history
#pragma weak dsv_solver_request_stop
#pragma weak dsv_solver_stopped
#pragma weak dsv_solver_train

static inline bool cli_solver_missing(const char *cmd)
{
    if (dsv_solver_train && dsv_checkpoint_save && dsv_checkpoint_load_model)
        return false;
    fprintf(stderr, "dasecv %s: this build has no solver/checkpoint support yet\n", cmd);
    return true;
}

#endif
