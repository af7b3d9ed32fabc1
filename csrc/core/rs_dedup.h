/* rs_dedup.h - a TTL set of opaque keys for deduplication, each key with an
 * optional opaque value (a TTL map: rs_dedup_put / rs_dedup_get).
 *
 * Entries live in a pool and are linked in insertion-time order, so the
 * oldest can be expired or evicted in O(1); an open-addressing table (linear
 * probing, backward-shift deletion: no tombstones, so lookups never degrade)
 * maps a key's hash to its entry; its cells carry a hash tag, so a probe
 * past other keys stays inside the table. The pool and table grow by doubling up to
 * `capacity`. Keys are opaque pointers compared by a caller-supplied
 * function that may fail (Python's __eq__ can raise): a failed comparison
 * aborts the operation with status -1, changing nothing but the expired
 * entries it may already have dropped.
 * The caller owns the keys and values; the set hands back every key it drops,
 * and every non-NULL value it drops or replaces, through the `release`
 * callback. Time is a nanosecond argument. */
#ifndef RS_DEDUP_H
#define RS_DEDUP_H

#include "rs_common.h"
#include "rs_field.h"
#include "rs_region.h"

/* Returns 1 when equal, 0 when not, -1 on error (the operation stops). */
typedef int (*rs_key_eq)(void *a, void *b, void *ctx);
/* Called for each key the set drops (expired, evicted, discarded, cleared),
 * and for each non-NULL value it drops with its key or replaces. */
typedef void (*rs_key_release)(void *key, void *ctx);

#define RS_DEDUP_MAX_CAPACITY (1u << 30)

/* The configuration's fields, in the order of RS_DEDUP_FIELDS (ttl in seconds). */
enum { RS_DDF_TTL = 0, RS_DDF_CAPACITY, RS_DDF_COUNT };
extern const rs_field RS_DEDUP_FIELDS[RS_DDF_COUNT];

typedef struct rs_dedup_entry {
    uint64_t hash;
    void *key;
    uint64_t t_ns;  /* when recorded */
    uint32_t slot;  /* its table cell */
    uint32_t prev;  /* time order; RS_DEDUP_NIL at the ends */
    uint32_t next;
} rs_dedup_entry;

#define RS_DEDUP_NIL UINT32_MAX

/* A table cell: entry index + 1 in the low 32 bits (0 = empty), the low 32
 * bits of the key's hash (the tag) in the high 32. Probes compare tags
 * without touching the entry pool, and the home cell (hash & mask) of an
 * occupied cell is known from its tag alone. */
typedef uint64_t rs_dedup_cell;
#define RS_DEDUP_CELL(index, hash) (((uint64_t)(uint32_t)(hash) << 32) | ((uint64_t)(index) + 1))
#define RS_DEDUP_CELL_INDEX(cell) ((uint32_t)(cell))        /* entry index + 1 */
#define RS_DEDUP_CELL_TAG(cell) ((uint32_t)((cell) >> 32))

typedef struct rs_dedup {
    uint64_t ttl_ns;
    uint32_t capacity;  /* most live entries */
    uint32_t pool_size; /* allocated entries (grows to capacity) */
    uint32_t mask;      /* table size - 1 (a power of two >= 2 * pool_size) */
    rs_dedup_cell *table;
    rs_dedup_entry *pool;
    void **values;      /* by entry index, NULL unless given by rs_dedup_put; the
                         * array is allocated on the first put, so a set of bare
                         * keys pays nothing for it */
    uint64_t *words;    /* by entry index, the caller's number for each key,
                         * allocated on the first rs_dedup_find_or_add */
    uint32_t free_head; /* free entries, linked by next */
    uint32_t oldest, newest;
    uint32_t size;      /* live entries (expired ones not yet dropped included) */
    uint64_t duplicates, expired, evicted;
    rs_key_eq eq;
    rs_key_release release;
    void *ctx;
} rs_dedup;

/* Returns RS_EINVAL unless ttl_ns > 0 and 1 <= capacity <= RS_DEDUP_MAX_CAPACITY,
 * RS_ENOMEM when the first allocation fails; d is then safe to pass to
 * rs_dedup_free. */
rs_status rs_dedup_init(rs_dedup *d, uint64_t ttl_ns, uint32_t capacity, rs_key_eq eq,
                        rs_key_release release, void *ctx);
/* Changes the ttl and the capacity of a set in use. Returns RS_EFIELD_BASE
 * + RS_DDF_TTL unless 0 < ttl_ns <= RS_MAX_SECONDS s, RS_EFIELD_BASE +
 * RS_DDF_CAPACITY unless the capacity lies in its field's range, RS_ENOMEM
 * when the smaller pool of a lowered capacity cannot be allocated; nothing
 * changes in any of these cases. Otherwise, in this order: the entries
 * expired at now_ns under the old ttl or under the new one are dropped
 * (counted as expired), then the oldest entries beyond the new capacity
 * (counted as evicted). The new ttl applies to every entry kept, from the
 * time it was recorded: a longer ttl lengthens the life of the entries
 * still live, a shorter one shortens it. A capacity below the pool's size
 * shrinks the pool to it, so its memory is returned. */
rs_status rs_dedup_configure(rs_dedup *d, uint64_t ttl_ns, uint32_t capacity, uint64_t now_ns);

/* Releases every key and frees the memory. */
void rs_dedup_free(rs_dedup *d);

/* The check-and-insert: returns 1 when key was recorded less than ttl ago
 * (a duplicate, counted), 0 when it was not (it is now recorded at now_ns,
 * evicting the oldest entry at capacity), -1 when a comparison failed, or -2
 * when memory ran out (nothing changed in either case, expired entries
 * aside). On 0 the set keeps
 * the key: the caller must have given it a reference. If the key was known
 * but expired, *stored is set to 0 and the caller keeps its reference;
 * otherwise *stored tells whether the set took the key. */
int rs_dedup_seen(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, int *stored);

/* Records key with value at now_ns, as a dict assignment does: a recorded key
 * (live or expired) gets the new value and time and becomes the newest; a
 * new one is inserted as rs_dedup_seen inserts (evicting the oldest at
 * capacity). The value it had, if any, is released. Returns 1 when key was
 * live, 0 when not, -1 on a failed comparison, -2 when memory ran out
 * (nothing changed in the error cases, expired entries aside; the caller
 * keeps its references). On 0 or 1 the set keeps value; *stored tells
 * whether it took the key (not when the key was already recorded). Counts
 * no duplicate. */
int rs_dedup_put(rs_dedup *d, uint64_t hash, void *key, void *value, uint64_t now_ns,
                 int *stored);

/* Looks key up and records it when absent, for a caller that keeps a number
 * per key in `words`: returns 1 when key is recorded and live
 * (*idx is its entry, nothing changed), 0 when it was not (it is now
 * recorded at now_ns with words[*idx] 0, as rs_dedup_seen records it; *stored
 * tells whether the set took the key), -1 on a failed comparison, -2 when
 * memory ran out (nothing changed in these two cases, expired entries
 * aside). *idx stays valid until the next operation on the set. */
int rs_dedup_find_or_add(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, int *stored,
                         uint32_t *idx);

/* 1 and *idx when key is recorded and live, 0 when not, -1 on a failed
 * comparison. */
int rs_dedup_lookup(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, uint32_t *idx);

/* Marks entry idx recorded at now_ns (it becomes the newest). */
void rs_dedup_touch(rs_dedup *d, uint32_t idx, uint64_t now_ns);

/* 1 and *value (NULL for a key recorded by rs_dedup_seen) when key is
 * recorded and not expired, 0 when not, -1 on a failed comparison. */
int rs_dedup_get(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, void **value);

/* 1 when key is recorded and not expired, 0 when not, -1 on a failed comparison. */
int rs_dedup_contains(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns);

/* Drops key; returns 1 when it was there, 0 when not, -1 on a failed comparison. */
int rs_dedup_discard(rs_dedup *d, uint64_t hash, void *key);

/* Drops entries recorded ttl or more ago, at most `limit` of them (0: all);
 * returns how many. */
uint32_t rs_dedup_expire(rs_dedup *d, uint64_t now_ns, uint32_t limit);

void rs_dedup_clear(rs_dedup *d);

/* Calls fn for each live key, oldest first, then for each non-NULL value in
 * the same order (for the garbage collector); stops at the first non-zero
 * return and returns it. */
int rs_dedup_visit(const rs_dedup *d, int (*fn)(void *key, void *arg), void *arg);

/* Bytes allocated for the pool and table. */
size_t rs_dedup_memory(const rs_dedup *d);


/* ---- a deduplicator in a region (shared by processes) --------------------
 *
 * The same set for str and bytes keys, kept in a region's block so that the
 * processes of a host share it. A key is its 128-bit digest
 * (rs_region_digest; a first word of 0 is read as another fixed word, since
 * 0 marks an empty slot). The block: its mutex, the settings (ttl_ns,
 * capacity) and counts (duplicates, expired, evicted, as the local set
 * keeps them, for every process), then room for twice `capacity` keys:
 * 2 * ceil(capacity / RS_DEDUP_WAYS) sets of RS_DEDUP_WAYS slots. A key
 * lives in one of two sets, d0 % nsets or d1 % nsets. The slots holding a
 * key are linked in recording order (slot indices, never pointers), as the
 * local set links its entries, so the shared set behaves as the local one:
 * the same check-and-insert, the same amortised expiry (a couple of the
 * oldest expired keys per call, all of them for the size and the counts),
 * at `capacity` keys the oldest recorded overall evicted, a key known but
 * expired counted as expired and recorded again as the newest.
 *
 * Where it differs: a new key must take a slot in one of its two sets. It
 * takes an empty slot of the set holding fewer keys; when both sets are
 * full, one of their keys whose other set has an empty slot moves there
 * (keeping its time and its place in the order); when none can, the key
 * recorded least recently in the two sets is evicted (counted) although
 * fewer than `capacity` keys are held. With half the slots in use at most
 * and two choices plus a move, that takes both sets and the sixteen other
 * sets their keys could move to full at once: see the docs for how often.
 *
 * Every operation runs under the block's mutex. A slot holds a key once
 * its d0 is written, last, after its other words (and a key leaves by its
 * d0 being cleared first), so a holder killed mid-update leaves every slot
 * either empty or a whole key; what it can leave wrong is the order's
 * links, the size, one count not incremented, or a key moved to its other
 * set and not yet cleared from the first (held twice). The repair hook
 * checks the state and, when anything is off, empties slots holding a key
 * that is not theirs (damage) or held at a lower slot too, relinks the
 * keys by recording time (ties by slot), recounts the size and evicts the
 * oldest beyond capacity (counted). It runs when the lock's holder died and
 * on every attach that finds the lock free. */
#define RS_DEDUP_TAG 0x64647570u /* "ddup" */
#define RS_DEDUP_WAYS 8u
/* The capacity of a shared deduplicator unless given: its table is
 * reserved in the region when it is made (64 bytes a key). */
#define RS_DEDUP_SHARED_CAPACITY 4096u

typedef struct rs_dedup_slot {
    uint64_t d0, d1;     /* the key's digest; d0 0: empty */
    uint64_t t_ns;       /* when recorded */
    uint32_t prev, next; /* recording order, as slot indices; RS_DEDUP_NIL at the ends */
} rs_dedup_slot;

typedef struct rs_dedup_block {
    rs_region_mutex lock;
    uint64_t ttl_ns, capacity, nsets;
    uint64_t size;           /* slots holding a key */
    uint32_t oldest, newest; /* the ends of the recording order */
    uint64_t duplicates, expired, evicted;
    uint64_t reserved[8];
    rs_dedup_slot slot[];
} rs_dedup_block;

extern const rs_region_type RS_DEDUP_REGION_TYPE;

/* The region parameters of a deduplicator: ttl_ns, capacity, in the order
 * of RS_DEDUP_FIELDS, so a mismatch's index names the field. Returns
 * RS_EFIELD_BASE + RS_DDF_TTL unless 1 <= ttl_ns <= RS_MAX_SECONDS s, +
 * RS_DDF_CAPACITY unless capacity lies in its field's range. */
rs_status rs_dedup_params(uint64_t ttl_ns, uint64_t capacity, uint64_t params[RS_REGION_PARAMS]);

/* rs_dedup_seen on the block with the key of digest (d0, d1): 1 a
 * duplicate (counted), 0 new (recorded at now_ns). The caller holds the lock. */
int rs_dedup_block_seen(rs_dedup_block *b, uint64_t d0, uint64_t d1, uint64_t now_ns);
/* 1 when the key is recorded and not expired, else 0; changes nothing. */
int rs_dedup_block_contains(const rs_dedup_block *b, uint64_t d0, uint64_t d1, uint64_t now_ns);
/* Drops the key: 1 when it was there (expired or not, as rs_dedup_discard), else 0. */
int rs_dedup_block_discard(rs_dedup_block *b, uint64_t d0, uint64_t d1);
/* rs_dedup_expire on the block: drops at most limit (0: all) of the oldest
 * keys that expired, counted; returns how many. */
uint64_t rs_dedup_block_expire(rs_dedup_block *b, uint64_t now_ns, uint64_t limit);
/* Drops every key (no count changes). */
void rs_dedup_block_clear(rs_dedup_block *b);

#endif /* RS_DEDUP_H */
