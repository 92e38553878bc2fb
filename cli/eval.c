/* placeholder: filled in by its owner */
#include <stdio.h>

#include "cli.h"

int dsv_cmd_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "dasecv eval: not built yet\n");
    return 1;
}
