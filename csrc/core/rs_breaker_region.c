/* rs_breaker_region.c - a circuit breaker in a region, shared by the
 * processes of a host; see the last part of rs_breaker.h. */
#include "rs_breaker.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const rs_field RS_BREAKER_ADAPTIVE_FIELD = {"adaptive", RS_FIELD_INT, 0, 1, 0, NULL};

static uint64_t bits_of(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double double_of(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void rs_breaker_region_params(const rs_breaker_config *c, uint64_t params[RS_REGION_PARAMS]) {
    memset(params, 0, RS_REGION_PARAMS * sizeof params[0]);
    params[RS_BF_FAILURE_THRESHOLD] = c->failure_threshold;
    params[RS_BF_FAILURE_RATE_THRESHOLD] =
        c->failure_rate_enabled ? bits_of(c->failure_rate_threshold) : 0;
    /* milliseconds in the core, nanoseconds here: a SECONDS field; at least
     * 1 ns, since 0 means off */
    double ns = c->slow_call_ms * 1e6;
    params[RS_BF_SLOW_CALL_DURATION] =
        !c->slow_call_enabled ? 0 : ns < 1.0 ? 1 : ns >= 9.2e18 ? UINT64_C(9200000000000000000)
                                                               : (uint64_t)llround(ns);
    params[RS_BF_SLOW_CALL_RATE_THRESHOLD] = bits_of(c->slow_call_rate_threshold);
    params[RS_BF_WINDOW_SIZE] = c->window_size;
    params[RS_BF_WINDOW_DURATION] = c->window_duration_ns;
    params[RS_BF_MINIMUM_CALLS] = c->minimum_calls;
    params[RS_BF_COOLDOWN] = c->cooldown_ns;
    params[RS_BF_COOLDOWN_MULTIPLIER] = bits_of(c->cooldown_multiplier);
    params[RS_BF_COOLDOWN_MAX] = c->cooldown_max_ns;
    params[RS_BF_HALF_OPEN_PROBES] = c->half_open_probes;
    params[RS_BF_HALF_OPEN_MAX_WAIT] = c->half_open_max_wait_ns;
    params[RS_BF_EWMA_ALPHA] = bits_of(c->ewma_alpha);
    params[RS_BF_SENSITIVITY] = bits_of(c->sensitivity);
    params[RS_BF_MIN_HEALTH_SCORE] = bits_of(c->min_health_score);
    params[RS_BF_LATENCY_WINDOW] = c->latency_window;
    params[RS_BF_COUNT] = c->adaptive ? 1 : 0;
}

rs_status rs_breaker_params_config(const uint64_t *params, rs_breaker_config *c) {
    for (unsigned i = RS_BREAKER_REGION_PARAMS; i < RS_REGION_PARAMS; i++) {
        if (params[i]) {
            return RS_EINVAL;
        }
    }
    if (params[RS_BF_FAILURE_THRESHOLD] > UINT32_MAX || params[RS_BF_WINDOW_SIZE] > UINT32_MAX ||
        params[RS_BF_MINIMUM_CALLS] > UINT32_MAX || params[RS_BF_HALF_OPEN_PROBES] > UINT32_MAX ||
        params[RS_BF_LATENCY_WINDOW] > UINT32_MAX || params[RS_BF_COUNT] > 1 ||
        params[RS_BF_SLOW_CALL_DURATION] > UINT64_C(9200000000000000000)) {
        return RS_EINVAL;
    }
    rs_breaker_config_default(c);
    c->failure_threshold = (uint32_t)params[RS_BF_FAILURE_THRESHOLD];
    c->failure_rate_enabled = params[RS_BF_FAILURE_RATE_THRESHOLD] != 0;
    if (c->failure_rate_enabled) {
        c->failure_rate_threshold = double_of(params[RS_BF_FAILURE_RATE_THRESHOLD]);
    }
    c->slow_call_enabled = params[RS_BF_SLOW_CALL_DURATION] != 0;
    if (c->slow_call_enabled) {
        c->slow_call_ms = (double)params[RS_BF_SLOW_CALL_DURATION] / 1e6;
    }
    c->slow_call_rate_threshold = double_of(params[RS_BF_SLOW_CALL_RATE_THRESHOLD]);
    c->window_size = (uint32_t)params[RS_BF_WINDOW_SIZE];
    c->window_duration_ns = params[RS_BF_WINDOW_DURATION];
    c->minimum_calls = (uint32_t)params[RS_BF_MINIMUM_CALLS];
    c->cooldown_ns = params[RS_BF_COOLDOWN];
    c->cooldown_multiplier = double_of(params[RS_BF_COOLDOWN_MULTIPLIER]);
    c->cooldown_max_ns = params[RS_BF_COOLDOWN_MAX];
    c->half_open_probes = (uint32_t)params[RS_BF_HALF_OPEN_PROBES];
    c->half_open_max_wait_ns = params[RS_BF_HALF_OPEN_MAX_WAIT];
    c->ewma_alpha = double_of(params[RS_BF_EWMA_ALPHA]);
    c->sensitivity = double_of(params[RS_BF_SENSITIVITY]);
    c->min_health_score = double_of(params[RS_BF_MIN_HEALTH_SCORE]);
    c->latency_window = (uint32_t)params[RS_BF_LATENCY_WINDOW];
    c->adaptive = (int)params[RS_BF_COUNT];
    /* the SECONDS fields' own bounds, which the config check leaves to the
     * binding's conversion */
    if ((c->window_duration_ns &&
         !rs_field_ok(&RS_BREAKER_FIELDS[RS_BF_WINDOW_DURATION], (double)c->window_duration_ns / 1e9)) ||
        !rs_field_ok(&RS_BREAKER_FIELDS[RS_BF_COOLDOWN], (double)c->cooldown_ns / 1e9) ||
        !rs_field_ok(&RS_BREAKER_FIELDS[RS_BF_COOLDOWN_MAX], (double)c->cooldown_max_ns / 1e9)) {
        return RS_EINVAL;
    }
    return rs_breaker_config_check(c) == RS_OK ? RS_OK : RS_EINVAL;
}

/* Where the parts of a block with configuration c lie. */
typedef struct {
    uint64_t nprobes, ring_off, values_off, size;
} block_layout;

static block_layout layout_of(const rs_breaker_config *c) {
    block_layout l;
    l.nprobes = c->half_open_probes;
    uint64_t at = sizeof(rs_breaker_block) + 2 * l.nprobes * sizeof(rs_region_permit);
    l.values_off = (at + 7) / 8 * 8;
    at = l.values_off + (uint64_t)c->latency_window * sizeof(double);
    l.ring_off = c->window_duration_ns ? 0 : at;
    l.size = at + (c->window_duration_ns ? 0 : c->window_size);
    return l;
}

static uint64_t block_size(const uint64_t *params) {
    rs_breaker_config c;
    if (rs_breaker_params_config(params, &c) != RS_OK) {
        return 0;
    }
    return layout_of(&c).size;
}

rs_breaker *rs_breaker_block_core(rs_breaker_block *blk) {
    char *base = (char *)blk;
    blk->core.latencies.values = (double *)(void *)(base + blk->values_off);
    blk->core.window.ring = blk->ring_off ? (uint8_t *)(base + blk->ring_off) : NULL;
    return &blk->core;
}

static void block_init(void *block, const uint64_t *params) {
    rs_breaker_block *blk = block;
    rs_breaker_config c;
    if (rs_breaker_params_config(params, &c) != RS_OK) {
        return; /* block_size was 0: never allocated */
    }
    block_layout l = layout_of(&c);
    rs_region_mutex_init(&blk->lock);
    blk->ring_off = l.ring_off;
    blk->values_off = l.values_off;
    blk->nprobes = l.nprobes;
    rs_breaker_init_at(&blk->core, &c, 0, NULL, NULL); /* the rings: set at each lock */
}

static void note(void (*report)(void *, const char *), void *ctx, int *n, const char *what) {
    char buf[160];
    snprintf(buf, sizeof buf, "CircuitBreaker: %s", what);
    report(ctx, buf);
    (*n)++;
}

static int same_config(const rs_breaker_config *a, const rs_breaker_config *b) {
    return a->failure_threshold == b->failure_threshold &&
           a->failure_rate_enabled == b->failure_rate_enabled &&
           bits_of(a->failure_rate_threshold) == bits_of(b->failure_rate_threshold) &&
           a->slow_call_enabled == b->slow_call_enabled &&
           bits_of(a->slow_call_ms) == bits_of(b->slow_call_ms) &&
           bits_of(a->slow_call_rate_threshold) == bits_of(b->slow_call_rate_threshold) &&
           a->window_size == b->window_size && a->window_duration_ns == b->window_duration_ns &&
           a->minimum_calls == b->minimum_calls && a->cooldown_ns == b->cooldown_ns &&
           bits_of(a->cooldown_multiplier) == bits_of(b->cooldown_multiplier) &&
           a->cooldown_max_ns == b->cooldown_max_ns &&
           a->half_open_probes == b->half_open_probes &&
           a->half_open_max_wait_ns == b->half_open_max_wait_ns && a->adaptive == b->adaptive &&
           bits_of(a->ewma_alpha) == bits_of(b->ewma_alpha) &&
           bits_of(a->sensitivity) == bits_of(b->sensitivity) &&
           bits_of(a->min_health_score) == bits_of(b->min_health_score) &&
           a->latency_window == b->latency_window;
}

/* The structure: what only block_init writes. Safe without the lock. */
static int block_check(const void *block, uint64_t size, const uint64_t *params,
                       void (*report)(void *, const char *), void *ctx) {
    const rs_breaker_block *blk = block;
    int n = 0;
    rs_breaker_config c;
    if (rs_breaker_params_config(params, &c) != RS_OK) {
        note(report, ctx, &n, "parameters are not a breaker's");
        return n;
    }
    block_layout l = layout_of(&c);
    if (size != l.size) {
        note(report, ctx, &n, "block size does not match its parameters");
        return n;
    }
    if (!same_config(&blk->core.cfg, &c)) {
        note(report, ctx, &n, "settings differ from its parameters");
    }
    if (blk->ring_off != l.ring_off || blk->values_off != l.values_off ||
        blk->nprobes != l.nprobes) {
        note(report, ctx, &n, "ring offsets or probe records differ from its parameters");
    }
    const rs_window *w = &blk->core.window;
    if (w->timed != (c.window_duration_ns != 0) ||
        (!w->timed && (w->size != c.window_size || w->period != (c.window_size / 10 ? c.window_size / 10 : 1))) ||
        (w->timed && (w->nbuckets != RS_WINDOW_BUCKETS ||
                      w->width_ns != c.window_duration_ns / RS_WINDOW_BUCKETS)) ||
        blk->core.latencies.cap != c.latency_window || blk->core.ejector != NULL) {
        note(report, ctx, &n, "window or latency ring differs from its parameters");
    }
    return n;
}

/* The state: what updates change. The caller holds the lock (or knows the
 * region is quiet). */
static int block_check_state(const void *block, const uint64_t *params,
                             void (*report)(void *, const char *), void *ctx) {
    (void)params;
    const rs_breaker_block *blk = block;
    const rs_breaker *b = &blk->core;
    const char *base = block;
    int n = 0;
    if (b->state < 0 || b->state >= RS_STATE_COUNT) {
        note(report, ctx, &n, "state out of range");
    }
    if (b->pending_len > RS_BREAKER_PENDING || b->pending_head >= RS_BREAKER_PENDING) {
        note(report, ctx, &n, "transition queue out of range");
    }
    const rs_window *w = &b->window;
    uint64_t total = 0, failures = 0, slow = 0;
    if (w->timed) {
        for (uint32_t i = 0; i < w->nbuckets && i < RS_WINDOW_MAX_BUCKETS; i++) {
            total += w->buckets[i].total;
            failures += w->buckets[i].failures;
            slow += w->buckets[i].slow;
        }
        if (w->head_pos >= w->nbuckets) {
            note(report, ctx, &n, "window head out of range");
        }
    } else {
        const uint8_t *ring = (const uint8_t *)(base + blk->ring_off);
        if (w->filled > w->size || w->pos >= w->size || w->period_n >= w->period ||
            w->period_f > w->period_n) {
            note(report, ctx, &n, "window position out of range");
        }
        for (uint32_t i = 0; i < w->filled && i < w->size; i++) {
            /* the filled outcomes end just before pos */
            uint8_t o = ring[(w->pos + w->size - 1 - i) % w->size];
            total++;
            failures += (o & RS_OUTCOME_FAILED) != 0;
            slow += (o & RS_OUTCOME_SLOW) != 0;
        }
    }
    if (w->total != total || w->failures != failures || w->slow != slow) {
        note(report, ctx, &n, "window counts do not match its outcomes");
    }
    const rs_latring *l = &b->latencies;
    if (l->n > l->cap || l->pos >= l->cap) {
        note(report, ctx, &n, "latency ring position out of range");
    }
    uint64_t held = 0;
    for (uint64_t i = 0; i < blk->nprobes; i++) {
        held += blk->probe[i].holder.pid != 0 && blk->probe[i].tag == b->epoch;
    }
    if (b->probes_granted > b->cfg.half_open_probes ||
        (b->state == RS_STATE_HALF_OPEN && held > b->probes_granted)) {
        note(report, ctx, &n, "more probes recorded than granted");
    }
    if (blk->journaled) {
        note(report, ctx, &n, "an update was cut short (the next lock undoes it)");
    }
    return n;
}

/* Journals the breaker and its records before an update at now_ns that
 * may hand out or take back a probe: in HALF_OPEN, or OPEN with its
 * cooldown over (an OPEN breaker within its cooldown only counts a
 * rejection; the common rejection stays cheap). */
static void journal_begin(rs_breaker_block *blk, uint64_t now_ns) {
    const rs_breaker *b = &blk->core;
    if (now_ns < b->now_ns) {
        now_ns = b->now_ns;
    }
    if (b->state != RS_STATE_HALF_OPEN &&
        !(b->state == RS_STATE_OPEN && now_ns - b->opened_at_ns >= b->cooldown_cur_ns)) {
        return;
    }
    blk->saved = blk->core;
    memcpy(&blk->probe[blk->nprobes], blk->probe, blk->nprobes * sizeof blk->probe[0]);
    __atomic_store_n(&blk->journaled, 1, __ATOMIC_RELEASE);
}

static void journal_end(rs_breaker_block *blk) {
    if (blk->journaled) {
        __atomic_store_n(&blk->journaled, 0, __ATOMIC_RELEASE);
    }
}

static void block_repair(void *block, const uint64_t *params) {
    rs_breaker_block *blk = block;
    (void)params;
    if (__atomic_load_n(&blk->journaled, __ATOMIC_ACQUIRE)) {
        /* an update cut short: as if it never happened */
        blk->core = blk->saved;
        memcpy(blk->probe, &blk->probe[blk->nprobes], blk->nprobes * sizeof blk->probe[0]);
        blk->journaled = 0;
    }
    rs_breaker *b = rs_breaker_block_core(blk);
    if (b->state < 0 || b->state >= RS_STATE_COUNT) {
        b->state = RS_STATE_OPEN; /* the safe side: the cooldown then probes */
    }
    b->pending_len = 0; /* the dead process's listeners are gone */
    b->pending_head = 0;
    rs_window *w = &b->window;
    if (w->timed) {
        if (w->head_pos >= w->nbuckets) {
            w->head_pos = (uint32_t)(w->head_id % w->nbuckets);
        }
        w->total = w->failures = w->slow = 0;
        for (uint32_t i = 0; i < w->nbuckets; i++) {
            w->total += w->buckets[i].total;
            w->failures += w->buckets[i].failures;
            w->slow += w->buckets[i].slow;
        }
    } else {
        if (w->filled > w->size) {
            w->filled = w->size;
        }
        if (w->pos >= w->size) {
            w->pos = 0;
        }
        if (w->period_n >= w->period || w->period_f > w->period_n) {
            w->period_n = w->period_f = 0;
        }
        w->total = w->failures = w->slow = 0;
        for (uint32_t i = 0; i < w->filled; i++) {
            uint8_t o = w->ring[(w->pos + w->size - 1 - i) % w->size];
            w->total++;
            w->failures += (o & RS_OUTCOME_FAILED) != 0;
            w->slow += (o & RS_OUTCOME_SLOW) != 0;
        }
    }
    rs_latring *l = &b->latencies;
    if (l->n > l->cap) {
        l->n = l->cap;
    }
    if (l->n < l->cap) {
        l->pos = l->n; /* a ring not yet full holds values[0..n) */
    } else if (l->pos >= l->cap) {
        l->pos = 0;
    }
    /* the sums from the values, keeping pos: rs_latring_resum would set it
     * to 0, which is only right once the ring is in oldest-first order */
    rs_latring_sums(l);
    if (b->probes_granted > b->cfg.half_open_probes) {
        b->probes_granted = b->cfg.half_open_probes;
    }
}

static void release_probe(rs_breaker *b, const rs_region_permit *rec, uint64_t now_ns) {
    rs_permit p = {rec->tag, RS_PERMIT_PROBE, -1};
    rs_breaker_release(b, &p, now_ns);
}

static void block_drop_holder(void *block, const uint64_t *params, const rs_region_holder *who) {
    rs_breaker_block *blk = block;
    (void)params;
    rs_breaker *b = rs_breaker_block_core(blk);
    journal_begin(blk, b->now_ns);
    for (uint64_t i = 0; i < blk->nprobes; i++) {
        rs_region_permit *rec = &blk->probe[i];
        if (rec->holder.pid != 0 && rec->holder.pid == who->pid &&
            rec->holder.start == who->start) {
            release_probe(b, rec, b->now_ns);
            memset(rec, 0, sizeof *rec);
        }
    }
    journal_end(blk);
}

const rs_region_type RS_BREAKER_REGION_TYPE = {
    .tag = RS_BREAKER_TAG,
    .name = "CircuitBreaker",
    .block_size = block_size,
    .init = block_init,
    .check = block_check,
    .check_state = block_check_state,
    .repair = block_repair,
    .drop_holder = block_drop_holder,
};

/* ---- probes held by processes ------------------------------------------- */

typedef struct {
    rs_breaker *b;
    uint64_t now_ns;
} reclaim_ctx;

static void give_back(void *ctx, const rs_region_permit *rec) {
    reclaim_ctx *r = ctx;
    release_probe(r->b, rec, r->now_ns);
}

static int record_probe(rs_breaker_block *blk, rs_permit *p, const rs_region_holder *me,
                        uint64_t now_ns) {
    uint32_t n = (uint32_t)blk->nprobes;
    int64_t i = rs_region_permit_take(blk->probe, n, me, now_ns, p->epoch);
    if (i < 0) {
        /* records of an earlier epoch are stale: their outcome changes nothing */
        for (uint32_t k = 0; k < n; k++) {
            if (blk->probe[k].tag != p->epoch) {
                memset(&blk->probe[k], 0, sizeof blk->probe[k]);
            }
        }
        i = rs_region_permit_take(blk->probe, n, me, now_ns, p->epoch);
    }
    p->slot = (int32_t)i;
    return i >= 0;
}

rs_status rs_breaker_block_acquire(rs_breaker_block *blk, uint64_t now_ns, rs_permit *p,
                                   uint64_t *remaining_ns, const rs_region_holder *me,
                                   uint64_t lease_ns, rs_region_alive_fn alive, void *actx) {
    rs_breaker *b = rs_breaker_block_core(blk);
    journal_begin(blk, now_ns);
    rs_status st;
    for (int again = 0;; again = 1) {
        st = rs_breaker_acquire(b, now_ns, p, remaining_ns);
        if (st == RS_OK || again || b->state != RS_STATE_HALF_OPEN ||
            b->probes_granted < b->cfg.half_open_probes) {
            break;
        }
        /* no probe left: give back those of holders that died, then ask again */
        reclaim_ctx r = {b, now_ns};
        uint32_t freed = rs_region_permit_reclaim(blk->probe, (uint32_t)blk->nprobes, now_ns,
                                                  lease_ns, alive, actx, give_back, &r);
        if (!freed) {
            break;
        }
        blk->reclaimed += freed;
        b->counters.rejected--; /* asked again: one call, one count */
    }
    p->slot = -1;
    if (st == RS_OK && p->kind == RS_PERMIT_PROBE && !record_probe(blk, p, me, now_ns)) {
        /* no record for it (impossible while records number half_open_probes):
         * give it back rather than hand out a probe a crash could keep */
        rs_breaker_release(b, p, now_ns);
        b->counters.released--;
        b->counters.permitted--;
        b->counters.rejected++;
        *remaining_ns = 0;
        st = RS_EREJECTED;
    }
    journal_end(blk);
    return st;
}

void rs_breaker_block_outcome(rs_breaker_block *blk, const rs_permit *p, int kind,
                              double latency_ms, uint64_t now_ns, const rs_region_holder *me) {
    rs_breaker *b = rs_breaker_block_core(blk);
    journal_begin(blk, now_ns);
    if (kind == RS_BLOCK_SUCCESS) {
        rs_breaker_success(b, p, latency_ms, now_ns);
    } else if (kind == RS_BLOCK_FAILURE) {
        rs_breaker_failure(b, p, latency_ms, now_ns);
    } else {
        rs_breaker_release(b, p, now_ns);
    }
    (void)me;
    if (p && p->kind == RS_PERMIT_PROBE && p->slot >= 0 && (uint64_t)p->slot < blk->nprobes &&
        blk->probe[p->slot].holder.pid != 0 && blk->probe[p->slot].tag == p->epoch) {
        /* The permit's record: its slot holding its epoch. A slot is taken
         * again in one epoch only once its permit reported or its holder
         * died, so no other live permit matches; the holder is not asked,
         * since a process forked while a permit was out reports it as its
         * own child. */
        memset(&blk->probe[p->slot], 0, sizeof blk->probe[p->slot]);
    }
    journal_end(blk);
}

void rs_breaker_block_run(rs_breaker_block *blk, void (*op)(rs_breaker *, uint64_t),
                          uint64_t now_ns) {
    rs_breaker *b = rs_breaker_block_core(blk);
    journal_begin(blk, now_ns);
    op(b, now_ns);
    journal_end(blk);
}
