/*
 * Models: networks built as graphs of layer nodes (graph.h) from model files
 * (docs/model-files.md): text in Darknet's INI style, a file of the user's,
 * or one of the built-ins compiled in from models/ (the course's
 * ThreeLayerConvNet, FullyConnectedNet, a residual net, a VGG-style CIFAR net
 * and a LeNet-style net). The course's configuration struct
 * (dsv_model_config, the command line's --hidden-dim and friends) is turned
 * into the text of a built-in by dsv_model_config_text.
 *
 * A model keeps the text it was built from, its options, and optionally the
 * input preprocessing (mean image, scale) and class names of the data it was
 * trained on; checkpoints store all of them.
 *
 * A model owns one flat block of parameters and one of gradients with the same
 * layout (an optimizer step is one loop, zeroing gradients one memset), plus a
 * block of non-trainable buffers (batch norm running statistics). All three are
 * in the model's dtype. Parameter tensors are views into the blocks.
 */
#ifndef DASECV_MODEL_H
#define DASECV_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "ops.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsv_model_kind {
    DSV_MODEL_THREELAYER = 0, /* conv-relu-pool2x2-affine-relu-affine-softmax */
    DSV_MODEL_FC,             /* FullyConnectedNet */
    DSV_MODEL_RESNET,         /* small residual CIFAR net */
    DSV_MODEL_KIND_COUNT
} dsv_model_kind;

typedef enum dsv_norm {
    DSV_NORM_NONE = 0,
    DSV_NORM_BATCHNORM,
    DSV_NORM_LAYERNORM,
    DSV_NORM_COUNT
} dsv_norm;

typedef enum dsv_schedule {
    DSV_SCHEDULE_LAYER = 0, /* nodes in order, each kernel uses every thread */
    DSV_SCHEDULE_BATCH,     /* minibatch split across threads */
    DSV_SCHEDULE_AUTO,      /* calibrate once per batch shape, keep the faster */
    DSV_SCHEDULE_COUNT
} dsv_schedule;

DSV_API const char *dsv_model_kind_name(dsv_model_kind k); /* "threelayer", "fc", "resnet" */
DSV_API dsv_status dsv_model_kind_from_name(const char *s, dsv_model_kind *k);
DSV_API const char *dsv_norm_name(dsv_norm n);              /* "none", "batchnorm", "layernorm" */
DSV_API dsv_status dsv_norm_from_name(const char *s, dsv_norm *n);
DSV_API const char *dsv_schedule_name(dsv_schedule s);      /* "layer", "batch", "auto" */
DSV_API dsv_status dsv_schedule_from_name(const char *s, dsv_schedule *out);

#define DSV_MAX_HIDDEN 16

typedef struct dsv_model_config {
    dsv_model_kind kind;
    dsv_dtype dtype;        /* DSV_F32 (default) or DSV_F64 */
    int input_dim[3];       /* C, H, W; default 3, 32, 32 */
    int num_classes;        /* default 10 */
    double weight_scale;    /* default 1e-3 (threelayer), 1e-2 (fc) */
    double reg;             /* default 0 */
    uint64_t seed;          /* weight initialisation */
    /* threelayer */
    int num_filters;        /* default 32 */
    int filter_size;        /* default 7; stride 1, pad (filter_size - 1) / 2 */
    int hidden_dim;         /* default 100 */
    /* fc */
    int num_hidden;         /* number of hidden layers */
    int hidden_dims[DSV_MAX_HIDDEN];
    dsv_norm normalization; /* default none */
    double dropout_keep;    /* 1 = no dropout (default) */
    /* resnet */
    int res_channels;       /* default 16 */
    int res_blocks;         /* default 2 */
} dsv_model_config;

/* The course's defaults for kind. */
DSV_API dsv_model_config dsv_model_config_default(dsv_model_kind kind);
/* Validates a configuration (positive sizes, filter fits, ...). */
DSV_API dsv_status dsv_model_config_check(const dsv_model_config *cfg);

typedef struct dsv_model dsv_model;

typedef struct dsv_exec_options {
    dsv_backend backend;   /* default auto */
    dsv_schedule schedule; /* default layer */
    int threads;           /* 0 = dsv_get_num_threads() */
} dsv_exec_options;

DSV_API dsv_exec_options dsv_exec_options_default(void);

/* Builds the course configuration's network (dsv_model_config_text) and
 * initialises the weights (Gaussian * weight_scale, zero biases, gamma 1,
 * beta 0) from cfg->seed. */
DSV_API dsv_status dsv_model_create(dsv_model **m, const dsv_model_config *cfg);
DSV_API void dsv_model_destroy(dsv_model *m);
/* The course configuration of a model made by dsv_model_create (or loaded
 * from a version-1 checkpoint); NULL for a model made from a model file. */
DSV_API const dsv_model_config *dsv_model_config_of(const dsv_model *m);

/* ---- model files ------------------------------------------------------------ */

typedef struct dsv_model_options {
    int dtype;          /* -1: the file's [net] dtype (float32 if it has none);
                           else DSV_F32 or DSV_F64, overriding the file */
    int input_dim[3];   /* C, H, W of the data; 0: from [net]. When both are
                           given they must agree */
    int num_classes;    /* likewise, the number of classes */
    uint64_t seed;      /* weight initialisation, default dropout seeds */
    double reg;         /* L2 strength of the training loss */
} dsv_model_options;

/* dtype -1, shape and classes 0 (from the file), seed 0, reg 0. */
DSV_API dsv_model_options dsv_model_options_default(void);

/* Builds a model from model-file text; source names it in error messages
 * ("source:line: [conv] conv1: filters: ..."). Errors are DSV_INVALID. */
DSV_API dsv_status dsv_model_create_from_text(dsv_model **m, const char *text,
                                      const char *source,
                                      const dsv_model_options *o);
/* name_or_path: a file, or the name of a built-in ("threelayer", ...). A
 * name with a '/' or an existing file is read as a file. */
DSV_API dsv_status dsv_model_create_from_file(dsv_model **m, const char *name_or_path,
                                      const dsv_model_options *o);

/* Built-in model files, compiled in from models/NAME.cfg. */
DSV_API int dsv_builtin_model_count(void);
DSV_API const char *dsv_builtin_model_name(int i);     /* NULL out of range */
DSV_API const char *dsv_builtin_model_text(const char *name); /* NULL if unknown */

/* The model-file text of a course configuration (threelayer, fc, resnet with
 * their sizes, normalization, dropout and weight_scale); *text is malloc'ed,
 * the caller frees it. The input shape, classes, dtype, seed and reg are
 * options (dsv_model_options), not text. */
DSV_API dsv_status dsv_model_config_text(const dsv_model_config *cfg, char **text);

/* The text the model was built from and the options as resolved (dtype,
 * input shape and classes filled in). Valid until destroy. */
DSV_API const char *dsv_model_text(const dsv_model *m);
DSV_API const dsv_model_options *dsv_model_options_of(const dsv_model *m);
DSV_API dsv_dtype dsv_model_dtype(const dsv_model *m);
/* Changes the L2 strength of the training loss (the course's `model.reg =
 * 0.5` between two loss calls); reg must be finite and >= 0. */
DSV_API dsv_status dsv_model_set_reg(dsv_model *m, double reg);

/* Input preprocessing of the data the model is trained on: the mean image
 * (C, H, W of the model's input; NULL: none) is subtracted, then the result
 * multiplied by scale. Copied. */
DSV_API dsv_status dsv_model_set_preprocess(dsv_model *m, const float *mean, float scale);
/* Whether it is known; *mean (may be NULL: none) and *scale. */
DSV_API bool dsv_model_preprocess(const dsv_model *m, const float **mean, float *scale);
/* Class names (n must be the number of classes, or 0 to forget them); copied. */
DSV_API dsv_status dsv_model_set_class_names(dsv_model *m, int n, const char *const *names);
/* Name of class i, or NULL when the model has none. */
DSV_API const char *dsv_model_class_name(const dsv_model *m, int i);

/* Every parameter and buffer by name (NODE.w, NODE.b, NODE.gamma, NODE.beta,
 * NODE.running_mean, NODE.running_var) into an .npz archive, in the model's
 * dtype (npz.h; written atomically). */
DSV_API dsv_status dsv_model_save_npz(dsv_model *m, const char *path);
/* The reverse: the archive must hold exactly the model's arrays, with the
 * same names and shapes, finite, float32 or float64 (converted to the
 * model's dtype); otherwise DSV_INVALID naming the array, and the model is
 * unchanged. */
DSV_API dsv_status dsv_model_load_npz(dsv_model *m, const char *path);

DSV_API dsv_status dsv_model_set_exec(dsv_model *m, const dsv_exec_options *o);
DSV_API const dsv_exec_options *dsv_model_exec(const dsv_model *m);
/* With DSV_SCHEDULE_AUTO: the schedule chosen by the last calibration
 * (DSV_SCHEDULE_AUTO until one has run). Otherwise the one set. */
DSV_API dsv_schedule dsv_model_schedule_used(const dsv_model *m);

/* Flat blocks (model dtype). Gradients share the parameters' layout. */
DSV_API int64_t dsv_model_num_params(const dsv_model *m);
DSV_API void *dsv_model_params(dsv_model *m);
DSV_API void *dsv_model_grads(dsv_model *m);
DSV_API int64_t dsv_model_num_buffers(const dsv_model *m);
DSV_API void *dsv_model_buffers(dsv_model *m);

/* Named parameter tensors ("W1", "b1", "gamma1", ...), views into the blocks. */
DSV_API int dsv_model_num_tensors(const dsv_model *m);
DSV_API const char *dsv_model_tensor_name(const dsv_model *m, int i);
DSV_API dsv_tensor dsv_model_param(dsv_model *m, int i);
DSV_API dsv_tensor dsv_model_grad(dsv_model *m, int i);
DSV_API bool dsv_model_tensor_is_weight(const dsv_model *m, int i); /* counts in reg */

/* Training step: forward in train mode, loss (data loss + 0.5 * reg * sum of
 * squared weights), backward; gradients are overwritten. x (N, C, H, W) in the
 * model's dtype, y int32 (N). */
DSV_API dsv_status dsv_model_loss(dsv_model *m, const dsv_tensor *x,
                          const dsv_tensor *y, double *loss);
/* Training steps taken so far (dropout masks depend on it); the Solver keeps
 * it in checkpoints so that a resumed run draws the same masks. */
DSV_API uint64_t dsv_model_train_steps(const dsv_model *m);
DSV_API void dsv_model_set_train_steps(dsv_model *m, uint64_t n);
/* Inference: test-mode forward; scores (N, num_classes) in the model dtype. */
DSV_API dsv_status dsv_model_scores(dsv_model *m, const dsv_tensor *x,
                            dsv_tensor *scores);

/* One line per node: "name op backend(fwd)/backend(bwd)" into buf. */
DSV_API dsv_status dsv_model_describe(const dsv_model *m, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
