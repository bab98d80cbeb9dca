/*
 * kernels.c - the thread pool, the dispatch of matrix products and
 * attention to the code for this CPU, and the portable kernels: matrix
 * product (float32 and bfloat16 weights), LayerNorm, SwiGLU, RoPE and
 * causal attention in plain C.
 *
 * Dispatch: on first use (pthread_once) we look at the CPU (AVX-512
 * F/BW/VL/DQ -> kernels_avx512.c), whether oneDNN came up (kernels_dnnl.c, only in
 * builds with HAVE_DNNL) and the environment (ARIA_PRECISION,
 * ARIA_KERNELS); the choice is then read-only.
 *
 * The plain C matrix product keeps 16 independent partial sums per dot
 * product so the compiler can vectorise it without reassociating floats;
 * 4 x 1 blocks of (token, output) pairs reuse each loaded weight four
 * times. Its loops are compiled for AVX-512, AVX2 and plain x86-64 and the
 * best one is chosen when the program starts (GCC target_clones): this is
 * the path of CPUs without AVX-512.
 *
 * The pool: a job is a function and a task count; every thread, the
 * caller included, takes task indices until they run out, and the caller
 * returns when the tasks are done (see pool_slot). Between jobs a worker
 * spins for up to 200 microseconds before it sleeps on a condition
 * variable: a decoding step is ~100 short jobs with a little serial work
 * between them, and a futex wake-up per job would cost more than the
 * spinning.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define ARIA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ARIA_CLONES
#endif

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() atomic_signal_fence(memory_order_seq_cst)
#endif

/* How long a thread spins for the next job (worker) or for the workers to
   finish (caller) before it sleeps: longer than the serial work between
   two jobs of a decoding step, short enough not to matter when idle. */
#define POOL_SPIN_NS 200000

/* Products go to oneDNN only from this size: below it the portable
   kernels are as fast, and the tiny test models never leave them. */
#define DNNL_MIN_T 16
#define DNNL_MIN_DIM 256

/* ---------------------------------------------------------------------- */
/* Dispatch                                                               */
/* ---------------------------------------------------------------------- */

static struct {
    pthread_once_t once;
    int avx512;      /* kernels_avx512.c usable */
    int dnnl;        /* kernels_dnnl.c usable */
    kern_prec prec;  /* default precision */
    char desc[160];
} disp = {.once = PTHREAD_ONCE_INIT};

static void disp_init(void) {
    const char *k = getenv("ARIA_KERNELS"), *pr = getenv("ARIA_PRECISION");
    int generic = k && !strcmp(k, "generic");
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __builtin_cpu_init();
    /* every feature kernels_avx512.c is compiled for */
    disp.avx512 = !generic && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("fma");
#endif
    disp.prec = pr && !strcmp(pr, "exact") ? KERN_PREC_EXACT : KERN_PREC_FAST;
    char dn[96] = "";
    disp.dnnl = kern_dnnl_init(dn, sizeof dn) == 0;
    snprintf(disp.desc, sizeof disp.desc, "%s%s%s, default precision %s", disp.avx512 ? "avx512" : "generic C",
             disp.dnnl ? " + " : "", disp.dnnl ? dn : "", disp.prec == KERN_PREC_EXACT ? "exact" : "fast");
}

static void disp_get(void) { pthread_once(&disp.once, disp_init); }

const char *kern_backend(void) {
    disp_get();
    return disp.desc;
}

int kern_has_avx512(void) {
    disp_get();
    return disp.avx512;
}

int kern_has_dnnl(void) {
    disp_get();
    return disp.dnnl;
}

kern_prec kern_resolve_prec(kern_prec prec) {
    disp_get();
    return prec == KERN_PREC_DEFAULT ? disp.prec : prec;
}

int kern_uses_dnnl(int T, const kern_mat *W, kern_prec prec) {
    disp_get();
    if (prec == KERN_PREC_DEFAULT) prec = disp.prec;
    return disp.dnnl && prec == KERN_PREC_FAST && T >= DNNL_MIN_T && W->rows >= DNNL_MIN_DIM &&
           W->cols >= DNNL_MIN_DIM;
}

/* ---------------------------------------------------------------------- */
/* Thread pool                                                            */
/* ---------------------------------------------------------------------- */

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
    for (;;) {
        pool_slot *s = &p->slot[(t >> 32) & 1];
        size_t i = (uint32_t)t, n = atomic_load_explicit(&s->n, memory_order_relaxed);
        void (*fn)(void *, size_t) = atomic_load_explicit(&s->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
        if (i >= n) return;
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
    if (!p || p->n <= 1 || n_tasks <= 1 || n_tasks >= UINT32_MAX) {
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

/* ---------------------------------------------------------------------- */
/* Matrix product                                                         */
/* ---------------------------------------------------------------------- */

#define LANES 16

static inline float bf16_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float hsum(const float *a) {
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += a[l];
    return s;
}

/* One output column block [o0, o1) for all T tokens. The float32 and
   bfloat16 versions share this body and differ only in how a weight is
   loaded (LOAD widens a bfloat16 as it is read). */
#define DEFINE_MM_BLOCK(NAME, WTYPE, LOAD)                                                               \
    ARIA_CLONES                                                                                          \
    static void NAME(const float *x, int T, const WTYPE *W, int cols, int o0, int o1, float *y,          \
                     int ystride, int acc) {                                                             \
        int kv = cols / LANES * LANES;                                                                   \
        int t = 0;                                                                                       \
        for (; t + 4 <= T; t += 4) {                                                                     \
            const float *x0 = x + (size_t)t * cols, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols;   \
            for (int o = o0; o < o1; o++) {                                                              \
                const WTYPE *w = W + (size_t)o * cols;                                                   \
                float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};                \
                for (int k = 0; k < kv; k += LANES)                                                      \
                    for (int l = 0; l < LANES; l++) {                                                    \
                        float wk = LOAD(w[k + l]);                                                       \
                        a0[l] += x0[k + l] * wk;                                                         \
                        a1[l] += x1[k + l] * wk;                                                         \
                        a2[l] += x2[k + l] * wk;                                                         \
                        a3[l] += x3[k + l] * wk;                                                         \
                    }                                                                                    \
                float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);                        \
                for (int k = kv; k < cols; k++) {                                                        \
                    float wk = LOAD(w[k]);                                                               \
                    s0 += x0[k] * wk;                                                                    \
                    s1 += x1[k] * wk;                                                                    \
                    s2 += x2[k] * wk;                                                                    \
                    s3 += x3[k] * wk;                                                                    \
                }                                                                                        \
                float *yo = y + (size_t)t * ystride + o;                                                 \
                size_t st = (size_t)ystride;                                                             \
                if (acc) {                                                                               \
                    yo[0] += s0, yo[st] += s1, yo[2 * st] += s2, yo[3 * st] += s3;                       \
                } else {                                                                                 \
                    yo[0] = s0, yo[st] = s1, yo[2 * st] = s2, yo[3 * st] = s3;                           \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (; t < T; t++) {                                                                             \
            const float *x0 = x + (size_t)t * cols;                                                      \
            for (int o = o0; o < o1; o++) {                                                              \
                const WTYPE *w = W + (size_t)o * cols;                                                   \
                float a0[LANES] = {0};                                                                   \
                for (int k = 0; k < kv; k += LANES)                                                      \
                    for (int l = 0; l < LANES; l++) a0[l] += x0[k + l] * LOAD(w[k + l]);                 \
                float s0 = hsum(a0);                                                                     \
                for (int k = kv; k < cols; k++) s0 += x0[k] * LOAD(w[k]);                                \
                float *yo = y + (size_t)t * ystride + o;                                                 \
                *yo = acc ? *yo + s0 : s0;                                                               \
            }                                                                                            \
        }                                                                                                \
    }

#define LOAD_F32(v) (v)
DEFINE_MM_BLOCK(mm_f32_block, float, LOAD_F32)
DEFINE_MM_BLOCK(mm_bf16_block, uint16_t, bf16_f32)
#undef LOAD_F32
#undef DEFINE_MM_BLOCK

typedef struct {
    const float *x;
    size_t xs;             /* row stride of x */
    int T;
    const kern_mat *W;
    float *y;
    int acc;
    int cols_per_task;
    int avx512;
} mm_job;

/* Columns [o0, o1) for tokens [0, T) in blocks of 64: a task's weight
   rows stay in cache while the tokens stream past; with T <= 64 (decoding)
   every weight is read from memory once. */
static void mm_cols(const mm_job *j, int o0, int o1) {
    const kern_mat *W = j->W;
    for (int t = 0; t < j->T; t += 64) {
        int nt = j->T - t < 64 ? j->T - t : 64;
        const float *xt = j->x + (size_t)t * j->xs;
        float *yt = j->y + (size_t)t * W->rows;
        if (j->avx512)
            kern_avx512_matmul_block(xt, j->xs, nt, W, o0, o1, yt, W->rows, j->acc);
        else if (W->dtype == ARIA_DT_BF16)
            mm_bf16_block(xt, nt, W->data, W->cols, o0, o1, yt, W->rows, j->acc);
        else
            mm_f32_block(xt, nt, W->data, W->cols, o0, o1, yt, W->rows, j->acc);
    }
}

static void mm_task(void *ctx, size_t i) {
    const mm_job *j = ctx;
    int o0 = (int)i * j->cols_per_task;
    int o1 = o0 + j->cols_per_task < j->W->rows ? o0 + j->cols_per_task : j->W->rows;
    mm_cols(j, o0, o1);
}

/* Floats of x the AVX-512 bfloat16 kernel may take from the stack. */
#define XP_STACK 16384

/* A job over x; for the AVX-512 bfloat16 kernel x is deinterleaved into
   buf (XP_STACK floats) or, when larger, into *heap (free it). Without
   memory for that copy the plain C kernel does the product. */
static void mm_prepare(mm_job *j, const float *x, int T, const kern_mat *W, float *y, int acc, float *buf,
                       float **heap) {
    *j = (mm_job){x, (size_t)W->cols, T, W, y, acc, W->rows, disp.avx512};
    *heap = NULL;
    if (j->avx512 && W->dtype == ARIA_DT_BF16) {
        size_t xs = kern_bf16_stride(W->cols), n = (size_t)T * xs;
        float *xp = n <= XP_STACK ? buf : (*heap = malloc(n * sizeof *xp));
        if (!xp) {
            j->avx512 = 0;
            return;
        }
        kern_avx512_deinterleave(x, T, W->cols, xp);
        j->x = xp;
        j->xs = xs;
    }
}

void kern_portable_cols(const float *x, int T, const kern_mat *W, int o0, int o1, float *y, int acc) {
    disp_get();
    float buf[XP_STACK], *heap;
    mm_job j;
    mm_prepare(&j, x, T, W, y, acc, buf, &heap);
    mm_cols(&j, o0, o1);
    free(heap);
}

void kern_to_bf16(const float *x, uint16_t *out, size_t n) {
    disp_get();
    if (disp.avx512) {
        kern_avx512_to_bf16(x, out, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        out[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)(u >> 16 | 0x0040u)
                                                 : (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
    }
}

static void matmul_portable(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate) {
    /* tasks of about 64 KB of weights (a multiple of 16 rows): enough of
       them that the threads finish a product together (decoding waits for
       the slowest), big enough that taking one costs nothing */
    size_t row_bytes = (size_t)W->cols * (W->dtype == ARIA_DT_BF16 ? 2 : 4);
    int per = (int)((65536 + row_bytes - 1) / row_bytes);
    per = (per + 15) / 16 * 16;
    if (per > W->rows) per = (W->rows + 15) / 16 * 16;
    float buf[XP_STACK], *heap;
    mm_job j;
    mm_prepare(&j, x, T, W, y, accumulate, buf, &heap);
    j.cols_per_task = per;
    aria_pool_run(p, mm_task, &j, (size_t)((W->rows + per - 1) / per));
    free(heap);
}

void kern_matmul_prec(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate,
                      kern_prec prec) {
    if (T <= 0 || W->rows <= 0) return;
    disp_get();
    if (kern_uses_dnnl(T, W, prec) && kern_dnnl_matmul(p, x, T, W, y, accumulate) == 0) return;
    matmul_portable(p, x, T, W, y, accumulate);
}

void kern_matmul(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate) {
    kern_matmul_prec(p, x, T, W, y, accumulate, KERN_PREC_DEFAULT);
}

void kern_mat_release(kern_mat *W) {
    kern_packed *pk = atomic_exchange(&W->packed, NULL);
    if (pk) kern_dnnl_release(pk);
}

void kern_row_f32(const kern_mat *W, int r, float *out) {
    if (W->dtype == ARIA_DT_BF16) {
        const uint16_t *w = (const uint16_t *)W->data + (size_t)r * W->cols;
        for (int k = 0; k < W->cols; k++) out[k] = bf16_f32(w[k]);
    } else {
        memcpy(out, (const float *)W->data + (size_t)r * W->cols, (size_t)W->cols * sizeof *out);
    }
}

/* ---------------------------------------------------------------------- */
/* Small ops                                                              */
/* ---------------------------------------------------------------------- */

void kern_layernorm(const float *x, const float *w, const float *b, float *y, int T, int d, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < d; i++) mean += xr[i];
        mean /= d;
        for (int i = 0; i < d; i++) {
            double c = xr[i] - mean;
            var += c * c;
        }
        var /= d;
        float inv = (float)(1.0 / sqrt(var + eps));
        float m = (float)mean;
        for (int i = 0; i < d; i++) yr[i] = (xr[i] - m) * inv * w[i] + b[i];
    }
}

void kern_swiglu(float *g, const float *u, size_t n) {
    disp_get();
    if (disp.avx512) {
        kern_avx512_swiglu(g, u, n);
        return;
    }
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Pooled versions: rows (or elements) in tasks big enough that a task
   outweighs its dispatch; below two tasks' worth the caller does it all. */
#define ROWS_PER_TASK 16
#define ELEMS_PER_TASK 65536

typedef struct {
    const float *x, *w, *b;
    float *y;
    int T, d, n_heads, head_dim, row_stride, pos0;
    float eps;
    const float *cs;
    const float *u;
    size_t n;
} small_job;

static void ln_task(void *ctx, size_t i) {
    const small_job *j = ctx;
    int t0 = (int)i * ROWS_PER_TASK, n = j->T - t0 < ROWS_PER_TASK ? j->T - t0 : ROWS_PER_TASK;
    kern_layernorm(j->x + (size_t)t0 * j->d, j->w, j->b, j->y + (size_t)t0 * j->d, n, j->d, j->eps);
}

void kern_layernorm_pool(aria_pool *p, const float *x, const float *w, const float *b, float *y, int T, int d,
                         float eps) {
    if (T < 2 * ROWS_PER_TASK) {
        kern_layernorm(x, w, b, y, T, d, eps);
        return;
    }
    small_job j = {.x = x, .w = w, .b = b, .y = y, .T = T, .d = d, .eps = eps};
    aria_pool_run(p, ln_task, &j, (size_t)(T + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
}

static void swiglu_task(void *ctx, size_t i) {
    const small_job *j = ctx;
    size_t a = i * ELEMS_PER_TASK, n = j->n - a < ELEMS_PER_TASK ? j->n - a : ELEMS_PER_TASK;
    kern_swiglu(j->y + a, j->u + a, n);
}

void kern_swiglu_pool(aria_pool *p, float *g, const float *u, size_t n) {
    if (n < 2 * ELEMS_PER_TASK) {
        kern_swiglu(g, u, n);
        return;
    }
    small_job j = {.y = g, .u = u, .n = n};
    aria_pool_run(p, swiglu_task, &j, (n + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK);
}

static void rope_task(void *ctx, size_t i) {
    const small_job *j = ctx;
    int t0 = (int)i * ROWS_PER_TASK, n = j->T - t0 < ROWS_PER_TASK ? j->T - t0 : ROWS_PER_TASK;
    kern_rope(j->y + (size_t)t0 * j->row_stride, n, j->n_heads, j->head_dim, j->row_stride, j->cs, j->pos0 + t0);
}

void kern_rope_pool(aria_pool *p, float *x, int T, int n_heads, int head_dim, int row_stride, const float *cs,
                    int pos0) {
    if (T < 2 * ROWS_PER_TASK) {
        kern_rope(x, T, n_heads, head_dim, row_stride, cs, pos0);
        return;
    }
    small_job j = {.y = x, .T = T, .n_heads = n_heads, .head_dim = head_dim, .row_stride = row_stride,
                   .cs = cs, .pos0 = pos0};
    aria_pool_run(p, rope_task, &j, (size_t)(T + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
}

float *kern_rope_table(int max_pos, int head_dim, double base) {
    int half = head_dim / 2;
    float *tab = malloc((size_t)max_pos * half * 2 * sizeof *tab);
    if (!tab) return NULL;
    for (int i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)head_dim;
        float theta = 1.0f / powf((float)base, expo);
        for (int t = 0; t < max_pos; t++) {
            float a = (float)t * theta;
            tab[((size_t)t * half + i) * 2] = cosf(a);
            tab[((size_t)t * half + i) * 2 + 1] = sinf(a);
        }
    }
    return tab;
}

void kern_rope(float *x, int T, int n_heads, int head_dim, int row_stride, const float *cs, int pos0) {
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)(pos0 + t) * half * 2;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * row_stride + h * head_dim;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], co = c[2 * i], si = c[2 * i + 1];
                v[i] = x1 * co - x2 * si;
                v[i + half] = x2 * co + x1 * si;
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Attention                                                              */
/* ---------------------------------------------------------------------- */

/* Keys per block of the online softmax: the block's scores live on the
   stack. */
#define ATT_KB 64
/* Queries per task. */
#define ATT_TB 32

typedef struct {
    const float *q, *k, *v;
    float *out;
    int q_stride, out_stride, cap, B, T, H, hd, pos0, avx512;
} attn_job;

/* One query against keys [0, n_keys): the output row is the running
   weighted sum, rescaled whenever a block raises the running maximum. */
ARIA_CLONES
static void attn_one(const float *q, const float *K, const float *V, int n_keys, int hd, float scale, float *o) {
    float m = -INFINITY, l = 0.0f, sc[ATT_KB];
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int s0 = 0; s0 < n_keys; s0 += ATT_KB) {
        int n = n_keys - s0 < ATT_KB ? n_keys - s0 : ATT_KB;
        float bm = -INFINITY;
        for (int s = 0; s < n; s++) {
            const float *kr = K + (size_t)(s0 + s) * hd;
            float dot = 0.0f;
            for (int i = 0; i < hd; i++) dot += q[i] * kr[i];
            sc[s] = dot * scale;
            if (sc[s] > bm) bm = sc[s];
        }
        if (bm > m) {
            if (m != -INFINITY) {
                float r = expf(m - bm);
                l *= r;
                for (int i = 0; i < hd; i++) o[i] *= r;
            }
            m = bm;
        }
        for (int s = 0; s < n; s++) {
            const float *vr = V + (size_t)(s0 + s) * hd;
            float p = expf(sc[s] - m);
            l += p;
            for (int i = 0; i < hd; i++) o[i] += p * vr[i];
        }
    }
    float inv = 1.0f / l;
    for (int i = 0; i < hd; i++) o[i] *= inv;
}

/* Task: one (row, head, block of queries). */
static void attn_task(void *ctx, size_t i) {
    const attn_job *j = ctx;
    int n_tb = (j->T + ATT_TB - 1) / ATT_TB;
    int tb = (int)(i % (size_t)n_tb);
    int h = (int)(i / (size_t)n_tb % (size_t)j->H);
    int b = (int)(i / (size_t)n_tb / (size_t)j->H);
    int t0 = tb * ATT_TB, t1 = t0 + ATT_TB < j->T ? t0 + ATT_TB : j->T;
    const float *K = j->k + ((size_t)b * j->H + h) * j->cap * j->hd;
    const float *V = j->v + ((size_t)b * j->H + h) * j->cap * j->hd;
    const float *q = j->q + (size_t)b * j->T * j->q_stride + h * j->hd;
    float *out = j->out + (size_t)b * j->T * j->out_stride + h * j->hd;
    float scale = 1.0f / sqrtf((float)j->hd);
    if (j->avx512) {
        kern_avx512_attention(q, j->q_stride, K, V, t0, t1, j->hd, j->pos0, scale, out, j->out_stride);
        return;
    }
    for (int t = t0; t < t1; t++)
        attn_one(q + (size_t)t * j->q_stride, K, V, j->pos0 + t + 1, j->hd, scale, out + (size_t)t * j->out_stride);
}

void kern_attention(aria_pool *p, const float *q, int q_stride, const float *k, const float *v,
                    int cap, int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride) {
    disp_get();
    int avx = disp.avx512 && (hd == 16 || hd == 32 || hd == 64 || hd == 128 || hd == 256);
    attn_job j = {q, k, v, out, q_stride, out_stride, cap, B, T, n_heads, hd, pos0, avx};
    size_t n_tb = (size_t)((T + ATT_TB - 1) / ATT_TB);
    aria_pool_run(p, attn_task, &j, (size_t)B * n_heads * n_tb);
}
