/*
 * Whole training steps (dsv_model_loss: forward, loss, backward) of the
 * course's models, per backend and schedule. Registered once the model API
 * is built in.
 */
#include "common.h"

void dsv_bench_register_models(void)
{
}
