/* rs_test.h - a tiny assertion harness for the C unit tests of csrc/core.
 *
 * Each CHECK* counts one pass or one failure; a failure prints
 * file:line, the running test and the values. rs_test_summary() prints the
 * final line "N passed, M failed" and returns the process exit code. */
#ifndef RS_TEST_H
#define RS_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static unsigned long rs_test_passed;
static unsigned long rs_test_failed;
static const char *rs_test_current = "(none)";

#define RS_TEST_FAIL_(...)                                                      \
    do {                                                                       \
        rs_test_failed++;                                                      \
        printf("%s:%d: [%s] ", __FILE__, __LINE__, rs_test_current);           \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
        fflush(stdout);                                                        \
    } while (0)

#define CHECK(cond)                                                             \
    do {                                                                       \
        if (cond) {                                                            \
            rs_test_passed++;                                                  \
        } else {                                                               \
            RS_TEST_FAIL_("CHECK(%s) failed", #cond);                          \
        }                                                                      \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                      \
    do {                                                                       \
        uint64_t rs_a_ = (uint64_t)(a), rs_b_ = (uint64_t)(b);                 \
        if (rs_a_ == rs_b_) {                                                  \
            rs_test_passed++;                                                  \
        } else {                                                               \
            RS_TEST_FAIL_("CHECK_EQ_U64(%s, %s): %" PRIu64 " != %" PRIu64, #a,  \
                          #b, rs_a_, rs_b_);                                   \
        }                                                                      \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                      \
    do {                                                                       \
        long long rs_a_ = (long long)(a), rs_b_ = (long long)(b);              \
        if (rs_a_ == rs_b_) {                                                  \
            rs_test_passed++;                                                  \
        } else {                                                               \
            RS_TEST_FAIL_("CHECK_EQ_INT(%s, %s): %lld != %lld", #a, #b, rs_a_, \
                          rs_b_);                                              \
        }                                                                      \
    } while (0)

/* Fails on NaN as well as on |a - b| > eps. */
#define CHECK_NEAR(a, b, eps)                                                   \
    do {                                                                       \
        double rs_a_ = (double)(a), rs_b_ = (double)(b);                       \
        if (fabs(rs_a_ - rs_b_) <= (double)(eps)) {                            \
            rs_test_passed++;                                                  \
        } else {                                                               \
            RS_TEST_FAIL_("CHECK_NEAR(%s, %s, %s): %.17g vs %.17g", #a, #b,    \
                          #eps, rs_a_, rs_b_);                                 \
        }                                                                      \
    } while (0)

#define CHECK_STREQ(a, b)                                                       \
    do {                                                                       \
        const char *rs_a_ = (a), *rs_b_ = (b);                                 \
        if (rs_a_ && rs_b_ && strcmp(rs_a_, rs_b_) == 0) {                     \
            rs_test_passed++;                                                  \
        } else {                                                               \
            RS_TEST_FAIL_("CHECK_STREQ(%s, %s): \"%s\" vs \"%s\"", #a, #b,     \
                          rs_a_ ? rs_a_ : "(null)", rs_b_ ? rs_b_ : "(null)");  \
        }                                                                      \
    } while (0)

/* Runs one test function, naming it in any failure message. */
#define RUN_TEST(fn)                                                            \
    do {                                                                       \
        rs_test_current = #fn;                                                 \
        unsigned long rs_before_ = rs_test_failed;                             \
        fn();                                                                  \
        printf("%s %s\n", rs_test_failed == rs_before_ ? "ok  " : "FAIL", #fn); \
        fflush(stdout);                                                        \
    } while (0)

/* A fixed pseudo-random sequence (splitmix64), the same on every run. */
static uint64_t rs_test_seed = 0x9e3779b97f4a7c15u;
static inline uint64_t rs_test_rnd(void) {
    uint64_t z = (rs_test_seed += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Prints the summary line and returns the exit code (non-zero on failure). */
static inline int rs_test_summary(void) {
    printf("%lu passed, %lu failed\n", rs_test_passed, rs_test_failed);
    fflush(stdout);
    return rs_test_failed ? 1 : 0;
}

#endif /* RS_TEST_H */
