/*
 * The engine's data-parallel hooks (internal/dist.h) without MPI: two
 * threads stand for two processes, each with its own model and half of a
 * minibatch, and sum through a barrier. Their gradients, loss and running
 * statistics must be one model's on the whole minibatch (batch norm
 * included), and the gradients-ready callbacks must come once per node with
 * parameters, in backward order, before grads_done.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal/dist.h"
#include "testutil.h"

#define N 8
#define MAX_LEN 4096

static const char net[] = "[net]\nchannels=2\nheight=6\nwidth=6\nclasses=5\n"
                          "init=he\n\n[conv]\nfilters=3\nsize=3\npad=1\n\n"
                          "[spatial_batchnorm]\n\n[relu]\n\n[max_pool]\nsize=2\nstride=2\n\n"
                          "[affine]\noutputs=16\n\n[batchnorm]\n\n[relu]\n\n"
                          "[affine]\noutputs=classes\n\n[softmax_loss]\n";

/* The two "processes": a sum is both slots added in slot order. */
static pthread_barrier_t g_bar;
static double g_slot[2][MAX_LEN];

typedef struct rank {
    int id;
    dsv_model *m;
    dsv_tensor x, y;
    double loss;
    int ready[64], nready, done_calls;
    dsv_status st;
} rank;

static dsv_status sum2(rank *r, double *buf, int64_t n)
{
    if (n > MAX_LEN)
        return dsv_error(DSV_INVALID, "test sum of %lld values", (long long)n);
    memcpy(g_slot[r->id], buf, sizeof(double) * (size_t)n);
    pthread_barrier_wait(&g_bar);
    for (int64_t i = 0; i < n; i++)
        buf[i] = g_slot[0][i] + g_slot[1][i];
    pthread_barrier_wait(&g_bar);
    return DSV_OK;
}

static dsv_status sum_stats(void *user, double *buf, int64_t n) { return sum2(user, buf, n); }

static dsv_status grads_ready(void *user, int node)
{
    rank *r = user;
    if (r->done_calls || r->nready == 64)
        return dsv_error(DSV_INVALID, "grads_ready after grads_done");
    r->ready[r->nready++] = node;
    return DSV_OK;
}

static dsv_status grads_done(void *user, double *loss)
{
    rank *r = user;
    r->done_calls++;
    int64_t n = dsv_model_num_params(r->m);
    if (dsv_model_dtype(r->m) == DSV_F64) {
        dsv_status st = sum2(r, dsv_model_grads(r->m), n);
        return st ? st : sum2(r, loss, 1);
    }
    /* float32 gradients summed in double, as a float sum of two would be */
    static double tmp[2][MAX_LEN];
    float *g = dsv_model_grads(r->m);
    if (n > MAX_LEN)
        return dsv_error(DSV_INVALID, "test sum of %lld values", (long long)n);
    for (int64_t i = 0; i < n; i++)
        tmp[r->id][i] = g[i];
    dsv_status st = sum2(r, tmp[r->id], n);
    for (int64_t i = 0; i < n; i++)
        g[i] = (float)tmp[r->id][i];
    return st ? st : sum2(r, loss, 1);
}

static void *rank_main(void *arg)
{
    rank *r = arg;
    r->st = dsv_model_loss(r->m, &r->x, &r->y, &r->loss);
    return NULL;
}

static dsv_model *make_model(dsv_dtype dt)
{
    dsv_model *m;
    dsv_model_options o = dsv_model_options_default();
    o.seed = 3;
    o.dtype = dt;
    TU_OK(dsv_model_create_from_text(&m, net, "test", &o));
    dsv_exec_options eo = dsv_exec_options_default();
    eo.threads = 1;
    TU_OK(dsv_model_set_exec(m, &eo));
    return m;
}

/* Largest difference over n values of dtype dt, relative to the largest
 * magnitude in a (absolute when that is below 1). */
static double max_diff(dsv_dtype dt, const void *a, const void *b, int64_t n)
{
    double e = 0, big = 1;
    for (int64_t i = 0; i < n; i++) {
        double u = dt == DSV_F64 ? ((const double *)a)[i] : ((const float *)a)[i];
        double v = dt == DSV_F64 ? ((const double *)b)[i] : ((const float *)b)[i];
        e = fmax(e, fabs(u - v));
        big = fmax(big, fabs(u));
    }
    return e / big;
}

/* float64: the naive kernels' synchronized statistics, to rounding; float32:
 * the fast kernels' (two passes around a shared pivot) against the one-pass
 * kernel on the whole batch. */
static void two_halves(dsv_dtype dt, double tol)
{
    tu_rng rng = {11};
    dsv_tensor x = tu_randn(&rng, dt, 4, (int64_t[]){N, 2, 6, 6}, 1.0);
    dsv_tensor y = tu_labels(&rng, N, 5);
    dsv_model *ref = make_model(dt);
    double loss;
    TU_OK(dsv_model_loss(ref, &x, &y, &loss));

    rank r[2];
    pthread_barrier_init(&g_bar, NULL, 2);
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        memset(&r[k], 0, sizeof(r[k]));
        r[k].id = k;
        r[k].m = make_model(dt);
        r[k].x = dsv_tensor_slice(&x, k * N / 2, N / 2);
        r[k].y = dsv_tensor_slice(&y, k * N / 2, N / 2);
        dsv_dist_hooks h = {.user = &r[k], .sum_stats = sum_stats,
                            .grads_ready = grads_ready, .grads_done = grads_done};
        dsv_graph *g = dsv_model_graph(r[k].m);
        dsv_graph_set_dist_hooks(g, &h);
        dsv_graph_set_global_batch(g, N);
    }
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&th[k], NULL, rank_main, &r[k]), 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&g_bar);

    int64_t np = dsv_model_num_params(ref), nb = dsv_model_num_buffers(ref);
    for (int k = 0; k < 2; k++) {
        TU_OK(r[k].st);
        double eg = max_diff(dt, dsv_model_grads(ref), dsv_model_grads(r[k].m), np);
        double eb = max_diff(dt, dsv_model_buffers(ref), dsv_model_buffers(r[k].m), nb);
        printf("# %s rank %d: loss %.15g vs %.15g, gradients %.3g, statistics %.3g\n",
               dsv_dtype_name(dt), k, r[k].loss, loss, eg, eb);
        assert_true(fabs(r[k].loss - loss) < tol);
        assert_true(eg < tol);
        assert_true(eb < tol);
        /* once per node with parameters, last node first */
        dsv_graph *g = dsv_model_graph(r[k].m);
        int expect = 0;
        for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
            dsv_node_desc d;
            TU_OK(dsv_graph_node_info(g, i, &d, NULL));
            expect += d.w >= 0;
        }
        assert_int_equal(r[k].nready, expect);
        for (int i = 1; i < r[k].nready; i++)
            assert_true(r[k].ready[i] < r[k].ready[i - 1]);
        assert_int_equal(r[k].done_calls, 1);
        dsv_model_destroy(r[k].m);
    }
    dsv_model_destroy(ref);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
}

static void test_two_halves_are_one_batch(void **state)
{
    (void)state;
    two_halves(DSV_F64, 1e-12);
    two_halves(DSV_F32, 2e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_halves_are_one_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
