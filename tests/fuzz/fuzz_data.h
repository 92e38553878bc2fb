/*
 * Shared by the dataset targets: options from the input's first bytes, and a
 * look at every split of a loaded dataset (a few batches through the mean
 * subtraction) so that wrong split bounds show up under ASan.
 */
#ifndef DSV_FUZZ_DATA_H
#define DSV_FUZZ_DATA_H

#include "dasecv/data.h"
#include "fuzz_util.h"

/* Split sizes 0 (the default) to 255 and the mean flag, from 4 bytes. */
static dsv_data_options fuzz_data_options(fuzz_in *in)
{
    dsv_data_options o = dsv_data_options_default();
    o.num_train = fuzz_byte(in);
    o.num_val = fuzz_byte(in);
    o.num_test = fuzz_byte(in);
    o.subtract_mean = fuzz_byte(in) & 1;
    return o;
}

static void fuzz_touch_split(const dsv_split *s)
{
    if (s->n <= 0)
        return;
    int64_t count = s->n < 3 ? s->n : 3;
    int64_t idx[3] = {0, s->n - 1, s->n / 2};
    dsv_tensor x = {0}, y = {0};
    if (dsv_split_batch(s, idx, count, &x, &y, DSV_F32) == DSV_OK) {
        dsv_tensor_free(&x);
        dsv_tensor_free(&y);
    }
}

static void fuzz_load(const char *spec, const dsv_data_options *o)
{
    dsv_dataset ds;
    if (dsv_dataset_load(&ds, spec, o) != DSV_OK)
        return;
    fuzz_touch_split(&ds.train);
    fuzz_touch_split(&ds.val);
    fuzz_touch_split(&ds.test);
    dsv_dataset_free(&ds);
}

#endif
