/*
 * A 64-bit fingerprint of a float buffer, for kernels that keep a converted
 * copy of their weights (a oneDNN reorder, a packed GEMM operand) and must
 * tell whether the caller's values changed since the copy was made.
 *
 * The caller's buffer is written through plain pointers (optimizer steps,
 * dsv_graph_params, numpy views in the binding, gradient checks perturbing
 * one element), so no counter can see every change; comparing the values is
 * the one signal that cannot go stale. It reads the buffer once, about half
 * of what a reorder costs (a reorder also writes).
 *
 * What must stay true: any change of a single element changes the value;
 * the value does not depend on how [0, n) is split into ranges (two sums
 * modulo 2^32, one linear in the bits and one through a nonlinear mix, so
 * that compensating changes in several elements are unlikely to cancel in
 * both); the loop vectorizes.
 */
#ifndef DASECV_INTERNAL_FINGERPRINT_H
#define DASECV_INTERNAL_FINGERPRINT_H

#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Adds elements [i0, i1) of x into h[0], h[1]. The library's baseline
 * x86-64 has no 32-bit vector multiply (SSE2 emulates it), so an AVX2 clone
 * is picked at load time where the CPU has it (bench/RESULTS.md, "Batch-1
 * inference"). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static inline void dsv_fingerprint_range(const float *x, int64_t i0, int64_t i1,
                                         uint32_t h[2])
{
    uint32_t a = 0, b = 0;
    /* the index's low 32 bits, counted in 32-bit lanes */
    uint32_t idx = (uint32_t)i0;
    for (int64_t i = i0; i < i1; i++, idx++) {
        uint32_t v;
        memcpy(&v, &x[i], sizeof(v));
        v ^= idx;
        a += v;
        v = (v ^ (v >> 15)) * 0x2C1B3C6Du;
        b += v ^ (v >> 12);
    }
    h[0] += a;
    h[1] += b;
}

/* The whole buffer, on up to nthreads threads (none inside a parallel
 * region, and none for small buffers); the value does not depend on the
 * count. */
static inline uint64_t dsv_fingerprint(const float *x, int64_t n, int nthreads)
{
    uint32_t h[2] = {0, 0};
#ifdef _OPENMP
    if (nthreads > 1 && n >= (1 << 16) && !omp_in_parallel()) {
        uint32_t a = 0, b = 0;
#pragma omp parallel num_threads(nthreads) reduction(+ : a, b)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            uint32_t p[2] = {0, 0};
            dsv_fingerprint_range(x, n * t / nt, n * (t + 1) / nt, p);
            a += p[0];
            b += p[1];
        }
        return (uint64_t)a << 32 | b;
    }
#else
    (void)nthreads;
#endif
    dsv_fingerprint_range(x, 0, n, h);
    return (uint64_t)h[0] << 32 | h[1];
}

#endif
