/* rs_backoff.c - exponential backoff with jitter. */
#include "rs_backoff.h"

#include <math.h>

const rs_field RS_BACKOFF_FIELDS[RS_BOF_COUNT] = {
    {"base", RS_FIELD_SECONDS, 0.0, INFINITY, 0, NULL},
    {"multiplier", RS_FIELD_NUMBER, 1.0, INFINITY, 0, NULL},
    {"max_delay", RS_FIELD_SECONDS, 0.0, INFINITY, 0, ">= base"},
    {"jitter", RS_FIELD_INT, 0.0, RS_JITTER_COUNT - 1, 0, NULL},
};

static const char *const JITTERS[RS_JITTER_COUNT] = {"none", "full", "equal", "decorrelated"};

const char *rs_jitter_name(int jitter) {
    return jitter >= 0 && jitter < RS_JITTER_COUNT ? JITTERS[jitter] : NULL;
}

int rs_backoff_init(rs_backoff *b, double base, double multiplier, double max_delay, int jitter,
                    uint64_t seed) {
    const rs_field *f = RS_BACKOFF_FIELDS;
    if (!rs_field_ok(&f[RS_BOF_BASE], base)) return RS_EFIELD_BASE + RS_BOF_BASE;
    if (!rs_field_ok(&f[RS_BOF_MULTIPLIER], multiplier)) return RS_EFIELD_BASE + RS_BOF_MULTIPLIER;
    if (!(rs_field_ok(&f[RS_BOF_MAX_DELAY], max_delay) && max_delay >= base))
        return RS_EFIELD_BASE + RS_BOF_MAX_DELAY;
    if (!rs_field_ok(&f[RS_BOF_JITTER], jitter)) return RS_EFIELD_BASE + RS_BOF_JITTER;
    b->base = base;
    b->multiplier = multiplier;
    b->max_delay = max_delay;
    b->jitter = jitter;
    b->rng = seed;
    return RS_OK;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double rs_backoff_uniform(rs_backoff *b) {
    /* 53 random bits + 1, scaled: (0, 1] in steps of 2**-53. */
    return (double)((splitmix64(&b->rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

double rs_backoff_raw(const rs_backoff *b, uint64_t attempt) {
    if (b->base == 0.0) {
        return 0.0;
    }
    double e = (double)(attempt > 63 ? 63 : attempt);
    double d = b->base * pow(b->multiplier, e); /* may be +inf: capped below */
    return d < b->max_delay ? d : b->max_delay;
}

double rs_backoff_delay(rs_backoff *b, uint64_t attempt, double prev) {
    double d = rs_backoff_raw(b, attempt);
    switch (b->jitter) {
    case RS_JITTER_FULL: {
        /* Rounding (a subnormal d, or the smallest draw) must not close the
         * open end of (0, d]. */
        double j = d * rs_backoff_uniform(b);
        d = j > 0.0 || d == 0.0 ? j : nextafter(0.0, 1.0);
        break;
    }
    case RS_JITTER_EQUAL: {
        /* ... nor of (d/2, d]. */
        double half = 0.5 * d;
        double j = half + 0.5 * d * rs_backoff_uniform(b);
        if (j <= half && d > 0.0) {
            j = nextafter(half, INFINITY);
            j = j < d ? j : d;
        }
        d = j;
        break;
    }
    case RS_JITTER_DECORRELATED: {
        if (!(prev >= 0.0)) { /* not given (or NaN) */
            prev = attempt == 0 ? b->base : rs_backoff_raw(b, attempt - 1);
        }
        double hi = 3.0 * prev; /* prev <= max_delay or caller's: may be inf */
        if (!(hi >= b->base)) {
            hi = b->base;
        }
        if (hi > b->max_delay) {
            hi = b->max_delay;
        }
        d = b->base + (hi - b->base) * rs_backoff_uniform(b);
        break;
    }
    default:
        break;
    }
    return d < b->max_delay ? d : b->max_delay;
}
