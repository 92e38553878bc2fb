/*
 * The Solver (the course's solver.py): minibatch training with an update rule,
 * lr decay after each epoch, accuracy checks at each epoch end, histories,
 * and the best-validation parameters swapped in when training ends.
 *
 * What must stay true: the trajectory depends only on the state in
 * struct dsv_solver (solver_priv.h), which checkpoints store whole, so that
 * training N epochs straight and k epochs, save, load, N - k epochs give the
 * same bits (same thread count). Minibatches are consecutive slices of a
 * per-epoch permutation drawn from the solver's own splitmix64 state; a last
 * partial batch is dropped. A step whose loss, gradients or running
 * statistics are NaN or Inf, or whose update would make a parameter or an
 * optimizer state NaN or Inf, is undone (the update is never applied) before
 * train returns the error.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/dist.h"
#include "internal/l2.h"
#include "internal/optim.h"
#include "internal/rng.h"
#include "solver_priv.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fisher-Yates over 0..n-1; the modulo bias is below n / 2^64. */
static void draw_permutation(int64_t *perm, int64_t n, uint64_t *rng)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(dsv_splitmix64(rng) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

dsv_solver_config dsv_solver_config_default(void)
{
    dsv_solver_config c = {
        .optim = dsv_optim_config_default(DSV_UPDATE_SGD),
        .lr_decay = 1.0,
        .batch_size = 100,
        .num_epochs = 10,
        .num_train_samples = 1000,
        .num_val_samples = 0,
        .print_every = 10,
        .verbose = false,
        .seed = 0,
    };
    return c;
}

void dsv_solver_layout_(dsv_solver *s)
{
    int64_t n = s->train->n, bs = s->cfg.batch_size;
    s->batch = bs < n ? bs : n;
    s->iters_per_epoch = n / bs > 1 ? n / bs : 1;
    s->num_iterations = (int64_t)s->cfg.num_epochs * s->iters_per_epoch;
}

static dsv_status grow(double **v, int64_t need, int64_t *cap)
{
    if (need <= *cap)
        return DSV_OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    double *p = realloc(*v, (size_t)c * sizeof(double));
    if (!p)
        return dsv_error(DSV_NOMEM, "solver: cannot grow the histories to %lld entries",
                         (long long)c);
    *v = p;
    *cap = c;
    return DSV_OK;
}

dsv_status dsv_solver_hist_reserve_(dsv_solver *s, int64_t nloss, int nacc)
{
    dsv_status st = grow(&s->loss_hist, nloss, &s->loss_cap);
    if (st)
        return st;
    int64_t cap = s->acc_cap, cap2 = s->acc_cap;
    if ((st = grow(&s->train_acc, nacc, &cap)) || (st = grow(&s->val_acc, nacc, &cap2)))
        return st;
    s->acc_cap = (int)(cap < cap2 ? cap : cap2);
    return DSV_OK;
}

static dsv_status check_split(const dsv_model_options *mc, const dsv_split *sp,
                              const char *what)
{
    if (sp->n < 1 || (!sp->images && !sp->fimages) || !sp->labels)
        return dsv_error(DSV_INVALID, "solver: the %s split is empty", what);
    if (sp->c != mc->input_dim[0] || sp->h != mc->input_dim[1] || sp->w != mc->input_dim[2])
        return dsv_error(DSV_INVALID,
                         "solver: %s images are %dx%dx%d but the model expects %dx%dx%d",
                         what, sp->c, sp->h, sp->w, mc->input_dim[0], mc->input_dim[1],
                         mc->input_dim[2]);
    return DSV_OK;
}

static void *alloc_block(int64_t n, size_t esz)
{
    return dsv_alloc(n > 0 ? (size_t)n * esz : 1);
}

/* The weights' ranges of the parameter block, ascending, for the optimizer's
 * L2 term; l2_n -1 (the model adds the term itself) if the weights are not
 * laid out in ascending order in the block. */
static dsv_status l2_ranges(dsv_solver *s)
{
    const int nt = dsv_model_num_tensors(s->m);
    s->l2_n = -1;
    s->l2_reg = -1;
    s->l2_ranges = malloc(sizeof(int64_t) * 2 * (size_t)(nt > 0 ? nt : 1));
    if (!s->l2_ranges)
        return dsv_error(DSV_NOMEM, "solver: out of memory");
    const char *base = dsv_model_params(s->m);
    const size_t es = dsv_dtype_size(s->dtype);
    int n = 0;
    int64_t prev = 0;
    for (int i = 0; i < nt; i++) {
        if (!dsv_model_tensor_is_weight(s->m, i))
            continue;
        dsv_tensor t = dsv_model_param(s->m, i);
        const int64_t b = (int64_t)(((const char *)t.data - base) / (ptrdiff_t)es);
        const int64_t e = b + dsv_tensor_numel(&t);
        if (b < prev || e > s->nparams)
            return DSV_OK;
        s->l2_ranges[2 * n] = b;
        s->l2_ranges[2 * n + 1] = e;
        prev = e;
        n++;
    }
    s->l2_n = n;
    return DSV_OK;
}

/* The step's loss and gradients: the model's, with the L2 term's gradient
 * left to the optimizer where the ranges allow (the reg is read each step,
 * as dsv_model_set_reg may change it between steps). */
static dsv_status step_loss(dsv_solver *s, double *loss)
{
    const double reg = dsv_model_options_of(s->m)->reg;
    if (s->l2_n >= 0 && reg != s->l2_reg) {
        dsv_status st = dsv_optimizer_set_l2(s->opt, reg, s->l2_ranges, s->l2_n);
        if (st)
            return st;
        s->l2_reg = reg;
    }
    return s->l2_n >= 0 ? dsv_model_loss_l2_deferred(s->m, &s->xb, &s->yb, loss)
                        : dsv_model_loss(s->m, &s->xb, &s->yb, loss);
}

dsv_status dsv_solver_create(dsv_solver **out, dsv_model *m,
                             const dsv_split *train, const dsv_split *val,
                             const dsv_solver_config *cfg)
{
    *out = NULL;
    if (!m || !train || !cfg)
        return dsv_error(DSV_INVALID, "solver: model, training split and config are required");
    const dsv_model_options *mc = dsv_model_options_of(m);
    dsv_status st = check_split(mc, train, "training");
    if (!st && val)
        st = check_split(mc, val, "validation");
    if (st)
        return st;
    if (cfg->batch_size < 1)
        return dsv_error(DSV_INVALID, "solver: batch_size must be >= 1, got %d", cfg->batch_size);
    if (cfg->num_epochs < 0)
        return dsv_error(DSV_INVALID, "solver: num_epochs must be >= 0, got %d", cfg->num_epochs);
    if (!(cfg->lr_decay > 0) || !isfinite(cfg->lr_decay))
        return dsv_error(DSV_INVALID, "solver: lr_decay must be > 0, got %g", cfg->lr_decay);
    if (cfg->num_train_samples < 0 || cfg->num_val_samples < 0)
        return dsv_error(DSV_INVALID, "solver: sample counts must be >= 0");

    dsv_solver *s = calloc(1, sizeof(*s));
    if (!s)
        return dsv_error(DSV_NOMEM, "solver: out of memory");
    s->m = m;
    s->train = train;
    s->val = val;
    s->cfg = *cfg;
    s->dtype = (dsv_dtype)mc->dtype;
    s->nparams = dsv_model_num_params(m);
    s->nbuffers = dsv_model_num_buffers(m);
    s->rng = s->rng_epoch = cfg->seed;
    s->best_val_acc = 0;
    s->shard_size = 1;
    dsv_solver_layout_(s);
    if ((st = dsv_optimizer_create(&s->opt, &cfg->optim, s->nparams, s->dtype)))
        goto fail;
    size_t esz = dsv_dtype_size(s->dtype);
    s->perm = malloc((size_t)train->n * sizeof(int64_t));
    s->best_params = alloc_block(s->nparams, esz);
    s->best_buffers = alloc_block(s->nbuffers, esz);
    s->last_params = alloc_block(s->nparams, esz);
    s->last_buffers = alloc_block(s->nbuffers, esz);
    s->bak_buffers = alloc_block(s->nbuffers, esz);
    int ok = s->perm && s->best_params && s->best_buffers && s->last_params &&
             s->last_buffers && s->bak_buffers;
    if (!ok) {
        st = dsv_error(DSV_NOMEM, "solver: cannot allocate copies of %lld parameters",
                       (long long)s->nparams);
        goto fail;
    }
    if ((st = dsv_solver_hist_reserve_(s, 64, 16)) || (st = l2_ranges(s)))
        goto fail;
    *out = s;
    return DSV_OK;
fail:
    dsv_solver_destroy(s);
    return st;
}

void dsv_solver_destroy(dsv_solver *s)
{
    if (!s)
        return;
    dsv_optimizer_destroy(s->opt);
    free(s->perm);
    free(s->loss_hist);
    free(s->train_acc);
    free(s->val_acc);
    dsv_free(s->best_params);
    dsv_free(s->best_buffers);
    dsv_free(s->last_params);
    dsv_free(s->last_buffers);
    dsv_free(s->bak_buffers);
    free(s->l2_ranges);
    dsv_tensor_free(&s->xb);
    dsv_tensor_free(&s->yb);
    free(s);
}

void dsv_solver_request_stop(dsv_solver *s) { s->stop_request = 1; }
bool dsv_solver_stopped(const dsv_solver *s) { return s->stopped; }
bool dsv_solver_done(const dsv_solver *s) { return s->iteration >= s->num_iterations; }
int64_t dsv_solver_iteration(const dsv_solver *s) { return s->iteration; }
int dsv_solver_epoch(const dsv_solver *s) { return s->epoch; }
double dsv_solver_best_val_acc(const dsv_solver *s) { return s->best_val_acc; }

int64_t dsv_solver_loss_history(const dsv_solver *s, const double **v)
{
    *v = s->loss_hist;
    return s->loss_n;
}

int dsv_solver_acc_history(const dsv_solver *s, const double **train,
                           const double **val)
{
    if (train)
        *train = s->train_acc;
    if (val)
        *val = s->val_acc;
    return s->acc_n;
}

/* ---- accuracy ------------------------------------------------------------ */

static int64_t argmax_row(const dsv_tensor *scores, int64_t i, int64_t k)
{
    int64_t best = 0;
    if (scores->dtype == DSV_F32) {
        const float *r = (const float *)scores->data + i * k;
        for (int64_t j = 1; j < k; j++)
            if (r[j] > r[best])
                best = j;
    } else {
        const double *r = (const double *)scores->data + i * k;
        for (int64_t j = 1; j < k; j++)
            if (r[j] > r[best])
                best = j;
    }
    return best;
}

dsv_status dsv_check_accuracy(dsv_model *m, const dsv_split *split,
                              int64_t num_samples, int batch_size,
                              uint64_t seed, double *acc)
{
    *acc = NAN;
    if (!m || !split)
        return dsv_error(DSV_INVALID, "check_accuracy: model and split are required");
    const dsv_model_options *mc = dsv_model_options_of(m);
    dsv_status st = check_split(mc, split, "evaluated");
    if (st)
        return st;
    if (batch_size < 1 || num_samples < 0)
        return dsv_error(DSV_INVALID, "check_accuracy: batch_size %d / num_samples %lld",
                         batch_size, (long long)num_samples);
    /* Rows to score: all, or a seeded subset without repetition (a partial
       Fisher-Yates), in batches of batch_size. */
    int64_t n = split->n, count = num_samples > 0 && num_samples < n ? num_samples : n;
    int64_t *idx = malloc((size_t)n * sizeof(*idx));
    if (!idx)
        return dsv_error(DSV_NOMEM, "check_accuracy: out of memory");
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    uint64_t rng = seed;
    for (int64_t i = 0; count < n && i < count; i++) {
        int64_t j = i + (int64_t)(dsv_splitmix64(&rng) % (uint64_t)(n - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    int64_t bs = batch_size < count ? batch_size : count;
    int64_t k = mc->num_classes;
    dsv_tensor x = {0}, y = {0}, scores = {0};
    int64_t correct = 0;
    if ((st = dsv_tensor_init(&scores, (dsv_dtype)mc->dtype, 2, (int64_t[]){bs, k})) ||
        (st = dsv_tensor_init(&x, (dsv_dtype)mc->dtype, 4,
                              (int64_t[]){bs, split->c, split->h, split->w})) ||
        (st = dsv_tensor_init(&y, DSV_I32, 1, (int64_t[]){bs})))
        goto done;
    for (int64_t i0 = 0; i0 < count; i0 += bs) {
        int64_t nb = count - i0 < bs ? count - i0 : bs;
        dsv_tensor xs = dsv_tensor_slice(&x, 0, nb), ys = dsv_tensor_slice(&y, 0, nb);
        dsv_tensor ss = dsv_tensor_slice(&scores, 0, nb);
        if ((st = dsv_split_batch(split, idx + i0, nb, &xs, &ys, (dsv_dtype)mc->dtype)) ||
            (st = dsv_model_scores(m, &xs, &ss)))
            goto done;
        const int32_t *yl = ys.data;
        for (int64_t j = 0; j < nb; j++)
            correct += argmax_row(&ss, j, k) == yl[j];
    }
    *acc = (double)correct / (double)count;
done:
    free(idx);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&scores);
    return st;
}

/* ---- training ------------------------------------------------------------ */

static size_t esize(const dsv_solver *s) { return dsv_dtype_size(s->dtype); }

/* Below this many bytes the scans for NaN and Inf stay on one thread (a
 * parallel region costs more than it saves). */
enum { PAR_MIN_BYTES = 1 << 18 };

/* Threads for those scans: the model's. */
static int threads_of(const dsv_solver *s)
{
    int t = dsv_model_exec(s->m)->threads;
    return t > 0 ? t : dsv_get_num_threads();
}

/* True when no value is NaN or Inf: an all-ones exponent field. Written on the
 * bit patterns so that the loop vectorises; split across threads, as it runs
 * over every running statistic each iteration (the gradients are checked by
 * dsv_optimizer_check, in its pass over them). */
static bool all_finite(const void *p, int64_t n, dsv_dtype dt, int nt)
{
    unsigned bad = 0;
    const unsigned char *b = p;
    const int64_t es = (int64_t)dsv_dtype_size(dt);
    (void)es, (void)nt; /* read only by OpenMP */
    if (dt == DSV_F32) {
#pragma omp parallel for simd reduction(| : bad) schedule(static) num_threads(nt) \
    if (n * es >= PAR_MIN_BYTES)
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, b + 4 * i, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
    } else {
#pragma omp parallel for simd reduction(| : bad) schedule(static) num_threads(nt) \
    if (n * es >= PAR_MIN_BYTES)
        for (int64_t i = 0; i < n; i++) {
            uint64_t u;
            memcpy(&u, b + 8 * i, 8);
            bad |= (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
        }
    }
    return !bad;
}

/* What a step changes before its update: the running statistics (the
 * forward), the model's step count, the RNG. The parameters and optimizer
 * state change only in the update, which runs only once
 * dsv_optimizer_check has passed, so they need no copy. */
static void backup(dsv_solver *s)
{
    if (s->nbuffers)
        memcpy(s->bak_buffers, dsv_model_buffers(s->m), (size_t)s->nbuffers * esize(s));
    s->bak_model_steps = dsv_model_train_steps(s->m);
}

static void restore(dsv_solver *s)
{
    if (s->nbuffers)
        memcpy(dsv_model_buffers(s->m), s->bak_buffers, (size_t)s->nbuffers * esize(s));
    dsv_model_set_train_steps(s->m, s->bak_model_steps);
    /* an epoch's first step that fails leaves its permutation undrawn */
    s->rng = s->bak_rng;
    s->rng_epoch = s->bak_rng_epoch;
}

static uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t st = seed ^ (a * 0xd1b54a32d192ed03ull) ^ (b * 0x8cb92ba72f3d8dd7ull);
    return dsv_splitmix64(&st);
}

static dsv_status epoch_end_checks(dsv_solver *s, double *tr, double *va)
{
    int bs = s->cfg.batch_size;
    dsv_status st = dsv_check_accuracy(s->m, s->train, s->cfg.num_train_samples, bs,
                                       mix_seed(s->cfg.seed, 1, (uint64_t)s->epoch), tr);
    if (st)
        return st;
    *va = NAN;
    if (s->val && (st = dsv_check_accuracy(s->m, s->val, s->cfg.num_val_samples, bs,
                                           mix_seed(s->cfg.seed, 2, (uint64_t)s->epoch), va)))
        return st;
    if ((st = dsv_solver_hist_reserve_(s, s->loss_n, s->acc_n + 1)))
        return st;
    s->train_acc[s->acc_n] = *tr;
    s->val_acc[s->acc_n] = *va;
    s->acc_n++;
    if (s->val && *va > s->best_val_acc) {
        size_t es = esize(s);
        s->best_val_acc = *va;
        s->has_best = 1;
        memcpy(s->best_params, dsv_model_params(s->m), (size_t)s->nparams * es);
        if (s->nbuffers)
            memcpy(s->best_buffers, dsv_model_buffers(s->m), (size_t)s->nbuffers * es);
    }
    return DSV_OK;
}

/* At the end of training the model gets the best-validation parameters; the
 * trajectory's own are kept for checkpoints. */
static void swap_in_best(dsv_solver *s)
{
    if (s->swapped || !s->has_best)
        return;
    size_t es = esize(s);
    memcpy(s->last_params, dsv_model_params(s->m), (size_t)s->nparams * es);
    memcpy(dsv_model_params(s->m), s->best_params, (size_t)s->nparams * es);
    if (s->nbuffers) {
        memcpy(s->last_buffers, dsv_model_buffers(s->m), (size_t)s->nbuffers * es);
        memcpy(dsv_model_buffers(s->m), s->best_buffers, (size_t)s->nbuffers * es);
    }
    s->swapped = 1;
}

static dsv_status next_batch(dsv_solver *s)
{
    int64_t in_epoch = s->iteration % s->iters_per_epoch;
    if (in_epoch == 0) {
        s->rng_epoch = s->rng;
        draw_permutation(s->perm, s->train->n, &s->rng);
        s->perm_valid = 1;
    } else if (!s->perm_valid) {
        uint64_t r = s->rng_epoch;
        draw_permutation(s->perm, s->train->n, &r);
        s->perm_valid = 1;
    }
    int64_t B = s->batch, r = s->shard_rank, k = s->shard_size;
    int64_t r0 = B * r / k, r1 = B * (r + 1) / k;
    return dsv_split_batch(s->train, s->perm + in_epoch * B + r0, r1 - r0, &s->xb, &s->yb,
                           s->dtype);
}

dsv_status dsv_solver_set_shard(dsv_solver *s, int rank, int size)
{
    if (size < 1 || rank < 0 || rank >= size)
        return dsv_error(DSV_INVALID, "solver: bad shard %d of %d", rank, size);
    if (s->batch < size)
        return dsv_error(DSV_INVALID,
                         "solver: a minibatch of %lld images cannot be split across %d "
                         "processes; use a batch size of at least %d",
                         (long long)s->batch, size, size);
    s->shard_rank = rank;
    s->shard_size = size;
    /* every process's loss and gradients: its share of the global mean */
    dsv_graph_set_global_batch(dsv_model_graph(s->m), size > 1 ? s->batch : 0);
    return DSV_OK;
}

static dsv_status bad_step(dsv_solver *s, const char *what, double loss)
{
    restore(s);
    return dsv_error(DSV_INVALID,
                     "training diverged: %s at iteration %lld (epoch %d, loss %g, "
                     "learning rate %g); stopped with the parameters from before this "
                     "step; try a lower learning rate",
                     what, (long long)s->iteration + 1, s->epoch + 1, loss,
                     dsv_optimizer_config(s->opt)->learning_rate);
}

dsv_status dsv_solver_train(dsv_solver *s)
{
    s->stopped = 0;
    /* the step uses the threads the model was given (set after create) */
    dsv_optimizer_set_threads(s->opt, dsv_model_exec(s->m)->threads);
    double t0 = now_s(), epoch_t0 = t0;
    int64_t epoch_images = 0;
    dsv_status st = DSV_OK;
    while (s->iteration < s->num_iterations) {
        if (s->stop_request) {
            s->stop_request = 0;
            s->stopped = 1;
            break;
        }
        s->bak_rng = s->rng;
        s->bak_rng_epoch = s->rng_epoch;
        if ((st = next_batch(s))) {
            s->rng = s->bak_rng;
            s->rng_epoch = s->bak_rng_epoch;
            return st;
        }
        if ((st = dsv_solver_hist_reserve_(s, s->loss_n + 1, s->acc_n + 1)))
            return st;
        backup(s);
        double loss;
        if ((st = step_loss(s, &loss))) {
            restore(s);
            return st;
        }
        if (!isfinite(loss))
            return bad_step(s, isnan(loss) ? "the loss is NaN" : "the loss is infinite", loss);
        /* one pass checks the gradients and the update they would make */
        const unsigned bad =
            dsv_optimizer_check(s->opt, dsv_model_params(s->m), dsv_model_grads(s->m));
        if (bad & DSV_OPTIM_BAD_GRAD)
            return bad_step(s, "a gradient is NaN or infinite", loss);
        if (s->nbuffers &&
            !all_finite(dsv_model_buffers(s->m), s->nbuffers, s->dtype, threads_of(s)))
            return bad_step(s, "a running statistic is NaN or infinite", loss);
        double lr = dsv_optimizer_config(s->opt)->learning_rate;
        if (bad & DSV_OPTIM_BAD_UPDATE)
            return bad_step(s, "the update would make a parameter or optimizer state NaN "
                               "or infinite", loss);
        dsv_optimizer_step(s->opt, dsv_model_params(s->m), dsv_model_grads(s->m));

        s->iteration++;
        s->loss_hist[s->loss_n++] = loss;
        epoch_images += s->batch;
        double t = now_s();
        dsv_progress p = {
            .iteration = s->iteration,
            .num_iterations = s->num_iterations,
            .epoch = s->epoch + 1,
            .num_epochs = s->cfg.num_epochs,
            .loss = loss,
            .learning_rate = lr,
            .train_acc = NAN,
            .val_acc = NAN,
            .epoch_end = s->iteration % s->iters_per_epoch == 0,
            .images_per_s = t > epoch_t0 ? (double)epoch_images / (t - epoch_t0) : 0,
            .seconds = t - t0,
        };
        if (s->cfg.verbose && s->cfg.print_every > 0 &&
            (s->iteration - 1) % s->cfg.print_every == 0)
            printf("(Iteration %lld / %lld) loss: %f\n", (long long)s->iteration,
                   (long long)s->num_iterations, loss);
        if (p.epoch_end) {
            s->epoch++;
            s->perm_valid = 0;
            dsv_optimizer_config(s->opt)->learning_rate *= s->cfg.lr_decay;
            if ((st = epoch_end_checks(s, &p.train_acc, &p.val_acc)))
                return st;
            if (s->cfg.verbose)
                printf("(Epoch %d / %d) train acc: %f; val_acc: %f\n", s->epoch,
                       s->cfg.num_epochs, p.train_acc, p.val_acc);
            epoch_t0 = now_s();
            epoch_images = 0;
        }
        if (s->cfg.on_progress && !s->cfg.on_progress(&p, s->cfg.user))
            s->stop_request = 1;
    }
    if (s->iteration >= s->num_iterations) {
        s->stop_request = 0;
        swap_in_best(s);
    }
    return DSV_OK;
}
