/*
 * dasecv describe: what a model file (or a checkpoint's model) builds, node by
 * node: output shape, parameters, floating-point operations of each pass,
 * the backend each pass would run on, and the activation memory the planner
 * reserves for a batch, as `caffe time`'s and Keras's summaries show theirs.
 *
 * FLOPs count a multiply-add as two. Convolutions and affine layers are
 * exact (bias included); pools, norms, dropout, add and the losses are
 * per-element estimates (stated in the help), small next to them.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmdline.h"
#include "outpath.h"
#include "progress.h"

static const char usage[] =
    "usage: dasecv describe MODEL|CHECKPOINT [--batch-size N] [--json]\n"
    "                       [--backend B] [--input C,H,W] [--classes K]\n"
    "                       [--dtype T]\n"
    "\n"
    "Prints one row per node of a model: its name, op, output shape for a batch,\n"
    "parameters, forward and backward FLOPs and the backend each pass would use,\n"
    "then the totals and the activation memory planned for the batch (training:\n"
    "activations and their gradients, with and without buffer sharing; inference).\n"
    "  MODEL            a built-in (threelayer, fc, resnet, vgg, lenet) or a model\n"
    "                   file (docs/model-files.md); CHECKPOINT: a file written by\n"
    "                   dasecv train\n"
    "  --batch-size N   (default 50)\n"
    "  --backend B      naive | fast | onednn | auto (default)\n"
    "  --input C,H,W    input shape, for files whose [net] leaves it to the data\n"
    "                   (default 3,32,32, CIFAR-10's)\n"
    "  --classes K      classes, likewise (default 10)\n"
    "  --dtype T        float32 | float64 (default: the file's)\n"
    "  --json           one JSON object instead of the table\n"
    "FLOPs count a multiply-add as 2; conv and affine are exact, pools, norms,\n"
    "dropout, add and losses are per-element estimates.\n"
    "Exit status: 0 ok, 1 error, 2 bad usage or an invalid model file.\n";

typedef struct row {
    char shape[64];
    int64_t params;
    double fwd, bwd;
    dsv_backend bf, bb;
} row;

static int64_t numel(int nd, const int64_t *s)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= s[d];
    return n;
}

static int64_t param_numel(const dsv_graph *g, int id)
{
    if (id < 0)
        return 0;
    int nd;
    int64_t s[DSV_MAX_DIMS];
    return dsv_graph_param_shape(g, id, &nd, s) == DSV_OK ? numel(nd, s) : 0;
}

/* FLOPs of node d for a batch of n: out is its output, x its input. The
 * gradient of the graph's input is not computed (x_input): a first conv or
 * affine runs only its weight and bias gradients. */
static void flops(const dsv_graph *g, const dsv_node_desc *d, bool x_input, int64_t n,
                  int ond, const int64_t *os, double *fwd, double *bwd)
{
    int xnd;
    int64_t xs[DSV_MAX_DIMS];
    dsv_graph_value_shape(g, d->x, n, &xnd, xs);
    double in = (double)numel(xnd, xs), out = (double)numel(ond, os);
    switch (d->op) {
    case DSV_OP_CONV: {
        int wnd;
        int64_t ws[DSV_MAX_DIMS];
        dsv_graph_param_shape(g, d->w, &wnd, ws);
        double macs = out * (double)(ws[1] * ws[2] * ws[3]);
        *fwd = 2 * macs + out;
        *bwd = (x_input ? 2 : 4) * macs + out;
        break;
    }
    case DSV_OP_AFFINE: {
        double macs = out * (double)(in / (double)n);
        *fwd = 2 * macs + out;
        *bwd = (x_input ? 2 : 4) * macs + out;
        break;
    }
    case DSV_OP_MAX_POOL:
    case DSV_OP_AVG_POOL:
        *fwd = *bwd = out * d->p.pool_height * d->p.pool_width;
        break;
    case DSV_OP_BATCHNORM:
    case DSV_OP_SPATIAL_BATCHNORM:
    case DSV_OP_LAYERNORM:
    case DSV_OP_SPATIAL_GROUPNORM:
        *fwd = 8 * out;
        *bwd = 12 * out;
        break;
    case DSV_OP_DROPOUT:
        *fwd = 2 * out;
        *bwd = out;
        break;
    case DSV_OP_SOFTMAX_LOSS:
    case DSV_OP_SVM_LOSS:
        *fwd = 5 * in;
        *bwd = 0;
        break;
    default: /* relu, add */
        *fwd = out;
        *bwd = d->op == DSV_OP_RELU ? out : 0;
        break;
    }
}

static bool is_checkpoint(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[8];
    bool yes = fread(magic, 1, 8, f) == 8 && memcmp(magic, "DSVCKPT\x1a", 8) == 0;
    fclose(f);
    return yes;
}

static bool parse_input(cli_parser *p, int in[3])
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    char tail;
    if (sscanf(v, "%d,%d,%d%c", &in[0], &in[1], &in[2], &tail) != 3 || in[0] < 1 ||
        in[1] < 1 || in[2] < 1 || in[0] > (1 << 24) || in[1] > (1 << 24) || in[2] > (1 << 24)) {
        fprintf(stderr, "dasecv describe: --input: '%s' is not C,H,W (three sizes >= 1)\n", v);
        return false;
    }
    return true;
}

static void print_table(dsv_model *m, const char *what, const row *rows, int64_t n,
                        const size_t mem[3])
{
    dsv_graph *g = dsv_model_graph(m);
    const dsv_model_options *o = dsv_model_options_of(m);
    printf("model %s: input %dx%dx%d, %d classes, %s, batch %lld\n\n", what, o->input_dim[0],
           o->input_dim[1], o->input_dim[2], o->num_classes,
           dsv_dtype_name((dsv_dtype)o->dtype), (long long)n);
    printf("%-16s %-18s %-18s %10s %12s %12s  %s\n", "node", "op", "output", "params",
           "fwd MFLOP", "bwd MFLOP", "backend fwd/bwd");
    int64_t tp = 0;
    double tf = 0, tb = 0;
    bool timed = false;
    for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
        dsv_node_desc d;
        dsv_graph_node_info(g, i, &d, NULL);
        const row *r = &rows[i];
        timed = timed || r->bf == DSV_BACKEND_AUTO || r->bb == DSV_BACKEND_AUTO;
        printf("%-16s %-18s %-18s %10lld %12.3f %12.3f  %s/%s\n", d.name, dsv_op_name(d.op),
               r->shape, (long long)r->params, r->fwd / 1e6, r->bwd / 1e6,
               dsv_backend_name(r->bf),
               r->bb == DSV_BACKEND_COUNT ? "-" : dsv_backend_name(r->bb));
        tp += r->params;
        tf += r->fwd;
        tb += r->bwd;
    }
    printf("%-16s %-18s %-18s %10lld %12.3f %12.3f\n", "total", "", "", (long long)tp,
           tf / 1e6, tb / 1e6);
    if (timed)
        printf("(auto: fast or onednn, chosen by timing both at the first run)\n");
    printf("\nactivation memory planned for batch %lld: training %.2f MB (%.2f MB without "
           "sharing), inference %.2f MB\n",
           (long long)n, (double)mem[0] / 1e6, (double)mem[1] / 1e6, (double)mem[2] / 1e6);
}

static void print_json(dsv_model *m, const char *what, const row *rows, int64_t n,
                       const size_t mem[3])
{
    dsv_graph *g = dsv_model_graph(m);
    const dsv_model_options *o = dsv_model_options_of(m);
    printf("{\"model\": ");
    cli_json_string(stdout, what);
    printf(", \"input\": [%d, %d, %d], \"classes\": %d, \"dtype\": \"%s\", \"batch_size\": %lld"
           ", \"nodes\": [",
           o->input_dim[0], o->input_dim[1], o->input_dim[2], o->num_classes,
           dsv_dtype_name((dsv_dtype)o->dtype), (long long)n);
    int64_t tp = 0;
    double tf = 0, tb = 0;
    for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
        dsv_node_desc d;
        dsv_graph_node_info(g, i, &d, NULL);
        const row *r = &rows[i];
        printf("%s{\"name\": ", i ? ", " : "");
        cli_json_string(stdout, d.name);
        printf(", \"op\": \"%s\", \"output\": [", dsv_op_name(d.op));
        for (const char *c = r->shape; *c; c++)
            putchar(*c == 'x' ? ',' : *c);
        printf("], \"params\": %lld, \"fwd_flops\": %.0f, \"bwd_flops\": %.0f, "
               "\"fwd_backend\": \"%s\", \"bwd_backend\": ",
               (long long)r->params, r->fwd, r->bwd, dsv_backend_name(r->bf));
        if (r->bb == DSV_BACKEND_COUNT)
            printf("null}");
        else
            printf("\"%s\"}", dsv_backend_name(r->bb));
        tp += r->params;
        tf += r->fwd;
        tb += r->bwd;
    }
    printf("], \"total\": {\"params\": %lld, \"fwd_flops\": %.0f, \"bwd_flops\": %.0f}, "
           "\"activation_bytes\": {\"train\": %zu, \"train_unshared\": %zu, \"infer\": %zu}}\n",
           (long long)tp, tf, tb, mem[0], mem[1], mem[2]);
}

int dsv_cmd_describe(int argc, char **argv)
{
    const char *what = NULL;
    int batch = 50, classes = 0, in[3] = {0, 0, 0};
    int dtype = -1;
    bool json = false, ok = true;
    dsv_backend backend = DSV_BACKEND_AUTO;
    cli_parser p = cli_parser_make("describe", argc, argv);
    int k;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            if (what)
                return cli_usage_error(&p, "give one MODEL or CHECKPOINT");
            what = argv[p.i];
            continue;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--batch-size")) {
            ok = cli_int(&p, 1, 1 << 20, &batch);
        } else if (cli_is(&p, "--classes")) {
            ok = cli_int(&p, 1, 1 << 24, &classes);
        } else if (cli_is(&p, "--input")) {
            ok = parse_input(&p, in);
        } else if (cli_is(&p, "--json")) {
            ok = cli_flag(&p), json = true;
        } else if (cli_is(&p, "--dtype")) {
            const char *v = cli_value(&p);
            if (!v)
                return 2;
            if (!strcmp(v, "float32"))
                dtype = DSV_F32;
            else if (!strcmp(v, "float64"))
                dtype = DSV_F64;
            else
                return cli_usage_error(&p, "--dtype must be float32 or float64");
        } else if (cli_is(&p, "--backend")) {
            const char *v = cli_value(&p);
            ok = v && dsv_backend_from_name(v, &backend) == DSV_OK &&
                 dsv_backend_available(backend);
            if (v && !ok)
                fprintf(stderr, "dasecv describe: --backend: '%s' is not an available backend\n",
                        v);
        } else {
            return cli_unknown(&p);
        }
        if (!ok)
            return 2;
    }
    if (!what)
        return cli_usage_error(&p, "MODEL or CHECKPOINT is required");

    dsv_model *m = NULL;
    dsv_status st;
    if (!cli_input_path("describe", "MODEL", what))
        return 2;
    if (is_checkpoint(what)) {
        if ((st = dsv_checkpoint_load_model(what, &m))) {
            fprintf(stderr, "dasecv describe: %s\n", dsv_errmsg());
            return 1;
        }
    } else {
        dsv_model_options o = dsv_model_options_default();
        o.dtype = dtype;
        o.num_classes = classes;
        memcpy(o.input_dim, in, sizeof(in));
        st = dsv_model_create_from_file(&m, what, &o);
        if (st == DSV_INVALID && (in[0] == 0 || classes == 0) &&
            strstr(dsv_errmsg(), "no dataset gives")) {
            /* a file that takes its shape from the data: describe it on CIFAR-10's */
            for (int d = 0; d < 3; d++)
                o.input_dim[d] = in[d] ? in[d] : d == 0 ? 3 : 32;
            o.num_classes = classes ? classes : 10;
            st = dsv_model_create_from_file(&m, what, &o);
        }
        if (st) {
            fprintf(stderr, "dasecv describe: %s\n", dsv_errmsg());
            return st == DSV_INVALID ? 2 : 1;
        }
    }
    dsv_graph *g = dsv_model_graph(m);
    int nn = dsv_graph_num_nodes(g);
    row *rows = calloc((size_t)nn, sizeof(row));
    size_t mem[3] = {0, 0, 0};
    int rc = 1;
    if (!rows) {
        fprintf(stderr, "dasecv describe: out of memory\n");
        goto out;
    }
    for (int i = 0; i < nn; i++) {
        dsv_node_desc d;
        dsv_value out;
        dsv_graph_node_info(g, i, &d, &out);
        /* a value no earlier node produced is the graph's input */
        bool x_input = true;
        for (int j = 0; j < i && x_input; j++) {
            dsv_node_desc dj;
            dsv_value oj;
            dsv_graph_node_info(g, j, &dj, &oj);
            x_input = oj != d.x;
        }
        row *r = &rows[i];
        int ond = 1;
        int64_t os[DSV_MAX_DIMS] = {1, 1, 1, 1};
        if (out != DSV_NO_VALUE) {
            dsv_graph_value_shape(g, out, batch, &ond, os);
            int len = 0;
            for (int k2 = 0; k2 < ond && len < (int)sizeof(r->shape); k2++)
                len += snprintf(r->shape + len, sizeof(r->shape) - (size_t)len, "%s%lld",
                                k2 ? "x" : "", (long long)os[k2]);
        } else {
            snprintf(r->shape, sizeof(r->shape), "%s", "1");
            os[0] = 1;
        }
        r->params = param_numel(g, d.w) + param_numel(g, d.b);
        flops(g, &d, x_input, batch, ond, os, &r->fwd, &r->bwd);
        dsv_graph_node_backends(g, i, backend, &r->bf, &r->bb);
    }
    if ((st = dsv_graph_planned_bytes(g, batch, true, &mem[0], &mem[1])) ||
        (st = dsv_graph_planned_bytes(g, batch, false, &mem[2], NULL))) {
        fprintf(stderr, "dasecv describe: %s\n", dsv_errmsg());
        goto out;
    }
    if (json)
        print_json(m, what, rows, batch, mem);
    else
        print_table(m, what, rows, batch, mem);
    rc = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "dasecv describe: writing to standard output failed\n");
        rc = 1;
    }
out:
    free(rows);
    dsv_model_destroy(m);
    return rc;
}
