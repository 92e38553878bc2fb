/*
 * dasecv status codes and error messages.
 *
 * Every fallible function returns a dsv_status and hands objects back through
 * out pointers. The failing function records a one-line, human-readable message
 * for the calling thread; dsv_errmsg() returns it (like sqlite3_errmsg). The
 * library never exits and never prints.
 */
#ifndef DASECV_STATUS_H
#define DASECV_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsv_status {
    DSV_OK = 0,
    DSV_NOMEM,       /* an allocation failed */
    DSV_INVALID,     /* bad argument: shape, dtype, parameter */
    DSV_UNSUPPORTED, /* valid, but this backend/build cannot do it */
    DSV_IO,          /* a file could not be opened, read or written */
    DSV_CORRUPT,     /* a file is malformed, truncated or fails its checksum */
    DSV_BACKEND,     /* an external library (oneDNN) reported an error */
    DSV_STATUS_COUNT
} dsv_status;

/* "ok", "out of memory", ... */
DSV_API const char *dsv_status_name(dsv_status s);

/* Message of the last error recorded by this thread ("" if none). */
DSV_API const char *dsv_errmsg(void);

/* Records a printf-style message for this thread and returns s. */
DSV_API dsv_status dsv_error(dsv_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears this thread's message. */
DSV_API void dsv_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
