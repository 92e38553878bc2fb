/*
 * Graphs of layer nodes: build once, then run forward/backward many times.
 *
 * A graph has one input value (images, batch dimension symbolic), one labels
 * value and nodes, each an op of ops.h with its inputs (values), parameters
 * and running-statistics buffers. Shapes are checked with dsv_op_check when a
 * node is added, so a bad network fails at build time with the node's name.
 * The last node must be the loss; its input is the scores value.
 *
 * Parameters, their gradients (same layout) and buffers each live in one
 * contiguous block owned by the graph, allocated by dsv_graph_finalize.
 * Activation and activation-gradient memory is planned once per batch shape
 * (and mode, schedule, thread count) and reused; buffers whose lifetimes do
 * not overlap share memory. Plans are cached, so alternating batch sizes
 * allocate nothing once each has been seen.
 *
 * Where a value feeds several nodes its gradient is the SUM of what each
 * consumer gives (kernels overwrite, so extra consumers write a temporary
 * that is added in).
 *
 * Schedules (dsv_exec_options.schedule): "layer" runs the nodes in order, each
 * kernel with the whole team; "batch" gives each thread a contiguous slice of
 * the minibatch (views of the full-batch buffers), 1-thread kernels and its
 * own per-node backend state, and sums per-thread parameter gradients in
 * thread order. Batch norm nodes run once on the whole batch between two
 * parallel regions, their kernels splitting the statistics among all threads
 * as under "layer", so the statistics are the minibatch's; losses and dscores are
 * weighted by slice / batch size; dropout masks use the sample's batch index.
 * Under "batch" buffers share memory only across those barriers. "auto" times
 * two training passes of each per batch size (parameters, buffers and the
 * step restored) and keeps the faster. Results do not depend on timing.
 */
#ifndef DASECV_GRAPH_H
#define DASECV_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "ops.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv_graph dsv_graph;

/* A value handle (index); DSV_NO_VALUE for "none". */
typedef int dsv_value;
#define DSV_NO_VALUE (-1)

typedef enum dsv_param_kind {
    DSV_PARAM_WEIGHT = 0, /* Gaussian * weight_scale; counts in the L2 term */
    DSV_PARAM_BIAS,       /* zero */
    DSV_PARAM_GAMMA,      /* one */
    DSV_PARAM_BETA,       /* zero */
    DSV_PARAM_KIND_COUNT
} dsv_param_kind;

/* dtype: DSV_F32 or DSV_F64 (parameters, activations and gradients). */
DSV_API dsv_status dsv_graph_create(dsv_graph **g, dsv_dtype dtype);
/* Frees the blocks, the plans and every per-node backend state. */
DSV_API void dsv_graph_destroy(dsv_graph *g);
DSV_API dsv_dtype dsv_graph_dtype(const dsv_graph *g);

/* The input: (N, sample_shape...), ndim = 1..3 sample dimensions. Once. */
DSV_API dsv_status dsv_graph_input(dsv_graph *g, int ndim, const int64_t *sample_shape,
                           dsv_value *v);
/* The labels: int32 (N). Once. */
DSV_API dsv_status dsv_graph_labels(dsv_graph *g, dsv_value *v);

/* Declares a parameter (index into the parameter list in *id). Names must be
 * unique. Storage appears at dsv_graph_finalize. */
DSV_API dsv_status dsv_graph_add_param(dsv_graph *g, const char *name, int ndim,
                               const int64_t *shape, dsv_param_kind kind,
                               int *id);
/* Initialisation of one weight parameter: N(0, 1) * std. A NaN std (the
 * default) means "the weight_scale given to dsv_graph_init_params"; otherwise
 * std must be finite and >= 0. Before finalize. */
DSV_API dsv_status dsv_graph_set_param_std(dsv_graph *g, int id, double std);
/* Declares a buffer of n values (running statistics), filled with `fill`. */
DSV_API dsv_status dsv_graph_add_buffer(dsv_graph *g, const char *name, int64_t n,
                                double fill, int *id);

typedef struct dsv_node_desc {
    const char *name;        /* unique; copied */
    dsv_op op;
    dsv_params p;            /* p.train and p.row0 are set when run */
    dsv_value x, x2, y;      /* x2: add; y: losses (the labels value) */
    int w, b;                /* parameter ids or -1 */
    int running_mean, running_var; /* buffer ids or -1 (batchnorms) */
} dsv_node_desc;

/* op with default params, x set, everything else none. */
DSV_API dsv_node_desc dsv_node_desc_make(dsv_op op, const char *name, dsv_value x);

/* Adds a node after checking it (dsv_op_check on a one-row batch). *out is
 * its output value (DSV_NO_VALUE for the loss, which must come last). Errors
 * name the node: "node 'conv1': conv: x has 3 channels but w expects 4". */
DSV_API dsv_status dsv_graph_add_node(dsv_graph *g, const dsv_node_desc *d,
                              dsv_value *out);

/* Shape of a value for batch size n (n = 1 for the per-sample shape). */
DSV_API dsv_status dsv_graph_value_shape(const dsv_graph *g, dsv_value v, int64_t n,
                                 int *ndim, int64_t shape[DSV_MAX_DIMS]);

/* Ends building: checks that a loss exists and every output is used, then
 * allocates the parameter, gradient and buffer blocks (zeroed; gammas 1,
 * buffers their fill). */
DSV_API dsv_status dsv_graph_finalize(dsv_graph *g);

/* Weights N(0, 1) * weight_scale (or the weight's own std, when set) from
 * one splitmix64/Box-Muller stream seeded with seed (in parameter order),
 * biases and betas 0, gammas 1; buffers reset. */
DSV_API void dsv_graph_init_params(dsv_graph *g, uint64_t seed, double weight_scale);

/* ---- builders (the course's layers and layer_utils sandwiches) -------------
 * `id` names the layer: dsv_graph_conv(g, "1", ...) makes node "conv1" with
 * parameters W1 and b1; a norm with id "1" makes gamma1/beta1 (and
 * running_mean1/running_var1). */
DSV_API dsv_status dsv_graph_affine(dsv_graph *g, const char *id, dsv_value x,
                            int64_t M, dsv_value *out);
DSV_API dsv_status dsv_graph_conv(dsv_graph *g, const char *id, dsv_value x, int64_t F,
                          int HH, int WW, int stride, int pad, dsv_value *out);
DSV_API dsv_status dsv_graph_relu(dsv_graph *g, const char *name, dsv_value x,
                          dsv_value *out);
DSV_API dsv_status dsv_graph_max_pool(dsv_graph *g, const char *name, dsv_value x,
                              int ph, int pw, int stride, dsv_value *out);
/* Batch norm; spatial batch norm when x is (N, C, H, W). */
DSV_API dsv_status dsv_graph_batchnorm(dsv_graph *g, const char *id, dsv_value x,
                               dsv_value *out);
DSV_API dsv_status dsv_graph_layernorm(dsv_graph *g, const char *id, dsv_value x,
                               dsv_value *out);
/* keep: probability of keeping a unit; masks come from seed and the step. */
DSV_API dsv_status dsv_graph_dropout(dsv_graph *g, const char *name, dsv_value x,
                             double keep, uint64_t seed, dsv_value *out);
DSV_API dsv_status dsv_graph_add(dsv_graph *g, const char *name, dsv_value a,
                         dsv_value b, dsv_value *out);
DSV_API dsv_status dsv_graph_softmax_loss(dsv_graph *g, const char *name,
                                  dsv_value scores, dsv_value labels);
DSV_API dsv_status dsv_graph_affine_relu(dsv_graph *g, const char *id, dsv_value x,
                                 int64_t M, dsv_value *out);
/* k x k filters. */
DSV_API dsv_status dsv_graph_conv_relu(dsv_graph *g, const char *id, dsv_value x,
                               int64_t F, int k, int stride, int pad,
                               dsv_value *out);
/* conv - relu - max pool (pool x pool, stride pool). */
DSV_API dsv_status dsv_graph_conv_relu_pool(dsv_graph *g, const char *id, dsv_value x,
                                    int64_t F, int k, int stride, int pad,
                                    int pool, dsv_value *out);
DSV_API dsv_status dsv_graph_conv_bn_relu(dsv_graph *g, const char *id, dsv_value x,
                                  int64_t F, int k, int stride, int pad,
                                  dsv_value *out);

/* ---- parameters ------------------------------------------------------------ */

DSV_API int64_t dsv_graph_num_param_values(const dsv_graph *g); /* block length */
DSV_API void *dsv_graph_params(dsv_graph *g);
DSV_API void *dsv_graph_grads(dsv_graph *g);
DSV_API int64_t dsv_graph_num_buffer_values(const dsv_graph *g);
DSV_API void *dsv_graph_buffers(dsv_graph *g);
DSV_API int dsv_graph_num_params(const dsv_graph *g); /* named tensors */
DSV_API const char *dsv_graph_param_name(const dsv_graph *g, int i);
DSV_API dsv_param_kind dsv_graph_param_kind(const dsv_graph *g, int i);
/* Shape of parameter i (ndim and dims; unused dims are 1). */
DSV_API dsv_status dsv_graph_param_shape(const dsv_graph *g, int i, int *ndim,
                                 int64_t shape[DSV_MAX_DIMS]);
/* Views into the blocks (valid after finalize, until destroy). */
DSV_API dsv_tensor dsv_graph_param(dsv_graph *g, int i);
DSV_API dsv_tensor dsv_graph_grad(dsv_graph *g, int i);

/* ---- running ----------------------------------------------------------------
 * o->backend is requested per node (dsv_pick_backend; naive fallback);
 * o->schedule picks layer/batch parallelism (auto calibrates once per batch
 * size); o->threads 0 = dsv_get_num_threads(). */

/* Train-mode forward and backward: *loss = the data loss; the gradient block
 * is overwritten with its gradient. Advances the dropout step. x: (N, input
 * shape) in the graph dtype, y: int32 (N). (The L2 term is the model's.) */
DSV_API dsv_status dsv_graph_train_step(dsv_graph *g, const dsv_exec_options *o,
                                const dsv_tensor *x, const dsv_tensor *y,
                                double *loss);
/* Training steps taken (the dropout step); checkpoints save and restore it. */
DSV_API uint64_t dsv_graph_step(const dsv_graph *g);
DSV_API void dsv_graph_set_step(dsv_graph *g, uint64_t step);
/* Test-mode forward up to the scores; copies them into scores (N, classes),
 * graph dtype. */
DSV_API dsv_status dsv_graph_infer(dsv_graph *g, const dsv_exec_options *o,
                           const dsv_tensor *x, dsv_tensor *scores);

/* The schedule the last run used (layer or batch; auto's choice), or
 * DSV_SCHEDULE_AUTO before any auto calibration. */
DSV_API dsv_schedule dsv_graph_last_auto_choice(const dsv_graph *g);

/* One line per node: "name op fwd/bwd" with the backends that last ran (for
 * a node not run yet: dsv_graph_node_backends). */
DSV_API dsv_status dsv_graph_describe(const dsv_graph *g, dsv_backend want, char *buf,
                              size_t n);
/* The backends node i's forward and backward would use for `want`
 * (dsv_pick_backend on its shapes); *bwd is DSV_BACKEND_COUNT for a loss.
 * DSV_BACKEND_AUTO where want is auto and fast and oneDNN are timed against
 * each other (at a run's first call of each configuration). */
DSV_API dsv_status dsv_graph_node_backends(const dsv_graph *g, int i, dsv_backend want,
                                           dsv_backend *fwd, dsv_backend *bwd);
/* Bytes of the activation arena planned for batch n under the layer schedule
 * (train: activations and their gradients; else the test-mode forward),
 * with the sharing of buffers whose lifetimes do not overlap, and without it.
 * Plans it now if no run has. */
DSV_API dsv_status dsv_graph_planned_bytes(dsv_graph *g, int64_t n, bool train,
                                           size_t *bytes, size_t *unshared);
/* Named buffers (running statistics, "NODE.running_mean"), 1-D views into the
 * buffer block (valid after finalize, until destroy). */
DSV_API int dsv_graph_num_buffers(const dsv_graph *g);
DSV_API const char *dsv_graph_buffer_name(const dsv_graph *g, int i);
DSV_API dsv_tensor dsv_graph_buffer(dsv_graph *g, int i);
DSV_API int dsv_graph_num_nodes(const dsv_graph *g);
DSV_API const char *dsv_graph_node_name(const dsv_graph *g, int i);
/* Node i as it was added (names and pointers valid until destroy), and its
 * output value (DSV_NO_VALUE for the loss); out may be NULL. */
DSV_API dsv_status dsv_graph_node_info(const dsv_graph *g, int i, dsv_node_desc *d,
                               dsv_value *out);
/* Index of the node named name, or -1. */
DSV_API int dsv_graph_find_node(const dsv_graph *g, const char *name);

/* Memory accounting of the plan the last run used. */
typedef struct dsv_graph_stats {
    int64_t plan_allocs;   /* activation arenas allocated so far (all plans) */
    int num_plans;         /* plans cached now */
    size_t planned_bytes;  /* arena of the last plan (with sharing) */
    size_t unshared_bytes; /* sum of that plan's buffers (no sharing) */
} dsv_graph_stats;
DSV_API void dsv_graph_get_stats(const dsv_graph *g, dsv_graph_stats *s);

/* ---- the execution plan ----------------------------------------------------
 * Every decision made by timing: the "auto" schedule per batch size and
 * thread count, the backend "auto" timed for a relu, pooling or batch norm
 * configuration (fast or onednn), and the implementation a backend picked by
 * timing per layer configuration (oneDNN). The last two are process-wide, as
 * the engine and the backend keep them. Saving
 * them and applying them before the first step makes a run take the same
 * path as the one that saved them: checkpoints carry the plan, and
 * `dasecv train --plan` applies one. The text is one decision a line
 * (docs/checkpoint.md):
 *     dasecv-plan 1
 *     model <nodes> <parameter values> <fingerprint of the nodes, hex>
 *     schedule <batch size> <threads> layer|batch
 *     backend <op> <key,key,...> fast|onednn
 *     choice <backend> <key,key,...> <implementation name>
 *     fuse conv_relu|affine_relu on|off
 * (backend: the key is the dtype, train (1) or test (0), threads, the input's
 * ndim and dims, and for pooling the window height, width and stride.)
 * (fuse: whether a conv or affine node followed by its only reader, a relu,
 * may run as one fused node on backends that offer it; the values are the
 * same either way. A plan without fuse lines keeps the graph's defaults.)
 * *text is malloc'ed; the caller frees it. */
DSV_API dsv_status dsv_graph_plan_text(dsv_graph *g, char **text);
/* Checks the whole text first (`source` names it in messages: "FILE:LINE:
 * ..."); a plan for another model (node count, parameter count or
 * fingerprint), a backend that is not built in or a malformed line is
 * DSV_INVALID and changes nothing; so is a backend line for an op whose
 * backend is not timed or naming naive, auto or a backend not built in.
 * Otherwise replaces the graph's schedule decisions and records the backend
 * decisions and choices, so those configurations are not timed. */
DSV_API dsv_status dsv_graph_plan_apply(dsv_graph *g, const char *text, const char *source);

/* The graph of a model (owned by the model). */
DSV_API dsv_graph *dsv_model_graph(dsv_model *m);

#ifdef __cplusplus
}
#endif
#endif
