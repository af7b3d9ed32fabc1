/* C unit tests of the deduplicator's region block (rs_dedup.h, "a
 * deduplicator in a region"): parameters and their mismatch, random
 * operations in lockstep with the local rs_dedup (same answers, counts and
 * size), a new key whose two sets are full (a key moves to its other set,
 * else the pair's oldest is evicted), and the check and repair of every
 * state a killed holder or damage can leave. */
#include <stdlib.h>

#include "rs_dedup.h"
#include "rs_region.h"
#include "rs_region_test.h"

#define SIZE (UINT64_C(1) << 20)
#define NIL RS_DEDUP_NIL
#define WAYS RS_DEDUP_WAYS

static int problems(const void *base) {
    static const rs_region_type *const types[] = {&RS_DEDUP_REGION_TYPE};
    int n = 0;
    int r = rs_region_check(base, SIZE, types, 1, quiet, &n);
    return r == n ? r : -1;
}

static void *region(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0xA5, SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    return base;
}

static rs_region_status attach(void *base, const char *name, uint64_t ttl_ns, uint64_t capacity,
                               rs_dedup_block **blk, uint32_t *which) {
    uint64_t params[RS_REGION_PARAMS], off = 0;
    rs_status rc = rs_dedup_params(ttl_ns, capacity, params);
    if (rc != RS_OK) {
        return (rs_region_status)(100 + rc - RS_EFIELD_BASE);
    }
    rs_region_status st = rs_region_attach(base, &RS_DEDUP_REGION_TYPE, name,
                                           (uint32_t)strlen(name), params, &FAR, &off, which);
    *blk = st == RS_REGION_OK ? (rs_dedup_block *)((char *)base + off) : NULL;
    return st;
}

static void test_params_and_attach(void) {
    void *base = region();
    rs_dedup_block *a, *b;
    uint32_t which = 99;
    CHECK_EQ_INT(attach(base, "d", 0, 8, &a, &which), 100 + RS_DDF_TTL);
    CHECK_EQ_INT(attach(base, "d", UINT64_MAX, 8, &a, &which), 100 + RS_DDF_TTL);
    CHECK_EQ_INT(attach(base, "d", 10, 0, &a, &which), 100 + RS_DDF_CAPACITY);
    CHECK_EQ_INT(attach(base, "d", 10, (UINT64_C(1) << 30) + 1, &a, &which),
                 100 + RS_DDF_CAPACITY);
    CHECK_EQ_INT(attach(base, "d", 1000, 20, &a, &which), RS_REGION_OK);
    CHECK_EQ_U64(a->nsets, 6);
    CHECK_EQ_U64(RS_DEDUP_REGION_TYPE.block_size(((rs_region_header *)base)->dir[0].params),
                 sizeof(rs_dedup_block) + 48 * sizeof(rs_dedup_slot));
    CHECK_EQ_INT(attach(base, "d", 1000, 20, &b, &which), RS_REGION_OK);
    CHECK(a == b);
    CHECK_EQ_INT(attach(base, "d", 1001, 20, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_DDF_TTL);
    CHECK_EQ_INT(attach(base, "d", 1000, 21, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_DDF_CAPACITY);
    CHECK_EQ_INT(attach(base, "big", 1000, 1u << 20, &b, &which), RS_REGION_FULL);
    CHECK_EQ_INT(problems(base), 0);
    /* a sound header whose settings disagree with its parameters */
    a->capacity = 21;
    CHECK(problems(base) > 0);
    CHECK_EQ_INT(attach(base, "d", 1000, 20, &b, &which), RS_REGION_CORRUPT);
    a->capacity = 20;
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* ---- lockstep with the local set ---------------------------------------- */

static int eq_int(void *x, void *y, void *ctx) {
    (void)ctx;
    return x == y;
}

static uint64_t mix(uint64_t v) {
    v = (v ^ (v >> 33)) * 0xff51afd7ed558ccdu;
    return v ^ (v >> 29);
}

static void digest(uint64_t v, uint64_t d[2]) {
    rs_region_digest(SECRET, 'b', &v, sizeof v, d);
}

static void same_counts(const rs_dedup *local, const rs_dedup_block *b) {
    CHECK_EQ_U64(b->duplicates, local->duplicates);
    CHECK_EQ_U64(b->expired, local->expired);
    CHECK_EQ_U64(b->evicted, local->evicted);
    CHECK_EQ_U64(b->size, local->size);
}

static void lockstep(uint64_t capacity, uint64_t ttl, uint64_t nkeys, int steps) {
    void *base = region();
    rs_dedup_block *b;
    uint32_t which;
    CHECK_EQ_INT(attach(base, "d", ttl, capacity, &b, &which), RS_REGION_OK);
    rs_dedup local;
    CHECK_EQ_INT(rs_dedup_init(&local, ttl, (uint32_t)capacity, eq_int, NULL, NULL), RS_OK);
    uint64_t now = 1000, d[2];
    int mismatches = 0;
    for (int step = 0; step < steps && mismatches < 5; step++) {
        uint64_t op = rnd() % 100, v = 1 + rnd() % nkeys;
        void *key = (void *)(uintptr_t)v;
        digest(v, d);
        int stored, want, got;
        if (op < 60) {
            want = rs_dedup_seen(&local, mix(v), key, now, &stored);
            got = rs_dedup_block_seen(b, d[0], d[1], now);
        } else if (op < 75) {
            want = rs_dedup_contains(&local, mix(v), key, now);
            got = rs_dedup_block_contains(b, d[0], d[1], now);
        } else if (op < 82) {
            want = rs_dedup_discard(&local, mix(v), key);
            got = rs_dedup_block_discard(b, d[0], d[1]);
        } else if (op < 86) {
            want = (int)rs_dedup_expire(&local, now, 0);
            got = (int)rs_dedup_block_expire(b, now, 0);
        } else if (op < 87) {
            rs_dedup_clear(&local);
            rs_dedup_block_clear(b);
            want = got = 0;
        } else {
            now += rnd() % (ttl / 4 + 1);
            want = got = 0;
        }
        if (want != got) {
            mismatches++;
            printf("step %d op %llu key %llu: local %d, shared %d\n", step,
                   (unsigned long long)op, (unsigned long long)v, want, got);
        }
        CHECK_EQ_INT(got, want);
        same_counts(&local, b);
    }
    CHECK_EQ_INT(problems(base), 0);
    rs_dedup_free(&local);
    free(base);
}

static void test_lockstep_with_the_local_set(void) {
    lockstep(8, 100, 12, 20000);      /* two sets: every key in set 0 or 1 */
    lockstep(20, 1000, 30, 20000);    /* at capacity most of the time */
    lockstep(64, 5000, 200, 40000);
    lockstep(1000, 1000000, 3000, 40000);
    lockstep(1, 50, 3, 5000);
}

/* ---- full sets ------------------------------------------------------------ */

/* Fills the block's slots of keys (d0, d1) chosen so that each lies in
 * sets s0 and s1. */
static void test_full_sets(void) {
    void *base = region();
    rs_dedup_block *b;
    uint32_t which;
    /* capacity 64: 16 sets of 8 */
    CHECK_EQ_INT(attach(base, "d", 1000000, 64, &b, &which), RS_REGION_OK);
    CHECK_EQ_U64(b->nsets, 16);
    uint64_t now = 10;
    /* eight keys of sets (0, 0) fill set 0 */
    for (uint64_t k = 1; k <= 8; k++) {
        CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * k, 16 * k, now++), 0);
    }
    /* eight keys of sets (1, 2) go to the emptier set each time: 1 then 2 ... */
    for (uint64_t k = 1; k <= 8; k++) {
        CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * k + 1, 16 * k + 2, now++), 0);
    }
    unsigned in1 = 0, in2 = 0;
    for (unsigned w = 0; w < WAYS; w++) {
        in1 += b->slot[1 * WAYS + w].d0 != 0;
        in2 += b->slot[2 * WAYS + w].d0 != 0;
    }
    CHECK_EQ_INT(in1, 4);
    CHECK_EQ_INT(in2, 4);
    /* keys of sets (0, 1): set 0 is full, set 1 takes four more */
    for (uint64_t k = 1; k <= 4; k++) {
        CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * k + 100 * 16, 16 * k + 1, now++), 0);
    }
    /* sets 0 and 1 full now; a key of sets (0, 1) makes room by moving a
     * key of set 1 whose other set (2) has room */
    CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * 200, 16 * 200 + 1, now++), 0);
    CHECK_EQ_U64(b->evicted, 0);
    CHECK_EQ_U64(b->size, 21);
    CHECK_EQ_INT(problems(base), 0);
    /* every key is still found */
    for (uint64_t k = 1; k <= 8; k++) {
        CHECK_EQ_INT(rs_dedup_block_contains(b, 16 * k, 16 * k, now), 1);
        CHECK_EQ_INT(rs_dedup_block_contains(b, 16 * k + 1, 16 * k + 2, now), 1);
    }
    for (uint64_t k = 1; k <= 4; k++) {
        CHECK_EQ_INT(rs_dedup_block_contains(b, 16 * k + 100 * 16, 16 * k + 1, now), 1);
    }
    /* the moved key kept its place in the order: the oldest are still the
     * first eight, expired first */
    CHECK_EQ_U64(b->slot[b->oldest].d0, 16);
    /* fill set 2 with keys of sets (2, 2), then sets 1 and 2 are full and a
     * key of sets (0, 0) cannot find room anywhere but by eviction */
    while (1) {
        unsigned held = 0;
        for (unsigned w = 0; w < WAYS; w++) {
            held += b->slot[2 * WAYS + w].d0 != 0;
        }
        if (held == WAYS) {
            break;
        }
        CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * (300 + now) + 2, 16 * now + 2, now), 0);
        now++;
    }
    uint64_t size = b->size;
    CHECK(size < b->capacity);
    /* set 0 holds keys of (0, 0) only: none can move; the oldest of the
     * pair (key 16, recorded first) is evicted although size < capacity */
    CHECK_EQ_INT(rs_dedup_block_seen(b, 16 * 999, 16 * 999, now++), 0);
    CHECK_EQ_U64(b->evicted, 1);
    CHECK_EQ_U64(b->size, size);
    CHECK_EQ_INT(rs_dedup_block_contains(b, 16, 16, now), 0);
    CHECK_EQ_INT(rs_dedup_block_contains(b, 32, 32, now), 1);
    CHECK_EQ_INT(problems(base), 0);
    /* a digest whose first word is 0 is a key like any other */
    CHECK_EQ_INT(rs_dedup_block_seen(b, 0, 5, now), 0);
    CHECK_EQ_INT(rs_dedup_block_seen(b, 0, 5, now), 1);
    CHECK_EQ_INT(rs_dedup_block_contains(b, 0, 5, now), 1);
    CHECK_EQ_INT(rs_dedup_block_discard(b, 0, 5), 1);
    CHECK_EQ_INT(rs_dedup_block_discard(b, 0, 5), 0);
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* ---- check and repair --------------------------------------------------- */

static rs_dedup_block *filled(void *base, uint64_t capacity, unsigned keys) {
    rs_dedup_block *b;
    uint32_t which;
    uint64_t d[2];
    CHECK_EQ_INT(attach(base, "d", 1000000, capacity, &b, &which), RS_REGION_OK);
    for (unsigned k = 0; k < keys; k++) {
        digest(k, d);
        CHECK_EQ_INT(rs_dedup_block_seen(b, d[0], d[1], 100 + k), 0);
    }
    return b;
}

static void repaired(void *base, rs_dedup_block *b, int expect_problems) {
    const uint64_t *params = ((rs_region_header *)base)->dir[0].params;
    CHECK_EQ_INT(problems(base), expect_problems);
    RS_DEDUP_REGION_TYPE.repair(b, params);
    CHECK_EQ_INT(problems(base), 0);
}

/* A key still found after the repair, and the order oldest first. */
static void order_is_by_time(rs_dedup_block *b) {
    uint64_t last = 0, n = 0;
    for (uint32_t i = b->oldest; i != NIL; i = b->slot[i].next) {
        CHECK(b->slot[i].t_ns >= last);
        last = b->slot[i].t_ns;
        n++;
    }
    CHECK_EQ_U64(n, b->size);
}

static uint32_t slot_of(rs_dedup_block *b, unsigned k) {
    uint64_t d[2];
    digest(k, d);
    for (uint32_t i = 0; i < b->nsets * WAYS; i++) {
        if (b->slot[i].d0 == d[0] && b->slot[i].d1 == d[1]) {
            return i;
        }
    }
    return NIL;
}

static void test_check_and_repair(void) {
    uint64_t d[2];
    /* the size off by one, as after a kill between the link and the count */
    void *base = region();
    rs_dedup_block *b = filled(base, 32, 20);
    b->size++;
    repaired(base, b, 1);
    CHECK_EQ_U64(b->size, 20);
    order_is_by_time(b);
    free(base);

    /* a key moved to its other set and not yet cleared from the first: held twice */
    base = region();
    b = filled(base, 32, 20);
    uint32_t i = slot_of(b, 3);
    uint64_t other = b->slot[i].d0 % b->nsets == i / WAYS ? b->slot[i].d1 % b->nsets
                                                           : b->slot[i].d0 % b->nsets;
    uint32_t j = NIL;
    for (unsigned w = 0; w < WAYS && j == NIL; w++) {
        if (b->slot[other * WAYS + w].d0 == 0) {
            j = (uint32_t)(other * WAYS + w);
        }
    }
    if (other != i / WAYS && j != NIL) {
        b->slot[j] = b->slot[i];
        repaired(base, b, 3); /* held twice, the size, and the order */
        CHECK_EQ_U64(b->size, 20);
        CHECK_EQ_U64(slot_of(b, 3), i < j ? i : j);
        digest(3, d);
        CHECK_EQ_INT(rs_dedup_block_seen(b, d[0], d[1], 1000), 1);
        CHECK_EQ_INT(rs_dedup_block_discard(b, d[0], d[1]), 1);
        CHECK_EQ_INT(rs_dedup_block_contains(b, d[0], d[1], 1000), 0);
    } else {
        CHECK(0); /* the fixed digests give key 3 a free other set */
    }
    free(base);

    /* links broken: a new key published and not yet linked, and a cycle */
    base = region();
    b = filled(base, 32, 20);
    i = slot_of(b, 5);
    b->slot[b->slot[i].prev].next = b->slot[i].next; /* unlinked, still held */
    repaired(base, b, 1);
    order_is_by_time(b);
    CHECK(slot_of(b, 5) != NIL);
    i = slot_of(b, 7);
    b->slot[i].next = slot_of(b, 2);
    repaired(base, b, 1);
    order_is_by_time(b);
    /* oldest and newest out of range */
    b->oldest = 1u << 30;
    repaired(base, b, 1);
    b->newest = 12345;
    repaired(base, b, 1);
    order_is_by_time(b);
    /* a key outside its sets (damage) is dropped */
    i = slot_of(b, 9);
    uint64_t s0 = b->slot[i].d0 % b->nsets, s1 = (b->slot[i].d1 ^ 1) % b->nsets;
    uint32_t stray = 0;
    while (b->slot[stray].d0 != 0 || stray / WAYS == s0 || stray / WAYS == s1) {
        stray++;
    }
    b->slot[stray] = b->slot[i];
    b->slot[stray].d1 ^= 1; /* another key, in a set not its own */
    repaired(base, b, 3);   /* outside its sets, the size, the order */
    CHECK_EQ_U64(b->size, 20);
    CHECK(slot_of(b, 9) == i);
    /* more keys than capacity: the oldest are evicted (counted) */
    uint64_t evicted = b->evicted;
    for (unsigned k = 100; k < 112; k++) {
        digest(k, d);
        CHECK_EQ_INT(rs_dedup_block_seen(b, d[0], d[1], 5000 + k), 0);
    }
    CHECK_EQ_U64(b->size, 32);
    CHECK_EQ_U64(b->evicted, evicted);
    b->capacity = 30;
    RS_DEDUP_REGION_TYPE.repair(b, ((rs_region_header *)base)->dir[0].params);
    CHECK_EQ_U64(b->size, 30);
    CHECK_EQ_U64(b->evicted, evicted + 2);
    b->capacity = 32;
    CHECK_EQ_INT(problems(base), 0);
    order_is_by_time(b);
    /* every slot emptied at once, as a kill mid-clear may leave some */
    rs_dedup_block_clear(b);
    CHECK_EQ_U64(b->size, 0);
    CHECK(b->oldest == NIL && b->newest == NIL);
    CHECK_EQ_INT(problems(base), 0);
    RS_DEDUP_REGION_TYPE.repair(b, ((rs_region_header *)base)->dir[0].params); /* sound: no-op */
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* Random damage to the links, sizes and digests: the repair always leaves
 * a sound state in which every operation works. */
static void test_random_damage(void) {
    void *base = region();
    rs_dedup_block *b = filled(base, 100, 90);
    const uint64_t *params = ((rs_region_header *)base)->dir[0].params;
    uint64_t nslots = b->nsets * WAYS, d[2];
    for (int round = 0; round < 300; round++) {
        for (int k = 0; k < 1 + (int)(rnd() % 4); k++) {
            rs_dedup_slot *s = &b->slot[rnd() % nslots];
            switch (rnd() % 6) {
            case 0: s->prev = (uint32_t)rnd(); break;
            case 1: s->next = (uint32_t)(rnd() % (nslots + 2)); break;
            case 2: s->d0 = rnd() % 3 ? 0 : rnd(); break;
            case 3: *s = b->slot[rnd() % nslots]; break;
            case 4: b->size = rnd() % 200; break;
            default: b->oldest = (uint32_t)(rnd() % (nslots + 1)); break;
            }
        }
        RS_DEDUP_REGION_TYPE.repair(b, params);
        CHECK_EQ_INT(problems(base), 0);
        order_is_by_time(b);
        for (int k = 0; k < 20; k++) {
            digest(1000 + round * 20 + k, d);
            CHECK_EQ_INT(rs_dedup_block_seen(b, d[0], d[1], 10000 + (uint64_t)round), 0);
            CHECK_EQ_INT(rs_dedup_block_seen(b, d[0], d[1], 10000 + (uint64_t)round), 1);
        }
        CHECK_EQ_INT(problems(base), 0);
    }
    free(base);
}

int main(void) {
    RUN_TEST(test_params_and_attach);
    RUN_TEST(test_lockstep_with_the_local_set);
    RUN_TEST(test_full_sets);
    RUN_TEST(test_check_and_repair);
    RUN_TEST(test_random_damage);
    return rs_test_summary();
}
