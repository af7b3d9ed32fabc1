/* rs_field.h - the allowed values of a component's configuration fields,
 * held as numbers in one table per component. The component's init checks
 * its fields against the table and returns RS_EFIELD_BASE + the index of
 * the first bad one; the binding reads the same entry to convert an
 * argument and to word the error, so a bound is written once, here or in
 * the component's header, never again as text. */
#ifndef RS_FIELD_H
#define RS_FIELD_H

#include <math.h>

#include "rs_common.h"

/* The largest time a clock may show, in seconds: 2**63 ns is about 292
 * years, and 9.2e9 s keeps every converted value below it. */
#define RS_MAX_SECONDS 9.2e9

/* What a field holds, which decides the Python types it accepts: an int
 * (not a bool), or an int or float (not a bool) that is a plain number or
 * a duration in seconds. */
typedef enum rs_field_kind { RS_FIELD_INT = 0, RS_FIELD_NUMBER, RS_FIELD_SECONDS } rs_field_kind;

/* Bits of rs_field.open: the bound is excluded. */
enum { RS_FIELD_OPEN_LO = 1, RS_FIELD_OPEN_HI = 2 };

typedef struct rs_field {
    const char *name;  /* the parameter's name where the user passes it */
    int kind;          /* rs_field_kind */
    double lo, hi;     /* bounds; hi == INFINITY: no upper bound (values stay finite) */
    int open;          /* RS_FIELD_OPEN_* */
    const char *rule;  /* a further rule against another field, said in words
                          ("at least sub_bits + 1"), or NULL */
} rs_field;

/* 1 when v lies within the field's bounds: finite, and NaN never. The rule
 * against another field is the component's own check. */
RS_INLINE int rs_field_ok(const rs_field *f, double v) {
    if (!isfinite(v)) {
        return 0;
    }
    int lo_ok = (f->open & RS_FIELD_OPEN_LO) ? v > f->lo : v >= f->lo;
    int hi_ok = (f->open & RS_FIELD_OPEN_HI) ? v < f->hi : v <= f->hi;
    return lo_ok && hi_ok;
}

#endif /* RS_FIELD_H */
