/*
 * dasecv predict: top-k classes of image files under a checkpoint's model.
 *
 * What must stay true: an image reaches the model exactly as a training image
 * does. Files are decoded and converted to the model's channels and size as
 * uint8 (C, H, W) (dsv_image_load: RGB or BT.601 luminance, bilinear resize),
 * then go through dsv_split_batch with the mean image and scale of the
 * dataset given by --data, i.e. that dataset's training mean, computed the
 * same way as when it was trained on. Checkpoints do not hold the mean image,
 * so --data must name the training dataset (default fashion-mnist).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmdline.h"
#include "progress.h"

static const char usage[] =
    "usage: dasecv predict --checkpoint FILE [--data SPEC] [--top-k K] [--json]\n"
    "                      IMAGE...\n"
    "\n"
    "Prints the K most probable classes (softmax of the scores) for each PNG,\n"
    "JPEG or BMP image.\n"
    "  --checkpoint FILE  a checkpoint written by dasecv train\n"
    "  --data SPEC        the dataset the model was trained on: cifar10:DIR |\n"
    "                     fashion-mnist[:DIR] | mnist:DIR (default fashion-mnist).\n"
    "                     Checkpoints do not store the mean image: the dataset's\n"
    "                     training mean is recomputed from it and subtracted, as\n"
    "                     in training, and its class names are printed.\n"
    "  --top-k K          classes per image (default 5, at most the classes)\n"
    "  --backend B        naive | fast | onednn | auto (default)\n"
    "  --json             one JSON object: {\"predictions\": [{\"image\", \"top\":\n"
    "                     [{\"class\", \"name\", \"probability\"}...]}...]}\n"
    "Images are converted to the model's input: RGB (or luminance\n"
    "0.299 R + 0.587 G + 0.114 B for 1-channel models; alpha ignored), resized\n"
    "bilinearly (half-pixel centres, no antialiasing) to its H x W.\n"
    "Exit status: 0 ok, 1 error (unreadable image, checkpoint...), 2 bad usage.\n";

/* Softmax probabilities of row k of scores into prob (numerically stable). */
static void softmax_row(const dsv_tensor *scores, int64_t k, int nc, double *prob)
{
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < nc; j++)
        mx = fmax(mx, dsv_tensor_get(scores, k * nc + j));
    for (int j = 0; j < nc; j++)
        sum += prob[j] = exp(dsv_tensor_get(scores, k * nc + j) - mx);
    for (int j = 0; j < nc; j++)
        prob[j] /= sum;
}

static void print_top(const char *path, const double *prob, int nc, int topk,
                      const dsv_dataset *ds, bool json, bool first)
{
    bool used[64] = {0};
    if (json) {
        printf("%s{\"image\": ", first ? "" : ", ");
        cli_json_string(stdout, path);
        printf(", \"top\": [");
    } else {
        printf("%s\n", path);
    }
    for (int t = 0; t < topk; t++) {
        int best = -1;
        for (int j = 0; j < nc; j++)
            if (!used[j] && (best < 0 || prob[j] > prob[best]))
                best = j;
        used[best] = true;
        const char *name = best < ds->num_classes && best < 10 ? ds->class_names[best] : "?";
        if (json) {
            printf("%s{\"class\": %d, \"name\": ", t ? ", " : "", best);
            cli_json_string(stdout, name);
            printf(", \"probability\": ");
            cli_json_number(stdout, prob[best]);
            printf("}");
        } else {
            printf("  %d. %-14s (class %d) %.4f\n", t + 1, name, best, prob[best]);
        }
    }
    if (json)
        printf("]}");
}

int dsv_cmd_predict(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL;
    int topk = 5;
    dsv_backend backend = DSV_BACKEND_AUTO;
    bool json = false, ok = true;
    const char **images = calloc((size_t)argc + 1, sizeof(char *));
    int nimg = 0;
    if (!images)
        return 1;
    cli_parser p = cli_parser_make("predict", argc, argv);
    int k, rc = 2;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            images[nimg++] = argv[p.i];
            continue;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            free(images);
            return 0;
        } else if (cli_is(&p, "--checkpoint")) {
            ok = cli_string(&p, &ckpt);
        } else if (cli_is(&p, "--data")) {
            ok = cli_string(&p, &data);
        } else if (cli_is(&p, "--top-k")) {
            ok = cli_int(&p, 1, 64, &topk);
        } else if (cli_is(&p, "--backend")) {
            const char *v = cli_value(&p);
            ok = v && dsv_backend_from_name(v, &backend) == DSV_OK &&
                 dsv_backend_available(backend);
            if (v && !ok)
                fprintf(stderr, "dasecv predict: --backend: '%s' is not an available backend\n",
                        v);
        } else if (cli_is(&p, "--json")) {
            ok = cli_flag(&p), json = true;
        } else {
            free(images);
            return cli_unknown(&p);
        }
        if (!ok)
            goto free_images;
    }
    if (!ckpt) {
        rc = cli_usage_error(&p, "--checkpoint FILE is required");
        goto free_images;
    }
    if (nimg == 0) {
        rc = cli_usage_error(&p, "no IMAGE given");
        goto free_images;
    }

    rc = 1;
    dsv_model *m = NULL;
    dsv_dataset ds;
    memset(&ds, 0, sizeof(ds));
    uint8_t *pix = NULL;
    int32_t *labels = NULL;
    double *prob = NULL;
    dsv_tensor x = {0}, y = {0}, scores = {0};
    if (dsv_checkpoint_load_model(ckpt, &m) != DSV_OK) {
        fprintf(stderr, "dasecv predict: cannot load %s: %s\n", ckpt, dsv_errmsg());
        goto free_images;
    }
    if (!cli_load_dataset("predict", data, NULL, &ds) || !cli_model_fits("predict", m, &ds))
        goto out;
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = backend;
    if (dsv_model_set_exec(m, &eo) != DSV_OK) {
        fprintf(stderr, "dasecv predict: %s\n", dsv_errmsg());
        goto out;
    }
    const dsv_model_options *mc = dsv_model_options_of(m);
    int nc = mc->num_classes;
    if (nc > 64) { /* print_top's bookkeeping */
        fprintf(stderr, "dasecv predict: models with more than 64 classes are not supported\n");
        goto out;
    }
    if (topk > nc)
        topk = nc;
    int64_t row = (int64_t)ds.train.c * ds.train.h * ds.train.w;
    pix = malloc((size_t)(row * nimg));
    labels = calloc((size_t)nimg, sizeof(int32_t));
    prob = malloc(sizeof(double) * (size_t)nc);
    if (!pix || !labels || !prob) {
        fprintf(stderr, "dasecv predict: out of memory\n");
        goto out;
    }
    for (int i = 0; i < nimg; i++) {
        dsv_tensor img = {0};
        if (dsv_image_load(images[i], ds.train.c, ds.train.h, ds.train.w, &img) != DSV_OK) {
            fprintf(stderr, "dasecv predict: %s\n", dsv_errmsg());
            goto out;
        }
        memcpy(pix + row * i, img.data, (size_t)row);
        dsv_tensor_free(&img);
    }
    /* the images as a split with the training split's mean and scale */
    dsv_split sp = ds.train;
    sp.n = nimg;
    sp.images = pix;
    sp.labels = labels;
    int64_t ss[2] = {nimg, nc};
    if (dsv_split_batch(&sp, NULL, nimg, &x, &y, (dsv_dtype)mc->dtype) != DSV_OK ||
        dsv_tensor_init(&scores, (dsv_dtype)mc->dtype, 2, ss) != DSV_OK ||
        dsv_model_scores(m, &x, &scores) != DSV_OK) {
        fprintf(stderr, "dasecv predict: %s\n", dsv_errmsg());
        goto out;
    }
    if (json)
        printf("{\"predictions\": [");
    for (int i = 0; i < nimg; i++) {
        softmax_row(&scores, i, nc, prob);
        print_top(images[i], prob, nc, topk, &ds, json, i == 0);
    }
    if (json)
        printf("]}\n");
    rc = 0;
out:
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&scores);
    free(pix);
    free(labels);
    free(prob);
    dsv_dataset_free(&ds);
    dsv_model_destroy(m);
free_images:
    free(images);
    return rc;
}
