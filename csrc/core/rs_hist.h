/* rs_hist.h - a log-linear latency histogram (HDR-style) and a windowed
 * variant made of rotating sub-histograms.
 *
 * Buckets. With s = sub_bits, every power of two [2^e, 2^(e+1)) with e >= s
 * is split into 2^s equal buckets of width W = 2^(e-s); values below
 * 2^(s+1) get one bucket each (they are exact). The index of v is
 *     shift = msb(v | 2^s) - s,   index = (shift << s) + (v >> shift)
 * (msb = position of the highest set bit, one count-leading-zeros), so a
 * record is O(1): no loop, no branch on the bucket layout. Values >=
 * 2^max_bits are counted in the top bucket and in `clamped`; min and max
 * stay exact for them. Bucket count and memory per histogram:
 *     nbuckets = (max_bits - sub_bits + 1) * 2^sub_bits,  8 bytes each;
 * defaults (7, 44): 4864 buckets = 38,912 bytes (+ the struct); the largest
 * config (10, 63): 442,368 bytes. A window holds nslots of them.
 *
 * Quantiles. rs_hist_quantile(h, q) uses the nearest rank: the sample of rank
 * rs_hist_rank(q, count) = max(1, ceil(q * count)) in ascending order. It
 * reports min for rank 1, max for rank count, else the midpoint
 * lo + (W - 1) / 2 (integer division) of the bucket [lo, lo + W - 1] holding
 * that rank, clamped into [min, max]; 0 when empty. The scan covers only
 * the buckets from min's to max's: O(nbuckets) at worst.
 *
 * Error bound. Let x be the exact sample of that rank and r the reported
 * value. If x < 2^max_bits, r lies in x's bucket and |r - x| <= W / 2 with
 * W <= x / 2^s (W = 1, so r == x, when x < 2^(s+1)); hence
 *     |r - x| / x < 2^-(sub_bits + 1)
 * i.e. 0.39 % for the default sub_bits = 7 (0.78 % for 6, 25 % for 1; the
 * 1 % target needs sub_bits >= 6). Clamping into [min, max] only moves r
 * towards x. If x >= 2^max_bits (a clamped sample) r is only known to lie
 * in [2^max_bits - W_top, max]: no relative bound; `clamped` says it
 * happened.
 *
 * Rank arithmetic. ceil(q * count) is computed exactly in integers on the
 * binary value of q (q = M * 2^-k, M < 2^53, a 53 x 64-bit product), so no
 * count is too large. One tolerance: when q * count exceeds an integer n by
 * at most q * count * 2^-52 (one ulp of q, scaled), the rank is n. A decimal
 * q is stored rounded, e.g. 0.9 as 0.90000000000000002220, and the exact
 * ceil(0.9 * 10) would then be 10, not 9; with the tolerance k / n gives
 * rank k for every count < 2^52. It only merges ranks that q cannot tell
 * apart; the rank is always ceil or floor of the exact q * count, and is
 * floor whenever q * count >= 2^52 is not an integer (the tolerance then
 * exceeds one rank). q < 0 or NaN is taken as 0 and q > 1 as 1 (the binding
 * rejects them before).
 *
 * sum is a double (for the mean); counts are uint64 and wrap only after
 * 2^64 records, which no caller reaches.
 *
 * Windowed. rs_hist_window keeps nslots histograms, slot j covering the
 * time epoch e (e = now_ns / slot_ns) with e % nslots == j. A record lands
 * in the slot of its epoch; a slot still holding an older epoch is cleared
 * first (lazily: one memset of its counts when time first moves into it).
 * A query at now_ns sees the slots whose epoch is within the last nslots
 * epochs, so a sample recorded at t is seen while
 *     now_ns < (t / slot_ns + nslots) * slot_ns
 * - between (nslots - 1) and nslots slot lengths, exactly nslots * slot_ns
 * for a sample at the start of its slot. Queries merge the live slots on
 * the fly: no allocation, O(nbuckets * nslots) per quantile. Time going
 * backwards is never undefined: the window keeps the newest epoch seen
 * (head) and uses max(now_ns / slot_ns, head) everywhere, so a late record
 * lands in the newest slot and an early query sees the newest window.
 *
 * Ownership and failure: init allocates (rs_calloc) and can fail; every
 * other call cannot fail except merge/snapshot on a config mismatch. After
 * a failed init the struct is safe to pass to free. Not thread-safe: the
 * binding serialises calls. */
#ifndef RS_HIST_H
#define RS_HIST_H

#include "rs_common.h"
#include "rs_field.h"

#define RS_HIST_DEFAULT_SUB_BITS 7
#define RS_HIST_DEFAULT_MAX_BITS 44 /* 2^44 ns ~ 4.9 hours */
#define RS_HIST_MIN_SUB_BITS 1
#define RS_HIST_MAX_SUB_BITS 10
#define RS_HIST_MAX_MAX_BITS 63
#define RS_HIST_MAX_SLOTS 64
/* A window's defaults (resil.WindowedHistogram's, a monitor's): 0.78 %
 * bound, 2**42 ns (73 minutes) before clamping, 2368 buckets = 18,944
 * bytes a slot. */
#define RS_HIST_WINDOW_SUB_BITS 6
#define RS_HIST_WINDOW_MAX_BITS 42

typedef enum rs_hist_field {
    RS_HGF_SUB_BITS = 0,
    RS_HGF_MAX_BITS,
    RS_HGF_NSLOTS,
    RS_HGF_SLOT_NS,
    RS_HGF_COUNT
} rs_hist_field;

/* Name and allowed values of each field; nslots is a window's "slots". */
extern const rs_field RS_HIST_FIELDS[RS_HGF_COUNT];

typedef struct rs_hist {
    uint64_t *counts; /* nbuckets; owned (a window slot borrows the window's block) */
    uint64_t count;
    uint64_t clamped; /* samples >= 2^max_bits (counted in the top bucket) */
    uint64_t min;     /* UINT64_MAX while empty: read it through rs_hist_min */
    uint64_t max;
    double sum;
    uint64_t limit;   /* 2^max_bits */
    uint32_t nbuckets;
    uint8_t sub_bits;
    uint8_t max_bits;
} rs_hist;

/* Highest set bit of x (x != 0), without compiler builtins: the fallback
 * used where __builtin_clzll is missing; in the header so tests compare it
 * with the builtin. */
RS_INLINE unsigned rs_hist_msb_generic(uint64_t x) {
    unsigned n = 0;
    if (x >> 32) { x >>= 32; n += 32; }
    if (x >> 16) { x >>= 16; n += 16; }
    if (x >> 8) { x >>= 8; n += 8; }
    if (x >> 4) { x >>= 4; n += 4; }
    if (x >> 2) { x >>= 2; n += 2; }
    if (x >> 1) { n += 1; }
    return n;
}

/* Returns RS_OK, RS_EFIELD_BASE + the first bad field (1 <= sub_bits <= 10,
 * sub_bits < max_bits <= 63) or RS_ENOMEM. */
int rs_hist_init(rs_hist *h, int sub_bits, int max_bits);
void rs_hist_free(rs_hist *h);
void rs_hist_reset(rs_hist *h);

void rs_hist_record(rs_hist *h, uint64_t v);
/* Records v n times (n = 0 changes nothing). */
void rs_hist_record_n(rs_hist *h, uint64_t v, uint64_t n);

/* Adds src into dst (dst == src doubles it). Returns RS_EINVAL, leaving dst
 * unchanged, unless both have the same sub_bits and max_bits. */
rs_status rs_hist_merge(rs_hist *dst, const rs_hist *src);

/* 0 when empty. */
uint64_t rs_hist_min(const rs_hist *h);
uint64_t rs_hist_max(const rs_hist *h);
double rs_hist_mean(const rs_hist *h);
/* See "Quantiles" above. */
uint64_t rs_hist_quantile(const rs_hist *h, double q);

/* max(1, ceil(q * count)) as described above; 0 when count is 0. */
uint64_t rs_hist_rank(double q, uint64_t count);
/* Bucket of v (the top bucket for v >= 2^max_bits). */
uint32_t rs_hist_index(const rs_hist *h, uint64_t v);
/* Inclusive value range of bucket `index` (< nbuckets; larger means the top). */
void rs_hist_bucket_bounds(const rs_hist *h, uint32_t index, uint64_t *lo, uint64_t *hi);

typedef struct rs_hist_window {
    rs_hist *slots;   /* nslots, owned; their counts live in `block` */
    uint64_t *block;  /* nslots * nbuckets counts, owned */
    uint64_t epochs[RS_HIST_MAX_SLOTS]; /* epoch held by each slot */
    uint64_t head;    /* newest epoch seen; its slot always holds it */
    uint64_t head_end; /* first ns after the head epoch (saturated): records before it skip the division */
    uint64_t slot_ns;
    uint32_t head_slot; /* head % nslots */
    uint32_t nslots;
    uint32_t nbuckets;
    uint8_t sub_bits;
    uint8_t max_bits;
} rs_hist_window;

/* Returns RS_OK, RS_EFIELD_BASE + the first bad field (sub_bits, max_bits as
 * for rs_hist_init; 1 <= nslots <= 64; slot_ns >= 1) or RS_ENOMEM. The
 * window starts empty at epoch 0. */
int rs_hist_window_init(rs_hist_window *w, int sub_bits, int max_bits, uint64_t nslots,
                        uint64_t slot_ns);
void rs_hist_window_free(rs_hist_window *w);
/* Empties every slot and forgets the newest epoch seen. */
void rs_hist_window_reset(rs_hist_window *w);

/* O(1); a division only when now_ns passes into a new epoch, and a memset
 * of one slot when that slot held an aged-out epoch. n = 0 changes nothing
 * (time included). */
void rs_hist_window_record(rs_hist_window *w, uint64_t now_ns, uint64_t v);
void rs_hist_window_record_n(rs_hist_window *w, uint64_t now_ns, uint64_t v, uint64_t n);

/* Over the live slots at now_ns; 0 when empty. */
uint64_t rs_hist_window_count(const rs_hist_window *w, uint64_t now_ns);
uint64_t rs_hist_window_clamped(const rs_hist_window *w, uint64_t now_ns);
uint64_t rs_hist_window_min(const rs_hist_window *w, uint64_t now_ns);
uint64_t rs_hist_window_max(const rs_hist_window *w, uint64_t now_ns);
double rs_hist_window_mean(const rs_hist_window *w, uint64_t now_ns);
/* The value rs_hist_quantile would give for the live slots merged. */
uint64_t rs_hist_window_quantile(const rs_hist_window *w, uint64_t now_ns, double q);

/* Replaces dst's contents with the live slots merged (for export). Returns
 * RS_EINVAL, leaving dst unchanged, unless dst has the window's sub_bits and
 * max_bits. */
rs_status rs_hist_window_snapshot(const rs_hist_window *w, uint64_t now_ns, rs_hist *dst);

/* ---- a window laid out flat, for a shared region ------------------------
 *
 * rs_hist_flat is the window above in one block of caller's memory with
 * no pointers (every count is found by its index), so a region can hold
 * it and every process map it anywhere: the settings, the newest epoch,
 * one record per slot (its epoch and stats), then nslots * nbuckets
 * counts. Recording, the slot rule, quantiles and their error bound are
 * those of rs_hist_window with the same settings: fed the same samples at
 * the same times, both report the same figures. The caller serialises
 * calls (a region's lock).
 *
 * What a writer killed mid-record can leave: a slot whose count is one
 * more than its buckets hold (the bucket's increment is the last store),
 * its sum, min or max holding that sample; a slot made the head's, cleared, with head
 * not yet moved (the slot's epoch is then ahead of head, which every
 * reader treats as the head). rs_hist_flat_repair recounts each slot from
 * its buckets, empties one whose epoch is ahead of head and moves head to
 * it; rs_hist_flat_check_state reports what it would fix. */
typedef struct rs_hist_flat_slot {
    uint64_t epoch, count, clamped, min, max;
    double sum;
} rs_hist_flat_slot;

typedef struct rs_hist_flat {
    uint64_t slot_ns;
    uint64_t head;      /* newest epoch seen */
    uint32_t nslots, nbuckets;
    uint8_t sub_bits, max_bits, pad[6];
    rs_hist_flat_slot slot[RS_HIST_MAX_SLOTS];
    uint64_t counts[];  /* nslots * nbuckets */
} rs_hist_flat;

/* Bytes an rs_hist_flat of these settings takes; 0 when one is invalid. */
uint64_t rs_hist_flat_size(int sub_bits, int max_bits, uint64_t nslots, uint64_t slot_ns);
/* Formats zeroed memory of rs_hist_flat_size bytes; the settings are valid. */
void rs_hist_flat_init(rs_hist_flat *f, int sub_bits, int max_bits, uint64_t nslots,
                       uint64_t slot_ns);
/* 1 when f holds exactly these settings (its structure can be trusted). */
int rs_hist_flat_matches(const rs_hist_flat *f, int sub_bits, int max_bits, uint64_t nslots,
                         uint64_t slot_ns);
void rs_hist_flat_record(rs_hist_flat *f, uint64_t now_ns, uint64_t v);
/* rs_hist_flat_record in two steps, for a caller that notes what a record
 * will change first: advance moves the window to now_ns (clearing a slot
 * that aged out) and returns the slot a record then lands in; add records
 * v there. rs_hist_flat_bucket is v's bucket in a slot's counts. */
uint32_t rs_hist_flat_advance(rs_hist_flat *f, uint64_t now_ns);
void rs_hist_flat_add(rs_hist_flat *f, uint32_t j, uint64_t v);
uint32_t rs_hist_flat_bucket(const rs_hist_flat *f, uint64_t v);
/* Over the live slots at now_ns: the count, *sum (ns) and, for each of the
 * nq quantiles qs, out[i] (ns, as rs_hist_window_quantile). */
uint64_t rs_hist_flat_query(const rs_hist_flat *f, uint64_t now_ns, double *sum,
                            const double *qs, size_t nq, uint64_t *out);
/* Problems in the state of a flat window whose settings matched. */
int rs_hist_flat_check_state(const rs_hist_flat *f,
                             void (*report)(void *ctx, const char *problem), void *ctx);
void rs_hist_flat_repair(rs_hist_flat *f);

#endif /* RS_HIST_H */
