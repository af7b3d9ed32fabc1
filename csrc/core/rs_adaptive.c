/* rs_adaptive.c - an adaptive concurrency limit (AIMD, Vegas, gradient). */
#include "rs_adaptive.h"

#include <math.h>

const rs_field RS_ADAPTIVE_FIELDS[RS_ADF_COUNT] = {
    {"initial_limit", RS_FIELD_INT, 1.0, (double)RS_ADAPTIVE_MAX, 0,
     "between min_limit and max_limit"},
    {"min_limit", RS_FIELD_INT, 1.0, (double)RS_ADAPTIVE_MAX, 0, NULL},
    {"max_limit", RS_FIELD_INT, 1.0, (double)RS_ADAPTIVE_MAX, 0, "at least min_limit"},
};

/* AIMD: a sample slower than this many times the baseline is an overload. */
#define AIMD_TOLERANCE 1.5
#define AIMD_BACKOFF 0.9
/* Gradient: the latency over the baseline taken as no queueing. */
#define GRADIENT_TOLERANCE 1.25
#define GRADIENT_SMOOTHING 0.5

#define CONSISTENT(a)                                                                     \
    RS_ASSERT((a)->limit >= (double)(a)->min_limit && (a)->limit <= (double)(a)->max_limit && \
              (a)->admitted >= (a)->in_flight)

int rs_adaptive_init(rs_adaptive *a, int algorithm, long long initial_limit,
                     long long min_limit, long long max_limit) {
    if (algorithm < 0 || algorithm >= RS_AD_ALGORITHM_COUNT) {
        return RS_EINVAL;
    }
    if (!rs_field_ok(&RS_ADAPTIVE_FIELDS[RS_ADF_MIN_LIMIT], (double)min_limit)) {
        return RS_EFIELD_BASE + RS_ADF_MIN_LIMIT;
    }
    if (!rs_field_ok(&RS_ADAPTIVE_FIELDS[RS_ADF_MAX_LIMIT], (double)max_limit) ||
        max_limit < min_limit) {
        return RS_EFIELD_BASE + RS_ADF_MAX_LIMIT;
    }
    if (!rs_field_ok(&RS_ADAPTIVE_FIELDS[RS_ADF_INITIAL_LIMIT], (double)initial_limit) ||
        initial_limit < min_limit || initial_limit > max_limit) {
        return RS_EFIELD_BASE + RS_ADF_INITIAL_LIMIT;
    }
    a->algorithm = algorithm;
    a->min_limit = (uint32_t)min_limit;
    a->max_limit = (uint32_t)max_limit;
    a->limit = (double)initial_limit;
    a->in_flight = 0;
    a->slow_start = 1;
    a->probing = 1;
    a->probe_left = RS_ADAPTIVE_PROBE_SAMPLES;
    a->probe_seq = 0;
    a->probe_min_ns = 0;
    a->probe_end_ns = 0;
    a->min_ns = 0;
    a->admitted = a->rejected = a->dropped = 0;
    return RS_OK;
}

static double clamp(const rs_adaptive *a, double v) {
    if (v < (double)a->min_limit) {
        return (double)a->min_limit;
    }
    return v > (double)a->max_limit ? (double)a->max_limit : v;
}

static void aimd(rs_adaptive *a, double lat, int grow, int shrink, int dropped) {
    if (dropped || lat > AIMD_TOLERANCE * (double)a->min_ns) {
        if (shrink) {
            a->limit = clamp(a, a->limit * AIMD_BACKOFF);
            a->slow_start = 0;
        }
    } else if (grow) {
        a->limit = clamp(a, a->limit + (a->slow_start ? 1.0 : 1.0 / a->limit));
    }
}

static void vegas(rs_adaptive *a, double lat, int grow, int shrink, int dropped) {
    double lg = log10(a->limit);
    if (lg < 1.0) {
        lg = 1.0;
    }
    if (dropped) {
        if (shrink) {
            a->limit = clamp(a, a->limit - lg);
        }
        return;
    }
    double queue = ceil(a->limit * (1.0 - (double)a->min_ns / lat));
    if (queue <= lg) {
        if (grow) {
            a->limit = clamp(a, a->limit + 4.0 * lg);
        }
    } else if (queue < 2.0 * lg) {
        if (grow) {
            a->limit = clamp(a, a->limit + lg);
        }
    } else if (queue > 4.0 * lg && shrink) {
        double cut = (queue - 4.0 * lg) / 2.0;
        a->limit = clamp(a, a->limit - (cut > lg ? cut : lg));
    }
}

static void gradient(rs_adaptive *a, double lat, int grow, int shrink, int dropped) {
    double g = dropped ? 0.5 : GRADIENT_TOLERANCE * (double)a->min_ns / lat;
    if (g >= 1.0) {
        if (!grow) {
            return;
        }
        g = 1.0;
    } else if (!shrink) {
        return;
    } else if (g < 0.5) {
        g = 0.5;
    }
    double target = a->limit * g + sqrt(a->limit);
    a->limit = clamp(a, a->limit + GRADIENT_SMOOTHING * (target - a->limit));
}

/* A sample of a call admitted during the probe. */
static void probe_sample(rs_adaptive *a, uint64_t now_ns, uint64_t lat) {
    if (a->probe_min_ns == 0 || lat < a->probe_min_ns) {
        a->probe_min_ns = lat;
    }
    if (--a->probe_left == 0) {
        a->probing = 0;
        a->min_ns = a->probe_min_ns;
        a->probe_end_ns = now_ns;
    }
}

int rs_adaptive_release(rs_adaptive *a, const rs_adaptive_permit *p, uint64_t now_ns,
                        uint64_t latency_ns, int dropped) {
    if (RS_UNLIKELY(a->in_flight == 0)) {
        return RS_EINVAL;
    }
    a->in_flight--;
    if (dropped) {
        a->dropped++;
    }
    uint64_t lat = latency_ns ? latency_ns : 1;
    if (a->probing) {
        /* Only calls admitted while min_limit was in force measure the
         * server without a queue; a drop measures nothing. */
        if (p->seq > a->probe_seq && !dropped) {
            probe_sample(a, now_ns, lat);
        }
        CONSISTENT(a);
        return RS_OK;
    }
    int grow = 2.0 * (double)p->in_flight >= a->limit;
    int shrink = (double)p->in_flight <= a->limit;
    switch (a->algorithm) {
    case RS_AD_AIMD: aimd(a, (double)lat, grow, shrink, dropped); break;
    case RS_AD_VEGAS: vegas(a, (double)lat, grow, shrink, dropped); break;
    default: gradient(a, (double)lat, grow, shrink, dropped); break;
    }
    if (now_ns >= a->probe_end_ns && now_ns - a->probe_end_ns >= RS_ADAPTIVE_PROBE_INTERVAL_NS) {
        a->probing = 1;
        a->probe_left = RS_ADAPTIVE_PROBE_SAMPLES;
        a->probe_seq = a->admitted;
        a->probe_min_ns = 0;
    }
    CONSISTENT(a);
    return RS_OK;
}
