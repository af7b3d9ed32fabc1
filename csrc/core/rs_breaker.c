/* rs_breaker.c - the circuit breaker state machine. */
#include "rs_breaker.h"

#include <math.h>
#include <string.h>

static const char *const STATE_NAMES[RS_STATE_COUNT] = {
    "CLOSED", "DEGRADED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"};

static const char *const REASON_NAMES[RS_REASON_COUNT] = {
    "consecutive_failures", "failure_rate",      "slow_call_rate",
    "health_critical",      "health_low",        "health_recovered",
    "ejection_capped",      "cooldown_elapsed",  "probe_failed",
    "probes_succeeded",     "half_open_timeout", "force_open",
    "disable",              "reset",             "manual_open",
    "manual_close",         "cluster"};

const char *rs_state_name(int state) {
    return state >= 0 && state < RS_STATE_COUNT ? STATE_NAMES[state] : "UNKNOWN";
}

const char *rs_reason_name(int reason) {
    return reason >= 0 && reason < RS_REASON_COUNT ? REASON_NAMES[reason] : "unknown";
}

void rs_breaker_config_default(rs_breaker_config *c) {
    memset(c, 0, sizeof *c);
    c->failure_threshold = 5;
    c->failure_rate_enabled = 0;
    c->failure_rate_threshold = 1.0;
    c->slow_call_enabled = 0;
    c->slow_call_ms = 1.0;
    c->slow_call_rate_threshold = 1.0;
    c->window_size = 100;
    c->window_duration_ns = 0;
    c->minimum_calls = 10;
    c->cooldown_ns = 60 * RS_NS_PER_SEC;
    c->cooldown_multiplier = 2.0;
    c->cooldown_max_ns = 600 * RS_NS_PER_SEC;
    c->half_open_probes = 3;
    c->half_open_max_wait_ns = 0;
    c->adaptive = 1;
    c->ewma_alpha = 0.3;
    c->sensitivity = 2.0;
    c->min_health_score = 0.3;
    c->latency_window = 50;
}

/* 1 when v lies within the bounds RS_BREAKER_FIELDS gives field f. */
static int field_ok(int f, double v) { return rs_field_ok(&RS_BREAKER_FIELDS[f], v); }

int rs_breaker_config_check(const rs_breaker_config *c) {
#define BAD(f) (RS_EFIELD_BASE + (f))
    if (c->failure_rate_enabled && !field_ok(RS_BF_FAILURE_RATE_THRESHOLD, c->failure_rate_threshold))
        return BAD(RS_BF_FAILURE_RATE_THRESHOLD);
    /* The table gives (0, inf) seconds; the same bounds hold in ms, and
     * dividing a tiny positive ms value could round it to 0. */
    if (c->slow_call_enabled && !field_ok(RS_BF_SLOW_CALL_DURATION, c->slow_call_ms))
        return BAD(RS_BF_SLOW_CALL_DURATION);
    if (!field_ok(RS_BF_SLOW_CALL_RATE_THRESHOLD, c->slow_call_rate_threshold))
        return BAD(RS_BF_SLOW_CALL_RATE_THRESHOLD);
    if (!field_ok(RS_BF_WINDOW_SIZE, (double)c->window_size))
        return BAD(RS_BF_WINDOW_SIZE);
    if (c->window_duration_ns != 0 &&
        !field_ok(RS_BF_WINDOW_DURATION, (double)c->window_duration_ns / 1e9))
        return BAD(RS_BF_WINDOW_DURATION);
    if (c->window_duration_ns == 0 && c->minimum_calls > c->window_size)
        return BAD(RS_BF_MINIMUM_CALLS);
    if (!field_ok(RS_BF_COOLDOWN_MULTIPLIER, c->cooldown_multiplier))
        return BAD(RS_BF_COOLDOWN_MULTIPLIER);
    if (c->cooldown_max_ns < c->cooldown_ns)
        return BAD(RS_BF_COOLDOWN_MAX);
    if (!field_ok(RS_BF_HALF_OPEN_PROBES, (double)c->half_open_probes))
        return BAD(RS_BF_HALF_OPEN_PROBES);
    if (!field_ok(RS_BF_EWMA_ALPHA, c->ewma_alpha))
        return BAD(RS_BF_EWMA_ALPHA);
    if (!field_ok(RS_BF_SENSITIVITY, c->sensitivity))
        return BAD(RS_BF_SENSITIVITY);
    if (!field_ok(RS_BF_MIN_HEALTH_SCORE, c->min_health_score))
        return BAD(RS_BF_MIN_HEALTH_SCORE);
    if (!field_ok(RS_BF_LATENCY_WINDOW, (double)c->latency_window))
        return BAD(RS_BF_LATENCY_WINDOW);
    return RS_OK;
#undef BAD
}

rs_status rs_ejector_init(rs_ejector *e, uint32_t max_percent) {
    if (!rs_field_ok(&RS_EJECTOR_PERCENT_FIELD, (double)max_percent)) {
        return RS_EINVAL;
    }
    memset(e, 0, sizeof *e);
    e->max_percent = max_percent;
    return RS_OK;
}

int rs_ejector_can_eject(const rs_ejector *e) {
    uint64_t allowed = (uint64_t)e->members * e->max_percent / 100;
    if (allowed < 1) {
        allowed = 1;
    }
    return e->ejected < allowed;
}

static uint32_t compute_threshold(const rs_breaker *b);
static void update_latency_part(rs_breaker *b);

static int is_ejected(int state) {
    return state == RS_STATE_OPEN || state == RS_STATE_HALF_OPEN || state == RS_STATE_FORCED_OPEN;
}

int rs_breaker_init_at(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns,
                       uint8_t *ring, double *values) {
    memset(b, 0, sizeof *b);
    int st = rs_breaker_config_check(c);
    if (st != RS_OK) {
        return st;
    }
    b->cfg = *c;
    st = c->window_duration_ns ? rs_window_init_time(&b->window, c->window_duration_ns, now_ns)
                               : rs_window_init_count_at(&b->window, c->window_size, ring);
    if (st != RS_OK) {
        return RS_EFIELD_BASE + RS_BF_WINDOW_SIZE;
    }
    if (rs_latring_init_at(&b->latencies, c->latency_window, values) != RS_OK) {
        return RS_EFIELD_BASE + RS_BF_LATENCY_WINDOW;
    }
    rs_ewma_init(&b->ewma, c->ewma_alpha);
    b->eff_threshold = compute_threshold(b);
    update_latency_part(b);
    b->state = RS_STATE_CLOSED;
    b->now_ns = now_ns;
    b->cooldown_cur_ns = c->cooldown_ns;
    b->cause_latency_ms = -1.0;
    return RS_OK;
}

int rs_breaker_init(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns) {
    int st = rs_breaker_init_at(b, c, now_ns, NULL, NULL);
    if (st != RS_OK) {
        return st;
    }
    b->latencies.values = rs_calloc(c->latency_window, sizeof(double));
    if (!c->window_duration_ns) {
        b->window.ring = rs_calloc(c->window_size, 1);
    }
    if (!b->latencies.values || (!c->window_duration_ns && !b->window.ring)) {
        rs_window_free(&b->window);
        rs_latring_free(&b->latencies);
        return RS_ENOMEM;
    }
    return RS_OK;
}

void rs_breaker_free(rs_breaker *b) {
    rs_breaker_set_ejector(b, NULL);
    rs_window_free(&b->window);
    rs_latring_free(&b->latencies);
}

void rs_breaker_set_ejector(rs_breaker *b, rs_ejector *e) {
    if (b->ejector) {
        b->ejector->members--;
        if (is_ejected(b->state)) {
            b->ejector->ejected--;
        }
    }
    b->ejector = e;
    if (e) {
        e->members++;
        if (is_ejected(b->state)) {
            e->ejected++;
        }
    }
}

/* ---- derived values ---------------------------------------------------- */

double rs_breaker_signal(const rs_breaker *b) {
    double s = b->ewma.mean - b->cfg.sensitivity * rs_ewma_stddev(&b->ewma);
    return s < 0.0 ? 0.0 : (s > 1.0 ? 1.0 : s);
}

uint32_t rs_breaker_effective_threshold(const rs_breaker *b) { return b->eff_threshold; }

static uint32_t compute_threshold(const rs_breaker *b) {
    uint32_t t = b->cfg.failure_threshold;
    if (!b->cfg.adaptive || t == 0) {
        return t;
    }
    double s = rs_breaker_signal(b);
    uint32_t e;
    if (s > 0.7) {
        e = t / 3;
    } else if (s > 0.5) {
        e = t / 2;
    } else if (s > 0.3) {
        e = (uint32_t)((uint64_t)t * 3 / 4);
    } else {
        return t;
    }
    return e ? e : 1;
}

/* Linear inside each band; x * (1.0 / w) rather than x / w keeps divisions
 * off the per-call path (the reference model uses the same expressions). */
double rs_latency_score(double m) {
    if (m <= 100.0) return 1.0 - 0.05 * (m * (1.0 / 100.0));
    if (m <= 1000.0) return 0.95 - 0.45 * ((m - 100.0) * (1.0 / 900.0));
    if (m <= 5000.0) return 0.5 - 0.5 * ((m - 1000.0) * (1.0 / 4000.0));
    return 0.0;
}

double rs_jitter_score(double s) {
    if (s <= 50.0) return 1.0 - 0.2 * (s * (1.0 / 50.0));
    if (s <= 200.0) return 0.8 - 0.5 * ((s - 50.0) * (1.0 / 150.0));
    if (s <= 500.0) return 0.3 - 0.3 * ((s - 200.0) * (1.0 / 300.0));
    return 0.0;
}

double rs_breaker_success_rate(const rs_breaker *b) {
    const rs_window *w = &b->window;
    return w->total ? (double)(w->total - w->failures) / (double)w->total : 1.0;
}

/* The latency and jitter parts change only when a sample is added; they are
 * recomputed when the score is next needed, not on every sample. */
static void update_latency_part(rs_breaker *b) { b->latency_dirty = 1; }

double rs_breaker_health(rs_breaker *b) {
    if (b->latency_dirty) {
        double ls = 1.0, js = 1.0;
        if (b->latencies.n) {
            ls = rs_latency_score(rs_latring_mean(&b->latencies));
            js = rs_jitter_score(rs_latring_stddev(&b->latencies));
        }
        b->latency_part = 0.3 * ls + 0.2 * js;
        b->latency_dirty = 0;
    }
    return 0.5 * rs_breaker_success_rate(b) + b->latency_part;
}

uint64_t rs_breaker_remaining(const rs_breaker *b) {
    if (b->state != RS_STATE_OPEN) {
        return 0;
    }
    uint64_t elapsed = b->now_ns - b->opened_at_ns;
    return elapsed >= b->cooldown_cur_ns ? 0 : b->cooldown_cur_ns - elapsed;
}

/* ---- transitions ------------------------------------------------------- */

static void transition(rs_breaker *b, int new_state, int reason) {
    int old = b->state;
    b->state = new_state;
    int soft = (old == RS_STATE_CLOSED && new_state == RS_STATE_DEGRADED) ||
               (old == RS_STATE_DEGRADED && new_state == RS_STATE_CLOSED);
    if (!soft) {
        b->epoch++;
    }
    b->counters.transitions[new_state]++;
    if (b->ejector) {
        b->ejector->ejected += (uint32_t)is_ejected(new_state);
        b->ejector->ejected -= (uint32_t)is_ejected(old);
    }
    if (b->pending_len == RS_BREAKER_PENDING) {
        /* Never reached while the caller drains after each operation. */
        b->pending_head = (b->pending_head + 1) % RS_BREAKER_PENDING;
        b->pending_len--;
        b->pending_dropped++;
    }
    rs_transition *t = &b->pending[(b->pending_head + b->pending_len) % RS_BREAKER_PENDING];
    b->pending_len++;
    t->old_state = (uint8_t)old;
    t->new_state = (uint8_t)new_state;
    t->reason = (uint8_t)reason;
    t->consecutive_failures = b->consecutive_failures;
    t->success_rate = rs_breaker_success_rate(b);
    t->latency_ms = b->cause_latency_ms;
}

int rs_breaker_pop_transition(rs_breaker *b, rs_transition *t) {
    if (!b->pending_len) {
        return 0;
    }
    *t = b->pending[b->pending_head];
    b->pending_head = (b->pending_head + 1) % RS_BREAKER_PENDING;
    b->pending_len--;
    return 1;
}

static void clear_window_stats(rs_breaker *b) {
    rs_window_clear(&b->window, b->now_ns);
    rs_latring_clear(&b->latencies);
    update_latency_part(b);
    b->consecutive_failures = 0;
}

static void go_open(rs_breaker *b, int reason) {
    b->opened_at_ns = b->now_ns;
    b->ever_opened = 1;
    transition(b, RS_STATE_OPEN, reason);
}

static void go_closed(rs_breaker *b, int reason) {
    clear_window_stats(b);
    b->cooldown_cur_ns = b->cfg.cooldown_ns;
    transition(b, RS_STATE_CLOSED, reason);
}

static void reopen(rs_breaker *b, int reason) {
    double grown = (double)b->cooldown_cur_ns * b->cfg.cooldown_multiplier;
    b->cooldown_cur_ns =
        grown >= (double)b->cfg.cooldown_max_ns ? b->cfg.cooldown_max_ns : (uint64_t)grown;
    go_open(b, reason);
}

/* An automatic trip from CLOSED or DEGRADED, subject to the ejection budget. */
static void trip(rs_breaker *b, int reason) {
    if (b->ejector && !rs_ejector_can_eject(b->ejector)) {
        b->ejector->vetoed++;
        b->counters.vetoed++;
        if (b->state == RS_STATE_CLOSED) {
            transition(b, RS_STATE_DEGRADED, RS_REASON_EJECTION_CAPPED);
        }
        return;
    }
    go_open(b, reason);
}

static void ewma_period(rs_breaker *b, double rate) {
    rs_ewma_update(&b->ewma, rate);
    b->eff_threshold = compute_threshold(b);
}

static void tick_slow(rs_breaker *b) {
    double rate;
    if (b->window.timed && rs_window_roll(&b->window, b->now_ns, &rate)) {
        ewma_period(b, rate);
    }
    if (b->state == RS_STATE_OPEN) {
        if (b->now_ns - b->opened_at_ns >= b->cooldown_cur_ns) {
            if (b->cfg.half_open_probes == 0) {
                go_closed(b, RS_REASON_COOLDOWN_ELAPSED);
            } else {
                b->half_open_since_ns = b->now_ns;
                b->probes_granted = 0;
                b->probe_successes = 0;
                transition(b, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
            }
        }
    } else if (b->state == RS_STATE_HALF_OPEN && b->cfg.half_open_max_wait_ns &&
               b->now_ns - b->half_open_since_ns >= b->cfg.half_open_max_wait_ns) {
        reopen(b, RS_REASON_HALF_OPEN_TIMEOUT);
    }
}

/* Fast path: a CLOSED or DEGRADED breaker on a count window only keeps the
 * time; everything else (rolling a time window, lazy transitions) is slow. */
RS_INLINE void tick(rs_breaker *b, uint64_t now_ns) {
    if (RS_LIKELY(now_ns > b->now_ns)) {
        b->now_ns = now_ns;
    }
    if (RS_UNLIKELY(b->state > RS_STATE_DEGRADED || b->window.timed)) {
        tick_slow(b);
    }
}

void rs_breaker_tick(rs_breaker *b, uint64_t now_ns) { tick(b, now_ns); }

rs_status rs_breaker_acquire(rs_breaker *b, uint64_t now_ns, rs_permit *p,
                             uint64_t *remaining_ns) {
    tick(b, now_ns);
    switch (b->state) {
    case RS_STATE_CLOSED:
    case RS_STATE_DEGRADED:
    case RS_STATE_DISABLED:
        p->epoch = b->epoch;
        p->kind = RS_PERMIT_NORMAL;
        b->counters.permitted++;
        return RS_OK;
    case RS_STATE_HALF_OPEN:
        if (b->probes_granted < b->cfg.half_open_probes) {
            b->probes_granted++;
            p->epoch = b->epoch;
            p->kind = RS_PERMIT_PROBE;
            b->counters.permitted++;
            return RS_OK;
        }
        *remaining_ns = 0;
        break;
    case RS_STATE_OPEN:
        *remaining_ns = rs_breaker_remaining(b);
        break;
    default: /* FORCED_OPEN */
        *remaining_ns = UINT64_MAX;
        break;
    }
    b->counters.rejected++;
    return RS_EREJECTED;
}

/* Trip rules, in order; returns a reason or -1. *health is left negative
 * when the window holds fewer than minimum_calls outcomes (the gate of the
 * rate and health rules); otherwise it is the score, or 1.0 when the score
 * provably fires no health rule. */
static int trip_reason(rs_breaker *b, double *health) {
    const rs_breaker_config *c = &b->cfg;
    const rs_window *w = &b->window;
    *health = -1.0;
    if (c->failure_threshold && b->consecutive_failures >= b->eff_threshold) {
        return RS_REASON_CONSECUTIVE_FAILURES;
    }
    if (w->total == 0 || w->total < c->minimum_calls) {
        return -1;
    }
    /* health >= 0.5 * success rate (the latency part is >= 0): while that
     * alone reaches min_health_score, no health rule can fire in CLOSED and
     * the latency part need not be computed. */
    if (b->state == RS_STATE_CLOSED && 0.5 * rs_breaker_success_rate(b) >= c->min_health_score) {
        *health = 1.0;
    } else {
        *health = rs_breaker_health(b);
    }
    if (c->failure_rate_enabled &&
        (double)w->failures / (double)w->total >= c->failure_rate_threshold) {
        return RS_REASON_FAILURE_RATE;
    }
    if (c->slow_call_enabled && (double)w->slow / (double)w->total >= c->slow_call_rate_threshold) {
        return RS_REASON_SLOW_CALL_RATE;
    }
    if (*health < c->min_health_score / 2.0) {
        return RS_REASON_HEALTH_CRITICAL;
    }
    return -1;
}

static void evaluate_closed(rs_breaker *b) {
    double h;
    int reason = trip_reason(b, &h);
    if (reason >= 0) {
        trip(b, reason);
        return;
    }
    if (h < 0.0) { /* fewer than minimum_calls outcomes */
        return;
    }
    if (b->state == RS_STATE_CLOSED && h < b->cfg.min_health_score) {
        transition(b, RS_STATE_DEGRADED, RS_REASON_HEALTH_LOW);
    } else if (b->state == RS_STATE_DEGRADED && h > 0.7) {
        transition(b, RS_STATE_CLOSED, RS_REASON_HEALTH_RECOVERED);
    }
}

static void apply_outcome(rs_breaker *b, const rs_permit *p, int failed, double latency_ms) {
    const rs_breaker_config *c = &b->cfg;
    unsigned flags = failed ? RS_OUTCOME_FAILED : 0u;
    if (latency_ms >= 0.0) {
        rs_latring_push(&b->latencies, latency_ms);
        update_latency_part(b);
        if (c->slow_call_enabled && latency_ms >= c->slow_call_ms) {
            flags |= RS_OUTCOME_SLOW;
            b->counters.slow++;
        }
    }
    double rate;
    if (rs_window_add(&b->window, flags, &rate)) {
        ewma_period(b, rate);
    }
    if (failed) {
        b->counters.failures++;
        b->consecutive_failures++;
    } else {
        b->counters.successes++;
        b->consecutive_failures = 0;
    }
    if (p && p->epoch != b->epoch) {
        b->counters.stale++;
        return;
    }
    switch (b->state) {
    case RS_STATE_CLOSED:
        /* A fast, clean success into a window with no failure and no slow
         * call fires no rule: consecutive failures are 0, both rates are 0
         * (their thresholds are > 0), and the health score is at least
         * 0.5 * 1.0, which is at least min_health_score here (so neither
         * health rule holds). The common case skips the rule arithmetic. */
        if (flags == 0 && b->window.failures == 0 && b->window.slow == 0 &&
            c->min_health_score <= 0.5) {
            break;
        }
        evaluate_closed(b);
        break;
    case RS_STATE_DEGRADED:
        evaluate_closed(b);
        break;
    case RS_STATE_HALF_OPEN:
        if (failed) {
            reopen(b, RS_REASON_PROBE_FAILED);
        } else if (++b->probe_successes >= c->half_open_probes) {
            go_closed(b, RS_REASON_PROBES_SUCCEEDED);
        }
        break;
    default: /* OPEN, FORCED_OPEN (permit-less only), DISABLED: statistics only */
        break;
    }
}

/* Transitions report the latency of the outcome that caused them, so it is
 * in scope only while that outcome is applied (a time-driven or manual
 * transition reports none). */
static void outcome(rs_breaker *b, const rs_permit *p, int failed, double latency_ms,
                    uint64_t now_ns) {
    tick(b, now_ns);
    b->cause_latency_ms = latency_ms >= 0.0 ? latency_ms : -1.0;
    apply_outcome(b, p, failed, latency_ms);
    b->cause_latency_ms = -1.0;
}

void rs_breaker_success(rs_breaker *b, const rs_permit *p, double latency_ms, uint64_t now_ns) {
    outcome(b, p, 0, latency_ms, now_ns);
}

void rs_breaker_failure(rs_breaker *b, const rs_permit *p, double latency_ms, uint64_t now_ns) {
    outcome(b, p, 1, latency_ms, now_ns);
}

void rs_breaker_release(rs_breaker *b, const rs_permit *p, uint64_t now_ns) {
    tick(b, now_ns);
    b->counters.released++;
    if (p && p->epoch == b->epoch && p->kind == RS_PERMIT_PROBE &&
        b->state == RS_STATE_HALF_OPEN && b->probes_granted > 0) {
        b->probes_granted--;
    }
}

/* ---- manual control ---------------------------------------------------- */

void rs_breaker_force_open(rs_breaker *b, uint64_t now_ns) {
    tick(b, now_ns);
    if (b->state != RS_STATE_FORCED_OPEN) {
        transition(b, RS_STATE_FORCED_OPEN, RS_REASON_FORCE_OPEN);
    }
}

void rs_breaker_disable(rs_breaker *b, uint64_t now_ns) {
    tick(b, now_ns);
    if (b->state != RS_STATE_DISABLED) {
        transition(b, RS_STATE_DISABLED, RS_REASON_DISABLE);
    }
}

void rs_breaker_open(rs_breaker *b, uint64_t now_ns) {
    tick(b, now_ns);
    if (b->state != RS_STATE_OPEN) {
        go_open(b, RS_REASON_MANUAL_OPEN);
    }
}

void rs_breaker_close(rs_breaker *b, uint64_t now_ns) {
    tick(b, now_ns);
    if (b->state != RS_STATE_CLOSED) {
        go_closed(b, RS_REASON_MANUAL_CLOSE);
    }
}

void rs_breaker_follow(rs_breaker *b, uint64_t now_ns, int state, uint64_t cooldown_ns) {
    tick(b, now_ns);
    if (state == RS_STATE_OPEN) {
        b->cooldown_cur_ns = cooldown_ns;
        if (b->state == RS_STATE_OPEN) {
            b->opened_at_ns = b->now_ns;
        } else {
            go_open(b, RS_REASON_CLUSTER);
        }
    } else if (state == RS_STATE_HALF_OPEN) {
        if (b->state != RS_STATE_HALF_OPEN) {
            b->half_open_since_ns = b->now_ns;
            b->probes_granted = 0;
            b->probe_successes = 0;
            transition(b, RS_STATE_HALF_OPEN, RS_REASON_CLUSTER);
        }
    } else if (state == RS_STATE_CLOSED) {
        if (b->state == RS_STATE_CLOSED || b->state == RS_STATE_DEGRADED) {
            clear_window_stats(b);
            b->cooldown_cur_ns = b->cfg.cooldown_ns;
        } else {
            go_closed(b, RS_REASON_CLUSTER);
        }
    }
}

void rs_breaker_reset(rs_breaker *b, uint64_t now_ns) {
    tick(b, now_ns);
    clear_window_stats(b);
    rs_ewma_reset(&b->ewma);
    b->eff_threshold = compute_threshold(b);
    b->cooldown_cur_ns = b->cfg.cooldown_ns;
    b->probes_granted = 0;
    b->probe_successes = 0;
    b->ever_opened = 0;
    b->opened_at_ns = 0;
    if (b->state != RS_STATE_CLOSED) {
        transition(b, RS_STATE_CLOSED, RS_REASON_RESET);
    }
    memset(&b->counters, 0, sizeof b->counters);
}

/* ---- run-time configuration -------------------------------------------- */

/* Replays the newest outcomes of a count window that fit into a fresh one.
 * Their periods were already fed to the EWMA, so the new window starts a
 * period of its own. */
static void copy_outcomes(rs_window *to, const rs_window *from) {
    uint32_t keep = from->filled < to->size ? from->filled : to->size;
    uint32_t oldest = from->filled == from->size ? from->pos : 0;
    uint32_t i = (oldest + (from->filled - keep)) % from->size;
    double unused;
    for (uint32_t k = 0; k < keep; k++) {
        rs_window_add(to, from->ring[i], &unused);
        i = i + 1 == from->size ? 0 : i + 1;
    }
    to->period_n = 0;
    to->period_f = 0;
}

/* Pushes the newest latencies that fit into a fresh ring, oldest first. */
static void copy_latencies(rs_latring *to, const rs_latring *from) {
    uint32_t keep = from->n < to->cap ? from->n : to->cap;
    uint32_t oldest = from->n == from->cap ? from->pos : 0;
    uint32_t i = (oldest + (from->n - keep)) % from->cap;
    for (uint32_t k = 0; k < keep; k++) {
        rs_latring_push(to, from->values[i]);
        i = i + 1 == from->cap ? 0 : i + 1;
    }
}

int rs_breaker_configure(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns) {
    int st = rs_breaker_config_check(c);
    if (st != RS_OK) {
        return st;
    }
    const rs_breaker_config *old = &b->cfg;
    int new_window = c->window_duration_ns != old->window_duration_ns ||
                     (!c->window_duration_ns && c->window_size != old->window_size);
    int new_ring = c->latency_window != old->latency_window;
    rs_window w;
    rs_latring l;
    /* Everything that can fail comes first. */
    if (new_window) {
        uint64_t at = now_ns > b->now_ns ? now_ns : b->now_ns;
        st = c->window_duration_ns ? rs_window_init_time(&w, c->window_duration_ns, at)
                                   : rs_window_init_count(&w, c->window_size);
        if (st != RS_OK) {
            rs_window_free(&w);
            return st == RS_EINVAL ? RS_EFIELD_BASE + RS_BF_WINDOW_SIZE : st;
        }
    }
    if (new_ring) {
        st = rs_latring_init(&l, c->latency_window);
        if (st != RS_OK) {
            rs_latring_free(&l);
            if (new_window) {
                rs_window_free(&w);
            }
            return st == RS_EINVAL ? RS_EFIELD_BASE + RS_BF_LATENCY_WINDOW : st;
        }
    }
    tick(b, now_ns); /* settle what the old configuration decides first */
    if (new_window) {
        if (!b->window.timed && !w.timed) {
            copy_outcomes(&w, &b->window);
        }
        rs_window_free(&b->window);
        b->window = w;
    }
    if (new_ring) {
        copy_latencies(&l, &b->latencies);
        rs_latring_free(&b->latencies);
        b->latencies = l;
        update_latency_part(b);
    }
    double growth = old->cooldown_ns ? (double)b->cooldown_cur_ns / (double)old->cooldown_ns : 1.0;
    double grown = (double)c->cooldown_ns * growth;
    b->cfg = *c;
    b->cooldown_cur_ns = grown >= (double)c->cooldown_max_ns ? c->cooldown_max_ns
                         : grown <= (double)c->cooldown_ns   ? c->cooldown_ns
                                                             : (uint64_t)grown;
    b->ewma.alpha = c->ewma_alpha;
    b->eff_threshold = compute_threshold(b);
    if (b->state == RS_STATE_HALF_OPEN && b->probe_successes >= c->half_open_probes) {
        go_closed(b, RS_REASON_PROBES_SUCCEEDED);
    }
    tick_slow(b); /* a shorter cooldown or half_open_max_wait may be over already */
    return RS_OK;
}
