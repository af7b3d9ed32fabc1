/* C unit tests of rs_rate: validation, the window boundary, the threshold
 * limits, the time clamp, ring wrap-around, allocation, and a randomized
 * comparison with a naive O(n) reference. */
#include <stdbool.h>
#include <stdlib.h>

#include "rs_rate.h"
#include "rs_test.h"

/* ---- allocator hooks: count calls, fail on demand ---------------------- */

static unsigned long n_allocs;
static int fail_allocs;
static uint64_t fail_one_in; /* when set, each allocation fails with probability 1/fail_one_in */

static uint64_t rnd(void);

static void *counting_alloc(size_t n) {
    n_allocs++;
    if (fail_allocs || (fail_one_in && rnd() % fail_one_in == 0)) {
        return NULL;
    }
    return malloc(n);
}

/* rs_rate_hit as a bool, for the tests where the ring never fails to grow:
 * RS_OK is accepted, RS_EREJECTED refused; anything else is a failure. */
static bool hit(rs_rate *r, uint64_t now) {
    int rc = rs_rate_hit(r, now);
    if (rc != RS_OK && rc != RS_EREJECTED) {
        printf("rs_rate_hit returned %d\n", rc);
        rs_test_failed++;
    }
    return rc == RS_OK;
}

/* ---- the naive reference: every counting time in a plain array --------- */

typedef struct naive {
    uint64_t *t;
    size_t len, cap;
    uint64_t threshold, window, last, accepted, refused;
} naive;

static void naive_init(naive *m, uint64_t threshold, uint64_t window) {
    memset(m, 0, sizeof *m);
    m->threshold = threshold;
    m->window = window;
}

/* Clamps now and drops the times that no longer count; returns the clamped now. */
static uint64_t naive_prune(naive *m, uint64_t now) {
    if (now < m->last) {
        now = m->last;
    }
    m->last = now;
    size_t k = 0;
    for (size_t i = 0; i < m->len; i++) {
        if (now - m->t[i] < m->window) {
            m->t[k++] = m->t[i];
        }
    }
    m->len = k;
    return now;
}

static uint64_t naive_count(naive *m, uint64_t now) {
    naive_prune(m, now);
    return m->len;
}

static int naive_hit(naive *m, uint64_t now) {
    now = naive_prune(m, now);
    if (m->len >= m->threshold) {
        m->refused++;
        return 0;
    }
    if (m->len == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->t = realloc(m->t, m->cap * sizeof *m->t);
        if (!m->t) {
            abort();
        }
    }
    m->t[m->len++] = now;
    m->accepted++;
    return 1;
}

static void naive_reset(naive *m) {
    m->len = 0;
    m->accepted = m->refused = 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void) { /* xorshift64*: deterministic */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ---- tests --------------------------------------------------------------- */

/* Every bad field is reported with its own code, threshold first. */
static void test_validation(void) {
    rs_rate r;
    CHECK_EQ_INT(rs_rate_init(&r, 0, 10), RS_EFIELD_BASE + RS_RTF_THRESHOLD);
    CHECK_EQ_INT(rs_rate_init(&r, RS_RATE_MAX_THRESHOLD + 1ULL, 10),
                 RS_EFIELD_BASE + RS_RTF_THRESHOLD);
    CHECK_EQ_INT(rs_rate_init(&r, UINT64_MAX, 10), RS_EFIELD_BASE + RS_RTF_THRESHOLD);
    CHECK_EQ_INT(rs_rate_init(&r, 1ULL << 32, 10), RS_EFIELD_BASE + RS_RTF_THRESHOLD);
    CHECK_EQ_INT(rs_rate_init(&r, 0, 0), RS_EFIELD_BASE + RS_RTF_THRESHOLD);
    CHECK_EQ_INT(rs_rate_init(&r, 1, 0), RS_EFIELD_BASE + RS_RTF_WINDOW);
    CHECK_EQ_INT(rs_rate_init(&r, RS_RATE_MAX_THRESHOLD, 0), RS_EFIELD_BASE + RS_RTF_WINDOW);
    CHECK(r.times == NULL);
    rs_rate_free(&r); /* after a failed init */
    rs_rate_free(&r);
    CHECK_STREQ(RS_RATE_FIELDS[RS_RTF_THRESHOLD].name, "threshold");
    CHECK_STREQ(RS_RATE_FIELDS[RS_RTF_WINDOW].name, "window");
    CHECK(RS_RATE_FIELDS[RS_RTF_THRESHOLD].hi == RS_RATE_MAX_THRESHOLD);
    /* the extremes that are valid */
    CHECK_EQ_INT(rs_rate_init(&r, 1, 1), RS_OK);
    rs_rate_free(&r);
    CHECK_EQ_INT(rs_rate_init(&r, 1, UINT64_MAX), RS_OK);
    CHECK(hit(&r, 0) && !hit(&r, UINT64_MAX - 1) && hit(&r, UINT64_MAX));
    CHECK_EQ_U64(rs_rate_count(&r, UINT64_MAX), 1);
    rs_rate_free(&r);
    rs_rate_free(&r);
    CHECK(r.times == NULL);
}

/* Init allocates nothing; the ring grows by doubling as events arrive, and
 * a failed allocation is reported and changes nothing. */
static void test_allocation(void) {
    rs_rate r;
    rs_set_allocator(counting_alloc, NULL);
    n_allocs = 0;
    fail_allocs = 1;
    CHECK_EQ_INT(rs_rate_init(&r, 100, 10), RS_OK);
    CHECK(r.times == NULL && r.cap == 0 && rs_rate_memory(&r) == 0);
    CHECK_EQ_U64(n_allocs, 0);
    /* the first event needs the first ring: refused by the allocator */
    CHECK_EQ_INT(rs_rate_hit(&r, 5), RS_ENOMEM);
    CHECK(r.times == NULL && r.cap == 0 && r.len == 0);
    CHECK_EQ_U64(r.accepted, 0);
    CHECK_EQ_U64(r.refused, 0);
    CHECK_EQ_U64(r.last_ns, 0); /* not even the clamp moved */
    CHECK_EQ_INT(rs_rate_reserve(&r, 6), RS_ENOMEM);
    CHECK(r.cap == 0);
    fail_allocs = 0;
    CHECK_EQ_INT(rs_rate_hit(&r, 5), RS_OK);
    CHECK_EQ_U64(r.cap, RS_RATE_MIN_CAP);
    CHECK_EQ_U64(n_allocs, 3);
    /* 8 more at one time: full at 8, so the 9th doubles the ring to 16 */
    for (int i = 1; i < 8; i++) {
        CHECK_EQ_INT(rs_rate_hit(&r, 5), RS_OK);
    }
    CHECK_EQ_U64(n_allocs, 3);
    fail_allocs = 1;
    CHECK_EQ_INT(rs_rate_hit(&r, 6), RS_ENOMEM); /* nothing changed */
    CHECK_EQ_U64(r.len, 8);
    CHECK_EQ_U64(r.cap, 8);
    CHECK_EQ_U64(r.accepted, 8);
    CHECK_EQ_U64(r.last_ns, 5);
    CHECK_EQ_U64(rs_rate_count(&r, 6), 8);
    fail_allocs = 0;
    CHECK_EQ_INT(rs_rate_reserve(&r, 6), RS_OK); /* grows now... */
    CHECK_EQ_U64(r.cap, 16);
    unsigned long before = n_allocs;
    fail_allocs = 1;
    CHECK_EQ_U64(rs_rate_count(&r, 7), 8);
    CHECK_EQ_INT(rs_rate_hit(&r, 7), RS_OK); /* ...so this hit needs nothing */
    CHECK_EQ_U64(n_allocs, before);
    fail_allocs = 0;
    /* doubling up to the threshold, never past it */
    for (int i = 0; i < 91; i++) {
        CHECK_EQ_INT(rs_rate_hit(&r, 7), RS_OK);
    }
    CHECK_EQ_U64(r.len, 100);
    CHECK_EQ_U64(r.cap, 100); /* 8, 16, 32, 64, then 100 (not 128) */
    CHECK_EQ_INT(rs_rate_hit(&r, 7), RS_EREJECTED);
    CHECK_EQ_INT(rs_rate_reserve(&r, 7), RS_OK); /* full at threshold: nothing to grow */
    CHECK_EQ_U64(r.cap, 100);
    CHECK_EQ_U64(n_allocs, before + 3);
    /* a steady flow rotates the full ring: no allocation */
    before = n_allocs;
    for (uint64_t t = 20; t < 10000; t++) {
        CHECK_EQ_INT(rs_rate_hit(&r, t), RS_OK);
    }
    CHECK_EQ_U64(n_allocs, before);
    /* 10 count in a window of 10: count shrinks the ring to 20 */
    CHECK_EQ_U64(rs_rate_count(&r, 9999), 10);
    CHECK_EQ_U64(r.cap, 20);
    /* everything aged out: count shrinks the ring to the minimum */
    CHECK_EQ_U64(rs_rate_count(&r, 20000), 0);
    CHECK_EQ_U64(r.cap, RS_RATE_MIN_CAP);
    CHECK_EQ_U64(rs_rate_memory(&r), RS_RATE_MIN_CAP * sizeof(uint64_t));
    rs_rate_reset(&r); /* frees the ring */
    CHECK(r.times == NULL && r.cap == 0);
    CHECK_EQ_INT(rs_rate_hit(&r, 20000), RS_OK);
    rs_rate_free(&r);
    rs_rate_free(&r);
    CHECK(r.times == NULL && r.cap == 0);
    rs_set_allocator(NULL, NULL);
}

/* count shrinks a ring three quarters free to twice what it keeps; a
 * failed shrink keeps the larger ring and loses nothing. */
static void test_shrink(void) {
    rs_rate r;
    rs_set_allocator(counting_alloc, NULL);
    fail_allocs = 0;
    CHECK_EQ_INT(rs_rate_init(&r, 1000, 100), RS_OK);
    for (uint64_t i = 0; i < 1000; i++) {
        CHECK_EQ_INT(rs_rate_hit(&r, i / 10), RS_OK); /* 10 per ns over [0, 100) */
    }
    CHECK_EQ_U64(r.cap, 1000);
    CHECK_EQ_U64(rs_rate_count(&r, 100), 990);
    CHECK_EQ_U64(r.cap, 1000);
    CHECK_EQ_U64(rs_rate_count(&r, 175), 240); /* 240 * 4 <= 1000 */
    CHECK_EQ_U64(r.cap, 480);
    fail_allocs = 1;
    CHECK_EQ_U64(rs_rate_count(&r, 190), 90);
    CHECK_EQ_U64(r.cap, 480); /* could not shrink: stays, intact */
    fail_allocs = 0;
    CHECK_EQ_U64(rs_rate_count(&r, 191), 80);
    CHECK_EQ_U64(r.cap, 160);
    CHECK_EQ_U64(rs_rate_count(&r, 198), 10);
    CHECK_EQ_U64(r.cap, 20);
    CHECK_EQ_INT(rs_rate_hit(&r, 198), RS_OK); /* room was kept: no growth */
    CHECK_EQ_U64(r.cap, 20);
    CHECK_EQ_U64(rs_rate_count(&r, 199), 1);
    CHECK_EQ_U64(r.cap, RS_RATE_MIN_CAP);
    CHECK_EQ_U64(rs_rate_count(&r, 298), 0);
    CHECK_EQ_U64(r.cap, RS_RATE_MIN_CAP); /* never below the minimum */
    CHECK_EQ_U64(r.accepted, 1001);
    rs_rate_free(&r);
    rs_set_allocator(NULL, NULL);
}

/* An event counts while now - t < window: at window - 1 ns yes, at window no. */
static void test_window_boundary(void) {
    rs_rate r;
    const uint64_t w = 1000, t0 = 5000;
    CHECK_EQ_INT(rs_rate_init(&r, 2, w), RS_OK);
    CHECK(hit(&r, t0));
    CHECK(hit(&r, t0 + 10));
    CHECK(!hit(&r, t0 + 10));
    CHECK_EQ_U64(rs_rate_count(&r, t0 + w - 1), 2);
    CHECK(!hit(&r, t0 + w - 1)); /* the first one is w - 1 old: still counts */
    CHECK_EQ_U64(rs_rate_count(&r, t0 + w), 1); /* exactly w old: gone */
    CHECK(hit(&r, t0 + w));
    CHECK(!hit(&r, t0 + w + 9)); /* the second is w - 1 old */
    CHECK_EQ_U64(rs_rate_count(&r, t0 + w + 9), 2);
    CHECK(hit(&r, t0 + w + 10));
    CHECK_EQ_U64(rs_rate_count(&r, t0 + w + 10), 2);
    CHECK_EQ_U64(rs_rate_count(&r, t0 + 2 * w + 9), 1);
    CHECK_EQ_U64(rs_rate_count(&r, t0 + 2 * w + 10), 0);
    CHECK_EQ_U64(r.accepted, 4);
    CHECK_EQ_U64(r.refused, 3);
    rs_rate_free(&r);

    /* window of 1 ns: only events at the very same ns count */
    CHECK_EQ_INT(rs_rate_init(&r, 1, 1), RS_OK);
    CHECK(hit(&r, 7));
    CHECK(!hit(&r, 7));
    CHECK_EQ_U64(rs_rate_count(&r, 7), 1);
    CHECK(hit(&r, 8));
    CHECK_EQ_U64(rs_rate_count(&r, 9), 0);
    rs_rate_free(&r);

    /* refused events do not count: a steady storm still lets one through per window */
    CHECK_EQ_INT(rs_rate_init(&r, 1, 10), RS_OK);
    uint64_t passed = 0;
    for (uint64_t t = 0; t < 100; t++) {
        passed += hit(&r, t);
    }
    CHECK_EQ_U64(passed, 10);
    CHECK_EQ_U64(r.accepted, 10);
    CHECK_EQ_U64(r.refused, 90);
    rs_rate_free(&r);
}

/* Threshold 1 and the largest threshold, 2^24. */
static void test_threshold_limits(void) {
    rs_rate r;
    CHECK_EQ_INT(rs_rate_init(&r, 1, 100), RS_OK);
    CHECK(hit(&r, 0));
    for (uint64_t t = 0; t < 100; t++) {
        CHECK(!hit(&r, t));
    }
    CHECK(hit(&r, 100));
    CHECK_EQ_U64(rs_rate_count(&r, 100), 1);
    rs_rate_free(&r);

    const uint64_t max = RS_RATE_MAX_THRESHOLD;
    CHECK_EQ_INT(rs_rate_init(&r, max, 1000), RS_OK);
    int all = 1;
    for (uint64_t i = 0; i < max; i++) {
        all &= hit(&r, i / (max / 512)); /* 512 distinct times in [0, 512) */
    }
    CHECK(all);
    CHECK(!hit(&r, 999));
    CHECK_EQ_U64(rs_rate_count(&r, 999), max);
    CHECK_EQ_U64(rs_rate_count(&r, 1000), max - max / 512); /* the ones at 0 aged out */
    CHECK(hit(&r, 1000));
    CHECK_EQ_U64(rs_rate_count(&r, 1000), max - max / 512 + 1);
    CHECK_EQ_U64(rs_rate_count(&r, 1510), max / 512 + 1); /* the ones at 511 and 1000 */
    CHECK_EQ_U64(rs_rate_count(&r, 1511), 1);
    CHECK_EQ_U64(rs_rate_count(&r, 1999), 1);
    CHECK_EQ_U64(rs_rate_count(&r, 2000), 0);
    CHECK_EQ_U64(r.accepted, max + 1);
    CHECK_EQ_U64(r.refused, 1);
    rs_rate_free(&r);
}

/* A smaller now is the last seen now: no wrap-around, no early ageing. */
static void test_time_backwards(void) {
    rs_rate r;
    CHECK_EQ_INT(rs_rate_init(&r, 2, 100), RS_OK);
    CHECK(hit(&r, 1000));
    CHECK(hit(&r, 5)); /* recorded at 1000 */
    CHECK(!hit(&r, 0));
    CHECK_EQ_U64(rs_rate_count(&r, 0), 2);
    CHECK_EQ_U64(rs_rate_count(&r, 1099), 2);
    CHECK_EQ_U64(rs_rate_count(&r, 50), 2); /* still 1099 */
    CHECK(!hit(&r, 3));
    CHECK_EQ_U64(rs_rate_count(&r, 1100), 0);
    CHECK_EQ_U64(rs_rate_count(&r, 0), 0);
    CHECK(hit(&r, 0)); /* recorded at 1100 */
    CHECK_EQ_U64(rs_rate_count(&r, 1199), 1);
    CHECK_EQ_U64(rs_rate_count(&r, 1200), 0);
    /* reset forgets events and counters, not the clamp */
    CHECK(hit(&r, 1200) && hit(&r, 1200));
    rs_rate_reset(&r);
    CHECK_EQ_U64(r.accepted, 0);
    CHECK_EQ_U64(r.refused, 0);
    CHECK_EQ_U64(rs_rate_count(&r, 1200), 0);
    CHECK(hit(&r, 0)); /* recorded at 1200 */
    CHECK_EQ_U64(rs_rate_count(&r, 1299), 1);
    CHECK_EQ_U64(rs_rate_count(&r, 1300), 0);
    /* near the top of the range: no overflow in now - t */
    CHECK(hit(&r, UINT64_MAX));
    CHECK(hit(&r, 0));
    CHECK(!hit(&r, 1));
    CHECK_EQ_U64(rs_rate_count(&r, 2), 2);
    rs_rate_free(&r);
}

/* Many laps of the ring, with count dropping entries at every head position. */
static void test_wrap_around(void) {
    rs_rate r;
    const uint64_t n = 7, w = 70;
    CHECK_EQ_INT(rs_rate_init(&r, n, w), RS_OK);
    uint64_t accepted = 0, refused = 0;
    int ok = 1;
    /* one event every 10 ns: exactly 7 fit in a window of 70, forever; once
     * the ring is full, an 8th in the same ns is refused */
    for (uint64_t t = 0; t < 100000; t += 10) {
        ok &= hit(&r, t);
        accepted++;
        if (t / 10 + 1 >= n) {
            ok &= !hit(&r, t);
            refused++;
        }
        ok &= rs_rate_count(&r, t) == (t / 10 + 1 < n ? t / 10 + 1 : n);
    }
    CHECK(ok);
    CHECK_EQ_U64(r.accepted, accepted);
    CHECK_EQ_U64(r.refused, refused);
    /* bursts that fill the ring, then drain it partly by count */
    ok = 1;
    uint64_t t = 200000;
    for (int lap = 0; lap < 5000; lap++) {
        uint64_t before = rs_rate_count(&r, t);
        uint64_t room = n - before;
        for (uint64_t i = 0; i < room; i++) {
            ok &= hit(&r, t);
        }
        ok &= !hit(&r, t);
        ok &= rs_rate_count(&r, t) == n;
        t += w + (uint64_t)lap % 5;
    }
    CHECK(ok);
    CHECK(r.head < n && r.len <= n);
    rs_rate_free(&r);
}

/* The ring against the naive reference over many random operations, run
 * twice: with every allocation succeeding, where the ring's size must follow
 * the events (never past threshold, at most twice the most events that
 * counted at once since the last reset, at most four times what counts after
 * a count), and with one allocation in eight failing, where a hit that
 * returns RS_ENOMEM must change nothing. */
static void test_random_vs_naive(void) {
    static const uint64_t thresholds[] = {1, 2, 3, 5, 8, 33, 100, 1000};
    static const uint64_t windows[] = {1, 2, 10, 97, 1000, 100000};
    const size_t n_th = sizeof thresholds / sizeof *thresholds;
    const size_t n_w = sizeof windows / sizeof *windows;
    rs_set_allocator(counting_alloc, NULL);
    fail_allocs = 0;
    for (int failing = 0; failing < 2; failing++) {
        unsigned long mismatches = 0, bad_sizes = 0, ops = 0, enomem = 0, changed = 0;
        uint64_t accepted = 0, refused = 0, grown_past_min = 0;
        for (size_t a = 0; a < n_th; a++) {
            for (size_t b = 0; b < n_w; b++) {
                const uint64_t th = thresholds[a], w = windows[b];
                rs_rate r;
                naive m;
                if (rs_rate_init(&r, th, w) != RS_OK) {
                    CHECK(0);
                    continue;
                }
                naive_init(&m, th, w);
                uint64_t now = rnd() % 1000, peak = 0;
                fail_one_in = failing ? 8 : 0;
                for (int i = 0; i < 20000; i++) {
                    uint64_t k = rnd() % 100;
                    /* time steps: 0, window - 1, window, window + 1, small, large, backwards */
                    if (k < 25) {
                        /* same ns */
                    } else if (k < 30) {
                        now += w - 1;
                    } else if (k < 35) {
                        now += w;
                    } else if (k < 38) {
                        now += w + 1;
                    } else if (k < 60) {
                        now += rnd() % (w / th + 2);
                    } else if (k < 62) {
                        now += rnd() % (3 * w + 1);
                    }
                    uint64_t at = now;
                    if (rnd() % 20 == 0) {
                        at = now - rnd() % (now + 1); /* a caller's clock stepping back */
                    }
                    uint64_t op = rnd() % 100;
                    if (op < 70) {
                        rs_rate before = r;
                        int rc = rs_rate_hit(&r, at);
                        if (rc == RS_ENOMEM) {
                            enomem++;
                            changed += memcmp(&before, &r, sizeof r) != 0;
                        } else {
                            bool got = rc == RS_OK;
                            mismatches += (rc != RS_OK && rc != RS_EREJECTED)
                                          || got != naive_hit(&m, at);
                            accepted += got;
                            refused += !got;
                            if (got && m.len > peak) {
                                peak = m.len;
                            }
                        }
                    } else if (op < 80) {
                        if (rs_rate_reserve(&r, at) == RS_OK) {
                            /* the next hit cannot fail, even after a count */
                            uint64_t saved = fail_one_in;
                            fail_allocs = 1;
                            if (rnd() % 2) {
                                mismatches += rs_rate_count(&r, at) != naive_count(&m, at);
                            }
                            int rc = rs_rate_hit(&r, at);
                            mismatches += rc == RS_ENOMEM || (rc == RS_OK) != naive_hit(&m, at);
                            if (rc == RS_OK && m.len > peak) {
                                peak = m.len;
                            }
                            fail_allocs = 0;
                            fail_one_in = saved;
                        }
                    } else if (op < 99) {
                        uint64_t got = rs_rate_count(&r, at);
                        mismatches += got != naive_count(&m, at);
                        if (!failing) {
                            uint64_t most = 4 * got > RS_RATE_MIN_CAP ? 4 * got : RS_RATE_MIN_CAP;
                            bad_sizes += r.cap > most;
                        }
                    } else {
                        rs_rate_reset(&r);
                        naive_reset(&m);
                        peak = 0;
                        bad_sizes += r.cap != 0;
                    }
                    mismatches += r.accepted != m.accepted || r.refused != m.refused;
                    bad_sizes += r.cap > th || r.len > r.cap;
                    if (!failing) {
                        bad_sizes += r.cap > (2 * peak > RS_RATE_MIN_CAP ? 2 * peak : RS_RATE_MIN_CAP);
                    }
                    grown_past_min += r.cap > RS_RATE_MIN_CAP;
                    if (m.last > now) {
                        now = m.last;
                    }
                    ops++;
                }
                fail_one_in = 0;
                CHECK_EQ_U64(rs_rate_count(&r, now), naive_count(&m, now));
                rs_rate_free(&r);
                free(m.t);
            }
        }
        CHECK_EQ_U64(mismatches, 0);
        CHECK_EQ_U64(bad_sizes, 0);
        CHECK_EQ_U64(changed, 0);
        CHECK(ops == n_th * n_w * 20000);
        CHECK(accepted > 10000 && refused > 10000); /* both outcomes were exercised */
        CHECK(grown_past_min > 1000);               /* and rings that grew */
        CHECK(failing ? enomem > 100 : enomem == 0);
    }
    rs_set_allocator(NULL, NULL);
}

int main(void) {
    RUN_TEST(test_validation);
    RUN_TEST(test_allocation);
    RUN_TEST(test_shrink);
    RUN_TEST(test_window_boundary);
    RUN_TEST(test_threshold_limits);
    RUN_TEST(test_time_backwards);
    RUN_TEST(test_wrap_around);
    RUN_TEST(test_random_vs_naive);
    return rs_test_summary();
}
