/* rs_hist.c - the log-linear histogram and its rotating window. */
#include "rs_hist.h"

#include <math.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

const rs_field RS_HIST_FIELDS[RS_HGF_COUNT] = {
    {"sub_bits", RS_FIELD_INT, RS_HIST_MIN_SUB_BITS, RS_HIST_MAX_SUB_BITS, 0, NULL},
    {"max_bits", RS_FIELD_INT, RS_HIST_MIN_SUB_BITS + 1, RS_HIST_MAX_MAX_BITS, 0, "> sub_bits"},
    {"slots", RS_FIELD_INT, 1, RS_HIST_MAX_SLOTS, 0, NULL},
    {"slot_ns", RS_FIELD_INT, 1, (double)UINT64_MAX, 0, NULL},
};

/* ---- bucket layout ------------------------------------------------------ */

RS_INLINE unsigned msb64(uint64_t x) { /* x != 0 */
#if defined(__GNUC__) || defined(__clang__)
    return 63u - (unsigned)__builtin_clzll(x);
#elif defined(_MSC_VER)
    unsigned long i;
    _BitScanReverse64(&i, x);
    return (unsigned)i;
#else
    return rs_hist_msb_generic(x);
#endif
}

RS_INLINE uint32_t index_of(uint64_t v, unsigned s, uint64_t limit, uint32_t nbuckets) {
    if (RS_UNLIKELY(v >= limit)) {
        return nbuckets - 1;
    }
    /* OR-ing 2^s makes values below 2^(s+1) take shift 0 (exact buckets). */
    unsigned shift = msb64(v | ((uint64_t)1 << s)) - s;
    return (uint32_t)(((uint64_t)shift << s) + (v >> shift));
}

static void bounds_of(uint32_t i, unsigned s, uint32_t nbuckets, uint64_t *lo, uint64_t *hi) {
    if (i >= nbuckets) {
        i = nbuckets - 1;
    }
    uint32_t k = i >> s;
    unsigned shift = k ? k - 1u : 0u;
    uint64_t mantissa = (uint64_t)i - ((uint64_t)shift << s); /* in [2^s, 2^(s+1)) once k >= 1 */
    *lo = mantissa << shift;
    *hi = *lo + (((uint64_t)1 << shift) - 1u);
}

uint32_t rs_hist_index(const rs_hist *h, uint64_t v) {
    return index_of(v, h->sub_bits, h->limit, h->nbuckets);
}

void rs_hist_bucket_bounds(const rs_hist *h, uint32_t index, uint64_t *lo, uint64_t *hi) {
    bounds_of(index, h->sub_bits, h->nbuckets, lo, hi);
}

static int check_bits(int sub_bits, int max_bits) {
    if (!rs_field_ok(&RS_HIST_FIELDS[RS_HGF_SUB_BITS], sub_bits))
        return RS_EFIELD_BASE + RS_HGF_SUB_BITS;
    if (!rs_field_ok(&RS_HIST_FIELDS[RS_HGF_MAX_BITS], max_bits) || max_bits <= sub_bits)
        return RS_EFIELD_BASE + RS_HGF_MAX_BITS;
    return RS_OK;
}

static uint32_t bucket_count(int sub_bits, int max_bits) {
    return (uint32_t)(max_bits - sub_bits + 1) << sub_bits;
}

/* ---- rank: max(1, ceil(q * count)) in exact integer arithmetic ---------- */

typedef struct u128 {
    uint64_t hi, lo;
} u128;

static u128 mul64(uint64_t a, uint64_t b) {
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    u128 r;
    r.lo = (mid << 32) | (p00 & 0xffffffffu);
    r.hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return r;
}

static u128 shr128(u128 x, unsigned k) { /* 0 < k < 128 */
    u128 r;
    if (k >= 64) {
        r.lo = x.hi >> (k - 64);
        r.hi = 0;
    } else {
        r.lo = (x.lo >> k) | (x.hi << (64 - k));
        r.hi = x.hi >> k;
    }
    return r;
}

static u128 low128(u128 x, unsigned k) { /* the low k bits, 0 < k < 128 */
    if (k >= 64) {
        x.hi &= k == 64 ? 0 : ((uint64_t)1 << (k - 64)) - 1u;
    } else {
        x.hi = 0;
        x.lo &= ((uint64_t)1 << k) - 1u;
    }
    return x;
}

static int le128(u128 a, u128 b) { return a.hi < b.hi || (a.hi == b.hi && a.lo <= b.lo); }

uint64_t rs_hist_rank(double q, uint64_t count) {
    if (count == 0) {
        return 0;
    }
    if (!(q > 0.0)) { /* also NaN */
        return 1;
    }
    if (q >= 1.0) {
        return count;
    }
    int e;
    double f = frexp(q, &e);                      /* q = f * 2^e, 0.5 <= f < 1, e <= 0 */
    uint64_t m = (uint64_t)ldexp(f, 53);          /* exact: q = m * 2^-k */
    int k = 53 - e;                               /* >= 53 */
    if (k >= 117) {                               /* q * count < 2^117 * 2^-k <= 1 */
        return 1;
    }
    u128 p = mul64(m, count);                     /* q * count = p * 2^-k, p < 2^117 */
    u128 frac = low128(p, (unsigned)k);
    uint64_t rank = shr128(p, (unsigned)k).lo;    /* floor; <= count */
    if ((frac.hi | frac.lo) != 0 && !le128(frac, shr128(p, 52))) {
        rank++;                                   /* beyond the one-ulp tolerance: ceil */
    }
    RS_ASSERT(rank >= 1); /* floor 0 leaves frac = p > p >> 52, so ceil gives 1 */
    return rank;
}

/* ---- plain histogram ---------------------------------------------------- */

static void clear_stats(rs_hist *h) {
    h->count = 0;
    h->clamped = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0.0;
}

static void setup(rs_hist *h, int sub_bits, int max_bits, uint64_t *counts) {
    h->counts = counts;
    h->sub_bits = (uint8_t)sub_bits;
    h->max_bits = (uint8_t)max_bits;
    h->nbuckets = bucket_count(sub_bits, max_bits);
    h->limit = (uint64_t)1 << max_bits;
    clear_stats(h);
}

int rs_hist_init(rs_hist *h, int sub_bits, int max_bits) {
    memset(h, 0, sizeof *h);
    int st = check_bits(sub_bits, max_bits);
    if (st != RS_OK) {
        return st;
    }
    uint64_t *counts = rs_calloc(bucket_count(sub_bits, max_bits), sizeof(uint64_t));
    if (!counts) {
        return RS_ENOMEM;
    }
    setup(h, sub_bits, max_bits, counts);
    return RS_OK;
}

void rs_hist_free(rs_hist *h) {
    rs_free(h->counts);
    h->counts = NULL;
}

void rs_hist_reset(rs_hist *h) {
    memset(h->counts, 0, (size_t)h->nbuckets * sizeof(uint64_t));
    clear_stats(h);
}

/* The record itself, inlined into every entry point so record() folds n =
 * 1. The scalars go first: a store to counts[] may alias them in the
 * compiler's eyes, so it comes last to spare reloads (and a flat window
 * relies on it being last, see rs_hist.h). */
RS_INLINE void add_to(uint64_t *count, uint64_t *clamped, uint64_t *min, uint64_t *max,
                      double *sum, uint64_t *counts, unsigned s, uint64_t limit,
                      uint32_t nbuckets, uint64_t v, uint64_t n) {
    uint32_t i = index_of(v, s, limit, nbuckets);
    RS_ASSERT(i < nbuckets);
    *count += n;
    if (RS_UNLIKELY(v >= limit)) {
        *clamped += n;
    }
    if (v < *min) {
        *min = v;
    }
    if (v > *max) {
        *max = v;
    }
    *sum += (double)v * (double)n;
    counts[i] += n;
}

RS_INLINE void add_sample(rs_hist *h, uint64_t v, uint64_t n) {
    add_to(&h->count, &h->clamped, &h->min, &h->max, &h->sum, h->counts, h->sub_bits, h->limit,
           h->nbuckets, v, n);
}

void rs_hist_record_n(rs_hist *h, uint64_t v, uint64_t n) {
    if (RS_LIKELY(n != 0)) {
        add_sample(h, v, n);
    }
}

void rs_hist_record(rs_hist *h, uint64_t v) { add_sample(h, v, 1); }

static int same_config(const rs_hist *a, int sub_bits, int max_bits) {
    return a->sub_bits == sub_bits && a->max_bits == max_bits;
}

static void add_into(rs_hist *dst, const rs_hist *src) {
    for (uint32_t i = 0; i < dst->nbuckets; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->count += src->count;
    dst->clamped += src->clamped;
    dst->min = src->min < dst->min ? src->min : dst->min;
    dst->max = src->max > dst->max ? src->max : dst->max;
    dst->sum += src->sum;
}

rs_status rs_hist_merge(rs_hist *dst, const rs_hist *src) {
    if (!same_config(dst, src->sub_bits, src->max_bits)) {
        return RS_EINVAL;
    }
    add_into(dst, src);
    return RS_OK;
}

uint64_t rs_hist_min(const rs_hist *h) { return h->count ? h->min : 0; }
uint64_t rs_hist_max(const rs_hist *h) { return h->count ? h->max : 0; }
double rs_hist_mean(const rs_hist *h) { return h->count ? h->sum / (double)h->count : 0.0; }

/* The quantile over the bucket-wise sum of ncols count arrays holding
 * `count` samples in [min, max]; only the buckets of min..max can be
 * non-zero, so the scan is bounded by them. */
static uint64_t pick(const uint64_t *const *cols, unsigned ncols, unsigned s, uint64_t limit,
                     uint32_t nbuckets, uint64_t count, uint64_t min, uint64_t max, double q) {
    if (count == 0) {
        return 0;
    }
    uint64_t rank = rs_hist_rank(q, count);
    if (rank <= 1) {
        return min;
    }
    if (rank >= count) {
        return max;
    }
    uint64_t seen = 0;
    uint32_t last = index_of(max, s, limit, nbuckets);
    for (uint32_t i = index_of(min, s, limit, nbuckets); i <= last; i++) {
        for (unsigned c = 0; c < ncols; c++) {
            seen += cols[c][i];
        }
        if (seen >= rank) {
            uint64_t lo, hi;
            bounds_of(i, s, nbuckets, &lo, &hi);
            uint64_t mid = lo + ((hi - lo) >> 1);
            return mid < min ? min : mid > max ? max : mid;
        }
    }
    return max; /* unreachable while the counts add up to count */
}

uint64_t rs_hist_quantile(const rs_hist *h, double q) {
    const uint64_t *cols[1] = {h->counts};
    return pick(cols, 1, h->sub_bits, h->limit, h->nbuckets, h->count, h->min, h->max, q);
}

/* ---- window ------------------------------------------------------------- */

/* Makes epoch e the head. head_end is the first nanosecond after it,
 * saturated at UINT64_MAX: (e + 1) * slot_ns fits iff e < UINT64_MAX / slot_ns. */
static void set_head(rs_hist_window *w, uint64_t e) {
    w->head = e;
    w->head_slot = (uint32_t)(e % w->nslots);
    w->head_end = e < UINT64_MAX / w->slot_ns ? (e + 1u) * w->slot_ns : UINT64_MAX;
}

int rs_hist_window_init(rs_hist_window *w, int sub_bits, int max_bits, uint64_t nslots,
                        uint64_t slot_ns) {
    memset(w, 0, sizeof *w);
    int st = check_bits(sub_bits, max_bits);
    if (st != RS_OK) {
        return st;
    }
    if (!rs_field_ok(&RS_HIST_FIELDS[RS_HGF_NSLOTS], (double)nslots)) {
        return RS_EFIELD_BASE + RS_HGF_NSLOTS;
    }
    if (slot_ns < 1) {
        return RS_EFIELD_BASE + RS_HGF_SLOT_NS;
    }
    uint32_t nbuckets = bucket_count(sub_bits, max_bits);
    w->slots = rs_calloc((size_t)nslots, sizeof(rs_hist));
    w->block = rs_calloc((size_t)nslots * nbuckets, sizeof(uint64_t));
    if (!w->slots || !w->block) {
        rs_hist_window_free(w);
        return RS_ENOMEM;
    }
    w->nslots = (uint32_t)nslots;
    w->slot_ns = slot_ns;
    w->nbuckets = nbuckets;
    w->sub_bits = (uint8_t)sub_bits;
    w->max_bits = (uint8_t)max_bits;
    for (uint32_t j = 0; j < w->nslots; j++) {
        setup(&w->slots[j], sub_bits, max_bits, w->block + (size_t)j * nbuckets);
    }
    set_head(w, 0);
    return RS_OK;
}

void rs_hist_window_free(rs_hist_window *w) {
    rs_free(w->slots);
    rs_free(w->block);
    w->slots = NULL;
    w->block = NULL;
    w->nslots = 0;
}

void rs_hist_window_reset(rs_hist_window *w) {
    for (uint32_t j = 0; j < w->nslots; j++) {
        rs_hist_reset(&w->slots[j]);
        w->epochs[j] = 0;
    }
    set_head(w, 0);
}

/* The epoch time is read at: never older than the newest epoch seen. */
static uint64_t epoch_at(const rs_hist_window *w, uint64_t now_ns) {
    uint64_t e = now_ns / w->slot_ns;
    return e > w->head ? e : w->head;
}

/* The slot a record at now_ns lands in. Fast path, no division: any now_ns
 * before head_end (including times in the past) belongs to the head, whose
 * slot always holds the head epoch. */
RS_INLINE rs_hist *slot_for(rs_hist_window *w, uint64_t now_ns) {
    if (RS_UNLIKELY(now_ns >= w->head_end)) {
        uint64_t e = epoch_at(w, now_ns);
        if (e != w->head) {
            set_head(w, e);
            uint32_t j = w->head_slot;
            if (w->epochs[j] != e) {
                if (w->slots[j].count) {
                    rs_hist_reset(&w->slots[j]); /* lazy: its epoch has aged out */
                }
                w->epochs[j] = e;
            }
        }
    }
    RS_ASSERT(w->epochs[w->head_slot] == w->head);
    return &w->slots[w->head_slot];
}

void rs_hist_window_record_n(rs_hist_window *w, uint64_t now_ns, uint64_t v, uint64_t n) {
    if (RS_LIKELY(n != 0)) {
        add_sample(slot_for(w, now_ns), v, n);
    }
}

void rs_hist_window_record(rs_hist_window *w, uint64_t now_ns, uint64_t v) {
    add_sample(slot_for(w, now_ns), v, 1);
}

/* The live, non-empty slots at now_ns, with their merged stats. A slot's
 * epoch is <= head <= e, so e - epoch cannot wrap. */
typedef struct live_set {
    const uint64_t *cols[RS_HIST_MAX_SLOTS];
    unsigned n;
    uint64_t count, clamped, min, max;
    double sum;
} live_set;

static live_set collect(const rs_hist_window *w, uint64_t now_ns) {
    live_set ls;
    uint64_t e = epoch_at(w, now_ns);
    ls.n = 0;
    ls.count = ls.clamped = ls.max = 0;
    ls.min = UINT64_MAX;
    ls.sum = 0.0;
    for (uint32_t j = 0; j < w->nslots; j++) {
        const rs_hist *s = &w->slots[j];
        if (s->count == 0 || e - w->epochs[j] >= w->nslots) {
            continue;
        }
        ls.cols[ls.n++] = s->counts;
        ls.count += s->count;
        ls.clamped += s->clamped;
        ls.min = s->min < ls.min ? s->min : ls.min;
        ls.max = s->max > ls.max ? s->max : ls.max;
        ls.sum += s->sum;
    }
    return ls;
}

uint64_t rs_hist_window_count(const rs_hist_window *w, uint64_t now_ns) {
    return collect(w, now_ns).count;
}

uint64_t rs_hist_window_clamped(const rs_hist_window *w, uint64_t now_ns) {
    return collect(w, now_ns).clamped;
}

uint64_t rs_hist_window_min(const rs_hist_window *w, uint64_t now_ns) {
    live_set ls = collect(w, now_ns);
    return ls.count ? ls.min : 0;
}

uint64_t rs_hist_window_max(const rs_hist_window *w, uint64_t now_ns) {
    return collect(w, now_ns).max;
}

double rs_hist_window_mean(const rs_hist_window *w, uint64_t now_ns) {
    live_set ls = collect(w, now_ns);
    return ls.count ? ls.sum / (double)ls.count : 0.0;
}

uint64_t rs_hist_window_quantile(const rs_hist_window *w, uint64_t now_ns, double q) {
    live_set ls = collect(w, now_ns);
    return pick(ls.cols, ls.n, w->sub_bits, (uint64_t)1 << w->max_bits, w->nbuckets, ls.count,
                ls.min, ls.max, q);
}

rs_status rs_hist_window_snapshot(const rs_hist_window *w, uint64_t now_ns, rs_hist *dst) {
    if (!same_config(dst, w->sub_bits, w->max_bits)) {
        return RS_EINVAL;
    }
    uint64_t e = epoch_at(w, now_ns);
    rs_hist_reset(dst);
    for (uint32_t j = 0; j < w->nslots; j++) {
        if (w->slots[j].count != 0 && e - w->epochs[j] < w->nslots) {
            add_into(dst, &w->slots[j]);
        }
    }
    return RS_OK;
}

/* ---- a flat window ------------------------------------------------------ */

uint64_t rs_hist_flat_size(int sub_bits, int max_bits, uint64_t nslots, uint64_t slot_ns) {
    if (check_bits(sub_bits, max_bits) != RS_OK ||
        !rs_field_ok(&RS_HIST_FIELDS[RS_HGF_NSLOTS], (double)nslots) || slot_ns < 1) {
        return 0;
    }
    return sizeof(rs_hist_flat) + nslots * bucket_count(sub_bits, max_bits) * sizeof(uint64_t);
}

static void flat_clear_slot(rs_hist_flat *f, uint32_t j) {
    rs_hist_flat_slot *s = &f->slot[j];
    memset(&f->counts[(size_t)j * f->nbuckets], 0, (size_t)f->nbuckets * sizeof(uint64_t));
    s->count = s->clamped = s->max = 0;
    s->min = UINT64_MAX;
    s->sum = 0.0;
}

void rs_hist_flat_init(rs_hist_flat *f, int sub_bits, int max_bits, uint64_t nslots,
                       uint64_t slot_ns) {
    f->slot_ns = slot_ns;
    f->head = 0;
    f->nslots = (uint32_t)nslots;
    f->nbuckets = bucket_count(sub_bits, max_bits);
    f->sub_bits = (uint8_t)sub_bits;
    f->max_bits = (uint8_t)max_bits;
    for (uint32_t j = 0; j < f->nslots; j++) {
        f->slot[j].epoch = 0;
        flat_clear_slot(f, j);
    }
}

int rs_hist_flat_matches(const rs_hist_flat *f, int sub_bits, int max_bits, uint64_t nslots,
                         uint64_t slot_ns) {
    return f->slot_ns == slot_ns && f->nslots == nslots && f->sub_bits == sub_bits &&
           f->max_bits == max_bits && f->nbuckets == bucket_count(sub_bits, max_bits);
}

uint32_t rs_hist_flat_advance(rs_hist_flat *f, uint64_t now_ns) {
    uint64_t e = now_ns / f->slot_ns;
    if (e > f->head) {
        /* the slot first, head last: a writer killed in between leaves a
         * slot ahead of head, which readers and repair take as the head */
        uint32_t j = (uint32_t)(e % f->nslots);
        if (f->slot[j].epoch != e) {
            flat_clear_slot(f, j);
            f->slot[j].epoch = e;
        }
        f->head = e;
    }
    return (uint32_t)(f->head % f->nslots);
}

uint32_t rs_hist_flat_bucket(const rs_hist_flat *f, uint64_t v) {
    return index_of(v, f->sub_bits, (uint64_t)1 << f->max_bits, f->nbuckets);
}

void rs_hist_flat_add(rs_hist_flat *f, uint32_t j, uint64_t v) {
    rs_hist_flat_slot *s = &f->slot[j];
    add_to(&s->count, &s->clamped, &s->min, &s->max, &s->sum,
           &f->counts[(size_t)j * f->nbuckets], f->sub_bits, (uint64_t)1 << f->max_bits,
           f->nbuckets, v, 1);
}

void rs_hist_flat_record(rs_hist_flat *f, uint64_t now_ns, uint64_t v) {
    rs_hist_flat_add(f, rs_hist_flat_advance(f, now_ns), v);
}

uint64_t rs_hist_flat_query(const rs_hist_flat *f, uint64_t now_ns, double *sum,
                            const double *qs, size_t nq, uint64_t *out) {
    uint64_t e = now_ns / f->slot_ns;
    e = e > f->head ? e : f->head;
    live_set ls;
    ls.n = 0;
    ls.count = ls.max = 0;
    ls.min = UINT64_MAX;
    ls.sum = 0.0;
    for (uint32_t j = 0; j < f->nslots; j++) {
        const rs_hist_flat_slot *s = &f->slot[j];
        /* an epoch ahead of e: a slot a killed writer made the head's */
        uint64_t ep = s->epoch > e ? e : s->epoch;
        if (s->count == 0 || e - ep >= f->nslots) {
            continue;
        }
        ls.cols[ls.n++] = &f->counts[(size_t)j * f->nbuckets];
        ls.count += s->count;
        ls.min = s->min < ls.min ? s->min : ls.min;
        ls.max = s->max > ls.max ? s->max : ls.max;
        ls.sum += s->sum;
    }
    for (size_t i = 0; i < nq; i++) {
        out[i] = pick(ls.cols, ls.n, f->sub_bits, (uint64_t)1 << f->max_bits, f->nbuckets,
                      ls.count, ls.min, ls.max, qs[i]);
    }
    *sum = ls.sum;
    return ls.count;
}

static uint64_t flat_slot_total(const rs_hist_flat *f, uint32_t j) {
    const uint64_t *c = &f->counts[(size_t)j * f->nbuckets];
    uint64_t n = 0;
    for (uint32_t i = 0; i < f->nbuckets; i++) {
        n += c[i];
    }
    return n;
}

int rs_hist_flat_check_state(const rs_hist_flat *f, void (*report)(void *ctx, const char *problem),
                             void *ctx) {
    int n = 0;
    for (uint32_t j = 0; j < f->nslots; j++) {
        const rs_hist_flat_slot *s = &f->slot[j];
        if (s->count != flat_slot_total(f, j)) {
            report(ctx, "histogram window: a slot's count differs from its buckets");
            n++;
        }
        if (s->epoch > f->head) {
            report(ctx, "histogram window: a slot is ahead of the newest epoch");
            n++;
        }
        if (s->count && s->min > s->max) {
            report(ctx, "histogram window: a slot's min exceeds its max");
            n++;
        }
    }
    if (f->slot[f->head % f->nslots].epoch != f->head) {
        report(ctx, "histogram window: the newest epoch's slot holds another");
        n++;
    }
    return n;
}

void rs_hist_flat_repair(rs_hist_flat *f) {
    for (uint32_t j = 0; j < f->nslots; j++) {
        rs_hist_flat_slot *s = &f->slot[j];
        if (s->epoch > f->head) {
            f->head = s->epoch; /* cleared before it was made the head's */
        }
        s->count = flat_slot_total(f, j);
        if (s->count == 0) {
            flat_clear_slot(f, j);
        } else if (s->min > s->max) {
            s->min = 0; /* only damage does this: widen to the whole range */
            s->max = (uint64_t)1 << f->max_bits;
        }
    }
    uint32_t h = (uint32_t)(f->head % f->nslots);
    if (f->slot[h].epoch != f->head) { /* only damage does this */
        flat_clear_slot(f, h);
        f->slot[h].epoch = f->head;
    }
}
