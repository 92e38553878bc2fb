/*
 * Status names and the per-thread error message.
 *
 * The message buffer is thread-local so that kernels running on several
 * threads (batch-parallel schedule) never overwrite each other's text.
 */
#include <stdarg.h>
#include <stdio.h>

#include "dasecv/status.h"

static _Thread_local char errbuf[512];

static const char *const status_names[] = {
    [DSV_OK] = "ok",
    [DSV_NOMEM] = "out of memory",
    [DSV_INVALID] = "invalid argument",
    [DSV_UNSUPPORTED] = "unsupported",
    [DSV_IO] = "i/o error",
    [DSV_CORRUPT] = "corrupt data",
    [DSV_BACKEND] = "backend error",
};
_Static_assert(sizeof(status_names) / sizeof(status_names[0]) ==
                   DSV_STATUS_COUNT,
               "status_names must name every dsv_status");

const char *dsv_status_name(dsv_status s)
{
    if ((unsigned)s >= DSV_STATUS_COUNT)
        return "unknown status";
    return status_names[s];
}

const char *dsv_errmsg(void) { return errbuf; }

void dsv_error_clear(void) { errbuf[0] = '\0'; }

dsv_status dsv_error(dsv_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
    return s;
}
