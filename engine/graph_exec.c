/*
 * Running a graph: forward and backward of every node under the layer
 * schedule (nodes in order, each kernel with the whole team) or the batch
 * schedule (the minibatch cut into one contiguous slice per thread, the
 * slices shared among the team; batch norm nodes of a training pass run on
 * the whole batch between two parallel regions, with all threads), the
 * training step, inference and the auto schedule's calibration.
 *
 * What must stay true: results do not depend on timing or on the schedule's
 * choice (per-thread losses and gradient blocks are summed in thread order);
 * a value read by several nodes gets the sum of their gradients; auto
 * calibration leaves parameters, buffers and the dropout step as it found
 * them. With data-parallel hooks (internal/dist.h) every process makes the
 * same hook calls in the same order: batch-statistics nodes sum through
 * dist.sum_stats, a node's parameter gradients are announced as soon as its
 * backward has run (layer schedule) or once the per-thread blocks are summed
 * (batch schedule), and grads_done ends every training pass.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "graph_priv.h"
#include "internal/backend_table.h"
#include "internal/rng.h"

/* ---- execution ---------------------------------------------------------------- */

/* What one thread (or the layer schedule) runs: rows [n0, n0 + nr) of the
 * batch, slot set `set`, parameter gradients into `grads`. */
typedef struct ctx {
    dsv_graph *g;
    const plan *pl;
    const dsv_tensor *x, *y;
    int64_t n0, nr;
    int nthreads, set;
    bool train;
    dsv_backend want;
    char *grads;
    double loss;
} ctx;

static dsv_tensor val_view(const ctx *c, dsv_value v, bool grad)
{
    const dsv_graph *g = c->g;
    const value *val = &g->vals[v];
    char *base = val->kind == VAL_INPUT
                     ? c->x->data
                     : c->pl->arena + (grad ? c->pl->grad_off[v] : c->pl->act_off[v]);
    int64_t shape[DSV_MAX_DIMS];
    memcpy(shape, val->shape, sizeof(shape));
    shape[0] = c->nr;
    return dsv_tensor_wrap(base + (size_t)(c->n0 * val->row) * g->esz, g->dtype,
                           val->ndim, shape);
}

static dsv_tensor tmp_view(const ctx *c, int i, int k)
{
    const dsv_graph *g = c->g;
    const value *val = &g->vals[g->nodes[i].in[k]];
    int64_t shape[DSV_MAX_DIMS];
    memcpy(shape, val->shape, sizeof(shape));
    shape[0] = c->nr;
    return dsv_tensor_wrap(c->pl->arena + c->pl->tmp_off[2 * i + k] +
                               (size_t)(c->n0 * val->row) * g->esz,
                           g->dtype, val->ndim, shape);
}

static dsv_tensor param_view(const dsv_graph *g, char *blk, int id)
{
    return dsv_graph_block_view_(g, blk, id);
}

static dsv_tensor buffer_view(const dsv_graph *g, int id)
{
    return dsv_tensor_wrap(g->bblock + (size_t)g->bufs[id].off * g->esz, g->dtype, 1,
                           &g->bufs[id].n);
}

static void scale_tensor(dsv_tensor *t, double a)
{
    int64_t n = dsv_tensor_numel(t);
    if (t->dtype == DSV_F32) {
        float *p = t->data;
        for (int64_t i = 0; i < n; i++)
            p[i] = (float)(p[i] * a);
    } else {
        double *p = t->data;
        for (int64_t i = 0; i < n; i++)
            p[i] *= a;
    }
}

static void add_into(dsv_dtype dt, void *dst, const void *src, int64_t n)
{
    if (dt == DSV_F32) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        double *d = dst;
        const double *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}

static uint64_t dropout_seed(const dsv_graph *g, const node *nd)
{
    uint64_t s = nd->p.seed ^ (g->step * 0xD1B54A32D192ED03ull);
    return dsv_splitmix64(&s);
}

/* Tensors of one call; kept together so the call's pointers stay valid. */
typedef struct call_tensors {
    dsv_tensor x, x2, w, b, y, rm, rv, out, dout, dx, dx2, dw, db;
} call_tensors;

static void setup_call(const ctx *cx, int i, dsv_call *c, call_tensors *t)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i];
    *c = dsv_call_make(nd->op);
    c->p = nd->p;
    c->p.train = cx->train;
    c->p.row0 = cx->n0;
    if (nd->op == DSV_OP_DROPOUT)
        c->p.seed = dropout_seed(g, nd);
    t->x = val_view(cx, nd->in[0], false);
    c->x = &t->x;
    if (nd->in[1] >= 0) {
        t->x2 = val_view(cx, nd->in[1], false);
        c->x2 = &t->x2;
    }
    if (nd->w >= 0) {
        t->w = param_view(g, g->pblock, nd->w);
        t->b = param_view(g, g->pblock, nd->b);
        c->w = &t->w;
        c->b = &t->b;
    }
    if (nd->rm >= 0) {
        t->rm = buffer_view(g, nd->rm);
        t->rv = buffer_view(g, nd->rv);
        c->running_mean = &t->rm;
        c->running_var = &t->rv;
    }
    c->nthreads = cx->nthreads;
}

/* Whether node nd's training pass sums its batch statistics over processes:
 * the fast kernel's synchronized form, or the naive one's when naive was
 * asked for (float64: naive's in any case). */
static bool synced(const ctx *cx, const node *nd)
{
    return cx->train && cx->g->has_dist && cx->g->dist.sum_stats &&
           dsv_graph_is_bn_(nd->op);
}

static dsv_status bn_summed(const ctx *cx, dsv_call *c, bool backward, dsv_backend *used)
{
    const dsv_dist_hooks *h = &cx->g->dist;
    bool fast = cx->want != DSV_BACKEND_NAIVE && c->x->dtype == DSV_F32;
    *used = fast ? DSV_BACKEND_FAST : DSV_BACKEND_NAIVE;
    if (fast)
        return backward ? dsv_fast_bn_backward_summed(c, h->sum_stats, h->user)
                        : dsv_fast_bn_forward_summed(c, h->sum_stats, h->user);
    return backward ? dsv_naive_bn_backward_summed(c, h->sum_stats, h->user)
                    : dsv_naive_bn_forward_summed(c, h->sum_stats, h->user);
}

/* The forward of a fused pair (graph_fuse.c): the head's kernel writes
 * relu(op(x)) into the relu's output, and with a joining max pool, the
 * pool's output too; those nodes themselves are skipped. */
static dsv_status fwd_fused(ctx *cx, int i)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i], *r = &g->nodes[i + 1];
    dsv_call c, pc;
    call_tensors t, pt;
    setup_call(cx, i, &c, &t);
    t.out = val_view(cx, r->out, false);
    c.out = &t.out;
    c.state = &nd->slots[2 * cx->set];
    dsv_backend used = DSV_BACKEND_NAIVE;
    node *p = nd->pool_fused ? &g->nodes[nd->fuse_pool] : NULL;
    dsv_status s;
    if (p) {
        setup_call(cx, nd->fuse_pool, &pc, &pt);
        pt.out = val_view(cx, p->out, false);
        pc.out = &pt.out;
        pc.state = &p->slots[2 * cx->set];
        s = dsv_forward_relu_pool(&c, &pc, cx->train, cx->train, cx->want, &used);
    } else {
        s = dsv_forward_relu(&c, cx->want, &used);
    }
    if (s)
        return dsv_graph_node_error_(s, nd->name);
    if (cx->set <= 1) {
        nd->fwd_used = r->fwd_used = used;
        nd->ran_fwd = r->ran_fwd = true;
        if (p) {
            p->fwd_used = used;
            p->ran_fwd = true;
        }
    }
    return DSV_OK;
}

static dsv_status fwd_node(ctx *cx, int i)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i];
    if (nd->fused)
        return fwd_fused(cx, i);
    if (dsv_graph_node_fused(g, i))
        return DSV_OK; /* ran in its head's kernel */
    dsv_call c;
    call_tensors t;
    setup_call(cx, i, &c, &t);
    double loss = 0;
    if (dsv_op_is_loss(nd->op)) {
        t.y = dsv_tensor_wrap((int32_t *)cx->y->data + cx->n0, DSV_I32, 1, &cx->nr);
        c.y = &t.y;
        c.loss = &loss;
        if (cx->train) {
            t.dx = val_view(cx, nd->in[0], true);
            c.dx = &t.dx;
        }
    } else {
        t.out = val_view(cx, nd->out, false);
        c.out = &t.out;
    }
    c.state = &nd->slots[2 * cx->set];
    dsv_backend used = DSV_BACKEND_NAIVE;
    dsv_status s = synced(cx, nd) ? bn_summed(cx, &c, false, &used)
                                  : dsv_forward(&c, cx->want, &used);
    if (s)
        return dsv_graph_node_error_(s, nd->name);
    if (cx->set <= 1) { /* layer schedule or batch thread 0 */
        nd->fwd_used = used;
        nd->ran_fwd = true;
    }
    if (dsv_op_is_loss(nd->op)) {
        int64_t total = g->global_batch > 0 ? g->global_batch : cx->pl->n;
        double frac = (double)cx->nr / (double)total;
        cx->loss = loss * frac;
        if (cx->train && cx->nr != total)
            scale_tensor(&t.dx, frac);
    }
    return DSV_OK;
}

static dsv_status bwd_node(ctx *cx, int i)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i];
    if (nd->op == DSV_OP_RELU && dsv_graph_node_bwd_fused(g, i)) {
        if (cx->set <= 1) { /* ran in the pool's backward */
            nd->bwd_used = g->nodes[i + 1].bwd_used;
            nd->ran_bwd = true;
        }
        return DSV_OK;
    }
    dsv_call c;
    call_tensors t;
    setup_call(cx, i, &c, &t);
    /* the pool's backward that also does the relu's writes the gradient of
       the relu's input (the conv's output) */
    bool with_relu = nd->op == DSV_OP_MAX_POOL && dsv_graph_node_bwd_fused(g, i);
    /* a fused relu's input was never written: the mask comes from its
       output, which is positive exactly where the input is */
    if (nd->op == DSV_OP_RELU && dsv_graph_node_fused(g, i))
        t.x = val_view(cx, nd->out, false);
    /* no c.out: the output's memory may already hold a gradient by now */
    t.dout = val_view(cx, nd->out, true);
    c.dout = &t.dout;
    dsv_tensor *dxs[2] = {&t.dx, &t.dx2};
    for (int k = 0; k < 2; k++) {
        dsv_value v = nd->in[k];
        if (v < 0 || g->vals[v].kind != VAL_NODE)
            continue;
        if (with_relu)
            *dxs[k] = val_view(cx, g->nodes[i - 1].in[0], true);
        else
            *dxs[k] = nd->direct[k] ? val_view(cx, v, true) : tmp_view(cx, i, k);
        if (k == 0)
            c.dx = dxs[k];
        else
            c.dx2 = dxs[k];
    }
    if (nd->w >= 0) {
        t.dw = param_view(g, cx->grads, nd->w);
        t.db = param_view(g, cx->grads, nd->b);
        c.dw = &t.dw;
        c.db = &t.db;
    }
    /* Share the forward's state when the same backend runs backward (oneDNN
       keeps its pooling workspace there); otherwise use the second slot so the
       two do not free each other's state every step. */
    dsv_backend bb = dsv_pick_backend(&c, true, cx->want);
    c.state = &nd->slots[2 * cx->set + (nd->slots[2 * cx->set].owner == bb ? 0 : 1)];
    dsv_backend used = bb;
    dsv_status s;
    if (nd->hook) {
        s = nd->hook(&c, cx->want, nd->hook_user);
    } else if (with_relu) {
        s = dsv_backward_relu(&c, cx->want, &used);
    } else if (synced(cx, nd)) {
        s = bn_summed(cx, &c, true, &used);
    } else {
        s = dsv_backward(&c, cx->want, &used);
    }
    if (s)
        return dsv_graph_node_error_(s, nd->name);
    if (cx->set <= 1) {
        nd->bwd_used = used;
        nd->ran_bwd = true;
    }
    for (int k = 0; k < 2; k++) {
        dsv_value v = nd->in[k];
        if (v < 0 || g->vals[v].kind != VAL_NODE || nd->direct[k])
            continue;
        dsv_tensor dst = val_view(cx, v, true);
        add_into(g->dtype, dst.data, dxs[k]->data, dsv_tensor_numel(&dst));
    }
    return DSV_OK;
}

/* Tells the data-parallel layer that node i's parameter gradients are final. */
static dsv_status grads_ready(dsv_graph *g, int i)
{
    if (!g->has_dist || !g->dist.grads_ready || g->nodes[i].w < 0)
        return DSV_OK;
    return g->dist.grads_ready(g->dist.user, i);
}

static dsv_status run_layer(dsv_graph *g, const plan *pl, const dsv_exec_options *o,
                            int threads, const dsv_tensor *x, const dsv_tensor *y,
                            double *loss)
{
    ctx cx = {.g = g, .pl = pl, .x = x, .y = y, .n0 = 0, .nr = pl->n,
              .nthreads = threads, .set = 0, .train = pl->train, .want = o->backend,
              .grads = g->gblock};
    int K = g->nnodes;
    dsv_status s;
    for (int i = 0; i < K; i++) {
        if (!pl->train && i == g->loss_node)
            break;
        if ((s = fwd_node(&cx, i)))
            return s;
    }
    if (!pl->train)
        return DSV_OK;
    for (int i = K - 2; i >= 0; i--)
        if ((s = bwd_node(&cx, i)) || (s = grads_ready(g, i)))
            return s;
    *loss = cx.loss;
    return DSV_OK;
}

static void record(thread_err *e, dsv_status s)
{
    if (s && !e->s) {
        e->s = s;
        snprintf(e->msg, sizeof(e->msg), "%s", dsv_errmsg());
    }
}

/* Slice k of the batch schedule's T: its rows, slot set and gradient block
 * (slice 0 writes the main block). A slice is the same whichever thread runs
 * it, so results do not depend on the team the runtime gives. */
static ctx slice_ctx(dsv_graph *g, const plan *pl, const dsv_exec_options *o,
                     const dsv_tensor *x, const dsv_tensor *y, int k)
{
    int T = pl->threads;
    int64_t N = pl->n;
    size_t gbytes = (size_t)g->np * g->esz;
    return (ctx){.g = g, .pl = pl, .x = x, .y = y, .n0 = N * k / T,
                 .nr = N * (k + 1) / T - N * k / T, .nthreads = 1, .set = 1 + k,
                 .train = pl->train, .want = o->backend,
                 .grads = k == 0 ? g->gblock : pl->tgrads + (size_t)(k - 1) * gbytes};
}

/* Nodes [from, to) forward (backward: from down to to + 1) on every slice,
 * the slices shared among a team of threads. A slice stops at its first
 * error (pl->errs). */
static void run_slices(dsv_graph *g, plan *pl, const dsv_exec_options *o,
                       const dsv_tensor *x, const dsv_tensor *y, int from, int to,
                       bool backward)
{
    int T = pl->threads;
#pragma omp parallel num_threads(T)
    {
        int nt = omp_get_num_threads();
        for (int k = omp_get_thread_num(); k < T; k += nt) {
            ctx cx = slice_ctx(g, pl, o, x, y, k);
            thread_err *e = &pl->errs[k];
            if (backward) {
                for (int i = from; i > to && !e->s; i--)
                    record(e, bwd_node(&cx, i));
            } else {
                for (int i = from; i < to && !e->s; i++)
                    record(e, fwd_node(&cx, i));
                if (from <= g->loss_node && g->loss_node < to)
                    pl->tloss[k] = cx.loss;
            }
        }
    }
}

/* A batch-statistics node of the batch schedule: once, on the whole batch,
 * between two parallel regions, so that its kernel splits the statistics
 * among all threads as under the layer schedule (slot set 1, the main
 * gradient block). */
static dsv_status run_whole(dsv_graph *g, plan *pl, const dsv_exec_options *o,
                            const dsv_tensor *x, const dsv_tensor *y, int i,
                            bool backward)
{
    ctx full = slice_ctx(g, pl, o, x, y, 0);
    full.n0 = 0;
    full.nr = pl->n;
    full.nthreads = pl->threads;
    return backward ? bwd_node(&full, i) : fwd_node(&full, i);
}

static dsv_status slice_errors(const plan *pl)
{
    for (int k = 0; k < pl->threads; k++)
        if (pl->errs[k].s)
            return dsv_error(pl->errs[k].s, "%s", pl->errs[k].msg);
    return DSV_OK;
}

/* The batch schedule: parallel regions over the slices between the batch
 * norm nodes of a training pass, each such node run on its own with the
 * whole team. */
static dsv_status run_batch(dsv_graph *g, plan *pl, const dsv_exec_options *o,
                            const dsv_tensor *x, const dsv_tensor *y, double *loss)
{
    int T = pl->threads, K = g->nnodes;
    int end = pl->train ? K : g->loss_node;
    memset(pl->errs, 0, sizeof(thread_err) * (size_t)T);
    dsv_status s = DSV_OK;
    for (int i = 0; i < end && !s;) {
        int b = i;
        while (b < end && !dsv_graph_barrier_at_(g, pl->train, b))
            b++;
        if (b > i)
            run_slices(g, pl, o, x, y, i, b, false);
        if (!(s = slice_errors(pl)) && b < end)
            s = run_whole(g, pl, o, x, y, b, false);
        i = b + 1;
    }
    if (s || !pl->train)
        return s;
    for (int i = K - 2; i >= 0 && !s;) {
        int b = i;
        while (b >= 0 && !dsv_graph_barrier_at_(g, pl->train, b))
            b--;
        if (b < i)
            run_slices(g, pl, o, x, y, i, b, true);
        if (!(s = slice_errors(pl)) && b >= 0)
            s = run_whole(g, pl, o, x, y, b, true);
        i = b - 1;
    }
    if (s)
        return s;
    double l = 0;
    for (int k = 0; k < T; k++)
        l += pl->tloss[k];
    *loss = l;
    size_t gbytes = (size_t)g->np * g->esz;
    for (int k = 1; k < T; k++) /* fixed order: deterministic */
        add_into(g->dtype, g->gblock, pl->tgrads + (size_t)(k - 1) * gbytes, g->np);
    for (int i = K - 2; i >= 0; i--)
        if ((s = grads_ready(g, i)))
            return s;
    return DSV_OK;
}

static dsv_status check_inputs(const dsv_graph *g, const dsv_tensor *x,
                               const dsv_tensor *y)
{
    if (!g->final)
        return dsv_error(DSV_INVALID, "graph: not finalized");
    const value *in = &g->vals[g->input];
    char a[64], b[64];
    if (!x || !x->data || x->dtype != g->dtype)
        return dsv_error(DSV_INVALID, "input x must be a %s tensor",
                         dsv_dtype_name(g->dtype));
    bool ok = x->ndim == in->ndim && x->shape[0] >= 1;
    for (int d = 1; ok && d < in->ndim; d++)
        ok = x->shape[d] == in->shape[d];
    /* rows already flattened, as the course feeds its fully connected nets */
    if (x->ndim == 2 && x->shape[0] >= 1 && x->shape[1] == in->row)
        ok = true;
    if (!ok) {
        dsv_tensor ref = dsv_tensor_wrap(x->data, g->dtype, in->ndim, in->shape);
        return dsv_error(DSV_INVALID, "input x has shape %s, expected (N%s or (N, %lld)",
                         dsv_tensor_shape_str(x, a, sizeof(a)),
                         strchr(dsv_tensor_shape_str(&ref, b, sizeof(b)), ','),
                         (long long)in->row);
    }
    if (!y)
        return DSV_OK;
    if (!y->data || y->dtype != DSV_I32 || dsv_tensor_numel(y) != x->shape[0])
        return dsv_error(DSV_INVALID, "labels y must be int32 with %lld entries",
                         (long long)x->shape[0]);
    /* here rather than in the loss, so that the index is the batch's even when
       the batch schedule splits it */
    int64_t classes = g->vals[g->nodes[g->loss_node].in[0]].row;
    const int32_t *lab = y->data;
    for (int64_t i = 0; i < x->shape[0]; i++)
        if (lab[i] < 0 || lab[i] >= classes)
            return dsv_error(DSV_INVALID, "label y[%lld] = %d is outside [0, %lld)",
                             (long long)i, lab[i], (long long)classes);
    return DSV_OK;
}

/* Threads the run may use at all. */
static int all_threads(const dsv_exec_options *o)
{
    return o->threads > 0 ? o->threads : dsv_get_num_threads();
}

/* Threads of the batch schedule's team: one row of the batch at least each. */
static int team_size(const dsv_exec_options *o, int64_t n)
{
    int T = all_threads(o);
    return (int64_t)T > n ? (int)n : T;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Which fusable pairs run fused: the pattern is allowed and the backend the
 * head's forward picks (for the calls of this run: the whole batch, or the
 * batch schedule's first slice) offers forward_relu. */
static void decide_fusion(dsv_graph *g, const plan *pl, const dsv_exec_options *o,
                          const dsv_tensor *x, int threads)
{
    ctx cx = {.g = g, .pl = pl, .x = x, .n0 = 0, .nr = pl->n, .nthreads = threads,
              .train = pl->train, .want = o->backend};
    if (pl->batch) {
        cx.nr = pl->n / pl->threads;
        cx.nthreads = 1;
    }
    for (int i = 0; i < g->nnodes; i++) {
        node *nd = &g->nodes[i];
        nd->fused = nd->pool_fused = nd->bwd_fused = false;
        if (nd->fuse_pattern < 0 || !g->fuse_on[nd->fuse_pattern])
            continue;
        dsv_call c, pc;
        call_tensors t, pt;
        setup_call(&cx, i, &c, &t);
        nd->fused = dsv_forward_relu_ok(&c, o->backend);
        if (!nd->fused || nd->fuse_pool < 0 || !g->fuse_on[DSV_FUSE_CONV_RELU_POOL])
            continue;
        /* the pool's x is the relu's output, the conv call's out when fused */
        t.out = val_view(&cx, g->nodes[i + 1].out, false);
        c.out = &t.out;
        setup_call(&cx, nd->fuse_pool, &pc, &pt);
        nd->pool_fused = dsv_forward_relu_pool_ok(&c, &pc, pl->train, o->backend);
        node *r = &g->nodes[i + 1], *p = &g->nodes[nd->fuse_pool];
        if (!nd->pool_fused || !pl->train || r->hook || p->hook || !r->direct[0] ||
            !p->direct[0])
            continue;
        /* the backward calls as bwd_node makes them: the relu's mask from
           its output */
        dsv_call rc;
        call_tensors rt;
        setup_call(&cx, i + 1, &rc, &rt);
        rt.x = val_view(&cx, r->out, false);
        rt.dout = rt.x;
        rc.dout = &rt.dout;
        rt.dx = rt.x;
        rc.dx = &rt.dx;
        pt.dout = pt.out = val_view(&cx, p->out, false);
        pc.dout = &pt.dout;
        pt.dx = rt.x;
        pc.dx = &pt.dx;
        nd->bwd_fused = dsv_backward_relu_ok(&pc, &rc, o->backend);
    }
}

static dsv_status run(dsv_graph *g, const dsv_exec_options *o, dsv_schedule sched,
                      bool train, const dsv_tensor *x, const dsv_tensor *y, double *loss)
{
    int64_t n = x->shape[0];
    int T = team_size(o, n);
    bool batch = sched == DSV_SCHEDULE_BATCH && T > 1;
    dsv_status s = dsv_graph_ensure_sets_(g, 1 + T);
    plan *pl;
    if (s || (s = dsv_graph_plan_get_(g, n, train, batch, T, &pl)))
        return s;
    g->last = pl;
    decide_fusion(g, pl, o, x, batch ? 1 : all_threads(o));
    /* no clearing of the gradient block: every node's backward overwrites
       its parameters' gradients (test_every_op_overwrites_gradients), and
       a memset of the whole block was a single-threaded stretch of every
       step */
    /* Under the layer schedule every kernel gets all threads, also for a
       batch smaller than the team (batch-1 inference): kernels then split
       output columns, channels or rows instead of images. */
    s = batch ? run_batch(g, pl, o, x, y, loss)
              : run_layer(g, pl, o, all_threads(o), x, y, loss);
    if (!s && train && g->has_dist && g->dist.grads_done)
        s = g->dist.grads_done(g->dist.user, loss);
    return s;
}

static dsv_schedule auto_lookup(const dsv_graph *g, int64_t n, int T)
{
    for (int i = 0; i < g->nauto; i++)
        if (g->autoc[i].n == n && g->autoc[i].threads == T)
            return g->autoc[i].choice;
    return DSV_SCHEDULE_AUTO;
}

/* Times two training passes of each schedule, leaving parameters, running
 * statistics and the dropout step as they were. */
static dsv_status calibrate(dsv_graph *g, const dsv_exec_options *o, const dsv_tensor *x,
                            const dsv_tensor *y, dsv_schedule *choice)
{
    int64_t n = x->shape[0];
    int T = team_size(o, n);
    *choice = DSV_SCHEDULE_LAYER;
    if (T > 1) {
        size_t bb = (size_t)g->nb * g->esz;
        void *saved = malloc(bb ? bb : 1);
        if (!saved)
            return dsv_error(DSV_NOMEM, "graph: out of memory");
        memcpy(saved, g->bblock, bb);
        uint64_t step = g->step;
        bool dist = g->has_dist;
        g->has_dist = false; /* timing passes: local, no collectives */
        double best[2] = {INFINITY, INFINITY};
        dsv_status s = DSV_OK;
        for (int rep = 0; rep < 2 && !s; rep++)
            for (int k = 0; k < 2 && !s; k++) {
                double l, t0 = now_s();
                s = run(g, o, k ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER, true, x, y, &l);
                double dt = now_s() - t0;
                if (dt < best[k])
                    best[k] = dt;
            }
        memcpy(g->bblock, saved, bb);
        g->step = step;
        g->has_dist = dist;
        free(saved);
        if (s)
            return s;
        *choice = best[1] < best[0] ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER;
    }
    if (g->nauto == MAX_AUTO)
        g->nauto = 0; /* forget old batch sizes */
    g->autoc[g->nauto].n = n;
    g->autoc[g->nauto].threads = T;
    g->autoc[g->nauto].choice = *choice;
    g->nauto++;
    return DSV_OK;
}

static dsv_status check_options(const dsv_exec_options *o)
{
    if ((unsigned)o->backend >= DSV_BACKEND_COUNT || !dsv_backend_available(o->backend))
        return dsv_error(DSV_INVALID, "backend %d is not available", (int)o->backend);
    if ((unsigned)o->schedule >= DSV_SCHEDULE_COUNT || o->threads < 0)
        return dsv_error(DSV_INVALID, "bad schedule %d or thread count %d",
                         (int)o->schedule, o->threads);
    return DSV_OK;
}

/* The L2 term over the weights: dw += reg * w, and 0.5 * reg * sum(w^2) added
 * to the loss. It runs over every weight each step (4.1M of them in the
 * course's CIFAR ThreeLayerConvNet with hidden 500), so it is split across
 * threads in blocks of REG_BLOCK elements. Each block sums its squares in
 * eight interleaved partial sums (a loop the compiler vectorises) and the
 * block sums are added in block order, so the loss is the same for any
 * number of threads; dw is element-wise, the same as a plain loop. */
enum { REG_BLOCK = 1 << 14 };

dsv_status dsv_graph_train_step(dsv_graph *g, const dsv_exec_options *o,
                                const dsv_tensor *x, const dsv_tensor *y, double *loss)
{
    dsv_status s;
    if ((s = check_options(o)) || (s = check_inputs(g, x, y)))
        return s;
    if (!y)
        return dsv_error(DSV_INVALID, "training needs labels y");
    dsv_schedule sched = o->schedule;
    if (sched == DSV_SCHEDULE_AUTO) {
        sched = auto_lookup(g, x->shape[0], team_size(o, x->shape[0]));
        if (sched == DSV_SCHEDULE_AUTO && (s = calibrate(g, o, x, y, &sched)))
            return s;
        g->last_choice = sched;
    }
    double l = 0;
    if ((s = run(g, o, sched, true, x, y, &l)))
        return s;
    g->step++;
    *loss = l;
    return DSV_OK;
}

dsv_status dsv_graph_infer(dsv_graph *g, const dsv_exec_options *o, const dsv_tensor *x,
                           dsv_tensor *scores)
{
    dsv_status s;
    if ((s = check_options(o)) || (s = check_inputs(g, x, NULL)))
        return s;
    dsv_value sv = g->nodes[g->loss_node].in[0];
    const value *val = &g->vals[sv];
    char a[64];
    if (!scores || !scores->data || scores->dtype != g->dtype ||
        scores->shape[0] != x->shape[0] ||
        dsv_tensor_numel(scores) != x->shape[0] * val->row)
        return dsv_error(DSV_INVALID, "scores must be %s (%lld, %lld), got %s",
                         dsv_dtype_name(g->dtype), (long long)x->shape[0],
                         (long long)val->row,
                         scores ? dsv_tensor_shape_str(scores, a, sizeof(a)) : "none");
    dsv_schedule sched = o->schedule;
    if (sched == DSV_SCHEDULE_AUTO) {
        sched = auto_lookup(g, x->shape[0], team_size(o, x->shape[0]));
        if (sched == DSV_SCHEDULE_AUTO)
            sched = DSV_SCHEDULE_LAYER;
    }
    if ((s = run(g, o, sched, false, x, NULL, NULL)))
        return s;
    memcpy(scores->data, g->last->arena + g->last->act_off[sv],
           (size_t)(x->shape[0] * val->row) * g->esz);
    return DSV_OK;
}

uint64_t dsv_graph_step(const dsv_graph *g) { return g->step; }
void dsv_graph_set_step(dsv_graph *g, uint64_t step) { g->step = step; }

void dsv_graph_set_dist_hooks(dsv_graph *g, const dsv_dist_hooks *h)
{
    g->has_dist = h != NULL;
    if (h)
        g->dist = *h;
}

void dsv_graph_set_global_batch(dsv_graph *g, int64_t rows)
{
    g->global_batch = rows > 0 ? rows : 0;
}
