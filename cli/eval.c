/*
 * dasecv eval: accuracy and mean softmax data loss of a checkpoint's model on
 * one split of a dataset, in test mode, batch by batch.
 *
 * The loss is the data loss only (no regularisation term), computed by the
 * softmax_loss op on the model's scores, so it is comparable across models.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmdline.h"
#include "progress.h"

static const char usage[] =
    "usage: dasecv eval --checkpoint FILE [--data SPEC] [--split train|val|test]\n"
    "                   [--batch-size N] [--backend B] [--threads N] [--json]\n"
    "\n"
    "Accuracy and mean softmax data loss (no regularisation term) of the\n"
    "checkpoint's model, in test mode, on one split of the dataset:\n"
    "  --data SPEC      cifar10[-custom]:DIR | fashion-mnist[:DIR] | mnist:DIR\n"
    "                   (default fashion-mnist: $DASECV_FASHION_MNIST_DIR or\n"
    "                   /usr/share/datasets/fashion-mnist); must be the training dataset,\n"
    "                   whose training mean image is subtracted as in training\n"
    "  --split S        train | val | test (default val)\n"
    "  --batch-size N   images per forward pass (100)\n"
    "  --backend B      naive | fast | onednn | auto (default)\n"
    "  --threads N      threads (default: DASECV_NUM_THREADS or all)\n"
    "  --json           print {\"accuracy\", \"loss\", \"n\"} on stdout\n"
    "Exit status: 0 ok, 1 error, 2 bad usage.\n";

typedef struct eval_result {
    int64_t n, correct;
    double loss_sum;
} eval_result;

static dsv_status eval_split(dsv_model *m, const dsv_split *sp, int batch,
                             eval_result *r)
{
    const dsv_model_options *mc = dsv_model_options_of(m);
    dsv_tensor x = {0}, y = {0}, scores = {0};
    dsv_status s = DSV_OK;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)batch);
    if (!idx)
        return dsv_error(DSV_NOMEM, "eval: no memory");
    memset(r, 0, sizeof(*r));
    for (int64_t i0 = 0; i0 < sp->n; i0 += batch) {
        int64_t cnt = sp->n - i0 < batch ? sp->n - i0 : batch;
        for (int64_t k = 0; k < cnt; k++)
            idx[k] = i0 + k;
        dsv_tensor_free(&x);
        dsv_tensor_free(&y);
        dsv_tensor_free(&scores);
        int64_t ss[2] = {cnt, mc->num_classes};
        if ((s = dsv_split_batch(sp, idx, cnt, &x, &y, (dsv_dtype)mc->dtype)) ||
            (s = dsv_tensor_init(&scores, (dsv_dtype)mc->dtype, 2, ss)) ||
            (s = dsv_model_scores(m, &x, &scores)))
            break;
        const int32_t *yd = y.data;
        for (int64_t k = 0; k < cnt; k++) {
            int64_t best = 0;
            for (int64_t j = 1; j < mc->num_classes; j++)
                if (dsv_tensor_get(&scores, k * mc->num_classes + j) >
                    dsv_tensor_get(&scores, k * mc->num_classes + best))
                    best = j;
            r->correct += best == yd[k];
        }
        double loss = 0;
        dsv_call c = dsv_call_make(DSV_OP_SOFTMAX_LOSS);
        c.x = &scores;
        c.y = &y;
        c.loss = &loss;
        c.nthreads = 1;
        if ((s = dsv_forward(&c, DSV_BACKEND_NAIVE, NULL)))
            break;
        r->loss_sum += loss * (double)cnt;
        r->n += cnt;
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&scores);
    free(idx);
    return s;
}

int dsv_cmd_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *split = "val";
    int batch = 100, threads = 0;
    dsv_backend backend = DSV_BACKEND_AUTO;
    bool json = false, ok = true;
    cli_parser p = cli_parser_make("eval", argc, argv);
    int k;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            fprintf(stderr, "dasecv eval: unexpected argument '%s'\n", argv[p.i]);
            return 2;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--checkpoint")) {
            ok = cli_string(&p, &ckpt);
        } else if (cli_is(&p, "--data")) {
            ok = cli_data_spec(&p, &data);
        } else if (cli_is(&p, "--split")) {
            ok = cli_string(&p, &split);
            if (ok && strcmp(split, "train") && strcmp(split, "val") && strcmp(split, "test"))
                return cli_usage_error(&p, "--split must be train, val or test");
        } else if (cli_is(&p, "--batch-size")) {
            ok = cli_int(&p, 1, 1 << 20, &batch);
        } else if (cli_is(&p, "--threads")) {
            ok = cli_int(&p, 1, 4096, &threads);
        } else if (cli_is(&p, "--backend")) {
            const char *v = cli_value(&p);
            if (!v)
                return 2;
            if (dsv_backend_from_name(v, &backend) || !dsv_backend_available(backend)) {
                fprintf(stderr, "dasecv eval: --backend: '%s' is not an available backend\n", v);
                return 2;
            }
        } else if (cli_is(&p, "--json")) {
            ok = cli_flag(&p), json = true;
        } else {
            return cli_unknown(&p);
        }
        if (!ok)
            return 2;
    }
    if (!ckpt)
        return cli_usage_error(&p, "--checkpoint FILE is required");
    if (threads && dsv_set_num_threads(threads) != DSV_OK) {
        fprintf(stderr, "dasecv eval: %s\n", dsv_errmsg());
        return 2;
    }

    int rc = 1;
    dsv_model *m = NULL;
    dsv_dataset ds;
    memset(&ds, 0, sizeof(ds));
    if (dsv_checkpoint_load_model(ckpt, &m) != DSV_OK) {
        fprintf(stderr, "dasecv eval: cannot load %s: %s\n", ckpt, dsv_errmsg());
        return 1;
    }
    if (!cli_load_dataset("eval", data, NULL, &ds) || !cli_model_fits("eval", m, &ds))
        goto out;
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = backend;
    eo.threads = threads;
    if (dsv_model_set_exec(m, &eo) != DSV_OK) {
        fprintf(stderr, "dasecv eval: %s\n", dsv_errmsg());
        goto out;
    }
    const dsv_split *sp = !strcmp(split, "train") ? &ds.train
                          : !strcmp(split, "val") ? &ds.val
                                                  : &ds.test;
    eval_result r;
    if (eval_split(m, sp, batch, &r) != DSV_OK) {
        fprintf(stderr, "dasecv eval: %s\n", dsv_errmsg());
        goto out;
    }
    double acc = r.n ? (double)r.correct / (double)r.n : NAN;
    double loss = r.n ? r.loss_sum / (double)r.n : NAN;
    if (json) {
        printf("{\"accuracy\": ");
        cli_json_number(stdout, acc);
        printf(", \"loss\": ");
        cli_json_number(stdout, loss);
        printf(", \"n\": %lld, \"split\": ", (long long)r.n);
        cli_json_string(stdout, split);
        printf("}\n");
    } else {
        printf("accuracy %.4f loss %.6f n %lld (%s split of %s)\n", acc, loss,
               (long long)r.n, split, ds.name);
    }
    rc = 0;
out:
    dsv_dataset_free(&ds);
    dsv_model_destroy(m);
    return rc;
}
