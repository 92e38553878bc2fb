/* placeholder: filled in by its owner */
#ifndef DASECV_GRAPH_H
#define DASECV_GRAPH_H
#include "tensor.h"
#endif
