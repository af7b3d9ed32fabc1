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
#include "rs_region.h"

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

/* ---- a bulkhead in a region (shared by processes) -----------------------
 *
 * The block: its mutex, an rs_bulkhead (settings and the host's counts),
 * the futex word waiters sleep on, then one rs_region_permit per slot
 * (max_concurrent of them: the holder of each taken slot, tag 0 running,
 * 1 handed to a waiter that has not started) and one per waiting process
 * (min(max_queue, RS_BULKHEAD_WAIT_PROCS) of them: tag = how many callers
 * of that process wait). The counts follow the records: active is the
 * slot records in use, handed those tagged 1, queued the sum of the
 * waiting records' tags; admitted, rejected and timed_out only grow, and
 * the records of a process that died are taken back (its slots freed,
 * its waiters leave the line) by the next caller that finds the bulkhead
 * or its line full, or a slot free while callers wait, once a lease has
 * passed since the record was written (or its holder was last found alive).
 *
 * The decisions are rs_bulkhead's: a newcomer takes a free slot only when
 * nobody waits anywhere on the host (no barging past a waiter); a waiter
 * of this process claims a free slot (rs_bulkhead_block_claim) rather than
 * being handed one by the releasing process, since that may be another;
 * so every slot given back is freed, the futex word counts it, and the
 * waiters of every process look again.
 *
 * Every operation runs under the block's mutex. A holder killed mid-update
 * writes a record before the counts it changes, so it can leave: a record
 * written and its counts not (or one of them), a record half written (its
 * holder's pid without its start time: read as a dead process, taken back
 * after the lease), a waiting record whose count reached 0 still held. The
 * repair hook recounts active, handed and queued from the records, frees
 * empty waiting records and records with a tag out of range, clamps queued to
 * max_queue and peak_active to [active, max_concurrent]. The check (no
 * lock) compares the settings with the parameters; the state check (under
 * the lock, or with the region quiet) reports what the repair would fix. */
#define RS_BULKHEAD_TAG 0x626c6b68u /* "blkh" */
/* The most processes whose callers wait at once: the waiting records. */
#define RS_BULKHEAD_WAIT_PROCS 64u

/* The region parameters, in this order so a mismatch's index names one. */
typedef enum rs_bulkhead_region_field {
    RS_BHR_MAX_CONCURRENT = 0,
    RS_BHR_MAX_QUEUE,
    RS_BHR_QUEUE_TIMEOUT, /* a double's bits: seconds, INFINITY for none */
    RS_BHR_COUNT
} rs_bulkhead_region_field;
extern const rs_field RS_BULKHEAD_REGION_FIELDS[RS_BHR_COUNT];

typedef struct rs_bulkhead_block {
    rs_region_mutex lock;
    rs_bulkhead b;
    uint64_t nwait;      /* waiting records */
    uint64_t reclaimed;  /* slots taken back from processes that died */
    uint64_t hint;       /* the slot record the next search starts at */
    /* Counts every slot freed (and every nudge), read and slept on by
     * waiters (a futex word: 32-bit, aligned). */
    uint32_t wake;
    /* Threads asleep on `wake`: a hint for whether a release must wake
     * anyone (one killed asleep leaves it high: one system call per
     * release more, never a lost wake-up). */
    uint32_t sleepers;
    uint64_t reserved[3];
    rs_region_permit rec[]; /* max_concurrent slot records, then nwait waiting records */
} rs_bulkhead_block;

extern const rs_region_type RS_BULKHEAD_REGION_TYPE;

/* What a shared operation needs of its caller: this process as a holder,
 * the time (monotonic ns, host-wide), the region's lease and the liveness
 * test of a holder. */
typedef struct rs_bulkhead_env {
    const rs_region_holder *me;
    uint64_t now_ns;
    uint64_t lease_ns;
    rs_region_alive_fn alive;
    void *actx;
} rs_bulkhead_env;

/* The region parameters of a bulkhead; the status of rs_bulkhead_init
 * (RS_EFIELD_BASE + RS_BHF_*), or RS_EFIELD_BASE + RS_BHR_QUEUE_TIMEOUT
 * unless queue_timeout is >= 0 (INFINITY: none). */
rs_status rs_bulkhead_params(long long max_concurrent, long long max_queue, double queue_timeout,
                             uint64_t params[RS_REGION_PARAMS]);

/* The caller holds the block's lock in every function below. */

/* A newcomer: a free slot when nobody waits (its record's index >= 0,
 * counted admitted), else -1 and, when count_reject, counted rejected.
 * Finding every slot taken, it first takes back slots of dead holders;
 * finding a slot free while callers wait, places in line of dead ones. */
int64_t rs_bulkhead_block_enter(rs_bulkhead_block *blk, const rs_bulkhead_env *env,
                                int count_reject);
/* A newcomer that may wait: RS_BH_ADMITTED with *slot its record,
 * RS_BH_QUEUED (me's waiting record counts it), or RS_BH_FULL (counted
 * rejected): no room in the line, or no waiting record left for me. */
rs_bulkhead_answer rs_bulkhead_block_acquire(rs_bulkhead_block *blk, const rs_bulkhead_env *env,
                                             int64_t *slot);
/* Gives back running slot `slot` of me: 1 freed (the futex word counts
 * it), 0 when it is not a running slot of me (nothing changes). */
int rs_bulkhead_block_release(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot);
/* A waiter of me takes a free slot, handed (tag 1), leaving the line:
 * its record, or -1 when no slot is free or me has no waiter. */
int64_t rs_bulkhead_block_claim(rs_bulkhead_block *blk, const rs_bulkhead_env *env);
/* The waiter handed `slot` starts on it (running, counted admitted): 1,
 * or 0 when it is not a handed slot of me. */
int rs_bulkhead_block_start(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot);
/* The waiter handed `slot` was cancelled: with pass_on and a waiter of me
 * in line, the slot stays handed for it (that waiter leaves the line):
 * RS_BH_HANDED; else it is freed: RS_BH_FREED. -1 when `slot` is not a
 * handed slot of me. */
int rs_bulkhead_block_decline(rs_bulkhead_block *blk, const rs_region_holder *me, int64_t slot,
                              int pass_on);
/* A waiter of me leaves the line without a slot (timed_out: counted).
 * 1, or 0 when me has no waiter. */
int rs_bulkhead_block_leave(rs_bulkhead_block *blk, const rs_region_holder *me, int timed_out);
/* Callers of me in line (its waiting record's count). */
uint64_t rs_bulkhead_block_waiting(const rs_bulkhead_block *blk, const rs_region_holder *me);
/* Bumps the futex word (no lock needed): a waiter of this process was
 * handed a slot and must look. */
RS_INLINE void rs_bulkhead_block_nudge(rs_bulkhead_block *blk) {
    __atomic_add_fetch(&blk->wake, 1u, __ATOMIC_SEQ_CST);
}

#endif /* RS_BULKHEAD_H */
