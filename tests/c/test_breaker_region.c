/* C unit tests of the circuit breaker's region block: parameters to a
 * configuration and back, a block that behaves as a local breaker, probe
 * records (taken, given back, stale ones freed, a dead holder's reclaimed
 * after the lease), the journal undoing an update cut short, the repair of
 * window and latency sums, and the structure and state checks. */
#include <stdlib.h>

#include "rs_breaker.h"
#include "rs_region.h"
#include "rs_test.h"

#define SIZE (UINT64_C(1) << 18)
#define MS UINT64_C(1000000)

static const uint64_t SECRET[2] = {1, 2};
static const struct timespec FAR = {INT32_MAX, 0};
static const rs_region_type *const TYPES[] = {&RS_BREAKER_REGION_TYPE};
static const rs_region_holder ME = {100, 7}, OTHER = {101, 7}, DEAD = {3, 9};

static int alive(uint64_t pid, uint64_t start, void *ctx) {
    (void)start;
    (void)ctx;
    return pid != DEAD.pid;
}

static void quiet(void *ctx, const char *problem) {
    (void)problem;
    (*(int *)ctx)++;
}

static int problems(const void *base) {
    int n = 0;
    rs_region_check(base, SIZE, TYPES, 1, quiet, &n);
    return n;
}

static void config(rs_breaker_config *c) {
    rs_breaker_config_default(c);
    c->failure_threshold = 2;
    c->cooldown_ns = 10 * MS;
    c->cooldown_max_ns = 10 * MS;
    c->half_open_probes = 2;
    c->window_size = 5;
    c->minimum_calls = 2;
    c->latency_window = 4;
    c->adaptive = 0;
}

static rs_breaker_block *make(void *base, const rs_breaker_config *c) {
    uint64_t params[RS_REGION_PARAMS], off = 0;
    uint32_t which = 0;
    rs_breaker_region_params(c, params);
    CHECK_EQ_INT(rs_region_attach(base, &RS_BREAKER_REGION_TYPE, "b", 1, params, &FAR, &off,
                                  &which),
                 RS_REGION_OK);
    return (rs_breaker_block *)((char *)base + off);
}

static void *region(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0, SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 50 * MS, SECRET), RS_REGION_OK);
    return base;
}

static rs_status acquire(rs_breaker_block *blk, uint64_t now, rs_permit *p,
                         const rs_region_holder *who) {
    uint64_t rem = 0;
    return rs_breaker_block_acquire(blk, now, p, &rem, who, 50 * MS, alive, NULL);
}

static void test_params_round_trip(void) {
    rs_breaker_config c, back;
    config(&c);
    c.failure_rate_enabled = 1;
    c.failure_rate_threshold = 0.25;
    c.slow_call_enabled = 1;
    c.slow_call_ms = 250.0;
    c.window_duration_ns = 2000 * MS;
    c.half_open_max_wait_ns = 5 * MS;
    uint64_t params[RS_REGION_PARAMS];
    rs_breaker_region_params(&c, params);
    CHECK_EQ_INT(rs_breaker_params_config(params, &back), RS_OK);
    CHECK(back.failure_rate_enabled && back.failure_rate_threshold == 0.25);
    CHECK(back.slow_call_enabled && back.slow_call_ms == 250.0);
    CHECK_EQ_U64(back.window_duration_ns, 2000 * MS);
    CHECK_EQ_U64(back.half_open_max_wait_ns, 5 * MS);
    CHECK_EQ_INT(back.adaptive, 0);
    /* off: 0 */
    config(&c);
    rs_breaker_region_params(&c, params);
    CHECK_EQ_U64(params[RS_BF_FAILURE_RATE_THRESHOLD], 0);
    CHECK_EQ_U64(params[RS_BF_SLOW_CALL_DURATION], 0);
    CHECK_EQ_U64(params[RS_BF_COUNT], 0);
    /* not a breaker's: a word past the parameters, a flag of 2, a bad value */
    params[RS_BREAKER_REGION_PARAMS] = 1;
    CHECK_EQ_INT(rs_breaker_params_config(params, &back), RS_EINVAL);
    params[RS_BREAKER_REGION_PARAMS] = 0;
    params[RS_BF_COUNT] = 2;
    CHECK_EQ_INT(rs_breaker_params_config(params, &back), RS_EINVAL);
    params[RS_BF_COUNT] = 0;
    params[RS_BF_WINDOW_SIZE] = 0;
    CHECK_EQ_INT(rs_breaker_params_config(params, &back), RS_EINVAL);
    params[RS_BF_WINDOW_SIZE] = UINT64_C(1) << 40;
    CHECK_EQ_INT(rs_breaker_params_config(params, &back), RS_EINVAL);
}

/* The block driven by outcomes matches a local breaker fed the same. */
static void test_block_is_a_breaker(void) {
    void *base = region();
    rs_breaker_config c;
    config(&c);
    rs_breaker_block *blk = make(base, &c);
    rs_breaker local;
    CHECK_EQ_INT(rs_breaker_init(&local, &c, 0), RS_OK);
    uint64_t now = 1000 * MS, seed = 12345;
    for (int i = 0; i < 5000; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        unsigned r = (unsigned)(seed >> 33) % 10;
        now += (seed >> 20) % (3 * MS);
        rs_permit p, q;
        uint64_t rem1 = 0, rem2 = 0;
        rs_status s1 = rs_breaker_block_acquire(blk, now, &p, &rem1, &ME, 50 * MS, alive, NULL);
        rs_status s2 = rs_breaker_acquire(&local, now, &q, &rem2);
        CHECK_EQ_INT(s1, s2);
        if (s1 != RS_OK) {
            CHECK_EQ_U64(rem1, rem2);
            continue;
        }
        int kind = r < 6 ? RS_BLOCK_SUCCESS : r < 9 ? RS_BLOCK_FAILURE : RS_BLOCK_RELEASE;
        double lat = (double)(seed % 100);
        rs_breaker_block_outcome(blk, &p, kind, lat, now, &ME);
        if (kind == RS_BLOCK_SUCCESS) {
            rs_breaker_success(&local, &q, lat, now);
        } else if (kind == RS_BLOCK_FAILURE) {
            rs_breaker_failure(&local, &q, lat, now);
        } else {
            rs_breaker_release(&local, &q, now);
        }
        rs_transition t;
        while (rs_breaker_pop_transition(&blk->core, &t)) {
        }
        while (rs_breaker_pop_transition(&local, &t)) {
        }
        CHECK_EQ_INT(blk->core.state, local.state);
        CHECK_EQ_U64(blk->core.epoch, local.epoch);
        CHECK_EQ_U64(blk->core.window.failures, local.window.failures);
        CHECK(blk->core.latencies.sum == local.latencies.sum);
    }
    CHECK_EQ_U64(blk->core.counters.permitted, local.counters.permitted);
    CHECK_EQ_U64(blk->core.counters.rejected, local.counters.rejected);
    CHECK(local.counters.transitions[RS_STATE_OPEN] > 10);
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, (uint32_t)blk->nprobes), 0);
    CHECK_EQ_INT(problems(base), 0);
    rs_breaker_free(&local);
    free(base);
}

static void trip(rs_breaker_block *blk, uint64_t now) {
    rs_breaker_block_outcome(blk, NULL, RS_BLOCK_FAILURE, 1.0, now, &ME);
    rs_breaker_block_outcome(blk, NULL, RS_BLOCK_FAILURE, 1.0, now, &ME);
    CHECK_EQ_INT(blk->core.state, RS_STATE_OPEN);
}

/* A new region whose breaker tripped and whose cooldown just ended: the
 * next acquire is a probe. */
static rs_breaker_block *cooled_down(void **base, uint64_t *now) {
    rs_breaker_config c;
    config(&c);
    *base = region();
    rs_breaker_block *blk = make(*base, &c);
    *now = 1000 * MS;
    trip(blk, *now);
    *now += 10 * MS;
    return blk;
}

static void test_probe_records(void) {
    void *base;
    uint64_t now;
    rs_breaker_block *blk = cooled_down(&base, &now);
    rs_permit a, b, x;
    CHECK_EQ_INT(acquire(blk, now, &a, &DEAD), RS_OK);
    CHECK_EQ_INT(acquire(blk, now, &b, &OTHER), RS_OK);
    CHECK(a.kind == RS_PERMIT_PROBE && a.slot == 0 && b.slot == 1);
    CHECK_EQ_INT(acquire(blk, now, &x, &ME), RS_EREJECTED);
    /* within the lease the dead holder keeps it */
    CHECK_EQ_INT(acquire(blk, now + 49 * MS, &x, &ME), RS_EREJECTED);
    CHECK_EQ_U64(blk->core.counters.rejected, 2);
    /* a lease on: the dead holder's probe comes back, the living one's stays */
    CHECK_EQ_INT(acquire(blk, now + 50 * MS, &x, &ME), RS_OK);
    CHECK(x.kind == RS_PERMIT_PROBE && x.slot == 0);
    CHECK_EQ_U64(blk->reclaimed, 1);
    CHECK_EQ_U64(blk->core.counters.rejected, 2); /* the call that reclaimed was admitted */
    CHECK_EQ_U64(blk->probe[1].since_ns, now + 50 * MS); /* asked; asked again a lease on */
    /* an outcome frees its permit's record (slot and epoch), whichever
     * process reports it: here ME reports OTHER's, as a forked child would */
    rs_breaker_block_outcome(blk, &b, RS_BLOCK_SUCCESS, 1.0, now + 50 * MS, &ME);
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, 2), 1);
    CHECK_EQ_U64(blk->probe[0].holder.pid, ME.pid); /* x's stays */
    rs_breaker_block_outcome(blk, &b, RS_BLOCK_SUCCESS, 1.0, now + 50 * MS, &ME); /* again: */
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, 2), 1); /* nothing more to free */
    rs_breaker_block_outcome(blk, &x, RS_BLOCK_SUCCESS, 1.0, now + 50 * MS, &ME);
    CHECK_EQ_INT(blk->core.state, RS_STATE_CLOSED); /* probe successes: closed */
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, 2), 0);
    /* a record of an earlier epoch is stale: freed when a probe needs the room */
    blk->probe[1] = (rs_region_permit){OTHER, now, blk->core.epoch};
    now += 100 * MS;
    trip(blk, now);
    now += 10 * MS;
    CHECK_EQ_INT(acquire(blk, now, &a, &ME), RS_OK);
    CHECK_EQ_INT(acquire(blk, now, &b, &ME), RS_OK);
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, 2), 2);
    CHECK(blk->probe[0].tag == blk->core.epoch && blk->probe[1].tag == blk->core.epoch);
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* Closing a region gives back the probes of the process closing it. */
static void test_drop_holder(void) {
    void *base;
    uint64_t now;
    rs_breaker_block *blk = cooled_down(&base, &now);
    rs_permit a, b, x;
    CHECK_EQ_INT(acquire(blk, now, &a, &ME), RS_OK);
    CHECK_EQ_INT(acquire(blk, now, &b, &OTHER), RS_OK);
    CHECK_EQ_INT(acquire(blk, now, &x, &OTHER), RS_EREJECTED);
    RS_BREAKER_REGION_TYPE.drop_holder(blk, NULL, &ME);
    CHECK_EQ_U64(rs_region_permit_count(blk->probe, 2), 1);
    CHECK_EQ_U64(blk->core.probes_granted, 1);
    CHECK_EQ_INT(acquire(blk, now, &x, &OTHER), RS_OK); /* ME's probe, given back */
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* A process killed in the middle of an update: the journal undoes it. */
static void test_journal_undoes_a_cut_update(void) {
    void *base;
    uint64_t now;
    rs_breaker_block *blk = cooled_down(&base, &now);
    rs_permit a;
    CHECK_EQ_INT(acquire(blk, now, &a, &ME), RS_OK);
    rs_breaker before = blk->core;
    /* as an acquire cut after the core granted a probe, before its record:
     * the journal holds the state before it */
    blk->saved = blk->core;
    memcpy(&blk->probe[blk->nprobes], blk->probe, blk->nprobes * sizeof blk->probe[0]);
    blk->journaled = 1;
    blk->core.probes_granted++;
    blk->core.counters.permitted++;
    int n = 0;
    rs_region_check(base, SIZE, TYPES, 1, quiet, &n);
    CHECK(n > 0); /* the check sees the update cut short */
    RS_BREAKER_REGION_TYPE.repair(blk, NULL);
    CHECK_EQ_U64(blk->core.probes_granted, before.probes_granted);
    CHECK_EQ_U64(blk->core.counters.permitted, before.counters.permitted);
    CHECK_EQ_U64(blk->journaled, 0);
    CHECK_EQ_INT(problems(base), 0);
    /* the second probe can still be had, and the first reports */
    rs_permit b;
    CHECK_EQ_INT(acquire(blk, now, &b, &ME), RS_OK);
    rs_breaker_block_outcome(blk, &a, RS_BLOCK_SUCCESS, 1.0, now, &ME);
    rs_breaker_block_outcome(blk, &b, RS_BLOCK_SUCCESS, 1.0, now, &ME);
    CHECK_EQ_INT(blk->core.state, RS_STATE_CLOSED);
    free(base);
}

/* Sums a cut update can leave wrong are recomputed. */
static void test_repair_recounts(void) {
    void *base = region();
    rs_breaker_config c;
    config(&c);
    c.failure_threshold = 0;
    rs_breaker_block *blk = make(base, &c);
    for (int i = 0; i < 7; i++) {
        rs_breaker_block_outcome(blk, NULL, i % 3 ? RS_BLOCK_SUCCESS : RS_BLOCK_FAILURE,
                                 (double)i, 1000 * MS, &ME);
    }
    rs_breaker want = blk->core;
    blk->core.window.failures += 3;
    blk->core.window.total -= 1;
    blk->core.latencies.sum = -5.0;
    blk->core.pending_len = 99;
    blk->core.state = 17;
    int n = 0;
    rs_region_check(base, SIZE, TYPES, 1, quiet, &n);
    CHECK(n >= 3);
    RS_BREAKER_REGION_TYPE.repair(blk, NULL);
    CHECK_EQ_U64(blk->core.window.failures, want.window.failures);
    CHECK_EQ_U64(blk->core.window.total, want.window.total);
    CHECK(blk->core.latencies.sum == want.latencies.sum);
    CHECK_EQ_INT(blk->core.pending_len, 0);
    CHECK_EQ_INT(blk->core.state, RS_STATE_OPEN);
    CHECK_EQ_INT(problems(base), 0);
    /* a block whose settings differ from its parameters is refused on attach */
    blk->core.cfg.failure_threshold = 9;
    uint64_t params[RS_REGION_PARAMS], off;
    uint32_t which;
    rs_breaker_region_params(&c, params);
    CHECK_EQ_INT(rs_region_attach(base, &RS_BREAKER_REGION_TYPE, "b", 1, params, &FAR, &off,
                                  &which),
                 RS_REGION_CORRUPT);
    free(base);
}

int main(void) {
    RUN_TEST(test_params_round_trip);
    RUN_TEST(test_block_is_a_breaker);
    RUN_TEST(test_probe_records);
    RUN_TEST(test_drop_holder);
    RUN_TEST(test_journal_undoes_a_cut_update);
    RUN_TEST(test_repair_recounts);
    return rs_test_summary();
}
