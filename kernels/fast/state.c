/*
 * Per-node state of the fast backend: a reusable scratch buffer and the
 * max-pool argmax. A node's state lives in c->state->ptr between calls and is
 * freed through the table's state_free; calls without a state slot get
 * per-call buffers instead, so every kernel also works stateless.
 */
#include <string.h>

#include "fast.h"

void dsv_fast_state_free(void *state)
{
    dsv_fast_state *st = state;
    if (!st)
        return;
    dsv_free(st->scratch);
    dsv_free(st->argmax);
    dsv_free(st);
}

dsv_fast_state *dsv_fast_state_get(dsv_call *c, dsv_status *s)
{
    *s = DSV_OK;
    if (!c->state)
        return NULL;
    if (!c->state->ptr) {
        dsv_fast_state *st = dsv_alloc(sizeof(*st));
        if (!st) {
            *s = dsv_error(DSV_NOMEM, "%s: out of memory for the node state",
                           dsv_op_name(c->op));
            return NULL;
        }
        memset(st, 0, sizeof(*st));
        c->state->ptr = st;
        c->state->owner = DSV_BACKEND_FAST; /* also when called directly */
    }
    return c->state->ptr;
}

void *dsv_fast_scratch(dsv_call *c, size_t bytes)
{
    dsv_status s;
    dsv_fast_state *st = dsv_fast_state_get(c, &s);
    if (s)
        return NULL;
    if (!st)
        return dsv_alloc(bytes ? bytes : 1);
    if (st->scratch_bytes < bytes) {
        dsv_free(st->scratch);
        st->scratch_bytes = 0;
        st->scratch = dsv_alloc(bytes);
        if (!st->scratch)
            return NULL;
        st->scratch_bytes = bytes;
    }
    return st->scratch;
}

void dsv_fast_scratch_release(dsv_call *c, void *p)
{
    /* the state keeps its buffer for the next call */
    if (!c->state || !c->state->ptr || ((dsv_fast_state *)c->state->ptr)->scratch != p)
        dsv_free(p);
}

int dsv_fast_nthreads(const dsv_call *c)
{
    int n = c->nthreads > 0 ? c->nthreads : dsv_get_num_threads();
    return n < 1 ? 1 : n;
}
