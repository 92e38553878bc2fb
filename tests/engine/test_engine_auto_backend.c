/*
 * "auto" between fast and oneDNN for relu, pooling and batch norm
 * (engine/backend_auto.c): a run records one decision per configuration in
 * the execution plan, and the nodes ran on it; a plan's "backend" lines force
 * oneDNN or fast and nothing is timed for them; a bad line changes nothing;
 * DASECV_AUTO_TIMING=0 times nothing; a trial never touches the live call
 * (its running statistics are updated once).
 *
 * Decisions are process-wide, so each test uses batch sizes of its own.
 */
#include <stdlib.h>

#include "engine_util.h"
#include "internal/backend_table.h"

/* conv (3 -> 4 channels) - relu - spatial batch norm - max pool - affine -
 * softmax loss on 3x8x8 inputs. */
static dsv_graph *build(void)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, DSV_F32));
    dsv_value x, lab, a, r, b, p, s;
    TU_OK(dsv_graph_input(g, 3, (int64_t[]){3, 8, 8}, &x));
    TU_OK(dsv_graph_labels(g, &lab));
    TU_OK(dsv_graph_conv(g, "1", x, 4, 3, 3, 1, 1, &a));
    TU_OK(dsv_graph_relu(g, "relu1", a, &r));
    TU_OK(dsv_graph_batchnorm(g, "1", r, &b));
    TU_OK(dsv_graph_max_pool(g, "pool1", b, 2, 2, 2, &p));
    TU_OK(dsv_graph_affine(g, "2", p, 10, &s));
    TU_OK(dsv_graph_softmax_loss(g, "loss", s, lab));
    TU_OK(dsv_graph_finalize(g));
    /* unfused: the relu runs, and is decided, as a node of its own */
    dsv_graph_set_fusion(g, -1, false);
    dsv_graph_init_params(g, 3, 0.2);
    return g;
}

/* One training step and one inference on batch n, layer schedule, 2 threads. */
static void run(dsv_graph *g, int64_t n)
{
    tu_rng rng = {n};
    dsv_tensor x = tu_randn(&rng, DSV_F32, 4, (int64_t[]){n, 3, 8, 8}, 1.0);
    dsv_tensor y = tu_labels(&rng, n, 10);
    dsv_tensor sc;
    TU_OK(dsv_tensor_init(&sc, DSV_F32, 2, (int64_t[]){n, 10}));
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = DSV_BACKEND_AUTO;
    o.schedule = DSV_SCHEDULE_LAYER;
    o.threads = 2;
    double loss;
    TU_OK(dsv_graph_train_step(g, &o, &x, &y, &loss));
    TU_OK(dsv_graph_infer(g, &o, &x, &sc));
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_tensor_free(&sc);
}

/* noinline: inlined, gcc 12 takes the text for a pointer into this frame
 * (-Wdangling-pointer, a false positive) */
__attribute__((noinline)) static char *plan_of(dsv_graph *g)
{
    char *text = NULL;
    TU_OK(dsv_graph_plan_text(g, &text));
    assert_non_null(text);
    return text;
}

/* The backend named at the end of the plan line that starts with `prefix`
 * (which begins with the newline before it), or "" when there is none. */
static void decided(const char *plan, const char *prefix, char name[16])
{
    name[0] = '\0';
    const char *l = strstr(plan, prefix);
    if (!l)
        return;
    const char *sp = l + strlen(prefix), *eol = strchr(sp, '\n');
    if (eol)
        snprintf(name, 16, "%.*s", (int)(eol - sp), sp);
}

/* The training keys of the three nodes for batch n (float32, train, 2 threads). */
static void keys(int64_t n, char relu[64], char bn[64], char pool[64], int train)
{
    snprintf(relu, 64, "\nbackend relu 0,%d,2,4,%lld,4,8,8 ", train, (long long)n);
    snprintf(bn, 64, "\nbackend spatial_batchnorm 0,%d,2,4,%lld,4,8,8 ", train,
             (long long)n);
    snprintf(pool, 64, "\nbackend max_pool 0,%d,2,4,%lld,4,8,8,2,2,2 ", train, (long long)n);
}

/* "name op fwd/bwd" of node `name` in the graph's description. */
static void expect_node(dsv_graph *g, const char *name, const char *op, const char *fwd,
                        const char *bwd)
{
    char desc[2048], want[128];
    TU_OK(dsv_graph_describe(g, DSV_BACKEND_AUTO, desc, sizeof(desc)));
    snprintf(want, sizeof(want), "%s %s %s/%s\n", name, op, fwd, bwd);
    if (!strstr(desc, want))
        fail_msg("'%s' not in:\n%s", want, desc);
}

static bool have_onednn(void) { return dsv_backend_available(DSV_BACKEND_ONEDNN); }

static void test_decisions_recorded(void **st)
{
    (void)st;
    dsv_graph *g = build();
    int64_t t0 = dsv_auto_trials();
    run(g, 6);
    char *plan = plan_of(g);
    char relu[64], bn[64], pool[64];
    if (!have_onednn()) { /* nothing to choose between */
        assert_null(strstr(plan, "\nbackend "));
        assert_int_equal(dsv_auto_trials(), t0);
        free(plan);
        dsv_graph_destroy(g);
        return;
    }
    /* three configurations trained, three tested */
    assert_int_equal(dsv_auto_trials(), t0 + 6);
    char b[2][3][16]; /* [train][relu, bn, pool] */
    for (int train = 0; train < 2; train++) {
        keys(6, relu, bn, pool, train);
        const char *lines[] = {relu, bn, pool};
        for (int i = 0; i < 3; i++) {
            decided(plan, lines[i], b[train][i]);
            if (strcmp(b[train][i], "fast") && strcmp(b[train][i], "onednn"))
                fail_msg("no decision for '%s' in:\n%s", lines[i] + 1, plan);
        }
    }
    /* the nodes' backward ran on the training decision (the forward last ran
       the inference one) */
    expect_node(g, "relu1", "relu", b[0][0], b[1][0]);
    expect_node(g, "bn1", "spatial_batchnorm", b[0][1], b[1][1]);
    expect_node(g, "pool1", "max_pool", b[0][2], b[1][2]);
    /* the same configurations again: nothing timed */
    run(g, 6);
    assert_int_equal(dsv_auto_trials(), t0 + 6);
    free(plan);
    dsv_graph_destroy(g);
}

/* The plan with every backend line's decision replaced by `to`. */
static char *rewrite(const char *plan, const char *to)
{
    char *out = malloc(strlen(plan) * 2 + 64);
    assert_non_null(out);
    out[0] = '\0';
    char *copy = strdup(plan);
    int n = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "backend ", 8)) {
            *(strrchr(line, ' ') + 1) = '\0';
            strcat(strcat(out, line), to);
            n++;
        } else {
            strcat(out, line);
        }
        strcat(out, "\n");
    }
    free(copy);
    assert_true(n >= 6);
    return out;
}

/* The "backend" lines of a plan text, in order. */
static char *backend_lines(const char *plan)
{
    char *out = calloc(strlen(plan) + 1, 1);
    assert_non_null(out);
    for (const char *p = plan; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p + 1) : strlen(p);
        if (!strncmp(p, "backend ", 8))
            strncat(out, p, n);
        p += n;
    }
    return out;
}

static void test_plan_forces_backend(void **st)
{
    (void)st;
    if (!have_onednn())
        skip();
    dsv_graph *g = build();
    run(g, 5);
    char *plan = plan_of(g);
    const char *to[] = {"onednn", "fast", "onednn"};
    for (int k = 0; k < 3; k++) {
        char *forced = rewrite(plan, to[k]);
        TU_OK(dsv_graph_plan_apply(g, forced, "forced"));
        int64_t t0 = dsv_auto_trials();
        run(g, 5);
        assert_int_equal(dsv_auto_trials(), t0); /* all recorded: no timing */
        expect_node(g, "relu1", "relu", to[k], to[k]);
        expect_node(g, "bn1", "spatial_batchnorm", to[k], to[k]);
        expect_node(g, "pool1", "max_pool", to[k], to[k]);
        /* the backend lines stay as forced (a node newly on oneDNN adds
           its own implementation choices: trials record none) */
        char *now = plan_of(g), *a = backend_lines(now), *b = backend_lines(forced);
        assert_string_equal(a, b);
        free(a);
        free(b);
        free(now);
        free(forced);
    }
    free(plan);
    dsv_graph_destroy(g);
}

static void test_bad_lines_change_nothing(void **st)
{
    (void)st;
    dsv_graph *g = build();
    run(g, 7);
    char *plan = plan_of(g);
    char relu[64], bn[64], pool[64];
    keys(7, relu, bn, pool, 1);
    char *text = malloc(strlen(plan) + 256);
    assert_non_null(text);
    const char *bad[] = {
        "backend relu 0,1,2,4,7,4,8,8 naive\n",
        "backend relu 0,1,2 fast\n",
        "backend affine 0,1,2,4,7,4,8,8 fast\n",
        "backend relu 0,1,2,4,7,4,8,8 fast extra\n",
        "backend relu 0,1,2,4,7,4,8,8,1,2,3,4,5 fast\n", /* 13 values */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* a good line that would change the relu's decision, then a bad one */
        sprintf(text, "%s%sonednn\n%sfast\n%s", plan, relu + 1, pool + 1, bad[i]);
        assert_int_equal(dsv_graph_plan_apply(g, text, "bad"), DSV_INVALID);
        assert_non_null(strstr(dsv_errmsg(), "bad:"));
        char *now = plan_of(g);
        assert_string_equal(now, plan);
        free(now);
    }
    if (!have_onednn()) {
        sprintf(text, "%sbackend relu 0,1,2,4,7,4,8,8 onednn\n", plan);
        assert_int_equal(dsv_graph_plan_apply(g, text, "bad"), DSV_INVALID);
        assert_non_null(strstr(dsv_errmsg(), "backend onednn is not built in"));
    }
    free(text);
    free(plan);
    dsv_graph_destroy(g);
}

static void test_timing_off(void **st)
{
    (void)st;
    assert_int_equal(setenv("DASECV_AUTO_TIMING", "0", 1), 0);
    dsv_graph *g = build();
    int64_t t0 = dsv_auto_trials();
    run(g, 9);
    assert_int_equal(dsv_auto_trials(), t0);
    char *plan = plan_of(g);
    assert_null(strstr(plan, ",9,4,8,8"));
    /* the fixed order: fast first */
    expect_node(g, "relu1", "relu", "fast", "fast");
    expect_node(g, "bn1", "spatial_batchnorm", "fast", "fast");
    expect_node(g, "pool1", "max_pool", "fast", "fast");
    /* a recorded decision still holds */
    if (have_onednn()) {
        char relu[64], bn[64], pool[64];
        keys(9, relu, bn, pool, 1);
        char *text = malloc(strlen(plan) + 64);
        sprintf(text, "%s%sonednn\n", plan, relu + 1);
        TU_OK(dsv_graph_plan_apply(g, text, "plan"));
        run(g, 9);
        expect_node(g, "relu1", "relu", "fast", "onednn"); /* inference: fixed */
        free(text);
    }
    assert_int_equal(dsv_auto_trials(), t0);
    free(plan);
    dsv_graph_destroy(g);
}

static int timing_back_on(void **st)
{
    (void)st;
    return unsetenv("DASECV_AUTO_TIMING");
}

/* A training batch norm call on a configuration not seen before: auto times
 * it, then runs it once, so the running statistics are those of one call on
 * the chosen backend. */
static void test_trials_leave_live_call(void **st)
{
    (void)st;
    tu_rng rng = {41};
    int64_t xs[4] = {11, 3, 5, 5};
    dsv_tensor x = tu_randn(&rng, DSV_F32, 4, xs, 1.0);
    dsv_tensor gam = tu_randn(&rng, DSV_F32, 1, (int64_t[]){3}, 1.0);
    dsv_tensor bet = tu_randn(&rng, DSV_F32, 1, (int64_t[]){3}, 1.0);
    dsv_tensor rm[2], rv[2], out[2];
    for (int k = 0; k < 2; k++) {
        rm[k] = tu_randn(&rng, DSV_F32, 1, (int64_t[]){3}, 0.0);
        rv[k] = tu_randn(&rng, DSV_F32, 1, (int64_t[]){3}, 0.0);
        TU_OK(dsv_tensor_init(&out[k], DSV_F32, 4, xs));
    }
    dsv_backend used[2];
    dsv_state state[2] = {{0}};
    int64_t t0 = dsv_auto_trials();
    for (int k = 0; k < 2; k++) {
        dsv_call c = dsv_call_make(DSV_OP_SPATIAL_BATCHNORM);
        c.x = &x, c.w = &gam, c.b = &bet;
        c.running_mean = &rm[k], c.running_var = &rv[k];
        c.out = &out[k];
        c.nthreads = 2;
        c.state = &state[k];
        /* first auto, then the backend auto picked, named */
        TU_OK(dsv_forward(&c, k ? used[0] : DSV_BACKEND_AUTO, &used[k]));
    }
    assert_int_equal(used[0], used[1]);
    assert_int_equal(dsv_auto_trials(), t0 + (have_onednn() ? 1 : 0));
    assert_memory_equal(rm[0].data, rm[1].data, 3 * sizeof(float));
    assert_memory_equal(rv[0].data, rv[1].data, 3 * sizeof(float));
    assert_memory_equal(out[0].data, out[1].data, dsv_tensor_nbytes(&out[0]));
    for (int k = 0; k < 2; k++) {
        dsv_state_free(&state[k]);
        dsv_tensor_free(&rm[k]);
        dsv_tensor_free(&rv[k]);
        dsv_tensor_free(&out[k]);
    }
    dsv_tensor_free(&x);
    dsv_tensor_free(&gam);
    dsv_tensor_free(&bet);
}

static int onednn_choices(void)
{
    const dsv_backend_table *t = dsv_backend_get(DSV_BACKEND_ONEDNN);
    int64_t key[DSV_CHOICE_KEY_MAX];
    char name[DSV_CHOICE_NAME_MAX];
    int n = 0, nkey;
    while (t && t->choice_at && t->choice_at(n, key, &nkey, name, sizeof(name)))
        n++;
    return n;
}

/* A trial times oneDNN with its first implementation: deciding records no
 * implementation choice (a node that runs on oneDNN tunes its own). */
static void test_trials_tune_nothing(void **st)
{
    (void)st;
    if (!have_onednn())
        skip();
    tu_rng rng = {43};
    int64_t xs[4] = {7, 3, 5, 9};
    dsv_tensor x = tu_randn(&rng, DSV_F32, 4, xs, 1.0), out;
    TU_OK(dsv_tensor_init(&out, DSV_F32, 4, xs));
    dsv_call c = dsv_call_make(DSV_OP_RELU);
    c.x = &x, c.out = &out;
    c.nthreads = 1;
    c.p.train = true;
    int before = onednn_choices();
    int64_t t0 = dsv_auto_trials();
    dsv_auto_decide(&c, DSV_BACKEND_FAST);
    assert_int_equal(dsv_auto_trials(), t0 + 1);
    assert_int_equal(onednn_choices(), before);
    dsv_tensor_free(&x);
    dsv_tensor_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions_recorded),
        cmocka_unit_test(test_plan_forces_backend),
        cmocka_unit_test(test_bad_lines_change_nothing),
        cmocka_unit_test_teardown(test_timing_off, timing_back_on),
        cmocka_unit_test(test_trials_leave_live_call),
        cmocka_unit_test(test_trials_tune_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
