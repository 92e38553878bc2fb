/*
 * DSV_API marks every function of the public API. The library is built with
 * -fvisibility=hidden, so exactly the marked functions are exported from
 * libdasecv.so (`nm -D` on it is the API); everything else stays internal.
 */
#ifndef DASECV_EXPORT_H
#define DASECV_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define DSV_API __attribute__((visibility("default")))
#else
#define DSV_API
#endif

#endif
