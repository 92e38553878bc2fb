/*
 * What the two files of dasecv._dasecv share: the numpy C API (imported once,
 * in _dasecv.c) and the array conversions, in _dasecv.c.
 */
#ifndef DASECV_PY_DASECV_H
#define DASECV_PY_DASECV_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL dasecv_ARRAY_API
#ifndef DSVPY_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <dasecv/ops.h>
#include <dasecv/tensor.h>

/* The engine status as the closest Python exception, with dsv_errmsg(). */
PyObject *raise_status(dsv_status s);
/* obj as a C-contiguous, aligned float32/float64 array, converted only when
 * exact (new reference; NULL with an exception). */
PyArrayObject *to_float_array(PyObject *obj, int typenum, const char *name);
/* Labels as C-contiguous int32 (new reference). */
PyArrayObject *to_labels(PyObject *obj);
/* A dsv_tensor view of a (1 to 4 dimensions, none empty); -1 with an exception. */
int wrap(PyArrayObject *a, const char *name, dsv_tensor *t);

/* _model.c: the Model and Solver types and their module functions. */
int dsvpy_add_model_api(PyObject *module);

#endif
