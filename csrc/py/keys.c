/* keys.c - what the types keyed by Python objects share (Deduplicator,
 * RateLimiter): hashing and comparing keys as a dict does, one lock per
 * object that also refuses re-entry from a key's __eq__, and the "grave",
 * where keys a core operation drops wait until it completes (their __del__
 * may run Python code, which must not run in the middle of one). */
#include "resil_py.h"

int resil_key_eq(void *a, void *b, void *ctx) {
    (void)ctx;
    PyObject *x = (PyObject *)a, *y = (PyObject *)b;
    Py_INCREF(x);
    Py_INCREF(y);
    int r = PyObject_RichCompareBool(x, y, Py_EQ);
    Py_DECREF(x);
    Py_DECREF(y);
    return r;
}

/* The key's hash, spread over all 64 bits. The core's tables are indexed by
 * the low bits of the hash they are given, with linear probing; Python
 * hashes an int to itself, so ids 1, 2, 3, ... would fill one contiguous
 * run of cells, and removing the oldest entry (every eviction, expiry and
 * clear) would shift that whole run back: quadratic in the number of keys.
 * The mix (MurmurHash3's 64-bit finaliser) is a bijection, so equal hashes
 * stay equal and different ones different. */
int resil_key_hash(PyObject *key, uint64_t *out) {
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1 && PyErr_Occurred()) {
        return -1;
    }
    uint64_t x = (uint64_t)h;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    *out = x;
    return 0;
}

int resil_keyguard_init(resil_keyguard *g) {
    memset(g, 0, sizeof *g);
    g->lock = PyThread_allocate_lock();
    if (!g->lock) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void resil_keyguard_free(resil_keyguard *g) {
    resil_keyguard_flush(g);
    PyMem_Free(g->grave);
    g->grave = NULL;
    if (g->lock) {
        PyThread_free_lock(g->lock);
        g->lock = NULL;
    }
}

void resil_keyguard_bury(resil_keyguard *g, PyObject *key) {
    if (g->grave_len == g->grave_cap) {
        Py_ssize_t cap = g->grave_cap ? g->grave_cap * 2 : 16;
        PyObject **grave = PyMem_Realloc(g->grave, (size_t)cap * sizeof(PyObject *));
        if (!grave) {
            /* Out of memory for the list: release now (rare, and safe
             * unless the key's __del__ re-enters this object). */
            Py_DECREF(key);
            return;
        }
        g->grave = grave;
        g->grave_cap = cap;
    }
    g->grave[g->grave_len++] = key;
}

void resil_keyguard_flush(resil_keyguard *g) {
    if (!g->grave_len) {
        return;
    }
    PyObject *saved = PyErr_Occurred() ? fetch_exc() : NULL;
    while (g->grave_len) {
        PyObject *key = g->grave[--g->grave_len];
        Py_DECREF(key);
    }
    restore_exc(saved);
}

int resil_keyguard_enter(resil_keyguard *g, const char *what) {
    unsigned long me = PyThread_get_thread_ident();
    if (g->busy && g->owner == me) {
        PyErr_Format(PyExc_RuntimeError,
                     "%s used from inside a key's __eq__ during one of its own operations", what);
        return -1;
    }
    if (!PyThread_acquire_lock(g->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(g->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    g->busy = 1;
    g->owner = me;
    return 0;
}

void resil_keyguard_leave(resil_keyguard *g) {
    g->busy = 0;
    g->owner = 0;
    PyThread_release_lock(g->lock);
}

int resil_keyguard_traverse(resil_keyguard *g, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < g->grave_len; i++) {
        Py_VISIT(g->grave[i]);
    }
    return 0;
}
