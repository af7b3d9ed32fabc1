/* test_ring.c - unit tests of rs_ring (csrc/core/rs_ring.h).
 *
 * Items are small integers carried in pointers (P(v), never NULL, so a NULL
 * from rs_ring_pop always means "empty"). Times are plain nanosecond
 * counts chosen by each test. */
#include "rs_ring.h"
#include "rs_test.h"

#include <stdlib.h>

#define P(v) ((void *)(uintptr_t)(v))
#define V(p) ((uint64_t)(uintptr_t)(p))

/* Small deterministic generator so runs are reproducible (splitmix64). */
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }

/* ---- allocator hooks -------------------------------------------------------- */

/* Counts calls and live blocks; call number fail_at (1-based) fails, and so
 * does every call from fail_from on (0: off). A failing call never reaches
 * malloc, so no huge block is ever touched. */
static long alloc_calls, free_calls, alloc_live, fail_at, fail_from;
static size_t last_request;

static void *counting_alloc(size_t size) {
    long k = ++alloc_calls;
    last_request = size;
    if (k == fail_at || (fail_from && k >= fail_from)) {
        return NULL;
    }
    void *p = malloc(size);
    alloc_live += p != NULL;
    return p;
}

static void counting_free(void *p) {
    free_calls++;
    alloc_live -= p != NULL;
    free(p);
}

static void install_counting(long fail_at_call, long fail_from_call) {
    alloc_calls = free_calls = alloc_live = 0;
    last_request = 0;
    fail_at = fail_at_call;
    fail_from = fail_from_call;
    rs_set_allocator(counting_alloc, counting_free);
}

static void restore_allocator(void) { rs_set_allocator(NULL, NULL); }

/* ---- init and free ---------------------------------------------------------- */

/* Capacity 0 and capacity > RS_RING_MAX_CAPACITY are RS_EINVAL, allocate nothing,
 * and leave a zeroed ring that rs_ring_free accepts. */
static void test_init_errors(void) {
    const uint32_t bad[] = {0, RS_RING_MAX_CAPACITY + 1, UINT32_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rs_ring r;
        memset(&r, 0xAB, sizeof r); /* garbage: init must clear it */
        install_counting(0, 0);
        CHECK_EQ_INT(rs_ring_init(&r, bad[k], 77), RS_EINVAL);
        CHECK_EQ_INT(alloc_calls, 0);
        CHECK(r.items == NULL);
        CHECK(r.times == NULL);
        CHECK_EQ_U64(r.len, 0);
        CHECK_EQ_U64(r.capacity, 0);
        CHECK(rs_ring_pop(&r) == NULL);
        CHECK_EQ_U64(rs_ring_oldest_age(&r, 1000), 0);
        CHECK(rs_ring_mean_age(&r, 1000) == 0.0);
        rs_ring_free(&r);
        CHECK_EQ_INT(free_calls, 0);
        restore_allocator();
    }
}

/* Capacity 1 and a small capacity initialise empty, with base time = now; free
 * releases both arrays and is idempotent. */
static void test_init_ok_and_free(void) {
    const uint32_t caps[] = {1, 2, 1000};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        rs_ring r;
        install_counting(0, 0);
        CHECK_EQ_INT(rs_ring_init(&r, caps[k], 123456789), RS_OK);
        CHECK_EQ_INT(alloc_calls, 2); /* items and times */
        CHECK_EQ_INT(alloc_live, 2);
        CHECK_EQ_U64(r.capacity, caps[k]);
        CHECK_EQ_U64(r.len, 0);
        CHECK_EQ_U64(r.head, 0);
        CHECK_EQ_U64(r.base_ns, 123456789);
        CHECK(r.time_sum == 0.0);
        CHECK(rs_ring_pop(&r) == NULL);
        for (uint32_t i = 0; i < caps[k]; i++) {
            CHECK_EQ_INT(rs_ring_push(&r, P(i + 1), 123456789 + i), RS_OK);
        }
        rs_ring_free(&r); /* the ring does not own the items: nothing to release */
        CHECK_EQ_INT(alloc_live, 0);
        CHECK_EQ_INT(free_calls, 2);
        CHECK(r.items == NULL);
        CHECK(r.times == NULL);
        CHECK_EQ_U64(r.len, 0);
        rs_ring_free(&r); /* idempotent */
        CHECK_EQ_INT(free_calls, 2);
        restore_allocator();
    }
}

/* Either allocation failing gives RS_ENOMEM, nothing leaked, a ring safe to
 * free; RS_RING_MAX_CAPACITY itself passes validation (it reaches the
 * allocator, whose refusal is RS_ENOMEM, not RS_EINVAL). The default
 * allocator works again afterwards. */
static void test_init_enomem(void) {
    const uint32_t caps[] = {1, 7, 1000};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        for (long fail = 1; fail <= 2; fail++) {
            rs_ring r;
            install_counting(fail, 0);
            CHECK_EQ_INT(rs_ring_init(&r, caps[k], 5), RS_ENOMEM);
            CHECK_EQ_INT(alloc_live, 0);
            CHECK(r.items == NULL);
            CHECK(r.times == NULL);
            CHECK_EQ_U64(r.len, 0);
            CHECK(rs_ring_pop(&r) == NULL);
            rs_ring_free(&r);
            CHECK_EQ_INT(alloc_live, 0);
            restore_allocator();
        }
    }
    rs_ring r;
    install_counting(0, 1); /* every allocation fails */
    CHECK_EQ_INT(rs_ring_init(&r, RS_RING_MAX_CAPACITY, 0), RS_ENOMEM);
    CHECK(alloc_calls >= 1);
    CHECK_EQ_U64(last_request, (uint64_t)RS_RING_MAX_CAPACITY * 8u);
    CHECK_EQ_INT(alloc_live, 0);
    rs_ring_free(&r);
    restore_allocator();

    CHECK_EQ_INT(rs_ring_init(&r, 16, 0), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(1), 0), RS_OK);
    CHECK(rs_ring_pop(&r) == P(1));
    rs_ring_free(&r);
}

/* ---- push, pop, at ------------------------------------------------------------ */

/* Bursts of pushes and pops of varying sizes keep FIFO order through thousands
 * of wrap-arounds, for several capacities. */
static void test_fifo_across_wraps(void) {
    const uint32_t caps[] = {1, 2, 3, 7, 64};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        const uint32_t cap = caps[k];
        rs_ring r;
        CHECK_EQ_INT(rs_ring_init(&r, cap, 0), RS_OK);
        uint64_t next_in = 1, next_out = 1, wraps = 0;
        int wrong = 0;
        for (int burst = 0; burst < 20000; burst++) {
            uint32_t n = 1 + (uint32_t)burst % cap; /* 1..cap pushes, then as many pops */
            for (uint32_t i = 0; i < n; i++) {
                wrong += rs_ring_push(&r, P(next_in++), (uint64_t)burst) != RS_OK;
            }
            for (uint32_t i = 0; i < n; i++) {
                uint32_t head_before = r.head;
                wrong += V(rs_ring_pop(&r)) != next_out++;
                wraps += head_before == cap - 1; /* the head went round */
                wrong += r.head >= cap;
            }
            wrong += r.len != 0;
        }
        CHECK_EQ_INT(wrong, 0);
        CHECK_EQ_U64(next_in, next_out);
        CHECK(wraps >= 1000);
        CHECK(rs_ring_pop(&r) == NULL);
        rs_ring_free(&r);
    }
}

/* Interleaved push/pop at a steady depth (the queue never empties) stays FIFO. */
static void test_fifo_steady_depth(void) {
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, 5, 0), RS_OK);
    uint64_t next_in = 1, next_out = 1;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(next_in++), 0), RS_OK);
    }
    int wrong = 0;
    for (int i = 0; i < 100003; i++) {
        wrong += rs_ring_push(&r, P(next_in++), (uint64_t)i) != RS_OK;
        wrong += V(rs_ring_pop(&r)) != next_out++;
        wrong += r.len != 3;
    }
    CHECK_EQ_INT(wrong, 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_U64(V(rs_ring_pop(&r)), next_out++);
    }
    CHECK(rs_ring_pop(&r) == NULL);
    rs_ring_free(&r);
}

/* A full ring returns RS_EREJECTED and stores nothing: contents, order, length,
 * head and ages are unchanged; one pop makes room for exactly one push. */
static void test_full_rejects(void) {
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, 4, 1000), RS_OK);
    /* Move the head off 0 first, so the full ring straddles the end. */
    CHECK_EQ_INT(rs_ring_push(&r, P(90), 1000), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(91), 1000), RS_OK);
    CHECK(rs_ring_pop(&r) == P(90));
    CHECK(rs_ring_pop(&r) == P(91));
    for (uint32_t i = 1; i <= 4; i++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(i), 1000 + 100 * i), RS_OK);
    }
    CHECK_EQ_U64(r.len, 4);
    const uint32_t head = r.head;
    const double sum = r.time_sum;
    const uint64_t oldest = rs_ring_oldest_age(&r, 2000);
    const double mean = rs_ring_mean_age(&r, 2000);
    CHECK_EQ_U64(oldest, 900);
    CHECK_NEAR(mean, (900 + 800 + 700 + 600) / 4.0, 0.0);
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(99), 1900 + (uint64_t)k), RS_EREJECTED);
    }
    CHECK_EQ_INT(rs_ring_push(&r, NULL, 0), RS_EREJECTED);
    CHECK_EQ_U64(r.len, 4);
    CHECK_EQ_U64(r.head, head);
    CHECK(r.time_sum == sum);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, 2000), oldest);
    CHECK(rs_ring_mean_age(&r, 2000) == mean);
    for (uint32_t i = 0; i < 4; i++) {
        CHECK_EQ_U64(V(rs_ring_at(&r, i)), i + 1);
    }
    CHECK(rs_ring_pop(&r) == P(1));
    CHECK_EQ_INT(rs_ring_push(&r, P(5), 1900), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(6), 1900), RS_EREJECTED);
    for (uint32_t v = 2; v <= 5; v++) {
        CHECK_EQ_U64(V(rs_ring_pop(&r)), v);
    }
    CHECK(rs_ring_pop(&r) == NULL);
    rs_ring_free(&r);

    /* Capacity 1: full after one push. */
    CHECK_EQ_INT(rs_ring_init(&r, 1, 0), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(1), 10), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(2), 20), RS_EREJECTED);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, 30), 20);
    CHECK_NEAR(rs_ring_mean_age(&r, 30), 20.0, 0.0);
    CHECK(rs_ring_pop(&r) == P(1));
    CHECK(rs_ring_pop(&r) == NULL);
    CHECK_EQ_INT(rs_ring_push(&r, P(3), 40), RS_OK);
    CHECK(rs_ring_pop(&r) == P(3));
    rs_ring_free(&r);
}

/* Pop on an empty ring returns NULL and changes nothing, fresh or emptied. */
static void test_pop_empty(void) {
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, 3, 0), RS_OK);
    for (int k = 0; k < 3; k++) {
        CHECK(rs_ring_pop(&r) == NULL);
    }
    CHECK_EQ_U64(r.len, 0);
    CHECK_EQ_U64(r.head, 0);
    CHECK(r.time_sum == 0.0);
    CHECK_EQ_INT(rs_ring_push(&r, P(1), 5), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(2), 6), RS_OK);
    CHECK(rs_ring_pop(&r) == P(1));
    CHECK(rs_ring_pop(&r) == P(2));
    const uint32_t head = r.head;
    for (int k = 0; k < 3; k++) {
        CHECK(rs_ring_pop(&r) == NULL);
        CHECK_EQ_U64(r.len, 0);
        CHECK_EQ_U64(r.head, head);
    }
    /* Pop clears the slot it frees (the ring keeps no stale pointers). */
    int stale = 0;
    for (uint32_t i = 0; i < r.capacity; i++) {
        stale += r.items[i] != NULL;
    }
    CHECK_EQ_INT(stale, 0);
    /* Still usable after the empty pops. */
    CHECK_EQ_INT(rs_ring_push(&r, P(3), 7), RS_OK);
    CHECK_EQ_U64(r.len, 1);
    CHECK(rs_ring_pop(&r) == P(3));
    rs_ring_free(&r);
}

/* rs_ring_at(i) is the i-th item from the oldest, at every head position,
 * including when the held items straddle the end of the storage. */
static void test_at_indexes_from_oldest(void) {
    const uint32_t cap = 5;
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, cap, 0), RS_OK);
    uint64_t next_in = 1, oldest = 1;
    int wrong = 0, straddled = 0;
    for (uint32_t shift = 0; shift < 3 * cap; shift++) {
        for (uint32_t depth = 1; depth <= cap; depth++) {
            while (r.len < depth) {
                wrong += rs_ring_push(&r, P(next_in++), 0) != RS_OK;
            }
            for (uint32_t i = 0; i < r.len; i++) {
                wrong += V(rs_ring_at(&r, i)) != oldest + i;
            }
            straddled += r.head + r.len > cap;
        }
        /* Empty the ring, then move the head on by one slot. */
        while (r.len) {
            wrong += V(rs_ring_pop(&r)) != oldest++;
        }
        wrong += rs_ring_push(&r, P(next_in++), 0) != RS_OK;
        wrong += V(rs_ring_pop(&r)) != oldest++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(straddled > 0);
    /* A hand-made case: capacity 4, head at 3. */
    rs_ring_free(&r);
    CHECK_EQ_INT(rs_ring_init(&r, 4, 0), RS_OK);
    for (int i = 0; i < 3; i++) {
        rs_ring_push(&r, P(100), 0);
        rs_ring_pop(&r);
    }
    CHECK_EQ_U64(r.head, 3);
    for (uint32_t v = 10; v <= 13; v++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(v), 0), RS_OK);
    }
    CHECK_EQ_U64(V(rs_ring_at(&r, 0)), 10); /* storage slot 3 */
    CHECK_EQ_U64(V(rs_ring_at(&r, 1)), 11); /* slot 0 */
    CHECK_EQ_U64(V(rs_ring_at(&r, 2)), 12); /* slot 1 */
    CHECK_EQ_U64(V(rs_ring_at(&r, 3)), 13); /* slot 2 */
    CHECK(rs_ring_pop(&r) == P(10));
    CHECK_EQ_U64(V(rs_ring_at(&r, 0)), 11);
    CHECK_EQ_U64(V(rs_ring_at(&r, 2)), 13);
    rs_ring_free(&r);
}

/* ---- ages ---------------------------------------------------------------------- */

/* Oldest and mean age against hand-computed values, through a wrap-around. */
static void test_ages_by_hand(void) {
    rs_ring r;
    const uint64_t t0 = 1000000;
    CHECK_EQ_INT(rs_ring_init(&r, 3, t0), RS_OK);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 500), 0); /* empty */
    CHECK(rs_ring_mean_age(&r, t0 + 500) == 0.0);

    rs_ring_push(&r, P(1), t0 + 100);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 100), 0);
    CHECK(rs_ring_mean_age(&r, t0 + 100) == 0.0);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 350), 250);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 350), 250.0, 0.0);

    rs_ring_push(&r, P(2), t0 + 200);
    rs_ring_push(&r, P(3), t0 + 400); /* at t0+500: ages 400, 300, 100 */
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 500), 400);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 500), 800.0 / 3.0, 1e-9);

    CHECK(rs_ring_pop(&r) == P(1)); /* at t0+500: ages 300, 100 */
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 500), 300);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 500), 200.0, 0.0);

    rs_ring_push(&r, P(4), t0 + 600); /* wraps to slot 0; at t0+1000: 800, 600, 400 */
    CHECK_EQ_U64(r.head, 1);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 1000), 800);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 1000), 600.0, 0.0);

    CHECK(rs_ring_pop(&r) == P(2));
    CHECK(rs_ring_pop(&r) == P(3)); /* head wraps to 0; only item 4 (t0+600) */
    CHECK_EQ_U64(r.head, 0);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 1000), 400);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 1000), 400.0, 0.0);

    rs_ring_push(&r, P(5), t0 + 2000);
    rs_ring_push(&r, P(6), t0 + 2600); /* at t0+3000: 2400, 1000, 400 */
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 3000), 2400);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 3000), 3800.0 / 3.0, 1e-9);
    CHECK(rs_ring_pop(&r) == P(4)); /* 1000, 400 */
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 3000), 1000);
    CHECK_NEAR(rs_ring_mean_age(&r, t0 + 3000), 700.0, 0.0);
    rs_ring_free(&r);
}

/* Once the ring empties the mean restarts from the items pushed after, even
 * when the running sum held values that could not cancel exactly. */
static void test_mean_resets_when_empty(void) {
    rs_ring r;
    const uint64_t t0 = 50;
    CHECK_EQ_INT(rs_ring_init(&r, 4, t0), RS_OK);
    /* Offsets 2^60 and 3 do not sum exactly in a double: the 3 is lost when
     * added and the running sum reads -3 once both are removed, unless the
     * ring resets it on emptying. */
    const uint64_t big = UINT64_C(1) << 60;
    rs_ring_push(&r, P(1), t0 + big);
    rs_ring_push(&r, P(2), t0 + 3);
    CHECK(rs_ring_pop(&r) == P(1));
    CHECK(rs_ring_pop(&r) == P(2));
    CHECK(r.time_sum == 0.0); /* exact, not a rounding residue */
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + big + 100), 0);
    CHECK(rs_ring_mean_age(&r, t0 + big + 100) == 0.0);

    rs_ring_push(&r, P(4), t0 + 10);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t0 + 15), 5);
    CHECK(rs_ring_mean_age(&r, t0 + 15) == 5.0);
    rs_ring_push(&r, P(5), t0 + 14); /* at t0+20: 10, 6 */
    CHECK(rs_ring_mean_age(&r, t0 + 20) == 8.0);
    CHECK(rs_ring_pop(&r) == P(4));
    CHECK(rs_ring_pop(&r) == P(5));
    CHECK(r.time_sum == 0.0);

    /* Repeated fill/empty cycles leave no drift. */
    for (int cycle = 0; cycle < 1000; cycle++) {
        uint64_t t = t0 + 1000 * (uint64_t)cycle;
        rs_ring_push(&r, P(1), t + 1);
        rs_ring_push(&r, P(2), t + 2);
        rs_ring_push(&r, P(3), t + 6);
        rs_ring_pop(&r);
        rs_ring_pop(&r);
        rs_ring_pop(&r);
    }
    CHECK(r.time_sum == 0.0);
    rs_ring_push(&r, P(9), t0 + 5000000);
    CHECK(rs_ring_mean_age(&r, t0 + 5000123) == 123.0);
    rs_ring_free(&r);
}

/* With time standing still every age is 0; items pushed at one instant share
 * one age later; a clock read earlier than an enqueue time gives 0, not a
 * negative or wrapped age. */
static void test_ages_time_not_advancing(void) {
    rs_ring r;
    const uint64_t t = 777777;
    CHECK_EQ_INT(rs_ring_init(&r, 8, t), RS_OK);
    for (uint32_t i = 0; i < 8; i++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(i + 1), t), RS_OK);
        CHECK_EQ_U64(rs_ring_oldest_age(&r, t), 0);
        CHECK(rs_ring_mean_age(&r, t) == 0.0);
    }
    for (int k = 0; k < 20; k++) { /* pop and push at the same instant, wrapping */
        rs_ring_pop(&r);
        rs_ring_push(&r, P(100 + k), t);
        CHECK_EQ_U64(rs_ring_oldest_age(&r, t), 0);
        CHECK(rs_ring_mean_age(&r, t) == 0.0);
    }
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t + 42), 42);
    CHECK(rs_ring_mean_age(&r, t + 42) == 42.0);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, t - 1), 0); /* clock behind the items */
    CHECK(rs_ring_mean_age(&r, t - 1) == 0.0);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, 0), 0);
    CHECK(rs_ring_mean_age(&r, 0) == 0.0);
    rs_ring_free(&r);

    /* Times before the base (a clock that went back after init) still give
     * the right ages: offsets from the base may be negative. */
    CHECK_EQ_INT(rs_ring_init(&r, 4, 10000), RS_OK);
    rs_ring_push(&r, P(1), 9000);
    rs_ring_push(&r, P(2), 9500);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, 9600), 600);
    CHECK_NEAR(rs_ring_mean_age(&r, 9600), 350.0, 0.0);
    CHECK_NEAR(rs_ring_mean_age(&r, 12000), 2750.0, 0.0);
    rs_ring_free(&r);
}

/* ---- random run against a reference ------------------------------------------ */

typedef struct {
    uint64_t *items, *times;
    uint32_t cap, head, len;
} ref_ring;

static uint64_t ref_at_time(const ref_ring *q, uint32_t i) { return q->times[(q->head + i) % q->cap]; }
static uint64_t ref_at_item(const ref_ring *q, uint32_t i) { return q->items[(q->head + i) % q->cap]; }

/* Exact mean age over the reference, from an integer sum (ages are < 2^40 and
 * at most 1000 items, so no overflow). */
static double ref_mean_age(const ref_ring *q, uint64_t now) {
    if (!q->len) {
        return 0.0;
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < q->len; i++) {
        uint64_t t = ref_at_time(q, i);
        sum += now > t ? now - t : 0;
    }
    return (double)sum / (double)q->len;
}

/* 1e6 random operations per capacity (push, pop, at, ages) against an array
 * reference: same statuses, same items in the same order, exact oldest age,
 * mean age within 1e-6 relative + 1e-3 ns. The push bias drifts between runs near
 * empty and runs near full; time advances by 0 (often), small or large steps,
 * from a base far from 0. */
static void test_random_against_reference(void) {
    const uint32_t caps[] = {1, 3, 16, 1000};
    const long ops = 1000000;
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        const uint32_t cap = caps[k];
        ref_ring q = {calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(uint64_t)), cap, 0, 0};
        CHECK(q.items != NULL && q.times != NULL);
        if (!q.items || !q.times) {
            free(q.items);
            free(q.times);
            return;
        }
        uint64_t now = UINT64_C(1) << 50; /* ~13 days of ns: offsets come from the base */
        rs_ring r;
        CHECK_EQ_INT(rs_ring_init(&r, cap, now), RS_OK);
        uint64_t next_item = 1;
        long status_wrong = 0, item_wrong = 0, len_wrong = 0, at_wrong = 0, oldest_wrong = 0,
             mean_wrong = 0, rejected = 0, empty_pops = 0, emptied = 0, full_hits = 0;
        double worst_mean_err = 0.0;
        uint32_t push_pct = 50;
        for (long op = 0; op < ops; op++) {
            if (op % 4096 == 0) {
                push_pct = 5 + rng_below(91); /* 5..95 % */
            }
            uint32_t step = rng_below(8);
            now += step < 3 ? 0 : step < 7 ? rng_below(1000) : rng_below(1000000);
            if (rng_below(100) < push_pct) {
                uint64_t item = next_item++;
                rs_status st = rs_ring_push(&r, P(item), now);
                if (q.len == cap) {
                    status_wrong += st != RS_EREJECTED;
                    rejected++;
                } else {
                    status_wrong += st != RS_OK;
                    uint32_t slot = (q.head + q.len) % cap;
                    q.items[slot] = item;
                    q.times[slot] = now;
                    q.len++;
                    full_hits += q.len == cap;
                }
            } else {
                void *got = rs_ring_pop(&r);
                if (q.len == 0) {
                    item_wrong += got != NULL;
                    empty_pops++;
                } else {
                    item_wrong += V(got) != q.items[q.head];
                    q.head = (q.head + 1) % cap;
                    q.len--;
                    emptied += q.len == 0;
                }
            }
            len_wrong += r.len != q.len;
            if (q.len) {
                uint32_t i = rng_below(q.len);
                at_wrong += V(rs_ring_at(&r, i)) != ref_at_item(&q, i);
            }
            uint64_t probe = now + (rng_below(4) ? rng_below(5000) : 0);
            uint64_t oldest = q.len ? probe - ref_at_time(&q, 0) : 0;
            oldest_wrong += rs_ring_oldest_age(&r, probe) != oldest;
            if (q.len <= 16 || op % 64 == 0) { /* the O(len) reference, not at every op */
                double want = ref_mean_age(&q, probe);
                double got = rs_ring_mean_age(&r, probe);
                double err = fabs(got - want);
                if (err > worst_mean_err) {
                    worst_mean_err = err;
                }
                mean_wrong += !(err <= 1e-6 * want + 1e-3);
            }
        }
        /* A full traversal and a drain at the end. */
        for (uint32_t i = 0; i < q.len; i++) {
            at_wrong += V(rs_ring_at(&r, i)) != ref_at_item(&q, i);
        }
        while (q.len) {
            item_wrong += V(rs_ring_pop(&r)) != q.items[q.head];
            q.head = (q.head + 1) % cap;
            q.len--;
        }
        item_wrong += rs_ring_pop(&r) != NULL;
        CHECK_EQ_INT(status_wrong, 0);
        CHECK_EQ_INT(item_wrong, 0);
        CHECK_EQ_INT(len_wrong, 0);
        CHECK_EQ_INT(at_wrong, 0);
        CHECK_EQ_INT(oldest_wrong, 0);
        CHECK_EQ_INT(mean_wrong, 0);
        CHECK(r.time_sum == 0.0);
        /* The run did visit both ends, many times. */
        CHECK(rejected > 100);
        CHECK(empty_pops > 100);
        CHECK(emptied > 100 || cap == 1000);
        CHECK(full_hits > 10);
        if (mean_wrong) {
            printf("  capacity %u: worst mean-age error %.3g ns\n", cap, worst_mean_err);
        }
        rs_ring_free(&r);
        free(q.items);
        free(q.times);
    }
}

/* A ring that never empties for 1e6 operations, with offsets of a day from the
 * base: the running sum's rounding stays far below a nanosecond per item. */
static void test_mean_no_drift_when_never_empty(void) {
    const uint32_t cap = 1000;
    rs_ring r;
    ref_ring q = {calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(uint64_t)), cap, 0, 0};
    CHECK(q.items != NULL && q.times != NULL);
    if (!q.items || !q.times) {
        free(q.items);
        free(q.times);
        return;
    }
    uint64_t now = 0;
    CHECK_EQ_INT(rs_ring_init(&r, cap, now), RS_OK);
    now += UINT64_C(86400) * RS_NS_PER_SEC;
    double worst = 0.0;
    long wrong = 0;
    for (long op = 0; op < 1000000; op++) {
        now += 1 + rng_below(2000);
        int push = q.len < cap / 2 || (q.len < cap && (rng_next() & 1));
        if (push) {
            rs_ring_push(&r, P(1), now);
            q.times[(q.head + q.len) % cap] = now;
            q.len++;
        } else {
            rs_ring_pop(&r);
            q.head = (q.head + 1) % cap;
            q.len--;
        }
        if (op % 997 == 0) {
            double err = fabs(rs_ring_mean_age(&r, now) - ref_mean_age(&q, now));
            worst = err > worst ? err : worst;
            wrong += err > 100.0; /* 100 ns on mean ages of ~1 ms */
        }
    }
    CHECK(q.len >= cap / 2 - 1);
    CHECK_EQ_INT(wrong, 0);
    if (wrong) {
        printf("  worst mean-age error %.3g ns\n", worst);
    }
    rs_ring_free(&r);
    free(q.items);
    free(q.times);
}

/* ---- resize ------------------------------------------------------------------ */

/* A resize keeps every item in order with its time, wrapped or not; a limit
 * below len refuses pushes until pops bring len below it; the slots follow
 * max(limit, len). */
static void test_resize_keeps_items(void) {
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, 8, 0), RS_OK);
    for (uint64_t v = 1; v <= 6; v++) { /* head moves to 5: the items wrap */
        CHECK_EQ_INT(rs_ring_push(&r, P(v), v * 10), RS_OK);
    }
    for (int i = 0; i < 5; i++) {
        rs_ring_pop(&r);
    }
    for (uint64_t v = 7; v <= 12; v++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(v), v * 10), RS_OK);
    }
    CHECK_EQ_U64(r.len, 7); /* 6..12 */
    double mean = rs_ring_mean_age(&r, 1000);
    /* below len: every item kept, pushes refused */
    CHECK_EQ_INT(rs_ring_resize(&r, 3), RS_OK);
    CHECK_EQ_U64(r.capacity, 7);
    CHECK_EQ_U64(r.limit, 3);
    CHECK_EQ_INT(rs_ring_push(&r, P(99), 200), RS_EREJECTED);
    CHECK_EQ_U64(rs_ring_oldest_age(&r, 1000), 1000 - 60);
    CHECK_NEAR(rs_ring_mean_age(&r, 1000), mean, 1e-6);
    for (uint32_t i = 0; i < 7; i++) {
        CHECK(rs_ring_at(&r, i) == P(6 + i));
    }
    for (uint64_t v = 6; v <= 10; v++) { /* len 7 -> 2: only then is there room */
        CHECK(rs_ring_pop(&r) == P(v));
        CHECK_EQ_INT(rs_ring_push(&r, P(99), 200), v == 10 ? RS_OK : RS_EREJECTED);
    }
    CHECK_EQ_U64(r.len, 3); /* 11, 12, 99 */
    CHECK_EQ_INT(rs_ring_push(&r, P(100), 200), RS_EREJECTED);
    /* raised: room for more, across the wrap of the 7 slots */
    CHECK_EQ_INT(rs_ring_resize(&r, 20), RS_OK);
    CHECK_EQ_U64(r.capacity, 20);
    for (uint64_t v = 100; v < 117; v++) {
        CHECK_EQ_INT(rs_ring_push(&r, P(v), 300), RS_OK);
    }
    CHECK_EQ_INT(rs_ring_push(&r, P(117), 300), RS_EREJECTED);
    CHECK(rs_ring_pop(&r) == P(11));
    CHECK(rs_ring_pop(&r) == P(12));
    CHECK(rs_ring_pop(&r) == P(99));
    for (uint64_t v = 100; v < 117; v++) {
        CHECK(rs_ring_pop(&r) == P(v));
    }
    CHECK(rs_ring_pop(&r) == NULL);
    /* lowered while empty: the slots shrink to the limit */
    CHECK_EQ_INT(rs_ring_resize(&r, 2), RS_OK);
    CHECK_EQ_U64(r.capacity, 2);
    CHECK_EQ_INT(rs_ring_push(&r, P(1), 0), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(2), 0), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(3), 0), RS_EREJECTED);
    rs_ring_free(&r);
}

/* A bad limit is RS_EINVAL and a failed allocation RS_ENOMEM; nothing changes. */
static void test_resize_errors(void) {
    rs_ring r;
    CHECK_EQ_INT(rs_ring_init(&r, 4, 0), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(1), 5), RS_OK);
    CHECK_EQ_INT(rs_ring_push(&r, P(2), 6), RS_OK);
    void **items = r.items;
    CHECK_EQ_INT(rs_ring_resize(&r, 0), RS_EINVAL);
    CHECK_EQ_INT(rs_ring_resize(&r, RS_RING_MAX_CAPACITY + 1), RS_EINVAL);
    for (long fail = 1; fail <= 2; fail++) {
        install_counting(fail, 0);
        CHECK_EQ_INT(rs_ring_resize(&r, 9), RS_ENOMEM);
        CHECK_EQ_INT(alloc_live, 0);
        restore_allocator();
    }
    CHECK(r.items == items);
    CHECK_EQ_U64(r.capacity, 4);
    CHECK_EQ_U64(r.limit, 4);
    CHECK_EQ_U64(r.len, 2);
    CHECK_EQ_INT(rs_ring_resize(&r, 4), RS_OK); /* the same: nothing allocated */
    CHECK(r.items == items);
    CHECK(rs_ring_pop(&r) == P(1));
    CHECK(rs_ring_pop(&r) == P(2));
    rs_ring_free(&r);
}

int main(void) {
    RUN_TEST(test_init_errors);
    RUN_TEST(test_init_ok_and_free);
    RUN_TEST(test_init_enomem);
    RUN_TEST(test_fifo_across_wraps);
    RUN_TEST(test_fifo_steady_depth);
    RUN_TEST(test_full_rejects);
    RUN_TEST(test_pop_empty);
    RUN_TEST(test_at_indexes_from_oldest);
    RUN_TEST(test_ages_by_hand);
    RUN_TEST(test_mean_resets_when_empty);
    RUN_TEST(test_ages_time_not_advancing);
    RUN_TEST(test_random_against_reference);
    RUN_TEST(test_mean_no_drift_when_never_empty);
    RUN_TEST(test_resize_keeps_items);
    RUN_TEST(test_resize_errors);
    return rs_test_summary();
}
