/*
 * Data-parallel training end to end: `mpirun -np K dasecv train` ($MPIRUN,
 * $DASECV) on a generated mini dataset (IDX files of 8x8 images) under
 * $DSV_SCRATCH. Checks that 2 ranks train the model one process trains
 * (ThreeLayerConvNet, and a net with spatial batch norm), that the ranks end
 * with the same bits (the command checks this itself and fails otherwise)
 * and that repeating a run repeats them, that a checkpoint resumes on another
 * number of ranks, and that a rank that dies or cannot read its data stops
 * the whole job in bounded time with a loadable checkpoint left behind.
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

#include "gen.h"
#include "testutil.h"

static char g_dir[4096];  /* scratch dir of this program */
static char g_data[4200]; /* "mnist:DIR" */
static char g_err[1 << 16];

/* mpirun's options. Open MPI does not free everything at MPI_Finalize, much
 * of it in components it has unloaded by then (no names to suppress), so
 * under AddressSanitizer the ranks run without leak detection; the
 * one-process runs and every other test keep it. */
#define MPIRUN_OPTS                                                            \
    "--allow-run-as-root --oversubscribe "                                     \
    "-x ASAN_OPTIONS=detect_leaks=0:abort_on_error=1"

/* A run: 20 iterations of global batch 50 per epoch (1000 of 1080 images). */
#define COMMON                                                                 \
    "--train-size 1000 --batch-size 50 --num-train-samples 100 "               \
    "--num-val-samples 0 --threads 1 --quiet --update-rule adam "              \
    "--learning-rate 1e-3 --seed 7"

static const char *path_in(const char *name)
{
    static char buf[4][4400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", g_dir, name);
    return buf[k];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

/* Starts sh -c cmd in its own process group, stdout and stderr to files. */
static pid_t spawn_sh(const char *cmd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int o = open(path_in("out.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int e = open(path_in("err.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dup2(o, 1);
        dup2(e, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits up to timeout_s; on timeout kills the group and fails. Returns the
 * exit status (128 + signal for a signal). */
static int wait_for(pid_t pid, double timeout_s, const char *what)
{
    double t0 = now_s();
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (now_s() - t0 > timeout_s) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("%s: still running after %.0f s", what, timeout_s);
        }
        usleep(20000);
    }
    slurp(path_in("err.txt"), g_err, sizeof(g_err));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs `dasecv train --data DATA COMMON args` on np ranks (np 0: without
 * mpirun) and returns its exit status. */
static int train(int np, const char *args)
{
    char cmd[16384];
    const char *mpirun = getenv("MPIRUN"), *exe = getenv("DASECV");
    if (!mpirun || !exe)
        fail_msg("MPIRUN and DASECV must be set");
    if (np > 0)
        snprintf(cmd, sizeof(cmd),
                 "%s " MPIRUN_OPTS " -np %d %s train --data %s %s %s",
                 mpirun, np, exe, g_data, COMMON, args);
    else
        snprintf(cmd, sizeof(cmd), "%s train --data %s %s %s", exe, g_data, COMMON, args);
    return wait_for(spawn_sh(cmd), 120, cmd);
}

#define TRAIN_OK(np, ...)                                                      \
    do {                                                                       \
        char a_[8192];                                                         \
        snprintf(a_, sizeof(a_), __VA_ARGS__);                                 \
        int rc_ = train(np, a_);                                               \
        if (rc_ != 0)                                                          \
            fail_msg("train on %d ranks %s: status %d\n%s", np, a_, rc_, g_err); \
    } while (0)

/* Parameters and buffers of a checkpoint's model (the best-validation ones,
 * as training ends). */
typedef struct blocks {
    dsv_model *m;
    dsv_dtype dt;
    size_t esz;
    int64_t np, nb;
    const void *p, *b;
} blocks;

static blocks load(const char *ck)
{
    blocks k = {0};
    TU_OK(dsv_checkpoint_load_model(ck, &k.m));
    k.dt = dsv_model_dtype(k.m);
    k.esz = dsv_dtype_size(k.dt);
    k.np = dsv_model_num_params(k.m);
    k.nb = dsv_model_num_buffers(k.m);
    k.p = dsv_model_params(k.m);
    k.b = dsv_model_buffers(k.m);
    return k;
}

/* ||a - b|| / ||a|| over n values of dtype dt. */
static double rel_diff(dsv_dtype dt, const void *a, const void *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = dt == DSV_F64 ? ((const double *)a)[i] : ((const float *)a)[i];
        double y = dt == DSV_F64 ? ((const double *)b)[i] : ((const float *)b)[i];
        num += (x - y) * (x - y);
        den += x * x;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The parameters (and buffers) of two checkpoints agree within tol. */
static void expect_close(const char *ck1, const char *ck2, double tol, bool buffers)
{
    blocks a = load(ck1), b = load(ck2);
    assert_int_equal(a.np, b.np);
    assert_int_equal(a.dt, b.dt);
    double e = rel_diff(a.dt, a.p, b.p, a.np);
    if (!(e <= tol))
        fail_msg("%s vs %s: parameters differ by %g (relative), more than %g", ck1, ck2, e,
                 tol);
    if (buffers) {
        assert_int_equal(a.nb, b.nb);
        e = rel_diff(a.dt, a.b, b.b, a.nb);
        if (!(e <= tol))
            fail_msg("%s vs %s: running statistics differ by %g, more than %g", ck1, ck2, e,
                     tol);
    }
    dsv_model_destroy(a.m);
    dsv_model_destroy(b.m);
}

static void expect_same_bits(const char *ck1, const char *ck2)
{
    blocks a = load(ck1), b = load(ck2);
    assert_int_equal(a.np, b.np);
    assert_int_equal(a.nb, b.nb);
    assert_memory_equal(a.p, b.p, (size_t)a.np * a.esz);
    if (a.nb)
        assert_memory_equal(a.b, b.b, (size_t)a.nb * a.esz);
    dsv_model_destroy(a.m);
    dsv_model_destroy(b.m);
}

static const char bn_net[] = "[net]\nchannels=1\nheight=8\nwidth=8\nclasses=10\ninit=he\n\n"
                             "[conv]\nfilters=8\nsize=3\npad=1\n\n"
                             "[spatial_batchnorm]\n\n[relu]\n\n"
                             "[max_pool]\nsize=2\nstride=2\n\n"
                             "[affine]\noutputs=classes\n\n[softmax_loss]\n";

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", tu_scratch("dist"));
    gen_dir(g_dir);
    snprintf(g_data, sizeof(g_data), "mnist:%s", g_dir);
    /* 1200 records: 120 validation, 1080 training (--train-size 1000) */
    if (gen_idx(g_dir, "train", 0, 1200, 8, 8, 0) || gen_idx(g_dir, "t10k", 1, 30, 8, 8, 0) ||
        gen_write(path_in("bn.cfg"), bn_net, sizeof(bn_net) - 1))
        return -1;
    return 0;
}

/* 2 ranks x 25 images against 1 process x 50; twice on 2 ranks. */
static void test_equivalence(void **state)
{
    (void)state;
    TRAIN_OK(0, "--num-epochs 1 --checkpoint %s", path_in("eq1.ckpt"));
    TRAIN_OK(2, "--num-epochs 1 --checkpoint %s", path_in("eq2.ckpt"));
    TRAIN_OK(2, "--num-epochs 1 --checkpoint %s", path_in("eq2b.ckpt"));
    expect_close(path_in("eq1.ckpt"), path_in("eq2.ckpt"), 1e-5, false);
    expect_same_bits(path_in("eq2.ckpt"), path_in("eq2b.ckpt"));
    /* a bucket per parameter (tiny buckets) sums the same values */
    TRAIN_OK(2, "--num-epochs 1 --bucket-mb 0.0001 --checkpoint %s", path_in("eq2c.ckpt"));
    expect_same_bits(path_in("eq2.ckpt"), path_in("eq2c.ckpt"));
}

/* Spatial batch norm: statistics over both ranks behave as one process;
 * per-rank statistics do not. In float64 with adam: on this net in float32,
 * adam turns rounding into differences of about 2e-4 after 20 steps, as
 * much between one process's naive and fast kernels as between 1 and 2
 * ranks; float32 is checked with sgd. */
static void test_sync_batchnorm(void **state)
{
    (void)state;
    char net[4400];
    snprintf(net, sizeof(net), "--model %s --num-epochs 1 --dtype float64", path_in("bn.cfg"));
    TRAIN_OK(0, "%s --checkpoint %s", net, path_in("bn1.ckpt"));
    TRAIN_OK(2, "%s --checkpoint %s", net, path_in("bn2.ckpt"));
    TRAIN_OK(2, "%s --checkpoint %s", net, path_in("bn2b.ckpt"));
    expect_close(path_in("bn1.ckpt"), path_in("bn2.ckpt"), 1e-5, true);
    expect_same_bits(path_in("bn2.ckpt"), path_in("bn2b.ckpt"));
    /* the batch schedule runs batch norm between barriers: same sums */
    TRAIN_OK(2, "%s --threads 2 --schedule batch --checkpoint %s", net, path_in("bn2s.ckpt"));
    expect_close(path_in("bn1.ckpt"), path_in("bn2s.ckpt"), 1e-5, true);
    TRAIN_OK(0, "%s --dtype float32 --update-rule sgd --learning-rate 1e-2 --checkpoint %s",
             net, path_in("bn1f.ckpt"));
    TRAIN_OK(2, "%s --dtype float32 --update-rule sgd --learning-rate 1e-2 --checkpoint %s",
             net, path_in("bn2f.ckpt"));
    expect_close(path_in("bn1f.ckpt"), path_in("bn2f.ckpt"), 1e-5, true);
    TRAIN_OK(2, "%s --bn-stats local --checkpoint %s", net, path_in("bnl.ckpt"));
    blocks a = load(path_in("bn1.ckpt")), b = load(path_in("bnl.ckpt"));
    double e = rel_diff(a.dt, a.p, b.p, a.np);
    if (!(e > 1e-4))
        fail_msg("per-rank batch statistics gave the one-process parameters (%g)", e);
    dsv_model_destroy(a.m);
    dsv_model_destroy(b.m);
}

/* A checkpoint of 2 ranks continues on 1, and one of 1 on 2, as a straight
 * run of 2 epochs. */
static void test_resume_other_ranks(void **state)
{
    (void)state;
    TRAIN_OK(0, "--num-epochs 2 --checkpoint %s", path_in("r_straight.ckpt"));
    TRAIN_OK(2, "--num-epochs 1 --checkpoint %s", path_in("r_21.ckpt"));
    TRAIN_OK(0, "--num-epochs 2 --resume %s", path_in("r_21.ckpt"));
    expect_close(path_in("r_straight.ckpt"), path_in("r_21.ckpt"), 1e-5, false);
    TRAIN_OK(0, "--num-epochs 1 --checkpoint %s", path_in("r_12.ckpt"));
    TRAIN_OK(2, "--num-epochs 2 --resume %s", path_in("r_12.ckpt"));
    expect_close(path_in("r_straight.ckpt"), path_in("r_12.ckpt"), 1e-5, false);
}

/* SIGKILL to rank 1 after the first checkpoint: the job ends with an error
 * within bounded time and the checkpoint loads. */
static void test_dead_rank(void **state)
{
    (void)state;
    const char *ck = path_in("dead.ckpt"), *pidf = path_in("rank1.pid");
    unlink(ck);
    unlink(pidf);
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "%s " MPIRUN_OPTS " -np 2 sh -c 'if [ "
             "\"$OMPI_COMM_WORLD_RANK\" = 1 ]; then echo $$ > %s; fi; exec %s train --data %s "
             "%s --num-epochs 1000 --checkpoint %s'",
             getenv("MPIRUN"), pidf, getenv("DASECV"), g_data, COMMON, ck);
    pid_t job = spawn_sh(cmd);
    struct stat sb;
    double t0 = now_s();
    while (stat(ck, &sb) != 0) {
        if (now_s() - t0 > 60) {
            kill(-job, SIGKILL);
            waitpid(job, NULL, 0);
            fail_msg("no checkpoint after 60 s");
        }
        usleep(20000);
    }
    char pid[64];
    slurp(pidf, pid, sizeof(pid));
    assert_true(atoi(pid) > 0);
    assert_int_equal(kill((pid_t)atoi(pid), SIGKILL), 0);
    double t1 = now_s();
    int rc = wait_for(job, 60, "the job after a rank was killed");
    printf("# job ended %.1f s after the kill, status %d\n", now_s() - t1, rc);
    assert_int_not_equal(rc, 0);
    blocks k = load(ck); /* the last checkpoint is whole */
    assert_true(k.np > 0);
    dsv_model_destroy(k.m);
}

/* Rank 1 stops (SIGSTOP) without dying: rank 0's watchdog ends the job
 * after --dist-timeout seconds with a message. */
static void test_hung_rank(void **state)
{
    (void)state;
    const char *ck = path_in("hung.ckpt"), *pidf = path_in("rank1.pid");
    unlink(ck);
    unlink(pidf);
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "%s " MPIRUN_OPTS " -np 2 sh -c 'if [ "
             "\"$OMPI_COMM_WORLD_RANK\" = 1 ]; then echo $$ > %s; fi; exec %s train --data %s "
             "%s --num-epochs 1000 --dist-timeout 3 --checkpoint %s'",
             getenv("MPIRUN"), pidf, getenv("DASECV"), g_data, COMMON, ck);
    pid_t job = spawn_sh(cmd);
    struct stat sb;
    double t0 = now_s();
    while (stat(ck, &sb) != 0) {
        if (now_s() - t0 > 60) {
            kill(-job, SIGKILL);
            waitpid(job, NULL, 0);
            fail_msg("no checkpoint after 60 s");
        }
        usleep(20000);
    }
    char pid[64];
    slurp(pidf, pid, sizeof(pid));
    assert_true(atoi(pid) > 0);
    assert_int_equal(kill((pid_t)atoi(pid), SIGSTOP), 0);
    double t1 = now_s();
    int rc = wait_for(job, 60, "the job after a rank was stopped");
    printf("# job ended %.1f s after the stop, status %d\n", now_s() - t1, rc);
    assert_int_not_equal(rc, 0);
    if (!strstr(g_err, "waited 3 s for the other ranks"))
        fail_msg("no watchdog message:\n%s", g_err);
    blocks k = load(ck);
    assert_true(k.np > 0);
    dsv_model_destroy(k.m);
}

/* Rank 1 cannot read its data: every rank stops, with the reason. */
static void test_bad_data_on_one_rank(void **state)
{
    (void)state;
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "%s " MPIRUN_OPTS " -np 2 sh -c 'D=%s; if [ "
             "\"$OMPI_COMM_WORLD_RANK\" = 1 ]; then D=mnist:%s/missing; fi; exec %s train "
             "--data $D %s --num-epochs 1'",
             getenv("MPIRUN"), g_data, g_dir, getenv("DASECV"), COMMON);
    int rc = wait_for(spawn_sh(cmd), 60, "a job with a rank without data");
    assert_int_not_equal(rc, 0);
    if (!strstr(g_err, "missing"))
        fail_msg("no message names the missing data:\n%s", g_err);
}

/* --save-plan under mpirun: rank 0 alone writes it (every rank once wrote
 * the same file, and their different decisions mixed in it), and it
 * replays on 2 ranks and on 1. Batch norm and pooling under auto make
 * oneDNN implementation choices and backend decisions. */
static void test_plan_saved_once(void **state)
{
    (void)state;
    const char *pl = path_in("two.plan"), *cfg = path_in("bn.cfg");
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs("[net]\n[conv]\nfilters=8\nsize=3\npad=1\n[spatial_batchnorm]\n[relu]\n"
          "[max_pool]\nsize=2\nstride=2\n[affine]\noutputs=classes\n[softmax_loss]\n",
          f);
    assert_int_equal(fclose(f), 0);
    unlink(pl);
    /* rank 1 is given a path it cannot write: only rank 0 may try */
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "%s " MPIRUN_OPTS " -np 2 sh -c 'P=%s; if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then "
             "P=%s/no-such-dir/rank1.plan; fi; exec %s train --data %s %s --model %s "
             "--num-epochs 1 --save-plan $P'",
             getenv("MPIRUN"), pl, g_dir, getenv("DASECV"), g_data, COMMON, cfg);
    if (wait_for(spawn_sh(cmd), 120, "a job saving its plan") != 0)
        fail_msg("saving the plan on 2 ranks failed:\n%s", g_err);
    TRAIN_OK(2, "--model %s --num-epochs 1 --plan %s", cfg, pl);
    TRAIN_OK(0, "--model %s --num-epochs 1 --plan %s", cfg, pl);
}

/* Bad options under mpirun are usage errors on every rank. */
static void test_bad_options(void **state)
{
    (void)state;
    assert_int_equal(train(2, "--bn-stats both"), 2);
    assert_non_null(strstr(g_err, "--bn-stats must be global or local"));
    assert_int_equal(train(2, "--bucket-mb 0"), 2);
    /* A batch smaller than the ranks cannot be split: every rank says so,
       and they agree to end through MPI_Finalize with status 1 (three racing
       MPI_Aborts once ended a loaded run under AddressSanitizer with 139) */
    int rc = train(3, "--batch-size 2 --num-epochs 1");
    if (rc != 1)
        fail_msg("the job ended with status %d, not 1; its stderr:\n%s", rc, g_err);
    assert_non_null(strstr(g_err, "cannot be split across 3 processes"));
    assert_null(strstr(g_err, "MPI_ABORT"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equivalence),
        cmocka_unit_test(test_sync_batchnorm),
        cmocka_unit_test(test_resume_other_ranks),
        cmocka_unit_test(test_dead_rank),
        cmocka_unit_test(test_hung_rank),
        cmocka_unit_test(test_bad_data_on_one_rank),
        cmocka_unit_test(test_plan_saved_once),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
