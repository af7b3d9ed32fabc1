/* rs_budget.c - the retry budget. */
#include "rs_budget.h"

#include <math.h>

/* The window holds RS_WINDOW_BUCKETS buckets of at least 1 ns. */
const rs_field RS_BUDGET_FIELDS[RS_BGF_COUNT] = {
    {"ratio", RS_FIELD_NUMBER, 0.0, RS_BUDGET_MAX_RATIO, 0, NULL},
    {"min_per_second", RS_FIELD_NUMBER, 0.0, INFINITY, 0, NULL},
    {"window", RS_FIELD_SECONDS, RS_WINDOW_BUCKETS / 1e9, RS_MAX_SECONDS, 0, NULL},
};

int rs_budget_init(rs_budget *b, double ratio, double min_per_second, uint64_t window_ns,
                   uint64_t now_ns) {
    if (!rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_RATIO], ratio)) return RS_EFIELD_BASE + RS_BGF_RATIO;
    if (!rs_field_ok(&RS_BUDGET_FIELDS[RS_BGF_MIN_PER_SECOND], min_per_second))
        return RS_EFIELD_BASE + RS_BGF_MIN_PER_SECOND;
    if (window_ns < RS_WINDOW_BUCKETS) return RS_EFIELD_BASE + RS_BGF_WINDOW;
    b->ratio = ratio;
    b->min_per_second = min_per_second;
    rs_window_init_time(&b->window, window_ns, now_ns);
    rs_window_init_time(&b->last_second, RS_NS_PER_SEC, now_ns);
    b->now_ns = now_ns;
    b->requests = b->retries = b->rejected = 0;
    return RS_OK;
}

static void roll(rs_budget *b, uint64_t now_ns) {
    if (now_ns > b->now_ns) {
        b->now_ns = now_ns;
    }
    double unused;
    rs_window_roll(&b->window, b->now_ns, &unused);
    rs_window_roll(&b->last_second, b->now_ns, &unused);
}

void rs_budget_request(rs_budget *b, uint64_t now_ns) {
    roll(b, now_ns);
    double unused;
    rs_window_add(&b->window, 0u, &unused);
    b->requests++;
}

int rs_budget_try_retry(rs_budget *b, uint64_t now_ns) {
    roll(b, now_ns);
    double requests = (double)(b->window.total - b->window.failures);
    double retries = (double)b->window.failures;
    int allowed = retries + 1.0 <= b->ratio * requests ||
                  (double)b->last_second.total < b->min_per_second;
    if (!allowed) {
        b->rejected++;
        return 0;
    }
    double unused;
    rs_window_add(&b->window, RS_OUTCOME_FAILED, &unused);
    rs_window_add(&b->last_second, 0u, &unused);
    b->retries++;
    return 1;
}

void rs_budget_counts(rs_budget *b, uint64_t now_ns, uint64_t *requests, uint64_t *retries,
                      uint64_t *retries_last_second) {
    roll(b, now_ns);
    *requests = b->window.total - b->window.failures;
    *retries = b->window.failures;
    *retries_last_second = b->last_second.total;
}
