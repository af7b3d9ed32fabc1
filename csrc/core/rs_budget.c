/* rs_budget.c - the retry budget. */
#include "rs_budget.h"

#include <math.h>

static const char *const FIELDS[RS_BGF_COUNT][2] = {
    {"ratio", "in [0, 10]"},
    {"min_per_second", ">= 0"},
    {"window", ">= 1e-08 seconds"},
};

const char *rs_budget_field_name(int field) {
    return field >= 0 && field < RS_BGF_COUNT ? FIELDS[field][0] : NULL;
}

const char *rs_budget_field_range(int field) {
    return field >= 0 && field < RS_BGF_COUNT ? FIELDS[field][1] : NULL;
}

int rs_budget_init(rs_budget *b, double ratio, double min_per_second, uint64_t window_ns,
                   uint64_t now_ns) {
    if (!(ratio >= 0.0 && ratio <= RS_BUDGET_MAX_RATIO)) return RS_EFIELD_BASE + RS_BGF_RATIO;
    if (!(min_per_second >= 0.0 && isfinite(min_per_second)))
        return RS_EFIELD_BASE + RS_BGF_MIN_PER_SECOND;
    if (window_ns < RS_WINDOW_BUCKETS) return RS_EFIELD_BASE + RS_BGF_WINDOW;
    b->ratio = ratio;
    b->min_per_second = min_per_second;
    rs_window_init_time(&b->window, window_ns, now_ns);
    rs_window_init_time(&b->last_second, RS_NS_PER_SEC, now_ns);
    b->now_ns = now_ns;
    b->requests = b->retries = b->denied = 0;
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
        b->denied++;
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
