/*
 * First-order update rules (the course's optim.py): sgd, sgd_momentum,
 * rmsprop and adam over one flat block of n parameters.
 *
 * State (velocity, cache, first/second moments) is kept in flat blocks of n
 * values of the parameters' dtype, zero at creation, so a step is a single
 * element-wise loop. The loop is split across OpenMP threads only when n is
 * large; every element is computed independently and in the same way whatever
 * the thread count, so a step is bit-identical for any number of threads.
 * float32 steps compute in float32 (the scalars are rounded once), float64
 * steps in float64.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dasecv/solver.h"
#include "internal/check.h"
#include "internal/optim.h"

/* Below this many values a parallel region costs more than it saves. */
#define PARALLEL_MIN 32768

struct dsv_optimizer {
    dsv_optim_config cfg;
    int64_t n;
    dsv_dtype dtype;
    int nstates;
    void *state[2];
    int64_t t; /* adam's step count; incremented before use */
    int threads; /* 0 = dsv_get_num_threads() */
    /* L2 term added to the gradients as they are read (dsv_optimizer_set_l2):
       nl2 ranges [l2[2k], l2[2k+1]) of the block, ascending, with reg */
    int64_t *l2;
    int nl2;
    double reg;
    /* adam: bounds on its state, mmax >= |m| and vmax >= v >= 0, when
       known (at creation; after a step that a check judged, which leaves in
       next the bounds on the state that step makes, for the step count,
       parameters and gradients it judged). dsv_optimizer_state hands the
       state out and forgets both. */
    bool bounds;
    double mmax, vmax;
    struct {
        bool ok;
        int64_t t;
        const void *params, *grads;
        double mmax, vmax;
    } next;
    int64_t light; /* checks the bounds settled (tests) */
};

static const char *const rule_names[] = {"sgd", "sgd_momentum", "rmsprop", "adam"};
_Static_assert(sizeof(rule_names) / sizeof(rule_names[0]) == DSV_UPDATE_COUNT,
               "one name per update rule");

const char *dsv_update_rule_name(dsv_update_rule r)
{
    if ((unsigned)r >= DSV_UPDATE_COUNT)
        return "unknown";
    return rule_names[r];
}

dsv_status dsv_update_rule_from_name(const char *s, dsv_update_rule *r)
{
    for (int i = 0; s && i < DSV_UPDATE_COUNT; i++) {
        if (strcmp(s, rule_names[i]) == 0) {
            *r = (dsv_update_rule)i;
            return DSV_OK;
        }
    }
    return dsv_error(DSV_INVALID,
                     "unknown update rule '%s' (sgd, sgd_momentum, rmsprop, adam)",
                     s ? s : "(null)");
}

dsv_optim_config dsv_optim_config_default(dsv_update_rule rule)
{
    dsv_optim_config c = {
        .rule = rule,
        .learning_rate = rule == DSV_UPDATE_ADAM ? 1e-3 : 1e-2,
        .momentum = 0.9,
        .decay_rate = 0.99,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .epsilon = 1e-8,
    };
    return c;
}

static int states_for(dsv_update_rule r)
{
    switch (r) {
    case DSV_UPDATE_SGD_MOMENTUM:
    case DSV_UPDATE_RMSPROP:
        return 1;
    case DSV_UPDATE_ADAM:
        return 2;
    default:
        return 0;
    }
}

static dsv_status check_config(const dsv_optim_config *c)
{
    if ((unsigned)c->rule >= DSV_UPDATE_COUNT)
        return dsv_error(DSV_INVALID, "unknown update rule %d", (int)c->rule);
    if (!isfinite(c->learning_rate) || c->learning_rate < 0)
        return dsv_error(DSV_INVALID, "learning rate must be finite and >= 0, got %g",
                         c->learning_rate);
    if (c->rule == DSV_UPDATE_SGD_MOMENTUM && !(c->momentum >= 0 && c->momentum < 1))
        return dsv_error(DSV_INVALID, "momentum must be in [0, 1), got %g", c->momentum);
    if (c->rule == DSV_UPDATE_RMSPROP && !(c->decay_rate >= 0 && c->decay_rate < 1))
        return dsv_error(DSV_INVALID, "decay_rate must be in [0, 1), got %g", c->decay_rate);
    if (c->rule == DSV_UPDATE_ADAM &&
        !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        return dsv_error(DSV_INVALID, "adam betas must be in [0, 1), got %g, %g",
                         c->beta1, c->beta2);
    if ((c->rule == DSV_UPDATE_RMSPROP || c->rule == DSV_UPDATE_ADAM) &&
        !(c->epsilon > 0 && isfinite(c->epsilon)))
        return dsv_error(DSV_INVALID, "epsilon must be > 0, got %g", c->epsilon);
    return DSV_OK;
}

dsv_status dsv_optimizer_create(dsv_optimizer **o, const dsv_optim_config *cfg,
                                int64_t n, dsv_dtype dtype)
{
    *o = NULL;
    if (dtype != DSV_F32 && dtype != DSV_F64)
        return dsv_error(DSV_INVALID, "optimizer needs float32 or float64 parameters, got %s",
                         dsv_dtype_name(dtype));
    if (n < 1 || (uint64_t)n > SIZE_MAX / 16)
        return dsv_error(DSV_INVALID, "optimizer: bad parameter count %lld", (long long)n);
    dsv_status st = check_config(cfg);
    if (st != DSV_OK)
        return st;
    dsv_optimizer *p = calloc(1, sizeof(*p));
    if (!p)
        return dsv_error(DSV_NOMEM, "optimizer: out of memory");
    p->cfg = *cfg;
    p->n = n;
    p->dtype = dtype;
    p->nstates = states_for(cfg->rule);
    size_t bytes = (size_t)n * dsv_dtype_size(dtype);
    for (int k = 0; k < p->nstates; k++) {
        p->state[k] = dsv_alloc(bytes);
        if (!p->state[k]) {
            dsv_optimizer_destroy(p);
            return dsv_error(DSV_NOMEM, "optimizer: cannot allocate %zu bytes of state", bytes);
        }
        memset(p->state[k], 0, bytes);
    }
    p->bounds = true; /* m = v = 0 */
    *o = p;
    return DSV_OK;
}

void dsv_optimizer_destroy(dsv_optimizer *o)
{
    if (!o)
        return;
    for (int k = 0; k < 2; k++)
        dsv_free(o->state[k]);
    free(o->l2);
    free(o);
}

dsv_optim_config *dsv_optimizer_config(dsv_optimizer *o) { return &o->cfg; }
int dsv_optimizer_num_states(const dsv_optimizer *o) { return o->nstates; }
int64_t *dsv_optimizer_step_count(dsv_optimizer *o) { return &o->t; }

void *dsv_optimizer_state(dsv_optimizer *o, int k)
{
    o->bounds = o->next.ok = false; /* the caller may write it */
    return k >= 0 && k < o->nstates ? o->state[k] : NULL;
}

/*
 * One kernel per rule and dtype, written once as a macro over the element
 * type T and its sqrt. Scalars arrive already rounded to T. Each rule's new
 * values of element i (wi, and its state's) come from one expression macro,
 * used by both loops of its kernel: with store the kernel writes them, without
 * it writes nothing and returns nonzero when any of them is NaN or Inf. The
 * two loops compute the same values, so a check that passes means the step
 * that follows is finite.
 */
#define PAR_STORE \
    _Pragma("omp parallel for simd schedule(static) if (n >= PARALLEL_MIN) num_threads(nt)")
#define PAR_CHECK \
    _Pragma("omp parallel for simd schedule(static) reduction(| : bad) if (n >= PARALLEL_MIN) num_threads(nt)")
#define PAR_CHECK_STATS \
    _Pragma("omp parallel for simd schedule(static) reduction(max : mm, vm) reduction(min : vlo) reduction(| : bad) if (n >= PARALLEL_MIN) num_threads(nt)")
#define PAR_SCAN \
    _Pragma("omp parallel for simd schedule(static) reduction(max : gm, wm) reduction(| : bad) if (n >= PARALLEL_MIN) num_threads(nt)")
#define NONFINITE(x) ((unsigned)!isfinite(x))

/* What adam's full check learns of the state the step would make (over
 * all its calls for one check): the largest |m| and v, and whether v >= 0
 * everywhere. */
typedef struct adam_stats {
    double mmax, vmax;
    bool vpos;
} adam_stats;

#define SGD_NEW(T, SQRT) const T wi = w[i] - lr * gi
#define MOMENTUM_NEW(T, SQRT)                                                  \
    const T vi = mu * v[i] - lr * gi;                                          \
    const T wi = w[i] + vi
#define RMSPROP_NEW(T, SQRT)                                                   \
    const T g = gi;                                                            \
    const T ci = dr * cache[i] + one_m * (g * g);                              \
    const T wi = w[i] - lr * g / (SQRT(ci) + eps)
#define ADAM_NEW(T, SQRT)                                                      \
    const T g = gi;                                                            \
    const T mi = b1 * m[i] + one_m1 * g;                                       \
    const T vi = b2 * v[i] + one_m2 * (g * g);                                 \
    const T wi = w[i] - lr * (mi / c1) / (SQRT(vi / c2) + eps)

/* The gradient of element i: as stored, or with the L2 term that
 * dsv_l2_apply would have added to it (the same expression, so the same
 * bits as adding it first and reading it back). */
#define GRAD_PLAIN(T) dw[i]
#define GRAD_L2(T) (dw[i] + (T)(reg * (double)w[i]))

/* The two loops of a kernel: GRAD is element i's gradient, NEW declares the
 * new values of element i, STORE writes them, BAD is 1 when one of them is
 * NaN or Inf (0 else). The check loop returns DSV_OPTIM_BAD_GRAD |
 * DSV_OPTIM_BAD_UPDATE bits: the gradient is checked in the same pass, so the
 * Solver needs no scan of its own. Adam's check loop is its own, as it also
 * keeps the new moments' largest values. */
#define CHECK_LOOP(T, GRAD, NEW, BAD)                                          \
    unsigned bad = 0;                                                          \
    (void)reg;                                                                 \
    PAR_CHECK                                                                  \
    for (int64_t i = 0; i < n; i++) {                                          \
        const T gi = GRAD(T);                                                  \
        NEW;                                                                   \
        bad |= NONFINITE(gi) | (BAD) << 1;                                     \
    }                                                                          \
    return bad
#define STORE_LOOP(T, GRAD, NEW, STORE)                                        \
    (void)reg;                                                                 \
    PAR_STORE                                                                  \
    for (int64_t i = 0; i < n; i++) {                                          \
        const T gi = GRAD(T);                                                  \
        NEW;                                                                   \
        STORE;                                                                 \
    }                                                                          \
    return 0
#define STEP_LOOPS(T, GRAD, NEW, STORE, BAD)                                   \
    if (store) {                                                               \
        STORE_LOOP(T, GRAD, NEW, STORE);                                       \
    }                                                                          \
    CHECK_LOOP(T, GRAD, NEW, BAD)

#define DEFINE_STEPS(T, SUF, SQRT, ATTR, GRAD)                                 \
    ATTR static unsigned sgd_##SUF(int nt, int64_t n, T *restrict w, const T *restrict dw, \
                                   double reg, T lr, bool store)               \
    {                                                                          \
        STEP_LOOPS(T, GRAD, SGD_NEW(T, SQRT), w[i] = wi, NONFINITE(wi));       \
    }                                                                          \
    ATTR static unsigned momentum_##SUF(int nt, int64_t n, T *restrict w,      \
                                        const T *restrict dw, double reg, T *restrict v, \
                                        T lr, T mu, bool store)                \
    {                                                                          \
        STEP_LOOPS(T, GRAD, MOMENTUM_NEW(T, SQRT), v[i] = vi; w[i] = wi,       \
                   NONFINITE(vi) | NONFINITE(wi));                             \
    }                                                                          \
    ATTR static unsigned rmsprop_##SUF(int nt, int64_t n, T *restrict w,       \
                                       const T *restrict dw, double reg,       \
                                       T *restrict cache, T lr, T dr, T eps, bool store) \
    {                                                                          \
        const T one_m = (T)1 - dr;                                             \
        STEP_LOOPS(T, GRAD, RMSPROP_NEW(T, SQRT), cache[i] = ci; w[i] = wi,    \
                   NONFINITE(ci) | NONFINITE(wi));                             \
    }                                                                          \
    ATTR static unsigned adam_##SUF(int nt, int64_t n, T *restrict w,          \
                                    const T *restrict dw, double reg, T *restrict m, \
                                    T *restrict v, T lr, T b1, T b2, T c1, T c2, T eps, \
                                    bool store, adam_stats *st)                \
    {                                                                          \
        const T one_m1 = (T)1 - b1, one_m2 = (T)1 - b2;                        \
        if (store) {                                                           \
            STORE_LOOP(T, GRAD, ADAM_NEW(T, SQRT), m[i] = mi; v[i] = vi; w[i] = wi); \
        }                                                                      \
        /* the check, and the new state's largest values (adam_stats) */       \
        T mm = 0, vm = 0, vlo = 0;                                             \
        unsigned bad = 0;                                                      \
        PAR_CHECK_STATS                                                        \
        for (int64_t i = 0; i < n; i++) {                                      \
            const T gi = GRAD(T);                                              \
            ADAM_NEW(T, SQRT);                                                 \
            const T am = mi < 0 ? -mi : mi;                                    \
            mm = am > mm ? am : mm;                                            \
            vm = vi > vm ? vi : vm;                                            \
            vlo = vi < vlo ? vi : vlo;                                         \
            bad |= NONFINITE(gi) | (NONFINITE(mi) | NONFINITE(vi) | NONFINITE(wi)) << 1; \
        }                                                                      \
        st->mmax = st->mmax > mm ? st->mmax : (double)mm;                      \
        st->vmax = st->vmax > vm ? st->vmax : (double)vm;                      \
        st->vpos = st->vpos && vlo >= 0;                                       \
        return bad;                                                            \
    }                                                                          \
    ATTR static bool scan_##SUF(int nt, int64_t n, const T *restrict w,        \
                                const T *restrict dw, double reg, double *gmax, \
                                double *wmax)                                  \
    {                                                                          \
        T gm = 0, wm = 0;                                                      \
        unsigned bad = 0;                                                      \
        (void)reg;                                                             \
        PAR_SCAN                                                               \
        for (int64_t i = 0; i < n; i++) {                                      \
            const T gi = GRAD(T);                                              \
            const T ag = gi < 0 ? -gi : gi, aw = w[i] < 0 ? -w[i] : w[i];      \
            gm = ag > gm ? ag : gm;                                            \
            wm = aw > wm ? aw : wm;                                            \
            bad |= NONFINITE(gi) | NONFINITE(w[i]);                            \
        }                                                                      \
        *gmax = *gmax > gm ? *gmax : (double)gm;                               \
        *wmax = *wmax > wm ? *wmax : (double)wm;                               \
        return !bad;                                                           \
    }

DEFINE_STEPS(float, f32, sqrtf, , GRAD_PLAIN)
DEFINE_STEPS(double, f64, sqrt, , GRAD_PLAIN)
DEFINE_STEPS(float, f32_l2, sqrtf, , GRAD_L2)
DEFINE_STEPS(double, f64_l2, sqrt, , GRAD_L2)
#if defined(__x86_64__)
/* The same kernels built for AVX2, taken when the CPU has it: 8 floats per
 * vector instead of SSE's 4 (adam's two divisions and square root per value
 * bound its loops). No FMA is enabled and ISO C leaves contraction off, so
 * every value is the same bits as in the SSE build. */
#define AVX2 __attribute__((target("avx2")))
DEFINE_STEPS(float, f32_avx2, sqrtf, AVX2, GRAD_PLAIN)
DEFINE_STEPS(double, f64_avx2, sqrt, AVX2, GRAD_PLAIN)
DEFINE_STEPS(float, f32_l2_avx2, sqrtf, AVX2, GRAD_L2)
DEFINE_STEPS(double, f64_l2_avx2, sqrt, AVX2, GRAD_L2)
#endif

void dsv_optimizer_set_threads(dsv_optimizer *o, int threads)
{
    o->threads = threads > 0 ? threads : 0;
}

/* What adam's light check learns of the gradients and weights: their
 * largest magnitudes. */
typedef struct adam_scan {
    double gmax, wmax;
} adam_scan;

/* The update of elements [i0, i0 + n) with Adam's bias corrections c1, c2
 * (stored, or only checked: see STEP_LOOPS; with scan, adam's light check
 * instead: nonzero when a gradient or weight is NaN or Inf) through the kernels named
 * *_f32ISA / *_f64ISA, or *_f32_l2ISA / *_f64_l2ISA with the L2 term reg * w
 * added to the gradients (l2); the DSV_OPTIM_BAD_* bits when not stored. */
#define CALL_RULES(T, SUF, LR, MU, DR, EPS, B1, B2)                            \
    do {                                                                       \
        T *w = (T *)params + i0;                                               \
        const T *g = (const T *)grads + i0;                                    \
        T *s0 = o->state[0] ? (T *)o->state[0] + i0 : NULL;                    \
        T *s1 = o->state[1] ? (T *)o->state[1] + i0 : NULL;                    \
        switch (c->rule) {                                                     \
        case DSV_UPDATE_SGD:                                                   \
            return sgd_##SUF(nt, n, w, g, reg, LR, store);                     \
        case DSV_UPDATE_SGD_MOMENTUM:                                          \
            return momentum_##SUF(nt, n, w, g, reg, s0, LR, MU, store);        \
        case DSV_UPDATE_RMSPROP:                                               \
            return rmsprop_##SUF(nt, n, w, g, reg, s0, LR, DR, EPS, store);    \
        case DSV_UPDATE_ADAM:                                                  \
            if (scan)                                                          \
                return !scan_##SUF(nt, n, w, g, reg, &scan->gmax, &scan->wmax); \
            return adam_##SUF(nt, n, w, g, reg, s0, s1, LR, B1, B2, (T)c1, (T)c2, EPS, \
                              store, st);                                      \
        default:                                                               \
            DSV_ASSERT(!"update rule checked at creation");                    \
        }                                                                      \
    } while (0)
#define CALL_F32(SUF)                                                          \
    CALL_RULES(float, SUF, (float)c->learning_rate, (float)c->momentum,        \
               (float)c->decay_rate, (float)c->epsilon, (float)c->beta1, (float)c->beta2)
#define CALL_F64(SUF)                                                          \
    CALL_RULES(double, SUF, c->learning_rate, c->momentum, c->decay_rate, c->epsilon, \
               c->beta1, c->beta2)
#define DEFINE_RUN(NAME, ISA, ATTR)                                            \
    ATTR static unsigned NAME(dsv_optimizer *o, void *params, const void *grads, \
                              int64_t i0, int64_t n, bool l2, double reg, int nt, \
                              double c1, double c2, bool store, adam_stats *st, \
                              adam_scan *scan)                                 \
    {                                                                          \
        const dsv_optim_config *c = &o->cfg;                                   \
        if (o->dtype == DSV_F32) {                                             \
            if (l2)                                                            \
                CALL_F32(f32_l2##ISA);                                         \
            else                                                               \
                CALL_F32(f32##ISA);                                            \
        } else {                                                               \
            if (l2)                                                            \
                CALL_F64(f64_l2##ISA);                                         \
            else                                                               \
                CALL_F64(f64##ISA);                                            \
        }                                                                      \
        return 0;                                                              \
    }

DEFINE_RUN(run_base, , )
#if defined(__x86_64__)
DEFINE_RUN(run_avx2, _avx2, AVX2)
#endif

/* The bounds the step judged now (t, params, grads) leaves on the state. */
static void set_next(dsv_optimizer *o, const void *params, const void *grads, int64_t t,
                     double mmax, double vmax)
{
    o->next.ok = true;
    o->next.t = t;
    o->next.params = params;
    o->next.grads = grads;
    o->next.mmax = mmax;
    o->next.vmax = vmax;
}

/* The pieces of the flat block in order: the L2 ranges with reg, the rest
 * without (all of it when no ranges are set). */
static unsigned run(dsv_optimizer *o, void *params, const void *grads, int64_t t,
                    bool store, adam_scan *scan)
{
    const dsv_optim_config *c = &o->cfg;
    const int nt = o->threads ? o->threads : dsv_get_num_threads();
    double c1 = 1, c2 = 1;
    if (c->rule == DSV_UPDATE_ADAM) {
        /* Bias corrections as the course divides by them: m / (1 - beta1^t). */
        c1 = 1.0 - pow(c->beta1, (double)t);
        c2 = 1.0 - pow(c->beta2, (double)t);
    }
    bool avx2 = false;
#if defined(__x86_64__)
    avx2 = __builtin_cpu_supports("avx2");
#endif
    unsigned bad = 0;
    adam_stats st = {0, 0, true};
    if (!store)
        o->next.ok = false; /* until this check judges the step */
    int64_t at = 0;
    for (int k = 0; k <= o->nl2; k++) {
        const int64_t b = k < o->nl2 ? o->l2[2 * k] : o->n;
        const int64_t e = k < o->nl2 ? o->l2[2 * k + 1] : o->n;
        for (int part = 0; part < 2; part++) {
            /* part 0: [at, b) without L2; part 1: [b, e) with it */
            const int64_t i0 = part ? b : at, i1 = part ? e : b;
            if (i1 <= i0)
                continue;
#if defined(__x86_64__)
            if (avx2) {
                bad |= run_avx2(o, params, grads, i0, i1 - i0, part, o->reg, nt, c1, c2,
                                store, &st, scan);
                continue;
            }
#endif
            bad |= run_base(o, params, grads, i0, i1 - i0, part, o->reg, nt, c1, c2, store,
                            &st, scan);
        }
        at = e;
    }
    (void)avx2;
    if (!store && !scan && !bad && st.vpos && c->rule == DSV_UPDATE_ADAM)
        set_next(o, params, grads, t, st.mmax, st.vmax);
    return bad;
}

dsv_status dsv_optimizer_set_l2(dsv_optimizer *o, double reg, const int64_t *ranges,
                                int nranges)
{
    if (!(reg >= 0) || !isfinite(reg))
        return dsv_error(DSV_INVALID, "optimizer: reg must be finite and >= 0, got %g", reg);
    int64_t prev = 0;
    for (int k = 0; k < nranges; k++) {
        if (ranges[2 * k] < prev || ranges[2 * k + 1] < ranges[2 * k] ||
            ranges[2 * k + 1] > o->n)
            return dsv_error(DSV_INVALID, "optimizer: L2 range %d [%lld, %lld) out of order "
                             "or outside the %lld values", k, (long long)ranges[2 * k],
                             (long long)ranges[2 * k + 1], (long long)o->n);
        prev = ranges[2 * k + 1];
    }
    int64_t *copy = NULL;
    if (reg > 0 && nranges > 0) {
        copy = malloc(sizeof(int64_t) * 2 * (size_t)nranges);
        if (!copy)
            return dsv_error(DSV_NOMEM, "optimizer: out of memory");
        memcpy(copy, ranges, sizeof(int64_t) * 2 * (size_t)nranges);
    }
    free(o->l2);
    o->next.ok = false; /* the gradients read change */
    o->l2 = copy;
    o->nl2 = copy ? nranges : 0;
    o->reg = copy ? reg : 0;
    return DSV_OK;
}

void dsv_optimizer_step(dsv_optimizer *o, void *params, const void *grads)
{
    if (o->cfg.rule == DSV_UPDATE_ADAM)
        o->t++;
    run(o, params, grads, o->t, true, NULL);
    /* the state's bounds: those of the check that judged this step */
    o->bounds = o->next.ok && o->next.t == o->t && o->next.params == params &&
                o->next.grads == grads;
    o->mmax = o->next.mmax;
    o->vmax = o->next.vmax;
    o->next.ok = false;
}

/* Below this every value of adam's step is taken to be finite. */
#define FINITE_LIMIT 1e30
/* Rounding's growth of a bound through adam's few operations (float32:
 * (1 + 2^-24)^5 at most). */
#define ROUNDING 1.000001

/*
 * Adam's light check: whether this step's every value is sure to be finite,
 * from the largest |gradient| G and |w| W (one pass that reads two arrays and
 * does no division) and the state's bounds M >= |m|, V >= v >= 0. In the
 * step's arithmetic, rounding grows a result by a factor 1 + 2^-24 at most
 * (float32), so with ample room:
 *   |m'| <= b1 M + (1 - b1) G            <= M1 = 4 max(M, G)
 *   0 <= v' <= b2 V + (1 - b2) G^2       <= V1 = 4 max(V, G^2)
 *   |m' / c1|                            <= R  = 2 M1 / c1
 *   v' / c2 <= 2 V1 / c2, so its root is finite and root + eps >= eps
 *   |w'| <= 2 (W + 2 lr 2 R / eps)
 * c1, c2, eps and lr as the step rounds them. Every bound under
 * FINITE_LIMIT (far below float's 3.4e38) means the full check would find
 * nothing; any NaN among them fails the comparisons, and then the full
 * check runs. The step's new state then has |m'| <= max(M, G) and v' <=
 * max(V, G^2), each times ROUNDING: the bounds for the next check.
 */
static bool adam_surely_finite(dsv_optimizer *o, const void *params, const void *grads)
{
    const dsv_optim_config *c = &o->cfg;
    /* (the bounds hold for betas in [0, 1], as dsv_optimizer_create checks
       them; the configuration can be changed since) */
    if (c->rule != DSV_UPDATE_ADAM || !o->bounds || !(c->beta1 >= 0 && c->beta1 < 1) ||
        !(c->beta2 >= 0 && c->beta2 < 1))
        return false;
    adam_scan sc = {0, 0};
    if (run(o, (void *)params, grads, o->t + 1, false, &sc))
        return false; /* a gradient or weight is NaN or Inf */
    const double t = (double)(o->t + 1);
    const bool f32 = o->dtype == DSV_F32;
    const double c1 = f32 ? (float)(1.0 - pow(c->beta1, t)) : 1.0 - pow(c->beta1, t);
    const double c2 = f32 ? (float)(1.0 - pow(c->beta2, t)) : 1.0 - pow(c->beta2, t);
    const double eps = f32 ? (float)c->epsilon : c->epsilon;
    const double lr = fabs(f32 ? (float)c->learning_rate : c->learning_rate);
    const double M1 = 4 * fmax(o->mmax, sc.gmax);
    const double V1 = 4 * fmax(o->vmax, sc.gmax * sc.gmax);
    const double R = 2 * M1 / c1;
    const double W1 = 2 * (sc.wmax + 4 * lr * R / eps);
    if (!(c1 > 0 && c2 > 0 && eps > 0 && V1 < FINITE_LIMIT && 2 * V1 / c2 < FINITE_LIMIT &&
          R < FINITE_LIMIT && W1 < FINITE_LIMIT))
        return false;
    set_next(o, params, grads, o->t + 1, ROUNDING * fmax(o->mmax, sc.gmax),
             ROUNDING * fmax(o->vmax, sc.gmax * sc.gmax));
    return true;
}

unsigned dsv_optimizer_check_full(dsv_optimizer *o, const void *params, const void *grads)
{
    /* nothing is written when store is false */
    return run(o, (void *)params, grads, o->t + 1, false, NULL);
}

unsigned dsv_optimizer_check(dsv_optimizer *o, const void *params, const void *grads)
{
    if (adam_surely_finite(o, params, grads)) {
        o->light++;
        return 0;
    }
    return dsv_optimizer_check_full(o, params, grads);
}

int64_t dsv_optimizer_light_checks(const dsv_optimizer *o) { return o->light; }

bool dsv_optimizer_step_finite(dsv_optimizer *o, const void *params, const void *grads)
{
    return (dsv_optimizer_check(o, params, grads) & DSV_OPTIM_BAD_UPDATE) == 0;
}
