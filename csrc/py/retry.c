/* retry.c - Backoff and RetryBudget (thin types over rs_backoff and rs_budget)
 * and the retry state machine behind resil.retry. */
#include "resil_py.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

#include "../core/rs_backoff.h"
#include "../core/rs_budget.h"

typedef struct {
    PyObject_HEAD
    rs_backoff core;
    uint64_t seed;
} BackoffObject;

typedef struct {
    PyObject_HEAD
    rs_budget core;
    PyObject *clock;
    int clock_kind;
} BudgetObject;

static PyObject *random_seed(void) {
    PyObject *os = PyImport_ImportModule("os");
    if (!os) {
        return NULL;
    }
    PyObject *bytes = PyObject_CallMethod(os, "urandom", "i", 8);
    Py_DECREF(os);
    if (!bytes) {
        return NULL;
    }
    PyObject *seed = PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "Os", bytes, "little");
    Py_DECREF(bytes);
    return seed;
}

/* ---- Backoff ----------------------------------------------------------- */

/* The jitter mode named by o, one of rs_jitter_name(0..RS_JITTER_COUNT-1):
 * TypeError for a non-str, ValueError for another name, each listing them. */
static int jitter_arg(PyObject *o, int *mode) {
    char accepts[96] = "one of ";
    for (int i = 0; i < RS_JITTER_COUNT; i++) {
        size_t used = strlen(accepts);
        PyOS_snprintf(accepts + used, sizeof accepts - used, "%s'%s'", i ? ", " : "",
                      rs_jitter_name(i));
    }
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "jitter must be a str, %s, not %.100s", accepts,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    for (int i = 0; i < RS_JITTER_COUNT; i++) {
        if (PyUnicode_CompareWithASCIIString(o, rs_jitter_name(i)) == 0) {
            *mode = i;
            return 0;
        }
    }
    return resil_bad_value("jitter", accepts, o);
}

static PyObject *backoff_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"base", "multiplier", "max_delay", "jitter", "seed", NULL};
    PyObject *base_o = NULL, *mult_o = NULL, *max_o = NULL, *jitter_o = NULL, *seed_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOO:Backoff", kwlist, &base_o, &mult_o,
                                     &max_o, &jitter_o, &seed_o)) {
        return NULL;
    }
    const rs_field *fields = RS_BACKOFF_FIELDS;
    double v[RS_BOF_COUNT] = {1.0, 2.0, 30.0, 0.0}; /* base, multiplier, max_delay, jitter */
    PyObject *given[RS_BOF_COUNT] = {base_o, mult_o, max_o, NULL};
    for (int i = 0; i < RS_BOF_JITTER; i++) {
        if (given[i] && resil_field_double(&fields[i], given[i], &v[i]) < 0) {
            return NULL;
        }
    }
    int mode = RS_JITTER_NONE;
    if (jitter_o && jitter_arg(jitter_o, &mode) < 0) {
        return NULL;
    }
    PyObject *seed = seed_o == Py_None ? random_seed() : Py_NewRef(seed_o);
    if (!seed) {
        return NULL;
    }
    if (!PyLong_Check(seed) || PyBool_Check(seed)) {
        PyErr_Format(PyExc_TypeError, "seed must be an int or None, not %.100s", Py_TYPE(seed)->tp_name);
        Py_DECREF(seed);
        return NULL;
    }
    /* Exactly the 64-bit seeds: a wider int or a negative one would be
     * silently folded onto another seed's sequence. */
    unsigned long long s = PyLong_AsUnsignedLongLong(seed);
    if (s == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            resil_bad_value("seed", "an int in [0, 2**64 - 1] or None", seed);
        }
        Py_DECREF(seed);
        return NULL;
    }
    Py_DECREF(seed);
    rs_backoff core;
    int rc = rs_backoff_init(&core, v[RS_BOF_BASE], v[RS_BOF_MULTIPLIER], v[RS_BOF_MAX_DELAY], mode, s);
    if (rc != RS_OK) {
        resil_raise_status(rc, fields, RS_BOF_COUNT, given, v);
        return NULL;
    }
    BackoffObject *self = (BackoffObject *)type->tp_alloc(type, 0);
    if (self) {
        self->core = core;
        self->seed = s;
    }
    return (PyObject *)self;
}

static void plain_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Attempt numbers: any int >= 0 (2**64 - 1 and beyond behave as 63). */
static int attempt_arg(PyObject *o, uint64_t *out) {
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "attempt must be an int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        return resil_bad_value("attempt", ">= 0", o);
    }
    *out = overflow ? UINT64_MAX : (uint64_t)v;
    return 0;
}

static PyObject *backoff_delay(BackoffObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    PyObject *attempt = NULL, *prev = Py_None;
    if (nargs >= 1) attempt = args[0];
    if (nargs >= 2) prev = args[1];
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "delay() takes at most 2 arguments");
        return NULL;
    }
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (!attempt && PyUnicode_CompareWithASCIIString(k, "attempt") == 0) {
                attempt = args[nargs + i];
            } else if (nargs < 2 && PyUnicode_CompareWithASCIIString(k, "prev") == 0) {
                prev = args[nargs + i];
            } else {
                PyErr_Format(PyExc_TypeError, "delay() got an unexpected keyword argument %R", k);
                return NULL;
            }
        }
    }
    if (!attempt) {
        PyErr_SetString(PyExc_TypeError, "delay() missing required argument 'attempt'");
        return NULL;
    }
    uint64_t a;
    if (attempt_arg(attempt, &a) < 0) {
        return NULL;
    }
    double p = -1.0;
    if (prev != Py_None) {
        if (resil_number(prev, "prev", &p) < 0) {
            return NULL;
        }
        if (!(p >= 0.0 && isfinite(p))) {
            resil_bad_value("prev", "a finite number of seconds >= 0", prev);
            return NULL;
        }
    }
    return PyFloat_FromDouble(rs_backoff_delay(&self->core, a, p));
}

static PyObject *backoff_raw(BackoffObject *self, PyObject *attempt) {
    uint64_t a;
    if (attempt_arg(attempt, &a) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(rs_backoff_raw(&self->core, a));
}

static PyObject *backoff_get(BackoffObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return PyFloat_FromDouble(self->core.base);
    case 1: return PyFloat_FromDouble(self->core.multiplier);
    case 2: return PyFloat_FromDouble(self->core.max_delay);
    case 3: return PyUnicode_FromString(rs_jitter_name(self->core.jitter));
    default: return PyLong_FromUnsignedLongLong(self->seed);
    }
}

static PyObject *backoff_repr(BackoffObject *self) {
    PyObject *b = PyFloat_FromDouble(self->core.base);
    PyObject *m = PyFloat_FromDouble(self->core.multiplier);
    PyObject *x = PyFloat_FromDouble(self->core.max_delay);
    PyObject *r = NULL;
    if (b && m && x) {
        r = PyUnicode_FromFormat("Backoff(base=%R, multiplier=%R, max_delay=%R, jitter='%s')", b,
                                 m, x, rs_jitter_name(self->core.jitter));
    }
    Py_XDECREF(b);
    Py_XDECREF(m);
    Py_XDECREF(x);
    return r;
}

static PyMethodDef backoff_methods[] = {
    {"delay", (PyCFunction)(void (*)(void))backoff_delay, METH_FASTCALL | METH_KEYWORDS,
     "delay(attempt, prev=None) -> float\n\n"
     "Seconds to wait before retry number `attempt` (0 is the first retry), jittered.\n"
     "`prev` is the previous delay, for decorrelated jitter."},
    {"raw", (PyCFunction)backoff_raw, METH_O,
     "raw(attempt) -> float\n\nThe un-jittered delay: base * multiplier**min(attempt, 63), capped."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef backoff_getset[] = {
    {"base", (getter)backoff_get, NULL, "Delay of the first retry, seconds.", (void *)0},
    {"multiplier", (getter)backoff_get, NULL, "Growth per attempt.", (void *)1},
    {"max_delay", (getter)backoff_get, NULL, "Cap on every delay, seconds.", (void *)2},
    {"jitter", (getter)backoff_get, NULL, "'none', 'full', 'equal' or 'decorrelated'.", (void *)3},
    {"seed", (getter)backoff_get, NULL, "The PRNG seed, in [0, 2**64 - 1].", (void *)4},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot backoff_slots[] = {
    {Py_tp_doc, "Backoff(base=1.0, multiplier=2.0, *, max_delay=30.0, jitter='none', seed=None)\n--\n\n"
                "Exponential backoff with a cap and jitter, in C. base >= 0, multiplier >= 1,\n"
                "max_delay >= base (seconds). jitter is 'none', 'full', 'equal' or\n"
                "'decorrelated'. A seed, an int in [0, 2**64 - 1], gives the same delays on\n"
                "every platform; None draws one from os.urandom. Every delay is finite, >= 0\n"
                "and <= max_delay for any attempt."},
    {Py_tp_new, backoff_new},
    {Py_tp_dealloc, plain_dealloc},
    {Py_tp_repr, backoff_repr},
    {Py_tp_methods, backoff_methods},
    {Py_tp_getset, backoff_getset},
    {0, NULL},
};

static PyType_Spec backoff_spec = {
    .name = "resil.Backoff",
    .basicsize = sizeof(BackoffObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = backoff_slots,
};

/* ---- RetryBudget ------------------------------------------------------- */

static PyObject *budget_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ratio", "min_per_second", "window", "clock", NULL};
    PyObject *ratio_o = NULL, *mps_o = NULL, *window_o = NULL, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOO:RetryBudget", kwlist, &ratio_o, &mps_o,
                                     &window_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    const rs_field *fields = RS_BUDGET_FIELDS;
    double ratio = 0.2, mps = 3.0;
    uint64_t window_ns = 10 * RS_NS_PER_SEC;
    if ((ratio_o && resil_field_double(&fields[RS_BGF_RATIO], ratio_o, &ratio) < 0) ||
        (mps_o && resil_field_double(&fields[RS_BGF_MIN_PER_SECOND], mps_o, &mps) < 0) ||
        (window_o && resil_field_ns(&fields[RS_BGF_WINDOW], window_o, &window_ns) < 0)) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    uint64_t now;
    if (kind < 0 || resil_clock_read(kind, clock, &now) < 0) {
        return NULL;
    }
    rs_budget core;
    int rc = rs_budget_init(&core, ratio, mps, window_ns, now);
    if (rc != RS_OK) {
        PyObject *given[RS_BGF_COUNT] = {ratio_o, mps_o, window_o};
        resil_raise_status(rc, fields, RS_BGF_COUNT, given, NULL);
        return NULL;
    }
    BudgetObject *self = (BudgetObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->core = core;
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    return (PyObject *)self;
}

static int budget_traverse(BudgetObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static void budget_dealloc(BudgetObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *budget_request(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_budget_request(&self->core, now);
    Py_RETURN_NONE;
}

static PyObject *budget_try_retry(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    return PyBool_FromLong(rs_budget_try_retry(&self->core, now));
}

static PyObject *budget_stats(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now, req, ret, last;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_budget_counts(&self->core, now, &req, &ret, &last);
    return Py_BuildValue("{sKsKsKsKsKsKsdsdsd}", "requests", (unsigned long long)req, "retries",
                         (unsigned long long)ret, "retries_last_second", (unsigned long long)last,
                         "total_requests", (unsigned long long)self->core.requests,
                         "total_retries", (unsigned long long)self->core.retries, "rejected",
                         (unsigned long long)self->core.rejected, "ratio", self->core.ratio,
                         "min_per_second", self->core.min_per_second, "window",
                         (double)(self->core.window.width_ns * RS_WINDOW_BUCKETS) / 1e9);
}

static PyMethodDef budget_methods[] = {
    {"record_request", (PyCFunction)budget_request, METH_NOARGS,
     "record_request()\n\nCounts a first attempt."},
    {"try_retry", (PyCFunction)budget_try_retry, METH_NOARGS,
     "try_retry() -> bool\n\nTrue, and counts the retry, when the budget allows one."},
    {"stats", (PyCFunction)budget_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The budget's counts, JSON-serialisable: requests and retries (counted in the\n"
     "window now), retries_last_second, total_requests and total_retries (since\n"
     "creation), rejected (retries the budget refused since creation), and the\n"
     "settings ratio, min_per_second and window (seconds)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot budget_slots[] = {
    {Py_tp_doc, "RetryBudget(ratio=0.2, *, min_per_second=3.0, window=10.0, clock=None)\n--\n\n"
                "A retry budget shared by many calls: a retry is allowed while\n"
                "(retries + 1) <= ratio * requests over `window` seconds, or while fewer than\n"
                "`min_per_second` retries happened in the last second. ratio is in [0, 10]\n"
                "(at most ten retries per request), min_per_second finite and >= 0, window\n"
                "seconds in [1e-08, 9.2e9]."},
    {Py_tp_new, budget_new},
    {Py_tp_traverse, budget_traverse},
    {Py_tp_dealloc, budget_dealloc},
    {Py_tp_methods, budget_methods},
    {0, NULL},
};

static PyType_Spec budget_spec = {
    .name = "resil.RetryBudget",
    .basicsize = sizeof(BudgetObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = budget_slots,
};

/* ---- RetryCore and Retrying: the retry state machine --------------------
 *
 * RetryCore holds one @retry policy's settings and its counters, and makes
 * every decision between attempts (retry_decide): whether the outcome of an
 * attempt is retried, how long to wait, and when the call gives up. The
 * sync path runs the whole attempt loop in C (Retrying); the async path
 * awaits in Python and asks a RetryCall, the state of one call, for each
 * decision. C calls only the callables it is given at construction
 * (retry_if_result, retry_after, on_retry, sleep) and reads only the C types
 * it is given (Backoff, RetryBudget, Breaker, the clock). */

typedef struct {
    PyObject_HEAD
    resil_state *st;
    uint64_t retries;
    BackoffObject *backoff;
    PyObject *retry_on;        /* tuple of exception classes */
    PyObject *retry_if_result; /* or NULL */
    double deadline;           /* seconds; < 0 when there is none */
    PyObject *breaker;         /* a Breaker, or NULL */
    BudgetObject *budget;      /* or NULL */
    PyObject *retry_after;     /* retry_after(exc) -> seconds or None */
    PyObject *on_retry;        /* or NULL */
    PyObject *clock;           /* the sync path's clock (deadlines) */
    int clock_kind;
    PyObject *sleep;           /* the sync path's sleep(seconds) */
    PyObject *retry_error;     /* the class raised when retries end on a result */
    PyObject *name;            /* str or None */
    uint64_t retried, gave_up, rejected;
} RetryCoreObject;

/* One call's progress: the 1-based number of the attempt that last ran,
 * the delay before it (< 0 before the first retry) and when the call
 * started (seconds on the clock `now` is read from). */
typedef struct {
    uint64_t attempt;
    double prev;
    double started;
} retry_progress;

/* Raises what ends a call whose last attempt ended in `outcome`: the
 * exception itself, or retry_error carrying a failing result. */
static void give_up(RetryCoreObject *c, PyObject *outcome, int raised, uint64_t attempts) {
    if (raised) {
        restore_exc(Py_NewRef(outcome));
        return;
    }
    PyObject *msg = PyUnicode_FromFormat(
        "retries exhausted after %llu attempts; the last result failed retry_if_result",
        (unsigned long long)attempts);
    PyObject *n = PyLong_FromUnsignedLongLong(attempts);
    PyObject *kwnames = Py_BuildValue("(ss)", "result", "attempts");
    if (msg && n && kwnames) {
        PyObject *argv[3] = {msg, outcome, n};
        PyObject *exc = PyObject_Vectorcall(c->retry_error, argv, 1, kwnames);
        if (exc) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    }
    Py_XDECREF(msg);
    Py_XDECREF(n);
    Py_XDECREF(kwnames);
}

/* The delay before the next attempt, after attempt p->attempt ended in
 * `outcome` (raised: an exception; otherwise a result retry_if_result
 * called a failure) at time `now`; p then describes that next attempt.
 * Returns -1.0 with an exception set when the call is over: the exception
 * itself when it is cancellation, a CircuitOpenError, one of `final`
 * (NULL: none) or not in retry_on; CircuitOpenError, chained to it, when
 * the breaker rejects; the last error (or retry_error) when the retries,
 * the deadline or the budget run out. Errors of retry_after and on_retry
 * propagate. */
static double retry_decide(RetryCoreObject *c, retry_progress *p, PyObject *outcome, int raised,
                           double now, PyObject *final) {
    if (raised && (PyErr_GivenExceptionMatches(outcome, c->st->CircuitOpenError) ||
                   PyErr_GivenExceptionMatches(outcome, c->st->cancel_types) ||
                   (final && PyErr_GivenExceptionMatches(outcome, final)) ||
                   !PyErr_GivenExceptionMatches(outcome, c->retry_on))) {
        restore_exc(Py_NewRef(outcome));
        return -1.0;
    }
    int has_deadline = c->deadline >= 0.0;
    if ((has_deadline && now >= p->started + c->deadline) || p->attempt > c->retries) {
        goto out_of_retries;
    }
    if (c->breaker) {
        int open = resil_breaker_reject_if_open(c->breaker);
        if (open != 0) {
            if (open > 0) {
                c->rejected++;
                if (raised) {
                    PyObject *rejection = fetch_exc();
                    PyException_SetCause(rejection, Py_NewRef(outcome));
                    PyException_SetContext(rejection, Py_NewRef(outcome));
                    restore_exc(rejection);
                }
            }
            return -1.0;
        }
    }
    double delay = rs_backoff_delay(&c->backoff->core, p->attempt - 1, p->prev);
    if (raised) {
        PyObject *hint = PyObject_CallOneArg(c->retry_after, outcome);
        if (!hint) {
            return -1.0;
        }
        if (hint != Py_None) {
            double h = PyFloat_AsDouble(hint);
            if (h == -1.0 && PyErr_Occurred()) {
                Py_DECREF(hint);
                return -1.0;
            }
            if (isfinite(h)) { /* NaN and infinite hints are ignored */
                delay = h > 0.0 ? h : 0.0;
                if (delay > c->backoff->core.max_delay) {
                    delay = c->backoff->core.max_delay;
                }
            }
        }
        Py_DECREF(hint);
    }
    if (has_deadline && now + delay >= p->started + c->deadline) {
        goto out_of_retries;
    }
    if (c->budget) {
        uint64_t bnow;
        if (resil_clock_read(c->budget->clock_kind, c->budget->clock, &bnow) < 0) {
            return -1.0;
        }
        if (!rs_budget_try_retry(&c->budget->core, bnow)) {
            goto out_of_retries;
        }
    }
    if (c->on_retry) {
        PyObject *a = PyLong_FromUnsignedLongLong(p->attempt);
        PyObject *d = a ? PyFloat_FromDouble(delay) : NULL;
        PyObject *r = NULL;
        if (d) {
            PyObject *argv[3] = {a, d, outcome};
            r = PyObject_Vectorcall(c->on_retry, argv, 3, NULL);
        }
        Py_XDECREF(a);
        Py_XDECREF(d);
        if (!r) {
            return -1.0;
        }
        Py_DECREF(r);
    }
    c->retried++;
    p->attempt++;
    p->prev = delay;
    return delay;
out_of_retries:
    c->gave_up++;
    give_up(c, outcome, raised, p->attempt);
    return -1.0;
}

/* The seconds on the sync path's clock, or 0.0 when the policy has no
 * deadline (the only use of the time). */
static int sync_now(RetryCoreObject *c, double *now) {
    uint64_t ns = 0;
    if (c->deadline >= 0.0 && resil_clock_read(c->clock_kind, c->clock, &ns) < 0) {
        return -1;
    }
    *now = (double)ns / 1e9;
    return 0;
}

/* retry_if_result's verdict on res: 1 retry, 0 keep, -1 error. */
static int result_fails(PyObject *retry_if_result, PyObject *res) {
    PyObject *verdict = PyObject_CallOneArg(retry_if_result, res);
    int truth = verdict ? PyObject_IsTrue(verdict) : -1;
    Py_XDECREF(verdict);
    return truth;
}

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"retries", "backoff", "retry_on", "retry_if_result", "deadline",
                             "breaker", "budget", "retry_after", "on_retry", "clock", "sleep",
                             "retry_error", "name", NULL};
    PyObject *retries_o, *backoff, *retry_on, *rir, *deadline_o, *breaker, *budget, *retry_after,
        *on_retry, *clock, *sleep, *retry_error, *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOOOOOOOO:RetryCore", kwlist, &retries_o,
                                     &backoff, &retry_on, &rir, &deadline_o, &breaker, &budget,
                                     &retry_after, &on_retry, &clock, &sleep, &retry_error, &name)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    /* The public retry() validates every setting; these checks keep the
     * C safe against a direct call. */
    unsigned long long retries = PyLong_Check(retries_o) ? PyLong_AsUnsignedLongLong(retries_o) : 0;
    if (!PyLong_Check(retries_o) || (retries == (unsigned long long)-1 && PyErr_Occurred())) {
        PyErr_Clear();
        resil_bad_value("retries", "an int >= 0", retries_o);
        return NULL;
    }
    double deadline = -1.0;
    if (deadline_o != Py_None) {
        if (resil_finite(deadline_o, "deadline", &deadline) < 0) {
            return NULL;
        }
        if (deadline < 0.0) {
            resil_bad_value("deadline", "a finite number of seconds >= 0 or None", deadline_o);
            return NULL;
        }
    }
    int kind = -1;
    if (!Py_IS_TYPE(backoff, st->Backoff_type) || !PyTuple_Check(retry_on) ||
        (rir != Py_None && !PyCallable_Check(rir)) ||
        (breaker != Py_None && !PyObject_TypeCheck(breaker, st->Breaker_type)) ||
        (budget != Py_None && !Py_IS_TYPE(budget, st->RetryBudget_type)) ||
        !PyCallable_Check(retry_after) || (on_retry != Py_None && !PyCallable_Check(on_retry)) ||
        !PyCallable_Check(sleep) || !PyCallable_Check(retry_error) ||
        (name != Py_None && !PyUnicode_Check(name))) {
        PyErr_SetString(PyExc_TypeError, "RetryCore: a setting has the wrong type");
        return NULL;
    }
    if ((kind = resil_clock_kind(st, clock)) < 0) {
        return NULL;
    }
    RetryCoreObject *c = (RetryCoreObject *)type->tp_alloc(type, 0);
    if (!c) {
        return NULL;
    }
    c->st = st;
    c->retries = retries;
    c->backoff = (BackoffObject *)Py_NewRef(backoff);
    c->retry_on = Py_NewRef(retry_on);
    c->retry_if_result = rir == Py_None ? NULL : Py_NewRef(rir);
    c->deadline = deadline;
    c->breaker = breaker == Py_None ? NULL : Py_NewRef(breaker);
    c->budget = budget == Py_None ? NULL : (BudgetObject *)Py_NewRef(budget);
    c->retry_after = Py_NewRef(retry_after);
    c->on_retry = on_retry == Py_None ? NULL : Py_NewRef(on_retry);
    c->clock = Py_NewRef(clock);
    c->clock_kind = kind;
    c->sleep = Py_NewRef(sleep);
    c->retry_error = Py_NewRef(retry_error);
    c->name = Py_NewRef(name);
    return (PyObject *)c;
}

static int core_traverse(RetryCoreObject *c, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->backoff);
    Py_VISIT(c->retry_on);
    Py_VISIT(c->retry_if_result);
    Py_VISIT(c->breaker);
    Py_VISIT(c->budget);
    Py_VISIT(c->retry_after);
    Py_VISIT(c->on_retry);
    Py_VISIT(c->clock);
    Py_VISIT(c->sleep);
    Py_VISIT(c->retry_error);
    Py_VISIT(c->name);
    return 0;
}

static int core_clear(RetryCoreObject *c) {
    Py_CLEAR(c->backoff);
    Py_CLEAR(c->retry_on);
    Py_CLEAR(c->retry_if_result);
    Py_CLEAR(c->breaker);
    Py_CLEAR(c->budget);
    Py_CLEAR(c->retry_after);
    Py_CLEAR(c->on_retry);
    Py_CLEAR(c->clock);
    Py_CLEAR(c->sleep);
    Py_CLEAR(c->retry_error);
    Py_CLEAR(c->name);
    return 0;
}

static void core_dealloc(RetryCoreObject *c) {
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    core_clear(c);
    tp->tp_free((PyObject *)c);
    Py_DECREF(tp);
}

static PyObject *core_stats(RetryCoreObject *c, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sOsKsKsK}", "name", c->name ? c->name : Py_None, "retries",
                         (unsigned long long)c->retried, "gave_up", (unsigned long long)c->gave_up,
                         "rejected", (unsigned long long)c->rejected);
}

static PyObject *core_get(RetryCoreObject *c, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return Py_NewRef(c->name ? c->name : Py_None);
    default: return PyLong_FromUnsignedLongLong(c->retries);
    }
}

/* ---- RetryCall: one async call's progress ---- */

typedef struct {
    PyObject_HEAD
    RetryCoreObject *core;
    PyObject *final; /* or NULL */
    retry_progress progress;
} RetryCallObject;

static PyObject *core_begin(RetryCoreObject *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "begin() takes 2 arguments (started, final), got %zd", nargs);
        return NULL;
    }
    double started;
    if (resil_finite(args[0], "started", &started) < 0) {
        return NULL;
    }
    PyTypeObject *tp = c->st->RetryCall_type;
    RetryCallObject *call = PyObject_GC_New(RetryCallObject, tp);
    if (!call) {
        return NULL;
    }
    call->core = (RetryCoreObject *)Py_NewRef(c);
    call->final = args[1] == Py_None ? NULL : Py_NewRef(args[1]);
    call->progress.attempt = 1;
    call->progress.prev = -1.0;
    call->progress.started = started;
    PyObject_GC_Track(call);
    return (PyObject *)call;
}

static int call_traverse(RetryCallObject *call, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(call));
    Py_VISIT(call->core);
    Py_VISIT(call->final);
    return 0;
}

static int call_clear(RetryCallObject *call) {
    Py_CLEAR(call->core);
    Py_CLEAR(call->final);
    return 0;
}

static void call_dealloc(RetryCallObject *call) {
    PyTypeObject *tp = Py_TYPE(call);
    PyObject_GC_UnTrack(call);
    call_clear(call);
    PyObject_GC_Del(call);
    Py_DECREF(tp);
}

static PyObject *call_failed(RetryCallObject *call, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "failed() takes 3 arguments (outcome, raised, now), got %zd",
                     nargs);
        return NULL;
    }
    int raised = PyObject_IsTrue(args[1]);
    double now;
    if (raised < 0 || resil_finite(args[2], "now", &now) < 0) {
        return NULL;
    }
    if (raised && !PyExceptionInstance_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "failed(): a raised outcome must be an exception");
        return NULL;
    }
    if (!call->core) {
        PyErr_SetString(PyExc_ValueError, "failed(): the call is cleared");
        return NULL;
    }
    double delay = retry_decide(call->core, &call->progress, args[0], raised, now, call->final);
    return delay < 0.0 ? NULL : PyFloat_FromDouble(delay);
}

static PyMethodDef call_methods[] = {
    {"failed", (PyCFunction)(void (*)(void))call_failed, METH_FASTCALL,
     "failed(outcome, raised, now) -> float\n\nThe delay before the next attempt, after the last\n"
     "one ended in outcome (an exception when raised, else a failing result) at\n"
     "loop time now; raises instead what ends the call."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot call_slots[] = {
    {Py_tp_doc, "The progress of one retried async call (implementation detail)."},
    {Py_tp_traverse, call_traverse},
    {Py_tp_clear, call_clear},
    {Py_tp_dealloc, call_dealloc},
    {Py_tp_methods, call_methods},
    {0, NULL},
};

static PyType_Spec call_spec = {
    .name = "resil._resil.RetryCall",
    .basicsize = sizeof(RetryCallObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = call_slots,
};

/* ---- Retrying: a sync function under @retry, every attempt in C ---- */

typedef struct {
    PyObject_HEAD
    PyObject *fn;
    RetryCoreObject *core;
    PyObject *retry_if_result; /* the core's, or NULL: read on the first attempt */
    BudgetObject *budget;      /* the core's, or NULL */
    int has_deadline;
    PyObject *dict;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} RetryingObject;

/* Attempts 2..retries+1, after the first one ended in `outcome` (a new
 * reference, taken). */
static PyObject *retrying_again(RetryingObject *r, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames, PyObject *outcome, int raised, double started) {
    RetryCoreObject *c = r->core;
    retry_progress p = {.attempt = 1, .prev = -1.0, .started = started};
    for (;;) {
        double now = 0.0;
        double delay = sync_now(c, &now) < 0 ? -1.0 : retry_decide(c, &p, outcome, raised, now, NULL);
        Py_DECREF(outcome);
        if (delay < 0.0) {
            return NULL;
        }
        if (delay > 0.0) {
            PyObject *d = PyFloat_FromDouble(delay);
            PyObject *slept = d ? PyObject_CallOneArg(c->sleep, d) : NULL;
            Py_XDECREF(d);
            if (!slept) {
                return NULL;
            }
            Py_DECREF(slept);
        }
        PyObject *res = PyObject_Vectorcall(r->fn, args, nargsf, kwnames);
        if (res) {
            int fails = r->retry_if_result ? result_fails(r->retry_if_result, res) : 0;
            if (fails <= 0) {
                if (fails < 0) {
                    Py_CLEAR(res);
                }
                return res;
            }
            outcome = res;
            raised = 0;
        } else {
            outcome = fetch_exc();
            raised = 1;
            if (!outcome) {
                return NULL;
            }
        }
    }
}

static PyObject *retrying_call(RetryingObject *r, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    if (r->budget) {
        uint64_t now;
        if (resil_clock_read(r->budget->clock_kind, r->budget->clock, &now) < 0) {
            return NULL;
        }
        rs_budget_request(&r->budget->core, now);
    }
    double started = 0.0;
    if (r->has_deadline && sync_now(r->core, &started) < 0) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(r->fn, args, nargsf, kwnames);
    if (RS_LIKELY(res != NULL)) {
        if (!r->retry_if_result) {
            return res;
        }
        int fails = result_fails(r->retry_if_result, res);
        if (fails <= 0) {
            if (fails < 0) {
                Py_CLEAR(res);
            }
            return res;
        }
        return retrying_again(r, args, nargsf, kwnames, res, 0, started);
    }
    PyObject *error = fetch_exc();
    return error ? retrying_again(r, args, nargsf, kwnames, error, 1, started) : NULL;
}

static PyObject *core_wrap(RetryCoreObject *c, PyObject *fn) {
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "wrap() needs a callable, not %.100s", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    PyTypeObject *tp = c->st->Retrying_type;
    RetryingObject *r = (RetryingObject *)tp->tp_alloc(tp, 0);
    if (!r) {
        return NULL;
    }
    r->fn = Py_NewRef(fn);
    r->core = (RetryCoreObject *)Py_NewRef(c);
    r->retry_if_result = Py_XNewRef(c->retry_if_result);
    r->budget = (BudgetObject *)Py_XNewRef(c->budget);
    r->has_deadline = c->deadline >= 0.0;
    r->vectorcall = (vectorcallfunc)retrying_call;
    return (PyObject *)r;
}

static PyMethodDef core_methods[] = {
    {"wrap", (PyCFunction)core_wrap, METH_O,
     "wrap(fn) -> callable\n\nfn (a plain function) under this policy: every attempt in C."},
    {"begin", (PyCFunction)(void (*)(void))core_begin, METH_FASTCALL,
     "begin(started, final) -> RetryCall\n\nThe progress of one async call that started at loop\n"
     "time `started`, after its first attempt failed; `final` (an exception class, a tuple\n"
     "of them, or None) is never retried."},
    {"stats", (PyCFunction)core_stats, METH_NOARGS,
     "stats() -> dict\n\nname; retries (attempts after a first one); gave_up; rejected."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"name", (getter)core_get, NULL, "How metrics call this policy, or None.", (void *)0},
    {"retries", (getter)core_get, NULL, "Retries after a first attempt.", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "The settings, decisions and counters of one resil.retry policy\n"
                "(implementation detail)."},
    {Py_tp_new, core_new},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "resil._resil.RetryCore",
    .basicsize = sizeof(RetryCoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = core_slots,
};

static int retrying_traverse(RetryingObject *r, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->fn);
    Py_VISIT(r->core);
    Py_VISIT(r->retry_if_result);
    Py_VISIT(r->budget);
    Py_VISIT(r->dict);
    return 0;
}

static int retrying_clear(RetryingObject *r) {
    Py_CLEAR(r->fn);
    Py_CLEAR(r->core);
    Py_CLEAR(r->retry_if_result);
    Py_CLEAR(r->budget);
    Py_CLEAR(r->dict);
    return 0;
}

static void retrying_dealloc(RetryingObject *r) {
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    if (r->weakreflist) {
        PyObject_ClearWeakRefs((PyObject *)r);
    }
    retrying_clear(r);
    tp->tp_free((PyObject *)r);
    Py_DECREF(tp);
}

static PyMemberDef retrying_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(RetryingObject, vectorcall), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(RetryingObject, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RetryingObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef retrying_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot retrying_slots[] = {
    {Py_tp_doc, "A function wrapped by resil.retry (implementation detail)."},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, retrying_traverse},
    {Py_tp_clear, retrying_clear},
    {Py_tp_dealloc, retrying_dealloc},
    {Py_tp_descr_get, resil_bind_method},
    {Py_tp_members, retrying_members},
    {Py_tp_getset, retrying_getset},
    {0, NULL},
};

static PyType_Spec retrying_spec = {
    .name = "resil._resil.Retrying",
    .basicsize = sizeof(RetryingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = retrying_slots,
};

int resil_retry_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &backoff_spec, NULL, &st->Backoff_type) < 0 ||
        resil_add_type(module, &budget_spec, NULL, &st->RetryBudget_type) < 0 ||
        resil_type_add_ranges(st->Backoff_type, RS_BACKOFF_FIELDS, RS_BOF_JITTER) < 0 ||
        resil_type_add_ranges(st->RetryBudget_type, RS_BUDGET_FIELDS, RS_BGF_COUNT) < 0) {
        return -1;
    }
    return resil_add_type(module, &core_spec, NULL, NULL) < 0 ||
                   resil_add_type(module, &call_spec, NULL, &st->RetryCall_type) < 0 ||
                   resil_add_type(module, &retrying_spec, NULL, &st->Retrying_type) < 0
               ? -1 : 0;
}
