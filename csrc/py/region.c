/* region.c - resil._resil.Region, the base of resil.SharedRegion: a file
 * mapped MAP_SHARED holding an rs_region, and RegionError.
 *
 * Opening takes an exclusive flock on the file, so that of two processes
 * creating the same region at once one formats it and the other finds it
 * formatted; a region whose creator died before it completed (its header
 * says so, or the file is all zeros) is formatted again under the same lock. The file is mapped
 * whole and validated before anything in it is used. Objects in the region
 * (RateLimiter today) keep a reference to the Region and an offset; each
 * call checks that the region is still open. The liveness of a permit's
 * holder is asked of /proc here, never in the core. */
#include "resil_py.h"

#include <errno.h>
#include <fcntl.h>
#include <structmember.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/rs_dedup.h"
#include "../core/rs_bulkhead.h"
#include "../core/rs_gcra.h"
#include "../core/rs_monitor.h"

/* The object types a region holds: the core's block type, the Python
 * class that makes it, and its parameters' field table. */
typedef struct {
    const rs_region_type *type;
    const char *cls;
    const rs_field *fields;
    int nfields;
} known_type;

static const known_type KNOWN[] = {
    {&RS_GCRA_REGION_TYPE, "RateLimiter", RS_GCRA_FIELDS, RS_GCF_COUNT},
    {&RS_BREAKER_REGION_TYPE, "CircuitBreaker", resil_breaker_region_fields,
     RS_BREAKER_REGION_PARAMS},
    {&RS_DEDUP_REGION_TYPE, "Deduplicator", RS_DEDUP_FIELDS, RS_DDF_COUNT},
    {&RS_MON_REGION_TYPE, "Monitor", RS_MON_FIELDS, RS_MNF_COUNT},
    {&RS_BULKHEAD_REGION_TYPE, "Bulkhead", RS_BULKHEAD_REGION_FIELDS, RS_BHR_COUNT},
};
#define NKNOWN ((int)(sizeof KNOWN / sizeof KNOWN[0]))

static const known_type *known(uint32_t tag) {
    for (int i = 0; i < NKNOWN; i++) {
        if (KNOWN[i].type->tag == tag) {
            return &KNOWN[i];
        }
    }
    return NULL;
}

enum { RF_SIZE = 0, RF_LEASE, RF_COUNT };
static const rs_field REGION_FIELDS[RF_COUNT] = {
    {"size", RS_FIELD_INT, (double)RS_REGION_MIN_SIZE, (double)RS_REGION_MAX_SIZE, 0, NULL},
    {"lease", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL}, /* at least 1 ns */
};

static PyObject *region_error(PyObject *region, const char *fmt, ...) {
    RegionObject *r = (RegionObject *)region;
    PyObject *err = get_state_by_type(Py_TYPE(region))->RegionError;
    va_list va;
    va_start(va, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg) {
        PyErr_Format(err, "region %R: %U", r->path, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* Whether process pid, started at `start` (clock ticks after boot, field 22
 * of /proc/<pid>/stat), still runs: 1 yes, 0 gone, -1 unknown. */
static int process_start(uint64_t pid, uint64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields
     * resume after its last ')'; the start time is the 20th after it. */
    char *p = strrchr(buf, ')');
    if (!p) {
        return -1;
    }
    for (int field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p) {
            return -1;
        }
    }
    *start = strtoull(p + 1, NULL, 10);
    return 1;
}

/* The pid namespace of this process: the inode of /proc/self/ns/pid, low
 * 32 bits (0 when unknown). A holder's pid word carries it above the pid,
 * since a pid means a process only within its namespace: two containers
 * sharing /dev/shm may each have a process 42. */
static uint64_t pid_namespace(void) {
    struct stat sb;
    return stat("/proc/self/ns/pid", &sb) == 0 ? (uint64_t)(sb.st_ino & 0xffffffffu) : 0;
}

int resil_region_alive(uint64_t pid, uint64_t start, void *ctx) {
    (void)ctx;
    if ((pid >> 32) != (resil_region_me()->pid >> 32)) {
        return -1; /* another pid namespace: /proc here cannot tell */
    }
    uint64_t now_start;
    int r = process_start(pid & 0xffffffffu, &now_start);
    return r <= 0 ? r : now_start == start;
}

/* This process as a permit holder: read once, and again in a forked child
 * (the pid it cached is its parent's). */
static rs_region_holder me_cached;

static void forget_me(void) {
    me_cached.pid = 0;
}

const rs_region_holder *resil_region_me(void) {
    if (RS_UNLIKELY(me_cached.pid == 0)) {
        static int registered;
        if (!registered) {
            registered = pthread_atfork(NULL, NULL, forget_me) == 0;
        }
        uint64_t pid = (uint64_t)getpid(), start = 0;
        if (process_start(pid, &start) != 1) {
            start = 0; /* no /proc: the pid alone, and a holder is never found dead */
        }
        me_cached.start = start;
        me_cached.pid = pid_namespace() << 32 | pid;
    }
    return &me_cached;
}

/* The open SharedRegion objects of this process, per file: closing one
 * gives back this process's permits only when it was the last (another
 * handle's breakers may hold them). The GIL guards it; a forked child
 * inherits the counts with the objects. */
typedef struct {
    uint64_t dev, ino;
    Py_ssize_t count;
} open_file;
static open_file *handles;
static Py_ssize_t nhandles;

/* Adds delta to the file's count: the count after, or -1 (out of memory). */
static Py_ssize_t handles_add(uint64_t dev, uint64_t ino, Py_ssize_t delta) {
    for (Py_ssize_t i = 0; i < nhandles; i++) {
        if (handles[i].dev == dev && handles[i].ino == ino) {
            Py_ssize_t c = handles[i].count += delta;
            if (c == 0) {
                handles[i] = handles[--nhandles];
            }
            return c;
        }
    }
    if (delta <= 0) {
        return 0;
    }
    open_file *grown = PyMem_Realloc(handles, (size_t)(nhandles + 1) * sizeof *grown);
    if (!grown) {
        return -1;
    }
    handles = grown;
    handles[nhandles++] = (open_file){dev, ino, delta};
    return delta;
}

/* Whether all n bytes at p are zero (n > 0): a file resil created and
 * reserved whose creator died before writing the header; it holds nothing. */
static int all_zero(const unsigned char *p, uint64_t n) {
    return p[0] == 0 && memcmp(p, p + 1, (size_t)(n - 1)) == 0;
}

static PyObject *region_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "size", "lease", NULL};
    PyObject *path_o, *size_o = NULL, *lease_o = NULL, *fspath = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$O:SharedRegion", kwlist, &path_o, &size_o,
                                     &lease_o)) {
        return NULL;
    }
    long long size = 1 << 20;
    uint64_t lease_ns = 30 * RS_NS_PER_SEC;
    if (!PyUnicode_Check(path_o) && !PyBytes_Check(path_o) &&
        !PyObject_HasAttrString((PyObject *)Py_TYPE(path_o), "__fspath__")) {
        PyErr_Format(PyExc_TypeError, "path must be a str, bytes or os.PathLike, not %.100s",
                     Py_TYPE(path_o)->tp_name);
        return NULL;
    }
    if ((size_o && resil_field_int(&REGION_FIELDS[RF_SIZE], size_o, &size) < 0) ||
        (lease_o && resil_field_ns(&REGION_FIELDS[RF_LEASE], lease_o, &lease_ns) < 0)) {
        return NULL;
    }
    if (lease_ns == 0) {
        return resil_field_error(&REGION_FIELDS[RF_LEASE], lease_o), NULL;
    }
    if (!PyUnicode_FSConverter(path_o, &fspath)) {
        return NULL;
    }
    RegionObject *self = (RegionObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(fspath);
        return NULL;
    }
    self->path = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(fspath));
    if (!self->path) {
        goto error;
    }
    const char *cpath = PyBytes_AS_STRING(fspath);
    int fd, err = 0, rc = 0;
    struct stat sb;
    void *base = MAP_FAILED;
    rs_region_status st = RS_REGION_OK;
    uint64_t secret[2];
    const char *failed = NULL;
    Py_BEGIN_ALLOW_THREADS
    fd = open(cpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        failed = "open";
    } else if (flock(fd, LOCK_EX) != 0) {
        failed = "flock";
    } else if (fstat(fd, &sb) != 0) {
        failed = "fstat";
    }
    err = errno;
    if (!failed && sb.st_size == 0) {
        /* new: reserve the pages now, so a full /dev/shm fails here and not
         * with SIGBUS at a later write */
        rc = posix_fallocate(fd, 0, (off_t)size);
        if (rc != 0) {
            failed = "posix_fallocate";
            err = rc;
            /* some file systems keep what a failed call reserved: the file
             * was empty, and is again, rather than a large file of zeros */
            if (ftruncate(fd, 0) != 0) {
                err = rc;
            }
        } else {
            sb.st_size = (off_t)size;
        }
        rc = 1; /* to format */
    }
    if (!failed && (uint64_t)sb.st_size > RS_REGION_MAX_SIZE) {
        st = RS_REGION_CORRUPT;
    } else if (!failed) {
        base = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) {
            failed = "mmap";
            err = errno;
        }
    }
    if (!failed && base != MAP_FAILED) {
        uint64_t fsize = (uint64_t)sb.st_size;
        if (!rc) {
            st = rs_region_validate(base, fsize);
            /* a creator that died before completing leaves a header that
             * says so, or, killed between reserving the file and writing
             * the header, a file of zeros; nobody can have used either:
             * format it anew. A file with any byte set that is not a
             * region is another program's, and is left alone. */
            rc = fsize >= RS_REGION_MIN_SIZE &&
                 (st == RS_REGION_INCOMPLETE || (st == RS_REGION_BAD_MAGIC && all_zero(base, fsize)));
        }
        if (rc) {
            if (getentropy(secret, sizeof secret) != 0) {
                failed = "getentropy";
                err = errno;
            } else {
                st = rs_region_format(base, fsize, lease_ns, secret);
            }
        }
    }
    if (fd >= 0) {
        /* unlocked explicitly: the mapping keeps the open file, and with it
         * an flock, alive after close */
        flock(fd, LOCK_UN);
        close(fd);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(fspath);
    fspath = NULL;
    if (failed) {
        if (base != MAP_FAILED) {
            munmap(base, (size_t)sb.st_size);
        }
        PyErr_Format(get_state_by_type(type)->RegionError, "region %R: %s failed: %s",
                     self->path, failed, strerror(err));
        goto error;
    }
    if (st != RS_REGION_OK) {
        if (base != MAP_FAILED) {
            munmap(base, (size_t)sb.st_size);
        }
        region_error((PyObject *)self, "%s (%lld bytes)", rs_region_reason(st),
                     (long long)sb.st_size);
        goto error;
    }
    self->base = self->mapped = base;
    self->size = (uint64_t)sb.st_size;
    self->lease_ns = ((rs_region_header *)base)->lease_ns;
    self->dev = (uint64_t)sb.st_dev;
    self->ino = (uint64_t)sb.st_ino;
    if (handles_add(self->dev, self->ino, 1) < 0) {
        self->base = NULL; /* not counted: its close must not count down */
        munmap(base, (size_t)self->size);
        self->mapped = NULL;
        PyErr_NoMemory();
        goto error;
    }
    return (PyObject *)self;
error:
    Py_XDECREF(fspath);
    Py_DECREF(self);
    return NULL;
}

static void lease_deadline(const RegionObject *r, struct timespec *t);

static void count_problem(void *ctx, const char *problem) {
    (void)problem;
    (*(int *)ctx)++;
}

/* Gives back the permits this process holds in the region's objects (the
 * probes of its shared breakers): once closed it could never report them,
 * and while it lives nobody would reclaim them. A block whose lock stays
 * busy for a lease, or whose structure is damaged, is left alone. */
static void drop_my_permits(RegionObject *self, char *base) {
    const rs_region_header *h = (const rs_region_header *)base;
    const rs_region_holder *me = resil_region_me();
    uint32_t count = rs_region_count(h);
    for (uint32_t i = 0; i < count && i < RS_REGION_DIR_CAP; i++) {
        const rs_region_entry *e = &h->dir[i];
        const known_type *k = known(e->type);
        int problems = 0;
        if (!k || !k->type->drop_holder || e->offset > self->size ||
            e->size > self->size - e->offset || e->size != k->type->block_size(e->params)) {
            continue;
        }
        void *blk = base + e->offset;
        if (k->type->check(blk, e->size, e->params, count_problem, &problems) != 0) {
            continue;
        }
        int rc = rs_region_trylock((rs_region_mutex *)blk);
        if (rc == 2) {
            struct timespec deadline;
            lease_deadline(self, &deadline);
            Py_BEGIN_ALLOW_THREADS
            rc = rs_region_timedlock((rs_region_mutex *)blk, &deadline);
            Py_END_ALLOW_THREADS
        }
        if (rc == 1) {
            k->type->repair(blk, e->params);
        }
        if (rc == 0 || rc == 1) {
            k->type->drop_holder(blk, e->params, me);
            rs_region_unlock((rs_region_mutex *)blk);
        }
    }
}

/* Closes: new calls fail at once; the mapping goes when no thread waits
 * in it with the GIL released (the last one to leave unmaps it). */
static void unmap(RegionObject *self) {
    if (self->base) {
        char *base = self->base;
        self->base = NULL; /* calls from other threads fail from here */
        if (handles_add(self->dev, self->ino, -1) == 0) {
            self->waiters++; /* the mapping stays while this thread is in it */
            drop_my_permits(self, base);
            self->waiters--;
        }
    }
    self->base = NULL;
    if (self->mapped && self->waiters == 0) {
        munmap(self->mapped, (size_t)self->size);
        self->mapped = NULL;
    }
}

static void region_dealloc(RegionObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    unmap(self);
    Py_CLEAR(self->path);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int region_traverse(RegionObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int open_or_raise(RegionObject *self) {
    return resil_region_block((PyObject *)self, 0) ? 0 : -1;
}

static PyObject *region_close(RegionObject *self, PyObject *Py_UNUSED(ignored)) {
    unmap(self);
    Py_RETURN_NONE;
}

static PyObject *region_enter(RegionObject *self, PyObject *Py_UNUSED(ignored)) {
    if (open_or_raise(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *region_exit(RegionObject *self, PyObject *args) {
    PyObject *t, *v, *tb;
    if (!PyArg_UnpackTuple(args, "__exit__", 3, 3, &t, &v, &tb)) {
        return NULL;
    }
    unmap(self);
    Py_RETURN_NONE;
}

static PyObject *region_stats(RegionObject *self, PyObject *Py_UNUSED(ignored)) {
    if (open_or_raise(self) < 0) {
        return NULL;
    }
    return Py_BuildValue("{sOsKsKsIsd}", "path", self->path, "bytes",
                         (unsigned long long)self->size, "used_bytes",
                         (unsigned long long)rs_region_used(self->base), "objects",
                         (unsigned)rs_region_count(self->base), "lease",
                         (double)self->lease_ns / 1e9);
}

/* One parameter as Python shows it: NUMBER fields are double bits, SECONDS
 * fields nanoseconds, INT fields integers. */
static PyObject *param_value(const rs_field *f, uint64_t v) {
    /* 0 where the field's bounds exclude it: an optional setting that is off */
    if (f->kind != RS_FIELD_INT && v == 0 && (f->lo > 0 || (f->open & RS_FIELD_OPEN_LO))) {
        Py_RETURN_NONE;
    }
    if (f->kind == RS_FIELD_INT && f->lo == 0 && f->hi == 1) {
        return PyBool_FromLong(v != 0); /* a flag */
    }
    if (f->kind == RS_FIELD_NUMBER) {
        double d;
        memcpy(&d, &v, sizeof d);
        return PyFloat_FromDouble(d);
    }
    if (f->kind == RS_FIELD_SECONDS) {
        return PyFloat_FromDouble((double)v / 1e9);
    }
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *region_objects(RegionObject *self, PyObject *Py_UNUSED(ignored)) {
    if (open_or_raise(self) < 0) {
        return NULL;
    }
    const rs_region_header *h = (const rs_region_header *)self->base;
    uint32_t count = rs_region_count(self->base);
    PyObject *out = PyList_New(0);
    if (!out) {
        return NULL;
    }
    for (uint32_t i = 0; i < count && i < RS_REGION_DIR_CAP; i++) {
        const rs_region_entry *e = &h->dir[i];
        const known_type *k = known(e->type);
        PyObject *params = PyDict_New(), *item = NULL;
        if (!params) {
            goto error;
        }
        for (int j = 0; k && j < k->nfields; j++) {
            PyObject *v = param_value(&k->fields[j], e->params[j]);
            if (!v || PyDict_SetItemString(params, k->fields[j].name, v) < 0) {
                Py_XDECREF(v);
                Py_DECREF(params);
                goto error;
            }
            Py_DECREF(v);
        }
        item = Py_BuildValue("{sssNsN}", "type", k ? k->cls : "unknown", "name",
                             PyUnicode_DecodeUTF8(e->name, strnlen(e->name, RS_REGION_NAME_MAX),
                                                  "replace"),
                             "parameters", params);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static void collect(void *ctx, const char *problem) {
    PyObject *list = ctx, *s = PyUnicode_FromString(problem);
    if (!s || PyList_Append(list, s) < 0) {
        PyErr_Clear(); /* the count still says a problem was found */
    }
    Py_XDECREF(s);
}

static PyObject *region_check(RegionObject *self, PyObject *Py_UNUSED(ignored)) {
    if (open_or_raise(self) < 0) {
        return NULL;
    }
    const rs_region_type *types[NKNOWN];
    for (int i = 0; i < NKNOWN; i++) {
        types[i] = KNOWN[i].type;
    }
    PyObject *list = PyList_New(0);
    if (!list) {
        return NULL;
    }
    int n = rs_region_check(self->base, self->size, types, NKNOWN, collect, list);
    if (n > 0 && PyList_GET_SIZE(list) == 0) {
        Py_DECREF(list);
        return PyErr_NoMemory();
    }
    return list;
}

/* Test hook: takes the directory lock (name None) or an object's lock and
 * returns holding it, so a test can kill the process at that point. */
static PyObject *region_hold_lock(RegionObject *self, PyObject *name) {
    if (open_or_raise(self) < 0) {
        return NULL;
    }
    rs_region_header *h = (rs_region_header *)self->base;
    rs_region_mutex *m = &h->lock;
    if (name != Py_None) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(name, &len);
        if (!s) {
            return NULL;
        }
        m = NULL;
        for (uint32_t i = 0; i < rs_region_count(h); i++) {
            if (h->dir[i].name_len == (uint32_t)len && memcmp(h->dir[i].name, s, len) == 0) {
                m = (rs_region_mutex *)(self->base + h->dir[i].offset);
            }
        }
        if (!m) {
            PyErr_Format(PyExc_KeyError, "%R", name);
            return NULL;
        }
    }
    if (rs_region_trylock(m) < 0) {
        return region_error((PyObject *)self, "%s", "lock unusable");
    }
    Py_RETURN_NONE;
}

/* Test hook: whether process (pid, start) lives, and this process's start. */
static PyObject *region_process(PyObject *cls, PyObject *args) {
    (void)cls;
    unsigned long long pid, start = 0, ns = resil_region_me()->pid >> 32;
    if (!PyArg_ParseTuple(args, "K|KK:_process", &pid, &start, &ns)) {
        return NULL;
    }
    uint64_t s = 0;
    int r = process_start(pid, &s);
    if (r < 0) {
        Py_RETURN_NONE;
    }
    rs_region_holder h = {(uint64_t)ns << 32 | (pid & 0xffffffffu), start};
    return Py_BuildValue("(KN)", (unsigned long long)s,
                         PyBool_FromLong(!rs_region_holder_dead(&h, resil_region_alive, NULL)));
}

static PyObject *region_repr(RegionObject *self) {
    if (!self->base) {
        return PyUnicode_FromFormat("<%s path=%R closed>", Py_TYPE(self)->tp_name, self->path);
    }
    return PyUnicode_FromFormat("<%s path=%R size=%llu used=%llu objects=%u>",
                                Py_TYPE(self)->tp_name, self->path,
                                (unsigned long long)self->size,
                                (unsigned long long)rs_region_used(self->base),
                                (unsigned)rs_region_count(self->base));
}

static PyObject *region_get(RegionObject *self, void *closure) {
    switch ((int)(intptr_t)closure) {
    case 0: return Py_NewRef(self->path);
    case 1: return PyLong_FromUnsignedLongLong(self->size);
    case 2: return PyFloat_FromDouble((double)self->lease_ns / 1e9);
    default: return PyBool_FromLong(self->base == NULL);
    }
}

/* The wall-clock time one lease from now: how long a lock is waited for
 * (pthread_mutex_timedlock takes CLOCK_REALTIME). */
static void lease_deadline(const RegionObject *r, struct timespec *t) {
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_sec += (time_t)(r->lease_ns / RS_NS_PER_SEC);
    t->tv_nsec += (long)(r->lease_ns % RS_NS_PER_SEC);
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* The UTF-8 of str s, or NULL with ValueError naming param when s holds a
 * lone surrogate (no UTF-8 exists for it). */
static const char *utf8_of(PyObject *s, Py_ssize_t *len, const char *param) {
    const char *u = PyUnicode_AsUTF8AndSize(s, len);
    if (!u && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "%s must be a str encodable as UTF-8 in a shared region (no lone "
                     "surrogates), got %.80R",
                     param, s);
    }
    return u;
}

int resil_region_check_shared(resil_state *st, PyObject *shared, int named, const char *cls,
                              const char *name_arg) {
    if (shared == Py_None) {
        return 0;
    }
    if (!PyObject_TypeCheck(shared, st->Region_type)) {
        PyErr_Format(PyExc_TypeError, "shared must be None or a resil.SharedRegion, not %.100s",
                     Py_TYPE(shared)->tp_name);
        return -1;
    }
    if (!named) {
        PyErr_Format(PyExc_TypeError,
                     "%s() with shared= needs %s: the name every process sharing it opens it "
                     "by (two unnamed ones would otherwise be one)",
                     cls, name_arg);
        return -1;
    }
    return 0;
}

int resil_region_attach(resil_state *st, PyObject *region, const rs_region_type *type,
                        PyObject *name, const uint64_t *params, const rs_field *fields,
                        uint64_t *offset) {
    if (resil_region_check_shared(st, region, 1, NULL, NULL) < 0) {
        return -1;
    }
    RegionObject *r = (RegionObject *)region;
    Py_ssize_t len;
    const char *s = utf8_of(name, &len, "name");
    if (!s) {
        return -1;
    }
    if (len > (Py_ssize_t)RS_REGION_NAME_MAX || memchr(s, '\0', (size_t)len)) {
        PyErr_Format(PyExc_ValueError,
                     "name must be at most %u bytes of UTF-8 without NUL in a shared region, "
                     "got %R",
                     RS_REGION_NAME_MAX, name);
        return -1;
    }
    if (!resil_region_block(region, 0)) {
        return -1;
    }
    struct timespec deadline;
    lease_deadline(r, &deadline);
    uint32_t which = 0;
    rs_region_status rc;
    char *base = r->base;
    r->waiters++;
    Py_BEGIN_ALLOW_THREADS
    rc = rs_region_attach(base, type, s, (uint32_t)len, params, &deadline, offset, &which);
    Py_END_ALLOW_THREADS
    r->waiters--;
    if (!resil_region_block(region, 0)) {
        unmap(r); /* closed meanwhile */
        return -1;
    }
    if (rc == RS_REGION_OK) {
        return 0;
    }
    const known_type *k = known(type->tag);
    if (rc == RS_REGION_MISMATCH && (!k || which >= (uint32_t)k->nfields)) {
        /* a parameter word the type does not have differs: the entry is damaged */
        region_error(region, "%s (the directory entry of the %s %R holds a parameter no %s "
                     "has)", rs_region_reason(RS_REGION_CORRUPT), type->name, name, type->name);
        return -1;
    }
    if (rc == RS_REGION_MISMATCH) {
        const rs_field *f = &fields[which];
        const rs_region_entry *e = NULL;
        const rs_region_header *h = (const rs_region_header *)r->base;
        for (uint32_t i = 0; i < rs_region_count(h); i++) {
            if (h->dir[i].type == type->tag && h->dir[i].name_len == (uint32_t)len &&
                memcmp(h->dir[i].name, s, (size_t)len) == 0) {
                e = &h->dir[i];
            }
        }
        PyObject *there = e ? param_value(f, e->params[which]) : NULL;
        PyObject *here = param_value(f, params[which]);
        if (there && here) {
            PyErr_Format(PyExc_ValueError,
                         "%s: the %s %R in region %R has %s=%R, not %R (the first process "
                         "sets the parameters; every other must pass the same)",
                         f->name, type->name, name, r->path, f->name, there, here);
        }
        Py_XDECREF(there);
        Py_XDECREF(here);
        return -1;
    }
    if (rc == RS_REGION_FULL) {
        region_error(region, "full: no room for the %s %R in size=%llu bytes (%llu used); "
                     "remove the file to make a larger region",
                     type->name, name, (unsigned long long)r->size,
                     (unsigned long long)rs_region_used(r->base));
        return -1;
    }
    region_error(region, "%s (attaching the %s %R)", rs_region_reason(rc), type->name, name);
    return -1;
}

int resil_region_lock_slow(PyObject *region, int rc, rs_region_mutex *m,
                           const rs_region_type *type, void *block, const uint64_t *params) {
    RegionObject *r = (RegionObject *)region;
    if (rc == 2) {
        struct timespec deadline;
        lease_deadline(r, &deadline);
        r->waiters++;
        Py_BEGIN_ALLOW_THREADS
        rc = rs_region_timedlock(m, &deadline);
        Py_END_ALLOW_THREADS
        r->waiters--;
        if (!r->base) { /* closed while this thread waited */
            if (rc == 1) {
                type->repair(block, params);
            }
            if (rc == 0 || rc == 1) {
                rs_region_unlock(m);
            }
            unmap(r);
            resil_region_block(region, 0);
            return -1;
        }
    }
    if (rc == 1) {
        type->repair(block, params); /* its holder died mid-update */
        return 0;
    }
    if (rc == 0) {
        return 0;
    }
    region_error(region, "the lock of a %s %s", type->name,
                 rc == 2 ? "was held longer than the lease" : "is unusable");
    return -1;
}

int resil_region_wait_end(PyObject *region) {
    RegionObject *r = (RegionObject *)region;
    r->waiters--;
    if (!r->base) {
        unmap(r); /* closed while this thread waited */
        resil_region_block(region, 0);
        return -1;
    }
    return 0;
}

int resil_region_key(PyObject *region, PyObject *key, uint64_t out[2]) {
    const uint64_t *secret = ((rs_region_header *)((RegionObject *)region)->base)->secret;
    if (PyUnicode_Check(key)) {
        Py_ssize_t len;
        const char *s = utf8_of(key, &len, "key");
        if (!s) {
            return -1;
        }
        rs_region_digest(secret, 's', s, (size_t)len, out);
        return 0;
    }
    if (PyBytes_Check(key)) {
        rs_region_digest(secret, 'b', PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key), out);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "key must be None, a str or bytes with a shared region, not "
                 "%.100s", Py_TYPE(key)->tp_name);
    return -1;
}

static PyMethodDef region_methods[] = {
    {"close", (PyCFunction)region_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Unmaps the region from this process (the file and its objects stay for\n"
     "the others). Objects attached through it raise RegionError afterwards.\n"
     "Closing twice does nothing."},
    {"__enter__", (PyCFunction)region_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nThe region itself."},
    {"__exit__", (PyCFunction)region_exit, METH_VARARGS,
     "__exit__($self, exc_type, exc, tb, /)\n--\n\nCloses the region."},
    {"stats", (PyCFunction)region_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "The region's figures, JSON-serialisable: path, bytes (its size),\n"
     "used_bytes (allocated to its header and objects), objects (how many),\n"
     "lease (seconds)."},
    {"objects", (PyCFunction)region_objects, METH_NOARGS,
     "objects($self, /)\n--\n\n"
     "Every object in the region, in creation order: a list of dicts with type\n"
     "(the class name, e.g. 'RateLimiter'), name and parameters (a dict)."},
    {"check", (PyCFunction)region_check, METH_NOARGS,
     "check($self, /)\n--\n\n"
     "Walks the header, the directory and every object's state, without\n"
     "locking, and returns the problems found as a list of str: empty when the\n"
     "region is sound. Run it while no process updates the region, since an\n"
     "update in progress may be read half-done."},
    {"_hold_lock", (PyCFunction)region_hold_lock, METH_O,
     "_hold_lock($self, name, /)\n--\n\n"
     "Test hook: takes the directory's lock (name None) or that object's lock\n"
     "and keeps it; the test then kills the process."},
    {"_process", (PyCFunction)region_process, METH_VARARGS | METH_CLASS,
     "_process($cls, pid, start=0, ns=<this process's>, /)\n--\n\n"
     "Test hook: (start time of pid, whether (pid, start) of pid namespace ns\n"
     "(an inode's low 32 bits) lives: one of another namespace always counts as\n"
     "living), or None when /proc cannot tell."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef region_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RegionObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef region_getset[] = {
    {"path", (getter)region_get, NULL, "The region file's path.", (void *)0},
    {"size", (getter)region_get, NULL, "The region's size in bytes (the file's).", (void *)1},
    {"lease", (getter)region_get, NULL, "The region's lease, seconds.", (void *)2},
    {"closed", (getter)region_get, NULL, "True once close() was called.", (void *)3},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot region_slots[] = {
    {Py_tp_doc, "Region(path, size=1048576, *, lease=30.0)\n--\n\n"
                "The C base of resil.SharedRegion: a memory-mapped region file shared by\n"
                "the processes of a host. See resil.SharedRegion."},
    {Py_tp_new, region_new},
    {Py_tp_dealloc, region_dealloc},
    {Py_tp_traverse, region_traverse},
    {Py_tp_repr, region_repr},
    {Py_tp_methods, region_methods},
    {Py_tp_members, region_members},
    {Py_tp_getset, region_getset},
    {0, NULL},
};

static PyType_Spec region_spec = {
    .name = "resil._resil.Region",
    .basicsize = sizeof(RegionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = region_slots,
};

int resil_region_init_types(PyObject *module, resil_state *st) {
    st->RegionError = PyErr_NewExceptionWithDoc(
        "resil.RegionError",
        "A shared region cannot be used: its file is not a resil region, is\n"
        "truncated or corrupt, comes from another layout version, is full, or\n"
        "the region was closed. The message names the path.",
        st->ResilError, NULL);
    if (!st->RegionError || PyModule_AddObjectRef(module, "RegionError", st->RegionError) < 0) {
        return -1;
    }
    return resil_add_type_with_ranges(module, &region_spec, &st->Region_type, REGION_FIELDS,
                                      RF_COUNT);
}
