/* bulkhead.c - the engine of resil.Bulkhead: admission decisions and
 * counters over rs_bulkhead, and the permits try_acquire hands out.
 *
 * The waiting side (a FIFO line of asyncio futures and blocked threads) is
 * Python, in resil/policies/bulkhead.py. Each method here is one step of
 * the core, taken whole under the GIL with no Python code between the
 * check and the change, and answers what the Python side must do next
 * (wait in line, hand a slot to the first waiter); this type never calls
 * back into Python.
 *
 * Shared (shared=region): the state is an rs_bulkhead_block in the region,
 * every step runs under its lock, and each slot is a record naming this
 * process. A permit carries its record's index; slots taken by with-blocks
 * (try_enter, acquire) and slots claimed for this handle's waiters are kept
 * on two stacks of indices, since any record of this process and tag serves
 * (exit frees one of the first, start and decline take one of the second).
 * Waiters in other processes learn of a freed slot through the block's
 * futex word: _wake_seq, _sleep and _nudge (a futex shared by processes on
 * a MAP_SHARED mapping, so without FUTEX_PRIVATE_FLAG). */
#include "resil_py.h"

#include <errno.h>
#include <limits.h>
#include <math.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "../core/rs_bulkhead.h"

/* A stack of slot record indices. */
typedef struct {
    int64_t *v;
    Py_ssize_t n, cap;
} slot_stack;

typedef struct {
    PyObject_HEAD
    rs_bulkhead core;
    PyTypeObject *permit_type; /* borrowed: the module state keeps it */
    /* Shared: the block at offset in region; core above holds the settings. */
    PyObject *region;
    uint64_t offset;
    uint64_t params[RS_REGION_PARAMS];
    slot_stack running;        /* slots of this handle's with-blocks */
    slot_stack handed;         /* slots claimed for this handle's waiters */
    uint64_t waiting;          /* this handle's waiters in line */
} BulkheadObject;

static PyObject *bulkhead_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_concurrent", "max_queue", "queue_timeout", "name", "shared",
                             NULL};
    PyObject *given[RS_BHF_COUNT] = {NULL, NULL};
    PyObject *timeout_o = Py_None, *name = NULL, *shared = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOOO:BulkheadCore", kwlist,
                                     &given[RS_BHF_MAX_CONCURRENT], &given[RS_BHF_MAX_QUEUE],
                                     &timeout_o, &name, &shared)) {
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
    double timeout = INFINITY;
    if (timeout_o != Py_None) {
        if (resil_number(timeout_o, "queue_timeout", &timeout) < 0) {
            return NULL;
        }
        if (!(timeout >= 0.0)) {
            return resil_bad_value("queue_timeout",
                                   "None or a number of seconds >= 0 (inf: no limit)", timeout_o),
                   NULL;
        }
    }
    if (resil_region_check_shared(st, shared, 1, "Bulkhead", "a name") < 0) {
        return NULL;
    }
    if (resil_name_arg(&name) < 0) {
        return NULL;
    }
    BulkheadObject *self = (BulkheadObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(name);
        return NULL;
    }
    self->core = core;
    self->permit_type = st->BulkheadPermit_type;
    if (shared != Py_None) {
        rc = rs_bulkhead_params(values[RS_BHF_MAX_CONCURRENT], values[RS_BHF_MAX_QUEUE], timeout,
                                self->params);
        if (rc != RS_OK ||
            resil_region_attach(st, shared, &RS_BULKHEAD_REGION_TYPE, name, self->params,
                                RS_BULKHEAD_REGION_FIELDS, &self->offset) < 0) {
            if (rc != RS_OK) {
                resil_raise_status(rc, RS_BULKHEAD_REGION_FIELDS, RS_BHR_COUNT, NULL, NULL);
            }
            Py_DECREF(name);
            Py_DECREF(self);
            return NULL;
        }
        self->region = Py_NewRef(shared);
    }
    Py_DECREF(name);
    return (PyObject *)self;
}

static int bulkhead_traverse(BulkheadObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->region);
    return 0;
}

static void bulkhead_dealloc(BulkheadObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->region);
    PyMem_Free(self->running.v);
    PyMem_Free(self->handed.v);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- shared: the block in a region ------------------------------------------ */

#ifdef __linux__
static void futex_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
/* Sleeps while *word == seq, at most *rel; 0, or -1 with errno (EAGAIN: the
 * word had changed, ETIMEDOUT, EINTR). */
static int futex_wait(uint32_t *word, uint32_t seq, const struct timespec *rel) {
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, seq, rel, NULL, 0);
}
#else
static void futex_wake_all(uint32_t *word) {
    (void)word;
}
/* Without futexes: sleeps a millisecond at most, the caller loops. */
static int futex_wait(uint32_t *word, uint32_t seq, const struct timespec *rel) {
    struct timespec ms = {0, 1000000L};
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != seq) {
        return 0;
    }
    return nanosleep(rel->tv_sec || rel->tv_nsec > ms.tv_nsec ? &ms : rel, NULL);
}
#endif

/* The shared paths stay out of line: the local fast paths then need no
 * stack frame for them. */
#define SHARED_PATH __attribute__((noinline))

/* The block, locked; NULL with the error set. */
static rs_bulkhead_block *lock_block(BulkheadObject *self) {
    return resil_region_lock_block(self->region, self->offset, &RS_BULKHEAD_REGION_TYPE,
                                   self->params);
}

/* Unlocks, then wakes the threads asleep on the futex word, if any, when
 * a slot was freed. */
static void unlock_block(rs_bulkhead_block *blk, int freed) {
    rs_region_unlock(&blk->lock);
    if (freed && __atomic_load_n(&blk->sleepers, __ATOMIC_SEQ_CST)) {
        futex_wake_all(&blk->wake);
    }
}

static void shared_env(BulkheadObject *self, rs_bulkhead_env *env) {
    env->me = resil_region_me();
    env->now_ns = monotonic_ns();
    env->lease_ns = ((RegionObject *)self->region)->lease_ns;
    env->alive = resil_region_alive;
    env->actx = NULL;
}

/* Room for one more index; -1 with MemoryError. */
static int stack_room(slot_stack *s) {
    if (s->n < s->cap) {
        return 0;
    }
    Py_ssize_t cap = s->cap ? s->cap * 2 : 8;
    int64_t *v = PyMem_Realloc(s->v, (size_t)cap * sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    s->v = v;
    s->cap = cap;
    return 0;
}

/* try_enter (count_reject 0) or try_acquire's decision (1): the record's
 * index, -1 refused, -2 error. */
SHARED_PATH static int64_t shared_enter(BulkheadObject *self, int count_reject, int push) {
    rs_bulkhead_env env;
    shared_env(self, &env);
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return -2;
    }
    if (push && stack_room(&self->running) < 0) {
        rs_region_unlock(&blk->lock);
        return -2;
    }
    int64_t i = rs_bulkhead_block_enter(blk, &env, count_reject);
    if (i >= 0 && push) {
        self->running.v[self->running.n++] = i;
    }
    rs_region_unlock(&blk->lock);
    return i;
}

SHARED_PATH static PyObject *shared_try_enter(BulkheadObject *self) {
    int64_t i = shared_enter(self, 0, 1);
    return i == -2 ? NULL : PyBool_FromLong(i >= 0);
}

SHARED_PATH static PyObject *shared_acquire(BulkheadObject *self) {
    rs_bulkhead_env env;
    shared_env(self, &env);
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    if (stack_room(&self->running) < 0) {
        rs_region_unlock(&blk->lock);
        return NULL;
    }
    int64_t i;
    rs_bulkhead_answer a = rs_bulkhead_block_acquire(blk, &env, &i);
    if (a == RS_BH_ADMITTED) {
        self->running.v[self->running.n++] = i;
    } else if (a == RS_BH_QUEUED) {
        self->waiting++;
    }
    rs_region_unlock(&blk->lock);
    return PyLong_FromLong((long)a);
}

static PyObject *no_slot(void) {
    PyErr_SetString(PyExc_ValueError, "release without a slot taken: every slot is already free");
    return NULL;
}

/* Gives back record i (from a permit), or with i < 0 the last slot a
 * with-block of this handle took: 2 when this handle's waiters wait (the
 * caller lets them claim), else 0. */
SHARED_PATH static PyObject *shared_release(BulkheadObject *self, int64_t i, int *done) {
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    int from_stack = i < 0;
    if (from_stack) {
        if (self->running.n == 0) {
            rs_region_unlock(&blk->lock);
            return no_slot();
        }
        i = self->running.v[self->running.n - 1];
    }
    if (!rs_bulkhead_block_release(blk, resil_region_me(), i)) {
        rs_region_unlock(&blk->lock);
        PyErr_SetString(PyExc_ValueError,
                        "release of a slot this process does not hold (taken before a fork, "
                        "or given back already)");
        return NULL;
    }
    if (from_stack) {
        self->running.n--;
    }
    *done = 1;
    unlock_block(blk, 1);
    return PyLong_FromLong(self->waiting ? RS_BH_WAITERS : RS_BH_FREED);
}

SHARED_PATH static PyObject *shared_exit(BulkheadObject *self) {
    int done = 0;
    return shared_release(self, -1, &done);
}

SHARED_PATH static PyObject *shared_release_permit(BulkheadObject *self,
                                                   resil_slot_permit *permit) {
    int done = 0;
    PyObject *r = shared_release(self, (int64_t)permit->seq, &done);
    permit->released = done;
    return r;
}

SHARED_PATH static PyObject *shared_claim(BulkheadObject *self) {
    if (self->waiting == 0) {
        return PyLong_FromLong(0);
    }
    rs_bulkhead_env env;
    shared_env(self, &env);
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    if (stack_room(&self->handed) < 0) {
        rs_region_unlock(&blk->lock);
        return NULL;
    }
    int64_t i = rs_bulkhead_block_claim(blk, &env);
    if (i >= 0) {
        self->handed.v[self->handed.n++] = i;
        self->waiting--;
    }
    rs_region_unlock(&blk->lock);
    return PyLong_FromLong(i >= 0);
}

SHARED_PATH static PyObject *shared_start(BulkheadObject *self) {
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    if (self->handed.n == 0 || stack_room(&self->running) < 0) {
        rs_region_unlock(&blk->lock);
        if (self->handed.n == 0) {
            PyErr_SetString(PyExc_ValueError, "start() without a slot handed to a waiter");
        }
        return NULL;
    }
    int64_t i = self->handed.v[self->handed.n - 1];
    if (!rs_bulkhead_block_start(blk, resil_region_me(), i)) {
        rs_region_unlock(&blk->lock);
        PyErr_SetString(PyExc_ValueError, "start() of a slot this process does not hold");
        return NULL;
    }
    self->handed.n--;
    self->running.v[self->running.n++] = i;
    rs_region_unlock(&blk->lock);
    Py_RETURN_NONE;
}

SHARED_PATH static PyObject *shared_decline(BulkheadObject *self) {
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    if (self->handed.n == 0) {
        rs_region_unlock(&blk->lock);
        PyErr_SetString(PyExc_ValueError, "decline() without a slot handed to a waiter");
        return NULL;
    }
    int64_t i = self->handed.v[self->handed.n - 1];
    int r = rs_bulkhead_block_decline(blk, resil_region_me(), i, self->waiting > 0);
    if (r < 0) {
        rs_region_unlock(&blk->lock);
        PyErr_SetString(PyExc_ValueError, "decline() of a slot this process does not hold");
        return NULL;
    }
    if (r == RS_BH_HANDED) {
        self->waiting--; /* the slot stays on the stack, for the next waiter */
    } else {
        self->handed.n--;
    }
    unlock_block(blk, r == RS_BH_FREED);
    return PyLong_FromLong(r);
}

SHARED_PATH static PyObject *shared_leave(BulkheadObject *self, int timed_out) {
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return NULL;
    }
    if (self->waiting == 0 || !rs_bulkhead_block_leave(blk, resil_region_me(), timed_out)) {
        rs_region_unlock(&blk->lock);
        PyErr_SetString(PyExc_ValueError, "leave() with nobody waiting");
        return NULL;
    }
    self->waiting--;
    rs_region_unlock(&blk->lock);
    Py_RETURN_NONE;
}

/* The block's counts, read under its lock into *out. */
SHARED_PATH static int shared_counts(BulkheadObject *self, rs_bulkhead *out) {
    rs_bulkhead_block *blk = lock_block(self);
    if (!blk) {
        return -1;
    }
    *out = blk->b;
    rs_region_unlock(&blk->lock);
    return 0;
}

static PyObject *bulkhead_wake_seq(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->region) {
        return PyLong_FromLong(0);
    }
    rs_bulkhead_block *blk = resil_region_block(self->region, self->offset);
    if (!blk) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(__atomic_load_n(&blk->wake, __ATOMIC_SEQ_CST));
}

static PyObject *bulkhead_nudge(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->region) {
        Py_RETURN_NONE;
    }
    rs_bulkhead_block *blk = resil_region_block(self->region, self->offset);
    if (!blk) {
        return NULL;
    }
    rs_bulkhead_block_nudge(blk);
    if (__atomic_load_n(&blk->sleepers, __ATOMIC_SEQ_CST)) {
        futex_wake_all(&blk->wake);
    }
    Py_RETURN_NONE;
}

static PyObject *bulkhead_sleep(BulkheadObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "_sleep() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long seq = PyLong_AsUnsignedLong(args[0]);
    if (seq == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    double t;
    if (resil_number(args[1], "timeout", &t) < 0) {
        return NULL;
    }
    if (!(t >= 0.0) || t > 3600.0) {
        return resil_bad_value("timeout", "a number of seconds in [0, 3600]", args[1]), NULL;
    }
    if (!self->region) {
        PyErr_SetString(PyExc_ValueError, "_sleep() of a bulkhead that is not shared");
        return NULL;
    }
    rs_bulkhead_block *blk = resil_region_block(self->region, self->offset);
    if (!blk) {
        return NULL;
    }
    struct timespec rel;
    rel.tv_sec = (time_t)t;
    rel.tv_nsec = (long)((t - (double)rel.tv_sec) * 1e9);
    if (rel.tv_nsec > 999999999L) {
        rel.tv_nsec = 999999999L;
    }
    int rc, err;
    ((RegionObject *)self->region)->waiters++;
    __atomic_add_fetch(&blk->sleepers, 1u, __ATOMIC_SEQ_CST);
    Py_BEGIN_ALLOW_THREADS
    rc = futex_wait(&blk->wake, (uint32_t)seq, &rel);
    err = errno;
    Py_END_ALLOW_THREADS
    __atomic_sub_fetch(&blk->sleepers, 1u, __ATOMIC_SEQ_CST);
    if (resil_region_wait_end(self->region) < 0) {
        return NULL;
    }
    if (rc < 0 && err == EINTR && PyErr_CheckSignals() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* try_acquire's decision; takes the permit made for it. */
SHARED_PATH static PyObject *shared_try_acquire(BulkheadObject *self, resil_slot_permit *permit) {
    int64_t i = shared_enter(self, 1, 0);
    if (i < 0) {
        Py_DECREF(permit);
        if (i == -2) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    permit->seq = (uint64_t)i;
    permit->owner = Py_NewRef((PyObject *)self);
    return (PyObject *)permit;
}

/* ---- every bulkhead --------------------------------------------------------- */

static PyObject *bulkhead_try_enter(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (RS_UNLIKELY(self->region != NULL)) {
        return shared_try_enter(self);
    }
    return PyBool_FromLong(rs_bulkhead_try_enter(&self->core));
}

static PyObject *bulkhead_acquire(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->region) {
        return shared_acquire(self);
    }
    return PyLong_FromLong((long)rs_bulkhead_acquire(&self->core));
}

static PyObject *bulkhead_try_acquire(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    /* The permit is made first: a MemoryError then takes no slot. */
    resil_slot_permit *permit = resil_slot_permit_new(self->permit_type);
    if (!permit) {
        return NULL;
    }
    if (RS_UNLIKELY(self->region != NULL)) {
        return shared_try_acquire(self, permit);
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
    if (RS_UNLIKELY(self->region != NULL)) {
        return shared_exit(self);
    }
    return give_back(self, 0);
}

static PyObject *bulkhead_hand_off(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->region) {
        return shared_claim(self);
    }
    return give_back(self, 1);
}

static PyObject *bulkhead_release(BulkheadObject *self, PyObject *permit_o) {
    if (resil_slot_permit_check(permit_o, self->permit_type, (PyObject *)self, "bulkhead") < 0) {
        return NULL;
    }
    resil_slot_permit *permit = (resil_slot_permit *)permit_o;
    if (RS_UNLIKELY(self->region != NULL)) {
        return shared_release_permit(self, permit);
    }
    /* Every slot is free only when a slot was given back without its
     * permit (an __exit__ with no __enter__): refused, the permit kept. */
    PyObject *r = give_back(self, 0);
    if (r) {
        permit->released = 1;
    }
    return r;
}

static PyObject *bulkhead_start(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->region) {
        return shared_start(self);
    }
    if (rs_bulkhead_start(&self->core) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "start() without a slot handed to a waiter");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *bulkhead_decline(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->region) {
        return shared_decline(self);
    }
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
    if (self->region) {
        return shared_leave(self, flag);
    }
    if (rs_bulkhead_leave(&self->core, flag) != RS_OK) {
        PyErr_SetString(PyExc_ValueError, "leave() with nobody waiting");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *bulkhead_stats(BulkheadObject *self, PyObject *Py_UNUSED(ignored)) {
    const rs_bulkhead *b = &self->core;
    rs_bulkhead counts;
    if (self->region) {
        if (shared_counts(self, &counts) < 0) {
            return NULL;
        }
        b = &counts;
    }
    return Py_BuildValue("{sIsIsIsKsKsKsI}", "max_concurrent", b->max_concurrent, "active",
                         b->active, "queued", b->queued, "admitted",
                         (unsigned long long)b->admitted, "rejected",
                         (unsigned long long)b->rejected, "timed_out",
                         (unsigned long long)b->timed_out, "peak_active", b->peak_active);
}

static PyObject *bulkhead_get(BulkheadObject *self, void *closure) {
    int which = (int)(intptr_t)closure;
    const rs_bulkhead *b = &self->core;
    rs_bulkhead counts;
    if (which == 5) {
        return Py_NewRef(self->region ? self->region : Py_None);
    }
    if (which >= 2 && self->region) {
        if (shared_counts(self, &counts) < 0) {
            return NULL;
        }
        b = &counts;
    }
    switch (which) {
    case 0: return PyLong_FromUnsignedLong(b->max_concurrent);
    case 1: return PyLong_FromUnsignedLong(b->max_queue);
    case 2: return PyLong_FromUnsignedLong(b->active);
    case 3: return PyLong_FromUnsignedLong(b->queued);
    default: return PyLong_FromUnsignedLong(b->handed);
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
    {"_wake_seq", (PyCFunction)bulkhead_wake_seq, METH_NOARGS,
     "_wake_seq($self, /)\n--\n\n"
     "Shared: the futex word, which grows with every slot freed anywhere on the\n"
     "host (and every _nudge); read it before looking for a slot, then\n"
     "_sleep(seq, timeout). 0 when not shared."},
    {"_sleep", (PyCFunction)(void (*)(void))bulkhead_sleep, METH_FASTCALL,
     "_sleep($self, seq, timeout, /)\n--\n\n"
     "Shared: sleeps, the GIL released, until the futex word differs from seq\n"
     "(a slot freed, a nudge), timeout seconds (in [0, 3600]) pass, or a signal\n"
     "arrives (its handler runs; KeyboardInterrupt is raised)."},
    {"_nudge", (PyCFunction)bulkhead_nudge, METH_NOARGS,
     "_nudge($self, /)\n--\n\n"
     "Shared: bumps the futex word and wakes its sleepers (a waiter of this\n"
     "process was handed a slot). Does nothing when not shared."},
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
    {"shared", (getter)bulkhead_get, NULL,
     "The SharedRegion holding the bulkhead's state, or None (this process's).", (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot bulkhead_slots[] = {
    {Py_tp_doc, "BulkheadCore(max_concurrent=10, *, max_queue=0, queue_timeout=None, "
                "name='default', shared=None)\n--\n\n"
                "The engine of resil.Bulkhead (implementation detail): its counters and\n"
                "admission decisions. max_concurrent is an int in [1, 2**30], max_queue an\n"
                "int in [0, 2**30]. With shared=a SharedRegion, the state is the region's\n"
                "bulkhead called name, whose parameters are max_concurrent, max_queue and\n"
                "queue_timeout (seconds, None: no limit): every handle on it, in any\n"
                "process, is one bulkhead. Without it, name and queue_timeout are unused."},
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
