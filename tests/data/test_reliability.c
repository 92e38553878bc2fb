/*
 * Bad inputs and faults around the dasecv commands ($DASECV): output paths
 * that are not regular files, write errors on stdout and on the log, invalid
 * DASECV_NUM_THREADS, termination signals during training, orphan temporary
 * files, non-finite checkpoints, cut CIFAR batches and truncated images.
 * Every case here failed (exit 0, a crash, or a lost file) before the fix it
 * names.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wunused-function"

#include "gen.h"
#include "testutil.h"

static char g_dir[4096];  /* scratch dir of this program */
static char g_data[4200]; /* "mnist:DIR" of the mini dataset */
static char g_out[4200], g_err[4200];
static char g_stdout[1 << 16], g_stderr[1 << 16];

static const char *path_in(const char *name)
{
    static char buf[8][4200];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", g_dir, name);
    return buf[k];
}

static void slurp(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    size_t r = fread(buf, 1, n - 1, f);
    buf[r] = '\0';
    fclose(f);
}

/* How the child's stdout is set up. */
typedef struct spawn_opts {
    const char *env;      /* "K=V" or NULL */
    const char *out;      /* stdout to this path instead of g_out */
    bool close_stdout;    /* run with descriptor 1 closed */
    long fsize_limit;     /* RLIMIT_FSIZE in bytes, 0 none (SIGXFSZ ignored) */
} spawn_opts;

static pid_t spawn_with(const spawn_opts *so, const char *const *args)
{
    const char *exe = getenv("DASECV");
    if (!exe)
        fail_msg("DASECV is not set");
    const char *argv[64];
    int n = 0;
    argv[n++] = exe;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (so->env) {
            char kv[4200];
            snprintf(kv, sizeof(kv), "%s", so->env);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
        int o = open(so->out ? so->out : g_out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int e = open(g_err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dup2(o, 1);
        dup2(e, 2);
        close(o);
        close(e);
        if (so->close_stdout)
            close(1);
        if (so->fsize_limit) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {(rlim_t)so->fsize_limit, (rlim_t)so->fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_rc(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid)
        fail_msg("waitpid failed");
    slurp(g_out, g_stdout, sizeof(g_stdout));
    slurp(g_err, g_stderr, sizeof(g_stderr));
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

#define RUN_WITH(so, ...) wait_rc(spawn_with(so, (const char *const[]){__VA_ARGS__, NULL}))
#define RUN(env_, ...) RUN_WITH((&(spawn_opts){.env = env_}), __VA_ARGS__)
#define SPAWN(...) spawn_with(&(spawn_opts){0}, (const char *const[]){__VA_ARGS__, NULL})

static void expect_rc(int got, int want)
{
    if (got != want)
        fail_msg("exit %d, expected %d\nstdout: %s\nstderr: %s", got, want, g_stdout,
                 g_stderr);
}

static void expect_in(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' not in:\n%s", needle, hay);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void write_text(const char *path, const char *text)
{
    assert_int_equal(gen_write(path, text, strlen(text)), 0);
}

static int setup(void **st)
{
    (void)st;
    snprintf(g_dir, sizeof(g_dir), "%s", tu_scratch("reliability"));
    gen_dir(g_dir);
    const char *d = path_in("mini");
    gen_dir(d);
    if (gen_idx(d, "train", 0, 240, 8, 8, 1) || gen_idx(d, "t10k", 1, 30, 8, 8, 1))
        return -1;
    snprintf(g_data, sizeof(g_data), "mnist:%s", d);
    snprintf(g_out, sizeof(g_out), "%s", path_in("stdout.txt"));
    snprintf(g_err, sizeof(g_err), "%s", path_in("stderr.txt"));
    return 0;
}

/* A small, fast model on the 8x8 images. */
#define SMALL_MODEL                                                                   \
    "--model", "threelayer", "--num-filters", "4", "--filter-size", "3", "--hidden-dim", \
        "16", "--batch-size", "20", "--update-rule", "adam", "--learning-rate", "1e-2", \
        "--num-train-samples", "100", "--seed", "3"

/* A checkpoint of the small model, made once. */
static const char *small_ckpt(void)
{
    const char *ck = path_in("small.ckpt");
    static char made[4200];
    if (strcmp(made, ck) != 0) {
        expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                      "--checkpoint", ck, "--quiet"),
                  0);
        snprintf(made, sizeof(made), "%s", ck);
    }
    return ck;
}

/* ---- DASECV_NUM_THREADS ---------------------------------------------------- */

static void test_bad_thread_env(void **st)
{
    (void)st;
    const char *bad[] = {"DASECV_NUM_THREADS=0", "DASECV_NUM_THREADS=abc",
                         "DASECV_NUM_THREADS=-3", "DASECV_NUM_THREADS=99999",
                         "DASECV_NUM_THREADS="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_rc(RUN(bad[i], "eval", "--checkpoint", "x.ckpt"), 2);
        expect_in(g_stderr, "DASECV_NUM_THREADS");
        assert_int_equal(count_lines(g_stderr), 1);
    }
    expect_rc(RUN("DASECV_NUM_THREADS=1", "op", "--list"), 0);
}

/* ---- stdout write errors ----------------------------------------------------- */

static void test_stdout_errors(void **st)
{
    (void)st;
    const char *ck = small_ckpt();
    spawn_opts full = {.out = "/dev/full"}, closed = {.close_stdout = true};
    expect_rc(RUN_WITH(&full, "eval", "--checkpoint", ck, "--data", g_data, "--json"), 1);
    expect_in(g_stderr, "cannot write to stdout");
    expect_rc(RUN_WITH(&closed, "eval", "--checkpoint", ck, "--data", g_data), 1);
    expect_in(g_stderr, "cannot write to stdout");
    expect_rc(RUN_WITH(&full, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                       "--quiet", "--json"),
              1);
    expect_in(g_stderr, "cannot write to stdout");
    expect_rc(RUN_WITH(&closed, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                       "--quiet", "--json"),
              1);
    expect_in(g_stderr, "cannot write to stdout");
    expect_rc(RUN_WITH(&full, "--help"), 1);
    expect_rc(RUN_WITH(&full, "describe", "--help"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_thread_env),
        cmocka_unit_test(test_stdout_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
