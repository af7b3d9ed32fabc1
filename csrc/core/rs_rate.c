/* rs_rate.c - sliding-window event-rate counter over a growable ring of times. */
#include "rs_rate.h"

#include <string.h>

const rs_field RS_RATE_FIELDS[RS_RTF_COUNT] = {
    {"threshold", RS_FIELD_INT, 1, RS_RATE_MAX_THRESHOLD, 0, NULL},
    {"window", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL},
};

/* The ring is in time order and never holds a time after last_ns. Checks the
 * ends only, so a debug build stays O(1) per operation with a large ring. */
#ifdef RS_DEBUG
static void check_consistent(const rs_rate *r) {
    RS_ASSERT(r->len <= r->cap && r->cap <= r->threshold);
    RS_ASSERT((r->cap == 0) == (r->times == NULL));
    RS_ASSERT(r->cap == 0 ? r->head == 0 : r->head < r->cap);
    if (r->len) {
        uint32_t last = r->head + r->len - 1;
        if (last >= r->cap) {
            last -= r->cap;
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
    if (!rs_field_ok(&RS_RATE_FIELDS[RS_RTF_THRESHOLD], (double)threshold)) {
        return RS_EFIELD_BASE + RS_RTF_THRESHOLD;
    }
    if (window_ns < 1) {
        return RS_EFIELD_BASE + RS_RTF_WINDOW;
    }
    r->threshold = (uint32_t)threshold;
    r->window_ns = window_ns;
    return RS_OK;
}

void rs_rate_free(rs_rate *r) {
    rs_free(r->times);
    r->times = NULL;
    r->cap = 0;
    r->head = 0;
    r->len = 0;
}

/* Moves the kept times into a new ring of new_cap >= len slots, oldest at 0.
 * RS_ENOMEM leaves everything as it was. */
static int resize(rs_rate *r, uint32_t new_cap) {
    uint64_t *times = rs_alloc((size_t)new_cap * sizeof(uint64_t));
    if (!times) {
        return RS_ENOMEM;
    }
    if (r->len) {
        uint32_t first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
        memcpy(times, r->times + r->head, (size_t)first * sizeof(uint64_t));
        memcpy(times + first, r->times, (size_t)(r->len - first) * sizeof(uint64_t));
    }
    rs_free(r->times);
    r->times = times;
    r->cap = new_cap;
    r->head = 0;
    return RS_OK;
}

/* Doubles the ring (or makes the first one), up to threshold slots. */
static int grow(rs_rate *r) {
    uint32_t want = r->cap ? 2 * r->cap : RS_RATE_MIN_CAP; /* cap <= 2^24: no overflow */
    return resize(r, want < r->threshold ? want : r->threshold);
}

RS_INLINE uint64_t clamped(const rs_rate *r, uint64_t now_ns) {
    return RS_UNLIKELY(now_ns < r->last_ns) ? r->last_ns : now_ns;
}

int rs_rate_hit(rs_rate *r, uint64_t now_ns) {
    uint64_t now = clamped(r, now_ns);
    if (r->len == r->cap && r->len > 0 && now - r->times[r->head] >= r->window_ns) {
        /* Every slot is used and the oldest has aged out: at most len - 1 <
         * threshold count. Its slot becomes the newest (the tail of a full
         * ring is its head). */
        r->times[r->head] = now;
        r->head = r->head + 1 == r->cap ? 0 : r->head + 1;
    } else if (r->len < r->threshold) {
        /* Fewer kept than threshold, so fewer count. */
        if (r->len == r->cap && grow(r) != RS_OK) {
            ASSERT_CONSISTENT(r);
            return RS_ENOMEM;
        }
        uint32_t tail = r->head + r->len;
        if (tail >= r->cap) {
            tail -= r->cap;
        }
        r->times[tail] = now;
        r->len++;
    } else {
        /* threshold kept and the oldest still counts: so do all the later ones. */
        r->last_ns = now;
        r->refused++;
        ASSERT_CONSISTENT(r);
        return RS_EREJECTED;
    }
    r->last_ns = now;
    r->accepted++;
    ASSERT_CONSISTENT(r);
    return RS_OK;
}

int rs_rate_reserve(rs_rate *r, uint64_t now_ns) {
    /* A later hit grows only a ring that is full, below threshold, whose
     * oldest time still counts; if the oldest has aged out at now it stays
     * aged out, and a count in between leaves free slots (it drops times or
     * shrinks to twice what it keeps). */
    if (r->len == r->cap && r->cap < r->threshold
        && (r->len == 0 || clamped(r, now_ns) - r->times[r->head] < r->window_ns)) {
        return grow(r);
    }
    return RS_OK;
}

uint64_t rs_rate_count(rs_rate *r, uint64_t now_ns) {
    uint64_t now = clamped(r, now_ns);
    r->last_ns = now;
    /* Binary search for the first kept time that still counts: the times are
     * in order, so the aged-out ones are a prefix. */
    uint32_t lo = 0, hi = r->len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t k = r->head + mid;
        if (k >= r->cap) {
            k -= r->cap;
        }
        if (now - r->times[k] >= r->window_ns) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    r->head += lo;
    if (r->head >= r->cap) {
        r->head -= r->cap;
    }
    r->len -= lo;
    if (r->len == 0) {
        r->head = 0;
    }
    /* Three quarters free: halve or more, keeping room for twice what is
     * kept (so the next hit never needs to grow). Best effort: a failed
     * allocation leaves the larger ring. */
    if (r->cap > RS_RATE_MIN_CAP && (uint64_t)r->len * 4 <= r->cap) {
        uint32_t want = 2 * r->len;
        (void)resize(r, want > RS_RATE_MIN_CAP ? want : RS_RATE_MIN_CAP);
    }
    ASSERT_CONSISTENT(r);
    return r->len;
}

void rs_rate_reset(rs_rate *r) {
    rs_rate_free(r);
    r->accepted = 0;
    r->refused = 0;
}

size_t rs_rate_memory(const rs_rate *r) {
    return (size_t)r->cap * sizeof(uint64_t);
}
