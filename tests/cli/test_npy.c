/*
 * .npy reader and writer: round trips, hand-built files as other writers
 * make them (v2.0/v3.0 headers, every integer dtype, odd header spacing), a
 * battery of malformed files that must each give a clear error, and a seeded
 * mutation fuzzer over a valid file's header.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

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

/* A .npy file with the given version and header text (padded as numpy does
 * unless pad is false), followed by n bytes of data. */
static void write_npy(const char *path, int major, const char *hdr, bool pad,
                      const void *data, size_t n)
{
    size_t pre = major == 1 ? 10 : 12, hl = strlen(hdr);
    size_t total = pad ? (pre + hl + 1 + 63) / 64 * 64 : pre + hl;
    unsigned char *b = calloc(1, total + n + 1);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    size_t len = total - pre;
    for (size_t i = 0; i < pre - 8; i++)
        b[8 + i] = (unsigned char)(len >> (8 * i));
    memcpy(b + pre, hdr, hl);
    if (pad) {
        memset(b + pre + hl, ' ', total - pre - hl - 1);
        b[total - 1] = '\n';
    }
    if (n)
        memcpy(b + total, data, n);
    spit(path, b, total + n);
    free(b);
}

/* Bitwise equality of two tensors' dtype, shape and data. */
static bool same_tensor(const dsv_tensor *a, const dsv_tensor *b)
{
    return a->dtype == b->dtype && dsv_tensor_same_shape(a, b) &&
           memcmp(a->data, b->data, dsv_tensor_nbytes(a)) == 0;
}

/* True when loading path fails with status s, leaves no tensor behind, and
 * gives a message naming the file and containing `needle`; why says what
 * happened otherwise. */
static bool load_fails(const char *path, dsv_status s, const char *needle, char *why,
                       size_t cap)
{
    dsv_tensor t;
    dsv_status got = dsv_npy_load(path, &t);
    snprintf(why, cap, "got %s (%s)", dsv_status_name(got), dsv_errmsg());
    if (got == DSV_OK)
        dsv_tensor_free(&t);
    return got == s && t.data == NULL && strstr(dsv_errmsg(), path) &&
           strstr(dsv_errmsg(), needle);
}

static void expect_fail(const char *path, dsv_status s, const char *needle)
{
    char why[1024];
    if (!load_fails(path, s, needle, why, sizeof(why)))
        fail_msg("%s: wanted %s saying '%s', %s", path, dsv_status_name(s), needle, why);
}

/* ---- round trips ---------------------------------------------------------- */

static void test_round_trips(void **st)
{
    (void)st;
    static const int64_t shapes[][5] = {
        /* ndim, dims */
        {1, 1}, {1, 7}, {2, 3, 4}, {3, 2, 3, 5}, {4, 2, 3, 4, 5}, {2, 1000, 37},
        {4, 1, 1, 1, 1},
    };
    const dsv_dtype dts[] = {DSV_F32, DSV_F64, DSV_I32};
    tu_rng r = {7};
    for (size_t d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            int nd = (int)shapes[i][0];
            dsv_tensor a = tu_randn(&r, dts[d], nd, &shapes[i][1], 1000);
            const char *path = tu_scratch("npy_rt.npy");
            TU_OK(dsv_npy_save(path, &a));
            size_t n;
            unsigned char *raw = slurp(path, &n);
            /* numpy's layout: v1.0, header padded to 64 bytes, '\n' last */
            assert_int_equal(raw[6], 1);
            size_t hl = raw[8] | (size_t)raw[9] << 8;
            assert_int_equal((10 + hl) % 64, 0);
            assert_int_equal(raw[10 + hl - 1], '\n');
            assert_int_equal(n, 10 + hl + dsv_tensor_nbytes(&a));
            free(raw);

            dsv_tensor b;
            TU_OK(dsv_npy_load(path, &b));
            assert_true(same_tensor(&a, &b));
            /* the comparison itself notices a single changed element */
            dsv_tensor_set(&b, dsv_tensor_numel(&b) - 1,
                           dsv_tensor_get(&b, dsv_tensor_numel(&b) - 1) + 1);
            assert_false(same_tensor(&a, &b));
            dsv_tensor_free(&a);
            dsv_tensor_free(&b);
        }
}

/* The exact header numpy.save writes for these arrays. */
static void test_header_text(void **st)
{
    (void)st;
    struct {
        dsv_dtype dt;
        int nd;
        int64_t shape[4];
        const char *hdr;
    } cases[] = {
        {DSV_F32, 1, {3}, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"},
        {DSV_F64, 2, {2, 3}, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"},
        {DSV_I32, 4, {2, 3, 4, 5},
         "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4, 5), }"},
    };
    for (size_t i = 0; i < 3; i++) {
        dsv_tensor t = tu_zeros(cases[i].dt, cases[i].nd, cases[i].shape);
        const char *path = tu_scratch("npy_hdr.npy");
        TU_OK(dsv_npy_save(path, &t));
        size_t n;
        unsigned char *raw = slurp(path, &n);
        size_t hl = strlen(cases[i].hdr);
        assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
        assert_memory_equal(raw + 10, cases[i].hdr, hl);
        for (size_t k = 10 + hl; k < 63; k++)
            assert_int_equal(raw[k], ' ');
        free(raw);
        dsv_tensor_free(&t);
    }
}

static void test_save_atomic_and_rejects(void **st)
{
    (void)st;
    const char *p = tu_scratch("npy_atomic.npy");
    char path[4096];
    snprintf(path, sizeof(path), "%s", p);
    dsv_tensor a = tu_zeros(DSV_F32, 1, (int64_t[]){5});
    TU_OK(dsv_npy_save(path, &a));
    /* overwrite with a different array: the new content replaces the old */
    dsv_tensor b = tu_zeros(DSV_F64, 2, (int64_t[]){2, 2});
    dsv_tensor_set(&b, 3, 4.5);
    TU_OK(dsv_npy_save(path, &b));
    dsv_tensor c;
    TU_OK(dsv_npy_load(path, &c));
    assert_true(same_tensor(&b, &c));
    dsv_tensor_free(&c);

    /* no temporary file is left next to it */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q 'npy_atomic.npy.tmp'", dir);
    assert_int_not_equal(system(cmd), 0);

    /* a failing save leaves the old file alone and says why */
    char bad[4200];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/x.npy", dir);
    assert_int_equal(dsv_npy_save(bad, &a), DSV_IO);
    assert_non_null(strstr(dsv_errmsg(), bad));
    dsv_tensor u8 = tu_zeros(DSV_U8, 1, (int64_t[]){3});
    assert_int_equal(dsv_npy_save(path, &u8), DSV_UNSUPPORTED);
    dsv_tensor empty = {0};
    assert_int_equal(dsv_npy_save(path, &empty), DSV_INVALID);
    TU_OK(dsv_npy_load(path, &c));
    assert_true(same_tensor(&b, &c));
    dsv_tensor_free(&c);
    dsv_tensor_free(&u8);
    dsv_tensor_free(&a);
    dsv_tensor_free(&b);
}

/* ---- files made by other writers ------------------------------------------ */

static void test_hand_built_headers(void **st)
{
    (void)st;
    const float v[6] = {1, -2, 3.5f, 4, 5, 6};
    const char *path = tu_scratch("npy_hand.npy");
    struct {
        int major;
        bool pad;
        const char *hdr;
        int nd;
        int64_t d0, d1;
    } cases[] = {
        {2, true, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 2, 2, 3},
        {3, true, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 1, 6, 1},
        {1, true, "{'shape': (3, 2), 'fortran_order': False, 'descr': '<f4'}", 2, 3, 2},
        {1, false, "{ \"descr\" : \"<f4\" ,\"fortran_order\":False,'shape':( 2 ,3 , ) }", 2,
         2, 3},
        {1, true, "{'descr': '|f4', 'fortran_order': False, 'shape': (6L,), }", 1, 6, 1},
        {1, false, "{'descr':'<f4','fortran_order':False,'shape':(1,2,3)}\n", 3, 1, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_npy(path, cases[i].major, cases[i].hdr, cases[i].pad, v, sizeof(v));
        dsv_tensor t;
        dsv_status s = dsv_npy_load(path, &t);
        if (s)
            fail_msg("case %zu: %s", i, dsv_errmsg());
        assert_int_equal(t.dtype, DSV_F32);
        assert_int_equal(t.ndim, cases[i].nd);
        assert_int_equal(t.shape[0], cases[i].d0);
        assert_int_equal(t.shape[1], cases[i].d1);
        assert_memory_equal(t.data, v, sizeof(v));
        dsv_tensor_free(&t);
    }
    const double dv[2] = {0.25, -1e300};
    write_npy(path, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", true,
              dv, sizeof(dv));
    dsv_tensor t;
    TU_OK(dsv_npy_load(path, &t));
    assert_int_equal(t.dtype, DSV_F64);
    assert_memory_equal(t.data, dv, sizeof(dv));
    dsv_tensor_free(&t);
}

/* Every integer dtype becomes int32 labels, with its edge values. */
static void test_integer_dtypes(void **st)
{
    (void)st;
    const char *path = tu_scratch("npy_ints.npy");
    char hdr[128];
    struct {
        const char *descr;
        int size;
        int64_t vals[3];
    } cases[] = {
        {"|i1", 1, {-128, 0, 127}},       {"|u1", 1, {0, 9, 255}},
        {"<i2", 2, {-32768, 7, 32767}},   {"<u2", 2, {0, 1, 65535}},
        {"<i4", 4, {INT32_MIN, -1, INT32_MAX}}, {"<u4", 4, {0, 3, INT32_MAX}},
        {"<i8", 8, {INT32_MIN, 42, INT32_MAX}}, {"<u8", 8, {0, 5, INT32_MAX}},
        {"<i1", 1, {-1, 2, 3}}, /* some writers spell single bytes with '<' */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char data[24];
        for (int k = 0; k < 3; k++) {
            uint64_t u = (uint64_t)cases[i].vals[k];
            for (int b = 0; b < cases[i].size; b++)
                data[k * cases[i].size + b] = (unsigned char)(u >> (8 * b));
        }
        snprintf(hdr, sizeof(hdr),
                 "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }", cases[i].descr);
        write_npy(path, 1, hdr, true, data, (size_t)(3 * cases[i].size));
        dsv_tensor t;
        dsv_status s = dsv_npy_load(path, &t);
        if (s)
            fail_msg("%s: %s", cases[i].descr, dsv_errmsg());
        assert_int_equal(t.dtype, DSV_I32);
        for (int k = 0; k < 3; k++)
            assert_int_equal(((int32_t *)t.data)[k], cases[i].vals[k]);
        dsv_tensor_free(&t);
    }
    /* values that do not fit int32 */
    struct {
        const char *descr;
        int size;
        uint64_t bad;
    } over[] = {
        {"<i8", 8, (uint64_t)INT32_MAX + 1}, {"<i8", 8, (uint64_t)(int64_t)INT32_MIN - 1},
        {"<u4", 4, (uint64_t)INT32_MAX + 1}, {"<u8", 8, UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        unsigned char data[16] = {0};
        for (int b = 0; b < over[i].size && b < 8; b++)
            data[over[i].size + b] = (unsigned char)(over[i].bad >> (8 * b));
        snprintf(hdr, sizeof(hdr),
                 "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }", over[i].descr);
        write_npy(path, 1, hdr, true, data, (size_t)(2 * over[i].size));
        expect_fail(path, DSV_UNSUPPORTED, "element 1 does not fit in int32");
    }
}

/* ---- malformed files ------------------------------------------------------ */

typedef struct bad_case {
    const char *name;
    int major;
    const char *hdr;
    size_t data_bytes; /* of zeros after the header */
    dsv_status want;
    const char *needle;
} bad_case;

#define H(d, f, s) "{'descr': '" d "', 'fortran_order': " f ", 'shape': " s ", }"

static const bad_case bad_cases[] = {
    {"scalar", 1, H("<f4", "False", "()"), 4, DSV_UNSUPPORTED, "0-d"},
    {"5d", 1, H("<f4", "False", "(1, 1, 1, 1, 2)"), 8, DSV_UNSUPPORTED, "5 dimensions"},
    {"fortran", 1, H("<f4", "True", "(2, 2)"), 16, DSV_UNSUPPORTED, "Fortran"},
    {"bigendian", 1, H(">f4", "False", "(2,)"), 8, DSV_UNSUPPORTED, "big-endian"},
    {"bigendian_i8", 1, H(">i8", "False", "(2,)"), 16, DSV_UNSUPPORTED, "big-endian"},
    {"bool", 1, H("|b1", "False", "(2,)"), 2, DSV_UNSUPPORTED, "bool"},
    {"object", 1, H("|O", "False", "(2,)"), 16, DSV_UNSUPPORTED, "object arrays ('|O')"},
    {"object8", 1, H("|O8", "False", "(2,)"), 16, DSV_UNSUPPORTED, "object"},
    {"complex", 1, H("<c8", "False", "(2,)"), 16, DSV_UNSUPPORTED, "complex"},
    {"half", 1, H("<f2", "False", "(2,)"), 4, DSV_UNSUPPORTED, "float32 or float64"},
    {"string", 1, H("<U3", "False", "(2,)"), 24, DSV_UNSUPPORTED, "<U3"},
    {"structured", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
     DSV_UNSUPPORTED, "structured"},
    {"empty", 1, H("<f4", "False", "(0, 3)"), 0, DSV_UNSUPPORTED, "empty"},
    {"truncated", 1, H("<f4", "False", "(2, 3)"), 20, DSV_CORRUPT, "truncated"},
    {"trailing", 1, H("<f4", "False", "(2, 3)"), 28, DSV_CORRUPT, "trailing"},
    {"huge", 1, H("<f8", "False", "(100000, 100000, 100000)"), 8, DSV_CORRUPT, "truncated"},
    {"overflow", 1, H("<f8", "False", "(4294967296, 4294967296, 4294967296)"), 8, DSV_CORRUPT,
     "overflow"},
    {"dim_too_long", 1, H("<f4", "False", "(99999999999999999999999,)"), 8, DSV_CORRUPT,
     "too large"},
    {"negative", 1, H("<f4", "False", "(-2,)"), 8, DSV_CORRUPT, "negative"},
    {"not_a_tuple", 1, H("<f4", "False", "(2)"), 8, DSV_CORRUPT, "','"},
    {"list_shape", 1, H("<f4", "False", "[2]"), 8, DSV_CORRUPT, "'('"},
    {"missing_shape", 1, "{'descr': '<f4', 'fortran_order': False}", 8, DSV_CORRUPT, "'shape'"},
    {"missing_descr", 1, "{'fortran_order': False, 'shape': (2,)}", 8, DSV_CORRUPT, "'descr'"},
    {"extra_key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
     DSV_CORRUPT, "unexpected key 'x'"},
    {"dup_key", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
     8, DSV_CORRUPT, "twice"},
    {"bad_bool", 1, H("<f4", "false", "(2,)"), 8, DSV_CORRUPT, "True or False"},
    {"unterminated", 1, "{'descr': '<f4", 8, DSV_CORRUPT, "string"},
    {"no_brace", 1, "'descr': '<f4'", 8, DSV_CORRUPT, "'{'"},
    {"no_close", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", 8, DSV_CORRUPT,
     "'}'"},
    {"junk_after", 1, H("<f4", "False", "(2,)") " junk", 8, DSV_CORRUPT, "padding"},
    {"missing_colon", 1, "{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
     DSV_CORRUPT, "':'"},
    {"bad_descr", 1, H("f4", "False", "(2,)"), 8, DSV_UNSUPPORTED, "dtype 'f4'"},
    {"version4", 4, H("<f4", "False", "(2,)"), 8, DSV_UNSUPPORTED, "version 4.0"},
};

static void test_malformed_battery(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *b = &bad_cases[i];
        char name[64];
        snprintf(name, sizeof(name), "npy_bad_%s.npy", b->name);
        const char *path = tu_scratch(name);
        char *zeros = calloc(1, b->data_bytes + 1);
        write_npy(path, b->major, b->hdr, true, zeros, b->data_bytes);
        free(zeros);
        expect_fail(path, b->want, b->needle);
    }
}

/* Damage done to the preamble rather than the dict. */
static void test_malformed_preamble(void **st)
{
    (void)st;
    char path[4096]; /* tu_scratch's buffer is reused below */
    snprintf(path, sizeof(path), "%s", tu_scratch("npy_pre.npy"));
    dsv_tensor a = tu_zeros(DSV_F32, 2, (int64_t[]){2, 3});
    TU_OK(dsv_npy_save(path, &a));
    size_t n;
    unsigned char *good = slurp(path, &n);
    unsigned char *b = malloc(n);
    assert_non_null(b);

    memcpy(b, good, n);
    b[1] = 'M'; /* bad magic */
    spit(path, b, n);
    expect_fail(path, DSV_CORRUPT, "bad magic");

    memcpy(b, good, n);
    b[7] = 1; /* version 1.1 */
    spit(path, b, n);
    expect_fail(path, DSV_UNSUPPORTED, "version 1.1");

    memcpy(b, good, n);
    b[8] = 0xff, b[9] = 0xff; /* header length past the end of the file */
    spit(path, b, n);
    expect_fail(path, DSV_CORRUPT, "past the end");

    spit(path, good, 5); /* shorter than any preamble */
    expect_fail(path, DSV_CORRUPT, "too short");

    spit(path, good, 40); /* cut inside the header */
    expect_fail(path, DSV_CORRUPT, "past the end");

    spit(path, good, 0);
    expect_fail(path, DSV_CORRUPT, "too short");

    /* a v2 header length of 4 GiB */
    memcpy(b, good, n);
    b[6] = 2;
    b[8] = b[9] = b[10] = b[11] = 0xff;
    spit(path, b, n);
    expect_fail(path, DSV_CORRUPT, "past the end");

    /* no such file, and a directory */
    expect_fail(tu_scratch("npy_does_not_exist.npy"), DSV_IO, "No such file");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    expect_fail(dir, DSV_IO, "not a regular file");

    /* the checker itself: a loader that accepts a file, or fails it with
     * another status or without saying why, does not pass */
    char why[1024];
    spit(path, good, n);
    assert_false(load_fails(path, DSV_CORRUPT, "", why, sizeof(why)));
    memcpy(b, good, n);
    b[1] = 'M';
    spit(path, b, n);
    assert_true(load_fails(path, DSV_CORRUPT, "bad magic", why, sizeof(why)));
    assert_false(load_fails(path, DSV_UNSUPPORTED, "bad magic", why, sizeof(why)));
    assert_false(load_fails(path, DSV_CORRUPT, "truncated", why, sizeof(why)));
    free(good);
    free(b);
    dsv_tensor_free(&a);
}

/* A NUL inside the header must not end the parse early or be skipped. */
static void test_nul_in_header(void **st)
{
    (void)st;
    const char *path = tu_scratch("npy_nul.npy");
    char hdr[] = H("<f4", "False", "(2,)") "    ";
    size_t hl = sizeof(hdr) - 1;
    hdr[hl - 2] = '\0';
    unsigned char b[128] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
    memcpy(b + 10, hdr, hl);
    spit(path, b, 10 + hl + 8);
    expect_fail(path, DSV_CORRUPT, "0x00");
}

/* ---- fuzzing -------------------------------------------------------------- */

/* Mutates bytes of a valid file's preamble and header at random: the loader
 * must never crash, and either load a sane tensor or report an error. */
static void test_fuzz_header(void **st)
{
    (void)st;
    const char *path = tu_scratch("npy_fuzz.npy");
    tu_rng r = {2024};
    dsv_tensor a = tu_randn(&r, DSV_F32, 3, (int64_t[]){2, 3, 4}, 1);
    TU_OK(dsv_npy_save(path, &a));
    size_t n;
    unsigned char *good = slurp(path, &n);
    unsigned char *b = malloc(n + 64);
    assert_non_null(b);
    static const char alphabet[] = "0123456789(),:{}'\" \n<>|fiubcOTrueFalsLshapedcr\x00\xff";
    size_t hend = 10 + (good[8] | (size_t)good[9] << 8); /* preamble + header */
    assert_true(hend < n);
    int fd = open(path, O_RDWR | O_CREAT, 0666);
    assert_true(fd >= 0);
    int loaded = 0, failed = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, good, n);
        size_t len = n;
        int edits = 1 + (int)(tu_next(&r) % 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = (size_t)(tu_next(&r) % hend);
            if (tu_next(&r) % 2)
                b[pos] = alphabet[tu_next(&r) % (sizeof(alphabet) - 1)];
            else
                b[pos] = (unsigned char)tu_next(&r);
        }
        if (tu_next(&r) % 8 == 0) /* sometimes also cut or extend the file */
            len = (size_t)(tu_next(&r) % (n + 32));
        if (len > n)
            memset(b + n, 0, len - n);
        /* rewrite in place: truncating to zero and rewriting makes ext4
           flush on every round, which is slow */
        assert_int_equal(pwrite(fd, b, len, 0), (ssize_t)len);
        assert_int_equal(ftruncate(fd, (off_t)len), 0);
        dsv_tensor t;
        dsv_status s = dsv_npy_load(path, &t);
        if (s == DSV_OK) {
            loaded++;
            assert_true(t.ndim >= 1 && t.ndim <= 4);
            assert_true(dsv_tensor_nbytes(&t) + 10 < len);
            dsv_tensor_free(&t);
        } else {
            failed++;
            assert_true(s == DSV_CORRUPT || s == DSV_UNSUPPORTED);
            assert_null(t.data);
            assert_non_null(strstr(dsv_errmsg(), "npy: "));
        }
    }
    /* both outcomes happen, so the fuzzer reaches past the first check */
    assert_true(loaded > 0);
    assert_true(failed > 1000);
    close(fd);
    free(good);
    free(b);
    dsv_tensor_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_save_atomic_and_rejects),
        cmocka_unit_test(test_hand_built_headers),
        cmocka_unit_test(test_integer_dtypes),
        cmocka_unit_test(test_malformed_battery),
        cmocka_unit_test(test_malformed_preamble),
        cmocka_unit_test(test_nul_in_header),
        cmocka_unit_test(test_fuzz_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
