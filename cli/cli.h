/*
 * Subcommands of the dasecv command line. Each returns the process exit code:
 * 0 success, 1 failure while running, 2 bad usage (one-line error on stderr).
 */
#ifndef DASECV_CLI_H
#define DASECV_CLI_H

int dsv_cmd_op(int argc, char **argv);
int dsv_cmd_train(int argc, char **argv);
int dsv_cmd_eval(int argc, char **argv);
int dsv_cmd_predict(int argc, char **argv);
int dsv_cmd_check(int argc, char **argv);
int dsv_cmd_describe(int argc, char **argv);
int dsv_cmd_export(int argc, char **argv);
int dsv_cmd_bench(int argc, char **argv);

#endif
