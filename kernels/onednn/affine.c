/*
 * Affine layer on oneDNN's inner product: forward, backward data, backward
 * weights + bias.
 *
 * x (N, d1..dk) is read as its (N, D) rows. The course's w is (D, M) row-major,
 * which is oneDNN's logical {M, D} weights with tag `ba`; oneDNN picks its own
 * layouts (format_tag_any) and the user's buffers are reordered at the edges
 * on every call (weights change after each optimizer step).
 *
 * What must stay true: as in conv.c, the state key (N, D, M, thread count)
 * covers everything the primitives were built for, backward overwrites dx, dw
 * and db without needing a prior forward, and one state runs on one thread at
 * a time.
 */
#include <string.h>

#include "common.h"

typedef struct affine_state {
    dsv_odn_state base;
    /* key */
    int64_t n, d, m;
    int nthreads;

    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd; /* the backward's hint */
    bool fwd_ready, bwd_ready;

    dsv_odn_prim fwd;
    dsv_odn_edge f_x, f_w, f_b, f_y;
    dsv_odn_prim bwd_d;
    dsv_odn_edge d_dy, d_w, d_dx;
    dsv_odn_prim bwd_w;
    dsv_odn_edge w_x, w_dy, w_dw, w_db;
    float *dw_buf, *db_buf; /* targets when the caller wants only one */
} affine_state;

static void affine_release(affine_state *st)
{
    dsv_odn_edge *edges[] = {&st->f_x, &st->f_w, &st->f_b, &st->f_y, &st->d_dy,
                             &st->d_w, &st->d_dx, &st->w_x, &st->w_dy, &st->w_dw,
                             &st->w_db};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        dsv_odn_edge_free(edges[i]);
    dsv_odn_prim_free(&st->fwd);
    dsv_odn_prim_free(&st->bwd_d);
    dsv_odn_prim_free(&st->bwd_w);
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

static void affine_free(dsv_odn_state *base)
{
    affine_state *st = (affine_state *)base;
    affine_release(st);
    dsv_free(st);
}

static const dnnl_memory_desc_t *q(const_dnnl_primitive_desc_t pd,
                                   dnnl_query_t what, int index)
{
    return dnnl_primitive_desc_query_md(pd, what, index);
}

/* Descriptors: x {N, D}, w {M, D}, b {M}, y {N, M}; `user` gives the
 * caller's layouts, otherwise `any` (bias stays plain). */
static void affine_mds(const affine_state *st, bool user, dnnl_memory_desc_t *x,
                       dnnl_memory_desc_t *w, dnnl_memory_desc_t *b,
                       dnnl_memory_desc_t *y)
{
    int64_t xd[] = {st->n, st->d}, wd[] = {st->m, st->d}, yd[] = {st->n, st->m};
    *x = dsv_odn_md(2, xd, user ? dnnl_ab : dnnl_format_tag_any);
    *w = dsv_odn_md(2, wd, user ? dnnl_ba : dnnl_format_tag_any);
    *b = dsv_odn_md(1, &st->m, dnnl_a);
    *y = dsv_odn_md(2, yd, user ? dnnl_ab : dnnl_format_tag_any);
}

/* The tuned implementation of one step (0 forward, 1 backward data,
 * 2 backward weights). */
static dsv_status pick(affine_state *st, int step, dnnl_primitive_desc_t *pd,
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
    int64_t key[] = {DSV_OP_AFFINE, step, st->n, st->d, st->m, st->nthreads};
    return dsv_odn_pd_tuned(pd, od, hint, key, 6, st->stream, args[step],
                            step == 1 ? 3 : 4, what);
}

static dsv_status affine_build(affine_state *st)
{
    dnnl_engine_t eng;
    dnnl_memory_desc_t x, w, b, y;
    dnnl_inner_product_desc_t ipd;
    dsv_status s;
    affine_mds(st, false, &x, &w, &b, &y);
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&st->stream, eng,
                                               dnnl_stream_default_flags),
                            "affine: stream")) ||
        (s = dsv_odn_status(dnnl_inner_product_forward_desc_init(
                                &ipd, dnnl_forward_training, &x, &w, &b, &y),
                            "affine: forward descriptor")))
        return s;
    return pick(st, 0, &st->fwd_pd, &ipd, NULL, "affine: forward");
}

static dsv_status affine_build_fwd(affine_state *st)
{
    const_dnnl_primitive_desc_t pd = st->fwd_pd;
    dnnl_memory_desc_t ux, uw, ub, uy;
    dsv_status s;
    affine_mds(st, true, &ux, &uw, &ub, &uy);
    if ((s = dsv_odn_prim_make(&st->fwd, pd, "affine: forward primitive")) ||
        (s = dsv_odn_edge_make(&st->f_x, &ux, q(pd, dnnl_query_src_md, 0), true, "affine: x")) ||
        (s = dsv_odn_edge_make(&st->f_w, &uw, q(pd, dnnl_query_weights_md, 0), true, "affine: w")) ||
        (s = dsv_odn_edge_make(&st->f_b, &ub, q(pd, dnnl_query_weights_md, 1), true, "affine: b")) ||
        (s = dsv_odn_edge_make(&st->f_y, &uy, q(pd, dnnl_query_dst_md, 0), false, "affine: out")))
        return s;
    st->fwd_ready = true;
    return DSV_OK;
}

static dsv_status affine_build_bwd(affine_state *st)
{
    dnnl_memory_desc_t x, w, b, y, ux, uw, ub, uy;
    dnnl_inner_product_desc_t dd, wd;
    dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
    dsv_status s;
    affine_mds(st, false, &x, &w, &b, &y);
    affine_mds(st, true, &ux, &uw, &ub, &uy);
    if ((s = dsv_odn_status(dnnl_inner_product_backward_data_desc_init(&dd, &x, &w, &y),
                            "affine: backward data descriptor")) ||
        (s = pick(st, 1, &dpd, &dd, st->fwd_pd, "affine: backward data")) ||
        (s = dsv_odn_prim_make(&st->bwd_d, dpd, "affine: backward data primitive")) ||
        (s = dsv_odn_edge_make(&st->d_dy, &uy, q(dpd, dnnl_query_diff_dst_md, 0), true, "affine: dout")) ||
        (s = dsv_odn_edge_make(&st->d_w, &uw, q(dpd, dnnl_query_weights_md, 0), true, "affine: w")) ||
        (s = dsv_odn_edge_make(&st->d_dx, &ux, q(dpd, dnnl_query_diff_src_md, 0), false, "affine: dx")))
        goto out;
    if ((s = dsv_odn_status(dnnl_inner_product_backward_weights_desc_init(&wd, &x, &w, &b, &y),
                            "affine: backward weights descriptor")) ||
        (s = pick(st, 2, &wpd, &wd, st->fwd_pd, "affine: backward weights")) ||
        (s = dsv_odn_prim_make(&st->bwd_w, wpd, "affine: backward weights primitive")) ||
        (s = dsv_odn_edge_make(&st->w_x, &ux, q(wpd, dnnl_query_src_md, 0), true, "affine: x")) ||
        (s = dsv_odn_edge_make(&st->w_dy, &uy, q(wpd, dnnl_query_diff_dst_md, 0), true, "affine: dout")) ||
        (s = dsv_odn_edge_make(&st->w_dw, &uw, q(wpd, dnnl_query_diff_weights_md, 0), false, "affine: dw")) ||
        (s = dsv_odn_edge_make(&st->w_db, &ub, q(wpd, dnnl_query_diff_weights_md, 1), false, "affine: db")))
        goto out;
    st->bwd_ready = true;
out:
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    return s;
}

static dsv_status affine_state_get(dsv_call *c, bool backward, affine_state **out)
{
    int64_t n = c->x->shape[0], d = dsv_tensor_row_size(c->x), m = c->w->shape[1];
    int nthreads = dsv_odn_nthreads(c);
    *out = NULL;

    affine_state *st = c->state ? c->state->ptr : NULL;
    if (st && st->base.op != DSV_OP_AFFINE) {
        dsv_odn_state_free(st);
        c->state->ptr = st = NULL;
    }
    if (st && (st->n != n || st->d != d || st->m != m || st->nthreads != nthreads))
        affine_release(st);
    if (!st) {
        st = dsv_alloc(sizeof(*st));
        if (!st)
            return dsv_error(DSV_NOMEM, "affine: out of memory for the onednn state");
        memset(st, 0, sizeof(*st));
        st->base.op = DSV_OP_AFFINE;
        st->base.free = affine_free;
        if (c->state)
            c->state->ptr = st;
    }
    *out = st;

    dsv_status s = DSV_OK;
    int saved = dsv_odn_threads_begin(nthreads);
    if (!st->stream) {
        st->n = n, st->d = d, st->m = m, st->nthreads = nthreads;
        s = affine_build(st);
    }
    if (!s && !backward && !st->fwd_ready)
        s = affine_build_fwd(st);
    if (!s && backward && !st->bwd_ready)
        s = affine_build_bwd(st);
    dsv_odn_threads_end(saved);
    if (s)
        affine_release(st);
    return s;
}

static void affine_state_done(dsv_call *c, affine_state *st)
{
    if (st && !c->state)
        affine_free(&st->base);
}

bool dsv_odn_affine_supports(const dsv_call *c, bool backward)
{
    (void)backward;
    return c->x->dtype == DSV_F32;
}

dsv_status dsv_odn_affine_forward(dsv_call *c)
{
    affine_state *st;
    dsv_status s = affine_state_get(c, false, &st);
    if (s)
        goto out;
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
        (s = dsv_odn_prim_run(&st->fwd, st->stream, 4, args, "affine: forward")) ||
        (s = dsv_odn_edge_out(&st->f_y, st->stream)))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "affine: forward wait");
out:
    affine_state_done(c, st);
    return s;
}

static dsv_status affine_backward_data(dsv_call *c, affine_state *st)
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
        (s = dsv_odn_prim_run(&st->bwd_d, st->stream, 3, args, "affine: backward data")))
        return s;
    return dsv_odn_edge_out(&st->d_dx, st->stream);
}

static dsv_status affine_backward_weights(dsv_call *c, affine_state *st)
{
    void *dw = c->dw ? c->dw->data : NULL, *db = c->db ? c->db->data : NULL;
    if (!dw && !st->dw_buf && !(st->dw_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->w))))
        return dsv_error(DSV_NOMEM, "affine: out of memory");
    if (!db && !st->db_buf && !(st->db_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->b))))
        return dsv_error(DSV_NOMEM, "affine: out of memory");
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->w_x)},
        {DNNL_ARG_DIFF_DST, dsv_odn_edge_mem(&st->w_dy)},
        {DNNL_ARG_DIFF_WEIGHTS, dsv_odn_edge_mem(&st->w_dw)},
        {DNNL_ARG_DIFF_BIAS, dsv_odn_edge_mem(&st->w_db)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&st->w_x, st->stream, c->x->data)) ||
        (s = dsv_odn_edge_in(&st->w_dy, st->stream, c->dout->data)) ||
        (s = dsv_odn_edge_in(&st->w_dw, st->stream, dw ? dw : st->dw_buf)) ||
        (s = dsv_odn_edge_in(&st->w_db, st->stream, db ? db : st->db_buf)) ||
        (s = dsv_odn_prim_run(&st->bwd_w, st->stream, 4, args, "affine: backward weights")))
        return s;
    if (dw && (s = dsv_odn_edge_out(&st->w_dw, st->stream)))
        return s;
    return db ? dsv_odn_edge_out(&st->w_db, st->stream) : DSV_OK;
}

dsv_status dsv_odn_affine_backward(dsv_call *c)
{
    if (!c->dx && !c->dw && !c->db)
        return DSV_OK;
    affine_state *st;
    dsv_status s = affine_state_get(c, true, &st);
    if (s)
        goto out;
    if (c->dx && (s = affine_backward_data(c, st)))
        goto out;
    if ((c->dw || c->db) && (s = affine_backward_weights(c, st)))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "affine: backward wait");
out:
    affine_state_done(c, st);
    return s;
}
