/*
 * The course's layers and layer_utils sandwiches as graph builders:
 * dsv_graph_conv(g, "1", ...) declares W1 and b1 and adds node "conv1".
 * They only call the public building API (declare parameters, add nodes),
 * so a network built by hand or from a description gives the same graph.
 */
#include <stdio.h>

#include "graph_priv.h"

/* ---- builders ---------------------------------------------------------------- */

static dsv_status add_simple(dsv_graph *g, dsv_op op, const char *name,
                             dsv_value x, const dsv_params *p, dsv_value *out)
{
    dsv_node_desc d = dsv_node_desc_make(op, name, x);
    if (p)
        d.p = *p;
    return dsv_graph_add_node(g, &d, out);
}

dsv_status dsv_graph_affine(dsv_graph *g, const char *id, dsv_value x, int64_t M,
                            dsv_value *out)
{
    if (x < 0 || x >= g->nvals)
        return dsv_error(DSV_INVALID, "affine%s: x is not a value of this graph", id);
    char nm[64], wn[64], bn[64];
    snprintf(nm, sizeof(nm), "affine%s", id);
    snprintf(wn, sizeof(wn), "W%s", id);
    snprintf(bn, sizeof(bn), "b%s", id);
    int w, b;
    dsv_status s;
    if ((s = dsv_graph_add_param(g, wn, 2, (int64_t[]){g->vals[x].row, M},
                                 DSV_PARAM_WEIGHT, &w)) ||
        (s = dsv_graph_add_param(g, bn, 1, &M, DSV_PARAM_BIAS, &b)))
        return s;
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_AFFINE, nm, x);
    d.w = w;
    d.b = b;
    return dsv_graph_add_node(g, &d, out);
}

dsv_status dsv_graph_conv(dsv_graph *g, const char *id, dsv_value x, int64_t F,
                          int HH, int WW, int stride, int pad, dsv_value *out)
{
    if (x < 0 || x >= g->nvals || g->vals[x].ndim != 4)
        return dsv_error(DSV_INVALID, "conv%s: x must be an (N, C, H, W) value", id);
    char nm[64], wn[64], bn[64];
    snprintf(nm, sizeof(nm), "conv%s", id);
    snprintf(wn, sizeof(wn), "W%s", id);
    snprintf(bn, sizeof(bn), "b%s", id);
    int w, b;
    dsv_status s;
    if ((s = dsv_graph_add_param(g, wn, 4, (int64_t[]){F, g->vals[x].shape[1], HH, WW},
                                 DSV_PARAM_WEIGHT, &w)) ||
        (s = dsv_graph_add_param(g, bn, 1, &F, DSV_PARAM_BIAS, &b)))
        return s;
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_CONV, nm, x);
    d.w = w;
    d.b = b;
    d.p.stride = stride;
    d.p.pad = pad;
    return dsv_graph_add_node(g, &d, out);
}

dsv_status dsv_graph_relu(dsv_graph *g, const char *name, dsv_value x, dsv_value *out)
{
    return add_simple(g, DSV_OP_RELU, name, x, NULL, out);
}

dsv_status dsv_graph_max_pool(dsv_graph *g, const char *name, dsv_value x, int ph,
                              int pw, int stride, dsv_value *out)
{
    dsv_params p = dsv_params_default();
    p.pool_height = ph;
    p.pool_width = pw;
    p.stride = stride;
    return add_simple(g, DSV_OP_MAX_POOL, name, x, &p, out);
}

static dsv_status add_norm(dsv_graph *g, dsv_op op, const char *kind, const char *id,
                           dsv_value x, dsv_value *out)
{
    if (x < 0 || x >= g->nvals)
        return dsv_error(DSV_INVALID, "%s%s: x is not a value of this graph", kind, id);
    int64_t C = g->vals[x].shape[1];
    char nm[64], gn[64], bn[64], mn[64], vn[64];
    snprintf(nm, sizeof(nm), "%s%s", kind, id);
    snprintf(gn, sizeof(gn), "gamma%s", id);
    snprintf(bn, sizeof(bn), "beta%s", id);
    snprintf(mn, sizeof(mn), "running_mean%s", id);
    snprintf(vn, sizeof(vn), "running_var%s", id);
    dsv_node_desc d = dsv_node_desc_make(op, nm, x);
    dsv_status s;
    if ((s = dsv_graph_add_param(g, gn, 1, &C, DSV_PARAM_GAMMA, &d.w)) ||
        (s = dsv_graph_add_param(g, bn, 1, &C, DSV_PARAM_BETA, &d.b)))
        return s;
    if (dsv_graph_is_bn_(op) &&
        ((s = dsv_graph_add_buffer(g, mn, C, 0.0, &d.running_mean)) ||
         (s = dsv_graph_add_buffer(g, vn, C, 0.0, &d.running_var))))
        return s;
    return dsv_graph_add_node(g, &d, out);
}

dsv_status dsv_graph_batchnorm(dsv_graph *g, const char *id, dsv_value x, dsv_value *out)
{
    bool spatial = x >= 0 && x < g->nvals && g->vals[x].ndim == 4;
    return add_norm(g, spatial ? DSV_OP_SPATIAL_BATCHNORM : DSV_OP_BATCHNORM, "bn", id, x,
                    out);
}

dsv_status dsv_graph_layernorm(dsv_graph *g, const char *id, dsv_value x, dsv_value *out)
{
    return add_norm(g, DSV_OP_LAYERNORM, "ln", id, x, out);
}

dsv_status dsv_graph_dropout(dsv_graph *g, const char *name, dsv_value x, double keep,
                             uint64_t seed, dsv_value *out)
{
    dsv_params p = dsv_params_default();
    p.p = keep;
    p.seed = seed;
    return add_simple(g, DSV_OP_DROPOUT, name, x, &p, out);
}

dsv_status dsv_graph_add(dsv_graph *g, const char *name, dsv_value a, dsv_value b,
                         dsv_value *out)
{
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_ADD, name, a);
    d.x2 = b;
    return dsv_graph_add_node(g, &d, out);
}

dsv_status dsv_graph_softmax_loss(dsv_graph *g, const char *name, dsv_value scores,
                                  dsv_value labels)
{
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_SOFTMAX_LOSS, name, scores);
    d.y = labels;
    return dsv_graph_add_node(g, &d, NULL);
}

dsv_status dsv_graph_affine_relu(dsv_graph *g, const char *id, dsv_value x, int64_t M,
                                 dsv_value *out)
{
    char nm[64];
    snprintf(nm, sizeof(nm), "relu%s", id);
    dsv_value a;
    dsv_status s = dsv_graph_affine(g, id, x, M, &a);
    return s ? s : dsv_graph_relu(g, nm, a, out);
}

dsv_status dsv_graph_conv_relu(dsv_graph *g, const char *id, dsv_value x, int64_t F,
                               int k, int stride, int pad, dsv_value *out)
{
    char nm[64];
    snprintf(nm, sizeof(nm), "relu%s", id);
    dsv_value a;
    dsv_status s = dsv_graph_conv(g, id, x, F, k, k, stride, pad, &a);
    return s ? s : dsv_graph_relu(g, nm, a, out);
}

dsv_status dsv_graph_conv_relu_pool(dsv_graph *g, const char *id, dsv_value x,
                                    int64_t F, int k, int stride, int pad, int pool,
                                    dsv_value *out)
{
    char nm[64];
    snprintf(nm, sizeof(nm), "pool%s", id);
    dsv_value a;
    dsv_status s = dsv_graph_conv_relu(g, id, x, F, k, stride, pad, &a);
    return s ? s : dsv_graph_max_pool(g, nm, a, pool, pool, pool, out);
}

dsv_status dsv_graph_conv_bn_relu(dsv_graph *g, const char *id, dsv_value x, int64_t F,
                                  int k, int stride, int pad, dsv_value *out)
{
    char nm[64];
    snprintf(nm, sizeof(nm), "relu%s", id);
    dsv_value a, b;
    dsv_status s;
    if ((s = dsv_graph_conv(g, id, x, F, k, k, stride, pad, &a)) ||
        (s = dsv_graph_batchnorm(g, id, a, &b)))
        return s;
    return dsv_graph_relu(g, nm, b, out);
}

