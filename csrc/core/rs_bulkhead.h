/* rs_bulkhead.h - the admission decisions of a bulkhead: how many calls run
 * at once, how many wait for a slot, and what became of each call.
 *
 * The core only counts. Who waits, and how, is the caller's: it keeps a
 * FIFO line of waiters whose length is `queued`, adds one when acquire
 * answers RS_BH_QUEUED, and removes one on each hand-off or leave. When a
 * slot is freed while waiters wait, the slot is handed on rather than
 * freed (it stays counted in `active`, reserved in `handed`) so no
 * newcomer can take it ahead of the line; the woken waiter then either
 * starts (counted admitted) or declines (cancelled: the slot is handed on
 * again or freed). Fixed size, no pointers, no allocation: the struct can
 * live in a shared block. Every operation is O(1). */
#ifndef RS_BULKHEAD_H
#define RS_BULKHEAD_H

#include "rs_common.h"
#include "rs_field.h"

typedef enum rs_bulkhead_field {
    RS_BHF_MAX_CONCURRENT = 0,
    RS_BHF_MAX_QUEUE,
    RS_BHF_COUNT
} rs_bulkhead_field;

/* The largest max_concurrent and max_queue: 2**30. */
#define RS_BULKHEAD_MAX (1u << 30)

/* Name and allowed values of each field. */
extern const rs_field RS_BULKHEAD_FIELDS[RS_BHF_COUNT];

/* What acquire decided. */
typedef enum rs_bulkhead_answer {
    RS_BH_ADMITTED = 0, /* a slot is taken: the call may run */
    RS_BH_QUEUED = 1,   /* the caller joins the end of the line */
    RS_BH_FULL = 2      /* no slot and no room in the line: counted rejected */
} rs_bulkhead_answer;

/* What became of a slot given back. */
typedef enum rs_bulkhead_release_answer {
    RS_BH_FREED = 0,   /* the slot is free */
    RS_BH_HANDED = 1,  /* the slot is reserved for the first waiter, who leaves the line */
    RS_BH_WAITERS = 2  /* (release without hand-off only) waiters wait; nothing changed */
} rs_bulkhead_release_answer;

typedef struct rs_bulkhead {
    uint32_t max_concurrent;
    uint32_t max_queue;
    uint32_t active;      /* slots taken, those reserved in `handed` included */
    uint32_t queued;      /* waiters in line */
    uint32_t handed;      /* slots handed to woken waiters that have not started */
    uint32_t peak_active; /* the most calls running at once */
    uint64_t admitted;    /* calls that got a slot and started */
    uint64_t rejected;    /* calls refused: no slot and no room to wait */
    uint64_t timed_out;   /* waiters that left the line when their wait ran out */
} rs_bulkhead;

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field: max_concurrent in
 * [1, RS_BULKHEAD_MAX], max_queue in [0, RS_BULKHEAD_MAX]. No allocation. */
int rs_bulkhead_init(rs_bulkhead *b, long long max_concurrent, long long max_queue);

/* Takes a slot when one is free and nobody waits (admitted): 1; else 0 and
 * nothing changes or is counted. The fast path of a blocking acquire. */
int rs_bulkhead_try_enter(rs_bulkhead *b);

/* try_enter, but a refusal is counted in `rejected`: a caller that will not
 * wait. */
int rs_bulkhead_try_acquire(rs_bulkhead *b);

/* One acquiring caller: admitted as try_enter, else queued when the line
 * has room (queued + 1), else RS_BH_FULL (counted rejected). */
rs_bulkhead_answer rs_bulkhead_acquire(rs_bulkhead *b);

/* Gives a running call's slot back. With waiters in line: hand_off non-zero
 * hands it to the first (RS_BH_HANDED: queued - 1, handed + 1), hand_off
 * zero changes nothing and answers RS_BH_WAITERS (the caller hands off
 * where it can also wake the waiter). Without waiters: RS_BH_FREED. Returns
 * -RS_EINVAL when no slot is taken (nothing changes). */
int rs_bulkhead_release(rs_bulkhead *b, int hand_off);

/* A woken waiter starts on its handed slot: handed - 1, admitted + 1.
 * Returns RS_OK, or RS_EINVAL when no slot was handed (nothing changes). */
int rs_bulkhead_start(rs_bulkhead *b);

/* A woken waiter cancelled before it started gives its handed slot back:
 * handed - 1, then as release with hand-off (RS_BH_HANDED or RS_BH_FREED).
 * Returns -RS_EINVAL when no slot was handed (nothing changes). */
int rs_bulkhead_decline(rs_bulkhead *b);

/* A waiter leaves the line without a slot: queued - 1, and timed_out + 1
 * when timed_out is non-zero (a cancelled waiter is not counted). Returns
 * RS_OK, or RS_EINVAL when nobody waits (nothing changes). */
int rs_bulkhead_leave(rs_bulkhead *b, int timed_out);

#endif /* RS_BULKHEAD_H */
