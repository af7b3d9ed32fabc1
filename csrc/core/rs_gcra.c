/* rs_gcra.c - GCRA rate limiting on integer ticks; see rs_gcra.h. */
#include "rs_gcra.h"

#include <math.h>

const rs_field RS_GCRA_FIELDS[RS_GCF_COUNT] = {
    {"rate", RS_FIELD_NUMBER, 1e-6, 1e12, 0, NULL},
    {"per", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL},
    {"burst", RS_FIELD_INT, 1, 1e15, 0,
     "with burst * per / rate at most 9.2e9 s"},
    {"max_keys", RS_FIELD_INT, 1, RS_DEDUP_MAX_CAPACITY, 0, NULL},
};

static uint64_t gcd(uint64_t x, uint64_t y) {
    while (y) {
        uint64_t t = x % y;
        x = y;
        y = t;
    }
    return x;
}

/* The fraction p / q nearest to x with q <= RS_GCRA_MAX_DEN, by continued
 * fractions (x > 0). */
static void to_fraction(double x, uint64_t *p, uint64_t *q) {
    uint64_t h0 = 0, h1 = 1, k0 = 1, k1 = 0;
    double v = x;
    for (int i = 0; i < 64; i++) {
        double a = floor(v);
        if (a > 9007199254740992.0) {
            break;
        }
        uint64_t ai = (uint64_t)a;
        if ((k1 && ai > (RS_GCRA_MAX_DEN - k0) / k1) || (h1 && ai > (UINT64_MAX - h0) / h1)) {
            break;
        }
        uint64_t h2 = ai * h1 + h0, k2 = ai * k1 + k0;
        h0 = h1, h1 = h2, k0 = k1, k1 = k2;
        double frac = v - a;
        if (frac < 1e-9 || fabs((double)h1 / (double)k1 - x) <= x * 1e-15) {
            break;
        }
        v = 1.0 / frac;
    }
    *p = h1;
    *q = k1;
}

rs_status rs_gcra_init(rs_gcra *g, double rate, uint64_t per_ns, uint64_t burst) {
    *g = (rs_gcra){0};
    if (!rs_field_ok(&RS_GCRA_FIELDS[RS_GCF_RATE], rate)) {
        return RS_EFIELD_BASE + RS_GCF_RATE;
    }
    uint64_t p, q;
    to_fraction(rate, &p, &q);
    if (p == 0 || q == 0) {
        return RS_EFIELD_BASE + RS_GCF_RATE;
    }
    if (per_ns == 0) {
        return RS_EFIELD_BASE + RS_GCF_PER;
    }
    uint64_t d = gcd(per_ns, p), a = per_ns / d, b = p / d; /* gcd(q, p) is 1 */
    if (a > RS_GCRA_MAX_TICKS / q) {
        return RS_EFIELD_BASE + RS_GCF_BURST; /* one token alone outlasts the clock */
    }
    a *= q;
    if (burst == 0 || burst > RS_GCRA_MAX_TICKS / a ||
        (double)(burst * a / b) > RS_MAX_SECONDS * 1e9) {
        return RS_EFIELD_BASE + RS_GCF_BURST;
    }
    g->a = a;
    g->b = b;
    g->burst = burst;
    g->tau = burst * a;
    return RS_OK;
}

uint64_t rs_gcra_wait_ns(const rs_gcra *g, uint64_t t_ns, uint64_t debt, uint64_t now_ns,
                         uint64_t cost) {
    uint64_t need = rs_gcra_debt_at(g, t_ns, debt, now_ns) + cost * g->a;
    if (need <= g->tau) {
        return 0;
    }
    uint64_t over = need - g->tau;
    return over / g->b + (over % g->b != 0);
}

uint64_t rs_gcra_tokens(const rs_gcra *g, uint64_t t_ns, uint64_t debt, uint64_t now_ns) {
    return (g->tau - rs_gcra_debt_at(g, t_ns, debt, now_ns)) / g->a;
}

rs_status rs_gcra_keys_init(const rs_gcra *g, rs_dedup *keys, uint32_t max_keys, rs_key_eq eq,
                            rs_key_release release, void *ctx) {
    uint64_t ttl = g->tau / g->b + (g->tau % g->b != 0);
    return rs_dedup_init(keys, ttl ? ttl : 1, max_keys, eq, release, ctx);
}

int rs_gcra_take_key(rs_gcra *g, rs_dedup *keys, uint64_t hash, void *key, uint64_t now_ns,
                     uint64_t cost, int *stored) {
    uint32_t idx;
    int r = rs_dedup_find_or_add(keys, hash, key, now_ns, stored, &idx);
    if (r < 0) {
        return r;
    }
    /* From here on, plain arithmetic: no comparison runs before the write. */
    rs_dedup_entry *e = &keys->pool[idx];
    uint64_t t = e->t_ns;
    if (!rs_gcra_take(g, &t, &keys->words[idx], now_ns, cost)) {
        return 0;
    }
    rs_dedup_touch(keys, idx, t);
    return 1;
}

int64_t rs_gcra_wait_key(const rs_gcra *g, rs_dedup *keys, uint64_t hash, void *key,
                         uint64_t now_ns, uint64_t cost) {
    uint32_t idx;
    int r = rs_dedup_lookup(keys, hash, key, now_ns, &idx);
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        return (int64_t)rs_gcra_wait_ns(g, 0, 0, now_ns, cost);
    }
    const rs_dedup_entry *e = &keys->pool[idx];
    return (int64_t)rs_gcra_wait_ns(g, e->t_ns, keys->words[idx], now_ns, cost);
}
