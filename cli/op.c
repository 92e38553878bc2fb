/*
 * `dasecv op NAME [flags]`: runs one layer op on .npy files, so that anyone
 * can check the engine against numpy or PyTorch.
 *
 * Everything is table driven: `ops` has one row per course function name
 * (which dsv_op, forward or backward, which inputs it needs or accepts, which
 * parameters it reads and which outputs it can write), derived from the
 * engine's op table, and `flags` one row per command-line flag. The parser,
 * the checks, --list and --help all read those two tables, so an op added to
 * the engine's table appears here by itself.
 *
 * Exit codes: 0 success; 2 for anything wrong with the request, found before
 * a kernel runs (unknown op or flag, bad value, missing or malformed input
 * file, shapes the engine's dsv_op_check refuses); 1 when running the kernel
 * or writing an output fails. Every error is one line on stderr starting with
 * "dasecv op: ".
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dasecv/dasecv.h"
#include "internal/backend_table.h"

#include "cli.h"
#include "outpath.h"

#define EXIT_USAGE 2
#define EXIT_RUN 1

/* ---- the flag table ------------------------------------------------------- */

typedef enum flag_kind { FK_INPUT, FK_PARAM, FK_OUTPUT } flag_kind;

/* Bits index the flags table below (one bit space per kind). */
enum {
    I_X, I_X2, I_W, I_B, I_GAMMA, I_BETA, I_Y, I_DOUT, I_RMEAN, I_RVAR, I_COUNT
};
enum {
    P_STRIDE, P_PAD, P_POOL_H, P_POOL_W, P_GROUPS, P_EPS, P_MOMENTUM, P_MODE, P_P,
    P_SEED, P_COUNT
};
enum {
    O_OUT, O_DX, O_DX2, O_DW, O_DB, O_DGAMMA, O_DBETA, O_RMEAN, O_RVAR, O_COUNT
};
#define BIT(i) (1u << (i))

typedef struct flag_def {
    const char *name; /* without the leading "--" */
    flag_kind kind;
    int index;
    const char *help;
} flag_def;

static const flag_def flags[] = {
    {"x", FK_INPUT, I_X, "input (scores for the losses)"},
    {"x2", FK_INPUT, I_X2, "second input of add"},
    {"w", FK_INPUT, I_W, "weights"},
    {"b", FK_INPUT, I_B, "biases"},
    {"gamma", FK_INPUT, I_GAMMA, "scale of a normalization"},
    {"beta", FK_INPUT, I_BETA, "shift of a normalization"},
    {"y", FK_INPUT, I_Y, "integer labels (N,)"},
    {"dout", FK_INPUT, I_DOUT, "upstream gradient"},
    {"running-mean", FK_INPUT, I_RMEAN, "batch norm running mean (default zeros)"},
    {"running-var", FK_INPUT, I_RVAR, "batch norm running variance (default zeros)"},
    {"stride", FK_PARAM, P_STRIDE, "integer, default 1"},
    {"pad", FK_PARAM, P_PAD, "integer zero padding, default 0"},
    {"pool-height", FK_PARAM, P_POOL_H, "integer, default 2"},
    {"pool-width", FK_PARAM, P_POOL_W, "integer, default 2"},
    {"groups", FK_PARAM, P_GROUPS, "number of groups G, default 1"},
    {"eps", FK_PARAM, P_EPS, "default 1e-5"},
    {"momentum", FK_PARAM, P_MOMENTUM, "running statistics, default 0.9"},
    {"mode", FK_PARAM, P_MODE, "train or test, default train"},
    {"p", FK_PARAM, P_P, "probability of keeping a unit, default 0.5"},
    {"seed", FK_PARAM, P_SEED, "dropout mask seed, default 0"},
    {"out", FK_OUTPUT, O_OUT, "forward output"},
    {"dx", FK_OUTPUT, O_DX, "gradient of x"},
    {"dx2", FK_OUTPUT, O_DX2, "gradient of x2"},
    {"dw", FK_OUTPUT, O_DW, "gradient of w"},
    {"db", FK_OUTPUT, O_DB, "gradient of b"},
    {"dgamma", FK_OUTPUT, O_DGAMMA, "gradient of gamma"},
    {"dbeta", FK_OUTPUT, O_DBETA, "gradient of beta"},
    {"running-mean-out", FK_OUTPUT, O_RMEAN, "updated running mean (train mode)"},
    {"running-var-out", FK_OUTPUT, O_RVAR, "updated running variance (train mode)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))
_Static_assert(N_FLAGS == I_COUNT + P_COUNT + O_COUNT, "one flags row per input, param, output");

static const flag_def *find_flag(flag_kind kind, int index)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].kind == kind && flags[i].index == index)
            return &flags[i];
    return NULL;
}

/* ---- the op table --------------------------------------------------------- */

typedef struct op_def {
    const char *name;
    dsv_op op;
    bool backward;
    unsigned required; /* I_* bits */
    unsigned optional; /* I_* bits */
    unsigned params;   /* P_* bits */
    unsigned outputs;  /* O_* bits; losses also print the loss */
} op_def;

/*
 * The rows come from the engine's op table (dsv_op_get_info): NAME_forward
 * and NAME_backward per op, or NAME alone for a loss. What an op reads and
 * writes follows from its entry; the train/test mode matters to the ops
 * with batch or running statistics and to dropout, the op with a keep
 * probability.
 */
static op_def ops[2 * DSV_OP_COUNT];
static char op_names[2 * DSV_OP_COUNT][48];
static size_t n_ops;

static unsigned params_of(const dsv_op_info *in)
{
    static const struct {
        unsigned pf, bits;
    } map[] = {
        {DSV_PF_STRIDE, BIT(P_STRIDE)}, {DSV_PF_PAD, BIT(P_PAD)},
        {DSV_PF_POOL, BIT(P_POOL_H) | BIT(P_POOL_W)}, {DSV_PF_GROUPS, BIT(P_GROUPS)},
        {DSV_PF_EPS, BIT(P_EPS)}, {DSV_PF_MOMENTUM, BIT(P_MOMENTUM)}, {DSV_PF_P, BIT(P_P)},
        {DSV_PF_SEED, BIT(P_SEED)},
    };
    unsigned bits = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (in->params & map[i].pf)
            bits |= map[i].bits;
    if (in->batch_stats || in->running_stats || (in->params & DSV_PF_P))
        bits |= BIT(P_MODE);
    return bits;
}

static void add_row(dsv_op op, bool backward)
{
    const dsv_op_info *in = dsv_op_get_info(op);
    /* gamma and beta for the norms (the weighted ops with an eps) */
    bool norm = in->has_weights && (in->params & DSV_PF_EPS);
    op_def *o = &ops[n_ops];
    snprintf(op_names[n_ops], sizeof(op_names[n_ops]), "%s%s", in->name,
             in->is_loss ? "" : backward ? "_backward" : "_forward");
    o->name = op_names[n_ops++];
    o->op = op;
    o->backward = backward;
    o->required = BIT(I_X);
    if (in->num_inputs > 1)
        o->required |= BIT(I_X2);
    if (in->has_weights)
        o->required |= norm ? BIT(I_GAMMA) | BIT(I_BETA) : BIT(I_W) | BIT(I_B);
    if (in->is_loss)
        o->required |= BIT(I_Y);
    if (backward)
        o->required |= BIT(I_DOUT);
    o->optional = in->running_stats ? BIT(I_RMEAN) | BIT(I_RVAR) : 0;
    o->params = params_of(in);
    if (in->is_loss) {
        o->outputs = BIT(O_DX);
    } else if (!backward) {
        o->outputs = BIT(O_OUT);
        if (in->running_stats)
            o->outputs |= BIT(O_RMEAN) | BIT(O_RVAR);
    } else {
        o->outputs = BIT(O_DX);
        if (in->num_inputs > 1)
            o->outputs |= BIT(O_DX2);
        if (in->has_weights)
            o->outputs |= norm ? BIT(O_DGAMMA) | BIT(O_DBETA) : BIT(O_DW) | BIT(O_DB);
    }
}

static void build_ops(void)
{
    if (n_ops)
        return;
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        add_row((dsv_op)op, false);
        if (!dsv_op_get_info((dsv_op)op)->is_loss)
            add_row((dsv_op)op, true);
    }
}

static const op_def *find_op(const char *name)
{
    build_ops();
    for (size_t i = 0; i < n_ops; i++)
        if (!strcmp(ops[i].name, name))
            return &ops[i];
    return NULL;
}

/* ---- messages ------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dasecv op: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* " --x --w" for the flags of one kind whose bits are set in mask. */
static void print_flags(FILE *f, flag_kind kind, unsigned mask)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].kind == kind && (mask & BIT(flags[i].index)))
            fprintf(f, " --%s", flags[i].name);
}

static void print_op_line(FILE *f, const op_def *o)
{
    fprintf(f, "%s  inputs:", o->name);
    print_flags(f, FK_INPUT, o->required);
    if (o->optional) {
        fputs(" [", f);
        print_flags(f, FK_INPUT, o->optional);
        fputs(" ]", f);
    }
    if (o->params) {
        fputs("  params:", f);
        print_flags(f, FK_PARAM, o->params);
    }
    fputs("  outputs:", f);
    if (dsv_op_is_loss(o->op))
        fputs(" loss (stdout)", f);
    print_flags(f, FK_OUTPUT, o->outputs);
    fputc('\n', f);
}

static void usage(FILE *f)
{
    fputs("usage: dasecv op NAME [--INPUT file.npy ...] [--PARAM value ...] "
          "[--OUTPUT file.npy ...]\n"
          "       dasecv op --list | --help | NAME --help\n\n"
          "Runs one layer of the course on .npy files; NAME is the course's function\n"
          "name (conv_forward, batchnorm_backward, softmax_loss, ...; `--list` shows\n"
          "them all). A backward op takes the forward inputs plus --dout. Losses print\n"
          "the loss on stdout. All float inputs must share one dtype, which the\n"
          "outputs get (or pass --dtype to convert them).\n\n"
          "options for every op:\n"
          "  --backend B   naive, fast, onednn or auto (default auto)\n"
          "  --dtype T     float32, float64 or auto (default: that of the inputs)\n"
          "  --threads N   threads the kernel may use (default: all)\n"
          "  --verbose     say on stderr which backend ran\n"
          "exit status: 0 ok, 1 the op or an output failed, 2 bad usage or input\n",
          f);
}

static void help_kind(FILE *f, const char *title, flag_kind kind, unsigned mask,
                      unsigned required)
{
    if (!mask)
        return;
    fprintf(f, "%s:\n", title);
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].kind == kind && (mask & BIT(flags[i].index)))
            fprintf(f, "  --%-18s %s%s\n", flags[i].name, flags[i].help,
                    kind == FK_INPUT && !(required & BIT(flags[i].index)) ? " (optional)"
                                                                          : "");
}

static void op_help(FILE *f, const op_def *o)
{
    fprintf(f, "usage: dasecv op %s", o->name);
    print_flags(f, FK_INPUT, o->required);
    fputs(" [options]\n\n", f);
    if (dsv_op_is_loss(o->op))
        fprintf(f, "The %s and its gradient dx with respect to the scores.\n",
                dsv_op_name(o->op));
    else
        fprintf(f, "%s pass of the %s layer.\n", o->backward ? "Backward" : "Forward",
                dsv_op_name(o->op));
    help_kind(f, "inputs (.npy)", FK_INPUT, o->required | o->optional, o->required);
    help_kind(f, "parameters", FK_PARAM, o->params, 0);
    help_kind(f, "outputs (.npy)", FK_OUTPUT, o->outputs, 0);
    if (dsv_op_is_loss(o->op))
        fputs("the loss is printed on stdout\n", f);
}

/* ---- parsing -------------------------------------------------------------- */

typedef struct request {
    const op_def *op;
    const char *in[I_COUNT];
    const char *out[O_COUNT];
    const char *param_text[P_COUNT];
    dsv_params p;
    dsv_backend backend;
    int dtype; /* -1: follow the inputs */
    int threads;
    bool verbose;
} request;

static int parse_int(const char *flag, const char *s, int lo, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > INT_MAX)
        return fail(EXIT_USAGE, "--%s wants an integer >= %d, got '%s'", flag, lo, s);
    *v = (int)x;
    return 0;
}

static int parse_double(const char *flag, const char *s, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(x))
        return fail(EXIT_USAGE, "--%s wants a number, got '%s'", flag, s);
    *v = x;
    return 0;
}

static int set_param(request *r, int index, const char *flag, const char *s)
{
    dsv_params *p = &r->p;
    switch (index) {
    case P_STRIDE: return parse_int(flag, s, 1, &p->stride);
    case P_PAD: return parse_int(flag, s, 0, &p->pad);
    case P_POOL_H: return parse_int(flag, s, 1, &p->pool_height);
    case P_POOL_W: return parse_int(flag, s, 1, &p->pool_width);
    case P_GROUPS: return parse_int(flag, s, 1, &p->groups);
    case P_EPS: return parse_double(flag, s, &p->eps);
    case P_MOMENTUM: return parse_double(flag, s, &p->momentum);
    case P_P: return parse_double(flag, s, &p->p);
    case P_MODE:
        if (!strcmp(s, "train") || !strcmp(s, "test")) {
            p->train = !strcmp(s, "train");
            return 0;
        }
        return fail(EXIT_USAGE, "--mode wants train or test, got '%s'", s);
    case P_SEED: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (!*s || *s == '-' || *end || errno)
            return fail(EXIT_USAGE, "--seed wants a non-negative integer, got '%s'", s);
        p->seed = (uint64_t)x;
        return 0;
    }
    default: return fail(EXIT_RUN, "internal error: parameter %d", index);
    }
}

/* A flag of the op's own: input, parameter or output. */
static int set_op_flag(request *r, const flag_def *f, const char *val)
{
    const op_def *o = r->op;
    unsigned bit = BIT(f->index);
    const char *what = f->kind == FK_INPUT ? "take" : f->kind == FK_PARAM ? "use" : "produce";
    unsigned mask = f->kind == FK_INPUT ? o->required | o->optional
                    : f->kind == FK_PARAM ? o->params : o->outputs;
    if (!(mask & bit))
        return fail(EXIT_USAGE, "%s does not %s --%s (dasecv op %s --help)", o->name, what,
                    f->name, o->name);
    const char **slot = f->kind == FK_INPUT ? &r->in[f->index]
                        : f->kind == FK_PARAM ? &r->param_text[f->index] : &r->out[f->index];
    if (*slot)
        return fail(EXIT_USAGE, "--%s is given twice", f->name);
    *slot = val;
    return f->kind == FK_PARAM ? set_param(r, f->index, f->name, val) : 0;
}

static int set_global(request *r, const char *name, const char *val)
{
    if (!strcmp(name, "backend")) {
        if (dsv_backend_from_name(val, &r->backend))
            return fail(EXIT_USAGE, "%s", dsv_errmsg());
        if (!dsv_backend_available(r->backend))
            return fail(EXIT_USAGE, "backend %s is not built into this dasecv", val);
        return 0;
    }
    if (!strcmp(name, "dtype")) {
        if (!strcmp(val, "float32"))
            r->dtype = DSV_F32;
        else if (!strcmp(val, "float64"))
            r->dtype = DSV_F64;
        else if (!strcmp(val, "auto"))
            r->dtype = -1;
        else
            return fail(EXIT_USAGE, "--dtype wants float32, float64 or auto, got '%s'", val);
        return 0;
    }
    return parse_int(name, val, 1, &r->threads); /* "threads" */
}

/* -1: go on; otherwise the exit code. */
static int parse_args(request *r, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            r->verbose = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return fail(EXIT_USAGE, "unexpected argument '%s' (flags look like --x file.npy)",
                        a);
        /* --name value or --name=value */
        char name[32];
        const char *eq = strchr(a + 2, '='), *val;
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof(name))
            return fail(EXIT_USAGE, "unknown flag '%s'", a);
        memcpy(name, a + 2, len);
        name[len] = '\0';
        const flag_def *f = NULL;
        for (size_t k = 0; k < N_FLAGS; k++)
            if (!strcmp(flags[k].name, name))
                f = &flags[k];
        bool global = !strcmp(name, "backend") || !strcmp(name, "dtype") ||
                      !strcmp(name, "threads");
        if (!f && !global)
            return fail(EXIT_USAGE, "unknown flag '--%s' (dasecv op %s --help)", name,
                        r->op->name);
        /* "--x --w w.npy" forgot x's file; "--x=--odd-name.npy" still works */
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            val = argv[++i];
        else
            return fail(EXIT_USAGE, "--%s needs a value", name);
        if (!*val)
            return fail(EXIT_USAGE, "--%s has an empty value", name);
        int rc = global ? set_global(r, name, val) : set_op_flag(r, f, val);
        if (rc)
            return rc;
    }
    for (int k = 0; k < I_COUNT; k++)
        if ((r->op->required & BIT(k)) && !r->in[k])
            return fail(EXIT_USAGE, "%s needs --%s", r->op->name, find_flag(FK_INPUT, k)->name);
    bool any_out = false;
    for (int k = 0; k < O_COUNT; k++)
        any_out |= r->out[k] != NULL;
    if (!any_out && !dsv_op_is_loss(r->op->op)) {
        fprintf(stderr, "dasecv op: %s writes nothing; give at least one of", r->op->name);
        print_flags(stderr, FK_OUTPUT, r->op->outputs);
        fputc('\n', stderr);
        return EXIT_USAGE;
    }
    if ((r->out[O_RMEAN] || r->out[O_RVAR]) && !r->p.train)
        return fail(EXIT_USAGE, "running statistics are only updated in --mode train");
    return -1;
}

/* ---- running -------------------------------------------------------------- */

typedef struct job {
    dsv_tensor in[I_COUNT];
    dsv_tensor out[O_COUNT];
    dsv_tensor running[2]; /* batch norm statistics the kernel may update */
    dsv_call c;
    double loss;
} job;

static void job_free(job *j)
{
    for (int k = 0; k < I_COUNT; k++)
        dsv_tensor_free(&j->in[k]);
    for (int k = 0; k < O_COUNT; k++)
        dsv_tensor_free(&j->out[k]);
    for (int k = 0; k < 2; k++)
        dsv_tensor_free(&j->running[k]);
}

/* Loads every input and settles the float dtype (--dtype converts). */
static int load_inputs(const request *r, job *j)
{
    int dtype = r->dtype;
    const char *dtype_from = "--dtype";
    for (int k = 0; k < I_COUNT; k++) {
        if (!r->in[k])
            continue;
        const char *name = find_flag(FK_INPUT, k)->name;
        dsv_tensor *t = &j->in[k];
        char file_dtype[16];
        if (dsv_npy_load_typed(r->in[k], t, file_dtype, sizeof(file_dtype)))
            return fail(EXIT_USAGE, "--%s: %s", name, dsv_errmsg());
        if (k == I_Y) {
            if (t->dtype != DSV_I32)
                return fail(EXIT_USAGE, "--y must hold integer labels, %s holds %s", r->in[k],
                            dsv_dtype_name(t->dtype));
            continue;
        }
        if (!dsv_dtype_is_float(t->dtype))
            return fail(EXIT_USAGE, "--%s must hold float32 or float64 values, %s holds %s",
                        name, r->in[k], file_dtype);
        if (dtype < 0) {
            dtype = (int)t->dtype;
            dtype_from = name;
        } else if ((int)t->dtype != dtype) {
            if (r->dtype < 0)
                return fail(EXIT_USAGE, "--%s is %s but --%s is %s (inputs must agree, "
                            "or pass --dtype)", name, dsv_dtype_name(t->dtype), dtype_from,
                            dsv_dtype_name((dsv_dtype)dtype));
            dsv_tensor conv;
            if (dsv_tensor_init(&conv, (dsv_dtype)dtype, t->ndim, t->shape) ||
                dsv_tensor_copy(&conv, t))
                return fail(EXIT_RUN, "--%s: %s", name, dsv_errmsg());
            dsv_tensor_free(t);
            *t = conv;
        }
    }
    return 0;
}

static dsv_tensor *opt(job *j, int k) { return j->in[k].data ? &j->in[k] : NULL; }

/* Batch norm statistics: copies of the inputs (or zeros, as the course's
 * bn_param.get defaults) that a train-mode forward updates in place. */
static int prepare_running(const request *r, job *j)
{
    const dsv_tensor *x = &j->in[I_X];
    int64_t n = x->shape[1];
    if (!(r->op->optional & (BIT(I_RMEAN) | BIT(I_RVAR))))
        return 0;
    for (int k = 0; k < 2; k++) {
        dsv_tensor *src = opt(j, k ? I_RVAR : I_RMEAN);
        if (!src && (r->op->backward || !r->p.train))
            continue; /* test mode without them is refused by dsv_op_check */
        dsv_status s = src ? dsv_tensor_init_like(&j->running[k], src)
                           : dsv_tensor_init(&j->running[k], x->dtype, 1, &n);
        if (s || (src && dsv_tensor_copy(&j->running[k], src)))
            return fail(EXIT_RUN, "%s", dsv_errmsg());
    }
    j->c.running_mean = j->running[0].data ? &j->running[0] : NULL;
    j->c.running_var = j->running[1].data ? &j->running[1] : NULL;
    return 0;
}

/* Output tensors shaped like what they are the gradient of. */
static int make_outputs(const request *r, job *j, int nd, const int64_t *os)
{
    static const int like[O_COUNT] = {
        [O_OUT] = -1, [O_DX] = I_X, [O_DX2] = I_X2, [O_DW] = I_W, [O_DB] = I_B,
        [O_DGAMMA] = I_GAMMA, [O_DBETA] = I_BETA, [O_RMEAN] = -2, [O_RVAR] = -2,
    };
    for (int k = 0; k < O_COUNT; k++) {
        if (!r->out[k] || like[k] == -2)
            continue;
        dsv_status s = like[k] < 0
                           ? dsv_tensor_init(&j->out[k], j->in[I_X].dtype, nd, os)
                           : dsv_tensor_init_like(&j->out[k], &j->in[like[k]]);
        if (s)
            return fail(EXIT_RUN, "--%s: %s", find_flag(FK_OUTPUT, k)->name, dsv_errmsg());
    }
    dsv_call *c = &j->c;
    dsv_tensor *o = j->out;
    c->out = o[O_OUT].data ? &o[O_OUT] : NULL;
    c->dx = o[O_DX].data ? &o[O_DX] : NULL;
    c->dx2 = o[O_DX2].data ? &o[O_DX2] : NULL;
    c->dw = o[O_DW].data ? &o[O_DW] : o[O_DGAMMA].data ? &o[O_DGAMMA] : NULL;
    c->db = o[O_DB].data ? &o[O_DB] : o[O_DBETA].data ? &o[O_DBETA] : NULL;
    /* A forward op needs somewhere to write even if only the running
       statistics were asked for. */
    if (!r->op->backward && !dsv_op_is_loss(r->op->op) && !c->out) {
        if (dsv_tensor_init(&o[O_OUT], j->in[I_X].dtype, nd, os))
            return fail(EXIT_RUN, "%s", dsv_errmsg());
        c->out = &o[O_OUT];
    }
    return 0;
}

static int save_outputs(const request *r, job *j)
{
    for (int k = 0; k < O_COUNT; k++) {
        if (!r->out[k])
            continue;
        const dsv_tensor *t = k == O_RMEAN ? &j->running[0] : k == O_RVAR ? &j->running[1]
                                                                          : &j->out[k];
        if (dsv_npy_save(r->out[k], t))
            return fail(EXIT_RUN, "--%s: %s", find_flag(FK_OUTPUT, k)->name, dsv_errmsg());
    }
    return 0;
}

static int run_job(const request *r, job *j)
{
    int rc;
    if ((rc = load_inputs(r, j)))
        return rc;
    dsv_call *c = &j->c;
    *c = dsv_call_make(r->op->op);
    c->p = r->p;
    c->x = opt(j, I_X);
    c->x2 = opt(j, I_X2);
    c->w = opt(j, I_W) ? opt(j, I_W) : opt(j, I_GAMMA);
    c->b = opt(j, I_B) ? opt(j, I_B) : opt(j, I_BETA);
    c->y = opt(j, I_Y);
    c->dout = opt(j, I_DOUT);
    c->loss = &j->loss;
    c->nthreads = r->threads;
    if ((rc = prepare_running(r, j)))
        return rc;

    int nd;
    int64_t os[DSV_MAX_DIMS];
    if (dsv_op_check(c, r->op->backward, &nd, os))
        return fail(EXIT_USAGE, "%s", dsv_errmsg());
    if ((rc = make_outputs(r, j, nd, os)))
        return rc;

    dsv_backend b = dsv_pick_backend(c, r->op->backward, r->backend);
    const dsv_backend_table *t = dsv_backend_get(b);
    const dsv_kernel *k = t ? &t->kernels[c->op] : NULL;
    if (!k || !(r->op->backward ? k->backward : k->forward))
        return fail(EXIT_RUN, "this build has no %s kernel for %s", dsv_backend_name(b),
                    r->op->name);
    dsv_backend used = b;
    dsv_status s = r->op->backward ? dsv_backward(c, r->backend, &used)
                                   : dsv_forward(c, r->backend, &used);
    if (s)
        return fail(EXIT_RUN, "%s", dsv_errmsg());
    if (r->verbose)
        fprintf(stderr, "dasecv op: %s ran on the %s backend (%s)\n", r->op->name,
                dsv_backend_name(used), dsv_dtype_name(c->x->dtype));
    if ((rc = save_outputs(r, j)))
        return rc;
    if (dsv_op_is_loss(c->op))
        printf("%.17g\n", j->loss);
    return 0;
}

int dsv_cmd_op(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--list")) {
        build_ops();
        for (size_t i = 0; i < n_ops; i++)
            print_op_line(stdout, &ops[i]);
        return 0;
    }
    request r = {.op = find_op(name), .p = dsv_params_default(),
                 .backend = DSV_BACKEND_AUTO, .dtype = -1, .threads = 0};
    if (!r.op)
        return fail(EXIT_USAGE, "unknown op '%s' (dasecv op --list)", name);
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            op_help(stdout, r.op);
            return 0;
        }
    int rc = parse_args(&r, argc, argv);
    if (rc >= 0)
        return rc;
    /* every output checked before computing; the targets of links are written */
    static char targets[O_COUNT][PATH_MAX];
    for (int k = 0; k < O_COUNT; k++) {
        char opt[64];
        snprintf(opt, sizeof(opt), "--%s", find_flag(FK_OUTPUT, k)->name);
        if (r.out[k] && !cli_output_path("op", opt, r.out[k], targets[k], PATH_MAX))
            return EXIT_USAGE;
        if (r.out[k])
            r.out[k] = targets[k];
    }
    if (r.threads > 0 && dsv_set_num_threads(r.threads))
        return fail(EXIT_USAGE, "%s", dsv_errmsg());
    job j;
    memset(&j, 0, sizeof(j));
    rc = run_job(&r, &j);
    job_free(&j);
    return rc; /* main checks that stdout was written */
}
