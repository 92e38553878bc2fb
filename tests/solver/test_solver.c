/*
 * The Solver: history lengths, lr decay per epoch, best parameters swapped in,
 * stop requests (callback, dsv_solver_request_stop, a signal handler), NaN and
 * Inf handling, dsv_check_accuracy, and resume identity through checkpoints.
 */
#include <math.h>
#include <signal.h>
#include <string.h>

#include "solver_data.h"
#include "solver_priv.h" /* l2_n, cfg: the test below compares both L2 paths */

enum { C = 3, H = 8, W = 8, K = 4 };

static dsv_model_config small_config(dsv_dtype dt)
{
    dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
    c.dtype = dt;
    c.input_dim[0] = C, c.input_dim[1] = H, c.input_dim[2] = W;
    c.num_classes = K;
    c.num_filters = 4;
    c.filter_size = 3;
    c.hidden_dim = 16;
    c.weight_scale = 1e-2;
    c.seed = 7;
    return c;
}

static dsv_model *small_model(dsv_dtype dt)
{
    dsv_model *m;
    dsv_model_config c = small_config(dt);
    TU_OK(dsv_model_create(&m, &c));
    return m;
}

static size_t param_bytes(dsv_model *m)
{
    return (size_t)dsv_model_num_params(m) * dsv_dtype_size(dsv_model_config_of(m)->dtype);
}

static bool params_finite(dsv_model *m)
{
    dsv_dtype dt = dsv_model_config_of(m)->dtype;
    for (int64_t i = 0; i < dsv_model_num_params(m); i++) {
        double v = dt == DSV_F32 ? ((float *)dsv_model_params(m))[i]
                                 : ((double *)dsv_model_params(m))[i];
        if (!isfinite(v))
            return false;
    }
    return true;
}

/* ---- progress recording -------------------------------------------------- */

typedef struct record {
    int calls, epoch_ends;
    double lr_at_epoch[64], val_at_epoch[64], train_at_epoch[64];
    int64_t last_iteration;
    int stop_at;        /* callback returns false at this iteration */
    int request_at;     /* callback calls dsv_solver_request_stop here */
    int raise_at;       /* callback raises SIGUSR1 here */
    dsv_solver *s;
    /* parameters at the epoch with the best validation accuracy so far */
    void *best;
    double best_val;
    int best_epoch;
    size_t nbytes;
    dsv_model *m;
} record;

static bool on_progress(const dsv_progress *p, void *user)
{
    record *r = user;
    r->calls++;
    assert_int_equal(p->iteration, r->last_iteration + 1);
    r->last_iteration = p->iteration;
    assert_true(isfinite(p->loss));
    assert_true(p->images_per_s >= 0);
    if (p->epoch_end) {
        assert_true(r->epoch_ends < 64);
        assert_true(p->train_acc >= 0 && p->train_acc <= 1);
        r->lr_at_epoch[r->epoch_ends] = p->learning_rate;
        r->val_at_epoch[r->epoch_ends] = p->val_acc;
        r->train_at_epoch[r->epoch_ends] = p->train_acc;
        r->epoch_ends++;
        if (r->best && p->val_acc > r->best_val) {
            r->best_val = p->val_acc;
            r->best_epoch = r->epoch_ends;
            memcpy(r->best, dsv_model_params(r->m), r->nbytes);
        }
    } else {
        assert_true(isnan(p->train_acc) && isnan(p->val_acc));
    }
    if (p->iteration == r->request_at)
        dsv_solver_request_stop(r->s);
    if (p->iteration == r->raise_at)
        raise(SIGUSR1);
    return p->iteration != r->stop_at;
}

static dsv_solver_config base_config(record *r)
{
    dsv_solver_config c = dsv_solver_config_default();
    c.optim = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.optim.learning_rate = 1e-2;
    c.batch_size = 10;
    c.num_epochs = 3;
    c.num_train_samples = 30;
    c.seed = 11;
    c.on_progress = on_progress;
    c.user = r;
    return c;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* Saves s as the scratch file `name` and asserts that its bytes are those of
 * the checkpoint at `before`: the whole solver state is unchanged. */
static void assert_same_checkpoint(const dsv_solver *s, const char *before,
                                   const char *name)
{
    char after[512];
    snprintf(after, sizeof(after), "%s", tu_scratch(name));
    TU_OK(dsv_checkpoint_save(s, after));
    size_t n0, n1;
    uint8_t *b0 = slurp(before, &n0), *b1 = slurp(after, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(b0, b1, n0);
    free(b0), free(b1);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_histories_and_lr_decay(void **st)
{
    (void)st;
    gen_data tr = gen_make(55, C, H, W, K, 1, 20), va = gen_make(20, C, H, W, K, 1, 20);
    dsv_model *m = small_model(DSV_F32);
    record r = {0};
    dsv_solver_config c = base_config(&r);
    c.lr_decay = 0.5;
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &tr.s, &va.s, &c));
    r.s = s;
    TU_OK(dsv_solver_train(s));
    /* 55 images, batches of 10: 5 iterations per epoch, the last 5 images of
       each permutation unused. */
    assert_true(dsv_solver_done(s));
    assert_false(dsv_solver_stopped(s));
    assert_int_equal(dsv_solver_iteration(s), 15);
    assert_int_equal(dsv_solver_epoch(s), 3);
    const double *loss, *tacc, *vacc;
    assert_int_equal(dsv_solver_loss_history(s, &loss), 15);
    assert_int_equal(dsv_solver_acc_history(s, &tacc, &vacc), 3);
    assert_int_equal(r.calls, 15);
    assert_int_equal(r.epoch_ends, 3);
    for (int e = 0; e < 3; e++) {
        /* the lr used during epoch e + 1 is lr * decay^e */
        assert_true(r.lr_at_epoch[e] == 1e-2 * pow(0.5, e));
        assert_true(tacc[e] == r.train_at_epoch[e] && vacc[e] == r.val_at_epoch[e]);
    }
    /* training on separable patterns lowers the loss */
    assert_true(loss[14] < loss[0]);
    dsv_solver_destroy(s);

    /* batch larger than the split: one iteration per epoch on all images */
    r = (record){0};
    c.batch_size = 100;
    TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &c));
    r.s = s;
    TU_OK(dsv_solver_train(s));
    assert_int_equal(dsv_solver_iteration(s), 3);
    assert_int_equal(dsv_solver_acc_history(s, &tacc, &vacc), 3);
    assert_true(isnan(vacc[0]));
    dsv_solver_destroy(s);

    c.batch_size = 0;
    assert_int_equal(dsv_solver_create(&s, m, &tr.s, NULL, &c), DSV_INVALID);
    c.batch_size = 10;
    gen_data odd = gen_make(20, C, H + 1, W, K, 1, 20);
    assert_int_equal(dsv_solver_create(&s, m, &odd.s, NULL, &c), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "expects"));
    gen_free(&odd);
    dsv_model_destroy(m);
    gen_free(&tr), gen_free(&va);
}

/* Validation labels that are unrelated to the images make validation accuracy
 * wander, so the best epoch is not the last; the model must end with the
 * parameters of the best epoch. */
static void test_best_params_swapped_in(void **st)
{
    (void)st;
    gen_data tr = gen_make(40, C, H, W, K, 2, 20), va = gen_make(40, C, H, W, K, 2, 20);
    tu_rng rng = {5};
    for (int i = 0; i < 40; i++)
        va.labels[i] = (int32_t)(tu_next(&rng) % K);
    dsv_model *m = small_model(DSV_F32);
    record r = {0};
    r.m = m;
    r.nbytes = param_bytes(m);
    r.best = malloc(r.nbytes);
    r.best_val = 0;
    dsv_solver_config c = base_config(&r);
    c.num_epochs = 8;
    c.optim.learning_rate = 3e-2;
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &tr.s, &va.s, &c));
    r.s = s;
    TU_OK(dsv_solver_train(s));
    assert_int_equal(r.epoch_ends, 8);
    assert_true(r.best_epoch >= 1);
    /* the check below would pass trivially if the last epoch were the best */
    assert_true(r.best_epoch < 8);
    assert_true(dsv_solver_best_val_acc(s) == r.best_val);
    assert_memory_equal(dsv_model_params(m), r.best, r.nbytes);
    double acc;
    TU_OK(dsv_check_accuracy(m, &va.s, 0, 7, 0, &acc));
    assert_true(acc == r.best_val);
    free(r.best);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    gen_free(&tr), gen_free(&va);
}

static dsv_solver *sig_solver;
static void on_sigusr1(int sig)
{
    (void)sig;
    dsv_solver_request_stop(sig_solver);
}

static void test_stop_requests(void **st)
{
    (void)st;
    gen_data tr = gen_make(50, C, H, W, K, 3, 20);
    dsv_model *m = small_model(DSV_F32);
    record r = {0};
    dsv_solver_config c = base_config(&r);
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &c));
    r.s = s;
    r.stop_at = 3;       /* callback returns false */
    r.request_at = 7;    /* dsv_solver_request_stop from the callback */
    r.raise_at = 12;     /* from a signal handler */
    sig_solver = s;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, &old);

    TU_OK(dsv_solver_train(s));
    assert_true(dsv_solver_stopped(s));
    assert_int_equal(dsv_solver_iteration(s), 3);
    TU_OK(dsv_solver_train(s));
    assert_true(dsv_solver_stopped(s));
    assert_int_equal(dsv_solver_iteration(s), 7);
    TU_OK(dsv_solver_train(s));
    assert_true(dsv_solver_stopped(s));
    assert_int_equal(dsv_solver_iteration(s), 12);
    assert_false(dsv_solver_done(s));
    TU_OK(dsv_solver_train(s));
    assert_false(dsv_solver_stopped(s));
    assert_true(dsv_solver_done(s));
    assert_int_equal(dsv_solver_iteration(s), 15);
    const double *loss;
    assert_int_equal(dsv_solver_loss_history(s, &loss), 15);

    /* a request made before train returns at once, with nothing done */
    dsv_solver_destroy(s);
    r = (record){0};
    TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &c));
    r.s = s;
    dsv_solver_request_stop(s);
    TU_OK(dsv_solver_train(s));
    assert_true(dsv_solver_stopped(s));
    assert_int_equal(dsv_solver_iteration(s), 0);
    sigaction(SIGUSR1, &old, NULL);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    gen_free(&tr);
}

static void test_nan_loss(void **st)
{
    (void)st;
    gen_data tr = gen_make(50, C, H, W, K, 4, 20);
    for (int dt = DSV_F32; dt <= DSV_F64; dt++) {
        /* A huge learning rate: the run diverges, train reports it, and the
           parameters are those before the bad step (finite). */
        dsv_model *m = small_model((dsv_dtype)dt);
        record r = {0};
        dsv_solver_config c = base_config(&r);
        c.optim = dsv_optim_config_default(DSV_UPDATE_SGD);
        c.optim.learning_rate = dt == DSV_F32 ? 1e42 : 1e308;
        c.num_epochs = 10;
        dsv_solver *s;
        void *init = malloc(param_bytes(m));
        memcpy(init, dsv_model_params(m), param_bytes(m));
        TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &c));
        r.s = s;
        assert_int_equal(dsv_solver_train(s), DSV_INVALID);
        assert_non_null(strstr(dsv_errmsg(), "diverged"));
        assert_true(params_finite(m));
        /* float32: the first update would overflow and is not applied */
        if (dt == DSV_F32) {
            assert_non_null(strstr(dsv_errmsg(), "update would make a parameter"));
            assert_int_equal(dsv_solver_iteration(s), 0);
            assert_memory_equal(dsv_model_params(m), init, param_bytes(m));
        }
        free(init);
        assert_false(dsv_solver_done(s));
        const double *loss;
        int64_t nl = dsv_solver_loss_history(s, &loss);
        assert_int_equal(nl, dsv_solver_iteration(s));
        for (int64_t i = 0; i < nl; i++)
            assert_true(isfinite(loss[i]));
        /* the callback never saw the bad step */
        assert_int_equal(r.calls, nl);
        dsv_solver_destroy(s);
        dsv_model_destroy(m);
    }

    /* NaN in the data: the first step fails and changes nothing. */
    float *mean = malloc(C * H * W * sizeof(float));
    for (int i = 0; i < C * H * W; i++)
        mean[i] = i == 5 ? NAN : 0.0f;
    dsv_split bad = tr.s;
    bad.mean = mean;
    dsv_model *m = small_model(DSV_F32);
    void *before = malloc(param_bytes(m));
    memcpy(before, dsv_model_params(m), param_bytes(m));
    record r = {0};
    dsv_solver_config c = base_config(&r);
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &bad, NULL, &c));
    r.s = s;
    char p0[512];
    snprintf(p0, sizeof(p0), "%s", tu_scratch("nan_before.ckpt"));
    TU_OK(dsv_checkpoint_save(s, p0));
    assert_int_equal(dsv_solver_train(s), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "NaN"));
    assert_int_equal(dsv_solver_iteration(s), 0);
    assert_int_equal(r.calls, 0);
    assert_memory_equal(dsv_model_params(m), before, param_bytes(m));
    /* the whole state is as before the failed step: RNG, counters, buffers */
    assert_same_checkpoint(s, p0, "nan_after.ckpt");
    free(before);
    free(mean);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    gen_free(&tr);
}

/* A model whose parameters (131k values) are large enough for the solver's
 * scans and the optimizer's check to run on two threads: an Adam update that
 * would overflow is not applied, and the whole state (parameters, moments,
 * step counts, RNG) is as before the step: the checkpoint is the same bytes. */
static void test_overflow_not_applied_on_threads(void **st)
{
    (void)st;
    gen_data tr = gen_make(51, C, H, W, K, 4, 20);
    dsv_model_config mc = small_config(DSV_F32);
    mc.num_filters = 8;
    mc.hidden_dim = 1024;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &mc));
    assert_true(dsv_model_num_params(m) > 131072);
    dsv_exec_options o = dsv_exec_options_default();
    o.threads = 2;
    /* not auto: its timed decisions of the step's first pass would add
       lines to the checkpoint's execution plan */
    o.backend = DSV_BACKEND_FAST;
    TU_OK(dsv_model_set_exec(m, &o));
    record r = {0};
    dsv_solver_config c = base_config(&r);
    c.optim = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.optim.learning_rate = 1e42;
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &c));
    r.s = s;
    char p0[512];
    snprintf(p0, sizeof(p0), "%s", tu_scratch("overflow_before.ckpt"));
    TU_OK(dsv_checkpoint_save(s, p0));
    assert_int_equal(dsv_solver_train(s), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "update would make a parameter"));
    assert_int_equal(dsv_solver_iteration(s), 0);
    assert_same_checkpoint(s, p0, "overflow_after.ckpt");
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    gen_free(&tr);
}

static void test_check_accuracy(void **st)
{
    (void)st;
    gen_data tr = gen_make(23, C, H, W, K, 5, 20);
    dsv_model *m = small_model(DSV_F64);
    double a_all, a_b1, a_sub, a_sub2;
    TU_OK(dsv_check_accuracy(m, &tr.s, 0, 5, 0, &a_all));
    /* batching does not change the result; 23 = 4 * 5 + 3 */
    TU_OK(dsv_check_accuracy(m, &tr.s, 0, 23, 0, &a_b1));
    assert_true(a_all == a_b1);
    assert_true(a_all * 23 == floor(a_all * 23 + 0.5));
    /* a subset is seeded */
    TU_OK(dsv_check_accuracy(m, &tr.s, 10, 4, 9, &a_sub));
    TU_OK(dsv_check_accuracy(m, &tr.s, 10, 3, 9, &a_sub2));
    assert_true(a_sub == a_sub2);
    assert_true(a_sub * 10 == floor(a_sub * 10 + 0.5));
    assert_int_equal(dsv_check_accuracy(m, &tr.s, 0, 0, 0, &a_all), DSV_INVALID);
    dsv_model_destroy(m);
    gen_free(&tr);
}

/* ---- resume identity ------------------------------------------------------ */

/* Trains a fresh run to the end and saves it at path. */
static void straight_run(const dsv_model_config *mc, const dsv_split *tr, const dsv_split *va,
                         const dsv_solver_config *c, const char *path, void *params_out)
{
    dsv_model *m;
    TU_OK(dsv_model_create(&m, mc));
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, tr, va, c));
    TU_OK(dsv_solver_train(s));
    TU_OK(dsv_checkpoint_save(s, path));
    memcpy(params_out, dsv_model_params(m), param_bytes(m));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
}

/* Trains with a stop after stop_at iterations (0: a first run of one epoch
 * that ends), saves, loads and trains to the end; saves at path. */
static void resumed_run(const dsv_model_config *mc, const dsv_split *tr, const dsv_split *va,
                        const dsv_solver_config *c0, int stop_at, const dsv_split *resume_tr,
                        const char *path, void *params_out)
{
    record r = {0};
    dsv_solver_config c = *c0;
    c.on_progress = on_progress;
    c.user = &r;
    r.stop_at = stop_at;
    if (!stop_at)
        c.num_epochs = 1;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, mc));
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, tr, va, &c));
    r.s = s;
    TU_OK(dsv_solver_train(s));
    const char *mid = tu_scratch("resume_mid.ckpt");
    TU_OK(dsv_checkpoint_save(s, mid));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);

    c = *c0; /* num_epochs of the full run */
    TU_OK(dsv_checkpoint_load(mid, &m, &s, resume_tr, va, &c));
    assert_int_equal(dsv_solver_iteration(s), stop_at ? stop_at : 5);
    TU_OK(dsv_solver_train(s));
    assert_true(dsv_solver_done(s));
    TU_OK(dsv_checkpoint_save(s, path));
    memcpy(params_out, dsv_model_params(m), param_bytes(m));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
}

/* Straight vs resumed runs of mc must end with the same bytes. */
static void check_resume(const dsv_model_config *mc, bool negative)
{
    gen_data tr = gen_make(52, C, H, W, K, 6, 40), va = gen_make(20, C, H, W, K, 6, 40);
    dsv_solver_config c = dsv_solver_config_default();
    c.optim = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.lr_decay = 0.9;
    c.batch_size = 10;
    c.num_epochs = 2;
    c.num_train_samples = 20;
    c.seed = 3;
    dsv_model *probe;
    TU_OK(dsv_model_create(&probe, mc));
    size_t nb = param_bytes(probe);
    dsv_model_destroy(probe);
    void *straight = malloc(nb), *resumed = malloc(nb);

    char straight_path[512], resumed_path[512];
    snprintf(straight_path, sizeof(straight_path), "%s", tu_scratch("resume_straight.ckpt"));
    snprintf(resumed_path, sizeof(resumed_path), "%s", tu_scratch("resume_resumed.ckpt"));
    straight_run(mc, &tr.s, &va.s, &c, straight_path, straight);
    size_t n1, n2;
    uint8_t *f1 = slurp(straight_path, &n1);

    /* 1 epoch (run ends, best swapped in) + load + 1 epoch; then a stop in
       the middle of the first epoch and one in the middle of the second. */
    int stops[] = {0, 3, 8};
    for (int i = 0; i < 3; i++) {
        memset(resumed, 0, nb);
        resumed_run(mc, &tr.s, &va.s, &c, stops[i], &tr.s, resumed_path, resumed);
        assert_memory_equal(straight, resumed, nb);
        uint8_t *f2 = slurp(resumed_path, &n2);
        /* the whole state, histories and optimizer moments included */
        assert_int_equal(n1, n2);
        assert_memory_equal(f1, f2, n1);
        free(f2);
    }

    if (negative) {
        /* The comparison notices a different trajectory: resuming on data
           with one changed pixel in every image ends elsewhere. */
        gen_data tr2 = gen_make(52, C, H, W, K, 6, 40);
        for (int i = 0; i < 52; i++)
            tr2.images[i * C * H * W + 100] ^= 0x40;
        resumed_run(mc, &tr.s, &va.s, &c, 3, &tr2.s, resumed_path, resumed);
        uint8_t *f3 = slurp(resumed_path, &n2);
        assert_int_equal(n1, n2);
        assert_true(memcmp(f1, f3, n1) != 0);
        free(f3);
        gen_free(&tr2);
    }
    free(f1);
    free(straight), free(resumed);
    gen_free(&tr), gen_free(&va);
}

static void test_resume_identity(void **st)
{
    (void)st;
    dsv_model_config mc = small_config(DSV_F32);
    check_resume(&mc, true);
}

/* Batch norm running statistics (buffers) and dropout masks (drawn from the
 * model's step count) must resume too; float64 this time. */
static void test_resume_identity_fc(void **st)
{
    (void)st;
    dsv_model_config mc = dsv_model_config_default(DSV_MODEL_FC);
    mc.dtype = DSV_F64;
    mc.input_dim[0] = C, mc.input_dim[1] = H, mc.input_dim[2] = W;
    mc.num_classes = K;
    mc.num_hidden = 2;
    mc.hidden_dims[0] = 20, mc.hidden_dims[1] = 12;
    mc.normalization = DSV_NORM_BATCHNORM;
    mc.dropout_keep = 0.7;
    mc.seed = 9;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &mc));
    assert_true(dsv_model_num_buffers(m) > 0);
    dsv_model_destroy(m);
    check_resume(&mc, false);
}

/* The Solver leaves the L2 term's gradient to the optimizer (added as it
 * reads the gradients); the trajectory must be the same bits as with the
 * model adding it (l2_n -1, the solver's fallback), for every rule and dtype,
 * also with the reg changed between two train calls. */
static void test_l2_in_optimizer_same_bits(void **st)
{
    (void)st;
    gen_data tr = gen_make(40, C, H, W, K, 3, 20);
    for (int dt = DSV_F32; dt <= DSV_F64; dt++)
        for (int rule = 0; rule < DSV_UPDATE_COUNT; rule++) {
            dsv_model *m[2];
            dsv_solver *s[2];
            record r[2] = {{0}, {0}};
            for (int k = 0; k < 2; k++) {
                m[k] = small_model((dsv_dtype)dt);
                TU_OK(dsv_model_set_reg(m[k], 0.05));
                dsv_solver_config c = base_config(&r[k]);
                c.optim = dsv_optim_config_default((dsv_update_rule)rule);
                c.num_epochs = 2;
                TU_OK(dsv_solver_create(&s[k], m[k], &tr.s, NULL, &c));
                r[k].s = s[k];
            }
            assert_true(s[0]->l2_n > 0); /* the optimizer adds it */
            s[1]->l2_n = -1;             /* the model adds it */
            for (int k = 0; k < 2; k++) {
                s[k]->cfg.num_epochs = 1;
                dsv_solver_layout_(s[k]);
                TU_OK(dsv_solver_train(s[k]));
                TU_OK(dsv_model_set_reg(m[k], 0.2));
                s[k]->cfg.num_epochs = 2;
                dsv_solver_layout_(s[k]);
                TU_OK(dsv_solver_train(s[k]));
            }
            assert_int_equal(dsv_solver_iteration(s[0]), 8);
            assert_memory_equal(dsv_model_params(m[0]), dsv_model_params(m[1]),
                                param_bytes(m[0]));
            for (int j = 0; j < dsv_optimizer_num_states(s[0]->opt); j++)
                assert_memory_equal(dsv_optimizer_state(s[0]->opt, j),
                                    dsv_optimizer_state(s[1]->opt, j), param_bytes(m[0]));
            const double *l0, *l1;
            assert_int_equal(dsv_solver_loss_history(s[0], &l0), 8);
            dsv_solver_loss_history(s[1], &l1);
            assert_memory_equal(l0, l1, 8 * sizeof(double));
            for (int k = 0; k < 2; k++) {
                dsv_solver_destroy(s[k]);
                dsv_model_destroy(m[k]);
            }
        }
    gen_free(&tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histories_and_lr_decay),
        cmocka_unit_test(test_best_params_swapped_in),
        cmocka_unit_test(test_stop_requests),
        cmocka_unit_test(test_nan_loss),
        cmocka_unit_test(test_overflow_not_applied_on_threads),
        cmocka_unit_test(test_check_accuracy),
        cmocka_unit_test(test_l2_in_optimizer_same_bits),
        cmocka_unit_test(test_resume_identity),
        cmocka_unit_test(test_resume_identity_fc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
