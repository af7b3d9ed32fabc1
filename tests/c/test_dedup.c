/* test_dedup.c - unit tests of rs_dedup (csrc/core/rs_dedup.h).
 *
 * Keys are integers carried in pointers. The low 32 bits are the key's value
 * (what the test eq compares); the high 32 bits are a serial number that makes
 * two equal keys distinct pointers, so the tests can tell which object the set
 * kept and check that every key it took is handed back through `release`
 * exactly once. Plain keys (serial 0) are made with K(v). */
#define _POSIX_C_SOURCE 200809L /* alarm: a hung probe loop fails fast, naming the test */
#include "rs_dedup.h"
#include "rs_test.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

_Static_assert(sizeof(uintptr_t) >= 8, "the tests pack a serial into the key's high bits");

#define NIL RS_DEDUP_NIL
#define K(v) ((void *)(uintptr_t)(uint64_t)(v))
/* A second pointer with the same value as K(v): found only through eq. */
#define ALT(v) ((void *)(uintptr_t)(((uint64_t)0xA17u << 32) | (uint64_t)(v)))

static uint32_t key_val(const void *p) { return (uint32_t)((uint64_t)(uintptr_t)p & 0xffffffffu); }
static uint32_t key_serial(const void *p) { return (uint32_t)((uint64_t)(uintptr_t)p >> 32); }

/* Small deterministic generator so runs are reproducible. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }

/* ---- hash functions ------------------------------------------------------ */

typedef uint64_t (*hash_fn)(uint32_t v);

static uint64_t h_mix(uint32_t v) {
    uint64_t z = (uint64_t)v * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t h_mod3(uint32_t v) { return v % 3u; }
static uint64_t h_const(uint32_t v) { return (void)v, 0x2Au; }
/* Home is the table's last cell whatever its size: every probe wraps. */
static uint64_t h_last(uint32_t v) { return (void)v, UINT64_MAX; }
/* Homes in the last few cells: clusters straddle the end of the table. */
static uint64_t h_tail(uint32_t v) { return UINT64_MAX - (v % 5u); }
/* One home (low bits equal) but distinct full hashes. */
static uint64_t h_high(uint32_t v) { return ((uint64_t)v << 32) | 5u; }

/* ---- callbacks: eq, release, ownership ----------------------------------- */

#define MAXV 4096
enum { OWN_CALLER = 0, OWN_SET = 1, OWN_RELEASED = 2 };

typedef struct {
    long eq_calls;
    long eq_fail_at; /* 1-based eq call that fails; 0 = never */
    int eq_fail_all;
    long releases;
    uint32_t rel_by_val[MAXV];
    uint8_t *own; /* by serial */
    uint32_t own_cap, next_serial;
    long own_errors;
    void **rel_log; /* keys released since the last reset */
    uint32_t rel_len, rel_cap;
} tctx;

static void tctx_init(tctx *t) { memset(t, 0, sizeof *t); }

static void tctx_free(tctx *t) {
    free(t->own);
    free(t->rel_log);
    memset(t, 0, sizeof *t);
}

/* A fresh pointer with value v, tracked for ownership. */
static void *new_key(tctx *t, uint32_t v) {
    uint32_t s = ++t->next_serial;
    if (s >= t->own_cap) {
        uint32_t cap = t->own_cap ? t->own_cap * 2 : 1024;
        while (cap <= s) {
            cap *= 2;
        }
        t->own = realloc(t->own, cap);
        memset(t->own + t->own_cap, OWN_CALLER, cap - t->own_cap);
        t->own_cap = cap;
    }
    t->own[s] = OWN_CALLER;
    return (void *)(uintptr_t)(((uint64_t)s << 32) | v);
}

static int tracked(const tctx *t, const void *key) {
    uint32_t s = key_serial(key);
    return t->own && s != 0 && s < t->own_cap && s <= t->next_serial;
}

/* The caller's bookkeeping after rs_dedup_seen: a stored key now belongs to the set. */
static void after_seen(tctx *t, void *key, int stored) {
    if (stored && tracked(t, key)) {
        if (t->own[key_serial(key)] == OWN_SET) {
            t->own_errors++; /* stored twice */
        }
        t->own[key_serial(key)] = OWN_SET;
    }
}

static long owned_by_set(const tctx *t) {
    long n = 0;
    for (uint32_t s = 1; t->own && s <= t->next_serial; s++) {
        n += t->own[s] == OWN_SET;
    }
    return n;
}

static int test_eq(void *a, void *b, void *ctx) {
    tctx *t = ctx;
    t->eq_calls++;
    if (t->eq_fail_all || t->eq_calls == t->eq_fail_at) {
        return -1;
    }
    return key_val(a) == key_val(b);
}

static void test_release(void *key, void *ctx) {
    tctx *t = ctx;
    t->releases++;
    if (key_val(key) < MAXV) {
        t->rel_by_val[key_val(key)]++;
    }
    if (tracked(t, key)) {
        if (t->own[key_serial(key)] != OWN_SET) {
            t->own_errors++; /* released a key it did not hold */
        }
        t->own[key_serial(key)] = OWN_RELEASED;
    }
    if (t->rel_len == t->rel_cap) {
        t->rel_cap = t->rel_cap ? t->rel_cap * 2 : 64;
        t->rel_log = realloc(t->rel_log, t->rel_cap * sizeof(void *));
    }
    t->rel_log[t->rel_len++] = key;
}

/* ---- visiting ------------------------------------------------------------ */

typedef struct {
    void *keys[2048];
    uint32_t n;
    uint32_t stop_at; /* return `ret` from the stop_at-th call; 0 = never */
    int ret;
} visit_buf;

static int collect(void *key, void *arg) {
    visit_buf *b = arg;
    if (b->n < sizeof b->keys / sizeof b->keys[0]) {
        b->keys[b->n] = key;
    }
    b->n++;
    return (b->stop_at && b->n == b->stop_at) ? b->ret : 0;
}

/* Fills b with the set's keys, oldest first. */
static void snapshot(const rs_dedup *d, visit_buf *b) {
    b->n = 0;
    b->stop_at = 0;
    b->ret = 0;
    rs_dedup_visit(d, collect, b);
}

/* 1 when the set's keys, oldest first, are exactly the values vals[0..n). */
static int order_is(const rs_dedup *d, const uint32_t *vals, uint32_t n) {
    visit_buf b;
    snapshot(d, &b);
    if (b.n != n) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (key_val(b.keys[i]) != vals[i]) {
            return 0;
        }
    }
    return 1;
}

/* ---- structural invariant ------------------------------------------------ */

#define VIOL(...)                                                              \
    do {                                                                       \
        if (nviol++ < 5) {                                                     \
            printf("  [%s] invariant: ", rs_test_current);                     \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
        }                                                                      \
    } while (0)

/* Counts violations of the table / time-list / free-list invariants, read
 * straight from the struct: every live entry sits in table[slot], is
 * reachable from its home cell without crossing an empty cell, the table
 * holds exactly `size` entries, the time list has `size` nodes ordered by
 * t_ns with consistent prev links, and the free list holds the rest. */
static int violations(const rs_dedup *d) {
    int nviol = 0;
    if (!d->pool || !d->table) {
        VIOL("pool or table is NULL");
        return nviol;
    }
    uint32_t tsize = d->mask + 1;
    if (tsize == 0 || (tsize & d->mask) != 0) {
        VIOL("table size %u is not a power of two", tsize);
        return nviol;
    }
    if ((uint64_t)tsize < 2ull * d->pool_size) {
        VIOL("table size %u < 2 * pool_size %u", tsize, d->pool_size);
    }
    if (d->pool_size > d->capacity || d->size > d->pool_size) {
        VIOL("size %u, pool_size %u, capacity %u", d->size, d->pool_size, d->capacity);
        return nviol;
    }
    uint8_t *mark = calloc(d->pool_size ? d->pool_size : 1, 1);
    /* time list */
    uint32_t n = 0, prev = NIL;
    uint64_t last_t = 0;
    for (uint32_t idx = d->oldest; idx != NIL; idx = d->pool[idx].next) {
        if (idx >= d->pool_size) {
            VIOL("time list index %u out of the pool", idx);
            break;
        }
        if (mark[idx]) {
            VIOL("time list revisits entry %u", idx);
            break;
        }
        mark[idx] = 1;
        const rs_dedup_entry *e = &d->pool[idx];
        if (e->prev != prev) {
            VIOL("entry %u: prev %u, expected %u", idx, e->prev, prev);
        }
        if (n > 0 && e->t_ns < last_t) {
            VIOL("entry %u: t_ns %" PRIu64 " before its predecessor's %" PRIu64, idx, e->t_ns,
                 last_t);
        }
        if (e->slot > d->mask || RS_DEDUP_CELL_INDEX(d->table[e->slot]) != idx + 1) {
            VIOL("entry %u: slot %u does not hold it", idx, e->slot);
        }
        last_t = e->t_ns;
        prev = idx;
        n++;
    }
    if (prev != d->newest) {
        VIOL("newest %u, list ends at %u", d->newest, prev);
    }
    if (n != d->size) {
        VIOL("time list has %u nodes, size %u", n, d->size);
    }
    /* table */
    uint32_t filled = 0;
    for (uint32_t i = 0; i < tsize; i++) {
        uint32_t cell = RS_DEDUP_CELL_INDEX(d->table[i]);
        if (!cell) {
            continue;
        }
        filled++;
        uint32_t idx = cell - 1;
        if (idx >= d->pool_size) {
            VIOL("cell %u points past the pool (%u)", i, idx);
            continue;
        }
        if (mark[idx] != 1) {
            VIOL("cell %u holds entry %u, which is not live or is in two cells", i, idx);
        }
        mark[idx] = 2;
        if (d->pool[idx].slot != i) {
            VIOL("cell %u holds entry %u whose slot is %u", i, idx, d->pool[idx].slot);
        }
        if (RS_DEDUP_CELL_TAG(d->table[i]) != (uint32_t)d->pool[idx].hash) {
            VIOL("cell %u has tag %08x, its entry's hash says %08x", i,
                 RS_DEDUP_CELL_TAG(d->table[i]), (uint32_t)d->pool[idx].hash);
        }
        uint32_t home = (uint32_t)d->pool[idx].hash & d->mask;
        for (uint32_t j = home; j != i; j = (j + 1) & d->mask) {
            if (!d->table[j]) {
                VIOL("entry %u in cell %u unreachable from home %u (cell %u empty)", idx, i,
                     home, j);
                break;
            }
        }
    }
    if (filled != d->size) {
        VIOL("%u cells in use, size %u", filled, d->size);
    }
    /* free list */
    uint32_t nfree = 0;
    for (uint32_t idx = d->free_head; idx != NIL; idx = d->pool[idx].next) {
        if (idx >= d->pool_size || mark[idx]) {
            VIOL("free list reaches entry %u (out of range, live or a cycle)", idx);
            break;
        }
        mark[idx] = 3;
        nfree++;
    }
    if (nfree != d->pool_size - d->size) {
        VIOL("free list has %u entries, expected %u", nfree, d->pool_size - d->size);
    }
    free(mark);
    return nviol;
}

/* ---- reference model ----------------------------------------------------- */

/* The set as an array of live keys, oldest first (mirrors tests/model/dedup.py). */
typedef struct {
    uint32_t v;
    uint64_t t;
    void *key;
} ref_ent;

typedef struct {
    uint64_t ttl;
    uint32_t cap, n;
    ref_ent *e;
    uint64_t duplicates, expired, evicted;
    void **drops; /* keys dropped since the last reset */
    uint32_t ndrops, drops_cap;
} ref_t;

static void ref_init(ref_t *r, uint64_t ttl, uint32_t cap) {
    memset(r, 0, sizeof *r);
    r->ttl = ttl;
    r->cap = cap;
    r->e = malloc((size_t)cap * sizeof *r->e);
    r->drops_cap = cap + 8;
    r->drops = malloc(r->drops_cap * sizeof(void *));
}

static void ref_free(ref_t *r) {
    free(r->e);
    free(r->drops);
}

static int ref_is_expired(const ref_t *r, uint32_t i, uint64_t now) {
    return now >= r->e[i].t && now - r->e[i].t >= r->ttl;
}

static void ref_drop(ref_t *r, uint32_t i) {
    r->drops[r->ndrops++] = r->e[i].key;
    memmove(&r->e[i], &r->e[i + 1], (r->n - i - 1) * sizeof *r->e);
    r->n--;
}

static int ref_find(const ref_t *r, uint32_t v) {
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->e[i].v == v) {
            return (int)i;
        }
    }
    return -1;
}

static uint32_t ref_expire(ref_t *r, uint64_t now, uint32_t limit) {
    uint32_t n = 0;
    while (r->n && (limit == 0 || n < limit) && ref_is_expired(r, 0, now)) {
        ref_drop(r, 0);
        r->expired++;
        n++;
    }
    return n;
}

static int ref_seen(ref_t *r, uint32_t v, void *key, uint64_t now, int *stored) {
    *stored = 0;
    ref_expire(r, now, 2);
    int i = ref_find(r, v);
    if (i >= 0) {
        if (!ref_is_expired(r, (uint32_t)i, now)) {
            r->duplicates++;
            return 1;
        }
        r->expired++;
        ref_ent e = r->e[i];
        e.t = now;
        memmove(&r->e[i], &r->e[i + 1], (r->n - (uint32_t)i - 1) * sizeof *r->e);
        r->e[r->n - 1] = e;
        return 0;
    }
    if (r->n == r->cap) {
        ref_drop(r, 0);
        r->evicted++;
    }
    r->e[r->n++] = (ref_ent){v, now, key};
    *stored = 1;
    return 0;
}

static int ref_contains(const ref_t *r, uint32_t v, uint64_t now) {
    int i = ref_find(r, v);
    return i >= 0 && !ref_is_expired(r, (uint32_t)i, now);
}

static int ref_discard(ref_t *r, uint32_t v) {
    int i = ref_find(r, v);
    if (i < 0) {
        return 0;
    }
    ref_drop(r, (uint32_t)i);
    return 1;
}

static void ref_clear(ref_t *r) {
    while (r->n) {
        ref_drop(r, 0);
    }
}

/* ---- randomized scenarios against the reference -------------------------- */

typedef struct {
    uint32_t capacity;
    uint64_t ttl;
    uint32_t nvals;   /* key values are 1..nvals */
    hash_fn hash;
    long ops;
    int check_every;  /* structural invariant and visit order every N ops */
    unsigned fail_pct; /* % of seen/contains/discard run with a failing eq */
} scenario;

#define MISMATCH(...)                                                          \
    do {                                                                       \
        if (mism++ < 8) {                                                      \
            printf("  [%s] op %ld: ", rs_test_current, op);                    \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
        }                                                                      \
    } while (0)

enum { OP_SEEN, OP_CONTAINS, OP_DISCARD, OP_EXPIRE, OP_CLEAR };

/* Runs sc->ops random operations on the set and the reference in lockstep and
 * checks results, counters, released keys and (every check_every ops) the
 * structural invariant and the visit order. */
static void run_scenario(const scenario *sc) {
    tctx t;
    tctx_init(&t);
    ref_t r;
    ref_init(&r, sc->ttl, sc->capacity);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, sc->ttl, sc->capacity, test_eq, test_release, &t), RS_OK);
    uint64_t now = 1000;
    long mism = 0, nviol = 0, minus_one = 0, reruns = 0;
    uint32_t max_size = 0;
    visit_buf *vb = malloc(sizeof *vb);
    for (long op = 0; op < sc->ops; op++) {
        /* advance time in phases of 1000 ops: a slow phase fills the set to
         * capacity (evictions), a fast one lets entries expire; in both, time
         * sometimes jumps to an entry's exact TTL edge */
        int slow = (op / 1000) % 2 == 0;
        uint32_t a = rng_below(100);
        if (slow) {
            now += a < 90 ? 0 : rng_below((uint32_t)(sc->ttl / 64 + 1));
        } else if (a < 25) {
            /* same instant */
        } else if (a < 80) {
            now += rng_below((uint32_t)(sc->ttl / 8 + 1));
        } else if (a < 95 && r.n) {
            uint64_t edge = r.e[rng_below(r.n)].t + sc->ttl - (rng_below(2) ? 1 : 0);
            now = edge > now ? edge : now;
        } else {
            now += rng_below((uint32_t)sc->ttl) + (a == 99 ? 2 * sc->ttl : 0);
        }
        uint32_t p = rng_below(1000), kind;
        if (p < 560) {
            kind = OP_SEEN;
        } else if (p < 740) {
            kind = OP_CONTAINS;
        } else if (p < 890) {
            kind = OP_DISCARD;
        } else if (p < 999) {
            kind = OP_EXPIRE;
        } else {
            kind = OP_CLEAR;
        }
        /* the key: a fresh pointer, or (1 in 5) the very pointer the set holds */
        uint32_t v;
        void *key;
        if (r.n && rng_below(5) == 0) {
            uint32_t i = rng_below(r.n);
            v = r.e[i].v;
            key = r.e[i].key;
        } else {
            v = 1 + rng_below(sc->nvals);
            key = kind == OP_SEEN ? new_key(&t, v) : ALT(v);
        }
        uint64_t h = sc->hash(v);
        int failing = kind <= OP_DISCARD && rng_below(100) < sc->fail_pct;
        t.eq_fail_all = failing;
        long eq_before = t.eq_calls;
        t.rel_len = 0;
        r.ndrops = 0;
        int got = 0, want = 0, stored = -7, want_stored = 0;
        switch (kind) {
        case OP_SEEN:
            got = rs_dedup_seen(&d, h, key, now, &stored);
            after_seen(&t, key, stored == 1);
            break;
        case OP_CONTAINS:
            got = rs_dedup_contains(&d, h, key, now);
            break;
        case OP_DISCARD:
            got = rs_dedup_discard(&d, h, key);
            break;
        case OP_EXPIRE: {
            uint32_t limit = rng_below(4);
            got = (int)rs_dedup_expire(&d, now, limit);
            want = (int)ref_expire(&r, now, limit);
            break;
        }
        default:
            rs_dedup_clear(&d);
            ref_clear(&r);
            break;
        }
        t.eq_fail_all = 0;
        if (kind <= OP_DISCARD) {
            int eq_called = t.eq_calls != eq_before;
            if (failing && got == -1) {
                /* aborted: only the seen's incremental expiry may have happened */
                minus_one++;
                if (!eq_called) {
                    MISMATCH("-1 without a failing comparison");
                }
                if (kind == OP_SEEN) {
                    ref_expire(&r, now, 2);
                    if (stored != 0) {
                        MISMATCH("seen returned -1 with *stored=%d", stored);
                    }
                }
                want = -1;
            } else {
                if (failing && eq_called) {
                    MISMATCH("a comparison failed but the operation returned %d", got);
                }
                if (kind == OP_SEEN) {
                    want = ref_seen(&r, v, key, now, &want_stored);
                    reruns += want == 0 && !want_stored;
                    if (stored != want_stored) {
                        MISMATCH("seen(%u): *stored=%d, expected %d", v, stored, want_stored);
                    }
                } else if (kind == OP_CONTAINS) {
                    want = ref_contains(&r, v, now);
                } else {
                    want = ref_discard(&r, v);
                }
            }
        }
        if (got != want) {
            MISMATCH("kind %u value %u: returned %d, expected %d", kind, v, got, want);
        }
        if (d.size != r.n || d.duplicates != r.duplicates || d.expired != r.expired ||
            d.evicted != r.evicted) {
            MISMATCH("size/dup/exp/evi %u/%" PRIu64 "/%" PRIu64 "/%" PRIu64
                     ", expected %u/%" PRIu64 "/%" PRIu64 "/%" PRIu64,
                     d.size, d.duplicates, d.expired, d.evicted, r.n, r.duplicates, r.expired,
                     r.evicted);
            /* resynchronise the counters so one slip is not reported forever */
            r.duplicates = d.duplicates;
            r.expired = d.expired;
            r.evicted = d.evicted;
        }
        if (t.rel_len != r.ndrops) {
            MISMATCH("released %u keys, expected %u", t.rel_len, r.ndrops);
        } else {
            for (uint32_t i = 0; i < r.ndrops; i++) {
                if (t.rel_log[i] != r.drops[i]) {
                    MISMATCH("release #%u got value %u serial %u, expected value %u serial %u", i,
                             key_val(t.rel_log[i]), key_serial(t.rel_log[i]),
                             key_val(r.drops[i]), key_serial(r.drops[i]));
                    break;
                }
            }
        }
        max_size = d.size > max_size ? d.size : max_size;
        if (op % sc->check_every == 0 || op == sc->ops - 1) {
            nviol += violations(&d);
            snapshot(&d, vb);
            int same = vb->n == r.n;
            for (uint32_t i = 0; same && i < r.n; i++) {
                same = vb->keys[i] == r.e[i].key;
            }
            if (!same) {
                MISMATCH("visit order differs from the reference (%u vs %u keys)", vb->n, r.n);
            }
        }
    }
    if (getenv("DEDUP_STATS")) {
        printf("  cap %u ops %ld: dup %" PRIu64 " exp %" PRIu64 " evi %" PRIu64
               " reruns %ld aborted %ld max %u\n", sc->capacity, sc->ops, d.duplicates,
               d.expired, d.evicted, reruns, minus_one, max_size);
    }
    CHECK_EQ_INT(mism, 0);
    CHECK_EQ_INT(nviol, 0);
    CHECK(max_size == sc->capacity); /* the run reached capacity */
    CHECK(d.evicted > 0 && d.expired > 0 && d.duplicates > 0 && reruns > 0);
    CHECK(sc->fail_pct == 0 || minus_one > 0);
    long before = t.releases;
    t.rel_len = 0;
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases - before, r.n);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    free(vb);
    ref_free(&r);
    tctx_free(&t);
}

/* ---- init ---------------------------------------------------------------- */

/* ttl 0, capacity 0 or above RS_DEDUP_MAX_CAPACITY and a NULL eq are RS_EINVAL; the bounds themselves are accepted. */
static void test_init_errors(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 0, 10, test_eq, test_release, &t), RS_EINVAL);
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 0, test_eq, test_release, &t), RS_EINVAL);
    CHECK_EQ_INT(rs_dedup_init(&d, 100, RS_DEDUP_MAX_CAPACITY + 1, test_eq, test_release, &t),
                 RS_EINVAL);
    CHECK_EQ_INT(rs_dedup_init(&d, 100, UINT32_MAX, test_eq, test_release, &t), RS_EINVAL);
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, NULL, test_release, &t), RS_EINVAL);
    CHECK_EQ_INT(rs_dedup_init(&d, 0, 0, NULL, NULL, NULL), RS_EINVAL);
    /* accepted bounds: ttl 1 ns, capacity 1, capacity max (the pool starts small);
     * free only what initialised (free after a failed init is not promised) */
    if (rs_dedup_init(&d, 1, 1, test_eq, test_release, &t) == RS_OK) {
        CHECK_EQ_U64(d.size, 0);
        CHECK_EQ_U64(d.capacity, 1);
        CHECK_EQ_INT(violations(&d), 0);
        rs_dedup_free(&d);
    } else {
        CHECK(!"init(ttl 1, capacity 1) failed");
    }
    if (rs_dedup_init(&d, UINT64_MAX, RS_DEDUP_MAX_CAPACITY, test_eq, test_release, &t) == RS_OK) {
        CHECK_EQ_U64(d.capacity, RS_DEDUP_MAX_CAPACITY);
        CHECK(d.pool_size <= 64);
        CHECK(rs_dedup_memory(&d) < 4096); /* no up-front allocation of the whole capacity */
        CHECK_EQ_INT(violations(&d), 0);
        rs_dedup_free(&d);
        rs_dedup_free(&d); /* a second free is harmless */
    } else {
        CHECK(!"init(capacity RS_DEDUP_MAX_CAPACITY) failed");
    }
    /* release is optional */
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, test_eq, NULL, NULL), RS_OK);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 0);
    tctx_free(&t);
}

/* A failing allocator: counts calls and live blocks; fails the fail_at-th call (1-based) or every call from fail_from on. */
static long alloc_calls, alloc_live, alloc_fail_at, alloc_fail_from;

static void *failing_alloc(size_t size) {
    long k = ++alloc_calls;
    if (k == alloc_fail_at || (alloc_fail_from && k >= alloc_fail_from)) {
        return NULL;
    }
    void *p = malloc(size);
    alloc_live += p != NULL;
    return p;
}

static void counting_free(void *p) {
    alloc_live -= p != NULL;
    free(p);
}

static void install_failing(long fail_at, long fail_from) {
    alloc_calls = alloc_live = 0;
    alloc_fail_at = fail_at;
    alloc_fail_from = fail_from;
    rs_set_allocator(failing_alloc, counting_free);
}

/* Either first allocation failing makes init return RS_ENOMEM and leaves nothing allocated. */
static void test_init_enomem(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    const uint32_t caps[] = {1, 64, 1000};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        install_failing(1, 0); /* the pool */
        CHECK_EQ_INT(rs_dedup_init(&d, 100, caps[k], test_eq, test_release, &t), RS_ENOMEM);
        CHECK_EQ_INT(alloc_live, 0);
        install_failing(2, 0); /* the table */
        CHECK_EQ_INT(rs_dedup_init(&d, 100, caps[k], test_eq, test_release, &t), RS_ENOMEM);
        CHECK_EQ_INT(alloc_live, 0);
        install_failing(0, 1); /* everything */
        CHECK_EQ_INT(rs_dedup_init(&d, 100, caps[k], test_eq, test_release, &t), RS_ENOMEM);
        CHECK_EQ_INT(alloc_live, 0);
        install_failing(0, 0); /* nothing: init succeeds and free returns every block */
        CHECK_EQ_INT(rs_dedup_init(&d, 100, caps[k], test_eq, test_release, &t), RS_OK);
        CHECK(alloc_live > 0);
        int stored;
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), K(1), 0, &stored), 0);
        rs_dedup_free(&d);
        CHECK_EQ_INT(alloc_live, 0);
    }
    rs_set_allocator(NULL, NULL);
    CHECK_EQ_INT(t.releases, 3);
    tctx_free(&t);
}

/* A growth whose pool or table allocation fails returns -2 and changes nothing; the next seen grows. */
static void test_grow_enomem(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    install_failing(0, 0);
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 1000, test_eq, test_release, &t), RS_OK);
    int stored, bad = 0;
    for (uint32_t v = 1; v <= 64; v++) {
        bad += rs_dedup_seen(&d, h_mix(v), K(v), 5, &stored) != 0 || stored != 1;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_U64(d.pool_size, 64);
    size_t mem = rs_dedup_memory(&d);
    for (long which = 1; which <= 3; which++) {
        /* which = 1: the new pool fails; 2: the new table fails; 3: both */
        alloc_fail_at = which <= 2 ? alloc_calls + which : 0;
        alloc_fail_from = which == 3 ? alloc_calls + 1 : 0;
        long live = alloc_live;
        stored = -7;
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(65), K(65), 6, &stored), -2);
        CHECK_EQ_INT(stored, 0);
        CHECK_EQ_INT(alloc_live, live);
        CHECK_EQ_U64(d.size, 64);
        CHECK_EQ_U64(d.pool_size, 64);
        CHECK_EQ_U64(rs_dedup_memory(&d), mem);
        CHECK_EQ_U64(d.duplicates + d.expired + d.evicted, 0);
        CHECK_EQ_INT(t.releases, 0);
        CHECK_EQ_INT(violations(&d), 0);
    }
    alloc_fail_at = alloc_fail_from = 0;
    int found = 0;
    for (uint32_t v = 1; v <= 65; v++) {
        found += rs_dedup_contains(&d, h_mix(v), ALT(v), 6);
    }
    CHECK_EQ_INT(found, 64);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(65), K(65), 6, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_U64(d.pool_size, 128);
    CHECK(rs_dedup_memory(&d) > mem);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(alloc_live, 0);
    rs_set_allocator(NULL, NULL);
    CHECK_EQ_INT(t.releases, 65);
    tctx_free(&t);
}

/* ---- basic semantics ----------------------------------------------------- */

/* seen / contains / discard with values compared by eq (a second pointer with the same value is the same key). */
static void test_seen_contains_discard(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 100, test_eq, test_release, &t), RS_OK);
    int stored = -7;
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), K(1), 0), 0);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(1), K(1)), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), K(1), 10, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(2), K(2), 11, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_U64(d.size, 2);
    /* a duplicate through an equal but distinct pointer: the caller keeps it */
    stored = -7;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), ALT(1), 12, &stored), 1);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_U64(d.duplicates, 1);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), K(1), 13, &stored), 1);
    CHECK_EQ_U64(d.duplicates, 2);
    CHECK_EQ_U64(d.size, 2);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), ALT(1), 14), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(2), ALT(2), 14), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(3), ALT(3), 14), 0);
    CHECK_EQ_U64(d.duplicates, 2); /* contains is not a duplicate */
    /* discard through the other pointer releases the pointer the set holds */
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(1), ALT(1)), 1);
    CHECK_EQ_INT(t.releases, 1);
    CHECK(t.rel_len >= 1 && t.rel_log[0] == K(1));
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(1), ALT(1)), 0);
    CHECK_EQ_INT(t.releases, 1);
    CHECK_EQ_U64(d.size, 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), K(1), 15), 0);
    CHECK_EQ_U64(d.expired + d.evicted, 0); /* a discard is neither */
    /* seen again after the discard: new */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), ALT(1), 16, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    const uint32_t order[] = {2, 1};
    CHECK(order_is(&d, order, 2));
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 3);
    CHECK_EQ_INT(t.rel_by_val[1], 2);
    CHECK_EQ_INT(t.rel_by_val[2], 1);
    tctx_free(&t);
}

/* A key recorded at t is a duplicate at t + ttl - 1 and new at t + ttl (contains agrees). */
static void test_ttl_edge(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    const uint64_t ttl = 1000, t0 = 5000;
    CHECK_EQ_INT(rs_dedup_init(&d, ttl, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    void *first = new_key(&t, 7);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(7), first, t0, &stored), 0);
    after_seen(&t, first, stored);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(7), ALT(7), t0 + ttl - 1), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(7), ALT(7), t0 + ttl), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(7), ALT(7), t0 + 10 * ttl), 0);
    void *dup = new_key(&t, 7);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(7), dup, t0 + ttl - 1, &stored), 1);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_U64(d.duplicates, 1);
    CHECK_EQ_U64(d.expired, 0);
    /* exactly ttl later: not a duplicate; the only entry is the oldest, so the
     * incremental expiry drops it (released) and the new pointer is stored */
    void *again = new_key(&t, 7);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(7), again, t0 + ttl, &stored), 0);
    after_seen(&t, again, stored);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_U64(d.expired, 1);
    CHECK_EQ_U64(d.duplicates, 1);
    CHECK_EQ_U64(d.size, 1);
    CHECK_EQ_INT(t.releases, 1);
    CHECK(t.rel_len >= 1 && t.rel_log[0] == first);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(7), ALT(7), t0 + 2 * ttl - 1), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(7), ALT(7), t0 + 2 * ttl), 0);
    /* ttl 1 ns: a duplicate only at the same instant */
    rs_dedup d1;
    CHECK_EQ_INT(rs_dedup_init(&d1, 1, 10, test_eq, test_release, &t), RS_OK);
    CHECK_EQ_INT(rs_dedup_seen(&d1, h_mix(3), K(3), 100, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d1, h_mix(3), ALT(3), 100, &stored), 1);
    CHECK_EQ_INT(rs_dedup_seen(&d1, h_mix(3), K(3), 101, &stored), 0);
    CHECK_EQ_U64(d1.duplicates, 1);
    CHECK_EQ_U64(d1.expired, 1);
    rs_dedup_free(&d1);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* ttl UINT64_MAX: nothing expires short of a full 2^64-1 ns, and no arithmetic overflows. */
static void test_ttl_max(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, UINT64_MAX, 4, test_eq, test_release, &t), RS_OK);
    int stored;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), K(1), 0, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), ALT(1), UINT64_MAX - 1, &stored), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), ALT(1), UINT64_MAX - 1), 1);
    CHECK_EQ_U64(rs_dedup_expire(&d, UINT64_MAX - 1, 0), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), ALT(1), UINT64_MAX), 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, UINT64_MAX, 0), 1);
    CHECK_EQ_U64(d.size, 0);
    /* a key recorded late in time never wraps into "expired" */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(2), K(2), UINT64_MAX - 5, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(2), ALT(2), UINT64_MAX, &stored), 1);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 2);
    tctx_free(&t);
}

/* A known but expired key still in the table is re-recorded as the newest, counted in expired, and the set keeps its original pointer. */
static void test_known_expired_rerecorded(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    const uint64_t ttl = 100;
    CHECK_EQ_INT(rs_dedup_init(&d, ttl, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    void *k[6];
    for (uint32_t v = 1; v <= 5; v++) {
        k[v] = new_key(&t, v);
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(v), k[v], 10 * v, &stored), 0);
        after_seen(&t, k[v], stored);
    }
    /* at 140 keys 1..4 (t = 10..40) are expired; seen(4) first drops 1 and 2,
     * then finds 4 expired in the table */
    void *k4b = new_key(&t, 4);
    stored = -7;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(4), k4b, 140, &stored), 0);
    after_seen(&t, k4b, stored);
    CHECK_EQ_INT(stored, 0); /* the caller keeps its pointer */
    CHECK_EQ_U64(d.expired, 3);
    CHECK_EQ_U64(d.size, 3);
    CHECK_EQ_U64(d.duplicates, 0);
    CHECK_EQ_INT(t.releases, 2);
    CHECK(t.rel_len >= 2 && t.rel_log[0] == k[1] && t.rel_log[1] == k[2]);
    const uint32_t order[] = {3, 5, 4};
    CHECK(order_is(&d, order, 3));
    visit_buf b;
    snapshot(&d, &b);
    CHECK(b.n == 3 && b.keys[2] == k[4]); /* the original pointer, now newest */
    CHECK_EQ_INT(violations(&d), 0);
    /* 5 (t = 50) is live until 149; 4, recorded again at 140, until 239 */
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(5), ALT(5), 149), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(5), ALT(5), 150), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(4), ALT(4), 239), 1);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(4), ALT(4), 239, &stored), 1); /* drops 3 and 5 first */
    CHECK_EQ_U64(d.expired, 5);
    CHECK_EQ_U64(d.duplicates, 1);
    const uint32_t order2[] = {4};
    CHECK(order_is(&d, order2, 1));
    CHECK_EQ_U64(rs_dedup_expire(&d, 239, 0), 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 240, 0), 1);
    CHECK_EQ_U64(d.expired, 6);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    CHECK_EQ_INT(t.rel_by_val[4], 1);
    tctx_free(&t);
}

/* A duplicate does not refresh the record time: the key expires ttl after it was first recorded. */
static void test_duplicate_does_not_refresh(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), K(1), 0, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(2), K(2), 10, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), ALT(1), 90, &stored), 1);
    const uint32_t order[] = {1, 2};
    CHECK(order_is(&d, order, 2));
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), ALT(1), 100), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(1), ALT(1), 100, &stored), 0);
    CHECK_EQ_U64(d.duplicates, 1);
    CHECK_EQ_U64(d.expired, 1);
    rs_dedup_free(&d);
    tctx_free(&t);
}

/* ---- expiry -------------------------------------------------------------- */

/* Each seen drops at most two expired entries, oldest first, each counted and released once. */
static void test_incremental_expiry(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 100, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 10; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(v), K(v), v, &stored), 0);
    }
    /* at 108 keys 1..8 are expired (t + 100 <= 108), 9 and 10 are not */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(101), K(101), 108, &stored), 0);
    CHECK_EQ_U64(d.expired, 2);
    CHECK_EQ_U64(d.size, 9);
    CHECK_EQ_INT(t.rel_by_val[1] + t.rel_by_val[2], 2);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(101), ALT(101), 108, &stored), 1); /* still drops 2 */
    CHECK_EQ_U64(d.expired, 4);
    CHECK_EQ_U64(d.size, 7);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(101), ALT(101), 108), 1); /* contains drops nothing */
    CHECK_EQ_U64(d.size, 7);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(102), K(102), 108, &stored), 0); /* drops 5, 6 */
    CHECK_EQ_U64(d.expired, 6);
    CHECK_EQ_U64(d.size, 6);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(103), K(103), 108, &stored), 0); /* drops 7, 8 */
    CHECK_EQ_U64(d.expired, 8);
    CHECK_EQ_U64(d.size, 5);
    const uint32_t order[] = {9, 10, 101, 102, 103};
    CHECK(order_is(&d, order, 5));
    /* nothing left to expire at 108: 9 and 10 are live */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(104), K(104), 108, &stored), 0);
    CHECK_EQ_U64(d.expired, 8);
    CHECK_EQ_U64(d.size, 6);
    for (uint32_t v = 1; v <= 8; v++) {
        CHECK_EQ_INT(t.rel_by_val[v], 1);
    }
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 14);
    tctx_free(&t);
}

/* rs_dedup_expire drops at most `limit` (0: all) entries recorded ttl or more ago, oldest first, and returns how many. */
static void test_expire_limit(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 100, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 20; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(v), K(v), 10 * v, &stored), 0); /* t = 10..200 */
    }
    CHECK_EQ_U64(d.expired, 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 1009, 0), 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 1010, 0), 1); /* key 1 (t = 10) */
    CHECK_EQ_INT(t.rel_by_val[1], 1);
    /* at 1100 keys 2..10 are expired: 9 of them */
    CHECK_EQ_U64(rs_dedup_expire(&d, 1100, 3), 3);
    CHECK_EQ_U64(d.size, 16);
    CHECK_EQ_INT(t.rel_by_val[2] + t.rel_by_val[3] + t.rel_by_val[4], 3);
    CHECK_EQ_INT(t.rel_by_val[5], 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 1100, 1), 1);
    CHECK_EQ_U64(rs_dedup_expire(&d, 1100, 100), 5); /* limit above the count */
    CHECK_EQ_U64(rs_dedup_expire(&d, 1100, 0), 0);
    CHECK_EQ_U64(d.size, 10);
    CHECK_EQ_U64(d.expired, 10);
    const uint32_t order[] = {11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    CHECK(order_is(&d, order, 10));
    CHECK_EQ_INT(violations(&d), 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 5000, 0), 10);
    CHECK_EQ_U64(d.size, 0);
    CHECK_EQ_U64(rs_dedup_expire(&d, 9000, 0), 0); /* empty */
    CHECK_EQ_INT(violations(&d), 0);
    CHECK_EQ_INT(t.releases, 20);
    for (uint32_t v = 1; v <= 20; v++) {
        CHECK_EQ_INT(t.rel_by_val[v], 1);
    }
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 20);
    tctx_free(&t);
}

/* ---- capacity and growth ------------------------------------------------- */

/* At capacity the oldest entry is evicted, counted, and released exactly once. */
static void test_capacity_eviction(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 3, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 3; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(v), K(v), v, &stored), 0);
    }
    CHECK_EQ_U64(d.evicted, 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(4), K(4), 4, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_U64(d.evicted, 1);
    CHECK_EQ_U64(d.size, 3);
    CHECK_EQ_INT(t.rel_by_val[1], 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(1), ALT(1), 5), 0);
    /* a duplicate at capacity evicts nothing */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(2), ALT(2), 5, &stored), 1);
    CHECK_EQ_U64(d.evicted, 1);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(5), K(5), 6, &stored), 0);
    CHECK_EQ_U64(d.evicted, 2);
    CHECK_EQ_INT(t.rel_by_val[2], 1);
    const uint32_t order[] = {3, 4, 5};
    CHECK(order_is(&d, order, 3));
    /* evicting 1..200 through a capacity-3 set: each value released exactly once */
    for (uint32_t v = 6; v <= 200; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(v), K(v), 6 + v, &stored), 0);
    }
    CHECK_EQ_U64(d.evicted, 197);
    CHECK_EQ_U64(d.expired, 0);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    int once = 1;
    for (uint32_t v = 1; v <= 200; v++) {
        once &= t.rel_by_val[v] == 1;
    }
    CHECK(once);
    CHECK_EQ_INT(t.releases, 200);
    tctx_free(&t);
}

/* Capacity 1: each new key replaces the previous one. */
static void test_capacity_one(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 1, test_eq, test_release, &t), RS_OK);
    int stored;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(1), K(1), 0, &stored), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(1), ALT(1), 0, &stored), 1);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(2), K(2), 0, &stored), 0);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_U64(d.evicted, 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(1), ALT(1), 0), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(2), ALT(2), 0), 1);
    CHECK_EQ_U64(d.pool_size, 1);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.rel_by_val[1] + t.rel_by_val[2], 2);
    tctx_free(&t);
}

/* The pool doubles from 64 up to capacity (never past it); memory grows with it; every key stays findable. */
static void test_growth_to_capacity(void) {
    const hash_fn fns[] = {h_mix, h_mod3, h_last};
    const uint32_t caps[] = {1000, 300, 130};
    for (size_t f = 0; f < 3; f++) {
        tctx t;
        tctx_init(&t);
        rs_dedup d;
        const uint32_t cap = caps[f];
        CHECK_EQ_INT(rs_dedup_init(&d, 1000000, cap, test_eq, test_release, &t), RS_OK);
        CHECK_EQ_U64(d.pool_size, 64);
        size_t mem = rs_dedup_memory(&d);
        uint32_t prev_pool = d.pool_size, growths = 0;
        int bad = 0, nviol = 0, shrank = 0;
        for (uint32_t v = 1; v <= cap; v++) {
            int stored;
            bad += rs_dedup_seen(&d, fns[f](v), K(v), v, &stored) != 0 || stored != 1;
            size_t m = rs_dedup_memory(&d);
            if (d.pool_size != prev_pool) {
                growths++;
                bad += d.pool_size != (2 * prev_pool < cap ? 2 * prev_pool : cap);
                bad += m <= mem;
                prev_pool = d.pool_size;
            }
            shrank += m < mem;
            mem = m;
            if (f != 0 || v % 50 == 0 || v == cap || d.size == d.pool_size) {
                nviol += violations(&d);
            }
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(shrank, 0);
        CHECK_EQ_INT(nviol, 0);
        CHECK_EQ_U64(d.pool_size, cap);
        CHECK_EQ_U64(d.size, cap);
        CHECK_EQ_U64(growths, f == 0 ? 4 : f == 1 ? 3 : 2); /* 64->128->256->512->1000 etc. */
        CHECK(d.mask + 1 >= 2 * cap);
        CHECK_EQ_U64(rs_dedup_memory(&d),
                     (size_t)cap * sizeof(rs_dedup_entry) + ((size_t)d.mask + 1) * sizeof(rs_dedup_cell));
        int found = 0;
        for (uint32_t v = 1; v <= cap; v++) {
            found += rs_dedup_contains(&d, fns[f](v), ALT(v), cap + 1);
        }
        CHECK_EQ_INT(found, (int)cap);
        CHECK_EQ_U64(d.evicted, 0);
        CHECK_EQ_INT(t.releases, 0);
        /* one more: the oldest (1) goes, the pool does not grow */
        int stored;
        CHECK_EQ_INT(rs_dedup_seen(&d, fns[f](cap + 1), K(cap + 1), cap + 1, &stored), 0);
        CHECK_EQ_U64(d.pool_size, cap);
        CHECK_EQ_U64(d.evicted, 1);
        CHECK_EQ_INT(t.rel_by_val[1], 1);
        CHECK_EQ_INT(rs_dedup_contains(&d, fns[f](1), ALT(1), cap + 1), 0);
        CHECK_EQ_INT(rs_dedup_contains(&d, fns[f](2), ALT(2), cap + 1), 1);
        CHECK_EQ_INT(violations(&d), 0);
        rs_dedup_free(&d);
        CHECK_EQ_INT(t.releases, (long)cap + 1);
        tctx_free(&t);
    }
}

/* Memory: capacity 1 uses one entry and the minimal 8-cell table; clear keeps the pool. */
static void test_memory(void) {
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 10, 1, test_eq, NULL, NULL), RS_OK);
    CHECK_EQ_U64(rs_dedup_memory(&d), sizeof(rs_dedup_entry) + 8 * sizeof(rs_dedup_cell));
    rs_dedup_free(&d);
    CHECK_EQ_INT(rs_dedup_init(&d, 10, 5000, test_eq, NULL, NULL), RS_OK);
    size_t m0 = rs_dedup_memory(&d);
    CHECK_EQ_U64(m0, 64 * sizeof(rs_dedup_entry) + 128 * sizeof(rs_dedup_cell));
    int stored;
    for (uint32_t v = 1; v <= 65; v++) {
        rs_dedup_seen(&d, h_mix(v), K(v), 0, &stored);
    }
    size_t m1 = rs_dedup_memory(&d);
    CHECK_EQ_U64(m1, 128 * sizeof(rs_dedup_entry) + 256 * sizeof(rs_dedup_cell));
    rs_dedup_clear(&d);
    CHECK(rs_dedup_memory(&d) >= m0);
    rs_dedup_free(&d);
}

/* ---- table mechanics ----------------------------------------------------- */

/* The value of the key in table cell i, 0 when the cell is empty. */
static uint32_t cell_val(const rs_dedup *d, uint32_t i) {
    return d->table[i] ? key_val(d->pool[RS_DEDUP_CELL_INDEX(d->table[i]) - 1].key) : 0;
}

/* Backward-shift deletion across the end of the table, cell by cell (capacity 4: an 8-cell table). */
static void test_backward_shift_wraparound(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 4, test_eq, test_release, &t), RS_OK);
    CHECK_EQ_U64(d.mask, 7);
    int stored;
    /* homes A:6 B:7 C:6 D:7 -> cells 6, 7, 0, 1 */
    const uint64_t h[5] = {0, 6, 7, 6 + 8 * 3, 7 + 8 * 5};
    for (uint32_t v = 1; v <= 4; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h[v], K(v), 0, &stored), 0);
    }
    CHECK(d.table[6] && d.table[7] && d.table[0] && d.table[1] && !d.table[2]);
    CHECK_EQ_INT(cell_val(&d, 0), 3);
    CHECK_EQ_INT(cell_val(&d, 1), 4);
    CHECK_EQ_INT(violations(&d), 0);
    /* drop A (cell 6): B stays in 7 (home 7), C moves to 6, D to 0, cell 1 empties */
    CHECK_EQ_INT(rs_dedup_discard(&d, h[1], ALT(1)), 1);
    CHECK_EQ_INT(cell_val(&d, 6), 3);
    CHECK_EQ_INT(cell_val(&d, 7), 2);
    CHECK_EQ_INT(cell_val(&d, 0), 4);
    CHECK_EQ_INT(d.table[1], 0);
    CHECK_EQ_INT(violations(&d), 0);
    for (uint32_t v = 2; v <= 4; v++) {
        CHECK_EQ_INT(rs_dedup_contains(&d, h[v], ALT(v), 1), 1);
    }
    /* drop B (cell 7): D (home 7, in cell 0) moves back to 7 */
    CHECK_EQ_INT(rs_dedup_discard(&d, h[2], ALT(2)), 1);
    CHECK_EQ_INT(cell_val(&d, 7), 4);
    CHECK_EQ_INT(d.table[0], 0);
    CHECK_EQ_INT(violations(&d), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h[3], ALT(3), 1), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h[4], ALT(4), 1), 1);
    /* an entry already at home after the gap does not move: E home 0 in cell 0 */
    CHECK_EQ_INT(rs_dedup_seen(&d, 0, K(5), 2, &stored), 0);
    CHECK_EQ_INT(cell_val(&d, 0), 5);
    /* drop C (cell 6): D is at its home 7 and E at its home 0, neither moves */
    CHECK_EQ_INT(rs_dedup_discard(&d, h[3], ALT(3)), 1);
    CHECK_EQ_INT(d.table[6], 0);
    CHECK_EQ_INT(cell_val(&d, 7), 4);
    CHECK_EQ_INT(cell_val(&d, 0), 5);
    CHECK_EQ_INT(violations(&d), 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h[4], ALT(4), 1), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, 0, ALT(5), 2), 1);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 5);
    tctx_free(&t);
}

/* Every deletion order of a full cluster of 8 entries in a 16-cell table, homes chosen to straddle the end. */
static void test_backward_shift_all_orders(void) {
    const uint32_t homes[8] = {14, 15, 14, 0, 15, 1, 14, 3};
    uint32_t perm[8];
    long nviol = 0, lost = 0, cases = 0;
    for (uint32_t seed = 0; seed < 2000; seed++) {
        /* a random deletion order (the first one the identity) */
        for (uint32_t i = 0; i < 8; i++) {
            perm[i] = i + 1;
        }
        for (uint32_t i = 8; seed && i > 1; i--) {
            uint32_t j = rng_below(i), tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        tctx t;
        tctx_init(&t);
        rs_dedup d;
        CHECK_EQ_INT(rs_dedup_init(&d, 1000, 8, test_eq, test_release, &t), RS_OK);
        int stored;
        for (uint32_t v = 1; v <= 8; v++) {
            rs_dedup_seen(&d, homes[v - 1] + ((uint64_t)v << 8), K(v), 0, &stored);
        }
        nviol += violations(&d);
        for (uint32_t i = 0; i < 8; i++) {
            uint32_t v = perm[i];
            lost += rs_dedup_discard(&d, homes[v - 1] + ((uint64_t)v << 8), ALT(v)) != 1;
            nviol += violations(&d);
            for (uint32_t k = i + 1; k < 8; k++) {
                uint32_t w = perm[k];
                lost += rs_dedup_contains(&d, homes[w - 1] + ((uint64_t)w << 8), ALT(w), 0) != 1;
            }
        }
        lost += d.size != 0 || t.releases != 8;
        cases++;
        rs_dedup_free(&d);
        tctx_free(&t);
    }
    CHECK_EQ_INT(cases, 2000);
    CHECK_EQ_INT(nviol, 0);
    CHECK_EQ_INT(lost, 0);
}

/* Hashes that differ only in their high bits share a home cell yet stay distinct keys. */
static void test_high_bits_hash(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 50, test_eq, test_release, &t), RS_OK);
    int stored, bad = 0;
    for (uint32_t v = 1; v <= 50; v++) {
        bad += rs_dedup_seen(&d, h_high(v), K(v), v, &stored) != 0 || stored != 1;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(violations(&d), 0);
    for (uint32_t v = 1; v <= 50; v++) {
        bad += rs_dedup_contains(&d, h_high(v), ALT(v), 60) != 1;
        bad += rs_dedup_seen(&d, h_high(v), ALT(v), 60, &stored) != 1;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_U64(d.duplicates, 50);
    for (uint32_t v = 1; v <= 50; v += 2) {
        bad += rs_dedup_discard(&d, h_high(v), ALT(v)) != 1;
    }
    CHECK_EQ_INT(violations(&d), 0);
    for (uint32_t v = 1; v <= 50; v++) {
        bad += rs_dedup_contains(&d, h_high(v), ALT(v), 60) != (int)(v % 2 == 0);
    }
    CHECK_EQ_INT(bad, 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 50);
    tctx_free(&t);
}

/* Heavy collisions (k % 3, one constant home, homes at the table's end) with interleaved inserts, discards, expiries and evictions; invariant after every operation. */
static void test_collisions_interleaved(void) {
    const hash_fn fns[] = {h_mod3, h_const, h_last, h_tail, h_high};
    const uint32_t caps[] = {4, 7, 64, 100};
    for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            scenario sc = {caps[c], 64, 2 * caps[c] + 3, fns[f], 6000, 1, 3};
            run_scenario(&sc);
        }
    }
}

/* ---- failing comparisons ------------------------------------------------- */

/* A comparison returning -1 aborts seen/contains/discard with -1: size, keys, counters and releases unchanged. */
static void test_failing_eq(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 5; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_const(v), K(v), v, &stored), 0); /* one cluster */
    }
    const uint32_t all[] = {1, 2, 3, 4, 5};
    t.eq_fail_all = 1;
    long calls = t.eq_calls;
    void *k6 = new_key(&t, 6);
    stored = -7;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(6), k6, 10, &stored), -1);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_INT(t.eq_calls - calls, 1); /* stopped at the first failure */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(3), ALT(3), 10, &stored), -1); /* present key too */
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(4), ALT(4), 10), -1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(9), ALT(9), 10), -1);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_const(5), ALT(5)), -1);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_const(9), ALT(9)), -1);
    t.eq_fail_all = 0;
    CHECK_EQ_U64(d.size, 5);
    CHECK_EQ_U64(d.duplicates + d.expired + d.evicted, 0);
    CHECK_EQ_INT(t.releases, 0);
    CHECK(order_is(&d, all, 5));
    CHECK_EQ_INT(violations(&d), 0);
    /* failing on the 3rd comparison of a probe: mid-cluster abort */
    for (long nth = 1; nth <= 4; nth++) {
        t.eq_fail_at = t.eq_calls + nth;
        CHECK_EQ_INT(rs_dedup_discard(&d, h_const(5), ALT(5)), -1);
        t.eq_fail_at = t.eq_calls + nth;
        CHECK_EQ_INT(rs_dedup_seen(&d, h_const(7), ALT(7), 10, &stored), -1);
        CHECK_EQ_INT(stored, 0);
    }
    t.eq_fail_at = 0;
    CHECK_EQ_U64(d.size, 5);
    CHECK_EQ_INT(t.releases, 0);
    CHECK(order_is(&d, all, 5));
    /* everything is intact and behaves once eq works again */
    int found = 0;
    for (uint32_t v = 1; v <= 5; v++) {
        found += rs_dedup_contains(&d, h_const(v), ALT(v), 10);
    }
    CHECK_EQ_INT(found, 5);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(6), k6, 10, &stored), 0);
    after_seen(&t, k6, stored);
    CHECK_EQ_INT(stored, 1);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_const(5), ALT(5)), 1);
    CHECK_EQ_INT(violations(&d), 0);
    /* at capacity a failing seen evicts nothing */
    for (uint32_t v = 10; v <= 14; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_const(v), K(v), 20, &stored), 0);
    }
    CHECK_EQ_U64(d.size, 10);
    long rel = t.releases;
    t.eq_fail_all = 1;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(99), ALT(99), 20, &stored), -1);
    t.eq_fail_all = 0;
    CHECK_EQ_U64(d.size, 10);
    CHECK_EQ_U64(d.evicted, 0);
    CHECK_EQ_INT(t.releases, rel);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* A seen that fails keeps the expired entries it already dropped (at most two) and nothing else changes. */
static void test_failing_eq_after_expiry(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 6; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_const(v), K(v), v, &stored), 0);
    }
    /* at 104 keys 1..4 are expired */
    t.eq_fail_all = 1;
    CHECK_EQ_INT(rs_dedup_seen(&d, h_const(9), ALT(9), 104, &stored), -1);
    t.eq_fail_all = 0;
    CHECK_EQ_U64(d.size, 4);
    CHECK_EQ_U64(d.expired, 2);
    CHECK_EQ_INT(t.releases, 2);
    CHECK_EQ_INT(t.rel_by_val[1] + t.rel_by_val[2], 2);
    const uint32_t left[] = {3, 4, 5, 6};
    CHECK(order_is(&d, left, 4));
    CHECK_EQ_INT(violations(&d), 0);
    /* contains and discard never expire anything, even when they fail */
    t.eq_fail_all = 1;
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(9), ALT(9), 104), -1);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_const(9), ALT(9)), -1);
    t.eq_fail_all = 0;
    CHECK_EQ_U64(d.size, 4);
    CHECK_EQ_U64(d.expired, 2);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 6);
    tctx_free(&t);
}

/* ---- visit, clear, release ----------------------------------------------- */

/* visit goes oldest first and stops at, and returns, the first non-zero. */
static void test_visit(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 10, test_eq, test_release, &t), RS_OK);
    visit_buf b;
    snapshot(&d, &b);
    CHECK_EQ_INT(b.n, 0);
    CHECK_EQ_INT(rs_dedup_visit(&d, collect, &b), 0);
    int stored;
    const uint32_t vals[] = {40, 10, 30, 20, 50};
    for (uint32_t i = 0; i < 5; i++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(vals[i]), K(vals[i]), i, &stored), 0);
    }
    CHECK(order_is(&d, vals, 5));
    b.n = 0;
    b.stop_at = 3;
    b.ret = -42;
    CHECK_EQ_INT(rs_dedup_visit(&d, collect, &b), -42);
    CHECK_EQ_INT(b.n, 3);
    CHECK(b.keys[0] == K(40) && b.keys[1] == K(10) && b.keys[2] == K(30));
    b.n = 0;
    b.stop_at = 1;
    b.ret = 7;
    CHECK_EQ_INT(rs_dedup_visit(&d, collect, &b), 7);
    CHECK_EQ_INT(b.n, 1);
    /* discarding the middle and one end keeps the order of the rest */
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(30), ALT(30)), 1);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(40), ALT(40)), 1);
    const uint32_t rest[] = {10, 20, 50};
    CHECK(order_is(&d, rest, 3));
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(30), K(30), 9, &stored), 0);
    const uint32_t rest2[] = {10, 20, 50, 30};
    CHECK(order_is(&d, rest2, 4));
    rs_dedup_free(&d);
    tctx_free(&t);
}

/* clear releases every key exactly once, counts none as expired or evicted, and leaves a usable empty set. */
static void test_clear(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 500, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 300; v++) {
        void *k = new_key(&t, v);
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mod3(v), k, v, &stored), 0);
        after_seen(&t, k, stored);
    }
    uint32_t pool = d.pool_size;
    rs_dedup_clear(&d);
    CHECK_EQ_U64(d.size, 0);
    CHECK_EQ_INT(t.releases, 300);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    CHECK_EQ_U64(d.expired + d.evicted, 0);
    CHECK(d.oldest == NIL && d.newest == NIL);
    CHECK_EQ_U64(d.pool_size, pool);
    CHECK_EQ_INT(violations(&d), 0);
    visit_buf b;
    snapshot(&d, &b);
    CHECK_EQ_INT(b.n, 0);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mod3(5), ALT(5), 301), 0);
    rs_dedup_clear(&d); /* empty: nothing to release */
    CHECK_EQ_INT(t.releases, 300);
    for (uint32_t v = 1; v <= 500; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mod3(v), K(v), 400, &stored), 0);
    }
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 800);
    tctx_free(&t);
}

/* A NULL release callback: evictions, expiries, discards, clear and free still work. */
static void test_release_null(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 10, 3, test_eq, NULL, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 6; v++) {
        CHECK_EQ_INT(rs_dedup_seen(&d, h_mod3(v), K(v), v, &stored), 0);
    }
    CHECK_EQ_U64(d.evicted, 3);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mod3(5), ALT(5)), 1);
    CHECK_EQ_U64(rs_dedup_expire(&d, 100, 1), 1);
    rs_dedup_clear(&d);
    CHECK_EQ_U64(d.size, 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mod3(1), K(1), 200, &stored), 0);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(t.releases, 0);
    tctx_free(&t);
}

/* ---- long randomized runs ------------------------------------------------ */

/* 200,000 random operations (with 2 % failing comparisons) against the reference, good hash. */
static void test_randomized_long(void) {
    scenario sc = {300, 1000, 1000, h_mix, 200000, 1, 2};
    run_scenario(&sc);
}

/* 100,000 random operations with a poor hash (k % 3), failing comparisons included. */
static void test_randomized_poor_hash(void) {
    scenario sc = {150, 500, 320, h_mod3, 100000, 1, 3};
    run_scenario(&sc);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "timed out (a probe or list loop never ended?) in ";
    ssize_t w = write(1, msg, sizeof msg - 1);
    w += write(1, rs_test_current, strlen(rs_test_current));
    w += write(1, "\n", 1);
    (void)w;
    _exit(3);
}

/* ---- values (put / get) ---------------------------------------------------- */

/* The caller's bookkeeping after rs_dedup_put returned r: on r >= 0 the set
 * owns the value. */
static void after_put(tctx *t, void *key, void *value, int stored, int r) {
    after_seen(t, key, stored);
    if (r >= 0 && tracked(t, value)) {
        t->own[key_serial(value)] = OWN_SET;
    }
}

/* put records a value that get returns; a second put replaces it (the old value
 * is released, the set keeps its first key) and restarts the ttl; seen counts
 * a duplicate of a put key; expiry, eviction, discard and free release keys and
 * values exactly once; visit reports values after their keys. */
static void test_put_get(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 3, test_eq, test_release, &t), RS_OK);
    CHECK(d.values == NULL);
    void *value = (void *)1, *k1 = new_key(&t, 7), *v1 = new_key(&t, 1000);
    int stored = -1;
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(7), k1, 0, &value), 0);
    int r = rs_dedup_put(&d, h_mix(7), k1, v1, 0, &stored);
    after_put(&t, k1, v1, stored, r);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(stored, 1);
    CHECK(d.values != NULL);
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(7), K(7), 50, &value), 1);
    CHECK(value == v1);
    /* replace: the set keeps k1, the caller keeps k2, v1 is released */
    void *k2 = new_key(&t, 7), *v2 = new_key(&t, 1001);
    r = rs_dedup_put(&d, h_mix(7), k2, v2, 60, &stored);
    after_put(&t, k2, v2, stored, r);
    CHECK_EQ_INT(r, 1);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_INT(t.own[key_serial(v1)], OWN_RELEASED);
    CHECK_EQ_INT(t.own[key_serial(k2)], OWN_CALLER);
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(7), K(7), 159, &value), 1); /* ttl restarted at 60 */
    CHECK(value == v2);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(7), K(7), 159, &stored), 1);
    CHECK_EQ_U64(d.duplicates, 1);
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(7), K(7), 160, &value), 0); /* expired */
    /* a key recorded by seen has no value */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(8), K(8), 160, &stored), 0);
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(8), K(8), 160, &value), 1);
    CHECK(value == NULL);
    /* the expired k1 went (with v2) in the clean-up seen starts with */
    CHECK_EQ_U64(d.expired, 1);
    CHECK_EQ_INT(t.own[key_serial(k1)], OWN_RELEASED);
    CHECK_EQ_INT(t.own[key_serial(v2)], OWN_RELEASED);
    void *v3 = new_key(&t, 1002);
    r = rs_dedup_put(&d, h_mix(7), K(7), v3, 170, &stored);
    after_put(&t, K(7), v3, stored, r);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(stored, 1);
    /* visit: keys oldest first, then their values */
    visit_buf b;
    snapshot(&d, &b);
    CHECK_EQ_INT(b.n, 3);
    CHECK(b.keys[0] == K(8) && b.keys[1] == K(7) && b.keys[2] == v3);
    /* capacity 3: two more keys evict the oldest (K(8), no value), then K(7) and v3 */
    void *k9 = new_key(&t, 9), *v9 = new_key(&t, 1009), *k10 = new_key(&t, 10);
    r = rs_dedup_put(&d, h_mix(9), k9, v9, 171, &stored);
    after_put(&t, k9, v9, stored, r);
    r = rs_dedup_put(&d, h_mix(10), k10, NULL, 172, &stored);
    after_put(&t, k10, NULL, stored, r);
    CHECK_EQ_U64(d.size, 3);
    r = rs_dedup_seen(&d, h_mix(11), K(11), 173, &stored);
    CHECK_EQ_U64(d.evicted, 2);
    CHECK_EQ_INT(t.own[key_serial(v3)], OWN_RELEASED);
    CHECK_EQ_INT(rs_dedup_discard(&d, h_mix(9), K(9)), 1);
    CHECK_EQ_INT(t.own[key_serial(k9)], OWN_RELEASED);
    CHECK_EQ_INT(t.own[key_serial(v9)], OWN_RELEASED);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* Values survive the pool growing; a failed allocation of the value array or
 * of a grown pool changes nothing and leaves the caller its references. */
static void test_put_grow_and_enomem(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    install_failing(0, 0);
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 1000, test_eq, test_release, &t), RS_OK);
    int stored;
    alloc_fail_at = alloc_calls + 1; /* the value array */
    void *v = new_key(&t, 5000);
    CHECK_EQ_INT(rs_dedup_put(&d, h_mix(1), K(1), v, 0, &stored), -2);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_U64(d.size, 0);
    CHECK(d.values == NULL);
    alloc_fail_at = 0;
    for (uint32_t i = 0; i < 200; i++) {
        void *vi = new_key(&t, 5000 + i);
        int r = rs_dedup_put(&d, h_mix(i), K(i), vi, 1, &stored);
        after_put(&t, K(i), vi, stored, r);
        CHECK_EQ_INT(r, 0);
    }
    CHECK(d.pool_size >= 200);
    int wrong = 0;
    for (uint32_t i = 0; i < 200; i++) {
        void *got = NULL;
        wrong += rs_dedup_get(&d, h_mix(i), K(i), 2, &got) != 1 || key_val(got) != 5000 + i;
    }
    CHECK_EQ_INT(wrong, 0);
    /* fill the pool, then make the growth's value array fail */
    uint32_t i = 200;
    while (d.size < d.pool_size) {
        void *vi = new_key(&t, 5000 + i);
        int r = rs_dedup_put(&d, h_mix(i), K(i), vi, 1, &stored);
        after_put(&t, K(i), vi, stored, r);
        i++;
    }
    uint32_t pool = d.pool_size, size = d.size;
    alloc_fail_at = alloc_calls + 3; /* pool, table, then the value array */
    void *vx = new_key(&t, 9999);
    CHECK_EQ_INT(rs_dedup_put(&d, h_mix(i), K(i), vx, 1, &stored), -2);
    CHECK_EQ_U64(d.pool_size, pool);
    CHECK_EQ_U64(d.size, size);
    alloc_fail_at = 0;
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(alloc_live, 0);
    rs_set_allocator(NULL, NULL);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* A key that expired but is still stored (behind older expired ones that the
 * put's clean-up of two does not reach) takes the new value: the old one is
 * released, the set keeps its key, the expiry is counted. */
static void test_put_known_expired(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, test_eq, test_release, &t), RS_OK);
    int stored, r;
    for (uint32_t v = 1; v <= 2; v++) {
        r = rs_dedup_seen(&d, h_mix(v), K(v), 0, &stored);
        CHECK_EQ_INT(r, 0);
    }
    void *k = new_key(&t, 3), *v1 = new_key(&t, 2000), *v2 = new_key(&t, 2001);
    r = rs_dedup_put(&d, h_mix(3), k, v1, 1, &stored);
    after_put(&t, k, v1, stored, r);
    r = rs_dedup_put(&d, h_mix(3), K(3), v2, 500, &stored);
    after_put(&t, K(3), v2, stored, r);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(stored, 0);
    CHECK_EQ_U64(d.expired, 3);
    CHECK_EQ_INT(t.own[key_serial(k)], OWN_SET);
    CHECK_EQ_INT(t.own[key_serial(v1)], OWN_RELEASED);
    void *got = NULL;
    CHECK_EQ_INT(rs_dedup_get(&d, h_mix(3), K(3), 599, &got), 1);
    CHECK(got == v2);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* ---- configure ------------------------------------------------------------ */

/* A bad ttl or capacity returns its field's status and changes nothing. */
static void test_configure_errors(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 5, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 5; v++) {
        rs_dedup_seen(&d, h_mix(v), K(v), v, &stored);
    }
    const uint64_t bad_ttl[] = {0, (uint64_t)(RS_MAX_SECONDS * 1e9) + 1024, UINT64_MAX};
    for (size_t k = 0; k < sizeof bad_ttl / sizeof bad_ttl[0]; k++) {
        CHECK_EQ_INT(rs_dedup_configure(&d, bad_ttl[k], 2, 1000), RS_EFIELD_BASE + RS_DDF_TTL);
    }
    const uint32_t bad_cap[] = {0, RS_DEDUP_MAX_CAPACITY + 1, UINT32_MAX};
    for (size_t k = 0; k < sizeof bad_cap / sizeof bad_cap[0]; k++) {
        CHECK_EQ_INT(rs_dedup_configure(&d, 1, bad_cap[k], 1000),
                     RS_EFIELD_BASE + RS_DDF_CAPACITY);
    }
    /* nothing changed: not even the expiry the configuration would do at 1000 */
    CHECK_EQ_U64(d.ttl_ns, 100);
    CHECK_EQ_U64(d.capacity, 5);
    CHECK_EQ_U64(d.size, 5);
    CHECK_EQ_U64(d.expired + d.evicted, 0);
    CHECK_EQ_INT(t.releases, 0);
    CHECK_EQ_INT(rs_dedup_configure(&d, (uint64_t)(RS_MAX_SECONDS * 1e9), RS_DEDUP_MAX_CAPACITY,
                                    50), RS_OK);
    CHECK_EQ_U64(d.size, 5);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    tctx_free(&t);
}

/* A lower capacity evicts the oldest (counted, released oldest first),
 * shrinks the pool and keeps order, values and lookups; a higher one lets
 * the pool grow again. */
static void test_configure_capacity(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 1000, 200, test_eq, test_release, &t), RS_OK);
    int stored, r;
    for (uint32_t v = 1; v <= 150; v++) {
        void *k = new_key(&t, v), *val = v % 2 ? new_key(&t, 2000 + v) : NULL;
        r = rs_dedup_put(&d, h_const(v) + (v % 7), k, val, v, &stored);
        after_put(&t, k, val, stored, r);
    }
    CHECK_EQ_U64(d.pool_size, 200);
    size_t mem = rs_dedup_memory(&d);
    t.rel_len = 0;
    CHECK_EQ_INT(rs_dedup_configure(&d, 1000, 10, 150), RS_OK);
    CHECK_EQ_U64(d.evicted, 140);
    CHECK_EQ_U64(d.expired, 0);
    CHECK_EQ_U64(d.size, 10);
    CHECK_EQ_U64(d.pool_size, 10);
    CHECK(rs_dedup_memory(&d) < mem / 10);
    CHECK(key_val(t.rel_log[0]) == 1); /* the oldest first */
    CHECK_EQ_INT(t.releases, 140 + 70); /* keys, and the odd keys' values */
    visit_buf b;
    snapshot(&d, &b); /* the keys, oldest first, then their values */
    CHECK_EQ_INT(b.n, 10 + 5);
    int in_order = 0;
    for (uint32_t i = 0; i < 10; i++) {
        in_order += key_val(b.keys[i]) == 141 + i;
    }
    CHECK_EQ_INT(in_order, 10);
    int found = 0, values_ok = 0;
    for (uint32_t v = 1; v <= 150; v++) {
        void *value = NULL;
        int g = rs_dedup_get(&d, h_const(v) + (v % 7), ALT(v), 150, &value);
        found += g;
        values_ok += g && (v % 2 ? key_val(value) == 2000 + v : value == NULL);
    }
    CHECK_EQ_INT(found, 10);
    CHECK_EQ_INT(values_ok, 10);
    CHECK_EQ_INT(violations(&d), 0);
    /* at the new capacity a new key evicts the oldest */
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(500), K(500), 151, &stored), 0);
    CHECK_EQ_U64(d.evicted, 141);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_const(141) + (141 % 7), K(141), 151), 0);
    /* raised: the pool grows again as keys come */
    CHECK_EQ_INT(rs_dedup_configure(&d, 1000, 100, 152), RS_OK);
    for (uint32_t v = 600; v < 690; v++) {
        rs_dedup_seen(&d, h_mix(v), K(v), 153, &stored);
    }
    CHECK_EQ_U64(d.size, 100);
    CHECK_EQ_U64(d.pool_size, 100);
    CHECK_EQ_U64(d.evicted, 141);
    CHECK_EQ_INT(violations(&d), 0);
    /* the same capacity: nothing moves */
    rs_dedup_entry *pool = d.pool;
    CHECK_EQ_INT(rs_dedup_configure(&d, 1000, 100, 153), RS_OK);
    CHECK(d.pool == pool);
    rs_dedup_free(&d);
    CHECK_EQ_INT(owned_by_set(&t), 0);
    CHECK_EQ_INT(t.own_errors, 0);
    tctx_free(&t);
}

/* The entries expired at now under the old or the new ttl are dropped and
 * counted; the others live ttl after they were recorded. */
static void test_configure_ttl(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 10, test_eq, test_release, &t), RS_OK);
    int stored;
    const uint64_t at[] = {0, 50, 95, 110};
    for (uint32_t v = 0; v < 4; v++) {
        rs_dedup_seen(&d, h_mix(v), K(v), at[v], &stored);
    }
    /* at 120: key 0 (age 120) expired under 100; key 1 (age 70) under 30 */
    CHECK_EQ_INT(rs_dedup_configure(&d, 30, 10, 120), RS_OK);
    CHECK_EQ_U64(d.expired, 2);
    CHECK_EQ_U64(d.size, 2);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(2), K(2), 124), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(2), K(2), 125), 0); /* 95 + 30 */
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(3), K(3), 139), 1);
    /* longer: what is still live lives longer; what expired stays gone */
    CHECK_EQ_INT(rs_dedup_configure(&d, 1000, 10, 125), RS_OK);
    CHECK_EQ_U64(d.size, 1);
    CHECK_EQ_U64(d.expired, 3); /* key 2 had expired at 125 */
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(3), K(3), 1109), 1);
    CHECK_EQ_INT(rs_dedup_contains(&d, h_mix(3), K(3), 1110), 0);
    CHECK_EQ_INT(rs_dedup_seen(&d, h_mix(0), K(0), 130, &stored), 0); /* gone: recorded anew */
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    tctx_free(&t);
}

/* A lower capacity whose new pool, table or value array cannot be
 * allocated returns RS_ENOMEM and changes nothing. */
static void test_configure_enomem(void) {
    tctx t;
    tctx_init(&t);
    rs_dedup d;
    install_failing(0, 0);
    CHECK_EQ_INT(rs_dedup_init(&d, 100, 100, test_eq, test_release, &t), RS_OK);
    int stored;
    for (uint32_t v = 1; v <= 80; v++) {
        rs_dedup_put(&d, h_mix(v), K(v), NULL, v, &stored);
    }
    size_t mem = rs_dedup_memory(&d);
    for (long which = 1; which <= 4; which++) {
        alloc_fail_at = which <= 3 ? alloc_calls + which : 0;
        alloc_fail_from = which == 4 ? alloc_calls + 1 : 0;
        long live = alloc_live;
        CHECK_EQ_INT(rs_dedup_configure(&d, 10, 5, 1000), RS_ENOMEM);
        CHECK_EQ_INT(alloc_live, live);
        CHECK_EQ_U64(d.size, 80);
        CHECK_EQ_U64(d.capacity, 100);
        CHECK_EQ_U64(d.ttl_ns, 100);
        CHECK_EQ_U64(rs_dedup_memory(&d), mem);
        CHECK_EQ_U64(d.expired + d.evicted, 0);
        CHECK_EQ_INT(t.releases, 0);
        CHECK_EQ_INT(violations(&d), 0);
    }
    alloc_fail_at = alloc_fail_from = 0;
    CHECK_EQ_INT(rs_dedup_configure(&d, 10, 5, 85), RS_OK); /* 76..80 live under 10 */
    CHECK_EQ_U64(d.size, 5);
    CHECK_EQ_U64(d.expired, 75);
    CHECK_EQ_INT(violations(&d), 0);
    rs_dedup_free(&d);
    CHECK_EQ_INT(alloc_live, 0);
    rs_set_allocator(NULL, NULL);
    tctx_free(&t);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(120); /* the whole file runs in a few seconds under the sanitizers */
    RUN_TEST(test_init_errors);
    RUN_TEST(test_init_enomem);
    RUN_TEST(test_grow_enomem);
    RUN_TEST(test_seen_contains_discard);
    RUN_TEST(test_ttl_edge);
    RUN_TEST(test_ttl_max);
    RUN_TEST(test_known_expired_rerecorded);
    RUN_TEST(test_duplicate_does_not_refresh);
    RUN_TEST(test_incremental_expiry);
    RUN_TEST(test_expire_limit);
    RUN_TEST(test_capacity_eviction);
    RUN_TEST(test_capacity_one);
    RUN_TEST(test_growth_to_capacity);
    RUN_TEST(test_memory);
    RUN_TEST(test_backward_shift_wraparound);
    RUN_TEST(test_backward_shift_all_orders);
    RUN_TEST(test_high_bits_hash);
    RUN_TEST(test_collisions_interleaved);
    RUN_TEST(test_failing_eq);
    RUN_TEST(test_failing_eq_after_expiry);
    RUN_TEST(test_visit);
    RUN_TEST(test_clear);
    RUN_TEST(test_release_null);
    RUN_TEST(test_put_get);
    RUN_TEST(test_put_known_expired);
    RUN_TEST(test_put_grow_and_enomem);
    RUN_TEST(test_configure_errors);
    RUN_TEST(test_configure_capacity);
    RUN_TEST(test_configure_ttl);
    RUN_TEST(test_configure_enomem);
    RUN_TEST(test_randomized_long);
    RUN_TEST(test_randomized_poor_hash);
    return rs_test_summary();
}
