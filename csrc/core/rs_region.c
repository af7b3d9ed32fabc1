/* rs_region.c - the region's header, directory and locks; see rs_region.h. */
/* The robust-mutex calls are POSIX 2008. */
#define _POSIX_C_SOURCE 200809L
#include "rs_region.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(pthread_mutex_t) <= 64, "a mutex fits its cache line");
_Static_assert(sizeof(rs_region_header) % RS_REGION_ALIGN == 0, "blocks start aligned");
_Static_assert(sizeof(rs_region_header) < RS_REGION_MIN_SIZE / 2, "the minimum has room");

#define HEADER_SIZE ((uint64_t)sizeof(rs_region_header))

const char *rs_region_reason(rs_region_status s) {
    switch (s) {
    case RS_REGION_OK: return "ok";
    case RS_REGION_TOO_SMALL: return "truncated or too small for a region";
    case RS_REGION_BAD_MAGIC: return "not a resil region";
    case RS_REGION_BAD_VERSION: return "a resil region of another layout version";
    case RS_REGION_INCOMPLETE: return "its creation never completed";
    case RS_REGION_CORRUPT: return "corrupt (a header field or directory entry out of bounds)";
    case RS_REGION_FULL: return "full";
    case RS_REGION_DIR_FULL: return "its directory is full";
    case RS_REGION_MISMATCH: return "the object exists with other parameters";
    case RS_REGION_LOCK_FAILED: return "a lock in it could not be taken";
    }
    return "unknown";
}

int rs_region_holder_dead(const rs_region_holder *h, rs_region_alive_fn alive, void *ctx) {
    return h->pid != 0 && alive(h->pid, h->start, ctx) == 0;
}

int64_t rs_region_permit_take(rs_region_permit *recs, uint32_t n, const rs_region_holder *me,
                              uint64_t now_ns, uint64_t tag) {
    for (uint32_t i = 0; i < n; i++) {
        if (recs[i].holder.pid == 0) {
            recs[i].holder = *me;
            recs[i].since_ns = now_ns;
            recs[i].tag = tag;
            return (int64_t)i;
        }
    }
    return -1;
}

int rs_region_permit_give(rs_region_permit *recs, uint32_t n, int64_t i,
                          const rs_region_holder *me, uint64_t tag) {
    if (i < 0 || i >= (int64_t)n || recs[i].holder.pid != me->pid ||
        recs[i].holder.start != me->start || recs[i].tag != tag) {
        return 0;
    }
    memset(&recs[i], 0, sizeof recs[i]);
    return 1;
}

uint32_t rs_region_permit_reclaim(rs_region_permit *recs, uint32_t n, uint64_t now_ns,
                                  uint64_t lease_ns, rs_region_alive_fn alive, void *actx,
                                  void (*on_dead)(void *ctx, const rs_region_permit *p),
                                  void *dctx) {
    uint32_t freed = 0;
    for (uint32_t i = 0; i < n; i++) {
        rs_region_permit *r = &recs[i];
        if (r->holder.pid == 0 || r->since_ns > now_ns || now_ns - r->since_ns < lease_ns) {
            continue;
        }
        if (rs_region_holder_dead(&r->holder, alive, actx)) {
            if (on_dead) {
                on_dead(dctx, r);
            }
            memset(r, 0, sizeof *r);
            freed++;
        } else {
            r->since_ns = now_ns;
        }
    }
    return freed;
}

uint32_t rs_region_permit_count(const rs_region_permit *recs, uint32_t n) {
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        c += recs[i].holder.pid != 0;
    }
    return c;
}

int rs_region_mutex_init(rs_region_mutex *m) {
    pthread_mutexattr_t a;
    memset(m, 0, sizeof *m);
    if (pthread_mutexattr_init(&a) != 0) {
        return -1;
    }
    int ok = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0 &&
             pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0 &&
             pthread_mutex_init(&m->u.m, &a) == 0;
    pthread_mutexattr_destroy(&a);
    return ok ? 0 : -1;
}

static int lock_result(pthread_mutex_t *m, int rc) {
    switch (rc) {
    case 0: return 0;
    case EOWNERDEAD:
        if (pthread_mutex_consistent(m) != 0) {
            pthread_mutex_unlock(m);
            return -1;
        }
        return 1;
    case EBUSY:
    case ETIMEDOUT: return 2;
    default: return -1; /* EINVAL, ENOTRECOVERABLE, EDEADLK: not usable */
    }
}

int rs_region_trylock(rs_region_mutex *m) {
    return lock_result(&m->u.m, pthread_mutex_trylock(&m->u.m));
}

int rs_region_timedlock(rs_region_mutex *m, const struct timespec *deadline) {
    return lock_result(&m->u.m, pthread_mutex_timedlock(&m->u.m, deadline));
}

void rs_region_unlock(rs_region_mutex *m) {
    pthread_mutex_unlock(&m->u.m);
}

static int locked(rs_region_mutex *m, const struct timespec *deadline) {
    int r = rs_region_trylock(m);
    if (r == 2) {
        r = rs_region_timedlock(m, deadline);
    }
    return r;
}

rs_region_status rs_region_format(void *base, uint64_t size, uint64_t lease_ns,
                                  const uint64_t secret[2]) {
    if (size < RS_REGION_MIN_SIZE || size > RS_REGION_MAX_SIZE) {
        return RS_REGION_TOO_SMALL;
    }
    rs_region_header *h = base;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, RS_REGION_MAGIC, 8);
    h->version = RS_REGION_VERSION;
    h->header_size = (uint32_t)HEADER_SIZE;
    h->size = size;
    h->lease_ns = lease_ns ? lease_ns : 1;
    h->secret[0] = secret[0];
    h->secret[1] = secret[1];
    h->cursor = HEADER_SIZE;
    if (rs_region_mutex_init(&h->lock) != 0) {
        return RS_REGION_LOCK_FAILED;
    }
    __atomic_store_n(&h->ready, 1u, __ATOMIC_RELEASE);
    return RS_REGION_OK;
}

/* Checks entry e against the region: 0 sound, else a problem. `floor` is
 * where the previous block ended (blocks are in ascending order). */
static const char *entry_problem(const rs_region_entry *e, uint64_t cursor, uint64_t floor) {
    if (e->type == 0) {
        return "an entry in use has no type";
    }
    if (e->name_len == 0 || e->name_len > RS_REGION_NAME_MAX || e->name[e->name_len] != '\0' ||
        memchr(e->name, '\0', e->name_len) != NULL) {
        return "an entry's name length is out of bounds";
    }
    if (e->offset % RS_REGION_ALIGN || e->offset < floor || e->size == 0 ||
        e->size > cursor || e->offset > cursor - e->size) {
        return "an entry's block lies outside the allocated part";
    }
    return NULL;
}

rs_region_status rs_region_validate(const void *base, uint64_t size) {
    const rs_region_header *h = base;
    if (size < HEADER_SIZE) {
        return size >= 8 && memcmp(h->magic, RS_REGION_MAGIC, 8) != 0 ? RS_REGION_BAD_MAGIC
                                                                      : RS_REGION_TOO_SMALL;
    }
    if (memcmp(h->magic, RS_REGION_MAGIC, 8) != 0) {
        return RS_REGION_BAD_MAGIC;
    }
    if (h->version != RS_REGION_VERSION) {
        return RS_REGION_BAD_VERSION;
    }
    if (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) != 1) {
        return RS_REGION_INCOMPLETE;
    }
    if (h->header_size != HEADER_SIZE || h->size < RS_REGION_MIN_SIZE ||
        h->size > RS_REGION_MAX_SIZE || h->lease_ns == 0) {
        return RS_REGION_CORRUPT;
    }
    if (h->size > size) {
        return RS_REGION_TOO_SMALL; /* truncated */
    }
    if (h->size != size) {
        return RS_REGION_CORRUPT;
    }
    uint64_t cursor = rs_region_used(base);
    uint32_t count = rs_region_count(base);
    if (cursor % RS_REGION_ALIGN || cursor < HEADER_SIZE || cursor > size ||
        count > RS_REGION_DIR_CAP) {
        return RS_REGION_CORRUPT;
    }
    uint64_t floor = HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        const rs_region_entry *e = &h->dir[i];
        if (entry_problem(e, cursor, floor)) {
            return RS_REGION_CORRUPT;
        }
        floor = e->offset + e->size;
    }
    return RS_REGION_OK;
}

static void count_report(void *ctx, const char *problem) {
    (void)problem;
    (*(int *)ctx)++;
}

rs_region_status rs_region_attach(void *base, const rs_region_type *type, const char *name,
                                  uint32_t name_len, const uint64_t *params,
                                  const struct timespec *deadline, uint64_t *offset,
                                  uint32_t *which) {
    rs_region_header *h = base;
    if (name_len == 0 || name_len > RS_REGION_NAME_MAX) {
        return RS_REGION_MISMATCH;
    }
    int r = locked(&h->lock, deadline);
    if (r < 0 || r == 2) {
        return RS_REGION_LOCK_FAILED;
    }
    /* r == 1: the holder died mid-attach; nothing to repair (see the header). */
    rs_region_status st = RS_REGION_OK;
    uint64_t size = h->size, cursor = h->cursor;
    uint32_t count = h->count;
    if (count > RS_REGION_DIR_CAP || cursor % RS_REGION_ALIGN || cursor < HEADER_SIZE ||
        cursor > size) {
        st = RS_REGION_CORRUPT;
        goto done;
    }
    for (uint32_t i = 0; i < count; i++) {
        rs_region_entry *e = &h->dir[i];
        if (e->type != type->tag || e->name_len != name_len ||
            memcmp(e->name, name, name_len) != 0) {
            continue;
        }
        for (uint32_t k = 0; k < RS_REGION_PARAMS; k++) {
            if (e->params[k] != params[k]) {
                *which = k;
                st = RS_REGION_MISMATCH;
                goto done;
            }
        }
        int problems = 0;
        void *block = (char *)base + e->offset;
        /* the structure only: processes may be updating the state */
        if (entry_problem(e, cursor, HEADER_SIZE) || e->size != type->block_size(params) ||
            e->size < sizeof(rs_region_mutex) ||
            type->check(block, e->size, params, count_report, &problems) != 0) {
            st = RS_REGION_CORRUPT;
            goto done;
        }
        /* the state under the block's lock, when it is free: a half-done
         * update or a damaged count is repaired, not refused. Busy: a live
         * process is using the block; it is not waited for under the
         * directory's lock (a stopped holder would stall every attach). */
        r = rs_region_trylock((rs_region_mutex *)block);
        if (r < 0) {
            st = RS_REGION_LOCK_FAILED;
            goto done;
        }
        if (r != 2) {
            type->repair(block, params);
            rs_region_unlock((rs_region_mutex *)block);
        }
        *offset = e->offset;
        goto done;
    }
    if (count == RS_REGION_DIR_CAP) {
        st = RS_REGION_DIR_FULL;
        goto done;
    }
    uint64_t need = type->block_size(params);
    need = (need + RS_REGION_ALIGN - 1) / RS_REGION_ALIGN * RS_REGION_ALIGN;
    if (need == 0 || need > size - cursor) {
        st = RS_REGION_FULL;
        goto done;
    }
    void *block = (char *)base + cursor;
    memset(block, 0, need);
    type->init(block, params);
    rs_region_entry *e = &h->dir[count];
    memset(e, 0, sizeof *e);
    e->type = type->tag;
    e->name_len = name_len;
    memcpy(e->name, name, name_len);
    memcpy(e->params, params, sizeof e->params);
    e->offset = cursor;
    e->size = type->block_size(params);
    __atomic_store_n(&h->cursor, cursor + need, __ATOMIC_RELEASE);
    __atomic_store_n(&h->count, count + 1, __ATOMIC_RELEASE);
    *offset = cursor;
done:
    rs_region_unlock(&h->lock);
    return st;
}

int rs_region_check(const void *base, uint64_t size, const rs_region_type *const *types,
                    size_t ntypes, void (*report)(void *ctx, const char *problem), void *ctx) {
    char buf[160];
    rs_region_status st = rs_region_validate(base, size);
    if (st != RS_REGION_OK) {
        snprintf(buf, sizeof buf, "header: %s", rs_region_reason(st));
        report(ctx, buf);
        return 1;
    }
    const rs_region_header *h = base;
    int problems = 0;
    uint32_t count = rs_region_count(base);
    for (uint32_t i = 0; i < count; i++) {
        const rs_region_entry *e = &h->dir[i];
        const rs_region_type *t = NULL;
        for (size_t k = 0; k < ntypes; k++) {
            if (types[k]->tag == e->type) {
                t = types[k];
            }
        }
        if (!t) {
            snprintf(buf, sizeof buf, "entry %u (%.63s): unknown type %u", i, e->name, e->type);
            report(ctx, buf);
            problems++;
            continue;
        }
        if (e->size != t->block_size(e->params)) {
            snprintf(buf, sizeof buf, "%s %.63s: block of %llu bytes, its parameters need %llu",
                     t->name, e->name, (unsigned long long)e->size,
                     (unsigned long long)t->block_size(e->params));
            report(ctx, buf);
            problems++;
            continue;
        }
        const void *block = (const char *)base + e->offset;
        int n = t->check(block, e->size, e->params, report, ctx);
        problems += n ? n : t->check_state(block, e->params, report, ctx);
    }
    return problems;
}

/* ---- keyed digests ------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

static void sipround(uint64_t v[4]) {
    v[0] += v[1], v[1] = rotl(v[1], 13), v[1] ^= v[0], v[0] = rotl(v[0], 32);
    v[2] += v[3], v[3] = rotl(v[3], 16), v[3] ^= v[2];
    v[0] += v[3], v[3] = rotl(v[3], 21), v[3] ^= v[0];
    v[2] += v[1], v[1] = rotl(v[1], 17), v[1] ^= v[2], v[2] = rotl(v[2], 32);
}

static void absorb(uint64_t v[4], uint64_t m) {
    v[3] ^= m;
    sipround(v);
    sipround(v);
    v[0] ^= m;
}

void rs_region_digest(const uint64_t secret[2], uint8_t tag, const void *data, size_t len,
                      uint64_t out[2]) {
    uint64_t v[4] = {secret[0] ^ UINT64_C(0x736f6d6570736575),
                     secret[1] ^ UINT64_C(0x646f72616e646f6d) ^ 0xee,
                     secret[0] ^ UINT64_C(0x6c7967656e657261),
                     secret[1] ^ UINT64_C(0x7465646279746573)};
    const unsigned char *p = data;
    absorb(v, tag);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m = 0;
        for (int k = 7; k >= 0; k--) {
            m = (m << 8) | p[i + (size_t)k]; /* little-endian on every host */
        }
        absorb(v, m);
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t k = 0; i + k < len; k++) {
        last |= (uint64_t)p[i + k] << (8 * k);
    }
    absorb(v, last);
    v[2] ^= 0xee;
    for (int r = 0; r < 4; r++) {
        sipround(v);
    }
    out[0] = v[0] ^ v[1] ^ v[2] ^ v[3];
    v[1] ^= 0xdd;
    for (int r = 0; r < 4; r++) {
        sipround(v);
    }
    out[1] = v[0] ^ v[1] ^ v[2] ^ v[3];
    if (out[0] == 0 && out[1] == 0) {
        out[1] = 1; /* (0, 0) marks an empty slot */
    }
}
