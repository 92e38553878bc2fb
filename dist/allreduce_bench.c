/*
 * dasecv-allreduce-bench: time of MPI_Allreduce (float sum, in place) against
 * message size, the cost the gradient buckets pay. Run under mpirun:
 *     mpirun -np 2 build/dist/dasecv-allreduce-bench [max_mib] [reps]
 * Rank 0 prints one row per size: bytes, median and best time of one call
 * (each timed between barriers), and the bus bandwidth 2(K-1)/K * bytes / time
 * that a ring allreduce needs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double max_mib = argc > 1 ? atof(argv[1]) : 64;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (!(max_mib > 0) || max_mib > 4096 || reps < 1 || reps > 100000) {
        if (rank == 0)
            fprintf(stderr, "usage: dasecv-allreduce-bench [max_mib in (0, 4096]] [reps >= 1]\n");
        MPI_Finalize();
        return 2;
    }
    size_t max_n = (size_t)(max_mib * 1024 * 1024 / sizeof(float));
    float *buf = malloc(max_n * sizeof(float));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!buf || !t) {
        fprintf(stderr, "dasecv-allreduce-bench: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < max_n; i++)
        buf[i] = 1.0f;
    if (rank == 0)
        printf("ranks %d\n%12s %12s %12s %12s\n", size, "bytes", "median_us", "best_us",
               "busbw_GB/s");
    for (size_t n = 1; n <= max_n; n *= 4) {
        for (int r = -2; r < reps; r++) { /* two warm-up calls */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double dt = MPI_Wtime() - t0;
            if (r >= 0)
                t[r] = dt;
        }
        /* the slowest rank's time is the call's */
        MPI_Allreduce(MPI_IN_PLACE, t, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        qsort(t, (size_t)reps, sizeof(double), cmp_double);
        double med = t[reps / 2], bytes = (double)(n * sizeof(float));
        if (rank == 0)
            printf("%12.0f %12.1f %12.1f %12.3f\n", bytes, med * 1e6, t[0] * 1e6,
                   2.0 * (size - 1) / size * bytes / med / 1e9);
    }
    free(buf);
    free(t);
    MPI_Finalize();
    return 0;
}
