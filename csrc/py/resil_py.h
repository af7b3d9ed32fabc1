/* resil_py.h - declarations shared by the binding's translation units.
 * The binding is the only C that includes Python.h. */
#ifndef RESIL_PY_H
#define RESIL_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdint.h>
#include <time.h>

#include "../core/rs_breaker.h"
#include "../core/rs_field.h"
#include "../core/rs_region.h"

#if PY_VERSION_HEX < 0x030B0000
#define PyType_GetModuleByDef _PyType_GetModuleByDef
#endif

#if PY_VERSION_HEX < 0x030A0000
#error "resil needs Python 3.10 or newer"
#endif

/* How many freed guarded awaitables a module keeps for reuse. */
#define RESIL_AW_FREE_MAX 16

enum { CLOCK_MONOTONIC_KIND = 0, CLOCK_VIRTUAL_KIND = 1, CLOCK_PYTHON_KIND = 2 };

typedef struct {
    PyTypeObject *MonotonicClock_type;
    PyTypeObject *VirtualClock_type;
    PyTypeObject *Breaker_type;
    PyTypeObject *Permit_type;
    PyTypeObject *Guarded_type;
    PyTypeObject *Awaitable_type;
    PyTypeObject *PermitStack_type;
    PyTypeObject *EjectionPool_type;
    PyTypeObject *Backoff_type;
    PyTypeObject *RetryBudget_type;
    PyTypeObject *RetryCall_type;         /* RetryCore.begin() makes them */
    PyTypeObject *Retrying_type;          /* RetryCore.wrap() makes them */
    PyTypeObject *RateCounter_type;
    PyTypeObject *RateLimiter_type;
    PyTypeObject *Histogram_type;         /* WindowedHistogram.snapshot() makes them */
    PyTypeObject *WindowedHistogram_type;
    PyTypeObject *Bulkhead_type;
    PyTypeObject *BulkheadPermit_type;     /* BulkheadCore.try_acquire() makes them */
    PyTypeObject *Adaptive_type;
    PyTypeObject *LimiterPermit_type;      /* AdaptiveCore.try_acquire() makes them */
    PyTypeObject *Region_type;
    PyObject *ResilError;
    PyObject *CircuitOpenError;
    PyObject *RegionError;
    PyObject *QueueFull;
    PyObject *QueueEmpty;                 /* asyncio.QueueEmpty */
    PyObject *State;                      /* IntEnum class */
    PyObject *states[RS_STATE_COUNT];     /* its members */
    PyObject *reasons[RS_REASON_COUNT];   /* interned reason strings */
    PyObject *cancel_types;               /* tuple of cancellation exceptions */
    PyObject *permit_var;                 /* ContextVar: stack of `with` permits */
    PyObject *finished_none;              /* awaitables already done, of None and False */
    PyObject *finished_false;
    /* What RateLimiter.acquire / acquire_async call on a refusal to wait
     * (blocking, awaiting), handed over by Gcra._set_waiters. */
    PyObject *ratelimit_waiters[2];
    /* What Deduplicator(cluster=...) calls to make the set's operations,
     * handed over by Deduplicator._set_cluster. */
    PyObject *dedup_cluster;
    PyObject *str_now;
    PyObject *default_clock;              /* a shared MonotonicClock */
    /* Freed guarded awaitables kept for reuse: one is made and freed on
     * every awaited guarded call, and reusing its memory skips an
     * allocation and a free (awaitable.c). */
    void *aw_free[RESIL_AW_FREE_MAX];
    int aw_nfree;
    /* From CPython 3.12 an awaited guarded call's result leaves through a
     * StopIteration; this one is reused while nothing else holds it
     * (awaitable.c). NULL before the first, and before 3.12. */
    PyObject *stop_iteration;
} resil_state;

extern struct PyModuleDef resil_module;

static inline resil_state *get_state(PyObject *module) {
    return (resil_state *)PyModule_GetState(module);
}

static inline resil_state *get_state_by_type(PyTypeObject *tp) {
    PyObject *m = PyType_GetModuleByDef(tp, &resil_module);
    return m ? get_state(m) : NULL;
}

typedef struct {
    PyObject_HEAD
    uint64_t now_ns;
} VirtualClockObject;

static inline uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * RS_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Calls clock.now() (seconds) and converts it; -1 with an exception set. */
int resil_clock_read_python(PyObject *clock, uint64_t *now_ns);

/* Reads the clock selected by kind: 0 monotonic, 1 a VirtualClock, 2 any
 * object with now() -> seconds. Returns -1 with an exception set. */
static inline int resil_clock_read(int kind, PyObject *clock, uint64_t *now_ns) {
    if (RS_LIKELY(kind == CLOCK_MONOTONIC_KIND)) {
        *now_ns = monotonic_ns();
        return 0;
    }
    if (kind == CLOCK_VIRTUAL_KIND) {
        *now_ns = ((VirtualClockObject *)clock)->now_ns;
        return 0;
    }
    return resil_clock_read_python(clock, now_ns);
}
/* Classifies a clock object; returns -1 with TypeError when it has no now(). */
int resil_clock_kind(resil_state *st, PyObject *clock);
/* A `clock=` argument: NULL or None becomes the module's MonotonicClock
 * (borrowed); returns its kind as resil_clock_kind does. */
int resil_clock_resolve(resil_state *st, PyObject **clock);
/* Converts seconds (int or float) to nanoseconds, validating finite and in
 * [0, RS_MAX_SECONDS]; name is the parameter for the error message. */
int resil_seconds_to_ns(PyObject *seconds, const char *name, uint64_t *out);

/* Configuration arguments checked against a core field table (fields.c).
 * Each raises TypeError naming the parameter for a wrong type (a bool is
 * never a number) and ValueError naming it and its range, worded from the
 * table's bounds, for a value outside it: NaN, an infinity and an int too
 * large for a double included. */
int resil_field_int(const rs_field *f, PyObject *o, long long *out);
int resil_field_double(const rs_field *f, PyObject *o, double *out);
/* A seconds field as nanoseconds. */
int resil_field_ns(const rs_field *f, PyObject *o, uint64_t *out);
/* What the field accepts in words, e.g. "an int in [1, 1000000]"; new str. */
PyObject *resil_field_accepts(const rs_field *f);
/* Raises the field's ValueError: "<name> must be <accepts>, got <got>"
 * (without the got part for NULL). Returns -1. */
int resil_field_error(const rs_field *f, PyObject *got);
/* Raises for a status a core init or configure returned: MemoryError for
 * RS_ENOMEM; for RS_EFIELD_BASE + i the ValueError of table[i] showing
 * given[i], or when that was not passed defaults[i] (when defaults is not
 * NULL) as its default; SystemError for any other status. Returns -1. */
int resil_raise_status(int rc, const rs_field *table, int n, PyObject *const *given,
                       const double *defaults);
/* Adds {name: {kind, lo, hi, lo_open, hi_open, accepts}} for each of the n
 * fields to the type's _ranges dict, where tests and tools read the bounds. */
int resil_type_add_ranges(PyTypeObject *tp, const rs_field *table, int n);
/* resil_add_type, then resil_type_add_ranges on the new type. */
int resil_add_type_with_ranges(PyObject *module, PyType_Spec *spec, PyTypeObject **out,
                               const rs_field *table, int n);

/* Takes the raised exception (normalised instance, traceback attached). */
static inline PyObject *fetch_exc(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (!t) {
        return NULL;
    }
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v) {
        PyException_SetTraceback(v, tb);
    }
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

/* Raises exc again; steals the reference. */
static inline void restore_exc(PyObject *exc) {
    if (!exc) {
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Keys of Python objects in a core table (keys.c): compared as dict keys
 * (identity, then hash, then ==); rs_key_eq-compatible. */
int resil_key_eq(void *a, void *b, void *ctx);
/* hash(key) spread over 64 bits; -1 with the exception set. */
int resil_key_hash(PyObject *key, uint64_t *out);

/* One per keyed object: serialises its core operations across threads (a
 * key's __eq__ may release the GIL mid-operation), refuses the same thread
 * coming back in from such an __eq__, and holds the keys an operation
 * dropped until it completes. */
typedef struct {
    int busy;                /* an operation is in the core (the lock is held) */
    unsigned long owner;     /* the thread running it */
    PyThread_type_lock lock;
    PyObject **grave;        /* keys dropped during the current operation */
    Py_ssize_t grave_len, grave_cap;
} resil_keyguard;

int resil_keyguard_init(resil_keyguard *g);    /* -1 with MemoryError */
void resil_keyguard_free(resil_keyguard *g);   /* flushes first; safe after a failed init */
/* Takes the lock; RuntimeError naming `what` for re-entry from this thread. */
int resil_keyguard_enter(resil_keyguard *g, const char *what);
void resil_keyguard_leave(resil_keyguard *g);
/* Keeps a dropped key (steals the reference) until the flush. */
void resil_keyguard_bury(resil_keyguard *g, PyObject *key);
/* Releases the buried keys; keeps an error already raised. */
void resil_keyguard_flush(resil_keyguard *g);
int resil_keyguard_traverse(resil_keyguard *g, visitproc visit, void *arg);

/* Shared helpers (util.c). */
/* Creates a heap type from spec and adds it to the module; *out (if not NULL)
 * receives a new reference for the module state. */
int resil_add_type(PyObject *module, PyType_Spec *spec, PyObject *base, PyTypeObject **out);
/* An int or float (not bool) as a double; TypeError naming `name` otherwise.
 * An int too large for a double gives an infinity of its sign, and NaN and
 * the infinities pass: the caller's range check rejects them, naming the
 * parameter (resil_bad_value summarises a huge int). */
int resil_number(PyObject *o, const char *name, double *out);
/* A `name=` argument: NULL (not given) becomes a new "default"; else a new
 * reference to it when it is a non-empty str, or -1 with TypeError or
 * ValueError naming `name`. */
int resil_name_arg(PyObject **name);
/* resil_number, and ValueError naming `name` for NaN or an infinity. */
int resil_finite(PyObject *o, const char *name, double *out);
/* repr(o) for an error message: an int past 64 bits is summarised by its
 * size (its digits could be thousands, past what int.__repr__ allows), and a
 * repr that raises gives "<type object>". Never fails but on memory. */
PyObject *resil_value_repr(PyObject *o);
/* Raises ValueError "<name> must be <accepts>, got <resil_value_repr(got)>"
 * (without the got part when got is NULL); returns -1. */
int resil_bad_value(const char *name, const char *accepts, PyObject *got);
/* Vectorcall arguments as a tuple and a dict (NULL without keywords unless
 * always_dict). */
int resil_pack_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int always_dict,
                    PyObject **pos, PyObject **kw);
/* tp_descr_get of function-like wrappers: binds like a function does. */
PyObject *resil_bind_method(PyObject *self, PyObject *obj, PyObject *type);

/* What the metric exposition (expo.c) shows of one Breaker; the numbers are
 * the ones stats() reports under the names in the comments. */
typedef struct {
    PyObject *name;          /* borrowed; valid until Python code runs again */
    int state;               /* RS_STATE_*, "state" */
    uint64_t failures;       /* "failures" */
    double avg_latency_ms;   /* "avg_latency_ms" */
    double success_rate;     /* "success_rate" */
    double health_score;     /* "health_score" */
    int has_opened;          /* "last_opened" is not None */
    double opened_unix;      /* "last_opened", Unix time, when has_opened */
} resil_breaker_metrics;

/* Brings a Breaker (the caller checks the type) up to date as stats() does:
 * reads its clock, runs due time-driven transitions and reports them to
 * the listener given to _set_listener (Python code, whose errors it never
 * raises; a thread already reporting this breaker's transitions reports
 * them instead).
 * Returns -1 with an exception set when the clock fails. */
int resil_breaker_tick(PyObject *breaker);
/* Copies its current numbers, as they stand (no clock read); runs no
 * Python code. -1 with RegionError only for a shared breaker whose region
 * was closed. */
int resil_breaker_read_metrics(PyObject *breaker, resil_breaker_metrics *out);
/* Brings a Breaker up to date (resil_breaker_tick) and tells whether it
 * rejects calls now (OPEN or FORCED_OPEN): 0 when it does not; 1 when it
 * does, with the CircuitOpenError a rejected call gets set; -1 with an
 * exception set when the clock fails. */
int resil_breaker_reject_if_open(PyObject *breaker);

int resil_clock_init_types(PyObject *module, resil_state *st);
/* The circuit breaker's types, one a file (breaker.h has what they share). */
int resil_breaker_init_types(PyObject *module, resil_state *st);
int resil_permit_init_types(PyObject *module, resil_state *st);
int resil_guarded_init_types(PyObject *module, resil_state *st);
int resil_awaitable_init_types(PyObject *module, resil_state *st);
int resil_pool_init_types(PyObject *module, resil_state *st);
/* ResilError and CircuitOpenError (errors.c). */
int resil_errors_init_types(PyObject *module, resil_state *st);
int resil_retry_init_types(PyObject *module, resil_state *st);
int resil_dedup_init_types(PyObject *module, resil_state *st);
int resil_queue_init_types(PyObject *module, resil_state *st);
int resil_interval_init_types(PyObject *module, resil_state *st);
int resil_rate_init_types(PyObject *module, resil_state *st);
int resil_ratelimit_init_types(PyObject *module, resil_state *st);
int resil_counter_init_types(PyObject *module, resil_state *st);
/* Adds breaker_exposition() to the module (expo.c). */
int resil_expo_init(PyObject *module, resil_state *st);
int resil_hist_init_types(PyObject *module, resil_state *st);
int resil_bulkhead_init_types(PyObject *module, resil_state *st);
int resil_adaptive_init_types(PyObject *module, resil_state *st);

/* A slot taken with try_acquire from a type that counts calls in flight
 * (slot.c), given back once with release. The owner's fields say what its
 * release needs: when it was taken and what its core handed out. */
typedef struct {
    PyObject_HEAD
    PyObject *owner;    /* the object that handed it out; NULL until admitted */
    int released;
    uint64_t start_ns;  /* the owner's clock when it was taken (if it times calls) */
    uint64_t seq;       /* owner-defined numbers its core gives back on release */
    uint32_t in_flight;
} resil_slot_permit;

/* A new permit of type tp, not yet owned; NULL with MemoryError. */
resil_slot_permit *resil_slot_permit_new(PyTypeObject *tp);
/* 0 when permit is a tp from owner not released yet; else -1 with TypeError
 * (not a tp) or ValueError (another owner_kind's, or released before). */
int resil_slot_permit_check(PyObject *permit, PyTypeObject *tp, PyObject *owner,
                            const char *owner_kind);
/* BulkheadPermit and LimiterPermit. */
int resil_slot_init_types(PyObject *module, resil_state *st);

/* A shared region mapped into this process (region.c). */
typedef struct {
    PyObject_HEAD
    char *base;          /* NULL once closed */
    char *mapped;        /* the mapping: outlives base while waiters wait */
    int waiters;         /* threads waiting with the GIL released */
    uint64_t size;       /* bytes mapped */
    uint64_t lease_ns;
    PyObject *path;      /* str */
    PyObject *weakreflist;
    uint64_t dev, ino;   /* the file's, to know the process's other handles on it */
} RegionObject;

/* The block at offset in an open region, or NULL with RegionError raised
 * when it was closed. */
static inline void *resil_region_block(PyObject *region, uint64_t offset) {
    RegionObject *r = (RegionObject *)region;
    if (RS_LIKELY(r->base != NULL)) {
        return r->base + offset;
    }
    PyObject *err = get_state_by_type(Py_TYPE(region))->RegionError;
    PyErr_Format(err, "region %R is closed", r->path);
    return NULL;
}
/* Finds or creates the object (type, name) in region: checks that region
 * is a SharedRegion (TypeError naming `shared`), the name's length
 * (ValueError), and on a mismatch raises ValueError naming the first
 * differing parameter of fields (params hold NUMBER fields as double bits,
 * SECONDS fields as ns, INT fields as integers). -1 with the error set. */
/* Checks a constructor's shared= before anything is made: 0 for None or a
 * SharedRegion; TypeError naming `shared` for another type, or naming cls
 * and name_arg ("name=", "a name") when a region came without a name
 * (named 0): two unnamed objects would be one. */
int resil_region_check_shared(resil_state *st, PyObject *shared, int named, const char *cls,
                              const char *name_arg);
int resil_region_attach(resil_state *st, PyObject *region, const rs_region_type *type,
                        PyObject *name, const uint64_t *params, const rs_field *fields,
                        uint64_t *offset);
/* Locks an object's mutex when rs_region_trylock said rc (not 0): waits up
 * to the region's lease, repairs the block when its holder died. 0 locked,
 * -1 with RegionError raised. */
int resil_region_lock_slow(PyObject *region, int rc, rs_region_mutex *m,
                           const rs_region_type *type, void *block, const uint64_t *params);
static inline int resil_region_lock(PyObject *region, rs_region_mutex *m,
                                    const rs_region_type *type, void *block,
                                    const uint64_t *params) {
    int rc = rs_region_trylock(m);
    return RS_LIKELY(rc == 0) ? 0 : resil_region_lock_slow(region, rc, m, type, block, params);
}
/* A thread about to wait in an open region's memory with the GIL released
 * calls ((RegionObject *)region)->waiters++ (the mapping then outlives a
 * close), and this once the GIL is back: 0, or -1 with RegionError when the
 * region was closed meanwhile (the mapping goes once no thread waits). */
int resil_region_wait_end(PyObject *region);
/* The block at offset in an open region, its mutex (the block's first
 * member) locked as resil_region_lock does; NULL with the error set. */
static inline void *resil_region_lock_block(PyObject *region, uint64_t offset,
                                            const rs_region_type *type, const uint64_t *params) {
    void *blk = resil_region_block(region, offset);
    if (!blk || resil_region_lock(region, (rs_region_mutex *)blk, type, blk, params) < 0) {
        return NULL;
    }
    return blk;
}
/* A str or bytes key's digest under the region's secret; TypeError naming
 * `key` for another type. */
int resil_region_key(PyObject *region, PyObject *key, uint64_t out[2]);
/* Whether process (pid, start) lives, from /proc (an rs_region_alive_fn). */
int resil_region_alive(uint64_t pid, uint64_t start, void *ctx);
/* This process as a permit holder: its pid and start time (kept, and read
 * again after a fork). */
const rs_region_holder *resil_region_me(void);
int resil_region_init_types(PyObject *module, resil_state *st);
/* A shared breaker's region parameters: RS_BREAKER_FIELDS, then adaptive
 * (filled when the module is made; breaker.c). */
extern rs_field resil_breaker_region_fields[RS_BREAKER_REGION_PARAMS];
/* MonitorBlock, a Monitor's data in a region (monblock.c). */
int resil_monblock_init_types(PyObject *module, resil_state *st);

#endif /* RESIL_PY_H */
