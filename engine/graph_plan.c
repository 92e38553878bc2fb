/*
 * Memory planning: where each activation, activation gradient and gradient
 * temporary of one batch shape lives in one arena, and the per-node backend
 * state slots.
 *
 * What must stay true: two buffers share memory only when their lifetimes
 * (in steps; under the batch schedule in barrier-separated segments, since
 * threads run ahead of each other between barriers) do not overlap; the
 * placement is deterministic; a plan is made once per (batch size, mode,
 * schedule, thread count) and reused, so the steady state allocates nothing.
 */
#include <stdint.h>
#include <string.h>

#include "graph_priv.h"
#include "internal/check.h"

void dsv_graph_plan_free_(plan *p)
{
    if (!p)
        return;
    dsv_free(p->arena);
    dsv_free(p->tgrads);
    free(p->act_off);
    free(p->grad_off);
    free(p->tmp_off);
    free(p->tloss);
    free(p->errs);
    free(p);
}

/* ---- memory planning -------------------------------------------------------- */

typedef struct pbuf {
    size_t size, off;
    int s, e; /* lifetime, inclusive, in steps or segments */
} pbuf;

/* Places every buffer at the lowest offset where it does not overlap, in
 * memory, a placed buffer whose lifetime overlaps its own (largest first).
 * Returns the arena size. */
static size_t place_buffers(pbuf *b, int n)
{
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    int *cand = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!order || !cand) {
        free(order);
        free(cand);
        return SIZE_MAX;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* insertion sort: sizes descending, index ascending (deterministic) */
    for (int i = 1; i < n; i++) {
        int k = order[i], j = i - 1;
        while (j >= 0 && (b[order[j]].size < b[k].size ||
                          (b[order[j]].size == b[k].size && order[j] > k))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    size_t total = 0;
    for (int oi = 0; oi < n; oi++) {
        pbuf *me = &b[order[oi]];
        int nc = 0;
        for (int pj = 0; pj < oi; pj++) {
            const pbuf *o = &b[order[pj]];
            if (o->s <= me->e && me->s <= o->e)
                cand[nc++] = order[pj];
        }
        for (int i = 1; i < nc; i++) { /* by offset */
            int k = cand[i], j = i - 1;
            while (j >= 0 && b[cand[j]].off > b[k].off) {
                cand[j + 1] = cand[j];
                j--;
            }
            cand[j + 1] = k;
        }
        size_t off = 0;
        for (int i = 0; i < nc; i++) {
            const pbuf *o = &b[cand[i]];
            if (off + me->size <= o->off)
                break;
            if (o->off + o->size > off)
                off = o->off + o->size;
        }
        me->off = off;
        if (off + me->size > total)
            total = off + me->size;
    }
    free(order);
    free(cand);
    return total;
}

static size_t round64(size_t x) { return (x + 63) / 64 * 64; }

/* Bytes of n rows of `row` values, rounded up to 64; false when that does not
 * fit in size_t. */
static bool rows_bytes(const dsv_graph *g, int64_t n, int64_t row, size_t *out)
{
    int64_t e;
    size_t b;
    if (!dsv_mul_ok(n, row, &e) || !dsv_mul_size_ok((size_t)e, g->esz, &b) ||
        b > SIZE_MAX - 63)
        return false;
    *out = round64(b);
    return true;
}

/* Backward step of node i: the loss node's forward (which also makes the
 * scores' gradient) is step K-1, the node before it runs backward at K. */
static int bstep(int K, int i) { return 2 * K - 2 - i; }

/* Segment of a step: barriers split the timeline; a barrier node's own step is
 * a segment of its own. Under the layer schedule every step is a segment. */
static int seg_of(const dsv_graph *g, const plan *p, int step)
{
    if (!p->batch)
        return step;
    int K = g->nnodes, seg = 0;
    for (int t = 0; t < step; t++) {
        int i = t < K ? t : 2 * K - 2 - t;
        if (dsv_graph_barrier_at_(g, p->train, i))
            seg += 2;
    }
    int i = step < K ? step : 2 * K - 2 - step;
    return seg + (dsv_graph_barrier_at_(g, p->train, i) ? 1 : 0);
}

static dsv_status plan_make(dsv_graph *g, int64_t n, bool train, bool batch, int threads,
                            plan **out)
{
    int K = g->nnodes, V = g->nvals;
    plan *p = calloc(1, sizeof(*p));
    pbuf *bufs = calloc((size_t)(2 * V + 2 * K + 1), sizeof(pbuf));
    int *who = calloc((size_t)(2 * V + 2 * K + 1), sizeof(int));
    if (!p || !bufs || !who)
        goto nomem;
    p->n = n;
    p->train = train;
    p->batch = batch;
    p->threads = batch ? threads : 0;
    p->act_off = calloc((size_t)V, sizeof(size_t));
    p->grad_off = calloc((size_t)V, sizeof(size_t));
    p->tmp_off = calloc((size_t)(2 * K), sizeof(size_t));
    p->tloss = calloc((size_t)(threads > 0 ? threads : 1), sizeof(double));
    p->errs = calloc((size_t)(threads > 0 ? threads : 1), sizeof(thread_err));
    if (!p->act_off || !p->grad_off || !p->tmp_off || !p->tloss || !p->errs)
        goto nomem;

    /* who[k]: 0..V-1 activation of value, V..2V-1 gradient, 2V.. temp */
    int nb = 0;
    for (int v = 0; v < V; v++) {
        const value *val = &g->vals[v];
        if (val->kind != VAL_NODE)
            continue;
        size_t sz;
        if (!rows_bytes(g, n, val->row, &sz))
            goto toobig;
        int prod = val->producer;
        /* a fused relu's output is written at its head's step and read (for
           the mask) at the relu's backward step */
        int fh = prod >= 0 ? g->nodes[prod].fuse_head : -1;
        if (fh >= 0)
            prod = fh;
        if (train) {
            int end = bstep(K, val->first_use);
            if (fh >= 0 && end < bstep(K, fh + 1))
                end = bstep(K, fh + 1);
            bufs[nb] = (pbuf){sz, 0, prod, end};
            who[nb++] = v;
            /* a pool fusing with the conv's relu writes the conv's output
               gradient at the pool's backward step */
            int gs = bstep(K, val->last_use);
            if (val->producer >= 0 && g->nodes[val->producer].fuse_pool >= 0)
                gs = bstep(K, g->nodes[val->producer].fuse_pool);
            bufs[nb] = (pbuf){sz, 0, gs, bstep(K, val->producer)};
            who[nb++] = V + v;
        } else {
            int end = val->last_use == g->loss_node ? K : val->last_use;
            bufs[nb] = (pbuf){sz, 0, prod, end};
            who[nb++] = v;
        }
    }
    if (train)
        for (int i = 0; i < K; i++)
            for (int k = 0; k < 2; k++) {
                dsv_value v = g->nodes[i].in[k];
                if (v < 0 || g->vals[v].kind != VAL_NODE || g->nodes[i].direct[k])
                    continue;
                size_t sz;
                if (!rows_bytes(g, n, g->vals[v].row, &sz))
                    goto toobig;
                bufs[nb] = (pbuf){sz, 0, bstep(K, i), bstep(K, i)};
                who[nb++] = 2 * V + 2 * i + k;
            }
    for (int k = 0; k < nb; k++) {
        /* the arena is at most this sum, so placing cannot overflow either */
        if (__builtin_add_overflow(p->unshared, bufs[k].size, &p->unshared))
            goto toobig;
        bufs[k].s = seg_of(g, p, bufs[k].s);
        bufs[k].e = seg_of(g, p, bufs[k].e);
    }
    p->bytes = place_buffers(bufs, nb);
    if (p->bytes == SIZE_MAX)
        goto nomem;
    for (int k = 0; k < nb; k++) {
        int w = who[k];
        if (w < V)
            p->act_off[w] = bufs[k].off;
        else if (w < 2 * V)
            p->grad_off[w - V] = bufs[k].off;
        else
            p->tmp_off[w - 2 * V] = bufs[k].off;
    }
    p->arena = dsv_alloc(p->bytes ? p->bytes : 64);
    if (!p->arena)
        goto nomem;
    if (batch && train && threads > 1) {
        size_t gb = (size_t)(threads - 1) * (size_t)g->np * g->esz;
        p->tgrads = dsv_alloc(gb ? gb : 64);
        if (!p->tgrads)
            goto nomem;
        memset(p->tgrads, 0, gb); /* batch-norm entries stay zero */
    }
    free(bufs);
    free(who);
    g->plan_allocs++;
    *out = p;
    return DSV_OK;
nomem:
    free(bufs);
    free(who);
    dsv_graph_plan_free_(p);
    return dsv_error(DSV_NOMEM, "graph: cannot allocate activation memory for batch %lld",
                     (long long)n);
toobig:
    free(bufs);
    free(who);
    dsv_graph_plan_free_(p);
    return dsv_error(DSV_NOMEM, "graph: the activations of a batch of %lld do not fit in "
                     "the address space", (long long)n);
}

dsv_status dsv_graph_plan_get_(dsv_graph *g, int64_t n, bool train, bool batch,
                               int threads, plan **out)
{
    int key_threads = batch ? threads : 0;
    g->clock++;
    for (int i = 0; i < g->nplans; i++) {
        plan *p = g->plans[i];
        if (p->n == n && p->train == train && p->batch == batch &&
            p->threads == key_threads) {
            p->last_used = g->clock;
            *out = p;
            return DSV_OK;
        }
    }
    plan *p = NULL;
    dsv_status s = plan_make(g, n, train, batch, threads, &p);
    if (s)
        return s;
    p->last_used = g->clock;
    if (g->nplans == MAX_PLANS) { /* evict the least recently used */
        int lru = 0;
        for (int i = 1; i < g->nplans; i++)
            if (g->plans[i]->last_used < g->plans[lru]->last_used)
                lru = i;
        if (g->last == g->plans[lru])
            g->last = NULL;
        dsv_graph_plan_free_(g->plans[lru]);
        g->plans[lru] = g->plans[--g->nplans];
    }
    g->plans[g->nplans++] = p;
    *out = p;
    return DSV_OK;
}

dsv_status dsv_graph_ensure_sets_(dsv_graph *g, int sets)
{
    if (sets <= g->nsets)
        return DSV_OK;
    for (int i = 0; i < g->nnodes; i++) {
        node *nd = &g->nodes[i];
        dsv_state *s = realloc(nd->slots, sizeof(dsv_state) * 2 * (size_t)sets);
        if (!s)
            return dsv_error(DSV_NOMEM, "graph: out of memory");
        memset(s + 2 * g->nsets, 0, sizeof(dsv_state) * 2 * (size_t)(sets - g->nsets));
        nd->slots = s;
    }
    g->nsets = sets;
    return DSV_OK;
}

dsv_status dsv_graph_planned_bytes(dsv_graph *g, int64_t n, bool train, size_t *bytes,
                                   size_t *unshared)
{
    if (!g->final)
        return dsv_error(DSV_INVALID, "graph: finalize it before planning");
    if (n < 1)
        return dsv_error(DSV_INVALID, "graph: batch size %lld must be >= 1", (long long)n);
    plan *p;
    dsv_status s = dsv_graph_plan_get_(g, n, train, false, 0, &p);
    if (s)
        return s;
    if (bytes)
        *bytes = p->bytes;
    if (unshared)
        *unshared = p->unshared;
    return DSV_OK;
}
