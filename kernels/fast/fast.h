/*
 * Internal interface of the fast backend: the blocked sgemm and dgemm every
 * GEMM-shaped op goes through, the per-node state and small helpers.
 *
 * The kernels below the f64 mark take float64 calls (table.c routes them by
 * dtype); the others float32, except avg_pool, which takes both. The sgemm
 * is deterministic: for a given shape and thread count each output element
 * is summed in a fixed order, whatever the timing; the dgemm is so whatever
 * the thread count. Not part of the public API (the test for the backends
 * includes it to check every micro-kernel variant against a plain loop).
 */
#ifndef DSV_FAST_H
#define DSV_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dasecv/ops.h"
#include "internal/backend_table.h"
#include "internal/check.h"

/*
 * C (M, N) = op(A) (M, K) * op(B) (K, N) + beta * C, beta 0 or 1.
 * op(A) is A (M, K) row-major with row stride lda, or A^T when transa (A is
 * then (K, M) with row stride lda); likewise op(B). With beta 0, C is
 * written without being read. nthreads: threads it may use (1: no parallel
 * region is opened, so it may be called from inside one).
 */
void dsv_fast_sgemm(bool transa, bool transb, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb,
                    float beta, float *C, int64_t ldc, int nthreads);

/* The same in float64 (dgemm.c); results do not depend on nthreads. */
void dsv_fast_dgemm(bool transa, bool transb, int64_t M, int64_t N, int64_t K,
                    const double *A, int64_t lda, const double *B, int64_t ldb,
                    double beta, double *C, int64_t ldc, int nthreads);

/* Micro-kernel variants, best first (sgemm and dgemm alike). */
typedef enum dsv_fast_isa {
    DSV_FAST_ISA_AVX512 = 0,
    DSV_FAST_ISA_AVX2,
    DSV_FAST_ISA_GENERIC,
    DSV_FAST_ISA_COUNT
} dsv_fast_isa;

/* True if this CPU (and build) can run isa. */
bool dsv_fast_isa_supported(dsv_fast_isa isa);
/* Forces a variant (for tests); false and no change if unsupported. Not
 * thread safe: call it before sgemm runs elsewhere. */
bool dsv_fast_set_isa(dsv_fast_isa isa);
/* The variant in use (chosen from CPUID on first use). */
dsv_fast_isa dsv_fast_get_isa(void);
const char *dsv_fast_isa_name(dsv_fast_isa isa);

/*
 * Per-node state (c->state), shared by every fast op: a scratch buffer that
 * grows to the largest size asked for and the max-pool argmax saved by the
 * forward pass. Owned by the node; freed by dsv_fast_state_free.
 */
typedef struct dsv_fast_state {
    void *scratch;
    size_t scratch_bytes;
    /* max_pool: argmax inside each window, one byte per output element,
       valid for the input at argmax_x with the recorded geometry */
    uint8_t *argmax;
    size_t argmax_n;
    const void *argmax_x;
    int64_t argmax_shape[4];
    int argmax_geom[3]; /* pool_height, pool_width, stride */
} dsv_fast_state;

void dsv_fast_state_free(void *state);
/* The call's state, created on first use; NULL if the call has no state slot
 * (the caller then allocates per call) or on allocation failure (*s set). */
dsv_fast_state *dsv_fast_state_get(dsv_call *c, dsv_status *s);
/* A scratch buffer of at least bytes, 64-byte aligned: the state's if there
 * is one (kept for the next call), else a fresh one the caller frees with
 * dsv_fast_scratch_release. NULL on allocation failure. */
void *dsv_fast_scratch(dsv_call *c, size_t bytes);
void dsv_fast_scratch_release(dsv_call *c, void *p);

/* Threads a kernel may use: c->nthreads, 0 meaning the global setting. */
int dsv_fast_nthreads(const dsv_call *c);

/* Thread t's share [*i0, *i1) of n items split statically among nth. Kernels
 * open a parallel region only when they use more than one thread, and
 * otherwise call their range function for [0, n) directly. */
static inline void dsv_fast_share(int64_t n, int t, int nth, int64_t *i0,
                                  int64_t *i1)
{
    *i0 = n * t / nth;
    *i1 = n * (t + 1) / nth;
}

/* The relu epilogue of the fused forwards: p[i] = p[i] > 0 ? p[i] : 0 (a
 * NaN gives 0), the fast relu's comparison, on a tile just written. */
static inline void dsv_fast_relu_tile(float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = p[i] > 0 ? p[i] : 0.0f;
}

static inline void dsv_fast_relu_tile_f64(double *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = p[i] > 0 ? p[i] : 0.0;
}

/* The relu backward: y[i] = x[i] > 0 ? g[i] : 0 (a NaN x gives 0). g[i] is
 * loaded unconditionally so the loop is a compare and a blend (vectorised);
 * loading it only when x[i] > 0 compiles to a branch per element, which
 * mispredicts on every other sign change. y may be g: the epilogue of the
 * fused backwards masks a tile of dx just written by the relu's output,
 * positive exactly where its input is. */
static inline void dsv_fast_relu_backward_tile(const float *x, const float *g, float *y,
                                               int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        y[i] = x[i] > 0 ? gi : 0.0f;
    }
}

static inline void dsv_fast_relu_backward_tile_f64(const double *x, const double *g,
                                                   double *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        y[i] = x[i] > 0 ? gi : 0.0;
    }
}

/* Kernels, one op per file. The *_relu forwards are the op followed by relu,
 * the relu applied to each output tile while it is still in cache (the
 * graph's fused nodes); f32 and f64 by x's dtype. */
dsv_status dsv_fast_affine_forward_relu(dsv_call *c);
dsv_status dsv_fast_conv_forward_relu(dsv_call *c);
dsv_status dsv_fast_affine_forward(dsv_call *c);
dsv_status dsv_fast_affine_backward(dsv_call *c);
dsv_status dsv_fast_relu_forward(dsv_call *c);
dsv_status dsv_fast_relu_backward(dsv_call *c);
dsv_status dsv_fast_conv_forward(dsv_call *c);
dsv_status dsv_fast_conv_backward(dsv_call *c);
/* The direct convolution (conv_direct.c) on AVX2 CPUs: conv_forward and
 * conv_backward take it whenever dsv_fast_conv_direct_ok says so for their
 * pass, im2col + sgemm otherwise. */
bool dsv_fast_conv_direct_ok(const dsv_call *c, bool backward);
/* Allows (the default) or forbids the direct path, for tests and benchmarks
 * of the im2col path. Not thread safe, like dsv_fast_set_isa. */
void dsv_fast_conv_set_direct(bool allowed);
dsv_status dsv_fast_conv_direct_forward(dsv_call *c);
dsv_status dsv_fast_conv_direct_forward_relu(dsv_call *c);
dsv_status dsv_fast_conv_direct_backward(dsv_call *c);
dsv_status dsv_fast_max_pool_forward(dsv_call *c);
dsv_status dsv_fast_max_pool_backward(dsv_call *c);
/* The backward with dx then masked where x > 0 fails, each plane right after
 * it is written (the relu's backward of a fused conv+relu+pool), float32;
 * float64 masks the whole dx after its backward. */
dsv_status dsv_fast_max_pool_backward_relu(dsv_call *c);
/* Pieces of the max pool forward for a producer that pools as it goes
 * (conv + relu + max pool, conv_direct.c), float32. _argmax: with keep, the
 * buffer for this forward's argmax (tagged with c->x, as the forward tags
 * it; NULL when none is kept, and backward then finds the winners again);
 * without, no buffer, and a saved one is untagged. _planes: planes
 * [p0, p1) of c (image n's channels are planes n*C .. n*C+C-1) from x, the
 * input of plane p0 (any buffer laid out like c->x from there), into
 * c->out, and the argmax into am (NULL: none). */
uint8_t *dsv_fast_max_pool_argmax(dsv_call *c, bool keep);
void dsv_fast_max_pool_planes(const dsv_call *c, const float *x, int64_t p0, int64_t p1,
                              uint8_t *am);
/* conv, relu and a max pool (pool: its call, with x the relu's output) in
 * one pass: each image is pooled as soon as its relu is applied, while it
 * is in cache. keep: relu's output is written to c->out (training needs it
 * for both backwards) and the argmax saved in pool's state; without keep
 * (inference) images may go through per-thread scratch instead. */
dsv_status dsv_fast_conv_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep);
dsv_status dsv_fast_conv_direct_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep);
/* float32 and float64 alike, by x's dtype */
dsv_status dsv_fast_avg_pool_forward(dsv_call *c);
dsv_status dsv_fast_avg_pool_backward(dsv_call *c);
dsv_status dsv_fast_batchnorm_forward(dsv_call *c);
dsv_status dsv_fast_batchnorm_backward(dsv_call *c);
dsv_status dsv_fast_layernorm_forward(dsv_call *c);
dsv_status dsv_fast_layernorm_backward(dsv_call *c);
dsv_status dsv_fast_groupnorm_forward(dsv_call *c);
/* Group normalization of x viewed as (N, G, Cg, S), gamma/beta G*Cg
 * elements; shared by spatial_groupnorm and layernorm (G 1, Cg D, S 1). */
dsv_status dsv_fast_groupnorm_run(dsv_call *c, bool backward, int64_t N,
                                  int64_t G, int64_t Cg, int64_t S);
dsv_status dsv_fast_groupnorm_backward(dsv_call *c);
dsv_status dsv_fast_dropout_forward(dsv_call *c);
dsv_status dsv_fast_dropout_backward(dsv_call *c);
dsv_status dsv_fast_add_forward(dsv_call *c);
dsv_status dsv_fast_add_backward(dsv_call *c);
dsv_status dsv_fast_softmax_loss(dsv_call *c);
dsv_status dsv_fast_svm_loss(dsv_call *c);

/* ---- f64: float64 kernels, one file per op (*_f64.c) ---------------------- */
dsv_status dsv_fast_affine_forward_f64(dsv_call *c);
dsv_status dsv_fast_affine_forward_relu_f64(dsv_call *c);
dsv_status dsv_fast_affine_backward_f64(dsv_call *c);
dsv_status dsv_fast_relu_forward_f64(dsv_call *c);
dsv_status dsv_fast_relu_backward_f64(dsv_call *c);
dsv_status dsv_fast_conv_forward_f64(dsv_call *c);
dsv_status dsv_fast_conv_forward_relu_f64(dsv_call *c);
dsv_status dsv_fast_conv_backward_f64(dsv_call *c);
dsv_status dsv_fast_max_pool_forward_f64(dsv_call *c);
dsv_status dsv_fast_max_pool_backward_f64(dsv_call *c);
/* batchnorm and spatial_batchnorm */
dsv_status dsv_fast_batchnorm_forward_f64(dsv_call *c);
dsv_status dsv_fast_batchnorm_backward_f64(dsv_call *c);

#endif
