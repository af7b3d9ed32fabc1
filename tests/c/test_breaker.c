/* test_breaker.c - unit tests of rs_breaker and rs_ejector (csrc/core/rs_breaker.h),
 * and of the allocator hooks in rs_common.h. */
#include "rs_breaker.h"
#include "rs_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEC RS_NS_PER_SEC
#define MSEC (RS_NS_PER_SEC / 1000u)
#define T0 (1000u * SEC) /* an arbitrary, non-zero start time */

/* ---- helpers ----------------------------------------------------------- */

/* The documented defaults with the adaptive threshold off, so trips are deterministic. */
static void plain_config(rs_breaker_config *c) {
    rs_breaker_config_default(c);
    c->adaptive = 0;
}

/* Takes a permit and reports the outcome with it; returns the acquire status. */
static rs_status call(rs_breaker *b, uint64_t now, int failed, double latency_ms) {
    rs_permit p;
    uint64_t remaining = 0;
    rs_status st = rs_breaker_acquire(b, now, &p, &remaining);
    if (st != RS_OK) {
        return st;
    }
    if (failed) {
        rs_breaker_failure(b, &p, latency_ms, now);
    } else {
        rs_breaker_success(b, &p, latency_ms, now);
    }
    return st;
}

/* Reports n outcomes through fresh permits; returns how many were admitted. */
static int calls(rs_breaker *b, uint64_t now, int n, int failed, double latency_ms) {
    int admitted = 0;
    for (int i = 0; i < n; i++) {
        admitted += call(b, now, failed, latency_ms) == RS_OK;
    }
    return admitted;
}

/* Pops every queued transition; returns how many there were. */
static int drain(rs_breaker *b) {
    rs_transition t;
    int n = 0;
    while (rs_breaker_pop_transition(b, &t)) {
        n++;
    }
    return n;
}

/* Pops one transition and checks it is old -> new for reason. */
#define CHECK_TRANSITION(b, old_s, new_s, why)                                  \
    do {                                                                       \
        rs_transition tr_;                                                     \
        CHECK_EQ_INT(rs_breaker_pop_transition((b), &tr_), 1);                 \
        CHECK_STREQ(rs_state_name(tr_.old_state), rs_state_name(old_s));       \
        CHECK_STREQ(rs_state_name(tr_.new_state), rs_state_name(new_s));       \
        CHECK_STREQ(rs_reason_name(tr_.reason), rs_reason_name(why));          \
    } while (0)

#define CHECK_STATE(b, s) CHECK_STREQ(rs_state_name((b)->state), rs_state_name(s))

/* A breaker tripped open at T0 by consecutive failures (transitions drained). */
static void open_breaker(rs_breaker *b, const rs_breaker_config *c) {
    CHECK_EQ_INT(rs_breaker_init(b, c, T0), RS_OK);
    calls(b, T0, (int)c->failure_threshold, 1, 5.0);
    CHECK_STATE(b, RS_STATE_OPEN);
    drain(b);
}

/* ---- names and configuration ------------------------------------------ */

/* State and reason names, with fallbacks for unknown values. */
static void test_names(void) {
    const char *states[] = {"CLOSED", "DEGRADED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"};
    for (int s = 0; s < RS_STATE_COUNT; s++) {
        CHECK_STREQ(rs_state_name(s), states[s]);
    }
    CHECK_STREQ(rs_state_name(-1), "UNKNOWN");
    CHECK_STREQ(rs_state_name(RS_STATE_COUNT), "UNKNOWN");
    CHECK_STREQ(rs_reason_name(RS_REASON_CONSECUTIVE_FAILURES), "consecutive_failures");
    CHECK_STREQ(rs_reason_name(RS_REASON_EJECTION_CAPPED), "ejection_capped");
    CHECK_STREQ(rs_reason_name(RS_REASON_HALF_OPEN_TIMEOUT), "half_open_timeout");
    CHECK_STREQ(rs_reason_name(RS_REASON_MANUAL_CLOSE), "manual_close");
    CHECK_STREQ(rs_reason_name(RS_REASON_CLUSTER), "cluster");
    int distinct = 1;
    for (int r = 0; r < RS_REASON_COUNT; r++) {
        for (int q = 0; q < r; q++) {
            distinct &= strcmp(rs_reason_name(r), rs_reason_name(q)) != 0;
        }
    }
    CHECK(distinct);
    CHECK_STREQ(rs_reason_name(-1), "unknown");
    CHECK_STREQ(rs_reason_name(RS_REASON_COUNT), "unknown");
}

/* rs_breaker_config_default gives the documented defaults, which are valid. */
static void test_config_defaults(void) {
    rs_breaker_config c;
    memset(&c, 0xAB, sizeof c);
    rs_breaker_config_default(&c);
    CHECK_EQ_U64(c.failure_threshold, 5);
    CHECK_EQ_INT(c.failure_rate_enabled, 0);
    CHECK_EQ_INT(c.slow_call_enabled, 0);
    CHECK(c.slow_call_rate_threshold == 1.0);
    CHECK_EQ_U64(c.window_size, 100);
    CHECK_EQ_U64(c.window_duration_ns, 0);
    CHECK_EQ_U64(c.minimum_calls, 10);
    CHECK_EQ_U64(c.cooldown_ns, 60 * SEC);
    CHECK(c.cooldown_multiplier == 2.0);
    CHECK_EQ_U64(c.cooldown_max_ns, 600 * SEC);
    CHECK_EQ_U64(c.half_open_probes, 3);
    CHECK_EQ_U64(c.half_open_max_wait_ns, 0);
    CHECK_EQ_INT(c.adaptive, 1);
    CHECK(c.ewma_alpha == 0.3);
    CHECK(c.sensitivity == 2.0);
    CHECK(c.min_health_score == 0.3);
    CHECK_EQ_U64(c.latency_window, 50);
    CHECK_EQ_INT(rs_breaker_config_check(&c), RS_OK);
}

/* Every field has its public parameter name in RS_BREAKER_FIELDS, and
 * config_check applies the table's bounds: the bound itself is accepted
 * where the table closes it, the next value outside refused. */
static void test_field_table(void) {
    const char *names[RS_BF_COUNT] = {
        [RS_BF_FAILURE_THRESHOLD] = "failure_threshold",
        [RS_BF_FAILURE_RATE_THRESHOLD] = "failure_rate_threshold",
        [RS_BF_SLOW_CALL_DURATION] = "slow_call_duration",
        [RS_BF_SLOW_CALL_RATE_THRESHOLD] = "slow_call_rate_threshold",
        [RS_BF_WINDOW_SIZE] = "window_size",
        [RS_BF_WINDOW_DURATION] = "window_duration",
        [RS_BF_MINIMUM_CALLS] = "minimum_calls",
        [RS_BF_COOLDOWN] = "cooldown",
        [RS_BF_COOLDOWN_MULTIPLIER] = "cooldown_multiplier",
        [RS_BF_COOLDOWN_MAX] = "cooldown_max",
        [RS_BF_HALF_OPEN_PROBES] = "half_open_probes",
        [RS_BF_HALF_OPEN_MAX_WAIT] = "half_open_max_wait",
        [RS_BF_EWMA_ALPHA] = "ewma_alpha",
        [RS_BF_SENSITIVITY] = "sensitivity",
        [RS_BF_MIN_HEALTH_SCORE] = "min_health_score",
        [RS_BF_LATENCY_WINDOW] = "latency_window",
    };
    for (int f = 0; f < RS_BF_COUNT; f++) {
        CHECK_STREQ(RS_BREAKER_FIELDS[f].name, names[f]);
    }
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    c.ewma_alpha = RS_BREAKER_FIELDS[RS_BF_EWMA_ALPHA].lo;
    c.sensitivity = RS_BREAKER_FIELDS[RS_BF_SENSITIVITY].hi;
    c.window_size = (uint32_t)RS_BREAKER_FIELDS[RS_BF_WINDOW_SIZE].hi;
    CHECK_EQ_INT(rs_breaker_config_check(&c), RS_OK);
    c.sensitivity = nextafter(RS_BREAKER_FIELDS[RS_BF_SENSITIVITY].hi, INFINITY);
    CHECK_EQ_INT(rs_breaker_config_check(&c), RS_EFIELD_BASE + RS_BF_SENSITIVITY);
    rs_breaker_config_default(&c);
    c.window_size = (uint32_t)RS_BREAKER_FIELDS[RS_BF_WINDOW_SIZE].hi + 1;
    CHECK_EQ_INT(rs_breaker_config_check(&c), RS_EFIELD_BASE + RS_BF_WINDOW_SIZE);
    rs_ejector e;
    CHECK_EQ_INT(rs_ejector_init(&e, RS_EJECTOR_MAX_PERCENT), RS_OK);
    CHECK_EQ_INT(rs_ejector_init(&e, RS_EJECTOR_MAX_PERCENT + 1), RS_EINVAL);
}

/* Both config_check and init report RS_EFIELD_BASE + field for a bad value. */
#define CHECK_BAD_FIELD(cfg, field)                                             \
    do {                                                                       \
        rs_breaker b_;                                                         \
        CHECK_EQ_INT(rs_breaker_config_check(&(cfg)), RS_EFIELD_BASE + (field)); \
        CHECK_EQ_INT(rs_breaker_init(&b_, &(cfg), T0), RS_EFIELD_BASE + (field)); \
    } while (0)

#define CHECK_GOOD_CONFIG(cfg)                                                  \
    do {                                                                       \
        rs_breaker b_;                                                         \
        CHECK_EQ_INT(rs_breaker_config_check(&(cfg)), RS_OK);                  \
        CHECK_EQ_INT(rs_breaker_init(&b_, &(cfg), T0), RS_OK);                 \
        rs_breaker_free(&b_);                                                  \
    } while (0)

/* Each bad field is reported as RS_EFIELD_BASE + that field; edge values are accepted. */
static void test_config_each_bad_field(void) {
    rs_breaker_config c;

    /* failure_threshold, cooldown and half_open_max_wait are unsigned with every
     * value in range (">= 0"; 0 = off): the extremes must be accepted. */
    rs_breaker_config_default(&c);
    c.failure_threshold = 0;
    CHECK_GOOD_CONFIG(c);
    c.failure_threshold = UINT32_MAX;
    CHECK_GOOD_CONFIG(c);
    rs_breaker_config_default(&c);
    c.cooldown_ns = 0;
    CHECK_GOOD_CONFIG(c);
    c.cooldown_ns = c.cooldown_max_ns = UINT64_MAX;
    CHECK_GOOD_CONFIG(c);
    rs_breaker_config_default(&c);
    c.half_open_max_wait_ns = 1;
    CHECK_GOOD_CONFIG(c);
    c.half_open_max_wait_ns = UINT64_MAX;
    CHECK_GOOD_CONFIG(c);

    const double bad_rate[] = {0.0, -0.1, 1.0001, NAN};
    for (size_t i = 0; i < 4; i++) {
        rs_breaker_config_default(&c);
        c.failure_rate_enabled = 1;
        c.failure_rate_threshold = bad_rate[i];
        CHECK_BAD_FIELD(c, RS_BF_FAILURE_RATE_THRESHOLD);
        c.failure_rate_enabled = 0; /* unused when the rule is off */
        CHECK_GOOD_CONFIG(c);
    }
    rs_breaker_config_default(&c);
    c.failure_rate_enabled = 1;
    c.failure_rate_threshold = 1.0;
    CHECK_GOOD_CONFIG(c);

    const double bad_slow[] = {0.0, -1.0, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++) {
        rs_breaker_config_default(&c);
        c.slow_call_enabled = 1;
        c.slow_call_ms = bad_slow[i];
        CHECK_BAD_FIELD(c, RS_BF_SLOW_CALL_DURATION);
        c.slow_call_enabled = 0;
        CHECK_GOOD_CONFIG(c);
    }

    for (size_t i = 0; i < 4; i++) {
        rs_breaker_config_default(&c);
        c.slow_call_enabled = 1;
        c.slow_call_rate_threshold = bad_rate[i];
        CHECK_BAD_FIELD(c, RS_BF_SLOW_CALL_RATE_THRESHOLD);
    }

    rs_breaker_config_default(&c);
    c.window_size = 0;
    c.minimum_calls = 0;
    CHECK_BAD_FIELD(c, RS_BF_WINDOW_SIZE);
    c.window_size = RS_WINDOW_MAX_SIZE + 1;
    CHECK_BAD_FIELD(c, RS_BF_WINDOW_SIZE);
    c.window_size = RS_WINDOW_MAX_SIZE;
    CHECK_GOOD_CONFIG(c);

    rs_breaker_config_default(&c);
    c.window_duration_ns = 1;
    CHECK_BAD_FIELD(c, RS_BF_WINDOW_DURATION);
    c.window_duration_ns = RS_WINDOW_BUCKETS - 1;
    CHECK_BAD_FIELD(c, RS_BF_WINDOW_DURATION);
    c.window_duration_ns = RS_WINDOW_BUCKETS;
    CHECK_GOOD_CONFIG(c);

    rs_breaker_config_default(&c);
    c.minimum_calls = c.window_size + 1;
    CHECK_BAD_FIELD(c, RS_BF_MINIMUM_CALLS);
    c.minimum_calls = c.window_size;
    CHECK_GOOD_CONFIG(c);
    c.minimum_calls = 5 * c.window_size; /* no bound for a time window */
    c.window_duration_ns = 10 * SEC;
    CHECK_GOOD_CONFIG(c);

    const double bad_mult[] = {0.999, 0.0, -2.0, NAN, INFINITY};
    for (size_t i = 0; i < 5; i++) {
        rs_breaker_config_default(&c);
        c.cooldown_multiplier = bad_mult[i];
        CHECK_BAD_FIELD(c, RS_BF_COOLDOWN_MULTIPLIER);
    }
    c.cooldown_multiplier = 1.0;
    CHECK_GOOD_CONFIG(c);

    rs_breaker_config_default(&c);
    c.cooldown_max_ns = c.cooldown_ns - 1;
    CHECK_BAD_FIELD(c, RS_BF_COOLDOWN_MAX);
    c.cooldown_max_ns = c.cooldown_ns;
    CHECK_GOOD_CONFIG(c);

    rs_breaker_config_default(&c);
    c.half_open_probes = RS_WINDOW_MAX_SIZE + 1;
    CHECK_BAD_FIELD(c, RS_BF_HALF_OPEN_PROBES);
    c.half_open_probes = RS_WINDOW_MAX_SIZE;
    CHECK_GOOD_CONFIG(c);
    c.half_open_probes = 0;
    CHECK_GOOD_CONFIG(c);

    const double bad_alpha[] = {0.0099, 0.0, 1.0001, NAN};
    for (size_t i = 0; i < 4; i++) {
        rs_breaker_config_default(&c);
        c.ewma_alpha = bad_alpha[i];
        CHECK_BAD_FIELD(c, RS_BF_EWMA_ALPHA);
    }
    c.ewma_alpha = 0.01;
    CHECK_GOOD_CONFIG(c);
    c.ewma_alpha = 1.0;
    CHECK_GOOD_CONFIG(c);

    const double bad_sens[] = {0.49, 5.01, -1.0, NAN};
    for (size_t i = 0; i < 4; i++) {
        rs_breaker_config_default(&c);
        c.sensitivity = bad_sens[i];
        CHECK_BAD_FIELD(c, RS_BF_SENSITIVITY);
    }
    c.sensitivity = 0.5;
    CHECK_GOOD_CONFIG(c);
    c.sensitivity = 5.0;
    CHECK_GOOD_CONFIG(c);

    const double bad_health[] = {-0.01, 1.01, NAN};
    for (size_t i = 0; i < 3; i++) {
        rs_breaker_config_default(&c);
        c.min_health_score = bad_health[i];
        CHECK_BAD_FIELD(c, RS_BF_MIN_HEALTH_SCORE);
    }
    c.min_health_score = 0.0;
    CHECK_GOOD_CONFIG(c);
    c.min_health_score = 1.0;
    CHECK_GOOD_CONFIG(c);

    rs_breaker_config_default(&c);
    c.latency_window = 0;
    CHECK_BAD_FIELD(c, RS_BF_LATENCY_WINDOW);
    c.latency_window = RS_WINDOW_MAX_SIZE + 1;
    CHECK_BAD_FIELD(c, RS_BF_LATENCY_WINDOW);
    c.latency_window = RS_WINDOW_MAX_SIZE;
    CHECK_GOOD_CONFIG(c);
}

/* With several bad fields the first one (in rs_breaker_field order) is reported. */
static void test_config_first_bad_field(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    c.latency_window = 0;
    c.ewma_alpha = 7.0;
    c.cooldown_multiplier = 0.5;
    CHECK_BAD_FIELD(c, RS_BF_COOLDOWN_MULTIPLIER);
    c.window_size = 0;
    c.minimum_calls = 0;
    CHECK_BAD_FIELD(c, RS_BF_WINDOW_SIZE);
}

/* ---- tripping and cooling down ---------------------------------------- */

/* failure_threshold consecutive failures trip; a success in between resets the count. */
static void test_trip_on_consecutive_failures(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_INT(calls(&b, T0, 4, 1, 10.0), 4);
    CHECK_EQ_INT(calls(&b, T0, 1, 0, 10.0), 1);
    CHECK_EQ_INT(calls(&b, T0, 4, 1, 10.0), 4);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_U64(b.consecutive_failures, 4);
    CHECK_EQ_U64(b.epoch, 0);
    CHECK_EQ_INT(call(&b, T0, 1, 12.5), RS_OK);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(b.epoch, 1);
    rs_transition t;
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_INT(t.old_state, RS_STATE_CLOSED);
    CHECK_EQ_INT(t.new_state, RS_STATE_OPEN);
    CHECK_EQ_INT(t.reason, RS_REASON_CONSECUTIVE_FAILURES);
    CHECK_EQ_U64(t.consecutive_failures, 5);
    CHECK_NEAR(t.success_rate, 1.0 / 10.0, 1e-12);
    CHECK_NEAR(t.latency_ms, 12.5, 0.0);
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 0);
    CHECK_EQ_U64(b.counters.failures, 9);
    CHECK_EQ_U64(b.counters.successes, 1);
    CHECK_EQ_U64(b.counters.permitted, 10);
    CHECK_EQ_U64(b.counters.transitions[RS_STATE_OPEN], 1);
    rs_breaker_free(&b);
}

/* failure_threshold = 0 turns the consecutive rule off. */
static void test_threshold_zero_never_trips(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK_EQ_INT(calls(&b, T0, 500, 1, -1.0), 500);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_free(&b);
}

/* OPEN rejects and reports the time left until HALF_OPEN. */
static void test_open_rejects_with_remaining(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    open_breaker(&b, &c);
    rs_permit p;
    uint64_t remaining = 0;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_U64(remaining, 60 * SEC);
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + 20 * SEC + 5, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_U64(remaining, 40 * SEC - 5);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 40 * SEC - 5);
    CHECK_EQ_U64(b.counters.rejected, 2);
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_free(&b);
}

/* cooldown - 1 ns stays OPEN; the full cooldown gives HALF_OPEN (on acquire or a bare tick). */
static void test_cooldown_edge(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    open_breaker(&b, &c);
    rs_permit p;
    uint64_t remaining = 0;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns - 1, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_U64(remaining, 1);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns, &p, &remaining), RS_OK);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    CHECK_EQ_INT(p.kind, RS_PERMIT_PROBE);
    CHECK_EQ_U64(p.epoch, 2);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 0);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    rs_breaker_free(&b);

    open_breaker(&b, &c);
    rs_breaker_tick(&b, T0 + c.cooldown_ns - 1);
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_tick(&b, T0 + c.cooldown_ns);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    rs_breaker_free(&b);
}

/* HALF_OPEN admits exactly half_open_probes permits (1, 3, 10); a released probe returns to the pool; that many successes close. */
static void test_half_open_probe_pool(void) {
    const uint32_t probe_counts[] = {1, 3, 10};
    for (size_t k = 0; k < 3; k++) {
        const uint32_t n = probe_counts[k];
        rs_breaker_config c;
        plain_config(&c);
        c.half_open_probes = n;
        c.window_size = 10; /* period 1: every outcome feeds the EWMA */
        rs_breaker b;
        open_breaker(&b, &c);
        const uint64_t t = T0 + c.cooldown_ns;
        rs_permit probes[10], extra;
        uint64_t remaining = 12345;
        int admitted = 0;
        for (uint32_t i = 0; i < n; i++) {
            admitted += rs_breaker_acquire(&b, t, &probes[i], &remaining) == RS_OK &&
                        probes[i].kind == RS_PERMIT_PROBE;
        }
        CHECK_EQ_INT(admitted, (int)n);
        CHECK_EQ_INT(rs_breaker_acquire(&b, t, &extra, &remaining), RS_EREJECTED);
        CHECK_EQ_U64(remaining, 0);
        CHECK_STATE(&b, RS_STATE_HALF_OPEN);

        rs_breaker_release(&b, &probes[0], t);
        CHECK_EQ_U64(b.counters.released, 1);
        CHECK_EQ_INT(rs_breaker_acquire(&b, t, &probes[0], &remaining), RS_OK);
        CHECK_EQ_INT(rs_breaker_acquire(&b, t, &extra, &remaining), RS_EREJECTED);

        const uint64_t ewma_count = b.ewma.count;
        const double ewma_mean = b.ewma.mean;
        CHECK(ewma_count > 0);
        for (uint32_t i = 0; i + 1 < n; i++) {
            rs_breaker_success(&b, &probes[i], 3.0, t);
        }
        CHECK_STATE(&b, RS_STATE_HALF_OPEN);
        rs_breaker_success(&b, &probes[n - 1], 3.0, t);
        CHECK_STATE(&b, RS_STATE_CLOSED);
        CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
        CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_CLOSED, RS_REASON_PROBES_SUCCEEDED);
        /* closing clears window, consecutive count and latencies; keeps the EWMA */
        CHECK_EQ_U64(b.window.total, 0);
        CHECK_EQ_U64(b.consecutive_failures, 0);
        CHECK_EQ_U64(b.latencies.n, 0);
        CHECK_EQ_U64(b.ewma.count, ewma_count + n);
        CHECK(b.ewma.count > 0 && b.ewma.mean < ewma_mean);
        rs_permit p;
        CHECK_EQ_INT(rs_breaker_acquire(&b, t, &p, &remaining), RS_OK);
        CHECK_EQ_INT(p.kind, RS_PERMIT_NORMAL);
        rs_breaker_free(&b);
    }
}

/* A probe failure reopens with cooldown x multiplier, capped at cooldown_max; closing resets the growth. */
static void test_probe_failure_grows_cooldown(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.cooldown_ns = 10 * SEC;
    c.cooldown_multiplier = 2.0;
    c.cooldown_max_ns = 35 * SEC;
    c.half_open_probes = 1;
    rs_breaker b;
    open_breaker(&b, &c);
    const uint64_t expected[] = {20 * SEC, 35 * SEC, 35 * SEC};
    uint64_t t = T0 + 10 * SEC;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(call(&b, t, 1, 1.0), RS_OK); /* the probe fails */
        CHECK_STATE(&b, RS_STATE_OPEN);
        CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
        CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_OPEN, RS_REASON_PROBE_FAILED);
        CHECK_EQ_U64(rs_breaker_remaining(&b), expected[i]);
        rs_breaker_tick(&b, t + expected[i] - 1);
        CHECK_STATE(&b, RS_STATE_OPEN);
        t += expected[i];
    }
    CHECK_EQ_INT(call(&b, t, 0, 1.0), RS_OK); /* the probe succeeds */
    CHECK_STATE(&b, RS_STATE_CLOSED);
    drain(&b);
    calls(&b, t, 5, 1, 1.0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 10 * SEC);
    rs_breaker_free(&b);

    c.cooldown_multiplier = 1.5; /* non-integer growth: 10 s -> 15 s -> 22.5 s */
    c.cooldown_max_ns = 600 * SEC;
    open_breaker(&b, &c);
    call(&b, T0 + 10 * SEC, 1, 1.0);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 15 * SEC);
    call(&b, T0 + 25 * SEC, 1, 1.0);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 22500 * MSEC);
    rs_breaker_free(&b);
}

/* Outcomes of permits from an earlier epoch update statistics but never drive a transition. */
static void test_stale_permit_never_transitions(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 2;
    c.half_open_probes = 1;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    rs_permit old[4], probe, p;
    uint64_t remaining;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(rs_breaker_acquire(&b, T0, &old[i], &remaining), RS_OK);
    }
    calls(&b, T0, 2, 1, 1.0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_success(&b, &old[0], 1.0, T0); /* stale while OPEN */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns, &probe, &remaining), RS_OK);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    drain(&b);
    const uint64_t total_before = b.window.total;
    rs_breaker_success(&b, &old[1], 1.0, T0 + c.cooldown_ns); /* would close if counted */
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    rs_breaker_failure(&b, &old[2], 1.0, T0 + c.cooldown_ns); /* would reopen if counted */
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    rs_breaker_release(&b, &old[3], T0 + c.cooldown_ns); /* must not free a probe slot */
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_U64(b.counters.stale, 3);
    CHECK_EQ_U64(b.window.total, total_before + 2); /* statistics still updated */
    CHECK_EQ_U64(b.counters.successes, 2);
    rs_breaker_success(&b, &probe, 1.0, T0 + c.cooldown_ns);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);
}

/* A probe permit from an earlier HALF_OPEN episode neither closes nor returns to the new pool. */
static void test_stale_probe_from_earlier_episode(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_probes = 2;
    rs_breaker b;
    open_breaker(&b, &c);
    uint64_t t = T0 + c.cooldown_ns, remaining;
    rs_permit q1, q2, n1, n2, n3;
    CHECK_EQ_INT(rs_breaker_acquire(&b, t, &q1, &remaining), RS_OK);
    CHECK_EQ_INT(rs_breaker_acquire(&b, t, &q2, &remaining), RS_OK);
    rs_breaker_failure(&b, &q2, 1.0, t);
    CHECK_STATE(&b, RS_STATE_OPEN);
    t += 2 * c.cooldown_ns;
    CHECK_EQ_INT(rs_breaker_acquire(&b, t, &n1, &remaining), RS_OK);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    CHECK(n1.epoch != q1.epoch);
    rs_breaker_release(&b, &q1, t);
    CHECK_EQ_INT(rs_breaker_acquire(&b, t, &n2, &remaining), RS_OK);
    CHECK_EQ_INT(rs_breaker_acquire(&b, t, &n3, &remaining), RS_EREJECTED);
    rs_breaker_success(&b, &q1, 1.0, t);
    rs_breaker_success(&b, &n1, 1.0, t);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN); /* only one current probe has succeeded */
    rs_breaker_success(&b, &n2, 1.0, t);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);
}

/* half_open_probes = 0 goes OPEN -> CLOSED once the cooldown has elapsed. */
static void test_zero_probes_closes_after_cooldown(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_probes = 0;
    rs_breaker b;
    open_breaker(&b, &c);
    rs_permit p;
    uint64_t remaining;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns - 1, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + c.cooldown_ns, &p, &remaining), RS_OK);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_INT(p.kind, RS_PERMIT_NORMAL);
    CHECK_EQ_U64(p.epoch, 2);
    CHECK_EQ_U64(b.window.total, 0);
    CHECK_EQ_U64(b.consecutive_failures, 0);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_CLOSED, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_free(&b);
}

/* HALF_OPEN undecided after half_open_max_wait reopens with the grown cooldown. */
static void test_half_open_max_wait(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.cooldown_ns = 10 * SEC;
    c.half_open_max_wait_ns = 5 * SEC;
    rs_breaker b;
    open_breaker(&b, &c);
    rs_permit probe, p;
    uint64_t remaining;
    const uint64_t t_half = T0 + 10 * SEC;
    CHECK_EQ_INT(rs_breaker_acquire(&b, t_half, &probe, &remaining), RS_OK);
    rs_breaker_tick(&b, t_half + 5 * SEC - 1);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    CHECK_EQ_INT(rs_breaker_acquire(&b, t_half + 5 * SEC, &p, &remaining), RS_EREJECTED);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(remaining, 20 * SEC);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_OPEN, RS_REASON_HALF_OPEN_TIMEOUT);
    rs_breaker_success(&b, &probe, 1.0, t_half + 6 * SEC); /* late probe: stale */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(b.counters.stale, 1);
    rs_breaker_free(&b);
}

/* The failure-rate rule trips once the window holds minimum_calls outcomes, not before. */
static void test_failure_rate_trip_respects_minimum_calls(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.failure_rate_enabled = 1;
    c.failure_rate_threshold = 0.5;
    c.window_size = 20;
    c.minimum_calls = 10;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    for (int i = 0; i < 9; i++) { /* F S F S ... F: 5/9 failed */
        call(&b, T0, i % 2 == 0, 1.0);
    }
    CHECK_STATE(&b, RS_STATE_CLOSED);
    call(&b, T0, 0, 1.0); /* 5/10 = 0.5 >= 0.5 */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_FAILURE_RATE);
    rs_breaker_free(&b);

    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    for (int i = 0; i < 40; i++) { /* F S S F S ... : 0.4 < 0.5 */
        call(&b, T0, i % 5 == 0 || i % 5 == 3, 1.0);
    }
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);
}

/* The slow-call rule counts latency >= slow_call_ms and trips only from minimum_calls. */
static void test_slow_rate_trip_respects_minimum_calls(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.slow_call_enabled = 1;
    c.slow_call_ms = 100.0;
    c.slow_call_rate_threshold = 0.5;
    c.window_size = 20;
    c.minimum_calls = 10;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 30, 0, 99.999); /* not slow */
    calls(&b, T0, 30, 0, -1.0);   /* no latency: not slow */
    CHECK_EQ_U64(b.counters.slow, 0);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);

    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 9, 0, 100.0); /* exactly slow_call_ms is slow */
    CHECK_EQ_U64(b.counters.slow, 9);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    call(&b, T0, 0, 100.0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_SLOW_CALL_RATE);
    rs_breaker_free(&b);
}

/* Health below min_health_score / 2 trips, once minimum_calls is reached. */
static void test_health_critical_trip(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.window_size = 10;
    c.minimum_calls = 10;
    c.latency_window = 10;
    c.min_health_score = 0.6; /* critical below 0.3 */
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 9, 1, 6000.0); /* health 0.5*0 + 0.3*0 + 0.2*1 = 0.2 */
    CHECK_STATE(&b, RS_STATE_CLOSED);
    call(&b, T0, 1, 6000.0);
    CHECK_NEAR(rs_breaker_health(&b), 0.2, 1e-9);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_HEALTH_CRITICAL);
    rs_breaker_free(&b);
}

/* ---- health score ------------------------------------------------------ */

/* Latency score at every band edge (0, 100, 1000, 5000 ms), inside the bands and beyond. */
static void test_latency_score_bands(void) {
    CHECK_NEAR(rs_latency_score(0.0), 1.0, 1e-12);
    CHECK_NEAR(rs_latency_score(50.0), 0.975, 1e-12);
    CHECK_NEAR(rs_latency_score(100.0), 0.95, 1e-12);
    CHECK_NEAR(rs_latency_score(100.0 + 1e-9), 0.95, 1e-9);
    CHECK_NEAR(rs_latency_score(550.0), 0.725, 1e-12);
    CHECK_NEAR(rs_latency_score(1000.0), 0.5, 1e-12);
    CHECK_NEAR(rs_latency_score(1000.0 + 1e-9), 0.5, 1e-9);
    CHECK_NEAR(rs_latency_score(3000.0), 0.25, 1e-12);
    CHECK_NEAR(rs_latency_score(5000.0), 0.0, 1e-12);
    CHECK_NEAR(rs_latency_score(5000.0 - 1e-9), 0.0, 1e-9);
    CHECK(rs_latency_score(5000.001) == 0.0);
    CHECK(rs_latency_score(1e12) == 0.0);
    CHECK(rs_latency_score(INFINITY) == 0.0);
    int monotone = 1;
    for (double m = 0.0; m < 6000.0; m += 0.25) {
        double s = rs_latency_score(m);
        monotone &= s >= 0.0 && s <= 1.0 && rs_latency_score(m + 0.25) <= s;
    }
    CHECK(monotone);
}

/* Jitter score at every band edge (0, 50, 200, 500 ms stddev), inside the bands and beyond. */
static void test_jitter_score_bands(void) {
    CHECK_NEAR(rs_jitter_score(0.0), 1.0, 1e-12);
    CHECK_NEAR(rs_jitter_score(25.0), 0.9, 1e-12);
    CHECK_NEAR(rs_jitter_score(50.0), 0.8, 1e-12);
    CHECK_NEAR(rs_jitter_score(50.0 + 1e-9), 0.8, 1e-9);
    CHECK_NEAR(rs_jitter_score(125.0), 0.55, 1e-12);
    CHECK_NEAR(rs_jitter_score(200.0), 0.3, 1e-12);
    CHECK_NEAR(rs_jitter_score(200.0 + 1e-9), 0.3, 1e-9);
    CHECK_NEAR(rs_jitter_score(350.0), 0.15, 1e-12);
    CHECK_NEAR(rs_jitter_score(500.0), 0.0, 1e-12);
    CHECK_NEAR(rs_jitter_score(500.0 - 1e-9), 0.0, 1e-9);
    CHECK(rs_jitter_score(500.001) == 0.0);
    CHECK(rs_jitter_score(1e12) == 0.0);
    CHECK(rs_jitter_score(INFINITY) == 0.0);
    int monotone = 1;
    for (double s = 0.0; s < 600.0; s += 0.25) {
        double j = rs_jitter_score(s);
        monotone &= j >= 0.0 && j <= 1.0 && rs_jitter_score(s + 0.25) <= j;
    }
    CHECK(monotone);
}

/* Health = 0.5 success rate + 0.3 latency score + 0.2 jitter score; empty parts count as 1.0. */
static void test_health_formula(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.window_size = 10;
    c.latency_window = 10;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK_NEAR(rs_breaker_health(&b), 1.0, 1e-12);
    CHECK_NEAR(rs_breaker_success_rate(&b), 1.0, 0.0);
    calls(&b, T0, 2, 1, -1.0); /* outcomes without latency: sr 0, latency parts 1.0 */
    CHECK_NEAR(rs_breaker_health(&b), 0.5, 1e-12);
    rs_breaker_reset(&b, T0);
    calls(&b, T0, 3, 0, 100.0);
    calls(&b, T0, 2, 1, 300.0);
    calls(&b, T0, 2, 0, 100.0);
    calls(&b, T0, 3, 0, 300.0);
    /* sr 0.8; latencies mean 200 sd 100: ls 0.95-0.45*100/900 = 0.9, js 0.8-0.5*50/150 */
    CHECK_NEAR(rs_breaker_success_rate(&b), 0.8, 1e-12);
    CHECK_NEAR(rs_breaker_health(&b), 0.5 * 0.8 + 0.3 * 0.9 + 0.2 * (0.8 - 0.5 / 3.0), 1e-9);
    rs_breaker_free(&b);
}

/* DEGRADED is entered below min_health_score and left above 0.7, without an epoch change. */
static void test_degraded_enter_and_leave(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.window_size = 10;
    c.minimum_calls = 10;
    c.latency_window = 10;
    c.min_health_score = 0.6; /* degraded below 0.6, critical below 0.3 */
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    /* All latencies 10 ms: latency part 0.3*0.995 + 0.2*1 = 0.4985; health = 0.5*sr + 0.4985. */
    rs_permit early;
    uint64_t remaining;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0, &early, &remaining), RS_OK);
    calls(&b, T0, 9, 1, 10.0);
    CHECK_STATE(&b, RS_STATE_CLOSED); /* below minimum_calls: no health rule */
    call(&b, T0, 1, 10.0);            /* health 0.4985: low, not critical */
    CHECK_NEAR(rs_breaker_health(&b), 0.4985, 1e-6);
    CHECK_STATE(&b, RS_STATE_DEGRADED);
    CHECK_EQ_U64(b.epoch, 0);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_DEGRADED, RS_REASON_HEALTH_LOW);
    rs_permit p;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0, &p, &remaining), RS_OK); /* DEGRADED admits */
    CHECK_EQ_INT(p.kind, RS_PERMIT_NORMAL);
    CHECK_EQ_U64(p.epoch, early.epoch);
    rs_breaker_success(&b, &early, 10.0, T0); /* a CLOSED-era permit is still current: sr 0.1 */
    CHECK_EQ_U64(b.counters.stale, 0);
    CHECK_STATE(&b, RS_STATE_DEGRADED);
    calls(&b, T0, 3, 0, 10.0); /* sr 0.4: health 0.6985, not above 0.7 */
    CHECK_NEAR(rs_breaker_health(&b), 0.6985, 1e-6);
    CHECK_STATE(&b, RS_STATE_DEGRADED);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_success(&b, &p, 10.0, T0); /* sr 0.5: health 0.7485 > 0.7 */
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_U64(b.epoch, 0);
    CHECK_EQ_U64(b.counters.stale, 0);
    CHECK_TRANSITION(&b, RS_STATE_DEGRADED, RS_STATE_CLOSED, RS_REASON_HEALTH_RECOVERED);
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_U64(b.counters.transitions[RS_STATE_DEGRADED], 1);
    CHECK_EQ_U64(b.counters.transitions[RS_STATE_CLOSED], 1);
    rs_breaker_free(&b);
}

/* ---- adaptive threshold ----------------------------------------------- */

/* Signal bands map to max(1, T//3), max(1, T//2), max(1, 3T//4) and T (band edges exclusive). */
static void test_effective_threshold_bands(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    c.failure_threshold = 100; /* high enough that no pattern below trips */
    c.ewma_alpha = 1.0;        /* one period from m = v = 0 gives m = rate, v = 0 */
    c.window_size = 100;       /* a period is 10 outcomes: rates k / 10 */
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 100);
    /* signal k/10: 0.3 is not > 0.3, 0.5 not > 0.5, 0.7 not > 0.7 */
    const uint32_t expected[11] = {100, 100, 100, 100, 75, 75, 50, 50, 33, 33, 33};
    for (int k = 0; k <= 10; k++) {
        rs_breaker_reset(&b, T0);
        calls(&b, T0, k, 1, -1.0);
        calls(&b, T0, 10 - k, 0, -1.0);
        CHECK_EQ_U64(b.ewma.count, 1);
        CHECK_NEAR(rs_breaker_signal(&b), k / 10.0, 0.0);
        CHECK_EQ_U64(rs_breaker_effective_threshold(&b), expected[k]);
    }
    rs_breaker_reset(&b, T0); /* reset forgets the EWMA, so the threshold is T again */
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 100);
    rs_breaker_free(&b);

    c.adaptive = 0; /* adaptive off: always T */
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 10, 1, -1.0);
    CHECK(b.ewma.count == 1 && rs_breaker_signal(&b) == 1.0);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 100);
    rs_breaker_free(&b);

    c.adaptive = 1;
    c.failure_threshold = 0; /* rule off stays off */
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 10, 1, -1.0);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 0);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);

    /* max(1, 2//3) = 1: with per-outcome periods the first failure trips. */
    c.failure_threshold = 2;
    c.window_size = 10;
    c.minimum_calls = 10;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    call(&b, T0, 1, -1.0);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 1);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_CONSECUTIVE_FAILURES);
    rs_breaker_free(&b);
}

/* Feeds `periods` count-window periods of 10 outcomes following pattern ('F' fails). */
static void feed_periods(rs_breaker *b, const char *pattern, int periods, double *m, double *v,
                         double alpha) {
    for (int k = 0; k < periods; k++) {
        int fails = 0;
        for (int i = 0; i < 10; i++) {
            fails += pattern[i] == 'F';
            call(b, T0, pattern[i] == 'F', -1.0);
        }
        double d = fails / 10.0 - *m; /* the documented rule, as the reference */
        *m += alpha * d;
        *v = (1.0 - alpha) * (*v + alpha * d * d);
    }
}

/* A steady failure rate lowers the effective threshold (0.4 -> 3T//4, 0.6 -> T//2), and trips sooner. */
static void test_adaptive_threshold_drops_under_steady_failures(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    c.failure_threshold = 9;
    c.window_size = 100; /* a period is 10 outcomes */
    c.minimum_calls = 100;
    rs_breaker b;

    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    double m = 0.0, v = 0.0;
    feed_periods(&b, "FSFSFSFSSS", 40, &m, &v, c.ewma_alpha);
    CHECK_EQ_U64(b.ewma.count, 40);
    CHECK_NEAR(b.ewma.mean, m, 1e-12);
    CHECK_NEAR(rs_breaker_signal(&b), m - 2.0 * sqrt(v), 1e-9);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 6);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);

    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    m = v = 0.0;
    feed_periods(&b, "FFSFFSFFSS", 1, &m, &v, c.ewma_alpha);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 9); /* one period: still volatile */
    feed_periods(&b, "FFSFFSFFSS", 39, &m, &v, c.ewma_alpha);
    CHECK_NEAR(b.ewma.mean, 0.6, 1e-5);
    CHECK_NEAR(rs_breaker_signal(&b), m - 2.0 * sqrt(v), 1e-9);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 4);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    drain(&b);
    calls(&b, T0, 3, 1, -1.0);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    call(&b, T0, 1, -1.0); /* the 4th consecutive failure trips (T would need 9) */
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_transition t;
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_INT(t.reason, RS_REASON_CONSECUTIVE_FAILURES);
    CHECK_EQ_U64(t.consecutive_failures, 4);
    rs_breaker_free(&b);
}

/* A single one-period failure spike leaves the effective threshold at T. */
static void test_adaptive_threshold_ignores_single_spike(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    c.failure_threshold = 20;
    c.window_size = 100;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    double m = 0.0, v = 0.0;
    feed_periods(&b, "SSSSSSSSSS", 10, &m, &v, c.ewma_alpha);
    feed_periods(&b, "FFFFFFFFFF", 1, &m, &v, c.ewma_alpha);
    CHECK_NEAR(b.ewma.mean, m, 1e-12);
    CHECK(b.ewma.mean > 0.29); /* the spike was seen ... */
    CHECK(rs_breaker_signal(&b) == 0.0); /* ... and discounted by its volatility */
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 20);
    feed_periods(&b, "SSSSSSSSSS", 1, &m, &v, c.ewma_alpha);
    CHECK_EQ_U64(rs_breaker_effective_threshold(&b), 20);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);
}

/* A time window feeds the EWMA one period per non-empty bucket and forgets old outcomes. */
static void test_time_window_breaker(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.failure_rate_enabled = 1;
    c.failure_rate_threshold = 0.5;
    c.window_duration_ns = 10 * SEC; /* buckets of 1 s */
    c.minimum_calls = 4;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 3, 1, -1.0);
    CHECK_EQ_U64(b.ewma.count, 0);
    rs_breaker_tick(&b, T0 + 1 * SEC); /* bucket ends: one period of rate 1.0 */
    CHECK_EQ_U64(b.ewma.count, 1);
    CHECK_NEAR(b.ewma.mean, 0.3, 1e-12);
    rs_breaker_tick(&b, T0 + 5 * SEC); /* empty buckets are skipped */
    CHECK_EQ_U64(b.ewma.count, 1);
    call(&b, T0 + 10 * SEC, 1, -1.0); /* the 3 failures at T0 have dropped out */
    CHECK_EQ_U64(b.window.total, 1);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    calls(&b, T0 + 10 * SEC, 3, 1, -1.0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_free(&b);
}

/* ---- manual control, permits without a permit, ejector, queue, time --- */

/* force_open rejects forever with remaining UINT64_MAX; disable admits all and never trips. */
static void test_force_open_and_disable(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    rs_breaker_force_open(&b, T0);
    CHECK_STATE(&b, RS_STATE_FORCED_OPEN);
    CHECK_EQ_U64(b.epoch, 1);
    rs_breaker_force_open(&b, T0); /* idempotent */
    CHECK_EQ_U64(b.epoch, 1);
    rs_permit p;
    uint64_t remaining = 0;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + 1000000 * SEC, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_U64(remaining, UINT64_MAX);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 0);
    CHECK_STATE(&b, RS_STATE_FORCED_OPEN);
    rs_breaker_success(&b, NULL, 1.0, T0 + 1000000 * SEC); /* permit-less: no transition */
    CHECK_STATE(&b, RS_STATE_FORCED_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_FORCED_OPEN, RS_REASON_FORCE_OPEN);
    CHECK_EQ_INT(drain(&b), 0);

    const uint64_t t = T0 + 1000000 * SEC;
    rs_breaker_disable(&b, t);
    CHECK_STATE(&b, RS_STATE_DISABLED);
    rs_breaker_disable(&b, t);
    CHECK_EQ_INT(calls(&b, t, 100, 1, 9000.0), 100);
    CHECK_STATE(&b, RS_STATE_DISABLED);
    CHECK_EQ_U64(b.counters.failures, 100);
    CHECK_EQ_U64(b.window.total, 100);
    CHECK_TRANSITION(&b, RS_STATE_FORCED_OPEN, RS_STATE_DISABLED, RS_REASON_DISABLE);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_free(&b);
}

/* open/close move to OPEN (with the base cooldown) and CLOSED (cleared); repeats are no-ops. */
static void test_manual_open_close(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 4, 1, 1.0);
    rs_breaker_open(&b, T0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 60 * SEC);
    rs_breaker_open(&b, T0 + 10 * SEC); /* already open: cooldown not restarted */
    CHECK_EQ_U64(rs_breaker_remaining(&b), 50 * SEC);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_MANUAL_OPEN);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_close(&b, T0 + 10 * SEC);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_U64(b.window.total, 0);
    CHECK_EQ_U64(b.consecutive_failures, 0);
    CHECK_EQ_U64(b.latencies.n, 0);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_CLOSED, RS_REASON_MANUAL_CLOSE);
    rs_breaker_close(&b, T0 + 10 * SEC);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_open(&b, T0 + 20 * SEC);
    rs_breaker_tick(&b, T0 + 80 * SEC);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    rs_breaker_free(&b);
}

/* follow: OPEN for a given time (refreshed without a transition), HALF_OPEN
 * with a fresh probe pool, CLOSED with the window cleared, all "cluster". */
static void test_follow(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 3, 1, 1.0);
    rs_breaker_follow(&b, T0, RS_STATE_OPEN, 7 * SEC);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 7 * SEC);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_CLUSTER);
    rs_breaker_follow(&b, T0 + 2 * SEC, RS_STATE_OPEN, 9 * SEC);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 9 * SEC);
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_INT(calls(&b, T0 + 3 * SEC, 1, 0, 1.0), 0);
    rs_breaker_follow(&b, T0 + 3 * SEC, RS_STATE_HALF_OPEN, 0);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_CLUSTER);
    CHECK_EQ_INT(calls(&b, T0 + 3 * SEC, 1, 1, 1.0), 1); /* a probe fails: reopen, grown */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 18 * SEC);
    drain(&b);
    rs_breaker_follow(&b, T0 + 4 * SEC, RS_STATE_CLOSED, 0);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_CLOSED, RS_REASON_CLUSTER);
    calls(&b, T0 + 4 * SEC, 2, 1, 1.0);
    rs_breaker_follow(&b, T0 + 4 * SEC, RS_STATE_CLOSED, 0); /* already closed: window cleared */
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_U64(b.window.total, 0);
    CHECK_EQ_U64(b.consecutive_failures, 0);
    rs_breaker_follow(&b, T0 + 4 * SEC, RS_STATE_FORCED_OPEN, 0); /* not followed */
    CHECK_STATE(&b, RS_STATE_CLOSED);
    rs_breaker_free(&b);
}

/* reset returns to CLOSED and clears counts, window, EWMA and cooldown growth. */
static void test_reset_clears_everything(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.window_size = 10;
    c.half_open_probes = 1;
    rs_breaker b;
    open_breaker(&b, &c);
    call(&b, T0 + 60 * SEC, 1, 1.0); /* probe fails: cooldown grows to 120 s */
    CHECK_EQ_U64(rs_breaker_remaining(&b), 120 * SEC);
    CHECK(b.ewma.count > 0);
    rs_breaker_reset(&b, T0 + 61 * SEC);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_OPEN, RS_REASON_PROBE_FAILED);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_CLOSED, RS_REASON_RESET);
    CHECK_EQ_U64(b.window.total, 0);
    CHECK_EQ_U64(b.latencies.n, 0);
    CHECK_EQ_U64(b.consecutive_failures, 0);
    CHECK_EQ_U64(b.ewma.count, 0);
    CHECK(b.ewma.mean == 0.0 && b.ewma.var == 0.0);
    CHECK_EQ_U64(b.counters.failures, 0);
    CHECK_EQ_U64(b.counters.permitted, 0);
    calls(&b, T0 + 61 * SEC, 5, 1, 1.0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 60 * SEC);
    rs_breaker_free(&b);
}

/* A NULL permit is a current-epoch permit: trips when CLOSED, acts as a probe when HALF_OPEN. */
static void test_null_permit(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_probes = 2;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    for (int i = 0; i < 5; i++) {
        rs_breaker_failure(&b, NULL, 1.0, T0);
    }
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_success(&b, NULL, 1.0, T0); /* OPEN: statistics only */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(b.counters.successes, 1);
    rs_breaker_success(&b, NULL, 1.0, T0 + 60 * SEC); /* ticks to HALF_OPEN, then counts as a probe */
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    rs_breaker_failure(&b, NULL, 1.0, T0 + 60 * SEC);
    CHECK_STATE(&b, RS_STATE_OPEN);
    const uint64_t t = T0 + 60 * SEC + 120 * SEC;
    rs_breaker_success(&b, NULL, 1.0, t);
    rs_breaker_success(&b, NULL, 1.0, t);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_U64(b.counters.stale, 0);
    rs_breaker_free(&b);
}

/* The ejector vetoes trips past its budget: the breaker goes DEGRADED and the veto is counted. */
static void test_ejector_veto(void) {
    rs_ejector ej;
    CHECK_EQ_INT(rs_ejector_init(&ej, 101), RS_EINVAL);
    CHECK_EQ_INT(rs_ejector_init(&ej, 50), RS_OK);
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker a, b;
    CHECK_EQ_INT(rs_breaker_init(&a, &c, T0), RS_OK);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    rs_breaker_set_ejector(&a, &ej);
    rs_breaker_set_ejector(&b, &ej);
    CHECK_EQ_U64(ej.members, 2); /* budget: 50% of 2 = 1 */
    calls(&a, T0, 5, 1, 1.0);
    CHECK_STATE(&a, RS_STATE_OPEN);
    CHECK_EQ_U64(ej.ejected, 1);
    CHECK_EQ_INT(rs_ejector_can_eject(&ej), 0);
    calls(&b, T0, 5, 1, 1.0);
    CHECK_STATE(&b, RS_STATE_DEGRADED);
    CHECK_EQ_U64(b.counters.vetoed, 1);
    CHECK_EQ_U64(ej.vetoed, 1);
    CHECK_EQ_U64(b.epoch, 0);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_DEGRADED, RS_REASON_EJECTION_CAPPED);
    call(&b, T0, 1, 1.0); /* vetoed again, stays DEGRADED, no new transition */
    CHECK_STATE(&b, RS_STATE_DEGRADED);
    CHECK_EQ_U64(b.counters.vetoed, 2);
    CHECK_EQ_U64(ej.vetoed, 2);
    CHECK_EQ_INT(drain(&b), 0);
    CHECK_EQ_INT(call(&b, T0, 0, 1.0), RS_OK); /* DEGRADED still admits */
    rs_breaker_tick(&a, T0 + 60 * SEC);        /* HALF_OPEN is still ejected */
    CHECK_STATE(&a, RS_STATE_HALF_OPEN);
    CHECK_EQ_U64(ej.ejected, 1);
    rs_breaker_close(&a, T0 + 60 * SEC);
    CHECK_EQ_U64(ej.ejected, 0);
    calls(&b, T0 + 60 * SEC, 5, 1, 1.0); /* budget free again: b may trip */
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(ej.ejected, 1);
    rs_breaker_force_open(&a, T0 + 60 * SEC); /* manual control is not vetoed */
    CHECK_STATE(&a, RS_STATE_FORCED_OPEN);
    CHECK_EQ_U64(ej.ejected, 2);
    rs_breaker_free(&a); /* detaches */
    CHECK_EQ_U64(ej.members, 1);
    CHECK_EQ_U64(ej.ejected, 1);
    rs_breaker_free(&b);
    CHECK_EQ_U64(ej.members, 0);
    CHECK_EQ_U64(ej.ejected, 0);

    /* One member may always be ejected, even at 0%. */
    CHECK_EQ_INT(rs_ejector_init(&ej, 0), RS_OK);
    CHECK_EQ_INT(rs_breaker_init(&a, &c, T0), RS_OK);
    rs_breaker_set_ejector(&a, &ej);
    calls(&a, T0, 5, 1, 1.0);
    CHECK_STATE(&a, RS_STATE_OPEN);
    CHECK_EQ_U64(ej.vetoed, 0);
    rs_breaker_free(&a);
}

/* Transitions are queued and popped oldest first; the queue keeps the newest RS_BREAKER_PENDING. */
static void test_transition_queue_order(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_probes = 1;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 5, 1, 1.0);
    call(&b, T0 + 60 * SEC, 1, 1.0);
    call(&b, T0 + 180 * SEC, 0, 1.0);
    CHECK_EQ_U64(b.pending_len, 5);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_CONSECUTIVE_FAILURES);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_OPEN, RS_REASON_PROBE_FAILED);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_CLOSED, RS_REASON_PROBES_SUCCEEDED);
    rs_transition t;
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 0);

    for (int i = 0; i < RS_BREAKER_PENDING + 2; i++) { /* 10 transitions, never drained */
        if (i % 2 == 0) {
            rs_breaker_force_open(&b, T0 + 200 * SEC);
        } else {
            rs_breaker_disable(&b, T0 + 200 * SEC);
        }
    }
    CHECK_EQ_U64(b.pending_len, RS_BREAKER_PENDING);
    CHECK_EQ_U64(b.pending_dropped, 2);
    CHECK_TRANSITION(&b, RS_STATE_DISABLED, RS_STATE_FORCED_OPEN, RS_REASON_FORCE_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_FORCED_OPEN, RS_STATE_DISABLED, RS_REASON_DISABLE);
    CHECK_EQ_INT(drain(&b), RS_BREAKER_PENDING - 2);
    rs_breaker_free(&b);
}

/* A transition records the consecutive count, window success rate and the causing latency (-1 if none). */
static void test_transition_record_fields(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 5, 0, 1.0);
    calls(&b, T0, 4, 1, 1.0);
    call(&b, T0, 1, 42.0);
    rs_transition t;
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_U64(t.consecutive_failures, 5);
    CHECK_NEAR(t.success_rate, 0.5, 1e-12);
    CHECK_NEAR(t.latency_ms, 42.0, 0.0);
    rs_breaker_reset(&b, T0);
    drain(&b);
    calls(&b, T0, 5, 1, -1.0); /* failures without a latency sample */
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_NEAR(t.latency_ms, -1.0, 0.0);
    rs_breaker_free(&b);
}

/* A transition not caused by an outcome (cooldown, timeout, manual) has latency_ms = -1. */
static void test_transition_latency_without_outcome(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_max_wait_ns = 5 * SEC;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 5, 1, 42.0);
    rs_transition t;
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_NEAR(t.latency_ms, 42.0, 0.0); /* caused by the 42 ms failure */
    rs_breaker_tick(&b, T0 + 60 * SEC);   /* cooldown elapsed: no outcome involved */
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_INT(t.reason, RS_REASON_COOLDOWN_ELAPSED);
    CHECK_NEAR(t.latency_ms, -1.0, 0.0);
    rs_breaker_tick(&b, T0 + 65 * SEC); /* half_open_max_wait: no outcome involved */
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_INT(t.reason, RS_REASON_HALF_OPEN_TIMEOUT);
    CHECK_NEAR(t.latency_ms, -1.0, 0.0);
    rs_breaker_force_open(&b, T0 + 66 * SEC);
    CHECK_EQ_INT(rs_breaker_pop_transition(&b, &t), 1);
    CHECK_EQ_INT(t.reason, RS_REASON_FORCE_OPEN);
    CHECK_NEAR(t.latency_ms, -1.0, 0.0);
    rs_breaker_free(&b);
}

/* Time going backwards is clamped: no early HALF_OPEN, no underflowed remaining time. */
static void test_time_backwards_is_clamped(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.half_open_probes = 1;
    rs_breaker b;
    open_breaker(&b, &c);
    rs_permit p;
    uint64_t remaining = 0;
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 - 500 * SEC, &p, &remaining), RS_EREJECTED);
    CHECK_EQ_U64(remaining, 60 * SEC);
    CHECK_EQ_U64(b.now_ns, T0);
    rs_breaker_tick(&b, 0);
    CHECK_STATE(&b, RS_STATE_OPEN);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 60 * SEC);
    rs_breaker_tick(&b, T0 + 30 * SEC);
    rs_breaker_tick(&b, T0 + 10 * SEC);
    CHECK_EQ_U64(b.now_ns, T0 + 30 * SEC);
    CHECK_EQ_U64(rs_breaker_remaining(&b), 30 * SEC);
    CHECK_EQ_INT(rs_breaker_acquire(&b, T0 + 60 * SEC, &p, &remaining), RS_OK);
    rs_breaker_success(&b, &p, 1.0, T0); /* reported with an older time */
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_U64(b.now_ns, T0 + 60 * SEC);
    rs_breaker_free(&b);

    /* Time window: a late timestamp does not resurrect or misplace outcomes. */
    c.window_duration_ns = 10 * SEC;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    call(&b, T0 + 20 * SEC, 0, 1.0);
    call(&b, T0 + 1 * SEC, 0, 1.0); /* clamped to T0 + 20 s */
    CHECK_EQ_U64(b.window.total, 2);
    rs_breaker_tick(&b, T0 + 29 * SEC);
    CHECK_EQ_U64(b.window.total, 2);
    rs_breaker_tick(&b, T0 + 30 * SEC);
    CHECK_EQ_U64(b.window.total, 0);
    rs_breaker_free(&b);
}

/* ---- allocator hooks --------------------------------------------------- */

#define MAX_LIVE 64
static void *live_ptrs[MAX_LIVE];
static int live_count, alloc_calls, free_calls, fail_at; /* fail_at: 1-based call to fail, 0 = never */

static void *counting_alloc(size_t size) {
    alloc_calls++;
    if (fail_at && alloc_calls >= fail_at) {
        return NULL;
    }
    void *p = malloc(size);
    if (p && live_count < MAX_LIVE) {
        live_ptrs[live_count++] = p;
    }
    return p;
}

static void counting_free(void *p) {
    free_calls++;
    for (int i = 0; i < live_count; i++) {
        if (live_ptrs[i] == p) {
            live_ptrs[i] = live_ptrs[--live_count];
            break;
        }
    }
    free(p);
}

static void install_counting(int fail_at_call) {
    live_count = alloc_calls = free_calls = 0;
    fail_at = fail_at_call;
    rs_set_allocator(counting_alloc, counting_free);
}

/* rs_alloc/rs_calloc/rs_free go through the hooks; calloc zeroes and rejects overflow. */
static void test_common_allocator_hooks(void) {
    install_counting(0);
    unsigned char *p = rs_calloc(16, 4);
    CHECK(p != NULL);
    int zero = 1;
    for (int i = 0; p && i < 64; i++) {
        zero &= p[i] == 0;
    }
    CHECK(zero);
    void *q = rs_alloc(0); /* a zero-size request still yields a pointer */
    CHECK(q != NULL);
    CHECK_EQ_INT(alloc_calls, 2);
    CHECK(rs_calloc(SIZE_MAX / 2, 4) == NULL); /* overflow: hook not called */
    CHECK_EQ_INT(alloc_calls, 2);
    rs_free(p);
    rs_free(q);
    rs_free(NULL); /* accepted, not forwarded */
    CHECK_EQ_INT(free_calls, 2);
    CHECK_EQ_INT(live_count, 0);
    rs_set_allocator(NULL, NULL); /* back to malloc/free */
    void *r = rs_alloc(8);
    CHECK(r != NULL);
    CHECK_EQ_INT(alloc_calls, 2);
    rs_free(r);
    CHECK_EQ_INT(free_calls, 2);
}

/* Every allocation made by rs_breaker_init is freed by rs_breaker_free. */
static void test_breaker_frees_everything(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    rs_breaker b;
    install_counting(0);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK(alloc_calls >= 2); /* outcome ring and latency ring */
    calls(&b, T0, 200, 0, 5.0);
    calls(&b, T0, 10, 1, 5.0);
    rs_breaker_reset(&b, T0);
    CHECK(live_count > 0);
    rs_breaker_free(&b);
    CHECK_EQ_INT(live_count, 0);
    CHECK_EQ_INT(free_calls, alloc_calls);

    c.window_duration_ns = 10 * SEC; /* time window: only the latency ring */
    install_counting(0);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    CHECK(alloc_calls >= 1);
    rs_breaker_free(&b);
    CHECK_EQ_INT(live_count, 0);
    CHECK_EQ_INT(free_calls, alloc_calls);

    c.ewma_alpha = 2.0; /* a bad config allocates nothing */
    install_counting(0);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_EFIELD_BASE + RS_BF_EWMA_ALPHA);
    CHECK_EQ_INT(alloc_calls, 0);
    rs_set_allocator(NULL, NULL);
}

/* A failing allocator makes rs_breaker_init return RS_ENOMEM with nothing leaked, at every allocation. */
static void test_breaker_init_enomem(void) {
    rs_breaker_config c;
    rs_breaker_config_default(&c);
    rs_breaker b;
    install_counting(0);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    const int needed = alloc_calls;
    rs_breaker_free(&b);
    for (int k = 1; k <= needed; k++) {
        install_counting(k);
        CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_ENOMEM);
        CHECK_EQ_INT(live_count, 0);
    }
    c.window_duration_ns = 10 * SEC;
    install_counting(1);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_ENOMEM);
    CHECK_EQ_INT(live_count, 0);

    rs_window w;
    rs_latring l;
    install_counting(1);
    CHECK_EQ_INT(rs_window_init_count(&w, 10), RS_ENOMEM);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_latring_init(&l, 10), RS_ENOMEM);
    rs_latring_free(&l);
    CHECK_EQ_INT(live_count, 0);
    rs_set_allocator(NULL, NULL);
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    rs_breaker_free(&b);
}

/* ---- run-time configuration -------------------------------------------- */

/* configure() keeps the state and counts and applies the new thresholds. */
static void test_configure_keeps_state_and_counts(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 2, 1, 5.0);
    c.failure_threshold = 3;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0), RS_OK);
    CHECK_EQ_U64(b.consecutive_failures, 2);
    CHECK_EQ_U64(b.counters.failures, 2);
    CHECK_STATE(&b, RS_STATE_CLOSED);
    CHECK_EQ_INT(drain(&b), 0);
    call(&b, T0, 1, 5.0);
    CHECK_TRANSITION(&b, RS_STATE_CLOSED, RS_STATE_OPEN, RS_REASON_CONSECUTIVE_FAILURES);
    /* a shorter cooldown applies to the OPEN state at once */
    CHECK_EQ_U64(rs_breaker_remaining(&b), 60 * SEC);
    c.cooldown_ns = 2 * SEC;
    c.cooldown_max_ns = 8 * SEC;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + SEC), RS_OK);
    CHECK_EQ_U64(rs_breaker_remaining(&b), SEC);
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + 2 * SEC), RS_OK);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    /* a probe fails: the cooldown grows by the multiplier; then a new base keeps the growth */
    call(&b, T0 + 2 * SEC, 1, 5.0);
    CHECK_EQ_U64(b.cooldown_cur_ns, 4 * SEC);
    drain(&b);
    c.cooldown_ns = 1 * SEC;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + 2 * SEC), RS_OK);
    CHECK_EQ_U64(b.cooldown_cur_ns, 2 * SEC);
    c.cooldown_max_ns = c.cooldown_ns = 1 * SEC;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + 2 * SEC), RS_OK);
    CHECK_EQ_U64(b.cooldown_cur_ns, 1 * SEC);
    CHECK_EQ_INT(drain(&b), 0);
    /* HALF_OPEN with as many successes as the new probe count closes */
    CHECK_STATE(&b, RS_STATE_OPEN);
    rs_breaker_tick(&b, T0 + 3 * SEC);
    CHECK_TRANSITION(&b, RS_STATE_OPEN, RS_STATE_HALF_OPEN, RS_REASON_COOLDOWN_ELAPSED);
    call(&b, T0 + 3 * SEC, 0, 5.0);
    CHECK_STATE(&b, RS_STATE_HALF_OPEN);
    c.half_open_probes = 1;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + 3 * SEC), RS_OK);
    CHECK_TRANSITION(&b, RS_STATE_HALF_OPEN, RS_STATE_CLOSED, RS_REASON_PROBES_SUCCEEDED);
    rs_breaker_free(&b);
}

/* A bad field, or a failed allocation, changes nothing and leaks nothing. */
static void test_configure_all_or_nothing(void) {
    rs_breaker_config c;
    plain_config(&c);
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    calls(&b, T0, 30, 0, 5.0);
    rs_breaker_config bad = c;
    bad.failure_threshold = 2;
    bad.window_size = 5; /* below minimum_calls = 10 */
    CHECK_EQ_INT(rs_breaker_configure(&b, &bad, T0), RS_EFIELD_BASE + RS_BF_MINIMUM_CALLS);
    bad = c;
    bad.ewma_alpha = NAN;
    CHECK_EQ_INT(rs_breaker_configure(&b, &bad, T0), RS_EFIELD_BASE + RS_BF_EWMA_ALPHA);
    CHECK(memcmp(&b.cfg, &c, sizeof c) == 0);
    rs_breaker_config grown = c;
    grown.window_size = 1000;
    grown.latency_window = 1000;
    for (int k = 1; k <= 2; k++) {
        install_counting(k);
        CHECK_EQ_INT(rs_breaker_configure(&b, &grown, T0), RS_ENOMEM);
        CHECK_EQ_INT(live_count, 0);
        CHECK(memcmp(&b.cfg, &c, sizeof c) == 0);
        CHECK_EQ_U64(b.window.total, 30);
        CHECK_EQ_INT(b.latencies.n, 30);
    }
    rs_set_allocator(NULL, NULL);
    rs_breaker_free(&b);
}

/* Window changes: a count window keeps the newest outcomes that fit, a
 * time window starts empty, the latency ring keeps the newest samples. */
static void test_configure_windows(void) {
    rs_breaker_config c;
    plain_config(&c);
    c.failure_threshold = 0;
    c.minimum_calls = 0;
    c.window_size = 10;
    c.latency_window = 10;
    rs_breaker b;
    CHECK_EQ_INT(rs_breaker_init(&b, &c, T0), RS_OK);
    for (int i = 0; i < 13; i++) { /* the ring wraps: F S F S ... newest last */
        call(&b, T0, i % 2, (double)i);
    }
    CHECK_EQ_U64(b.window.total, 10);
    c.window_size = 4; /* newest four: i = 9..12 -> F S F S */
    c.latency_window = 3;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0), RS_OK);
    CHECK_EQ_U64(b.window.total, 4);
    CHECK_EQ_U64(b.window.failures, 2);
    CHECK_EQ_INT(b.latencies.n, 3);
    CHECK(rs_latring_mean(&b.latencies) == 11.0);
    c.window_size = 50; /* growing keeps all four */
    c.latency_window = 50;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0), RS_OK);
    CHECK_EQ_U64(b.window.total, 4);
    CHECK_EQ_INT(b.latencies.n, 3);
    c.window_duration_ns = 10 * SEC;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0), RS_OK);
    CHECK(b.window.timed);
    CHECK_EQ_U64(b.window.total, 0);
    call(&b, T0 + SEC, 1, 1.0);
    CHECK_EQ_U64(b.window.total, 1);
    rs_breaker_tick(&b, T0 + 12 * SEC);
    CHECK_EQ_U64(b.window.total, 0);
    c.window_duration_ns = 0;
    CHECK_EQ_INT(rs_breaker_configure(&b, &c, T0 + 12 * SEC), RS_OK);
    CHECK(!b.window.timed);
    CHECK_EQ_U64(b.window.size, 50);
    CHECK_EQ_U64(b.counters.failures, 7);
    CHECK_EQ_INT(drain(&b), 0);
    rs_breaker_free(&b);
}

int main(void) {
    RUN_TEST(test_names);
    RUN_TEST(test_follow);
    RUN_TEST(test_config_defaults);
    RUN_TEST(test_field_table);
    RUN_TEST(test_config_each_bad_field);
    RUN_TEST(test_config_first_bad_field);
    RUN_TEST(test_trip_on_consecutive_failures);
    RUN_TEST(test_threshold_zero_never_trips);
    RUN_TEST(test_open_rejects_with_remaining);
    RUN_TEST(test_cooldown_edge);
    RUN_TEST(test_half_open_probe_pool);
    RUN_TEST(test_probe_failure_grows_cooldown);
    RUN_TEST(test_stale_permit_never_transitions);
    RUN_TEST(test_stale_probe_from_earlier_episode);
    RUN_TEST(test_zero_probes_closes_after_cooldown);
    RUN_TEST(test_half_open_max_wait);
    RUN_TEST(test_failure_rate_trip_respects_minimum_calls);
    RUN_TEST(test_slow_rate_trip_respects_minimum_calls);
    RUN_TEST(test_health_critical_trip);
    RUN_TEST(test_latency_score_bands);
    RUN_TEST(test_jitter_score_bands);
    RUN_TEST(test_health_formula);
    RUN_TEST(test_degraded_enter_and_leave);
    RUN_TEST(test_effective_threshold_bands);
    RUN_TEST(test_adaptive_threshold_drops_under_steady_failures);
    RUN_TEST(test_adaptive_threshold_ignores_single_spike);
    RUN_TEST(test_time_window_breaker);
    RUN_TEST(test_force_open_and_disable);
    RUN_TEST(test_manual_open_close);
    RUN_TEST(test_reset_clears_everything);
    RUN_TEST(test_null_permit);
    RUN_TEST(test_ejector_veto);
    RUN_TEST(test_transition_queue_order);
    RUN_TEST(test_transition_record_fields);
    RUN_TEST(test_transition_latency_without_outcome);
    RUN_TEST(test_time_backwards_is_clamped);
    RUN_TEST(test_common_allocator_hooks);
    RUN_TEST(test_breaker_frees_everything);
    RUN_TEST(test_breaker_init_enomem);
    RUN_TEST(test_configure_keeps_state_and_counts);
    RUN_TEST(test_configure_all_or_nothing);
    RUN_TEST(test_configure_windows);
    return rs_test_summary();
}
