/* rs_dedup.c - TTL set with time-ordered entries and an open-addressing table. */
#include "rs_dedup.h"

#include <string.h>

#define INITIAL_POOL 64u

static uint32_t table_size_for(uint32_t pool_size) {
    uint32_t n = 8;
    while (n < 2u * pool_size) {
        n <<= 1;
    }
    return n;
}

/* Links entries [from, to) into the free list, in order. */
static void add_free(rs_dedup *d, uint32_t from, uint32_t to) {
    for (uint32_t i = to; i > from; i--) {
        d->pool[i - 1].next = d->free_head;
        d->pool[i - 1].key = NULL;
        d->free_head = i - 1;
    }
}

const rs_field RS_DEDUP_FIELDS[RS_DDF_COUNT] = {
    {"ttl", RS_FIELD_SECONDS, 1e-9, RS_MAX_SECONDS, 0, NULL}, /* at least 1 ns */
    {"capacity", RS_FIELD_INT, 1, RS_DEDUP_MAX_CAPACITY, 0, NULL},
};

rs_status rs_dedup_init(rs_dedup *d, uint64_t ttl_ns, uint32_t capacity, rs_key_eq eq,
                        rs_key_release release, void *ctx) {
    memset(d, 0, sizeof *d);
    d->oldest = d->newest = d->free_head = RS_DEDUP_NIL; /* safe to rs_dedup_free */
    if (ttl_ns == 0 || !rs_field_ok(&RS_DEDUP_FIELDS[RS_DDF_CAPACITY], capacity) || !eq) {
        return RS_EINVAL;
    }
    uint32_t pool_size = capacity < INITIAL_POOL ? capacity : INITIAL_POOL;
    uint32_t tsize = table_size_for(pool_size);
    d->pool = rs_calloc(pool_size, sizeof(rs_dedup_entry));
    d->table = rs_calloc(tsize, sizeof(rs_dedup_cell));
    if (!d->pool || !d->table) {
        rs_free(d->pool);
        rs_free(d->table);
        d->pool = NULL;
        d->table = NULL;
        return RS_ENOMEM;
    }
    d->ttl_ns = ttl_ns;
    d->capacity = capacity;
    d->pool_size = pool_size;
    d->mask = tsize - 1;
    d->free_head = RS_DEDUP_NIL;
    add_free(d, 0, pool_size);
    d->oldest = d->newest = RS_DEDUP_NIL;
    d->eq = eq;
    d->release = release;
    d->ctx = ctx;
    return RS_OK;
}

void rs_dedup_free(rs_dedup *d) {
    rs_dedup_clear(d);
    rs_free(d->pool);
    rs_free(d->table);
    rs_free(d->values);
    rs_free(d->words);
    d->pool = NULL;
    d->table = NULL;
    d->values = NULL;
    d->words = NULL;
}

/* Finds the table cell holding key: 1 found (*slot set), 0 not found (*slot
 * is the empty cell where it would go), -1 comparison error. */
static int find(rs_dedup *d, uint64_t hash, void *key, uint32_t *slot) {
    uint32_t i = (uint32_t)hash & d->mask;
    uint32_t tag = (uint32_t)hash;
    for (;;) {
        rs_dedup_cell cell = d->table[i];
        if (!cell) {
            *slot = i;
            return 0;
        }
        if (RS_DEDUP_CELL_TAG(cell) == tag) {
            rs_dedup_entry *e = &d->pool[RS_DEDUP_CELL_INDEX(cell) - 1];
            if (e->hash == hash) {
                if (e->key == key) {
                    *slot = i;
                    return 1;
                }
                int r = d->eq(e->key, key, d->ctx);
                if (r < 0) {
                    return -1;
                }
                if (r) {
                    *slot = i;
                    return 1;
                }
            }
        }
        i = (i + 1) & d->mask;
    }
}

/* Empties table cell i, shifting later cells of the probe run back. */
static void table_remove(rs_dedup *d, uint32_t i) {
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & d->mask;
        rs_dedup_cell cell = d->table[j];
        if (!cell) {
            break;
        }
        uint32_t home = RS_DEDUP_CELL_TAG(cell) & d->mask;
        /* The cell at j may stay when its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            d->table[i] = cell;
            d->pool[RS_DEDUP_CELL_INDEX(cell) - 1].slot = i;
            i = j;
        }
    }
    d->table[i] = 0;
}

/* The recording order: records linked by index (prev, next; RS_DEDUP_NIL
 * at the ends) between the owner's oldest and newest. One definition for
 * the local set's entries (pool) and the shared set's slots (slot). */
#define ORDER_OPS(kind, owner_t, rec_t, arr)                                    \
    static void unlink_##kind(owner_t *o, uint32_t i) {                        \
        rec_t *e = &o->arr[i];                                                 \
        if (e->prev != RS_DEDUP_NIL) o->arr[e->prev].next = e->next; else o->oldest = e->next; \
        if (e->next != RS_DEDUP_NIL) o->arr[e->next].prev = e->prev; else o->newest = e->prev; \
    }                                                                          \
    static void append_##kind(owner_t *o, uint32_t i) {                        \
        rec_t *e = &o->arr[i];                                                 \
        e->prev = o->newest;                                                   \
        e->next = RS_DEDUP_NIL;                                                \
        if (o->newest != RS_DEDUP_NIL) o->arr[o->newest].next = i; else o->oldest = i; \
        o->newest = i;                                                         \
    }
ORDER_OPS(entry, rs_dedup, rs_dedup_entry, pool)
ORDER_OPS(slot, rs_dedup_block, rs_dedup_slot, slot)

/* Hands a dropped or replaced value back. */
static void release_value(rs_dedup *d, void *value) {
    if (value && d->release) {
        d->release(value, d->ctx);
    }
}

/* Removes entry idx entirely and hands its key and value back; with
 * has_values 0 (a constant where inlined) the caller has seen that no value
 * table exists. */
RS_ALWAYS_INLINE void drop_entry_of(rs_dedup *d, uint32_t idx, int has_values) {
    rs_dedup_entry *e = &d->pool[idx];
    void *key = e->key, *value = NULL;
    if (has_values) {
        value = d->values[idx];
        d->values[idx] = NULL;
    }
    table_remove(d, e->slot);
    unlink_entry(d, idx);
    e->key = NULL;
    e->next = d->free_head;
    d->free_head = idx;
    d->size--;
    if (d->release) {
        d->release(key, d->ctx);
        if (has_values && value != NULL) {
            d->release(value, d->ctx);
        }
    }
}

static void drop_entry(rs_dedup *d, uint32_t idx) {
    if (RS_UNLIKELY(d->values != NULL)) {
        drop_entry_of(d, idx, 1);
    } else {
        drop_entry_of(d, idx, 0);
    }
}

/* Doubles the pool (up to capacity) and rehashes. Returns 0 or -1 (ENOMEM,
 * nothing changed). */
static int grow(rs_dedup *d) {
    uint64_t want = (uint64_t)d->pool_size * 2;
    uint32_t new_size = want > d->capacity ? d->capacity : (uint32_t)want;
    uint32_t tsize = table_size_for(new_size);
    rs_dedup_entry *pool = rs_alloc((size_t)new_size * sizeof(rs_dedup_entry));
    rs_dedup_cell *table = rs_calloc(tsize, sizeof(rs_dedup_cell));
    void **values = d->values ? rs_calloc(new_size, sizeof(void *)) : NULL;
    uint64_t *words = d->words ? rs_calloc(new_size, sizeof(uint64_t)) : NULL;
    if (!pool || !table || (d->values && !values) || (d->words && !words)) {
        rs_free(pool);
        rs_free(table);
        rs_free(values);
        rs_free(words);
        return -1;
    }
    if (words) {
        memcpy(words, d->words, (size_t)d->pool_size * sizeof(uint64_t));
        rs_free(d->words);
        d->words = words;
    }
    memcpy(pool, d->pool, (size_t)d->pool_size * sizeof(rs_dedup_entry));
    if (values) {
        memcpy(values, d->values, (size_t)d->pool_size * sizeof(void *));
        rs_free(d->values);
        d->values = values;
    }
    rs_free(d->pool);
    rs_free(d->table);
    d->pool = pool;
    d->table = table;
    d->mask = tsize - 1;
    for (uint32_t idx = d->oldest; idx != RS_DEDUP_NIL; idx = pool[idx].next) {
        uint32_t i = (uint32_t)pool[idx].hash & d->mask;
        while (table[i]) {
            i = (i + 1) & d->mask;
        }
        table[i] = RS_DEDUP_CELL(idx, pool[idx].hash);
        pool[idx].slot = i;
    }
    uint32_t old = d->pool_size;
    d->pool_size = new_size;
    add_free(d, old, new_size);
    return 0;
}

static inline int expired(const rs_dedup *d, const rs_dedup_entry *e, uint64_t now_ns) {
    return now_ns >= e->t_ns && now_ns - e->t_ns >= d->ttl_ns;
}

/* Moves the live entries, oldest first, to entries 0..size-1 of a new pool
 * of pool_size entries, with its table and value array (NULL when the set
 * has none), and frees the old ones. */
static void move_to(rs_dedup *d, rs_dedup_entry *pool, rs_dedup_cell *table, void **values,
                    uint64_t *words, uint32_t pool_size) {
    uint32_t mask = table_size_for(pool_size) - 1, n = 0;
    for (uint32_t idx = d->oldest; idx != RS_DEDUP_NIL; idx = d->pool[idx].next, n++) {
        rs_dedup_entry *e = &pool[n];
        e->hash = d->pool[idx].hash;
        e->key = d->pool[idx].key;
        e->t_ns = d->pool[idx].t_ns;
        if (words) {
            words[n] = d->words[idx];
        }
        e->prev = n ? n - 1 : RS_DEDUP_NIL;
        e->next = n + 1 < d->size ? n + 1 : RS_DEDUP_NIL;
        if (values) {
            values[n] = d->values[idx];
        }
        uint32_t i = (uint32_t)e->hash & mask;
        while (table[i]) {
            i = (i + 1) & mask;
        }
        table[i] = RS_DEDUP_CELL(n, e->hash);
        e->slot = i;
    }
    rs_free(d->pool);
    d->pool = pool;
    rs_free(d->table);
    d->table = table;
    rs_free(d->values);
    d->values = values;
    rs_free(d->words);
    d->words = words;
    d->mask = mask;
    d->pool_size = pool_size;
    d->oldest = n ? 0 : RS_DEDUP_NIL;
    d->newest = n ? n - 1 : RS_DEDUP_NIL;
    d->free_head = RS_DEDUP_NIL;
    add_free(d, n, pool_size);
}

rs_status rs_dedup_configure(rs_dedup *d, uint64_t ttl_ns, uint32_t capacity, uint64_t now_ns) {
    if (ttl_ns == 0 || (double)ttl_ns > RS_MAX_SECONDS * 1e9) {
        return RS_EFIELD_BASE + RS_DDF_TTL;
    }
    if (!rs_field_ok(&RS_DEDUP_FIELDS[RS_DDF_CAPACITY], capacity)) {
        return RS_EFIELD_BASE + RS_DDF_CAPACITY;
    }
    /* Everything that can fail comes first. */
    rs_dedup_entry *pool = NULL;
    rs_dedup_cell *table = NULL;
    void **values = NULL;
    uint64_t *words = NULL;
    int shrink = capacity < d->pool_size;
    if (shrink) {
        pool = rs_alloc((size_t)capacity * sizeof(rs_dedup_entry));
        table = rs_calloc(table_size_for(capacity), sizeof(rs_dedup_cell));
        values = d->values ? rs_calloc(capacity, sizeof(void *)) : NULL;
        words = d->words ? rs_calloc(capacity, sizeof(uint64_t)) : NULL;
        if (!pool || !table || (d->values && !values) || (d->words && !words)) {
            rs_free(pool);
            rs_free(table);
            rs_free(values);
            rs_free(words);
            return RS_ENOMEM;
        }
    }
    rs_dedup_expire(d, now_ns, 0); /* under the old ttl: gone, whatever the new one */
    d->ttl_ns = ttl_ns;
    rs_dedup_expire(d, now_ns, 0);
    while (d->size > capacity) {
        drop_entry(d, d->oldest);
        d->evicted++;
    }
    if (shrink) {
        move_to(d, pool, table, values, words, capacity);
    }
    d->capacity = capacity;
    return RS_OK;
}

uint32_t rs_dedup_expire(rs_dedup *d, uint64_t now_ns, uint32_t limit) {
    uint32_t n = 0;
    while (d->oldest != RS_DEDUP_NIL && (limit == 0 || n < limit) &&
           expired(d, &d->pool[d->oldest], now_ns)) {
        drop_entry(d, d->oldest);
        d->expired++;
        n++;
    }
    return n;
}

/* rs_dedup_seen (put = 0, value NULL, out NULL), rs_dedup_put (put = 1) and
 * rs_dedup_find_or_add (put = 0, out not NULL: a live key is reported, not
 * counted as a duplicate); inlined into each, so seen pays nothing for the
 * others. */
RS_ALWAYS_INLINE int record(rs_dedup *d, uint64_t hash, void *key, void *value, int put, uint64_t now_ns,
                  int *stored, uint32_t *out) {
    *stored = 0;
    if (put && !d->values) {
        d->values = rs_calloc(d->pool_size, sizeof(void *));
        if (!d->values) {
            return -2;
        }
    }
    if (out && !d->words) {
        d->words = rs_calloc(d->pool_size, sizeof(uint64_t));
        if (!d->words) {
            return -2;
        }
    }
    /* Amortised clean-up: a couple of expired entries per call (checked
     * inline first: usually the oldest entry is still live). */
    if (d->oldest != RS_DEDUP_NIL && expired(d, &d->pool[d->oldest], now_ns)) {
        rs_dedup_expire(d, now_ns, 2);
    }
    uint32_t slot;
    int r = find(d, hash, key, &slot);
    if (r < 0) {
        return -1;
    }
    if (r) {
        uint32_t idx = RS_DEDUP_CELL_INDEX(d->table[slot]) - 1;
        rs_dedup_entry *e = &d->pool[idx];
        int live = !expired(d, e, now_ns);
        if (live && out) {
            *out = idx;
            return 1;
        }
        if (live && !put) {
            d->duplicates++;
            return 1;
        }
        /* Known but expired, or given a new value: record it again, now,
         * as the newest. */
        if (!live) {
            d->expired++;
        }
        void *old = NULL;
        if (d->values) {
            old = d->values[idx];
            d->values[idx] = value;
        }
        e->t_ns = now_ns;
        if (d->words) {
            d->words[idx] = 0;
        }
        unlink_entry(d, idx);
        append_entry(d, idx);
        release_value(d, old);
        if (out) {
            *out = idx;
        }
        return live;
    }
    if (d->size == d->pool_size && d->pool_size < d->capacity) {
        if (grow(d) < 0) {
            return -2;
        }
        /* the table was rebuilt: find the empty cell again (no comparison
         * can match, the key is absent) */
        slot = (uint32_t)hash & d->mask;
        while (d->table[slot]) {
            slot = (slot + 1) & d->mask;
        }
    } else if (d->size == d->capacity) {
        drop_entry(d, d->oldest);
        d->evicted++;
        /* the removal may have shifted cells: look for the empty cell again */
        slot = (uint32_t)hash & d->mask;
        while (d->table[slot]) {
            slot = (slot + 1) & d->mask;
        }
    }
    uint32_t idx = d->free_head;
    rs_dedup_entry *e = &d->pool[idx];
    d->free_head = e->next;
    e->hash = hash;
    e->key = key;
    if (put) {
        d->values[idx] = value; /* allocated above */
    }
    e->t_ns = now_ns;
    if (d->words) {
        d->words[idx] = 0;
    }
    e->slot = slot;
    d->table[slot] = RS_DEDUP_CELL(idx, hash);
    append_entry(d, idx);
    d->size++;
    *stored = 1;
    if (out) {
        *out = idx;
    }
    return 0;
}

int rs_dedup_seen(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, int *stored) {
    return record(d, hash, key, NULL, 0, now_ns, stored, NULL);
}

int rs_dedup_find_or_add(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, int *stored,
                         uint32_t *idx) {
    return record(d, hash, key, NULL, 0, now_ns, stored, idx);
}

int rs_dedup_lookup(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, uint32_t *idx) {
    uint32_t slot;
    int r = find(d, hash, key, &slot);
    if (r <= 0) {
        return r;
    }
    *idx = RS_DEDUP_CELL_INDEX(d->table[slot]) - 1;
    return !expired(d, &d->pool[*idx], now_ns);
}

void rs_dedup_touch(rs_dedup *d, uint32_t idx, uint64_t now_ns) {
    d->pool[idx].t_ns = now_ns;
    unlink_entry(d, idx);
    append_entry(d, idx);
}

int rs_dedup_put(rs_dedup *d, uint64_t hash, void *key, void *value, uint64_t now_ns,
                 int *stored) {
    return record(d, hash, key, value, 1, now_ns, stored, NULL);
}

int rs_dedup_get(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns, void **value) {
    uint32_t slot;
    int r = find(d, hash, key, &slot);
    if (r <= 0) {
        return r;
    }
    uint32_t idx = RS_DEDUP_CELL_INDEX(d->table[slot]) - 1;
    if (expired(d, &d->pool[idx], now_ns)) {
        return 0;
    }
    *value = d->values ? d->values[idx] : NULL;
    return 1;
}

int rs_dedup_contains(rs_dedup *d, uint64_t hash, void *key, uint64_t now_ns) {
    uint32_t slot;
    int r = find(d, hash, key, &slot);
    if (r <= 0) {
        return r;
    }
    return !expired(d, &d->pool[RS_DEDUP_CELL_INDEX(d->table[slot]) - 1], now_ns);
}

int rs_dedup_discard(rs_dedup *d, uint64_t hash, void *key) {
    uint32_t slot;
    int r = find(d, hash, key, &slot);
    if (r <= 0) {
        return r;
    }
    drop_entry(d, RS_DEDUP_CELL_INDEX(d->table[slot]) - 1);
    return 1;
}

void rs_dedup_clear(rs_dedup *d) {
    /* A release may run code that puts a value (and so makes the value
     * table): each loop re-checks, and the second takes what is left. */
    while (d->oldest != RS_DEDUP_NIL && d->values == NULL) {
        drop_entry_of(d, d->oldest, 0);
    }
    while (d->oldest != RS_DEDUP_NIL) {
        drop_entry_of(d, d->oldest, 1);
    }
}

int rs_dedup_visit(const rs_dedup *d, int (*fn)(void *key, void *arg), void *arg) {
    for (uint32_t idx = d->oldest; idx != RS_DEDUP_NIL; idx = d->pool[idx].next) {
        int r = fn(d->pool[idx].key, arg);
        if (r) {
            return r;
        }
    }
    if (d->values) {
        for (uint32_t idx = d->oldest; idx != RS_DEDUP_NIL; idx = d->pool[idx].next) {
            int r = d->values[idx] ? fn(d->values[idx], arg) : 0;
            if (r) {
                return r;
            }
        }
    }
    return 0;
}

size_t rs_dedup_memory(const rs_dedup *d) {
    return (size_t)d->pool_size * (sizeof(rs_dedup_entry) + (d->values ? sizeof(void *) : 0) +
                                   (d->words ? sizeof(uint64_t) : 0)) +
           ((size_t)d->mask + 1) * sizeof(rs_dedup_cell);
}

/* ---- a deduplicator in a region ------------------------------------------ */

#define WAYS RS_DEDUP_WAYS
#define NIL RS_DEDUP_NIL

rs_status rs_dedup_params(uint64_t ttl_ns, uint64_t capacity, uint64_t params[RS_REGION_PARAMS]) {
    if (ttl_ns == 0 || (double)ttl_ns > RS_MAX_SECONDS * 1e9) {
        return RS_EFIELD_BASE + RS_DDF_TTL;
    }
    if (!rs_field_ok(&RS_DEDUP_FIELDS[RS_DDF_CAPACITY], (double)capacity)) {
        return RS_EFIELD_BASE + RS_DDF_CAPACITY;
    }
    for (unsigned i = 0; i < RS_REGION_PARAMS; i++) {
        params[i] = 0;
    }
    params[RS_DDF_TTL] = ttl_ns;
    params[RS_DDF_CAPACITY] = capacity;
    return RS_OK;
}

/* The number of sets the parameters make, or 0 when they are not a
 * deduplicator's (they may come from a damaged file). */
static uint64_t block_sets(const uint64_t *params) {
    uint64_t params_ok[RS_REGION_PARAMS];
    if (rs_dedup_params(params[RS_DDF_TTL], params[RS_DDF_CAPACITY], params_ok) != RS_OK ||
        memcmp(params, params_ok, sizeof params_ok) != 0) {
        return 0;
    }
    return 2 * ((params[RS_DDF_CAPACITY] + WAYS - 1) / WAYS);
}

static uint64_t block_size(const uint64_t *params) {
    uint64_t nsets = block_sets(params);
    return nsets ? sizeof(rs_dedup_block) + nsets * WAYS * sizeof(rs_dedup_slot) : UINT64_MAX;
}

static void block_init(void *block, const uint64_t *params) {
    rs_dedup_block *b = block;
    b->ttl_ns = params[RS_DDF_TTL];
    b->capacity = params[RS_DDF_CAPACITY];
    b->nsets = block_sets(params);
    b->oldest = b->newest = NIL;
    for (uint64_t i = 0; i < b->nsets * WAYS; i++) {
        b->slot[i].prev = b->slot[i].next = NIL;
    }
    rs_region_mutex_init(&b->lock);
}

static int block_check(const void *block, uint64_t size, const uint64_t *params,
                       void (*report)(void *ctx, const char *problem), void *ctx) {
    const rs_dedup_block *b = block;
    if (size != block_size(params)) {
        report(ctx, "deduplicator: parameters or block size invalid");
        return 1;
    }
    if (b->ttl_ns != params[RS_DDF_TTL] || b->capacity != params[RS_DDF_CAPACITY] ||
        b->nsets != block_sets(params)) {
        report(ctx, "deduplicator: settings differ from its parameters");
        return 1;
    }
    return 0;
}

static inline uint64_t first_word(uint64_t d0) {
    return d0 ? d0 : UINT64_C(0x9e3779b97f4a7c15); /* 0 marks an empty slot */
}

static inline int slot_expired(const rs_dedup_block *b, const rs_dedup_slot *s, uint64_t now_ns) {
    return now_ns >= s->t_ns && now_ns - s->t_ns >= b->ttl_ns;
}

/* Whether slot i lies in one of the two sets of the key it holds. */
static inline int in_its_set(const rs_dedup_block *b, uint64_t i) {
    const rs_dedup_slot *s = &b->slot[i];
    uint64_t set = i / WAYS;
    return s->d0 % b->nsets == set || s->d1 % b->nsets == set;
}

/* The slot holding (d0, d1) (d0 made non-zero) at an index other than
 * `not` (NIL: any), or NIL. */
static uint32_t find_slot(const rs_dedup_block *b, uint64_t d0, uint64_t d1, uint64_t not) {
    uint64_t sets[2] = {d0 % b->nsets, d1 % b->nsets};
    for (unsigned k = 0; k < 2 - (sets[0] == sets[1]); k++) {
        const rs_dedup_slot *set = &b->slot[sets[k] * WAYS];
        for (unsigned w = 0; w < WAYS; w++) {
            if (set[w].d0 == d0 && set[w].d1 == d1 && sets[k] * WAYS + w != not) {
                return (uint32_t)(sets[k] * WAYS + w);
            }
        }
    }
    return NIL;
}

/* A slot holds its key from the moment its d0 is written, after the other
 * words, and no longer once d0 is cleared, before the other words change:
 * a process killed at any instruction leaves a whole key or none. */
static inline void publish(rs_dedup_slot *s, uint64_t d0) {
    __atomic_store_n(&s->d0, d0, __ATOMIC_RELEASE);
}

static inline void unpublish(rs_dedup_slot *s) {
    __atomic_store_n(&s->d0, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void drop_slot(rs_dedup_block *b, uint32_t i) {
    rs_dedup_slot *s = &b->slot[i];
    unpublish(s);
    unlink_slot(b, i);
    s->d1 = s->t_ns = 0;
    s->prev = s->next = NIL;
    b->size--;
}

/* The first empty slot of set `set`, or NIL; *held counts its keys. */
static uint32_t empty_in(const rs_dedup_block *b, uint64_t set, unsigned *held) {
    uint32_t empty = NIL;
    *held = 0;
    for (unsigned w = 0; w < WAYS; w++) {
        if (b->slot[set * WAYS + w].d0 == 0) {
            empty = empty == NIL ? (uint32_t)(set * WAYS + w) : empty;
        } else {
            ++*held;
        }
    }
    return empty;
}

/* An empty slot for a new key of sets s0 and s1, made if need be (see the
 * header): the emptier set's, else one a key moved out of, else the slot
 * of the pair's least recently recorded key, evicted. */
static uint32_t make_room(rs_dedup_block *b, uint64_t s0, uint64_t s1) {
    unsigned held0, held1;
    uint32_t e0 = empty_in(b, s0, &held0), e1 = empty_in(b, s1, &held1);
    if (e0 != NIL || e1 != NIL) {
        return e1 == NIL || (e0 != NIL && held0 <= held1) ? e0 : e1;
    }
    uint64_t sets[2] = {s0, s1};
    uint32_t victim = NIL;
    for (unsigned k = 0; k < 2; k++) {
        for (unsigned w = 0; w < WAYS; w++) {
            uint32_t x = (uint32_t)(sets[k] * WAYS + w);
            rs_dedup_slot *s = &b->slot[x];
            uint64_t a = s->d0 % b->nsets, c = s->d1 % b->nsets, other = a == sets[k] ? c : a;
            unsigned held;
            uint32_t y = other == sets[k] ? NIL : empty_in(b, other, &held);
            if (y != NIL) {
                /* the key moves to y, keeping its time and its place */
                rs_dedup_slot *t = &b->slot[y];
                t->d1 = s->d1;
                t->t_ns = s->t_ns;
                t->prev = s->prev;
                t->next = s->next;
                if (s->prev != NIL) b->slot[s->prev].next = y; else b->oldest = y;
                if (s->next != NIL) b->slot[s->next].prev = y; else b->newest = y;
                publish(t, s->d0);
                unpublish(s);
                s->d1 = s->t_ns = 0;
                s->prev = s->next = NIL;
                return x;
            }
            if (victim == NIL || s->t_ns < b->slot[victim].t_ns) {
                victim = x;
            }
        }
    }
    drop_slot(b, victim);
    b->evicted++;
    return victim;
}

uint64_t rs_dedup_block_expire(rs_dedup_block *b, uint64_t now_ns, uint64_t limit) {
    uint64_t n = 0;
    while (b->oldest != NIL && (limit == 0 || n < limit) &&
           slot_expired(b, &b->slot[b->oldest], now_ns)) {
        drop_slot(b, b->oldest);
        b->expired++;
        n++;
    }
    return n;
}

int rs_dedup_block_seen(rs_dedup_block *b, uint64_t d0, uint64_t d1, uint64_t now_ns) {
    d0 = first_word(d0);
    if (b->oldest != NIL && slot_expired(b, &b->slot[b->oldest], now_ns)) {
        rs_dedup_block_expire(b, now_ns, 2);
    }
    uint32_t i = find_slot(b, d0, d1, NIL);
    if (i != NIL) {
        rs_dedup_slot *s = &b->slot[i];
        if (!slot_expired(b, s, now_ns)) {
            b->duplicates++;
            return 1;
        }
        /* known but expired: recorded again, now, as the newest */
        b->expired++;
        s->t_ns = now_ns;
        unlink_slot(b, i);
        append_slot(b, i);
        return 0;
    }
    if (b->size >= b->capacity) {
        drop_slot(b, b->oldest);
        b->evicted++;
    }
    i = make_room(b, d0 % b->nsets, d1 % b->nsets);
    rs_dedup_slot *s = &b->slot[i];
    s->d1 = d1;
    s->t_ns = now_ns;
    append_slot(b, i);
    b->size++;
    publish(s, d0);
    return 0;
}

int rs_dedup_block_contains(const rs_dedup_block *b, uint64_t d0, uint64_t d1, uint64_t now_ns) {
    uint32_t i = find_slot(b, first_word(d0), d1, NIL);
    return i != NIL && !slot_expired(b, &b->slot[i], now_ns);
}

int rs_dedup_block_discard(rs_dedup_block *b, uint64_t d0, uint64_t d1) {
    uint32_t i = find_slot(b, first_word(d0), d1, NIL);
    if (i == NIL) {
        return 0;
    }
    drop_slot(b, i);
    return 1;
}

void rs_dedup_block_clear(rs_dedup_block *b) {
    while (b->oldest != NIL) {
        drop_slot(b, b->oldest);
    }
}

/* The state's problems (see the header), reported when report is not NULL;
 * returns their number. Reads only, every index checked before use. */
static int state_problems(const rs_dedup_block *b, void (*report)(void *ctx, const char *problem),
                          void *ctx) {
    uint64_t nslots = b->nsets * WAYS, used = 0, strays = 0, twice = 0;
    int n = 0;
#define PROBLEM(text)             \
    do {                          \
        if (report) {             \
            report(ctx, (text));  \
        }                         \
        n++;                      \
    } while (0)
    for (uint64_t i = 0; i < nslots; i++) {
        const rs_dedup_slot *s = &b->slot[i];
        if (s->d0 == 0) {
            continue;
        }
        used++;
        if (!in_its_set(b, i)) {
            strays++;
        } else if (find_slot(b, s->d0, s->d1, i) != NIL) {
            twice++;
        }
    }
    if (strays) {
        PROBLEM("deduplicator: a key is outside its two sets");
    }
    if (twice) {
        PROBLEM("deduplicator: a key is held twice");
    }
    if (used != b->size || used > b->capacity) {
        PROBLEM("deduplicator: the size differs from the keys held or exceeds capacity");
    }
    /* the recording order: from oldest to newest through every key once */
    uint64_t walked = 0;
    uint32_t prev = NIL, i = b->oldest;
    int broken = 0;
    while (i != NIL) {
        if (i >= nslots || walked == used || b->slot[i].d0 == 0 || b->slot[i].prev != prev) {
            broken = 1;
            break;
        }
        walked++;
        prev = i;
        i = b->slot[i].next;
    }
    if (broken || walked != used || b->newest != prev) {
        PROBLEM("deduplicator: the recording order does not link every key once");
    }
#undef PROBLEM
    return n;
}

static int block_check_state(const void *block, const uint64_t *params,
                             void (*report)(void *ctx, const char *problem), void *ctx) {
    (void)params;
    return state_problems(block, report, ctx);
}

static inline int recorded_before(const rs_dedup_block *b, uint32_t x, uint32_t y) {
    uint64_t tx = b->slot[x].t_ns, ty = b->slot[y].t_ns;
    return tx < ty || (tx == ty && x < y);
}

/* Sorts the chain of slots from head (linked by next, NIL at its end) by
 * recording time, by merging runs of doubling length in place; returns the
 * new head. */
static uint32_t sort_chain(rs_dedup_block *b, uint32_t head) {
    rs_dedup_slot *s = b->slot;
    if (head == NIL) {
        return NIL;
    }
    for (uint64_t width = 1;; width *= 2) {
        uint32_t p = head, tail = NIL;
        uint64_t merges = 0;
        head = NIL;
        while (p != NIL) {
            merges++;
            uint32_t q = p;
            uint64_t psize = 0, qsize = width;
            while (psize < width && q != NIL) {
                psize++;
                q = s[q].next;
            }
            while (psize > 0 || (qsize > 0 && q != NIL)) {
                uint32_t e;
                if (psize == 0 || (qsize > 0 && q != NIL && recorded_before(b, q, p))) {
                    e = q;
                    q = s[q].next;
                    qsize--;
                } else {
                    e = p;
                    p = s[p].next;
                    psize--;
                }
                if (tail != NIL) s[tail].next = e; else head = e;
                tail = e;
            }
            p = q;
        }
        s[tail].next = NIL;
        if (merges <= 1) {
            return head;
        }
    }
}

/* Whether a slot below i holds slot i's key too. */
static int held_below(const rs_dedup_block *b, uint32_t i) {
    const rs_dedup_slot *s = &b->slot[i];
    uint64_t sets[2] = {s->d0 % b->nsets, s->d1 % b->nsets};
    for (unsigned k = 0; k < 2; k++) {
        for (uint64_t j = sets[k] * WAYS; j < sets[k] * WAYS + WAYS && j < i; j++) {
            if (b->slot[j].d0 == s->d0 && b->slot[j].d1 == s->d1) {
                return 1;
            }
        }
    }
    return 0;
}

/* Restores every invariant (see the header); a sound state is left as it is. */
static void block_repair(void *block, const uint64_t *params) {
    rs_dedup_block *b = block;
    (void)params;
    if (state_problems(b, NULL, NULL) == 0) {
        return;
    }
    uint64_t nslots = b->nsets * WAYS;
    uint32_t head = NIL;
    b->size = 0;
    for (uint64_t k = nslots; k > 0; k--) { /* chained in index order */
        uint32_t i = (uint32_t)(k - 1);
        rs_dedup_slot *s = &b->slot[i];
        if (s->d0 != 0 && (!in_its_set(b, i) || held_below(b, i))) {
            unpublish(s); /* damage, or the first copy of a key moved before it was cleared */
        }
        if (s->d0 == 0) {
            *s = (rs_dedup_slot){0, 0, 0, NIL, NIL};
            continue;
        }
        s->next = head;
        head = i;
        b->size++;
    }
    head = sort_chain(b, head);
    uint32_t prev = NIL;
    for (uint32_t i = head; i != NIL; i = b->slot[i].next) {
        b->slot[i].prev = prev;
        prev = i;
    }
    b->oldest = head;
    b->newest = prev;
    while (b->size > b->capacity) {
        drop_slot(b, b->oldest);
        b->evicted++;
    }
}

const rs_region_type RS_DEDUP_REGION_TYPE = {
    RS_DEDUP_TAG,      "deduplicator", block_size, block_init, block_check,
    block_check_state, block_repair,
    NULL, /* no permits held by processes */
};
