/* test_window.c - unit tests of rs_window and rs_latring (csrc/core/rs_window.h). */
#include "rs_test.h"
#include "rs_window.h"

#include <math.h>
#include <stdlib.h>

enum { F = RS_OUTCOME_FAILED, S = RS_OUTCOME_SLOW };

/* Small deterministic generator so runs are reproducible. */
static uint32_t lcg_state = 12345u;
static uint32_t lcg_next(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

/* ---- count window ------------------------------------------------------ */

/* Count-window init rejects size 0 and size > RS_WINDOW_MAX_SIZE; free is safe after. */
static void test_count_init_errors(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_count(&w, 0), RS_EINVAL);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_count(&w, RS_WINDOW_MAX_SIZE + 1), RS_EINVAL);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_count(&w, UINT32_MAX), RS_EINVAL);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_count(&w, RS_WINDOW_MAX_SIZE), RS_OK);
    CHECK_EQ_U64(w.size, RS_WINDOW_MAX_SIZE);
    rs_window_free(&w);
    rs_window_free(&w); /* idempotent: ring pointer was cleared */
    CHECK_EQ_INT(rs_window_init_count(&w, 1), RS_OK);
    rs_window_free(&w);
}

/* Totals (total, failures, slow) after filling and after wrap-around eviction. */
static void test_count_totals_fill_and_evict(void) {
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_count(&w, 4), RS_OK);
    CHECK_EQ_U64(w.total, 0);
    rs_window_add(&w, F, &rate);
    rs_window_add(&w, 0, &rate);
    rs_window_add(&w, S, &rate);
    CHECK_EQ_U64(w.total, 3);
    rs_window_add(&w, F | S, &rate); /* ring: F . S FS */
    CHECK_EQ_U64(w.total, 4);
    CHECK_EQ_U64(w.failures, 2);
    CHECK_EQ_U64(w.slow, 2);
    rs_window_add(&w, 0, &rate); /* evicts F  -> . . S FS */
    CHECK_EQ_U64(w.total, 4);
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.slow, 2);
    rs_window_add(&w, 0, &rate); /* evicts .  -> . . S FS */
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.slow, 2);
    rs_window_add(&w, 0, &rate); /* evicts S  -> . . . FS */
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.slow, 1);
    rs_window_add(&w, F, &rate); /* evicts FS -> . . . F */
    CHECK_EQ_U64(w.total, 4);
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.slow, 0);
    rs_window_free(&w);
}

/* Over many wraps the totals always equal a recount of the last `size` outcomes. */
static void test_count_totals_match_recount(void) {
    const uint32_t size = 7;
    unsigned history[2000];
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_count(&w, size), RS_OK);
    int mismatches = 0;
    for (uint32_t i = 0; i < 2000; i++) {
        history[i] = lcg_next() & 3u;
        rs_window_add(&w, history[i], &rate);
        uint64_t t = 0, f = 0, s = 0;
        for (uint32_t k = i + 1 > size ? i + 1 - size : 0; k <= i; k++) {
            t++;
            f += (history[k] & F) ? 1 : 0;
            s += (history[k] & S) ? 1 : 0;
        }
        mismatches += (w.total != t || w.failures != f || w.slow != s);
    }
    CHECK_EQ_INT(mismatches, 0);
    rs_window_free(&w);
}

/* Size 100 reports a period rate after every 10th outcome and only then. */
static void test_count_period_size_100(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_count(&w, 100), RS_OK);
    /* failures at outcomes 4, 8 | 12, 16, 20 | 24, 28 (1-based) */
    const double expected[3] = {0.2, 0.3, 0.2};
    int reports = 0, wrong_position = 0;
    for (int i = 1; i <= 35; i++) {
        double rate = -1.0;
        int r = rs_window_add(&w, i % 4 == 0 ? F : 0, &rate);
        if (r) {
            wrong_position += (i % 10 != 0);
            if (reports < 3) {
                CHECK_NEAR(rate, expected[reports], 1e-15);
            }
            reports++;
        } else {
            wrong_position += (i % 10 == 0);
        }
    }
    CHECK_EQ_INT(reports, 3);
    CHECK_EQ_INT(wrong_position, 0);
    rs_window_free(&w);
}

/* The period is max(1, size / 10): sizes 1, 5, 9 -> 1; 10 -> 1; 25 -> 2; 1000 -> 100. */
static void test_count_period_lengths(void) {
    const uint32_t sizes[] = {1, 5, 9, 10, 19, 20, 25, 1000};
    const uint32_t periods[] = {1, 1, 1, 1, 1, 2, 2, 100};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        rs_window w;
        CHECK_EQ_INT(rs_window_init_count(&w, sizes[k]), RS_OK);
        uint32_t first = 0;
        int count = 0;
        for (uint32_t i = 1; i <= 3 * periods[k]; i++) {
            double rate;
            if (rs_window_add(&w, 0, &rate)) {
                if (!first) {
                    first = i;
                }
                count++;
            }
        }
        CHECK_EQ_U64(first, periods[k]);
        CHECK_EQ_INT(count, 3);
        rs_window_free(&w);
    }
}

/* Size 5 reports each outcome's own rate: 1.0 for a failure, 0.0 otherwise (slow is not a failure). */
static void test_count_period_size_5(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_count(&w, 5), RS_OK);
    const unsigned flags[] = {F, 0, S, F | S, 0, F, 0};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        double rate = -1.0;
        CHECK_EQ_INT(rs_window_add(&w, flags[i], &rate), 1);
        CHECK(rate == ((flags[i] & F) ? 1.0 : 0.0));
    }
    rs_window_free(&w);
}

/* Slow flags are counted apart from failures and ignored in the period rate. */
static void test_count_slow_flags(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_count(&w, 20), RS_OK); /* period 2 */
    double rate = -1.0;
    CHECK_EQ_INT(rs_window_add(&w, S, &rate), 0);
    CHECK_EQ_INT(rs_window_add(&w, S, &rate), 1);
    CHECK(rate == 0.0);
    CHECK_EQ_U64(w.slow, 2);
    CHECK_EQ_U64(w.failures, 0);
    CHECK_EQ_INT(rs_window_add(&w, F | S, &rate), 0);
    CHECK_EQ_INT(rs_window_add(&w, S, &rate), 1);
    CHECK_NEAR(rate, 0.5, 0.0);
    CHECK_EQ_U64(w.slow, 4);
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.total, 4);
    rs_window_free(&w);
}

/* clear empties the totals and restarts the current period. */
static void test_count_clear(void) {
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_count(&w, 100), RS_OK);
    for (int i = 0; i < 105; i++) {
        rs_window_add(&w, F | S, &rate);
    }
    CHECK_EQ_U64(w.total, 100);
    rs_window_clear(&w, 0);
    CHECK_EQ_U64(w.total, 0);
    CHECK_EQ_U64(w.failures, 0);
    CHECK_EQ_U64(w.slow, 0);
    int early = 0;
    for (int i = 1; i <= 9; i++) {
        early += rs_window_add(&w, 0, &rate); /* 5 stale period outcomes must be gone */
    }
    CHECK_EQ_INT(early, 0);
    CHECK_EQ_INT(rs_window_add(&w, F, &rate), 1);
    CHECK_NEAR(rate, 0.1, 1e-15);
    CHECK_EQ_U64(w.total, 10);
    CHECK_EQ_U64(w.failures, 1);
    /* the ring restarted too: 100 more outcomes evict exactly the 10 above */
    for (int i = 0; i < 100; i++) {
        rs_window_add(&w, S, &rate);
    }
    CHECK_EQ_U64(w.failures, 0);
    CHECK_EQ_U64(w.slow, 100);
    rs_window_free(&w);
}

/* A count window never rolls. */
static void test_count_never_rolls(void) {
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_count(&w, 10), RS_OK);
    rs_window_add(&w, F, &rate);
    CHECK_EQ_INT(rs_window_roll(&w, UINT64_MAX / 2, &rate), 0);
    CHECK_EQ_U64(w.total, 1);
    rs_window_free(&w);
}

/* ---- time window ------------------------------------------------------- */

/* Time-window init rejects duration < RS_WINDOW_BUCKETS and accepts 10 ns. */
static void test_time_init_errors(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_time(&w, 0, 0), RS_EINVAL);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_time(&w, 9, 0), RS_EINVAL);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_time(&w, 10, 123), RS_OK);
    CHECK(w.timed);
    CHECK_EQ_U64(w.width_ns, 1);
    rs_window_free(&w);
}

/* Buckets roll with time; the ended bucket's rate is reported; an empty bucket is skipped. */
static void test_time_buckets_roll_and_report(void) {
    rs_window w;
    double rate = -1.0;
    CHECK_EQ_INT(rs_window_init_time(&w, 1000, 0), RS_OK); /* 10 buckets of 100 ns */
    CHECK_EQ_INT(rs_window_add(&w, F, &rate), 0);
    CHECK_EQ_INT(rs_window_add(&w, 0, &rate), 0);
    CHECK_EQ_INT(rs_window_add(&w, S, &rate), 0);
    CHECK_EQ_INT(rs_window_roll(&w, 50, &rate), 0);   /* same bucket */
    CHECK_EQ_INT(rs_window_roll(&w, 99, &rate), 0);   /* same bucket */
    CHECK_EQ_INT(rs_window_roll(&w, 100, &rate), 1);  /* bucket 0 ends */
    CHECK_NEAR(rate, 1.0 / 3.0, 1e-15);
    CHECK_EQ_U64(w.total, 3);
    CHECK_EQ_U64(w.failures, 1);
    CHECK_EQ_U64(w.slow, 1);
    CHECK_EQ_INT(rs_window_roll(&w, 199, &rate), 0);  /* bucket 1 still open */
    rs_window_add(&w, F, &rate);
    rs_window_add(&w, F, &rate);
    rate = -1.0;
    CHECK_EQ_INT(rs_window_roll(&w, 250, &rate), 1);  /* bucket 1 ends */
    CHECK_NEAR(rate, 1.0, 0.0);
    rate = -1.0;
    CHECK_EQ_INT(rs_window_roll(&w, 300, &rate), 0);  /* bucket 2 was empty: skipped */
    CHECK_EQ_INT(rs_window_roll(&w, 700, &rate), 0);  /* several empty buckets: skipped */
    rs_window_add(&w, 0, &rate);
    CHECK_EQ_INT(rs_window_roll(&w, 800, &rate), 1);
    CHECK_NEAR(rate, 0.0, 0.0);
    CHECK_EQ_U64(w.total, 6);
    CHECK_EQ_U64(w.failures, 3);
    rs_window_free(&w);
}

/* Outcomes drop out once their bucket is RS_WINDOW_BUCKETS buckets old. */
static void test_time_old_outcomes_drop(void) {
    rs_window w;
    double rate;
    const uint64_t t0 = 5000; /* bucket 50 */
    CHECK_EQ_INT(rs_window_init_time(&w, 1000, t0), RS_OK);
    rs_window_add(&w, F, &rate);
    rs_window_add(&w, F | S, &rate);
    rs_window_roll(&w, t0 + 150, &rate); /* bucket 51 */
    rs_window_add(&w, 0, &rate);
    rs_window_roll(&w, t0 + 999, &rate); /* bucket 59: bucket 50 still inside */
    CHECK_EQ_U64(w.total, 3);
    CHECK_EQ_U64(w.failures, 2);
    CHECK_EQ_U64(w.slow, 1);
    rs_window_roll(&w, t0 + 1000, &rate); /* bucket 60: bucket 50 drops */
    CHECK_EQ_U64(w.total, 1);
    CHECK_EQ_U64(w.failures, 0);
    CHECK_EQ_U64(w.slow, 0);
    rs_window_roll(&w, t0 + 1099, &rate); /* still bucket 60 */
    CHECK_EQ_U64(w.total, 1);
    rs_window_roll(&w, t0 + 1100, &rate); /* bucket 61: bucket 51 drops */
    CHECK_EQ_U64(w.total, 0);
    rs_window_free(&w);
}

/* Filling every bucket then jumping far ahead clears everything and reports the head bucket. */
static void test_time_jump_far_ahead(void) {
    rs_window w;
    double rate = -1.0;
    CHECK_EQ_INT(rs_window_init_time(&w, 1000, 0), RS_OK);
    for (uint64_t k = 0; k < RS_WINDOW_BUCKETS; k++) {
        rs_window_roll(&w, k * 100, &rate);
        rs_window_add(&w, F | S, &rate);
        rs_window_add(&w, 0, &rate);
    }
    CHECK_EQ_U64(w.total, 20);
    CHECK_EQ_U64(w.failures, 10);
    rate = -1.0;
    CHECK_EQ_INT(rs_window_roll(&w, UINT64_C(1) << 60, &rate), 1);
    CHECK_NEAR(rate, 0.5, 0.0);
    CHECK_EQ_U64(w.total, 0);
    CHECK_EQ_U64(w.failures, 0);
    CHECK_EQ_U64(w.slow, 0);
    int nonzero = 0;
    for (int k = 0; k < RS_WINDOW_BUCKETS; k++) {
        nonzero += w.buckets[k].total != 0 || w.buckets[k].failures != 0 || w.buckets[k].slow != 0;
    }
    CHECK_EQ_INT(nonzero, 0);
    /* The window still works at the new time. */
    rs_window_add(&w, F, &rate);
    CHECK_EQ_U64(w.total, 1);
    CHECK_EQ_INT(rs_window_roll(&w, (UINT64_C(1) << 60) + 100, &rate), 1);
    CHECK_NEAR(rate, 1.0, 0.0);
    rs_window_free(&w);
}

/* A jump of exactly 9 buckets keeps the old head bucket; 10 buckets drop it. */
static void test_time_jump_edges(void) {
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_time(&w, 1000, 0), RS_OK);
    rs_window_add(&w, F, &rate);
    rs_window_roll(&w, 900, &rate);
    CHECK_EQ_U64(w.total, 1);
    rs_window_clear(&w, 0);
    rs_window_add(&w, F, &rate);
    rs_window_roll(&w, 1000, &rate);
    CHECK_EQ_U64(w.total, 0);
    rs_window_free(&w);
}

/* clear on a time window empties it and moves the head to now. */
static void test_time_clear(void) {
    rs_window w;
    double rate = -1.0;
    CHECK_EQ_INT(rs_window_init_time(&w, 1000, 0), RS_OK);
    rs_window_add(&w, F, &rate);
    rs_window_clear(&w, 5050);
    CHECK_EQ_U64(w.total, 0);
    CHECK_EQ_INT(rs_window_roll(&w, 5099, &rate), 0); /* head is bucket 50 now */
    rs_window_add(&w, 0, &rate);
    CHECK_EQ_INT(rs_window_roll(&w, 5100, &rate), 1);
    CHECK_NEAR(rate, 0.0, 0.0);
    CHECK_EQ_U64(w.total, 1);
    rs_window_free(&w);
}

/* ---- time window with nbuckets ------------------------------------------ */

/* init_buckets rejects 0 or more than RS_WINDOW_MAX_BUCKETS buckets and a
 * duration shorter than one ns per bucket. */
static void test_buckets_init_errors(void) {
    rs_window w;
    CHECK_EQ_INT(rs_window_init_buckets(&w, 1000, 0, 0), RS_EINVAL);
    CHECK_EQ_INT(rs_window_init_buckets(&w, 1000, RS_WINDOW_MAX_BUCKETS + 1, 0), RS_EINVAL);
    CHECK_EQ_INT(rs_window_init_buckets(&w, 63, 64, 0), RS_EINVAL);
    CHECK_EQ_INT(rs_window_init_buckets(&w, 64, 64, 0), RS_OK);
    CHECK_EQ_U64(w.width_ns, 1);
    CHECK_EQ_INT(rs_window_init_buckets(&w, 1000, 1, 2500), RS_OK);
    CHECK_EQ_U64(w.width_ns, 1000);
    CHECK_EQ_U64(w.head_id, 2);
    CHECK_EQ_INT(rs_window_init_buckets(&w, 1000, 12, 0), RS_OK);
    CHECK_EQ_U64(w.width_ns, 83); /* rounded down, as rs_hist_window's slot_ns */
    rs_window_free(&w);
}

/* add_n adds to the head bucket; a count that would pass UINT32_MAX in one
 * bucket is refused whole; a count window refuses it. */
static void test_buckets_add_n(void) {
    rs_window w;
    double rate;
    CHECK_EQ_INT(rs_window_init_buckets(&w, 300, 3, 0), RS_OK);
    CHECK_EQ_INT(rs_window_add_n(&w, 0), RS_OK);
    CHECK_EQ_U64(w.total, 0);
    CHECK_EQ_INT(rs_window_add_n(&w, 5), RS_OK);
    CHECK_EQ_INT(rs_window_add_n(&w, UINT32_MAX - 5), RS_OK);
    CHECK_EQ_U64(w.total, UINT32_MAX);
    CHECK_EQ_INT(rs_window_add_n(&w, 1), RS_EINVAL);
    CHECK_EQ_INT(rs_window_add_n(&w, UINT64_MAX), RS_EINVAL);
    CHECK_EQ_U64(w.total, UINT32_MAX);
    rs_window_roll(&w, 100, &rate);
    CHECK_EQ_INT(rs_window_add_n(&w, UINT32_MAX), RS_OK);
    CHECK_EQ_U64(w.total, 2 * (uint64_t)UINT32_MAX);
    rs_window_roll(&w, 300, &rate); /* the first bucket ages out */
    CHECK_EQ_U64(w.total, UINT32_MAX);
    rs_window_free(&w);
    CHECK_EQ_INT(rs_window_init_count(&w, 4), RS_OK);
    CHECK_EQ_INT(rs_window_add_n(&w, 1), RS_EINVAL);
    CHECK_EQ_U64(w.total, 0);
    rs_window_free(&w);
}

/* Against a recount of every (time, n) added, for bucket counts 1..64: an
 * add at head id e counts while the head id is < e + nbuckets; time that
 * steps back is read as the newest time seen. */
static void test_buckets_match_recount(void) {
    enum { N = 600 };
    static uint64_t ids[N], ns[N];
    for (uint32_t nb = 1; nb <= RS_WINDOW_MAX_BUCKETS; nb += (nb < 4 ? 1 : 7)) {
        rs_window w;
        double rate;
        uint64_t width = 1 + lcg_next() % 50;
        CHECK_EQ_INT(rs_window_init_buckets(&w, width * nb + lcg_next() % nb, nb, 0), RS_OK);
        CHECK_EQ_U64(w.width_ns, width);
        uint64_t now = 0, newest = 0;
        int mismatches = 0;
        for (uint32_t i = 0; i < N; i++) {
            uint32_t r = lcg_next();
            if (r % 5 == 0 && now > 3 * width) {
                now -= lcg_next() % (3 * width); /* a step back */
            } else {
                now += (r >> 3) % (width * (r % 3 == 0 ? 2u * nb : 2u));
            }
            if (now / width > newest) {
                newest = now / width;
            }
            rs_window_roll(&w, now, &rate);
            ids[i] = newest;
            ns[i] = 1 + lcg_next() % 4;
            CHECK_EQ_INT(rs_window_add_n(&w, ns[i]), RS_OK);
            uint64_t expect = 0;
            for (uint32_t k = 0; k <= i; k++) {
                expect += newest - ids[k] < nb ? ns[k] : 0;
            }
            mismatches += w.total != expect;
        }
        CHECK_EQ_INT(mismatches, 0);
        rs_window_free(&w);
    }
}

/* ---- latency ring ------------------------------------------------------ */

/* Latency-ring init rejects cap 0 and cap > RS_WINDOW_MAX_SIZE; free is safe after. */
static void test_latring_init_errors(void) {
    rs_latring l;
    CHECK_EQ_INT(rs_latring_init(&l, 0), RS_EINVAL);
    rs_latring_free(&l);
    CHECK_EQ_INT(rs_latring_init(&l, RS_WINDOW_MAX_SIZE + 1), RS_EINVAL);
    rs_latring_free(&l);
    CHECK_EQ_INT(rs_latring_init(&l, RS_WINDOW_MAX_SIZE), RS_OK);
    rs_latring_free(&l);
    rs_latring_free(&l);
}

/* Mean and population stddev against hand-computed values, across a wrap, and clear. */
static void test_latring_mean_stddev_by_hand(void) {
    rs_latring l;
    CHECK_EQ_INT(rs_latring_init(&l, 4), RS_OK);
    CHECK(rs_latring_mean(&l) == 0.0);
    CHECK(rs_latring_stddev(&l) == 0.0);
    rs_latring_push(&l, 10.0);
    CHECK_NEAR(rs_latring_mean(&l), 10.0, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), 0.0, 1e-6);
    rs_latring_push(&l, 20.0); /* mean 15, pop. var 25 */
    CHECK_NEAR(rs_latring_mean(&l), 15.0, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), 5.0, 1e-9);
    rs_latring_push(&l, 30.0);
    rs_latring_push(&l, 40.0); /* 10 20 30 40: mean 25, var (225+25+25+225)/4 = 125 */
    CHECK_EQ_U64(l.n, 4);
    CHECK_NEAR(rs_latring_mean(&l), 25.0, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), sqrt(125.0), 1e-9);
    rs_latring_push(&l, 100.0); /* 20 30 40 100: mean 47.5, var (756.25+306.25+56.25+2756.25)/4 = 968.75 */
    CHECK_EQ_U64(l.n, 4);
    CHECK_NEAR(rs_latring_mean(&l), 47.5, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), sqrt(968.75), 1e-9);
    rs_latring_push(&l, 0.0); /* 30 40 100 0: mean 42.5, var (156.25+6.25+3306.25+1806.25)/4 = 1318.75 */
    CHECK_NEAR(rs_latring_mean(&l), 42.5, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), sqrt(1318.75), 1e-9);
    rs_latring_clear(&l);
    CHECK_EQ_U64(l.n, 0);
    CHECK(rs_latring_mean(&l) == 0.0);
    CHECK(rs_latring_stddev(&l) == 0.0);
    rs_latring_push(&l, 7.0); /* after clear only new samples count */
    CHECK_NEAR(rs_latring_mean(&l), 7.0, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), 0.0, 1e-6);
    rs_latring_free(&l);
}

/* A ring of capacity 1 holds just the latest sample. */
static void test_latring_cap_one(void) {
    rs_latring l;
    CHECK_EQ_INT(rs_latring_init(&l, 1), RS_OK);
    for (int i = 1; i <= 5; i++) {
        rs_latring_push(&l, 3.0 * i);
    }
    CHECK_EQ_U64(l.n, 1);
    CHECK_NEAR(rs_latring_mean(&l), 15.0, 1e-12);
    CHECK_NEAR(rs_latring_stddev(&l), 0.0, 1e-6);
    rs_latring_free(&l);
}

/* On wrap the sums are recomputed exactly: huge old samples leave no residue. */
static void test_latring_wrap_recomputes_exactly(void) {
    rs_latring l;
    CHECK_EQ_INT(rs_latring_init(&l, 4), RS_OK);
    for (int i = 0; i < 4; i++) {
        rs_latring_push(&l, 1e17);
    }
    for (int i = 0; i < 4; i++) {
        rs_latring_push(&l, 1.0);
    }
    /* Running add/subtract alone would have lost the 1.0s against 1e17. */
    CHECK(l.sum == 4.0);
    CHECK(l.sumsq == 4.0);
    CHECK(rs_latring_mean(&l) == 1.0);
    CHECK(rs_latring_stddev(&l) == 0.0);
    rs_latring_free(&l);
}

static void fresh_stats(const rs_latring *l, double *sum, double *sumsq, double *mean, double *sd) {
    double s = 0.0, q = 0.0;
    for (uint32_t i = 0; i < l->n; i++) {
        s += l->values[i];
        q += l->values[i] * l->values[i];
    }
    double m = l->n ? s / l->n : 0.0, v = 0.0;
    for (uint32_t i = 0; i < l->n; i++) {
        v += (l->values[i] - m) * (l->values[i] - m);
    }
    *sum = s;
    *sumsq = q;
    *mean = m;
    *sd = l->n ? sqrt(v / l->n) : 0.0;
}

/* 1e6 pushes (latencies 0..10 s with rare huge spikes) keep the sums equal to a fresh recomputation. */
static void test_latring_large_run_accuracy(void) {
    const uint32_t caps[] = {7, 50, 1000};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        rs_latring l;
        CHECK_EQ_INT(rs_latring_init(&l, caps[k]), RS_OK);
        for (uint32_t i = 0; i < 1000000u + 3u; i++) {
            double ms = (double)(lcg_next() % 10000000u) / 1000.0;
            if (i % 9973u == 0) {
                ms += 1e9;
            }
            rs_latring_push(&l, ms);
        }
        double sum, sumsq, mean, sd;
        fresh_stats(&l, &sum, &sumsq, &mean, &sd);
        CHECK_EQ_U64(l.n, caps[k]);
        CHECK_NEAR(l.sum, sum, 1e-9 * fabs(sum));
        CHECK_NEAR(l.sumsq, sumsq, 1e-9 * fabs(sumsq));
        CHECK_NEAR(rs_latring_mean(&l), mean, 1e-9 * fabs(mean));
        CHECK_NEAR(rs_latring_stddev(&l), sd, 1e-6 * sd + 1e-6);
        rs_latring_free(&l);
    }
}

int main(void) {
    RUN_TEST(test_count_init_errors);
    RUN_TEST(test_count_totals_fill_and_evict);
    RUN_TEST(test_count_totals_match_recount);
    RUN_TEST(test_count_period_size_100);
    RUN_TEST(test_count_period_lengths);
    RUN_TEST(test_count_period_size_5);
    RUN_TEST(test_count_slow_flags);
    RUN_TEST(test_count_clear);
    RUN_TEST(test_count_never_rolls);
    RUN_TEST(test_time_init_errors);
    RUN_TEST(test_time_buckets_roll_and_report);
    RUN_TEST(test_time_old_outcomes_drop);
    RUN_TEST(test_time_jump_far_ahead);
    RUN_TEST(test_time_jump_edges);
    RUN_TEST(test_time_clear);
    RUN_TEST(test_buckets_init_errors);
    RUN_TEST(test_buckets_add_n);
    RUN_TEST(test_buckets_match_recount);
    RUN_TEST(test_latring_init_errors);
    RUN_TEST(test_latring_mean_stddev_by_hand);
    RUN_TEST(test_latring_cap_one);
    RUN_TEST(test_latring_wrap_recomputes_exactly);
    RUN_TEST(test_latring_large_run_accuracy);
    return rs_test_summary();
}
