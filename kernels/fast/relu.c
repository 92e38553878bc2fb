/*
 * ReLU for the fast backend: out = x > 0 ? x : 0 and dx = x > 0 ? dout : 0,
 * the same comparison as the reference (a NaN input gives 0). Branch-free
 * loops the compiler vectorises; large tensors are split among threads.
 *
 * On x86-64 CPUs with AVX2 both run 16 floats per iteration with AVX2
 * intrinsics (an ordered compare, so NaN gives 0 as above): the loops the
 * compiler made ran 4 floats per iteration, and their speed depended on the
 * code around them (bench/RESULTS.md, "Kernel notes"), which the explicit
 * loops do not.
 */
#include <omp.h>

#include "fast.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* below this many elements a parallel region costs more than it saves */
enum { PAR_MIN = 1 << 16 };

/* y[i] = x[i] > 0 ? x[i] : 0 for i in [i0, i1). */
static void forward_range(const float *x, float *y, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++)
        y[i] = x[i] > 0 ? x[i] : 0.0f;
}

/* y[i] = x[i] > 0 ? g[i] : 0 for i in [i0, i1). */
static void backward_range(const float *x, const float *g, float *y, int64_t i0,
                           int64_t i1)
{
    dsv_fast_relu_backward_tile(x + i0, g + i0, y + i0, i1 - i0);
}

#if defined(__x86_64__)
/* y = x > 0 ? g : 0 over [i0, i1), 16 at a time; g = x for the forward. */
__attribute__((target("avx2"))) static void
range_avx2(const float *x, const float *g, float *y, int64_t i0, int64_t i1)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256 g0 = g == x ? x0 : _mm256_loadu_ps(g + i);
        __m256 g1 = g == x ? x1 : _mm256_loadu_ps(g + i + 8);
        __m256 m0 = _mm256_cmp_ps(x0, zero, _CMP_GT_OQ);
        __m256 m1 = _mm256_cmp_ps(x1, zero, _CMP_GT_OQ);
        _mm256_storeu_ps(y + i, _mm256_and_ps(m0, g0));
        _mm256_storeu_ps(y + i + 8, _mm256_and_ps(m1, g1));
    }
    if (g == x)
        forward_range(x, y, i, i1);
    else
        backward_range(x, g, y, i, i1);
}
#endif

static void range(const float *x, const float *g, float *y, int64_t i0, int64_t i1)
{
#if defined(__x86_64__)
    if (dsv_fast_isa_supported(DSV_FAST_ISA_AVX2)) {
        range_avx2(x, g ? g : x, y, i0, i1);
        return;
    }
#endif
    if (g)
        backward_range(x, g, y, i0, i1);
    else
        forward_range(x, y, i0, i1);
}

/* Forward (g NULL) or backward (g = dout) over the whole tensor. */
static void relu_run(const dsv_call *c, const float *g, float *y)
{
    int64_t n = dsv_tensor_numel(c->x);
    const float *x = c->x->data;
    int nt = dsv_fast_nthreads(c);
    if (nt > 1 && n >= PAR_MIN) {
#pragma omp parallel num_threads(nt)
        {
            int64_t i0, i1;
            dsv_fast_share(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            range(x, g, y, i0, i1);
        }
    } else {
        range(x, g, y, 0, n);
    }
}

dsv_status dsv_fast_relu_forward(dsv_call *c)
{
    relu_run(c, NULL, c->out->data);
    return DSV_OK;
}

dsv_status dsv_fast_relu_backward(dsv_call *c)
{
    if (c->dx)
        relu_run(c, c->dout->data, c->dx->data);
    return DSV_OK;
}
