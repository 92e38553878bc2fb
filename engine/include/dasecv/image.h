/* placeholder: filled in by its owner */
#ifndef DASECV_IMAGE_H
#define DASECV_IMAGE_H
#include "tensor.h"
#endif
