/* dedup.c - resil.Deduplicator over rs_dedup.
 *
 * The set holds a reference to each key. Keys are compared like dict keys
 * (identity, then hash, then ==), so 1, 1.0 and True are one key. Two
 * re-entrancy guards: a key's __eq__ that calls back into the same
 * Deduplicator gets RuntimeError, and keys the core drops are released only
 * after the core operation completes (their __del__ may run Python code).
 *
 * With shared=region the set lives in the region's block (rs_dedup_block),
 * shared by every process that opens the region: keys are str or bytes,
 * kept as keyed digests, so no Python object is held and no Python code
 * runs under the block's lock (the key's digest and the clock are read
 * first). Every method branches to the block first; core holds only the
 * settings then (initialised stays 0).
 *
 * With cluster=backend the set is in Redis: the constructor calls the
 * factory handed to Deduplicator._set_cluster (by resil.messaging.dedup)
 * and keeps the callables it returns, one per operation; every method
 * calls its own, and core again holds only the settings. kind says which of
 * the three a set is, so the local hot path tests one field as before. */
#include "resil_py.h"

#include <structmember.h>

#include "../core/rs_dedup.h"
#include "../core/rs_region.h"

typedef struct {
    PyObject_HEAD
    rs_dedup core;
    PyObject *clock;
    int clock_kind;
    resil_keyguard guard;
    int initialised;
    PyObject *weakreflist;
    PyObject *name;   /* NULL unless given */
    PyObject *region; /* the shared= region given, or NULL */
    PyObject *cluster; /* the cluster= backend given, or NULL */
    PyObject *ops;     /* with cluster=: a tuple of the CL_* callables */
    int kind;          /* KIND_LOCAL, KIND_SHARED (the block in C) or KIND_CLUSTER */
    uint64_t offset;
    uint64_t params[RS_REGION_PARAMS];
    uint64_t hits; /* get() calls that found a live key (a local set's) */
} DedupObject;

enum { KIND_LOCAL, KIND_SHARED, KIND_CLUSTER };

/* The callables the cluster factory returns, in this order. */
enum { CL_SEEN, CL_CONTAINS, CL_DISCARD, CL_CLEAR, CL_LEN, CL_STATS, CL_DUPLICATES, CL_COUNT };

static void key_release(void *key, void *ctx) {
    resil_keyguard_bury(&((DedupObject *)ctx)->guard, (PyObject *)key);
}

static int enter(DedupObject *self) {
    return resil_keyguard_enter(&self->guard, "Deduplicator");
}

static void leave(DedupObject *self) {
    resil_keyguard_leave(&self->guard);
}

static void flush_grave(DedupObject *self) {
    resil_keyguard_flush(&self->guard);
}

/* The name= argument: NULL (none), or a non-empty str; -1 with TypeError
 * or ValueError naming it. */
static int check_name(PyObject *name) {
    if (name && name != Py_None && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be None or a non-empty str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    if (name && name != Py_None && PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_SetString(PyExc_ValueError, "name must be None or a non-empty str, got ''");
        return -1;
    }
    return 0;
}

/* A set in Redis: the factory given to _set_cluster, called as
 * factory(backend, ttl, capacity, clock, shared, name), returns the tuple
 * of CL_COUNT callables every method then calls; it checks the backend and
 * raises for a bad one. */
static PyObject *cluster_new(PyTypeObject *type, resil_state *st, uint64_t ttl_ns, long long cap,
                             PyObject *clock, int clock_kind, PyObject *shared, PyObject *name,
                             PyObject *cluster) {
    if (!st->dedup_cluster) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Deduplicator(cluster=...): nothing makes cluster sets "
                        "(Deduplicator._set_cluster)");
        return NULL;
    }
    PyObject *ops = PyObject_CallFunction(st->dedup_cluster, "OdLOOO", cluster,
                                          (double)ttl_ns / 1e9, cap, clock, shared, name);
    if (!ops) {
        return NULL;
    }
    if (!PyTuple_Check(ops) || PyTuple_GET_SIZE(ops) != CL_COUNT) {
        PyErr_Format(PyExc_TypeError, "the cluster factory must return a tuple of %d callables",
                     CL_COUNT);
        Py_DECREF(ops);
        return NULL;
    }
    DedupObject *self = (DedupObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(ops);
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = clock_kind;
    self->name = Py_NewRef(name);
    self->ops = ops;
    self->cluster = Py_NewRef(cluster);
    self->region = shared == Py_None ? NULL : Py_NewRef(shared);
    self->kind = KIND_CLUSTER;
    /* the settings only; the set is in Redis */
    self->core.ttl_ns = ttl_ns;
    self->core.capacity = (uint32_t)cap;
    if (resil_keyguard_init(&self->guard) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Calls the cluster set's operation op with key (or with nothing when key
 * is NULL). */
static PyObject *cluster_call(DedupObject *self, int op, PyObject *key) {
    if (!self->ops) {
        PyErr_SetString(PyExc_RuntimeError, "this cluster Deduplicator was cleared");
        return NULL;
    }
    PyObject *fn = PyTuple_GET_ITEM(self->ops, op);
    return key ? PyObject_CallOneArg(fn, key) : PyObject_CallNoArgs(fn);
}

/* The cluster operation's answer as a truth value: 1, 0 or -1. */
static int cluster_truth(DedupObject *self, int op, PyObject *key) {
    PyObject *r = cluster_call(self, op, key);
    if (!r) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static PyObject *dedup_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ttl", "capacity", "clock", "shared", "name", "cluster", NULL};
    PyObject *ttl_o = NULL, *cap_o = NULL, *clock = Py_None, *shared = Py_None, *name = NULL;
    PyObject *cluster = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOOO:Deduplicator", kwlist, &ttl_o, &cap_o,
                                     &clock, &shared, &name, &cluster)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    uint64_t ttl_ns = 300 * RS_NS_PER_SEC;
    long long cap = shared == Py_None ? 100000 : RS_DEDUP_SHARED_CAPACITY;
    if ((ttl_o && resil_field_ns(&RS_DEDUP_FIELDS[RS_DDF_TTL], ttl_o, &ttl_ns) < 0) ||
        (cap_o && resil_field_int(&RS_DEDUP_FIELDS[RS_DDF_CAPACITY], cap_o, &cap) < 0) ||
        check_name(name) < 0) {
        return NULL;
    }
    if (name == Py_None) {
        name = NULL;
    }
    if (resil_region_check_shared(st, shared, name != NULL, "Deduplicator", "name=") < 0) {
        return NULL;
    }
    if (cluster != Py_None && !name) {
        PyErr_SetString(PyExc_TypeError,
                        "Deduplicator() with cluster= needs name=: the name every host sharing "
                        "it opens it by (two unnamed ones would otherwise be one)");
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    if (cluster != Py_None) {
        return cluster_new(type, st, ttl_ns, cap, clock, kind, shared, name, cluster);
    }
    DedupObject *self = (DedupObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    self->name = Py_XNewRef(name);
    if (resil_keyguard_init(&self->guard) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    if (shared != Py_None) {
        /* the settings only; the set is the region's */
        self->core.ttl_ns = ttl_ns;
        self->core.capacity = (uint32_t)cap;
        rs_status rc = rs_dedup_params(ttl_ns, (uint64_t)cap, self->params);
        if (rc != RS_OK) {
            Py_DECREF(self);
            resil_raise_status(rc, RS_DEDUP_FIELDS, RS_DDF_COUNT, NULL, NULL);
            return NULL;
        }
        if (resil_region_attach(st, shared, &RS_DEDUP_REGION_TYPE, name, self->params,
                                RS_DEDUP_FIELDS, &self->offset) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        self->region = Py_NewRef(shared);
        self->kind = KIND_SHARED;
        return (PyObject *)self;
    }
    rs_status rc = rs_dedup_init(&self->core, ttl_ns, (uint32_t)cap, resil_key_eq, key_release, self);
    if (rc != RS_OK) {
        Py_DECREF(self);
        resil_raise_status(rc, RS_DEDUP_FIELDS, RS_DDF_COUNT, NULL, NULL);
        return NULL;
    }
    self->initialised = 1;
    return (PyObject *)self;
}

/* ---- shared: the set in a region's block ---------------------------------- */

/* The key's digest in the region: -1 with TypeError naming key unless it
 * is a str or bytes, ValueError for a str with no UTF-8, RegionError when
 * the region is closed. */
static int shared_key(DedupObject *self, PyObject *key, uint64_t d[2]) {
    if (!PyUnicode_Check(key) && !PyBytes_Check(key)) {
        PyErr_Format(PyExc_TypeError,
                     "key must be a str or bytes for a shared Deduplicator, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (!resil_region_block(self->region, 0)) {
        return -1;
    }
    return resil_region_key(self->region, key, d);
}

/* The block, locked; NULL with the error set. */
static rs_dedup_block *lock_block(DedupObject *self) {
    rs_dedup_block *b = resil_region_block(self->region, self->offset);
    if (!b || resil_region_lock(self->region, &b->lock, &RS_DEDUP_REGION_TYPE, b, self->params) < 0) {
        return NULL;
    }
    return b;
}

/* The key's digest and the time, read before the lock is taken; -1 with
 * the error set. */
static int shared_prepare(DedupObject *self, PyObject *key, uint64_t d[2], uint64_t *now) {
    if (shared_key(self, key, d) < 0) {
        return -1;
    }
    return now ? resil_clock_read(self->clock_kind, self->clock, now) : 0;
}

static PyObject *shared_seen(DedupObject *self, PyObject *key) {
    uint64_t d[2], now;
    if (shared_prepare(self, key, d, &now) < 0) {
        return NULL;
    }
    rs_dedup_block *b = lock_block(self);
    if (!b) {
        return NULL;
    }
    int r = rs_dedup_block_seen(b, d[0], d[1], now);
    rs_region_unlock(&b->lock);
    return PyBool_FromLong(r);
}

static int shared_contains(DedupObject *self, PyObject *key) {
    uint64_t d[2], now;
    if (shared_prepare(self, key, d, &now) < 0) {
        return -1;
    }
    rs_dedup_block *b = lock_block(self);
    if (!b) {
        return -1;
    }
    int r = rs_dedup_block_contains(b, d[0], d[1], now);
    rs_region_unlock(&b->lock);
    return r;
}

static PyObject *shared_discard(DedupObject *self, PyObject *key) {
    uint64_t d[2];
    if (shared_prepare(self, key, d, NULL) < 0) {
        return NULL;
    }
    rs_dedup_block *b = lock_block(self);
    if (!b) {
        return NULL;
    }
    int r = rs_dedup_block_discard(b, d[0], d[1]);
    rs_region_unlock(&b->lock);
    return PyBool_FromLong(r);
}

/* Drops every expired key, then copies the counts into *out (ttl and
 * capacity too); -1 with the error set. */
static int shared_counts(DedupObject *self, rs_dedup_block *out) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return -1;
    }
    rs_dedup_block *b = lock_block(self);
    if (!b) {
        return -1;
    }
    rs_dedup_block_expire(b, now, 0);
    out->ttl_ns = b->ttl_ns;
    out->capacity = b->capacity;
    out->size = b->size;
    out->duplicates = b->duplicates;
    out->expired = b->expired;
    out->evicted = b->evicted;
    rs_region_unlock(&b->lock);
    return 0;
}

static PyObject *shared_refused(const char *method) {
    PyErr_Format(PyExc_TypeError,
                 "%s() needs a local Deduplicator: a shared or cluster one keeps keys only, "
                 "with the ttl and capacity it was made with", method);
    return NULL;
}

static int visit_key(void *key, void *arg) {
    void **a = (void **)arg;
    visitproc visit = (visitproc)a[0];
    return visit((PyObject *)key, a[1]);
}

static int dedup_traverse(DedupObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    Py_VISIT(self->region);
    Py_VISIT(self->cluster);
    Py_VISIT(self->ops);
    if (self->initialised) {
        void *a[2] = {(void *)visit, arg};
        int r = rs_dedup_visit(&self->core, visit_key, a);
        if (r) {
            return r;
        }
    }
    return resil_keyguard_traverse(&self->guard, visit, arg);
}

static int dedup_clear(DedupObject *self) {
    if (self->initialised && !self->guard.busy) {
        rs_dedup_clear(&self->core);
        flush_grave(self);
    }
    Py_CLEAR(self->ops);
    Py_CLEAR(self->cluster);
    return 0;
}

static void dedup_dealloc(DedupObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->initialised) {
        rs_dedup_free(&self->core);
        self->initialised = 0;
    }
    resil_keyguard_free(&self->guard);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->name);
    Py_CLEAR(self->region);
    Py_CLEAR(self->cluster);
    Py_CLEAR(self->ops);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *dedup_seen(DedupObject *self, PyObject *key) {
    uint64_t hash, now;
    if (RS_UNLIKELY(self->kind != KIND_LOCAL)) {
        return self->kind == KIND_CLUSTER ? cluster_call(self, CL_SEEN, key)
                                          : shared_seen(self, key);
    }
    if (resil_key_hash(key, &hash) < 0 || resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        enter(self) < 0) {
        return NULL;
    }
    int stored;
    Py_INCREF(key); /* the set's reference, if it keeps the key */
    int r = rs_dedup_seen(&self->core, hash, key, now, &stored);
    leave(self);
    if (!stored) {
        Py_DECREF(key);
    }
    flush_grave(self);
    if (r == -1) {
        return NULL;
    }
    if (r == -2) {
        return PyErr_NoMemory();
    }
    return PyBool_FromLong(r);
}

static PyObject *dedup_put(DedupObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put() takes 2 positional arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *key = args[0], *value = args[1];
    uint64_t hash, now;
    if (self->kind) {
        return shared_refused("put");
    }
    if (resil_key_hash(key, &hash) < 0 || resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        enter(self) < 0) {
        return NULL;
    }
    int stored;
    Py_INCREF(key); /* the set's references, if it keeps them */
    Py_INCREF(value);
    int r = rs_dedup_put(&self->core, hash, key, value, now, &stored);
    leave(self);
    if (!stored) {
        Py_DECREF(key);
    }
    if (r < 0) {
        Py_DECREF(value);
    }
    flush_grave(self);
    if (r == -1) {
        return NULL;
    }
    if (r == -2) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *dedup_get_value(DedupObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *key = args[0], *dflt = nargs > 1 ? args[1] : Py_None;
    uint64_t hash, now;
    if (self->kind) {
        return shared_refused("get");
    }
    if (resil_key_hash(key, &hash) < 0 || resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        enter(self) < 0) {
        return NULL;
    }
    void *value = NULL;
    int r = rs_dedup_get(&self->core, hash, key, now, &value);
    /* A reference taken before another thread can drop the entry. */
    PyObject *result = r == 1 ? Py_NewRef(value ? (PyObject *)value : Py_None) : NULL;
    self->hits += r == 1;
    leave(self);
    if (r < 0) {
        return NULL;
    }
    return result ? result : Py_NewRef(dflt);
}

static int dedup_contains(DedupObject *self, PyObject *key) {
    uint64_t hash, now;
    if (self->kind) {
        return self->kind == KIND_CLUSTER ? cluster_truth(self, CL_CONTAINS, key)
                                          : shared_contains(self, key);
    }
    if (resil_key_hash(key, &hash) < 0 || resil_clock_read(self->clock_kind, self->clock, &now) < 0 ||
        enter(self) < 0) {
        return -1;
    }
    int r = rs_dedup_contains(&self->core, hash, key, now);
    leave(self);
    return r;
}

static PyObject *dedup_discard(DedupObject *self, PyObject *key) {
    uint64_t hash;
    if (self->kind) {
        return self->kind == KIND_CLUSTER ? cluster_call(self, CL_DISCARD, key)
                                          : shared_discard(self, key);
    }
    if (resil_key_hash(key, &hash) < 0 || enter(self) < 0) {
        return NULL;
    }
    int r = rs_dedup_discard(&self->core, hash, key);
    leave(self);
    flush_grave(self);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

/* Drops every expired entry (oldest first: stops at the first live one). */
static int expire_all(DedupObject *self) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0 || enter(self) < 0) {
        return -1;
    }
    rs_dedup_expire(&self->core, now, 0);
    leave(self);
    flush_grave(self);
    return 0;
}

static Py_ssize_t dedup_len(DedupObject *self) {
    if (self->kind == KIND_CLUSTER) {
        PyObject *r = cluster_call(self, CL_LEN, NULL);
        if (!r) {
            return -1;
        }
        Py_ssize_t n = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        return n;
    }
    if (self->kind) {
        rs_dedup_block counts;
        return shared_counts(self, &counts) < 0 ? -1 : (Py_ssize_t)counts.size;
    }
    if (expire_all(self) < 0) {
        return -1;
    }
    return (Py_ssize_t)self->core.size;
}

static PyObject *dedup_clear_method(DedupObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->kind == KIND_CLUSTER) {
        return cluster_call(self, CL_CLEAR, NULL);
    }
    if (self->kind) {
        rs_dedup_block *b = lock_block(self);
        if (!b) {
            return NULL;
        }
        rs_dedup_block_clear(b);
        rs_region_unlock(&b->lock);
        Py_RETURN_NONE;
    }
    if (enter(self) < 0) {
        return NULL;
    }
    rs_dedup_clear(&self->core);
    leave(self);
    flush_grave(self);
    Py_RETURN_NONE;
}

/* configure(*, ttl=..., maxsize=...): maxsize is also accepted as capacity,
 * the constructor's name for it; an error names the keyword passed. */
static PyObject *dedup_configure(DedupObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    static const char *const names[3] = {"ttl", "maxsize", "capacity"};
    if (self->kind) {
        return shared_refused("configure");
    }
    if (nargs) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    PyObject *given[RS_DDF_COUNT] = {NULL};
    rs_field fields[RS_DDF_COUNT] = {RS_DEDUP_FIELDS[RS_DDF_TTL], RS_DEDUP_FIELDS[RS_DDF_CAPACITY]};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int n = 0;
        while (n < 3 && PyUnicode_CompareWithASCIIString(key, names[n]) != 0) {
            n++;
        }
        if (n == 3) {
            PyErr_Format(PyExc_TypeError, "configure() got an unexpected keyword argument %R%s",
                         key, PyUnicode_CompareWithASCIIString(key, "clock") == 0
                                  ? ": the clock is fixed when the Deduplicator is made" : "");
            return NULL;
        }
        int f = n ? RS_DDF_CAPACITY : RS_DDF_TTL;
        if (given[f]) {
            PyErr_SetString(PyExc_TypeError,
                            "configure() takes maxsize or capacity (the same parameter), not both");
            return NULL;
        }
        given[f] = args[i];
        fields[f].name = names[n];
    }
    uint64_t ttl_ns = self->core.ttl_ns, now;
    long long cap = self->core.capacity;
    if ((given[RS_DDF_TTL] && resil_field_ns(&fields[RS_DDF_TTL], given[RS_DDF_TTL], &ttl_ns) < 0) ||
        (given[RS_DDF_CAPACITY] &&
         resil_field_int(&fields[RS_DDF_CAPACITY], given[RS_DDF_CAPACITY], &cap) < 0) ||
        resil_clock_read(self->clock_kind, self->clock, &now) < 0 || enter(self) < 0) {
        return NULL;
    }
    /* No Python code runs from here to the change: a value not given is
     * the one in force now (another thread may have changed it since it was
     * read above). */
    if (!given[RS_DDF_TTL]) {
        ttl_ns = self->core.ttl_ns;
    }
    if (!given[RS_DDF_CAPACITY]) {
        cap = self->core.capacity;
    }
    rs_status rc = rs_dedup_configure(&self->core, ttl_ns, (uint32_t)cap, now);
    leave(self);
    flush_grave(self);
    if (rc != RS_OK) {
        resil_raise_status(rc, fields, RS_DDF_COUNT, given, NULL);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *dedup_stats(DedupObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->kind == KIND_CLUSTER) {
        return cluster_call(self, CL_STATS, NULL);
    }
    if (self->kind) {
        rs_dedup_block c;
        if (shared_counts(self, &c) < 0) {
            return NULL;
        }
        return Py_BuildValue("{sKsKsKsKsKsKsdsK}", "depth", (unsigned long long)c.size,
                             "duplicates", (unsigned long long)c.duplicates, "hits",
                             (unsigned long long)self->hits, "expired",
                             (unsigned long long)c.expired, "evicted",
                             (unsigned long long)c.evicted, "maxsize",
                             (unsigned long long)c.capacity, "ttl", (double)c.ttl_ns / 1e9,
                             "memory_bytes",
                             (unsigned long long)RS_DEDUP_REGION_TYPE.block_size(self->params));
    }
    if (expire_all(self) < 0) {
        return NULL;
    }
    const rs_dedup *d = &self->core;
    return Py_BuildValue("{sIsKsKsKsKsIsdsn}", "depth", d->size, "duplicates",
                         (unsigned long long)d->duplicates, "hits", (unsigned long long)self->hits,
                         "expired", (unsigned long long)d->expired, "evicted",
                         (unsigned long long)d->evicted, "maxsize", d->capacity, "ttl",
                         (double)d->ttl_ns / 1e9, "memory_bytes", (Py_ssize_t)rs_dedup_memory(d));
}

static PyObject *dedup_get(DedupObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0:
        if (self->kind == KIND_CLUSTER) {
            return cluster_call(self, CL_DUPLICATES, NULL);
        }
        if (self->kind) {
            rs_dedup_block *b = lock_block(self);
            if (!b) {
                return NULL;
            }
            uint64_t n = b->duplicates;
            rs_region_unlock(&b->lock);
            return PyLong_FromUnsignedLongLong(n);
        }
        return PyLong_FromUnsignedLongLong(self->core.duplicates);
    case 1: return PyFloat_FromDouble((double)self->core.ttl_ns / 1e9);
    case 2: return PyLong_FromUnsignedLong(self->core.capacity);
    case 4: return Py_NewRef(self->name ? self->name : Py_None);
    case 5: return Py_NewRef(self->region ? self->region : Py_None);
    case 6: return Py_NewRef(self->cluster ? self->cluster : Py_None);
    default: return Py_NewRef(self->clock);
    }
}

static PyObject *dedup_repr(DedupObject *self) {
    PyObject *ttl = PyFloat_FromDouble((double)self->core.ttl_ns / 1e9);
    if (!ttl) {
        return NULL;
    }
    PyObject *r = self->kind == KIND_CLUSTER
                      ? PyUnicode_FromFormat("<Deduplicator name=%R ttl=%R capacity=%u cluster=%R>",
                                             self->name, ttl, self->core.capacity, self->cluster)
                  : self->kind
                      ? PyUnicode_FromFormat("<Deduplicator name=%R ttl=%R capacity=%u shared=%R>",
                                             self->name, ttl, self->core.capacity,
                                             ((RegionObject *)self->region)->path)
                      : PyUnicode_FromFormat("<Deduplicator ttl=%R capacity=%u size=%u>", ttl,
                                             self->core.capacity, self->core.size);
    Py_DECREF(ttl);
    return r;
}

static PyObject *dedup_set_cluster(PyObject *cls, PyObject *factory) {
    if (!PyCallable_Check(factory)) {
        PyErr_Format(PyExc_TypeError, "factory must be callable, not %.100s",
                     Py_TYPE(factory)->tp_name);
        return NULL;
    }
    resil_state *st = get_state_by_type((PyTypeObject *)cls);
    if (!st) {
        return NULL;
    }
    Py_XSETREF(st->dedup_cluster, Py_NewRef(factory));
    Py_RETURN_NONE;
}

static PyMethodDef dedup_methods[] = {
    {"_set_cluster", (PyCFunction)dedup_set_cluster, METH_O | METH_CLASS,
     "_set_cluster($type, factory, /)\n--\n\n"
     "What Deduplicator(cluster=backend) calls, as factory(backend, ttl,\n"
     "capacity, clock, shared, name): it returns the tuple of callables\n"
     "(seen, contains, discard, clear, len, stats, duplicate_count) the\n"
     "set's methods then call."},
    {"seen", (PyCFunction)dedup_seen, METH_O,
     "seen($self, key, /)\n--\n\n"
     "True when key was recorded less than ttl ago (a duplicate, counted);\n"
     "otherwise records it now and returns False. One check-and-insert."},
    {"put", (PyCFunction)(void (*)(void))dedup_put, METH_FASTCALL,
     "put($self, key, value, /)\n--\n\n"
     "Records key with value now, as d[key] = value would: a key already\n"
     "recorded (live or expired) takes the new value and starts its ttl again;\n"
     "a new key may evict the oldest at capacity. Counts no duplicate."},
    {"get", (PyCFunction)(void (*)(void))dedup_get_value, METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\n"
     "The value put with key while it is recorded (None for a key recorded by\n"
     "seen()); default when key is not recorded or has expired. Changes nothing."},
    {"discard", (PyCFunction)dedup_discard, METH_O,
     "discard($self, key, /)\n--\n\nForgets key; True when it was recorded."},
    {"clear", (PyCFunction)dedup_clear_method, METH_NOARGS,
     "clear($self, /)\n--\n\n"
     "Forgets every key."},
    {"configure", (PyCFunction)(void (*)(void))dedup_configure, METH_FASTCALL | METH_KEYWORDS,
     "configure($self, /, **changes)\n--\n\n"
     "configure(ttl=..., maxsize=...) changes the ttl (seconds) and the maxsize (most keys kept; also accepted as\n"
     "capacity), checked as the constructor checks them: a bad value raises\n"
     "TypeError or ValueError naming it and changes nothing. Then, at once: keys\n"
     "expired under the old or the new ttl are dropped (counted as expired), then\n"
     "the oldest keys beyond a lower maxsize (counted as evicted), and the memory\n"
     "of a lower maxsize is given back. The new ttl applies to every key kept,\n"
     "from the time it was recorded: a longer one lengthens the life of keys still\n"
     "live (keys already expired stay forgotten), a shorter one shortens it.\n"
     "Atomic with respect to other threads' seen() and put()."},
    {"stats", (PyCFunction)dedup_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The set's counts, JSON-serialisable: depth (keys remembered now, expired ones\n"
     "dropped first), duplicates (seen() calls that found their key), hits (get()\n"
     "calls that found their key; only a local set serves get(): a shared one's stay 0),\n"
     "expired and\n"
     "evicted (keys dropped after their ttl, and at maxsize to make room), maxsize\n"
     "(the capacity: most keys kept), ttl (seconds) and memory_bytes. With cluster=\n"
     "the set is in Redis and the counts are this process's: backend (the backend's\n"
     "mode: redis or the fallback in force), name, ttl, maxsize (of the local set\n"
     "used while Redis is away), duplicates, recorded (keys seen first here),\n"
     "unavailable (calls Redis did not answer), resynced and unsynced (keys recorded\n"
     "locally during an outage, stored in Redis after it, or not)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dedup_getset[] = {
    {"duplicate_count", (getter)dedup_get, NULL, "Duplicates seen so far.", (void *)0},
    {"ttl", (getter)dedup_get, NULL, "Seconds a key counts as seen.", (void *)1},
    {"capacity", (getter)dedup_get, NULL, "Most keys kept; the oldest is evicted.", (void *)2},
    {"clock", (getter)dedup_get, NULL, "The clock read for recording times.", (void *)3},
    {"name", (getter)dedup_get, NULL, "The name given (None when none was).", (void *)4},
    {"shared", (getter)dedup_get, NULL,
     "The SharedRegion holding the set, or None for a local one.", (void *)5},
    {"cluster", (getter)dedup_get, NULL,
     "The resil.redis.RedisBackend holding the set, or None.", (void *)6},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef dedup_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(DedupObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot dedup_slots[] = {
    {Py_tp_members, dedup_members},
    {Py_tp_doc,
     "Deduplicator(ttl=300.0, capacity=100000, *, clock=None, shared=None, name=None,\n"
     "             cluster=None)\n--\n\n"
     "A TTL set for deduplication, in C. seen(key) is one check-and-insert.\n"
     "Keys are hashable objects compared exactly, like dict keys: no false\n"
     "positives. Expired keys are dropped incrementally (never by a full scan);\n"
     "at capacity the oldest key is evicted and counted. A key may carry a\n"
     "value (put(key, value), get(key)): a TTL map of results or originals.\n\n"
     "ttl: seconds a key counts as seen (default 300). capacity: most keys kept\n"
     "(default 100000; 4096 with shared=). clock: read for the time (default\n"
     "the monotonic clock). name: a non-empty str naming the set (default None);\n"
     "required with shared=.\n\n"
     "shared: None (the default) or a resil.SharedRegion. With a region, the set\n"
     "lives in it, and every Deduplicator of that name in it, in any process of\n"
     "the host, is one set: a key seen by any process is a duplicate in all of\n"
     "them within its ttl, and stats() gives the host's counts. The first to make\n"
     "it sets ttl and capacity; another passing different values gets ValueError\n"
     "naming the first that differs. Keys must then be str or bytes (TypeError\n"
     "otherwise; ValueError for a str holding a lone surrogate), kept as 128-bit\n"
     "keyed digests: a key of any length takes 64 bytes of the region, reserved\n"
     "when the set is made (room for twice capacity keys), and two keys are\n"
     "taken for one with probability about 2**-128. seen, in, discard, len,\n"
     "clear and stats behave as on a local set, with one difference: a new key\n"
     "has two candidate sets of 8 slots in the table, and when both are full\n"
     "and none of their keys can move to its other set, the oldest key of the\n"
     "two is evicted (counted) before capacity is reached. put, get and\n"
     "configure raise TypeError. A region that is full raises RegionError\n"
     "naming size; a closed one, RegionError.\n\n"
     "cluster: None (the default) or a resil.redis.RedisBackend. With a backend,\n"
     "the set is in Redis: every Deduplicator of that name (required) on every\n"
     "host is one set. seen(key) records a new key with one SET NX PX (ttl, at\n"
     "least 0.001 s, timed by Redis), so a key is a duplicate cluster-wide for\n"
     "ttl seconds. Keys: str, bytes or int (not bool); str, b'...' and 1 are\n"
     "three keys. in is EXISTS, discard DEL; len and clear scan the set's keys\n"
     "(a round trip per 1000 keys; clear raises resil.RedisUnavailable while\n"
     "Redis is away, having cleared only the local set). While Redis is away,\n"
     "the backend's\n"
     "on_unavailable decides: 'local' records keys in a local set of this\n"
     "ttl and capacity (in the region given as shared=, else in this\n"
     "process; the keys new there are written to Redis, with the rest of their\n"
     "ttl, unless Redis has them, once it answers again),\n"
     "'open' answers not seen (every key is new), 'closed' raises\n"
     "resil.RedisUnavailable; no call waits for Redis longer than the\n"
     "backend's timeout. stats() gives this process's counts (duplicates,\n"
     "recorded, unavailable, resynced, unsynced: keys written back to Redis\n"
     "after an outage, and keys the fallback evicted before that) and backend\n"
     "(the backend's mode); put, get and configure raise TypeError."},
    {Py_tp_new, dedup_new},
    {Py_tp_traverse, dedup_traverse},
    {Py_tp_clear, dedup_clear},
    {Py_tp_dealloc, dedup_dealloc},
    {Py_tp_repr, dedup_repr},
    {Py_tp_methods, dedup_methods},
    {Py_tp_getset, dedup_getset},
    {Py_sq_contains, dedup_contains},
    {Py_sq_length, dedup_len},
    {Py_mp_length, dedup_len},
    {0, NULL},
};

static PyType_Spec dedup_spec = {
    .name = "resil.Deduplicator",
    .basicsize = sizeof(DedupObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = dedup_slots,
};

int resil_dedup_init_types(PyObject *module, resil_state *st) {
    (void)st;
    return resil_add_type_with_ranges(module, &dedup_spec, NULL, RS_DEDUP_FIELDS, RS_DDF_COUNT);
}
