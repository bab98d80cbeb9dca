/*
 * util.c - error formatting, array growth and a stable sort.
 *
 * The reference code leans on Python's stable `sorted(key=...)`; the score
 * and tokenizer layers reproduce it with aria_sort_by_i64_key, a bottom-up
 * merge sort over records whose first field is the int64 sort key (ticks).
 * Already-sorted input, the common case, costs one linear check.
 */
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int aria_fail(aria_error *err, int status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

#if defined(__SANITIZE_ADDRESS__)
#define HUGE_BY_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HUGE_BY_MALLOC 1
#endif
#endif

#define HUGE_PAGE ((size_t)2 << 20)

void *aria_huge_alloc(size_t n) {
#ifdef HUGE_BY_MALLOC
    return calloc(n ? n : 1, 1);
#else
    if (n > SIZE_MAX - 2 * HUGE_PAGE) return NULL;
    size_t cap = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (!cap) cap = HUGE_PAGE;
    /* one huge page more than needed, trimmed on both sides so that the
       buffer starts on a 2 MiB boundary */
    uint8_t *raw = mmap(NULL, cap + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *mem = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (mem > raw) munmap(raw, (size_t)(mem - raw));
    munmap(mem + cap, (size_t)(raw + cap + HUGE_PAGE - (mem + cap)));
#ifdef MADV_HUGEPAGE
    madvise(mem, cap, MADV_HUGEPAGE); /* a hint: where refused, 4 KiB pages do */
#endif
    return mem;
#endif
}

void aria_huge_free(void *p, size_t n) {
    if (!p) return;
#ifdef HUGE_BY_MALLOC
    (void)n;
    free(p);
#else
    size_t cap = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    munmap(p, cap ? cap : HUGE_PAGE);
#endif
}

void aria_huge_readonly(void *p, size_t n) {
#ifdef HUGE_BY_MALLOC
    (void)p, (void)n;
#else
    size_t cap = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (p) mprotect(p, cap ? cap : HUGE_PAGE, PROT_READ);
#endif
}

int aria_grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / size) return -1;
        ncap *= 2;
    }
    void *p = realloc(*buf, ncap * size);
    if (!p) return -1;
    *buf = p;
    *cap = ncap;
    return 0;
}

static int64_t key_at(const unsigned char *base, size_t i, size_t size) {
    int64_t k;
    memcpy(&k, base + i * size, sizeof k);
    return k;
}

int aria_sort_by_i64_key(void *base, size_t n, size_t size) {
    unsigned char *a = base;
    size_t i;
    for (i = 1; i < n; i++)
        if (key_at(a, i - 1, size) > key_at(a, i, size)) break;
    if (i >= n) return 0; /* already sorted */

    unsigned char *tmp = malloc(n * size);
    if (!tmp) return -1;
    unsigned char *src = a, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t l = lo, r = mid, o = lo;
            while (l < mid && r < hi) {
                /* `<=` keeps equal keys in their original order */
                if (key_at(src, l, size) <= key_at(src, r, size))
                    memcpy(dst + o++ * size, src + l++ * size, size);
                else
                    memcpy(dst + o++ * size, src + r++ * size, size);
            }
            memcpy(dst + o * size, src + l * size, (mid - l) * size);
            o += mid - l;
            memcpy(dst + o * size, src + r * size, (hi - r) * size);
        }
        unsigned char *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * size);
    free(tmp);
    return 0;
}
