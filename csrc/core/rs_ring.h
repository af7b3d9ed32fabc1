/* rs_ring.h - a bounded FIFO of opaque pointers with enqueue times:
 * the storage of resil's queues and their age statistics.
 *
 * Fixed memory allocated at init (and at rs_ring_resize); push and pop are
 * O(1) and cannot fail once initialised, except that push refuses an item
 * while the ring holds `limit` or more. The caller owns the items; the ring
 * only stores pointers. */
#ifndef RS_RING_H
#define RS_RING_H

#include "rs_common.h"
#include "rs_field.h"

#define RS_RING_MAX_CAPACITY (1u << 30)

/* The capacity's allowed values, named as a queue's maxsize. */
extern const rs_field RS_RING_CAPACITY_FIELD;

typedef struct rs_ring {
    void **items;
    uint64_t *times; /* enqueue time of each item, ns */
    uint32_t capacity; /* slots allocated */
    uint32_t limit;    /* push refuses at len >= limit; <= capacity */
    uint32_t head;   /* oldest item */
    uint32_t len;
    double time_sum; /* sum of (enqueue time - base) over held items, for the mean age */
    uint64_t base_ns;
} rs_ring;

/* Returns RS_EINVAL unless 1 <= capacity <= RS_RING_MAX_CAPACITY, RS_ENOMEM
 * when allocation fails (r is then safe to pass to rs_ring_free). */
rs_status rs_ring_init(rs_ring *r, uint32_t capacity, uint64_t now_ns);
void rs_ring_free(rs_ring *r);

/* Sets the limit of a ring in use, keeping every item it holds, in order,
 * with its time: a limit below len refuses pushes until pops bring len
 * below it. The slots become max(limit, len), so a lower limit returns
 * memory. Returns RS_EINVAL unless 1 <= limit <= RS_RING_MAX_CAPACITY,
 * RS_ENOMEM when the new slots cannot be allocated; nothing changes then. */
rs_status rs_ring_resize(rs_ring *r, uint32_t limit);

/* Returns RS_EREJECTED when the ring holds `limit` items or more; the item
 * is not stored.
 * Push and pop are defined here so that every caller's hot path inlines them. */
RS_INLINE rs_status rs_ring_push(rs_ring *r, void *item, uint64_t now_ns) {
    if (RS_UNLIKELY(r->len >= r->limit)) {
        return RS_EREJECTED;
    }
    uint32_t i = r->head + r->len;
    if (i >= r->capacity) {
        i -= r->capacity;
    }
    r->items[i] = item;
    r->times[i] = now_ns;
    r->time_sum += (double)(int64_t)(now_ns - r->base_ns);
    r->len++;
    return RS_OK;
}

/* Returns the oldest item and removes it; NULL when empty. */
RS_INLINE void *rs_ring_pop(rs_ring *r) {
    if (RS_UNLIKELY(r->len == 0)) {
        return NULL;
    }
    void *item = r->items[r->head];
    r->items[r->head] = NULL;
    r->time_sum -= (double)(int64_t)(r->times[r->head] - r->base_ns);
    r->head = r->head + 1 == r->capacity ? 0 : r->head + 1;
    if (--r->len == 0) {
        r->time_sum = 0.0; /* drop accumulated rounding */
    }
    return item;
}

/* The i-th item from the oldest (0 <= i < len), for traversal. */
void *rs_ring_at(const rs_ring *r, uint32_t i);

/* Age of the oldest item and mean age, ns; 0 when empty. */
uint64_t rs_ring_oldest_age(const rs_ring *r, uint64_t now_ns);
double rs_ring_mean_age(const rs_ring *r, uint64_t now_ns);

#endif /* RS_RING_H */
