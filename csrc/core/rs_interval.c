/* rs_interval.c - the adaptive interval rule. */
#include "rs_interval.h"

#include <math.h>

const rs_timescale RS_TIMESCALES[3] = {
    {"MICRO", 0.1, 0.05, 1.0, 0.5},
    {"MESO", 10.0, 5.0, 30.0, 0.3},
    {"MACRO", 300.0, 60.0, 600.0, 0.2},
};

const rs_field RS_INTERVAL_FIELDS[RS_IVF_COUNT] = {
    {"base", RS_FIELD_NUMBER, 0.0, INFINITY, RS_FIELD_OPEN_LO, "in [min, max]"},
    {"min", RS_FIELD_NUMBER, 0.0, INFINITY, RS_FIELD_OPEN_LO, NULL},
    {"max", RS_FIELD_NUMBER, 0.0, INFINITY, RS_FIELD_OPEN_LO, ">= min"},
    {"threshold", RS_FIELD_NUMBER, -INFINITY, INFINITY, 0, NULL},
    {"speedup", RS_FIELD_NUMBER, 0.0, 1.0, RS_FIELD_OPEN_LO, NULL},
    {"slowdown", RS_FIELD_NUMBER, 1.0, INFINITY, 0, NULL},
};

int rs_interval_init(rs_interval *iv, double base, double min, double max, double threshold,
                     double speedup, double slowdown) {
    const rs_field *f = RS_INTERVAL_FIELDS;
    if (!rs_field_ok(&f[RS_IVF_MIN], min)) return RS_EFIELD_BASE + RS_IVF_MIN;
    if (!(rs_field_ok(&f[RS_IVF_MAX], max) && max >= min)) return RS_EFIELD_BASE + RS_IVF_MAX;
    if (!(base >= min && base <= max)) return RS_EFIELD_BASE + RS_IVF_BASE;
    if (!rs_field_ok(&f[RS_IVF_THRESHOLD], threshold)) return RS_EFIELD_BASE + RS_IVF_THRESHOLD;
    if (!rs_field_ok(&f[RS_IVF_SPEEDUP], speedup)) return RS_EFIELD_BASE + RS_IVF_SPEEDUP;
    if (!rs_field_ok(&f[RS_IVF_SLOWDOWN], slowdown)) return RS_EFIELD_BASE + RS_IVF_SLOWDOWN;
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
