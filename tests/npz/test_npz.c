/*
 * .npz archives: round trips of every dtype and rank (0-d and empty too),
 * argument errors, a battery of malformed archives that must each give a
 * clear error naming the file and member, and numpy interoperability both
 * ways through /usr/bin/python3 (npz_interop.py).
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#include "testutil.h"

/* ---- the arrays npz_interop.py expects (same formulas) --------------------- */

enum { NARR = 7 };
static const char *const arr_names[NARR] = {
    "conv1.w", "conv1.b", "bn1.running_mean", "labels", "image", "scalar", "empty",
};

typedef struct arrays {
    float w[24], b[2], empty[1];
    double mean[5], scalar;
    int32_t labels[6];
    uint8_t image[8];
    dsv_tensor t[NARR];
} arrays;

static void make_arrays(arrays *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < 24; i++)
        a->w[i] = (float)i * 0.25f - 3;
    a->b[0] = 1.5f;
    a->b[1] = -2.25f;
    for (int i = 0; i < 5; i++)
        a->mean[i] = (double)i / 3;
    for (int i = 0; i < 6; i++)
        a->labels[i] = i * 7 - 20;
    for (int i = 0; i < 8; i++)
        a->image[i] = (uint8_t)(i * 31);
    a->scalar = 0.125;
    a->t[0] = dsv_tensor_wrap(a->w, DSV_F32, 4, (int64_t[]){2, 3, 2, 2});
    a->t[1] = dsv_tensor_wrap(a->b, DSV_F32, 1, (int64_t[]){2});
    a->t[2] = dsv_tensor_wrap(a->mean, DSV_F64, 1, (int64_t[]){5});
    a->t[3] = dsv_tensor_wrap(a->labels, DSV_I32, 2, (int64_t[]){2, 3});
    a->t[4] = dsv_tensor_wrap(a->image, DSV_U8, 3, (int64_t[]){1, 2, 4});
    /* 0-d and empty tensors cannot come from dsv_tensor_wrap */
    a->t[5] = (dsv_tensor){.data = &a->scalar, .dtype = DSV_F64, .ndim = 0,
                           .shape = {1, 1, 1, 1}};
    a->t[6] = (dsv_tensor){.data = a->empty, .dtype = DSV_F32, .ndim = 2,
                           .shape = {0, 3, 1, 1}};
}

static void assert_same(const dsv_tensor *got, const dsv_tensor *want)
{
    assert_int_equal(got->dtype, want->dtype);
    assert_int_equal(got->ndim, want->ndim);
    for (int i = 0; i < DSV_MAX_DIMS; i++)
        assert_int_equal(got->shape[i], i < want->ndim ? want->shape[i] : 1);
    assert_non_null(got->data);
    assert_memory_equal(got->data, want->data, dsv_tensor_nbytes(want));
}

static void assert_holds(const dsv_npz *z, const arrays *a)
{
    for (int i = 0; i < NARR; i++) {
        int k = dsv_npz_find(z, arr_names[i]);
        if (k < 0)
            fail_msg("member '%s' missing", arr_names[i]);
        assert_string_equal(dsv_npz_name(z, k), arr_names[i]);
        assert_same(dsv_npz_tensor(z, k), &a->t[i]);
    }
}

/* Number of entries in the scratch directory whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* ---- round trips ------------------------------------------------------------ */

static void test_round_trip(void **state)
{
    (void)state;
    arrays a;
    make_arrays(&a);
    char path[4096];
    snprintf(path, sizeof(path), "%s", tu_scratch("npz_rt.npz"));
    unlink(path);
    /* twice: the second write replaces the first atomically */
    for (int rep = 0; rep < 2; rep++)
        TU_OK(dsv_npz_write(path, NARR, arr_names, a.t));
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(count_files(dir, "npz_rt.npz"), 1); /* no temporary left */

    dsv_npz *z = NULL;
    TU_OK(dsv_npz_read(path, &z));
    assert_int_equal(dsv_npz_count(z), NARR);
    for (int i = 0; i < NARR; i++) /* archive order is the order given */
        assert_string_equal(dsv_npz_name(z, i), arr_names[i]);
    assert_holds(z, &a);
    assert_int_equal(dsv_npz_tensor(z, 5)->ndim, 0);
    assert_int_equal(dsv_tensor_numel(dsv_npz_tensor(z, 5)), 1);
    assert_int_equal(dsv_tensor_numel(dsv_npz_tensor(z, 6)), 0);
    assert_int_equal(dsv_npz_find(z, "conv1"), -1);
    assert_int_equal(dsv_npz_find(z, "conv1.w.npy"), -1);
    assert_null(dsv_npz_name(z, NARR));
    assert_null(dsv_npz_tensor(z, -1));
    dsv_npz_free(z);

    /* an empty archive is a valid one */
    TU_OK(dsv_npz_write(path, 0, NULL, NULL));
    TU_OK(dsv_npz_read(path, &z));
    assert_int_equal(dsv_npz_count(z), 0);
    dsv_npz_free(z);
}

/* Every dtype at every rank from 0 to 4, random contents. */
static void test_ranks_and_dtypes(void **state)
{
    (void)state;
    tu_rng r = {42};
    enum { N = DSV_DTYPE_COUNT * (DSV_MAX_DIMS + 1) };
    dsv_tensor t[N];
    char names[N][32];
    const char *np[N];
    const int64_t dims[DSV_MAX_DIMS] = {3, 1, 4, 2};
    for (int d = 0; d < DSV_DTYPE_COUNT; d++)
        for (int nd = 0; nd <= DSV_MAX_DIMS; nd++) {
            int k = d * (DSV_MAX_DIMS + 1) + nd;
            t[k] = (dsv_tensor){.dtype = (dsv_dtype)d, .ndim = nd, .shape = {1, 1, 1, 1},
                                .owner = true};
            for (int i = 0; i < nd; i++)
                t[k].shape[i] = dims[i];
            t[k].data = dsv_alloc(dsv_tensor_nbytes(&t[k]));
            assert_non_null(t[k].data);
            unsigned char *b = t[k].data;
            for (size_t i = 0; i < dsv_tensor_nbytes(&t[k]); i++)
                b[i] = (unsigned char)tu_next(&r);
            snprintf(names[k], sizeof(names[k]), "%s/rank%d", dsv_dtype_name(t[k].dtype), nd);
            np[k] = names[k];
        }
    const char *path = tu_scratch("npz_ranks.npz");
    TU_OK(dsv_npz_write(path, N, np, t));
    dsv_npz *z = NULL;
    TU_OK(dsv_npz_read(path, &z));
    assert_int_equal(dsv_npz_count(z), N);
    for (int k = 0; k < N; k++) {
        assert_string_equal(dsv_npz_name(z, k), names[k]);
        assert_same(dsv_npz_tensor(z, k), &t[k]);
        dsv_tensor_free(&t[k]);
    }
    dsv_npz_free(z);
}

static void test_write_errors(void **state)
{
    (void)state;
    arrays a;
    make_arrays(&a);
    const char *path = tu_scratch("npz_bad_write.npz");
    unlink(path);
    const char *dup[2] = {"x", "x"};
    assert_int_equal(dsv_npz_write(path, 2, dup, a.t), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "'x' given twice"));
    const char *empty[1] = {""};
    assert_int_equal(dsv_npz_write(path, 1, empty, a.t), DSV_INVALID);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *lp[1] = {longname};
    assert_int_equal(dsv_npz_write(path, 1, lp, a.t), DSV_INVALID);
    const char *one[1] = {"w"};
    dsv_tensor bad = a.t[0];
    bad.dtype = DSV_DTYPE_COUNT;
    assert_int_equal(dsv_npz_write(path, 1, one, &bad), DSV_INVALID);
    bad = a.t[0];
    bad.ndim = 5;
    assert_int_equal(dsv_npz_write(path, 1, one, &bad), DSV_INVALID);
    bad = a.t[0];
    bad.data = NULL;
    assert_int_equal(dsv_npz_write(path, 1, one, &bad), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "w.npy"));
    bad = a.t[0];
    bad.shape[1] = -1;
    assert_int_equal(dsv_npz_write(path, 1, one, &bad), DSV_INVALID);
    assert_int_equal(dsv_npz_write(path, -1, one, a.t), DSV_INVALID);
    assert_int_equal(dsv_npz_write(NULL, 1, one, a.t), DSV_INVALID);
    assert_int_equal(access(path, F_OK), -1); /* nothing written on failure */
    assert_int_equal(dsv_npz_write("/nonexistent-dir/x.npz", 1, one, a.t), DSV_IO);
}

/* ---- malformed archives ------------------------------------------------------ */

/* A zip holding members names[i] with contents data[i] (stored). */
static void make_zip(const char *path, int n, const char *const *names,
                     const void *const *data, const size_t *len)
{
    unlink(path);
    int err;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    assert_non_null(za);
    for (int i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(za, data[i], len[i], 0);
        assert_non_null(s);
        zip_int64_t k = zip_file_add(za, names[i], s, 0);
        assert_true(k >= 0);
        assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)k, ZIP_CM_STORE, 0), 0);
    }
    assert_int_equal(zip_close(za), 0);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Reading path fails with status, and the message names what it must. */
static void expect_fail(const char *path, dsv_status status, const char *part1,
                        const char *part2)
{
    dsv_npz *z = (dsv_npz *)1;
    dsv_status s = dsv_npz_read(path, &z);
    if (s != status)
        fail_msg("%s: expected %s, got %s (%s)", path, dsv_status_name(status),
                 dsv_status_name(s), dsv_errmsg());
    assert_null(z);
    const char *m = dsv_errmsg();
    if (!strstr(m, path) || (part1 && !strstr(m, part1)) || (part2 && !strstr(m, part2)))
        fail_msg("message '%s' should name '%s', '%s' and '%s'", m, path,
                 part1 ? part1 : "", part2 ? part2 : "");
}

/* A valid .npy image of 3 float32 values. */
static unsigned char *npy3(size_t *n)
{
    const char *tmp = tu_scratch("npz_tmp3.npy");
    float v[3] = {1, 2, 3};
    dsv_tensor t = dsv_tensor_wrap(v, DSV_F32, 1, (int64_t[]){3});
    TU_OK(dsv_npy_save(tmp, &t));
    return slurp(tmp, n);
}

/* Replaces every occurrence of the n bytes from with to in b. */
static int patch(unsigned char *b, size_t len, const void *from, const void *to, size_t n)
{
    int k = 0;
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(b + i, from, n)) {
            memcpy(b + i, to, n);
            k++;
        }
    return k;
}

static void test_bad_archives(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof(path), "%s", tu_scratch("npz_bad.npz"));
    size_t nn;
    unsigned char *good = npy3(&nn);

    expect_fail(tu_scratch("npz_missing.npz"), DSV_IO, NULL, NULL);
    spit(path, "", 0);
    expect_fail(path, DSV_CORRUPT, "not a valid", NULL);
    spit(path, "this is not a zip archive at all, just some text\n", 49);
    expect_fail(path, DSV_CORRUPT, "not a valid", NULL);
    /* a bare .npy is not an archive either */
    spit(path, good, nn);
    expect_fail(path, DSV_CORRUPT, "not a valid", NULL);

    /* a member that is not .npy, and a directory entry */
    {
        const char *names[2] = {"a.npy", "readme.txt"};
        const void *data[2] = {good, "hi"};
        size_t len[2] = {nn, 2};
        make_zip(path, 2, names, data, len);
        expect_fail(path, DSV_CORRUPT, "'readme.txt'", "not a .npy");
        names[1] = "dir/";
        len[1] = 0;
        make_zip(path, 2, names, data, len);
        expect_fail(path, DSV_CORRUPT, "'dir/'", NULL);
        names[1] = ".npy";
        make_zip(path, 2, names, data, len);
        expect_fail(path, DSV_CORRUPT, "'.npy'", NULL);
    }
    /* bad .npy members: not npy, truncated data, trailing bytes, bad header */
    {
        const char *names[1] = {"w.npy"};
        const void *data[1] = {"not an npy"};
        size_t len[1] = {10};
        make_zip(path, 1, names, data, len);
        expect_fail(path, DSV_CORRUPT, "w.npy", "bad magic");
        data[0] = good;
        len[0] = nn - 1;
        make_zip(path, 1, names, data, len);
        expect_fail(path, DSV_CORRUPT, "w.npy", "do not match");
        unsigned char *longer = malloc(nn + 4);
        memcpy(longer, good, nn);
        memset(longer + nn, 0, 4);
        data[0] = longer;
        len[0] = nn + 4;
        make_zip(path, 1, names, data, len);
        expect_fail(path, DSV_CORRUPT, "w.npy", "do not match");
        memcpy(longer, good, nn);
        assert_int_equal(patch(longer, nn, "'shape': (3,)", "'shape': (3)'", 13), 1);
        data[0] = longer;
        len[0] = nn;
        make_zip(path, 1, names, data, len);
        expect_fail(path, DSV_CORRUPT, "w.npy", "header");
        memcpy(longer, good, nn);
        assert_int_equal(patch(longer, nn, "'<f4'", "'<c8'", 5), 1);
        make_zip(path, 1, names, data, len);
        expect_fail(path, DSV_UNSUPPORTED, "w.npy", "complex");
        free(longer);
    }
    /* two members with the same name: written as "a.npy", "b.npy" and renamed */
    {
        const char *names[3] = {"a.npy", "c.npy", "b.npy"};
        const void *data[3] = {good, good, good};
        size_t len[3] = {nn, nn, nn};
        make_zip(path, 3, names, data, len);
        size_t n;
        unsigned char *b = slurp(path, &n);
        assert_int_equal(patch(b, n, "b.npy", "a.npy", 5), 2);
        spit(path, b, n);
        free(b);
        expect_fail(path, DSV_CORRUPT, "same name", NULL);
    }
    /* damaged containers: truncated, a flipped data byte (CRC), forged sizes */
    {
        const char *names[1] = {"w.npy"};
        const void *data[1] = {good};
        size_t len[1] = {nn};
        make_zip(path, 1, names, data, len);
        size_t n;
        unsigned char *b = slurp(path, &n);
        spit(path, b, n / 2);
        expect_fail(path, DSV_CORRUPT, NULL, NULL);
        unsigned char *c = malloc(n);
        memcpy(c, b, n);
        c[30 + 5 + nn - 1] ^= 0x40; /* last data byte: header 30 + name 5 */
        spit(path, c, n);
        expect_fail(path, DSV_CORRUPT, "w.npy", NULL);
        /* both size fields of both headers claim 2^32 - 1 bytes */
        memcpy(c, b, n);
        uint32_t real = (uint32_t)nn, huge = 0xffffffffu;
        assert_int_equal(patch(c, n, &real, &huge, 4), 4);
        spit(path, c, n);
        expect_fail(path, DSV_CORRUPT, NULL, NULL);
        free(c);
        free(b);
    }
    free(good);
}

/* A member claims a huge size that its compressed bytes cannot hold: the
 * reader refuses before allocating. Built by patching the uncompressed size
 * field of both headers (local at 22, central at 24 past its signature). */
static void test_forged_size(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof(path), "%s", tu_scratch("npz_forged.npz"));
    size_t nn;
    unsigned char *good = npy3(&nn);
    const char *names[1] = {"w.npy"};
    const void *data[1] = {good};
    size_t len[1] = {nn};
    make_zip(path, 1, names, data, len);
    size_t n;
    unsigned char *b = slurp(path, &n);
    const uint32_t huge = 0x7fffffffu;
    memcpy(b + 22, &huge, 4);
    int central = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(b + i, "PK\x01\x02", 4)) {
            memcpy(b + i + 24, &huge, 4);
            central++;
        }
    assert_int_equal(central, 1);
    spit(path, b, n);
    expect_fail(path, DSV_CORRUPT, "w.npy", "claims");
    free(b);
    free(good);
}

/* ---- numpy interoperability ---------------------------------------------------- */

static int have_numpy(void)
{
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

static const char *script(void)
{
    static char buf[4096];
    const char *dir = getenv("DSV_NPZ_SCRIPT_DIR");
    snprintf(buf, sizeof(buf), "%s/npz_interop.py", dir ? dir : ".");
    return buf;
}

static void test_numpy_reads_ours(void **state)
{
    (void)state;
    if (!have_numpy())
        skip();
    arrays a;
    make_arrays(&a);
    char path[4096], cmd[9000];
    snprintf(path, sizeof(path), "%s", tu_scratch("npz_for_numpy.npz"));
    TU_OK(dsv_npz_write(path, NARR, arr_names, a.t));
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' check '%s'", script(), path);
    assert_int_equal(system(cmd), 0);
    /* the checker itself: a changed value must fail it */
    a.w[5] += 1;
    TU_OK(dsv_npz_write(path, NARR, arr_names, a.t));
    assert_int_not_equal(system(cmd), 0);
}

static void test_we_read_numpy(void **state)
{
    (void)state;
    if (!have_numpy())
        skip();
    char dir[4096], cmd[9000];
    snprintf(dir, sizeof(dir), "%s", tu_scratch("npz_from_numpy"));
    mkdir(dir, 0777);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' make '%s'", script(), dir);
    assert_int_equal(system(cmd), 0);
    arrays a;
    make_arrays(&a);
    const char *files[2] = {"savez.npz", "savez_compressed.npz"};
    for (int f = 0; f < 2; f++) {
        char path[8300];
        snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
        dsv_npz *z = NULL;
        TU_OK(dsv_npz_read(path, &z));
        assert_int_equal(dsv_npz_count(z), NARR + 1);
        assert_holds(z, &a);
        const dsv_tensor *l = dsv_npz_tensor(z, dsv_npz_find(z, "labels64"));
        assert_non_null(l);
        assert_int_equal(l->dtype, DSV_I32); /* int64 labels become int32 */
        assert_int_equal(l->ndim, 1);
        assert_int_equal(l->shape[0], 4);
        for (int i = 0; i < 4; i++)
            assert_int_equal(((const int32_t *)l->data)[i], i * 1000 - 1500);
        dsv_npz_free(z);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_ranks_and_dtypes),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_bad_archives),
        cmocka_unit_test(test_forged_size),
        cmocka_unit_test(test_numpy_reads_ours),
        cmocka_unit_test(test_we_read_numpy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
