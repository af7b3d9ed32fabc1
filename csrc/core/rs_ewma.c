/* rs_ewma.c - exponentially weighted mean and variance. */
#include "rs_ewma.h"

#include <math.h>

rs_status rs_ewma_init(rs_ewma *e, double alpha) {
    if (!(alpha > 0.0 && alpha <= 1.0)) {
        return RS_EINVAL;
    }
    e->alpha = alpha;
    rs_ewma_reset(e);
    return RS_OK;
}

void rs_ewma_update(rs_ewma *e, double x) {
    double a = e->alpha;
    double d = x - e->mean;
    e->mean = e->mean + a * d;
    e->var = (1.0 - a) * (e->var + a * d * d);
    e->count++;
}

void rs_ewma_reset(rs_ewma *e) {
    e->mean = 0.0;
    e->var = 0.0;
    e->count = 0;
}

double rs_ewma_stddev(const rs_ewma *e) { return e->var > 0.0 ? sqrt(e->var) : 0.0; }
