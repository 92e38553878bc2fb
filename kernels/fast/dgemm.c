/*
 * Cache-blocked double-precision GEMM for the fast backend's float64
 * kernels, the twin of sgemm.c.
 *
 * op(A) is packed in MC x KC blocks cut into MR-row panels and op(B) in
 * KC x NC blocks cut into NR-column panels (transposes are absorbed by the
 * packing, and partial panels are zero-padded), and a register-blocked
 * micro-kernel multiplies one A panel by one B panel. Three micro-kernels
 * exist (AVX-512F 8x16, AVX2+FMA 6x8, portable C 4x8); the variant is the
 * one sgemm uses (dsv_fast_get_isa), and the SIMD ones are compiled with
 * per-function target attributes, so the library needs nothing beyond
 * baseline x86-64.
 *
 * Deterministic whatever the thread count: threads split C into disjoint
 * ranges cut at panel boundaries, so every element lies in the same kind of
 * tile as with one thread, and its sum runs over k in the same order (KC
 * blocks in order, k in order inside each block) in every case.
 */
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>

#include "fast.h"

/* An MC x KC block of A (144 KiB) stays in L2; a KC x NR panel of B
 * (16-32 KiB) in L1; the KC x NC block of B (2 MiB) is read from L3. */
enum { KC = 256, MC = 72, NC = 1024 };

typedef void (*dukernel_fn)(int64_t kc, const double *a, const double *b,
                            double *c, int64_t ldc, bool acc);

typedef struct dukernel {
    dukernel_fn fn;
    int mr, nr;
} dukernel;

/* ---- micro-kernels: C[mr x nr] (=|+=) Apanel (kc x mr) * Bpanel (kc x nr) */

static void dukr_generic(int64_t kc, const double *a, const double *b, double *c,
                         int64_t ldc, bool acc)
{
    enum { MR = 4, NR = 8 };
    double t[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                t[i][j] += a[i] * b[j];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * ldc + j] = acc ? c[i * ldc + j] + t[i][j] : t[i][j];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void
dukr_avx2(int64_t kc, const double *a, const double *b, double *c, int64_t ldc,
          bool acc)
{
    /* 6 x 8: 12 accumulators, 2 B vectors, 1 broadcast of 16 registers */
    __m256d r[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++)
        r[i][0] = r[i][1] = _mm256_setzero_pd();
    for (int64_t k = 0; k < kc; k++, a += 6, b += 8) {
        __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256d t = _mm256_broadcast_sd(a + i);
            r[i][0] = _mm256_fmadd_pd(t, b0, r[i][0]);
            r[i][1] = _mm256_fmadd_pd(t, b1, r[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++)
        for (int h = 0; h < 2; h++) {
            double *p = c + i * ldc + 4 * h;
            __m256d v = r[i][h];
            if (acc)
                v = _mm256_add_pd(v, _mm256_loadu_pd(p));
            _mm256_storeu_pd(p, v);
        }
}

__attribute__((target("avx512f"))) static void
dukr_avx512(int64_t kc, const double *a, const double *b, double *c, int64_t ldc,
            bool acc)
{
    /* 8 x 16: 16 accumulators, 2 B vectors, 1 broadcast of 32 registers */
    __m512d r[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i][0] = r[i][1] = _mm512_setzero_pd();
    for (int64_t k = 0; k < kc; k++, a += 8, b += 16) {
        __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512d t = _mm512_set1_pd(a[i]);
            r[i][0] = _mm512_fmadd_pd(t, b0, r[i][0]);
            r[i][1] = _mm512_fmadd_pd(t, b1, r[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        for (int h = 0; h < 2; h++) {
            double *p = c + i * ldc + 8 * h;
            __m512d v = r[i][h];
            if (acc)
                v = _mm512_add_pd(v, _mm512_loadu_pd(p));
            _mm512_storeu_pd(p, v);
        }
}
#endif

static const dukernel dukernels[DSV_FAST_ISA_COUNT] = {
#if defined(__x86_64__)
    [DSV_FAST_ISA_AVX512] = {dukr_avx512, 8, 16},
    [DSV_FAST_ISA_AVX2] = {dukr_avx2, 6, 8},
#endif
    [DSV_FAST_ISA_GENERIC] = {dukr_generic, 4, 8},
};

/* ---- packing ------------------------------------------------------------- */

/* Interleaves n rows of src (row stride ld, kc values each) into kc groups
 * of w values, zero-padding rows n..w. */
static void interleave_rows(const double *src, int64_t ld, int n, int w,
                            int64_t kc, double *dst)
{
    /* full panels of the usual widths: constant trip counts unroll */
#define INTERLEAVE_FIXED(W_)                                                   \
    case W_:                                                                   \
        for (int64_t k = 0; k < kc; k++, dst += W_)                            \
            for (int r = 0; r < W_; r++)                                       \
                dst[r] = src[r * ld + k];                                      \
        return;
    if (n == w)
        switch (w) {
            INTERLEAVE_FIXED(4)
            INTERLEAVE_FIXED(6)
            INTERLEAVE_FIXED(8)
            INTERLEAVE_FIXED(16)
        default: break;
        }
#undef INTERLEAVE_FIXED
    for (int64_t k = 0; k < kc; k++, dst += w) {
        int r = 0;
        for (; r < n; r++)
            dst[r] = src[r * ld + k];
        for (; r < w; r++)
            dst[r] = 0;
    }
}

/* Copies kc rows of n values (row stride ld) into rows of w values,
 * zero-padded. */
static void copy_rows(const double *src, int64_t ld, int n, int w, int64_t kc,
                      double *dst)
{
    for (int64_t k = 0; k < kc; k++, src += ld, dst += w) {
        int j = 0;
        if (n == w) {
            memcpy(dst, src, sizeof(double) * (size_t)w);
            continue;
        }
        for (; j < n; j++)
            dst[j] = src[j];
        for (; j < w; j++)
            dst[j] = 0;
    }
}

/* op(A)[i0 .. i0+mc) x [k0 .. k0+kc) into MR-row panels. */
static void pack_a(bool ta, const double *A, int64_t lda, int64_t i0, int64_t k0,
                   int64_t mc, int64_t kc, int mr, double *dst)
{
    for (int64_t ip = 0; ip < mc; ip += mr, dst += mr * kc) {
        int m = (int)(mc - ip < mr ? mc - ip : mr);
        if (ta)
            copy_rows(A + k0 * lda + i0 + ip, lda, m, mr, kc, dst);
        else
            interleave_rows(A + (i0 + ip) * lda + k0, lda, m, mr, kc, dst);
    }
}

/* op(B)[k0 .. k0+kc) x [j0 .. j0+nc) into NR-column panels. */
static void pack_b(bool tb, const double *B, int64_t ldb, int64_t k0, int64_t j0,
                   int64_t kc, int64_t nc, int nr, double *dst)
{
    for (int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
        int n = (int)(nc - jp < nr ? nc - jp : nr);
        if (tb)
            interleave_rows(B + (j0 + jp) * ldb + k0, ldb, n, nr, kc, dst);
        else
            copy_rows(B + k0 * ldb + j0 + jp, ldb, n, nr, kc, dst);
    }
}

/* ---- the sequential algorithm on one block of C -------------------------- */

typedef struct dgemm_args {
    bool ta, tb;
    int64_t M, N, K;
    const double *A, *B;
    int64_t lda, ldb, ldc;
    double beta;
    double *C;
} dgemm_args;

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Doubles of packing buffer for a block of M x N. */
static size_t pack_doubles(const dukernel *u, int64_t M, int64_t N, int64_t K)
{
    int64_t kc = min64(K, KC);
    return (size_t)(kc * (round_up(min64(M, MC), u->mr) + round_up(min64(N, NC), u->nr)));
}

/* Rows [m0, m1) and columns [n0, n1) of C; pack holds pack_doubles(). */
static void gemm_block(const dukernel *u, const dgemm_args *g, int64_t m0,
                       int64_t m1, int64_t n0, int64_t n1, double *pack)
{
    const int mr = u->mr, nr = u->nr;
    int64_t M = m1 - m0, N = n1 - n0;
    double *apack = pack;
    double *bpack = pack + min64(g->K, KC) * round_up(min64(M, MC), mr);
    double edge[8 * 16];

    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = min64(N - jc, NC);
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = min64(g->K - pc, KC);
            bool acc = pc > 0 || g->beta != 0;
            pack_b(g->tb, g->B, g->ldb, pc, n0 + jc, kc, nc, nr, bpack);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = min64(M - ic, MC);
                pack_a(g->ta, g->A, g->lda, m0 + ic, pc, mc, kc, mr, apack);
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    int64_t n = min64(nc - jr, nr);
                    const double *bp = bpack + jr * kc;
                    for (int64_t ir = 0; ir < mc; ir += mr) {
                        int64_t m = min64(mc - ir, mr);
                        const double *ap = apack + ir * kc;
                        double *cp = g->C + (m0 + ic + ir) * g->ldc + n0 + jc + jr;
                        if (m == mr && n == nr) {
                            u->fn(kc, ap, bp, cp, g->ldc, acc);
                            continue;
                        }
                        /* an edge tile: the same sums, through a buffer */
                        u->fn(kc, ap, bp, edge, nr, false);
                        for (int64_t i = 0; i < m; i++)
                            for (int64_t j = 0; j < n; j++) {
                                double *q = cp + i * g->ldc + j;
                                *q = acc ? *q + edge[i * nr + j] : edge[i * nr + j];
                            }
                    }
                }
            }
        }
    }
}

/* The plain triple loop over rows [m0, m1), columns [n0, n1): only used when
 * a packing buffer cannot be allocated, so the call still completes. */
static void gemm_plain(const dgemm_args *g, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1)
{
    for (int64_t i = m0; i < m1; i++)
        for (int64_t j = n0; j < n1; j++) {
            double s = 0;
            for (int64_t k = 0; k < g->K; k++)
                s += (g->ta ? g->A[k * g->lda + i] : g->A[i * g->lda + k]) *
                     (g->tb ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j]);
            double *cp = g->C + i * g->ldc + j;
            *cp = g->beta != 0 ? *cp + s : s;
        }
}

/* Runs part t of nt: C is cut along its longer panel count. */
static void run_part(const dukernel *u, const dgemm_args *g, int t, int nt)
{
    int64_t pm = (g->M + u->mr - 1) / u->mr, pn = (g->N + u->nr - 1) / u->nr;
    int64_t m0 = 0, m1 = g->M, n0 = 0, n1 = g->N;
    if (pn >= pm) {
        n0 = pn * t / nt * u->nr, n1 = min64(pn * (t + 1) / nt * u->nr, g->N);
    } else {
        m0 = pm * t / nt * u->mr, m1 = min64(pm * (t + 1) / nt * u->mr, g->M);
    }
    if (m0 >= m1 || n0 >= n1)
        return;
    double *pack = dsv_alloc(sizeof(double) * pack_doubles(u, m1 - m0, n1 - n0, g->K));
    if (!pack) {
        gemm_plain(g, m0, m1, n0, n1);
        return;
    }
    gemm_block(u, g, m0, m1, n0, n1, pack);
    dsv_free(pack);
}

void dsv_fast_dgemm(bool transa, bool transb, int64_t M, int64_t N, int64_t K,
                    const double *A, int64_t lda, const double *B, int64_t ldb,
                    double beta, double *C, int64_t ldc, int nthreads)
{
    dgemm_args g = {transa, transb, M, N, K, A, B, lda, ldb, ldc, beta, C};
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (beta == 0)
            for (int64_t i = 0; i < M; i++)
                memset(C + i * ldc, 0, sizeof(double) * (size_t)N);
        return;
    }
    const dukernel *u = &dukernels[dsv_fast_get_isa()];
    int64_t pm = (M + u->mr - 1) / u->mr, pn = (N + u->nr - 1) / u->nr;
    int64_t panels = pm > pn ? pm : pn;
    int nt = nthreads < 1 ? 1 : nthreads;
    /* a parallel region costs microseconds: not worth it for tiny products */
    if ((double)M * (double)N * (double)K < 32768.0)
        nt = 1;
    if (nt > panels)
        nt = (int)panels;
    if (nt == 1) {
        run_part(u, &g, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    run_part(u, &g, omp_get_thread_num(), omp_get_num_threads());
}
