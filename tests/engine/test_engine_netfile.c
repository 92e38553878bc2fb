/*
 * Model files: the built-in files against the course's options, networks
 * from files against the same networks built node by node (identical bits
 * through training), malformed files (each error names file:line), and a
 * whole-model gradient check of a network that uses every op.
 */
#include "engine_util.h"

/* ---- the built-ins ------------------------------------------------------------- */

static void test_builtin_files_match_options(void **st)
{
    (void)st;
    const char *kinds[] = {"threelayer", "fc", "resnet"};
    for (int i = 0; i < 3; i++) {
        dsv_model_kind k;
        TU_OK(dsv_model_kind_from_name(kinds[i], &k));
        dsv_model_config c = dsv_model_config_default(k);
        char *text;
        TU_OK(dsv_model_config_text(&c, &text));
        const char *file = dsv_builtin_model_text(kinds[i]);
        assert_non_null(file);
        assert_string_equal(file, text);
        free(text);
    }
    /* every built-in builds, on its own [net] or on CIFAR-sized data */
    for (int i = 0; i < dsv_builtin_model_count(); i++) {
        const char *name = dsv_builtin_model_name(i);
        dsv_model_options o = dsv_model_options_default();
        dsv_model *m;
        if (dsv_model_create_from_file(&m, name, &o) != DSV_OK) {
            o.input_dim[0] = 3, o.input_dim[1] = o.input_dim[2] = 32, o.num_classes = 10;
            TU_OK(dsv_model_create_from_file(&m, name, &o));
        }
        printf("  %s: %lld parameters\n", name, (long long)dsv_model_num_params(m));
        dsv_model_destroy(m);
    }
    dsv_model *m;
    assert_int_equal(dsv_model_create_from_file(&m, "no-such-model", NULL), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "built-ins: threelayer"));
}

/* ---- the course's networks built node by node ----------------------------------- */

static int param(dsv_graph *g, const char *name, int ndim, const int64_t *shape,
                 dsv_param_kind kind)
{
    int id;
    TU_OK(dsv_graph_add_param(g, name, ndim, shape, kind, &id));
    return id;
}

static dsv_value node(dsv_graph *g, dsv_node_desc d)
{
    dsv_value out;
    TU_OK(dsv_graph_add_node(g, &d, &out));
    return out;
}

static dsv_value conv(dsv_graph *g, const char *id, dsv_value x, int64_t C, int64_t F, int k,
                      int pad)
{
    char nm[32], wn[32], bn[32];
    snprintf(nm, sizeof(nm), "conv%s", id);
    snprintf(wn, sizeof(wn), "W%s", id);
    snprintf(bn, sizeof(bn), "b%s", id);
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_CONV, nm, x);
    d.w = param(g, wn, 4, (int64_t[]){F, C, k, k}, DSV_PARAM_WEIGHT);
    d.b = param(g, bn, 1, &F, DSV_PARAM_BIAS);
    d.p.pad = pad;
    return node(g, d);
}

static dsv_value affine(dsv_graph *g, const char *id, dsv_value x, int64_t D, int64_t M)
{
    char nm[32], wn[32], bn[32];
    snprintf(nm, sizeof(nm), "affine%s", id);
    snprintf(wn, sizeof(wn), "W%s", id);
    snprintf(bn, sizeof(bn), "b%s", id);
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_AFFINE, nm, x);
    d.w = param(g, wn, 2, (int64_t[]){D, M}, DSV_PARAM_WEIGHT);
    d.b = param(g, bn, 1, &M, DSV_PARAM_BIAS);
    return node(g, d);
}

static dsv_value simple(dsv_graph *g, dsv_op op, const char *name, dsv_value x)
{
    return node(g, dsv_node_desc_make(op, name, x));
}

static dsv_value norm(dsv_graph *g, dsv_op op, const char *id, dsv_value x, int64_t C)
{
    char nm[32], gn[32], bn[32], mn[32], vn[32];
    snprintf(nm, sizeof(nm), "bn%s", id);
    snprintf(gn, sizeof(gn), "gamma%s", id);
    snprintf(bn, sizeof(bn), "beta%s", id);
    snprintf(mn, sizeof(mn), "running_mean%s", id);
    snprintf(vn, sizeof(vn), "running_var%s", id);
    dsv_node_desc d = dsv_node_desc_make(op, nm, x);
    d.w = param(g, gn, 1, &C, DSV_PARAM_GAMMA);
    d.b = param(g, bn, 1, &C, DSV_PARAM_BETA);
    if (op != DSV_OP_LAYERNORM) {
        TU_OK(dsv_graph_add_buffer(g, mn, C, 0.0, &d.running_mean));
        TU_OK(dsv_graph_add_buffer(g, vn, C, 0.0, &d.running_var));
    }
    return node(g, d);
}

static void loss(dsv_graph *g, dsv_value s, dsv_value y)
{
    dsv_node_desc d = dsv_node_desc_make(DSV_OP_SOFTMAX_LOSS, "loss", s);
    d.y = y;
    TU_OK(dsv_graph_add_node(g, &d, NULL));
}

/* The course's networks as the graph builders wrote them, node by node. */
static dsv_graph *reference_graph(const dsv_model_config *c)
{
    dsv_graph *g;
    TU_OK(dsv_graph_create(&g, c->dtype));
    dsv_value x, y, h;
    int64_t in[3] = {c->input_dim[0], c->input_dim[1], c->input_dim[2]};
    TU_OK(dsv_graph_input(g, 3, in, &x));
    TU_OK(dsv_graph_labels(g, &y));
    int64_t H = in[1], W = in[2], K = c->num_classes;
    if (c->kind == DSV_MODEL_THREELAYER) {
        int64_t F = c->num_filters;
        h = conv(g, "1", x, in[0], F, c->filter_size, (c->filter_size - 1) / 2);
        h = simple(g, DSV_OP_RELU, "relu1", h);
        dsv_node_desc d = dsv_node_desc_make(DSV_OP_MAX_POOL, "pool1", h);
        d.p.stride = 2;
        h = node(g, d);
        h = affine(g, "2", h, F * (H / 2) * (W / 2), c->hidden_dim);
        h = simple(g, DSV_OP_RELU, "relu2", h);
        h = affine(g, "3", h, c->hidden_dim, K);
    } else if (c->kind == DSV_MODEL_FC) {
        int64_t D = in[0] * H * W;
        h = x;
        for (int i = 0; i < c->num_hidden; i++) {
            char id[16], nm[32];
            snprintf(id, sizeof(id), "%d", i + 1);
            h = affine(g, id, h, D, c->hidden_dims[i]);
            D = c->hidden_dims[i];
            if (c->normalization == DSV_NORM_BATCHNORM)
                h = norm(g, DSV_OP_BATCHNORM, id, h, D);
            snprintf(nm, sizeof(nm), "relu%s", id);
            h = simple(g, DSV_OP_RELU, nm, h);
            if (c->dropout_keep < 1) {
                snprintf(nm, sizeof(nm), "dropout%s", id);
                dsv_node_desc d = dsv_node_desc_make(DSV_OP_DROPOUT, nm, h);
                d.p.p = c->dropout_keep;
                d.p.seed = (c->seed ^ 0x5DEECE66Dull) + (uint64_t)i;
                h = node(g, d);
            }
        }
        char id[16];
        snprintf(id, sizeof(id), "%d", c->num_hidden + 1);
        h = affine(g, id, h, D, K);
    } else {
        int64_t C = c->res_channels;
        int layer = 1;
        h = conv(g, "1", x, in[0], C, 3, 1);
        h = norm(g, DSV_OP_SPATIAL_BATCHNORM, "1", h, C);
        h = simple(g, DSV_OP_RELU, "relu1", h);
        for (int k = 0; k < c->res_blocks; k++) {
            char a[16], b[16], nm[32];
            snprintf(a, sizeof(a), "%d", ++layer);
            snprintf(b, sizeof(b), "%d", ++layer);
            dsv_value t = conv(g, a, h, C, C, 3, 1);
            t = norm(g, DSV_OP_SPATIAL_BATCHNORM, a, t, C);
            snprintf(nm, sizeof(nm), "relu%s", a);
            t = simple(g, DSV_OP_RELU, nm, t);
            t = conv(g, b, t, C, C, 3, 1);
            t = norm(g, DSV_OP_SPATIAL_BATCHNORM, b, t, C);
            snprintf(nm, sizeof(nm), "add%d", k + 1);
            dsv_node_desc d = dsv_node_desc_make(DSV_OP_ADD, nm, t);
            d.x2 = h;
            t = node(g, d);
            snprintf(nm, sizeof(nm), "relu%s", b);
            h = simple(g, DSV_OP_RELU, nm, t);
        }
        dsv_node_desc d = dsv_node_desc_make(DSV_OP_MAX_POOL, "pool", h);
        d.p.stride = 2;
        h = node(g, d);
        char id[16];
        snprintf(id, sizeof(id), "%d", ++layer);
        h = affine(g, id, h, C * (H / 2) * (W / 2), K);
    }
    loss(g, h, y);
    TU_OK(dsv_graph_finalize(g));
    dsv_graph_init_params(g, c->seed, c->weight_scale);
    return g;
}

static void sgd(void *p, const void *gr, int64_t n, dsv_dtype dt)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSV_F32)
            ((float *)p)[i] -= 0.05f * ((const float *)gr)[i];
        else
            ((double *)p)[i] -= 0.05 * ((const double *)gr)[i];
    }
}

/* Five training steps of the model built from its text and of the node-by-node
 * graph: parameters, gradients, buffers and losses identical bit for bit. */
static void same_bits(const dsv_model_config *c, dsv_backend backend)
{
    dsv_graph *ref = reference_graph(c);
    dsv_model *m;
    TU_OK(dsv_model_create(&m, c));
    dsv_exec_options o = dsv_exec_options_default();
    o.backend = backend;
    TU_OK(dsv_model_set_exec(m, &o));
    dsv_graph *g = dsv_model_graph(m);
    int64_t np = dsv_graph_num_param_values(ref);
    size_t esz = dsv_dtype_size(c->dtype);
    assert_int_equal(np, dsv_model_num_params(m));
    assert_int_equal(dsv_graph_num_buffer_values(ref), dsv_model_num_buffers(m));
    assert_memory_equal(dsv_graph_params(ref), dsv_model_params(m), (size_t)np * esz);
    dsv_tensor x, y;
    eu_data(5, c->dtype, 8, c->input_dim[0], c->input_dim[1], c->input_dim[2], c->num_classes,
            &x, &y);
    for (int step = 0; step < 5; step++) {
        double l1, l2;
        TU_OK(dsv_graph_train_step(ref, &o, &x, &y, &l1));
        TU_OK(dsv_model_loss(m, &x, &y, &l2));
        assert_memory_equal(&l1, &l2, sizeof(double));
        assert_memory_equal(dsv_graph_grads(ref), dsv_graph_grads(g), (size_t)np * esz);
        sgd(dsv_graph_params(ref), dsv_graph_grads(ref), np, c->dtype);
        sgd(dsv_model_params(m), dsv_model_grads(m), np, c->dtype);
    }
    assert_memory_equal(dsv_graph_params(ref), dsv_model_params(m), (size_t)np * esz);
    assert_memory_equal(dsv_graph_buffers(ref), dsv_model_buffers(m),
                        (size_t)dsv_model_num_buffers(m) * esz);
    dsv_tensor_free(&x);
    dsv_tensor_free(&y);
    dsv_model_destroy(m);
    dsv_graph_destroy(ref);
}

static void test_same_bits_as_node_by_node(void **st)
{
    (void)st;
    for (int dt = 0; dt < 2; dt++) {
        dsv_model_config c = dsv_model_config_default(DSV_MODEL_THREELAYER);
        c.dtype = dt ? DSV_F64 : DSV_F32;
        c.input_dim[1] = c.input_dim[2] = 12;
        c.num_filters = 6, c.filter_size = 5, c.hidden_dim = 20, c.seed = 11;
        same_bits(&c, DSV_BACKEND_AUTO);
        same_bits(&c, DSV_BACKEND_NAIVE);

        c = dsv_model_config_default(DSV_MODEL_FC);
        c.dtype = dt ? DSV_F64 : DSV_F32;
        c.input_dim[1] = c.input_dim[2] = 6;
        c.num_hidden = 3, c.hidden_dims[2] = 30;
        c.normalization = DSV_NORM_BATCHNORM, c.dropout_keep = 0.7, c.seed = 5;
        same_bits(&c, DSV_BACKEND_AUTO);

        c = dsv_model_config_default(DSV_MODEL_RESNET);
        c.dtype = dt ? DSV_F64 : DSV_F32;
        c.input_dim[1] = c.input_dim[2] = 8;
        c.res_channels = 4, c.seed = 9;
        same_bits(&c, DSV_BACKEND_AUTO);
    }
}

/* ---- malformed files ------------------------------------------------------------- */

#define NET "[net]\nchannels=1\nheight=8\nwidth=8\nclasses=3\n"
#define TAIL "[affine]\noutputs=classes\n[softmax_loss]\n"

static const struct bad {
    const char *text, *expect;
    int line;
} bad_files[] = {
    {"", "no sections", 1},
    {"# only a comment\n", "no sections", 1},
    {"\x7f" "ELF\x02\x01\x01\x00\x00", "control character", 1},
    {"[net]\nchannels=1\n\x01\x02\n", "control character", 3},
    {"channels=1\n[net]\n", "before any [section]", 1},
    {"[relu]\n" NET TAIL, "first section must be [net]", 1},
    {NET, "followed by no layers", 1},
    {NET "[convolutional]\nfilters=2\n" TAIL, "unknown section [convolutional]", 6},
    {NET "[conv]\nfilters=2\nsize=3\ncolour=red\n" TAIL, "colour: unknown key", 9},
    {NET "[conv]\nsize=3\n" TAIL, "missing required key 'filters'", 6},
    {NET "[conv]\nfilters=2\n" TAIL, "missing required key 'size'", 6},
    {NET "[conv]\nfilters=two\nsize=3\n" TAIL, "filters: 'two' is not a whole number", 7},
    {NET "[conv]\nfilters=2.5\nsize=3\n" TAIL, "is not a whole number", 7},
    {NET "[conv]\nfilters=0\nsize=3\n" TAIL, "filters: 0 is out of range", 7},
    {NET "[conv]\nfilters=2\nsize=9\n" TAIL, "[conv] conv1:", 6},
    {NET "[conv]\nfilters=2\nsize=3\nstride=2\n" TAIL, "divisible by stride", 6},
    {NET "[dropout]\nkeep=1.5\n" TAIL, "keep: 1.5 is out of range", 7},
    {NET "[dropout]\nkeep=nan\n" TAIL, "is not a finite number", 7},
    {NET "[dropout]\n" TAIL, "missing required key 'keep'", 6},
    {NET "[relu]\ninput=nowhere\n" TAIL, "no earlier layer is named 'nowhere'", 7},
    {NET "[relu]\nname=a\ninput=a\n" TAIL, "no earlier layer is named 'a'", 8},
    {NET "[relu]\nname=a\ninput=b\n[relu]\nname=b\ninput=a\n" TAIL, "no cycles", 8},
    {NET "[relu]\nname=a\n[relu]\nname=a\n" TAIL, "'a' is taken by the layer on line 6", 9},
    {NET "[relu]\nname=input\n" TAIL, "is the network's input", 7},
    {NET "[relu]\nname=a b\n" TAIL, "names are 1 to 63", 7},
    {NET "[relu]\n[relu]\nname=relu1\n" TAIL, "'relu1' is taken by the layer on line 6", 8},
    {NET "[relu]\nname=relu2\n[relu]\n" TAIL, "the default name 'relu2' is taken", 8},
    {NET "[add]\n" TAIL, "missing required key 'input2'", 6},
    {NET "[relu]\nname=a\n[relu]\ninput=input\n" TAIL, "its output is never used", 6},
    {NET "[affine]\noutputs=5\n[softmax_loss]\n", "5 values per sample, but the model has 3",
     8},
    {NET "[affine]\noutputs=classes\n", "the last section must be a loss", 6},
    {NET "[softmax_loss]\n" TAIL, "the loss must be the last section", 6},
    {NET "[relu]\ncolour=red\ncolour=blue\n" TAIL, "key 'colour' is given twice", 8},
    {"[net]\nchannels=1\nheight=8\nwidth=8\n" TAIL, "missing required key 'classes'", 1},
    {"[net]\nchannels=1\nwidth=8\nclasses=3\n" TAIL, "missing required key 'height'", 1},
    {"[net]\nchannels=1\nheight=8\nwidth=8\nclasses=3\ndtype=float16\n" TAIL,
     "dtype: 'float16' is not one of float32 float64", 6},
    {"[net]\nchannels=1\nheight=8\nwidth=8\nclasses=3\ninit=he\nweight_scale=0.1\n" TAIL,
     "only used with init=scale", 7},
    {NET "[affine]\noutputs=4\ninit=kaiming\n" TAIL, "init: 'kaiming' is not one of", 8},
    {NET "[net]\n" TAIL, "unknown section [net] again", 6},
    {NET "[batchnorm]\n" TAIL, "[batchnorm] batchnorm1:", 6},
    {NET "[relu\n" TAIL, "expected a [section] header", 6},
    {NET "just words\n" TAIL, "expected a [section] header", 6},
    {NET "[max_pool]\nsize=3\n" TAIL, "[max_pool] max_pool1:", 6},
};

static void test_bad_files(void **st)
{
    (void)st;
    int n = (int)(sizeof(bad_files) / sizeof(bad_files[0]));
    assert_true(n >= 25);
    for (int i = 0; i < n; i++) {
        dsv_model *m = NULL;
        dsv_status s = dsv_model_create_from_text(&m, bad_files[i].text, "bad.cfg", NULL);
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "bad.cfg:%d: ", bad_files[i].line);
        const char *msg = dsv_errmsg();
        if (s != DSV_INVALID || strncmp(msg, prefix, strlen(prefix)) != 0 ||
            !strstr(msg, bad_files[i].expect)) {
            printf("case %d: status %d, message '%s'; wanted '%s...%s'\n", i, (int)s, msg,
                   prefix, bad_files[i].expect);
            fail();
        }
        assert_null(m);
    }
    /* a line longer than inih's buffer */
    char *text = malloc(600);
    snprintf(text, 600, NET "[relu]\nname=%0300d\n" TAIL, 1);
    dsv_model *m = NULL;
    assert_int_equal(dsv_model_create_from_text(&m, text, "bad.cfg", NULL), DSV_INVALID);
    assert_non_null(strstr(dsv_errmsg(), "bad.cfg:7: line longer"));
    free(text);
    /* a file that disagrees with the data */
    dsv_model_options o = dsv_model_options_default();
    o.input_dim[0] = 3, o.input_dim[1] = 8, o.input_dim[2] = 8;
    assert_int_equal(dsv_model_create_from_text(&m, NET TAIL, "bad.cfg", &o), DSV_INVALID);
    assert_string_equal(dsv_errmsg(),
                        "bad.cfg:2: [net]: channels: the model takes 1 but the data has 3");
}

/* ---- every op ------------------------------------------------------------------- */

static const char every_op[] =
    "# every op of the engine\n"
    "[net]\nchannels=2\nheight=6\nwidth=6\nclasses=3\ndtype=float64\ninit=xavier\n"
    "[conv]\nname=c1\nfilters=4\nsize=3\npad=1\n"
    "[spatial_batchnorm]\nname=sbn\n"
    "[relu]\nname=r1\n"
    "[conv]\nname=c2\nfilters=4\nsize=3\npad=1\ninit=he\n"
    "[spatial_groupnorm]\nname=gn\ngroups=2\n"
    "[add]\nname=res\ninput2=r1\n"
    "[max_pool]\nname=mp\nsize=2\nstride=2\n"
    "[conv]\nname=c3\nfilters=4\nsize=1\n"
    "[avg_pool]\nname=ap\nglobal=1\n"
    "[affine]\nname=a1\noutputs=6\ninit=scale\nweight_scale=0.5\n"
    "[batchnorm]\nname=bn\n"
    "[layernorm]\nname=ln\n"
    "[relu]\nname=r2\n"
    "[dropout]\nname=d\nkeep=0.8\n"
    "[affine]\nname=a2\noutputs=classes\n"
    "[%s]\nname=loss\n";

/* Worst relative error of m's analytic gradient against central differences
 * over every entry, except entries whose true gradient is 0 (both below
 * 1e-7: biases that a later batch norm cancels), which are counted. */
static double gradcheck_nonzero(dsv_model *m, const dsv_tensor *x, const dsv_tensor *y,
                                int64_t *checked, int64_t *zeros)
{
    double loss;
    uint64_t step = dsv_model_train_steps(m);
    TU_OK(dsv_model_loss(m, x, y, &loss));
    int64_t np = dsv_model_num_params(m);
    double *grad = malloc(sizeof(double) * (size_t)np);
    assert_non_null(grad);
    memcpy(grad, dsv_model_grads(m), sizeof(double) * (size_t)np);
    double *pv = dsv_model_params(m), worst = 0;
    *checked = *zeros = 0;
    for (int64_t i = 0; i < np; i++) {
        double old = pv[i], lp, lm;
        pv[i] = old + 1e-6;
        dsv_model_set_train_steps(m, step);
        TU_OK(dsv_model_loss(m, x, y, &lp));
        pv[i] = old - 1e-6;
        dsv_model_set_train_steps(m, step);
        TU_OK(dsv_model_loss(m, x, y, &lm));
        pv[i] = old;
        double num = (lp - lm) / 2e-6;
        if (fabs(num) + fabs(grad[i]) < 1e-7) {
            (*zeros)++;
            continue;
        }
        (*checked)++;
        worst = fmax(worst, fabs(num - grad[i]) / (fabs(num) + fabs(grad[i])));
    }
    free(grad);
    return worst;
}

static void test_every_op_gradcheck(void **st)
{
    (void)st;
    const char *losses[] = {"softmax_loss", "svm_loss"};
    for (int k = 0; k < 2; k++) {
        char text[sizeof(every_op) + 16];
        snprintf(text, sizeof(text), every_op, losses[k]);
        dsv_model_options o = dsv_model_options_default();
        o.seed = 3;
        dsv_model *m;
        TU_OK(dsv_model_create_from_text(&m, text, "every-op.cfg", &o));
        dsv_exec_options eo = dsv_exec_options_default();
        eo.backend = DSV_BACKEND_NAIVE;
        TU_OK(dsv_model_set_exec(m, &eo));
        dsv_graph *g = dsv_model_graph(m);
        bool seen[DSV_OP_COUNT] = {false};
        for (int i = 0; i < dsv_graph_num_nodes(g); i++) {
            dsv_node_desc d;
            TU_OK(dsv_graph_node_info(g, i, &d, NULL));
            seen[d.op] = true;
        }
        for (int op = 0; op < DSV_OP_COUNT; op++)
            if (!seen[op] && !dsv_op_is_loss((dsv_op)op)) {
                printf("  op %s is not in the every-op network\n", dsv_op_name((dsv_op)op));
                fail();
            }
        dsv_tensor x, y;
        eu_data(4, DSV_F64, 6, 2, 6, 6, 3, &x, &y);
        int64_t checked, zeros;
        double err = gradcheck_nonzero(m, &x, &y, &checked, &zeros);
        printf("  every op with %s: worst relative error %.2e over %lld entries (%lld with "
               "gradient 0)\n",
               losses[k], err, (long long)checked, (long long)zeros);
        assert_true(err <= 1e-5);
        assert_true(checked > 4 * zeros);
        dsv_tensor_free(&x);
        dsv_tensor_free(&y);
        dsv_model_destroy(m);
    }
}

/* A training pass overwrites every parameter's gradient (the engine does not
 * clear the gradient block first): for each backend, dtype and schedule, a
 * pass over a gradient block filled with NaNs gives the bits of a pass over
 * a zeroed one. */
static void test_every_op_overwrites_gradients(void **st)
{
    (void)st;
    char text[sizeof(every_op) + 16];
    snprintf(text, sizeof(text), every_op, "softmax_loss");
    const dsv_backend backends[] = {DSV_BACKEND_NAIVE, DSV_BACKEND_FAST, DSV_BACKEND_ONEDNN};
    const dsv_dtype dtypes[] = {DSV_F32, DSV_F64};
    int runs = 0;
    for (size_t bi = 0; bi < sizeof(backends) / sizeof(backends[0]); bi++)
        for (int di = 0; di < 2; di++)
            for (int sched = 0; sched < 2; sched++) {
                if (!dsv_backend_available(backends[bi]))
                    continue;
                dsv_model_options o = dsv_model_options_default();
                o.seed = 5;
                o.dtype = dtypes[di];
                dsv_model *m;
                TU_OK(dsv_model_create_from_text(&m, text, "every-op.cfg", &o));
                dsv_exec_options eo = dsv_exec_options_default();
                eo.backend = backends[bi];
                eo.schedule = sched ? DSV_SCHEDULE_BATCH : DSV_SCHEDULE_LAYER;
                eo.threads = 2;
                TU_OK(dsv_model_set_exec(m, &eo));
                dsv_tensor x, y;
                eu_data(9, dtypes[di], 6, 2, 6, 6, 3, &x, &y);
                size_t bytes = (size_t)dsv_model_num_params(m) * dsv_dtype_size(dtypes[di]);
                void *zeroed = malloc(bytes);
                assert_non_null(zeroed);
                double loss;
                for (int k = 0; k < 2; k++) {
                    memset(dsv_model_grads(m), k ? 0xff : 0, bytes);
                    dsv_model_set_train_steps(m, 0); /* the same dropout mask */
                    TU_OK(dsv_model_loss(m, &x, &y, &loss));
                    if (k == 0)
                        memcpy(zeroed, dsv_model_grads(m), bytes);
                }
                if (memcmp(zeroed, dsv_model_grads(m), bytes)) {
                    printf("  %s %s %s: a gradient was not overwritten\n",
                           dsv_backend_name(backends[bi]), dsv_dtype_name(dtypes[di]),
                           sched ? "batch" : "layer");
                    fail();
                }
                runs++;
                free(zeroed);
                dsv_tensor_free(&x);
                dsv_tensor_free(&y);
                dsv_model_destroy(m);
            }
    assert_true(runs >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_files_match_options),
        cmocka_unit_test(test_same_bits_as_node_by_node),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_every_op_gradcheck),
        cmocka_unit_test(test_every_op_overwrites_gradients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
