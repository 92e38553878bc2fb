/*
 * dasecv._dasecv: the numpy face of the engine's op API (ops.h).
 *
 * Thin on purpose: it turns numpy arrays into dsv_tensor views, runs
 * dsv_forward / dsv_backward with the GIL released, and hands back new numpy
 * arrays the engine filled. Everything shaped like the course (dicts, caches)
 * lives in the Python package next to it. Models and the Solver are in
 * _model.c; the conversions below are shared with it (_dasecv.h).
 *
 * What must stay true:
 *  - C-contiguous, aligned float32/float64 inputs reach the engine as views,
 *    never copies. Anything else is converted only when the conversion is
 *    exact (see to_float_array); otherwise TypeError/ValueError.
 *  - Every failure is a Python exception carrying the engine's own message
 *    (dsv_errmsg()); every path releases what it took (the `fail` labels).
 *  - The engine only ever sees arrays we hold a reference to, so releasing
 *    the GIL around compute is safe.
 */
#define DSVPY_IMPORT_ARRAY
#include "_dasecv.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* The engine status as the closest Python exception, with its message. */
PyObject *raise_status(dsv_status s)
{
    PyObject *type;
    switch (s) {
    case DSV_NOMEM: type = PyExc_MemoryError; break;
    case DSV_INVALID: type = PyExc_ValueError; break;
    case DSV_UNSUPPORTED: type = PyExc_NotImplementedError; break;
    default: type = PyExc_RuntimeError; break;
    }
    const char *msg = dsv_errmsg();
    PyErr_SetString(type, msg && *msg ? msg : dsv_status_name(s));
    return NULL;
}

static dsv_dtype dtype_of(int typenum)
{
    return typenum == NPY_FLOAT32 ? DSV_F32 : DSV_F64;
}

/* Integers convert exactly while |v| < 2^mantissa bits; rounding is monotonic,
 * so a converted value below the bound came from an integer below it. */
static bool ints_exact(PyArrayObject *a)
{
    npy_intp n = PyArray_SIZE(a);
    if (PyArray_TYPE(a) == NPY_FLOAT32) {
        const float *v = PyArray_DATA(a);
        for (npy_intp i = 0; i < n; i++)
            if (!(fabsf(v[i]) < 16777216.0f))
                return false;
    } else {
        const double *v = PyArray_DATA(a);
        for (npy_intp i = 0; i < n; i++)
            if (!(fabs(v[i]) < 9007199254740992.0))
                return false;
    }
    return true;
}

/*
 * obj as a C-contiguous, aligned array of typenum (float32/float64); a new
 * reference. An array that already is one comes back as itself. Others:
 *  - floats (and bool) convert when numpy calls the cast safe: float16 and
 *    float32 to either, float64 only to float64. float64 into a float32 call
 *    is a TypeError, never a silent rounding.
 *  - integers convert when every value is exact in the target (below 2^24
 *    for float32, 2^53 for float64); otherwise ValueError.
 *  - lists and scalars go through np.asarray first, then the rules above.
 */
PyArrayObject *to_float_array(PyObject *obj, int typenum, const char *name)
{
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be an array, not None", name);
        return NULL;
    }
    PyArrayObject *src = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!src)
        return NULL;
    int from = PyArray_TYPE(src);
    bool ints = PyArray_ISINTEGER(src);
    if (!ints && !PyArray_CanCastSafely(from, typenum)) {
        PyErr_Format(PyExc_TypeError,
                     "%s is %S, which does not convert exactly to this call's %s "
                     "(the dtype of x); convert it explicitly",
                     name, (PyObject *)PyArray_DESCR(src),
                     typenum == NPY_FLOAT32 ? "float32" : "float64");
        Py_DECREF(src);
        return NULL;
    }
    int flags = NPY_ARRAY_IN_ARRAY | (ints ? NPY_ARRAY_FORCECAST : 0);
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)src, typenum, flags);
    Py_DECREF(src);
    if (!a)
        return NULL;
    if (ints && !ints_exact(a)) {
        PyErr_Format(PyExc_ValueError, "%s holds integers too large to be exact in %s",
                     name, typenum == NPY_FLOAT32 ? "float32" : "float64");
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* Labels as a C-contiguous int32 array (new reference); any integer dtype
 * whose values fit in int32. */
PyArrayObject *to_labels(PyObject *obj)
{
    if (obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "labels y must be an array, not None");
        return NULL;
    }
    PyArrayObject *src = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!src)
        return NULL;
    if (!PyArray_ISINTEGER(src)) {
        PyErr_Format(PyExc_TypeError, "labels y must be integers, got %S",
                     (PyObject *)PyArray_DESCR(src));
        Py_DECREF(src);
        return NULL;
    }
    if (PyArray_TYPE(src) == NPY_INT32 || PyArray_ITEMSIZE(src) < 4 ||
        (PyArray_ITEMSIZE(src) == 4 && PyArray_ISSIGNED(src))) {
        PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)src, NPY_INT32,
                                                             NPY_ARRAY_IN_ARRAY);
        Py_DECREF(src);
        return a;
    }
    /* Wider types: look at the values before narrowing. uint64 values above
       INT64_MAX become negative in int64 and are caught as out of range. */
    PyArrayObject *w = (PyArrayObject *)PyArray_FROM_OTF(
        (PyObject *)src, NPY_INT64, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(src);
    if (!w)
        return NULL;
    const int64_t *v = PyArray_DATA(w);
    for (npy_intp i = 0; i < PyArray_SIZE(w); i++)
        if (v[i] < INT32_MIN || v[i] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "label y[%zd] = %lld does not fit in int32",
                         (Py_ssize_t)i, (long long)v[i]);
            Py_DECREF(w);
            return NULL;
        }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)w, NPY_INT32,
                                                         NPY_ARRAY_IN_ARRAY |
                                                         NPY_ARRAY_FORCECAST);
    Py_DECREF(w);
    return a;
}

/* A view of a; the engine takes 1 to 4 dimensions, none of them empty. */
int wrap(PyArrayObject *a, const char *name, dsv_tensor *t)
{
    int nd = PyArray_NDIM(a);
    if (nd < 1 || nd > DSV_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s has %d dimensions; the engine takes 1 to %d",
                     name, nd, DSV_MAX_DIMS);
        return -1;
    }
    int64_t shape[DSV_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        shape[i] = PyArray_DIM(a, i);
        if (shape[i] < 1) {
            PyErr_Format(PyExc_ValueError, "%s has an empty dimension %d", name, i);
            return -1;
        }
    }
    dsv_dtype dt = PyArray_TYPE(a) == NPY_INT32 ? DSV_I32 : dtype_of(PyArray_TYPE(a));
    *t = dsv_tensor_wrap(PyArray_DATA(a), dt, nd, shape);
    return 0;
}

/* An array the engine writes into (running statistics): it must already be
 * a writeable C-contiguous array of the call's dtype, since results written
 * to a converted copy would be lost. New reference. */
static PyArrayObject *to_inout(PyObject *obj, int typenum, const char *name)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != typenum) {
        PyErr_Format(PyExc_TypeError, "%s is %S but this call computes in %s",
                     name, (PyObject *)PyArray_DESCR(a),
                     typenum == NPY_FLOAT32 ? "float32" : "float64");
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a writeable, aligned, C-contiguous array (it is updated in place)",
                     name);
        return NULL;
    }
    Py_INCREF(a);
    return a;
}

/* A new, uninitialised array of the given shape; the engine fills it. */
static PyArrayObject *new_array(int nd, const int64_t *shape, int typenum)
{
    npy_intp dims[DSV_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        dims[i] = (npy_intp)shape[i];
    return (PyArrayObject *)PyArray_EMPTY(nd, dims, typenum, 0);
}

static PyArrayObject *new_like(PyArrayObject *a)
{
    return (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(a), PyArray_DIMS(a),
                                          PyArray_TYPE(a), 0);
}

/* Everything one call holds: the arrays (references) and their views. */
enum { A_X, A_X2, A_W, A_B, A_Y, A_RM, A_RV, A_DOUT, A_COUNT };

typedef struct call_arrays {
    PyArrayObject *a[A_COUNT];
    dsv_tensor t[A_COUNT];
} call_arrays;

static void call_arrays_release(call_arrays *ca)
{
    for (int i = 0; i < A_COUNT; i++)
        Py_XDECREF(ca->a[i]);
}

static const char *const array_names[A_COUNT] = {
    "x", "x2", "w", "b", "y", "running_mean", "running_var", "dout",
};

/* Converts the given objects (NULL or None: absent, except x and dout) and
 * points the call at their views. */
static int bind_arrays(call_arrays *ca, dsv_call *c, PyObject *const obj[A_COUNT],
                       int *typenum)
{
    PyObject *x = obj[A_X];
    *typenum = NPY_FLOAT64;
    if (PyArray_Check(x)) {
        int t = PyArray_TYPE((PyArrayObject *)x);
        if (t == NPY_FLOAT32 || t == NPY_FLOAT64)
            *typenum = t;
        else if (t == NPY_FLOAT16)
            *typenum = NPY_FLOAT32;
    }
    for (int i = 0; i < A_COUNT; i++) {
        bool required = i == A_X || (i == A_DOUT && obj[i]) ||
                        (i == A_Y && dsv_op_is_loss(c->op));
        if (!obj[i] || (obj[i] == Py_None && !required))
            continue;
        PyArrayObject *a;
        if (i == A_Y)
            a = to_labels(obj[i]);
        else if (i == A_RM || i == A_RV)
            a = to_inout(obj[i], *typenum, array_names[i]);
        else
            a = to_float_array(obj[i], *typenum, array_names[i]);
        if (!a)
            return -1;
        ca->a[i] = a;
        if (wrap(a, array_names[i], &ca->t[i]))
            return -1;
    }
    c->x = &ca->t[A_X];
    c->x2 = ca->a[A_X2] ? &ca->t[A_X2] : NULL;
    c->w = ca->a[A_W] ? &ca->t[A_W] : NULL;
    c->b = ca->a[A_B] ? &ca->t[A_B] : NULL;
    c->y = ca->a[A_Y] ? &ca->t[A_Y] : NULL;
    c->running_mean = ca->a[A_RM] ? &ca->t[A_RM] : NULL;
    c->running_var = ca->a[A_RV] ? &ca->t[A_RV] : NULL;
    c->dout = ca->a[A_DOUT] ? &ca->t[A_DOUT] : NULL;
    return 0;
}

static int parse_names(const char *opname, const char *bname, dsv_op *op,
                       dsv_backend *backend)
{
    dsv_status s;
    if ((s = dsv_op_from_name(opname, op)) || (s = dsv_backend_from_name(bname, backend))) {
        raise_status(s);
        return -1;
    }
    return 0;
}

/* Runs forward or backward with the GIL released; -1 with an exception set. */
static int run(dsv_call *c, dsv_backend backend, bool backward)
{
    dsv_status s;
    Py_BEGIN_ALLOW_THREADS
    s = backward ? dsv_backward(c, backend, NULL) : dsv_forward(c, backend, NULL);
    Py_END_ALLOW_THREADS
    if (s) {
        raise_status(s);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(op_forward_doc,
"op_forward(op, x, w=None, b=None, *, x2=None, y=None, running_mean=None,\n"
"           running_var=None, backend='auto', stride=1, pad=0, pool_height=2,\n"
"           pool_width=2, groups=1, eps=1e-5, momentum=0.9, p=0.5, seed=0,\n"
"           row0=0, train=True, want_dx=True)\n"
"--\n\n"
"Runs one op's forward pass and returns a new array (losses: (loss, dx),\n"
"dx None when want_dx is false). The call computes in x's dtype (float32 or\n"
"float64; anything else in float64). Batch-norm running statistics are\n"
"updated in place in train mode.");

static PyObject *op_forward(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"op", "x", "w", "b", "x2", "y", "running_mean",
                             "running_var", "backend", "stride", "pad", "pool_height",
                             "pool_width", "groups", "eps", "momentum", "p", "seed",
                             "row0", "train", "want_dx", NULL};
    const char *opname, *bname = "auto";
    PyObject *obj[A_COUNT] = {0};
    dsv_params p = dsv_params_default();
    unsigned long long seed = 0;
    long long row0 = 0;
    int train = 1, want_dx = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|OO$OOOOsiiiiidddKLpp", kwlist,
                                     &opname, &obj[A_X], &obj[A_W], &obj[A_B],
                                     &obj[A_X2], &obj[A_Y], &obj[A_RM], &obj[A_RV],
                                     &bname, &p.stride, &p.pad, &p.pool_height,
                                     &p.pool_width, &p.groups, &p.eps, &p.momentum,
                                     &p.p, &seed, &row0, &train, &want_dx))
        return NULL;
    dsv_op op;
    dsv_backend backend;
    if (parse_names(opname, bname, &op, &backend))
        return NULL;
    p.seed = seed;
    p.row0 = row0;
    p.train = train;

    dsv_call c = dsv_call_make(op);
    c.p = p;
    call_arrays ca = {0};
    PyArrayObject *out = NULL;
    PyObject *result = NULL;
    double loss = 0;
    dsv_tensor tout;
    int typenum, nd;
    int64_t shape[DSV_MAX_DIMS];
    if (bind_arrays(&ca, &c, obj, &typenum))
        goto fail;
    if (dsv_op_is_loss(op))
        c.loss = &loss;
    /* Validate before allocating: the output's shape comes from the check. */
    dsv_status s = dsv_op_check(&c, false, &nd, shape);
    if (s) {
        raise_status(s);
        goto fail;
    }
    if (dsv_op_is_loss(op)) {
        if (want_dx) {
            if (!(out = new_like(ca.a[A_X])))
                goto fail;
            wrap(out, "dx", &tout);
            c.dx = &tout;
        }
    } else {
        if (!(out = new_array(nd, shape, typenum)))
            goto fail;
        wrap(out, "out", &tout);
        c.out = &tout;
    }
    if (run(&c, backend, false))
        goto fail;
    if (dsv_op_is_loss(op))
        result = Py_BuildValue("(dO)", loss, out ? (PyObject *)out : Py_None);
    else
        result = (PyObject *)out, out = NULL;
fail:
    Py_XDECREF(out);
    call_arrays_release(&ca);
    return result;
}

PyDoc_STRVAR(op_backward_doc,
"op_backward(op, dout, x, w=None, b=None, *, x2=None, running_mean=None,\n"
"            running_var=None, backend='auto', stride=1, pad=0, pool_height=2,\n"
"            pool_width=2, groups=1, eps=1e-5, momentum=0.9, p=0.5, seed=0,\n"
"            row0=0, train=True, want_dx=True, want_dw=True, want_db=True)\n"
"--\n\n"
"Runs one op's backward pass from the forward inputs and dout. Returns\n"
"(dx, dw, db) for ops with weights (gamma, beta for the norms), (dx, dx2)\n"
"for add, dx otherwise; gradients not wanted are None.");

static PyObject *op_backward(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"op", "dout", "x", "w", "b", "x2", "running_mean",
                             "running_var", "backend", "stride", "pad", "pool_height",
                             "pool_width", "groups", "eps", "momentum", "p", "seed",
                             "row0", "train", "want_dx", "want_dw", "want_db", NULL};
    const char *opname, *bname = "auto";
    PyObject *obj[A_COUNT] = {0};
    dsv_params p = dsv_params_default();
    unsigned long long seed = 0;
    long long row0 = 0;
    int train = 1, want[3] = {1, 1, 1};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sOO|OO$OOOsiiiiidddKLppp", kwlist,
                                     &opname, &obj[A_DOUT], &obj[A_X], &obj[A_W],
                                     &obj[A_B], &obj[A_X2], &obj[A_RM], &obj[A_RV],
                                     &bname, &p.stride, &p.pad, &p.pool_height,
                                     &p.pool_width, &p.groups, &p.eps, &p.momentum,
                                     &p.p, &seed, &row0, &train, &want[0], &want[1],
                                     &want[2]))
        return NULL;
    dsv_op op;
    dsv_backend backend;
    if (parse_names(opname, bname, &op, &backend))
        return NULL;
    p.seed = seed;
    p.row0 = row0;
    p.train = train;

    dsv_call c = dsv_call_make(op);
    c.p = p;
    call_arrays ca = {0};
    /* dx, then dw/db or dx2 */
    PyArrayObject *g[3] = {0};
    dsv_tensor tg[3];
    PyObject *result = NULL;
    int typenum;
    if (bind_arrays(&ca, &c, obj, &typenum))
        goto fail;
    dsv_status s = dsv_op_check(&c, true, NULL, NULL);
    if (s) {
        raise_status(s);
        goto fail;
    }
    bool weights = dsv_op_has_weights(op), add = op == DSV_OP_ADD;
    PyArrayObject *like[3] = {ca.a[A_X], weights ? ca.a[A_W] : add ? ca.a[A_X2] : NULL,
                              weights ? ca.a[A_B] : NULL};
    dsv_tensor **slot[3] = {&c.dx, weights ? &c.dw : &c.dx2, &c.db};
    for (int i = 0; i < 3; i++) {
        if (!like[i] || !want[i])
            continue;
        if (!(g[i] = new_like(like[i])))
            goto fail;
        wrap(g[i], "gradient", &tg[i]);
        *slot[i] = &tg[i];
    }
    if (run(&c, backend, true))
        goto fail;
#define OR_NONE(a) ((a) ? (PyObject *)(a) : Py_None)
    if (weights)
        result = Py_BuildValue("(OOO)", OR_NONE(g[0]), OR_NONE(g[1]), OR_NONE(g[2]));
    else if (add)
        result = Py_BuildValue("(OO)", OR_NONE(g[0]), OR_NONE(g[1]));
    else
        result = Py_NewRef(OR_NONE(g[0]));
#undef OR_NONE
fail:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(g[i]);
    call_arrays_release(&ca);
    return result;
}

static PyObject *set_num_threads(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < INT_MIN || n > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "thread count %ld is out of range", n);
        return NULL;
    }
    dsv_status s = dsv_set_num_threads((int)n);
    if (s)
        return raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *get_num_threads(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(dsv_get_num_threads());
}

static PyObject *backend_available(PyObject *self, PyObject *args)
{
    const char *name;
    dsv_backend b;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    dsv_status s = dsv_backend_from_name(name, &b);
    if (s)
        return raise_status(s);
    return PyBool_FromLong(dsv_backend_available(b));
}

static PyObject *op_names(PyObject *self, PyObject *unused)
{
    PyObject *t = PyTuple_New(DSV_OP_COUNT);
    if (!t)
        return NULL;
    for (int i = 0; i < DSV_OP_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(dsv_op_name((dsv_op)i));
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyMethodDef methods[] = {
    {"op_forward", (PyCFunction)(void (*)(void))op_forward, METH_VARARGS | METH_KEYWORDS,
     op_forward_doc},
    {"op_backward", (PyCFunction)(void (*)(void))op_backward, METH_VARARGS | METH_KEYWORDS,
     op_backward_doc},
    {"set_num_threads", set_num_threads, METH_O,
     "set_num_threads(n)\n--\n\nThreads for the engine's kernels and oneDNN alike (n >= 1)."},
    {"get_num_threads", get_num_threads, METH_NOARGS,
     "get_num_threads()\n--\n\nThe engine's thread count."},
    {"backend_available", backend_available, METH_VARARGS,
     "backend_available(name)\n--\n\nWhether backend 'naive', 'fast', 'onednn' or 'auto' "
     "is built in."},
    {"op_names", op_names, METH_NOARGS, "op_names()\n--\n\nThe engine's op names."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dasecv",
    "numpy binding of the dasecv engine's layer ops (see the dasecv package).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__dasecv(void);
PyMODINIT_FUNC PyInit__dasecv(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module);
    if (m && dsvpy_add_model_api(m) < 0)
        Py_CLEAR(m);
    return m;
}
