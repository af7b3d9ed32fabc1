/* clock.c - MonotonicClock and VirtualClock.
 *
 * The engine reads a VirtualClock's field directly, without calling Python,
 * and MonotonicClock through clock_gettime(CLOCK_MONOTONIC). */
#include "resil_py.h"

#include <math.h>

#define MAX_NS ((uint64_t)(RS_MAX_SECONDS * 1e9))

/* A time a clock may show: what clock.now() returns and a VirtualClock
 * starts at. */
static const rs_field NOW_FIELD = {"clock.now()", RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS, 0, NULL};
enum { CF_START = 0, CF_COUNT };
static const rs_field CLOCK_FIELDS[CF_COUNT] = {
    {"start", RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS, 0, NULL},
};

int resil_clock_read_python(PyObject *clock, uint64_t *now_ns) {
    PyObject *r = PyObject_CallMethod(clock, "now", NULL);
    if (!r) {
        return -1;
    }
    double s;
    int rc = resil_number(r, "clock.now()", &s);
    if (rc == 0 && !rs_field_ok(&NOW_FIELD, s)) {
        rc = resil_field_error(&NOW_FIELD, r);
    }
    Py_DECREF(r);
    if (rc < 0) {
        return -1;
    }
    *now_ns = (uint64_t)llround(s * 1e9);
    return 0;
}

int resil_clock_resolve(resil_state *st, PyObject **clock) {
    if (!*clock || *clock == Py_None) {
        *clock = st->default_clock; /* borrowed from the module state */
    }
    return resil_clock_kind(st, *clock);
}

int resil_clock_kind(resil_state *st, PyObject *clock) {
    if (Py_IS_TYPE(clock, st->MonotonicClock_type)) {
        return CLOCK_MONOTONIC_KIND;
    }
    if (Py_IS_TYPE(clock, st->VirtualClock_type)) {
        return CLOCK_VIRTUAL_KIND;
    }
    PyObject *now = PyObject_GetAttr(clock, st->str_now);
    if (!now) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "clock must be a resil.MonotonicClock, a resil.VirtualClock or an object "
                     "with a now() method returning seconds, not %.100s",
                     Py_TYPE(clock)->tp_name);
        return -1;
    }
    int ok = PyCallable_Check(now);
    Py_DECREF(now);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "clock.now must be callable");
        return -1;
    }
    return CLOCK_PYTHON_KIND;
}

/* ---- MonotonicClock ---------------------------------------------------- */

typedef struct {
    PyObject_HEAD
} MonotonicClockObject;

static PyObject *mono_now(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    (void)self;
    return PyFloat_FromDouble((double)monotonic_ns() / 1e9);
}

static PyObject *mono_now_ns(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    (void)self;
    return PyLong_FromUnsignedLongLong(monotonic_ns());
}

static PyObject *mono_repr(PyObject *self) {
    (void)self;
    return PyUnicode_FromString("MonotonicClock()");
}

static void plain_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *mono_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":MonotonicClock", kwlist)) {
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static PyMethodDef mono_methods[] = {
    {"now", mono_now, METH_NOARGS,
     "now($self, /)\n--\n\n"
     "Returns a float. Seconds on the monotonic clock."},
    {"now_ns", mono_now_ns, METH_NOARGS,
     "now_ns($self, /)\n--\n\n"
     "Returns an int. Nanoseconds on the monotonic clock."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mono_slots[] = {
    {Py_tp_doc, "MonotonicClock()\n--\n\n"
                "The default clock: CLOCK_MONOTONIC, read by the engine without calling Python."},
    {Py_tp_new, mono_new},
    {Py_tp_dealloc, plain_dealloc},
    {Py_tp_repr, mono_repr},
    {Py_tp_methods, mono_methods},
    {0, NULL},
};

static PyType_Spec mono_spec = {
    .name = "resil.MonotonicClock",
    .basicsize = sizeof(MonotonicClockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mono_slots,
};

/* ---- VirtualClock ------------------------------------------------------ */

static PyObject *vclock_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"start", NULL};
    PyObject *start = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:VirtualClock", kwlist, &start)) {
        return NULL;
    }
    uint64_t ns = 0;
    if (start && resil_field_ns(&CLOCK_FIELDS[CF_START], start, &ns) < 0) {
        return NULL;
    }
    VirtualClockObject *self = (VirtualClockObject *)type->tp_alloc(type, 0);
    if (self) {
        self->now_ns = ns;
    }
    return (PyObject *)self;
}

static PyObject *vclock_now(VirtualClockObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyFloat_FromDouble((double)self->now_ns / 1e9);
}

static PyObject *vclock_now_ns(VirtualClockObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLongLong(self->now_ns);
}

/* Moves the clock forward by ns; ValueError past the largest time. */
static PyObject *vclock_forward(VirtualClockObject *self, uint64_t ns) {
    if (ns > MAX_NS - self->now_ns) {
        char now[40];
        PyOS_snprintf(now, sizeof now, "%.9f", (double)self->now_ns / 1e9);
        PyErr_Format(PyExc_ValueError, "VirtualClock would pass 9.2e9 seconds (now is %s)", now);
        return NULL;
    }
    self->now_ns += ns;
    Py_RETURN_NONE;
}

static PyObject *vclock_advance(VirtualClockObject *self, PyObject *seconds) {
    if (PyFloat_Check(seconds) || (PyLong_Check(seconds) && !PyBool_Check(seconds))) {
        double s;
        if (resil_number(seconds, "seconds", &s) < 0) {
            return NULL;
        }
        if (s < 0.0) {
            PyObject *r = resil_value_repr(seconds);
            if (r) {
                PyErr_Format(PyExc_ValueError,
                             "advance(seconds) needs seconds >= 0 (time never goes backwards), got %U",
                             r);
                Py_DECREF(r);
            }
            return NULL;
        }
    }
    uint64_t ns;
    if (resil_seconds_to_ns(seconds, "seconds", &ns) < 0) {
        return NULL;
    }
    return vclock_forward(self, ns);
}

static PyObject *vclock_advance_ns(VirtualClockObject *self, PyObject *arg) {
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "ns must be an int of nanoseconds, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long long ns = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || ns < 0) {
        resil_bad_value("ns", "an int of nanoseconds >= 0 (time never goes backwards) and "
                              "< 9.2e18", arg);
        return NULL;
    }
    return vclock_forward(self, (uint64_t)ns);
}

static PyObject *vclock_set(VirtualClockObject *self, PyObject *seconds) {
    uint64_t ns;
    if (resil_seconds_to_ns(seconds, "seconds", &ns) < 0) {
        return NULL;
    }
    if (ns < self->now_ns) {
        char now[40];
        PyOS_snprintf(now, sizeof now, "%.9f", (double)self->now_ns / 1e9);
        PyErr_Format(PyExc_ValueError, "set(seconds) cannot move time backwards: now is %s, got %R",
                     now, seconds);
        return NULL;
    }
    self->now_ns = ns;
    Py_RETURN_NONE;
}

static PyObject *vclock_repr(VirtualClockObject *self) {
    PyObject *f = PyFloat_FromDouble((double)self->now_ns / 1e9);
    if (!f) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("VirtualClock(now=%R)", f);
    Py_DECREF(f);
    return r;
}

static PyMethodDef vclock_methods[] = {
    {"now", (PyCFunction)vclock_now, METH_NOARGS,
     "now($self, /)\n--\n\n"
     "Returns a float. The virtual time in seconds."},
    {"now_ns", (PyCFunction)vclock_now_ns, METH_NOARGS,
     "now_ns($self, /)\n--\n\n"
     "Returns an int. The virtual time in nanoseconds."},
    {"advance", (PyCFunction)vclock_advance, METH_O,
     "advance($self, seconds, /)\n--\n\nMoves time forward; a negative value raises ValueError."},
    {"advance_ns", (PyCFunction)vclock_advance_ns, METH_O,
     "advance_ns($self, ns, /)\n--\n\nMoves time forward by an exact number of nanoseconds."},
    {"set", (PyCFunction)vclock_set, METH_O,
     "set($self, seconds, /)\n--\n\nMoves time to `seconds`; an earlier time raises ValueError."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot vclock_slots[] = {
    {Py_tp_doc, "VirtualClock(start=0.0)\n--\n\n"
                "A clock that moves only when told, for deterministic tests. The engine reads it\n"
                "without calling Python. Time never goes backwards."},
    {Py_tp_new, vclock_new},
    {Py_tp_dealloc, plain_dealloc},
    {Py_tp_repr, vclock_repr},
    {Py_tp_methods, vclock_methods},
    {0, NULL},
};

static PyType_Spec vclock_spec = {
    .name = "resil.VirtualClock",
    .basicsize = sizeof(VirtualClockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = vclock_slots,
};

int resil_clock_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &mono_spec, NULL, &st->MonotonicClock_type) < 0 ||
        resil_add_type(module, &vclock_spec, NULL, &st->VirtualClock_type) < 0 ||
        resil_type_add_ranges(st->VirtualClock_type, CLOCK_FIELDS, CF_COUNT) < 0) {
        return -1;
    }
    st->default_clock = PyObject_CallNoArgs((PyObject *)st->MonotonicClock_type);
    return st->default_clock ? 0 : -1;
}
