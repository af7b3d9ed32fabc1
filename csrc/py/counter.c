/* counter.c - resil.WindowedCounter over an rs_window time window.
 *
 * Every method converts its argument and reads the clock first (a Python
 * clock runs Python code, which may raise or touch this object) and only
 * then rolls and changes the core window with plain C calls, so under the
 * GIL a call either completes or does not start. Time that steps back is
 * read as the newest time seen: rs_window_roll ignores an older bucket id,
 * and clear() never moves the head back. */
#include "resil_py.h"

#include "../core/rs_window.h"

typedef struct {
    PyObject_HEAD
    rs_window core;
    PyObject *clock;
    int clock_kind;
} CounterObject;

static PyObject *counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"window", "slots", "clock", NULL};
    PyObject *window_o, *slots_o = NULL, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$O:WindowedCounter", kwlist, &window_o,
                                     &slots_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    uint64_t window_ns;
    long long slots = RS_WINDOW_BUCKETS;
    if (resil_field_ns(&RS_WINDOW_FIELDS[RS_WNF_WINDOW], window_o, &window_ns) < 0 ||
        (slots_o && resil_field_int(&RS_WINDOW_FIELDS[RS_WNF_SLOTS], slots_o, &slots) < 0)) {
        return NULL;
    }
    if (window_ns < (uint64_t)slots) {
        PyErr_Format(PyExc_ValueError,
                     "window / slots must be at least 1 ns, got window=%R and slots=%lld",
                     window_o, slots);
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    uint64_t now;
    if (resil_clock_read(kind, clock, &now) < 0) {
        return NULL;
    }
    CounterObject *self = (CounterObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    /* The arguments were checked above: cannot fail. */
    rs_status rc = rs_window_init_buckets(&self->core, window_ns, (uint32_t)slots, now);
    RS_ASSERT(rc == RS_OK);
    (void)rc;
    return (PyObject *)self;
}

static int counter_traverse(CounterObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static void counter_dealloc(CounterObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    rs_window_free(&self->core); /* a time window owns nothing: a no-op */
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Reads the clock and moves the window to it; -1 with an exception set. */
static inline int roll(CounterObject *self) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return -1;
    }
    double unused;
    rs_window_roll(&self->core, now, &unused);
    return 0;
}

static PyObject *counter_add(CounterObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    PyObject *n_o = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "add() takes at most 1 argument (%zd given)", nargs + nkw);
        return NULL;
    }
    if (nargs == 1) {
        n_o = args[0];
    } else if (nkw == 1) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "n") != 0) {
            PyErr_Format(PyExc_TypeError, "add() got an unexpected keyword argument %R", name);
            return NULL;
        }
        n_o = args[0];
    }
    uint64_t n = 1;
    if (n_o) {
        if (!PyLong_Check(n_o) || PyBool_Check(n_o)) {
            PyErr_Format(PyExc_TypeError, "n must be an int, not %.100s", Py_TYPE(n_o)->tp_name);
            return NULL;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(n_o, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow || v < 0 || (unsigned long long)v > UINT32_MAX) {
            resil_bad_value("n", "an int in [0, 4294967295]", n_o);
            return NULL;
        }
        n = (uint64_t)v;
    }
    if (roll(self) < 0) {
        return NULL;
    }
    if (rs_window_add_n(&self->core, n) != RS_OK) {
        PyErr_Format(PyExc_ValueError,
                     "n must keep the current slot's count within 4294967295: it holds %u, "
                     "got n=%llu",
                     self->core.buckets[self->core.head_pos].total, (unsigned long long)n);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *counter_total(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    if (roll(self) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(self->core.total);
}

static PyObject *counter_clear(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    if (roll(self) < 0) {
        return NULL;
    }
    /* The head is the newest time seen: clearing keeps it. */
    rs_window_clear(&self->core, self->core.head_id * self->core.width_ns);
    Py_RETURN_NONE;
}

static double window_seconds(const rs_window *w) {
    return (double)(w->width_ns * w->nbuckets) / 1e9;
}

static PyObject *counter_stats(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    if (roll(self) < 0) {
        return NULL;
    }
    const rs_window *w = &self->core;
    return Py_BuildValue("{sKsdsI}", "total", (unsigned long long)w->total, "window",
                         window_seconds(w), "slots", (unsigned)w->nbuckets);
}

static PyObject *counter_get(CounterObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return PyFloat_FromDouble(window_seconds(&self->core));
    case 1: return PyLong_FromUnsignedLong(self->core.nbuckets);
    default: return Py_NewRef(self->clock);
    }
}

static PyObject *counter_repr(CounterObject *self) {
    PyObject *window = PyFloat_FromDouble(window_seconds(&self->core));
    if (!window) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<WindowedCounter window=%R slots=%u>", window,
                                       (unsigned)self->core.nbuckets);
    Py_DECREF(window);
    return r;
}

static PyMethodDef counter_methods[] = {
    {"add", (PyCFunction)(void (*)(void))counter_add, METH_FASTCALL | METH_KEYWORDS,
     "add($self, /, n=1)\n--\n\n"
     "Counts n events (an int in [0, 4294967295], default 1) now. ValueError,\n"
     "counting nothing, when the current slot would hold more than 4294967295."},
    {"total", (PyCFunction)counter_total, METH_NOARGS,
     "total($self, /)\n--\n\nEvents counted in the window now."},
    {"clear", (PyCFunction)counter_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nForgets every event (the newest time seen is kept)."},
    {"stats", (PyCFunction)counter_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "{\"total\": events in the window now, \"window\": seconds, \"slots\": int}."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef counter_getset[] = {
    {"window", (getter)counter_get, NULL,
     "The window, seconds: slots x the slot length (the ns given divided by\n"
     "slots, rounded down).",
     (void *)0},
    {"slots", (getter)counter_get, NULL, "Slots the window is cut into.", (void *)1},
    {"clock", (getter)counter_get, NULL, "The clock read for event times.", (void *)2},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot counter_slots[] = {
    {Py_tp_doc, "WindowedCounter(window, slots=10, *, clock=None)\n--\n\n"
                "Events counted over a sliding time window, in C: slots rotating counts of\n"
                "window / slots seconds each, the slot rule of WindowedHistogram. An event\n"
                "counted at time t, in slot k = t // slot, is counted until the clock reaches\n"
                "(k + slots) * slot: between (slots - 1) and slots slot lengths. add() and\n"
                "total() are O(1) (a slot boundary passed costs one step per slot); fixed\n"
                "memory, no allocation.\n\n"
                "window: seconds in (0, 9.2e9]; the slot length is window in ns // slots and\n"
                "must be at least 1 ns.\n"
                "slots: int in [1, 64], default 10.\n"
                "clock: a MonotonicClock (None: the default), a VirtualClock, or any object\n"
                "with now() -> seconds; a clock that steps back is read as standing still."},
    {Py_tp_new, counter_new},
    {Py_tp_traverse, counter_traverse},
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_repr, counter_repr},
    {Py_tp_methods, counter_methods},
    {Py_tp_getset, counter_getset},
    {0, NULL},
};

static PyType_Spec counter_spec = {
    .name = "resil.WindowedCounter",
    .basicsize = sizeof(CounterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = counter_slots,
};

int resil_counter_init_types(PyObject *module, resil_state *st) {
    (void)st;
    return resil_add_type_with_ranges(module, &counter_spec, NULL, RS_WINDOW_FIELDS,
                                      RS_WNF_COUNT);
}
