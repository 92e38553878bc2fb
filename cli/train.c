/*
 * dasecv train: builds a model (or resumes one from a checkpoint), trains it
 * with the Solver on a dataset, and saves checkpoints.
 *
 * What must stay true:
 *  - the SIGINT, SIGTERM and SIGHUP handler only calls dsv_solver_request_stop
 *    and notes the signal (async-signal-safe); the command then saves the
 *    checkpoint and exits with 128 + the signal number. A second signal kills
 *    the process at once, which leaves the previous checkpoint as it was
 *    (the save renames a complete temporary file into place);
 *  - every output path is checked before any data is read (cli/outpath.c);
 *  - a NaN/Inf loss never reaches a checkpoint: the last one written (at the
 *    previous epoch end) is kept and the command exits with 1;
 *  - checkpoints are written at each epoch end and at the end, atomically
 *    (dsv_checkpoint_save), so a killed run leaves the previous one loadable.
 */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmdline.h"
#include "plan.h"
#include "dist_cli.h"
#include "outpath.h"
#include "progress.h"

static const char usage[] =
    "usage: dasecv train [options]\n"
    "\n"
    "Trains a model with the Solver (minibatch SGD and an update rule, lr decay\n"
    "after each epoch, accuracy checks at each epoch end, best validation\n"
    "parameters kept at the end), as the course's solver.py.\n"
    "\n"
    "data:\n"
    "  --data SPEC              cifar10[-custom]:DIR | fashion-mnist[:DIR] | mnist:DIR\n"
    "                           (default: fashion-mnist, from Debian's\n"
    "                           dataset-fashion-mnist package, or the directory in\n"
    "                           $DASECV_FASHION_MNIST_DIR; the input shape and\n"
    "                           classes of the model come from the dataset)\n"
    "  --train-size N           train on the first N training images only\n"
    "model (ignored with --resume, which restores the checkpoint's model):\n"
    "  --model NAME|FILE        a built-in model: threelayer (default) | fc |\n"
    "                           resnet | vgg | lenet, or a model file (see\n"
    "                           docs/model-files.md; dasecv describe shows one)\n"
    "  --init-from FILE.npz     start from these weights (names and shapes as\n"
    "                           dasecv export writes them)\n"
    "the course's options, for threelayer, fc and resnet:\n"
    "  --num-filters N          threelayer: conv filters (32)\n"
    "  --filter-size N          threelayer: conv filter size (7)\n"
    "  --hidden-dim N           threelayer: hidden units (100)\n"
    "  --hidden-dims A,B,...    fc: hidden layer sizes (100,100)\n"
    "  --weight-scale X         std of the initial weights (1e-3; fc 1e-2)\n"
    "  --normalization N        fc: none | batchnorm | layernorm\n"
    "  --dropout P              fc: keep probability in (0, 1] (1 = none)\n"
    "any model:\n"
    "  --reg X                  L2 regularisation strength (0)\n"
    "  --dtype T                float32 | float64 (default: the model file's,\n"
    "                           else float32)\n"
    "solver:\n"
    "  --update-rule R          sgd (default) | sgd_momentum | rmsprop | adam\n"
    "  --learning-rate X        (1e-2; adam 1e-3)\n"
    "  --lr-decay X             factor after each epoch (1.0)\n"
    "  --batch-size N           (100)\n"
    "  --num-epochs N           (10)\n"
    "  --num-train-samples N    training images for the epoch-end accuracy\n"
    "                           (1000; 0 = all)\n"
    "  --num-val-samples N      validation images for it (0 = all)\n"
    "  --print-every N          iterations between progress lines (10)\n"
    "  --seed N                 weights and minibatch sampling (0)\n"
    "execution:\n"
    "  --backend B              naive | fast | onednn | auto (default)\n"
    "  --threads N              threads (default: DASECV_NUM_THREADS or all)\n"
    "  --schedule S             layer (default) | batch | auto\n"
    "  --plan FILE              take auto's timed decisions (schedule per batch\n"
    "                           size, oneDNN implementations) from FILE, written\n"
    "                           by --save-plan, instead of timing (checkpoints\n"
    "                           carry them too: --resume reuses the run's own)\n"
    "  --save-plan FILE         write the decisions this run used, at the end\n"
    "under mpirun (one model, each rank a shard of every --batch-size batch):\n"
    "  --bucket-mb X            gradient sums in buckets of X MiB, overlapped\n"
    "                           with backward (1)\n"
    "  --bn-stats S             global (default: batch norm statistics over all\n"
    "                           ranks) | local (each rank its own)\n"
    "  --dist-timeout S         a rank waiting longer than S seconds for the\n"
    "                           others stops the job (300; 0 = never)\n"
    "files and output:\n"
    "  --checkpoint FILE        saved at each epoch end and at the end\n"
    "  --resume FILE            continue from a checkpoint (to --num-epochs)\n"
    "  --log FILE.csv           one row per iteration: iteration, epoch, loss,\n"
    "                           lr, train_acc, val_acc, images_per_s\n"
    "  --json                   print one JSON object on stdout at the end\n"
    "  --quiet                  no progress output\n"
    "\n"
    "Progress goes to stderr: a bar on a terminal, else a line every\n"
    "--print-every iterations. images_per_s in the summary counts the training\n"
    "steps only (the epoch-end accuracy checks are in seconds, not in it).\n"
    "With --resume, the solver settings (update rule, learning rate, batch size,\n"
    "decay, seed) come from the checkpoint; model and solver options given\n"
    "with it are ignored, with a warning naming them.\n"
    "--checkpoint and --log must be regular files (or new files in a writable\n"
    "directory); a symbolic link's target is written.\n"
    "Exit status: 0 done; 1 error, a NaN/Inf loss or a failed log write\n"
    "(the last good checkpoint is kept, not overwritten); 2 bad usage; 130,\n"
    "143, 129: interrupted by SIGINT (Ctrl-C), SIGTERM or SIGHUP after saving\n"
    "the checkpoint (a second signal stops at once, keeping the previous one).\n";

typedef struct train_opts {
    const char *data, *checkpoint, *resume, *log, *model, *init_from;
    const char *plan, *save_plan;
    int64_t train_size;
    dsv_model_kind kind;
    bool course;      /* --model names one of the course's kinds */
    bool has_dtype;
    bool has_num_filters, has_filter_size, has_hidden_dim, has_hidden_dims;
    bool has_weight_scale, has_lr;
    int num_filters, filter_size, hidden_dim, num_hidden;
    int hidden_dims[DSV_MAX_HIDDEN];
    double weight_scale, reg, dropout, learning_rate, lr_decay;
    dsv_norm norm;
    dsv_dtype dtype;
    dsv_update_rule rule;
    int batch_size, num_epochs, print_every, threads;
    int64_t num_train_samples, num_val_samples;
    uint64_t seed;
    dsv_backend backend;
    dsv_schedule schedule;
    bool json, quiet;
    cli_dist_opts dist;
    int rank; /* MPI rank (0 in one process): only rank 0 prints and saves */
} train_opts;

static bool parse_hidden_dims(cli_parser *p, train_opts *o)
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    o->num_hidden = 0;
    const char *s = v;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 1 || x > 1000000 || (*end && *end != ',') ||
            o->num_hidden == DSV_MAX_HIDDEN) {
            fprintf(stderr,
                    "dasecv train: --hidden-dims: '%s' is not a list of up to %d positive "
                    "sizes like 100,100\n",
                    v, DSV_MAX_HIDDEN);
            return false;
        }
        o->hidden_dims[o->num_hidden++] = (int)x;
        s = *end ? end + 1 : end;
    }
    if (o->num_hidden == 0) {
        fprintf(stderr, "dasecv train: --hidden-dims: empty list\n");
        return false;
    }
    return true;
}

/* A name looked up with one of the engine's *_from_name functions. */
#define NAMED(fn, out)                                                         \
    do {                                                                       \
        const char *v_ = cli_value(&p);                                        \
        if (!v_)                                                               \
            return 2;                                                          \
        if (fn(v_, out) != DSV_OK) {                                           \
            fprintf(stderr, "dasecv train: %s: %s\n", p.name, dsv_errmsg());   \
            return 2;                                                          \
        }                                                                      \
    } while (0)

/* Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){
        .kind = DSV_MODEL_THREELAYER, .course = true, .dropout = 1.0, .lr_decay = 1.0,
        .norm = DSV_NORM_NONE, .dtype = DSV_F32, .rule = DSV_UPDATE_SGD,
        .batch_size = 100, .num_epochs = 10, .print_every = 10,
        .num_train_samples = 1000, .num_val_samples = 0,
        .backend = DSV_BACKEND_AUTO, .schedule = DSV_SCHEDULE_LAYER,
        .dist = cli_dist_opts_default(),
    };
    cli_parser p = cli_parser_make("train", argc, argv);
    int k;
    bool ok = true;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            fprintf(stderr, "dasecv train: unexpected argument '%s'\n", argv[p.i]);
            return 2;
        }
        if (cli_is(&p, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(&p, "--json")) {
            ok = cli_flag(&p), o->json = true;
        } else if (cli_is(&p, "--quiet")) {
            ok = cli_flag(&p), o->quiet = true;
        } else if (cli_is(&p, "--data")) {
            ok = cli_data_spec(&p, &o->data);
        } else if (cli_is(&p, "--checkpoint")) {
            ok = cli_string(&p, &o->checkpoint);
        } else if (cli_is(&p, "--resume")) {
            ok = cli_string(&p, &o->resume);
        } else if (cli_is(&p, "--plan")) {
            ok = cli_string(&p, &o->plan);
        } else if (cli_is(&p, "--save-plan")) {
            ok = cli_string(&p, &o->save_plan);
        } else if (cli_is(&p, "--log")) {
            ok = cli_string(&p, &o->log);
        } else if (cli_is(&p, "--train-size")) {
            ok = cli_int64(&p, 1, INT64_MAX, &o->train_size);
        } else if (cli_is(&p, "--model")) {
            ok = cli_string(&p, &o->model);
            if (ok) {
                struct stat sb;
                bool exists = stat(o->model, &sb) == 0;
                o->course = !strchr(o->model, '/') && !exists &&
                            dsv_model_kind_from_name(o->model, &o->kind) == DSV_OK;
                if (!o->course && !exists && !dsv_builtin_model_text(o->model)) {
                    dsv_model *none;
                    dsv_model_create_from_file(&none, o->model, NULL); /* the message */
                    fprintf(stderr, "dasecv train: --model: %s\n", dsv_errmsg());
                    return 2;
                }
            }
        } else if (cli_is(&p, "--init-from")) {
            ok = cli_string(&p, &o->init_from);
        } else if (cli_is(&p, "--num-filters")) {
            ok = cli_int(&p, 1, 4096, &o->num_filters), o->has_num_filters = true;
        } else if (cli_is(&p, "--filter-size")) {
            ok = cli_int(&p, 1, 63, &o->filter_size), o->has_filter_size = true;
        } else if (cli_is(&p, "--hidden-dim")) {
            ok = cli_int(&p, 1, 1000000, &o->hidden_dim), o->has_hidden_dim = true;
        } else if (cli_is(&p, "--hidden-dims")) {
            ok = parse_hidden_dims(&p, o), o->has_hidden_dims = true;
        } else if (cli_is(&p, "--weight-scale")) {
            ok = cli_double(&p, 0, true, 1e6, &o->weight_scale), o->has_weight_scale = true;
        } else if (cli_is(&p, "--reg")) {
            ok = cli_double(&p, 0, false, 1e6, &o->reg);
        } else if (cli_is(&p, "--normalization")) {
            NAMED(dsv_norm_from_name, &o->norm);
        } else if (cli_is(&p, "--dropout")) {
            ok = cli_double(&p, 0, true, 1, &o->dropout);
        } else if (cli_is(&p, "--dtype")) {
            const char *v = cli_value(&p);
            if (!v)
                return 2;
            if (!strcmp(v, "float32"))
                o->dtype = DSV_F32;
            else if (!strcmp(v, "float64"))
                o->dtype = DSV_F64;
            else
                return cli_usage_error(&p, "--dtype must be float32 or float64");
            o->has_dtype = true;
        } else if (cli_is(&p, "--update-rule")) {
            NAMED(dsv_update_rule_from_name, &o->rule);
        } else if (cli_is(&p, "--learning-rate")) {
            ok = cli_double(&p, 0, true, HUGE_VAL, &o->learning_rate), o->has_lr = true;
        } else if (cli_is(&p, "--lr-decay")) {
            ok = cli_double(&p, 0, true, 10, &o->lr_decay);
        } else if (cli_is(&p, "--batch-size")) {
            ok = cli_int(&p, 1, 1 << 20, &o->batch_size);
        } else if (cli_is(&p, "--num-epochs")) {
            ok = cli_int(&p, 1, 1000000, &o->num_epochs);
        } else if (cli_is(&p, "--num-train-samples")) {
            ok = cli_int64(&p, 0, INT64_MAX, &o->num_train_samples);
        } else if (cli_is(&p, "--num-val-samples")) {
            ok = cli_int64(&p, 0, INT64_MAX, &o->num_val_samples);
        } else if (cli_is(&p, "--print-every")) {
            ok = cli_int(&p, 1, 1 << 30, &o->print_every);
        } else if (cli_is(&p, "--seed")) {
            ok = cli_u64(&p, &o->seed);
        } else if (cli_is(&p, "--backend")) {
            NAMED(dsv_backend_from_name, &o->backend);
        } else if (cli_is(&p, "--threads")) {
            ok = cli_int(&p, 1, 4096, &o->threads);
        } else if (cli_is(&p, "--schedule")) {
            NAMED(dsv_schedule_from_name, &o->schedule);
        } else if (cli_is(&p, "--bucket-mb")) {
            ok = cli_double(&p, 0, true, 4096, &o->dist.bucket_mb);
        } else if (cli_is(&p, "--dist-timeout")) {
            ok = cli_double(&p, 0, false, 1e6, &o->dist.timeout_s);
        } else if (cli_is(&p, "--bn-stats")) {
            const char *v = cli_value(&p);
            if (!v)
                return 2;
            if (strcmp(v, "global") && strcmp(v, "local"))
                return cli_usage_error(&p, "--bn-stats must be global or local");
            o->dist.local_bn = !strcmp(v, "local");
        } else {
            return cli_unknown(&p);
        }
        if (!ok)
            return 2;
    }
    bool course_flags = o->has_num_filters || o->has_filter_size || o->has_hidden_dim ||
                        o->has_hidden_dims || o->has_weight_scale ||
                        o->norm != DSV_NORM_NONE || o->dropout != 1.0;
    if (course_flags && !o->course && !o->resume) {
        fprintf(stderr,
                "dasecv train: --num-filters, --filter-size, --hidden-dim, --hidden-dims, "
                "--weight-scale, --normalization and --dropout are the course's options for "
                "threelayer, fc and resnet; '%s' is a model file: edit it instead\n",
                o->model);
        return 2;
    }
    if (o->resume && o->init_from) {
        fprintf(stderr, "dasecv train: --init-from starts a new run; --resume continues one: "
                        "give one of them\n");
        return 2;
    }
    if (o->resume && o->checkpoint == NULL)
        o->checkpoint = o->resume; /* keep saving where we resumed from */
    if (!dsv_backend_available(o->backend)) {
        fprintf(stderr, "dasecv train: backend '%s' is not built in\n",
                dsv_backend_name(o->backend));
        return 2;
    }
    return -1;
}

static dsv_model_config model_config(const train_opts *o, const dsv_dataset *ds)
{
    dsv_model_config c = dsv_model_config_default(o->kind);
    c.dtype = o->has_dtype ? o->dtype : DSV_F32;
    c.input_dim[0] = ds->train.c;
    c.input_dim[1] = ds->train.h;
    c.input_dim[2] = ds->train.w;
    c.num_classes = ds->num_classes;
    c.reg = o->reg;
    c.seed = o->seed;
    c.normalization = o->norm;
    c.dropout_keep = o->dropout;
    if (o->has_weight_scale)
        c.weight_scale = o->weight_scale;
    if (o->has_num_filters)
        c.num_filters = o->num_filters;
    if (o->has_filter_size)
        c.filter_size = o->filter_size;
    if (o->has_hidden_dim)
        c.hidden_dim = o->hidden_dim;
    if (o->has_hidden_dims) {
        c.num_hidden = o->num_hidden;
        memcpy(c.hidden_dims, o->hidden_dims, sizeof(c.hidden_dims));
    }
    return c;
}

/* The model of --model: a course configuration, or a model file or built-in
 * with the dataset's shape and classes. Returns 0, or the exit code. */
static int make_model(const train_opts *o, const dsv_dataset *ds, dsv_model **m)
{
    dsv_status st;
    if (o->course) {
        dsv_model_config mc = model_config(o, ds);
        if ((st = dsv_model_config_check(&mc))) {
            fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
            return 2;
        }
        st = dsv_model_create(m, &mc);
    } else {
        dsv_model_options mo = dsv_model_options_default();
        mo.dtype = o->has_dtype ? (int)o->dtype : -1;
        mo.input_dim[0] = ds->train.c;
        mo.input_dim[1] = ds->train.h;
        mo.input_dim[2] = ds->train.w;
        mo.num_classes = ds->num_classes;
        mo.seed = o->seed;
        mo.reg = o->reg;
        st = dsv_model_create_from_file(m, o->model, &mo);
        if (st == DSV_INVALID) { /* the file's fault, or the name's */
            fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
            return 2;
        }
    }
    if (st) {
        fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
        return 1;
    }
    return 0;
}

/* ---- the run -------------------------------------------------------------- */

static dsv_solver *volatile g_solver; /* for the signal handler */
static volatile sig_atomic_t g_signal; /* the first stopping signal, 0 none */

static void on_stop_signal(int sig)
{
    if (g_signal) { /* the second one: stop now, as without the handler */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
    dsv_solver *s = g_solver;
    if (s)
        dsv_solver_request_stop(s);
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_STOP_SIGNALS ((int)(sizeof(stop_signals) / sizeof(stop_signals[0])))
static struct sigaction g_old_actions[N_STOP_SIGNALS];
static bool g_handlers_set;

static void handle_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &sa, &g_old_actions[i]);
    g_handlers_set = true;
}

static void restore_stop_signals(void)
{
    if (!g_handlers_set)
        return;
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &g_old_actions[i], NULL);
    g_handlers_set = false;
}

static const char *sigabbrev(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT";
}

typedef struct run_ctx {
    dsv_solver *solver;
    const char *checkpoint, *log;
    cli_progress progress;
    bool save_failed;
    int saved_epoch; /* epoch of the last checkpoint written, -1 none */
} run_ctx;

static bool on_progress(const dsv_progress *pr, void *user)
{
    run_ctx *r = user;
    cli_progress_update(&r->progress, pr);
    if (r->progress.log_failed) {
        cli_progress_note(&r->progress, "dasecv train: writing the log %s failed: %s",
                          r->log, strerror(r->progress.log_errno));
        r->save_failed = true; /* stop without saving over the last checkpoint */
        return false;
    }
    if (pr->epoch_end && r->checkpoint && r->solver) {
        if (dsv_checkpoint_save(r->solver, r->checkpoint) != DSV_OK) {
            cli_progress_note(&r->progress, "dasecv train: saving %s failed: %s",
                              r->checkpoint, dsv_errmsg());
            r->save_failed = true;
            return false;
        }
        r->saved_epoch = pr->epoch;
    }
    return true;
}

static double last_of(const double *v, int64_t n)
{
    return n > 0 ? v[n - 1] : NAN;
}

static void print_result(const train_opts *o, dsv_solver *s, dsv_model *m,
                         double seconds, double ips, bool stopped)
{
    const double *loss, *tacc, *vacc;
    int64_t nl = dsv_solver_loss_history(s, &loss);
    int na = dsv_solver_acc_history(s, &tacc, &vacc);
    int threads = o->threads ? o->threads : dsv_get_num_threads();
    const char *sched = dsv_schedule_name(dsv_model_schedule_used(m));
    const char *backend = dsv_backend_name(dsv_model_exec(m)->backend);
    if (!o->json) {
        printf("train_acc %.4f val_acc %.4f final_loss %.6f seconds %.2f images_per_s %.1f "
               "epochs %d backend %s schedule %s threads %d%s\n",
               last_of(tacc, na), last_of(vacc, na), last_of(loss, nl), seconds, ips,
               dsv_solver_epoch(s), backend, sched, threads, stopped ? " (interrupted)" : "");
        return;
    }
    printf("{\"train_acc\": ");
    cli_json_number(stdout, last_of(tacc, na));
    printf(", \"val_acc\": ");
    cli_json_number(stdout, last_of(vacc, na));
    printf(", \"best_val_acc\": ");
    cli_json_number(stdout, dsv_solver_best_val_acc(s));
    printf(", \"final_loss\": ");
    cli_json_number(stdout, last_of(loss, nl));
    printf(", \"seconds\": %.3f, \"images_per_s\": %.1f, \"epochs\": %d, \"iterations\": %lld",
           seconds, ips, dsv_solver_epoch(s), (long long)dsv_solver_iteration(s));
    printf(", \"backend\": ");
    cli_json_string(stdout, backend);
    printf(", \"schedule\": ");
    cli_json_string(stdout, sched);
    printf(", \"threads\": %d, \"interrupted\": %s}\n", threads, stopped ? "true" : "false");
}

static int run(const train_opts *o)
{
    if (o->threads && dsv_set_num_threads(o->threads) != DSV_OK) {
        fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
        return 2;
    }
    dsv_data_options dopt = dsv_data_options_default();
    dopt.num_train = o->train_size;
    dsv_dataset ds;
    if (!cli_load_dataset("train", o->data, &dopt, &ds))
        return 1;

    int rc = 1;
    dsv_model *m = NULL;
    dsv_solver *s = NULL;
    run_ctx r = {.checkpoint = o->checkpoint, .log = o->log, .saved_epoch = -1};
    if (!cli_progress_init(&r.progress, o->quiet, o->print_every, o->log, o->resume != NULL))
        goto out;

    dsv_solver_config sc = dsv_solver_config_default();
    sc.optim = dsv_optim_config_default(o->rule);
    if (o->has_lr)
        sc.optim.learning_rate = o->learning_rate;
    sc.lr_decay = o->lr_decay;
    sc.batch_size = o->batch_size;
    sc.num_epochs = o->num_epochs;
    sc.num_train_samples = o->num_train_samples;
    sc.num_val_samples = o->num_val_samples;
    sc.print_every = o->print_every;
    sc.verbose = false;
    sc.seed = o->seed;
    sc.on_progress = on_progress;
    sc.user = &r;

    dsv_status st;
    if (o->resume) {
        st = dsv_checkpoint_load(o->resume, &m, &s, &ds.train, &ds.val, &sc);
        if (st) {
            fprintf(stderr, "dasecv train: cannot resume from %s: %s\n", o->resume,
                    dsv_errmsg());
            goto out;
        }
        if (!cli_model_fits("train", m, &ds))
            goto out;
    } else {
        if ((rc = make_model(o, &ds, &m)) != 0)
            goto out;
        rc = 1;
        if ((st = dsv_solver_create(&s, m, &ds.train, &ds.val, &sc))) {
            fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
            goto out;
        }
    }
    if (o->init_from && (st = dsv_model_load_npz(m, o->init_from))) {
        fprintf(stderr, "dasecv train: --init-from: %s\n", dsv_errmsg());
        rc = st == DSV_INVALID ? 2 : 1;
        goto out;
    }
    /* what predict needs to treat an image as training treated its data */
    if (!dsv_model_preprocess(m, NULL, NULL) &&
        (st = dsv_model_set_preprocess(m, ds.train.mean, ds.train.scale))) {
        fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
        goto out;
    }
    if (!dsv_model_class_name(m, 0) && ds.num_classes <= 10) {
        const char *names[10];
        for (int i = 0; i < ds.num_classes; i++)
            names[i] = ds.class_names[i];
        if ((st = dsv_model_set_class_names(m, ds.num_classes, names))) {
            fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
            goto out;
        }
    }
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = o->backend;
    eo.schedule = o->schedule;
    eo.threads = o->threads;
    if ((st = dsv_model_set_exec(m, &eo))) {
        fprintf(stderr, "dasecv train: %s\n", dsv_errmsg());
        goto out;
    }

    if (o->plan && !cli_plan_load("train", m, o->plan)) {
        rc = 2;
        goto out;
    }

    if (!cli_dist_attach(m, s, &o->dist))
        goto out;
    r.solver = s;
    g_solver = s;
    handle_stop_signals();

    double t0 = cli_now();
    st = dsv_solver_train(s);
    double seconds = cli_now() - t0;

    g_solver = NULL;
    bool stopped = dsv_solver_stopped(s);

    if (st != DSV_OK) {
        cli_progress_note(&r.progress, "dasecv train: training stopped: %s", dsv_errmsg());
        if (r.checkpoint && r.saved_epoch >= 0)
            cli_progress_note(&r.progress,
                              "dasecv train: %s kept as saved at the end of epoch %d",
                              r.checkpoint, r.saved_epoch);
        else if (r.checkpoint)
            cli_progress_note(&r.progress,
                              "dasecv train: %s not written by this run (no epoch completed)",
                              r.checkpoint);
        goto out;
    }
    if (r.save_failed) {
        if (r.checkpoint && r.saved_epoch >= 0)
            cli_progress_note(&r.progress,
                              "dasecv train: %s kept as saved at the end of epoch %d",
                              r.checkpoint, r.saved_epoch);
        else if (r.checkpoint)
            cli_progress_note(&r.progress, "dasecv train: %s not written by this run",
                              r.checkpoint);
        goto out;
    }
    if (!cli_dist_check(m, &o->dist)) {
        goto out;
    }
    if (r.checkpoint && dsv_checkpoint_save(s, r.checkpoint) != DSV_OK) {
        cli_progress_note(&r.progress, "dasecv train: saving %s failed: %s", r.checkpoint,
                          dsv_errmsg());
        goto out;
    }
    if (o->save_plan && !cli_plan_save("train", m, o->save_plan))
        goto out;
    /* the handlers stay until the last save is complete */
    restore_stop_signals();
    cli_progress_finish(&r.progress);
    int sig = g_signal ? g_signal : SIGINT;
    if (stopped && !o->quiet)
        fprintf(stderr, "dasecv train: interrupted by %s%s%s\n", sigabbrev(sig),
                r.checkpoint ? "; checkpoint saved to " : "", r.checkpoint ? r.checkpoint : "");
    if (o->rank == 0)
        print_result(o, s, m, seconds, cli_progress_images_per_s(&r.progress), stopped);
    if (!o->quiet)
        cli_dist_report();
    fflush(stdout);
    rc = stopped ? 128 + sig : 0;
out:
    restore_stop_signals();
    cli_progress_finish(&r.progress);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    dsv_dataset_free(&ds);
    return rc;
}

/* Options that --resume ignores: the checkpoint holds the model and the
 * trajectory's solver settings. */
static void warn_ignored_with_resume(int argc, char **argv)
{
    static const char *const ignored[] = {
        "--model", "--num-filters", "--filter-size", "--hidden-dim", "--hidden-dims",
        "--weight-scale", "--normalization", "--dropout", "--reg", "--dtype",
        "--update-rule", "--learning-rate", "--lr-decay", "--batch-size", "--seed",
        "--num-train-samples", "--num-val-samples"};
    char list[512] = "";
    for (size_t k = 0; k < sizeof(ignored) / sizeof(ignored[0]); k++) {
        size_t n = strlen(ignored[k]);
        for (int i = 1; i < argc; i++)
            if (!strncmp(argv[i], ignored[k], n) && (!argv[i][n] || argv[i][n] == '=')) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                         ignored[k]);
                break;
            }
    }
    if (*list)
        fprintf(stderr, "dasecv train: warning: --resume restores the model and solver "
                        "settings of the checkpoint; ignoring %s\n", list);
}

/* Before any work: the output paths checked (links resolved to the files
 * written), and temporary files of an interrupted save removed. */
static int check_outputs(train_opts *o)
{
    static char ckpt[PATH_MAX], log[PATH_MAX];
    if ((o->model && !cli_input_path("train", "--model", o->model)) ||
        (o->init_from && !cli_input_path("train", "--init-from", o->init_from)))
        return 2;
    if (o->checkpoint) {
        if (!cli_output_path("train", "--checkpoint", o->checkpoint, ckpt, sizeof(ckpt)))
            return 2;
        o->checkpoint = ckpt;
        cli_remove_orphans("train", ckpt);
    }
    if (o->log) {
        if (!cli_output_path("train", "--log", o->log, log, sizeof(log)))
            return 2;
        o->log = log;
    }
    return -1;
}

int dsv_cmd_train(int argc, char **argv)
{
    train_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    int size;
    if (!cli_dist_begin(&argc, &argv, &o.rank, &size))
        return 1;
    if (o.rank != 0) { /* rank 0 prints, logs and saves for the job */
        o.quiet = true;
        o.json = false;
        o.log = NULL;
        o.checkpoint = NULL;
        o.save_plan = NULL;
    } else if ((rc = check_outputs(&o)) >= 0) {
        return cli_dist_end(rc);
    }
    if (o.resume && o.rank == 0)
        warn_ignored_with_resume(argc, argv);
    return cli_dist_end(run(&o));
}
