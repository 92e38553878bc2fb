/*
 * libFuzzer target: the command-line option parser (cli/cmdline.h).
 *
 * The input, cut at NUL bytes, is an argument vector (at most 64 arguments)
 * after the command name. It is parsed the way the commands parse theirs:
 * cli_next in a loop, each option looked up in a table holding every kind of
 * value the commands take (strings, bounded integers, unsigned seeds, bounded
 * and open-bounded doubles, flags), stopping at the first error as they do.
 * The arguments are separate heap blocks, so a read past one shows up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../cli/cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum kind { K_STRING, K_INT, K_INT64, K_U64, K_DOUBLE, K_DOUBLE_OPEN, K_FLAG };

static const struct {
    const char *name;
    enum kind kind;
} options[] = {
    {"--data", K_STRING},       {"--checkpoint", K_STRING}, {"--model", K_STRING},
    {"--batch-size", K_INT},    {"--num-epochs", K_INT},    {"--train-size", K_INT64},
    {"--seed", K_U64},          {"--reg", K_DOUBLE},        {"--learning-rate", K_DOUBLE_OPEN},
    {"--json", K_FLAG},         {"--quiet", K_FLAG},        {"--help", K_FLAG},
};

static int parse(int argc, char **argv)
{
    cli_parser p = cli_parser_make("fuzz", argc, argv);
    int k, positional = 0;
    while ((k = cli_next(&p)) != 0) {
        if (k == 2) {
            if (++positional > 8)
                return cli_usage_error(&p, "too many arguments");
            continue;
        }
        size_t i = 0, n = sizeof(options) / sizeof(options[0]);
        while (i < n && !cli_is(&p, options[i].name))
            i++;
        if (i == n)
            return cli_unknown(&p);
        const char *s;
        int vi;
        int64_t v64;
        uint64_t u;
        double d;
        bool ok = true;
        switch (options[i].kind) {
        case K_STRING: ok = cli_string(&p, &s); break;
        case K_INT: ok = cli_int(&p, 1, 1 << 20, &vi); break;
        case K_INT64: ok = cli_int64(&p, 0, INT64_MAX, &v64); break;
        case K_U64: ok = cli_u64(&p, &u); break;
        case K_DOUBLE: ok = cli_double(&p, 0, false, 1e6, &d); break;
        case K_DOUBLE_OPEN: ok = cli_double(&p, 0, true, 10, &d); break;
        case K_FLAG: ok = cli_flag(&p); break;
        }
        if (!ok)
            return 2;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_ARGS = 64 };
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup("fuzz");
    size_t at = 0;
    while (at < size && argc < MAX_ARGS + 1) {
        const uint8_t *end = memchr(data + at, 0, size - at);
        size_t len = end ? (size_t)(end - (data + at)) : size - at;
        char *a = malloc(len + 1);
        if (!a)
            abort();
        memcpy(a, data + at, len);
        a[len] = '\0';
        argv[argc++] = a;
        at += len + 1;
    }
    argv[argc] = NULL;
    (void)parse(argc, argv);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
