/* test_ewma.c - unit tests of rs_ewma (csrc/core/rs_ewma.h). */
#include "rs_ewma.h"
#include "rs_test.h"

#include <math.h>

/* init rejects alpha <= 0, > 1, NaN and infinities, leaving e unchanged. */
static void test_init_rejects_bad_alpha(void) {
    const double bad[] = {0.0, -0.0, -0.5, 1.0000001, 2.0, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rs_ewma e = {.alpha = 0.25, .mean = 7.0, .var = 3.0, .count = 9};
        CHECK_EQ_INT(rs_ewma_init(&e, bad[i]), RS_EINVAL);
        CHECK(e.alpha == 0.25 && e.mean == 7.0 && e.var == 3.0 && e.count == 9);
    }
}

/* init accepts the edges of (0, 1] and starts from m = v = 0. */
static void test_init_accepts_good_alpha(void) {
    const double good[] = {1e-300, 0.01, 0.3, 1.0};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        rs_ewma e = {.alpha = 9.0, .mean = 7.0, .var = 3.0, .count = 9};
        CHECK_EQ_INT(rs_ewma_init(&e, good[i]), RS_OK);
        CHECK(e.alpha == good[i]);
        CHECK(e.mean == 0.0 && e.var == 0.0 && e.count == 0);
    }
}

/* d = x - m; m += a*d; v = (1-a)*(v + a*d*d) against hand-computed values. */
static void test_update_rule_by_hand(void) {
    rs_ewma e;
    CHECK_EQ_INT(rs_ewma_init(&e, 0.5), RS_OK);
    rs_ewma_update(&e, 1.0); /* d=1:     m=0.5,   v=0.5*(0+0.5)        = 0.25 */
    CHECK_NEAR(e.mean, 0.5, 1e-15);
    CHECK_NEAR(e.var, 0.25, 1e-15);
    rs_ewma_update(&e, 0.0); /* d=-0.5:  m=0.25,  v=0.5*(0.25+0.125)   = 0.1875 */
    CHECK_NEAR(e.mean, 0.25, 1e-15);
    CHECK_NEAR(e.var, 0.1875, 1e-15);
    rs_ewma_update(&e, 1.0); /* d=0.75:  m=0.625, v=0.5*(0.1875+0.28125) = 0.234375 */
    CHECK_NEAR(e.mean, 0.625, 1e-15);
    CHECK_NEAR(e.var, 0.234375, 1e-15);
    CHECK_EQ_U64(e.count, 3);
    CHECK_NEAR(rs_ewma_stddev(&e), sqrt(0.234375), 1e-15);

    CHECK_EQ_INT(rs_ewma_init(&e, 0.3), RS_OK);
    rs_ewma_update(&e, 0.4); /* d=0.4:  m=0.12,  v=0.7*(0.3*0.16)              = 0.0336 */
    CHECK_NEAR(e.mean, 0.12, 1e-15);
    CHECK_NEAR(e.var, 0.0336, 1e-15);
    rs_ewma_update(&e, 0.4); /* d=0.28: m=0.204, v=0.7*(0.0336+0.3*0.0784)     = 0.039984 */
    CHECK_NEAR(e.mean, 0.204, 1e-15);
    CHECK_NEAR(e.var, 0.039984, 1e-15);
    rs_ewma_update(&e, -1.0); /* d=-1.204: m=-0.1572, v=0.7*(0.039984+0.3*1.449616) = 0.33240816 */
    CHECK_NEAR(e.mean, -0.1572, 1e-15);
    CHECK_NEAR(e.var, 0.33240816, 1e-14);
}

/* alpha = 1 follows the input exactly with zero variance. */
static void test_alpha_one_tracks_input(void) {
    rs_ewma e;
    CHECK_EQ_INT(rs_ewma_init(&e, 1.0), RS_OK);
    const double xs[] = {0.2, 0.9, 0.0, 1.0};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        rs_ewma_update(&e, xs[i]);
        CHECK_NEAR(e.mean, xs[i], 1e-15);
        CHECK(e.var == 0.0);
    }
}

/* A constant input converges to that mean and its variance decays to ~0. */
static void test_constant_input_converges(void) {
    rs_ewma e;
    CHECK_EQ_INT(rs_ewma_init(&e, 0.3), RS_OK);
    for (int i = 0; i < 200; i++) {
        rs_ewma_update(&e, 0.6);
    }
    CHECK_NEAR(e.mean, 0.6, 1e-12);
    CHECK_NEAR(rs_ewma_stddev(&e), 0.0, 1e-12);
    CHECK_EQ_U64(e.count, 200);
}

/* reset returns to m = v = 0, count 0, and keeps alpha. */
static void test_reset(void) {
    rs_ewma e;
    CHECK_EQ_INT(rs_ewma_init(&e, 0.4), RS_OK);
    rs_ewma_update(&e, 1.0);
    rs_ewma_update(&e, 0.5);
    rs_ewma_reset(&e);
    CHECK(e.mean == 0.0 && e.var == 0.0);
    CHECK_EQ_U64(e.count, 0);
    CHECK(e.alpha == 0.4);
    rs_ewma_update(&e, 1.0); /* as after init: m = 0.4, v = 0.6*0.4 = 0.24 */
    CHECK_NEAR(e.mean, 0.4, 1e-15);
    CHECK_NEAR(e.var, 0.24, 1e-15);
}

/* stddev is 0 for a zero or negative variance, sqrt(v) otherwise. */
static void test_stddev_non_positive(void) {
    rs_ewma e;
    CHECK_EQ_INT(rs_ewma_init(&e, 0.5), RS_OK);
    CHECK(rs_ewma_stddev(&e) == 0.0);
    e.var = -1e-12;
    CHECK(rs_ewma_stddev(&e) == 0.0);
    e.var = -4.0;
    CHECK(rs_ewma_stddev(&e) == 0.0);
    e.var = 4.0;
    CHECK_NEAR(rs_ewma_stddev(&e), 2.0, 1e-15);
}

int main(void) {
    RUN_TEST(test_init_rejects_bad_alpha);
    RUN_TEST(test_init_accepts_good_alpha);
    RUN_TEST(test_update_rule_by_hand);
    RUN_TEST(test_alpha_one_tracks_input);
    RUN_TEST(test_constant_input_converges);
    RUN_TEST(test_reset);
    RUN_TEST(test_stddev_non_positive);
    return rs_test_summary();
}
