/* test_budget.c - unit tests of rs_budget (csrc/core/rs_budget.h). */
#include "rs_budget.h"
#include "rs_test.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#define SEC RS_NS_PER_SEC
#define MSEC (RS_NS_PER_SEC / 1000u)
#define T0 (1000u * SEC) /* an arbitrary, non-zero start time, aligned to every bucket */
#define WINDOW (10u * SEC) /* the documented default window */

/* ---- helpers ----------------------------------------------------------- */

static void init_ok(rs_budget *b, double ratio, double min_per_second, uint64_t window_ns,
                    uint64_t now) {
    int st = rs_budget_init(b, ratio, min_per_second, window_ns, now);
    if (st != RS_OK) {
        RS_TEST_FAIL_("rs_budget_init(%g, %g, %" PRIu64 ") returned %d", ratio, min_per_second,
                      window_ns, st);
    }
}

static void requests(rs_budget *b, uint64_t now, int n) {
    for (int i = 0; i < n; i++) {
        rs_budget_request(b, now);
    }
}

/* Tries n retries at `now`; returns how many were allowed. */
static int try_retries(rs_budget *b, uint64_t now, int n) {
    int allowed = 0;
    for (int i = 0; i < n; i++) {
        allowed += rs_budget_try_retry(b, now);
    }
    return allowed;
}

/* Checks the three windowed counts at `now`. */
#define CHECK_COUNTS(b, now, req, ret, last)                                    \
    do {                                                                       \
        uint64_t rq_ = 99, rt_ = 99, ls_ = 99;                                 \
        rs_budget_counts((b), (now), &rq_, &rt_, &ls_);                        \
        CHECK_EQ_U64(rq_, (req));                                              \
        CHECK_EQ_U64(rt_, (ret));                                              \
        CHECK_EQ_U64(ls_, (last));                                             \
    } while (0)

/* Checks the totals since init. */
#define CHECK_TOTALS(b, req, ret, den)                                          \
    do {                                                                       \
        CHECK_EQ_U64((b)->requests, (req));                                    \
        CHECK_EQ_U64((b)->retries, (ret));                                     \
        CHECK_EQ_U64((b)->rejected, (den));                                    \
    } while (0)

/* ---- names and validation --------------------------------------------- */

/* The field table names every field and gives its bounds from the header's constants. */
static void test_field_names_and_ranges(void) {
    const char *names[RS_BGF_COUNT] = {
        [RS_BGF_RATIO] = "ratio",
        [RS_BGF_MIN_PER_SECOND] = "min_per_second",
        [RS_BGF_WINDOW] = "window",
    };
    for (int f = 0; f < RS_BGF_COUNT; f++) {
        CHECK_STREQ(RS_BUDGET_FIELDS[f].name, names[f]);
        CHECK(RS_BUDGET_FIELDS[f].lo <= RS_BUDGET_FIELDS[f].hi);
    }
    CHECK(RS_BUDGET_FIELDS[RS_BGF_RATIO].hi == RS_BUDGET_MAX_RATIO);
    CHECK(rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_RATIO], RS_BUDGET_MAX_RATIO));
    CHECK(!rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_RATIO], nextafter(RS_BUDGET_MAX_RATIO, INFINITY)));
    CHECK(!rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_MIN_PER_SECOND], NAN));
    CHECK(!rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_MIN_PER_SECOND], INFINITY));
}

#define BAD(field) (RS_EFIELD_BASE + (field))

/* Each bad field is reported as RS_EFIELD_BASE + that field; edge values are accepted. */
static void test_init_each_bad_field(void) {
    rs_budget b;
    const double bad_ratio[] = {-0.1,     -DBL_TRUE_MIN, -INFINITY, NAN, INFINITY,
                                nextafter(RS_BUDGET_MAX_RATIO, INFINITY), 1e308, DBL_MAX};
    for (size_t i = 0; i < sizeof bad_ratio / sizeof bad_ratio[0]; i++) {
        CHECK_EQ_INT(rs_budget_init(&b, bad_ratio[i], 3.0, WINDOW, T0), BAD(RS_BGF_RATIO));
    }
    const double bad_mps[] = {-1.0, -DBL_TRUE_MIN, -INFINITY, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_mps / sizeof bad_mps[0]; i++) {
        CHECK_EQ_INT(rs_budget_init(&b, 0.2, bad_mps[i], WINDOW, T0),
                     BAD(RS_BGF_MIN_PER_SECOND));
    }
    const uint64_t bad_window[] = {0u, 1u, 9u};
    for (size_t i = 0; i < sizeof bad_window / sizeof bad_window[0]; i++) {
        CHECK_EQ_INT(rs_budget_init(&b, 0.2, 3.0, bad_window[i], T0), BAD(RS_BGF_WINDOW));
    }
    /* the first bad field is the one reported */
    CHECK_EQ_INT(rs_budget_init(&b, NAN, NAN, 0u, T0), BAD(RS_BGF_RATIO));
    CHECK_EQ_INT(rs_budget_init(&b, 0.2, -1.0, 0u, T0), BAD(RS_BGF_MIN_PER_SECOND));
    /* edges in range */
    CHECK_EQ_INT(rs_budget_init(&b, 0.0, 0.0, 10u, 0u), RS_OK);
    CHECK_EQ_INT(rs_budget_init(&b, RS_BUDGET_MAX_RATIO, DBL_MAX, UINT64_MAX, UINT64_MAX), RS_OK);
    CHECK_EQ_INT(rs_budget_init(&b, 0.2, 3.0, WINDOW, T0), RS_OK);
    CHECK(b.ratio == 0.2);
    CHECK(b.min_per_second == 3.0);
    CHECK_TOTALS(&b, 0, 0, 0);
    CHECK_COUNTS(&b, T0, 0, 0, 0);
}

/* ---- the per-second floor ---------------------------------------------- */

/* With no requests, exactly ceil(min_per_second) retries are allowed within one second. */
static void test_floor_allows_ceil_min_per_second(void) {
    const struct {
        double mps;
        int allowed;
    } cases[] = {{3.0, 3}, {2.5, 3}, {2.0, 2}, {1.0, 1}, {0.5, 1}, {1e-9, 1}, {0.0, 0}, {10.0, 10}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rs_budget b;
        init_ok(&b, 0.2, cases[k].mps, WINDOW, T0);
        /* spread over the second */
        int allowed = 0;
        for (int i = 0; i < cases[k].allowed + 5; i++) {
            allowed += rs_budget_try_retry(&b, T0 + (uint64_t)i * 50u * MSEC);
        }
        if (allowed != cases[k].allowed) {
            RS_TEST_FAIL_("min_per_second %g: %d allowed, want %d", cases[k].mps, allowed,
                          cases[k].allowed);
        } else {
            rs_test_passed++;
        }
        CHECK_TOTALS(&b, 0, cases[k].allowed, 5);
    }
    /* 3.0 -> 3, then the 4th is rejected and counted */
    rs_budget b;
    init_ok(&b, 0.2, 3.0, WINDOW, T0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0), 1);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 300u * MSEC), 1);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 600u * MSEC), 1);
    CHECK_COUNTS(&b, T0 + 600u * MSEC, 0, 3, 3);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 900u * MSEC), 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + SEC - 1u), 0);
    CHECK_TOTALS(&b, 0, 3, 2);
    CHECK_COUNTS(&b, T0 + SEC - 1u, 0, 3, 3); /* a rejected retry is not counted as a retry */
}

/* The floor frees up again once the retries are more than a second old. */
static void test_floor_resets_after_a_second(void) {
    rs_budget b;
    init_ok(&b, 0.2, 3.0, WINDOW, T0);
    CHECK_EQ_INT(try_retries(&b, T0, 5), 3);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 999u * MSEC), 0);
    CHECK_COUNTS(&b, T0 + SEC, 0, 3, 0); /* last second empty, window still holds them */
    CHECK_EQ_INT(try_retries(&b, T0 + SEC, 5), 3);
    CHECK_EQ_INT(try_retries(&b, T0 + 2u * SEC + 500u * MSEC, 4), 3);
    CHECK_COUNTS(&b, T0 + 2u * SEC + 500u * MSEC, 0, 9, 3);
    CHECK_TOTALS(&b, 0, 9, 6);
    /* retries spread over a second: the oldest one drops first */
    init_ok(&b, 0.0, 2.0, WINDOW, T0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0), 1);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 500u * MSEC), 1);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 900u * MSEC), 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + SEC), 1);     /* the one at T0 dropped */
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + SEC + 100u * MSEC), 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + SEC + 500u * MSEC), 1);
    CHECK_TOTALS(&b, 0, 4, 2);
}

/* ---- the ratio rule ---------------------------------------------------- */

/* 20 requests at ratio 0.2: retries allowed while retries + 1 <= 4, so exactly 4. */
static void test_ratio_rule(void) {
    rs_budget b;
    init_ok(&b, 0.2, 0.0, WINDOW, T0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0), 0); /* no requests yet */
    requests(&b, T0, 20);
    CHECK_COUNTS(&b, T0, 20, 0, 0);
    for (int i = 1; i <= 4; i++) {
        CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + (uint64_t)i * MSEC), 1);
    }
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 5u * MSEC), 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + 3u * SEC), 0); /* the floor is off: time does not help */
    CHECK_COUNTS(&b, T0 + 3u * SEC, 20, 4, 0);
    CHECK_TOTALS(&b, 20, 4, 3);
    /* 5 more requests: 0.2 * 25 = 5 allows exactly one more */
    requests(&b, T0 + 3u * SEC, 5);
    CHECK_EQ_INT(try_retries(&b, T0 + 3u * SEC, 3), 1);
    CHECK_TOTALS(&b, 25, 5, 5);

    /* 19 requests: 3.8 -> 3 retries */
    init_ok(&b, 0.2, 0.0, WINDOW, T0);
    requests(&b, T0, 19);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 3);
    /* ratio 0.5 with 3 requests: 1.5 -> 1 retry */
    init_ok(&b, 0.5, 0.0, WINDOW, T0);
    requests(&b, T0, 3);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 1);
    /* ratio 0 and no floor: nothing is ever allowed */
    init_ok(&b, 0.0, 0.0, WINDOW, T0);
    requests(&b, T0, 1000);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 0);
    CHECK_TOTALS(&b, 1000, 0, 10);
    /* ratio 1 with 10 requests: 10 retries */
    init_ok(&b, 1.0, 0.0, WINDOW, T0);
    requests(&b, T0, 10);
    CHECK_EQ_INT(try_retries(&b, T0, 20), 10);
    /* requests interleaved with retries: retries + 1 <= 0.2 * requests at every step */
    init_ok(&b, 0.2, 0.0, WINDOW, T0);
    int allowed = 0, wrong = 0;
    for (int r = 1; r <= 100; r++) {
        rs_budget_request(&b, T0 + (uint64_t)r * MSEC);
        int want = (double)allowed + 1.0 <= 0.2 * r;
        int got = rs_budget_try_retry(&b, T0 + (uint64_t)r * MSEC);
        wrong += got != want;
        allowed += got;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(allowed, 20);
}

/* A retry is allowed by either rule: the floor when the ratio is spent, the ratio past the floor. */
static void test_either_rule_allows(void) {
    rs_budget b;
    /* ratio gives 1 (5 requests), the floor gives 3 */
    init_ok(&b, 0.2, 3.0, WINDOW, T0);
    requests(&b, T0, 5);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 3);
    /* ratio gives 4 (20 requests), the floor gives 3 */
    init_ok(&b, 0.2, 3.0, WINDOW, T0);
    requests(&b, T0, 20);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 4);
    CHECK_TOTALS(&b, 20, 4, 6);
    /* a second later the floor is free again although the ratio is spent */
    CHECK_EQ_INT(try_retries(&b, T0 + SEC, 10), 3);
    CHECK_COUNTS(&b, T0 + SEC, 20, 7, 3);
}

/* ---- expiry and time --------------------------------------------------- */

/* Requests and retries drop out once they are a window old. */
static void test_counts_expire_after_window(void) {
    rs_budget b;
    init_ok(&b, 0.2, 0.0, WINDOW, T0);
    requests(&b, T0, 20);
    CHECK_EQ_INT(try_retries(&b, T0, 4), 4);
    CHECK_COUNTS(&b, T0 + WINDOW - 1u, 20, 4, 0);
    CHECK_COUNTS(&b, T0 + WINDOW, 0, 0, 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + WINDOW), 0); /* no requests left */
    CHECK_TOTALS(&b, 20, 4, 1);
    /* the ratio is spent, then the old retries expire with the old requests */
    requests(&b, T0 + WINDOW, 10);
    CHECK_EQ_INT(try_retries(&b, T0 + WINDOW, 5), 2);
    CHECK_COUNTS(&b, T0 + WINDOW, 10, 2, 2);
    CHECK_TOTALS(&b, 30, 6, 4);

    /* two batches: only the newer survives the first one's expiry */
    init_ok(&b, 0.5, 0.0, WINDOW, T0);
    requests(&b, T0, 10);
    CHECK_EQ_INT(try_retries(&b, T0, 10), 5);
    requests(&b, T0 + 5u * SEC, 4);
    CHECK_EQ_INT(try_retries(&b, T0 + 5u * SEC, 10), 2); /* 14 * 0.5 = 7 */
    CHECK_COUNTS(&b, T0 + 9u * SEC, 14, 7, 0);
    CHECK_COUNTS(&b, T0 + WINDOW, 4, 2, 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0 + WINDOW), 0); /* 2 + 1 > 0.5 * 4 */
    CHECK_COUNTS(&b, T0 + 15u * SEC, 0, 0, 0);
    /* a far jump clears everything */
    requests(&b, T0 + 15u * SEC, 7);
    CHECK_COUNTS(&b, UINT64_C(1) << 62, 0, 0, 0);
    CHECK_TOTALS(&b, 21, 7, 14);

    /* the smallest window, 10 ns */
    init_ok(&b, 1.0, 0.0, 10u, 100u);
    requests(&b, 100u, 3);
    CHECK_EQ_INT(try_retries(&b, 105u, 5), 3);
    CHECK_COUNTS(&b, 109u, 3, 3, 3);
    CHECK_COUNTS(&b, 110u, 0, 3, 3);   /* the requests' 1 ns bucket dropped */
    CHECK_COUNTS(&b, 114u, 0, 3, 3);
    CHECK_COUNTS(&b, 115u, 0, 0, 3);   /* the retries' too; still inside the last second */
    CHECK_COUNTS(&b, 100u + SEC, 0, 0, 0);
}

/* Time going backwards is clamped to the latest time seen: no crash, counts unchanged. */
static void test_time_backwards_is_clamped(void) {
    rs_budget b;
    init_ok(&b, 0.2, 3.0, WINDOW, T0);
    requests(&b, T0 + 5u * SEC, 10);
    CHECK_EQ_INT(try_retries(&b, T0 + 5u * SEC, 3), 3);
    CHECK_COUNTS(&b, T0 + 5u * SEC, 10, 3, 3);
    CHECK_COUNTS(&b, T0, 10, 3, 3);
    CHECK_COUNTS(&b, 0u, 10, 3, 3);
    CHECK_EQ_U64(b.now_ns, T0 + 5u * SEC);
    /* the last second is still full when asked from the past */
    CHECK_EQ_INT(rs_budget_try_retry(&b, T0), 0);
    CHECK_EQ_INT(rs_budget_try_retry(&b, 0u), 0);
    /* events from the past count at the clamped time */
    requests(&b, T0 + SEC, 10);
    CHECK_COUNTS(&b, 0u, 20, 3, 3);
    CHECK_TOTALS(&b, 20, 3, 2);
    CHECK_EQ_U64(b.now_ns, T0 + 5u * SEC);
    /* ...and expire with the bucket of the clamped time, not earlier */
    CHECK_COUNTS(&b, T0 + 5u * SEC + WINDOW - 1u, 20, 3, 0);
    CHECK_COUNTS(&b, T0 + 5u * SEC + WINDOW, 0, 0, 0);
    /* starting at the largest time and then going back to 0 */
    init_ok(&b, 1.0, 1.0, WINDOW, UINT64_MAX);
    requests(&b, 0u, 2);
    CHECK_EQ_INT(try_retries(&b, 0u, 5), 2);
    CHECK_COUNTS(&b, 0u, 2, 2, 2);
    CHECK_COUNTS(&b, UINT64_MAX, 2, 2, 2);
}

/* Totals count every request, allowed retry and denial since init, across expiry. */
static void test_totals_since_init(void) {
    rs_budget b;
    init_ok(&b, 0.1, 1.0, WINDOW, T0);
    uint64_t want_req = 0, want_ret = 0, want_den = 0;
    uint64_t now = T0;
    uint32_t lcg = 777u;
    for (int i = 0; i < 20000; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        now += (lcg >> 8) % (20u * MSEC);
        if ((lcg >> 4) % 4u) {
            rs_budget_request(&b, now);
            want_req++;
        } else if (rs_budget_try_retry(&b, now)) {
            want_ret++;
        } else {
            want_den++;
        }
    }
    CHECK_TOTALS(&b, want_req, want_ret, want_den);
    CHECK(want_ret > 0 && want_den > 0);
    uint64_t rq, rt, ls;
    rs_budget_counts(&b, now, &rq, &rt, &ls);
    CHECK(rq < want_req && rt < want_ret); /* the window forgot the old ones */
    CHECK(ls <= rt);
    rs_budget_counts(&b, now + 2u * WINDOW, &rq, &rt, &ls);
    CHECK_EQ_U64(rq + rt + ls, 0);
    CHECK_TOTALS(&b, want_req, want_ret, want_den);
}

int main(void) {
    RUN_TEST(test_field_names_and_ranges);
    RUN_TEST(test_init_each_bad_field);
    RUN_TEST(test_floor_allows_ceil_min_per_second);
    RUN_TEST(test_floor_resets_after_a_second);
    RUN_TEST(test_ratio_rule);
    RUN_TEST(test_either_rule_allows);
    RUN_TEST(test_counts_expire_after_window);
    RUN_TEST(test_time_backwards_is_clamped);
    RUN_TEST(test_totals_since_init);
    return rs_test_summary();
}
