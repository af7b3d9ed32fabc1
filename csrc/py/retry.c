/* retry.c - the retry state machine behind resil.retry: RetryCore holds a
 * policy's settings and counts and makes every decision between attempts,
 * Retrying runs a sync function's whole attempt loop, RetryCall is one async
 * call's progress (Python only awaits the delays it returns). */
#include "retry.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

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
    PyObject *listener;        /* listener(attempt, delay, error) after each retry decided; or NULL */
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

/* Calls fn(attempt, delay, error); -1 with its exception set when it raised. */
static int tell(PyObject *fn, uint64_t attempt, double delay, PyObject *error) {
    PyObject *a = PyLong_FromUnsignedLongLong(attempt);
    PyObject *d = a ? PyFloat_FromDouble(delay) : NULL;
    PyObject *r = NULL;
    if (d) {
        PyObject *argv[3] = {a, d, error};
        r = PyObject_Vectorcall(fn, argv, 3, NULL);
    }
    Py_XDECREF(a);
    Py_XDECREF(d);
    if (!r) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
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
    if (c->on_retry && tell(c->on_retry, p->attempt, delay, outcome) < 0) {
        return -1.0;
    }
    c->retried++;
    p->attempt++;
    p->prev = delay;
    /* After the change, with on_retry's arguments: the attempt that failed. */
    if (c->listener && tell(c->listener, p->attempt - 1, delay, outcome) < 0) {
        return -1.0;
    }
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
    Py_VISIT(c->listener);
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
    Py_CLEAR(c->listener);
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
     "failed($self, outcome, raised, now, /)\n--\n\n"
     "Returns a float. The delay before the next attempt, after the last\n"
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

static PyObject *core_set_listener(RetryCoreObject *c, PyObject *fn) {
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "_set_listener() needs a callable or None, not %.100s",
                     Py_TYPE(fn)->tp_name);
        return NULL;
    }
    Py_XSETREF(c->listener, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"wrap", (PyCFunction)core_wrap, METH_O,
     "wrap($self, fn, /)\n--\n\n"
     "A callable: fn (a plain function) under this policy: every attempt in C."},
    {"begin", (PyCFunction)(void (*)(void))core_begin, METH_FASTCALL,
     "begin($self, started, final, /)\n--\n\n"
     "A RetryCall: the progress of one async call that started at loop\n"
     "time `started`, after its first attempt failed; `final` (an exception class, a tuple\n"
     "of them, or None) is never retried."},
    {"stats", (PyCFunction)core_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "A dict: name; retries (attempts after a first one); gave_up; rejected."},
    {"_set_listener", (PyCFunction)core_set_listener, METH_O,
     "_set_listener($self, fn, /)\n--\n\n"
     "fn(attempt, delay, error) is called after each retry is decided and counted, before\n"
     "its sleep (the arguments on_retry gets); None removes it. What it raises ends the\n"
     "call, as an error of on_retry does."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"name", (getter)core_get, NULL, "How metrics call this policy, or None.", (void *)0},
    {"retries", (getter)core_get, NULL, "Retries after a first attempt.", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "RetryCore(*, retries, backoff, retry_on, retry_if_result, deadline, breaker,\n"
                "budget, retry_after, on_retry, clock, sleep, retry_error, name)\n--\n\n"
                "The settings, decisions and counters of one resil.retry policy\n"
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
    return resil_add_type(module, &core_spec, NULL, NULL) < 0 ||
                   resil_add_type(module, &call_spec, NULL, &st->RetryCall_type) < 0 ||
                   resil_add_type(module, &retrying_spec, NULL, &st->Retrying_type) < 0
               ? -1 : 0;
}
