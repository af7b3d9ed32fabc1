/* C unit tests of a monitor's region block (rs_monitor) and the flat
 * histogram window under it: the flat window reports what rs_hist_window
 * reports for the same samples at the same times; records and events fill
 * their tables and count what finds no room; a mismatched parameter names
 * its field; every half-done state a killed writer can leave is reported
 * by the state check and put right by the repair. */
#include <stdlib.h>

#include "rs_monitor.h"
#include "rs_region.h"
#include "rs_region_test.h"

#define SIZE (UINT64_C(1) << 22)

static const rs_region_type *const TYPES[] = {&RS_MON_REGION_TYPE};

static void test_flat_window_matches_the_window(void) {
    const uint64_t slot_ns = 1000, nslots = 5;
    rs_hist_window w;
    CHECK_EQ_INT(rs_hist_window_init(&w, 6, 42, nslots, slot_ns), RS_OK);
    uint64_t size = rs_hist_flat_size(6, 42, nslots, slot_ns);
    CHECK(size > sizeof(rs_hist_flat));
    CHECK_EQ_U64(rs_hist_flat_size(6, 42, 0, slot_ns), 0);
    CHECK_EQ_U64(rs_hist_flat_size(6, 6, nslots, slot_ns), 0);
    rs_hist_flat *f = calloc(1, size);
    rs_hist_flat_init(f, 6, 42, nslots, slot_ns);
    CHECK(rs_hist_flat_matches(f, 6, 42, nslots, slot_ns));
    CHECK(!rs_hist_flat_matches(f, 6, 42, nslots, slot_ns + 1));
    uint64_t now = 0;
    const double qs[4] = {0.0, 0.5, 0.99, 1.0};
    int problems = 0;
    for (int i = 0; i < 20000; i++) {
        now += rnd() % 300;
        if (rnd() % 50 == 0) {
            now -= rnd() % (now + 1) / 4; /* time stepping back */
        }
        uint64_t v = rnd() >> (rnd() % 64);
        rs_hist_window_record(&w, now, v);
        rs_hist_flat_record(f, now, v);
        if (i % 97 == 0) {
            uint64_t out[4];
            double sum;
            uint64_t count = rs_hist_flat_query(f, now, &sum, qs, 4, out);
            CHECK_EQ_U64(count, rs_hist_window_count(&w, now));
            CHECK(sum == rs_hist_window_mean(&w, now) * (double)count ||
                  fabs(sum / (double)(count ? count : 1) - rs_hist_window_mean(&w, now)) <=
                      1e-9 * rs_hist_window_mean(&w, now));
            for (int k = 0; k < 4; k++) {
                CHECK_EQ_U64(out[k], rs_hist_window_quantile(&w, now, qs[k]));
            }
            CHECK_EQ_INT(rs_hist_flat_check_state(f, quiet, &problems), 0);
        }
    }
    CHECK_EQ_INT(problems, 0);
    /* a slot one count ahead of its buckets, a slot ahead of head */
    uint32_t h = (uint32_t)(f->head % nslots);
    f->slot[h].count++;
    CHECK(rs_hist_flat_check_state(f, quiet, &problems) >= 1);
    rs_hist_flat_repair(f);
    CHECK_EQ_INT(rs_hist_flat_check_state(f, quiet, &problems), 0);
    uint32_t next = (uint32_t)((f->head + 1) % nslots);
    memset(&f->counts[(size_t)next * f->nbuckets], 0, (size_t)f->nbuckets * sizeof(uint64_t));
    f->slot[next].count = 0;
    f->slot[next].epoch = f->head + 1;
    CHECK(rs_hist_flat_check_state(f, quiet, &problems) >= 1);
    rs_hist_flat_repair(f);
    CHECK_EQ_INT(rs_hist_flat_check_state(f, quiet, &problems), 0);
    CHECK_EQ_U64(f->slot[f->head % nslots].epoch, f->head);
    free(f);
    rs_hist_window_free(&w);
}

static void key(rs_mon_key *k, uint8_t tag, const char *a, const char *b) {
    char buf[160];
    size_t n = (size_t)snprintf(buf, sizeof buf, "%s|%s", a, b);
    uint64_t d[2];
    rs_region_digest(SECRET, tag, buf, n, d);
    k->d0 = d[0];
    k->d1 = d[1];
    k->a = a;
    k->alen = (uint32_t)strlen(a);
    k->b = b;
    k->blen = (uint32_t)strlen(b);
}

static rs_mon_block *attach(void *base, uint64_t max_components, uint64_t max_series) {
    uint64_t params[RS_REGION_PARAMS], off = 0;
    uint32_t which = 99;
    CHECK_EQ_INT(rs_mon_params(60 * RS_NS_PER_SEC, 6, 5.0, 5000.0, max_components, max_series,
                               params),
                 RS_OK);
    CHECK_EQ_INT(rs_region_attach(base, &RS_MON_REGION_TYPE, "m", 1, params, &FAR, &off, &which),
                 RS_REGION_OK);
    return (rs_mon_block *)((char *)base + off);
}

static int state_problems(rs_mon_block *b) {
    int problems = 0;
    return RS_MON_REGION_TYPE.check_state(b, NULL, quiet, &problems);
}

static void test_params(void) {
    uint64_t params[RS_REGION_PARAMS];
    CHECK_EQ_INT(rs_mon_params(0, 6, 5.0, 5000.0, 1, 1, params),
                 RS_EFIELD_BASE + RS_MNF_RETENTION);
    CHECK_EQ_INT(rs_mon_params(5, 6, 5.0, 5000.0, 1, 1, params), RS_EFIELD_BASE + RS_MNF_RETENTION);
    CHECK_EQ_INT(rs_mon_params(RS_NS_PER_SEC, 65, 5.0, 5000.0, 1, 1, params),
                 RS_EFIELD_BASE + RS_MNF_SLOTS);
    CHECK_EQ_INT(rs_mon_params(RS_NS_PER_SEC, 6, 0.0, 5000.0, 1, 1, params),
                 RS_EFIELD_BASE + RS_MNF_ERROR_RATE);
    CHECK_EQ_INT(rs_mon_params(RS_NS_PER_SEC, 6, 5.0, NAN, 1, 1, params),
                 RS_EFIELD_BASE + RS_MNF_RESPONSE_MS);
    CHECK_EQ_INT(rs_mon_params(RS_NS_PER_SEC, 6, 5.0, 1.0, 0, 1, params),
                 RS_EFIELD_BASE + RS_MNF_MAX_COMPONENTS);
    CHECK_EQ_INT(rs_mon_params(RS_NS_PER_SEC, 6, 5.0, 1.0, 1, 0, params),
                 RS_EFIELD_BASE + RS_MNF_MAX_SERIES);
    CHECK_EQ_U64(rs_mon_bucket(0.0), 0);
    CHECK_EQ_U64(rs_mon_bucket(1.0), 0);
    CHECK_EQ_U64(rs_mon_bucket(1.0000001), 1);
    CHECK_EQ_U64(rs_mon_bucket(60000.0), RS_MON_BUCKETS - 1);
    CHECK_EQ_U64(rs_mon_bucket(60000.5), RS_MON_BUCKETS);
}

static void test_records_events_and_overflow(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0, SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    rs_mon_block *b = attach(base, 2, 7);
    /* another process's parameters: the first that differs is named */
    uint64_t params[RS_REGION_PARAMS], off;
    uint32_t which = 99;
    rs_mon_params(60 * RS_NS_PER_SEC, 6, 5.0, 5000.0, 2, 8, params);
    CHECK_EQ_INT(rs_region_attach(base, &RS_MON_REGION_TYPE, "m", 1, params, &FAR, &off, &which),
                 RS_REGION_MISMATCH);
    CHECK_EQ_U64(which, RS_MNF_MAX_SERIES);

    rs_mon_key c_db, op_get, err_to, c_x, op_x, ev;
    key(&c_db, 'c', "db", "");
    key(&op_get, 'r', "db", "get");
    key(&err_to, 'e', "db", "Timeout");
    CHECK_EQ_INT(rs_mon_record(b, 100, &c_db, &op_get, NULL, 1, 2000000, 2.0), RS_OK);
    key(&op_get, 'R', "db", "get"); /* the binding's digest covers success too */
    CHECK_EQ_INT(rs_mon_record(b, 200, &c_db, &op_get, &err_to, 0, 7000000, 7.0), RS_OK);
    CHECK_EQ_U64(b->ncomps, 1);
    CHECK_EQ_U64(b->nseries, 3);
    key(&op_get, 'R', "db", "get!");
    CHECK_EQ_INT(rs_mon_record(b, 300, &c_db, &op_get, &err_to, 0, 1, 0.000001), RS_OK);
    CHECK_EQ_U64(b->nseries, 4);
    double sum;
    uint64_t q[1];
    const double half = 0.5;
    CHECK_EQ_U64(rs_hist_flat_query(rs_mon_hist_at(b, 0), 300, &sum, &half, 1, q), 3);
    CHECK_EQ_U64(rs_mon_window_total(&rs_mon_comp_at(b, 0)->errors, 300), 2);
    for (int k = 0; k < 3; k++) {
        key(&ev, 'v', "retry", k == 0 ? "a" : k == 1 ? "b" : "c");
        CHECK_EQ_INT(rs_mon_event(b, 300, 2, &ev), RS_OK);
    }
    CHECK_EQ_U64(b->nseries, 7);
    CHECK_EQ_U64(rs_mon_window_total(&b->events[2], 300), 3);
    /* full: a new event series, a third component, a record needing a new series */
    key(&ev, 'v', "retry", "d");
    CHECK_EQ_INT(rs_mon_event(b, 300, 2, &ev), RS_EREJECTED);
    CHECK_EQ_U64(rs_mon_window_total(&b->events[2], 300), 3); /* nothing else counted */
    key(&c_x, 'c', "x", "");
    key(&op_x, 'r', "x", "get");
    CHECK_EQ_INT(rs_mon_record(b, 300, &c_x, &op_x, NULL, 1, 1, 1.0), RS_EREJECTED);
    key(&op_x, 'r', "db", "new");
    CHECK_EQ_INT(rs_mon_record(b, 300, &c_db, &op_x, NULL, 1, 1, 1.0), RS_EREJECTED);
    CHECK_EQ_U64(b->overflow_events, 1);
    CHECK_EQ_U64(b->overflow_records, 2);
    CHECK_EQ_U64(rs_hist_flat_query(rs_mon_hist_at(b, 0), 300, &sum, &half, 1, q), 3);
    /* existing series still count */
    key(&ev, 'v', "retry", "a");
    CHECK_EQ_INT(rs_mon_event(b, 400, 2, &ev), RS_OK);
    CHECK_EQ_INT(state_problems(b), 0);
    int problems = 0;
    CHECK_EQ_INT(rs_region_check(base, SIZE, TYPES, 1, quiet, &problems), 0);
    CHECK_EQ_INT(problems, 0);
    free(base);
}

static void test_repair_of_half_done_updates(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0, SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    rs_mon_block *b = attach(base, 4, 32);
    rs_mon_key c, op, err;
    const char *names[3] = {"db", "cache", "api"};
    uint64_t now = 0;
    for (int i = 0; i < 3000; i++) {
        const char *n = names[rnd() % 3];
        int ok = rnd() % 4 != 0;
        key(&c, 'c', n, "");
        key(&op, ok ? 'r' : 'R', n, "get");
        key(&err, 'e', n, "Timeout");
        now += rnd() % (RS_NS_PER_SEC / 2);
        CHECK_EQ_INT(rs_mon_record(b, now, &c, &op, &err, ok, rnd() % 1000000000, 1.0), RS_OK);
    }
    CHECK_EQ_INT(state_problems(b), 0);
    /* each a state a writer killed between two stores leaves */
    for (int which = 0; which < 6; which++) {
        rs_mon_comp *c0 = rs_mon_comp_at(b, 0);
        rs_hist_flat *h0 = rs_mon_hist_at(b, 1);
        switch (which) {
        case 0: /* a component published, not yet counted */
            b->ncomps--;
            break;
        case 1: /* a series published, not yet counted */
            b->nseries--;
            break;
        case 2: /* an error counted in the total, not yet in its bucket */
            c0->errors.total++;
            c0->errors.failures++;
            break;
        case 3: /* a histogram sample counted, not yet in its bucket */
            h0->slot[h0->head % h0->nslots].count++;
            break;
        case 4: /* an event window rolled half-way */
            b->events[1].buckets[b->events[1].head_pos].total += 3;
            break;
        default: /* a histogram slot made the head's before head moved */
        {
            uint64_t e = h0->head + 1;
            uint32_t j = (uint32_t)(e % h0->nslots);
            memset(&h0->counts[(size_t)j * h0->nbuckets], 0, h0->nbuckets * sizeof(uint64_t));
            h0->slot[j].count = 0;
            h0->slot[j].epoch = e;
            break;
        }
        }
        CHECK(state_problems(b) >= 1);
        RS_MON_REGION_TYPE.repair(b, NULL);
        CHECK_EQ_INT(state_problems(b), 0);
        /* and it records on */
        key(&c, 'c', "db", "");
        key(&op, 'r', "db", "get");
        now += 1000;
        CHECK_EQ_INT(rs_mon_record(b, now, &c, &op, NULL, 1, 5, 1.0), RS_OK);
        CHECK_EQ_INT(state_problems(b), 0);
    }
    /* a garbage kind and an overlong label: the series is dropped or cut */
    for (uint64_t i = 0; i < 2 * b->max_series; i++) {
        rs_mon_series *s = rs_mon_series_slot(b, i);
        if ((s->d0 | s->d1) != 0) {
            s->a.len = 999;
            break;
        }
    }
    CHECK(state_problems(b) >= 1);
    RS_MON_REGION_TYPE.repair(b, NULL);
    CHECK_EQ_INT(state_problems(b), 0);
    free(base);
}

/* The figures a record changes, to compare before and after. */
typedef struct figures {
    uint64_t requests, errors, events, series_total, interrupted;
    double sum;
} figures;

static figures read_figures(rs_mon_block *b, uint64_t now) {
    figures f = {0, 0, 0, 0, b->interrupted, 0.0};
    for (uint64_t i = 0; i < b->ncomps; i++) {
        double sum;
        f.requests += rs_hist_flat_query(rs_mon_hist_at(b, i), now, &sum, NULL, 0, NULL);
        f.sum += sum;
        f.errors += rs_mon_window_total(&rs_mon_comp_at(b, i)->errors, now);
    }
    for (unsigned k = 0; k < RS_MON_KINDS; k++) {
        f.events += rs_mon_window_total(&b->events[k], now);
    }
    for (uint64_t i = 0; i < 2 * b->max_series; i++) {
        rs_mon_series *s = rs_mon_series_slot(b, i);
        for (unsigned k = 0; k <= RS_MON_BUCKETS && (s->d0 | s->d1); k++) {
            f.series_total += s->counts[k];
        }
        f.sum += s->sum_ms;
    }
    return f;
}

/* A process killed between the journal's start and end: the repair undoes
 * the record whole, however much of it was written. */
static void test_an_interrupted_record_is_undone_whole(void) {
    void *base = aligned_alloc(64, SIZE);
    memset(base, 0, SIZE);
    CHECK_EQ_INT(rs_region_format(base, SIZE, 1000, SECRET), RS_REGION_OK);
    rs_mon_block *b = attach(base, 2, 16);
    rs_mon_key c, op, err, ev;
    key(&c, 'c', "db", "");
    key(&op, 'R', "db", "get");
    key(&err, 'e', "db", "Timeout");
    key(&ev, 'v', "retry", "db");
    uint64_t now = 5 * RS_NS_PER_SEC;
    CHECK_EQ_INT(rs_mon_record(b, now, &c, &op, &err, 0, 3000000, 3.0), RS_OK);
    CHECK_EQ_INT(rs_mon_event(b, now, 2, &ev), RS_OK);
    for (int cut = 0; cut < 4; cut++) {
        figures before = read_figures(b, now);
        now += RS_NS_PER_SEC;
        if (cut < 3) {
            CHECK_EQ_INT(rs_mon_record(b, now, &c, &op, &err, 0, 7000000, 7.0), RS_OK);
        } else {
            CHECK_EQ_INT(rs_mon_event(b, now, 2, &ev), RS_OK);
        }
        figures after = read_figures(b, now);
        CHECK(after.series_total > before.series_total);
        /* killed before the end: all written (cut 0, 3), or a part (1, 2) */
        if (cut == 1) {
            rs_mon_series *s = NULL;
            for (uint64_t i = 0; i < 2 * b->max_series; i++) {
                if (rs_mon_series_slot(b, i)->d0 == err.d0) {
                    s = rs_mon_series_slot(b, i);
                }
            }
            CHECK(s != NULL);
            s->counts[0]--; /* the error series not yet counted */
        } else if (cut == 2) {
            rs_mon_comp_at(b, 0)->errors.total--; /* half an error window add */
        }
        b->journal.active = 1;
        CHECK(state_problems(b) >= 1);
        RS_MON_REGION_TYPE.repair(b, NULL);
        CHECK_EQ_INT(state_problems(b), 0);
        figures undone = read_figures(b, now);
        CHECK_EQ_U64(undone.requests, before.requests);
        CHECK_EQ_U64(undone.errors, before.errors);
        CHECK_EQ_U64(undone.events, before.events);
        CHECK_EQ_U64(undone.series_total, before.series_total);
        CHECK(undone.sum == before.sum);
        CHECK_EQ_U64(undone.interrupted, before.interrupted + 1);
    }
    free(base);
}

int main(void) {
    RUN_TEST(test_an_interrupted_record_is_undone_whole);
    RUN_TEST(test_flat_window_matches_the_window);
    RUN_TEST(test_params);
    RUN_TEST(test_records_events_and_overflow);
    RUN_TEST(test_repair_of_half_done_updates);
    return rs_test_summary();
}
