/*
 * Execution plan files for the command line (--plan, --save-plan): the text
 * of dsv_graph_plan_text in a file. Both print one "dasecv CMD: ..." line on
 * failure and return false.
 */
#ifndef DASECV_CLI_PLAN_H
#define DASECV_CLI_PLAN_H

#include <stdbool.h>

#include "dasecv/dasecv.h"

/* Reads path and applies it to m's graph; a plan for another model, or a
 * file that is not a plan, is refused and changes nothing. */
bool cli_plan_load(const char *cmd, dsv_model *m, const char *path);
/* Writes m's plan (what auto decided so far) to path. */
bool cli_plan_save(const char *cmd, dsv_model *m, const char *path);

#endif
