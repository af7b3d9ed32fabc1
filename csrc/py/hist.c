/* hist.c - resil.Histogram and resil.WindowedHistogram over rs_hist.
 *
 * Durations come in as milliseconds (float or int) or integer nanoseconds
 * and are kept in nanoseconds; results go out as float milliseconds
 * (ns / 1e6). Every argument is converted and validated first (converting
 * may run Python code, e.g. an int subclass's __float__), then the clock is
 * read (a Python clock runs Python code, which may raise or touch this
 * object), and only then is core state read or changed, with plain C calls
 * and no allocation that could trigger the GC in between. Under the GIL a
 * call thus either completes or does not start. Empty histograms report
 * 0.0 for min, max, mean and every quantile (check count). */
#include "resil_py.h"

#include <limits.h>
#include <math.h>

#include "../core/rs_hist.h"

/* Largest retention: what a clock may show (2**63 ns, see clock.c). */
/* 2**64 as a double: durations must convert to fewer nanoseconds. */
#define TWO_POW_64 18446744073709551616.0

typedef struct {
    PyObject_HEAD
    rs_hist core;
} HistObject;

typedef struct {
    PyObject_HEAD
    rs_hist_window core;
    PyObject *clock;
    int clock_kind;
} WHistObject;

/* ---- argument conversion ------------------------------------------------ */

static int clamp_int(long long v) { return v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v; }

/* A window's retention (a histogram's own fields are in RS_HIST_FIELDS). */
static const rs_field RETENTION_FIELD = {"retention", RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS,
                                         RS_FIELD_OPEN_LO, NULL};

/* sub_bits and max_bits from optional arguments (NULL: the default). A
 * max_bits out of range is told the sub_bits it must exceed. */
static int parse_bits(PyObject *sub_o, PyObject *max_o, int def_sub, int def_max, long long *sub,
                      long long *max) {
    *sub = def_sub;
    *max = def_max;
    if (sub_o && resil_field_int(&RS_HIST_FIELDS[RS_HGF_SUB_BITS], sub_o, sub) < 0) {
        return -1;
    }
    rs_field above = RS_HIST_FIELDS[RS_HGF_MAX_BITS];
    char rule[48];
    PyOS_snprintf(rule, sizeof rule, "%s (%lld)", above.rule, *sub);
    above.rule = rule;
    if (max_o && (resil_field_int(&above, max_o, max) < 0 ||
                  (*max <= *sub && resil_field_error(&above, max_o) < 0))) {
        return -1;
    }
    return 0;
}

/* A duration in milliseconds (int or float, not bool) to nanoseconds,
 * rounded to nearest, ties to even (like round()). */
static inline int ms_to_ns(PyObject *o, uint64_t *out) {
    double ms;
    if (RS_LIKELY(PyFloat_CheckExact(o))) {
        ms = PyFloat_AS_DOUBLE(o);
    } else if (resil_number(o, "ms", &ms) < 0) {
        return -1;
    }
    double ns = ms * 1e6;
    if (RS_UNLIKELY(!(ns >= 0.0 && ns < TWO_POW_64))) {
        return resil_bad_value("ms", "a finite duration in milliseconds >= 0 and below 2**64 ns "
                                     "(about 1.8e13 ms)", o);
    }
    *out = (uint64_t)nearbyint(ns);
    return 0;
}

static inline int int_ns(PyObject *o, uint64_t *out) {
    if (RS_UNLIKELY(!PyLong_Check(o) || PyBool_Check(o))) {
        PyErr_Format(PyExc_TypeError, "ns must be an int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (RS_UNLIKELY(v == (unsigned long long)-1 && PyErr_Occurred())) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        return resil_bad_value("ns", "an int in [0, 2**64 - 1]", o);
    }
    *out = (uint64_t)v;
    return 0;
}

static void q_name(char *buf, size_t size, Py_ssize_t index) {
    if (index < 0) {
        PyOS_snprintf(buf, size, "q");
    } else {
        PyOS_snprintf(buf, size, "qs[%zd]", index);
    }
}

/* q: an int or float (not bool) in [0, 1]; index < 0 names it "q" in
 * errors, otherwise "qs[index]". */
static int parse_q(PyObject *o, Py_ssize_t index, double *q) {
    char name[48];
    if (RS_LIKELY(PyFloat_CheckExact(o))) {
        *q = PyFloat_AS_DOUBLE(o);
    } else {
        q_name(name, sizeof name, index);
        if (resil_number(o, name, q) < 0) {
            return -1;
        }
    }
    if (!(*q >= 0.0 && *q <= 1.0)) {
        q_name(name, sizeof name, index);
        return resil_bad_value(name, "a quantile in [0, 1]", o);
    }
    return 0;
}

/* One quantile in, its value in ns out, in place. */
typedef union {
    double q;
    uint64_t ns;
} qslot;

/* qs as a C array of validated quantiles (PyMem; NULL when empty). */
static int parse_qs(PyObject *qs, qslot **out, Py_ssize_t *n) {
    *out = NULL;
    *n = 0;
    PyObject *seq = PySequence_Fast(qs, "qs must be an iterable of quantiles in [0, 1]");
    if (!seq) {
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    qslot *buf = len ? PyMem_New(qslot, len) : NULL;
    if (len && !buf) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < len; i++) {
        if (parse_q(items[i], i, &buf[i].q) < 0) {
            PyMem_Free(buf);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    *out = buf;
    *n = len;
    return 0;
}

static inline PyObject *ns_to_ms(uint64_t ns) { return PyFloat_FromDouble((double)ns / 1e6); }

/* A list of the ms values of the results in buf; frees buf. */
static PyObject *ms_list(qslot *buf, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (list) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = ns_to_ms(buf[i].ns);
            if (!v) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, i, v);
        }
    }
    PyMem_Free(buf);
    return list;
}

/* ---- Histogram ---------------------------------------------------------- */

/* A new, empty Histogram of type tp (not GC-tracked: allocating it never
 * runs a collection). */
static HistObject *hist_alloc(PyTypeObject *tp, long long sub_bits, long long max_bits,
                              PyObject *sub_o, PyObject *max_o) {
    HistObject *self = (HistObject *)tp->tp_alloc(tp, 0);
    if (!self) {
        return NULL;
    }
    int rc = rs_hist_init(&self->core, clamp_int(sub_bits), clamp_int(max_bits));
    if (rc != RS_OK) {
        Py_DECREF(self);
        PyObject *given[RS_HGF_COUNT] = {sub_o, max_o, NULL, NULL};
        resil_raise_status(rc, RS_HIST_FIELDS, RS_HGF_COUNT, given, NULL);
        return NULL;
    }
    return self;
}

static PyObject *hist_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sub_bits", "max_bits", NULL};
    PyObject *sub_o = NULL, *max_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:Histogram", kwlist, &sub_o, &max_o)) {
        return NULL;
    }
    long long sub, max;
    if (parse_bits(sub_o, max_o, RS_HIST_DEFAULT_SUB_BITS, RS_HIST_DEFAULT_MAX_BITS, &sub, &max) <
        0) {
        return NULL;
    }
    return (PyObject *)hist_alloc(type, sub, max, sub_o, max_o);
}

static void hist_dealloc(HistObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    rs_hist_free(&self->core); /* safe when init failed */
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *hist_record(HistObject *self, PyObject *ms) {
    uint64_t ns;
    if (ms_to_ns(ms, &ns) < 0) {
        return NULL;
    }
    rs_hist_record(&self->core, ns);
    Py_RETURN_NONE;
}

static PyObject *hist_record_ns(HistObject *self, PyObject *arg) {
    uint64_t ns;
    if (int_ns(arg, &ns) < 0) {
        return NULL;
    }
    rs_hist_record(&self->core, ns);
    Py_RETURN_NONE;
}

static PyObject *hist_quantile(HistObject *self, PyObject *arg) {
    double q;
    if (parse_q(arg, -1, &q) < 0) {
        return NULL;
    }
    return ns_to_ms(rs_hist_quantile(&self->core, q));
}

static PyObject *hist_quantiles(HistObject *self, PyObject *qs) {
    qslot *buf;
    Py_ssize_t n;
    if (parse_qs(qs, &buf, &n) < 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        buf[i].ns = rs_hist_quantile(&self->core, buf[i].q);
    }
    return ms_list(buf, n);
}

static PyObject *hist_merge(HistObject *self, PyObject *other) {
    if (!Py_IS_TYPE(other, Py_TYPE(self))) {
        PyErr_Format(PyExc_TypeError, "merge() needs a Histogram, not %.100s",
                     Py_TYPE(other)->tp_name);
        return NULL;
    }
    const rs_hist *src = &((HistObject *)other)->core;
    if (rs_hist_merge(&self->core, src) != RS_OK) {
        PyErr_Format(PyExc_ValueError,
                     "cannot merge a Histogram(sub_bits=%d, max_bits=%d) into a "
                     "Histogram(sub_bits=%d, max_bits=%d): the configs must match",
                     src->sub_bits, src->max_bits, self->core.sub_bits, self->core.max_bits);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *hist_reset(HistObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_hist_reset(&self->core);
    Py_RETURN_NONE;
}

static PyObject *hist_copy(HistObject *self, PyObject *Py_UNUSED(ignored)) {
    HistObject *c = hist_alloc(Py_TYPE(self), self->core.sub_bits, self->core.max_bits, NULL, NULL);
    if (c) {
        rs_hist_merge(&c->core, &self->core); /* same config: cannot fail */
    }
    return (PyObject *)c;
}

static Py_ssize_t hist_memory(const rs_hist *h) {
    return (Py_ssize_t)(sizeof(HistObject) + (size_t)h->nbuckets * sizeof(uint64_t));
}

static PyObject *hist_get(HistObject *self, void *closure) {
    const rs_hist *h = &self->core;
    switch ((int)(intptr_t)closure) {
    case 0: return PyLong_FromUnsignedLongLong(h->count);
    case 1: return PyLong_FromUnsignedLongLong(h->clamped);
    case 2: return ns_to_ms(rs_hist_min(h));
    case 3: return ns_to_ms(rs_hist_max(h));
    case 4: return PyFloat_FromDouble(rs_hist_mean(h) / 1e6);
    case 5: return PyLong_FromSsize_t(hist_memory(h));
    case 6: return PyLong_FromLong(h->sub_bits);
    default: return PyLong_FromLong(h->max_bits);
    }
}

/* The summary stats() reports; count, clamped, min, max and mean are read
 * from one state (a window's at one clock reading). */
static PyObject *summary_dict(uint64_t count, uint64_t clamped, uint64_t min_ns, uint64_t max_ns,
                              double mean_ns, int sub_bits, int max_bits, Py_ssize_t memory) {
    return Py_BuildValue("{sKsKsdsdsdsisisn}", "count", (unsigned long long)count, "clamped",
                         (unsigned long long)clamped, "min_ms", (double)min_ns / 1e6, "max_ms",
                         (double)max_ns / 1e6, "mean_ms", mean_ns / 1e6, "sub_bits", sub_bits,
                         "max_bits", max_bits, "memory_bytes", memory);
}

static PyObject *hist_stats(HistObject *self, PyObject *Py_UNUSED(ignored)) {
    const rs_hist *h = &self->core;
    return summary_dict(h->count, h->clamped, rs_hist_min(h), rs_hist_max(h), rs_hist_mean(h),
                        h->sub_bits, h->max_bits, hist_memory(h));
}

static PyObject *hist_repr(HistObject *self) {
    const rs_hist *h = &self->core;
    return PyUnicode_FromFormat("<Histogram sub_bits=%d max_bits=%d count=%llu clamped=%llu>",
                                h->sub_bits, h->max_bits, (unsigned long long)h->count,
                                (unsigned long long)h->clamped);
}

static PyMethodDef hist_methods[] = {
    {"record", (PyCFunction)hist_record, METH_O,
     "record($self, ms, /)\n--\n\n"
     "Records one duration in milliseconds (int or float, >= 0, finite), kept\n"
     "as nanoseconds rounded to nearest (ties to even, like round()). ValueError\n"
     "for NaN, infinities, negatives and 2**64 ns or more; a duration of\n"
     "2**max_bits ns or more is recorded in the top bucket and counted in clamped."},
    {"record_ns", (PyCFunction)hist_record_ns, METH_O,
     "record_ns($self, ns, /)\n--\n\n"
     "Records one duration of ns nanoseconds (int in [0, 2**64 - 1])."},
    {"quantile", (PyCFunction)hist_quantile, METH_O,
     "quantile($self, q, /)\n--\n\n"
     "Returns a float. The q-quantile in ms, q in [0, 1] (int or float): the recorded sample\n"
     "of nearest rank max(1, ceil(q * count)) within 2**-(sub_bits + 1) relative\n"
     "(exact below 2**(sub_bits + 1) ns, for q=0 (min) and for q=1 (max)); the rank\n"
     "of a decimal q is the one its decimal value gives (0.9 of 10 samples is the\n"
     "9th). 0.0 when empty."},
    {"quantiles", (PyCFunction)hist_quantiles, METH_O,
     "quantiles($self, qs, /)\n--\n\n"
     "Returns a list of floats. quantile(q) for each q of the iterable qs, in one call,\n"
     "e.g. quantiles((0.5, 0.95, 0.99)). Every q is validated before any is computed."},
    {"merge", (PyCFunction)hist_merge, METH_O,
     "merge($self, other, /)\n--\n\n"
     "Adds every sample of the Histogram other into this one, as if recorded\n"
     "here (merge(self) doubles it). ValueError unless both have the same sub_bits\n"
     "and max_bits; TypeError for anything but a Histogram."},
    {"reset", (PyCFunction)hist_reset, METH_NOARGS, "reset($self, /)\n--\n\nForgets every sample."},
    {"copy", (PyCFunction)hist_copy, METH_NOARGS,
     "copy($self, /)\n--\n\nAn independent Histogram with the same config and samples."},
    {"stats", (PyCFunction)hist_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The histogram's summary, JSON-serialisable: count (samples recorded),\n"
     "clamped (of them, samples of 2**max_bits ns or more), min_ms, max_ms and\n"
     "mean_ms (0.0 when empty), and sub_bits, max_bits and memory_bytes as the\n"
     "attributes of those names."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef hist_getset[] = {
    {"count", (getter)hist_get, NULL, "Samples recorded.", (void *)0},
    {"clamped", (getter)hist_get, NULL,
     "Samples of 2**max_bits ns or more (counted in the top bucket).", (void *)1},
    {"min_ms", (getter)hist_get, NULL, "The smallest sample in ms, exact; 0.0 when empty.", (void *)2},
    {"max_ms", (getter)hist_get, NULL, "The largest sample in ms, exact; 0.0 when empty.", (void *)3},
    {"mean_ms", (getter)hist_get, NULL, "The mean sample in ms (a running double sum); 0.0 when empty.",
     (void *)4},
    {"memory_bytes", (getter)hist_get, NULL,
     "Bytes held: the object and its buckets (8 bytes each).", (void *)5},
    {"sub_bits", (getter)hist_get, NULL, "2**sub_bits buckets per power of two.", (void *)6},
    {"max_bits", (getter)hist_get, NULL, "Samples below 2**max_bits ns are bucketed; larger ones clamped.",
     (void *)7},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot hist_slots[] = {
    {Py_tp_doc, "Histogram(sub_bits=7, max_bits=44)\n--\n\n"
                "A log-linear (HDR-style) latency histogram in C: O(1) record, fixed memory,\n"
                "mergeable. Durations go in as milliseconds (record) or integer nanoseconds\n"
                "(record_ns), are kept at 1 ns resolution and come out as float milliseconds.\n\n"
                "quantile(q) reports the sample of nearest rank max(1, ceil(q * count)) to\n"
                "within 2**-(sub_bits + 1) relative error (0.39 % at sub_bits=7); samples below\n"
                "2**(sub_bits + 1) ns are exact, and so are q=0 (min_ms) and q=1 (max_ms).\n"
                "Samples of 2**max_bits ns or more go in the top bucket and are counted in\n"
                "clamped (min_ms and max_ms stay exact; quantiles among them have no bound).\n"
                "min_ms, max_ms, mean_ms and quantiles are 0.0 when empty: check count.\n\n"
                "sub_bits: int in [1, 10], default 7: 2**sub_bits buckets per power of two.\n"
                "max_bits: int in [sub_bits + 1, 63], default 44 (2**44 ns, about 4.9 hours).\n"
                "Memory: (max_bits - sub_bits + 1) * 2**sub_bits buckets of 8 bytes, allocated\n"
                "once: 38,912 bytes at the defaults (see memory_bytes)."},
    {Py_tp_new, hist_new},
    {Py_tp_dealloc, hist_dealloc},
    {Py_tp_repr, hist_repr},
    {Py_tp_methods, hist_methods},
    {Py_tp_getset, hist_getset},
    {0, NULL},
};

static PyType_Spec hist_spec = {
    .name = "resil.Histogram",
    .basicsize = sizeof(HistObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = hist_slots,
};

/* ---- WindowedHistogram -------------------------------------------------- */

static PyObject *whist_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"retention", "slots", "sub_bits", "max_bits", "clock", NULL};
    PyObject *ret_o = NULL, *slots_o = NULL, *sub_o = NULL, *max_o = NULL, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOO:WindowedHistogram", kwlist, &ret_o,
                                     &slots_o, &sub_o, &max_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    uint64_t retention_ns = 86400 * RS_NS_PER_SEC;
    long long slots = 12;
    if ((ret_o && resil_field_ns(&RETENTION_FIELD, ret_o, &retention_ns) < 0) ||
        (slots_o && resil_field_int(&RS_HIST_FIELDS[RS_HGF_NSLOTS], slots_o, &slots) < 0)) {
        return NULL;
    }
    uint64_t slot_ns = retention_ns / (uint64_t)slots;
    if (slot_ns < 1) { /* only for a given retention: the default is 86400 s */
        PyErr_Format(PyExc_ValueError,
                     "retention / slots must be at least 1 ns, got retention=%R and slots=%lld",
                     ret_o, slots);
        return NULL;
    }
    long long sub, max;
    if (parse_bits(sub_o, max_o, RS_HIST_WINDOW_SUB_BITS, RS_HIST_WINDOW_MAX_BITS, &sub,
                   &max) < 0) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    WHistObject *self = (WHistObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    int rc = rs_hist_window_init(&self->core, clamp_int(sub), clamp_int(max), (uint64_t)slots,
                                 slot_ns);
    if (rc != RS_OK) {
        Py_DECREF(self);
        PyObject *given[RS_HGF_COUNT] = {sub_o, max_o, slots_o, NULL};
        resil_raise_status(rc, RS_HIST_FIELDS, RS_HGF_COUNT, given, NULL);
        return NULL;
    }
    return (PyObject *)self;
}

static int whist_traverse(WHistObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static void whist_dealloc(WHistObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    rs_hist_window_free(&self->core); /* safe when init failed */
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static inline int whist_now(WHistObject *self, uint64_t *now) {
    return resil_clock_read(self->clock_kind, self->clock, now);
}

static PyObject *whist_record(WHistObject *self, PyObject *ms) {
    uint64_t ns, now;
    if (ms_to_ns(ms, &ns) < 0 || whist_now(self, &now) < 0) {
        return NULL;
    }
    rs_hist_window_record(&self->core, now, ns);
    Py_RETURN_NONE;
}

static PyObject *whist_record_ns(WHistObject *self, PyObject *arg) {
    uint64_t ns, now;
    if (int_ns(arg, &ns) < 0 || whist_now(self, &now) < 0) {
        return NULL;
    }
    rs_hist_window_record(&self->core, now, ns);
    Py_RETURN_NONE;
}

enum { W_COUNT, W_CLAMPED, W_MIN, W_MAX, W_MEAN };

/* The no-argument queries over the live slots. */
static PyObject *whist_query(WHistObject *self, int what) {
    uint64_t now;
    if (whist_now(self, &now) < 0) {
        return NULL;
    }
    const rs_hist_window *w = &self->core;
    switch (what) {
    case W_COUNT: return PyLong_FromUnsignedLongLong(rs_hist_window_count(w, now));
    case W_CLAMPED: return PyLong_FromUnsignedLongLong(rs_hist_window_clamped(w, now));
    case W_MIN: return ns_to_ms(rs_hist_window_min(w, now));
    case W_MAX: return ns_to_ms(rs_hist_window_max(w, now));
    default: return PyFloat_FromDouble(rs_hist_window_mean(w, now) / 1e6);
    }
}

static PyObject *whist_count(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    return whist_query(self, W_COUNT);
}
static PyObject *whist_clamped(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    return whist_query(self, W_CLAMPED);
}
static PyObject *whist_min(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    return whist_query(self, W_MIN);
}
static PyObject *whist_max(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    return whist_query(self, W_MAX);
}
static PyObject *whist_mean(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    return whist_query(self, W_MEAN);
}

static PyObject *whist_quantile(WHistObject *self, PyObject *arg) {
    double q;
    uint64_t now;
    if (parse_q(arg, -1, &q) < 0 || whist_now(self, &now) < 0) {
        return NULL;
    }
    return ns_to_ms(rs_hist_window_quantile(&self->core, now, q));
}

static PyObject *whist_quantiles(WHistObject *self, PyObject *qs) {
    qslot *buf;
    Py_ssize_t n;
    uint64_t now;
    if (parse_qs(qs, &buf, &n) < 0) {
        return NULL;
    }
    if (whist_now(self, &now) < 0) {
        PyMem_Free(buf);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        buf[i].ns = rs_hist_window_quantile(&self->core, now, buf[i].q);
    }
    return ms_list(buf, n);
}

static PyObject *whist_snapshot(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    resil_state *st = get_state_by_type(Py_TYPE(self));
    if (!st) {
        return NULL;
    }
    /* Allocated before the clock is read, so nothing runs between the read
     * and the copy. */
    HistObject *h = hist_alloc(st->Histogram_type, self->core.sub_bits, self->core.max_bits, NULL,
                               NULL);
    if (!h) {
        return NULL;
    }
    uint64_t now;
    if (whist_now(self, &now) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    rs_hist_window_snapshot(&self->core, now, &h->core); /* same config: cannot fail */
    return (PyObject *)h;
}

static PyObject *whist_reset(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_hist_window_reset(&self->core);
    Py_RETURN_NONE;
}

static Py_ssize_t whist_memory(const rs_hist_window *w) {
    return (Py_ssize_t)(sizeof(WHistObject) + (size_t)w->nslots * sizeof(rs_hist) +
                        (size_t)w->nslots * w->nbuckets * sizeof(uint64_t));
}

static PyObject *whist_get(WHistObject *self, void *closure) {
    const rs_hist_window *w = &self->core;
    switch ((int)(intptr_t)closure) {
    case 0: return PyFloat_FromDouble((double)(w->slot_ns * w->nslots) / 1e9);
    case 1: return PyLong_FromUnsignedLong(w->nslots);
    case 2: return PyLong_FromLong(w->sub_bits);
    case 3: return PyLong_FromLong(w->max_bits);
    case 4: return PyLong_FromSsize_t(whist_memory(w));
    default: return Py_NewRef(self->clock);
    }
}

static PyObject *whist_stats(WHistObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (whist_now(self, &now) < 0) {
        return NULL;
    }
    const rs_hist_window *w = &self->core;
    PyObject *d = summary_dict(rs_hist_window_count(w, now), rs_hist_window_clamped(w, now),
                               rs_hist_window_min(w, now), rs_hist_window_max(w, now),
                               rs_hist_window_mean(w, now), w->sub_bits, w->max_bits,
                               whist_memory(w));
    if (!d) {
        return NULL;
    }
    PyObject *retention = PyFloat_FromDouble((double)(w->slot_ns * w->nslots) / 1e9);
    PyObject *slots = PyLong_FromUnsignedLong(w->nslots);
    if (!retention || !slots || PyDict_SetItemString(d, "retention", retention) < 0 ||
        PyDict_SetItemString(d, "slots", slots) < 0) {
        Py_CLEAR(d);
    }
    Py_XDECREF(retention);
    Py_XDECREF(slots);
    return d;
}

static PyObject *whist_repr(WHistObject *self) {
    const rs_hist_window *w = &self->core;
    PyObject *retention = PyFloat_FromDouble((double)(w->slot_ns * w->nslots) / 1e9);
    if (!retention) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<WindowedHistogram retention=%R slots=%u sub_bits=%d "
                                       "max_bits=%d>",
                                       retention, (unsigned)w->nslots, w->sub_bits, w->max_bits);
    Py_DECREF(retention);
    return r;
}

static PyMethodDef whist_methods[] = {
    {"record", (PyCFunction)whist_record, METH_O,
     "record($self, ms, /)\n--\n\nRecords one duration in milliseconds at the clock's time; as\n"
     "Histogram.record (ns rounded to nearest, ValueError for NaN, infinities,\n"
     "negatives and 2**64 ns or more)."},
    {"record_ns", (PyCFunction)whist_record_ns, METH_O,
     "record_ns($self, ns, /)\n--\n\n"
     "Records one duration of ns nanoseconds (int in [0, 2**64 - 1])."},
    {"count", (PyCFunction)whist_count, METH_NOARGS,
     "count($self, /)\n--\n\n"
     "Returns an int. Samples in the window now."},
    {"clamped", (PyCFunction)whist_clamped, METH_NOARGS,
     "clamped($self, /)\n--\n\n"
     "Returns an int. Samples in the window now of 2**max_bits ns or more."},
    {"min_ms", (PyCFunction)whist_min, METH_NOARGS,
     "min_ms($self, /)\n--\n\n"
     "Returns a float. The smallest sample in the window in ms, exact; 0.0 when empty."},
    {"max_ms", (PyCFunction)whist_max, METH_NOARGS,
     "max_ms($self, /)\n--\n\n"
     "Returns a float. The largest sample in the window in ms, exact; 0.0 when empty."},
    {"mean_ms", (PyCFunction)whist_mean, METH_NOARGS,
     "mean_ms($self, /)\n--\n\n"
     "Returns a float. The mean sample in the window in ms; 0.0 when empty."},
    {"quantile", (PyCFunction)whist_quantile, METH_O,
     "quantile($self, q, /)\n--\n\n"
     "Returns a float. The q-quantile (q in [0, 1]) of the samples in the window, in ms, with\n"
     "Histogram.quantile's rank and error bound; 0.0 when empty. O(buckets x slots)."},
    {"quantiles", (PyCFunction)whist_quantiles, METH_O,
     "quantiles($self, qs, /)\n--\n\n"
     "Returns a list of floats. quantile(q) for each q of the iterable qs, all at one clock\n"
     "reading, e.g. quantiles((0.5, 0.95, 0.99))."},
    {"snapshot", (PyCFunction)whist_snapshot, METH_NOARGS,
     "snapshot($self, /)\n--\n\n"
     "A new Histogram (same sub_bits and max_bits) holding the samples in\n"
     "the window now; its quantiles equal the window's."},
    {"reset", (PyCFunction)whist_reset, METH_NOARGS,
     "reset($self, /)\n--\n\n"
     "Forgets every sample."},
    {"stats", (PyCFunction)whist_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The window's summary at one clock reading, JSON-serialisable: count (samples\n"
     "in the window now), clamped (of them, samples of 2**max_bits ns or more),\n"
     "min_ms, max_ms and mean_ms (0.0 when empty), and retention (seconds), slots,\n"
     "sub_bits, max_bits and memory_bytes as the attributes of those names."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef whist_getset[] = {
    {"retention", (getter)whist_get, NULL,
     "The window, seconds: slots x the slot length (the ns given divided by\n"
     "slots, rounded down).",
     (void *)0},
    {"slots", (getter)whist_get, NULL, "Rotating sub-histograms in the window.", (void *)1},
    {"sub_bits", (getter)whist_get, NULL, "2**sub_bits buckets per power of two.", (void *)2},
    {"max_bits", (getter)whist_get, NULL, "Samples below 2**max_bits ns are bucketed; larger ones clamped.",
     (void *)3},
    {"memory_bytes", (getter)whist_get, NULL,
     "Bytes held: the object and slots x buckets x 8 bytes (plus a small header per slot).",
     (void *)4},
    {"clock", (getter)whist_get, NULL, "The clock read for sample and query times.", (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot whist_slots[] = {
    {Py_tp_doc, "WindowedHistogram(retention=86400.0, slots=12, *, sub_bits=6, max_bits=42, "
                "clock=None)\n--\n\n"
                "A latency histogram over a sliding time window, in C: slots rotating\n"
                "sub-histograms of retention / slots seconds each (the Histogram layout and\n"
                "error bound). A sample recorded at time t, in slot k = t // slot, is counted\n"
                "until the clock reaches (k + slots) * slot: between (slots - 1) and slots slot\n"
                "lengths. record is O(1); queries merge the live slots on the fly (no\n"
                "allocation, O(buckets x slots)). min/max/mean/quantiles are 0.0 when empty.\n\n"
                "retention: seconds, > 0, default 86400.0 (one day); the slot length is\n"
                "retention in ns // slots and must be at least 1 ns.\n"
                "slots: int in [1, 64], default 12 (2-hour slots at the default retention).\n"
                "sub_bits: int in [1, 10], default 6: relative error below 2**-7 = 0.78 % (the\n"
                "1 % target) with half the memory of 7.\n"
                "max_bits: int in [sub_bits + 1, 63], default 42 (2**42 ns, about 73 minutes);\n"
                "longer samples are clamped into the top bucket and counted (clamped()).\n"
                "clock: a MonotonicClock (None: the default), a VirtualClock, or any object\n"
                "with now() -> seconds; a clock that steps back is read as standing still.\n"
                "Memory: slots x (max_bits - sub_bits + 1) x 2**sub_bits buckets x 8 bytes,\n"
                "allocated once: 12 x 2,368 x 8 = 227,328 bytes (222 KiB) at the defaults\n"
                "(see memory_bytes)."},
    {Py_tp_new, whist_new},
    {Py_tp_traverse, whist_traverse},
    {Py_tp_dealloc, whist_dealloc},
    {Py_tp_repr, whist_repr},
    {Py_tp_methods, whist_methods},
    {Py_tp_getset, whist_getset},
    {0, NULL},
};

static PyType_Spec whist_spec = {
    .name = "resil.WindowedHistogram",
    .basicsize = sizeof(WHistObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = whist_slots,
};

int resil_hist_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &hist_spec, NULL, &st->Histogram_type) < 0 ||
        resil_add_type(module, &whist_spec, NULL, &st->WindowedHistogram_type) < 0 ||
        resil_type_add_ranges(st->Histogram_type, RS_HIST_FIELDS, RS_HGF_NSLOTS) < 0 ||
        resil_type_add_ranges(st->WindowedHistogram_type, &RETENTION_FIELD, 1) < 0 ||
        resil_type_add_ranges(st->WindowedHistogram_type, RS_HIST_FIELDS, RS_HGF_SLOT_NS) < 0) {
        return -1;
    }
    return 0;
}
