/* rs_rate.h - a sliding-window event-rate counter, for event-storm detection.
 *
 * An accepted event at time t counts at time now while now - t < window_ns
 * (at exactly window_ns old it no longer counts). rs_rate_hit accepts an
 * event only while fewer than `threshold` accepted events count; a refused
 * event is not recorded, so flow resumes as old events age out. The count is
 * exact: the rate keeps one timestamp (8 bytes) per kept event in a ring it
 * owns until rs_rate_free. The ring's size follows the events, not the
 * threshold: nothing is allocated until the first event, the ring doubles
 * (from RS_RATE_MIN_CAP slots, up to `threshold`) when every slot holds an
 * event that still counts, and rs_rate_count halves it or more once three
 * quarters of it are free, so it never holds more than
 * max(RS_RATE_MIN_CAP, 4 x the events counting at the last rs_rate_count)
 * slots - unless a shrinking allocation failed, which only leaves the
 * larger ring in place.
 *
 * Time never goes backwards here: every operation that takes now_ns first
 * raises it to the largest now_ns seen since init (a monotone clamp), so a
 * caller whose clock steps back sees time stand still, never undefined
 * behaviour. rs_rate_reset keeps that clamp. */
#ifndef RS_RATE_H
#define RS_RATE_H

#include "rs_common.h"
#include "rs_field.h"

#define RS_RATE_MAX_THRESHOLD (1u << 24) /* 16,777,216 events: at most a 128 MiB ring */
#define RS_RATE_MIN_CAP 8u               /* the first ring's slots (or threshold if fewer) */

typedef enum rs_rate_field {
    RS_RTF_THRESHOLD = 0,
    RS_RTF_WINDOW,
    RS_RTF_COUNT
} rs_rate_field;

/* Name and allowed values of each field (window in seconds: at least 1 ns). */
extern const rs_field RS_RATE_FIELDS[RS_RTF_COUNT];

typedef struct rs_rate {
    uint64_t *times;    /* kept times in time order, oldest at head; NULL when cap is 0; owned */
    uint64_t window_ns;
    uint32_t threshold; /* most events that may count at once */
    uint32_t cap;       /* slots in times: 0, or min(threshold, RS_RATE_MIN_CAP)..threshold */
    uint32_t head;      /* oldest kept time */
    uint32_t len;       /* kept times (aged-out ones not yet dropped included) */
    uint64_t last_ns;   /* largest now_ns seen: the monotone clamp */
    uint64_t accepted, refused;
} rs_rate;

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field (1 <= threshold <=
 * RS_RATE_MAX_THRESHOLD, then window_ns >= 1). Allocates nothing: r holds no
 * memory until its first event, and is safe to pass to rs_rate_free after a
 * failed init. */
int rs_rate_init(rs_rate *r, uint64_t threshold, uint64_t window_ns);

/* Frees the ring. Safe after a failed init and when called twice. */
void rs_rate_free(rs_rate *r);

/* Accepts and records an event at now_ns when fewer than threshold accepted
 * events count at now_ns: returns RS_OK and counts it in accepted.
 * Otherwise refuses it, records nothing, counts it in refused and returns
 * RS_EREJECTED. Returns RS_ENOMEM when the event would be accepted but the
 * ring had to grow and the allocation failed: then nothing is changed (not
 * counted, clamp untouched). O(1), except when the ring grows (a copy of
 * the kept times): amortised O(1). */
int rs_rate_hit(rs_rate *r, uint64_t now_ns);

/* Grows the ring now if a hit at now_ns or later might have to: after RS_OK
 * the next rs_rate_hit cannot return RS_ENOMEM, whatever rs_rate_count calls
 * happen in between (another hit uses the reservation up). RS_ENOMEM: the
 * allocation failed and nothing is changed. Does not move the clamp. */
int rs_rate_reserve(rs_rate *r, uint64_t now_ns);

/* Accepted events that count at now_ns; drops the aged-out ones and shrinks
 * the ring when three quarters of it are free (if that allocation fails the
 * ring simply stays as it is). O(log len), plus a copy of the kept times when
 * the ring shrinks; cannot fail. */
uint64_t rs_rate_count(rs_rate *r, uint64_t now_ns);

/* Forgets every event, zeroes accepted and refused and frees the ring; keeps
 * the configuration and the time clamp. */
void rs_rate_reset(rs_rate *r);

/* Bytes the ring holds (cap x 8). */
size_t rs_rate_memory(const rs_rate *r);

#endif /* RS_RATE_H */
