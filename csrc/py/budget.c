/* budget.c - resil.RetryBudget, a thin type over rs_budget: the share of
 * requests that may be retried, shared by every caller. */
#include "retry.h"

static PyObject *budget_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ratio", "min_per_second", "window", "clock", NULL};
    PyObject *ratio_o = NULL, *mps_o = NULL, *window_o = NULL, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOO:RetryBudget", kwlist, &ratio_o, &mps_o,
                                     &window_o, &clock)) {
        return NULL;
    }
    resil_state *st = get_state_by_type(type);
    if (!st) {
        return NULL;
    }
    const rs_field *fields = RS_BUDGET_FIELDS;
    double ratio = 0.2, mps = 3.0;
    uint64_t window_ns = 10 * RS_NS_PER_SEC;
    if ((ratio_o && resil_field_double(&fields[RS_BGF_RATIO], ratio_o, &ratio) < 0) ||
        (mps_o && resil_field_double(&fields[RS_BGF_MIN_PER_SECOND], mps_o, &mps) < 0) ||
        (window_o && resil_field_ns(&fields[RS_BGF_WINDOW], window_o, &window_ns) < 0)) {
        return NULL;
    }
    int kind = resil_clock_resolve(st, &clock);
    uint64_t now;
    if (kind < 0 || resil_clock_read(kind, clock, &now) < 0) {
        return NULL;
    }
    rs_budget core;
    int rc = rs_budget_init(&core, ratio, mps, window_ns, now);
    if (rc != RS_OK) {
        PyObject *given[RS_BGF_COUNT] = {ratio_o, mps_o, window_o};
        resil_raise_status(rc, fields, RS_BGF_COUNT, given, NULL);
        return NULL;
    }
    BudgetObject *self = (BudgetObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->core = core;
    self->clock = Py_NewRef(clock);
    self->clock_kind = kind;
    return (PyObject *)self;
}

static int budget_traverse(BudgetObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->clock);
    return 0;
}

static void budget_dealloc(BudgetObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->clock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *budget_request(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_budget_request(&self->core, now);
    Py_RETURN_NONE;
}

static PyObject *budget_try_retry(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    return PyBool_FromLong(rs_budget_try_retry(&self->core, now));
}

static PyObject *budget_stats(BudgetObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t now, req, ret, last;
    if (resil_clock_read(self->clock_kind, self->clock, &now) < 0) {
        return NULL;
    }
    rs_budget_counts(&self->core, now, &req, &ret, &last);
    return Py_BuildValue("{sKsKsKsKsKsKsdsdsd}", "requests", (unsigned long long)req, "retries",
                         (unsigned long long)ret, "retries_last_second", (unsigned long long)last,
                         "total_requests", (unsigned long long)self->core.requests,
                         "total_retries", (unsigned long long)self->core.retries, "rejected",
                         (unsigned long long)self->core.rejected, "ratio", self->core.ratio,
                         "min_per_second", self->core.min_per_second, "window",
                         (double)(self->core.window.width_ns * RS_WINDOW_BUCKETS) / 1e9);
}

static PyMethodDef budget_methods[] = {
    {"record_request", (PyCFunction)budget_request, METH_NOARGS,
     "record_request($self, /)\n--\n\nCounts a first attempt."},
    {"try_retry", (PyCFunction)budget_try_retry, METH_NOARGS,
     "try_retry($self, /)\n--\n\nTrue, and counts the retry, when the budget allows one."},
    {"stats", (PyCFunction)budget_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The budget's counts, JSON-serialisable: requests and retries (counted in the\n"
     "window now), retries_last_second, total_requests and total_retries (since\n"
     "creation), rejected (retries the budget refused since creation), and the\n"
     "settings ratio, min_per_second and window (seconds)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot budget_slots[] = {
    {Py_tp_doc, "RetryBudget(ratio=0.2, *, min_per_second=3.0, window=10.0, clock=None)\n--\n\n"
                "A retry budget shared by many calls: a retry is allowed while\n"
                "(retries + 1) <= ratio * requests over `window` seconds, or while fewer than\n"
                "`min_per_second` retries happened in the last second. ratio is in [0, 10]\n"
                "(at most ten retries per request), min_per_second finite and >= 0, window\n"
                "seconds in [1e-08, 9.2e9]."},
    {Py_tp_new, budget_new},
    {Py_tp_traverse, budget_traverse},
    {Py_tp_dealloc, budget_dealloc},
    {Py_tp_methods, budget_methods},
    {0, NULL},
};

static PyType_Spec budget_spec = {
    .name = "resil.RetryBudget",
    .basicsize = sizeof(BudgetObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = budget_slots,
};

int resil_budget_init_types(PyObject *module, resil_state *st) {
    return resil_add_type(module, &budget_spec, NULL, &st->RetryBudget_type) < 0 ||
                   resil_type_add_ranges(st->RetryBudget_type, RS_BUDGET_FIELDS, RS_BGF_COUNT) < 0
               ? -1 : 0;
}
