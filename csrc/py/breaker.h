/* breaker.h - what the circuit breaker's types share: their layouts and
 * the steps of a guarded call (taking a permit, recording its outcome),
 * used by breaker.c, permit.c, guarded.c and awaitable.c. Internal to
 * the binding. */
#ifndef RESIL_BREAKER_H
#define RESIL_BREAKER_H

#include "resil_py.h"

/* A call's outcome, numbered as a shared breaker's block takes it. */
enum { OUT_SUCCESS = RS_BLOCK_SUCCESS, OUT_FAILURE = RS_BLOCK_FAILURE, OUT_RELEASE = RS_BLOCK_RELEASE };

typedef struct {
    PyObject_HEAD
    rs_breaker core;
    resil_state *st;
    PyObject *name;
    PyObject *clock;
    int clock_kind;
    PyObject *failure_on;     /* tuple of exception classes */
    PyObject *ignore;         /* tuple of exception classes, may be empty */
    PyObject *failure_if;     /* callable or NULL */
    PyObject *result_failure; /* callable or NULL */
    PyObject *pool;           /* EjectionPool or NULL */
    PyObject *listener;       /* fn(breaker, old, new, reason, fails, rate, latency) or NULL */
    /* Transitions taken from the core's fixed queue, waiting to be reported
     * in order: a ring of out_cap entries from out_head. */
    rs_transition *outbox;
    uint32_t out_head;
    uint32_t out_len;
    uint32_t out_cap;
    int delivering;           /* a thread is reporting the outbox */
    double opened_unix;       /* Unix time of the last opening; valid while core.ever_opened */
    int initialised;
    /* finish_call must take finish_call_any: a result_failure predicate, a
     * Python clock, or a region */
    int slow_finish;
    /* Shared: the state lives in a region's block (rs_breaker_block) and
     * `core` stays FORCED_OPEN, so that every inline path (take_permit,
     * finish_call) falls to the slow one, which goes to the block. */
    PyObject *region;         /* SharedRegion or NULL */
    uint64_t offset;
    uint64_t params[RS_REGION_PARAMS];
} BreakerObject;

typedef struct {
    PyObject_HEAD
    PyObject *breaker; /* BreakerObject, strong */
    rs_permit permit;
    uint64_t t0;
    int done;
} PermitObject;

/* The permit of one `with breaker:` block. */
typedef struct {
    PyObject *breaker; /* BreakerObject, strong */
    rs_permit permit;
    uint64_t t0;
} with_entry;

typedef struct {
    PyObject_HEAD
    PyObject *owner;     /* the Context that set it, strong */
    with_entry *entries; /* innermost last */
    Py_ssize_t len;
    Py_ssize_t cap;
} PermitStackObject;

typedef struct {
    PyObject_HEAD
    BreakerObject *breaker;
    PyObject *fn;
    PyObject *dict;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
    int is_async;
} GuardedObject;

typedef struct {
    PyObject_HEAD
    BreakerObject *breaker;
    PyObject *iter;   /* the coroutine, then the iterator being delegated to */
    PyObject *fn;     /* call_async: called when first resumed */
    PyObject *args;
    PyObject *kwargs;
    rs_permit permit;
    uint64_t t0;
    int phase;        /* 0 created, 1 suspended with a permit, 2 finished,
                         3 executing (starting, or inside a send or throw) */
    int held;         /* phase 0 already holding `permit` (call() of a function
                         that returned a coroutine); t0 is read when first resumed */
    int finalized;    /* its finalizer ran (the GC's own mark, kept in reach) */
} AwaitObject;

typedef struct {
    PyObject_HEAD
    rs_ejector ej;
} PoolObject;

/* Defined in breaker.c. */
void drain_slow(BreakerObject *b);
void raise_open(BreakerObject *b, int state, uint64_t remaining_ns);
/* What take_permit does for a shared breaker once its own core (kept
 * FORCED_OPEN) refused: asks the block (0 and *p filled when admitted);
 * when the block refuses too, CircuitOpenError is raised: -1. */
int take_permit_slow(BreakerObject *b, rs_permit *p, uint64_t t0, uint64_t remaining_ns);
/* Gives a permit back without an outcome, in the core or the block; the
 * caller reports transitions (drain). give_back_later leaves a shared
 * breaker's to its next operation (for a dealloc, which must not run a
 * listener). */
void give_back(BreakerObject *b, const rs_permit *p, uint64_t now);
void give_back_later(BreakerObject *b, const rs_permit *p, uint64_t now);
PyObject *finish_call_any(BreakerObject *b, const rs_permit *p, uint64_t t0, PyObject *res);
int is_coroutine_abc(PyObject *o);
/* Defined in permit.c. The `with` permits of the running context
 * (borrowed; the context holds it), or NULL when it has none and create is
 * 0. With create, a context that has none gets one; NULL then means an
 * error is set. */
PermitStackObject *permit_stack(resil_state *st, int create);
/* Makes room for one more entry; -1 with MemoryError. Runs no Python code. */
int permit_stack_reserve(PermitStackObject *s);
/* Defined in errors.c. */
PyObject *make_open_error(BreakerObject *b, int state, uint64_t remaining_ns);
/* Defined in awaitable.c. */
PyObject *make_awaitable(BreakerObject *b, PyObject *coro, PyObject *fn, PyObject *args,
                         PyObject *kwargs);
PyObject *guard_coroutine(BreakerObject *b, const rs_permit *p, PyObject *coro);
PyObject *defer_call(BreakerObject *b, PyObject *fn, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);

static inline int breaker_now(BreakerObject *b, uint64_t *now) {
    return resil_clock_read(b->clock_kind, b->clock, now);
}

/* The time at the end of a call: a failing Python clock must not lose the
 * outcome, so its error is reported as unraisable and the last time used. */
static inline uint64_t breaker_now_end(BreakerObject *b) {
    uint64_t now;
    if (RS_LIKELY(b->clock_kind != CLOCK_PYTHON_KIND)) {
        breaker_now(b, &now); /* cannot fail */
        return now;
    }
    /* A Python clock runs code: keep the call's exception out of its way. */
    PyObject *saved = PyErr_Occurred() ? fetch_exc() : NULL;
    if (breaker_now(b, &now) < 0) {
        PyErr_WriteUnraisable((PyObject *)b);
        now = b->core.now_ns;
    }
    restore_exc(saved);
    return now;
}

static inline double latency_ms(uint64_t t0, uint64_t t1) {
    /* Through int64_t: one conversion instruction where uint64_t takes
     * several, and the same value (a call lasts less than 2^63 ns). */
    return t1 > t0 ? (double)(int64_t)(t1 - t0) / 1e6 : 0.0;
}

static inline void drain(BreakerObject *b) {
    if (RS_UNLIKELY(b->core.pending_len)) {
        drain_slow(b);
    }
}

/* Takes a permit or raises CircuitOpenError. */
static inline int take_permit(BreakerObject *b, rs_permit *p, uint64_t *t0) {
    if (breaker_now(b, t0) < 0) {
        return -1;
    }
    uint64_t remaining;
    if (RS_UNLIKELY(rs_breaker_acquire(&b->core, *t0, p, &remaining) != RS_OK)) {
        if (RS_UNLIKELY(b->region != NULL)) {
            return take_permit_slow(b, p, *t0, remaining);
        }
        raise_open(b, b->core.state, remaining);
        drain(b);
        return -1;
    }
    drain(b);
    return 0;
}

/* Calls the guarded function. A Python function is called through its own
 * vectorcall, skipping the result check PyObject_Vectorcall makes for C
 * callables that could return a value with an error set. */
static inline PyObject *call_guarded(PyObject *fn, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    if (RS_LIKELY(PyFunction_Check(fn))) {
        vectorcallfunc vc = ((PyFunctionObject *)fn)->vectorcall;
        if (RS_LIKELY(vc != NULL)) {
            return vc(fn, args, nargsf, kwnames);
        }
    }
    return PyObject_Vectorcall(fn, args, nargsf, kwnames);
}

/* A call's result that is a coroutine: its outcome is its completion. A
 * Future or Task is not one (it runs on its own; it is returned as is). */
static inline int is_coroutine_result(PyObject *res) {
    if (PyCoro_CheckExact(res)) {
        return 1;
    }
    PyAsyncMethods *am = Py_TYPE(res)->tp_as_async;
    if (RS_LIKELY(!am || !am->am_await)) {
        return 0;
    }
    return is_coroutine_abc(res);
}

/* Records the outcome of a finished call and returns res (or NULL with the
 * call's exception). The common case, a result with no result_failure
 * predicate, a built-in clock and no region, is recorded here;
 * finish_call_any takes every other. */
static inline PyObject *finish_call(BreakerObject *b, const rs_permit *p, uint64_t t0,
                                    PyObject *res) {
    if (RS_LIKELY(res != NULL && !b->slow_finish)) {
        uint64_t t1;
        breaker_now(b, &t1); /* a built-in clock cannot fail */
        rs_breaker_success(&b->core, p, latency_ms(t0, t1), t1);
        drain(b);
        return res;
    }
    return finish_call_any(b, p, t0, res);
}

/* The end of a sync call: a coroutine result is guarded until it finishes,
 * anything else recorded now. */
static inline PyObject *end_call(BreakerObject *b, const rs_permit *p, uint64_t t0, PyObject *res) {
    if (RS_UNLIKELY(res && is_coroutine_result(res))) {
        return guard_coroutine(b, p, res);
    }
    return finish_call(b, p, t0, res);
}

#endif /* RESIL_BREAKER_H */
