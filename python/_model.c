/*
 * dasecv._dasecv, part 2: models (model.h) and the Solver (solver.h) as
 * Python types, _Model and _Solver. The dasecv package wraps them (dasecv.Model,
 * dasecv.Solver, the course's classes); this file stays thin.
 *
 * What must stay true:
 *  - Parameter and gradient arrays handed out are views of the model's flat
 *    blocks whose numpy base is the _Model object, so the model outlives them.
 *  - While a train() runs with the GIL released, the model is marked busy and
 *    every other use of it raises; the progress hook takes the GIL, clears
 *    the mark for the Python callback (the model is between two steps then)
 *    and sets it again.
 *  - A _Solver holds references to its model and to the arrays its splits
 *    point into, so the data cannot go away under the C loop.
 *  - Every failure is a Python exception with the engine's message.
 */
#include "_dasecv.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <dasecv/data.h>
#include <dasecv/model.h>
#include <dasecv/solver.h>

/* ---- _Model ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    dsv_model *m;
    int busy; /* a train() runs on it with the GIL released */
} ModelObject;

static PyTypeObject Model_Type;

static int model_typenum(const ModelObject *self)
{
    return dsv_model_dtype(self->m) == DSV_F64 ? NPY_FLOAT64 : NPY_FLOAT32;
}

/* -1 with RuntimeError when the model cannot be used now. */
static int model_ready(const ModelObject *self)
{
    if (!self->m) {
        PyErr_SetString(PyExc_RuntimeError, "model is not initialised");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "model is being trained (Solver.train in another thread)");
        return -1;
    }
    return 0;
}

static PyObject *model_wrap(dsv_model *m)
{
    ModelObject *self = PyObject_New(ModelObject, &Model_Type);
    if (!self) {
        dsv_model_destroy(m);
        return NULL;
    }
    self->m = m;
    self->busy = 0;
    return (PyObject *)self;
}

static void Model_dealloc(ModelObject *self)
{
    dsv_model_destroy(self->m);
    PyObject_Free(self);
}

/* dtype: None (the file's), 'float32' or 'float64'; input_dim: None or (C, H, W). */
static int parse_options(PyObject *dtype, PyObject *input_dim, int num_classes,
                         unsigned long long seed, double reg, dsv_model_options *o)
{
    *o = dsv_model_options_default();
    if (dtype != Py_None) {
        const char *s = PyUnicode_Check(dtype) ? PyUnicode_AsUTF8(dtype) : NULL;
        if (!s || (strcmp(s, "float32") && strcmp(s, "float64"))) {
            PyErr_SetString(PyExc_TypeError, "dtype must be 'float32', 'float64' or None");
            return -1;
        }
        o->dtype = strcmp(s, "float32") ? DSV_F64 : DSV_F32;
    }
    if (input_dim != Py_None &&
        !PyArg_ParseTuple(input_dim, "iii;input_dim must be a tuple (C, H, W)",
                          &o->input_dim[0], &o->input_dim[1], &o->input_dim[2]))
        return -1;
    o->num_classes = num_classes;
    o->seed = seed;
    o->reg = reg;
    return 0;
}

#define MODEL_OPTION_KEYS "dtype", "input_dim", "num_classes", "seed", "reg"

PyDoc_STRVAR(model_from_file_doc,
"model_from_file(name_or_path, *, dtype=None, input_dim=None, num_classes=0,\n"
"                seed=0, reg=0.0)\n--\n\n"
"A model from a model file or a built-in's name (threelayer, fc, ...).");

static PyObject *model_from_file(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name_or_path", MODEL_OPTION_KEYS, NULL};
    const char *name;
    PyObject *dtype = Py_None, *input_dim = Py_None;
    int num_classes = 0;
    unsigned long long seed = 0;
    double reg = 0;
    dsv_model_options o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$OOiKd", kwlist, &name, &dtype,
                                     &input_dim, &num_classes, &seed, &reg) ||
        parse_options(dtype, input_dim, num_classes, seed, reg, &o))
        return NULL;
    dsv_model *m;
    dsv_status s;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_model_create_from_file(&m, name, &o);
    Py_END_ALLOW_THREADS
    return s ? raise_status(s) : model_wrap(m);
}

PyDoc_STRVAR(model_from_text_doc,
"model_from_text(text, source='<text>', *, dtype=None, input_dim=None,\n"
"                num_classes=0, seed=0, reg=0.0)\n--\n\n"
"A model from model-file text; source names it in error messages.");

static PyObject *model_from_text(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"text", "source", MODEL_OPTION_KEYS, NULL};
    const char *text, *source = "<text>";
    PyObject *dtype = Py_None, *input_dim = Py_None;
    int num_classes = 0;
    unsigned long long seed = 0;
    double reg = 0;
    dsv_model_options o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|s$OOiKd", kwlist, &text, &source, &dtype,
                                     &input_dim, &num_classes, &seed, &reg) ||
        parse_options(dtype, input_dim, num_classes, seed, reg, &o))
        return NULL;
    dsv_model *m;
    dsv_status s = dsv_model_create_from_text(&m, text, source, &o);
    return s ? raise_status(s) : model_wrap(m);
}

static PyObject *model_from_checkpoint(PyObject *mod, PyObject *arg)
{
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    dsv_model *m;
    dsv_status s;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_checkpoint_load_model(PyBytes_AS_STRING(bytes), &m);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    return s ? raise_status(s) : model_wrap(m);
}

PyDoc_STRVAR(config_text_doc,
"config_text(kind, *, num_filters=32, filter_size=7, hidden_dim=100,\n"
"            hidden_dims=(100, 100), normalization='none', dropout_keep=1.0,\n"
"            weight_scale=None, res_channels=16, res_blocks=2)\n--\n\n"
"The model-file text of a course network: kind 'threelayer', 'fc' or 'resnet'\n"
"with the course's options (dsv_model_config_text).");

static PyObject *config_text(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "num_filters", "filter_size", "hidden_dim",
                             "hidden_dims", "normalization", "dropout_keep",
                             "weight_scale", "res_channels", "res_blocks", NULL};
    const char *kind, *norm = "none";
    PyObject *dims = Py_None, *wscale = Py_None;
    dsv_model_kind k;
    dsv_status s;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$iiiOsdOii", kwlist, &kind,
                                     &(int){0}, &(int){0}, &(int){0}, &dims, &norm,
                                     &(double){0}, &wscale, &(int){0}, &(int){0}))
        return NULL;
    if ((s = dsv_model_kind_from_name(kind, &k)))
        return raise_status(s);
    /* Parsed again into the defaults of the kind, which the first pass could
       not know. */
    dsv_model_config c = dsv_model_config_default(k);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$iiiOsdOii", kwlist, &kind,
                                     &c.num_filters, &c.filter_size, &c.hidden_dim, &dims,
                                     &norm, &c.dropout_keep, &wscale, &c.res_channels,
                                     &c.res_blocks))
        return NULL;
    if (wscale != Py_None && (c.weight_scale = PyFloat_AsDouble(wscale)) == -1 &&
        PyErr_Occurred())
        return NULL;
    if ((s = dsv_norm_from_name(norm, &c.normalization)))
        return raise_status(s);
    if (dims != Py_None) {
        PyObject *seq = PySequence_Fast(dims, "hidden_dims must be a sequence of sizes");
        if (!seq)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > DSV_MAX_HIDDEN) {
            Py_DECREF(seq);
            return PyErr_Format(PyExc_ValueError, "at most %d hidden layers, got %zd",
                                DSV_MAX_HIDDEN, n);
        }
        c.num_hidden = (int)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (v == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return NULL;
            }
            c.hidden_dims[i] = v > 0 && v < (1L << 30) ? (int)v : -1;
        }
        Py_DECREF(seq);
    }
    char *text;
    if ((s = dsv_model_config_check(&c)) || (s = dsv_model_config_text(&c, &text)))
        return raise_status(s);
    PyObject *r = PyUnicode_FromString(text);
    free(text);
    return r;
}

/* (x converted to the model's dtype) -> a view; new reference in *a. */
static int model_input(ModelObject *self, PyObject *x, PyArrayObject **a, dsv_tensor *t)
{
    if (!(*a = to_float_array(x, model_typenum(self), "x")))
        return -1;
    return wrap(*a, "x", t);
}

static PyObject *Model_loss(ModelObject *self, PyObject *args)
{
    PyObject *x, *y;
    if (!PyArg_ParseTuple(args, "OO", &x, &y) || model_ready(self))
        return NULL;
    PyArrayObject *xa = NULL, *ya = to_labels(y);
    dsv_tensor tx, ty;
    PyObject *r = NULL;
    if (!ya || wrap(ya, "y", &ty) || model_input(self, x, &xa, &tx))
        goto done;
    double loss;
    dsv_status s;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_model_loss(self->m, &tx, &ty, &loss);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    r = s ? raise_status(s) : PyFloat_FromDouble(loss);
done:
    Py_XDECREF(xa);
    Py_XDECREF(ya);
    return r;
}

static PyObject *Model_scores(ModelObject *self, PyObject *x)
{
    if (model_ready(self))
        return NULL;
    PyArrayObject *xa = NULL, *out = NULL;
    dsv_tensor tx, ts;
    if (model_input(self, x, &xa, &tx))
        goto fail;
    npy_intp dims[2] = {(npy_intp)tx.shape[0], dsv_model_options_of(self->m)->num_classes};
    if (!(out = (PyArrayObject *)PyArray_EMPTY(2, dims, model_typenum(self), 0)))
        goto fail;
    wrap(out, "scores", &ts);
    dsv_status s;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_model_scores(self->m, &tx, &ts);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (s) {
        raise_status(s);
        goto fail;
    }
    Py_DECREF(xa);
    return (PyObject *)out;
fail:
    Py_XDECREF(xa);
    Py_XDECREF(out);
    return NULL;
}

/* A numpy view of t whose base is the model. */
static PyObject *view_of(ModelObject *self, const dsv_tensor *t)
{
    npy_intp dims[DSV_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        dims[d] = (npy_intp)t->shape[d];
    PyObject *a = PyArray_SimpleNewFromData(t->ndim, dims, model_typenum(self), t->data);
    if (!a)
        return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)a, (PyObject *)self) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* [(name, param view, grad view, is_weight)] in the model's order. */
static PyObject *Model_tensors(ModelObject *self, PyObject *unused)
{
    if (!self->m)
        return model_ready(self), NULL;
    int n = dsv_model_num_tensors(self->m);
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (int i = 0; i < n; i++) {
        dsv_tensor p = dsv_model_param(self->m, i), g = dsv_model_grad(self->m, i);
        PyObject *pv = view_of(self, &p), *gv = pv ? view_of(self, &g) : NULL;
        PyObject *item = gv ? Py_BuildValue("(sNNO)", dsv_model_tensor_name(self->m, i), pv,
                                            gv, dsv_model_tensor_is_weight(self->m, i)
                                                    ? Py_True : Py_False)
                            : NULL;
        if (!item) {
            if (!gv)
                Py_XDECREF(pv);
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *Model_set_exec(ModelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"backend", "schedule", "threads", NULL};
    const char *b = NULL, *sc = NULL;
    int threads = -1; /* -1: keep */
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zzi", kwlist, &b, &sc, &threads) ||
        model_ready(self))
        return NULL;
    dsv_exec_options o = *dsv_model_exec(self->m);
    dsv_status s;
    if ((b && (s = dsv_backend_from_name(b, &o.backend))) ||
        (sc && (s = dsv_schedule_from_name(sc, &o.schedule))))
        return raise_status(s);
    if (threads < -1)
        return PyErr_Format(PyExc_ValueError, "threads must be >= 0, got %d", threads);
    if (threads >= 0)
        o.threads = threads;
    if ((s = dsv_model_set_exec(self->m, &o)))
        return raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *Model_get_exec(ModelObject *self, PyObject *unused)
{
    const dsv_exec_options *o = dsv_model_exec(self->m);
    return Py_BuildValue("(ssi)", dsv_backend_name(o->backend),
                         dsv_schedule_name(o->schedule), o->threads);
}

static PyObject *Model_get_reg(ModelObject *self, void *c)
{
    return PyFloat_FromDouble(dsv_model_options_of(self->m)->reg);
}

static int Model_set_reg(ModelObject *self, PyObject *v, void *c)
{
    double r = v ? PyFloat_AsDouble(v) : NAN;
    if (!v)
        PyErr_SetString(PyExc_AttributeError, "reg cannot be deleted");
    if (PyErr_Occurred() || model_ready(self))
        return -1;
    dsv_status s = dsv_model_set_reg(self->m, r);
    return s ? (raise_status(s), -1) : 0;
}

static PyObject *Model_get_steps(ModelObject *self, void *c)
{
    return PyLong_FromUnsignedLongLong(dsv_model_train_steps(self->m));
}

static int Model_set_steps(ModelObject *self, PyObject *v, void *c)
{
    unsigned long long n = v ? PyLong_AsUnsignedLongLong(v) : (unsigned long long)-1;
    if (!v)
        PyErr_SetString(PyExc_AttributeError, "train_steps cannot be deleted");
    if (PyErr_Occurred() || model_ready(self))
        return -1;
    dsv_model_set_train_steps(self->m, n);
    return 0;
}

static PyObject *Model_get_info(ModelObject *self, void *c)
{
    const dsv_model_options *o = dsv_model_options_of(self->m);
    return Py_BuildValue("{s:s,s:(iii),s:i,s:L,s:s}", "dtype",
                         dsv_dtype_name(dsv_model_dtype(self->m)), "input_dim", o->input_dim[0],
                         o->input_dim[1], o->input_dim[2], "num_classes", o->num_classes,
                         "num_params", (long long)dsv_model_num_params(self->m), "text",
                         dsv_model_text(self->m));
}

static PyMethodDef Model_methods[] = {
    {"loss", (PyCFunction)Model_loss, METH_VARARGS,
     "loss(x, y)\n--\n\nTraining step: loss (data + L2); the gradient block is overwritten."},
    {"scores", (PyCFunction)Model_scores, METH_O,
     "scores(x)\n--\n\nTest-mode scores (N, classes), a new array."},
    {"tensors", (PyCFunction)Model_tensors, METH_NOARGS,
     "tensors()\n--\n\n[(name, param view, grad view, is_weight)], views of the blocks."},
    {"set_exec", (PyCFunction)(void (*)(void))Model_set_exec, METH_VARARGS | METH_KEYWORDS,
     "set_exec(backend=None, schedule=None, threads=-1)\n--\n\n"
     "Backend, schedule and threads (0: the engine's; -1: unchanged) of this model."},
    {"get_exec", (PyCFunction)Model_get_exec, METH_NOARGS,
     "get_exec()\n--\n\n(backend, schedule, threads)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Model_getset[] = {
    {"reg", (getter)Model_get_reg, (setter)Model_set_reg, "L2 strength of the loss", NULL},
    {"train_steps", (getter)Model_get_steps, (setter)Model_set_steps,
     "training steps taken (dropout masks depend on it)", NULL},
    {"info", (getter)Model_get_info, NULL,
     "dtype, input_dim, num_classes, num_params, text", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Model_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dasecv._dasecv._Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An engine model (made by model_from_file/_text/_checkpoint).",
    .tp_methods = Model_methods,
    .tp_getset = Model_getset,
};

/* ---- data as splits ------------------------------------------------------------ */

/* X (N, C, H, W) or (N, C*H*W) of the model's input (any (N, ...) of rows that
 * size for a flat model), float32/float64 kept as
 * they are (other dtypes converted to the model's); y integer labels in
 * [0, classes). Fills sp; new references in *xa, *ya. */
static int bind_split(ModelObject *mo, PyObject *x, PyObject *y, const char *what,
                      dsv_split *sp, PyArrayObject **xa, PyArrayObject **ya)
{
    const dsv_model_options *o = dsv_model_options_of(mo->m);
    *xa = *ya = NULL;
    PyArrayObject *src = (PyArrayObject *)PyArray_FROM_O(x);
    if (!src)
        return -1;
    int t = PyArray_TYPE(src);
    if (t != NPY_FLOAT32 && t != NPY_FLOAT64)
        t = model_typenum(mo);
    if (!PyArray_ISNUMBER(src) || PyArray_ISCOMPLEX(src)) {
        PyErr_Format(PyExc_TypeError, "X_%s must hold real numbers, got %S", what,
                     (PyObject *)PyArray_DESCR(src));
        Py_DECREF(src);
        return -1;
    }
    *xa = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)src, t,
                                            NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(src);
    if (!*xa || !(*ya = to_labels(y)))
        return -1;
    int64_t row = (int64_t)o->input_dim[0] * o->input_dim[1] * o->input_dim[2];
    /* A model of flat input (D, 1, 1) reads each image as its C-order row, as
     * the course's affine layers do: CIFAR's (N, 3, 32, 32) feeds a net of
     * input_dim 3072. An image model takes its own shape or flat rows only. */
    bool flat = o->input_dim[1] == 1 && o->input_dim[2] == 1;
    int nd = PyArray_NDIM(*xa);
    bool ok = nd >= 2 && PyArray_DIM(*xa, 0) >= 1;
    if (ok && (nd == 2 || flat)) {
        int64_t n = 1;
        for (int d = 1; d < nd; d++)
            n *= PyArray_DIM(*xa, d);
        ok = n == row;
    } else if (ok) {
        ok = nd == 4;
        for (int d = 0; ok && d < 3; d++)
            ok = PyArray_DIM(*xa, d + 1) == o->input_dim[d];
    }
    if (!ok) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)*xa, "shape");
        if (shape)
            PyErr_Format(PyExc_ValueError,
                         "X_%s must be (N, %d, %d, %d) or (N, %lld)%s for this model, got %R",
                         what, o->input_dim[0], o->input_dim[1], o->input_dim[2],
                         (long long)row, flat ? " or N rows of that size" : "", shape);
        Py_XDECREF(shape);
        return -1;
    }
    npy_intp n = PyArray_DIM(*xa, 0);
    if (PyArray_NDIM(*ya) != 1 || PyArray_DIM(*ya, 0) != n) {
        PyErr_Format(PyExc_ValueError, "y_%s must hold %zd labels, one per image of X_%s",
                     what, (Py_ssize_t)n, what);
        return -1;
    }
    const int32_t *lab = PyArray_DATA(*ya);
    for (npy_intp i = 0; i < n; i++)
        if (lab[i] < 0 || lab[i] >= o->num_classes) {
            PyErr_Format(PyExc_ValueError, "y_%s[%zd] = %d is outside [0, %d)", what,
                         (Py_ssize_t)i, lab[i], o->num_classes);
            return -1;
        }
    *sp = (dsv_split){
        .n = n, .c = o->input_dim[0], .h = o->input_dim[1], .w = o->input_dim[2],
        .labels = lab, .scale = 1.0f, .fimages = PyArray_DATA(*xa),
        .fdtype = t == NPY_FLOAT64 ? DSV_F64 : DSV_F32,
    };
    return 0;
}

PyDoc_STRVAR(check_accuracy_doc,
"check_accuracy(model, X, y, num_samples=0, batch_size=100, seed=0)\n--\n\n"
"Accuracy of a _Model on num_samples (0: all) rows of X, y, in batches.");

static PyObject *check_accuracy(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model", "X", "y", "num_samples", "batch_size", "seed", NULL};
    ModelObject *mo;
    PyObject *x, *y;
    long long num = 0;
    int bs = 100;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO|LiK", kwlist, &Model_Type, &mo, &x, &y,
                                     &num, &bs, &seed) ||
        model_ready(mo))
        return NULL;
    PyArrayObject *xa, *ya;
    dsv_split sp;
    PyObject *r = NULL;
    if (bind_split(mo, x, y, "check", &sp, &xa, &ya) == 0) {
        double acc;
        dsv_status s;
        mo->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        s = dsv_check_accuracy(mo->m, &sp, num, bs, seed, &acc);
        Py_END_ALLOW_THREADS
        mo->busy = 0;
        r = s ? raise_status(s) : PyFloat_FromDouble(acc);
    }
    Py_XDECREF(xa);
    Py_XDECREF(ya);
    return r;
}

/* ---- _Solver ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ModelObject *model;
    PyArrayObject *arrays[4]; /* X_train, y_train, X_val, y_val */
    dsv_split train, val;
    dsv_solver *s;
    PyObject *callback;       /* None or callable(dict) */
    PyObject *err[3];         /* an exception raised in the hook, for train() */
} SolverObject;

static PyTypeObject Solver_Type;

static void Solver_dealloc(SolverObject *self)
{
    dsv_solver_destroy(self->s);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(self->arrays[i]);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(self->err[i]);
    Py_XDECREF(self->callback);
    Py_XDECREF(self->model);
    PyObject_Free(self);
}

/* Runs between two steps on the training thread: takes the GIL, lets a
 * pending signal (Ctrl-C) or the callback stop training. */
static bool on_progress(const dsv_progress *p, void *user)
{
    SolverObject *self = user;
    PyGILState_STATE g = PyGILState_Ensure();
    bool go = true;
    self->model->busy = 0;
    if (PyErr_CheckSignals() < 0) {
        go = false;
    } else if (self->callback != Py_None) {
        PyObject *d = Py_BuildValue(
            "{s:L,s:L,s:i,s:i,s:d,s:d,s:d,s:d,s:O,s:d,s:d}", "iteration",
            (long long)p->iteration, "num_iterations", (long long)p->num_iterations, "epoch",
            p->epoch, "num_epochs", p->num_epochs, "loss", p->loss, "learning_rate",
            p->learning_rate, "train_acc", p->train_acc, "val_acc", p->val_acc, "epoch_end",
            p->epoch_end ? Py_True : Py_False, "images_per_s", p->images_per_s, "seconds",
            p->seconds);
        PyObject *r = d ? PyObject_CallOneArg(self->callback, d) : NULL;
        Py_XDECREF(d);
        if (!r)
            go = false;
        else if (r == Py_False)
            go = false;
        Py_XDECREF(r);
    }
    if (PyErr_Occurred() && !self->err[0])
        PyErr_Fetch(&self->err[0], &self->err[1], &self->err[2]);
    PyErr_Clear();
    self->model->busy = 1;
    PyGILState_Release(g);
    return go;
}

#define SOLVER_KEYS                                                                     \
    "update_rule", "learning_rate", "momentum", "decay_rate", "beta1", "beta2",         \
        "epsilon", "lr_decay", "batch_size", "num_epochs", "num_train_samples",         \
        "num_val_samples", "seed", "callback"

/* The Solver configuration from keywords; NaN optimizer values take the
 * update rule's defaults. */
typedef struct {
    const char *rule;
    double lr, momentum, decay_rate, beta1, beta2, eps, lr_decay;
    int batch_size, num_epochs;
    long long ntrain, nval;
    unsigned long long seed;
    PyObject *callback;
} solver_args;

static solver_args solver_args_default(void)
{
    return (solver_args){.rule = "sgd", .lr = NAN, .momentum = NAN, .decay_rate = NAN,
                         .beta1 = NAN, .beta2 = NAN, .eps = NAN, .lr_decay = 1.0,
                         .batch_size = 100, .num_epochs = 10, .ntrain = 1000, .nval = 0,
                         .callback = Py_None};
}

static int solver_config(const solver_args *a, dsv_solver_config *c)
{
    dsv_update_rule rule;
    dsv_status s = dsv_update_rule_from_name(a->rule, &rule);
    if (s)
        return raise_status(s), -1;
    if (a->callback != Py_None && !PyCallable_Check(a->callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable or None");
        return -1;
    }
    *c = dsv_solver_config_default();
    c->optim = dsv_optim_config_default(rule);
#define SET(field, v) if (!isnan(v)) c->optim.field = v
    SET(learning_rate, a->lr);
    SET(momentum, a->momentum);
    SET(decay_rate, a->decay_rate);
    SET(beta1, a->beta1);
    SET(beta2, a->beta2);
    SET(epsilon, a->eps);
#undef SET
    if (!(c->optim.learning_rate >= 0) || !isfinite(c->optim.learning_rate)) {
        PyErr_Format(PyExc_ValueError, "learning_rate must be >= 0, got %g",
                     c->optim.learning_rate);
        return -1;
    }
    c->lr_decay = a->lr_decay;
    c->batch_size = a->batch_size;
    c->num_epochs = a->num_epochs;
    c->num_train_samples = a->ntrain;
    c->num_val_samples = a->nval;
    c->seed = a->seed;
    c->verbose = false; /* the package prints the course's lines from the hook */
    c->on_progress = on_progress;
    return 0;
}

/* Binds the model and data; the solver itself is made by the caller. */
static SolverObject *solver_new(ModelObject *mo, PyObject *const data[4], const solver_args *a,
                                dsv_solver_config *cfg)
{
    if (model_ready(mo) || solver_config(a, cfg))
        return NULL;
    SolverObject *self = PyObject_New(SolverObject, &Solver_Type);
    if (!self)
        return NULL;
    self->model = mo;
    Py_INCREF(mo);
    memset(self->arrays, 0, sizeof(self->arrays));
    memset(self->err, 0, sizeof(self->err));
    self->s = NULL;
    self->callback = Py_NewRef(a->callback);
    cfg->user = self;
    if (bind_split(mo, data[0], data[1], "train", &self->train, &self->arrays[0],
                   &self->arrays[1]) ||
        bind_split(mo, data[2], data[3], "val", &self->val, &self->arrays[2],
                   &self->arrays[3])) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

PyDoc_STRVAR(solver_create_doc,
"solver_create(model, X_train, y_train, X_val, y_val, *, update_rule='sgd',\n"
"              learning_rate=nan, momentum=nan, decay_rate=nan, beta1=nan,\n"
"              beta2=nan, epsilon=nan, lr_decay=1.0, batch_size=100,\n"
"              num_epochs=10, num_train_samples=1000, num_val_samples=0,\n"
"              seed=0, callback=None)\n--\n\n"
"The engine's Solver on a _Model and numpy data (float32/float64 arrays are\n"
"used in place, without a copy); nan takes the update rule's default.");

static PyObject *solver_create(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model", "X_train", "y_train", "X_val", "y_val", SOLVER_KEYS, NULL};
    ModelObject *mo;
    PyObject *data[4];
    solver_args a = solver_args_default();
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "O!OOOO|$sddddddd" "iiLLKO", kwlist, &Model_Type, &mo, &data[0],
            &data[1], &data[2], &data[3], &a.rule, &a.lr, &a.momentum, &a.decay_rate,
            &a.beta1, &a.beta2, &a.eps, &a.lr_decay, &a.batch_size, &a.num_epochs, &a.ntrain,
            &a.nval, &a.seed, &a.callback))
        return NULL;
    dsv_solver_config cfg;
    SolverObject *self = solver_new(mo, data, &a, &cfg);
    if (!self)
        return NULL;
    dsv_status s = dsv_solver_create(&self->s, mo->m, &self->train, &self->val, &cfg);
    if (s) {
        Py_DECREF(self);
        return raise_status(s);
    }
    return (PyObject *)self;
}

PyDoc_STRVAR(solver_load_doc,
"solver_load(path, X_train, y_train, X_val, y_val, *, num_epochs=10,\n"
"            callback=None)\n--\n\n"
"A Solver (and its new _Model, .model) from a checkpoint, to train on to\n"
"num_epochs; the other settings are the checkpoint's.");

static PyObject *solver_load(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "X_train", "y_train", "X_val", "y_val", "num_epochs",
                             "callback", NULL};
    PyObject *path, *data[4];
    solver_args a = solver_args_default();
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&OOOO|$iO", kwlist, PyUnicode_FSConverter,
                                     &path, &data[0], &data[1], &data[2], &data[3],
                                     &a.num_epochs, &a.callback))
        return NULL;
    /* The model's shape is known only after loading: load it alone first. */
    dsv_model *m;
    dsv_status s = dsv_checkpoint_load_model(PyBytes_AS_STRING(path), &m);
    ModelObject *tmp = s ? NULL : (ModelObject *)model_wrap(m);
    SolverObject *self = NULL;
    dsv_solver_config cfg;
    if (s)
        raise_status(s);
    else if (tmp && (self = solver_new(tmp, data, &a, &cfg))) {
        dsv_model *m2;
        Py_BEGIN_ALLOW_THREADS
        s = dsv_checkpoint_load(PyBytes_AS_STRING(path), &m2, &self->s, &self->train,
                                &self->val, &cfg);
        Py_END_ALLOW_THREADS
        if (s) {
            raise_status(s);
            Py_CLEAR(self);
        } else {
            /* the solver trains the model the checkpoint made */
            dsv_model_destroy(tmp->m);
            tmp->m = m2;
        }
    }
    Py_XDECREF(tmp);
    Py_DECREF(path);
    return (PyObject *)self;
}

static PyObject *Solver_train(SolverObject *self, PyObject *unused)
{
    if (model_ready(self->model))
        return NULL;
    dsv_status s;
    self->model->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_solver_train(self->s);
    Py_END_ALLOW_THREADS
    self->model->busy = 0;
    if (self->err[0]) {
        PyErr_Restore(self->err[0], self->err[1], self->err[2]);
        memset(self->err, 0, sizeof(self->err));
        return NULL;
    }
    if (s)
        return raise_status(s);
    return PyBool_FromLong(dsv_solver_done(self->s));
}

static PyObject *Solver_save(SolverObject *self, PyObject *arg)
{
    PyObject *bytes;
    if (model_ready(self->model) || !PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    dsv_status s;
    Py_BEGIN_ALLOW_THREADS
    s = dsv_checkpoint_save(self->s, PyBytes_AS_STRING(bytes));
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (s)
        return raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *list_of(const double *v, int64_t n)
{
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; l && i < n; i++) {
        PyObject *f = PyFloat_FromDouble(v[i]);
        if (!f) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, f);
    }
    return l;
}

static PyObject *Solver_history(SolverObject *self, PyObject *unused)
{
    const double *loss, *tr, *va;
    int64_t nl = dsv_solver_loss_history(self->s, &loss);
    int na = dsv_solver_acc_history(self->s, &tr, &va);
    return Py_BuildValue("(NNN)", list_of(loss, nl), list_of(tr, na), list_of(va, na));
}

static PyObject *Solver_state(SolverObject *self, PyObject *unused)
{
    return Py_BuildValue("{s:L,s:i,s:d,s:O,s:O}", "iteration",
                         (long long)dsv_solver_iteration(self->s), "epoch",
                         dsv_solver_epoch(self->s), "best_val_acc",
                         dsv_solver_best_val_acc(self->s), "done",
                         dsv_solver_done(self->s) ? Py_True : Py_False, "stopped",
                         dsv_solver_stopped(self->s) ? Py_True : Py_False);
}

static PyObject *Solver_get_model(SolverObject *self, void *c)
{
    return Py_NewRef((PyObject *)self->model);
}

static PyMethodDef Solver_methods[] = {
    {"train", (PyCFunction)Solver_train, METH_NOARGS,
     "train()\n--\n\nTrains to num_epochs with the GIL released; True when done, False "
     "when the callback stopped it."},
    {"save", (PyCFunction)Solver_save, METH_O,
     "save(path)\n--\n\nWrites a checkpoint (atomically)."},
    {"history", (PyCFunction)Solver_history, METH_NOARGS,
     "history()\n--\n\n(losses per iteration, train accuracies, val accuracies per epoch)."},
    {"state", (PyCFunction)Solver_state, METH_NOARGS,
     "state()\n--\n\niteration, epoch, best_val_acc, done, stopped."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Solver_getset[] = {
    {"model", (getter)Solver_get_model, NULL, "the _Model trained", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Solver_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dasecv._dasecv._Solver",
    .tp_basicsize = sizeof(SolverObject),
    .tp_dealloc = (destructor)Solver_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The engine's Solver (made by solver_create / solver_load).",
    .tp_methods = Solver_methods,
    .tp_getset = Solver_getset,
};

static PyObject *fashion_mnist_dir(PyObject *mod, PyObject *unused)
{
    return PyUnicode_DecodeFSDefault(dsv_fashion_mnist_dir());
}

static PyObject *builtin_models(PyObject *mod, PyObject *unused)
{
    int n = dsv_builtin_model_count();
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *s = PyUnicode_FromString(dsv_builtin_model_name(i));
        if (!s) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

#define KW (PyCFunction)(void (*)(void))
static PyMethodDef model_methods[] = {
    {"model_from_file", KW model_from_file, METH_VARARGS | METH_KEYWORDS, model_from_file_doc},
    {"model_from_text", KW model_from_text, METH_VARARGS | METH_KEYWORDS, model_from_text_doc},
    {"model_from_checkpoint", model_from_checkpoint, METH_O,
     "model_from_checkpoint(path)\n--\n\nThe model of a checkpoint."},
    {"config_text", KW config_text, METH_VARARGS | METH_KEYWORDS, config_text_doc},
    {"check_accuracy", KW check_accuracy, METH_VARARGS | METH_KEYWORDS, check_accuracy_doc},
    {"solver_create", KW solver_create, METH_VARARGS | METH_KEYWORDS, solver_create_doc},
    {"solver_load", KW solver_load, METH_VARARGS | METH_KEYWORDS, solver_load_doc},
    {"fashion_mnist_dir", fashion_mnist_dir, METH_NOARGS,
     "fashion_mnist_dir()\n--\n\n$DASECV_FASHION_MNIST_DIR or Debian's directory."},
    {"builtin_models", builtin_models, METH_NOARGS,
     "builtin_models()\n--\n\nThe names of the built-in model files."},
    {NULL, NULL, 0, NULL},
};
#undef KW

int dsvpy_add_model_api(PyObject *module)
{
    if (PyType_Ready(&Model_Type) < 0 || PyType_Ready(&Solver_Type) < 0 ||
        PyModule_AddFunctions(module, model_methods) < 0 ||
        PyModule_AddObjectRef(module, "_Model", (PyObject *)&Model_Type) < 0 ||
        PyModule_AddObjectRef(module, "_Solver", (PyObject *)&Solver_Type) < 0)
        return -1;
    return 0;
}
