/*
 * Optimizers, the Solver and checkpoints.
 *
 * Optimizer state (velocity, first/second moments) lives in flat blocks with
 * the parameters' layout, so a step is one loop over the model's block. The
 * Solver follows the course's solver.py: minibatch SGD with the chosen update
 * rule, lr decay after each epoch, accuracy checks at each epoch end on
 * num_train_samples training / num_val_samples validation images, histories,
 * and the best-validation parameters swapped in at the end.
 */
#ifndef DASECV_SOLVER_H
#define DASECV_SOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsv_update_rule {
    DSV_UPDATE_SGD = 0,
    DSV_UPDATE_SGD_MOMENTUM,
    DSV_UPDATE_RMSPROP,
    DSV_UPDATE_ADAM,
    DSV_UPDATE_COUNT
} dsv_update_rule;

DSV_API const char *dsv_update_rule_name(dsv_update_rule r); /* "sgd", "sgd_momentum", "rmsprop", "adam" */
DSV_API dsv_status dsv_update_rule_from_name(const char *s, dsv_update_rule *r);

typedef struct dsv_optim_config {
    dsv_update_rule rule;
    double learning_rate; /* 1e-2; adam 1e-3 */
    double momentum;      /* 0.9 */
    double decay_rate;    /* rmsprop 0.99 */
    double beta1, beta2;  /* adam 0.9, 0.999 */
    double epsilon;       /* 1e-8 */
} dsv_optim_config;

DSV_API dsv_optim_config dsv_optim_config_default(dsv_update_rule rule);

typedef struct dsv_optimizer dsv_optimizer;
DSV_API dsv_status dsv_optimizer_create(dsv_optimizer **o, const dsv_optim_config *cfg,
                                int64_t n, dsv_dtype dtype);
DSV_API void dsv_optimizer_destroy(dsv_optimizer *o);
/* params -= update(grads), one flat loop over n values. */
DSV_API void dsv_optimizer_step(dsv_optimizer *o, void *params, const void *grads);
/* Whether that step would leave every parameter and state value finite
 * (computes it the same way and writes nothing). */
DSV_API bool dsv_optimizer_step_finite(dsv_optimizer *o, const void *params, const void *grads);
/* Threads the step may use when n is large (0, the default: all of
 * dsv_get_num_threads()); the result does not depend on it. */
DSV_API void dsv_optimizer_set_threads(dsv_optimizer *o, int threads);
DSV_API dsv_optim_config *dsv_optimizer_config(dsv_optimizer *o); /* lr decays here */
/* State for checkpoints: k flat blocks of n values (0, 1 or 2) and the step. */
DSV_API int dsv_optimizer_num_states(const dsv_optimizer *o);
DSV_API void *dsv_optimizer_state(dsv_optimizer *o, int k);
DSV_API int64_t *dsv_optimizer_step_count(dsv_optimizer *o);

typedef struct dsv_progress {
    int64_t iteration, num_iterations; /* 1-based after the step */
    int epoch, num_epochs;             /* epoch being trained (1-based) */
    double loss;
    double learning_rate;
    double train_acc, val_acc;         /* NaN except at an epoch end */
    bool epoch_end;
    double images_per_s;               /* over the current epoch so far */
    double seconds;                    /* since training started */
} dsv_progress;

typedef struct dsv_solver_config {
    dsv_optim_config optim;
    double lr_decay;            /* 1.0 */
    int batch_size;             /* 100 */
    int num_epochs;             /* 10 */
    int64_t num_train_samples;  /* 1000; 0 = all */
    int64_t num_val_samples;    /* 0 = all */
    int print_every;            /* 10 (for the callback's use) */
    bool verbose;
    uint64_t seed;              /* minibatch sampling */
    /* called after every iteration; return false to stop (checkpoint first) */
    bool (*on_progress)(const dsv_progress *p, void *user);
    void *user;
} dsv_solver_config;

DSV_API dsv_solver_config dsv_solver_config_default(void);

typedef struct dsv_solver dsv_solver;
DSV_API dsv_status dsv_solver_create(dsv_solver **s, dsv_model *m,
                             const dsv_split *train, const dsv_split *val,
                             const dsv_solver_config *cfg);
DSV_API void dsv_solver_destroy(dsv_solver *s);
/* Trains from the current position to num_epochs. Returns DSV_OK when done or
 * stopped (dsv_solver_stopped tells which); DSV_INVALID with a message if the
 * loss, a gradient or a running statistic becomes NaN or Inf, or the update
 * would make a parameter or optimizer state so (the whole state is then that
 * from before the bad step). */
DSV_API dsv_status dsv_solver_train(dsv_solver *s);
/* Async-signal-safe: asks train to return after the current iteration. */
DSV_API void dsv_solver_request_stop(dsv_solver *s);
DSV_API bool dsv_solver_stopped(const dsv_solver *s);
DSV_API bool dsv_solver_done(const dsv_solver *s);

/* Accuracy of m on up to num_samples images of split (0 = all), batched. */
DSV_API dsv_status dsv_check_accuracy(dsv_model *m, const dsv_split *split,
                              int64_t num_samples, int batch_size,
                              uint64_t seed, double *acc);

/* Histories: loss per iteration, accuracies per epoch. */
DSV_API int64_t dsv_solver_loss_history(const dsv_solver *s, const double **v);
DSV_API int dsv_solver_acc_history(const dsv_solver *s, const double **train,
                           const double **val);
DSV_API double dsv_solver_best_val_acc(const dsv_solver *s);
DSV_API int64_t dsv_solver_iteration(const dsv_solver *s);
DSV_API int dsv_solver_epoch(const dsv_solver *s); /* completed epochs */

/* Checkpoints: see docs/checkpoint.md. Written atomically (temporary file,
 * fsync, rename, fsync of the directory). */
DSV_API dsv_status dsv_checkpoint_save(const dsv_solver *s, const char *path);
/* Creates the model and solver from a checkpoint; train/val as for create. */
DSV_API dsv_status dsv_checkpoint_load(const char *path, dsv_model **m,
                               dsv_solver **s, const dsv_split *train,
                               const dsv_split *val,
                               const dsv_solver_config *cfg);
/* Loads only the model (for eval/predict). */
DSV_API dsv_status dsv_checkpoint_load_model(const char *path, dsv_model **m);

#ifdef __cplusplus
}
#endif
#endif
