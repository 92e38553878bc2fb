/*
 * Shared plumbing of the onednn backend: the engine, status conversion,
 * thread-count handling at primitive creation, primitives with a user-managed
 * scratchpad, and "edges" (a user tensor in its plain layout, plus the
 * primitive's own layout and the reorder between them).
 *
 * What must stay true:
 *  - every oneDNN call of the project lives in kernels/onednn/;
 *  - every primitive is created while omp_get_max_threads() equals the thread
 *    count it will run with (dsv_odn_threads_begin/end), because JIT kernels
 *    size their work split and barriers by the creation-time count (the
 *    candidates timed by dsv_odn_pd_tuned run on one thread and are thrown
 *    away);
 *  - every primitive uses dnnl_scratchpad_mode_user with a scratchpad owned by
 *    the same state, so a state may run on any thread (batch-parallel
 *    schedule) without touching oneDNN's per-thread global scratchpad;
 *  - every execution goes through dsv_odn_prim_run, which inside a caller's
 *    parallel region runs the primitive in a region of its own (one thread),
 *    so kernels with orphaned OpenMP barriers cannot meet the caller's team;
 *  - a node's slot holds one state per configuration (dsv_odn_state_get);
 *    every state starts with dsv_odn_state, so the table's state_free can
 *    release any of them.
 */
#ifndef DSV_ONEDNN_COMMON_H
#define DSV_ONEDNN_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "dasecv/ops.h"
#include "internal/backend_table.h"
#include "internal/check.h"

/* Internal to the library (shared between the backend's files only). */
#define DSV_ODN_INTERNAL __attribute__((visibility("hidden")))

/* DSV_OK for dnnl_success; otherwise records "onednn: <what>: <status>" and
 * returns DSV_UNSUPPORTED (unimplemented), DSV_NOMEM or DSV_BACKEND. */
DSV_ODN_INTERNAL dsv_status dsv_odn_status(dnnl_status_t st, const char *what);

/* The process-wide CPU engine, created once. */
DSV_ODN_INTERNAL dsv_status dsv_odn_engine(dnnl_engine_t *e);

/* The team size a call may use: c->nthreads, or the global knob when 0. */
DSV_ODN_INTERNAL int dsv_odn_nthreads(const dsv_call *c);
/* Sets this thread's OpenMP count to n for primitive creation; returns the
 * previous value for dsv_odn_threads_end. */
DSV_ODN_INTERNAL int dsv_odn_threads_begin(int n);
DSV_ODN_INTERNAL void dsv_odn_threads_end(int saved);

/* A plain memory descriptor for logical dims (tag abcd, ab, a, ...). */
DSV_ODN_INTERNAL dnnl_memory_desc_t dsv_odn_md(int ndims, const int64_t *dims,
                                               dnnl_format_tag_t tag);

/* Primitive descriptor with a user scratchpad. Takes the implementation
 * named `prefer`, else the first whose name contains it, else (also for
 * NULL) the first one, like dnnl_primitive_desc_create. */
DSV_ODN_INTERNAL dsv_status dsv_odn_pd_create(dnnl_primitive_desc_t *pd,
                                              const_dnnl_op_desc_t op_desc,
                                              const_dnnl_primitive_desc_t hint,
                                              const char *prefer,
                                              const char *what);

/* One argument of a primitive, for timing candidates on zeroed buffers. */
typedef struct dsv_odn_argq {
    int arg;            /* DNNL_ARG_* */
    dnnl_query_t what;  /* md query giving its layout */
    int index;
} dsv_odn_argq;

/* The implementation for the configuration `key` (nkey <= DSV_ODN_KEY_MAX
 * values, op first): the one recorded for that key, else the fastest of the
 * non-reference candidates, timed on `stream` with zeroed buffers for `args`,
 * then recorded for every later state (process-wide, thread-safe). */
#define DSV_ODN_KEY_MAX DSV_CHOICE_KEY_MAX
DSV_ODN_INTERNAL dsv_status dsv_odn_pd_tuned(dnnl_primitive_desc_t *pd,
                                             const_dnnl_op_desc_t op_desc,
                                             const_dnnl_primitive_desc_t hint,
                                             const int64_t *key, int nkey,
                                             dnnl_stream_t stream,
                                             const dsv_odn_argq *args, int nargs,
                                             const char *what);

/* Implementation timing on this thread: on by default; off, dsv_odn_pd_tuned
 * takes the recorded choice or else oneDNN's first implementation, and
 * records nothing (backend_table.h, set_tuning). */
DSV_ODN_INTERNAL void dsv_odn_set_tuning(bool on);

/* The recorded choices, for the execution plan (backend_table.h): the i-th
 * one (false past the last), and recording one made elsewhere. */
DSV_ODN_INTERNAL bool dsv_odn_choice_at(int i, int64_t *key, int *nkey, char *name,
                                        size_t size);
DSV_ODN_INTERNAL dsv_status dsv_odn_choice_set(const int64_t *key, int nkey,
                                               const char *name);

/* "jit:avx2", "x64:gemm:jit", ... ("" if unknown). */
DSV_ODN_INTERNAL const char *dsv_odn_impl_name(const_dnnl_primitive_desc_t pd);

/* A primitive and its scratchpad (NULL when it needs none). */
typedef struct dsv_odn_prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
} dsv_odn_prim;

DSV_ODN_INTERNAL dsv_status dsv_odn_prim_make(dsv_odn_prim *pr,
                                              const_dnnl_primitive_desc_t pd,
                                              const char *what);
/* Executes with args (room for one more entry, the scratchpad, is needed:
 * args must have nargs + 1 slots). Does not wait. */
DSV_ODN_INTERNAL dsv_status dsv_odn_prim_run(dsv_odn_prim *pr, dnnl_stream_t s,
                                             int nargs, dnnl_exec_arg_t *args,
                                             const char *what);
DSV_ODN_INTERNAL void dsv_odn_prim_free(dsv_odn_prim *pr);

/* One tensor slot of a primitive. `user` wraps the caller's plain buffer
 * (rebound every call); `inner` is library-allocated in the primitive's layout,
 * NULL when the layouts are equal (the primitive then uses the user buffer).
 * An input edge reorders user -> inner, an output edge inner -> user. */
typedef struct dsv_odn_edge {
    dnnl_memory_t user, inner;
    dsv_odn_prim reorder;
    bool input;
    /* dsv_odn_edge_in_cached: inner holds the reorder of `src` while its
       values had fingerprint `fp` */
    bool cached;
    const void *src;
    uint64_t fp;
} dsv_odn_edge;

DSV_ODN_INTERNAL dsv_status dsv_odn_edge_make(dsv_odn_edge *e,
                                              const dnnl_memory_desc_t *user_md,
                                              const dnnl_memory_desc_t *prim_md,
                                              bool input, const char *what);
/* The memory the primitive reads or writes. */
DSV_ODN_INTERNAL dnnl_memory_t dsv_odn_edge_mem(const dsv_odn_edge *e);
/* Binds the user buffer (before the primitive runs, outputs too); for an
 * input edge also reorders it into inner. */
DSV_ODN_INTERNAL dsv_status dsv_odn_edge_in(dsv_odn_edge *e, dnnl_stream_t s,
                                            const void *data);
/* The same for an input edge of parameters (weights), which change only
 * when the optimizer steps or a caller writes them: reorders only when data
 * is another buffer than last time or its values' fingerprint (n floats,
 * computed on up to nthreads threads) changed, so inference reorders once in
 * total and training once per update and primitive. */
DSV_ODN_INTERNAL dsv_status dsv_odn_edge_in_cached(dsv_odn_edge *e, dnnl_stream_t s,
                                                   const float *data, int64_t n,
                                                   int nthreads);
/* For an output edge, after the primitive ran: inner -> the bound buffer. */
DSV_ODN_INTERNAL dsv_status dsv_odn_edge_out(dsv_odn_edge *e, dnnl_stream_t s);
DSV_ODN_INTERNAL void dsv_odn_edge_free(dsv_odn_edge *e);

/* Position-sensitive sum of the value bits: any change of one element changes
 * it. Cheap enough (it vectorizes) to run on every call; states use it to tell
 * whether what a forward left (a workspace, batch statistics) still belongs
 * to the x a backward gets. Uses up to nthreads threads (none inside a
 * parallel region); the value does not depend on the count. */
DSV_ODN_INTERNAL uint32_t dsv_odn_fingerprint(const float *x, int64_t n, int nthreads);

/* Counts for tests (process-wide, relaxed atomics): primitives made through
 * dsv_odn_prim_make (reorders included) and weight reorders run by
 * dsv_odn_edge_in_cached. */
typedef struct dsv_odn_counts {
    int64_t prims_made, weight_reorders;
} dsv_odn_counts;
DSV_ODN_INTERNAL dsv_odn_counts dsv_odn_counts_get(void);

/* Start of every per-node state; `free` releases the whole object. */
typedef struct dsv_odn_state {
    dsv_op op;
    void (*free)(struct dsv_odn_state *st);
} dsv_odn_state;

DSV_ODN_INTERNAL void dsv_odn_state_free(void *state);

/* The call's state for op and its configuration `key` (nkey values, at
 * most DSV_ODN_KEY_MAX: shapes, parameters, thread count, mode): a node's
 * slot keeps one state per configuration, up to DSV_ODN_CONFIGS of them (the
 * least recently used goes), so alternating shapes (a training batch, then
 * a smaller last evaluation batch) or modes rebuild nothing. Otherwise a new
 * zeroed one of size bytes, released through free_fn and recorded in the
 * slot (owner onednn) when the call has one, since a kernel may be called
 * directly. The caller still compares its own key fields and builds what a
 * new state lacks. */
#define DSV_ODN_CONFIGS 4
DSV_ODN_INTERNAL dsv_status dsv_odn_state_get(dsv_call *c, dsv_op op, size_t size,
                                              void (*free_fn)(dsv_odn_state *),
                                              const int64_t *key, int nkey,
                                              dsv_odn_state **out);

/* A layer with weights and bias (conv, affine), in weighted.c: its stream,
 * the forward pd (the backward's hint), a forward, a backward-data and a
 * backward-weights primitive with their edges. The op owns the key and the
 * operation descriptors; all-zero is the empty value. */
#define DSV_ODN_WEIGHTED_NMSG 5
typedef struct dsv_odn_weighted {
    const char *name;                /* "conv", starts every message */
    int64_t key[DSV_ODN_KEY_MAX];   /* op, step (set per step), config */
    int nkey;
    char msg[DSV_ODN_WEIGHTED_NMSG][32]; /* "<name>: forward", ... */

    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd;
    bool fwd_ready, bwd_ready;
    dsv_odn_prim fwd;
    dsv_odn_edge f_x, f_w, f_b, f_y;
    dsv_odn_prim bwd_d;
    dsv_odn_edge d_dy, d_w, d_dx;
    dsv_odn_prim bwd_w;
    dsv_odn_edge w_x, w_dy, w_dw, w_db;
    float *dw_buf, *db_buf; /* targets when the caller wants only one */
} dsv_odn_weighted;

/* The caller's layouts of x, w, b and y. */
typedef struct dsv_odn_weighted_mds {
    dnnl_memory_desc_t x, w, b, y;
} dsv_odn_weighted_mds;

/* Stream and tuned forward pd; key (nkey values, op first, then a slot for
 * the step) is copied. */
DSV_ODN_INTERNAL dsv_status dsv_odn_weighted_build(dsv_odn_weighted *wl,
                                                   const char *name,
                                                   const int64_t *key, int nkey,
                                                   const_dnnl_op_desc_t fwd);
DSV_ODN_INTERNAL dsv_status dsv_odn_weighted_build_fwd(dsv_odn_weighted *wl,
                                                       const dsv_odn_weighted_mds *u);
/* data, weights: the backward descriptors (their pds are not kept). */
DSV_ODN_INTERNAL dsv_status dsv_odn_weighted_build_bwd(dsv_odn_weighted *wl,
                                                       const dsv_odn_weighted_mds *u,
                                                       const_dnnl_op_desc_t data,
                                                       const_dnnl_op_desc_t weights);
/* Runs c's forward and waits. */
DSV_ODN_INTERNAL dsv_status dsv_odn_weighted_forward(dsv_odn_weighted *wl,
                                                     const dsv_call *c);
/* Runs backward data (if c->dx) and weights (if c->dw or c->db) and waits;
 * dy, when not NULL, is dout already in the backward-weights layout. */
DSV_ODN_INTERNAL dsv_status dsv_odn_weighted_backward(dsv_odn_weighted *wl,
                                                      const dsv_call *c,
                                                      dnnl_memory_t dy);
/* Frees everything and zeroes wl. */
DSV_ODN_INTERNAL void dsv_odn_weighted_release(dsv_odn_weighted *wl);

/* Op kernels (one file each). */
DSV_ODN_INTERNAL bool dsv_odn_affine_supports(const dsv_call *c, bool backward);
DSV_ODN_INTERNAL dsv_status dsv_odn_affine_forward(dsv_call *c);
DSV_ODN_INTERNAL dsv_status dsv_odn_affine_backward(dsv_call *c);
DSV_ODN_INTERNAL bool dsv_odn_conv_supports(const dsv_call *c, bool backward);
DSV_ODN_INTERNAL dsv_status dsv_odn_conv_forward(dsv_call *c);
DSV_ODN_INTERNAL dsv_status dsv_odn_conv_backward(dsv_call *c);
DSV_ODN_INTERNAL bool dsv_odn_batchnorm_supports(const dsv_call *c, bool backward);
DSV_ODN_INTERNAL dsv_status dsv_odn_batchnorm_forward(dsv_call *c);
DSV_ODN_INTERNAL dsv_status dsv_odn_batchnorm_backward(dsv_call *c);
DSV_ODN_INTERNAL bool dsv_odn_max_pool_supports(const dsv_call *c, bool backward);
DSV_ODN_INTERNAL dsv_status dsv_odn_max_pool_forward(dsv_call *c);
DSV_ODN_INTERNAL dsv_status dsv_odn_max_pool_backward(dsv_call *c);
DSV_ODN_INTERNAL bool dsv_odn_relu_supports(const dsv_call *c, bool backward);
DSV_ODN_INTERNAL dsv_status dsv_odn_relu_forward(dsv_call *c);
DSV_ODN_INTERNAL dsv_status dsv_odn_relu_backward(dsv_call *c);

#endif
