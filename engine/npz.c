/*
 * NumPy .npz archives on top of libzip.
 *
 * libzip handles the zip container; the .npy members are encoded and decoded
 * by npy.c (npy_priv.h). Writing builds the whole archive in memory and then
 * replaces the target atomically (temporary file in the same directory,
 * fsync, rename, fsync of the directory), so a reader never sees half an
 * archive and a failed write leaves the old one in place.
 *
 * Reading trusts nothing: libzip checks the archive's consistency
 * (ZIP_CHECKCONS, which also refuses duplicate names) and every member's
 * CRC. Before a member's buffer is allocated, its claimed size is checked
 * against its compressed bytes (equal for a stored member; deflate expands at
 * most about 1032 to 1), so a forged size cannot make us allocate more than a
 * small multiple of the file. Every error names the archive and the member.
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

#include <zip.h>

#include "dasecv/npz.h"
#include "npy_priv.h"
#include "internal/files.h"

#define NPZ_MAX_NAME 255
/* Deflate's best case is 1032:1; anything claiming more is forged. */
#define NPZ_MAX_RATIO 1040u

struct dsv_npz {
    int count;
    char **names;
    dsv_tensor *tensors;
};

/* ---- the read archive ----------------------------------------------------- */

int dsv_npz_count(const dsv_npz *z) { return z ? z->count : 0; }

const char *dsv_npz_name(const dsv_npz *z, int i)
{
    return z && i >= 0 && i < z->count ? z->names[i] : NULL;
}

const dsv_tensor *dsv_npz_tensor(const dsv_npz *z, int i)
{
    return z && i >= 0 && i < z->count ? &z->tensors[i] : NULL;
}

int dsv_npz_find(const dsv_npz *z, const char *name)
{
    if (!z || !name)
        return -1;
    for (int i = 0; i < z->count; i++)
        if (!strcmp(z->names[i], name))
            return i;
    return -1;
}

void dsv_npz_free(dsv_npz *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->count; i++) {
        free(z->names[i]);
        dsv_tensor_free(&z->tensors[i]);
    }
    free(z->names);
    free(z->tensors);
    free(z);
}

/* ---- reading -------------------------------------------------------------- */

/* The member's name without ".npy" into *out (malloc'd); an error if the
 * member is not a .npy file. */
static dsv_status member_name(const char *path, const char *member, char **out)
{
    size_t len = strlen(member);
    if (len < 5 || strcmp(member + len - 4, ".npy") != 0)
        return dsv_error(DSV_CORRUPT, "npz: %s: member '%s' is not a .npy file", path,
                         member);
    if (len - 4 > NPZ_MAX_NAME)
        return dsv_error(DSV_CORRUPT, "npz: %s: member name '%.40s...' is longer than %d "
                         "bytes", path, member, NPZ_MAX_NAME);
    *out = malloc(len - 3);
    if (!*out)
        return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
    memcpy(*out, member, len - 4);
    (*out)[len - 4] = '\0';
    return DSV_OK;
}

/* Reads member i whole into a new buffer, checking its claimed size first. */
static dsv_status read_member(const char *path, zip_t *za, zip_uint64_t i, const char *member,
                              zip_uint64_t file_size, unsigned char **buf, size_t *n)
{
    zip_stat_t st;
    *buf = NULL;
    *n = 0;
    if (zip_stat_index(za, i, 0, &st) != 0)
        return dsv_error(DSV_CORRUPT, "npz: %s: member '%s': %s", path, member,
                         zip_strerror(za));
    zip_uint64_t want = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE;
    if ((st.valid & want) != want)
        return dsv_error(DSV_CORRUPT, "npz: %s: member '%s' has no size", path, member);
    int stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    if (st.comp_size > file_size || (stored && st.size != st.comp_size) ||
        st.size > (st.comp_size + 64) * NPZ_MAX_RATIO || st.size > SIZE_MAX / 2)
        return dsv_error(DSV_CORRUPT, "npz: %s: member '%s' claims %" PRIu64 " bytes "
                         "from %" PRIu64 " compressed bytes in a %" PRIu64 "-byte file",
                         path, member, (uint64_t)st.size, (uint64_t)st.comp_size,
                         (uint64_t)file_size);
    zip_file_t *f = zip_fopen_index(za, i, 0);
    if (!f)
        return dsv_error(DSV_CORRUPT, "npz: %s: member '%s': %s", path, member,
                         zip_strerror(za));
    /* One byte more than claimed, to notice a member longer than its entry. */
    unsigned char *b = malloc((size_t)st.size + 1);
    dsv_status s = DSV_OK;
    if (!b) {
        s = dsv_error(DSV_NOMEM, "npz: %s: member '%s': cannot allocate %" PRIu64 " bytes",
                      path, member, (uint64_t)st.size);
        goto close;
    }
    zip_uint64_t got = 0;
    while (got <= st.size) {
        zip_int64_t r = zip_fread(f, b + got, st.size + 1 - got);
        if (r < 0) {
            s = dsv_error(DSV_CORRUPT, "npz: %s: member '%s': %s", path, member,
                          zip_file_strerror(f));
            goto close;
        }
        if (r == 0)
            break;
        got += (zip_uint64_t)r;
    }
    if (got != st.size)
        s = dsv_error(DSV_CORRUPT, "npz: %s: member '%s' holds %s bytes than its entry "
                      "says (%" PRIu64 ")", path, member, got < st.size ? "fewer" : "more",
                      (uint64_t)st.size);
close:
    if (zip_fclose(f) != 0 && !s)
        s = dsv_error(DSV_CORRUPT, "npz: %s: member '%s': bad data (checksum)", path,
                      member);
    if (s) {
        free(b);
        return s;
    }
    *buf = b;
    *n = (size_t)st.size;
    return DSV_OK;
}

static dsv_status open_archive(const char *path, zip_t **za, zip_uint64_t *file_size)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dsv_error(DSV_IO, "npz: %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return dsv_error(DSV_IO, "npz: %s: not a regular file", path);
    *file_size = (zip_uint64_t)st.st_size;
    int err = 0;
    *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (*za)
        return DSV_OK;
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    dsv_status s;
    /* With ZIP_CHECKCONS libzip refuses two members of the same name, which
     * would make dsv_npz_find ambiguous (numpy keeps one of them silently). */
    if (err == ZIP_ER_EXISTS)
        s = dsv_error(DSV_CORRUPT, "npz: %s: two members have the same name", path);
    else if (err == ZIP_ER_OPEN || err == ZIP_ER_READ || err == ZIP_ER_MEMORY)
        s = dsv_error(err == ZIP_ER_MEMORY ? DSV_NOMEM : DSV_IO, "npz: %s: %s", path,
                      zip_error_strerror(&ze));
    else
        s = dsv_error(DSV_CORRUPT, "npz: %s: not a valid .npz (zip) archive: %s", path,
                      zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return s;
}

static dsv_status read_members(const char *path, zip_t *za, zip_uint64_t file_size,
                               dsv_npz *z)
{
    zip_int64_t count = zip_get_num_entries(za, 0);
    if (count < 0 || count > INT32_MAX || (zip_uint64_t)count > file_size / 22)
        return dsv_error(DSV_CORRUPT, "npz: %s: implausible member count %" PRId64, path,
                         (int64_t)count);
    if (count == 0)
        return DSV_OK;
    z->names = calloc((size_t)count, sizeof(*z->names));
    z->tensors = calloc((size_t)count, sizeof(*z->tensors));
    if (!z->names || !z->tensors)
        return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
    for (zip_int64_t i = 0; i < count; i++) {
        const char *member = zip_get_name(za, (zip_uint64_t)i, 0);
        if (!member)
            return dsv_error(DSV_CORRUPT, "npz: %s: member %" PRId64 ": %s", path,
                             (int64_t)i, zip_strerror(za));
        char *name = NULL;
        dsv_status s = member_name(path, member, &name);
        if (s)
            return s;
        z->names[z->count] = name;
        unsigned char *buf;
        size_t n;
        if ((s = read_member(path, za, (zip_uint64_t)i, member, file_size, &buf, &n))) {
            z->count++; /* so the name is freed */
            return s;
        }
        /* "ARCHIVE: MEMBER" for npy.c's messages */
        size_t cap = strlen(path) + strlen(member) + 3;
        char *label = malloc(cap);
        if (!label) {
            free(buf);
            z->count++;
            return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
        }
        snprintf(label, cap, "%s: %s", path, member);
        s = dsv_npy_decode(label, buf, n, &z->tensors[z->count]);
        free(label);
        free(buf);
        z->count++;
        if (s)
            return s;
    }
    return DSV_OK;
}

dsv_status dsv_npz_read(const char *path, dsv_npz **out)
{
    if (!out)
        return dsv_error(DSV_INVALID, "npz: no output given");
    *out = NULL;
    if (!path)
        return dsv_error(DSV_INVALID, "npz: no path given");
    zip_t *za;
    zip_uint64_t file_size = 0;
    dsv_status s = open_archive(path, &za, &file_size);
    if (s)
        return s;
    dsv_npz *z = calloc(1, sizeof(*z));
    if (!z) {
        zip_discard(za);
        return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
    }
    s = read_members(path, za, file_size, z);
    zip_discard(za);
    if (s) {
        dsv_npz_free(z);
        return s;
    }
    *out = z;
    return DSV_OK;
}

/* ---- writing -------------------------------------------------------------- */

static dsv_status check_names(const char *path, int count, const char *const *names)
{
    for (int i = 0; i < count; i++) {
        if (!names[i] || !names[i][0])
            return dsv_error(DSV_INVALID, "npz: %s: name %d is empty", path, i);
        if (strlen(names[i]) > NPZ_MAX_NAME)
            return dsv_error(DSV_INVALID, "npz: %s: name %d is longer than %d bytes", path,
                             i, NPZ_MAX_NAME);
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return dsv_error(DSV_INVALID, "npz: %s: name '%s' given twice", path,
                                 names[i]);
    }
    return DSV_OK;
}

/* Adds one stored NAME.npy member; the encoded buffer passes to libzip. */
static dsv_status add_member(const char *path, zip_t *za, const char *name,
                             const dsv_tensor *t)
{
    char member[NPZ_MAX_NAME + 5];
    snprintf(member, sizeof(member), "%s.npy", name);
    char label[NPZ_MAX_NAME + 5 + 4096];
    snprintf(label, sizeof(label), "%s: %s", path, member);
    void *buf;
    size_t n;
    dsv_status s = dsv_npy_encode(label, t, &buf, &n);
    if (s)
        return s;
    zip_source_t *src = zip_source_buffer(za, buf, n, 1);
    if (!src) {
        free(buf);
        return dsv_error(DSV_NOMEM, "npz: %s: %s", label, zip_strerror(za));
    }
    zip_int64_t idx = zip_file_add(za, member, src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        zip_source_free(src);
        return dsv_error(DSV_INVALID, "npz: %s: %s", label, zip_strerror(za));
    }
    /* numpy.savez stores members; a fixed time keeps the bytes reproducible. */
    if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_mtime(za, (zip_uint64_t)idx, 315532800 + 86400, 0) != 0)
        return dsv_error(DSV_INVALID, "npz: %s: %s", label, zip_strerror(za));
    return DSV_OK;
}

/* Builds the archive in memory; *data (malloc'd) and *n on success. */
static dsv_status build_archive(const char *path, int count, const char *const *names,
                                const dsv_tensor *tensors, unsigned char **data, size_t *n)
{
    /* libzip removes an archive left without members instead of writing it;
     * numpy.savez() writes the bare end-of-central-directory record. */
    if (count == 0) {
        *data = calloc(1, 22);
        if (!*data)
            return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
        memcpy(*data, "PK\x05\x06", 4);
        *n = 22;
        return DSV_OK;
    }
    zip_error_t ze;
    zip_error_init(&ze);
    dsv_status s = DSV_OK;
    zip_source_t *out = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (!out) {
        s = dsv_error(DSV_NOMEM, "npz: %s: %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return s;
    }
    zip_source_keep(out); /* it must outlive zip_close, which writes into it */
    zip_t *za = zip_open_from_source(out, ZIP_TRUNCATE, &ze);
    if (!za) {
        s = dsv_error(DSV_NOMEM, "npz: %s: %s", path, zip_error_strerror(&ze));
        goto free_out;
    }
    for (int i = 0; i < count && !s; i++)
        s = add_member(path, za, names[i], &tensors[i]);
    if (s) {
        zip_discard(za);
        goto free_out;
    }
    if (zip_close(za) != 0) {
        s = dsv_error(DSV_NOMEM, "npz: %s: %s", path, zip_strerror(za));
        zip_discard(za);
        goto free_out;
    }
    zip_stat_t st;
    if (zip_source_stat(out, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
        zip_source_open(out) != 0) {
        s = dsv_error(DSV_NOMEM, "npz: %s: cannot read back the archive", path);
        goto free_out;
    }
    *data = malloc(st.size ? (size_t)st.size : 1);
    zip_int64_t r = *data ? zip_source_read(out, *data, st.size) : -1;
    zip_source_close(out);
    if (r < 0 || (zip_uint64_t)r != st.size) {
        free(*data);
        *data = NULL;
        s = dsv_error(DSV_NOMEM, "npz: %s: cannot read back the archive", path);
        goto free_out;
    }
    *n = (size_t)st.size;
free_out:
    zip_source_free(out);
    zip_error_fini(&ze);
    return s;
}

static dsv_status write_fd(int fd, const unsigned char *p, size_t n, const char *tmp)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return dsv_error(DSV_IO, "npz: %s: write error: %s", tmp, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return DSV_OK;
}

/* Temporary file "<path>.tmp<pid>.<n>" next to path, fsync, rename. */
static dsv_status write_atomic(const char *path, const unsigned char *p, size_t n)
{
    static atomic_uint counter;
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp)
        return dsv_error(DSV_NOMEM, "npz: %s: out of memory", path);
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        snprintf(tmp, cap, "%s.tmp%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    dsv_status s = DSV_OK;
    if (fd < 0) {
        s = dsv_error(DSV_IO, "npz: %s: cannot create a temporary file: %s", path,
                      strerror(errno));
        free(tmp);
        return s;
    }
    if (!(s = write_fd(fd, p, n, tmp)) && fsync(fd) != 0)
        s = dsv_error(DSV_IO, "npz: %s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !s)
        s = dsv_error(DSV_IO, "npz: %s: close: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = dsv_error(DSV_IO, "npz: %s: cannot rename the temporary file into place: %s",
                      path, strerror(errno));
    if (s)
        unlink(tmp);
    else
        dsv_sync_dir_(path);
    free(tmp);
    return s;
}

dsv_status dsv_npz_write(const char *path, int count, const char *const *names,
                         const dsv_tensor *tensors)
{
    if (!path || !*path)
        return dsv_error(DSV_INVALID, "npz: no path given");
    if (count < 0 || (count > 0 && (!names || !tensors)))
        return dsv_error(DSV_INVALID, "npz: %s: %d tensors given without names or data",
                         path, count);
    dsv_status s = check_names(path, count, names);
    if (s)
        return s;
    unsigned char *data = NULL;
    size_t n = 0;
    if ((s = build_archive(path, count, names, tensors, &data, &n)))
        return s;
    s = write_atomic(path, data, n);
    free(data);
    return s;
}
