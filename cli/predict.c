/*
 * dasecv predict: top-k classes of image files under a checkpoint's model.
 *
 * What must stay true: an image reaches the model exactly as a training image
 * does. Files are decoded and converted to the model's channels and size as
 * uint8 (C, H, W) (dsv_image_load: RGB or BT.601 luminance, bilinear resize),
 * then go through dsv_split_batch with the mean image and scale the model
 * was trained with: the checkpoint's own (version 2 checkpoints store them,
 * and the class names), or, with --data or for older checkpoints, those of
 * the named dataset recomputed the same way as when it was trained on.
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
    "  --data SPEC        not needed for checkpoints that store the training\n"
    "                     mean image and class names (written by this version);\n"
    "                     for older ones, the dataset the model was trained on:\n"
    "                     cifar10[-custom]:DIR | fashion-mnist[:DIR] | mnist:DIR (default\n"
    "                     fashion-mnist), whose training mean is recomputed and\n"
    "                     subtracted, as in training, and whose class names are\n"
    "                     printed. Given, it takes the place of the checkpoint's.\n"
    "  --top-k K          classes per image (default 5, at most the classes)\n"
    "  --backend B        naive | fast | onednn | auto (default)\n"
    "  --json             one JSON object: {\"predictions\": [{\"image\", \"top\":\n"
    "                     [{\"class\", \"name\", \"probability\"}...]}...]}\n"
    "Images are converted to the model's input: RGB (or luminance\n"
    "0.299 R + 0.587 G + 0.114 B for 1-channel models; alpha ignored; a note on\n"
    "stderr says when the image's channels differ from the model's), cropped\n"
    "to the centred window of the model's aspect ratio, and resized bilinearly\n"
    "(half-pixel centres, no antialiasing) to its H x W.\n"
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

/* The checkpoint's class names, else the dataset's, else "?". */
static const char *class_name(const dsv_model *m, const dsv_dataset *ds, int k)
{
    const char *name = dsv_model_class_name(m, k);
    if (name)
        return name;
    return ds && k < ds->num_classes && k < 10 ? ds->class_names[k] : "?";
}

static void print_top(const char *path, const double *prob, int nc, int topk,
                      const dsv_model *m, const dsv_dataset *ds, bool json, bool first)
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
        const char *name = class_name(m, ds, best);
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
            ok = cli_data_spec(&p, &data);
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
    const float *mean;
    float scale;
    bool stored = dsv_model_preprocess(m, &mean, &scale);
    dsv_split sp;
    memset(&sp, 0, sizeof(sp));
    if (data || !stored) {
        if (!cli_load_dataset("predict", data, NULL, &ds) || !cli_model_fits("predict", m, &ds))
            goto out;
        sp = ds.train; /* its mean and scale */
    } else {
        sp.mean = mean;
        sp.scale = scale;
    }
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
    sp.c = mc->input_dim[0];
    sp.h = mc->input_dim[1];
    sp.w = mc->input_dim[2];
    int64_t row = (int64_t)sp.c * sp.h * sp.w;
    pix = malloc((size_t)(row * nimg));
    labels = calloc((size_t)nimg, sizeof(int32_t));
    prob = malloc(sizeof(double) * (size_t)nc);
    if (!pix || !labels || !prob) {
        fprintf(stderr, "dasecv predict: out of memory\n");
        goto out;
    }
    for (int i = 0; i < nimg; i++) {
        dsv_tensor img = {0};
        int ic = 0;
        if (dsv_image_channels(images[i], &ic) == DSV_OK && (sp.c == 1) != (ic <= 2))
            fprintf(stderr, "dasecv predict: %s has %s, the model takes %s: converted to %s\n",
                    images[i], ic <= 2 ? "1 channel (gray)" : "3 channels (colour)",
                    sp.c == 1 ? "1 channel" : "3 channels",
                    sp.c == 1 ? "luminance (0.299 R + 0.587 G + 0.114 B)"
                              : "RGB by repeating the gray channel");
        if (dsv_image_load(images[i], sp.c, sp.h, sp.w, &img) != DSV_OK) {
            fprintf(stderr, "dasecv predict: %s\n", dsv_errmsg());
            goto out;
        }
        memcpy(pix + row * i, img.data, (size_t)row);
        dsv_tensor_free(&img);
    }
    /* the images as a split with the training split's mean and scale */
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
        print_top(images[i], prob, nc, topk, m, data || !stored ? &ds : NULL, json, i == 0);
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
