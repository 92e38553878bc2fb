/*
 * Convolution on oneDNN: forward, backward data, backward weights + bias.
 *
 * Primitives are created once per node, shape and thread count and kept in
 * the node's state; oneDNN picks its layouts (format_tag_any) and the user's
 * NCHW / OIHW / plain buffers are reordered at the edges on every call
 * (the weights only when their values changed since the last reorder).
 * Each step's implementation is the fastest candidate for the configuration,
 * timed once per process (dsv_odn_pd_tuned). The execution shared with
 * affine.c is in weighted.c.
 *
 * What must stay true:
 *  - the state key (shapes, stride, pad, thread count, test-mode forward)
 *    covers everything the primitives were built for; the node's slot
 *    keeps a state per key (dsv_odn_state_get);
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
    /* a test-mode forward: forward_inference, no backward; it takes the
       implementation tuned for the training forward (the same key), so that
       an execution plan covers both */
    bool inference;

    dsv_odn_weighted wl;
    bool dy_shared; /* bwd_w reads d_dy's reordered dout */
} conv_state;

static void conv_release(conv_state *st)
{
    dsv_odn_weighted_release(&st->wl);
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

static void conv_key(const dsv_call *c, int nthreads, bool inference, conv_state *k)
{
    k->inference = inference;
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
           a->pad == b->pad && a->nthreads == b->nthreads &&
           a->inference == b->inference;
}

/* The caller's NCHW / OIHW / plain layouts. */
static void conv_user_mds(const conv_state *st, dsv_odn_weighted_mds *u)
{
    u->x = dsv_odn_md(4, st->xs, dnnl_abcd);
    u->w = dsv_odn_md(4, st->ws, dnnl_abcd);
    u->b = dsv_odn_md(1, st->ws, dnnl_a);
    u->y = dsv_odn_md(4, st->ys, dnnl_abcd);
}

/* The shared part: stream and the forward pd (also the backward hint).
 * Each step's implementation is tuned for this key. The fastest one depends
 * on the CPU and the shape: on the course cell (3 input channels) the GEMM
 * backward data, which works on NCHW directly, beats the blocked JIT kernel
 * that pads C to the vector width; with 8 or more channels the JIT kernel
 * wins. */
static dsv_status conv_build(conv_state *st)
{
    dnnl_memory_desc_t x = dsv_odn_md(4, st->xs, dnnl_format_tag_any);
    dnnl_memory_desc_t w = dsv_odn_md(4, st->ws, dnnl_format_tag_any);
    dnnl_memory_desc_t b = dsv_odn_md(1, st->ws, dnnl_a);
    dnnl_memory_desc_t y = dsv_odn_md(4, st->ys, dnnl_format_tag_any);
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t pad = {st->pad, st->pad};
    dnnl_convolution_desc_t cd;
    dsv_status s;
    if ((s = dsv_odn_status(dnnl_convolution_forward_desc_init(
                                &cd, st->inference ? dnnl_forward_inference
                                                   : dnnl_forward_training,
                                dnnl_convolution_direct,
                                &x, &w, &b, &y, strides, pad, pad),
                            "conv: forward descriptor")))
        return s;
    int64_t key[] = {DSV_OP_CONV, 0, st->xs[0], st->xs[1], st->xs[2],
                     st->xs[3], st->ws[0], st->ws[2], st->ws[3], st->stride,
                     st->pad, st->nthreads};
    return dsv_odn_weighted_build(&st->wl, "conv", key, 12, &cd);
}

static dsv_status conv_build_bwd(conv_state *st)
{
    dnnl_memory_desc_t ax = dsv_odn_md(4, st->xs, dnnl_format_tag_any);
    dnnl_memory_desc_t aw = dsv_odn_md(4, st->ws, dnnl_format_tag_any);
    dnnl_memory_desc_t ay = dsv_odn_md(4, st->ys, dnnl_format_tag_any);
    dsv_odn_weighted_mds u;
    dnnl_dims_t strides = {st->stride, st->stride};
    dnnl_dims_t pad = {st->pad, st->pad};
    dnnl_convolution_desc_t dd, wd;
    dsv_status s;
    conv_user_mds(st, &u);
    if ((s = dsv_odn_status(dnnl_convolution_backward_data_desc_init(
                                &dd, dnnl_convolution_direct, &ax, &aw, &ay,
                                strides, pad, pad),
                            "conv: backward data descriptor")) ||
        (s = dsv_odn_status(dnnl_convolution_backward_weights_desc_init(
                                &wd, dnnl_convolution_direct, &ax, &aw, &u.b, &ay,
                                strides, pad, pad),
                            "conv: backward weights descriptor")) ||
        (s = dsv_odn_weighted_build_bwd(&st->wl, &u, &dd, &wd)))
        return s;
    /* Both backward steps often want dout in the same layout: reorder once. */
    const dnnl_memory_desc_t *dmd, *wmd;
    st->dy_shared =
        st->wl.d_dy.inner && st->wl.w_dy.inner &&
        !dnnl_memory_get_memory_desc(st->wl.d_dy.inner, &dmd) &&
        !dnnl_memory_get_memory_desc(st->wl.w_dy.inner, &wmd) &&
        dnnl_memory_desc_equal(dmd, wmd);
    return DSV_OK;
}

/* The state for this call: the node's (rebuilt if its key changed) or, when
 * the call has no state slot, a new one the caller frees. */
static dsv_status conv_state_get(dsv_call *c, bool backward, conv_state **out)
{
    conv_state key;
    *out = NULL;
    memset(&key, 0, sizeof(key));
    conv_key(c, dsv_odn_nthreads(c), !backward && !c->p.train, &key);
    if (!backward && c->out && c->out->ndim == 4) /* what the caller expects */
        memcpy(key.ys, c->out->shape, sizeof(key.ys));

    dsv_odn_state *base;
    int64_t k[DSV_ODN_KEY_MAX];
    memcpy(k, key.xs, sizeof(key.xs));
    memcpy(k + 4, key.ws, sizeof(key.ws));
    memcpy(k + 8, key.ys, sizeof(key.ys));
    k[12] = key.stride, k[13] = key.pad, k[14] = key.nthreads, k[15] = key.inference;
    dsv_status s = dsv_odn_state_get(c, DSV_OP_CONV, sizeof(conv_state),
                                     conv_free, k, 16, &base);
    if (s)
        return s;
    conv_state *st = (conv_state *)base;
    if (!conv_key_equal(st, &key))
        conv_release(st);
    *out = st;

    int saved = dsv_odn_threads_begin(key.nthreads);
    if (!st->wl.stream) {
        memcpy(st->xs, key.xs, sizeof(key.xs));
        memcpy(st->ws, key.ws, sizeof(key.ws));
        memcpy(st->ys, key.ys, sizeof(key.ys));
        st->stride = key.stride, st->pad = key.pad, st->nthreads = key.nthreads;
        st->inference = key.inference;
        s = conv_build(st);
    }
    if (!s && !backward && !st->wl.fwd_ready) {
        dsv_odn_weighted_mds u;
        conv_user_mds(st, &u);
        s = dsv_odn_weighted_build_fwd(&st->wl, &u);
    }
    if (!s && backward && !st->wl.bwd_ready)
        s = conv_build_bwd(st);
    dsv_odn_threads_end(saved);
    if (s) /* leave no half-built state behind */
        conv_release(st);
    return s;
}

static void conv_state_done(dsv_call *c, conv_state *st)
{
    if (st && !c->state)
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
    conv_key(c, 1, false, &k);
    return !memcmp(k.ys, c->out->shape, sizeof(k.ys));
}

dsv_status dsv_odn_conv_forward(dsv_call *c)
{
    conv_state *st;
    dsv_status s = conv_state_get(c, false, &st);
    if (!s)
        s = dsv_odn_weighted_forward(&st->wl, c);
    conv_state_done(c, st);
    return s;
}

dsv_status dsv_odn_conv_backward(dsv_call *c)
{
    if (!c->dx && !c->dw && !c->db)
        return DSV_OK;
    conv_state *st;
    dsv_status s = conv_state_get(c, true, &st);
    if (!s) {
        /* After the backward data, d_dy holds dout in bwd_w's layout too. */
        dnnl_memory_t dy = st->dy_shared && c->dx ? st->wl.d_dy.inner : NULL;
        s = dsv_odn_weighted_backward(&st->wl, c, dy);
    }
    conv_state_done(c, st);
    return s;
}
