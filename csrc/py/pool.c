/* pool.c - EjectionPool, the shared ejection budget of a BreakerGroup:
 * how many of its breakers may be open at once. */
#include "breaker.h"

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_ejection_percent", NULL};
    PyObject *pct = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:EjectionPool", kwlist, &pct)) {
        return NULL;
    }
    long long v;
    if (resil_field_int(&RS_EJECTOR_PERCENT_FIELD, pct, &v) < 0) {
        return NULL;
    }
    PoolObject *self = (PoolObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    int rc = rs_ejector_init(&self->ej, (uint32_t)v);
    if (rc != RS_OK) {
        Py_DECREF(self);
        resil_raise_status(rc, &RS_EJECTOR_PERCENT_FIELD, 1, NULL, NULL);
        return NULL;
    }
    return (PyObject *)self;
}

static void pool_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *pool_stats(PoolObject *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sIsIsIsK}", "max_ejection_percent", self->ej.max_percent, "members",
                         self->ej.members, "ejected", self->ej.ejected, "vetoed",
                         (unsigned long long)self->ej.vetoed);
}

static PyMethodDef pool_methods[] = {
    {"stats", (PyCFunction)pool_stats, METH_NOARGS,
     "stats($self, /)\n--\n\nA dict: max_ejection_percent, members, ejected and vetoed trips."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc, "EjectionPool(max_ejection_percent)\n--\n\n"
                "The shared ejection budget of a BreakerGroup (implementation detail)."},
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_methods, pool_methods},
    {0, NULL},
};

static PyType_Spec pool_spec = {
    .name = "resil._resil.EjectionPool",
    .basicsize = sizeof(PoolObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pool_slots,
};

int resil_pool_init_types(PyObject *module, resil_state *st) {
    return resil_add_type_with_ranges(module, &pool_spec, &st->EjectionPool_type,
                                      &RS_EJECTOR_PERCENT_FIELD, 1);
}
