/*
 * Output paths and stdout of the dasecv commands (see outpath.h).
 *
 * What must stay true:
 *  - every output path is checked before any training or computing, so a bad
 *    path is reported in the first second, not after an epoch;
 *  - the atomic savers (checkpoint, .npy, .npz) rename a temporary file over
 *    their target: they must only ever get a regular file's path or a missing
 *    one, never a symbolic link (the rename would replace the link) nor a
 *    FIFO or device (the rename would replace the node).
 */
#include "outpath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

/* The directory part of path into dir ("." when it has none). */
static void dir_of(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == path)
        snprintf(dir, n, "/");
    else
        snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

static bool refuse(const char *cmd, const char *opt, const char *path, const char *why)
{
    fprintf(stderr, "dasecv %s: %s %s: %s\n", cmd, opt, path, why);
    return false;
}

/* The directory that will hold the new file must exist and be writable,
 * since the file is created (or renamed into place) there. */
static bool dir_writable(const char *cmd, const char *opt, const char *path, const char *cur)
{
    char dir[PATH_MAX], why[PATH_MAX + 64];
    dir_of(cur, dir, sizeof(dir));
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        snprintf(why, sizeof(why), "directory %s: %s", dir, strerror(errno));
        return refuse(cmd, opt, path, why);
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(why, sizeof(why), "%s is not a directory", dir);
        return refuse(cmd, opt, path, why);
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(why, sizeof(why), "directory %s is not writable: %s", dir, strerror(errno));
        return refuse(cmd, opt, path, why);
    }
    return true;
}

bool cli_output_path(const char *cmd, const char *opt, const char *path, char *out,
                     size_t n)
{
    char cur[PATH_MAX], why[PATH_MAX + 64];
    if (!*path)
        return refuse(cmd, opt, "''", "an empty path");
    if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur))
        return refuse(cmd, opt, path, "path too long");
    /* Follow links one at a time, so a dangling link's target can be made. */
    for (int depth = 0; depth < 40; depth++) {
        struct stat sb;
        if (lstat(cur, &sb) != 0) {
            if (errno != ENOENT) {
                snprintf(why, sizeof(why), "%s", strerror(errno));
                return refuse(cmd, opt, path, why);
            }
            if (cur[strlen(cur) - 1] == '/')
                return refuse(cmd, opt, path, "names a directory");
            if (!dir_writable(cmd, opt, path, cur))
                return false;
            break;
        }
        if (S_ISLNK(sb.st_mode)) {
            char target[PATH_MAX], next[PATH_MAX];
            ssize_t k = readlink(cur, target, sizeof(target) - 1);
            if (k < 0) {
                snprintf(why, sizeof(why), "cannot read the link: %s", strerror(errno));
                return refuse(cmd, opt, path, why);
            }
            target[k] = '\0';
            if (target[0] == '/') {
                snprintf(next, sizeof(next), "%s", target);
            } else {
                char dir[PATH_MAX];
                dir_of(cur, dir, sizeof(dir));
                if (snprintf(next, sizeof(next), "%s/%s", dir, target) >= (int)sizeof(next))
                    return refuse(cmd, opt, path, "link target path too long");
            }
            memcpy(cur, next, sizeof(cur));
            continue;
        }
        if (!S_ISREG(sb.st_mode)) {
            const char *what = kind_of(sb.st_mode);
            if (strcmp(cur, path) != 0)
                snprintf(why, sizeof(why), "links to %s, which is %s; refusing to replace it",
                         cur, what);
            else
                snprintf(why, sizeof(why), "is %s, not a regular file; refusing to replace it",
                         what);
            return refuse(cmd, opt, path, why);
        }
        if (!dir_writable(cmd, opt, path, cur))
            return false;
        break;
    }
    struct stat sb;
    if (lstat(cur, &sb) == 0 && S_ISLNK(sb.st_mode))
        return refuse(cmd, opt, path, "too many levels of symbolic links");
    if (snprintf(out, n, "%s", cur) >= (int)n)
        return refuse(cmd, opt, path, "path too long");
    return true;
}

bool cli_input_path(const char *cmd, const char *opt, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || S_ISREG(sb.st_mode))
        return true;
    char why[64];
    snprintf(why, sizeof(why), "is %s, not a regular file", kind_of(sb.st_mode));
    return refuse(cmd, opt, path, why);
}

void cli_remove_orphans(const char *cmd, const char *path)
{
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof(dir));
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char prefix[NAME_MAX + 8];
    if (snprintf(prefix, sizeof(prefix), "%s.tmp.", base) >= (int)sizeof(prefix))
        return;
    size_t plen = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* exactly the pattern mkstemp fills in: the prefix and 6 characters */
        if (strncmp(e->d_name, prefix, plen) != 0 || strlen(e->d_name) != plen + 6)
            continue;
        char full[PATH_MAX];
        if (snprintf(full, sizeof(full), "%s/%s", dir, e->d_name) >= (int)sizeof(full))
            continue;
        struct stat sb;
        if (lstat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (unlink(full) == 0)
            fprintf(stderr, "dasecv %s: warning: removed %s, left by an interrupted save\n",
                    cmd, full);
    }
    closedir(d);
}

void cli_stdio_guard(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int k = open("/dev/null", O_RDONLY);
        if (k >= 0 && k != fd) {
            dup2(k, fd);
            close(k);
        }
    }
}

int cli_stdout_finish(const char *cmd, int rc)
{
    errno = 0;
    bool bad = fflush(stdout) != 0 || ferror(stdout);
    int err = errno;
    if (fclose(stdout) != 0 && !bad) {
        bad = true;
        err = errno;
    }
    if (!bad)
        return rc;
    fprintf(stderr, "dasecv %s: cannot write to stdout: %s\n", cmd,
            err ? strerror(err) : "write error");
    return rc == 0 ? 1 : rc;
}
