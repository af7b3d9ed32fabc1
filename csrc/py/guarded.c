/* guarded.c - Guarded, what @breaker returns: a vectorcall wrapper of a
 * function or coroutine function that calls it through the breaker. */
#include "breaker.h"

#include <structmember.h>

/* ---- Guarded ----------------------------------------------------------- */

static PyObject *guarded_call_sync(GuardedObject *g, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    BreakerObject *b = g->breaker;
    rs_permit p;
    uint64_t t0;
    if (take_permit(b, &p, &t0) < 0) {
        return NULL;
    }
    PyObject *res = call_guarded(g->fn, args, nargsf, kwnames);
    return end_call(b, &p, t0, res);
}

/* True when the breaker rejected at its last known time. Only a hint: it
 * reads no clock, and the awaitable's first send decides for real. */
static inline int likely_rejecting(const rs_breaker *b) {
    if (RS_LIKELY(b->state <= RS_STATE_DEGRADED)) {
        return 0;
    }
    switch (b->state) {
    case RS_STATE_FORCED_OPEN:
        return 1;
    case RS_STATE_OPEN:
        return b->now_ns - b->opened_at_ns < b->cooldown_cur_ns;
    case RS_STATE_HALF_OPEN:
        return b->probes_granted >= b->cfg.half_open_probes;
    default:
        return 0;
    }
}

static PyObject *guarded_call_async(GuardedObject *g, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    if (RS_UNLIKELY(likely_rejecting(&g->breaker->core))) {
        /* Keep the arguments instead of creating a coroutine that would only
         * be closed: the first send takes the permit and calls fn if admitted. */
        PyObject *pos, *kw;
        if (resil_pack_call(args, PyVectorcall_NARGS(nargsf), kwnames, 0, &pos, &kw) < 0) {
            return NULL;
        }
        PyObject *a = make_awaitable(g->breaker, NULL, Py_NewRef(g->fn), pos, kw);
        if (!a) {
            Py_DECREF(g->fn);
            Py_DECREF(pos);
            Py_XDECREF(kw);
        }
        return a;
    }
    PyObject *coro = call_guarded(g->fn, args, nargsf, kwnames);
    if (!coro) {
        return NULL;
    }
    PyObject *a = make_awaitable(g->breaker, coro, NULL, NULL, NULL);
    if (!a) {
        Py_DECREF(coro);
    }
    return a;
}

static PyObject *guarded_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"breaker", "fn", "is_async", NULL};
    PyObject *breaker, *fn;
    int is_async = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|p:Guarded", kwlist, &breaker, &fn, &is_async)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    if (!PyObject_TypeCheck(breaker, st->Breaker_type)) {
        PyErr_SetString(PyExc_TypeError, "Guarded needs a CircuitBreaker");
        return NULL;
    }
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "cannot guard a non-callable %.100s", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    GuardedObject *g = (GuardedObject *)type->tp_alloc(type, 0);
    if (!g) {
        return NULL;
    }
    g->breaker = (BreakerObject *)Py_NewRef(breaker);
    g->fn = Py_NewRef(fn);
    g->is_async = is_async;
    g->vectorcall = is_async ? (vectorcallfunc)guarded_call_async : (vectorcallfunc)guarded_call_sync;
    return (PyObject *)g;
}

static int guarded_traverse(GuardedObject *g, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(g));
    Py_VISIT(g->breaker);
    Py_VISIT(g->fn);
    Py_VISIT(g->dict);
    return 0;
}

static int guarded_clear(GuardedObject *g) {
    Py_CLEAR(g->breaker);
    Py_CLEAR(g->fn);
    Py_CLEAR(g->dict);
    return 0;
}

static void guarded_dealloc(GuardedObject *g) {
    PyTypeObject *tp = Py_TYPE(g);
    PyObject_GC_UnTrack(g);
    if (g->weakreflist) {
        PyObject_ClearWeakRefs((PyObject *)g);
    }
    guarded_clear(g);
    tp->tp_free((PyObject *)g);
    Py_DECREF(tp);
}

static PyObject *guarded_repr(GuardedObject *g) {
    if (!g->breaker) {
        return PyUnicode_FromString("<resil guarded function>");
    }
    return PyUnicode_FromFormat("<resil guarded %R of breaker %R>", g->fn, g->breaker->name);
}

static PyObject *guarded_get_breaker(GuardedObject *g, void *Py_UNUSED(closure)) {
    return Py_NewRef((PyObject *)g->breaker);
}

static PyMemberDef guarded_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(GuardedObject, vectorcall), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(GuardedObject, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(GuardedObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef guarded_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"breaker", (getter)guarded_get_breaker, NULL, "The breaker guarding this function.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot guarded_slots[] = {
    {Py_tp_doc, "Guarded(breaker, fn, is_async=False)\n--\n\n"
                "A function or coroutine function guarded by a circuit breaker."},
    {Py_tp_new, guarded_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, guarded_traverse},
    {Py_tp_clear, guarded_clear},
    {Py_tp_dealloc, guarded_dealloc},
    {Py_tp_descr_get, resil_bind_method},
    {Py_tp_repr, guarded_repr},
    {Py_tp_members, guarded_members},
    {Py_tp_getset, guarded_getset},
    {0, NULL},
};

static PyType_Spec guarded_spec = {
    .name = "resil._resil.Guarded",
    .basicsize = sizeof(GuardedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = guarded_slots,
};

int resil_guarded_init_types(PyObject *module, resil_state *st) {
    return resil_add_type(module, &guarded_spec, NULL, &st->Guarded_type);
}
