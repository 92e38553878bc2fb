/*
 * File helpers of the engine's writers (.npy, .npz): making a rename durable.
 * Not installed.
 */
#ifndef DASECV_INTERNAL_FILES_H
#define DASECV_INTERNAL_FILES_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* fsyncs the directory holding path, so that a rename into it survives a
 * crash; a failure here is not worth an error. */
static inline void dsv_sync_dir_(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

#endif
