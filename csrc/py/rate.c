/* rate.c - resil.RateCounter over rs_rate.
 *
 * Every method reads the clock first (a Python clock runs Python code, which
 * may raise or touch this object) and only then changes the core state with
 * plain C calls, so under the GIL a state change either completes or does
 * not start. */
#include "resil_py.h"

#include "../core/rs_rate.h"

typedef struct {
    PyObject_HEAD
    rs_rate core;
    PyObject *clock;
    int clock_kind;
} RateObject;

static PyObject *rate_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"threshold", "window", "clock", NULL};
    PyObject *threshold_o, *window_o, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$O:RateCounter", kwlist, &threshold_o,
                                     &window_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    long long threshold;
    uint64_t window_ns;
    if (resil_field_int(&RS_RATE_FIELDS[RS_RTF_THRESHOLD], threshold_o, &threshold) < 0 ||
        resil_field_ns(&RS_RATE_FIELDS[RS_RTF_WINDOW], window_o, &window_ns) < 0) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    RateObject *self = (RateObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    int rc = rs_rate_init(&self->core, (uint64_t)threshold, window_ns);
    if (rc != RS_OK) {
        Py_DECREF(self);
        PyObject *given[RS_RTF_COUNT] = {threshold_o, window_o};
        resil_raise_status(rc, RS_RATE_FIELDS, RS_RTF_COUNT, given, NULL);
        return NULL;
    }
    return (PyObject *)self;
}

static int rate_traverse(RateObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static void rate_dealloc(RateObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    rs_rate_free(&self->core); /* safe when init failed or never ran */
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *rate_hit(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    int rc = rs_rate_hit(&self->core, now);
    if (rc == RS_ENOMEM) {
        return PyErr_NoMemory();
    }
    return PyBool_FromLong(rc == RS_OK);
}

static PyObject *rate_reserve(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    if (rs_rate_reserve(&self->core, now) != RS_OK) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *rate_sizeof(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSize_t((size_t)Py_TYPE(self)->tp_basicsize + rs_rate_memory(&self->core));
}

static PyObject *rate_count(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(rs_rate_count(&self->core, now));
}

static PyObject *rate_stats(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    const rs_rate *c = &self->core;
    uint64_t count = rs_rate_count(&self->core, now);
    return Py_BuildValue("{sKsKsKsksd}", "count", (unsigned long long)count, "accepted",
                         (unsigned long long)c->accepted, "rejected", (unsigned long long)c->refused,
                         "threshold", (unsigned long)c->threshold, "window",
                         (double)c->window_ns / 1e9);
}

static PyObject *rate_reset(RateObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_rate_reset(&self->core);
    Py_RETURN_NONE;
}

static PyObject *rate_get(RateObject *self, void *closure) {
    const rs_rate *c = &self->core;
    switch ((int)(intptr_t)closure) {
    case 0: return PyLong_FromUnsignedLong(c->threshold);
    case 1: return PyFloat_FromDouble((double)c->window_ns / 1e9);
    case 2: return PyLong_FromUnsignedLongLong(c->accepted);
    case 3: return PyLong_FromUnsignedLongLong(c->refused);
    case 5: return PyLong_FromUnsignedLong(c->cap);
    default: return Py_NewRef(self->clock);
    }
}

static PyObject *rate_repr(RateObject *self) {
    PyObject *window = PyFloat_FromDouble((double)self->core.window_ns / 1e9);
    if (!window) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<RateCounter threshold=%u window=%R accepted=%llu refused=%llu>",
                                       (unsigned)self->core.threshold, window,
                                       (unsigned long long)self->core.accepted,
                                       (unsigned long long)self->core.refused);
    Py_DECREF(window);
    return r;
}

static PyMethodDef rate_methods[] = {
    {"hit", (PyCFunction)rate_hit, METH_NOARGS,
     "hit($self, /)\n--\n\nTrue and the event is recorded when fewer than threshold accepted\n"
     "events happened within the last window; otherwise False and nothing is\n"
     "recorded (refused events do not count toward the window). MemoryError\n"
     "when the event would be accepted but its timestamp ring could not grow\n"
     "(nothing is recorded or counted then)."},
    {"reserve", (PyCFunction)rate_reserve, METH_NOARGS,
     "reserve($self, /)\n--\n\nGrows the timestamp ring now if the next hit() might have to, so\n"
     "that hit() cannot raise MemoryError (count() calls in between keep the\n"
     "reservation; another hit() uses it up). MemoryError if it cannot."},
    {"__sizeof__", (PyCFunction)rate_sizeof, METH_NOARGS,
     "__sizeof__($self, /)\n--\n\nReturns an int. Bytes of the object and its timestamp ring."},
    {"count", (PyCFunction)rate_count, METH_NOARGS,
     "count($self, /)\n--\n\n"
     "Returns an int. Accepted events within the last window. Drops the timestamps that\n"
     "aged out and shrinks the ring once three quarters of it are free."},
    {"reset", (PyCFunction)rate_reset, METH_NOARGS,
     "reset($self, /)\n--\n\nForgets every event, zeroes accepted and refused and frees the ring."},
    {"stats", (PyCFunction)rate_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The counter's counts, JSON-serialisable: count (accepted events within the\n"
     "last window, as count() returns), accepted and rejected (events hit()\n"
     "accepted and refused since creation or reset: the accepted and refused\n"
     "attributes), and the settings threshold and window (seconds)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rate_getset[] = {
    {"threshold", (getter)rate_get, NULL, "Most accepted events within one window.", (void *)0},
    {"window", (getter)rate_get, NULL, "The window, seconds.", (void *)1},
    {"accepted", (getter)rate_get, NULL, "Events accepted since creation or reset.", (void *)2},
    {"refused", (getter)rate_get, NULL, "Events refused since creation or reset.", (void *)3},
    {"clock", (getter)rate_get, NULL, "The clock read for event times.", (void *)4},
    {"capacity", (getter)rate_get, NULL,
     "Timestamps the ring holds room for now (8 bytes each): 0 before the first\n"
     "event, then growing with the events inside the window, never past threshold.",
     (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot rate_slots[] = {
    {Py_tp_doc, "RateCounter(threshold, window, *, clock=None)\n--\n\n"
                "A sliding-window event-rate counter in C, for event-storm detection.\n"
                "hit() accepts an event while fewer than threshold accepted events happened\n"
                "less than window seconds ago, and refuses it otherwise; refused events do not\n"
                "count, so flow resumes as old events age out. Exact: one timestamp (8 bytes)\n"
                "per event inside the window, in a ring that is empty until the first event,\n"
                "doubles as events arrive (up to threshold slots) and shrinks in count() as\n"
                "they age out, so memory follows the events, not the threshold. Amortised\n"
                "O(1) per hit.\n\n"
                "threshold: int in [1, 16777216]. window: seconds, > 0 (at least 1 ns).\n"
                "clock: a MonotonicClock (None: the default), a VirtualClock, or any object\n"
                "with now() -> seconds; a clock that steps back is read as standing still."},
    {Py_tp_new, rate_new},
    {Py_tp_traverse, rate_traverse},
    {Py_tp_dealloc, rate_dealloc},
    {Py_tp_repr, rate_repr},
    {Py_tp_methods, rate_methods},
    {Py_tp_getset, rate_getset},
    {0, NULL},
};

static PyType_Spec rate_spec = {
    .name = "resil.RateCounter",
    .basicsize = sizeof(RateObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rate_slots,
};

int resil_rate_init_types(PyObject *module, resil_state *st) {
    return resil_add_type_with_ranges(module, &rate_spec, &st->RateCounter_type, RS_RATE_FIELDS,
                                      RS_RTF_COUNT);
}
