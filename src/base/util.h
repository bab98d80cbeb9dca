/*
 * util.h - small helpers shared by the library's layers: error messages,
 * growable arrays, huge-page buffers and a stable sort on a leading
 * 64-bit key.
 *
 * Internal header; not part of the public API.
 */
#ifndef ARIA_UTIL_H
#define ARIA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "aria.h"

#if defined(__GNUC__)
#define ARIA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ARIA_PRINTF(a, b)
#endif

/* Formats a message into err (if not NULL) and returns `status`, so a
   failure path reads `return aria_fail(err, ARIA_ERR_FORMAT, "...", ...)`. */
int aria_fail(aria_error *err, int status, const char *fmt, ...) ARIA_PRINTF(3, 4);

/* Grows *buf (element size `size`) so that it holds at least `need`
   elements; *cap tracks the capacity. Returns 0, or -1 when out of memory
   (the old buffer stays valid). */
int aria_grow(void **buf, size_t *cap, size_t need, size_t size);

#define ARIA_GROW(ptr, cap, need) aria_grow((void **)&(ptr), &(cap), (need), sizeof(*(ptr)))

/* Stable merge sort of `n` records of `size` bytes whose first member is
   an int64_t key (ascending). Returns 0, or -1 when out of memory. */
int aria_sort_by_i64_key(void *base, size_t n, size_t size);

/* Big buffers (the weights read from a file, a KV cache): anonymous memory
   starting on a 2 MiB boundary, n rounded up to whole 2 MiB, marked for
   transparent huge pages where the kernel has them. One fault then maps
   2 MiB instead of 4 KiB, which matters where faults are dear (virtual
   machines) and to the TLB when a decode step streams the whole buffer.
   Zero-filled. Freed with aria_huge_free and the same n. Under a
   sanitizer it is calloc, so out-of-bounds accesses are still caught. */
void *aria_huge_alloc(size_t n);
void aria_huge_free(void *p, size_t n);
/* Makes such a buffer read-only (a write is then a fault, not a silent
   change of the weights); nothing under a sanitizer. */
void aria_huge_readonly(void *p, size_t n);

/* Python semantics for integer division and modulo by a positive d. */
static inline int64_t aria_floordiv(int64_t a, int64_t d) {
    int64_t q = a / d;
    return (a % d != 0 && a < 0) ? q - 1 : q;
}
static inline int64_t aria_floormod(int64_t a, int64_t d) {
    int64_t r = a % d;
    return r < 0 ? r + d : r;
}

#endif
