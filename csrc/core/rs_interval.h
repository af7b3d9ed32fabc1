/* rs_interval.h - the adaptive interval rule.
 *
 * After each run: activity > threshold -> interval * speedup, else
 * interval * slowdown, clamped to [min, max]. The TimeScale presets of the
 * seed are below. No allocation; cannot fail once initialised. */
#ifndef RS_INTERVAL_H
#define RS_INTERVAL_H

#include "rs_common.h"
#include "rs_field.h"

typedef enum rs_interval_field {
    RS_IVF_BASE = 0,
    RS_IVF_MIN,
    RS_IVF_MAX,
    RS_IVF_THRESHOLD,
    RS_IVF_SPEEDUP,
    RS_IVF_SLOWDOWN,
    RS_IVF_COUNT
} rs_interval_field;

/* Name and allowed values of each field (seconds, but for threshold and
 * the factors speedup and slowdown). */
extern const rs_field RS_INTERVAL_FIELDS[RS_IVF_COUNT];

typedef struct rs_interval {
    double base, min, max, threshold, speedup, slowdown;
    double interval; /* starts at base */
    uint64_t updates;
} rs_interval;

/* The presets: MICRO, MESO, MACRO (seconds). */
typedef struct rs_timescale {
    const char *name;
    double base, min, max, threshold;
} rs_timescale;

extern const rs_timescale RS_TIMESCALES[3];

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field: 0 < min <= base
 * <= max, all finite; threshold finite; 0 < speedup <= 1 <= slowdown, finite. */
int rs_interval_init(rs_interval *iv, double base, double min, double max, double threshold,
                     double speedup, double slowdown);

/* Applies one step for `activity` and returns the new interval. A NaN
 * activity counts as low activity. */
double rs_interval_update(rs_interval *iv, double activity);

void rs_interval_reset(rs_interval *iv);

#endif /* RS_INTERVAL_H */
