/*
 * Training progress and machine-readable output for the commands.
 *
 * On a terminal (stderr is a tty) a one-line bar is redrawn in place, at most
 * ten times a second, with images/s and the ETA; otherwise plain lines are
 * printed every print_every iterations and at each epoch end. --quiet prints
 * nothing. The CSV log (if any) gets one row per iteration.
 */
#ifndef DASECV_CLI_PROGRESS_H
#define DASECV_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "dasecv/dasecv.h"

typedef struct cli_progress {
    bool tty, quiet, drawn;
    int print_every;
    double last_draw; /* seconds (dsv_progress.seconds) of the last redraw */
    int64_t it0;      /* iteration before the first update of this run, -1 */
    /* training throughput of the run: each epoch's rate (the solver's, over
       that epoch's steps, accuracy checks excluded) weighted by its steps */
    int64_t seg_iters, acc_iters;
    double seg_rate, acc_inv;
    FILE *log;        /* CSV, or NULL */
    bool log_failed;  /* a row could not be written: the log is closed */
    int log_errno;    /* why */
} cli_progress;

/* log_path may be NULL; returns false (message printed) if it cannot be
 * created. append: continue an existing log (resume) without a new header. */
bool cli_progress_init(cli_progress *p, bool quiet, int print_every,
                       const char *log_path, bool append);
/* Each log row is flushed as it is written; a failed write sets log_failed
 * (the caller stops training). */
void cli_progress_update(cli_progress *p, const dsv_progress *pr);
/* Training images per second over the run so far (0 before any step). */
double cli_progress_images_per_s(const cli_progress *p);
/* Ends the bar's line (if drawn) and closes the log. */
void cli_progress_finish(cli_progress *p);
/* Prints a message on its own line (clearing the bar first). */
void cli_progress_note(cli_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes s as a JSON string (quoted, escaped) to f. */
void cli_json_string(FILE *f, const char *s);
/* Writes a number, or null when it is NaN/Inf (JSON has neither). */
void cli_json_number(FILE *f, double v);

/* Seconds on a monotonic clock. */
double cli_now(void);


/* ---- shared by the commands ----------------------------------------------- */

/* Loads the dataset named by spec, or the default when spec is NULL:
 * "fashion-mnist" when its directory (dsv_fashion_mnist_dir) holds the files,
 * else an error saying how to get data. Prints the error and returns false. */
bool cli_load_dataset(const char *cmd, const char *spec, const dsv_data_options *opt,
                      dsv_dataset *ds);
/* The model's input (C, H, W) and classes must be the dataset's. */
bool cli_model_fits(const char *cmd, const dsv_model *m, const dsv_dataset *ds);

#endif
