/*
 * pool.h - the thread pool every kernel runs on, and the scratch memory
 * the kernels borrow instead of allocating. Both sit below the backends:
 * a backend may run tasks on the pool and take scratch, and knows nothing
 * else of the context that owns them.
 *
 * Internal header; not part of the public API.
 */
#ifndef ARIA_KERNELS_POOL_H
#define ARIA_KERNELS_POOL_H

#include <stddef.h>

/* ---- thread pool ---------------------------------------------------- */

typedef struct aria_pool aria_pool;

/* n_threads <= 0: one per online CPU. NULL when out of memory. */
aria_pool *aria_pool_new(int n_threads);
void aria_pool_free(aria_pool *p);
int aria_pool_size(const aria_pool *p);
/* Runs fn(ctx, i) for i in [0, n_tasks) on the pool's threads and the
   caller's; returns when all are done. NULL pool: runs serially; so does a
   call made from inside a task (a nested job would wait on itself).
   Workers spin briefly after a job before they sleep, so the many short
   jobs of a decoding step do not each pay a wake-up. */
void aria_pool_run(aria_pool *p, void (*fn)(void *ctx, size_t i), void *ctx, size_t n_tasks);

/* ---- scratch memory ------------------------------------------------- */

/* A few large buffers kept between uses (fresh memory for every product
   costs page faults); owned by a context and freed with it. */
typedef struct kern_scratch kern_scratch;

kern_scratch *kern_scratch_new(void);
void kern_scratch_free(kern_scratch *s);
/* A buffer of at least `bytes` (64-byte aligned), or NULL when out of
   memory; give it back with kern_scratch_put. Several threads may hold
   buffers at once. */
void *kern_scratch_get(kern_scratch *s, size_t bytes);
void kern_scratch_put(kern_scratch *s, void *p);
/* Frees the buffers nobody holds. */
void kern_scratch_trim(kern_scratch *s);

#endif
