/* monblock.c - resil._resil.MonitorBlock: a monitor's recorded data in a
 * shared region (rs_monitor), the C half of resil.Monitor(shared=region).
 *
 * record() and record_event() check and convert every argument, make the
 * labels' digests and read the clock first, then lock the block and change
 * it with plain C calls: no Python code runs under the region's lock.
 * read() copies what it needs out under the lock (the quantiles are
 * computed there, in C) and builds the Python objects after unlocking. */
#include "resil_py.h"

#include <math.h>

#include "../core/rs_monitor.h"

typedef struct {
    PyObject_HEAD
    PyObject *region;
    PyObject *clock;
    int clock_kind;
    uint64_t offset;
    uint64_t params[RS_REGION_PARAMS];
} MonBlockObject;

#define MAX_MS 1e12

/* A label argument: a non-empty str of at most RS_MON_LABEL_MAX bytes of
 * UTF-8; -1 with TypeError or ValueError naming param. */
static int label_arg(PyObject *o, const char *param, const char **s, Py_ssize_t *len) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a non-empty str, not %.100s", param,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (PyUnicode_GET_LENGTH(o) == 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-empty str, got ''", param);
        return -1;
    }
    *s = PyUnicode_AsUTF8AndSize(o, len);
    if (!*s) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "%s must be a str encodable as UTF-8 in a shared monitor (no lone "
                         "surrogates), got %.80R",
                         param, o);
        }
        return -1;
    }
    if (*len > (Py_ssize_t)RS_MON_LABEL_MAX || memchr(*s, '\0', (size_t)*len)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be at most %u bytes of UTF-8 without NUL in a shared monitor, "
                     "got %.80R",
                     param, RS_MON_LABEL_MAX, o);
        return -1;
    }
    return 0;
}

/* A key of two labels: the digest of tag, a, NUL, b (and ok for a request
 * series, so its two statuses are two series). */
static void make_key(PyObject *region, uint8_t tag, const char *a, Py_ssize_t alen,
                     const char *b, Py_ssize_t blen, int ok, rs_mon_key *key) {
    char buf[2 * RS_MON_LABEL_MAX + 3];
    size_t n = 0;
    memcpy(buf, a, (size_t)alen);
    n += (size_t)alen;
    buf[n++] = '\0';
    memcpy(buf + n, b, (size_t)blen);
    n += (size_t)blen;
    buf[n++] = (char)(ok ? '1' : '0');
    uint64_t d[2];
    const uint64_t *secret = ((rs_region_header *)((RegionObject *)region)->base)->secret;
    rs_region_digest(secret, tag, buf, n, d);
    key->d0 = d[0];
    key->d1 = d[1];
    key->a = a;
    key->alen = (uint32_t)alen;
    key->b = b;
    key->blen = (uint32_t)blen;
}

static rs_mon_block *lock_block(MonBlockObject *self) {
    rs_mon_block *b = resil_region_block(self->region, self->offset);
    if (!b || resil_region_lock(self->region, &b->lock, &RS_MON_REGION_TYPE, b, self->params) < 0) {
        return NULL;
    }
    return b;
}

static PyObject *mb_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"region", "name", "retention", "slots", "alert_error_rate",
                             "alert_response_ms", "max_components", "max_series", "clock",
                             NULL};
    PyObject *region, *name, *given[RS_MNF_COUNT], *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOO|O:MonitorBlock", kwlist, &region,
                                     &name, &given[0], &given[1], &given[2], &given[3],
                                     &given[4], &given[5], &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    uint64_t retention_ns;
    long long slots, max_components, max_series;
    double error_rate, response_ms;
    if (resil_field_ns(&RS_MON_FIELDS[RS_MNF_RETENTION], given[0], &retention_ns) < 0 ||
        resil_field_int(&RS_MON_FIELDS[RS_MNF_SLOTS], given[1], &slots) < 0 ||
        resil_field_double(&RS_MON_FIELDS[RS_MNF_ERROR_RATE], given[2], &error_rate) < 0 ||
        resil_field_double(&RS_MON_FIELDS[RS_MNF_RESPONSE_MS], given[3], &response_ms) < 0 ||
        resil_field_int(&RS_MON_FIELDS[RS_MNF_MAX_COMPONENTS], given[4], &max_components) < 0 ||
        resil_field_int(&RS_MON_FIELDS[RS_MNF_MAX_SERIES], given[5], &max_series) < 0) {
        return NULL;
    }
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a non-empty str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    if (kind < 0) {
        return NULL;
    }
    MonBlockObject *self = (MonBlockObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    int rc = rs_mon_params(retention_ns, (uint64_t)slots, error_rate, response_ms,
                           (uint64_t)max_components, (uint64_t)max_series, self->params);
    if (rc != RS_OK) {
        resil_raise_status(rc, RS_MON_FIELDS, RS_MNF_COUNT, given, NULL);
        goto error;
    }
    if (resil_region_attach(st, region, &RS_MON_REGION_TYPE, name, self->params, RS_MON_FIELDS,
                            &self->offset) < 0) {
        goto error;
    }
    self->region = Py_NewRef(region);
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        goto error;
    }
    rs_mon_block *b = lock_block(self);
    if (!b) {
        goto error;
    }
    if (!b->started) { /* the first process to attach starts the uptime */
        b->started_ns = now;
        b->started = 1;
    }
    rs_region_unlock(&b->lock);
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static int mb_traverse(MonBlockObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    Py_VISIT(self->region);
    return 0;
}

static int mb_clear(MonBlockObject *self) {
    Py_CLEAR(self->clock);
    Py_CLEAR(self->region);
    return 0;
}

static void mb_dealloc(MonBlockObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    mb_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* record(component, operation, duration_ms, success, error_type, /) */
static PyObject *mb_record(MonBlockObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "record() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    const char *comp, *op, *et = "error";
    Py_ssize_t comp_len, op_len, et_len = 5;
    if (label_arg(args[0], "component", &comp, &comp_len) < 0 ||
        label_arg(args[1], "operation", &op, &op_len) < 0) {
        return NULL;
    }
    PyObject *d = args[2];
    double ms;
    if (PyFloat_CheckExact(d)) {
        ms = PyFloat_AS_DOUBLE(d);
    } else if (PyBool_Check(d) || !(PyLong_Check(d) || PyFloat_Check(d))) {
        PyErr_Format(PyExc_TypeError, "duration_ms must be a number, not %.100s",
                     Py_TYPE(d)->tp_name);
        return NULL;
    } else if (resil_number(d, "duration_ms", &ms) < 0) {
        return NULL;
    }
    if (!(ms >= 0.0 && ms <= MAX_MS)) {
        PyObject *r = resil_value_repr(d);
        if (r) {
            PyErr_Format(PyExc_ValueError, "duration_ms must be in [0, 1e+12] ms, got %U", r);
            Py_DECREF(r);
        }
        return NULL;
    }
    PyObject *success = args[3];
    if (success != Py_True && success != Py_False) {
        PyErr_Format(PyExc_TypeError, "success must be a bool (True or False), not %.100s",
                     Py_TYPE(success)->tp_name);
        return NULL;
    }
    int ok = success == Py_True;
    if (args[4] != Py_None && label_arg(args[4], "error_type", &et, &et_len) < 0) {
        return NULL;
    }
    if (!resil_region_block(self->region, 0)) {
        return NULL;
    }
    rs_mon_key kc, kop, kerr;
    make_key(self->region, 'c', comp, comp_len, "", 0, 1, &kc);
    make_key(self->region, 'r', comp, comp_len, op, op_len, ok, &kop);
    if (!ok) {
        make_key(self->region, 'e', comp, comp_len, et, et_len, 0, &kerr);
    }
    uint64_t now, ns = (uint64_t)nearbyint(ms * 1e6);
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_mon_block *b = lock_block(self);
    if (!b) {
        return NULL;
    }
    rs_status rc = rs_mon_record(b, now, &kc, &kop, ok ? NULL : &kerr, ok, ns, ms);
    rs_region_unlock(&b->lock);
    return PyBool_FromLong(rc == RS_OK);
}

/* record_event(index, kind, component, /): index of the windowed kind, or -1 */
static PyObject *mb_record_event(MonBlockObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "record_event() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    long long index = PyLong_AsLongLong(args[0]);
    if (index == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const char *kind, *comp;
    Py_ssize_t kind_len, comp_len;
    if (label_arg(args[1], "kind", &kind, &kind_len) < 0 ||
        label_arg(args[2], "component", &comp, &comp_len) < 0 ||
        !resil_region_block(self->region, 0)) {
        return NULL;
    }
    rs_mon_key key;
    make_key(self->region, 'v', kind, kind_len, comp, comp_len, 1, &key);
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_mon_block *b = lock_block(self);
    if (!b) {
        return NULL;
    }
    rs_status rc = rs_mon_event(b, now, index, &key);
    rs_region_unlock(&b->lock);
    return PyBool_FromLong(rc == RS_OK);
}

/* What read() copies out of the block under its lock. */
typedef struct comp_row {
    char name[RS_MON_LABEL_MAX + 1];
    uint64_t requests, errors, q[3];
    double sum_ns;
} comp_row;

static const double QUANTILES[3] = {0.5, 0.95, 0.99};

static PyObject *label_str(const rs_mon_label *l) {
    return PyUnicode_DecodeUTF8(l->s, (Py_ssize_t)strnlen(l->s, RS_MON_LABEL_MAX), "replace");
}

static PyObject *series_tuple(const rs_mon_series *s) {
    PyObject *counts = PyTuple_New(RS_MON_BUCKETS + 1);
    if (!counts) {
        return NULL;
    }
    for (unsigned i = 0; i <= RS_MON_BUCKETS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(s->counts[i]);
        if (!v) {
            Py_DECREF(counts);
            return NULL;
        }
        PyTuple_SET_ITEM(counts, i, v);
    }
    return Py_BuildValue("(INNOdN)", (unsigned)s->kind, label_str(&s->a), label_str(&s->b),
                         s->ok ? Py_True : Py_False, s->sum_ms, counts);
}

/* read(quantiles, /) -> (uptime seconds, overflow_records, overflow_events,
 * interrupted, (5 event window counts), [(component, requests, errors, duration sum ms,
 * (p50, p95, p99) ms or None)], [(kind, a, b, ok, sum_ms, counts)]), every
 * window figure at the clock's time. kind: 1 request, 2 error, 3 event. */
static PyObject *mb_read(MonBlockObject *self, PyObject *quantiles) {
    int want_q = PyObject_IsTrue(quantiles);
    if (want_q < 0 || !resil_region_block(self->region, 0)) {
        return NULL;
    }
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    uint64_t max_comps = self->params[RS_MNF_MAX_COMPONENTS];
    uint64_t max_series = self->params[RS_MNF_MAX_SERIES];
    comp_row *rows = PyMem_Calloc((size_t)max_comps, sizeof *rows);
    rs_mon_series *series = PyMem_Calloc((size_t)max_series, sizeof *series);
    if (!rows || !series) {
        PyMem_Free(rows);
        PyMem_Free(series);
        return PyErr_NoMemory();
    }
    rs_mon_block *b = lock_block(self);
    if (!b) {
        PyMem_Free(rows);
        PyMem_Free(series);
        return NULL;
    }
    uint64_t ncomps = b->ncomps < max_comps ? b->ncomps : max_comps, nseries = 0;
    for (uint64_t i = 0; i < ncomps; i++) {
        rs_mon_comp *c = rs_mon_comp_at(b, i);
        comp_row *r = &rows[i];
        memcpy(r->name, c->name.s, sizeof r->name);
        r->requests = rs_hist_flat_query(rs_mon_hist_at(b, i), now, &r->sum_ns, QUANTILES,
                                         want_q ? 3 : 0, r->q);
        r->errors = rs_mon_window_total(&c->errors, now);
    }
    uint64_t events[RS_MON_KINDS];
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        events[k] = rs_mon_window_total(&b->events[k], now);
    }
    for (uint64_t i = 0; i < 2 * max_series && nseries < max_series; i++) {
        const rs_mon_series *s = rs_mon_series_slot(b, i);
        if ((s->d0 | s->d1) != 0) {
            series[nseries++] = *s;
        }
    }
    uint64_t started = b->started_ns, over_r = b->overflow_records, over_e = b->overflow_events;
    uint64_t interrupted = b->interrupted;
    rs_region_unlock(&b->lock);

    PyObject *out = NULL, *comps = PyList_New(0), *ser = PyList_New(0), *ev = NULL;
    if (!comps || !ser) {
        goto done;
    }
    for (uint64_t i = 0; i < ncomps; i++) {
        comp_row *r = &rows[i];
        r->name[RS_MON_LABEL_MAX] = '\0';
        /* as the local monitor: an error counted just after its request may
         * outlive it by one slot */
        uint64_t errors = r->errors < r->requests ? r->errors : r->requests;
        /* the duration sum as mean * count, the local monitor's figure */
        double mean_ms = r->requests ? r->sum_ns / (double)r->requests / 1e6 : 0.0;
        PyObject *q = want_q ? Py_BuildValue("(ddd)", (double)r->q[0] / 1e6,
                                             (double)r->q[1] / 1e6, (double)r->q[2] / 1e6)
                             : Py_NewRef(Py_None);
        PyObject *item = q ? Py_BuildValue("(NKKdN)",
                                           PyUnicode_DecodeUTF8(r->name, (Py_ssize_t)strlen(r->name),
                                                                "replace"),
                                           (unsigned long long)r->requests,
                                           (unsigned long long)errors,
                                           mean_ms * (double)r->requests, q)
                           : NULL;
        if (!item || PyList_Append(comps, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    for (uint64_t i = 0; i < nseries; i++) {
        PyObject *item = series_tuple(&series[i]);
        if (!item || PyList_Append(ser, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    ev = Py_BuildValue("(KKKKK)", (unsigned long long)events[0], (unsigned long long)events[1],
                       (unsigned long long)events[2], (unsigned long long)events[3],
                       (unsigned long long)events[4]);
    if (!ev) {
        goto done;
    }
    out = Py_BuildValue("(dKKKOOO)", now >= started ? (double)(now - started) / 1e9 : 0.0,
                        (unsigned long long)over_r, (unsigned long long)over_e,
                        (unsigned long long)interrupted, ev, comps, ser);
done:
    Py_XDECREF(ev);
    Py_XDECREF(comps);
    Py_XDECREF(ser);
    PyMem_Free(rows);
    PyMem_Free(series);
    return out;
}

static PyObject *mb_get(MonBlockObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return Py_NewRef(self->region);
    default: return Py_NewRef(self->clock);
    }
}

static PyMethodDef mb_methods[] = {
    {"record", (PyCFunction)(void (*)(void))mb_record, METH_FASTCALL,
     "record($self, component, operation, duration_ms, success, error_type, /)\n--\n\n"
     "Records one operation into the region (see resil.Monitor.record; error_type\n"
     "None counts as 'error'). Returns False when the monitor's tables had no\n"
     "room for it: it is then counted in overflow only."},
    {"record_event", (PyCFunction)(void (*)(void))mb_record_event, METH_FASTCALL,
     "record_event($self, index, kind, component, /)\n--\n\n"
     "Counts one event of kind for component; index is the kind's window (0 to\n"
     "4) or -1 for a kind without one. False as for record()."},
    {"read", (PyCFunction)mb_read, METH_O,
     "read($self, quantiles, /)\n--\n\n"
     "(uptime, overflow_records, overflow_events, interrupted, event window\n"
     "counts, "
     "components, series) at the clock's time: components are (name, requests,\n"
     "errors, duration sum ms, (p50, p95, p99) ms or None), series (kind, a, b,\n"
     "ok, sum_ms, counts) with kind 1 request (component, operation), 2 error\n"
     "(component, error_type), 3 event (kind, component)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mb_getset[] = {
    {"region", (getter)mb_get, NULL, "The region holding the monitor.", (void *)0},
    {"clock", (getter)mb_get, NULL, "The clock its windows follow.", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mb_slots[] = {
    {Py_tp_doc, "MonitorBlock(region, name, retention, slots, alert_error_rate, "
                "alert_response_ms, max_components, max_series, clock=None)\n--\n\n"
                "The C half of resil.Monitor(shared=region): the monitor's recorded data in a\n"
                "shared region. See resil.Monitor."},
    {Py_tp_new, mb_new},
    {Py_tp_dealloc, mb_dealloc},
    {Py_tp_traverse, mb_traverse},
    {Py_tp_clear, mb_clear},
    {Py_tp_methods, mb_methods},
    {Py_tp_getset, mb_getset},
    {0, NULL},
};

static PyType_Spec mb_spec = {
    .name = "resil._resil.MonitorBlock",
    .basicsize = sizeof(MonBlockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = mb_slots,
};

int resil_monblock_init_types(PyObject *module, resil_state *st) {
    (void)st;
    return resil_add_type_with_ranges(module, &mb_spec, NULL, RS_MON_FIELDS, RS_MNF_COUNT);
}
