/* fields.c - configuration arguments checked against the core's field
 * tables (rs_field): one conversion per kind of field and one error for a
 * value out of range, worded from the table's numbers, for every type. */
#include "resil_py.h"

#include <math.h>
#include <string.h>

/* A bound as a reader writes it: an int field's in full; a number's as its
 * shortest repr, with 9.2e9 rather than 9200000000 and 1e-8 rather than
 * 1e-08. */
static void fmt_bound(char *buf, size_t size, double v, int kind) {
    if (v == floor(v) && fabs(v) < 1e18) {
        PyOS_snprintf(buf, size, "%.0f", v);
        if (kind == RS_FIELD_INT) {
            return;
        }
        const char *d = buf + (buf[0] == '-');
        size_t len = strlen(d), zeros = 0;
        while (zeros + 1 < len && d[len - 1 - zeros] == '0') {
            zeros++;
        }
        if (zeros < 6) {
            return;
        }
        char digits[32];
        PyOS_snprintf(digits, sizeof digits, "%.*s", (int)(len - zeros), d);
        PyOS_snprintf(buf, size, "%s%c%s%se%d", v < 0 ? "-" : "", digits[0],
                      digits[1] ? "." : "", digits + 1, (int)len - 1);
        return;
    }
    char *r = PyOS_double_to_string(v, 'r', 0, 0, NULL);
    if (!r) {
        PyErr_Clear();
        PyOS_snprintf(buf, size, "%g", v);
        return;
    }
    /* "1e-08" -> "1e-8", "1e+20" -> "1e20" */
    char *e = strchr(r, 'e');
    if (e) {
        char *p = e + 1;
        int neg = *p == '-';
        if (*p == '-' || *p == '+') {
            p++;
        }
        while (*p == '0' && p[1]) {
            p++;
        }
        PyOS_snprintf(buf, size, "%.*se%s%s", (int)(e - r), r, neg ? "-" : "", p);
    } else {
        PyOS_snprintf(buf, size, "%s", r);
    }
    PyMem_Free(r);
}

static const char *kind_words(int kind) {
    return kind == RS_FIELD_INT ? "an int"
           : kind == RS_FIELD_SECONDS ? "a finite number of seconds" : "a finite number";
}

PyObject *resil_field_accepts(const rs_field *f) {
    char lo[48], hi[48];
    fmt_bound(lo, sizeof lo, f->lo, f->kind);
    fmt_bound(hi, sizeof hi, f->hi, f->kind);
    int open_lo = (f->open & RS_FIELD_OPEN_LO) != 0, open_hi = (f->open & RS_FIELD_OPEN_HI) != 0;
    PyObject *range;
    if (isinf(f->lo) && isinf(f->hi)) {
        range = PyUnicode_FromString(kind_words(f->kind));
    } else if (isinf(f->hi)) {
        range = PyUnicode_FromFormat("%s %s %s", kind_words(f->kind), open_lo ? ">" : ">=", lo);
    } else if (isinf(f->lo)) {
        range = PyUnicode_FromFormat("%s %s %s", kind_words(f->kind), open_hi ? "<" : "<=", hi);
    } else {
        range = PyUnicode_FromFormat("%s in %c%s, %s%c", kind_words(f->kind), open_lo ? '(' : '[',
                                     lo, hi, open_hi ? ')' : ']');
    }
    if (range && f->rule) {
        Py_SETREF(range, PyUnicode_FromFormat("%U and %s", range, f->rule));
    }
    return range;
}

/* The ValueError naming the field and what it accepts; shown is the value
 * as the message gives it, or NULL. */
static int field_error_shown(const rs_field *f, PyObject *shown) {
    PyObject *accepts = resil_field_accepts(f);
    if (!accepts) {
        return -1;
    }
    if (shown) {
        PyErr_Format(PyExc_ValueError, "%s must be %U, got %U", f->name, accepts, shown);
    } else {
        PyErr_Format(PyExc_ValueError, "%s must be %U", f->name, accepts);
    }
    Py_DECREF(accepts);
    return -1;
}

int resil_field_error(const rs_field *f, PyObject *got) {
    if (!got) {
        return field_error_shown(f, NULL);
    }
    PyObject *shown = resil_value_repr(got);
    if (!shown) {
        return -1;
    }
    field_error_shown(f, shown);
    Py_DECREF(shown);
    return -1;
}

static int wrong_type(const rs_field *f, PyObject *o) {
    const char *what = f->kind == RS_FIELD_INT ? "an int"
                       : f->kind == RS_FIELD_SECONDS ? "a number of seconds (int or float)"
                                                     : "a number";
    PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", f->name, what, Py_TYPE(o)->tp_name);
    return -1;
}

int resil_field_int(const rs_field *f, PyObject *o, long long *out) {
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        return wrong_type(f, o);
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || !rs_field_ok(f, (double)v)) {
        return resil_field_error(f, o);
    }
    *out = v;
    return 0;
}

int resil_field_double(const rs_field *f, PyObject *o, double *out) {
    if (f->kind == RS_FIELD_INT) {
        long long v;
        if (resil_field_int(f, o, &v) < 0) {
            return -1;
        }
        *out = (double)v;
        return 0;
    }
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
        return wrong_type(f, o);
    }
    double v;
    if (resil_number(o, f->name, &v) < 0) {
        return -1;
    }
    if (!rs_field_ok(f, v)) {
        return resil_field_error(f, o);
    }
    *out = v;
    return 0;
}

int resil_field_ns(const rs_field *f, PyObject *o, uint64_t *out) {
    double s;
    if (resil_field_double(f, o, &s) < 0) {
        return -1;
    }
    if (!(s >= 0.0 && s <= RS_MAX_SECONDS)) { /* a table's error: no such field */
        return resil_field_error(f, o);
    }
    *out = (uint64_t)llround(s * 1e9);
    return 0;
}

int resil_seconds_to_ns(PyObject *seconds, const char *name, uint64_t *out) {
    rs_field f = {name, RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS, 0, NULL};
    return resil_field_ns(&f, seconds, out);
}

int resil_raise_status(int rc, const rs_field *table, int n, PyObject *const *given,
                       const double *defaults) {
    if (rc == RS_ENOMEM) {
        PyErr_NoMemory();
        return -1;
    }
    int i = rc - RS_EFIELD_BASE;
    if (i < 0 || i >= n) {
        PyErr_Format(PyExc_SystemError, "resil: unexpected core status %d", rc);
        return -1;
    }
    if (given && given[i]) {
        return resil_field_error(&table[i], given[i]);
    }
    if (!defaults) {
        return field_error_shown(&table[i], NULL);
    }
    PyObject *v = table[i].kind == RS_FIELD_INT ? PyLong_FromDouble(defaults[i])
                                                : PyFloat_FromDouble(defaults[i]);
    PyObject *r = v ? PyObject_Repr(v) : NULL;
    PyObject *shown = r ? PyUnicode_FromFormat("%U (its default)", r) : NULL;
    if (shown) {
        field_error_shown(&table[i], shown);
    }
    Py_XDECREF(shown);
    Py_XDECREF(r);
    Py_XDECREF(v);
    return -1;
}

int resil_add_type_with_ranges(PyObject *module, PyType_Spec *spec, PyTypeObject **out,
                               const rs_field *table, int n) {
    PyTypeObject *tp;
    if (resil_add_type(module, spec, NULL, &tp) < 0) {
        return -1;
    }
    int rc = resil_type_add_ranges(tp, table, n);
    if (rc == 0 && out) {
        *out = tp; /* the caller keeps this reference (module state) */
        return 0;
    }
    Py_DECREF(tp);
    return rc;
}

int resil_type_add_ranges(PyTypeObject *tp, const rs_field *table, int n) {
    PyObject *d = PyDict_GetItemString(tp->tp_dict, "_ranges"); /* borrowed */
    if (d) {
        Py_INCREF(d);
    } else {
        d = PyDict_New();
        if (!d || PyDict_SetItemString(tp->tp_dict, "_ranges", d) < 0) {
            Py_XDECREF(d);
            return -1;
        }
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const rs_field *f = &table[i];
        PyObject *accepts = resil_field_accepts(f);
        PyObject *lo = f->kind == RS_FIELD_INT && !isinf(f->lo) ? PyLong_FromDouble(f->lo)
                                                                : PyFloat_FromDouble(f->lo);
        PyObject *hi = f->kind == RS_FIELD_INT && !isinf(f->hi) ? PyLong_FromDouble(f->hi)
                                                                : PyFloat_FromDouble(f->hi);
        PyObject *entry = accepts && lo && hi
                              ? Py_BuildValue("{sssOsOsOsOsN}", "kind",
                                              f->kind == RS_FIELD_INT ? "int"
                                              : f->kind == RS_FIELD_SECONDS ? "seconds" : "number",
                                              "lo", lo, "hi", hi, "lo_open",
                                              (f->open & RS_FIELD_OPEN_LO) ? Py_True : Py_False,
                                              "hi_open",
                                              (f->open & RS_FIELD_OPEN_HI) ? Py_True : Py_False,
                                              "accepts", Py_NewRef(accepts))
                              : NULL;
        if (!entry || PyDict_SetItemString(d, f->name, entry) < 0) {
            rc = -1;
        }
        Py_XDECREF(entry);
        Py_XDECREF(accepts);
        Py_XDECREF(lo);
        Py_XDECREF(hi);
    }
    Py_DECREF(d);
    PyType_Modified(tp);
    return rc;
}
