/* errors.c - ResilError, the base of every error resil raises on its own
 * account, and CircuitOpenError, raised when a circuit breaker rejects a
 * call (with .name, .state, .remaining). */
#include "breaker.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

typedef struct {
    PyBaseExceptionObject base;
    PyObject *name;
    PyObject *state;
    PyObject *remaining;
} OpenErrorObject;

/* ---- ResilError and CircuitOpenError ------------------------------------
 * Both are C heap types with a known layout (a Python-level base would add a
 * __weakref__ slot where CircuitOpenError keeps its fields). */

static traverseproc base_exc_traverse(void) {
    return ((PyTypeObject *)PyExc_BaseException)->tp_traverse;
}

static inquiry base_exc_clear(void) { return ((PyTypeObject *)PyExc_BaseException)->tp_clear; }

static int resilerr_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return base_exc_traverse()(self, visit, arg);
}

static void resilerr_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    base_exc_clear()(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot resilerr_slots[] = {
    {Py_tp_doc, "ResilError(message='', /)\n--\n\n"
                "Base class of every error resil raises on its own account; made from its\n"
                "message, like Exception."},
    {Py_tp_traverse, resilerr_traverse},
    {Py_tp_dealloc, resilerr_dealloc},
    {0, NULL},
};

static PyType_Spec resilerr_spec = {
    .name = "resil.ResilError",
    .basicsize = sizeof(PyBaseExceptionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = resilerr_slots,
};

PyObject *make_open_error(BreakerObject *b, int state_id, uint64_t remaining_ns) {
    PyTypeObject *tp = (PyTypeObject *)b->st->CircuitOpenError;
    PyObject *state = b->st->states[state_id];
    PyObject *rem = remaining_ns == UINT64_MAX ? Py_NewRef(Py_None)
                                                : PyFloat_FromDouble((double)remaining_ns / 1e9);
    if (!rem) {
        return NULL;
    }
    /* Made as BaseException.__new__ would, without its argument handling:
     * args stay the shared empty tuple, since the fields are members and
     * __reduce__ / __repr__ / __str__ (the message, made only when asked
     * for) use them. */
    OpenErrorObject *e = PyObject_GC_New(OpenErrorObject, tp);
    if (!e) {
        Py_DECREF(rem);
        return NULL;
    }
    memset((char *)e + sizeof(PyObject), 0, sizeof *e - sizeof(PyObject));
    e->base.args = PyTuple_New(0);
    if (!e->base.args) {
        e->remaining = rem;
        PyObject_GC_Track(e);
        Py_DECREF(e);
        return NULL;
    }
    e->name = Py_NewRef(b->name);
    e->state = Py_NewRef(state);
    e->remaining = rem;
    PyObject_GC_Track(e);
    return (PyObject *)e;
}

static int openerr_init(OpenErrorObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "state", "remaining", NULL};
    PyObject *name = Py_None, *state = Py_None, *remaining = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:CircuitOpenError", kwlist, &name, &state,
                                     &remaining)) {
        return -1;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a str or None, not %.100s", Py_TYPE(name)->tp_name);
        return -1;
    }
    resil_state *st = get_state_by_type(Py_TYPE(self));
    if (!st) {
        return -1;
    }
    if (state != Py_None) {
        if (!PyLong_Check(state) || PyBool_Check(state)) {
            PyErr_Format(PyExc_TypeError, "state must be a resil.State, an int in [0, %d] or None, "
                         "not %.100s", RS_STATE_COUNT - 1, Py_TYPE(state)->tp_name);
            return -1;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(state, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow || v < 0 || v >= RS_STATE_COUNT) {
            char accepts[64];
            PyOS_snprintf(accepts, sizeof accepts, "a resil.State or an int in [0, %d]",
                          RS_STATE_COUNT - 1);
            return resil_bad_value("state", accepts, state);
        }
        state = st->states[v];
    }
    PyObject *rem = Py_NewRef(Py_None);
    if (remaining != Py_None) {
        double r;
        if (resil_number(remaining, "remaining", &r) < 0) {
            Py_DECREF(rem);
            return -1;
        }
        if (!(r >= 0.0 && isfinite(r))) {
            Py_DECREF(rem);
            return resil_bad_value("remaining", "a finite number of seconds >= 0 or None", remaining);
        }
        Py_SETREF(rem, PyFloat_FromDouble(r));
        if (!rem) {
            return -1;
        }
    }
    Py_XSETREF(self->base.args, PyTuple_New(0));
    if (!self->base.args) {
        Py_DECREF(rem);
        return -1;
    }
    Py_XSETREF(self->name, Py_NewRef(name));
    Py_XSETREF(self->state, Py_NewRef(state));
    Py_XSETREF(self->remaining, rem);
    return 0;
}

static int openerr_traverse(OpenErrorObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->state);
    Py_VISIT(self->remaining);
    return base_exc_traverse()((PyObject *)self, visit, arg);
}

static int openerr_clear(OpenErrorObject *self) {
    Py_CLEAR(self->name);
    Py_CLEAR(self->state);
    Py_CLEAR(self->remaining);
    return base_exc_clear()((PyObject *)self);
}

static void openerr_dealloc(OpenErrorObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    openerr_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *openerr_str(OpenErrorObject *self) {
    PyObject *name = self->name ? self->name : Py_None;
    PyObject *state = self->state ? self->state : Py_None;
    PyObject *sname = PyObject_GetAttrString(state, "name");
    if (!sname) {
        PyErr_Clear();
        sname = PyObject_Str(state);
        if (!sname) {
            return NULL;
        }
    }
    PyObject *r;
    if (self->remaining && PyFloat_Check(self->remaining)) {
        char buf[64];
        PyOS_snprintf(buf, sizeof buf, "%.3f", PyFloat_AS_DOUBLE(self->remaining));
        r = PyUnicode_FromFormat("circuit %R is %U; half-open in %ss", name, sname, buf);
    } else {
        r = PyUnicode_FromFormat("circuit %R is %U; calls are rejected", name, sname);
    }
    Py_DECREF(sname);
    return r;
}

static PyObject *openerr_reduce(OpenErrorObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *dict = self->base.dict;
    return Py_BuildValue(dict && PyDict_GET_SIZE(dict) ? "O(OOO)O" : "O(OOO)", Py_TYPE(self),
                         self->name ? self->name : Py_None, self->state ? self->state : Py_None,
                         self->remaining ? self->remaining : Py_None, dict);
}

static PyObject *openerr_repr(OpenErrorObject *self) {
    const char *name = strrchr(Py_TYPE(self)->tp_name, '.');
    name = name ? name + 1 : Py_TYPE(self)->tp_name;
    return PyUnicode_FromFormat("%s(%R, %R, %R)", name,
                                self->name ? self->name : Py_None,
                                self->state ? self->state : Py_None,
                                self->remaining ? self->remaining : Py_None);
}

static PyMethodDef openerr_methods[] = {
    {"__reduce__", (PyCFunction)openerr_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\n"
     "Pickles the error with its name, state and remaining (and its attributes)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef openerr_members[] = {
    {"name", T_OBJECT, offsetof(OpenErrorObject, name), READONLY, "The breaker's name."},
    {"state", T_OBJECT, offsetof(OpenErrorObject, state), READONLY, "The breaker's state (resil.State)."},
    {"remaining", T_OBJECT, offsetof(OpenErrorObject, remaining), READONLY,
     "Seconds until HALF_OPEN (0.0 when half-open and out of probes), None when forced open."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot openerr_slots[] = {
    {Py_tp_doc, "CircuitOpenError(name=None, state=None, remaining=None)\n--\n\n"
                "Raised when a circuit breaker rejects a call. name is the breaker's name (a\n"
                "str); state a resil.State (an int in [0, 5] is converted); remaining the\n"
                "seconds until HALF_OPEN (a finite number >= 0, kept as a float), or None when\n"
                "forced open."},
    {Py_tp_init, openerr_init},
    {Py_tp_traverse, openerr_traverse},
    {Py_tp_clear, openerr_clear},
    {Py_tp_dealloc, openerr_dealloc},
    {Py_tp_str, openerr_str},
    {Py_tp_repr, openerr_repr},
    {Py_tp_methods, openerr_methods},
    {Py_tp_members, openerr_members},
    {0, NULL},
};

static PyType_Spec openerr_spec = {
    .name = "resil.CircuitOpenError",
    .basicsize = sizeof(OpenErrorObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = openerr_slots,
};

int resil_errors_init_types(PyObject *module, resil_state *st) {
    st->ResilError = PyType_FromModuleAndSpec(module, &resilerr_spec, PyExc_Exception);
    if (!st->ResilError || PyModule_AddObjectRef(module, "ResilError", st->ResilError) < 0) {
        return -1;
    }
    PyTypeObject *openerr;
    if (resil_add_type(module, &openerr_spec, st->ResilError, &openerr) < 0) {
        return -1;
    }
    st->CircuitOpenError = (PyObject *)openerr;
    return 0;
}
