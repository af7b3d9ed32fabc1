/* rs_rate.h - a sliding-window event-rate counter, for event-storm detection.
 *
 * An accepted event at time t counts at time now while now - t < window_ns
 * (at exactly window_ns old it no longer counts). rs_rate_hit accepts an
 * event only while fewer than `threshold` accepted events count; a refused
 * event is not recorded, so flow resumes as old events age out. The count is
 * exact: the rate keeps one timestamp per counting event in a ring of
 * `threshold` slots, allocated once at init (8 bytes per slot) and owned by
 * the rate until rs_rate_free. Nothing else allocates.
 *
 * Time never goes backwards here: every operation that takes now_ns first
 * raises it to the largest now_ns seen since init (a monotone clamp), so a
 * caller whose clock steps back sees time stand still, never undefined
 * behaviour. rs_rate_reset keeps that clamp. */
#ifndef RS_RATE_H
#define RS_RATE_H

#include <stdbool.h>

#include "rs_common.h"

#define RS_RATE_MAX_THRESHOLD (1u << 24) /* 16,777,216 events: a 128 MiB ring */

typedef enum rs_rate_field {
    RS_RTF_THRESHOLD = 0,
    RS_RTF_WINDOW,
    RS_RTF_COUNT
} rs_rate_field;

const char *rs_rate_field_name(int field);
const char *rs_rate_field_range(int field);

typedef struct rs_rate {
    uint64_t *times;    /* accepted times in time order, oldest at head; owned */
    uint64_t window_ns;
    uint32_t threshold; /* ring capacity */
    uint32_t head;      /* oldest kept time */
    uint32_t len;       /* kept times (aged-out ones not yet dropped included) */
    uint64_t last_ns;   /* largest now_ns seen: the monotone clamp */
    uint64_t accepted, refused;
} rs_rate;

/* Returns RS_OK, RS_EFIELD_BASE + the first bad field (1 <= threshold <=
 * RS_RATE_MAX_THRESHOLD, then window_ns >= 1) or RS_ENOMEM when the ring
 * cannot be allocated. On any failure r holds no memory and is safe to pass
 * to rs_rate_free. */
int rs_rate_init(rs_rate *r, uint64_t threshold, uint64_t window_ns);

/* Frees the ring. Safe after a failed init and when called twice. */
void rs_rate_free(rs_rate *r);

/* Accepts and records an event at now_ns when fewer than threshold accepted
 * events count at now_ns (true), otherwise refuses it and records nothing
 * (false). Counts it in accepted or refused. O(1) worst case; cannot fail. */
bool rs_rate_hit(rs_rate *r, uint64_t now_ns);

/* Accepted events that count at now_ns; drops the aged-out ones.
 * O(log threshold) worst case; cannot fail. */
uint64_t rs_rate_count(rs_rate *r, uint64_t now_ns);

/* Forgets every event and zeroes accepted and refused; keeps the ring, the
 * configuration and the time clamp. */
void rs_rate_reset(rs_rate *r);

#endif /* RS_RATE_H */
