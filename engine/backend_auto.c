/*
 * "auto" between fast and oneDNN for relu, pooling and batch norm, decided
 * by timing once per configuration.
 *
 * Neither backend wins these ops everywhere: it depends on the CPU, the
 * shapes and the thread count. So the first call of a configuration (op,
 * dtype, train or test mode, threads, input shape, pooling window) that both
 * backends can run times them on scratch tensors of the call's shapes and
 * keeps the faster; later calls look the answer up.
 *
 * What must stay true:
 *  - trials never touch the live call: its tensors, running statistics and
 *    state slot (the pooling workspace, saved indices) are left alone;
 *  - a training configuration is timed forward + backward and one answer
 *    serves both passes, since the forward and backward calls of a node have
 *    the same key (oneDNN's backward wants its own forward's workspace);
 *  - decisions are process-wide and kept in the order they were made, so the
 *    execution plan (exec_plan.c, "backend" lines) lists them the same way
 *    in a run and in its resumption; a recorded decision is never timed
 *    again, and one set from a plan replaces whatever was there;
 *  - DASECV_AUTO_TIMING=0 times nothing: configurations without a recorded
 *    decision take the fixed preference order of backend.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dasecv/ops.h"
#include "internal/backend_table.h"
#include "internal/rng.h"

typedef struct decision {
    dsv_op op;
    int64_t key[DSV_AUTO_KEY_MAX];
    int nkey;
    dsv_backend b;
} decision;

/* Far more than the configurations of any network; past it the oldest is
 * forgotten (and timed again if it comes back). */
#define DECISIONS 256
static decision decisions[DECISIONS];
static int ndecisions, next_evict;
static int64_t trials_run;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* One timing at a time: under the batch schedule every thread meets the same
 * configuration at once, and trials running side by side would time each
 * other. The loser of the race finds the winner's decision. */
static pthread_mutex_t timing_lock = PTHREAD_MUTEX_INITIALIZER;

bool dsv_auto_timed_op(dsv_op op)
{
    return op == DSV_OP_RELU || op == DSV_OP_MAX_POOL || op == DSV_OP_AVG_POOL ||
           op == DSV_OP_BATCHNORM || op == DSV_OP_SPATIAL_BATCHNORM;
}

/* dtype, train, threads, ndim, the input's dims, and for pooling the window
 * and stride. (eps and momentum change no cost.) */
static int make_key(const dsv_call *c, int64_t *key)
{
    int n = 0;
    key[n++] = c->x->dtype;
    key[n++] = c->p.train;
    key[n++] = c->nthreads > 0 ? c->nthreads : dsv_get_num_threads();
    key[n++] = c->x->ndim;
    for (int i = 0; i < c->x->ndim; i++)
        key[n++] = c->x->shape[i];
    if (c->op == DSV_OP_MAX_POOL || c->op == DSV_OP_AVG_POOL) {
        key[n++] = c->p.pool_height;
        key[n++] = c->p.pool_width;
        key[n++] = c->p.stride;
    }
    return n;
}

static decision *find(dsv_op op, const int64_t *key, int nkey)
{
    for (int i = 0; i < ndecisions; i++)
        if (decisions[i].op == op && decisions[i].nkey == nkey &&
            !memcmp(decisions[i].key, key, sizeof(*key) * (size_t)nkey))
            return &decisions[i];
    return NULL;
}

static bool get(dsv_op op, const int64_t *key, int nkey, dsv_backend *b)
{
    pthread_mutex_lock(&lock);
    decision *d = find(op, key, nkey);
    if (d)
        *b = d->b;
    pthread_mutex_unlock(&lock);
    return d != NULL;
}

static void put(dsv_op op, const int64_t *key, int nkey, dsv_backend b)
{
    pthread_mutex_lock(&lock);
    decision *d = find(op, key, nkey);
    if (!d) {
        if (ndecisions < DECISIONS) {
            d = &decisions[ndecisions++];
        } else {
            d = &decisions[next_evict];
            next_evict = (next_evict + 1) % DECISIONS;
        }
        d->op = op;
        memcpy(d->key, key, sizeof(*key) * (size_t)nkey);
        d->nkey = nkey;
    }
    d->b = b;
    pthread_mutex_unlock(&lock);
}

bool dsv_auto_decision_at(int i, dsv_op *op, int64_t *key, int *nkey, dsv_backend *b)
{
    pthread_mutex_lock(&lock);
    bool ok = i >= 0 && i < ndecisions;
    if (ok) {
        *op = decisions[i].op;
        memcpy(key, decisions[i].key, sizeof(*key) * (size_t)decisions[i].nkey);
        *nkey = decisions[i].nkey;
        *b = decisions[i].b;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

dsv_status dsv_auto_decision_check(dsv_op op, int nkey, dsv_backend b)
{
    if (!dsv_auto_timed_op(op))
        return dsv_error(DSV_INVALID, "%s is not an op whose backend is timed "
                         "(relu, max_pool, avg_pool, batchnorm, spatial_batchnorm)",
                         dsv_op_name(op));
    if (nkey < 5 || nkey > DSV_AUTO_KEY_MAX)
        return dsv_error(DSV_INVALID, "the key must be 5 to %d integers", DSV_AUTO_KEY_MAX);
    if (b != DSV_BACKEND_FAST && b != DSV_BACKEND_ONEDNN)
        return dsv_error(DSV_INVALID, "the backend must be fast or onednn");
    if (!dsv_backend_get(b))
        return dsv_error(DSV_INVALID, "backend %s is not built in", dsv_backend_name(b));
    return DSV_OK;
}

dsv_status dsv_auto_decision_set(dsv_op op, const int64_t *key, int nkey, dsv_backend b)
{
    dsv_status s = dsv_auto_decision_check(op, nkey, b);
    if (!s)
        put(op, key, nkey, b);
    return s;
}

int64_t dsv_auto_trials(void)
{
    return __atomic_load_n(&trials_run, __ATOMIC_RELAXED);
}

bool dsv_auto_timing_on(void)
{
    const char *env = getenv("DASECV_AUTO_TIMING");
    return !env || strcmp(env, "0") != 0;
}

/* ---- trials ------------------------------------------------------------------ */

/* Scratch copies of every tensor the live call has (shapes only), and the
 * gradients a training pass writes. */
typedef struct trial {
    dsv_tensor x, w, b, rm, rv, out, dout, dx, dw, db;
} trial;

static void trial_free(trial *t)
{
    dsv_tensor *all[] = {&t->x, &t->w, &t->b, &t->rm, &t->rv,
                         &t->out, &t->dout, &t->dx, &t->dw, &t->db};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dsv_tensor_free(all[i]);
}

/* Values in [-1, 1): signs matter to relu and max pooling. */
static void fill(dsv_tensor *t, uint64_t seed)
{
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        dsv_tensor_set(t, i, 2 * dsv_splitmix64_uniform(&seed) - 1);
}

static void fill_const(dsv_tensor *t, double v)
{
    int64_t n = dsv_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        dsv_tensor_set(t, i, v);
}

static dsv_status trial_make(const dsv_call *c, bool train, trial *t, dsv_call *fc,
                             dsv_call *bc)
{
    int nd;
    int64_t os[DSV_MAX_DIMS];
    dsv_status s;
    memset(t, 0, sizeof(*t));
    if ((s = dsv_op_check(c, false, &nd, os)) || (s = dsv_tensor_init_like(&t->x, c->x)) ||
        (s = dsv_tensor_init(&t->out, c->x->dtype, nd, os)))
        return s;
    fill(&t->x, 1);
    *fc = dsv_call_make(c->op);
    fc->p = c->p;
    fc->nthreads = c->nthreads;
    fc->x = &t->x;
    fc->out = &t->out;
    if (c->w && c->b) {
        if ((s = dsv_tensor_init_like(&t->w, c->w)) || (s = dsv_tensor_init_like(&t->b, c->b)))
            return s;
        fill_const(&t->w, 1);
        fc->w = &t->w;
        fc->b = &t->b;
    }
    if (c->running_mean && c->running_var) {
        if ((s = dsv_tensor_init_like(&t->rm, c->running_mean)) ||
            (s = dsv_tensor_init_like(&t->rv, c->running_var)))
            return s;
        fill_const(&t->rv, 1);
        fc->running_mean = &t->rm;
        fc->running_var = &t->rv;
    }
    *bc = *fc;
    bc->out = NULL; /* as the graph's backward: the output's memory is gone */
    if (!train)
        return DSV_OK;
    if ((s = dsv_tensor_init_like(&t->dout, &t->out)) ||
        (s = dsv_tensor_init_like(&t->dx, &t->x)))
        return s;
    fill(&t->dout, 2);
    bc->dout = &t->dout;
    bc->dx = &t->dx;
    if (fc->w) {
        if ((s = dsv_tensor_init_like(&t->dw, &t->w)) ||
            (s = dsv_tensor_init_like(&t->db, &t->b)))
            return s;
        bc->dw = &t->dw;
        bc->db = &t->db;
    }
    return DSV_OK;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { WARMUP = 1, REPS = 5 };

/* Median milliseconds of fast (0) and oneDNN (1) on one trial, the two
 * interleaved so that a busy spell of the machine hits both; negative for a
 * backend that failed. */
static void time_both(dsv_call *fc, dsv_call *bc, bool train, double ms[2])
{
    static const dsv_backend bk[2] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN};
    double runs[2][REPS];
    dsv_state st[2] = {{0}};
    bool failed[2] = {false, false};
    /* oneDNN's own implementation timing would dwarf the trial */
    const dsv_backend_table *odn = dsv_backend_get(DSV_BACKEND_ONEDNN);
    if (odn && odn->set_tuning)
        odn->set_tuning(false);
    for (int r = 0; r < WARMUP + REPS; r++)
        for (int j = 0; j < 2; j++) {
            int k = (r & 1) ? 1 - j : j;
            if (failed[k])
                continue;
            fc->state = bc->state = &st[k];
            double t0 = now_ms();
            if (dsv_forward(fc, bk[k], NULL) || (train && dsv_backward(bc, bk[k], NULL)))
                failed[k] = true;
            if (r >= WARMUP)
                runs[k][r - WARMUP] = now_ms() - t0;
        }
    if (odn && odn->set_tuning)
        odn->set_tuning(true);
    for (int k = 0; k < 2; k++) {
        dsv_state_free(&st[k]);
        qsort(runs[k], REPS, sizeof(double), cmp_double);
        ms[k] = failed[k] ? -1 : runs[k][REPS / 2];
    }
}

/* The faster of fast and oneDNN for c (both can run it), timed now. */
static dsv_backend time_pick(const dsv_call *c, dsv_backend fallback)
{
    trial t;
    dsv_call fc, bc;
    bool train = c->p.train;
    dsv_backend b = fallback;
    if (!trial_make(c, train, &t, &fc, &bc)) {
        double ms[2];
        time_both(&fc, &bc, train, ms);
        __atomic_add_fetch(&trials_run, 1, __ATOMIC_RELAXED);
        if (ms[0] >= 0 && (ms[1] < 0 || ms[0] <= ms[1]))
            b = DSV_BACKEND_FAST;
        else if (ms[1] >= 0)
            b = DSV_BACKEND_ONEDNN;
    }
    trial_free(&t);
    return b;
}

bool dsv_auto_lookup(const dsv_call *c, dsv_backend *b)
{
    int64_t key[DSV_AUTO_KEY_MAX];
    return dsv_auto_timed_op(c->op) && get(c->op, key, make_key(c, key), b);
}

dsv_backend dsv_auto_decide(const dsv_call *c, dsv_backend fallback)
{
    int64_t key[DSV_AUTO_KEY_MAX];
    int nkey = make_key(c, key);
    dsv_backend b;
    if (get(c->op, key, nkey, &b))
        return b;
    if (!dsv_auto_timing_on())
        return fallback;
    pthread_mutex_lock(&timing_lock);
    if (!get(c->op, key, nkey, &b)) {
        b = time_pick(c, fallback);
        put(c->op, key, nkey, b);
    }
    pthread_mutex_unlock(&timing_lock);
    return b;
}
