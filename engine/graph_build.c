/*
 * Building a graph: create/destroy, values, parameters, buffers and nodes
 * (each checked with dsv_op_check when added, so a bad network fails here
 * with the node's name), finalize (the parameter, gradient and buffer
 * blocks), weight initialisation, accessors and the backend listing.
 *
 * What must stay true: nothing here runs a kernel (shape checks and backend
 * questions use one-row stand-in tensors); the parameter block is packed in
 * declaration order, and init_params draws every weight from one
 * splitmix64/Box-Muller stream in that order, so a given seed gives the same
 * weights on every machine.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph_priv.h"
#include "internal/graph_limits.h"
#include "internal/check.h"
#include "internal/rng.h"
#include "internal/arrays.h"
#include "internal/backend_table.h"

/* ---- small helpers --------------------------------------------------------- */

dsv_status dsv_graph_node_error_(dsv_status s, const char *name)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
    return dsv_error(s, "node '%s': %s", name, msg);
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
        dsv_graph_plan_free_(g->plans[i]);
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
    if (!dsv_grow_((void **)&g->vals, &g->cap_vals, g->nvals + 1, sizeof(value)))
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
    int64_t shape[DSV_MAX_DIMS] = {1, 1, 1, 1}, row = 1;
    for (int d = 0; d < ndim; d++) {
        if (sample_shape[d] < 1 || sample_shape[d] > (1 << 24))
            return dsv_error(DSV_INVALID, "graph: input dimension %d is %lld", d + 1,
                             (long long)sample_shape[d]);
        shape[d + 1] = sample_shape[d];
        /* a sample of 8-byte values must have a size in bytes */
        if (!dsv_mul_ok(row, sample_shape[d], &row) || row > INT64_MAX / 8)
            return dsv_error(DSV_INVALID, "graph: input sample of %d dimensions is too large",
                             ndim);
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
    if (!dsv_grow_((void **)&g->params, &g->cap_params, g->nparams + 1, sizeof(param)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    param *p = &g->params[g->nparams];
    if (!(p->name = dsv_strdup_(name)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    p->ndim = ndim;
    for (int d = 0; d < DSV_MAX_DIMS; d++)
        p->shape[d] = d < ndim ? shape[d] : 1;
    p->n = n;
    p->off = g->np;
    p->kind = kind;
    p->std = NAN;
    p->used_by = -1;
    g->np += n; /* packed: the block is exactly the parameters */
    *id = g->nparams++;
    return DSV_OK;
}

dsv_status dsv_graph_set_param_std(dsv_graph *g, int id, double std)
{
    dsv_status s = not_final(g, "set a parameter's std");
    if (s)
        return s;
    if (id < 0 || id >= g->nparams)
        return dsv_error(DSV_INVALID, "graph: no parameter %d", id);
    if (g->params[id].kind != DSV_PARAM_WEIGHT)
        return dsv_error(DSV_INVALID, "graph: parameter %s is not a weight",
                         g->params[id].name);
    /* NaN restores the default; otherwise a finite, non-negative scale */
    if (!isnan(std) && !(std >= 0 && isfinite(std)))
        return dsv_error(DSV_INVALID, "graph: parameter %s: std %g is not finite and >= 0",
                         g->params[id].name, std);
    g->params[id].std = std;
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
    if (!dsv_grow_((void **)&g->bufs, &g->cap_bufs, g->nbufs + 1, sizeof(buffer)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    buffer *b = &g->bufs[g->nbufs];
    if (!(b->name = dsv_strdup_(name)))
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
    if (dsv_graph_is_bn_(d->op) && (d->running_mean < 0 || d->running_var < 0))
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
        return dsv_graph_node_error_(s, d->name);

    if (!dsv_grow_((void **)&g->nodes, &g->cap_nodes, g->nnodes + 1, sizeof(node)))
        return dsv_error(DSV_NOMEM, "graph: out of memory");
    int i = g->nnodes;
    node *nd = &g->nodes[i];
    memset(nd, 0, sizeof(*nd));
    if (!(nd->name = dsv_strdup_(d->name)))
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

static _Thread_local int64_t limit_params = -1, limit_buffers = -1;

void dsv_graph_limit_blocks_(int64_t max_params, int64_t max_buffers)
{
    limit_params = max_params;
    limit_buffers = max_buffers;
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
    if ((limit_params >= 0 && g->np > limit_params) ||
        (limit_buffers >= 0 && g->nb > limit_buffers))
        return dsv_error(DSV_CORRUPT,
                         "graph: %lld parameters and %lld buffers, more than the %lld and "
                         "%lld stored for it",
                         (long long)g->np, (long long)g->nb, (long long)limit_params,
                         (long long)limit_buffers);
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
    dsv_graph_fuse_pass_(g);
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
        double scale = isnan(p->std) ? weight_scale : p->std;
        for (int64_t j = 0; j < p->n; j += 2) {
            /* Box-Muller: two normals from two uniforms in (0, 1] x [0, 1) */
            double u1 = ((double)(dsv_splitmix64(&st) >> 11) + 1.0) * 0x1.0p-53;
            double u2 = (double)(dsv_splitmix64(&st) >> 11) * 0x1.0p-53;
            double r = sqrt(-2.0 * log(u1));
            double z0 = r * cos(2.0 * M_PI * u2), z1 = r * sin(2.0 * M_PI * u2);
            fill_block(g->pblock, g->dtype, p->off + j, 1, z0 * scale);
            if (j + 1 < p->n)
                fill_block(g->pblock, g->dtype, p->off + j + 1, 1, z1 * scale);
        }
    }
    reset_buffers(g);
    g->step = 0;
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

dsv_status dsv_graph_param_shape(const dsv_graph *g, int i, int *ndim,
                                 int64_t shape[DSV_MAX_DIMS])
{
    if (i < 0 || i >= g->nparams)
        return dsv_error(DSV_INVALID, "graph: no parameter %d", i);
    *ndim = g->params[i].ndim;
    memcpy(shape, g->params[i].shape, sizeof(int64_t) * DSV_MAX_DIMS);
    return DSV_OK;
}

dsv_tensor dsv_graph_block_view_(const dsv_graph *g, char *blk, int i)
{
    if (!blk || i < 0 || i >= g->nparams) {
        dsv_tensor t;
        memset(&t, 0, sizeof(t));
        return t;
    }
    const param *p = &g->params[i];
    return dsv_tensor_wrap(blk + (size_t)p->off * g->esz, g->dtype, p->ndim, p->shape);
}

dsv_tensor dsv_graph_param(dsv_graph *g, int i) { return dsv_graph_block_view_(g, g->pblock, i); }
dsv_tensor dsv_graph_grad(dsv_graph *g, int i) { return dsv_graph_block_view_(g, g->gblock, i); }

int dsv_graph_num_buffers(const dsv_graph *g) { return g->nbufs; }

const char *dsv_graph_buffer_name(const dsv_graph *g, int i)
{
    return i >= 0 && i < g->nbufs ? g->bufs[i].name : NULL;
}

dsv_tensor dsv_graph_buffer(dsv_graph *g, int i)
{
    if (!g->bblock || i < 0 || i >= g->nbufs) {
        dsv_tensor t;
        memset(&t, 0, sizeof(t));
        return t;
    }
    int64_t n = g->bufs[i].n;
    return dsv_tensor_wrap(g->bblock + (size_t)g->bufs[i].off * g->esz, g->dtype, 1, &n);
}

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

dsv_status dsv_graph_node_info(const dsv_graph *g, int i, dsv_node_desc *d, dsv_value *out)
{
    if (i < 0 || i >= g->nnodes)
        return dsv_error(DSV_INVALID, "graph: no node %d", i);
    *d = desc_of(g, i);
    if (out)
        *out = g->nodes[i].out;
    return DSV_OK;
}

dsv_status dsv_graph_node_backends(const dsv_graph *g, int i, dsv_backend want,
                                   dsv_backend *fwd, dsv_backend *bwd)
{
    if (i < 0 || i >= g->nnodes)
        return dsv_error(DSV_INVALID, "graph: no node %d", i);
    const node *nd = &g->nodes[i];
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
    /* the stand-in call has none of a run's batch sizes and thread counts,
       the keys of timed decisions: those passes are just "auto" */
    if (fwd)
        *fwd = dsv_auto_timed(&c, false, want) ? DSV_BACKEND_AUTO
                                               : dsv_pick_backend(&c, false, want);
    if (bwd)
        *bwd = dsv_op_is_loss(nd->op)           ? DSV_BACKEND_COUNT
               : dsv_auto_timed(&c, true, want) ? DSV_BACKEND_AUTO
                                                : dsv_pick_backend(&c, true, want);
    return DSV_OK;
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
            dsv_backend pf, pb;
            dsv_graph_node_backends(g, i, want, &pf, &pb);
            if (!nd->ran_fwd)
                f = pf;
            if (!nd->ran_bwd && !dsv_op_is_loss(nd->op))
                b = pb;
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

