/* rs_common.c - allocator hooks. */
#include "rs_common.h"

#include <stdlib.h>
#include <string.h>

static rs_alloc_fn g_alloc = malloc;
static rs_free_fn g_free = free;

void rs_set_allocator(rs_alloc_fn alloc_fn, rs_free_fn free_fn) {
    g_alloc = alloc_fn ? alloc_fn : malloc;
    g_free = free_fn ? free_fn : free;
}

void *rs_alloc(size_t size) { return g_alloc(size ? size : 1); }

void *rs_calloc(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    size_t bytes = n * size;
    void *p = g_alloc(bytes > 0 ? bytes : 1);
    if (p) {
        memset(p, 0, bytes);
    }
    return p;
}

void rs_free(void *ptr) {
    if (ptr) {
        g_free(ptr);
    }
}
