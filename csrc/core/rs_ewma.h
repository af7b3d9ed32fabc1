/* rs_ewma.h - exponentially weighted mean and variance.
 *
 * For each input x with smoothing factor a:
 *     d = x - m;  m += a*d;  v = (1-a) * (v + a*d*d)
 * starting from m = v = 0. Fixed size, no allocation, cannot fail once
 * initialised. */
#ifndef RS_EWMA_H
#define RS_EWMA_H

#include "rs_common.h"

typedef struct rs_ewma {
    double alpha;
    double mean;
    double var;
    uint64_t count; /* inputs seen since init or reset */
} rs_ewma;

/* Returns RS_EINVAL unless 0 < alpha <= 1 (NaN rejected); e is unchanged then. */
rs_status rs_ewma_init(rs_ewma *e, double alpha);
void rs_ewma_update(rs_ewma *e, double x);
void rs_ewma_reset(rs_ewma *e);
/* Square root of the variance (0 when the variance is not positive). */
double rs_ewma_stddev(const rs_ewma *e);

#endif /* RS_EWMA_H */
