/*
 * The train / eval / predict / check commands end to end, through the dasecv
 * binary ($DASECV), on a generated mini dataset (IDX files of 8x8 images)
 * under $DSV_SCRATCH: training with checkpoints, logs and --json, eval,
 * predict on a generated PNG, resume, SIGKILL and SIGINT during training,
 * NaN losses, corrupt inputs and bad options.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

#include "gen.h"
#include "testutil.h"

static char g_dir[4096];   /* scratch dir of this program */
static char g_data[4200];  /* "mnist:DIR" of the mini dataset */
static char g_out[4200], g_err[4200];
static char g_stdout[1 << 16], g_stderr[1 << 16];

static const char *path_in(const char *name)
{
    static char buf[4][4200];
    static int k;
    k = (k + 1) % 4;
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

/* Starts $DASECV argv... with stdout/stderr to files; env "K=V" or NULL. */
static pid_t spawn(const char *env, const char *const *args)
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
        if (env) {
            char kv[4200];
            snprintf(kv, sizeof(kv), "%s", env);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
        int o = open(g_out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int e = open(g_err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dup2(o, 1);
        dup2(e, 2);
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

#define RUN(env, ...) wait_rc(spawn(env, (const char *const[]){__VA_ARGS__, NULL}))

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

static int setup(void **st)
{
    (void)st;
    snprintf(g_dir, sizeof(g_dir), "%s", tu_scratch("commands"));
    gen_dir(g_dir);
    const char *d = path_in("mini");
    gen_dir(d);
    if (gen_idx(d, "train", 0, 240, 8, 8, 1) || gen_idx(d, "t10k", 1, 30, 8, 8, 1))
        return -1;
    snprintf(g_data, sizeof(g_data), "mnist:%s", d);
    snprintf(g_out, sizeof(g_out), "%s", path_in("stdout.txt"));
    snprintf(g_err, sizeof(g_err), "%s", path_in("stderr.txt"));
    gen_dir(path_in("empty"));
    return 0;
}

/* A small, fast model on the 8x8 images. */
#define SMALL_MODEL                                                                   \
    "--model", "threelayer", "--num-filters", "4", "--filter-size", "3", "--hidden-dim", \
        "16", "--batch-size", "20", "--update-rule", "adam", "--learning-rate", "1e-2", \
        "--num-train-samples", "100", "--seed", "3"

static void train_small(const char *ckpt, const char *epochs)
{
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", epochs,
                  "--checkpoint", ckpt, "--quiet"),
              0);
}

static void test_help_and_bad_options(void **st)
{
    (void)st;
    const char *cmds[] = {"train", "eval", "predict", "check"};
    for (int i = 0; i < 4; i++) {
        expect_rc(RUN(NULL, cmds[i], "--help"), 0);
        expect_in(g_stdout, "usage: dasecv");
    }
    expect_in((RUN(NULL, "predict", "--help"), g_stdout), "mean image");
    const char *bad[][4] = {
        {"train", "--batch-size", "0", "out of range"},
        {"train", "--learning-rate", "-1", "out of range"},
        {"train", "--dropout", "1.5", "out of range"},
        {"train", "--batch-size", "abc", "not an integer"},
        {"train", "--reg", "1e", "not a finite number"},
        {"train", "--model", "nosuch", "built-in model named 'nosuch'"},
        {"train", "--bogus", NULL, "unknown option"},
        {"train", "--seed", NULL, "needs a value"},
        {"train", "--json=1", NULL, "takes no value"},
        {"eval", "--split", "dev", "--split"},
        {"eval", "--data", g_data, "--checkpoint FILE is required"},
        {"predict", "--top-k", "0", "out of range"},
        {"check", "--op", "nope", "unknown op"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = bad[i][2] ? RUN(NULL, bad[i][0], bad[i][1], bad[i][2])
                           : RUN(NULL, bad[i][0], bad[i][1]);
        expect_rc(rc, 2);
        expect_in(g_stderr, bad[i][3]);
        if (count_lines(g_stderr) != 1)
            fail_msg("%s %s: not one line:\n%s", bad[i][0], bad[i][1], g_stderr);
    }
}

static void test_no_data(void **st)
{
    (void)st;
    char env[4300];
    snprintf(env, sizeof(env), "DASECV_FASHION_MNIST_DIR=%s", path_in("empty"));
    expect_rc(RUN(env, "train", "--num-epochs", "1"), 1);
    expect_in(g_stderr, "apt-get install dataset-fashion-mnist");
    expect_in(g_stderr, "cifar-10-binary.tar.gz");
}

static void test_truncated_dataset(void **st)
{
    (void)st;
    const char *d = path_in("trunc");
    gen_dir(d);
    assert_int_equal(gen_idx(d, "train", 0, 50, 8, 8, 0), 0);
    assert_int_equal(gen_idx(d, "t10k", 1, 10, 8, 8, 0), 0);
    char f[4300], spec[4300];
    snprintf(f, sizeof(f), "%s/train-images-idx3-ubyte", d);
    assert_int_equal(truncate(f, 16 + 64 * 20), 0);
    snprintf(spec, sizeof(spec), "mnist:%s", d);
    expect_rc(RUN(NULL, "train", "--data", spec, "--num-epochs", "1"), 1);
    expect_in(g_stderr, f);
    expect_in(g_stderr, "truncated");
}

static void test_check_command(void **st)
{
    (void)st;
    expect_rc(RUN(NULL, "check", "--quiet"), 0);
    expect_in(g_stdout, "0 failed");
    /* the checker catches a wrong kernel */
    expect_rc(RUN("DASECV_CHECK_BREAK=relu", "check", "--op", "relu"), 1);
    expect_in(g_stdout, "FAIL");
}

static void test_train_eval_predict(void **st)
{
    (void)st;
    const char *ck = path_in("model.ckpt"), *log = path_in("log.csv");
    unlink(ck);
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--num-epochs", "2",
                  "--checkpoint", ck, "--log", log, "--json", "--print-every", "5"),
              0);
    const char *keys[] = {"\"train_acc\"", "\"val_acc\"", "\"final_loss\"", "\"seconds\"",
                          "\"images_per_s\"", "\"epochs\": 2", "\"backend\"",
                          "\"schedule\"", "\"threads\""};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        expect_in(g_stdout, keys[i]);
    assert_int_equal(count_lines(g_stdout), 1);
    assert_true(exists(ck));
    expect_in(g_stderr, "(Epoch 2 / 2)"); /* plain lines: stderr is a file */
    char csv[1 << 16];
    slurp(log, csv, sizeof(csv));
    expect_in(csv, "iteration,epoch,loss,lr,train_acc,val_acc,images_per_s\n");
    /* 216 training images / 20 = 10 iterations an epoch, 2 epochs */
    assert_int_equal(count_lines(csv), 1 + 20);

    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", g_data, "--split", "test",
                  "--json"),
              0);
    expect_in(g_stdout, "\"accuracy\"");
    expect_in(g_stdout, "\"loss\"");
    expect_in(g_stdout, "\"n\": 30");
    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", g_data), 0);
    expect_in(g_stdout, "n 24"); /* validation: 240 / 10 */

    uint8_t px[12 * 10 * 3];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 13);
    const char *png = path_in("digit.png");
    assert_int_not_equal(stbi_write_png(png, 10, 12, 3, px, 30), 0);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--data", g_data, "--top-k", "3", png,
                  png),
              0);
    expect_in(g_stdout, "digit.png");
    expect_in(g_stdout, "  3. ");
    assert_int_equal(count_lines(g_stdout), 8);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--data", g_data, "--json", png), 0);
    expect_in(g_stdout, "\"probability\"");

    const char *bad = path_in("bad.png");
    assert_int_equal(gen_write(bad, "not an image", 12), 0);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--data", g_data, bad), 1);
    expect_in(g_stderr, bad);
    /* a missing dataset directory is an error naming it */
    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", "cifar10:/nonexistent"), 1);
    expect_in(g_stderr, "/nonexistent/data_batch_1.bin");

    /* resume to 3 epochs: one more epoch, the log goes on */
    expect_rc(RUN(NULL, "train", "--data", g_data, "--resume", ck, "--num-epochs", "3",
                  "--log", log, "--json", "--quiet"),
              0);
    expect_in(g_stdout, "\"epochs\": 3");
    slurp(log, csv, sizeof(csv));
    assert_int_equal(count_lines(csv), 1 + 30);
}

/* predict on a PNG of test image 0 gives the probabilities the model gives
 * that image through the dataset's own conversion (mean subtracted alike). */
static void test_predict_matches_dataset(void **st)
{
    (void)st;
    const char *ck = path_in("match.ckpt");
    train_small(ck, "1");
    uint8_t px[64];
    for (int k = 0; k < 64; k++)
        px[k] = gen_pixel(1, 0, k);
    const char *png = path_in("test0.png");
    assert_int_not_equal(stbi_write_png(png, 8, 8, 1, px, 8), 0);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--data", g_data, "--top-k", "1",
                  "--json", png),
              0);
    const char *c = strstr(g_stdout, "\"class\": "), *pr = strstr(g_stdout, "\"probability\": ");
    assert_non_null(c);
    assert_non_null(pr);
    int cls = atoi(c + 9);
    double prob = atof(pr + 15);

    dsv_model *m = NULL;
    dsv_dataset ds;
    TU_OK(dsv_checkpoint_load_model(ck, &m));
    TU_OK(dsv_dataset_load(&ds, g_data, NULL));
    dsv_tensor x = {0}, y = {0}, sc = {0};
    TU_OK(dsv_split_batch(&ds.test, NULL, 1, &x, &y, DSV_F32));
    TU_OK(dsv_tensor_init(&sc, DSV_F32, 2, (int64_t[]){1, 10}));
    TU_OK(dsv_model_scores(m, &x, &sc));
    int best = 0;
    double mx = -1e300, sum = 0;
    for (int j = 0; j < 10; j++) {
        if (dsv_tensor_get(&sc, j) > dsv_tensor_get(&sc, best))
            best = j;
        mx = fmax(mx, dsv_tensor_get(&sc, j));
    }
    for (int j = 0; j < 10; j++)
        sum += exp(dsv_tensor_get(&sc, j) - mx);
    assert_int_equal(cls, best);
    assert_float_equal(prob, exp(dsv_tensor_get(&sc, best) - mx) / sum, 1e-6);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&sc);
    dsv_dataset_free(&ds);
    dsv_model_destroy(m);
}

static void test_corrupt_checkpoint(void **st)
{
    (void)st;
    const char *ck = path_in("corrupt.ckpt");
    train_small(ck, "1");
    /* flip bytes in the middle and cut the end */
    FILE *f = fopen(ck, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    fputs("garbage", f);
    fclose(f);
    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", g_data), 1);
    expect_in(g_stderr, ck);
    assert_int_equal(truncate(ck, n / 3), 0);
    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", g_data), 1);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--resume", ck, "--num-epochs", "2"), 1);
    expect_rc(RUN(NULL, "eval", "--checkpoint", path_in("none.ckpt"), "--data", g_data), 1);
}

/* Waits until path exists (or the child ended); returns false on timeout. */
static bool wait_for(const char *path, pid_t pid, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        if (exists(path))
            return true;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        sleep_ms(10);
    }
    return false;
}

static void test_sigkill_keeps_checkpoint(void **st)
{
    (void)st;
    const char *ck = path_in("killed.ckpt");
    unlink(ck);
    pid_t pid = spawn(NULL, (const char *const[]){"train", "--data", g_data, SMALL_MODEL,
                                                   "--num-epochs", "100000", "--checkpoint",
                                                   ck, "--quiet", NULL});
    if (!wait_for(ck, pid, 60000))
        fail_msg("no checkpoint appeared");
    sleep_ms(150); /* let it be rewritten a few times */
    kill(pid, SIGKILL);
    assert_int_equal(wait_rc(pid), 128 + SIGKILL);
    dsv_model *m = NULL;
    TU_OK(dsv_checkpoint_load_model(ck, &m));
    dsv_model_destroy(m);
    expect_rc(RUN(NULL, "eval", "--checkpoint", ck, "--data", g_data), 0);
}

static void test_sigint_saves(void **st)
{
    (void)st;
    const char *ck = path_in("interrupted.ckpt"), *log = path_in("int.csv");
    unlink(ck);
    unlink(log);
    pid_t pid = spawn(NULL, (const char *const[]){"train", "--data", g_data, SMALL_MODEL,
                                                   "--num-epochs", "100000", "--checkpoint",
                                                   ck, "--log", log, "--json", NULL});
    if (!wait_for(log, pid, 60000))
        fail_msg("training did not start");
    sleep_ms(200);
    kill(pid, SIGINT);
    expect_rc(wait_rc(pid), 130);
    expect_in(g_stdout, "\"interrupted\": true");
    expect_in(g_stderr, "interrupted");
    dsv_model *m = NULL;
    TU_OK(dsv_checkpoint_load_model(ck, &m));
    dsv_model_destroy(m);
}

static void test_nan_keeps_last_checkpoint(void **st)
{
    (void)st;
    const char *ck = path_in("nan.ckpt");
    train_small(ck, "1");
    char before[1 << 16], after[1 << 16];
    struct stat s0, s1;
    assert_int_equal(stat(ck, &s0), 0);
    slurp(ck, before, sizeof(before));
    /* a learning rate that blows the loss up within the first epoch */
    expect_rc(RUN(NULL, "train", "--data", g_data, SMALL_MODEL, "--update-rule", "sgd",
                  "--learning-rate", "1e30", "--num-epochs", "2", "--checkpoint", ck,
                  "--quiet"),
              1);
    expect_in(g_stderr, "training stopped");
    assert_int_equal(stat(ck, &s1), 0);
    assert_int_equal(s0.st_size, s1.st_size);
    slurp(ck, after, sizeof(after));
    assert_memory_equal(before, after, (size_t)s0.st_size < sizeof(before)
                                           ? (size_t)s0.st_size
                                           : sizeof(before));
}

/* A network from a file of the user's: trains, saves its text, mean image and
 * class names in the checkpoint, predicts without --data; bad files and
 * course options given to a file are usage errors naming the place. */
static void test_model_file(void **st)
{
    (void)st;
    const char *cfg = path_in("tiny.cfg"), *ck = path_in("tiny.ckpt"), *bad = path_in("bad.cfg");
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs("# a user's network\n[net]\ninit=he\n\n[conv]\nfilters=3\nsize=3\npad=1\n"
          "[relu]\n[max_pool]\n[affine]\noutputs=classes\n[softmax_loss]\n", f);
    fclose(f);
    unlink(ck);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--model", cfg, "--num-epochs", "1",
                  "--batch-size", "20", "--checkpoint", ck, "--quiet"),
              0);
    const char *png = path_in("digit.png");
    uint8_t px[12 * 10 * 3];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 7);
    assert_int_not_equal(stbi_write_png(png, 10, 12, 3, px, 30), 0);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--top-k", "2", png), 0);
    expect_in(g_stdout, "  2. ");
    /* the same output as with the training data named */
    static char without[1 << 16];
    snprintf(without, sizeof(without), "%s", g_stdout);
    expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--data", g_data, "--top-k", "2", png),
              0);
    assert_string_equal(without, g_stdout);

    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("[net]\n[conv]\nfilters=many\nsize=3\n[softmax_loss]\n", f);
    fclose(f);
    expect_rc(RUN(NULL, "train", "--data", g_data, "--model", bad, "--quiet"), 2);
    expect_in(g_stderr, "bad.cfg:3: [conv] conv1: filters: 'many' is not a whole number");
    expect_rc(RUN(NULL, "train", "--data", g_data, "--model", cfg, "--hidden-dim", "5"), 2);
    expect_in(g_stderr, "the course's options");
}

/* Every built-in model: a short run, then predict from its checkpoint alone
 * (no --data), the image cropped and converted to the model's input. */
static void test_predict_every_builtin(void **st)
{
    (void)st;
    char cifar[4300], fmnist[4300];
    const char *cd = path_in("cifar-mini"), *fd = path_in("mnist28");
    gen_dir(cd);
    gen_dir(fd);
    const int64_t counts[6] = {40, 40, 40, 40, 40, 20};
    assert_int_equal(gen_cifar(cd, counts), 0);
    assert_int_equal(gen_idx(fd, "train", 0, 120, 28, 28, 0), 0);
    assert_int_equal(gen_idx(fd, "t10k", 1, 20, 28, 28, 0), 0);
    snprintf(cifar, sizeof(cifar), "cifar10-custom:%s", cd);
    snprintf(fmnist, sizeof(fmnist), "mnist:%s", fd);
    char png[4300];
    snprintf(png, sizeof(png), "%s", path_in("wide.png"));
    uint8_t px[20 * 30 * 3];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 11);
    assert_int_not_equal(stbi_write_png(png, 30, 20, 3, px, 90), 0);
    const struct {
        const char *model, *data;
    } runs[] = {{"threelayer", g_data}, {"fc", g_data},   {"resnet", g_data},
                {"vgg", cifar},         {"lenet", fmnist}};
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        char ck[4300];
        snprintf(ck, sizeof(ck), "%s.ckpt", path_in(runs[i].model));
        unlink(ck);
        expect_rc(RUN(NULL, "train", "--data", runs[i].data, "--model", runs[i].model,
                      "--num-epochs", "1", "--batch-size", "20", "--num-train-samples", "20",
                      "--checkpoint", ck, "--quiet"),
                  0);
        expect_rc(RUN(NULL, "predict", "--checkpoint", ck, "--top-k", "1", png), 0);
        expect_in(g_stdout, "  1. ");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_bad_options),
        cmocka_unit_test(test_no_data),
        cmocka_unit_test(test_truncated_dataset),
        cmocka_unit_test(test_check_command),
        cmocka_unit_test(test_train_eval_predict),
        cmocka_unit_test(test_model_file),
        cmocka_unit_test(test_predict_every_builtin),
        cmocka_unit_test(test_predict_matches_dataset),
        cmocka_unit_test(test_corrupt_checkpoint),
        cmocka_unit_test(test_sigkill_keeps_checkpoint),
        cmocka_unit_test(test_sigint_saves),
        cmocka_unit_test(test_nan_keeps_last_checkpoint),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
