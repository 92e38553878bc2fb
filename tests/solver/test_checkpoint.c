/*
 * Checkpoint files: round trip, atomic replacement under SIGKILL, clear errors
 * for corrupt, truncated, foreign, future-version and mismatched files, and
 * write failures that leave the previous checkpoint intact.
 */
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "solver_data.h"

enum { C = 3, H = 8, W = 8, K = 4 };
/* Byte offsets in a version 3 file (the same as in version 2) of a model made from the course's options
 * (docs/checkpoint.md): the course configuration starts at 64, the model
 * text's length follows it. */
enum { OFF_NUM_CLASSES = 84, OFF_NUM_FILTERS = 112, OFF_TEXT_LEN = 212 };

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The parameter count's offset: after the text, the preprocessing flag (0
 * here) and the class-name count (0). */
static size_t off_nparams(const uint8_t *p)
{
    return OFF_TEXT_LEN + 8 + (size_t)get_le64(p + OFF_TEXT_LEN) + 4 + 4;
}

typedef struct fixture {
    gen_data tr, va;
    dsv_model *m;
    dsv_solver *s;
} fixture;

/* Data and a small ThreeLayerConvNet; the solver is made by the caller. */
static void fixture_make(fixture *f, int64_t ntrain)
{
    f->tr = gen_make(ntrain, C, H, W, K, 1, 30);
    f->va = gen_make(10, C, H, W, K, 2, 30);
    dsv_model_config mc = dsv_model_config_default(DSV_MODEL_THREELAYER);
    mc.input_dim[0] = C, mc.input_dim[1] = H, mc.input_dim[2] = W;
    mc.num_classes = K, mc.num_filters = 4, mc.filter_size = 3, mc.hidden_dim = 8;
    mc.weight_scale = 1e-2, mc.seed = 3;
    TU_OK(dsv_model_create(&f->m, &mc));
    f->s = NULL;
}

static void fixture_free(fixture *f)
{
    dsv_solver_destroy(f->s);
    dsv_model_destroy(f->m);
    gen_free(&f->tr);
    gen_free(&f->va);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(len ? (size_t)len : 1);
    assert_int_equal(fread(p, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

static bool stop_after_7(const dsv_progress *p, void *user)
{
    (void)user;
    return p->iteration < 7;
}

/* A solver 7 steps in (mid-epoch 2 of 4), through the public API. */
static void fixture_trained(fixture *f)
{
    fixture_make(f, 30);
    dsv_solver_config c = dsv_solver_config_default();
    c.optim = dsv_optim_config_default(DSV_UPDATE_ADAM);
    c.batch_size = 4;
    c.num_epochs = 4;
    c.num_train_samples = 10;
    c.on_progress = stop_after_7;
    TU_OK(dsv_solver_create(&f->s, f->m, &f->tr.s, &f->va.s, &c));
    TU_OK(dsv_solver_train(f->s));
    assert_int_equal(dsv_solver_iteration(f->s), 7);
}

static void test_round_trip(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    char path[512];
    snprintf(path, sizeof(path), "%s", tu_scratch("roundtrip.ckpt"));
    TU_OK(dsv_checkpoint_save(f.s, path));

    dsv_model *m;
    dsv_solver *s;
    TU_OK(dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL));
    assert_int_equal(dsv_solver_iteration(s), 7);
    assert_int_equal(dsv_solver_epoch(s), 1);
    size_t nb = (size_t)dsv_model_num_params(m) * sizeof(float);
    assert_int_equal(dsv_model_num_params(m), dsv_model_num_params(f.m));
    assert_memory_equal(dsv_model_params(m), dsv_model_params(f.m), nb);
    const double *l1, *l2, *t1, *t2, *v1, *v2;
    assert_int_equal(dsv_solver_loss_history(s, &l1), 7);
    dsv_solver_loss_history(f.s, &l2);
    assert_memory_equal(l1, l2, 7 * sizeof(double));
    assert_int_equal(dsv_solver_acc_history(s, &t1, &v1), 1);
    dsv_solver_acc_history(f.s, &t2, &v2);
    assert_true(t1[0] == t2[0] && v1[0] == v2[0]);
    assert_true(dsv_solver_best_val_acc(s) == dsv_solver_best_val_acc(f.s));
    /* saving the loaded state gives the same bytes */
    char path2[512];
    snprintf(path2, sizeof(path2), "%s", tu_scratch("roundtrip2.ckpt"));
    TU_OK(dsv_checkpoint_save(s, path2));
    size_t n1, n2;
    uint8_t *a = slurp(path, &n1), *b = slurp(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);

    /* the model alone, for inference */
    TU_OK(dsv_checkpoint_load_model(path, &m));
    assert_int_equal(dsv_model_config_of(m)->num_filters, 4);
    assert_int_equal(dsv_model_num_params(m), dsv_model_num_params(f.m));
    dsv_model_destroy(m);
    fixture_free(&f);
}

/* Error of loading bytes p[0..n) as a checkpoint; the message must name the
 * file and contain want. */
static void expect_load_error(const char *path, const uint8_t *p, size_t n,
                              dsv_status status, const char *want, const fixture *f)
{
    spit(path, p, n);
    dsv_model *m = (dsv_model *)1;
    dsv_solver *s = (dsv_solver *)1;
    dsv_status got = dsv_checkpoint_load(path, &m, &s, &f->tr.s, &f->va.s, NULL);
    if (got != status || !strstr(dsv_errmsg(), want) || !strstr(dsv_errmsg(), path))
        fail_msg("expected %s with '%s', got %s: %s", dsv_status_name(status), want,
                 dsv_status_name(got), dsv_errmsg());
    assert_null(m);
    assert_null(s);
    m = (dsv_model *)1;
    got = dsv_checkpoint_load_model(path, &m);
    if (status == DSV_CORRUPT)
        assert_int_equal(got, DSV_CORRUPT);
    if (got != DSV_OK)
        assert_null(m);
    else
        dsv_model_destroy(m);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes the trailing CRC-32, as a forger would. */
static void reseal(uint8_t *p, size_t n)
{
    put_le32(p + n - 4, (uint32_t)crc32(0, p, (uInt)(n - 4)));
}

static void test_corrupt_files(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    char good[512], path[512];
    snprintf(good, sizeof(good), "%s", tu_scratch("good.ckpt"));
    snprintf(path, sizeof(path), "%s", tu_scratch("bad.ckpt"));
    TU_OK(dsv_checkpoint_save(f.s, good));
    size_t n;
    uint8_t *orig = slurp(good, &n), *p = malloc(n);

    /* the unmodified bytes load: the checker below can pass */
    memcpy(p, orig, n);
    spit(path, p, n);
    dsv_model *m;
    dsv_solver *s;
    TU_OK(dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);

    /* one flipped bit anywhere after the header: the checksum */
    size_t spots[] = {40, n / 3, n / 2, n - 40, n - 1};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        memcpy(p, orig, n);
        p[spots[i]] ^= 0x10;
        expect_load_error(path, p, n, DSV_CORRUPT, "checksum", &f);
    }
    /* truncation, at several lengths */
    memcpy(p, orig, n);
    expect_load_error(path, p, n - 1, DSV_CORRUPT, "truncated", &f);
    expect_load_error(path, p, n / 2, DSV_CORRUPT, "truncated", &f);
    expect_load_error(path, p, 30, DSV_CORRUPT, "truncated", &f);
    expect_load_error(path, p, 3, DSV_CORRUPT, "not a dasecv checkpoint", &f);
    expect_load_error(path, p, 0, DSV_CORRUPT, "not a dasecv checkpoint", &f);
    /* appended bytes */
    uint8_t *longer = calloc(n + 16, 1);
    memcpy(longer, orig, n);
    expect_load_error(path, longer, n + 16, DSV_CORRUPT, "too long", &f);
    free(longer);
    /* another format */
    memcpy(p, orig, n);
    memcpy(p, "\x93NUMPY", 6);
    expect_load_error(path, p, n, DSV_CORRUPT, "not a dasecv checkpoint", &f);
    /* a future version, and version 0 */
    memcpy(p, orig, n);
    put_le32(p + 8, 4);
    expect_load_error(path, p, n, DSV_CORRUPT, "version 4", &f);
    put_le32(p + 8, 0);
    expect_load_error(path, p, n, DSV_CORRUPT, "version 0", &f);

    /* A well-sealed file whose parameter count is absurd: refused before
       anything of that size is allocated (offsets in docs/checkpoint.md). */
    size_t at = off_nparams(orig);
    memcpy(p, orig, n);
    put_le64(p + at, (uint64_t)1 << 60);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "more than the file holds", &f);
    put_le64(p + at, (uint64_t)-1);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "is negative (-1)", &f);
    /* a sealed file whose model is smaller than its parameters: the text
       check; larger: refused before the model's blocks are allocated */
    memcpy(p, orig, n);
    put_le32(p + OFF_NUM_FILTERS, 3); /* 4 -> 3 */
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "model text differs", &f);
    put_le32(p + OFF_NUM_FILTERS, 60000);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "more than the", &f);
    /* a sealed file with a nonsense model configuration */
    memcpy(p, orig, n);
    put_le32(p + OFF_NUM_CLASSES, (uint32_t)-3);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "invalid model configuration", &f);
    /* the whole message: the reason follows the prefix, once */
    char want[1024];
    snprintf(want, sizeof(want),
             "checkpoint %s holds an invalid model configuration: "
             "threelayer: num_classes = -3 must be 1..%d", path, 65536);
    assert_string_equal(dsv_errmsg(), want);

    /* mismatched use: another training set than the one trained on */
    gen_data other = gen_make(31, C, H, W, K, 1, 30);
    m = NULL, s = NULL;
    assert_int_equal(dsv_checkpoint_load(good, &m, &s, &other.s, NULL, NULL), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "31"));
    gen_free(&other);
    other = gen_make(30, C, H, W + 2, K, 1, 30);
    assert_int_equal(dsv_checkpoint_load(good, &m, &s, &other.s, NULL, NULL), DSV_INVALID);
    assert_null(m);
    gen_free(&other);

    /* missing file */
    assert_int_equal(dsv_checkpoint_load_model(tu_scratch("no-such.ckpt"), &m), DSV_IO);
    assert_non_null(strstr(dsv_errmsg(), "no-such.ckpt"));
    free(p), free(orig);
    fixture_free(&f);
}

/* Forged files: random bytes changed in the structured part (configuration,
 * counts, settings, counters) and the checksum recomputed, so every check
 * after the checksum is reached. Each load must fail cleanly or succeed; the
 * sanitizer builds check that nothing is read out of bounds. */
static void test_forged_fields(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    char good[512], path[512];
    snprintf(good, sizeof(good), "%s", tu_scratch("forge_good.ckpt"));
    snprintf(path, sizeof(path), "%s", tu_scratch("forge.ckpt"));
    TU_OK(dsv_checkpoint_save(f.s, good));
    size_t n;
    uint8_t *orig = slurp(good, &n), *p = malloc(n);
    /* the structured fields: the header's model configuration and counts,
       and the tail after the parameter blocks (optimizer, solver, counters,
       histories): the last 400 bytes minus the checksum */
    tu_rng r = {99};
    int failures = 0;
    for (int round = 0; round < 300; round++) {
        memcpy(p, orig, n);
        int flips = 1 + (int)(tu_next(&r) % 3);
        for (int i = 0; i < flips; i++) {
            size_t at = tu_next(&r) % 2 ? 24 + tu_next(&r) % (off_nparams(orig) + 16 - 24)
                                        : n - 4 - 1 - tu_next(&r) % 400;
            p[at] = (uint8_t)tu_next(&r);
        }
        reseal(p, n);
        spit(path, p, n);
        dsv_model *m = NULL;
        dsv_solver *s = NULL;
        dsv_status got = dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL);
        if (got == DSV_OK) {
            dsv_solver_destroy(s);
            dsv_model_destroy(m);
        } else {
            failures++;
            assert_null(m);
            assert_null(s);
            assert_true(got == DSV_CORRUPT || got == DSV_INVALID || got == DSV_NOMEM);
            if (!strstr(dsv_errmsg(), "forge.ckpt"))
                fail_msg("%s: %s", dsv_status_name(got), dsv_errmsg());
        }
        m = NULL;
        if (dsv_checkpoint_load_model(path, &m) == DSV_OK)
            dsv_model_destroy(m);
    }
    /* most changes are caught (some hit fields that are free to vary) */
    assert_true(failures > 100);
    free(p), free(orig);
    fixture_free(&f);
}

static int count_temp_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        count += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return count;
}

static void remove_temp_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char buf[1024];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(buf, sizeof(buf), "%s/%s", dir, e->d_name);
            unlink(buf);
        }
    }
    closedir(d);
}

/* A child saves checkpoints of alternating content in a loop; the parent kills
 * it with SIGKILL at random moments. Whatever the moment, the file at the
 * path is a complete checkpoint (old or new) that loads. */
static void test_atomic_under_kill(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    char path[512], dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_scratch(""));
    snprintf(path, sizeof(path), "%s", tu_scratch("killed.ckpt"));
    remove_temp_files(dir, "killed.ckpt.tmp.");
    TU_OK(dsv_checkpoint_save(f.s, path));
    tu_rng r = {77};
    for (int round = 0; round < 6; round++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            float *w = dsv_model_params(f.m);
            for (int i = 0;; i++) {
                w[0] = (float)i; /* every save has other bytes */
                if (dsv_checkpoint_save(f.s, path) != DSV_OK)
                    _exit(3);
            }
        }
        struct timespec ts = {0, (long)(2e6 + tu_uniform(&r) * 30e6)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        dsv_model *m;
        dsv_solver *s;
        TU_OK(dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL));
        assert_int_equal(dsv_solver_iteration(s), 7);
        dsv_solver_destroy(s);
        dsv_model_destroy(m);
    }
    /* A killed writer may leave its own temporary file behind, under a name
       no reader uses; it never replaces the checkpoint. */
    remove_temp_files(dir, "killed.ckpt.tmp.");
    fixture_free(&f);
}

/* A write that fails (no directory; a file size limit in a child) reports
 * DSV_IO, removes its temporary file and leaves the previous file intact. */
static void test_write_errors(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    assert_int_equal(dsv_checkpoint_save(f.s, tu_scratch("no/such/dir/x.ckpt")), DSV_IO);
    assert_non_null(strstr(dsv_errmsg(), "x.ckpt"));

    char path[512], dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_scratch(""));
    snprintf(path, sizeof(path), "%s", tu_scratch("limited.ckpt"));
    remove_temp_files(dir, "limited.ckpt.tmp.");
    TU_OK(dsv_checkpoint_save(f.s, path));
    size_t n0;
    uint8_t *before = slurp(path, &n0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1000, 1000};
        setrlimit(RLIMIT_FSIZE, &rl);
        float *w = dsv_model_params(f.m);
        w[0] += 1;
        dsv_status s = dsv_checkpoint_save(f.s, path);
        _exit(s == DSV_IO && strstr(dsv_errmsg(), "limited.ckpt") ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    size_t n1;
    uint8_t *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(count_temp_files(dir, "limited.ckpt.tmp."), 0);
    free(before), free(after);
    fixture_free(&f);
}

/* A version-1 file written by the release before model files (a course
 * configuration, fc with batch norm, 40 images of 1 x 4 x 4): it loads,
 * predicts exactly what that release predicted, resumes, and is saved again
 * as version 2. */
static void test_version1_loads(void **st)
{
    (void)st;
    char ck[512];
    snprintf(ck, sizeof(ck), "%s", tu_fixture("checkpoints/v1-fc-batchnorm.ckpt"));
    dsv_model *m;
    TU_OK(dsv_checkpoint_load_model(ck, &m));
    const dsv_model_config *mc = dsv_model_config_of(m);
    assert_non_null(mc);
    assert_int_equal(mc->kind, DSV_MODEL_FC);
    assert_int_equal(mc->normalization, DSV_NORM_BATCHNORM);
    assert_int_equal(mc->hidden_dims[1], 5);
    dsv_exec_options eo = dsv_exec_options_default();
    eo.backend = DSV_BACKEND_NAIVE;
    TU_OK(dsv_model_set_exec(m, &eo));
    dsv_tensor x, want, got;
    TU_OK(dsv_npy_load(tu_fixture("checkpoints/v1-fc-batchnorm.x.npy"), &x));
    TU_OK(dsv_npy_load(tu_fixture("checkpoints/v1-fc-batchnorm.scores.npy"), &want));
    TU_OK(dsv_tensor_init_like(&got, &want));
    TU_OK(dsv_model_scores(m, &x, &got));
    assert_memory_equal(got.data, want.data, dsv_tensor_nbytes(&want));
    dsv_model_destroy(m);

    /* the same data (the writer's generator), resumed for a third epoch */
    enum { NI = 40, CH = 1, HW = 4 };
    uint8_t img[NI * CH * HW * HW];
    int32_t lab[NI];
    uint64_t r = 7;
    for (int i = 0; i < NI * CH * HW * HW; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (uint8_t)(r >> 56);
    }
    for (int i = 0; i < NI; i++)
        lab[i] = i % 3;
    dsv_split tr = {.n = NI, .c = CH, .h = HW, .w = HW, .images = img, .labels = lab,
                    .mean = NULL, .scale = 1.0f / 255};
    dsv_solver_config sc = dsv_solver_config_default();
    sc.num_epochs = 3;
    dsv_solver *s;
    TU_OK(dsv_checkpoint_load(ck, &m, &s, &tr, &tr, &sc));
    TU_OK(dsv_model_set_exec(m, &eo));
    TU_OK(dsv_solver_train(s));
    assert_int_equal(dsv_solver_epoch(s), 3);
    const char *v2 = tu_scratch("from-v1.ckpt");
    TU_OK(dsv_checkpoint_save(s, v2));
    size_t n;
    uint8_t *bytes = slurp(v2, &n);
    assert_int_equal(bytes[8], 3); /* version 3 */
    free(bytes);
    dsv_model *m2;
    TU_OK(dsv_checkpoint_load_model(v2, &m2));
    assert_int_equal(dsv_model_config_of(m2)->kind, DSV_MODEL_FC);
    dsv_model_destroy(m2);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    dsv_tensor_free(&x);
    dsv_tensor_free(&want);
    dsv_tensor_free(&got);
}

/* A model file's network, with the data's mean image and class names, comes
 * back from a checkpoint as it was saved. */
static void test_model_file_round_trip(void **st)
{
    (void)st;
    gen_data tr = gen_make(20, 1, 6, 6, 2, 1, 30);
    dsv_model_options o = dsv_model_options_default();
    o.input_dim[0] = 1, o.input_dim[1] = o.input_dim[2] = 6, o.num_classes = 2, o.seed = 8;
    const char *text = "[net]\ninit=xavier\n[conv]\nname=c\nfilters=2\nsize=3\n"
                       "[dropout]\nkeep=0.5\n[affine]\noutputs=classes\n[svm_loss]\n";
    dsv_model *m;
    TU_OK(dsv_model_create_from_text(&m, text, "net.cfg", &o));
    float mean[36];
    for (int i = 0; i < 36; i++)
        mean[i] = (float)i * 0.5f;
    TU_OK(dsv_model_set_preprocess(m, mean, 0.25f));
    const char *names[] = {"cat", "dog"};
    TU_OK(dsv_model_set_class_names(m, 2, names));
    dsv_solver_config sc = dsv_solver_config_default();
    sc.batch_size = 5, sc.num_epochs = 1, sc.num_train_samples = 0;
    dsv_solver *s;
    TU_OK(dsv_solver_create(&s, m, &tr.s, NULL, &sc));
    TU_OK(dsv_solver_train(s));
    const char *path = tu_scratch("file-model.ckpt");
    TU_OK(dsv_checkpoint_save(s, path));
    dsv_model *m2;
    TU_OK(dsv_checkpoint_load_model(path, &m2));
    assert_null(dsv_model_config_of(m2));
    assert_string_equal(dsv_model_text(m2), text);
    assert_int_equal(dsv_model_options_of(m2)->seed, 8);
    const float *mean2;
    float scale2;
    assert_true(dsv_model_preprocess(m2, &mean2, &scale2));
    assert_memory_equal(mean2, mean, sizeof(mean));
    assert_true(scale2 == 0.25f);
    assert_string_equal(dsv_model_class_name(m2, 1), "dog");
    assert_int_equal(dsv_model_num_params(m2), dsv_model_num_params(m));
    dsv_model_destroy(m2);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);
    gen_free(&tr);
}

/* export and --init-from: a checkpoint's model saved as .npz and loaded into
 * a fresh model from the same text gives the same loss bit for bit; numpy
 * reads exactly the engine's arrays; a mismatched archive changes nothing. */
static void test_npz_round_trip(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    const char *ck = tu_scratch("npz.ckpt");
    TU_OK(dsv_checkpoint_save(f.s, ck));
    dsv_model *a, *b;
    TU_OK(dsv_checkpoint_load_model(ck, &a));
    char npz[512];
    snprintf(npz, sizeof(npz), "%s", tu_scratch("weights.npz"));
    TU_OK(dsv_model_save_npz(a, npz));
    dsv_model_config mc = *dsv_model_config_of(a);
    mc.seed = 77; /* other initial weights, replaced by the archive's */
    TU_OK(dsv_model_create(&b, &mc));
    TU_OK(dsv_model_load_npz(b, npz));
    assert_memory_equal(dsv_model_params(a), dsv_model_params(b),
                        (size_t)dsv_model_num_params(a) * sizeof(float));
    dsv_tensor x = {0}, y = {0};
    TU_OK(dsv_split_batch(&f.tr.s, NULL, 10, &x, &y, DSV_F32));
    double la, lb;
    TU_OK(dsv_model_loss(a, &x, &y, &la));
    TU_OK(dsv_model_loss(b, &x, &y, &lb));
    assert_memory_equal(&la, &lb, sizeof(double));

    /* numpy reads the same values, dtypes and shapes */
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
        for (int i = 0; i < dsv_model_num_tensors(a); i++) {
            char p[600];
            snprintf(p, sizeof(p), "%s.npy", tu_scratch(dsv_model_tensor_name(a, i)));
            dsv_tensor t = dsv_model_param(a, i);
            TU_OK(dsv_npy_save(p, &t));
        }
        char cmd[2048];
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c 'import numpy as np, sys, os\n"
                 "z = np.load(sys.argv[1]); d = os.path.dirname(sys.argv[1])\n"
                 "assert sorted(z.files) == sorted(%s), z.files\n"
                 "for n in z.files:\n"
                 "    r = np.load(os.path.join(d, n + \".npy\"))\n"
                 "    assert z[n].dtype == r.dtype and z[n].shape == r.shape, n\n"
                 "    assert np.array_equal(z[n], r), n\n' '%s'",
                 "[\"conv1.w\", \"conv1.b\", \"affine2.w\", \"affine2.b\", "
                 "\"affine3.w\", \"affine3.b\"]",
                 npz);
        assert_int_equal(system(cmd), 0);
    } else {
        printf("  numpy not available: numpy.load comparison not run\n");
    }

    /* another model's archive: refused, the model unchanged */
    dsv_model_config other = mc;
    other.hidden_dim = 9;
    dsv_model *c;
    TU_OK(dsv_model_create(&c, &other));
    size_t bytes = (size_t)dsv_model_num_params(c) * sizeof(float);
    void *before = malloc(bytes);
    memcpy(before, dsv_model_params(c), bytes);
    assert_int_equal(dsv_model_load_npz(c, npz), DSV_INVALID);
    if (!strstr(dsv_errmsg(), "'affine2.w' has shape"))
        fail_msg("%s", dsv_errmsg());
    assert_memory_equal(before, dsv_model_params(c), bytes);
    free(before);
    dsv_model_destroy(c);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_model_destroy(a);
    dsv_model_destroy(b);
    fixture_free(&f);
}

/* Where the execution plan's text starts (its u64 length is the 8 bytes
 * before): version 3 ends with it, just before the checksum. */
static size_t off_plan(const uint8_t *p, size_t n)
{
    const char magic[] = "dasecv-plan 1\n";
    for (size_t i = n - 4; i-- > 8;)
        if (!memcmp(p + i, magic, sizeof(magic) - 1) &&
            get_le64(p + i - 8) == n - 4 - i)
            return i;
    fail_msg("no execution plan at the end of the checkpoint");
    return 0;
}

/* Version 3's plan: saved (it names the model), reapplied on load, a plan
 * of another model is corruption, and a version 2 file (no plan) loads. */
static void test_plan_section(void **st)
{
    (void)st;
    fixture f;
    fixture_trained(&f);
    char good[512], path[512];
    snprintf(good, sizeof(good), "%s", tu_scratch("plan-good.ckpt"));
    snprintf(path, sizeof(path), "%s", tu_scratch("plan-bad.ckpt"));
    TU_OK(dsv_checkpoint_save(f.s, good));
    size_t n;
    uint8_t *orig = slurp(good, &n), *p = malloc(n);
    size_t at = off_plan(orig, n);
    char *text = strndup((const char *)orig + at, n - 4 - at);
    assert_non_null(strstr(text, "\nmodel "));
    char *mine;
    TU_OK(dsv_graph_plan_text(dsv_model_graph(f.m), &mine));
    assert_string_equal(text, mine); /* the model's own decisions, as they were */
    free(mine);

    /* a loaded checkpoint's model has the stored decisions */
    dsv_model *m;
    dsv_solver *s;
    memcpy(p, orig, n);
    spit(path, p, n);
    TU_OK(dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL));
    TU_OK(dsv_graph_plan_text(dsv_model_graph(m), &mine));
    assert_string_equal(text, mine);
    free(mine);
    dsv_solver_destroy(s);
    dsv_model_destroy(m);

    /* a plan for another model (one digit of the node count changed) */
    char *model = strstr((char *)p + at, "\nmodel ") + 7;
    *model = *model == '9' ? '8' : (char)(*model + 1);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "another model", &f);
    /* a plan length that runs past the end */
    memcpy(p, orig, n);
    put_le64(p + at - 8, (uint64_t)1 << 40);
    reseal(p, n);
    expect_load_error(path, p, n, DSV_CORRUPT, "execution plan runs past", &f);

    /* version 2: the same bytes without the plan section */
    size_t n2 = at - 8 + 4;
    memcpy(p, orig, at - 8);
    put_le32(p + 8, 2);
    put_le64(p + 16, n2);
    reseal(p, n2);
    spit(path, p, n2);
    TU_OK(dsv_checkpoint_load(path, &m, &s, &f.tr.s, &f.va.s, NULL));
    assert_int_equal(dsv_solver_epoch(s), dsv_solver_epoch(f.s));
    dsv_solver_destroy(s);
    dsv_model_destroy(m);

    free(text);
    free(p);
    free(orig);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_version1_loads),
        cmocka_unit_test(test_model_file_round_trip),
        cmocka_unit_test(test_npz_round_trip),
        cmocka_unit_test(test_plan_section),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_forged_fields),
        cmocka_unit_test(test_atomic_under_kill),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
