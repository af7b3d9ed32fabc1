/* util.c - small helpers shared by the binding's types. */
#include "resil_py.h"

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

int resil_number(PyObject *o, const char *name, double *out) {
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
        *out = Py_HUGE_VAL; /* rejected by the caller's range check, with its message */
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
