/*
 * bench_common.h - helpers shared by the C benchmarks (bench_model.c,
 * bench_train.c): wall and CPU clocks, median / min / max of repeated
 * measurements and the RESULT lines bench/run_*.sh read, peak RSS, and a
 * fast xorshift64* generator.
 *
 * Output format of a measurement of n repetitions and of a single value:
 *   RESULT <metric> <median> <unit> min=<x> max=<y> n=<reps>
 *   RESULT <metric> <value> <unit>
 */
#ifndef ARIA_BENCH_COMMON_H
#define ARIA_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* the most repetitions stats_of takes */
#define BENCH_MAX_REPS 1024

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process (all threads) */
static inline double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static inline int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double med, min, max;
    int n;
} stats;

/* median, min and max of v[0..n), 1 <= n <= BENCH_MAX_REPS; sorts a copy */
static inline stats stats_of(const double *v, int n) {
    double s[BENCH_MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    stats r = {n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], s[n - 1], n};
    return r;
}

static inline void result(const char *metric, stats s, const char *unit) {
    printf("RESULT %s %.6g %s min=%.6g max=%.6g n=%d\n", metric, s.med, unit, s.min, s.max, s.n);
    fflush(stdout);
}

static inline void result1(const char *metric, double v, const char *unit) {
    printf("RESULT %s %.6g %s\n", metric, v, unit);
    fflush(stdout);
}

/* VmHWM of this process, kB (0 without /proc) */
static inline double vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb;
}

/* xorshift64*: fast, good enough for random weights and token ids; one
   fixed sequence per process */
static inline uint64_t rnd(void) {
    static uint64_t state = 0x9e3779b97f4a7c15ull;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
}

#endif
