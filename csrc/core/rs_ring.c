/* rs_ring.c - bounded FIFO with enqueue times. */
#include "rs_ring.h"

#include <string.h>

const rs_field RS_RING_CAPACITY_FIELD = {"maxsize", RS_FIELD_INT, 1, RS_RING_MAX_CAPACITY, 0, NULL};

rs_status rs_ring_init(rs_ring *r, uint32_t capacity, uint64_t now_ns) {
    memset(r, 0, sizeof *r);
    if (!rs_field_ok(&RS_RING_CAPACITY_FIELD, capacity)) {
        return RS_EINVAL;
    }
    r->items = rs_calloc(capacity, sizeof(void *));
    r->times = rs_calloc(capacity, sizeof(uint64_t));
    if (!r->items || !r->times) {
        rs_ring_free(r);
        return RS_ENOMEM;
    }
    r->capacity = r->limit = capacity;
    r->base_ns = now_ns;
    return RS_OK;
}

rs_status rs_ring_resize(rs_ring *r, uint32_t limit) {
    if (!rs_field_ok(&RS_RING_CAPACITY_FIELD, limit)) {
        return RS_EINVAL;
    }
    uint32_t slots = limit > r->len ? limit : r->len;
    if (slots != r->capacity) {
        void **items = rs_calloc(slots, sizeof(void *));
        uint64_t *times = rs_calloc(slots, sizeof(uint64_t));
        if (!items || !times) {
            rs_free(items);
            rs_free(times);
            return RS_ENOMEM;
        }
        for (uint32_t i = 0, k = r->head; i < r->len; i++, k = k + 1 == r->capacity ? 0 : k + 1) {
            items[i] = r->items[k];
            times[i] = r->times[k];
        }
        rs_free(r->items);
        rs_free(r->times);
        r->items = items;
        r->times = times;
        r->capacity = slots;
        r->head = 0;
    }
    r->limit = limit;
    return RS_OK;
}

void rs_ring_free(rs_ring *r) {
    rs_free(r->items);
    rs_free(r->times);
    r->items = NULL;
    r->times = NULL;
    r->len = 0;
}

void *rs_ring_at(const rs_ring *r, uint32_t i) {
    uint32_t k = r->head + i;
    if (k >= r->capacity) {
        k -= r->capacity;
    }
    return r->items[k];
}

uint64_t rs_ring_oldest_age(const rs_ring *r, uint64_t now_ns) {
    if (!r->len) {
        return 0;
    }
    uint64_t t = r->times[r->head];
    return now_ns > t ? now_ns - t : 0;
}

double rs_ring_mean_age(const rs_ring *r, uint64_t now_ns) {
    if (!r->len) {
        return 0.0;
    }
    double mean = r->time_sum / (double)r->len;
    double age = (double)(int64_t)(now_ns - r->base_ns) - mean;
    return age > 0.0 ? age : 0.0;
}
