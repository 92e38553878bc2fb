/* placeholder: filled in by its owner */
#include "dasecv/dasecv.h"
