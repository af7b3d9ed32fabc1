/* slot.c - the permits of the types that count calls in flight against a
 * limit (BulkheadCore, AdaptiveCore): try_acquire hands one out holding a
 * slot, release takes it back once. One implementation, one Python type per
 * owner, so a permit says whose it is. */
#include "resil_py.h"

static int permit_traverse(resil_slot_permit *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->owner);
    return 0;
}

static int permit_clear(resil_slot_permit *self) {
    Py_CLEAR(self->owner);
    return 0;
}

static void permit_dealloc(resil_slot_permit *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    permit_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *permit_released(resil_slot_permit *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->released);
}

static PyGetSetDef permit_getset[] = {
    {"released", (getter)permit_released, NULL, "True once the slot was given back.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

resil_slot_permit *resil_slot_permit_new(PyTypeObject *tp) {
    return (resil_slot_permit *)tp->tp_alloc(tp, 0);
}

int resil_slot_permit_check(PyObject *permit, PyTypeObject *tp, PyObject *owner,
                            const char *owner_kind) {
    if (!Py_IS_TYPE(permit, tp)) {
        PyErr_Format(PyExc_TypeError, "permit must be a permit from try_acquire(), not %.100s",
                     Py_TYPE(permit)->tp_name);
        return -1;
    }
    resil_slot_permit *p = (resil_slot_permit *)permit;
    if (p->owner != owner) {
        PyErr_Format(PyExc_ValueError, "permit was taken from another %s", owner_kind);
        return -1;
    }
    if (p->released) {
        PyErr_SetString(PyExc_ValueError, "permit was already released");
        return -1;
    }
    return 0;
}

#define PERMIT_SLOTS(doc)                                                                 \
    {                                                                                     \
        {Py_tp_doc, doc}, {Py_tp_traverse, permit_traverse}, {Py_tp_clear, permit_clear}, \
            {Py_tp_dealloc, permit_dealloc}, {Py_tp_getset, permit_getset}, {0, NULL},    \
    }

static PyType_Slot bulkhead_permit_slots[] =
    PERMIT_SLOTS("A bulkhead slot taken with try_acquire(); give it back once with\n"
                 "release(permit).");
static PyType_Slot limiter_permit_slots[] =
    PERMIT_SLOTS("A slot of an adaptive limiter taken with try_acquire(); give it back once\n"
                 "with release(permit, latency=None, dropped=False).");

#define PERMIT_SPEC(tname, table)                                                        \
    {                                                                                    \
        .name = tname, .basicsize = sizeof(resil_slot_permit),                           \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC |    \
                 Py_TPFLAGS_DISALLOW_INSTANTIATION,                                      \
        .slots = table,                                                                  \
    }

static PyType_Spec bulkhead_permit_spec = PERMIT_SPEC("resil.BulkheadPermit", bulkhead_permit_slots);
static PyType_Spec limiter_permit_spec = PERMIT_SPEC("resil.LimiterPermit", limiter_permit_slots);

int resil_slot_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &bulkhead_permit_spec, NULL, &st->BulkheadPermit_type) < 0) {
        return -1;
    }
    return resil_add_type(module, &limiter_permit_spec, NULL, &st->LimiterPermit_type);
}
