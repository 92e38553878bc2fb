/*
 * Direct convolution for the fast backend. im2col + sgemm spends much of its
 * time writing and reading the column matrix, and with few taps per output
 * (K = C*HH*WW ~ 27 on an RGB input) its products keep few accumulators
 * busy; here the forward reads the input itself, rearranged once per image.
 *
 * Each image is rewritten in a "phase" layout T (C, Hp, s, L), Hp = H + 2*pad:
 * padded row r of channel c split into its s phases,
 *     T[c][r][q][j] = xpad[c][r][s*j + q]  (0 outside the image).
 * The input that filter tap k = (c, kh, kw) meets at output row oh, columns
 * ow, ow+1, ... is then the contiguous run T[c][s*oh + kh][kw % s][ow + kw/s ...]
 * whatever the stride, so all three passes are register tiles of AVX2 FMAs:
 *   forward   out[f][oh][ow..] = b[f] + sum_k w[f][k] * Trow_k(oh)[ow..]
 *             (tiles of up to 6 channels x 16 columns)
 *   dx        dT[row_k(oh)][ow..] += sum_f w[f][k] * dout[f][oh][ow..],
 *             then dx is read back out of dT (the inverse of the layout)
 *             (tiles of 3 taps x 2 rows x 16 columns)
 *   dw        dw[f][k] += sum_{oh, ow} dout[f][oh][ow] * Trow_k(oh)[ow],
 *             8 columns at a time, straight from T (4 channels x 3 taps)
 * Images are handed to threads as they free up (forward: one at a time;
 * backward: in chunks, each with its own dw/db partial sums).
 *
 * What must stay true:
 *  - a phase row holds L >= 16 * ceil(W'/16) + (WW-1)/s floats, so full-vector
 *    loads and stores of any column tile stay inside its row, and s*L covers
 *    the whole padded row;
 *  - lanes past W' are never stored to out, and are zero in what is added
 *    into dT and into the dw sums (masked loads), so values outside the
 *    convolution's window, NaN included, never leak in;
 *  - every sum runs in a fixed order whatever the timing: dw and db sums
 *    belong to chunks of images, not to threads (each chunk's lanes are
 *    added in a fixed order), and are added chunk by chunk; the chunks
 *    depend on the thread count only when their sums would pass 8 MiB
 *    (bwd_chunks);
 *  - kernels given nthreads 1 open no parallel region.
 */
#include <string.h>

#include <omp.h>

#include "fast.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_DIRECT 1
#else
#define HAVE_DIRECT 0
#endif

/* Largest K taken here (the tap offsets live on the stack). */
enum { DIRECT_KMAX = 1024 };

static bool direct_allowed = true;

void dsv_fast_conv_set_direct(bool allowed) { direct_allowed = allowed; }

/* The direct kernel skips im2col's copy of x, so it is taken wherever it
 * applies; its backward loses only on outputs 8 columns wide or less, where
 * half of each 16-column tile is idle (bench/RESULTS.md, "Convolution
 * backend choice", has the measurements against im2col + sgemm). A 1x1,
 * stride 1, unpadded convolution is a plain product already (conv.c hands
 * x to sgemm as it is). */
bool dsv_fast_conv_direct_ok(const dsv_call *c, bool backward)
{
    if (!HAVE_DIRECT || !direct_allowed || dsv_fast_get_isa() == DSV_FAST_ISA_GENERIC)
        return false;
    int64_t K = c->w->shape[1] * c->w->shape[2] * c->w->shape[3];
    int64_t Wo = 1 + (c->x->shape[3] + 2 * c->p.pad - c->w->shape[3]) / c->p.stride;
    bool plain_1x1 = K == c->w->shape[1] && c->p.stride == 1 && c->p.pad == 0;
    return K <= DIRECT_KMAX && !plain_1x1 && (!backward || Wo > 8);
}

#if HAVE_DIRECT

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

typedef struct dgeom {
    int64_t N, C, H, W, F, HH, WW, Ho, Wo, K, P;
    int64_t s, pad, Hp, L;
    int64_t rowstep; /* floats between T rows of consecutive output rows */
    int64_t tsize;   /* floats of one image's T, rounded to 16 */
    int64_t ntiles;  /* 16-column tiles per output row */
} dgeom;

static dgeom dgeom_of(const dsv_call *c)
{
    dgeom g;
    g.N = c->x->shape[0], g.C = c->x->shape[1];
    g.H = c->x->shape[2], g.W = c->x->shape[3];
    g.F = c->w->shape[0], g.HH = c->w->shape[2], g.WW = c->w->shape[3];
    g.s = c->p.stride, g.pad = c->p.pad;
    g.Ho = 1 + (g.H + 2 * g.pad - g.HH) / g.s;
    g.Wo = 1 + (g.W + 2 * g.pad - g.WW) / g.s;
    g.K = g.C * g.HH * g.WW, g.P = g.Ho * g.Wo;
    g.Hp = g.H + 2 * g.pad;
    g.ntiles = (g.Wo + 15) / 16;
    /* room for every column tile, and for the whole padded row */
    int64_t span = g.ntiles * 16 + (g.WW - 1) / g.s;
    int64_t whole = (g.W + 2 * g.pad + g.s - 1) / g.s + 8;
    g.L = ((span > whole ? span : whole) + 7) & ~(int64_t)7;
    g.rowstep = g.s * g.s * g.L;
    g.tsize = (g.C * g.Hp * g.s * g.L + 15) & ~(int64_t)15;
    return g;
}

/* Offset in T of tap k's run for output row 0, column 0. */
static void tap_offsets(const dgeom *g, int64_t *off)
{
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t kh = 0; kh < g->HH; kh++)
            for (int64_t kw = 0; kw < g->WW; kw++)
                off[(c * g->HH + kh) * g->WW + kw] =
                    ((c * g->Hp + kh) * g->s + kw % g->s) * g->L + kw / g->s;
}

/* 8 floats of row xr (W floats) from column i >= 0 on, zero from W on. */
INLINE_AVX2 __m256 load_row8(const float *xr, int64_t i, int64_t W)
{
    if (i + 8 <= W)
        return _mm256_loadu_ps(xr + i);
    __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(W - i)),
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(xr + i, in);
}

/*
 * The image's pixels into T (C, Hp, s, L). Only the pixels are written: T
 * must be zeroed once for the geometry (its padding then stays zero). Runs
 * of 8 or 16 pixels are written whole, with zeros past the row's end; those
 * land in T's right padding (L has 8 floats to spare for them).
 *
 * Here and in from_phases each stride has its own row loop, with the row
 * pointers stepped and the masks made once: with the stride tested per row
 * and the pointers recomputed, the stride-2 split took twice as long.
 */
AVX2 static void to_phases(const dgeom *g, const float *x, float *t)
{
    const int64_t s = g->s, L = g->L, W = g->W, H = g->H, p = g->pad, sL = s * L;
    /* stride 2: offsets in a T row of the even and the odd pixels' phase
       runs, whole runs of 16 pixels, and the masks of the last one's
       quarters */
    const int64_t eo = (p & 1) * L + p / 2, oo = (1 - (p & 1)) * L + (p + 1) / 2;
    const int64_t nfull = W / 16, rest = W - 16 * nfull;
    __m128i q0 = _mm_setr_epi32(0, 1, 2, 3);
    __m128i m0 = _mm_cmpgt_epi32(_mm_set1_epi32((int)rest), q0);
    __m128i m1 = _mm_cmpgt_epi32(_mm_set1_epi32((int)rest - 4), q0);
    __m128i m2 = _mm_cmpgt_epi32(_mm_set1_epi32((int)rest - 8), q0);
    __m128i m3 = _mm_cmpgt_epi32(_mm_set1_epi32((int)rest - 12), q0);
    for (int64_t c = 0; c < g->C; c++) {
        float *tr = t + (c * g->Hp + p) * sL;
        const float *xr = x + c * H * W;
        if (s == 1) {
            for (int64_t ih = 0; ih < H; ih++, tr += sL, xr += W)
                for (int64_t i = 0; i < W; i += 8)
                    _mm256_storeu_ps(tr + p + i, load_row8(xr, i, W));
        } else if (s == 2) {
            /* runs of 16 pixels, the last one (rest pixels) through masked
               loads of its four quarters. x[2m] goes to phase p%2 at
               m + p/2, x[2m+1] to the other phase at m + (p+1)/2. Pixels
               0-3 and 8-11 in one vector, 4-7 and 12-15 in another: their
               in-lane shuffles are the even and the odd pixels, in order. */
            for (int64_t ih = 0; ih < H; ih++, tr += sL, xr += W) {
                float *te = tr + eo, *to = tr + oo;
                const float *xj = xr;
                for (int64_t j = 0; j < nfull; j++, xj += 16, te += 8, to += 8) {
                    __m256 lo = _mm256_insertf128_ps(
                        _mm256_castps128_ps256(_mm_loadu_ps(xj)), _mm_loadu_ps(xj + 8), 1);
                    __m256 hi = _mm256_insertf128_ps(
                        _mm256_castps128_ps256(_mm_loadu_ps(xj + 4)), _mm_loadu_ps(xj + 12), 1);
                    _mm256_storeu_ps(te, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
                    _mm256_storeu_ps(to, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
                }
                if (rest) {
                    __m256 lo = _mm256_insertf128_ps(
                        _mm256_castps128_ps256(_mm_maskload_ps(xj, m0)),
                        _mm_maskload_ps(xj + 8, m2), 1);
                    __m256 hi = _mm256_insertf128_ps(
                        _mm256_castps128_ps256(_mm_maskload_ps(xj + 4, m1)),
                        _mm_maskload_ps(xj + 12, m3), 1);
                    _mm256_storeu_ps(te, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
                    _mm256_storeu_ps(to, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
                }
            }
        } else {
            for (int64_t ih = 0; ih < H; ih++, tr += sL, xr += W)
                for (int64_t i = 0; i < W; i++)
                    tr[((i + p) % s) * L + (i + p) / s] = xr[i];
        }
    }
}

/* dx of one image from its dT: the pixels of to_phases read back. */
AVX2 static void from_phases(const dgeom *g, const float *t, float *dx)
{
    const int64_t s = g->s, L = g->L, W = g->W, H = g->H, p = g->pad, sL = s * L;
    /* stride 2: the phase runs' offsets as in to_phases, and the pick of
       each row's last 8 pixels (below) */
    const int64_t eo = (p & 1) * L + p / 2, oo = (1 - (p & 1)) * L + (p + 1) / 2;
    const int64_t mlast = (W - 1) / 16 * 8, left = W - 2 * mlast;
    const int64_t k = left > 8 ? left - 8 : left;
    __m256i pick = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                    _mm256_set1_epi32((int)k));
    __m256 from_hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(pick, _mm256_set1_epi32(7)));
    pick = _mm256_and_si256(pick, _mm256_set1_epi32(7));
    for (int64_t c = 0; c < g->C; c++) {
        const float *tr = t + (c * g->Hp + p) * sL;
        float *dr = dx + c * H * W;
        if (s == 1 && W >= 8) {
            /* whole vectors, the last one ending at the row's end */
            for (int64_t ih = 0; ih < H; ih++, tr += sL, dr += W) {
                for (int64_t i = 0; i + 8 < W; i += 8)
                    _mm256_storeu_ps(dr + i, _mm256_loadu_ps(tr + p + i));
                _mm256_storeu_ps(dr + W - 8, _mm256_loadu_ps(tr + p + W - 8));
            }
        } else if (s == 2 && W >= 16) {
            /* a row's last run of 16 pixels (or fewer) starts at 2 * mlast,
               with `left` pixels; its last 8 are the concatenation (prev,
               v0, v1) from float `left` on (prev: the 8 pixels before the
               run), picked by two permutes and a blend, and stored whole at
               the row's end */
            for (int64_t ih = 0; ih < H; ih++, tr += sL, dr += W) {
                const float *te = tr + eo, *to = tr + oo;
                __m256 prev = _mm256_setzero_ps();
                for (int64_t m = 0; m <= mlast; m += 8) {
                    __m256 e = _mm256_loadu_ps(te + m), o = _mm256_loadu_ps(to + m);
                    __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
                    __m256 v0 = _mm256_permute2f128_ps(lo, hi, 0x20);
                    __m256 v1 = _mm256_permute2f128_ps(lo, hi, 0x31);
                    if (m < mlast || left == 16) {
                        _mm256_storeu_ps(dr + 2 * m, v0);
                        _mm256_storeu_ps(dr + 2 * m + 8, v1);
                    } else {
                        /* m > 0 here (W >= 16), so prev holds pixels */
                        __m256 a = left > 8 ? v0 : prev, b2 = left > 8 ? v1 : v0;
                        if (left > 8)
                            _mm256_storeu_ps(dr + 2 * m, v0);
                        _mm256_storeu_ps(dr + W - 8,
                                         _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, pick),
                                                          _mm256_permutevar8x32_ps(b2, pick),
                                                          from_hi));
                    }
                    prev = v1;
                }
            }
        } else {
            for (int64_t ih = 0; ih < H; ih++, tr += sL, dr += W)
                for (int64_t i = 0; i < W; i++)
                    dr[i] = tr[((i + p) % s) * L + (i + p) / s];
        }
    }
}

/* Lane masks for a tile of n valid columns (all 16 when n >= 16). */
typedef struct tmask {
    bool full;
    __m256i m0, m1;
} tmask;

AVX2 static tmask tile_mask(int64_t n)
{
    tmask m;
    m.full = n >= 16;
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    m.m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 16 ? n : 16)), idx);
    m.m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 16 ? n : 16) - 8), idx);
    return m;
}

/* Masks of the full tiles and of a row's last tile. */
typedef struct rmask {
    tmask whole, last;
} rmask;

AVX2 static rmask row_masks(const dgeom *g)
{
    rmask r = {tile_mask(16), tile_mask(g->Wo - (g->ntiles - 1) * 16)};
    return r;
}

/*
 * Forward, one block of MB output channels over output rows [oh0, oh1) of
 * one image, 16 columns at a time. wp (K, MB): the block's weights,
 * tap-major; t: the image's T; o: out of the image at channel f0.
 */
INLINE_AVX2 void fwd_block(const int MB, const dgeom *g, const float *wp,
                           const float *t, const int64_t *off, const float *bias,
                           float *o, int64_t oh0, int64_t oh1, const rmask *rm)
{
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t tl = 0; tl < g->ntiles; tl++) {
            const float *tt = t + oh * g->rowstep + tl * 16;
            const tmask *mk = tl + 1 < g->ntiles ? &rm->whole : &rm->last;
            __m256 a0[6], a1[6];
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++)
                a0[m] = a1[m] = _mm256_set1_ps(bias[m]);
            const int64_t K = g->K;
#pragma GCC unroll 3
            for (int64_t k = 0; k < K; k++) {
                const float *r = tt + off[k];
                __m256 b0 = _mm256_loadu_ps(r), b1 = _mm256_loadu_ps(r + 8);
#pragma GCC unroll 6
                for (int m = 0; m < MB; m++) {
                    __m256 wv = _mm256_broadcast_ss(wp + k * MB + m);
                    a0[m] = _mm256_fmadd_ps(wv, b0, a0[m]);
                    a1[m] = _mm256_fmadd_ps(wv, b1, a1[m]);
                }
            }
            float *d = o + oh * g->Wo + tl * 16;
            if (mk->full) {
#pragma GCC unroll 6
                for (int m = 0; m < MB; m++) {
                    _mm256_storeu_ps(d + m * g->P, a0[m]);
                    _mm256_storeu_ps(d + m * g->P + 8, a1[m]);
                }
            } else {
#pragma GCC unroll 6
                for (int m = 0; m < MB; m++) {
                    _mm256_maskstore_ps(d + m * g->P, mk->m0, a0[m]);
                    _mm256_maskstore_ps(d + m * g->P + 8, mk->m1, a1[m]);
                }
            }
        }
}

/*
 * dx, one tile: MB taps x R output rows (1 or 2) x 16 columns. The taps'
 * runs of dT (tt + off[m], rows rowstep apart) get sum_f w[f][k] *
 * dout[f][..]. wt (F, MB): the block's weights, channel-major; dd: dout of
 * the image at the tile's first row and column, channels P apart. Two rows
 * share each broadcast weight between four vectors. FULL (all 16 columns
 * valid, no masks) is fixed at compile time: tested in the channel loop,
 * with F and the strides read through g, it cost 5-10% of the backward.
 */
INLINE_AVX2 void dx_tile(const int MB, const int R, const bool FULL, const int64_t F,
                         const int64_t P, const int64_t Wo, const float *wt,
                         const float *dd, float *tt, const int64_t *off, int64_t rowstep,
                         const tmask *mk)
{
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int m = 0; m < MB; m++)
#pragma GCC unroll 4
        for (int v = 0; v < 2 * R; v++)
            a[m][v] = _mm256_setzero_ps();
    /* per channel: MB broadcasts, then each dout vector is loaded
       and used at once (12 sums + 3 weights + 1 vector: 16 registers) */
    for (int64_t f = 0; f < F; f++, dd += P, wt += MB) {
        __m256 wv[3];
#pragma GCC unroll 3
        for (int m = 0; m < MB; m++)
            wv[m] = _mm256_broadcast_ss(wt + m);
#pragma GCC unroll 4
        for (int v = 0; v < 2 * R; v++) {
            const float *p = dd + (v / 2) * Wo + (v % 2) * 8;
            __m256 b = FULL ? _mm256_loadu_ps(p)
                            : _mm256_maskload_ps(p, v % 2 ? mk->m1 : mk->m0);
#pragma GCC unroll 3
            for (int m = 0; m < MB; m++)
                a[m][v] = _mm256_fmadd_ps(wv[m], b, a[m][v]);
        }
    }
#pragma GCC unroll 3
    for (int m = 0; m < MB; m++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            float *p = tt + off[m] + r * rowstep;
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), a[m][2 * r]));
            _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), a[m][2 * r + 1]));
        }
}

/* dx, one block of MB taps over output rows [oh0, oh1) of one image (R
 * dividing oh1 - oh0): d, dout of the image; t, its dT. */
INLINE_AVX2 void dx_block(const int MB, const int R, const dgeom *g, const float *wt,
                          const float *d, float *t, const int64_t *off,
                          int64_t oh0, int64_t oh1, const rmask *rm)
{
    const int64_t F = g->F, P = g->P, Wo = g->Wo, rowstep = g->rowstep, nt = g->ntiles;
    for (int64_t oh = oh0; oh < oh1; oh += R)
        for (int64_t tl = 0; tl < nt; tl++) {
            const float *dd = d + oh * Wo + tl * 16;
            float *tt = t + oh * rowstep + tl * 16;
            if (tl + 1 < nt || rm->last.full)
                dx_tile(MB, R, true, F, P, Wo, wt, dd, tt, off, rowstep, &rm->whole);
            else
                dx_tile(MB, R, false, F, P, Wo, wt, dd, tt, off, rowstep, &rm->last);
        }
}

/*
 * dw over one image: MF channels x MK taps, summed over every output
 * position 8 columns at a time, reading the taps' runs straight from T; the
 * 8 lanes of each sum are added into (when first, stored in) pv (F*K, 8)
 * at (f0, k0). d: dout of the image at channel f0; t: its T; off: the
 * tile's tap offsets. Lanes past Wo are loaded as zero on both sides, so
 * neither the next row's dout nor pixels outside the window reach the sums.
 */
INLINE_AVX2 void dw_tile(const int MF, const int MK, const dgeom *g, const float *d,
                         const float *t, const int64_t *off, float *pv, bool first)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int m = 0; m < MF; m++)
#pragma GCC unroll 3
        for (int j = 0; j < MK; j++)
            acc[m][j] = _mm256_setzero_ps();
    const float *tk[3];
#pragma GCC unroll 3
    for (int j = 0; j < MK; j++)
        tk[j] = t + off[j];
    int64_t P = g->P, Wo = g->Wo, full = Wo & ~(int64_t)7;
    /* whole vectors, then the masked tails in a loop of their own (the
       mask would take a 17th register here) */
    for (int64_t oh = 0; oh < g->Ho; oh++) {
        const float *dr = d + oh * Wo;
        int64_t tr = oh * g->rowstep;
        for (int64_t i = 0; i < full; i += 8) {
            __m256 tv[3];
#pragma GCC unroll 3
            for (int j = 0; j < MK; j++)
                tv[j] = _mm256_loadu_ps(tk[j] + tr + i);
#pragma GCC unroll 4
            for (int m = 0; m < MF; m++) {
                __m256 dv = _mm256_loadu_ps(dr + m * P + i);
#pragma GCC unroll 3
                for (int j = 0; j < MK; j++)
                    acc[m][j] = _mm256_fmadd_ps(dv, tv[j], acc[m][j]);
            }
        }
    }
    if (full < Wo) {
        __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(Wo - full)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const float *dr = d + oh * Wo + full;
            int64_t tr = oh * g->rowstep + full;
            __m256 tv[3];
#pragma GCC unroll 3
            for (int j = 0; j < MK; j++)
                tv[j] = _mm256_maskload_ps(tk[j] + tr, tail);
#pragma GCC unroll 4
            for (int m = 0; m < MF; m++) {
                __m256 dv = _mm256_maskload_ps(dr + m * P, tail);
#pragma GCC unroll 3
                for (int j = 0; j < MK; j++)
                    acc[m][j] = _mm256_fmadd_ps(dv, tv[j], acc[m][j]);
            }
        }
    }
#pragma GCC unroll 3
    for (int m = 0; m < MF; m++)
#pragma GCC unroll 3
        for (int j = 0; j < MK; j++) {
            float *p = pv + (m * g->K + j) * 8;
            _mm256_storeu_ps(p, first ? acc[m][j] : _mm256_add_ps(_mm256_loadu_ps(p), acc[m][j]));
        }
}

/* n items in nb nearly equal blocks: the first n % nb hold one more. */
typedef struct split {
    int64_t nb, base, extra;
} split;

static split split_of(int64_t n, int64_t per_block)
{
    split sp;
    sp.nb = (n + per_block - 1) / per_block;
    sp.base = n / sp.nb, sp.extra = n % sp.nb;
    return sp;
}

/* Block b: [*i0, *i0 + *len). */
static inline void block(const split *sp, int64_t b, int64_t *i0, int *len)
{
    *i0 = b * sp->base + (b < sp->extra ? b : sp->extra);
    *len = (int)(sp->base + (b < sp->extra));
}

AVX2 static void fwd_block_any(int mb, const dgeom *g, const float *wp,
                               const float *t, const int64_t *off, const float *bias,
                               float *o, int64_t oh0, int64_t oh1, const rmask *rm)
{
    switch (mb) {
    case 1: fwd_block(1, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    case 2: fwd_block(2, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    case 3: fwd_block(3, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    case 4: fwd_block(4, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    case 5: fwd_block(5, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    default: fwd_block(6, g, wp, t, off, bias, o, oh0, oh1, rm); break;
    }
}

/* Output rows [oh, oh + r), r 1 or 2, for a block of mb taps. */
AVX2 static void dx_block_any(int mb, int r, const dgeom *g, const float *wt,
                              const float *d, float *t, const int64_t *off, int64_t oh,
                              const rmask *rm)
{
    switch (mb * 2 + r - 1) {
    case 1 * 2 + 1: dx_block(1, 2, g, wt, d, t, off, oh, oh + 2, rm); break;
    case 1 * 2 + 0: dx_block(1, 1, g, wt, d, t, off, oh, oh + 1, rm); break;
    case 2 * 2 + 1: dx_block(2, 2, g, wt, d, t, off, oh, oh + 2, rm); break;
    case 2 * 2 + 0: dx_block(2, 1, g, wt, d, t, off, oh, oh + 1, rm); break;
    case 3 * 2 + 1: dx_block(3, 2, g, wt, d, t, off, oh, oh + 2, rm); break;
    default: dx_block(3, 1, g, wt, d, t, off, oh, oh + 1, rm); break;
    }
}

AVX2 static void dw_tile_any(int mf, int mk, const dgeom *g, const float *d,
                             const float *t, const int64_t *off, float *pv, bool first)
{
    switch (mf * 4 + mk) {
    case 1 * 4 + 1: dw_tile(1, 1, g, d, t, off, pv, first); break;
    case 1 * 4 + 2: dw_tile(1, 2, g, d, t, off, pv, first); break;
    case 1 * 4 + 3: dw_tile(1, 3, g, d, t, off, pv, first); break;
    case 2 * 4 + 1: dw_tile(2, 1, g, d, t, off, pv, first); break;
    case 2 * 4 + 2: dw_tile(2, 2, g, d, t, off, pv, first); break;
    case 2 * 4 + 3: dw_tile(2, 3, g, d, t, off, pv, first); break;
    case 3 * 4 + 1: dw_tile(3, 1, g, d, t, off, pv, first); break;
    case 3 * 4 + 2: dw_tile(3, 2, g, d, t, off, pv, first); break;
    case 3 * 4 + 3: dw_tile(3, 3, g, d, t, off, pv, first); break;
    case 4 * 4 + 1: dw_tile(4, 1, g, d, t, off, pv, first); break;
    case 4 * 4 + 2: dw_tile(4, 2, g, d, t, off, pv, first); break;
    default: dw_tile(4, 3, g, d, t, off, pv, first); break;
    }
}

/* ---- forward ------------------------------------------------------------- */

typedef struct fwd_job {
    const dgeom *g;
    const float *x, *b, *wp;
    const int64_t *off;
    float *out;
    int64_t chunks; /* row chunks per image */
    bool relu;      /* relu on each item's rows once they are written */
    /* max pool of each image once its rows are done (one chunk per image
       only): its call, and the argmax buffer or NULL */
    const dsv_call *pool;
    uint8_t *am;
} fwd_job;

/* Work item it of N * chunks (image, chunk of output rows), with t this
 * thread's T (zeroed before its first item), *last the image it holds and
 * ob, when not NULL, this thread's buffer for one image's output (which
 * then goes no further than the pool). */
AVX2 static void fwd_item(const fwd_job *jb, int64_t it, float *t, int64_t *last, float *ob)
{
    const dgeom *g = jb->g;
    split fs = split_of(g->F, 6);
    rmask rm = row_masks(g);
    int64_t n = it / jb->chunks, ch = it % jb->chunks;
    if (n != *last) {
        to_phases(g, jb->x + n * g->C * g->H * g->W, t);
        *last = n;
    }
    float *on = ob ? ob : jb->out + n * g->F * g->P;
    int64_t oh0 = g->Ho * ch / jb->chunks, oh1 = g->Ho * (ch + 1) / jb->chunks;
    for (int64_t fb = 0; fb < fs.nb; fb++) {
        int64_t f0;
        int mb;
        block(&fs, fb, &f0, &mb);
        fwd_block_any(mb, g, jb->wp + f0 * g->K, t, jb->off, jb->b + f0, on + f0 * g->P,
                      oh0, oh1, &rm);
    }
    for (int64_t f = 0; jb->relu && f < g->F; f++)
        dsv_fast_relu_tile(on + f * g->P + oh0 * g->Wo, (oh1 - oh0) * g->Wo);
    if (jb->pool)
        dsv_fast_max_pool_planes(jb->pool, on, n * g->F, (n + 1) * g->F, jb->am);
}

/* The forward (relu: with relu; pool: and then that max pool, keep as in
 * dsv_fast_conv_forward_relu_pool). */
static dsv_status direct_forward(dsv_call *c, bool relu, dsv_call *pool, bool keep)
{
    dgeom g = dgeom_of(c);
    int nt = dsv_fast_nthreads(c);
    int64_t chunks = g.N >= nt ? 1 : nt;
    /* pooling inside the items needs whole images; and without keep each
       thread's image goes to a buffer of its own instead of c->out */
    bool pool_items = pool && chunks == 1;
    int64_t per_ob = pool_items && !keep ? (g.F * g.P + 15) & ~(int64_t)15 : 0;
    int64_t nwp = (g.F * g.K + 15) & ~(int64_t)15;
    int64_t total = nwp + (g.tsize + per_ob) * nt;
    float *scratch = dsv_fast_scratch(c, sizeof(float) * (size_t)total);
    if (!scratch)
        return dsv_error(DSV_NOMEM, "conv: out of memory for %lld scratch floats",
                         (long long)total);
    /* weights of each block of output channels, tap-major */
    float *wp = scratch;
    const float *w = c->w->data;
    split fs = split_of(g.F, 6);
    for (int64_t fb = 0; fb < fs.nb; fb++) {
        int64_t f0;
        int mb;
        block(&fs, fb, &f0, &mb);
        for (int64_t k = 0; k < g.K; k++)
            for (int m = 0; m < mb; m++)
                wp[f0 * g.K + k * mb + m] = w[(f0 + m) * g.K + k];
    }
    int64_t off[DIRECT_KMAX];
    tap_offsets(&g, off);
    fwd_job jb = {&g, c->x->data, c->b->data, wp, off, c->out->data, chunks, relu,
                  pool_items ? pool : NULL,
                  pool_items ? dsv_fast_max_pool_argmax(pool, keep) : NULL};
    int64_t items = g.N * jb.chunks;
    if (nt == 1) {
        float *t = scratch + nwp;
        int64_t last = -1;
        memset(t, 0, sizeof(float) * (size_t)g.tsize);
        for (int64_t it = 0; it < items; it++)
            fwd_item(&jb, it, t, &last, per_ob ? t + g.tsize : NULL);
    } else {
        /* items handed out one at a time: a thread that loses its core for
           a while does not hold the others back (each output is computed
           the same way whichever thread takes it) */
#pragma omp parallel num_threads(nt)
        {
            float *t = scratch + nwp + (g.tsize + per_ob) * omp_get_thread_num();
            int64_t last = -1;
            memset(t, 0, sizeof(float) * (size_t)g.tsize);
#pragma omp for schedule(dynamic, 1)
            for (int64_t it = 0; it < items; it++)
                fwd_item(&jb, it, t, &last, per_ob ? t + g.tsize : NULL);
        }
    }
    dsv_fast_scratch_release(c, scratch);
    /* images split in row chunks: the pool runs over the whole output */
    if (pool && !pool_items)
        return dsv_fast_max_pool_forward(pool);
    return DSV_OK;
}

dsv_status dsv_fast_conv_direct_forward(dsv_call *c)
{
    return direct_forward(c, false, NULL, false);
}

dsv_status dsv_fast_conv_direct_forward_relu(dsv_call *c)
{
    return direct_forward(c, true, NULL, false);
}

dsv_status dsv_fast_conv_direct_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep)
{
    return direct_forward(c, true, pool, keep);
}

/* ---- backward ------------------------------------------------------------ */

typedef struct bwd_job {
    const dgeom *g;
    const dsv_call *c;
    const float *wt; /* per tap block (F, mb), for dx */
    const int64_t *off;
    int64_t per;     /* floats of one thread's buffers: T, dT, dw and db lanes */
    int64_t o_dt, o_pv, o_pb;
    int64_t nw;      /* sums of dw (F*K, or 0); db's F follow them */
    int64_t pper;    /* floats of one chunk's sums: dw, db */
} bwd_job;

/* db lane sums pb (F, 8) += (or = when first) the sums of one image's dout. */
AVX2 static void db_image(const dgeom *g, const float *dn, float *pb, bool first)
{
    int64_t full = g->P & ~(int64_t)7;
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(g->P - full)),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t f = 0; f < g->F; f++) {
        const float *d = dn + f * g->P;
        /* four chains, so the adds are not one long dependency */
        __m256 a0 = first ? _mm256_setzero_ps() : _mm256_loadu_ps(pb + f * 8);
        __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= full; i += 32) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(d + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(d + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(d + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(d + i + 24));
        }
        for (; i < full; i += 8)
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(d + i));
        if (full < g->P)
            a1 = _mm256_add_ps(a1, _mm256_maskload_ps(d + full, tail));
        _mm256_storeu_ps(pb + f * 8, _mm256_add_ps(_mm256_add_ps(a0, a1),
                                                   _mm256_add_ps(a2, a3)));
    }
}

/* Sum of the 8 lanes of p: ((0+1) + (2+3)) + ((4+5) + (6+7)). */
static inline float lanes8(const float *p)
{
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

/* out[i] = lanes8(v + 8 * i) for i < n, eight at a time in the same order. */
AVX2 static void lanes_reduce(const float *v, int64_t n, float *out)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, v += 64) {
        __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(v + 8)),
                                   _mm256_hadd_ps(_mm256_loadu_ps(v + 16),
                                                  _mm256_loadu_ps(v + 24)));
        __m256 u1 = _mm256_hadd_ps(
            _mm256_hadd_ps(_mm256_loadu_ps(v + 32), _mm256_loadu_ps(v + 40)),
            _mm256_hadd_ps(_mm256_loadu_ps(v + 48), _mm256_loadu_ps(v + 56)));
        /* lanes 0-3 of u0: (0+1)+(2+3) of sums i..i+3; lanes 4-7: (4+5)+(6+7) */
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                                _mm256_permute2f128_ps(u0, u1, 0x31)));
    }
    for (; i < n; i++, v += 8)
        out[i] = lanes8(v);
}

/* Images [n0, n1): dx, and the chunk's sums of dw and db into part. buf
 * holds this thread's T (zeroed before its first chunk), dT, and the dw and
 * db lane sums of the chunk so far. */
AVX2 static void bwd_images(const bwd_job *jb, int64_t n0, int64_t n1, float *buf,
                            float *part)
{
    const dgeom *g = jb->g;
    const dsv_call *c = jb->c;
    float *t = buf, *dt = buf + jb->o_dt, *pv = buf + jb->o_pv, *pb = buf + jb->o_pb;
    bool want_w = c->dw != NULL, want_b = c->db != NULL, want_x = c->dx != NULL;
    split fs = split_of(g->F, 4), ks = split_of(g->K, 3), xs = split_of(g->K, 3);
    rmask rm = row_masks(g);
    for (int64_t n = n0; n < n1; n++) {
        const float *dn = (const float *)c->dout->data + n * g->F * g->P;
        if (want_w) {
            to_phases(g, (const float *)c->x->data + n * g->C * g->H * g->W, t);
            for (int64_t fb = 0; fb < fs.nb; fb++) {
                int64_t f0, k0;
                int mf, mk;
                block(&fs, fb, &f0, &mf);
                for (int64_t kb = 0; kb < ks.nb; kb++) {
                    block(&ks, kb, &k0, &mk);
                    dw_tile_any(mf, mk, g, dn + f0 * g->P, t, jb->off + k0,
                                pv + (f0 * g->K + k0) * 8, n == n0);
                }
            }
        }
        if (want_b)
            db_image(g, dn, pb, n == n0);
        if (want_x) {
            memset(dt, 0, sizeof(float) * (size_t)g->tsize);
            /* every tap block over two output rows at a time: those rows of
               dout stay in L1 while they are used */
            for (int64_t oh = 0; oh < g->Ho; oh += 2) {
                int r = oh + 2 <= g->Ho ? 2 : 1;
                for (int64_t kb = 0; kb < xs.nb; kb++) {
                    int64_t k0;
                    int mb;
                    block(&xs, kb, &k0, &mb);
                    dx_block_any(mb, r, g, jb->wt + k0 * g->F, dn, dt, jb->off + k0, oh,
                                 &rm);
                }
            }
            from_phases(g, dt, (float *)c->dx->data + n * g->C * g->H * g->W);
        }
    }
    if (want_w)
        lanes_reduce(pv, jb->nw, part);
    if (want_b)
        lanes_reduce(pb, g->F, part + jb->nw);
}

/* Chunks of images whose dw/db sums are kept apart and added in chunk
 * order: threads take chunks as they free up, and the sums do not depend
 * on which thread took which. Up to 32, so that the last chunk to finish
 * is short (64 ran 2-3% slower on the course cell: each chunk's end sums
 * its lanes); fewer when their sums would pass 8 MiB (never fewer than
 * the threads). */
static int64_t bwd_chunks(int64_t N, int64_t pper, int nt)
{
    int64_t n = N < 32 ? N : 32;
    while (n > nt && n > 1 && n * pper > ((int64_t)8 << 20) / 4)
        n /= 2;
    return n;
}

/* Sums [i0, i1) of dw (0 to nw) then db: the nch chunks' sums added in
 * chunk order, so the result does not depend on who adds. Chunk 0's sums
 * take the running totals; the other chunks stream through once each. */
AVX2 static void reduce_parts(const bwd_job *jb, float *parts, int64_t nch, int64_t i0,
                              int64_t i1)
{
    for (int64_t ch = 1; ch < nch; ch++) {
        const float *q = parts + jb->pper * ch;
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
            _mm256_storeu_ps(parts + i,
                             _mm256_add_ps(_mm256_loadu_ps(parts + i), _mm256_loadu_ps(q + i)));
        for (; i < i1; i++)
            parts[i] += q[i];
    }
    for (int64_t i = i0; i < i1; i++) {
        if (i < jb->nw)
            ((float *)jb->c->dw->data)[i] = parts[i];
        else
            ((float *)jb->c->db->data)[i - jb->nw] = parts[i];
    }
}

dsv_status dsv_fast_conv_direct_backward(dsv_call *c)
{
    dgeom g = dgeom_of(c);
    int nt = dsv_fast_nthreads(c);
    bool want_w = c->dw != NULL, want_b = c->db != NULL;
    bwd_job jb = {.g = &g, .c = c};
    /* per thread: T, dT, dw lanes (F*K, 8), db lanes (F, 8); per chunk: the
       sums of dw (F*K) and db (F), 64-byte aligned */
    jb.nw = want_w ? g.F * g.K : 0;
    jb.o_dt = g.tsize;
    jb.o_pv = jb.o_dt + (c->dx ? g.tsize : 0);
    jb.o_pb = jb.o_pv + jb.nw * 8;
    jb.per = (jb.o_pb + (want_b ? g.F * 8 : 0) + 15) & ~(int64_t)15;
    int64_t nsum = jb.nw + (want_b ? g.F : 0);
    jb.pper = (nsum + 15) & ~(int64_t)15;
    int64_t nch = bwd_chunks(g.N, jb.pper, nt);
    int64_t nwt = (g.F * g.K + 15) & ~(int64_t)15;
    int64_t total = nwt + jb.pper * nch + jb.per * nt;
    float *scratch = dsv_fast_scratch(c, sizeof(float) * (size_t)total);
    if (!scratch)
        return dsv_error(DSV_NOMEM, "conv: out of memory for %lld scratch floats",
                         (long long)total);
    /* weights of each block of taps, channel-major, for dx */
    float *wt = scratch;
    const float *w = c->w->data;
    split xs = split_of(g.K, 3);
    for (int64_t kb = 0; kb < xs.nb; kb++) {
        int64_t k0;
        int mb;
        block(&xs, kb, &k0, &mb);
        for (int64_t f = 0; f < g.F; f++)
            for (int m = 0; m < mb; m++)
                wt[k0 * g.F + f * mb + m] = w[f * g.K + k0 + m];
    }
    jb.wt = wt;
    int64_t off[DIRECT_KMAX];
    tap_offsets(&g, off);
    jb.off = off;
    float *parts = scratch + nwt, *bufs = parts + jb.pper * nch;
    if (nt == 1) {
        memset(bufs, 0, sizeof(float) * (size_t)g.tsize);
        for (int64_t ch = 0; ch < nch; ch++)
            bwd_images(&jb, g.N * ch / nch, g.N * (ch + 1) / nch, bufs,
                       parts + jb.pper * ch);
        reduce_parts(&jb, parts, nch, 0, nsum);
    } else {
#pragma omp parallel num_threads(nt)
        {
            float *buf = bufs + jb.per * omp_get_thread_num();
            memset(buf, 0, sizeof(float) * (size_t)g.tsize);
#pragma omp for schedule(dynamic, 1)
            for (int64_t ch = 0; ch < nch; ch++)
                bwd_images(&jb, g.N * ch / nch, g.N * (ch + 1) / nch, buf,
                           parts + jb.pper * ch);
            int64_t i0, i1;
            dsv_fast_share(nsum, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
            reduce_parts(&jb, parts, nch, i0, i1);
        }
    }
    dsv_fast_scratch_release(c, scratch);
    return DSV_OK;
}

#else /* !HAVE_DIRECT */

dsv_status dsv_fast_conv_direct_forward(dsv_call *c)
{
    (void)c;
    return dsv_error(DSV_UNSUPPORTED, "conv: no direct kernel on this CPU");
}

dsv_status dsv_fast_conv_direct_forward_relu(dsv_call *c)
{
    (void)c;
    return dsv_error(DSV_UNSUPPORTED, "conv: no direct kernel on this CPU");
}

dsv_status dsv_fast_conv_direct_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep)
{
    (void)c, (void)pool, (void)keep;
    return dsv_error(DSV_UNSUPPORTED, "conv: no direct kernel on this CPU");
}

dsv_status dsv_fast_conv_direct_backward(dsv_call *c)
{
    (void)c;
    return dsv_error(DSV_UNSUPPORTED, "conv: no direct kernel on this CPU");
}

#endif
