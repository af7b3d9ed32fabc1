/* rs_monitor.c - a monitor's recorded data in a shared region. */
#include "rs_monitor.h"

#include <string.h>

const double RS_MON_BOUNDS_MS[RS_MON_BUCKETS] = {
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0, 30000.0, 60000.0,
};

const rs_field RS_MON_FIELDS[RS_MNF_COUNT] = {
    {"retention", RS_FIELD_SECONDS, 1e-6, 365 * 86400.0, 0, NULL},
    {"slots", RS_FIELD_INT, 1, RS_HIST_MAX_SLOTS, 0, "with retention / slots >= 1 ns"},
    {"alert_error_rate", RS_FIELD_NUMBER, 0.0, 100.0, RS_FIELD_OPEN_LO, NULL},
    {"alert_response_ms", RS_FIELD_NUMBER, 0.0, 1e12, RS_FIELD_OPEN_LO, NULL},
    {"max_components", RS_FIELD_INT, 1, 256, 0, NULL},
    {"max_series", RS_FIELD_INT, 1, 1 << 20, 0, NULL},
};

#define SUB_BITS RS_HIST_WINDOW_SUB_BITS
#define MAX_BITS RS_HIST_WINDOW_MAX_BITS

static double as_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

rs_status rs_mon_params(uint64_t retention_ns, uint64_t slots, double error_rate,
                        double response_ms, uint64_t max_components, uint64_t max_series,
                        uint64_t params[RS_REGION_PARAMS]) {
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_RETENTION], (double)retention_ns / 1e9)) {
        return RS_EFIELD_BASE + RS_MNF_RETENTION;
    }
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_SLOTS], (double)slots) || retention_ns / slots < 1) {
        return RS_EFIELD_BASE + RS_MNF_SLOTS;
    }
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_ERROR_RATE], error_rate)) {
        return RS_EFIELD_BASE + RS_MNF_ERROR_RATE;
    }
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_RESPONSE_MS], response_ms)) {
        return RS_EFIELD_BASE + RS_MNF_RESPONSE_MS;
    }
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_MAX_COMPONENTS], (double)max_components)) {
        return RS_EFIELD_BASE + RS_MNF_MAX_COMPONENTS;
    }
    if (!rs_field_ok(&RS_MON_FIELDS[RS_MNF_MAX_SERIES], (double)max_series)) {
        return RS_EFIELD_BASE + RS_MNF_MAX_SERIES;
    }
    memset(params, 0, RS_REGION_PARAMS * sizeof params[0]);
    params[RS_MNF_RETENTION] = retention_ns;
    params[RS_MNF_SLOTS] = slots;
    memcpy(&params[RS_MNF_ERROR_RATE], &error_rate, sizeof error_rate);
    memcpy(&params[RS_MNF_RESPONSE_MS], &response_ms, sizeof response_ms);
    params[RS_MNF_MAX_COMPONENTS] = max_components;
    params[RS_MNF_MAX_SERIES] = max_series;
    return RS_OK;
}

uint32_t rs_mon_bucket(double ms) {
    uint32_t i = 0;
    while (i < RS_MON_BUCKETS && ms > RS_MON_BOUNDS_MS[i]) {
        i++;
    }
    return i;
}

/* ---- layout ---------------------------------------------------------------- */

typedef struct layout {
    uint64_t slot_ns, hist_size, comps_off, series_off, hists_off, size;
} layout;

static uint64_t align64(uint64_t n) { return (n + 63u) & ~(uint64_t)63u; }

/* The layout the parameters make, or 0 when they are not a monitor's
 * (they may come from a damaged file). */
static int layout_of(const uint64_t *params, layout *l) {
    uint64_t retention = params[RS_MNF_RETENTION], slots = params[RS_MNF_SLOTS];
    uint64_t params_again[RS_REGION_PARAMS];
    if (slots < 1 || rs_mon_params(retention, slots, as_double(params[RS_MNF_ERROR_RATE]),
                                   as_double(params[RS_MNF_RESPONSE_MS]),
                                   params[RS_MNF_MAX_COMPONENTS], params[RS_MNF_MAX_SERIES],
                                   params_again) != RS_OK ||
        memcmp(params, params_again, sizeof params_again) != 0) {
        return 0;
    }
    l->slot_ns = retention / slots;
    l->hist_size = align64(rs_hist_flat_size(SUB_BITS, MAX_BITS, slots, l->slot_ns));
    l->comps_off = align64(sizeof(rs_mon_block));
    l->series_off = l->comps_off + align64(params[RS_MNF_MAX_COMPONENTS] * sizeof(rs_mon_comp));
    l->hists_off = l->series_off +
                   align64(2 * params[RS_MNF_MAX_SERIES] * sizeof(rs_mon_series));
    l->size = l->hists_off + params[RS_MNF_MAX_COMPONENTS] * l->hist_size;
    return 1;
}

static uint64_t block_size(const uint64_t *params) {
    layout l;
    return layout_of(params, &l) ? l.size : UINT64_MAX;
}

rs_mon_comp *rs_mon_comp_at(rs_mon_block *b, uint64_t i) {
    return (rs_mon_comp *)((char *)b + b->comps_off) + i;
}

rs_hist_flat *rs_mon_hist_at(rs_mon_block *b, uint64_t i) {
    return (rs_hist_flat *)((char *)b + b->hists_off + i * b->hist_size);
}

rs_mon_series *rs_mon_series_slot(rs_mon_block *b, uint64_t i) {
    return (rs_mon_series *)((char *)b + b->series_off) + i;
}

static void block_init(void *block, const uint64_t *params) {
    rs_mon_block *b = block;
    layout l;
    layout_of(params, &l);
    b->retention_ns = params[RS_MNF_RETENTION];
    b->slots = params[RS_MNF_SLOTS];
    b->slot_ns = l.slot_ns;
    b->max_components = params[RS_MNF_MAX_COMPONENTS];
    b->max_series = params[RS_MNF_MAX_SERIES];
    b->hist_size = l.hist_size;
    b->comps_off = l.comps_off;
    b->series_off = l.series_off;
    b->hists_off = l.hists_off;
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        rs_window_init_buckets(&b->events[k], b->retention_ns, (uint32_t)b->slots, 0);
    }
    rs_region_mutex_init(&b->lock);
}

/* ---- checks and repair ------------------------------------------------------- */

static int window_matches(const rs_window *w, const rs_mon_block *b) {
    return w->timed == 1 && w->ring == NULL && w->nbuckets == b->slots &&
           w->width_ns == b->retention_ns / b->slots;
}

static int block_check(const void *block, uint64_t size, const uint64_t *params,
                       void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_mon_block *b = block;
    layout l;
    if (!layout_of(params, &l) || size != l.size) {
        report(ctx, "monitor: parameters or block size invalid");
        return 1;
    }
    if (b->retention_ns != params[RS_MNF_RETENTION] || b->slots != params[RS_MNF_SLOTS] ||
        b->slot_ns != l.slot_ns || b->max_components != params[RS_MNF_MAX_COMPONENTS] ||
        b->max_series != params[RS_MNF_MAX_SERIES] || b->hist_size != l.hist_size ||
        b->comps_off != l.comps_off || b->series_off != l.series_off ||
        b->hists_off != l.hists_off) {
        report(ctx, "monitor: settings differ from its parameters");
        return 1;
    }
    int n = 0;
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        n += !window_matches(&b->events[k], b);
    }
    rs_mon_block *mb = (rs_mon_block *)(uintptr_t)block; /* read only below */
    for (uint64_t i = 0; i < b->max_components; i++) {
        const rs_mon_comp *c = rs_mon_comp_at(mb, i);
        int published = (c->d0 | c->d1) != 0;
        if (published && (!window_matches(&c->errors, b) ||
                          !rs_hist_flat_matches(rs_mon_hist_at(mb, i), SUB_BITS, MAX_BITS,
                                                b->slots, b->slot_ns))) {
            n++;
        }
    }
    if (n) {
        report(ctx, "monitor: a window's settings differ from its parameters");
    }
    return n ? 1 : 0;
}

static int label_ok(const rs_mon_label *l) {
    return l->len <= RS_MON_LABEL_MAX && l->s[l->len] == '\0';
}

static uint64_t count_comps(const rs_mon_block *b) {
    rs_mon_block *mb = (rs_mon_block *)(uintptr_t)b;
    uint64_t n = 0;
    while (n < b->max_components) {
        const rs_mon_comp *c = rs_mon_comp_at(mb, n);
        if ((c->d0 | c->d1) == 0) {
            break;
        }
        n++;
    }
    return n;
}

static uint64_t count_series(const rs_mon_block *b) {
    rs_mon_block *mb = (rs_mon_block *)(uintptr_t)b;
    uint64_t n = 0;
    for (uint64_t i = 0; i < 2 * b->max_series; i++) {
        const rs_mon_series *s = rs_mon_series_slot(mb, i);
        n += (s->d0 | s->d1) != 0;
    }
    return n;
}

/* Run after block_check passed: the settings are the parameters'. */
static int block_check_state(const void *block, const uint64_t *params,
                             void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_mon_block *b = block;
    rs_mon_block *mb = (rs_mon_block *)(uintptr_t)block; /* read only */
    (void)params;
    int n = 0;
    if (b->journal.active) {
        report(ctx, "monitor: a record was interrupted half-way (its journal is active)");
        n++;
    }
    uint64_t comps = count_comps(b);
    if (b->ncomps != comps) {
        report(ctx, "monitor: the count of components differs from those published");
        n++;
    }
    for (uint64_t i = comps; i < b->max_components; i++) {
        const rs_mon_comp *c = rs_mon_comp_at(mb, i);
        if ((c->d0 | c->d1) != 0) {
            report(ctx, "monitor: a component is published after an empty record");
            n++;
            break;
        }
    }
    for (uint64_t i = 0; i < comps; i++) {
        const rs_mon_comp *c = rs_mon_comp_at(mb, i);
        if (!label_ok(&c->name)) {
            report(ctx, "monitor: a component's name is out of bounds");
            n++;
        }
        if (!rs_window_consistent(&c->errors)) {
            report(ctx, "monitor: a component's error window differs from its slots");
            n++;
        }
        n += rs_hist_flat_check_state(rs_mon_hist_at(mb, i), report, ctx);
    }
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        if (!rs_window_consistent(&b->events[k])) {
            report(ctx, "monitor: an event window differs from its slots");
            n++;
        }
    }
    if (b->nseries != count_series(b)) {
        report(ctx, "monitor: the count of series differs from those published");
        n++;
    }
    if (b->nseries > b->max_series) {
        report(ctx, "monitor: more series than max_series");
        n++;
    }
    for (uint64_t i = 0; i < 2 * b->max_series; i++) {
        const rs_mon_series *s = rs_mon_series_slot(mb, i);
        if ((s->d0 | s->d1) != 0 &&
            (s->kind < RS_MON_REQUEST || s->kind > RS_MON_EVENT || s->ok > 1 ||
             !label_ok(&s->a) || !label_ok(&s->b))) {
            report(ctx, "monitor: a series' kind or labels are out of bounds");
            n++;
            break;
        }
    }
    return n;
}

static void fix_label(rs_mon_label *l) {
    if (l->len > RS_MON_LABEL_MAX) {
        l->len = RS_MON_LABEL_MAX;
    }
    l->s[l->len] = '\0';
}

static void journal_undo(rs_mon_block *b);

static void block_repair(void *block, const uint64_t *params) {
    rs_mon_block *b = block;
    (void)params;
    journal_undo(b);
    b->ncomps = count_comps(b);
    for (uint64_t i = b->ncomps; i < b->max_components; i++) {
        rs_mon_comp *c = rs_mon_comp_at(b, i);
        c->d0 = c->d1 = 0; /* only damage publishes one after a gap */
    }
    for (uint64_t i = 0; i < b->ncomps; i++) {
        rs_mon_comp *c = rs_mon_comp_at(b, i);
        fix_label(&c->name);
        rs_window_recount(&c->errors);
        rs_hist_flat_repair(rs_mon_hist_at(b, i));
    }
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        rs_window_recount(&b->events[k]);
    }
    for (uint64_t i = 0; i < 2 * b->max_series; i++) {
        rs_mon_series *s = rs_mon_series_slot(b, i);
        if ((s->d0 | s->d1) == 0) {
            continue;
        }
        if (s->kind < RS_MON_REQUEST || s->kind > RS_MON_EVENT || s->ok > 1) {
            s->d0 = s->d1 = 0; /* only damage makes one: it cannot be rendered */
            continue;
        }
        fix_label(&s->a);
        fix_label(&s->b);
    }
    b->nseries = count_series(b);
}

const rs_region_type RS_MON_REGION_TYPE = {
    .tag = RS_MON_TAG,
    .name = "monitor",
    .block_size = block_size,
    .init = block_init,
    .check = block_check,
    .check_state = block_check_state,
    .repair = block_repair,
    .drop_holder = NULL, /* a monitor hands out no permits */
};

/* ---- lookups -------------------------------------------------------------------- */

static void set_label(rs_mon_label *l, const char *s, uint32_t len) {
    memcpy(l->s, s, len);
    l->s[len] = '\0';
    l->len = len;
}

rs_mon_comp *rs_mon_find_comp(rs_mon_block *b, const rs_mon_key *key, uint64_t *index) {
    for (uint64_t i = 0; i < b->ncomps; i++) {
        rs_mon_comp *c = rs_mon_comp_at(b, i);
        if (c->d0 == key->d0 && c->d1 == key->d1) {
            *index = i;
            return c;
        }
    }
    return NULL;
}

/* The series slot of key: its own, or the empty one it would take; NULL
 * when it has none and the table is full. Linear probing from d0; the
 * table has twice max_series slots and holds max_series at most, so an
 * empty slot always ends a probe. */
static rs_mon_series *series_slot(rs_mon_block *b, const rs_mon_key *key) {
    uint64_t cap = 2 * b->max_series;
    uint64_t i = key->d0 % cap;
    for (uint64_t step = 0; step < cap; step++) {
        rs_mon_series *s = rs_mon_series_slot(b, i);
        if ((s->d0 | s->d1) == 0) {
            return b->nseries < b->max_series ? s : NULL;
        }
        if (s->d0 == key->d0 && s->d1 == key->d1) {
            return s;
        }
        i = i + 1 == cap ? 0 : i + 1;
    }
    return NULL;
}

/* Publishes a new series in slot s (empty): labels first, digest last. */
static void series_publish(rs_mon_block *b, rs_mon_series *s, const rs_mon_key *key,
                           uint32_t kind, int ok) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->ok = ok ? 1u : 0u;
    set_label(&s->a, key->a, key->alen);
    set_label(&s->b, key->b, key->blen);
    __atomic_store_n(&s->d1, key->d1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->d0, key->d0, __ATOMIC_RELEASE);
    b->nseries++;
}

static int series_new(const rs_mon_series *s) { return (s->d0 | s->d1) == 0; }

/* ---- the journal ------------------------------------------------------------------ */

static rs_window *journal_window(rs_mon_block *b, uint64_t w) {
    if (w == 0) {
        return NULL;
    }
    if (w <= b->max_components) {
        return &rs_mon_comp_at(b, w - 1)->errors;
    }
    return w - 1 - b->max_components < RS_MON_KINDS ? &b->events[w - 1 - b->max_components]
                                                    : NULL;
}

static rs_mon_series *journal_series(rs_mon_block *b, uint64_t off) {
    return off ? (rs_mon_series *)((char *)b + off) : NULL;
}

static uint64_t series_off(const rs_mon_block *b, const rs_mon_series *s) {
    return s ? (uint64_t)((const char *)s - (const char *)b) : 0;
}

/* Notes the words a record's counts will change, then marks the journal
 * active. hist: the component whose histogram takes ns (or UINT64_MAX);
 * w: the window taking an outcome (its journal_window number, or 0). */
static void journal_begin(rs_mon_block *b, uint64_t hist, uint32_t hslot, uint64_t ns,
                          uint64_t w, rs_mon_series *op, uint32_t op_bucket, rs_mon_series *one) {
    rs_mon_journal *j = &b->journal;
    j->hist = hist == UINT64_MAX ? 0 : hist + 1;
    if (j->hist) {
        rs_hist_flat *h = rs_mon_hist_at(b, hist);
        j->hslot = hslot;
        j->hbucket = rs_hist_flat_bucket(h, ns);
        j->hcount = h->counts[(size_t)hslot * h->nbuckets + j->hbucket];
        j->hstats = h->slot[hslot];
    }
    j->window = w;
    rs_window *win = journal_window(b, w);
    if (win) {
        j->wpos = win->head_pos;
        j->wbucket = win->buckets[win->head_pos];
        j->wtotal = win->total;
        j->wfailures = win->failures;
    }
    j->op_off = series_off(b, op);
    if (op) {
        j->op_bucket = op_bucket;
        j->op_count = op->counts[op_bucket];
        j->op_sum = op->sum_ms;
    }
    j->one_off = series_off(b, one);
    if (one) {
        j->one_count = one->counts[0];
    }
    __atomic_store_n(&j->active, 1, __ATOMIC_RELEASE);
}

static void journal_end(rs_mon_block *b) {
    __atomic_store_n(&b->journal.active, 0, __ATOMIC_RELEASE);
}

/* Undoes the record of an active journal: every noted word restored. The
 * offsets are checked, since the journal may be damaged too. */
static void journal_undo(rs_mon_block *b) {
    rs_mon_journal *j = &b->journal;
    if (!j->active) {
        return;
    }
    if (j->hist && j->hist <= b->max_components) {
        rs_hist_flat *h = rs_mon_hist_at(b, j->hist - 1);
        if (j->hslot < h->nslots && j->hbucket < h->nbuckets) {
            h->counts[(size_t)j->hslot * h->nbuckets + j->hbucket] = j->hcount;
            h->slot[j->hslot] = j->hstats;
        }
    }
    rs_window *win = journal_window(b, j->window);
    if (win && j->wpos < RS_WINDOW_MAX_BUCKETS) {
        win->buckets[j->wpos] = j->wbucket;
        win->total = j->wtotal;
        win->failures = j->wfailures;
    }
    uint64_t lo = b->series_off, hi = b->series_off + 2 * b->max_series * sizeof(rs_mon_series);
    if (j->op_off >= lo && j->op_off < hi && (j->op_off - lo) % sizeof(rs_mon_series) == 0 &&
        j->op_bucket <= RS_MON_BUCKETS) {
        rs_mon_series *op = journal_series(b, j->op_off);
        op->counts[j->op_bucket] = j->op_count;
        op->sum_ms = j->op_sum;
    }
    if (j->one_off >= lo && j->one_off < hi && (j->one_off - lo) % sizeof(rs_mon_series) == 0) {
        journal_series(b, j->one_off)->counts[0] = j->one_count;
    }
    b->interrupted++;
    j->active = 0;
}

/* ---- updates ---------------------------------------------------------------------- */

rs_status rs_mon_record(rs_mon_block *b, uint64_t now_ns, const rs_mon_key *comp,
                        const rs_mon_key *op, const rs_mon_key *err, int ok, uint64_t ns,
                        double ms) {
    uint64_t ci = 0;
    rs_mon_comp *c = rs_mon_find_comp(b, comp, &ci);
    rs_mon_series *s_op = series_slot(b, op);
    rs_mon_series *s_err = ok ? NULL : series_slot(b, err);
    /* room for every new entry, or nothing changes (a new operation and a
     * new error type may have found the same empty slot: both need one) */
    uint64_t new_series = (uint64_t)(s_op && series_new(s_op)) +
                          (uint64_t)(s_err && series_new(s_err));
    if ((!c && b->ncomps >= b->max_components) || !s_op || (!ok && !s_err) ||
        b->nseries + new_series > b->max_series) {
        b->overflow_records++;
        return RS_EREJECTED;
    }
    if (!c) {
        ci = b->ncomps;
        c = rs_mon_comp_at(b, ci);
        memset(c, 0, sizeof *c);
        set_label(&c->name, comp->a, comp->alen);
        rs_window_init_buckets(&c->errors, b->retention_ns, (uint32_t)b->slots, now_ns);
        rs_hist_flat *h = rs_mon_hist_at(b, ci);
        memset(h, 0, b->hist_size);
        rs_hist_flat_init(h, SUB_BITS, MAX_BITS, b->slots, b->slot_ns);
        __atomic_store_n(&c->d1, comp->d1, __ATOMIC_RELAXED);
        __atomic_store_n(&c->d0, comp->d0, __ATOMIC_RELEASE);
        b->ncomps++;
    }
    int err_new = s_err && series_new(s_err);
    if (series_new(s_op)) {
        series_publish(b, s_op, op, RS_MON_REQUEST, ok);
    }
    if (err_new) {
        s_err = series_slot(b, err); /* another slot if the operation took this one */
        series_publish(b, s_err, err, RS_MON_ERROR, 0);
    }
    /* moving the windows may be left half-done: repair recounts them */
    rs_hist_flat *h = rs_mon_hist_at(b, ci);
    uint32_t hslot = rs_hist_flat_advance(h, now_ns);
    double unused;
    if (!ok) {
        rs_window_roll(&c->errors, now_ns, &unused);
    }
    uint32_t bucket = rs_mon_bucket(ms);
    journal_begin(b, ci, hslot, ns, ok ? 0 : ci + 1, s_op, bucket, ok ? NULL : s_err);
    rs_hist_flat_add(h, hslot, ns);
    if (!ok) {
        rs_window_add(&c->errors, 0, &unused);
        s_err->counts[0]++;
    }
    s_op->sum_ms += ms;
    s_op->counts[bucket]++;
    journal_end(b);
    return RS_OK;
}

rs_status rs_mon_event(rs_mon_block *b, uint64_t now_ns, int64_t kind, const rs_mon_key *key) {
    rs_mon_series *s = series_slot(b, key);
    if (!s) {
        b->overflow_events++;
        return RS_EREJECTED;
    }
    if (series_new(s)) {
        series_publish(b, s, key, RS_MON_EVENT, 1);
    }
    int windowed = kind >= 0 && kind < (int64_t)RS_MON_KINDS;
    double unused;
    if (windowed) {
        rs_window_roll(&b->events[kind], now_ns, &unused);
    }
    journal_begin(b, UINT64_MAX, 0, 0, windowed ? 1 + b->max_components + (uint64_t)kind : 0,
                  NULL, 0, s);
    if (windowed) {
        rs_window_add(&b->events[kind], 0, &unused);
    }
    s->counts[0]++;
    journal_end(b);
    return RS_OK;
}

uint64_t rs_mon_window_total(rs_window *w, uint64_t now_ns) {
    double unused;
    rs_window_roll(w, now_ns, &unused);
    return w->total;
}
