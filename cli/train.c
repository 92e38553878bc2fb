/* placeholder: filled in by its owner */
#include <stdio.h>

#include "cli.h"

int dsv_cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "dasecv train: not built yet\n");
    return 1;
}
