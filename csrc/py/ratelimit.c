/* ratelimit.c - the C base of resil.RateLimiter over rs_gcra.
 *
 * Calls without a key share the bucket in the core struct; per-key buckets
 * live in an rs_dedup set holding a reference to each key. Every method
 * reads the clock first (a Python clock runs Python code), then decides and
 * writes in C. With a key, its hash and __eq__ run inside the lookup, and
 * nothing after it until the write; the keyguard serialises threads (an
 * __eq__ may release the GIL), refuses re-entry from an __eq__, and holds
 * the keys dropped until the operation is over. */
#include "resil_py.h"

#include <structmember.h>

#include "../core/rs_gcra.h"

typedef struct {
    PyObject_HEAD
    resil_state *st; /* the module's: its waiters and its finished awaitable */
    rs_gcra core;
    rs_dedup keys;
    resil_keyguard guard;
    PyObject *clock;
    PyObject *name;
    double rate, per;
    int clock_kind;
    int initialised; /* keys and guard are set up */
    PyObject *weakreflist;
    /* Shared: the state lives in a region's block (rs_gcra_block), and
     * core and keys above only hold the settings. */
    PyObject *region;
    uint64_t offset;
    uint64_t params[RS_REGION_PARAMS];
} LimiterObject;

static void key_release(void *key, void *ctx) {
    resil_keyguard_bury(&((LimiterObject *)ctx)->guard, (PyObject *)key);
}

static PyObject *limiter_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"rate", "per", "burst", "name", "max_keys", "clock",
                             "shared", "cluster", NULL};
    PyObject *rate_o, *per_o = NULL, *burst_o = Py_None, *name = NULL, *max_keys_o = NULL;
    PyObject *clock = Py_None, *shared = Py_None, *cluster = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$OOOOOO:RateLimiter", kwlist, &rate_o,
                                     &per_o, &burst_o, &name, &max_keys_o, &clock, &shared,
                                     &cluster)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    double rate, per = 1.0;
    uint64_t per_ns = RS_NS_PER_SEC;
    long long burst, max_keys = 100000;
    if (resil_field_double(&RS_GCRA_FIELDS[RS_GCF_RATE], rate_o, &rate) < 0) {
        return NULL;
    }
    if (per_o && (resil_field_double(&RS_GCRA_FIELDS[RS_GCF_PER], per_o, &per) < 0 ||
                  resil_field_ns(&RS_GCRA_FIELDS[RS_GCF_PER], per_o, &per_ns) < 0)) {
        return NULL;
    }
    if (burst_o == Py_None) {
        double b = ceil(rate);
        burst = b < 1.0 ? 1 : (long long)b;
    } else if (resil_field_int(&RS_GCRA_FIELDS[RS_GCF_BURST], burst_o, &burst) < 0) {
        return NULL;
    }
    if (max_keys_o &&
        resil_field_int(&RS_GCRA_FIELDS[RS_GCF_MAX_KEYS], max_keys_o, &max_keys) < 0) {
        return NULL;
    }
    if (!max_keys_o && shared != Py_None) {
        max_keys = RS_GCRA_SHARED_KEYS; /* reserved in the region up front */
    }
    if (shared != Py_None) {
        /* the table's sets: every slot may hold a key, and max_keys says so */
        max_keys = (max_keys + RS_GCRA_WAYS - 1) / RS_GCRA_WAYS * RS_GCRA_WAYS;
    }
    if (name && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a non-empty str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (name && PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_SetString(PyExc_ValueError, "name must be a non-empty str, got ''");
        return NULL;
    }
    if (cluster != Py_None) {
        PyErr_Format(PyExc_TypeError,
                     "cluster must be None: Gcra decides in this process (resil.RateLimiter "
                     "takes cluster=), not %.100s",
                     Py_TYPE(cluster)->tp_name);
        return NULL;
    }
    if (resil_region_check_shared(st, shared, name != NULL, "RateLimiter", "name=") < 0) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    LimiterObject *self = (LimiterObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->st = st;
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    self->name = name ? Py_NewRef(name) : PyUnicode_FromString("default");
    self->rate = rate;
    self->per = per;
    if (!self->name) {
        goto error;
    }
    rs_status rc = rs_gcra_init(&self->core, rate, per_ns, (uint64_t)burst);
    if (rc != RS_OK) {
        PyObject *given[RS_GCF_COUNT] = {rate_o, per_o, burst_o == Py_None ? NULL : burst_o,
                                         max_keys_o};
        double defaults[RS_GCF_COUNT] = {rate, 1.0, (double)burst, 100000};
        resil_raise_status(rc, RS_GCRA_FIELDS, RS_GCF_COUNT, given, defaults);
        goto error;
    }
    if (resil_keyguard_init(&self->guard) < 0) {
        goto error;
    }
    rc = rs_gcra_keys_init(&self->core, &self->keys, (uint32_t)max_keys, resil_key_eq,
                           key_release, self);
    if (rc != RS_OK) {
        rs_dedup_free(&self->keys);
        resil_keyguard_free(&self->guard);
        resil_raise_status(rc, RS_GCRA_FIELDS, RS_GCF_COUNT, NULL, NULL);
        goto error;
    }
    self->initialised = 1;
    if (shared != Py_None) {
        rc = rs_gcra_params(rate, per_ns, (uint64_t)burst, (uint64_t)max_keys, self->params);
        if (rc != RS_OK) {
            resil_raise_status(rc, RS_GCRA_FIELDS, RS_GCF_COUNT, NULL, NULL);
            goto error;
        }
        if (resil_region_attach(st, shared, &RS_GCRA_REGION_TYPE, self->name, self->params,
                                RS_GCRA_FIELDS, &self->offset) < 0) {
            goto error;
        }
        self->region = Py_NewRef(shared);
    }
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static int visit_key(void *key, void *arg) {
    void **a = (void **)arg;
    return ((visitproc)a[0])((PyObject *)key, a[1]);
}

static int limiter_traverse(LimiterObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    if (self->initialised) {
        void *a[2] = {(void *)visit, arg};
        int r = rs_dedup_visit(&self->keys, visit_key, a);
        if (r) {
            return r;
        }
        return resil_keyguard_traverse(&self->guard, visit, arg);
    }
    return 0;
}

static int limiter_clear(LimiterObject *self) {
    if (self->initialised && !self->guard.busy) {
        rs_dedup_clear(&self->keys);
        resil_keyguard_flush(&self->guard);
    }
    Py_CLEAR(self->clock);
    return 0;
}

static void limiter_dealloc(LimiterObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->initialised) {
        rs_dedup_free(&self->keys);
        resil_keyguard_free(&self->guard);
        self->initialised = 0;
    }
    Py_CLEAR(self->clock);
    Py_CLEAR(self->name);
    Py_CLEAR(self->region);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define LIMIT_ACCEPTS "None or a number of seconds >= 0 (inf: no limit)"

/* A timeout= argument as seconds, INFINITY for none (None, inf, or an int
 * too large for a double); -1 with TypeError or ValueError naming it. */
static int parse_limit(PyObject *o, double *out) {
    *out = INFINITY;
    if (o == Py_None) {
        return 0;
    }
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
        PyErr_Format(PyExc_TypeError, "timeout must be " LIMIT_ACCEPTS ", not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (resil_number(o, "timeout", out) < 0) { /* an int past a double: an infinity */
        return -1;
    }
    return *out >= 0.0 ? 0 : resil_bad_value("timeout", LIMIT_ACCEPTS, o); /* also NaN */
}

/* Parses (cost=1, key=None) of a vectorcall, and with `limit` not NULL a
 * keyword-only timeout=None too (checked first, into *limit); -1 with the
 * exception set. */
static int parse_cost_key(LimiterObject *self, const char *fname, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames, uint64_t *cost, PyObject **key,
                          double *limit) {
    PyObject *cost_o = NULL, *timeout_o = Py_None;
    *key = Py_None;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", fname, nargs);
        return -1;
    }
    if (nargs > 0) {
        cost_o = args[0];
    }
    if (nargs > 1) {
        *key = args[1];
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        PyObject *v = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(kw, "cost") == 0 && nargs < 1) {
            cost_o = v;
        } else if (PyUnicode_CompareWithASCIIString(kw, "key") == 0 && nargs < 2) {
            *key = v;
        } else if (limit && PyUnicode_CompareWithASCIIString(kw, "timeout") == 0) {
            timeout_o = v;
        } else {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated argument %R", fname,
                         kw);
            return -1;
        }
    }
    if (limit && parse_limit(timeout_o, limit) < 0) {
        return -1;
    }
    *cost = 1;
    if (cost_o) {
        if (!PyLong_Check(cost_o) || PyBool_Check(cost_o)) {
            PyErr_Format(PyExc_TypeError, "cost must be an int, not %.100s",
                         Py_TYPE(cost_o)->tp_name);
            return -1;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(cost_o, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow || v < 1 || (uint64_t)v > self->core.burst) {
            PyObject *shown = resil_value_repr(cost_o);
            if (shown) {
                PyErr_Format(PyExc_ValueError,
                             "cost must be an int in [1, %llu] (at most burst: more could never "
                             "be admitted), got %U",
                             (unsigned long long)self->core.burst, shown);
                Py_DECREF(shown);
            }
            return -1;
        }
        *cost = (uint64_t)v;
    }
    return 0;
}

/* The block of a shared limiter, locked; NULL with the error set. */
static rs_gcra_block *lock_block(LimiterObject *self) {
    return resil_region_lock_block(self->region, self->offset, &RS_GCRA_REGION_TYPE,
                                   self->params);
}

/* take() of a shared limiter: the key as its digest (a str or bytes), the
 * clock read, then the decision under the block's lock. */
static int shared_take(LimiterObject *self, uint64_t cost, PyObject *key, uint64_t *wait_ns) {
    uint64_t now, d[2] = {0, 0};
    if (key != Py_None && (!resil_region_block(self->region, 0) ||
                           resil_region_key(self->region, key, d) < 0)) {
        return -1;
    }
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return -1;
    }
    rs_gcra_block *blk = lock_block(self);
    if (!blk) {
        return -1;
    }
    rs_gcra *g = &blk->g;
    int r;
    if (key == Py_None) {
        r = rs_gcra_take(g, &g->t_ns, &g->debt, now, cost);
        if (!r && wait_ns) {
            *wait_ns = rs_gcra_wait_ns(g, g->t_ns, g->debt, now, cost);
        }
    } else {
        r = rs_gcra_block_take(blk, d[0], d[1], now, cost);
        if (!r && wait_ns) {
            *wait_ns = rs_gcra_block_wait(blk, d[0], d[1], now, cost);
        }
    }
    rs_region_unlock(&blk->lock);
    return r;
}

/* Admits cost now if it can: 1 admitted, 0 refused, -1 error. *wait_ns
 * (when not NULL) receives the wait a refusal implies, from the same read
 * of the state. */
static int take(LimiterObject *self, uint64_t cost, PyObject *key, uint64_t *wait_ns) {
    uint64_t now, hash;
    if (self->region) {
        return shared_take(self, cost, key, wait_ns);
    }
    if (key == Py_None) {
        if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
            return -1;
        }
        rs_gcra *g = &self->core;
        if (rs_gcra_take(g, &g->t_ns, &g->debt, now, cost)) {
            return 1;
        }
        if (wait_ns) {
            *wait_ns = rs_gcra_wait_ns(g, g->t_ns, g->debt, now, cost);
        }
        return 0;
    }
    if (resil_key_hash(key, &hash) < 0 ||
        resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        resil_keyguard_enter(&self->guard, "RateLimiter") < 0) {
        return -1;
    }
    int stored = 0;
    Py_INCREF(key); /* the set's reference, if it keeps the key */
    int r = rs_gcra_take_key(&self->core, &self->keys, hash, key, now, cost, &stored);
    if (r == 0 && wait_ns) {
        /* the key is recorded and live: its entry is found by identity */
        int64_t w = rs_gcra_wait_key(&self->core, &self->keys, hash, key, now, cost);
        *wait_ns = w < 0 ? 0 : (uint64_t)w;
    }
    resil_keyguard_leave(&self->guard);
    if (!stored) {
        Py_DECREF(key);
    }
    resil_keyguard_flush(&self->guard);
    if (r == -2) {
        PyErr_NoMemory();
    }
    return r < 0 ? -1 : r;
}

static PyObject *limiter_try_acquire(LimiterObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
    if (RS_LIKELY(nargs == 0 && kwnames == NULL)) {
        uint64_t now;
        if (self->region) {
            int r = shared_take(self, 1, Py_None, NULL);
            return r < 0 ? NULL : PyBool_FromLong(r);
        }
        if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
            return NULL;
        }
        rs_gcra *g = &self->core;
        return PyBool_FromLong(rs_gcra_take(g, &g->t_ns, &g->debt, now, 1));
    }
    uint64_t cost;
    PyObject *key;
    if (parse_cost_key(self, "try_acquire", args, nargs, kwnames, &cost, &key, NULL) < 0) {
        return NULL;
    }
    int r = take(self, cost, key, NULL);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *limiter_take_or_wait(LimiterObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames) {
    uint64_t cost, wait_ns = 0;
    PyObject *key;
    if (parse_cost_key(self, "_take_or_wait", args, nargs, kwnames, &cost, &key, NULL) < 0) {
        return NULL;
    }
    int r = take(self, cost, key, &wait_ns);
    if (r < 0) {
        return NULL;
    }
    if (r == 0 && wait_ns == 0) {
        wait_ns = 1; /* refused: never report "now" */
    }
    return PyFloat_FromDouble(r ? 0.0 : (double)wait_ns / 1e9);
}

/* Which of the module's waiters a refusal goes to. */
enum { WAIT_BLOCKING = 0, WAIT_AWAITING = 1 };

/* acquire and acquire_async: takes the tokens now when it can, returning
 * None (blocking) or the module's finished awaitable, which awaits to None
 * without suspending; else returns what the module's waiter returns when
 * called as waiter(self, cost, key, limit, wait): limit is the timeout in
 * seconds (inf: none), wait the seconds the refusal asked for (> 0). The
 * waiter sleeps (blocking) or is the coroutine that sleeps (awaiting) and
 * retries; it raises RateLimited when a wait would outlast the timeout. */
static PyObject *acquire(LimiterObject *self, int how, const char *fname, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames) {
    uint64_t cost = 1, wait_ns = 0;
    PyObject *key = Py_None;
    double limit = INFINITY;
    if ((nargs || kwnames) &&
        parse_cost_key(self, fname, args, nargs, kwnames, &cost, &key, &limit) < 0) {
        return NULL;
    }
    int r = take(self, cost, key, &wait_ns);
    if (r < 0) {
        return NULL;
    }
    if (RS_LIKELY(r)) {
        return Py_NewRef(how == WAIT_AWAITING ? self->st->finished_none : Py_None);
    }
    PyObject *waiter = self->st->ratelimit_waiters[how];
    if (!waiter) {
        PyErr_Format(PyExc_RuntimeError, "%s(): nothing to wait with (Gcra._set_waiters)", fname);
        return NULL;
    }
    PyObject *cost_o = PyLong_FromUnsignedLongLong(cost);
    PyObject *limit_o = PyFloat_FromDouble(limit);
    PyObject *wait_o = PyFloat_FromDouble(wait_ns ? (double)wait_ns / 1e9 : 1e-9);
    PyObject *res = NULL;
    if (cost_o && limit_o && wait_o) {
        PyObject *argv[5] = {(PyObject *)self, cost_o, key, limit_o, wait_o};
        res = PyObject_Vectorcall(waiter, argv, 5, NULL);
    }
    Py_XDECREF(cost_o);
    Py_XDECREF(limit_o);
    Py_XDECREF(wait_o);
    return res;
}

static PyObject *limiter_acquire(LimiterObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    return acquire(self, WAIT_BLOCKING, "acquire", args, nargs, kwnames);
}

static PyObject *limiter_acquire_async(LimiterObject *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames) {
    return acquire(self, WAIT_AWAITING, "acquire_async", args, nargs, kwnames);
}

static PyObject *limiter_set_waiters(PyObject *cls, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "_set_waiters() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (!PyCallable_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "%s must be callable, not %.100s",
                         i ? "awaiting" : "blocking", Py_TYPE(args[i])->tp_name);
            return NULL;
        }
    }
    resil_state *st = get_state_by_type((PyTypeObject *)cls);
    if (!st) {
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        Py_XSETREF(st->ratelimit_waiters[i], Py_NewRef(args[i]));
    }
    Py_RETURN_NONE;
}

static PyObject *limiter_retry_after(LimiterObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
    uint64_t cost, now, hash;
    PyObject *key;
    if (parse_cost_key(self, "retry_after", args, nargs, kwnames, &cost, &key, NULL) < 0) {
        return NULL;
    }
    if (self->region) {
        uint64_t d[2] = {0, 0};
        if ((key != Py_None && (!resil_region_block(self->region, 0) ||
                                resil_region_key(self->region, key, d) < 0)) ||
            resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
            return NULL;
        }
        rs_gcra_block *blk = lock_block(self);
        if (!blk) {
            return NULL;
        }
        rs_gcra *g = &blk->g;
        uint64_t w = key == Py_None ? rs_gcra_wait_ns(g, g->t_ns, g->debt, now, cost)
                                    : rs_gcra_block_wait(blk, d[0], d[1], now, cost);
        rs_region_unlock(&blk->lock);
        return PyFloat_FromDouble((double)w / 1e9);
    }
    if (key == Py_None) {
        if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
            return NULL;
        }
        rs_gcra *g = &self->core;
        return PyFloat_FromDouble((double)rs_gcra_wait_ns(g, g->t_ns, g->debt, now, cost) / 1e9);
    }
    if (resil_key_hash(key, &hash) < 0 ||
        resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        resil_keyguard_enter(&self->guard, "RateLimiter") < 0) {
        return NULL;
    }
    int64_t w = rs_gcra_wait_key(&self->core, &self->keys, hash, key, now, cost);
    resil_keyguard_leave(&self->guard);
    if (w < 0) {
        return NULL;
    }
    return PyFloat_FromDouble((double)w / 1e9);
}

/* Live keys (dropping the ones whose bucket refilled by age). */
static int live_keys(LimiterObject *self, uint64_t *out) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        resil_keyguard_enter(&self->guard, "RateLimiter") < 0) {
        return -1;
    }
    rs_dedup_expire(&self->keys, now, 0);
    *out = self->keys.size;
    resil_keyguard_leave(&self->guard);
    resil_keyguard_flush(&self->guard);
    return 0;
}

static PyObject *limiter_stats(LimiterObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t keys;
    const rs_gcra *g = &self->core;
    rs_gcra counts;
    if (self->region) {
        uint64_t now;
        if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
            return NULL;
        }
        rs_gcra_block *blk = lock_block(self);
        if (!blk) {
            return NULL;
        }
        counts = blk->g;
        keys = rs_gcra_block_live(blk, now);
        rs_region_unlock(&blk->lock);
        g = &counts;
    } else if (live_keys(self, &keys) < 0) {
        return NULL;
    }
    return Py_BuildValue("{sOsdsdsKsKsKsK}", "name", self->name, "rate", self->rate, "per",
                         self->per, "burst", (unsigned long long)g->burst, "admitted",
                         (unsigned long long)g->admitted, "rejected",
                         (unsigned long long)g->rejected, "keys", (unsigned long long)keys);
}

static PyObject *limiter_get(LimiterObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return Py_NewRef(self->name);
    case 1: return PyFloat_FromDouble(self->rate);
    case 2: return PyFloat_FromDouble(self->per);
    case 3: return PyLong_FromUnsignedLongLong(self->core.burst);
    case 4: return PyLong_FromUnsignedLong(self->keys.capacity);
    case 6: return Py_NewRef(self->region ? self->region : Py_None);
    case 7: /* read once, when a limiter with cluster= is made */
        return Py_BuildValue("(KK)", (unsigned long long)self->core.a,
                             (unsigned long long)self->core.b);
    default: return Py_NewRef(self->clock ? self->clock : Py_None);
    }
}

static PyObject *limiter_repr(LimiterObject *self) {
    PyObject *rate = PyFloat_FromDouble(self->rate), *per = PyFloat_FromDouble(self->per);
    PyObject *r = NULL;
    if (rate && per) {
        r = PyUnicode_FromFormat("<%s name=%R rate=%R per=%R burst=%llu>",
                                 Py_TYPE(self)->tp_name, self->name, rate, per,
                                 (unsigned long long)self->core.burst);
    }
    Py_XDECREF(rate);
    Py_XDECREF(per);
    return r;
}

static PyObject *limiter_sizeof(LimiterObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSize_t((size_t)Py_TYPE(self)->tp_basicsize + rs_dedup_memory(&self->keys));
}

static PyMethodDef limiter_methods[] = {
    {"try_acquire", (PyCFunction)(void (*)(void))limiter_try_acquire,
     METH_FASTCALL | METH_KEYWORDS,
     "try_acquire($self, /, cost=1, key=None)\n--\n\n"
     "Takes cost tokens from the bucket (key's bucket when key is not None) and\n"
     "returns True when it holds them; otherwise returns False and takes nothing.\n"
     "cost: an int in [1, burst]. key: any hashable object, compared as a dict\n"
     "key."},
    {"retry_after", (PyCFunction)(void (*)(void))limiter_retry_after,
     METH_FASTCALL | METH_KEYWORDS,
     "retry_after($self, /, cost=1, key=None)\n--\n\n"
     "Seconds until try_acquire(cost, key) would be admitted, 0.0 if now; takes\n"
     "nothing."},
    {"acquire", (PyCFunction)(void (*)(void))limiter_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, cost=1, key=None, *, timeout=None)\n--\n\n"
     "Blocks the thread until cost tokens are taken from the bucket (key's bucket\n"
     "when key is not None); returns None.\n\n"
     "cost: an int in [1, burst]. key: any hashable object, compared as a dict key.\n"
     "timeout: the most seconds to wait, a number >= 0; None (the default), inf or\n"
     "an int too large for a float: no limit. When the wait the bucket needs would\n"
     "exceed what is left of it, raises RateLimited at once, without sleeping\n"
     "first; the wait is re-checked after each sleep, since other callers may\n"
     "have taken tokens meanwhile. A wait interrupted (KeyboardInterrupt, ...)\n"
     "has taken nothing. A bad argument raises TypeError or ValueError before\n"
     "anything is taken."},
    {"acquire_async", (PyCFunction)(void (*)(void))limiter_acquire_async,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire_async($self, /, cost=1, key=None, *, timeout=None)\n--\n\n"
     "An awaitable that waits on the event loop until cost tokens are taken\n"
     "(key's bucket when key is not None), then gives None; arguments as acquire.\n\n"
     "The call itself decides: a bad argument raises TypeError or ValueError\n"
     "there, and tokens available now are taken there, the awaitable returned\n"
     "being already done (awaiting it does not suspend; it may be awaited from\n"
     "any thread or loop). Otherwise it returns a coroutine that sleeps and\n"
     "retries: it raises RateLimited at once when the wait would exceed timeout\n"
     "(never sleeping first), and cancelled, it has taken nothing. Either one\n"
     "can be awaited, or given to asyncio.ensure_future, gather, wait_for or\n"
     "create_task. The waits follow the limiter's clock (under\n"
     "resil.run_virtual with the same VirtualClock, virtual time)."},
    {"_take_or_wait", (PyCFunction)(void (*)(void))limiter_take_or_wait,
     METH_FASTCALL | METH_KEYWORDS,
     "_take_or_wait($self, /, cost=1, key=None)\n--\n\n"
     "try_acquire in one step with retry_after: 0.0 when the tokens were taken,\n"
     "else the seconds to wait (> 0) before they could be."},
    {"_set_waiters", (PyCFunction)(void (*)(void))limiter_set_waiters,
     METH_FASTCALL | METH_CLASS,
     "_set_waiters($type, blocking, awaiting, /)\n--\n\n"
     "The callables acquire and acquire_async hand a refusal to, called as\n"
     "waiter(limiter, cost, key, limit, wait): blocking sleeps until the tokens\n"
     "are taken, awaiting returns the coroutine that does. One pair per module."},
    {"stats", (PyCFunction)limiter_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The limiter's settings and counts, JSON-serialisable: name, rate, per\n"
     "(seconds), burst, admitted and rejected (calls since creation), keys\n"
     "(keys whose bucket is not yet known to be full again)."},
    {"__sizeof__", (PyCFunction)limiter_sizeof, METH_NOARGS,
     "__sizeof__($self, /)\n--\n\nBytes of the object and its table of keys."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef limiter_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(LimiterObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef limiter_getset[] = {
    {"name", (getter)limiter_get, NULL, "The limiter's name.", (void *)0},
    {"rate", (getter)limiter_get, NULL, "Tokens added per `per` seconds.", (void *)1},
    {"per", (getter)limiter_get, NULL, "The period of `rate`, seconds.", (void *)2},
    {"burst", (getter)limiter_get, NULL, "The bucket's capacity, tokens.", (void *)3},
    {"max_keys", (getter)limiter_get, NULL, "Most keys tracked at once.", (void *)4},
    {"clock", (getter)limiter_get, NULL, "The clock read for the time.", (void *)5},
    {"shared", (getter)limiter_get, NULL,
     "The SharedRegion holding the limiter's state, or None (this process's).", (void *)6},
    {"_interval", (getter)limiter_get, NULL,
     "One token's interval as the engine counts it: (a, b), a / b nanoseconds exactly.",
     (void *)7},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot limiter_slots[] = {
    {Py_tp_doc, "Gcra(rate, per=1.0, *, burst=None, name='default', max_keys=100000, "
                "clock=None, shared=None, cluster=None)\n--\n\n"
                "The C engine of resil.RateLimiter: a GCRA rate limiter with per-key\n"
                "buckets. See resil.RateLimiter."},
    {Py_tp_new, limiter_new},
    {Py_tp_traverse, limiter_traverse},
    {Py_tp_clear, limiter_clear},
    {Py_tp_dealloc, limiter_dealloc},
    {Py_tp_repr, limiter_repr},
    {Py_tp_methods, limiter_methods},
    {Py_tp_members, limiter_members},
    {Py_tp_getset, limiter_getset},
    {0, NULL},
};

static PyType_Spec limiter_spec = {
    .name = "resil._resil.Gcra",
    .basicsize = sizeof(LimiterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = limiter_slots,
};

int resil_ratelimit_init_types(PyObject *module, resil_state *st) {
    return resil_add_type_with_ranges(module, &limiter_spec, &st->RateLimiter_type,
                                      RS_GCRA_FIELDS, RS_GCF_COUNT);
}
