/*
 * Small helpers of the engine's own sources: a copied string and a growable
 * array. Not installed.
 */
#ifndef DASECV_INTERNAL_ARRAYS_H
#define DASECV_INTERNAL_ARRAYS_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'ed copy of s, or NULL when out of memory. */
static inline char *dsv_strdup_(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Makes room for `need` elements of `elem` bytes in *arr (capacity *cap),
 * doubling; new slots are zeroed. False (and *arr unchanged) when out of
 * memory. */
static inline bool dsv_grow_(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return false;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return true;
}

#endif
