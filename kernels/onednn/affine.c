/*
 * Affine layer on oneDNN's inner product: forward, backward data, backward
 * weights + bias.
 *
 * x (N, d1..dk) is read as its (N, D) rows. The course's w is (D, M) row-major,
 * which is oneDNN's logical {M, D} weights with tag `ba`; oneDNN picks its own
 * layouts (format_tag_any) and the user's buffers are reordered at the edges
 * (the weights only when their values changed, see weighted.c). A test-mode
 * forward takes the caller's layouts instead: telling whether the weights
 * changed reads all of them, as much memory as the product itself reads at
 * batch 1, and its gemm reads `ba` as readily. The execution shared
 * with conv.c is in weighted.c.
 *
 * What must stay true: as in conv.c, the state key (N, D, M, thread count,
 * test-mode forward)
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
    /* a test-mode forward: forward_inference on the caller's layouts, no
       backward; it takes the implementation tuned for the training forward
       (the same key; oneDNN's first one when that does not apply to these
       layouts), so that an execution plan covers both */
    bool inference;

    dsv_odn_weighted wl;
} affine_state;

static void affine_release(affine_state *st)
{
    dsv_odn_weighted_release(&st->wl);
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

/* Descriptors: x {N, D}, w {M, D}, b {M}, y {N, M}; `user` gives the
 * caller's layouts, otherwise `any` (bias stays plain). */
static void affine_mds(const affine_state *st, bool user, dsv_odn_weighted_mds *md)
{
    int64_t xd[] = {st->n, st->d}, wd[] = {st->m, st->d}, yd[] = {st->n, st->m};
    md->x = dsv_odn_md(2, xd, user ? dnnl_ab : dnnl_format_tag_any);
    md->w = dsv_odn_md(2, wd, user ? dnnl_ba : dnnl_format_tag_any);
    md->b = dsv_odn_md(1, &st->m, dnnl_a);
    md->y = dsv_odn_md(2, yd, user ? dnnl_ab : dnnl_format_tag_any);
}

/* Stream and the tuned forward pd, the backward's hint. */
static dsv_status affine_build(affine_state *st)
{
    dsv_odn_weighted_mds a;
    dnnl_inner_product_desc_t ipd;
    dsv_status s;
    affine_mds(st, st->inference, &a);
    if ((s = dsv_odn_status(dnnl_inner_product_forward_desc_init(
                                &ipd, st->inference ? dnnl_forward_inference
                                                    : dnnl_forward_training,
                                &a.x, &a.w, &a.b, &a.y),
                            "affine: forward descriptor")))
        return s;
    int64_t key[] = {DSV_OP_AFFINE, 0, st->n, st->d, st->m, st->nthreads};
    return dsv_odn_weighted_build(&st->wl, "affine", key, 6, &ipd);
}

static dsv_status affine_build_bwd(affine_state *st)
{
    dsv_odn_weighted_mds a, u;
    dnnl_inner_product_desc_t dd, wd;
    dsv_status s;
    affine_mds(st, false, &a);
    affine_mds(st, true, &u);
    if ((s = dsv_odn_status(dnnl_inner_product_backward_data_desc_init(&dd, &a.x, &a.w, &a.y),
                            "affine: backward data descriptor")) ||
        (s = dsv_odn_status(dnnl_inner_product_backward_weights_desc_init(
                                &wd, &a.x, &a.w, &a.b, &a.y),
                            "affine: backward weights descriptor")))
        return s;
    return dsv_odn_weighted_build_bwd(&st->wl, &u, &dd, &wd);
}

static dsv_status affine_state_get(dsv_call *c, bool backward, affine_state **out)
{
    int64_t n = c->x->shape[0], d = dsv_tensor_row_size(c->x), m = c->w->shape[1];
    int nthreads = dsv_odn_nthreads(c);
    bool inference = !backward && !c->p.train;
    *out = NULL;

    dsv_odn_state *base;
    int64_t key[] = {n, d, m, nthreads, inference};
    dsv_status s = dsv_odn_state_get(c, DSV_OP_AFFINE, sizeof(affine_state),
                                     affine_free, key, 5, &base);
    if (s)
        return s;
    affine_state *st = (affine_state *)base;
    if (st->n != n || st->d != d || st->m != m || st->nthreads != nthreads ||
        st->inference != inference)
        affine_release(st);
    *out = st;

    int saved = dsv_odn_threads_begin(nthreads);
    if (!st->wl.stream) {
        st->n = n, st->d = d, st->m = m, st->nthreads = nthreads;
        st->inference = inference;
        s = affine_build(st);
    }
    if (!s && !backward && !st->wl.fwd_ready) {
        dsv_odn_weighted_mds u;
        affine_mds(st, true, &u);
        s = dsv_odn_weighted_build_fwd(&st->wl, &u);
    }
    if (!s && backward && !st->wl.bwd_ready)
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
    if (!s)
        s = dsv_odn_weighted_forward(&st->wl, c);
    affine_state_done(c, st);
    return s;
}

dsv_status dsv_odn_affine_backward(dsv_call *c)
{
    if (!c->dx && !c->dw && !c->db)
        return DSV_OK;
    affine_state *st;
    dsv_status s = affine_state_get(c, true, &st);
    if (!s)
        s = dsv_odn_weighted_backward(&st->wl, c, NULL);
    affine_state_done(c, st);
    return s;
}
