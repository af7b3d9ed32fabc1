/* rs_gcra.h - a rate limiter by the generic cell rate algorithm (GCRA),
 * the token bucket of capacity `burst` refilled at rate / per tokens a
 * second, kept as one theoretical arrival time (TAT) per bucket.
 *
 * Exact integer arithmetic: the rate is taken as a fraction p / q (the
 * nearest one with q <= RS_GCRA_MAX_DEN), so one token's interval is
 * A / B ns with A = per_ns * q and B = p, reduced. Time inside a bucket is
 * counted in ticks of 1 / B ns: a bucket holds the time t_ns it last
 * admitted and its debt, (TAT - t_ns) * B ticks, never more than
 * tau = burst * A ticks; the init refuses a configuration where tau or
 * tau / B ns would not fit. A bucket with no debt left is full, the same as
 * a bucket never used.
 *
 * One bucket lives in the struct (calls without a key); per-key buckets
 * live in an rs_dedup set whose ttl is tau / B ns rounded up, the time an
 * empty bucket takes to fill, so a key idle that long has dropped out and
 * costs nothing. The set holds keys oldest admission first: at capacity it
 * forgets the key admitted least recently. Time is a nanosecond argument;
 * a clock that steps back is read as standing still. */
#ifndef RS_GCRA_H
#define RS_GCRA_H

#include "rs_common.h"
#include "rs_dedup.h"
#include "rs_field.h"
#include "rs_region.h"

#define RS_GCRA_MAX_DEN 1000000u
#define RS_GCRA_MAX_TICKS (UINT64_C(1) << 62)

/* The configuration's fields, in the order of RS_GCRA_FIELDS. */
enum { RS_GCF_RATE = 0, RS_GCF_PER, RS_GCF_BURST, RS_GCF_MAX_KEYS, RS_GCF_COUNT };
extern const rs_field RS_GCRA_FIELDS[RS_GCF_COUNT];

typedef struct rs_gcra {
    uint64_t a, b;          /* one token's interval is a / b ns */
    uint64_t burst;         /* tokens */
    uint64_t tau;           /* burst * a: the most debt a bucket holds, ticks */
    uint64_t t_ns, debt;    /* the bucket of calls without a key */
    uint64_t admitted, rejected;
} rs_gcra;

/* Returns RS_EFIELD_BASE + RS_GCF_RATE unless rate lies in its field's
 * range, + RS_GCF_PER unless per_ns >= 1, or + RS_GCF_BURST unless
 * 1 <= burst and tau fits (tau <= RS_GCRA_MAX_TICKS
 * and tau / b ns <= RS_MAX_SECONDS). The bucket starts full. */
rs_status rs_gcra_init(rs_gcra *g, double rate, uint64_t per_ns, uint64_t burst);

/* The debt at now_ns of a bucket that admitted at t_ns with debt `debt`. */
RS_INLINE uint64_t rs_gcra_debt_at(const rs_gcra *g, uint64_t t_ns, uint64_t debt, uint64_t now_ns) {
    uint64_t elapsed = now_ns > t_ns ? now_ns - t_ns : 0;
    if (elapsed > debt / g->b) {
        return 0;
    }
    return debt - elapsed * g->b;
}

/* Admits cost (1 <= cost <= burst, else RS_EINVAL with nothing changed)
 * when the bucket holds it: returns 1 and updates *t_ns and *debt, or 0 and
 * changes nothing. Counts the call in admitted or rejected. */
RS_INLINE int rs_gcra_take(rs_gcra *g, uint64_t *t_ns, uint64_t *debt, uint64_t now_ns,
                           uint64_t cost) {
    uint64_t need = rs_gcra_debt_at(g, *t_ns, *debt, now_ns) + cost * g->a;
    if (need > g->tau) {
        g->rejected++;
        return 0;
    }
    *t_ns = now_ns > *t_ns ? now_ns : *t_ns;
    *debt = need;
    g->admitted++;
    return 1;
}

/* Nanoseconds from now_ns until cost would be admitted (0: now). */
uint64_t rs_gcra_wait_ns(const rs_gcra *g, uint64_t t_ns, uint64_t debt, uint64_t now_ns,
                         uint64_t cost);

/* The set for per-key buckets: ttl as the header says, capacity max_keys. */
rs_status rs_gcra_keys_init(const rs_gcra *g, rs_dedup *keys, uint32_t max_keys, rs_key_eq eq,
                            rs_key_release release, void *ctx);

/* rs_gcra_take on key's bucket in keys (a key not there has a full bucket
 * and is recorded when admitted): 1 admitted, 0 refused, -1 a comparison
 * failed, -2 out of memory (nothing taken or counted in either case).
 * *stored as rs_dedup_find_or_add sets it. cost as rs_gcra_take; the caller
 * checks it first (RS_EINVAL is not returned here). */
int rs_gcra_take_key(rs_gcra *g, rs_dedup *keys, uint64_t hash, void *key, uint64_t now_ns,
                     uint64_t cost, int *stored);

/* rs_gcra_wait_ns of key's bucket: >= 0, or -1 when a comparison failed. */
int64_t rs_gcra_wait_key(const rs_gcra *g, rs_dedup *keys, uint64_t hash, void *key,
                         uint64_t now_ns, uint64_t cost);

/* Tokens the bucket holds at now_ns, rounded down. */
uint64_t rs_gcra_tokens(const rs_gcra *g, uint64_t t_ns, uint64_t debt, uint64_t now_ns);

/* ---- a limiter in a region (shared by processes) -------------------------
 *
 * The block: its mutex, an rs_gcra (settings, the bucket of calls without
 * a key, the counts of every process), then room for twice max_keys
 * per-key buckets: 2 * ceil(max_keys / RS_GCRA_WAYS) sets of RS_GCRA_WAYS
 * slots. A key is its 128-bit digest (rs_region_digest); it lives in one of
 * two sets, d0 % nsets or d1 % nsets. A new key takes, in those sets, a
 * slot whose bucket is full again (such a key costs nothing and is
 * forgotten first), else an empty slot of the set holding fewer keys, else
 * the slot of the key admitted least recently in either: the local
 * limiter's order, kept per pair of sets. With half the room in use at
 * most, and two choices, a set pair is full only by a rare accident: of
 * max_keys keys all refilling, none was forgotten in 20 trials at 1,024 or
 * 8,192 keys, nor at 1.5 * max_keys; at 2 * max_keys, 15% of them were.
 *
 * Every operation runs under the block's mutex. What a holder killed
 * mid-update can leave: a bucket whose time was written and whose debt
 * was not (it then reads as more debt: stricter, never looser), a new
 * key's digest over the previous key's bucket, one count not incremented,
 * the number of keys off by one. The repair hook clamps every debt to tau,
 * empties a slot whose digest an earlier slot of its set holds, and
 * recounts the keys; it runs after a holder died and on every attach that
 * finds the lock free. The check (no lock) compares the settings with the
 * parameters; the state check (under the lock, or with the region quiet)
 * reports what the repair would fix. */
#define RS_GCRA_TAG 0x67637261u /* "gcra" */
#define RS_GCRA_WAYS 8u
/* max_keys of a shared limiter unless given: its table is reserved in the
 * region when the limiter is made (64 bytes a key: room for twice as many). */
#define RS_GCRA_SHARED_KEYS 1024u

typedef struct rs_gcra_slot {
    uint64_t d0, d1;       /* the key's digest; (0, 0): empty */
    uint64_t t_ns, debt;
} rs_gcra_slot;

typedef struct rs_gcra_block {
    rs_region_mutex lock;
    rs_gcra g;
    uint64_t nsets, max_keys, keys; /* keys: slots holding a digest */
    uint64_t reserved[5];
    rs_gcra_slot slot[];
} rs_gcra_block;

extern const rs_region_type RS_GCRA_REGION_TYPE;

/* The region parameters of a limiter: rate (its double's bits), per_ns,
 * burst, max_keys, in the order of RS_GCRA_FIELDS, so a mismatch's index
 * names the field. Returns rs_gcra_init's status (max_keys is checked by
 * the caller against its field). */
rs_status rs_gcra_params(double rate, uint64_t per_ns, uint64_t burst, uint64_t max_keys,
                         uint64_t params[RS_REGION_PARAMS]);

/* rs_gcra_take on the bucket of digest (d0, d1); the caller holds the lock. */
int rs_gcra_block_take(rs_gcra_block *blk, uint64_t d0, uint64_t d1, uint64_t now_ns,
                       uint64_t cost);
/* rs_gcra_wait_ns on that bucket; the caller holds the lock. */
uint64_t rs_gcra_block_wait(const rs_gcra_block *blk, uint64_t d0, uint64_t d1, uint64_t now_ns,
                            uint64_t cost);
/* Keys whose bucket is not full again at now_ns; the caller holds the lock. */
uint64_t rs_gcra_block_live(const rs_gcra_block *blk, uint64_t now_ns);

#endif /* RS_GCRA_H */
