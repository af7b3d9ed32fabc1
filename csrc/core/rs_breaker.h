/* rs_breaker.h - the circuit breaker state machine.
 *
 * Every operation takes the current time in nanoseconds. Time is clamped so
 * that it never goes backwards inside one breaker (several threads may read
 * a clock and arrive out of order). Each operation first "ticks": it rolls a
 * time window, turns OPEN into HALF_OPEN (or CLOSED with zero probes) once
 * the cooldown has elapsed, and turns an undecided HALF_OPEN back into OPEN
 * after half_open_max_wait. Operations never fail once the breaker is
 * initialised; transitions are queued for the caller to drain and report.
 *
 * Ownership: rs_breaker_init allocates the window and latency ring through
 * the rs_alloc hooks; rs_breaker_free releases them. An rs_ejector is owned
 * by the caller and must outlive every breaker attached to it. */
#ifndef RS_BREAKER_H
#define RS_BREAKER_H

#include "rs_common.h"
#include "rs_ewma.h"
#include "rs_field.h"
#include "rs_region.h"
#include "rs_window.h"

typedef enum rs_state {
    RS_STATE_CLOSED = 0,
    RS_STATE_DEGRADED = 1,
    RS_STATE_OPEN = 2,
    RS_STATE_HALF_OPEN = 3,
    RS_STATE_FORCED_OPEN = 4,
    RS_STATE_DISABLED = 5,
    RS_STATE_COUNT = 6
} rs_state;

typedef enum rs_reason {
    RS_REASON_CONSECUTIVE_FAILURES = 0,
    RS_REASON_FAILURE_RATE,
    RS_REASON_SLOW_CALL_RATE,
    RS_REASON_HEALTH_CRITICAL,
    RS_REASON_HEALTH_LOW,
    RS_REASON_HEALTH_RECOVERED,
    RS_REASON_EJECTION_CAPPED,
    RS_REASON_COOLDOWN_ELAPSED,
    RS_REASON_PROBE_FAILED,
    RS_REASON_PROBES_SUCCEEDED,
    RS_REASON_HALF_OPEN_TIMEOUT,
    RS_REASON_FORCE_OPEN,
    RS_REASON_DISABLE,
    RS_REASON_RESET,
    RS_REASON_MANUAL_OPEN,
    RS_REASON_MANUAL_CLOSE,
    RS_REASON_CLUSTER,
    RS_REASON_COUNT
} rs_reason;

/* Names used in logs and stats: "CLOSED", ...; "consecutive_failures", ... */
const char *rs_state_name(int state);
const char *rs_reason_name(int reason);

typedef struct rs_breaker_config {
    uint32_t failure_threshold;       /* consecutive failures; 0 = rule off */
    int failure_rate_enabled;
    double failure_rate_threshold;    /* (0, 1] */
    int slow_call_enabled;
    double slow_call_ms;              /* > 0 */
    double slow_call_rate_threshold;  /* (0, 1] */
    uint32_t window_size;             /* count window, [1, RS_WINDOW_MAX_SIZE] */
    uint64_t window_duration_ns;      /* 0 = count window, else >= 10 ns */
    uint32_t minimum_calls;           /* <= window_size for a count window */
    uint64_t cooldown_ns;
    double cooldown_multiplier;       /* >= 1 */
    uint64_t cooldown_max_ns;         /* >= cooldown_ns */
    uint32_t half_open_probes;        /* [0, RS_WINDOW_MAX_SIZE] */
    uint64_t half_open_max_wait_ns;   /* 0 = off */
    int adaptive;
    double ewma_alpha;                /* [0.01, 1] */
    double sensitivity;               /* [0.5, 5] */
    double min_health_score;          /* [0, 1] */
    uint32_t latency_window;          /* [1, RS_WINDOW_MAX_SIZE] */
} rs_breaker_config;

/* Fills c with the documented defaults. */
void rs_breaker_config_default(rs_breaker_config *c);

/* Configuration fields, for error reporting: a bad field makes init return
 * RS_EFIELD_BASE + field. */
typedef enum rs_breaker_field {
    RS_BF_FAILURE_THRESHOLD = 0,
    RS_BF_FAILURE_RATE_THRESHOLD,
    RS_BF_SLOW_CALL_DURATION,
    RS_BF_SLOW_CALL_RATE_THRESHOLD,
    RS_BF_WINDOW_SIZE,
    RS_BF_WINDOW_DURATION,
    RS_BF_MINIMUM_CALLS,
    RS_BF_COOLDOWN,
    RS_BF_COOLDOWN_MULTIPLIER,
    RS_BF_COOLDOWN_MAX,
    RS_BF_HALF_OPEN_PROBES,
    RS_BF_HALF_OPEN_MAX_WAIT,
    RS_BF_EWMA_ALPHA,
    RS_BF_SENSITIVITY,
    RS_BF_MIN_HEALTH_SCORE,
    RS_BF_LATENCY_WINDOW,
    RS_BF_COUNT
} rs_breaker_field;

/* Bounds of the adaptive parameters. */
#define RS_BREAKER_MIN_EWMA_ALPHA 0.01
#define RS_BREAKER_MIN_SENSITIVITY 0.5
#define RS_BREAKER_MAX_SENSITIVITY 5.0

/* Name (as the binding takes the parameter, in seconds where the field is
 * a duration) and allowed values of each field (rs_breaker_fields.c). */
extern const rs_field RS_BREAKER_FIELDS[RS_BF_COUNT];

/* The ejector's max_percent: a percentage of the group's members. */
#define RS_EJECTOR_MAX_PERCENT 100
extern const rs_field RS_EJECTOR_PERCENT_FIELD;

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field. */
int rs_breaker_config_check(const rs_breaker_config *c);

/* Shared ejection budget of a group of breakers: at most max_percent of the
 * members may be ejected (OPEN, HALF_OPEN or FORCED_OPEN) at once, but one
 * member always may. Automatic trips past the budget are vetoed. */
typedef struct rs_ejector {
    uint32_t max_percent; /* [0, 100] */
    uint32_t members;
    uint32_t ejected;
    uint64_t vetoed;
} rs_ejector;

rs_status rs_ejector_init(rs_ejector *e, uint32_t max_percent);
int rs_ejector_can_eject(const rs_ejector *e);

enum { RS_PERMIT_NORMAL = 0, RS_PERMIT_PROBE = 1 };

typedef struct rs_permit {
    uint64_t epoch;
    int kind;     /* RS_PERMIT_* */
    int32_t slot; /* a breaker in a region: the probe's permit record, else -1 */
} rs_permit;

typedef struct rs_transition {
    uint8_t old_state;
    uint8_t new_state;
    uint8_t reason;
    uint64_t consecutive_failures;
    double success_rate; /* over the window, 1.0 when empty */
    double latency_ms;   /* latency of the outcome that caused it, or -1 */
} rs_transition;

#define RS_BREAKER_PENDING 8

typedef struct rs_breaker_counters {
    uint64_t permitted;
    uint64_t rejected;
    uint64_t successes;
    uint64_t failures;
    uint64_t slow;
    uint64_t released;
    uint64_t stale;   /* outcomes from an earlier epoch */
    uint64_t vetoed;  /* trips refused by the ejection budget */
    uint64_t transitions[RS_STATE_COUNT]; /* entries into each state */
} rs_breaker_counters;

typedef struct rs_breaker {
    rs_breaker_config cfg;
    int state;
    uint64_t epoch;
    uint64_t now_ns;          /* latest time seen (time never goes backwards) */
    uint64_t opened_at_ns;
    int ever_opened;
    uint64_t half_open_since_ns;
    uint64_t cooldown_cur_ns; /* grows on each reopen from HALF_OPEN */
    uint32_t probes_granted;
    uint32_t probe_successes;
    uint64_t consecutive_failures;
    double cause_latency_ms;  /* latency of the outcome being applied, else -1 */
    double latency_part;      /* 0.3 * latency score + 0.2 * jitter score */
    int latency_dirty;        /* latency_part needs recomputing (lazily) */
    uint32_t eff_threshold;   /* effective threshold, recomputed when the EWMA moves */
    rs_window window;
    rs_latring latencies;
    rs_ewma ewma;
    rs_ejector *ejector;      /* borrowed, may be NULL */
    rs_breaker_counters counters;
    rs_transition pending[RS_BREAKER_PENDING];
    uint32_t pending_head;
    uint32_t pending_len;
    uint64_t pending_dropped;
} rs_breaker;

/* Validates c and allocates the windows. Returns RS_OK, RS_ENOMEM, or
 * RS_EFIELD_BASE + field for a bad field; on failure nothing needs freeing. */
int rs_breaker_init(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns);
void rs_breaker_free(rs_breaker *b);
/* As rs_breaker_init over arrays the caller owns and keeps zeroed until
 * then: ring, window_size bytes for a count window (unused for a time
 * window), and values, latency_window doubles. No allocation: RS_OK or
 * RS_EFIELD_BASE + field. rs_breaker_free and rs_breaker_configure must
 * not be called on it. */
int rs_breaker_init_at(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns,
                       uint8_t *ring, double *values);

/* Replaces the configuration of a running breaker, all or nothing: returns
 * RS_OK, or RS_ENOMEM or RS_EFIELD_BASE + the first bad field with nothing
 * changed. The state, counters, consecutive failures and the EWMA are kept.
 * A new window_size of a count window keeps the newest outcomes that fit;
 * switching between a count and a time window, or a new window_duration,
 * starts the window empty (outcomes carry no times to re-bucket); a new
 * latency_window keeps the newest latencies that fit. The current cooldown
 * keeps its growth factor, applied to the new cooldown and capped by the new
 * cooldown_max. A HALF_OPEN breaker that already has the new
 * half_open_probes successes closes; an OPEN one whose new cooldown has
 * elapsed moves on as a tick would. Transitions are queued as usual. */
int rs_breaker_configure(rs_breaker *b, const rs_breaker_config *c, uint64_t now_ns);

/* Attaches b to an ejector (counted as a member) or detaches it (e = NULL). */
void rs_breaker_set_ejector(rs_breaker *b, rs_ejector *e);

/* Lazy time-driven transitions; every operation below calls it first. */
void rs_breaker_tick(rs_breaker *b, uint64_t now_ns);

/* Returns RS_OK and fills *p, or RS_EREJECTED. On rejection *remaining_ns is
 * the time until HALF_OPEN (0 when already half-open), or UINT64_MAX when
 * forced open. */
rs_status rs_breaker_acquire(rs_breaker *b, uint64_t now_ns, rs_permit *p,
                             uint64_t *remaining_ns);

/* Outcomes of a permit. latency_ms < 0 means "no latency sample". An
 * outcome from an earlier epoch updates statistics but drives no transition.
 * A NULL permit reports an outcome of a call made without a permit: it is
 * treated as a permit of the current epoch (a probe when HALF_OPEN) and
 * drives transitions except in OPEN and FORCED_OPEN. */
void rs_breaker_success(rs_breaker *b, const rs_permit *p, double latency_ms,
                        uint64_t now_ns);
void rs_breaker_failure(rs_breaker *b, const rs_permit *p, double latency_ms,
                        uint64_t now_ns);
/* Gives the permit back without an outcome (cancelled or ignored call). */
void rs_breaker_release(rs_breaker *b, const rs_permit *p, uint64_t now_ns);

/* Manual control. */
void rs_breaker_force_open(rs_breaker *b, uint64_t now_ns);
void rs_breaker_disable(rs_breaker *b, uint64_t now_ns);
void rs_breaker_reset(rs_breaker *b, uint64_t now_ns);
void rs_breaker_open(rs_breaker *b, uint64_t now_ns);
void rs_breaker_close(rs_breaker *b, uint64_t now_ns);

/* Makes b follow a decision taken elsewhere (a cluster of processes), with
 * reason RS_REASON_CLUSTER. state RS_STATE_OPEN: OPEN for cooldown_ns from
 * now (already OPEN: the remaining time becomes cooldown_ns, no transition);
 * the current cooldown becomes cooldown_ns, so a later reopen grows from it.
 * RS_STATE_HALF_OPEN: HALF_OPEN now with no probe granted (already
 * HALF_OPEN: nothing). RS_STATE_CLOSED: the window, latencies and
 * consecutive failures are cleared and the cooldown reset; CLOSED unless it
 * already is CLOSED or DEGRADED. Any other state: nothing. */
void rs_breaker_follow(rs_breaker *b, uint64_t now_ns, int state, uint64_t cooldown_ns);

/* Derived values at the last tick. */
double rs_breaker_signal(const rs_breaker *b);
uint32_t rs_breaker_effective_threshold(const rs_breaker *b);
/* Recomputes the latency part of the score first when samples changed. */
double rs_breaker_health(rs_breaker *b);
double rs_breaker_success_rate(const rs_breaker *b);
/* Nanoseconds until HALF_OPEN while OPEN; 0 otherwise. */
uint64_t rs_breaker_remaining(const rs_breaker *b);

/* Health-score parts, exposed for tests. */
double rs_latency_score(double mean_ms);
double rs_jitter_score(double stddev_ms);

/* Pops the oldest queued transition into *t; returns 0 when none. */
int rs_breaker_pop_transition(rs_breaker *b, rs_transition *t);

/* ---- a breaker in a region (shared by processes) ------------------------
 *
 * The block: its mutex, an rs_breaker, the figures the binding keeps beside
 * it, one rs_region_permit record per half-open probe, then the count
 * window's ring (window_size bytes; none for a time window) and the
 * latency ring (latency_window doubles). The block holds the offsets of the
 * two rings from its start; the rs_breaker's two array pointers are
 * scratch, set from those offsets by rs_breaker_block_core each time a
 * process takes the lock, so a pointer written by one process is never
 * followed by another. A breaker in a region has no ejector and is never
 * reconfigured (its parameters are fixed in the region's directory).
 *
 * Parameters (RS_BREAKER_REGION_PARAMS words): the RS_BREAKER_FIELDS in
 * order, then `adaptive`; an INT field as its integer, a NUMBER as its
 * double's bits, a SECONDS field (slow_call_duration included) as
 * nanoseconds; an optional rule that is off (failure_rate_threshold,
 * slow_call_duration, window_duration, half_open_max_wait) as 0, a value
 * the field's bounds exclude.
 *
 * Probes: the process that takes a probe records itself (pid, start time)
 * in a free record tagged with the epoch; its outcome or release frees the
 * record. A HALF_OPEN breaker with every probe taken asks, at most once a
 * lease per record, whether each holder still lives, and gives back the
 * probe of one that died (rs_breaker_block_reclaim). Records of an earlier
 * epoch are stale (their outcome changes nothing) and are freed when a
 * probe needs the room.
 *
 * Crash safety. Every update runs under the block's lock and goes through
 * rs_breaker_block_run / _acquire / _outcome. An update that starts while
 * the breaker is OPEN or HALF_OPEN, where probes are handed out and their
 * records kept, first journals the breaker and the records (a copy in the
 * block, marked valid last); a holder killed mid-update leaves the journal
 * valid, and the repair puts the copy back: the update never happened, so
 * a probe is never counted without its record nor a record kept for a
 * probe that reported. In CLOSED, DEGRADED or DISABLED no probe is at
 * stake and nothing is journaled (the common path stays cheap); what a
 * half-done update can leave there the repair recomputes: window counts
 * from the ring or buckets (one outcome may replace the window's oldest),
 * latency sums from the ring, a transition queued for the dead process's
 * listeners (dropped), a state or count out of range. */
#define RS_BREAKER_TAG 0x6272656bu /* "brek" */
#define RS_BREAKER_REGION_PARAMS (RS_BF_COUNT + 1)

typedef struct rs_breaker_block {
    rs_region_mutex lock;
    rs_breaker core;
    uint64_t ring_off, values_off;  /* the rings, from the block's start; 0: none */
    uint64_t nprobes;               /* permit records: half_open_probes */
    uint64_t reclaimed;             /* probes given back from dead holders */
    double opened_unix;             /* Unix time of the last opening */
    uint64_t journaled;             /* 1 while `saved` holds the state before an update */
    uint64_t reserved[2];
    rs_breaker saved;               /* the journal: core ... */
    rs_region_permit probe[];       /* nprobes records, then the journal's copy of them */
} rs_breaker_block;

extern const rs_region_type RS_BREAKER_REGION_TYPE;
/* `adaptive` as a region parameter (0 or 1), after the RS_BREAKER_FIELDS. */
extern const rs_field RS_BREAKER_ADAPTIVE_FIELD;

/* The region parameters of configuration c (checked). */
void rs_breaker_region_params(const rs_breaker_config *c, uint64_t params[RS_REGION_PARAMS]);
/* The configuration region parameters make: RS_OK, or RS_EINVAL when they
 * are not a valid breaker's (a damaged file). */
rs_status rs_breaker_params_config(const uint64_t *params, rs_breaker_config *c);

/* The block's breaker, its ring pointers set for this process; the caller
 * holds the lock. */
rs_breaker *rs_breaker_block_core(rs_breaker_block *blk);

/* rs_breaker_acquire for process me: a probe is recorded (p->slot its
 * record). When a HALF_OPEN breaker has no probe left, dead holders'
 * probes are reclaimed first (alive: see rs_region_permit_reclaim). The
 * caller holds the lock; so for the two below. */
rs_status rs_breaker_block_acquire(rs_breaker_block *blk, uint64_t now_ns, rs_permit *p,
                                   uint64_t *remaining_ns, const rs_region_holder *me,
                                   uint64_t lease_ns, rs_region_alive_fn alive, void *actx);
/* An outcome (RS_BLOCK_SUCCESS, _FAILURE or _RELEASE) of permit p (NULL:
 * a call made without one); a probe's record is freed with it, whichever
 * process reports it (me is unused: a child forked while the permit was
 * out reports it too). */
enum { RS_BLOCK_SUCCESS = 0, RS_BLOCK_FAILURE = 1, RS_BLOCK_RELEASE = 2 };
void rs_breaker_block_outcome(rs_breaker_block *blk, const rs_permit *p, int kind,
                              double latency_ms, uint64_t now_ns, const rs_region_holder *me);
/* Any other update: op(core, now_ns) (a tick, a manual control). */
void rs_breaker_block_run(rs_breaker_block *blk, void (*op)(rs_breaker *, uint64_t),
                          uint64_t now_ns);

#endif /* RS_BREAKER_H */
