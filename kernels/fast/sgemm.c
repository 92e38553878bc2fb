/*
 * Cache-blocked single-precision GEMM for the fast backend.
 *
 * The classic layout: op(B) is packed in KC x NC blocks cut into NR-column
 * panels, op(A) in MC x KC blocks cut into MR-row panels, and a register-
 * blocked micro-kernel multiplies one A panel by one B panel. Transposes are
 * absorbed by the packing, so the micro-kernels see one format (an
 * untransposed B already has it, and is read in place when its row stride
 * does not crowd the L1 cache). Three
 * micro-kernels exist (AVX-512F 8x32, AVX2+FMA 6x16, portable C 4x16); the
 * best one this CPU supports is chosen once from CPUID, and the SIMD ones are
 * compiled with per-function target attributes so the library itself needs
 * nothing beyond baseline x86-64 (and builds on other architectures).
 *
 * A B^T with few rows of C (a small batch's input gradient through an
 * affine: dout W^T) is not packed: each element is the dot product of a row
 * of A and a row of B, both contiguous (dot_tile_avx2).
 *
 * Threads split C into disjoint column (or row) ranges and each runs the
 * sequential algorithm on its range with its own packing buffers: no
 * reductions cross threads, and an element's sum runs in the same order
 * whatever range holds it, so results depend neither on timing nor on the
 * thread count. Where ranges cost no extra packing (whole column blocks) or
 * little (a small B packed again per row range), they are handed out
 * dynamically, several per thread, so that a thread slowed by the machine
 * does not leave the other waiting at the end of the product.
 */
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>

#include "fast.h"

/* A KC x NC block of B (384 KiB) and an MC x KC block of A (96 KiB) stay
 * in a 512 KiB L2; a KC x NR panel of B (16-32 KiB) in L1. */
enum { KC = 256, MC = 96, NC = 384 };

typedef void (*ukernel_fn)(int64_t kc, const float *a, const float *b,
                           int64_t ldb, float *c, int64_t ldc, bool acc);

typedef struct ukernel {
    ukernel_fn fn;
    int mr, nr;
    bool avx_pack;          /* packing may use the AVX 8x8 transpose */
    ukernel_fn rows_fn[8];  /* [m]: only the first m rows (may be NULL) */
} ukernel;

/* ---- micro-kernels: C[mr x nr] (=|+=) Apanel (kc x mr) * Bpanel (kc x nr),
 * B's rows ldb floats apart (nr when packed) */

static void ukr_generic(int64_t kc, const float *a, const float *b, int64_t ldb,
                        float *c, int64_t ldc, bool acc)
{
    enum { MR = 4, NR = 16 };
    float t[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += MR, b += ldb)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                t[i][j] += a[i] * b[j];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * ldc + j] = acc ? c[i * ldc + j] + t[i][j] : t[i][j];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void
ukr_avx2(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
         int64_t ldc, bool acc)
{
    /* 6 x 16: 12 accumulators, 2 B vectors, 1 broadcast of 16 registers */
    __m256 r00 = _mm256_setzero_ps(), r01 = _mm256_setzero_ps();
    __m256 r10 = _mm256_setzero_ps(), r11 = _mm256_setzero_ps();
    __m256 r20 = _mm256_setzero_ps(), r21 = _mm256_setzero_ps();
    __m256 r30 = _mm256_setzero_ps(), r31 = _mm256_setzero_ps();
    __m256 r40 = _mm256_setzero_ps(), r41 = _mm256_setzero_ps();
    __m256 r50 = _mm256_setzero_ps(), r51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++, a += 6, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), t;
        t = _mm256_broadcast_ss(a + 0);
        r00 = _mm256_fmadd_ps(t, b0, r00), r01 = _mm256_fmadd_ps(t, b1, r01);
        t = _mm256_broadcast_ss(a + 1);
        r10 = _mm256_fmadd_ps(t, b0, r10), r11 = _mm256_fmadd_ps(t, b1, r11);
        t = _mm256_broadcast_ss(a + 2);
        r20 = _mm256_fmadd_ps(t, b0, r20), r21 = _mm256_fmadd_ps(t, b1, r21);
        t = _mm256_broadcast_ss(a + 3);
        r30 = _mm256_fmadd_ps(t, b0, r30), r31 = _mm256_fmadd_ps(t, b1, r31);
        t = _mm256_broadcast_ss(a + 4);
        r40 = _mm256_fmadd_ps(t, b0, r40), r41 = _mm256_fmadd_ps(t, b1, r41);
        t = _mm256_broadcast_ss(a + 5);
        r50 = _mm256_fmadd_ps(t, b0, r50), r51 = _mm256_fmadd_ps(t, b1, r51);
    }
    __m256 rows[6][2] = {{r00, r01}, {r10, r11}, {r20, r21},
                         {r30, r31}, {r40, r41}, {r50, r51}};
    for (int i = 0; i < 6; i++)
        for (int h = 0; h < 2; h++) {
            float *p = c + i * ldc + 8 * h;
            __m256 v = rows[i][h];
            if (acc)
                v = _mm256_add_ps(v, _mm256_loadu_ps(p));
            _mm256_storeu_ps(p, v);
        }
}

/* The first `rows` rows of the 6 x 16 kernel, for the last row panel of C
 * when M is not a multiple of 6: no work on the zero rows and no detour
 * through a temporary. rows is a constant after inlining. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
ukr_avx2_rows(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
              int64_t ldc, bool acc, const int rows)
{
    __m256 r[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++)
        r[i][0] = r[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++, a += 6, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            __m256 t = _mm256_broadcast_ss(a + i);
            r[i][0] = _mm256_fmadd_ps(t, b0, r[i][0]);
            r[i][1] = _mm256_fmadd_ps(t, b1, r[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < 2; h++) {
            float *p = c + i * ldc + 8 * h;
            __m256 v = r[i][h];
            if (acc)
                v = _mm256_add_ps(v, _mm256_loadu_ps(p));
            _mm256_storeu_ps(p, v);
        }
}

#define UKR_AVX2_ROWS(R)                                                       \
    __attribute__((target("avx2,fma"))) static void ukr_avx2_##R(              \
        int64_t kc, const float *a, const float *b, int64_t ldb, float *c,     \
        int64_t ldc, bool acc)                                                 \
    {                                                                          \
        ukr_avx2_rows(kc, a, b, ldb, c, ldc, acc, R);                          \
    }
UKR_AVX2_ROWS(1)
UKR_AVX2_ROWS(2)
UKR_AVX2_ROWS(3)
UKR_AVX2_ROWS(4)
UKR_AVX2_ROWS(5)
#undef UKR_AVX2_ROWS

__attribute__((target("avx512f"))) static void
ukr_avx512(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
           int64_t ldc, bool acc)
{
    /* 8 x 32: 16 accumulators, 2 B vectors, 1 broadcast of 32 registers */
    __m512 r[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i][0] = r[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++, a += 8, b += ldb) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512 t = _mm512_set1_ps(a[i]);
            r[i][0] = _mm512_fmadd_ps(t, b0, r[i][0]);
            r[i][1] = _mm512_fmadd_ps(t, b1, r[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        for (int h = 0; h < 2; h++) {
            float *p = c + i * ldc + 16 * h;
            __m512 v = r[i][h];
            if (acc)
                v = _mm512_add_ps(v, _mm512_loadu_ps(p));
            _mm512_storeu_ps(p, v);
        }
}

/* Rows of B prefetched ahead of the one multiplied: the strip's stride
 * defeats the hardware prefetchers. The distance was chosen by timing the
 * batch-1 affine product (bench/RESULTS.md, "Batch-1 inference"). */
enum { ROW_AHEAD = 16 };

/* One row of C against an untransposed B (a batch-1 affine): C[0, n0..n1)
 * (=|+=) sum over k of a[k * sa] * B[k, n0..n1). The row cannot feed the
 * 6 x 16 kernel's FMA pipes (two accumulators, one dependency chain each)
 * and B's 16-column panels touch its lines piecemeal; here 64 columns
 * (eight independent chains) run down each KC strip, reading 256 bytes of
 * every B row. Each element is summed in the order of the panel kernels
 * (FMAs over k from zero within a KC strip, then added to C), so the bits
 * equal those of the same row in a larger product. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
row_strip_avx2(int64_t kc, const float *a, int64_t sa, const float *b,
               int64_t ldb, float *c, bool acc, const int nv, int tail)
{
    __m256 r[8];
    __m256i mask = _mm256_setzero_si256();
    if (tail) {
        static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
        mask = _mm256_loadu_si256((const __m256i *)(ones + 8 - tail));
    }
#pragma GCC unroll 8
    for (int i = 0; i < nv; i++)
        r[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++, a += sa, b += ldb) {
        __m256 t = _mm256_broadcast_ss(a);
        /* the strip's lines ROW_AHEAD rows down: a hint, which never
         * faults, so it may run past the end of B */
        const float *f = b + ROW_AHEAD * ldb;
#pragma GCC unroll 8
        for (int i = 0; i < nv; i += 2)
            _mm_prefetch((const char *)(f + 8 * i), _MM_HINT_T0);
        _mm_prefetch((const char *)(f + 8 * nv - 1), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < nv; i++) {
            __m256 v = tail && i == nv - 1 ? _mm256_maskload_ps(b + 8 * i, mask)
                                           : _mm256_loadu_ps(b + 8 * i);
            r[i] = _mm256_fmadd_ps(t, v, r[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < nv; i++) {
        float *p = c + 8 * i;
        if (tail && i == nv - 1) {
            __m256 v = r[i];
            if (acc)
                v = _mm256_add_ps(v, _mm256_maskload_ps(p, mask));
            _mm256_maskstore_ps(p, mask, v);
        } else {
            __m256 v = r[i];
            if (acc)
                v = _mm256_add_ps(v, _mm256_loadu_ps(p));
            _mm256_storeu_ps(p, v);
        }
    }
}

__attribute__((target("avx2,fma"))) static void
row_avx2(const float *a, int64_t sa, const float *B, int64_t ldb, int64_t K,
         float *c, int64_t n0, int64_t n1, bool beta)
{
    for (int64_t pc = 0; pc < K; pc += KC) {
        int64_t kc = K - pc < KC ? K - pc : KC;
        bool acc = pc > 0 || beta;
        const float *ak = a + pc * sa, *bk = B + pc * ldb;
        for (int64_t j = n0; j < n1; j += 64) {
            int n = (int)(n1 - j < 64 ? n1 - j : 64), tail = n % 8;
            switch ((n + 7) / 8) {
#define ROW_STRIP(NV)                                                          \
    case NV:                                                                   \
        row_strip_avx2(kc, ak, sa, bk + j, ldb, c + j, acc, NV, tail);         \
        break;
                ROW_STRIP(1)
                ROW_STRIP(2)
                ROW_STRIP(3)
                ROW_STRIP(4)
                ROW_STRIP(5)
                ROW_STRIP(6)
                ROW_STRIP(7)
                ROW_STRIP(8)
#undef ROW_STRIP
            }
        }
    }
}

/* Sum of the 8 lanes of v: ((0+4) + (2+6)) + ((1+5) + (3+7)). */
__attribute__((target("avx2,fma"), always_inline)) static inline float hsum8(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/* r[i][j] += the 8 products a[i][k..k+8) b[j][k..k+8), lane by lane (with
 * m, only the lanes it selects are read; the others add 0 x 0). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dot_step(const int MI, const int NJ, const bool MASKED, const float *a, int64_t lda,
         const float *b, int64_t ldb, int64_t k, __m256i m, __m256 r[4][3])
{
    __m256 bv[3];
#pragma GCC unroll 3
    for (int j = 0; j < NJ; j++)
        bv[j] = MASKED ? _mm256_maskload_ps(b + j * ldb + k, m)
                       : _mm256_loadu_ps(b + j * ldb + k);
#pragma GCC unroll 4
    for (int i = 0; i < MI; i++) {
        __m256 av = MASKED ? _mm256_maskload_ps(a + i * lda + k, m)
                           : _mm256_loadu_ps(a + i * lda + k);
#pragma GCC unroll 3
        for (int j = 0; j < NJ; j++)
            r[i][j] = _mm256_fmadd_ps(av, bv[j], r[i][j]);
    }
}

/* C = A B^T (A: rows of K floats; B^T: B's rows, also K floats each), one
 * tile of MI rows of C by NJ columns: each element a dot product of two
 * rows, summed in 8 lanes (k mod 8) in k order, the last k % 8 through a
 * mask, then the lanes by hsum8; C[i][j] = that (+ C[i][j] when acc). Every
 * element is computed the same way in any tile. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dot_tile_avx2(const int MI, const int NJ, const float *a, int64_t lda, const float *b,
              int64_t ldb, int64_t K, float *c, int64_t ldc, bool acc)
{
    __m256 r[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < MI; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NJ; j++)
            r[i][j] = _mm256_setzero_ps();
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        dot_step(MI, NJ, false, a, lda, b, ldb, k, all, r);
    if (k < K)
        dot_step(MI, NJ, true, a, lda, b, ldb, k,
                 _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(K - k)),
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                 r);
#pragma GCC unroll 4
    for (int i = 0; i < MI; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NJ; j++) {
            float sum = hsum8(r[i][j]);
            float *p = c + i * ldc + j;
            *p = acc ? *p + sum : sum;
        }
}

/* dot_tile_avx2 with MI (1-4) and NJ (1-3) known at compile time. */
__attribute__((target("avx2,fma"))) static void
dot_tile_any(int mi, int nj, const float *a, int64_t lda, const float *b, int64_t ldb,
             int64_t K, float *c, int64_t ldc, bool acc)
{
    switch (mi * 4 + nj) {
#define DOT_TILE(MI_, NJ_)                                                     \
    case MI_ * 4 + NJ_:                                                        \
        dot_tile_avx2(MI_, NJ_, a, lda, b, ldb, K, c, ldc, acc);               \
        break;
        DOT_TILE(1, 1) DOT_TILE(1, 2) DOT_TILE(1, 3)
        DOT_TILE(2, 1) DOT_TILE(2, 2) DOT_TILE(2, 3)
        DOT_TILE(3, 1) DOT_TILE(3, 2) DOT_TILE(3, 3)
        DOT_TILE(4, 1) DOT_TILE(4, 2)
        default: dot_tile_avx2(4, 3, a, lda, b, ldb, K, c, ldc, acc); break;
#undef DOT_TILE
    }
}

/* Columns [j0, j1) of C = A B^T (+ C when acc): three rows of B at a time,
 * which stay in L1 while every row block of A (from L2) meets them. */
__attribute__((target("avx2,fma"))) static void
dot_columns_avx2(const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M,
                 int64_t K, float *C, int64_t ldc, int64_t j0, int64_t j1, bool acc)
{
    for (int64_t j = j0; j < j1; j += 3) {
        int nj = (int)(j1 - j < 3 ? j1 - j : 3);
        for (int64_t i = 0; i < M; i += 4)
            dot_tile_any((int)(M - i < 4 ? M - i : 4), nj, A + i * lda, lda, B + j * ldb, ldb,
                         K, C + i * ldc + j, ldc, acc);
    }
}
#endif

/* A B^T with at most DOT_MAX_M rows of C and K >= DOT_MIN_K goes to the dot
 * kernel above: packing B there would cost as much as a product of a few
 * rows saves. */
enum { DOT_MAX_M = 64, DOT_MIN_K = 128 };

static const ukernel ukernels[DSV_FAST_ISA_COUNT] = {
#if defined(__x86_64__)
    [DSV_FAST_ISA_AVX512] = {ukr_avx512, 8, 32, true, {NULL}},
    [DSV_FAST_ISA_AVX2] = {ukr_avx2, 6, 16, true,
                           {NULL, ukr_avx2_1, ukr_avx2_2, ukr_avx2_3, ukr_avx2_4,
                            ukr_avx2_5}},
#endif
    [DSV_FAST_ISA_GENERIC] = {ukr_generic, 4, 16, false, {NULL}},
};

static const char *const isa_names[DSV_FAST_ISA_COUNT] = {"avx512", "avx2",
                                                          "generic"};

const char *dsv_fast_isa_name(dsv_fast_isa isa)
{
    return (unsigned)isa < DSV_FAST_ISA_COUNT ? isa_names[isa] : "unknown";
}

bool dsv_fast_isa_supported(dsv_fast_isa isa)
{
    switch (isa) {
#if defined(__x86_64__)
    case DSV_FAST_ISA_AVX512: return __builtin_cpu_supports("avx512f");
    case DSV_FAST_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    case DSV_FAST_ISA_GENERIC: return true;
    default: return false;
    }
}

static int chosen_isa = -1;

dsv_fast_isa dsv_fast_get_isa(void)
{
    /* a benign race: every thread computes the same answer */
    if (chosen_isa < 0) {
        int i = 0;
        while (!dsv_fast_isa_supported((dsv_fast_isa)i))
            i++;
        chosen_isa = i;
    }
    return (dsv_fast_isa)chosen_isa;
}

bool dsv_fast_set_isa(dsv_fast_isa isa)
{
    if (!dsv_fast_isa_supported(isa))
        return false;
    chosen_isa = (int)isa;
    return true;
}

/* ---- packing ------------------------------------------------------------- */

#if defined(__x86_64__)
/* c[j] = lane j of r[0..8): an 8x8 transpose in registers. */
__attribute__((target("avx"), always_inline)) static inline void
transpose8x8(const __m256 r[8], __m256 c[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    c[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    c[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    c[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    c[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    c[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    c[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    c[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    c[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* dst[j * w + r] = rows[r][k + j] for r, j < 8: an 8x8 transpose. */
__attribute__((target("avx"))) static void
transpose8(const float *const *rows, int64_t k, float *dst, int64_t w)
{
    __m256 r[8], c[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(rows[i] + k);
    transpose8x8(r, c);
    for (int j = 0; j < 8; j++)
        _mm256_storeu_ps(dst + j * w, c[j]);
}

/* dst[j * 6 + r] = rows[r][k + j] for r < 6, j < 8 (the AVX2 kernel's A
 * panels): the 8x8 transpose with two rows of zeros. Each column is stored
 * whole, its two extra lanes landing where the next column's store goes;
 * the last one is stored masked, so nothing past dst[48) is written. */
__attribute__((target("avx"))) static void
transpose6(const float *const *rows, int64_t k, float *dst)
{
    __m256 r[8], c[8];
    for (int i = 0; i < 6; i++)
        r[i] = _mm256_loadu_ps(rows[i] + k);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8x8(r, c);
    for (int j = 0; j < 7; j++)
        _mm256_storeu_ps(dst + j * 6, c[j]);
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    _mm256_maskstore_ps(dst + 42, six, c[7]);
}
#endif

/* Interleaves n rows of src (row stride ld, kc floats each) into dst, kc
 * groups of w floats, zero-padding rows n..w. Writes are sequential; the n
 * row streams are read in step, which the prefetchers follow. With avx and
 * full groups of 8 rows (or one of 6), 8x8 blocks are transposed in
 * registers. */
static void interleave_rows(const float *src, int64_t ld, int n, int w,
                            int64_t kc, float *dst, bool avx)
{
    const float *rows[32];
    for (int r = 0; r < n; r++)
        rows[r] = src + r * ld;
    int64_t k0 = 0;
#if defined(__x86_64__)
    if (avx && n == w && w % 8 == 0) {
        for (; k0 + 8 <= kc; k0 += 8)
            for (int r = 0; r < w; r += 8)
                transpose8(rows + r, k0, dst + k0 * w + r, w);
    } else if (avx && n == 6 && w == 6) {
        for (; k0 + 8 <= kc; k0 += 8)
            transpose6(rows, k0, dst + k0 * 6);
    }
#else
    (void)avx;
#endif
    dst += k0 * w;
    /* full panels of the usual widths: constant trip counts unroll */
#define INTERLEAVE_FIXED(W_)                                                   \
    case W_:                                                                   \
        for (int64_t k = k0; k < kc; k++, dst += W_)                           \
            for (int r = 0; r < W_; r++)                                       \
                dst[r] = rows[r][k];                                           \
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
    for (int64_t k = k0; k < kc; k++, dst += w) {
        int r = 0;
        for (; r < n; r++)
            dst[r] = rows[r][k];
        for (; r < w; r++)
            dst[r] = 0;
    }
}

/* Copies kc rows of n floats (row stride ld) into rows of w floats,
 * zero-padded. */
static void copy_rows(const float *src, int64_t ld, int n, int w, int64_t kc,
                      float *dst)
{
    for (int64_t k = 0; k < kc; k++, src += ld, dst += w) {
        int j = 0;
        for (; j < n; j++)
            dst[j] = src[j];
        for (; j < w; j++)
            dst[j] = 0;
    }
}

/* op(A)[i0 .. i0+mc) x [k0 .. k0+kc) into MR-row panels, zero-padded rows. */
static void pack_a(bool ta, const float *A, int64_t lda, int64_t i0,
                   int64_t k0, int64_t mc, int64_t kc, int mr, float *dst,
                   bool avx)
{
    for (int64_t ip = 0; ip < mc; ip += mr, dst += mr * kc) {
        int m = (int)(mc - ip < mr ? mc - ip : mr);
        if (ta)
            copy_rows(A + k0 * lda + i0 + ip, lda, m, mr, kc, dst);
        else
            interleave_rows(A + (i0 + ip) * lda + k0, lda, m, mr, kc, dst, avx);
    }
}

/* op(B)[k0 .. k0+kc) x [j0 .. j0+nc) into NR-column panels, zero-padded.
 * An untransposed B is swept row by row (each row read in one contiguous
 * run, which the prefetchers follow), scattering NR-float pieces to the
 * panels. */
static void pack_b(bool tb, const float *B, int64_t ldb, int64_t k0,
                   int64_t j0, int64_t kc, int64_t nc, int nr, float *dst,
                   bool avx)
{
    if (tb) {
        for (int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
            int n = (int)(nc - jp < nr ? nc - jp : nr);
            interleave_rows(B + (j0 + jp) * ldb + k0, ldb, n, nr, kc, dst, avx);
        }
        return;
    }
    int64_t full = nc / nr * nr;
    for (int64_t k = 0; k < kc; k++) {
        const float *src = B + (k0 + k) * ldb + j0;
        float *d = dst + k * nr;
        for (int64_t jp = 0; jp < full; jp += nr, d += nr * kc)
            memcpy(d, src + jp, sizeof(float) * (size_t)nr);
        if (full < nc)
            copy_rows(src + full, 0, (int)(nc - full), nr, 1, d);
    }
}

/* ---- the sequential algorithm on one block of C -------------------------- */

typedef struct gemm_args {
    bool ta, tb;
    int64_t M, N, K;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float beta;
    float *C;
} gemm_args;

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Whether a KC-row strip of B, rows ldb floats apart, can be streamed in
 * place: it must fit the L1 sets its rows map to (32 KiB, 8-way, 64-byte
 * lines). A row stride that is a multiple of 4 KiB puts every row in one
 * set, so such strips (a conv's 32x32 output rows, say) are packed. Fewer
 * rows fit more easily: true for kc, true for any smaller kc. */
static bool stream_b_ok(int64_t ldb, int64_t kc)
{
    int64_t bytes = ldb * (int64_t)sizeof(float);
    if (bytes % 64)
        return true;
    int64_t a = bytes / 64, b = 64;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    int64_t sets = 64 / a;
    return 8 * sets >= 2 * kc;
}

/* Columns of C per block: NC, or NC_STREAM when every strip of B is
 * streamed in place. A's block is packed once per column block; with B not
 * copied, a wider block packs A fewer times (once, for the 500 columns of
 * the course's hidden layer), which measured faster (bench/RESULTS.md,
 * "Column blocks when B is streamed"). */
enum { NC_STREAM = 512 };

static int64_t nc_of(const gemm_args *g)
{
    return !g->tb && stream_b_ok(g->ldb, g->K < KC ? g->K : KC) ? NC_STREAM : NC;
}

static size_t pack_floats(const ukernel *u, const gemm_args *g, int64_t M, int64_t N)
{
    int64_t kc = g->K < KC ? g->K : KC, ncap = nc_of(g);
    int64_t mc = round_up(M < MC ? M : MC, u->mr);
    int64_t nc = round_up(N < ncap ? N : ncap, u->nr);
    return (size_t)(kc * (mc + nc));
}

/* Rows [m0, m1) and columns [n0, n1) of C; pack holds pack_floats().
 * An untransposed B is not packed: its rows already hold NR consecutive
 * columns, and the micro-kernel streams them with B's own row stride (only
 * a last, partial panel is packed, to pad it with zeros). That saves a copy
 * of B per call, which matters for the many small products of a conv. */
static void gemm_block(const ukernel *u, const gemm_args *g, int64_t m0,
                       int64_t m1, int64_t n0, int64_t n1, float *pack)
{
    const int mr = u->mr, nr = u->nr;
    int64_t M = m1 - m0, N = n1 - n0;
    float *apack = pack;
    float *bpack = pack + (g->K < KC ? g->K : KC) * round_up(M < MC ? M : MC, mr);
    float edge[8 * 32];

    const int64_t ncap = nc_of(g);
    for (int64_t jc = 0; jc < N; jc += ncap) {
        int64_t nc = N - jc < ncap ? N - jc : ncap;
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = g->K - pc < KC ? g->K - pc : KC;
            bool acc = pc > 0 || g->beta != 0;
            bool stream = !g->tb && stream_b_ok(g->ldb, kc);
            if (!stream)
                pack_b(g->tb, g->B, g->ldb, pc, n0 + jc, kc, nc, nr, bpack,
                       u->avx_pack);
            else if (nc % nr)
                pack_b(false, g->B, g->ldb, pc, n0 + jc + nc / nr * nr, kc,
                       nc % nr, nr, bpack + nc / nr * nr * kc, u->avx_pack);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                pack_a(g->ta, g->A, g->lda, m0 + ic, pc, mc, kc, mr, apack,
                       u->avx_pack);
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    int64_t n = nc - jr < nr ? nc - jr : nr;
                    const float *bp = bpack + jr * kc;
                    int64_t ldb = nr;
                    if (stream && n == nr) {
                        bp = g->B + pc * g->ldb + n0 + jc + jr;
                        ldb = g->ldb;
                    }
                    for (int64_t ir = 0; ir < mc; ir += mr) {
                        int64_t m = mc - ir < mr ? mc - ir : mr;
                        const float *ap = apack + ir * kc;
                        float *cp = g->C + (m0 + ic + ir) * g->ldc + n0 + jc + jr;
                        if (m == mr && n == nr) {
                            u->fn(kc, ap, bp, ldb, cp, g->ldc, acc);
                            continue;
                        }
                        if (n == nr && u->rows_fn[m]) {
                            u->rows_fn[m](kc, ap, bp, ldb, cp, g->ldc, acc);
                            continue;
                        }
                        u->fn(kc, ap, bp, ldb, edge, nr, false);
                        for (int64_t i = 0; i < m; i++)
                            for (int64_t j = 0; j < n; j++)
                                cp[i * g->ldc + j] = acc ? cp[i * g->ldc + j] +
                                                               edge[i * nr + j]
                                                         : edge[i * nr + j];
                    }
                }
            }
        }
    }
}

static void zero_or_keep(const gemm_args *g)
{
    if (g->beta != 0)
        return;
    for (int64_t i = 0; i < g->M; i++)
        memset(g->C + i * g->ldc, 0, sizeof(float) * (size_t)g->N);
}

/* The plain triple loop for block rows [m0, m1), columns [n0, n1): only used
 * when a packing buffer cannot be allocated, so the call still completes. */
static void gemm_plain(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1)
{
    for (int64_t i = m0; i < m1; i++)
        for (int64_t j = n0; j < n1; j++) {
            float s = 0;
            for (int64_t k = 0; k < g->K; k++)
                s += (g->ta ? g->A[k * g->lda + i] : g->A[i * g->lda + k]) *
                     (g->tb ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j]);
            float *cp = g->C + i * g->ldc + j;
            *cp = g->beta != 0 ? *cp + s : s;
        }
}

/* The dynamic split: C in chunks of step columns (by_n) or rows, handed to
 * threads as they free up. */
typedef struct dsplit {
    bool by_n;
    int64_t step, chunks;
} dsplit;

/* Whether to split dynamically, and how: along N (the longer panel count,
 * as the static split) in whole column blocks, when there are at least two
 * a thread, as those cost no packing beyond one thread's; along M in four
 * row ranges a thread, each a multiple of MC rows, when B is small enough
 * (1 MiB) that packing it once per range costs little. */
static bool dynamic_split(const ukernel *u, const gemm_args *g, int nt, dsplit *d)
{
    int64_t pm = (g->M + u->mr - 1) / u->mr, pn = (g->N + u->nr - 1) / u->nr;
    if (pn >= pm) {
        int64_t ncap = nc_of(g), blocks = (g->N + ncap - 1) / ncap;
        if (blocks < 2 * (int64_t)nt)
            return false;
        *d = (dsplit){true, ncap, blocks};
        return true;
    }
    int64_t parts = 4 * (int64_t)nt;
    if (g->K * g->N > (1 << 18) || g->M < parts * MC)
        return false;
    int64_t rows = round_up((g->M + parts - 1) / parts, MC);
    *d = (dsplit){false, rows, (g->M + rows - 1) / rows};
    return true;
}

static void run_dynamic(const ukernel *u, const gemm_args *g, const dsplit *d, int nt)
{
#pragma omp parallel num_threads(nt)
    {
        float *pack = dsv_alloc(sizeof(float) * pack_floats(u, g, d->by_n ? g->M : d->step,
                                                             d->by_n ? d->step : g->N));
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < d->chunks; c++) {
            int64_t a = c * d->step, lim = d->by_n ? g->N : g->M;
            int64_t b = lim - a < d->step ? lim : a + d->step;
            int64_t m0 = d->by_n ? 0 : a, m1 = d->by_n ? g->M : b;
            int64_t n0 = d->by_n ? a : 0, n1 = d->by_n ? b : g->N;
            if (pack)
                gemm_block(u, g, m0, m1, n0, n1, pack);
            else
                gemm_plain(g, m0, m1, n0, n1);
        }
        dsv_free(pack);
    }
}

/* Runs block t of nt: C is cut along its longer panel count. */
static void run_part(const ukernel *u, const gemm_args *g, int t, int nt)
{
    int64_t pm = (g->M + u->mr - 1) / u->mr, pn = (g->N + u->nr - 1) / u->nr;
    int64_t m0 = 0, m1 = g->M, n0 = 0, n1 = g->N;
    if (pn >= pm) {
        n0 = pn * t / nt * u->nr, n1 = pn * (t + 1) / nt * u->nr;
        n1 = n1 < g->N ? n1 : g->N;
    } else {
        m0 = pm * t / nt * u->mr, m1 = pm * (t + 1) / nt * u->mr;
        m1 = m1 < g->M ? m1 : g->M;
    }
    if (m0 >= m1 || n0 >= n1)
        return;
    float *pack = dsv_alloc(sizeof(float) * pack_floats(u, g, m1 - m0, n1 - n0));
    if (!pack) {
        gemm_plain(g, m0, m1, n0, n1);
        return;
    }
    gemm_block(u, g, m0, m1, n0, n1, pack);
    dsv_free(pack);
}

void dsv_fast_sgemm(bool transa, bool transb, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb,
                    float beta, float *C, int64_t ldc, int nthreads)
{
    gemm_args g = {transa, transb, M, N, K, A, B, lda, ldb, ldc, beta, C};
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        zero_or_keep(&g);
        return;
    }
    const ukernel *u = &ukernels[dsv_fast_get_isa()];
    int64_t pm = (M + u->mr - 1) / u->mr, pn = (N + u->nr - 1) / u->nr;
    int64_t panels = pm > pn ? pm : pn;
    int nt = nthreads < 1 ? 1 : nthreads;
    /* a parallel region costs microseconds: not worth it for tiny products */
    if ((double)M * (double)N * (double)K < 32768.0)
        nt = 1;
    if (nt > panels)
        nt = (int)panels;
#if defined(__x86_64__)
    if (M == 1 && !transb && dsv_fast_get_isa() != DSV_FAST_ISA_GENERIC) {
        /* AVX2 or AVX-512 (which has AVX2): the bits do not depend on it */
        int64_t units = (N + 63) / 64, sa = transa ? lda : 1;
        nt = nt < units ? nt : (int)units;
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            int64_t j0 = units * t / n * 64, j1 = units * (t + 1) / n * 64;
            row_avx2(A, sa, B, ldb, K, C, j0, j1 < N ? j1 : N, beta != 0);
        }
        return;
    }
    if (!transa && transb && M <= DOT_MAX_M && K >= DOT_MIN_K &&
        dsv_fast_get_isa() != DSV_FAST_ISA_GENERIC) {
        /* blocks of 96 columns (32 three-row steps of B) */
        int64_t units = (N + 95) / 96;
        nt = nt < units ? nt : (int)units;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
        for (int64_t b = 0; b < units; b++)
            dot_columns_avx2(A, lda, B, ldb, M, K, C, ldc, b * 96,
                             (b + 1) * 96 < N ? (b + 1) * 96 : N, beta != 0);
        return;
    }
#endif
    if (nt == 1) {
        run_part(u, &g, 0, 1);
        return;
    }
    dsplit d;
    if (dynamic_split(u, &g, nt, &d)) {
        run_dynamic(u, &g, &d, nt);
        return;
    }
#pragma omp parallel num_threads(nt)
    run_part(u, &g, omp_get_thread_num(), omp_get_num_threads());
}
