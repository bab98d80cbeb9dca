/*
 * kernels.c - portable CPU kernels: thread pool, matrix product (float32
 * and bfloat16 weights), LayerNorm, SwiGLU, RoPE and causal attention.
 *
 * The matrix product keeps 16 independent partial sums per dot product so
 * the compiler can vectorise it without reassociating floats; 4 x 4 blocks
 * of (token, output) pairs reuse each loaded vector four times. Hot loops
 * are compiled for AVX-512, AVX2 and plain x86-64 and the best one is
 * chosen when the program starts (GCC target_clones).
 *
 * The pool: workers sleep on a condition variable; a job is a function and
 * a task count; every thread, the caller included, takes task indices from
 * an atomic counter until they run out.
 */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define ARIA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ARIA_CLONES
#endif

/* ---------------------------------------------------------------------- */
/* Thread pool                                                            */
/* ---------------------------------------------------------------------- */

struct aria_pool {
    int n;                 /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    uint64_t generation;   /* bumped per job */
    int quit;
    void (*fn)(void *, size_t);
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
    int busy;              /* workers still inside the current job */
};

static void pool_drain(aria_pool *p) {
    size_t i;
    while ((i = atomic_fetch_add(&p->next, 1)) < p->n_tasks) p->fn(p->ctx, i);
}

static void *pool_worker(void *arg) {
    aria_pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->wake, &p->lock);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        pool_drain(p);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
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
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int aria_pool_size(const aria_pool *p) { return p ? p->n : 1; }

void aria_pool_run(aria_pool *p, void (*fn)(void *, size_t), void *ctx, size_t n_tasks) {
    if (!p || p->n <= 1 || n_tasks <= 1) {
        for (size_t i = 0; i < n_tasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->busy = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pool_drain(p);
    pthread_mutex_lock(&p->lock);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
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

/* One output column block [o0, o1) for all T tokens, float32 weights. */
ARIA_CLONES
static void mm_f32_block(const float *x, int T, const float *W, int cols, int o0, int o1,
                         float *y, int ystride, int acc) {
    int kv = cols / LANES * LANES;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const float *x0 = x + (size_t)t * cols, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols;
        for (int o = o0; o < o1; o++) {
            const float *w = W + (size_t)o * cols;
            float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
            for (int k = 0; k < kv; k += LANES)
                for (int l = 0; l < LANES; l++) {
                    float wk = w[k + l];
                    a0[l] += x0[k + l] * wk;
                    a1[l] += x1[k + l] * wk;
                    a2[l] += x2[k + l] * wk;
                    a3[l] += x3[k + l] * wk;
                }
            float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
            for (int k = kv; k < cols; k++) {
                s0 += x0[k] * w[k];
                s1 += x1[k] * w[k];
                s2 += x2[k] * w[k];
                s3 += x3[k] * w[k];
            }
            float *yo = y + (size_t)t * ystride + o;
            if (acc) {
                yo[0] += s0, yo[ystride] += s1, yo[2 * (size_t)ystride] += s2, yo[3 * (size_t)ystride] += s3;
            } else {
                yo[0] = s0, yo[ystride] = s1, yo[2 * (size_t)ystride] = s2, yo[3 * (size_t)ystride] = s3;
            }
        }
    }
    for (; t < T; t++) {
        const float *x0 = x + (size_t)t * cols;
        for (int o = o0; o < o1; o++) {
            const float *w = W + (size_t)o * cols;
            float a0[LANES] = {0};
            for (int k = 0; k < kv; k += LANES)
                for (int l = 0; l < LANES; l++) a0[l] += x0[k + l] * w[k + l];
            float s0 = hsum(a0);
            for (int k = kv; k < cols; k++) s0 += x0[k] * w[k];
            float *yo = y + (size_t)t * ystride + o;
            *yo = acc ? *yo + s0 : s0;
        }
    }
}

/* The same for bfloat16 weights, widened as they are loaded. */
ARIA_CLONES
static void mm_bf16_block(const float *x, int T, const uint16_t *W, int cols, int o0, int o1,
                          float *y, int ystride, int acc) {
    int kv = cols / LANES * LANES;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const float *x0 = x + (size_t)t * cols, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols;
        for (int o = o0; o < o1; o++) {
            const uint16_t *w = W + (size_t)o * cols;
            float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
            for (int k = 0; k < kv; k += LANES)
                for (int l = 0; l < LANES; l++) {
                    float wk = bf16_f32(w[k + l]);
                    a0[l] += x0[k + l] * wk;
                    a1[l] += x1[k + l] * wk;
                    a2[l] += x2[k + l] * wk;
                    a3[l] += x3[k + l] * wk;
                }
            float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
            for (int k = kv; k < cols; k++) {
                float wk = bf16_f32(w[k]);
                s0 += x0[k] * wk;
                s1 += x1[k] * wk;
                s2 += x2[k] * wk;
                s3 += x3[k] * wk;
            }
            float *yo = y + (size_t)t * ystride + o;
            if (acc) {
                yo[0] += s0, yo[ystride] += s1, yo[2 * (size_t)ystride] += s2, yo[3 * (size_t)ystride] += s3;
            } else {
                yo[0] = s0, yo[ystride] = s1, yo[2 * (size_t)ystride] = s2, yo[3 * (size_t)ystride] = s3;
            }
        }
    }
    for (; t < T; t++) {
        const float *x0 = x + (size_t)t * cols;
        for (int o = o0; o < o1; o++) {
            const uint16_t *w = W + (size_t)o * cols;
            float a0[LANES] = {0};
            for (int k = 0; k < kv; k += LANES)
                for (int l = 0; l < LANES; l++) a0[l] += x0[k + l] * bf16_f32(w[k + l]);
            float s0 = hsum(a0);
            for (int k = kv; k < cols; k++) s0 += x0[k] * bf16_f32(w[k]);
            float *yo = y + (size_t)t * ystride + o;
            *yo = acc ? *yo + s0 : s0;
        }
    }
}

typedef struct {
    const float *x;
    int T;
    const kern_mat *W;
    float *y;
    int acc;
    int cols_per_task;
    int t_block;
} mm_job;

/* Task i: a block of output columns; tokens in blocks of t_block so the
   block's weight rows stay in cache while the tokens stream past. */
static void mm_task(void *ctx, size_t i) {
    const mm_job *j = ctx;
    int o0 = (int)i * j->cols_per_task;
    int o1 = o0 + j->cols_per_task < j->W->rows ? o0 + j->cols_per_task : j->W->rows;
    int cols = j->W->cols;
    for (int t = 0; t < j->T; t += j->t_block) {
        int nt = j->T - t < j->t_block ? j->T - t : j->t_block;
        const float *x = j->x + (size_t)t * cols;
        float *y = j->y + (size_t)t * j->W->rows;
        if (j->W->dtype == ARIA_DT_BF16)
            mm_bf16_block(x, nt, j->W->data, cols, o0, o1, y, j->W->rows, j->acc);
        else
            mm_f32_block(x, nt, j->W->data, cols, o0, o1, y, j->W->rows, j->acc);
    }
}

void kern_matmul(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate) {
    if (T <= 0 || W->rows <= 0) return;
    int threads = aria_pool_size(p);
    /* enough tasks to balance, each a multiple of 16 columns */
    int per = (W->rows + threads * 8 - 1) / (threads * 8);
    per = (per + 15) / 16 * 16;
    if (per < 16) per = 16;
    mm_job j = {x, T, W, y, accumulate, per, 64};
    size_t tasks = (size_t)((W->rows + per - 1) / per);
    aria_pool_run(p, mm_task, &j, tasks);
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
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
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

typedef struct {
    const float *q, *k, *v;
    float *out;
    int q_stride, out_stride, cap, B, T, H, hd, pos0, t_block;
} attn_job;

ARIA_CLONES
static void attn_one(const float *q, const float *K, const float *V, int n_keys, int hd,
                     float scale, float *o, float *scores) {
    float mx = -INFINITY;
    for (int s = 0; s < n_keys; s++) {
        const float *kr = K + (size_t)s * hd;
        float dot = 0.0f;
        for (int i = 0; i < hd; i++) dot += q[i] * kr[i];
        dot *= scale;
        scores[s] = dot;
        if (dot > mx) mx = dot;
    }
    float sum = 0.0f;
    for (int s = 0; s < n_keys; s++) {
        scores[s] = expf(scores[s] - mx);
        sum += scores[s];
    }
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int s = 0; s < n_keys; s++) {
        const float *vr = V + (size_t)s * hd;
        float p = scores[s];
        for (int i = 0; i < hd; i++) o[i] += p * vr[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) o[i] *= inv;
}

/* Task: one (row, head, block of queries). The scores of one query live
   in a per-task scratch of n_keys floats: memory grows with the context,
   not its square. */
static void attn_task(void *ctx, size_t i) {
    const attn_job *j = ctx;
    int n_tb = (j->T + j->t_block - 1) / j->t_block;
    int tb = (int)(i % (size_t)n_tb);
    int h = (int)(i / (size_t)n_tb % (size_t)j->H);
    int b = (int)(i / (size_t)n_tb / (size_t)j->H);
    int t0 = tb * j->t_block, t1 = t0 + j->t_block < j->T ? t0 + j->t_block : j->T;
    const float *K = j->k + ((size_t)b * j->H + h) * j->cap * j->hd;
    const float *V = j->v + ((size_t)b * j->H + h) * j->cap * j->hd;
    float *scores = malloc((size_t)(j->pos0 + j->T) * sizeof *scores);
    if (!scores) abort(); /* a few KB: nothing sensible to do without it */
    float scale = 1.0f / sqrtf((float)j->hd);
    for (int t = t0; t < t1; t++) {
        const float *q = j->q + ((size_t)b * j->T + t) * j->q_stride + h * j->hd;
        float *o = j->out + ((size_t)b * j->T + t) * j->out_stride + h * j->hd;
        attn_one(q, K, V, j->pos0 + t + 1, j->hd, scale, o, scores);
    }
    free(scores);
}

void kern_attention(aria_pool *p, const float *q, int q_stride, const float *k, const float *v,
                    int cap, int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride) {
    attn_job j = {q, k, v, out, q_stride, out_stride, cap, B, T, n_heads, hd, pos0, 16};
    size_t n_tb = (size_t)((T + j.t_block - 1) / j.t_block);
    aria_pool_run(p, attn_task, &j, (size_t)B * n_heads * n_tb);
}
