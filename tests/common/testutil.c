/*
 * Helpers shared by the tests. Random data is seeded so failures repeat.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal/rng.h"
#include "testutil.h"

uint64_t tu_next(tu_rng *r)
{
    return dsv_splitmix64(&r->s);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1.0p-53; }

double tu_normal(tu_rng *r)
{
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

dsv_tensor tu_zeros(dsv_dtype dt, int ndim, const int64_t *shape)
{
    dsv_tensor t;
    TU_OK(dsv_tensor_init(&t, dt, ndim, shape));
    return t;
}

dsv_tensor tu_randn(tu_rng *r, dsv_dtype dt, int ndim, const int64_t *shape,
                    double scale)
{
    dsv_tensor t = tu_zeros(dt, ndim, shape);
    for (int64_t i = 0; i < dsv_tensor_numel(&t); i++)
        dsv_tensor_set(&t, i, tu_normal(r) * scale);
    return t;
}

dsv_tensor tu_labels(tu_rng *r, int64_t n, int classes)
{
    dsv_tensor t = tu_zeros(DSV_I32, 1, &n);
    for (int64_t i = 0; i < n; i++)
        ((int32_t *)t.data)[i] = (int32_t)(tu_next(r) % (uint64_t)classes);
    return t;
}

double tu_rel_error(const dsv_tensor *a, const dsv_tensor *b)
{
    assert_int_equal(dsv_tensor_numel(a), dsv_tensor_numel(b));
    double worst = 0;
    for (int64_t i = 0; i < dsv_tensor_numel(a); i++) {
        double x = dsv_tensor_get(a, i), y = dsv_tensor_get(b, i);
        double d = fabs(x - y) / fmax(1e-8, fabs(x) + fabs(y));
        if (!(d <= worst)) /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

static char pathbuf[4096];

const char *tu_fixture(const char *name)
{
    const char *dir = getenv("DSV_FIXTURES");
    snprintf(pathbuf, sizeof(pathbuf), "%s/%s", dir ? dir : "tests/fixtures", name);
    return pathbuf;
}

const char *tu_scratch(const char *name)
{
    const char *dir = getenv("DSV_SCRATCH");
    if (!dir)
        dir = "/tmp";
    mkdir(dir, 0777);
    snprintf(pathbuf, sizeof(pathbuf), "%s/%s", dir, name);
    return pathbuf;
}
