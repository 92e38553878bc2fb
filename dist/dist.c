/*
 * Data-parallel training over MPI (dist.h): the engine's hooks as MPI
 * collectives, the gradient buckets, the watchdog.
 *
 * What must stay true:
 *  - Every rank issues the same collectives in the same order: the graph
 *    calls the hooks in node order, buckets start in a fixed order (the
 *    order their last gradient becomes final), and statistics sums and
 *    gradient sums use separate communicators.
 *  - A bucket is a contiguous range of the gradient block, reduced in place;
 *    nothing writes it between its start and grads_done's wait.
 *  - Only the main thread calls MPI (MPI_THREAD_FUNNELED); the watchdog only
 *    reads a timestamp and may end the process.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "dist.h"
#include "internal/dist.h"

typedef struct bucket {
    int64_t off, n;  /* elements of the gradient block */
    int refs;        /* (node, parameter) pairs that produce it */
    int pending;     /* of those, not final yet this step */
    MPI_Request req; /* MPI_REQUEST_NULL when not in flight */
} bucket;

struct dsv_dist {
    int rank, size;
    MPI_Comm stats, grads; /* duplicates of MPI_COMM_WORLD */
    dsv_graph *g;
    dsv_dtype dtype;
    char *gblock;
    bucket *b;
    int nb;
    int *node_first, *node_bucket; /* per node: its (node, param) buckets */
    int next_start;                /* buckets are started in index order */
    double timeout_s;
    double wait_s;
    long long steps;
    /* watchdog: the monotonic time a wait began, 0 when none */
    _Atomic double wait_since;
    pthread_t watchdog;
    bool has_watchdog;
    _Atomic bool stop_watchdog;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dsv_status mpi_error(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof(msg), "error %d", rc);
    return dsv_error(DSV_IO, "%s failed: %s (another rank may have stopped)", what, msg);
}

dsv_dist_options dsv_dist_options_default(void)
{
    return (dsv_dist_options){.bucket_mb = 1.0, .sync_bn = true, .timeout_s = 300};
}

bool dsv_dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

dsv_status dsv_dist_create(dsv_dist **out, int *argc, char ***argv)
{
    *out = NULL;
    dsv_dist *d = calloc(1, sizeof(*d));
    if (!d)
        return dsv_error(DSV_NOMEM, "dist: out of memory");
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        free(d);
        return dsv_error(DSV_IO, "MPI_Init_thread failed (%d)", rc);
    }
    if (provided < MPI_THREAD_FUNNELED) { /* batch norm sums run in OpenMP's master */
        free(d);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return dsv_error(DSV_UNSUPPORTED, "MPI provides no MPI_THREAD_FUNNELED");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &d->stats)) != MPI_SUCCESS ||
        (rc = MPI_Comm_dup(MPI_COMM_WORLD, &d->grads)) != MPI_SUCCESS) {
        dsv_status st = mpi_error(rc, "MPI_Comm_dup");
        MPI_Abort(MPI_COMM_WORLD, 1);
        return st;
    }
    *out = d;
    return DSV_OK;
}

static void stop_watchdog(dsv_dist *d)
{
    if (!d->has_watchdog)
        return;
    atomic_store(&d->stop_watchdog, true);
    pthread_join(d->watchdog, NULL);
    d->has_watchdog = false;
}

void dsv_dist_destroy(dsv_dist *d)
{
    if (!d)
        return;
    stop_watchdog(d); /* the model may be gone already: d->g is not touched */
    MPI_Comm_free(&d->stats);
    MPI_Comm_free(&d->grads);
    MPI_Finalize();
    free(d->b);
    free(d->node_first);
    free(d->node_bucket);
    free(d);
}

void dsv_dist_abort(dsv_dist *d, int code)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    (void)d;
}

int dsv_dist_rank(const dsv_dist *d) { return d->rank; }
int dsv_dist_size(const dsv_dist *d) { return d->size; }

dsv_status dsv_dist_all_ok(dsv_dist *d, bool ok, bool *all)
{
    int in = ok, min = 0;
    int rc = MPI_Allreduce(&in, &min, 1, MPI_INT, MPI_MIN, d->stats);
    *all = min != 0;
    return rc == MPI_SUCCESS ? DSV_OK : mpi_error(rc, "MPI_Allreduce (status)");
}

void dsv_dist_wait_stats(const dsv_dist *d, double *wait_s, long long *steps)
{
    *wait_s = d->wait_s;
    *steps = d->steps;
}

/* ---- the watchdog ---------------------------------------------------------- */

static void *watchdog_main(void *arg)
{
    dsv_dist *d = arg;
    while (!atomic_load(&d->stop_watchdog)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double t0 = atomic_load(&d->wait_since);
        if (t0 > 0 && now_s() - t0 > d->timeout_s) {
            fprintf(stderr,
                    "dasecv train: rank %d: waited %.0f s for the other ranks (a rank "
                    "died or hangs); stopping\n",
                    d->rank, d->timeout_s);
            fflush(stderr);
            _exit(1); /* mpirun then ends every rank */
        }
    }
    return NULL;
}

static void wait_begin(dsv_dist *d) { atomic_store(&d->wait_since, now_s()); }
static void wait_end(dsv_dist *d) { atomic_store(&d->wait_since, 0.0); }

/* ---- the hooks ------------------------------------------------------------- */

static dsv_status sum_stats(void *user, double *buf, int64_t n)
{
    dsv_dist *d = user;
    wait_begin(d);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->stats);
    wait_end(d);
    return rc == MPI_SUCCESS ? DSV_OK : mpi_error(rc, "MPI_Allreduce (batch statistics)");
}

static MPI_Datatype mpi_type(const dsv_dist *d)
{
    return d->dtype == DSV_F64 ? MPI_DOUBLE : MPI_FLOAT;
}

/* Starts the buckets whose gradients are all final, in index order. */
static dsv_status start_ready(dsv_dist *d)
{
    size_t esz = dsv_dtype_size(d->dtype);
    while (d->next_start < d->nb && d->b[d->next_start].pending == 0) {
        bucket *b = &d->b[d->next_start++];
        int rc = MPI_Iallreduce(MPI_IN_PLACE, d->gblock + (size_t)b->off * esz, (int)b->n,
                                mpi_type(d), MPI_SUM, d->grads, &b->req);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, "MPI_Iallreduce (gradients)");
    }
    return DSV_OK;
}

static dsv_status grads_ready(void *user, int node)
{
    dsv_dist *d = user;
    for (int k = d->node_first[node]; k < d->node_first[node + 1]; k++)
        d->b[d->node_bucket[k]].pending--;
    dsv_status st = start_ready(d);
    /* Open MPI advances non-blocking collectives inside MPI calls: one test
       per callback lets the started buckets progress while backward runs */
    for (int i = 0; i < d->next_start && !st; i++) {
        int done = 0;
        if (d->b[i].req != MPI_REQUEST_NULL) {
            int rc = MPI_Test(&d->b[i].req, &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                st = mpi_error(rc, "MPI_Test (gradients)");
            break;
        }
    }
    return st;
}

static dsv_status grads_done(void *user, double *loss)
{
    dsv_dist *d = user;
    for (int i = 0; i < d->nb; i++) /* a parameter no node wrote: final now */
        d->b[i].pending = 0;
    /* Buckets that become final only now have no backward left to hide
       behind: they are summed with the blocking MPI_Allreduce, which Open
       MPI runs with its tuned algorithms (about twice as fast as the
       non-blocking collectives' for a few MB on one host). */
    dsv_status st = DSV_OK;
    double t0 = now_s();
    wait_begin(d);
    for (int i = 0; i < d->next_start && !st; i++) {
        int rc = MPI_Wait(&d->b[i].req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            st = mpi_error(rc, "MPI_Wait (gradients)");
    }
    size_t esz = dsv_dtype_size(d->dtype);
    for (int i = d->next_start; i < d->nb && !st; i++) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, d->gblock + (size_t)d->b[i].off * esz,
                               (int)d->b[i].n, mpi_type(d), MPI_SUM, d->grads);
        if (rc != MPI_SUCCESS)
            st = mpi_error(rc, "MPI_Allreduce (gradients)");
    }
    int rc = st ? MPI_SUCCESS
                : MPI_Allreduce(MPI_IN_PLACE, loss, 1, MPI_DOUBLE, MPI_SUM, d->stats);
    wait_end(d);
    d->wait_s += now_s() - t0;
    d->steps++;
    if (!st && rc != MPI_SUCCESS)
        st = mpi_error(rc, "MPI_Allreduce (loss)");
    for (int i = 0; i < d->nb; i++)
        d->b[i].pending = d->b[i].refs;
    d->next_start = 0;
    return st;
}

/* ---- buckets ----------------------------------------------------------------- */

typedef struct pref {
    int64_t off, n;
    int param, node; /* the node whose backward makes it final */
} pref;

/* Parameters in the order backward finishes them: nodes from the last to
 * the first, each node's parameters from its highest offset down. */
static dsv_status param_order(dsv_dist *d, dsv_model *m, pref **out, int *np)
{
    dsv_graph *g = d->g;
    int K = dsv_graph_num_nodes(g), P = dsv_graph_num_params(g), n = 0;
    pref *p = calloc((size_t)(2 * K + 1), sizeof(*p));
    if (!p)
        return dsv_error(DSV_NOMEM, "dist: out of memory");
    size_t esz = dsv_dtype_size(d->dtype);
    for (int i = K - 1; i >= 0; i--) {
        dsv_node_desc nd;
        dsv_status st = dsv_graph_node_info(g, i, &nd, NULL);
        if (st) {
            free(p);
            return st;
        }
        int ids[2] = {nd.b, nd.w};
        for (int k = 0; k < 2; k++) {
            if (ids[k] < 0 || ids[k] >= P)
                continue;
            dsv_tensor t = dsv_graph_grad(g, ids[k]);
            p[n].off = (int64_t)(((char *)t.data - d->gblock) / (ptrdiff_t)esz);
            p[n].n = dsv_tensor_numel(&t);
            p[n].param = ids[k];
            p[n].node = i;
            n++;
        }
    }
    (void)m;
    *out = p;
    *np = n;
    return DSV_OK;
}

/* Buckets of at least bucket_bytes over consecutive parameters of that
 * order, each a contiguous range of the block (parameters of neighbouring
 * nodes are neighbours in it: they are declared in node order). Where the
 * order is not contiguous a bucket ends early, which only costs overlap. */
static dsv_status make_buckets(dsv_dist *d, dsv_model *m, double bucket_mb)
{
    pref *p = NULL;
    int np = 0;
    dsv_status st = param_order(d, m, &p, &np);
    if (st)
        return st;
    int K = dsv_graph_num_nodes(d->g);
    size_t esz = dsv_dtype_size(d->dtype);
    double cap = bucket_mb * 1024 * 1024 / (double)esz;
    d->b = calloc((size_t)(np > 0 ? np : 1), sizeof(*d->b));
    int *pb = calloc((size_t)(np > 0 ? np : 1), sizeof(int));
    d->node_first = calloc((size_t)K + 1, sizeof(int));
    d->node_bucket = calloc((size_t)(np > 0 ? np : 1), sizeof(int));
    if (!d->b || !pb || !d->node_first || !d->node_bucket) {
        free(p);
        free(pb);
        return dsv_error(DSV_NOMEM, "dist: out of memory");
    }
    d->nb = 0;
    for (int i = 0; i < np; i++) {
        bucket *cur = d->nb ? &d->b[d->nb - 1] : NULL;
        bool joins = cur && (double)cur->n < cap && p[i].off + p[i].n == cur->off;
        if (joins) {
            cur->off = p[i].off;
            cur->n += p[i].n;
        } else {
            cur = &d->b[d->nb++];
            cur->off = p[i].off;
            cur->n = p[i].n;
        }
        cur->refs++;
        pb[i] = d->nb - 1;
    }
    for (int i = 0; i < d->nb; i++) {
        d->b[i].pending = d->b[i].refs;
        d->b[i].req = MPI_REQUEST_NULL;
    }
    /* per node, in node order: its buckets (p is in reverse node order) */
    int k = 0;
    for (int node = 0; node < K; node++) {
        d->node_first[node] = k;
        for (int i = np - 1; i >= 0; i--)
            if (p[i].node == node)
                d->node_bucket[k++] = pb[i];
    }
    d->node_first[K] = k;
    free(p);
    free(pb);
    return DSV_OK;
}

/* ---- attach ------------------------------------------------------------------- */

static dsv_status bcast_block(dsv_dist *d, void *p, int64_t n, const char *what)
{
    MPI_Datatype t = mpi_type(d);
    const int64_t chunk = (int64_t)1 << 28; /* counts are int */
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t c = n - i < chunk ? n - i : chunk;
        int rc = MPI_Bcast((char *)p + (size_t)i * dsv_dtype_size(d->dtype), (int)c, t, 0,
                           d->stats);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, what);
    }
    return DSV_OK;
}

dsv_status dsv_dist_attach(dsv_dist *d, dsv_model *m, dsv_solver *s,
                           const dsv_dist_options *o)
{
    d->g = dsv_model_graph(m);
    d->dtype = dsv_model_dtype(m);
    d->gblock = dsv_model_grads(m);
    d->timeout_s = o->timeout_s;
    long long mine[3] = {dsv_model_num_params(m), dsv_model_num_buffers(m), d->dtype};
    long long lo[3], hi[3];
    int rc = MPI_Allreduce(mine, lo, 3, MPI_LONG_LONG, MPI_MIN, d->stats);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(mine, hi, 3, MPI_LONG_LONG, MPI_MAX, d->stats);
    if (rc != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Allreduce (model sizes)");
    if (memcmp(lo, hi, sizeof(lo)))
        return dsv_error(DSV_INVALID,
                         "the ranks built different models (%lld to %lld parameters): every "
                         "rank must get the same options and files",
                         lo[0], hi[0]);
    dsv_status st;
    if ((st = bcast_block(d, dsv_model_params(m), mine[0], "MPI_Bcast (parameters)")) ||
        (st = bcast_block(d, dsv_model_buffers(m), mine[1], "MPI_Bcast (buffers)")))
        return st;
    if ((st = dsv_solver_set_shard(s, d->rank, d->size)))
        return st;
    if ((st = make_buckets(d, m, o->bucket_mb)))
        return st;
    dsv_dist_hooks h = {.user = d,
                        .sum_stats = o->sync_bn ? sum_stats : NULL,
                        .grads_ready = grads_ready,
                        .grads_done = grads_done};
    dsv_graph_set_dist_hooks(d->g, &h);
    if (o->timeout_s > 0 && !d->has_watchdog) {
        if (pthread_create(&d->watchdog, NULL, watchdog_main, d) != 0)
            return dsv_error(DSV_IO, "dist: cannot start the watchdog thread");
        d->has_watchdog = true;
    }
    return DSV_OK;
}

/* ---- consistency --------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

dsv_status dsv_dist_check_same(dsv_dist *d, dsv_model *m, bool buffers)
{
    size_t esz = dsv_dtype_size(dsv_model_dtype(m));
    uint64_t h = fnv1a(0xcbf29ce484222325ull, dsv_model_params(m),
                       (size_t)dsv_model_num_params(m) * esz);
    if (buffers)
        h = fnv1a(h, dsv_model_buffers(m), (size_t)dsv_model_num_buffers(m) * esz);
    unsigned long long mine = h, lo = 0, hi = 0;
    int rc = MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, d->stats);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, d->stats);
    if (rc != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Allreduce (parameter check)");
    if (lo != hi)
        return dsv_error(DSV_CORRUPT,
                         "the ranks ended with different parameters%s (hashes %016llx to "
                         "%016llx)",
                         buffers ? " or batch-norm statistics" : "", lo, hi);
    return DSV_OK;
}
