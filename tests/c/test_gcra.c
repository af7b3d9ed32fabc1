/* C unit tests of rs_gcra: validation, exact fractions, extreme settings
 * without overflow, the bound over every window against a brute-force
 * count, waits, and per-key buckets in an rs_dedup set. */
#include <stdlib.h>

#include "rs_gcra.h"
#include "rs_test.h"

static uint64_t state = 88172645463325252ull;
static uint64_t rnd(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void test_validation(void) {
    rs_gcra g;
    CHECK_EQ_INT(rs_gcra_init(&g, 0.0, 1000000000, 1), RS_EFIELD_BASE + RS_GCF_RATE);
    CHECK_EQ_INT(rs_gcra_init(&g, -1.0, 1000000000, 1), RS_EFIELD_BASE + RS_GCF_RATE);
    CHECK_EQ_INT(rs_gcra_init(&g, NAN, 1000000000, 1), RS_EFIELD_BASE + RS_GCF_RATE);
    CHECK_EQ_INT(rs_gcra_init(&g, INFINITY, 1000000000, 1), RS_EFIELD_BASE + RS_GCF_RATE);
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 0, 1), RS_EFIELD_BASE + RS_GCF_PER);
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, 0), RS_EFIELD_BASE + RS_GCF_BURST);
    /* a bucket that would take longer than RS_MAX_SECONDS to fill */
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, UINT64_C(1) << 61),
                 RS_EFIELD_BASE + RS_GCF_BURST);
    CHECK_EQ_INT(rs_gcra_init(&g, 1e-6, UINT64_C(9200000000000000000), 1),
                 RS_EFIELD_BASE + RS_GCF_BURST);
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, UINT64_MAX), RS_EFIELD_BASE + RS_GCF_BURST);
    CHECK_EQ_INT(rs_gcra_init(&g, 3.0, 1000000000, 3), RS_OK);
}

static void test_fractions(void) {
    rs_gcra g;
    CHECK_EQ_INT(rs_gcra_init(&g, 3.0, 1000000000, 3), RS_OK);
    CHECK_EQ_U64(g.a, 1000000000);
    CHECK_EQ_U64(g.b, 3);
    CHECK_EQ_INT(rs_gcra_init(&g, 0.1, 1000000000, 1), RS_OK);
    CHECK_EQ_U64(g.a, 10000000000ull);
    CHECK_EQ_U64(g.b, 1);
    CHECK_EQ_INT(rs_gcra_init(&g, 2.5, 1000000000, 2), RS_OK);
    CHECK_EQ_U64(g.a, 400000000);
    CHECK_EQ_U64(g.b, 1);
    /* 3 per second, burst 3: three at once, then one every 1/3 s: the k-th
     * is due at k / 3 s, rounded up to the ns; a ns earlier it is refused,
     * its wait is that ns, and no rounding accumulates. */
    CHECK_EQ_INT(rs_gcra_init(&g, 3.0, 1000000000, 3), RS_OK);
    int refused = 0;
    for (int i = 0; i < 3; i++) {
        refused += !rs_gcra_take(&g, &g.t_ns, &g.debt, 0, 1);
    }
    for (uint64_t k = 1; k < 30000; k++) {
        uint64_t due = (k * 1000000000ull + 2) / 3;
        refused += rs_gcra_take(&g, &g.t_ns, &g.debt, due - 1, 1);
        refused += rs_gcra_wait_ns(&g, g.t_ns, g.debt, due - 1, 1) != 1;
        refused += !rs_gcra_take(&g, &g.t_ns, &g.debt, due, 1);
    }
    CHECK_EQ_INT(refused, 0);
    CHECK_EQ_U64(g.rejected, 29999);
}

static void test_extremes(void) {
    rs_gcra g;
    /* 1e9 tokens a nanosecond */
    CHECK_EQ_INT(rs_gcra_init(&g, 1e9, 1, 1000000000), RS_OK);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, 5, 1000000000), 1);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, 5, 1), 0);
    CHECK_EQ_U64(rs_gcra_wait_ns(&g, g.t_ns, g.debt, 5, 1), 1);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, 6, 1000000000), 1);
    /* the largest burst with the slowest accepted interval */
    uint64_t burst = (UINT64_C(1) << 62) / 1000000000;
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, burst), RS_OK);
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, burst + 1), RS_EFIELD_BASE + RS_GCF_BURST);
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, burst), RS_OK);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, UINT64_C(1) << 62, burst), 1);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, UINT64_C(1) << 62, 1), 0);
    CHECK_EQ_U64(rs_gcra_wait_ns(&g, g.t_ns, g.debt, UINT64_C(1) << 62, burst), burst * 1000000000ull);
    /* a clock at its end, and one stepping back */
    CHECK_EQ_INT(rs_gcra_init(&g, 1e12, 1, UINT64_C(1) << 40), RS_OK);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, UINT64_MAX - 2, UINT64_C(1) << 40), 1);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, UINT64_MAX - 1, UINT64_C(1) << 40), 0);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, 0, 1), 0);
    CHECK_EQ_INT(rs_gcra_take(&g, &g.t_ns, &g.debt, UINT64_MAX, UINT64_C(1) << 40), 1);
}

/* Every admitted cost inside any window [s, s + len] is at most
 * burst + len * rate / per, checked by brute force over random schedules. */
static void test_bound_random(void) {
    for (int round = 0; round < 200; round++) {
        rs_gcra g;
        double rate = (double)(1 + rnd() % 20) / (double)(1 + rnd() % 4);
        uint64_t per = 1000 + rnd() % 5000, burst = 1 + rnd() % 6;
        if (rs_gcra_init(&g, rate, per, burst) != RS_OK) {
            CHECK(0);
            continue;
        }
        enum { N = 200 };
        uint64_t t[N], c[N];
        int n = 0;
        uint64_t now = rnd() % 1000;
        for (int i = 0; i < N; i++) {
            now += rnd() % 3 ? rnd() % (per / 2) : 0;
            uint64_t cost = 1 + rnd() % burst;
            if (rs_gcra_take(&g, &g.t_ns, &g.debt, now, cost)) {
                t[n] = now;
                c[n++] = cost;
            }
        }
        int bad = 0;
        for (int i = 0; i < n; i++) {
            uint64_t sum = 0;
            for (int j = i; j < n; j++) {
                sum += c[j];
                /* sum * per * q <= burst * per * q + (t_j - t_i) * p, exactly */
                double len = (double)(t[j] - t[i]);
                if ((double)sum > (double)burst + len * rate / (double)per + 1e-9) {
                    bad++;
                }
            }
        }
        CHECK_EQ_INT(bad, 0);
    }
}

static int eq_ptr(void *a, void *b, void *ctx) {
    (void)ctx;
    return *(int *)a == *(int *)b;
}

static int released;
static void release(void *key, void *ctx) {
    (void)key;
    (void)ctx;
    released++;
}

static void test_keys(void) {
    rs_gcra g;
    rs_dedup keys;
    CHECK_EQ_INT(rs_gcra_init(&g, 1.0, 1000000000, 2), RS_OK);
    CHECK_EQ_INT(rs_gcra_keys_init(&g, &keys, 2, eq_ptr, release, NULL), RS_OK);
    CHECK_EQ_U64(keys.ttl_ns, 2000000000ull);
    int k[4] = {1, 2, 3, 1};
    int stored;
    CHECK_EQ_INT(rs_gcra_take_key(&g, &keys, 1, &k[0], 0, 2, &stored), 1);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_INT(rs_gcra_take_key(&g, &keys, 1, &k[3], 0, 1, &stored), 0); /* equal key */
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_INT(rs_gcra_wait_key(&g, &keys, 1, &k[3], 0, 1), 1000000000);
    CHECK_EQ_INT(rs_gcra_take_key(&g, &keys, 2, &k[1], 0, 2, &stored), 1);
    CHECK_EQ_U64(keys.size, 2);
    /* a third key evicts the one admitted least recently */
    CHECK_EQ_INT(rs_gcra_take_key(&g, &keys, 3, &k[2], 1, 1, &stored), 1);
    CHECK_EQ_U64(keys.size, 2);
    CHECK_EQ_INT(released, 1);
    CHECK_EQ_INT(rs_gcra_wait_key(&g, &keys, 2, &k[1], 1, 2), 1999999999);
    /* once full again, keys drop out for free */
    CHECK_EQ_INT(rs_gcra_wait_key(&g, &keys, 2, &k[1], 2000000000, 2), 0);
    CHECK_EQ_INT(rs_gcra_take_key(&g, &keys, 9, &k[0], 2000000001, 1, &stored), 1);
    CHECK_EQ_INT(released, 3);
    CHECK_EQ_U64(keys.size, 1);
    CHECK_EQ_U64(g.admitted, 4);
    CHECK_EQ_U64(g.rejected, 1);
    rs_dedup_free(&keys);
    CHECK_EQ_INT(released, 4);
}

int main(void) {
    RUN_TEST(test_validation);
    RUN_TEST(test_fractions);
    RUN_TEST(test_extremes);
    RUN_TEST(test_bound_random);
    RUN_TEST(test_keys);
    return rs_test_summary();
}
