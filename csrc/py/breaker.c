/* breaker.c - Breaker, the circuit breaker engine: the state machine of
 * rs_breaker plus outcome classification (failure_on / ignore / failure_if /
 * result_failure); the public resil.CircuitBreaker subclasses it in Python.
 * Its permits, guarded functions and awaitables are in permit.c, guarded.c
 * and awaitable.c; CircuitOpenError in errors.c. */
#include "breaker.h"

#include <math.h>
#include <string.h>
#include <structmember.h>
#include <time.h>

/* ---- breaker helpers --------------------------------------------------- */

/* Notes the Unix time of a transition to OPEN, read as the binding takes it
 * from the core (the core reads no clock; its opened_at_ns is clock time). */
static inline int note_opening(BreakerObject *b, const rs_transition *t) {
    if (t->new_state == RS_STATE_OPEN) {
        struct timespec ts;
        b->opened_unix = timespec_get(&ts, TIME_UTC) == TIME_UTC
                             ? (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 : 0.0;
        return 1;
    }
    return 0;
}

/* Moves core's queued transitions (the breaker's own core, or its block's
 * under the lock) to the outbox, oldest first. Runs no Python code, so the
 * outbox keeps the order in which they happened. When the outbox cannot
 * grow the rest stay queued in the core, which is drained after the
 * outbox. Returns 1 when one was an opening. */
static int take_from(BreakerObject *b, rs_breaker *core) {
    int opened = 0;
    while (core->pending_len) {
        if (b->out_len == b->out_cap) {
            uint32_t cap = b->out_cap ? b->out_cap * 2 : RS_BREAKER_PENDING;
            rs_transition *grown =
                cap > b->out_cap ? (rs_transition *)PyMem_Malloc((size_t)cap * sizeof *grown) : NULL;
            if (!grown) {
                return opened;
            }
            for (uint32_t i = 0; i < b->out_len; i++) {
                grown[i] = b->outbox[(b->out_head + i) % b->out_cap];
            }
            PyMem_Free(b->outbox);
            b->outbox = grown;
            b->out_head = 0;
            b->out_cap = cap;
        }
        rs_transition *t = &b->outbox[(b->out_head + b->out_len) % b->out_cap];
        rs_breaker_pop_transition(core, t);
        opened |= note_opening(b, t);
        b->out_len++;
    }
    return opened;
}

static void take_transitions(BreakerObject *b) {
    take_from(b, &b->core);
}

static int next_transition(BreakerObject *b, rs_transition *t) {
    take_transitions(b);
    if (b->out_len) {
        *t = b->outbox[b->out_head];
        b->out_head = (b->out_head + 1) % b->out_cap;
        b->out_len--;
        return 1;
    }
    /* Only when the outbox could not grow. */
    if (!rs_breaker_pop_transition(&b->core, t)) {
        return 0;
    }
    note_opening(b, t);
    return 1;
}

static void report(BreakerObject *b, const rs_transition *t) {
    resil_state *st = b->st;
    PyObject *lat = t->latency_ms >= 0.0 ? PyFloat_FromDouble(t->latency_ms) : Py_NewRef(Py_None);
    PyObject *fails = PyLong_FromUnsignedLongLong(t->consecutive_failures);
    PyObject *rate = PyFloat_FromDouble(t->success_rate);
    PyObject *fn = Py_XNewRef(b->listener);
    PyObject *r = NULL;
    if (lat && fails && rate) {
        PyObject *args[7] = {(PyObject *)b, st->states[t->old_state], st->states[t->new_state],
                             st->reasons[t->reason], fails, rate, lat};
        r = fn ? PyObject_Vectorcall(fn, args, 7, NULL) : Py_NewRef(Py_None);
    }
    if (!r) {
        PyErr_WriteUnraisable((PyObject *)b);
    }
    Py_XDECREF(r);
    Py_XDECREF(fn);
    Py_XDECREF(lat);
    Py_XDECREF(fails);
    Py_XDECREF(rate);
}

/* Reports transitions to the listener, one at a time and in the order they
 * happened, whichever threads made them: the first thread to find some
 * reports them all, including those other threads (or the listener itself,
 * re-entering the breaker) add meanwhile; the others only queue theirs and
 * return. The check of `delivering` and the queueing run no Python code, so
 * a transition is never left unreported. Never raises. */
void drain_slow(BreakerObject *b) {
    take_transitions(b);
    if (b->delivering) {
        return;
    }
    b->delivering = 1;
    PyObject *saved = PyErr_Occurred() ? fetch_exc() : NULL;
    rs_transition t;
    while (next_transition(b, &t)) {
        report(b, &t);
    }
    b->delivering = 0;
    restore_exc(saved);
}

void raise_open(BreakerObject *b, int state, uint64_t remaining_ns) {
    PyObject *exc = make_open_error(b, state, remaining_ns);
    if (exc) {
        PyErr_SetObject(b->st->CircuitOpenError, exc);
        Py_DECREF(exc);
    }
}

/* Classifies an exception instance. On a failure_if error that error is
 * left raised (chained to exc) and OUT_FAILURE returned. */
static int classify_exc(BreakerObject *b, PyObject *exc) {
    PyObject *tp = (PyObject *)Py_TYPE(exc);
    if (PyErr_GivenExceptionMatches(tp, b->st->cancel_types)) {
        return OUT_RELEASE;
    }
    if (PyTuple_GET_SIZE(b->ignore) && PyErr_GivenExceptionMatches(tp, b->ignore)) {
        return OUT_RELEASE;
    }
    if (!PyErr_GivenExceptionMatches(tp, b->failure_on)) {
        return OUT_SUCCESS;
    }
    if (!b->failure_if) {
        return OUT_FAILURE;
    }
    PyObject *pred = Py_NewRef(b->failure_if); /* configure() may replace it meanwhile */
    PyObject *r = PyObject_CallOneArg(pred, exc);
    Py_DECREF(pred);
    int truth = r ? PyObject_IsTrue(r) : -1;
    Py_XDECREF(r);
    if (truth < 0) {
        PyObject *err = fetch_exc();
        PyException_SetContext(err, Py_NewRef(exc));
        restore_exc(err);
        return OUT_FAILURE;
    }
    return truth ? OUT_FAILURE : OUT_SUCCESS;
}

/* Classifies the raised exception, leaving an exception raised. */
static int classify_current(BreakerObject *b) {
    if (PyErr_ExceptionMatches(b->st->cancel_types)) {
        return OUT_RELEASE;
    }
    if (PyTuple_GET_SIZE(b->ignore) && PyErr_ExceptionMatches(b->ignore)) {
        return OUT_RELEASE;
    }
    if (!PyErr_ExceptionMatches(b->failure_on)) {
        return OUT_SUCCESS;
    }
    if (!b->failure_if) {
        return OUT_FAILURE;
    }
    PyObject *exc = fetch_exc();
    int kind = classify_exc(b, exc);
    if (PyErr_Occurred()) { /* failure_if raised: its error, chained, wins */
        Py_DECREF(exc);
    } else {
        restore_exc(exc);
    }
    return kind;
}

/* ---- a breaker in a region -------------------------------------------- */

/* The block, locked, its core's rings set for this process; NULL with
 * RegionError (closed, or a lock held past the lease). */
static rs_breaker_block *shared_lock(BreakerObject *b) {
    rs_breaker_block *blk = resil_region_block(b->region, b->offset);
    if (!blk || resil_region_lock(b->region, &blk->lock, &RS_BREAKER_REGION_TYPE, blk,
                                  b->params) < 0) {
        return NULL;
    }
    rs_breaker_block_core(blk);
    return blk;
}

/* Takes the block's transitions into this process's outbox (they are this
 * process's to report: its call made them) and unlocks. */
static void shared_unlock(BreakerObject *b, rs_breaker_block *blk) {
    if (take_from(b, &blk->core)) {
        blk->opened_unix = b->opened_unix;
    }
    rs_region_unlock(&blk->lock);
}

/* Reports what shared operations put in the outbox. */
static inline void shared_deliver(BreakerObject *b) {
    if (b->out_len) {
        drain_slow(b);
    }
}

/* Applies an outcome (OUT_*) to the block; keeps a pending exception. A
 * region that cannot be used any more (closed meanwhile, a lock held past
 * the lease) loses this one outcome: reported as unraisable, never raised
 * over the call's own result. */
__attribute__((cold, noinline)) static void shared_record(BreakerObject *b, const rs_permit *p,
                                                          int kind, double lat, uint64_t now,
                                                          int deliver) {
    PyObject *saved = PyErr_Occurred() ? fetch_exc() : NULL;
    rs_breaker_block *blk = shared_lock(b);
    if (!blk) {
        PyErr_WriteUnraisable((PyObject *)b);
        restore_exc(saved);
        return;
    }
    rs_breaker_block_outcome(blk, p, kind, lat, now, resil_region_me());
    shared_unlock(b, blk);
    if (deliver) {
        shared_deliver(b);
    }
    restore_exc(saved);
}

/* Cold and out of line: the inline paths that call it stay small, and the
 * core's acquire stays inlined into them. */
__attribute__((cold, noinline)) int take_permit_slow(BreakerObject *b, rs_permit *p, uint64_t t0,
                                                     uint64_t remaining_ns) {
    rs_breaker_block *blk = shared_lock(b);
    if (!blk) {
        return -1;
    }
    RegionObject *r = (RegionObject *)b->region;
    rs_status rc = rs_breaker_block_acquire(blk, t0, p, &remaining_ns, resil_region_me(),
                                            r->lease_ns, resil_region_alive, NULL);
    int state = blk->core.state;
    shared_unlock(b, blk);
    shared_deliver(b);
    if (rc != RS_OK) {
        raise_open(b, state, remaining_ns);
        return -1;
    }
    return 0;
}

__attribute__((noinline)) void give_back(BreakerObject *b, const rs_permit *p, uint64_t now) {
    if (b->region) {
        shared_record(b, p, OUT_RELEASE, -1.0, now, 1);
    } else {
        rs_breaker_release(&b->core, p, now);
    }
}

void give_back_later(BreakerObject *b, const rs_permit *p, uint64_t now) {
    if (b->region) {
        if (!((RegionObject *)b->region)->base) {
            return; /* closed: closing gave back this process's probes */
        }
        shared_record(b, p, OUT_RELEASE, -1.0, now, 0);
    } else {
        rs_breaker_release(&b->core, p, now);
    }
}

/* Runs op on the breaker's core at now, or on its block's under the lock;
 * reports the transitions. -1 with RegionError. */
static int core_op(BreakerObject *b, void (*op)(rs_breaker *, uint64_t), uint64_t now) {
    if (!b->region) {
        op(&b->core, now);
        drain(b);
        return 0;
    }
    rs_breaker_block *blk = shared_lock(b);
    if (!blk) {
        return -1;
    }
    rs_breaker_block_run(blk, op, now);
    shared_unlock(b, blk);
    shared_deliver(b);
    return 0;
}

/* The breaker's state for reading: its own core, or a copy of its block's
 * taken under the lock (its health computed), in *copy; *opened_unix the
 * time of its last opening. fresh: first reads the clock, runs the due
 * time-driven transitions and reports them (Python code); else none of
 * that. NULL with an error. */
static const rs_breaker *read_state(BreakerObject *b, rs_breaker *copy, double *opened_unix,
                                    int fresh) {
    uint64_t now = 0;
    if (fresh && breaker_now(b, &now) < 0) {
        return NULL;
    }
    if (!fresh && !b->region) {
        *opened_unix = b->opened_unix;
        return &b->core;
    }
    if (!b->region) {
        rs_breaker_tick(&b->core, now);
        drain(b);
        take_transitions(b); /* notes an opening not yet taken; runs no Python code */
        *opened_unix = b->opened_unix;
        return &b->core;
    }
    rs_breaker_block *blk = shared_lock(b);
    if (!blk) {
        return NULL;
    }
    if (fresh) {
        rs_breaker_block_run(blk, rs_breaker_tick, now);
    }
    rs_breaker_health(&blk->core); /* computed now, so the copy holds it */
    if (take_from(b, &blk->core)) {
        blk->opened_unix = b->opened_unix;
    }
    *copy = blk->core; /* its rings stay in the region: only their sums are read */
    *opened_unix = blk->opened_unix;
    rs_region_unlock(&blk->lock);
    if (fresh) {
        shared_deliver(b);
    }
    return copy;
}

static const rs_breaker *read_view(BreakerObject *b, rs_breaker *copy, double *opened_unix) {
    return read_state(b, copy, opened_unix, 1);
}

static inline void record(BreakerObject *b, const rs_permit *p, int kind, double lat, uint64_t now) {
    if (RS_UNLIKELY(b->region != NULL)) {
        shared_record(b, p, kind, lat, now, 1);
        return;
    }
    if (kind == OUT_SUCCESS) {
        rs_breaker_success(&b->core, p, lat, now);
    } else if (kind == OUT_FAILURE) {
        rs_breaker_failure(&b->core, p, lat, now);
    } else {
        rs_breaker_release(&b->core, p, now);
    }
}

/* Records the outcome of a finished call and returns res (or NULL with the
 * call's exception). result_failure errors replace the result. Every case,
 * the ones finish_call records inline included. */
PyObject *finish_call_any(BreakerObject *b, const rs_permit *p, uint64_t t0, PyObject *res) {
    uint64_t t1 = breaker_now_end(b);
    double lat = latency_ms(t0, t1);
    int kind;
    if (RS_LIKELY(res != NULL)) {
        kind = OUT_SUCCESS;
        if (b->result_failure) {
            PyObject *pred = Py_NewRef(b->result_failure); /* configure() may replace it */
            PyObject *r = PyObject_CallOneArg(pred, res);
            Py_DECREF(pred);
            int truth = r ? PyObject_IsTrue(r) : -1;
            Py_XDECREF(r);
            if (truth != 0) {
                kind = OUT_FAILURE;
            }
            if (truth < 0) {
                Py_CLEAR(res);
            }
        }
    } else {
        kind = classify_current(b);
    }
    record(b, p, kind, lat, t1);
    drain(b);
    return res;
}

/* ---- Breaker: configuration -------------------------------------------- */

/* The configuration parameters, in constructor order (after name). */
enum {
    P_FAILURE_THRESHOLD = 0,
    P_FAILURE_RATE_THRESHOLD,
    P_SLOW_CALL_DURATION,
    P_SLOW_CALL_RATE_THRESHOLD,
    P_WINDOW_SIZE,
    P_WINDOW_DURATION,
    P_MINIMUM_CALLS,
    P_COOLDOWN,
    P_COOLDOWN_MULTIPLIER,
    P_COOLDOWN_MAX,
    P_HALF_OPEN_PROBES,
    P_HALF_OPEN_MAX_WAIT,
    P_ADAPTIVE,
    P_EWMA_ALPHA,
    P_SENSITIVITY,
    P_MIN_HEALTH_SCORE,
    P_LATENCY_WINDOW,
    P_FAILURE_ON,
    P_IGNORE,
    P_FAILURE_IF,
    P_RESULT_FAILURE,
    P_COUNT
};

/* The constructor's keywords: name, the parameters in P_* order, clock.
 * A parameter's name is KWLIST[p + 1] (PARAM_NAME). */
static char *KWLIST[] = {"name", "failure_threshold", "failure_rate_threshold",
                         "slow_call_duration", "slow_call_rate_threshold", "window_size",
                         "window_duration", "minimum_calls", "cooldown",
                         "cooldown_multiplier", "cooldown_max", "half_open_probes",
                         "half_open_max_wait", "adaptive", "ewma_alpha", "sensitivity",
                         "min_health_score", "latency_window", "failure_on", "ignore",
                         "failure_if", "result_failure", "clock", "shared", NULL};
#define PARAM_NAME(p) ((const char *)KWLIST[(p) + 1])

/* The core field (rs_breaker_field) behind each parameter, or -1 for what
 * the binding holds. A field's parameter has the field's own name. */
static const int PARAM_FIELD[P_COUNT] = {
    RS_BF_FAILURE_THRESHOLD, RS_BF_FAILURE_RATE_THRESHOLD, RS_BF_SLOW_CALL_DURATION,
    RS_BF_SLOW_CALL_RATE_THRESHOLD, RS_BF_WINDOW_SIZE, RS_BF_WINDOW_DURATION,
    RS_BF_MINIMUM_CALLS, RS_BF_COOLDOWN, RS_BF_COOLDOWN_MULTIPLIER, RS_BF_COOLDOWN_MAX,
    RS_BF_HALF_OPEN_PROBES, RS_BF_HALF_OPEN_MAX_WAIT, -1, RS_BF_EWMA_ALPHA, RS_BF_SENSITIVITY,
    RS_BF_MIN_HEALTH_SCORE, RS_BF_LATENCY_WINDOW, -1, -1, -1, -1,
};

/* The parameters the binding holds (outcome classification). */
enum { PY_FAILURE_ON = 0, PY_IGNORE, PY_FAILURE_IF, PY_RESULT_FAILURE, PY_COUNT };

static int param_of_field(int field) {
    for (int p = 0; p < P_COUNT; p++) {
        if (PARAM_FIELD[p] == field) {
            return p;
        }
    }
    return -1;
}

/* One parsed parameter value, ready to apply without running Python code. */
typedef struct {
    uint32_t u;
    double d;
    uint64_t ns;
    int on;        /* optional rules: enabled; adaptive: the flag */
    PyObject *obj; /* classification parameters: new reference, Py_None for None */
} parsed_param;

static const rs_field *const FIELDS = RS_BREAKER_FIELDS;

static int as_u32(PyObject *o, int field, uint32_t *out) {
    long long v;
    if (resil_field_int(&FIELDS[field], o, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* failure_on / ignore: an exception class or a tuple of them -> a tuple. */
static PyObject *exc_tuple(PyObject *o, const char *name) {
    if (PyExceptionClass_Check(o)) {
        return PyTuple_Pack(1, o);
    }
    if (PyTuple_Check(o)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); i++) {
            if (!PyExceptionClass_Check(PyTuple_GET_ITEM(o, i))) {
                PyObject *r = resil_value_repr(PyTuple_GET_ITEM(o, i));
                if (r) {
                    PyErr_Format(PyExc_TypeError,
                                 "%s must be an exception class or a tuple of them; item %zd is %U",
                                 name, i, r);
                    Py_DECREF(r);
                }
                return NULL;
            }
        }
        /* A tuple subclass could change what it holds; keep a plain copy. */
        return PyTuple_CheckExact(o) ? Py_NewRef(o) : PyTuple_GetSlice(o, 0, PY_SSIZE_T_MAX);
    }
    PyErr_Format(PyExc_TypeError, "%s must be an exception class or a tuple of them, not %.100s",
                 name, Py_TYPE(o)->tp_name);
    return NULL;
}

/* Parses the value of parameter p; may run Python code (a number's
 * __float__), touches no breaker. */
static int parse_param(int p, PyObject *v, parsed_param *out) {
    int f = PARAM_FIELD[p];
    switch (p) {
    case P_FAILURE_THRESHOLD:
    case P_WINDOW_SIZE:
    case P_MINIMUM_CALLS:
    case P_HALF_OPEN_PROBES:
    case P_LATENCY_WINDOW:
        return as_u32(v, f, &out->u);
    case P_FAILURE_RATE_THRESHOLD:
        out->on = v != Py_None;
        return out->on ? resil_field_double(&FIELDS[f], v, &out->d) : 0;
    case P_SLOW_CALL_DURATION:
        out->on = v != Py_None;
        if (out->on && resil_field_double(&FIELDS[f], v, &out->d) < 0) {
            return -1;
        }
        out->d *= 1000.0; /* the core keeps milliseconds */
        return 0;
    case P_WINDOW_DURATION:
    case P_HALF_OPEN_MAX_WAIT:
        out->ns = 0; /* None: a count window / no limit */
        return v == Py_None ? 0 : resil_field_ns(&FIELDS[f], v, &out->ns);
    case P_COOLDOWN:
    case P_COOLDOWN_MAX:
        return resil_field_ns(&FIELDS[f], v, &out->ns);
    case P_SLOW_CALL_RATE_THRESHOLD:
    case P_COOLDOWN_MULTIPLIER:
    case P_EWMA_ALPHA:
    case P_SENSITIVITY:
    case P_MIN_HEALTH_SCORE:
        return resil_field_double(&FIELDS[f], v, &out->d);
    case P_ADAPTIVE:
        if (!PyBool_Check(v)) {
            PyErr_Format(PyExc_TypeError, "adaptive must be a bool, not %.100s", Py_TYPE(v)->tp_name);
            return -1;
        }
        out->on = v == Py_True;
        return 0;
    case P_FAILURE_ON:
    case P_IGNORE:
        out->obj = exc_tuple(v, PARAM_NAME(p));
        return out->obj ? 0 : -1;
    default: /* P_FAILURE_IF, P_RESULT_FAILURE */
        if (v != Py_None && !PyCallable_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s must be callable or None, not %.100s", PARAM_NAME(p),
                         Py_TYPE(v)->tp_name);
            return -1;
        }
        out->obj = Py_NewRef(v);
        return 0;
    }
}

/* Applies a parsed value to a core configuration; runs no Python code. */
static void apply_param(int p, const parsed_param *in, rs_breaker_config *c) {
    switch (p) {
    case P_FAILURE_THRESHOLD: c->failure_threshold = in->u; break;
    case P_FAILURE_RATE_THRESHOLD:
        c->failure_rate_enabled = in->on;
        if (in->on) c->failure_rate_threshold = in->d;
        break;
    case P_SLOW_CALL_DURATION:
        c->slow_call_enabled = in->on;
        if (in->on) c->slow_call_ms = in->d;
        break;
    case P_SLOW_CALL_RATE_THRESHOLD: c->slow_call_rate_threshold = in->d; break;
    case P_WINDOW_SIZE: c->window_size = in->u; break;
    case P_WINDOW_DURATION: c->window_duration_ns = in->ns; break;
    case P_MINIMUM_CALLS: c->minimum_calls = in->u; break;
    case P_COOLDOWN: c->cooldown_ns = in->ns; break;
    case P_COOLDOWN_MULTIPLIER: c->cooldown_multiplier = in->d; break;
    case P_COOLDOWN_MAX: c->cooldown_max_ns = in->ns; break;
    case P_HALF_OPEN_PROBES: c->half_open_probes = in->u; break;
    case P_HALF_OPEN_MAX_WAIT: c->half_open_max_wait_ns = in->ns; break;
    case P_ADAPTIVE: c->adaptive = in->on; break;
    case P_EWMA_ALPHA: c->ewma_alpha = in->d; break;
    case P_SENSITIVITY: c->sensitivity = in->d; break;
    case P_MIN_HEALTH_SCORE: c->min_health_score = in->d; break;
    case P_LATENCY_WINDOW: c->latency_window = in->u; break;
    default: break; /* classification: held by the binding */
    }
}

static PyObject *float_or_none(int on, double seconds) {
    return on ? PyFloat_FromDouble(seconds) : Py_NewRef(Py_None);
}

/* The value of parameter p, in constructor units. py holds the
 * classification parameters (NULL for None). */
static PyObject *param_value(const rs_breaker_config *c, PyObject *const py[PY_COUNT], int p) {
    switch (p) {
    case P_FAILURE_THRESHOLD: return PyLong_FromUnsignedLong(c->failure_threshold);
    case P_FAILURE_RATE_THRESHOLD:
        return float_or_none(c->failure_rate_enabled, c->failure_rate_threshold);
    case P_SLOW_CALL_DURATION: return float_or_none(c->slow_call_enabled, c->slow_call_ms / 1000.0);
    case P_SLOW_CALL_RATE_THRESHOLD: return PyFloat_FromDouble(c->slow_call_rate_threshold);
    case P_WINDOW_SIZE: return PyLong_FromUnsignedLong(c->window_size);
    case P_WINDOW_DURATION:
        return float_or_none(c->window_duration_ns != 0, (double)c->window_duration_ns / 1e9);
    case P_MINIMUM_CALLS: return PyLong_FromUnsignedLong(c->minimum_calls);
    case P_COOLDOWN: return PyFloat_FromDouble((double)c->cooldown_ns / 1e9);
    case P_COOLDOWN_MULTIPLIER: return PyFloat_FromDouble(c->cooldown_multiplier);
    case P_COOLDOWN_MAX: return PyFloat_FromDouble((double)c->cooldown_max_ns / 1e9);
    case P_HALF_OPEN_PROBES: return PyLong_FromUnsignedLong(c->half_open_probes);
    case P_HALF_OPEN_MAX_WAIT:
        return float_or_none(c->half_open_max_wait_ns != 0, (double)c->half_open_max_wait_ns / 1e9);
    case P_ADAPTIVE: return PyBool_FromLong(c->adaptive);
    case P_EWMA_ALPHA: return PyFloat_FromDouble(c->ewma_alpha);
    case P_SENSITIVITY: return PyFloat_FromDouble(c->sensitivity);
    case P_MIN_HEALTH_SCORE: return PyFloat_FromDouble(c->min_health_score);
    case P_LATENCY_WINDOW: return PyLong_FromUnsignedLong(c->latency_window);
    default: {
        PyObject *o = py[p - P_FAILURE_ON];
        return Py_NewRef(o ? o : Py_None);
    }
    }
}

/* The error for a status the core returned on a configuration: MemoryError
 * for RS_ENOMEM, else a ValueError (rc = RS_EFIELD_BASE + field) that names
 * the field and the value passed for it; when it was not
 * passed, the parameter that was and broke a rule between them (cooldown
 * above cooldown_max, window_size below minimum_calls), else the field's
 * value in c. */
static void bad_config(int rc, const rs_breaker_config *c, PyObject *const given[P_COUNT]) {
    int field = rc - RS_EFIELD_BASE;
    int p = param_of_field(field);
    if (p < 0 || given[p]) { /* not a field's status, or the value passed for it */
        PyObject *by_field[RS_BF_COUNT] = {NULL};
        if (p >= 0) {
            by_field[field] = given[p];
        }
        resil_raise_status(rc, FIELDS, RS_BF_COUNT, by_field, NULL);
        return;
    }
    PyObject *none[PY_COUNT] = {NULL};
    /* A rule between two parameters, broken by the one that was passed:
     * name that one, against the other's value. */
    int other = field == RS_BF_COOLDOWN_MAX ? P_COOLDOWN
                : field == RS_BF_MINIMUM_CALLS ? P_WINDOW_SIZE : -1;
    if (other >= 0 && given[other]) {
        PyObject *limit = param_value(c, none, p);
        PyObject *shown = limit ? PyObject_Repr(limit) : NULL;
        if (shown) {
            const char *accepts = other == P_COOLDOWN ? "<= cooldown_max (%U)"
                                                      : ">= minimum_calls (%U) for a count window";
            PyObject *text = PyUnicode_FromFormat(accepts, shown);
            const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
            if (utf8) {
                resil_bad_value(PARAM_NAME(other), utf8, given[other]);
            }
            Py_XDECREF(text);
        }
        Py_XDECREF(shown);
        Py_XDECREF(limit);
        return;
    }
    PyObject *v = param_value(c, none, p);
    if (v) {
        resil_field_error(&FIELDS[field], v);
        Py_DECREF(v);
    }
}

static void clear_parsed(parsed_param *pv) {
    for (int p = 0; p < P_COUNT; p++) {
        Py_CLEAR(pv[p].obj);
    }
}

/* Parses every given parameter (given[p] NULL: not given) into pv and
 * applies them to *c. Returns -1 with an exception set (pv cleared). */
static int parse_params(PyObject *const given[P_COUNT], parsed_param *pv) {
    memset(pv, 0, sizeof(parsed_param) * P_COUNT);
    for (int p = 0; p < P_COUNT; p++) {
        if (given[p] && parse_param(p, given[p], &pv[p]) < 0) {
            clear_parsed(pv);
            return -1;
        }
    }
    return 0;
}

static PyObject *take_classifier(parsed_param *pv, int p) {
    PyObject *o = pv[p].obj;
    pv[p].obj = NULL;
    if (o == Py_None) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

static PyObject *breaker_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *name = NULL, *clock = NULL, *shared = Py_None;
    PyObject *v[P_COUNT] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "|O$OOOOOOOOOOOOOOOOOOOOOOO:CircuitBreaker", KWLIST, &name,
            &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11],
            &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18], &v[19], &v[20], &clock,
            &shared)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    if (name && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (resil_region_check_shared(st, shared, name != NULL, "CircuitBreaker", "a name") < 0) {
        return NULL;
    }
    parsed_param pv[P_COUNT];
    if (parse_params(v, pv) < 0) {
        return NULL;
    }
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    for (int p = 0; p < P_COUNT; p++) {
        if (v[p]) {
            apply_param(p, &pv[p], &c);
        }
    }
    BreakerObject *self = NULL;
    int check = rs_breaker_config_check(&c);
    if (check != RS_OK) {
        bad_config(check, &c, v);
        goto error;
    }
    int kind = resil_clock_resolve(st, &clock);
    uint64_t now;
    if (kind < 0 || resil_clock_read(kind, clock, &now) < 0) {
        goto error;
    }
    self = (BreakerObject *)type->tp_alloc(type, 0);
    if (!self) {
        goto error;
    }
    self->st = st;
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    self->name = name ? Py_NewRef(name) : PyUnicode_FromString("default");
    self->failure_on = v[P_FAILURE_ON] ? take_classifier(pv, P_FAILURE_ON)
                                       : PyTuple_Pack(1, PyExc_Exception);
    self->ignore = v[P_IGNORE] ? take_classifier(pv, P_IGNORE) : PyTuple_New(0);
    self->failure_if = take_classifier(pv, P_FAILURE_IF);
    self->result_failure = take_classifier(pv, P_RESULT_FAILURE);
    self->slow_finish = self->result_failure || kind == CLOCK_PYTHON_KIND;
    if (!self->name || !self->failure_on || !self->ignore) {
        goto error;
    }
    int rc = rs_breaker_init(&self->core, &c, now);
    if (rc != RS_OK) {
        bad_config(rc, &c, v);
        goto error;
    }
    self->initialised = 1;
    if (shared != Py_None) {
        rs_breaker_region_params(&c, self->params);
        if (resil_region_attach(st, shared, &RS_BREAKER_REGION_TYPE, self->name, self->params,
                                resil_breaker_region_fields, &self->offset) < 0) {
            goto error;
        }
        self->region = Py_NewRef(shared);
        self->slow_finish = 1;
        /* the inline paths must always fall to the block: the own core
         * rejects everything, and its transition is nobody's to report */
        rs_breaker_force_open(&self->core, now);
        rs_transition t;
        while (rs_breaker_pop_transition(&self->core, &t)) {
        }
    }
    return (PyObject *)self;
error:
    clear_parsed(pv);
    Py_XDECREF(self);
    return NULL;
}

/* configure(**changes) */
static PyObject *breaker_configure(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    if (nargs) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    PyObject *given[P_COUNT] = {NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int p = 0;
        while (p < P_COUNT && PyUnicode_CompareWithASCIIString(key, PARAM_NAME(p)) != 0) {
            p++;
        }
        if (p == P_COUNT) {
            if (PyUnicode_CompareWithASCIIString(key, "name") == 0 ||
                PyUnicode_CompareWithASCIIString(key, "clock") == 0) {
                PyErr_Format(PyExc_TypeError,
                             "configure() cannot change %U: it is fixed when the breaker is made",
                             key);
            } else {
                PyErr_Format(PyExc_TypeError, "configure() got an unexpected keyword argument %R",
                             key);
            }
            return NULL;
        }
        if (self->region && p < P_FAILURE_ON) {
            PyErr_Format(PyExc_TypeError,
                         "configure() cannot change %U of a shared breaker: the region holds "
                         "its parameters, fixed when the first process made it (failure_on, "
                         "ignore, failure_if and result_failure can change: each process "
                         "classifies its own calls)",
                         key);
            return NULL;
        }
        given[p] = args[i];
    }
    parsed_param pv[P_COUNT];
    if (parse_params(given, pv) < 0) {
        return NULL;
    }
    uint64_t now;
    if (breaker_now(self, &now) < 0) {
        clear_parsed(pv);
        return NULL;
    }
    /* From here to the commit no Python code runs: no other thread can
     * change the configuration between this copy and the new one. */
    rs_breaker_config c = self->core.cfg;
    for (int p = 0; p < P_COUNT; p++) {
        if (given[p]) {
            apply_param(p, &pv[p], &c);
        }
    }
    int rc = self->region ? RS_OK : rs_breaker_configure(&self->core, &c, now);
    if (rc != RS_OK) {
        bad_config(rc, &c, given);
        clear_parsed(pv);
        return NULL;
    }
    PyObject **slots[PY_COUNT] = {&self->failure_on, &self->ignore, &self->failure_if,
                                  &self->result_failure};
    PyObject *old[PY_COUNT] = {NULL};
    for (int i = 0; i < PY_COUNT; i++) {
        if (given[P_FAILURE_ON + i]) {
            old[i] = *slots[i];
            *slots[i] = take_classifier(pv, P_FAILURE_ON + i);
        }
    }
    self->slow_finish = self->result_failure || self->clock_kind == CLOCK_PYTHON_KIND ||
                        self->region;
    /* Old callables are released after the change is whole: a __del__ may run. */
    drain(self);
    for (int i = 0; i < PY_COUNT; i++) {
        Py_XDECREF(old[i]);
    }
    clear_parsed(pv);
    Py_RETURN_NONE;
}

static PyObject *breaker_get_param(BreakerObject *self, void *closure) {
    PyObject *py[PY_COUNT] = {self->failure_on, self->ignore, self->failure_if,
                              self->result_failure};
    return param_value(&self->core.cfg, py, (int)(intptr_t)closure);
}

static int breaker_set_param(BreakerObject *self, PyObject *value, void *closure) {
    (void)self;
    (void)value;
    const char *name = PARAM_NAME((int)(intptr_t)closure);
    PyErr_Format(PyExc_AttributeError, "%s is read-only; use breaker.configure(%s=...)", name, name);
    return -1;
}

static PyObject *breaker_get_config(BreakerObject *self, void *Py_UNUSED(closure)) {
    PyObject *d = PyDict_New();
    if (!d || PyDict_SetItemString(d, "name", self->name) < 0) {
        Py_XDECREF(d);
        return NULL;
    }
    for (int p = 0; p < P_COUNT; p++) {
        PyObject *v = breaker_get_param(self, (void *)(intptr_t)p);
        if (!v || PyDict_SetItemString(d, PARAM_NAME(p), v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static int breaker_traverse(BreakerObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->clock);
    Py_VISIT(self->failure_on);
    Py_VISIT(self->ignore);
    Py_VISIT(self->failure_if);
    Py_VISIT(self->result_failure);
    Py_VISIT(self->pool);
    Py_VISIT(self->listener);
    Py_VISIT(self->region);
    return 0;
}

static int breaker_clear(BreakerObject *self) {
    Py_CLEAR(self->name);
    Py_CLEAR(self->failure_on);
    Py_CLEAR(self->ignore);
    Py_CLEAR(self->failure_if);
    Py_CLEAR(self->result_failure);
    Py_CLEAR(self->listener);
    /* The clock and pool are kept until dealloc: the core may still read them. */
    return 0;
}

static void breaker_dealloc(BreakerObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->initialised) {
        rs_breaker_free(&self->core); /* detaches from the pool first */
        self->initialised = 0;
    }
    breaker_clear(self);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->pool);
    Py_CLEAR(self->region);
    PyMem_Free(self->outbox);
    self->outbox = NULL;
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- Breaker: permits and outcomes -------------------------------------- */

static PermitObject *new_permit(BreakerObject *b, const rs_permit *p, uint64_t t0) {
    PermitObject *pm = PyObject_GC_New(PermitObject, b->st->Permit_type);
    if (!pm) {
        return NULL;
    }
    pm->breaker = Py_NewRef((PyObject *)b);
    pm->permit = *p;
    pm->t0 = t0;
    pm->done = 0;
    PyObject_GC_Track(pm);
    return pm;
}

static PyObject *breaker_acquire(BreakerObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_permit p;
    uint64_t t0;
    if (take_permit(self, &p, &t0) < 0) {
        return NULL;
    }
    PermitObject *pm = new_permit(self, &p, t0);
    if (!pm) {
        give_back(self, &p, t0);
    }
    return (PyObject *)pm;
}

/* Parses (permit=None, latency_ms=None) for the record_* methods. */
static int parse_outcome_args(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, const char *fname, PermitObject **permit,
                              double *lat, int *lat_given) {
    PyObject *pobj = Py_None, *lobj = Py_None;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", fname, nargs);
        return -1;
    }
    if (nargs > 0) pobj = args[0];
    if (nargs > 1) lobj = args[1];
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            PyObject *val = args[nargs + i];
            if (PyUnicode_CompareWithASCIIString(k, "permit") == 0 && nargs < 1) {
                pobj = val;
            } else if (PyUnicode_CompareWithASCIIString(k, "latency_ms") == 0 && nargs < 2) {
                lobj = val;
            } else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword argument %R",
                             fname, k);
                return -1;
            }
        }
    }
    /* The latency first: converting it may run Python code (a number's
     * __float__), which must not come between the permit's check and its use. */
    *lat_given = lobj != Py_None;
    if (*lat_given) {
        if (PyBool_Check(lobj) || !(PyFloat_Check(lobj) || PyLong_Check(lobj))) {
            PyErr_Format(PyExc_TypeError, "latency_ms must be a number or None, not %.100s",
                         Py_TYPE(lobj)->tp_name);
            return -1;
        }
        if (resil_number(lobj, "latency_ms", lat) < 0) {
            return -1;
        }
        if (!(*lat >= 0.0 && isfinite(*lat))) {
            return resil_bad_value("latency_ms", "a finite number >= 0", lobj);
        }
    }
    if (pobj == Py_None) {
        *permit = NULL;
    } else if (Py_IS_TYPE(pobj, self->st->Permit_type)) {
        PermitObject *pm = (PermitObject *)pobj;
        if (pm->breaker != (PyObject *)self) {
            PyErr_Format(PyExc_ValueError, "%s(): the permit belongs to another breaker", fname);
            return -1;
        }
        if (pm->done) {
            PyErr_Format(PyExc_ValueError, "%s(): the permit has already reported its outcome", fname);
            return -1;
        }
        *permit = pm;
    } else {
        PyErr_Format(PyExc_TypeError, "%s(): permit must be a Permit from acquire() or None, not %.100s",
                     fname, Py_TYPE(pobj)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *record_outcome(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int kind, const char *fname) {
    PermitObject *pm = NULL;
    double lat = -1.0;
    int given;
    if (parse_outcome_args(self, args, nargs, kwnames, fname, &pm, &lat, &given) < 0 ||
        (self->region && !resil_region_block(self->region, 0))) {
        return NULL; /* a closed region: RegionError, the permit still unreported */
    }
    if (pm) {
        pm->done = 1; /* claimed before any Python code (a clock) can run */
    }
    uint64_t now = breaker_now_end(self);
    if (pm && !given) {
        lat = latency_ms(pm->t0, now);
    }
    record(self, pm ? &pm->permit : NULL, kind, lat, now);
    drain(self);
    Py_RETURN_NONE;
}

static PyObject *breaker_record_success(BreakerObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames) {
    return record_outcome(self, args, nargs, kwnames, OUT_SUCCESS, "record_success");
}

static PyObject *breaker_record_failure(BreakerObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames) {
    return record_outcome(self, args, nargs, kwnames, OUT_FAILURE, "record_failure");
}

static PyObject *breaker_release(BreakerObject *self, PyObject *permit) {
    if (!Py_IS_TYPE(permit, self->st->Permit_type)) {
        PyErr_Format(PyExc_TypeError, "release(): permit must be a Permit from acquire(), not %.100s",
                     Py_TYPE(permit)->tp_name);
        return NULL;
    }
    PermitObject *pm = (PermitObject *)permit;
    if (pm->breaker != (PyObject *)self) {
        PyErr_SetString(PyExc_ValueError, "release(): the permit belongs to another breaker");
        return NULL;
    }
    if (pm->done) {
        PyErr_SetString(PyExc_ValueError, "release(): the permit has already reported its outcome");
        return NULL;
    }
    if (self->region && !resil_region_block(self->region, 0)) {
        return NULL;
    }
    pm->done = 1; /* claimed before any Python code (a clock) can run */
    uint64_t now = breaker_now_end(self);
    give_back(self, &pm->permit, now);
    drain(self);
    Py_RETURN_NONE;
}

/* A def-level coroutine function (or a method of one): its call makes a
 * coroutine and runs none of its code. Two type checks and a flag on the
 * path of every sync call. */
static inline int is_coroutine_function(PyObject *fn) {
    if (PyMethod_Check(fn)) {
        fn = PyMethod_GET_FUNCTION(fn);
    }
    return PyFunction_Check(fn) &&
           (((PyCodeObject *)PyFunction_GET_CODE(fn))->co_flags & CO_COROUTINE);
}

/* isinstance(o, collections.abc.Coroutine), for awaitables that are not
 * native coroutines (Cython's, a GuardedAwaitable). Rare: asked only of a
 * result whose type defines __await__. */
int is_coroutine_abc(PyObject *o) {
    PyObject *abc = PyImport_ImportModule("collections.abc");
    PyObject *cls = abc ? PyObject_GetAttrString(abc, "Coroutine") : NULL;
    int r = cls ? PyObject_IsInstance(o, cls) : -1;
    Py_XDECREF(cls);
    Py_XDECREF(abc);
    if (r < 0) {
        PyErr_Clear(); /* then it is a plain result */
        r = 0;
    }
    return r;
}

static PyObject *breaker_call(BreakerObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call() needs the function to call");
        return NULL;
    }
    if (RS_UNLIKELY(is_coroutine_function(args[0]))) {
        return defer_call(self, args[0], args + 1, nargs - 1, kwnames);
    }
    rs_permit p;
    uint64_t t0;
    if (take_permit(self, &p, &t0) < 0) {
        return NULL;
    }
    PyObject *res = call_guarded(args[0], args + 1, (size_t)(nargs - 1), kwnames);
    return end_call(self, &p, t0, res);
}

/* ---- Breaker: `with breaker:` ------------------------------------------- */

static PyObject *breaker_enter(BreakerObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_permit p;
    uint64_t t0;
    if (take_permit(self, &p, &t0) < 0) {
        return NULL;
    }
    PermitStackObject *stack = permit_stack(self->st, 1);
    if (!stack || permit_stack_reserve(stack) < 0) {
        give_back(self, &p, t0);
        drain(self);
        return NULL;
    }
    with_entry *e = &stack->entries[stack->len++];
    e->breaker = Py_NewRef((PyObject *)self);
    e->permit = p;
    e->t0 = t0;
    Py_RETURN_NONE;
}

static PyObject *breaker_exit(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__ takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PermitStackObject *stack = permit_stack(self->st, 0);
    if (!stack && PyErr_Occurred()) {
        return NULL;
    }
    if (!stack || !stack->len || stack->entries[stack->len - 1].breaker != (PyObject *)self) {
        PyErr_SetString(PyExc_RuntimeError,
                        "breaker __exit__ without a matching __enter__ in this context");
        return NULL;
    }
    /* Popped before any Python code (a clock, failure_if) can run: the
     * block's reference to the breaker is dropped at the end. */
    with_entry e = stack->entries[--stack->len];
    uint64_t t1 = breaker_now_end(self);
    double lat = latency_ms(e.t0, t1);
    int kind = OUT_SUCCESS;
    PyObject *exc = args[1];
    if (args[0] != Py_None) {
        if (exc == Py_None || !PyExceptionInstance_Check(exc)) {
            /* __exit__(type, None, None): make an instance for failure_if */
            exc = PyObject_CallNoArgs(args[0]);
        } else {
            Py_INCREF(exc);
        }
        if (exc) {
            kind = classify_exc(self, exc);
            Py_DECREF(exc);
        } else {
            kind = OUT_RELEASE; /* no outcome to judge, but the permit goes back */
        }
    }
    record(self, &e.permit, kind, lat, t1);
    drain(self);
    Py_DECREF(e.breaker);
    if (PyErr_Occurred()) { /* failure_if raised, or the exception could not be made */
        return NULL;
    }
    Py_RETURN_FALSE;
}

/* `async with breaker:` does what `with` does; neither step waits, so each
 * returns an awaitable that is already finished instead of a coroutine. */
static PyObject *breaker_aenter(BreakerObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *r = breaker_enter(self, NULL);
    if (!r) {
        return NULL;
    }
    Py_DECREF(r);
    return Py_NewRef(self->st->finished_none);
}

static PyObject *breaker_aexit(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__aexit__ takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *r = breaker_exit(self, args, nargs);
    if (!r) {
        return NULL;
    }
    Py_DECREF(r); /* False */
    return Py_NewRef(self->st->finished_false);
}

/* ---- Breaker: manual control, reads ------------------------------------ */

#define MANUAL(fname, corefn)                                                        \
    static PyObject *fname(BreakerObject *self, PyObject *Py_UNUSED(ignored)) {      \
        uint64_t now;                                                                \
        if (breaker_now(self, &now) < 0) {                                           \
            return NULL;                                                             \
        }                                                                            \
        if (core_op(self, corefn, now) < 0) {                                        \
            return NULL;                                                             \
        }                                                                            \
        Py_RETURN_NONE;                                                              \
    }

MANUAL(breaker_force_open, rs_breaker_force_open)
MANUAL(breaker_disable, rs_breaker_disable)
MANUAL(breaker_reset, rs_breaker_reset)
MANUAL(breaker_open, rs_breaker_open)
MANUAL(breaker_close, rs_breaker_close)
#undef MANUAL

/* _follow(state, cooldown, /): the cluster's decision applied to a breaker of
 * this process (never on a call's path). */
static PyObject *breaker_follow(BreakerObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_follow() takes a state and a cooldown");
        return NULL;
    }
    if (self->region) {
        PyErr_SetString(PyExc_ValueError, "a shared breaker cannot follow a cluster");
        return NULL;
    }
    long state = PyLong_Check(args[0]) ? PyLong_AsLong(args[0]) : -1;
    if (state == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (state != RS_STATE_OPEN && state != RS_STATE_HALF_OPEN && state != RS_STATE_CLOSED) {
        PyErr_SetString(PyExc_ValueError, "_follow() state must be CLOSED, OPEN or HALF_OPEN");
        return NULL;
    }
    uint64_t cooldown_ns, now;
    if (resil_seconds_to_ns(args[1], "cooldown", &cooldown_ns) < 0 ||
        breaker_now(self, &now) < 0) {
        return NULL;
    }
    rs_breaker_follow(&self->core, now, (int)state, cooldown_ns);
    drain(self);
    Py_RETURN_NONE;
}

static int tick(BreakerObject *self) {
    uint64_t now;
    if (breaker_now(self, &now) < 0) {
        return -1;
    }
    return core_op(self, rs_breaker_tick, now);
}

int resil_breaker_tick(PyObject *breaker) { return tick((BreakerObject *)breaker); }

int resil_breaker_reject_if_open(PyObject *breaker) {
    BreakerObject *self = (BreakerObject *)breaker;
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_view(self, &copy, &opened);
    if (!b) {
        return -1;
    }
    int state = b->state;
    if (state != RS_STATE_OPEN && state != RS_STATE_FORCED_OPEN) {
        return 0;
    }
    raise_open(self, state, state == RS_STATE_FORCED_OPEN ? UINT64_MAX : rs_breaker_remaining(b));
    return 1;
}

int resil_breaker_read_metrics(PyObject *breaker, resil_breaker_metrics *out) {
    BreakerObject *self = (BreakerObject *)breaker;
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_state(self, &copy, &opened, 0);
    if (!b) {
        return -1;
    }
    out->name = self->name;
    out->state = b->state;
    out->failures = b->counters.failures;
    out->avg_latency_ms = rs_latring_mean(&b->latencies);
    out->success_rate = rs_breaker_success_rate(b);
    out->health_score = rs_breaker_health((rs_breaker *)b); /* a copy, or this core */
    out->has_opened = b->ever_opened;
    out->opened_unix = opened;
    return 0;
}

/* The Unix time of the last transition to OPEN, or None (none since
 * construction or reset()). */
static PyObject *last_opened_of(const rs_breaker *b, double opened) {
    return b->ever_opened ? PyFloat_FromDouble(opened) : Py_NewRef(Py_None);
}

static PyObject *breaker_get_last_opened(BreakerObject *self, void *Py_UNUSED(closure)) {
    rs_breaker copy;
    double opened;
    const rs_breaker *b;
    if (self->region) {
        b = read_view(self, &copy, &opened);
        if (!b) {
            return NULL;
        }
    } else {
        take_transitions(self); /* notes an opening not yet taken; runs no Python code */
        b = &self->core;
        opened = self->opened_unix;
    }
    return last_opened_of(b, opened);
}

static PyObject *breaker_get_state(BreakerObject *self, void *Py_UNUSED(closure)) {
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_view(self, &copy, &opened);
    return b ? Py_NewRef(self->st->states[b->state]) : NULL;
}

static PyObject *breaker_get_name(BreakerObject *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->name);
}

static PyObject *breaker_get_clock(BreakerObject *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->clock);
}

static PyObject *breaker_get_shared(BreakerObject *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->region ? self->region : Py_None);
}

static PyObject *remaining_obj(const rs_breaker *b) {
    if (b->state == RS_STATE_FORCED_OPEN) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble((double)rs_breaker_remaining(b) / 1e9);
}

static PyObject *breaker_get_remaining(BreakerObject *self, void *Py_UNUSED(closure)) {
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_view(self, &copy, &opened);
    return b ? remaining_obj(b) : NULL;
}

static PyObject *breaker_get_health(BreakerObject *self, void *Py_UNUSED(closure)) {
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_view(self, &copy, &opened);
    /* a copy (its health computed under the lock), or this core */
    return b ? PyFloat_FromDouble(rs_breaker_health((rs_breaker *)b)) : NULL;
}

static PyObject *breaker_get_threshold(BreakerObject *self, void *Py_UNUSED(closure)) {
    rs_breaker copy;
    double opened;
    const rs_breaker *b = read_view(self, &copy, &opened);
    return b ? PyLong_FromUnsignedLong(rs_breaker_effective_threshold(b)) : NULL;
}

static int set_item(PyObject *d, const char *key, PyObject *value) {
    if (!value) {
        return -1;
    }
    int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *breaker_stats(BreakerObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_breaker copy;
    double opened;
    rs_breaker *b = (rs_breaker *)read_view(self, &copy, &opened); /* a copy, or this core */
    if (!b) {
        return NULL;
    }
    const rs_breaker_counters *k = &b->counters;
    const rs_window *w = &b->window;
    PyObject *d = PyDict_New();
    PyObject *tr = PyDict_New();
    if (!d || !tr) {
        goto error;
    }
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        if (set_item(tr, rs_state_name(i), PyLong_FromUnsignedLongLong(k->transitions[i])) < 0) {
            goto error;
        }
    }
    double total = (double)w->total;
    if (PyDict_SetItemString(d, "name", self->name) < 0 ||
        PyDict_SetItemString(d, "state", self->st->states[b->state]) < 0 ||
        set_item(d, "epoch", PyLong_FromUnsignedLongLong(b->epoch)) < 0 ||
        set_item(d, "permitted", PyLong_FromUnsignedLongLong(k->permitted)) < 0 ||
        set_item(d, "rejected", PyLong_FromUnsignedLongLong(k->rejected)) < 0 ||
        set_item(d, "successes", PyLong_FromUnsignedLongLong(k->successes)) < 0 ||
        set_item(d, "failures", PyLong_FromUnsignedLongLong(k->failures)) < 0 ||
        set_item(d, "slow_calls", PyLong_FromUnsignedLongLong(k->slow)) < 0 ||
        set_item(d, "released", PyLong_FromUnsignedLongLong(k->released)) < 0 ||
        set_item(d, "stale_outcomes", PyLong_FromUnsignedLongLong(k->stale)) < 0 ||
        set_item(d, "vetoed_trips", PyLong_FromUnsignedLongLong(k->vetoed)) < 0 ||
        set_item(d, "consecutive_failures", PyLong_FromUnsignedLongLong(b->consecutive_failures)) < 0 ||
        set_item(d, "window_calls", PyLong_FromUnsignedLongLong(w->total)) < 0 ||
        set_item(d, "window_failures", PyLong_FromUnsignedLongLong(w->failures)) < 0 ||
        set_item(d, "window_slow_calls", PyLong_FromUnsignedLongLong(w->slow)) < 0 ||
        set_item(d, "failure_rate", PyFloat_FromDouble(w->total ? (double)w->failures / total : 0.0)) < 0 ||
        set_item(d, "slow_call_rate", PyFloat_FromDouble(w->total ? (double)w->slow / total : 0.0)) < 0 ||
        set_item(d, "success_rate", PyFloat_FromDouble(rs_breaker_success_rate(b))) < 0 ||
        set_item(d, "ewma_failure_rate", PyFloat_FromDouble(b->ewma.mean)) < 0 ||
        set_item(d, "ewma_stddev", PyFloat_FromDouble(rs_ewma_stddev(&b->ewma))) < 0 ||
        set_item(d, "ewma_signal", PyFloat_FromDouble(rs_breaker_signal(b))) < 0 ||
        set_item(d, "effective_threshold", PyLong_FromUnsignedLong(rs_breaker_effective_threshold(b))) < 0 ||
        set_item(d, "health_score", PyFloat_FromDouble(rs_breaker_health(b))) < 0 ||
        set_item(d, "avg_latency_ms", PyFloat_FromDouble(rs_latring_mean(&b->latencies))) < 0 ||
        set_item(d, "jitter_ms", PyFloat_FromDouble(rs_latring_stddev(&b->latencies))) < 0 ||
        set_item(d, "latency_samples", PyLong_FromUnsignedLong(b->latencies.n)) < 0 ||
        set_item(d, "cooldown", PyFloat_FromDouble((double)b->cooldown_cur_ns / 1e9)) < 0 ||
        set_item(d, "remaining", remaining_obj(b)) < 0 ||
        set_item(d, "half_open_probes_granted", PyLong_FromUnsignedLong(b->probes_granted)) < 0 ||
        set_item(d, "half_open_probe_successes", PyLong_FromUnsignedLong(b->probe_successes)) < 0 ||
        set_item(d, "last_opened", last_opened_of(b, opened)) < 0 ||
        PyDict_SetItemString(d, "transitions", tr) < 0) {
        goto error;
    }
    Py_DECREF(tr);
    return d;
error:
    Py_XDECREF(d);
    Py_XDECREF(tr);
    return NULL;
}

static PyObject *breaker_attach(BreakerObject *self, PyObject *pool) {
    if (!Py_IS_TYPE(pool, self->st->EjectionPool_type)) {
        PyErr_SetString(PyExc_TypeError, "_attach() needs an EjectionPool");
        return NULL;
    }
    if (self->pool) {
        PyErr_SetString(PyExc_ValueError, "the breaker already belongs to a group");
        return NULL;
    }
    if (self->region) {
        PyErr_Format(PyExc_ValueError,
                     "the shared breaker %R cannot join a group's ejection budget: the budget "
                     "lives in one process, the breaker in a region",
                     self->name);
        return NULL;
    }
    self->pool = Py_NewRef(pool);
    rs_breaker_set_ejector(&self->core, &((PoolObject *)pool)->ej);
    Py_RETURN_NONE;
}

static PyObject *breaker_set_listener(BreakerObject *self, PyObject *fn) {
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "_set_listener() needs a callable or None, not %.100s",
                     Py_TYPE(fn)->tp_name);
        return NULL;
    }
    Py_XSETREF(self->listener, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* call_async(fn, /, *args, **kwargs) */
static PyObject *breaker_call_async(BreakerObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_async() needs the function to call");
        return NULL;
    }
    if (!PyCallable_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "call_async() needs a callable, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    PyObject *pos, *kw;
    if (resil_pack_call(args + 1, nargs - 1, kwnames, 0, &pos, &kw) < 0) {
        return NULL;
    }
    PyObject *a = make_awaitable(self, NULL, Py_NewRef(args[0]), pos, kw);
    if (!a) {
        Py_DECREF(args[0]);
        Py_DECREF(pos);
        Py_XDECREF(kw);
    }
    return a;
}

/* ---- Breaker type ------------------------------------------------------ */

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef breaker_methods[] = {
    {"acquire", (PyCFunction)breaker_acquire, METH_NOARGS,
     "acquire($self, /)\n--\n\nTakes a permit (a Permit) or raises CircuitOpenError."},
    {"record_success", (PyCFunction)(void (*)(void))breaker_record_success, FASTKW,
     "record_success($self, /, permit=None, latency_ms=None)\n--\n\n"
     "Reports a success. latency_ms defaults to the time since acquire(); a None\n"
     "permit reports a call made without one."},
    {"record_failure", (PyCFunction)(void (*)(void))breaker_record_failure, FASTKW,
     "record_failure($self, /, permit=None, latency_ms=None)\n--\n\n"
     "Reports a failure; see record_success."},
    {"release", (PyCFunction)breaker_release, METH_O,
     "release($self, permit, /)\n--\n\n"
     "Gives a permit back without an outcome (cancelled or ignored call)."},
    {"call", (PyCFunction)(void (*)(void))breaker_call, FASTKW,
     "call($self, fn, /, *args, **kwargs)\n--\n\n"
     "Calls fn through the breaker. When fn is a coroutine function, or\n"
     "returns a coroutine, call returns an awaitable guarded as call_async's is: the\n"
     "outcome is recorded when the coroutine finishes (latency from its first\n"
     "resumption), never when it is made; cancelling or closing it gives the permit\n"
     "back. A coroutine function (a def, or a method of one) is called when the\n"
     "awaitable is first awaited, as with call_async; any other fn is called at once\n"
     "with its permit, so a rejection raises from call itself. An awaitable dropped\n"
     "without being awaited warns (RuntimeWarning), as a coroutine never awaited does."},
    {"call_async", (PyCFunction)(void (*)(void))breaker_call_async, FASTKW,
     "call_async($self, fn, /, *args, **kwargs)\n--\n\n"
     "Awaits ``fn(*args, **kwargs)`` through the breaker; fn is called when awaited.\n"
     "An awaitable dropped without being awaited warns (RuntimeWarning)."},
    {"__enter__", (PyCFunction)breaker_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nTakes a permit for the block, or raises CircuitOpenError."},
    {"__exit__", (PyCFunction)(void (*)(void))breaker_exit, METH_FASTCALL,
     "__exit__($self, exc_type, exc, tb, /)\n--\n\n"
     "Reports the block's outcome with its permit; returns False (the exception, if\n"
     "any, propagates)."},
    {"__aenter__", (PyCFunction)breaker_aenter, METH_NOARGS,
     "__aenter__($self, /)\n--\n\n"
     "Takes a permit for the block, as __enter__ does; returns an awaitable."},
    {"__aexit__", (PyCFunction)(void (*)(void))breaker_aexit, METH_FASTCALL,
     "__aexit__($self, exc_type, exc, tb, /)\n--\n\n"
     "Reports the block's outcome, as __exit__ does; returns an awaitable of False."},
    {"force_open", (PyCFunction)breaker_force_open, METH_NOARGS,
     "force_open($self, /)\n--\n\nRejects every call until reset(), close() or disable()."},
    {"disable", (PyCFunction)breaker_disable, METH_NOARGS,
     "disable($self, /)\n--\n\nAdmits every call and records it, never trips."},
    {"reset", (PyCFunction)breaker_reset, METH_NOARGS,
     "reset($self, /)\n--\n\n"
     "Back to CLOSED with every count, the EWMA and the cooldown growth cleared."},
    {"open", (PyCFunction)breaker_open, METH_NOARGS,
     "open($self, /)\n--\n\nOpens now, as a trip would; HALF_OPEN follows after the cooldown."},
    {"close", (PyCFunction)breaker_close, METH_NOARGS,
     "close($self, /)\n--\n\nCloses now, as successful probes would (the EWMA is kept)."},
    {"stats", (PyCFunction)breaker_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "A dict of the breaker's state and counts, JSON-serialisable, in the vocabulary every\nresil component's stats() uses. Identity and state: name, state (its name),\nepoch (the generation of permits: it changes at every transition), transitions,\nremaining (seconds until an OPEN breaker turns HALF_OPEN, 0.0 otherwise, None when\nforced open), cooldown (the current one, seconds), last_opened (Unix time or None). Lifetime counts: permitted,\nrejected, released (permits given back unreported), successes, failures,\nslow_calls, stale_outcomes (reported with a permit of an earlier epoch),\nvetoed_trips (trips a group's ejection limit refused),\nhalf_open_probes_granted, half_open_probe_successes,\nconsecutive_failures. The sliding window: window_calls, window_failures,\nwindow_slow_calls, failure_rate, slow_call_rate, success_rate. Adaptive\nstate: ewma_failure_rate, ewma_stddev, ewma_signal, effective_threshold\n(consecutive failures that trip now), health_score in [0, 1]. Latency:\navg_latency_ms, jitter_ms, latency_samples. With cluster=: backend (the\nbackend's mode: redis or the fallback in force) and cluster (the cluster as the\nlast synchronisation saw it: state, epoch, remaining, hosts, failing_hosts, calls,\nfailures, slow_calls, opens, cooldown, probe_lease, min_hosts, sync_interval and\nage, the seconds since that synchronisation)."},
    {"configure", (PyCFunction)(void (*)(void))breaker_configure, FASTKW,
     "configure($self, /, **changes)\n--\n\n"
     "Changes configuration parameters at run time, with the constructor's checks,\n"
     "all or nothing: on any error (TypeError for an unknown or fixed parameter -\n"
     "name, clock - or a wrong type, ValueError for a bad value) nothing changes. The\n"
     "state and every count are kept; new thresholds apply from the next outcome.\n"
     "A new window_size keeps the newest outcomes that fit; switching between a\n"
     "count and a time window, or a new window_duration, starts the window empty;\n"
     "a new latency_window keeps the newest latencies that fit. The current cooldown\n"
     "keeps its growth, within the new cooldown and cooldown_max. A HALF_OPEN\n"
     "breaker with as many successful probes as the new half_open_probes closes."},
    {"_attach", (PyCFunction)breaker_attach, METH_O,
     "_attach($self, pool, /)\n--\n\n"
     "Makes the breaker's trips count against pool, an EjectionPool."},
    {"_follow", (PyCFunction)(void (*)(void))breaker_follow, METH_FASTCALL,
     "_follow($self, state, cooldown, /)\n--\n\n"
     "Applies a cluster's decision: OPEN for cooldown seconds, HALF_OPEN now, or CLOSED\n"
     "with the window cleared (the transition's reason is 'cluster')."},
    {"_set_listener", (PyCFunction)breaker_set_listener, METH_O,
     "_set_listener($self, fn, /)\n--\n\n"
     "fn(breaker, old, new, reason, fail_count, success_rate, latency_ms) is called\n"
     "after every state change, one call at a time and in the order the changes\n"
     "happened; None removes it. Its errors are reported as unraisable."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef breaker_getset[] = {
    {"state", (getter)breaker_get_state, NULL, "The current State.", NULL},
    {"name", (getter)breaker_get_name, NULL, "The breaker's name.", NULL},
    {"clock", (getter)breaker_get_clock, NULL, "The clock the breaker reads.", NULL},
    {"shared", (getter)breaker_get_shared, NULL,
     "The SharedRegion holding the breaker's state, or None (this process's).", NULL},
    {"remaining", (getter)breaker_get_remaining, NULL,
     "Seconds until HALF_OPEN while OPEN, 0.0 otherwise, None when forced open.", NULL},
    {"health_score", (getter)breaker_get_health, NULL, "The health score in [0, 1].", NULL},
    {"last_opened", (getter)breaker_get_last_opened, NULL,
     "Unix time of the last transition to OPEN, or None (also cleared by reset()).", NULL},
    {"effective_threshold", (getter)breaker_get_threshold, NULL,
     "The consecutive-failure threshold after adaptive scaling.", NULL},
    {"config", (getter)breaker_get_config, NULL,
     "The current configuration as a dict, in constructor units (name included).", NULL},
#define PARAM_DOC "A configuration parameter (read-only; change it with configure())."
    {"failure_threshold", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_FAILURE_THRESHOLD},
    {"failure_rate_threshold", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_FAILURE_RATE_THRESHOLD},
    {"slow_call_duration", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_SLOW_CALL_DURATION},
    {"slow_call_rate_threshold", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_SLOW_CALL_RATE_THRESHOLD},
    {"window_size", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_WINDOW_SIZE},
    {"window_duration", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_WINDOW_DURATION},
    {"minimum_calls", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_MINIMUM_CALLS},
    {"cooldown", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_COOLDOWN},
    {"cooldown_multiplier", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_COOLDOWN_MULTIPLIER},
    {"cooldown_max", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_COOLDOWN_MAX},
    {"half_open_probes", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_HALF_OPEN_PROBES},
    {"half_open_max_wait", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_HALF_OPEN_MAX_WAIT},
    {"adaptive", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_ADAPTIVE},
    {"ewma_alpha", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_EWMA_ALPHA},
    {"sensitivity", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_SENSITIVITY},
    {"min_health_score", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_MIN_HEALTH_SCORE},
    {"latency_window", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_LATENCY_WINDOW},
    {"failure_on", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_FAILURE_ON},
    {"ignore", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_IGNORE},
    {"failure_if", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_FAILURE_IF},
    {"result_failure", (getter)breaker_get_param, (setter)breaker_set_param, PARAM_DOC, (void *)P_RESULT_FAILURE},
#undef PARAM_DOC
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot breaker_slots[] = {
    {Py_tp_doc, "The circuit breaker engine; use resil.CircuitBreaker, which takes the same\n"
                "parameters (name positional or by keyword, the rest by keyword only)."},
    {Py_tp_new, breaker_new},
    {Py_tp_traverse, breaker_traverse},
    {Py_tp_clear, breaker_clear},
    {Py_tp_dealloc, breaker_dealloc},
    {Py_tp_methods, breaker_methods},
    {Py_tp_getset, breaker_getset},
    {0, NULL},
};

static PyType_Spec breaker_spec = {
    .name = "resil._resil.Breaker",
    .basicsize = sizeof(BreakerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = breaker_slots,
};

rs_field resil_breaker_region_fields[RS_BREAKER_REGION_PARAMS];

int resil_breaker_init_types(PyObject *module, resil_state *st) {
    memcpy(resil_breaker_region_fields, FIELDS, sizeof(rs_field) * RS_BF_COUNT);
    resil_breaker_region_fields[RS_BF_COUNT] = RS_BREAKER_ADAPTIVE_FIELD;
    return resil_add_type_with_ranges(module, &breaker_spec, &st->Breaker_type, FIELDS, RS_BF_COUNT);
}
