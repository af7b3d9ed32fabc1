/* test_backoff.c - unit tests of rs_backoff (csrc/core/rs_backoff.h). */
#include "rs_backoff.h"
#include "rs_test.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#define TWO_POW_M53 (1.0 / 9007199254740992.0) /* 2**-53 */

/* Attempts that must all behave as attempt 63. */
static const uint64_t LARGE_ATTEMPTS[] = {
    64u,
    65u,
    100u,
    1024u,
    (UINT64_C(1) << 31) - 1u,
    UINT64_C(1) << 32,
    (UINT64_C(1) << 63) - 1u,
    UINT64_C(1) << 63,
    UINT64_MAX - 1u,
    UINT64_MAX,
};
#define N_LARGE (sizeof LARGE_ATTEMPTS / sizeof LARGE_ATTEMPTS[0])

/* Configurations the property tests run over: {base, multiplier, max_delay}. */
static const double CONFIGS[][3] = {
    {1.0, 2.0, 30.0},        /* the documented defaults */
    {0.1, 1.5, 5.0},
    {0.25, 1.0, 0.25},       /* multiplier 1, max_delay == base */
    {1e-9, 1e300, 42.0},     /* pow overflows to +inf from attempt 2 */
    {1e-300, 2.0, 1e-290},   /* tiny but normal base */
    {3.0, 10.0, DBL_MAX},    /* cap never below the raw delay before attempt 308 */
    {1e300, 10.0, DBL_MAX},  /* base * pow overflows */
    {0.0, 2.0, 30.0},        /* base 0: every delay is 0 */
    {0.0, 1e300, 0.0},
};
#define N_CONFIGS (sizeof CONFIGS / sizeof CONFIGS[0])

static void make(rs_backoff *b, size_t config, int jitter, uint64_t seed) {
    int st = rs_backoff_init(b, CONFIGS[config][0], CONFIGS[config][1], CONFIGS[config][2], jitter,
                             seed);
    if (st != RS_OK) {
        RS_TEST_FAIL_("init of config %zu, jitter %d returned %d", config, jitter, st);
    }
}

/* Calls fn(attempt) for attempts 0..70 and the large ones. */
static uint64_t attempt_at(size_t i) {
    return i <= 70 ? (uint64_t)i : LARGE_ATTEMPTS[i - 71];
}
#define N_ATTEMPTS (71 + N_LARGE)

/* ---- names and validation --------------------------------------------- */

/* The field table names every field; jitter names are non-NULL for valid indices and NULL outside. */
static void test_field_and_jitter_names(void) {
    const char *names[RS_BOF_COUNT] = {
        [RS_BOF_BASE] = "base",
        [RS_BOF_MULTIPLIER] = "multiplier",
        [RS_BOF_MAX_DELAY] = "max_delay",
        [RS_BOF_JITTER] = "jitter",
    };
    for (int f = 0; f < RS_BOF_COUNT; f++) {
        CHECK_STREQ(RS_BACKOFF_FIELDS[f].name, names[f]);
        CHECK(RS_BACKOFF_FIELDS[f].lo <= RS_BACKOFF_FIELDS[f].hi);
    }
    CHECK(RS_BACKOFF_FIELDS[RS_BOF_JITTER].hi == RS_JITTER_COUNT - 1);
    CHECK_STREQ(rs_jitter_name(RS_JITTER_NONE), "none");
    CHECK_STREQ(rs_jitter_name(RS_JITTER_FULL), "full");
    CHECK_STREQ(rs_jitter_name(RS_JITTER_EQUAL), "equal");
    CHECK_STREQ(rs_jitter_name(RS_JITTER_DECORRELATED), "decorrelated");
    const int bad_jitter[] = {-1, RS_JITTER_COUNT, RS_JITTER_COUNT + 1, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_jitter / sizeof bad_jitter[0]; i++) {
        CHECK(rs_jitter_name(bad_jitter[i]) == NULL);
    }
}

/* init returns `want` and leaves the struct byte-for-byte unchanged on error. */
#define CHECK_INIT(base, mult, maxd, jitter, want)                              \
    do {                                                                       \
        rs_backoff b_, before_;                                                \
        memset(&b_, 0xA5, sizeof b_);                                          \
        memcpy(&before_, &b_, sizeof b_);                                      \
        int st_ = rs_backoff_init(&b_, (base), (mult), (maxd), (jitter), 7u);  \
        CHECK_EQ_INT(st_, (want));                                             \
        if ((want) != RS_OK) {                                                 \
            CHECK(memcmp(&b_, &before_, sizeof b_) == 0);                      \
        }                                                                      \
    } while (0)

#define BAD(field) (RS_EFIELD_BASE + (field))

/* Each bad field is reported as RS_EFIELD_BASE + that field; edge values are accepted. */
static void test_init_each_bad_field(void) {
    /* base: < 0, NaN, +-inf */
    const double bad_base[] = {-1.0, -1e-300, -DBL_TRUE_MIN, -INFINITY, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_base / sizeof bad_base[0]; i++) {
        CHECK_INIT(bad_base[i], 2.0, 30.0, RS_JITTER_NONE, BAD(RS_BOF_BASE));
    }
    /* multiplier: < 1, NaN, +-inf */
    const double bad_mult[] = {0.999999, 1.0 - DBL_EPSILON / 2, 0.0, -2.0, -INFINITY, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_mult / sizeof bad_mult[0]; i++) {
        CHECK_INIT(1.0, bad_mult[i], 30.0, RS_JITTER_NONE, BAD(RS_BOF_MULTIPLIER));
    }
    /* max_delay: < base, NaN, inf */
    CHECK_INIT(2.0, 2.0, 1.999, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(2.0, 2.0, nextafter(2.0, 0.0), RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(1.0, 2.0, 0.0, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(0.0, 2.0, -1.0, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(1.0, 2.0, INFINITY, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(1.0, 2.0, -INFINITY, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    CHECK_INIT(1.0, 2.0, NAN, RS_JITTER_NONE, BAD(RS_BOF_MAX_DELAY));
    /* jitter out of range */
    const int bad_jitter[] = {-1, RS_JITTER_COUNT, RS_JITTER_COUNT + 1, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_jitter / sizeof bad_jitter[0]; i++) {
        CHECK_INIT(1.0, 2.0, 30.0, bad_jitter[i], BAD(RS_BOF_JITTER));
    }
    /* the first bad field (in declaration order) is the one reported */
    CHECK_INIT(NAN, NAN, NAN, -1, BAD(RS_BOF_BASE));
    CHECK_INIT(1.0, 0.5, 0.5, 9, BAD(RS_BOF_MULTIPLIER));
    CHECK_INIT(1.0, 2.0, 0.5, 9, BAD(RS_BOF_MAX_DELAY));
    /* edges that are in range */
    CHECK_INIT(0.0, 1.0, 0.0, RS_JITTER_NONE, RS_OK);
    CHECK_INIT(-0.0, 1.0, 0.0, RS_JITTER_NONE, RS_OK);
    CHECK_INIT(2.0, 1.0, 2.0, RS_JITTER_DECORRELATED, RS_OK);
    CHECK_INIT(DBL_TRUE_MIN, DBL_MAX, DBL_MAX, RS_JITTER_FULL, RS_OK);
    for (int j = 0; j < RS_JITTER_COUNT; j++) {
        CHECK_INIT(1.0, 2.0, 30.0, j, RS_OK);
    }
    /* a good init stores every field, the seed included */
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 0.5, 3.0, 9.0, RS_JITTER_EQUAL, UINT64_C(0xDEADBEEF)), RS_OK);
    CHECK(b.base == 0.5);
    CHECK(b.multiplier == 3.0);
    CHECK(b.max_delay == 9.0);
    CHECK_EQ_INT(b.jitter, RS_JITTER_EQUAL);
    CHECK_EQ_U64(b.rng, UINT64_C(0xDEADBEEF));
}

/* ---- raw delay --------------------------------------------------------- */

/* base * multiplier^attempt, capped at max_delay: exact values. */
static void test_raw_exact_values(void) {
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 0) == 1.0);
    CHECK(rs_backoff_raw(&b, 1) == 2.0);
    CHECK(rs_backoff_raw(&b, 2) == 4.0);
    CHECK(rs_backoff_raw(&b, 3) == 8.0);
    CHECK(rs_backoff_raw(&b, 4) == 16.0);
    CHECK(rs_backoff_raw(&b, 5) == 30.0); /* 32 capped */
    CHECK(rs_backoff_raw(&b, 6) == 30.0);
    CHECK(rs_backoff_raw(&b, 63) == 30.0);

    CHECK_EQ_INT(rs_backoff_init(&b, 0.5, 3.0, 1e6, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 0) == 0.5);
    CHECK(rs_backoff_raw(&b, 1) == 1.5);
    CHECK(rs_backoff_raw(&b, 2) == 4.5);
    CHECK(rs_backoff_raw(&b, 3) == 13.5);
    CHECK(rs_backoff_raw(&b, 12) == 265720.5);   /* 0.5 * 3^12 */
    CHECK(rs_backoff_raw(&b, 13) == 797161.5);   /* 0.5 * 3^13, still below the cap */
    CHECK(rs_backoff_raw(&b, 14) == 1e6);        /* 2391484.5 capped */

    /* multiplier 1: constant */
    CHECK_EQ_INT(rs_backoff_init(&b, 0.75, 1.0, 0.75, RS_JITTER_NONE, 0), RS_OK);
    int not_const = 0;
    for (uint64_t a = 0; a <= 70; a++) {
        not_const += rs_backoff_raw(&b, a) != 0.75;
    }
    CHECK_EQ_INT(not_const, 0);

    /* exactly at the cap and one step beyond */
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 16.0, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 4) == 16.0);
    CHECK(rs_backoff_raw(&b, 5) == 16.0);
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 15.5, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 3) == 8.0);
    CHECK(rs_backoff_raw(&b, 4) == 15.5);
}

/* Attempts past 63 (64, 1024, 2^31-1, 2^63-1, UINT64_MAX, ...) behave as 63. */
static void test_raw_large_attempts_behave_as_63(void) {
    rs_backoff b;
    /* max_delay high enough that attempt 63 is not capped: 2^63 exactly */
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 1e300, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 62) == ldexp(1.0, 62));
    CHECK(rs_backoff_raw(&b, 63) == ldexp(1.0, 63));
    for (size_t i = 0; i < N_LARGE; i++) {
        double r = rs_backoff_raw(&b, LARGE_ATTEMPTS[i]);
        if (r != ldexp(1.0, 63)) {
            RS_TEST_FAIL_("raw(%" PRIu64 ") = %.17g, want 2^63", LARGE_ATTEMPTS[i], r);
        } else {
            rs_test_passed++;
        }
    }
    /* a non-power-of-two multiplier: compare with attempt 63 itself */
    CHECK_EQ_INT(rs_backoff_init(&b, 1e-3, 1.5, 1e300, RS_JITTER_NONE, 0), RS_OK);
    double r63 = rs_backoff_raw(&b, 63);
    CHECK(r63 > rs_backoff_raw(&b, 62));
    CHECK_NEAR(r63, 1e-3 * pow(1.5, 63), 1e-12 * r63);
    int differ = 0;
    for (size_t i = 0; i < N_LARGE; i++) {
        differ += rs_backoff_raw(&b, LARGE_ATTEMPTS[i]) != r63;
    }
    CHECK_EQ_INT(differ, 0);
}

/* A multiplier so large that pow overflows to +inf still yields max_delay. */
static void test_raw_huge_multiplier_caps(void) {
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1e-9, 1e300, 42.0, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 0) == 1e-9);
    CHECK(rs_backoff_raw(&b, 1) == 42.0); /* 1e291 */
    CHECK(rs_backoff_raw(&b, 2) == 42.0); /* pow = +inf */
    CHECK(rs_backoff_raw(&b, 63) == 42.0);
    int bad = 0;
    for (size_t i = 0; i < N_LARGE; i++) {
        bad += rs_backoff_raw(&b, LARGE_ATTEMPTS[i]) != 42.0;
    }
    CHECK_EQ_INT(bad, 0);
    /* base * pow overflows although pow itself is finite */
    CHECK_EQ_INT(rs_backoff_init(&b, 1e300, 10.0, DBL_MAX, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 0) == 1e300);
    CHECK(rs_backoff_raw(&b, 9) == DBL_MAX);
    CHECK(rs_backoff_raw(&b, UINT64_MAX) == DBL_MAX);
    /* the largest finite multiplier */
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, DBL_MAX, 7.0, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 1) == 7.0);
    CHECK(rs_backoff_raw(&b, UINT64_MAX) == 7.0);
}

/* base 0 always gives 0, even when multiplier^attempt is +inf (no 0 * inf = NaN). */
static void test_raw_base_zero(void) {
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 0.0, 1e300, 10.0, RS_JITTER_NONE, 0), RS_OK);
    int nonzero = 0;
    for (size_t i = 0; i < N_ATTEMPTS; i++) {
        double r = rs_backoff_raw(&b, attempt_at(i));
        nonzero += !(r == 0.0);
    }
    CHECK_EQ_INT(nonzero, 0);
    CHECK_EQ_INT(rs_backoff_init(&b, 0.0, 2.0, 0.0, RS_JITTER_NONE, 0), RS_OK);
    CHECK(rs_backoff_raw(&b, 0) == 0.0);
    CHECK(rs_backoff_raw(&b, UINT64_MAX) == 0.0);
    for (int j = 0; j < RS_JITTER_COUNT; j++) {
        CHECK_EQ_INT(rs_backoff_init(&b, 0.0, 1e300, 10.0, j, 99), RS_OK);
        nonzero = 0;
        for (size_t i = 0; i < N_ATTEMPTS; i++) {
            /* a defaulted prev is raw(attempt - 1) = 0 (or base = 0), so even
             * decorrelated draws from [0, 0] */
            nonzero += !(rs_backoff_delay(&b, attempt_at(i), -1.0) == 0.0);
            if (j != RS_JITTER_DECORRELATED) {
                nonzero += !(rs_backoff_delay(&b, attempt_at(i), 5.0) == 0.0);
            }
        }
        CHECK_EQ_INT(nonzero, 0);
    }
    /* decorrelated with a given prev draws from [0, min(max_delay, 3 prev)] */
    CHECK_EQ_INT(rs_backoff_init(&b, 0.0, 2.0, 10.0, RS_JITTER_DECORRELATED, 3u), RS_OK);
    int off = 0;
    for (int i = 0; i < 1000; i++) {
        double d = rs_backoff_delay(&b, (uint64_t)i, 2.0);
        off += !(d >= 0.0 && d <= 6.0);
        d = rs_backoff_delay(&b, (uint64_t)i, 5.0);
        off += !(d >= 0.0 && d <= 10.0);
    }
    CHECK_EQ_INT(off, 0);
}

/* ---- jittered delay ---------------------------------------------------- */

/* Every mode, every config, attempts 0..70 and the large ones, prev defaulted and given:
 * finite, >= 0, <= max_delay, and > 0 when base > 0. */
static void test_delay_bounds_every_mode(void) {
    const double prevs[] = {-1.0, 0.0, 1e-300, 0.5, 3.0, 1e6, 1e308, INFINITY};
    for (size_t c = 0; c < N_CONFIGS; c++) {
        const double base = CONFIGS[c][0], maxd = CONFIGS[c][2];
        for (int j = 0; j < RS_JITTER_COUNT; j++) {
            rs_backoff b;
            make(&b, c, j, 1000u + c);
            unsigned long nonfinite = 0, negative = 0, above = 0, zero = 0;
            for (int rep = 0; rep < 20; rep++) {
                for (size_t i = 0; i < N_ATTEMPTS; i++) {
                    for (size_t p = 0; p < sizeof prevs / sizeof prevs[0]; p++) {
                        double d = rs_backoff_delay(&b, attempt_at(i), prevs[p]);
                        nonfinite += !isfinite(d);
                        negative += d < 0.0;
                        above += d > maxd;
                        zero += base > 0.0 && !(d > 0.0);
                    }
                }
            }
            if (nonfinite || negative || above || zero) {
                RS_TEST_FAIL_("config %zu jitter %s: %lu non-finite, %lu negative, %lu above "
                              "max_delay, %lu zero with base > 0",
                              c, rs_jitter_name(j), nonfinite, negative, above, zero);
            } else {
                rs_test_passed++;
            }
        }
    }
}

/* The header promises full in (0, d] and a delay > 0 whenever base > 0, also for the
 * smallest positive (subnormal) base. */
static void test_delay_positive_for_subnormal_base(void) {
    const double bases[] = {DBL_TRUE_MIN, 4.0 * DBL_TRUE_MIN, DBL_MIN / 4.0};
    for (size_t k = 0; k < sizeof bases / sizeof bases[0]; k++) {
        for (int j = 0; j < RS_JITTER_COUNT; j++) {
            rs_backoff b;
            CHECK_EQ_INT(rs_backoff_init(&b, bases[k], 1.0, bases[k], j, 5u), RS_OK);
            int zero = 0;
            for (int i = 0; i < 1000; i++) {
                zero += !(rs_backoff_delay(&b, 0, -1.0) > 0.0);
            }
            if (zero) {
                RS_TEST_FAIL_("base %.17g jitter %s: %d of 1000 delays are 0", bases[k],
                              rs_jitter_name(j), zero);
            } else {
                rs_test_passed++;
            }
        }
    }
}

/* The seed whose first splitmix64 output is 0: the state after one step is 0, and
 * the mix of 0 is 0. Its first draw is the lowest one, 2^-53. */
#define SEED_LOWEST_DRAW UINT64_C(0x61C8864680B583EB) /* 2^64 - 0x9E3779B97F4A7C15 */

/* The lowest draw u = 2^-53 keeps the bands' open ends: equal stays above d/2, and full
 * stays above 0 for the smallest normal base. */
static void test_delay_lowest_draw_keeps_open_ends(void) {
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, SEED_LOWEST_DRAW), RS_OK);
    CHECK(rs_backoff_uniform(&b) == TWO_POW_M53);
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, SEED_LOWEST_DRAW), RS_OK);
    double d = rs_backoff_delay(&b, 3, -1.0);
    if (d > 0.0 && d <= 8.0) {
        rs_test_passed++;
    } else {
        RS_TEST_FAIL_("full, d = 8, u = 2^-53: %a not in (0, 8]", d);
    }
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_EQUAL, SEED_LOWEST_DRAW), RS_OK);
    d = rs_backoff_delay(&b, 3, -1.0);
    if (d > 4.0 && d <= 8.0) {
        rs_test_passed++;
    } else {
        RS_TEST_FAIL_("equal, d = 8, u = 2^-53: %a not in (4, 8]", d);
    }
    CHECK_EQ_INT(rs_backoff_init(&b, DBL_MIN, 2.0, 1.0, RS_JITTER_FULL, SEED_LOWEST_DRAW), RS_OK);
    d = rs_backoff_delay(&b, 0, -1.0);
    if (d > 0.0 && d <= DBL_MIN) {
        rs_test_passed++;
    } else {
        RS_TEST_FAIL_("full, base = d = DBL_MIN, u = 2^-53: %a not in (0, DBL_MIN]", d);
    }
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_DECORRELATED, SEED_LOWEST_DRAW),
                 RS_OK);
    d = rs_backoff_delay(&b, 3, -1.0); /* [1, 12] */
    CHECK(d >= 1.0 && d <= 12.0);
}

/* Jitter none returns the raw delay and leaves the PRNG alone. */
static void test_delay_none_is_raw(void) {
    for (size_t c = 0; c < N_CONFIGS; c++) {
        rs_backoff b;
        make(&b, c, RS_JITTER_NONE, 77u);
        int differ = 0;
        for (size_t i = 0; i < N_ATTEMPTS; i++) {
            differ += rs_backoff_delay(&b, attempt_at(i), -1.0) != rs_backoff_raw(&b, attempt_at(i));
            differ += rs_backoff_delay(&b, attempt_at(i), 1e9) != rs_backoff_raw(&b, attempt_at(i));
        }
        CHECK_EQ_INT(differ, 0);
        CHECK_EQ_U64(b.rng, 77u);
    }
}

/* Full jitter: d * u, in (0, d]; equal jitter: d/2 + d/2 * u, in (d/2, d]. Checked against a
 * shadow PRNG started from the same seed, and against the bands. */
static void test_delay_full_and_equal_bands(void) {
    for (size_t c = 0; c < N_CONFIGS; c++) {
        for (int j = RS_JITTER_FULL; j <= RS_JITTER_EQUAL; j++) {
            rs_backoff b, shadow;
            make(&b, c, j, 31337u + c);
            make(&shadow, c, j, 31337u + c);
            unsigned long formula = 0, band = 0;
            for (int rep = 0; rep < 50; rep++) {
                for (size_t i = 0; i < N_ATTEMPTS; i++) {
                    uint64_t a = attempt_at(i);
                    double d = rs_backoff_raw(&b, a);
                    double got = rs_backoff_delay(&b, a, -1.0);
                    double u = rs_backoff_uniform(&shadow);
                    double want = j == RS_JITTER_FULL ? d * u : 0.5 * d + 0.5 * d * u;
                    formula += got != want;
                    if (d > 0.0) {
                        double lo = j == RS_JITTER_FULL ? 0.0 : d / 2.0;
                        band += !(got > lo && got <= d);
                    } else {
                        band += got != 0.0;
                    }
                }
            }
            if (formula || band) {
                RS_TEST_FAIL_("config %zu jitter %s: %lu off the formula, %lu outside the band",
                              c, rs_jitter_name(j), formula, band);
            } else {
                rs_test_passed++;
            }
            CHECK_EQ_U64(b.rng, shadow.rng); /* exactly one draw per delay */
        }
    }
}

/* Both bands are actually covered: draws reach near the bottom and near the top. */
static void test_delay_full_and_equal_spread(void) {
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, 4u), RS_OK);
    double lo = INFINITY, hi = 0.0;
    for (int i = 0; i < 10000; i++) {
        double d = rs_backoff_delay(&b, 3, -1.0); /* d = 8 */
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    CHECK(lo < 0.01 * 8.0);
    CHECK(hi > 0.99 * 8.0);
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_EQUAL, 4u), RS_OK);
    lo = INFINITY, hi = 0.0;
    for (int i = 0; i < 10000; i++) {
        double d = rs_backoff_delay(&b, 70, -1.0); /* d = 30 */
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    CHECK(lo > 15.0 && lo < 15.0 + 0.01 * 15.0);
    CHECK(hi <= 30.0 && hi > 30.0 - 0.01 * 15.0);
}

/* The decorrelated band for a given prev: [base, min(max_delay, max(base, 3 * prev))]. */
static double decorrelated_hi(const rs_backoff *b, double prev) {
    double hi = 3.0 * prev;
    if (!(hi >= b->base)) {
        hi = b->base;
    }
    return hi < b->max_delay ? hi : b->max_delay;
}

/* Decorrelated: base + (hi - base) * u within [base, min(max_delay, max(base, 3 prev))],
 * with prev given, and defaulted (base for attempt 0, raw(attempt - 1) otherwise). */
static void test_delay_decorrelated_band(void) {
    const double prevs[] = {0.0, 1e-300, 0.01, 0.1, 0.5, 1.0, 3.0, 7.0, 29.9, 1e6, 1e308, INFINITY};
    for (size_t c = 0; c < N_CONFIGS; c++) {
        rs_backoff b, shadow;
        make(&b, c, RS_JITTER_DECORRELATED, 2024u + c);
        make(&shadow, c, RS_JITTER_DECORRELATED, 2024u + c);
        unsigned long formula = 0, band = 0;
        for (int rep = 0; rep < 20; rep++) {
            for (size_t i = 0; i < N_ATTEMPTS; i++) {
                uint64_t a = attempt_at(i);
                /* defaulted prev */
                double prev = a == 0 ? b.base : rs_backoff_raw(&b, a - 1);
                double hi = decorrelated_hi(&b, prev);
                double got = rs_backoff_delay(&b, a, -1.0);
                double want = b.base + (hi - b.base) * rs_backoff_uniform(&shadow);
                formula += got != want;
                band += !(got >= b.base && got <= hi);
                /* given prev */
                for (size_t p = 0; p < sizeof prevs / sizeof prevs[0]; p++) {
                    hi = decorrelated_hi(&b, prevs[p]);
                    got = rs_backoff_delay(&b, a, prevs[p]);
                    want = b.base + (hi - b.base) * rs_backoff_uniform(&shadow);
                    formula += got != want;
                    band += !(got >= b.base && got <= hi);
                }
            }
        }
        if (formula || band) {
            RS_TEST_FAIL_("config %zu: %lu off the formula, %lu outside the band", c, formula,
                          band);
        } else {
            rs_test_passed++;
        }
        CHECK_EQ_U64(b.rng, shadow.rng);
    }
}

/* A defaulted prev equals passing base (attempt 0) or raw(attempt - 1) explicitly. */
static void test_delay_decorrelated_default_prev(void) {
    for (size_t c = 0; c < N_CONFIGS; c++) {
        rs_backoff x, y;
        make(&x, c, RS_JITTER_DECORRELATED, 555u);
        make(&y, c, RS_JITTER_DECORRELATED, 555u);
        int differ = 0;
        for (int rep = 0; rep < 10; rep++) {
            for (size_t i = 0; i < N_ATTEMPTS; i++) {
                uint64_t a = attempt_at(i);
                double prev = a == 0 ? y.base : rs_backoff_raw(&y, a - 1);
                differ += rs_backoff_delay(&x, a, -1.0) != rs_backoff_delay(&y, a, prev);
                differ += rs_backoff_delay(&x, a, -1e300) != rs_backoff_delay(&y, a, prev);
            }
        }
        CHECK_EQ_INT(differ, 0);
    }
    /* by hand: base 1, max 30, attempt 0 -> [1, 3]; attempt 3 -> prev 4 -> [1, 12];
     * attempt 5 -> prev 16 -> [1, 30] (48 capped); prev 0.2 given -> exactly base */
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_DECORRELATED, 9u), RS_OK);
    double hi0 = 0.0, hi3 = 0.0, hi5 = 0.0, lo = INFINITY;
    int off = 0;
    for (int i = 0; i < 20000; i++) {
        double d0 = rs_backoff_delay(&b, 0, -1.0);
        double d3 = rs_backoff_delay(&b, 3, -1.0);
        double d5 = rs_backoff_delay(&b, 5, -1.0);
        off += !(d0 >= 1.0 && d0 <= 3.0) + !(d3 >= 1.0 && d3 <= 12.0) + !(d5 >= 1.0 && d5 <= 30.0);
        off += rs_backoff_delay(&b, 7, 0.2) != 1.0;
        hi0 = d0 > hi0 ? d0 : hi0;
        hi3 = d3 > hi3 ? d3 : hi3;
        hi5 = d5 > hi5 ? d5 : hi5;
        lo = d5 < lo ? d5 : lo;
    }
    CHECK_EQ_INT(off, 0);
    CHECK(hi0 > 2.99);  /* the band is reached, not a narrower one */
    CHECK(hi3 > 11.9);
    CHECK(hi5 > 29.9);
    CHECK(lo < 1.1);
}

/* ---- PRNG -------------------------------------------------------------- */

/* The same seed gives the same sequence; different seeds give different ones. */
static void test_seed_reproducible_and_distinct(void) {
    const uint64_t seeds[] = {0u, 1u, 42u, 43u, UINT64_MAX};
    for (int j = RS_JITTER_FULL; j < RS_JITTER_COUNT; j++) {
        for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
            rs_backoff x, y;
            CHECK_EQ_INT(rs_backoff_init(&x, 0.5, 2.0, 60.0, j, seeds[s]), RS_OK);
            CHECK_EQ_INT(rs_backoff_init(&y, 0.5, 2.0, 60.0, j, seeds[s]), RS_OK);
            int differ = 0;
            for (size_t i = 0; i < N_ATTEMPTS; i++) {
                differ += rs_backoff_delay(&x, attempt_at(i), -1.0) !=
                          rs_backoff_delay(&y, attempt_at(i), -1.0);
            }
            CHECK_EQ_INT(differ, 0);
        }
        for (size_t s = 0; s + 1 < sizeof seeds / sizeof seeds[0]; s++) {
            rs_backoff x, y;
            CHECK_EQ_INT(rs_backoff_init(&x, 0.5, 2.0, 60.0, j, seeds[s]), RS_OK);
            CHECK_EQ_INT(rs_backoff_init(&y, 0.5, 2.0, 60.0, j, seeds[s + 1]), RS_OK);
            int same = 0;
            for (size_t i = 0; i < 71; i++) { /* attempts 0..70 */
                same += rs_backoff_delay(&x, i, -1.0) == rs_backoff_delay(&y, i, -1.0);
            }
            if (same > 5) {
                RS_TEST_FAIL_("jitter %s, seeds %" PRIu64 " and %" PRIu64 ": %d of 71 equal",
                              rs_jitter_name(j), seeds[s], seeds[s + 1], same);
            } else {
                rs_test_passed++;
            }
        }
    }
}

/* 1e6 uniform draws stay in (0, 1] and average within 0.01 of 0.5. */
static void test_uniform_range_and_mean(void) {
    const uint64_t seeds[] = {0u, 12345u, UINT64_MAX};
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        rs_backoff b;
        CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, seeds[s]), RS_OK);
        unsigned long out = 0;
        double sum = 0.0, lo = 2.0, hi = -1.0;
        for (int i = 0; i < 1000000; i++) {
            double u = rs_backoff_uniform(&b);
            out += !(u > 0.0 && u <= 1.0);
            sum += u;
            lo = u < lo ? u : lo;
            hi = u > hi ? u : hi;
        }
        CHECK_EQ_U64(out, 0);
        CHECK_NEAR(sum / 1e6, 0.5, 0.01);
        CHECK(lo < 1e-4);
        CHECK(hi > 1.0 - 1e-4);
    }
}

/* splitmix64 known answers for seed 0; the draw is ((x >> 11) + 1) * 2^-53. */
static void test_splitmix64_known_answer(void) {
    const uint64_t expect[] = {
        UINT64_C(0xE220A8397B1DCDAF),
        UINT64_C(0x6E789E6AA1B965F4),
        UINT64_C(0x06C45D188009454F),
        UINT64_C(0xF88BB8A8724C81EC),
    };
    rs_backoff b;
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, 0u), RS_OK);
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        double want = (double)((expect[i] >> 11) + 1u) * TWO_POW_M53;
        double got = rs_backoff_uniform(&b);
        if (got != want) {
            RS_TEST_FAIL_("draw %zu: %a != %a", i, got, want);
        } else {
            rs_test_passed++;
        }
    }
    CHECK(((double)((UINT64_C(0xE220A8397B1DCDAF) >> 11) + 1u) * TWO_POW_M53) ==
          0x1.c4415072f63bap-1); /* 0.8833108082136427 */
    /* the first full-jitter delay with seed 0 is raw * the first draw */
    CHECK_EQ_INT(rs_backoff_init(&b, 1.0, 2.0, 30.0, RS_JITTER_FULL, 0u), RS_OK);
    CHECK(rs_backoff_delay(&b, 3, -1.0) == 8.0 * 0x1.c4415072f63bap-1);
    /* the extremes of the mapping: x = 0 maps to 2^-53 and x = 2^64 - 1 to exactly 1 */
    CHECK(((double)((UINT64_C(0) >> 11) + 1u) * TWO_POW_M53) == TWO_POW_M53);
    CHECK(((double)((UINT64_MAX >> 11) + 1u) * TWO_POW_M53) == 1.0);
}

int main(void) {
    RUN_TEST(test_field_and_jitter_names);
    RUN_TEST(test_init_each_bad_field);
    RUN_TEST(test_raw_exact_values);
    RUN_TEST(test_raw_large_attempts_behave_as_63);
    RUN_TEST(test_raw_huge_multiplier_caps);
    RUN_TEST(test_raw_base_zero);
    RUN_TEST(test_delay_bounds_every_mode);
    RUN_TEST(test_delay_positive_for_subnormal_base);
    RUN_TEST(test_delay_lowest_draw_keeps_open_ends);
    RUN_TEST(test_delay_none_is_raw);
    RUN_TEST(test_delay_full_and_equal_bands);
    RUN_TEST(test_delay_full_and_equal_spread);
    RUN_TEST(test_delay_decorrelated_band);
    RUN_TEST(test_delay_decorrelated_default_prev);
    RUN_TEST(test_seed_reproducible_and_distinct);
    RUN_TEST(test_uniform_range_and_mean);
    RUN_TEST(test_splitmix64_known_answer);
    return rs_test_summary();
}
