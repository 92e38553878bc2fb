/*
 * The course's sanity check: a ThreeLayerConvNet overfits 100 training images
 * (15 epochs, batch 50, adam 1e-3, weight_scale 1e-2) to a training accuracy
 * of at least 0.9. The images are CIFAR-10 when DSV_CIFAR_DIR names an
 * unpacked cifar-10-batches-bin directory, otherwise a generated set of 10
 * classes of distinct patterns plus noise. Uses the auto backend.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "solver_data.h"

static bool last_train_acc(const dsv_progress *p, void *user)
{
    if (p->epoch_end)
        *(double *)user = p->train_acc;
    return true;
}

/* Trains on train (val for the solver's checks) and returns the training
 * accuracy of the last epoch, over all 100 images (as the course reads
 * solver.train_acc_history[-1]). */
static double overfit(const dsv_split *train, const dsv_split *val, int *iterations)
{
    dsv_model_config mc = dsv_model_config_default(DSV_MODEL_THREELAYER);
    mc.weight_scale = 1e-2;
    mc.seed = 1;
    dsv_model *m;
    TU_OK(dsv_model_create(&m, &mc));
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = DSV_BACKEND_AUTO;
    TU_OK(dsv_model_set_exec(m, &eo));

    double epoch_acc = NAN;
    dsv_solver_config c = dsv_solver_config_default();
    c.optim = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.optim.learning_rate = 1e-3;
    c.batch_size = 50;
    c.num_epochs = 15;
    c.num_train_samples = 100;
    c.seed = 2;
    c.on_progress = last_train_acc;
    c.user = &epoch_acc;
    /* The bound below is not met before training: chance is 0.1. */
    double acc0;
    TU_OK(dsv_check_accuracy(m, train, 0, 50, 0, &acc0));
    assert_true(acc0 < 0.5);
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, train, val, &c));
    TU_OK(dsv_solver_train(s));
    *iterations = (int)dsv_solver_iteration(s);
    const double *tacc;
    int ne = dsv_solver_acc_history(s, &tacc, NULL);
    assert_int_equal(ne, 15);
    assert_true(tacc[ne - 1] == epoch_acc);
    /* the best-validation parameters that are now in the model */
    double acc;
    TU_OK(dsv_check_accuracy(m, train, 0, 50, 0, &acc));
    const double *loss;
    int64_t nl = dsv_solver_loss_history(s, &loss);
    printf("# overfit: %lld iterations, loss %.3f -> %.3f, final train acc %.3f, "
           "best val acc %.3f (train acc %.3f with those parameters)\n",
           (long long)nl, loss[0], loss[nl - 1], epoch_acc, dsv_solver_best_val_acc(s), acc);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    return epoch_acc;
}

static void test_overfit_small_data(void **st)
{
    (void)st;
    const char *dir = getenv("DSV_CIFAR_DIR");
    int iterations = 0;
    double acc;
    if (dir && *dir) {
        char spec[1024];
        snprintf(spec, sizeof(spec), "cifar10:%s", dir);
        dsv_data_options o = dsv_data_options_default();
        o.num_train = 100;
        o.num_val = 100;
        o.num_test = 1;
        dsv_dataset ds;
        TU_OK(dsv_dataset_load(&ds, spec, &o));
        acc = overfit(&ds.train, &ds.val, &iterations);
        printf("# CIFAR-10 from %s\n", dir);
        dsv_dataset_free(&ds);
    } else {
        /* Distinct patterns with heavy noise, mean-subtracted and scaled like
           the real loader's output. */
        const int64_t row = 3 * 32 * 32;
        gen_data all = gen_make(200, 3, 32, 32, 10, 21, 60);
        float *mean = calloc(row, sizeof(float));
        for (int64_t i = 0; i < 100; i++)
            for (int64_t j = 0; j < row; j++)
                mean[j] += all.images[i * row + j] / 100.0f;
        dsv_split tr = all.s, va = all.s;
        tr.n = va.n = 100;
        va.images += 100 * row;
        va.labels += 100;
        tr.mean = va.mean = mean;
        tr.scale = va.scale = 1.0f / 64.0f;
        acc = overfit(&tr, &va, &iterations);
        free(mean);
        gen_free(&all);
    }
    assert_int_equal(iterations, 30);
    printf("# training accuracy %.3f\n", acc);
    assert_true(acc >= 0.9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overfit_small_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
