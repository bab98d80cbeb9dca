/*
 * dispatch.c - the kernels' entry points (kernels.h) and the context that
 * carries what they run on. The only caller of the backends' tables
 * (backend.h) and the only place that falls back.
 *
 * A context lists its backends most specialised first: oneDNN, AVX-512,
 * portable (the CPU and the build decide which exist; opts.portable keeps
 * only the last). Every call asks them in that order whether they support
 * the op for its shape and the context's precision, and gives the work to
 * the first that does; when that one fails (oneDNN out of memory, or
 * refusing a shape) the rest goes to the next. The portable backend
 * supports everything but the bfloat16 products, so the search ends.
 *
 * Work is split over the pool here, once for every backend: matrix
 * products by blocks of output columns (~64 KB of weights per task),
 * row-wise ops by blocks of rows, element-wise ones by blocks of elements,
 * attention by (row, head). A row's arithmetic does not depend on the
 * split, so results are the same on any thread count. Small jobs run on
 * the caller's thread.
 *
 * Temporaries come from the context's scratch; when it has none to give,
 * the op takes a path that needs none (the next backend, or the same sums
 * recomputed), never an abort.
 */
#include "kernels/backend.h"
#include "kernels/blocked.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---------------------------------------------------------------------- */
/* The context                                                            */
/* ---------------------------------------------------------------------- */

static void ctx_describe(aria_ctx *c, const char *avx, const char *q, const char *dn) {
    snprintf(c->desc, sizeof c->desc, "%s%s%s%s%s, precision %s, %d thread%s", *avx ? avx : "portable C",
             *q ? " + " : "", q, *dn ? " + " : "", dn, c->prec == ARIA_PREC_EXACT ? "exact" : "fast", aria_pool_size(c->res.pool),
             aria_pool_size(c->res.pool) == 1 ? "" : "s");
}

int aria_ctx_new(aria_ctx **out, const aria_ctx_opts *opts, aria_error *err) {
    *out = NULL;
    aria_ctx_opts o = opts ? *opts : (aria_ctx_opts){0, ARIA_PREC_FAST, 0};
    if (o.precision != ARIA_PREC_FAST && o.precision != ARIA_PREC_EXACT)
        return aria_fail(err, ARIA_ERR_ARG, "unknown precision %d", (int)o.precision);
    aria_ctx *c = calloc(1, sizeof *c);
    if (!c) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for a kernel context");
    c->prec = o.precision;
    c->portable = o.portable != 0;
    c->owns = 1;
    c->res.pool = aria_pool_new(o.threads);
    c->res.scratch = kern_scratch_new();
    if (!c->res.pool || !c->res.scratch) {
        aria_ctx_free(c);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for a kernel context");
    }
    const char *dn = "", *avx = "", *q = "";
    if (!c->portable) {
        const kern_backend_i *b = kern_backend_onednn(&dn);
        if (b) c->be[c->n_be++] = b;
        /* the quantized products with VNNI (no other backend but the
           portable one has them) */
        b = kern_backend_quant(&q);
        if (b) c->be[c->n_be++] = b;
        b = kern_backend_quant_k(); /* q4_k's, with AVX-512 VNNI or AVX-VNNI */
        if (b) c->be[c->n_be++] = b;
        b = kern_backend_avx512(&avx);
        if (b) c->be[c->n_be++] = b;
    }
    c->be[c->n_be++] = kern_backend_portable();
    ctx_describe(c, avx, q, dn);
    *out = c;
    return ARIA_OK;
}

void aria_ctx_free(aria_ctx *c) {
    if (!c) return;
    if (c->owns) {
        aria_pool_free(c->res.pool);
        kern_scratch_free(c->res.scratch);
    }
    free(c);
}

const char *aria_ctx_describe(const aria_ctx *c) { return c ? c->desc : "no context"; }

int kern_ctx_derive(aria_ctx **out, aria_ctx *base, aria_precision precision, aria_error *err) {
    *out = NULL;
    if (precision != ARIA_PREC_FAST && precision != ARIA_PREC_EXACT)
        return aria_fail(err, ARIA_ERR_ARG, "unknown precision %d", (int)precision);
    aria_ctx *c = malloc(sizeof *c);
    if (!c) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for a kernel context");
    *c = *base;
    c->owns = 0;
    c->prec = precision;
    const char *mark = strstr(base->desc, ", precision ");
    if (mark) { /* the same backends and threads, the other precision */
        const char *rest = strchr(mark + 12, ',');
        snprintf(c->desc + (mark - base->desc), sizeof c->desc - (size_t)(mark - base->desc), ", precision %s%s",
                 precision == ARIA_PREC_EXACT ? "exact" : "fast", rest ? rest : "");
    }
    *out = c;
    return ARIA_OK;
}

aria_pool *kern_ctx_pool(aria_ctx *c) { return c->res.pool; }
aria_precision kern_ctx_precision(const aria_ctx *c) { return c->prec; }
int kern_ctx_threads(const aria_ctx *c) { return aria_pool_size(c->res.pool); }
void kern_ctx_trim(aria_ctx *c) { kern_scratch_trim(c->res.scratch); }

int kern_ctx_has_backend(const aria_ctx *c, const char *name) {
    for (int i = 0; i < c->n_be; i++)
        if (!strcmp(c->be[i]->name, name)) return 1;
    return 0;
}

int kern_ctx_use_backend(aria_ctx *c, const kern_backend_i *be) {
    for (int i = 0; i < c->n_be; i++)
        if (!strcmp(c->be[i]->name, be->name)) {
            c->be[i] = be;
            return 1;
        }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Choosing a backend                                                     */
/* ---------------------------------------------------------------------- */

/* Whether backend b has the function op needs. */
static int has_fn(const kern_backend_i *b, kern_op op) {
    switch (op) {
    case KERN_OP_MATMUL: return b->mm_block || b->matmul;
    case KERN_OP_GEMM: return b->gemm_rows != NULL;
    case KERN_OP_GEMM_BF16: return b->gemm_bf16 != NULL;
    case KERN_OP_SGEMM_ST: return b->sgemm_st != NULL;
    case KERN_OP_GEMM_BF16_ST: return b->gemm_bf16_st != NULL;
    case KERN_OP_TO_BF16: return b->to_bf16 != NULL;
    case KERN_OP_LAYERNORM_FWD: return b->layernorm_fwd != NULL;
    case KERN_OP_LAYERNORM_BWD: return b->layernorm_bwd_dx && b->layernorm_bwd_dw;
    case KERN_OP_SWIGLU_FWD: return b->swiglu_fwd != NULL;
    case KERN_OP_SWIGLU_BWD: return b->swiglu_bwd != NULL;
    case KERN_OP_ROPE: return b->rope != NULL;
    case KERN_OP_XENT: return b->xent != NULL;
    case KERN_OP_LOGSUMEXP: return b->logsumexp != NULL;
    case KERN_OP_EXP_SCALE: return b->exp_scale != NULL;
    case KERN_OP_SCALE: return b->scale != NULL;
    case KERN_OP_SOFTMAX_BWD: return b->softmax_bwd != NULL;
    case KERN_OP_ATTENTION: return b->attention || b->attention_h;
    case KERN_OP_ATTENTION_FWD: return b->attention_fwd != NULL;
    case KERN_OP_ATTENTION_BWD: return b->attention_bwd != NULL;
    default: return 0;
    }
}

/* The index of the first backend from `from` on that takes the op, or -1. */
static int pick_from(const aria_ctx *c, int from, kern_op op, const kern_shape *s, aria_precision prec) {
    for (int i = from; i < c->n_be; i++) {
        const kern_backend_i *b = c->be[i];
        if (op == KERN_OP_ATTENTION && (s->dtype == ARIA_DT_BF16 ? !b->attention_h : !b->attention)) continue;
        if (has_fn(b, op) && b->supports(op, s, prec)) return i;
    }
    return -1;
}

/* The backend for an op every context can do (the portable backend has
   it, whatever the shape). */
static const kern_backend_i *pick(const aria_ctx *c, kern_op op, int m, int n) {
    kern_shape s = {m, n, 0, ARIA_DT_F32};
    return c->be[pick_from(c, 0, op, &s, c->prec)];
}

/* Tasks of `per` items out of n: how many (n > 0). */
static size_t n_tasks(size_t n, size_t per) { return (n + per - 1) / per; }

/* ---------------------------------------------------------------------- */
/* Weights                                                                */
/* ---------------------------------------------------------------------- */

void kern_mat_release(kern_mat *W) {
    kern_packed *pk = atomic_exchange(&W->packed, NULL);
    if (pk) pk->free(pk);
}

static inline float bf16_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void kern_row_f32(const kern_mat *W, int r, float *out) {
    if (kern_dtype_quantized(W->dtype)) {
        kern_dequant_row(W->dtype, (const uint8_t *)W->data + (size_t)r * kern_quant_row_bytes(W->dtype, W->cols),
                         W->scales + (size_t)r * (W->cols / KERN_QBLOCK), W->cols, out);
    } else if (W->dtype == ARIA_DT_BF16) {
        const uint16_t *w = (const uint16_t *)W->data + (size_t)r * W->cols;
        for (int k = 0; k < W->cols; k++) out[k] = bf16_f32(w[k]);
    } else {
        memcpy(out, (const float *)W->data + (size_t)r * W->cols, (size_t)W->cols * sizeof *out);
    }
}

/* ---------------------------------------------------------------------- */
/* Matrix product                                                         */
/* ---------------------------------------------------------------------- */

/* Floats of rearranged x that may live on the stack. */
#define XP_STACK 16384

typedef struct {
    const kern_backend_i *be;
    const float *x;
    size_t xs; /* row stride of x (rearranged or not) */
    int T;
    const kern_mat *W;
    float *y;
    int acc;
    int cols_per_task;
} mm_job;

/* Columns [o0, o1) for tokens [0, T) in blocks of 64: a task's weight
   rows stay in cache while the tokens stream past; with T <= 64 (decoding)
   every weight is read from memory once. */
static void mm_cols(const mm_job *j, int o0, int o1) {
    for (int t = 0; t < j->T; t += 64) {
        int nt = j->T - t < 64 ? j->T - t : 64;
        j->be->mm_block(j->x + (size_t)t * j->xs, j->xs, nt, j->W, o0, o1, j->y + (size_t)t * j->W->rows,
                        j->W->rows, j->acc);
    }
}

static void mm_task(void *arg, size_t i) {
    const mm_job *j = arg;
    int o0 = (int)i * j->cols_per_task;
    int o1 = o0 + j->cols_per_task < j->W->rows ? o0 + j->cols_per_task : j->W->rows;
    mm_cols(j, o0, o1);
}

/* The product's columns [o0, o1) by backend be's column blocks, on the
   pool (pooled) or this thread. -1 when x needs rearranging and there is
   no memory for the copy (nothing written). */
static int mm_by_blocks(aria_ctx *c, const kern_backend_i *be, const float *x, int T, const kern_mat *W, float *y,
                        int acc, int o0, int o1, int pooled) {
    float buf[XP_STACK], *heap = NULL;
    mm_job j = {be, x, (size_t)W->cols, T, W, y, acc, W->rows};
    size_t xs = 0, nx = be->mm_x_floats ? be->mm_x_floats(W, T, &xs) : 0;
    if (nx) {
        float *xp = nx <= XP_STACK ? buf : (heap = kern_scratch_get(c->res.scratch, nx * sizeof *xp));
        if (!xp) return -1;
        be->mm_x_prepare(x, T, W, xp);
        j.x = xp;
        j.xs = xs;
    }
    if (pooled) {
        /* tasks of about 64 KB of weights (a multiple of 16 rows): enough
           of them that the threads finish a product together (decoding
           waits for the slowest), big enough that taking one costs nothing */
        size_t row_bytes = kern_dtype_quantized(W->dtype) ? kern_quant_row_bytes(W->dtype, W->cols)
                           : (size_t)W->cols * (W->dtype == ARIA_DT_BF16 ? 2 : 4);
        int per = (int)((65536 + row_bytes - 1) / row_bytes);
        per = (per + 15) / 16 * 16;
        if (per > W->rows) per = (W->rows + 15) / 16 * 16;
        j.cols_per_task = per;
        aria_pool_run(c->res.pool, mm_task, &j, n_tasks((size_t)W->rows, (size_t)per));
    } else {
        mm_cols(&j, o0, o1);
    }
    kern_scratch_put(c->res.scratch, heap);
    return 0;
}

typedef struct {
    aria_ctx *c;
    aria_precision prec;
    int from; /* backends to ask: from this index on */
    const float *x;
    int T;
    const kern_mat *W;
    float *y;
    int acc;
} mm_redo_arg;

/* Columns a whole-product backend handed back: the next backend with
   column blocks does them on this thread. */
static void mm_redo(void *arg, int o0, int o1) {
    const mm_redo_arg *r = arg;
    kern_shape s = {r->T, r->W->rows, r->W->cols, r->W->dtype};
    for (int i = r->from; (i = pick_from(r->c, i, KERN_OP_MATMUL, &s, r->prec)) >= 0; i++)
        if (r->c->be[i]->mm_block &&
            mm_by_blocks(r->c, r->c->be[i], r->x, r->T, r->W, r->y, r->acc, o0, o1, 0) == 0)
            return;
}

static void matmul_run(aria_ctx *c, aria_precision prec, const float *x, int T, const kern_mat *W, float *y,
                       int acc) {
    if (T <= 0 || W->rows <= 0) return;
    kern_shape s = {T, W->rows, W->cols, W->dtype};
    for (int i = 0; (i = pick_from(c, i, KERN_OP_MATMUL, &s, prec)) >= 0; i++) {
        const kern_backend_i *be = c->be[i];
        if (be->matmul) {
            mm_redo_arg ra = {c, prec, i + 1, x, T, W, y, acc};
            kern_redo redo = {mm_redo, &ra};
            if (be->matmul(&c->res, x, T, W, y, acc, &redo) == 0) return;
        } else if (mm_by_blocks(c, be, x, T, W, y, acc, 0, W->rows, 1) == 0) {
            return;
        }
    }
}

void kern_matmul(aria_ctx *c, const float *x, int T, const kern_mat *W, float *y, int acc) {
    matmul_run(c, c->prec, x, T, W, y, acc);
}

const char *kern_matmul_backend(const aria_ctx *c, int T, const kern_mat *W) {
    kern_shape s = {T, W->rows, W->cols, W->dtype};
    int i = pick_from(c, 0, KERN_OP_MATMUL, &s, c->prec);
    return i >= 0 ? c->be[i]->name : "none";
}

/* ---------------------------------------------------------------------- */
/* General products                                                       */
/* ---------------------------------------------------------------------- */

/* float32 -> bfloat16 of a rows x cols matrix with row stride ld into a
   dense one, by blocks of rows on the pool. */
#define CVT_ROWS 64
#define CVT_ELEMS 65536

typedef struct {
    const kern_backend_i *be;
    const float *src;
    size_t rows, cols, ld;
    uint16_t *dst;
} cvt_job;

static void cvt_task(void *arg, size_t i) {
    const cvt_job *j = arg;
    size_t r0 = i * CVT_ROWS, r1 = r0 + CVT_ROWS < j->rows ? r0 + CVT_ROWS : j->rows;
    if (j->ld == j->cols) {
        j->be->to_bf16(j->src + r0 * j->ld, j->dst + r0 * j->cols, (r1 - r0) * j->cols);
        return;
    }
    for (size_t r = r0; r < r1; r++) j->be->to_bf16(j->src + r * j->ld, j->dst + r * j->cols, j->cols);
}

static void to_bf16_rows(aria_ctx *c, const float *src, size_t rows, size_t cols, size_t ld, uint16_t *dst) {
    cvt_job j = {pick(c, KERN_OP_TO_BF16, 0, 0), src, rows, cols, ld, dst};
    aria_pool_run(c->res.pool, cvt_task, &j, n_tasks(rows, CVT_ROWS));
}

void kern_to_bf16(aria_ctx *c, const float *x, uint16_t *out, size_t n) {
    if (n == 0) return;
    /* as rows of CVT_ELEMS / CVT_ROWS, the last one short */
    size_t cols = CVT_ELEMS / CVT_ROWS, rows = n / cols;
    if (rows) to_bf16_rows(c, x, rows, cols, cols, out);
    if (n > rows * cols) pick(c, KERN_OP_TO_BF16, 0, 0)->to_bf16(x + rows * cols, out + rows * cols, n - rows * cols);
}

/* C rows [m0, m1) by the first backend with float32 row blocks. */
static void gemm_rows_here(aria_ctx *c, const kern_gemm_args *g, int m0, int m1) {
    float *tmp = g->ta ? kern_scratch_get(c->res.scratch, (size_t)g->K * sizeof *tmp) : NULL;
    pick(c, KERN_OP_GEMM, g->M, g->N)->gemm_rows(g, m0, m1, tmp);
    kern_scratch_put(c->res.scratch, tmp);
}

#define GEMM_ROWS 8

typedef struct {
    aria_ctx *c;
    const kern_gemm_args *g;
} gemm_job;

static void gemm_task(void *arg, size_t i) {
    const gemm_job *j = arg;
    int m0 = (int)i * GEMM_ROWS, m1 = m0 + GEMM_ROWS < j->g->M ? m0 + GEMM_ROWS : j->g->M;
    gemm_rows_here(j->c, j->g, m0, m1);
}

static void gemm_redo(void *arg, int m0, int m1) {
    const gemm_job *j = arg;
    gemm_rows_here(j->c, j->g, m0, m1);
}

/* The bfloat16 product by the first backend that has one: 0 when done. */
static int gemm_bf16_run(aria_ctx *c, const kern_gemm_args *g, const uint16_t *Ah, const uint16_t *Bh) {
    kern_shape s = {g->M, g->N, g->K, ARIA_DT_BF16};
    int i = pick_from(c, 0, KERN_OP_GEMM_BF16, &s, c->prec);
    if (i < 0) return -1;
    int ar = g->ta ? g->K : g->M, ac = g->ta ? g->M : g->K, br = g->tb ? g->N : g->K, bc = g->tb ? g->K : g->N;
    uint16_t *a = Ah ? NULL : kern_scratch_get(c->res.scratch, (size_t)ar * ac * sizeof *a);
    uint16_t *b = Bh ? NULL : kern_scratch_get(c->res.scratch, (size_t)br * bc * sizeof *b);
    int rc = -1;
    if ((Ah || a) && (Bh || b)) {
        if (a) to_bf16_rows(c, g->A, (size_t)ar, (size_t)ac, (size_t)g->lda, a);
        if (b) to_bf16_rows(c, g->B, (size_t)br, (size_t)bc, (size_t)g->ldb, b);
        gemm_job j = {c, g};
        kern_redo redo = {gemm_redo, &j};
        rc = c->be[i]->gemm_bf16(&c->res, g, Ah ? Ah : a, ac, Bh ? Bh : b, bc, &redo);
    }
    kern_scratch_put(c->res.scratch, a);
    kern_scratch_put(c->res.scratch, b);
    return rc;
}

void kern_gemm_h(aria_ctx *c, int ta, int tb, int M, int N, int K, const float *A, const uint16_t *Ah, int lda,
                 const float *B, const uint16_t *Bh, int ldb, float *C, int ldc, int acc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    kern_gemm_args g = {ta, tb, M, N, K, lda, ldb, ldc, acc, A, B, C, 1.0f};
    if (gemm_bf16_run(c, &g, Ah, Bh) == 0) return;
    if (!ta && tb && lda == K && ldb == K && ldc == N) {
        /* y = x W^T: the float32 column blocks (AVX-512 where present) */
        kern_mat W = {.dtype = ARIA_DT_F32, .data = B, .rows = N, .cols = K};
        matmul_run(c, ARIA_PREC_EXACT, A, M, &W, C, acc);
        return;
    }
    gemm_job j = {c, &g};
    aria_pool_run(c->res.pool, gemm_task, &j, n_tasks((size_t)M, GEMM_ROWS));
}

void kern_gemm(aria_ctx *c, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float *C, int ldc, int acc) {
    kern_gemm_h(c, ta, tb, M, N, K, A, NULL, lda, B, NULL, ldb, C, ldc, acc);
}

int kern_gemm_uses_bf16(const aria_ctx *c) {
    kern_shape s = {1, 1, 1, ARIA_DT_BF16};
    return pick_from(c, 0, KERN_OP_GEMM_BF16, &s, c->prec) >= 0;
}

void kern_sgemm_st(aria_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    kern_gemm_args g = {ta, tb, M, N, K, lda, ldb, ldc, beta != 0.0f, A, B, C, alpha};
    kern_shape s = {M, N, K, ARIA_DT_F32};
    for (int i = 0; (i = pick_from(c, i, KERN_OP_SGEMM_ST, &s, c->prec)) >= 0; i++)
        if (c->be[i]->sgemm_st(&g, beta) == 0) return;
}

int kern_gemm_bf16_st(aria_ctx *c, int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                      const uint16_t *B, int ldb, float *C, int ldc, int acc) {
    kern_shape s = {M, N, K, ARIA_DT_BF16};
    for (int i = 0; (i = pick_from(c, i, KERN_OP_GEMM_BF16_ST, &s, c->prec)) >= 0; i++)
        if (c->be[i]->gemm_bf16_st(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc) == 0) return 0;
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Rows and elements                                                      */
/* ---------------------------------------------------------------------- */

/* Rows per task, elements per task, LayerNorm weight columns per task. */
#define RB 16
#define EB 16384
#define LN_COLS 32

typedef struct {
    const kern_backend_i *be;
    float *out, *mean, *rstd, *dx, *dw, *db, *g2;
    const float *x, *w, *b, *dout, *mean_in, *rstd_in, *g, *u, *cs;
    double *loss;
    const int32_t *targets;
    size_t n;
    int N, d, T, H, hd, stride, pos0, inverse, grad;
    float dscale;
} row_job;

/* Runs fn over n items in tasks of `per`; serially when that is one or
   two tasks' worth (the pool's wake-up would cost more). */
static void run_split(aria_ctx *c, void (*fn)(void *, size_t), row_job *j, size_t n, size_t per) {
    size_t k = n_tasks(n, per);
    if (k <= 2) {
        for (size_t i = 0; i < k; i++) fn(j, i);
        return;
    }
    aria_pool_run(c->res.pool, fn, j, k);
}

/* [a, b) of block i of `per` out of n */
#define BLOCK(i, per, n, a, b) size_t a = (i) * (per), b = a + (per) < (size_t)(n) ? a + (per) : (size_t)(n)

static void ln_fwd_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, RB, j->N, r0, r1);
    size_t o = r0 * (size_t)j->d;
    j->be->layernorm_fwd(j->out + o, j->mean ? j->mean + r0 : NULL, j->rstd ? j->rstd + r0 : NULL, j->x + o, j->w,
                         j->b, (int)(r1 - r0), j->d);
}

void kern_layernorm_fwd(aria_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                        const float *b, int N, int d) {
    if (N <= 0) return;
    row_job j = {.be = pick(c, KERN_OP_LAYERNORM_FWD, N, d), .out = out, .mean = mean, .rstd = rstd, .x = x,
                 .w = w, .b = b, .N = N, .d = d};
    run_split(c, ln_fwd_task, &j, (size_t)N, RB);
}

static void ln_bwd_dx_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, RB, j->N, r0, r1);
    size_t o = r0 * (size_t)j->d;
    j->be->layernorm_bwd_dx(j->dx + o, j->dout + o, j->x + o, j->w, j->mean_in + r0, j->rstd_in + r0,
                            (int)(r1 - r0), j->d);
}

static void ln_bwd_dw_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, LN_COLS, j->d, c0, c1);
    j->be->layernorm_bwd_dw(j->dw, j->db, j->dout, j->x, j->mean_in, j->rstd_in, j->N, j->d, (int)c0, (int)c1);
}

void kern_layernorm_bwd(aria_ctx *c, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int N, int d) {
    if (N <= 0) return;
    row_job j = {.be = pick(c, KERN_OP_LAYERNORM_BWD, N, d), .dx = dx, .dw = dw, .db = db, .dout = dout, .x = x,
                 .w = w, .mean_in = mean, .rstd_in = rstd, .N = N, .d = d};
    run_split(c, ln_bwd_dx_task, &j, (size_t)N, RB);
    run_split(c, ln_bwd_dw_task, &j, (size_t)d, LN_COLS);
}

static void swiglu_fwd_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, EB, j->n, a, b);
    j->be->swiglu_fwd(j->out + a, j->g + a, j->u + a, b - a);
}

void kern_swiglu_fwd(aria_ctx *c, float *out, const float *g, const float *u, size_t n) {
    if (!n) return;
    row_job j = {.be = pick(c, KERN_OP_SWIGLU_FWD, 0, 0), .out = out, .g = g, .u = u, .n = n};
    run_split(c, swiglu_fwd_task, &j, n, EB);
}

static void swiglu_bwd_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, EB, j->n, a, b);
    j->be->swiglu_bwd(j->dx + a, j->g2 + a, j->dout + a, j->g + a, j->u + a, b - a);
}

void kern_swiglu_bwd(aria_ctx *c, float *dg, float *du, const float *dout, const float *g, const float *u,
                     size_t n) {
    if (!n) return;
    row_job j = {.be = pick(c, KERN_OP_SWIGLU_BWD, 0, 0), .dx = dg, .g2 = du, .dout = dout, .g = g, .u = u, .n = n};
    run_split(c, swiglu_bwd_task, &j, n, EB);
}

static void rope_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, RB, j->N, r0, r1);
    j->be->rope(j->out, (int)r0, (int)r1, j->T, j->H, j->hd, j->stride, j->cs, j->pos0, j->inverse);
}

void kern_rope(aria_ctx *c, float *x, int N, int T, int n_heads, int hd, int row_stride, const float *cos_sin,
               int pos0, int inverse) {
    if (N <= 0) return;
    row_job j = {.be = pick(c, KERN_OP_ROPE, N, hd), .out = x, .N = N, .T = T, .H = n_heads, .hd = hd,
                 .stride = row_stride, .cs = cos_sin, .pos0 = pos0, .inverse = inverse};
    run_split(c, rope_task, &j, (size_t)N, RB);
}

float *kern_rope_table(int max_pos, int head_dim, double base) {
    int half = head_dim / 2;
    float *tab = malloc((size_t)max_pos * half * 2 * sizeof *tab + 1);
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

static void xent_task(void *arg, size_t i) {
    const row_job *j = arg;
    BLOCK(i, RB, j->N, r0, r1);
    j->be->xent(j->out, j->loss, j->targets, (int)r0, (int)r1, j->d, j->grad, j->dscale);
}

void kern_xent_fwd_bwd(aria_ctx *c, float *logits, double *loss, const int32_t *targets, int N, int V, int grad,
                       float dscale) {
    if (N <= 0) return;
    row_job j = {.be = pick(c, KERN_OP_XENT, N, V), .out = logits, .loss = loss, .targets = targets, .N = N, .d = V,
                 .grad = grad, .dscale = dscale};
    run_split(c, xent_task, &j, (size_t)N, RB);
}

float kern_logsumexp(aria_ctx *c, const float *x, size_t n) { return pick(c, KERN_OP_LOGSUMEXP, 0, 0)->logsumexp(x, n); }

void kern_exp_scale(aria_ctx *c, float *x, size_t n, float shift, float scale) {
    pick(c, KERN_OP_EXP_SCALE, 0, 0)->exp_scale(x, n, shift, scale);
}

void kern_scale(aria_ctx *c, float *x, size_t n, float s) { pick(c, KERN_OP_SCALE, 0, 0)->scale(x, n, s); }

void kern_softmax_bwd(aria_ctx *c, const float *p, float *g, size_t n, float D, float scale) {
    pick(c, KERN_OP_SOFTMAX_BWD, 0, 0)->softmax_bwd(p, g, n, D, scale);
}

/* ---------------------------------------------------------------------- */
/* Attention                                                              */
/* ---------------------------------------------------------------------- */

/* Queries per decoding task. */
#define ATT_TB 32

typedef struct {
    const kern_backend_i *be;
    const float *q, *k, *v;
    const uint16_t *kh, *vh; /* the cache in bfloat16 instead of k, v */
    float *out;
    int q_stride, out_stride, cap, B, T, H, hd, pos0;
} attn_job;

/* Task: one (row, head, block of queries). */
static void attn_task(void *arg, size_t i) {
    const attn_job *j = arg;
    size_t n_tb = n_tasks((size_t)j->T, ATT_TB);
    int tb = (int)(i % n_tb), h = (int)(i / n_tb % (size_t)j->H), b = (int)(i / n_tb / (size_t)j->H);
    int t0 = tb * ATT_TB, t1 = t0 + ATT_TB < j->T ? t0 + ATT_TB : j->T;
    size_t kv = ((size_t)b * j->H + h) * j->cap * j->hd;
    const float *q = j->q + (size_t)b * j->T * j->q_stride + (size_t)h * j->hd;
    float *out = j->out + (size_t)b * j->T * j->out_stride + (size_t)h * j->hd;
    float scale = 1.0f / sqrtf((float)j->hd);
    if (j->kh)
        j->be->attention_h(q, j->q_stride, j->kh + kv, j->vh + kv, t0, t1, j->hd, j->pos0, scale, out, j->out_stride);
    else
        j->be->attention(q, j->q_stride, j->k + kv, j->v + kv, t0, t1, j->hd, j->pos0, scale, out, j->out_stride);
}

void kern_attention(aria_ctx *c, const float *q, int q_stride, const float *k, const float *v, int cap, int B,
                    int T, int n_heads, int hd, int pos0, float *out, int out_stride) {
    if (B <= 0 || T <= 0) return;
    attn_job j = {pick(c, KERN_OP_ATTENTION, T, hd), q, k, v, NULL, NULL, out, q_stride, out_stride, cap, B, T,
                  n_heads, hd, pos0};
    aria_pool_run(c->res.pool, attn_task, &j, (size_t)B * n_heads * n_tasks((size_t)T, ATT_TB));
}

void kern_attention_h(aria_ctx *c, const float *q, int q_stride, const uint16_t *k, const uint16_t *v, int cap,
                      int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride) {
    if (B <= 0 || T <= 0) return;
    kern_shape sh = {T, hd, 0, ARIA_DT_BF16};
    attn_job j = {c->be[pick_from(c, 0, KERN_OP_ATTENTION, &sh, c->prec)], q, NULL, NULL, k, v, out, q_stride,
                  out_stride, cap, B, T, n_heads, hd, pos0};
    aria_pool_run(c->res.pool, attn_task, &j, (size_t)B * n_heads * n_tasks((size_t)T, ATT_TB));
}

int kern_kv_bf16(const aria_ctx *c) { return c->prec == ARIA_PREC_FAST; }

/* Training attention: per (row, head), the blocked products in fast
   precision (blocked.c), else (or without scratch for them) the
   backend's exact order. */
typedef struct {
    aria_ctx *c;
    const kern_backend_i *be;
    const kern_attn_args *a;
    const uint16_t *qkvh, *douth; /* bfloat16 copies for the blocked products, or NULL */
    int blocked;
} att_train_job;

static void att_fwd_task(void *arg, size_t i) {
    const att_train_job *j = arg;
    int b = (int)i / j->a->H, h = (int)i % j->a->H;
    if (j->blocked && kern_blocked_attention_fwd(j->c, j->a, j->qkvh, b, h) == 0) return;
    float *tmp = kern_scratch_get(j->c->res.scratch, (size_t)j->a->T * sizeof *tmp);
    j->be->attention_fwd(j->a, b, h, tmp);
    kern_scratch_put(j->c->res.scratch, tmp);
}

static void att_bwd_task(void *arg, size_t i) {
    const att_train_job *j = arg;
    int b = (int)i / j->a->H, h = (int)i % j->a->H;
    if (j->blocked && kern_blocked_attention_bwd(j->c, j->a, j->qkvh, j->douth, b, h) == 0) return;
    j->be->attention_bwd(j->a, b, h);
}

/* bfloat16 copy of n floats for the blocked products, when they run on
   bfloat16 (NULL: float32 products; give it back with kern_scratch_put). */
static uint16_t *bf16_copy_for_blocks(aria_ctx *c, const float *x, size_t n) {
    kern_shape s = {1, 1, 1, ARIA_DT_BF16};
    if (pick_from(c, 0, KERN_OP_GEMM_BF16_ST, &s, c->prec) < 0) return NULL;
    uint16_t *h = kern_scratch_get(c->res.scratch, n * sizeof *h);
    if (h) kern_to_bf16(c, x, h, n);
    return h;
}

void kern_attention_fwd(aria_ctx *c, float *out, float *lse, const float *qkv, int B, int T, int H, int hd) {
    if (B <= 0 || T <= 0) return;
    kern_attn_args a = {.qkv = qkv, .o = out, .lse = lse, .B = B, .T = T, .H = H, .hd = hd, .d = H * hd};
    int blocked = c->prec == ARIA_PREC_FAST;
    uint16_t *qh = blocked ? bf16_copy_for_blocks(c, qkv, (size_t)B * T * 3 * a.d) : NULL;
    att_train_job j = {c, pick(c, KERN_OP_ATTENTION_FWD, T, hd), &a, qh, NULL, blocked};
    aria_pool_run(c->res.pool, att_fwd_task, &j, (size_t)B * H);
    kern_scratch_put(c->res.scratch, qh);
}

void kern_attention_bwd(aria_ctx *c, float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int H, int hd) {
    if (B <= 0 || T <= 0) return;
    kern_attn_args a = {.qkv = qkv, .out = out, .dout = dout, .lse_in = lse, .dqkv = dqkv, .B = B, .T = T, .H = H,
                        .hd = hd, .d = H * hd};
    int blocked = c->prec == ARIA_PREC_FAST;
    uint16_t *qh = blocked ? bf16_copy_for_blocks(c, qkv, (size_t)B * T * 3 * a.d) : NULL;
    uint16_t *oh = qh ? bf16_copy_for_blocks(c, dout, (size_t)B * T * a.d) : NULL;
    if (!oh) { /* both copies or neither */
        kern_scratch_put(c->res.scratch, qh);
        qh = NULL;
    }
    att_train_job j = {c, pick(c, KERN_OP_ATTENTION_BWD, T, hd), &a, qh, oh, blocked};
    aria_pool_run(c->res.pool, att_bwd_task, &j, (size_t)B * H);
    kern_scratch_put(c->res.scratch, qh);
    kern_scratch_put(c->res.scratch, oh);
}
