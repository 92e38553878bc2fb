/*
 * libFuzzer target: dsv_checkpoint_load_model on an arbitrary file.
 *
 * The first input byte is a mode: with bit 0 set the target rewrites the
 * length field and the trailing CRC-32 so that mutations reach the decoder
 * behind the checksum instead of all stopping at it.
 */
#include <zlib.h>

#include "dasecv/model.h"
#include "dasecv/solver.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix = data[0] & 1;
    data++;
    size--;
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        abort();
    memcpy(b, data, size);
    if (fix && size >= 28) {
        for (int i = 0; i < 8; i++)
            b[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
        uint32_t crc = (uint32_t)crc32(0L, b, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            b[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    char path[512];
    dsv_model *m = NULL;
    if (dsv_checkpoint_load_model(fuzz_write(path, sizeof(path), "x.ckpt", b, size), &m) ==
        DSV_OK)
        dsv_model_destroy(m);
    free(b);
    return 0;
}
