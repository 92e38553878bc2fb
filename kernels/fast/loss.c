/*
 * Softmax and multiclass SVM losses for the fast backend, the course's
 * softmax_loss / svm_loss: loss averaged over the N rows, and dscores (dx)
 * when asked. Rows are independent and run in parallel; their losses are
 * kept per row and summed in row order, so the result is deterministic.
 */
#include <math.h>

#include <omp.h>

#include "fast.h"

enum { PAR_ROWS = 256 };

static double softmax_row(const float *s, int64_t C, int32_t y, double invN,
                         float *dx)
{
    float mx = s[0];
    for (int64_t k = 1; k < C; k++)
        mx = s[k] > mx ? s[k] : mx;
    double z = 0;
    for (int64_t k = 0; k < C; k++)
        z += exp((double)s[k] - mx);
    double logz = log(z);
    if (dx) {
        for (int64_t k = 0; k < C; k++)
            dx[k] = (float)(exp((double)s[k] - mx - logz) * invN);
        dx[y] = (float)(dx[y] - invN);
    }
    return logz - ((double)s[y] - mx);
}

static double svm_row(const float *s, int64_t C, int32_t y, double invN, float *dx)
{
    double sy = s[y], loss = 0;
    int64_t npos = 0;
    for (int64_t k = 0; k < C; k++) {
        double margin = k == y ? 0 : s[k] - sy + 1.0;
        if (margin > 0)
            loss += margin, npos++;
        if (dx)
            dx[k] = margin > 0 ? (float)invN : 0.0f;
    }
    if (dx)
        dx[y] = (float)(-(double)npos * invN);
    return loss;
}

/* Rows [n0, n1): their losses into row[], their dscores into dx. */
static void rows_range(const dsv_call *c, bool svm, double *row, int64_t n0,
                       int64_t n1)
{
    int64_t C = c->x->shape[1];
    const float *x = c->x->data;
    const int32_t *y = c->y->data;
    float *dx = c->dx ? c->dx->data : NULL;
    double invN = 1.0 / (double)c->x->shape[0];
    for (int64_t n = n0; n < n1; n++)
        row[n] = svm ? svm_row(x + n * C, C, y[n], invN, dx ? dx + n * C : NULL)
                     : softmax_row(x + n * C, C, y[n], invN, dx ? dx + n * C : NULL);
}

static dsv_status run(dsv_call *c, bool svm)
{
    int64_t N = c->x->shape[0];
    double invN = 1.0 / (double)N;
    double *row = dsv_alloc(sizeof(double) * (size_t)N);
    if (!row)
        return dsv_error(DSV_NOMEM, "%s: out of memory", dsv_op_name(c->op));
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && N >= PAR_ROWS) {
#pragma omp parallel num_threads(nt)
        {
            int64_t n0, n1;
            dsv_fast_share(N, omp_get_thread_num(), omp_get_num_threads(), &n0, &n1);
            rows_range(c, svm, row, n0, n1);
        }
    } else {
        rows_range(c, svm, row, 0, N);
    }
    double loss = 0;
    for (int64_t n = 0; n < N; n++)
        loss += row[n];
    dsv_free(row);
    *c->loss = loss * invN;
    return DSV_OK;
}

dsv_status dsv_fast_softmax_loss(dsv_call *c) { return run(c, false); }
dsv_status dsv_fast_svm_loss(dsv_call *c) { return run(c, true); }
