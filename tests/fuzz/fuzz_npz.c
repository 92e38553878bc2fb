/* libFuzzer target: dsv_npz_read on an arbitrary file. */
#include "dasecv/npz.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    dsv_npz *z = NULL;
    if (dsv_npz_read(fuzz_write(path, sizeof(path), "x.npz", data, size), &z) == DSV_OK) {
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
