/* rs_bulkhead.c - the admission decisions of a bulkhead. */
#include "rs_bulkhead.h"

#include <stddef.h>
#include <string.h>

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

/* ---- a bulkhead in a region ---------------------------------------------- */

_Static_assert(offsetof(rs_bulkhead_block, lock) == 0, "a block starts with its mutex");
_Static_assert(offsetof(rs_bulkhead_block, wake) % 4 == 0, "a futex word is 4-byte aligned");

const rs_field RS_BULKHEAD_REGION_FIELDS[RS_BHR_COUNT] = {
    {"max_concurrent", RS_FIELD_INT, 1.0, (double)RS_BULKHEAD_MAX, 0, NULL},
    {"max_queue", RS_FIELD_INT, 0.0, (double)RS_BULKHEAD_MAX, 0, NULL},
    {"queue_timeout", RS_FIELD_NUMBER, 0.0, INFINITY, 0, NULL},
};

rs_status rs_bulkhead_params(long long max_concurrent, long long max_queue, double queue_timeout,
                             uint64_t params[RS_REGION_PARAMS]) {
    rs_bulkhead b;
    int rc = rs_bulkhead_init(&b, max_concurrent, max_queue);
    if (rc != RS_OK) {
        return rc;
    }
    if (!(queue_timeout >= 0.0)) { /* NaN too; INFINITY: none */
        return RS_EFIELD_BASE + RS_BHR_QUEUE_TIMEOUT;
    }
    for (unsigned i = 0; i < RS_REGION_PARAMS; i++) {
        params[i] = 0;
    }
    params[RS_BHR_MAX_CONCURRENT] = (uint64_t)max_concurrent;
    params[RS_BHR_MAX_QUEUE] = (uint64_t)max_queue;
    memcpy(&params[RS_BHR_QUEUE_TIMEOUT], &queue_timeout, sizeof queue_timeout);
    return RS_OK;
}

/* The settings the parameters make, or 0 when they are not a bulkhead's
 * (they may come from a damaged file). */
static int block_config(const uint64_t *params, rs_bulkhead *b, uint64_t *nwait) {
    double t;
    memcpy(&t, &params[RS_BHR_QUEUE_TIMEOUT], sizeof t);
    if (params[0] > RS_BULKHEAD_MAX || params[1] > RS_BULKHEAD_MAX || !(t >= 0.0) ||
        rs_bulkhead_init(b, (long long)params[0], (long long)params[1]) != RS_OK) {
        return 0;
    }
    for (unsigned i = RS_BHR_COUNT; i < RS_REGION_PARAMS; i++) {
        if (params[i]) {
            return 0;
        }
    }
    *nwait = params[1] < RS_BULKHEAD_WAIT_PROCS ? params[1] : RS_BULKHEAD_WAIT_PROCS;
    return 1;
}

static uint64_t block_size(const uint64_t *params) {
    rs_bulkhead b;
    uint64_t nwait;
    if (!block_config(params, &b, &nwait)) {
        return UINT64_MAX;
    }
    return sizeof(rs_bulkhead_block) + (b.max_concurrent + nwait) * sizeof(rs_region_permit);
}

static void block_init(void *block, const uint64_t *params) {
    rs_bulkhead_block *blk = block;
    uint64_t nwait = 0;
    block_config(params, &blk->b, &nwait);
    blk->nwait = nwait;
    rs_region_mutex_init(&blk->lock);
}

static rs_region_permit *wait_recs(rs_bulkhead_block *blk) {
    return &blk->rec[blk->b.max_concurrent];
}

static int block_check(const void *block, uint64_t size, const uint64_t *params,
                       void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_bulkhead_block *blk = block;
    rs_bulkhead b;
    uint64_t nwait;
    if (!block_config(params, &b, &nwait) || size != block_size(params)) {
        report(ctx, "bulkhead: parameters or block size invalid");
        return 1;
    }
    if (blk->b.max_concurrent != b.max_concurrent || blk->b.max_queue != b.max_queue ||
        blk->nwait != nwait) {
        report(ctx, "bulkhead: settings differ from its parameters");
        return 1;
    }
    return 0;
}

/* What the records say the counts are. */
typedef struct {
    uint32_t active, handed, bad_slots, bad_waits;
    uint64_t queued;
} tally;

static tally count(const rs_bulkhead_block *blk) {
    tally t = {0, 0, 0, 0, 0};
    const rs_region_permit *w = &blk->rec[blk->b.max_concurrent];
    for (uint32_t i = 0; i < blk->b.max_concurrent; i++) {
        const rs_region_permit *r = &blk->rec[i];
        if (r->holder.pid == 0) {
            t.bad_slots += r->tag != 0 || r->holder.start != 0 || r->since_ns != 0;
            continue;
        }
        t.active++;
        t.handed += r->tag == 1;
        t.bad_slots += r->tag > 1;
    }
    for (uint64_t i = 0; i < blk->nwait; i++) {
        if (w[i].holder.pid == 0) {
            t.bad_waits += w[i].tag != 0 || w[i].holder.start != 0 || w[i].since_ns != 0;
            continue;
        }
        t.bad_waits += w[i].tag == 0 || w[i].tag > RS_BULKHEAD_MAX;
        t.queued += w[i].tag;
    }
    return t;
}

/* Run after block_check passed: the settings are the parameters'. */
static int block_check_state(const void *block, const uint64_t *params,
                             void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_bulkhead_block *blk = block;
    const rs_bulkhead *b = &blk->b;
    (void)params;
    tally t = count(blk);
    int n = 0;
    if (t.bad_slots || t.bad_waits) {
        report(ctx, "bulkhead: a record is half written");
        n++;
    }
    if (b->active != t.active || b->handed != t.handed) {
        report(ctx, "bulkhead: active or handed differs from the slots held");
        n++;
    }
    if (b->queued != t.queued || b->queued > b->max_queue) {
        report(ctx, "bulkhead: queued differs from the waiters recorded or exceeds max_queue");
        n++;
    }
    if (b->peak_active > b->max_concurrent || b->peak_active < b->active) {
        report(ctx, "bulkhead: peak_active out of bounds");
        n++;
    }
    if (blk->hint >= b->max_concurrent) {
        report(ctx, "bulkhead: the search hint lies past the slots");
        n++;
    }
    return n;
}

static void block_repair(void *block, const uint64_t *params) {
    rs_bulkhead_block *blk = block;
    rs_bulkhead *b = &blk->b;
    rs_region_permit *w = wait_recs(blk);
    (void)params;
    for (uint32_t i = 0; i < b->max_concurrent; i++) {
        rs_region_permit *r = &blk->rec[i];
        if (r->holder.pid == 0 || r->tag > 1) {
            memset(r, 0, sizeof *r);
        }
    }
    uint64_t room = b->max_queue;
    for (uint64_t i = 0; i < blk->nwait; i++) {
        if (w[i].holder.pid == 0 || w[i].tag == 0 || w[i].tag > RS_BULKHEAD_MAX) {
            memset(&w[i], 0, sizeof w[i]);
            continue;
        }
        if (w[i].tag > room) { /* only damage makes more waiters than room */
            w[i].tag = room;
            if (room == 0) {
                memset(&w[i], 0, sizeof w[i]);
                continue;
            }
        }
        room -= w[i].tag;
    }
    tally t = count(blk);
    b->active = t.active;
    b->handed = t.handed;
    b->queued = (uint32_t)t.queued;
    if (b->peak_active > b->max_concurrent) {
        b->peak_active = b->max_concurrent;
    }
    if (b->peak_active < b->active) {
        b->peak_active = b->active;
    }
    if (blk->hint >= b->max_concurrent) {
        blk->hint = 0;
    }
}

/* No drop_holder: a process's slots are its handles' (a with-block, a
 * permit), released by them or taken back once the process is gone; a
 * region object closed (or collected) in a process whose other handles
 * still hold slots must not free those. */
const rs_region_type RS_BULKHEAD_REGION_TYPE = {
    .tag = RS_BULKHEAD_TAG,
    .name = "bulkhead",
    .block_size = block_size,
    .init = block_init,
    .check = block_check,
    .check_state = block_check_state,
    .repair = block_repair,
    .drop_holder = NULL,
};

/* A slot record taken back from a dead holder. */
static void slot_dead(void *ctx, const rs_region_permit *p) {
    rs_bulkhead_block *blk = ctx;
    blk->b.active -= blk->b.active > 0;
    blk->b.handed -= p->tag == 1 && blk->b.handed > 0;
    blk->reclaimed++;
}

static void wait_dead(void *ctx, const rs_region_permit *p) {
    rs_bulkhead_block *blk = ctx;
    blk->b.queued -= p->tag < blk->b.queued ? (uint32_t)p->tag : blk->b.queued;
}

/* Every slot taken: gives back those of dead holders (lease permitting). */
static void reclaim_slots(rs_bulkhead_block *blk, const rs_bulkhead_env *env) {
    if (rs_region_permit_reclaim(blk->rec, blk->b.max_concurrent, env->now_ns, env->lease_ns,
                                 env->alive, env->actx, slot_dead, blk)) {
        rs_bulkhead_block_nudge(blk);
    }
}

/* A free slot record for me, tagged: its index (the caller counted it). */
static int64_t take_slot(rs_bulkhead_block *blk, const rs_bulkhead_env *env, uint64_t tag) {
    uint32_t n = blk->b.max_concurrent;
    uint64_t h = blk->hint < n ? blk->hint : 0;
    int64_t i = rs_region_permit_take(blk->rec + h, (uint32_t)(n - h), env->me, env->now_ns, tag);
    if (i >= 0) {
        i += (int64_t)h;
    } else {
        i = rs_region_permit_take(blk->rec, (uint32_t)h, env->me, env->now_ns, tag);
    }
    if (i >= 0) {
        blk->hint = (uint64_t)i + 1 < n ? (uint64_t)i + 1 : 0;
    }
    return i;
}

int64_t rs_bulkhead_block_enter(rs_bulkhead_block *blk, const rs_bulkhead_env *env,
                                int count_reject) {
    rs_bulkhead *b = &blk->b;
    if (RS_UNLIKELY(b->active >= b->max_concurrent)) {
        reclaim_slots(blk, env);
    }
    if (RS_UNLIKELY(b->queued > 0 && b->active < b->max_concurrent)) {
        /* a slot free, yet callers wait: are they alive? */
        rs_region_permit_reclaim(wait_recs(blk), (uint32_t)blk->nwait, env->now_ns,
                                 env->lease_ns, env->alive, env->actx, wait_dead, blk);
    }
    if (b->active < b->max_concurrent && b->queued == 0) {
        int64_t i = take_slot(blk, env, 0);
        if (RS_LIKELY(i >= 0)) {
            rs_bulkhead_try_enter(b);
            return i;
        }
    }
    if (count_reject) {
        b->rejected++;
    }
    return -1;
}

/* me's waiting record, or NULL. */
static rs_region_permit *my_wait(const rs_bulkhead_block *blk, const rs_region_holder *me) {
    rs_region_permit *w = (rs_region_permit *)&blk->rec[blk->b.max_concurrent];
    for (uint64_t i = 0; i < blk->nwait; i++) {
        if (w[i].holder.pid == me->pid && w[i].holder.start == me->start) {
            return &w[i];
        }
    }
    return NULL;
}

rs_bulkhead_answer rs_bulkhead_block_acquire(rs_bulkhead_block *blk, const rs_bulkhead_env *env,
                                             int64_t *slot) {
    *slot = rs_bulkhead_block_enter(blk, env, 0);
    if (*slot >= 0) {
        return RS_BH_ADMITTED;
    }
    rs_bulkhead *b = &blk->b;
    rs_region_permit *w = my_wait(blk, env->me);
    if ((b->queued >= b->max_queue || !w) &&
        rs_region_permit_reclaim(wait_recs(blk), (uint32_t)blk->nwait, env->now_ns,
                                 env->lease_ns, env->alive, env->actx, wait_dead, blk)) {
        /* full, or a process new to the line: what dead processes left in
         * it was taken back, and with nobody left waiting a slot may do */
        *slot = rs_bulkhead_block_enter(blk, env, 0);
        if (*slot >= 0) {
            return RS_BH_ADMITTED;
        }
        w = my_wait(blk, env->me);
    }
    if (b->queued < b->max_queue) {
        if (!w) {
            int64_t i = rs_region_permit_take(wait_recs(blk), (uint32_t)blk->nwait, env->me,
                                              env->now_ns, 0);
            w = i >= 0 ? &wait_recs(blk)[i] : NULL;
        }
        if (w) {
            w->tag++;
            b->queued++;
            return RS_BH_QUEUED;
        }
    }
    b->rejected++;
    return RS_BH_FULL;
}

/* Slot i when it is me's and tagged tag, else NULL. */
static rs_region_permit *my_slot(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t i,
                                 uint64_t tag) {
    if (i < 0 || i >= (int64_t)blk->b.max_concurrent) {
        return NULL;
    }
    rs_region_permit *r = &blk->rec[i];
    if (r->holder.pid != me->pid || r->holder.start != me->start || r->tag != tag) {
        return NULL;
    }
    return r;
}

/* Frees slot record r (known taken) and counts the slot free. */
static void free_slot(rs_bulkhead_block *blk, rs_region_permit *r) {
    int handed = r->tag == 1;
    memset(r, 0, sizeof *r);
    blk->b.active--;
    blk->b.handed -= (uint32_t)handed;
    rs_bulkhead_block_nudge(blk);
}

int rs_bulkhead_block_release(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot) {
    rs_region_permit *r = my_slot(blk, me, slot, 0);
    if (!r) {
        return 0;
    }
    free_slot(blk, r);
    return 1;
}

int64_t rs_bulkhead_block_claim(rs_bulkhead_block *blk, const rs_bulkhead_env *env) {
    rs_bulkhead *b = &blk->b;
    rs_region_permit *w = my_wait(blk, env->me);
    if (!w) {
        return -1;
    }
    if (b->active >= b->max_concurrent) {
        reclaim_slots(blk, env);
        if (b->active >= b->max_concurrent) {
            return -1;
        }
    }
    int64_t i = take_slot(blk, env, 1);
    if (i < 0) {
        return -1;
    }
    if (--w->tag == 0) {
        memset(w, 0, sizeof *w);
    }
    b->active++;
    b->queued--;
    b->handed++;
    return i;
}

int rs_bulkhead_block_start(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot) {
    rs_region_permit *r = my_slot(blk, me, slot, 1);
    if (!r) {
        return 0;
    }
    r->tag = 0;
    return rs_bulkhead_start(&blk->b) == RS_OK;
}

int rs_bulkhead_block_decline(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot,
                              int pass_on) {
    rs_region_permit *r = my_slot(blk, me, slot, 1);
    if (!r) {
        return -1;
    }
    rs_region_permit *w = pass_on ? my_wait(blk, me) : NULL;
    if (w) {
        if (--w->tag == 0) {
            memset(w, 0, sizeof *w);
        }
        blk->b.queued--;
        return RS_BH_HANDED;
    }
    free_slot(blk, r);
    return RS_BH_FREED;
}

int rs_bulkhead_block_leave(rs_bulkhead_block *blk, const rs_region_holder *me, int timed_out) {
    rs_region_permit *w = my_wait(blk, me);
    if (!w) {
        return 0;
    }
    if (--w->tag == 0) {
        memset(w, 0, sizeof *w);
    }
    return rs_bulkhead_leave(&blk->b, timed_out) == RS_OK;
}

uint64_t rs_bulkhead_block_waiting(const rs_bulkhead_block *blk, const rs_region_holder *me) {
    const rs_region_permit *w = my_wait(blk, me);
    return w ? w->tag : 0;
}
