/*
 * Test hooks of the graph engine: the tests use them to break a node's
 * backward on purpose and see the gradient checks fail, and to switch
 * fusion and see whether it happened. Not installed.
 */
#ifndef DASECV_INTERNAL_GRAPH_HOOKS_H
#define DASECV_INTERNAL_GRAPH_HOOKS_H

#include "dasecv/graph.h"

/* Runs fn instead of dsv_backward for node i (fn may call dsv_backward itself
 * and then alter the gradients). NULL removes it. */
typedef dsv_status (*dsv_backward_hook)(dsv_call *c, dsv_backend want,
                                        void *user);
dsv_status dsv_graph_set_backward_hook(dsv_graph *g, int node,
                                       dsv_backward_hook fn, void *user);

/* Allows or forbids fusing one pattern (0 conv+relu, 1 affine+relu, 2 a
 * max pool joining conv+relu; -1: all), as a plan's "fuse" lines do. */
void dsv_graph_set_fusion(dsv_graph *g, int pattern, bool on);
/* Whether node i (a head or its relu) ran fused in the last run. */
bool dsv_graph_node_fused(const dsv_graph *g, int i);
/* Whether node i (a relu or max pool of a fused conv+relu+pool) ran its
 * backward fused in the last training run: the pool's backward did the
 * relu's too. */
bool dsv_graph_node_bwd_fused(const dsv_graph *g, int i);

#endif
