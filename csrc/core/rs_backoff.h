/* rs_backoff.h - exponential backoff with a cap, four jitter modes and a
 * seeded PRNG.
 *
 * The un-jittered delay of attempt a is base * multiplier^min(a, 63), capped
 * at max_delay. Jitter draws u from (0, 1]:
 *   none          d
 *   full          d * u                       in (0, d]
 *   equal         d/2 + d/2 * u               in (d/2, d]
 * (where rounding would reach the open end, the nearest double inside the
 * band is used instead)
 *   decorrelated  base + (hi - base) * u,  hi = max(base, 3 * prev)
 * where prev defaults to the un-jittered delay of attempt - 1 (base for
 * attempt 0). Every result is finite, >= 0 and <= max_delay for every
 * attempt up to 2**64 - 1. The PRNG is splitmix64, so a seed gives the same
 * delays on every platform. */
#ifndef RS_BACKOFF_H
#define RS_BACKOFF_H

#include "rs_common.h"
#include "rs_field.h"

typedef enum rs_jitter {
    RS_JITTER_NONE = 0,
    RS_JITTER_FULL = 1,
    RS_JITTER_EQUAL = 2,
    RS_JITTER_DECORRELATED = 3,
    RS_JITTER_COUNT = 4
} rs_jitter;

/* Fields for error reporting: init returns RS_EFIELD_BASE + field. */
typedef enum rs_backoff_field {
    RS_BOF_BASE = 0,
    RS_BOF_MULTIPLIER,
    RS_BOF_MAX_DELAY,
    RS_BOF_JITTER,
    RS_BOF_COUNT
} rs_backoff_field;

/* Name and allowed values of each field; jitter's entry holds the rs_jitter
 * index, which the caller takes by name (rs_jitter_name). */
extern const rs_field RS_BACKOFF_FIELDS[RS_BOF_COUNT];
/* "none", "full", "equal", "decorrelated"; NULL when out of range. */
const char *rs_jitter_name(int jitter);

typedef struct rs_backoff {
    double base;       /* seconds, finite, >= 0 */
    double multiplier; /* finite, >= 1 */
    double max_delay;  /* finite, >= base */
    int jitter;        /* rs_jitter */
    uint64_t rng;      /* splitmix64 state */
} rs_backoff;

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field; b is unchanged then. */
int rs_backoff_init(rs_backoff *b, double base, double multiplier, double max_delay, int jitter,
                    uint64_t seed);

/* The un-jittered delay of an attempt. */
double rs_backoff_raw(const rs_backoff *b, uint64_t attempt);

/* The delay before retry number `attempt` (0 is the first retry); prev < 0
 * means "not given". Advances the PRNG when the mode jitters. */
double rs_backoff_delay(rs_backoff *b, uint64_t attempt, double prev);

/* One draw from (0, 1]; advances the PRNG. */
double rs_backoff_uniform(rs_backoff *b);

#endif /* RS_BACKOFF_H */
