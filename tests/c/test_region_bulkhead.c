/* C unit tests of the bulkhead's region block: parameters and a mismatch
 * naming the field, admission without barging past a waiter of any
 * process, the host-wide line and its per-process records, claims,
 * starts, declines and leaves, slots and waiters of a dead process taken
 * back only after the lease, the repair of every half-done update, and
 * random operations by three processes, some of them killed, that keep
 * the counts equal to the records. */
#include <stdlib.h>

#include "rs_bulkhead.h"
#include "rs_region.h"
#include "rs_test.h"

#define SIZE (UINT64_C(1) << 18)

static const uint64_t SECRET[2] = {0x0123456789abcdefu, 0xfedcba9876543210u};
static const struct timespec FAR = {INT32_MAX, 0};

/* Processes 1..7 live; a pid in `dead` (a bit each) does not. */
static unsigned dead;
static int alive(uint64_t pid, uint64_t start, void *ctx) {
    (void)start;
    (void)ctx;
    return !(dead >> pid & 1u);
}

static void quiet(void *ctx, const char *problem) {
    (void)problem;
    (*(int *)ctx)++;
}

static const rs_region_type *const TYPES[] = {&RS_BULKHEAD_REGION_TYPE};

static int problems(const void *base) {
    int n = 0;
    int r = rs_region_check(base, SIZE, TYPES, 1, quiet, &n);
    return r == n ? r : -1;
}

static void *fresh(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0xA5, SIZE);
    rs_region_format(base, SIZE, 1000, SECRET);
    return base;
}

static rs_bulkhead_block *make(void *base, const char *name, long long mc, long long mq,
                               double timeout, rs_region_status *st, uint32_t *which) {
    uint64_t params[RS_REGION_PARAMS], off = 0;
    *which = 99;
    if (rs_bulkhead_params(mc, mq, timeout, params) != RS_OK) {
        *st = RS_REGION_CORRUPT;
        return NULL;
    }
    *st = rs_region_attach(base, &RS_BULKHEAD_REGION_TYPE, name, (uint32_t)strlen(name), params,
                           &FAR, &off, which);
    return *st == RS_REGION_OK ? (rs_bulkhead_block *)((char *)base + off) : NULL;
}

static rs_region_holder P[8];
static rs_bulkhead_env env_of(int pid, uint64_t now) {
    rs_bulkhead_env e = {&P[pid], now, 1000, alive, NULL};
    return e;
}

static void test_params_and_mismatch(void) {
    uint64_t params[RS_REGION_PARAMS];
    CHECK_EQ_INT(rs_bulkhead_params(0, 0, 1.0, params), RS_EFIELD_BASE + RS_BHF_MAX_CONCURRENT);
    CHECK_EQ_INT(rs_bulkhead_params(1, -1, 1.0, params), RS_EFIELD_BASE + RS_BHF_MAX_QUEUE);
    CHECK_EQ_INT(rs_bulkhead_params(1, 0, -1.0, params), RS_EFIELD_BASE + RS_BHR_QUEUE_TIMEOUT);
    CHECK_EQ_INT(rs_bulkhead_params(1, 0, NAN, params), RS_EFIELD_BASE + RS_BHR_QUEUE_TIMEOUT);
    CHECK_EQ_INT(rs_bulkhead_params(1, 0, INFINITY, params), RS_OK);
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *a = make(base, "b", 3, 2, INFINITY, &st, &which);
    CHECK(a != NULL);
    CHECK_EQ_U64(a->nwait, 2);
    CHECK(make(base, "b", 3, 2, INFINITY, &st, &which) == a);
    CHECK(make(base, "b", 4, 2, INFINITY, &st, &which) == NULL);
    CHECK_EQ_INT(st, RS_REGION_MISMATCH);
    CHECK_EQ_INT(which, RS_BHR_MAX_CONCURRENT);
    make(base, "b", 3, 5, 2.0, &st, &which);
    CHECK_EQ_INT(which, RS_BHR_MAX_QUEUE);
    make(base, "b", 3, 2, 2.0, &st, &which);
    CHECK_EQ_INT(which, RS_BHR_QUEUE_TIMEOUT);
    CHECK(strcmp(RS_BULKHEAD_REGION_FIELDS[which].name, "queue_timeout") == 0);
    rs_bulkhead_block *big = make(base, "q", 1, 1000, 1.0, &st, &which);
    CHECK_EQ_U64(big->nwait, RS_BULKHEAD_WAIT_PROCS);
    CHECK_EQ_INT(problems(base), 0);
    /* settings that differ from the parameters are structure: check says so */
    big->b.max_queue = 7;
    CHECK_EQ_INT(problems(base), 1);
    free(base);
}

static void test_admission_and_the_line(void) {
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *blk = make(base, "b", 2, 3, INFINITY, &st, &which);
    rs_bulkhead_env e1 = env_of(1, 10), e2 = env_of(2, 10), e3 = env_of(3, 10);
    rs_bulkhead *b = &blk->b;
    int64_t s1 = rs_bulkhead_block_enter(blk, &e1, 1);
    int64_t s2 = rs_bulkhead_block_enter(blk, &e2, 1);
    CHECK(s1 >= 0 && s2 >= 0 && s1 != s2);
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e1, 1), -1);
    CHECK_EQ_U64(b->rejected, 1);
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e1, 0), -1);
    CHECK_EQ_U64(b->rejected, 1);
    int64_t slot;
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e3, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e3, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e1, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_FULL); /* line full */
    CHECK_EQ_U64(b->queued, 3);
    CHECK_EQ_U64(rs_bulkhead_block_waiting(blk, &P[3]), 2);
    /* a slot of another process is not mine to give back */
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[1], s2), 0);
    uint32_t w0 = blk->wake;
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[2], s2), 1);
    CHECK(blk->wake != w0);
    /* nobody barges past the line, from any process */
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e2, 0), -1);
    CHECK_EQ_INT(rs_bulkhead_block_claim(blk, &e2), -1); /* process 2 has no waiter */
    int64_t h = rs_bulkhead_block_claim(blk, &e3);
    CHECK(h >= 0);
    CHECK_EQ_U64(b->handed, 1);
    CHECK_EQ_U64(b->queued, 2);
    CHECK_EQ_INT(rs_bulkhead_block_claim(blk, &e1), -1); /* no slot free */
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[3], h), 0); /* handed, not running */
    /* declined with another waiter of the process in line: stays handed */
    CHECK_EQ_INT(rs_bulkhead_block_decline(blk, &P[3], h, 1), RS_BH_HANDED);
    CHECK_EQ_U64(b->queued, 1);
    CHECK_EQ_U64(rs_bulkhead_block_waiting(blk, &P[3]), 0);
    CHECK_EQ_INT(rs_bulkhead_block_start(blk, &P[3], h), 1);
    CHECK_EQ_INT(rs_bulkhead_block_start(blk, &P[3], h), 0);
    CHECK_EQ_U64(b->admitted, 3);
    CHECK_EQ_U64(b->handed, 0);
    CHECK_EQ_INT(problems(base), 0);
    /* process 1's waiter leaves when its time runs out */
    CHECK_EQ_INT(rs_bulkhead_block_leave(blk, &P[2], 1), 0);
    CHECK_EQ_INT(rs_bulkhead_block_leave(blk, &P[1], 1), 1);
    CHECK_EQ_U64(b->timed_out, 1);
    CHECK_EQ_U64(b->queued, 0);
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[1], s1), 1);
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[3], h), 1);
    CHECK_EQ_U64(b->active, 0);
    /* a handed slot declined with nobody else in line is freed */
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e1, 0) >= 0, 1);
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e1, 0) >= 0, 1);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_QUEUED);
    for (int64_t i = 0; i < 2; i++) {
        rs_bulkhead_block_release(blk, &P[1], i);
    }
    h = rs_bulkhead_block_claim(blk, &e2);
    CHECK(h >= 0);
    CHECK_EQ_INT(rs_bulkhead_block_decline(blk, &P[2], h, 1), RS_BH_FREED);
    CHECK_EQ_U64(b->active, 0);
    CHECK_EQ_U64(b->peak_active, 2);
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* At most RS_BULKHEAD_WAIT_PROCS processes wait: the next is refused. */
static void test_waiting_processes_are_bounded(void) {
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *blk = make(base, "b", 1, 2, INFINITY, &st, &which);
    rs_bulkhead_env e1 = env_of(1, 10), e2 = env_of(2, 10), e3 = env_of(3, 10);
    int64_t slot;
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e1, &slot), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e3, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e1, &slot), RS_BH_FULL);
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* A dead process's slots and waiters come back on the next call that
 * finds the bulkhead (or its line) full once a lease passed, and never
 * while it lives. */
static void test_dead_processes_are_taken_back(void) {
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *blk = make(base, "b", 2, 1, INFINITY, &st, &which);
    rs_bulkhead_env e1 = env_of(1, 100), e2 = env_of(2, 100);
    int64_t slot;
    CHECK(rs_bulkhead_block_enter(blk, &e1, 0) >= 0);
    CHECK(rs_bulkhead_block_enter(blk, &e1, 0) >= 0);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e1, &slot), RS_BH_QUEUED);
    dead = 1u << 1;
    e2.now_ns = 1099; /* within the lease */
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e2, 1), -1);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_FULL);
    CHECK_EQ_U64(blk->b.active, 2);
    e2.now_ns = 1100;
    uint32_t w0 = blk->wake;
    /* the slots come back, the dead waiter leaves the line: admitted */
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_ADMITTED);
    CHECK(blk->wake != w0);
    CHECK_EQ_U64(blk->reclaimed, 2);
    CHECK_EQ_U64(blk->b.queued, 0);
    CHECK_EQ_U64(blk->b.active, 1);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_QUEUED);
    CHECK_EQ_U64(rs_bulkhead_block_waiting(blk, &P[2]), 1);
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[2], slot), 0); /* a waiter holds none */
    CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[2], 0), 1);
    int64_t h = rs_bulkhead_block_claim(blk, &e2);
    CHECK(h >= 0);
    CHECK_EQ_INT(problems(base), 0);
    /* a living holder's slots are never taken: checked again a lease later */
    dead = 0;
    rs_bulkhead_env e3 = env_of(3, 100000);
    CHECK_EQ_INT(rs_bulkhead_block_enter(blk, &e3, 1), -1);
    CHECK_EQ_U64(blk->b.active, 2);
    CHECK_EQ_U64(blk->rec[0].since_ns, 100000);
    /* a handed slot of a dead process is taken back with its handed count */
    dead = 1u << 2;
    e3.now_ns = 200000;
    CHECK(rs_bulkhead_block_enter(blk, &e3, 0) >= 0);
    CHECK(rs_bulkhead_block_enter(blk, &e3, 0) >= 0);
    CHECK_EQ_U64(blk->b.handed, 0);
    CHECK_EQ_U64(blk->b.active, 2);
    CHECK_EQ_U64(blk->reclaimed, 4);
    CHECK_EQ_INT(rs_bulkhead_block_start(blk, &P[2], h), 0); /* no longer its own */
    /* a dead waiter stops newcomers only until a lease passed */
    rs_bulkhead_block *one = make(base, "one", 1, 1, INFINITY, &st, &which);
    rs_bulkhead_env e4 = env_of(4, 300000), e5 = env_of(5, 300000);
    int64_t s4 = rs_bulkhead_block_enter(one, &e4, 0);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(one, &e5, &slot), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_block_release(one, &P[4], s4), 1);
    dead = 1u << 5;
    CHECK_EQ_INT(rs_bulkhead_block_enter(one, &e4, 1), -1); /* within the lease */
    e4.now_ns = 301000;
    CHECK(rs_bulkhead_block_enter(one, &e4, 1) >= 0);
    CHECK_EQ_U64(one->b.queued, 0);
    dead = 0;
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

/* Every state a holder killed mid-update can leave is repaired on the
 * next lock after its death (or attach): the counts follow the records. */
static void test_repair(void) {
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *blk = make(base, "b", 3, 2, INFINITY, &st, &which);
    rs_bulkhead_env e1 = env_of(1, 10), e2 = env_of(2, 10);
    int64_t slot;
    CHECK(rs_bulkhead_block_enter(blk, &e1, 0) >= 0);
    CHECK(rs_bulkhead_block_enter(blk, &e1, 0) >= 0);
    CHECK(rs_bulkhead_block_enter(blk, &e1, 0) >= 0);
    CHECK_EQ_INT(rs_bulkhead_block_acquire(blk, &e2, &slot), RS_BH_QUEUED);
    /* killed between a record and its counts, in each operation */
    blk->b.active = 1;                      /* slots written, not counted */
    blk->b.queued = 0;                      /* waiter recorded, not counted */
    blk->rec[1].tag = 1;                    /* a claim's record, no handed count */
    blk->rec[2].holder.start = 0;           /* half written (harmless: a pid alone) */
    blk->rec[3 + 1].holder.pid = 7;         /* a waiting record whose count is 0 */
    blk->b.peak_active = 9;
    blk->hint = 77;
    CHECK(problems(base) >= 4);
    RS_BULKHEAD_REGION_TYPE.repair(blk, NULL);
    CHECK_EQ_INT(problems(base), 0);
    CHECK_EQ_U64(blk->b.active, 3);
    CHECK_EQ_U64(blk->b.handed, 1);
    CHECK_EQ_U64(blk->b.queued, 1);
    CHECK_EQ_U64(blk->b.peak_active, 3);
    /* more waiters recorded than the line has room for: only damage, clamped */
    blk->rec[3].tag = 5;
    blk->rec[4] = blk->rec[3];
    blk->rec[4].holder.pid = 6;
    RS_BULKHEAD_REGION_TYPE.repair(blk, NULL);
    CHECK_EQ_INT(problems(base), 0);
    CHECK_EQ_U64(blk->b.queued, 2);
    /* a tag out of range frees the record */
    blk->rec[0].tag = 9;
    RS_BULKHEAD_REGION_TYPE.repair(blk, NULL);
    CHECK_EQ_INT(problems(base), 0);
    CHECK_EQ_U64(blk->b.active, 2);
    free(base);
}

/* Three processes in random order, a process now and then killed (all
 * its records left behind) or an update cut short (a count left unchanged,
 * then repaired as the next locker would): the counts always follow the
 * records once repaired, and the region checks clean. */
static void test_random_with_deaths(void) {
    void *base = fresh();
    rs_region_status st;
    uint32_t which;
    rs_bulkhead_block *blk = make(base, "r", 3, 4, INFINITY, &st, &which);
    int64_t running[8][16], handed[8][16];
    int nrun[8] = {0}, nhand[8] = {0}, waiting[8] = {0};
    uint64_t now = 0, last_total = 0;
    for (int step = 0; step < 20000; step++) {
        now += rs_test_rnd() % 200;
        int p = 1 + (int)(rs_test_rnd() % 3);
        rs_bulkhead_env e = env_of(p, now);
        int64_t slot;
        switch (rs_test_rnd() % 8) {
        case 0:
        case 1:
            if (nrun[p] < 16) {
                rs_bulkhead_answer a = rs_bulkhead_block_acquire(blk, &e, &slot);
                if (a == RS_BH_ADMITTED) {
                    running[p][nrun[p]++] = slot;
                } else if (a == RS_BH_QUEUED) {
                    waiting[p]++;
                }
            }
            break;
        case 2:
            if (nrun[p]) {
                CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[p], running[p][--nrun[p]]), 1);
            }
            break;
        case 3:
            if (waiting[p] && nhand[p] < 16) {
                slot = rs_bulkhead_block_claim(blk, &e);
                if (slot >= 0) {
                    handed[p][nhand[p]++] = slot;
                    waiting[p]--;
                }
            }
            break;
        case 4:
            if (nhand[p] && nrun[p] < 16) {
                slot = handed[p][--nhand[p]];
                CHECK_EQ_INT(rs_bulkhead_block_start(blk, &P[p], slot), 1);
                running[p][nrun[p]++] = slot;
            }
            break;
        case 5:
            if (nhand[p]) {
                int r = rs_bulkhead_block_decline(blk, &P[p], handed[p][nhand[p] - 1], 1);
                if (r == RS_BH_HANDED) {
                    waiting[p]--;
                } else {
                    nhand[p]--;
                }
            } else if (waiting[p]) {
                CHECK_EQ_INT(rs_bulkhead_block_leave(blk, &P[p], (int)(rs_test_rnd() & 1)), 1);
                waiting[p]--;
            }
            break;
        case 6:
            if (rs_test_rnd() % 50 == 0) {
                /* process p dies; a new one takes its place (a new start time) */
                dead |= 1u << p;
                for (int q = 1; q <= 3; q++) {
                    rs_bulkhead_env eq = env_of(q, now + 2000);
                    if (q == p) {
                        continue;
                    }
                    rs_bulkhead_answer a = rs_bulkhead_block_acquire(blk, &eq, &slot);
                    if (a == RS_BH_ADMITTED) {
                        CHECK_EQ_INT(rs_bulkhead_block_release(blk, &P[q], slot), 1);
                    } else if (a == RS_BH_QUEUED) {
                        waiting[q]++;
                    }
                }
                /* once the lease passed every record of p is gone */
                rs_region_permit_reclaim(blk->rec, blk->b.max_concurrent + (uint32_t)blk->nwait,
                                         now + 4000, 1000, alive, NULL, NULL, NULL);
                RS_BULKHEAD_REGION_TYPE.repair(blk, NULL);
                dead &= ~(1u << p);
                P[p].start++;
                nrun[p] = nhand[p] = waiting[p] = 0;
                now += 4000;
            }
            break;
        default:
            if (rs_test_rnd() % 20 == 0) { /* an update cut short: a count not written */
                uint32_t *counts[] = {&blk->b.active, &blk->b.queued, &blk->b.handed};
                uint32_t *c = counts[rs_test_rnd() % 3];
                *c += (rs_test_rnd() & 1) ? 1 : (*c ? (uint32_t)-1 : 0);
                RS_BULKHEAD_REGION_TYPE.repair(blk, NULL);
            }
        }
        CHECK(blk->b.active <= 3 && blk->b.queued <= 4);
        uint64_t total = blk->b.admitted + blk->b.rejected + blk->b.timed_out;
        CHECK(total >= last_total);
        last_total = total;
        if (step % 500 == 0) {
            CHECK_EQ_INT(problems(base), 0);
        }
    }
    CHECK_EQ_INT(problems(base), 0);
    free(base);
}

int main(void) {
    for (uint64_t i = 0; i < 8; i++) {
        P[i].pid = i;
        P[i].start = 1000 + i;
    }
    RUN_TEST(test_params_and_mismatch);
    RUN_TEST(test_admission_and_the_line);
    RUN_TEST(test_waiting_processes_are_bounded);
    RUN_TEST(test_dead_processes_are_taken_back);
    RUN_TEST(test_repair);
    RUN_TEST(test_random_with_deaths);
    return rs_test_summary();
}
