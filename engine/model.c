/*
 * Models: a graph built from model-file text (netfile.c does the parsing),
 * with its options, input preprocessing and class names; and the course's
 * configurations (ThreeLayerConvNet, FullyConnectedNet, a small residual
 * net) written as model-file text.
 *
 * What must stay true: the text of a course configuration declares the
 * parameters in the course's order (conv/affine w then b, norms gamma then
 * beta, layer by layer) with init=scale, so a configuration and seed always
 * give the same initial weights, the ones the course's networks have always
 * had here; the built-in files threelayer.cfg, fc.cfg and resnet.cfg are that
 * text for the default configurations (a test keeps them equal).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dasecv/graph.h"
#include "dasecv/model.h"
#include "internal/l2.h"
#include "netfile.h"
#include "internal/arrays.h"

struct dsv_model {
    dsv_model_options opt; /* resolved: dtype, input shape, classes set */
    char *text, *source;
    dsv_model_config cfg;  /* valid when has_cfg (made from the course's options) */
    bool has_cfg;
    dsv_graph *g;
    dsv_exec_options exec;
    float *mean;           /* (C, H, W) or NULL */
    float scale;
    bool has_preprocess;
    char **class_names;
    int nclass_names;
};

#define MAX_TEXT (1 << 20)

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

/* ---- the course's configurations as model files -------------------------------- */

typedef struct tbuf {
    char *p;
    size_t len, cap;
    bool oom;
} tbuf;

static void put(tbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(tbuf *t, const char *fmt, ...)
{
    if (!t->p && !t->oom) {
        if (!(t->p = malloc(1024)))
            t->oom = true;
        t->cap = 1024;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->oom ? -1 : vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t nc = t->cap * 2 + (size_t)n + 256;
        char *q = realloc(t->p, nc);
        if (!q) {
            t->oom = true;
            return;
        }
        t->p = q;
        t->cap = nc;
    }
}

/* The shortest decimal that reads back as v. */
static void put_number(tbuf *t, const char *key, double v)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    put(t, "%s=%s\n", key, buf);
}

static void put_net(tbuf *t, const dsv_model_config *c, const char *what)
{
    put(t, "# %s\n", what);
    put(t, "# Written by the course's options (dasecv train --model %s); the input\n"
           "# shape and the number of classes come from the dataset.\n",
        kind_names[c->kind]);
    put(t, "\n[net]\ninit=scale\n");
    put_number(t, "weight_scale", c->weight_scale);
}

static void put_conv(tbuf *t, const char *name, int filters, int size, int stride, int pad)
{
    put(t, "\n[conv]\nname=%s\nfilters=%d\nsize=%d\n", name, filters, size);
    if (stride != 1)
        put(t, "stride=%d\n", stride);
    if (pad)
        put(t, "pad=%d\n", pad);
}

static void put_layer(tbuf *t, const char *type, const char *name)
{
    put(t, "\n[%s]\nname=%s\n", type, name);
}

static void text_threelayer(tbuf *t, const dsv_model_config *c)
{
    put_net(t, c,
            "ThreeLayerConvNet of the course (classifiers/cnn.py):\n"
            "# conv - relu - 2x2 max pool - affine - relu - affine - softmax.");
    put_conv(t, "conv1", c->num_filters, c->filter_size, 1, (c->filter_size - 1) / 2);
    put_layer(t, "relu", "relu1");
    put_layer(t, "max_pool", "pool1");
    put(t, "size=2\nstride=2\n");
    put_layer(t, "affine", "affine2");
    put(t, "outputs=%d\n", c->hidden_dim);
    put_layer(t, "relu", "relu2");
    put_layer(t, "affine", "affine3");
    put(t, "outputs=classes\n");
    put_layer(t, "softmax_loss", "loss");
}

static void text_fc(tbuf *t, const dsv_model_config *c)
{
    put_net(t, c,
            "FullyConnectedNet of the course (classifiers/fc_net.py):\n"
            "# {affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.");
    for (int i = 1; i <= c->num_hidden; i++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "affine%d", i);
        put_layer(t, "affine", nm);
        put(t, "outputs=%d\n", c->hidden_dims[i - 1]);
        if (c->normalization == DSV_NORM_BATCHNORM) {
            snprintf(nm, sizeof(nm), "bn%d", i);
            put_layer(t, "batchnorm", nm);
        } else if (c->normalization == DSV_NORM_LAYERNORM) {
            snprintf(nm, sizeof(nm), "ln%d", i);
            put_layer(t, "layernorm", nm);
        }
        snprintf(nm, sizeof(nm), "relu%d", i);
        put_layer(t, "relu", nm);
        if (c->dropout_keep < 1) {
            snprintf(nm, sizeof(nm), "dropout%d", i);
            put_layer(t, "dropout", nm);
            put_number(t, "keep", c->dropout_keep);
        }
    }
    char nm[32];
    snprintf(nm, sizeof(nm), "affine%d", c->num_hidden + 1);
    put_layer(t, "affine", nm);
    put(t, "outputs=classes\n");
    put_layer(t, "softmax_loss", "loss");
}

static void text_resnet(tbuf *t, const dsv_model_config *c)
{
    put_net(t, c,
            "A small residual CIFAR net: a conv-bn-relu stem, blocks of\n"
            "# conv-bn-relu-conv-bn plus the identity, relu; 2x2 max pool; affine.");
    int C = c->res_channels, layer = 1;
    put_conv(t, "conv1", C, 3, 1, 1);
    put_layer(t, "spatial_batchnorm", "bn1");
    put_layer(t, "relu", "relu1");
    char prev[32] = "relu1", nm[32];
    for (int k = 1; k <= c->res_blocks; k++) {
        int a = ++layer, b = ++layer;
        snprintf(nm, sizeof(nm), "conv%d", a);
        put_conv(t, nm, C, 3, 1, 1);
        snprintf(nm, sizeof(nm), "bn%d", a);
        put_layer(t, "spatial_batchnorm", nm);
        snprintf(nm, sizeof(nm), "relu%d", a);
        put_layer(t, "relu", nm);
        snprintf(nm, sizeof(nm), "conv%d", b);
        put_conv(t, nm, C, 3, 1, 1);
        snprintf(nm, sizeof(nm), "bn%d", b);
        put_layer(t, "spatial_batchnorm", nm);
        snprintf(nm, sizeof(nm), "add%d", k);
        put_layer(t, "add", nm);
        put(t, "input2=%s\n", prev);
        snprintf(prev, sizeof(prev), "relu%d", b);
        put_layer(t, "relu", prev);
    }
    put_layer(t, "max_pool", "pool");
    put(t, "size=2\nstride=2\n");
    snprintf(nm, sizeof(nm), "affine%d", ++layer);
    put_layer(t, "affine", nm);
    put(t, "outputs=classes\n");
    put_layer(t, "softmax_loss", "loss");
}

dsv_status dsv_model_config_text(const dsv_model_config *cfg, char **text)
{
    *text = NULL;
    dsv_status s = dsv_model_config_check(cfg);
    if (s)
        return s;
    tbuf t = {0};
    switch (cfg->kind) {
    case DSV_MODEL_THREELAYER: text_threelayer(&t, cfg); break;
    case DSV_MODEL_FC: text_fc(&t, cfg); break;
    default: text_resnet(&t, cfg); break;
    }
    if (t.oom) {
        free(t.p);
        return dsv_error(DSV_NOMEM, "model: out of memory");
    }
    *text = t.p;
    return DSV_OK;
}

/* ---- creating ------------------------------------------------------------------- */

dsv_model_options dsv_model_options_default(void)
{
    return (dsv_model_options){.dtype = -1};
}

static dsv_status create(dsv_model **out, const char *text, const char *source,
                         const dsv_model_options *o, const dsv_model_config *cfg)
{
    *out = NULL;
    if (o->dtype != -1 && o->dtype != DSV_F32 && o->dtype != DSV_F64)
        return dsv_error(DSV_INVALID, "model: dtype must be float32 or float64");
    if (!(o->reg >= 0) || !isfinite(o->reg))
        return dsv_error(DSV_INVALID, "model: reg must be >= 0, got %g", o->reg);
    for (int d = 0; d < 3; d++)
        if (o->input_dim[d] < 0 || o->input_dim[d] > MAX_DIM)
            return dsv_error(DSV_INVALID, "model: input_dim[%d] = %d must be 0..%d", d,
                             o->input_dim[d], MAX_DIM);
    if (o->num_classes < 0 || o->num_classes > MAX_DIM)
        return dsv_error(DSV_INVALID, "model: num_classes = %d must be 0..%d",
                         o->num_classes, MAX_DIM);
    dsv_model *m = calloc(1, sizeof(*m));
    if (!m)
        return dsv_error(DSV_NOMEM, "model: out of memory");
    m->exec = dsv_exec_options_default();
    m->opt = *o;
    m->scale = 1.0f;
    dsv_status s = DSV_NOMEM;
    if (!(m->text = dsv_strdup_(text)) || !(m->source = dsv_strdup_(source ? source : "<model>"))) {
        dsv_error(s, "model: out of memory");
        goto fail;
    }
    if (cfg) {
        m->cfg = *cfg;
        m->has_cfg = true;
    }
    dsv_netfile_info info;
    if ((s = dsv_netfile_build(text, m->source, o, &m->g, &info)))
        goto fail;
    m->opt.dtype = (int)info.dtype;
    memcpy(m->opt.input_dim, info.input_dim, sizeof(info.input_dim));
    m->opt.num_classes = info.num_classes;
    /* weights carry their own std (init=scale/he/xavier), so the scale passed
       here is only a fallback the model files never leave in use */
    dsv_graph_init_params(m->g, o->seed, 1.0);
    *out = m;
    return DSV_OK;
fail:
    dsv_model_destroy(m);
    return s;
}

dsv_status dsv_model_create(dsv_model **out, const dsv_model_config *cfg)
{
    *out = NULL;
    char *text;
    dsv_status s = dsv_model_config_text(cfg, &text);
    if (s)
        return s;
    dsv_model_options o = dsv_model_options_default();
    o.dtype = cfg->dtype;
    for (int d = 0; d < 3; d++)
        o.input_dim[d] = cfg->input_dim[d];
    o.num_classes = cfg->num_classes;
    o.seed = cfg->seed;
    o.reg = cfg->reg;
    s = create(out, text, kind_names[cfg->kind], &o, cfg);
    free(text);
    return s;
}

dsv_status dsv_model_create_from_text(dsv_model **out, const char *text, const char *source,
                                      const dsv_model_options *o)
{
    dsv_model_options d = dsv_model_options_default();
    return create(out, text, source, o ? o : &d, NULL);
}

/* Reads a whole model file (at most 1 MiB). */
static dsv_status read_text(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsv_error(DSV_IO, "cannot open model file %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    dsv_status s = DSV_OK;
    while (buf) {
        if (len + 1 >= cap) {
            if (cap >= MAX_TEXT) {
                s = dsv_error(DSV_INVALID, "model file %s is larger than %d bytes", path,
                              MAX_TEXT);
                break;
            }
            char *q = realloc(buf, cap * 2);
            if (!q)
                break;
            buf = q;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (!buf)
        s = dsv_error(DSV_NOMEM, "out of memory reading %s", path);
    else if (!s && ferror(f))
        s = dsv_error(DSV_IO, "cannot read model file %s", path);
    fclose(f);
    if (s) {
        free(buf);
        return s;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return dsv_error(DSV_INVALID, "%s: contains a NUL byte: not a model file (binary data?)",
                         path);
    }
    *out = buf;
    return DSV_OK;
}

dsv_status dsv_model_create_from_file(dsv_model **out, const char *name, const dsv_model_options *o)
{
    *out = NULL;
    const char *builtin = dsv_builtin_model_text(name);
    struct stat st;
    bool is_path = strchr(name, '/') || stat(name, &st) == 0;
    if (builtin && !is_path) {
        char source[80];
        snprintf(source, sizeof(source), "%.60s.cfg", name);
        return dsv_model_create_from_text(out, builtin, source, o);
    }
    if (!is_path) {
        char names[256];
        int len = 0;
        for (int i = 0; i < dsv_builtin_model_count() && len < (int)sizeof(names); i++)
            len += snprintf(names + len, sizeof(names) - (size_t)len, "%s%s", i ? ", " : "",
                            dsv_builtin_model_name(i));
        return dsv_error(DSV_INVALID, "no model file or built-in model named '%s' (built-ins: %s)",
                         name, names);
    }
    char *text;
    dsv_status s = read_text(name, &text);
    if (s)
        return s;
    s = dsv_model_create_from_text(out, text, name, o);
    free(text);
    return s;
}

void dsv_model_destroy(dsv_model *m)
{
    if (!m)
        return;
    dsv_graph_destroy(m->g);
    free(m->text);
    free(m->source);
    free(m->mean);
    for (int i = 0; i < m->nclass_names; i++)
        free(m->class_names[i]);
    free(m->class_names);
    free(m);
}

const dsv_model_config *dsv_model_config_of(const dsv_model *m)
{
    return m->has_cfg ? &m->cfg : NULL;
}

const char *dsv_model_text(const dsv_model *m) { return m->text; }
const dsv_model_options *dsv_model_options_of(const dsv_model *m) { return &m->opt; }
dsv_dtype dsv_model_dtype(const dsv_model *m) { return (dsv_dtype)m->opt.dtype; }

dsv_status dsv_model_set_preprocess(dsv_model *m, const float *mean, float scale)
{
    if (!isfinite(scale) || scale == 0)
        return dsv_error(DSV_INVALID, "model: the input scale must be finite and non-zero");
    int64_t n = (int64_t)m->opt.input_dim[0] * m->opt.input_dim[1] * m->opt.input_dim[2];
    float *copy = NULL;
    if (mean) {
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(mean[i]))
                return dsv_error(DSV_INVALID, "model: the mean image has a NaN or Inf");
        if (!(copy = malloc((size_t)n * sizeof(float))))
            return dsv_error(DSV_NOMEM, "model: out of memory");
        memcpy(copy, mean, (size_t)n * sizeof(float));
    }
    free(m->mean);
    m->mean = copy;
    m->scale = scale;
    m->has_preprocess = true;
    return DSV_OK;
}

bool dsv_model_preprocess(const dsv_model *m, const float **mean, float *scale)
{
    if (mean)
        *mean = m->mean;
    if (scale)
        *scale = m->scale;
    return m->has_preprocess;
}

dsv_status dsv_model_set_class_names(dsv_model *m, int n, const char *const *names)
{
    if (n != 0 && n != m->opt.num_classes)
        return dsv_error(DSV_INVALID, "model: %d class names for %d classes", n,
                         m->opt.num_classes);
    char **copy = n ? calloc((size_t)n, sizeof(char *)) : NULL;
    if (n && !copy)
        return dsv_error(DSV_NOMEM, "model: out of memory");
    for (int i = 0; i < n; i++) {
        if (!names[i] || strlen(names[i]) > 255 || !(copy[i] = dsv_strdup_(names[i]))) {
            for (int k = 0; k <= i && k < n; k++)
                free(copy[k]);
            free(copy);
            return dsv_error(names[i] && strlen(names[i]) <= 255 ? DSV_NOMEM : DSV_INVALID,
                             "model: class name %d is missing or longer than 255 bytes", i);
        }
    }
    for (int i = 0; i < m->nclass_names; i++)
        free(m->class_names[i]);
    free(m->class_names);
    m->class_names = copy;
    m->nclass_names = n;
    return DSV_OK;
}

const char *dsv_model_class_name(const dsv_model *m, int i)
{
    return i >= 0 && i < m->nclass_names ? m->class_names[i] : NULL;
}
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

dsv_status dsv_model_set_reg(dsv_model *m, double reg)
{
    if (!(reg >= 0) || !isfinite(reg))
        return dsv_error(DSV_INVALID, "model: reg must be >= 0, got %g", reg);
    m->opt.reg = reg;
    if (m->has_cfg)
        m->cfg.reg = reg;
    return DSV_OK;
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
    return s ? s : dsv_l2_apply(m->g, &m->exec, m->opt.reg, loss);
}

dsv_status dsv_model_loss_l2_deferred(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                                      double *loss)
{
    dsv_status s = dsv_graph_train_step(m->g, &m->exec, x, y, loss);
    return s ? s : dsv_l2_loss(m->g, &m->exec, m->opt.reg, loss);
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
