/*
 * dasecv check --model (check_model.c): whole-network gradient and backend
 * checks of a model file, built-in or checkpoint's network.
 */
#ifndef DASECV_CLI_CHECK_MODEL_H
#define DASECV_CLI_CHECK_MODEL_H

#include <stdbool.h>

/* Prints the checks; returns the exit code (0 pass, 1 failure, 2 bad model). */
int cli_check_model(const char *what, bool quiet);

#endif
