/* retry.h - the layouts of Backoff and RetryBudget, which the retry engine
 * (retry.c) reads directly, and the registration of their types. */
#ifndef RESIL_RETRY_H
#define RESIL_RETRY_H

#include "resil_py.h"

#include "../core/rs_backoff.h"
#include "../core/rs_budget.h"

typedef struct {
    PyObject_HEAD
    rs_backoff core;
    uint64_t seed;
} BackoffObject;

typedef struct {
    PyObject_HEAD
    rs_budget core;
    PyObject *clock;
    int clock_kind;
} BudgetObject;

int resil_backoff_init_types(PyObject *module, resil_state *st);
int resil_budget_init_types(PyObject *module, resil_state *st);

#endif /* RESIL_RETRY_H */
