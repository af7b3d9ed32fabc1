/* queue.c - the engine of resil.BoundedQueue: ring storage, watermarks,
 * counters and the non-blocking operations.
 *
 * The awaiting side (put/get/join with futures) is Python, in
 * resil/messaging/queues.py, as in asyncio.Queue: a waiter is only woken, and takes
 * the item itself with get_nowait, so a cancelled get never loses an item.
 * The Python side owns the waiters: it hands this type its three lines of
 * waiters (getters, putters, joiners) and two wake-up callables once, with
 * _set_waiters(getters, putters, joiners, wake_first, wake_all). After a
 * put this type calls wake_first(getters) when len(getters) is non-zero,
 * after a get wake_first(putters), and wake_all(joiners) when nothing is
 * left unfinished; it never counts waiters itself and looks nothing up by
 * name. */
#include "resil_py.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

#include "../core/rs_ring.h"
#include "../core/rs_window.h"

typedef struct {
    PyObject_HEAD
    rs_ring ring;
    rs_window gets;          /* gets over the last 10 s, for throughput */
    resil_state *st;
    PyObject *clock;
    int clock_kind;
    uint32_t maxsize;
    uint32_t warn_limit;     /* depth >= this: warning */
    uint32_t reject_limit;   /* depth >= this: put_nowait raises QueueFull */
    int in_warning;
    PyObject *lines[3];      /* getters, putters, joiners (deques), or NULL */
    const Py_ssize_t *lens[3]; /* each line's length field, or no_line */
    PyObject *wake_first, *wake_all; /* callables, or NULL */
    uint64_t unfinished;
    uint64_t puts, got, rejected, warnings;
    uint64_t started_ns;
    double warn_at, reject_at;
    int initialised;
} RingObject;

#define THROUGHPUT_WINDOW_NS (10 * RS_NS_PER_SEC)

enum { LINE_GETTERS = 0, LINE_PUTTERS = 1, LINE_JOINERS = 2 };

/* The length of a line not given yet. */
static const Py_ssize_t no_line = 0;

/* How many wait in line i: its len(), 0 before _set_waiters. A
 * collections.deque keeps its length in ob_size (its len() returns
 * Py_SIZE), so the hot path reads that field, through a pointer set with
 * the line, as cheaply as an int of its own. */
static inline Py_ssize_t waiting(RingObject *self, int i) {
    return *self->lens[i];
}

/* 1 when o is an exact collections.deque (not a subclass: its length must
 * be the one in ob_size), 0 when not, -1 with an exception set. The type
 * is looked up rather than recognised by name or flags: from Python 3.12
 * it is a heap type of the _collections module. */
static int is_deque(PyObject *o) {
    PyObject *collections = PyImport_ImportModule("collections");
    if (!collections) {
        return -1;
    }
    PyObject *deque = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (!deque) {
        return -1;
    }
    int exact = PyType_Check(deque) && Py_IS_TYPE(o, (PyTypeObject *)deque);
    Py_DECREF(deque);
    return exact;
}

/* Calls wake(line) for line i. Never raises: the change that called it is
 * made, and a failing wake-up must not undo how it looks (an item put or
 * taken), so its error is reported as unraisable. */
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void wake_line(RingObject *self, PyObject *wake, int i) {
    PyObject *line = self->lines[i];
    if (!wake || !line) {
        return;
    }
    Py_INCREF(wake); /* _set_waiters may replace them while it runs */
    Py_INCREF(line);
    PyObject *r = PyObject_CallOneArg(wake, line);
    Py_DECREF(wake);
    Py_DECREF(line);
    if (r) {
        Py_DECREF(r);
    } else {
        PyErr_WriteUnraisable((PyObject *)self);
    }
}

/* The watermarks, fractions of maxsize (maxsize itself is the core ring's
 * RS_RING_CAPACITY_FIELD). warn_at's rule is checked against reject_at. */
enum { WF_REJECT_AT = 0, WF_WARN_AT, WF_COUNT };
static const rs_field WATERMARK_FIELDS[WF_COUNT] = {
    {"reject_at", RS_FIELD_NUMBER, 0.0, 1.0, RS_FIELD_OPEN_LO, NULL},
    {"warn_at", RS_FIELD_NUMBER, 0.0, 1.0, RS_FIELD_OPEN_LO, "<= reject_at"},
};

/* The smallest depth d with d >= fraction * maxsize, at least 1. */
static uint32_t depth_at(double fraction, uint32_t maxsize) {
    uint32_t d = (uint32_t)ceil(fraction * (double)maxsize);
    return d < 1 ? 1 : d;
}

static void set_limits(RingObject *self, uint32_t maxsize, double warn_at, double reject_at) {
    self->maxsize = maxsize;
    self->reject_limit = depth_at(reject_at, maxsize);
    self->warn_limit = depth_at(warn_at, maxsize);
    self->warn_at = warn_at;
    self->reject_at = reject_at;
}

/* configure()'s ValueError for warn_at above reject_at: naming warn_at
 * when it was passed, else reject_at against warn_at's value now. */
static void bad_watermarks(PyObject *const given[WF_COUNT], const double values[WF_COUNT]) {
    if (given[WF_WARN_AT]) {
        resil_raise_status(RS_EFIELD_BASE + WF_WARN_AT, WATERMARK_FIELDS, WF_COUNT, given, NULL);
        return;
    }
    char *warn = PyOS_double_to_string(values[WF_WARN_AT], 'r', 0, 0, NULL);
    if (!warn) {
        return;
    }
    char accepts[64];
    PyOS_snprintf(accepts, sizeof accepts, ">= warn_at (%s)", warn);
    PyMem_Free(warn);
    resil_bad_value("reject_at", accepts, given[WF_REJECT_AT]);
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"maxsize", "warn_at", "reject_at", "clock", NULL};
    PyObject *max_o = NULL, *warn_o = NULL, *reject_o = NULL, *clock = Py_None;
    double warn_at = 0.8, reject_at = 0.95;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO$O:BoundedQueue", kwlist, &max_o, &warn_o,
                                     &reject_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    long long maxsize = 1000;
    if ((max_o && resil_field_int(&RS_RING_CAPACITY_FIELD, max_o, &maxsize) < 0) ||
        (reject_o && resil_field_double(&WATERMARK_FIELDS[WF_REJECT_AT], reject_o, &reject_at) < 0) ||
        (warn_o && resil_field_double(&WATERMARK_FIELDS[WF_WARN_AT], warn_o, &warn_at) < 0)) {
        return NULL;
    }
    if (warn_at > reject_at) {
        PyObject *given[WF_COUNT] = {reject_o, warn_o};
        const double values[WF_COUNT] = {reject_at, warn_at};
        resil_raise_status(RS_EFIELD_BASE + WF_WARN_AT, WATERMARK_FIELDS, WF_COUNT, given, values);
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    uint64_t now;
    if (kind < 0 || resil_clock_read(kind, clock, &now) < 0) {
        return NULL;
    }
    RingObject *self = (RingObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->st = st;
    for (int i = 0; i < 3; i++) {
        self->lens[i] = &no_line;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    set_limits(self, (uint32_t)maxsize, warn_at, reject_at);
    self->started_ns = now;
    rs_status rc = rs_ring_init(&self->ring, self->reject_limit, now);
    if (rc == RS_OK) {
        rc = rs_window_init_time(&self->gets, THROUGHPUT_WINDOW_NS, now);
        if (rc != RS_OK) {
            rs_ring_free(&self->ring);
        }
    }
    if (rc != RS_OK) {
        Py_DECREF(self);
        resil_raise_status(rc, &RS_RING_CAPACITY_FIELD, 1, NULL, NULL);
        return NULL;
    }
    self->initialised = 1;
    return (PyObject *)self;
}

static int ring_traverse(RingObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    for (int i = 0; i < 3; i++) {
        Py_VISIT(self->lines[i]);
    }
    Py_VISIT(self->wake_first);
    Py_VISIT(self->wake_all);
    if (self->initialised) {
        for (uint32_t i = 0; i < self->ring.len; i++) {
            Py_VISIT((PyObject *)rs_ring_at(&self->ring, i));
        }
    }
    return 0;
}

static int ring_clear(RingObject *self) {
    for (int i = 0; i < 3; i++) {
        self->lens[i] = &no_line; /* before the line can go */
        Py_CLEAR(self->lines[i]);
    }
    Py_CLEAR(self->wake_first);
    Py_CLEAR(self->wake_all);
    if (self->initialised) {
        PyObject *item;
        while ((item = rs_ring_pop(&self->ring)) != NULL) {
            Py_DECREF(item);
        }
    }
    return 0;
}

static void ring_dealloc(RingObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ring_clear(self);
    if (self->initialised) {
        rs_ring_free(&self->ring);
        self->initialised = 0;
    }
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Both operations read the clock first: a Python clock runs bytecode, so
 * another thread may run then. After it, nothing below runs Python code until
 * the ring has changed, and the ring's own status is the depth check (its
 * capacity is the rejection watermark), so no state is read before and
 * changed after a switch. The wake-up hooks run after the change. */
static PyObject *ring_put_nowait(RingObject *self, PyObject *item) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    if (RS_UNLIKELY(rs_ring_push(&self->ring, item, now) != RS_OK)) {
        self->rejected++;
        PyErr_Format(self->st->QueueFull, "queue holds %u of %u items, its rejection watermark",
                     self->ring.len, self->maxsize);
        return NULL;
    }
    Py_INCREF(item); /* the ring's reference */
    self->puts++;
    self->unfinished++;
    if (RS_UNLIKELY(self->ring.len >= self->warn_limit)) {
        if (!self->in_warning) {
            self->in_warning = 1;
            self->warnings++;
        }
    }
    if (RS_UNLIKELY(waiting(self, LINE_GETTERS) > 0)) {
        wake_line(self, self->wake_first, LINE_GETTERS);
    }
    Py_RETURN_NONE;
}

static PyObject *ring_get_nowait(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    PyObject *item = rs_ring_pop(&self->ring); /* items are never NULL: NULL is empty */
    if (RS_UNLIKELY(item == NULL)) {
        PyErr_SetNone(self->st->QueueEmpty);
        return NULL;
    }
    self->got++;
    double unused;
    rs_window_roll(&self->gets, now, &unused);
    rs_window_add(&self->gets, 0u, &unused);
    if (self->in_warning && self->ring.len < self->warn_limit) {
        self->in_warning = 0;
    }
    if (RS_UNLIKELY(waiting(self, LINE_PUTTERS) > 0)) {
        wake_line(self, self->wake_first, LINE_PUTTERS);
    }
    return item;
}

static PyObject *ring_task_done(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->unfinished == 0) {
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        return NULL;
    }
    if (--self->unfinished == 0 && waiting(self, LINE_JOINERS) > 0) {
        wake_line(self, self->wake_all, LINE_JOINERS);
    }
    Py_RETURN_NONE;
}

static PyObject *ring_qsize(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLong(self->ring.len);
}

static PyObject *ring_empty(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(self->ring.len == 0);
}

static PyObject *ring_full(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(self->ring.len >= self->reject_limit);
}

static PyObject *ring_stats(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    double unused;
    rs_window_roll(&self->gets, now, &unused);
    /* The window holds the current bucket and the 9 before it. */
    uint64_t width = self->gets.width_ns;
    uint64_t covered_from = self->gets.head_id >= RS_WINDOW_BUCKETS - 1
                                ? (self->gets.head_id - (RS_WINDOW_BUCKETS - 1)) * width : 0;
    if (covered_from < self->started_ns) {
        covered_from = self->started_ns;
    }
    uint64_t span = now > covered_from ? now - covered_from : 0;
    double throughput = span ? (double)self->gets.total / ((double)span / 1e9) : 0.0;
    return Py_BuildValue(
        "{sIsIsdsdsdsdsKsKsKsKsKsO}", "depth", self->ring.len, "maxsize", self->maxsize, "pressure",
        (double)self->ring.len / (double)self->maxsize, "oldest_age",
        (double)rs_ring_oldest_age(&self->ring, now) / 1e9, "average_age",
        rs_ring_mean_age(&self->ring, now) / 1e9, "throughput", throughput, "put",
        (unsigned long long)self->puts, "got", (unsigned long long)self->got, "rejected",
        (unsigned long long)self->rejected, "warnings", (unsigned long long)self->warnings,
        "unfinished", (unsigned long long)self->unfinished, "warning",
        self->ring.len >= self->warn_limit ? Py_True : Py_False);
}

/* configure(*, maxsize=..., warn_at=..., reject_at=...) */
static PyObject *ring_configure(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    if (nargs) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    PyObject *max_o = NULL, *given[WF_COUNT] = {NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = PyUnicode_CompareWithASCIIString(key, "maxsize") == 0 ? &max_o
                          : PyUnicode_CompareWithASCIIString(key, "warn_at") == 0
                              ? &given[WF_WARN_AT]
                          : PyUnicode_CompareWithASCIIString(key, "reject_at") == 0
                              ? &given[WF_REJECT_AT] : NULL;
        if (!slot) {
            PyErr_Format(PyExc_TypeError, "configure() got an unexpected keyword argument %R%s",
                         key, PyUnicode_CompareWithASCIIString(key, "clock") == 0
                                  ? ": the clock is fixed when the queue is made" : "");
            return NULL;
        }
        *slot = args[i];
    }
    long long maxsize = 0;
    double values[WF_COUNT] = {0.0, 0.0};
    if ((max_o && resil_field_int(&RS_RING_CAPACITY_FIELD, max_o, &maxsize) < 0) ||
        (given[WF_REJECT_AT] && resil_field_double(&WATERMARK_FIELDS[WF_REJECT_AT],
                                                   given[WF_REJECT_AT], &values[WF_REJECT_AT]) < 0) ||
        (given[WF_WARN_AT] && resil_field_double(&WATERMARK_FIELDS[WF_WARN_AT], given[WF_WARN_AT],
                                                 &values[WF_WARN_AT]) < 0)) {
        return NULL;
    }
    /* No Python code runs from here to the change: what was not passed is
     * the value in force now. */
    if (!max_o) {
        maxsize = self->maxsize;
    }
    if (!given[WF_REJECT_AT]) {
        values[WF_REJECT_AT] = self->reject_at;
    }
    if (!given[WF_WARN_AT]) {
        values[WF_WARN_AT] = self->warn_at;
    }
    if (values[WF_WARN_AT] > values[WF_REJECT_AT]) {
        bad_watermarks(given, values);
        return NULL;
    }
    rs_status rc = rs_ring_resize(&self->ring, depth_at(values[WF_REJECT_AT], (uint32_t)maxsize));
    if (rc != RS_OK) {
        resil_raise_status(rc, &RS_RING_CAPACITY_FIELD, 1, NULL, NULL);
        return NULL;
    }
    set_limits(self, (uint32_t)maxsize, values[WF_WARN_AT], values[WF_REJECT_AT]);
    if (self->ring.len >= self->warn_limit) {
        if (!self->in_warning) { /* in the warning zone now: an entry into it */
            self->in_warning = 1;
            self->warnings++;
        }
    } else {
        self->in_warning = 0;
    }
    /* Room made: wake as many waiting puts as there is room for (each
     * checks again and waits again if it finds none). */
    Py_ssize_t room = self->ring.len < self->reject_limit ? self->reject_limit - self->ring.len : 0;
    for (Py_ssize_t n = waiting(self, LINE_PUTTERS); room > 0 && n > 0; room--, n--) {
        wake_line(self, self->wake_first, LINE_PUTTERS);
    }
    Py_RETURN_NONE;
}

static PyObject *ring_get(RingObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return PyLong_FromUnsignedLong(self->maxsize);
    case 1: return PyFloat_FromDouble((double)self->ring.len / (double)self->maxsize);
    case 2: return PyBool_FromLong(self->ring.len >= self->warn_limit);
    case 3: return PyLong_FromUnsignedLongLong(self->unfinished);
    case 4: return PyFloat_FromDouble(self->warn_at);
    default: return PyFloat_FromDouble(self->reject_at);
    }
}

static PyObject *ring_set_waiters(RingObject *self, PyObject *const *args, Py_ssize_t nargs) {
    static const char *const names[5] = {"getters", "putters", "joiners", "wake_first",
                                         "wake_all"};
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "_set_waiters() takes 5 arguments (getters, putters, "
                     "joiners, wake_first, wake_all), got %zd", nargs);
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        int ok = i < 3 ? is_deque(args[i]) : PyCallable_Check(args[i]);
        if (ok < 0) {
            return NULL;
        }
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", names[i],
                         i < 3 ? "a collections.deque" : "callable", Py_TYPE(args[i])->tp_name);
            return NULL;
        }
    }
    /* Everything is in place before an old line goes: freeing it may run
     * code that uses this queue. */
    PyObject *old[5];
    for (int i = 0; i < 3; i++) {
        old[i] = self->lines[i];
        self->lines[i] = Py_NewRef(args[i]);
        self->lens[i] = &((PyVarObject *)args[i])->ob_size;
    }
    old[3] = self->wake_first;
    old[4] = self->wake_all;
    self->wake_first = Py_NewRef(args[3]);
    self->wake_all = Py_NewRef(args[4]);
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(old[i]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef ring_methods[] = {
    {"put_nowait", (PyCFunction)ring_put_nowait, METH_O,
     "put_nowait($self, item, /)\n--\n\n"
     "Adds item, or raises QueueFull once depth >= reject_at * maxsize."},
    {"get_nowait", (PyCFunction)ring_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\n"
     "Removes and returns the oldest item, or raises asyncio.QueueEmpty."},
    {"task_done", (PyCFunction)ring_task_done, METH_NOARGS,
     "task_done($self, /)\n--\n\nMarks one item taken with get as processed (as asyncio.Queue)."},
    {"qsize", (PyCFunction)ring_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\n"
     "The number of items held."},
    {"empty", (PyCFunction)ring_empty, METH_NOARGS,
     "empty($self, /)\n--\n\n"
     "True when no item is held."},
    {"full", (PyCFunction)ring_full, METH_NOARGS,
     "full($self, /)\n--\n\nTrue while put_nowait would raise QueueFull."},
    {"configure", (PyCFunction)(void (*)(void))ring_configure, METH_FASTCALL | METH_KEYWORDS,
     "configure($self, /, **changes)\n--\n\n"
     "configure(maxsize=..., warn_at=..., reject_at=...) changes the size and the\n"
     "watermarks, checked as the constructor checks them (with the values not\n"
     "passed as they are now): a bad value raises TypeError or ValueError naming it\n"
     "and changes nothing. The items held are kept, in order: while the depth is\n"
     "at or above the new rejection watermark put_nowait raises QueueFull and put\n"
     "waits, until gets bring it below; a depth at or above the new warning\n"
     "watermark is the warning state (counted as an entry into it when it was not).\n"
     "Puts waiting for room are woken when there is room. Atomic with respect to\n"
     "other threads' put_nowait() and get_nowait()."},
    {"stats", (PyCFunction)ring_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "A dict: depth, maxsize, pressure, oldest_age and average_age (seconds),\n"
     "throughput (gets per second over the last 10 s), put, got, rejected, warnings\n"
     "(entries into the warning zone), unfinished, warning."},
    {"_set_waiters", (PyCFunction)(void (*)(void))ring_set_waiters, METH_FASTCALL,
     "_set_waiters($self, getters, putters, joiners, wake_first, wake_all, /)\n--\n\n"
     "The lines of waiting gets,\n"
     "puts and joins, and the callables that wake the first of a line or all of it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ring_getset[] = {
    {"maxsize", (getter)ring_get, NULL, "The queue's size.", (void *)0},
    {"pressure", (getter)ring_get, NULL, "depth / maxsize.", (void *)1},
    {"warning", (getter)ring_get, NULL, "True while depth >= warn_at * maxsize.", (void *)2},
    {"unfinished_tasks", (getter)ring_get, NULL, "Items put and not yet task_done().", (void *)3},
    {"warn_at", (getter)ring_get, NULL, "Warning watermark, fraction of maxsize.", (void *)4},
    {"reject_at", (getter)ring_get, NULL, "Rejection watermark, fraction of maxsize.", (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_doc, "Ring(maxsize=1000, warn_at=0.8, reject_at=0.95, *, clock=None)\n--\n\n"
                "The engine of resil.BoundedQueue (implementation detail)."},
    {Py_tp_new, ring_new},
    {Py_tp_traverse, ring_traverse},
    {Py_tp_clear, ring_clear},
    {Py_tp_dealloc, ring_dealloc},
    {Py_tp_methods, ring_methods},
    {Py_tp_getset, ring_getset},
    {0, NULL},
};

static PyType_Spec ring_spec = {
    .name = "resil._resil.Ring",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = ring_slots,
};

int resil_queue_init_types(PyObject *module, resil_state *st) {
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (!asyncio) {
        return -1;
    }
    PyObject *afull = PyObject_GetAttrString(asyncio, "QueueFull");
    st->QueueEmpty = PyObject_GetAttrString(asyncio, "QueueEmpty");
    Py_DECREF(asyncio);
    if (!afull || !st->QueueEmpty) {
        Py_XDECREF(afull);
        return -1;
    }
    /* QueueFull is both a ResilError and an asyncio.QueueFull. */
    st->QueueFull = PyObject_CallFunction((PyObject *)&PyType_Type, "s(OO){ssss}", "QueueFull",
                                          st->ResilError, afull, "__module__", "resil", "__doc__",
                                          "Raised by put_nowait when a queue is at its rejection "
                                          "watermark (flow control).");
    Py_DECREF(afull);
    if (!st->QueueFull || PyModule_AddObjectRef(module, "QueueFull", st->QueueFull) < 0) {
        return -1;
    }
    PyTypeObject *tp;
    if (resil_add_type_with_ranges(module, &ring_spec, &tp, WATERMARK_FIELDS, WF_COUNT) < 0) {
        return -1;
    }
    int rc = resil_type_add_ranges(tp, &RS_RING_CAPACITY_FIELD, 1);
    Py_DECREF(tp);
    return rc;
}
