/* rs_region_test.h - what the C tests of region blocks share: a fixed
 * secret for keyed digests, a lock deadline that never passes, the random
 * sequence, and a problem reporter that counts. */
#ifndef RS_REGION_TEST_H
#define RS_REGION_TEST_H

#include <stdint.h>
#include <time.h>

#include "rs_test.h"

static const uint64_t SECRET[2] = {0x0123456789abcdefu, 0xfedcba9876543210u};
static const struct timespec FAR = {INT32_MAX, 0};
#define rnd rs_test_rnd

/* An rs_region check reporter: counts the problems in *(int *)ctx. */
static inline void quiet(void *ctx, const char *problem) {
    (void)problem;
    (*(int *)ctx)++;
}

#endif /* RS_REGION_TEST_H */
