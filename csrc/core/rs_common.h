/* rs_common.h - status codes, allocator hooks and small helpers shared by
 * every core component.
 *
 * The core is plain C11: it never includes Python.h, never reads a clock
 * (time is a uint64_t nanosecond argument), never sleeps, logs or does I/O,
 * and keeps no mutable globals except the allocator hooks, which the caller
 * sets once before creating any component. */
#ifndef RS_COMMON_H
#define RS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define RS_LIKELY(x) __builtin_expect(!!(x), 1)
#define RS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define RS_LIKELY(x) (x)
#define RS_UNLIKELY(x) (x)
#endif

#define RS_INLINE static inline
/* For a helper that one hot function and a cold one share: inlined into
 * both even when large, so each gets a copy specialised to its arguments. */
#if defined(__GNUC__) || defined(__clang__)
#define RS_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define RS_ALWAYS_INLINE static inline
#endif

/* Status codes. Components add their own codes for "which field is bad"
 * above RS_EFIELD_BASE; the value minus RS_EFIELD_BASE indexes the
 * component's field table. */
typedef enum rs_status {
    RS_OK = 0,
    RS_ENOMEM = 1,    /* an allocation failed; nothing was changed */
    RS_EINVAL = 2,    /* an argument is out of range; nothing was changed */
    RS_EREJECTED = 3, /* the operation was refused by design (e.g. an open circuit) */
    RS_EFIELD_BASE = 100
} rs_status;

/* Allocator hooks. Defaults are malloc/free; the binding installs PyMem_*
 * equivalents once at module initialisation, before any allocation. */
typedef void *(*rs_alloc_fn)(size_t size);
typedef void (*rs_free_fn)(void *ptr);

void rs_set_allocator(rs_alloc_fn alloc_fn, rs_free_fn free_fn);
void *rs_alloc(size_t size);     /* Returns NULL on failure. */
void *rs_calloc(size_t n, size_t size); /* Zeroed; NULL on failure or overflow. */
void rs_free(void *ptr);         /* Accepts NULL. */

#define RS_NS_PER_SEC 1000000000ULL

/* Invariant checks that compile to nothing unless RS_DEBUG is defined. */
#ifdef RS_DEBUG
#include <assert.h>
#define RS_ASSERT(cond) assert(cond)
#else
#define RS_ASSERT(cond) ((void)0)
#endif

#endif /* RS_COMMON_H */
