/*
 * The graph engine's shared state: the struct behind dsv_graph, its values,
 * parameters, buffers, nodes and memory plans, and the few functions the
 * graph files call across each other. Not installed.
 *
 * The graph is built (graph_build.c, graph_builders.c), its activation memory
 * planned per batch shape (graph_plan.c) and run (graph_exec.c). What must
 * stay true across them:
 *  - Parameters, gradients and buffers are three flat blocks; tensors handed
 *    out are views into them.
 *  - A plan (per batch size, mode, schedule, thread count) is made once and
 *    reused: the steady state allocates nothing.
 *  - A value read by several nodes gets the SUM of their gradients: the last
 *    consumer (first in backward order) writes the gradient, the others write
 *    a temporary that is added in.
 *  - Results do not depend on timing: per-thread gradient blocks are summed
 *    in thread order, losses likewise.
 */
#ifndef DASECV_GRAPH_PRIV_H
#define DASECV_GRAPH_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "dasecv/graph.h"
#include "internal/dist.h"
#include "internal/graph_hooks.h"

#define MAX_PLANS 8

/* Fusion patterns (graph_fuse.c). */
enum { DSV_FUSE_CONV_RELU = 0, DSV_FUSE_AFFINE_RELU, DSV_FUSE_CONV_RELU_POOL, DSV_FUSE_COUNT };
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
    double std; /* weights: NaN means the weight_scale of init_params */
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
    /* fusion (graph_fuse.c): at a head, its dsv_fuse_pattern or -1; at a
       relu fused into the node before (or a max pool after such a relu),
       the head's index, else -1; fused: this head's pair runs fused in the
       current run. A conv head whose relu is followed by a max pool that
       may join it: fuse_pool, that pool's index (else -1), pool_fused when
       it runs in the head's kernel too, and bwd_fused when (training) the
       pool's backward also does the relu's, straight into the conv's
       output gradient. */
    int fuse_pattern, fuse_head, fuse_pool;
    bool fused, pool_fused, bwd_fused;
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
    /* data-parallel training (internal/dist.h); off while auto calibrates */
    dsv_dist_hooks dist;
    bool has_dist;
    int64_t global_batch; /* 0: each call's rows */
    bool fuse_on[DSV_FUSE_COUNT]; /* patterns allowed to fuse (the plan's) */
};

static inline bool dsv_graph_is_bn_(dsv_op op)
{
    const dsv_op_info *in = dsv_op_get_info(op);
    return in && in->batch_stats;
}

/* Under the batch schedule, training runs batch norm nodes once on the whole
 * batch, with all threads, between two parallel regions over the slices. */
static inline bool dsv_graph_barrier_at_(const dsv_graph *g, bool train, int i)
{
    return train && dsv_graph_is_bn_(g->nodes[i].op);
}

/* graph_build.c */
/* Re-raises this thread's last message with the node's name in front. */
dsv_status dsv_graph_node_error_(dsv_status s, const char *name);
/* View of parameter i in a block laid out as the parameters (values or
 * gradients); a zeroed tensor for a bad index or a missing block. */
dsv_tensor dsv_graph_block_view_(const dsv_graph *g, char *blk, int i);

/* graph_fuse.c */
/* Marks the fusable pairs and sets the patterns' defaults (finalize). */
void dsv_graph_fuse_pass_(dsv_graph *g);
const char *dsv_graph_fuse_name_(int pattern);
/* The pattern named name, or -1. */
int dsv_graph_fuse_from_name_(const char *name);

/* graph_plan.c */
/* The plan for (n, train, batch, threads), made on first use and cached (the
 * least recently used one evicted beyond MAX_PLANS). */
dsv_status dsv_graph_plan_get_(dsv_graph *g, int64_t n, bool train, bool batch,
                               int threads, plan **out);
void dsv_graph_plan_free_(plan *p);
/* Makes room for `sets` slot sets per node, keeping existing states. */
dsv_status dsv_graph_ensure_sets_(dsv_graph *g, int sets);

#endif
