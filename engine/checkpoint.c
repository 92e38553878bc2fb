/*
 * Checkpoints: the Solver's whole state in one versioned little-endian file
 * (layout in docs/checkpoint.md), protected by a CRC-32.
 *
 * What must stay true: a checkpoint holds everything that influences the
 * training trajectory, so a resumed run continues bit for bit. Files are
 * written atomically (temporary file in the same directory, fsync, rename,
 * fsync of the directory), so the previous checkpoint survives any failure or
 * kill. A file is read whole (its length comes from fstat), its magic,
 * version, length and checksum are checked before anything is parsed, and
 * every count is checked against the bytes left before it is used: no read
 * goes past the file and no allocation is sized by the file's contents.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "dasecv/graph.h"
#include "internal/graph_limits.h"
#include "solver_priv.h"

#define CKPT_MAGIC "DSVCKPT\x1a"
#define CKPT_VERSION 3u
#define CKPT_HEADER 24 /* magic, version, reserved, length */

/* ---- little-endian writer ------------------------------------------------ */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put_bytes(wbuf *b, const void *src, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n)
            c *= 2;
        uint8_t *p = realloc(b->p, c);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u64(wbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put_bytes(b, x, 8);
}

static void put_u32(wbuf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put_bytes(b, x, 4);
}

static void put_i32(wbuf *b, int32_t v) { put_u32(b, (uint32_t)v); }
static void put_i64(wbuf *b, int64_t v) { put_u64(b, (uint64_t)v); }

static void put_f64(wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}

/* n values of dtype dt (float32 or float64), or of float64 for histories. */
static void put_block(wbuf *b, const void *v, int64_t n, dsv_dtype dt)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    put_bytes(b, v, (size_t)n * dsv_dtype_size(dt));
#else
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSV_F32) {
            uint32_t u;
            memcpy(&u, (const float *)v + i, 4);
            put_u32(b, u);
        } else {
            put_f64(b, ((const double *)v)[i]);
        }
    }
#endif
}

/* ---- bounded reader ------------------------------------------------------ */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, pos;
    const char *path;
    dsv_status st; /* first error, sticky */
} rbuf;

static int take(rbuf *r, size_t n, const char *what, const uint8_t **out)
{
    if (r->st)
        return 0;
    if (n > r->n - r->pos) {
        r->st = dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: %s runs past the end of the file",
                          r->path, what);
        return 0;
    }
    *out = r->p + r->pos;
    r->pos += n;
    return 1;
}

static uint64_t get_u64(rbuf *r, const char *what)
{
    const uint8_t *x;
    uint64_t v = 0;
    if (take(r, 8, what, &x))
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)x[i] << (8 * i);
    return v;
}

static uint32_t get_u32(rbuf *r, const char *what)
{
    const uint8_t *x;
    uint32_t v = 0;
    if (take(r, 4, what, &x))
        for (int i = 0; i < 4; i++)
            v |= (uint32_t)x[i] << (8 * i);
    return v;
}

static int32_t get_i32(rbuf *r, const char *what) { return (int32_t)get_u32(r, what); }
static int64_t get_i64(rbuf *r, const char *what) { return (int64_t)get_u64(r, what); }

static double get_f64(rbuf *r, const char *what)
{
    uint64_t u = get_u64(r, what);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* A block of n values of dt: n is checked against the bytes left first. */
static const uint8_t *get_block(rbuf *r, int64_t n, dsv_dtype dt, const char *what)
{
    const uint8_t *x = NULL;
    size_t es = dsv_dtype_size(dt);
    if (r->st)
        return NULL;
    if (n < 0) {
        r->st = dsv_error(DSV_CORRUPT,
                          "checkpoint %s is corrupt: the count of %s is negative (%lld)",
                          r->path, what, (long long)n);
        return NULL;
    }
    if ((uint64_t)n > (r->n - r->pos) / es) {
        r->st = dsv_error(DSV_CORRUPT,
                          "checkpoint %s is corrupt: %s claims %lld values, more than the file holds",
                          r->path, what, (long long)n);
        return NULL;
    }
    take(r, (size_t)n * es, what, &x);
    return x;
}

static void copy_block(void *dst, const uint8_t *src, int64_t n, dsv_dtype dt)
{
    if (n == 0)
        return;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, (size_t)n * dsv_dtype_size(dt));
#else
    rbuf r = {.p = src, .n = (size_t)n * dsv_dtype_size(dt)};
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSV_F32) {
            uint32_t u = get_u32(&r, "");
            memcpy((float *)dst + i, &u, 4);
        } else {
            ((double *)dst)[i] = get_f64(&r, "");
        }
    }
#endif
}

/* ---- contents ------------------------------------------------------------ */

/* Everything a checkpoint holds; blocks point into the file's bytes. */
typedef struct ckpt {
    uint32_t version;
    dsv_model_config mc;      /* version 1; version 2 when has_config */
    int has_config;
    dsv_model_options mo;     /* version 2 */
    dsv_dtype dtype;
    const uint8_t *text;      /* version 2: the model file, text_n bytes */
    uint64_t text_n;
    int has_pre;
    float scale;
    const uint8_t *mean;      /* f32 (C, H, W) or NULL */
    uint32_t nclasses;
    const uint8_t *class_names; /* nclasses times (u32 length, bytes) */
    int64_t nparams, nbuffers;
    const uint8_t *params, *buffers;
    int has_best;
    double best_val_acc;
    const uint8_t *best_params, *best_buffers;
    dsv_optim_config optim; /* current learning rate */
    int64_t t;
    uint32_t nstates;
    const uint8_t *state[2];
    dsv_solver_config sc; /* sc.optim: initial config */
    int64_t train_n;
    uint64_t rng, rng_epoch;
    int64_t iteration;
    int32_t epoch;
    uint64_t model_steps;
    int64_t loss_n;
    const uint8_t *loss;
    int32_t acc_n;
    const uint8_t *train_acc, *val_acc;
    const uint8_t *plan; /* version 3: the execution plan's text, plan_n bytes */
    uint64_t plan_n;
} ckpt;

static void put_model_config(wbuf *b, const dsv_model_config *c)
{
    put_u32(b, (uint32_t)c->kind);
    put_u32(b, (uint32_t)c->dtype);
    for (int i = 0; i < 3; i++)
        put_i32(b, c->input_dim[i]);
    put_i32(b, c->num_classes);
    put_f64(b, c->weight_scale);
    put_f64(b, c->reg);
    put_u64(b, c->seed);
    put_i32(b, c->num_filters);
    put_i32(b, c->filter_size);
    put_i32(b, c->hidden_dim);
    put_i32(b, c->num_hidden);
    for (int i = 0; i < DSV_MAX_HIDDEN; i++)
        put_i32(b, c->hidden_dims[i]);
    put_u32(b, (uint32_t)c->normalization);
    put_f64(b, c->dropout_keep);
    put_i32(b, c->res_channels);
    put_i32(b, c->res_blocks);
}

static void get_model_config(rbuf *r, dsv_model_config *c)
{
    const char *w = "the model configuration";
    memset(c, 0, sizeof(*c));
    c->kind = (dsv_model_kind)get_u32(r, w);
    c->dtype = (dsv_dtype)get_u32(r, w);
    for (int i = 0; i < 3; i++)
        c->input_dim[i] = get_i32(r, w);
    c->num_classes = get_i32(r, w);
    c->weight_scale = get_f64(r, w);
    c->reg = get_f64(r, w);
    c->seed = get_u64(r, w);
    c->num_filters = get_i32(r, w);
    c->filter_size = get_i32(r, w);
    c->hidden_dim = get_i32(r, w);
    c->num_hidden = get_i32(r, w);
    for (int i = 0; i < DSV_MAX_HIDDEN; i++)
        c->hidden_dims[i] = get_i32(r, w);
    c->normalization = (dsv_norm)get_u32(r, w);
    c->dropout_keep = get_f64(r, w);
    c->res_channels = get_i32(r, w);
    c->res_blocks = get_i32(r, w);
}

static void put_optim(wbuf *b, const dsv_optim_config *o)
{
    put_u32(b, (uint32_t)o->rule);
    put_f64(b, o->learning_rate);
    put_f64(b, o->momentum);
    put_f64(b, o->decay_rate);
    put_f64(b, o->beta1);
    put_f64(b, o->beta2);
    put_f64(b, o->epsilon);
}

static void get_optim(rbuf *r, dsv_optim_config *o)
{
    const char *w = "the optimizer configuration";
    o->rule = (dsv_update_rule)get_u32(r, w);
    o->learning_rate = get_f64(r, w);
    o->momentum = get_f64(r, w);
    o->decay_rate = get_f64(r, w);
    o->beta1 = get_f64(r, w);
    o->beta2 = get_f64(r, w);
    o->epsilon = get_f64(r, w);
}

/* Version 2's model section: options, the model file's text, the input
 * preprocessing and the class names (docs/checkpoint.md). */
static void put_model(wbuf *b, const dsv_model *m)
{
    const dsv_model_options *o = dsv_model_options_of(m);
    put_u32(b, (uint32_t)o->dtype);
    for (int i = 0; i < 3; i++)
        put_i32(b, o->input_dim[i]);
    put_i32(b, o->num_classes);
    put_u64(b, o->seed);
    put_f64(b, o->reg);
    const dsv_model_config *mc = dsv_model_config_of(m);
    put_u32(b, mc != NULL);
    if (mc)
        put_model_config(b, mc);
    const char *text = dsv_model_text(m);
    put_u64(b, strlen(text));
    put_bytes(b, text, strlen(text));
    const float *mean;
    float scale;
    bool pre = dsv_model_preprocess(m, &mean, &scale);
    put_u32(b, pre ? (mean ? 2u : 1u) : 0u);
    if (pre) {
        put_block(b, &scale, 1, DSV_F32);
        if (mean)
            put_block(b, mean, (int64_t)o->input_dim[0] * o->input_dim[1] * o->input_dim[2],
                      DSV_F32);
    }
    uint32_t nc = dsv_model_class_name(m, 0) ? (uint32_t)o->num_classes : 0;
    put_u32(b, nc);
    for (uint32_t i = 0; i < nc; i++) {
        const char *name = dsv_model_class_name(m, (int)i);
        put_u32(b, (uint32_t)strlen(name));
        put_bytes(b, name, strlen(name));
    }
}

static dsv_status get_model(rbuf *r, ckpt *k)
{
    const char *w = "the model section";
    k->mo = dsv_model_options_default();
    uint32_t dt = get_u32(r, w);
    k->mo.dtype = (int)dt;
    for (int i = 0; i < 3; i++)
        k->mo.input_dim[i] = get_i32(r, w);
    k->mo.num_classes = get_i32(r, w);
    k->mo.seed = get_u64(r, w);
    k->mo.reg = get_f64(r, w);
    k->has_config = get_u32(r, w) == 1;
    if (k->has_config)
        get_model_config(r, &k->mc);
    k->text_n = get_u64(r, "the model text");
    if (!r->st && k->text_n > r->n - r->pos)
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: the model text runs past the end",
                         r->path);
    if (!r->st && !take(r, (size_t)k->text_n, "the model text", &k->text))
        return r->st;
    if (r->st)
        return r->st;
    k->dtype = (dsv_dtype)dt;
    if ((dt != DSV_F32 && dt != DSV_F64) || k->mo.num_classes < 1 || k->mo.input_dim[0] < 1 ||
        k->mo.input_dim[1] < 1 || k->mo.input_dim[2] < 1 || k->mo.input_dim[0] > (1 << 24) ||
        k->mo.input_dim[1] > (1 << 24) || k->mo.input_dim[2] > (1 << 24) ||
        k->mo.num_classes > (1 << 24))
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: invalid model options", r->path);
    uint32_t pre = get_u32(r, "the preprocessing");
    k->has_pre = pre != 0;
    if (!r->st && pre > 2)
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: preprocessing flag %u",
                         r->path, pre);
    if (pre) {
        const uint8_t *sc = get_block(r, 1, DSV_F32, "the preprocessing");
        if (sc)
            copy_block(&k->scale, sc, 1, DSV_F32);
        if (pre == 2) {
            int64_t n = (int64_t)k->mo.input_dim[0] * k->mo.input_dim[1] * k->mo.input_dim[2];
            k->mean = get_block(r, n, DSV_F32, "the mean image");
        }
    }
    k->nclasses = get_u32(r, "the class names");
    k->class_names = r->p + r->pos;
    for (uint32_t i = 0; i < k->nclasses && !r->st; i++) {
        uint32_t len = get_u32(r, "the class names");
        const uint8_t *name;
        if (!r->st && (len > 255 || !take(r, len, "the class names", &name)))
            return r->st ? r->st
                         : dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: a class name of "
                                     "%u bytes", r->path, len);
    }
    return r->st;
}

/* Serialises s into b (without the trailing checksum); plan is the
 * execution plan's text (graph.h). */
static void encode(wbuf *b, const dsv_solver *s, const char *plan)
{
    dsv_model *m = s->m;
    dsv_dtype dt = s->dtype;

    put_bytes(b, CKPT_MAGIC, 8);
    put_u32(b, CKPT_VERSION);
    put_u32(b, 0);
    put_u64(b, 0); /* total length, patched in by the caller */

    put_model(b, m);
    put_i64(b, s->nparams);
    put_i64(b, s->nbuffers);
    put_block(b, s->swapped ? s->last_params : dsv_model_params(m), s->nparams, dt);
    put_block(b, s->swapped ? s->last_buffers : dsv_model_buffers(m), s->nbuffers, dt);
    put_u32(b, (uint32_t)s->has_best);
    put_f64(b, s->best_val_acc);
    if (s->has_best) {
        put_block(b, s->best_params, s->nparams, dt);
        put_block(b, s->best_buffers, s->nbuffers, dt);
    }

    dsv_optimizer *o = s->opt;
    put_optim(b, dsv_optimizer_config(o));
    put_i64(b, *dsv_optimizer_step_count(o));
    put_u32(b, (uint32_t)dsv_optimizer_num_states(o));
    for (int k = 0; k < dsv_optimizer_num_states(o); k++)
        put_block(b, dsv_optimizer_state(o, k), s->nparams, dt);

    const dsv_solver_config *c = &s->cfg;
    put_optim(b, &c->optim);
    put_f64(b, c->lr_decay);
    put_i32(b, c->batch_size);
    put_i32(b, c->num_epochs);
    put_i64(b, c->num_train_samples);
    put_i64(b, c->num_val_samples);
    put_u64(b, c->seed);
    put_i32(b, c->print_every);
    put_i64(b, s->train->n);

    put_u64(b, s->rng);
    put_u64(b, s->rng_epoch);
    put_i64(b, s->iteration);
    put_i32(b, s->epoch);
    put_u64(b, dsv_model_train_steps(m));

    put_i64(b, s->loss_n);
    put_block(b, s->loss_hist, s->loss_n, DSV_F64);
    put_i32(b, s->acc_n);
    put_block(b, s->train_acc, s->acc_n, DSV_F64);
    put_block(b, s->val_acc, s->acc_n, DSV_F64);

    put_u64(b, strlen(plan));
    put_bytes(b, plan, strlen(plan));
}

static dsv_status decode(rbuf *r, ckpt *k)
{
    memset(k, 0, sizeof(*k));
    r->pos = 8;
    k->version = get_u32(r, "the version");
    r->pos = CKPT_HEADER;
    dsv_dtype dt;
    if (k->version == 1) {
        get_model_config(r, &k->mc);
        k->has_config = 1;
        dt = k->dtype = k->mc.dtype;
        if (!r->st && dt != DSV_F32 && dt != DSV_F64)
            return dsv_error(DSV_CORRUPT,
                             "checkpoint %s is corrupt: dtype %u is not float32/float64",
                             r->path, (unsigned)dt);
    } else {
        dsv_status st = get_model(r, k);
        if (st)
            return st;
        dt = k->dtype;
    }
    k->nparams = get_i64(r, "the parameter count");
    k->nbuffers = get_i64(r, "the buffer count");
    k->params = get_block(r, k->nparams, dt, "the parameters");
    k->buffers = get_block(r, k->nbuffers, dt, "the buffers");
    k->has_best = get_u32(r, "the best-parameters flag") != 0;
    k->best_val_acc = get_f64(r, "the best validation accuracy");
    if (k->has_best) {
        k->best_params = get_block(r, k->nparams, dt, "the best parameters");
        k->best_buffers = get_block(r, k->nbuffers, dt, "the best buffers");
    }
    get_optim(r, &k->optim);
    k->t = get_i64(r, "the optimizer step count");
    k->nstates = get_u32(r, "the optimizer state count");
    if (!r->st && k->nstates > 2)
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: %u optimizer state blocks",
                         r->path, k->nstates);
    for (uint32_t i = 0; i < k->nstates; i++)
        k->state[i] = get_block(r, k->nparams, dt, "the optimizer state");

    const char *w = "the solver configuration";
    k->sc = dsv_solver_config_default();
    get_optim(r, &k->sc.optim);
    k->sc.lr_decay = get_f64(r, w);
    k->sc.batch_size = get_i32(r, w);
    k->sc.num_epochs = get_i32(r, w);
    k->sc.num_train_samples = get_i64(r, w);
    k->sc.num_val_samples = get_i64(r, w);
    k->sc.seed = get_u64(r, w);
    k->sc.print_every = get_i32(r, w);
    k->train_n = get_i64(r, w);

    k->rng = get_u64(r, "the RNG state");
    k->rng_epoch = get_u64(r, "the RNG state");
    k->iteration = get_i64(r, "the counters");
    k->epoch = get_i32(r, "the counters");
    k->model_steps = get_u64(r, "the counters");

    k->loss_n = get_i64(r, "the loss history");
    k->loss = get_block(r, k->loss_n, DSV_F64, "the loss history");
    k->acc_n = get_i32(r, "the accuracy history");
    k->train_acc = get_block(r, k->acc_n, DSV_F64, "the accuracy history");
    k->val_acc = get_block(r, k->acc_n, DSV_F64, "the accuracy history");
    if (k->version >= 3) {
        k->plan_n = get_u64(r, "the execution plan");
        if (!r->st && k->plan_n > r->n - r->pos)
            return dsv_error(DSV_CORRUPT,
                             "checkpoint %s is corrupt: the execution plan runs past the end",
                             r->path);
        if (!r->st)
            take(r, (size_t)k->plan_n, "the execution plan", &k->plan);
    }
    if (r->st)
        return r->st;
    if (r->pos != r->n - 4)
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: %zu unexpected bytes before the checksum",
                         r->path, r->n - 4 - r->pos);
    return DSV_OK;
}

/* ---- files --------------------------------------------------------------- */

static dsv_status write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return DSV_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return DSV_OK;
}

/* Writes bytes to path atomically: a unique temporary file next to it,
 * fsync, rename over path, fsync of the directory. On failure the temporary
 * file is removed and path is untouched. */
static dsv_status write_atomic(const char *path, const uint8_t *p, size_t n)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return dsv_error(DSV_IO, "cannot write checkpoint %s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return dsv_error(DSV_IO, "cannot write checkpoint %s: cannot create a temporary file: %s",
                         path, strerror(errno));
    if (fchmod(fd, 0644) != 0) {
        /* mkstemp's 0600 is only less convenient, not wrong */
    }
    const char *step = "write";
    int ok = write_all(fd, p, n) == DSV_OK;
    int err = errno;
    if (ok && fsync(fd) != 0)
        ok = 0, step = "fsync", err = errno;
    if (close(fd) != 0 && ok)
        ok = 0, step = "close", err = errno;
    if (ok && rename(tmp, path) != 0)
        ok = 0, step = "rename", err = errno;
    if (!ok) {
        unlink(tmp);
        return dsv_error(DSV_IO, "cannot write checkpoint %s: %s failed: %s", path, step,
                         strerror(err));
    }
    /* Make the rename itself durable. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        int r = fsync(dfd);
        err = errno;
        close(dfd);
        if (r != 0 && err != EINVAL)
            return dsv_error(DSV_IO, "checkpoint %s written but its directory fsync failed: %s",
                             path, strerror(err));
    }
    return DSV_OK;
}

dsv_status dsv_checkpoint_save(const dsv_solver *s, const char *path)
{
    if (!s || !path)
        return dsv_error(DSV_INVALID, "checkpoint_save: solver and path are required");
    char *plan;
    dsv_status pst = dsv_graph_plan_text(dsv_model_graph(s->m), &plan);
    if (pst)
        return pst;
    wbuf b = {0};
    encode(&b, s, plan);
    free(plan);
    put_u32(&b, 0); /* room for the checksum */
    if (b.oom) {
        free(b.p);
        return dsv_error(DSV_NOMEM, "cannot write checkpoint %s: out of memory", path);
    }
    for (int i = 0; i < 8; i++)
        b.p[16 + i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    size_t body = b.n - 4;
    for (size_t off = 0; off < body;) {
        size_t chunk = body - off > (1u << 30) ? (1u << 30) : body - off;
        crc = (uint32_t)crc32(crc, b.p + off, (uInt)chunk);
        off += chunk;
    }
    for (int i = 0; i < 4; i++)
        b.p[body + i] = (uint8_t)(crc >> (8 * i));
    dsv_status st = write_atomic(path, b.p, b.n);
    free(b.p);
    return st;
}

/* Reads path whole and checks magic, version, length and checksum. */
static dsv_status read_checked(const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is refused, not waited on */
    if (fd < 0)
        return dsv_error(DSV_IO, "cannot open checkpoint %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsv_error(DSV_IO, "checkpoint %s is not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *p = malloc(n ? n : 1);
    if (!p) {
        close(fd);
        return dsv_error(DSV_NOMEM, "checkpoint %s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    dsv_status st = DSV_OK;
    rbuf r = {.p = p, .n = got, .path = path};
    if (got < 8 || memcmp(p, CKPT_MAGIC, 8) != 0) {
        st = dsv_error(DSV_CORRUPT, "%s is not a dasecv checkpoint (bad magic)", path);
        goto fail;
    }
    if (got < CKPT_HEADER + 4) {
        st = dsv_error(DSV_CORRUPT, "checkpoint %s is truncated: %zu bytes", path, got);
        goto fail;
    }
    r.pos = 8;
    uint32_t version = get_u32(&r, "the version");
    (void)get_u32(&r, "the header");
    uint64_t length = get_u64(&r, "the length");
    if (version == 0 || version > CKPT_VERSION) {
        st = dsv_error(DSV_CORRUPT,
                       "checkpoint %s has format version %u; this build reads version %u",
                       path, version, CKPT_VERSION);
        goto fail;
    }
    if (length != got) {
        st = dsv_error(DSV_CORRUPT, "checkpoint %s is %s: %zu bytes, its header says %llu",
                       path, got < length ? "truncated" : "too long", got,
                       (unsigned long long)length);
        goto fail;
    }
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < got - 4;) {
        size_t chunk = got - 4 - off > (1u << 30) ? (1u << 30) : got - 4 - off;
        crc = (uint32_t)crc32(crc, p + off, (uInt)chunk);
        off += chunk;
    }
    r.pos = got - 4;
    uint32_t stored = get_u32(&r, "the checksum");
    if (crc != stored) {
        st = dsv_error(DSV_CORRUPT,
                       "checkpoint %s is corrupt: checksum mismatch (stored %08x, computed %08x)",
                       path, stored, crc);
        goto fail;
    }
    *data = p;
    *len = got;
    return DSV_OK;
fail:
    free(p);
    return st;
}

/* The model k describes: version 1 holds a course configuration, version 2
 * the model file's text and options. */
static dsv_status build_model(const char *path, const ckpt *k, dsv_model **m)
{
    dsv_status st;
    if (k->has_config) {
        if ((st = dsv_model_config_check(&k->mc))) {
            char msg[400];
            snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
            return dsv_error(DSV_CORRUPT,
                             "checkpoint %s holds an invalid model configuration: %s", path,
                             msg);
        }
        dsv_graph_limit_blocks_(k->nparams, k->nbuffers);
        st = dsv_model_create(m, &k->mc);
        dsv_graph_limit_blocks_(-1, -1);
        if (st)
            return st;
        const char *text = dsv_model_text(*m);
        if (k->version >= 2 &&
            (strlen(text) != k->text_n || memcmp(text, k->text, (size_t)k->text_n) != 0)) {
            dsv_model_destroy(*m);
            *m = NULL;
            return dsv_error(DSV_CORRUPT,
                             "checkpoint %s is corrupt: its model text differs from its "
                             "course configuration", path);
        }
    } else {
        char *text = malloc((size_t)k->text_n + 1);
        if (!text)
            return dsv_error(DSV_NOMEM, "checkpoint %s: out of memory", path);
        memcpy(text, k->text, (size_t)k->text_n);
        text[k->text_n] = '\0';
        char source[PATH_MAX + 32];
        snprintf(source, sizeof(source), "%s (its model text)", path);
        if (strlen(text) != k->text_n)
            st = dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: a NUL byte in the model text",
                           path);
        else {
            dsv_graph_limit_blocks_(k->nparams, k->nbuffers);
            st = dsv_model_create_from_text(m, text, source, &k->mo);
            dsv_graph_limit_blocks_(-1, -1);
        }
        free(text);
        if (st) {
            char msg[600];
            snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
            return dsv_error(DSV_CORRUPT, "checkpoint %s holds a model that does not build: %s",
                             path, msg);
        }
    }
    if (k->has_pre && !k->mean && (st = dsv_model_set_preprocess(*m, NULL, k->scale)))
        goto fail;
    if (k->mean) {
        int64_t n = (int64_t)k->mo.input_dim[0] * k->mo.input_dim[1] * k->mo.input_dim[2];
        float *mean = malloc((size_t)n * sizeof(float));
        if (!mean) {
            st = dsv_error(DSV_NOMEM, "checkpoint %s: out of memory", path);
            goto fail;
        }
        copy_block(mean, k->mean, n, DSV_F32);
        st = dsv_model_set_preprocess(*m, mean, k->scale);
        free(mean);
        if (st)
            goto fail;
    }
    if (k->nclasses) {
        if ((int64_t)k->nclasses != k->mo.num_classes) {
            st = dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: %u class names for %d classes",
                           path, k->nclasses, k->mo.num_classes);
            goto fail;
        }
        char **names = calloc(k->nclasses, sizeof(char *));
        rbuf r = {.p = k->class_names, .n = SIZE_MAX, .path = path};
        for (uint32_t i = 0; names && i < k->nclasses; i++) {
            uint32_t len = get_u32(&r, "");
            if ((names[i] = malloc(len + 1))) {
                memcpy(names[i], r.p + r.pos, len);
                names[i][len] = '\0';
            }
            r.pos += len;
        }
        st = names ? dsv_model_set_class_names(*m, (int)k->nclasses, (const char *const *)names)
                   : dsv_error(DSV_NOMEM, "checkpoint %s: out of memory", path);
        for (uint32_t i = 0; names && i < k->nclasses; i++)
            free(names[i]);
        free(names);
        if (st)
            goto fail;
    }
    return DSV_OK;
fail:
    dsv_model_destroy(*m);
    *m = NULL;
    return st;
}

/* The stored execution plan; one that does not fit the stored model is
 * corruption, not a user error. */
static dsv_status apply_plan(const char *path, const ckpt *k, dsv_model *m)
{
    char *text = malloc((size_t)k->plan_n + 1);
    if (!text)
        return dsv_error(DSV_NOMEM, "checkpoint %s: out of memory", path);
    memcpy(text, k->plan, (size_t)k->plan_n);
    text[k->plan_n] = '\0';
    char src[300];
    snprintf(src, sizeof(src), "checkpoint %s, execution plan line", path);
    dsv_status st = dsv_graph_plan_apply(dsv_model_graph(m), text, src);
    free(text);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
        st = dsv_error(st == DSV_NOMEM ? st : DSV_CORRUPT, "%s", msg);
    }
    return st;
}

/* Creates the model of k with the given parameter blocks and the run's
 * execution plan, so that it goes on deciding as it did. */
static dsv_status make_model(const char *path, const ckpt *k, const uint8_t *params,
                             const uint8_t *buffers, dsv_model **out)
{
    *out = NULL;
    dsv_model *m;
    dsv_status st = build_model(path, k, &m);
    if (st)
        return st;
    if (dsv_model_num_params(m) != k->nparams || dsv_model_num_buffers(m) != k->nbuffers) {
        st = dsv_error(DSV_CORRUPT,
                       "checkpoint %s does not match its model: %lld parameters and %lld buffers "
                       "stored, the model has %lld and %lld",
                       path, (long long)k->nparams, (long long)k->nbuffers,
                       (long long)dsv_model_num_params(m), (long long)dsv_model_num_buffers(m));
        dsv_model_destroy(m);
        return st;
    }
    copy_block(dsv_model_params(m), params, k->nparams, k->dtype);
    if (k->nbuffers)
        copy_block(dsv_model_buffers(m), buffers, k->nbuffers, k->dtype);
    if (k->plan_n && (st = apply_plan(path, k, m))) {
        dsv_model_destroy(m);
        return st;
    }
    *out = m;
    return DSV_OK;
}

/* Index of the first NaN/Inf of a little-endian block, or -1. The exponent
 * bits decide, so no float is loaded and the byte order does not matter. */
static int64_t first_nonfinite(const uint8_t *b, int64_t n, dsv_dtype dt)
{
    size_t w = dsv_dtype_size(dt);
    for (int64_t i = 0; b && i < n; i++) {
        const uint8_t *e = b + (size_t)i * w;
        unsigned top = ((unsigned)e[w - 1] << 8) | e[w - 2]; /* sign, exponent, ... */
        unsigned exp = w == 4 ? (top >> 7) & 0xff : (top >> 4) & 0x7ff;
        if (exp == (w == 4 ? 0xffu : 0x7ffu))
            return i;
    }
    return -1;
}

/* A CRC only says the bytes are those written: a run that diverged could
 * have written NaN/Inf weights, which would load and predict nonsense. */
static dsv_status check_finite(const char *path, const ckpt *k)
{
    const struct {
        const char *name;
        const uint8_t *b;
        int64_t n;
    } blocks[] = {
        {"parameters", k->params, k->nparams},
        {"buffers", k->buffers, k->nbuffers},
        {"best parameters", k->has_best ? k->best_params : NULL, k->nparams},
        {"best buffers", k->has_best ? k->best_buffers : NULL, k->nbuffers},
        {"optimizer state", k->nstates > 0 ? k->state[0] : NULL, k->nparams},
        {"optimizer state", k->nstates > 1 ? k->state[1] : NULL, k->nparams},
    };
    for (size_t j = 0; j < sizeof(blocks) / sizeof(blocks[0]); j++) {
        int64_t i = first_nonfinite(blocks[j].b, blocks[j].n, k->dtype);
        if (i >= 0)
            return dsv_error(DSV_CORRUPT,
                             "checkpoint %s holds a NaN or infinite value in its %s (value "
                             "%lld of %lld); it cannot be used",
                             path, blocks[j].name, (long long)i, (long long)blocks[j].n);
    }
    return DSV_OK;
}

static dsv_status load_ckpt(const char *path, uint8_t **data, ckpt *k)
{
    size_t len = 0;
    dsv_status st = read_checked(path, data, &len);
    if (st)
        return st;
    rbuf r = {.p = *data, .n = len, .path = path};
    if ((st = decode(&r, k)) || (st = check_finite(path, k))) {
        free(*data);
        *data = NULL;
    }
    return st;
}

/* Errors from the model or Solver constructors name the checkpoint too. */
static dsv_status name_file(dsv_status st, const char *path)
{
    if (strstr(dsv_errmsg(), path))
        return st;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dsv_errmsg());
    return dsv_error(st, "checkpoint %s: %s", path, msg);
}

dsv_status dsv_checkpoint_load_model(const char *path, dsv_model **m)
{
    *m = NULL;
    if (!path)
        return dsv_error(DSV_INVALID, "checkpoint_load_model: path is required");
    uint8_t *data;
    ckpt k;
    dsv_status st = load_ckpt(path, &data, &k);
    if (st)
        return st;
    /* For inference: the parameters the Solver would swap in at the end. */
    st = make_model(path, &k, k.has_best ? k.best_params : k.params,
                    k.has_best ? k.best_buffers : k.buffers, m);
    free(data);
    return st ? name_file(st, path) : st;
}

/* The counters must describe a position the Solver can reach. */
static dsv_status check_position(const char *path, const ckpt *k, const dsv_solver *s)
{
    if (k->iteration < 0 || k->epoch < 0 || k->epoch != k->iteration / s->iters_per_epoch ||
        k->loss_n != k->iteration || k->acc_n != k->epoch)
        return dsv_error(DSV_CORRUPT,
                         "checkpoint %s is corrupt: iteration %lld, epoch %d, %lld losses and "
                         "%d accuracies do not agree (%lld iterations per epoch)",
                         path, (long long)k->iteration, k->epoch, (long long)k->loss_n,
                         k->acc_n, (long long)s->iters_per_epoch);
    if ((int)k->nstates != dsv_optimizer_num_states(s->opt) || k->t < 0)
        return dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: %u state blocks for %s",
                         path, k->nstates, dsv_update_rule_name(k->sc.optim.rule));
    return DSV_OK;
}

dsv_status dsv_checkpoint_load(const char *path, dsv_model **mout,
                               dsv_solver **sout, const dsv_split *train,
                               const dsv_split *val,
                               const dsv_solver_config *cfg)
{
    *mout = NULL;
    *sout = NULL;
    if (!path || !train)
        return dsv_error(DSV_INVALID, "checkpoint_load: path and training split are required");
    uint8_t *data;
    ckpt k;
    dsv_status st = load_ckpt(path, &data, &k);
    if (st)
        return st;
    dsv_model *m = NULL;
    dsv_solver *s = NULL;
    if (train->n != k.train_n) {
        st = dsv_error(DSV_INVALID,
                       "checkpoint %s was trained on %lld images; the training split given has %lld",
                       path, (long long)k.train_n, (long long)train->n);
        goto fail;
    }
    if (k.optim.rule != k.sc.optim.rule) {
        st = dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: two update rules", path);
        goto fail;
    }
    if (!(k.sc.batch_size >= 1 && k.sc.num_epochs >= 0 && k.sc.lr_decay > 0 &&
          isfinite(k.sc.lr_decay) && k.sc.num_train_samples >= 0 &&
          k.sc.num_val_samples >= 0)) {
        st = dsv_error(DSV_CORRUPT, "checkpoint %s holds an invalid solver configuration", path);
        goto fail;
    }
    /* The trajectory's settings come from the checkpoint; the caller chooses
       how far to train and how to report. */
    dsv_solver_config sc = k.sc;
    if (cfg) {
        sc.num_epochs = cfg->num_epochs;
        sc.print_every = cfg->print_every;
        sc.verbose = cfg->verbose;
        sc.on_progress = cfg->on_progress;
        sc.user = cfg->user;
    }
    if ((st = make_model(path, &k, k.params, k.buffers, &m)))
        goto fail;
    if ((st = dsv_solver_create(&s, m, train, val, &sc)))
        goto fail;
    if ((st = check_position(path, &k, s)))
        goto fail;
    dsv_optim_config *oc = dsv_optimizer_config(s->opt);
    *oc = k.optim;
    if (!isfinite(oc->learning_rate) || oc->learning_rate < 0) {
        st = dsv_error(DSV_CORRUPT, "checkpoint %s is corrupt: learning rate %g", path,
                       oc->learning_rate);
        goto fail;
    }
    *dsv_optimizer_step_count(s->opt) = k.t;
    for (uint32_t i = 0; i < k.nstates; i++)
        copy_block(dsv_optimizer_state(s->opt, (int)i), k.state[i], k.nparams, k.dtype);
    s->has_best = k.has_best;
    s->best_val_acc = k.best_val_acc;
    if (k.has_best) {
        copy_block(s->best_params, k.best_params, k.nparams, k.dtype);
        if (k.nbuffers)
            copy_block(s->best_buffers, k.best_buffers, k.nbuffers, k.dtype);
    }
    s->rng = k.rng;
    s->rng_epoch = k.rng_epoch;
    s->perm_valid = 0;
    s->iteration = k.iteration;
    s->epoch = k.epoch;
    dsv_model_set_train_steps(m, k.model_steps);
    if ((st = dsv_solver_hist_reserve_(s, k.loss_n, k.acc_n)))
        goto fail;
    copy_block(s->loss_hist, k.loss, k.loss_n, DSV_F64);
    copy_block(s->train_acc, k.train_acc, k.acc_n, DSV_F64);
    copy_block(s->val_acc, k.val_acc, k.acc_n, DSV_F64);
    s->loss_n = k.loss_n;
    s->acc_n = k.acc_n;
    free(data);
    *mout = m;
    *sout = s;
    return DSV_OK;
fail:
    dsv_solver_destroy(s);
    if (m)
        dsv_model_destroy(m);
    free(data);
    return name_file(st, path);
}
