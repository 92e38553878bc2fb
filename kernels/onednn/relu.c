/*
 * ReLU on oneDNN's eltwise primitive: forward out = max(x, 0) and backward
 * dx = x > 0 ? dout : 0 (alpha 0; the gradient at x == 0 is 0, the course's
 * mask, as in the naive kernel). Two differences from the naive kernel, both
 * from oneDNN computing the masked gradient as dout * 0: it can be -0.0
 * where naive writes +0.0 (equal values), and at a NaN input oneDNN passes
 * dout where naive writes 0 (the forward gives 0 for NaN in both).
 *
 * The op is elementwise, so every tensor is viewed flat as one dimension of
 * numel elements; the caller's buffers are used in place (no reorders). Which
 * JIT flavour is fastest depends on the CPU, so the implementation is chosen
 * by timing the candidates once per configuration (dsv_odn_pd_tuned).
 *
 * What must stay true: the state key (element count, thread count) covers
 * what the primitives were built for; backward reads x, not the forward's
 * output, so it needs no prior forward; one state runs on one thread at a
 * time.
 */
#include <string.h>

#include "common.h"

typedef struct relu_state {
    dsv_odn_state base;
    /* key */
    int64_t n;
    int nthreads;

    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd; /* the backward's hint */
    bool fwd_ready, bwd_ready;
    dsv_odn_prim fwd, bwd;
    /* the caller's buffers, rebound on every call */
    dnnl_memory_t x, y, dy, dx;
} relu_state;

static void relu_release(relu_state *st)
{
    dsv_odn_prim_free(&st->fwd);
    dsv_odn_prim_free(&st->bwd);
    dnnl_memory_t *mems[] = {&st->x, &st->y, &st->dy, &st->dx};
    for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++)
        if (*mems[i])
            dnnl_memory_destroy(*mems[i]);
    if (st->fwd_pd)
        dnnl_primitive_desc_destroy(st->fwd_pd);
    if (st->stream)
        dnnl_stream_destroy(st->stream);
    dsv_odn_state base = st->base;
    memset(st, 0, sizeof(*st));
    st->base = base;
}

static void relu_free(dsv_odn_state *base)
{
    relu_state *st = (relu_state *)base;
    relu_release(st);
    dsv_free(st);
}

/* The tuned implementation of the forward or the backward. */
static dsv_status pick(relu_state *st, bool backward, dnnl_primitive_desc_t *pd,
                       const_dnnl_op_desc_t od, const_dnnl_primitive_desc_t hint,
                       const char *what)
{
    static const dsv_odn_argq fwd_args[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0},
        {DNNL_ARG_DST, dnnl_query_dst_md, 0},
    };
    static const dsv_odn_argq bwd_args[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0},
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0},
        {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0},
    };
    int64_t key[] = {DSV_OP_RELU, backward, st->n, st->nthreads};
    return dsv_odn_pd_tuned(pd, od, hint, key, 4, st->stream,
                            backward ? bwd_args : fwd_args, backward ? 3 : 2, what);
}

/* A memory object over the flat view, bound to a buffer on every call. */
static dsv_status flat_mem(const relu_state *st, dnnl_memory_t *m)
{
    dnnl_engine_t eng;
    dnnl_memory_desc_t md = dsv_odn_md(1, &st->n, dnnl_a);
    dsv_status s = dsv_odn_engine(&eng);
    return s ? s
             : dsv_odn_status(dnnl_memory_create(m, &md, eng, DNNL_MEMORY_NONE),
                              "relu: memory");
}

static dsv_status relu_build(relu_state *st)
{
    dnnl_engine_t eng;
    dnnl_memory_desc_t md = dsv_odn_md(1, &st->n, dnnl_a);
    dnnl_eltwise_desc_t ed;
    dsv_status s;
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&st->stream, eng,
                                               dnnl_stream_default_flags),
                            "relu: stream")) ||
        (s = dsv_odn_status(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training,
                                                           dnnl_eltwise_relu, &md,
                                                           0.0f, 0.0f),
                            "relu: forward descriptor")) ||
        (s = pick(st, false, &st->fwd_pd, &ed, NULL, "relu: forward")) ||
        (s = flat_mem(st, &st->x)))
        return s;
    return DSV_OK;
}

static dsv_status relu_build_fwd(relu_state *st)
{
    dsv_status s;
    if ((s = dsv_odn_prim_make(&st->fwd, st->fwd_pd, "relu: forward primitive")) ||
        (s = flat_mem(st, &st->y)))
        return s;
    st->fwd_ready = true;
    return DSV_OK;
}

static dsv_status relu_build_bwd(relu_state *st)
{
    dnnl_memory_desc_t md = dsv_odn_md(1, &st->n, dnnl_a);
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t bpd = NULL;
    dsv_status s;
    if ((s = dsv_odn_status(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu,
                                                            &md, &md, 0.0f, 0.0f),
                            "relu: backward descriptor")) ||
        (s = pick(st, true, &bpd, &ed, st->fwd_pd, "relu: backward")) ||
        (s = dsv_odn_prim_make(&st->bwd, bpd, "relu: backward primitive")) ||
        (s = flat_mem(st, &st->dy)) || (s = flat_mem(st, &st->dx)))
        goto out;
    st->bwd_ready = true;
out:
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return s;
}

static dsv_status relu_state_get(dsv_call *c, bool backward, relu_state **out)
{
    int64_t n = dsv_tensor_numel(c->x);
    int nthreads = dsv_odn_nthreads(c);
    *out = NULL;

    dsv_odn_state *base;
    int64_t key[] = {n, nthreads};
    dsv_status s = dsv_odn_state_get(c, DSV_OP_RELU, sizeof(relu_state),
                                     relu_free, key, 2, &base);
    if (s)
        return s;
    relu_state *st = (relu_state *)base;
    if (st->n != n || st->nthreads != nthreads)
        relu_release(st);
    *out = st;

    int saved = dsv_odn_threads_begin(nthreads);
    if (!st->stream) {
        st->n = n, st->nthreads = nthreads;
        s = relu_build(st);
    }
    if (!s && !backward && !st->fwd_ready)
        s = relu_build_fwd(st);
    if (!s && backward && !st->bwd_ready)
        s = relu_build_bwd(st);
    dsv_odn_threads_end(saved);
    if (s)
        relu_release(st);
    return s;
}

static void relu_state_done(dsv_call *c, relu_state *st)
{
    if (st && !c->state)
        relu_free(&st->base);
}

static dsv_status bind(dnnl_memory_t m, const void *data)
{
    return dsv_odn_status(dnnl_memory_set_data_handle(m, (void *)data),
                          "relu: binding a buffer");
}

bool dsv_odn_relu_supports(const dsv_call *c, bool backward)
{
    (void)backward;
    return c->x->dtype == DSV_F32;
}

dsv_status dsv_odn_relu_forward(dsv_call *c)
{
    relu_state *st;
    dsv_status s = relu_state_get(c, false, &st);
    if (s)
        goto out;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, st->x}, {DNNL_ARG_DST, st->y}};
    if ((s = bind(st->x, c->x->data)) || (s = bind(st->y, c->out->data)) ||
        (s = dsv_odn_prim_run(&st->fwd, st->stream, 2, args, "relu: forward")))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "relu: forward wait");
out:
    relu_state_done(c, st);
    return s;
}

dsv_status dsv_odn_relu_backward(dsv_call *c)
{
    if (!c->dx)
        return DSV_OK;
    relu_state *st;
    dsv_status s = relu_state_get(c, true, &st);
    if (s)
        goto out;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, st->x},
                               {DNNL_ARG_DIFF_DST, st->dy},
                               {DNNL_ARG_DIFF_SRC, st->dx}};
    if ((s = bind(st->x, c->x->data)) || (s = bind(st->dy, c->dout->data)) ||
        (s = bind(st->dx, c->dx->data)) ||
        (s = dsv_odn_prim_run(&st->bwd, st->stream, 3, args, "relu: backward")))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "relu: backward wait");
out:
    relu_state_done(c, st);
    return s;
}
