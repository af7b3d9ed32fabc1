/* bulkhead.c - the engine of resil.Bulkhead: admission decisions and
 * counters over rs_bulkhead, and the permits try_acquire hands out.
 *
 * The waiting side (a FIFO line of asyncio futures and blocked threads) is
 * Python, in resil/policies/bulkhead.py. Each method here is one step of
 * the core, taken whole under the GIL with no Python code between the
 * check and the change, and answers what the Python side must do next
 * (wait in line, hand a slot to the first waiter); this type never calls
 * back into Python. */
#include "resil_py.h"

#include "../core/rs_bulkhead.h"

typedef struct {
    PyObject_HEAD
    rs_bulkhead core;
    PyTypeObject *permit_type; /* borrowed: the module state keeps it */
} BulkheadObject;

static PyObject *bulkhead_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_concurrent", "max_queue", NULL};
    PyObject *given[RS_BHF_COUNT] = {NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$O:BulkheadCore", kwlist,
                                     &given[RS_BHF_MAX_CONCURRENT], &given[RS_BHF_MAX_QUEUE])) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    long long values[RS_BHF_COUNT] = {10, 0};
    for (int i = 0; i < RS_BHF_COUNT; i++) {
        if (given[i] && resil_field_int(&RS_BULKHEAD_FIELDS[i], given[i], &values[i]) < 0) {
            return NULL;
        }
    }
    rs_bulkhead core;
    int rc = rs_bulkhead_init(&core, values[RS_BHF_MAX_CONCURRENT], values[RS_BHF_MAX_QUEUE]);
    if (rc != RS_OK) {
        const double defaults[RS_BHF_COUNT] = {10.0, 0.0};
        resil_raise_status(rc, RS_BULKHEAD_FIELDS, RS_BHF_COUNT, given, defaults);
        return NULL;
    }
    BulkheadObject *self = (BulkheadObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->core = core;
    self->permit_type = st->BulkheadPermit_type;
    return (PyObject *)self;
}

static int bulkhead_traverse(BulkheadObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void bulkhead_dealloc(BulkheadObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *bulkhead_try_enter(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(rs_bulkhead_try_enter(&self->core));
}

static PyObject *bulkhead_acquire(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLong((long)rs_bulkhead_acquire(&self->core));
}

static PyObject *bulkhead_try_acquire(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    /* The permit is made first: a MemoryError then takes no slot. */
    resil_slot_permit *permit = resil_slot_permit_new(self->permit_type);
    if (!permit) {
        return NULL;
    }
    if (!rs_bulkhead_try_acquire(&self->core)) {
        Py_DECREF(permit);
        Py_RETURN_NONE;
    }
    permit->owner = Py_NewRef((PyObject *)self);
    return (PyObject *)permit;
}

/* Gives back a slot (hand_off as rs_bulkhead_release); ValueError when no
 * slot is taken. */
static PyObject *give_back(BulkheadObject *self, int hand_off) {
    int r = rs_bulkhead_release(&self->core, hand_off);
    if (r < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "release without a slot taken: every slot is already free");
        return NULL;
    }
    return PyLong_FromLong(r);
}

static PyObject *bulkhead_exit(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    return give_back(self, 0);
}

static PyObject *bulkhead_hand_off(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    return give_back(self, 1);
}

static PyObject *bulkhead_release(BulkheadObject *self, PyObject *permit_o) {
    if (resil_slot_permit_check(permit_o, self->permit_type, (PyObject *)self, "bulkhead") < 0) {
        return NULL;
    }
    /* Every slot is free only when a slot was given back without its
     * permit (an __exit__ with no __enter__): refused, the permit kept. */
    PyObject *r = give_back(self, 0);
    if (r) {
        ((resil_slot_permit *)permit_o)->released = 1;
    }
    return r;
}

static PyObject *bulkhead_start(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (rs_bulkhead_start(&self->core) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "start() without a slot handed to a waiter");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *bulkhead_decline(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    int r = rs_bulkhead_decline(&self->core);
    if (r < 0) {
        PyErr_SetString(PyExc_ValueError, "decline() without a slot handed to a waiter");
        return NULL;
    }
    return PyLong_FromLong(r);
}

static PyObject *bulkhead_leave(BulkheadObject *self, PyObject *timed_out) {
    int flag = PyObject_IsTrue(timed_out);
    if (flag < 0) {
        return NULL;
    }
    if (rs_bulkhead_leave(&self->core, flag) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "leave() with nobody waiting");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *bulkhead_stats(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    const rs_bulkhead *b = &self->core;
    return Py_BuildValue("{sIsIsIsKsKsKsI}", "max_concurrent", b->max_concurrent, "active",
                         b->active, "queued", b->queued, "admitted",
                         (unsigned long long)b->admitted, "rejected",
                         (unsigned long long)b->rejected, "timed_out",
                         (unsigned long long)b->timed_out, "peak_active", b->peak_active);
}

static PyObject *bulkhead_get(BulkheadObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return PyLong_FromUnsignedLong(self->core.max_concurrent);
    case 1: return PyLong_FromUnsignedLong(self->core.max_queue);
    case 2: return PyLong_FromUnsignedLong(self->core.active);
    case 3: return PyLong_FromUnsignedLong(self->core.queued);
    default: return PyLong_FromUnsignedLong(self->core.handed);
    }
}

static PyMethodDef bulkhead_methods[] = {
    {"try_enter", (PyCFunction)bulkhead_try_enter, METH_NOARGS,
     "try_enter($self, /)\n--\n\n"
     "Takes a slot when one is free and nobody waits (True, counted admitted);\n"
     "else False, and nothing is counted."},
    {"acquire", (PyCFunction)bulkhead_acquire, METH_NOARGS,
     "acquire($self, /)\n--\n\n"
     "One caller that may wait: 0 admitted (a slot is taken), 1 queued (the caller\n"
     "joins the end of the line), 2 full (counted rejected)."},
    {"try_acquire", (PyCFunction)bulkhead_try_acquire, METH_NOARGS,
     "try_acquire($self, /)\n--\n\n"
     "A permit holding a slot, or None (counted rejected) when no slot is free or\n"
     "callers wait for one."},
    {"release", (PyCFunction)bulkhead_release, METH_O,
     "release($self, permit, /)\n--\n\n"
     "Gives back the slot of a permit from try_acquire: 0 freed, 2 waiters wait\n"
     "(the slot is still taken: hand_off() gives it to the first). ValueError for\n"
     "a permit released before or from another bulkhead, or when every slot is free\n"
     "(one was given back without its permit); the permit is then kept."},
    {"exit", (PyCFunction)bulkhead_exit, METH_NOARGS,
     "exit($self, /)\n--\n\n"
     "Gives back a slot taken without a permit, as release does. ValueError when no\n"
     "slot is taken."},
    {"hand_off", (PyCFunction)bulkhead_hand_off, METH_NOARGS,
     "hand_off($self, /)\n--\n\n"
     "Gives back a taken slot: 1 when it is handed to the first waiter, who leaves\n"
     "the line, 0 when it is freed (nobody waits)."},
    {"start", (PyCFunction)bulkhead_start, METH_NOARGS,
     "start($self, /)\n--\n\n"
     "A woken waiter starts on the slot handed to it (counted admitted)."},
    {"decline", (PyCFunction)bulkhead_decline, METH_NOARGS,
     "decline($self, /)\n--\n\n"
     "A woken waiter that was cancelled gives its handed slot back: 1 handed on to\n"
     "the next waiter, 0 freed."},
    {"leave", (PyCFunction)bulkhead_leave, METH_O,
     "leave($self, timed_out, /)\n--\n\n"
     "A waiter leaves the line without a slot; counted timed_out when timed_out is\n"
     "true (a cancelled waiter is not counted)."},
    {"stats", (PyCFunction)bulkhead_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "max_concurrent, active (slots taken), queued (callers waiting), admitted,\n"
     "rejected, timed_out and peak_active (the most slots taken at once)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef bulkhead_getset[] = {
    {"max_concurrent", (getter)bulkhead_get, NULL, "The most calls that run at once.",
     (void *)0},
    {"max_queue", (getter)bulkhead_get, NULL, "The most callers that wait for a slot.",
     (void *)1},
    {"active", (getter)bulkhead_get, NULL, "Slots taken now.", (void *)2},
    {"queued", (getter)bulkhead_get, NULL, "Callers waiting in line now.", (void *)3},
    {"handed", (getter)bulkhead_get, NULL,
     "Slots handed to woken waiters that have not started yet.", (void *)4},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot bulkhead_slots[] = {
    {Py_tp_doc, "BulkheadCore(max_concurrent=10, *, max_queue=0)\n--\n\n"
                "The engine of resil.Bulkhead (implementation detail): its counters and\n"
                "admission decisions. max_concurrent is an int in [1, 2**30], max_queue an\n"
                "int in [0, 2**30]."},
    {Py_tp_new, bulkhead_new},
    {Py_tp_traverse, bulkhead_traverse},
    {Py_tp_dealloc, bulkhead_dealloc},
    {Py_tp_methods, bulkhead_methods},
    {Py_tp_getset, bulkhead_getset},
    {0, NULL},
};

static PyType_Spec bulkhead_spec = {
    .name = "resil._resil.BulkheadCore",
    .basicsize = sizeof(BulkheadObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = bulkhead_slots,
};

int resil_bulkhead_init_types(PyObject *module, resil_state *st) {
    return resil_add_type_with_ranges(module, &bulkhead_spec, &st->Bulkhead_type,
                                      RS_BULKHEAD_FIELDS, RS_BHF_COUNT);
}
