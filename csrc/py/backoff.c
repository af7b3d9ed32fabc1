/* backoff.c - resil.Backoff, a thin type over rs_backoff: the delay before
 * each retry attempt, with jitter. */
#include "retry.h"

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

/* The jitter mode named by o, one of rs_jitter_name(0..RS_JITTER_COUNT-1):
 * TypeError for a non-str, ValueError for another name, each listing them. */
static int jitter_arg(PyObject *o, int *mode) {
    char accepts[96] = "one of ";
    for (int i = 0; i < RS_JITTER_COUNT; i++) {
        size_t used = strlen(accepts);
        PyOS_snprintf(accepts + used, sizeof accepts - used, "%s'%s'", i ? ", " : "",
                      rs_jitter_name(i));
    }
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "jitter must be a str, %s, not %.100s", accepts,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    for (int i = 0; i < RS_JITTER_COUNT; i++) {
        if (PyUnicode_CompareWithASCIIString(o, rs_jitter_name(i)) == 0) {
            *mode = i;
            return 0;
        }
    }
    return resil_bad_value("jitter", accepts, o);
}

static PyObject *backoff_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"base", "multiplier", "max_delay", "jitter", "seed", NULL};
    PyObject *base_o = NULL, *mult_o = NULL, *max_o = NULL, *jitter_o = NULL, *seed_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOO:Backoff", kwlist, &base_o, &mult_o,
                                     &max_o, &jitter_o, &seed_o)) {
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
    int mode = RS_JITTER_NONE;
    if (jitter_o && jitter_arg(jitter_o, &mode) < 0) {
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
     "delay($self, /, attempt, prev=None)\n--\n\nReturns a float. "
     "Seconds to wait before retry number `attempt` (0 is the first retry), jittered.\n"
     "`prev` is the previous delay, for decorrelated jitter."},
    {"raw", (PyCFunction)backoff_raw, METH_O,
     "raw($self, attempt, /)\n--\n\n"
     "Returns a float. The un-jittered delay: base * multiplier**min(attempt, 63), capped."},
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
    {Py_tp_doc, "Backoff(base=1.0, multiplier=2.0, *, max_delay=30.0, jitter='none', seed=None)\n--\n\n"
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

int resil_backoff_init_types(PyObject *module, resil_state *st) {
    return resil_add_type(module, &backoff_spec, NULL, &st->Backoff_type) < 0 ||
                   resil_type_add_ranges(st->Backoff_type, RS_BACKOFF_FIELDS, RS_BOF_JITTER) < 0
               ? -1 : 0;
}
