/* rs_rate.c - sliding-window event-rate counter over a ring of times. */
#include "rs_rate.h"

#include <string.h>

static const char *const FIELDS[RS_RTF_COUNT][2] = {
    {"threshold", "an int in [1, 16777216]"},
    {"window", "> 0 (at least 1 ns)"},
};

const char *rs_rate_field_name(int field) {
    return field >= 0 && field < RS_RTF_COUNT ? FIELDS[field][0] : NULL;
}

const char *rs_rate_field_range(int field) {
    return field >= 0 && field < RS_RTF_COUNT ? FIELDS[field][1] : NULL;
}

/* The ring is in time order and never holds a time after last_ns. Checks the
 * ends only, so a debug build stays O(1) per operation with a large ring. */
#ifdef RS_DEBUG
static void check_consistent(const rs_rate *r) {
    RS_ASSERT(r->len <= r->threshold && (r->len == 0 || r->head < r->threshold));
    if (r->len) {
        uint32_t last = r->head + r->len - 1;
        if (last >= r->threshold) {
            last -= r->threshold;
        }
        RS_ASSERT(r->times[r->head] <= r->times[last] && r->times[last] <= r->last_ns);
    }
}
#define ASSERT_CONSISTENT(r) check_consistent(r)
#else
#define ASSERT_CONSISTENT(r) ((void)0)
#endif

int rs_rate_init(rs_rate *r, uint64_t threshold, uint64_t window_ns) {
    memset(r, 0, sizeof *r);
    if (threshold < 1 || threshold > RS_RATE_MAX_THRESHOLD) {
        return RS_EFIELD_BASE + RS_RTF_THRESHOLD;
    }
    if (window_ns < 1) {
        return RS_EFIELD_BASE + RS_RTF_WINDOW;
    }
    /* Never read before written (len tracks that), so not zeroed: the pages of
     * a large ring are touched only as events arrive. */
    r->times = rs_alloc((size_t)threshold * sizeof(uint64_t));
    if (!r->times) {
        return RS_ENOMEM;
    }
    r->threshold = (uint32_t)threshold;
    r->window_ns = window_ns;
    return RS_OK;
}

void rs_rate_free(rs_rate *r) {
    rs_free(r->times);
    r->times = NULL;
    r->head = 0;
    r->len = 0;
}

RS_INLINE uint64_t clamp_now(rs_rate *r, uint64_t now_ns) {
    if (RS_UNLIKELY(now_ns < r->last_ns)) {
        return r->last_ns;
    }
    r->last_ns = now_ns;
    return now_ns;
}

bool rs_rate_hit(rs_rate *r, uint64_t now_ns) {
    uint64_t now = clamp_now(r, now_ns);
    if (r->len < r->threshold) {
        /* Fewer kept than threshold, so fewer count. */
        uint32_t tail = r->head + r->len;
        if (tail >= r->threshold) {
            tail -= r->threshold;
        }
        r->times[tail] = now;
        r->len++;
    } else if (now - r->times[r->head] >= r->window_ns) {
        /* Full and the oldest has aged out: at most threshold - 1 count.
         * Its slot becomes the newest (the tail of a full ring is its head). */
        r->times[r->head] = now;
        r->head = r->head + 1 == r->threshold ? 0 : r->head + 1;
    } else {
        /* Full and the oldest still counts: so do all the later ones. */
        r->refused++;
        ASSERT_CONSISTENT(r);
        return false;
    }
    r->accepted++;
    ASSERT_CONSISTENT(r);
    return true;
}

uint64_t rs_rate_count(rs_rate *r, uint64_t now_ns) {
    uint64_t now = clamp_now(r, now_ns);
    /* Binary search for the first kept time that still counts: the times are
     * in order, so the aged-out ones are a prefix. */
    uint32_t lo = 0, hi = r->len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t k = r->head + mid;
        if (k >= r->threshold) {
            k -= r->threshold;
        }
        if (now - r->times[k] >= r->window_ns) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    r->head += lo;
    if (r->head >= r->threshold) {
        r->head -= r->threshold;
    }
    r->len -= lo;
    ASSERT_CONSISTENT(r);
    return r->len;
}

void rs_rate_reset(rs_rate *r) {
    r->head = 0;
    r->len = 0;
    r->accepted = 0;
    r->refused = 0;
}
