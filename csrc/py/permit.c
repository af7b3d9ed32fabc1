/* permit.c - Permit, a permit to make one call, taken by acquire() and
 * reported once (record_success, record_failure, release); and
 * PermitStack, where the permits of `with breaker:` blocks are kept. */
#include "breaker.h"

static int permit_traverse(PermitObject *p, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(p));
    Py_VISIT(p->breaker);
    return 0;
}

static int permit_clear(PermitObject *p) {
    Py_CLEAR(p->breaker);
    return 0;
}

static void permit_dealloc(PermitObject *p) {
    PyTypeObject *tp = Py_TYPE(p);
    PyObject_GC_UnTrack(p);
    if (!p->done && p->breaker) {
        /* dropped unreported: given back, so a probe is not lost (its
         * transitions are reported at the breaker's next operation) */
        p->done = 1;
        BreakerObject *b = (BreakerObject *)p->breaker;
        give_back_later(b, &p->permit, b->core.now_ns);
    }
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
                "record_failure or release. One dropped unreported is released."},
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

/* ---- PermitStack --------------------------------------------------------
 * The value of the context variable that keeps the permits of `with
 * breaker:` blocks, innermost last, as plain entries (a block makes no
 * Permit object). It belongs to the context that set it:
 * there, entering and leaving a block push and pop in place, with no new
 * context variable value each time. A context that finds a stack it does
 * not own (copied from the context that set it, as a task's is) sets one of
 * its own before changing anything, so contexts never see each other's
 * blocks. */

static int stack_traverse(PermitStackObject *s, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->owner);
    for (Py_ssize_t i = 0; i < s->len; i++) {
        Py_VISIT(s->entries[i].breaker);
    }
    return 0;
}

static int stack_clear(PermitStackObject *s) {
    Py_CLEAR(s->owner);
    while (s->len > 0) {
        s->len--;
        Py_CLEAR(s->entries[s->len].breaker);
    }
    return 0;
}

static void stack_dealloc(PermitStackObject *s) {
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    stack_clear(s);
    PyMem_Free(s->entries);
    PyObject_GC_Del(s);
    Py_DECREF(tp);
}

int permit_stack_reserve(PermitStackObject *s) {
    if (RS_LIKELY(s->len < s->cap)) {
        return 0;
    }
    Py_ssize_t cap = s->cap ? s->cap * 2 : 4;
    with_entry *grown = (size_t)cap <= PY_SSIZE_T_MAX / sizeof *grown
                            ? PyMem_Realloc(s->entries, (size_t)cap * sizeof *grown) : NULL;
    if (!grown) {
        PyErr_NoMemory();
        return -1;
    }
    s->entries = grown;
    s->cap = cap;
    return 0;
}

static PyType_Slot stack_slots[] = {
    {Py_tp_doc, "The `with breaker:` permits of one context, innermost last."},
    {Py_tp_traverse, stack_traverse},
    {Py_tp_clear, stack_clear},
    {Py_tp_dealloc, stack_dealloc},
    {0, NULL},
};

static PyType_Spec stack_spec = {
    .name = "resil._resil.PermitStack",
    .basicsize = sizeof(PermitStackObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = stack_slots,
};

/* The context running now (borrowed), or NULL before any context exists. */
static inline PyObject *current_context(void) { return PyThreadState_Get()->context; }

PermitStackObject *permit_stack(resil_state *st, int create) {
    PyObject *v = NULL;
    if (PyContextVar_Get(st->permit_var, NULL, &v) < 0) {
        return NULL;
    }
    PyObject *ctx = current_context();
    if (v && ((PermitStackObject *)v)->owner == ctx) {
        Py_DECREF(v);
        return (PermitStackObject *)v; /* borrowed: the context holds it */
    }
    Py_XDECREF(v);
    if (!create) {
        return NULL;
    }
    PermitStackObject *s = PyObject_GC_New(PermitStackObject, st->PermitStack_type);
    if (!s) {
        return NULL;
    }
    s->owner = NULL;
    s->entries = NULL;
    s->len = s->cap = 0;
    PyObject_GC_Track(s);
    PyObject *token = PyContextVar_Set(st->permit_var, (PyObject *)s);
    if (token) {
        Py_DECREF(token);
        s->owner = Py_XNewRef(current_context()); /* setting made one if there was none */
    }
    Py_DECREF(s);
    return token ? s : NULL;
}

int resil_permit_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &permit_spec, NULL, &st->Permit_type) < 0) {
        return -1;
    }
    st->PermitStack_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &stack_spec, NULL);
    return st->PermitStack_type ? 0 : -1;
}
