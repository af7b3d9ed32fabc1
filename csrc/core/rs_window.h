/* rs_window.h - sliding windows of call outcomes, and a ring of latencies.
 *
 * rs_window counts outcomes (total, failures, slow) over either the last N
 * outcomes (count window) or the last `duration` nanoseconds split into
 * nbuckets buckets of duration / nbuckets ns each (time window;
 * RS_WINDOW_BUCKETS unless given). Both also cut the stream into
 * periods - every max(1, N / 10) outcomes, or one bucket - and report each
 * finished period's failure rate, which feeds the breaker's EWMA. A time
 * period with no outcomes is skipped.
 *
 * Time window rule: bucket ids are now_ns / width_ns; an outcome added while
 * the head bucket is id e counts until the window rolls to id e + nbuckets
 * (between nbuckets - 1 and nbuckets bucket widths), the slot rule of
 * rs_hist_window with nslots = nbuckets and slot_ns = width_ns.
 *
 * rs_latring keeps the last `cap` latencies (milliseconds) with their running
 * sum and sum of squares; the sums are recomputed exactly each time the ring
 * wraps, so rounding drift cannot accumulate. */
#ifndef RS_WINDOW_H
#define RS_WINDOW_H

#include "rs_common.h"
#include "rs_field.h"

#define RS_WINDOW_BUCKETS 10     /* buckets of rs_window_init_time */
#define RS_WINDOW_MAX_BUCKETS 64 /* most buckets of a time window */
#define RS_WINDOW_MAX_SIZE 1000000u

enum { RS_OUTCOME_FAILED = 1, RS_OUTCOME_SLOW = 2 };

/* The fields of a time window cut into slots (resil.WindowedCounter): its
 * duration and its bucket count. rs_window_init_buckets also needs the
 * duration to give every bucket at least 1 ns. */
typedef enum rs_window_field { RS_WNF_WINDOW = 0, RS_WNF_SLOTS, RS_WNF_COUNT } rs_window_field;
extern const rs_field RS_WINDOW_FIELDS[RS_WNF_COUNT];

typedef struct rs_bucket {
    uint32_t total;
    uint32_t failures;
    uint32_t slow;
} rs_bucket;

typedef struct rs_window {
    int timed;
    /* count window */
    uint8_t *ring; /* RS_OUTCOME_* flags, owned; NULL for a time window */
    uint32_t size;
    uint32_t pos;
    uint32_t filled;
    uint32_t period;   /* outcomes per period */
    uint32_t period_n; /* outcomes in the current period */
    uint32_t period_f; /* failures in the current period */
    /* time window */
    uint64_t width_ns; /* bucket width */
    uint64_t head_id;  /* now_ns / width_ns of the newest bucket */
    uint32_t nbuckets; /* buckets in use, 1..RS_WINDOW_MAX_BUCKETS */
    uint32_t head_pos; /* head_id % nbuckets */
    rs_bucket buckets[RS_WINDOW_MAX_BUCKETS];
    /* totals over the whole window */
    uint64_t total;
    uint64_t failures;
    uint64_t slow;
} rs_window;

/* Returns RS_EINVAL unless 1 <= size <= RS_WINDOW_MAX_SIZE, RS_ENOMEM if the
 * ring cannot be allocated; w is then safe to pass to rs_window_free. */
rs_status rs_window_init_count(rs_window *w, uint32_t size);
/* As rs_window_init_count over a ring the caller owns: size zeroed bytes
 * (RS_EINVAL only). rs_window_free must not be called on it. */
rs_status rs_window_init_count_at(rs_window *w, uint32_t size, uint8_t *ring);
/* A time window of RS_WINDOW_BUCKETS buckets. Returns RS_EINVAL unless
 * duration_ns >= RS_WINDOW_BUCKETS. */
rs_status rs_window_init_time(rs_window *w, uint64_t duration_ns, uint64_t now_ns);
/* A time window of nbuckets buckets. Returns RS_EINVAL unless 1 <= nbuckets
 * <= RS_WINDOW_MAX_BUCKETS and duration_ns >= nbuckets. No allocation. */
rs_status rs_window_init_buckets(rs_window *w, uint64_t duration_ns, uint32_t nbuckets,
                                 uint64_t now_ns);
void rs_window_free(rs_window *w);

/* Empties the window and the current period. */
void rs_window_clear(rs_window *w, uint64_t now_ns);

/* Time window: moves the window to now_ns, dropping buckets that fell out.
 * Returns 1 and stores the failure rate of the bucket that just ended in
 * *period_rate when that bucket held outcomes, else 0. A count window never
 * rolls. now_ns must not go backwards (the caller clamps it). */
int rs_window_roll(rs_window *w, uint64_t now_ns, double *period_rate);

/* Adds one outcome (RS_OUTCOME_* flags) at the current position. Returns 1
 * and stores the finished period's failure rate when the outcome completes a
 * count-window period, else 0. */
RS_INLINE int rs_window_add(rs_window *w, unsigned flags, double *period_rate) {
    unsigned failed = (flags & RS_OUTCOME_FAILED) ? 1u : 0u;
    unsigned slow = (flags & RS_OUTCOME_SLOW) ? 1u : 0u;
    w->total++;
    w->failures += failed;
    w->slow += slow;
    if (w->timed) {
        rs_bucket *b = &w->buckets[w->head_pos];
        b->total++;
        b->failures += failed;
        b->slow += slow;
        return 0;
    }
    if (w->filled == w->size) {
        uint8_t old = w->ring[w->pos];
        w->total--;
        w->failures -= (old & RS_OUTCOME_FAILED) ? 1u : 0u;
        w->slow -= (old & RS_OUTCOME_SLOW) ? 1u : 0u;
    } else {
        w->filled++;
    }
    w->ring[w->pos] = (uint8_t)(failed | (slow << 1));
    w->pos = w->pos + 1 == w->size ? 0 : w->pos + 1;
    w->period_n++;
    w->period_f += failed;
    if (w->period_n == w->period) {
        *period_rate = (double)w->period_f / (double)w->period_n;
        w->period_n = 0;
        w->period_f = 0;
        return 1;
    }
    return 0;
}

/* Time window: adds n unflagged outcomes to the head bucket at once. Returns
 * RS_EINVAL, changing nothing, when the head bucket's count would pass
 * UINT32_MAX (or for a count window); n = 0 changes nothing. */
rs_status rs_window_add_n(rs_window *w, uint64_t n);

/* Time window in a shared region: 1 when its totals are the sums of its
 * buckets and its head position matches its head id (what an add or a
 * roll killed half-way can break), else 0. */
int rs_window_consistent(const rs_window *w);
/* Time window: recomputes the totals from the buckets and the head
 * position from the head id (the buckets are what a reader trusts). */
void rs_window_recount(rs_window *w);

typedef struct rs_latring {
    double *values; /* owned */
    uint32_t cap;
    uint32_t n;
    uint32_t pos;
    double sum;
    double sumsq;
} rs_latring;

/* Returns RS_EINVAL unless 1 <= cap <= RS_WINDOW_MAX_SIZE, RS_ENOMEM when
 * the ring cannot be allocated. */
rs_status rs_latring_init(rs_latring *l, uint32_t cap);
/* As rs_latring_init over cap zeroed doubles the caller owns (RS_EINVAL
 * only). rs_latring_free must not be called on it. */
rs_status rs_latring_init_at(rs_latring *l, uint32_t cap, double *values);
void rs_latring_free(rs_latring *l);
void rs_latring_clear(rs_latring *l);
/* Recomputes the sums once the ring wraps (rs_latring_push calls it). */
void rs_latring_resum(rs_latring *l);
/* Recomputes the sums from the n values held, the position kept. */
void rs_latring_sums(rs_latring *l);
RS_INLINE void rs_latring_push(rs_latring *l, double ms) {
    if (l->n == l->cap) {
        double old = l->values[l->pos];
        l->sum -= old;
        l->sumsq -= old * old;
    } else {
        l->n++;
    }
    l->values[l->pos] = ms;
    l->sum += ms;
    l->sumsq += ms * ms;
    if (++l->pos == l->cap) {
        rs_latring_resum(l);
    }
}
/* Mean and population standard deviation; 0 when empty. */
double rs_latring_mean(const rs_latring *l);
double rs_latring_stddev(const rs_latring *l);

#endif /* RS_WINDOW_H */
