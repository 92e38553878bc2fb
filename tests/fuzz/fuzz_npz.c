/*
 * libFuzzer target: dsv_npz_read.
 *
 * The first input byte is a mode. With bit 0 set the rest is the archive file
 * itself, which exercises the container checks. Otherwise the rest is a list
 * of length-prefixed (member name, member contents) pairs (fuzz_util.h) that
 * the target zips with libzip (deflated when bit 1 is set): the CRCs are then
 * right, so mutations of the .npy members reach their decoder instead of
 * stopping at the checksum.
 */
#include <zip.h>

#include "dasecv/npz.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void build_zip(const char *path, fuzz_in *in, int deflate)
{
    int err;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za)
        abort();
    for (int k = 0; k < 16 && in->n > 0; k++) {
        size_t nl, cl;
        const uint8_t *name = fuzz_part(in, &nl);
        const uint8_t *contents = fuzz_part(in, &cl);
        char member[256];
        if (nl == 0 || nl >= sizeof(member) || memchr(name, 0, nl))
            continue;
        memcpy(member, name, nl);
        member[nl] = '\0';
        zip_source_t *src = zip_source_buffer(za, contents, cl, 0);
        if (!src)
            abort();
        zip_int64_t i = zip_file_add(za, member, src, ZIP_FL_ENC_GUESS);
        if (i < 0) { /* a duplicate or a name libzip refuses */
            zip_source_free(src);
            continue;
        }
        zip_set_file_compression(za, (zip_uint64_t)i, deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                 0);
    }
    if (zip_close(za) != 0)
        zip_discard(za);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    int mode = fuzz_byte(&in);
    char path[512];
    if (mode & 1) {
        fuzz_write(path, sizeof(path), "x.npz", in.p, in.n);
    } else {
        unlink(fuzz_path(path, sizeof(path), "x.npz"));
        build_zip(path, &in, mode & 2);
    }
    dsv_npz *z = NULL;
    if (dsv_npz_read(path, &z) == DSV_OK) {
        for (int i = 0; i < dsv_npz_count(z); i++) {
            const dsv_tensor *t = dsv_npz_tensor(z, i);
            fuzz_sink += strlen(dsv_npz_name(z, i));
            const uint8_t *b = t->data;
            for (size_t k = 0; k < dsv_tensor_nbytes(t); k++)
                fuzz_sink += b[k];
            if (dsv_npz_find(z, dsv_npz_name(z, i)) != i)
                abort(); /* names are unique */
        }
        dsv_npz_free(z);
    }
    return 0;
}
