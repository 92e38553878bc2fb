/*
 * dasecv: a multithreaded CPU engine that trains and runs convolutional
 * networks. This header includes the whole public API.
 */
#ifndef DASECV_H
#define DASECV_H

#include "status.h"
#include "tensor.h"
#include "ops.h"
#include "npy.h"
#include "npz.h"
#include "gradcheck.h"
#include "graph.h"
#include "model.h"
#include "data.h"
#include "solver.h"
#include "image.h"

#endif
