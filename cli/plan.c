/*
 * Plan files (plan.h): read whole, applied through the library, written
 * from dsv_graph_plan_text. A plan is small text; anything over 1 MiB is
 * not one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan.h"

enum { PLAN_MAX_BYTES = 1 << 20 };

bool cli_plan_load(const char *cmd, dsv_model *m, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dasecv %s: cannot open plan %s: %s\n", cmd, path, strerror(errno));
        return false;
    }
    char *text = malloc(PLAN_MAX_BYTES + 1);
    size_t n = text ? fread(text, 1, PLAN_MAX_BYTES + 1, f) : 0;
    bool rd_err = ferror(f);
    fclose(f);
    if (!text || rd_err || n > PLAN_MAX_BYTES || memchr(text, '\0', n)) {
        fprintf(stderr, "dasecv %s: %s is not a plan file (%s)\n", cmd, path,
                !text ? "out of memory" : rd_err ? "read error"
                : n > PLAN_MAX_BYTES ? "over 1 MiB" : "binary data");
        free(text);
        return false;
    }
    text[n] = '\0';
    dsv_status st = dsv_graph_plan_apply(dsv_model_graph(m), text, path);
    free(text);
    if (st) {
        fprintf(stderr, "dasecv %s: %s\n", cmd, dsv_errmsg());
        return false;
    }
    return true;
}

bool cli_plan_save(const char *cmd, dsv_model *m, const char *path)
{
    char *text;
    if (dsv_graph_plan_text(dsv_model_graph(m), &text)) {
        fprintf(stderr, "dasecv %s: %s\n", cmd, dsv_errmsg());
        return false;
    }
    /* Written beside the target and renamed over it: a reader never sees
       half a plan, and a failed write leaves the old file as it was. */
    size_t n = strlen(path) + sizeof(".tmp.XXXXXX");
    char *tmp = malloc(n);
    int fd = -1;
    if (tmp) {
        snprintf(tmp, n, "%s.tmp.XXXXXX", path);
        fd = mkstemp(tmp);
    }
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (f) {
        if (fclose(f) != 0 && ok)
            ok = false, err = errno;
    } else if (fd >= 0) {
        close(fd);
    }
    if (ok && rename(tmp, path) != 0)
        ok = false, err = errno;
    if (!ok) {
        if (fd >= 0)
            remove(tmp);
        fprintf(stderr, "dasecv %s: cannot write plan %s: %s\n", cmd, path,
                strerror(tmp ? err : ENOMEM));
    }
    free(tmp);
    free(text);
    return ok;
}
