/* test_bulkhead.c - unit tests of rs_bulkhead (csrc/core/rs_bulkhead.h). */
#include "rs_bulkhead.h"
#include "rs_test.h"

#include <stdlib.h>

static void init_ok(rs_bulkhead *b, long long max_concurrent, long long max_queue) {
    int st = rs_bulkhead_init(b, max_concurrent, max_queue);
    if (st != RS_OK) {
        RS_TEST_FAIL_("rs_bulkhead_init(%lld, %lld) returned %d", max_concurrent, max_queue, st);
    }
}

static void test_field_names_and_ranges(void) {
    CHECK_STREQ(RS_BULKHEAD_FIELDS[RS_BHF_MAX_CONCURRENT].name, "max_concurrent");
    CHECK_STREQ(RS_BULKHEAD_FIELDS[RS_BHF_MAX_QUEUE].name, "max_queue");
    CHECK(RS_BULKHEAD_FIELDS[RS_BHF_MAX_CONCURRENT].kind == RS_FIELD_INT);
    CHECK(RS_BULKHEAD_FIELDS[RS_BHF_MAX_CONCURRENT].lo == 1.0);
    CHECK(RS_BULKHEAD_FIELDS[RS_BHF_MAX_QUEUE].lo == 0.0);
    CHECK(RS_BULKHEAD_FIELDS[RS_BHF_MAX_QUEUE].hi == (double)RS_BULKHEAD_MAX);
}

static void test_init_each_bad_field(void) {
    rs_bulkhead b;
    CHECK_EQ_INT(rs_bulkhead_init(&b, 0, 0), RS_EFIELD_BASE + RS_BHF_MAX_CONCURRENT);
    CHECK_EQ_INT(rs_bulkhead_init(&b, -1, 0), RS_EFIELD_BASE + RS_BHF_MAX_CONCURRENT);
    CHECK_EQ_INT(rs_bulkhead_init(&b, (long long)RS_BULKHEAD_MAX + 1, 0),
                 RS_EFIELD_BASE + RS_BHF_MAX_CONCURRENT);
    CHECK_EQ_INT(rs_bulkhead_init(&b, 1, -1), RS_EFIELD_BASE + RS_BHF_MAX_QUEUE);
    CHECK_EQ_INT(rs_bulkhead_init(&b, 1, (long long)RS_BULKHEAD_MAX + 1),
                 RS_EFIELD_BASE + RS_BHF_MAX_QUEUE);
    CHECK_EQ_INT(rs_bulkhead_init(&b, RS_BULKHEAD_MAX, RS_BULKHEAD_MAX), RS_OK);
    CHECK_EQ_INT(rs_bulkhead_init(&b, 1, 0), RS_OK);
}

static void test_admits_up_to_the_limit_then_rejects(void) {
    rs_bulkhead b;
    init_ok(&b, 2, 0);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_try_acquire(&b), 1);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_FULL);
    CHECK_EQ_INT(rs_bulkhead_try_acquire(&b), 0);
    CHECK_EQ_INT(rs_bulkhead_try_enter(&b), 0); /* not counted */
    CHECK_EQ_U64(b.active, 2);
    CHECK_EQ_U64(b.admitted, 2);
    CHECK_EQ_U64(b.rejected, 2);
    CHECK_EQ_U64(b.peak_active, 2);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 0), RS_BH_FREED);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), RS_BH_FREED);
    CHECK_EQ_U64(b.active, 0);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), -RS_EINVAL); /* nothing to give back */
    CHECK_EQ_U64(b.active, 0);
    CHECK_EQ_U64(b.peak_active, 2);
}

static void test_line_is_bounded_and_handed_in_order(void) {
    rs_bulkhead b;
    init_ok(&b, 1, 2);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_FULL);
    CHECK_EQ_U64(b.queued, 2);
    /* without hand-off the caller is told and nothing changes */
    CHECK_EQ_INT(rs_bulkhead_release(&b, 0), RS_BH_WAITERS);
    CHECK_EQ_U64(b.active, 1);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), RS_BH_HANDED);
    CHECK_EQ_U64(b.active, 1);
    CHECK_EQ_U64(b.queued, 1);
    CHECK_EQ_U64(b.handed, 1);
    /* a newcomer cannot take the reserved slot, nor jump the line */
    CHECK_EQ_INT(rs_bulkhead_try_enter(&b), 0);
    /* the reserved slot is the woken waiter's: release cannot give it back */
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), -RS_EINVAL);
    CHECK_EQ_INT(rs_bulkhead_start(&b), RS_OK);
    CHECK_EQ_U64(b.admitted, 2);
    CHECK_EQ_INT(rs_bulkhead_start(&b), RS_EINVAL);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), RS_BH_HANDED);
    /* the second waiter is cancelled on waking: its slot is freed */
    CHECK_EQ_INT(rs_bulkhead_decline(&b), RS_BH_FREED);
    CHECK_EQ_INT(rs_bulkhead_decline(&b), -RS_EINVAL);
    CHECK_EQ_U64(b.active, 0);
    CHECK_EQ_U64(b.admitted, 2);
    CHECK_EQ_U64(b.rejected, 1);
}

static void test_decline_hands_on_to_the_next_waiter(void) {
    rs_bulkhead b;
    init_ok(&b, 1, 3);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 1), RS_BH_HANDED);
    CHECK_EQ_INT(rs_bulkhead_decline(&b), RS_BH_HANDED);
    CHECK_EQ_U64(b.queued, 0);
    CHECK_EQ_U64(b.handed, 1);
    CHECK_EQ_INT(rs_bulkhead_start(&b), RS_OK);
    CHECK_EQ_U64(b.admitted, 2);
}

static void test_leave_counts_timeouts_only(void) {
    rs_bulkhead b;
    init_ok(&b, 1, 2);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_ADMITTED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_acquire(&b), RS_BH_QUEUED);
    CHECK_EQ_INT(rs_bulkhead_leave(&b, 1), RS_OK);
    CHECK_EQ_INT(rs_bulkhead_leave(&b, 0), RS_OK);
    CHECK_EQ_INT(rs_bulkhead_leave(&b, 1), RS_EINVAL);
    CHECK_EQ_U64(b.timed_out, 1);
    CHECK_EQ_U64(b.queued, 0);
    CHECK_EQ_INT(rs_bulkhead_release(&b, 0), RS_BH_FREED);
}

/* Random operations keep the invariants and account for every caller. */
static void test_random_operations_keep_the_invariants(void) {
    rs_bulkhead b;
    init_ok(&b, 3, 4);
    srand(12345);
    uint64_t callers = 0, running = 0, waiting = 0, handed = 0, left_cancelled = 0,
             declined = 0;
    for (int i = 0; i < 200000; i++) {
        switch (rand() % 7) {
        case 0: {
            callers++;
            int a = rs_bulkhead_acquire(&b);
            running += a == RS_BH_ADMITTED;
            waiting += a == RS_BH_QUEUED;
            break;
        }
        case 1:
            callers++;
            running += (uint64_t)rs_bulkhead_try_acquire(&b);
            break;
        case 2:
        case 3:
            if (running) {
                int r = rs_bulkhead_release(&b, 1);
                CHECK(r == RS_BH_FREED || r == RS_BH_HANDED);
                running--;
                if (r == RS_BH_HANDED) {
                    waiting--;
                    handed++;
                }
            }
            break;
        case 4:
            if (handed) {
                CHECK_EQ_INT(rs_bulkhead_start(&b), RS_OK);
                handed--;
                running++;
            }
            break;
        case 5:
            if (handed) {
                int r = rs_bulkhead_decline(&b);
                declined++;
                handed--;
                if (r == RS_BH_HANDED) {
                    waiting--;
                    handed++;
                }
            }
            break;
        default:
            if (waiting) {
                int timed_out = rand() % 2;
                CHECK_EQ_INT(rs_bulkhead_leave(&b, timed_out), RS_OK);
                left_cancelled += !timed_out;
                waiting--;
            }
            break;
        }
        if (b.active != running + handed || b.queued != waiting || b.handed != handed ||
            b.active > b.max_concurrent || b.queued > b.max_queue) {
            RS_TEST_FAIL_("step %d: active %u queued %u handed %u", i, b.active, b.queued,
                          b.handed);
            return;
        }
    }
    CHECK_EQ_U64(b.admitted + b.rejected + b.timed_out + left_cancelled + declined + waiting +
                     handed,
                 callers);
    CHECK(b.peak_active == 3);
}

int main(void) {
    RUN_TEST(test_field_names_and_ranges);
    RUN_TEST(test_init_each_bad_field);
    RUN_TEST(test_admits_up_to_the_limit_then_rejects);
    RUN_TEST(test_line_is_bounded_and_handed_in_order);
    RUN_TEST(test_decline_hands_on_to_the_next_waiter);
    RUN_TEST(test_leave_counts_timeouts_only);
    RUN_TEST(test_random_operations_keep_the_invariants);
    return rs_test_summary();
}
