/*
 * A model's arrays as an .npz archive (npz.h): every parameter under its
 * name (NODE.w, NODE.b, NODE.gamma, NODE.beta) and every buffer (the batch
 * norms' NODE.running_mean and NODE.running_var), in the model's dtype, so
 * that numpy.load gives exactly the engine's values; and the reverse, to
 * start from weights exported or trained elsewhere.
 *
 * What must stay true: loading is all or nothing. Every name and shape is
 * checked against the model before a value is written, so a mismatched
 * archive leaves the model as it was.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dasecv/graph.h"
#include "dasecv/model.h"
#include "dasecv/npz.h"

/* Parameters first, then buffers: the arrays of the model, in order. */
static int num_arrays(dsv_model *m)
{
    return dsv_model_num_tensors(m) + dsv_graph_num_buffers(dsv_model_graph(m));
}

static const char *array_name(dsv_model *m, int i)
{
    int np = dsv_model_num_tensors(m);
    return i < np ? dsv_model_tensor_name(m, i)
                  : dsv_graph_buffer_name(dsv_model_graph(m), i - np);
}

static dsv_tensor array(dsv_model *m, int i)
{
    int np = dsv_model_num_tensors(m);
    return i < np ? dsv_model_param(m, i) : dsv_graph_buffer(dsv_model_graph(m), i - np);
}

dsv_status dsv_model_save_npz(dsv_model *m, const char *path)
{
    int n = num_arrays(m);
    const char **names = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    dsv_tensor *t = malloc(sizeof(dsv_tensor) * (size_t)(n ? n : 1));
    dsv_status s;
    if (!names || !t) {
        s = dsv_error(DSV_NOMEM, "export: out of memory");
    } else {
        for (int i = 0; i < n; i++) {
            names[i] = array_name(m, i);
            t[i] = array(m, i);
        }
        s = dsv_npz_write(path, n, names, t);
    }
    free(names);
    free(t);
    return s;
}

static const char *shape_str(const dsv_tensor *t, char *buf, size_t n)
{
    return dsv_tensor_shape_str(t, buf, n);
}

dsv_status dsv_model_load_npz(dsv_model *m, const char *path)
{
    dsv_npz *z;
    dsv_status s = dsv_npz_read(path, &z);
    if (s)
        return s;
    int n = num_arrays(m);
    /* names and shapes, both ways, before anything is written */
    for (int i = 0; i < n && !s; i++) {
        const char *name = array_name(m, i);
        int k = dsv_npz_find(z, name);
        if (k < 0) {
            s = dsv_error(DSV_INVALID, "%s has no array '%s' (it has %d; the model needs %d)",
                          path, name, dsv_npz_count(z), n);
            break;
        }
        dsv_tensor want = array(m, i);
        const dsv_tensor *got = dsv_npz_tensor(z, k);
        if (!dsv_dtype_is_float(got->dtype)) {
            s = dsv_error(DSV_INVALID, "%s: '%s' holds %s, not floats", path, name,
                          dsv_dtype_name(got->dtype));
        } else if (got->ndim != want.ndim || !dsv_tensor_same_shape(got, &want)) {
            char a[64], b[64];
            s = dsv_error(DSV_INVALID, "%s: '%s' has shape %s; the model's is %s", path, name,
                          shape_str(got, a, sizeof(a)), shape_str(&want, b, sizeof(b)));
        } else {
            int64_t len = dsv_tensor_numel(got);
            for (int64_t j = 0; j < len; j++)
                if (!isfinite(dsv_tensor_get(got, j))) {
                    s = dsv_error(DSV_INVALID, "%s: '%s' holds a NaN or infinity at %lld",
                                  path, name, (long long)j);
                    break;
                }
        }
    }
    for (int k = 0; k < dsv_npz_count(z) && !s; k++) {
        const char *name = dsv_npz_name(z, k);
        bool known = false;
        for (int i = 0; i < n && !known; i++)
            known = strcmp(array_name(m, i), name) == 0;
        if (!known)
            s = dsv_error(DSV_INVALID, "%s: array '%s' is not one of the model's", path, name);
    }
    for (int i = 0; i < n && !s; i++) {
        dsv_tensor dst = array(m, i);
        s = dsv_tensor_copy(&dst, dsv_npz_tensor(z, dsv_npz_find(z, array_name(m, i))));
    }
    dsv_npz_free(z);
    return s;
}
