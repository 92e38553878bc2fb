/*
 * Model files (internal): text in the format of docs/model-files.md built into
 * a finalized graph. model.c is the only caller; users reach it through
 * dsv_model_create_from_text / _from_file.
 */
#ifndef DASECV_NETFILE_H
#define DASECV_NETFILE_H

#include "dasecv/graph.h"
#include "dasecv/model.h"

typedef struct dsv_netfile_info {
    int input_dim[3]; /* C, H, W as built */
    int num_classes;
    dsv_dtype dtype;
} dsv_netfile_info;

/* Parses text (source names it in messages: "file:line: ...") and builds the
 * graph with o's overrides (dtype, input shape, classes) and seed (dropout
 * masks). Weights are not drawn yet: the caller runs dsv_graph_init_params. */
dsv_status dsv_netfile_build(const char *text, const char *source,
                             const dsv_model_options *o, dsv_graph **g,
                             dsv_netfile_info *info);

#endif
