/*
 * dasecv train under mpirun: see dist_cli.h and dist/dist.h. What must stay
 * true: MPI is started only under a launcher (a plain `dasecv train` never
 * touches it), and a rank that fails ends the whole job (MPI_Abort) instead
 * of leaving the others waiting in a collective.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dist_cli.h"

#ifdef DSV_HAVE_MPI
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "dist.h"

static dsv_dist *g_dist;
/* every rank knows the run failed at the same point (attach): they end
   together through MPI_Finalize, not K racing MPI_Aborts */
static bool g_failed_together;

cli_dist_opts cli_dist_opts_default(void)
{
    dsv_dist_options d = dsv_dist_options_default();
    return (cli_dist_opts){.bucket_mb = d.bucket_mb, .local_bn = !d.sync_bn,
                           .timeout_s = d.timeout_s};
}

bool cli_dist_begin(int *argc, char ***argv, int *rank, int *size)
{
    *rank = 0;
    *size = 1;
    if (!dsv_dist_launched())
        return true;
    if (dsv_dist_create(&g_dist, argc, argv)) {
        fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
        return false;
    }
    *rank = dsv_dist_rank(g_dist);
    *size = dsv_dist_size(g_dist);
#if defined(__GLIBC__)
    /* Open MPI's collectives allocate and free temporary buffers of a
       gradient bucket's size on every step. Under main's 1 MiB mmap
       threshold each was a fresh mapping whose pages faulted in again
       every step (bench/RESULTS.md, "MPI page faults"). Under MPI, blocks
       up to 32 MiB come from the heap, which keeps up to 64 MiB free at its
       top, so those buffers are reused. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
    return true;
}

bool cli_dist_attach(dsv_model *m, dsv_solver *s, const cli_dist_opts *o)
{
    if (!g_dist)
        return true;
    dsv_dist_options d = {.bucket_mb = o->bucket_mb, .sync_bn = !o->local_bn,
                          .timeout_s = o->timeout_s};
    bool ok = dsv_dist_attach(g_dist, m, s, &d) == DSV_OK;
    if (!ok)
        fprintf(stderr, "dasecv train: rank %d: %s\n", dsv_dist_rank(g_dist), dsv_errmsg());
    /* Attach's collectives come first and its checks fail alike on every
       rank (sizes, the batch split) or on one rank after them: either way
       every rank gets here, and all learn whether all succeeded. */
    bool all;
    if (dsv_dist_all_ok(g_dist, ok, &all)) {
        fprintf(stderr, "dasecv train: rank %d: %s\n", dsv_dist_rank(g_dist), dsv_errmsg());
        return false;
    }
    g_failed_together = !all;
    return all;
}

bool cli_dist_check(dsv_model *m, const cli_dist_opts *o)
{
    if (!g_dist || !dsv_dist_check_same(g_dist, m, !o->local_bn))
        return true;
    fprintf(stderr, "dasecv train: rank %d: %s\n", dsv_dist_rank(g_dist), dsv_errmsg());
    return false;
}

int cli_dist_end(int rc)
{
    if (!g_dist)
        return rc;
    if (rc != 0 && rc != 130 && !g_failed_together) {
        fprintf(stderr, "dasecv train: rank %d failed (status %d); stopping every rank\n",
                dsv_dist_rank(g_dist), rc);
        dsv_dist_abort(g_dist, rc);
    }
    dsv_dist_destroy(g_dist);
    g_dist = NULL;
    return rc;
}

void cli_dist_report(void)
{
    if (!g_dist || dsv_dist_rank(g_dist) != 0)
        return;
    double wait;
    long long steps;
    dsv_dist_wait_stats(g_dist, &wait, &steps);
    fprintf(stderr, "dasecv train: %d ranks; gradient sums waited %.3f ms per step after "
            "backward\n", dsv_dist_size(g_dist), steps ? 1e3 * wait / (double)steps : 0.0);
}

#else

cli_dist_opts cli_dist_opts_default(void)
{
    return (cli_dist_opts){.bucket_mb = 1.0, .local_bn = false, .timeout_s = 300};
}

bool cli_dist_begin(int *argc, char ***argv, int *rank, int *size)
{
    (void)argc;
    (void)argv;
    *rank = 0;
    *size = 1;
    /* K copies training alone would all write the same checkpoint */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1) {
        fprintf(stderr, "dasecv train: this dasecv was built without MPI (meson -Dmpi, "
                        "libopenmpi-dev); it cannot train across %s ranks\n", n);
        return false;
    }
    return true;
}

bool cli_dist_attach(dsv_model *m, dsv_solver *s, const cli_dist_opts *o)
{
    (void)m;
    (void)s;
    (void)o;
    return true;
}

bool cli_dist_check(dsv_model *m, const cli_dist_opts *o)
{
    (void)m;
    (void)o;
    return true;
}

int cli_dist_end(int rc) { return rc; }
void cli_dist_report(void) {}

#endif
