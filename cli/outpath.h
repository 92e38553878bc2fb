/*
 * Output files and streams of the dasecv commands: checks made before any
 * work, so that a run never replaces something that is not a regular file,
 * and the final check of stdout.
 */
#ifndef DASECV_CLI_OUTPATH_H
#define DASECV_CLI_OUTPATH_H

#include <stdbool.h>
#include <stddef.h>

/* Checks an output path before any work. A regular file, or a missing one in
 * a writable directory, is accepted; a symbolic link is followed to its
 * target (the link stays a link, the target is written); a FIFO, directory,
 * device or socket is refused. On success the path to write (the target of
 * any links) goes to out (n bytes) and the result is true; otherwise one line
 * "dasecv CMD: OPT PATH: why" is printed on stderr and the result is false
 * (the caller exits with 2). */
bool cli_output_path(const char *cmd, const char *opt, const char *path, char *out,
                     size_t n);

/* An input file that exists must be a regular file (or a link to one): a
 * FIFO would block the read, a directory or device is not data. A missing
 * file is left to the reader's message. Prints "dasecv CMD: OPT PATH: why"
 * and returns false when refused. */
bool cli_input_path(const char *cmd, const char *opt, const char *path);

/* Removes temporary files "<path>.tmp." + 6 characters that an atomic save
 * of path left behind when the process was killed, naming each in a warning. */
void cli_remove_orphans(const char *cmd, const char *path);

/* Makes closed standard descriptors (0, 1, 2) point at /dev/null opened
 * read-only, so that writes to a closed stdout fail (and are reported) instead
 * of landing in the next file the command opens. */
void cli_stdio_guard(void);

/* Flushes and closes stdout at exit: a write error turns exit code 0 into 1
 * with a message on stderr. Returns the exit code to use. */
int cli_stdout_finish(const char *cmd, int rc);

#endif
