/* C unit tests of rs_interval: validation, the seed's sequences, clamping. */
#include <math.h>

#include "rs_interval.h"
#include "rs_test.h"

/* Every bad field is reported with its own code. */
static void test_validation(void) {
    rs_interval iv;
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.0, 1.0, 0.5, 0.8, 1.2), RS_EFIELD_BASE + RS_IVF_MIN);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, 0.01, 0.5, 0.8, 1.2), RS_EFIELD_BASE + RS_IVF_MAX);
    CHECK_EQ_INT(rs_interval_init(&iv, 2.0, 0.05, 1.0, 0.5, 0.8, 1.2), RS_EFIELD_BASE + RS_IVF_BASE);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, 1.0, NAN, 0.8, 1.2), RS_EFIELD_BASE + RS_IVF_THRESHOLD);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, 1.0, 0.5, 0.0, 1.2), RS_EFIELD_BASE + RS_IVF_SPEEDUP);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, 1.0, 0.5, 1.5, 1.2), RS_EFIELD_BASE + RS_IVF_SPEEDUP);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, 1.0, 0.5, 0.8, 0.9), RS_EFIELD_BASE + RS_IVF_SLOWDOWN);
    CHECK_EQ_INT(rs_interval_init(&iv, 0.1, 0.05, INFINITY, 0.5, 0.8, 1.2), RS_EFIELD_BASE + RS_IVF_MAX);
    for (int f = 0; f < RS_IVF_COUNT; f++) {
        CHECK(RS_INTERVAL_FIELDS[f].name != NULL && RS_INTERVAL_FIELDS[f].lo <= RS_INTERVAL_FIELDS[f].hi);
    }
    CHECK(!rs_field_ok(&RS_INTERVAL_FIELDS[RS_IVF_THRESHOLD], NAN));
}

/* MICRO at low activity: 0.1 -> 0.12 -> 0.144 -> ... -> 1.0; at high: 1.0 -> 0.8 -> ... -> 0.05. */
static void test_micro_sequences(void) {
    const rs_timescale *m = &RS_TIMESCALES[0];
    rs_interval iv;
    CHECK_EQ_INT(rs_interval_init(&iv, m->base, m->min, m->max, m->threshold, 0.8, 1.2), RS_OK);
    double want = 0.1;
    for (int i = 0; i < 20; i++) {
        want = fmin(want * 1.2, 1.0);
        CHECK_NEAR(rs_interval_update(&iv, 0.0), want, 1e-12);
    }
    CHECK(iv.interval == 1.0);
    for (int i = 0; i < 20; i++) {
        want = fmax(want * 0.8, 0.05);
        CHECK_NEAR(rs_interval_update(&iv, 0.9), want, 1e-12);
    }
    CHECK(iv.interval == 0.05);
    CHECK_EQ_U64(iv.updates, 40);
    /* exactly at the threshold is not "above" it; NaN is low activity */
    CHECK_NEAR(rs_interval_update(&iv, 0.5), 0.06, 1e-12);
    CHECK_NEAR(rs_interval_update(&iv, NAN), 0.072, 1e-12);
    rs_interval_reset(&iv);
    CHECK(iv.interval == 0.1 && iv.updates == 0);
}

/* The presets are the seed's table. */
static void test_presets(void) {
    CHECK_STREQ(RS_TIMESCALES[1].name, "MESO");
    CHECK(RS_TIMESCALES[1].base == 10.0 && RS_TIMESCALES[1].min == 5.0 &&
          RS_TIMESCALES[1].max == 30.0 && RS_TIMESCALES[1].threshold == 0.3);
    CHECK(RS_TIMESCALES[2].base == 300.0 && RS_TIMESCALES[2].min == 60.0 &&
          RS_TIMESCALES[2].max == 600.0 && RS_TIMESCALES[2].threshold == 0.2);
}

int main(void) {
    RUN_TEST(test_validation);
    RUN_TEST(test_micro_sequences);
    RUN_TEST(test_presets);
    return rs_test_summary();
}
