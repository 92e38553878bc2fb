/* libFuzzer target: dsv_npy_load on an arbitrary file. */
#include "dasecv/npy.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    dsv_tensor t;
    if (dsv_npy_load(fuzz_write(path, sizeof(path), "x.npy", data, size), &t) == DSV_OK) {
        /* touch every element so a size mismatch shows up under ASan */
        const uint8_t *b = t.data;
        for (size_t k = 0; k < dsv_tensor_nbytes(&t); k++)
            fuzz_sink += b[k];
        dsv_tensor_free(&t);
    }
    return 0;
}
