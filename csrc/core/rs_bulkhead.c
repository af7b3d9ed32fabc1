/* rs_bulkhead.c - the admission decisions of a bulkhead. */
#include "rs_bulkhead.h"

const rs_field RS_BULKHEAD_FIELDS[RS_BHF_COUNT] = {
    {"max_concurrent", RS_FIELD_INT, 1.0, (double)RS_BULKHEAD_MAX, 0, NULL},
    {"max_queue", RS_FIELD_INT, 0.0, (double)RS_BULKHEAD_MAX, 0, NULL},
};

/* The counts agree: the reserved slots are taken ones, none beyond the
 * limits. */
#define CONSISTENT(b)                                                                     \
    RS_ASSERT((b)->handed <= (b)->active && (b)->active <= (b)->max_concurrent &&         \
              (b)->queued <= (b)->max_queue && (b)->peak_active <= (b)->max_concurrent)

int rs_bulkhead_init(rs_bulkhead *b, long long max_concurrent, long long max_queue) {
    if (!rs_field_ok(&RS_BULKHEAD_FIELDS[RS_BHF_MAX_CONCURRENT], (double)max_concurrent)) {
        return RS_EFIELD_BASE + RS_BHF_MAX_CONCURRENT;
    }
    if (!rs_field_ok(&RS_BULKHEAD_FIELDS[RS_BHF_MAX_QUEUE], (double)max_queue)) {
        return RS_EFIELD_BASE + RS_BHF_MAX_QUEUE;
    }
    b->max_concurrent = (uint32_t)max_concurrent;
    b->max_queue = (uint32_t)max_queue;
    b->active = b->queued = b->handed = b->peak_active = 0;
    b->admitted = b->rejected = b->timed_out = 0;
    return RS_OK;
}

RS_INLINE void admit(rs_bulkhead *b) {
    b->admitted++;
    if (b->active > b->peak_active) {
        b->peak_active = b->active;
    }
}

int rs_bulkhead_try_enter(rs_bulkhead *b) {
    if (RS_LIKELY(b->active < b->max_concurrent && b->queued == 0)) {
        b->active++;
        admit(b);
        CONSISTENT(b);
        return 1;
    }
    return 0;
}

int rs_bulkhead_try_acquire(rs_bulkhead *b) {
    if (rs_bulkhead_try_enter(b)) {
        return 1;
    }
    b->rejected++;
    return 0;
}

rs_bulkhead_answer rs_bulkhead_acquire(rs_bulkhead *b) {
    if (rs_bulkhead_try_enter(b)) {
        return RS_BH_ADMITTED;
    }
    if (b->queued < b->max_queue) {
        b->queued++;
        CONSISTENT(b);
        return RS_BH_QUEUED;
    }
    b->rejected++;
    return RS_BH_FULL;
}

/* Gives back a slot known to be taken. */
static int give_back(rs_bulkhead *b, int hand_off) {
    if (b->queued > 0) {
        if (!hand_off) {
            return RS_BH_WAITERS;
        }
        b->queued--;
        b->handed++;
        CONSISTENT(b);
        return RS_BH_HANDED;
    }
    b->active--;
    CONSISTENT(b);
    return RS_BH_FREED;
}

int rs_bulkhead_release(rs_bulkhead *b, int hand_off) {
    /* A slot reserved for a woken waiter is that waiter's to give back. */
    if (RS_UNLIKELY(b->active <= b->handed)) {
        return -RS_EINVAL;
    }
    return give_back(b, hand_off);
}

int rs_bulkhead_start(rs_bulkhead *b) {
    if (b->handed == 0) {
        return RS_EINVAL;
    }
    b->handed--;
    admit(b);
    CONSISTENT(b);
    return RS_OK;
}

int rs_bulkhead_decline(rs_bulkhead *b) {
    if (b->handed == 0) {
        return -RS_EINVAL;
    }
    b->handed--;
    return give_back(b, 1);
}

int rs_bulkhead_leave(rs_bulkhead *b, int timed_out) {
    if (b->queued == 0) {
        return RS_EINVAL;
    }
    b->queued--;
    if (timed_out) {
        b->timed_out++;
    }
    CONSISTENT(b);
    return RS_OK;
}
