/*
 * Model files: a network described as INI text in Darknet's style, read with
 * Debian's libinih and built into a graph (graph.h).
 *
 *   [net]                  input shape, classes, dtype, default weight init
 *   [conv] [relu] ...      one section per node, named after the op
 *
 * A node reads the previous node's output unless it says input=NAME; add
 * names its second input with input2=NAME. Nodes see only earlier names, so a
 * file always describes an acyclic graph. docs/model-files.md is the
 * reference; this file must accept exactly what it documents.
 *
 * What must stay true:
 *  - every error names the file and line ("vgg.cfg:12: [conv] conv3:
 *    filters: ...") and the key where there is one; nothing is built from an
 *    invalid file;
 *  - parameters are declared in section order (w then b, gamma then beta), so
 *    the course's networks written as files draw the same initial weights as
 *    they always have;
 *  - the INI syntax is libinih's. This file only feeds it lines: a reader
 *    counts lines and, after each section header, hands inih one extra line
 *    with a key no file can contain (a control character), so that sections
 *    without keys ([relu]) and repeated sections are seen.
 */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "netfile.h"
#include "internal/arrays.h"

#define MAX_LINE 200     /* inih's INI_MAX_LINE in Debian's build */
#define MAX_NAME 64
#define MAX_DIM (1 << 24)
#define MAX_PARAMS (INT64_C(1) << 30) /* 4 GiB of float32 weights, and as much again
                                         for their gradients */
#define SECTION_KEY "\x01" /* injected after each header; see the top */

typedef struct nf_key {
    char *name, *value;
    int line;
    bool used;
} nf_key;

typedef struct nf_sec {
    char *type;
    int line;
    nf_key *keys;
    int nkeys, cap;
} nf_sec;

typedef struct nf_file {
    const char *src; /* file name for messages */
    const char *text;
    size_t pos;
    int line;          /* lines of text handed to inih so far */
    int *map;          /* inih's line number - 1 -> the file's line */
    int nmap, capmap;
    int header_line;   /* > 0: inject the section key next */
    nf_sec *secs;
    int nsecs, capsecs;
    bool failed;       /* a message has been recorded */
} nf_file;

/* ---- reading ----------------------------------------------------------------- */

static dsv_status fail_at(nf_file *f, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static dsv_status fail_at(nf_file *f, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    f->failed = true;
    return dsv_error(DSV_INVALID, "%s:%d: %s", f->src, line, msg);
}

static char *reader(char *buf, int num, void *stream)
{
    nf_file *f = stream;
    if (!dsv_grow_((void **)&f->map, &f->capmap, f->nmap + 1, sizeof(int)))
        return NULL; /* inih then stops; the caller sees f->nmap unchanged */
    if (f->header_line > 0) {
        snprintf(buf, (size_t)num, "%s=%d\n", SECTION_KEY, f->header_line);
        f->map[f->nmap++] = f->header_line;
        f->header_line = 0;
        return buf;
    }
    const char *s = f->text + f->pos;
    if (!*s)
        return NULL;
    const char *e = strchr(s, '\n');
    size_t len = e ? (size_t)(e - s) + 1 : strlen(s);
    /* lines were checked against MAX_LINE before parsing */
    memcpy(buf, s, len);
    buf[len] = '\0';
    f->pos += len;
    f->map[f->nmap++] = ++f->line;
    const char *t = buf;
    if (f->line == 1 && memcmp(t, "\xEF\xBB\xBF", 3) == 0)
        t += 3;
    while (*t == ' ' || *t == '\t')
        t++;
    if (*t == '[')
        f->header_line = f->line;
    return buf;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    nf_file *f = user;
    if (f->failed)
        return 0;
    int line = f->nmap ? f->map[f->nmap - 1] : 0;
    if (strcmp(name, SECTION_KEY) == 0) {
        if (!dsv_grow_((void **)&f->secs, &f->capsecs, f->nsecs + 1, sizeof(nf_sec)))
            return 0;
        nf_sec *s = &f->secs[f->nsecs];
        memset(s, 0, sizeof(*s));
        if (!(s->type = dsv_strdup_(section)))
            return 0;
        s->line = atoi(value);
        f->nsecs++;
        return 1;
    }
    if (f->nsecs == 0) {
        fail_at(f, line, "'%s' comes before any [section]", name);
        return 0;
    }
    nf_sec *s = &f->secs[f->nsecs - 1];
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0) {
            fail_at(f, line, "[%s]: key '%s' is given twice (first on line %d)", s->type,
                    name, s->keys[i].line);
            return 0;
        }
    if (!dsv_grow_((void **)&s->keys, &s->cap, s->nkeys + 1, sizeof(nf_key)))
        return 0;
    nf_key *k = &s->keys[s->nkeys];
    k->name = dsv_strdup_(name);
    k->value = dsv_strdup_(value);
    k->line = line;
    k->used = false;
    if (!k->name || !k->value) {
        free(k->name);
        free(k->value);
        return 0;
    }
    s->nkeys++;
    return 1;
}

static void file_free(nf_file *f)
{
    for (int i = 0; i < f->nsecs; i++) {
        for (int k = 0; k < f->secs[i].nkeys; k++) {
            free(f->secs[i].keys[k].name);
            free(f->secs[i].keys[k].value);
        }
        free(f->secs[i].keys);
        free(f->secs[i].type);
    }
    free(f->secs);
    free(f->map);
}

/* Checks what inih cannot report precisely: control bytes (a binary file) and
 * lines longer than its buffer. */
static dsv_status precheck(nf_file *f)
{
    int line = 1, col = 0;
    for (const unsigned char *p = (const unsigned char *)f->text; *p; p++) {
        if (*p == '\n') {
            line++;
            col = 0;
            continue;
        }
        if (++col >= MAX_LINE - 1)
            return fail_at(f, line, "line longer than %d characters", MAX_LINE - 2);
        if (*p < 0x20 && *p != '\t' && *p != '\r')
            return fail_at(f, line,
                           "control character 0x%02x: not a model file (binary data?)", *p);
    }
    return DSV_OK;
}

static dsv_status parse(nf_file *f)
{
    dsv_status s = precheck(f);
    if (s)
        return s;
    int r = ini_parse_stream(reader, f, handler, f);
    if (f->failed)
        return DSV_INVALID;
    if (r < 0)
        return dsv_error(DSV_NOMEM, "%s: out of memory while reading", f->src);
    if (r > 0) {
        int line = r <= f->nmap ? f->map[r - 1] : f->line;
        return fail_at(f, line, "expected a [section] header or a key=value line");
    }
    if (f->nsecs == 0)
        return fail_at(f, f->line ? f->line : 1,
                       "no sections: a model file starts with [net] (see docs/model-files.md)");
    return DSV_OK;
}

/* ---- keys ---------------------------------------------------------------------- */

typedef struct nf_build {
    nf_file *f;
    dsv_graph *g;
    const nf_sec *sec;   /* section being built */
    const char *node;    /* its node name */
    /* [net] */
    int in[3], classes;
    dsv_dtype dtype;
    int init;            /* nf_init */
    double weight_scale;
    uint64_t seed;
    int dropouts;        /* dropout sections so far (default seeds) */
    /* named values */
    struct nf_name {
        char name[MAX_NAME];
        dsv_value v;
        int line;
        bool used;
        bool is_loss;
    } *names;
    int nnames, capnames;
    dsv_value labels;
} nf_build;

enum nf_init { INIT_SCALE = 0, INIT_HE, INIT_XAVIER, INIT_COUNT };
static const char *const init_names[] = {"scale", "he", "xavier"};
_Static_assert(sizeof(init_names) / sizeof(init_names[0]) == INIT_COUNT,
               "init_names must name every init");

static nf_key *key_find(const nf_sec *s, const char *name)
{
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0) {
            s->keys[i].used = true;
            return &s->keys[i];
        }
    return NULL;
}

/* "[conv] conv3: " or "[net]: " */
static const char *where(const nf_build *b, char *buf, size_t n)
{
    if (b->node)
        snprintf(buf, n, "[%s] %s: ", b->sec->type, b->node);
    else
        snprintf(buf, n, "[%s]: ", b->sec->type);
    return buf;
}

static dsv_status key_error(nf_build *b, const nf_key *k, const char *what)
{
    char w[128];
    return fail_at(b->f, k ? k->line : b->sec->line, "%s%s%s%s", where(b, w, sizeof(w)),
                   k ? k->name : "", k ? ": " : "", what);
}

static dsv_status missing(nf_build *b, const char *key, const char *what)
{
    char w[128];
    return fail_at(b->f, b->sec->line, "%smissing required key '%s' (%s)",
                   where(b, w, sizeof(w)), key, what);
}

/* An integer in [lo, hi]; *out keeps its value when the key is absent. */
static dsv_status key_int(nf_build *b, const char *name, int lo, int hi, bool *given, int *out)
{
    nf_key *k = key_find(b->sec, name);
    if (given)
        *given = k != NULL;
    if (!k)
        return DSV_OK;
    char *end;
    errno = 0;
    long v = strtol(k->value, &end, 10);
    if (end == k->value || *end || errno) {
        char msg[160];
        snprintf(msg, sizeof(msg), "'%.60s' is not a whole number", k->value);
        return key_error(b, k, msg);
    }
    if (v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%ld is out of range (%d..%d)", v, lo, hi);
        return key_error(b, k, msg);
    }
    *out = (int)v;
    return DSV_OK;
}

/* A finite number in (lo, hi] (lo_open) or [lo, hi]. */
static dsv_status key_double(nf_build *b, const char *name, double lo, bool lo_open,
                             double hi, double *out)
{
    nf_key *k = key_find(b->sec, name);
    if (!k)
        return DSV_OK;
    char *end;
    errno = 0;
    double v = strtod(k->value, &end);
    if (end == k->value || *end || errno || !isfinite(v)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "'%.60s' is not a finite number", k->value);
        return key_error(b, k, msg);
    }
    if (v < lo || (lo_open && v == lo) || v > hi) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%g is out of range %s%g, %g]", v, lo_open ? "(" : "[", lo,
                 hi);
        return key_error(b, k, msg);
    }
    *out = v;
    return DSV_OK;
}

static dsv_status key_choice(nf_build *b, const char *name, const char *const *names,
                             int n, int *out)
{
    nf_key *k = key_find(b->sec, name);
    if (!k)
        return DSV_OK;
    for (int i = 0; i < n; i++)
        if (strcmp(k->value, names[i]) == 0) {
            *out = i;
            return DSV_OK;
        }
    char msg[200];
    int len = snprintf(msg, sizeof(msg), "'%.40s' is not one of", k->value);
    for (int i = 0; i < n && len < (int)sizeof(msg); i++)
        len += snprintf(msg + len, sizeof(msg) - (size_t)len, " %s", names[i]);
    return key_error(b, k, msg);
}

/* Every key of the section was read; else names the first unknown one. */
static dsv_status no_unknown_keys(nf_build *b, const char *known)
{
    for (int i = 0; i < b->sec->nkeys; i++)
        if (!b->sec->keys[i].used) {
            char msg[240];
            snprintf(msg, sizeof(msg), "unknown key (%s takes: %s)", b->sec->type, known);
            return key_error(b, &b->sec->keys[i], msg);
        }
    return DSV_OK;
}

/* ---- [net] --------------------------------------------------------------------- */

static dsv_status build_net(nf_build *b, const dsv_model_options *o)
{
    static const char *const dims[3] = {"channels", "height", "width"};
    static const char *const dtypes[] = {"float32", "float64"};
    dsv_status s;
    for (int d = 0; d < 3; d++) {
        bool given;
        int v = 0;
        if ((s = key_int(b, dims[d], 1, MAX_DIM, &given, &v)))
            return s;
        if (given && o->input_dim[d] && v != o->input_dim[d]) {
            char msg[160];
            snprintf(msg, sizeof(msg), "the model takes %d but the data has %d", v,
                     o->input_dim[d]);
            return key_error(b, key_find(b->sec, dims[d]), msg);
        }
        b->in[d] = o->input_dim[d] ? o->input_dim[d] : v;
        if (!b->in[d])
            return missing(b, dims[d], "no dataset gives the input shape");
    }
    bool given;
    int classes = 0;
    if ((s = key_int(b, "classes", 1, MAX_DIM, &given, &classes)))
        return s;
    if (given && o->num_classes && classes != o->num_classes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the model has %d but the data has %d", classes,
                 o->num_classes);
        return key_error(b, key_find(b->sec, "classes"), msg);
    }
    b->classes = o->num_classes ? o->num_classes : classes;
    if (!b->classes)
        return missing(b, "classes", "no dataset gives the number of classes");
    int dt = 0;
    if ((s = key_choice(b, "dtype", dtypes, 2, &dt)))
        return s;
    b->dtype = o->dtype >= 0 ? (dsv_dtype)o->dtype : dt == 1 ? DSV_F64 : DSV_F32;
    b->init = INIT_HE;
    b->weight_scale = 1e-3;
    if ((s = key_choice(b, "init", init_names, INIT_COUNT, &b->init)) ||
        (s = key_double(b, "weight_scale", 0, false, 1e6, &b->weight_scale)))
        return s;
    if (b->init != INIT_SCALE && key_find(b->sec, "weight_scale"))
        return key_error(b, key_find(b->sec, "weight_scale"), "is only used with init=scale");
    return no_unknown_keys(b, "channels, height, width, classes, dtype, init, weight_scale");
}

/* ---- layers -------------------------------------------------------------------- */

static struct nf_name *name_find(nf_build *b, const char *name)
{
    for (int i = 0; i < b->nnames; i++)
        if (strcmp(b->names[i].name, name) == 0)
            return &b->names[i];
    return NULL;
}

/* The value a key (input, input2) names; absent: the previous node's output. */
static dsv_status input_of(nf_build *b, const char *key, bool required, dsv_value *v)
{
    nf_key *k = key_find(b->sec, key);
    if (!k) {
        if (required)
            return missing(b, key, "the name of an earlier layer, or 'input'");
        struct nf_name *prev = &b->names[b->nnames - 1];
        prev->used = true;
        *v = prev->v;
        return DSV_OK;
    }
    struct nf_name *n = name_find(b, k->value);
    if (!n) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "no earlier layer is named '%.60s' (a layer reads only layers above it, "
                 "so there are no cycles)",
                 k->value);
        return key_error(b, k, msg);
    }
    if (n->is_loss)
        return key_error(b, k, "a loss has no output to read");
    n->used = true;
    *v = n->v;
    return DSV_OK;
}

static dsv_status graph_error(nf_build *b, dsv_status s)
{
    char msg[400], w[128];
    snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
    const char *m = msg;
    /* the graph's messages start with "node 'NAME': ", which where() says */
    char pre[MAX_NAME + 16];
    snprintf(pre, sizeof(pre), "node '%s': ", b->node);
    if (strncmp(m, pre, strlen(pre)) == 0)
        m += strlen(pre);
    b->f->failed = true;
    return dsv_error(s, "%s:%d: %s%s", b->f->src, b->sec->line, where(b, w, sizeof(w)), m);
}

/* Weight init for a parameter of fan_in inputs and fan_out outputs per unit. */
static dsv_status weight_init(nf_build *b, int w, int64_t fan_in, int64_t fan_out)
{
    int init = b->init;
    double scale = b->weight_scale;
    dsv_status s;
    nf_key *ws = NULL;
    if ((s = key_choice(b, "init", init_names, INIT_COUNT, &init)) ||
        (s = key_double(b, "weight_scale", 0, false, 1e6, &scale)))
        return s;
    ws = key_find(b->sec, "weight_scale");
    if (ws && init != INIT_SCALE)
        return key_error(b, ws, "is only used with init=scale");
    double std = init == INIT_SCALE ? scale
                 : init == INIT_HE  ? sqrt(2.0 / (double)fan_in)
                                    : sqrt(2.0 / (double)(fan_in + fan_out));
    if ((s = dsv_graph_set_param_std(b->g, w, std)))
        return graph_error(b, s);
    return DSV_OK;
}

static dsv_status add_param(nf_build *b, const char *suffix, int ndim, const int64_t *shape,
                            dsv_param_kind kind, int *id)
{
    char pn[MAX_NAME + 16];
    snprintf(pn, sizeof(pn), "%s.%s", b->node, suffix);
    dsv_status s = dsv_graph_add_param(b->g, pn, ndim, shape, kind, id);
    return s ? graph_error(b, s) : DSV_OK;
}

static dsv_status per_sample(nf_build *b, dsv_value v, int *ndim, int64_t shape[DSV_MAX_DIMS],
                             int64_t *row)
{
    dsv_status s = dsv_graph_value_shape(b->g, v, 1, ndim, shape);
    if (s)
        return graph_error(b, s);
    *row = 1;
    for (int d = 1; d < *ndim; d++)
        *row *= shape[d];
    return DSV_OK;
}

static dsv_status layer_conv(nf_build *b, dsv_node_desc *d)
{
    int nd, filters = 0, size = 0;
    int64_t sh[DSV_MAX_DIMS], row = 0;
    bool given;
    dsv_status s;
    if ((s = per_sample(b, d->x, &nd, sh, &row)))
        return s;
    if (nd != 4)
        return fail_at(b->f, b->sec->line, "[conv] %s: the input must be (N, C, H, W), "
                       "it has %d dimensions", b->node, nd);
    if ((s = key_int(b, "filters", 1, MAX_DIM, &given, &filters)))
        return s;
    if (!given)
        return missing(b, "filters", "the number of output channels");
    if ((s = key_int(b, "size", 1, 4096, &given, &size)))
        return s;
    if (!given)
        return missing(b, "size", "the filter's height and width");
    if ((s = key_int(b, "stride", 1, 4096, NULL, &d->p.stride)) ||
        (s = key_int(b, "pad", 0, 4096, NULL, &d->p.pad)))
        return s;
    int64_t C = sh[1], F = filters;
    if ((s = add_param(b, "w", 4, (int64_t[]){F, C, size, size}, DSV_PARAM_WEIGHT, &d->w)) ||
        (s = add_param(b, "b", 1, &F, DSV_PARAM_BIAS, &d->b)) ||
        (s = weight_init(b, d->w, C * size * size, F * size * size)))
        return s;
    return no_unknown_keys(b, "name, input, filters, size, stride, pad, init, weight_scale");
}

static dsv_status layer_affine(nf_build *b, dsv_node_desc *d)
{
    int nd, outputs = 0;
    int64_t sh[DSV_MAX_DIMS], row = 0;
    dsv_status s;
    if ((s = per_sample(b, d->x, &nd, sh, &row)))
        return s;
    nf_key *k = key_find(b->sec, "outputs");
    if (!k)
        return missing(b, "outputs", "a number, or 'classes'");
    if (strcmp(k->value, "classes") == 0) {
        outputs = b->classes;
    } else {
        k->used = false;
        if ((s = key_int(b, "outputs", 1, MAX_DIM, NULL, &outputs)))
            return s;
    }
    int64_t M = outputs;
    if ((s = add_param(b, "w", 2, (int64_t[]){row, M}, DSV_PARAM_WEIGHT, &d->w)) ||
        (s = add_param(b, "b", 1, &M, DSV_PARAM_BIAS, &d->b)) ||
        (s = weight_init(b, d->w, row, M)))
        return s;
    return no_unknown_keys(b, "name, input, outputs, init, weight_scale");
}

static dsv_status layer_pool(nf_build *b, dsv_node_desc *d)
{
    int size = 2, nd;
    bool given_stride, global = false;
    int64_t sh[DSV_MAX_DIMS], row = 0;
    dsv_status s;
    if ((s = per_sample(b, d->x, &nd, sh, &row)))
        return s;
    if (d->op == DSV_OP_AVG_POOL) {
        int gl = 0;
        if ((s = key_int(b, "global", 0, 1, NULL, &gl)))
            return s;
        global = gl == 1;
    }
    if ((s = key_int(b, "size", 1, 4096, NULL, &size)))
        return s;
    d->p.pool_height = d->p.pool_width = size;
    d->p.stride = size;
    if ((s = key_int(b, "stride", 1, 4096, &given_stride, &d->p.stride)))
        return s;
    if (global) {
        if (key_find(b->sec, "size") || given_stride)
            return key_error(b, key_find(b->sec, "global"),
                             "global=1 pools the whole plane: leave out size and stride");
        if (nd != 4)
            return fail_at(b->f, b->sec->line, "[%s] %s: the input must be (N, C, H, W)",
                           b->sec->type, b->node);
        d->p.pool_height = (int)sh[2];
        d->p.pool_width = (int)sh[3];
        d->p.stride = 1;
    }
    return no_unknown_keys(b, d->op == DSV_OP_AVG_POOL ? "name, input, size, stride, global"
                                                       : "name, input, size, stride");
}

static dsv_status layer_norm(nf_build *b, dsv_node_desc *d)
{
    int nd;
    int64_t sh[DSV_MAX_DIMS], row = 0;
    dsv_status s;
    if ((s = per_sample(b, d->x, &nd, sh, &row)))
        return s;
    int64_t C = sh[1];
    const dsv_op_info *info = dsv_op_get_info(d->op);
    if (d->op == DSV_OP_SPATIAL_GROUPNORM) {
        bool given;
        if ((s = key_int(b, "groups", 1, MAX_DIM, &given, &d->p.groups)))
            return s;
        if (!given)
            return missing(b, "groups", "the number of channel groups");
    }
    if ((s = key_double(b, "eps", 0, true, 1, &d->p.eps)))
        return s;
    if (info->running_stats &&
        (s = key_double(b, "momentum", 0, false, 1, &d->p.momentum)))
        return s;
    if ((s = add_param(b, "gamma", 1, &C, DSV_PARAM_GAMMA, &d->w)) ||
        (s = add_param(b, "beta", 1, &C, DSV_PARAM_BETA, &d->b)))
        return s;
    if (info->running_stats) {
        char mn[MAX_NAME + 16], vn[MAX_NAME + 16];
        snprintf(mn, sizeof(mn), "%s.running_mean", b->node);
        snprintf(vn, sizeof(vn), "%s.running_var", b->node);
        if ((s = dsv_graph_add_buffer(b->g, mn, C, 0.0, &d->running_mean)) ||
            (s = dsv_graph_add_buffer(b->g, vn, C, 0.0, &d->running_var)))
            return graph_error(b, s);
        return no_unknown_keys(b, "name, input, eps, momentum");
    }
    return no_unknown_keys(b, d->op == DSV_OP_SPATIAL_GROUPNORM ? "name, input, groups, eps"
                                                                : "name, input, eps");
}

static dsv_status layer_dropout(nf_build *b, dsv_node_desc *d)
{
    dsv_status s;
    if (!key_find(b->sec, "keep"))
        return missing(b, "keep", "the probability of keeping a unit, in (0, 1]");
    if ((s = key_double(b, "keep", 0, true, 1, &d->p.p)))
        return s;
    /* default seeds: the k-th dropout of a model seeded with S uses
       (S ^ 0x5DEECE66D) + k, as the course's FullyConnectedNet always has */
    d->p.seed = (b->seed ^ 0x5DEECE66Dull) + (uint64_t)b->dropouts++;
    nf_key *k = key_find(b->sec, "seed");
    if (k) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(k->value, &end, 10);
        if (end == k->value || *end || errno || k->value[0] == '-')
            return key_error(b, k, "is not a whole number >= 0");
        d->p.seed = v;
    }
    return no_unknown_keys(b, "name, input, keep, seed");
}

/* One node section. */
static dsv_status build_layer(nf_build *b, int index, bool last)
{
    const nf_sec *sec = b->sec;
    dsv_op op;
    if (dsv_op_from_name(sec->type, &op) != DSV_OK || strcmp(sec->type, "net") == 0) {
        char known[400];
        int len = snprintf(known, sizeof(known), "%s", "");
        for (int i = 0; i < DSV_OP_COUNT; i++)
            len += snprintf(known + len, sizeof(known) - (size_t)len, "%s%s", i ? ", " : "",
                            dsv_op_get_info((dsv_op)i)->name);
        return fail_at(b->f, sec->line, "unknown section [%s] (sections: net, then %s)",
                       strcmp(sec->type, "net") == 0 ? "net] again: [net" : sec->type,
                       known);
    }
    const dsv_op_info *info = dsv_op_get_info(op);
    char node[MAX_NAME];
    nf_key *nk = key_find(sec, "name");
    if (nk) {
        size_t n = strlen(nk->value);
        bool ok = n > 0 && n < MAX_NAME;
        for (size_t i = 0; ok && i < n; i++) {
            char c = nk->value[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        }
        b->node = NULL;
        if (!ok)
            return key_error(b, nk, "names are 1 to 63 letters, digits, '_' or '-'");
        if (strcmp(nk->value, "input") == 0)
            return key_error(b, nk, "'input' is the network's input; pick another name");
        snprintf(node, sizeof(node), "%s", nk->value);
    } else {
        snprintf(node, sizeof(node), "%s%d", info->name, index);
    }
    b->node = node;
    struct nf_name *dup = name_find(b, node);
    if (dup) {
        if (nk) {
            char msg[120];
            snprintf(msg, sizeof(msg), "'%s' is taken by the layer on line %d", node, dup->line);
            return key_error(b, nk, msg);
        }
        return fail_at(b->f, sec->line, "[%s]: the default name '%s' is taken (line %d); "
                       "give this layer a name=", sec->type, node, dup->line);
    }
    if (info->is_loss && !last)
        return fail_at(b->f, sec->line, "[%s] %s: the loss must be the last section",
                       sec->type, node);

    dsv_node_desc d = dsv_node_desc_make(op, node, DSV_NO_VALUE);
    dsv_status s;
    if ((s = input_of(b, "input", false, &d.x)))
        return s;
    if (info->num_inputs == 2 && (s = input_of(b, "input2", true, &d.x2)))
        return s;
    switch (op) {
    case DSV_OP_CONV: s = layer_conv(b, &d); break;
    case DSV_OP_AFFINE: s = layer_affine(b, &d); break;
    case DSV_OP_MAX_POOL:
    case DSV_OP_AVG_POOL: s = layer_pool(b, &d); break;
    case DSV_OP_DROPOUT: s = layer_dropout(b, &d); break;
    default:
        if (info->has_weights)
            s = layer_norm(b, &d);
        else
            s = no_unknown_keys(b, info->num_inputs == 2 ? "name, input, input2"
                                                         : "name, input");
        break;
    }
    if (s)
        return s;
    if (!info->is_loss && last)
        return fail_at(b->f, sec->line,
                       "[%s] %s: the last section must be a loss ([softmax_loss] or "
                       "[svm_loss])", sec->type, node);
    if (info->is_loss) {
        int nd;
        int64_t sh[DSV_MAX_DIMS], row = 0;
        if ((s = per_sample(b, d.x, &nd, sh, &row)))
            return s;
        if (nd != 2 || row != b->classes)
            return fail_at(b->f, sec->line, "[%s] %s: the scores have %lld values per "
                           "sample, but the model has %d classes", sec->type, node,
                           (long long)row, b->classes);
        d.y = b->labels;
    }
    dsv_value out;
    if ((s = dsv_graph_add_node(b->g, &d, &out)))
        return graph_error(b, s);
    if (!dsv_grow_((void **)&b->names, &b->capnames, b->nnames + 1, sizeof(*b->names)))
        return dsv_error(DSV_NOMEM, "%s: out of memory", b->f->src);
    struct nf_name *n = &b->names[b->nnames++];
    snprintf(n->name, sizeof(n->name), "%s", node);
    n->v = out;
    n->line = sec->line;
    n->used = false;
    n->is_loss = info->is_loss;
    return DSV_OK;
}

static dsv_status build(nf_build *b, const dsv_model_options *o)
{
    nf_file *f = b->f;
    b->sec = &f->secs[0];
    b->node = NULL;
    if (strcmp(f->secs[0].type, "net") != 0)
        return fail_at(f, f->secs[0].line, "the first section must be [net], not [%s]",
                       f->secs[0].type);
    dsv_status s;
    if ((s = build_net(b, o)))
        return s;
    if (f->nsecs < 2)
        return fail_at(f, f->secs[0].line, "[net] is followed by no layers");
    if ((s = dsv_graph_create(&b->g, b->dtype)))
        return s;
    dsv_value x;
    int64_t in[3] = {b->in[0], b->in[1], b->in[2]};
    if ((s = dsv_graph_input(b->g, 3, in, &x)) || (s = dsv_graph_labels(b->g, &b->labels)))
        return graph_error(b, s);
    if (!dsv_grow_((void **)&b->names, &b->capnames, 1, sizeof(*b->names)))
        return dsv_error(DSV_NOMEM, "%s: out of memory", f->src);
    snprintf(b->names[0].name, MAX_NAME, "input");
    b->names[0].v = x;
    b->names[0].line = f->secs[0].line;
    b->names[0].used = false;
    b->names[0].is_loss = false;
    b->nnames = 1;
    for (int i = 1; i < f->nsecs; i++) {
        b->sec = &f->secs[i];
        b->node = NULL;
        if ((s = build_layer(b, i, i == f->nsecs - 1)))
            return s;
    }
    for (int i = 1; i < b->nnames; i++)
        if (!b->names[i].used && !b->names[i].is_loss)
            return fail_at(f, b->names[i].line,
                           "layer '%s': its output is never used (only the loss may end "
                           "the network; the next layer reads it unless it says input=)",
                           b->names[i].name);
    if (dsv_graph_num_param_values(b->g) > MAX_PARAMS)
        return fail_at(f, f->secs[0].line,
                       "the network has %lld parameter values; the engine takes at most %lld",
                       (long long)dsv_graph_num_param_values(b->g), (long long)MAX_PARAMS);
    if ((s = dsv_graph_finalize(b->g))) {
        char msg[512]; /* dsv_error writes the buffer dsv_errmsg reads */
        snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
        return dsv_error(s, "%s: %s", f->src, msg);
    }
    return DSV_OK;
}

/* ---- entry ---------------------------------------------------------------------- */

dsv_status dsv_netfile_build(const char *text, const char *source,
                             const dsv_model_options *o, dsv_graph **g,
                             dsv_netfile_info *info)
{
    *g = NULL;
    nf_file f;
    memset(&f, 0, sizeof(f));
    f.src = source ? source : "<model>";
    f.text = text;
    nf_build b;
    memset(&b, 0, sizeof(b));
    b.f = &f;
    b.seed = o->seed;
    dsv_status s = parse(&f);
    if (!s)
        s = build(&b, o);
    if (s) {
        dsv_graph_destroy(b.g);
    } else {
        *g = b.g;
        if (info) {
            memcpy(info->input_dim, b.in, sizeof(b.in));
            info->num_classes = b.classes;
            info->dtype = b.dtype;
        }
    }
    free(b.names);
    file_free(&f);
    return s;
}
