/* C unit tests of rs_region and the limiter's region block: format,
 * attach, parameter mismatch, a full directory and a full region, every
 * header check, fuzzing (random bytes, bit flips of a valid region,
 * truncation at every 4 KiB boundary) that must end in a refusal or a
 * sound region and never a crash, a lock whose holder died, the repair of
 * a block's state when attaching, and keyed
 * buckets with eviction within a key's two sets. */
#include <stdlib.h>

#include "rs_gcra.h"
#include "rs_region.h"
#include "rs_region_test.h"

#define SIZE (UINT64_C(1) << 18)

static void *fresh(uint64_t size) {
    void *base = aligned_alloc(64, size);
    memset(base, 0xA5, size);
    return base;
}

static const rs_region_type *const TYPES[] = {&RS_GCRA_REGION_TYPE};

static int problems(const void *base, uint64_t size) {
    int n = 0;
    int r = rs_region_check(base, size, TYPES, 1, quiet, &n);
    return r == n ? r : -1;
}

static rs_region_status attach(void *base, const char *name, double rate, uint64_t burst,
                               uint64_t max_keys, uint64_t *off, uint32_t *which) {
    uint64_t params[RS_REGION_PARAMS];
    if (rs_gcra_params(rate, 1000000000, burst, max_keys, params) != RS_OK) {
        return RS_REGION_CORRUPT;
    }
    return rs_region_attach(base, &RS_GCRA_REGION_TYPE, name, (uint32_t)strlen(name), params,
                            &FAR, off, which);
}

static void test_format_and_attach(void) {
    void *base = fresh(SIZE);
    CHECK_EQ_INT(rs_region_format(base, RS_REGION_MIN_SIZE - 1, 1, SECRET), RS_REGION_TOO_SMALL);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    CHECK_EQ_INT(rs_region_validate(base, SIZE), RS_REGION_OK);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    CHECK_EQ_U64(rs_region_used(base) % RS_REGION_ALIGN, 0);
    uint64_t a = 0, b = 0, c = 0;
    uint32_t which = 99;
    CHECK_EQ_INT(attach(base, "api", 10.0, 5, 16, &a, &which), RS_REGION_OK);
    CHECK_EQ_INT(attach(base, "api", 10.0, 5, 16, &b, &which), RS_REGION_OK);
    CHECK_EQ_U64(a, b);
    CHECK_EQ_U64(a % RS_REGION_ALIGN, 0);
    CHECK_EQ_INT(attach(base, "db", 10.0, 5, 16, &c, &which), RS_REGION_OK);
    CHECK(c > a);
    CHECK_EQ_U64(rs_region_count(base), 2);
    /* other parameters: the index of the first that differs */
    CHECK_EQ_INT(attach(base, "api", 11.0, 5, 16, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_GCF_RATE);
    CHECK_EQ_INT(attach(base, "api", 10.0, 6, 16, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_GCF_BURST);
    CHECK_EQ_INT(attach(base, "api", 10.0, 5, 17, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_GCF_MAX_KEYS);
    /* names: empty and too long are refused */
    CHECK_EQ_INT(rs_region_attach(base, &RS_GCRA_REGION_TYPE, "x", 0, ((rs_region_header *)base)
                                  ->dir[0].params, &FAR, &b, &which), RS_REGION_MISMATCH);
    CHECK_EQ_INT(rs_region_attach(base, &RS_GCRA_REGION_TYPE, "x", RS_REGION_NAME_MAX + 1,
                                  ((rs_region_header *)base)->dir[0].params, &FAR, &b, &which),
                 RS_REGION_MISMATCH);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    free(base);
}

static void test_full(void) {
    void *base = fresh(RS_REGION_MIN_SIZE);
    CHECK_EQ_INT(rs_region_format(base, RS_REGION_MIN_SIZE, 1, SECRET), RS_REGION_OK);
    uint64_t off;
    uint32_t which;
    /* a block larger than what is left */
    CHECK_EQ_INT(attach(base, "big", 1.0, 1, 100000, &off, &which), RS_REGION_FULL);
    CHECK_EQ_U64(rs_region_count(base), 0);
    /* small objects until the directory is full */
    char name[16];
    rs_region_status st = RS_REGION_OK;
    unsigned made = 0;
    for (unsigned i = 0; i < RS_REGION_DIR_CAP + 1 && st == RS_REGION_OK; i++) {
        snprintf(name, sizeof name, "n%u", i);
        st = attach(base, name, 1.0, 1, 1, &off, &which);
        made += st == RS_REGION_OK;
    }
    CHECK(st == RS_REGION_DIR_FULL || st == RS_REGION_FULL);
    CHECK_EQ_U64(rs_region_count(base), made);
    CHECK_EQ_INT(problems(base, RS_REGION_MIN_SIZE), 0);
    free(base);

    base = fresh(SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1, SECRET), RS_REGION_OK);
    st = RS_REGION_OK;
    for (unsigned i = 0; i < RS_REGION_DIR_CAP + 1 && st == RS_REGION_OK; i++) {
        snprintf(name, sizeof name, "n%u", i);
        st = attach(base, name, 1.0, 1, 1, &off, &which);
    }
    CHECK_EQ_INT(st, RS_REGION_DIR_FULL);
    CHECK_EQ_U64(rs_region_count(base), RS_REGION_DIR_CAP);
    free(base);
}

static void test_header_checks(void) {
    void *base = fresh(SIZE);
    rs_region_header *h = base;
    uint64_t off;
    uint32_t which;
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1, SECRET), RS_REGION_OK);
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &off, &which), RS_REGION_OK);
    CHECK_EQ_INT(rs_region_validate(base, 0), RS_REGION_TOO_SMALL);
    CHECK_EQ_INT(rs_region_validate(base, 4096), RS_REGION_TOO_SMALL);
    CHECK_EQ_INT(rs_region_validate(base, SIZE - 4096), RS_REGION_TOO_SMALL);
#define BREAK(field, value, expect)                                    \
    do {                                                               \
        __typeof__(h->field) saved_ = h->field;                        \
        h->field = (value);                                            \
        CHECK_EQ_INT(rs_region_validate(base, SIZE), expect);          \
        CHECK(problems(base, SIZE) > 0);                               \
        h->field = saved_;                                             \
        CHECK_EQ_INT(rs_region_validate(base, SIZE), RS_REGION_OK);    \
    } while (0)
    BREAK(magic[0], 'X', RS_REGION_BAD_MAGIC);
    BREAK(version, RS_REGION_VERSION + 1, RS_REGION_BAD_VERSION);
    BREAK(ready, 0, RS_REGION_INCOMPLETE);
    BREAK(header_size, 64, RS_REGION_CORRUPT);
    BREAK(size, SIZE * 2, RS_REGION_TOO_SMALL);
    BREAK(size, SIZE / 2, RS_REGION_CORRUPT);
    BREAK(size, 0, RS_REGION_CORRUPT);
    BREAK(lease_ns, 0, RS_REGION_CORRUPT);
    BREAK(cursor, SIZE + 64, RS_REGION_CORRUPT);
    BREAK(cursor, 64, RS_REGION_CORRUPT);
    BREAK(cursor, h->cursor + 1, RS_REGION_CORRUPT);
    BREAK(count, RS_REGION_DIR_CAP + 1, RS_REGION_CORRUPT);
    BREAK(count, 2, RS_REGION_CORRUPT);
    BREAK(dir[0].type, 0, RS_REGION_CORRUPT);
    BREAK(dir[0].name_len, 0, RS_REGION_CORRUPT);
    BREAK(dir[0].name_len, 64, RS_REGION_CORRUPT);
    BREAK(dir[0].name_len, 2, RS_REGION_CORRUPT);
    BREAK(dir[0].offset, 64, RS_REGION_CORRUPT);
    BREAK(dir[0].offset, h->dir[0].offset + 8, RS_REGION_CORRUPT);
    BREAK(dir[0].offset, UINT64_MAX - 63, RS_REGION_CORRUPT);
    BREAK(dir[0].size, 0, RS_REGION_CORRUPT);
    BREAK(dir[0].size, UINT64_MAX, RS_REGION_CORRUPT);
    BREAK(dir[0].size, SIZE, RS_REGION_CORRUPT);
    /* sound header, but the block's size or settings disagree */
    h->dir[0].params[3] = 1u << 31;
    CHECK(problems(base, SIZE) > 0);
    CHECK_EQ_INT(rs_region_attach(base, &RS_GCRA_REGION_TYPE, "a", 1, h->dir[0].params, &FAR,
                                  &off, &which), RS_REGION_CORRUPT);
    h->dir[0].params[3] = 16;
    rs_gcra_block *blk = (rs_gcra_block *)((char *)base + h->dir[0].offset);
    blk->g.b = 0;
    CHECK(problems(base, SIZE) > 0);
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &off, &which), RS_REGION_CORRUPT);
    blk->g.b = 1;
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &off, &which), RS_REGION_OK);
    blk->slot[3].debt = UINT64_MAX;
    blk->slot[3].d0 = 7;
    CHECK(problems(base, SIZE) >= 2); /* debt and count */
    RS_GCRA_REGION_TYPE.repair(blk, h->dir[0].params);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    free(base);
}

/* Whatever the bytes, validate either refuses or the region is walkable,
 * and attaching never reads outside it. */
static void exercise(void *base, uint64_t size) {
    if (rs_region_validate(base, size) != RS_REGION_OK) {
        CHECK(problems(base, size) > 0);
        return;
    }
    problems(base, size);
    uint64_t off;
    uint32_t which;
    rs_region_status st = attach(base, "a", 10.0, 5, 16, &off, &which);
    if (st == RS_REGION_OK) {
        CHECK(off + RS_GCRA_REGION_TYPE.block_size(((rs_region_header *)base)->dir[0].params) <=
              size);
    }
}

static void test_fuzz(void) {
    /* random bytes, with and without a valid magic and version */
    for (int round = 0; round < 200; round++) {
        uint64_t size = RS_REGION_MIN_SIZE;
        unsigned char *base = fresh(size);
        for (uint64_t i = 0; i < size; i++) {
            base[i] = (unsigned char)rnd();
        }
        if (round % 2) {
            rs_region_header *h = (rs_region_header *)base;
            memcpy(h->magic, RS_REGION_MAGIC, 8);
            h->version = RS_REGION_VERSION;
            h->ready = 1;
            h->header_size = sizeof(rs_region_header);
            h->size = size;
        }
        CHECK(rs_region_validate(base, size) != RS_REGION_OK || round % 2);
        exercise(base, size);
        free(base);
    }
    /* bit flips of a sound region with two objects (the directory lock left alone:
     * a flipped lock word reads as held, which the binding bounds by its deadline) */
    void *good = fresh(SIZE);
    uint64_t off;
    uint32_t which;
    rs_region_format(good, SIZE, 1, SECRET);
    attach(good, "a", 10.0, 5, 16, &off, &which);
    attach(good, "b", 3.0, 2, 8, &off, &which);
    uint64_t span = rs_region_used(good);
    void *copy = fresh(SIZE);
    size_t lock_lo = offsetof(rs_region_header, lock), lock_hi = lock_lo + sizeof(rs_region_mutex);
    for (int round = 0; round < 3000; round++) {
        memcpy(copy, good, SIZE);
        for (int k = 0; k < 1 + round % 3; k++) {
            uint64_t bit = rnd() % (span * 8);
            if (bit / 8 >= lock_lo && bit / 8 < lock_hi) {
                continue;
            }
            ((unsigned char *)copy)[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        exercise(copy, SIZE);
    }
    /* truncation at every 4 KiB boundary */
    for (uint64_t size = 0; size < SIZE; size += 4096) {
        unsigned char *t = fresh(size ? size : 64);
        memcpy(t, good, size);
        CHECK(rs_region_validate(t, size) != RS_REGION_OK);
        CHECK_EQ_INT(problems(t, size), 1);
        free(t);
    }
    free(copy);
    free(good);
}

static void *die_holding(void *arg) {
    CHECK_EQ_INT(rs_region_trylock(arg), 0);
    return NULL; /* exits holding the lock */
}

static void test_dead_holder(void) {
    void *base = fresh(SIZE);
    rs_region_format(base, SIZE, 1, SECRET);
    rs_region_header *h = base;
    pthread_t t;
    pthread_create(&t, NULL, die_holding, &h->lock);
    pthread_join(t, NULL);
    CHECK_EQ_INT(rs_region_trylock(&h->lock), 1); /* owner died: made consistent */
    rs_region_unlock(&h->lock);
    CHECK_EQ_INT(rs_region_trylock(&h->lock), 0);
    /* held by this thread: busy for a second attempt, a deadline passes */
    struct timespec past = {0, 0};
    CHECK_EQ_INT(rs_region_timedlock(&h->lock, &past), 2);
    rs_region_unlock(&h->lock);
    /* attach after a dead holder works */
    pthread_create(&t, NULL, die_holding, &h->lock);
    pthread_join(t, NULL);
    uint64_t off;
    uint32_t which;
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &off, &which), RS_REGION_OK);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    /* a garbage lock word is refused or reads as held, never hangs past the deadline */
    memset(&h->lock, 0xFF, sizeof h->lock);
    CHECK(attach(base, "a", 10.0, 5, 16, &off, &which) == RS_REGION_LOCK_FAILED);
    free(base);
}

static int alive_if_even(uint64_t pid, uint64_t start, void *ctx) {
    (void)start;
    (void)ctx;
    return pid % 2 == 0 ? 1 : (pid == 3 ? -1 : 0);
}

static void test_holders_and_digest(void) {
    rs_region_holder none = {0, 0}, even = {4, 9}, odd = {5, 9}, unknown = {3, 9};
    CHECK_EQ_INT(rs_region_holder_dead(&none, alive_if_even, NULL), 0);
    CHECK_EQ_INT(rs_region_holder_dead(&even, alive_if_even, NULL), 0);
    CHECK_EQ_INT(rs_region_holder_dead(&odd, alive_if_even, NULL), 1);
    CHECK_EQ_INT(rs_region_holder_dead(&unknown, alive_if_even, NULL), 0);
    uint64_t a[2], b[2], c[2], d[2];
    rs_region_digest(SECRET, 's', "user-1", 6, a);
    rs_region_digest(SECRET, 's', "user-1", 6, b);
    rs_region_digest(SECRET, 'b', "user-1", 6, c);
    uint64_t other[2] = {1, 2};
    rs_region_digest(other, 's', "user-1", 6, d);
    CHECK(a[0] == b[0] && a[1] == b[1]);
    CHECK(a[0] != c[0] && a[1] != c[1]);
    CHECK(a[0] != d[0] && a[1] != d[1]);
    /* every length up to two words differs from its neighbours */
    char buf[40] = {0};
    uint64_t prev[2] = {0, 0};
    for (size_t n = 0; n < sizeof buf; n++) {
        rs_region_digest(SECRET, 's', buf, n, a);
        CHECK(a[0] != prev[0] || a[1] != prev[1]);
        prev[0] = a[0], prev[1] = a[1];
    }
}

static void count_dead(void *ctx, const rs_region_permit *p) {
    *(uint64_t *)ctx += p->tag;
}

/* Permit records: taken while free, given back only by their holder,
 * reclaimed from a dead holder once a lease passed, a living one's
 * re-checked a lease later, an unknown one kept. */
static void test_permit_records(void) {
    rs_region_permit recs[3];
    memset(recs, 0, sizeof recs);
    rs_region_holder odd = {5, 9}, even = {4, 9}, unknown = {3, 9};
    CHECK_EQ_INT(rs_region_permit_take(recs, 3, &odd, 100, 7), 0);
    CHECK_EQ_INT(rs_region_permit_take(recs, 3, &even, 100, 8), 1);
    CHECK_EQ_INT(rs_region_permit_take(recs, 3, &unknown, 100, 9), 2);
    CHECK_EQ_INT(rs_region_permit_take(recs, 3, &even, 100, 1), -1);
    CHECK_EQ_INT(rs_region_permit_count(recs, 3), 3);
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, 0, &even, 7), 0); /* not its record */
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, 3, &even, 8), 0); /* out of range */
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, -1, &even, 8), 0);
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, 1, &even, 9), 0); /* another permit's tag */
    uint64_t tags = 0;
    /* within the lease nobody is asked */
    CHECK_EQ_INT(rs_region_permit_reclaim(recs, 3, 149, 50, alive_if_even, NULL, count_dead,
                                          &tags), 0);
    CHECK_EQ_INT(recs[1].since_ns, 100);
    /* a clock behind the record's: left for later */
    CHECK_EQ_INT(rs_region_permit_reclaim(recs, 3, 50, 50, alive_if_even, NULL, count_dead,
                                          &tags), 0);
    CHECK_EQ_INT(rs_region_permit_reclaim(recs, 3, 150, 50, alive_if_even, NULL, count_dead,
                                          &tags), 1);
    CHECK_EQ_INT(tags, 7);
    CHECK_EQ_INT(recs[0].holder.pid, 0);
    CHECK_EQ_INT(recs[1].since_ns, 150); /* alive: checked again a lease later */
    CHECK_EQ_INT(recs[2].since_ns, 150); /* unknown counts as alive */
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, 0, &odd, 7), 0); /* reclaimed: not its own now */
    CHECK_EQ_INT(rs_region_permit_give(recs, 3, 1, &even, 8), 1);
    CHECK_EQ_INT(rs_region_permit_count(recs, 3), 1);
    CHECK_EQ_INT(rs_region_permit_take(recs, 3, &odd, 200, 1), 0);
}

static void test_keyed_block(void) {
    void *base = fresh(SIZE);
    rs_region_format(base, SIZE, 1, SECRET);
    uint64_t off;
    uint32_t which;
    /* 1 per second, burst 2, 8 keys: room for 16, two sets of 8; a digest
     * (d0, d1) may live in set d0 % 2 or d1 % 2: (even, 1) in either */
    CHECK_EQ_INT(attach(base, "k", 1.0, 2, 8, &off, &which), RS_REGION_OK);
    rs_gcra_block *blk = (rs_gcra_block *)((char *)base + off);
    CHECK_EQ_U64(blk->nsets, 2);
    uint64_t now = 1000;
    CHECK_EQ_INT(rs_gcra_block_take(blk, 10, 1, now, 2), 1);
    CHECK_EQ_INT(rs_gcra_block_take(blk, 10, 1, now, 1), 0);
    CHECK_EQ_U64(rs_gcra_block_wait(blk, 10, 1, now, 1), 1000000000);
    CHECK_EQ_U64(rs_gcra_block_wait(blk, 12, 1, now, 2), 0);
    /* a new key goes to the set holding fewer keys */
    CHECK_EQ_INT(rs_gcra_block_take(blk, 12, 1, now + 1, 1), 1);
    CHECK_EQ_U64(blk->slot[0].d0, 10);
    CHECK_EQ_U64(blk->slot[RS_GCRA_WAYS].d0, 12);
    /* 17 keys in both sets' 16 slots: the least recently admitted goes */
    for (uint64_t k = 7; k < 22; k++) {
        CHECK_EQ_INT(rs_gcra_block_take(blk, 2 * k, 1, now + k, 1), 1);
    }
    CHECK_EQ_U64(blk->keys, 16);
    CHECK_EQ_U64(rs_gcra_block_wait(blk, 10, 1, now + 30, 2), 0); /* 10 was forgotten */
    CHECK_EQ_U64(rs_gcra_block_wait(blk, 12, 1, now + 30, 2), 1000000000 - 29);
    CHECK_EQ_U64(rs_gcra_block_live(blk, now + 30), 16);
    /* once full again, a key's slot is reused first */
    uint64_t later = now + 3000000000ull;
    CHECK_EQ_U64(rs_gcra_block_live(blk, later), 0);
    CHECK_EQ_INT(rs_gcra_block_take(blk, 198, 1, later, 1), 1);
    CHECK_EQ_U64(blk->keys, 16);
    CHECK_EQ_U64(blk->g.admitted, 18);
    CHECK_EQ_U64(blk->g.rejected, 1);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    free(base);
}

/* Attaching repairs the state (a wrong count, a digest held twice) under
 * the block's lock when it is free, and only checks the structure when a
 * live holder has it. */
static void test_attach_repairs_state(void) {
    void *base = fresh(SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    uint64_t off, again;
    uint32_t which;
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &off, &which), RS_REGION_OK);
    rs_gcra_block *blk = (rs_gcra_block *)((char *)base + off);
    CHECK_EQ_INT(rs_gcra_block_take(blk, 2, 1, 1000, 1), 1);
    CHECK_EQ_INT(rs_gcra_block_take(blk, 4, 1, 1000, 1), 1);
    blk->keys = 5;
    blk->slot[7] = blk->slot[0]; /* d0 % 2 == 0: set 0 */
    CHECK_EQ_INT(problems(base, SIZE), 2);
    /* busy: attached, nothing touched */
    CHECK_EQ_INT(rs_region_trylock(&blk->lock), 0);
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &again, &which), RS_REGION_OK);
    CHECK_EQ_U64(again, off);
    CHECK_EQ_U64(blk->keys, 5);
    rs_region_unlock(&blk->lock);
    CHECK_EQ_INT(attach(base, "a", 10.0, 5, 16, &again, &which), RS_REGION_OK);
    CHECK_EQ_U64(blk->keys, 2);
    CHECK_EQ_INT(problems(base, SIZE), 0);
    CHECK_EQ_INT(rs_gcra_block_take(blk, 2, 1, 1000, 5), 0); /* the key kept its debt */
    free(base);
}

int main(void) {
    RUN_TEST(test_attach_repairs_state);
    RUN_TEST(test_format_and_attach);
    RUN_TEST(test_full);
    RUN_TEST(test_header_checks);
    RUN_TEST(test_fuzz);
    RUN_TEST(test_dead_holder);
    RUN_TEST(test_holders_and_digest);
    RUN_TEST(test_keyed_block);
    RUN_TEST(test_permit_records);
    return rs_test_summary();
}
