/*
 * Times two builds of the fast backend's direct convolution
 * (kernels/fast/conv_direct.c) against each other, their calls interleaved
 * in one process: A, B, B, A, A, B, ... so that both see the same stretches
 * of a machine whose speed changes over seconds. Built by tools/ab/ab_conv.sh,
 * which compiles each version with its entry points renamed A_* and B_*.
 *
 *   ab_conv REPS fwd|bwd THREADS cell|cifar
 *
 * cell: the course's cell, x (100, 3, 31, 31), w (25, 3, 3, 3), stride 2,
 * pad 1; cifar: x (50, 3, 32, 32), w (32, 3, 7, 7), stride 1, pad 3.
 * Prints the minimum, 10th percentile and median call of each, in ms, and
 * B's over A's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "dasecv/dasecv.h"

dsv_status A_fwd(dsv_call *c);
dsv_status B_fwd(dsv_call *c);
dsv_status A_bwd(dsv_call *c);
dsv_status B_bwd(dsv_call *c);

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(dsv_tensor *t, int mod, float step)
{
    float *p = t->data;
    for (int64_t i = 0; i < dsv_tensor_numel(t); i++)
        p[i] = (float)(i % mod) * step - step;
}

int main(int argc, char **argv)
{
    if (argc != 5 || atoi(argv[1]) < 1 || atoi(argv[3]) < 1 ||
        (strcmp(argv[2], "fwd") && strcmp(argv[2], "bwd")) ||
        (strcmp(argv[4], "cell") && strcmp(argv[4], "cifar"))) {
        fprintf(stderr, "usage: ab_conv REPS fwd|bwd THREADS cell|cifar\n");
        return 2;
    }
    int reps = atoi(argv[1]);
    bool bwd = !strcmp(argv[2], "bwd"), cifar = !strcmp(argv[4], "cifar");
    dsv_set_num_threads(atoi(argv[3]));
    int64_t xs[4] = {100, 3, 31, 31}, ws[4] = {25, 3, 3, 3}, os[4] = {100, 25, 16, 16};
    if (cifar) {
        int64_t x2[4] = {50, 3, 32, 32}, w2[4] = {32, 3, 7, 7}, o2[4] = {50, 32, 32, 32};
        memcpy(xs, x2, sizeof(xs)), memcpy(ws, w2, sizeof(ws)), memcpy(os, o2, sizeof(os));
    }
    dsv_tensor x, w, b, out, dout, dx, dw, db;
    if (dsv_tensor_init(&x, DSV_F32, 4, xs) || dsv_tensor_init(&w, DSV_F32, 4, ws) ||
        dsv_tensor_init(&b, DSV_F32, 1, ws) || dsv_tensor_init(&out, DSV_F32, 4, os) ||
        dsv_tensor_init(&dout, DSV_F32, 4, os) || dsv_tensor_init(&dx, DSV_F32, 4, xs) ||
        dsv_tensor_init(&dw, DSV_F32, 4, ws) || dsv_tensor_init(&db, DSV_F32, 1, ws)) {
        fprintf(stderr, "ab_conv: %s\n", dsv_errmsg());
        return 1;
    }
    fill(&x, 7, 0.1f), fill(&w, 5, 0.1f), fill(&b, 3, 1.0f), fill(&dout, 11, 0.1f);
    dsv_call c = dsv_call_make(DSV_OP_CONV);
    c.p.stride = cifar ? 1 : 2;
    c.p.pad = cifar ? 3 : 1;
    c.x = &x, c.w = &w, c.b = &b, c.out = &out;
    c.dout = &dout, c.dx = &dx, c.dw = &dw, c.db = &db;
    dsv_state st = {0};
    c.state = &st;
    double *t[2] = {malloc(sizeof(double) * (size_t)reps),
                    malloc(sizeof(double) * (size_t)reps)};
    if (!t[0] || !t[1])
        return 1;
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 2; v++) {
            int which = (r + v) & 1; /* A B, B A, A B, ... */
            double t0 = omp_get_wtime();
            dsv_status s = bwd ? (which ? B_bwd : A_bwd)(&c) : (which ? B_fwd : A_fwd)(&c);
            t[which][r] = omp_get_wtime() - t0;
            if (s) {
                fprintf(stderr, "ab_conv: %s\n", dsv_errmsg());
                return 1;
            }
        }
    for (int v = 0; v < 2; v++)
        qsort(t[v], (size_t)reps, sizeof(double), cmp);
    printf("%s %s, %s threads, %d calls each (ms): A min %.4f p10 %.4f p50 %.4f | "
           "B min %.4f p10 %.4f p50 %.4f | B/A p10 %.3f p50 %.3f\n",
           argv[4], argv[2], argv[3], reps, t[0][0] * 1e3, t[0][reps / 10] * 1e3,
           t[0][reps / 2] * 1e3, t[1][0] * 1e3, t[1][reps / 10] * 1e3,
           t[1][reps / 2] * 1e3, t[1][reps / 10] / t[0][reps / 10],
           t[1][reps / 2] / t[0][reps / 2]);
    dsv_state_free(&st);
    return 0;
}
