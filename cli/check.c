/* placeholder: filled in by its owner */
#include <stdio.h>

#include "cli.h"

int dsv_cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "dasecv check: not built yet\n");
    return 1;
}
