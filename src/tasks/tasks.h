/*
 * tasks.h - helpers shared by the files of src/tasks (batch.c holds
 * them). Internal header; not part of the public API.
 */
#ifndef ARIA_TASKS_H
#define ARIA_TASKS_H

#include <stddef.h>

#define TASKS_MAX_JOBS 256

/* Threads for `jobs` (0 or less: one per online CPU), at most
   TASKS_MAX_JOBS. */
int tasks_jobs(int jobs);

/* fn(ctx, i) for every i in [0, n), on up to `jobs` threads, the calling
   thread one of them; returns when all are done. Items are handed out in
   order, one at a time, so a slow file does not hold up a fixed share. If
   no thread can be started the calling thread does everything. */
void tasks_parallel_for(size_t n, int jobs, void (*fn)(void *ctx, size_t i), void *ctx);

#endif
