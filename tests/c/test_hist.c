/* test_hist.c - unit tests of rs_hist and rs_hist_window (csrc/core/rs_hist.h). */
#include "rs_hist.h"
#include "rs_test.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

#define BAD(field) (RS_EFIELD_BASE + (field))
#define P2(k) ((uint64_t)1 << (k))
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }
static double rnd_unit(void) { return (double)(rnd() >> 11) * 0x1p-53; } /* [0, 1) */

/* Log-uniform in [0, 2^bits): a uniform bit length, then a uniform value of that length. */
static uint64_t rnd_log(unsigned bits) {
    unsigned b = (unsigned)rnd_below(bits + 1u);
    return b == 0 ? 0 : P2(b - 1) + rnd_below(P2(b - 1));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void init_ok(rs_hist *h, int s, int m) {
    int st = rs_hist_init(h, s, m);
    if (st != RS_OK) {
        RS_TEST_FAIL_("rs_hist_init(%d, %d) returned %d", s, m, st);
    }
}

static void winit_ok(rs_hist_window *w, int s, int m, uint64_t nslots, uint64_t slot_ns) {
    int st = rs_hist_window_init(w, s, m, nslots, slot_ns);
    if (st != RS_OK) {
        RS_TEST_FAIL_("rs_hist_window_init(%d, %d, %" PRIu64 ", %" PRIu64 ") returned %d", s, m,
                      nslots, slot_ns, st);
    }
}

/* 1 when both histograms hold the same buckets and exact stats (sum aside). */
static int same_hist(const rs_hist *a, const rs_hist *b) {
    return a->nbuckets == b->nbuckets && a->count == b->count && a->clamped == b->clamped &&
           rs_hist_min(a) == rs_hist_min(b) && rs_hist_max(a) == rs_hist_max(b) &&
           memcmp(a->counts, b->counts, a->nbuckets * sizeof(uint64_t)) == 0;
}

static const double QS[] = {0.0,  1e-300, 1e-9, 1e-4, 0.001, 0.01,  0.05,   0.1,     0.25, 0.5,
                            0.75, 0.9,    0.95, 0.99, 0.995, 0.999, 0.9999, 0.99999, 1.0};

/* ---- names and validation ----------------------------------------------- */

/* The field table names every field and gives its bounds from the header's constants. */
static void test_field_names_and_ranges(void) {
    const char *names[RS_HGF_COUNT] = {
        [RS_HGF_SUB_BITS] = "sub_bits",
        [RS_HGF_MAX_BITS] = "max_bits",
        [RS_HGF_NSLOTS] = "slots",
        [RS_HGF_SLOT_NS] = "slot_ns",
    };
    for (int f = 0; f < RS_HGF_COUNT; f++) {
        CHECK_STREQ(RS_HIST_FIELDS[f].name, names[f]);
        CHECK(RS_HIST_FIELDS[f].lo <= RS_HIST_FIELDS[f].hi);
    }
    CHECK(RS_HIST_FIELDS[RS_HGF_SUB_BITS].lo == RS_HIST_MIN_SUB_BITS);
    CHECK(RS_HIST_FIELDS[RS_HGF_SUB_BITS].hi == RS_HIST_MAX_SUB_BITS);
    CHECK(RS_HIST_FIELDS[RS_HGF_MAX_BITS].hi == RS_HIST_MAX_MAX_BITS);
    CHECK(RS_HIST_FIELDS[RS_HGF_NSLOTS].hi == RS_HIST_MAX_SLOTS);
}

/* Each bad field is reported as RS_EFIELD_BASE + that field; edges are accepted; free is safe after. */
static void test_init_each_bad_field(void) {
    rs_hist h;
    const int bad_sub[] = {0, -1, 11, 64, INT_MIN, INT_MAX};
    for (size_t i = 0; i < NELEM(bad_sub); i++) {
        CHECK_EQ_INT(rs_hist_init(&h, bad_sub[i], 44), BAD(RS_HGF_SUB_BITS));
        CHECK(h.counts == NULL);
        rs_hist_free(&h);
    }
    const struct { int s, m; } bad_max[] = {{7, 7}, {7, 6}, {7, 0}, {7, -1}, {7, 64},
                                            {7, INT_MAX}, {10, 10}, {1, 1}, {1, INT_MIN}};
    for (size_t i = 0; i < NELEM(bad_max); i++) {
        CHECK_EQ_INT(rs_hist_init(&h, bad_max[i].s, bad_max[i].m), BAD(RS_HGF_MAX_BITS));
        rs_hist_free(&h);
    }
    CHECK_EQ_INT(rs_hist_init(&h, 0, 0), BAD(RS_HGF_SUB_BITS)); /* the first bad field */
    const struct { int s, m; } edges[] = {{1, 2}, {1, 63}, {10, 11}, {10, 63}, {7, 44}};
    for (size_t i = 0; i < NELEM(edges); i++) {
        CHECK_EQ_INT(rs_hist_init(&h, edges[i].s, edges[i].m), RS_OK);
        CHECK_EQ_U64(h.nbuckets, (uint64_t)(edges[i].m - edges[i].s + 1) << edges[i].s);
        CHECK_EQ_U64(h.count, 0);
        rs_hist_free(&h);
        rs_hist_free(&h);
    }

    rs_hist_window w;
    CHECK_EQ_INT(rs_hist_window_init(&w, 0, 44, 4, 100), BAD(RS_HGF_SUB_BITS));
    rs_hist_window_free(&w);
    CHECK_EQ_INT(rs_hist_window_init(&w, 11, 44, 4, 100), BAD(RS_HGF_SUB_BITS));
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 7, 4, 100), BAD(RS_HGF_MAX_BITS));
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 64, 4, 100), BAD(RS_HGF_MAX_BITS));
    const uint64_t bad_nslots[] = {0, 65, 1000, P2(32) + 4, UINT64_MAX};
    for (size_t i = 0; i < NELEM(bad_nslots); i++) {
        CHECK_EQ_INT(rs_hist_window_init(&w, 7, 44, bad_nslots[i], 100), BAD(RS_HGF_NSLOTS));
        CHECK(w.slots == NULL && w.block == NULL);
        rs_hist_window_free(&w);
    }
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 44, 4, 0), BAD(RS_HGF_SLOT_NS));
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 44, 0, 0), BAD(RS_HGF_NSLOTS)); /* first bad */
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 99, 0, 0), BAD(RS_HGF_MAX_BITS));
    rs_hist_window_free(&w);
    const struct { int s, m; uint64_t n, ns; } wedges[] = {
        {1, 2, 1, 1}, {10, 63, 64, 1}, {7, 44, 64, UINT64_MAX}, {7, 44, 1, UINT64_MAX}};
    for (size_t i = 0; i < NELEM(wedges); i++) {
        CHECK_EQ_INT(rs_hist_window_init(&w, wedges[i].s, wedges[i].m, wedges[i].n, wedges[i].ns),
                     RS_OK);
        CHECK_EQ_U64(w.nslots, wedges[i].n);
        CHECK_EQ_U64(rs_hist_window_count(&w, 0), 0);
        rs_hist_window_free(&w);
        rs_hist_window_free(&w);
    }
}

static int alloc_budget; /* allocations allowed before failing */
static void *limited_alloc(size_t n) { return alloc_budget-- > 0 ? malloc(n) : NULL; }

/* A failed allocation gives RS_ENOMEM, leaks nothing (LeakSanitizer) and leaves free safe. */
static void test_init_enomem(void) {
    rs_hist h;
    rs_hist_window w;
    rs_set_allocator(limited_alloc, NULL);
    alloc_budget = 0;
    CHECK_EQ_INT(rs_hist_init(&h, 7, 44), RS_ENOMEM);
    rs_hist_free(&h);
    for (int budget = 0; budget < 2; budget++) {
        alloc_budget = budget;
        CHECK_EQ_INT(rs_hist_window_init(&w, 7, 44, 8, 1000), RS_ENOMEM);
        CHECK(w.slots == NULL && w.block == NULL);
        rs_hist_window_free(&w);
    }
    alloc_budget = 2;
    CHECK_EQ_INT(rs_hist_window_init(&w, 7, 44, 8, 1000), RS_OK);
    rs_hist_window_free(&w);
    rs_set_allocator(NULL, NULL);
}

/* Defaults: 4864 buckets = 38,912 bytes, limit 2^44; the largest config is 442,368 bytes. */
static void test_memory_defaults(void) {
    rs_hist h;
    init_ok(&h, RS_HIST_DEFAULT_SUB_BITS, RS_HIST_DEFAULT_MAX_BITS);
    CHECK_EQ_U64(h.nbuckets, 4864);
    CHECK_EQ_U64(h.nbuckets * sizeof(uint64_t), 38912);
    CHECK_EQ_U64(h.limit, P2(44));
    CHECK_EQ_U64(rs_hist_min(&h), 0);
    CHECK_EQ_U64(rs_hist_max(&h), 0);
    CHECK(rs_hist_mean(&h) == 0.0);
    rs_hist_free(&h);
    init_ok(&h, 10, 63);
    CHECK_EQ_U64(h.nbuckets * sizeof(uint64_t), 442368);
    rs_hist_free(&h);
}

/* ---- bucket layout ------------------------------------------------------ */

/* The portable msb fallback agrees with the builtin on every power of two, +-1, and random values. */
static void test_msb_generic(void) {
    int bad = 0;
    for (unsigned k = 0; k < 64; k++) {
        const uint64_t vs[] = {P2(k), P2(k) - 1u, P2(k) + 1u, P2(k) | (P2(k) - 1u)};
        for (size_t i = 0; i < NELEM(vs); i++) {
            if (vs[i] && rs_hist_msb_generic(vs[i]) != 63u - (unsigned)__builtin_clzll(vs[i])) {
                bad++;
            }
        }
        CHECK_EQ_U64(rs_hist_msb_generic(P2(k)), k);
    }
    for (int i = 0; i < 100000; i++) {
        uint64_t v = rnd() >> rnd_below(64);
        if (v && rs_hist_msb_generic(v) != 63u - (unsigned)__builtin_clzll(v)) {
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_U64(rs_hist_msb_generic(1), 0);
    CHECK_EQ_U64(rs_hist_msb_generic(UINT64_MAX), 63);
}

/* For sub_bits 1..10 and several max_bits, the buckets tile [0, 2^max_bits) without gap or
 * overlap, each bucket's bounds map back to it, and widths are 1 below 2^(s+1), else 2^(msb-s). */
static void test_layout_tiles_range(void) {
    for (int s = 1; s <= 10; s++) {
        const int ms[] = {s + 1, s + 2, 20, 44, 63};
        for (size_t j = 0; j < NELEM(ms); j++) {
            if (ms[j] <= s || (j > 0 && ms[j] <= ms[j - 1])) {
                continue;
            }
            rs_hist h;
            init_ok(&h, s, ms[j]);
            long bad = 0;
            uint64_t prev_hi = 0;
            for (uint32_t i = 0; i < h.nbuckets; i++) {
                uint64_t lo, hi;
                rs_hist_bucket_bounds(&h, i, &lo, &hi);
                uint64_t width = hi - lo + 1u;
                uint64_t want = lo < P2(s + 1) ? 1u : P2(63u - (unsigned)__builtin_clzll(lo) - (unsigned)s);
                bad += (i == 0 ? lo != 0 : lo != prev_hi + 1u);
                bad += rs_hist_index(&h, lo) != i || rs_hist_index(&h, hi) != i;
                bad += width != want;
                bad += lo >= P2(s + 1) && width > (lo >> s); /* width / lo <= 2^-s */
                prev_hi = hi;
            }
            CHECK_EQ_INT(bad, 0);
            CHECK_EQ_U64(prev_hi, P2(ms[j]) - 1u);
            /* an index past the end reads as the top bucket */
            uint64_t lo1, hi1, lo2, hi2;
            rs_hist_bucket_bounds(&h, h.nbuckets - 1, &lo1, &hi1);
            rs_hist_bucket_bounds(&h, UINT32_MAX, &lo2, &hi2);
            CHECK(lo1 == lo2 && hi1 == hi2);
            rs_hist_free(&h);
        }
    }
}

/* Every power of two 2^k and 2^k +- 1, for sub_bits 1..10 (max_bits 63 and 44): index, bounds. */
static void test_power_of_two_boundaries(void) {
    const int ms[] = {63, 44};
    for (int s = 1; s <= 10; s++) {
        for (size_t j = 0; j < NELEM(ms); j++) {
            const int m = ms[j];
            rs_hist h;
            init_ok(&h, s, m);
            uint32_t top = h.nbuckets - 1;
            for (int k = 1; k < m; k++) {
                uint64_t p = P2(k), lo, hi;
                uint32_t ip = rs_hist_index(&h, p);
                if (k <= s) { /* exact region: index == value */
                    CHECK_EQ_U64(ip, p);
                    CHECK_EQ_U64(rs_hist_index(&h, p - 1u), p - 1u);
                    CHECK_EQ_U64(rs_hist_index(&h, p + 1u), p + 1u);
                } else {
                    CHECK_EQ_U64(ip, (uint64_t)(k - s + 1) << s);
                    rs_hist_bucket_bounds(&h, ip, &lo, &hi);
                    CHECK_EQ_U64(lo, p);
                    CHECK_EQ_U64(hi, p + P2(k - s) - 1u);
                    CHECK_EQ_U64(rs_hist_index(&h, p + 1u), ip); /* width >= 2 */
                    CHECK_EQ_U64(rs_hist_index(&h, p - 1u), ip - 1u);
                    rs_hist_bucket_bounds(&h, ip - 1u, &lo, &hi);
                    CHECK_EQ_U64(hi, p - 1u);
                    CHECK_EQ_U64(hi - lo + 1u, k - 1 <= s ? 1u : P2(k - 1 - s));
                }
            }
            /* the top of the range and beyond */
            CHECK_EQ_U64(rs_hist_index(&h, P2(m) - 1u), top);
            CHECK_EQ_U64(rs_hist_index(&h, P2(m)), top);
            CHECK_EQ_U64(rs_hist_index(&h, P2(m) + 1u), top);
            CHECK_EQ_U64(rs_hist_index(&h, UINT64_MAX), top);
            CHECK_EQ_U64(rs_hist_index(&h, 0), 0);
            CHECK_EQ_U64(rs_hist_index(&h, 1), 1);
            rs_hist_free(&h);
        }
    }
}

/* ---- rank --------------------------------------------------------------- */

/* q = 0, 1, tiny, NaN and out-of-range q; counts 0, 1, 2; hand-picked decimals; huge counts. */
static void test_rank_edges(void) {
    CHECK_EQ_U64(rs_hist_rank(0.5, 0), 0);
    CHECK_EQ_U64(rs_hist_rank(1.0, 0), 0);
    const uint64_t counts[] = {1, 2, 3, 1000, P2(53), P2(63), UINT64_MAX};
    for (size_t i = 0; i < NELEM(counts); i++) {
        uint64_t n = counts[i];
        CHECK_EQ_U64(rs_hist_rank(0.0, n), 1);
        CHECK_EQ_U64(rs_hist_rank(-0.0, n), 1);
        CHECK_EQ_U64(rs_hist_rank(-1.0, n), 1);
        CHECK_EQ_U64(rs_hist_rank(NAN, n), 1);
        CHECK_EQ_U64(rs_hist_rank(-INFINITY, n), 1);
        CHECK_EQ_U64(rs_hist_rank(4.9e-324, n), 1); /* smallest subnormal */
        CHECK_EQ_U64(rs_hist_rank(1e-300, n), 1);
        CHECK_EQ_U64(rs_hist_rank(0x1p-65, n), 1);
        CHECK_EQ_U64(rs_hist_rank(1.0, n), n);
        CHECK_EQ_U64(rs_hist_rank(1.5, n), n);
        CHECK_EQ_U64(rs_hist_rank(INFINITY, n), n);
        CHECK(rs_hist_rank(nextafter(1.0, 0.0), n) <= n);
    }
    /* count 1: every q is rank 1; count 2: q <= 1/2 is rank 1, above is rank 2 */
    CHECK_EQ_U64(rs_hist_rank(0.5, 1), 1);
    CHECK_EQ_U64(rs_hist_rank(0.999, 1), 1);
    CHECK_EQ_U64(rs_hist_rank(0.5, 2), 1);
    CHECK_EQ_U64(rs_hist_rank(0.5000001, 2), 2);
    CHECK_EQ_U64(rs_hist_rank(0.4999999, 2), 1);
    CHECK_EQ_U64(rs_hist_rank(1e-9, 2), 1);
    /* decimals whose double is slightly above the decimal still give the intended rank */
    CHECK_EQ_U64(rs_hist_rank(0.9, 10), 9);
    CHECK_EQ_U64(rs_hist_rank(0.07, 100), 7);
    CHECK_EQ_U64(rs_hist_rank(0.99, 100), 99);
    CHECK_EQ_U64(rs_hist_rank(0.999, 1000), 999);
    CHECK_EQ_U64(rs_hist_rank(0.1, 10), 1);
    CHECK_EQ_U64(rs_hist_rank(0.3, 10), 3);
    CHECK_EQ_U64(rs_hist_rank(1.0 / 3.0, 3), 1);
    CHECK_EQ_U64(rs_hist_rank(2.0 / 3.0, 3), 2);
    CHECK_EQ_U64(rs_hist_rank(0.5, 3), 2);
    CHECK_EQ_U64(rs_hist_rank(0.99, 101), 100);  /* 99.99 -> 100 */
    CHECK_EQ_U64(rs_hist_rank(0.5 + 1e-9, 1000), 501);
    /* large counts: exact where q*count is exact; no double rounding */
    CHECK_EQ_U64(rs_hist_rank(0.5, P2(63)), P2(62));
    CHECK_EQ_U64(rs_hist_rank(0.25, UINT64_MAX - 3u), (UINT64_MAX - 3u) / 4u);
    CHECK_EQ_U64(rs_hist_rank(nextafter(1.0, 0.0), P2(53)), P2(53) - 1u);
    CHECK_EQ_U64(rs_hist_rank(0.75, P2(50) + 4u), 3u * P2(48) + 3u);
    CHECK_EQ_U64(rs_hist_rank(0.75, P2(50) + 3u), 3u * P2(48) + 3u); /* ceil(..+2.25) */
    /* q*count >= 2^52 and not an integer: floor (documented) */
    CHECK_EQ_U64(rs_hist_rank(0.5, UINT64_MAX), P2(63) - 1u);
}

/* rank((double)k / n, n) == max(1, k) for every k <= n <= 1500 and for random counts up to 2^50. */
static void test_rank_of_fractions(void) {
    long bad = 0;
    for (uint64_t n = 1; n <= 1500; n++) {
        for (uint64_t k = 0; k <= n; k++) {
            bad += rs_hist_rank((double)k / (double)n, n) != (k ? k : 1u);
        }
    }
    CHECK_EQ_INT(bad, 0);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t n = 1u + rnd_below(P2(1 + rnd_below(50)));
        uint64_t k = rnd_below(n + 1u);
        bad += rs_hist_rank((double)k / (double)n, n) != (k ? k : 1u);
        /* a q clearly between two ranks gives the upper one */
        if (k < n && n < P2(40)) {
            double q = ((double)k + 0.5) / (double)n;
            bad += rs_hist_rank(q, n) != k + 1u;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* monotone in q, and never 0 or above count */
    bad = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t n = 1u + rnd_below(P2(1 + rnd_below(63)));
        uint64_t prev = 1;
        for (int j = 0; j <= 1000; j++) {
            uint64_t r = rs_hist_rank((double)j / 1000.0, n);
            bad += r < prev || r < 1 || r > n;
            prev = r;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---- quantiles ---------------------------------------------------------- */

/* Values below 2^(s+1) are exact: every rank of 0..2^(s+1)-1 comes back exactly. */
static void test_exact_small_values(void) {
    for (int s = 1; s <= 10; s++) {
        rs_hist h;
        init_ok(&h, s, s + 3);
        uint64_t n = P2(s + 1);
        for (uint64_t v = n; v-- > 0;) { /* descending: order must not matter */
            rs_hist_record(&h, v);
        }
        long bad = 0;
        for (uint64_t r = 1; r <= n; r++) {
            bad += rs_hist_quantile(&h, (double)r / (double)n) != r - 1u;
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_U64(h.count, n);
        CHECK_EQ_U64(rs_hist_min(&h), 0);
        CHECK_EQ_U64(rs_hist_max(&h), n - 1u);
        CHECK_NEAR(rs_hist_mean(&h), (double)(n - 1u) / 2.0, 0.0);
        CHECK_EQ_U64(h.clamped, 0);
        rs_hist_free(&h);
    }
}

/* Empty, one and two samples; q out of range; clamping of the midpoint into [min, max]. */
static void test_quantile_small_counts(void) {
    rs_hist h;
    init_ok(&h, 7, 44);
    for (size_t i = 0; i < NELEM(QS); i++) {
        CHECK_EQ_U64(rs_hist_quantile(&h, QS[i]), 0);
    }
    rs_hist_record(&h, 123456789u);
    for (size_t i = 0; i < NELEM(QS); i++) {
        CHECK_EQ_U64(rs_hist_quantile(&h, QS[i]), 123456789u);
    }
    CHECK_EQ_U64(rs_hist_quantile(&h, NAN), 123456789u);
    rs_hist_reset(&h);
    /* 1000 and 1003 share the bucket [1000, 1003] (s = 7) */
    rs_hist_record(&h, 1003);
    rs_hist_record(&h, 1000);
    CHECK_EQ_U64(rs_hist_index(&h, 1000), rs_hist_index(&h, 1003));
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.0), 1000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 1e-300), 1000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), 1000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5000001), 1003);
    CHECK_EQ_U64(rs_hist_quantile(&h, 1.0), 1003);
    CHECK_EQ_U64(rs_hist_quantile(&h, -3.0), 1000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 7.0), 1003);
    /* three samples: the middle rank reports the bucket midpoint 1001 */
    rs_hist_record(&h, 1002);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), 1001);
    /* midpoint below min is clamped up, above max clamped down */
    rs_hist_reset(&h);
    rs_hist_record_n(&h, 1002, 2);
    rs_hist_record(&h, 1003);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), 1002);
    rs_hist_reset(&h);
    rs_hist_record(&h, 1000);
    rs_hist_record_n(&h, 1001, 2);
    rs_hist_record(&h, 2000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), 1001);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.75), 1001);
    rs_hist_reset(&h);
    rs_hist_record(&h, 5);
    rs_hist_record_n(&h, 1000, 2);
    rs_hist_record(&h, 1000);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), 1000); /* midpoint 1001 > max 1000 */
    rs_hist_free(&h);
}

/* Values >= 2^max_bits land in the top bucket and are counted as clamped; min/max stay exact. */
static void test_clamped_values(void) {
    rs_hist h;
    init_ok(&h, 7, 20);
    rs_hist_record(&h, 5);
    rs_hist_record(&h, P2(20) - 1u);
    rs_hist_record(&h, P2(20));
    rs_hist_record(&h, UINT64_MAX);
    CHECK_EQ_U64(h.count, 4);
    CHECK_EQ_U64(h.clamped, 2);
    CHECK_EQ_U64(h.counts[h.nbuckets - 1], 3);
    CHECK_EQ_U64(rs_hist_min(&h), 5);
    CHECK_EQ_U64(rs_hist_max(&h), UINT64_MAX);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.0), 5);
    CHECK_EQ_U64(rs_hist_quantile(&h, 1.0), UINT64_MAX);
    uint64_t mid = P2(20) - P2(12) + (P2(12) - 1u) / 2u; /* top bucket [2^20 - 2^12, 2^20 - 1] */
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.5), mid);
    CHECK_EQ_U64(rs_hist_quantile(&h, 0.75), mid);
    double want = (5.0 + (double)(P2(20) - 1u) + (double)P2(20) + (double)UINT64_MAX) / 4.0;
    CHECK_NEAR(rs_hist_mean(&h), want, want * 1e-15);
    rs_hist_record_n(&h, P2(40), 3);
    CHECK_EQ_U64(h.clamped, 5);
    CHECK_EQ_U64(h.counts[h.nbuckets - 1], 6);
    /* max_bits 63: the top bucket ends at 2^63 - 1 */
    rs_hist g;
    init_ok(&g, 10, 63);
    rs_hist_record(&g, P2(63) - 1u);
    CHECK_EQ_U64(g.clamped, 0);
    rs_hist_record(&g, P2(63));
    CHECK_EQ_U64(g.clamped, 1);
    CHECK_EQ_U64(g.counts[g.nbuckets - 1], 2);
    CHECK_EQ_U64(rs_hist_quantile(&g, 1.0), P2(63));
    rs_hist_free(&g);
    rs_hist_free(&h);
}

/* Log-uniform samples: every quantile is in the exact nearest-rank sample's bucket and within
 * the documented relative error 2^-(s+1) (<= 1 % for s >= 6). */
static void test_random_vs_exact(void) {
    const struct { int s, m; } cfgs[] = {{7, 44}, {6, 40}, {10, 63}, {3, 30}, {1, 20}, {7, 63}};
    const size_t sizes[] = {1, 2, 3, 10, 1000, 30000};
    enum { NQ_RANDOM = 300 };
    for (size_t c = 0; c < NELEM(cfgs); c++) {
        const int s = cfgs[c].s;
        const double bound = ldexp(1.0, -(s + 1));
        for (size_t z = 0; z < NELEM(sizes); z++) {
            size_t n = sizes[z];
            uint64_t *xs = malloc(n * sizeof(uint64_t));
            rs_hist h;
            init_ok(&h, s, cfgs[c].m);
            for (size_t i = 0; i < n; i++) {
                xs[i] = rnd_log((unsigned)cfgs[c].m);
                rs_hist_record(&h, xs[i]);
            }
            qsort(xs, n, sizeof(uint64_t), cmp_u64);
            long bad_bucket = 0, bad_bound = 0, bad_pct = 0, bad_mono = 0;
            double worst = 0.0;
            uint64_t prev = 0;
            for (int i = 0; i < (int)NELEM(QS) + NQ_RANDOM; i++) {
                double q = i < (int)NELEM(QS) ? QS[i] : rnd_unit();
                uint64_t x = xs[rs_hist_rank(q, n) - 1u];
                uint64_t r = rs_hist_quantile(&h, q);
                bad_bucket += rs_hist_index(&h, r) != rs_hist_index(&h, x);
                double err = x ? fabs((double)r - (double)x) / (double)x : (double)(r != x);
                worst = err > worst ? err : worst;
                bad_bound += !(err < bound);
                bad_pct += s >= 6 && !(err <= 0.01);
                if (i < (int)NELEM(QS)) { /* QS is ascending */
                    bad_mono += r < prev;
                    prev = r;
                }
            }
            CHECK_EQ_INT(bad_bucket, 0);
            CHECK_EQ_INT(bad_bound, 0);
            CHECK_EQ_INT(bad_pct, 0);
            CHECK_EQ_INT(bad_mono, 0);
            CHECK(worst < bound);
            CHECK_EQ_U64(rs_hist_quantile(&h, 0.0), xs[0]);
            CHECK_EQ_U64(rs_hist_quantile(&h, 1.0), xs[n - 1]);
            CHECK_EQ_U64(rs_hist_min(&h), xs[0]);
            CHECK_EQ_U64(rs_hist_max(&h), xs[n - 1]);
            rs_hist_free(&h);
            free(xs);
        }
    }
}

/* The error bound is tight-ish: at the default, the worst case over many buckets is near 2^-8. */
static void test_error_bound_worst_case(void) {
    rs_hist h;
    init_ok(&h, 7, 44);
    double worst = 0.0;
    long bad = 0;
    for (int k = 8; k < 44; k++) {
        for (uint64_t sub = 0; sub < 128; sub += 17) {
            uint64_t lo = (128u + sub) << (k - 7), w = P2(k - 7);
            const uint64_t xs[] = {lo, lo + w - 1u, lo + w / 2u};
            for (size_t i = 0; i < NELEM(xs); i++) {
                /* three samples: rank 2 is x, bracketed by far-away min and max */
                rs_hist_reset(&h);
                rs_hist_record(&h, 0);
                rs_hist_record(&h, xs[i]);
                rs_hist_record(&h, UINT64_MAX);
                uint64_t r = rs_hist_quantile(&h, 0.5);
                double err = fabs((double)r - (double)xs[i]) / (double)xs[i];
                worst = err > worst ? err : worst;
                bad += !(err < 1.0 / 256.0);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(worst > 0.9 / 256.0); /* the documented bound is not loose */
    rs_hist_free(&h);
}

/* ---- record_n, merge, reset --------------------------------------------- */

/* record_n(v, n) equals n records of v; n = 0 changes nothing, even on an empty histogram. */
static void test_record_n(void) {
    rs_hist a, b;
    init_ok(&a, 7, 30);
    init_ok(&b, 7, 30);
    rs_hist_record_n(&a, 77, 0);
    CHECK_EQ_U64(a.count, 0);
    CHECK_EQ_U64(a.min, UINT64_MAX);
    CHECK_EQ_U64(rs_hist_min(&a), 0);
    CHECK_EQ_U64(rs_hist_max(&a), 0);
    for (int i = 0; i < 500; i++) {
        uint64_t v = rnd_log(31), n = rnd_below(20);
        rs_hist_record_n(&a, v, n);
        for (uint64_t j = 0; j < n; j++) {
            rs_hist_record(&b, v);
        }
    }
    CHECK(same_hist(&a, &b));
    CHECK(a.sum == b.sum); /* values < 2^31, counts < 2^14: every partial sum is exact */
    for (size_t i = 0; i < NELEM(QS); i++) {
        CHECK_EQ_U64(rs_hist_quantile(&a, QS[i]), rs_hist_quantile(&b, QS[i]));
    }
    rs_hist_record_n(&a, 9, UINT64_C(1) << 40);
    CHECK_EQ_U64(a.count, b.count + P2(40));
    rs_hist_free(&a);
    rs_hist_free(&b);
}

/* merge(a, b) equals recording both streams into one histogram; empty sides; self-merge. */
static void test_merge_equals_both_streams(void) {
    rs_hist a, b, both;
    init_ok(&a, 7, 44);
    init_ok(&b, 7, 44);
    init_ok(&both, 7, 44);
    CHECK_EQ_INT(rs_hist_merge(&a, &b), RS_OK); /* empty into empty */
    CHECK_EQ_U64(a.count, 0);
    CHECK_EQ_U64(a.min, UINT64_MAX);
    for (int i = 0; i < 20000; i++) {
        uint64_t v = rnd_log(46); /* a few clamped */
        rs_hist *dst = (rnd() & 3) ? &a : &b;
        rs_hist_record(dst, v);
        rs_hist_record(&both, v);
    }
    rs_hist_record(&b, 0);
    rs_hist_record(&both, 0);
    double sum = a.sum + b.sum;
    CHECK_EQ_INT(rs_hist_merge(&a, &b), RS_OK);
    CHECK(same_hist(&a, &both));
    CHECK(a.clamped > 0);
    CHECK(a.sum == sum);
    CHECK_NEAR(rs_hist_mean(&a), rs_hist_mean(&both), 1e-12 * rs_hist_mean(&both));
    long bad = 0;
    for (int i = 0; i < 1000; i++) {
        double q = rnd_unit();
        bad += rs_hist_quantile(&a, q) != rs_hist_quantile(&both, q);
    }
    CHECK_EQ_INT(bad, 0);
    /* merging an empty histogram changes nothing; merging into an empty one copies */
    rs_hist empty;
    init_ok(&empty, 7, 44);
    CHECK_EQ_INT(rs_hist_merge(&a, &empty), RS_OK);
    CHECK(same_hist(&a, &both));
    CHECK_EQ_INT(rs_hist_merge(&empty, &a), RS_OK);
    CHECK(same_hist(&empty, &both));
    /* self-merge doubles every count */
    CHECK_EQ_INT(rs_hist_merge(&empty, &empty), RS_OK);
    CHECK_EQ_U64(empty.count, 2u * both.count);
    CHECK_EQ_U64(empty.clamped, 2u * both.clamped);
    CHECK_EQ_U64(rs_hist_min(&empty), rs_hist_min(&both));
    CHECK_EQ_U64(empty.counts[rs_hist_index(&both, 0)], 2u * both.counts[rs_hist_index(&both, 0)]);
    rs_hist_free(&empty);
    rs_hist_free(&a);
    rs_hist_free(&b);
    rs_hist_free(&both);
}

/* merge of different configs is refused with RS_EINVAL and leaves dst unchanged. */
static void test_merge_config_mismatch(void) {
    rs_hist dst, copy, other;
    init_ok(&dst, 7, 44);
    init_ok(&copy, 7, 44);
    for (int i = 0; i < 100; i++) {
        uint64_t v = rnd_log(44);
        rs_hist_record(&dst, v);
        rs_hist_record(&copy, v);
    }
    const struct { int s, m; } others[] = {{7, 45}, {6, 44}, {8, 43}, {1, 2}};
    for (size_t i = 0; i < NELEM(others); i++) {
        init_ok(&other, others[i].s, others[i].m);
        rs_hist_record(&other, 3);
        CHECK_EQ_INT(rs_hist_merge(&dst, &other), RS_EINVAL);
        CHECK(same_hist(&dst, &copy));
        CHECK(dst.sum == copy.sum);
        CHECK_EQ_INT(rs_hist_merge(&other, &dst), RS_EINVAL);
        CHECK_EQ_U64(other.count, 1);
        rs_hist_free(&other);
    }
    rs_hist_free(&dst);
    rs_hist_free(&copy);
}

/* reset empties everything and the histogram works as new. */
static void test_reset_and_mean(void) {
    rs_hist h, fresh;
    init_ok(&h, 7, 44);
    init_ok(&fresh, 7, 44);
    for (int i = 0; i < 1000; i++) {
        rs_hist_record(&h, rnd());
    }
    rs_hist_reset(&h);
    CHECK(same_hist(&h, &fresh));
    CHECK(h.sum == 0.0);
    CHECK_EQ_U64(h.min, UINT64_MAX);
    for (uint64_t v = 1; v <= 4; v++) {
        rs_hist_record(&h, v);
    }
    CHECK_NEAR(rs_hist_mean(&h), 2.5, 0.0);
    rs_hist_record_n(&h, 1000000, 4);
    CHECK_NEAR(rs_hist_mean(&h), (10.0 + 4e6) / 8.0, 0.0);
    rs_hist_free(&h);
    rs_hist_free(&fresh);
}

/* ---- window ------------------------------------------------------------- */

/* A sample recorded in epoch e is seen exactly while now < (e + nslots) * slot_ns. */
static void test_window_ages_out_exactly(void) {
    rs_hist_window w;
    winit_ok(&w, 7, 44, 4, 100);
    rs_hist_window_record(&w, 1000, 7);  /* epoch 10 */
    rs_hist_window_record(&w, 1099, 9);  /* epoch 10 */
    rs_hist_window_record(&w, 1100, 11); /* epoch 11 */
    CHECK_EQ_U64(rs_hist_window_count(&w, 1000), 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1399), 3);
    CHECK_EQ_U64(rs_hist_window_min(&w, 1399), 7);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1400), 1); /* 1000 + nslots * slot_ns */
    CHECK_EQ_U64(rs_hist_window_min(&w, 1400), 11);
    CHECK_EQ_U64(rs_hist_window_max(&w, 1400), 11);
    CHECK_EQ_U64(rs_hist_window_quantile(&w, 1400, 0.5), 11);
    CHECK_NEAR(rs_hist_window_mean(&w, 1400), 11.0, 0.0);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1499), 1);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1500), 0);
    CHECK_EQ_U64(rs_hist_window_min(&w, 1500), 0);
    CHECK_EQ_U64(rs_hist_window_max(&w, 1500), 0);
    CHECK(rs_hist_window_mean(&w, 1500) == 0.0);
    CHECK_EQ_U64(rs_hist_window_quantile(&w, 1500, 0.5), 0);
    rs_hist_window_free(&w);

    /* many shapes, random record times: the edge is exact */
    const uint64_t nslots[] = {1, 2, 5, 64};
    const uint64_t widths[] = {1, 7, 1000, RS_NS_PER_SEC};
    long bad = 0;
    for (size_t i = 0; i < NELEM(nslots); i++) {
        for (size_t j = 0; j < NELEM(widths); j++) {
            for (int r = 0; r < 20; r++) {
                winit_ok(&w, 7, 44, nslots[i], widths[j]);
                uint64_t t = rnd_below(P2(50)), e = t / widths[j];
                uint64_t end = (e + nslots[i]) * widths[j];
                rs_hist_window_record(&w, t, 42);
                bad += rs_hist_window_count(&w, t) != 1;
                bad += rs_hist_window_count(&w, end - 1u) != 1;
                bad += rs_hist_window_count(&w, end) != 0;
                bad += rs_hist_window_count(&w, end + widths[j] * 100u) != 0;
                rs_hist_window_free(&w);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* A stale slot keeps its old data until a record moves time into it; queries skip it. */
static void test_window_lazy_reset(void) {
    rs_hist_window w;
    winit_ok(&w, 7, 44, 3, 10);
    rs_hist_window_record(&w, 0, 1);  /* epoch 0, slot 0 */
    rs_hist_window_record(&w, 5, 2);  /* epoch 0, slot 0 */
    rs_hist_window_record(&w, 10, 3); /* epoch 1, slot 1 */
    CHECK_EQ_U64(rs_hist_window_count(&w, 29), 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 30), 1); /* epoch 0 aged out ... */
    CHECK_EQ_U64(w.slots[0].count, 2);              /* ... but is still in memory */
    CHECK_EQ_U64(w.epochs[0], 0);
    rs_hist_window_record(&w, 30, 4);               /* epoch 3 reuses slot 0: cleared first */
    CHECK_EQ_U64(w.slots[0].count, 1);
    CHECK_EQ_U64(w.epochs[0], 3);
    CHECK_EQ_U64(w.slots[0].counts[1], 0);
    CHECK_EQ_U64(w.slots[0].counts[2], 0);
    CHECK_EQ_U64(w.slots[0].counts[4], 1);
    CHECK_EQ_U64(w.slots[0].min, 4);
    CHECK_EQ_U64(rs_hist_window_count(&w, 30), 2);
    CHECK_EQ_U64(rs_hist_window_min(&w, 30), 3);
    CHECK_EQ_U64(rs_hist_window_max(&w, 30), 4);
    CHECK_EQ_U64(rs_hist_window_count(&w, 40), 1);
    /* the same slot's epoch is recorded into twice: no clearing in between */
    rs_hist_window_record(&w, 39, 5);
    CHECK_EQ_U64(w.slots[0].count, 2);
    rs_hist_window_free(&w);
}

/* Huge jumps forward, the largest timestamps, and the widest slots are all well defined. */
static void test_window_large_jumps(void) {
    rs_hist_window w;
    winit_ok(&w, 7, 44, 8, 1000);
    for (uint64_t t = 0; t < 8000; t += 500) {
        rs_hist_window_record(&w, t, t + 1u);
    }
    CHECK_EQ_U64(rs_hist_window_count(&w, 7999), 16);
    CHECK_EQ_U64(rs_hist_window_count(&w, P2(62)), 0);
    rs_hist_window_record(&w, P2(62), 5);
    CHECK_EQ_U64(rs_hist_window_count(&w, P2(62)), 1);
    CHECK_EQ_U64(rs_hist_window_count(&w, 0), 1); /* an old now reads at the head */
    CHECK_EQ_U64(rs_hist_window_count(&w, UINT64_MAX), 0);
    rs_hist_window_record(&w, UINT64_MAX, 6);
    CHECK_EQ_U64(rs_hist_window_count(&w, UINT64_MAX), 1);
    CHECK_EQ_U64(rs_hist_window_quantile(&w, UINT64_MAX, 1.0), 6);
    rs_hist_window_free(&w);

    winit_ok(&w, 7, 44, 64, 1);
    CHECK_EQ_U64(w.head_end, 1);
    rs_hist_window_record(&w, UINT64_MAX - 63u, 1);
    CHECK_EQ_U64(w.head_end, UINT64_MAX - 62u);
    rs_hist_window_record(&w, UINT64_MAX, 2);
    CHECK_EQ_U64(w.head_end, UINT64_MAX); /* the last epoch: saturated, not wrapped */
    CHECK_EQ_U64(rs_hist_window_count(&w, UINT64_MAX), 2);
    CHECK_EQ_U64(rs_hist_window_count(&w, 0), 2);
    rs_hist_window_free(&w);

    winit_ok(&w, 7, 44, 3, 7); /* UINT64_MAX % 7 == 1: the last epoch starts at UINT64_MAX - 1 */
    rs_hist_window_record(&w, UINT64_MAX - 8u, 1); /* the epoch before */
    CHECK_EQ_U64(w.head, UINT64_MAX / 7u - 1u);
    CHECK_EQ_U64(w.head_end, UINT64_MAX - 1u);
    rs_hist_window_record(&w, UINT64_MAX - 1u, 2); /* the last epoch: (e + 1) * 7 would wrap */
    CHECK_EQ_U64(w.head, UINT64_MAX / 7u);
    CHECK_EQ_U64(w.head_end, UINT64_MAX);
    rs_hist_window_record(&w, UINT64_MAX, 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, UINT64_MAX), 3);
    rs_hist_window_free(&w);

    winit_ok(&w, 7, 44, 2, UINT64_MAX); /* epoch 0 for every t < UINT64_MAX */
    CHECK_EQ_U64(w.head_end, UINT64_MAX);
    rs_hist_window_record(&w, 0, 1);
    rs_hist_window_record(&w, UINT64_MAX - 1u, 2);
    CHECK_EQ_U64(rs_hist_window_count(&w, UINT64_MAX), 2); /* epoch 1: epoch 0 still live */
    rs_hist_window_free(&w);
}

/* Time going backwards: the record lands in the newest slot and a query reads at the newest epoch. */
static void test_window_time_backwards(void) {
    rs_hist_window w;
    winit_ok(&w, 7, 44, 4, 100);
    rs_hist_window_record(&w, 1000, 5); /* epoch 10 */
    CHECK_EQ_U64(w.head_end, 1100);
    rs_hist_window_record(&w, 0, 6);    /* back to epoch 0: joins epoch 10 */
    rs_hist_window_record(&w, 650, 7);  /* epoch 6: joins epoch 10 too */
    CHECK_EQ_U64(w.head, 10);
    CHECK_EQ_U64(w.slots[10 % 4].count, 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 0), 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1000), 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1399), 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1400), 0); /* all three age out together */
    CHECK_EQ_U64(rs_hist_window_count(&w, 900), 3);  /* a query in the past sees the head */
    rs_hist_window_record_n(&w, 99999, 1, 0);        /* n = 0: not even time moves */
    CHECK_EQ_U64(w.head, 10);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1000), 3);
    rs_hist_window_record(&w, 1200, 8);              /* epoch 12 */
    rs_hist_window_record(&w, 1100, 9);              /* epoch 11 < head 12: joins 12 */
    CHECK_EQ_U64(w.slots[12 % 4].count, 2);
    CHECK_EQ_U64(w.slots[11 % 4].count, 0);
    CHECK_EQ_U64(rs_hist_window_count(&w, 1400), 2);
    rs_hist_window_free(&w);
}

/* One slot: only the current epoch is seen. */
static void test_window_one_slot(void) {
    rs_hist_window w;
    winit_ok(&w, 7, 44, 1, 50);
    rs_hist_window_record(&w, 10, 1);
    rs_hist_window_record(&w, 49, 2);
    CHECK_EQ_U64(rs_hist_window_count(&w, 49), 2);
    CHECK_EQ_U64(rs_hist_window_count(&w, 50), 0);
    rs_hist_window_record(&w, 50, 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 99), 1);
    CHECK_EQ_U64(rs_hist_window_min(&w, 99), 3);
    rs_hist_window_free(&w);
}

/* Random records (small steps, big jumps, steps back) against a fresh histogram of the live
 * samples, kept as (epoch, value) pairs: count, clamped, min, max, quantiles, mean, snapshot. */
static void test_window_random_vs_fresh(void) {
    enum { N = 6000 };
    static uint64_t ep[N], val[N];
    const struct { int s, m; uint64_t nslots, slot_ns; } cfgs[] = {
        {7, 44, 6, 1000}, {3, 20, 1, 10}, {10, 24, 64, 3}, {7, 30, 13, 1000000}, {1, 63, 64, 1}};
    for (size_t c = 0; c < NELEM(cfgs); c++) {
        rs_hist_window w;
        rs_hist fresh, snap;
        winit_ok(&w, cfgs[c].s, cfgs[c].m, cfgs[c].nslots, cfgs[c].slot_ns);
        init_ok(&fresh, cfgs[c].s, cfgs[c].m);
        init_ok(&snap, cfgs[c].s, cfgs[c].m);
        const uint64_t span = cfgs[c].nslots * cfgs[c].slot_ns;
        uint64_t t = 5u * span, head = 0;
        long bad = 0, checks = 0;
        for (int i = 0; i < N; i++) {
            uint64_t r = rnd_below(100);
            if (r < 80) {
                t += rnd_below(span / 8u + 2u);
            } else if (r < 90) {
                t = t > span ? t - rnd_below(span) : t; /* backwards */
            } else if (r < 97) {
                t += rnd_below(2u * span);
            } else {
                t += span * rnd_below(1000);
            }
            uint64_t e = t / cfgs[c].slot_ns;
            head = e > head ? e : head;
            ep[i] = head;
            val[i] = rnd_log(cfgs[c].m + 2 > 64 ? 64u : (unsigned)cfgs[c].m + 2u); /* some clamped */
            rs_hist_window_record(&w, t, val[i]);
            if (i % 97 != 0) {
                continue;
            }
            /* query at t, or a bit later */
            uint64_t now = t + rnd_below(span + cfgs[c].slot_ns);
            uint64_t qe = now / cfgs[c].slot_ns;
            qe = qe > head ? qe : head;
            rs_hist_reset(&fresh);
            for (int k = 0; k <= i; k++) {
                if (qe - ep[k] < cfgs[c].nslots) {
                    rs_hist_record(&fresh, val[k]);
                }
            }
            checks++;
            bad += rs_hist_window_count(&w, now) != fresh.count;
            bad += rs_hist_window_clamped(&w, now) != fresh.clamped;
            bad += rs_hist_window_min(&w, now) != rs_hist_min(&fresh);
            bad += rs_hist_window_max(&w, now) != rs_hist_max(&fresh);
            double m1 = rs_hist_window_mean(&w, now), m2 = rs_hist_mean(&fresh);
            bad += !(fabs(m1 - m2) <= 1e-9 * m2);
            for (size_t k = 0; k < NELEM(QS); k++) {
                bad += rs_hist_window_quantile(&w, now, QS[k]) != rs_hist_quantile(&fresh, QS[k]);
            }
            for (int k = 0; k < 10; k++) {
                double q = rnd_unit();
                bad += rs_hist_window_quantile(&w, now, q) != rs_hist_quantile(&fresh, q);
            }
            rs_hist_record(&snap, 12345); /* snapshot replaces, not adds */
            bad += rs_hist_window_snapshot(&w, now, &snap) != RS_OK;
            bad += !same_hist(&snap, &fresh);
            bad += !(fabs(snap.sum - fresh.sum) <= 1e-9 * fresh.sum);
        }
        CHECK(checks > 50);
        CHECK_EQ_INT(bad, 0);
        rs_hist_window_free(&w);
        rs_hist_free(&fresh);
        rs_hist_free(&snap);
    }
}

/* snapshot into a histogram of another config is refused, dst unchanged; reset empties all. */
static void test_window_snapshot_mismatch_and_reset(void) {
    rs_hist_window w;
    rs_hist dst, copy;
    winit_ok(&w, 7, 44, 4, 100);
    init_ok(&dst, 7, 45);
    init_ok(&copy, 7, 45);
    rs_hist_window_record(&w, 0, 10);
    rs_hist_record(&dst, 99);
    rs_hist_record(&copy, 99);
    CHECK_EQ_INT(rs_hist_window_snapshot(&w, 0, &dst), RS_EINVAL);
    CHECK(same_hist(&dst, &copy));
    rs_hist_free(&dst);
    init_ok(&dst, 6, 44);
    CHECK_EQ_INT(rs_hist_window_snapshot(&w, 0, &dst), RS_EINVAL);
    rs_hist_free(&dst);
    init_ok(&dst, 7, 44);
    rs_hist_record(&dst, 77);
    CHECK_EQ_INT(rs_hist_window_snapshot(&w, 0, &dst), RS_OK);
    CHECK_EQ_U64(dst.count, 1);
    CHECK_EQ_U64(rs_hist_min(&dst), 10);
    CHECK_EQ_INT(rs_hist_window_snapshot(&w, 400, &dst), RS_OK); /* aged out: empty */
    CHECK_EQ_U64(dst.count, 0);
    CHECK_EQ_U64(rs_hist_max(&dst), 0);
    /* reset: empty, and the head is forgotten (epoch 0 is current again) */
    rs_hist_window_record(&w, 100000, 10);
    rs_hist_window_reset(&w);
    CHECK_EQ_U64(w.head, 0);
    CHECK_EQ_U64(rs_hist_window_count(&w, 100000), 0);
    rs_hist_window_record(&w, 0, 3);
    CHECK_EQ_U64(rs_hist_window_count(&w, 0), 1);
    CHECK_EQ_U64(rs_hist_window_count(&w, 399), 1);
    CHECK_EQ_U64(rs_hist_window_count(&w, 400), 0);
    rs_hist_window_record_n(&w, 400, 4, 5);
    CHECK_EQ_U64(rs_hist_window_count(&w, 400), 5);
    CHECK_EQ_U64(rs_hist_window_quantile(&w, 400, 0.5), 4);
    rs_hist_free(&dst);
    rs_hist_free(&copy);
    rs_hist_window_free(&w);
}

int main(void) {
    RUN_TEST(test_field_names_and_ranges);
    RUN_TEST(test_init_each_bad_field);
    RUN_TEST(test_init_enomem);
    RUN_TEST(test_memory_defaults);
    RUN_TEST(test_msb_generic);
    RUN_TEST(test_layout_tiles_range);
    RUN_TEST(test_power_of_two_boundaries);
    RUN_TEST(test_rank_edges);
    RUN_TEST(test_rank_of_fractions);
    RUN_TEST(test_exact_small_values);
    RUN_TEST(test_quantile_small_counts);
    RUN_TEST(test_clamped_values);
    RUN_TEST(test_random_vs_exact);
    RUN_TEST(test_error_bound_worst_case);
    RUN_TEST(test_record_n);
    RUN_TEST(test_merge_equals_both_streams);
    RUN_TEST(test_merge_config_mismatch);
    RUN_TEST(test_reset_and_mean);
    RUN_TEST(test_window_ages_out_exactly);
    RUN_TEST(test_window_lazy_reset);
    RUN_TEST(test_window_large_jumps);
    RUN_TEST(test_window_time_backwards);
    RUN_TEST(test_window_one_slot);
    RUN_TEST(test_window_random_vs_fresh);
    RUN_TEST(test_window_snapshot_mismatch_and_reset);
    return rs_test_summary();
}
