/*
 * Affine layer for the fast backend, through the blocked sgemm.
 *   forward   out (N, M) = x (N, D) * w (D, M) + b
 *   backward  dx = dout * w^T,  dw = x^T * dout,  db = column sums of dout
 * x may have any trailing shape; D is its row size. db is summed row by row
 * in order, so it is deterministic. The relu forward applies relu to out
 * right after the product.
 */
#include "fast.h"

static dsv_status forward(dsv_call *c, bool relu)
{
    int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    const float *b = c->b->data;
    float *out = c->out->data;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < M; j++)
            out[i * M + j] = b[j];
    dsv_fast_sgemm(false, false, N, M, D, c->x->data, D, c->w->data, M, 1.0f,
                   out, M, dsv_fast_nthreads(c));
    if (relu) /* (N, M) of one minibatch: it is still in L2 */
        dsv_fast_relu_tile(out, N * M);
    return DSV_OK;
}

dsv_status dsv_fast_affine_forward(dsv_call *c) { return forward(c, false); }

dsv_status dsv_fast_affine_forward_relu(dsv_call *c)
{
    return c->x->dtype == DSV_F64 ? dsv_fast_affine_forward_relu_f64(c) : forward(c, true);
}

dsv_status dsv_fast_affine_backward(dsv_call *c)
{
    int64_t N = c->x->shape[0], D = c->w->shape[0], M = c->w->shape[1];
    int nt = dsv_fast_nthreads(c);
    const float *dout = c->dout->data;
    if (c->dx)
        dsv_fast_sgemm(false, true, N, D, M, dout, M, c->w->data, M, 0.0f,
                       c->dx->data, D, nt);
    if (c->dw)
        dsv_fast_sgemm(true, false, D, M, N, c->x->data, D, dout, M, 0.0f,
                       c->dw->data, M, nt);
    if (c->db) {
        float *db = c->db->data;
        for (int64_t j = 0; j < M; j++)
            db[j] = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < M; j++)
                db[j] += dout[i * M + j];
    }
    return DSV_OK;
}
