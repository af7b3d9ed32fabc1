/* rs_interval.c - the adaptive interval rule. */
#include "rs_interval.h"

#include <math.h>

const rs_timescale RS_TIMESCALES[3] = {
    {"MICRO", 0.1, 0.05, 1.0, 0.5},
    {"MESO", 10.0, 5.0, 30.0, 0.3},
    {"MACRO", 300.0, 60.0, 600.0, 0.2},
};

static const char *const FIELDS[RS_IVF_COUNT][2] = {
    {"base", "in [min, max]"},
    {"min", "> 0"},
    {"max", ">= min"},
    {"threshold", "a finite number"},
    {"speedup", "in (0, 1]"},
    {"slowdown", ">= 1"},
};

const char *rs_interval_field_name(int field) {
    return field >= 0 && field < RS_IVF_COUNT ? FIELDS[field][0] : NULL;
}

const char *rs_interval_field_range(int field) {
    return field >= 0 && field < RS_IVF_COUNT ? FIELDS[field][1] : NULL;
}

int rs_interval_init(rs_interval *iv, double base, double min, double max, double threshold,
                     double speedup, double slowdown) {
    if (!(min > 0.0 && isfinite(min))) return RS_EFIELD_BASE + RS_IVF_MIN;
    if (!(max >= min && isfinite(max))) return RS_EFIELD_BASE + RS_IVF_MAX;
    if (!(base >= min && base <= max)) return RS_EFIELD_BASE + RS_IVF_BASE;
    if (!isfinite(threshold)) return RS_EFIELD_BASE + RS_IVF_THRESHOLD;
    if (!(speedup > 0.0 && speedup <= 1.0)) return RS_EFIELD_BASE + RS_IVF_SPEEDUP;
    if (!(slowdown >= 1.0 && isfinite(slowdown))) return RS_EFIELD_BASE + RS_IVF_SLOWDOWN;
    iv->base = base;
    iv->min = min;
    iv->max = max;
    iv->threshold = threshold;
    iv->speedup = speedup;
    iv->slowdown = slowdown;
    rs_interval_reset(iv);
    return RS_OK;
}

double rs_interval_update(rs_interval *iv, double activity) {
    double next = iv->interval * (activity > iv->threshold ? iv->speedup : iv->slowdown);
    if (next < iv->min) next = iv->min;
    if (next > iv->max) next = iv->max;
    iv->interval = next;
    iv->updates++;
    return next;
}

void rs_interval_reset(rs_interval *iv) {
    iv->interval = iv->base;
    iv->updates = 0;
}
