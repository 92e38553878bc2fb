/*
 * The execution plan: every decision "auto" makes by timing, as text, so
 * that a checkpoint or a plan file can replay it (graph.h has the format).
 *
 * Two kinds of decision exist: the graph's schedule per (batch size,
 * threads), kept in the graph, and the implementation a backend picked by
 * timing per layer configuration, kept process-wide by that backend
 * (backend_table.h, choice_at/choice_set). With them go the fusion patterns
 * allowed (graph_fuse.c), so a replay fuses as the run that saved it did.
 * The backend "auto" gives relu, pooling and batch norm configurations is
 * timed too (backend_auto.c, process-wide) and recorded in "backend" lines;
 * for the other ops it is a fixed rule (backend.c) that needs no record.
 *
 * What must stay true: applying a plan is all or nothing (the whole text is
 * checked before anything changes), and a plan names the model it was made
 * for, so one made for another network is refused rather than half applied.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_priv.h"
#include "internal/arrays.h"
#include "internal/backend_table.h"
#include "internal/check.h"

#define PLAN_MAGIC "dasecv-plan 1"

/* FNV-1a over the dtype and each node's name and op: what distinguishes two
 * networks with the same node and parameter counts. */
static uint64_t fingerprint(const dsv_graph *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t prime = 0x100000001b3ull;
    h = (h ^ (uint64_t)g->dtype) * prime;
    for (int i = 0; i < g->nnodes; i++) {
        for (const char *p = g->nodes[i].name; *p; p++)
            h = (h ^ (uint8_t)*p) * prime;
        h = (h ^ 0xffu) * prime;
        h = (h ^ (uint64_t)g->nodes[i].op) * prime;
    }
    return h;
}

/* A growing malloc'ed string; on failure it keeps failing and says so once. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)k;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

dsv_status dsv_graph_plan_text(dsv_graph *g, char **text)
{
    *text = NULL;
    if (!g || !g->final)
        return dsv_error(DSV_INVALID, "plan: the graph is not finalized");
    sbuf b = {0};
    sb_printf(&b, "%s\nmodel %d %" PRId64 " %016" PRIx64 "\n", PLAN_MAGIC, g->nnodes,
              g->np, fingerprint(g));
    for (int k = 0; k < DSV_FUSE_COUNT; k++)
        sb_printf(&b, "fuse %s %s\n", dsv_graph_fuse_name_(k), g->fuse_on[k] ? "on" : "off");
    for (int i = 0; i < g->nauto; i++)
        sb_printf(&b, "schedule %" PRId64 " %d %s\n", g->autoc[i].n, g->autoc[i].threads,
                  dsv_schedule_name(g->autoc[i].choice));
    {
        dsv_op op;
        int64_t key[DSV_AUTO_KEY_MAX];
        int nkey;
        dsv_backend bk;
        for (int i = 0; dsv_auto_decision_at(i, &op, key, &nkey, &bk); i++) {
            sb_printf(&b, "backend %s ", dsv_op_name(op));
            for (int k = 0; k < nkey; k++)
                sb_printf(&b, "%s%" PRId64, k ? "," : "", key[k]);
            sb_printf(&b, " %s\n", dsv_backend_name(bk));
        }
    }
    for (int bk = 0; bk < DSV_BACKEND_AUTO; bk++) {
        const dsv_backend_table *t = dsv_backend_get((dsv_backend)bk);
        if (!t || !t->choice_at)
            continue;
        int64_t key[DSV_CHOICE_KEY_MAX];
        int nkey;
        char name[DSV_CHOICE_NAME_MAX];
        for (int i = 0; t->choice_at(i, key, &nkey, name, sizeof(name)); i++) {
            sb_printf(&b, "choice %s ", dsv_backend_name((dsv_backend)bk));
            for (int k = 0; k < nkey; k++)
                sb_printf(&b, "%s%" PRId64, k ? "," : "", key[k]);
            sb_printf(&b, " %s\n", name);
        }
    }
    if (b.failed) {
        free(b.p);
        return dsv_error(DSV_NOMEM, "plan: out of memory");
    }
    *text = b.p;
    return DSV_OK;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct sched_entry {
    int64_t n;
    int threads;
    dsv_schedule choice;
} sched_entry;

typedef struct choice_entry {
    dsv_backend backend;
    int64_t key[DSV_CHOICE_KEY_MAX];
    int nkey;
    char name[DSV_CHOICE_NAME_MAX];
} choice_entry;

typedef struct backend_entry {
    dsv_op op;
    int64_t key[DSV_AUTO_KEY_MAX];
    int nkey;
    dsv_backend backend;
} backend_entry;

/* Everything a plan text holds, checked; nothing applied yet. */
typedef struct parsed {
    sched_entry sched[MAX_AUTO];
    int nsched;
    choice_entry *choices;
    int nchoices, cap;
    backend_entry *backends;
    int nbackends, bcap;
    bool have_model;
    signed char fuse[DSV_FUSE_COUNT]; /* -1 not given, else on */
} parsed;

static bool parse_i64(const char *s, int64_t *v, char **end)
{
    errno = 0;
    long long x = strtoll(s, end, 10);
    if (*end == s || errno)
        return false;
    *v = x;
    return true;
}

static dsv_status bad_line(const char *src, int line, const char *what)
{
    return dsv_error(DSV_INVALID, "%s:%d: %s", src, line, what);
}

static dsv_status parse_model(const dsv_graph *g, const char *rest, const char *src,
                              int line)
{
    int nodes;
    long long np;
    unsigned long long fp;
    char extra;
    if (sscanf(rest, "%d %lld %llx %c", &nodes, &np, &fp, &extra) != 3)
        return bad_line(src, line, "expected 'model NODES PARAMETERS FINGERPRINT'");
    uint64_t mine = fingerprint(g);
    if (nodes != g->nnodes || np != g->np || fp != mine)
        return dsv_error(DSV_INVALID,
                         "%s:%d: the plan was made for another model (%d nodes, %lld "
                         "parameter values, fingerprint %016llx); this one has %d nodes, "
                         "%lld parameter values, fingerprint %016llx",
                         src, line, nodes, np, fp, g->nnodes, (long long)g->np,
                         (unsigned long long)mine);
    return DSV_OK;
}

static dsv_status parse_schedule(parsed *p, const char *rest, const char *src, int line)
{
    long long n;
    int threads;
    char name[16], extra;
    dsv_schedule sc;
    if (sscanf(rest, "%lld %d %15s %c", &n, &threads, name, &extra) != 3 || n < 1 ||
        threads < 1)
        return bad_line(src, line,
                        "expected 'schedule BATCH THREADS layer|batch' with BATCH and "
                        "THREADS >= 1");
    if (dsv_schedule_from_name(name, &sc) || sc == DSV_SCHEDULE_AUTO)
        return bad_line(src, line, "the schedule must be layer or batch");
    for (int i = 0; i < p->nsched; i++)
        if (p->sched[i].n == n && p->sched[i].threads == threads)
            return bad_line(src, line, "a second schedule for the same batch and threads");
    if (p->nsched == MAX_AUTO)
        return bad_line(src, line, "too many schedule lines (at most 16)");
    p->sched[p->nsched++] = (sched_entry){.n = n, .threads = threads, .choice = sc};
    return DSV_OK;
}

/* 1 to max integers separated by commas, nothing else. */
static bool parse_key(const char *s, int64_t *key, int *nkey, int max)
{
    *nkey = 0;
    for (;;) {
        char *end;
        if (*nkey == max || !parse_i64(s, &key[*nkey], &end))
            return false;
        ++*nkey;
        if (*end == '\0')
            return true;
        if (*end != ',')
            return false;
        s = end + 1;
    }
}

static dsv_status parse_choice(parsed *p, char *rest, const char *src, int line)
{
    char *save;
    char *bname = strtok_r(rest, " \t", &save);
    char *keys = strtok_r(NULL, " \t", &save);
    char *name = strtok_r(NULL, " \t", &save);
    if (!bname || !keys || !name || strtok_r(NULL, " \t", &save))
        return bad_line(src, line, "expected 'choice BACKEND KEY,KEY,... IMPLEMENTATION'");
    choice_entry e = {0};
    if (!parse_key(keys, e.key, &e.nkey, DSV_CHOICE_KEY_MAX))
        return bad_line(src, line, "the key must be 1 to 16 integers separated by commas");
    if (strlen(name) >= sizeof(e.name))
        return bad_line(src, line, "implementation name too long");
    /* the line's form first, so that a malformed line reads the same in
       every build */
    if (dsv_backend_from_name(bname, &e.backend) || e.backend == DSV_BACKEND_AUTO)
        return bad_line(src, line, "unknown backend");
    const dsv_backend_table *t = dsv_backend_get(e.backend);
    if (!t || !t->choice_set)
        return dsv_error(DSV_INVALID, "%s:%d: backend %s %s", src, line, bname,
                         t ? "makes no timed choices" : "is not built in");
    memcpy(e.name, name, strlen(name) + 1);
    if (!dsv_grow_((void **)&p->choices, &p->cap, p->nchoices + 1, sizeof(*p->choices)))
        return dsv_error(DSV_NOMEM, "plan: out of memory");
    p->choices[p->nchoices++] = e;
    return DSV_OK;
}

static dsv_status parse_backend(parsed *p, char *rest, const char *src, int line)
{
    char *save;
    char *opname = strtok_r(rest, " \t", &save);
    char *keys = strtok_r(NULL, " \t", &save);
    char *bname = strtok_r(NULL, " \t", &save);
    if (!opname || !keys || !bname || strtok_r(NULL, " \t", &save))
        return bad_line(src, line, "expected 'backend OP KEY,KEY,... fast|onednn'");
    backend_entry e = {0};
    if (dsv_op_from_name(opname, &e.op))
        return bad_line(src, line, "unknown op");
    if (!parse_key(keys, e.key, &e.nkey, DSV_AUTO_KEY_MAX))
        return bad_line(src, line, "the key must be 5 to 12 integers separated by commas");
    if (dsv_backend_from_name(bname, &e.backend))
        return bad_line(src, line, "unknown backend (fast or onednn)");
    if (dsv_auto_decision_check(e.op, e.nkey, e.backend)) {
        char why[256]; /* the message buffer is about to be rewritten */
        snprintf(why, sizeof(why), "%s", dsv_errmsg());
        return bad_line(src, line, why);
    }
    if (!dsv_grow_((void **)&p->backends, &p->bcap, p->nbackends + 1, sizeof(*p->backends)))
        return dsv_error(DSV_NOMEM, "plan: out of memory");
    p->backends[p->nbackends++] = e;
    return DSV_OK;
}

static dsv_status parse_fuse(parsed *p, const char *rest, const char *src, int line)
{
    char name[32], state[8], extra;
    if (sscanf(rest, "%31s %7s %c", name, state, &extra) != 2 ||
        (strcmp(state, "on") && strcmp(state, "off")))
        return bad_line(src, line, "expected 'fuse PATTERN on|off'");
    int k = dsv_graph_fuse_from_name_(name);
    if (k < 0)
        return bad_line(src, line, "unknown fusion pattern (conv_relu, affine_relu)");
    p->fuse[k] = !strcmp(state, "on");
    return DSV_OK;
}

static dsv_status parse_line(const dsv_graph *g, parsed *p, char *s, const char *src,
                             int line)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
        s[--len] = '\0';
    if (line == 1)
        return strcmp(s, PLAN_MAGIC) == 0
                   ? DSV_OK
                   : bad_line(src, line, "not a dasecv plan (the first line must be '"
                                         PLAN_MAGIC "')");
    if (s[0] == '\0' || s[0] == '#')
        return DSV_OK;
    if (!strncmp(s, "model ", 6)) {
        if (p->have_model)
            return bad_line(src, line, "a second model line");
        p->have_model = true;
        return parse_model(g, s + 6, src, line);
    }
    if (!p->have_model)
        return bad_line(src, line, "the model line must come second");
    if (!strncmp(s, "schedule ", 9))
        return parse_schedule(p, s + 9, src, line);
    if (!strncmp(s, "choice ", 7))
        return parse_choice(p, s + 7, src, line);
    if (!strncmp(s, "fuse ", 5))
        return parse_fuse(p, s + 5, src, line);
    if (!strncmp(s, "backend ", 8))
        return parse_backend(p, s + 8, src, line);
    return bad_line(src, line, "unknown line (model, schedule, choice, backend or fuse)");
}

static dsv_status parse(const dsv_graph *g, const char *text, const char *src, parsed *p)
{
    char *copy = strdup(text);
    if (!copy)
        return dsv_error(DSV_NOMEM, "plan: out of memory");
    dsv_status s = DSV_OK;
    int line = 0;
    for (char *cur = copy; cur && !s;) {
        char *nl = strchr(cur, '\n');
        if (nl)
            *nl = '\0';
        line++;
        if (nl || *cur || line == 1)
            s = parse_line(g, p, cur, src, line);
        cur = nl ? nl + 1 : NULL;
    }
    if (!s && !p->have_model)
        s = dsv_error(DSV_INVALID, "%s: the plan has no model line", src);
    free(copy);
    return s;
}

dsv_status dsv_graph_plan_apply(dsv_graph *g, const char *text, const char *source)
{
    if (!g || !g->final)
        return dsv_error(DSV_INVALID, "plan: the graph is not finalized");
    if (!text)
        return dsv_error(DSV_INVALID, "plan: no text");
    const char *src = source ? source : "plan";
    parsed p = {0};
    memset(p.fuse, -1, sizeof(p.fuse));
    dsv_status s = parse(g, text, src, &p);
    for (int i = 0; i < p.nchoices && !s; i++) {
        const choice_entry *e = &p.choices[i];
        s = dsv_backend_get(e->backend)->choice_set(e->key, e->nkey, e->name);
    }
    if (!s) {
        for (int i = 0; i < p.nsched; i++) {
            g->autoc[i].n = p.sched[i].n;
            g->autoc[i].threads = p.sched[i].threads;
            g->autoc[i].choice = p.sched[i].choice;
        }
        g->nauto = p.nsched;
        for (int k = 0; k < DSV_FUSE_COUNT; k++)
            if (p.fuse[k] >= 0)
                g->fuse_on[k] = p.fuse[k];
        /* checked in full by parse_backend, so these cannot fail */
        for (int i = 0; i < p.nbackends; i++) {
            const backend_entry *e = &p.backends[i];
            dsv_status bs = dsv_auto_decision_set(e->op, e->key, e->nkey, e->backend);
            DSV_ASSERT(bs == DSV_OK);
        }
    }
    free(p.backends);
    free(p.choices);
    return s;
}
