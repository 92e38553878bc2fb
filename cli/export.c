/*
 * dasecv export: a checkpoint's weights as an .npz archive that numpy.load
 * reads: every parameter and batch-norm buffer under its node's name
 * (NODE.w, NODE.b, NODE.gamma, NODE.beta, NODE.running_mean,
 * NODE.running_var), the values `eval` and `predict` use (the best
 * validation parameters when the run kept them). `train --init-from` reads
 * the archive back.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "outpath.h"
#include "cmdline.h"
#include "dasecv/dasecv.h"

static const char usage[] =
    "usage: dasecv export CHECKPOINT -o FILE.npz\n"
    "\n"
    "Writes every parameter and batch-norm buffer of the checkpoint's model to an\n"
    ".npz archive (numpy.load reads it), named after the nodes of its model file:\n"
    "NODE.w, NODE.b (conv, affine), NODE.gamma, NODE.beta (norms),\n"
    "NODE.running_mean, NODE.running_var (batch norms), in the model's dtype.\n"
    "They are the weights eval and predict use: the best validation parameters\n"
    "when the run kept them. dasecv train --init-from FILE.npz starts from them.\n"
    "  -o, --out FILE   the archive to write (atomically)\n"
    "Exit status: 0 ok, 1 error (unreadable checkpoint, write failure), 2 bad usage.\n";

int dsv_cmd_export(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL;
    cli_parser p = cli_parser_make("export", argc, argv);
    int k;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2 && strcmp(argv[p.i], "-o") == 0) {
            if (p.i + 1 >= argc)
                return cli_usage_error(&p, "-o needs a value");
            out = argv[++p.i];
            continue;
        }
        if (k == 2) {
            if (ckpt)
                return cli_usage_error(&p, "give one CHECKPOINT");
            ckpt = argv[p.i];
            continue;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--out")) {
            if (!cli_string(&p, &out))
                return 2;
        } else {
            return cli_unknown(&p);
        }
    }
    if (!ckpt)
        return cli_usage_error(&p, "CHECKPOINT is required");
    if (!out)
        return cli_usage_error(&p, "-o FILE.npz is required");
    char target[PATH_MAX];
    if (!cli_output_path("export", "-o", out, target, sizeof(target)))
        return 2;
    out = target;
    dsv_model *m;
    if (dsv_checkpoint_load_model(ckpt, &m) != DSV_OK) {
        fprintf(stderr, "dasecv export: %s\n", dsv_errmsg());
        return 1;
    }
    int rc = 0;
    if (dsv_model_save_npz(m, out) != DSV_OK) {
        fprintf(stderr, "dasecv export: %s\n", dsv_errmsg());
        rc = 1;
    }
    dsv_model_destroy(m);
    return rc;
}
