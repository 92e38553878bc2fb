/*
 * The graph engine: building (shape-checked nodes), memory planning and
 * forward/backward execution under the layer and batch schedules.
 *
 * What must stay true:
 *  - Parameters, gradients and buffers are three flat blocks; tensors handed
 *    out are views into them.
 *  - A plan (per batch size, mode, schedule, thread count) is made once and
 *    reused: the steady state allocates nothing. Buffers share arena memory
 *    only when their lifetimes (in steps; under the batch schedule in
 *    barrier-separated segments, since threads run ahead of each other
 *    between barriers) do not overlap.
 *  - A value read by several nodes gets the SUM of their gradients: the last
 *    consumer (first in backward order) writes the gradient, the others write
 *    a temporary that is added in.
 *  - Results do not depend on timing: per-thread gradient blocks are summed
 *    in thread order, losses likewise.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "dasecv/graph.h"

#define MAX_PLANS 8
#define MAX_AUTO 16

typedef enum val_kind { VAL_INPUT, VAL_LABELS, VAL_NODE } val_kind;

typedef struct value {
    val_kind kind;
    int ndim;
    int64_t shape[DSV_MAX_DIMS]; /* shape[0] is the batch: stored as 1 */
    int64_t row;                 /* elements per sample */
    int producer;                /* node index, -1 for input/labels */
    int first_use, last_use;     /* consumer node indices, -1 if none */
} value;

typedef struct param {
    char *name;
    int ndim;
    int64_t shape[DSV_MAX_DIMS];
    int64_t off, n;
    dsv_param_kind kind;
    int used_by;
} param;

typedef struct buffer {
    char *name;
    int64_t off, n;
    double fill;
} buffer;

typedef struct node {
    char *name;
    dsv_op op;
    dsv_params p;
    dsv_value in[2], y, out;
    int w, b, rm, rv;
    bool direct[2]; /* this input's gradient is written, not added */
    bool ran_fwd, ran_bwd;
    dsv_backend fwd_used, bwd_used;
    dsv_state *slots; /* 2 per slot set: [0] forward, [1] backward when its
                          backend differs from the forward's */
    dsv_backward_hook hook;
    void *hook_user;
} node;

/* Per-thread failure, reported by the caller's thread after the region. */
typedef struct thread_err {
    dsv_status s;
    char msg[256];
} thread_err;

typedef struct plan {
    int64_t n;
    bool train, batch;
    int threads; /* batch: team size planned for; layer: 0 */
    uint64_t last_used;
    char *arena;
    size_t bytes, unshared;
    size_t *act_off, *grad_off, *tmp_off; /* per value, value, node*2 */
    char *tgrads;  /* (threads - 1) gradient blocks (batch, train) */
    double *tloss; /* per thread */
    thread_err *errs; /* per thread (batch) */
} plan;

struct dsv_graph {
    dsv_dtype dtype;
    size_t esz;
    value *vals;
    int nvals, cap_vals;
    node *nodes;
    int nnodes, cap_nodes;
    param *params;
    int nparams, cap_params;
    buffer *bufs;
    int nbufs, cap_bufs;
    int input, labels, loss_node;
    bool final;
    int64_t np, nb;
    char *pblock, *gblock, *bblock;
    int nsets; /* slot sets allocated per node */
    plan *plans[MAX_PLANS];
    int nplans;
    uint64_t clock;
    int64_t plan_allocs;
    const plan *last;
    uint64_t step; /* training steps so far (dropout masks) */
    struct {
        int64_t n;
        int threads;
        dsv_schedule choice;
    } autoc[MAX_AUTO];
    int nauto;
    dsv_schedule last_choice;
};

/* ---- small helpers --------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static bool grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return false;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return true;
}

/* Re-raises this thread's last message with the node's name in front. */
static dsv_status node_error(dsv_status s, const char *name)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
    return dsv_error(s, "node '%s': %s", name, msg);
}

static bool is_bn(dsv_op op)
{
    const dsv_op_info *in = dsv_op_get_info(op);
    return in && in->batch_stats;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- create / destroy ------------------------------------------------------ */

dsv_status dsv_graph_create(dsv_graph **out, dsv_dtype dtype)
{
    *out = NULL;
    if (dtype != DSV_F32 && dtype != DSV_F64)
        return dsv_error(DSV_INVALID, "graph: dtype must be float32 or float64, got %s",
                         dsv_dtype_name(dtype));
    dsv_graph *g = calloc(1, sizeof(*g));
    if (!g)
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    g->dtype = dtype;
    g->esz = dsv_dtype_size(dtype);
    g->input = g->labels = g->loss_node = -1;
    g->last_choice = DSV_SCHEDULE_AUTO;
    *out = g;
    return DSV_OK;
}

static void plan_free(plan *p)
{
    if (!p)
        return;
    dsv_free(p->arena);
    dsv_free(p->tgrads);
    free(p->act_off);
    free(p->grad_off);
    free(p->tmp_off);
    free(p->tloss);
    free(p->errs);
    free(p);
}

static void free_states(dsv_graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        node *nd = &g->nodes[i];
        for (int k = 0; k < 2 * g->nsets; k++) {
            dsv_state_free(&nd->slots[k]);
        }
    }
}

void dsv_graph_destroy(dsv_graph *g)
{
    if (!g)
        return;
    free_states(g);
    for (int i = 0; i < g->nnodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].slots);
    }
    for (int i = 0; i < g->nparams; i++)
        free(g->params[i].name);
    for (int i = 0; i < g->nbufs; i++)
        free(g->bufs[i].name);
    for (int i = 0; i < g->nplans; i++)
        plan_free(g->plans[i]);
    dsv_free(g->pblock);
    dsv_free(g->gblock);
    dsv_free(g->bblock);
    free(g->vals);
    free(g->nodes);
    free(g->params);
    free(g->bufs);
    free(g);
}

dsv_dtype dsv_graph_dtype(const dsv_graph *g) { return g->dtype; }

/* ---- building --------------------------------------------------------------- */

static dsv_status not_final(const dsv_graph *g, const char *what)
{
    if (g->final)
        return dsv_error(DSV_INVALID, "graph: cannot %s after finalize", what);
    return DSV_OK;
}

static dsv_status new_value(dsv_graph *g, val_kind kind, int ndim,
                            const int64_t *shape, int producer, dsv_value *v)
{
    if (!grow((void **)&g->vals, &g->cap_vals, g->nvals + 1, sizeof(value)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    value *val = &g->vals[g->nvals];
    memset(val, 0, sizeof(*val));
    val->kind = kind;
    val->ndim = ndim;
    val->row = 1;
    for (int d = 0; d < DSV_MAX_DIMS; d++)
        val->shape[d] = d < ndim ? shape[d] : 1;
    val->shape[0] = 1;
    for (int d = 1; d < ndim; d++)
        val->row *= val->shape[d];
    val->producer = producer;
    val->first_use = val->last_use = -1;
    *v = g->nvals++;
    return DSV_OK;
}

dsv_status dsv_graph_input(dsv_graph *g, int ndim, const int64_t *sample_shape,
                           dsv_value *v)
{
    dsv_status s = not_final(g, "add an input");
    if (s)
        return s;
    if (g->input >= 0)
        return dsv_error(DSV_INVALID, "graph: the input is already declared");
    if (ndim < 1 || ndim > DSV_MAX_DIMS - 1)
        return dsv_error(DSV_INVALID, "graph: input needs 1 to 3 sample dimensions, got %d",
                         ndim);
    int64_t shape[DSV_MAX_DIMS] = {1, 1, 1, 1};
    for (int d = 0; d < ndim; d++) {
        if (sample_shape[d] < 1 || sample_shape[d] > (1 << 24))
            return dsv_error(DSV_INVALID, "graph: input dimension %d is %lld", d + 1,
                             (long long)sample_shape[d]);
        shape[d + 1] = sample_shape[d];
    }
    if ((s = new_value(g, VAL_INPUT, ndim + 1, shape, -1, v)))
        return s;
    g->input = *v;
    return DSV_OK;
}

dsv_status dsv_graph_labels(dsv_graph *g, dsv_value *v)
{
    dsv_status s = not_final(g, "add labels");
    if (s)
        return s;
    if (g->labels >= 0)
        return dsv_error(DSV_INVALID, "graph: the labels are already declared");
    int64_t shape[1] = {1};
    if ((s = new_value(g, VAL_LABELS, 1, shape, -1, v)))
        return s;
    g->labels = *v;
    return DSV_OK;
}

static bool name_taken(const dsv_graph *g, const char *name)
{
    for (int i = 0; i < g->nparams; i++)
        if (strcmp(g->params[i].name, name) == 0)
            return true;
    for (int i = 0; i < g->nbufs; i++)
        if (strcmp(g->bufs[i].name, name) == 0)
            return true;
    return false;
}

dsv_status dsv_graph_add_param(dsv_graph *g, const char *name, int ndim,
                               const int64_t *shape, dsv_param_kind kind, int *id)
{
    dsv_status s = not_final(g, "add a parameter");
    if (s)
        return s;
    if (!name || !*name || name_taken(g, name))
        return dsv_error(DSV_INVALID, "graph: parameter name '%s' is empty or taken",
                         name ? name : "");
    if (ndim < 1 || ndim > DSV_MAX_DIMS || (unsigned)kind >= DSV_PARAM_KIND_COUNT)
        return dsv_error(DSV_INVALID, "graph: parameter '%s': bad rank %d or kind", name,
                         ndim);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > (1 << 28) || n > (INT64_C(1) << 32) / shape[d])
            return dsv_error(DSV_INVALID, "graph: parameter '%s' has bad dimension %lld",
                             name, (long long)shape[d]);
        n *= shape[d];
    }
    if (!grow((void **)&g->params, &g->cap_params, g->nparams + 1, sizeof(param)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    param *p = &g->params[g->nparams];
    if (!(p->name = dup_str(name)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    p->ndim = ndim;
    for (int d = 0; d < DSV_MAX_DIMS; d++)
        p->shape[d] = d < ndim ? shape[d] : 1;
    p->n = n;
    p->off = g->np;
    p->kind = kind;
    p->used_by = -1;
    g->np += n; /* packed: the block is exactly the parameters */
    *id = g->nparams++;
    return DSV_OK;
}

dsv_status dsv_graph_add_buffer(dsv_graph *g, const char *name, int64_t n,
                                double fill, int *id)
{
    dsv_status s = not_final(g, "add a buffer");
    if (s)
        return s;
    if (!name || !*name || name_taken(g, name))
        return dsv_error(DSV_INVALID, "graph: buffer name '%s' is empty or taken",
                         name ? name : "");
    if (n < 1 || n > (INT64_C(1) << 32))
        return dsv_error(DSV_INVALID, "graph: buffer '%s' has bad size %lld", name,
                         (long long)n);
    if (!grow((void **)&g->bufs, &g->cap_bufs, g->nbufs + 1, sizeof(buffer)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    buffer *b = &g->bufs[g->nbufs];
    if (!(b->name = dup_str(name)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    b->n = n;
    b->off = g->nb;
    b->fill = fill;
    g->nb += n;
    *id = g->nbufs++;
    return DSV_OK;
}

dsv_node_desc dsv_node_desc_make(dsv_op op, const char *name, dsv_value x)
{
    dsv_node_desc d;
    memset(&d, 0, sizeof(d));
    d.name = name;
    d.op = op;
    d.p = dsv_params_default();
    d.x = x;
    d.x2 = d.y = DSV_NO_VALUE;
    d.w = d.b = d.running_mean = d.running_var = -1;
    return d;
}

/* One-row stand-ins for a node's tensors, used to check shapes and ask
 * dsv_pick_backend before any memory is planned. Kernels never run on them. */
typedef struct dummies {
    dsv_tensor x, x2, w, b, y, rm, rv, out, dout, dx, dx2, dw, db;
    double loss;
} dummies;

static _Alignas(64) double dummy_data[16];
static int32_t dummy_label[1];

static dsv_tensor dummy_of_value(const dsv_graph *g, dsv_value v)
{
    const value *val = &g->vals[v];
    return dsv_tensor_wrap(dummy_data, g->dtype, val->ndim, val->shape);
}

static dsv_tensor dummy_of_param(const dsv_graph *g, int id)
{
    const param *p = &g->params[id];
    return dsv_tensor_wrap(dummy_data, g->dtype, p->ndim, p->shape);
}

static dsv_tensor dummy_of_buffer(const dsv_graph *g, int id)
{
    int64_t n = g->bufs[id].n;
    return dsv_tensor_wrap(dummy_data, g->dtype, 1, &n);
}

/* Fills c from a node description; output shape (if known) into out/dout. */
static void dummy_call(const dsv_graph *g, const dsv_node_desc *d, dummies *m,
                       dsv_call *c, int ond, const int64_t *os)
{
    *c = dsv_call_make(d->op);
    c->p = d->p;
    m->x = dummy_of_value(g, d->x);
    c->x = &m->x;
    if (d->x2 >= 0) {
        m->x2 = dummy_of_value(g, d->x2);
        c->x2 = &m->x2;
        m->dx2 = m->x2;
        c->dx2 = &m->dx2;
    }
    if (d->w >= 0) {
        m->w = dummy_of_param(g, d->w);
        c->w = &m->w;
        m->dw = m->w;
        c->dw = &m->dw;
    }
    if (d->b >= 0) {
        m->b = dummy_of_param(g, d->b);
        c->b = &m->b;
        m->db = m->b;
        c->db = &m->db;
    }
    if (d->running_mean >= 0) {
        m->rm = dummy_of_buffer(g, d->running_mean);
        c->running_mean = &m->rm;
    }
    if (d->running_var >= 0) {
        m->rv = dummy_of_buffer(g, d->running_var);
        c->running_var = &m->rv;
    }
    if (d->y >= 0) {
        int64_t one = 1;
        m->y = dsv_tensor_wrap(dummy_label, DSV_I32, 1, &one);
        c->y = &m->y;
    }
    c->loss = &m->loss;
    m->dx = m->x;
    c->dx = &m->dx;
    if (os) {
        m->out = dsv_tensor_wrap(dummy_data, g->dtype, ond, os);
        m->dout = m->out;
        c->out = &m->out;
        c->dout = &m->dout;
    }
}

static dsv_status check_ref(const dsv_graph *g, const dsv_node_desc *d)
{
    const char *nm = d->name;
    if (d->x < 0 || d->x >= g->nvals || g->vals[d->x].kind == VAL_LABELS)
        return dsv_error(DSV_INVALID, "node '%s': x is not a value of this graph", nm);
    if (d->x2 != DSV_NO_VALUE &&
        (d->x2 < 0 || d->x2 >= g->nvals || g->vals[d->x2].kind == VAL_LABELS))
        return dsv_error(DSV_INVALID, "node '%s': x2 is not a value of this graph", nm);
    if ((d->x2 != DSV_NO_VALUE) != (d->op == DSV_OP_ADD))
        return dsv_error(DSV_INVALID, "node '%s': x2 is for add nodes only (and needed there)",
                         nm);
    if (dsv_op_is_loss(d->op) != (d->y != DSV_NO_VALUE) ||
        (d->y != DSV_NO_VALUE && d->y != g->labels))
        return dsv_error(DSV_INVALID, "node '%s': losses (only) take the labels value", nm);
    const int pid[2] = {d->w, d->b};
    for (int k = 0; k < 2; k++) {
        if (pid[k] == -1)
            continue;
        if (pid[k] < 0 || pid[k] >= g->nparams)
            return dsv_error(DSV_INVALID, "node '%s': unknown parameter id %d", nm, pid[k]);
        if (g->params[pid[k]].used_by >= 0)
            return dsv_error(DSV_INVALID, "node '%s': parameter %s is already used by '%s'",
                             nm, g->params[pid[k]].name,
                             g->nodes[g->params[pid[k]].used_by].name);
    }
    if (dsv_op_has_weights(d->op) != (d->w >= 0) || (d->w >= 0) != (d->b >= 0))
        return dsv_error(DSV_INVALID, "node '%s': %s %s parameters", nm, dsv_op_name(d->op),
                         dsv_op_has_weights(d->op) ? "needs both" : "takes no");
    const int bid[2] = {d->running_mean, d->running_var};
    for (int k = 0; k < 2; k++)
        if (bid[k] != -1 && (bid[k] < 0 || bid[k] >= g->nbufs))
            return dsv_error(DSV_INVALID, "node '%s': unknown buffer id %d", nm, bid[k]);
    if (is_bn(d->op) && (d->running_mean < 0 || d->running_var < 0))
        return dsv_error(DSV_INVALID, "node '%s': batch norm needs running_mean/var buffers",
                         nm);
    return DSV_OK;
}

dsv_status dsv_graph_add_node(dsv_graph *g, const dsv_node_desc *d, dsv_value *out)
{
    dsv_status s = not_final(g, "add a node");
    if (s)
        return s;
    if (out)
        *out = DSV_NO_VALUE;
    if (!d->name || !*d->name)
        return dsv_error(DSV_INVALID, "graph: a node needs a name");
    if (dsv_graph_find_node(g, d->name) >= 0)
        return dsv_error(DSV_INVALID, "graph: node name '%s' is taken", d->name);
    if ((unsigned)d->op >= DSV_OP_COUNT)
        return dsv_error(DSV_INVALID, "node '%s': unknown op %d", d->name, (int)d->op);
    if (g->loss_node >= 0)
        return dsv_error(DSV_INVALID, "node '%s': the loss '%s' must be the last node",
                         d->name, g->nodes[g->loss_node].name);
    if ((s = check_ref(g, d)))
        return s;
    dummies m;
    dsv_call c;
    dummy_call(g, d, &m, &c, 0, NULL);
    int ond;
    int64_t os[DSV_MAX_DIMS];
    if ((s = dsv_op_check(&c, false, &ond, os)))
        return node_error(s, d->name);

    if (!grow((void **)&g->nodes, &g->cap_nodes, g->nnodes + 1, sizeof(node)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    int i = g->nnodes;
    node *nd = &g->nodes[i];
    memset(nd, 0, sizeof(*nd));
    if (!(nd->name = dup_str(d->name)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    nd->op = d->op;
    nd->p = d->p;
    nd->in[0] = d->x;
    nd->in[1] = d->x2;
    nd->y = d->y;
    nd->w = d->w;
    nd->b = d->b;
    nd->rm = d->running_mean;
    nd->rv = d->running_var;
    nd->out = DSV_NO_VALUE;
    if (!dsv_op_is_loss(d->op)) {
        if ((s = new_value(g, VAL_NODE, ond, os, i, &nd->out))) {
            free(nd->name);
            return s;
        }
    } else {
        g->loss_node = i;
    }
    g->nnodes++;
    for (int k = 0; k < 2; k++) {
        dsv_value v = nd->in[k];
        if (v < 0)
            continue;
        if (g->vals[v].first_use < 0)
            g->vals[v].first_use = i;
        g->vals[v].last_use = i;
    }
    if (nd->w >= 0)
        g->params[nd->w].used_by = i;
    if (nd->b >= 0)
        g->params[nd->b].used_by = i;
    if (out)
        *out = nd->out;
    return DSV_OK;
}

dsv_status dsv_graph_value_shape(const dsv_graph *g, dsv_value v, int64_t n,
                                 int *ndim, int64_t shape[DSV_MAX_DIMS])
{
    if (v < 0 || v >= g->nvals)
        return dsv_error(DSV_INVALID, "graph: no value %d", v);
    *ndim = g->vals[v].ndim;
    memcpy(shape, g->vals[v].shape, sizeof(int64_t) * DSV_MAX_DIMS);
    shape[0] = n;
    return DSV_OK;
}

static void fill_block(char *blk, dsv_dtype dt, int64_t off, int64_t n, double v)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSV_F32)
            ((float *)blk)[off + i] = (float)v;
        else
            ((double *)blk)[off + i] = v;
    }
}

static void reset_buffers(dsv_graph *g)
{
    for (int i = 0; i < g->nbufs; i++)
        fill_block(g->bblock, g->dtype, g->bufs[i].off, g->bufs[i].n, g->bufs[i].fill);
}

dsv_status dsv_graph_finalize(dsv_graph *g)
{
    dsv_status s = not_final(g, "finalize");
    if (s)
        return s;
    if (g->input < 0 || g->labels < 0 || g->loss_node < 0)
        return dsv_error(DSV_INVALID, "graph: needs an input, labels and a loss node");
    for (int v = 0; v < g->nvals; v++)
        if (g->vals[v].kind == VAL_NODE && g->vals[v].first_use < 0)
            return dsv_error(DSV_INVALID, "graph: the output of node '%s' is never used",
                             g->nodes[g->vals[v].producer].name);
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].used_by < 0)
            return dsv_error(DSV_INVALID, "graph: parameter %s is not used by any node",
                             g->params[i].name);
    /* the first consumer in backward order (the highest index) writes */
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < 2; k++) {
            dsv_value v = g->nodes[i].in[k];
            g->nodes[i].direct[k] =
                v >= 0 && g->vals[v].last_use == i && (k == 0 || g->nodes[i].in[0] != v);
        }
    size_t pb = (size_t)(g->np ? g->np : 1) * g->esz;
    size_t bb = (size_t)(g->nb ? g->nb : 1) * g->esz;
    g->pblock = dsv_alloc(pb);
    g->gblock = dsv_alloc(pb);
    g->bblock = dsv_alloc(bb);
    if (!g->pblock || !g->gblock || !g->bblock)
        return dsv_error(DSV_NOMEM, "graph: cannot allocate %zu parameter bytes", pb);
    memset(g->pblock, 0, pb);
    memset(g->gblock, 0, pb);
    memset(g->bblock, 0, bb);
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].kind == DSV_PARAM_GAMMA)
            fill_block(g->pblock, g->dtype, g->params[i].off, g->params[i].n, 1.0);
    reset_buffers(g);
    g->final = true;
    return DSV_OK;
}

void dsv_graph_init_params(dsv_graph *g, uint64_t seed, double weight_scale)
{
    uint64_t st = seed;
    for (int i = 0; i < g->nparams; i++) {
        const param *p = &g->params[i];
        if (p->kind != DSV_PARAM_WEIGHT) {
            fill_block(g->pblock, g->dtype, p->off, p->n,
                       p->kind == DSV_PARAM_GAMMA ? 1.0 : 0.0);
            continue;
        }
        for (int64_t j = 0; j < p->n; j += 2) {
            /* Box-Muller: two normals from two uniforms in (0, 1] x [0, 1) */
            double u1 = ((double)(splitmix64(&st) >> 11) + 1.0) * 0x1.0p-53;
            double u2 = (double)(splitmix64(&st) >> 11) * 0x1.0p-53;
            double r = sqrt(-2.0 * log(u1));
            double z0 = r * cos(2.0 * M_PI * u2), z1 = r * sin(2.0 * M_PI * u2);
            fill_block(g->pblock, g->dtype, p->off + j, 1, z0 * weight_scale);
            if (j + 1 < p->n)
                fill_block(g->pblock, g->dtype, p->off + j + 1, 1, z1 * weight_scale);
        }
    }
    reset_buffers(g);
    g->step = 0;
}

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
    if (is_bn(op) &&
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

/* ---- accessors -------------------------------------------------------------- */

int64_t dsv_graph_num_param_values(const dsv_graph *g) { return g->np; }
void *dsv_graph_params(dsv_graph *g) { return g->pblock; }
void *dsv_graph_grads(dsv_graph *g) { return g->gblock; }
int64_t dsv_graph_num_buffer_values(const dsv_graph *g) { return g->nb; }
void *dsv_graph_buffers(dsv_graph *g) { return g->bblock; }
int dsv_graph_num_params(const dsv_graph *g) { return g->nparams; }

const char *dsv_graph_param_name(const dsv_graph *g, int i)
{
    return i >= 0 && i < g->nparams ? g->params[i].name : NULL;
}

dsv_param_kind dsv_graph_param_kind(const dsv_graph *g, int i)
{
    return i >= 0 && i < g->nparams ? g->params[i].kind : DSV_PARAM_KIND_COUNT;
}

static dsv_tensor block_view(const dsv_graph *g, char *blk, int i)
{
    if (!blk || i < 0 || i >= g->nparams) {
        dsv_tensor t;
        memset(&t, 0, sizeof(t));
        return t;
    }
    const param *p = &g->params[i];
    return dsv_tensor_wrap(blk + (size_t)p->off * g->esz, g->dtype, p->ndim, p->shape);
}

dsv_tensor dsv_graph_param(dsv_graph *g, int i) { return block_view(g, g->pblock, i); }
dsv_tensor dsv_graph_grad(dsv_graph *g, int i) { return block_view(g, g->gblock, i); }

int dsv_graph_num_nodes(const dsv_graph *g) { return g->nnodes; }

const char *dsv_graph_node_name(const dsv_graph *g, int i)
{
    return i >= 0 && i < g->nnodes ? g->nodes[i].name : NULL;
}

int dsv_graph_find_node(const dsv_graph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

dsv_schedule dsv_graph_last_auto_choice(const dsv_graph *g) { return g->last_choice; }

void dsv_graph_get_stats(const dsv_graph *g, dsv_graph_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->plan_allocs = g->plan_allocs;
    s->num_plans = g->nplans;
    if (g->last) {
        s->planned_bytes = g->last->bytes;
        s->unshared_bytes = g->last->unshared;
    }
}

dsv_status dsv_graph_set_backward_hook(dsv_graph *g, int i, dsv_backward_hook fn,
                                       void *user)
{
    if (i < 0 || i >= g->nnodes || dsv_op_is_loss(g->nodes[i].op))
        return dsv_error(DSV_INVALID, "graph: no node %d with a backward", i);
    g->nodes[i].hook = fn;
    g->nodes[i].hook_user = user;
    return DSV_OK;
}

static dsv_node_desc desc_of(const dsv_graph *g, int i)
{
    const node *nd = &g->nodes[i];
    dsv_node_desc d = dsv_node_desc_make(nd->op, nd->name, nd->in[0]);
    d.p = nd->p;
    d.x2 = nd->in[1];
    d.y = nd->y;
    d.w = nd->w;
    d.b = nd->b;
    d.running_mean = nd->rm;
    d.running_var = nd->rv;
    return d;
}

dsv_status dsv_graph_describe(const dsv_graph *g, dsv_backend want, char *buf, size_t n)
{
    if (!buf || n == 0)
        return dsv_error(DSV_INVALID, "describe: no buffer");
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->nnodes; i++) {
        const node *nd = &g->nodes[i];
        dsv_backend f = nd->fwd_used, b = nd->bwd_used;
        if (!nd->ran_fwd || !nd->ran_bwd) {
            dsv_node_desc d = desc_of(g, i);
            dummies m;
            dsv_call c;
            int64_t os[DSV_MAX_DIMS] = {1, 1, 1, 1};
            int ond = 1;
            if (nd->out >= 0) {
                ond = g->vals[nd->out].ndim;
                memcpy(os, g->vals[nd->out].shape, sizeof(os));
            }
            dummy_call(g, &d, &m, &c, ond, os);
            if (!nd->ran_fwd)
                f = dsv_pick_backend(&c, false, want);
            if (!nd->ran_bwd && !dsv_op_is_loss(nd->op))
                b = dsv_pick_backend(&c, true, want);
        }
        int k = snprintf(buf + used, n - used, "%s %s %s/%s\n", nd->name,
                         dsv_op_name(nd->op), dsv_backend_name(f),
                         dsv_op_is_loss(nd->op) ? "-" : dsv_backend_name(b));
        if (k < 0 || (size_t)k >= n - used)
            return dsv_error(DSV_INVALID, "describe: buffer of %zu bytes is too small", n);
        used += (size_t)k;
    }
    return DSV_OK;
}

/* ---- memory planning -------------------------------------------------------- */

typedef struct pbuf {
    size_t size, off;
    int s, e; /* lifetime, inclusive, in steps or segments */
} pbuf;

/* Places every buffer at the lowest offset where it does not overlap, in
 * memory, a placed buffer whose lifetime overlaps its own (largest first).
 * Returns the arena size. */
static size_t place_buffers(pbuf *b, int n)
{
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    int *cand = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!order || !cand) {
        free(order);
        free(cand);
        return SIZE_MAX;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* insertion sort: sizes descending, index ascending (deterministic) */
    for (int i = 1; i < n; i++) {
        int k = order[i], j = i - 1;
        while (j >= 0 && (b[order[j]].size < b[k].size ||
                          (b[order[j]].size == b[k].size && order[j] > k))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    size_t total = 0;
    for (int oi = 0; oi < n; oi++) {
        pbuf *me = &b[order[oi]];
        int nc = 0;
        for (int pj = 0; pj < oi; pj++) {
            const pbuf *o = &b[order[pj]];
            if (o->s <= me->e && me->s <= o->e)
                cand[nc++] = order[pj];
        }
        for (int i = 1; i < nc; i++) { /* by offset */
            int k = cand[i], j = i - 1;
            while (j >= 0 && b[cand[j]].off > b[k].off) {
                cand[j + 1] = cand[j];
                j--;
            }
            cand[j + 1] = k;
        }
        size_t off = 0;
        for (int i = 0; i < nc; i++) {
            const pbuf *o = &b[cand[i]];
            if (off + me->size <= o->off)
                break;
            if (o->off + o->size > off)
                off = o->off + o->size;
        }
        me->off = off;
        if (off + me->size > total)
            total = off + me->size;
    }
    free(order);
    free(cand);
    return total;
}

static size_t round64(size_t x) { return (x + 63) / 64 * 64; }

/* Backward step of node i: the loss node's forward (which also makes the
 * scores' gradient) is step K-1, the node before it runs backward at K. */
static int bstep(int K, int i) { return 2 * K - 2 - i; }

static bool barrier_at(const dsv_graph *g, bool train, int i)
{
    return train && is_bn(g->nodes[i].op);
}

/* Segment of a step: barriers split the timeline; a barrier node's own step is
 * a segment of its own. Under the layer schedule every step is a segment. */
static int seg_of(const dsv_graph *g, const plan *p, int step)
{
    if (!p->batch)
        return step;
    int K = g->nnodes, seg = 0;
    for (int t = 0; t < step; t++) {
        int i = t < K ? t : 2 * K - 2 - t;
        if (barrier_at(g, p->train, i))
            seg += 2;
    }
    int i = step < K ? step : 2 * K - 2 - step;
    return seg + (barrier_at(g, p->train, i) ? 1 : 0);
}

static dsv_status plan_make(dsv_graph *g, int64_t n, bool train, bool batch, int threads,
                            plan **out)
{
    int K = g->nnodes, V = g->nvals;
    plan *p = calloc(1, sizeof(*p));
    pbuf *bufs = calloc((size_t)(2 * V + 2 * K + 1), sizeof(pbuf));
    int *who = calloc((size_t)(2 * V + 2 * K + 1), sizeof(int));
    if (!p || !bufs || !who)
        goto nomem;
    p->n = n;
    p->train = train;
    p->batch = batch;
    p->threads = batch ? threads : 0;
    p->act_off = calloc((size_t)V, sizeof(size_t));
    p->grad_off = calloc((size_t)V, sizeof(size_t));
    p->tmp_off = calloc((size_t)(2 * K), sizeof(size_t));
    p->tloss = calloc((size_t)(threads > 0 ? threads : 1), sizeof(double));
    p->errs = calloc((size_t)(threads > 0 ? threads : 1), sizeof(thread_err));
    if (!p->act_off || !p->grad_off || !p->tmp_off || !p->tloss || !p->errs)
        goto nomem;

    /* who[k]: 0..V-1 activation of value, V..2V-1 gradient, 2V.. temp */
    int nb = 0;
    for (int v = 0; v < V; v++) {
        const value *val = &g->vals[v];
        if (val->kind != VAL_NODE)
            continue;
        size_t sz = round64((size_t)n * (size_t)val->row * g->esz);
        int prod = val->producer;
        if (train) {
            bufs[nb] = (pbuf){sz, 0, prod, bstep(K, val->first_use)};
            who[nb++] = v;
            bufs[nb] = (pbuf){sz, 0, bstep(K, val->last_use), bstep(K, prod)};
            who[nb++] = V + v;
        } else {
            int end = val->last_use == g->loss_node ? K : val->last_use;
            bufs[nb] = (pbuf){sz, 0, prod, end};
            who[nb++] = v;
        }
    }
    if (train)
        for (int i = 0; i < K; i++)
            for (int k = 0; k < 2; k++) {
                dsv_value v = g->nodes[i].in[k];
                if (v < 0 || g->vals[v].kind != VAL_NODE || g->nodes[i].direct[k])
                    continue;
                size_t sz = round64((size_t)n * (size_t)g->vals[v].row * g->esz);
                bufs[nb] = (pbuf){sz, 0, bstep(K, i), bstep(K, i)};
                who[nb++] = 2 * V + 2 * i + k;
            }
    for (int k = 0; k < nb; k++) {
        p->unshared += bufs[k].size;
        bufs[k].s = seg_of(g, p, bufs[k].s);
        bufs[k].e = seg_of(g, p, bufs[k].e);
    }
    p->bytes = place_buffers(bufs, nb);
    if (p->bytes == SIZE_MAX)
        goto nomem;
    for (int k = 0; k < nb; k++) {
        int w = who[k];
        if (w < V)
            p->act_off[w] = bufs[k].off;
        else if (w < 2 * V)
            p->grad_off[w - V] = bufs[k].off;
        else
            p->tmp_off[w - 2 * V] = bufs[k].off;
    }
    p->arena = dsv_alloc(p->bytes ? p->bytes : 64);
    if (!p->arena)
        goto nomem;
    if (batch && train && threads > 1) {
        size_t gb = (size_t)(threads - 1) * (size_t)g->np * g->esz;
        p->tgrads = dsv_alloc(gb ? gb : 64);
        if (!p->tgrads)
            goto nomem;
        memset(p->tgrads, 0, gb); /* batch-norm entries stay zero */
    }
    free(bufs);
    free(who);
    g->plan_allocs++;
    *out = p;
    return DSV_OK;
nomem:
    free(bufs);
    free(who);
    plan_free(p);
    return dsv_error(DSV_NOMEM, "graph: cannot allocate activation memory for batch %lld",
                     (long long)n);
}

static dsv_status plan_get(dsv_graph *g, int64_t n, bool train, bool batch, int threads,
                           plan **out)
{
    int key_threads = batch ? threads : 0;
    g->clock++;
    for (int i = 0; i < g->nplans; i++) {
        plan *p = g->plans[i];
        if (p->n == n && p->train == train && p->batch == batch &&
            p->threads == key_threads) {
            p->last_used = g->clock;
            *out = p;
            return DSV_OK;
        }
    }
    plan *p = NULL;
    dsv_status s = plan_make(g, n, train, batch, threads, &p);
    if (s)
        return s;
    p->last_used = g->clock;
    if (g->nplans == MAX_PLANS) { /* evict the least recently used */
        int lru = 0;
        for (int i = 1; i < g->nplans; i++)
            if (g->plans[i]->last_used < g->plans[lru]->last_used)
                lru = i;
        if (g->last == g->plans[lru])
            g->last = NULL;
        plan_free(g->plans[lru]);
        g->plans[lru] = g->plans[--g->nplans];
    }
    g->plans[g->nplans++] = p;
    *out = p;
    return DSV_OK;
}

/* Makes room for `sets` slot sets per node, keeping existing states. */
static dsv_status ensure_sets(dsv_graph *g, int sets)
{
    if (sets <= g->nsets)
        return DSV_OK;
    for (int i = 0; i < g->nnodes; i++) {
        node *nd = &g->nodes[i];
        dsv_state *s = realloc(nd->slots, sizeof(dsv_state) * 2 * (size_t)sets);
        if (!s)
            return dsv_error(DSV_NOMEM, "graph: out of memory");
        memset(s + 2 * g->nsets, 0, sizeof(dsv_state) * 2 * (size_t)(sets - g->nsets));
        nd->slots = s;
    }
    g->nsets = sets;
    return DSV_OK;
}

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
    return block_view(g, blk, id);
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
    return splitmix64(&s);
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

static dsv_status fwd_node(ctx *cx, int i)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i];
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
    dsv_status s = dsv_forward(&c, cx->want, &used);
    if (s)
        return node_error(s, nd->name);
    if (cx->set <= 1) { /* layer schedule or batch thread 0 */
        nd->fwd_used = used;
        nd->ran_fwd = true;
    }
    if (dsv_op_is_loss(nd->op)) {
        double frac = (double)cx->nr / (double)cx->pl->n;
        cx->loss = loss * frac;
        if (cx->train && cx->nr != cx->pl->n)
            scale_tensor(&t.dx, frac);
    }
    return DSV_OK;
}

static dsv_status bwd_node(ctx *cx, int i)
{
    dsv_graph *g = cx->g;
    node *nd = &g->nodes[i];
    dsv_call c;
    call_tensors t;
    setup_call(cx, i, &c, &t);
    /* no c.out: the output's memory may already hold a gradient by now */
    t.dout = val_view(cx, nd->out, true);
    c.dout = &t.dout;
    dsv_tensor *dxs[2] = {&t.dx, &t.dx2};
    for (int k = 0; k < 2; k++) {
        dsv_value v = nd->in[k];
        if (v < 0 || g->vals[v].kind != VAL_NODE)
            continue;
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
    dsv_status s = nd->hook ? nd->hook(&c, cx->want, nd->hook_user)
                            : dsv_backward(&c, cx->want, &used);
    if (s)
        return node_error(s, nd->name);
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
        if ((s = bwd_node(&cx, i)))
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

static dsv_status run_batch(dsv_graph *g, plan *pl, const dsv_exec_options *o,
                            const dsv_tensor *x, const dsv_tensor *y, double *loss)
{
    int T = pl->threads, K = g->nnodes;
    int64_t N = pl->n;
    thread_err *errs = pl->errs;
    memset(errs, 0, sizeof(thread_err) * (size_t)T);
    int team = T;
    size_t gbytes = (size_t)g->np * g->esz;
    /* (omp single/master would do; the master runs barrier nodes so that they
       always use slot set 1 and write the main gradient block) */
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp master
        team = nt;
        ctx cx = {.g = g, .pl = pl, .x = x, .y = y, .n0 = N * t / nt,
                  .nr = N * (t + 1) / nt - N * t / nt, .nthreads = 1, .set = 1 + t,
                  .train = pl->train, .want = o->backend,
                  .grads = t == 0 ? g->gblock : pl->tgrads + (size_t)(t - 1) * gbytes};
        ctx full = cx;
        full.n0 = 0;
        full.nr = N;
        thread_err *e = &errs[t];
        for (int i = 0; i < K; i++) {
            if (!pl->train && i == g->loss_node)
                break;
            if (barrier_at(g, pl->train, i)) {
#pragma omp barrier
#pragma omp master
                if (!e->s)
                    record(e, fwd_node(&full, i));
#pragma omp barrier
            } else if (!e->s) {
                record(e, fwd_node(&cx, i));
            }
        }
        if (pl->train) {
            pl->tloss[t] = cx.loss;
            for (int i = K - 2; i >= 0; i--) {
                if (barrier_at(g, pl->train, i)) {
#pragma omp barrier
#pragma omp master
                    if (!e->s)
                        record(e, bwd_node(&full, i));
#pragma omp barrier
                } else if (!e->s) {
                    record(e, bwd_node(&cx, i));
                }
            }
        }
    }
    dsv_status s = DSV_OK;
    for (int t = 0; t < team && !s; t++)
        if (errs[t].s)
            s = dsv_error(errs[t].s, "%s", errs[t].msg);
    if (s || !pl->train)
        return s;
    double l = 0;
    for (int t = 0; t < team; t++)
        l += pl->tloss[t];
    *loss = l;
    for (int t = 1; t < team; t++) /* fixed order: deterministic */
        add_into(g->dtype, g->gblock, pl->tgrads + (size_t)(t - 1) * gbytes, g->np);
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

static int team_size(const dsv_exec_options *o, int64_t n)
{
    int T = o->threads > 0 ? o->threads : dsv_get_num_threads();
    return (int64_t)T > n ? (int)n : T;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dsv_status run(dsv_graph *g, const dsv_exec_options *o, dsv_schedule sched,
                      bool train, const dsv_tensor *x, const dsv_tensor *y, double *loss)
{
    int64_t n = x->shape[0];
    int T = team_size(o, n);
    bool batch = sched == DSV_SCHEDULE_BATCH && T > 1;
    dsv_status s = ensure_sets(g, 1 + T);
    plan *pl;
    if (s || (s = plan_get(g, n, train, batch, T, &pl)))
        return s;
    g->last = pl;
    if (train)
        memset(g->gblock, 0, (size_t)g->np * g->esz);
    s = batch ? run_batch(g, pl, o, x, y, loss) : run_layer(g, pl, o, T, x, y, loss);
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

static double reg_block_f32(const float *w, float *dw, int64_t n, double reg)
{
    double s[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            const double v = w[j + l];
            s[l] += v * v;
            dw[j + l] += (float)(reg * v);
        }
    double t = 0;
    for (; j < n; j++) {
        const double v = w[j];
        t += v * v;
        dw[j] += (float)(reg * v);
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

static double reg_block_f64(const double *w, double *dw, int64_t n, double reg)
{
    double s[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            s[l] += w[j + l] * w[j + l];
            dw[j + l] += reg * w[j + l];
        }
    double t = 0;
    for (; j < n; j++) {
        t += w[j] * w[j];
        dw[j] += reg * w[j];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* Block b of the weights (counted over the weight tensors in order): its
 * regularisation, returning its sum of squares. */
static double reg_block(dsv_graph *g, int64_t b, double reg)
{
    int64_t first = 0, nb = 0;
    const param *p = NULL;
    for (int i = 0; i < g->nparams; i++) { /* a model has a few weights */
        if (g->params[i].kind != DSV_PARAM_WEIGHT)
            continue;
        p = &g->params[i];
        nb = (p->n + REG_BLOCK - 1) / REG_BLOCK;
        if (b < first + nb)
            break;
        first += nb;
    }
    const int64_t j0 = (b - first) * REG_BLOCK;
    const int64_t n = p->n - j0 < REG_BLOCK ? p->n - j0 : REG_BLOCK;
    if (g->dtype == DSV_F32)
        return reg_block_f32((const float *)g->pblock + p->off + j0,
                             (float *)g->gblock + p->off + j0, n, reg);
    return reg_block_f64((const double *)g->pblock + p->off + j0,
                         (double *)g->gblock + p->off + j0, n, reg);
}

static void add_reg(dsv_graph *g, const dsv_exec_options *o, double reg, double *loss)
{
    if (reg == 0)
        return;
    int64_t nblocks = 0;
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].kind == DSV_PARAM_WEIGHT)
            nblocks += (g->params[i].n + REG_BLOCK - 1) / REG_BLOCK;
    /* up to REG_GROUP blocks (8M weights) per parallel region, their sums
       kept here and added in block order */
    enum { REG_GROUP = 512 };
    double sums[REG_GROUP], sum = 0;
    for (int64_t b0 = 0; b0 < nblocks; b0 += REG_GROUP) {
        const int64_t nb = nblocks - b0 < REG_GROUP ? nblocks - b0 : REG_GROUP;
        const int nt = team_size(o, nb);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t k = 0; k < nb; k++)
            sums[k] = reg_block(g, b0 + k, reg);
        for (int64_t k = 0; k < nb; k++)
            sum += sums[k];
    }
    *loss += 0.5 * reg * sum;
}

dsv_status dsv_graph_train_step(dsv_graph *g, const dsv_exec_options *o,
                                const dsv_tensor *x, const dsv_tensor *y, double reg,
                                double *loss)
{
    dsv_status s;
    if ((s = check_options(o)) || (s = check_inputs(g, x, y)))
        return s;
    if (!y)
        return dsv_error(DSV_INVALID, "training needs labels y");
    if (!(reg >= 0) || !isfinite(reg))
        return dsv_error(DSV_INVALID, "reg must be >= 0, got %g", reg);
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
    add_reg(g, o, reg, &l);
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
