/*
 * Helpers shared by the libFuzzer targets: a private temporary directory per
 * process (the loaders under test read files, so each input is written there
 * first) and a way to cut one input into several files.
 *
 * Inputs are never trusted: every helper clamps lengths to what is there.
 */
#ifndef DSV_FUZZ_UTIL_H
#define DSV_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir_buf[256];
/* Targets add what they read here, so the reads cannot be optimised away. */
static volatile uint64_t fuzz_sink;

static inline void fuzz_cleanup(void)
{
    if (!fuzz_dir_buf[0])
        return;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir_buf);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_buf);
}

/* The process's temporary directory, made on first use and removed at exit. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_buf[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_buf, sizeof(fuzz_dir_buf), "%s/dsvfuzz.XXXXXX",
                 t && *t && strlen(t) < 200 ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_buf)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_buf;
}

/* Path of NAME in the temporary directory (static buffer per call site is
 * not needed: the caller passes its own). */
static inline const char *fuzz_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", fuzz_dir(), name);
    return buf;
}

/* Writes n bytes to NAME in the temporary directory; returns its path in buf. */
static inline const char *fuzz_write(char *buf, size_t cap, const char *name, const uint8_t *data,
                              size_t n)
{
    fuzz_path(buf, cap, name);
    FILE *f = fopen(buf, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror("fuzz: write");
        abort();
    }
    return buf;
}

/* A reader over the input: parts are a 4-byte little-endian length (clamped
 * to what remains) followed by that many bytes. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fuzz_byte(fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline const uint8_t *fuzz_part(fuzz_in *in, size_t *len)
{
    uint32_t l = 0;
    for (int i = 0; i < 4; i++)
        l |= (uint32_t)fuzz_byte(in) << (8 * i);
    *len = l < in->n ? l : in->n;
    const uint8_t *p = in->p;
    in->p += *len;
    in->n -= *len;
    return p;
}

#endif
