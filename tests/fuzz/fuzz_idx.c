/*
 * libFuzzer target: the IDX (MNIST) loader (dsv_dataset_load "mnist:DIR").
 * Input: 4 option bytes (fuzz_data.h), a byte whose bits 0..3 say which of
 * the four files go to NAME.gz instead of NAME (zlib reads both), then the
 * four files train-images, train-labels, t10k-images, t10k-labels as
 * length-prefixed parts (fuzz_util.h).
 */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const files[4] = {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    };
    fuzz_in in = {data, size};
    dsv_data_options o = fuzz_data_options(&in);
    int gz = fuzz_byte(&in);
    char path[512], name[64], spec[600];
    for (int i = 0; i < 4; i++) {
        size_t n;
        const uint8_t *p = fuzz_part(&in, &n);
        /* only one of NAME and NAME.gz may exist */
        snprintf(name, sizeof(name), "%s%s", files[i], gz >> i & 1 ? "" : ".gz");
        unlink(fuzz_path(path, sizeof(path), name));
        snprintf(name, sizeof(name), "%s%s", files[i], gz >> i & 1 ? ".gz" : "");
        fuzz_write(path, sizeof(path), name, p, n);
    }
    snprintf(spec, sizeof(spec), "mnist:%s", fuzz_dir());
    fuzz_load(spec, &o);
    return 0;
}
