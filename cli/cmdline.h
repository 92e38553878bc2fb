/*
 * Option parsing shared by the train/eval/predict/check commands.
 *
 * Options are "--name value" or "--name=value"; anything not starting with
 * "--" is a positional argument. Every parse error prints ONE line,
 * "dasecv CMD: ...", on stderr and makes the command return 2. Kept as static
 * inline functions so each command file stays self-contained.
 */
#ifndef DASECV_CLI_CMDLINE_H
#define DASECV_CLI_CMDLINE_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dasecv/data.h"

typedef struct cli_parser {
    const char *cmd; /* "train", ... for messages */
    int argc;
    char **argv;
    int i;           /* index of the current argument */
    char name[64];   /* current option name, "--x" */
    const char *inline_value; /* after '=', or NULL */
} cli_parser;

static inline cli_parser cli_parser_make(const char *cmd, int argc, char **argv)
{
    cli_parser p = {.cmd = cmd, .argc = argc, .argv = argv, .i = 0};
    return p;
}

/* Advances to the next argument: 1 option (p->name), 2 positional
 * (p->argv[p->i]), 0 at the end. */
static inline int cli_next(cli_parser *p)
{
    if (++p->i >= p->argc)
        return 0;
    const char *a = p->argv[p->i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
        if (strcmp(a, "-h") == 0) {
            snprintf(p->name, sizeof(p->name), "--help");
            p->inline_value = NULL;
            return 1;
        }
        return 2;
    }
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    if (n >= sizeof(p->name))
        n = sizeof(p->name) - 1;
    memcpy(p->name, a, n);
    p->name[n] = '\0';
    p->inline_value = eq ? eq + 1 : NULL;
    return 1;
}

static inline bool cli_is(const cli_parser *p, const char *name)
{
    return strcmp(p->name, name) == 0;
}

static inline int cli_usage_error(const cli_parser *p, const char *msg)
{
    fprintf(stderr, "dasecv %s: %s (see dasecv %s --help)\n", p->cmd, msg, p->cmd);
    return 2;
}

static inline int cli_unknown(const cli_parser *p)
{
    fprintf(stderr, "dasecv %s: unknown option '%s' (see dasecv %s --help)\n", p->cmd,
            p->name, p->cmd);
    return 2;
}

/* A flag takes no value. */
static inline bool cli_flag(const cli_parser *p)
{
    if (p->inline_value) {
        fprintf(stderr, "dasecv %s: %s takes no value\n", p->cmd, p->name);
        return false;
    }
    return true;
}

/* The option's value (inline or the next argument); NULL after printing the
 * error if it is missing. */
static inline const char *cli_value(cli_parser *p)
{
    if (p->inline_value)
        return p->inline_value;
    if (p->i + 1 >= p->argc) {
        fprintf(stderr, "dasecv %s: %s needs a value\n", p->cmd, p->name);
        return NULL;
    }
    return p->argv[++p->i];
}

static inline bool cli_string(cli_parser *p, const char **out)
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    if (!*v) {
        fprintf(stderr, "dasecv %s: %s needs a non-empty value\n", p->cmd, p->name);
        return false;
    }
    *out = v;
    return true;
}

/* A --data SPEC: its form is checked here, so a misspelt spec is bad usage
 * (exit 2) found before anything is loaded. */
static inline bool cli_data_spec(cli_parser *p, const char **out)
{
    if (!cli_string(p, out))
        return false;
    if (dsv_dataset_spec_check(*out) != DSV_OK) {
        fprintf(stderr, "dasecv %s: %s: %s\n", p->cmd, p->name, dsv_errmsg());
        return false;
    }
    return true;
}

/* Integer in [lo, hi]. */
static inline bool cli_int64(cli_parser *p, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) {
        fprintf(stderr, "dasecv %s: %s: '%s' is not an integer\n", p->cmd, p->name, v);
        return false;
    }
    if (x < lo || x > hi) {
        fprintf(stderr, "dasecv %s: %s: %lld is out of range [%lld, %lld]\n", p->cmd, p->name,
                x, (long long)lo, (long long)hi);
        return false;
    }
    *out = x;
    return true;
}

static inline bool cli_int(cli_parser *p, int lo, int hi, int *out)
{
    int64_t x;
    if (!cli_int64(p, lo, hi, &x))
        return false;
    *out = (int)x;
    return true;
}

static inline bool cli_u64(cli_parser *p, uint64_t *out)
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (!*v || *end || errno || v[0] == '-') {
        fprintf(stderr, "dasecv %s: %s: '%s' is not a non-negative integer\n", p->cmd,
                p->name, v);
        return false;
    }
    *out = x;
    return true;
}

/* Finite number in [lo, hi] (lo excluded when lo_open). */
static inline bool cli_double(cli_parser *p, double lo, bool lo_open, double hi,
                              double *out)
{
    const char *v = cli_value(p);
    if (!v)
        return false;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x)) {
        fprintf(stderr, "dasecv %s: %s: '%s' is not a finite number\n", p->cmd, p->name, v);
        return false;
    }
    if (x < lo || (lo_open && x == lo) || x > hi) {
        fprintf(stderr, "dasecv %s: %s: %g is out of range %s%g, %g%s\n", p->cmd, p->name, x,
                lo_open ? "(" : "[", lo, hi, isinf(hi) ? ")" : "]");
        return false;
    }
    *out = x;
    return true;
}

#endif
