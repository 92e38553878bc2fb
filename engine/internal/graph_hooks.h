/*
 * Test hooks of the graph engine: the tests use them to break a node's
 * backward on purpose and see the gradient checks fail. Not installed.
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

#endif
