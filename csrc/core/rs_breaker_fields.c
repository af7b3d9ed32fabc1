/* rs_breaker_fields.c - the allowed values of the circuit breaker's
 * configuration fields (rs_breaker_config), in the units the binding takes
 * them: seconds for durations. */
#include "rs_breaker.h"

#include <math.h>

const rs_field RS_BREAKER_FIELDS[RS_BF_COUNT] = {
    {"failure_threshold", RS_FIELD_INT, 0, UINT32_MAX, 0, NULL},
    {"failure_rate_threshold", RS_FIELD_NUMBER, 0.0, 1.0, RS_FIELD_OPEN_LO, NULL},
    {"slow_call_duration", RS_FIELD_SECONDS, 0.0, INFINITY, RS_FIELD_OPEN_LO, NULL},
    {"slow_call_rate_threshold", RS_FIELD_NUMBER, 0.0, 1.0, RS_FIELD_OPEN_LO, NULL},
    {"window_size", RS_FIELD_INT, 1, RS_WINDOW_MAX_SIZE, 0, NULL},
    /* a time window holds RS_WINDOW_BUCKETS buckets of at least 1 ns */
    {"window_duration", RS_FIELD_SECONDS, RS_WINDOW_BUCKETS / 1e9, RS_MAX_SECONDS, 0, NULL},
    {"minimum_calls", RS_FIELD_INT, 0, UINT32_MAX, 0, "<= window_size for a count window"},
    {"cooldown", RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS, 0, NULL},
    {"cooldown_multiplier", RS_FIELD_NUMBER, 1.0, INFINITY, 0, NULL},
    {"cooldown_max", RS_FIELD_SECONDS, 0.0, RS_MAX_SECONDS, 0, ">= cooldown"},
    {"half_open_probes", RS_FIELD_INT, 0, RS_WINDOW_MAX_SIZE, 0, NULL},
    {"half_open_max_wait", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL},
    {"ewma_alpha", RS_FIELD_NUMBER, RS_BREAKER_MIN_EWMA_ALPHA, 1.0, 0, NULL},
    {"sensitivity", RS_FIELD_NUMBER, RS_BREAKER_MIN_SENSITIVITY, RS_BREAKER_MAX_SENSITIVITY, 0, NULL},
    {"min_health_score", RS_FIELD_NUMBER, 0.0, 1.0, 0, NULL},
    {"latency_window", RS_FIELD_INT, 1, RS_WINDOW_MAX_SIZE, 0, NULL},
};

const rs_field RS_EJECTOR_PERCENT_FIELD = {"max_ejection_percent", RS_FIELD_INT, 0,
                                           RS_EJECTOR_MAX_PERCENT, 0, NULL};
