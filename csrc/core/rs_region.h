/* rs_region.h - a region: one block of memory shared by the processes of a
 * host (the binding maps a file MAP_SHARED), holding a header, a directory
 * of named objects and the objects' blocks.
 *
 * Layout. Offset 0: the header (magic "RESILRGN", layout version, total
 * size, lease_ns, a random 16-byte secret for keyed digests, the
 * allocation cursor, the number of directory entries in use, the
 * directory's lock, a creation-complete flag written last), then a
 * directory of RS_REGION_DIR_CAP entries {type tag, name, parameters,
 * offset and size of the object's block}, then the blocks, allocated from
 * the cursor 64-byte aligned and never freed: the size is fixed when the
 * region is made. Only offsets are stored, never pointers, so every process
 * may map the region at its own address. The region trusts nothing it
 * reads: rs_region_validate checks every offset and length against the
 * size before any is used, so a garbage, truncated, foreign or other-version
 * block is refused with a reason, never followed.
 *
 * Concurrency: a process-shared robust pthread mutex for the directory and
 * one at the start of every object's block. Why a mutex and not atomics:
 * an object's state change touches several words (a GCRA bucket is a time
 * and a debt plus two counters; a breaker a window, counts and permits),
 * which one compare-and-swap cannot cover, while an uncontended futex lock
 * costs two atomic instructions and no system call. Why robust: a holder
 * killed (SIGKILL included) mid-update leaves no lock held; the next locker
 * gets EOWNERDEAD, marks the mutex consistent and runs the object type's
 * repair hook, which restores the invariants a half-done update can break
 * (each type's header says which). The lock is held only for the state
 * change in C, never over a user's call. The creation of the region itself
 * is serialised by the binding (an flock on the file).
 *
 * Dead holders of permits: a permit an object hands out (a probe, a slot)
 * is recorded as an rs_region_holder, the holder's pid and process start
 * time (a pid alone is reused); whether that process still lives is I/O,
 * so the caller passes it in as an rs_region_alive_fn.
 *
 * Pure C11 plus POSIX threads: no Python, no file I/O, no clock reads
 * (times are now_ns arguments). */
#ifndef RS_REGION_H
#define RS_REGION_H

#include <pthread.h>
#include <time.h>

#include "rs_common.h"

#define RS_REGION_MAGIC "RESILRGN"
#define RS_REGION_VERSION 2u
#define RS_REGION_ALIGN 64u
#define RS_REGION_DIR_CAP 128u
#define RS_REGION_NAME_MAX 63u
#define RS_REGION_PARAMS 20u
/* The smallest region holds its header and directory plus 32 KiB of
 * objects; the largest is 1 TiB. */
#define RS_REGION_MIN_SIZE (UINT64_C(1) << 16)
#define RS_REGION_MAX_SIZE (UINT64_C(1) << 40)

/* Why a region or a request was refused (rs_region_reason words each). */
typedef enum rs_region_status {
    RS_REGION_OK = 0,
    RS_REGION_TOO_SMALL,   /* smaller than its header, or than it says it is */
    RS_REGION_BAD_MAGIC,   /* not a resil region */
    RS_REGION_BAD_VERSION, /* a resil region of another layout version */
    RS_REGION_INCOMPLETE,  /* its creation never completed */
    RS_REGION_CORRUPT,     /* a header field or directory entry out of bounds */
    RS_REGION_FULL,        /* no room for the object's block */
    RS_REGION_DIR_FULL,    /* every directory entry is taken */
    RS_REGION_MISMATCH,    /* the object exists with other parameters */
    RS_REGION_LOCK_FAILED, /* a lock could not be taken or made */
} rs_region_status;

const char *rs_region_reason(rs_region_status s);

/* A process-shared robust mutex in its own cache line. */
typedef struct rs_region_mutex {
    union {
        pthread_mutex_t m;
        unsigned char pad[64];
    } u;
} rs_region_mutex;

typedef struct rs_region_entry {
    uint32_t type;                        /* 0: unused */
    uint32_t name_len;
    char name[RS_REGION_NAME_MAX + 1];    /* NUL-terminated */
    uint64_t params[RS_REGION_PARAMS];    /* the type's configuration */
    uint64_t offset, size;                /* the object's block */
} rs_region_entry;

typedef struct rs_region_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;  /* sizeof(rs_region_header): the first block's floor */
    uint64_t size;
    uint64_t lease_ns;
    uint64_t secret[2];
    uint64_t cursor;       /* next free offset, a multiple of RS_REGION_ALIGN */
    uint32_t count;        /* directory entries in use, published last */
    uint32_t ready;        /* 1 once creation completed, written last */
    rs_region_mutex lock;  /* the directory's */
    rs_region_entry dir[RS_REGION_DIR_CAP];
} rs_region_header;

/* A holder of a permit: a process is the same one when its pid and start
 * time (in the units the alive function uses) both match. pid 0: none. */
typedef struct rs_region_holder {
    uint64_t pid;
    uint64_t start;
} rs_region_holder;

/* 1 when process (pid, start) is alive, 0 when it is gone, -1 unknown
 * (treated as alive: a permit is never taken from a living process). */
typedef int (*rs_region_alive_fn)(uint64_t pid, uint64_t start, void *ctx);

/* 1 when the holder record names a process that is gone. */
int rs_region_holder_dead(const rs_region_holder *h, rs_region_alive_fn alive, void *ctx);

/* A permit an object handed to a process (a probe, a slot): its holder,
 * when it was taken or its holder last found alive, and a word of the
 * object's own (a breaker's epoch). holder.pid 0: free. An object keeps
 * one record per permit it can hand out, so a permit whose holder died
 * can be found and given back. */
typedef struct rs_region_permit {
    rs_region_holder holder;
    uint64_t since_ns;
    uint64_t tag;
} rs_region_permit;

/* Records a permit for `me` in a free record of recs[0..n): its index, or
 * -1 when every record is taken. */
int64_t rs_region_permit_take(rs_region_permit *recs, uint32_t n, const rs_region_holder *me,
                              uint64_t now_ns, uint64_t tag);
/* Frees record i if it is still me's permit tagged tag (one reclaimed, or
 * freed as stale and taken again, or out of range, is not): 1 freed, 0 not. */
int rs_region_permit_give(rs_region_permit *recs, uint32_t n, int64_t i,
                          const rs_region_holder *me, uint64_t tag);
/* Finds records whose holder died: each record held lease_ns or more
 * since its since_ns is asked of alive (I/O, so only once a lease); a dead
 * holder's record is passed to on_dead (may be NULL), then freed; a living
 * one's since_ns becomes now_ns. Returns how many were freed. A record
 * whose since_ns lies ahead of now_ns (another process's clock ran ahead)
 * is left for later. */
uint32_t rs_region_permit_reclaim(rs_region_permit *recs, uint32_t n, uint64_t now_ns,
                                  uint64_t lease_ns, rs_region_alive_fn alive, void *actx,
                                  void (*on_dead)(void *ctx, const rs_region_permit *p),
                                  void *dctx);
/* Records in use. */
uint32_t rs_region_permit_count(const rs_region_permit *recs, uint32_t n);

/* One kind of object a region holds; every block starts with its
 * rs_region_mutex. init formats a block (zeroed, its mutex made) from the
 * parameters. check returns the number of problems in what a live update
 * never changes (the settings the parameters make, sizes, bounds) and calls
 * report for each: it is safe without the block's lock. check_state does
 * the same for the state updates change (counts, buckets); the caller holds
 * the block's lock or knows no process updates the region. repair restores
 * every invariant of the state (a half-done update, a damaged count) on a
 * block whose check passed; the caller holds the block's lock. */
typedef struct rs_region_type {
    uint32_t tag;
    const char *name;
    uint64_t (*block_size)(const uint64_t *params);
    void (*init)(void *block, const uint64_t *params);
    int (*check)(const void *block, uint64_t size, const uint64_t *params,
                 void (*report)(void *ctx, const char *problem), void *ctx);
    int (*check_state)(const void *block, const uint64_t *params,
                       void (*report)(void *ctx, const char *problem), void *ctx);
    void (*repair)(void *block, const uint64_t *params);
    /* Optional: gives back every permit the block's records say `who`
     * holds (a process closing the region); the caller holds the lock. */
    void (*drop_holder)(void *block, const uint64_t *params, const rs_region_holder *who);
} rs_region_type;

/* Makes m a process-shared robust mutex: 0, or -1 when the platform refuses. */
int rs_region_mutex_init(rs_region_mutex *m);

/* Locks m when it is free: 0 locked; 1 locked after its holder died (the
 * mutex is made consistent again; the caller repairs what it guards before
 * unlocking); 2 busy; -1 unusable (a garbage lock word). */
int rs_region_trylock(rs_region_mutex *m);
/* As rs_region_trylock but waits until the CLOCK_REALTIME time *deadline
 * (a caller's reading plus a bound: a lock is held for microseconds, so a
 * longer wait means a stopped holder or a garbage lock word): 2 when it
 * passed. */
int rs_region_timedlock(rs_region_mutex *m, const struct timespec *deadline);
void rs_region_unlock(rs_region_mutex *m);

/* Formats a zeroed or garbage block of size bytes as an empty region.
 * RS_REGION_TOO_SMALL when size is outside [RS_REGION_MIN_SIZE,
 * RS_REGION_MAX_SIZE], RS_REGION_LOCK_FAILED when the mutex cannot be made. */
rs_region_status rs_region_format(void *base, uint64_t size, uint64_t lease_ns,
                                  const uint64_t secret[2]);

/* Checks the header and every directory entry in use against size (the
 * bytes mapped): a region that passes may be used. Reads only. */
rs_region_status rs_region_validate(const void *base, uint64_t size);

/* The directory entry of (type, name), or creates it: under the directory
 * lock, finds the entry; when it exists with other parameters, returns
 * RS_REGION_MISMATCH with *which the index of the first that differs;
 * otherwise allocates and formats the block (RS_REGION_FULL,
 * RS_REGION_DIR_FULL when there is no room) and publishes the entry.
 * *offset receives the block's offset. name_len <= RS_REGION_NAME_MAX.
 * The directory lock is waited for until *deadline (RS_REGION_LOCK_FAILED
 * after it). A creator that died mid-way leaves nothing to repair: an entry
 * counts once `count` covers it, written last, and a block allocated but
 * never published is left unused. An existing block's structure is checked
 * with the type's check (RS_REGION_CORRUPT), without its lock, since
 * processes may be using it; then, when its lock is free (or its holder
 * died), the type's repair runs under it, so a state a killed process left
 * half-done, or a damaged count, is put right rather than refused. A lock
 * that is busy is not waited for (its holder is using the block; the next
 * attach repairs); one that is unusable is RS_REGION_LOCK_FAILED. The
 * repair walks the block: attaching costs time in proportion to its size. */
rs_region_status rs_region_attach(void *base, const rs_region_type *type, const char *name,
                                  uint32_t name_len, const uint64_t *params,
                                  const struct timespec *deadline, uint64_t *offset,
                                  uint32_t *which);

/* Walks the header, the directory and each block of a type in types (an
 * entry of another tag is a problem) and reports every problem; returns
 * their number. size: the bytes mapped. It takes no lock: the state of a
 * block is read as it is, so run it while no process updates the region
 * (an update in progress reads as a problem). */
int rs_region_check(const void *base, uint64_t size, const rs_region_type *const *types,
                    size_t ntypes, void (*report)(void *ctx, const char *problem), void *ctx);

/* A 128-bit digest of (tag, data[0..len)) keyed by the region's secret:
 * the same in every process that maps the region, never (0, 0). SipHash's
 * rounds (2 per word, 4 to finish) over a 128-bit output: two different
 * keys share a digest with probability about 2**-128 per pair, and without
 * the secret nobody can make them collide on purpose. Objects keep keys as
 * digests, so a key of any length takes 16 bytes. */
void rs_region_digest(const uint64_t secret[2], uint8_t tag, const void *data, size_t len,
                      uint64_t out[2]);

/* Bytes taken: the cursor. */
RS_INLINE uint64_t rs_region_used(const void *base) {
    return __atomic_load_n(&((const rs_region_header *)base)->cursor, __ATOMIC_ACQUIRE);
}

/* Entries in use, read with acquire order: entries below it are complete. */
RS_INLINE uint32_t rs_region_count(const void *base) {
    return __atomic_load_n(&((const rs_region_header *)base)->count, __ATOMIC_ACQUIRE);
}

#endif /* RS_REGION_H */
