/*
 * A cap on the parameter and buffer counts of the graphs the calling thread
 * finalizes next. A checkpoint states its counts (checked against the
 * file's size) before its model text is built; with the cap, a text that
 * declares a larger network is refused before its blocks are allocated,
 * instead of allocating gigabytes for a file of a few hundred bytes.
 */
#ifndef DASECV_INTERNAL_GRAPH_LIMITS_H
#define DASECV_INTERNAL_GRAPH_LIMITS_H

#include <stdint.h>

/* -1 for no cap (the default); the caller sets it back when done. */
void dsv_graph_limit_blocks_(int64_t max_params, int64_t max_buffers);

#endif
