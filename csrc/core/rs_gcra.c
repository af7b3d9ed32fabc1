/* rs_gcra.c - GCRA rate limiting on integer ticks; see rs_gcra.h. */
#include "rs_gcra.h"

#include <math.h>
#include <string.h>

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

/* ---- a limiter in a region ---------------------------------------------- */

rs_status rs_gcra_params(double rate, uint64_t per_ns, uint64_t burst, uint64_t max_keys,
                         uint64_t params[RS_REGION_PARAMS]) {
    rs_gcra g;
    rs_status rc = rs_gcra_init(&g, rate, per_ns, burst);
    if (rc != RS_OK) {
        return rc;
    }
    for (unsigned i = 0; i < RS_REGION_PARAMS; i++) {
        params[i] = 0;
    }
    memcpy(&params[0], &rate, sizeof rate);
    params[1] = per_ns;
    params[2] = burst;
    params[3] = max_keys;
    return RS_OK;
}

/* The settings the parameters make, or 0 when they are not a limiter's
 * (they may come from a damaged file). */
static int block_config(const uint64_t *params, rs_gcra *g, uint64_t *nsets) {
    double rate;
    memcpy(&rate, &params[0], sizeof rate);
    uint64_t max_keys = params[3];
    if (max_keys < 1 || max_keys > RS_DEDUP_MAX_CAPACITY ||
        rs_gcra_init(g, rate, params[1], params[2]) != RS_OK) {
        return 0;
    }
    for (unsigned i = 4; i < RS_REGION_PARAMS; i++) {
        if (params[i]) {
            return 0;
        }
    }
    *nsets = 2 * ((max_keys + RS_GCRA_WAYS - 1) / RS_GCRA_WAYS);
    return 1;
}

static uint64_t block_size(const uint64_t *params) {
    rs_gcra g;
    uint64_t nsets;
    if (!block_config(params, &g, &nsets)) {
        return UINT64_MAX;
    }
    return sizeof(rs_gcra_block) + nsets * RS_GCRA_WAYS * sizeof(rs_gcra_slot);
}

static void block_init(void *block, const uint64_t *params) {
    rs_gcra_block *blk = block;
    uint64_t nsets = 0;
    block_config(params, &blk->g, &nsets);
    blk->nsets = nsets;
    blk->max_keys = params[3];
    rs_region_mutex_init(&blk->lock);
}

static uint64_t used_slots(const rs_gcra_block *blk) {
    uint64_t n = 0;
    for (uint64_t i = 0; i < blk->nsets * RS_GCRA_WAYS; i++) {
        n += (blk->slot[i].d0 | blk->slot[i].d1) != 0;
    }
    return n;
}

static int block_check(const void *block, uint64_t size, const uint64_t *params,
                       void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_gcra_block *blk = block;
    rs_gcra g;
    uint64_t nsets;
    if (!block_config(params, &g, &nsets) || size != block_size(params)) {
        report(ctx, "rate limiter: parameters or block size invalid");
        return 1;
    }
    if (blk->g.a != g.a || blk->g.b != g.b || blk->g.burst != g.burst || blk->g.tau != g.tau ||
        blk->nsets != nsets || blk->max_keys != params[3]) {
        report(ctx, "rate limiter: settings differ from its parameters");
        return 1;
    }
    return 0;
}

/* Run after block_check passed: the settings are the parameters'. */
static int block_check_state(const void *block, const uint64_t *params,
                             void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_gcra_block *blk = block;
    uint64_t tau = blk->g.tau, nsets = blk->nsets;
    int n = 0;
    (void)params;
    if (blk->g.debt > tau) {
        report(ctx, "rate limiter: the keyless bucket's debt exceeds burst");
        n++;
    }
    uint64_t used = 0, over = 0, dup = 0;
    for (uint64_t s = 0; s < nsets; s++) {
        const rs_gcra_slot *set = &blk->slot[s * RS_GCRA_WAYS];
        for (unsigned i = 0; i < RS_GCRA_WAYS; i++) {
            if ((set[i].d0 | set[i].d1) == 0) {
                continue;
            }
            used++;
            over += set[i].debt > tau;
            for (unsigned j = 0; j < i; j++) {
                dup += set[j].d0 == set[i].d0 && set[j].d1 == set[i].d1;
            }
        }
    }
    if (over) {
        report(ctx, "rate limiter: a key's debt exceeds burst");
        n++;
    }
    if (dup) {
        report(ctx, "rate limiter: a key is held twice");
        n++;
    }
    if (used != blk->keys) {
        report(ctx, "rate limiter: the count of keys differs from the keys held");
        n++;
    }
    return n;
}

/* Clamps every debt to tau, empties a slot holding a digest an earlier
 * slot of its set holds (only damage makes one), and recounts the keys. */
static void block_repair(void *block, const uint64_t *params) {
    rs_gcra_block *blk = block;
    (void)params;
    if (blk->g.debt > blk->g.tau) {
        blk->g.debt = blk->g.tau;
    }
    for (uint64_t s = 0; s < blk->nsets; s++) {
        rs_gcra_slot *set = &blk->slot[s * RS_GCRA_WAYS];
        for (unsigned i = 0; i < RS_GCRA_WAYS; i++) {
            if (set[i].debt > blk->g.tau) {
                set[i].debt = blk->g.tau;
            }
            for (unsigned j = 0; j < i && (set[i].d0 | set[i].d1) != 0; j++) {
                if (set[j].d0 == set[i].d0 && set[j].d1 == set[i].d1) {
                    set[i] = (rs_gcra_slot){0};
                }
            }
        }
    }
    blk->keys = used_slots(blk);
}

const rs_region_type RS_GCRA_REGION_TYPE = {
    RS_GCRA_TAG,       "rate limiter", block_size, block_init, block_check,
    block_check_state, block_repair,
    NULL, /* no permits held by processes */
};

/* The two sets a digest may live in (the same one when they coincide). */
static rs_gcra_slot *set_of(const rs_gcra_block *blk, uint64_t d) {
    return (rs_gcra_slot *)&blk->slot[(d % blk->nsets) * RS_GCRA_WAYS];
}

static rs_gcra_slot *find(const rs_gcra_block *blk, uint64_t d0, uint64_t d1) {
    rs_gcra_slot *set = set_of(blk, d0);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < RS_GCRA_WAYS; i++) {
            if (set[i].d0 == d0 && set[i].d1 == d1) {
                return &set[i];
            }
        }
        rs_gcra_slot *other = set_of(blk, d1);
        if (other == set) {
            break;
        }
        set = other;
    }
    return NULL;
}

int rs_gcra_block_take(rs_gcra_block *blk, uint64_t d0, uint64_t d1, uint64_t now_ns,
                       uint64_t cost) {
    rs_gcra *g = &blk->g;
    rs_gcra_slot *e = find(blk, d0, d1);
    if (e) {
        return rs_gcra_take(g, &e->t_ns, &e->debt, now_ns, cost);
    }
    /* A new key has a full bucket: it is recorded only when admitted. */
    uint64_t t = 0, debt = 0;
    if (!rs_gcra_take(g, &t, &debt, now_ns, cost)) {
        return 0;
    }
    /* Of its two sets: a slot whose bucket is full again, else an empty
     * slot of the set holding fewer keys, else the slot of the key admitted
     * least recently in either. */
    rs_gcra_slot *sets[2] = {set_of(blk, d0), set_of(blk, d1)};
    rs_gcra_slot *empty[2] = {NULL, NULL}, *full = NULL, *oldest = NULL;
    unsigned held[2] = {0, 0};
    for (unsigned k = 0; k < 2 && !full; k++) {
        for (unsigned i = 0; i < RS_GCRA_WAYS; i++) {
            rs_gcra_slot *s = &sets[k][i];
            if ((s->d0 | s->d1) == 0) {
                empty[k] = empty[k] ? empty[k] : s;
            } else if (rs_gcra_debt_at(g, s->t_ns, s->debt, now_ns) == 0) {
                full = s;
                break;
            } else {
                held[k]++;
                if (!oldest || s->t_ns < oldest->t_ns) {
                    oldest = s;
                }
            }
        }
    }
    if (full) {
        e = full;
    } else if (empty[0] || empty[1]) {
        e = !empty[1] || (empty[0] && held[0] <= held[1]) ? empty[0] : empty[1];
        blk->keys++;
    } else {
        e = oldest;
    }
    e->t_ns = t;
    e->debt = debt;
    e->d0 = d0;
    e->d1 = d1;
    return 1;
}

uint64_t rs_gcra_block_wait(const rs_gcra_block *blk, uint64_t d0, uint64_t d1, uint64_t now_ns,
                            uint64_t cost) {
    const rs_gcra_slot *e = find(blk, d0, d1);
    return e ? rs_gcra_wait_ns(&blk->g, e->t_ns, e->debt, now_ns, cost)
             : rs_gcra_wait_ns(&blk->g, 0, 0, now_ns, cost);
}

uint64_t rs_gcra_block_live(const rs_gcra_block *blk, uint64_t now_ns) {
    uint64_t n = 0;
    for (uint64_t i = 0; i < blk->nsets * RS_GCRA_WAYS; i++) {
        const rs_gcra_slot *s = &blk->slot[i];
        n += (s->d0 | s->d1) != 0 && rs_gcra_debt_at(&blk->g, s->t_ns, s->debt, now_ns) != 0;
    }
    return n;
}
