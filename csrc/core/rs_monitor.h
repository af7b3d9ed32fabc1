/* rs_monitor.h - a monitor's recorded data in a shared region, so every
 * worker process of a host records into one monitor (resil.Monitor with
 * shared=region).
 *
 * What it holds. Components: up to max_components, each with its name,
 * a windowed log-linear histogram of durations (an rs_hist_flat with the
 * local monitor's settings: sub_bits 6, max_bits 42, nanoseconds, `slots`
 * slots over `retention`) and a windowed error count (an rs_window time
 * window of the same slots). Series: up to max_series cumulative counts,
 * each keyed by the 128-bit digest of its labels (rs_region_digest, made
 * by the caller) and holding the label strings so that any process can
 * render them: a request series (component, operation, success) has the
 * duration sum in ms and a count per bucket of RS_MON_BOUNDS_MS (+Inf
 * last); an error series (component, error_type) and an event series
 * (kind, component) a count. Five event kinds (the caller's indexes
 * 0..RS_MON_KINDS-1) also have a windowed count for alerts. A label is at
 * most RS_MON_LABEL_MAX bytes of UTF-8.
 *
 * Nothing is lost silently: a record or an event that needs a component
 * or a series the tables have no room for changes nothing else and is
 * counted in overflow_records or overflow_events.
 *
 * Memory: the block header, max_components component records (about 1
 * KB each), 2 * max_series series slots (296 bytes each: the table is
 * kept at most half full, so a lookup probes few slots) and one histogram
 * window per component: 3 KB + slots * 18,944 bytes (230 KB at 12 slots).
 *
 * Every operation runs under the block's mutex, in two phases. First
 * what may be left half-done safely: the component and series are found
 * or published (a digest, written last, publishes an entry), and the
 * windows are moved to now_ns. Then a journal notes the value of every
 * word the record's counts change (the histogram slot's stats and bucket,
 * the error or event window's head bucket and totals, the series' sum and
 * count), is marked active, the counts change, and it is marked done. What
 * a holder killed mid-update can leave: an entry published but not counted,
 * a window or histogram slot moved half-way (its totals differ from its
 * buckets), or an active journal with some of the record's counts changed.
 * The repair hook first undoes an active journal's record (every noted
 * word restored: the record is counted in `interrupted` instead, so all
 * figures agree), then counts the published entries again, repairs every
 * histogram window (rs_hist_flat_repair) and recounts every time window
 * (rs_window_recount). A record either counts in every figure or in
 * `interrupted` only; counts that other processes saw never go backwards
 * (nobody reads under a held lock). */
#ifndef RS_MONITOR_H
#define RS_MONITOR_H

#include "rs_common.h"
#include "rs_field.h"
#include "rs_hist.h"
#include "rs_region.h"
#include "rs_window.h"

#define RS_MON_TAG 0x6d6f6e69u /* "moni" */
#define RS_MON_LABEL_MAX 63u
#define RS_MON_KINDS 5u
#define RS_MON_BUCKETS 15u /* bounds; counts have one more, +Inf */
/* max_components and max_series unless given */
#define RS_MON_DEFAULT_COMPONENTS 8u
#define RS_MON_DEFAULT_SERIES 256u

/* Upper bounds in ms of a request series' buckets. */
extern const double RS_MON_BOUNDS_MS[RS_MON_BUCKETS];

/* The parameters, in the order of the region's parameter words. */
typedef enum rs_mon_field {
    RS_MNF_RETENTION = 0,
    RS_MNF_SLOTS,
    RS_MNF_ERROR_RATE,
    RS_MNF_RESPONSE_MS,
    RS_MNF_MAX_COMPONENTS,
    RS_MNF_MAX_SERIES,
    RS_MNF_COUNT
} rs_mon_field;
extern const rs_field RS_MON_FIELDS[RS_MNF_COUNT];

enum { RS_MON_REQUEST = 1, RS_MON_ERROR = 2, RS_MON_EVENT = 3 };

typedef struct rs_mon_label {
    uint32_t len;
    char s[RS_MON_LABEL_MAX + 1]; /* NUL-terminated */
} rs_mon_label;

typedef struct rs_mon_series {
    uint64_t d0, d1;   /* the labels' digest, written last; (0, 0): empty */
    uint32_t kind;     /* RS_MON_REQUEST, _ERROR, _EVENT */
    uint32_t ok;       /* a request series: 1 success, 0 error */
    rs_mon_label a, b; /* request: component, operation; error: component,
                          error_type; event: kind, component */
    double sum_ms;     /* a request series' duration sum */
    uint64_t counts[RS_MON_BUCKETS + 1]; /* per bucket; error, event: [0] */
} rs_mon_series;

typedef struct rs_mon_comp {
    uint64_t d0, d1; /* the name's digest, written last */
    rs_mon_label name;
    rs_window errors;
} rs_mon_comp;

/* What a record or an event is about to change (see above). */
typedef struct rs_mon_journal {
    uint64_t active;          /* 1 while the counts change */
    uint64_t hist;            /* 1 + the component whose histogram, or 0 */
    uint64_t hslot, hbucket, hcount;
    rs_hist_flat_slot hstats;
    uint64_t window;          /* 0 none, 1 + component (errors), or 1 + max_components + kind */
    rs_bucket wbucket;        /* the window's head bucket, at wpos */
    uint64_t wpos, wtotal, wfailures;
    uint64_t op_off, op_bucket, op_count; /* a request series (offset from the block) */
    double op_sum;
    uint64_t one_off, one_count;          /* an error or event series */
} rs_mon_journal;

typedef struct rs_mon_block {
    rs_region_mutex lock;
    uint64_t retention_ns, slot_ns, slots, max_components, max_series;
    uint64_t hist_size;                       /* bytes of one component's window */
    uint64_t comps_off, series_off, hists_off; /* from the block's start */
    uint64_t ncomps, nseries;                 /* published entries */
    uint64_t started_ns, started;             /* when the first process attached */
    uint64_t overflow_records, overflow_events;
    uint64_t interrupted;                     /* records undone by repair */
    uint64_t reserved[5];
    rs_mon_journal journal;
    rs_window events[RS_MON_KINDS];
} rs_mon_block;

extern const rs_region_type RS_MON_REGION_TYPE;

/* A series' or component's key: its digest and label strings (b unused by
 * a component; lengths <= RS_MON_LABEL_MAX, checked by the caller). */
typedef struct rs_mon_key {
    uint64_t d0, d1;
    const char *a, *b;
    uint32_t alen, blen;
} rs_mon_key;

/* The region parameters of a monitor, in the order of RS_MON_FIELDS;
 * doubles as their bits. Returns RS_EFIELD_BASE + the first bad field
 * (retention / slots must be at least 1 ns: the slots field). */
rs_status rs_mon_params(uint64_t retention_ns, uint64_t slots, double error_rate,
                        double response_ms, uint64_t max_components, uint64_t max_series,
                        uint64_t params[RS_REGION_PARAMS]);

/* The bucket of a duration in ms: the first bound it does not exceed,
 * RS_MON_BUCKETS for +Inf. */
uint32_t rs_mon_bucket(double ms);

/* Records one operation: its component's window (and error count when
 * !ok), its request series (op: component and operation) and, when !ok,
 * its error series (err: component and error type). RS_EREJECTED, having
 * counted it in overflow_records only, when a table has no room. */
rs_status rs_mon_record(rs_mon_block *b, uint64_t now_ns, const rs_mon_key *comp,
                        const rs_mon_key *op, const rs_mon_key *err, int ok, uint64_t ns,
                        double ms);
/* Counts one event in its series (key: kind and component) and, for kind
 * < RS_MON_KINDS, in that kind's window. RS_EREJECTED as for a record. */
rs_status rs_mon_event(rs_mon_block *b, uint64_t now_ns, int64_t kind, const rs_mon_key *key);

/* Readers; the caller holds the lock. A window is moved to now_ns first. */
rs_mon_comp *rs_mon_comp_at(rs_mon_block *b, uint64_t i);          /* i < ncomps */
rs_hist_flat *rs_mon_hist_at(rs_mon_block *b, uint64_t i);         /* i < ncomps */
rs_mon_series *rs_mon_series_slot(rs_mon_block *b, uint64_t i);    /* i < 2 * max_series */
uint64_t rs_mon_window_total(rs_window *w, uint64_t now_ns);
/* The component named by key, or NULL. */
rs_mon_comp *rs_mon_find_comp(rs_mon_block *b, const rs_mon_key *key, uint64_t *index);

#endif /* RS_MONITOR_H */
