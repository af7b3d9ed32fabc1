/* interval.c - resil.AdaptiveInterval over rs_interval. */
#include "resil_py.h"

#include "../core/rs_interval.h"

typedef struct {
    PyObject_HEAD
    rs_interval core;
} IntervalObject;

static PyObject *interval_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"base", "min", "max", "threshold", "speedup", "slowdown", NULL};
    PyObject *o[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|OO:AdaptiveInterval", kwlist, &o[0], &o[1],
                                     &o[2], &o[3], &o[4], &o[5])) {
        return NULL;
    }
    /* The fields are in constructor order. */
    double v[RS_IVF_COUNT] = {0, 0, 0, 0, 0.8, 1.2};
    for (int i = 0; i < RS_IVF_COUNT; i++) {
        if (o[i] && resil_field_double(&RS_INTERVAL_FIELDS[i], o[i], &v[i]) < 0) {
            return NULL;
        }
    }
    rs_interval core;
    int rc = rs_interval_init(&core, v[0], v[1], v[2], v[3], v[4], v[5]);
    if (rc != RS_OK) {
        resil_raise_status(rc, RS_INTERVAL_FIELDS, RS_IVF_COUNT, o, v);
        return NULL;
    }
    IntervalObject *self = (IntervalObject *)type->tp_alloc(type, 0);
    if (self) {
        self->core = core;
    }
    return (PyObject *)self;
}

static void interval_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *interval_update(IntervalObject *self, PyObject *activity) {
    double a;
    if (resil_finite(activity, "activity", &a) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(rs_interval_update(&self->core, a));
}

static PyObject *interval_reset(IntervalObject *self, PyObject *Py_UNUSED(ignored)) {
    rs_interval_reset(&self->core);
    Py_RETURN_NONE;
}

static PyObject *interval_stats(IntervalObject *self, PyObject *Py_UNUSED(ignored)) {
    const rs_interval *c = &self->core;
    return Py_BuildValue("{sdsKsdsdsdsdsdsd}", "interval", c->interval, "updates",
                         (unsigned long long)c->updates, "base", c->base, "min", c->min, "max",
                         c->max, "threshold", c->threshold, "speedup", c->speedup, "slowdown",
                         c->slowdown);
}

static PyObject *interval_get(IntervalObject *self, void *closure) {
    const rs_interval *c = &self->core;
    switch ((int)(intptr_t)closure) {
    case 0: return PyFloat_FromDouble(c->interval);
    case 1: return PyFloat_FromDouble(c->base);
    case 2: return PyFloat_FromDouble(c->min);
    case 3: return PyFloat_FromDouble(c->max);
    case 4: return PyFloat_FromDouble(c->threshold);
    case 5: return PyFloat_FromDouble(c->speedup);
    case 6: return PyFloat_FromDouble(c->slowdown);
    default: return PyLong_FromUnsignedLongLong(c->updates);
    }
}

static PyObject *interval_repr(IntervalObject *self) {
    PyObject *f = PyFloat_FromDouble(self->core.interval);
    if (!f) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<AdaptiveInterval interval=%R>", f);
    Py_DECREF(f);
    return r;
}

static PyMethodDef interval_methods[] = {
    {"update", (PyCFunction)interval_update, METH_O,
     "update($self, activity, /)\n--\n\n"
     "Returns a float. One step: activity (a finite number; NaN and the infinities\n"
     "raise ValueError) > threshold multiplies the interval by speedup, otherwise by\n"
     "slowdown, clamped to [min, max]; returns the new interval."},
    {"reset", (PyCFunction)interval_reset, METH_NOARGS, "reset($self, /)\n--\n\nBack to base."},
    {"stats", (PyCFunction)interval_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The rule's state, JSON-serialisable: interval (the current one, seconds),\n"
     "updates (steps applied since creation or reset), and the settings base, min,\n"
     "max (seconds), threshold, speedup and slowdown."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef interval_getset[] = {
    {"interval", (getter)interval_get, NULL, "The current interval, seconds.", (void *)0},
    {"base", (getter)interval_get, NULL, NULL, (void *)1},
    {"min", (getter)interval_get, NULL, NULL, (void *)2},
    {"max", (getter)interval_get, NULL, NULL, (void *)3},
    {"threshold", (getter)interval_get, NULL, NULL, (void *)4},
    {"speedup", (getter)interval_get, NULL, NULL, (void *)5},
    {"slowdown", (getter)interval_get, NULL, NULL, (void *)6},
    {"updates", (getter)interval_get, NULL, "Steps applied since creation or reset.", (void *)7},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot interval_slots[] = {
    {Py_tp_doc, "AdaptiveInterval(base, min, max, threshold, speedup=0.8, slowdown=1.2)\n--\n\n"
                "The adaptive interval rule in C: after each run, activity above threshold\n"
                "speeds up (interval * speedup), otherwise it slows down (interval * slowdown),\n"
                "clamped to [min, max]. Seconds; 0 < min <= base <= max, 0 < speedup <= 1 <=\n"
                "slowdown."},
    {Py_tp_new, interval_new},
    {Py_tp_dealloc, interval_dealloc},
    {Py_tp_repr, interval_repr},
    {Py_tp_methods, interval_methods},
    {Py_tp_getset, interval_getset},
    {0, NULL},
};

static PyType_Spec interval_spec = {
    .name = "resil.AdaptiveInterval",
    .basicsize = sizeof(IntervalObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = interval_slots,
};

/* TIMESCALES: {name: (base, min, max, threshold)} from the core's presets,
 * so resil.TimeScale takes its values from the one table. */
static int add_timescales(PyObject *module) {
    PyObject *d = PyDict_New();
    if (!d) {
        return -1;
    }
    size_t n = sizeof RS_TIMESCALES / sizeof RS_TIMESCALES[0];
    for (size_t i = 0; i < n; i++) {
        const rs_timescale *t = &RS_TIMESCALES[i];
        PyObject *v = Py_BuildValue("(dddd)", t->base, t->min, t->max, t->threshold);
        if (!v || PyDict_SetItemString(d, t->name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return -1;
        }
        Py_DECREF(v);
    }
    int rc = PyModule_AddObjectRef(module, "TIMESCALES", d);
    Py_DECREF(d);
    return rc;
}

int resil_interval_init_types(PyObject *module, resil_state *st) {
    (void)st;
    if (add_timescales(module) < 0) {
        return -1;
    }
    return resil_add_type_with_ranges(module, &interval_spec, NULL, RS_INTERVAL_FIELDS, RS_IVF_COUNT);
}
