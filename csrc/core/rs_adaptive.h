/* rs_adaptive.h - an adaptive concurrency limit: how many calls may be in
 * flight, moved by the latency and the drops of the calls that finish.
 *
 * Admission is a count against the limit (calls past it are refused, never
 * queued). Each finished call gives one sample: its latency and whether it
 * was dropped (timed out or refused downstream for overload). One of three
 * algorithms turns the samples into a new limit, kept as a double in
 * [min_limit, max_limit]; calls are admitted while in_flight < floor(limit).
 *
 * Baseline. Each algorithm compares a sample with the least latency seen
 * (min_ns). Under load every call queues, so the least latency seen is only
 * the server's own after a probe: for its first RS_ADAPTIVE_PROBE_SAMPLES
 * samples, and again once RS_ADAPTIVE_PROBE_INTERVAL_NS after the last
 * probe ended, the limit in force is min_limit; the least latency of the
 * calls admitted during the probe becomes min_ns, and the limit goes back
 * to its estimate. Only a probe sets min_ns: a call that fails fast between
 * probes says nothing of the server's own latency.
 *
 * Two guards, shared by the algorithms: a sample may raise the limit only
 * when its call started with at least half the limit in flight (a limit the
 * load never reached says nothing about the server), and may lower it only
 * when its call started with at most `limit` in flight (a call that ran
 * above the limit in force now reports an overload already answered).
 *
 * The algorithms (lg = max(1, log10(limit)), min = min_ns, lat = sample):
 * - AIMD: a drop, or lat > 1.5 * min, multiplies the limit by 0.9; any other
 *   sample adds 1 (until the first decrease: slow start) or 1 / limit.
 * - Vegas: queue = ceil(limit * (1 - min / lat)); queue <= lg adds 4 * lg,
 *   queue < 2 * lg adds lg, queue > 4 * lg subtracts max(lg, (queue -
 *   4 * lg) / 2); a drop subtracts lg.
 * - Gradient: g = clamp(1.25 * min / lat, 0.5, 1) (0.5 for a drop); the
 *   limit moves halfway to limit * g + sqrt(limit).
 *
 * Pure arithmetic on the struct: no clock (now_ns and latencies are
 * arguments), no allocation, fixed size, no pointers. Deterministic: the
 * same calls give the same doubles. */
#ifndef RS_ADAPTIVE_H
#define RS_ADAPTIVE_H

#include "rs_common.h"
#include "rs_field.h"

typedef enum rs_adaptive_field {
    RS_ADF_INITIAL_LIMIT = 0,
    RS_ADF_MIN_LIMIT,
    RS_ADF_MAX_LIMIT,
    RS_ADF_COUNT
} rs_adaptive_field;

/* The largest limit: 2**30. */
#define RS_ADAPTIVE_MAX (1u << 30)
/* Samples a probe of the baseline latency takes. */
#define RS_ADAPTIVE_PROBE_SAMPLES 10u
/* Time between the end of a probe and the start of the next: 30 s. */
#define RS_ADAPTIVE_PROBE_INTERVAL_NS (30ull * RS_NS_PER_SEC)

/* Name and allowed values of each field. */
extern const rs_field RS_ADAPTIVE_FIELDS[RS_ADF_COUNT];

typedef enum rs_adaptive_algorithm {
    RS_AD_AIMD = 0,
    RS_AD_VEGAS = 1,
    RS_AD_GRADIENT = 2,
    RS_AD_ALGORITHM_COUNT
} rs_adaptive_algorithm;

/* What an admitted call carries to its release. */
typedef struct rs_adaptive_permit {
    uint64_t seq;       /* `admitted` after it was admitted */
    uint32_t in_flight; /* calls in flight once it was admitted, itself included */
} rs_adaptive_permit;

typedef struct rs_adaptive {
    int algorithm;        /* rs_adaptive_algorithm */
    uint32_t min_limit, max_limit;
    double limit;         /* the estimate, in [min_limit, max_limit] */
    uint32_t in_flight;
    int slow_start;       /* AIMD: no decrease yet */
    int probing;          /* a probe runs: min_limit is in force */
    uint32_t probe_left;  /* samples the probe still needs */
    uint64_t probe_seq;   /* `admitted` when the probe started */
    uint64_t probe_min_ns;
    uint64_t probe_end_ns; /* when the last probe ended */
    uint64_t min_ns;      /* the baseline latency; 0 before the first probe ended */
    uint64_t admitted, rejected, dropped;
} rs_adaptive;

/* Returns RS_OK, RS_EINVAL for an unknown algorithm, or RS_EFIELD_BASE +
 * the first bad field: each limit in [1, RS_ADAPTIVE_MAX], max_limit at
 * least min_limit, initial_limit between them. Starts with a probe. */
int rs_adaptive_init(rs_adaptive *a, int algorithm, long long initial_limit,
                     long long min_limit, long long max_limit);

/* The limit in force: min_limit while probing, else floor(limit). */
RS_INLINE uint32_t rs_adaptive_limit(const rs_adaptive *a) {
    return a->probing ? a->min_limit : (uint32_t)a->limit;
}

/* Admits a call when fewer than the limit in force are in flight: 1, *p
 * filled; else 0, counted rejected. */
RS_INLINE int rs_adaptive_try_acquire(rs_adaptive *a, rs_adaptive_permit *p) {
    if (RS_LIKELY(a->in_flight < rs_adaptive_limit(a))) {
        p->in_flight = ++a->in_flight;
        p->seq = ++a->admitted;
        return 1;
    }
    a->rejected++;
    return 0;
}

/* One admitted call finished at now_ns after latency_ns (0 counts as 1 ns),
 * dropped non-zero when it timed out or was refused for overload (counted
 * in `dropped`); p is what its admission filled. Updates the limit.
 * Returns RS_OK, or RS_EINVAL when no call is in flight (nothing changes). */
int rs_adaptive_release(rs_adaptive *a, const rs_adaptive_permit *p, uint64_t now_ns,
                        uint64_t latency_ns, int dropped);

/* An admitted call that ended without an outcome (it was cancelled) gives
 * its slot back: nothing is sampled or counted. Returns RS_OK, or RS_EINVAL
 * when no call is in flight (nothing changes). */
RS_INLINE int rs_adaptive_discard(rs_adaptive *a) {
    if (RS_UNLIKELY(a->in_flight == 0)) {
        return RS_EINVAL;
    }
    a->in_flight--;
    return RS_OK;
}

#endif /* RS_ADAPTIVE_H */
