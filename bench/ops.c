/*
 * Single-op benchmarks: one dsv_call per benchmark, run through the public
 * dsv_forward / dsv_backward on one named backend, with its own state slot so
 * backends that cache primitives or buffers (oneDNN, fast) reuse them the way
 * a graph node does.
 *
 * What must stay true: a benchmark is registered only where the requested
 * backend really runs the call (no silent fallback to naive), and each step
 * checks the backend that ran. Backward steps are timed after an untimed
 * forward on the same state, as in a training step; backward computes every
 * gradient (dx, and dw, db where the op has weights).
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "fast.h" /* dsv_fast_conv_set_direct (the fast_im2col variant), dsv_fast_sgemm */
#include "shim.h"

typedef struct op_case {
    const char *name;    /* "conv_fwd/cell" */
    dsv_op op;
    bool backward;
    int xnd, wnd;        /* wnd 0: no weights */
    int64_t x[DSV_MAX_DIMS], w[DSV_MAX_DIMS];
    int stride, pad, pool;
    dsv_dtype dt;        /* DSV_F32 unless given */
} op_case;

/* The course's timing cells (fast_layers comparison in the ConvolutionalNetworks
 * notebook), the layers of ThreeLayerConvNet on a CIFAR-10 batch of 50, and
 * batch normalization (train mode) of its activations: spatial after the
 * conv (50, 32, 32, 32), and over features after the hidden affine (50, 100). */
static const op_case cases[] = {
    {"conv_fwd/cell", DSV_OP_CONV, false, 4, 4, {100, 3, 31, 31}, {25, 3, 3, 3}, 2, 1, 0, DSV_F32},
    {"conv_bwd/cell", DSV_OP_CONV, true, 4, 4, {100, 3, 31, 31}, {25, 3, 3, 3}, 2, 1, 0, DSV_F32},
    {"pool_fwd/cell", DSV_OP_MAX_POOL, false, 4, 0, {100, 3, 32, 32}, {0}, 2, 0, 2, DSV_F32},
    {"pool_bwd/cell", DSV_OP_MAX_POOL, true, 4, 0, {100, 3, 32, 32}, {0}, 2, 0, 2, DSV_F32},
    {"conv_fwd/cifar", DSV_OP_CONV, false, 4, 4, {50, 3, 32, 32}, {32, 3, 7, 7}, 1, 3, 0, DSV_F32},
    {"conv_bwd/cifar", DSV_OP_CONV, true, 4, 4, {50, 3, 32, 32}, {32, 3, 7, 7}, 1, 3, 0, DSV_F32},
    {"conv_fwd/deep", DSV_OP_CONV, false, 4, 4, {50, 32, 16, 16}, {32, 32, 3, 3}, 1, 1, 0, DSV_F32},
    {"conv_bwd/deep", DSV_OP_CONV, true, 4, 4, {50, 32, 16, 16}, {32, 32, 3, 3}, 1, 1, 0, DSV_F32},
    {"relu_fwd/cifar", DSV_OP_RELU, false, 4, 0, {50, 32, 32, 32}, {0}, 1, 0, 0, DSV_F32},
    {"relu_bwd/cifar", DSV_OP_RELU, true, 4, 0, {50, 32, 32, 32}, {0}, 1, 0, 0, DSV_F32},
    {"pool_fwd/cifar", DSV_OP_MAX_POOL, false, 4, 0, {50, 32, 32, 32}, {0}, 2, 0, 2, DSV_F32},
    {"pool_bwd/cifar", DSV_OP_MAX_POOL, true, 4, 0, {50, 32, 32, 32}, {0}, 2, 0, 2, DSV_F32},
    {"affine_fwd/cifar", DSV_OP_AFFINE, false, 2, 2, {50, 8192}, {8192, 100}, 1, 0, 0, DSV_F32},
    {"affine_bwd/cifar", DSV_OP_AFFINE, true, 2, 2, {50, 8192}, {8192, 100}, 1, 0, 0, DSV_F32},
    {"sbn_fwd/cifar", DSV_OP_SPATIAL_BATCHNORM, false, 4, 1, {50, 32, 32, 32}, {32}, 1, 0, 0,
     DSV_F32},
    {"sbn_bwd/cifar", DSV_OP_SPATIAL_BATCHNORM, true, 4, 1, {50, 32, 32, 32}, {32}, 1, 0, 0,
     DSV_F32},
    {"bn_fwd/cifar", DSV_OP_BATCHNORM, false, 2, 1, {50, 100}, {100}, 1, 0, 0, DSV_F32},
    {"bn_bwd/cifar", DSV_OP_BATCHNORM, true, 2, 1, {50, 100}, {100}, 1, 0, 0, DSV_F32},
    /* the course's cells in float64, as its notebook runs them */
    {"conv_fwd/cell_f64", DSV_OP_CONV, false, 4, 4, {100, 3, 31, 31}, {25, 3, 3, 3}, 2, 1, 0,
     DSV_F64},
    {"conv_bwd/cell_f64", DSV_OP_CONV, true, 4, 4, {100, 3, 31, 31}, {25, 3, 3, 3}, 2, 1, 0,
     DSV_F64},
    {"pool_fwd/cell_f64", DSV_OP_MAX_POOL, false, 4, 0, {100, 3, 32, 32}, {0}, 2, 0, 2,
     DSV_F64},
    {"pool_bwd/cell_f64", DSV_OP_MAX_POOL, true, 4, 0, {100, 3, 32, 32}, {0}, 2, 0, 2,
     DSV_F64},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static const dsv_backend backends[] = {DSV_BACKEND_NAIVE, DSV_BACKEND_FAST,
                                       DSV_BACKEND_ONEDNN};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

typedef struct op_arg {
    const op_case *oc;
    dsv_backend want;
    bool im2col; /* fast conv with its direct kernels switched off */
    char name[64];
} op_arg;

/* every case on every backend, plus fast_im2col for the convolutions */
static op_arg args[NCASES * (NBACKENDS + 1)];
static dsv_bench benches[NCASES * (NBACKENDS + 1)];

/* Tensors and the call of one running benchmark. */
typedef struct op_state {
    dsv_tensor x, w, b, out, dout, dx, dw, db;
    dsv_tensor rm, rv; /* batch norms: running statistics */
    dsv_call c;
    dsv_state slot;
    dsv_backend want;
} op_state;

/* A call of the case's op and parameters over the given tensors. */
static dsv_call make_call(const op_case *oc, dsv_tensor *x, dsv_tensor *w,
                          dsv_tensor *b)
{
    dsv_call c = dsv_call_make(oc->op);
    c.p.stride = oc->stride;
    c.p.pad = oc->pad;
    if (oc->pool)
        c.p.pool_height = c.p.pool_width = oc->pool;
    c.x = x;
    if (oc->wnd) {
        c.w = w;
        c.b = b;
    }
    return c;
}

static int64_t bias_len(const op_case *oc)
{
    return oc->op == DSV_OP_CONV ? oc->w[0] : oc->w[oc->wnd - 1];
}

/* Does `want` itself run this case (forward, and backward if timed)? The naive
 * table is consulted directly because dispatch never falls back from it. */
static bool runs_on(const op_case *oc, dsv_backend want, char *why, size_t n)
{
    /* Shape-only views: validation and supports() read shapes, never data,
       so one dummy element stands in for every buffer. */
    static double dummy;
    int64_t bs = oc->wnd ? bias_len(oc) : 1, one = 1;
    dsv_tensor x = dsv_tensor_wrap(&dummy, oc->dt, oc->xnd, oc->x);
    dsv_tensor w = oc->wnd ? dsv_tensor_wrap(&dummy, oc->dt, oc->wnd, oc->w)
                           : dsv_tensor_wrap(&dummy, oc->dt, 1, &one);
    dsv_tensor b = dsv_tensor_wrap(&dummy, oc->dt, 1, &bs);
    dsv_call c = make_call(oc, &x, &w, &b);
    int nd;
    int64_t os[DSV_MAX_DIMS];
    dsv_status s = dsv_op_check(&c, false, &nd, os);
    if (s) {
        snprintf(why, n, "%s: %s", oc->name, dsv_errmsg());
        return false;
    }
    dsv_tensor out = dsv_tensor_wrap(&dummy, oc->dt, nd, os);
    c.out = &out;
    c.dout = &out;
    c.dx = &x;
    if (oc->wnd) {
        c.dw = &w;
        c.db = &b;
    }
    const dsv_backend_table *t = dsv_backend_get(want);
    if (!t) {
        snprintf(why, n, "%s is not built in", dsv_backend_name(want));
        return false;
    }
    for (int bwd = 0; bwd <= (int)oc->backward; bwd++) {
        const dsv_kernel *k = &t->kernels[oc->op];
        if (!(bwd ? k->backward : k->forward) ||
            dsv_pick_backend(&c, bwd, want) != want) {
            snprintf(why, n, "%s has no %s %s kernel for this call",
                     dsv_backend_name(want), dsv_op_name(oc->op),
                     bwd ? "backward" : "forward");
            return false;
        }
    }
    return true;
}

static void op_teardown(void *state)
{
    op_state *st = state;
    if (!st)
        return;
    dsv_fast_conv_set_direct(true);
    dsv_state_free(&st->slot);
    dsv_tensor *all[] = {&st->x,    &st->w,  &st->b,  &st->out, &st->dout,
                         &st->dx,   &st->dw, &st->db, &st->rm,  &st->rv};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
    dsv_free(st);
}

static int run_checked(op_state *st, bool backward, char *msg, size_t n)
{
    dsv_backend used;
    dsv_status s = backward ? dsv_backward(&st->c, st->want, &used)
                            : dsv_forward(&st->c, st->want, &used);
    if (s) {
        dsv_bench_errmsg(msg, n, backward ? "dsv_backward" : "dsv_forward", s);
        return 1;
    }
    if (used != st->want) {
        snprintf(msg, n, "asked for %s, %s ran", dsv_backend_name(st->want),
                 dsv_backend_name(used));
        return 1;
    }
    return 0;
}

static int op_forward(void *state, char *msg, size_t n)
{
    return run_checked(state, false, msg, n);
}

static int op_backward(void *state, char *msg, size_t n)
{
    return run_checked(state, true, msg, n);
}

static dsv_status alloc_tensors(op_state *st, const op_case *oc)
{
    int64_t bs = oc->wnd ? bias_len(oc) : 1;
    dsv_status s = dsv_tensor_init(&st->x, oc->dt, oc->xnd, oc->x);
    if (!s && oc->wnd)
        s = dsv_tensor_init(&st->w, oc->dt, oc->wnd, oc->w);
    if (!s && oc->wnd)
        s = dsv_tensor_init(&st->b, oc->dt, 1, &bs);
    if (s)
        return s;
    dsv_bench_fill(&st->x, 1, 1.0);
    if (oc->wnd) {
        dsv_bench_fill(&st->w, 2, 1e-1);
        dsv_bench_fill(&st->b, 3, 1e-1);
    }
    st->c = make_call(oc, &st->x, &st->w, &st->b);
    int nd;
    int64_t os[DSV_MAX_DIMS];
    if ((s = dsv_op_check(&st->c, false, &nd, os)) ||
        (s = dsv_tensor_init(&st->out, oc->dt, nd, os)) ||
        (s = dsv_tensor_init(&st->dout, oc->dt, nd, os)) ||
        (s = dsv_tensor_init_like(&st->dx, &st->x)))
        return s;
    if (oc->wnd && ((s = dsv_tensor_init_like(&st->dw, &st->w)) ||
                    (s = dsv_tensor_init_like(&st->db, &st->b))))
        return s;
    dsv_bench_fill(&st->dout, 4, 1.0);
    if (oc->op == DSV_OP_BATCHNORM || oc->op == DSV_OP_SPATIAL_BATCHNORM) {
        /* the forward updates them (train mode), as in a training step */
        if ((s = dsv_tensor_init(&st->rm, oc->dt, 1, &bs)) ||
            (s = dsv_tensor_init(&st->rv, oc->dt, 1, &bs)))
            return s;
        for (int64_t i = 0; i < bs; i++) {
            dsv_tensor_set(&st->rm, i, 0.0);
            dsv_tensor_set(&st->rv, i, 1.0);
        }
        st->c.running_mean = &st->rm;
        st->c.running_var = &st->rv;
    }
    st->c.out = &st->out;
    if (oc->backward) {
        st->c.dout = &st->dout;
        st->c.dx = &st->dx;
        if (oc->wnd) {
            st->c.dw = &st->dw;
            st->c.db = &st->db;
        }
    }
    st->c.nthreads = 0;
    st->c.state = &st->slot;
    return DSV_OK;
}

static dsv_bench_result op_setup(const void *arg, void **state, char *label,
                                 size_t label_n, char *msg, size_t msg_n)
{
    const op_arg *a = arg;
    if (!runs_on(a->oc, a->want, msg, msg_n))
        return DSV_BENCH_SKIP;
    op_state *st = dsv_alloc(sizeof(*st));
    if (!st) {
        snprintf(msg, msg_n, "out of memory");
        return DSV_BENCH_FAIL;
    }
    memset(st, 0, sizeof(*st));
    st->want = a->want;
    /* benchmarks run one at a time; teardown switches it back */
    dsv_fast_conv_set_direct(!a->im2col);
    dsv_status s = alloc_tensors(st, a->oc);
    if (s) {
        dsv_bench_errmsg(msg, msg_n, "setup", s);
        op_teardown(st);
        return DSV_BENCH_FAIL;
    }
    /* One untimed run: builds cached primitives and checks the call works. */
    if (op_forward(st, msg, msg_n) ||
        (a->oc->backward && op_backward(st, msg, msg_n))) {
        op_teardown(st);
        return DSV_BENCH_FAIL;
    }
    snprintf(label, label_n, "%s%s threads=%d", dsv_backend_name(a->want),
             a->im2col ? " (im2col)" : "", dsv_get_num_threads());
    *state = st;
    return DSV_BENCH_OK;
}

/* Multiply-adds count two; pooling, relu and the norms are reported without
 * FLOP/s. */
static double case_flops(const op_case *oc)
{
    double f = 0;
    if (oc->op == DSV_OP_CONV) {
        int64_t ho = (oc->x[2] + 2 * oc->pad - oc->w[2]) / oc->stride + 1;
        int64_t wo = (oc->x[3] + 2 * oc->pad - oc->w[3]) / oc->stride + 1;
        f = 2.0 * (double)(oc->x[0] * oc->w[0] * ho * wo) *
            (double)(oc->w[1] * oc->w[2] * oc->w[3]);
    } else if (oc->op == DSV_OP_AFFINE) {
        f = 2.0 * (double)oc->x[0] * (double)oc->w[0] * (double)oc->w[1];
    }
    return oc->backward ? 2 * f : f; /* dx and dw each cost a forward */
}

void dsv_bench_register_ops(void)
{
    size_t k = 0;
    char why[256];
    for (size_t i = 0; i < NCASES; i++)
        for (size_t j = 0; j <= NBACKENDS; j++) {
            /* j == NBACKENDS: fast's im2col path, convolutions only */
            bool im2col = j == NBACKENDS;
            dsv_backend want = im2col ? DSV_BACKEND_FAST : backends[j];
            if ((im2col && (cases[i].op != DSV_OP_CONV || cases[i].dt != DSV_F32)) ||
                !runs_on(&cases[i], want, why, sizeof(why)))
                continue; /* compare.py shows it as missing */
            op_arg *a = &args[k];
            a->oc = &cases[i];
            a->want = want;
            a->im2col = im2col;
            snprintf(a->name, sizeof(a->name), "%s/%s%s", cases[i].name,
                     dsv_backend_name(want), im2col ? "_im2col" : "");
            benches[k] = (dsv_bench){
                .name = a->name,
                .arg = a,
                .setup = op_setup,
                .prepare = cases[i].backward ? op_forward : NULL,
                .step = cases[i].backward ? op_backward : op_forward,
                .teardown = op_teardown,
                .flops = case_flops(&cases[i]),
            };
            dsv_bench_register(&benches[k]);
            k++;
        }
}

/* ---- sgemm peak ---------------------------------------------------------- */

/* The fast backend's sgemm on large square matrices, C = A B: the machine's
 * attainable float32 GEMM rate, against which whole-model FLOP/s are read
 * (tools/compare_train.py). One size per benchmark; the operands are filled
 * once and every step overwrites C (beta 0). */
typedef struct gemm_state {
    int64_t n;
    float *a, *b, *c;
} gemm_state;

static const int64_t gemm_sizes[] = {1024, 2048};
enum { NGEMM = sizeof(gemm_sizes) / sizeof(gemm_sizes[0]) };
static char gemm_names[NGEMM][32];
static dsv_bench gemm_benches[NGEMM];

static void gemm_teardown(void *state)
{
    gemm_state *st = state;
    if (!st)
        return;
    dsv_free(st->a);
    dsv_free(st->b);
    dsv_free(st->c);
    dsv_free(st);
}

static dsv_bench_result gemm_setup(const void *arg, void **state, char *label,
                                   size_t label_n, char *msg, size_t msg_n)
{
    const int64_t n = *(const int64_t *)arg;
    const size_t bytes = (size_t)(n * n) * sizeof(float);
    gemm_state *st = dsv_alloc(sizeof(*st));
    if (st) {
        *st = (gemm_state){.n = n, .a = dsv_alloc(bytes), .b = dsv_alloc(bytes),
                           .c = dsv_alloc(bytes)};
    }
    if (!st || !st->a || !st->b || !st->c) {
        gemm_teardown(st);
        snprintf(msg, msg_n, "setup: no memory for three %lldx%lld matrices",
                 (long long)n, (long long)n);
        return DSV_BENCH_FAIL;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n * n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        st->a[i] = (float)((x >> 40) & 0xffff) / 65536.0f - 0.5f;
        st->b[i] = (float)((x >> 16) & 0xffff) / 65536.0f - 0.5f;
    }
    snprintf(label, label_n, "fast %s threads=%d", dsv_fast_isa_name(dsv_fast_get_isa()),
             dsv_get_num_threads());
    *state = st;
    return DSV_BENCH_OK;
}

static int gemm_step(void *state, char *msg, size_t n)
{
    (void)msg, (void)n;
    gemm_state *st = state;
    dsv_fast_sgemm(false, false, st->n, st->n, st->n, st->a, st->n, st->b, st->n, 0.0f,
                   st->c, st->n, dsv_get_num_threads());
    return 0;
}

void dsv_bench_register_gemm(void)
{
    for (int i = 0; i < NGEMM; i++) {
        int64_t n = gemm_sizes[i];
        snprintf(gemm_names[i], sizeof(gemm_names[i]), "sgemm/%lld/fast", (long long)n);
        gemm_benches[i] = (dsv_bench){
            .name = gemm_names[i],
            .arg = &gemm_sizes[i],
            .setup = gemm_setup,
            .step = gemm_step,
            .teardown = gemm_teardown,
            .flops = 2.0 * (double)n * (double)n * (double)n,
        };
        dsv_bench_register(&gemm_benches[i]);
    }
}
