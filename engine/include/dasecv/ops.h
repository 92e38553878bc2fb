/*
 * Layer ops.
 *
 * An op is described by one dsv_call: its inputs, outputs and parameters,
 * named after the course's layers.py arguments. dsv_op_check() validates a call
 * (shapes, dtypes, parameters) and fills in the output shapes; kernels then
 * assume a valid call. Every op has a naive reference kernel in both float
 * dtypes; the fast and onednn backends override what they support.
 *
 * Semantics every backend follows:
 *  - Forward writes out. Backward OVERWRITES dx/dx2/dw/db (it never
 *    accumulates); a NULL gradient pointer means "not needed", skip it.
 *  - Backward takes the forward inputs (x, w, b, params) and recomputes what it
 *    needs (batch statistics, argmax, dropout mask); a backend may keep what its
 *    forward made (oneDNN's pooling workspace) in *state, and must still work
 *    when backward is called without a prior forward on that state.
 *  - Losses (softmax_loss, svm_loss) compute *loss and, when dx is set, dscores
 *    in their forward; they have no backward.
 */
#ifndef DASECV_OPS_H
#define DASECV_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsv_op {
    DSV_OP_AFFINE = 0,          /* x (N, d1..dk), w (D, M), b (M) -> (N, M) */
    DSV_OP_RELU,                /* x -> out, same shape */
    DSV_OP_CONV,                /* x (N,C,H,W), w (F,C,HH,WW), b (F) -> (N,F,H',W') */
    DSV_OP_MAX_POOL,            /* x (N,C,H,W) -> (N,C,H',W') */
    DSV_OP_AVG_POOL,            /* x (N,C,H,W) -> (N,C,H',W'), window means */
    DSV_OP_BATCHNORM,           /* x (N, D), gamma w (D), beta b (D) */
    DSV_OP_SPATIAL_BATCHNORM,   /* x (N,C,H,W), gamma (C), beta (C) */
    DSV_OP_LAYERNORM,           /* x (N, D), gamma (D), beta (D) */
    DSV_OP_SPATIAL_GROUPNORM,   /* x (N,C,H,W), gamma/beta C elements ((1,C,1,1)) */
    DSV_OP_DROPOUT,             /* x -> out, keep probability p */
    DSV_OP_ADD,                 /* x + x2 -> out (residual joins) */
    DSV_OP_SOFTMAX_LOSS,        /* scores x (N, C), labels y (N) -> loss, dx */
    DSV_OP_SVM_LOSS,            /* scores x (N, C), labels y (N) -> loss, dx */
    DSV_OP_COUNT
} dsv_op;

/* Which dsv_params fields an op reads (bits of dsv_op_info.params). */
enum {
    DSV_PF_STRIDE = 1u << 0, DSV_PF_PAD = 1u << 1, DSV_PF_POOL = 1u << 2,
    DSV_PF_GROUPS = 1u << 3, DSV_PF_EPS = 1u << 4, DSV_PF_MOMENTUM = 1u << 5,
    DSV_PF_P = 1u << 6, DSV_PF_SEED = 1u << 7,
};
typedef struct dsv_op_info {
    const char *name;        /* "conv", "avg_pool", ... */
    int num_inputs;          /* x only: 1; add: 2 */
    unsigned params;         /* DSV_PF_* bits */
    bool has_weights;        /* w and b (gamma and beta for the norms) are parameters */
    bool is_loss;            /* takes labels, computes the loss and dscores */
    bool batch_stats;        /* needs the whole minibatch's statistics in train mode */
    bool running_stats;      /* keeps running_mean / running_var buffers */
} dsv_op_info;
/* The table entry of op; NULL when op is out of range. Every op is described
 * once, there; the functions below and the command line derive from it. */
DSV_API const dsv_op_info *dsv_op_get_info(dsv_op op);

/* "affine", "relu", "conv", "max_pool", "avg_pool", "batchnorm",
 * "spatial_batchnorm", "layernorm", "spatial_groupnorm", "dropout", "add",
 * "softmax_loss", "svm_loss"; "unknown" when op is out of range. */
DSV_API const char *dsv_op_name(dsv_op op);
/* Looks up by name; DSV_INVALID with a message if unknown. */
DSV_API dsv_status dsv_op_from_name(const char *name, dsv_op *op);
DSV_API bool dsv_op_has_weights(dsv_op op); /* w (and b) are parameters */
DSV_API bool dsv_op_is_loss(dsv_op op);

typedef struct dsv_params {
    int stride;                    /* conv, max_pool, avg_pool */
    int pad;                       /* conv: zero padding on every side */
    int pool_height, pool_width;   /* max_pool, avg_pool */
    int groups;                    /* spatial_groupnorm: G */
    double eps;                    /* norms, default 1e-5 */
    double momentum;               /* batchnorm running stats, default 0.9 */
    double p;                      /* dropout: probability of KEEPING a unit */
    uint64_t seed;                 /* dropout */
    int64_t row0;                  /* dropout: index of this call's first sample
                                      in the whole batch (batch splitting) */
    bool train;                    /* train or test mode (norms, dropout) */
} dsv_params;

/* stride 1, pad 0, 2x2 pool, groups 1, eps 1e-5, momentum 0.9, p 0.5,
 * seed 0, row0 0, train true. */
DSV_API dsv_params dsv_params_default(void);

typedef enum dsv_backend {
    DSV_BACKEND_NAIVE = 0,
    DSV_BACKEND_FAST,
    DSV_BACKEND_ONEDNN,
    DSV_BACKEND_AUTO, /* best available per op, falling back to naive */
    DSV_BACKEND_COUNT
} dsv_backend;

DSV_API const char *dsv_backend_name(dsv_backend b); /* "naive", "fast", "onednn", "auto" */
DSV_API dsv_status dsv_backend_from_name(const char *name, dsv_backend *b);
/* False for onednn when the build has no oneDNN. */
DSV_API bool dsv_backend_available(dsv_backend b);

/* A slot for one node's backend state (oneDNN primitives, scratch buffers, a
 * saved argmax). The slot records which backend made the state, so whichever
 * call or backend uses the slot next, the state is released by its owner.
 * Zero-initialise it; release it with dsv_state_free. */
typedef struct dsv_state {
    void *ptr;
    dsv_backend owner;
} dsv_state;

/* Releases s->ptr (if any) through the backend that made it. */
DSV_API void dsv_state_free(dsv_state *s);

typedef struct dsv_call {
    dsv_op op;
    dsv_params p;
    /* forward inputs; w/b are gamma/beta for the norms */
    const dsv_tensor *x, *x2, *w, *b;
    const dsv_tensor *y;                  /* labels, int32 (N), losses only */
    dsv_tensor *running_mean, *running_var; /* batchnorms: read in test mode,
                                             updated in train mode */
    dsv_tensor *out;                      /* forward output */
    double *loss;                         /* losses */
    /* backward */
    const dsv_tensor *dout;
    dsv_tensor *dx, *dx2, *dw, *db;       /* NULL: not wanted */
    /* execution */
    int nthreads;   /* threads this kernel may use; 0 = dsv_get_num_threads().
                       1 means: you may be inside a parallel region, do not
                       start one (and oneDNN must use 1-thread primitives) */
    dsv_state *state; /* per-node backend state slot; NULL: none kept */
} dsv_call;

/* A zeroed call for op with default params. */
DSV_API dsv_call dsv_call_make(dsv_op op);

/* Validates the call's inputs for its op (forward, or backward when
 * `backward`): dtypes, shapes, parameters. Fills *out_shape/out_ndim with the
 * forward output's shape. Messages name the op and the problem, e.g.
 * "conv: (H + 2*pad - HH) = 30 is not divisible by stride 4". */
DSV_API dsv_status dsv_op_check(const dsv_call *c, bool backward, int *out_ndim,
                        int64_t out_shape[DSV_MAX_DIMS]);

/* Checks that c->out (forward; dx for losses) or the gradients that are set
 * (backward) have the shapes the op produces; out_ndim/out_shape as returned
 * by dsv_op_check. */
DSV_API dsv_status dsv_op_check_outputs(const dsv_call *c, bool backward, int out_ndim,
                                const int64_t *out_shape);

/* Runs forward / backward on the requested backend. With DSV_BACKEND_AUTO, or
 * when the named backend does not support this configuration, it falls back
 * (auto: best supported; named: naive). *used (may be NULL) reports the kernel
 * that ran. Both validate the call first (dsv_op_check) and check that the
 * output/gradient tensors have the right shapes. */
DSV_API dsv_status dsv_forward(dsv_call *c, dsv_backend want, dsv_backend *used);
DSV_API dsv_status dsv_backward(dsv_call *c, dsv_backend want, dsv_backend *used);
/* Which backend dsv_forward/dsv_backward would use, without running. */
DSV_API dsv_backend dsv_pick_backend(const dsv_call *c, bool backward, dsv_backend want);

/* ---- threads -------------------------------------------------------------- */

/* One knob for our OpenMP kernels and oneDNN alike. The initial value comes
 * from DASECV_NUM_THREADS, else OpenMP's default. n < 1 is DSV_INVALID. */
DSV_API dsv_status dsv_set_num_threads(int n);
DSV_API int dsv_get_num_threads(void);
/* DASECV_NUM_THREADS parsed: *n = 0 when it is unset, else its value;
 * DSV_INVALID (with a message naming the value) unless it is an integer from
 * 1 to 4096. dsv_get_num_threads ignores an invalid value; a program that
 * wants it refused calls this first. */
DSV_API dsv_status dsv_num_threads_from_env(int *n);

#ifdef __cplusplus
}
#endif
#endif
