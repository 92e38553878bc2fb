/*
 * The course's networks (ThreeLayerConvNet, FullyConnectedNet) and a small
 * residual CIFAR net, built as graphs (graph.c does the work).
 *
 * What must stay true: parameter names and order follow the course (W1 b1 W2
 * b2 ...; gamma1 beta1 for the norms), since checkpoints and tests refer to
 * them; weights are drawn in parameter order from cfg->seed, so a config
 * always gives the same initial model.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dasecv/graph.h"
#include "dasecv/model.h"
#include "internal/l2.h"

struct dsv_model {
    dsv_model_config cfg;
    dsv_graph *g;
    dsv_exec_options exec;
};

/* ---- names ------------------------------------------------------------------ */

static const char *const kind_names[] = {"threelayer", "fc", "resnet"};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == DSV_MODEL_KIND_COUNT,
               "kind_names must name every model kind");
static const char *const norm_names[] = {"none", "batchnorm", "layernorm"};
_Static_assert(sizeof(norm_names) / sizeof(norm_names[0]) == DSV_NORM_COUNT,
               "norm_names must name every norm");
static const char *const sched_names[] = {"layer", "batch", "auto"};
_Static_assert(sizeof(sched_names) / sizeof(sched_names[0]) == DSV_SCHEDULE_COUNT,
               "sched_names must name every schedule");

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *dsv_model_kind_name(dsv_model_kind k)
{
    return (unsigned)k < DSV_MODEL_KIND_COUNT ? kind_names[k] : "unknown";
}

dsv_status dsv_model_kind_from_name(const char *s, dsv_model_kind *k)
{
    int i = lookup(kind_names, DSV_MODEL_KIND_COUNT, s);
    if (i < 0)
        return dsv_error(DSV_INVALID, "unknown model '%s' (threelayer, fc or resnet)",
                         s ? s : "");
    *k = (dsv_model_kind)i;
    return DSV_OK;
}

const char *dsv_norm_name(dsv_norm n)
{
    return (unsigned)n < DSV_NORM_COUNT ? norm_names[n] : "unknown";
}

dsv_status dsv_norm_from_name(const char *s, dsv_norm *n)
{
    int i = lookup(norm_names, DSV_NORM_COUNT, s);
    if (i < 0)
        return dsv_error(DSV_INVALID,
                         "unknown normalization '%s' (none, batchnorm or layernorm)",
                         s ? s : "");
    *n = (dsv_norm)i;
    return DSV_OK;
}

const char *dsv_schedule_name(dsv_schedule s)
{
    return (unsigned)s < DSV_SCHEDULE_COUNT ? sched_names[s] : "unknown";
}

dsv_status dsv_schedule_from_name(const char *s, dsv_schedule *out)
{
    int i = lookup(sched_names, DSV_SCHEDULE_COUNT, s);
    if (i < 0)
        return dsv_error(DSV_INVALID, "unknown schedule '%s' (layer, batch or auto)",
                         s ? s : "");
    *out = (dsv_schedule)i;
    return DSV_OK;
}

/* ---- configuration ------------------------------------------------------------ */

dsv_model_config dsv_model_config_default(dsv_model_kind kind)
{
    dsv_model_config c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    c.dtype = DSV_F32;
    c.input_dim[0] = 3;
    c.input_dim[1] = 32;
    c.input_dim[2] = 32;
    c.num_classes = 10;
    c.weight_scale = kind == DSV_MODEL_THREELAYER ? 1e-3 : 1e-2;
    c.reg = 0.0;
    c.seed = 0;
    c.num_filters = 32;
    c.filter_size = 7;
    c.hidden_dim = 100;
    c.num_hidden = 2;
    c.hidden_dims[0] = 100;
    c.hidden_dims[1] = 100;
    c.normalization = DSV_NORM_NONE;
    c.dropout_keep = 1.0;
    c.res_channels = 16;
    c.res_blocks = 2;
    return c;
}

#define MAX_DIM 65536

dsv_status dsv_model_config_check(const dsv_model_config *c)
{
    if (!c)
        return dsv_error(DSV_INVALID, "model: no configuration");
    if ((unsigned)c->kind >= DSV_MODEL_KIND_COUNT)
        return dsv_error(DSV_INVALID, "model: unknown kind %d", (int)c->kind);
    const char *k = kind_names[c->kind];
    if (c->dtype != DSV_F32 && c->dtype != DSV_F64)
        return dsv_error(DSV_INVALID, "%s: dtype must be float32 or float64, got %s", k,
                         dsv_dtype_name(c->dtype));
    for (int d = 0; d < 3; d++)
        if (c->input_dim[d] < 1 || c->input_dim[d] > MAX_DIM)
            return dsv_error(DSV_INVALID, "%s: input_dim[%d] = %d must be 1..%d", k, d,
                             c->input_dim[d], MAX_DIM);
    int64_t in_size = (int64_t)c->input_dim[0] * c->input_dim[1] * c->input_dim[2];
    if (in_size > (INT64_C(1) << 28))
        return dsv_error(DSV_INVALID, "%s: input of %lld values per image is too large", k,
                         (long long)in_size);
    if (c->num_classes < 1 || c->num_classes > MAX_DIM)
        return dsv_error(DSV_INVALID, "%s: num_classes = %d must be 1..%d", k,
                         c->num_classes, MAX_DIM);
    if (!(c->weight_scale >= 0) || !isfinite(c->weight_scale))
        return dsv_error(DSV_INVALID, "%s: weight_scale must be >= 0, got %g", k,
                         c->weight_scale);
    if (!(c->reg >= 0) || !isfinite(c->reg))
        return dsv_error(DSV_INVALID, "%s: reg must be >= 0, got %g", k, c->reg);
    int H = c->input_dim[1], W = c->input_dim[2];

    switch (c->kind) {
    case DSV_MODEL_THREELAYER: {
        if (c->num_filters < 1 || c->num_filters > MAX_DIM)
            return dsv_error(DSV_INVALID, "threelayer: num_filters = %d must be 1..%d",
                             c->num_filters, MAX_DIM);
        if (c->hidden_dim < 1 || c->hidden_dim > MAX_DIM)
            return dsv_error(DSV_INVALID, "threelayer: hidden_dim = %d must be 1..%d",
                             c->hidden_dim, MAX_DIM);
        if (c->filter_size < 1)
            return dsv_error(DSV_INVALID, "threelayer: filter_size = %d must be >= 1",
                             c->filter_size);
        if (c->filter_size > H || c->filter_size > W)
            return dsv_error(DSV_INVALID,
                             "threelayer: filter_size %d is larger than the %d x %d input",
                             c->filter_size, H, W);
        int pad = (c->filter_size - 1) / 2;
        int ho = H + 2 * pad - c->filter_size + 1, wo = W + 2 * pad - c->filter_size + 1;
        if (ho < 2 || wo < 2 || ho % 2 || wo % 2)
            return dsv_error(DSV_INVALID,
                             "threelayer: the %d x %d conv output does not split into 2x2 "
                             "pooling windows (needs even sizes >= 2)",
                             ho, wo);
        int64_t flat = (int64_t)c->num_filters * (ho / 2) * (wo / 2);
        if (flat * c->hidden_dim > (INT64_C(1) << 31))
            return dsv_error(DSV_INVALID, "threelayer: W2 would have %lld values",
                             (long long)(flat * c->hidden_dim));
        return DSV_OK;
    }
    case DSV_MODEL_FC:
        if (c->num_hidden < 0 || c->num_hidden > DSV_MAX_HIDDEN)
            return dsv_error(DSV_INVALID, "fc: num_hidden = %d must be 0..%d", c->num_hidden,
                             DSV_MAX_HIDDEN);
        for (int i = 0; i < c->num_hidden; i++)
            if (c->hidden_dims[i] < 1 || c->hidden_dims[i] > MAX_DIM)
                return dsv_error(DSV_INVALID, "fc: hidden_dims[%d] = %d must be 1..%d", i,
                                 c->hidden_dims[i], MAX_DIM);
        if ((unsigned)c->normalization >= DSV_NORM_COUNT)
            return dsv_error(DSV_INVALID, "fc: unknown normalization %d",
                             (int)c->normalization);
        if (!(c->dropout_keep > 0 && c->dropout_keep <= 1))
            return dsv_error(DSV_INVALID, "fc: dropout_keep must be in (0, 1], got %g",
                             c->dropout_keep);
        return DSV_OK;
    case DSV_MODEL_RESNET:
        if (c->res_channels < 1 || c->res_channels > 4096)
            return dsv_error(DSV_INVALID, "resnet: res_channels = %d must be 1..4096",
                             c->res_channels);
        if (c->res_blocks < 0 || c->res_blocks > 64)
            return dsv_error(DSV_INVALID, "resnet: res_blocks = %d must be 0..64",
                             c->res_blocks);
        if (H < 2 || W < 2 || H % 2 || W % 2)
            return dsv_error(DSV_INVALID,
                             "resnet: input %d x %d must have even sizes >= 2 (2x2 pool)", H,
                             W);
        return DSV_OK;
    default: return dsv_error(DSV_INVALID, "model: unknown kind %d", (int)c->kind);
    }
}

dsv_exec_options dsv_exec_options_default(void)
{
    return (dsv_exec_options){
        .backend = DSV_BACKEND_AUTO, .schedule = DSV_SCHEDULE_LAYER, .threads = 0};
}

/* ---- building ------------------------------------------------------------------ */

static dsv_status build_threelayer(dsv_graph *g, const dsv_model_config *c, dsv_value x,
                                   dsv_value y)
{
    dsv_value h1, h2, s;
    dsv_status st;
    if ((st = dsv_graph_conv_relu_pool(g, "1", x, c->num_filters, c->filter_size, 1,
                                       (c->filter_size - 1) / 2, 2, &h1)) ||
        (st = dsv_graph_affine_relu(g, "2", h1, c->hidden_dim, &h2)) ||
        (st = dsv_graph_affine(g, "3", h2, c->num_classes, &s)))
        return st;
    return dsv_graph_softmax_loss(g, "loss", s, y);
}

/* {affine - [norm] - relu - [dropout]} x (L - 1) - affine - softmax */
static dsv_status build_fc(dsv_graph *g, const dsv_model_config *c, dsv_value x,
                           dsv_value y)
{
    dsv_value h = x;
    dsv_status st;
    char id[16], nm[32];
    uint64_t dseed = c->seed ^ 0x5DEECE66Dull;
    for (int i = 0; i < c->num_hidden; i++) {
        snprintf(id, sizeof(id), "%d", i + 1);
        if ((st = dsv_graph_affine(g, id, h, c->hidden_dims[i], &h)))
            return st;
        if (c->normalization == DSV_NORM_BATCHNORM && (st = dsv_graph_batchnorm(g, id, h, &h)))
            return st;
        if (c->normalization == DSV_NORM_LAYERNORM && (st = dsv_graph_layernorm(g, id, h, &h)))
            return st;
        snprintf(nm, sizeof(nm), "relu%s", id);
        if ((st = dsv_graph_relu(g, nm, h, &h)))
            return st;
        if (c->dropout_keep < 1) {
            snprintf(nm, sizeof(nm), "dropout%s", id);
            if ((st = dsv_graph_dropout(g, nm, h, c->dropout_keep, dseed + (uint64_t)i, &h)))
                return st;
        }
    }
    snprintf(id, sizeof(id), "%d", c->num_hidden + 1);
    if ((st = dsv_graph_affine(g, id, h, c->num_classes, &h)))
        return st;
    return dsv_graph_softmax_loss(g, "loss", h, y);
}

/* conv-bn-relu stem; blocks of conv-bn-relu-conv-bn + identity, relu; 2x2 max
 * pool; affine. */
static dsv_status build_resnet(dsv_graph *g, const dsv_model_config *c, dsv_value x,
                               dsv_value y)
{
    dsv_value h, a, b;
    dsv_status st;
    char id[16], id2[16], nm[32];
    int C = c->res_channels, layer = 1;
    if ((st = dsv_graph_conv_bn_relu(g, "1", x, C, 3, 1, 1, &h)))
        return st;
    for (int k = 0; k < c->res_blocks; k++) {
        snprintf(id, sizeof(id), "%d", ++layer);
        snprintf(id2, sizeof(id2), "%d", ++layer);
        if ((st = dsv_graph_conv_bn_relu(g, id, h, C, 3, 1, 1, &a)) ||
            (st = dsv_graph_conv(g, id2, a, C, 3, 3, 1, 1, &a)) ||
            (st = dsv_graph_batchnorm(g, id2, a, &a)))
            return st;
        snprintf(nm, sizeof(nm), "add%d", k + 1);
        if ((st = dsv_graph_add(g, nm, a, h, &b)))
            return st;
        snprintf(nm, sizeof(nm), "relu%s", id2);
        if ((st = dsv_graph_relu(g, nm, b, &h)))
            return st;
    }
    if ((st = dsv_graph_max_pool(g, "pool", h, 2, 2, 2, &h)))
        return st;
    snprintf(id, sizeof(id), "%d", ++layer);
    if ((st = dsv_graph_affine(g, id, h, c->num_classes, &h)))
        return st;
    return dsv_graph_softmax_loss(g, "loss", h, y);
}

dsv_status dsv_model_create(dsv_model **out, const dsv_model_config *cfg)
{
    *out = NULL;
    dsv_status s = dsv_model_config_check(cfg);
    if (s)
        return s;
    dsv_model *m = calloc(1, sizeof(*m));
    if (!m)
        return dsv_error(DSV_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->exec = dsv_exec_options_default();
    if ((s = dsv_graph_create(&m->g, cfg->dtype)))
        goto fail;
    dsv_value x, y;
    int64_t in[3] = {cfg->input_dim[0], cfg->input_dim[1], cfg->input_dim[2]};
    if ((s = dsv_graph_input(m->g, 3, in, &x)) || (s = dsv_graph_labels(m->g, &y)))
        goto fail;
    switch (cfg->kind) {
    case DSV_MODEL_THREELAYER: s = build_threelayer(m->g, cfg, x, y); break;
    case DSV_MODEL_FC: s = build_fc(m->g, cfg, x, y); break;
    default: s = build_resnet(m->g, cfg, x, y); break;
    }
    if (s || (s = dsv_graph_finalize(m->g)))
        goto fail;
    dsv_graph_init_params(m->g, cfg->seed, cfg->weight_scale);
    *out = m;
    return DSV_OK;
fail:
    dsv_graph_destroy(m->g);
    free(m);
    return s;
}

void dsv_model_destroy(dsv_model *m)
{
    if (!m)
        return;
    dsv_graph_destroy(m->g);
    free(m);
}

const dsv_model_config *dsv_model_config_of(const dsv_model *m) { return &m->cfg; }
dsv_graph *dsv_model_graph(dsv_model *m) { return m->g; }

dsv_status dsv_model_set_exec(dsv_model *m, const dsv_exec_options *o)
{
    if ((unsigned)o->backend >= DSV_BACKEND_COUNT)
        return dsv_error(DSV_INVALID, "model: unknown backend %d", (int)o->backend);
    if (!dsv_backend_available(o->backend))
        return dsv_error(DSV_UNSUPPORTED, "model: backend %s is not built in",
                         dsv_backend_name(o->backend));
    if ((unsigned)o->schedule >= DSV_SCHEDULE_COUNT)
        return dsv_error(DSV_INVALID, "model: unknown schedule %d", (int)o->schedule);
    if (o->threads < 0 || o->threads > 4096)
        return dsv_error(DSV_INVALID, "model: threads must be 0..4096, got %d", o->threads);
    m->exec = *o;
    return DSV_OK;
}

const dsv_exec_options *dsv_model_exec(const dsv_model *m) { return &m->exec; }

dsv_schedule dsv_model_schedule_used(const dsv_model *m)
{
    if (m->exec.schedule != DSV_SCHEDULE_AUTO)
        return m->exec.schedule;
    return dsv_graph_last_auto_choice(m->g);
}

int64_t dsv_model_num_params(const dsv_model *m) { return dsv_graph_num_param_values(m->g); }
void *dsv_model_params(dsv_model *m) { return dsv_graph_params(m->g); }
void *dsv_model_grads(dsv_model *m) { return dsv_graph_grads(m->g); }
int64_t dsv_model_num_buffers(const dsv_model *m) { return dsv_graph_num_buffer_values(m->g); }
void *dsv_model_buffers(dsv_model *m) { return dsv_graph_buffers(m->g); }
int dsv_model_num_tensors(const dsv_model *m) { return dsv_graph_num_params(m->g); }

const char *dsv_model_tensor_name(const dsv_model *m, int i)
{
    return dsv_graph_param_name(m->g, i);
}

dsv_tensor dsv_model_param(dsv_model *m, int i) { return dsv_graph_param(m->g, i); }
dsv_tensor dsv_model_grad(dsv_model *m, int i) { return dsv_graph_grad(m->g, i); }

bool dsv_model_tensor_is_weight(const dsv_model *m, int i)
{
    return dsv_graph_param_kind(m->g, i) == DSV_PARAM_WEIGHT;
}

dsv_status dsv_model_loss(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                          double *loss)
{
    dsv_status s = dsv_graph_train_step(m->g, &m->exec, x, y, loss);
    return s ? s : dsv_l2_apply(m->g, &m->exec, m->cfg.reg, loss);
}

uint64_t dsv_model_train_steps(const dsv_model *m) { return dsv_graph_step(m->g); }
void dsv_model_set_train_steps(dsv_model *m, uint64_t n) { dsv_graph_set_step(m->g, n); }

dsv_status dsv_model_scores(dsv_model *m, const dsv_tensor *x, dsv_tensor *scores)
{
    return dsv_graph_infer(m->g, &m->exec, x, scores);
}

dsv_status dsv_model_describe(const dsv_model *m, char *buf, size_t n)
{
    return dsv_graph_describe(m->g, m->exec.backend, buf, n);
}
