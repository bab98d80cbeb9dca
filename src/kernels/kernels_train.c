/*
 * kernels_train.c - the general matrix product and the softmax and SwiGLU
 * pieces the trainer needs (src/train.c); the inference kernels are in
 * kernels.c.
 *
 * kern_gemm takes either storage order of either operand, as a backward
 * pass needs (dx = dy W, dW += dy^T x). Its fast path rounds both operands
 * to bfloat16 copies (in their stored order, split over the pool) and hands
 * them to oneDNN; the float32 path is plain loops in a fixed order, split
 * by rows of C, so a given build always gives the same bits.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---------------------------------------------------------------------- */
/* float32 loops                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, acc;
    const float *A, *B;
    float *C;
    float alpha;
} f32_job;

#define ROWS 8

/* Rows [m0, m1) of C. a holds one row of op(A) at a time. */
static void f32_rows(const f32_job *j, int m0, int m1, float *a) {
    for (int m = m0; m < m1; m++) {
        const float *ar;
        if (j->ta) {
            for (int k = 0; k < j->K; k++) a[k] = j->A[(size_t)k * j->lda + m];
            ar = a;
        } else {
            ar = j->A + (size_t)m * j->lda;
        }
        float *c = j->C + (size_t)m * j->ldc;
        if (!j->acc) memset(c, 0, (size_t)j->N * sizeof *c);
        if (!j->tb) {
            for (int k = 0; k < j->K; k++) {
                float g = ar[k] * j->alpha;
                if (g == 0.0f) continue;
                const float *b = j->B + (size_t)k * j->ldb;
                for (int n = 0; n < j->N; n++) c[n] += g * b[n];
            }
        } else {
            for (int n = 0; n < j->N; n++) {
                const float *b = j->B + (size_t)n * j->ldb;
                float s = 0.0f;
                for (int k = 0; k < j->K; k++) s += ar[k] * b[k];
                c[n] += s * j->alpha;
            }
        }
    }
}

void kern_gemm_f32_block(int ta, int tb, int m0, int m1, int N, int K, const float *A, int lda, const float *B,
                         int ldb, float *C, int ldc, int acc) {
    f32_job j = {ta, tb, m1, N, K, lda, ldb, ldc, acc, A, B, C, 1.0f};
    float *a = ta ? malloc((size_t)(K > 0 ? K : 1) * sizeof *a) : NULL;
    if (ta && !a) abort();
    f32_rows(&j, m0, m1, a);
    free(a);
}

static void f32_task(void *ctx, size_t i) {
    const f32_job *j = ctx;
    int m0 = (int)i * ROWS, m1 = m0 + ROWS < j->M ? m0 + ROWS : j->M;
    float *a = j->ta ? malloc((size_t)j->K * sizeof *a) : NULL;
    if (j->ta && !a) abort(); /* K floats; nothing sensible to fall back to */
    f32_rows(j, m0, m1, a);
    free(a);
}

/* ---------------------------------------------------------------------- */
/* bfloat16 copies                                                        */
/* ---------------------------------------------------------------------- */

typedef struct {
    const float *src;
    int rows, cols, ld;
    uint16_t *dst; /* rows x cols, dense */
} cvt_job;

#define CVT_ROWS 64

static void cvt_task(void *ctx, size_t i) {
    const cvt_job *j = ctx;
    int r0 = (int)i * CVT_ROWS, r1 = r0 + CVT_ROWS < j->rows ? r0 + CVT_ROWS : j->rows;
    if (j->ld == j->cols) {
        kern_to_bf16(j->src + (size_t)r0 * j->ld, j->dst + (size_t)r0 * j->cols, (size_t)(r1 - r0) * j->cols);
        return;
    }
    for (int r = r0; r < r1; r++) kern_to_bf16(j->src + (size_t)r * j->ld, j->dst + (size_t)r * j->cols, j->cols);
}

/* The bfloat16 copies reuse a few buffers kept between products: fresh
   memory for every product (up to ~150 MB for the lm_head's gradient)
   cost ~10 % of a training step in page faults. */
#define N_SCRATCH 8
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t cap;
    int busy;
} scratch[N_SCRATCH];

void *kern_scratch_take(size_t bytes) {
    void *p = NULL;
    pthread_mutex_lock(&scratch_lock);
    /* the smallest free buffer that fits, else the largest free one grows */
    int best = -1;
    for (int i = 0; i < N_SCRATCH; i++) {
        if (scratch[i].busy) continue;
        int fits = scratch[i].cap >= bytes, bfits = best >= 0 && scratch[best].cap >= bytes;
        if (best < 0 || (fits && (!bfits || scratch[i].cap < scratch[best].cap)) ||
            (!fits && !bfits && scratch[i].cap > scratch[best].cap))
            best = i;
    }
    if (best >= 0) {
        if (scratch[best].cap < bytes) {
            free(scratch[best].p);
            scratch[best].p = malloc(bytes);
            scratch[best].cap = scratch[best].p ? bytes : 0;
        }
        if (scratch[best].p) {
            scratch[best].busy = 1;
            p = scratch[best].p;
        }
    }
    pthread_mutex_unlock(&scratch_lock);
    return p ? p : malloc(bytes);
}

void kern_scratch_give(void *p) {
    if (!p) return;
    pthread_mutex_lock(&scratch_lock);
    for (int i = 0; i < N_SCRATCH; i++)
        if (scratch[i].p == p) {
            scratch[i].busy = 0;
            p = NULL;
        }
    pthread_mutex_unlock(&scratch_lock);
    free(p);
}

void kern_gemm_release(void) {
    pthread_mutex_lock(&scratch_lock);
    for (int i = 0; i < N_SCRATCH; i++)
        if (!scratch[i].busy) {
            free(scratch[i].p);
            scratch[i].p = NULL;
            scratch[i].cap = 0;
        }
    pthread_mutex_unlock(&scratch_lock);
}

static uint16_t *to_bf16(aria_pool *p, const float *src, int rows, int cols, int ld) {
    uint16_t *dst = kern_scratch_take((size_t)rows * cols * sizeof *dst + 64);
    if (!dst) return NULL;
    cvt_job j = {src, rows, cols, ld, dst};
    aria_pool_run(p, cvt_task, &j, (size_t)(rows + CVT_ROWS - 1) / CVT_ROWS);
    return dst;
}

/* ---------------------------------------------------------------------- */
/* kern_gemm                                                              */
/* ---------------------------------------------------------------------- */

void kern_gemm_h(aria_pool *p, int ta, int tb, int M, int N, int K, const float *A, const uint16_t *Ah, int lda,
                 const float *B, const uint16_t *Bh, int ldb, float *C, int ldc, int acc, kern_prec prec) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    if (kern_resolve_prec(prec) == KERN_PREC_FAST && kern_has_dnnl()) {
        int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        uint16_t *a = Ah ? NULL : to_bf16(p, A, ar, ac, lda), *b = Bh ? NULL : to_bf16(p, B, br, bc, ldb);
        const uint16_t *ua = Ah ? Ah : a, *ub = Bh ? Bh : b;
        int rc = ua && ub ? kern_dnnl_gemm_bf16(p, ta, tb, M, N, K, ua, ac, ub, bc, C, ldc, acc, A, lda, B, ldb) : -1;
        kern_scratch_give(a);
        kern_scratch_give(b);
        if (rc == 0) return; /* else nothing was written: float32 below */
    }
    if (!ta && tb && lda == K && ldb == K && ldc == N) {
        /* y = x W^T: the inference kernels (AVX-512 where present) */
        kern_mat W = {.dtype = ARIA_DT_F32, .data = B, .rows = N, .cols = K};
        kern_matmul_prec(p, A, M, &W, C, acc, KERN_PREC_EXACT);
        return;
    }
    f32_job j = {ta, tb, M, N, K, lda, ldb, ldc, acc, A, B, C, 1.0f};
    aria_pool_run(p, f32_task, &j, (size_t)(M + ROWS - 1) / ROWS);
}

void kern_gemm(aria_pool *p, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float *C, int ldc, int acc, kern_prec prec) {
    kern_gemm_h(p, ta, tb, M, N, K, A, NULL, lda, B, NULL, ldb, C, ldc, acc, prec);
}

void kern_to_bf16_pool(aria_pool *p, const float *x, uint16_t *out, size_t rows, size_t cols) {
    cvt_job j = {x, (int)rows, (int)cols, (int)cols, out};
    aria_pool_run(p, cvt_task, &j, (rows + CVT_ROWS - 1) / CVT_ROWS);
}

void kern_sgemm_st(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (kern_has_dnnl() && kern_dnnl_sgemm_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
    f32_job j = {ta, tb, M, N, K, lda, ldb, ldc, beta != 0.0f, A, B, C, alpha};
    float *a = ta ? malloc((size_t)(K > 0 ? K : 1) * sizeof *a) : NULL;
    if (ta && !a) abort();
    f32_rows(&j, 0, M, a);
    free(a);
}

/* ---------------------------------------------------------------------- */
/* Softmax and SwiGLU pieces                                              */
/* ---------------------------------------------------------------------- */

float kern_logsumexp(const float *x, size_t n) {
    if (kern_has_avx512()) return kern_avx512_logsumexp(x, n);
    if (n == 0) return -INFINITY;
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY || mx != mx) return mx;
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += expf(x[i] - mx);
    return mx + logf(s);
}

void kern_exp_scale(float *x, size_t n, float shift, float scale) {
    if (kern_has_avx512()) {
        kern_avx512_exp_scale(x, n, shift, scale);
        return;
    }
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i] - shift) * scale;
}

void kern_scale(float *x, size_t n, float s) {
    if (kern_has_avx512()) {
        kern_avx512_scale(x, n, s);
        return;
    }
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

int kern_gemm_bf16_st(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                      float *C, int ldc, int acc) {
    if (!kern_has_dnnl()) return -1;
    return kern_dnnl_gemm_bf16_st(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

void kern_softmax_bwd(const float *p, float *g, size_t n, float D, float scale) {
    if (kern_has_avx512()) {
        kern_avx512_softmax_bwd(p, g, n, D, scale);
        return;
    }
    for (size_t i = 0; i < n; i++) g[i] = p[i] * (g[i] - D) * scale;
}

void kern_swiglu_bwd(const float *g, const float *u, float *dg, float *du, size_t n) {
    if (kern_has_avx512()) {
        kern_avx512_swiglu_bwd(g, u, dg, du, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i])), da = dg[i];
        du[i] = da * g[i] * s;
        dg[i] = da * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
