/*
 * `dasecv op` end to end: inputs are written with dsv_npy_save, the binary
 * ($DASECV) runs as a subprocess, and its outputs are read back and compared
 * with dsv_forward/dsv_backward run in this process on the same tensors.
 * Error cases must exit 2 (bad request) or 1 (failure while running) with a
 * single "dasecv op: ..." line on stderr.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

/* Scratch paths that stay valid for the whole test (tu_scratch reuses one
 * buffer). */
static const char *sp(const char *name)
{
    static char pool[128][1024];
    static int next;
    char *p = pool[next++ % 128];
    char full[64];
    snprintf(full, sizeof(full), "op_%s", name);
    snprintf(p, 1024, "%s", tu_scratch(full));
    return p;
}

static char out_text[8192], err_text[8192];

static void read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs $DASECV with the NULL-terminated arguments; returns its exit code and
 * leaves its stdout/stderr in out_text/err_text. */
static int run_cli(const char *arg0, ...)
{
    const char *exe = getenv("DASECV");
    if (!exe)
        skip();
    const char *argv[64];
    int n = 0;
    argv[n++] = exe;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a; a = va_arg(ap, const char *)) {
        assert_true(n < 63);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    const char *o = sp("stdout.txt"), *e = sp("stderr.txt");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(o, "wb", stdout) || !freopen(e, "wb", stderr))
            _exit(127);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    read_text(o, out_text, sizeof(out_text));
    read_text(e, err_text, sizeof(err_text));
    if (!WIFEXITED(status))
        fail_msg("dasecv %s died (status 0x%x): %s", arg0, status, err_text);
    return WEXITSTATUS(status);
}

static void save(const char *path, const dsv_tensor *t) { TU_OK(dsv_npy_save(path, t)); }

static dsv_tensor load(const char *path)
{
    dsv_tensor t;
    TU_OK(dsv_npy_load(path, &t));
    return t;
}

/* Expects the file at path to hold `want` to within tol (relative error). */
static bool file_matches(const char *path, const dsv_tensor *want, double tol)
{
    dsv_tensor got = load(path);
    bool ok = got.dtype == want->dtype && dsv_tensor_same_shape(&got, want) &&
              tu_rel_error(&got, want) <= tol;
    dsv_tensor_free(&got);
    return ok;
}

/* Labels as numpy writes them by default: int64, header padded to 64. */
static void save_i64_labels(const char *path, const dsv_tensor *y)
{
    char hdr[128];
    memset(hdr, ' ', sizeof(hdr));
    memcpy(hdr, "\x93NUMPY\x01\x00\x76\x00", 10); /* v1.0, header of 118 bytes */
    int n = snprintf(hdr + 10, sizeof(hdr) - 10,
                     "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }",
                     (int)dsv_tensor_numel(y));
    assert_true(n > 0 && n < 100);
    hdr[10 + n] = ' ';
    hdr[127] = '\n';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
    for (int64_t i = 0; i < dsv_tensor_numel(y); i++) {
        int64_t v = ((const int32_t *)y->data)[i];
        assert_int_equal(fwrite(&v, 8, 1, f), 1);
    }
    fclose(f);
}

static bool have_kernel(dsv_op op, bool backward)
{
    const dsv_backend_table *t = dsv_backend_get(DSV_BACKEND_NAIVE);
    return backward ? t->kernels[op].backward != NULL : t->kernels[op].forward != NULL;
}

/* ---- conv forward/backward ------------------------------------------------ */

static void conv_case(dsv_dtype dt, const char *backend, double tol)
{
    if (!have_kernel(DSV_OP_CONV, true))
        skip();
    tu_rng r = {11};
    dsv_tensor x = tu_randn(&r, dt, 4, (int64_t[]){2, 3, 7, 7}, 1);
    dsv_tensor w = tu_randn(&r, dt, 4, (int64_t[]){4, 3, 3, 3}, 0.5);
    dsv_tensor b = tu_randn(&r, dt, 1, (int64_t[]){4}, 0.1);
    dsv_tensor dout = tu_randn(&r, dt, 4, (int64_t[]){2, 4, 4, 4}, 1);
    const char *px = sp("x.npy"), *pw = sp("w.npy"), *pb = sp("b.npy"), *pd = sp("dout.npy");
    const char *po = sp("out.npy"), *pdx = sp("dx.npy"), *pdw = sp("dw.npy"),
               *pdb = sp("db.npy");
    save(px, &x), save(pw, &w), save(pb, &b), save(pd, &dout);

    dsv_backend want;
    TU_OK(dsv_backend_from_name(backend, &want));
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.x = &x, c.w = &w, c.b = &b, c.dout = &dout;
    c.p.stride = 2, c.p.pad = 1;
    dsv_tensor out = tu_zeros(dt, 4, (int64_t[]){2, 4, 4, 4});
    dsv_tensor dx = tu_zeros(dt, 4, x.shape), dw = tu_zeros(dt, 4, w.shape),
               db = tu_zeros(dt, 1, b.shape);
    c.out = &out;
    TU_OK(dsv_forward(&c, want, NULL));
    c.dx = &dx, c.dw = &dw, c.db = &db;
    TU_OK(dsv_backward(&c, want, NULL));

    assert_int_equal(run_cli("op", "conv_forward", "--x", px, "--w", pw, "--b", pb,
                             "--stride", "2", "--pad=1", "--backend", backend, "--out", po,
                             "--verbose", NULL),
                     0);
    assert_non_null(strstr(err_text, "ran on the"));
    assert_true(file_matches(po, &out, tol));
    assert_int_equal(run_cli("op", "conv_backward", "--x", px, "--w", pw, "--b", pb, "--dout",
                             pd, "--stride", "2", "--pad", "1", "--backend", backend, "--dx",
                             pdx, "--dw", pdw, "--db", pdb, NULL),
                     0);
    assert_string_equal(err_text, "");
    assert_true(file_matches(pdx, &dx, tol));
    assert_true(file_matches(pdw, &dw, tol));
    assert_true(file_matches(pdb, &db, tol));

    /* the comparison catches a wrong result: weights off by 1% */
    for (int64_t i = 0; i < dsv_tensor_numel(&w); i++)
        dsv_tensor_set(&w, i, dsv_tensor_get(&w, i) * 1.01);
    save(pw, &w);
    assert_int_equal(run_cli("op", "conv_forward", "--x", px, "--w", pw, "--b", pb,
                             "--stride", "2", "--pad", "1", "--backend", backend, "--out", po,
                             NULL),
                     0);
    assert_false(file_matches(po, &out, tol));

    dsv_tensor *all[] = {&x, &w, &b, &dout, &out, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

static void test_conv_f32_auto(void **st)
{
    (void)st;
    conv_case(DSV_F32, "auto", 1e-6);
}

static void test_conv_f64_naive(void **st)
{
    (void)st;
    conv_case(DSV_F64, "naive", 1e-13);
}

/* ---- losses, batch norm, dropout ------------------------------------------ */

static void test_softmax_loss(void **st)
{
    (void)st;
    if (!have_kernel(DSV_OP_SOFTMAX_LOSS, false))
        skip();
    tu_rng r = {5};
    dsv_tensor x = tu_randn(&r, DSV_F64, 2, (int64_t[]){6, 5}, 2);
    dsv_tensor y = tu_labels(&r, 6, 5);
    const char *px = sp("sx.npy"), *py = sp("sy.npy"), *pdx = sp("sdx.npy");
    save(px, &x), save(py, &y);
    double loss = 0;
    dsv_tensor dx = tu_zeros(DSV_F64, 2, x.shape);
    dsv_call c = dsv_call_make(DSV_OP_SOFTMAX_LOSS);
    c.x = &x, c.y = &y, c.loss = &loss, c.dx = &dx;
    TU_OK(dsv_forward(&c, DSV_BACKEND_AUTO, NULL));

    assert_int_equal(run_cli("op", "softmax_loss", "--x", px, "--y", py, "--dx", pdx, NULL), 0);
    char *end;
    double got = strtod(out_text, &end);
    assert_true(end != out_text && *end == '\n');
    assert_true(fabs(got - loss) <= 1e-12 * fabs(loss));
    assert_true(file_matches(pdx, &dx, 1e-12));

    /* labels may come as int64, as numpy writes them by default */
    const char *py64 = sp("sy64.npy");
    save_i64_labels(py64, &y);
    dsv_tensor y64 = load(py64);
    assert_int_equal(y64.dtype, DSV_I32);
    assert_memory_equal(y64.data, y.data, 6 * sizeof(int32_t));
    dsv_tensor_free(&y64);
    assert_int_equal(run_cli("op", "softmax_loss", "--x", px, "--y", py64, NULL), 0);
    assert_true(fabs(strtod(out_text, NULL) - loss) <= 1e-12 * fabs(loss));
    dsv_tensor_free(&x), dsv_tensor_free(&y), dsv_tensor_free(&dx);
}

static void test_batchnorm_running_stats(void **st)
{
    (void)st;
    if (!have_kernel(DSV_OP_BATCHNORM, false))
        skip();
    tu_rng r = {9};
    dsv_tensor x = tu_randn(&r, DSV_F64, 2, (int64_t[]){8, 3}, 3);
    dsv_tensor g = tu_randn(&r, DSV_F64, 1, (int64_t[]){3}, 1);
    dsv_tensor be = tu_randn(&r, DSV_F64, 1, (int64_t[]){3}, 1);
    dsv_tensor rm = tu_randn(&r, DSV_F64, 1, (int64_t[]){3}, 1);
    dsv_tensor rv = tu_zeros(DSV_F64, 1, (int64_t[]){3});
    for (int i = 0; i < 3; i++)
        dsv_tensor_set(&rv, i, 1 + i);
    const char *px = sp("bx.npy"), *pg = sp("bg.npy"), *pb = sp("bb.npy"),
               *prm = sp("brm.npy"), *prv = sp("brv.npy"), *po = sp("bo.npy"),
               *prmo = sp("brmo.npy"), *prvo = sp("brvo.npy");
    save(px, &x), save(pg, &g), save(pb, &be), save(prm, &rm), save(prv, &rv);

    dsv_tensor out = tu_zeros(DSV_F64, 2, x.shape);
    dsv_call c = dsv_call_make(DSV_OP_BATCHNORM);
    c.x = &x, c.w = &g, c.b = &be, c.out = &out;
    c.running_mean = &rm, c.running_var = &rv;
    c.p.momentum = 0.5;
    TU_OK(dsv_forward(&c, DSV_BACKEND_NAIVE, NULL));

    assert_int_equal(run_cli("op", "batchnorm_forward", "--x", px, "--gamma", pg, "--beta", pb,
                             "--running-mean", prm, "--running-var", prv, "--momentum", "0.5",
                             "--mode", "train", "--backend", "naive", "--out", po,
                             "--running-mean-out", prmo, "--running-var-out", prvo, NULL),
                     0);
    assert_true(file_matches(po, &out, 1e-13));
    assert_true(file_matches(prmo, &rm, 1e-13));
    assert_true(file_matches(prvo, &rv, 1e-13));

    /* test mode uses the running statistics, and needs them */
    assert_int_equal(run_cli("op", "batchnorm_forward", "--x", px, "--gamma", pg, "--beta", pb,
                             "--mode", "test", "--out", po, NULL),
                     2);
    assert_non_null(strstr(err_text, "running_mean"));
    dsv_tensor *all[] = {&x, &g, &be, &rm, &rv, &out};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

/* Forward on ones gives mask/p; backward on ones must give the same mask,
 * recomputed from the seed. */
static void test_dropout_mask_from_seed(void **st)
{
    (void)st;
    if (!have_kernel(DSV_OP_DROPOUT, true))
        skip();
    dsv_tensor ones = tu_zeros(DSV_F32, 2, (int64_t[]){16, 32});
    for (int64_t i = 0; i < dsv_tensor_numel(&ones); i++)
        dsv_tensor_set(&ones, i, 1);
    const char *px = sp("dx_in.npy"), *po = sp("d_out.npy"), *pdx = sp("d_dx.npy"),
               *po2 = sp("d_out2.npy");
    save(px, &ones);
    assert_int_equal(run_cli("op", "dropout_forward", "--x", px, "--p", "0.25", "--seed", "7",
                             "--out", po, NULL),
                     0);
    assert_int_equal(run_cli("op", "dropout_backward", "--x", px, "--dout", px, "--p", "0.25",
                             "--seed", "7", "--dx", pdx, NULL),
                     0);
    dsv_tensor out = load(po);
    assert_true(file_matches(pdx, &out, 0));
    int64_t kept = 0;
    for (int64_t i = 0; i < dsv_tensor_numel(&out); i++)
        kept += dsv_tensor_get(&out, i) != 0;
    assert_true(kept > 64 && kept < 192); /* about a quarter of 512 */
    /* another seed gives another mask */
    assert_int_equal(run_cli("op", "dropout_forward", "--x", px, "--p", "0.25", "--seed", "8",
                             "--out", po2, NULL),
                     0);
    assert_false(file_matches(po2, &out, 0));
    dsv_tensor_free(&out);
    dsv_tensor_free(&ones);
}

/* ---- every op, through the table ----------------------------------------- */

/* One row per course function: the shapes of its inputs, the extra flags it
 * gets and the same parameters for the in-process call. */
typedef struct op_case {
    const char *name;
    dsv_op op;
    bool backward;
    int xnd, wnd, bnd, dnd;
    int64_t x[4], x2[4], w[4], b[4], dout[4]; /* x2/w/b/dout: nd 0 = absent */
    bool x2_present, norm;                    /* norm: w/b are gamma/beta */
    int classes;                              /* losses: labels in [0, classes) */
    const char *args[6];
    dsv_params (*params)(void);
} op_case;

static dsv_params p_conv(void) { dsv_params p = dsv_params_default(); p.pad = 1; return p; }
static dsv_params p_pool(void) { dsv_params p = dsv_params_default(); p.stride = 2; return p; }
static dsv_params p_global(void)
{
    dsv_params p = dsv_params_default();
    p.pool_height = 4, p.pool_width = 5;
    return p;
}
static dsv_params p_gn(void) { dsv_params p = dsv_params_default(); p.groups = 2; return p; }
static dsv_params p_drop(void)
{
    dsv_params p = dsv_params_default();
    p.p = 0.75, p.seed = 3;
    return p;
}

#define FB(n, o, xnd, ...) {n "_forward", o, false, xnd, __VA_ARGS__}, \
                           {n "_backward", o, true, xnd, __VA_ARGS__}
static const op_case op_cases[] = {
    FB("affine", DSV_OP_AFFINE, 3, 2, 1, 2, {3, 2, 3}, {0}, {6, 4}, {4}, {3, 4}, false, false,
       0, {NULL}, dsv_params_default),
    FB("relu", DSV_OP_RELU, 2, 0, 0, 2, {3, 5}, {0}, {0}, {0}, {3, 5}, false, false, 0, {NULL},
       dsv_params_default),
    FB("conv", DSV_OP_CONV, 4, 4, 1, 4, {2, 3, 5, 5}, {0}, {2, 3, 3, 3}, {2}, {2, 2, 5, 5},
       false, false, 0, {"--pad", "1"}, p_conv),
    FB("max_pool", DSV_OP_MAX_POOL, 4, 0, 0, 4, {2, 3, 4, 4}, {0}, {0}, {0}, {2, 3, 2, 2},
       false, false, 0, {"--stride", "2"}, p_pool),
    FB("avg_pool", DSV_OP_AVG_POOL, 4, 0, 0, 4, {2, 3, 4, 5}, {0}, {0}, {0}, {2, 3, 1, 1},
       false, false, 0, {"--pool-height", "4", "--pool-width", "5"}, p_global),
    FB("batchnorm", DSV_OP_BATCHNORM, 2, 1, 1, 2, {6, 4}, {0}, {4}, {4}, {6, 4}, false, true,
       0, {NULL}, dsv_params_default),
    FB("spatial_batchnorm", DSV_OP_SPATIAL_BATCHNORM, 4, 1, 1, 4, {2, 3, 4, 4}, {0}, {3}, {3},
       {2, 3, 4, 4}, false, true, 0, {NULL}, dsv_params_default),
    FB("layernorm", DSV_OP_LAYERNORM, 2, 1, 1, 2, {6, 4}, {0}, {4}, {4}, {6, 4}, false, true,
       0, {NULL}, dsv_params_default),
    FB("spatial_groupnorm", DSV_OP_SPATIAL_GROUPNORM, 4, 4, 4, 4, {2, 4, 3, 3}, {0},
       {1, 4, 1, 1}, {1, 4, 1, 1}, {2, 4, 3, 3}, false, true, 0, {"--groups", "2"}, p_gn),
    FB("dropout", DSV_OP_DROPOUT, 2, 0, 0, 2, {4, 5}, {0}, {0}, {0}, {4, 5}, false, false, 0,
       {"--p", "0.75", "--seed", "3"}, p_drop),
    FB("add", DSV_OP_ADD, 2, 0, 0, 2, {3, 4}, {3, 4}, {0}, {0}, {3, 4}, true, false, 0, {NULL},
       dsv_params_default),
    {"softmax_loss", DSV_OP_SOFTMAX_LOSS, false, 2, 0, 0, 0, {5, 4}, {0}, {0}, {0}, {0}, false,
     false, 4, {NULL}, dsv_params_default},
    {"svm_loss", DSV_OP_SVM_LOSS, false, 2, 0, 0, 0, {5, 4}, {0}, {0}, {0}, {0}, false, false,
     4, {NULL}, dsv_params_default},
};
#undef FB

/* Runs one row through the binary and in process; true when all agree. */
static bool op_case_agrees(const op_case *k, dsv_dtype dt, const char *backend, double tol)
{
    tu_rng r = {(uint64_t)k->op * 31 + k->backward};
    dsv_tensor x = tu_randn(&r, dt, k->xnd, k->x, 1), x2 = {0}, w = {0}, b = {0}, y = {0},
               dout = {0};
    if (k->x2_present)
        x2 = tu_randn(&r, dt, k->xnd, k->x2, 1);
    if (k->wnd)
        w = tu_randn(&r, dt, k->wnd, k->w, 1), b = tu_randn(&r, dt, k->bnd, k->b, 1);
    if (k->classes)
        y = tu_labels(&r, k->x[0], k->classes);
    if (k->backward)
        dout = tu_randn(&r, dt, k->dnd, k->dout, 1);

    const char *argv[40];
    int n = 0;
    argv[n++] = "op", argv[n++] = k->name, argv[n++] = "--backend", argv[n++] = backend;
    struct {
        const char *flag, *file;
        dsv_tensor *t;
    } ins[] = {{"--x", "k_x.npy", &x}, {"--x2", "k_x2.npy", &x2},
               {k->norm ? "--gamma" : "--w", "k_w.npy", &w},
               {k->norm ? "--beta" : "--b", "k_b.npy", &b}, {"--y", "k_y.npy", &y},
               {"--dout", "k_dout.npy", &dout}};
    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++)
        if (ins[i].t->data) {
            const char *path = sp(ins[i].file);
            save(path, ins[i].t);
            argv[n++] = ins[i].flag, argv[n++] = path;
        }
    for (int i = 0; i < 6 && k->args[i]; i++)
        argv[n++] = k->args[i];

    /* in process: the same call, with every output */
    dsv_call c = dsv_call_make(k->op);
    c.p = k->params();
    c.x = &x, c.x2 = x2.data ? &x2 : NULL, c.w = w.data ? &w : NULL, c.b = b.data ? &b : NULL;
    c.y = y.data ? &y : NULL, c.dout = dout.data ? &dout : NULL;
    double loss = 0;
    c.loss = &loss;
    int nd;
    int64_t os[4];
    TU_OK(dsv_op_check(&c, k->backward, &nd, os));
    dsv_tensor out = {0}, dx = {0}, dx2 = {0}, dw = {0}, db = {0};
    struct {
        const char *flag, *file;
        dsv_tensor *t;
    } outs[] = {{"--out", "k_out.npy", &out}, {"--dx", "k_dx.npy", &dx},
                {"--dx2", "k_dx2.npy", &dx2}, {k->norm ? "--dgamma" : "--dw", "k_dw.npy", &dw},
                {k->norm ? "--dbeta" : "--db", "k_db.npy", &db}};
    dsv_backend want;
    TU_OK(dsv_backend_from_name(backend, &want));
    if (!k->backward && !dsv_op_is_loss(k->op)) {
        out = tu_zeros(dt, nd, os);
        c.out = &out;
        TU_OK(dsv_forward(&c, want, NULL));
    } else {
        dx = tu_zeros(dt, x.ndim, x.shape);
        c.dx = &dx;
        if (x2.data)
            dx2 = tu_zeros(dt, x2.ndim, x2.shape), c.dx2 = &dx2;
        if (w.data) {
            dw = tu_zeros(dt, w.ndim, w.shape), db = tu_zeros(dt, b.ndim, b.shape);
            c.dw = &dw, c.db = &db;
        }
        TU_OK(k->backward ? dsv_backward(&c, want, NULL) : dsv_forward(&c, want, NULL));
    }
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++)
        if (outs[i].t->data)
            argv[n++] = outs[i].flag, argv[n++] = sp(outs[i].file);
    for (int i = n; i < 40; i++)
        argv[i] = NULL;

    int code = run_cli(argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7],
                       argv[8], argv[9], argv[10], argv[11], argv[12], argv[13], argv[14],
                       argv[15], argv[16], argv[17], argv[18], argv[19], argv[20], argv[21],
                       argv[22], argv[23], argv[24], argv[25], argv[26], argv[27], NULL);
    bool ok = code == 0;
    if (!ok)
        print_message("%s: exit %d: %s", k->name, code, err_text);
    for (size_t i = 0; ok && i < sizeof(outs) / sizeof(outs[0]); i++)
        if (outs[i].t->data && !file_matches(sp(outs[i].file), outs[i].t, tol)) {
            print_message("%s: %s differs\n", k->name, outs[i].flag);
            ok = false;
        }
    if (ok && dsv_op_is_loss(k->op)) {
        double got = strtod(out_text, NULL);
        if (!(fabs(got - loss) <= tol * fabs(loss))) {
            print_message("%s: loss %.17g, wanted %.17g\n", k->name, got, loss);
            ok = false;
        }
    }
    dsv_tensor *all[] = {&x, &x2, &w, &b, &y, &dout, &out, &dx, &dx2, &dw, &db};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
    return ok;
}

static void test_every_op(void **st)
{
    (void)st;
    int ran = 0;
    /* "auto" on its fixed order, here and in the dasecv op it runs: timed,
       the two processes may pick different backends, whose float32 results
       differ by more than rounding */
    setenv("DASECV_AUTO_TIMING", "0", 1);
    for (size_t i = 0; i < sizeof(op_cases) / sizeof(op_cases[0]); i++) {
        const op_case *k = &op_cases[i];
        if (!have_kernel(k->op, k->backward))
            continue;
        if (!op_case_agrees(k, DSV_F64, "naive", 1e-13) ||
            !op_case_agrees(k, DSV_F32, "auto", 1e-6))
            fail_msg("%s: dasecv op and dsv_forward/dsv_backward disagree", k->name);
        ran++;
    }
    unsetenv("DASECV_AUTO_TIMING");
    if (!ran)
        skip();
    /* every op of the engine's table, each pass it has */
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        int passes = 0;
        for (size_t i = 0; i < sizeof(op_cases) / sizeof(op_cases[0]); i++)
            passes += op_cases[i].op == (dsv_op)op;
        if (passes != (dsv_op_is_loss((dsv_op)op) ? 1 : 2))
            fail_msg("op_cases has %d rows for %s", passes, dsv_op_name((dsv_op)op));
    }
}

/* ---- usage and errors ----------------------------------------------------- */

static void test_list_and_help(void **st)
{
    (void)st;
    assert_int_equal(run_cli("op", "--list", NULL), 0);
    /* one line per pass of every op of the engine's table, in its order */
    const char *line = out_text;
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        const dsv_op_info *in = dsv_op_get_info((dsv_op)op);
        for (int pass = 0; pass < (in->is_loss ? 1 : 2); pass++) {
            char want[64];
            snprintf(want, sizeof(want), "%s%s  inputs:", in->name,
                     in->is_loss ? "" : pass ? "_backward" : "_forward");
            if (strncmp(line, want, strlen(want)) != 0)
                fail_msg("--list: wanted a line '%s...', got: %.60s", want, line);
            line = strchr(line, '\n');
            assert_non_null(line);
            line++;
        }
    }
    assert_string_equal(line, "");
    assert_non_null(strstr(out_text, "avg_pool_forward  inputs: --x  params: --stride "
                                     "--pool-height --pool-width  outputs: --out"));
    assert_non_null(strstr(out_text, "conv_backward  inputs: --x --w --b --dout"));
    assert_int_equal(run_cli("op", "--help", NULL), 0);
    assert_non_null(strstr(out_text, "usage: dasecv op"));
    assert_int_equal(run_cli("op", "max_pool_forward", "--help", NULL), 0);
    assert_non_null(strstr(out_text, "--pool-height"));
    assert_int_equal(run_cli("op", "conv_forward", "--bogus", "--help", NULL), 0);
    assert_non_null(strstr(out_text, "usage: dasecv op conv_forward --x --w --b"));
    assert_int_equal(run_cli("help", "op", NULL), 0);
    assert_non_null(strstr(out_text, "usage: dasecv op NAME"));
    assert_int_equal(run_cli("op", NULL), 2);
    assert_non_null(strstr(err_text, "usage"));
}

typedef struct err_case {
    const char *args[24];
    int code;
    const char *needle;
} err_case;

static void test_errors(void **st)
{
    (void)st;
    tu_rng r = {3};
    dsv_tensor x = tu_randn(&r, DSV_F32, 4, (int64_t[]){2, 3, 7, 7}, 1);
    dsv_tensor w = tu_randn(&r, DSV_F32, 4, (int64_t[]){4, 3, 3, 3}, 1);
    dsv_tensor w2 = tu_randn(&r, DSV_F32, 4, (int64_t[]){4, 2, 3, 3}, 1);
    dsv_tensor w64 = tu_randn(&r, DSV_F64, 4, (int64_t[]){4, 3, 3, 3}, 1);
    dsv_tensor b = tu_zeros(DSV_F32, 1, (int64_t[]){4});
    dsv_tensor s = tu_randn(&r, DSV_F32, 2, (int64_t[]){3, 4}, 1);
    dsv_tensor y = tu_labels(&r, 3, 4);
    dsv_tensor ybad = tu_zeros(DSV_I32, 1, (int64_t[]){3});
    ((int32_t *)ybad.data)[1] = 4;
    const char *px = sp("ex.npy"), *pw = sp("ew.npy"), *pw2 = sp("ew2.npy"),
               *pw64 = sp("ew64.npy"), *pb = sp("eb.npy"), *ps = sp("es.npy"),
               *py = sp("ey.npy"), *pybad = sp("eybad.npy"), *pout = sp("eout.npy"),
               *pjunk = sp("ejunk.npy");
    save(px, &x), save(pw, &w), save(pw2, &w2), save(pw64, &w64), save(pb, &b);
    save(ps, &s), save(py, &y), save(pybad, &ybad);
    FILE *f = fopen(pjunk, "wb");
    assert_non_null(f);
    fputs("this is not a .npy file at all", f);
    fclose(f);
    char nodir[1200];
    snprintf(nodir, sizeof(nodir), "%s.d/none/out.npy", pout);

#define CONV "op", "conv_forward", "--x", px, "--b", pb
    const err_case cases[] = {
        {{"op", "conv_fwd", NULL}, 2, "unknown op 'conv_fwd'"},
        {{CONV, "--w", pw, "--out", pout, "--bogus", "1", NULL}, 2, "unknown flag '--bogus'"},
        {{CONV, "--out", pout, NULL}, 2, "needs --w"},
        {{CONV, "--w", sp("missing.npy"), "--out", pout, NULL}, 2, "No such file"},
        {{CONV, "--w", pjunk, "--out", pout, NULL}, 2, "bad magic"},
        {{CONV, "--w", pw, "--out", pout, "--stride", "two", NULL}, 2, "--stride wants an integer"},
        {{CONV, "--w", pw, "--out", pout, "--stride", "0", NULL}, 2, "--stride wants an integer"},
        {{CONV, "--w", pw, "--out", pout, "--pad", NULL}, 2, "--pad needs a value"},
        {{CONV, "--w", "--out", pout, NULL}, 2, "--w needs a value"},
        {{CONV, "--w", pw, "--dx", pout, NULL}, 2, "does not produce --dx"},
        {{CONV, "--w", pw, "--out", pout, "--p", "0.5", NULL}, 2, "does not use --p"},
        {{CONV, "--w", pw, "--out", pout, "--dout", px, NULL}, 2, "does not take --dout"},
        {{CONV, "--w", pw, NULL}, 2, "writes nothing"},
        {{CONV, "--w", pw, "--out", pout, "--out", pout, NULL}, 2, "given twice"},
        {{CONV, "--w", pw2, "--out", pout, NULL}, 2, "conv: x has 3 channels but w expects 2"},
        {{CONV, "--w", pw, "--stride", "3", "--out", pout, NULL}, 2, "not divisible by stride 3"},
        {{CONV, "--w", pw64, "--out", pout, NULL}, 2, "inputs must agree"},
        {{CONV, "--w", pw, "--out", pout, "--backend", "gpu", NULL}, 2, "unknown backend 'gpu'"},
        {{CONV, "--w", pw, "stray", "--out", pout, NULL}, 2, "unexpected argument 'stray'"},
        {{CONV, "--w", pw, "--out", nodir, NULL}, 2, "No such file or directory"},
        {{"op", "conv_backward", "--x", px, "--w", pw, "--b", pb, "--dout", px, "--dx", pout,
          NULL}, 2, "dout has shape"},
        {{"op", "svm_loss", "--x", ps, "--y", ps, NULL}, 2, "integer labels"},
        {{"op", "svm_loss", "--x", ps, "--y", pybad, NULL}, 2, "outside [0, 4)"},
        {{"op", "svm_loss", "--x", py, "--y", py, NULL}, 2, "--x must hold float"},
        {{"op", "avg_pool_forward", "--x", px, "--stride", "2", "--out", pout, NULL}, 2,
         "avg_pool: (H + 2*pad - pool_height) = 5 is not divisible by stride 2"},
        {{"op", "avg_pool_forward", "--x", px, "--pool-height", "8", "--out", pout, NULL}, 2,
         "avg_pool: pool_height pool_height = 8 is larger than H"},
        {{"op", "avg_pool_forward", "--x", px, "--pad", "1", "--out", pout, NULL}, 2,
         "avg_pool_forward does not use --pad"},
        {{"op", "dropout_forward", "--x", px, "--mode", "eval", "--out", pout, NULL}, 2,
         "--mode wants train or test"},
        {{"op", "dropout_forward", "--x", px, "--p", "1.5", "--out", pout, NULL}, 2,
         "keep probability"},
        {{"op", "batchnorm_forward", "--x", ps, "--gamma", pb, "--beta", pb, "--out", pout,
          "--eps", "1e-5x", NULL}, 2, "--eps wants a number"},
        {{"op", "layernorm_forward", "--x", ps, "--gamma", pb, "--beta", pb, "--out", pout,
          "--running-mean-out", pout, NULL}, 2, "does not produce --running-mean-out"},
    };
#undef CONV
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *a = cases[i].args;
        int code = run_cli(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
                           a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19],
                           a[20], a[21], a[22], a[23], NULL);
        if (code != cases[i].code || strncmp(err_text, "dasecv op: ", 11) != 0 ||
            !strstr(err_text, cases[i].needle) || strchr(err_text, '\n') !=
                                                      err_text + strlen(err_text) - 1)
            fail_msg("case %zu (%s): exit %d, wanted %d with one line saying '%s'; got: %s", i,
                     cases[i].needle, code, cases[i].code, cases[i].needle, err_text);
        assert_string_equal(out_text, "");
    }
    /* the check above does catch a wrong exit code or message */
    assert_int_equal(run_cli("op", "--list", NULL), 0);
    assert_null(strstr(err_text, "dasecv op: "));

    dsv_tensor *all[] = {&x, &w, &w2, &w64, &b, &s, &y, &ybad};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

/* ---- dasecv check covers the engine's table ------------------------------- */

/* `dasecv check --list` names every configuration it checks; every op of the
 * engine's table must have at least one, or --list (and check) fail. */
static void test_check_covers_every_op(void **st)
{
    (void)st;
    int rc = run_cli("check", "--list", NULL);
    if (rc != 0)
        fail_msg("dasecv check --list: exit %d: %s", rc, err_text);
    for (int op = 0; op < DSV_OP_COUNT; op++) {
        char want[64];
        snprintf(want, sizeof(want), "%s ", dsv_op_name((dsv_op)op));
        bool found = false;
        for (const char *l = out_text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l)
            found |= strncmp(l, want, strlen(want)) == 0;
        if (!found)
            fail_msg("dasecv check has no case for %s", dsv_op_name((dsv_op)op));
    }
}

/* --dtype converts the inputs instead of refusing a mix. */
static void test_dtype_conversion(void **st)
{
    (void)st;
    if (!have_kernel(DSV_OP_AFFINE, false))
        skip();
    tu_rng r = {21};
    dsv_tensor x = tu_randn(&r, DSV_F64, 3, (int64_t[]){4, 2, 3}, 1);
    dsv_tensor w = tu_randn(&r, DSV_F32, 2, (int64_t[]){6, 5}, 1);
    dsv_tensor b = tu_randn(&r, DSV_F32, 1, (int64_t[]){5}, 1);
    const char *px = sp("ax.npy"), *pw = sp("aw.npy"), *pb = sp("ab.npy"), *po = sp("ao.npy");
    save(px, &x), save(pw, &w), save(pb, &b);
    assert_int_equal(run_cli("op", "affine_forward", "--x", px, "--w", pw, "--b", pb, "--out",
                             po, NULL),
                     2);
    assert_non_null(strstr(err_text, "inputs must agree"));
    assert_int_equal(run_cli("op", "affine_forward", "--x", px, "--w", pw, "--b", pb, "--out",
                             po, "--dtype", "float64", NULL),
                     0);
    dsv_tensor w64 = tu_zeros(DSV_F64, 2, w.shape), b64 = tu_zeros(DSV_F64, 1, b.shape);
    TU_OK(dsv_tensor_copy(&w64, &w));
    TU_OK(dsv_tensor_copy(&b64, &b));
    dsv_tensor out = tu_zeros(DSV_F64, 2, (int64_t[]){4, 5});
    dsv_call c = dsv_call_make(DSV_OP_AFFINE);
    c.x = &x, c.w = &w64, c.b = &b64, c.out = &out;
    TU_OK(dsv_forward(&c, DSV_BACKEND_AUTO, NULL));
    assert_true(file_matches(po, &out, 1e-13));
    dsv_tensor *all[] = {&x, &w, &b, &w64, &b64, &out};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_f32_auto),
        cmocka_unit_test(test_conv_f64_naive),
        cmocka_unit_test(test_softmax_loss),
        cmocka_unit_test(test_batchnorm_running_stats),
        cmocka_unit_test(test_dropout_mask_from_seed),
        cmocka_unit_test(test_every_op),
        cmocka_unit_test(test_list_and_help),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_dtype_conversion),
        cmocka_unit_test(test_check_covers_every_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
