/*
 * Training progress: in-place bar on a terminal, plain lines otherwise, CSV
 * log rows; and small JSON writers for --json output (see progress.h).
 *
 * The bar goes to stderr so that stdout stays clean for --json.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool cli_progress_init(cli_progress *p, bool quiet, int print_every,
                       const char *log_path, bool append)
{
    memset(p, 0, sizeof(*p));
    p->it0 = -1;
    p->quiet = quiet;
    p->tty = isatty(fileno(stderr));
    p->print_every = print_every > 0 ? print_every : 1;
    p->last_draw = -1;
    if (!log_path)
        return true;
    struct stat st;
    bool has_header = append && stat(log_path, &st) == 0 && st.st_size > 0;
    p->log = fopen(log_path, append ? "a" : "w");
    if (!p->log) {
        fprintf(stderr, "dasecv train: cannot write the log %s\n", log_path);
        return false;
    }
    if (!has_header)
        fprintf(p->log, "iteration,epoch,loss,lr,train_acc,val_acc,images_per_s\n");
    if (fflush(p->log) != 0 || ferror(p->log)) {
        fprintf(stderr, "dasecv train: cannot write the log %s: %s\n", log_path,
                strerror(errno));
        fclose(p->log);
        p->log = NULL;
        return false;
    }
    return true;
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60),
                 (int)fmod(s, 60));
    else
        snprintf(buf, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

static void clear_bar(cli_progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        p->drawn = false;
    }
}

static void draw_bar(cli_progress *p, const dsv_progress *pr)
{
    enum { WIDTH = 24 };
    double frac = pr->num_iterations > 0
                      ? (double)pr->iteration / (double)pr->num_iterations
                      : 0;
    int fill = (int)(frac * WIDTH + 0.5);
    char bar[WIDTH + 1], eta[32];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    /* ETA from this run's pace (a resumed run starts mid-way) */
    double done = (double)(pr->iteration - p->it0);
    double left = pr->seconds > 0 && done > 0
                      ? pr->seconds / done * (double)(pr->num_iterations - pr->iteration)
                      : NAN;
    double ips = pr->images_per_s;
    fmt_time(eta, sizeof(eta), left);
    fprintf(stderr, "\r\033[K[%s] %3.0f%% it %lld/%lld ep %d/%d loss %.4f %.0f img/s ETA %s",
            bar, 100 * frac, (long long)pr->iteration, (long long)pr->num_iterations,
            pr->epoch, pr->num_epochs, pr->loss, ips, eta);
    fflush(stderr);
    p->drawn = true;
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, ",%.6g", v);
    else
        fputc(',', f);
}

void cli_progress_update(cli_progress *p, const dsv_progress *pr)
{
    if (p->it0 < 0)
        p->it0 = pr->iteration - 1;
    p->seg_iters++;
    p->seg_rate = pr->images_per_s;
    if (pr->epoch_end && p->seg_rate > 0) {
        p->acc_iters += p->seg_iters;
        p->acc_inv += (double)p->seg_iters / p->seg_rate;
        p->seg_iters = 0;
    }
    if (p->log) {
        fprintf(p->log, "%lld,%d,%.6g", (long long)pr->iteration, pr->epoch, pr->loss);
        csv_num(p->log, pr->learning_rate);
        csv_num(p->log, pr->epoch_end ? pr->train_acc : NAN);
        csv_num(p->log, pr->epoch_end ? pr->val_acc : NAN);
        csv_num(p->log, pr->images_per_s);
        fputc('\n', p->log);
        /* row by row, so that a full disk stops training at the row it cut */
        errno = 0;
        if (fflush(p->log) != 0 || ferror(p->log)) {
            p->log_failed = true;
            p->log_errno = errno ? errno : EIO;
            fclose(p->log);
            p->log = NULL;
        }
    }
    if (p->quiet)
        return;
    if (p->tty) {
        if (pr->epoch_end) {
            clear_bar(p);
            fprintf(stderr, "(Epoch %d / %d) train acc: %.4f; val_acc: %.4f; loss %.4f\n",
                    pr->epoch, pr->num_epochs, pr->train_acc, pr->val_acc, pr->loss);
        }
        bool last = pr->iteration == pr->num_iterations;
        if (last || pr->epoch_end || p->last_draw < 0 || pr->seconds - p->last_draw >= 0.1) {
            draw_bar(p, pr);
            p->last_draw = pr->seconds;
        }
        return;
    }
    if (pr->iteration % p->print_every == 0 || pr->iteration == 1)
        fprintf(stderr, "(Iteration %lld / %lld) loss: %.6f  %.0f img/s\n",
                (long long)pr->iteration, (long long)pr->num_iterations, pr->loss,
                pr->images_per_s);
    if (pr->epoch_end)
        fprintf(stderr, "(Epoch %d / %d) train acc: %.4f; val_acc: %.4f\n", pr->epoch,
                pr->num_epochs, pr->train_acc, pr->val_acc);
}

double cli_progress_images_per_s(const cli_progress *p)
{
    /* sum(steps) * B / sum(steps * B / rate): the batch size cancels */
    double iters = (double)p->acc_iters, inv = p->acc_inv;
    if (p->seg_iters > 0 && p->seg_rate > 0) {
        iters += (double)p->seg_iters;
        inv += (double)p->seg_iters / p->seg_rate;
    }
    return inv > 0 ? iters / inv : 0;
}

void cli_progress_note(cli_progress *p, const char *fmt, ...)
{
    clear_bar(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_progress_finish(cli_progress *p)
{
    if (p->drawn) {
        fputc('\n', stderr);
        p->drawn = false;
    }
    if (p->log) {
        fclose(p->log);
        p->log = NULL;
    }
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

void cli_json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fputs("null", f);
}

/* ---- shared by the commands ----------------------------------------------- */

bool cli_load_dataset(const char *cmd, const char *spec, const dsv_data_options *opt,
                      dsv_dataset *ds)
{
    if (!spec) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte.gz", dsv_fashion_mnist_dir());
        bool gz = stat(path, &st) == 0;
        snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte", dsv_fashion_mnist_dir());
        if (!gz && stat(path, &st) != 0) {
            fprintf(stderr,
                    "dasecv %s: no dataset: --data not given and Fashion-MNIST is not in %s. "
                    "Install it with 'apt-get install dataset-fashion-mnist', or download the "
                    "official cifar-10-binary.tar.gz, unpack it and pass "
                    "--data cifar10:DIR/cifar-10-batches-bin\n",
                    cmd, dsv_fashion_mnist_dir());
            return false;
        }
        spec = "fashion-mnist";
    }
    dsv_status s = dsv_dataset_load(ds, spec, opt);
    if (s) {
        fprintf(stderr, "dasecv %s: %s\n", cmd, dsv_errmsg());
        return false;
    }
    return true;
}

bool cli_model_fits(const char *cmd, const dsv_model *m, const dsv_dataset *ds)
{
    const dsv_model_options *c = dsv_model_options_of(m);
    if (c->input_dim[0] != ds->train.c || c->input_dim[1] != ds->train.h ||
        c->input_dim[2] != ds->train.w || c->num_classes != ds->num_classes) {
        fprintf(stderr,
                "dasecv %s: the model takes %dx%dx%d images and %d classes, but %s has "
                "%dx%dx%d and %d\n",
                cmd, c->input_dim[0], c->input_dim[1], c->input_dim[2], c->num_classes,
                ds->name, ds->train.c, ds->train.h, ds->train.w, ds->num_classes);
        return false;
    }
    return true;
}
