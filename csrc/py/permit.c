/* permit.c - Permit, a permit to make one call, taken by acquire() or
 * `with breaker:` and reported once (record_success, record_failure,
 * release). */
#include "breaker.h"

static int permit_traverse(PermitObject *p, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(p));
    Py_VISIT(p->breaker);
    Py_VISIT(p->prev);
    return 0;
}

static int permit_clear(PermitObject *p) {
    Py_CLEAR(p->breaker);
    Py_CLEAR(p->prev);
    return 0;
}

static void permit_dealloc(PermitObject *p) {
    PyTypeObject *tp = Py_TYPE(p);
    PyObject_GC_UnTrack(p);
    permit_clear(p);
    PyObject_GC_Del(p);
    Py_DECREF(tp);
}

static PyObject *permit_get_epoch(PermitObject *p, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(p->permit.epoch);
}
static PyObject *permit_get_probe(PermitObject *p, void *Py_UNUSED(c)) {
    return PyBool_FromLong(p->permit.kind == RS_PERMIT_PROBE);
}
static PyObject *permit_get_done(PermitObject *p, void *Py_UNUSED(c)) {
    return PyBool_FromLong(p->done);
}
static PyObject *permit_get_breaker(PermitObject *p, void *Py_UNUSED(c)) {
    return Py_NewRef(p->breaker ? p->breaker : Py_None);
}

static PyObject *permit_repr(PermitObject *p) {
    return PyUnicode_FromFormat("<Permit epoch=%llu%s%s>", (unsigned long long)p->permit.epoch,
                                p->permit.kind == RS_PERMIT_PROBE ? " probe" : "",
                                p->done ? " done" : "");
}

static PyGetSetDef permit_getset[] = {
    {"epoch", (getter)permit_get_epoch, NULL, "The breaker epoch the permit was granted in.", NULL},
    {"probe", (getter)permit_get_probe, NULL, "True for a half-open probe permit.", NULL},
    {"done", (getter)permit_get_done, NULL, "True once the outcome was reported.", NULL},
    {"breaker", (getter)permit_get_breaker, NULL, "The breaker that granted it.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot permit_slots[] = {
    {Py_tp_doc, "A permit to make one call; report it once with record_success,\n"
                "record_failure or release."},
    {Py_tp_traverse, permit_traverse},
    {Py_tp_clear, permit_clear},
    {Py_tp_dealloc, permit_dealloc},
    {Py_tp_repr, permit_repr},
    {Py_tp_getset, permit_getset},
    {0, NULL},
};

static PyType_Spec permit_spec = {
    .name = "resil.Permit",
    .basicsize = sizeof(PermitObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = permit_slots,
};

int resil_permit_init_types(PyObject *module, resil_state *st) {
    return resil_add_type(module, &permit_spec, NULL, &st->Permit_type);
}
