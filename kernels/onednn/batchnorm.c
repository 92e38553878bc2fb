/*
 * Batch normalization on oneDNN: batchnorm on x (N, D) (oneDNN's `nc`) and
 * spatial_batchnorm on x (N, C, H, W), forward and backward, in train mode
 * (batch statistics) and test mode (the running statistics, flag
 * dnnl_use_global_stats, forward_inference). gamma and beta are passed as separate tensors
 * (dnnl_use_scale | dnnl_use_shift), used in place.
 *
 * Layout: on plain nchw oneDNN 2.6 has only its ncsp C++ kernel, which is
 * slower than its JIT kernel even counting the reorders the JIT kernel's
 * nChw16c or nChw8c layout needs at the edges (nhwc's reorders cost more
 * still; bench/RESULTS.md, "Kernel notes"). So spatial batch norm runs on the
 * blocked layout this CPU's JIT kernel takes, when the block divides C (no
 * padded channels to reorder), else on nchw; the implementation is then
 * chosen by timing the candidates once per configuration.
 *
 * Semantics are the naive kernel's: biased batch variance; in train mode the
 * forward updates running = momentum * running + (1 - momentum) * batch stat
 * (done here, in double, from oneDNN's batch mean and variance); backward in
 * train mode is the full gradient through the batch statistics, in test mode
 * the gradient of the fixed affine map; backward never touches the running
 * statistics and overwrites dx, dgamma (dw) and dbeta (db).
 *
 * What must stay true:
 *  - the batch statistics in the state (and, in a blocked layout, the copy
 *    of x) belong to the input recorded with them (pointer and a fingerprint
 *    of the values); a train-mode backward recomputes them with the forward
 *    when its x is not that input, so it also works with no prior forward;
 *  - the state key (shape, eps, thread count) covers what the primitives
 *    were built for; the node's slot keeps a state per key (common.h).
 *    Train and test mode each have their own primitives in the one state;
 *  - one state runs on one thread at a time.
 */
#include <string.h>

#include "common.h"

/* The primitives of one mode. */
typedef struct bn_mode {
    dnnl_primitive_desc_t fwd_pd; /* the backward's hint */
    dsv_odn_prim fwd, bwd;
    bool bwd_ready;
} bn_mode;

typedef struct bn_state {
    dsv_odn_state base;
    /* key */
    int ndims;
    int64_t dims[4];
    float eps;
    int nthreads;

    dnnl_stream_t stream;
    dnnl_memory_desc_t layout; /* of x, y, dy, dx inside the primitives */
    bn_mode mode[2]; /* [0] test, [1] train */
    /* the caller's x, out, dout, dx, with reorders when the layout differs */
    dsv_odn_edge x, y, dy, dx;
    /* wrappers of the caller's (or the state's) vectors, rebound every call */
    dnnl_memory_t gamma, beta, dgamma, dbeta, mean, var;
    float *stats; /* (4, C): batch mean, batch variance, unwanted dgamma, dbeta */
    float *tmp;   /* like x (plain layout only): an output nobody asked for */

    /* which input the batch statistics were computed from; x_kept: x's
       reordered copy is still that input's */
    bool stats_valid, x_kept;
    const void *stats_x;
    uint32_t stats_sum;
} bn_state;

static int64_t bn_channels(const bn_state *st) { return st->dims[1]; }

static int64_t bn_numel(const bn_state *st)
{
    int64_t n = 1;
    for (int i = 0; i < st->ndims; i++)
        n *= st->dims[i];
    return n;
}

static void bn_release(bn_state *st)
{
    for (int m = 0; m < 2; m++) {
        dsv_odn_prim_free(&st->mode[m].fwd);
        dsv_odn_prim_free(&st->mode[m].bwd);
        if (st->mode[m].fwd_pd)
            dnnl_primitive_desc_destroy(st->mode[m].fwd_pd);
    }
    dsv_odn_edge_free(&st->x);
    dsv_odn_edge_free(&st->y);
    dsv_odn_edge_free(&st->dy);
    dsv_odn_edge_free(&st->dx);
    dnnl_memory_t *mems[] = {&st->gamma,  &st->beta, &st->dgamma,
                             &st->dbeta,  &st->mean, &st->var};
    for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++)
        if (*mems[i])
            dnnl_memory_destroy(*mems[i]);
    if (st->stream)
        dnnl_stream_destroy(st->stream);
    dsv_free(st->stats);
    dsv_free(st->tmp);
    dsv_odn_state base = st->base;
    memset(st, 0, sizeof(*st));
    st->base = base;
}

static void bn_free(dsv_odn_state *base)
{
    bn_state *st = (bn_state *)base;
    bn_release(st);
    dsv_free(st);
}

static unsigned bn_flags(bool train)
{
    return dnnl_use_scale | dnnl_use_shift | (train ? 0u : dnnl_use_global_stats);
}

static dnnl_memory_desc_t user_md(const bn_state *st)
{
    return dsv_odn_md(st->ndims, st->dims, st->ndims == 2 ? dnnl_ab : dnnl_abcd);
}

/* The first blocked layout that this CPU's JIT batch norm takes and whose
 * block divides C, else the user's (see the top of the file). */
static dsv_status choose_layout(bn_state *st)
{
    static const struct {
        dnnl_format_tag_t tag;
        int64_t block;
    } blocked[] = {{dnnl_aBcd16b, 16}, {dnnl_aBcd8b, 8}};
    st->layout = user_md(st);
    if (st->ndims != 4)
        return DSV_OK;
    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
        if (bn_channels(st) % blocked[i].block)
            continue;
        dnnl_memory_desc_t md = dsv_odn_md(4, st->dims, blocked[i].tag);
        dnnl_batch_normalization_desc_t bd;
        dnnl_primitive_desc_t pd;
        dsv_status s;
        if ((s = dsv_odn_status(dnnl_batch_normalization_forward_desc_init(
                                    &bd, dnnl_forward_training, &md, st->eps,
                                    bn_flags(true)),
                                "batchnorm: forward descriptor")) ||
            (s = dsv_odn_pd_create(&pd, &bd, NULL, "bnorm_jit", "batchnorm: layout")))
            return s;
        bool jit = !strncmp(dsv_odn_impl_name(pd), "bnorm_jit", 9);
        dnnl_primitive_desc_destroy(pd);
        if (jit) {
            st->layout = md;
            break;
        }
    }
    return DSV_OK;
}

/* The tuned implementation of one step (0 forward, 1 backward) of one mode;
 * `what` names it in messages. */
static dsv_status pick(bn_state *st, bool backward, bool train,
                       dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t od,
                       const_dnnl_primitive_desc_t hint, const char *what)
{
    static const dsv_odn_argq fwd_args[2][6] = {
        {{DNNL_ARG_SRC, dnnl_query_src_md, 0},
         {DNNL_ARG_DST, dnnl_query_dst_md, 0},
         {DNNL_ARG_SCALE, dnnl_query_weights_md, 0},
         {DNNL_ARG_SHIFT, dnnl_query_weights_md, 0},
         {DNNL_ARG_MEAN, dnnl_query_src_md, 1},
         {DNNL_ARG_VARIANCE, dnnl_query_src_md, 2}},
        {{DNNL_ARG_SRC, dnnl_query_src_md, 0},
         {DNNL_ARG_DST, dnnl_query_dst_md, 0},
         {DNNL_ARG_SCALE, dnnl_query_weights_md, 0},
         {DNNL_ARG_SHIFT, dnnl_query_weights_md, 0},
         {DNNL_ARG_MEAN, dnnl_query_dst_md, 1},
         {DNNL_ARG_VARIANCE, dnnl_query_dst_md, 2}},
    };
    static const dsv_odn_argq bwd_args[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0},
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0},
        {DNNL_ARG_SCALE, dnnl_query_weights_md, 0},
        {DNNL_ARG_SHIFT, dnnl_query_weights_md, 0},
        {DNNL_ARG_MEAN, dnnl_query_src_md, 1},
        {DNNL_ARG_VARIANCE, dnnl_query_src_md, 2},
        {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0},
        {DNNL_ARG_DIFF_SCALE, dnnl_query_diff_weights_md, 0},
        {DNNL_ARG_DIFF_SHIFT, dnnl_query_diff_weights_md, 0},
    };
    int64_t key[] = {st->base.op, 2 * backward + train, st->dims[0], st->dims[1],
                     st->ndims == 4 ? st->dims[2] : 1, st->ndims == 4 ? st->dims[3] : 1,
                     st->nthreads};
    return dsv_odn_pd_tuned(pd, od, hint, key, 7, st->stream,
                            backward ? bwd_args : fwd_args[train],
                            backward ? 9 : 6, what);
}

/* A memory object over the caller's layout, bound to a buffer per call. */
static dsv_status user_mem(dnnl_memory_t *m, const dnnl_memory_desc_t *md)
{
    dnnl_engine_t eng;
    dsv_status s = dsv_odn_engine(&eng);
    return s ? s
             : dsv_odn_status(dnnl_memory_create(m, md, eng, DNNL_MEMORY_NONE),
                              "batchnorm: memory");
}

/* Stream, layout, edges, memory wrappers and the statistics buffer. */
static dsv_status bn_build(bn_state *st)
{
    dnnl_engine_t eng;
    dnnl_memory_desc_t md = user_md(st);
    int64_t C = bn_channels(st);
    dnnl_memory_desc_t cmd = dsv_odn_md(1, &C, dnnl_a);
    dsv_status s;
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_stream_create(&st->stream, eng,
                                               dnnl_stream_default_flags),
                            "batchnorm: stream")) ||
        (s = choose_layout(st)) ||
        (s = dsv_odn_edge_make(&st->x, &md, &st->layout, true, "batchnorm: x")) ||
        (s = dsv_odn_edge_make(&st->y, &md, &st->layout, false, "batchnorm: out")) ||
        (s = dsv_odn_edge_make(&st->dy, &md, &st->layout, true, "batchnorm: dout")) ||
        (s = dsv_odn_edge_make(&st->dx, &md, &st->layout, false, "batchnorm: dx")))
        return s;
    dnnl_memory_t *cmems[] = {&st->gamma, &st->beta, &st->dgamma,
                              &st->dbeta, &st->mean, &st->var};
    for (size_t i = 0; i < sizeof(cmems) / sizeof(cmems[0]); i++)
        if ((s = user_mem(cmems[i], &cmd)))
            return s;
    st->stats = dsv_alloc(sizeof(float) * 4 * (size_t)C);
    if (!st->stats)
        return dsv_error(DSV_NOMEM, "batchnorm: out of memory for statistics");
    return DSV_OK;
}

static dsv_status bn_build_fwd(bn_state *st, bool train)
{
    dnnl_memory_desc_t md = st->layout;
    dnnl_batch_normalization_desc_t bd;
    bn_mode *m = &st->mode[train];
    dsv_status s;
    /* test mode: forward_inference, which is also the test-mode backward's
       hint (global statistics need no workspace) */
    if ((s = dsv_odn_status(dnnl_batch_normalization_forward_desc_init(
                                &bd, train ? dnnl_forward_training : dnnl_forward_inference,
                                &md, st->eps, bn_flags(train)),
                            "batchnorm: forward descriptor")) ||
        (s = pick(st, false, train, &m->fwd_pd, &bd, NULL, "batchnorm: forward")) ||
        (s = dsv_odn_prim_make(&m->fwd, m->fwd_pd, "batchnorm: forward primitive")))
        return s;
    return DSV_OK;
}

static dsv_status bn_build_bwd(bn_state *st, bool train)
{
    dnnl_memory_desc_t md = st->layout;
    dnnl_batch_normalization_desc_t bd;
    dnnl_primitive_desc_t bpd = NULL;
    bn_mode *m = &st->mode[train];
    dsv_status s;
    if ((s = dsv_odn_status(dnnl_batch_normalization_backward_desc_init(
                                &bd, dnnl_backward, &md, &md, st->eps,
                                bn_flags(train)),
                            "batchnorm: backward descriptor")) ||
        (s = pick(st, true, train, &bpd, &bd, m->fwd_pd, "batchnorm: backward")) ||
        (s = dsv_odn_prim_make(&m->bwd, bpd, "batchnorm: backward primitive")))
        goto out;
    m->bwd_ready = true;
out:
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return s;
}

static dsv_status bn_state_get(dsv_call *c, bool backward, bn_state **out)
{
    bn_state key;
    memset(&key, 0, sizeof(key));
    key.ndims = c->x->ndim;
    memcpy(key.dims, c->x->shape, sizeof(*key.dims) * (size_t)key.ndims);
    key.eps = (float)c->p.eps;
    key.nthreads = dsv_odn_nthreads(c);
    bool train = c->p.train;
    *out = NULL;

    dsv_odn_state *base;
    /* train and test mode share a state (bn_mode) */
    uint32_t eps_bits;
    memcpy(&eps_bits, &key.eps, sizeof(eps_bits));
    int64_t k[] = {key.ndims, key.dims[0], key.dims[1], key.dims[2], key.dims[3],
                   eps_bits, key.nthreads};
    dsv_status s = dsv_odn_state_get(c, c->op, sizeof(bn_state), bn_free, k, 7, &base);
    if (s)
        return s;
    bn_state *st = (bn_state *)base;
    if (st->ndims != key.ndims || memcmp(st->dims, key.dims, sizeof(key.dims)) ||
        st->eps != key.eps || st->nthreads != key.nthreads)
        bn_release(st);
    *out = st;

    int saved = dsv_odn_threads_begin(key.nthreads);
    if (!st->stream) {
        st->ndims = key.ndims;
        memcpy(st->dims, key.dims, sizeof(key.dims));
        st->eps = key.eps, st->nthreads = key.nthreads;
        s = bn_build(st);
    }
    /* a backward needs the forward's pd (its hint) and, in train mode, may
       run the forward for its statistics */
    if (!s && !st->mode[train].fwd.p)
        s = bn_build_fwd(st, train);
    if (!s && backward && !st->mode[train].bwd_ready)
        s = bn_build_bwd(st, train);
    dsv_odn_threads_end(saved);
    if (s)
        bn_release(st);
    return s;
}

static void bn_state_done(dsv_call *c, bn_state *st)
{
    if (st && !c->state)
        bn_free(&st->base);
}

static dsv_status bind(dnnl_memory_t m, const void *data)
{
    return dsv_odn_status(dnnl_memory_set_data_handle(m, (void *)data),
                          "batchnorm: binding a buffer");
}

/* Where an output nobody asked for goes: the edge's own buffer in a blocked
 * layout (the reorder out is skipped), else the state's buffer like x. */
static dsv_status bn_discard(bn_state *st, dsv_odn_edge *e)
{
    if (e->inner)
        return DSV_OK;
    if (!st->tmp)
        st->tmp = dsv_alloc(sizeof(float) * (size_t)bn_numel(st));
    if (!st->tmp)
        return dsv_error(DSV_NOMEM, "batchnorm: out of memory for a buffer");
    return bind(e->user, st->tmp);
}

/* Runs the forward of c's mode into y (NULL: only the statistics are
 * wanted); in train mode the batch statistics go to st->stats and are
 * recorded as x's. */
static dsv_status bn_run_forward(bn_state *st, const dsv_call *c, void *y)
{
    bool train = c->p.train;
    int64_t C = bn_channels(st);
    dsv_status s;
    st->stats_valid = st->stats_valid && !train;
    st->x_kept = false;
    dnnl_exec_arg_t args[7] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->x)},
        {DNNL_ARG_DST, dsv_odn_edge_mem(&st->y)},
        {DNNL_ARG_SCALE, st->gamma}, {DNNL_ARG_SHIFT, st->beta},
        {DNNL_ARG_MEAN, st->mean}, {DNNL_ARG_VARIANCE, st->var},
    };
    if ((s = dsv_odn_edge_in(&st->x, st->stream, c->x->data)) ||
        (s = y ? dsv_odn_edge_in(&st->y, st->stream, y) : bn_discard(st, &st->y)) ||
        (s = bind(st->gamma, c->w->data)) || (s = bind(st->beta, c->b->data)) ||
        (s = bind(st->mean, train ? st->stats : c->running_mean->data)) ||
        (s = bind(st->var, train ? st->stats + C : c->running_var->data)) ||
        (s = dsv_odn_prim_run(&st->mode[train].fwd, st->stream, 6, args,
                              "batchnorm: forward")) ||
        (y && (s = dsv_odn_edge_out(&st->y, st->stream))) ||
        (s = dsv_odn_status(dnnl_stream_wait(st->stream), "batchnorm: forward wait")))
        return s;
    if (train) {
        st->stats_valid = st->x_kept = true;
        st->stats_x = c->x->data;
        st->stats_sum = dsv_odn_fingerprint(c->x->data, dsv_tensor_numel(c->x),
                                            st->nthreads);
    }
    return DSV_OK;
}

bool dsv_odn_batchnorm_supports(const dsv_call *c, bool backward)
{
    (void)backward;
    return c->x->dtype == DSV_F32 && (c->x->ndim == 2 || c->x->ndim == 4);
}

dsv_status dsv_odn_batchnorm_forward(dsv_call *c)
{
    bn_state *st;
    dsv_status s = bn_state_get(c, false, &st);
    if (s || (s = bn_run_forward(st, c, c->out->data)))
        goto out;
    if (c->p.train) {
        const double mo = c->p.momentum;
        const float *mean = st->stats, *var = st->stats + bn_channels(st);
        if (c->running_mean) {
            float *rm = c->running_mean->data;
            for (int64_t ch = 0; ch < bn_channels(st); ch++)
                rm[ch] = (float)(mo * rm[ch] + (1 - mo) * mean[ch]);
        }
        if (c->running_var) {
            float *rv = c->running_var->data;
            for (int64_t ch = 0; ch < bn_channels(st); ch++)
                rv[ch] = (float)(mo * rv[ch] + (1 - mo) * var[ch]);
        }
    }
out:
    if (s && st)
        st->stats_valid = false;
    bn_state_done(c, st);
    return s;
}

dsv_status dsv_odn_batchnorm_backward(dsv_call *c)
{
    if (!c->dx && !c->dw && !c->db)
        return DSV_OK;
    bn_state *st;
    dsv_status s = bn_state_get(c, true, &st);
    if (s)
        goto out;
    bool train = c->p.train;
    int64_t C = bn_channels(st);
    bool stale = train && (!st->stats_valid || st->stats_x != c->x->data ||
                           st->stats_sum != dsv_odn_fingerprint(c->x->data,
                                                                dsv_tensor_numel(c->x),
                                                                st->nthreads));
    /* the batch statistics of this x, from the forward */
    if (stale && (s = bn_run_forward(st, c, NULL)))
        goto out;
    dnnl_exec_arg_t args[10] = {
        {DNNL_ARG_SRC, dsv_odn_edge_mem(&st->x)},
        {DNNL_ARG_DIFF_DST, dsv_odn_edge_mem(&st->dy)},
        {DNNL_ARG_SCALE, st->gamma},
        {DNNL_ARG_SHIFT, st->beta},
        {DNNL_ARG_MEAN, st->mean},
        {DNNL_ARG_VARIANCE, st->var},
        {DNNL_ARG_DIFF_SRC, dsv_odn_edge_mem(&st->dx)},
        {DNNL_ARG_DIFF_SCALE, st->dgamma},
        {DNNL_ARG_DIFF_SHIFT, st->dbeta},
    };
    /* x's copy from the train forward is reused when it is this x's */
    bool reuse = train && st->x_kept;
    st->x_kept = reuse;
    if ((s = reuse ? bind(st->x.user, c->x->data)
                   : dsv_odn_edge_in(&st->x, st->stream, c->x->data)) ||
        (s = dsv_odn_edge_in(&st->dy, st->stream, c->dout->data)) ||
        (s = c->dx ? dsv_odn_edge_in(&st->dx, st->stream, c->dx->data)
                   : bn_discard(st, &st->dx)) ||
        (s = bind(st->gamma, c->w->data)) || (s = bind(st->beta, c->b->data)) ||
        (s = bind(st->mean, train ? st->stats : c->running_mean->data)) ||
        (s = bind(st->var, train ? st->stats + C : c->running_var->data)) ||
        (s = bind(st->dgamma, c->dw ? c->dw->data : st->stats + 2 * C)) ||
        (s = bind(st->dbeta, c->db ? c->db->data : st->stats + 3 * C)) ||
        (s = dsv_odn_prim_run(&st->mode[train].bwd, st->stream, 9, args,
                              "batchnorm: backward")) ||
        (c->dx && (s = dsv_odn_edge_out(&st->dx, st->stream))))
        goto out;
    s = dsv_odn_status(dnnl_stream_wait(st->stream), "batchnorm: backward wait");
out:
    if (s && st)
        st->stats_valid = false;
    bn_state_done(c, st);
    return s;
}
