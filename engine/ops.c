/*
 * The op table, default parameters and call validation.
 *
 * dsv_op_check is the one place that turns user input into a valid call:
 * every shape, dtype and parameter rule of the course's layers lives here, and
 * kernels rely on it. Messages name the op and the offending value.
 */
#include <math.h>
#include <string.h>

#include "dasecv/ops.h"

/*
 * Every op, described once. The name lookups, dsv_op_has_weights and
 * dsv_op_is_loss below, the command line's op list and its checks all read
 * this table; adding an op is adding a row here, its dsv_op_check case and
 * its kernels.
 */
#define POOL (DSV_PF_POOL | DSV_PF_STRIDE)
static const dsv_op_info op_table[] = {
    [DSV_OP_AFFINE] = {.name = "affine", .num_inputs = 1, .has_weights = true},
    [DSV_OP_RELU] = {.name = "relu", .num_inputs = 1},
    [DSV_OP_CONV] = {.name = "conv", .num_inputs = 1,
                     .params = DSV_PF_STRIDE | DSV_PF_PAD, .has_weights = true},
    [DSV_OP_MAX_POOL] = {.name = "max_pool", .num_inputs = 1, .params = POOL},
    [DSV_OP_AVG_POOL] = {.name = "avg_pool", .num_inputs = 1, .params = POOL},
    [DSV_OP_BATCHNORM] = {.name = "batchnorm", .num_inputs = 1,
                          .params = DSV_PF_EPS | DSV_PF_MOMENTUM, .has_weights = true,
                          .batch_stats = true, .running_stats = true},
    [DSV_OP_SPATIAL_BATCHNORM] = {.name = "spatial_batchnorm", .num_inputs = 1,
                                  .params = DSV_PF_EPS | DSV_PF_MOMENTUM,
                                  .has_weights = true, .batch_stats = true,
                                  .running_stats = true},
    [DSV_OP_LAYERNORM] = {.name = "layernorm", .num_inputs = 1, .params = DSV_PF_EPS,
                          .has_weights = true},
    [DSV_OP_SPATIAL_GROUPNORM] = {.name = "spatial_groupnorm", .num_inputs = 1,
                                  .params = DSV_PF_GROUPS | DSV_PF_EPS,
                                  .has_weights = true},
    [DSV_OP_DROPOUT] = {.name = "dropout", .num_inputs = 1,
                        .params = DSV_PF_P | DSV_PF_SEED},
    [DSV_OP_ADD] = {.name = "add", .num_inputs = 2},
    [DSV_OP_SOFTMAX_LOSS] = {.name = "softmax_loss", .num_inputs = 1, .is_loss = true},
    [DSV_OP_SVM_LOSS] = {.name = "svm_loss", .num_inputs = 1, .is_loss = true},
};
#undef POOL
_Static_assert(sizeof(op_table) / sizeof(op_table[0]) == DSV_OP_COUNT,
               "op_table must describe every dsv_op");

const dsv_op_info *dsv_op_get_info(dsv_op op)
{
    return (unsigned)op < DSV_OP_COUNT ? &op_table[op] : NULL;
}

const char *dsv_op_name(dsv_op op)
{
    return (unsigned)op < DSV_OP_COUNT ? op_table[op].name : "unknown";
}

dsv_status dsv_op_from_name(const char *name, dsv_op *op)
{
    for (int i = 0; i < DSV_OP_COUNT; i++)
        if (strcmp(name, op_table[i].name) == 0) {
            *op = (dsv_op)i;
            return DSV_OK;
        }
    return dsv_error(DSV_INVALID, "unknown op '%s'", name);
}

bool dsv_op_has_weights(dsv_op op)
{
    return (unsigned)op < DSV_OP_COUNT && op_table[op].has_weights;
}

bool dsv_op_is_loss(dsv_op op)
{
    return (unsigned)op < DSV_OP_COUNT && op_table[op].is_loss;
}

dsv_params dsv_params_default(void)
{
    return (dsv_params){
        .stride = 1,
        .pad = 0,
        .pool_height = 2,
        .pool_width = 2,
        .groups = 1,
        .eps = 1e-5,
        .momentum = 0.9,
        .p = 0.5,
        .seed = 0,
        .row0 = 0,
        .train = true,
    };
}

dsv_call dsv_call_make(dsv_op op)
{
    dsv_call c;
    memset(&c, 0, sizeof(c));
    c.op = op;
    c.p = dsv_params_default();
    return c;
}

/* ---- helpers -------------------------------------------------------------- */

static dsv_status need(const dsv_call *c, const dsv_tensor *t, const char *what)
{
    if (!t || !t->data)
        return dsv_error(DSV_INVALID, "%s: missing %s", dsv_op_name(c->op), what);
    if (t->dtype != c->x->dtype)
        return dsv_error(DSV_INVALID, "%s: %s is %s but x is %s",
                         dsv_op_name(c->op), what, dsv_dtype_name(t->dtype),
                         dsv_dtype_name(c->x->dtype));
    return DSV_OK;
}

static dsv_status need_ndim(const dsv_call *c, const dsv_tensor *t,
                            const char *what, int ndim)
{
    dsv_status s = need(c, t, what);
    if (s)
        return s;
    if (t->ndim != ndim) {
        char buf[64];
        return dsv_error(DSV_INVALID, "%s: %s must have %d dimensions, got %s",
                         dsv_op_name(c->op), what, ndim,
                         dsv_tensor_shape_str(t, buf, sizeof(buf)));
    }
    return DSV_OK;
}

/* t must hold exactly n elements (gamma (C) or (1, C, 1, 1) alike). */
static dsv_status need_numel(const dsv_call *c, const dsv_tensor *t,
                             const char *what, int64_t n)
{
    dsv_status s = need(c, t, what);
    if (s)
        return s;
    if (dsv_tensor_numel(t) != n) {
        char buf[64];
        return dsv_error(DSV_INVALID, "%s: %s has shape %s, expected %lld elements",
                         dsv_op_name(c->op), what,
                         dsv_tensor_shape_str(t, buf, sizeof(buf)), (long long)n);
    }
    return DSV_OK;
}

static dsv_status need_like(const dsv_call *c, const dsv_tensor *t,
                            const char *what, const dsv_tensor *ref,
                            const char *refname)
{
    dsv_status s = need(c, t, what);
    if (s)
        return s;
    if (dsv_tensor_numel(t) != dsv_tensor_numel(ref) ||
        t->shape[0] != ref->shape[0]) {
        char a[64], b[64];
        return dsv_error(DSV_INVALID, "%s: %s has shape %s but %s has %s",
                         dsv_op_name(c->op), what,
                         dsv_tensor_shape_str(t, a, sizeof(a)), refname,
                         dsv_tensor_shape_str(ref, b, sizeof(b)));
    }
    return DSV_OK;
}

/* Output extent of a window op; the course asserts divisibility. */
static dsv_status window_out(const dsv_call *c, const char *dim, int64_t in,
                             int64_t pad, int64_t k, const char *kname,
                             int64_t *out)
{
    int64_t span = in + 2 * pad - k;
    if (span < 0)
        return dsv_error(DSV_INVALID, "%s: %s %s = %lld is larger than %s + 2*pad = %lld",
                         dsv_op_name(c->op), kname, kname, (long long)k, dim,
                         (long long)(in + 2 * pad));
    if (span % c->p.stride != 0)
        return dsv_error(DSV_INVALID,
                         "%s: (%s + 2*pad - %s) = %lld is not divisible by stride %d",
                         dsv_op_name(c->op), dim, kname, (long long)span,
                         c->p.stride);
    *out = 1 + span / c->p.stride;
    return DSV_OK;
}

static dsv_status check_norm_params(const dsv_call *c)
{
    if (!(c->p.eps > 0) || !isfinite(c->p.eps))
        return dsv_error(DSV_INVALID, "%s: eps must be positive, got %g",
                         dsv_op_name(c->op), c->p.eps);
    if (!(c->p.momentum >= 0 && c->p.momentum <= 1))
        return dsv_error(DSV_INVALID, "%s: momentum must be in [0, 1], got %g",
                         dsv_op_name(c->op), c->p.momentum);
    return DSV_OK;
}

/* gamma, beta and (for batch norms) running statistics, n elements each. */
static dsv_status check_affine_params(const dsv_call *c, int64_t n, bool running)
{
    dsv_status s;
    if ((s = check_norm_params(c)) || (s = need_numel(c, c->w, "gamma", n)) ||
        (s = need_numel(c, c->b, "beta", n)))
        return s;
    if (!running)
        return DSV_OK;
    if (!c->p.train && (!c->running_mean || !c->running_var))
        return dsv_error(DSV_INVALID, "%s: test mode needs running_mean and running_var",
                         dsv_op_name(c->op));
    if (c->running_mean && (s = need_numel(c, c->running_mean, "running_mean", n)))
        return s;
    if (c->running_var && (s = need_numel(c, c->running_var, "running_var", n)))
        return s;
    return DSV_OK;
}

static dsv_status check_forward(const dsv_call *c, int *nd, int64_t *os)
{
    const dsv_tensor *x = c->x;
    dsv_status s;
    *nd = x->ndim;
    memcpy(os, x->shape, sizeof(int64_t) * DSV_MAX_DIMS);

    switch (c->op) {
    case DSV_OP_AFFINE:
        if (x->ndim < 2)
            return dsv_error(DSV_INVALID, "affine: x must have at least 2 dimensions");
        if ((s = need_ndim(c, c->w, "w", 2)))
            return s;
        if (c->w->shape[0] != dsv_tensor_row_size(x))
            return dsv_error(DSV_INVALID,
                             "affine: x has %lld features per row but w has %lld rows",
                             (long long)dsv_tensor_row_size(x),
                             (long long)c->w->shape[0]);
        if ((s = need_numel(c, c->b, "b", c->w->shape[1])))
            return s;
        *nd = 2;
        os[1] = c->w->shape[1];
        os[2] = os[3] = 1;
        return DSV_OK;

    case DSV_OP_RELU: return DSV_OK;

    case DSV_OP_DROPOUT:
        if (!(c->p.p > 0 && c->p.p <= 1))
            return dsv_error(DSV_INVALID, "dropout: keep probability p must be in (0, 1], got %g",
                             c->p.p);
        return DSV_OK;

    case DSV_OP_ADD:
        if ((s = need(c, c->x2, "x2")))
            return s;
        if (!dsv_tensor_same_shape(x, c->x2)) {
            char a[64], b[64];
            return dsv_error(DSV_INVALID, "add: x %s and x2 %s differ",
                             dsv_tensor_shape_str(x, a, sizeof(a)),
                             dsv_tensor_shape_str(c->x2, b, sizeof(b)));
        }
        return DSV_OK;

    case DSV_OP_CONV: {
        if (x->ndim != 4)
            return dsv_error(DSV_INVALID, "conv: x must be (N, C, H, W)");
        if ((s = need_ndim(c, c->w, "w", 4)))
            return s;
        if (c->w->shape[1] != x->shape[1])
            return dsv_error(DSV_INVALID, "conv: x has %lld channels but w expects %lld",
                             (long long)x->shape[1], (long long)c->w->shape[1]);
        if ((s = need_numel(c, c->b, "b", c->w->shape[0])))
            return s;
        if (c->p.stride < 1 || c->p.pad < 0)
            return dsv_error(DSV_INVALID, "conv: stride must be >= 1 and pad >= 0 (got %d, %d)",
                             c->p.stride, c->p.pad);
        if ((s = window_out(c, "H", x->shape[2], c->p.pad, c->w->shape[2], "HH", &os[2])) ||
            (s = window_out(c, "W", x->shape[3], c->p.pad, c->w->shape[3], "WW", &os[3])))
            return s;
        os[1] = c->w->shape[0];
        return DSV_OK;
    }

    case DSV_OP_MAX_POOL:
    case DSV_OP_AVG_POOL:
        if (x->ndim != 4)
            return dsv_error(DSV_INVALID, "%s: x must be (N, C, H, W)", dsv_op_name(c->op));
        if (c->p.stride < 1 || c->p.pool_height < 1 || c->p.pool_width < 1)
            return dsv_error(DSV_INVALID,
                             "%s: pool_height, pool_width and stride must be >= 1",
                             dsv_op_name(c->op));
        if ((s = window_out(c, "H", x->shape[2], 0, c->p.pool_height, "pool_height", &os[2])) ||
            (s = window_out(c, "W", x->shape[3], 0, c->p.pool_width, "pool_width", &os[3])))
            return s;
        return DSV_OK;

    case DSV_OP_BATCHNORM:
    case DSV_OP_LAYERNORM:
        if (x->ndim != 2)
            return dsv_error(DSV_INVALID, "%s: x must be (N, D)", dsv_op_name(c->op));
        return check_affine_params(c, x->shape[1], c->op == DSV_OP_BATCHNORM);

    case DSV_OP_SPATIAL_BATCHNORM:
        if (x->ndim != 4)
            return dsv_error(DSV_INVALID, "spatial_batchnorm: x must be (N, C, H, W)");
        return check_affine_params(c, x->shape[1], true);

    case DSV_OP_SPATIAL_GROUPNORM:
        if (x->ndim != 4)
            return dsv_error(DSV_INVALID, "spatial_groupnorm: x must be (N, C, H, W)");
        if (c->p.groups < 1 || x->shape[1] % c->p.groups != 0)
            return dsv_error(DSV_INVALID,
                             "spatial_groupnorm: C = %lld is not divisible by groups G = %d",
                             (long long)x->shape[1], c->p.groups);
        return check_affine_params(c, x->shape[1], false);

    case DSV_OP_SOFTMAX_LOSS:
    case DSV_OP_SVM_LOSS: {
        if (x->ndim != 2)
            return dsv_error(DSV_INVALID, "%s: scores x must be (N, C)", dsv_op_name(c->op));
        if (!c->y || !c->y->data || c->y->dtype != DSV_I32)
            return dsv_error(DSV_INVALID, "%s: labels y must be int32", dsv_op_name(c->op));
        if (dsv_tensor_numel(c->y) != x->shape[0])
            return dsv_error(DSV_INVALID, "%s: %lld labels for %lld rows of scores",
                             dsv_op_name(c->op), (long long)dsv_tensor_numel(c->y),
                             (long long)x->shape[0]);
        const int32_t *y = c->y->data;
        for (int64_t i = 0; i < x->shape[0]; i++)
            if (y[i] < 0 || y[i] >= x->shape[1])
                return dsv_error(DSV_INVALID, "%s: label y[%lld] = %d is outside [0, %lld)",
                                 dsv_op_name(c->op), (long long)i, y[i],
                                 (long long)x->shape[1]);
        if (!c->loss)
            return dsv_error(DSV_INVALID, "%s: no place for the loss", dsv_op_name(c->op));
        return DSV_OK;
    }
    default: return dsv_error(DSV_INVALID, "unknown op %d", (int)c->op);
    }
}

dsv_status dsv_op_check(const dsv_call *c, bool backward, int *out_ndim,
                        int64_t out_shape[DSV_MAX_DIMS])
{
    if ((unsigned)c->op >= DSV_OP_COUNT)
        return dsv_error(DSV_INVALID, "unknown op %d", (int)c->op);
    if (!c->x || !c->x->data)
        return dsv_error(DSV_INVALID, "%s: missing x", dsv_op_name(c->op));
    if (!dsv_dtype_is_float(c->x->dtype))
        return dsv_error(DSV_INVALID, "%s: x must be float32 or float64, got %s",
                         dsv_op_name(c->op), dsv_dtype_name(c->x->dtype));
    int nd;
    int64_t os[DSV_MAX_DIMS];
    dsv_status s = check_forward(c, &nd, os);
    if (s)
        return s;
    if (out_ndim)
        *out_ndim = nd;
    if (out_shape)
        memcpy(out_shape, os, sizeof(os));
    if (!backward)
        return DSV_OK;

    if (dsv_op_is_loss(c->op))
        return dsv_error(DSV_INVALID, "%s: a loss has no backward; its forward gives dx",
                         dsv_op_name(c->op));
    if ((s = need(c, c->dout, "dout")))
        return s;
    dsv_tensor ref = dsv_tensor_wrap(c->dout->data, c->x->dtype, nd, os);
    if (!dsv_tensor_same_shape(c->dout, &ref) &&
        !(dsv_tensor_numel(c->dout) == dsv_tensor_numel(&ref) &&
          c->dout->shape[0] == os[0])) {
        char a[64], b[64];
        return dsv_error(DSV_INVALID, "%s: dout has shape %s, expected %s",
                         dsv_op_name(c->op), dsv_tensor_shape_str(c->dout, a, sizeof(a)),
                         dsv_tensor_shape_str(&ref, b, sizeof(b)));
    }
    return DSV_OK;
}

/* Output and gradient buffers must match the shapes the op produces. */
dsv_status dsv_op_check_outputs(const dsv_call *c, bool backward, int nd,
                                const int64_t *os)
{
    dsv_status s;
    if (!backward) {
        if (dsv_op_is_loss(c->op))
            return c->dx ? need_like(c, c->dx, "dx", c->x, "x") : DSV_OK;
        dsv_tensor ref = dsv_tensor_wrap(c->x->data, c->x->dtype, nd, os);
        return need_like(c, c->out, "out", &ref, "the expected output");
    }
    if (c->dx && (s = need_like(c, c->dx, "dx", c->x, "x")))
        return s;
    if (c->dx2 && (s = need_like(c, c->dx2, "dx2", c->x2, "x2")))
        return s;
    if (dsv_op_has_weights(c->op)) {
        if (c->dw && (s = need_numel(c, c->dw, "dw", dsv_tensor_numel(c->w))))
            return s;
        if (c->db && (s = need_numel(c, c->db, "db", dsv_tensor_numel(c->b))))
            return s;
    }
    return DSV_OK;
}
