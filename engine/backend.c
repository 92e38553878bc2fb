/*
 * Backend selection and dispatch.
 *
 * Each backend is a table of kernels (kernels/<backend>/table.c). The naive
 * table is complete for both float dtypes; the others fill what they support.
 * A request for a backend that cannot run a call falls back to naive, and
 * "auto" walks the per-op preference list below, except where
 * backend_auto.c decides between fast and oneDNN by timing. This file and
 * backend_auto.c are the only places that know which backends exist.
 */
#include <string.h>

#include "dasecv/ops.h"
#include "internal/backend_table.h"

extern const dsv_backend_table dsv_naive_table;
extern const dsv_backend_table dsv_fast_table;
#ifdef DSV_HAVE_ONEDNN
extern const dsv_backend_table dsv_onednn_table;
#endif

static const char *const backend_names[] = {
    [DSV_BACKEND_NAIVE] = "naive",
    [DSV_BACKEND_FAST] = "fast",
    [DSV_BACKEND_ONEDNN] = "onednn",
    [DSV_BACKEND_AUTO] = "auto",
};
_Static_assert(sizeof(backend_names) / sizeof(backend_names[0]) ==
                   DSV_BACKEND_COUNT,
               "backend_names must name every dsv_backend");

const char *dsv_backend_name(dsv_backend b)
{
    return (unsigned)b < DSV_BACKEND_COUNT ? backend_names[b] : "unknown";
}

dsv_status dsv_backend_from_name(const char *name, dsv_backend *b)
{
    for (int i = 0; i < DSV_BACKEND_COUNT; i++)
        if (strcmp(name, backend_names[i]) == 0) {
            *b = (dsv_backend)i;
            return DSV_OK;
        }
    return dsv_error(DSV_INVALID,
                     "unknown backend '%s' (naive, fast, onednn or auto)", name);
}

const dsv_backend_table *dsv_backend_get(dsv_backend b)
{
    switch (b) {
    case DSV_BACKEND_NAIVE: return &dsv_naive_table;
    case DSV_BACKEND_FAST: return &dsv_fast_table;
#ifdef DSV_HAVE_ONEDNN
    case DSV_BACKEND_ONEDNN: return &dsv_onednn_table;
#endif
    default: return NULL;
    }
}

bool dsv_backend_available(dsv_backend b)
{
    return b == DSV_BACKEND_AUTO || dsv_backend_get(b) != NULL;
}

/* Preference order for "auto", per op: the fastest first (see bench/);
 * convolutions also look at the layer (conv_prefers_fast). */
static const dsv_backend auto_order[DSV_OP_COUNT][2] = {
    [DSV_OP_AFFINE] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_RELU] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_CONV] = {DSV_BACKEND_ONEDNN, DSV_BACKEND_FAST},
    [DSV_OP_MAX_POOL] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_AVG_POOL] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_BATCHNORM] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_SPATIAL_BATCHNORM] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_LAYERNORM] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_SPATIAL_GROUPNORM] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_DROPOUT] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_ADD] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_SOFTMAX_LOSS] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
    [DSV_OP_SVM_LOSS] = {DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN},
};

/* The fast backend's direct convolution (kernels/fast/conv_direct.c). */
bool dsv_fast_conv_direct_ok(const dsv_call *c, bool backward);

/*
 * "auto" for a convolution: fast's direct kernel on inputs of at most 4
 * channels (first layers on images), oneDNN otherwise. On so few channels
 * the direct kernel was the faster in both passes in the measured runs; from
 * 32 channels on, which of the two wins changes from run to run, so oneDNN
 * stays first (bench/RESULTS.md, "Convolution backend choice").
 * Both passes of a node get the same answer, so its state is not rebuilt
 * between them.
 */
static bool conv_prefers_fast(const dsv_call *c)
{
    return c->x->dtype == DSV_F32 && c->x->shape[1] <= 4 &&
           dsv_fast_conv_direct_ok(c, false);
}

static const dsv_kernel *usable(dsv_backend b, const dsv_call *c, bool backward)
{
    const dsv_backend_table *t = dsv_backend_get(b);
    if (!t || !(t->dtypes & (1u << c->x->dtype)))
        return NULL;
    const dsv_kernel *k = &t->kernels[c->op];
    if (!(backward ? k->backward : k->forward))
        return NULL;
    if (k->supports && !k->supports(c, backward))
        return NULL;
    return k;
}

/* Whether fast and oneDNN can both run c, in both passes when it trains
 * (one backend serves both passes of a timed configuration). */
static bool both_usable(const dsv_call *c, bool backward)
{
    for (int b = DSV_BACKEND_FAST; b <= DSV_BACKEND_ONEDNN; b++)
        if (!usable((dsv_backend)b, c, backward) ||
            (c->p.train && !usable((dsv_backend)b, c, !backward)))
            return false;
    return true;
}

/* "auto": the timed decision where backend_auto.c keeps one (decide: make
 * it now if missing), else the fixed preference order. */
static dsv_backend pick_auto(const dsv_call *c, bool backward, bool decide)
{
    bool flip = c->op == DSV_OP_CONV && conv_prefers_fast(c);
    dsv_backend fixed = DSV_BACKEND_NAIVE;
    for (int i = 0; i < 2 && fixed == DSV_BACKEND_NAIVE; i++) {
        dsv_backend b = auto_order[c->op][flip ? 1 - i : i];
        if (usable(b, c, backward))
            fixed = b;
    }
    if (!dsv_auto_timed_op(c->op) || !both_usable(c, backward))
        return fixed;
    if (decide)
        return dsv_auto_decide(c, fixed);
    dsv_backend b;
    return dsv_auto_lookup(c, &b) ? b : fixed;
}

static dsv_backend pick(const dsv_call *c, bool backward, dsv_backend want, bool decide)
{
    if (want == DSV_BACKEND_AUTO)
        return pick_auto(c, backward, decide);
    if ((unsigned)want < DSV_BACKEND_AUTO && usable(want, c, backward))
        return want;
    return DSV_BACKEND_NAIVE;
}

dsv_backend dsv_pick_backend(const dsv_call *c, bool backward, dsv_backend want)
{
    return pick(c, backward, want, false);
}

bool dsv_auto_timed(const dsv_call *c, bool backward, dsv_backend want)
{
    return want == DSV_BACKEND_AUTO && dsv_auto_timing_on() && dsv_auto_timed_op(c->op) &&
           both_usable(c, backward);
}

void dsv_state_free(dsv_state *s)
{
    if (!s || !s->ptr)
        return;
    const dsv_backend_table *t = dsv_backend_get(s->owner);
    if (t && t->state_free)
        t->state_free(s->ptr);
    s->ptr = NULL;
}

/* The checks every run makes first: a known, built-in backend asked for,
 * and the call's inputs and outputs valid for its pass. */
static dsv_status check_run(const dsv_call *c, bool backward, dsv_backend want)
{
    if ((unsigned)want >= DSV_BACKEND_COUNT)
        return dsv_error(DSV_INVALID, "unknown backend %d", (int)want);
    if (!dsv_backend_available(want))
        return dsv_error(DSV_UNSUPPORTED, "backend %s is not built in",
                         dsv_backend_name(want));
    int nd;
    int64_t os[DSV_MAX_DIMS];
    dsv_status s = dsv_op_check(c, backward, &nd, os);
    return s ? s : dsv_op_check_outputs(c, backward, nd, os);
}

/* The call's state slot goes to backend b (freeing another backend's). */
static void hand_state(dsv_call *c, dsv_backend b)
{
    if (c->state) {
        if (c->state->ptr && c->state->owner != b)
            dsv_state_free(c->state);
        c->state->owner = b;
    }
}

static dsv_status run(dsv_call *c, bool backward, bool relu, dsv_backend want,
                      dsv_backend *used)
{
    dsv_status s = check_run(c, backward, want);
    if (s)
        return s;
    dsv_backend b = pick(c, backward, want, true);
    const dsv_kernel *k = &dsv_backend_get(b)->kernels[c->op];
    if (relu && !(backward ? k->backward_relu : k->forward_relu))
        return dsv_error(DSV_UNSUPPORTED, "%s: backend %s has no fused relu %s",
                         dsv_op_name(c->op), dsv_backend_name(b),
                         backward ? "backward" : "forward");
    hand_state(c, b);
    if (used)
        *used = b;
    if (backward)
        return relu ? k->backward_relu(c) : k->backward(c);
    return relu ? k->forward_relu(c) : k->forward(c);
}

dsv_status dsv_forward(dsv_call *c, dsv_backend want, dsv_backend *used)
{
    return run(c, false, false, want, used);
}

dsv_status dsv_backward(dsv_call *c, dsv_backend want, dsv_backend *used)
{
    return run(c, true, false, want, used);
}

bool dsv_forward_relu_ok(const dsv_call *c, dsv_backend want)
{
    const dsv_backend_table *t = dsv_backend_get(dsv_pick_backend(c, false, want));
    return t && t->kernels[c->op].forward_relu;
}

dsv_status dsv_forward_relu(dsv_call *c, dsv_backend want, dsv_backend *used)
{
    return run(c, false, true, want, used);
}

bool dsv_forward_relu_pool_ok(const dsv_call *c, const dsv_call *pool, bool train,
                              dsv_backend want)
{
    if (pool->op != DSV_OP_MAX_POOL)
        return false;
    dsv_backend b = dsv_pick_backend(c, false, want);
    const dsv_backend_table *t = dsv_backend_get(b);
    /* pool's picks may time backends under auto (as its own forward would):
       made here, they hold for its backward too */
    return t && t->kernels[c->op].forward_relu && t->kernels[c->op].forward_relu_pool &&
           pick(pool, false, want, true) == b && (!train || pick(pool, true, want, true) == b);
}

bool dsv_backward_relu_ok(const dsv_call *c, const dsv_call *relu, dsv_backend want)
{
    if (relu->op != DSV_OP_RELU)
        return false;
    dsv_backend b = pick(c, true, want, true);
    const dsv_backend_table *t = dsv_backend_get(b);
    return t && t->kernels[c->op].backward_relu && pick(relu, true, want, true) == b;
}

dsv_status dsv_backward_relu(dsv_call *c, dsv_backend want, dsv_backend *used)
{
    return run(c, true, true, want, used);
}

dsv_status dsv_forward_relu_pool(dsv_call *c, dsv_call *pool, bool keep, bool train,
                                 dsv_backend want, dsv_backend *used)
{
    dsv_status s;
    if ((s = check_run(c, false, want)) || (s = check_run(pool, false, want)))
        return s;
    if (pool->x->data != c->out->data || !dsv_forward_relu_pool_ok(c, pool, train, want))
        return dsv_error(DSV_UNSUPPORTED, "%s + relu + %s: not offered for this call",
                         dsv_op_name(c->op), dsv_op_name(pool->op));
    dsv_backend b = dsv_pick_backend(c, false, want);
    hand_state(c, b);
    hand_state(pool, b);
    if (used)
        *used = b;
    return dsv_backend_get(b)->kernels[c->op].forward_relu_pool(c, pool, keep);
}
