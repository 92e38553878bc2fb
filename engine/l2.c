/*
 * The L2 regularisation of a training step, over the weight parameters of a
 * graph: dw += reg * w, and 0.5 * reg * sum(w^2) added to the loss. It only
 * uses the public graph API (parameter views and kinds).
 *
 * What must stay true: the loss is the same for any number of threads (block
 * sums are added in block order) and dw is element-wise, the same as a plain
 * loop; the weights are taken in parameter order.
 */
#include <math.h>
#include <stdbool.h>

#include "internal/l2.h"

/* The term runs over every weight each step (4.1M of them in the course's
 * CIFAR ThreeLayerConvNet with hidden 500), so it is split across threads in blocks of REG_BLOCK elements. Each block sums its squares in
 * eight interleaved partial sums (a loop the compiler vectorises) and the
 * block sums are added in block order, so the loss is the same for any
 * number of threads; dw is element-wise, the same as a plain loop. */
enum { REG_BLOCK = 1 << 14 };

/* Each block function is written twice, with and without the gradient
 * update (dw NULL: the sum only, the gradient term left to the optimizer),
 * so that neither loop carries a branch that would keep it from
 * vectorising; the sums are the same expressions. */
#define REG_BLOCK_FN(NAME, T, UPDATE)                                          \
    static double NAME(const T *w, T *dw, int64_t n, double reg)              \
    {                                                                          \
        double s[8] = {0};                                                     \
        int64_t j = 0;                                                         \
        (void)dw, (void)reg;                                                   \
        for (; j + 8 <= n; j += 8)                                             \
            for (int l = 0; l < 8; l++) {                                      \
                const double v = w[j + l];                                     \
                s[l] += v * v;                                                 \
                UPDATE(j + l);                                                 \
            }                                                                  \
        double t = 0;                                                          \
        for (; j < n; j++) {                                                   \
            const double v = w[j];                                             \
            t += v * v;                                                        \
            UPDATE(j);                                                         \
        }                                                                      \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t; \
    }
#define UPDATE_F32(k) dw[k] += (float)(reg * v)
#define UPDATE_F64(k) dw[k] += reg * v
#define UPDATE_NONE(k) (void)0
REG_BLOCK_FN(reg_grad_f32, float, UPDATE_F32)
REG_BLOCK_FN(reg_grad_f64, double, UPDATE_F64)
REG_BLOCK_FN(reg_sum_f32, float, UPDATE_NONE)
REG_BLOCK_FN(reg_sum_f64, double, UPDATE_NONE)

/* Number of REG_BLOCK blocks of weight tensor t (0 for other parameters). */
static int64_t blocks_of(dsv_graph *g, int i)
{
    if (dsv_graph_param_kind(g, i) != DSV_PARAM_WEIGHT)
        return 0;
    dsv_tensor p = dsv_graph_param(g, i);
    return (dsv_tensor_numel(&p) + REG_BLOCK - 1) / REG_BLOCK;
}

/* Block b of the weights (counted over the weight tensors in order): its
 * regularisation, returning its sum of squares. */
static double reg_block(dsv_graph *g, int64_t b, double reg, bool grads)
{
    int64_t first = 0;
    int i = 0;
    for (; i < dsv_graph_num_params(g); i++) { /* a model has a few weights */
        const int64_t nb = blocks_of(g, i);
        if (b < first + nb)
            break;
        first += nb;
    }
    dsv_tensor p = dsv_graph_param(g, i), d = dsv_graph_grad(g, i);
    const int64_t j0 = (b - first) * REG_BLOCK, numel = dsv_tensor_numel(&p);
    const int64_t n = numel - j0 < REG_BLOCK ? numel - j0 : REG_BLOCK;
    if (p.dtype == DSV_F32) {
        const float *w = (const float *)p.data + j0;
        float *dw = (float *)d.data + j0;
        return grads ? reg_grad_f32(w, dw, n, reg) : reg_sum_f32(w, dw, n, reg);
    }
    const double *w = (const double *)p.data + j0;
    double *dw = (double *)d.data + j0;
    return grads ? reg_grad_f64(w, dw, n, reg) : reg_sum_f64(w, dw, n, reg);
}

static dsv_status l2_run(dsv_graph *g, const dsv_exec_options *o, double reg, bool grads,
                         double *loss)
{
    if (!(reg >= 0) || !isfinite(reg))
        return dsv_error(DSV_INVALID, "reg must be >= 0, got %g", reg);
    if (reg == 0)
        return DSV_OK;
    int64_t nblocks = 0;
    for (int i = 0; i < dsv_graph_num_params(g); i++)
        nblocks += blocks_of(g, i);
    const int T = o->threads > 0 ? o->threads : dsv_get_num_threads();
    /* up to REG_GROUP blocks (8M weights) per parallel region, their sums
       kept here and added in block order */
    enum { REG_GROUP = 512 };
    double sums[REG_GROUP], sum = 0;
    for (int64_t b0 = 0; b0 < nblocks; b0 += REG_GROUP) {
        const int64_t nb = nblocks - b0 < REG_GROUP ? nblocks - b0 : REG_GROUP;
        const int nt = (int64_t)T > nb ? (int)nb : T;
        (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t k = 0; k < nb; k++)
            sums[k] = reg_block(g, b0 + k, reg, grads);
        for (int64_t k = 0; k < nb; k++)
            sum += sums[k];
    }
    *loss += 0.5 * reg * sum;
    return DSV_OK;
}

dsv_status dsv_l2_apply(dsv_graph *g, const dsv_exec_options *o, double reg,
                        double *loss)
{
    return l2_run(g, o, reg, true, loss);
}

dsv_status dsv_l2_loss(dsv_graph *g, const dsv_exec_options *o, double reg, double *loss)
{
    return l2_run(g, o, reg, false, loss);
}
