/*
 * Max pooling on oneDNN: forward training (with workspace), forward
 * inference (test mode: no workspace) and backward.
 *
 * Both run on NHWC copies of the user's NCHW tensors: oneDNN's NHWC JIT
 * pooling is far faster than its simple_nchw path, reorders included, and
 * the workspace ties the backward to the forward's layout. Which JIT flavour
 * is fastest depends on the CPU (on one AVX2-only CPU the sse41 flavour beat
 * the avx2 one by an order of magnitude; bench/RESULTS.md, "Kernel notes"),
 * so each configuration's implementation is chosen by timing the candidates
 * once; the choice is shared by all states.
 *
 * What must stay true:
 *  - the workspace in the state belongs to the input recorded with it
 *    (pointer and a fingerprint of the values); backward reruns the forward
 *    when its x is not that input, so it also works with no prior forward;
 *  - the state key (shapes, window, stride, thread count, test-mode
 *    forward) covers what the primitives were built for; the node's slot
 *    keeps a state per key; a test-mode state has no workspace and runs no backward.
 *  - the test-mode forward takes the implementation tuned for the training
 *    forward (the same key), so that an execution plan covers both.
 */
#include <string.h>

#include "common.h"

typedef struct pool_state {
    dsv_odn_state base;
    /* key */
    int64_t xs[4], ys[4];
    int kh, kw, stride, nthreads;
    bool inference;

    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd; /* the backward's hint */
    dsv_odn_prim fwd;
    dsv_odn_edge f_x, f_y;
    dnnl_memory_t ws, y_tmp;

    bool bwd_ready;
    dsv_odn_prim bwd;
    dsv_odn_edge b_dy, b_dx;

    /* which input the workspace was computed from */
    bool ws_valid;
    const void *ws_x;
    uint32_t ws_sum;
} pool_state;

static void pool_release(pool_state *st)
{
    dsv_odn_prim_free(&st->fwd);
    dsv_odn_edge_free(&st->f_x);
    dsv_odn_edge_free(&st->f_y);
    if (st->ws)
        dnnl_memory_destroy(st->ws);
    if (st->y_tmp)
        dnnl_memory_destroy(st->y_tmp);
    dsv_odn_prim_free(&st->bwd);
    dsv_odn_edge_free(&st->b_dy);
    dsv_odn_edge_free(&st->b_dx);
    if (st->fwd_pd)
        dnnl_primitive_desc_destroy(st->fwd_pd);
    if (st->stream)
        dnnl_stream_destroy(st->stream);
    dsv_odn_state base = st->base;
    memset(st, 0, sizeof(*st));
    st->base = base;
}

static void pool_free(dsv_odn_state *base)
{
    pool_state *st = (pool_state *)base;
    pool_release(st);
    dsv_free(st);
}

/* The tuned implementation for this configuration (see common.h). */
static dsv_status pick(pool_state *st, bool backward, dnnl_primitive_desc_t *pd,
                       const_dnnl_op_desc_t od, const_dnnl_primitive_desc_t hint,
                       const char *what)
{
    static const dsv_odn_argq fwd_args[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0},
        {DNNL_ARG_DST, dnnl_query_dst_md, 0},
        {DNNL_ARG_WORKSPACE, dnnl_query_workspace_md, 0},
    };
    static const dsv_odn_argq bwd_args[] = {
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0},
        {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0},
        {DNNL_ARG_WORKSPACE, dnnl_query_workspace_md, 0},
    };
    int64_t key[] = {DSV_OP_MAX_POOL, backward, st->xs[0], st->xs[1], st->xs[2],
                     st->xs[3], st->kh, st->kw, st->stride, st->nthreads};
    return dsv_odn_pd_tuned(pd, od, hint, key, 10, st->stream,
                            backward ? bwd_args : fwd_args, st->inference ? 2 : 3,
                            what);
}

static dsv_status pool_build(pool_state *st)
{
    dnnl_engine_t eng;
    dsv_status s;
    dnnl_memory_desc_t ux = dsv_odn_md(4, st->xs, dnnl_abcd);
    dnnl_memory_desc_t uy = dsv_odn_md(4, st->ys, dnnl_abcd);
    dnnl_memory_desc_t x = dsv_odn_md(4, st->xs, dnnl_acdb);
    dnnl_memory_desc_t y = dsv_odn_md(4, st->ys, dnnl_acdb);
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t kernel = {st->kh, st->kw};
    dnnl_dims_t zero = {0, 0};
    dnnl_pooling_v2_desc_t pd;
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&st->stream, eng,
                                               dnnl_stream_default_flags),
                            "max_pool: stream")) ||
        (s = dsv_odn_status(dnnl_pooling_v2_forward_desc_init(
                                &pd, st->inference ? dnnl_forward_inference
                                                   : dnnl_forward_training,
                                dnnl_pooling_max, &x,
                                &y, strides, kernel, zero, zero, zero),
                            "max_pool: forward descriptor")) ||
        (s = pick(st, false, &st->fwd_pd, &pd, NULL, "max_pool: forward")) ||
        (s = dsv_odn_prim_make(&st->fwd, st->fwd_pd, "max_pool: forward primitive")) ||
        (s = dsv_odn_edge_make(&st->f_x, &ux, &x, true, "max_pool: x")) ||
        (s = dsv_odn_edge_make(&st->f_y, &uy, &y, false, "max_pool: out")))
        return s;
    if (st->inference)
        return DSV_OK;
    const dnnl_memory_desc_t *wmd =
        dnnl_primitive_desc_query_md(st->fwd_pd, dnnl_query_workspace_md, 0);
    if (!wmd || dnnl_memory_desc_get_size(wmd) == 0)
        return dsv_error(DSV_BACKEND, "onednn: max_pool: the forward has no workspace");
    return dsv_odn_status(dnnl_memory_create(&st->ws, wmd, eng, DNNL_MEMORY_ALLOCATE),
                          "max_pool: workspace");
}

static dsv_status pool_build_bwd(pool_state *st)
{
    dnnl_memory_desc_t ux = dsv_odn_md(4, st->xs, dnnl_abcd);
    dnnl_memory_desc_t uy = dsv_odn_md(4, st->ys, dnnl_abcd);
    dnnl_memory_desc_t x = dsv_odn_md(4, st->xs, dnnl_acdb);
    dnnl_memory_desc_t y = dsv_odn_md(4, st->ys, dnnl_acdb);
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t kernel = {st->kh, st->kw};
    dnnl_dims_t zero = {0, 0};
    dnnl_pooling_v2_desc_t pd;
    dnnl_primitive_desc_t bpd = NULL;
    dsv_status s;
    if ((s = dsv_odn_status(dnnl_pooling_v2_backward_desc_init(
                                &pd, dnnl_pooling_max, &x, &y, strides, kernel,
                                zero, zero, zero),
                            "max_pool: backward descriptor")) ||
        (s = pick(st, true, &bpd, &pd, st->fwd_pd, "max_pool: backward")) ||
        (s = dsv_odn_prim_make(&st->bwd, bpd, "max_pool: backward primitive")) ||
        (s = dsv_odn_edge_make(&st->b_dy, &uy, &y, true, "max_pool: dout")) ||
        (s = dsv_odn_edge_make(&st->b_dx, &ux, &x, false, "max_pool: dx")))
        goto out;
    st->bwd_ready = true;
out:
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return s;
}

static dsv_status pool_state_get(dsv_call *c, bool backward, pool_state **out)
{
    pool_state key;
    *out = NULL;
    memset(&key, 0, sizeof(key));
    memcpy(key.xs, c->x->shape, sizeof(key.xs));
    key.kh = c->p.pool_height, key.kw = c->p.pool_width, key.stride = c->p.stride;
    key.nthreads = dsv_odn_nthreads(c);
    key.inference = !backward && !c->p.train;
    key.ys[0] = key.xs[0], key.ys[1] = key.xs[1];
    key.ys[2] = (key.xs[2] - key.kh) / key.stride + 1;
    key.ys[3] = (key.xs[3] - key.kw) / key.stride + 1;

    dsv_odn_state *base;
    int64_t k[] = {key.xs[0], key.xs[1], key.xs[2], key.xs[3], key.kh, key.kw,
                   key.stride, key.nthreads, key.inference};
    dsv_status s = dsv_odn_state_get(c, DSV_OP_MAX_POOL, sizeof(pool_state),
                                     pool_free, k, 9, &base);
    if (s)
        return s;
    pool_state *st = (pool_state *)base;
    if (memcmp(st->xs, key.xs, sizeof(key.xs)) || st->kh != key.kh ||
        st->kw != key.kw || st->stride != key.stride ||
        st->nthreads != key.nthreads || st->inference != key.inference)
        pool_release(st);
    *out = st;

    int saved = dsv_odn_threads_begin(key.nthreads);
    if (!st->stream) {
        memcpy(st->xs, key.xs, sizeof(key.xs));
        memcpy(st->ys, key.ys, sizeof(key.ys));
        st->kh = key.kh, st->kw = key.kw, st->stride = key.stride;
        st->nthreads = key.nthreads, st->inference = key.inference;
        s = pool_build(st);
    }
    if (!s && backward && !st->bwd_ready)
        s = pool_build_bwd(st);
    dsv_odn_threads_end(saved);
    if (s)
        pool_release(st);
    return s;
}

static void pool_state_done(dsv_call *c, pool_state *st)
{
    if (st && !c->state)
        pool_free(&st->base);
}

/* Runs the forward into y (NULL: only the workspace is wanted) and records
 * the input the workspace belongs to. */
static dsv_status pool_run_forward(pool_state *st, const dsv_tensor *x, void *y)
{
    dnnl_engine_t eng;
    dsv_status s;
    dnnl_memory_t dst = dsv_odn_edge_mem(&st->f_y);
    st->ws_valid = false;
    if (!y && !st->f_y.inner) { /* no reorder buffer to write into */
        if (!st->y_tmp &&
            ((s = dsv_odn_engine(&eng)) ||
             (s = dsv_odn_status(dnnl_memory_create(&st->y_tmp,
                                                    dnnl_primitive_desc_query_md(st->fwd_pd, dnnl_query_dst_md, 0),
                                                    eng, DNNL_MEMORY_ALLOCATE),
                                 "max_pool: buffer"))))
            return s;
        dst = st->y_tmp;
    }
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->f_x)},
        {DNNL_ARG_DST, dst},
        {DNNL_ARG_WORKSPACE, st->ws},
    };
    if ((s = dsv_odn_edge_in(&st->f_x, st->stream, x->data)) ||
        (y && (s = dsv_odn_edge_in(&st->f_y, st->stream, y))) ||
        (s = dsv_odn_prim_run(&st->fwd, st->stream, st->ws ? 3 : 2, args,
                              "max_pool: forward")) ||
        (y && (s = dsv_odn_edge_out(&st->f_y, st->stream))))
        return s;
    if (!st->ws)
        return DSV_OK;
    st->ws_valid = true;
    st->ws_x = x->data;
    st->ws_sum = dsv_odn_fingerprint(x->data, dsv_tensor_numel(x), st->nthreads);
    return DSV_OK;
}

bool dsv_odn_max_pool_supports(const dsv_call *c, bool backward)
{
    (void)backward;
    return c->x->dtype == DSV_F32;
}

dsv_status dsv_odn_max_pool_forward(dsv_call *c)
{
    pool_state *st;
    dsv_status s = pool_state_get(c, false, &st);
    if (!s && !(s = pool_run_forward(st, c->x, c->out->data)))
        s = dsv_odn_status(dnnl_stream_wait(st->stream), "max_pool: forward wait");
    if (s && st)
        st->ws_valid = false;
    pool_state_done(c, st);
    return s;
}

dsv_status dsv_odn_max_pool_backward(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    pool_state *st;
    dsv_status s = pool_state_get(c, true, &st);
    if (s)
        goto out;
    if (!st->ws_valid || st->ws_x != c->x->data ||
        st->ws_sum != dsv_odn_fingerprint(c->x->data, dsv_tensor_numel(c->x),
                                          st->nthreads)) {
        if ((s = pool_run_forward(st, c->x, NULL)))
            goto out;
    }
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, dsv_odn_edge_mem(&st->b_dy)},
        {DNNL_ARG_WORKSPACE, st->ws},
        {DNNL_ARG_DIFF_SRC, dsv_odn_edge_mem(&st->b_dx)},
    };
    if ((s = dsv_odn_edge_in(&st->b_dy, st->stream, c->dout->data)) ||
        (s = dsv_odn_edge_in(&st->b_dx, st->stream, c->dx->data)) ||
        (s = dsv_odn_prim_run(&st->bwd, st->stream, 3, args, "max_pool: backward")) ||
        (s = dsv_odn_edge_out(&st->b_dx, st->stream)))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "max_pool: backward wait");
out:
    if (s && st)
        st->ws_valid = false;
    pool_state_done(c, st);
    return s;
}
