/*
 * Convolution on oneDNN: forward, backward data, backward weights + bias.
 *
 * Primitives are created once per node, shape and thread count and kept in
 * the node's state; oneDNN picks its layouts (format_tag_any) and the user's
 * NCHW / OIHW / plain buffers are reordered at the edges on every call
 * (weights change after each optimizer step, so they are reordered each call).
 * Each step's implementation is the fastest candidate for the configuration,
 * timed once per process (dsv_odn_pd_tuned).
 *
 * What must stay true:
 *  - the state key (shapes, stride, pad, thread count) covers everything the
 *    primitives were built for; any change rebuilds them;
 *  - backward overwrites dx, dw, db and needs no prior forward;
 *  - a state is only ever run by one thread at a time (each has its stream
 *    and scratchpads), so the batch-parallel schedule gives each thread its
 *    own state.
 */
#include <string.h>

#include "common.h"

typedef struct conv_state {
    dsv_odn_state base;
    /* key */
    int64_t xs[4], ws[4], ys[4];
    int stride, pad, nthreads;

    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd; /* kept: the hint for the backward pds */
    bool fwd_ready, bwd_ready;

    dsv_odn_prim fwd;
    dsv_odn_edge f_x, f_w, f_b, f_y;

    dsv_odn_prim bwd_d;
    dsv_odn_edge d_dy, d_w, d_dx;
    dsv_odn_prim bwd_w;
    dsv_odn_edge w_x, w_dy, w_dw, w_db;
    bool dy_shared;      /* bwd_w reads d_dy's reordered dout */
    float *dw_buf, *db_buf; /* targets when the caller wants only one of them */
} conv_state;

static void conv_release(conv_state *st)
{
    dsv_odn_prim_free(&st->fwd);
    dsv_odn_edge_free(&st->f_x);
    dsv_odn_edge_free(&st->f_w);
    dsv_odn_edge_free(&st->f_b);
    dsv_odn_edge_free(&st->f_y);
    dsv_odn_prim_free(&st->bwd_d);
    dsv_odn_edge_free(&st->d_dy);
    dsv_odn_edge_free(&st->d_w);
    dsv_odn_edge_free(&st->d_dx);
    dsv_odn_prim_free(&st->bwd_w);
    dsv_odn_edge_free(&st->w_x);
    dsv_odn_edge_free(&st->w_dy);
    dsv_odn_edge_free(&st->w_dw);
    dsv_odn_edge_free(&st->w_db);
    if (st->fwd_pd)
        dnnl_primitive_desc_destroy(st->fwd_pd);
    if (st->stream)
        dnnl_stream_destroy(st->stream);
    dsv_free(st->dw_buf);
    dsv_free(st->db_buf);
    dsv_odn_state base = st->base;
    memset(st, 0, sizeof(*st));
    st->base = base;
}

static void conv_free(dsv_odn_state *base)
{
    conv_state *st = (conv_state *)base;
    conv_release(st);
    dsv_free(st);
}

static void conv_key(const dsv_call *c, int nthreads, conv_state *k)
{
    memcpy(k->xs, c->x->shape, sizeof(k->xs));
    memcpy(k->ws, c->w->shape, sizeof(k->ws));
    k->stride = c->p.stride;
    k->pad = c->p.pad;
    k->nthreads = nthreads;
    k->ys[0] = k->xs[0];
    k->ys[1] = k->ws[0];
    for (int i = 2; i < 4; i++)
        k->ys[i] = (k->xs[i] + 2 * k->pad - k->ws[i]) / k->stride + 1;
}

static bool conv_key_equal(const conv_state *a, const conv_state *b)
{
    return !memcmp(a->xs, b->xs, sizeof(a->xs)) &&
           !memcmp(a->ws, b->ws, sizeof(a->ws)) &&
           !memcmp(a->ys, b->ys, sizeof(a->ys)) && a->stride == b->stride &&
           a->pad == b->pad && a->nthreads == b->nthreads;
}

static dsv_status pick(conv_state *st, int step, dnnl_primitive_desc_t *pd,
                       const_dnnl_op_desc_t od, const_dnnl_primitive_desc_t hint,
                       const char *what);

/* The shared part: stream and the forward pd (also the backward hint). */
static dsv_status conv_build(conv_state *st)
{
    dnnl_engine_t eng;
    dsv_status s;
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&st->stream, eng,
                                               dnnl_stream_default_flags),
                            "conv: stream")))
        return s;
    dnnl_memory_desc_t x = dsv_odn_md(4, st->xs, dnnl_format_tag_any);
    dnnl_memory_desc_t w = dsv_odn_md(4, st->ws, dnnl_format_tag_any);
    dnnl_memory_desc_t b = dsv_odn_md(1, st->ws, dnnl_a);
    dnnl_memory_desc_t y = dsv_odn_md(4, st->ys, dnnl_format_tag_any);
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t pad = {st->pad, st->pad};
    dnnl_convolution_desc_t cd;
    if ((s = dsv_odn_status(dnnl_convolution_forward_desc_init(
                                &cd, dnnl_forward_training, dnnl_convolution_direct,
                                &x, &w, &b, &y, strides, pad, pad),
                            "conv: forward descriptor")))
        return s;
    return pick(st, 0, &st->fwd_pd, &cd, NULL, "conv: forward");
}

static const dnnl_memory_desc_t *q(const_dnnl_primitive_desc_t pd,
                                   dnnl_query_t what, int index)
{
    return dnnl_primitive_desc_query_md(pd, what, index);
}

static dsv_status conv_build_fwd(conv_state *st)
{
    const_dnnl_primitive_desc_t pd = st->fwd_pd;
    dnnl_memory_desc_t ux = dsv_odn_md(4, st->xs, dnnl_abcd);
    dnnl_memory_desc_t uw = dsv_odn_md(4, st->ws, dnnl_abcd);
    dnnl_memory_desc_t ub = dsv_odn_md(1, st->ws, dnnl_a);
    dnnl_memory_desc_t uy = dsv_odn_md(4, st->ys, dnnl_abcd);
    dsv_status s;
    if ((s = dsv_odn_prim_make(&st->fwd, pd, "conv: forward primitive")) ||
        (s = dsv_odn_edge_make(&st->f_x, &ux, q(pd, dnnl_query_src_md, 0), true, "conv: x")) ||
        (s = dsv_odn_edge_make(&st->f_w, &uw, q(pd, dnnl_query_weights_md, 0), true, "conv: w")) ||
        (s = dsv_odn_edge_make(&st->f_b, &ub, q(pd, dnnl_query_weights_md, 1), true, "conv: b")) ||
        (s = dsv_odn_edge_make(&st->f_y, &uy, q(pd, dnnl_query_dst_md, 0), false, "conv: out")))
        return s;
    st->fwd_ready = true;
    return DSV_OK;
}

/* The tuned implementation of one step (0 forward, 1 backward data,
 * 2 backward weights) for this configuration. The fastest one depends on the
 * CPU and the shape: on the course cell (3 input channels) the GEMM backward
 * data, which works on NCHW directly, beats the blocked JIT kernel that pads
 * C to the vector width; with 8 or more channels the JIT kernel wins. */
static dsv_status pick(conv_state *st, int step, dnnl_primitive_desc_t *pd,
                       const_dnnl_op_desc_t od, const_dnnl_primitive_desc_t hint,
                       const char *what)
{
    static const dsv_odn_argq args[3][4] = {
        {{DNNL_ARG_SRC, dnnl_query_src_md, 0},
         {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0},
         {DNNL_ARG_BIAS, dnnl_query_weights_md, 1},
         {DNNL_ARG_DST, dnnl_query_dst_md, 0}},
        {{DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0},
         {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0},
         {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0}},
        {{DNNL_ARG_SRC, dnnl_query_src_md, 0},
         {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0},
         {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0},
         {DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1}},
    };
    int64_t key[] = {DSV_OP_CONV, step, st->xs[0], st->xs[1], st->xs[2],
                     st->xs[3], st->ws[0], st->ws[2], st->ws[3], st->stride,
                     st->pad, st->nthreads};
    return dsv_odn_pd_tuned(pd, od, hint, key, 12, st->stream, args[step],
                            step == 1 ? 3 : 4, what);
}

static dsv_status conv_build_bwd(conv_state *st)
{
    dnnl_memory_desc_t ax = dsv_odn_md(4, st->xs, dnnl_format_tag_any);
    dnnl_memory_desc_t aw = dsv_odn_md(4, st->ws, dnnl_format_tag_any);
    dnnl_memory_desc_t ay = dsv_odn_md(4, st->ys, dnnl_format_tag_any);
    dnnl_memory_desc_t ux = dsv_odn_md(4, st->xs, dnnl_abcd);
    dnnl_memory_desc_t uw = dsv_odn_md(4, st->ws, dnnl_abcd);
    dnnl_memory_desc_t ub = dsv_odn_md(1, st->ws, dnnl_a);
    dnnl_memory_desc_t uy = dsv_odn_md(4, st->ys, dnnl_abcd);
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t pad = {st->pad, st->pad};
    dnnl_convolution_desc_t dd, wd;
    dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
    dsv_status s;

    if ((s = dsv_odn_status(dnnl_convolution_backward_data_desc_init(
                                &dd, dnnl_convolution_direct, &ax, &aw, &ay,
                                strides, pad, pad),
                            "conv: backward data descriptor")) ||
        (s = pick(st, 1, &dpd, &dd, st->fwd_pd, "conv: backward data")) ||
        (s = dsv_odn_prim_make(&st->bwd_d, dpd, "conv: backward data primitive")) ||
        (s = dsv_odn_edge_make(&st->d_dy, &uy, q(dpd, dnnl_query_diff_dst_md, 0), true, "conv: dout")) ||
        (s = dsv_odn_edge_make(&st->d_w, &uw, q(dpd, dnnl_query_weights_md, 0), true, "conv: w")) ||
        (s = dsv_odn_edge_make(&st->d_dx, &ux, q(dpd, dnnl_query_diff_src_md, 0), false, "conv: dx")))
        goto out;
    if ((s = dsv_odn_status(dnnl_convolution_backward_weights_desc_init(
                                &wd, dnnl_convolution_direct, &ax, &aw, &ub, &ay,
                                strides, pad, pad),
                            "conv: backward weights descriptor")) ||
        (s = pick(st, 2, &wpd, &wd, st->fwd_pd, "conv: backward weights")) ||
        (s = dsv_odn_prim_make(&st->bwd_w, wpd, "conv: backward weights primitive")) ||
        (s = dsv_odn_edge_make(&st->w_x, &ux, q(wpd, dnnl_query_src_md, 0), true, "conv: x")) ||
        (s = dsv_odn_edge_make(&st->w_dy, &uy, q(wpd, dnnl_query_diff_dst_md, 0), true, "conv: dout")) ||
        (s = dsv_odn_edge_make(&st->w_dw, &uw, q(wpd, dnnl_query_diff_weights_md, 0), false, "conv: dw")) ||
        (s = dsv_odn_edge_make(&st->w_db, &ub, q(wpd, dnnl_query_diff_weights_md, 1), false, "conv: db")))
        goto out;
    /* Both backward steps often want dout in the same layout: reorder once. */
    st->dy_shared = st->d_dy.inner && st->w_dy.inner &&
                    dnnl_memory_desc_equal(q(dpd, dnnl_query_diff_dst_md, 0),
                                           q(wpd, dnnl_query_diff_dst_md, 0));
    st->bwd_ready = true;
out:
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    return s;
}

/* The state for this call: the node's (rebuilt if its key changed) or, when
 * the call has no state slot, a new one the caller frees. */
static dsv_status conv_state_get(dsv_call *c, bool backward, conv_state **out)
{
    conv_state key;
    *out = NULL;
    memset(&key, 0, sizeof(key));
    conv_key(c, dsv_odn_nthreads(c), &key);
    if (!backward && c->out && c->out->ndim == 4) /* what the caller expects */
        memcpy(key.ys, c->out->shape, sizeof(key.ys));

    conv_state *st = c->state ? c->state->ptr : NULL;
    if (st && st->base.op != DSV_OP_CONV) {
        dsv_odn_state_free(st);
        c->state->ptr = st = NULL;
    }
    if (st && !conv_key_equal(st, &key))
        conv_release(st);
    if (!st) {
        st = dsv_alloc(sizeof(*st));
        if (!st)
            return dsv_error(DSV_NOMEM, "conv: out of memory for the onednn state");
        memset(st, 0, sizeof(*st));
        st->base.op = DSV_OP_CONV;
        st->base.free = conv_free;
        if (c->state)
            c->state->ptr = st;
    }
    *out = st;

    dsv_status s = DSV_OK;
    int saved = dsv_odn_threads_begin(key.nthreads);
    if (!st->stream) {
        memcpy(st->xs, key.xs, sizeof(key.xs));
        memcpy(st->ws, key.ws, sizeof(key.ws));
        memcpy(st->ys, key.ys, sizeof(key.ys));
        st->stride = key.stride, st->pad = key.pad, st->nthreads = key.nthreads;
        s = conv_build(st);
    }
    if (!s && !backward && !st->fwd_ready)
        s = conv_build_fwd(st);
    if (!s && backward && !st->bwd_ready)
        s = conv_build_bwd(st);
    dsv_odn_threads_end(saved);
    if (s) /* leave no half-built state behind */
        conv_release(st);
    return s;
}

static void conv_state_done(dsv_call *c, conv_state *st)
{
    if (!c->state)
        conv_free(&st->base);
}

bool dsv_odn_conv_supports(const dsv_call *c, bool backward)
{
    if (c->x->dtype != DSV_F32)
        return false;
    if (backward || !c->out || c->out->ndim != 4)
        return true;
    /* The forward reads the output dims from out; validation accepts any
       shape with the right element count, oneDNN only the exact one. */
    conv_state k;
    conv_key(c, 1, &k);
    return !memcmp(k.ys, c->out->shape, sizeof(k.ys));
}

dsv_status dsv_odn_conv_forward(dsv_call *c)
{
    conv_state *st;
    dsv_status s = conv_state_get(c, false, &st);
    if (s) {
        if (!c->state && st)
            conv_free(&st->base);
        return s;
    }
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->f_x)},
        {DNNL_ARG_WEIGHTS, dsv_odn_edge_mem(&st->f_w)},
        {DNNL_ARG_BIAS, dsv_odn_edge_mem(&st->f_b)},
        {DNNL_ARG_DST, dsv_odn_edge_mem(&st->f_y)},
    };
    if ((s = dsv_odn_edge_in(&st->f_x, st->stream, c->x->data)) ||
        (s = dsv_odn_edge_in(&st->f_w, st->stream, c->w->data)) ||
        (s = dsv_odn_edge_in(&st->f_b, st->stream, c->b->data)) ||
        (s = dsv_odn_edge_in(&st->f_y, st->stream, c->out->data)) ||
        (s = dsv_odn_prim_run(&st->fwd, st->stream, 4, args, "conv: forward")) ||
        (s = dsv_odn_edge_out(&st->f_y, st->stream)))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "conv: forward wait");
out:
    conv_state_done(c, st);
    return s;
}

static dsv_status conv_backward_data(dsv_call *c, conv_state *st)
{
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, dsv_odn_edge_mem(&st->d_dy)},
        {DNNL_ARG_WEIGHTS, dsv_odn_edge_mem(&st->d_w)},
        {DNNL_ARG_DIFF_SRC, dsv_odn_edge_mem(&st->d_dx)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&st->d_dy, st->stream, c->dout->data)) ||
        (s = dsv_odn_edge_in(&st->d_w, st->stream, c->w->data)) ||
        (s = dsv_odn_edge_in(&st->d_dx, st->stream, c->dx->data)) ||
        (s = dsv_odn_prim_run(&st->bwd_d, st->stream, 3, args, "conv: backward data")))
        return s;
    return dsv_odn_edge_out(&st->d_dx, st->stream);
}

static dsv_status conv_backward_weights(dsv_call *c, conv_state *st, bool dy_ready)
{
    void *dw = c->dw ? c->dw->data : NULL, *db = c->db ? c->db->data : NULL;
    if (!dw && !st->dw_buf && !(st->dw_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->w))))
        return dsv_error(DSV_NOMEM, "conv: out of memory");
    if (!db && !st->db_buf && !(st->db_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->b))))
        return dsv_error(DSV_NOMEM, "conv: out of memory");
    bool share = st->dy_shared && dy_ready;
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->w_x)},
        {DNNL_ARG_DIFF_DST, share ? st->d_dy.inner : dsv_odn_edge_mem(&st->w_dy)},
        {DNNL_ARG_DIFF_WEIGHTS, dsv_odn_edge_mem(&st->w_dw)},
        {DNNL_ARG_DIFF_BIAS, dsv_odn_edge_mem(&st->w_db)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&st->w_x, st->stream, c->x->data)) ||
        (!share && (s = dsv_odn_edge_in(&st->w_dy, st->stream, c->dout->data))) ||
        (s = dsv_odn_edge_in(&st->w_dw, st->stream, dw ? dw : st->dw_buf)) ||
        (s = dsv_odn_edge_in(&st->w_db, st->stream, db ? db : st->db_buf)) ||
        (s = dsv_odn_prim_run(&st->bwd_w, st->stream, 4, args, "conv: backward weights")))
        return s;
    if (dw && (s = dsv_odn_edge_out(&st->w_dw, st->stream)))
        return s;
    return db ? dsv_odn_edge_out(&st->w_db, st->stream) : DSV_OK;
}

dsv_status dsv_odn_conv_backward(dsv_call *c)
{
    if (!c->dx && !c->dw && !c->db)
        return DSV_OK;
    conv_state *st;
    dsv_status s = conv_state_get(c, true, &st);
    if (s) {
        if (!c->state && st)
            conv_free(&st->base);
        return s;
    }
    if (c->dx && (s = conv_backward_data(c, st)))
        goto out;
    if ((c->dw || c->db) && (s = conv_backward_weights(c, st, c->dx != NULL)))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "conv: backward wait");
out:
    conv_state_done(c, st);
    return s;
}
