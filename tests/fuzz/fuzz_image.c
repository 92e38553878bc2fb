/*
 * libFuzzer target: dsv_image_load (PNG, JPEG, BMP) on an arbitrary file.
 * The first three bytes choose the output: channels (1 or 3) and a size of
 * 1..64 each way, so that the resize runs on every decoded image.
 */
#include "dasecv/image.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    int c = fuzz_byte(&in) & 1 ? 3 : 1;
    int h = 1 + fuzz_byte(&in) % 64, w = 1 + fuzz_byte(&in) % 64;
    char path[512];
    dsv_tensor t;
    if (dsv_image_load(fuzz_write(path, sizeof(path), "x.img", in.p, in.n), c, h, w, &t) ==
        DSV_OK) {
        const uint8_t *p = t.data;
        for (size_t k = 0; k < dsv_tensor_nbytes(&t); k++)
            fuzz_sink += p[k];
        dsv_tensor_free(&t);
    }
    return 0;
}
