/* rs_budget.h - a retry budget shared by many calls.
 *
 * First attempts count as requests, later attempts as retries. A retry is
 * allowed while (retries + 1) <= ratio * requests over the window, or while
 * fewer than min_per_second retries happened in the last second. Both
 * windows are rs_window time windows (10 buckets each): fixed memory, O(1)
 * per event. In the request window an outcome flagged FAILED is a retry and
 * an unflagged one a request. */
#ifndef RS_BUDGET_H
#define RS_BUDGET_H

#include "rs_common.h"
#include "rs_field.h"
#include "rs_window.h"

typedef enum rs_budget_field {
    RS_BGF_RATIO = 0,
    RS_BGF_MIN_PER_SECOND,
    RS_BGF_WINDOW,
    RS_BGF_COUNT
} rs_budget_field;

/* Name and allowed values of each field (window in seconds). */
extern const rs_field RS_BUDGET_FIELDS[RS_BGF_COUNT];

typedef struct rs_budget {
    double ratio;
    double min_per_second;
    rs_window window;      /* requests and retries over `window` */
    rs_window last_second; /* retries over the last second */
    uint64_t now_ns;
    uint64_t requests;     /* totals since init */
    uint64_t retries;
    uint64_t rejected;
} rs_budget;

/* The largest ratio: ten retries per request. A larger one lets a single
 * request buy an unbounded number of retries, which is no budget at all. */
#define RS_BUDGET_MAX_RATIO 10.0

/* Returns RS_OK or RS_EFIELD_BASE + the first bad field: ratio in
 * [0, RS_BUDGET_MAX_RATIO], min_per_second finite and >= 0, window_ns >= 10.
 * No allocation. */
int rs_budget_init(rs_budget *b, double ratio, double min_per_second, uint64_t window_ns,
                   uint64_t now_ns);

void rs_budget_request(rs_budget *b, uint64_t now_ns);
/* Returns 1 and counts the retry when the budget allows it, else 0 (rejected
 * and counted). */
int rs_budget_try_retry(rs_budget *b, uint64_t now_ns);

/* Requests and retries in the window, retries in the last second, at now_ns. */
void rs_budget_counts(rs_budget *b, uint64_t now_ns, uint64_t *requests, uint64_t *retries,
                      uint64_t *retries_last_second);

#endif /* RS_BUDGET_H */
