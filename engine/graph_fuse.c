/*
 * Fused sandwiches: a planning pass that finds conv -> relu and affine ->
 * relu pairs the executor may run as one node, and the per-run decision.
 *
 * A pair fuses when the relu is the very next node, reads the conv's (or
 * affine's) output as its only input and is that output's only consumer, so
 * nothing else reads the intermediate tensor. Running fused, the head's
 * kernel writes relu(op(x)) straight into the relu's output (the relu
 * applied tile by tile while the tile is in cache: forward_relu in the
 * backend table), the relu's forward is skipped, and the relu's backward
 * takes its mask from that output (y > 0 exactly where op(x) > 0), so values
 * and gradients are the unfused chain's, bit for bit.
 *
 * A max pool that is the relu's only reader joins a fused conv pair
 * (conv_relu_pool): the head's kernel pools each image as soon as its relu
 * is applied, while the image is in cache (forward_relu_pool), and the
 * pool's forward is skipped. Training still writes the relu's output, which
 * both backwards read, and keeps the pool's argmax in the pool's state as
 * its own forward would; inference may skip writing it. The pool's passes
 * must pick the head's backend. Its values are the pool's own. In training
 * the pool's backward then also does the relu's (backward_relu: its dx
 * masked by relu's output > 0 plane by plane, written straight into the
 * conv's output gradient), and the relu's backward is skipped, when the
 * relu's backward would run on the pool's backend and neither node has a
 * backward hook.
 *
 * What must stay true: fusion is an execution detail. Nodes, parameters,
 * checkpoints and model files do not change; whether a pattern may fuse is
 * a flag per pattern (defaults measured in bench/RESULTS.md; DASECV_FUSE=0
 * or 1 at graph finalize turns all off or on) carried in the execution
 * plan; conv_relu_pool needs conv_relu too. A pair fuses in a run only when
 * the head's picked backend offers forward_relu; the memory plan keeps the
 * relu's output alive from the head's step to the relu's backward, a
 * joining pool's output from the head's step on, and the conv's output
 * gradient from the pool's backward on, whether or not a run fuses.
 */
#include <stdlib.h>
#include <string.h>

#include "graph_priv.h"
#include "internal/backend_table.h"

static const char *const fuse_names[DSV_FUSE_COUNT] = {"conv_relu", "affine_relu",
                                                        "conv_relu_pool"};
_Static_assert(sizeof(fuse_names) / sizeof(fuse_names[0]) == DSV_FUSE_COUNT,
               "a name per fusion pattern");

/* Patterns on by default: where fusing measured faster (bench/RESULTS.md,
 * "Fused sandwiches"): both, once batch-1 inference streamed its affine
 * weights at full speed (before, neither paid consistently). A plan's
 * `fuse` lines or DASECV_FUSE=0 turn them off. */
static const bool fuse_default[DSV_FUSE_COUNT] = {true, true, true};

const char *dsv_graph_fuse_name_(int pattern)
{
    return pattern >= 0 && pattern < DSV_FUSE_COUNT ? fuse_names[pattern] : "unknown";
}

int dsv_graph_fuse_from_name_(const char *name)
{
    for (int k = 0; k < DSV_FUSE_COUNT; k++)
        if (!strcmp(name, fuse_names[k]))
            return k;
    return -1;
}

void dsv_graph_fuse_pass_(dsv_graph *g)
{
    const char *env = getenv("DASECV_FUSE");
    for (int k = 0; k < DSV_FUSE_COUNT; k++)
        g->fuse_on[k] = env && !strcmp(env, "0")   ? false
                        : env && !strcmp(env, "1") ? true
                                                   : fuse_default[k];
    for (int i = 0; i < g->nnodes; i++) {
        g->nodes[i].fuse_pattern = -1;
        g->nodes[i].fuse_head = -1;
        g->nodes[i].fuse_pool = -1;
        g->nodes[i].fused = g->nodes[i].pool_fused = g->nodes[i].bwd_fused = false;
    }
    for (int i = 0; i + 1 < g->nnodes; i++) {
        node *h = &g->nodes[i], *r = &g->nodes[i + 1];
        if ((h->op != DSV_OP_CONV && h->op != DSV_OP_AFFINE) || r->op != DSV_OP_RELU ||
            h->fuse_head >= 0)
            continue;
        const value *a = &g->vals[h->out];
        if (r->in[0] != h->out || r->in[1] >= 0 || a->first_use != i + 1 ||
            a->last_use != i + 1)
            continue;
        h->fuse_pattern = h->op == DSV_OP_CONV ? DSV_FUSE_CONV_RELU : DSV_FUSE_AFFINE_RELU;
        r->fuse_head = i;
        /* a max pool that is the relu's only reader may join a conv pair */
        if (h->op != DSV_OP_CONV || i + 2 >= g->nnodes)
            continue;
        node *p = &g->nodes[i + 2];
        const value *ro = &g->vals[r->out];
        if (p->op == DSV_OP_MAX_POOL && p->in[0] == r->out && p->in[1] < 0 &&
            ro->first_use == i + 2 && ro->last_use == i + 2) {
            h->fuse_pool = i + 2;
            p->fuse_head = i;
        }
    }
}

void dsv_graph_set_fusion(dsv_graph *g, int pattern, bool on)
{
    if (pattern < 0) {
        for (int k = 0; k < DSV_FUSE_COUNT; k++)
            g->fuse_on[k] = on;
    } else if (pattern < DSV_FUSE_COUNT) {
        g->fuse_on[pattern] = on;
    }
}

bool dsv_graph_node_bwd_fused(const dsv_graph *g, int i)
{
    if (i < 0 || i >= g->nnodes)
        return false;
    const node *nd = &g->nodes[i];
    return nd->op != DSV_OP_CONV && nd->fuse_head >= 0 && g->nodes[nd->fuse_head].bwd_fused;
}

bool dsv_graph_node_fused(const dsv_graph *g, int i)
{
    if (i < 0 || i >= g->nnodes)
        return false;
    const node *nd = &g->nodes[i];
    if (nd->fuse_head < 0)
        return nd->fused;
    const node *h = &g->nodes[nd->fuse_head];
    return h->fuse_pool == i ? h->pool_fused : h->fused;
}
