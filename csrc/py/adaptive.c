/* adaptive.c - AdaptiveCore, the C base of resil.AdaptiveLimiter over
 * rs_adaptive: admission against the adaptive limit, the permits
 * try_acquire hands out (slot.c) and the samples release feeds back.
 *
 * Each method reads the clock first (a Python clock runs Python code), then
 * takes one whole step of the core under the GIL. Nothing waits here: a
 * call past the limit is refused, and the Python layer raises for it. */
#include "resil_py.h"

#include "../core/rs_adaptive.h"

static const char *const ALGORITHMS[RS_AD_ALGORITHM_COUNT] = {"aimd", "vegas", "gradient"};
#define ALGORITHMS_WORDS "one of 'aimd', 'vegas', 'gradient'"

typedef struct {
    PyObject_HEAD
    rs_adaptive core;
    PyObject *clock;
    PyObject *name;
    PyObject *algorithm; /* its name, a str */
    int clock_kind;
    PyTypeObject *permit_type; /* borrowed: the module state keeps it */
} AdaptiveObject;

/* The algorithm argument as an index into ALGORITHMS; -1 with the error set. */
static int parse_algorithm(PyObject *o) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "algorithm must be a str, " ALGORITHMS_WORDS ", not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    for (int i = 0; i < RS_AD_ALGORITHM_COUNT; i++) {
        if (PyUnicode_CompareWithASCIIString(o, ALGORITHMS[i]) == 0) {
            return i;
        }
    }
    PyErr_Format(PyExc_ValueError, "algorithm must be " ALGORITHMS_WORDS ", got %R", o);
    return -1;
}

static PyObject *adaptive_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"algorithm", "initial_limit", "min_limit", "max_limit", "clock",
                             "name", NULL};
    PyObject *algorithm_o = NULL, *clock = Py_None, *name = NULL;
    PyObject *given[RS_ADF_COUNT] = {NULL, NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOOOO:AdaptiveLimiter", kwlist,
                                     &algorithm_o, &given[RS_ADF_INITIAL_LIMIT],
                                     &given[RS_ADF_MIN_LIMIT], &given[RS_ADF_MAX_LIMIT], &clock,
                                     &name)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    int algorithm = RS_AD_GRADIENT;
    if (algorithm_o && (algorithm = parse_algorithm(algorithm_o)) < 0) {
        return NULL;
    }
    const double defaults[RS_ADF_COUNT] = {20.0, 1.0, 1000.0};
    long long values[RS_ADF_COUNT];
    for (int i = 0; i < RS_ADF_COUNT; i++) {
        values[i] = (long long)defaults[i];
        if (given[i] && resil_field_int(&RS_ADAPTIVE_FIELDS[i], given[i], &values[i]) < 0) {
            return NULL;
        }
    }
    if (resil_name_arg(&name) < 0) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        Py_DECREF(name);
        return NULL;
    }
    rs_adaptive core;
    int rc = rs_adaptive_init(&core, algorithm, values[RS_ADF_INITIAL_LIMIT],
                              values[RS_ADF_MIN_LIMIT], values[RS_ADF_MAX_LIMIT]);
    if (rc != RS_OK) {
        Py_DECREF(name);
        resil_raise_status(rc, RS_ADAPTIVE_FIELDS, RS_ADF_COUNT, given, defaults);
        return NULL;
    }
    AdaptiveObject *self = (AdaptiveObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(name);
        return NULL;
    }
    self->core = core;
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    self->name = name;
    self->algorithm = PyUnicode_FromString(ALGORITHMS[algorithm]);
    self->permit_type = st->LimiterPermit_type;
    if (!self->algorithm) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int adaptive_traverse(AdaptiveObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static int adaptive_clear(AdaptiveObject *self) {
    Py_CLEAR(self->clock);
    return 0;
}

static void adaptive_dealloc(AdaptiveObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    adaptive_clear(self);
    Py_CLEAR(self->name);
    Py_CLEAR(self->algorithm);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *adaptive_try_acquire(AdaptiveObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    /* The permit is made before the core decides: a MemoryError takes no slot. */
    resil_slot_permit *permit = resil_slot_permit_new(self->permit_type);
    if (!permit) {
        return NULL;
    }
    rs_adaptive_permit p;
    if (!rs_adaptive_try_acquire(&self->core, &p)) {
        Py_DECREF(permit);
        Py_RETURN_NONE;
    }
    permit->owner = Py_NewRef((PyObject *)self);
    permit->start_ns = now;
    permit->seq = p.seq;
    permit->in_flight = p.in_flight;
    return (PyObject *)permit;
}

static PyObject *adaptive_release(AdaptiveObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    PyObject *permit_o = NULL, *latency_o = Py_None, *dropped_o = Py_False;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "release() takes at most 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject **slots[3] = {&permit_o, &latency_o, &dropped_o};
    static const char *const names[3] = {"permit", "latency", "dropped"};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        *slots[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        int k = nargs;
        while (k < 3 && PyUnicode_CompareWithASCIIString(kw, names[k]) != 0) {
            k++;
        }
        if (k == 3) {
            PyErr_Format(PyExc_TypeError, "release() got an unexpected or repeated argument %R",
                         kw);
            return NULL;
        }
        *slots[k] = args[nargs + i];
    }
    if (!permit_o) {
        PyErr_SetString(PyExc_TypeError, "release() missing required argument 'permit'");
        return NULL;
    }
    if (resil_slot_permit_check(permit_o, self->permit_type, (PyObject *)self, "limiter") < 0) {
        return NULL;
    }
    if (!PyBool_Check(dropped_o)) {
        PyErr_Format(PyExc_TypeError, "dropped must be a bool, not %.100s",
                     Py_TYPE(dropped_o)->tp_name);
        return NULL;
    }
    uint64_t latency_ns = 0, now;
    if (latency_o != Py_None && resil_seconds_to_ns(latency_o, "latency", &latency_ns) < 0) {
        return NULL;
    }
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    resil_slot_permit *permit = (resil_slot_permit *)permit_o;
    /* The clock is Python code that may have released this permit meanwhile. */
    if (permit->released) {
        PyErr_SetString(PyExc_ValueError, "permit was already released");
        return NULL;
    }
    if (latency_o == Py_None) {
        latency_ns = now > permit->start_ns ? now - permit->start_ns : 0;
    }
    rs_adaptive_permit p = {permit->seq, permit->in_flight};
    /* A permit not yet released holds a call in flight, so the core finds
     * one; refused all the same if it did not. */
    if (rs_adaptive_release(&self->core, &p, now, latency_ns, dropped_o == Py_True) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "release with no call in flight");
        return NULL;
    }
    permit->released = 1;
    Py_RETURN_NONE;
}

static PyObject *adaptive_discard(AdaptiveObject *self, PyObject *permit_o) {
    if (resil_slot_permit_check(permit_o, self->permit_type, (PyObject *)self, "limiter") < 0) {
        return NULL;
    }
    if (rs_adaptive_discard(&self->core) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "release with no call in flight");
        return NULL;
    }
    ((resil_slot_permit *)permit_o)->released = 1;
    Py_RETURN_NONE;
}

static PyObject *min_latency_ms(const rs_adaptive *a) {
    if (a->min_ns == 0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble((double)a->min_ns / 1e6);
}

static PyObject *adaptive_stats(AdaptiveObject *self, PyObject *Py_UNUSED(ignored)) {
    const rs_adaptive *a = &self->core;
    PyObject *min_ms = min_latency_ms(a);
    if (!min_ms) {
        return NULL;
    }
    PyObject *r = Py_BuildValue("{sOsOsIsIsKsKsKsN}", "name", self->name, "algorithm",
                                self->algorithm, "limit", rs_adaptive_limit(a), "in_flight",
                                a->in_flight, "admitted", (unsigned long long)a->admitted,
                                "rejected", (unsigned long long)a->rejected, "dropped",
                                (unsigned long long)a->dropped, "min_latency_ms", min_ms);
    return r;
}

static PyObject *adaptive_get(AdaptiveObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return Py_NewRef(self->name);
    case 1: return Py_NewRef(self->algorithm);
    case 2: return PyLong_FromUnsignedLong(rs_adaptive_limit(&self->core));
    case 3: return PyLong_FromUnsignedLong(self->core.in_flight);
    case 4: return PyLong_FromUnsignedLong(self->core.min_limit);
    case 5: return PyLong_FromUnsignedLong(self->core.max_limit);
    case 6: return min_latency_ms(&self->core);
    case 8: return PyFloat_FromDouble(self->core.limit);
    default: return Py_NewRef(self->clock ? self->clock : Py_None);
    }
}

static PyObject *adaptive_repr(AdaptiveObject *self) {
    return PyUnicode_FromFormat("<%s name=%R algorithm=%U limit=%u in_flight=%u>",
                                Py_TYPE(self)->tp_name, self->name, self->algorithm,
                                rs_adaptive_limit(&self->core), self->core.in_flight);
}

static PyMethodDef adaptive_methods[] = {
    {"try_acquire", (PyCFunction)adaptive_try_acquire, METH_NOARGS,
     "try_acquire($self, /)\n--\n\n"
     "A permit holding a slot when fewer calls than the limit are in flight, else\n"
     "None (counted rejected); never waits. Give it back once with release()."},
    {"release", (PyCFunction)(void (*)(void))adaptive_release, METH_FASTCALL | METH_KEYWORDS,
     "release($self, /, permit, latency=None, dropped=False)\n--\n\n"
     "Gives back the slot of a permit from try_acquire and feeds the call's\n"
     "outcome to the algorithm. latency: the call's seconds, a number >= 0; None\n"
     "(the default) measures from try_acquire on the limiter's clock. dropped:\n"
     "True when the call timed out or was refused for overload (counted dropped,\n"
     "a signal to lower the limit). TypeError for anything but such a permit;\n"
     "ValueError for one released before or taken from another limiter."},
    {"_discard", (PyCFunction)adaptive_discard, METH_O,
     "_discard($self, permit, /)\n--\n\n"
     "Gives back the slot of a permit whose call ended without an outcome (it was\n"
     "cancelled): nothing is measured or counted. Refused as release() refuses."},
    {"stats", (PyCFunction)adaptive_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "name, algorithm, limit, in_flight, admitted, rejected, dropped and\n"
     "min_latency_ms (None until the baseline latency is measured)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef adaptive_getset[] = {
    {"name", (getter)adaptive_get, NULL, "The limiter's name.", (void *)0},
    {"algorithm", (getter)adaptive_get, NULL, "'aimd', 'vegas' or 'gradient'.", (void *)1},
    {"limit", (getter)adaptive_get, NULL, "The number of calls allowed in flight now.",
     (void *)2},
    {"in_flight", (getter)adaptive_get, NULL, "Calls admitted and not released yet.", (void *)3},
    {"min_limit", (getter)adaptive_get, NULL, "The lowest the limit goes.", (void *)4},
    {"max_limit", (getter)adaptive_get, NULL, "The highest the limit goes.", (void *)5},
    {"min_latency_ms", (getter)adaptive_get, NULL,
     "The baseline latency in milliseconds; None until measured.", (void *)6},
    {"clock", (getter)adaptive_get, NULL, "The clock read for the time.", (void *)7},
    {"_estimate", (getter)adaptive_get, NULL,
     "The limit as the algorithm keeps it, a float (limit is its floor, or min_limit\n"
     "while the baseline latency is measured).", (void *)8},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot adaptive_slots[] = {
    {Py_tp_doc, "AdaptiveCore(algorithm='gradient', *, initial_limit=20, min_limit=1, "
                "max_limit=1000, clock=None, name='default')\n--\n\n"
                "The C engine of resil.AdaptiveLimiter (implementation detail): an adaptive\n"
                "concurrency limit. See resil.AdaptiveLimiter."},
    {Py_tp_new, adaptive_new},
    {Py_tp_traverse, adaptive_traverse},
    {Py_tp_clear, adaptive_clear},
    {Py_tp_dealloc, adaptive_dealloc},
    {Py_tp_repr, adaptive_repr},
    {Py_tp_methods, adaptive_methods},
    {Py_tp_getset, adaptive_getset},
    {0, NULL},
};

static PyType_Spec adaptive_spec = {
    .name = "resil._resil.AdaptiveCore",
    .basicsize = sizeof(AdaptiveObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = adaptive_slots,
};

int resil_adaptive_init_types(PyObject *module, resil_state *st) {
    return resil_add_type_with_ranges(module, &adaptive_spec, &st->Adaptive_type,
                                      RS_ADAPTIVE_FIELDS, RS_ADF_COUNT);
}
