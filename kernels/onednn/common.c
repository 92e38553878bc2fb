/*
 * Shared plumbing of the onednn backend (see common.h for the rules).
 *
 * The engine is global and created once; everything else (streams,
 * primitives, scratchpads, reorder buffers) belongs to one per-node state, so
 * states never share mutable oneDNN objects between threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <omp.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "common.h"
#include "internal/fingerprint.h"

dsv_status dsv_odn_status(dnnl_status_t st, const char *what)
{
    if (st == dnnl_success)
        return DSV_OK;
    dsv_status s = st == dnnl_unimplemented   ? DSV_UNSUPPORTED
                   : st == dnnl_out_of_memory ? DSV_NOMEM
                                              : DSV_BACKEND;
    return dsv_error(s, "onednn: %s: %s", what, dnnl_status2str(st));
}

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_status_t engine_st;

static void engine_init(void)
{
    engine_st = dnnl_engine_create(&engine, dnnl_cpu, 0);
}

dsv_status dsv_odn_engine(dnnl_engine_t *e)
{
    pthread_once(&engine_once, engine_init);
    *e = engine;
    return dsv_odn_status(engine_st, "creating the CPU engine");
}

int dsv_odn_nthreads(const dsv_call *c)
{
    return c->nthreads > 0 ? c->nthreads : dsv_get_num_threads();
}

int dsv_odn_threads_begin(int n)
{
    int saved = omp_get_max_threads();
    if (saved != n)
        omp_set_num_threads(n);
    return saved;
}

void dsv_odn_threads_end(int saved)
{
    if (omp_get_max_threads() != saved)
        omp_set_num_threads(saved);
}

dnnl_memory_desc_t dsv_odn_md(int ndims, const int64_t *dims,
                              dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d;
    for (int i = 0; i < ndims; i++)
        d[i] = dims[i];
    /* Only fails for bad tags or dims, which callers never pass; a zero md
       then makes the next creation fail with a message. */
    if (dnnl_memory_desc_init_by_tag(&md, ndims, d, dnnl_f32, tag) != dnnl_success)
        memset(&md, 0, sizeof(md));
    return md;
}

const char *dsv_odn_impl_name(const_dnnl_primitive_desc_t pd)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) !=
            dnnl_success ||
        !name)
        return "";
    return name;
}

dsv_status dsv_odn_pd_create(dnnl_primitive_desc_t *pd,
                             const_dnnl_op_desc_t op_desc,
                             const_dnnl_primitive_desc_t hint,
                             const char *prefer, const char *what)
{
    dnnl_engine_t eng;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_iterator_t it = NULL;
    dnnl_primitive_desc_t first = NULL;
    dsv_status s;

    *pd = NULL;
    if ((s = dsv_odn_engine(&eng)))
        return s;
    if ((s = dsv_odn_status(dnnl_primitive_attr_create(&attr), what)) ||
        (s = dsv_odn_status(
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
             what)) ||
        (s = dsv_odn_status(
             dnnl_primitive_desc_iterator_create(&it, op_desc, attr, eng, hint),
             what)))
        goto out;
    first = dnnl_primitive_desc_iterator_fetch(it);
    if (!first) {
        s = dsv_error(DSV_BACKEND, "onednn: %s: no implementation", what);
        goto out;
    }
    if (prefer && strcmp(dsv_odn_impl_name(first), prefer) != 0) {
        /* An exact name wins; else the first that contains it; else the
           first of all. */
        dnnl_primitive_desc_t partial = strstr(dsv_odn_impl_name(first), prefer) ? first : NULL;
        while (dnnl_primitive_desc_iterator_next(it) == dnnl_success) {
            dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
            if (!cand)
                continue;
            if (!strcmp(dsv_odn_impl_name(cand), prefer)) {
                if (partial && partial != first)
                    dnnl_primitive_desc_destroy(partial);
                partial = cand;
                break;
            }
            if (!partial && strstr(dsv_odn_impl_name(cand), prefer))
                partial = cand;
            else
                dnnl_primitive_desc_destroy(cand);
        }
        if (partial && partial != first) {
            dnnl_primitive_desc_destroy(first);
            first = partial;
        }
    }
    *pd = first;
out:
    if (it)
        dnnl_primitive_desc_iterator_destroy(it);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return s;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* ---- implementation choices, measured once per configuration ------------- */

typedef struct choice {
    int64_t key[DSV_ODN_KEY_MAX];
    int nkey;
    char name[64];
} choice;

#define CHOICES 128
static choice choices[CHOICES];
static int nchoices, next_evict;
static pthread_mutex_t choices_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t tuning_lock = PTHREAD_MUTEX_INITIALIZER;

static choice *choice_find(const int64_t *key, int nkey)
{
    for (int i = 0; i < nchoices; i++)
        if (choices[i].nkey == nkey &&
            !memcmp(choices[i].key, key, sizeof(*key) * (size_t)nkey))
            return &choices[i];
    return NULL;
}

static void choice_get(const int64_t *key, int nkey, char name[64])
{
    pthread_mutex_lock(&choices_lock);
    choice *ch = choice_find(key, nkey);
    memcpy(name, ch ? ch->name : "", ch ? sizeof(ch->name) : 1);
    pthread_mutex_unlock(&choices_lock);
}

static void choice_put(const int64_t *key, int nkey, const char *name)
{
    pthread_mutex_lock(&choices_lock);
    choice *ch = choice_find(key, nkey);
    if (!ch) {
        if (nchoices < CHOICES) {
            ch = &choices[nchoices++];
        } else { /* forget the oldest */
            ch = &choices[next_evict];
            next_evict = (next_evict + 1) % CHOICES;
        }
        memcpy(ch->key, key, sizeof(*key) * (size_t)nkey);
        ch->nkey = nkey;
    }
    snprintf(ch->name, sizeof(ch->name), "%s", name);
    pthread_mutex_unlock(&choices_lock);
}

bool dsv_odn_choice_at(int i, int64_t *key, int *nkey, char *name, size_t size)
{
    pthread_mutex_lock(&choices_lock);
    bool ok = i >= 0 && i < nchoices;
    if (ok) {
        memcpy(key, choices[i].key, sizeof(*key) * (size_t)choices[i].nkey);
        *nkey = choices[i].nkey;
        snprintf(name, size, "%s", choices[i].name);
    }
    pthread_mutex_unlock(&choices_lock);
    return ok;
}

dsv_status dsv_odn_choice_set(const int64_t *key, int nkey, const char *name)
{
    if (nkey < 1 || nkey > DSV_ODN_KEY_MAX || !name[0] ||
        strlen(name) >= sizeof(choices[0].name))
        return dsv_error(DSV_INVALID, "onednn: a choice needs 1 to %d key values and a "
                         "name of 1 to %zu characters", DSV_ODN_KEY_MAX,
                         sizeof(choices[0].name) - 1);
    choice_put(key, nkey, name);
    return DSV_OK;
}

/* Off on a thread while "auto" times oneDNN against fast (backend_auto.c):
 * its trials take oneDNN's first implementation, and a node that then runs
 * on oneDNN tunes its own state. Timing every candidate of every trial would
 * cost more than the trials. */
static _Thread_local bool tuning_on = true;

void dsv_odn_set_tuning(bool on) { tuning_on = on; }

/* Best of five runs after a warm-up, on zeroed buffers in the candidate's
 * layouts (zero is a valid pooling workspace too); negative if it fails. */
static double time_candidate(const_dnnl_primitive_desc_t pd, dnnl_stream_t stream,
                             const dsv_odn_argq *q, int n)
{
    dnnl_engine_t eng;
    dsv_odn_prim pr;
    dnnl_exec_arg_t args[DSV_ODN_KEY_MAX + 1];
    int made = 0;
    double best = -1;
    if (n > DSV_ODN_KEY_MAX || dsv_odn_engine(&eng) ||
        dsv_odn_prim_make(&pr, pd, "timing a candidate"))
        return -1;
    for (; made < n; made++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, q[made].what, q[made].index);
        void *p = NULL;
        args[made].arg = q[made].arg;
        if (!md || dnnl_memory_create(&args[made].memory, md, eng,
                                      DNNL_MEMORY_ALLOCATE) != dnnl_success)
            goto out;
        if (dnnl_memory_get_data_handle(args[made].memory, &p) == dnnl_success && p)
            memset(p, 0, dnnl_memory_desc_get_size(md));
    }
    for (int i = 0; i < 6; i++) {
        double t0 = now_ms();
        if (dsv_odn_prim_run(&pr, stream, n, args, "timing a candidate") ||
            dnnl_stream_wait(stream) != dnnl_success) {
            best = -1;
            break;
        }
        double ms = now_ms() - t0;
        if (i > 0 && (best < 0 || ms < best))
            best = ms;
    }
out:
    while (made-- > 0)
        dnnl_memory_destroy(args[made].memory);
    dsv_odn_prim_free(&pr);
    return best;
}

dsv_status dsv_odn_pd_tuned(dnnl_primitive_desc_t *pd,
                            const_dnnl_op_desc_t op_desc,
                            const_dnnl_primitive_desc_t hint,
                            const int64_t *key, int nkey, dnnl_stream_t stream,
                            const dsv_odn_argq *q, int nq, const char *what)
{
    dnnl_engine_t eng;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_iterator_t it = NULL;
    dnnl_primitive_desc_t first = NULL, best = NULL;
    double best_ms = 0;
    char name[64];
    dsv_status s;

    *pd = NULL;
    DSV_ASSERT(nkey <= DSV_ODN_KEY_MAX);
    choice_get(key, nkey, name);
    if (name[0])
        return dsv_odn_pd_create(pd, op_desc, hint, name, what);
    if (!tuning_on)
        return dsv_odn_pd_create(pd, op_desc, hint, NULL, what);
    /* One tuning at a time in the process: under the batch schedule every
       thread builds its own state for the same configuration, and timing the
       same candidates concurrently (the primitive cache hands both threads the
       same implementation objects) overran a buffer inside oneDNN under ASan.
       The loser of the race finds the winner's choice. */
    pthread_mutex_lock(&tuning_lock);
    choice_get(key, nkey, name);
    if (name[0]) {
        pthread_mutex_unlock(&tuning_lock);
        return dsv_odn_pd_create(pd, op_desc, hint, name, what);
    }
    /* Candidates are timed on one thread: the machine may be busy, and a
       multi-threaded run then mostly measures waits for a descheduled thread,
       which would make the choice random. The ranking carries over. */
    int saved = dsv_odn_threads_begin(1);
    if ((s = dsv_odn_engine(&eng)))
        goto out;
    if ((s = dsv_odn_status(dnnl_primitive_attr_create(&attr), what)) ||
        (s = dsv_odn_status(
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
             what)) ||
        (s = dsv_odn_status(
             dnnl_primitive_desc_iterator_create(&it, op_desc, attr, eng, hint),
             what)))
        goto out;
    do {
        dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
        if (!cand)
            continue;
        if (!first)
            first = cand;
        /* reference kernels ("ref:any", "bnorm_ref:any") are orders of
           magnitude slower: not worth a run */
        const char *impl = dsv_odn_impl_name(cand);
        bool ref = !strncmp(impl, "ref", 3) || strstr(impl, "_ref:");
        double ms = ref ? -1 : time_candidate(cand, stream, q, nq);
        if (ms >= 0 && (!best || ms < best_ms)) {
            if (best && best != first)
                dnnl_primitive_desc_destroy(best);
            best = cand, best_ms = ms;
        } else if (cand != first) {
            dnnl_primitive_desc_destroy(cand);
        }
    } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
    if (!first) {
        s = dsv_error(DSV_BACKEND, "onednn: %s: no implementation", what);
        goto out;
    }
    snprintf(name, sizeof(name), "%s", dsv_odn_impl_name(best ? best : first));
    choice_put(key, nkey, name);
out:
    if (best && best != first)
        dnnl_primitive_desc_destroy(best);
    if (first)
        dnnl_primitive_desc_destroy(first);
    if (it)
        dnnl_primitive_desc_iterator_destroy(it);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    dsv_odn_threads_end(saved);
    pthread_mutex_unlock(&tuning_lock);
    /* the real one, for the caller's thread count */
    return s ? s : dsv_odn_pd_create(pd, op_desc, hint, name, what);
}

static int64_t prims_made, weight_reorders;

dsv_odn_counts dsv_odn_counts_get(void)
{
    return (dsv_odn_counts){__atomic_load_n(&prims_made, __ATOMIC_RELAXED),
                            __atomic_load_n(&weight_reorders, __ATOMIC_RELAXED)};
}

dsv_status dsv_odn_prim_make(dsv_odn_prim *pr, const_dnnl_primitive_desc_t pd,
                             const char *what)
{
    __atomic_add_fetch(&prims_made, 1, __ATOMIC_RELAXED);
    dnnl_engine_t eng;
    dsv_status s;
    memset(pr, 0, sizeof(*pr));
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_primitive_create(&pr->p, pd), what)))
        return s;
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (smd && dnnl_memory_desc_get_size(smd) > 0 &&
        (s = dsv_odn_status(dnnl_memory_create(&pr->scratch, smd, eng,
                                               DNNL_MEMORY_ALLOCATE),
                            what))) {
        dsv_odn_prim_free(pr);
        return s;
    }
    return DSV_OK;
}

dsv_status dsv_odn_prim_run(dsv_odn_prim *pr, dnnl_stream_t s, int nargs,
                            dnnl_exec_arg_t *args, const char *what)
{
    if (pr->scratch)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pr->scratch};
    if (!omp_in_parallel())
        return dsv_odn_status(dnnl_primitive_execute(pr->p, s, nargs, args), what);
    /* Inside the caller's parallel region oneDNN runs its kernels inline on
       this thread, and a kernel with an orphaned `omp barrier` (the ncsp batch
       norm) would bind it to the caller's team: it waits for threads that are
       busy elsewhere (deadlock) or meets them at their own barriers. A region
       of one thread gives such barriers a team of their own. */
    dnnl_status_t st = dnnl_success;
#pragma omp parallel num_threads(1)
    st = dnnl_primitive_execute(pr->p, s, nargs, args);
    return dsv_odn_status(st, what);
}

void dsv_odn_prim_free(dsv_odn_prim *pr)
{
    if (pr->p)
        dnnl_primitive_destroy(pr->p);
    if (pr->scratch)
        dnnl_memory_destroy(pr->scratch);
    memset(pr, 0, sizeof(*pr));
}

dsv_status dsv_odn_edge_make(dsv_odn_edge *e, const dnnl_memory_desc_t *user_md,
                             const dnnl_memory_desc_t *prim_md, bool input,
                             const char *what)
{
    dnnl_engine_t eng;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dsv_status s;

    memset(e, 0, sizeof(*e));
    e->input = input;
    if (!prim_md)
        return dsv_error(DSV_BACKEND, "onednn: %s: no memory descriptor", what);
    if ((s = dsv_odn_engine(&eng)) ||
        (s = dsv_odn_status(dnnl_memory_create(&e->user, user_md, eng,
                                               DNNL_MEMORY_NONE),
                            what)))
        goto fail;
    if (dnnl_memory_desc_equal(user_md, prim_md))
        return DSV_OK;
    if ((s = dsv_odn_status(dnnl_memory_create(&e->inner, prim_md, eng,
                                               DNNL_MEMORY_ALLOCATE),
                            what)) ||
        (s = dsv_odn_status(dnnl_primitive_attr_create(&attr), what)) ||
        (s = dsv_odn_status(
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
             what)) ||
        (s = dsv_odn_status(
             input ? dnnl_reorder_primitive_desc_create(&rpd, user_md, eng, prim_md, eng, attr)
                   : dnnl_reorder_primitive_desc_create(&rpd, prim_md, eng, user_md, eng, attr),
             what)) ||
        (s = dsv_odn_prim_make(&e->reorder, rpd, what)))
        goto fail;
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    return DSV_OK;
fail:
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    dsv_odn_edge_free(e);
    return s;
}

dnnl_memory_t dsv_odn_edge_mem(const dsv_odn_edge *e)
{
    return e->inner ? e->inner : e->user;
}

dsv_status dsv_odn_edge_in(dsv_odn_edge *e, dnnl_stream_t s, const void *data)
{
    dsv_status st = dsv_odn_status(dnnl_memory_set_data_handle(e->user, (void *)data),
                                   "binding a buffer");
    if (st || !e->input || !e->inner)
        return st;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, e->user}, {DNNL_ARG_TO, e->inner}};
    return dsv_odn_prim_run(&e->reorder, s, 2, args, "reorder");
}

dsv_status dsv_odn_edge_in_cached(dsv_odn_edge *e, dnnl_stream_t s, const float *data,
                                  int64_t n, int nthreads)
{
    if (!e->inner)
        return dsv_odn_edge_in(e, s, data);
    uint64_t fp = dsv_fingerprint(data, n, nthreads);
    if (e->cached && e->src == data && e->fp == fp)
        return DSV_OK;
    e->cached = false;
    dsv_status st = dsv_odn_edge_in(e, s, data);
    if (st)
        return st;
    __atomic_add_fetch(&weight_reorders, 1, __ATOMIC_RELAXED);
    e->cached = true, e->src = data, e->fp = fp;
    return DSV_OK;
}

dsv_status dsv_odn_edge_out(dsv_odn_edge *e, dnnl_stream_t s)
{
    if (e->input || !e->inner)
        return DSV_OK;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, e->inner}, {DNNL_ARG_TO, e->user}};
    return dsv_odn_prim_run(&e->reorder, s, 2, args, "reorder");
}

void dsv_odn_edge_free(dsv_odn_edge *e)
{
    if (e->user)
        dnnl_memory_destroy(e->user);
    if (e->inner)
        dnnl_memory_destroy(e->inner);
    dsv_odn_prim_free(&e->reorder);
    memset(e, 0, sizeof(*e));
}

static uint32_t fingerprint_range(const float *x, int64_t i0, int64_t i1)
{
    uint32_t h = 0;
    for (int64_t i = i0; i < i1; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof(b));
        h += b ^ (uint32_t)i;
    }
    return h;
}

uint32_t dsv_odn_fingerprint(const float *x, int64_t n, int nthreads)
{
    /* A sum modulo 2^32: any split gives the same value. (50, 32, 32, 32)
       takes 0.25 ms on one thread, 0.13-0.17 ms on two. */
    if (nthreads < 2 || n < (1 << 16) || omp_in_parallel())
        return fingerprint_range(x, 0, n);
    uint32_t h = 0;
#pragma omp parallel num_threads(nthreads) reduction(+ : h)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        h += fingerprint_range(x, n * t / nt, n * (t + 1) / nt);
    }
    return h;
}

void dsv_odn_state_free(void *state)
{
    dsv_odn_state *st = state;
    if (st)
        st->free(st);
}

/* What a node's slot holds: one state per configuration. Its base.op is
 * DSV_OP_COUNT, which no op state has. */
typedef struct configs {
    dsv_odn_state base;
    uint64_t tick;
    struct config {
        dsv_odn_state *st; /* NULL: free entry */
        dsv_op op;
        int nkey;
        int64_t key[DSV_ODN_KEY_MAX];
        uint64_t used;
    } e[DSV_ODN_CONFIGS];
} configs;

static void configs_free(dsv_odn_state *base)
{
    configs *cs = (configs *)base;
    for (int i = 0; i < DSV_ODN_CONFIGS; i++)
        dsv_odn_state_free(cs->e[i].st);
    dsv_free(cs);
}

static dsv_odn_state *state_new(dsv_op op, size_t size, void (*free_fn)(dsv_odn_state *))
{
    dsv_odn_state *st = dsv_alloc(size);
    if (!st)
        return NULL;
    memset(st, 0, size);
    st->op = op;
    st->free = free_fn;
    return st;
}

dsv_status dsv_odn_state_get(dsv_call *c, dsv_op op, size_t size,
                             void (*free_fn)(dsv_odn_state *), const int64_t *key,
                             int nkey, dsv_odn_state **out)
{
    DSV_ASSERT(nkey >= 1 && nkey <= DSV_ODN_KEY_MAX);
    *out = NULL;
    if (!c->state) {
        if (!(*out = state_new(op, size, free_fn)))
            goto nomem;
        return DSV_OK;
    }
    configs *cs = c->state->ptr;
    if (!cs) {
        cs = (configs *)state_new(DSV_OP_COUNT, sizeof(*cs), configs_free);
        if (!cs)
            goto nomem;
        c->state->ptr = cs;
        c->state->owner = DSV_BACKEND_ONEDNN;
    }
    DSV_ASSERT(cs->base.op == DSV_OP_COUNT);
    struct config *hit = NULL, *lru = &cs->e[0];
    for (int i = 0; i < DSV_ODN_CONFIGS && !hit; i++) {
        struct config *e = &cs->e[i];
        if (e->st && e->op == op && e->nkey == nkey &&
            !memcmp(e->key, key, sizeof(*key) * (size_t)nkey))
            hit = e;
        else if (!e->st ? lru->st != NULL : lru->st && e->used < lru->used)
            lru = e;
    }
    if (!hit) {
        dsv_odn_state *st = state_new(op, size, free_fn);
        if (!st)
            goto nomem;
        hit = lru;
        dsv_odn_state_free(hit->st);
        hit->st = st, hit->op = op, hit->nkey = nkey;
        memcpy(hit->key, key, sizeof(*key) * (size_t)nkey);
    }
    hit->used = ++cs->tick;
    *out = hit->st;
    return DSV_OK;
nomem:
    return dsv_error(DSV_NOMEM, "%s: out of memory for the onednn state", dsv_op_name(op));
}
