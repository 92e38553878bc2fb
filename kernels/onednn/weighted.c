/*
 * The execution shared by the layers with weights and bias (conv.c,
 * affine.c): a forward primitive {x, w, b -> y}, a backward-data primitive
 * {dy, w -> dx} and a backward-weights primitive {x, dy -> dw, db}, each the
 * tuned implementation for the op's key (dsv_odn_pd_tuned), fed through
 * edges that reorder the caller's plain buffers on every call, except the
 * weights: their reordered copy is kept while the caller's values stay the
 * same (dsv_odn_edge_in_cached).
 *
 * The ops keep what differs: their state keys, user layouts and operation
 * descriptors, and conv's reuse of the reordered dout.
 *
 * What must stay true: backward overwrites dx, dw and db and needs no prior
 * forward; a dsv_odn_weighted is run by one thread at a time (its stream and
 * scratchpads are its own); its primitives are made between the op's
 * dsv_odn_threads_begin/end.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

enum { MSG_FWD, MSG_FWD_WAIT, MSG_BWD_D, MSG_BWD_W, MSG_BWD_WAIT, MSG_COUNT };

static const char *const msg_steps[] = {"forward", "forward wait", "backward data",
                                        "backward weights", "backward wait"};
_Static_assert(sizeof(msg_steps) / sizeof(msg_steps[0]) == MSG_COUNT,
               "one message per step");
_Static_assert(MSG_COUNT <= DSV_ODN_WEIGHTED_NMSG, "room for the messages");

void dsv_odn_weighted_release(dsv_odn_weighted *wl)
{
    dsv_odn_edge *edges[] = {&wl->f_x, &wl->f_w, &wl->f_b, &wl->f_y, &wl->d_dy,
                             &wl->d_w, &wl->d_dx, &wl->w_x, &wl->w_dy, &wl->w_dw,
                             &wl->w_db};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        dsv_odn_edge_free(edges[i]);
    dsv_odn_prim_free(&wl->fwd);
    dsv_odn_prim_free(&wl->bwd_d);
    dsv_odn_prim_free(&wl->bwd_w);
    if (wl->fwd_pd)
        dnnl_primitive_desc_destroy(wl->fwd_pd);
    if (wl->stream)
        dnnl_stream_destroy(wl->stream);
    dsv_free(wl->dw_buf);
    dsv_free(wl->db_buf);
    memset(wl, 0, sizeof(*wl));
}

/* The tuned implementation of one step (0 forward, 1 backward data,
 * 2 backward weights); the step is key[1]. */
static dsv_status pick(dsv_odn_weighted *wl, int step, dnnl_primitive_desc_t *pd,
                       const_dnnl_op_desc_t od, const_dnnl_primitive_desc_t hint)
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
    static const int msg[3] = {MSG_FWD, MSG_BWD_D, MSG_BWD_W};
    wl->key[1] = step;
    return dsv_odn_pd_tuned(pd, od, hint, wl->key, wl->nkey, wl->stream, args[step],
                            step == 1 ? 3 : 4, wl->msg[msg[step]]);
}

dsv_status dsv_odn_weighted_build(dsv_odn_weighted *wl, const char *name,
                                  const int64_t *key, int nkey,
                                  const_dnnl_op_desc_t fwd)
{
    dnnl_engine_t eng;
    char what[48];
    dsv_status s;
    DSV_ASSERT(nkey >= 2 && nkey <= DSV_ODN_KEY_MAX);
    wl->name = name;
    memcpy(wl->key, key, sizeof(*key) * nkey);
    wl->nkey = nkey;
    for (int i = 0; i < MSG_COUNT; i++)
        snprintf(wl->msg[i], sizeof(wl->msg[i]), "%s: %s", name, msg_steps[i]);
    snprintf(what, sizeof(what), "%s: stream", name);
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&wl->stream, eng,
                                               dnnl_stream_default_flags),
                            what)))
        return s;
    return pick(wl, 0, &wl->fwd_pd, fwd, NULL);
}

/* The primitive of step `msg`, for "<name>: <step> primitive" errors. */
static dsv_status prim(const dsv_odn_weighted *wl, dsv_odn_prim *pr,
                       const_dnnl_primitive_desc_t pd, int msg)
{
    char what[64];
    snprintf(what, sizeof(what), "%s primitive", wl->msg[msg]);
    return dsv_odn_prim_make(pr, pd, what);
}

/* The edge between the user layout and the one pd wants for (q, index). */
static dsv_status edge(const dsv_odn_weighted *wl, dsv_odn_edge *e,
                       const dnnl_memory_desc_t *user, const_dnnl_primitive_desc_t pd,
                       dnnl_query_t q, int index, bool input, const char *tensor)
{
    char what[48];
    snprintf(what, sizeof(what), "%s: %s", wl->name, tensor);
    return dsv_odn_edge_make(e, user, dnnl_primitive_desc_query_md(pd, q, index),
                             input, what);
}

dsv_status dsv_odn_weighted_build_fwd(dsv_odn_weighted *wl,
                                      const dsv_odn_weighted_mds *u)
{
    const_dnnl_primitive_desc_t pd = wl->fwd_pd;
    dsv_status s;
    if ((s = prim(wl, &wl->fwd, pd, MSG_FWD)) ||
        (s = edge(wl, &wl->f_x, &u->x, pd, dnnl_query_src_md, 0, true, "x")) ||
        (s = edge(wl, &wl->f_w, &u->w, pd, dnnl_query_weights_md, 0, true, "w")) ||
        (s = edge(wl, &wl->f_b, &u->b, pd, dnnl_query_weights_md, 1, true, "b")) ||
        (s = edge(wl, &wl->f_y, &u->y, pd, dnnl_query_dst_md, 0, false, "out")))
        return s;
    wl->fwd_ready = true;
    return DSV_OK;
}

dsv_status dsv_odn_weighted_build_bwd(dsv_odn_weighted *wl,
                                      const dsv_odn_weighted_mds *u,
                                      const_dnnl_op_desc_t data,
                                      const_dnnl_op_desc_t weights)
{
    dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
    dsv_status s;
    if ((s = pick(wl, 1, &dpd, data, wl->fwd_pd)) ||
        (s = prim(wl, &wl->bwd_d, dpd, MSG_BWD_D)) ||
        (s = edge(wl, &wl->d_dy, &u->y, dpd, dnnl_query_diff_dst_md, 0, true, "dout")) ||
        (s = edge(wl, &wl->d_w, &u->w, dpd, dnnl_query_weights_md, 0, true, "w")) ||
        (s = edge(wl, &wl->d_dx, &u->x, dpd, dnnl_query_diff_src_md, 0, false, "dx")))
        goto destroy_pds;
    if ((s = pick(wl, 2, &wpd, weights, wl->fwd_pd)) ||
        (s = prim(wl, &wl->bwd_w, wpd, MSG_BWD_W)) ||
        (s = edge(wl, &wl->w_x, &u->x, wpd, dnnl_query_src_md, 0, true, "x")) ||
        (s = edge(wl, &wl->w_dy, &u->y, wpd, dnnl_query_diff_dst_md, 0, true, "dout")) ||
        (s = edge(wl, &wl->w_dw, &u->w, wpd, dnnl_query_diff_weights_md, 0, false, "dw")) ||
        (s = edge(wl, &wl->w_db, &u->b, wpd, dnnl_query_diff_weights_md, 1, false, "db")))
        goto destroy_pds;
    wl->bwd_ready = true;
destroy_pds:
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    return s;
}

dsv_status dsv_odn_weighted_forward(dsv_odn_weighted *wl, const dsv_call *c)
{
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&wl->f_x)},
        {DNNL_ARG_WEIGHTS, dsv_odn_edge_mem(&wl->f_w)},
        {DNNL_ARG_BIAS, dsv_odn_edge_mem(&wl->f_b)},
        {DNNL_ARG_DST, dsv_odn_edge_mem(&wl->f_y)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&wl->f_x, wl->stream, c->x->data)) ||
        (s = dsv_odn_edge_in_cached(&wl->f_w, wl->stream, c->w->data,
                                    dsv_tensor_numel(c->w), dsv_odn_nthreads(c))) ||
        (s = dsv_odn_edge_in(&wl->f_b, wl->stream, c->b->data)) ||
        (s = dsv_odn_edge_in(&wl->f_y, wl->stream, c->out->data)) ||
        (s = dsv_odn_prim_run(&wl->fwd, wl->stream, 4, args, wl->msg[MSG_FWD])) ||
        (s = dsv_odn_edge_out(&wl->f_y, wl->stream)))
        return s;
    return dsv_odn_status(dnnl_stream_wait(wl->stream), wl->msg[MSG_FWD_WAIT]);
}

static dsv_status backward_data(dsv_odn_weighted *wl, const dsv_call *c)
{
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, dsv_odn_edge_mem(&wl->d_dy)},
        {DNNL_ARG_WEIGHTS, dsv_odn_edge_mem(&wl->d_w)},
        {DNNL_ARG_DIFF_SRC, dsv_odn_edge_mem(&wl->d_dx)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&wl->d_dy, wl->stream, c->dout->data)) ||
        (s = dsv_odn_edge_in_cached(&wl->d_w, wl->stream, c->w->data,
                                    dsv_tensor_numel(c->w), dsv_odn_nthreads(c))) ||
        (s = dsv_odn_edge_in(&wl->d_dx, wl->stream, c->dx->data)) ||
        (s = dsv_odn_prim_run(&wl->bwd_d, wl->stream, 3, args, wl->msg[MSG_BWD_D])))
        return s;
    return dsv_odn_edge_out(&wl->d_dx, wl->stream);
}

/* dy: dout already in w_dy's layout, or NULL to reorder it here. */
static dsv_status backward_weights(dsv_odn_weighted *wl, const dsv_call *c,
                                   dnnl_memory_t dy)
{
    void *dw = c->dw ? c->dw->data : NULL, *db = c->db ? c->db->data : NULL;
    if (!dw && !wl->dw_buf && !(wl->dw_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->w))))
        return dsv_error(DSV_NOMEM, "%s: out of memory", wl->name);
    if (!db && !wl->db_buf && !(wl->db_buf = dsv_alloc(sizeof(float) * dsv_tensor_numel(c->b))))
        return dsv_error(DSV_NOMEM, "%s: out of memory", wl->name);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&wl->w_x)},
        {DNNL_ARG_DIFF_DST, dy ? dy : dsv_odn_edge_mem(&wl->w_dy)},
        {DNNL_ARG_DIFF_WEIGHTS, dsv_odn_edge_mem(&wl->w_dw)},
        {DNNL_ARG_DIFF_BIAS, dsv_odn_edge_mem(&wl->w_db)},
    };
    dsv_status s;
    if ((s = dsv_odn_edge_in(&wl->w_x, wl->stream, c->x->data)) ||
        (!dy && (s = dsv_odn_edge_in(&wl->w_dy, wl->stream, c->dout->data))) ||
        (s = dsv_odn_edge_in(&wl->w_dw, wl->stream, dw ? dw : wl->dw_buf)) ||
        (s = dsv_odn_edge_in(&wl->w_db, wl->stream, db ? db : wl->db_buf)) ||
        (s = dsv_odn_prim_run(&wl->bwd_w, wl->stream, 4, args, wl->msg[MSG_BWD_W])))
        return s;
    if (dw && (s = dsv_odn_edge_out(&wl->w_dw, wl->stream)))
        return s;
    return db ? dsv_odn_edge_out(&wl->w_db, wl->stream) : DSV_OK;
}

dsv_status dsv_odn_weighted_backward(dsv_odn_weighted *wl, const dsv_call *c,
                                     dnnl_memory_t dy)
{
    dsv_status s;
    if (c->dx && (s = backward_data(wl, c)))
        return s;
    if ((c->dw || c->db) && (s = backward_weights(wl, c, dy)))
        return s;
    return dsv_odn_status(dnnl_stream_wait(wl->stream), wl->msg[MSG_BWD_WAIT]);
}
