/* retry.c - Backoff and RetryBudget: thin types over rs_backoff and rs_budget. */
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

static PyObject *backoff_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"base", "multiplier", "max_delay", "jitter", "seed", NULL};
    PyObject *base_o = NULL, *mult_o = NULL, *max_o = NULL, *seed_o = Py_None;
    const char *jitter = "none";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO$sO:Backoff", kwlist, &base_o, &mult_o,
                                     &max_o, &jitter, &seed_o)) {
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
    int mode = -1;
    char names[80] = "";
    for (int i = 0; i < RS_JITTER_COUNT; i++) {
        if (strcmp(jitter, rs_jitter_name(i)) == 0) {
            mode = i;
        }
        size_t used = strlen(names);
        PyOS_snprintf(names + used, sizeof names - used, "%s'%s'", i ? ", " : "", rs_jitter_name(i));
    }
    if (mode < 0) {
        PyErr_Format(PyExc_ValueError, "jitter must be one of %s, got '%s'", names, jitter);
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
    {Py_tp_doc, "Backoff(base=1.0, multiplier=2.0, max_delay=30.0, *, jitter='none', seed=None)\n--\n\n"
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
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO$O:RetryBudget", kwlist, &ratio_o, &mps_o,
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
                         "total_retries", (unsigned long long)self->core.retries, "denied",
                         (unsigned long long)self->core.denied, "ratio", self->core.ratio,
                         "min_per_second", self->core.min_per_second, "window",
                         (double)(self->core.window.width_ns * RS_WINDOW_BUCKETS) / 1e9);
}

static PyMethodDef budget_methods[] = {
    {"record_request", (PyCFunction)budget_request, METH_NOARGS,
     "record_request()\n\nCounts a first attempt."},
    {"try_retry", (PyCFunction)budget_try_retry, METH_NOARGS,
     "try_retry() -> bool\n\nTrue, and counts the retry, when the budget allows one."},
    {"stats", (PyCFunction)budget_stats, METH_NOARGS,
     "stats() -> dict\n\nrequests, retries and retries_last_second in the window; totals; denied."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot budget_slots[] = {
    {Py_tp_doc, "RetryBudget(ratio=0.2, min_per_second=3.0, window=10.0, *, clock=None)\n--\n\n"
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

/* ---- Retrying: the first attempt of a sync @retry, in C ------------------
 *
 * Calls fn; a return that needs no retry goes straight back. Anything else -
 * an exception, or a result retry_if_result calls a failure - goes to the
 * Python loop: slow(error, result, has_result, started, args, kwargs), which
 * makes the later attempts. */

typedef struct {
    PyObject_HEAD
    PyObject *fn;
    PyObject *slow;
    PyObject *retry_if_result; /* or NULL */
    BudgetObject *budget;      /* or NULL */
    PyObject *clock;           /* read for `started` when not NULL */
    int clock_kind;
    PyObject *dict;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} RetryingObject;

static PyObject *retrying_call(RetryingObject *r, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    uint64_t now = 0;
    if (r->budget) {
        if (resil_clock_read(r->budget->clock_kind, r->budget->clock, &now) < 0) {
            return NULL;
        }
        rs_budget_request(&r->budget->core, now);
    }
    uint64_t started = 0;
    if (r->clock && resil_clock_read(r->clock_kind, r->clock, &started) < 0) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(r->fn, args, nargsf, kwnames);
    PyObject *error = NULL;
    if (RS_LIKELY(res != NULL)) {
        if (!r->retry_if_result) {
            return res;
        }
        PyObject *verdict = PyObject_CallOneArg(r->retry_if_result, res);
        int truth = verdict ? PyObject_IsTrue(verdict) : -1;
        Py_XDECREF(verdict);
        if (truth <= 0) {
            if (truth < 0) {
                Py_CLEAR(res);
            }
            return res;
        }
    } else {
        error = fetch_exc();
    }
    PyObject *pos = NULL, *kw = NULL, *out = NULL;
    if (resil_pack_call(args, PyVectorcall_NARGS(nargsf), kwnames, 1, &pos, &kw) == 0) {
        PyObject *started_s = r->clock ? PyFloat_FromDouble((double)started / 1e9) : Py_NewRef(Py_None);
        if (started_s) {
            out = PyObject_CallFunctionObjArgs(r->slow, error ? error : Py_None, res ? res : Py_None,
                                               res ? Py_True : Py_False, started_s, pos, kw, NULL);
            Py_DECREF(started_s);
        }
    }
    Py_XDECREF(pos);
    Py_XDECREF(kw);
    Py_XDECREF(error);
    Py_XDECREF(res);
    return out;
}

static PyObject *retrying_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fn", "slow", "retry_if_result", "budget", "clock", NULL};
    PyObject *fn, *slow, *rir = Py_None, *budget = Py_None, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OOO:Retrying", kwlist, &fn, &slow, &rir,
                                     &budget, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    if (!PyCallable_Check(fn) || !PyCallable_Check(slow) || (rir != Py_None && !PyCallable_Check(rir))) {
        PyErr_SetString(PyExc_TypeError, "Retrying needs callables");
        return NULL;
    }
    if (budget != Py_None && !Py_IS_TYPE(budget, st->RetryBudget_type)) {
        PyErr_SetString(PyExc_TypeError, "budget must be a RetryBudget or None");
        return NULL;
    }
    int kind = 0;
    if (clock != Py_None && (kind = resil_clock_kind(st, clock)) < 0) {
        return NULL;
    }
    RetryingObject *r = (RetryingObject *)type->tp_alloc(type, 0);
    if (!r) {
        return NULL;
    }
    r->fn = Py_NewRef(fn);
    r->slow = Py_NewRef(slow);
    r->retry_if_result = rir == Py_None ? NULL : Py_NewRef(rir);
    r->budget = budget == Py_None ? NULL : (BudgetObject *)Py_NewRef(budget);
    r->clock = clock == Py_None ? NULL : Py_NewRef(clock);
    r->clock_kind = kind;
    r->vectorcall = (vectorcallfunc)retrying_call;
    return (PyObject *)r;
}

static int retrying_traverse(RetryingObject *r, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->fn);
    Py_VISIT(r->slow);
    Py_VISIT(r->retry_if_result);
    Py_VISIT(r->budget);
    Py_VISIT(r->clock);
    Py_VISIT(r->dict);
    return 0;
}

static int retrying_clear(RetryingObject *r) {
    Py_CLEAR(r->fn);
    Py_CLEAR(r->slow);
    Py_CLEAR(r->retry_if_result);
    Py_CLEAR(r->budget);
    Py_CLEAR(r->clock);
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
    {Py_tp_new, retrying_new},
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
             Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = retrying_slots,
};

int resil_retry_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &backoff_spec, NULL, &st->Backoff_type) < 0 ||
        resil_add_type(module, &budget_spec, NULL, &st->RetryBudget_type) < 0 ||
        resil_type_add_ranges(st->Backoff_type, RS_BACKOFF_FIELDS, RS_BOF_JITTER) < 0 ||
        resil_type_add_ranges(st->RetryBudget_type, RS_BUDGET_FIELDS, RS_BGF_COUNT) < 0) {
        return -1;
    }
    return resil_add_type(module, &retrying_spec, NULL, NULL);
}
