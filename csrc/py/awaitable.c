/* awaitable.c - GuardedAwaitable, the awaitable of a guarded coroutine call
 * or of call_async(): it takes its permit when first resumed and records
 * the outcome when the coroutine finishes. */
#include "breaker.h"

/* ---- exception helpers ------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030C0000
/* From 3.12 the interpreter awaits an object that is not a native coroutine
 * through tp_iternext, so each result that is not None leaves as a
 * StopIteration, which the interpreter reads the value of and drops at
 * once. Making and freeing one costs about a thousand instructions per
 * awaited call, so the module keeps the last one made and raises it again
 * while nothing else holds it: no reference but the module's, its args its
 * own 1-tuple, and no traceback, context, cause, notes, attributes or
 * suppressed context (an exception someone caught and still holds is never
 * reused; a new one is made and kept instead). It is raised as a new one
 * is, so it gets the same context. It carries only the result of an
 * awaitable its caller holds the last reference to (aw_reuse_state), so
 * its value (and context) are the result's until that awaitable is freed,
 * right after the await: then, held by the module alone, it drops the
 * value, the context and any traceback; held by someone else too (caught
 * by hand from an awaitable already gone), the module lets go of it, so it
 * is freed with its value when they drop it (stop_iteration_release). A
 * Finished awaitable is never freed: while an exception is being handled
 * it makes a new one and keeps none, or the module would keep that
 * exception alive (an `async with` body's error, its traceback and its
 * frames' locals). Whatever was held is dropped only once the exception is
 * whole again, and a new value is in place and raised before the old one
 * is dropped: dropping runs any __del__, which may await guarded calls
 * itself. The GIL makes each check and what follows one step: the module
 * declares it needs the GIL. */
static int stop_iteration_alone(PyObject *e) {
    PyBaseExceptionObject *b = (PyBaseExceptionObject *)e;
    return Py_REFCNT(e) == 1 && b->args && PyTuple_CheckExact(b->args) &&
           PyTuple_GET_SIZE(b->args) == 1 && Py_REFCNT(b->args) == 1 && !b->cause &&
           !b->notes && !b->dict && !b->suppress_context;
}

static int stop_iteration_reusable(PyObject *e) {
    PyBaseExceptionObject *b = (PyBaseExceptionObject *)e;
    return stop_iteration_alone(e) && !b->traceback && !b->context;
}

/* Puts value in the kept StopIteration (both where it is read: value and
 * args[0]) and hands back the two references to the old value, for the
 * caller to drop once the exception is whole and in use. */
static void stop_iteration_swap(PyObject *e, PyObject *value, PyObject **old_value,
                                PyObject **old_arg) {
    PyStopIterationObject *si = (PyStopIterationObject *)e;
    PyObject *args = ((PyBaseExceptionObject *)e)->args;
    *old_value = si->value;
    *old_arg = PyTuple_GET_ITEM(args, 0);
    si->value = Py_NewRef(value);
    PyTuple_SET_ITEM(args, 0, Py_NewRef(value));
}

/* Called as an awaitable is freed: the kept StopIteration, when nothing
 * else holds it, lets go of the result it carried and of where it was
 * raised; held elsewhere too, it is no longer the module's. */
static void stop_iteration_release(resil_state *st) {
    PyObject *e = st->stop_iteration;
    if (!e) {
        return;
    }
    if (!stop_iteration_alone(e)) {
        Py_CLEAR(st->stop_iteration);
        return;
    }
    PyBaseExceptionObject *b = (PyBaseExceptionObject *)e;
    PyObject *tb = b->traceback, *context = b->context, *old_value = NULL, *old_arg = NULL;
    b->traceback = NULL;
    b->context = NULL;
    if (((PyStopIterationObject *)e)->value != Py_None) {
        stop_iteration_swap(e, Py_None, &old_value, &old_arg);
    }
    Py_XDECREF(tb);
    Py_XDECREF(context);
    Py_XDECREF(old_value);
    Py_XDECREF(old_arg);
}
#else
static inline void stop_iteration_release(resil_state *st) { (void)st; }
#endif

/* Raises StopIteration(value), the end of a send() or of tp_iternext. st:
 * the module's state (NULL: make a new exception). freed: the caller is an
 * awaitable whose freeing releases the kept exception, so it may carry the
 * context of an exception being handled until then; a Finished awaitable
 * is never freed, so while an exception is handled it makes a new one. */
static void set_stop_iteration(resil_state *st, PyObject *value, int freed) {
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    int handled = 0;
    if (st) {
        PyObject *exc = PyErr_GetHandledException();
        if (RS_UNLIKELY(exc != NULL)) {
            Py_DECREF(exc);
            handled = 1;
            if (!freed) {
                st = NULL; /* a new one, not kept: see above */
            }
        }
    }
    PyObject *kept = st ? st->stop_iteration : NULL;
    if (kept && stop_iteration_reusable(kept)) {
        PyObject *old_value, *old_arg;
        stop_iteration_swap(kept, value, &old_value, &old_arg);
        if (RS_LIKELY(!handled)) {
            PyErr_SetRaisedException(Py_NewRef(kept)); /* no context to give it */
        } else {
            PyErr_SetObject(PyExc_StopIteration, kept);
        }
        Py_XDECREF(old_value);
        Py_XDECREF(old_arg);
        return;
    }
#else
    (void)freed;
#endif
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (!e) {
        return;
    }
    PyErr_SetObject(PyExc_StopIteration, e);
#if PY_VERSION_HEX >= 0x030C0000
    if (st) {
        Py_XSETREF(st->stop_iteration, e); /* may run a __del__: e is raised already */
        return;
    }
#else
    (void)st;
#endif
    Py_DECREF(e);
}

/* Takes a pending StopIteration and returns its value (new reference). */
static PyObject *fetch_stop_value(void) {
    PyObject *exc = fetch_exc();
    if (!exc) {
        return Py_NewRef(Py_None);
    }
    PyObject *v = PyObject_GetAttrString(exc, "value");
    Py_DECREF(exc);
    return v;
}

/* Raises what gen.throw(typ, val, tb) would raise in a finished generator. */
static void raise_thrown(PyObject *const *args, Py_ssize_t nargs) {
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val);
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
    }
}

/* ---- making one ------------------------------------------------------- */

PyObject *make_awaitable(BreakerObject *b, PyObject *coro, PyObject *fn, PyObject *args,
                         PyObject *kwargs) {
    resil_state *st = b->st;
    AwaitObject *a;
    if (RS_LIKELY(st->aw_nfree > 0)) {
        /* A kept object still holds its type's reference (see aw_dealloc). */
        a = (AwaitObject *)st->aw_free[--st->aw_nfree];
        _Py_NewReference((PyObject *)a);
    } else {
        a = PyObject_GC_New(AwaitObject, st->Awaitable_type);
        if (!a) {
            return NULL;
        }
        a->finalized = 0;
    }
    a->breaker = (BreakerObject *)Py_NewRef((PyObject *)b);
    a->iter = coro;
    a->fn = fn;
    a->args = args;
    a->kwargs = kwargs;
    a->phase = 0;
    a->held = 0;
    a->t0 = 0;
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

/* The iterator to delegate to for an awaitable: a coroutine itself, else
 * what its __await__ returns. New reference; NULL with an exception. */
static PyObject *await_iter(PyObject *res, const char *who) {
    if (PyCoro_CheckExact(res)) {
        return Py_NewRef(res);
    }
    PyAsyncMethods *am = Py_TYPE(res)->tp_as_async;
    if (!am || !am->am_await) {
        PyErr_Format(PyExc_TypeError, "%s needs a function returning an awaitable, got %.100s", who,
                     Py_TYPE(res)->tp_name);
        return NULL;
    }
    return am->am_await(res);
}

/* Wraps a coroutine that a guarded call returned, with the permit already
 * taken for that call: the outcome is recorded when the coroutine finishes
 * (latency from its first resumption), and the permit is given back if it is
 * closed or dropped unawaited. Steals coro. */
PyObject *guard_coroutine(BreakerObject *b, const rs_permit *p, PyObject *coro) {
    PyObject *iter = await_iter(coro, "call()");
    Py_DECREF(coro);
    PyObject *a = iter ? make_awaitable(b, iter, NULL, NULL, NULL) : NULL;
    if (!a) {
        Py_XDECREF(iter);
        give_back(b, p, breaker_now_end(b));
        drain(b);
        return NULL;
    }
    ((AwaitObject *)a)->permit = *p;
    ((AwaitObject *)a)->held = 1;
    return a;
}

/* call() of a coroutine function: exactly call_async(fn, ...). */
PyObject *defer_call(BreakerObject *b, PyObject *fn, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *pos, *kw;
    if (resil_pack_call(args, nargs, kwnames, 0, &pos, &kw) < 0) {
        return NULL;
    }
    PyObject *a = make_awaitable(b, NULL, Py_NewRef(fn), pos, kw);
    if (!a) {
        Py_DECREF(fn);
        Py_DECREF(pos);
        Py_XDECREF(kw);
    }
    return a;
}

/* ---- GuardedAwaitable -------------------------------------------------- */

/* Closes the coroutine of an awaitable that never ran it, keeping any
 * pending exception; a close() error is reported as unraisable. */
static void aw_close_quietly(AwaitObject *a) {
    Py_CLEAR(a->fn);
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwargs);
    if (a->iter) {
        PyObject *saved = PyErr_Occurred() ? fetch_exc() : NULL;
        PyObject *r = PyObject_CallMethod(a->iter, "close", NULL);
        if (!r) {
            PyErr_WriteUnraisable(a->iter);
        }
        Py_XDECREF(r);
        Py_CLEAR(a->iter);
        restore_exc(saved);
    }
}

/* Gives back the permit an unstarted awaitable holds (see guard_coroutine). */
static void aw_give_back(AwaitObject *a) {
    if (a->held) {
        a->held = 0;
        give_back(a->breaker, &a->permit, breaker_now_end(a->breaker));
        drain(a->breaker);
    }
}

/* Takes the permit (unless held already) and, for call_async, makes the
 * awaitable. */
static int aw_start(AwaitObject *a) {
    BreakerObject *b = a->breaker;
    /* Executing from here: the clock, a listener or fn may be Python code
     * that reaches this awaitable again, and must find it busy. */
    a->phase = 3;
    if (a->held) {
        if (breaker_now(b, &a->t0) < 0) {
            PyObject *err = fetch_exc();
            a->phase = 2;
            aw_give_back(a);
            aw_close_quietly(a);
            restore_exc(err);
            return -1;
        }
        a->held = 0;
        return 0;
    }
    if (take_permit(b, &a->permit, &a->t0) < 0) {
        a->phase = 2;
        aw_close_quietly(a); /* the guarded coroutine never runs */
        return -1;
    }
    if (a->fn) {
        PyObject *res = PyObject_Call(a->fn, a->args, a->kwargs);
        Py_CLEAR(a->fn);
        Py_CLEAR(a->args);
        Py_CLEAR(a->kwargs);
        if (!res) {
            a->phase = 2;
            finish_call_any(b, &a->permit, a->t0, NULL);
            return -1;
        }
        if (!PyCoro_CheckExact(res) &&
            !(Py_TYPE(res)->tp_as_async && Py_TYPE(res)->tp_as_async->am_await)) {
            PyErr_Format(PyExc_TypeError,
                         "call_async() needs a function returning an awaitable, got %.100s",
                         Py_TYPE(res)->tp_name);
            Py_DECREF(res);
            a->phase = 2;
            give_back(b, &a->permit, a->t0);
            drain(b);
            return -1;
        }
        a->iter = await_iter(res, "call_async()");
        Py_DECREF(res);
        if (!a->iter) {
            a->phase = 2;
            finish_call_any(b, &a->permit, a->t0, NULL);
            return -1;
        }
    }
    return 0;
}

static inline PySendResult aw_finish(AwaitObject *a, PySendResult r, PyObject **result) {
    a->phase = 2;
    Py_CLEAR(a->iter);
    PyObject *res = finish_call(a->breaker, &a->permit, a->t0, r == PYGEN_RETURN ? *result : NULL);
    *result = res;
    return res ? PYGEN_RETURN : PYGEN_ERROR;
}

/* A send, throw or close reaching an awaitable that is executing (from the
 * code it runs): refused, as a coroutine refuses it. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((cold, noinline))
#endif
static void raise_busy(void) {
    PyErr_SetString(PyExc_ValueError, "coroutine already executing");
}

static inline int aw_busy(AwaitObject *a) {
    if (RS_UNLIKELY(a->phase == 3)) {
        raise_busy();
        return 1;
    }
    return 0;
}

static PySendResult aw_send(AwaitObject *a, PyObject *arg, PyObject **result) {
    if (RS_UNLIKELY(a->phase != 1)) {
        if (a->phase == 2) {
            PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
            *result = NULL;
            return PYGEN_ERROR;
        }
        if (aw_busy(a) || aw_start(a) < 0) {
            *result = NULL;
            return PYGEN_ERROR;
        }
    } else {
        a->phase = 3;
    }
    /* PyIter_Send without its call: every awaitable resil delegates to
     * (a coroutine, a Future) has am_send. */
    PyAsyncMethods *am = Py_TYPE(a->iter)->tp_as_async;
    PySendResult r = RS_LIKELY(am && am->am_send) ? am->am_send(a->iter, arg, result)
                                                  : PyIter_Send(a->iter, arg, result);
    if (RS_LIKELY(r == PYGEN_NEXT)) {
        a->phase = 1;
        return r;
    }
    return aw_finish(a, r, result);
}

/* The state whose kept StopIteration an awaitable's result may leave
 * through: only when the caller's reference is the awaitable's last, so it
 * is freed (and the result let go of) as soon as the caller is done with
 * it. An awaitable someone keeps (in a list, a variable) makes a new
 * exception, as the result would otherwise outlive the await. */
static inline resil_state *aw_reuse_state(AwaitObject *a) {
    return Py_REFCNT(a) == 1 && a->breaker ? a->breaker->st : NULL;
}

static PyObject *aw_send_method(AwaitObject *a, PyObject *arg) {
    PyObject *res;
    PySendResult r = aw_send(a, arg, &res);
    if (r == PYGEN_NEXT) {
        return res;
    }
    if (r == PYGEN_RETURN) {
        set_stop_iteration(aw_reuse_state(a), res, 1);
        Py_DECREF(res);
    }
    return NULL;
}

static PyObject *aw_iternext(AwaitObject *a) {
    PyObject *res;
    PySendResult r = aw_send(a, Py_None, &res);
    if (r == PYGEN_NEXT) {
        return res;
    }
    if (r == PYGEN_RETURN) {
        if (res != Py_None) {
            set_stop_iteration(aw_reuse_state(a), res, 1);
        }
        Py_DECREF(res);
    }
    return NULL;
}

/* Ends an awaitable that never started (closed, or thrown into): gives its
 * permit back, drops the deferred call and closes the coroutine. Returns
 * what close() returned (None without a coroutine), NULL if it raised. */
static PyObject *aw_abandon(AwaitObject *a) {
    a->phase = 2;
    aw_give_back(a);
    Py_CLEAR(a->fn);
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwargs);
    if (!a->iter) {
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallMethod(a->iter, "close", NULL);
    Py_CLEAR(a->iter);
    return r;
}

static PyObject *aw_throw(AwaitObject *a, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    if (a->phase != 1) {
        if (aw_busy(a)) {
            return NULL;
        }
        if (a->phase == 0) {
            PyObject *r = aw_abandon(a);
            if (!r) {
                return NULL;
            }
            Py_DECREF(r);
        }
        raise_thrown(args, nargs);
        return NULL;
    }
    a->phase = 3;
    PyObject *meth = PyObject_GetAttrString(a->iter, "throw");
    PyObject *res;
    if (!meth) {
        PyErr_Clear();
        raise_thrown(args, nargs);
        res = NULL;
    } else {
        res = PyObject_Vectorcall(meth, args, (size_t)nargs, NULL);
        Py_DECREF(meth);
        if (res) {
            a->phase = 1;
            return res; /* the inner awaitable yielded again */
        }
    }
    PySendResult r = PYGEN_ERROR;
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        res = fetch_stop_value();
        if (res) {
            r = PYGEN_RETURN;
        }
    }
    r = aw_finish(a, r, &res);
    if (r == PYGEN_RETURN) {
        set_stop_iteration(aw_reuse_state(a), res, 1);
        Py_DECREF(res);
    }
    return NULL;
}

static PyObject *aw_close(AwaitObject *a, PyObject *Py_UNUSED(ignored)) {
    if (aw_busy(a)) {
        return NULL;
    }
    if (a->phase == 1) {
        a->phase = 2;
        PyObject *r = NULL;
        PyObject *meth = PyObject_GetAttrString(a->iter, "close");
        if (meth) {
            r = PyObject_CallNoArgs(meth);
            Py_DECREF(meth);
        } else {
            PyErr_Clear();
            r = Py_NewRef(Py_None);
        }
        Py_CLEAR(a->iter);
        uint64_t now = breaker_now_end(a->breaker);
        give_back(a->breaker, &a->permit, now);
        drain(a->breaker);
        return r;
    }
    if (a->phase == 0) {
        return aw_abandon(a);
    }
    Py_RETURN_NONE;
}

static PyObject *aw_await(PyObject *self) { return Py_NewRef(self); }

static int aw_traverse(AwaitObject *a, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(a));
    Py_VISIT(a->breaker);
    Py_VISIT(a->iter);
    Py_VISIT(a->fn);
    Py_VISIT(a->args);
    Py_VISIT(a->kwargs);
    return 0;
}

static inline void aw_drop_refs(AwaitObject *a) {
    Py_CLEAR(a->iter);
    Py_CLEAR(a->fn);
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwargs);
}

static int aw_clear(AwaitObject *a) {
    aw_drop_refs(a);
    return 0;
}

/* A deferred call (call() of a coroutine function, call_async, a guarded
 * coroutine function while the breaker rejects) dropped before it was ever
 * awaited: fn never ran and nothing was recorded, the mistake Python reports
 * for a coroutine never awaited, so report it alike. A call whose coroutine
 * exists already is reported by that coroutine itself when dropped. */
static void aw_finalize(PyObject *self) {
    AwaitObject *a = (AwaitObject *)self;
    a->finalized = 1; /* the GC marks it so too: it is never reused */
    if (a->phase != 0 || !a->fn || !a->breaker) {
        return;
    }
    PyObject *saved = fetch_exc();
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                         "the call of %R through circuit breaker %R was never awaited", a->fn,
                         a->breaker->name) < 0) {
        PyErr_WriteUnraisable(self);
    }
    restore_exc(saved);
}

/* The end of a deallocation, once the awaitable holds nothing: kept for
 * reuse, or freed. A finalized object keeps that mark in its GC header, so
 * only an unfinalized one is kept (its finalizer must run again). A kept
 * object keeps its reference to its type (the module's traverse visits it,
 * its clear releases it), so reuse only sets a refcount. st is NULL when
 * the awaitable had no breaker. */
static inline void aw_keep_or_free(AwaitObject *a, resil_state *st) {
    if (RS_LIKELY(st && st->aw_nfree < RESIL_AW_FREE_MAX && !a->finalized)) {
        st->aw_free[st->aw_nfree++] = a;
        return;
    }
    PyTypeObject *tp = Py_TYPE(a);
    PyObject_GC_Del(a);
    Py_DECREF(tp);
}

static void aw_dealloc(AwaitObject *a) {
    if (RS_LIKELY(a->phase == 2)) {
        /* Finished: it holds no permit, and ending cleared the call and the
         * coroutine; only the breaker is left. */
        RS_ASSERT(!a->iter && !a->fn && !a->args && !a->kwargs && !a->held);
        PyObject_GC_UnTrack(a);
        BreakerObject *b = a->breaker;
        a->breaker = NULL;
        resil_state *st = b->st;
        Py_DECREF(b);
        stop_iteration_release(st);
        aw_keep_or_free(a, st);
        return;
    }
    /* Only a deferred call never started has something to report. */
    if (RS_UNLIKELY(a->phase == 0 && a->fn) &&
        PyObject_CallFinalizerFromDealloc((PyObject *)a) < 0) {
        return; /* resurrected by the warning machinery */
    }
    PyObject_GC_UnTrack(a);
    if ((a->phase == 1 || a->held) && a->breaker) {
        /* Dropped mid-flight or unawaited: give the permit back so a probe
         * is not lost (reported at the breaker's next operation). */
        give_back_later(a->breaker, &a->permit, a->breaker->core.now_ns);
    }
    /* The breaker keeps the module, and so its state, alive until here. */
    resil_state *st = a->breaker ? a->breaker->st : NULL;
    aw_drop_refs(a);
    Py_CLEAR(a->breaker);
    aw_keep_or_free(a, st);
}

/* The coroutine methods, as both awaitables have them. */
#define SEND_DOC \
    "send($self, value, /)\n--\n\n" \
    "Sends value into the awaited call, as a coroutine's send() does."
#define THROW_DOC \
    "throw($self, typ, val=None, tb=None, /)\n--\n\n" \
    "Raises typ (an exception class or instance) in the awaited call, as a\n" \
    "coroutine's throw() does."
#define CLOSE_DOC "close($self, /)\n--\n\nCloses the awaited call, as a coroutine's close() does."

static PyMethodDef aw_methods[] = {
    {"send", (PyCFunction)aw_send_method, METH_O, SEND_DOC},
    {"throw", (PyCFunction)(void (*)(void))aw_throw, METH_FASTCALL, THROW_DOC},
    {"close", (PyCFunction)aw_close, METH_NOARGS, CLOSE_DOC},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot aw_slots[] = {
    {Py_tp_doc, "The awaitable of a call guarded by a circuit breaker; the permit is taken\n"
                "when it is first resumed."},
    {Py_am_await, aw_await},
    {Py_am_send, aw_send},
    {Py_tp_iter, aw_await},
    {Py_tp_iternext, aw_iternext},
    {Py_tp_methods, aw_methods},
    {Py_tp_traverse, aw_traverse},
    {Py_tp_clear, aw_clear},
    {Py_tp_dealloc, aw_dealloc},
    {Py_tp_finalize, aw_finalize},
    {0, NULL},
};

static PyType_Spec aw_spec = {
    .name = "resil._resil.GuardedAwaitable",
    .basicsize = sizeof(AwaitObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = aw_slots,
};

/* ---- Finished ----------------------------------------------------------
 * An awaitable that is already done: awaiting it returns its value at once,
 * without suspending. What a C method gives for an `async def` step that
 * never waits (CircuitBreaker.__aenter__ / __aexit__), where a coroutine
 * would cost a frame and a generator object per call. It holds no state that
 * awaiting changes, so one instance per value serves every call. */

typedef struct {
    PyObject_HEAD
    PyObject *value;
} FinishedObject;

static PySendResult fin_send(FinishedObject *f, PyObject *Py_UNUSED(arg), PyObject **result) {
    *result = Py_NewRef(f->value);
    return PYGEN_RETURN;
}

static PyObject *fin_iternext(FinishedObject *f) {
    set_stop_iteration((resil_state *)PyType_GetModuleState(Py_TYPE(f)), f->value, 0);
    return NULL;
}

static PyObject *fin_send_method(FinishedObject *f, PyObject *Py_UNUSED(arg)) {
    return fin_iternext(f);
}

static PyObject *fin_throw(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    raise_thrown(args, nargs);
    return NULL;
}

static PyObject *fin_close(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored)) {
    Py_RETURN_NONE;
}

static PyObject *fin_repr(FinishedObject *f) {
    return PyUnicode_FromFormat("<resil finished awaitable of %R>", f->value);
}

static void fin_dealloc(FinishedObject *f) {
    PyTypeObject *tp = Py_TYPE(f);
    Py_CLEAR(f->value);
    tp->tp_free((PyObject *)f);
    Py_DECREF(tp);
}

static PyMethodDef fin_methods[] = {
    {"send", (PyCFunction)fin_send_method, METH_O, SEND_DOC},
    {"throw", (PyCFunction)(void (*)(void))fin_throw, METH_FASTCALL, THROW_DOC},
    {"close", (PyCFunction)fin_close, METH_NOARGS, CLOSE_DOC},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fin_slots[] = {
    {Py_tp_doc, "An awaitable that is already finished: awaiting it returns its value."},
    {Py_am_await, aw_await},
    {Py_am_send, fin_send},
    {Py_tp_iter, aw_await},
    {Py_tp_iternext, fin_iternext},
    {Py_tp_methods, fin_methods},
    {Py_tp_repr, fin_repr},
    {Py_tp_dealloc, fin_dealloc},
    {0, NULL},
};

static PyType_Spec fin_spec = {
    .name = "resil._resil.Finished",
    .basicsize = sizeof(FinishedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = fin_slots,
};

static PyObject *make_finished(PyTypeObject *tp, PyObject *value) {
    FinishedObject *f = PyObject_New(FinishedObject, tp); /* holds its type */
    if (f) {
        f->value = Py_NewRef(value);
    }
    return (PyObject *)f;
}

int resil_awaitable_init_types(PyObject *module, resil_state *st) {
    if (resil_add_type(module, &aw_spec, NULL, &st->Awaitable_type) < 0) {
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &fin_spec, NULL);
    if (!tp) {
        return -1;
    }
    st->finished_none = make_finished(tp, Py_None);
    st->finished_false = make_finished(tp, Py_False);
    Py_DECREF(tp);
    return st->finished_none && st->finished_false ? 0 : -1;
}
