/*
 * pool.c - the thread pool (see pool.h).
 *
 * A job is a function and a task count; every thread, the caller
 * included, takes task indices until they run out, and the caller returns
 * when the tasks are done (see pool_slot). Between jobs a worker spins for
 * up to 200 microseconds before it sleeps on a condition variable: a
 * decoding step is ~100 short jobs with a little serial work between
 * them, and a futex wake-up per job would cost more than the spinning.
 *
 * A thread that is running a task runs any job it starts itself serially
 * (in_task): kernels called from inside a task (the blocked attention
 * calls the bfloat16 conversion, say) would otherwise wait for a pool that
 * is busy with their own caller.
 */
#include "kernels/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(ARIA_PORTABLE)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() atomic_signal_fence(memory_order_seq_cst)
#endif

/* How long a thread spins for the next job (worker) or for the workers to
   finish (caller) before it sleeps: longer than the serial work between
   two jobs of a decoding step, short enough not to matter when idle. */
#define POOL_SPIN_NS 200000

/* Tasks this thread is running (0 outside the pool's jobs). */
static _Thread_local int in_task;

/* A job lives in one of two slots (generation & 1). Tasks are claimed
   with a compare-and-swap on `ticket` = generation << 32 | next task, so a
   worker that read a slot of an older generation can never run one of its
   tasks: its swap fails. The caller waits for the job's tasks to be done,
   not for every worker to check in, so a worker the OS has descheduled
   delays nothing unless it holds a task. */
typedef struct {
    _Atomic(void (*)(void *, size_t)) fn;
    void *_Atomic ctx;
    atomic_size_t n, done;
} pool_slot;

struct aria_pool {
    int n;                   /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t run;     /* one job at a time (sessions may share a model) */
    pthread_mutex_t lock;    /* for sleeping and waking only */
    pthread_cond_t wake, done;
    _Atomic uint64_t ticket;
    pool_slot slot[2];
    atomic_int quit, sleepers, caller_waits;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until cond(p, arg) holds or POOL_SPIN_NS pass; returns cond.
   After the first 20 us it yields the CPU at every look at the clock: on
   a machine shared with other work the thread we wait for may need this
   CPU to finish. */
static int spin_until(aria_pool *p, int (*cond)(aria_pool *, uint64_t), uint64_t arg) {
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        if (cond(p, arg)) return 1;
        if ((i & 63) == 63) { /* the clock every 64 turns */
            uint64_t t = now_ns();
            if (!t0) {
                t0 = t;
            } else if (t - t0 > POOL_SPIN_NS) {
                return 0;
            } else if (t - t0 > 20000) {
                sched_yield();
                continue;
            }
        }
        CPU_RELAX();
    }
}

static int new_job(aria_pool *p, uint64_t seen) {
    return (uint32_t)(atomic_load(&p->ticket) >> 32) != (uint32_t)seen || atomic_load(&p->quit);
}

static int job_done(aria_pool *p, uint64_t g) {
    const pool_slot *s = &p->slot[g & 1];
    return atomic_load(&s->done) == atomic_load_explicit(&s->n, memory_order_relaxed);
}

/* Takes and runs tasks of the job in `t` (a ticket value) and of any job
   published meanwhile, until none is left. */
static void pool_work(aria_pool *p, uint64_t t) {
    in_task++;
    for (;;) {
        pool_slot *s = &p->slot[(t >> 32) & 1];
        size_t i = (uint32_t)t, n = atomic_load_explicit(&s->n, memory_order_relaxed);
        void (*fn)(void *, size_t) = atomic_load_explicit(&s->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
        if (i >= n) break;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue; /* t is reloaded */
        fn(ctx, i);
        /* seq_cst: either we see caller_waits, or the caller sees done == n */
        if (atomic_fetch_add(&s->done, 1) + 1 == n && atomic_load(&p->caller_waits)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_broadcast(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
        t = atomic_load(&p->ticket);
    }
    in_task--;
}

static void *pool_worker(void *arg) {
    aria_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        if (!spin_until(p, new_job, seen)) {
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (!new_job(p, seen)) pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->quit)) break;
        uint64_t t = atomic_load(&p->ticket);
        seen = (uint32_t)(t >> 32);
        pool_work(p, t);
    }
    return NULL;
}

aria_pool *aria_pool_new(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    aria_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->run, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
            p->n = i; /* run with what started */
            break;
        }
    }
    return p;
}

void aria_pool_free(aria_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->run);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int aria_pool_size(const aria_pool *p) { return p ? p->n : 1; }

void aria_pool_run(aria_pool *p, void (*fn)(void *, size_t), void *ctx, size_t n_tasks) {
    if (!p || p->n <= 1 || n_tasks <= 1 || n_tasks >= UINT32_MAX || in_task) {
        for (size_t i = 0; i < n_tasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->run);
    uint32_t g = (uint32_t)(atomic_load(&p->ticket) >> 32) + 1;
    pool_slot *s = &p->slot[g & 1];
    atomic_store_explicit(&s->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&s->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&s->n, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&s->done, 0, memory_order_relaxed);
    atomic_store(&p->ticket, (uint64_t)g << 32); /* publishes the slot */
    /* seq_cst: a worker going to sleep either sees the ticket or is counted */
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    pool_work(p, (uint64_t)g << 32);
    if (!spin_until(p, job_done, g)) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_waits, 1);
        while (!job_done(p, g)) pthread_cond_wait(&p->done, &p->lock);
        atomic_store(&p->caller_waits, 0);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&p->run);
}
