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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#include <jpeglib.h>
#include <zlib.h>

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


/* describe's FLOPs: the first conv computes no input gradient (the engine
 * skips it), so its backward is its weight gradient, the forward's 2 MACs;
 * a later affine also computes its input's gradient. conv1 (2, 32, 32, 32)
 * of 3x7x7: 2 * 2*32*32*32 * 147 + 65536; affine2 (2, 100) of 8192:
 * 4 * 2*100 * 8192 + 200. */
static void test_describe_flops(void **st)
{
    (void)st;
    expect_rc(RUN(NULL, "describe", "threelayer", "--batch-size", "2", "--input", "3,32,32",
                  "--classes", "10", "--json"),
              0);
    expect_in(g_stdout, "\"name\": \"conv1\", \"op\": \"conv\", \"output\": [2,32,32,32], "
                        "\"params\": 4736, \"fwd_flops\": 19333120, \"bwd_flops\": 19333120,");
    expect_in(g_stdout, "\"fwd_flops\": 3277000, \"bwd_flops\": 6553800,");
}

/* ---- output paths ------------------------------------------------------------ */

/* Waits until the log has a row after its header: training (and with it
 * the signal handlers) has started. */
static bool wait_for_row(const char *log, pid_t pid, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        struct stat sb;
        if (stat(log, &sb) == 0 && sb.st_size > 60)
            return true;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("the command ended early");
        sleep_ms(10);
    }
    return false;
}

static mode_t lmode(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0 ? sb.st_mode & S_IFMT : 0;
}

/* A socket node: a stand-in for a device that needs no mknod. */
static void make_socket(const char *path)
{
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(a.sun_path));
    strcpy(a.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
}

static void expect_refused(const char *what)
{
    if (count_lines(g_stderr) != 1)
        fail_msg("not one line:\n%s", g_stderr);
    expect_in(g_stderr, what);
}

static void test_output_not_regular(void **st)
{
    (void)st;
    const char *fifo = path_in("fifo"), *dir = path_in("adir"), *sock = path_in("sock");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    gen_dir(dir);
    make_socket(sock);
    const char *node[] = {fifo, dir, sock};
    const char *kind[] = {"a FIFO", "a directory", "a socket"};
    mode_t mode[] = {S_IFIFO, S_IFDIR, S_IFSOCK};
    for (int i = 0; i < 3; i++) {
        expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                      "--checkpoint", node[i]),
                  2);
        expect_refused(kind[i]);
        expect_in(g_stderr, "--checkpoint");
        assert_int_equal(lmode(node[i]), mode[i]);
        expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                      "--log", node[i]),
                  2);
        expect_refused(kind[i]);
        expect_rc(RUN(NULL, "op", "relu_forward", "--x", path_in("nosuch.npy"), "--out", node[i]), 2);
        expect_refused(kind[i]);
        assert_int_equal(lmode(node[i]), mode[i]);
        expect_rc(RUN(NULL, "export", "nosuch.ckpt", "-o", node[i]), 2);
        expect_refused(kind[i]);
        assert_int_equal(lmode(node[i]), mode[i]);
    }
    /* refused before any work: no progress line, no data read */
    expect_rc(RUN(NULL, "train", "--data", "mnist:/nonexistent", "--checkpoint", fifo), 2);
    expect_refused("a FIFO");
    /* a link to a FIFO is refused as the FIFO is */
    const char *lfifo = path_in("link-to-fifo");
    unlink(lfifo);
    assert_int_equal(symlink(fifo, lfifo), 0);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--checkpoint", lfifo), 2);
    expect_refused("a FIFO");
    assert_int_equal(lmode(lfifo), S_IFLNK);
    /* a missing directory */
    expect_rc(RUN(NULL, "train", "--data", g_data, "--checkpoint", path_in("no/such/x.ckpt")),
              2);
    expect_refused("directory");
}

static void test_output_symlink(void **st)
{
    (void)st;
    const char *link = path_in("ck-link"), *target = path_in("ck-target.ckpt");
    unlink(link);
    unlink(target);
    write_text(target, "old contents");
    assert_int_equal(symlink("ck-target.ckpt", link), 0); /* relative, as people make them */
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                  "--checkpoint", link, "--quiet"),
              0);
    assert_int_equal(lmode(link), S_IFLNK);
    assert_int_equal(lmode(target), S_IFREG);
    dsv_model *m = NULL;
    TU_OK(dsv_checkpoint_load_model(target, &m));
    dsv_model_destroy(m);
    /* a dangling link: its target is created */
    const char *dangling = path_in("dangling-link"), *missing = path_in("made-by-link.npz");
    unlink(dangling);
    unlink(missing);
    assert_int_equal(symlink(missing, dangling), 0);
    expect_rc(RUN(NULL, "export", target, "-o", dangling), 0);
    assert_int_equal(lmode(dangling), S_IFLNK);
    assert_int_equal(lmode(missing), S_IFREG);
}

/* ---- --resume, signals, orphans ---------------------------------------------- */

static void test_resume_warns_ignored(void **st)
{
    (void)st;
    const char *ck = path_in("resume-warn.ckpt");
    unlink(ck);
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                  "--checkpoint", ck, "--quiet"),
              0);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--resume", ck, "--num-epochs", "2",
                  "--learning-rate", "0.5", "--batch-size=7", "--seed", "9", "--quiet"),
              0);
    expect_in(g_stderr, "ignoring --learning-rate, --batch-size, --seed");
    assert_int_equal(count_lines(g_stderr), 1);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--resume", ck, "--num-epochs", "3",
                  "--quiet"),
              0);
    assert_int_equal(count_lines(g_stderr), 0);
}

static void signal_saves(int sig)
{
    const char *ck = path_in("signalled.ckpt"), *log = path_in("signalled.csv");
    unlink(ck);
    unlink(log);
    pid_t pid = spawn_with(&(spawn_opts){0},
                           (const char *const[]){"train", "--data", g_data, SMALL_MODEL,
                                                 "--num-epochs", "100000", "--checkpoint",
                                                 ck, "--log", log, "--json", NULL});
    if (!wait_for_row(log, pid, 60000))
        fail_msg("training did not start");
    sleep_ms(100);
    kill(pid, sig);
    expect_rc(wait_rc(pid), 128 + sig);
    expect_in(g_stdout, "\"interrupted\": true");
    expect_in(g_stderr, sig == SIGTERM ? "interrupted by SIGTERM" : "interrupted by SIGHUP");
    dsv_model *m = NULL;
    TU_OK(dsv_checkpoint_load_model(ck, &m));
    dsv_model_destroy(m);
}

static void test_sigterm_sighup_save(void **st)
{
    (void)st;
    signal_saves(SIGTERM);
    signal_saves(SIGHUP);
}

static void test_second_signal_keeps_checkpoint(void **st)
{
    (void)st;
    const char *ck = path_in("twice.ckpt"), *log = path_in("twice.csv");
    unlink(ck);
    unlink(log);
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                  "--checkpoint", ck, "--quiet"),
              0);
    for (int round = 0; round < 3; round++) {
        unlink(log);
        pid_t pid = spawn_with(&(spawn_opts){0},
                               (const char *const[]){"train", "--data", g_data, "--resume",
                                                     ck, "--num-epochs", "100000", "--log",
                                                     log, "--quiet", NULL});
        if (!wait_for_row(log, pid, 60000))
            fail_msg("training did not start");
        sleep_ms(50 + 40 * round);
        kill(pid, SIGTERM);
        kill(pid, SIGTERM);
        int rc = wait_rc(pid);
        if (rc != 128 + SIGTERM)
            fail_msg("exit %d\n%s", rc, g_stderr);
        dsv_model *m = NULL;
        TU_OK(dsv_checkpoint_load_model(ck, &m));
        dsv_model_destroy(m);
    }
}

static void test_orphan_temp_files(void **st)
{
    (void)st;
    const char *ck = path_in("orphans.ckpt");
    const char *orphan = path_in("orphans.ckpt.tmp.Ab3xYz");
    const char *longer = path_in("orphans.ckpt.tmp.Ab3xYz7"), *other = path_in("orphans.ckpt.tmp.");
    write_text(orphan, "half a checkpoint");
    write_text(longer, "not ours");
    write_text(other, "not ours");
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                  "--checkpoint", ck, "--quiet"),
              0);
    assert_false(exists(orphan));
    assert_true(exists(longer));
    assert_true(exists(other));
    expect_in(g_stderr, "warning: removed");
    expect_in(g_stderr, "orphans.ckpt.tmp.Ab3xYz");
}

/* ---- log write errors ---------------------------------------------------------- */

static void test_log_write_error(void **st)
{
    (void)st;
    const char *ck = path_in("logfail.ckpt"), *log = path_in("logfail.csv");
    unlink(ck);
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "1",
                  "--checkpoint", ck, "--quiet"),
              0);
    static char before[1 << 16], after[1 << 16];
    struct stat s0, s1;
    assert_int_equal(stat(ck, &s0), 0);
    assert_true(s0.st_size < 40000);
    slurp(ck, before, sizeof(before));
    /* a log 100 bytes short of the file size limit: appending (as --resume
       does) fails within a few rows, long before the checkpoint would */
    const long limit = 60000;
    FILE *f = fopen(log, "wb");
    assert_non_null(f);
    fputs("iteration,epoch,loss,lr,train_acc,val_acc,images_per_s\n", f);
    while (ftell(f) < limit - 100)
        fputs("0,0,0,0,,,0\n", f);
    fclose(f);
    spawn_opts so = {.fsize_limit = limit};
    expect_rc(RUN_WITH(&so, "train", "--data", g_data, "--resume", ck, "--num-epochs", "5",
                       "--log", log, "--quiet"),
              1);
    expect_in(g_stderr, "writing the log");
    expect_in(g_stderr, "File too large");
    expect_in(g_stderr, "not written by this run");
    assert_int_equal(stat(ck, &s1), 0);
    assert_int_equal(s0.st_size, s1.st_size);
    slurp(ck, after, sizeof(after));
    assert_memory_equal(before, after, (size_t)s0.st_size);
}

/* ---- non-finite checkpoints ---------------------------------------------------- */

static void test_nonfinite_checkpoint(void **st)
{
    (void)st;
    const char *ck = small_ckpt(), *bad = path_in("nan-weights.ckpt");
    dsv_dataset ds;
    dsv_data_options opt = dsv_data_options_default();
    TU_OK(dsv_dataset_load(&ds, g_data, &opt));
    dsv_model *m = NULL;
    dsv_solver *s = NULL;
    TU_OK(dsv_checkpoint_load(ck, &m, &s, &ds.train, &ds.val, NULL));
    float *w = dsv_model_params(m); /* float32 model: a valid file, CRC and all */
    w[dsv_model_num_params(m) / 2] = NAN;
    TU_OK(dsv_checkpoint_save(s, bad));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    dsv_dataset_free(&ds);

    expect_rc(RUN(NULL, "eval", "--checkpoint", bad, "--data", g_data), 1);
    expect_in(g_stderr, "NaN or infinite value in its parameters");
    expect_rc(RUN(NULL, "predict", "--checkpoint", bad, path_in("none.png")), 1);
    expect_in(g_stderr, "NaN or infinite value");
    expect_rc(RUN(NULL, "train", "--data", g_data, "--resume", bad, "--num-epochs", "2",
                  "--checkpoint", path_in("from-nan.ckpt")),
              1);
    expect_in(g_stderr, "NaN or infinite value");
    assert_false(exists(path_in("from-nan.ckpt")));
}

/* ---- messages ------------------------------------------------------------------- */

/* A version 1.0 .npy file of n zero elements of descr. */
static void write_npy(const char *path, const char *descr, int n, int size)
{
    char hdr[128];
    int h = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }",
                     descr, n);
    while ((10 + h + 1) % 64)
        hdr[h++] = ' ';
    hdr[h++] = '\n';
    unsigned char buf[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)h, 0};
    memcpy(buf + 10, hdr, (size_t)h);
    memset(buf + 10 + h, 0, (size_t)(n * size));
    assert_int_equal(gen_write(path, buf, (size_t)(10 + h + n * size)), 0);
}

static void test_messages(void **st)
{
    (void)st;
    /* the file's own integer type, not the int32 it loads as */
    const char *u8 = path_in("u8.npy"), *i64 = path_in("i64.npy");
    write_npy(u8, "|u1", 4, 1);
    write_npy(i64, "<i8", 4, 8);
    expect_rc(RUN(NULL, "op", "relu_forward", "--x", u8, "--out", path_in("o.npy")), 2);
    expect_in(g_stderr, "holds uint8");
    expect_rc(RUN(NULL, "op", "relu_forward", "--x", i64, "--out", path_in("o.npy")), 2);
    expect_in(g_stderr, "holds int64");
    /* an unknown --data spec is bad usage, found before anything is loaded */
    const char *cmds[] = {"train", "eval", "predict"};
    for (int i = 0; i < 3; i++) {
        expect_rc(RUN(NULL, cmds[i], "--data", "cifar100:/x", "--checkpoint", "x.ckpt"), 2);
        expect_in(g_stderr, "unknown dataset spec");
        assert_int_equal(count_lines(g_stderr), 1);
    }
    expect_rc(RUN(NULL, "train", "--data", "mnist"), 2);
    expect_in(g_stderr, "needs a directory");
    /* the range printed is the range checked: inf is not accepted */
    expect_rc(RUN(NULL, "train", "--learning-rate", "-1"), 2);
    expect_in(g_stderr, "(0, inf)");
    expect_rc(RUN(NULL, "train", "--learning-rate", "inf"), 2);
}

/* ---- images --------------------------------------------------------------------- */

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A PNG signature and an IHDR chunk (valid CRC) of w x h RGB, then a chunk
 * of type `type` (4 bytes, any values) with a valid CRC and no IEND. */
static void write_png_head(const char *path, uint32_t w, uint32_t h, const char *type)
{
    unsigned char b[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 8;
    put_be32(b + n, 13);
    memcpy(b + n + 4, "IHDR", 4);
    put_be32(b + n + 8, w);
    put_be32(b + n + 12, h);
    b[n + 16] = 8; /* bit depth */
    b[n + 17] = 2; /* RGB */
    put_be32(b + n + 21, (uint32_t)crc32(0, b + n + 4, 17));
    n += 25;
    put_be32(b + n, 0);
    memcpy(b + n + 4, type, 4);
    put_be32(b + n + 8, (uint32_t)crc32(0, b + n + 4, 4));
    n += 12;
    assert_int_equal(gen_write(path, b, n), 0);
}

static void expect_image_error(const char *path, const char *needle)
{
    dsv_tensor t;
    dsv_status s = dsv_image_load(path, 3, 8, 8, &t);
    if (s == DSV_OK)
        fail_msg("%s loaded", path);
    if (!strstr(dsv_errmsg(), needle))
        fail_msg("'%s' lacks '%s'", dsv_errmsg(), needle);
    if (!strstr(dsv_errmsg(), path))
        fail_msg("'%s' does not name the file", dsv_errmsg());
    for (const char *c = dsv_errmsg(); *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            fail_msg("message carries byte 0x%02x", (unsigned char)*c);
}

/* A baseline JPEG of w x h RGB pixels, written with libjpeg-turbo (stb's
 * JPEG writer shifts a negative int, which UBSan reports). */
static void write_jpeg(const char *path, int w, int h, const uint8_t *rgb, int quality)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    assert_int_equal(fclose(f), 0);
}

static void test_truncated_images(void **st)
{
    (void)st;
    enum { W = 40, H = 30 };
    static uint8_t px[W * H * 3];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 37 + i / 91);
    const char *png = path_in("whole.png"), *jpg = path_in("whole.jpg");
    assert_int_not_equal(stbi_write_png(png, W, H, 3, px, W * 3), 0);
    write_jpeg(jpg, W, H, px, 90);
    dsv_tensor t;
    TU_OK(dsv_image_load(png, 3, 8, 8, &t));
    dsv_tensor_free(&t);
    TU_OK(dsv_image_load(jpg, 3, 8, 8, &t));
    dsv_tensor_free(&t);
    /* cut in the middle of the pixel data */
    static char buf[1 << 16];
    const char *tp = path_in("cut.png"), *tj = path_in("cut.jpg");
    FILE *f = fopen(png, "rb");
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(gen_write(tp, buf, n * 2 / 3), 0);
    expect_image_error(tp, "PNG");
    f = fopen(jpg, "rb");
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(gen_write(tj, buf, n * 2 / 3), 0);
    expect_image_error(tj, "JPEG");
    /* predict names the file and fails */
    expect_rc(RUN(NULL, "predict", "--checkpoint", small_ckpt(), tp), 1);
    expect_in(g_stderr, tp);
    /* a tiny BMP that claims 16000 x 16000: refused, not allocated */
    unsigned char bmp[246] = {'B', 'M'};
    bmp[10] = 54;
    bmp[14] = 40;
    bmp[18] = 0x80, bmp[19] = 0x3e; /* width 16000 */
    bmp[22] = 0x80, bmp[23] = 0x3e; /* height 16000 */
    bmp[26] = 1;
    bmp[28] = 24;
    const char *pb = path_in("huge.bmp");
    assert_int_equal(gen_write(pb, bmp, sizeof(bmp)), 0);
    expect_image_error(pb, "BMP");
    /* a PNG header claiming 20000 x 20000: refused by its size */
    const char *big = path_in("huge.png");
    write_png_head(big, 20000, 20000, "IDAT");
    expect_image_error(big, "refused");
    /* a chunk type of control bytes: the message does not echo them */
    const char *odd = path_in("odd-chunk.png");
    write_png_head(odd, 4, 4, "\x1b[2J");
    expect_image_error(odd, "PNG");
    assert_true(file_size(odd) > 0);
}

/* A FIFO given as an input is refused at once, not read (which would block). */
static void test_fifo_inputs(void **st)
{
    (void)st;
    const char *fifo = path_in("in-fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    expect_rc(RUN(NULL, "eval", "--checkpoint", fifo, "--data", g_data), 1);
    expect_in(g_stderr, "not a regular file");
    expect_rc(RUN(NULL, "predict", "--checkpoint", small_ckpt(), fifo), 1);
    expect_in(g_stderr, "not a regular file");
    expect_rc(RUN(NULL, "describe", fifo), 2);
    expect_in(g_stderr, "a FIFO");
    expect_rc(RUN(NULL, "train", "--data", g_data, "--model", fifo), 2);
    expect_in(g_stderr, "a FIFO");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_thread_env),
        cmocka_unit_test(test_stdout_errors),
        cmocka_unit_test(test_describe_flops),
        cmocka_unit_test(test_output_not_regular),
        cmocka_unit_test(test_output_symlink),
        cmocka_unit_test(test_resume_warns_ignored),
        cmocka_unit_test(test_sigterm_sighup_save),
        cmocka_unit_test(test_second_signal_keeps_checkpoint),
        cmocka_unit_test(test_orphan_temp_files),
        cmocka_unit_test(test_log_write_error),
        cmocka_unit_test(test_nonfinite_checkpoint),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_truncated_images),
        cmocka_unit_test(test_fifo_inputs),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
