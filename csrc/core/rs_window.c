/* rs_window.c - outcome windows and the latency ring. */
#include "rs_window.h"

#include <math.h>
#include <string.h>

const rs_field RS_WINDOW_FIELDS[RS_WNF_COUNT] = {
    {"window", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL},
    {"slots", RS_FIELD_INT, 1, RS_WINDOW_MAX_BUCKETS, 0, NULL},
};

static void reset_counts(rs_window *w) {
    w->pos = 0;
    w->filled = 0;
    w->period_n = 0;
    w->period_f = 0;
    memset(w->buckets, 0, (size_t)w->nbuckets * sizeof w->buckets[0]);
    w->total = 0;
    w->failures = 0;
    w->slow = 0;
}

rs_status rs_window_init_count_at(rs_window *w, uint32_t size, uint8_t *ring) {
    memset(w, 0, sizeof *w);
    if (size < 1 || size > RS_WINDOW_MAX_SIZE) {
        return RS_EINVAL;
    }
    w->ring = ring;
    w->size = size;
    w->period = size / 10 ? size / 10 : 1;
    return RS_OK;
}

rs_status rs_window_init_count(rs_window *w, uint32_t size) {
    rs_status st = rs_window_init_count_at(w, size, NULL);
    if (st != RS_OK) {
        return st;
    }
    w->ring = rs_calloc(size, 1);
    return w->ring ? RS_OK : RS_ENOMEM;
}

rs_status rs_window_init_buckets(rs_window *w, uint64_t duration_ns, uint32_t nbuckets,
                                 uint64_t now_ns) {
    memset(w, 0, sizeof *w);
    if (nbuckets < 1 || nbuckets > RS_WINDOW_MAX_BUCKETS || duration_ns < nbuckets) {
        return RS_EINVAL;
    }
    w->timed = 1;
    w->nbuckets = nbuckets;
    w->width_ns = duration_ns / nbuckets;
    w->head_id = now_ns / w->width_ns;
    w->head_pos = (uint32_t)(w->head_id % nbuckets);
    return RS_OK;
}

rs_status rs_window_init_time(rs_window *w, uint64_t duration_ns, uint64_t now_ns) {
    return rs_window_init_buckets(w, duration_ns, RS_WINDOW_BUCKETS, now_ns);
}

void rs_window_free(rs_window *w) {
    rs_free(w->ring);
    w->ring = NULL;
}

void rs_window_clear(rs_window *w, uint64_t now_ns) {
    reset_counts(w);
    if (w->timed) {
        w->head_id = now_ns / w->width_ns;
        w->head_pos = (uint32_t)(w->head_id % w->nbuckets);
    }
}

static void drop_bucket(rs_window *w, rs_bucket *b) {
    w->total -= b->total;
    w->failures -= b->failures;
    w->slow -= b->slow;
    b->total = b->failures = b->slow = 0;
}

int rs_window_roll(rs_window *w, uint64_t now_ns, double *period_rate) {
    if (!w->timed) {
        return 0;
    }
    uint64_t id = now_ns / w->width_ns;
    if (RS_LIKELY(id <= w->head_id)) {
        return 0;
    }
    rs_bucket *head = &w->buckets[w->head_pos];
    int closed = 0;
    if (head->total > 0) {
        *period_rate = (double)head->failures / (double)head->total;
        closed = 1;
    }
    uint64_t steps = id - w->head_id;
    if (steps >= w->nbuckets) {
        /* every bucket aged out */
        memset(w->buckets, 0, (size_t)w->nbuckets * sizeof w->buckets[0]);
        w->total = w->failures = w->slow = 0;
    } else {
        uint32_t pos = w->head_pos;
        for (uint64_t k = 1; k <= steps; k++) {
            pos = pos + 1 == w->nbuckets ? 0 : pos + 1;
            drop_bucket(w, &w->buckets[pos]);
        }
    }
    w->head_id = id;
    w->head_pos = (uint32_t)(id % w->nbuckets);
    return closed;
}

rs_status rs_window_add_n(rs_window *w, uint64_t n) {
    if (!w->timed) {
        return RS_EINVAL;
    }
    rs_bucket *b = &w->buckets[w->head_pos];
    if (n > (uint64_t)(UINT32_MAX - b->total)) {
        return RS_EINVAL;
    }
    b->total += (uint32_t)n;
    w->total += n;
    return RS_OK;
}

rs_status rs_latring_init_at(rs_latring *l, uint32_t cap, double *values) {
    memset(l, 0, sizeof *l);
    if (cap < 1 || cap > RS_WINDOW_MAX_SIZE) {
        return RS_EINVAL;
    }
    l->values = values;
    l->cap = cap;
    return RS_OK;
}

rs_status rs_latring_init(rs_latring *l, uint32_t cap) {
    rs_status st = rs_latring_init_at(l, cap, NULL);
    if (st != RS_OK) {
        return st;
    }
    l->values = rs_calloc(cap, sizeof(double));
    return l->values ? RS_OK : RS_ENOMEM;
}

void rs_latring_free(rs_latring *l) {
    rs_free(l->values);
    l->values = NULL;
}

void rs_latring_clear(rs_latring *l) {
    l->n = 0;
    l->pos = 0;
    l->sum = 0.0;
    l->sumsq = 0.0;
}

void rs_latring_sums(rs_latring *l) {
    double s = 0.0, q = 0.0;
    for (uint32_t i = 0; i < l->n; i++) {
        s += l->values[i];
        q += l->values[i] * l->values[i];
    }
    l->sum = s;
    l->sumsq = q;
}

/* Oldest-first order is now 0..cap-1: the sums are recomputed exactly, so
 * rounding from the running sums never builds up. */
void rs_latring_resum(rs_latring *l) {
    rs_latring_sums(l);
    l->pos = 0;
}

double rs_latring_mean(const rs_latring *l) { return l->n ? l->sum / (double)l->n : 0.0; }

double rs_latring_stddev(const rs_latring *l) {
    if (!l->n) {
        return 0.0;
    }
    double mean = l->sum / (double)l->n;
    double var = l->sumsq / (double)l->n - mean * mean;
    return var > 0.0 ? sqrt(var) : 0.0;
}

/* The totals the buckets add up to: total, failures, slow. */
static void bucket_sums(const rs_window *w, uint64_t sums[3]) {
    sums[0] = sums[1] = sums[2] = 0;
    for (uint32_t i = 0; i < w->nbuckets && i < RS_WINDOW_MAX_BUCKETS; i++) {
        sums[0] += w->buckets[i].total;
        sums[1] += w->buckets[i].failures;
        sums[2] += w->buckets[i].slow;
    }
}

int rs_window_consistent(const rs_window *w) {
    uint64_t sums[3];
    bucket_sums(w, sums);
    return w->total == sums[0] && w->failures == sums[1] && w->slow == sums[2] &&
           w->nbuckets >= 1 && w->head_pos == w->head_id % w->nbuckets;
}

void rs_window_recount(rs_window *w) {
    uint64_t sums[3];
    bucket_sums(w, sums);
    w->total = sums[0];
    w->failures = sums[1];
    w->slow = sums[2];
    if (w->nbuckets >= 1) {
        w->head_pos = (uint32_t)(w->head_id % w->nbuckets);
    }
}
