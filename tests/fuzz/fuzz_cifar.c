/*
 * libFuzzer target: the CIFAR-10 binary loader (dsv_dataset_load "cifar10-custom:DIR", which takes any record count).
 * Input: 4 option bytes (fuzz_data.h), then the six batch files
 * data_batch_1..5.bin and test_batch.bin, then batches.meta.txt, each a
 * length-prefixed part (fuzz_util.h).
 */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const files[7] = {
        "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
        "data_batch_5.bin", "test_batch.bin",   "batches.meta.txt",
    };
    fuzz_in in = {data, size};
    dsv_data_options o = fuzz_data_options(&in);
    char path[512], spec[600];
    for (int i = 0; i < 7; i++) {
        size_t n;
        const uint8_t *p = fuzz_part(&in, &n);
        fuzz_write(path, sizeof(path), files[i], p, n);
    }
    snprintf(spec, sizeof(spec), "cifar10-custom:%s", fuzz_dir());
    fuzz_load(spec, &o);
    return 0;
}
