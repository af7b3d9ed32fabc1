/* module.c - resil._resil: module definition, exec slot and module state.
 *
 * resil._resil is an implementation detail; the public API is the resil
 * package, which re-exports what users need. */
#include "resil_py.h"
#include "retry.h"

static void *raw_alloc(size_t n) { return PyMem_RawMalloc(n); }
static void raw_free(void *p) { PyMem_RawFree(p); }

/* State's str() and format() give the member's name ("OPEN"), as a log line
 * or an f-string wants it; the int value stays the metric encoding. IntEnum
 * alone prints the number on 3.11+ and "State.OPEN" on 3.10. */
static PyObject *state_str(PyObject *Py_UNUSED(unused), PyObject *self) {
    return PyObject_GetAttrString(self, "name");
}

static PyObject *state_format(PyObject *Py_UNUSED(unused), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "__format__() takes exactly one argument (format_spec)");
        return NULL;
    }
    PyObject *name = PyObject_GetAttrString(args[0], "name");
    if (!name) {
        return NULL;
    }
    PyObject *out = PyObject_Format(name, args[1]);
    Py_DECREF(name);
    return out;
}

static PyMethodDef state_str_def = {"__str__", state_str, METH_O, "The member's name."};
static PyMethodDef state_format_def = {"__format__", (PyCFunction)(void (*)(void))state_format,
                                       METH_FASTCALL, "The member's name, formatted."};

/* Binds a module-level C function as a method of the State class. */
static int set_state_method(PyObject *cls, PyMethodDef *def) {
    PyObject *fn = PyCFunction_New(def, NULL);
    if (!fn) {
        return -1;
    }
    PyObject *method = PyInstanceMethod_New(fn);
    Py_DECREF(fn);
    if (!method) {
        return -1;
    }
    int rc = PyObject_SetAttrString(cls, def->ml_name, method);
    Py_DECREF(method);
    return rc;
}

static int make_state_enum(PyObject *module, resil_state *st) {
    PyObject *enum_mod = PyImport_ImportModule("enum");
    if (!enum_mod) {
        return -1;
    }
    PyObject *members = PyList_New(0);
    PyObject *kwargs = NULL;
    int rc = -1;
    if (!members) {
        goto done;
    }
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        PyObject *pair = Py_BuildValue("(si)", rs_state_name(i), i);
        if (!pair || PyList_Append(members, pair) < 0) {
            Py_XDECREF(pair);
            goto done;
        }
        Py_DECREF(pair);
    }
    kwargs = Py_BuildValue("{ss}", "module", "resil");
    if (!kwargs) {
        goto done;
    }
    PyObject *intenum = PyObject_GetAttrString(enum_mod, "IntEnum");
    if (!intenum) {
        goto done;
    }
    PyObject *args = Py_BuildValue("(sO)", "State", members);
    if (!args) {
        Py_DECREF(intenum);
        goto done;
    }
    st->State = PyObject_Call(intenum, args, kwargs);
    Py_DECREF(args);
    Py_DECREF(intenum);
    if (!st->State) {
        goto done;
    }
    PyObject *doc = PyUnicode_FromString("Circuit breaker states; the values are the metric encoding.");
    if (!doc || PyObject_SetAttrString(st->State, "__doc__", doc) < 0) {
        Py_XDECREF(doc);
        goto done;
    }
    Py_DECREF(doc);
    if (set_state_method(st->State, &state_str_def) < 0 ||
        set_state_method(st->State, &state_format_def) < 0) {
        goto done;
    }
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        PyObject *idx = PyLong_FromLong(i);
        if (!idx) {
            goto done;
        }
        st->states[i] = PyObject_CallOneArg(st->State, idx);
        Py_DECREF(idx);
        if (!st->states[i]) {
            goto done;
        }
    }
    if (PyModule_AddObjectRef(module, "State", st->State) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(kwargs);
    Py_XDECREF(members);
    Py_DECREF(enum_mod);
    return rc;
}

static int make_cancel_types(resil_state *st) {
    PyObject *mod = PyImport_ImportModule("asyncio");
    if (!mod) {
        return -1;
    }
    PyObject *cancelled = PyObject_GetAttrString(mod, "CancelledError");
    Py_DECREF(mod);
    if (!cancelled) {
        return -1;
    }
    st->cancel_types = PyTuple_Pack(4, cancelled, PyExc_KeyboardInterrupt, PyExc_SystemExit,
                                    PyExc_GeneratorExit);
    Py_DECREF(cancelled);
    return st->cancel_types ? 0 : -1;
}

static int resil_exec(PyObject *module) {
    resil_state *st = get_state(module);
    rs_set_allocator(raw_alloc, raw_free);

    if (resil_errors_init_types(module, st) < 0) {
        return -1;
    }
    st->str_now = PyUnicode_InternFromString("now");
    if (!st->str_now) {
        return -1;
    }
    for (int i = 0; i < RS_REASON_COUNT; i++) {
        st->reasons[i] = PyUnicode_InternFromString(rs_reason_name(i));
        if (!st->reasons[i]) {
            return -1;
        }
    }
    st->permit_var = PyContextVar_New("resil._permits", NULL);
    if (!st->permit_var) {
        return -1;
    }
    if (make_state_enum(module, st) < 0 || make_cancel_types(st) < 0) {
        return -1;
    }
    if (resil_clock_init_types(module, st) < 0 || resil_breaker_init_types(module, st) < 0 ||
        resil_permit_init_types(module, st) < 0 || resil_guarded_init_types(module, st) < 0 ||
        resil_awaitable_init_types(module, st) < 0 || resil_pool_init_types(module, st) < 0 ||
        resil_backoff_init_types(module, st) < 0 || resil_budget_init_types(module, st) < 0 ||
        resil_retry_init_types(module, st) < 0 || resil_dedup_init_types(module, st) < 0 ||
        resil_queue_init_types(module, st) < 0 || resil_interval_init_types(module, st) < 0 ||
        resil_rate_init_types(module, st) < 0 || resil_counter_init_types(module, st) < 0 ||
        resil_hist_init_types(module, st) < 0 || resil_slot_init_types(module, st) < 0 ||
        resil_bulkhead_init_types(module, st) < 0 || resil_adaptive_init_types(module, st) < 0 ||
        resil_ratelimit_init_types(module, st) < 0 || resil_region_init_types(module, st) < 0 ||
        resil_monblock_init_types(module, st) < 0 || resil_expo_init(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int resil_traverse(PyObject *module, visitproc visit, void *arg) {
    resil_state *st = get_state(module);
    Py_VISIT(st->MonotonicClock_type);
    Py_VISIT(st->VirtualClock_type);
    Py_VISIT(st->Breaker_type);
    Py_VISIT(st->Permit_type);
    Py_VISIT(st->Guarded_type);
    Py_VISIT(st->Awaitable_type);
    Py_VISIT(st->PermitStack_type);
    Py_VISIT(st->EjectionPool_type);
    Py_VISIT(st->Backoff_type);
    Py_VISIT(st->RetryBudget_type);
    Py_VISIT(st->RetryCall_type);
    Py_VISIT(st->Retrying_type);
    Py_VISIT(st->RateCounter_type);
    Py_VISIT(st->RateLimiter_type);
    Py_VISIT(st->Histogram_type);
    Py_VISIT(st->WindowedHistogram_type);
    Py_VISIT(st->Bulkhead_type);
    Py_VISIT(st->BulkheadPermit_type);
    Py_VISIT(st->Adaptive_type);
    Py_VISIT(st->LimiterPermit_type);
    Py_VISIT(st->Region_type);
    Py_VISIT(st->RegionError);
    Py_VISIT(st->ResilError);
    Py_VISIT(st->CircuitOpenError);
    Py_VISIT(st->QueueFull);
    Py_VISIT(st->QueueEmpty);
    Py_VISIT(st->State);
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        Py_VISIT(st->states[i]);
    }
    Py_VISIT(st->cancel_types);
    Py_VISIT(st->permit_var);
    Py_VISIT(st->finished_none);
    Py_VISIT(st->finished_false);
    Py_VISIT(st->ratelimit_waiters[0]);
    Py_VISIT(st->ratelimit_waiters[1]);
    Py_VISIT(st->dedup_cluster);
    Py_VISIT(st->default_clock);
    Py_VISIT(st->stop_iteration);
    for (int i = 0; i < st->aw_nfree; i++) {
        Py_VISIT(Py_TYPE((PyObject *)st->aw_free[i])); /* each kept awaitable's reference */
    }
    return 0;
}

static int resil_clear(PyObject *module) {
    resil_state *st = get_state(module);
    while (st->aw_nfree > 0) {
        PyObject *kept = st->aw_free[--st->aw_nfree];
        PyTypeObject *tp = Py_TYPE(kept);
        PyObject_GC_Del(kept);
        Py_DECREF(tp);
    }
    Py_CLEAR(st->MonotonicClock_type);
    Py_CLEAR(st->VirtualClock_type);
    Py_CLEAR(st->Breaker_type);
    Py_CLEAR(st->Permit_type);
    Py_CLEAR(st->Guarded_type);
    Py_CLEAR(st->Awaitable_type);
    Py_CLEAR(st->PermitStack_type);
    Py_CLEAR(st->EjectionPool_type);
    Py_CLEAR(st->Backoff_type);
    Py_CLEAR(st->RetryBudget_type);
    Py_CLEAR(st->RetryCall_type);
    Py_CLEAR(st->Retrying_type);
    Py_CLEAR(st->RateCounter_type);
    Py_CLEAR(st->RateLimiter_type);
    Py_CLEAR(st->Histogram_type);
    Py_CLEAR(st->WindowedHistogram_type);
    Py_CLEAR(st->Bulkhead_type);
    Py_CLEAR(st->BulkheadPermit_type);
    Py_CLEAR(st->Adaptive_type);
    Py_CLEAR(st->LimiterPermit_type);
    Py_CLEAR(st->Region_type);
    Py_CLEAR(st->RegionError);
    Py_CLEAR(st->ResilError);
    Py_CLEAR(st->CircuitOpenError);
    Py_CLEAR(st->QueueFull);
    Py_CLEAR(st->QueueEmpty);
    Py_CLEAR(st->State);
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        Py_CLEAR(st->states[i]);
    }
    for (int i = 0; i < RS_REASON_COUNT; i++) {
        Py_CLEAR(st->reasons[i]);
    }
    Py_CLEAR(st->cancel_types);
    Py_CLEAR(st->permit_var);
    Py_CLEAR(st->finished_none);
    Py_CLEAR(st->finished_false);
    Py_CLEAR(st->ratelimit_waiters[0]);
    Py_CLEAR(st->ratelimit_waiters[1]);
    Py_CLEAR(st->dedup_cluster);
    Py_CLEAR(st->str_now);
    Py_CLEAR(st->default_clock);
    Py_CLEAR(st->stop_iteration);
    return 0;
}

static void resil_free(void *module) { resil_clear((PyObject *)module); }

static PyModuleDef_Slot resil_slots[] = {
    {Py_mod_exec, resil_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

struct PyModuleDef resil_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "resil._resil",
    .m_doc = "The C engine of resil (implementation detail; import resil instead).",
    .m_size = sizeof(resil_state),
    .m_slots = resil_slots,
    .m_traverse = resil_traverse,
    .m_clear = resil_clear,
    .m_free = resil_free,
};

PyMODINIT_FUNC PyInit__resil(void) { return PyModuleDef_Init(&resil_module); }
