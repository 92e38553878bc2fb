/*
 * NumPy .npy reader and writer.
 *
 * The loader trusts nothing in the file: the header dict is parsed by a small
 * recursive-descent parser over a bounded buffer, every declared size is
 * checked for overflow and against the file's real size BEFORE anything is
 * allocated, so a hostile header can neither crash us nor make us allocate
 * gigabytes. Every error names the file and the problem.
 *
 * The writer produces version 1.0 files exactly like numpy.save (header padded
 * with spaces to a multiple of 64 bytes, ending in '\n') and replaces the
 * target atomically: it writes "<path>.tmp<pid>.<n>" in the same directory,
 * fsyncs it and renames it over the target, so readers never see half a file.
 *
 * Both directions assume a little-endian host (checked at compile time).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dasecv/npy.h"
#include "npy_priv.h"
#include "internal/files.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .npy code assumes a little-endian host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* numpy itself refuses headers over 10000 bytes by default; we are a little
 * more generous but still refuse anything that is clearly not a header. */
#define NPY_MAX_HEADER (1u << 20)
/* numpy 1.x/2.x never writes more than 32 dims; we keep room to report them. */
#define NPY_MAX_PARSED_DIMS 64

/* ---- element types -------------------------------------------------------- */

typedef enum npy_kind { NPY_FLOAT, NPY_SINT, NPY_UINT } npy_kind;

typedef struct npy_desc {
    npy_kind kind;
    int size; /* bytes per element */
} npy_desc;

typedef struct npy_header {
    npy_desc desc;
    int ndim;
    int64_t shape[NPY_MAX_PARSED_DIMS];
    int fortran;
    unsigned seen; /* bit per key: 1 descr, 2 fortran_order, 4 shape */
} npy_header;

/* ---- header dict parser --------------------------------------------------- */

typedef struct parser {
    const char *s;
    size_t n, i;
    const char *path;
} parser;

static int peek(const parser *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static void skip_ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static dsv_status syntax(const parser *p, const char *what)
{
    int c = peek(p);
    if (c < 0)
        return dsv_error(DSV_CORRUPT, "npy: %s: header: expected %s, found end of header",
                         p->path, what);
    if (c >= 0x20 && c < 0x7f)
        return dsv_error(DSV_CORRUPT, "npy: %s: header: expected %s at offset %zu, found '%c'",
                         p->path, what, p->i, c);
    return dsv_error(DSV_CORRUPT, "npy: %s: header: expected %s at offset %zu, found byte 0x%02x",
                     p->path, what, p->i, (unsigned)c);
}

static dsv_status expect(parser *p, char c, const char *what)
{
    skip_ws(p);
    if (peek(p) != (unsigned char)c)
        return syntax(p, what);
    p->i++;
    return DSV_OK;
}

/* A Python string literal without escapes, at most cap-1 characters. */
static dsv_status parse_string(parser *p, char *out, size_t cap)
{
    skip_ws(p);
    int q = peek(p);
    if (q != '\'' && q != '"')
        return syntax(p, "a quoted string");
    p->i++;
    size_t len = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0)
            return dsv_error(DSV_CORRUPT, "npy: %s: header: unterminated string", p->path);
        p->i++;
        if (c == q)
            break;
        if (c == '\\' || c < 0x20)
            return dsv_error(DSV_CORRUPT, "npy: %s: header: unexpected character in string",
                             p->path);
        if (len + 1 >= cap)
            return dsv_error(DSV_CORRUPT, "npy: %s: header: string too long", p->path);
        out[len++] = (char)c;
    }
    out[len] = '\0';
    return DSV_OK;
}

static dsv_status parse_bool(parser *p, int *v)
{
    skip_ws(p);
    if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "True", 4)) {
        p->i += 4;
        *v = 1;
    } else if (p->n - p->i >= 5 && !memcmp(p->s + p->i, "False", 5)) {
        p->i += 5;
        *v = 0;
    } else {
        return syntax(p, "True or False");
    }
    return DSV_OK;
}

/* A non-negative Python int (Python 2 files may add an 'L' suffix). */
static dsv_status parse_dim(parser *p, int64_t *v)
{
    skip_ws(p);
    if (peek(p) == '-')
        return dsv_error(DSV_CORRUPT, "npy: %s: header: negative dimension in shape",
                         p->path);
    if (peek(p) < '0' || peek(p) > '9')
        return syntax(p, "a dimension");
    int64_t x = 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
        int d = peek(p) - '0';
        if (x > (INT64_MAX - d) / 10)
            return dsv_error(DSV_CORRUPT, "npy: %s: header: dimension too large", p->path);
        x = x * 10 + d;
        p->i++;
    }
    if (peek(p) == 'L' || peek(p) == 'l')
        p->i++;
    *v = x;
    return DSV_OK;
}

/* (), (3,), (3, 4), (3, 4,) */
static dsv_status parse_shape(parser *p, npy_header *h)
{
    dsv_status s;
    if ((s = expect(p, '(', "'(' starting the shape")))
        return s;
    h->ndim = 0;
    skip_ws(p);
    if (peek(p) == ')') {
        p->i++;
        return DSV_OK;
    }
    for (;;) {
        if (h->ndim == NPY_MAX_PARSED_DIMS)
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: more than %d dimensions",
                             p->path, NPY_MAX_PARSED_DIMS);
        if ((s = parse_dim(p, &h->shape[h->ndim])))
            return s;
        h->ndim++;
        skip_ws(p);
        if (peek(p) == ')') {
            /* Python needs the comma in a 1-tuple: "(3)" is the int 3. */
            if (h->ndim == 1)
                return syntax(p, "',' after the only dimension");
            p->i++;
            return DSV_OK;
        }
        if ((s = expect(p, ',', "',' or ')' in the shape")))
            return s;
        skip_ws(p);
        if (peek(p) == ')') {
            p->i++;
            return DSV_OK;
        }
    }
}

/* '<f4' and friends. Byte order '<' or native ('=', '|'); '>' only for
 * single bytes, where it means nothing. */
static dsv_status parse_descr(const parser *p, const char *d, npy_desc *out)
{
    size_t len = strlen(d);
    if (len >= 2 && d[1] == 'O')
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: object arrays ('%s') are not supported",
                         p->path, d);
    if (len < 3 || !strchr("<>|=", d[0]))
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: dtype '%s' is not supported", p->path, d);
    char kind = d[1];
    const char *digits = d + 2;
    int size = 0;
    for (const char *q = digits; *q; q++) {
        if (*q < '0' || *q > '9' || size > 1000)
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: dtype '%s' is not supported",
                             p->path, d);
        size = size * 10 + (*q - '0');
    }
    switch (kind) {
    case 'b':
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: bool arrays ('%s') are not supported "
                         "(convert to int or float)", p->path, d);
    case 'O':
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: object arrays are not supported", p->path);
    case 'c':
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: complex arrays ('%s') are not supported",
                         p->path, d);
    case 'f':
        if (size != 4 && size != 8)
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: float dtype '%s' is not supported "
                             "(float32 or float64 only)", p->path, d);
        out->kind = NPY_FLOAT;
        break;
    case 'i':
    case 'u':
        if (size != 1 && size != 2 && size != 4 && size != 8)
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: integer dtype '%s' is not supported",
                             p->path, d);
        out->kind = kind == 'i' ? NPY_SINT : NPY_UINT;
        break;
    default:
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: dtype '%s' is not supported", p->path, d);
    }
    if (d[0] == '>' && size > 1)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: big-endian data ('%s') is not supported "
                         "(save with arr.astype('<%c%d'))", p->path, d, kind, size);
    out->size = size;
    return DSV_OK;
}

static dsv_status parse_entry(parser *p, npy_header *h)
{
    char key[32], descr[32];
    dsv_status s;
    if ((s = parse_string(p, key, sizeof(key))) || (s = expect(p, ':', "':' after a key")))
        return s;
    unsigned bit;
    if (!strcmp(key, "descr")) {
        bit = 1;
        skip_ws(p);
        if (peek(p) == '[' || peek(p) == '{')
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: structured dtypes are not supported",
                             p->path);
        if ((s = parse_string(p, descr, sizeof(descr))) ||
            (s = parse_descr(p, descr, &h->desc)))
            return s;
    } else if (!strcmp(key, "fortran_order")) {
        bit = 2;
        if ((s = parse_bool(p, &h->fortran)))
            return s;
    } else if (!strcmp(key, "shape")) {
        bit = 4;
        if ((s = parse_shape(p, h)))
            return s;
    } else {
        return dsv_error(DSV_CORRUPT, "npy: %s: header: unexpected key '%s'", p->path, key);
    }
    if (h->seen & bit)
        return dsv_error(DSV_CORRUPT, "npy: %s: header: key '%s' appears twice", p->path, key);
    h->seen |= bit;
    return DSV_OK;
}

static dsv_status parse_header(const char *path, const char *s, size_t n, npy_header *h)
{
    parser p = {.s = s, .n = n, .i = 0, .path = path};
    dsv_status st;
    memset(h, 0, sizeof(*h));
    if ((st = expect(&p, '{', "'{' starting the header dict")))
        return st;
    for (;;) {
        skip_ws(&p);
        if (peek(&p) == '}') {
            p.i++;
            break;
        }
        if ((st = parse_entry(&p, h)))
            return st;
        skip_ws(&p);
        if (peek(&p) == ',') {
            p.i++;
            continue;
        }
        if ((st = expect(&p, '}', "',' or '}' after a value")))
            return st;
        break;
    }
    skip_ws(&p);
    if (p.i != p.n)
        return syntax(&p, "only padding after the header dict");
    static const char *const keys[] = {"descr", "fortran_order", "shape"};
    for (int k = 0; k < 3; k++)
        if (!(h->seen & (1u << k)))
            return dsv_error(DSV_CORRUPT, "npy: %s: header has no '%s' key", path, keys[k]);
    return DSV_OK;
}

/* ---- reading -------------------------------------------------------------- */

/* Reads exactly n bytes; a short read means the file is shorter than its
 * header says (it may have shrunk since we measured it). */
static dsv_status read_all(int fd, void *buf, size_t n, const char *path, const char *what)
{
    char *b = buf;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return dsv_error(DSV_IO, "npy: %s: read error: %s", path, strerror(errno));
        if (r == 0)
            return dsv_error(DSV_CORRUPT, "npy: %s: truncated %s", path, what);
        b += r;
        n -= (size_t)r;
    }
    return DSV_OK;
}

static uint32_t get_le(const unsigned char *p, int bytes)
{
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* One element of an integer array as int32; false when out of range. */
static int to_i32(const unsigned char *src, const npy_desc *d, int32_t *out)
{
    int64_t v;
    switch (d->size) {
    case 1: v = d->kind == NPY_SINT ? (int64_t)(int8_t)src[0] : (int64_t)src[0]; break;
    case 2: {
        uint16_t u;
        memcpy(&u, src, 2);
        v = d->kind == NPY_SINT ? (int64_t)(int16_t)u : (int64_t)u;
        break;
    }
    case 4: {
        uint32_t u;
        memcpy(&u, src, 4);
        v = d->kind == NPY_SINT ? (int64_t)(int32_t)u : (int64_t)u;
        break;
    }
    default: {
        uint64_t u;
        memcpy(&u, src, 8);
        if (d->kind == NPY_UINT && u > (uint64_t)INT32_MAX)
            return 0;
        v = (int64_t)u;
        break;
    }
    }
    if (v < INT32_MIN || v > INT32_MAX)
        return 0;
    *out = (int32_t)v;
    return 1;
}

/* Reads count integers of any width into int32, a chunk at a time so a file
 * of int64 never needs twice its size in memory. */
static dsv_status read_ints(int fd, const char *path, const npy_desc *d, int32_t *dst,
                            int64_t count)
{
    unsigned char buf[1 << 14];
    int64_t per = (int64_t)(sizeof(buf) / (size_t)d->size), done = 0;
    while (done < count) {
        int64_t k = count - done < per ? count - done : per;
        dsv_status s = read_all(fd, buf, (size_t)k * (size_t)d->size, path, "data");
        if (s)
            return s;
        for (int64_t i = 0; i < k; i++)
            if (!to_i32(buf + i * d->size, d, &dst[done + i]))
                return dsv_error(DSV_UNSUPPORTED,
                                 "npy: %s: element %" PRId64 " does not fit in int32",
                                 path, done + i);
        done += k;
    }
    return DSV_OK;
}

/* Checks that the header describes something we can hold, and that the data
 * that follows it is exactly as long as it should be. */
static dsv_status check_layout(const char *path, const npy_header *h, int64_t data_bytes_avail)
{
    if (h->fortran)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: Fortran-order arrays are not supported "
                         "(save np.ascontiguousarray(a))", path);
    if (h->ndim == 0)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: 0-d (scalar) arrays are not supported",
                         path);
    if (h->ndim > DSV_MAX_DIMS)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: %d dimensions (at most %d supported)",
                         path, h->ndim, DSV_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] == 0)
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: empty arrays (dimension %d is 0) "
                             "are not supported", path, i);
        if (numel > INT64_MAX / 8 / h->shape[i])
            return dsv_error(DSV_CORRUPT, "npy: %s: shape is absurdly large (overflows)", path);
        numel *= h->shape[i];
    }
    int64_t want = numel * h->desc.size;
    if (want > data_bytes_avail)
        return dsv_error(DSV_CORRUPT, "npy: %s: truncated: the header declares %" PRId64
                         " bytes of data, the file has %" PRId64, path, want, data_bytes_avail);
    if (want < data_bytes_avail)
        return dsv_error(DSV_CORRUPT, "npy: %s: %" PRId64 " trailing bytes after the data",
                         path, data_bytes_avail - want);
    return DSV_OK;
}

/* Magic, version and header length; fills *hlen and *pre (preamble bytes). */
static dsv_status read_preamble(int fd, const char *path, int64_t fsize, uint32_t *hlen,
                                int *pre)
{
    unsigned char b[12];
    if (fsize < 10)
        return dsv_error(DSV_CORRUPT, "npy: %s: too short to be a .npy file (%" PRId64
                         " bytes)", path, fsize);
    dsv_status s = read_all(fd, b, 8, path, "preamble");
    if (s)
        return s;
    if (memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return dsv_error(DSV_CORRUPT, "npy: %s: not a .npy file (bad magic)", path);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: format version %d.%d is not supported "
                         "(1.0, 2.0, 3.0)", path, major, minor);
    int lenbytes = major == 1 ? 2 : 4;
    if (fsize < 8 + lenbytes)
        return dsv_error(DSV_CORRUPT, "npy: %s: truncated preamble", path);
    if ((s = read_all(fd, b + 8, (size_t)lenbytes, path, "preamble")))
        return s;
    *hlen = get_le(b + 8, lenbytes);
    *pre = 8 + lenbytes;
    if ((int64_t)*hlen > fsize - *pre)
        return dsv_error(DSV_CORRUPT, "npy: %s: header length %" PRIu32
                         " runs past the end of the file (%" PRId64 " bytes)",
                         path, *hlen, fsize);
    if (*hlen > NPY_MAX_HEADER)
        return dsv_error(DSV_CORRUPT, "npy: %s: header length %" PRIu32 " is implausible",
                         path, *hlen);
    return DSV_OK;
}

static dsv_status load_fd(int fd, const char *path, dsv_tensor *t, char *file_dtype,
                          size_t n)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return dsv_error(DSV_IO, "npy: %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return dsv_error(DSV_IO, "npy: %s: not a regular file", path);
    int64_t fsize = (int64_t)st.st_size;

    uint32_t hlen = 0;
    int pre = 0;
    dsv_status s = read_preamble(fd, path, fsize, &hlen, &pre);
    if (s)
        return s;
    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr)
        return dsv_error(DSV_NOMEM, "npy: %s: cannot allocate the header", path);
    npy_header h;
    if (!(s = read_all(fd, hdr, hlen, path, "header"))) {
        hdr[hlen] = '\0';
        s = parse_header(path, hdr, hlen, &h);
    }
    free(hdr);
    if (s || (s = check_layout(path, &h, fsize - pre - (int64_t)hlen)))
        return s;

    if (file_dtype)
        snprintf(file_dtype, n, "%s%d",
                 h.desc.kind == NPY_FLOAT ? "float" : h.desc.kind == NPY_SINT ? "int" : "uint",
                 8 * h.desc.size);
    dsv_dtype dt = h.desc.kind != NPY_FLOAT ? DSV_I32 : h.desc.size == 4 ? DSV_F32 : DSV_F64;
    if ((s = dsv_tensor_init(t, dt, h.ndim, h.shape)))
        return s;
    if (h.desc.kind == NPY_FLOAT || (h.desc.kind == NPY_SINT && h.desc.size == 4))
        s = read_all(fd, t->data, dsv_tensor_nbytes(t), path, "data");
    else
        s = read_ints(fd, path, &h.desc, t->data, dsv_tensor_numel(t));
    if (s)
        dsv_tensor_free(t);
    return s;
}

dsv_status dsv_npy_load(const char *path, dsv_tensor *t)
{
    return dsv_npy_load_typed(path, t, NULL, 0);
}

dsv_status dsv_npy_load_typed(const char *path, dsv_tensor *t, char *file_dtype, size_t n)
{
    memset(t, 0, sizeof(*t));
    if (file_dtype && n)
        file_dtype[0] = '\0';
    if (!path)
        return dsv_error(DSV_INVALID, "npy: no path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsv_error(DSV_IO, "npy: %s: %s", path, strerror(errno));
    dsv_status s = load_fd(fd, path, t, file_dtype, n);
    close(fd);
    return s;
}

/* ---- writing -------------------------------------------------------------- */

static dsv_status write_all(int fd, const void *buf, size_t n, const char *path)
{
    const char *b = buf;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return dsv_error(DSV_IO, "npy: %s: write error: %s", path, strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return DSV_OK;
}

/* "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with
 * spaces and a final '\n' so that the 10-byte preamble plus header is a
 * multiple of 64, as numpy.save does. Returns the total length. */
static size_t make_header(const dsv_tensor *t, const char *descr, char *buf, size_t cap)
{
    size_t n = 10;
    n += (size_t)snprintf(buf + n, cap - n, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                          descr);
    for (int i = 0; i < t->ndim; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    n += (size_t)snprintf(buf + n, cap - n, "%s), }", t->ndim == 1 ? "," : "");
    size_t total = (n + 1 + 63) / 64 * 64;
    memset(buf + n, ' ', total - 1 - n);
    buf[total - 1] = '\n';
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((total - 10) & 0xff);
    buf[9] = (char)((total - 10) >> 8);
    return total;
}

static dsv_status check_saveable(const char *path, const dsv_tensor *t, const char **descr)
{
    if (!path || !t || !t->data)
        return dsv_error(DSV_INVALID, "npy: %s: nothing to save", path ? path : "(null)");
    switch (t->dtype) {
    case DSV_F32: *descr = "<f4"; break;
    case DSV_F64: *descr = "<f8"; break;
    case DSV_I32: *descr = "<i4"; break;
    default:
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: cannot save %s tensors "
                         "(float32, float64, int32)", path, dsv_dtype_name(t->dtype));
    }
    if (t->ndim < 1 || t->ndim > DSV_MAX_DIMS)
        return dsv_error(DSV_INVALID, "npy: %s: tensor has %d dimensions", path, t->ndim);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 1)
            return dsv_error(DSV_INVALID, "npy: %s: dimension %d is %" PRId64, path, i,
                             t->shape[i]);
    return DSV_OK;
}

/* Opens a fresh temporary file next to path (O_EXCL; the umask applies). */
static dsv_status open_temp(const char *path, char **tmp, int *fd)
{
    static atomic_uint counter;
    size_t cap = strlen(path) + 64;
    *tmp = malloc(cap);
    if (!*tmp)
        return dsv_error(DSV_NOMEM, "npy: %s: out of memory", path);
    for (int tries = 0; tries < 100; tries++) {
        snprintf(*tmp, cap, "%s.tmp%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1u));
        *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd >= 0)
            return DSV_OK;
        if (errno != EEXIST)
            break;
    }
    dsv_status s = dsv_error(DSV_IO, "npy: %s: cannot create a temporary file: %s", path,
                             strerror(errno));
    free(*tmp);
    *tmp = NULL;
    return s;
}

dsv_status dsv_npy_save(const char *path, const dsv_tensor *t)
{
    const char *descr = NULL;
    dsv_status s = check_saveable(path, t, &descr);
    if (s)
        return s;
    char hdr[256];
    size_t hn = make_header(t, descr, hdr, sizeof(hdr));

    char *tmp = NULL;
    int fd = -1;
    if ((s = open_temp(path, &tmp, &fd)))
        return s;
    if (!(s = write_all(fd, hdr, hn, tmp)) &&
        !(s = write_all(fd, t->data, dsv_tensor_nbytes(t), tmp)) && fsync(fd) != 0)
        s = dsv_error(DSV_IO, "npy: %s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !s)
        s = dsv_error(DSV_IO, "npy: %s: close: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = dsv_error(DSV_IO, "npy: %s: cannot rename the temporary file into place: %s",
                      path, strerror(errno));
    if (s)
        unlink(tmp);
    else
        dsv_sync_dir_(path);
    free(tmp);
    return s;
}

/* ---- in-memory images (npy_priv.h) ------------------------------------------ */

dsv_status dsv_npy_decode(const char *name, const void *buf, size_t n, dsv_tensor *t)
{
    const unsigned char *b = buf;
    memset(t, 0, sizeof(*t));
    if (n < 10)
        return dsv_error(DSV_CORRUPT, "npy: %s: too short to be a .npy image (%zu bytes)",
                         name, n);
    if (memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return dsv_error(DSV_CORRUPT, "npy: %s: not a .npy image (bad magic)", name);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: format version %d.%d is not supported "
                         "(1.0, 2.0, 3.0)", name, major, minor);
    size_t pre = major == 1 ? 10 : 12;
    if (n < pre)
        return dsv_error(DSV_CORRUPT, "npy: %s: truncated preamble", name);
    uint32_t hlen = get_le(b + 8, (int)pre - 8);
    if (hlen > NPY_MAX_HEADER || hlen > n - pre)
        return dsv_error(DSV_CORRUPT, "npy: %s: header length %" PRIu32 " runs past the end "
                         "of the image (%zu bytes)", name, hlen, n);
    npy_header h;
    dsv_status s = parse_header(name, (const char *)b + pre, hlen, &h);
    if (s)
        return s;
    if (h.fortran)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: Fortran-order arrays are not supported",
                         name);
    if (h.ndim > DSV_MAX_DIMS)
        return dsv_error(DSV_UNSUPPORTED, "npy: %s: %d dimensions (at most %d supported)",
                         name, h.ndim, DSV_MAX_DIMS);
    /* The data must fill the image, so a count that fits in it cannot overflow. */
    size_t avail = n - pre - hlen, numel = 1;
    for (int i = 0; i < h.ndim; i++) {
        if (h.shape[i] != 0 && numel > avail / (uint64_t)h.shape[i])
            numel = avail + 1; /* more than the image holds, whatever follows */
        else
            numel *= (size_t)h.shape[i];
    }
    if (numel > avail / (size_t)h.desc.size || numel * (size_t)h.desc.size != avail)
        return dsv_error(DSV_CORRUPT, "npy: %s: the header's shape and dtype do not match the "
                         "%zu bytes of data", name, avail);

    dsv_dtype dt = h.desc.kind == NPY_FLOAT ? (h.desc.size == 4 ? DSV_F32 : DSV_F64)
                   : h.desc.kind == NPY_UINT && h.desc.size == 1 ? DSV_U8 : DSV_I32;
    t->data = dsv_alloc(numel * dsv_dtype_size(dt));
    if (!t->data)
        return dsv_error(DSV_NOMEM, "npy: %s: cannot allocate %zu elements", name, numel);
    t->dtype = dt;
    t->owner = true;
    t->ndim = h.ndim;
    for (int i = 0; i < DSV_MAX_DIMS; i++)
        t->shape[i] = i < h.ndim ? h.shape[i] : 1;
    const unsigned char *src = b + pre + hlen;
    if (dsv_dtype_size(dt) == (size_t)h.desc.size) {
        memcpy(t->data, src, avail);
        return DSV_OK;
    }
    int32_t *dst = t->data;
    for (size_t i = 0; i < numel; i++)
        if (!to_i32(src + i * (size_t)h.desc.size, &h.desc, &dst[i])) {
            dsv_tensor_free(t);
            return dsv_error(DSV_UNSUPPORTED, "npy: %s: element %zu does not fit in int32",
                             name, i);
        }
    return DSV_OK;
}

dsv_status dsv_npy_encode(const char *name, const dsv_tensor *t, void **out, size_t *n)
{
    const char *descr;
    *out = NULL;
    *n = 0;
    switch (t->dtype) {
    case DSV_F32: descr = "<f4"; break;
    case DSV_F64: descr = "<f8"; break;
    case DSV_I32: descr = "<i4"; break;
    case DSV_U8: descr = "|u1"; break;
    default:
        return dsv_error(DSV_INVALID, "npy: %s: unknown dtype %d", name, (int)t->dtype);
    }
    if (t->ndim < 0 || t->ndim > DSV_MAX_DIMS)
        return dsv_error(DSV_INVALID, "npy: %s: tensor has %d dimensions (0 to %d)", name,
                         t->ndim, DSV_MAX_DIMS);
    /* Entries past ndim are not looked at: a 0-d tensor may leave them 0. */
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = t->shape[i];
        if (d < 0)
            return dsv_error(DSV_INVALID, "npy: %s: dimension %d is %" PRId64, name, i, d);
        if (d != 0 && numel > SIZE_MAX / 64 / (uint64_t)d)
            return dsv_error(DSV_INVALID, "npy: %s: shape too large", name);
        numel *= (size_t)d;
    }
    size_t bytes = numel * dsv_dtype_size(t->dtype);
    if (bytes && !t->data)
        return dsv_error(DSV_INVALID, "npy: %s: tensor has no data", name);
    char hdr[256];
    size_t hn = make_header(t, descr, hdr, sizeof(hdr));
    char *b = malloc(hn + bytes);
    if (!b)
        return dsv_error(DSV_NOMEM, "npy: %s: cannot allocate %zu bytes", name, hn + bytes);
    memcpy(b, hdr, hn);
    if (bytes)
        memcpy(b + hn, t->data, bytes);
    *out = b;
    *n = hn + bytes;
    return DSV_OK;
}
