/* util.c - small helpers shared by the binding's types. */
#include "resil_py.h"

#include <math.h>

int resil_add_type(PyObject *module, PyType_Spec *spec, PyObject *base, PyTypeObject **out) {
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, base);
    if (!tp) {
        return -1;
    }
    if (PyModule_AddType(module, tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    if (out) {
        *out = tp; /* the caller keeps this reference (module state) */
    } else {
        Py_DECREF(tp);
    }
    return 0;
}

PyObject *resil_value_repr(PyObject *o) {
    if (PyLong_Check(o) && !PyBool_Check(o)) {
        int overflow = 0;
        (void)PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            /* Digits past a few dozen tell a reader nothing, and past 4300
             * int.__repr__ refuses them: give the size instead. */
            PyObject *bits = PyObject_CallMethod(o, "bit_length", NULL);
            long n = bits ? PyLong_AsLong(bits) : -1;
            Py_XDECREF(bits);
            if (n > 128) {
                return PyUnicode_FromFormat("%s int of %ld bits", overflow < 0 ? "a negative" : "an",
                                            n);
            }
            PyErr_Clear();
        }
    }
    PyObject *r = PyObject_Repr(o);
    if (!r) {
        PyErr_Clear();
        r = PyUnicode_FromFormat("<%.100s object>", Py_TYPE(o)->tp_name);
    }
    return r;
}

int resil_bad_value(const char *name, const char *accepts, PyObject *got) {
    if (!got) {
        PyErr_Format(PyExc_ValueError, "%s must be %s", name, accepts);
        return -1;
    }
    PyObject *r = resil_value_repr(got);
    if (r) {
        PyErr_Format(PyExc_ValueError, "%s must be %s, got %U", name, accepts, r);
        Py_DECREF(r);
    }
    return -1;
}

int resil_number(PyObject *o, const char *name, double *out) {
    if (RS_LIKELY(PyFloat_CheckExact(o))) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(o);
    if (*out == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        /* Past a double's range: an infinity of the int's sign, which the
         * caller's range check rejects with its own message. */
        int overflow = 0;
        (void)PyLong_AsLongLongAndOverflow(o, &overflow);
        *out = overflow < 0 ? -Py_HUGE_VAL : Py_HUGE_VAL;
    }
    return 0;
}

int resil_name_arg(PyObject **name) {
    if (!*name) {
        *name = PyUnicode_FromString("default");
        return *name ? 0 : -1;
    }
    if (!PyUnicode_Check(*name)) {
        PyErr_Format(PyExc_TypeError, "name must be a non-empty str, not %.100s",
                     Py_TYPE(*name)->tp_name);
        return -1;
    }
    if (PyUnicode_GET_LENGTH(*name) == 0) {
        PyErr_SetString(PyExc_ValueError, "name must be a non-empty str, got ''");
        return -1;
    }
    Py_INCREF(*name);
    return 0;
}

int resil_finite(PyObject *o, const char *name, double *out) {
    if (resil_number(o, name, out) < 0) {
        return -1;
    }
    if (RS_UNLIKELY(!isfinite(*out))) {
        return resil_bad_value(name, "a finite number", o);
    }
    return 0;
}

int resil_pack_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int always_dict,
                    PyObject **pos, PyObject **kw) {
    *kw = NULL;
    *pos = PyTuple_New(nargs);
    if (!*pos) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(*pos, i, Py_NewRef(args[i]));
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nkw || always_dict) {
        *kw = PyDict_New();
        if (!*kw) {
            Py_CLEAR(*pos);
            return -1;
        }
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(*kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_CLEAR(*pos);
                Py_CLEAR(*kw);
                return -1;
            }
        }
    }
    return 0;
}

PyObject *resil_bind_method(PyObject *self, PyObject *obj, PyObject *type) {
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}
