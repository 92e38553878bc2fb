/*
 * dasecv bench: timings without Google Benchmark.
 *
 *   --course        the course's timing cells (conv and max pool, forward and
 *                   backward) on naive, fast and onednn: median ms, speedup
 *                   over naive and the largest difference from naive;
 *   --model M       each node's forward and backward per backend and the
 *                   whole training step per backend, like `caffe time`.
 *
 * What must stay true: repetitions are interleaved (rep 1 of every backend,
 * then rep 2, ...), so a slow stretch of a shared machine hits all of them
 * alike and the ratios of one run stay comparable; a backend that would fall
 * back to another for a call is shown as "-", never timed under its name;
 * backward is timed after an untimed forward on the same state, as in a
 * training step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdline.h"
#include "dasecv/dasecv.h"
#include "internal/graph_hooks.h"
#include "internal/rng.h"
#include "plan.h"
#include "progress.h"

static const char usage[] =
    "usage: dasecv bench --course [options]\n"
    "       dasecv bench --model NAME|FILE [options]\n"
    "\n"
    "Times kernels on this machine. Repetitions of all backends are\n"
    "interleaved and medians reported; compare ratios from one run, not\n"
    "absolute times across runs (a shared machine's speed drifts).\n"
    "\n"
    "  --course            the course's cells: conv x (100,3,31,31),\n"
    "                      w (25,3,3,3), stride 2, pad 1 and max pool x\n"
    "                      (100,3,32,32) 2x2 stride 2, forward and backward, on\n"
    "                      naive, fast and onednn: median ms, speedup over\n"
    "                      naive, largest difference from naive\n"
    "  --model NAME|FILE   each node's forward and backward per backend and the\n"
    "                      whole training step (forward + backward) per backend\n"
    "  --batch-size N      batch for --model (50)\n"
    "  --input C,H,W       input shape for a model file that leaves it to the\n"
    "                      data (default 3,32,32); --classes N likewise (10)\n"
    "  --schedule S        schedule of the training step: layer (default) |\n"
    "                      batch | auto\n"
    "  --plan FILE         auto's decisions from FILE (dasecv train\n"
    "                      --save-plan), so that two runs compare like with like\n"
    "  --reps N            timed repetitions per cell (default 11)\n"
    "  --threads N         threads (default: DASECV_NUM_THREADS or all)\n";

static const dsv_backend backends[] = {DSV_BACKEND_NAIVE, DSV_BACKEND_FAST,
                                       DSV_BACKEND_ONEDNN};
enum { NB = 3 };

/* ---- one call with its own tensors ---------------------------------------- */

/* Everything a forward and a backward of one op need; the tensors are owned. */
typedef struct bcall {
    dsv_call c;
    dsv_tensor x, x2, w, b, rm, rv, y, out, dout, dx, dx2, dw, db;
    double loss;
    bool has_x2, has_w, has_bn, is_loss;
    dsv_state slot[NB];
} bcall;

static void fill_uniform(dsv_tensor *t, uint64_t *rng, double lo, double hi)
{
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        dsv_tensor_set(t, i, lo + (hi - lo) * dsv_splitmix64_uniform(rng));
}

static void bcall_free(bcall *bc)
{
    for (int k = 0; k < NB; k++)
        dsv_state_free(&bc->slot[k]);
    dsv_tensor *ts[] = {&bc->x,   &bc->x2,   &bc->w,  &bc->b,  &bc->rm, &bc->rv, &bc->y,
                        &bc->out, &bc->dout, &bc->dx, &bc->dx2, &bc->dw, &bc->db};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        dsv_tensor_free(ts[i]);
}

/* Allocates outputs and gradients from the forward's output shape and points
 * the call at every tensor. x (x2, w, b, rm, rv, y) are set already. */
static dsv_status bcall_finish(bcall *bc, uint64_t *rng)
{
    dsv_call *c = &bc->c;
    c->x = &bc->x;
    c->x2 = bc->has_x2 ? &bc->x2 : NULL;
    c->w = bc->has_w ? &bc->w : NULL;
    c->b = bc->has_w ? &bc->b : NULL;
    c->running_mean = bc->has_bn ? &bc->rm : NULL;
    c->running_var = bc->has_bn ? &bc->rv : NULL;
    int ond;
    int64_t os[DSV_MAX_DIMS];
    dsv_status s;
    if (bc->is_loss) {
        c->y = &bc->y;
        c->loss = &bc->loss;
    }
    if ((s = dsv_op_check(c, false, &ond, os)))
        return s;
    dsv_dtype dt = bc->x.dtype;
    if ((s = dsv_tensor_init_like(&bc->dx, &bc->x)))
        return s;
    if (bc->is_loss) {
        c->dx = &bc->dx; /* losses give dx in the forward */
        return DSV_OK;
    }
    if ((s = dsv_tensor_init(&bc->out, dt, ond, os)) ||
        (s = dsv_tensor_init(&bc->dout, dt, ond, os)) ||
        (bc->has_x2 && (s = dsv_tensor_init_like(&bc->dx2, &bc->x2))) ||
        (bc->has_w && ((s = dsv_tensor_init_like(&bc->dw, &bc->w)) ||
                       (s = dsv_tensor_init_like(&bc->db, &bc->b)))))
        return s;
    fill_uniform(&bc->dout, rng, -1, 1);
    return DSV_OK;
}

/* Points the call at the forward's or the backward's outputs. */
static void bcall_mode(bcall *bc, bool backward)
{
    dsv_call *c = &bc->c;
    if (bc->is_loss)
        return;
    c->out = &bc->out;
    c->dout = backward ? &bc->dout : NULL;
    c->dx = backward ? &bc->dx : NULL;
    c->dx2 = backward && bc->has_x2 ? &bc->dx2 : NULL;
    c->dw = backward && bc->has_w ? &bc->dw : NULL;
    c->db = backward && bc->has_w ? &bc->db : NULL;
}

/* Whether backend k runs this call itself (no fallback) in this direction. */
static bool bcall_runs(bcall *bc, int k, bool backward)
{
    if (!dsv_backend_available(backends[k]))
        return false;
    if (backward && bc->is_loss)
        return false;
    return dsv_pick_backend(&bc->c, backward, backends[k]) == backends[k];
}

/* One run of backend k in ms; a backward runs an untimed forward first. */
static dsv_status bcall_time(bcall *bc, int k, bool backward, double *ms)
{
    dsv_call *c = &bc->c;
    c->state = &bc->slot[k];
    dsv_status s;
    dsv_backend used;
    if (backward) {
        bcall_mode(bc, false);
        if ((s = dsv_forward(c, backends[k], &used)))
            return s;
    }
    bcall_mode(bc, backward);
    double t0 = cli_now();
    s = backward ? dsv_backward(c, backends[k], &used) : dsv_forward(c, backends[k], &used);
    *ms = (cli_now() - t0) * 1e3;
    if (!s && used != backends[k])
        s = dsv_error(DSV_BACKEND, "%s ran on %s instead of %s", dsv_op_name(c->op),
                      dsv_backend_name(used), dsv_backend_name(backends[k]));
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Medians of reps interleaved runs per backend (NAN where it does not run);
 * ms must hold NB values and work reps * NB. */
static dsv_status bcall_medians(bcall *bc, bool backward, int reps, double *work,
                                double ms[NB])
{
    dsv_status s;
    for (int k = 0; k < NB; k++) {
        ms[k] = NAN;
        double warm;
        if (bcall_runs(bc, k, backward) && (s = bcall_time(bc, k, backward, &warm)))
            return s;
    }
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < NB; k++)
            if (bcall_runs(bc, k, backward) &&
                (s = bcall_time(bc, k, backward, &work[k * reps + r])))
                return s;
    for (int k = 0; k < NB; k++)
        if (bcall_runs(bc, k, backward))
            ms[k] = median(&work[k * reps], reps);
    return DSV_OK;
}

static double max_diff(const dsv_tensor *a, const dsv_tensor *b)
{
    double m = 0;
    int64_t n = dsv_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(dsv_tensor_get(a, i) - dsv_tensor_get(b, i));
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* Largest difference of backend k's outputs from naive's (NAN if k does not
 * run): out forward; dx, dw, db backward. */
static dsv_status bcall_diff(bcall *bc, int k, bool backward, double *diff)
{
    *diff = NAN;
    if (!bcall_runs(bc, k, backward))
        return DSV_OK;
    dsv_tensor *outs[3] = {backward ? &bc->dx : &bc->out, backward && bc->has_w ? &bc->dw : NULL,
                           backward && bc->has_w ? &bc->db : NULL};
    dsv_tensor ref[3] = {{0}};
    double ms, m = 0;
    dsv_status s = bcall_time(bc, 0, backward, &ms);
    for (int i = 0; i < 3 && !s; i++)
        if (outs[i])
            s = dsv_tensor_init_like(&ref[i], outs[i]) ? dsv_error(DSV_NOMEM, "out of memory")
                                                      : dsv_tensor_copy(&ref[i], outs[i]);
    if (!s)
        s = bcall_time(bc, k, backward, &ms);
    for (int i = 0; i < 3 && !s; i++)
        if (outs[i])
            m = fmax(m, max_diff(&ref[i], outs[i]));
    for (int i = 0; i < 3; i++)
        dsv_tensor_free(&ref[i]);
    if (!s)
        *diff = m;
    return s;
}

/* ---- --course ------------------------------------------------------------- */

static dsv_status course_call(bool conv, bcall *bc, uint64_t *rng)
{
    memset(bc, 0, sizeof(*bc));
    dsv_status s;
    if (conv) {
        bc->c = dsv_call_make(DSV_OP_CONV);
        bc->c.p.stride = 2;
        bc->c.p.pad = 1;
        bc->has_w = true;
        if ((s = dsv_tensor_init(&bc->x, DSV_F32, 4, (int64_t[]){100, 3, 31, 31})) ||
            (s = dsv_tensor_init(&bc->w, DSV_F32, 4, (int64_t[]){25, 3, 3, 3})) ||
            (s = dsv_tensor_init(&bc->b, DSV_F32, 1, (int64_t[]){25})))
            return s;
        fill_uniform(&bc->w, rng, -1, 1);
        fill_uniform(&bc->b, rng, -1, 1);
    } else {
        bc->c = dsv_call_make(DSV_OP_MAX_POOL);
        bc->c.p.stride = 2;
        bc->c.p.pool_height = bc->c.p.pool_width = 2;
        if ((s = dsv_tensor_init(&bc->x, DSV_F32, 4, (int64_t[]){100, 3, 32, 32})))
            return s;
    }
    fill_uniform(&bc->x, rng, -1, 1);
    return bcall_finish(bc, rng);
}

static void print_ms(double v)
{
    if (isnan(v))
        printf(" %9s", "-");
    else
        printf(" %9.3f", v);
}

static int run_course(int reps, int threads)
{
    static const char *const names[4] = {
        "conv forward, x (100,3,31,31), w (25,3,3,3), s2 p1", "conv backward (dx, dw, db)",
        "max pool forward, x (100,3,32,32), 2x2 s2", "max pool backward (dx)"};
    uint64_t rng = 231;
    double *work = malloc(sizeof(double) * (size_t)reps * NB);
    if (!work) {
        fprintf(stderr, "dasecv bench: out of memory\n");
        return 1;
    }
    printf("course cells, float32, %d threads, median of %d interleaved repetitions (ms)\n",
           threads, reps);
    printf("%-52s %9s %9s %9s %8s %8s %10s %10s\n", "cell", "naive", "fast", "onednn",
           "fast x", "onednn x", "fast diff", "onednn diff");
    int rc = 0;
    for (int cell = 0; cell < 4 && !rc; cell++) {
        bool conv = cell < 2, backward = cell % 2;
        bcall bc;
        double ms[NB], diff[NB] = {0, NAN, NAN};
        dsv_status s = course_call(conv, &bc, &rng);
        bc.c.nthreads = threads;
        if (!s)
            s = bcall_medians(&bc, backward, reps, work, ms);
        for (int k = 1; k < NB && !s; k++)
            s = bcall_diff(&bc, k, backward, &diff[k]);
        if (s) {
            fprintf(stderr, "dasecv bench: %s: %s\n", names[cell], dsv_errmsg());
            rc = 1;
        } else {
            printf("%-52s", names[cell]);
            for (int k = 0; k < NB; k++)
                print_ms(ms[k]);
            for (int k = 1; k < NB; k++)
                if (isnan(ms[k]))
                    printf(" %8s", "-");
                else
                    printf(" %7.1fx", ms[0] / ms[k]);
            for (int k = 1; k < NB; k++)
                if (isnan(diff[k]))
                    printf(" %10s", "-");
                else
                    printf(" %10.2e", diff[k]);
            printf("\n");
        }
        bcall_free(&bc);
    }
    free(work);
    return rc;
}

/* ---- --model -------------------------------------------------------------- */

/* The call of node i on fresh tensors for batch n (the model's parameters). */
static dsv_status node_call(dsv_graph *g, int i, int64_t n, bcall *bc, uint64_t *rng)
{
    memset(bc, 0, sizeof(*bc));
    dsv_node_desc d;
    dsv_status s;
    int nd;
    int64_t sh[DSV_MAX_DIMS];
    dsv_dtype dt = dsv_graph_dtype(g);
    if ((s = dsv_graph_node_info(g, i, &d, NULL)))
        return s;
    bc->c = dsv_call_make(d.op);
    bc->c.p = d.p;
    bc->c.p.train = true;
    if ((s = dsv_graph_value_shape(g, d.x, n, &nd, sh)) ||
        (s = dsv_tensor_init(&bc->x, dt, nd, sh)))
        return s;
    fill_uniform(&bc->x, rng, -1, 1);
    if (d.x2 != DSV_NO_VALUE) {
        bc->has_x2 = true;
        if ((s = dsv_graph_value_shape(g, d.x2, n, &nd, sh)) ||
            (s = dsv_tensor_init(&bc->x2, dt, nd, sh)))
            return s;
        fill_uniform(&bc->x2, rng, -1, 1);
    }
    if (d.w >= 0) {
        bc->has_w = true;
        dsv_tensor w = dsv_graph_param(g, d.w), b = dsv_graph_param(g, d.b);
        if ((s = dsv_tensor_init_like(&bc->w, &w)) || (s = dsv_tensor_copy(&bc->w, &w)) ||
            (s = dsv_tensor_init_like(&bc->b, &b)) || (s = dsv_tensor_copy(&bc->b, &b)))
            return s;
    }
    if (d.running_mean >= 0) {
        bc->has_bn = true;
        if ((s = dsv_tensor_init_like(&bc->rm, &bc->w)) ||
            (s = dsv_tensor_init_like(&bc->rv, &bc->w)))
            return s;
        fill_uniform(&bc->rv, rng, 1, 1);
    }
    const dsv_op_info *info = dsv_op_get_info(d.op);
    if (info && info->is_loss) {
        bc->is_loss = true;
        int64_t classes = dsv_tensor_row_size(&bc->x);
        if ((s = dsv_tensor_init(&bc->y, DSV_I32, 1, &n)))
            return s;
        for (int64_t r = 0; r < n; r++)
            ((int32_t *)bc->y.data)[r] = (int32_t)(dsv_splitmix64(rng) % (uint64_t)classes);
    }
    return bcall_finish(bc, rng);
}

/* The training step on each backend, one model each (the same weights): on
 * one model, the step after a backend switch hands every node's state to
 * the new backend, freeing and rebuilding it, a cost no training run pays. */
static dsv_status time_steps(dsv_model *m[NB + 1], int64_t n, dsv_schedule sched,
                             int threads, int reps, double *work, double ms[NB + 1],
                             uint64_t *rng)
{
    dsv_graph *g = dsv_model_graph(m[0]);
    const dsv_model_options *o = dsv_model_options_of(m[0]);
    int64_t xs[4] = {n, o->input_dim[0], o->input_dim[1], o->input_dim[2]};
    dsv_tensor x = {0}, y = {0};
    dsv_status s;
    if ((s = dsv_tensor_init(&x, dsv_graph_dtype(g), 4, xs)) ||
        (s = dsv_tensor_init(&y, DSV_I32, 1, &n)))
        goto out;
    fill_uniform(&x, rng, -1, 1);
    for (int64_t r = 0; r < n; r++)
        ((int32_t *)y.data)[r] = (int32_t)(dsv_splitmix64(rng) % (uint64_t)o->num_classes);
    /* naive, fast, onednn, then auto: a backend that is not built in is NAN */
    dsv_backend want[NB + 1] = {DSV_BACKEND_NAIVE, DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN,
                                DSV_BACKEND_AUTO};
    dsv_exec_options eo = dsv_exec_options_default();
    eo.schedule = sched;
    eo.threads = threads;
    double loss;
    for (int r = -1; r < reps && !s; r++) /* r = -1: warm-up (and auto's timing) */
        for (int k = 0; k <= NB && !s; k++) {
            if (!dsv_backend_available(want[k]))
                continue;
            eo.backend = want[k];
            double t0 = cli_now();
            s = dsv_graph_train_step(dsv_model_graph(m[k]), &eo, &x, &y, &loss);
            if (r >= 0)
                work[k * reps + r] = (cli_now() - t0) * 1e3;
        }
    for (int k = 0; k <= NB && !s; k++)
        ms[k] = dsv_backend_available(want[k]) ? median(&work[k * reps], reps) : NAN;
out:
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    return s;
}

/* Fused sandwiches on the fast backend: the training step at batch n, an
 * inference of the same batch and a batch-1 inference with fusion off,
 * conv+relu only, conv+relu+max pool, affine+relu only and all of them,
 * repetitions interleaved; ms[3 * cfg + (0 train, 1 infer n, 2 infer 1)]
 * medians. The graph's own switches are restored from its plan afterwards. */
enum { NFUSE = 5, NFCOL = 3 };
static const char *const fuse_names[NFUSE] = {"unfused", "conv+relu", "conv+relu+pool",
                                              "affine+relu", "all"};
/* per configuration: conv_relu, affine_relu, conv_relu_pool */
static const bool fuse_on[NFUSE][3] = {
    {0, 0, 0}, {1, 0, 0}, {1, 0, 1}, {0, 1, 0}, {1, 1, 1}};

static dsv_status time_fusion(dsv_model *m, int64_t n, dsv_schedule sched, int threads,
                              int reps, double *work, double ms[NFCOL * NFUSE], uint64_t *rng)
{
    dsv_graph *g = dsv_model_graph(m);
    const dsv_model_options *o = dsv_model_options_of(m);
    int64_t xs[4] = {n, o->input_dim[0], o->input_dim[1], o->input_dim[2]};
    int64_t ss[2] = {n, o->num_classes};
    dsv_tensor x = {0}, y = {0}, sc = {0};
    char *saved = NULL;
    dsv_status s;
    if ((s = dsv_graph_plan_text(g, &saved)) ||
        (s = dsv_tensor_init(&x, dsv_graph_dtype(g), 4, xs)) ||
        (s = dsv_tensor_init(&y, DSV_I32, 1, &n)) ||
        (s = dsv_tensor_init(&sc, dsv_graph_dtype(g), 2, ss)))
        goto out;
    fill_uniform(&x, rng, -1, 1);
    for (int64_t r = 0; r < n; r++)
        ((int32_t *)y.data)[r] = (int32_t)(dsv_splitmix64(rng) % (uint64_t)o->num_classes);
    dsv_tensor x1 = dsv_tensor_slice(&x, 0, 1), sc1 = dsv_tensor_slice(&sc, 0, 1);
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = DSV_BACKEND_FAST;
    eo.threads = threads;
    double loss;
    for (int r = -1; r < reps && !s; r++)
        for (int k = 0; k < NFUSE && !s; k++) {
            for (int pat = 0; pat < 3; pat++)
                dsv_graph_set_fusion(g, pat, fuse_on[k][pat]);
            eo.schedule = sched;
            double t[NFCOL + 1];
            t[0] = cli_now();
            s = dsv_graph_train_step(g, &eo, &x, &y, &loss);
            t[1] = cli_now();
            eo.schedule = DSV_SCHEDULE_LAYER;
            if (!s)
                s = dsv_graph_infer(g, &eo, &x, &sc);
            t[2] = cli_now();
            if (!s)
                s = dsv_graph_infer(g, &eo, &x1, &sc1);
            t[3] = cli_now();
            for (int c = 0; c < NFCOL && r >= 0; c++)
                work[(NFCOL * k + c) * reps + r] = (t[c + 1] - t[c]) * 1e3;
        }
    for (int k = 0; k < NFCOL * NFUSE && !s; k++)
        ms[k] = median(&work[k * reps], reps);
    if (!s)
        s = dsv_graph_plan_apply(g, saved, "bench");
out:
    free(saved);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&sc);
    return s;
}

typedef struct model_opts {
    const char *model, *plan;
    int batch, reps, threads, classes, in[3];
    dsv_schedule schedule;
} model_opts;

/* The model of --model (input and classes from the options, else 3x32x32
 * and 10), with --plan's decisions; 0, else the exit status. */
static int open_model(const model_opts *mo, dsv_model **m)
{
    dsv_model_options o = dsv_model_options_default();
    o.num_classes = mo->classes;
    memcpy(o.input_dim, mo->in, sizeof(o.input_dim));
    *m = NULL;
    dsv_status st = dsv_model_create_from_file(m, mo->model, &o);
    if (st == DSV_INVALID && strstr(dsv_errmsg(), "no dataset gives")) {
        for (int d = 0; d < 3; d++)
            o.input_dim[d] = mo->in[d] ? mo->in[d] : d == 0 ? 3 : 32;
        o.num_classes = mo->classes ? mo->classes : 10;
        st = dsv_model_create_from_file(m, mo->model, &o);
    }
    if (st) {
        fprintf(stderr, "dasecv bench: %s\n", dsv_errmsg());
        return st == DSV_INVALID ? 2 : 1;
    }
    if (mo->plan && !cli_plan_load("bench", *m, mo->plan)) {
        dsv_model_destroy(*m);
        *m = NULL;
        return 2;
    }
    return 0;
}

static int run_model(const model_opts *mo)
{
    dsv_model *m, *per[NB + 1] = {NULL};
    int rc = open_model(mo, &m);
    if (rc)
        return rc;
    dsv_graph *g = dsv_model_graph(m);
    int threads = mo->threads > 0 ? mo->threads : dsv_get_num_threads();
    int reps = mo->reps;
    double *work = malloc(sizeof(double) * (size_t)reps * (NFCOL * NFUSE));
    uint64_t rng = 50;
    dsv_status st;
    rc = 1;
    if (!work) {
        fprintf(stderr, "dasecv bench: out of memory\n");
        goto out;
    }
    const dsv_model_options *mopt = dsv_model_options_of(m);
    printf("model %s: input %dx%dx%d, %d classes, %s, batch %d, %d threads, median of %d "
           "interleaved repetitions (ms)\n",
           mo->model, mopt->input_dim[0], mopt->input_dim[1], mopt->input_dim[2],
           mopt->num_classes, dsv_dtype_name(dsv_graph_dtype(g)), mo->batch, threads, reps);
    printf("%-16s %-18s %9s %9s %9s  %9s %9s %9s  %s\n", "node", "op", "fwd naive", "fast",
           "onednn", "bwd naive", "fast", "onednn", "auto fwd/bwd");
    double tot[2][NB] = {{0}};
    for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
        bcall bc;
        double ms[2][NB];
        dsv_status s = node_call(g, i, mo->batch, &bc, &rng);
        bc.c.nthreads = threads;
        for (int dir = 0; dir < 2 && !s; dir++)
            s = bcall_medians(&bc, dir, reps, work, ms[dir]);
        if (s) {
            fprintf(stderr, "dasecv bench: node '%s': %s\n", dsv_graph_node_name(g, i),
                    dsv_errmsg());
            bcall_free(&bc);
            goto out;
        }
        dsv_backend af, ab;
        dsv_graph_node_backends(g, i, DSV_BACKEND_AUTO, &af, &ab);
        printf("%-16s %-18s", dsv_graph_node_name(g, i), dsv_op_name(bc.c.op));
        for (int dir = 0; dir < 2; dir++) {
            for (int k = 0; k < NB; k++) {
                print_ms(ms[dir][k]);
                /* a backend that does not run a node costs what naive does */
                tot[dir][k] += isnan(ms[dir][k]) ? (isnan(ms[dir][0]) ? 0 : ms[dir][0])
                                                 : ms[dir][k];
            }
            printf(" ");
        }
        printf(" %s/%s\n", dsv_backend_name(af),
               ab == DSV_BACKEND_COUNT ? "-" : dsv_backend_name(ab));
        bcall_free(&bc);
    }
    printf("%-16s %-18s", "sum of nodes", "(naive where not run)");
    for (int dir = 0; dir < 2; dir++) {
        for (int k = 0; k < NB; k++)
            print_ms(dsv_backend_available(backends[k]) ? tot[dir][k] : NAN);
        printf(" ");
    }
    double step[NB + 1];
    per[0] = m;
    for (int k = 1; k <= NB; k++)
        if ((rc = open_model(mo, &per[k])) != 0)
            goto out;
    rc = 1;
    if ((st = time_steps(per, mo->batch, mo->schedule, threads, reps, work, step, &rng))) {
        fprintf(stderr, "\ndasecv bench: training step: %s\n", dsv_errmsg());
        goto out;
    }
    printf("\n\ntraining step (forward + backward, %s schedule%s):", dsv_schedule_name(mo->schedule),
           mo->schedule == DSV_SCHEDULE_AUTO ? ", auto chose " : "");
    if (mo->schedule == DSV_SCHEDULE_AUTO)
        printf("%s", dsv_schedule_name(dsv_model_schedule_used(per[NB])));
    static const char *const step_names[NB + 1] = {"naive", "fast", "onednn", "auto"};
    for (int k = 0; k <= NB; k++)
        if (!isnan(step[k]))
            printf("  %s %.3f", step_names[k], step[k]);
    printf(" ms\n");
    double fz[NFCOL * NFUSE];
    if ((st = time_fusion(m, mo->batch, mo->schedule, threads, reps, work, fz, &rng))) {
        fprintf(stderr, "\ndasecv bench: fusion: %s\n", dsv_errmsg());
        goto out;
    }
    char col[32];
    snprintf(col, sizeof(col), "infer n=%d", mo->batch);
    printf("fused sandwiches (fast backend; median ms):\n  %-14s %10s %12s %12s\n", "",
           "train step", col, "infer n=1");
    for (int k = 0; k < NFUSE; k++)
        printf("  %-14s %10.3f %12.3f %12.3f\n", fuse_names[k], fz[NFCOL * k],
               fz[NFCOL * k + 1], fz[NFCOL * k + 2]);
    rc = 0;
out:
    free(work);
    for (int k = 1; k <= NB; k++)
        dsv_model_destroy(per[k]);
    dsv_model_destroy(m);
    return rc;
}

/* ---- options --------------------------------------------------------------- */

static bool parse_input(cli_parser *p, int in[3])
{
    const char *v = cli_value(p);
    char tail;
    if (!v)
        return false;
    if (sscanf(v, "%d,%d,%d%c", &in[0], &in[1], &in[2], &tail) != 3 || in[0] < 1 ||
        in[1] < 1 || in[2] < 1 || in[0] > (1 << 24) || in[1] > (1 << 24) || in[2] > (1 << 24)) {
        fprintf(stderr, "dasecv bench: --input: '%s' is not C,H,W (three sizes >= 1)\n", v);
        return false;
    }
    return true;
}

int dsv_cmd_bench(int argc, char **argv)
{
    model_opts mo = {.batch = 50, .reps = 11, .schedule = DSV_SCHEDULE_LAYER};
    bool course = false, ok = true;
    cli_parser p = cli_parser_make("bench", argc, argv);
    int k;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2)
            return cli_usage_error(&p, "unexpected argument (see --help)");
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--course")) {
            ok = cli_flag(&p), course = true;
        } else if (cli_is(&p, "--model")) {
            ok = cli_string(&p, &mo.model);
        } else if (cli_is(&p, "--plan")) {
            ok = cli_string(&p, &mo.plan);
        } else if (cli_is(&p, "--batch-size")) {
            ok = cli_int(&p, 1, 1 << 20, &mo.batch);
        } else if (cli_is(&p, "--reps")) {
            ok = cli_int(&p, 1, 100000, &mo.reps);
        } else if (cli_is(&p, "--threads")) {
            ok = cli_int(&p, 1, 4096, &mo.threads);
        } else if (cli_is(&p, "--classes")) {
            ok = cli_int(&p, 1, 1 << 24, &mo.classes);
        } else if (cli_is(&p, "--input")) {
            ok = parse_input(&p, mo.in);
        } else if (cli_is(&p, "--schedule")) {
            const char *v = cli_value(&p);
            ok = v && dsv_schedule_from_name(v, &mo.schedule) == DSV_OK;
            if (v && !ok)
                fprintf(stderr, "dasecv bench: --schedule: '%s' is not layer, batch or auto\n",
                        v);
        } else {
            return cli_unknown(&p);
        }
        if (!ok)
            return 2;
    }
    if (course == (mo.model != NULL))
        return cli_usage_error(&p, "give --course or --model NAME|FILE");
    if (course && (mo.plan || mo.classes || mo.in[0]))
        return cli_usage_error(&p, "--plan, --classes and --input go with --model");
    if (mo.threads > 0)
        dsv_set_num_threads(mo.threads);
    int threads = mo.threads > 0 ? mo.threads : dsv_get_num_threads();
    int rc = course ? run_course(mo.reps, threads) : run_model(&mo);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "dasecv bench: writing to standard output failed\n");
        rc = 1;
    }
    return rc;
}
