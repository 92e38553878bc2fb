/*
 * Float64 affine layer for the fast backend, through the blocked dgemm.
 *   forward   out (N, M) = x (N, D) * w (D, M) + b
 *   backward  dx = dout * w^T,  dw = x^T * dout,  db = column sums of dout
 * x may have any trailing shape; D is its row size. db is summed row by row
 * in order, so it is deterministic.
 */
#include "fast.h"

static dsv_status forward(dsv_call *c, bool relu)
{
    int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    const double *b = c->b->data;
    double *out = c->out->data;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < M; j++)
            out[i * M + j] = b[j];
    dsv_fast_dgemm(false, false, N, M, D, c->x->data, D, c->w->data, M, 1.0, out, M,
                   dsv_fast_nthreads(c));
    if (relu)
        dsv_fast_relu_tile_f64(out, N * M);
    return DSV_OK;
}

dsv_status dsv_fast_affine_forward_f64(dsv_call *c) { return forward(c, false); }
dsv_status dsv_fast_affine_forward_relu_f64(dsv_call *c) { return forward(c, true); }

dsv_status dsv_fast_affine_backward_f64(dsv_call *c)
{
    int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    int nt = dsv_fast_nthreads(c);
    const double *dout = c->dout->data;
    if (c->dx)
        dsv_fast_dgemm(false, true, N, D, M, dout, M, c->w->data, M, 0.0, c->dx->data,
                       D, nt);
    if (c->dw)
        dsv_fast_dgemm(true, false, D, M, N, c->x->data, D, dout, M, 0.0, c->dw->data,
                       M, nt);
    if (c->db) {
        double *db = c->db->data;
        for (int64_t j = 0; j < M; j++)
            db[j] = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < M; j++)
                db[j] += dout[i * M + j];
    }
    return DSV_OK;
}
