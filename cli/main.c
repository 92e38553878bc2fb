/*
 * dasecv command line: dispatches to one subcommand per file.
 */
#include <stdio.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cli.h"
#include "dasecv/ops.h"
#include "outpath.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"train", dsv_cmd_train, "train a model on a dataset"},
    {"eval", dsv_cmd_eval, "accuracy and loss of a checkpoint on a dataset split"},
    {"predict", dsv_cmd_predict, "top-k classes of image files"},
    {"op", dsv_cmd_op, "run one layer op on .npy files"},
    {"check", dsv_cmd_check, "cross-backend and gradient checks on this machine"},
    {"describe", dsv_cmd_describe, "a model's nodes, shapes, parameters, FLOPs and memory"},
    {"export", dsv_cmd_export, "a checkpoint's weights as an .npz archive"},
    {"bench", dsv_cmd_bench, "time the course's cells or a model's nodes per backend"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: dasecv COMMAND [options]   (dasecv COMMAND --help, dasecv help COMMAND)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

/* Runs a command and checks what it wrote on stdout. */
static int run_command(int i, int argc, char **argv)
{
    int n;
    if (dsv_num_threads_from_env(&n) != DSV_OK) {
        fprintf(stderr, "dasecv %s: %s\n", commands[i].name, dsv_errmsg());
        return 2;
    }
    return cli_stdout_finish(commands[i].name, commands[i].run(argc, argv));
}

int main(int argc, char **argv)
{
#if defined(__GLIBC__)
    /* Blocks of 1 MiB and more (activations, data, the scratch tensors of
       auto's trials) get mappings of their own, returned to the system when
       freed. Left alone, glibc raises this threshold to the largest block
       freed so far, and the trials' freed tensors stayed in the heap,
       raising peak RSS (bench/RESULTS.md, "Peak memory, again"). No
       training step allocates blocks this large, so no step pays for it. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    cli_stdio_guard();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return cli_stdout_finish("--help", 0);
    }
    /* "dasecv help op" is "dasecv op --help" */
    if (!strcmp(argv[1], "help")) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (!strcmp(argv[2], commands[i].name)) {
                char help[] = "--help"; /* writable, like any argv string */
                char *args[] = {argv[2], help, NULL};
                return cli_stdout_finish(commands[i].name, commands[i].run(2, args));
            }
        fprintf(stderr, "dasecv: unknown command '%s' (try dasecv --help)\n", argv[2]);
        return 2;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return run_command((int)i, argc - 1, argv + 1);
    fprintf(stderr, "dasecv: unknown command '%s' (try dasecv --help)\n", argv[1]);
    return 2;
}
