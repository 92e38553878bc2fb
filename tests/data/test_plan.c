/*
 * Execution plans and `dasecv bench` end to end, through the dasecv binary
 * ($DASECV) on a generated mini dataset: a run resumed from a checkpoint in
 * a second process takes the first one's timed decisions and ends
 * byte-identical to an uninterrupted run; a bad plan is refused; bench
 * --course and bench --model print every cell.
 *
 * The resume check forces decisions that timing would not make (oneDNN's
 * reference implementations, the other schedule), so a resumed run that
 * timed afresh instead of reusing the checkpoint's plan would differ.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gen.h"
#include "testutil.h"

static char g_dir[4096], g_data[4200], g_out[4200], g_err[4200], g_model[4200];
static char g_stdout[1 << 16], g_stderr[1 << 16];

static const char *path_in(const char *name)
{
    static char buf[16][4200]; /* a test holds at most 16 paths at once */
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", g_dir, name);
    return buf[k];
}

/* The whole file, malloc'ed and NUL-terminated; *n its size. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    size_t r = fread(p, 1, (size_t)len, f);
    fclose(f);
    p[r] = '\0';
    if (n)
        *n = r;
    return p;
}

static void slurp_into(const char *path, char *buf, size_t n)
{
    size_t len;
    char *p = slurp(path, &len);
    snprintf(buf, n, "%s", p);
    free(p);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs $DASECV args... with stdout/stderr captured; returns the exit status. */
static int run(const char *const *args)
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
        int o = open(g_out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int e = open(g_err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dup2(o, 1);
        dup2(e, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        fail_msg("waitpid failed");
    slurp_into(g_out, g_stdout, sizeof(g_stdout));
    slurp_into(g_err, g_stderr, sizeof(g_stderr));
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static void expect_rc(int got, int want)
{
    if (got != want)
        fail_msg("exit %d, expected %d\nstdout: %s\nstderr: %s", got, want, g_stdout,
                 g_stderr);
}

static void expect_in(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' not in:\n%s", needle, hay ? hay : "(no text)");
}

/* Two convolutions, the second on 6 channels, which auto gives oneDNN; relu,
 * batch norm and max pooling, whose backend auto times. */
static const char model_text[] = "[net]\n[conv]\nfilters=6\nsize=3\npad=1\n[relu]\n"
                                 "[conv]\nfilters=6\nsize=3\npad=1\n[spatial_batchnorm]\n"
                                 "[relu]\n[max_pool]\n"
                                 "[affine]\noutputs=classes\n[softmax_loss]\n";

static int setup(void **st)
{
    (void)st;
    snprintf(g_dir, sizeof(g_dir), "%s", tu_scratch("plan"));
    gen_dir(g_dir);
    const char *d = path_in("mini");
    gen_dir(d);
    if (gen_idx(d, "train", 0, 160, 8, 8, 1) || gen_idx(d, "t10k", 1, 20, 8, 8, 1))
        return -1;
    snprintf(g_data, sizeof(g_data), "mnist:%s", d);
    snprintf(g_out, sizeof(g_out), "%s", path_in("stdout.txt"));
    snprintf(g_err, sizeof(g_err), "%s", path_in("stderr.txt"));
    snprintf(g_model, sizeof(g_model), "%s", path_in("net.cfg"));
    spit(g_model, model_text);
    return 0;
}

#define TRAIN(...)                                                                       \
    RUN("train", "--data", g_data, "--model", g_model, "--batch-size", "20",  \
        "--update-rule", "adam", "--num-train-samples", "40", "--seed", "5", "--backend", \
        "auto", "--schedule", "auto", "--threads", "2", "--quiet", __VA_ARGS__)

/* The plan text with every backend choice renamed to oneDNN's reference
 * implementation, every schedule flipped and every timed backend swapped
 * (fast for onednn and back): decisions no timing makes. */
static char *forced(const char *plan)
{
    char *out = malloc(strlen(plan) * 2 + 64);
    assert_non_null(out);
    out[0] = '\0';
    char *copy = strdup(plan);
    int choices = 0, schedules = 0, backends = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "backend ", 8)) {
            char *name = strrchr(line, ' ') + 1;
            bool fast = !strcmp(name, "fast");
            *name = '\0';
            strcat(strcat(out, line), fast ? "onednn\n" : "fast\n");
            backends++;
        } else if (!strncmp(line, "choice ", 7)) {
            *strrchr(line, ' ') = '\0';
            strcat(strcat(out, line), " ref:any\n");
            choices++;
        } else if (!strncmp(line, "schedule ", 9)) {
            char *name = strrchr(line, ' ') + 1;
            bool layer = !strcmp(name, "layer");
            *name = '\0';
            strcat(strcat(out, line), layer ? "batch\n" : "layer\n");
            schedules++;
        } else {
            strcat(strcat(out, line), "\n");
        }
    }
    free(copy);
    assert_true(schedules >= 1);
    if (strstr(plan, "choice onednn"))
        assert_true(choices >= 3); /* conv2: forward, backward data, weights */
    /* relu, batch norm and max pool, trained and tested */
    if (strstr(plan, "choice onednn"))
        assert_true(backends >= 6);
    return out;
}

static void test_resume_reuses_plan(void **st)
{
    (void)st;
    const char *p0 = path_in("timed.plan");
    expect_rc(TRAIN("--num-epochs", "1", "--save-plan", p0), 0);
    char *timed = slurp(p0, NULL);
    expect_in(timed, "dasecv-plan 1\nmodel 8 ");
    expect_in(timed, "\nschedule 20 2 ");
    if (dsv_backend_available(DSV_BACKEND_ONEDNN)) {
        expect_in(timed, "\nbackend relu 0,1,");
        expect_in(timed, "\nbackend max_pool 0,1,");
        expect_in(timed, "\nbackend spatial_batchnorm 0,1,");
    }
    char *flipped = forced(timed);
    const char *pf = path_in("forced.plan"), *pc = path_in("complete.plan");
    spit(pf, flipped);
    /* The flipped schedule can meet configurations the timed run did not (a
       test-mode pass on the whole batch instead of per-thread slices); one
       run on the forced plan times those, and its plan, which keeps every
       forced line, is the one replayed below: nothing is left to time, so no
       two processes can time the same configuration differently. */
    expect_rc(TRAIN("--num-epochs", "1", "--plan", pf, "--save-plan", pc), 0);
    char *plan = slurp(pc, NULL);
    for (const char *line = flipped, *eol; (eol = strchr(line, '\n')); line = eol + 1) {
        char one[256];
        snprintf(one, sizeof(one), "%.*s\n", (int)(eol - line), line);
        expect_in(plan, one);
    }

    /* uninterrupted: two epochs on the complete plan */
    const char *a = path_in("a.ckpt"), *b = path_in("b.ckpt"), *pb = path_in("b.plan");
    expect_rc(TRAIN("--num-epochs", "2", "--plan", pc, "--checkpoint", a), 0);
    /* one epoch, then a second process resumes without --plan */
    expect_rc(TRAIN("--num-epochs", "1", "--plan", pc, "--checkpoint", b), 0);
    expect_rc(RUN("train", "--data", g_data, "--resume", b, "--num-epochs", "2", "--backend",
                  "auto", "--schedule", "auto", "--threads", "2", "--quiet", "--save-plan",
                  pb),
              0);
    /* the resumed run decided nothing new: its plan is the one it was given */
    char *resumed = slurp(pb, NULL);
    assert_string_equal(resumed, plan);
    size_t na, nb;
    char *ba = slurp(a, &na), *bb = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    free(resumed);
    free(plan);
    free(flipped);
    free(timed);
}

static void test_bad_plans(void **st)
{
    (void)st;
    const char *p = path_in("bad.plan");
    spit(p, "hello\n");
    expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
    expect_in(g_stderr, "bad.plan:1: not a dasecv plan");
    spit(p, "dasecv-plan 1\nmodel 3 100 0123456789abcdef\n");
    expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
    expect_in(g_stderr, "bad.plan:2: the plan was made for another model");
    /* the right model, a bad line */
    const char *good = path_in("good.plan");
    expect_rc(TRAIN("--num-epochs", "1", "--save-plan", good), 0);
    char *text = slurp(good, NULL);
    char *bad = malloc(strlen(text) + 128);
    strcat(strcpy(bad, text), "schedule 20 2 sideways\n");
    spit(p, bad);
    expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
    expect_in(g_stderr, "the schedule must be layer or batch");
    strcat(strcpy(bad, text), "choice onednn 1,x jit:avx2\n");
    spit(p, bad);
    expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
    expect_in(g_stderr, "the key must be");
    /* backend lines: malformed, an op whose backend is not timed, naive */
    const char *bad_backend[][2] = {
        {"backend relu 0,1,2 fast\n", "the key must be 5 to"},
        {"backend relu 0,1,2,4,20,x,8,8 fast\n", "the key must be 5 to"},
        {"backend relu 0,1,2,4,20,6,8,8\n", "expected 'backend OP KEY"},
        {"backend conv 0,1,2,4,20,6,8,8 fast\n", "conv is not an op whose backend is timed"},
        {"backend nosuch 0,1,2,4,20,6,8,8 fast\n", "unknown op"},
        {"backend relu 0,1,2,4,20,6,8,8 naive\n", "the backend must be fast or onednn"},
        {"backend relu 0,1,2,4,20,6,8,8 gpu\n", "unknown backend"},
    };
    for (size_t i = 0; i < sizeof(bad_backend) / sizeof(bad_backend[0]); i++) {
        strcat(strcpy(bad, text), bad_backend[i][0]);
        spit(p, bad);
        expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
        expect_in(g_stderr, "bad.plan:");
        expect_in(g_stderr, bad_backend[i][1]);
    }
    if (!dsv_backend_available(DSV_BACKEND_ONEDNN)) {
        strcat(strcpy(bad, text), "backend relu 0,1,2,4,20,6,8,8 onednn\n");
        spit(p, bad);
        expect_rc(TRAIN("--num-epochs", "1", "--plan", p), 2);
        expect_in(g_stderr, "backend onednn is not built in");
    }
    expect_rc(TRAIN("--num-epochs", "1", "--plan", path_in("missing.plan")), 2);
    expect_in(g_stderr, "cannot open plan");
    free(bad);
    free(text);
}

static void test_bench_course(void **st)
{
    (void)st;
    expect_rc(RUN("bench", "--course", "--reps", "1", "--threads", "1"), 0);
    const char *cells[] = {"conv forward", "conv backward", "max pool forward",
                           "max pool backward"};
    for (int i = 0; i < 4; i++) {
        const char *row = strstr(g_stdout, cells[i]);
        if (!row)
            fail_msg("no '%s' row in:\n%s", cells[i], g_stdout);
        /* naive, fast, onednn, two speedups and two differences: 7 cells */
        const char *eol = strchr(row, '\n');
        int fields = 0;
        for (const char *c = strstr(row, "  "); c && c < eol; c++)
            fields += c[0] == ' ' && c[1] != ' ';
        assert_int_equal(fields, 7);
        expect_in(row, "x ");
    }
    expect_rc(RUN("bench"), 2);
    expect_in(g_stderr, "give --course or --model");
    expect_rc(RUN("bench", "--course", "--reps", "0"), 2);
}

static void test_bench_model(void **st)
{
    (void)st;
    expect_rc(RUN("bench", "--model", g_model, "--input", "1,8,8", "--classes",
                  "3", "--batch-size", "4", "--reps", "1", "--threads", "1"),
              0);
    const char *nodes[] = {"conv1", "relu2", "conv3", "spatial_batchnorm4", "relu5",
                           "max_pool6", "affine7", "softmax_loss8"};
    for (int i = 0; i < 8; i++)
        expect_in(g_stdout, nodes[i]);
    expect_in(g_stdout, "sum of nodes");
    expect_in(g_stdout, "training step");
    expect_in(g_stdout, "naive ");
    expect_in(g_stdout, "auto ");
    expect_rc(RUN("bench", "--model", path_in("nothere.cfg")), 1); /* as describe */
    expect_in(g_stderr, "cannot open model file");
    /* a plan made for another model */
    expect_rc(RUN("bench", "--model", "lenet", "--batch-size", "2", "--reps", "1", "--plan",
                  path_in("timed.plan")),
              2);
    expect_in(g_stderr, "another model");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_reuses_plan),
        cmocka_unit_test(test_bad_plans),
        cmocka_unit_test(test_bench_course),
        cmocka_unit_test(test_bench_model),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
