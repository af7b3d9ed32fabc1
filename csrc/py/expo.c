/* expo.c - breaker_exposition(): the Prometheus text exposition (format
 * 0.0.4) of many circuit breakers.
 *
 * Rendering six families for every breaker is the hot part of a /metrics
 * scrape, so the whole text is written into one growing UTF-8 buffer and
 * turned into a str once: no Python object per line or per value.
 *
 * Two passes. The first brings each breaker up to date (its tick may run
 * listeners, that is Python code) and copies its numbers and its escaped
 * label into C memory; the second writes the families from that copy and
 * runs no Python code, so nothing can change under it. */
#include "resil_py.h"

#include <math.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} buf;

/* Makes room for n more bytes; -1 with MemoryError. */
static int reserve(buf *b, size_t n) {
    if (RS_LIKELY(b->cap - b->len >= n)) {
        return 0;
    }
    if (n > (size_t)PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        cap = cap > (size_t)PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Appends within room already reserved. */
static inline void put(buf *b, const char *s, size_t n) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static int append(buf *b, const char *s, size_t n) {
    if (reserve(b, n) < 0) {
        return -1;
    }
    put(b, s, n);
    return 0;
}

/* Room that put_u64 and the short spellings of put_double need, newline included. */
#define VALUE_ROOM 32

static inline void put_u64(buf *b, uint64_t v) {
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, tmp + i, sizeof tmp - i);
}

/* A float as Python's repr (the shortest string that round-trips), and
 * +Inf for infinity. A breaker's values are never NaN or -inf (ratios and
 * scores lie in [0, 1]; a mean of latencies >= 0 is +inf only once their sum
 * overflows). VALUE_ROOM must be reserved. */
static int put_double(buf *b, double v) {
    RS_ASSERT(!isnan(v) && v != -INFINITY);
    if (RS_UNLIKELY(isinf(v))) {
        put(b, "+Inf", 4);
    } else if (v == 0.0 && !signbit(v)) {
        put(b, "0.0", 3); /* the common values, without an allocation */
    } else if (v == 1.0) {
        put(b, "1.0", 3);
    } else {
        char *s = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!s) {
            return -1;
        }
        size_t n = strlen(s);
        int rc = append(b, s, n); /* at most 24 bytes; no need to trust that */
        PyMem_Free(s);
        return rc;
    }
    return 0;
}

/* Appends `{label="value"} ` with the value escaped as the format asks:
 * backslash, double quote and newline. */
static int put_label(buf *b, const char *label, size_t label_len, const char *v, size_t n) {
    /* Each byte takes at most two; 5 for the braces, quotes, '=' and space. */
    if (n > ((size_t)PY_SSIZE_T_MAX - label_len - 5) / 2) {
        PyErr_NoMemory();
        return -1;
    }
    if (reserve(b, label_len + 2 * n + 5) < 0) {
        return -1;
    }
    put(b, "{", 1);
    put(b, label, label_len);
    put(b, "=\"", 2);
    char *o = b->p + b->len;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (RS_UNLIKELY(c == '\\' || c == '"' || c == '\n')) {
            *o++ = '\\';
            *o++ = c == '\n' ? 'n' : c;
        } else {
            *o++ = c;
        }
    }
    b->len = (size_t)(o - b->p);
    put(b, "\"} ", 3);
    return 0;
}

/* A metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, without ':', a label name. */
static int valid_name(const char *s, Py_ssize_t n, int colon) {
    if (n == 0) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* One breaker as read in the first pass. */
typedef struct {
    size_t label_off; /* its `{label="name"} ` in the labels buffer */
    size_t label_len;
    resil_breaker_metrics m; /* m.name is not used after the first pass */
} row;

enum { F_STATE, F_FAILURES, F_LATENCY, F_OPENED, F_SUCCESS, F_HEALTH, F_COUNT };

static const struct {
    const char *suffix;
    const char *type;
    const char *help; /* NULL: written by write_state_help */
} families[F_COUNT] = {
    [F_STATE] = {"_state", "gauge", NULL},
    [F_FAILURES] = {"_failures_total", "counter",
                    "Failures the circuit breaker recorded since it was created or reset."},
    [F_LATENCY] = {"_latency_ms", "gauge",
                   "Average latency in milliseconds of the circuit breaker's last recorded calls."},
    [F_OPENED] = {"_last_opened_timestamp_seconds", "gauge",
                  "Unix time when the circuit breaker last opened (no sample if it never did)."},
    [F_SUCCESS] = {"_success_ratio", "gauge",
                   "Share of successes among the calls in the circuit breaker's window, 0 to 1."},
    [F_HEALTH] = {"_health_score", "gauge", "Health score of the circuit breaker, 0 to 1."},
};

/* "Circuit breaker state: 0 CLOSED, 1 DEGRADED, ..." from the engine's own
 * names, so the text cannot drift from resil.State. */
static int write_state_help(buf *b) {
    static const char head[] = "Circuit breaker state:";
    if (append(b, head, sizeof head - 1) < 0) {
        return -1;
    }
    for (int i = 0; i < RS_STATE_COUNT; i++) {
        const char *name = rs_state_name(i);
        size_t n = strlen(name);
        if (reserve(b, n + 8) < 0) {
            return -1;
        }
        put(b, i ? ", " : " ", i ? 2 : 1);
        put_u64(b, (uint64_t)i);
        put(b, " ", 1);
        put(b, name, n);
    }
    return append(b, ".", 1);
}

/* The help text of family f, without a newline. */
static int write_help(buf *b, int f) {
    return families[f].help ? append(b, families[f].help, strlen(families[f].help))
                            : write_state_help(b);
}

static int write_header(buf *b, int f, const char *prefix, size_t plen) {
    size_t slen = strlen(families[f].suffix);
    if (append(b, "# HELP ", 7) < 0 || append(b, prefix, plen) < 0 ||
        append(b, families[f].suffix, slen) < 0 || append(b, " ", 1) < 0 ||
        write_help(b, f) < 0 || append(b, "\n", 1) < 0) {
        return -1;
    }
    if (append(b, "# TYPE ", 7) < 0 || append(b, prefix, plen) < 0 ||
        append(b, families[f].suffix, slen) < 0 || append(b, " ", 1) < 0 ||
        append(b, families[f].type, strlen(families[f].type)) < 0 || append(b, "\n", 1) < 0) {
        return -1;
    }
    return 0;
}

/* First pass for one breaker; runs Python code (its tick reports transitions). */
static int read_breaker(resil_state *st, PyObject *o, Py_ssize_t i, const char *label,
                        size_t label_len, buf *labels, row *r) {
    if (!PyObject_TypeCheck(o, st->Breaker_type)) {
        PyErr_Format(PyExc_TypeError, "breakers[%zd] must be a CircuitBreaker, not %.100s", i,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (resil_breaker_tick(o) < 0) {
        return -1;
    }
    /* From here on no Python code runs: the numbers and the name belong together. */
    if (resil_breaker_read_metrics(o, &r->m) < 0) {
        return -1;
    }
    if (!r->m.name) {
        PyErr_Format(PyExc_ValueError, "breakers[%zd] has no name (it is being destroyed)", i);
        return -1;
    }
    Py_ssize_t n;
    PyObject *escaped = NULL;
    const char *name = PyUnicode_AsUTF8AndSize(r->m.name, &n);
    if (!name) {
        /* A lone surrogate is not UTF-8: write it as \udcxx, as Python's
         * backslashreplace does, rather than fail the whole scrape. */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear();
        escaped = PyUnicode_AsEncodedString(r->m.name, "utf-8", "backslashreplace");
        if (!escaped) {
            return -1;
        }
        name = PyBytes_AS_STRING(escaped);
        n = PyBytes_GET_SIZE(escaped);
    }
    r->m.name = NULL;
    r->label_off = labels->len;
    int rc = put_label(labels, label, label_len, name, (size_t)n);
    Py_XDECREF(escaped);
    if (rc < 0) {
        return -1;
    }
    r->label_len = labels->len - r->label_off;
    return 0;
}

static int write_samples(buf *b, int f, const char *prefix, size_t plen, const row *rows,
                         Py_ssize_t n, const char *labels) {
    size_t slen = strlen(families[f].suffix);
    for (Py_ssize_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        if (f == F_OPENED && !r->m.has_opened) {
            continue;
        }
        if (reserve(b, plen + slen + r->label_len + VALUE_ROOM) < 0) {
            return -1;
        }
        put(b, prefix, plen);
        put(b, families[f].suffix, slen);
        put(b, labels + r->label_off, r->label_len);
        int rc = 0;
        switch (f) {
        case F_STATE:
            put_u64(b, (uint64_t)r->m.state);
            break;
        case F_FAILURES:
            put_u64(b, r->m.failures);
            break;
        case F_LATENCY:
            rc = put_double(b, r->m.avg_latency_ms);
            break;
        case F_OPENED:
            rc = put_double(b, r->m.opened_unix);
            break;
        case F_SUCCESS:
            rc = put_double(b, r->m.success_rate);
            break;
        default:
            rc = put_double(b, r->m.health_score);
            break;
        }
        if (rc < 0 || append(b, "\n", 1) < 0) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(breaker_exposition_doc,
"breaker_exposition($module, /, breakers, prefix='resil_circuit_breaker', label='endpoint')\n"
"--\n"
"\n"
"The Prometheus text exposition (format 0.0.4) of circuit breakers, a str.\n"
"\n"
"breakers: an iterable of CircuitBreaker (a BreakerGroup's .values()); each\n"
"  is brought up to date first, as stats() does, so due transitions run their\n"
"  listeners, and a failing clock raises.\n"
"prefix=\"resil_circuit_breaker\": the metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*).\n"
"label=\"endpoint\": the label holding each breaker's name ([a-zA-Z_][a-zA-Z0-9_]*,\n"
"  not starting with '__').\n"
"\n"
"Six families, each with # HELP and # TYPE and one sample per breaker in the\n"
"given order: <prefix>_state (gauge, the State value), _failures_total\n"
"(counter), _latency_ms (gauge, average latency), _last_opened_timestamp_seconds\n"
"(gauge, Unix time; no sample for a breaker that never opened),\n"
"_success_ratio and _health_score (gauges, 0 to 1); the values are those of\n"
"stats(). No breakers gives the six HELP and TYPE pairs without samples.");

/* The prefix (a metric name) and, when label_obj is given or label is
 * wanted, the label name: the defaults, or the strs given, validated. */
static int parse_names(PyObject *prefix_obj, PyObject *label_obj, const char **prefix,
                       Py_ssize_t *plen, const char **label, Py_ssize_t *llen) {
    *prefix = "resil_circuit_breaker";
    *plen = (Py_ssize_t)strlen(*prefix);
    if (prefix_obj && !(*prefix = PyUnicode_AsUTF8AndSize(prefix_obj, plen))) {
        return -1;
    }
    if (!valid_name(*prefix, *plen, 1)) {
        PyErr_Format(PyExc_ValueError,
                     "prefix must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not %R", prefix_obj);
        return -1;
    }
    if (!label) {
        return 0;
    }
    *label = "endpoint";
    *llen = (Py_ssize_t)strlen(*label);
    if (label_obj && !(*label = PyUnicode_AsUTF8AndSize(label_obj, llen))) {
        return -1;
    }
    if (!valid_name(*label, *llen, 0)) {
        PyErr_Format(PyExc_ValueError,
                     "label must be a label name ([a-zA-Z_][a-zA-Z0-9_]*), not %R", label_obj);
        return -1;
    }
    if (*llen >= 2 && (*label)[0] == '_' && (*label)[1] == '_') {
        PyErr_Format(PyExc_ValueError,
                     "label must not start with '__' (reserved by Prometheus), not %R", label_obj);
        return -1;
    }
    return 0;
}

/* The breakers as a tuple (a copy: listeners run during the ticks and may
 * change a list), or NULL with TypeError. */
static PyObject *breaker_tuple(PyObject *breakers) {
    if (!PyTuple_Check(breakers) && !PyList_Check(breakers) && !Py_TYPE(breakers)->tp_iter &&
        !PySequence_Check(breakers)) {
        PyErr_Format(PyExc_TypeError, "breakers must be an iterable of CircuitBreaker, not %.100s",
                     Py_TYPE(breakers)->tp_name);
        return NULL;
    }
    return PySequence_Tuple(breakers);
}

static PyObject *breaker_exposition(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"breakers", "prefix", "label", NULL};
    PyObject *breakers, *prefix_obj = NULL, *label_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|UU:breaker_exposition", kwlist, &breakers,
                                     &prefix_obj, &label_obj)) {
        return NULL;
    }
    resil_state *st = get_state(module);
    const char *prefix, *label;
    Py_ssize_t plen, llen;
    if (parse_names(prefix_obj, label_obj, &prefix, &plen, &label, &llen) < 0) {
        return NULL;
    }
    PyObject *seq = breaker_tuple(breakers);
    if (!seq) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    buf out = {NULL, 0, 0}, labels = {NULL, 0, 0};
    PyObject *result = NULL;
    row *rows = PyMem_New(row, n ? n : 1);
    if (!rows) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (read_breaker(st, PyTuple_GET_ITEM(seq, i), i, label, (size_t)llen, &labels,
                         &rows[i]) < 0) {
            goto done;
        }
    }
    /* About the final size for typical values, so the buffer rarely grows;
     * only a hint, skipped where the product would not fit. */
    size_t per_line = (size_t)plen + 32 + 24, limit = (size_t)PY_SSIZE_T_MAX / 16;
    if (labels.len < limit && (size_t)n < limit / per_line &&
        reserve(&out, F_COUNT * (labels.len + (size_t)n * per_line) + 1024) < 0) {
        goto done;
    }
    for (int f = 0; f < F_COUNT; f++) {
        if (write_header(&out, f, prefix, (size_t)plen) < 0 ||
            write_samples(&out, f, prefix, (size_t)plen, rows, n, labels.p) < 0) {
            goto done;
        }
    }
    result = PyUnicode_DecodeUTF8(out.p, (Py_ssize_t)out.len, "strict");
done:
    PyMem_Free(rows);
    PyMem_Free(out.p);
    PyMem_Free(labels.p);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(breaker_families_doc,
"breaker_families($module, /, breakers, prefix='resil_circuit_breaker')\n"
"--\n"
"\n"
"The six families of breaker_exposition as data, for registries that render\n"
"the text themselves (prometheus_client): a list of (name, type, help,\n"
"samples) in exposition order, samples a list of (breaker name, value) with\n"
"an int for _state and _failures_total and a float for the others; the same\n"
"names, help texts, values and order as breaker_exposition.");

/* The value of family f for one breaker, as a new reference. */
static PyObject *family_value(int f, const resil_breaker_metrics *m) {
    switch (f) {
    case F_STATE: return PyLong_FromLong(m->state);
    case F_FAILURES: return PyLong_FromUnsignedLongLong(m->failures);
    case F_LATENCY: return PyFloat_FromDouble(m->avg_latency_ms);
    case F_OPENED: return PyFloat_FromDouble(m->opened_unix);
    case F_SUCCESS: return PyFloat_FromDouble(m->success_rate);
    default: return PyFloat_FromDouble(m->health_score);
    }
}

/* (name, type, help, samples) of family f. */
static PyObject *family_tuple(int f, const char *prefix, Py_ssize_t plen,
                              const resil_breaker_metrics *ms, PyObject *const *names,
                              Py_ssize_t n) {
    buf name = {NULL, 0, 0}, help = {NULL, 0, 0};
    PyObject *samples = NULL, *result = NULL;
    if (append(&name, prefix, (size_t)plen) < 0 ||
        append(&name, families[f].suffix, strlen(families[f].suffix)) < 0 ||
        write_help(&help, f) < 0) {
        goto done;
    }
    samples = PyList_New(0);
    if (!samples) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (f == F_OPENED && !ms[i].has_opened) {
            continue;
        }
        PyObject *v = family_value(f, &ms[i]);
        PyObject *pair = v ? PyTuple_Pack(2, names[i], v) : NULL;
        Py_XDECREF(v);
        if (!pair || PyList_Append(samples, pair) < 0) {
            Py_XDECREF(pair);
            goto done;
        }
        Py_DECREF(pair);
    }
    result = Py_BuildValue("(s#ss#O)", name.p, (Py_ssize_t)name.len, families[f].type, help.p,
                           (Py_ssize_t)help.len, samples);
done:
    Py_XDECREF(samples);
    PyMem_Free(name.p);
    PyMem_Free(help.p);
    return result;
}

static PyObject *breaker_families(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"breakers", "prefix", NULL};
    PyObject *breakers, *prefix_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|U:breaker_families", kwlist, &breakers,
                                     &prefix_obj)) {
        return NULL;
    }
    resil_state *st = get_state(module);
    const char *prefix;
    Py_ssize_t plen;
    if (parse_names(prefix_obj, NULL, &prefix, &plen, NULL, NULL) < 0) {
        return NULL;
    }
    PyObject *seq = breaker_tuple(breakers);
    if (!seq) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq), got = 0;
    PyObject *result = NULL;
    resil_breaker_metrics *ms = PyMem_New(resil_breaker_metrics, n ? n : 1);
    PyObject **names = PyMem_New(PyObject *, n ? n : 1);
    if (!ms || !names) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        PyObject *o = PyTuple_GET_ITEM(seq, got);
        if (!PyObject_TypeCheck(o, st->Breaker_type)) {
            PyErr_Format(PyExc_TypeError, "breakers[%zd] must be a CircuitBreaker, not %.100s",
                         got, Py_TYPE(o)->tp_name);
            goto done;
        }
        if (resil_breaker_tick(o) < 0) {
            goto done;
        }
        /* No Python code runs between the tick and the copy. */
        if (resil_breaker_read_metrics(o, &ms[got]) < 0) {
            goto done;
        }
        if (!ms[got].name) {
            PyErr_Format(PyExc_ValueError, "breakers[%zd] has no name (it is being destroyed)",
                         got);
            goto done;
        }
        names[got] = Py_NewRef(ms[got].name);
    }
    result = PyList_New(F_COUNT);
    if (!result) {
        goto done;
    }
    for (int f = 0; f < F_COUNT; f++) {
        PyObject *fam = family_tuple(f, prefix, plen, ms, names, n);
        if (!fam) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, f, fam);
    }
done:
    if (names) {
        for (Py_ssize_t i = 0; i < got; i++) {
            Py_DECREF(names[i]);
        }
    }
    PyMem_Free(names);
    PyMem_Free(ms);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef expo_methods[] = {
    {"breaker_exposition", (PyCFunction)(void (*)(void))breaker_exposition,
     METH_VARARGS | METH_KEYWORDS, breaker_exposition_doc},
    {"breaker_families", (PyCFunction)(void (*)(void))breaker_families,
     METH_VARARGS | METH_KEYWORDS, breaker_families_doc},
    {NULL, NULL, 0, NULL},
};

int resil_expo_init(PyObject *module, resil_state *st) {
    (void)st;
    return PyModule_AddFunctions(module, expo_methods);
}
