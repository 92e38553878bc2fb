/* libFuzzer target: a model file's text through the parser and the graph
 * builder (dsv_model_create_from_text), as given and, when it leaves the input
 * shape to the data, on a small image shape. */
#include <string.h>

#include "dasecv/model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    dsv_model_options o = dsv_model_options_default();
    dsv_model *m = NULL;
    if (dsv_model_create_from_text(&m, text, "fuzz.cfg", &o) != DSV_OK) {
        o.input_dim[0] = 3, o.input_dim[1] = o.input_dim[2] = 12, o.num_classes = 4;
        (void)dsv_model_create_from_text(&m, text, "fuzz.cfg", &o);
    }
    if (m) {
        fuzz_sink += (unsigned)dsv_model_num_params(m);
        dsv_model_destroy(m);
    }
    free(text);
    return 0;
}
