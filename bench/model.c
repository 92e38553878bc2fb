/*
 * Whole training steps of ThreeLayerConvNet on a CIFAR-10 shaped batch of 50:
 * dsv_model_loss (train-mode forward, softmax loss, backward into the
 * gradient block), per backend and schedule. Nodes a backend does not cover
 * fall back to naive inside the model, as in training; the label lists which
 * kernel each op used.
 *
 * What must stay true: the timed step is exactly one dsv_model_loss call on
 * preallocated inputs; calibration (schedule auto) and the first plan happen
 * in the untimed setup run.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "shim.h"

#define BATCH 50

static const dsv_backend backends[] = {DSV_BACKEND_NAIVE, DSV_BACKEND_FAST,
                                       DSV_BACKEND_ONEDNN, DSV_BACKEND_AUTO};
static const dsv_schedule schedules[] = {DSV_SCHEDULE_LAYER, DSV_SCHEDULE_BATCH};
#define NB (sizeof(backends) / sizeof(backends[0]))
#define NS (sizeof(schedules) / sizeof(schedules[0]))

typedef struct model_arg {
    dsv_backend backend;
    dsv_schedule schedule;
    char name[64];
} model_arg;

static model_arg args[NB * NS];
static dsv_bench benches[NB * NS];

typedef struct model_state {
    dsv_model *m;
    dsv_tensor x, y;
} model_state;

static void model_teardown(void *state)
{
    model_state *st = state;
    if (!st)
        return;
    dsv_model_destroy(st->m);
    dsv_tensor_free(&st->x);
    dsv_tensor_free(&st->y);
    dsv_free(st);
}

static int model_step(void *state, char *msg, size_t n)
{
    model_state *st = state;
    double loss;
    dsv_status s = dsv_model_loss(st->m, &st->x, &st->y, &loss);
    if (s) {
        dsv_bench_errmsg(msg, n, "dsv_model_loss", s);
        return 1;
    }
    return 0;
}

/* "conv onednn/onednn, relu fast/fast, ..." from dsv_model_describe's
 * "name op fwd/bwd" lines, one entry per op. */
static void summarize(const dsv_model *m, char *out, size_t n)
{
    char desc[4096], seen[512] = " ";
    out[0] = '\0';
    if (dsv_model_describe(m, desc, sizeof(desc)))
        return;
    size_t used = 0;
    for (char *line = strtok(desc, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64], op[32], kern[64], key[40];
        if (sscanf(line, "%63s %31s %63s", name, op, kern) != 3)
            continue;
        snprintf(key, sizeof(key), " %s ", op);
        if (strstr(seen, key) || strlen(seen) + strlen(op) + 2 >= sizeof(seen))
            continue;
        strcat(seen, op);
        strcat(seen, " ");
        int k = snprintf(out + used, n - used, "%s%s %s", used ? ", " : "", op,
                         kern);
        if (k < 0 || (size_t)k >= n - used)
            break;
        used += (size_t)k;
    }
}

static dsv_bench_result model_setup(const void *arg, void **state, char *label,
                                    size_t label_n, char *msg, size_t msg_n)
{
    const model_arg *a = arg;
    model_state *st = dsv_alloc(sizeof(*st));
    if (!st) {
        snprintf(msg, msg_n, "out of memory");
        return DSV_BENCH_FAIL;
    }
    memset(st, 0, sizeof(*st));
    dsv_model_config cfg = dsv_model_config_default(DSV_MODEL_THREELAYER);
    cfg.seed = 1;
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = a->backend;
    o.schedule = a->schedule;
    o.threads = 0;
    int64_t xs[] = {BATCH, 3, 32, 32}, ys[] = {BATCH};
    dsv_status s;
    if ((s = dsv_model_create(&st->m, &cfg)) ||
        (s = dsv_model_set_exec(st->m, &o)) ||
        (s = dsv_tensor_init(&st->x, DSV_F32, 4, xs)) ||
        (s = dsv_tensor_init(&st->y, DSV_I32, 1, ys)))
        goto fail;
    dsv_bench_fill(&st->x, 5, 1.0);
    for (int64_t i = 0; i < BATCH; i++)
        ((int32_t *)st->y.data)[i] = (int32_t)((i * 7) % cfg.num_classes);
    if (model_step(st, msg, msg_n)) /* plans memory, calibrates */
        goto fail_msg;
    char kernels[200];
    summarize(st->m, kernels, sizeof(kernels));
    snprintf(label, label_n, "%s/%s threads=%d [%s]", dsv_backend_name(a->backend),
             dsv_schedule_name(dsv_model_schedule_used(st->m)),
             dsv_get_num_threads(), kernels);
    *state = st;
    return DSV_BENCH_OK;
fail:
    dsv_bench_errmsg(msg, msg_n, "setup", s);
fail_msg:
    model_teardown(st);
    return DSV_BENCH_FAIL;
}

void dsv_bench_register_models(void)
{
    size_t k = 0;
    for (size_t i = 0; i < NB; i++) {
        if (!dsv_backend_available(backends[i]))
            continue;
        for (size_t j = 0; j < NS; j++) {
            model_arg *a = &args[k];
            a->backend = backends[i];
            a->schedule = schedules[j];
            snprintf(a->name, sizeof(a->name), "model_step/threelayer/%s/%s",
                     dsv_backend_name(backends[i]),
                     dsv_schedule_name(schedules[j]));
            benches[k] = (dsv_bench){
                .name = a->name,
                .arg = a,
                .setup = model_setup,
                .step = model_step,
                .teardown = model_teardown,
            };
            dsv_bench_register(&benches[k]);
            k++;
        }
    }
}
