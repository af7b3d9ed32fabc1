/* test_adaptive.c - unit tests of rs_adaptive (csrc/core/rs_adaptive.h). */
#include "rs_adaptive.h"
#include "rs_test.h"

#include <stdlib.h>

#define MS 1000000ull

static void init_ok(rs_adaptive *a, int alg, long long initial, long long lo, long long hi) {
    int st = rs_adaptive_init(a, alg, initial, lo, hi);
    if (st != RS_OK) {
        RS_TEST_FAIL_("rs_adaptive_init(%d, %lld, %lld, %lld) returned %d", alg, initial, lo, hi,
                      st);
    }
}

/* Ends the starting probe: PROBE_SAMPLES calls of base_ns, one at a time. */
static void finish_probe(rs_adaptive *a, uint64_t now, uint64_t base_ns) {
    rs_adaptive_permit p;
    for (unsigned i = 0; i < RS_ADAPTIVE_PROBE_SAMPLES; i++) {
        CHECK_EQ_INT(rs_adaptive_try_acquire(a, &p), 1);
        CHECK_EQ_INT(rs_adaptive_release(a, &p, now, base_ns, 0), RS_OK);
    }
    CHECK_EQ_INT(a->probing, 0);
    CHECK_EQ_U64(a->min_ns, base_ns);
}

static void test_field_names_and_ranges(void) {
    CHECK_STREQ(RS_ADAPTIVE_FIELDS[RS_ADF_INITIAL_LIMIT].name, "initial_limit");
    CHECK_STREQ(RS_ADAPTIVE_FIELDS[RS_ADF_MIN_LIMIT].name, "min_limit");
    CHECK_STREQ(RS_ADAPTIVE_FIELDS[RS_ADF_MAX_LIMIT].name, "max_limit");
    CHECK(RS_ADAPTIVE_FIELDS[RS_ADF_MAX_LIMIT].kind == RS_FIELD_INT);
    CHECK(RS_ADAPTIVE_FIELDS[RS_ADF_MIN_LIMIT].lo == 1.0);
    CHECK(RS_ADAPTIVE_FIELDS[RS_ADF_MAX_LIMIT].hi == (double)RS_ADAPTIVE_MAX);
}

static void test_init_each_bad_field(void) {
    rs_adaptive a;
    CHECK_EQ_INT(rs_adaptive_init(&a, -1, 20, 1, 1000), RS_EINVAL);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_ALGORITHM_COUNT, 20, 1, 1000), RS_EINVAL);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 20, 0, 1000), RS_EFIELD_BASE + RS_ADF_MIN_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 20, 1, 0), RS_EFIELD_BASE + RS_ADF_MAX_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 20, 30, 25), RS_EFIELD_BASE + RS_ADF_MAX_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 20, 1, (long long)RS_ADAPTIVE_MAX + 1),
                 RS_EFIELD_BASE + RS_ADF_MAX_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 0, 1, 10), RS_EFIELD_BASE + RS_ADF_INITIAL_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 11, 1, 10), RS_EFIELD_BASE + RS_ADF_INITIAL_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_AIMD, 4, 5, 10), RS_EFIELD_BASE + RS_ADF_INITIAL_LIMIT);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_GRADIENT, RS_ADAPTIVE_MAX, 1, RS_ADAPTIVE_MAX), RS_OK);
    CHECK_EQ_INT(rs_adaptive_init(&a, RS_AD_VEGAS, 1, 1, 1), RS_OK);
}

static void test_probe_first_then_the_initial_limit(void) {
    rs_adaptive a;
    rs_adaptive_permit p, q;
    init_ok(&a, RS_AD_GRADIENT, 20, 2, 100);
    CHECK_EQ_U64(rs_adaptive_limit(&a), 2); /* min_limit while probing */
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &q), 1);
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &q), 0);
    CHECK_EQ_U64(a.rejected, 1);
    CHECK_EQ_U64(p.seq, 1);
    CHECK_EQ_U64(q.seq, 2);
    CHECK_EQ_U64(q.in_flight, 2);
    /* a dropped call measures nothing */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, 0, 5 * MS, 1), RS_OK);
    CHECK_EQ_U64(a.dropped, 1);
    CHECK_EQ_U64(a.probe_left, RS_ADAPTIVE_PROBE_SAMPLES);
    CHECK_EQ_INT(rs_adaptive_release(&a, &q, 0, 7 * MS, 0), RS_OK);
    CHECK_EQ_U64(a.probe_left, RS_ADAPTIVE_PROBE_SAMPLES - 1);
    for (unsigned i = 1; i < RS_ADAPTIVE_PROBE_SAMPLES; i++) {
        CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
        CHECK_EQ_INT(rs_adaptive_release(&a, &p, 100, (10 - i) * MS, 0), RS_OK);
    }
    CHECK_EQ_INT(a.probing, 0);
    CHECK_EQ_U64(a.min_ns, 1 * MS); /* the least latency of the probe */
    CHECK_EQ_U64(a.probe_end_ns, 100);
    CHECK_EQ_U64(rs_adaptive_limit(&a), 20);
}

static void test_release_with_nothing_in_flight_changes_nothing(void) {
    rs_adaptive a;
    rs_adaptive_permit p = {1, 1};
    init_ok(&a, RS_AD_AIMD, 5, 1, 10);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, 0, MS, 1), RS_EINVAL);
    CHECK_EQ_U64(a.dropped, 0);
    CHECK_EQ_U64(a.in_flight, 0);
}

static void test_aimd_grows_and_backs_off(void) {
    rs_adaptive a;
    rs_adaptive_permit p[8];
    init_ok(&a, RS_AD_AIMD, 4, 1, 6);
    finish_probe(&a, 0, 10 * MS);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p[i]), 1);
    }
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p[4]), 0);
    /* slow start: +1 per fast sample that started with half the limit in flight */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[3], MS, 10 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 5.0, 0.0);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[0], MS, 10 * MS, 0), RS_OK); /* started alone */
    CHECK_NEAR(a.limit, 5.0, 0.0);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[2], MS, 10 * MS, 0), RS_OK);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[1], MS, 10 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 6.0, 0.0); /* clamped to max_limit */
    /* a slow sample (over 1.5 x the baseline) backs off by 0.9 */
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p[i]), 1);
    }
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[5], MS, 16 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 5.4, 1e-12);
    /* another call that started with 6 in flight, above the limit now: the
     * overload it saw is answered already */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[5], MS, 16 * MS, 1), RS_OK);
    CHECK_NEAR(a.limit, 5.4, 1e-12);
    CHECK_EQ_U64(a.dropped, 1);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[3], MS, 10 * MS, 1), RS_OK); /* a drop */
    CHECK_NEAR(a.limit, 5.4 * 0.9, 1e-12);
    /* after the first decrease: +1/limit per sample */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[2], MS, 10 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 4.86 + 1.0 / 4.86, 1e-12);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[0], MS, 10 * MS, 0), RS_OK);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p[1], MS, 10 * MS, 0), RS_OK);
    CHECK_EQ_U64(a.in_flight, 0);
    /* never below min_limit */
    for (int i = 0; i < 60; i++) {
        rs_adaptive_permit r;
        if (rs_adaptive_try_acquire(&a, &r)) {
            r.in_flight = 1;
            CHECK_EQ_INT(rs_adaptive_release(&a, &r, MS, MS, 1), RS_OK);
        }
    }
    CHECK_NEAR(a.limit, 1.0, 0.0);
}

static void test_vegas_follows_the_queue_estimate(void) {
    rs_adaptive a;
    rs_adaptive_permit p = {100, 100};
    init_ok(&a, RS_AD_VEGAS, 100, 1, 1000);
    finish_probe(&a, 0, 10 * MS);
    a.in_flight = 100;
    /* no queue: + 4 lg */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 10 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 108.0, 1e-12);
    /* queue = ceil(108 * (1 - 10/10.3)) = 4 in [2.03, 4.07): + lg */
    double lg = log10(108.0);
    p.in_flight = 108;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 10300000, 0), RS_OK);
    CHECK_NEAR(a.limit, 108.0 + lg, 1e-12);
    /* a long queue: - max(lg, (queue - 4 lg) / 2) */
    double l = a.limit;
    lg = log10(l);
    double queue = ceil(l * (1.0 - 10.0 / 20.0));
    p.in_flight = 50;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 20 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, l - (queue - 4.0 * lg) / 2.0, 1e-12);
    /* a drop: - lg */
    l = a.limit;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 10 * MS, 1), RS_OK);
    CHECK_NEAR(a.limit, l - log10(l), 1e-12);
    /* in between: unchanged */
    l = a.limit;
    p.in_flight = (uint32_t)l;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, (uint64_t)(10 * MS / (1.0 - 3.0 * log10(l) / l)),
                                     0),
                 RS_OK);
    CHECK_NEAR(a.limit, l, 0.0);
}

static void test_gradient_moves_halfway_to_its_target(void) {
    rs_adaptive a;
    rs_adaptive_permit p = {100, 64};
    init_ok(&a, RS_AD_GRADIENT, 64, 1, 1000);
    finish_probe(&a, 0, 8 * MS);
    a.in_flight = 10;
    /* latency at the baseline: g = 1, target 64 + 8 */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 8 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 68.0, 1e-12);
    /* twice the baseline: g = 0.625 */
    p.in_flight = 68;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 16 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, 68.0 + 0.5 * (68.0 * 0.625 + sqrt(68.0) - 68.0), 1e-12);
    /* ten times: g clamped to 0.5; a drop too */
    double l = a.limit;
    p.in_flight = 1;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 80 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, l + 0.5 * (l * 0.5 + sqrt(l) - l), 1e-12);
    l = a.limit;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 8 * MS, 1), RS_OK);
    CHECK_NEAR(a.limit, l + 0.5 * (l * 0.5 + sqrt(l) - l), 1e-12);
    /* a fast call that started with few in flight does not raise it */
    l = a.limit;
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 8 * MS, 0), RS_OK);
    CHECK_NEAR(a.limit, l, 0.0);
    /* only a probe sets the baseline */
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, MS, 4 * MS, 0), RS_OK);
    CHECK_EQ_U64(a.min_ns, 8 * MS);
}

static void test_probe_again_after_the_interval(void) {
    rs_adaptive a;
    rs_adaptive_permit p, old;
    init_ok(&a, RS_AD_GRADIENT, 10, 1, 100);
    finish_probe(&a, 5, 10 * MS);
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &old), 1);
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, 5 + RS_ADAPTIVE_PROBE_INTERVAL_NS - 1, 10 * MS, 0),
                 RS_OK);
    CHECK_EQ_INT(a.probing, 0);
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, 5 + RS_ADAPTIVE_PROBE_INTERVAL_NS, 10 * MS, 0),
                 RS_OK);
    CHECK_EQ_INT(a.probing, 1);
    CHECK_EQ_U64(rs_adaptive_limit(&a), 1);
    double estimate = a.limit;
    /* admitted before the probe: ignored */
    CHECK_EQ_INT(rs_adaptive_release(&a, &old, 6 + RS_ADAPTIVE_PROBE_INTERVAL_NS, 99 * MS, 0),
                 RS_OK);
    CHECK_EQ_U64(a.probe_left, RS_ADAPTIVE_PROBE_SAMPLES);
    /* the server got slower: the new baseline is what the probe saw */
    finish_probe(&a, 7 + RS_ADAPTIVE_PROBE_INTERVAL_NS, 30 * MS);
    CHECK_NEAR(a.limit, estimate, 0.0);
    CHECK_EQ_U64(a.probe_end_ns, 7 + RS_ADAPTIVE_PROBE_INTERVAL_NS);
}

static void test_zero_latency_counts_as_one_ns(void) {
    rs_adaptive a;
    rs_adaptive_permit p;
    init_ok(&a, RS_AD_VEGAS, 3, 1, 5);
    for (unsigned i = 0; i < RS_ADAPTIVE_PROBE_SAMPLES; i++) {
        CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
        CHECK_EQ_INT(rs_adaptive_release(&a, &p, 0, 0, 0), RS_OK);
    }
    CHECK_EQ_U64(a.min_ns, 1);
    /* and a sample of 0 after it divides by nothing */
    CHECK_EQ_INT(rs_adaptive_try_acquire(&a, &p), 1);
    CHECK_EQ_INT(rs_adaptive_release(&a, &p, 0, 0, 0), RS_OK);
    CHECK(a.limit >= 1.0 && a.limit <= 5.0);
}

/* Random operations: the counts add up, the limit stays in its bounds and
 * in_flight never passes the limit in force at admission. */
static void test_random_operations_keep_the_invariants(void) {
    for (int alg = 0; alg < RS_AD_ALGORITHM_COUNT; alg++) {
        rs_adaptive a;
        init_ok(&a, alg, 7, 2, 40);
        rs_adaptive_permit held[64];
        int n = 0;
        uint64_t now = 0, attempts = 0, releases = 0;
        srand(42u + (unsigned)alg);
        for (int i = 0; i < 200000; i++) {
            now += (uint64_t)(rand() % 1000) * 1000;
            if (rand() % 2 && n < 64) {
                uint32_t before = rs_adaptive_limit(&a);
                attempts++;
                if (rs_adaptive_try_acquire(&a, &held[n])) {
                    if (a.in_flight > before) {
                        RS_TEST_FAIL_("in flight %u over the limit %u", a.in_flight, before);
                        return;
                    }
                    n++;
                }
            } else if (n) {
                int k = rand() % n;
                uint64_t lat = (uint64_t)(rand() % 50 + 1) * MS;
                CHECK_EQ_INT(rs_adaptive_release(&a, &held[k], now, lat, rand() % 10 == 0),
                             RS_OK);
                held[k] = held[--n];
                releases++;
            }
            if (a.limit < 2.0 || a.limit > 40.0 || a.in_flight != (uint32_t)n) {
                RS_TEST_FAIL_("step %d: limit %g in flight %u", i, a.limit, a.in_flight);
                return;
            }
        }
        CHECK_EQ_U64(a.admitted + a.rejected, attempts);
        CHECK_EQ_U64(a.admitted, releases + (uint64_t)n);
        CHECK(a.dropped <= releases);
    }
}

int main(void) {
    RUN_TEST(test_field_names_and_ranges);
    RUN_TEST(test_init_each_bad_field);
    RUN_TEST(test_probe_first_then_the_initial_limit);
    RUN_TEST(test_release_with_nothing_in_flight_changes_nothing);
    RUN_TEST(test_aimd_grows_and_backs_off);
    RUN_TEST(test_vegas_follows_the_queue_estimate);
    RUN_TEST(test_gradient_moves_halfway_to_its_target);
    RUN_TEST(test_probe_again_after_the_interval);
    RUN_TEST(test_zero_latency_counts_as_one_ns);
    RUN_TEST(test_random_operations_keep_the_invariants);
    return rs_test_summary();
}
