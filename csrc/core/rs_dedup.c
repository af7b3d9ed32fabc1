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

static void unlink_entry(rs_dedup *d, uint32_t idx) {
    rs_dedup_entry *e = &d->pool[idx];
    if (e->prev != RS_DEDUP_NIL) d->pool[e->prev].next = e->next; else d->oldest = e->next;
    if (e->next != RS_DEDUP_NIL) d->pool[e->next].prev = e->prev; else d->newest = e->prev;
}

static void append_entry(rs_dedup *d, uint32_t idx) {
    rs_dedup_entry *e = &d->pool[idx];
    e->prev = d->newest;
    e->next = RS_DEDUP_NIL;
    if (d->newest != RS_DEDUP_NIL) d->pool[d->newest].next = idx; else d->oldest = idx;
    d->newest = idx;
}

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
